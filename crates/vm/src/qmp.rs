//! A blocking client of QEMU's machine protocol (QMP), and the pieces a
//! `poll(2)` loop needs to speak it without blocking.
//!
//! QMP is one JSON object per line on a Unix socket (`-qmp
//! unix:<path>,server=on,wait=off`):
//!
//! ```text
//!   QEMU ──> {"QMP": {"version": {..}, "capabilities": [..]}}          greeting
//!        <── {"execute": "qmp_capabilities"}                           leave negotiation
//!        ──> {"return": {}}
//!        <── {"execute": "query-status", "id": 7}
//!        ──> {"event": "RESET", "data": {..}, "timestamp": {..}}       events, at any time
//!        ──> {"return": {"status": "running", ..}, "id": 7}            or {"error": {"class", "desc"}, "id": 7}
//! ```
//!
//! - [`Decoder`] splits bytes into [`Message`]s, whatever the reads'
//!   boundaries (one line at most [`MAX_LINE`] bytes).
//! - [`Qmp`] is a connection: [`Qmp::connect`] reads the greeting and
//!   leaves negotiation; [`Qmp::execute`] sends a command and waits for its
//!   answer, queueing the events that arrive meanwhile
//!   ([`Qmp::take_events`], [`Qmp::read_event`]). For a poll loop the same
//!   connection offers [`Qmp::send`] (queue a command with an `id`),
//!   [`Qmp::flush`] / [`Qmp::wants_write`] and [`Qmp::read_available`]
//!   (every message that has arrived, without waiting), and its descriptor
//!   ([`AsRawFd`]). The socket is nonblocking underneath; the blocking calls
//!   wait with `poll(2)` up to their timeout. A caller that must watch
//!   something else while QEMU starts connects with [`connect_socket`]
//!   and speaks with [`Qmp::handshake`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The longest line the decoder takes (`query-qmp-schema` answers with
/// a few hundred KiB; nothing legitimate comes near this).
pub const MAX_LINE: usize = 16 << 20;

/// How long [`Qmp::execute`] waits for an answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Nothing accepted a connection on the socket within the timeout.
    #[error("QMP socket {}: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The last connect error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("QMP socket: {0}")]
    Io(#[source] io::Error),
    /// No answer (or greeting, or event) within the timeout.
    #[error("QMP: no {what} within {} ms", after.as_millis())]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// QEMU closed the connection (it quit or died).
    #[error("QMP: QEMU closed the connection")]
    Closed,
    /// QEMU sent something that is not a QMP message.
    #[error("QMP: {0}")]
    Protocol(String),
    /// QEMU refused the command.
    #[error("QMP command failed: {class}: {desc}")]
    Command {
        /// QEMU's error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// One message from QEMU.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// The greeting (`{"QMP": {...}}`): the version and capabilities.
    Greeting(Value),
    /// A command's success: its `return` member, and the `id` it was sent with.
    Return {
        /// The command's `id`, echoed.
        id: Option<Value>,
        /// The `return` member.
        value: Value,
    },
    /// A command's failure, and the `id` it was sent with.
    Error {
        /// The command's `id`, echoed.
        id: Option<Value>,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// An asynchronous event: the whole object (`event`, `data`, `timestamp`).
    Event(Value),
}

impl Message {
    /// Parses one line (without its line end).
    pub fn parse(line: &[u8]) -> Result<Message, QmpError> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| QmpError::Protocol(format!("not JSON ({e}): {}", String::from_utf8_lossy(clip(line)))))?;
        let Value::Object(mut o) = v else {
            return Err(QmpError::Protocol(format!("not an object: {}", String::from_utf8_lossy(clip(line)))));
        };
        let id = o.remove("id");
        if let Some(value) = o.remove("return") {
            return Ok(Message::Return { id, value });
        }
        if let Some(err) = o.remove("error") {
            let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            return Ok(Message::Error { id, class: field("class"), desc: field("desc") });
        }
        if o.contains_key("event") {
            return Ok(Message::Event(Value::Object(o)));
        }
        if let Some(g) = o.remove("QMP") {
            return Ok(Message::Greeting(g));
        }
        Err(QmpError::Protocol(format!("unknown message: {}", String::from_utf8_lossy(clip(line)))))
    }

    /// The `id` of a return or error.
    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Return { id, .. } | Message::Error { id, .. } => id.as_ref(),
            _ => None,
        }
    }
}

