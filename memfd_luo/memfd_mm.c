// SPDX-License-Identifier: GPL-2.0
/*
 * shmem and page cache steps of the Rust memfd live update handler, the
 * parts that need mm/internal.h or inline helpers of the mm headers. The
 * order of operations and every decision is in the Rust files next to it,
 * but for where a restored folio may go: that is checked where its size is
 * known, in luo_memfd_restore_folio(). Callers hold the references and
 * locks each function documents.
 *
 * The handler registers at late_initcall, like mm/memfd_luo.c; Rust's
 * module! only offers the device initcall level for built-in code.
 */

#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/init.h>
#include <linux/kexec_handover.h>
#include <linux/kho/abi/memfd.h>
#include <linux/memcontrol.h>
#include <linux/memfd.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/swap.h>
#include <uapi/linux/memfd.h>

#include "internal.h"
#include "memfd_mm.h"

/* A memfd (an unlinked shmem file) that the handler can preserve. */
bool luo_memfd_can_preserve(struct file *file)
{
	return shmem_file(file) && !file_inode(file)->i_nlink;
}

/* Size changes (ftruncate, fallocate, writes past the end) wait for this. */
void luo_memfd_lock(struct file *file)
{
	inode_lock(file_inode(file));
}

void luo_memfd_unlock(struct file *file)
{
	inode_unlock(file_inode(file));
}

/* With the inode lock held: refuse (or allow again) changes of the size. */
void luo_memfd_set_frozen(struct file *file, bool frozen)
{
	shmem_freeze(file_inode(file), frozen);
}

u64 luo_memfd_size(struct file *file)
{
	return i_size_read(file_inode(file));
}

u64 luo_memfd_pos(struct file *file)
{
	return file->f_pos;
}

int luo_memfd_seals(struct file *file)
{
	return memfd_get_seals(file);
}

/*
 * No folio straddles a multiple of this many pages (folios are naturally
 * aligned and at most MAX_PAGECACHE_ORDER), so runs cut there can be pinned
 * one at a time and still meet every folio exactly once.
 */
#define LUO_MEMFD_RUN_ALIGN BIT(16)

/*
 * Finds the first run of populated page indices, resident folios or folios
 * swapped out, at or after *@first and not after @last. Sets *@first to
 * its start and returns the index after its end, or 0 if there is none.
 * Holes end a run, and so does every multiple of LUO_MEMFD_RUN_ALIGN, which
 * also bounds the time spent under RCU.
 */
u64 luo_memfd_next_run(struct file *file, u64 *first, u64 last)
{
	XA_STATE(xas, &file->f_mapping->i_pages, *first);
	u64 start, stop, end;
	void *entry;

	BUILD_BUG_ON(MAX_PAGECACHE_ORDER > 16);

	rcu_read_lock();
	xas_for_each(&xas, entry, last) {
		if (xas_retry(&xas, entry))
			continue;
		break;
	}
	if (!entry) {
		rcu_read_unlock();
		return 0;
	}
	start = max_t(u64, xas.xa_index, *first);
	stop = min_t(u64, last, round_down(start, LUO_MEMFD_RUN_ALIGN) +
				 LUO_MEMFD_RUN_ALIGN - 1);
	xas_set(&xas, start);
	for (end = start; end <= stop; end++) {
		/* Sibling and retry entries belong to a present folio too. */
		if (!xas_next(&xas))
			break;
	}
	rcu_read_unlock();
	*first = start;
	return end;
}

/* Pages the memfd holds in the page cache or in swap, past EOF included. */
u64 luo_memfd_populated_pages(struct file *file)
{
	struct inode *inode = file_inode(file);

	return READ_ONCE(inode->i_mapping->nrpages) +
	       READ_ONCE(SHMEM_I(inode)->swapped);
}

/*
 * Pins the folios that hold bytes @start to @end (inclusive, inside the
 * file) into @folios: swapped-out folios are read back, folios in CMA or
 * KHO scratch memory are moved out, holes are allocated. Returns how many
 * or an error.
 */
long luo_memfd_pin_folios(struct file *file, u64 start, u64 end,
			  struct folio **folios, unsigned int max_folios)
{
	pgoff_t offset;

