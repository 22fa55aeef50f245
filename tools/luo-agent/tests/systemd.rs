//! The agent's systemd mode on the host: fd names, the manifest it keeps in the fd store, and
//! the notification messages (received on a socket standing in for systemd's).

use luo_agent::proto::Direction;
use luo_agent::systemd::{
    fd_name, handed_fd_name, handed_name, session_name, Entry, Manifest, Notifier,
};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;

#[test]
fn session_names_survive_the_fd_name() {
    for name in ["cache-a", "a:b", "with space", "ünïcødé", "x"] {
        let fd = fd_name(name);
        assert!(
            fd.starts_with("s-") && !fd.contains(':') && fd.len() <= 255,
            "{fd}"
        );
        assert_eq!(session_name(&fd).as_deref(), Some(name));
    }
    for bad in ["s-", "s-0", "s-zz", "manifest-a", "s-ff", "s-6"] {
        assert_eq!(session_name(bad), None, "{bad}");
    }
}

#[test]
fn handed_out_files_are_named_by_session_and_token() {
    for (name, token) in [("cache-a", 1), ("a-b:c", u64::MAX), ("x", 0)] {
        let fd = handed_fd_name(name, token);
        assert!(fd.starts_with("f-") && !fd.contains(':'), "{fd}");
        assert_eq!(handed_name(&fd), Some((name.to_owned(), token)));
        assert_eq!(session_name(&fd), None, "not taken for a session");
    }
    for bad in ["f-", "f-1", "f-x-61", "f-1-6", "s-61"] {
        assert_eq!(handed_name(bad), None, "{bad}");
    }
}

fn manifest() -> Manifest {
    Manifest {
        seq: 7,
        boot: "b0".into(),
        sessions: vec![
            Entry {
                name: "out:1".into(),
                owner: 0,
                direction: Direction::Outgoing,
                tokens: vec![1, 2],
                delegated: false,
            },
            Entry {
                name: "in".into(),
                owner: 1000,
                direction: Direction::Incoming,
                tokens: vec![],
                delegated: false,
            },
            Entry {
                name: "guest ram".into(),
                owner: 1000,
                direction: Direction::Outgoing,
                tokens: vec![3],
                delegated: true,
            },
        ],
    }
}

#[test]
fn the_manifest_reads_back_and_refuses_damage() {
    let m = manifest();
    let text = m.format();
    assert_eq!(Manifest::parse(&text), Some(m.clone()));
    for damaged in [
        text.replacen("fdstore 1", "fdstore 2", 1),
        text.replacen("boot ", "bot ", 1),
        text.replacen("out ", "sideways ", 1),
        text.replacen("1,2", "1,,2", 1),
        text.replace(&fd_name("in"), "s-zz"),
        text.clone() + "out 1 s-61 0 extra\n",
        text.clone() + "out 1 s-61\n",
        text.clone() + "out 1 s-61 -1\n",
        String::new(),
    ] {
        assert_eq!(Manifest::parse(&damaged), None, "{damaged:?}");
    }
}

#[test]
fn a_manifest_of_another_boot_crossed_a_kexec() {
    let m = manifest();
    let (out, inc) = (&m.sessions[0], &m.sessions[1]);
    // Same boot (the agent restarted): as written.
    assert_eq!(m.direction_now(out, "b0"), Some(Direction::Outgoing));
    assert_eq!(m.direction_now(inc, "b0"), Some(Direction::Incoming));
    // Next boot: outgoing sessions arrived; incoming ones cannot have crossed again.
    assert_eq!(m.direction_now(out, "b1"), Some(Direction::Incoming));
    assert_eq!(m.direction_now(inc, "b1"), None);
}

fn recv_with_fd(sock: &UnixDatagram) -> (String, Option<OwnedFd>) {
    let mut buf = [0u8; 256];
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: An all-zero msghdr is valid; its pointers are set to live locals below.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `hdr` points at buffers that live across the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, 0) };
    assert!(n >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: recvmsg filled `hdr`; CMSG_FIRSTHDR/CMSG_DATA stay within msg_control.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&hdr);
        (!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS).then(|| {
            OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()))
        })
    };
    (String::from_utf8_lossy(&buf[..n as usize]).into_owned(), fd)
}

#[test]
fn the_notifier_speaks_the_fd_store_protocol() {
    let dir = std::env::temp_dir().join(format!("luo-agent-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let _ = std::fs::remove_file(&path);
    let systemd = UnixDatagram::bind(&path).unwrap();
    std::env::set_var("NOTIFY_SOCKET", &path);
    let n = Notifier::from_env().unwrap().unwrap();

    let mut f = tempfile();
    f.write_all(b"kept").unwrap();
    n.store("s-61", f.as_fd()).unwrap();
    let (msg, fd) = recv_with_fd(&systemd);
    assert_eq!(msg, "FDSTORE=1\nFDNAME=s-61");
    let mut got = std::fs::File::from(fd.expect("the fd came along"));
    let mut s = String::new();
    got.rewind().unwrap();
    got.read_to_string(&mut s).unwrap();
    assert_eq!(s, "kept", "the fd systemd gets is the file stored");

    n.remove("s-61").unwrap();
    let (msg, fd) = recv_with_fd(&systemd);
    assert_eq!(
        (msg.as_str(), fd.is_none()),
        ("FDSTOREREMOVE=1\nFDNAME=s-61", true)
    );
    n.ready("up").unwrap();
    let (msg, fd) = recv_with_fd(&systemd);
    assert_eq!((msg.as_str(), fd.is_none()), ("READY=1\nSTATUS=up", true));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile() -> std::fs::File {
    std::fs::File::from(luo_agent::sys::memfd(c"t").unwrap())
}
