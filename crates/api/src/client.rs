//! A small blocking client for the daemon's API: HTTP/1.1 over a Unix
//! socket, one connection per request. The CLIs use it; it keeps them free
//! of an async runtime so they start in about a millisecond.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::routes::{self, with_uuid};
use crate::sources::*;
use crate::types::*;

/// Why a call did not get an answer from the daemon, or got an error.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach zonevisord at {path} (is it running? set ZONEVISOR_SOCKET or --socket)")]
    Connect {
        /// The socket path tried.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("talking to zonevisord")]
    Io(#[from] std::io::Error),
    /// The answer was not HTTP or not the JSON expected.
    #[error("bad answer from zonevisord: {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error(transparent)]
    Api(Box<ApiError>),
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(Box::new(e))
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// The daemon's client.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    timeout: Option<Duration>,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), timeout: None }
    }

    /// Gives up on an answer after `timeout` (default: wait as long as it takes).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and reads the whole answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Response, ClientError> {
        read_response(BufReader::new(self.send(method, path, body)?))
    }

    /// Connects and sends one request; the answer is left to read.
    fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<UnixStream, ClientError> {
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        stream.set_read_timeout(self.timeout)?;
        let body = body.unwrap_or(&[]);
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: zonevisord\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut buf = req.into_bytes();
        buf.extend_from_slice(body);
        stream.write_all(&buf)?;
        Ok(stream)
    }

    /// Sends a JSON request and decodes a JSON answer, turning error
    /// statuses into [`ClientError::Api`].
    pub fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::Protocol(e.to_string()))?),
            None => None,
        };
        let resp = self.request(method, path, bytes.as_deref())?;
        if (200..300).contains(&resp.status) {
            serde_json::from_slice(&resp.body)
                .map_err(|e| ClientError::Protocol(format!("{e} in answer to {method} {path}")))
        } else {
            match serde_json::from_slice::<ApiError>(&resp.body) {
                Ok(err) => Err(ClientError::Api(Box::new(err))),
                Err(_) => Err(ClientError::Protocol(format!(
                    "status {} to {method} {path}: {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ))),
            }
        }
    }

    /// `GET /v1/nictags`.
    pub fn list_nic_tags(&self) -> Result<Vec<NicTag>, ClientError> {
        self.call::<(), _>("GET", routes::NIC_TAGS, None)
    }

    /// `POST /v1/nictags`.
    pub fn add_nic_tag(&self, req: &NicTagRequest) -> Result<NicTag, ClientError> {
        self.call("POST", routes::NIC_TAGS, Some(req))
    }

    /// `GET /v1/nictags/{name}`.
    pub fn get_nic_tag(&self, name: &str) -> Result<NicTag, ClientError> {
        self.call::<(), _>("GET", &routes::with_name(routes::NIC_TAG, &encode(name)), None)
    }

    /// `POST /v1/nictags/{name}/update`.
    pub fn update_nic_tag(&self, name: &str, req: &NicTagUpdate) -> Result<NicTag, ClientError> {
        self.call("POST", &routes::with_name(routes::NIC_TAG_UPDATE, &encode(name)), Some(req))
    }

    /// `DELETE /v1/nictags/{name}` (`force`: even while NICs use it).
    pub fn delete_nic_tag(&self, name: &str, force: bool) -> Result<Done, ClientError> {
        let path = routes::with_name(routes::NIC_TAG, &encode(name));
        let path = if force { format!("{path}?force=true") } else { path };
        self.call::<(), _>("DELETE", &path, None)
    }

    /// `GET /v1/nictags/{name}/vms`.
    pub fn nic_tag_vms(&self, name: &str) -> Result<Vec<String>, ClientError> {
        self.call::<(), _>("GET", &routes::with_name(routes::NIC_TAG_VMS, &encode(name)), None)
    }

    /// `GET /v1/fw/rules`.
    pub fn list_fw_rules(&self) -> Result<Vec<FwRule>, ClientError> {
        self.call::<(), _>("GET", routes::FW_RULES, None)
    }

    /// `POST /v1/fw/rules`: all added, or none.
    pub fn add_fw_rules(&self, req: &FwAddRequest) -> Result<Vec<FwRule>, ClientError> {
        self.call("POST", routes::FW_RULES, Some(req))
    }

    /// `GET /v1/fw/rules/{uuid}`.
    pub fn get_fw_rule(&self, uuid: &str) -> Result<FwRule, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::FW_RULE, encode(uuid)), None)
    }

    /// `POST /v1/fw/rules/{uuid}/update`.
    pub fn update_fw_rule(&self, uuid: &str, req: &FwRuleUpdate) -> Result<FwRule, ClientError> {
        self.call("POST", &with_uuid(routes::FW_RULE_UPDATE, encode(uuid)), Some(req))
    }

    /// `DELETE /v1/fw/rules/{uuid}`.
    pub fn delete_fw_rule(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call::<(), _>("DELETE", &with_uuid(routes::FW_RULE, encode(uuid)), None)
    }

    /// `POST /v1/fw/changes`: all changed and deleted, or none.
    pub fn change_fw_rules(&self, req: &FwChangeRequest) -> Result<FwChanged, ClientError> {
        self.call("POST", routes::FW_CHANGES, Some(req))
    }

    /// `GET /v1/fw/rules/{uuid}/vms`.
    pub fn fw_rule_vms(&self, uuid: &str) -> Result<Vec<String>, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::FW_RULE_VMS, encode(uuid)), None)
    }

    /// `GET /v1/fw/vms/{uuid}/rules`.
    pub fn fw_vm_rules(&self, uuid: &str) -> Result<Vec<FwRule>, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::FW_VM_RULES, encode(uuid)), None)
    }

    /// `GET /v1/fw/vms/{uuid}/status`.
    pub fn fw_vm_status(&self, uuid: &str) -> Result<FwStatus, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::FW_VM_STATUS, encode(uuid)), None)
    }

    /// `GET /v1/fw/vms/{uuid}/stats`.
    pub fn fw_vm_stats(&self, uuid: &str) -> Result<Vec<FwRuleStats>, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::FW_VM_STATS, encode(uuid)), None)
    }

    /// `GET /v1/ping`.
    pub fn ping(&self) -> Result<Ping, ClientError> {
        self.call::<(), _>("GET", routes::PING, None)
    }

    /// `GET /v1/sysinfo`.
    pub fn sysinfo(&self) -> Result<Value, ClientError> {
        self.call::<(), _>("GET", routes::SYSINFO, None)
    }

    /// `GET /v1/vms`, optionally only some properties of each.
    pub fn list_vms(&self, fields: Option<&[String]>) -> Result<Vec<VmObject>, ClientError> {
        let path = match fields {
            Some(f) if !f.is_empty() => format!("{}?fields={}", routes::VMS, encode_query(&f.join(","))),
            _ => routes::VMS.to_string(),
        };
        self.call::<(), _>("GET", &path, None)
    }

    /// `POST /v1/vms`.
    pub fn create_vm(&self, payload: &Value) -> Result<Changed, ClientError> {
        self.call("POST", routes::VMS, Some(payload))
    }

    /// `POST /v1/validate`.
    pub fn validate(&self, req: &ValidateRequest) -> Result<Done, ClientError> {
        self.call("POST", routes::VALIDATE, Some(req))
    }

    /// `GET /v1/vms/{uuid}`.
    pub fn get_vm(&self, uuid: &str) -> Result<VmObject, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::VM, uuid), None)
    }

    /// `POST /v1/vms/{uuid}/update`.
    pub fn update_vm(&self, uuid: &str, payload: &Value) -> Result<Changed, ClientError> {
        self.call("POST", &with_uuid(routes::VM_UPDATE, uuid), Some(payload))
    }

    /// `DELETE /v1/vms/{uuid}`.
    pub fn delete_vm(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call::<(), _>("DELETE", &with_uuid(routes::VM, uuid), None)
    }

    /// `POST /v1/vms/{uuid}/start`.
    pub fn start_vm(&self, uuid: &str, req: &StartRequest) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_START, uuid), Some(req))
    }

    /// `POST /v1/vms/{uuid}/sysrq`.
    pub fn sysrq_vm(&self, uuid: &str, req: &SysrqRequest) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_SYSRQ, uuid), Some(req))
    }

    /// `POST /v1/vms/{uuid}/stop`.
    pub fn stop_vm(&self, uuid: &str, req: &StopRequest) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_STOP, uuid), Some(req))
    }

    /// `POST /v1/vms/{uuid}/reboot`.
    pub fn reboot_vm(&self, uuid: &str, req: &RebootRequest) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_REBOOT, uuid), Some(req))
    }

    /// `POST /v1/vms/{uuid}/kill`.
    pub fn kill_vm(&self, uuid: &str, req: &KillRequest) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_KILL, uuid), Some(req))
    }

    /// `GET /v1/vms/{uuid}/info`.
    pub fn vm_info(&self, uuid: &str) -> Result<VmInfo, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::VM_INFO, uuid), None)
    }

    /// `GET /v1/vms/{uuid}/console`.
    pub fn vm_console(&self, uuid: &str) -> Result<ConsoleInfo, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::VM_CONSOLE, uuid), None)
    }

    /// `GET /v1/events`: follows the event stream, handing each event (the
    /// `ready` one first) to `on_event` as it arrives, until `on_event`
    /// returns `false` (then `Ok`) or the daemon ends the stream (`Ok`).
    /// `uuid` limits it to one VM; `full` asks for the VM object with each
    /// event. The client's timeout does not apply: events may be far apart.
    pub fn events(
        &self,
        uuid: Option<&str>,
        full: bool,
        mut on_event: impl FnMut(Event) -> bool,
    ) -> Result<(), ClientError> {
        let mut query = Vec::new();
        if let Some(u) = uuid {
            query.push(format!("uuid={}", encode_query(u)));
        }
        if full {
            query.push("full=true".to_string());
        }
        let path = if query.is_empty() {
            routes::EVENTS.to_string()
        } else {
            format!("{}?{}", routes::EVENTS, query.join("&"))
        };
        let r = self.open_stream("GET", &path, None)?;
        read_events(r, &mut on_event)
    }

    /// Sends one request whose answer is a stream (newline-delimited JSON)
    /// and returns its body as it arrives, de-chunked; an error status is
    /// [`ClientError::Api`]. The client's timeout does not apply to the
    /// body: a stream's lines may be far apart.
    fn open_stream(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Box<dyn BufRead>, ClientError> {
        let stream = self.send(method, path, body)?;
        stream.set_read_timeout(None)?;
        let mut r = BufReader::new(stream);
        let head = read_head(&mut r)?;
        if !(200..300).contains(&head.status) {
            let mut body = Vec::new();
            match head.length {
                Some(n) if !head.chunked => {
                    body.resize(n, 0);
                    r.read_exact(&mut body)?;
                }
                _ if head.chunked => {
                    Chunked::new(r).read_to_end(&mut body).map_err(chunk_error)?;
                }
                _ => {
                    r.read_to_end(&mut body)?;
                }
            }
            return Err(match serde_json::from_slice::<ApiError>(&body) {
                Ok(err) => ClientError::Api(Box::new(err)),
                Err(_) => {
                    protocol(&format!("status {} to {method} {path}: {}", head.status, String::from_utf8_lossy(&body)))
                }
            });
        }
        Ok(if head.chunked {
            Box::new(BufReader::new(Chunked::new(r)))
        } else if let Some(n) = head.length {
            Box::new(r.take(n as u64))
        } else {
            Box::new(r)
        })
    }

    /// `GET /v1/images`.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, ClientError> {
        self.call::<(), _>("GET", routes::IMAGES, None)
    }

    /// `POST /v1/images`.
    pub fn install_image(&self, req: &ImageInstallRequest) -> Result<ImageRecord, ClientError> {
        self.call("POST", routes::IMAGES, Some(req))
    }

    /// `GET /v1/images/{uuid}`.
    pub fn get_image(&self, uuid: &str) -> Result<ImageRecord, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::IMAGE, uuid), None)
    }

    /// `POST /v1/vms/{uuid}/create-image`.
    pub fn create_image(&self, vm: &str, req: &ImageCreateRequest) -> Result<ImageCreated, ClientError> {
        self.call("POST", &with_uuid(routes::VM_CREATE_IMAGE, vm), Some(req))
    }

    /// `DELETE /v1/images/{uuid}`.
    pub fn delete_image(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call::<(), _>("DELETE", &with_uuid(routes::IMAGE, uuid), None)
    }

    /// `GET /v1/vms/{uuid}/snapshots`: newest first.
    pub fn list_snapshots(&self, uuid: &str) -> Result<Vec<Snapshot>, ClientError> {
        self.call::<(), _>("GET", &with_uuid(routes::VM_SNAPSHOTS, uuid), None)
    }

    /// `POST /v1/vms/{uuid}/snapshots`.
    pub fn create_snapshot(&self, uuid: &str, name: &str) -> Result<Done, ClientError> {
        let req = SnapshotRequest { name: name.to_string() };
        self.call("POST", &with_uuid(routes::VM_SNAPSHOTS, uuid), Some(&req))
    }

    /// `POST /v1/vms/{uuid}/snapshots/{name}/rollback`.
    pub fn rollback_snapshot(&self, uuid: &str, name: &str) -> Result<Done, ClientError> {
        let path = routes::with_name(&with_uuid(routes::VM_SNAPSHOT_ROLLBACK, uuid), &encode_segment(name));
        self.call::<(), _>("POST", &path, None)
    }

    /// `DELETE /v1/vms/{uuid}/snapshots/{name}`.
    pub fn delete_snapshot(&self, uuid: &str, name: &str) -> Result<Done, ClientError> {
        let path = routes::with_name(&with_uuid(routes::VM_SNAPSHOT, uuid), &encode_segment(name));
        self.call::<(), _>("DELETE", &path, None)
    }
    /// `GET /v1/sources`.
    pub fn list_sources(&self) -> Result<Vec<ImageSource>, ClientError> {
        self.call::<(), _>("GET", routes::SOURCES, None)
    }

    /// `POST /v1/sources`.
    pub fn add_source(&self, req: &SourceAddRequest) -> Result<SourceAdded, ClientError> {
        self.call("POST", routes::SOURCES, Some(req))
    }

    /// `DELETE /v1/sources?url=<url>`.
    pub fn delete_source(&self, url: &str) -> Result<SourcesDeleted, ClientError> {
        self.call::<(), _>("DELETE", &format!("{}?url={}", routes::SOURCES, encode_query(url)), None)
    }

    /// `PUT /v1/sources`.
    pub fn replace_sources(&self, req: &SourcesReplaceRequest) -> Result<SourcesChanged, ClientError> {
        self.call("PUT", routes::SOURCES, Some(req))
    }

    /// `GET /v1/sources/check`.
    pub fn check_sources(&self) -> Result<Vec<SourceCheck>, ClientError> {
        self.call::<(), _>("GET", routes::SOURCES_CHECK, None)
    }

    /// `GET /v1/sources/images`.
    pub fn available_images(&self) -> Result<AvailableImages, ClientError> {
        self.call::<(), _>("GET", routes::SOURCES_IMAGES, None)
    }

    /// `GET /v1/sources/images/{image}`: `image` is a uuid or `name[@version]`.
    pub fn available_image(&self, image: &str) -> Result<AvailableImage, ClientError> {
        self.call::<(), _>("GET", &routes::SOURCES_IMAGE.replace("{image}", &encode(image)), None)
    }

    /// `POST /v1/images/import`: hands each message and progress event to
    /// `on_event` as it arrives and returns the image installed, or the
    /// import's error as [`ClientError::Api`].
    pub fn import_image(
        &self,
        req: &ImageImportRequest,
        mut on_event: impl FnMut(&ImportEvent),
    ) -> Result<ImageRecord, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut r = self.open_stream("POST", routes::IMAGES_IMPORT, Some(&body))?;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).map_err(chunk_error)? == 0 {
                return Err(protocol("the import's answer ended before it said how the import ended"));
            }
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let ev: ImportEvent =
                serde_json::from_str(text).map_err(|e| protocol(&format!("import event {text:?}: {e}")))?;
            match ev {
                ImportEvent::Done { image } => return Ok(image),
                ImportEvent::Error { error } => return Err(ClientError::Api(Box::new(error))),
                other => on_event(&other),
            }
        }
    }

    /// `POST /v1/images/update`.
    pub fn update_images(&self, req: &ImageUpdateRequest) -> Result<ImageUpdateResult, ClientError> {
        self.call("POST", routes::IMAGES_UPDATE, Some(req))
    }
    /// `POST /v1/images/pull`.
    pub fn pull_image(&self, req: &ImagePullRequest) -> Result<ImagePulled, ClientError> {
        self.call("POST", routes::IMAGES_PULL, Some(req))
    }

    /// `GET /v1/vms/{uuid}/send`: writes the VM's send stream to `out` as
    /// it comes (incremental from snapshot `base` when given), without an
    /// `E` frame the daemon may end it with; an error when the daemon
    /// failed (its message) or the stream did not come whole. Returns the
    /// bytes written. The client's timeout does not apply.
    pub fn send_vm(&self, uuid: &str, base: Option<&str>, out: &mut dyn Write) -> Result<u64, ClientError> {
        let mut path = with_uuid(routes::VM_SEND, uuid);
        if let Some(b) = base {
            path.push_str(&format!("?base={}", encode_query(b)));
        }
        let stream = self.send("GET", &path, None)?;
        stream.set_read_timeout(None)?;
        let mut r = BufReader::new(stream);
        let head = read_head(&mut r)?;
        if !(200..300).contains(&head.status) {
            return Err(error_body(&mut r, &head, "GET", &path));
        }
        let mut body: Box<dyn Read> = if head.chunked { Box::new(Chunked::new(r)) } else { Box::new(r) };
        let mut scanner = crate::stream::Scanner::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut pass = Vec::with_capacity(buf.len() + 64);
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(chunk_error(e)),
            };
            pass.clear();
            scanner.feed(&buf[..n], &mut pass).map_err(|e| protocol(&e))?;
            out.write_all(&pass)?;
            total += pass.len() as u64;
        }
        out.flush()?;
        if let Some(message) = scanner.error() {
            return Err(ClientError::Api(Box::new(ApiError::internal(message))));
        }
        if !scanner.complete() {
            return Err(protocol("the send stream ended before its end (zonevisord stopped sending)"));
        }
        Ok(total)
    }

    /// `POST /v1/vms/receive`: streams `input` (a send stream) to the
    /// daemon as a chunked body, never holding more than a chunk, and
    /// returns the received VM. The client's timeout does not apply.
    pub fn receive_vm(&self, input: &mut dyn Read) -> Result<Changed, ClientError> {
        let path = routes::VMS_RECEIVE;
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: zonevisord\r\nConnection: close\r\nAccept: application/json\r\n\
             Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        stream.write_all(head.as_bytes())?;
        let mut buf = vec![0u8; 1 << 20];
        // The daemon may answer (an error) before it has read everything:
        // then writing fails, and its answer says why.
        let sent: Result<(), std::io::Error> = (|| {
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                stream.write_all(format!("{n:x}\r\n").as_bytes())?;
                stream.write_all(&buf[..n])?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")
        })();
        let answer = read_response(BufReader::new(&stream));
        let resp = match (answer, sent) {
            (Ok(resp), _) => resp,
            (Err(_), Err(e)) => return Err(ClientError::Io(e)),
            (Err(e), Ok(())) => return Err(e),
        };
        if (200..300).contains(&resp.status) {
            serde_json::from_slice(&resp.body).map_err(|e| protocol(&format!("{e} in answer to POST {path}")))
        } else {
            Err(match serde_json::from_slice::<ApiError>(&resp.body) {
                Ok(err) => ClientError::Api(Box::new(err)),
                Err(_) => {
                    protocol(&format!("status {} to POST {path}: {}", resp.status, String::from_utf8_lossy(&resp.body)))
                }
            })
        }
    }
}

