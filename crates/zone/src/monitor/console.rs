//! The zone's console as the monitor holds it: a pty whose slave is the
//! zone's `/dev/console` (and init's stdio), whose output the monitor
//! appends to `console.log` (rotated to `console.log.1` past 1 MiB), and,
//! when a client has attached through the control socket (`vmadm console`),
//! relays to and from that client.
//!
//! ```text
//!   zone ── /dev/console (slave) ══ master ──> console.log
//!                                     │  └───> attached client (bounded, nonblocking)
//!                                     │        or, while nobody is attached, the backlog
//!                                     └─<── client frames: input, winsize
//! ```
//!
//! Everything here runs in the monitor's single poll loop, so nothing may
//! block: the master and the client are nonblocking, output a slow client
//! has not taken is bounded (the rest is dropped; the log keeps it), and
//! input the zone does not read is bounded too (then the client is not
//! read until the zone catches up). The wire format is in
//! [`crate::control`]'s documentation.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::control::{self, ConsoleFrame, FrameDecoder, CONSOLE_BACKLOG};
use crate::rootfs::{self, cvt};

/// Size at which `console.log` is rotated.
const CONSOLE_MAX: u64 = 1 << 20;

/// The console: a pty whose slave is the zone's `/dev/console`.
pub(super) struct Console {
    master: fs::File,
    pub(super) slave: OwnedFd,
    pub(super) slave_path: PathBuf,
    log: fs::File,
    size: u64,
    path: PathBuf,
    /// The pty is unusable: stop polling it.
    dead: bool,
    /// The output of the time nobody is attached (the last `CONSOLE_BACKLOG` bytes).
    backlog: VecDeque<u8>,
    client: Option<Client>,
}

/// An attached `vmadm console`.
struct Client {
    sock: UnixStream,
    /// Output not yet written to the client (at most `CONSOLE_BACKLOG` bytes).
    out: VecDeque<u8>,
    /// Output dropped because the client did not keep up.
    dropped: u64,
    frames: FrameDecoder,
    /// Input not yet written to the pty.
    input: VecDeque<u8>,
}

/// What the poll loop asks of the console's two descriptors.
pub(super) struct Interest {
    /// The master, or -1.
    pub master: (RawFd, libc::c_short),
    /// The attached client, or -1.
    pub client: (RawFd, libc::c_short),
}

