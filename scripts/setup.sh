#!/usr/bin/env bash
# Install everything the build and the VM tests need, idempotently.
#
# The extra Debian suites reuse the mirror and keyring of the machine's own
# bookworm entry so that nothing in this repository names a mirror host;
# trixie-backports and unstable (only for the systemd guest's root
# filesystem, scripts/systemd-rootfs.sh) are pinned low so the host is never
# upgraded from them.
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "setup must run as root (it installs packages)"

SRC=/etc/apt/sources.list.d/debian.sources
OURS=/etc/apt/sources.list.d/luo-rs.sources
PIN=/etc/apt/preferences.d/luo-rs-pin
STAMP=$LUO_CACHE/stamps
mkdir -p "$STAMP"

apt_sources() {
	[ -f "$SRC" ] || die "cannot find $SRC to derive the mirror from; add bookworm-backports, trixie-backports and unstable by hand"
	# Pick the stanza that carries the plain 'bookworm' suite.
	local uri keyring
	read -r uri keyring < <(awk '
		/^[[:space:]]*$/ { if (s) { print u, k; exit } u=""; k=""; s=0; next }
		/^URIs:/ { u=$2 }
		/^Signed-By:/ { k=$2 }
		/^Suites:/ { for (i=2;i<=NF;i++) if ($i=="bookworm") s=1 }
		END { if (s) print u, k }' "$SRC")
	[ -n "${uri:-}" ] || die "no bookworm stanza with URIs in $SRC"
	local want
	want=$(printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports trixie-backports unstable\nComponents: main\nSigned-By: %s\n' "$uri" "$keyring")
	if [ ! -f "$OURS" ] || [ "$(cat "$OURS")" != "$want" ]; then
		note "adding bookworm-backports, trixie-backports and unstable (mirror taken from $SRC)"
		echo "$want" > "$OURS"
		rm -f "$STAMP/apt-update"
	fi
	local pin
	pin=$(printf 'Package: *\nPin: release n=trixie-backports\nPin-Priority: 50\n\nPackage: *\nPin: release n=sid\nPin-Priority: 1\n')
	if [ ! -f "$PIN" ] || [ "$(cat "$PIN")" != "$pin" ]; then
		echo "$pin" > "$PIN"
	fi
	if [ ! -f "$STAMP/apt-update" ]; then
		apt-get update -qq || die "apt-get update failed; check the machine's apt sources"
		touch "$STAMP/apt-update"
	fi
}

PKGS="busybox-static mmdebstrap libsystemd-dev e2fsprogs lz4 flex bison bc libelf-dev libssl-dev rsync cpio libclang1-19 clang-19 lld-19 llvm-19 rustc-web rust-web-src gcc make python3"
# QEMU comes from bookworm-backports: the machine image already carries
# qemu-utils from there, which conflicts with bookworm's older qemu-system.
QEMU_PKGS="qemu-system-x86"

host_packages() {
	local missing=""
	for p in $PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		note "installing:$missing"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null ||
			die "apt-get install of$missing failed"
	fi
	if ! command -v qemu-system-x86_64 >/dev/null; then
		note "installing $QEMU_PKGS from bookworm-backports"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports $QEMU_PKGS >/dev/null ||
			die "apt-get install of $QEMU_PKGS failed"
	fi
	rust_lib_src >/dev/null || die "rust-web-src installed but no /usr/src/rustc-*/library found"
}

bindgen() {
	local want=0.72.1
	if ! "$HOME/.cargo/bin/bindgen" --version 2>/dev/null | grep -q "$want"; then
		note "installing bindgen-cli $want (about 2 minutes)"
		"$(command -v cargo || echo "$HOME/.cargo/bin/cargo")" install --quiet bindgen-cli --version "$want" --locked ||
			die "cargo install bindgen-cli failed"
	fi
}

# Clippy must be the compiler's own version. Debian's rustc-web ships none, so
# the lint build uses the machine's rustup toolchain with the matching
# rust-src from trixie-backports (version derived from rustup's rustc).
clippy_toolchain() {
	local sysroot ver dir pkgver
	sysroot=$("$HOME/.cargo/bin/rustc" --print sysroot 2>/dev/null) || {
		note "no rustup toolchain: the clippy check will be skipped"
		return 0
	}
	[ -x "$sysroot/bin/clippy-driver" ] || {
		note "rustup toolchain has no clippy-driver: the clippy check will be skipped"
		return 0
	}
	ver=$("$sysroot/bin/rustc" --version | awk '{print $2}')
	dir=$LUO_CACHE/rust-src-$ver
	[ -d "$dir/usr/src/rustc-$ver/library" ] && return 0
	pkgver=$(apt-cache madison rust-src | awk -v v="$ver" '$3 ~ "^"v"[+]" {print $3; exit}')
	if [ -z "$pkgver" ]; then
		note "no rust-src $ver in the apt sources: the clippy check will be skipped"
		return 0
	fi
	note "fetching rust-src $pkgver for clippy"
	mkdir -p "$dir.tmp"
	(cd "$dir.tmp" && apt-get download -qq "rust-src=$pkgver" && dpkg-deb -x rust-src_*.deb .) ||
		die "cannot fetch rust-src $pkgver"
	rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

kernel_source() {
	local dir=$LUO_CACHE/linux-$KVER
	if [ -n "${KERNEL_SRC:-}" ]; then
		[ -f "$KERNEL_SRC/Makefile" ] || die "KERNEL_SRC=$KERNEL_SRC is not a kernel tree"
		return 0
	fi
	[ -f "$dir/.luo-unpacked" ] && return 0
	local tarball=${KERNEL_TARBALL:-}
	if [ -z "$tarball" ]; then
		local dl=$LUO_CACHE/download
		mkdir -p "$dl"
		if ! ls "$dl"/linux-source-${KVER}_*.deb >/dev/null 2>&1; then
			note "downloading linux-source-$KVER"
			(cd "$dl" && apt-get download -qq "linux-source-$KVER") ||
				die "apt-get download linux-source-$KVER failed (is trixie-backports in apt sources?)"
		fi
		if [ ! -f "$dl/usr/src/linux-source-$KVER.tar.xz" ]; then
			dpkg-deb -x "$dl"/linux-source-${KVER}_*.deb "$dl" || die "cannot unpack the linux-source package"
		fi
		tarball=$dl/usr/src/linux-source-$KVER.tar.xz
	fi
	note "unpacking $tarball"
	rm -rf "$dir" "$dir.tmp"
	mkdir -p "$dir.tmp"
	tar -xf "$tarball" -C "$dir.tmp" --strip-components=1 || die "cannot untar $tarball"
	[ -f "$dir.tmp/Makefile" ] || die "$tarball holds no kernel tree"
	mv "$dir.tmp" "$dir"
	touch "$dir/.luo-unpacked"
}

apt_sources
host_packages
bindgen
clippy_toolchain
kernel_source
note "setup complete"
