//! luoctl: ask the live update agent to hold, list, hand back or release files, or to live
//! update the machine. `luoctl --help` says how; it needs no running agent.
//!
//! The exit status says what happened: 0 done, 2 bad usage, 3 the agent cannot be reached,
//! 4 the conversation with it failed, 5 the command given to `retrieve -- CMD` could not run,
//! and 10 to 20 a refusal of the agent, one status per kind (see [`refusal_status`]).

use clap::Parser;
use luo_agent::cli::{LuoctlCli as Cli, LuoctlCmd as Cmd};
use luo_agent::client::{Client, ClientError};
use luo_agent::proto::{Direction, Refusal};
use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// What went wrong, and the exit status it gets.
enum Failure {
    Unreachable(String),
    Client(ClientError),
    Local(String),
    Command(String),
}

/// The exit status of a refusal: one per kind, so scripts can tell them apart.
fn refusal_status(why: Refusal) -> u8 {
    match why {
        Refusal::BadRequest => 10,
        Refusal::UnknownSession => 11,
        Refusal::UnknownToken => 12,
        Refusal::DuplicateToken => 13,
        Refusal::Busy => 14,
        Refusal::Unsupported => 15,
        Refusal::InvalidName => 16,
        Refusal::Kernel => 17,
        Refusal::Failed => 18,
        Refusal::NotPermitted => 19,
        Refusal::OverQuota => 20,
    }
}

impl Failure {
    fn status(&self) -> u8 {
        match self {
            Failure::Unreachable(_) => 3,
            Failure::Client(ClientError::Refused { why, .. }) => refusal_status(*why),
            Failure::Client(_) | Failure::Local(_) => 4,
            Failure::Command(_) => 5,
        }
    }

    fn report(&self, json: bool) {
        let message = match self {
            Failure::Unreachable(m) | Failure::Local(m) | Failure::Command(m) => m.clone(),
            Failure::Client(e) => e.to_string(),
        };
        if !json {
            // One write for the whole line (stderr is unbuffered and eprintln! writes it in
            // pieces), so that a console shared with other programs does not split it.
            let line = format!("luoctl: {message}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return;
        }
        let error = match self {
            Failure::Client(ClientError::Refused {
                why,
                errno,
                message,
            }) => serde_json::json!({
                "refused": why.word(), "errno": errno, "message": message,
            }),
            _ => serde_json::json!({ "error": message }),
        };
        println!("{}", serde_json::json!({ "ok": false, "error": error }));
    }
}

/// A descriptor of this process named on the command line, if it is open.
fn own_fd(n: i32) -> Result<OwnedFd, Failure> {
    // SAFETY: F_GETFD takes no pointer; it only asks whether `n` is open.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(Failure::Local(format!("fd {n} is not open")));
    }
    // SAFETY: `n` is open in this process (checked above) and is only borrowed for the
    // duplication.
    let fd = unsafe { BorrowedFd::borrow_raw(n) };
    fd.try_clone_to_owned()
        .map_err(|e| Failure::Local(format!("fd {n}: {e}")))
}

