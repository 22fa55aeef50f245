// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the memfd-v2 format against the bytes the C handler writes.

use kernel::prelude::kunit_tests;

#[kunit_tests(luo_rs_memfd_abi)]
mod abi_tests {
    use crate::abi::{
        self,
        FolioEntry,
        Memfd, //
    };
    use kernel::{
        bindings,
        kho::VmallocDesc,
        prelude::*, //
    };

    #[test]
    fn compatible_matches_c() {
        assert_eq!(
            abi::COMPATIBLE.to_bytes_with_nul(),
            &bindings::MEMFD_LUO_FH_COMPATIBLE[..]
        );
    }

    #[test]
    fn seals_outside_the_format_are_refused() {
        assert_eq!(abi::check_seals(0x3f).ok(), Some(0x3f));
        assert_eq!(abi::check_seals(0).ok(), Some(0));
        // Any seal a later kernel may add (F_SEAL_EXEC is 0x20, the highest in 7.3).
        for bit in 6..32 {
            assert_eq!(abi::check_seals(1 << bit).err(), Some(EOPNOTSUPP));
        }
    }

    #[test]
    fn folio_word_matches_gcc_bitfields() -> Result {
        // GCC puts `pfn:52` in bits 0-51 and `flags:12` above: pfn 0x12345 with both flags is
        // 0x0030000000012345 (SPEC 6.7).
        let mut e = [0u8; 16];
        let f = FolioEntry {
            pfn: 0x12345,
            flags: abi::FOLIO_DIRTY | abi::FOLIO_UPTODATE,
            index: 7,
        };
        f.encode(&mut e)?;
        assert_eq!(&e[..8], &0x0030_0000_0001_2345u64.to_ne_bytes());
        assert_eq!(&e[8..], &7u64.to_ne_bytes());
        assert_eq!(FolioEntry::decode(&e), f);
        Ok(())
    }

    #[test]
    fn folio_fields_must_fit() {
        let mut e = [0u8; 16];
        let too_big = FolioEntry {
            pfn: 1 << 52,
            flags: 0,
            index: 0,
        };
        assert_eq!(too_big.encode(&mut e).err(), Some(EINVAL));
        let bad_flags = FolioEntry {
            pfn: 1,
            flags: 1 << 12,
            index: 0,
        };
        assert_eq!(bad_flags.encode(&mut e).err(), Some(EINVAL));
        // The largest values round-trip.
        let max = FolioEntry {
            pfn: (1 << 52) - 1,
            flags: 0xfff,
            index: u64::MAX,
        };
        assert!(max.encode(&mut e).is_ok());
        assert_eq!(FolioEntry::decode(&e), max);
    }

    fn sample() -> Memfd {
        Memfd {
            pos: 3,
            size: 4096,
            seals: 1,
            nr_folios: 1,
            folios: VmallocDesc {
                first: 0x1000,
                total_pages: 1,
                flags: 1,
                order: 0,
            },
        }
    }

    #[test]
    fn memfd_layout_matches_c() -> Result {
        let mut e = [0xaau8; 48];
        sample().encode(&mut e);
        assert_eq!(&e[0..8], &3u64.to_ne_bytes());
        assert_eq!(&e[8..16], &4096u64.to_ne_bytes());
        assert_eq!(&e[16..20], &1u32.to_ne_bytes());
        assert_eq!(&e[20..24], &[0; 4]);
        assert_eq!(&e[24..32], &1u64.to_ne_bytes());
        assert_eq!(&e[32..40], &0x1000u64.to_ne_bytes());
        assert_eq!(&e[40..44], &1u32.to_ne_bytes());
        assert_eq!(&e[44..46], &1u16.to_ne_bytes());
        assert_eq!(&e[46..48], &0u16.to_ne_bytes());
        assert_eq!(Memfd::decode(&e)?, sample());
        // Freeze writes the record again, with the position it finds.
        Memfd { pos: 9, ..sample() }.encode(&mut e);
        assert_eq!(&e[0..8], &9u64.to_ne_bytes());
        assert_eq!(Memfd::decode(&e)?, Memfd { pos: 9, ..sample() });
        Ok(())
    }

    #[test]
    fn memfd_data_from_the_previous_kernel_is_checked() {
        let mut e = [0u8; 48];
        let mut m = sample();
        m.seals = 0x40;
        m.encode(&mut e);
        assert_eq!(Memfd::decode(&e).err(), Some(EOPNOTSUPP));
        let mut m = sample();
        m.nr_folios = 2;
        m.encode(&mut e);
        assert_eq!(Memfd::decode(&e).err(), Some(EINVAL));
        let mut m = sample();
        m.folios.first = 0;
        m.encode(&mut e);
        assert_eq!(Memfd::decode(&e).err(), Some(EINVAL));
        let mut m = sample();
        m.size = (u64::from(u32::MAX) + 1) * 4096;
        m.nr_folios = 0;
        m.encode(&mut e);
        assert_eq!(Memfd::decode(&e).err(), Some(EINVAL));
        let mut m = sample();
        m.pos = 1 << 63;
        m.encode(&mut e);
        assert_eq!(Memfd::decode(&e).err(), Some(EINVAL));
        sample().encode(&mut e);
        e[20] = 1;
        assert_eq!(Memfd::decode(&e).err(), Some(EINVAL));
        assert_eq!(Memfd::decode(&e[..47]).err(), Some(EINVAL));
        // An empty memfd has no folio array.
        let empty = Memfd::default();
        empty.encode(&mut e);
        assert_eq!(Memfd::decode(&e).ok(), Some(empty));
    }
}
