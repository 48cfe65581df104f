//! The guest side: a blocking client that behaves as joyent's mdata-client.
//!
//! It finds the host as mdata-client does, in this order:
//!
//! 1. `$ZONEVISOR_MDATA_SOCKET`, a Unix socket (for tests);
//! 2. `/native/.zonecontrol/metadata.sock`, then
//!    `/.zonecontrol/metadata.sock`, whichever exists as a socket (zones);
//! 3. the serial port `/dev/ttyS1` (VMs): opened exclusive, locked with a
//!    POSIX write lock (as mdata-client and cloud-init lock it), put in raw
//!    mode, and drained of whatever an earlier user left on it.
//!
//! Then it starts a session the way mdata-client does:
//!
//! ```text
//!   open ─▶ send "\n", wait 2 s for "invalid command" ─▶ send "NEGOTIATE V2", wait 6 s
//!     ▲        (proves the host is there and the line is in step)          │
//!     │                                               "V2_OK": V2 ◀────────┤ anything else: V1
//!     └──── 1 s later, on a timeout, a hang-up or a wrong answer ◀─────────┘ no answer
//! ```
//!
//! Each request then waits 45 s for its answer (6 s in V1). A V2 answer
//! must carry the request's id and a good CRC: other lines are skipped, so
//! replies meant for an earlier user of a serial line do no harm. When an
//! answer does not come the client starts over from `open` and asks again;
//! like mdata-client it does so forever unless [`Config::retries`] says
//! otherwise. `PUT` and `DELETE` need V2; a V1 host gets only `GET` and
//! `KEYS`.
//!
//! One difference from mdata-client: an empty argument (`mdata-get ''`) is
//! sent without its trailing space. mdata-client's frame ends in a space,
//! which SmartOS trims away before checking the length, so the frame is
//! dropped and mdata-client waits forever; this client gets SmartOS's
//! `Invalid GET Request` instead.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::proto::{encode_request, parse_frame, put_argument, Framing};

/// The environment variable naming a Unix socket to use instead of the
/// usual places (tests point the tools at their own host with it).
pub const SOCKET_ENV: &str = "ZONEVISOR_MDATA_SOCKET";

/// Where a zone finds its metadata socket, in the order tried.
pub const SOCKET_PATHS: [&str; 2] = ["/native/.zonecontrol/metadata.sock", "/.zonecontrol/metadata.sock"];

/// The serial port a VM reaches its host on (COM2).
pub const SERIAL_DEVICE: &str = "/dev/ttyS1";

/// The longest reply line the client reads, in bytes: values are the
/// host's to size, so this only guards against a runaway stream.
pub const MAX_REPLY_LINE: usize = 64 * 1024 * 1024;

/// How the client reaches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A Unix stream socket (zones).
    Socket(PathBuf),
    /// A serial device or terminal (VMs).
    Serial(PathBuf),
}

impl Transport {
    /// Finds the host as mdata-client does: [`SOCKET_ENV`], then the first
    /// of [`SOCKET_PATHS`] that is a socket, else [`SERIAL_DEVICE`].
    pub fn find() -> Transport {
        if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
            return Transport::Socket(path.into());
        }
        for path in SOCKET_PATHS {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                return Transport::Socket(path.into());
            }
        }
        Transport::Serial(SERIAL_DEVICE.into())
    }
}

/// How patient the client is. [`Config::new`] gives mdata-client's
/// behaviour.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the host is.
    pub transport: Transport,
    /// How long to wait for `invalid command` after the opening `\n` (2 s).
    pub reset_timeout: Duration,
    /// How long to wait for the answer to `NEGOTIATE`, and to each request
    /// on a V1 host (6 s).
    pub negotiate_timeout: Duration,
    /// How long to wait for the answer to a V2 request (45 s; a `PUT` can
    /// take a while on the host).
    pub request_timeout: Duration,
    /// The pause before opening again after a failed start (1 s).
    pub retry_delay: Duration,
    /// How many times to start over after a timeout or a broken stream
    /// before giving up; `None` (mdata-client's way) never gives up.
    pub retries: Option<u32>,
    /// Told of each start-over (the tools print it on stderr, as
    /// mdata-client does).
    pub notice: Option<fn(&str)>,
}

