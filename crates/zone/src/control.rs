//! The monitor's control socket: protocol and client.
//!
//! `run_dir/monitor.sock` (mode 0600) takes one JSON request line per
//! connection and answers with one JSON reply line:
//!
//! ```text
//! {"op":"status"}                                  → {"ok":true,"monitor_pid":..,"init_pid":..,"state":"running","started_at":..}
//! {"op":"stop","force":false,"timeout_secs":60}    → {"ok":true,"exit":{ExitRecord}}       (once the zone is down)
//! {"op":"reboot","force":false}                    → {"ok":true,"monitor_pid":..,"init_pid":<new>,..} (once it runs again)
//! {"op":"kill","signal":15}                        → {"ok":true}
//! {"op":"set_limits","limits":{Limits}}            → {"ok":true} | {"ok":false,"error":"..."}
//! {"op":"set_tmpfs","bytes":N}                     → {"ok":true} | {"ok":false,"error":"..."}
//! {"op":"console"}                                 → {"ok":true}, then the console (below)
//!                                                    | {"ok":false,"error":"console already in use ..."}
//! {"op":"sysinfo_listener"}                        → {"ok":true}, then one byte from the client
//!                                                    carrying a seccomp listener (SCM_RIGHTS)
//!                                                    | {"ok":false,"error":"..."}
//! {"op":"qmp","command":"query-status","arguments":{..}}
//!                                                  → {"ok":true,"return":<QEMU's return>}
//!                                                    | {"ok":false,"error":"QMP command failed: <class>: <desc>"}
//! ```
//!
//! The same requests serve zones and VMs (the monitor's guest decides what
//! they mean, see `monitor.rs`); `set_tmpfs` and `sysinfo_listener` are a
//! zone's only, `qmp` a VM's only. For a VM, `init_pid` is QEMU's pid;
//! a graceful `stop` presses the ACPI power button (`system_powerdown`)
//! and, after `timeout_secs`, has QEMU `quit` (SIGKILL 10 s later);
//! `force` quits at once; a graceful `reboot` is a power-off and a new
//! QEMU (the console stays), a forced one `system_reset`; `kill` signals
//! QEMU. `qmp` passes any command to QEMU's QMP and returns its `return`
//! member (the daemon's `vmadm info`, `sysrq nmi` and `screenshot`): the
//! socket is root's only, and QEMU is jailed whatever it is asked.
//!
//! `sysinfo_listener` is how a process entering the zone from the host
//! (`zlogin`) gets the zone's answers to `sysinfo(2)` and `statfs(2)`
//! (the name is from when `sysinfo` was the only one): once the monitor has
//! agreed, it installs its seccomp filter with a listener and sends the
//! listener, which the monitor serves until every process under that
//! filter is gone (see `monitor/notify.rs`). Asking first matters: a
//! filter that sends calls to a listener nobody serves fails them
//! (`ENOSYS`), and it cannot be taken back; a monitor that refuses (too
//! many listeners) or does not know the request (an older monitor) means
//! the plain filter, and the kernel's answers.
//!
//! A graceful stop runs the zone's own `poweroff` (or signals init), then
//! kills the cgroup after `timeout_secs` (default 60); `force` kills at once.
//!
//! # The console
//!
//! After `{"ok":true}` answers `{"op":"console"}`, the connection is the
//! zone's console (the pty whose slave is the zone's `/dev/console`) until
//! either side closes it. One client at a time; a second is refused.
//!
//! - **Monitor → client: raw bytes**, what the zone writes to its console.
//!   The first bytes are the output of the time nobody was attached (since
//!   the last detach, or since the monitor started), at most the last
//!   [`CONSOLE_BACKLOG`] bytes, so nothing is lost or shown twice. The
//!   monitor never blocks on a client: what a slow client has not read
//!   beyond [`CONSOLE_BACKLOG`] bytes is dropped (it stays in `console.log`).
//! - **Client → monitor: frames**, `[type u8][length u16 big-endian][payload]`:
//!
//!   | type | payload | meaning |
//!   |---|---|---|
//!   | 0 ([`FRAME_INPUT`]) | 0–65535 bytes | input, written to the pty as is |
//!   | 1 ([`FRAME_WINSIZE`]) | rows u16 BE, cols u16 BE | the terminal's size (`TIOCSWINSZ`: the zone's foreground job gets `SIGWINCH`) |
//!   | other | anything | ignored, for later extensions |
//!
//!   A winsize frame of another length is a protocol error: the monitor
//!   detaches the client. Input the zone does not read is held (up to
//!   [`CONSOLE_BACKLOG`] bytes) and then the monitor stops reading the
//!   client, so a client writing faster than the zone reads is slowed
//!   down, not cut off.
//!
//! Closing the connection (or any error on it) detaches; the zone is not
//! affected. The console is the monitor's, so it survives reboots and
//! `restart_init` of the zone and a restart of the daemon; it ends when
//! the zone is down for good and the monitor exits.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ExitRecord, Limits};

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const PID_FILE: &str = "monitor.pid";
/// The monitor's control socket in a zone's run directory.
pub const SOCKET_FILE: &str = "monitor.sock";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const LOG_FILE: &str = "monitor.log";
/// The console log in a zone's run directory (rotated to `console.log.1`).
pub const CONSOLE_FILE: &str = "console.log";
/// The previous console log, in a zone's run directory.
pub const CONSOLE_PREVIOUS_FILE: &str = "console.log.1";

