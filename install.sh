#!/bin/sh
# k1s installer: installs k1s as a systemd or openrc service, as a server or (with K1S_URL) as an
# agent joining one. Re-running it upgrades in place: the service restarts only when its binary,
# unit or environment file changed, and running pods and the data directory are kept.
#
#   curl -sfL https://github.com/k1s-io/k1s/releases/latest/download/install.sh | sh -
#   curl -sfL .../install.sh | K1S_URL=https://SERVER:6443 K1S_TOKEN=K10... sh -
#   curl -sfL .../install.sh | sh -s - server --hardened     # command and flags after '-'
#
# Environment (INSTALL_K1S_* configure the installer; every K1S_* and proxy variable is written to
# the service's environment file, mode 0600):
#   INSTALL_K1S_DOWNLOAD_URL  directory holding k1s-<arch> and sha256sum-<arch>.txt, over https
#                             (default: the project's GitHub releases)
#   INSTALL_K1S_ALLOW_HTTP=true      accept an http:// download URL (a mirror on a trusted network)
#   INSTALL_K1S_VERSION       release to install; with INSTALL_K1S_DOWNLOAD_URL the files are
#                             read from <url>/<version>/ (default: the latest release)
#   INSTALL_K1S_BIN_DIR       where k1s, its links and the uninstall script go (/usr/local/bin)
#   INSTALL_K1S_SKIP_DOWNLOAD=true   airgap: use the k1s binary already in INSTALL_K1S_BIN_DIR
#   INSTALL_K1S_EXEC          command and flags for the service, e.g. "server --disable coredns"
#   INSTALL_K1S_SKIP_ENABLE=true     do not enable the service at boot (implies SKIP_START)
#   INSTALL_K1S_SKIP_START=true      do not start or restart the service
#   INSTALL_K1S_SYSTEMD_DIR   where the systemd unit goes (/etc/systemd/system)
#   K1S_URL, K1S_TOKEN, K1S_TOKEN_FILE   join a server as an agent (the token is then required),
#                             or with INSTALL_K1S_EXEC=server as another server (the server token);
#                             a --token among the service's arguments goes into K1S_TOKEN, so
#                             that the token is in the environment file only
#
# Everything below is functions until the last line, so a partial download runs nothing.

set -e
# The service's arguments are split on blanks, never expanded as file names.
set -f

GITHUB_RELEASES=https://github.com/k1s-io/k1s/releases

info() { echo "[k1s] $*"; }
fatal() {
	echo "[k1s] ERROR: $*" >&2
	exit 1
}

is_true() {
	case "$1" in
	true | yes | 1) return 0 ;;
	*) return 1 ;;
	esac
}

# --- what to run -------------------------------------------------------------------------------

# setup_command sets CMD_K1S (server or agent) and CMD_K1S_EXEC (the service's arguments).
setup_command() {
	if [ -z "$INSTALL_K1S_EXEC" ] && [ $# -gt 0 ]; then
		INSTALL_K1S_EXEC="$*"
	fi
	case "$INSTALL_K1S_EXEC" in
	server | server\ * | agent | agent\ *) CMD_K1S=${INSTALL_K1S_EXEC%% *} ;;
	*)
		if [ -n "$K1S_URL" ]; then CMD_K1S=agent; else CMD_K1S=server; fi
		INSTALL_K1S_EXEC="$CMD_K1S${INSTALL_K1S_EXEC:+ $INSTALL_K1S_EXEC}"
		;;
	esac
	CMD_K1S_EXEC=$INSTALL_K1S_EXEC
	take_token
	if [ "$CMD_K1S" = agent ]; then
		[ -n "$K1S_URL" ] || case " $CMD_K1S_EXEC " in *" --server"* | *" -s "*) ;; *)
			fatal "an agent needs the server to join: set K1S_URL=https://SERVER:6443" ;;
		esac
		[ -n "$K1S_TOKEN" ] || [ -n "$K1S_TOKEN_FILE" ] || case " $CMD_K1S_EXEC " in *" --token-file"* | *" -token-file"*) ;; *)
			fatal "an agent needs a join token: set K1S_TOKEN (the server's <data-dir>/server/node-token, or 'k1s token create' there) or K1S_TOKEN_FILE" ;;
		esac
		if [ -n "$K1S_TOKEN_FILE" ] && [ ! -r "$K1S_TOKEN_FILE" ]; then
			fatal "K1S_TOKEN_FILE=$K1S_TOKEN_FILE cannot be read: copy the token file there first"
		fi
	elif [ -n "$K1S_URL" ] && [ -z "$K1S_TOKEN" ] && [ -z "$K1S_TOKEN_FILE" ]; then
		fatal "a server joining $K1S_URL needs its server token: set K1S_TOKEN (the first server's <data-dir>/server/token) or K1S_TOKEN_FILE"
	fi
	SERVICE_NAME=k1s
	UNINSTALL_NAME=k1s-uninstall.sh
	if [ "$CMD_K1S" = agent ]; then
		SERVICE_NAME=k1s-agent
		UNINSTALL_NAME=k1s-agent-uninstall.sh
	fi
	DATA_DIR_ARGS=$(data_dir_args "$CMD_K1S_EXEC")
}

