//! kv-service: a toy cache that keeps its data set in a memfd and survives live updates
//! through luo-agent.
//!
//!   kv-service start NAME MIB   build a MIB MiB data set, hand it to the agent, exit
//!   kv-service resume NAME      get it back from the agent, check every byte, confirm it
//!                               (the agent lets go of its copy), serve a lookup
//!   kv-service start-own NAME MIB   ask the agent for a session of its own and preserve two
//!                               data sets (MIB and half of it) into it directly, as a VMM
//!                               would its guest memory
//!   kv-service resume-own NAME  get that session back, retrieve and check both data sets,
//!                               finish it and release it
//!
//! The data set is a table of 64-bit values, each a function of its key; its first page holds
//! a header (magic, number of values, checksum of all values).

use luo_agent::client::{Client, SOCKET};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

const MAGIC: u64 = 0x6b76_2d63_6163_6865; // "kv-cache"
const HEADER: u64 = 4096;
const TOKEN: u64 = 1;

fn value(key: u64) -> u64 {
    let x = (key + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 31)
}

fn fnv(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x100_0000_01b3)
}

/// A new data set of `mib` MiB in a memfd: its values and checksum.
fn build(mib: u64) -> Result<(File, u64, u64), Box<dyn std::error::Error>> {
    let n = mib * (1 << 20) / 8;
    let mut f = File::from(luo_agent::sys::memfd(c"kv-cache")?);
    f.seek(SeekFrom::Start(HEADER))?;
    let mut sum = 0xcbf2_9ce4_8422_2325u64;
    let mut chunk = Vec::with_capacity(1 << 16);
    for key in 0..n {
        let v = value(key);
        sum = fnv(sum, v);
        chunk.extend_from_slice(&v.to_ne_bytes());
        if chunk.len() == chunk.capacity() {
            f.write_all(&chunk)?;
            chunk.clear();
        }
    }
    f.write_all(&chunk)?;
    f.seek(SeekFrom::Start(0))?;
    for w in [MAGIC, n, sum] {
        f.write_all(&w.to_ne_bytes())?;
    }
    Ok((f, n, sum))
}

fn start(name: &str, mib: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (f, n, sum) = build(mib)?;
    Client::connect(SOCKET)?.preserve(name, TOKEN, f.as_fd())?;
    println!("kv-service {name}: {mib} MiB data set ({n} values, checksum {sum:016x}) handed to the agent");
    Ok(())
}

/// Checks a data set read back: every value, and the checksum in its header. Returns a line
/// about it.
fn check(mut f: File) -> Result<String, Box<dyn std::error::Error>> {
    f.seek(SeekFrom::Start(0))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(b)
    };
    if data.len() < HEADER as usize || word(0) != MAGIC {
        return Err("the data set has no valid header".into());
    }
    let (n, want) = (word(1), word(2));
    if data.len() as u64 != HEADER + n * 8 {
        return Err(format!(
            "the data set is {} bytes, expected {}",
            data.len(),
            HEADER + n * 8
        )
        .into());
    }
    let mut sum = 0xcbf2_9ce4_8422_2325u64;
    let mut bad = 0u64;
    for key in 0..n {
        let v = word((HEADER / 8 + key) as usize);
        sum = fnv(sum, v);
        bad += u64::from(v != value(key));
    }
    if bad != 0 || sum != want {
        return Err(format!(
            "DATA DAMAGED: {bad} of {n} values wrong, checksum {sum:016x} (want {want:016x})"
        )
        .into());
    }
    Ok(format!(
        "{} MiB data set back, all {n} values intact (checksum {sum:016x}); serving: get({}) = {:016x}",
        (n * 8) >> 20,
        n / 2,
        word((HEADER / 8 + n / 2) as usize)
    ))
}

fn resume(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let agent = Client::connect(SOCKET)?;
    let line = check(File::from(agent.retrieve(name, TOKEN)?))?;
    // Checked and in hand: the agent may let go of its copy now.
    agent.confirm(name, TOKEN)?;
    println!("kv-service {name}: {line}");
    Ok(())
}

/// The tokens and sizes (MiB) of the data sets a service keeps in a session of its own.
fn own_sets(mib: u64) -> [(u64, u64); 2] {
    [(1, mib), (2, mib.div_ceil(2))]
}

/// Like a VMM with its guest memory: the service asks the agent for a session of its own and
/// preserves its data sets into it itself, in one go; the agent keeps the session.
fn start_own(name: &str, mib: u64) -> Result<(), Box<dyn std::error::Error>> {
    let agent = Client::connect(SOCKET)?;
    let session = agent
        .delegate(name)?
        .outgoing()
        .map_err(|_| "the agent holds this session from the previous kernel")?;
    for (token, size) in own_sets(mib) {
        let (f, n, sum) = build(size)?;
        session.preserve_fd(f.as_fd(), token)?;
        println!("kv-service {name}: {size} MiB data set ({n} values, checksum {sum:016x}) preserved as token {token} into its own session");
    }
    Ok(())
}

/// After the update: the session back from the agent, every data set retrieved and checked,
/// the session finished, and the agent told it may let go.
fn resume_own(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let agent = Client::connect(SOCKET)?;
    let session = agent
        .delegate(name)?
        .incoming()
        .map_err(|_| "the agent holds no session of this name from the previous kernel")?;
    for (token, _) in own_sets(0) {
        let line = check(File::from(session.retrieve_fd(token)?))?;
        println!("kv-service {name}: token {token}: {line}");
    }
    session.finish()?;
    agent.release(name)?;
    println!("kv-service {name}: its own session finished and released");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.as_slice() {
        [cmd, name, mib] if cmd == "start" => match mib.parse() {
            Ok(mib) => start(name, mib),
            Err(_) => Err("MIB must be a number".into()),
        },
        [cmd, name] if cmd == "resume" => resume(name),
        [cmd, name, mib] if cmd == "start-own" => match mib.parse() {
            Ok(mib) => start_own(name, mib),
            Err(_) => Err("MIB must be a number".into()),
        },
        [cmd, name] if cmd == "resume-own" => resume_own(name),
        _ => Err(
            "usage: kv-service start|start-own NAME MIB | kv-service resume|resume-own NAME".into(),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One write for the whole line, so that a shared console does not split it.
            let line = format!("kv-service: {e}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            ExitCode::FAILURE
        }
    }
}
