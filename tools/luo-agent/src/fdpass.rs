//! Messages with an attached file descriptor over a `SOCK_SEQPACKET` Unix socket, on
//! `rustix`'s safe wrappers of the socket calls (`SCM_RIGHTS` included).

use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// The largest message either side sends.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// At most this many descriptors are accepted with one message; more are closed.
const MAX_FDS: usize = 4;

fn seqpacket_socket() -> io::Result<OwnedFd> {
    Ok(net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

fn unix_addr(path: &Path) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new(path)?)
}

/// Connects to the `SOCK_SEQPACKET` socket at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let addr = unix_addr(path)?;
    let sock = seqpacket_socket()?;
    net::connect(&sock, &addr)?;
    Ok(sock)
}

/// Listens on a new `SOCK_SEQPACKET` socket at `path` (a stale socket file is replaced), whose
/// file gets `mode` before anyone can connect.
pub fn listen(path: &Path, mode: u32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    let addr = unix_addr(path)?;
    let _ = std::fs::remove_file(path);
    let sock = seqpacket_socket()?;
    net::bind(&sock, &addr)?;
    // Connecting needs the socket to listen, so nobody got in under the umask's mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    net::listen(&sock, 16)?;
    Ok(sock)
}

/// Accepts one connection on a socket from [`listen`]; the connection does not block.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(net::accept_with(
        listener,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
    )?)
}

/// Makes calls on `fd` that would wait fail with `WouldBlock` instead.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// A descriptor to wait on with [`poll`], for input.
pub struct Polled<'a>(PollFd<'a>, bool);

impl<'a> Polled<'a> {
    /// `fd`, waited on for input if `wanted` (otherwise ignored).
    pub fn new(fd: BorrowedFd<'a>, wanted: bool) -> Self {
        let events = if wanted {
            PollFlags::IN
        } else {
            PollFlags::empty()
        };
        Polled(PollFd::from_borrowed_fd(fd, events), wanted)
    }

    /// Whether the descriptor has input, a hang-up or an error waiting.
    pub fn ready(&self) -> bool {
        self.1 && !self.0.revents().is_empty()
    }
}

/// Waits at most `timeout` until one of `fds` is ready; returns how many are.
pub fn poll(fds: &mut [Polled<'_>], timeout: std::time::Duration) -> io::Result<usize> {
    let timeout = rustix::time::Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut raw: Vec<PollFd<'_>> = fds.iter().map(|p| p.0.clone()).collect();
    let n = rustix::event::poll(&mut raw, Some(&timeout))?;
    for (p, r) in fds.iter_mut().zip(raw) {
        p.0 = r;
    }
    Ok(n)
}

/// Whether `fd` is a socket listening for connections (one systemd passed, say).
pub fn is_listening(fd: BorrowedFd<'_>) -> bool {
    net::sockopt::socket_acceptconn(fd).unwrap_or(false)
}

/// Who is at the other end of a connected Unix socket: (pid, uid), as the kernel recorded it
/// at connect time. The pid is 0 for a peer in a pid namespace this process cannot see,
/// which `rustix`'s `UCred` (a non-zero pid) cannot hold, so this one call stays on libc.
pub fn peer(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

/// Sends `msg` with `fd` attached (if any) as one datagram.
pub fn send(sock: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    send_to(sock, None, msg, fd)
}

/// [`send`] on an unconnected datagram socket, to `to`.
pub fn send_to(
    sock: BorrowedFd<'_>,
    to: Option<&SocketAddrUnix>,
    msg: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the descriptor"));
    }
    let iov = [IoSlice::new(msg)];
    let n = match to {
        Some(addr) => net::sendmsg_addr(sock, addr, &iov, &mut control, SendFlags::NOSIGNAL)?,
        None => net::sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL)?,
    };
    if n != msg.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "message truncated",
        ));
    }
    Ok(())
}

/// Receives one datagram and the descriptors attached to it. `Ok(None)` when the peer closed
/// the connection.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    // Every descriptor that came is ours now, and closed if the message is refused.
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    if got
        .flags
        .intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC)
        || fds.len() > MAX_FDS
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too long, or more descriptors than a request takes",
        ));
    }
    if got.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    buf.truncate(got.bytes);
    Ok(Some((buf, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    fn pair(kind: SocketType) -> (OwnedFd, OwnedFd) {
        net::socketpair(AddressFamily::UNIX, kind, SocketFlags::CLOEXEC, None).unwrap()
    }

    #[test]
    fn a_file_travels_with_its_message() {
        let (a, b) = pair(SocketType::SEQPACKET);
        let mut file = tempfile();
        file.write_all(b"payload").unwrap();
        send(a.as_fd(), b"hello", Some(file.as_fd())).unwrap();
        let (msg, mut fds) = recv(b.as_fd()).unwrap().unwrap();
        assert_eq!(msg, b"hello");
        assert_eq!(fds.len(), 1);
        let mut got = std::fs::File::from(fds.remove(0));
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "payload");
    }

    #[test]
    fn messages_keep_their_boundaries_and_close_is_seen() {
        let (a, b) = pair(SocketType::SEQPACKET);
        send(a.as_fd(), b"one", None).unwrap();
        send(a.as_fd(), b"two two", None).unwrap();
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().0, b"one");
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().0, b"two two");
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn too_many_descriptors_are_an_error_and_closed() {
        // More descriptors than recv takes (a few more fit its buffer; many more do not): the
        // message is refused either way.
        for extra in [1, 2, 20] {
            let (a, b) = pair(SocketType::DGRAM);
            let files: Vec<_> = (0..MAX_FDS + extra).map(|_| tempfile()).collect();
            let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
            let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
            let n = net::sendmsg(&a, &[IoSlice::new(b"x")], &mut control, SendFlags::empty());
            assert_eq!(n.unwrap(), 1);
            let r = recv(b.as_fd());
            assert!(
                r.is_err(),
                "{extra} more: {:?}",
                r.map(|o| o.map(|(m, f)| (m, f.len())))
            );
        }
        // Exactly as many as it takes are fine.
        let (a, b) = pair(SocketType::DGRAM);
        let files: Vec<_> = (0..MAX_FDS).map(|_| tempfile()).collect();
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        net::sendmsg(&a, &[IoSlice::new(b"x")], &mut control, SendFlags::empty()).unwrap();
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().1.len(), MAX_FDS);
    }

    #[test]
    fn poll_sees_input_and_ignores_what_is_not_wanted() {
        let (a, b) = pair(SocketType::SEQPACKET);
        let timeout = std::time::Duration::from_millis(10);
        let mut polled = [Polled::new(b.as_fd(), true)];
        assert_eq!(poll(&mut polled, timeout).unwrap(), 0);
        assert!(!polled[0].ready());
        send(a.as_fd(), b"ping", None).unwrap();
        let mut polled = [Polled::new(b.as_fd(), true), Polled::new(b.as_fd(), false)];
        assert_eq!(poll(&mut polled, timeout).unwrap(), 1);
        assert!(polled[0].ready() && !polled[1].ready());
    }

    fn tempfile() -> std::fs::File {
        std::fs::File::from(crate::sys::memfd(c"fdpass-test").unwrap())
    }
}