fn clip(line: &[u8]) -> &[u8] {
    &line[..line.len().min(200)]
}

/// The name of an event object (`"SHUTDOWN"`, `"RESET"`, ...).
pub fn event_name(event: &Value) -> &str {
    event.get("event").and_then(Value::as_str).unwrap_or_default()
}

/// One command line: `{"execute": command, "arguments": .., "id": ..}\n`.
pub fn encode(command: &str, arguments: Option<&Value>, id: Option<&Value>) -> Vec<u8> {
    let mut cmd = json!({ "execute": command });
    if let Some(a) = arguments {
        cmd["arguments"] = a.clone();
    }
    if let Some(id) = id {
        cmd["id"] = id.clone();
    }
    let mut line = serde_json::to_vec(&cmd).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits QEMU's byte stream into [`Message`]s.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the search for the next newline resumes.
    scanned: usize,
}

impl Decoder {
    /// Adds bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message; `None` when more bytes are needed. A line
    /// that is not QMP is an error (and is consumed); so is a line growing
    /// past [`MAX_LINE`] (its bytes are dropped).
    pub fn next_message(&mut self) -> Option<Result<Message, QmpError>> {
        loop {
            let Some(end) = self.buf[self.scanned..].iter().position(|b| *b == b'\n').map(|i| i + self.scanned) else {
                self.scanned = self.buf.len();
                if self.buf.len() > MAX_LINE {
                    self.buf.clear();
                    self.scanned = 0;
                    return Some(Err(QmpError::Protocol(format!("a line longer than {MAX_LINE} bytes"))));
                }
                return None;
            };
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            let line = line.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return Some(Message::parse(line));
        }
    }

    /// Bytes held (an incomplete line).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// A QMP connection (see the module documentation).
#[derive(Debug)]
pub struct Qmp {
    sock: UnixStream,
    decoder: Decoder,
    greeting: Value,
    events: VecDeque<Value>,
    /// Bytes queued by [`Qmp::send`] not yet written.
    out: Vec<u8>,
    next_id: u64,
    timeout: Duration,
    closed: bool,
    /// An error met after messages that [`Qmp::read_available`] returned
    /// first: the next call's.
    deferred: Option<QmpError>,
}

impl Qmp {
    /// Connects to QEMU's QMP socket at `path`, reads the greeting and
    /// leaves capabilities negotiation. A socket that does not exist yet
    /// or refuses connections is retried until `timeout`, which also bounds
    /// the handshake.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = Deadline::after(timeout);
        let sock = loop {
            match connect_socket(path) {
                Ok(s) => break s,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                        && !deadline.passed() =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(source) => return Err(QmpError::Connect { path: path.to_owned(), source }),
            }
        };
        Qmp::greet(sock, deadline)
    }

    /// Speaks QMP on an already connected socket: reads the greeting and
    /// leaves negotiation, within `timeout`.
    pub fn handshake(sock: UnixStream, timeout: Duration) -> Result<Qmp, QmpError> {
        Qmp::greet(sock, Deadline::after(timeout))
    }

    fn greet(sock: UnixStream, deadline: Deadline) -> Result<Qmp, QmpError> {
        sock.set_nonblocking(true).map_err(QmpError::Io)?;
        let mut q = Qmp {
            sock,
            decoder: Decoder::default(),
            greeting: Value::Null,
            events: VecDeque::new(),
            out: Vec::new(),
            next_id: 0,
            timeout: DEFAULT_TIMEOUT,
            closed: false,
            deferred: None,
        };
        q.greeting = loop {
            match q.next_blocking(deadline, "greeting")? {
                Message::Greeting(g) => break g,
                Message::Event(e) => q.events.push_back(e),
                other => return Err(QmpError::Protocol(format!("expected the greeting, got {other:?}"))),
            }
        };
        q.exchange("qmp_capabilities", None, deadline)?;
        Ok(q)
    }

