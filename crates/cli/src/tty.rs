//! The caller's terminal and the relay between it and a zone: `vmadm
//! console` (to the zone monitor's console socket) and `zlogin` on a
//! terminal (to a pty of the zone's own).
//!
//! ```text
//!   caller's terminal (raw)          peer
//!   fd 0 ── input ──────────────>  console socket: input frames (control.rs)
//!                                   pty master:     bytes as they are
//!   fd 1 <── output ─────────────  both: bytes as they are
//!   SIGWINCH ── size ───────────>  console: winsize frame; pty: TIOCSWINSZ
//!   SIGTERM/SIGHUP/SIGINT/SIGQUIT  end the relay (the terminal is restored)
//!   SIGCHLD (zlogin)               the command ended: drain the pty, report its status
//! ```
//!
//! One thread, one `poll(2)` loop, signals through a signalfd (so nothing
//! runs in a signal handler, and a SIGTERM ends the loop like any other
//! event, with the terminal restored on the way out). The guards
//! ([`Terminal`]) restore the terminal's modes and the signal mask on
//! every exit path, panics included.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use zonevisor_zone::control;
use zonevisor_zone::enter::exit_code;

/// CTRL-]: detaches from a console (as telnet's escape).
pub const DETACH: u8 = 0x1d;

/// Input held for the peer before the relay stops reading its stdin.
const MAX_PENDING: usize = 64 * 1024;

/// How long output must pause, once stdin has ended, before a console
/// relay ends (and the most it waits for that pause).
const LINGER_QUIET: Duration = Duration::from_millis(500);
const LINGER_MAX: Duration = Duration::from_secs(5);

/// How long the pty is drained for output after the command ended.
const DRAIN_MAX: Duration = Duration::from_secs(2);
const DRAIN_QUIET: Duration = Duration::from_millis(100);

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The size of terminal `fd`, if it is one.
pub fn winsize(fd: RawFd) -> Option<libc::winsize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into ours.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(ws)
}

/// A terminal in raw mode; dropping it restores the modes it had.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts terminal `fd` in raw mode (no echo, no line editing, no signals
    /// from keys, no output processing); `None` when `fd` is not a terminal.
    pub fn enter(fd: RawFd) -> io::Result<Option<RawMode>> {
        if !is_terminal(fd) {
            return Ok(None);
        }
        // SAFETY: tcgetattr writes one termios into ours.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(last_error("cannot read the terminal's modes"));
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the termios we pass; tcsetattr reads it.
        unsafe {
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSADRAIN, &raw) != 0 {
                return Err(last_error("cannot put the terminal in raw mode"));
            }
        }
        Ok(Some(RawMode { fd, saved }))
    }

    /// The modes the terminal had before.
    pub fn saved(&self) -> &libc::termios {
        &self.saved
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: tcsetattr reads the termios we saved.
        unsafe { libc::tcsetattr(self.fd, libc::TCSADRAIN, &self.saved) };
    }
}

/// Signals taken from their handlers into a signalfd while a relay runs;
/// dropping it restores the signal mask.
pub struct Signals {
    fd: OwnedFd,
    old: libc::sigset_t,
}

/// The signals a relay handles.
pub const RELAY_SIGNALS: [i32; 6] =
    [libc::SIGWINCH, libc::SIGCHLD, libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

impl Signals {
    /// Blocks `signals` and opens a signalfd for them. Children inherit the
    /// mask: [`zonevisor_zone::enter::Exec`] clears it before exec.
    pub fn block(signals: &[i32]) -> io::Result<Signals> {
        // SAFETY: sigset manipulation on sets we own, then sigprocmask and
        // signalfd with them; the descriptor is checked before being owned.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in signals {
                libc::sigaddset(&mut set, *s);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
                return Err(last_error("cannot block signals"));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                let e = last_error("cannot open a signalfd");
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return Err(e);
            }
            Ok(Signals { fd: OwnedFd::from_raw_fd(fd), old })
        }
    }

    /// The signals received since the last call.
    pub fn take(&self) -> Vec<i32> {
        let mut out = Vec::new();
        // SAFETY: signalfd_siginfo is plain data.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: reading one record into a buffer of its size.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&mut si as *mut libc::signalfd_siginfo).cast(), size) };
            if n != size as isize {
                return out;
            }
            out.push(si.ssi_signo as i32);
        }
    }

    /// Waits up to `timeout` for a signal; returns those received.
    fn wait(&self, timeout: Duration) -> Vec<i32> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        self.take()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restoring the mask we saved.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// The caller's side of a relay: its terminal (raw when stdin is one) and
