/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The shmem and page cache steps of the Rust memfd live update handler.
 * They use mm/internal.h, which only code under mm/ may include, or
 * static inline functions of linux/fs.h and linux/shmem_fs.h, so they are
 * written in C (memfd_mm.c); each does one step of mm/memfd_luo.c and the
 * Rust handler does the rest. Included by rust/bindings/bindings_helper.h.
 */
#ifndef _LUO_MEMFD_MM_H
#define _LUO_MEMFD_MM_H

#include <linux/types.h>

struct file;
struct folio;

bool luo_memfd_can_preserve(struct file *file);
void luo_memfd_lock(struct file *file);
void luo_memfd_unlock(struct file *file);
void luo_memfd_set_frozen(struct file *file, bool frozen);
u64 luo_memfd_size(struct file *file);
u64 luo_memfd_pos(struct file *file);
int luo_memfd_seals(struct file *file);
u64 luo_memfd_next_run(struct file *file, u64 *first, u64 last);
u64 luo_memfd_populated_pages(struct file *file);
long luo_memfd_pin_folios(struct file *file, u64 start, u64 end,
			  struct folio **folios, unsigned int max_folios);
void luo_memfd_folio_place(struct folio *folio, u64 *pfn, u64 *index);
struct folio *luo_memfd_pfn_folio(u64 pfn);
int luo_memfd_preserve_folios(struct folio *const *folios, u64 nr,
			      void *entries, u64 *done, u64 *pages);
struct file *luo_memfd_new_file(unsigned int seals, u64 pos, u64 size);
int luo_memfd_restore_folios(struct file *file, const void *entries, u64 nr,
			     u64 pages, u64 *failed, u64 *added, u64 *nr_pages);
u64 luo_memfd_discard_folios(const void *entries, u64 nr, u64 *missing,
			     u64 *first_missing);
void luo_memfd_account(struct file *file, long pages);

int luo_memfd_init(void);
void luo_memfd_corrupt_request(const char *name);

#endif /* _LUO_MEMFD_MM_H */
