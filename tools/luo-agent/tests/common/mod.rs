//! Running the real luo-agent binary in a host test, on /dev/null as its device (listing and
//! refusing need no live update device).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Running {
    pub child: Child,
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
pub fn start(test: &str, nofile: u64) -> (Running, PathBuf) {
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
