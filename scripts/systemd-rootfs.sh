#!/usr/bin/env bash
# Build the systemd guest's root filesystem once: Debian unstable's systemd
# (262 or later, with its LUO fd store) as PID 1, on an ext4 image in the
# cache. Prints the image's path.
#
# The image is made again when this script, systemd-rootfs-customize.sh or
# luo-agent's unit file changes (their hash is in the image's name), so they
# are the whole truth about the guest.
# It is read-only to the tests: QEMU opens it with snapshot=on, and what a
# scenario needs (its programs, the next kernel, its driver script) comes on
# a second disk, mounted at /luo by luo-test.service.
#
# The packages come from the unstable suite scripts/setup.sh derived from the
# machine's own apt sources (luo-rs.sources): same mirror, same keyring.
source "$(dirname "$0")/lib.sh"

SOURCES=/etc/apt/sources.list.d/luo-rs.sources
# dbus and kmod: without them systemd falls back with errors on the console
# (systemctl reboot cannot reach logind, kmod cannot be loaded), and a real
# host has both.
PACKAGES=systemd,systemd-sysv,kexec-tools,libsystemd0,dbus,kmod
# systemd's first version whose fd store is carried across a kexec by LUO.
MIN_SYSTEMD=262

customize=$LUO_ROOT/scripts/systemd-rootfs-customize.sh
units=$LUO_ROOT/tools/luo-agent/systemd
recipe=$(cat "$0" "$customize" "$units/luo-agent.service" "$units/luo-agent.socket" |
	sha256sum | cut -c1-12)
dir=$LUO_CACHE/systemd-rootfs
img=$dir/rootfs-$recipe.ext4

if [ -f "$img" ]; then
	echo "$img"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "building the systemd root filesystem needs root (mmdebstrap, chroot)"
command -v mmdebstrap >/dev/null || die "no mmdebstrap; run scripts/setup.sh"
[ -f "$SOURCES" ] || die "no $SOURCES; run scripts/setup.sh"
read -r uri keyring < <(awk '/^URIs:/ { u=$2 } /^Signed-By:/ { k=$2 } END { print u, k }' "$SOURCES")
grep -q '^Suites:.*\bunstable\b' "$SOURCES" || die "$SOURCES has no unstable suite; run scripts/setup.sh"
[ -n "${uri:-}" ] && [ -n "${keyring:-}" ] || die "cannot read URIs and Signed-By from $SOURCES"

note "building the systemd guest root filesystem (Debian unstable, once per recipe)"
rm -rf "$dir"
mkdir -p "$dir"
tree=$dir/tree
# minbase and no documentation: the image is unpacked nowhere, but every
# megabyte is written to the ext4 image and read by a TCG guest.
# The mirror may serve a snapshot whose Release file has outlived its
# Valid-Until date (unstable's is a week); its signature is checked all the same.
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
	--aptopt='Acquire::Check-Valid-Until "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--customize-hook="LUO_ROOT=$LUO_ROOT $customize \"\$1\"" \
	unstable "$tree" "deb [signed-by=$keyring] $uri unstable main" ||
	die "mmdebstrap of the systemd guest failed"

ver=$(chroot "$tree" dpkg-query -W -f='${Version}' systemd) || die "no systemd in the guest tree"
[ "${ver%%[.~-]*}" -ge "$MIN_SYSTEMD" ] ||
	die "the unstable suite has systemd $ver; the fd store is carried by LUO from $MIN_SYSTEMD on"
echo "$ver" > "$tree/etc/luo-systemd-version"

# 1 GiB, sparse: the tree is a few hundred MiB and the journal needs room.
mke2fs -q -t ext4 -L luo-root -d "$tree" "$img.tmp" 1G >/dev/null || die "mke2fs of the guest image failed"
rm -rf "$tree"
mv "$img.tmp" "$img"
note "systemd $ver guest image: $img ($(du -h "$img" | cut -f1) used)"
echo "$img"
