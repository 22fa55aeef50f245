#!/usr/bin/env bash
# Build one kernel variant incrementally: scripts/build-kernel.sh VARIANT
#
# VARIANT names config fragments joined by '-': "c", "rust", "rust-debug",
# "rust-clippy" (the Rust core built with rustup's toolchain and CLIPPY=1).
# base.config is always included; a variant with "debug" is built with
# Clang/LLVM 19 instead of GCC. The fragment list is resolved with
# allnoconfig, then every requested option is checked in the final .config,
# because Kconfig silently drops options whose dependencies are missing.
source "$(dirname "$0")/lib.sh"

variant=${1:?usage: build-kernel.sh VARIANT (for example c, rust, rust-debug)}
tree=$(kernel_tree)
out=$(build_dir "$variant")
# A new variant starts from the build of a sibling built with the same
# C compiler (the first fragment and the debug kind match): kbuild then
# recompiles only what the differing options touch, instead of the whole
# kernel. The clippy variant differs from its sibling only in the Rust
# toolchain, so it recompiles the Rust code and reuses every C object.
if [ ! -f "$out/.config" ]; then
	kind=$(tr - '\n' <<<"$variant" | grep -xE 'debug' || true)
	for sib in "$(cut -d- -f1 <<<"$variant")" c rust; do
		sdir=$(build_dir "${sib}${kind:+-$kind}")
		if [ "$sdir" != "$out" ] && [ -f "$sdir/vmlinux" ]; then
			note "starting $variant from the build of ${sib}${kind:+-$kind}"
			rm -rf "$out"
			cp -a "$sdir" "$out" || die "cannot copy $sdir"
			rm -f "$out/luo-fragment.config"
			# objtool's and rustc's dependency records name the build
			# directory; left pointing at the sibling, objtool would be
			# relinked and every object rebuilt after it.
			grep -rlIZ -- "$sdir/" "$out/tools" "$out/rust" 2>/dev/null |
				xargs -0 -r sed -i "s|$sdir/|$out/|g"
			break
		fi
	done
fi
mkdir -p "$out"
case "-$variant-" in
*-clippy-*)
	vars=$(clippy_make_vars) || die "no clippy toolchain (rustup clippy-driver + matching rust-src); run scripts/setup.sh"
	;;
*) vars=$(kernel_make_vars) ;;
esac
read -r -a mk <<<"$vars"
# Rust and KASAN together need Clang (init/Kconfig: RUST depends on
# !KASAN || CC_IS_CLANG), so debug variants are built with LLVM 19.
case "-$variant-" in
*-debug-*) mk+=(LLVM=-19) ;;
esac
MAKE=(make -s -C "$tree" O="$out" -j"$(nproc)" "${mk[@]}")

"$LUO_ROOT/scripts/overlay.sh"

frag=$out/luo-fragment.config
# Fragments are applied in order; a later one may override an option of an
# earlier one (`# CONFIG_X is not set` switches a choice member off).
{
	cat "$LUO_ROOT/configs/base.config"
	IFS=- read -r -a parts <<<"$variant"
	for p in "${parts[@]}"; do
		[ -f "$LUO_ROOT/configs/$p.config" ] || die "no configs/$p.config for variant $variant"
		cat "$LUO_ROOT/configs/$p.config"
	done
} | awk '
	/^CONFIG_[A-Za-z0-9_]+=/ { name = $0; sub(/=.*/, "", name) }
	/^# CONFIG_[A-Za-z0-9_]+ is not set$/ { name = $2 }
	name != "" { if (!(name in val)) order[n++] = name; val[name] = $0; name = "" }
	END { for (i = 0; i < n; i++) print val[order[i]] }
' > "$frag.new"

if ! cmp -s "$frag.new" "$frag" || [ ! -f "$out/.config" ]; then
	note "configuring $variant"
	"${MAKE[@]}" KCONFIG_ALLCONFIG="$frag.new" allnoconfig >/dev/null ||
		die "allnoconfig failed for $variant"
	"${MAKE[@]}" olddefconfig >/dev/null || die "olddefconfig failed for $variant"
	missing=""
	while IFS= read -r line; do
		grep -qxF "$line" "$out/.config" || missing="$missing $line"
	done < "$frag.new"
	[ -z "$missing" ] || die "Kconfig dropped requested options for $variant:$missing (a dependency is missing; see configs/)"
	mv "$frag.new" "$frag"
fi
rm -f "$frag.new"

note "building $variant kernel in $out"
start=$(date +%s)
"${MAKE[@]}" bzImage || die "kernel build of $variant failed (see the messages above)"
# The initramfs tool of this very tree; kbuild builds it only on demand.
if [ ! -x "$out/usr/gen_init_cpio" ]; then
	mkdir -p "$out/usr"
	gcc -O2 -o "$out/usr/gen_init_cpio" "$tree/usr/gen_init_cpio.c" || die "cannot build gen_init_cpio"
fi
"${MAKE[@]}" headers_install INSTALL_HDR_PATH="$out/hdr" >/dev/null || die "headers_install failed for $variant"
note "built $variant in $(( $(date +%s) - start ))s: $out/arch/x86/boot/bzImage"
