//! luo-agent: holds live update sessions for other programs.
//!
//! `luo-agent --help` (or `man luo-agent`) says how to run it.
//!
//! The socket is root's alone (mode 0600) unless `--socket-mode` opens it; every client is
//! known by its uid (`SO_PEERCRED`), owns the sessions it creates and sees and acts on those
//! only, and only root may live update the machine.
//!
//! With `--systemd` (as `luo-agent.service`) the agent opens the device only for each call and
//! keeps its sessions in systemd's fd store, which systemd carries across `systemctl kexec`;
//! see the `systemd` module.

use clap::Parser;
use luo_agent::agent::Limits;
use luo_agent::agent::{Agent, Device, OnDemand};
use luo_agent::cli::AgentCli;
use luo_agent::fdpass;
use luo_agent::kexec::System;
use luo_agent::log::Priority;
use luo_agent::server::{Manifest, Server};
use luo_agent::systemd::{self, Keeper, Notifier};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether standard output goes to the journal, which reads priorities (see `log`).
static JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn log_at(priority: Priority, msg: &str) {
    let journal = *JOURNAL.get_or_init(luo_agent::log::stdout_is_journal);
    println!("{}", luo_agent::log::line(journal, priority, msg));
}

/// An event of the agent's own (what it found at start, that it is ready).
fn log(msg: &str) {
    log_at(Priority::Info, msg);
}

/// A line of what the agent found at start: what it could not take back is a warning.
fn log_found(line: &str) {
    let trouble = ["cannot ", "malformed", "checksum", "ignored"];
    let priority = if trouble.iter().any(|t| line.contains(t)) {
        Priority::Warning
    } else {
        Priority::Info
    };
    log_at(priority, line);
}

/// Something the agent cannot do.
fn error(msg: &str) {
    log_at(Priority::Err, msg);
}

/// Has systemd perform the update of the loaded kernel, so that its shutdown preserves the fd
/// stores (the agent's among them).
fn systemctl_kexec() -> io::Result<()> {
    let status = Command::new("systemctl")
        .args(["--no-block", "kexec"])
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("systemctl kexec: {status}")));
    }
    Ok(())
}

/// Where clients connect: the socket's path and its file mode, unless systemd passed a
/// listening socket (`luo-agent.socket`).
struct Listen {
    path: String,
    mode: u32,
}

/// Raises the soft limit on open descriptors to the hard one: every session, every file kept
/// and every client is a descriptor.
fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    if let Err(e) = setrlimit(Resource::Nofile, lim) {
        log(&format!("cannot raise the descriptor limit: {e}"));
    }
}

fn main() -> ExitCode {
    let cli = AgentCli::parse();
    raise_nofile();
    let listen = Listen {
        path: cli.socket.clone(),
        mode: cli.socket_mode,
    };
    let limits = Limits {
        files_per_user: cli.max_files_per_user,
        bytes_per_user: cli.max_bytes_per_user,
    };
    let grace = (cli.unclaimed_grace > 0).then(|| Duration::from_secs(cli.unclaimed_grace));
    if cli.systemd {
        run_under_systemd(listen, cli.device, limits, grace)
    } else {
        run_alone(listen, cli.device, limits, grace)
    }
}

fn run_alone(listen: Listen, device: String, limits: Limits, grace: Option<Duration>) -> ExitCode {
    let luo = match liveupdate::LiveUpdate::open_path(&device) {
        Ok(l) => l,
        Err(e) => {
            error(&format!("cannot open {device}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let (mut agent, found) = Agent::start(luo);
    agent.limits = limits;
    for line in found {
        log_found(&line);
    }
    serve(
        Listener::Path(listen),
        Server {
            agent: Mutex::new(agent),
            kexec: Box::new(System),
            log: Box::new(log_at),
            manifest: Manifest::Session,
            changed: Some(Box::new(|agent| agent.write_record())),
            unclaimed_grace: grace,
        },
        None,
    )
}

fn run_under_systemd(
    listen: Listen,
    device: String,
    limits: Limits,
    grace: Option<Duration>,
) -> ExitCode {
    let notifier = match Notifier::from_env() {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            error(&format!("cannot use NOTIFY_SOCKET: {e}"));
            return ExitCode::FAILURE;
        }
        None => {
            error("--systemd needs NOTIFY_SOCKET: run luo-agent.service with Type=notify");
            return ExitCode::FAILURE;
        }
    };
    let mut keeper = match Keeper::new(notifier) {
        Ok(k) => k,
        Err(e) => {
            error(&format!("cannot read the boot id: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Sessions an agent of an earlier kernel left in a session of its own, then those the
    // fd store kept.
    let (mut agent, found) = Agent::start(OnDemand(device.into()));
    agent.limits = limits;
    for line in found {
        log_found(&line);
    }
    // What systemd passed: luo-agent.socket's listening socket, and the fd store.
    let (sockets, stored): (Vec<_>, Vec<_>) = systemd::listen_fds()
        .into_iter()
        .partition(|(_, fd)| fdpass::is_listening(fd.as_fd()));
    for line in keeper.adopt(&mut agent, stored) {
        log_found(&line);
    }
    if let Err(e) = keeper.sync(&agent) {
        error(&format!("cannot write to the fd store: {e}"));
        return ExitCode::FAILURE;
    }
    let keeper = Arc::new(Mutex::new(keeper));
    let k = Arc::clone(&keeper);
    let server = Server {
        agent: Mutex::new(agent),
        kexec: Box::new(System),
        log: Box::new(log_at),
        manifest: Manifest::Kept {
            hand_over: Box::new(systemctl_kexec),
        },
        changed: Some(Box::new(move |agent| match k.lock() {
            Ok(mut k) => k.sync(agent),
            Err(_) => Err(io::Error::other("the fd store keeper was lost")),
        })),
        unclaimed_grace: grace,
    };
    let ready = |status: &str| {
        if let Ok(k) = keeper.lock() {
            if let Err(e) = k.notifier().ready(status) {
                error(&format!("cannot tell systemd the agent is ready: {e}"));
            }
        }
    };
    let listener = match sockets.into_iter().next() {
        Some((name, fd)) => Listener::Passed(name, fd),
        None => Listener::Path(listen),
    };
    serve(listener, server, Some(&ready))
}

/// Where the agent listens: a socket it makes, or one systemd passed (socket activation).
enum Listener {
    Path(Listen),
    Passed(String, OwnedFd),
}

fn serve<D>(listener: Listener, server: Server<D>, ready: Option<&dyn Fn(&str)>) -> ExitCode
where
    D: Device + Send + 'static,
    D::Session: Send,
{
    let (socket, listener) = match listener {
        Listener::Passed(name, fd) => (format!("the socket systemd passed ({name})"), fd),
        Listener::Path(listen) => match fdpass::listen(listen.path.as_ref(), listen.mode) {
            Ok(l) => (listen.path, l),
            Err(e) => {
                error(&format!("cannot listen on {}: {e}", listen.path));
                return ExitCode::FAILURE;
            }
        },
    };
    log(&format!("ready on {socket}"));
    if let Some(ready) = ready {
        ready(&format!("holding sessions on {socket}"));
    }
    let e = Arc::new(server).run(listener);
    error(&format!("stopped: {e}"));
    ExitCode::FAILURE
}
