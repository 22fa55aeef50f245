//! luo-agent: holds live update sessions for other programs.
//!
//! usage: luo-agent [--socket PATH] [--socket-mode OCTAL] [--device PATH] [--systemd]
//!
//! The socket is root's alone (mode 0600) unless `--socket-mode` opens it; every client is
//! known by its uid (`SO_PEERCRED`), owns the sessions it creates and sees and acts on those
//! only, and only root may live update the machine.
//!
//! With `--systemd` (as `luo-agent.service`) the agent opens the device only for each call and
//! keeps its sessions in systemd's fd store, which systemd carries across `systemctl kexec`;
//! see the `systemd` module.

use luo_agent::agent::{Agent, Device, OnDemand};
use luo_agent::client::SOCKET;
use luo_agent::fdpass;
use luo_agent::kexec::System;
use luo_agent::log::Priority;
use luo_agent::server::{Manifest, Server};
use luo_agent::systemd::{self, Keeper, Notifier};
use std::io;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};

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

/// Where clients connect: the socket's path and its file mode.
struct Listen {
    path: String,
    mode: u32,
}

/// Raises the soft limit on open descriptors to the hard one: every session, every file kept
/// and every client is a descriptor.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and then pass.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
        }
    };
    if !raised {
        error(&format!(
            "cannot raise the descriptor limit: {}",
            io::Error::last_os_error()
        ));
    }
}

fn main() -> ExitCode {
    raise_nofile();
    let mut listen = Listen {
        path: SOCKET.to_owned(),
        mode: 0o600,
    };
    let mut device = liveupdate::DEVICE.to_owned();
    let mut under_systemd = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), a.starts_with("--") && a != "--systemd") {
            ("--systemd", _) => under_systemd = true,
            (_, true) => {
                let Some(v) = args.next() else {
                    return usage();
                };
                match a.as_str() {
                    "--socket" => listen.path = v,
                    "--device" => device = v,
                    "--socket-mode" => match u32::from_str_radix(&v, 8) {
                        Ok(m) if m <= 0o777 => listen.mode = m,
                        _ => return usage(),
                    },
                    _ => return usage(),
                }
            }
            _ => return usage(),
        }
    }
    if under_systemd {
        run_under_systemd(listen, device)
    } else {
        run_alone(listen, device)
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: luo-agent [--socket PATH] [--socket-mode OCTAL] [--device PATH] [--systemd]\n\
         The socket is root's alone (0600) unless --socket-mode opens it (0666: every user,\n\
         each seeing and acting on its own sessions only; live update stays root's)."
    );
    ExitCode::from(2)
}

fn run_alone(listen: Listen, device: String) -> ExitCode {
    let luo = match liveupdate::LiveUpdate::open_path(&device) {
        Ok(l) => l,
        Err(e) => {
            error(&format!("cannot open {device}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let (agent, found) = Agent::start(luo);
    for line in found {
        log_found(&line);
    }
    serve(
        listen,
        Server {
            agent: Mutex::new(agent),
            kexec: Box::new(System),
            log: Box::new(log_at),
            manifest: Manifest::Session,
            changed: Some(Box::new(|agent| agent.write_record())),
        },
        None,
    )
}

fn run_under_systemd(listen: Listen, device: String) -> ExitCode {
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
    for line in found {
        log_found(&line);
    }
    for line in keeper.adopt(&mut agent, systemd::listen_fds()) {
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
    };
    let ready = |status: &str| {
        if let Ok(k) = keeper.lock() {
            if let Err(e) = k.notifier().ready(status) {
                error(&format!("cannot tell systemd the agent is ready: {e}"));
            }
        }
    };
    serve(listen, server, Some(&ready))
}

fn serve<D>(listen: Listen, server: Server<D>, ready: Option<&dyn Fn(&str)>) -> ExitCode
where
    D: Device + Send + 'static,
    D::Session: Send,
{
    let socket = listen.path;
    let listener = match fdpass::listen(socket.as_ref(), listen.mode) {
        Ok(l) => l,
        Err(e) => {
            error(&format!("cannot listen on {socket}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("ready on {socket}"));
    if let Some(ready) = ready {
        ready(&format!("holding sessions on {socket}"));
    }
    let e = Arc::new(server).run(listener);
    error(&format!("stopped: {e}"));
    ExitCode::FAILURE
}