    /// The greeting's contents (`version`, `capabilities`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Sets how long [`Qmp::execute`] waits for an answer (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `command` and returns its `return` member; a refusal is
    /// [`QmpError::Command`]. Events that arrive meanwhile are queued.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.exchange(command, arguments.as_ref(), Deadline::after(self.timeout))
    }

    fn exchange(&mut self, command: &str, arguments: Option<&Value>, deadline: Deadline) -> Result<Value, QmpError> {
        self.next_id += 1;
        let id = json!(format!("zv-{}", self.next_id));
        self.out.extend_from_slice(&encode(command, arguments, Some(&id)));
        while !self.out.is_empty() {
            self.flush()?;
            if !self.out.is_empty() {
                self.wait(libc::POLLOUT, deadline, "room to write")?;
            }
        }
        loop {
            match self.next_blocking(deadline, "answer")? {
                Message::Return { id: got, value } if got.as_ref().is_none_or(|g| *g == id) => return Ok(value),
                Message::Error { id: got, class, desc } if got.as_ref().is_none_or(|g| *g == id) => {
                    return Err(QmpError::Command { class, desc })
                }
                Message::Event(e) => self.events.push_back(e),
                // The answer to something sent with `send` and another id.
                _ => {}
            }
        }
    }

    /// The events queued so far, oldest first.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// The next event: a queued one, or one that arrives within `timeout`
    /// (`None` when none does). Answers read meanwhile are dropped.
    pub fn read_event(&mut self, timeout: Duration) -> Result<Option<Value>, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = Deadline::after(timeout);
        loop {
            match self.next_blocking(deadline, "event") {
                Ok(Message::Event(e)) => return Ok(Some(e)),
                Ok(_) => {}
                Err(QmpError::Timeout { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// The next message, waiting until `deadline`.
    fn next_blocking(&mut self, deadline: Deadline, what: &'static str) -> Result<Message, QmpError> {
        loop {
            if let Some(m) = self.decoder.next_message() {
                return m;
            }
            if self.closed {
                return Err(QmpError::Closed);
            }
            if !self.fill()? {
                self.wait(libc::POLLIN, deadline, what)?;
            }
        }
    }

    /// Reads what is waiting into the decoder; whether anything (or
    /// end-of-file) was read.
    fn fill(&mut self) -> Result<bool, QmpError> {
        let mut chunk = [0u8; 16384];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.decoder.push(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // QEMU closed while our last bytes were unread (it quits as
                // soon as it has parsed `quit`, before its line end): what
                // it sent before is all there is.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.closed = true;
                    return Ok(true);
                }
                Err(e) => return Err(QmpError::Io(e)),
            }
        }
    }

    fn wait(&self, events: libc::c_short, deadline: Deadline, what: &'static str) -> Result<(), QmpError> {
        loop {
            let left = deadline.at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout { what, after: deadline.total });
            }
            let mut pfd = libc::pollfd { fd: self.sock.as_raw_fd(), events, revents: 0 };
            let ms = left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return Ok(());
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(QmpError::Io(e));
                }
            }
        }
    }

    /// Queues `command` with `id` and writes what the socket takes now;
    /// the answer comes back through [`Qmp::read_available`] carrying `id`.
    pub fn send(&mut self, command: &str, arguments: Option<&Value>, id: &Value) -> Result<(), QmpError> {
        self.out.extend_from_slice(&encode(command, arguments, Some(id)));
        self.flush()
    }

    /// Writes queued bytes until the socket would block.
    pub fn flush(&mut self) -> Result<(), QmpError> {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(QmpError::Closed),
                Err(e) => return Err(QmpError::Io(e)),
            }
        }
        Ok(())
    }

    /// Whether queued bytes wait for the socket to take them (poll for `POLLOUT`).
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Every message that has arrived, without waiting: the queued events
    /// first, then what the socket holds now. After end-of-file the
    /// messages before it are returned and [`Qmp::is_closed`] turns true;
    /// calls after that fail with [`QmpError::Closed`].
    pub fn read_available(&mut self) -> Result<Vec<Message>, QmpError> {
        let mut out: Vec<Message> = self.events.drain(..).map(Message::Event).collect();
        if let Some(e) = self.deferred.take() {
            if out.is_empty() {
                return Err(e);
            }
            self.deferred = Some(e);
            return Ok(out);
        }
        if self.closed && self.decoder.pending() == 0 && out.is_empty() {
            return Err(QmpError::Closed);
        }
        loop {
            while let Some(m) = self.decoder.next_message() {
                match m {
                    Ok(m) => out.push(m),
                    // What came before is not lost; the error comes next time.
                    Err(e) if !out.is_empty() => {
                        self.deferred = Some(e);
                        return Ok(out);
                    }
                    Err(e) => return Err(e),
                }
            }
            if self.closed {
                return Ok(out);
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(out),
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    self.deferred = Some(e);
                    return Ok(out);
                }
            }
        }
    }

    /// Whether QEMU closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

