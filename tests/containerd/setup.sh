#!/bin/sh
# Installs what tests/e2e/containerd.rs needs on Debian 12: a real containerd (with its CRI
# plugin), runc, umoci to build the OCI images, busybox-static for their rootfs, gcc for the
# static pause program, and protoc for the k8s-cri crate's build. Idempotent: installs only
# the packages that are missing. Run as root.
set -eu

PKGS="containerd runc umoci busybox-static protobuf-compiler gcc libc6-dev"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "containerd e2e: all packages present ($PKGS)"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "containerd e2e: missing Debian packages:$missing; run this script as root" >&2
    exit 1
fi

echo "containerd e2e: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting is wanted
apt-get install -y -qq --no-install-recommends $missing

# The Debian package enables containerd.service; the tests run their own instance under a temp
# dir and never use the system one. Where systemd runs, keep the system one from starting
# by itself so the two do not fight over /run/containerd/s/ (shim sockets).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    systemctl disable --now containerd.service >/dev/null 2>&1 || true
fi
echo "containerd e2e: setup done"
