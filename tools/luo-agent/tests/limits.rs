//! The real luo-agent binary under resource limits: running out of descriptors must cost
//! clients their connection, never the agent its life (and with it every session it holds).

mod common;

use luo_agent::client::Client;
use luo_agent::fdpass;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn lists(socket: &Path) -> bool {
    Client::connect(socket)
        .ok()
        .and_then(|c| c.list().ok())
        .is_some()
}

#[test]
fn the_agent_outlives_running_out_of_descriptors() {
    let (mut agent, socket) = common::start("nofile", 24);
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

/// Raises this process's own descriptor limit as far as it may go.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and then pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// A connection that sends nothing, and whether the agent has hung up on it since.
fn idle(socket: &Path) -> OwnedFd {
    let c = fdpass::connect(socket).unwrap();
    fdpass::set_nonblocking(c.as_fd()).unwrap();
    c
}

fn hung_up(c: &OwnedFd) -> bool {
    match fdpass::recv(c.as_fd()) {
        Ok(None) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        other => panic!("{other:?}"),
    }
}

fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

#[test]
fn thousands_of_idle_connections_do_not_keep_anyone_out() {
    if raise_nofile() < 7000 {
        panic!("this test needs 7000 descriptors; the hard limit is lower");
    }
    // 8192 descriptors: room for 4096 clients.
    let (agent, socket) = common::start("idle", 8192);
    let first = Client::connect(&socket).unwrap();
    assert!(first.list().is_ok());
    let mut held: Vec<OwnedFd> = (0..3000).map(|_| idle(&socket)).collect();
    // Everyone is still served, by one thread, and nobody was disconnected.
    assert!(lists(&socket));
    assert!(first.list().is_ok());
    assert_eq!(threads(agent.child.id()), 1);
    assert_eq!(held.iter().filter(|c| hung_up(c)).count(), 0);
    // Past the limit, the longest-idle connections make room: a new client still gets in, and
    // one that keeps asking keeps its place.
    for _ in 0..3000 {
        held.push(idle(&socket));
        if held.len().is_multiple_of(500) {
            assert!(first.list().is_ok());
        }
    }
    assert!(lists(&socket));
    assert!(first.list().is_ok());
    let gone = held.iter().filter(|c| hung_up(c)).count();
    assert!(
        (1900..=2000).contains(&gone),
        "{gone} of 6000 idle connections were disconnected at a limit of 4096"
    );
    // The oldest went first.
    assert!(held[..gone].iter().all(hung_up));
}
