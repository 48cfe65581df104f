//! A small metadata host for tests: `Session` + `resolve` over a VM object
//! held in memory, serving one stream (a socket connection or a pty
//! master) on a thread, the way the monitor serves a guest.

#![allow(dead_code)] // each test file uses its own part

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};
use zonevisor_mdata::keys::{self, Resolution, Target, Write as MdWrite};
use zonevisor_mdata::proto::{self, Framing, Reply, Request};
use zonevisor_mdata::session::Session;

pub const UUID: &str = "c41d1a1a-8c1d-4a3b-9a5e-8f3f0a9b0c11";

/// The instance the host answers for.
pub fn vm() -> Value {
    json!({
        "uuid": UUID,
        "alias": "web0",
        "brand": "lx",
        "nics": [{"interface": "net0", "mac": "90:b8:d0:0a:00:01", "ip": "10.0.0.5"}],
        "routes": {"10.9.0.0/16": "nics[0]"},
        "customer_metadata": {
            "root_authorized_keys": "ssh-rsa AAAA test",
            "user-script": "#!/bin/sh\n.dot\necho hi\n",
            "no-newline": "value",
            "empty": ""
        },
        "internal_metadata": {"root_pw": "secret", "foo:bar": "internal"},
        "internal_metadata_namespaces": ["foo"]
    })
}

/// How the host misbehaves, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As SmartOS's agent.
    SmartOs,
    /// A host from before V2: NEGOTIATE and V2 frames are unknown commands.
    V1Only,
    /// Before each V2 answer: a frame for another request, a frame with a
    /// bad CRC for this one, and a line of noise.
    Stale,
    /// Leaves its first V2 request unanswered.
    DropFirst,
    /// Answers the opening empty line with something else.
    BadReset,
    /// Closes each stream as soon as it is opened.
    Hangup,
}

/// A host: the instance's object and how it behaves.
#[derive(Clone)]
pub struct Host {
    pub vm: Arc<Mutex<Value>>,
    pub mode: Mode,
    dropped: Arc<AtomicBool>,
}

impl Host {
    pub fn new(mode: Mode) -> Host {
        Host { vm: Arc::new(Mutex::new(vm())), mode, dropped: Arc::new(AtomicBool::new(false)) }
    }

    /// Listens on `dir/metadata.sock`, serving each connection on its own
    /// thread; returns the socket's path.
    pub fn listen(&self, dir: &Path) -> PathBuf {
        let path = dir.join("metadata.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let host = self.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let host = host.clone();
                thread::spawn(move || {
                    let write = conn.try_clone().unwrap();
                    host.serve(conn, write, Session::new());
                });
            }
        });
        path
    }

    /// Serves one stream until it ends.
    pub fn serve(&self, mut input: impl Read, mut output: impl Write, mut session: Session) {
        if self.mode == Mode::Hangup {
            return;
        }
        let mut buf = [0u8; 65536];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            for result in session.feed(&buf[..n]) {
                let out = self.answer(result);
                if output.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }

    fn answer(&self, result: Result<(Framing, Request), proto::LineError>) -> Vec<u8> {
        let (framing, request) = match result {
            Ok(ok) => ok,
            Err(_) if self.mode == Mode::BadReset => return b"FAILURE\n".to_vec(),
            Err(e) => return e.reply().unwrap_or_default().to_vec(),
        };
        if let Framing::V2 { .. } = &framing {
            match self.mode {
                // An old agent: "V2" is an unknown V1 command.
                Mode::V1Only => return b"FAILURE\n".to_vec(),
                Mode::DropFirst if !self.dropped.swap(true, Ordering::SeqCst) => return Vec::new(),
                _ => {}
            }
            let reply = self.resolve(&framing, &request);
            let mut out = Vec::new();
            if self.mode == Mode::Stale {
                out.extend(proto::encode(
                    &Framing::V2 { reqid: "0badf00d".into() },
                    &Reply::Success(Some("stale".into())),
                ));
                let mut bad = proto::encode(&framing, &Reply::Success(Some("corrupt".into())));
                bad[3] = b'9';
                out.extend(bad);
                out.extend_from_slice(b"line noise\n");
            }
            out.extend(proto::encode(&framing, &reply));
            return out;
        }
        if self.mode == Mode::V1Only && matches!(request, Request::Negotiate { .. }) {
            return b"FAILURE\n".to_vec();
        }
        proto::encode(&framing, &self.resolve(&framing, &request))
    }

    fn resolve(&self, framing: &Framing, request: &Request) -> Reply {
        let mut vm = self.vm.lock().unwrap();
        match keys::resolve(&vm, framing, request) {
            Resolution::Reply(reply) => reply,
            Resolution::Write(w) => keys::write_reply(apply(&mut vm, &w)),
        }
    }
}

/// What the daemon would do with a write: change the instance's map.
fn apply(vm: &mut Value, w: &MdWrite) -> Result<(), String> {
    let map = match w.target {
        Target::Customer => "customer_metadata",
        Target::Internal => "internal_metadata",
    };
    let map = vm[map].as_object_mut().ok_or_else(|| format!("no {map}"))?;
    match &w.value {
        Some(value) => map.insert(w.key.clone(), Value::String(value.clone())),
        None => map.remove(&w.key),
    };
    Ok(())
}

/// A pty pair standing in for a VM's serial port: the host serves the
/// master on a thread; the guest opens the returned slave path. The slave
/// stays open here (so the master never sees a hang-up between clients)
/// and starts in raw mode (so nothing the host writes is echoed back).
pub struct Pty {
    pub path: PathBuf,
    pub master: OwnedFd,
    _slave: OwnedFd,
}

impl Pty {
    pub fn open() -> Pty {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: two out-pointers; no name buffer, termios or winsize.
        let rc =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two new descriptors this code owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: a valid descriptor and a buffer of the length given.
        assert_eq!(unsafe { libc::ttyname_r(slave.as_raw_fd(), name.as_mut_ptr(), name.len()) }, 0);
        // SAFETY: ttyname_r wrote a NUL-terminated name.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_str().unwrap().into();
        // SAFETY: termios is filled by tcgetattr, then set raw.
        unsafe {
            let mut tios: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(slave.as_raw_fd(), &mut tios), 0);
            libc::cfmakeraw(&mut tios);
            assert_eq!(libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &tios), 0);
        }
        Pty { path, master, _slave: slave }
    }

    /// Serves the master with `host`, starting from `session` (which may
    /// hold half a line an earlier guest left).
    pub fn serve(&self, host: &Host, session: Session) {
        let read = std::fs::File::from(self.master.try_clone().unwrap());
        let write = read.try_clone().unwrap();
        let host = host.clone();
        thread::spawn(move || host.serve(read, write, session));
    }

    /// Writes bytes from the "host" side, as if an earlier answer were
    /// still arriving.
    pub fn inject(&self, bytes: &[u8]) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(bytes).unwrap();
    }
}
