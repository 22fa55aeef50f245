//! luo-agent: holds live update sessions for other programs.
//!
//! usage: luo-agent [--socket PATH] [--device PATH]

use luo_agent::agent::Agent;
use luo_agent::client::SOCKET;
use luo_agent::fdpass;
use luo_agent::server::Server;
use std::fs::File;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

fn log(msg: &str) {
    println!("luo-agent: {msg}");
}

fn kexec(kernel: &str, initrd: &str, cmdline: &str) -> std::io::Error {
    let open =
        |p: &str| File::open(p).map_err(|e| std::io::Error::new(e.kind(), format!("{p}: {e}")));
    let (k, i) = match (open(kernel), open(initrd)) {
        (Ok(k), Ok(i)) => (k, i),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if let Err(e) = luo_agent::sys::kexec_file_load(k.as_fd(), i.as_fd(), cmdline) {
        return std::io::Error::new(e.kind(), format!("kexec_file_load: {e}"));
    }
    log("rebooting into the new kernel");
    luo_agent::sys::reboot_kexec()
}

fn main() -> ExitCode {
    let mut socket = SOCKET.to_owned();
    let mut device = liveupdate::DEVICE.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--socket", Some(v)) => socket = v,
            ("--device", Some(v)) => device = v,
            _ => {
                eprintln!("usage: luo-agent [--socket PATH] [--device PATH]");
                return ExitCode::from(2);
            }
        }
    }
    let luo = match liveupdate::LiveUpdate::open_path(&device) {
        Ok(l) => l,
        Err(e) => {
            log(&format!("cannot open {device}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let (agent, found) = Agent::start(luo);
    for line in found {
        log(&line);
    }
    let listener = match fdpass::listen(socket.as_ref()) {
        Ok(l) => l,
        Err(e) => {
            log(&format!("cannot listen on {socket}: {e}"));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("ready on {socket}"));
    let server = Arc::new(Server {
        agent: Mutex::new(agent),
        kexec: Box::new(kexec),
        log: Box::new(log),
    });
    let e = server.run(listener);
    log(&format!("stopped: {e}"));
    ExitCode::FAILURE
}
