# Shared settings for the luo-rs scripts; sourced, never run.
#
# Every path a script needs is derived here once so that the setup, build
# and VM steps agree on where the caches live and which toolchain is used.

set -euo pipefail

LUO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Caches live outside the checkout so that a fresh clone (CI) reuses the
# downloaded source, the toolchain and the incremental kernel build.
LUO_CACHE=${LUO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luo-rs}
KVER=7.3
# Run from "make test" too: the kernel build must not inherit our make's flags.
unset MAKEFLAGS MFLAGS MAKELEVEL

die() {
	echo "luo-rs: error: $*" >&2
	exit 1
}

note() {
	echo "luo-rs: $*" >&2
}

# The Rust standard library source that matches Debian's rustc-web; the
# version directory is read from the installed package, never hard-coded.
rust_lib_src() {
	local d
	for d in /usr/src/rustc-*/library; do
		[ -d "$d" ] && { echo "$d"; return 0; }
	done
	return 1
}

# Variables every kernel make invocation needs for the Rust toolchain.
kernel_make_vars() {
	local lib
	lib=$(rust_lib_src) || die "no Rust library source under /usr/src; run scripts/setup.sh"
	echo RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
		RUST_LIB_SRC="$lib" BINDGEN="$HOME/.cargo/bin/bindgen"
}

# The same for the clippy lint build: rustup's toolchain and the rust-src of
# its exact version (see setup.sh). Fails if either is missing.
clippy_make_vars() {
	local sysroot ver lib
	sysroot=$("$HOME/.cargo/bin/rustc" --print sysroot 2>/dev/null) || return 1
	ver=$("$sysroot/bin/rustc" --version | awk '{print $2}')
	lib=$LUO_CACHE/rust-src-$ver/usr/src/rustc-$ver/library
	[ -d "$lib" ] && [ -x "$sysroot/bin/clippy-driver" ] || return 1
	echo RUSTC="$sysroot/bin/rustc" HOSTRUSTC="$sysroot/bin/rustc" RUSTDOC="$sysroot/bin/rustdoc" \
		RUST_LIB_SRC="$lib" BINDGEN="$HOME/.cargo/bin/bindgen" \
		CLIPPY=1 CLIPPY_DRIVER="$sysroot/bin/clippy-driver"
}

export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}

# The kernel tree the project is overlaid into: the user's own (KERNEL_SRC)
# or the one unpacked into the cache by setup.sh.
kernel_tree() {
	echo "${KERNEL_SRC:-$LUO_CACHE/linux-$KVER}"
}

# Build outputs of one configuration variant (for example "c" or "rust").
build_dir() {
	echo "$LUO_CACHE/build/$1"
}

# The steps of patches/series, one per line: the patch's path, then the
# project paths its commit adds (folders as given).
series_steps() {
	local line
	while read -r line; do
		case $line in '#'* | '') continue ;; esac
		set -- $line
		echo "$LUO_ROOT/patches/$1" "${@:2}"
	done < "$LUO_ROOT/patches/series"
}

# The project files a series step adds, one per line: each path expanded to
# the files under it that git knows or would add (build outputs are ignored).
series_files() {
	[ $# -gt 0 ] || return 0
	git -C "$LUO_ROOT" ls-files --cached --others --exclude-standard -- "$@" | sort -u
}

# Where a project file lives in the kernel tree: the kernel crate,
# Documentation and selftests at their own paths, the rest in the luo-rs
# directory (kernel/liveupdate/luo_rs, linked to the checkout).
tree_path() {
	case $1 in
	rust/* | Documentation/core-api/* | tools/testing/*) echo "$1" ;;
	*) echo "kernel/liveupdate/luo_rs/$1" ;;
	esac
}
