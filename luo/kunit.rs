// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the Rust LUO core, run at boot with `CONFIG_LIVEUPDATE_RUST_KUNIT_TEST`.
//!
//! They cover what a peer kernel or a user can get wrong: the handover decoders are fed
//! malformed input, and the encoders are checked against the byte layout the C core reads.

use kernel::prelude::kunit_tests;

#[kunit_tests(luo_rs_abi)]
mod abi_tests {
    use crate::abi::{
        self,
        Malformed,
        BLOCK_SIZE, //
    };
    use kernel::prelude::*;

    fn root(compat: &[u8; 8], num: u64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(compat);
        abi::put_u64(&mut b, abi::root::LIVEUPDATE_NUM, num);
        abi::put_u64(&mut b, abi::root::SESSIONS_PA, 0x1000);
        abi::put_u64(&mut b, abi::root::FLBS_PA, 0x2000);
        b
    }

    #[test]
    fn root_round_trip() -> Result {
        let mut b = [0xffu8; 32];
        abi::encode_root(&mut b, 7, 0x3000);
        assert_eq!(&b[..8], b"luo-v5\0\0");
        let r = abi::decode_root(&b, 32)?;
        assert_eq!(r.liveupdate_num, 7);
        assert_eq!(r.sessions_pa, 0);
        Ok(())
    }

    #[test]
    fn root_layout_matches_c() -> Result {
        let b = root(b"luo-v5\0\0", 3);
        // struct luo_ser: compatible[8], liveupdate_num, sessions_pa, flbs_pa; packed.
        assert_eq!(
            u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            3
        );
        let r = abi::decode_root(&b, 32)?;
        assert_eq!(r.sessions_pa, 0x1000);
        Ok(())
    }

    #[test]
    fn root_rejects_short_blob() {
        let b = root(b"luo-v5\0\0", 1);
        assert_eq!(
            abi::decode_root(&b, 31).err(),
            Some(Malformed::RootTooSmall(31))
        );
        assert_eq!(
            abi::decode_root(&b[..16], 32).err(),
            Some(Malformed::RootTooSmall(16))
        );
    }

    #[test]
    fn root_rejects_other_versions() {
        for compat in [
            b"luo-v4\0\0",
            b"luo-v5X\0",
            b"luo-v6\0\0",
            b"\0\0\0\0\0\0\0\0",
        ] {
            assert_eq!(
                abi::decode_root(&root(compat, 1), 32).err(),
                Some(Malformed::Incompatible)
            );
        }
    }

    #[test]
    fn root_accepts_longer_blob() -> Result {
        // The C reader accepts blob-size >= 32.
        abi::decode_root(&root(b"luo-v5\0\0", 1), 64)?;
        Ok(())
    }

    fn block(next: u64, count: u64) -> Result<KBox<[u8; BLOCK_SIZE]>> {
        let mut b = KBox::new([0u8; BLOCK_SIZE], GFP_KERNEL)?;
        abi::put_u64(&mut b[..], abi::block::NEXT, next);
        abi::put_u64(&mut b[..], abi::block::COUNT, count);
        Ok(b)
    }

    #[test]
    fn block_counts_are_checked() -> Result {
        // An empty block carries nothing and is accepted (a C kernel writes one).
        assert_eq!(
            abi::decode_block(&*block(0, 0)?, abi::session::SIZE)?,
            (0, 0)
        );
        assert_eq!(
            abi::decode_block(&*block(0, 52)?, abi::session::SIZE).err(),
            Some(Malformed::BlockCount(52))
        );
        assert!(abi::decode_block(&*block(0, u64::MAX)?, abi::session::SIZE).is_err());
        assert_eq!(
            abi::decode_block(&*block(0x5000, 51)?, abi::session::SIZE)?,
            (0x5000, 51)
        );
        assert_eq!(abi::decode_block(&*block(0, 63)?, 64)?, (0, 63));
        assert!(abi::decode_block(&*block(0, 64)?, 64).is_err());
        Ok(())
    }

    #[test]
    fn entries_never_leave_the_block() -> Result {
        let b = block(0, 1)?;
        assert_eq!(
            abi::entry(&b, abi::session::SIZE, 0).len(),
            abi::session::SIZE
        );
        assert_eq!(
            abi::entry(&b, abi::session::SIZE, 50).len(),
            abi::session::SIZE
        );
        assert!(abi::entry(&b, abi::session::SIZE, 51).is_empty());
        assert!(abi::entry(&b, abi::session::SIZE, usize::MAX).is_empty());
        assert!(abi::entry(&b, usize::MAX, 1).is_empty());
        assert_eq!(abi::get_u64(&b[..], BLOCK_SIZE - 4), 0);
        assert_eq!(abi::get_u64(&b[..], usize::MAX), 0);
        Ok(())
    }