/// the signals. Dropping it restores the terminal first, then the mask,
/// so a signal let through by the latter finds the terminal as it was.
pub struct Terminal {
    /// `Some` when stdin is a terminal, now in raw mode.
    pub raw: Option<RawMode>,
    /// The relay's signals.
    pub signals: Signals,
}

impl Terminal {
    /// Blocks the relay's signals, then puts stdin in raw mode when it is a
    /// terminal and `raw` is asked for.
    pub fn take(raw: bool) -> io::Result<Terminal> {
        let signals = Signals::block(&RELAY_SIGNALS)?;
        let raw = if raw { RawMode::enter(0)? } else { None };
        Ok(Terminal { raw, signals })
    }

    /// The terminal's size: stdin's, else stdout's.
    pub fn size(&self) -> Option<libc::winsize> {
        winsize(0).or_else(|| winsize(1))
    }
}

/// Where the relay sends the caller's input and reads output from.
pub enum Peer {
    /// A zone's console, attached through its monitor.
    Console(UnixStream),
    /// The master of a pty in the zone, and the command on its slave.
    Pty {
        /// The master (nonblocking).
        master: File,
        /// The command (our child).
        child: Pid,
    },
}

impl Peer {
    fn fd(&self) -> RawFd {
        match self {
            Peer::Console(s) => s.as_raw_fd(),
            Peer::Pty { master, .. } => master.as_raw_fd(),
        }
    }

    /// Queues input for the peer.
    fn queue_input(&self, data: &[u8], pending: &mut Vec<u8>) {
        match self {
            Peer::Console(_) => control::encode_input(data, pending),
            Peer::Pty { .. } => pending.extend_from_slice(data),
        }
    }

    /// Passes on the terminal's size.
    fn resize(&self, ws: libc::winsize, pending: &mut Vec<u8>) {
        match self {
            Peer::Console(_) => control::encode_winsize(ws.ws_row, ws.ws_col, pending),
            Peer::Pty { master, .. } => {
                // SAFETY: TIOCSWINSZ reads the winsize we pass.
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        }
    }

    /// Writes as much of `pending` as the peer takes now.
    fn flush(&self, pending: &mut Vec<u8>) -> io::Result<()> {
        while !pending.is_empty() {
            let r = match self {
                Peer::Console(s) => (&*s).write(pending),
                Peer::Pty { master, .. } => (&*master).write(pending),
            };
            match r {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Peer::Console(s) => (&*s).read(buf),
            Peer::Pty { master, .. } => (&*master).read(buf),
        }
    }
}

/// How a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The user typed CTRL-] (console with a terminal).
    Detached,
    /// The console's monitor closed the connection (the zone is down).
    Closed,
    /// Stdin ended and the output paused (console without a terminal).
    InputEnded,
    /// This signal (SIGTERM, SIGHUP, SIGINT, SIGQUIT) asked us to stop.
    Signal(i32),
    /// The command on the pty ended with this status (128 + signal when killed).
    Exited(i32),
}

/// Writes all of `data` to descriptor `fd`, waiting when it is nonblocking and full.
fn write_fd(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: writing from a live slice of the given length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                // SAFETY: one live pollfd.
                unsafe { libc::poll(&mut pfd, 1, -1) };
            }
            _ => return Err(e),
        }
    }
    Ok(())
}

fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reading into a live buffer of the given length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn stdout_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("writing to stdout: {e}"))
}

/// What the relay does with the caller's stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input {
    /// End the relay on CTRL-] (only meaningful on a raw terminal).
    pub detach_key: bool,
    /// When stdin ends, keep relaying output until it pauses, then end
    /// (console); else just stop reading stdin (pty: the command decides).
    pub end_with_stdin: bool,
}

