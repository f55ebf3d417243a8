#!/usr/bin/env bash
# Makes (once) a minimal Debian root that boots systemd under systemd-nspawn, for the install
# tests, and prints the path of its tarball. The tarball is cached: later runs reuse it.
#
#   scripts/debian-root.sh [CACHE_DIR]      (default /var/cache/k1s-e2e)
set -euo pipefail

cache=${1:-/var/cache/k1s-e2e}
suite=bookworm
tarball="$cache/debian-$suite-systemd.tar"
if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

# The mirror this machine's apt uses (nothing else is reachable).
mirror=$(awk '/^URIs:/ { print $2; exit } /^deb / { print $2; exit }' \
	/etc/apt/sources.list.d/debian.sources /etc/apt/sources.list 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
work=$(mktemp -d "$cache/.root-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "debian-root: debootstrap $suite from $mirror (about a minute)" >&2
debootstrap --variant=minbase \
	--include=systemd,systemd-sysv,dbus,iproute2,curl,ca-certificates,iptables,procps,kmod \
	"$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -20 "$work/debootstrap.log" >&2
	exit 1
}
# No getty or networkd fighting the test's network; a fixed machine id per copy is set at boot.
rm -f "$work/root/etc/machine-id"
tar -C "$work/root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
