//! `luo-roundtrip 1 [MiB]` / `luo-roundtrip 2`: carry a memfd across a kexec with the library.
//!
//! Stage 1 fills a memfd with a pattern, preserves it in session "luo-roundtrip" and leaves a
//! child holding the session until the kexec. Stage 2 retrieves it, checks every byte, retrieves
//! the same token a second time (same data), finishes the session and prints a verdict line.

use liveupdate::{LiveUpdate, Op};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

const SESSION: &str = "luo-roundtrip";
const TOKEN: u64 = 0xda7a;

fn pattern(i: u64) -> u64 {
    (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

fn stage1(mib: u64) -> Result<(), Box<dyn std::error::Error>> {
    let luo = LiveUpdate::open()?;
    // SAFETY: A valid NUL-terminated name and no flags.
    let fd = unsafe { libc::memfd_create(c"luo-roundtrip".as_ptr(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let words = mib * (1 << 20) / 8;
    let mut buf = Vec::with_capacity(1 << 20);
    for chunk in 0..words / (1 << 17) {
        buf.clear();
        for i in 0..(1u64 << 17) {
            buf.extend_from_slice(&pattern(chunk * (1 << 17) + i).to_le_bytes());
        }
        file.write_all(&buf)?;
    }
    let session = luo.create_session(SESSION)?;
    session.preserve_fd(file.as_fd(), TOKEN)?;
    // The same file again is refused with a clear error.
    let again = luo.create_session("luo-roundtrip-2")?;
    match again.preserve_fd(file.as_fd(), 1) {
        Err(e) if e.errno() == Some(libc::EBUSY) => {
            println!("luo-roundtrip: second preserve refused: {e}")
        }
        other => return Err(format!("second preserve not refused with EBUSY: {other:?}").into()),
    }
    println!(
        "luo-roundtrip: preserved {mib} MiB in session {:?}",
        session.name()?
    );
    std::io::stdout().flush()?;
    // SAFETY: The child only sleeps; it keeps every descriptor open until the kexec.
    if unsafe { libc::fork() } == 0 {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    Ok(())
}

fn stage2() -> Result<(), Box<dyn std::error::Error>> {
    let luo = LiveUpdate::open()?;
    let session = luo.retrieve_session(SESSION)?;
    match luo.retrieve_session(SESSION) {
        Err(liveupdate::Error::Kernel {
            op: Op::RetrieveSession,
            errno: libc::EINVAL,
        }) => {}
        other => return Err(format!("second retrieve not refused: {other:?}").into()),
    }
    let mut file = std::fs::File::from(session.retrieve_fd(TOKEN)?);
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    let bad = data
        .chunks_exact(8)
        .enumerate()
        .filter(|(i, w)| {
            u64::from_le_bytes((*w).try_into().unwrap_or([0; 8])) != pattern(*i as u64)
        })
        .count();
    let mut twin = std::fs::File::from(session.retrieve_fd(TOKEN)?);
    let mut first = [0u8; 8];
    twin.seek(SeekFrom::Start(0))?;
    twin.read_exact(&mut first)?;
    if first != data[..8] {
        return Err("a second retrieve of the token gave other data".into());
    }
    match session.retrieve_fd(0xdead) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {}
        other => return Err(format!("unknown token not ENOENT: {other:?}").into()),
    }
    session.finish()?;
    if bad != 0 || data.is_empty() {
        return Err(format!("{bad} words differ in {} bytes", data.len()).into());
    }
    println!(
        "luo-roundtrip: verified {} bytes after kexec, session finished",
        data.len()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("1") => stage1(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16)),
        Some("2") => stage2(),
        _ => Err("usage: luo-roundtrip 1 [MiB] | luo-roundtrip 2".into()),
    };
    if let Err(e) = result {
        println!("luo-roundtrip: FAIL: {e}");
        std::process::exit(1);
    }
}