    fn session_entry(name: &[u8], files: u64, count: u64) -> [u8; 80] {
        let mut e = [0u8; 80];
        e[..name.len()].copy_from_slice(name);
        abi::put_u64(&mut e, abi::session::FILES, files);
        abi::put_u64(&mut e, abi::session::FILE_COUNT, count);
        e
    }

    #[test]
    fn session_entries_are_checked() -> Result {
        let r = abi::decode_session(&session_entry(b"vm-42\0garbage", 0, 0))?;
        assert_eq!(&r.name[..6], b"vm-42\0");
        // Bytes after the terminator are not carried over.
        assert!(r.name[6..].iter().all(|&b| b == 0));
        let bad = |e: &[u8]| abi::decode_session(e).err();
        assert_eq!(
            bad(&session_entry(b"\0", 0, 0)),
            Some(Malformed::SessionName)
        );
        assert_eq!(
            bad(&session_entry(&[b'x'; 64], 0, 0)),
            Some(Malformed::SessionName)
        );
        assert_eq!(bad(&session_entry(b"a\0", 0, 3)), Some(Malformed::FileSet));
        assert_eq!(
            bad(&session_entry(b"a\0", 0x9000, 0)),
            Some(Malformed::FileSet)
        );
        assert_eq!(bad(&[0u8; 79]), Some(Malformed::EntrySize(79)));
        let r = abi::decode_session(&session_entry(b"a\0", 0x9000, 2))?;
        assert_eq!(r.file_count, 2);
        Ok(())
    }

    #[test]
    fn file_entries_match_c() -> Result {
        let mut e = [0xaau8; 64];
        abi::encode_file(&mut e, b"memfd-v2", 0x1122_3344_5566_7788, 999);
        // compatible[48] NUL-padded, then data and token, native-endian.
        assert_eq!(&e[..9], b"memfd-v2\0");
        assert!(e[8..48].iter().all(|&b| b == 0));
        assert_eq!(&e[48..56], &0x1122_3344_5566_7788u64.to_ne_bytes());
        assert_eq!(&e[56..64], &999u64.to_ne_bytes());
        let r = abi::decode_file(&e)?;
        assert_eq!(r.compatible.as_bytes(), b"memfd-v2");
        assert_eq!((r.data, r.token), (0x1122_3344_5566_7788, 999));
        // A compatible string is cut to 47 bytes so that it stays terminated.
        abi::encode_file(&mut e, &[b'x'; 60], 0, 0);
        assert_eq!(e[47], 0);
        assert_eq!(abi::decode_file(&e)?.compatible.as_bytes().len(), 47);
        Ok(())
    }

    #[test]
    fn file_entries_are_checked() {
        let mut e = [0u8; 64];
        assert_eq!(abi::decode_file(&e).err(), Some(Malformed::Compatible));
        e[..48].fill(b'm');
        assert_eq!(abi::decode_file(&e).err(), Some(Malformed::Compatible));
        assert_eq!(
            abi::decode_file(&e[..63]).err(),
            Some(Malformed::EntrySize(63))
        );
    }