/// Runs `cmd` with `fd` as descriptor 3, announced the way systemd announces descriptors
/// (LISTEN_PID is set by a shell that then becomes `cmd`, so it is `cmd`'s own pid).
fn run_with(fd: OwnedFd, session: &str, cmd: &[String]) -> Result<(), Failure> {
    let raw = fd.as_raw_fd();
    let mut c = Command::new("/bin/sh");
    c.args(["-c", "LISTEN_PID=$$ exec \"$@\"", "sh"])
        .args(cmd)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", session);
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child before it execs,
    // and touch only descriptors.
    unsafe {
        c.pre_exec(move || {
            if raw != 3 && libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // dup2 gives the copy no close-on-exec; a descriptor that was 3 already keeps its.
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = c
        .status()
        .map_err(|e| Failure::Command(format!("{}: {e}", cmd[0])))?;
    if !status.success() {
        return Err(Failure::Command(format!(
            "{} failed ({status}); the agent keeps the file for another try",
            cmd[0]
        )));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    let client = Client::connect(&cli.socket).map_err(|e| {
        Failure::Unreachable(format!("cannot reach the agent at {}: {e}", cli.socket))
    })?;
    let json = cli.json;
    let say = |text: String, value: serde_json::Value| {
        if json {
            println!("{value}");
        } else {
            println!("luoctl: {text}");
        }
    };
    match cli.command {
        Cmd::Preserve {
            session,
            token,
            path,
            fd,
        } => {
            let file: OwnedFd = match (path, fd) {
                (_, Some(n)) => own_fd(n)?,
                (Some(path), None) => OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Failure::Local(format!("{path}: {e}")))?
                    .into(),
                (None, None) => return Err(Failure::Local("no file given".into())),
            };
            client
                .preserve(&session, token, file.as_fd())
                .map_err(Failure::Client)?;
            say(
                format!("the agent holds token {token} in session {session:?}"),
                serde_json::json!({ "ok": true, "session": session, "token": token }),
            );
        }
        Cmd::List => {
            let list = client.list().map_err(Failure::Client)?;
            if json {
                let sessions: Vec<_> = list
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "direction": match s.direction {
                                Direction::Outgoing => "outgoing",
                                Direction::Incoming => "incoming",
                            },
                            "tokens": s.tokens,
                            "delegated": s.delegated,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "ok": true, "sessions": sessions })
                );
                return Ok(());
            }
            if list.is_empty() {
                println!("luoctl: the agent holds no sessions");
            }
            for s in list {
                let dir = match s.direction {
                    Direction::Outgoing => "to carry across the next live update",
                    Direction::Incoming => "from the previous kernel, waiting to be handed back",
                };
                let tokens: Vec<String> = s.tokens.iter().map(u64::to_string).collect();
                let own = if s.delegated {
                    ", delegated to its client, who keeps its own files in it"
                } else {
                    ""
                };
                println!(
                    "luoctl: session {:?} ({dir}{own}): tokens [{}]",
                    s.name,
                    tokens.join(", ")
                );
            }
        }
        Cmd::Retrieve {
            session,
            token,
            cmd,
        } => {
            let fd = client.retrieve(&session, token).map_err(Failure::Client)?;
            if cmd.is_empty() {
                let mut f = File::from(fd);
                f.rewind().map_err(|e| Failure::Local(e.to_string()))?;
                std::io::copy(&mut f, &mut std::io::stdout().lock())
                    .map_err(|e| Failure::Local(e.to_string()))?;
            } else {
                run_with(fd, &session, &cmd)?;
            }
            // Only now is the file safe: the agent may let go of its copy.
            client.confirm(&session, token).map_err(Failure::Client)?;
        }
        Cmd::Delegate { session, cmd } => {
            let incoming = client
                .list()
                .map_err(Failure::Client)?
                .iter()
                .any(|s| s.name == session && s.direction == Direction::Incoming);
            let fd = client.delegate(&session).map_err(Failure::Client)?;
            run_with(fd.into_fd(), &session, &cmd)?;
            if incoming {
                // CMD took its files back: the session is done.
                client.release(&session).map_err(Failure::Client)?;
            }
        }
        Cmd::Release { session } => {
            client.release(&session).map_err(Failure::Client)?;
            say(
                format!("released session {session:?}"),
                serde_json::json!({ "ok": true, "released": session }),
            );
        }
        Cmd::Kexec {
            kernel,
            initrd,
            cmdline,
        } => {
            if !json {
                println!("luoctl: asking the agent to live update into {kernel}");
                std::io::stdout().flush().ok();
            }
            client
                .kexec(&kernel, &initrd, &cmdline)
                .map_err(Failure::Client)?;
            say(
                "the system manager is performing the live update".into(),
                serde_json::json!({ "ok": true, "kexec": kernel }),
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            f.report(json);
            ExitCode::from(f.status())
        }
    }
}