impl Console {
    pub(super) fn open(run_dir: &Path) -> io::Result<Console> {
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on a descriptor we own, into a buffer we own.
        let (master, slave_path) = unsafe {
            let m = cvt(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?;
            let m = OwnedFd::from_raw_fd(m);
            cvt(libc::grantpt(m.as_raw_fd()))?;
            cvt(libc::unlockpt(m.as_raw_fd()))?;
            let mut buf = [0 as libc::c_char; 128];
            let r = libc::ptsname_r(m.as_raw_fd(), buf.as_mut_ptr(), buf.len());
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            let name = std::ffi::CStr::from_ptr(buf.as_ptr());
            let flags = cvt(libc::fcntl(m.as_raw_fd(), libc::F_GETFL))?;
            cvt(libc::fcntl(m.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
            (m, PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
        };
        let c = rootfs::cstring(slave_path.as_os_str().as_bytes())?;
        // SAFETY: valid C string; the descriptor is checked and owned; the winsize is ours.
        let slave = unsafe {
            let s = OwnedFd::from_raw_fd(cvt(libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?);
            let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
            libc::ioctl(s.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            s
        };
        let path = run_dir.join(control::CONSOLE_FILE);
        let log = fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let size = log.metadata()?.len();
        Ok(Console {
            master: fs::File::from(master),
            slave,
            slave_path,
            log,
            size,
            path,
            dead: false,
            backlog: VecDeque::new(),
            client: None,
        })
    }

    /// The descriptors to poll and for what.
    pub(super) fn interest(&self) -> Interest {
        let mut master = (-1, 0);
        if !self.dead {
            let mut ev = libc::POLLIN;
            if self.client.as_ref().is_some_and(|c| !c.input.is_empty()) {
                ev |= libc::POLLOUT;
            }
            master = (self.master.as_raw_fd(), ev);
        }
        let client = match &self.client {
            None => (-1, 0),
            Some(c) => {
                // Not read while the zone has not taken its earlier input
                // (hang-ups and errors are reported anyway).
                let mut ev = if c.input.len() < CONSOLE_BACKLOG { libc::POLLIN } else { 0 };
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                (c.sock.as_raw_fd(), ev)
            }
        };
        Interest { master, client }
    }

    /// The master is ready (`revents` from poll).
    pub(super) fn on_master(&mut self, revents: libc::c_short) {
        if revents & libc::POLLOUT != 0 {
            self.flush_input();
        }
        if revents & !libc::POLLOUT != 0 {
            self.pump();
        }
    }

    /// The attached client's socket is ready (`revents` from poll).
    pub(super) fn on_client(&mut self, revents: libc::c_short) {
        if revents & libc::POLLOUT != 0 {
            self.flush_output();
        }
        if revents & !libc::POLLOUT == 0 {
            return;
        }
        let full = self.client.as_ref().is_some_and(|c| c.input.len() >= CONSOLE_BACKLOG);
        if full && revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            // Gone while the zone was not reading its input: nothing more to read for it.
            return self.detach("it hung up");
        }
        self.read_client();
    }

    /// Copies what the zone wrote to the log and to the client (or the
    /// backlog), a bounded amount per call.
    pub(super) fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.deliver(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: the slave was hung up (vhangup by a getty): hold it open
                // again, or poll would keep reporting the hang-up.
                _ => return self.reopen_slave(),
            }
        }
    }

    fn reopen_slave(&mut self) {
        let Ok(c) = rootfs::cstring(self.slave_path.as_os_str().as_bytes()) else { return };
        // SAFETY: valid C string; the descriptor is checked before being owned.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: just opened, owned by nobody else.
            self.slave = unsafe { OwnedFd::from_raw_fd(fd) };
        } else {
            self.dead = true;
        }
    }

    fn deliver(&mut self, data: &[u8]) {
        self.append(data);
        match &mut self.client {
            Some(c) => {
                let room = CONSOLE_BACKLOG.saturating_sub(c.out.len());
                let (kept, dropped) = data.split_at(data.len().min(room));
                c.out.extend(kept);
                c.dropped += dropped.len() as u64;
                self.flush_output();
            }
            None => {
                self.backlog.extend(data);
                let excess = self.backlog.len().saturating_sub(CONSOLE_BACKLOG);
                self.backlog.drain(..excess);
            }
        }
    }

    fn append(&mut self, data: &[u8]) {
        let _ = self.log.write_all(data);
        self.size += data.len() as u64;
        if self.size > CONSOLE_MAX {
            let old = self.path.with_file_name(control::CONSOLE_PREVIOUS_FILE);
            let _ = fs::rename(&self.path, old);
            if let Ok(f) = fs::OpenOptions::new().create(true).append(true).open(&self.path) {
                self.log = f;
                self.size = 0;
            }
        }
    }

    /// Whether a client is attached and still connected.
    fn attached(&self) -> bool {
        let Some(c) = &self.client else { return false };
        let mut pfd = libc::pollfd { fd: c.sock.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one live pollfd, no waiting.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n <= 0 || pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) == 0
    }

    /// `{"op":"console"}` on `sock` (`early`: bytes the client sent after
    /// the request line): answers, then makes `sock` the attached client,
    /// starting with the backlog. A second client is refused.
    pub(super) fn attach(&mut self, sock: UnixStream, early: &[u8]) {
        if self.attached() {
            return super::send(&sock, &control::Reply::error("console already in use (one client at a time)"));
        }
        self.detach("it left");
        if self.dead {
            return super::send(&sock, &control::Reply::error("the console pty is unusable"));
        }
        super::send(&sock, &control::Reply { ok: true, ..control::Reply::default() });
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        let mut frames = FrameDecoder::default();
        frames.push(early);
        let out = std::mem::take(&mut self.backlog);
        log!("console client attached ({} bytes of backlog)", out.len());
        self.client = Some(Client { sock, out, dropped: 0, frames, input: VecDeque::new() });
        self.take_frames();
        self.flush_output();
    }

    /// Drops the client, if any; the backlog starts again from now.
    fn detach(&mut self, why: &str) {
        if let Some(c) = self.client.take() {
            log!("console client detached: {why} ({} bytes of output dropped for it)", c.dropped);
            self.backlog.clear();
        }
    }

    fn read_client(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            let Some(c) = &mut self.client else { return };
            if c.input.len() >= CONSOLE_BACKLOG {
                return;
            }
            match (&c.sock).read(&mut buf) {
                Ok(0) => return self.detach("it closed the connection"),
                Ok(n) => c.frames.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.detach(&format!("reading: {e}")),
            }
            self.take_frames();
        }
    }

    /// Acts on the complete frames the client sent.
    fn take_frames(&mut self) {
        let Some(c) = &mut self.client else { return };
        while let Some(frame) = c.frames.next_frame() {
            match frame {
                Ok(ConsoleFrame::Input(data)) => c.input.extend(data),
                Ok(ConsoleFrame::Winsize { rows, cols }) => {
                    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: TIOCSWINSZ reads the winsize we pass.
                    unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
                Err(e) => return self.detach(&format!("protocol error: {e}")),
            }
        }
        self.flush_input();
    }

    /// Writes pending input to the pty, as much as it takes now.
    fn flush_input(&mut self) {
        let Some(c) = &mut self.client else { return };
        while !c.input.is_empty() && !self.dead {
            let (head, _) = c.input.as_slices();
            match (&self.master).write(head) {
                Ok(n) => {
                    c.input.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: the zone is not reading; EIO: hung up. Keep it for later.
                Err(_) => return,
            }
        }
    }

    /// Writes pending output to the client, as much as it takes now.
    pub(super) fn flush_output(&mut self) {
        let Some(c) = &mut self.client else { return };
        while !c.out.is_empty() {
            let (head, _) = c.out.as_slices();
            match (&c.sock).write(head) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EPIPE, ECONNRESET: the client is gone.
                Err(e) => return self.detach(&format!("writing: {e}")),
            }
        }
    }
}
