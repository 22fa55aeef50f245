//! Messages with an attached file descriptor over a `SOCK_SEQPACKET` Unix socket.
//!
//! With `sys`, the only `unsafe` code of the crate: `SOCK_SEQPACKET` sockets and
//! `sendmsg`/`recvmsg` with an `SCM_RIGHTS` control message, which the standard library does
//! not offer on stable Rust.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The largest message either side sends.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// At most this many descriptors are accepted with one message; more are closed.
const MAX_FDS: usize = 4;

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// A zeroed control-message buffer for `fds` descriptors, aligned for `cmsghdr` (whose
/// alignment is that of its `usize`-sized length): the CMSG macros read headers in place.
struct Control(Vec<usize>);

impl Control {
    fn new(fds: usize) -> Self {
        let words = cmsg_space(fds).div_ceil(std::mem::size_of::<usize>());
        Control(vec![0; words])
    }
    fn ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }
    fn len(&self) -> usize {
        self.0.len() * std::mem::size_of::<usize>()
    }
}

fn unix_addr(path: &Path) -> io::Result<libc::sockaddr_un> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: An all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(addr)
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The signature `connect(2)` and `bind(2)` share.
type AddrCall =
    unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

/// A new `SOCK_SEQPACKET` socket, connected or bound (`call`) to `path`.
fn socket_at(path: &Path, call: AddrCall) -> io::Result<OwnedFd> {
    let addr = unix_addr(path)?;
    let sock = seqpacket_socket()?;
    // SAFETY: `addr` is a valid sockaddr_un of the given size, and `call` is connect or bind.
    check(unsafe {
        call(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

/// Connects to the `SOCK_SEQPACKET` socket at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    socket_at(path, libc::connect)
}

/// Listens on a new `SOCK_SEQPACKET` socket at `path` (a stale socket file is replaced), whose
/// file gets `mode` before anyone can connect.
pub fn listen(path: &Path, mode: u32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    unix_addr(path)?;
    let _ = std::fs::remove_file(path);
    let sock = socket_at(path, libc::bind)?;
    // Connecting needs the socket to listen, so nobody got in under the umask's mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    // SAFETY: listen(2) takes no pointers.
    check(unsafe { libc::listen(sock.as_raw_fd(), 16) })?;
    Ok(sock)
}

/// Accepts one connection on a socket from [`listen`]; the connection does not block.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: No peer address is asked for.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    check(fd)?;
    // SAFETY: accept4 returned a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes calls on `fd` that would wait fail with `WouldBlock` instead.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take no pointers.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        check(flags)?;
        check(libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETFL,
            flags | libc::O_NONBLOCK,
        ))
    }
}

/// A descriptor to wait on with [`poll`], for input.
#[repr(transparent)]
pub struct Polled<'a>(libc::pollfd, std::marker::PhantomData<BorrowedFd<'a>>);

impl<'a> Polled<'a> {
    /// `fd`, waited on for input if `wanted` (otherwise ignored).
    pub fn new(fd: BorrowedFd<'a>, wanted: bool) -> Self {
        Polled(
            libc::pollfd {
                // poll(2) ignores negative descriptors.
                fd: if wanted { fd.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            std::marker::PhantomData,
        )
    }

    /// Whether the descriptor has input, a hang-up or an error waiting.
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// Waits at most `timeout` until one of `fds` is ready; returns how many are.
pub fn poll(fds: &mut [Polled<'_>], timeout: std::time::Duration) -> io::Result<usize> {
    let ms =
        libc::c_int::try_from(timeout.as_millis().saturating_add(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `Polled` is a transparent `pollfd`, so `fds` is an array of `fds.len()` of them,
    // each naming a descriptor borrowed for the call (or -1).
    let n = unsafe { libc::poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, ms) };
    check(n)?;
    Ok(n as usize)
}

/// Whether `fd` is a socket listening for connections (one systemd passed, say).
pub fn is_listening(fd: BorrowedFd<'_>) -> bool {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `on` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut on as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && on != 0
}

/// Who is at the other end of a connected Unix socket: (pid, uid), as the kernel recorded it
/// at connect time.
pub fn peer(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    // SAFETY: An all-zero ucred is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid))
}

/// Sends `msg` with `fd` attached (if any) as one datagram.
pub fn send(sock: BorrowedFd<'_>, msg: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    send_to(sock, None, msg, fd)
}

/// [`send`] on an unconnected datagram socket, to `to` (an address and its length).
pub fn send_to(
    sock: BorrowedFd<'_>,
    to: Option<(&libc::sockaddr_un, libc::socklen_t)>,
    msg: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let mut control = Control::new(1);
    // SAFETY: An all-zero msghdr is valid (no name, no iovecs, no control data).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if let Some((addr, len)) = to {
        hdr.msg_name = (addr as *const libc::sockaddr_un).cast_mut().cast();
        hdr.msg_namelen = len;
    }
    if let Some(fd) = fd {
        hdr.msg_control = control.ptr();
        hdr.msg_controllen = control.len() as _;
        // SAFETY: `hdr` points at a control buffer with room for one descriptor, so the first
        // header exists and its data holds one `RawFd`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd.as_raw_fd());
        }
    }
    // SAFETY: `hdr` describes valid buffers that outlive the call.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != msg.len() {
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
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = Control::new(MAX_FDS);
    // SAFETY: An all-zero msghdr is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.ptr();
    hdr.msg_controllen = control.len() as _;
    // SAFETY: `hdr` describes valid, writable buffers that outlive the call; received
    // descriptors get close-on-exec.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: The kernel filled `control` and set `msg_controllen`; the CMSG macros walk only
    // headers inside it, and each SCM_RIGHTS header's data holds whole descriptors, which are
    // now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&hdr, c);
        }
    }
    if hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message or descriptors truncated",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    buf.truncate(n as usize);
    Ok(Some((buf, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair returns.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: socketpair returned two new descriptors that we own.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn a_file_travels_with_its_message() {
        let (a, b) = pair();
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
        let (a, b) = pair();
        send(a.as_fd(), b"one", None).unwrap();
        send(a.as_fd(), b"two two", None).unwrap();
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().0, b"one");
        assert_eq!(recv(b.as_fd()).unwrap().unwrap().0, b"two two");
        drop(a);
        assert!(recv(b.as_fd()).unwrap().is_none());
    }

    #[test]
    fn too_many_descriptors_are_an_error_and_closed() {
        // A datagram socket lets us attach more descriptors than recv accepts.
        let (a, b) = UnixDatagram::pair().unwrap();
        let files: Vec<_> = (0..MAX_FDS + 2).map(|_| tempfile()).collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        let mut iov = libc::iovec {
            iov_base: b"x".as_ptr() as *mut _,
            iov_len: 1,
        };
        let mut control = Control::new(raw.len());
        // SAFETY: As in `send`, with room for `raw.len()` descriptors.
        unsafe {
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.ptr();
            hdr.msg_controllen = control.len() as _;
            let c = libc::CMSG_FIRSTHDR(&hdr);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((raw.len() * 4) as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c).cast(), raw.len());
            assert_eq!(libc::sendmsg(a.as_raw_fd(), &hdr, 0), 1);
        }
        assert!(recv(b.as_fd()).is_err());
    }

    fn tempfile() -> std::fs::File {
        std::fs::File::from(crate::sys::memfd(c"fdpass-test").unwrap())
    }
}