impl Config {
    /// mdata-client's timeouts and persistence, over `transport`.
    pub fn new(transport: Transport) -> Config {
        Config {
            transport,
            reset_timeout: Duration::from_secs(2),
            negotiate_timeout: Duration::from_secs(6),
            request_timeout: Duration::from_secs(45),
            retry_delay: Duration::from_secs(1),
            retries: None,
            notice: None,
        }
    }
}

/// What went wrong talking to the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The serial device could not be opened.
    #[error("could not open {}: {source}", path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket could not be connected to.
    #[error("could not connect to {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The serial device could not be set up (raw mode, lock, draining).
    #[error("could not {what} {}: {source}", path.display())]
    Serial {
        /// What was being done ("lock", "set raw mode on", "drain").
        what: &'static str,
        /// The device.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the stream failed.
    #[error("could not {what} the metadata stream: {source}")]
    Io {
        /// "read" or "write".
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No answer in time.
    #[error("no answer to {waiting_for} within {after:?}")]
    Timeout {
        /// The request that went unanswered.
        waiting_for: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The host closed the stream.
    #[error("the host closed the metadata stream")]
    Closed,
    /// The host did not answer the opening empty line with `invalid command`.
    #[error("the host answered {answer:?} to an empty line, not \"invalid command\"")]
    Reset {
        /// What it answered.
        answer: String,
    },
    /// A reply line longer than [`MAX_REPLY_LINE`].
    #[error("a reply line from the host is longer than {MAX_REPLY_LINE} bytes")]
    ReplyTooLong,
    /// The key cannot be written in a V1 request.
    #[error("the key {0:?} holds a line break, which a V1 host cannot be sent")]
    BadKey(String),
    /// `NOTFOUND` to a request that has no "absent" answer (`KEYS`, `PUT`,
    /// `DELETE`).
    #[error("no metadata")]
    NotFound,
    /// The host does not have this request (it answered `invalid command`,
    /// or it speaks only V1 and the request needs V2).
    #[error("host does not support {0}")]
    Unsupported(&'static str),
    /// The host refused: its `FAILURE` message (V2), or the line it sent
    /// (V1: `FAILURE`).
    #[error("{0}")]
    Host(String),
}

impl Error {
    /// Whether starting over may help (mdata-client retries these).
    fn transient(&self) -> bool {
        match self {
            // A device that is missing stays missing; one that is busy may
            // be free in a moment.
            Error::Open { source, .. } => {
                matches!(source.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY | libc::EINTR))
            }
            // A socket may not be there yet, or not listened on yet: wait
            // for it, unless it is not ours to use.
            Error::Connect { source, .. } => source.kind() != io::ErrorKind::PermissionDenied,
            Error::Serial { what, .. } => *what != "set raw mode on",
            Error::Io { .. } | Error::Timeout { .. } | Error::Closed | Error::Reset { .. } => true,
            _ => false,
        }
    }
}

/// The protocol version agreed with the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Bare lines; `GET` and `KEYS` only.
    V1,
    /// Framed requests with ids and CRCs; all requests.
    V2,
}

/// An answer as mdata-client classifies it.
#[derive(Debug)]
enum Answer {
    Success(Vec<u8>),
    NotFound,
    InvalidCommand,
    /// Any other answer, with the data mdata-client would print (the V2
    /// payload, or the V1 line).
    Other(Vec<u8>),
}

/// An open stream to the host.
struct Conn {
    file: File,
    serial: bool,
    /// Bytes read past the last line returned.
    buf: Vec<u8>,
}

enum ReadError {
    Timeout,
    Closed,
    TooLong,
    Io(io::Error),
}

impl Conn {
    fn open(transport: &Transport) -> Result<Conn, Error> {
        match transport {
            Transport::Socket(path) => {
                let stream =
                    UnixStream::connect(path).map_err(|source| Error::Connect { path: path.clone(), source })?;
                Ok(Conn { file: File::from(OwnedFd::from(stream)), serial: false, buf: Vec::new() })
            }
            Transport::Serial(path) => Ok(Conn { file: open_serial(path)?, serial: true, buf: Vec::new() }),
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.file.write_all(data).map_err(|source| match source.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Closed,
            _ => Error::Io { what: "write", source },
        })
    }

    /// The next line (without `\n`), waiting until `deadline`.
    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..=i);
                return Ok(line);
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(ReadError::TooLong);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            match poll_in(&self.file, left).map_err(ReadError::Io)? {
                Ready::Timeout => return Err(ReadError::Timeout),
                Ready::Readable | Ready::HangUp => {}
            }
            let mut chunk = [0u8; 4096];
            match self.file.read(&mut chunk) {
                // A terminal in raw mode with VMIN=0 reads nothing when
                // its VTIME runs out; a socket reads nothing at its end.
                Ok(0) if self.serial => std::thread::sleep(Duration::from_millis(10)),
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: the other end of a terminal is gone.
                Err(e) if e.raw_os_error() == Some(libc::EIO) || e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ReadError::Closed)
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

enum Ready {
    Readable,
    HangUp,
    Timeout,
}

fn poll_in(file: &File, timeout: Duration) -> io::Result<Ready> {
    let mut pfd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd, for the length given.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(match n {
            0 => Ready::Timeout,
            _ if pfd.revents & libc::POLLIN != 0 => Ready::Readable,
            _ => Ready::HangUp,
        });
    }
}

