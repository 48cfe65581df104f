//! A small IMGAPI-compatible server for the tests: `GET /ping`,
//! `GET /images` (the filters `name`, `version`, `os`, `type`, `state`;
//! `limit` and an inclusive `marker`), `GET /images/<uuid>` and
//! `GET /images/<uuid>/file` (with `Range: bytes=N-`), as SmartOS's
//! imgadm uses them, serving manifests and files the test adds.
//!
//! It listens on 127.0.0.1 inside a test host's network namespace (its
//! listening thread enters the namespace with `setns` before it binds), so
//! the daemon there reaches it and nothing else does. Faults a test can
//! ask for, per image: the connection dropped after N bytes of the file,
//! one byte of the file flipped, a 404 for the file, `Range` ignored (the
//! whole file, 200), and a pause between chunks (a slow server). Every
//! request is logged with its `Range`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// A fault of one image's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed after this many bytes of the file (counted
    /// from where the answer starts), `times` times.
    DropAfter { bytes: u64, times: u32 },
    /// The byte at this offset of the file is flipped, `times` times.
    Corrupt { at: u64, times: u32 },
    /// The file is answered 404, `times` times.
    NotFound { times: u32 },
    /// `Range` is ignored: the whole file, 200 (always).
    IgnoreRange,
    /// A pause after each 64 KiB of the file (always).
    Slow(Duration),
}

/// One request the server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The path with its query.
    pub path: String,
    /// Its `Range` header.
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    /// uuid → (manifest, file).
    images: BTreeMap<String, (Value, PathBuf)>,
    faults: HashMap<String, Vec<Fault>>,
    log: Vec<Logged>,
}