    #[test]
    fn flb_pages_match_c() -> Result {
        let mut page = [0xffu8; BLOCK_SIZE];
        let entries = [(&b"flb-a"[..], 0xfeed_u64, 2u64), (&b"flb-b"[..], 7, 1)];
        abi::encode_flbs(&mut page, entries.iter().copied());
        // Header {pgcnt = 1, count = 2}, then {name[48], data, count} entries.
        assert_eq!(abi::get_u64(&page, 0), 1);
        assert_eq!(abi::get_u64(&page, 8), 2);
        assert_eq!(&page[16..22], b"flb-a\0");
        assert_eq!(abi::get_u64(&page, 16 + 48), 0xfeed);
        assert_eq!(abi::get_u64(&page, 16 + 56), 2);
        assert_eq!(&page[80..86], b"flb-b\0");
        let mut out = KVec::new();
        abi::decode_flbs(&page, &mut out)?;
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].name.as_bytes(), b"flb-b");
        assert_eq!((out[1].data, out[1].file_count), (7, 1));
        Ok(())
    }

    #[test]
    fn flb_pages_are_checked() {
        let mut page = [0u8; BLOCK_SIZE];
        let mut out = KVec::new();
        // The C reader trusts the count; here 63 entries at most fit and are accepted.
        abi::put_u64(&mut page, abi::flb::PGCNT, 1);
        abi::put_u64(&mut page, abi::flb::COUNT, 64);
        assert_eq!(
            abi::check_flbs(&page).err(),
            Some(Malformed::FlbHeader {
                pgcnt: 1,
                count: 64
            })
        );
        assert_eq!(abi::decode_flbs(&page, &mut out).err(), Some(EINVAL));
        abi::put_u64(&mut page, abi::flb::PGCNT, 2);
        abi::put_u64(&mut page, abi::flb::COUNT, 0);
        assert_eq!(abi::decode_flbs(&page, &mut out).err(), Some(EINVAL));
        let same = [(&b"flb-a"[..], 1u64, 1u64), (&b"flb-a"[..], 2, 1)];
        abi::encode_flbs(&mut page, same.iter().copied());
        assert_eq!(abi::check_flbs(&page).err(), Some(Malformed::DuplicateFlb));
        assert_eq!(abi::decode_flbs(&page, &mut out).err(), Some(EINVAL));
        // An empty name is malformed too.
        abi::put_u64(&mut page, abi::flb::HEADER, 0);
        assert_eq!(abi::check_flbs(&page).err(), Some(Malformed::Compatible));
        abi::encode_flbs(&mut page, core::iter::empty());
        assert!(abi::decode_flbs(&page, &mut out).is_ok());
    }

    #[test]
    fn session_encoding_matches_c() {
        let mut name = [0u8; 64];
        name[..4].copy_from_slice(b"abcd");
        let mut e = [0xaau8; 80];
        abi::encode_session(&mut e, &name, 0, 0);
        assert_eq!(&e[..5], b"abcd\0");
        // An empty file set: files = 0, count = 0.
        assert!(e[4..].iter().all(|&b| b == 0));
        abi::encode_session(&mut e, &name, 0x5000, 3);
        assert_eq!(abi::get_u64(&e, 64), 0x5000);
        assert_eq!(abi::get_u64(&e, 72), 3);
    }
}

#[kunit_tests(luo_rs_session)]
mod session_tests {
    use crate::session::Name;
    use kernel::prelude::*;

    fn raw(s: &[u8]) -> [u8; 64] {
        let mut r = [0u8; 64];
        r[..s.len()].copy_from_slice(s);
        r
    }

    #[test]
    fn names_follow_the_uapi_rules() -> Result {
        assert!(Name::new(&raw(b"")).is_err());
        assert!(Name::new(&[b'n'; 64]).is_err());
        let longest = Name::new(&raw(&[b'n'; 63]))?;
        assert_eq!(longest.as_bytes().len(), 63);
        assert_eq!(Name::new(&raw(b"x"))?.as_bytes(), b"x");
        Ok(())
    }

    #[test]
    fn lookups_read_up_to_the_nul() -> Result {
        let name = Name::new(&raw(b"session-1"))?;
        assert!(Name::lookup(&raw(b"session-1")) == Some(name));
        assert!(Name::lookup(&raw(b"session-1\0tail")) == Some(name));
        assert!(Name::lookup(&raw(b"session-10")) != Some(name));
        assert!(Name::lookup(&raw(b"session-")) != Some(name));
        // An unterminated or empty name finds no session.
        assert!(Name::lookup(&[b'n'; 64]).is_none());
        assert!(Name::lookup(&raw(b"")).is_none());
        // Names order by their bytes, shorter first on a common prefix.
        assert!(Name::new(&raw(b"a"))? < Name::new(&raw(b"ab"))?);
        assert!(Name::new(&raw(b"ab"))? < Name::new(&raw(b"b"))?);
        Ok(())
    }

    #[test]
    fn tokens_find_received_and_added_files() -> Result {
        use crate::tokens::Tokens;
        use kernel::{
            alloc::KVVec,
            rbtree::RBTreeNodeReservation, //
        };

        let mut received = KVVec::new();
        for (token, index) in [(30, 0), (10, 1), (20, 2)] {
            received.push(Tokens::entry(token, index), GFP_KERNEL)?;
        }
        let mut tokens = Tokens::received(received).map_err(|_| EINVAL)?;
        assert_eq!(tokens.get(10), Some(1));
        assert_eq!(tokens.get(20), Some(2));
        assert_eq!(tokens.get(30), Some(0));
        assert_eq!(tokens.get(15), None);
        tokens.insert(RBTreeNodeReservation::new(GFP_KERNEL)?, 15, 3);
        assert_eq!(tokens.get(15), Some(3));
        assert_eq!(tokens.get(30), Some(0));
        tokens.clear();
        assert_eq!(tokens.get(10), None);
        assert_eq!(tokens.get(15), None);

        let mut twice = KVVec::new();
        for (token, index) in [(7, 0), (8, 1), (7, 2)] {
            twice.push(Tokens::entry(token, index), GFP_KERNEL)?;
        }
        assert_eq!(Tokens::received(twice).err(), Some(7));

        // Enough tokens, in a scrambled order, to sort through every level of the heap.
        let mut many = KVVec::new();
        for index in 0..101usize {
            many.push(Tokens::entry((index as u64 * 37) % 101, index), GFP_KERNEL)?;
        }
        let many = Tokens::received(many).map_err(|_| EINVAL)?;
        for index in 0..101usize {
            assert_eq!(many.get((index as u64 * 37) % 101), Some(index));
        }
        assert_eq!(many.get(101), None);
        Ok(())
    }
}