/// How long the monitor waits for QEMU's answer to a `qmp` request.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(60);

/// Default grace period of a graceful stop or reboot.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest grace period the monitor (and its client) honours: a larger
/// `timeout_secs` is taken as this much, so no deadline overflows the clock.
/// (The daemon's API refuses more than a day before asking.)
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// How long [`MonitorClient::stop`] waits beyond the grace period: the time
/// to kill what is left, empty the cgroup and answer.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// The grace period of a stop or reboot asking for `timeout_secs`.
pub fn stop_grace(timeout_secs: Option<u64>) -> Duration {
    timeout_secs.map_or(DEFAULT_STOP_TIMEOUT, |s| Duration::from_secs(s).min(MAX_STOP_TIMEOUT))
}

/// A control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Report the monitor's status.
    Status,
    /// Shut the zone down; the reply comes when it is down.
    Stop {
        /// Kill at once instead of asking the zone to shut down.
        #[serde(default)]
        force: bool,
        /// Grace period before killing (default 60 s).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Stop the zone and start it again; the reply comes when it runs again.
    Reboot {
        /// Kill at once instead of asking the zone to shut down.
        #[serde(default)]
        force: bool,
        /// Grace period before killing (default 60 s).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Send a signal to the zone's init.
    Kill {
        /// The signal number.
        signal: i32,
    },
    /// Apply new resource limits to the running zone (all or nothing).
    SetLimits {
        /// The limits.
        limits: Limits,
    },
    /// Set the size of the zone's `/tmp` tmpfs (`tmpfs`; 0: none): at
    /// once where it has one and keeps one, else from its next boot.
    SetTmpfs {
        /// The size in bytes.
        bytes: u64,
    },
    /// Rewrite the running zone's `/etc/resolv.conf` with these
    /// nameservers (`resolvers` changed and `maintain_resolvers` is set),
    /// and keep them for its next boots.
    SetResolvers {
        /// The nameservers.
        resolvers: Vec<String>,
    },
    /// The instance as it now is (`vmadm get`), for its metadata service:
    /// sent after every change to it.
    SetMetadata {
        /// The instance.
        vm: serde_json::Value,
    },
    /// Attach to the zone's console: after the reply, the connection
    /// carries it (see the module documentation).
    Console,
    /// Serve the zone's `sysinfo` and `statfs` for a seccomp listener that the client
    /// sends after the reply (see the module documentation).
    SysinfoListener,
    /// Run a QMP command in the VM's QEMU; the reply carries its `return`.
    Qmp {
        /// The command (`query-status`, `inject-nmi`, `screendump`, ...).
        command: String,
        /// Its arguments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
    },
}

/// Whether the zone is up or on its way down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneState {
    /// init runs.
    Running,
    /// A stop or reboot is in progress.
    Stopping,
}

/// A monitor's answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// The monitor's PID.
    pub monitor_pid: i32,
    /// init's PID on the host.
    pub init_pid: i32,
    /// Running or stopping.
    pub state: ZoneState,
    /// When the current init started, in seconds since the epoch.
    pub started_at: u64,
    /// How many times `restart_init` has started init again since the
    /// zone booted (SmartOS's `init_restarts`).
    #[serde(default)]
    pub init_restarts: u32,
}

