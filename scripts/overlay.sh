#!/usr/bin/env bash
# Link the project into the kernel tree and apply patches/, idempotently.
#
# The repository is linked (not copied) as kernel/liveupdate/luo_rs, and
# the files under rust/ one by one into the tree's rust/, so an edit here is
# seen by the next incremental build. Patches are recorded in
# the tree once applied; if the set in patches/ changes, the old set is
# reversed first so the tree never carries two versions of one edit.
source "$(dirname "$0")/lib.sh"

tree=$(kernel_tree)
[ -f "$tree/Makefile" ] || die "no kernel tree at $tree; run scripts/setup.sh (or set KERNEL_SRC)"

link=$tree/kernel/liveupdate/luo_rs
if [ "$(readlink "$link" 2>/dev/null)" != "$LUO_ROOT" ]; then
	ln -sfn "$LUO_ROOT" "$link" || die "cannot link $LUO_ROOT into $tree"
fi

# Kernel crate additions: each file under rust/ is linked at the same
# place in the tree; an upstream file of that name is never replaced.
(cd "$LUO_ROOT" && find rust -type f) | while read -r f; do
	dst=$tree/$f
	if [ -e "$dst" ] && [ ! -L "$dst" ]; then
		die "$f exists in the kernel tree; luo-rs must not replace upstream files"
	fi
	if [ "$(readlink "$dst" 2>/dev/null)" != "$LUO_ROOT/$f" ]; then
		mkdir -p "$(dirname "$dst")"
		ln -sfn "$LUO_ROOT/$f" "$dst"
	fi
done

applied=$tree/.luo-patches
want=$(cat "$LUO_ROOT"/patches/*.patch | sha256sum | cut -d' ' -f1)
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
for p in "$LUO_ROOT"/patches/*.patch; do
	if ! patch -d "$tree" -p1 -s -f --no-backup-if-mismatch --dry-run < "$p" >/dev/null; then
		die "patch $(basename "$p") does not apply to $tree (is it a Linux $KVER tree?)"
	fi
	patch -d "$tree" -p1 -s -f --no-backup-if-mismatch < "$p" >/dev/null
	cp "$p" "$applied/"
done
echo "$want" > "$applied/sum"
note "overlay applied to $tree"
