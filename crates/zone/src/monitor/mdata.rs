//! The instance's metadata service: SmartOS's mdata protocol
//! (`zonevisor_mdata`), served by the monitor inside its poll loop.
//!
//! A zone's clients connect to a Unix socket the monitor listens on in
//! its run directory (`zonecontrol/metadata.sock`, the directory the
//! zone's root owns, mode 0700, mounted at `/.zonecontrol` and
//! `/native/.zonecontrol`); a VM's one client is its second serial port,
//! a socket pair whose other end QEMU holds as the port's chardev. Every
//! client has a [`Session`] of its own (bytes in, requests out, bounded);
//! reads answer from the monitor's copy of the instance ([`Service::set_vm`],
//! sent by the daemon after each change), so a `GET` never leaves the
//! monitor. A `PUT` or `DELETE` becomes a `vmadm update` of the instance
//! through the daemon's API (`POST /v1/vms/<uuid>/update` with
//! `set_customer_metadata` or `remove_customer_metadata`, or the
//! `internal_metadata` pair for `*_pw` keys): stored, evented and shown
//! like any update before the guest hears `SUCCESS`.
//!
//! Nothing here blocks the loop: sockets are nonblocking; a write to the
//! daemon is one HTTP exchange on a nonblocking connection, one at a time
//! per instance, in the order the guest asked; a client whose write is
//! under way sends nothing more until it is answered. What a guest can
//! make the monitor hold is bounded: [`MAX_CLIENTS`] connections (a new
//! one pushes out the longest idle), one request line of
//! `zonevisor_mdata::MAX_LINE` per session, [`MAX_PENDING`] parsed
//! requests and [`MAX_OUT`] bytes of unread answers per client (its
//! socket is not read meanwhile), [`MAX_QUEUED`] writes waiting, and
//! writes at [`WRITES_PER_SEC`] a second (bursts of [`WRITE_BURST`]);
//! past that a write is answered `FAILURE`. On a VM's serial port, which
//! also carries what its firmware and kernel print, a line that is no
//! request (not a command, an unknown V1 command) gets no answer: it
//! would arrive as typed input.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonevisor_mdata::keys::{self, Resolution, Target, Write as MdWrite};
use zonevisor_mdata::proto::{self, Framing, Reply, Request};
use zonevisor_mdata::session::Session;

use crate::spec::MetadataSpec;

/// The directory of a zone's metadata socket, in its run directory.
pub(crate) const ZONECONTROL_DIR: &str = "zonecontrol";
/// The socket's name in it (and in the zone's `/.zonecontrol`).
pub(crate) const SOCKET_NAME: &str = "metadata.sock";

/// Connections a zone may hold open at once.
pub(crate) const MAX_CLIENTS: usize = 16;
/// Requests parsed and waiting for their turn, per client.
pub(crate) const MAX_PENDING: usize = 64;
/// Unread answers per client: its socket is not read past this.
pub(crate) const MAX_OUT: usize = 4 << 20;
/// Writes waiting for the daemon, per instance.
pub(crate) const MAX_QUEUED: usize = 64;
/// Writes a second a guest may make, on average.
pub(crate) const WRITES_PER_SEC: f64 = 50.0;
/// The burst it may make at once.
pub(crate) const WRITE_BURST: f64 = 100.0;
/// How long the daemon has to answer a write.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest answer the daemon's update may give (it carries the whole instance).
const MAX_HTTP_ANSWER: usize = 32 << 20;

/// One guest's connection (or its serial port).
struct Client {
    stream: UnixStream,
    session: Session,
    pending: VecDeque<(Framing, Request)>,
    out: Vec<u8>,
    /// A write of this client's is queued or under way.
    busy: bool,
    /// The serial port: never dropped by the monitor.
    serial: bool,
    last: Instant,
    id: u64,
}

impl Client {
    fn new(stream: UnixStream, serial: bool, id: u64) -> Client {
        Client {
            stream,
            session: Session::new(),
            pending: VecDeque::new(),
            out: Vec::new(),
            busy: false,
            serial,
            last: Instant::now(),
            id,
        }
    }
}

/// A write waiting for its turn.
struct Queued {
    client: u64,
    framing: Framing,
    write: MdWrite,
}

/// The write under way: one HTTP exchange with the daemon.
struct Call {
    queued: Queued,
    stream: UnixStream,
    request: Vec<u8>,
    sent: usize,
    answer: Vec<u8>,
    deadline: Instant,
}