/// Opens a serial line as mdata-client's `unix_open_serial` does.
fn open_serial(path: &Path) -> Result<File, Error> {
    let err = |what, source| Error::Serial { what, path: path.to_path_buf(), source };
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::Open { path: path.to_path_buf(), source: io::ErrorKind::InvalidInput.into() })?;
    // SAFETY: a NUL-terminated path; the descriptor is owned just below.
    let fd = unsafe { libc::open(cpath.as_ptr(), libc::O_RDWR | libc::O_EXCL | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::Open { path: path.to_path_buf(), source: io::Error::last_os_error() });
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });

    // One user of the line at a time: a POSIX write lock on all of it, as
    // mdata-client (F_SETLKW) and cloud-init (lockf) take it.
    // SAFETY: a zeroed flock is valid; the fields are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: a valid descriptor and a valid flock.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &lock) } == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(err("lock", e));
        }
    }

    // Raw mode: 8 bits, no echo, no line editing, no signals, no CR/LF
    // translation; reads wait at most 100 ms (VMIN=0, VTIME=1).
    // SAFETY: a zeroed termios is filled by tcgetattr before use.
    let mut tios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a termios to fill.
    if unsafe { libc::tcgetattr(file.as_raw_fd(), &mut tios) } != 0 {
        return Err(err("set raw mode on", io::Error::last_os_error()));
    }
    tios.c_iflag &= !(libc::BRKINT | libc::ICRNL | libc::INPCK | libc::ISTRIP | libc::IXON);
    tios.c_oflag &= !libc::OPOST;
    tios.c_cflag |= libc::CS8;
    tios.c_cflag &= !libc::HUPCL;
    tios.c_lflag &= !(libc::ECHO | libc::ICANON | libc::IEXTEN | libc::ISIG);
    tios.c_cc[libc::VMIN] = 0;
    tios.c_cc[libc::VTIME] = 1;
    // SAFETY: a valid descriptor and termios; TCSAFLUSH also drops input
    // that arrived before.
    if unsafe { libc::tcsetattr(file.as_raw_fd(), libc::TCSAFLUSH, &tios) } != 0 {
        return Err(err("set raw mode on", io::Error::last_os_error()));
    }

    // The line is shared: the host may be part way through an answer to
    // an earlier user. Drop input until it has been quiet for 100 ms.
    let mut scrap = [0u8; 256];
    loop {
        match poll_in(&file, Duration::from_millis(100)).map_err(|e| err("drain", e))? {
            Ready::Timeout | Ready::HangUp => break,
            Ready::Readable => match (&file).read(&mut scrap) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err("drain", e)),
            },
        }
    }
    Ok(file)
}

/// Eight random hex digits, as mdata-client's `reqid()` makes them.
fn new_reqid() -> String {
    let mut bytes = [0u8; 4];
    // SAFETY: writes at most 4 bytes into a 4-byte buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if n != 4 {
        // No entropy yet this early in boot: ids only need to differ from
        // the last few on the line.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (t.subsec_nanos() ^ std::process::id().rotate_left(16)).to_le_bytes();
    }
    format!("{:08x}", u32::from_le_bytes(bytes))
}