/// A reply line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status` and `reboot`.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<MonitorStatus>,
    /// For `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// For `qmp`: QEMU's `return` member.
    #[serde(default, rename = "return", skip_serializing_if = "Option::is_none")]
    pub qmp_return: Option<serde_json::Value>,
}

impl Reply {
    pub(crate) fn error(msg: impl Into<String>) -> Self {
        Reply { ok: false, error: Some(msg.into()), ..Reply::default() }
    }
}

/// A control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket: the monitor is gone.
    #[error("no monitor is listening on {}: {source}", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (or timed out).
    #[error("control socket: {0}")]
    Io(#[source] io::Error),
    /// The monitor closed the connection without replying (it exited meanwhile).
    #[error("the monitor closed the connection without replying")]
    NoReply,
    /// The reply was not valid JSON.
    #[error("bad reply from the monitor: {0}")]
    BadReply(#[source] serde_json::Error),
    /// The monitor refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Client of one zone's monitor.
#[derive(Clone, Debug)]
pub struct MonitorClient {
    run_dir: PathBuf,
}

impl MonitorClient {
    /// A client for the monitor whose run directory is `run_dir`.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        MonitorClient { run_dir: run_dir.into() }
    }

    /// Sends `req` and waits up to `timeout` for the reply.
    pub fn request(&self, req: &Request, timeout: Duration) -> Result<Reply, ControlError> {
        self.exchange(req, timeout, Duration::from_secs(10)).map(|(_, reply)| reply)
    }

    /// Sends `req`, reads the reply line and returns the connection with it.
    fn exchange(&self, req: &Request, timeout: Duration, write: Duration) -> Result<(UnixStream, Reply), ControlError> {
        let path = self.run_dir.join(SOCKET_FILE);
        let mut sock = with_socket_path(&self.run_dir, |p| connect(p, write))
            .map_err(|source| ControlError::NotRunning { path, source })?;
        sock.set_read_timeout(Some(timeout)).map_err(ControlError::Io)?;
        sock.set_write_timeout(Some(write)).map_err(ControlError::Io)?;
        let mut line = serde_json::to_vec(req).map_err(ControlError::BadReply)?;
        line.push(b'\n');
        sock.write_all(&line).map_err(ControlError::Io)?;
        let mut reply = String::new();
        // Nothing follows the reply line unasked: a buffered reader loses nothing.
        BufReader::new(&sock).read_line(&mut reply).map_err(ControlError::Io)?;
        if reply.is_empty() {
            return Err(ControlError::NoReply);
        }
        let reply: Reply = serde_json::from_str(&reply).map_err(ControlError::BadReply)?;
        if !reply.ok {
            return Err(ControlError::Refused(reply.error.unwrap_or_else(|| "request failed".into())));
        }
        Ok((sock, reply))
    }

    /// Asks the monitor to serve a seccomp listener for the zone's
    /// `sysinfo` (waiting up to `timeout` for its answer) and returns the
    /// connection to send it on ([`send_fd`]) once the monitor agreed.
    pub fn offer_sysinfo_listener(&self, timeout: Duration) -> Result<UnixStream, ControlError> {
        let (sock, _) = self.exchange(&Request::SysinfoListener, timeout, timeout)?;
        Ok(sock)
    }

    fn status_of(reply: Reply) -> Result<MonitorStatus, ControlError> {
        reply.status.ok_or_else(|| ControlError::Refused("reply lacks a status".into()))
    }

    /// The monitor's status.
    pub fn status(&self) -> Result<MonitorStatus, ControlError> {
        Self::status_of(self.request(&Request::Status, Duration::from_secs(10))?)
    }

    /// Stops the zone and returns its exit record once it is down.
    /// `timeout_secs`: grace period before the zone is killed (default 60 s,
    /// at most [`MAX_STOP_TIMEOUT`]; ignored with `force`).
    pub fn stop(&self, force: bool, timeout_secs: Option<u64>) -> Result<ExitRecord, ControlError> {
        let grace = stop_grace(timeout_secs);
        let req = Request::Stop { force, timeout_secs: Some(grace.as_secs()) };
        let wait = if force { STOP_SLACK } else { grace.saturating_add(STOP_SLACK) };
        match self.request(&req, wait) {
            Ok(Reply { exit: Some(rec), .. }) => Ok(rec),
            Ok(_) => read_exit(&self.run_dir).ok_or_else(|| ControlError::Refused("reply lacks an exit record".into())),
            // The zone went down on its own just before or while we asked.
            Err(e @ (ControlError::NotRunning { .. } | ControlError::NoReply)) => read_exit(&self.run_dir).ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Reboots the zone (gracefully unless `force`, with the default grace
    /// period) and returns its status once the new init runs.
    pub fn reboot(&self, force: bool) -> Result<MonitorStatus, ControlError> {
        let req = Request::Reboot { force, timeout_secs: None };
        Self::status_of(self.request(&req, stop_grace(None).saturating_add(Duration::from_secs(60)))?)
    }

    /// Sends `signal` to the zone's init.
    pub fn kill(&self, signal: i32) -> Result<(), ControlError> {
        self.request(&Request::Kill { signal }, Duration::from_secs(10)).map(drop)
    }

    /// Applies `limits` to the running zone; on a refusal nothing changed.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), ControlError> {
        self.request(&Request::SetLimits { limits: limits.clone() }, Duration::from_secs(30)).map(drop)
    }

    /// Sets the size of the zone's `/tmp` to `bytes` (0: no tmpfs): a
    /// zone that has a tmpfs there and keeps one gets it resized at once
    /// (refused when it holds more), any other change is kept for its next
    /// boot, as SmartOS does. On a refusal nothing changed.
    pub fn set_tmpfs(&self, bytes: u64) -> Result<(), ControlError> {
        self.request(&Request::SetTmpfs { bytes }, Duration::from_secs(10)).map(drop)
    }

    /// Rewrites the running zone's `/etc/resolv.conf` with `resolvers`.
    pub fn set_resolvers(&self, resolvers: &[String]) -> Result<(), ControlError> {
        self.request(&Request::SetResolvers { resolvers: resolvers.to_vec() }, Duration::from_secs(10)).map(drop)
    }

    /// Gives the instance's metadata service the instance as it now is.
    pub fn set_metadata(&self, vm: &serde_json::Value) -> Result<(), ControlError> {
        self.request(&Request::SetMetadata { vm: vm.clone() }, Duration::from_secs(10)).map(drop)
    }

    /// Runs `command` (with `arguments`) in the VM's QEMU over QMP and
    /// returns its `return` member; QEMU's refusal is
    /// [`ControlError::Refused`] with its class and description.
    pub fn qmp(&self, command: &str, arguments: Option<serde_json::Value>) -> Result<serde_json::Value, ControlError> {
        let req = Request::Qmp { command: command.to_owned(), arguments };
        let reply = self.request(&req, QMP_TIMEOUT.saturating_add(Duration::from_secs(10)))?;
        Ok(reply.qmp_return.unwrap_or(serde_json::Value::Null))
    }

    /// Attaches to the zone's console and returns the connection, which
    /// from now on carries it: raw output to read, [`encode_input`] and
    /// [`encode_winsize`] frames to write. Refused while another client
    /// is attached.
    pub fn attach_console(&self) -> Result<UnixStream, ControlError> {
        let path = self.run_dir.join(SOCKET_FILE);
        let mut sock = with_socket_path(&self.run_dir, |p| connect(p, Duration::from_secs(10)))
            .map_err(|source| ControlError::NotRunning { path, source })?;
        sock.set_read_timeout(Some(Duration::from_secs(10))).map_err(ControlError::Io)?;
        sock.set_write_timeout(Some(Duration::from_secs(10))).map_err(ControlError::Io)?;
        let mut line = serde_json::to_vec(&Request::Console).map_err(ControlError::BadReply)?;
        line.push(b'\n');
        sock.write_all(&line).map_err(ControlError::Io)?;
        // Byte by byte up to the newline: what follows is console output,
        // which a buffered reader would swallow.
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match (&sock).read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if reply.len() < MAX_REPLY => reply.push(byte[0]),
                Ok(_) => return Err(ControlError::Refused("the monitor's reply is too long".into())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ControlError::Io(e)),
            }
        }
        if reply.is_empty() {
            return Err(ControlError::NoReply);
        }
        let reply: Reply = serde_json::from_slice(&reply).map_err(ControlError::BadReply)?;
        if !reply.ok {
            return Err(ControlError::Refused(reply.error.unwrap_or_else(|| "request failed".into())));
        }
        sock.set_read_timeout(None).map_err(ControlError::Io)?;
        sock.set_write_timeout(None).map_err(ControlError::Io)?;
        Ok(sock)
    }
}

/// Connects to the Unix socket at `path`, waiting at most `timeout`: a
/// listener whose backlog is full (a stopped monitor's) would otherwise
/// keep `connect` waiting for good. The timeout stays as the socket's
/// write timeout.
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) returns a new descriptor, owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    sock.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: connect reads the address we own, of the given length. A
    // connect that times out (SO_SNDTIMEO) fails with EAGAIN.
    if unsafe { libc::connect(sock.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// The byte carrying the listener of init's filter (to the monitor's own socket).
pub(crate) const LISTENER_INIT: u8 = b'I';
/// The byte carrying the listener of a process entered into the zone.
pub(crate) const LISTENER_ENTERED: u8 = b'E';

/// Sends one byte, `tag`, carrying a copy of `fd` (`SCM_RIGHTS`) on the
/// socket `sock`. Allocates nothing (it runs in forked children).
pub fn send_fd(sock: BorrowedFd, tag: u8, fd: BorrowedFd) -> io::Result<()> {
    /// Room for one `cmsghdr` with one descriptor, aligned as a `cmsghdr`.
    #[repr(C)]
    union Space {
        _align: libc::cmsghdr,
        buf: [u8; 64],
    }
    let mut space = Space { buf: [0; 64] };
    let mut byte = [tag];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; the pointers set below live across sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut space as *mut Space).cast();
    // SAFETY: CMSG_* compute sizes and pointers inside the buffer we own,
    // which is large enough and aligned for one header and one int.
    unsafe {
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd.as_raw_fd());
    }
    loop {
        // SAFETY: msg points at live buffers (above).
        match unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } {
            1 => return Ok(()),
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => return Err(io::Error::new(io::ErrorKind::WriteZero, "sendmsg sent nothing")),
        }
    }
}