/// Relays between the caller (stdin, stdout) and `peer` until one of
/// [`Ended`] happens. `term` supplies the signals and the terminal size
/// (sent first, and again on every SIGWINCH).
pub fn relay(peer: &Peer, term: &Terminal, input: Input) -> io::Result<Ended> {
    let mut pending = Vec::new();
    if let Some(ws) = term.size() {
        peer.resize(ws, &mut pending);
    }
    let mut stdin_open = true;
    let mut linger: Option<(Instant, Instant)> = None; // (quiet until, give up at)
    let mut detaching = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        peer.flush(&mut pending).map_err(|e| peer_error(peer, e))?;
        if detaching && pending.is_empty() {
            return Ok(Ended::Detached);
        }
        let read_stdin = stdin_open && !detaching && pending.len() < MAX_PENDING;
        let mut pfds = [
            libc::pollfd { fd: if read_stdin { 0 } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd {
                fd: peer.fd(),
                events: libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd { fd: term.signals.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let timeout = match linger {
            Some((quiet, max)) => {
                let now = Instant::now();
                if now >= quiet || now >= max {
                    return Ok(Ended::InputEnded);
                }
                (quiet.min(max) - now).as_millis() as i32 + 1
            }
            None if detaching => 1000,
            None => -1,
        };
        // SAFETY: pfds is a live array of pollfds of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 && detaching {
            // The monitor did not take the last input within a second: detach anyway.
            return Ok(Ended::Detached);
        }
        if pfds[2].revents != 0 {
            for sig in term.signals.take() {
                match sig {
                    libc::SIGWINCH => {
                        if let Some(ws) = term.size() {
                            peer.resize(ws, &mut pending);
                        }
                    }
                    libc::SIGCHLD => {
                        if let Peer::Pty { master, child } = peer {
                            if let Some(code) = reap(*child, false)? {
                                drain(master)?;
                                return Ok(Ended::Exited(code));
                            }
                        }
                    }
                    other => return Ok(Ended::Signal(other)),
                }
            }
        }
        if pfds[1].revents & !libc::POLLOUT != 0 {
            match peer_output(peer, &mut buf)? {
                Some(true) => {
                    if let Some((quiet, _)) = &mut linger {
                        *quiet = Instant::now() + LINGER_QUIET;
                    }
                }
                Some(false) => {}
                None => {
                    return match peer {
                        Peer::Console(_) => Ok(Ended::Closed),
                        // Every holder of the slave closed it: the command is
                        // ending or has closed its terminal; wait for it.
                        Peer::Pty { child, .. } => reap(*child, true).map(|c| Ended::Exited(c.unwrap_or(0))),
                    };
                }
            }
        }
        if pfds[0].revents != 0 {
            match read_fd(0, &mut buf) {
                Ok(0) => {
                    stdin_open = false;
                    if input.end_with_stdin {
                        let now = Instant::now();
                        linger = Some((now + LINGER_QUIET, now + LINGER_MAX));
                    }
                }
                Ok(n) => {
                    let data = &buf[..n];
                    match data.iter().position(|b| input.detach_key && *b == DETACH) {
                        Some(at) => {
                            peer.queue_input(&data[..at], &mut pending);
                            detaching = true;
                        }
                        None => peer.queue_input(data, &mut pending),
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("reading stdin: {e}"))),
            }
        }
    }
}

fn peer_error(peer: &Peer, e: io::Error) -> io::Error {
    let what = match peer {
        Peer::Console(_) => "the zone's console",
        Peer::Pty { .. } => "the zone's pty",
    };
    io::Error::new(e.kind(), format!("writing to {what}: {e}"))
}

/// Copies what the peer has to stdout: `Some(true)` when something was
/// copied, `Some(false)` when nothing was ready, `None` at its end.
fn peer_output(peer: &Peer, buf: &mut [u8]) -> io::Result<Option<bool>> {
    let mut copied = false;
    for _ in 0..16 {
        match peer.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                write_fd(1, &buf[..n]).map_err(stdout_error)?;
                copied = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A pty master reads EIO once no one holds the slave.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(copied))
}

/// The command's exit status once it has ended (`wait`: block until then).
fn reap(child: Pid, wait: bool) -> io::Result<Option<i32>> {
    let flags = if wait { None } else { Some(WaitPidFlag::WNOHANG) };
    loop {
        match waitpid(child, flags) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(Some(code));
                }
                if !wait {
                    return Ok(None);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::other(format!("waiting for the command in the zone: {e}"))),
        }
    }
}