	return memfd_pin_folios(file, start, end, folios, max_folios, &offset);
}

/* Where the next kernel finds a folio, and its page offset in the file. */
void luo_memfd_folio_place(struct folio *folio, u64 *pfn, u64 *index)
{
	*pfn = folio_pfn(folio);
	*index = folio->index;
}

/* The folio at page frame @pfn, which the caller pinned. */
struct folio *luo_memfd_pfn_folio(u64 pfn)
{
	return pfn_folio(pfn);
}

/*
 * A pinned folio about to be handed over: dirty (so the next kernel never
 * reclaims it as clean) and uptodate (a never-written fallocated folio is
 * zeroed first).
 */
static void luo_memfd_prepare_folio(struct folio *folio)
{
	folio_lock(folio);
	folio_mark_dirty(folio);
	if (!folio_test_uptodate(folio)) {
		folio_zero_range(folio, 0, folio_size(folio));
		flush_dcache_folio(folio);
		folio_mark_uptodate(folio);
	}
	folio_unlock(folio);
}

/*
 * Preserves the @nr pinned folios @folios for the next kernel, each made
 * dirty and uptodate, and writes their entries of the folio array into
 * @entries (room for @nr), in order. The loop is here, like the restore
 * loop, so that the per-folio work is C's own loop. Stops at the first
 * failure of KHO: returns 0 or that error; either way *@done folios were
 * preserved (the caller withdraws them on failure), holding *@pages pages.
 */
int luo_memfd_preserve_folios(struct folio *const *folios, u64 nr,
			      void *entries, u64 *done, u64 *pages)
{
	struct memfd_luo_folio_ser *e = entries;
	u64 i, n = 0;
	int err = 0;

	for (i = 0; i < nr; i++, e++) {
		struct folio *folio = folios[i];

		err = kho_preserve_folio(folio);
		if (err)
			break;
		luo_memfd_prepare_folio(folio);
		e->pfn = folio_pfn(folio);
		e->flags = MEMFD_LUO_FOLIO_DIRTY | MEMFD_LUO_FOLIO_UPTODATE;
		e->index = folio->index;
		n += folio_nr_pages(folio);
	}
	*done = i;
	*pages = n;
	return err;
}

/*
 * A new memfd with the given seals (the caller checked them), position and
 * size, owned by the current task, without pages yet.
 */
struct file *luo_memfd_new_file(unsigned int seals, u64 pos, u64 size)
{
	struct file *file;
	int err;

	file = memfd_alloc_file("", MFD_ALLOW_SEALING);
	if (IS_ERR(file))
		return file;

	err = memfd_add_seals(file, seals);
	if (err) {
		fput(file);
		return ERR_PTR(err);
	}
	vfs_setpos(file, pos, MAX_LFS_FILESIZE);
	i_size_write(file_inode(file), size);
	return file;
}

/*
 * Restores the folio the previous kernel preserved at page frame @pfn and
 * puts it at page @index of @file, a file of @pages pages. The folio must
 * start inside the file at an index aligned to its size; a large folio may
 * reach past the end (shmem allocates such folios). Once restored, its size
 * is stored in *@nr_pages and its reference is consumed in every case: the
 * page cache owns it, or it is freed.
 *
 * Everything here comes from the previous kernel's data. Returns 0,
 * -ENOENT if no folio is preserved at @pfn (KHO refuses it without a
 * warning), -EINVAL if the folio does not fit at @index, or the error of
 * adding it. The pages added are charged to the inode's blocks by the
 * caller, luo_memfd_restore_folios(), for a page of entries at a time.
 */
static int luo_memfd_restore_folio(struct file *file, u64 pfn, u64 index,
				   u64 pages, bool dirty, bool uptodate,
				   u64 *nr_pages)
{
	struct address_space *mapping = file_inode(file)->i_mapping;
	phys_addr_t phys = PFN_PHYS(pfn);
	struct folio *folio;
	int err;

	if (!pfn || PHYS_PFN(phys) != pfn)
		return -ENOENT;
	folio = kho_try_restore_folio(phys);
	if (!folio)
		return -ENOENT;
	*nr_pages = folio_nr_pages(folio);
	if (!IS_ALIGNED(index, *nr_pages) || index >= pages) {
		folio_put(folio);
		return -EINVAL;
	}

	__folio_set_locked(folio);
	__folio_set_swapbacked(folio);

	err = mem_cgroup_charge(folio, NULL, mapping_gfp_mask(mapping));
	if (err)
		goto unlock;

	err = shmem_add_to_page_cache(folio, mapping, index, NULL,
				      mapping_gfp_mask(mapping));
	if (err)
		goto unlock;

	if (uptodate)
		folio_mark_uptodate(folio);
	if (dirty)
		folio_mark_dirty(folio);
	folio_add_lru(folio);
unlock:
	folio_unlock(folio);
	folio_put(folio);
	return err;
}

