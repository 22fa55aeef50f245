//! The real luo-agent binary under resource limits: running out of descriptors must cost
//! clients their connection, never the agent its life (and with it every session it holds).

mod common;

use luo_agent::client::Client;
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
