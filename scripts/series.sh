#!/usr/bin/env bash
# luo-rs as a patch series against Linux 7.3: scripts/series.sh COMMAND
#
#   make        commit each step of patches/series in a pristine 7.3 tree
#               and write the series with git format-patch (make series)
#   am          apply the written series with git am to pristine 7.3 and
#               check that it yields exactly the tree the overlay builds
#   checkpatch  run the tree's scripts/checkpatch.pl --strict on every
#               patch; fails on any ERROR
#   bisect      build the product kernel after every patch (make
#               series-check); prints one line per patch
#
# The pristine tree is a git repository made once from the same tarball as
# the build tree, in the cache. Commits carry the author of the checkout's
# HEAD and its date, so the same checkout writes the same series.
source "$(dirname "$0")/lib.sh"

repo=$LUO_CACHE/linux-$KVER-git
out=${SERIES_OUT:-$LUO_CACHE/series}

pristine_repo() {
	[ -f "$repo/.git/luo-pristine" ] && return 0
	local tarball=${KERNEL_TARBALL:-$LUO_CACHE/download/usr/src/linux-source-$KVER.tar.xz}
	[ -f "$tarball" ] || die "no $tarball to make a pristine tree from; run scripts/setup.sh"
	note "making a pristine git tree of Linux $KVER in $repo (once)"
	rm -rf "$repo" "$repo.tmp"
	mkdir -p "$repo.tmp"
	tar -xf "$tarball" -C "$repo.tmp" --strip-components=1 || die "cannot untar $tarball"
	(
		cd "$repo.tmp"
		git init -q -b luo-rs-base
		# Every file of the release is tracked, including the few that
		# upstream's .gitignore files match.
		git add -A -f .
		GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z git -c user.name=Linux -c user.email=linux@localhost \
			commit -q -m "Linux $KVER"
		git tag -f "v$KVER"
	) || die "cannot make the pristine git tree"
	touch "$repo.tmp/.git/luo-pristine"
	mv "$repo.tmp" "$repo"
}

# Identity and date of the commits: the checkout's HEAD.
ident() {
	git -C "$LUO_ROOT" log -1 --format="$1" 2>/dev/null || true
}

git_series() {
	git -C "$repo" -c user.name="$name" -c user.email="$email" "$@"
}

make_series() {
	pristine_repo
	name=$(ident %an); name=${name:-luo-rs}
	email=$(ident %ae); email=${email:-luo-rs@localhost}
	export GIT_AUTHOR_DATE GIT_COMMITTER_DATE
	GIT_AUTHOR_DATE=$(ident %aI); GIT_AUTHOR_DATE=${GIT_AUTHOR_DATE:-2000-01-01T00:00:00Z}
	GIT_COMMITTER_DATE=$GIT_AUTHOR_DATE
	git_series checkout -q -f -B luo-rs "v$KVER"
	git_series clean -q -f -d -x
	local patch paths f dst msg
	while read -r patch paths; do
		git_series apply --index "$patch" || die "$(basename "$patch") does not apply with git apply"
		for f in $(series_files $paths); do
			dst=$repo/$(tree_path "$f")
			mkdir -p "$(dirname "$dst")"
			cp "$LUO_ROOT/$f" "$dst"
			git_series add -f "$(tree_path "$f")"
		done
		# The commit message is what precedes the first diff in the patch.
		msg=$(awk '/^(diff --git|--- a\/)/ { exit } { print }' "$patch")
		printf '%s\n\nSigned-off-by: %s <%s>\n' "$msg" "$name" "$email" |
			git_series commit -q -F - || die "cannot commit $(basename "$patch")"
	done < <(series_steps)
	git_series config branch.luo-rs.description "$(cover_letter)"
	rm -rf "$out"
	mkdir -p "$out"
	git_series format-patch -q --cover-letter --cover-from-description=subject \
		-o "$out" "v$KVER..luo-rs" || die "git format-patch failed"
	note "$(ls "$out"/*.patch | wc -l) files (cover letter and patches) in $out"
}

cover_letter() {
	cat <<-EOF
	luo-rs: the Live Update Orchestrator in Rust

	This series adds a second implementation of the Live Update
	Orchestrator and of the memfd file handler, written in Rust, beside
	the C ones; Kconfig chooses which is built, and the C ones stay the
	default. Both implementations keep the same userspace ABI, the same
	C API of include/linux/liveupdate.h and the same luo-v5 and memfd-v2
	handover formats, so a kernel with either live updates into a kernel
	with the other, and the liveupdate selftests run unchanged on both.

	What changes is what happens on bad input: the Rust core checks every
	field the previous kernel wrote and refuses malformed data with a log
	line instead of a panic or a warning, and the Rust memfd handler
	preserves only the folios a file holds, so holes stay holes.
	Documentation/core-api/liveupdate-rust.rst lists every difference.

	Patch 1 lets KHO's users restore untrusted addresses quietly; patches
	2-6 add the kernel-crate abstractions (rwsem, anonymous-inode files,
	extensible ioctl structures, KHO, live update handlers and FLBs);
	7-9 the core, the memfd handler and a test handler; 10-15 kselftests
	that hold both cores to the same behaviour (the errno of every
	ioctl, many sessions across chains of kexecs, memfds of every
	shape, the file lifecycle's error paths, every allocation failed in
	turn, racing random calls); then the documentation, and last the
	Kconfig glue, so that every patch builds.
	EOF
}