# take_token moves a --token among the service's arguments into K1S_TOKEN (the flag's
# variable; the flag wins, as in the service): the environment file, mode 0600, holds it, not
# the unit or init script, which anyone may read, nor the command line, which ps shows.
take_token() {
	rest=
	next=
	for arg in $CMD_K1S_EXEC; do
		if [ -n "$next" ]; then
			K1S_TOKEN=$arg
			next=
			continue
		fi
		case "$arg" in
		--token=* | -token=* | -t=*) K1S_TOKEN=${arg#*=} ;;
		--token | -token | -t) next=1 ;;
		*) rest="$rest $arg" ;;
		esac
	done
	[ -z "$next" ] || fatal "--token is the last argument, without its value: give the join token in K1S_TOKEN instead"
	CMD_K1S_EXEC=${rest# }
	if [ -n "$K1S_TOKEN" ]; then export K1S_TOKEN; fi
}

# sh_quote prints its argument quoted for sh.
sh_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# data_dir_args prints, quoted for sh, the service's arguments that choose its data directory
# (--data-dir, --config), with K1S_DATA_DIR and K1S_CONFIG_FILE as those flags where the
# arguments leave them out (flags win over them, as in the service). With them, `k1s killall
# --print-paths` decides the data directory as the service does: install.sh repeats none of it.
data_dir_args() {
	out=
	next=
	has_dir=
	has_config=
	for arg in $1; do
		if [ -n "$next" ]; then
			out="$out $next $(sh_quote "$arg")"
			next=
			continue
		fi
		case "$arg" in
		--data-dir=* | -data-dir=* | -d=*) out="$out --data-dir $(sh_quote "${arg#*=}")" has_dir=1 ;;
		--data-dir | -data-dir | -d) next=--data-dir has_dir=1 ;;
		--config=* | -config=* | -c=*) out="$out --config $(sh_quote "${arg#*=}")" has_config=1 ;;
		--config | -config | -c) next=--config has_config=1 ;;
		esac
	done
	if [ -z "$has_dir" ] && [ -n "$K1S_DATA_DIR" ]; then
		out="$out --data-dir $(sh_quote "$K1S_DATA_DIR")"
	fi
	if [ -z "$has_config" ] && [ -n "$K1S_CONFIG_FILE" ]; then
		out="$out --config $(sh_quote "$K1S_CONFIG_FILE")"
	fi
	echo "${out# }"
}

# print_paths asks the installed k1s for the data directory and the paths an uninstall removes,
# from / as the service runs.
print_paths() {
	cd / && "$BIN_DIR/k1s" killall --print-paths "$@"
}

# set_data_dir sets DATA_DIR to the data directory the service uses, as the installed k1s decides
# it; the uninstall script asks the same question and needs an answer.
set_data_dir() {
	if answer=$(eval "print_paths $DATA_DIR_ARGS"); then
		DATA_DIR=$(printf '%s\n' "$answer" | sed -n 1p)
		return
	fi
	DATA_DIR=
	info "warning: '$BIN_DIR/k1s killall --print-paths $DATA_DIR_ARGS' failed (see above): $UNINSTALL_NAME refuses to run until it works"
}

# --- checks before anything is installed -------------------------------------------------------

verify_root() {
	[ "$(id -u)" -eq 0 ] || fatal "k1s must be installed as root: curl -sfL ... | sudo sh -"
}

