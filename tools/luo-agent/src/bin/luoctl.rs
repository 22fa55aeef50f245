//! luoctl: ask the live update agent to hold, list, hand back or release files, or to live
//! update the machine.
//!
//! usage: luoctl [--socket PATH] COMMAND
//!   preserve SESSION TOKEN PATH|--fd N   hand a file to the agent
//!   list                                 the sessions the agent holds
//!   retrieve SESSION TOKEN [-- CMD ...]  get a file back: run CMD with it as fd 3, or copy
//!                                        its contents to stdout
//!   release SESSION                      let go of a session now
//!   kexec KERNEL INITRD CMDLINE          live update into KERNEL

use luo_agent::client::{Client, ClientError, SOCKET};
use luo_agent::proto::Direction;
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: luoctl [--socket PATH] preserve SESSION TOKEN PATH|--fd N | list | \
                     retrieve SESSION TOKEN [-- CMD ...] | release SESSION | kexec KERNEL INITRD CMDLINE";

fn token(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| format!("bad token {s:?}: a number from 0 to {}", u64::MAX))
}

fn run(client: &Client, args: &[String]) -> Result<(), String> {
    let fail = |e: ClientError| e.to_string();
    match args {
        [cmd, session, tok, how @ ..] if cmd == "preserve" => {
            let token = token(tok)?;
            let file: OwnedFd = match how {
                [flag, n] if flag == "--fd" => {
                    let n: i32 = n.parse().map_err(|_| format!("bad fd {n:?}"))?;
                    // SAFETY: The caller says fd `n` is open in this process; it is only
                    // borrowed for the call and duplicated.
                    let fd = unsafe { BorrowedFd::borrow_raw(n) };
                    fd.try_clone_to_owned()
                        .map_err(|e| format!("fd {n}: {e}"))?
                }
                [path] => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("{path}: {e}"))?
                    .into(),
                _ => return Err(USAGE.into()),
            };
            client
                .preserve(session, token, file.as_fd())
                .map_err(fail)?;
            println!("luoctl: the agent holds token {token} in session {session:?}");
        }
        [cmd] if cmd == "list" => {
            let list = client.list().map_err(fail)?;
            if list.is_empty() {
                println!("luoctl: the agent holds no sessions");
            }
            for s in list {
                let dir = match s.direction {
                    Direction::Outgoing => "to carry across the next live update",
                    Direction::Incoming => "from the previous kernel, waiting to be handed back",
                };
                let tokens: Vec<String> = s.tokens.iter().map(u64::to_string).collect();
                println!(
                    "luoctl: session {:?} ({dir}): tokens [{}]",
                    s.name,
                    tokens.join(", ")
                );
            }
        }
        [cmd, session, tok, rest @ ..] if cmd == "retrieve" => {
            let token = token(tok)?;
            let fd = client.retrieve(session, token).map_err(fail)?;
            match rest {
                [] => {
                    let mut f = File::from(fd);
                    f.rewind().map_err(|e| e.to_string())?;
                    std::io::copy(&mut f, &mut std::io::stdout().lock())
                        .map_err(|e| e.to_string())?;
                }
                [dashes, prog, pargs @ ..] if dashes == "--" => {
                    let raw = fd.as_raw_fd();
                    let mut c = Command::new(prog);
                    c.args(pargs);
                    // SAFETY: dup2 is async-signal-safe; it runs in the child before exec.
                    unsafe {
                        c.pre_exec(move || {
                            if libc::dup2(raw, 3) < 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let status = c.status().map_err(|e| format!("{prog}: {e}"))?;
                    if !status.success() {
                        return Err(format!("{prog} failed: {status}"));
                    }
                }
                _ => return Err(USAGE.into()),
            }
        }
        [cmd, session] if cmd == "release" => {
            client.release(session).map_err(fail)?;
            println!("luoctl: released session {session:?}");
        }
        [cmd, kernel, initrd, cmdline] if cmd == "kexec" => {
            println!("luoctl: asking the agent to live update into {kernel}");
            std::io::stdout().flush().ok();
            client.kexec(kernel, initrd, cmdline).map_err(fail)?;
            println!("luoctl: the system manager is performing the live update");
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket = SOCKET.to_owned();
    if args.first().map(String::as_str) == Some("--socket") && args.len() > 1 {
        socket = args.remove(1);
        args.remove(0);
    }
    let client = match Client::connect(&socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("luoctl: cannot reach the agent at {socket}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&client, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("luoctl: {e}");
            ExitCode::FAILURE
        }
    }
}