/// A token bucket for writes.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * WRITES_PER_SEC;
        self.tokens = (self.tokens + refill).min(WRITE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The service of one instance (see the module documentation).
pub(crate) struct Service {
    uuid: String,
    vm: Value,
    api_socket: PathBuf,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    queue: VecDeque<Queued>,
    call: Option<Call>,
    bucket: Bucket,
    next_id: u64,
    /// Where this turn's descriptors start in the poll set, and how many.
    polled: Vec<PollSlot>,
}

#[derive(Clone, Copy)]
enum PollSlot {
    Listener,
    Client(u64),
    Call,
}

impl Service {
    /// The service for `spec`, with no transport yet.
    pub(crate) fn new(uuid: &str, spec: &MetadataSpec) -> Service {
        Service {
            uuid: uuid.to_owned(),
            vm: spec.vm.clone(),
            api_socket: spec.api_socket.clone(),
            listener: None,
            clients: Vec::new(),
            queue: VecDeque::new(),
            call: None,
            bucket: Bucket { tokens: WRITE_BURST, at: Instant::now() },
            next_id: 0,
            polled: Vec::new(),
        }
    }

    /// A zone's socket: `run_dir/zonecontrol/metadata.sock`, the
    /// directory (mode 0700) and the socket owned by the zone's root
    /// (`owner`, its host uid and gid), so only root in the zone reaches it,
    /// as in SmartOS.
    pub(crate) fn listen(&mut self, run_dir: &Path, owner: (u32, u32)) -> io::Result<()> {
        // Made anew: nothing a previous run left (the zone cannot write
        // there; its mounts of it are read-only).
        let dir = run_dir.join(ZONECONTROL_DIR);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir(&dir)?;
        let path = dir.join(SOCKET_NAME);
        // (A run directory deep in the file system makes a path too long
        // for a socket address: bound through a descriptor of it then.)
        let listener = crate::control::with_short_path(&dir, SOCKET_NAME, |p| UnixListener::bind(p))?;
        listener.set_nonblocking(true)?;
        std::os::unix::fs::lchown(&path, Some(owner.0), Some(owner.1))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        std::os::unix::fs::chown(&dir, Some(owner.0), Some(owner.1))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        self.listener = Some(listener);
        Ok(())
    }

    /// A VM's serial port (our end of its socket pair), replacing the
    /// last QEMU's.
    pub(crate) fn attach_serial(&mut self, stream: UnixStream) {
        self.clients.retain(|c| !c.serial);
        if stream.set_nonblocking(true).is_ok() {
            let id = self.next_id();
            self.clients.push(Client::new(stream, true, id));
        }
    }

    /// The instance as the service has it.
    pub(crate) fn vm(&self) -> &Value {
        &self.vm
    }

    /// The instance changed (`vmadm update`, or a guest's write stored).
    pub(crate) fn set_vm(&mut self, vm: Value) {
        self.vm = vm;
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds the service's descriptors to the poll set.
    pub(crate) fn push_pollfds(&mut self, pfds: &mut Vec<libc::pollfd>) {
        self.polled.clear();
        if let Some(l) = &self.listener {
            pfds.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            self.polled.push(PollSlot::Listener);
        }
        for c in &self.clients {
            let mut events = 0;
            if !c.busy && c.pending.len() < MAX_PENDING && c.out.len() < MAX_OUT {
                events |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                events |= libc::POLLOUT;
            }
            pfds.push(libc::pollfd { fd: c.stream.as_raw_fd(), events, revents: 0 });
            self.polled.push(PollSlot::Client(c.id));
        }
        if let Some(call) = &self.call {
            let events = if call.sent < call.request.len() { libc::POLLOUT } else { libc::POLLIN };
            pfds.push(libc::pollfd { fd: call.stream.as_raw_fd(), events, revents: 0 });
            self.polled.push(PollSlot::Call);
        }
    }

    /// When the loop must wake for the service: a write's timeout.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.call.as_ref().map(|c| c.deadline)
    }

    /// Handles this turn's events (`pfds`: what [`Service::push_pollfds`] added).
    pub(crate) fn on_poll(&mut self, pfds: &[libc::pollfd]) {
        let slots = std::mem::take(&mut self.polled);
        let mut accept = false;
        let mut call_ready = false;
        for (slot, p) in slots.iter().zip(pfds) {
            if p.revents == 0 {
                continue;
            }
            match *slot {
                PollSlot::Listener => accept = true,
                PollSlot::Client(id) => self.on_client(id, p.revents),
                PollSlot::Call => call_ready = true,
            }
        }
        if call_ready || self.call.as_ref().is_some_and(|c| Instant::now() >= c.deadline) {
            self.on_call();
        }
        if accept {
            self.accept();
        }
        self.start_call();
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        let mut new = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                new.push(stream);
            }
        }
        for stream in new {
            let sockets = self.clients.iter().filter(|c| !c.serial).count();
            if sockets >= MAX_CLIENTS {
                // The longest idle goes; one waiting for a write stays.
                if let Some(i) = self
                    .clients
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.serial && !c.busy)
                    .min_by_key(|(_, c)| c.last)
                    .map(|(i, _)| i)
                {
                    self.clients.swap_remove(i);
                } else {
                    continue;
                }
            }
            let id = self.next_id();
            self.clients.push(Client::new(stream, false, id));
        }
    }

    fn on_client(&mut self, id: u64, revents: i16) {
        let Some(i) = self.clients.iter().position(|c| c.id == id) else { return };
        let c = &mut self.clients[i];
        let mut closed = false;
        if revents & libc::POLLOUT != 0 && !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && !closed {
            let mut buf = [0u8; 16 * 1024];
            match c.stream.read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => {
                    c.last = Instant::now();
                    for r in c.session.feed(&buf[..n]) {
                        match r {
                            // A serial port also carries what the guest's
                            // firmware and kernel print there: text that is
                            // no request gets no answer, which the guest
                            // would read as typed input (a boot menu
                            // stops on a key). Clients' empty lines, the
                            // protocol's own reset, are still answered.
                            Ok((Framing::V1, Request::Unknown { .. })) | Err(proto::LineError::Invalid) if c.serial => {
                            }
                            Ok(req) if c.pending.len() < MAX_PENDING => c.pending.push_back(req),
                            // A flood: what does not fit is dropped (a
                            // socket client is cut off below).
                            Ok(_) => {}
                            // SmartOS answers a V1 line it cannot read,
                            // and ignores a V2 frame that fails its checks.
                            Err(e) => c.out.extend_from_slice(e.reply().unwrap_or_default()),
                        }
                    }
                    if !c.serial && (c.session.overflowed() || c.pending.len() >= MAX_PENDING) {
                        closed = true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => closed = true,
            }
        }
        if closed {
            // (A serial port closes when its QEMU goes; the next brings a new pair.)
            self.clients.swap_remove(i);
            self.queue.retain(|q| q.client != id);
            return;
        }
        self.serve(i);
    }

    /// Answers client `i`'s waiting requests in order, up to its first write.
    fn serve(&mut self, i: usize) {
        let now = Instant::now();
        while !self.clients[i].busy {
            let Some((framing, req)) = self.clients[i].pending.pop_front() else { break };
            match keys::resolve(&self.vm, &framing, &req) {
                Resolution::Reply(reply) => self.clients[i].out.extend(proto::encode(&framing, &reply)),
                Resolution::Write(write) => {
                    if self.queue.len() >= MAX_QUEUED || !self.bucket.take(now) {
                        let why = "too many metadata writes at once; try again".to_owned();
                        self.clients[i].out.extend(proto::encode(&framing, &Reply::Failure(Some(why))));
                        continue;
                    }
                    let client = self.clients[i].id;
                    self.clients[i].busy = true;
                    self.queue.push_back(Queued { client, framing, write });
                }
            }
        }
        self.flush(i);
    }

    /// Writes what client `i` can take now.
    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(_) => break,
            }
        }
    }

    /// Starts the next queued write, if none is under way.
    fn start_call(&mut self) {
        while self.call.is_none() {
            let Some(q) = self.queue.pop_front() else { return };
            let body = update_payload(&q.write).to_string();
            let request = format!(
                "POST /v1/vms/{}/update HTTP/1.1\r\nHost: zonevisord\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.uuid,
                body.len()
            )
            .into_bytes();
            match UnixStream::connect(&self.api_socket).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(stream) => {
                    self.call = Some(Call {
                        queued: q,
                        stream,
                        request,
                        sent: 0,
                        answer: Vec::new(),
                        deadline: Instant::now() + CALL_TIMEOUT,
                    })
                }
                Err(e) => self.answer(q, Err(format!("the host's daemon is not reachable: {e}"))),
            }
        }
    }

    /// Moves the write under way along: sends, reads, and when the
    /// daemon has answered (or the time is up), answers the guest.
    fn on_call(&mut self) {
        let Some(call) = self.call.as_mut() else { return };
        let mut done = None;
        if Instant::now() >= call.deadline {
            done = Some(Err("the host's daemon did not answer in time".to_owned()));
        } else if call.sent < call.request.len() {
            match call.stream.write(&call.request[call.sent..]) {
                Ok(n) => call.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => done = Some(Err(format!("the host's daemon: {e}"))),
            }
        } else {
            let mut buf = [0u8; 64 * 1024];
            loop {
                match call.stream.read(&mut buf) {
                    Ok(0) => {
                        done = Some(http_outcome(&call.answer));
                        break;
                    }
                    Ok(n) if call.answer.len() + n <= MAX_HTTP_ANSWER => call.answer.extend_from_slice(&buf[..n]),
                    Ok(_) => {
                        done = Some(Err("the host's daemon answered too much".to_owned()));
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        done = Some(Err(format!("the host's daemon: {e}")));
                        break;
                    }
                }
            }
        }
        if let Some(outcome) = done {
            if let Some(call) = self.call.take() {
                self.answer(call.queued, outcome);
            }
        }
    }

    /// Answers a write's client: `SUCCESS` once stored (and the monitor's
    /// copy has it, whatever the daemon's own notice does), else `FAILURE`
    /// with why.
    fn answer(&mut self, q: Queued, outcome: Result<(), String>) {
        if outcome.is_ok() {
            apply(&mut self.vm, &q.write);
        }
        let reply = keys::write_reply(outcome);
        let Some(i) = self.clients.iter().position(|c| c.id == q.client) else { return };
        self.clients[i].out.extend(proto::encode(&q.framing, &reply));
        self.clients[i].busy = false;
        self.serve(i);
    }
}

