#!/usr/bin/env bash
# Makes a Debian bookworm base image from Debian's own packages, for machines that reach a Debian mirror but no image
# registry: debootstrap's minimal system, apt sources as debian:bookworm-slim has them, imported as
# localhost/celer-debian:bookworm. Then: CPU_BASE=localhost/celer-debian:bookworm bash deploy/docker/build.sh cpu
# Needs root and debootstrap (apt-get install debootstrap).
set -euo pipefail
tag=${1:-localhost/celer-debian:bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
tool=${CONTAINER_TOOL:-$(docker info > /dev/null 2>&1 && echo docker || echo podman)}

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
rm -f "$rootfs/etc/apt/sources.list"
cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
tar --numeric-owner -C "$rootfs" -c . | "$tool" import --change 'CMD ["bash"]' - "$tag"