/// Receives what is waiting on `sock` (up to `buf.len()` bytes, without
/// blocking) and the descriptors that came with it, close-on-exec. `Ok((0,
/// _))` is end-of-file; `WouldBlock` means nothing is waiting.
pub(crate) fn recv_fds(sock: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    const MAX_FDS: usize = 4;
    #[repr(C)]
    union Space {
        _align: libc::cmsghdr,
        buf: [u8; 128],
    }
    let mut space = Space { buf: [0; 128] };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; the pointers set below live across recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut space as *mut Space).cast();
    // SAFETY: a size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<libc::c_int>()) as u32) } as _;
    let n = loop {
        // SAFETY: msg points at live buffers (above).
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled the control buffer; CMSG_* walk it within
    // msg_controllen, and each SCM_RIGHTS payload holds descriptors that
    // are now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..len / std::mem::size_of::<libc::c_int>() {
                    let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds))
}

/// The longest reply line [`MonitorClient::attach_console`] reads.
const MAX_REPLY: usize = 64 * 1024;

/// How much console output is kept for a client: the output of the time
/// nobody was attached, and what an attached client has not read yet.
pub const CONSOLE_BACKLOG: usize = 64 * 1024;

/// Console frame type: input for the zone.
pub const FRAME_INPUT: u8 = 0;
/// Console frame type: the client terminal's size.
pub const FRAME_WINSIZE: u8 = 1;
/// The largest payload of one frame.
pub const MAX_FRAME: usize = u16::MAX as usize;
const FRAME_HEADER: usize = 3;