#[kunit_tests(luo_rs_chain)]
mod chain_tests {
    use crate::{
        abi,
        chain::OutChain, //
    };
    use kernel::prelude::*;

    #[test]
    fn chains_grow_and_shrink_by_whole_blocks() -> Result {
        let mut c = OutChain::new(abi::session::SIZE);
        c.grow(1)?;
        assert_eq!(c.blocks(), 1);
        c.grow(51)?;
        assert_eq!(c.blocks(), 1);
        c.grow(52)?;
        assert_eq!(c.blocks(), 2);
        c.shrink(51);
        assert_eq!(c.blocks(), 1);
        c.shrink(0);
        assert_eq!(c.blocks(), 0);
        Ok(())
    }

    #[test]
    fn written_chains_have_no_empty_block() -> Result {
        let mut c = OutChain::new(abi::session::SIZE);
        c.grow(103)?;
        assert_eq!(c.blocks(), 3);
        // Fewer entries than room: the spare block is released, never written empty.
        let head = c.write(52, |i, e| abi::put_u64(e, 72, i as u64))?;
        assert_eq!(c.blocks(), 2);
        assert_eq!(head, c.phys(0));
        let b0 = c.page(0);
        assert_eq!(abi::decode_block(b0, abi::session::SIZE)?, (c.phys(1), 51));
        assert_eq!(abi::get_u64(abi::entry(b0, abi::session::SIZE, 50), 72), 50);
        let b1 = c.page(1);
        assert_eq!(abi::decode_block(b1, abi::session::SIZE)?, (0, 1));
        assert_eq!(abi::get_u64(abi::entry(b1, abi::session::SIZE, 0), 72), 51);
        Ok(())
    }

    #[test]
    fn empty_chains_write_nothing() -> Result {
        let mut c = OutChain::new(abi::session::SIZE);
        assert_eq!(c.write(0, |_, _| {})?, 0);
        assert!(c.write(1, |_, _| {}).is_err());
        Ok(())
    }
}

#[kunit_tests(luo_rs_handler)]
mod handler_tests {
    use crate::{
        flb,
        handler::{
            self,
            Handler,
            Registered, //
        },
    };
    use kernel::{
        bindings,
        prelude::*,
        sync::Arc, //
    };

    /// A test operation.
    ///
    /// # Safety
    ///
    /// Any arguments; they are not used.
    unsafe extern "C" fn can_preserve(
        _h: *mut bindings::liveupdate_file_handler,
        _f: *mut bindings::file,
    ) -> bool {
        false
    }
    /// A test operation.
    ///
    /// # Safety
    ///
    /// Any argument; it is not used.
    unsafe extern "C" fn op(_a: *mut bindings::liveupdate_file_op_args) -> c_int {
        0
    }
    /// A test operation.
    ///
    /// # Safety
    ///
    /// Any argument; it is not used.
    unsafe extern "C" fn void_op(_a: *mut bindings::liveupdate_file_op_args) {}

    fn ops(complete: bool) -> bindings::liveupdate_file_ops {
        bindings::liveupdate_file_ops {
            can_preserve: Some(can_preserve),
            preserve: Some(op),
            unpreserve: Some(void_op),
            retrieve: Some(op),
            finish: if complete { Some(void_op) } else { None },
            ..Default::default()
        }
    }

    fn handler(
        ops: &bindings::liveupdate_file_ops,
        compatible: &[u8],
    ) -> bindings::liveupdate_file_handler {
        let mut h = bindings::liveupdate_file_handler {
            ops,
            ..Default::default()
        };
        for (dst, src) in h.compatible.iter_mut().zip(compatible) {
            *dst = *src as c_char;
        }
        h
    }

