//! The real luo-agent binary under resource limits: running out of descriptors must cost
//! clients their connection, never the agent its life (and with it every session it holds).
//! The agent runs on /dev/null as its device: listing needs no live update device.

use luo_agent::client::Client;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Running {
    child: Child,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the agent with at most `nofile` open descriptors; returns it and its socket.
fn start(test: &str, nofile: u64) -> (Running, PathBuf) {
    let dir = std::env::temp_dir().join(format!("luo-agent-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("agent.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_luo-agent"));
    cmd.args(["--device", "/dev/null", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let running = Running { child, dir };
    for _ in 0..100 {
        if socket.exists() {
            return (running, socket);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent never listened on {}", socket.display());
}

fn lists(socket: &Path) -> bool {
    Client::connect(socket)
        .ok()
        .and_then(|c| c.list().ok())
        .is_some()
}

#[test]
fn the_agent_outlives_running_out_of_descriptors() {
    let (mut agent, socket) = start("nofile", 24);
    assert!(lists(&socket));
    // Each connection takes one of the agent's few descriptors; those it cannot accept wait
    // in the listen queue (16 deep) and must not make it give up.
    let held: Vec<Client> = (0..30)
        .filter_map(|_| Client::connect(&socket).ok())
        .collect();
    assert_eq!(held.len(), 30);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent exited when it ran out of descriptors"
    );
    drop(held);
    // Once clients leave it serves again.
    let mut ok = false;
    for _ in 0..50 {
        if lists(&socket) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ok,
        "the agent serves no client after the descriptors came back"
    );
    assert!(agent.child.try_wait().unwrap().is_none());
}