/// The error an answer's body holds (after its head).
fn error_body<R: BufRead>(r: &mut R, head: &Head, method: &str, path: &str) -> ClientError {
    let mut body = Vec::new();
    let read = if head.chunked {
        Chunked::new(r).read_to_end(&mut body).map(drop)
    } else if let Some(n) = head.length {
        body.resize(n, 0);
        r.read_exact(&mut body)
    } else {
        r.read_to_end(&mut body).map(drop)
    };
    if let Err(e) = read {
        return chunk_error(e);
    }
    match serde_json::from_slice::<ApiError>(&body) {
        Ok(err) => ClientError::Api(Box::new(err)),
        Err(_) => protocol(&format!("status {} to {method} {path}: {}", head.status, String::from_utf8_lossy(&body))),
    }
}

/// Percent-encodes a path segment (a snapshot's name may hold `%`; any
/// `/` stays inside the segment).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a query value.
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn protocol(msg: &str) -> ClientError {
    ClientError::Protocol(msg.to_string())
}

/// The status line and framing headers of an HTTP/1.1 response.
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
}

fn read_head<R: BufRead>(r: &mut R) -> Result<Head, ClientError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| protocol(&format!("status line {line:?}")))?;
    let mut head = Head { status, length: None, chunked: false };
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(protocol("connection closed in headers"));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                head.length = Some(value.parse().map_err(|_| protocol("content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                head.chunked = true;
            }
        }
    }
    Ok(head)
}