/// Appends `data` to `out` as input frames (as many as its length needs).
pub fn encode_input(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_FRAME) {
        out.push(FRAME_INPUT);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Appends a winsize frame to `out`.
pub fn encode_winsize(rows: u16, cols: u16, out: &mut Vec<u8>) {
    out.push(FRAME_WINSIZE);
    out.extend_from_slice(&4u16.to_be_bytes());
    out.extend_from_slice(&rows.to_be_bytes());
    out.extend_from_slice(&cols.to_be_bytes());
}

/// One client-to-monitor console frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleFrame {
    /// Bytes for the zone.
    Input(Vec<u8>),
    /// The client's terminal size.
    Winsize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
}

/// A console frame broke the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A winsize frame whose payload is not 4 bytes.
    #[error("a winsize frame carries 4 bytes, not {0}")]
    BadWinsize(usize),
}

/// Splits a byte stream into [`ConsoleFrame`]s, whatever the reads' boundaries.
/// It holds at most one incomplete frame between calls.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, `None` when more bytes are needed. Frames
    /// of unknown types are skipped.
    pub fn next_frame(&mut self) -> Option<Result<ConsoleFrame, FrameError>> {
        loop {
            if self.buf.len() < FRAME_HEADER {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]));
            if self.buf.len() < FRAME_HEADER + len {
                return None;
            }
            let kind = self.buf[0];
            let payload: Vec<u8> = self.buf.drain(..FRAME_HEADER + len).skip(FRAME_HEADER).collect();
            match kind {
                FRAME_INPUT => return Some(Ok(ConsoleFrame::Input(payload))),
                FRAME_WINSIZE if len == 4 => {
                    let rows = u16::from_be_bytes([payload[0], payload[1]]);
                    let cols = u16::from_be_bytes([payload[2], payload[3]]);
                    return Some(Ok(ConsoleFrame::Winsize { rows, cols }));
                }
                FRAME_WINSIZE => return Some(Err(FrameError::BadWinsize(len))),
                _ => continue,
            }
        }
    }

    /// Bytes held (an incomplete frame).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Runs `f` on the path of `run_dir/monitor.sock`, or, when that is too long