setup_arch() {
	machine=$(uname -m)
	case "$machine" in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	armv7* | armv8l) ARCH=arm ;;
	armv6* | armv5*)
		fatal "this $machine CPU (e.g. Raspberry Pi 1 or Zero) is not supported: the arm build of k1s needs armv7 or later (Raspberry Pi 2 and newer)" ;;
	*) fatal "unsupported architecture $machine: k1s is built for x86_64 (amd64), aarch64 (arm64) and armv7 (arm)" ;;
	esac
}

setup_init() {
	if [ -d /run/systemd/system ]; then
		INIT=systemd
	elif command -v openrc-run >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then
		INIT=openrc
	else
		fatal "found neither systemd nor openrc to run the k1s service: run '$BIN_DIR/k1s $CMD_K1S_EXEC' under your own supervisor, with the K1S_* variables (a join token in K1S_TOKEN) in its environment"
	fi
}

memory_cgroup_enabled() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		grep -qw memory /sys/fs/cgroup/cgroup.controllers
	else
		awk '$1 == "memory" && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups 2>/dev/null
	fi
}

raspberry_pi() {
	for model in /proc/device-tree/model /sys/firmware/devicetree/base/model; do
		[ -r "$model" ] && grep -q "Raspberry Pi" "$model" 2>/dev/null && return 0
	done
	return 1
}

verify_host() {
	if ! memory_cgroup_enabled; then
		if raspberry_pi; then
			cmdline=/boot/firmware/cmdline.txt
			[ -f "$cmdline" ] || [ ! -f /boot/cmdline.txt ] || cmdline=/boot/cmdline.txt
			fatal "the memory cgroup is disabled: add 'cgroup_memory=1 cgroup_enable=memory' to the end of the single line in $cmdline (/boot/cmdline.txt on older systems), then reboot"
		fi
		fatal "the memory cgroup is disabled: boot the kernel with 'cgroup_enable=memory' (e.g. in GRUB_CMDLINE_LINUX of /etc/default/grub, then update-grub), then reboot"
	fi
	if ! command -v iptables >/dev/null 2>&1 && ! command -v nft >/dev/null 2>&1; then
		fatal "neither iptables nor nft is installed: install one (apt-get install iptables, apk add iptables, dnf install iptables)"
	fi
}

# --- download and install the binary -----------------------------------------------------------

setup_tmp() {
	TMP_DIR=$(mktemp -d -t k1s-install.XXXXXXXX)
	trap 'rm -rf "$TMP_DIR"' EXIT
	trap 'exit 130' INT TERM
}

# verify_download_url refuses to download over plain http, where anyone on the path could
# replace the binary together with its checksum, unless INSTALL_K1S_ALLOW_HTTP says the network
# is trusted.
verify_download_url() {
	PROTOCOLS='=https'
	if is_true "$INSTALL_K1S_SKIP_DOWNLOAD"; then return; fi
	url=$(download_url)
	case "$url" in
	https://*) return ;;
	http://*)
		if is_true "$INSTALL_K1S_ALLOW_HTTP"; then
			PROTOCOLS='=http,https'
			return
		fi
		;;
	esac
	fatal "the download URL $url is not https, so nothing would authenticate the binary or its checksum: use an https mirror, or set INSTALL_K1S_ALLOW_HTTP=true for one on a network you trust"
}

download() { # URL FILE
	if command -v curl >/dev/null 2>&1; then
		# A redirect may not leave https either.
		curl -fsSL --proto "$PROTOCOLS" --proto-redir "$PROTOCOLS" -o "$2" "$1" || fatal "downloading $1 failed"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1" || fatal "downloading $1 failed"
	else
		fatal "curl or wget is needed to download k1s"
	fi
}

download_url() {
	if [ -n "$INSTALL_K1S_DOWNLOAD_URL" ]; then
		echo "${INSTALL_K1S_DOWNLOAD_URL%/}${INSTALL_K1S_VERSION:+/$INSTALL_K1S_VERSION}"
	elif [ -n "$INSTALL_K1S_VERSION" ]; then
		echo "$GITHUB_RELEASES/download/$INSTALL_K1S_VERSION"
	else
		echo "$GITHUB_RELEASES/latest/download"
	fi
}

