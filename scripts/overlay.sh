#!/usr/bin/env bash
# Link the project into the kernel tree and apply patches/, idempotently.
#
# The repository is linked (not copied) as kernel/liveupdate/luo_rs, and
# the files patches/series places elsewhere (the kernel crate's, the
# documentation) one by one at their tree paths, so an edit here is seen by
# the next incremental build. Patches are applied in the series' order and
# recorded in the tree; if the series changes, the old set is reversed
# first so the tree never carries two versions of one edit.
source "$(dirname "$0")/lib.sh"

tree=$(kernel_tree)
[ -f "$tree/Makefile" ] || die "no kernel tree at $tree; run scripts/setup.sh (or set KERNEL_SRC)"

link=$tree/kernel/liveupdate/luo_rs
if [ "$(readlink "$link" 2>/dev/null)" != "$LUO_ROOT" ]; then
	ln -sfn "$LUO_ROOT" "$link" || die "cannot link $LUO_ROOT into $tree"
fi

# The files patches/series adds outside the luo-rs directory (the kernel
# crate, Documentation, selftests) are linked one by one at their tree
# paths; an upstream file of that name is never replaced. Every project
# file at such a path must belong to a patch of the series, so the overlay
# and the series agree.
listed=$(series_steps | while read -r patch paths; do series_files $paths; done)
unlisted=$(series_files rust Documentation/core-api tools/testing | grep -vxF -f <(echo "$listed") || true)
[ -z "$unlisted" ] || die "in no patch of patches/series: $unlisted"
while read -r f; do
	rel=$(tree_path "$f")
	case $rel in kernel/liveupdate/luo_rs/*) continue ;; esac
	dst=$tree/$rel
	if [ -e "$dst" ] && [ ! -L "$dst" ]; then
		die "$rel exists in the kernel tree; luo-rs must not replace upstream files"
	fi
	if [ "$(readlink "$dst" 2>/dev/null)" != "$LUO_ROOT/$f" ]; then
		mkdir -p "$(dirname "$dst")"
		ln -sfn "$LUO_ROOT/$f" "$dst"
	fi
done <<<"$listed"

applied=$tree/.luo-patches
want=$(series_steps | while read -r patch paths; do cat "$patch"; done | sha256sum | cut -d' ' -f1)
have=$(cat "$applied/sum" 2>/dev/null || true)
[ "$want" = "$have" ] && exit 0

if [ -d "$applied" ]; then
	for p in $(ls -r "$applied"/*.patch 2>/dev/null); do
		patch -d "$tree" -p1 -R -s -f --no-backup-if-mismatch < "$p" >/dev/null ||
			die "cannot reverse the previously applied $(basename "$p"); restore $tree from the tarball (delete it and rerun setup)"
	done
	rm -rf "$applied"
fi
mkdir -p "$applied"
n=0
series_steps | while read -r p paths; do
	n=$((n + 1))
	if ! patch -d "$tree" -p1 -s -f --no-backup-if-mismatch --dry-run < "$p" >/dev/null; then
		die "patch $(basename "$p") does not apply to $tree (is it a Linux $KVER tree?)"
	fi
	patch -d "$tree" -p1 -s -f --no-backup-if-mismatch < "$p" >/dev/null
	# Recorded under its place in the series, so that they are reversed in order.
	cp "$p" "$applied/$(printf %04d $n)-$(basename "$p")"
done
echo "$want" > "$applied/sum"
note "overlay applied to $tree"