impl AsRawFd for Qmp {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for Qmp {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// When a blocking call gives up, and how long it was given.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Deadline {
        Deadline { at: Instant::now() + total, total }
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// Connects to the Unix socket at `path` once, without waiting for it to
/// appear (then [`Qmp::handshake`]); a path too long for a socket address
/// (108 bytes) is reached through its directory's descriptor.
pub fn connect_socket(path: &Path) -> io::Result<UnixStream> {
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path);
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    if short.as_os_str().as_bytes().len() >= 108 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket name too long"));
    }
    UnixStream::connect(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::process::{Command, Stdio};

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#;

    /// A fake QEMU: greets, accepts qmp_capabilities, then runs `script`
    /// on each later command line (its replies are written as given).
    fn fake(dir: &Path, script: impl FnOnce(&mut dyn FnMut() -> Value, &mut dyn Write) + Send + 'static) -> PathBuf {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut w = sock.try_clone().unwrap();
            let mut r = BufReader::new(sock);
            writeln!(w, "{GREETING}\r").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let caps: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(caps["execute"], "qmp_capabilities");
            writeln!(w, r#"{{"return": {{}}, "id": {}}}"#, caps["id"]).unwrap();
            let mut next = move || {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                serde_json::from_str(&line).unwrap_or(Value::Null)
            };
            script(&mut next, &mut w);
        });
        path
    }

    #[test]
    fn decoder_splits_lines_at_any_boundary() {
        let text = format!("{GREETING}\r\n{{\"return\": {{\"a\": 1}}, \"id\": 3}}\r\n\r\n{{\"event\": \"STOP\", \"timestamp\": {{}}}}\n{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"no\"}}}}\n{{\"ret");
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in text.as_bytes() {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message() {
                got.push(m.unwrap());
            }
        }
        assert!(matches!(&got[0], Message::Greeting(g) if g["version"]["qemu"]["major"] == 7));
        assert_eq!(got[1], Message::Return { id: Some(json!(3)), value: json!({"a": 1}) });
        assert_eq!(got[1].id(), Some(&json!(3)));
        assert!(matches!(&got[2], Message::Event(e) if event_name(e) == "STOP"));
        assert_eq!(got[3], Message::Error { id: None, class: "GenericError".into(), desc: "no".into() });
        assert_eq!(got.len(), 4);
        assert_eq!(d.pending(), 5, "the incomplete line is held");
        d.push(b"[1]\n{\"x\": 1}\n");
        assert!(matches!(d.next_message(), Some(Err(QmpError::Protocol(_)))), "the rest of a line is not JSON");
        assert!(matches!(d.next_message(), Some(Err(QmpError::Protocol(m))) if m.contains("unknown")));
        assert!(d.next_message().is_none());
    }