/// The running server; stopped when dropped.
pub struct ImgapiServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The manifest of an lx-dataset image whose file is `file`: its size and
/// sha1 filled in, `extra` fields merged over the defaults.
pub fn manifest_for(uuid: &str, name: &str, version: &str, file: &[u8], extra: Value) -> Value {
    use sha1::Digest;
    let sha1 = hex::encode(sha1::Sha1::digest(file));
    let mut m = json!({
        "v": 2, "uuid": uuid, "owner": "00000000-0000-0000-0000-000000000000",
        "name": name, "version": version, "state": "active", "disabled": false, "public": true,
        "published_at": "2026-01-01T00:00:00.000Z", "type": "lx-dataset", "os": "linux",
        "files": [{"sha1": sha1, "size": file.len(), "compression": "gzip"}],
        "requirements": {"brand": "lx"},
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// A gzipped tarball holding `files` (path, contents), mode 0755 for
/// paths under `bin/` or `sbin/`, 0644 otherwise.
pub fn tarball(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(if path.contains("bin/") { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_767_225_600);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

impl ImgapiServer {
    /// Starts a server inside network namespace `netns` (`ip netns`).
    pub fn start(netns: &str) -> ImgapiServer {
        let st = std::process::Command::new("ip").args(["-n", netns, "link", "set", "lo", "up"]).status().unwrap();
        assert!(st.success(), "ip -n {netns} link set lo up");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let ns_path = format!("/run/netns/{netns}");
        let (st2, stop2) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&ns_path).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns into the test's netns");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind in the test's netns");
            listener.set_nonblocking(true).unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st2.clone();
                        std::thread::spawn(move || {
                            let _ = serve(conn, &st);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(10)).expect("the IMGAPI test server listens");
        ImgapiServer { url: format!("http://127.0.0.1:{port}"), state, stop, thread: Some(thread) }
    }

    /// Serves an image: its manifest and the file at `file`.
    pub fn add_file(&self, manifest: Value, file: PathBuf) {
        let uuid = manifest["uuid"].as_str().expect("a manifest with a uuid").to_string();
        self.state.lock().unwrap().images.insert(uuid, (manifest, file));
    }

    /// Serves an image whose file is `data` (written beside the test).
    pub fn add(&self, dir: &std::path::Path, manifest: Value, data: &[u8]) {
        let path = dir.join(format!("{}.file", manifest["uuid"].as_str().unwrap()));
        std::fs::write(&path, data).unwrap();
        self.add_file(manifest, path);
    }

    /// Replaces an image's manifest (its file stays).
    pub fn set_manifest(&self, manifest: Value) {
        let uuid = manifest["uuid"].as_str().unwrap().to_string();
        let mut st = self.state.lock().unwrap();
        let entry = st.images.get_mut(&uuid).expect("an image served");
        entry.0 = manifest;
    }

    /// Adds a fault to an image's file.
    pub fn fault(&self, uuid: &str, fault: Fault) {
        self.state.lock().unwrap().faults.entry(uuid.to_string()).or_default().push(fault);
    }

    /// Removes an image's faults.
    pub fn clear_faults(&self, uuid: &str) {
        self.state.lock().unwrap().faults.remove(uuid);
    }

    /// The requests answered so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// The requests for `uuid`'s file.
    pub fn file_requests(&self, uuid: &str) -> Vec<Logged> {
        let path = format!("/images/{uuid}/file");
        self.log().into_iter().filter(|l| l.path.starts_with(&path)).collect()
    }
}

impl Drop for ImgapiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `application/x-www-form-urlencoded` pairs of a query.
fn query_pairs(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn respond(conn: &mut TcpStream, status: &str, body: &[u8], ctype: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    conn.flush()
}

fn not_found(conn: &mut TcpStream, what: &str) -> std::io::Result<()> {
    let body = json!({"code": "ResourceNotFound", "message": format!("{what} was not found")}).to_string();
    respond(conn, "404 Not Found", body.as_bytes(), "application/json")
}

/// Takes one use of a counted fault of `uuid` matching `pick`.
fn take_fault(st: &Mutex<State>, uuid: &str, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
    let mut st = st.lock().unwrap();
    let list = st.faults.get_mut(uuid)?;
    let i = list.iter().position(&pick)?;
    let f = list[i].clone();
    let left = match &mut list[i] {
        Fault::DropAfter { times, .. } | Fault::Corrupt { times, .. } | Fault::NotFound { times } => {
            *times -= 1;
            *times
        }
        _ => 1,
    };
    if left == 0 {
        list.remove(i);
    }
    Some(f)
}

fn has_fault(st: &Mutex<State>, uuid: &str, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
    st.lock().unwrap().faults.get(uuid).and_then(|l| l.iter().find(|f| pick(f)).cloned())
}

/// Answers one connection: one request.
fn serve(mut conn: TcpStream, st: &Mutex<State>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    st.lock().unwrap().log.push(Logged { path: target.clone(), range: range.clone() });
    if method != "GET" {
        return respond(&mut conn, "405 Method Not Allowed", b"{}", "application/json");
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let q = query_pairs(query);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["ping"] => {
            let body = json!({"ping": "pong", "version": "zonevisor-test", "imgapi": true, "pid": std::process::id()});
            respond(&mut conn, "200 OK", body.to_string().as_bytes(), "application/json")
        }
        ["images"] => {
            let images: Vec<Value> = st.lock().unwrap().images.values().map(|(m, _)| m.clone()).collect();
            let want = |k: &str| q.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let state = want("state").unwrap_or_else(|| "active".into());
            let mut list: Vec<Value> = images
                .into_iter()
                .filter(|m| state == "all" || m["state"] == state.as_str())
                .filter(|m| {
                    ["name", "version", "os", "type"].iter().all(|k| want(k).is_none_or(|v| m[*k] == v.as_str()))
                })
                .collect();
            list.sort_by(|a, b| {
                a["published_at"]
                    .as_str()
                    .cmp(&b["published_at"].as_str())
                    .then(a["uuid"].as_str().cmp(&b["uuid"].as_str()))
            });
            if let Some(marker) = want("marker") {
                if let Some(i) = list.iter().position(|m| m["uuid"] == marker.as_str()) {
                    list.drain(..i);
                }
            }
            if let Some(limit) = want("limit").and_then(|l| l.parse::<usize>().ok()) {
                list.truncate(limit);
            }
            respond(&mut conn, "200 OK", Value::from(list).to_string().as_bytes(), "application/json")
        }
        ["images", uuid] => {
            let m = st.lock().unwrap().images.get(*uuid).map(|(m, _)| m.clone());
            match m {
                Some(m) => respond(&mut conn, "200 OK", m.to_string().as_bytes(), "application/json"),
                None => not_found(&mut conn, &format!("image {uuid}")),
            }
        }
        ["images", uuid, "file"] => {
            let file = st.lock().unwrap().images.get(*uuid).map(|(_, f)| f.clone());
            let Some(file) = file else { return not_found(&mut conn, &format!("image {uuid}")) };
            if take_fault(st, uuid, |f| matches!(f, Fault::NotFound { .. })).is_some() {
                return not_found(&mut conn, &format!("the file of image {uuid}"));
            }
            send_file(&mut conn, st, uuid, &file, range.as_deref())
        }
        _ => not_found(&mut conn, &format!("route {path}")),
    }
}

fn send_file(
    conn: &mut TcpStream,
    st: &Mutex<State>,
    uuid: &str,
    path: &std::path::Path,
    range: Option<&str>,
) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let from = range
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| has_fault(st, uuid, |f| *f == Fault::IgnoreRange).is_none());
    let from = match from {
        Some(n) if n >= size => {
            let head = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return conn.write_all(head.as_bytes());
        }
        other => other,
    };
    let head = match from {
        Some(n) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nContent-Range: bytes {n}-{}/{size}\r\nConnection: close\r\n\r\n",
            size - n,
            size - 1
        ),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
        ),
    };
    conn.write_all(head.as_bytes())?;
    let start = from.unwrap_or(0);
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
    let drop_after = take_fault(st, uuid, |f| matches!(f, Fault::DropAfter { .. }));
    let corrupt = take_fault(st, uuid, |f| matches!(f, Fault::Corrupt { .. }));
    let slow = has_fault(st, uuid, |f| matches!(f, Fault::Slow(_)));
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        if let Some(Fault::Corrupt { at, .. }) = corrupt {
            let pos = start + sent;
            if at >= pos && at < pos + n as u64 {
                chunk[(at - pos) as usize] ^= 0xff;
            }
        }
        if let Some(Fault::DropAfter { bytes, .. }) = drop_after {
            if sent + n as u64 >= bytes {
                let keep = (bytes - sent) as usize;
                conn.write_all(&chunk[..keep])?;
                conn.flush()?;
                // A reset, as a server that dies mid-file leaves it.
                let _ = conn.shutdown(std::net::Shutdown::Both);
                return Ok(());
            }
        }
        conn.write_all(chunk)?;
        sent += n as u64;
        if let Some(Fault::Slow(pause)) = slow {
            std::thread::sleep(pause);
        }
    }
    conn.flush()
}
