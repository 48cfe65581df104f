//! zonevisord as an image source: its installed images served read-only
//! over IMGAPI's HTTP interface (`zonevisord --imgapi-listen ADDR`, off
//! unless asked), so that another host's `imgadm import` takes them.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ping` | `{"ping": "pong", "imgapi": true, "version": ...}` |
//! | `GET /images` | the active images' manifests; filters `name`, `version`, `os`, `type`, `state` (`all` for any), `owner`, `uuid`; `~` before a value matches a substring |
//! | `GET /images/<uuid>` | one manifest (its file made first, so its `files` entry is there), or 404 `ResourceNotFound` |
//! | `GET /images/<uuid>/file` | the image's file; `Range: bytes=N-[M]` answered with 206, so an interrupted download resumes |
//!
//! The file is made from the installed dataset the first time a host asks
//! for it or for the image's manifest (`GET /images` lists the `files` of
//! those made) ([`crate::imgfile`], zstd), kept in the pool's `imgapi-files`
//! dataset, and described by the served manifest's `files` entry (an
//! installed image does not keep the file it came from; an image made
//! with `imgadm create -O` never had one). An image with an `origin`
//! is served as the difference from its origin. Making a file is once per
//! image at a time; later requests read the kept file.
//!
//! The listener is TCP and unauthenticated: it serves exactly what
//! `imgadm list` shows, reads nothing else, and takes no writes. Its
//! connections have the API socket's bounds on heads and stalled writes,
//! and at most [`MAX_CONNECTIONS`] are served at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use zonevisor_api::{ApiError, ImageUuid};

use crate::imgfile::{self, Compression, FileDigest};
use crate::Daemon;

/// The pool dataset keeping served files.
pub(crate) const FILES_DATASET: &str = "imgapi-files";
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How served files are compressed.
const SERVED: Compression = Compression::Zstd;

/// Files being made, one lock per image.
#[derive(Default)]
pub(crate) struct Making {
    locks: Mutex<HashMap<ImageUuid, Arc<Mutex<()>>>>,
}

/// An image's served file and its `files` entry.
struct Served {
    path: PathBuf,
    digest: FileDigest,
}

/// IMGAPI's error body.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({"code": code, "message": message}))).into_response()
}

fn json_response(v: &Value) -> Response {
    axum::Json(v.clone()).into_response()
}

impl Daemon {
    /// The manifest a source serves for an installed image: its `files`
    /// entry the served file's, once made.
    fn served_manifest(&self, uuid: ImageUuid, manifest: &Value) -> Value {
        let mut m = manifest.clone();
        if let Some(d) = self.served_digest(uuid) {
            m["files"] = json!([{"sha1": d.sha1, "size": d.size, "compression": SERVED.name()}]);
        }
        m
    }

    /// The digest of an image's served file, when it has been made.
    fn served_digest(&self, uuid: ImageUuid) -> Option<FileDigest> {
        let meta = self.pool.dataset_path(FILES_DATASET).join(format!("{uuid}.json"));
        let v: Value = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
        Some(FileDigest { sha1: v["sha1"].as_str()?.to_string(), size: v["size"].as_u64()? })
    }

