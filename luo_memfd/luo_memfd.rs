// SPDX-License-Identifier: GPL-2.0

//! The memfd live update handler, in Rust.
//!
//! It will stand in for `mm/memfd_luo.c` and read and write the same "memfd-v2" data, so that
//! a memfd preserved by either handler can be retrieved by the other. This first part is the
//! handover format and its checks.

mod abi;
#[cfg(CONFIG_LIVEUPDATE_RUST_KUNIT_TEST)]
mod kunit;

/// Prefix of every message this crate prints.
const __LOG_PREFIX: &[u8] = b"memfd_luo\0";
