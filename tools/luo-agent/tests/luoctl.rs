//! luoctl as scripts use it: help without an agent, JSON output, one exit status per kind of
//! refusal.

mod common;

use std::process::{Command, Output};

fn luoctl(socket: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luoctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn help_needs_no_agent() {
    let out = Command::new(env!("CARGO_BIN_EXE_luoctl"))
        .args(["--socket", "/nonexistent", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Exit status"));
}

#[test]
fn bad_usage_and_an_absent_agent_have_their_own_status() {
    let none = std::path::Path::new("/nonexistent");
    assert_eq!(
        luoctl(none, &["preserve", "s", "1", "--fd", "-1"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(luoctl(none, &["list"]).status.code(), Some(3));
}

#[test]
fn results_and_refusals_in_json_with_one_status_per_kind() {
    let (_agent, socket) = common::start("luoctl", 256);
    let out = luoctl(&socket, &["--json", "list"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        json(&out),
        serde_json::json!({ "ok": true, "sessions": [] })
    );

    let out = luoctl(&socket, &["--json", "release", "absent"]);
    assert_eq!(out.status.code(), Some(11), "unknown session");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["refused"], "unknown-session");
    assert_eq!(v["error"]["errno"], libc::ENOENT);

    // The device is /dev/null here: a preserve reaches the kernel and is refused there.
    let out = luoctl(&socket, &["preserve", "s", "1", "/dev/null"]);
    assert!(
        (10..=19).contains(&out.status.code().unwrap()),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // A descriptor that is not open is named, not trusted.
    let out = luoctl(&socket, &["preserve", "s", "1", "--fd", "77"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fd 77 is not open"));
}