/// A session with the host.
pub struct Client {
    cfg: Config,
    conn: Conn,
    version: Version,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("transport", &self.cfg.transport).field("version", &self.version).finish()
    }
}

impl Client {
    /// Finds the host ([`Transport::find`]) and starts a session with
    /// mdata-client's timeouts, retrying forever while the host does not
    /// answer. Fails at once only when the transport cannot be opened for
    /// good (no serial port, no permission).
    pub fn connect() -> Result<Client, Error> {
        Client::connect_with(Config::new(Transport::find()))
    }

    /// Starts a session as `cfg` says.
    pub fn connect_with(cfg: Config) -> Result<Client, Error> {
        let (conn, version) = start(&cfg)?;
        Ok(Client { cfg, conn, version })
    }

    /// The protocol version the host agreed to.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The value of `key`, or `None` when the host has none.
    pub fn get(&mut self, key: &str) -> Result<Option<String>, Error> {
        match self.execute("GET", Some(key.as_bytes()))? {
            Answer::Success(data) => Ok(Some(String::from_utf8_lossy(&data).into_owned())),
            Answer::NotFound => Ok(None),
            Answer::InvalidCommand => Err(Error::Unsupported("GET")),
            Answer::Other(data) => Err(Error::Host(String::from_utf8_lossy(&data).into_owned())),
        }
    }

    /// The keys the guest may read, in the host's order.
    pub fn keys(&mut self) -> Result<Vec<String>, Error> {
        match self.execute("KEYS", None)? {
            Answer::Success(data) if data.is_empty() => Ok(Vec::new()),
            Answer::Success(data) => Ok(String::from_utf8_lossy(&data).split('\n').map(str::to_string).collect()),
            Answer::NotFound => Err(Error::NotFound),
            Answer::InvalidCommand => Err(Error::Unsupported("KEYS")),
            Answer::Other(data) => Err(Error::Host(String::from_utf8_lossy(&data).into_owned())),
        }
    }

    /// Sets `key` to `value` (an empty value removes the key). Needs V2.
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), Error> {
        self.put_bytes(key.as_bytes(), value.as_bytes())
    }

    /// [`Client::put`] for a key and value that may not be UTF-8 (the host
    /// refuses those, with a message saying so).
    pub fn put_bytes(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.write("PUT", &put_argument(key, value))
    }

    /// Removes `key`. Needs V2.
    pub fn delete(&mut self, key: &str) -> Result<(), Error> {
        self.write("DELETE", key.as_bytes())
    }

    fn write(&mut self, command: &'static str, arg: &[u8]) -> Result<(), Error> {
        if self.version != Version::V2 {
            return Err(Error::Unsupported(command));
        }
        match self.execute(command, Some(arg))? {
            Answer::Success(_) => Ok(()),
            Answer::NotFound => Err(Error::NotFound),
            Answer::InvalidCommand => Err(Error::Unsupported(command)),
            Answer::Other(data) => Err(Error::Host(String::from_utf8_lossy(&data).into_owned())),
        }
    }

    /// Sends one request and waits for its answer, starting over when the
    /// stream fails (mdata-client's `proto_execute`).
    fn execute(&mut self, command: &str, arg: Option<&[u8]>) -> Result<Answer, Error> {
        if self.version == Version::V1 && arg.is_some_and(|a| a.contains(&b'\n')) {
            return Err(Error::BadKey(String::from_utf8_lossy(arg.unwrap_or_default()).into_owned()));
        }
        let mut retries = 0u32;
        loop {
            let result = match self.version {
                Version::V2 => self.exchange_v2(command, arg),
                Version::V1 => self.exchange_v1(command, arg),
            };
            match result {
                Err(e) if e.transient() && self.cfg.retries.is_none_or(|n| retries < n) => {
                    retries += 1;
                    if let Some(notice) = self.cfg.notice {
                        notice("receive timeout, resetting protocol...");
                    }
                    let (conn, version) = start(&self.cfg)?;
                    self.conn = conn;
                    self.version = version;
                }
                other => return other,
            }
        }
    }

    fn exchange_v2(&mut self, command: &str, arg: Option<&[u8]>) -> Result<Answer, Error> {
        let reqid = new_reqid();
        self.conn.send(&encode_request(&Framing::V2 { reqid: reqid.clone() }, command, arg))?;
        let timeout = self.cfg.request_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let line = read_line(&mut self.conn, deadline, command, timeout)?;
            // Lines that are not a good frame for this request are someone
            // else's (or damaged): skip them, as mdata-client does.
            let Ok(frame) = parse_frame(&line) else { continue };
            if frame.reqid != reqid {
                continue;
            }
            let data = frame.payload.unwrap_or_default();
            return Ok(match frame.code.as_str() {
                "SUCCESS" => Answer::Success(data),
                "NOTFOUND" => Answer::NotFound,
                _ => Answer::Other(data),
            });
        }
    }

    fn exchange_v1(&mut self, command: &str, arg: Option<&[u8]>) -> Result<Answer, Error> {
        self.conn.send(&encode_request(&Framing::V1, command, arg))?;
        let timeout = self.cfg.negotiate_timeout;
        let deadline = Instant::now() + timeout;
        let first = read_line(&mut self.conn, deadline, command, timeout)?;
        match &first[..] {
            b"NOTFOUND" => Ok(Answer::NotFound),
            b"invalid command" => Ok(Answer::InvalidCommand),
            b"SUCCESS" => {
                // Lines up to ".", each with one leading '.' removed.
                let mut data: Vec<u8> = Vec::new();
                let mut first_line = true;
                loop {
                    let line = read_line(&mut self.conn, deadline, command, timeout)?;
                    if line == b"." {
                        return Ok(Answer::Success(data));
                    }
                    if !first_line {
                        data.push(b'\n');
                    }
                    first_line = false;
                    data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
                }
            }
            _ => Ok(Answer::Other(first)),
        }
    }
}