    #[test]
    fn decoder_refuses_an_endless_line() {
        let mut d = Decoder::default();
        d.push(&vec![b'x'; MAX_LINE + 1]);
        assert!(matches!(d.next_message(), Some(Err(QmpError::Protocol(m))) if m.contains("longer")));
        assert_eq!(d.pending(), 0);
        d.push(b"{\"return\": 1}\n");
        assert_eq!(d.next_message().unwrap().unwrap(), Message::Return { id: None, value: json!(1) });
    }

    #[test]
    fn encode_is_one_line() {
        let line = encode("screendump", Some(&json!({"filename": "/x"})), Some(&json!(9)));
        assert_eq!(line, b"{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"/x\"},\"id\":9}\n");
        assert_eq!(encode("quit", None, None), b"{\"execute\":\"quit\"}\n");
    }

    #[test]
    fn execute_returns_the_answer_and_queues_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake(dir.path(), |next, w| {
            let cmd = next();
            assert_eq!(cmd["execute"], "query-status");
            // An event first, then the answer split over two writes.
            writeln!(w, r#"{{"event": "RESET", "data": {{"guest": true}}, "timestamp": {{"seconds": 1}}}}"#).unwrap();
            write!(w, r#"{{"return": {{"status": "running"}}, "#).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            writeln!(w, r#""id": {}}}"#, cmd["id"]).unwrap();
            let cmd = next();
            assert_eq!(cmd["arguments"], json!({"filename": "/vm/shot.ppm"}));
            writeln!(w, r#"{{"error": {{"class": "GenericError", "desc": "cannot write"}}, "id": {}}}"#, cmd["id"])
                .unwrap();
            writeln!(w, r#"{{"event": "SHUTDOWN", "data": {{"guest": true, "reason": "guest-shutdown"}}}}"#).unwrap();
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(q.greeting()["capabilities"], json!(["oob"]));
        assert_eq!(q.execute("query-status", None).unwrap(), json!({"status": "running"}));
        let events = q.take_events();
        assert_eq!(events.len(), 1);
        assert_eq!(event_name(&events[0]), "RESET");
        assert!(q.take_events().is_empty());
        match q.execute("screendump", Some(json!({"filename": "/vm/shot.ppm"}))) {
            Err(QmpError::Command { class, desc }) => {
                assert_eq!((class.as_str(), desc.as_str()), ("GenericError", "cannot write"))
            }
            other => panic!("{other:?}"),
        }
        let e = q.read_event(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(e["data"]["reason"], "guest-shutdown");
        // The fake hung up.
        assert!(matches!(q.read_event(Duration::from_secs(5)), Err(QmpError::Closed)));
        assert!(matches!(q.execute("query-status", None), Err(QmpError::Closed | QmpError::Io(_))));
    }

    #[test]
    fn timeouts_and_a_missing_socket_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let t = Instant::now();
        match Qmp::connect(&missing, Duration::from_millis(100)) {
            Err(QmpError::Connect { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() >= Duration::from_millis(100), "it retried until the timeout");
        let path = fake(dir.path(), |next, _w| {
            // Reads the command and never answers.
            let _ = next();
            std::thread::sleep(Duration::from_secs(2));
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        q.set_timeout(Duration::from_millis(100));
        assert!(matches!(q.execute("query-status", None), Err(QmpError::Timeout { what: "answer", .. })));
        assert_eq!(q.read_event(Duration::from_millis(50)).unwrap(), None);
    }

    #[test]
    fn no_greeting_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mute.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let err = Qmp::connect(&path, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, QmpError::Timeout { what: "greeting", .. }), "{err}");
        drop(listener);
    }

    #[test]
    fn a_poll_loop_sends_with_ids_and_reads_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = fake(dir.path(), |next, w| {
            let a = next();
            let b = next();
            writeln!(w, r#"{{"return": {{}}, "id": {}}}"#, a["id"]).unwrap();
            writeln!(w, r#"{{"event": "POWERDOWN", "timestamp": {{}}}}"#).unwrap();
            writeln!(w, r#"{{"error": {{"class": "CommandNotFound", "desc": "The command bogus has not been found"}}, "id": {}}}"#, b["id"]).unwrap();
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        q.send("system_powerdown", None, &json!(1)).unwrap();
        q.send("bogus", None, &json!(2)).unwrap();
        assert!(!q.wants_write());
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 {
            assert!(Instant::now() < deadline, "{got:?}");
            let mut pfd = libc::pollfd { fd: q.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
            got.extend(q.read_available().unwrap());
        }
        assert_eq!(got[0], Message::Return { id: Some(json!(1)), value: json!({}) });
        assert!(matches!(&got[1], Message::Event(e) if event_name(e) == "POWERDOWN"));
        assert!(
            matches!(&got[2], Message::Error { id: Some(i), class, .. } if *i == json!(2) && class == "CommandNotFound")
        );
        // End-of-file: whatever came first, then Closed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !q.is_closed() {
            assert!(Instant::now() < deadline);
            assert!(q.read_available().unwrap().is_empty());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(matches!(q.read_available(), Err(QmpError::Closed)));
    }

    #[test]
    fn what_came_before_a_reset_connection_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reset.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut w = sock.try_clone().unwrap();
            let mut r = BufReader::new(sock);
            writeln!(w, "{GREETING}").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            // Reads up to the closing brace of `quit`, not its line end, as QEMU may.
            let mut byte = [0u8; 1];
            while byte[0] != b'}' {
                r.read_exact(&mut byte).unwrap();
            }
            writeln!(w, r#"{{"event": "SHUTDOWN", "data": {{"reason": "host-qmp-quit"}}}}"#).unwrap();
            writeln!(w, r#"{{"return": {{}}, "id": 6}}"#).unwrap();
            // Closing with our line end unread resets the connection.
        });
        let mut q = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        q.send("quit", None, &json!(6)).unwrap();
        server.join().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let got = q.read_available().unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], Message::Event(e) if e["data"]["reason"] == "host-qmp-quit"));
        assert_eq!(got[1], Message::Return { id: Some(json!(6)), value: json!({}) });
        assert!(q.is_closed());
        assert!(matches!(q.read_available(), Err(QmpError::Closed)));
    }

    /// Against the real QEMU, when it is installed.
    #[test]
    fn real_qemu_answers_and_quits() {
        let qemu = "qemu-system-x86_64";
        if Command::new(qemu).arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "{qemu} is required in CI");
            eprintln!("SKIPPED: {qemu} is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let mut child = Command::new(qemu)
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut q = Qmp::connect(&sock, Duration::from_secs(20)).unwrap();
        assert_eq!(q.greeting()["version"]["qemu"]["major"].as_u64().map(|m| m >= 7), Some(true), "{:?}", q.greeting());
        let v = q.execute("query-version", None).unwrap();
        assert!(v["qemu"]["major"].is_u64(), "{v}");
        assert!(q.execute("query-status", None).unwrap()["status"].is_string());
        match q.execute("no-such-command", None) {
            Err(QmpError::Command { class, .. }) => assert_eq!(class, "CommandNotFound"),
            other => panic!("{other:?}"),
        }
        match q.execute("screendump", None) {
            Err(QmpError::Command { class, desc }) => {
                assert!(class == "GenericError" && desc.contains("filename"), "{desc}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(q.execute("quit", None).unwrap(), json!({}));
        let ev = q.read_event(Duration::from_secs(10)).unwrap().expect("a SHUTDOWN event");
        assert_eq!((event_name(&ev), ev["data"]["reason"].as_str()), ("SHUTDOWN", Some("host-qmp-quit")), "{ev}");
        let st = child.wait().unwrap();
        assert!(st.success(), "{st}");
    }
}