/// for a socket address (108 bytes), on `/proc/self/fd/N/monitor.sock`
/// through a descriptor of `run_dir`.
pub(crate) fn with_socket_path<T>(run_dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    with_short_path(run_dir, SOCKET_FILE, f)
}

/// Runs `f` on `dir/name`, or, when that is too long for a socket address
/// (108 bytes), on `/proc/self/fd/N/name` through a descriptor of `dir`.
pub(crate) fn with_short_path<T>(dir: &Path, name: &str, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let path = dir.join(name);
    if path.as_os_str().len() < 100 {
        return f(&path);
    }
    let fd = crate::rootfs::open_dir(dir)?;
    f(&Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).join(name))
}

/// The PID in `run_dir/monitor.pid` if that process is alive and is a
/// monitor serving `run_dir` (its command line is `<exe> <run_dir>`): unlike
/// [`find_monitor`], true of a monitor too busy to answer.
pub fn live_monitor_pid(run_dir: &Path) -> Option<i32> {
    let pid = recorded_monitor_pid(run_dir)?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie's cmdline is empty, but check its state anyway.
    if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])) {
        return None;
    }
    let arg = cmdline.split(|b| *b == 0).nth(1)?;
    let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
    let same = arg == run_dir || matches!((fs::canonicalize(arg), fs::canonicalize(run_dir)), (Ok(a), Ok(b)) if a == b);
    same.then_some(pid)
}