download_and_verify() {
	url=$(download_url)
	info "downloading k1s-$ARCH from $url"
	download "$url/sha256sum-$ARCH.txt" "$TMP_DIR/sha256sum.txt"
	download "$url/k1s-$ARCH" "$TMP_DIR/k1s"
	want=$(awk -v f="k1s-$ARCH" '$2 == f || $2 == "*" f { print $1 }' "$TMP_DIR/sha256sum.txt")
	[ -n "$want" ] || fatal "$url/sha256sum-$ARCH.txt lists no checksum for k1s-$ARCH: nothing was installed"
	got=$(sha256sum "$TMP_DIR/k1s" | awk '{ print $1 }')
	[ "$got" = "$want" ] ||
		fatal "k1s-$ARCH from $url does not match its checksum (got $got, want $want): the download is damaged or was tampered with; nothing was installed"
	chmod 755 "$TMP_DIR/k1s"
	"$TMP_DIR/k1s" --version >/dev/null 2>&1 ||
		fatal "the downloaded k1s-$ARCH does not run on this host ($(uname -m)): nothing was installed"
}

install_binary() {
	mkdir -p "$BIN_DIR"
	if is_true "$INSTALL_K1S_SKIP_DOWNLOAD"; then
		[ -x "$BIN_DIR/k1s" ] || fatal "INSTALL_K1S_SKIP_DOWNLOAD is set but $BIN_DIR/k1s is missing: copy k1s-$ARCH there first"
		info "using the k1s already in $BIN_DIR (INSTALL_K1S_SKIP_DOWNLOAD)"
		return
	fi
	download_and_verify
	if [ -f "$BIN_DIR/k1s" ] && cmp -s "$TMP_DIR/k1s" "$BIN_DIR/k1s"; then
		info "$BIN_DIR/k1s is already this version"
		return
	fi
	# A rename replaces the file a running k1s executes without touching it.
	cp "$TMP_DIR/k1s" "$BIN_DIR/.k1s.new"
	mv -f "$BIN_DIR/.k1s.new" "$BIN_DIR/k1s"
	CHANGED=1
	info "installed $("$BIN_DIR/k1s" --version | head -n 1) in $BIN_DIR"
}

create_links() {
	for cmd in kubectl ctr crictl; do
		link="$BIN_DIR/$cmd"
		if [ -L "$link" ] && [ "$(readlink "$link")" = k1s ]; then
			continue
		fi
		if [ -e "$link" ] || command -v "$cmd" >/dev/null 2>&1; then
			info "not linking $cmd: $(command -v "$cmd" || echo "$link") exists"
			continue
		fi
		# Only names this binary answers to.
		"$BIN_DIR/k1s" "$cmd" --help >/dev/null 2>&1 || continue
		ln -s k1s "$link"
		info "linked $link"
	done
}

# --- service ------------------------------------------------------------------------------------

# replace_if_changed moves NEW over FILE (mode MODE) when their contents differ.
replace_if_changed() { # NEW FILE MODE
	chmod "$3" "$1"
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		rm -f "$1"
		chmod "$3" "$2"
		return
	fi
	mv -f "$1" "$2"
	CHANGED=1
	info "wrote $2"
}

# setup_env sets ENV_NAMES to the variables that go into the service's environment file,
# refusing a value with a line break (no other program writes the file, and no k1s setting
# needs one).
setup_env() {
	ENV_NAMES=
	nl='
'
	cr=$(printf '\r')
	for name in $(env | grep -E '^(K1S_[A-Za-z0-9_]*|HTTP_PROXY|HTTPS_PROXY|NO_PROXY|http_proxy|https_proxy|no_proxy)=' |
		cut -d= -f1 | LC_ALL=C sort -u); do
		# A line of another variable's multi-line value may look like an assignment.
		eval "[ -n \"\${$name+set}\" ]" || continue
		value=
		eval "value=\$$name"
		case "$value" in
		*"$nl"* | *"$cr"*) fatal "$name holds a line break, which the service's environment file cannot hold: set it without one" ;;
		esac
		ENV_NAMES="$ENV_NAMES $name"
	done
}