/// Reads an HTTP/1.1 response: status line, headers, then a body framed by
/// `Content-Length`, chunked encoding, or the end of the connection.
fn read_response<R: BufRead>(mut r: R) -> Result<Response, ClientError> {
    let head = read_head(&mut r)?;
    let mut body = Vec::new();
    if head.chunked {
        Chunked::new(r).read_to_end(&mut body).map_err(chunk_error)?;
    } else if let Some(n) = head.length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { status: head.status, body })
}

fn chunk_error(e: std::io::Error) -> ClientError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        protocol(&e.to_string())
    } else {
        ClientError::Io(e)
    }
}

/// A chunked body as a byte stream, de-chunked as it arrives: reads return
/// what one chunk holds without waiting for the next, so a stream of events
/// is seen as soon as the daemon sends each one. The end is the last chunk.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked { inner, left: 0, done: false }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        while self.left == 0 {
            let mut line = String::new();
            if self.inner.read_line(&mut line)? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed inside a chunked body"));
            }
            let size_hex = line.trim().split(';').next().unwrap_or("");
            if size_hex.is_empty() {
                // The CRLF that ends the previous chunk's data.
                continue;
            }
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| Error::new(ErrorKind::InvalidData, format!("chunk size {size_hex:?}")))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if self.inner.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let n = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..n])?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed inside a chunk"));
        }
        self.left -= n;
        Ok(n)
    }
}