/// The next line, or why there is none; `timeout` is what `deadline` was
/// set from, for the message.
fn read_line(conn: &mut Conn, deadline: Instant, waiting_for: &str, timeout: Duration) -> Result<Vec<u8>, Error> {
    conn.read_line(deadline).map_err(|e| match e {
        ReadError::Timeout => Error::Timeout { waiting_for: waiting_for.to_string(), after: timeout },
        ReadError::Closed => Error::Closed,
        ReadError::TooLong => Error::ReplyTooLong,
        ReadError::Io(source) => Error::Io { what: "read", source },
    })
}

/// Opens the transport and agrees on a version, starting over after
/// [`Config::retry_delay`] while that fails for a reason that may pass
/// (mdata-client's `proto_reset`).
fn start(cfg: &Config) -> Result<(Conn, Version), Error> {
    let mut retries = 0u32;
    loop {
        match handshake(cfg) {
            Err(e) if e.transient() && cfg.retries.is_none_or(|n| retries < n) => {
                retries += 1;
                std::thread::sleep(cfg.retry_delay);
            }
            other => return other,
        }
    }
}

fn handshake(cfg: &Config) -> Result<(Conn, Version), Error> {
    let mut conn = Conn::open(&cfg.transport)?;

    // An empty line: the host answers "invalid command", which proves it
    // is there and ends whatever half line an earlier user left behind.
    conn.send(b"\n")?;
    let deadline = Instant::now() + cfg.reset_timeout;
    loop {
        let line = read_line(&mut conn, deadline, "an empty line", cfg.reset_timeout)?;
        if line == b"invalid command" {
            break;
        }
        // On a serial line, earlier answers may still be arriving.
        if !conn.serial {
            return Err(Error::Reset { answer: String::from_utf8_lossy(&line).into_owned() });
        }
    }

    conn.send(b"NEGOTIATE V2\n")?;
    let deadline = Instant::now() + cfg.negotiate_timeout;
    loop {
        let line = read_line(&mut conn, deadline, "NEGOTIATE V2", cfg.negotiate_timeout)?;
        if line == b"V2_OK" {
            return Ok((conn, Version::V2));
        }
        if conn.serial && (line.starts_with(b"V2 ") || line == b"invalid command") {
            continue;
        }
        // FAILURE (or anything else): a host that speaks only V1.
        return Ok((conn, Version::V1));
    }
}

#[cfg(test)]
mod tests;