/// After the command ended: copies what is left in the pty to stdout,
/// until no one holds the slave, or output pauses (a background job of
/// the command may hold the slave and keep writing), or two seconds pass.
fn drain(master: &File) -> io::Result<()> {
    let deadline = Instant::now() + DRAIN_MAX;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let mut pfd = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.min(DRAIN_QUIET).as_millis() as i32 + 1) };
        if n == 0 {
            return Ok(());
        }
        match (&*master).read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => write_fd(1, &buf[..n]).map_err(stdout_error)?,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                if pfd.revents & libc::POLLHUP != 0 {
                    return Ok(());
                }
            }
            Err(_) => return Ok(()),
        }
    }
}

/// After the relay ended on a signal: the pty is closed (the caller
/// dropped the master: the zone's session got SIGHUP); waits up to two
/// seconds for the command and returns its status, or `None`.
pub fn wait_after_hangup(child: Pid, signals: &Signals) -> io::Result<Option<i32>> {
    let deadline = Instant::now() + DRAIN_MAX;
    loop {
        if let Some(code) = reap(child, false)? {
            return Ok(Some(code));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        signals.wait(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        // SAFETY: tcgetattr writes one termios into ours.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::tcgetattr(fd, &mut t) }, 0);
        t.c_lflag
    }

    #[test]
    fn raw_mode_is_undone_when_dropped() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave.as_raw_fd();
        let cooked = lflag(slave);
        assert_ne!(cooked & libc::ICANON, 0, "a new pty starts cooked");
        {
            let raw = RawMode::enter(slave).unwrap().expect("a pty is a terminal");
            assert_eq!(lflag(slave) & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
            assert_eq!(raw.saved().c_lflag, cooked);
        }
        assert_eq!(lflag(slave), cooked);
        let file = File::open("/dev/null").unwrap();
        assert!(RawMode::enter(file.as_raw_fd()).unwrap().is_none(), "/dev/null is not a terminal");
    }

    #[test]
    fn window_size_of_a_terminal_only() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let ws = libc::winsize { ws_row: 40, ws_col: 132, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads the winsize we pass.
        assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
        let got = winsize(pty.slave.as_raw_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (40, 132));
        let file = File::open("/dev/null").unwrap();
        assert!(winsize(file.as_raw_fd()).is_none());
        assert!(is_terminal(pty.slave.as_raw_fd()) && !is_terminal(file.as_raw_fd()));
    }

    #[test]
    fn peers_encode_input_and_sizes_their_own_way() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let console = Peer::Console(a);
        let mut pending = Vec::new();
        console.queue_input(b"ls\r", &mut pending);
        console.resize(libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 }, &mut pending);
        console.flush(&mut pending).unwrap();
        assert!(pending.is_empty());
        drop(console);
        let mut wire = Vec::new();
        b.read_to_end(&mut wire).unwrap();
        let mut frames = control::FrameDecoder::default();
        frames.push(&wire);
        assert_eq!(frames.next_frame(), Some(Ok(control::ConsoleFrame::Input(b"ls\r".to_vec()))));
        assert_eq!(frames.next_frame(), Some(Ok(control::ConsoleFrame::Winsize { rows: 24, cols: 80 })));

        // A pty takes input as is, and its size by ioctl.
        let pty = nix::pty::openpty(None, None).unwrap();
        let master = File::from(pty.master);
        let peer = Peer::Pty { master, child: Pid::from_raw(0) };
        let mut pending = Vec::new();
        peer.queue_input(b"x", &mut pending);
        assert_eq!(pending, b"x");
        peer.resize(libc::winsize { ws_row: 33, ws_col: 99, ws_xpixel: 0, ws_ypixel: 0 }, &mut pending);
        assert_eq!(pending, b"x", "no bytes for a resize");
        let got = winsize(pty.slave.as_raw_fd()).unwrap();
        assert_eq!((got.ws_row, got.ws_col), (33, 99));
    }
}