/*
 * Restores the folios of @nr entries of the previous kernel's folio array
 * (@entries, one page of it at most) into @file, a file of @pages pages,
 * with luo_memfd_restore_folio() each, skipping empty entries. The loop is
 * here, not in the Rust handler, so that the per-folio work is C's own
 * loop, without a call across the languages per folio; and the blocks the
 * folios take are charged to the inode once for all of them, where
 * mm/memfd_luo.c charges each folio on its own.
 *
 * Stops at the first failure: returns 0 when every entry was restored,
 * else that entry's error, with its position in *@failed and its folio's
 * size (0 if not preserved) in *@nr_pages; or, if the blocks cannot be
 * charged and no entry failed, that error with *@failed set to @nr.
 * *@added counts the pages added and charged, for luo_memfd_account():
 * folios added but not charged stay in the page cache uncounted, to be
 * freed with the file.
 */
int luo_memfd_restore_folios(struct file *file, const void *entries, u64 nr,
			     u64 pages, u64 *failed, u64 *added, u64 *nr_pages)
{
	const struct memfd_luo_folio_ser *e = entries;
	u64 i, in = 0;
	int err = 0;

	for (i = 0; i < nr; i++, e++) {
		u64 n = 0;

		if (!e->pfn)
			continue;
		err = luo_memfd_restore_folio(file, e->pfn, e->index, pages,
					      e->flags & MEMFD_LUO_FOLIO_DIRTY,
					      e->flags & MEMFD_LUO_FOLIO_UPTODATE, &n);
		if (err) {
			*failed = i;
			*nr_pages = n;
			break;
		}
		in += n;
	}
	if (in) {
		int acct = shmem_inode_acct_blocks(file_inode(file), in);

		/* An entry's own failure is reported first: the rest follows it. */
		if (acct) {
			if (!err) {
				*failed = nr;
				*nr_pages = 0;
				err = acct;
			}
			return err;
		}
		*added += in;
	}
	return err;
}

/*
 * Frees the folios that @nr entries of the previous kernel's folio array
 * (@entries, one page of it at most) name, for a memfd that will not be
 * retrieved. Returns how many were freed; *@missing counts the entries
 * whose folio KHO did not have, and *@first_missing is the first of them.
 */
u64 luo_memfd_discard_folios(const void *entries, u64 nr, u64 *missing,
			     u64 *first_missing)
{
	const struct memfd_luo_folio_ser *e = entries;
	u64 i, freed = 0;

	for (i = 0; i < nr; i++, e++) {
		phys_addr_t phys = PFN_PHYS(e->pfn);
		struct folio *folio;

		if (!e->pfn)
			continue;
		folio = PHYS_PFN(phys) == e->pfn ? kho_try_restore_folio(phys) : NULL;
		if (!folio) {
			if (!(*missing)++)
				*first_missing = e->pfn;
			continue;
		}
		folio_put(folio);
		freed++;
	}
	return freed;
}

void luo_memfd_account(struct file *file, long pages)
{
	shmem_recalc_inode(file_inode(file), pages, 0);
}

static int __init luo_memfd_late_init(void)
{
	return luo_memfd_init();
}
late_initcall(luo_memfd_late_init);

#ifdef CONFIG_LIVEUPDATE_RUST_CORRUPT_TEST
/* Test builds only: damage the first memfd frozen at the next kexec. */
static int __init luo_memfd_corrupt_param(char *buf)
{
	luo_memfd_corrupt_request(buf);
	return 1;
}
__setup("luo_memfd_corrupt=", luo_memfd_corrupt_param);
#endif