    #[test]
    fn required_operations_are_checked() -> Result {
        let incomplete = ops(false);
        let mut h = handler(&incomplete, b"test-v1");
        // SAFETY: `h` and its table outlive the checks.
        assert_eq!(unsafe { Handler::new(&mut h) }.err(), Some(EINVAL));
        // SAFETY: A null handler is refused without being read.
        let null = unsafe { Handler::new(core::ptr::null_mut()) };
        assert_eq!(null.err(), Some(EINVAL));
        let mut no_ops = bindings::liveupdate_file_handler::default();
        // SAFETY: `no_ops` outlives the check; its null table is refused.
        assert_eq!(unsafe { Handler::new(&mut no_ops) }.err(), Some(EINVAL));
        // An empty compatible string would be written and then refused by the next kernel.
        let complete = ops(true);
        let mut unnamed = handler(&complete, b"");
        // SAFETY: `unnamed` and its table outlive the check.
        assert_eq!(unsafe { Handler::new(&mut unnamed) }.err(), Some(EINVAL));
        Ok(())
    }

    #[test]
    fn compatible_strings_are_unique() -> Result {
        let table = ops(true);
        let mut a = handler(&table, b"test-v1");
        let mut b = handler(&table, b"test-v1");
        let mut c = handler(&table, b"test-v2");
        let mut set = Registered::new();
        // SAFETY: The handlers and their table outlive `set`.
        unsafe {
            set.add(Handler::new(&mut a)?)?;
            assert_eq!(set.add(Handler::new(&mut b)?).err(), Some(EEXIST));
            set.add(Handler::new(&mut c)?)?;
        }
        assert!(set.find(b"test-v2").is_some_and(|e| e.handler.is(&c)));
        assert!(set.find(b"test-v3").is_none());
        // Registration hands the private list heads to the core, initialised empty.
        assert!(core::ptr::eq(a.list.next, &a.list));
        assert!(set.remove(&a));
        assert!(!set.remove(&a));
        assert!(set.find(b"test-v1").is_none());
        Ok(())
    }

    #[test]
    fn unterminated_compatible_strings_are_cut() -> Result {
        let table = ops(true);
        let mut h = handler(&table, &[b'c'; 48]);
        // SAFETY: `h` and its table outlive the handler.
        let handler = unsafe { Handler::new(&mut h)? };
        assert_eq!(handler.compatible().len(), 47);
        Ok(())
    }

    /// A test FLB operation.
    ///
    /// # Safety
    ///
    /// Any argument; it is not used.
    unsafe extern "C" fn flb_op(_a: *mut bindings::liveupdate_flb_op_args) -> c_int {
        0
    }
    /// A test FLB operation.
    ///
    /// # Safety
    ///
    /// Any argument; it is not used.
    unsafe extern "C" fn flb_void_op(_a: *mut bindings::liveupdate_flb_op_args) {}

    fn name(dst: &mut [c_char; 48], name: &[u8]) {
        dst.iter_mut().for_each(|d| *d = 0);
        for (d, s) in dst.iter_mut().zip(name) {
            *d = *s as c_char;
        }
    }

    #[test]
    fn flbs_are_known_by_address_and_name() -> Result {
        let ops = bindings::liveupdate_flb_ops {
            preserve: Some(flb_op),
            unpreserve: Some(flb_void_op),
            retrieve: Some(flb_op),
            finish: Some(flb_void_op),
            ..Default::default()
        };
        let mut raw = bindings::liveupdate_flb {
            ops: &ops,
            ..Default::default()
        };
        name(&mut raw.compatible, b"luo-rs-kunit-flb-a");
        // SAFETY: `raw` and its table outlive every use below; no state is left behind.
        let a = unsafe { flb::lookup(&mut raw) }?;
        // SAFETY: As above.
        assert!(Arc::ptr_eq(&a, &unsafe { flb::lookup(&mut raw) }?));
        // Another format at the same address: new state, not the first one's.
        name(&mut raw.compatible, b"luo-rs-kunit-flb-b");
        // SAFETY: As above.
        let b = unsafe { flb::lookup(&mut raw) }?;
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.compatible(), b"luo-rs-kunit-flb-b");
        assert_eq!(a.compatible(), b"luo-rs-kunit-flb-a");
        // Idle and unregistered: forgotten, so a lookup starts afresh.
        flb::forget_idle(&handler::registry()?.read().flbs);
        // SAFETY: As above.
        let c = unsafe { flb::lookup(&mut raw) }?;
        assert!(!Arc::ptr_eq(&b, &c));
        assert_eq!(c.compatible(), b"luo-rs-kunit-flb-b");
        drop((a, b, c));
        flb::forget_idle(&handler::registry()?.read().flbs);
        Ok(())
    }
}
