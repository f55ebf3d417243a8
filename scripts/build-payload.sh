#!/usr/bin/env bash
# Builds the payload that bin/k1s embeds: the programs that must not be the big multicall binary
# (containerd-shim-runc-v2, runc, the CNI plugins) and the system images (pause, CoreDNS), all
# from their Go modules at pinned versions, packed as one zstd-compressed tar with checksums.
#
#   [GOARCH=arm64|arm|amd64] scripts/build-payload.sh OUT.tar.zst
#
# Cross builds (GOARCH other than the host's) need Debian's cross C compiler and the target's
# static libseccomp for runc: gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf and
# libseccomp-dev:arm64 / libseccomp-dev:armhf (see .ci/run).
set -euo pipefail

out=${1:?usage: build-payload.sh OUT.tar.zst}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Pinned versions. The shim matches the containerd linked into k1s.
CONTAINERD_VERSION=$(cd "$root" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)
RUNC_VERSION=v1.5.2
CNI_PLUGINS_VERSION=v1.9.1
COREDNS_VERSION=$(cd "$root/scripts/payload" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
PAUSE_VERSION=3.10

host_arch=$(go env GOHOSTARCH)
export GOOS=linux GOARCH=${GOARCH:-$host_arch}
case "$GOARCH" in
amd64) triplet=x86_64-linux-gnu ;;
arm64) triplet=aarch64-linux-gnu ;;
arm) triplet=arm-linux-gnueabihf; export GOARM=${GOARM:-7} ;;
*) echo "payload: unsupported GOARCH $GOARCH (amd64, arm64, arm)" >&2; exit 1 ;;
esac
echo "payload: for linux/$GOARCH"

mkdir -p "$work/bin" "$work/images" "$work/build"
# go install refuses GOBIN for cross builds; a private GOPATH (sharing the module cache) puts the
# binaries in $GOPATH/bin or $GOPATH/bin/linux_$GOARCH instead.
# make's GOFLAGS (with -trimpath) are kept: the same flags let the shim and CoreDNS reuse the
# packages k1s compiled.
export GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}" GOPATH="$work/gopath" GOFLAGS="${GOFLAGS:--trimpath} -buildvcs=false"
unset GOBIN
gobin="$GOPATH/bin"
[ "$GOARCH" = "$host_arch" ] || gobin="$GOPATH/bin/linux_$GOARCH"
ldflags="-s -w"

echo "payload: containerd-shim-runc-v2 $CONTAINERD_VERSION"
# Built in k1s's own module, with its dependency versions, so that it shares the compiled
# containerd, gRPC and protobuf packages with k1s instead of compiling them a second time (a
# minute per architecture on a cold cache).
(cd "$root" && CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$work/bin/containerd-shim-runc-v2" \
	github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2)

echo "payload: CNI plugins $CNI_PLUGINS_VERSION"
cni=github.com/containernetworking/plugins/plugins
CGO_ENABLED=0 go install -ldflags "$ldflags" \
	"$cni/main/bridge@$CNI_PLUGINS_VERSION" "$cni/main/loopback@$CNI_PLUGINS_VERSION" \
	"$cni/ipam/host-local@$CNI_PLUGINS_VERSION" "$cni/meta/portmap@$CNI_PLUGINS_VERSION" \
	"$cni/meta/bandwidth@$CNI_PLUGINS_VERSION"

echo "payload: runc $RUNC_VERSION"
# runc needs cgo (nsenter); linked statically, with seccomp when the static libseccomp exists
# (required for a cross build, which is a release build).
runc_tags="urfave_cli_no_docs netgo osusergo"
cc=gcc
if [ "$GOARCH" != "$host_arch" ]; then
	cc=$triplet-gcc
	command -v "$cc" >/dev/null || { echo "payload: $cc is missing (apt-get install gcc-$triplet)" >&2; exit 1; }
fi
if [ -e "/usr/lib/$triplet/libseccomp.a" ]; then
	runc_tags="$runc_tags seccomp"
elif [ "$GOARCH" != "$host_arch" ]; then
	echo "payload: /usr/lib/$triplet/libseccomp.a is missing (dpkg --add-architecture ${triplet%%-*}; apt-get install libseccomp-dev:<arch>)" >&2
	exit 1
else
	echo "payload: no static libseccomp (apt-get install libseccomp-dev): runc without seccomp" >&2
fi
CC=$cc PKG_CONFIG_LIBDIR="/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig" CGO_ENABLED=1 go install -tags "$runc_tags" -ldflags "$ldflags -extldflags -static" \
	"github.com/opencontainers/runc@$RUNC_VERSION" 2> >(grep -v "statically linked applications requires at runtime" >&2)

echo "payload: pause $PAUSE_VERSION and CoreDNS $COREDNS_VERSION images"
# scripts/payload/go.mod requires the k8s.io modules and their dependencies at k1s's versions
# (never older), so that CoreDNS's kubernetes plugin links the packages k1s has already
# compiled; keep them in step when go.mod moves.
(
	cd "$root/scripts/payload"
	CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$work/build/pause" ./pause
	CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$work/build/coredns" ./coredns
	# mkimage runs here, so it is built for the host.
	CGO_ENABLED=0 GOARCH=$host_arch go build -o "$work/build/mkimage" ./mkimage
)
"$work/build/mkimage" -oci -ref "k1s.local/pause:$PAUSE_VERSION" -entrypoint /pause -arch "$GOARCH" \
	-o "$work/images/pause.tar" "/pause=$work/build/pause"
"$work/build/mkimage" -oci -ref "k1s.local/coredns:$COREDNS_VERSION" -entrypoint /coredns -arch "$GOARCH" \
	-o "$work/images/coredns.tar" "/coredns=$work/build/coredns"
cat > "$work/images.txt" <<LIST
pause k1s.local/pause:$PAUSE_VERSION
coredns k1s.local/coredns:$COREDNS_VERSION
LIST

mv "$gobin"/* "$work/bin/"
(cd "$work" && find bin images -type f | LC_ALL=C sort | xargs sha256sum > SHA256SUMS)
# Written under temporary names and renamed: an interrupted build leaves no payload that
# looks newer than its sources.
mkdir -p "$(dirname "$out")"
tar -C "$work" -c --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 SHA256SUMS images.txt bin images |
	zstd -q -19 -T0 -f -o "$work/payload.tar.zst"
sha256sum "$work/payload.tar.zst" | cut -c1-64 > "$out.sha256.tmp"
mv "$out.sha256.tmp" "$out.sha256"
mv "$work/payload.tar.zst" "$out"
echo "payload: $(du -h "$out" | cut -f1) compressed, from $(du -sh "$work/bin" "$work/images" | cut -f1 | tr '\n' ' ')"