/// Reads newline-delimited JSON events from a body and hands each to
/// `on_event` until it returns `false` or the body ends.
fn read_events<R: BufRead>(mut r: R, on_event: &mut dyn FnMut(Event) -> bool) -> Result<(), ClientError> {
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // The daemon went away mid-stream (it is shutting down): the stream ends.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(chunk_error(e)),
        }
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let ev: Event = serde_json::from_str(text).map_err(|e| protocol(&format!("event {text:?}: {e}")))?;
        if !on_event(ev) {
            return Ok(());
        }
    }
}

/// `s` as one URL path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_content_length_and_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nabcdEXTRA";
        let r = read_response(&raw[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcd"[..]));
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = read_response(&raw[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        assert!(read_response(&b"garbage\r\n"[..]).is_err());
    }

    #[test]
    fn chunked_bodies_are_read_as_they_come() {
        // Chunks that split lines, an extension, and a trailer.
        let line1 = "{\"type\":\"ready\",\"timestamp\":\"2026-11-21T09:00:00.000Z\"}\n";
        let line2 = "{\"type\":\"create\",\"timestamp\":\"t\",\"uuid\":\"u\"}\n";
        let (a, b) = line1.split_at(5);
        let raw = format!(
            "{:x}\r\n{a}\r\n{:x};x=y\r\n{b}\r\n{:x}\r\n{line2}\r\n0\r\nX: y\r\n\r\n",
            a.len(),
            b.len(),
            line2.len()
        );
        let mut seen = Vec::new();
        read_events(BufReader::new(Chunked::new(raw.as_bytes())), &mut |e| {
            seen.push(e);
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].event_type, EventType::Ready);
        assert_eq!(seen[0].timestamp, "2026-11-21T09:00:00.000Z");
        assert_eq!((seen[1].event_type, seen[1].uuid.as_deref()), (EventType::Create, Some("u")));

        // A callback can stop the stream early; a stream the daemon cuts short ends cleanly.
        let raw = format!("{:x}\r\n{line1}{line2}\r\n", line1.len() + line2.len());
        let mut n = 0;
        read_events(BufReader::new(Chunked::new(raw.as_bytes())), &mut |_| {
            n += 1;
            false
        })
        .unwrap();
        assert_eq!(n, 1);
        let cut = format!("{:x}\r\n{line1}", line1.len() + 40);
        let mut n = 0;
        read_events(BufReader::new(Chunked::new(cut.as_bytes())), &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 1);
        let mut bad = Chunked::new(&b"zz\r\n"[..]);
        assert_eq!(bad.read(&mut [0; 4]).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("uuid,alias"), "uuid,alias");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }

    #[test]
    fn unreachable_socket_says_where() {
        let err = Client::new("/nonexistent/zonevisord.sock").ping().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/zonevisord.sock"), "{err}");
    }
}
