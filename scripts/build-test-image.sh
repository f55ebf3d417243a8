#!/usr/bin/env bash
# Builds the busybox test image (k1s.local/busybox:test) from Debian's busybox-static, plus our
# netbench (pod-to-pod throughput and round trips, for the benchmarks), as an image tarball for
# <data-dir>/agent/images/. Nothing is pulled.
#
#   scripts/build-test-image.sh OUT.tar
set -euo pipefail
out=${1:?usage: build-test-image.sh OUT.tar}
root=$(cd "$(dirname "$0")/.." && pwd)
busybox=/bin/busybox
# The image has nothing but busybox: it must be the static build (no program interpreter).
if [ ! -x "$busybox" ] || readelf -l "$busybox" | grep -q INTERP; then
	echo "build-test-image: $busybox is not Debian's busybox-static (apt-get install busybox-static)" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root/scripts/payload" && CGO_ENABLED=0 go build -o "$work/mkimage" ./mkimage && CGO_ENABLED=0 go build -o "$work/netbench" ./netbench)
links=()
for applet in sh ash cat echo env hostname httpd id ls mkdir nc nslookup ps sleep test true false wc grep head tail sed; do
	links+=(-link "/bin/$applet=busybox")
done
"$work/mkimage" -ref k1s.local/busybox:test -cmd "/bin/sh" "${links[@]}" -o "$out" "/bin/busybox=$busybox" "/bin/netbench=$work/netbench"
