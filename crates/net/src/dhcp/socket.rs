//! The client's UDP socket: port 68 on one interface. Bound to the device
//! (`SO_BINDTODEVICE`, before `bind`), it sends to 255.255.255.255 and
//! receives broadcast replies on an interface that has no address yet, so
//! no packet socket is needed; clients on different interfaces of one
//! namespace do not get in each other's way.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::packet::CLIENT_PORT;

/// How long a port 68 in use is waited for.
const BIND_PATIENCE: Duration = Duration::from_secs(1);

/// A UDP socket on `0.0.0.0:68` that sends and receives through `ifname` only.
pub(super) fn open(ifname: &str) -> io::Result<UdpSocket> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains(['/', '\0']) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not an interface name"));
    }
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt(&fd, libc::SO_BINDTODEVICE, ifname.as_bytes())?;
    setsockopt(&fd, libc::SO_BROADCAST, &1i32.to_ne_bytes())?;
    let sock = UdpSocket::from(fd);
    // std binds with the options already set on the descriptor.
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: CLIENT_PORT.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(Ipv4Addr::UNSPECIFIED).to_be() },
        sin_zero: [0; 8],
    };
    // A socket this process just closed may live on for a moment in a
    // child another thread is forking (until its exec closes it): retry a
    // port that is in use for a little while before giving up.
    let deadline = Instant::now() + BIND_PATIENCE;
    loop {
        // SAFETY: addr is a valid sockaddr_in of the length given; the fd is ours.
        let r = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(sock);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EADDRINUSE) || Instant::now() >= deadline {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn setsockopt(fd: &OwnedFd, opt: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: value points to value.len() readable bytes; the fd is ours.
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, value.as_ptr().cast(), value.len() as libc::socklen_t)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The next datagram from a server port (67) before `until`, with its
/// sender; `None` when the time is up.
pub(super) fn receive(sock: &UdpSocket, buf: &mut [u8], until: Instant) -> io::Result<Option<(usize, SocketAddrV4)>> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(buf) {
            Ok((n, SocketAddr::V4(from))) if from.port() == super::packet::SERVER_PORT => return Ok(Some((n, from))),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}
