//! A small blocking client for the daemon's API: HTTP/1.1 over a Unix
//! socket, one connection per request. The CLIs use it; it keeps them free
//! of an async runtime so they start in about a millisecond.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::routes::{self, with_uuid};
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
        read_response(BufReader::new(stream))
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
    pub fn create_vm(&self, payload: &Value) -> Result<VmObject, ClientError> {
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
    pub fn update_vm(&self, uuid: &str, payload: &Value) -> Result<VmObject, ClientError> {
        self.call("POST", &with_uuid(routes::VM_UPDATE, uuid), Some(payload))
    }

    /// `DELETE /v1/vms/{uuid}`.
    pub fn delete_vm(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call::<(), _>("DELETE", &with_uuid(routes::VM, uuid), None)
    }

    /// `POST /v1/vms/{uuid}/start`.
    pub fn start_vm(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call("POST", &with_uuid(routes::VM_START, uuid), Some(&serde_json::json!({})))
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

    /// `DELETE /v1/images/{uuid}`.
    pub fn delete_image(&self, uuid: &str) -> Result<Done, ClientError> {
        self.call::<(), _>("DELETE", &with_uuid(routes::IMAGE, uuid), None)
    }
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

/// Reads an HTTP/1.1 response: status line, headers, then a body framed by
/// `Content-Length`, chunked encoding, or the end of the connection.
fn read_response<R: BufRead>(mut r: R) -> Result<Response, ClientError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| protocol(&format!("status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
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
                length = Some(value.parse().map_err(|_| protocol("content-length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| protocol("chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { status, body })
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