# write_env_file writes NAME="VALUE" lines, which systemd (EnvironmentFile=) and sh (the openrc
# script sources the file) both read as the literal value: in double quotes both treat only
# \ " ` and $ specially, and a backslash before each of them makes it literal in both.
write_env_file() {
	(
		umask 077
		for name in $ENV_NAMES; do
			eval "value=\$$name"
			printf '%s="%s"\n' "$name" "$(printf '%s\n' "$value" | sed 's/[\\"`$]/\\&/g')"
		done >"$ENV_FILE.new"
	)
	replace_if_changed "$ENV_FILE.new" "$ENV_FILE" 600
}

# service_args quotes the service's arguments for a unit's ExecStart (one per line, indented):
# single-quoted, with what systemd still interprets there escaped: \ and ' (C escapes), %
# (specifiers) and $ (environment variables).
service_args() {
	for arg in $CMD_K1S_EXEC; do
		printf " \\\\\n\t'%s'" "$(printf '%s\n' "$arg" | sed -e "s/[\\\\']/\\\\&/g" -e 's/%/%%/g' -e 's/\$/$$/g')"
	done
}

# openrc_args quotes the service's arguments for sh, once each: openrc evaluates command_args
# when it starts the service.
openrc_args() {
	out=
	for arg in $CMD_K1S_EXEC; do
		out="$out $(sh_quote "$arg")"
	done
	echo "${out# }"
}

write_systemd_unit() {
	cat >"$UNIT_FILE.new" <<EOF
[Unit]
Description=k1s: Kubernetes in one binary ($CMD_K1S)
Documentation=https://github.com/k1s-io/k1s
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
# k1s tells systemd once the API server answers and the node is registered.
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-$ENV_FILE
# Only k1s itself is stopped: containerd's shims and so the pods keep running across a restart.
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=$BIN_DIR/k1s$(service_args)
EOF
	replace_if_changed "$UNIT_FILE.new" "$UNIT_FILE" 644
}

write_openrc_script() {
	cat >"$UNIT_FILE.new" <<EOF
#!/sbin/openrc-run
# k1s: Kubernetes in one binary ($CMD_K1S)

depend() {
	after network-online
	want cgroups
}

supervisor=supervise-daemon
name=$SERVICE_NAME
command=$(sh_quote "$BIN_DIR/k1s")
command_args=$(sh_quote "$(openrc_args)")
output_log=/var/log/$SERVICE_NAME.log
error_log=/var/log/$SERVICE_NAME.log
pidfile=/run/$SERVICE_NAME.pid
respawn_delay=5
respawn_max=0

set -o allexport
if [ -f $(sh_quote "$ENV_FILE") ]; then . $(sh_quote "$ENV_FILE"); fi
set +o allexport
EOF
	replace_if_changed "$UNIT_FILE.new" "$UNIT_FILE" 755
}

# write_uninstall_script writes the uninstall script: what this install chose, then a fixed body.
write_uninstall_script() {
	{
		cat <<EOF
#!/bin/sh
# Removes the k1s $CMD_K1S installed by install.sh: the service, every process, mount, interface,
# route, firewall rule and cgroup of the node, and the node's own entries in the host
# directories other runtimes share (k1s killall), then k1s's files, data included. Which data
# directory and which paths are k1s's, the installed k1s says: this script repeats none of that
# rule, and only refuses paths no such rule may name.
BIN_DIR=$(sh_quote "$BIN_DIR")
SERVICE_NAME=$(sh_quote "$SERVICE_NAME")
UNINSTALL_NAME=$(sh_quote "$UNINSTALL_NAME")
INIT=$(sh_quote "$INIT")
UNIT_FILE=$(sh_quote "$UNIT_FILE")
ENV_FILE=$(sh_quote "$ENV_FILE")
# The service's arguments that choose its data directory.
set -- $DATA_DIR_ARGS
EOF
		cat <<'EOF'

set -e
set -f
[ "$(id -u)" -eq 0 ] || { echo "run $UNINSTALL_NAME as root" >&2; exit 1; }

refuse() {
	echo "[k1s] ERROR: $*; nothing was uninstalled" >&2
	exit 1
}

# The service's data directory is the one its arguments (above) and its config file choose,
# whatever the environment of whoever runs this says.
unset K1S_DATA_DIR K1S_CONFIG_FILE

# Host directories that other runtimes (another kubelet, CNI plugin or containerd) share:
# killall removes only the node's entries there, and this script never removes one, or a
# directory holding one, whole (an older k1s named some as its own).
SHARED_DIRS='/var/lib/kubelet /var/lib/kubelet/device-plugins /var/lib/cni /var/lib/cni/results /var/log/pods /var/log/containers /run/containerd /run/containerd/s'
holds_shared() {
	for s in $SHARED_DIRS; do
		case "$s/" in "$1"/*) return 0 ;; esac
	done
	return 1
}

# Ask first, while the binary is there: its first line is the data directory, the others the
# paths an uninstall removes. From /, where the service runs, so relative paths agree.
data_dir=
paths=
if [ -x "$BIN_DIR/k1s" ]; then
	answer=$(cd / && "$BIN_DIR/k1s" killall --print-paths "$@") ||
		refuse "'$BIN_DIR/k1s killall --print-paths $*' failed (see above): fix the cause and run $BIN_DIR/$UNINSTALL_NAME again"
	# A relative --data-dir or --config, or a relative data-dir in the config file, names
	# another directory from elsewhere: ask again from a directory below /.
	probe=$(mktemp -d) || refuse "mktemp -d failed (see above): free or fix the temporary directory and run $BIN_DIR/$UNINSTALL_NAME again"
	elsewhere=$(cd "$probe" && "$BIN_DIR/k1s" killall --print-paths "$@" 2>/dev/null) || elsewhere=
	rmdir "$probe"
	[ "$elsewhere" = "$answer" ] ||
		refuse "the service's data directory is a relative path (its --data-dir or --config, or data-dir in its config file), which names a different directory from each working directory: make it absolute and run $BIN_DIR/$UNINSTALL_NAME again"
	unsafe=
	while IFS= read -r p; do
		case "$p" in
		"" | [!/]* | / | */ | *//* | */./* | */../* | */. | */..) ;; # not a clean path below /
		*) continue ;;
		esac
		case "$unsafe" in *" '$p'"*) ;; *) unsafe="$unsafe '$p'" ;; esac
	done <<ANSWER
$answer
ANSWER
	data_dir=$(printf '%s\n' "$answer" | sed -n 1p)
	paths=$(printf '%s\n' "$answer" | sed 1d)
	[ -z "$unsafe" ] ||
		refuse "'$BIN_DIR/k1s killall --print-paths $*' named$unsafe: only clean absolute paths below / are removed; remove k1s's files by hand"
	[ -n "$paths" ] ||
		refuse "'$BIN_DIR/k1s killall --print-paths $*' named no paths to remove; remove k1s's files by hand"
	! holds_shared "$data_dir" ||
		refuse "the data directory $data_dir holds directories other runtimes share ($SHARED_DIRS): give the service its own --data-dir, or remove k1s's files by hand"
	# k1s.lock (layout.DataDir.Lock) marks a directory a k1s server or agent ran from. A data
	# directory that does not exist is no reason to refuse: nothing of it is left to remove.
	if [ -e "$data_dir" ] || [ -L "$data_dir" ]; then
		if [ ! -f "$data_dir/k1s.lock" ] || [ -L "$data_dir/k1s.lock" ]; then
			refuse "$data_dir holds no k1s.lock, so no k1s ran from it: check the service's --data-dir and the data-dir in its config file, remove the directory by hand if it is k1s's, and run $BIN_DIR/$UNINSTALL_NAME again"
		fi
	fi
else
	echo "[k1s] $BIN_DIR/k1s is missing, so nothing can say which data directory and paths are k1s's: removing the service only; reinstall k1s and run its uninstall script to remove the node and its files" >&2
fi

if [ "$INIT" = systemd ]; then
	systemctl stop "$SERVICE_NAME" 2>/dev/null || true
	systemctl disable "$SERVICE_NAME" 2>/dev/null || true
	rm -f "$UNIT_FILE"
	systemctl daemon-reload
	systemctl reset-failed "$SERVICE_NAME" 2>/dev/null || true
else
	rc-service "$SERVICE_NAME" stop 2>/dev/null || true
	rc-update delete "$SERVICE_NAME" default 2>/dev/null || true
	rm -f "$UNIT_FILE" "/var/log/$SERVICE_NAME.log"
fi

# killall also removes the node's entries from the shared host directories. A failed killall
# may leave mounts below the data directory, which rm -rf would descend into: stop there.
if [ -n "$data_dir" ] && [ -e "$data_dir" ]; then
	"$BIN_DIR/k1s" killall --data-dir "$data_dir" || {
		status=$?
		echo "[k1s] ERROR: k1s killall failed (see above), so k1s's files are kept: fix the cause and run $BIN_DIR/$UNINSTALL_NAME again" >&2
		exit "$status"
	}
fi

for cmd in kubectl ctr crictl; do
	if [ -L "$BIN_DIR/$cmd" ] && [ "$(readlink "$BIN_DIR/$cmd")" = k1s ]; then
		rm -f "$BIN_DIR/$cmd"
	fi
done
# Without the binary the environment file (with the service's data directory) and this script
# stay, for a run after k1s is reinstalled.
if [ -z "$paths" ]; then
	echo "[k1s] uninstalled the service only (see above); kept $ENV_FILE and $BIN_DIR/$UNINSTALL_NAME" >&2
	exit 1
fi
while IFS= read -r p; do
	if holds_shared "$p"; then
		echo "[k1s] kept $p: other runtimes share it (k1s killall removed the node's entries there)"
		continue
	fi
	rm -rf "$p"
done <<PATHS
$paths
PATHS
rm -f "$ENV_FILE" "$BIN_DIR/k1s" "$BIN_DIR/$UNINSTALL_NAME"
echo "[k1s] uninstalled"
EOF
	} >"$BIN_DIR/$UNINSTALL_NAME.new"
	replace_if_changed "$BIN_DIR/$UNINSTALL_NAME.new" "$BIN_DIR/$UNINSTALL_NAME" 755
}

start_service() {
	if is_true "$INSTALL_K1S_SKIP_ENABLE"; then
		info "not enabling or starting $SERVICE_NAME (INSTALL_K1S_SKIP_ENABLE)"
		return
	fi
	if [ "$INIT" = systemd ]; then
		systemctl daemon-reload
		systemctl enable --quiet "$SERVICE_NAME"
	else
		rc-update add "$SERVICE_NAME" default >/dev/null
	fi
	if is_true "$INSTALL_K1S_SKIP_START"; then
		info "not starting $SERVICE_NAME (INSTALL_K1S_SKIP_START)"
		return
	fi
	if [ "$INIT" = systemd ]; then
		if [ -n "$CHANGED" ]; then
			info "starting $SERVICE_NAME (waits until the node is ready)"
			systemctl restart "$SERVICE_NAME"
		elif ! systemctl is-active --quiet "$SERVICE_NAME"; then
			info "starting $SERVICE_NAME (waits until the node is ready)"
			systemctl start "$SERVICE_NAME"
		else
			info "$SERVICE_NAME is up to date and running"
		fi
	else
		if [ -n "$CHANGED" ]; then
			rc-service "$SERVICE_NAME" restart
		else
			rc-service "$SERVICE_NAME" start
		fi
	fi
}

main() {
	verify_root
	verify_download_url
	BIN_DIR=${INSTALL_K1S_BIN_DIR:-/usr/local/bin}
	setup_command "$@"
	setup_env
	setup_arch
	verify_host
	setup_init
	if [ "$INIT" = systemd ]; then
		UNIT_FILE=${INSTALL_K1S_SYSTEMD_DIR:-/etc/systemd/system}/$SERVICE_NAME.service
		ENV_FILE=$UNIT_FILE.env
	else
		UNIT_FILE=/etc/init.d/$SERVICE_NAME
		mkdir -p /etc/k1s
		ENV_FILE=/etc/k1s/$SERVICE_NAME.env
	fi
	CHANGED=
	setup_tmp
	install_binary
	create_links
	set_data_dir
	write_env_file
	if [ "$INIT" = systemd ]; then write_systemd_unit; else write_openrc_script; fi
	# The uninstall script is no reason to restart the service.
	changed=$CHANGED
	write_uninstall_script
	CHANGED=$changed
	start_service
	info "done: $SERVICE_NAME${DATA_DIR:+ with data in $DATA_DIR}; remove it with $BIN_DIR/$UNINSTALL_NAME"
}

main "$@"