/// The PID in `run_dir/monitor.pid`, alive or not: a monitor that died
/// without cleaning up (killed) leaves it behind.
pub fn recorded_monitor_pid(run_dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(run_dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

/// Removes what a monitor that died without cleaning up left in its run
/// directory: the control socket and the pid file. The console logs and
/// the spec stay.
pub fn remove_stale_files(run_dir: &Path) {
    for f in [SOCKET_FILE, PID_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
}

/// Finds a live monitor for `run_dir` (after a daemon restart) and returns its status.
pub fn find_monitor(run_dir: &Path) -> Option<MonitorStatus> {
    let pid = live_monitor_pid(run_dir)?;
    let st = MonitorClient::new(run_dir).status().ok()?;
    (st.monitor_pid == pid).then_some(st)
}

/// The zone's last exit record (`run_dir/exit.json`), if any.
pub fn read_exit(run_dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&fs::read(run_dir.join(EXIT_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitReason;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"op":"stop","force":true}"#).unwrap();
        assert_eq!(r, Request::Stop { force: true, timeout_secs: None });
        let st =
            MonitorStatus { monitor_pid: 5, init_pid: 6, state: ZoneState::Running, started_at: 7, init_restarts: 2 };
        let reply = Reply { ok: true, status: Some(st.clone()), ..Reply::default() };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(
            text,
            r#"{"ok":true,"monitor_pid":5,"init_pid":6,"state":"running","started_at":7,"init_restarts":2}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        // A monitor started before init_restarts was counted answers without it.
        let older = r#"{"ok":true,"monitor_pid":5,"init_pid":6,"state":"running","started_at":7}"#;
        assert_eq!(serde_json::from_str::<Reply>(older).unwrap().status.map(|s| s.init_restarts), Some(0));
        let exit = ExitRecord {
            reason: ExitReason::Halted,
            code: None,
            signal: None,
            oom_killed: false,
            message: "m".into(),
            at: 1,
        };
        let reply = Reply { ok: true, exit: Some(exit), ..Reply::default() };
        let back: Reply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
        let back: Reply = serde_json::from_str(r#"{"ok":false,"error":"no"}"#).unwrap();
        assert_eq!(back, Reply::error("no"));
        assert_eq!(serde_json::to_string(&Request::Console).unwrap(), r#"{"op":"console"}"#);
        assert_eq!(
            serde_json::to_string(&Request::SetTmpfs { bytes: 1 << 20 }).unwrap(),
            r#"{"op":"set_tmpfs","bytes":1048576}"#
        );
        assert_eq!(serde_json::to_string(&Request::SysinfoListener).unwrap(), r#"{"op":"sysinfo_listener"}"#);
        let r: Request = serde_json::from_str(r#"{"op":"qmp","command":"query-status"}"#).unwrap();
        assert_eq!(r, Request::Qmp { command: "query-status".into(), arguments: None });
        let r =
            Request::Qmp { command: "screendump".into(), arguments: Some(serde_json::json!({"filename": "/vm/s"})) };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op":"qmp","command":"screendump","arguments":{"filename":"/vm/s"}}"#
        );
        let reply = Reply { ok: true, qmp_return: Some(serde_json::json!({"status": "running"})), ..Reply::default() };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"ok":true,"return":{"status":"running"}}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }

    #[test]
    fn a_dead_monitors_files_are_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_monitor_pid(dir.path()), None);
        for f in [PID_FILE, SOCKET_FILE, CONSOLE_FILE, SPEC_FILE] {
            fs::write(dir.path().join(f), "2147483646\n").unwrap();
        }
        assert_eq!(recorded_monitor_pid(dir.path()), Some(2147483646));
        assert_eq!(live_monitor_pid(dir.path()), None, "no such process");
        remove_stale_files(dir.path());
        assert!(!dir.path().join(PID_FILE).exists() && !dir.path().join(SOCKET_FILE).exists());
        assert!(dir.path().join(CONSOLE_FILE).exists() && dir.path().join(SPEC_FILE).exists());
        fs::write(dir.path().join(PID_FILE), "-5").unwrap();
        assert_eq!(recorded_monitor_pid(dir.path()), None);
    }

    #[test]
    fn grace_periods_are_bounded() {
        assert_eq!(stop_grace(None), DEFAULT_STOP_TIMEOUT);
        assert_eq!(stop_grace(Some(5)), Duration::from_secs(5));
        assert_eq!(stop_grace(Some(u64::MAX)), MAX_STOP_TIMEOUT);
        // What stop() waits for its answer: no overflow, whatever was asked.
        assert_eq!(stop_grace(Some(u64::MAX)).saturating_add(STOP_SLACK), MAX_STOP_TIMEOUT + STOP_SLACK);
        let now = std::time::Instant::now();
        assert!(now.checked_add(stop_grace(Some(u64::MAX)).saturating_add(STOP_SLACK)).is_some());
    }

    #[test]
    fn stop_with_an_absurd_timeout_asks_for_the_maximum() {
        // A monitor that answers at once: stop() must get that far without
        // overflowing its own wait, and ask for the clamped grace period.
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&sock).read_line(&mut line).unwrap();
            let exit = ExitRecord {
                reason: ExitReason::Stopped,
                code: None,
                signal: None,
                oom_killed: false,
                message: "m".into(),
                at: 1,
            };
            let mut reply = serde_json::to_vec(&Reply { ok: true, exit: Some(exit), ..Reply::default() }).unwrap();
            reply.push(b'\n');
            (&sock).write_all(&reply).unwrap();
            serde_json::from_str::<Request>(&line).unwrap()
        });
        let rec = MonitorClient::new(dir.path()).stop(false, Some(u64::MAX)).unwrap();
        assert_eq!(rec.reason, ExitReason::Stopped);
        assert_eq!(
            server.join().unwrap(),
            Request::Stop { force: false, timeout_secs: Some(MAX_STOP_TIMEOUT.as_secs()) }
        );
    }

    #[test]
    fn connect_gives_up_on_a_full_backlog() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A backlog of 1 (std's listener asks for somaxconn, 4096: more
        // descriptors than a default RLIMIT_NOFILE of 1024 allows).
        use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&fd, Backlog::new(1).unwrap()).unwrap();
        let listener = std::os::unix::net::UnixListener::from(fd);
        // Never accepted: fill the backlog until connect waits, then times out.
        let mut held = Vec::new();
        let start = std::time::Instant::now();
        let err = loop {
            match connect(&path, Duration::from_millis(200)) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 100, "the backlog never filled");
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        assert!(start.elapsed() < Duration::from_secs(30));
        drop(listener);
        let gone = connect(&path, Duration::from_secs(1)).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::ConnectionRefused, "{gone}");
    }

    #[test]
    fn descriptors_pass_over_a_socket() {
        use std::os::fd::AsFd;
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 8];
        let e = recv_fds(b.as_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        send_fd(a.as_fd(), b'E', w.as_fd()).unwrap();
        let (n, mut fds) = recv_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, buf[0], fds.len()), (1, b'E', 1));
        // The descriptor received is the same socket: what goes in one end comes out of r.
        let w2 = UnixStream::from(fds.pop().unwrap());
        (&w2).write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        (&r).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        // SAFETY: F_GETFD on a descriptor we own.
        assert_ne!(unsafe { libc::fcntl(w2.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC, 0, "close-on-exec");
        drop(a);
        assert_eq!(recv_fds(b.as_fd(), &mut buf).unwrap().0, 0, "end-of-file");
    }

    #[test]
    fn console_frames_on_the_wire() {
        let mut wire = Vec::new();
        encode_input(b"ls\r", &mut wire);
        encode_winsize(50, 132, &mut wire);
        assert_eq!(wire, [0, 0, 3, b'l', b's', b'\r', 1, 0, 4, 0, 50, 0, 132]);
        let mut d = FrameDecoder::default();
        d.push(&wire);
        assert_eq!(d.next_frame(), Some(Ok(ConsoleFrame::Input(b"ls\r".to_vec()))));
        assert_eq!(d.next_frame(), Some(Ok(ConsoleFrame::Winsize { rows: 50, cols: 132 })));
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn console_frames_split_anywhere() {
        let mut wire = Vec::new();
        encode_input(b"hello", &mut wire);
        let before = wire.len();
        encode_input(b"", &mut wire);
        assert_eq!(wire.len(), before, "no input, no frame");
        wire.extend([FRAME_INPUT, 0, 0]);
        encode_winsize(24, 80, &mut wire);
        encode_input(&[0x1d, 0, 0xff], &mut wire);
        let want = vec![
            ConsoleFrame::Input(b"hello".to_vec()),
            ConsoleFrame::Input(Vec::new()),
            ConsoleFrame::Winsize { rows: 24, cols: 80 },
            ConsoleFrame::Input(vec![0x1d, 0, 0xff]),
        ];
        for cut in 0..=wire.len() {
            let mut d = FrameDecoder::default();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                for byte in part.chunks(1) {
                    d.push(byte);
                    while let Some(f) = d.next_frame() {
                        got.push(f.unwrap());
                    }
                }
            }
            assert_eq!(got, want, "cut at {cut}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn long_input_is_split_into_frames() {
        let data: Vec<u8> = (0..MAX_FRAME * 2 + 10).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        encode_input(&data, &mut wire);
        assert_eq!(wire.len(), data.len() + 3 * 3);
        let mut d = FrameDecoder::default();
        d.push(&wire);
        let mut back = Vec::new();
        let mut frames = 0;
        while let Some(Ok(ConsoleFrame::Input(chunk))) = d.next_frame() {
            assert!(chunk.len() <= MAX_FRAME);
            back.extend(chunk);
            frames += 1;
        }
        assert_eq!((frames, back), (3, data));
    }

    #[test]
    fn unknown_frames_are_skipped_and_bad_winsizes_refused() {
        let mut d = FrameDecoder::default();
        d.push(&[7, 0, 2, 9, 9]);
        encode_input(b"x", &mut d.buf);
        assert_eq!(d.next_frame(), Some(Ok(ConsoleFrame::Input(b"x".to_vec()))), "type 7 is skipped");
        d.push(&[FRAME_WINSIZE, 0, 2, 0, 24]);
        assert_eq!(d.next_frame(), Some(Err(FrameError::BadWinsize(2))));
        // An incomplete frame waits for the rest.
        d.push(&[FRAME_INPUT, 0, 5, b'a']);
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.pending(), 4);
    }
}
