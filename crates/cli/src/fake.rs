//! Test helpers: a fake daemon answering canned JSON on a Unix socket
//! (std only, one thread), and [`TestIo`], which runs a tool on buffers.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::Io;

/// One request the fake daemon saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: String,
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// A daemon on a temporary socket that answers with a handler.
pub struct FakeDaemon {
    pub socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl FakeDaemon {
    /// Starts a daemon whose answers come from `handler`.
    pub fn start(handler: impl Fn(&Seen) -> (u16, String) + Send + Sync + 'static) -> Self {
        let dir =
            std::env::temp_dir().join(format!("zv-cli-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("zonevisord.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 {
                        break;
                    }
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((n, v)) = h.split_once(':') {
                        if n.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let req = Seen { method, path, body: String::from_utf8_lossy(&body).into_owned() };
                let (status, answer) = handler(&req);
                seen2.lock().unwrap().push(req);
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        FakeDaemon { socket, seen }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The socket path as a string.
    pub fn path(&self) -> String {
        self.socket.display().to_string()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs tools on in-memory streams.
pub struct TestIo {
    pub out: Vec<u8>,
    pub err: Vec<u8>,
    pub input: Vec<u8>,
    pub tty: bool,
    pub socket_env: Option<String>,
}

impl TestIo {
    pub fn new() -> Self {
        TestIo { out: Vec::new(), err: Vec::new(), input: Vec::new(), tty: false, socket_env: None }
    }

    /// With `stdin` as standard input.
    pub fn with_input(stdin: &str) -> Self {
        let mut t = Self::new();
        t.input = stdin.as_bytes().to_vec();
        t
    }

    /// With the daemon's socket in `ZONEVISOR_SOCKET`.
    pub fn for_daemon(daemon: &FakeDaemon) -> Self {
        let mut t = Self::new();
        t.socket_env = Some(daemon.path());
        t
    }

    /// Runs `argv` (argv[0] names the tool) and returns the exit status.
    pub fn run(&mut self, argv: &[&str]) -> i32 {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut input = Cursor::new(self.input.clone());
        let mut io = Io {
            out: &mut self.out,
            err: &mut self.err,
            input: &mut input as &mut dyn Read,
            input_is_tty: self.tty,
            output_is_tty: false,
            socket_env: self.socket_env.clone(),
        };
        crate::run(&argv, &mut io)
    }

    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.err).into_owned()
    }
}

/// Owned argument strings, for parser tests.
pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}