    /// The served file of installed image `uuid`, made now if it was not.
    fn served_file(&self, uuid: ImageUuid) -> Result<Served, ApiError> {
        let row = match self.store.get_image(uuid)? {
            Some(row) if row.phase == "ready" => row,
            _ => return Err(ApiError::not_found(format!("image {uuid} was not found"))),
        };
        let lock = {
            let mut locks = self.imgapi_making.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(uuid).or_default().clone()
        };
        let _made = lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.pool.exists(FILES_DATASET) {
            self.pool.create(FILES_DATASET).map_err(|e| self.pool_step_error("create the served files' dataset", e))?;
        }
        let dir = self.pool.dataset_path(FILES_DATASET);
        let path = dir.join(format!("{uuid}.file"));
        if let (Some(digest), true) = (self.served_digest(uuid), path.is_file()) {
            return Ok(Served { path, digest });
        }
        let ds = self.pool.dataset_path(&uuid.to_string());
        let tmp = dir.join(format!(".{uuid}.file.partial"));
        let made = (|| -> std::io::Result<FileDigest> {
            let out = std::fs::File::create(&tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
            let digest = if row.manifest.get("type").and_then(Value::as_str) == Some("zvol") {
                let disk = std::fs::File::open(ds.join(crate::images::IMAGE_VOLUME))?;
                imgfile::write_disk(&disk, &mut w, SERVED)?
            } else {
                let origin = row
                    .manifest
                    .get("origin")
                    .and_then(Value::as_str)
                    .map(|o| self.pool.dataset_path(o).join("root"))
                    .filter(|p| p.is_dir());
                imgfile::write_tree(&ds.join("root"), origin.as_deref(), &mut w, SERVED)?.0
            };
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            let meta = json!({"sha1": digest.sha1, "size": digest.size, "compression": SERVED.name()});
            std::fs::write(dir.join(format!("{uuid}.json")), meta.to_string())?;
            Ok(digest)
        })();
        match made {
            Ok(digest) => {
                tracing::info!(image = %uuid, bytes = digest.size, "made the served file of an image");
                Ok(Served { path, digest })
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(crate::images::step_error(&format!("make the file of image {uuid}"), e))
            }
        }
    }

    /// Forgets image `uuid`'s served file (the image is gone).
    pub(crate) fn drop_served_file(&self, uuid: ImageUuid) {
        let dir = self.pool.dataset_path(FILES_DATASET);
        for f in [format!("{uuid}.file"), format!("{uuid}.json")] {
            let _ = std::fs::remove_file(dir.join(f));
        }
    }

    /// `GET /images`: the manifests matching `query`.
    fn source_list(&self, query: &[(String, String)]) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let state_given = query.iter().any(|(k, _)| k == "state");
        for (uuid, row) in self.store.list_images()? {
            if row.phase != "ready" {
                continue;
            }
            let m = &row.manifest;
            let matches = query.iter().all(|(k, want)| {
                let have = match m.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                match (k.as_str(), want.strip_prefix('~')) {
                    ("state", _) if want == "all" => true,
                    ("state", _) if have.is_empty() => want == "active",
                    (_, Some(sub)) => have.contains(sub),
                    (_, None) => have == *want,
                }
            });
            let active = state_given || m.get("state").and_then(Value::as_str).unwrap_or("active") == "active";
            if matches && active {
                out.push(self.served_manifest(uuid, m));
            }
        }
        out.sort_by(|a, b| {
            let key = |v: &Value| (v["published_at"].as_str().unwrap_or("").to_string(), v["name"].to_string());
            key(a).cmp(&key(b))
        });
        Ok(out)
    }
}

/// The filters of `query` that filter (others IMGAPI takes, like
/// `account` or `limit`, are accepted and ignored).
fn filters(query: Option<&str>) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| matches!(k.as_str(), "name" | "version" | "os" | "type" | "state" | "owner" | "uuid"))
        .collect()
}

/// A `Range: bytes=N-[M]` header's span within `len` bytes: `Ok(None)`
/// without one, `Err(())` when it cannot be satisfied.
fn range(h: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return Ok(None) };
    // One range only; a list is answered whole.
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.saturating_sub(1)),
        (s, e) => (s.parse().map_err(|_| ())?, e.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))),
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// Streams `len` bytes of `file` from `start`.
fn file_body(mut file: std::fs::File, start: u64, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let want = (left as usize).min(buf.len());
            match file.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return; // The client went away.
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Body::from_stream(stream)
}