/// The `vmadm update` payload of a guest's write.
fn update_payload(w: &MdWrite) -> Value {
    let map = match w.target {
        Target::Customer => "customer_metadata",
        Target::Internal => "internal_metadata",
    };
    match &w.value {
        Some(v) => json!({ format!("set_{map}"): { w.key.clone(): v } }),
        None => json!({ format!("remove_{map}"): [w.key.clone()] }),
    }
}

/// A stored write, on the monitor's copy of the instance.
fn apply(vm: &mut Value, w: &MdWrite) {
    let map = match w.target {
        Target::Customer => "customer_metadata",
        Target::Internal => "internal_metadata",
    };
    let Some(obj) = vm.as_object_mut() else { return };
    let m = obj.entry(map).or_insert_with(|| json!({}));
    let Some(m) = m.as_object_mut() else { return };
    match &w.value {
        Some(v) => {
            m.insert(w.key.clone(), Value::String(v.clone()));
        }
        None => {
            m.remove(&w.key);
        }
    }
}

/// The outcome of the daemon's whole HTTP answer: 2xx is success, else
/// the API error's message.
fn http_outcome(answer: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(answer);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(code) => {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let message = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {code}"));
            Err(message)
        }
        None => Err("the host's daemon gave no answer".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_become_updates_of_the_right_map() {
        let put = MdWrite { target: Target::Customer, key: "a".into(), value: Some("1".into()) };
        assert_eq!(update_payload(&put), json!({"set_customer_metadata": {"a": "1"}}));
        let del = MdWrite { target: Target::Internal, key: "root_pw".into(), value: None };
        assert_eq!(update_payload(&del), json!({"remove_internal_metadata": ["root_pw"]}));
        let mut vm = json!({"customer_metadata": {"b": "2"}});
        apply(&mut vm, &put);
        assert_eq!(vm["customer_metadata"], json!({"b": "2", "a": "1"}));
        apply(&mut vm, &MdWrite { target: Target::Customer, key: "b".into(), value: None });
        assert_eq!(vm["customer_metadata"], json!({"a": "1"}));
        apply(&mut vm, &MdWrite { target: Target::Internal, key: "x_pw".into(), value: Some("s".into()) });
        assert_eq!(vm["internal_metadata"], json!({"x_pw": "s"}));
    }

    #[test]
    fn the_daemons_answer_is_read() {
        assert_eq!(http_outcome(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"), Ok(()));
        let refused =
            b"HTTP/1.1 400 Bad Request\r\n\r\n{\"kind\":\"Validation\",\"message\":\"customer_metadata: too big\"}";
        assert_eq!(http_outcome(refused), Err("customer_metadata: too big".to_owned()));
        assert_eq!(http_outcome(b"HTTP/1.1 500 Oops\r\n\r\nnot json"), Err("HTTP 500".to_owned()));
        assert!(http_outcome(b"").is_err());
    }

    #[test]
    fn the_bucket_refills_and_caps() {
        let t0 = Instant::now();
        let mut b = Bucket { tokens: WRITE_BURST, at: t0 };
        let taken = (0..(WRITE_BURST as usize + 10)).filter(|_| b.take(t0)).count();
        assert_eq!(taken, WRITE_BURST as usize);
        assert!(b.take(t0 + Duration::from_millis(100)), "refilled after 100 ms");
    }
}