series_patches() {
	ls "$out"/[0-9][0-9][0-9][0-9]-*.patch | grep -v '/0000-cover-letter.patch$'
}

# git am the written series onto pristine 7.3, then compare the result
# with the overlaid build tree file by file, both ways.
check_am() {
	pristine_repo
	[ -d "$out" ] || die "no series in $out; run scripts/series.sh make"
	"$LUO_ROOT/scripts/overlay.sh"
	git -C "$repo" checkout -q -f -B luo-rs-am "v$KVER"
	git -C "$repo" clean -q -f -d -x
	git -C "$repo" -c user.name=am -c user.email=am@localhost am -q --whitespace=error $(series_patches) ||
		{ git -C "$repo" am --abort 2>/dev/null; die "the series does not apply with git am"; }
	local tree bad=0 f changed expected
	tree=$(kernel_tree)
	changed=$(git -C "$repo" diff --name-only "v$KVER" HEAD | sort)
	# What the overlay changes: the files its patches touch and the files
	# it links in (the luo-rs directory stands for the files the series
	# names there).
	expected=$(
		while read -r patch paths; do
			sed -n 's|^+++ b/||p' "$patch"
			for f in $(series_files $paths); do tree_path "$f"; done
		done < <(series_steps) | sort -u
	)
	if [ "$changed" != "$expected" ]; then
		echo "files the series changes and files the overlay changes differ:"
		diff <(echo "$expected") <(echo "$changed") | sed -n 's/^</  overlay only:/p; s/^>/  series only:/p'
		bad=1
	fi
	for f in $changed; do
		if ! cmp -s "$repo/$f" "$tree/$f"; then
			echo "differs from the overlaid tree: $f"
			bad=1
		fi
	done
	[ $bad = 0 ] || die "the series does not yield the overlaid tree"
	echo "series applies with git am: $(series_patches | wc -l) patches, $(echo "$changed" | wc -l) files identical to the overlaid tree"
}

check_patch() {
	pristine_repo
	[ -d "$out" ] || die "no series in $out; run scripts/series.sh make"
	local p errors=0 total report
	for p in $(series_patches); do
		report=$(cd "$repo" && perl scripts/checkpatch.pl --strict --no-tree --show-types "$p" 2>&1 || true)
		# The summary line; without it checkpatch did not get through the patch.
		total=$(grep '^total: ' <<<"$report" || true)
		if [ -z "$total" ]; then
			echo "$(basename "$p"): checkpatch gave no summary:"
			echo "$report" | tail -5
			errors=$((errors + 1))
			continue
		fi
		echo "$(basename "$p"): ${total#total: }"
		case $total in
		"total: 0 errors"*) ;;
		*)
			grep -A3 "^ERROR:" <<<"$report"
			errors=$((errors + 1))
			;;
		esac
	done
	[ $errors = 0 ] || die "checkpatch --strict reports errors in $errors patches"
}

# Build the product's configuration after every patch, incrementally, in a
# build directory of its own; the configuration is the product's, so before
# the last patch Kconfig drops the options that select luo-rs and the
# build shows that the patches so far break nothing.
bisect() {
	pristine_repo
	[ -d "$out" ] || die "no series in $out; run scripts/series.sh make"
	local rustcfg bdir vars p n=0 failed=0 start label
	rustcfg=$(build_dir rust)/.config
	[ -f "$rustcfg" ] || die "build the product first (scripts/build-kernel.sh rust)"
	bdir=$(build_dir series-bisect)
	mkdir -p "$bdir"
	read -r -a vars <<<"$(kernel_make_vars)"
	git -C "$repo" checkout -q -f -B luo-rs-bisect "v$KVER"
	git -C "$repo" clean -q -f -d -x
	for p in "" $(series_patches); do
		if [ -n "$p" ]; then
			git -C "$repo" -c user.name=am -c user.email=am@localhost am -q "$p" ||
				die "$(basename "$p") does not apply"
		fi
		n=$((n + 1))
		label=${p:+$(basename "$p")}
		label=${label:-Linux $KVER}
		cp "$rustcfg" "$bdir/.config"
		start=$(date +%s)
		if make -s -C "$repo" O="$bdir" -j"$(nproc)" "${vars[@]}" olddefconfig >/dev/null &&
			make -s -C "$repo" O="$bdir" -j"$(nproc)" "${vars[@]}" bzImage >"$bdir/log" 2>&1; then
			echo "ok    $(( $(date +%s) - start ))s $label"
		else
			echo "FAIL  $(( $(date +%s) - start ))s $label"
			tail -20 "$bdir/log"
			failed=$((failed + 1))
		fi
	done
	# After the last patch the tree is the overlaid one: the product's
	# configuration must survive whole, so that the last build was the
	# product's and not a kernel without luo-rs.
	if ! diff <(grep '^CONFIG_' "$rustcfg" | sort) <(grep '^CONFIG_' "$bdir/.config" | sort) >"$bdir/config.diff"; then
		echo "after the last patch the configuration is not the product's:"
		head -20 "$bdir/config.diff"
		failed=$((failed + 1))
	fi
	[ $failed = 0 ] || die "$failed of $n builds failed"
	echo "all $n builds passed (Linux $KVER and after each of $((n - 1)) patches)"
}

case ${1:-make} in
make) make_series ;;
am) check_am ;;
checkpatch) check_patch ;;
bisect) bisect ;;
*) die "usage: scripts/series.sh make|am|checkpatch|bisect" ;;
esac