/// Answers one request.
async fn handle(d: Arc<Daemon>, req: hyper::Request<Incoming>) -> Response {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "BadRequest", "this image source is read-only".into());
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let query = filters(req.uri().query());
    let range_h = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let image = |s: &str| s.parse::<ImageUuid>().ok();
    match segments.as_slice() {
        ["ping"] => json_response(&json!({"ping": "pong", "imgapi": true, "version": env!("CARGO_PKG_VERSION")})),
        ["images"] => {
            let d2 = d.clone();
            match tokio::task::spawn_blocking(move || d2.source_list(&query)).await {
                Ok(Ok(list)) => json_response(&Value::Array(list)),
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.message),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
            }
        }
        ["images", id] => {
            let Some(uuid) = image(id) else {
                return error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("image {id} was not found"));
            };
            let d2 = d.clone();
            // The manifest names its file: made now if it was not yet.
            let got = tokio::task::spawn_blocking(move || {
                let record = d2.image_record(uuid)?;
                d2.served_file(uuid)?;
                Ok::<_, ApiError>(d2.served_manifest(uuid, &record.manifest))
            })
            .await;
            match got {
                Ok(Ok(m)) => json_response(&m),
                _ => error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("image {uuid} was not found")),
            }
        }
        ["images", id, "file"] => {
            let Some(uuid) = image(id) else {
                return error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("image {id} was not found"));
            };
            let d2 = d.clone();
            let served = match tokio::task::spawn_blocking(move || d2.served_file(uuid)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) if e.kind == zonevisor_api::ErrorKind::NotFound => {
                    return error(StatusCode::NOT_FOUND, "ResourceNotFound", e.message)
                }
                Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.message),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
            };
            let len = served.digest.size;
            let file = match std::fs::File::open(&served.path) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string()),
            };
            let (status, start, end) = match range(range_h.as_deref(), len) {
                Ok(None) => (StatusCode::OK, 0, len.saturating_sub(1)),
                Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
                Err(()) => {
                    return Response::builder()
                        .status(StatusCode::RANGE_NOT_SATISFIABLE)
                        .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                        .body(Body::empty())
                        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
                }
            };
            let count = if len == 0 { 0 } else { end - start + 1 };
            let mut b = Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, count)
                .header(header::ACCEPT_RANGES, "bytes");
            if status == StatusCode::PARTIAL_CONTENT {
                b = b.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            }
            let body = if req.method() == hyper::Method::HEAD { Body::empty() } else { file_body(file, start, count) };
            b.body(body).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        _ => error(StatusCode::NOT_FOUND, "ResourceNotFound", format!("{path} does not exist")),
    }
}

/// Serves the images on `addr` until the daemon stops.
pub(crate) async fn serve(d: Arc<Daemon>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving images (IMGAPI)");
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = permits.clone().acquire_owned().await?;
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an image source connection");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let d = d.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let d = d.clone();
                async move { Ok::<_, Infallible>(handle(d, req).await) }
            });
            let conn = crate::server::http1_builder()
                .serve_connection(TokioIo::new(crate::server::StallGuard::new(stream)), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "image source connection ended");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range(None, 100), Ok(None));
        assert_eq!(range(Some("bytes=10-"), 100), Ok(Some((10, 99))));
        assert_eq!(range(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
        assert_eq!(range(Some("bytes=90-200"), 100), Ok(Some((90, 99))));
        assert_eq!(range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(range(Some("bytes=20-10"), 100), Err(()));
        assert_eq!(range(Some("bytes=x-"), 100), Err(()));
        assert_eq!(range(Some("bytes=0-1,5-6"), 100), Ok(None), "a list is answered whole");
        assert_eq!(range(Some("items=0-1"), 100), Ok(None));
    }

    #[test]
    fn only_imgapi_filters_filter() {
        let f = filters(Some("name=~deb&limit=5&state=all&os=linux"));
        assert_eq!(
            f,
            [("name".to_string(), "~deb".to_string()), ("state".into(), "all".into()), ("os".into(), "linux".into())]
        );
    }
}
