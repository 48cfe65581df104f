//! The HTTP API on the Unix socket: one HTTP/1.1 server (hyper) whose
//! every request is decoded by [`crate::request::decode`] and then run by
//! [`dispatch`], the daemon's blocking operations on the blocking pool; the
//! one place where an [`ApiError`] becomes an HTTP status is [`Answer`]
//! (and [`RequestError::status`] for requests that never decoded).
//!
//! A client cannot hold the server, a connection or a handler for long:
//!
//! | bound | value | why |
//! |---|---|---|
//! | request head (line and headers) | [`HEADER_TIMEOUT`], 10 s, from when the connection is accepted or its previous answer is done | hyper's `header_read_timeout`; a local client writes its head in one go, so 10 s is ample on a loaded host, and an idle keep-alive connection is closed after as long |
//! | request body | [`BODY_TIMEOUT`], 10 s for the whole body, and at most [`MAX_BODY`], 2 MiB (axum's default for `Bytes`, kept) | the CLIs write the body with the head; payloads and manifests are kilobytes. Too slow: 408, too large: 413, and the connection is closed |
//! | writing an answer | [`WRITE_STALL_TIMEOUT`], 60 s without progress | a client that stops reading (also a `vmadm events` client that stopped) cannot pin a connection; a stream that is read, however slowly or long, is not cut |
//! | connections | [`MAX_CONNECTIONS`], 256 at once | beyond that the listener waits (the kernel's backlog holds new clients) until one ends (a stalled one ends within the bounds above); the daemon's descriptors are kept for zones (a pidfd each) |
//!
//! `vmadm events` (`GET /v1/events`) is a long-lived streaming answer: only
//! the write bound applies to it. A panic while a request is decoded or
//! handled answers 500 (the handler's locks are poison-tolerant, and a
//! stop in progress puts its row back: `instances.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zonevisor_api::{
    ApiError, CpuInfo, DiskIoInfo, Done, InstanceUuid, MemoryInfo, PidsInfo, Ping, PressureInfo, PsiInfo, PsiLine,
    VmInfo, VmObject,
};
use zonevisor_zone::cgroup::{self, CgroupVersion, Stats};

use crate::request::{self, ApiRequest, RequestError};
use crate::Daemon;

/// The longest a client may take to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body taken.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// How long writing an answer may make no progress before the connection is closed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;

/// A handler's answer: JSON on success, the error's status and body otherwise.
struct Answer<T>(Result<T, ApiError>);

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(v) => Json(v).into_response(),
            Err(e) => {
                let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, Json(e)).into_response()
            }
        }
    }
}

/// The answer to a request that did not decode: its status, an
/// [`ApiError`] body, `Allow` for a wrong method, and `Connection: close`
/// when the body was not read to its end.
fn rejected(e: &RequestError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = (status, Json(e.to_api_error())).into_response();
    match e {
        RequestError::Method { allow, .. } => {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        RequestError::TooLarge { .. } | RequestError::Timeout { .. } | RequestError::Body(_) => {
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        _ => {}
    }
    resp
}

/// Reads a request's body within [`BODY_TIMEOUT`] and [`MAX_BODY`] (a
/// `Content-Length` above it is refused before reading).
async fn read_body(body: Incoming) -> Result<Bytes, RequestError> {
    use hyper::body::Body as _;
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(RequestError::TooLarge { limit: MAX_BODY });
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(RequestError::Timeout { secs: BODY_TIMEOUT.as_secs() }),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(RequestError::TooLarge { limit: MAX_BODY })
        }
        Ok(Err(e)) => Err(RequestError::Body(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// What a panic carried, as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// Answers one request: reads its body, decodes it and hands the
/// [`ApiRequest`] to `run` (the daemon's [`dispatch`], or the fuzz
/// targets' stand-in). A panic on the way is a 500, not a lost connection.
pub(crate) async fn answer<F, Fut>(req: hyper::Request<Incoming>, run: F) -> Response
where
    F: FnOnce(ApiRequest) -> Fut,
    Fut: Future<Output = Response>,
{
    let handled = async move {
        let (parts, body) = req.into_parts();
        // A stream's upload (vmadm receive) is its handler's to read, as it comes.
        if request::streams_body(parts.method.as_str(), parts.uri.path()) {
            return match request::decode(parts.method.as_str(), parts.uri.path(), parts.uri.query(), &[]) {
                Ok(ApiRequest::ReceiveVm(upload)) => {
                    upload.attach(body);
                    let answered = run(ApiRequest::ReceiveVm(upload.clone())).await;
                    // What the handler left unread goes now, so the
                    // connection can end.
                    drop(upload.take());
                    answered
                }
                Ok(other) => run(other).await,
                Err(e) => rejected(&e),
            };
        }
        let bytes = match read_body(body).await {
            Ok(b) => b,
            Err(e) => return rejected(&e),
        };
        match request::decode(parts.method.as_str(), parts.uri.path(), parts.uri.query(), &bytes) {
            Ok(r) => run(r).await,
            Err(e) => rejected(&e),
        }
    };
    match AssertUnwindSafe(handled).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let msg = panic_message(panic.as_ref());
            tracing::error!(panic = msg, "a request handler panicked");
            Answer::<Done>(Err(ApiError::internal(format!("the request handler panicked: {msg}")))).into_response()
        }
    }
}

/// The HTTP/1.1 settings of every connection (the daemon's and the fuzz
/// targets'): hyper's timer, so that [`HEADER_TIMEOUT`] applies, and
/// half-closed connections answered (a client may shut down its writing
/// side once its request is sent, as `nc -U` does; the answer still comes).
pub(crate) fn http1_builder() -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).half_close(true);
    b
}

/// A connection whose writes may not stall: a write or flush that makes
/// no progress for [`WRITE_STALL_TIMEOUT`] fails (`TimedOut`), which ends
/// the connection. Reads pass through untouched: hyper bounds the head,
/// [`read_body`] the body, and an event stream's client sends nothing for
/// hours.
pub(crate) struct StallGuard<T> {
    inner: T,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    pub(crate) fn new(inner: T) -> Self {
        StallGuard { inner, stalled: None }
    }

    /// A write that could not proceed: pending until the bound, then an error.
    fn stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", WRITE_STALL_TIMEOUT.as_secs()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, r)
    }
}

/// The service every connection runs: [`answer`] with `run`.
#[derive(Clone)]
struct ApiService<F> {
    run: F,
}

impl<F, Fut> hyper::service::Service<hyper::Request<Incoming>> for ApiService<F>
where
    F: Fn(ApiRequest) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let run = self.run.clone();
        Box::pin(async move { Ok(answer(req, run).await) })
    }
}

/// Serves one connection until it ends, answering with `run`.
fn connection<I, F, Fut>(io: I, run: F) -> http1::Connection<TokioIo<StallGuard<I>>, ApiService<F>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(ApiRequest) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    http1_builder().serve_connection(TokioIo::new(StallGuard::new(io)), ApiService { run })
}

type D = Arc<Daemon>;

/// Runs `f` on the blocking pool; a panic in it is a 500.
async fn blocking<T: Send + 'static>(
    d: D,
    f: impl FnOnce(&Daemon) -> Result<T, ApiError> + Send + 'static,
) -> Answer<T> {
    Answer(match tokio::task::spawn_blocking(move || f(&d)).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("the operation panicked: {e}"))),
    })
}

fn done(message: String) -> Done {
    Done { message }
}

/// Runs a decoded request against the daemon.
async fn dispatch(d: D, req: ApiRequest) -> Response {
    match req {
        ApiRequest::Ping => Answer(Ok(Ping {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            root: d.root.display().to_string(),
        }))
        .into_response(),
        ApiRequest::Sysinfo => blocking(d, |d| Ok(d.sysinfo())).await.into_response(),
        ApiRequest::ListVms { fields } => blocking(d, move |d| d.list_vms(fields.as_deref())).await.into_response(),
        ApiRequest::CreateVm { payload } => blocking(d, move |d| d.create_vm(&payload)).await.into_response(),
        ApiRequest::Validate(r) => blocking(d, move |d| d.validate(&r).map(done)).await.into_response(),
        ApiRequest::GetVm(uuid) => blocking(d, move |d| d.get_vm(&uuid.to_string())).await.into_response(),
        ApiRequest::DeleteVm(uuid) => {
            blocking(d, move |d| d.delete_vm(&uuid.to_string()).map(done)).await.into_response()
        }
        ApiRequest::UpdateVm { uuid, payload } => {
            blocking(d, move |d| d.update_vm(&uuid.to_string(), &payload)).await.into_response()
        }
        ApiRequest::StartVm { uuid, options } => {
            blocking(d, move |d| d.start_vm(&uuid.to_string(), &options).map(done)).await.into_response()
        }
        ApiRequest::SysrqVm { uuid, request } => {
            blocking(d, move |d| d.sysrq_vm(&uuid.to_string(), &request).map(done)).await.into_response()
        }
        ApiRequest::StopVm { uuid, force, timeout_secs } => {
            blocking(d, move |d| d.stop_vm(&uuid.to_string(), force, timeout_secs).map(done)).await.into_response()
        }
        ApiRequest::RebootVm { uuid, force } => {
            blocking(d, move |d| d.reboot_vm(&uuid.to_string(), force).map(done)).await.into_response()
        }
        ApiRequest::KillVm { uuid, signal } => {
            blocking(d, move |d| d.kill_vm(&uuid.to_string(), signal).map(done)).await.into_response()
        }
        ApiRequest::VmInfo(uuid) => blocking(d, move |d| d.vm_info(&uuid.to_string())).await.into_response(),
        ApiRequest::VmConsole(uuid) => blocking(d, move |d| d.console_info(&uuid.to_string())).await.into_response(),
        ApiRequest::Events { uuid, full } => events(&d, uuid, full),
        ApiRequest::ListImages => blocking(d, |d| d.list_images()).await.into_response(),
        ApiRequest::ListNicTags => blocking(d, |d| d.list_nic_tags()).await.into_response(),
        ApiRequest::AddNicTag(r) => blocking(d, move |d| d.add_nic_tag(&r)).await.into_response(),
        ApiRequest::GetNicTag(name) => blocking(d, move |d| d.get_nic_tag(&name)).await.into_response(),
        ApiRequest::UpdateNicTag(name, r) => blocking(d, move |d| d.update_nic_tag(&name, &r)).await.into_response(),
        ApiRequest::DeleteNicTag { name, force } => {
            blocking(d, move |d| d.delete_nic_tag(&name, force).map(|()| done(format!("Deleted nic tag {name}"))))
                .await
                .into_response()
        }
        ApiRequest::NicTagVms(name) => blocking(d, move |d| d.nic_tag_vms(&name)).await.into_response(),
        ApiRequest::ListFwRules => blocking(d, |d| d.list_fw_rules()).await.into_response(),
        ApiRequest::AddFwRules(r) => blocking(d, move |d| d.add_fw_rules(&r)).await.into_response(),
        ApiRequest::GetFwRule(u) => blocking(d, move |d| d.get_fw_rule(&u)).await.into_response(),
        ApiRequest::UpdateFwRule(u, r) => blocking(d, move |d| d.update_fw_rule(&u, &r)).await.into_response(),
        ApiRequest::DeleteFwRule(u) => {
            blocking(d, move |d| d.delete_fw_rule(&u).map(|()| done(format!("Deleted rule {u}")))).await.into_response()
        }
        ApiRequest::ChangeFwRules(r) => blocking(d, move |d| d.change_fw_rules(&r)).await.into_response(),
        ApiRequest::FwRuleVms(u) => blocking(d, move |d| d.fw_rule_vms(&u)).await.into_response(),
        ApiRequest::FwVm { uuid, what: "rules" } => {
            blocking(d, move |d| d.fw_vm_rules(&uuid.to_string())).await.into_response()
        }
        ApiRequest::FwVm { uuid, what: "status" } => {
            blocking(d, move |d| d.fw_vm_status(&uuid.to_string())).await.into_response()
        }
        ApiRequest::FwVm { uuid, .. } => blocking(d, move |d| d.fw_vm_stats(&uuid.to_string())).await.into_response(),
        ApiRequest::InstallImage(r) => {
            blocking(d, move |d| d.install_image(&r.manifest, &r.file)).await.into_response()
        }
        ApiRequest::CreateImage { uuid, request } => {
            blocking(d, move |d| d.create_image(&uuid.to_string(), &request)).await.into_response()
        }
        ApiRequest::GetImage(uuid) => blocking(d, move |d| d.image_record(uuid)).await.into_response(),
        ApiRequest::DeleteImage(uuid) => {
            blocking(d, move |d| d.delete_image(uuid).map(|()| done(format!("Deleted image {uuid}"))))
                .await
                .into_response()
        }
        ApiRequest::ListSnapshots(uuid) => {
            blocking(d, move |d| d.list_snapshots(&uuid.to_string())).await.into_response()
        }
        ApiRequest::CreateSnapshot { uuid, name } => {
            blocking(d, move |d| d.create_snapshot(&uuid.to_string(), &name).map(done)).await.into_response()
        }
        ApiRequest::RollbackSnapshot { uuid, name } => {
            blocking(d, move |d| d.rollback_snapshot(&uuid.to_string(), &name).map(done)).await.into_response()
        }
        ApiRequest::DeleteSnapshot { uuid, name } => {
            blocking(d, move |d| d.delete_snapshot(&uuid.to_string(), &name).map(done)).await.into_response()
        }
        ApiRequest::ListSources => blocking(d, |d| d.list_sources()).await.into_response(),
        ApiRequest::AddSource(r) => blocking(d, move |d| d.add_source(&r)).await.into_response(),
        ApiRequest::ReplaceSources(r) => blocking(d, move |d| d.replace_sources(&r)).await.into_response(),
        ApiRequest::DeleteSource(url) => blocking(d, move |d| d.delete_source(&url)).await.into_response(),
        ApiRequest::CheckSources => blocking(d, |d| d.check_sources()).await.into_response(),
        ApiRequest::AvailableImages => blocking(d, |d| d.available_images()).await.into_response(),
        ApiRequest::AvailableImage(id) => blocking(d, move |d| d.available_image(&id)).await.into_response(),
        ApiRequest::ImportImage(r) => import(d, r),
        ApiRequest::UpdateImages(r) => blocking(d, move |d| d.update_images(&r)).await.into_response(),
        ApiRequest::PullImage(r) => blocking(d, move |d| d.pull_image(&r)).await.into_response(),
        ApiRequest::SendVm { uuid, base } => send(d, uuid, base).await,
        ApiRequest::ReceiveVm(upload) => receive(d, upload).await,
    }
}

/// `POST /v1/images/import`: the import runs on the blocking pool and its
/// [`ImportEvent`]s are the answer's lines as they happen, the last one
/// `done` or `error`. A client that goes away does not stop the import
/// (what it downloads and installs is kept).
fn import(d: D, req: zonevisor_api::ImageImportRequest) -> Response {
    use zonevisor_api::ImportEvent;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ImportEvent>();
    tokio::task::spawn_blocking(move || {
        let emit = |ev: ImportEvent| {
            let _ = tx.send(ev);
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| d.import_image(&req, &emit)));
        let last = match result {
            Ok(Ok(image)) => ImportEvent::Done { image },
            Ok(Err(error)) => {
                tracing::warn!(image = %req.image, error = %error.message, "import failed");
                ImportEvent::Error { error }
            }
            Err(panic) => {
                let msg = panic_message(panic.as_ref()).to_string();
                tracing::error!(panic = %msg, "an import panicked");
                ImportEvent::Error { error: ApiError::internal(format!("the import panicked: {msg}")) }
            }
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let ev = rx.recv().await?;
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(line)), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// How long a `vmadm receive` client may send nothing before it is cut off.
pub const RECEIVE_STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// What the send stream is handed over in (bytes gathered on the blocking side).
const SEND_CHUNK: usize = 256 * 1024;

/// `GET /v1/vms/{uuid}/send`: an error before the stream starts is an
/// ordinary answer; then the stream is a chunked body fed from the
/// blocking pool, ending with an `E` frame if the send fails midway.
async fn send(d: D, uuid: InstanceUuid, base: Option<String>) -> Response {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::task::spawn_blocking(move || {
        let plan = match d.prepare_send(&uuid.to_string(), base.as_deref()) {
            Ok(plan) => {
                let _ = ready_tx.send(Ok(()));
                plan
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let mut pending: Vec<u8> = Vec::with_capacity(SEND_CHUNK);
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the client is gone");
        let mut out = |b: &[u8]| -> io::Result<()> {
            pending.extend_from_slice(b);
            if pending.len() >= SEND_CHUNK {
                let chunk = Bytes::from(std::mem::replace(&mut pending, Vec::with_capacity(SEND_CHUNK)));
                tx.blocking_send(chunk).map_err(|_| gone())?;
            }
            Ok(())
        };
        let sent = plan.run(&mut out);
        if !pending.is_empty() {
            let _ = tx.blocking_send(Bytes::from(pending));
        }
        match sent {
            Ok(bytes) => tracing::info!(vm = %uuid, bytes, "sent VM"),
            Err(e) => tracing::warn!(vm = %uuid, error = %e.message, "send failed"),
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<Bytes, io::Error>(b), rx))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from_stream(stream))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Ok(Err(e)) => Answer::<Done>(Err(e)).into_response(),
        Err(_) => Answer::<Done>(Err(ApiError::internal("the send panicked"))).into_response(),
    }
}

/// The upload's chunks, as the blocking receive reads them.
struct Uploaded {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl io::Read for Uploaded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// `POST /v1/vms/receive`: the body is read as it comes (bounded by
/// [`RECEIVE_STALL_TIMEOUT`] between chunks, not by [`MAX_BODY`]) and
/// handed to the blocking receive; its answer comes once it is done.
async fn receive(d: D, upload: request::Upload) -> Response {
    let Some(mut body) = upload.take() else {
        return Answer::<Done>(Err(ApiError::invalid("the send stream is missing"))).into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(8);
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout(RECEIVE_STALL_TIMEOUT, body.frame()) => f,
                // The receive is over (it failed early): the rest is not read.
                () = tx.closed() => break,
            };
            let next = match frame {
                Err(_) => Some(Err(format!("the client sent nothing for {} s", RECEIVE_STALL_TIMEOUT.as_secs()))),
                Ok(None) => None,
                Ok(Some(Err(e))) => Some(Err(format!("reading the request body: {e}"))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Some(Ok(data)),
                    Err(_) => continue,
                },
            };
            let Some(item) = next else { break };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let mut reader = Uploaded { rx, current: Bytes::new() };
    blocking(d, move |d| d.receive_vm(&mut reader)).await.into_response()
}

fn psi_line(l: cgroup::PsiLine) -> PsiLine {
    PsiLine { avg10: l.avg10, avg60: l.avg60, avg300: l.avg300, total_us: l.total_us }
}

fn pressure_info(p: &cgroup::Pressure) -> Option<PressureInfo> {
    let psi = |p: Option<cgroup::Psi>| p.map(|p| PsiInfo { some: psi_line(p.some), full: p.full.map(psi_line) });
    (!p.is_empty()).then(|| PressureInfo { cpu: psi(p.cpu), memory: psi(p.memory), io: psi(p.io) })
}

/// The `vmadm info` answer for a running zone: its VM object's state and
/// boot time, its init pid, and its cgroups' numbers. Pressure is the
/// zone's own where its v2 directory has PSI files (v2 hosts, and hybrid
/// hosts whose unified hierarchy has them), else the host's.
pub(crate) fn info_of(uuid: InstanceUuid, vm: &VmObject, pid: Option<i64>, stats: &Stats) -> VmInfo {
    let boot_timestamp = vm.get("boot_timestamp").and_then(Value::as_str).map(str::to_string);
    let uptime_secs = boot_timestamp
        .as_deref()
        .and_then(|b| humantime::parse_rfc3339_weak(b).ok())
        .and_then(|b| std::time::SystemTime::now().duration_since(b).ok())
        .map(|d| d.as_secs());
    let (pressure_source, pressure, host_pressure) = match pressure_info(&stats.pressure) {
        Some(p) => ("zone", Some(p), None),
        None => match pressure_info(&cgroup::host_pressure()) {
            Some(p) => ("host", None, Some(p)),
            None => ("none", None, None),
        },
    };
    VmInfo {
        uuid: uuid.to_string(),
        state: vm.get("state").and_then(Value::as_str).unwrap_or("running").to_string(),
        pid,
        boot_timestamp,
        uptime_secs,
        cgroup_version: match stats.version {
            Some(CgroupVersion::V2) => "v2",
            _ => "v1",
        }
        .to_string(),
        cpu: CpuInfo { usage_ns: stats.usage.cpu_ns },
        memory: MemoryInfo { current_bytes: stats.usage.memory_bytes, swap_bytes: stats.swap_bytes },
        pids: PidsInfo { current: stats.usage.pids },
        disk_io: stats.io.map(|io| DiskIoInfo {
            read_bytes: io.read_bytes,
            write_bytes: io.write_bytes,
            read_ops: io.read_ops,
            write_ops: io.write_ops,
        }),
        pressure_source: pressure_source.to_string(),
        pressure,
        host_pressure,
        guest: serde_json::Map::new(),
    }
}

/// One event as a line of the stream.
fn event_line(ev: &zonevisor_api::Event, full: bool) -> Bytes {
    let mut line = if full || ev.vm.is_none() {
        serde_json::to_vec(ev)
    } else {
        serde_json::to_vec(&zonevisor_api::Event { vm: None, ..ev.clone() })
    }
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// `GET /v1/events`: `{"type":"ready"}` once subscribed, then every event
/// (of one VM with `?uuid=`), one JSON object per line, until the client
/// goes away or the daemon shuts down. A client too slow to keep up is cut
/// off (its stream ends) rather than silently missing events.
fn events(d: &Daemon, only: Option<InstanceUuid>, full: bool) -> Response {
    let only = only.map(|u| u.to_string());
    let rx = d.events.subscribe();
    let closed = d.events.closed();
    let first = event_line(&crate::events::ready(), false);
    let state = (rx, closed, Some(first), only, full);
    let stream = futures_util::stream::unfold(state, |(mut rx, mut closed, first, only, full)| async move {
        if let Some(line) = first {
            return Some((Ok::<Bytes, std::io::Error>(line), (rx, closed, None, only, full)));
        }
        loop {
            let next = tokio::select! {
                ev = rx.recv() => ev,
                _ = closed.wait_for(|c| *c) => return None,
            };
            match next {
                Ok(ev) => {
                    if only.as_ref().is_some_and(|u| ev.uuid.as_ref() != Some(u)) {
                        continue;
                    }
                    let line = event_line(&ev, full);
                    return Some((Ok(line), (rx, closed, None, only, full)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an event subscriber fell behind; ending its stream");
                    return None;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Serves the API on `socket` until SIGTERM or SIGINT.
pub(crate) async fn serve(d: Arc<Daemon>, socket: PathBuf) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The root lock is held, so a socket file here is a stale one.
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "listening");
    let signals = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        tracing::info!("shutting down; zones keep running");
    };
    let mut shutdown = pin!(signals);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        // A free slot first: until then new clients wait in the listener's backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let d = d.clone();
        let conn = graceful.watch(connection(stream, move |r| dispatch(d.clone(), r)));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    // Open event streams would keep the graceful shutdown waiting forever.
    d.events.close();
    graceful.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// What the fuzz targets learn from one exchange ([`exchange`]).
#[derive(Debug)]
pub struct Exchange {
    /// Everything the server wrote back.
    pub response: Vec<u8>,
    /// The requests that decoded, in order.
    pub decoded: Vec<ApiRequest>,
    /// Whether the connection ended (the server closed it) in time.
    pub ended: bool,
}

/// Sends `raw` (a client's bytes, then end-of-file) to a connection served
/// exactly as the daemon serves its socket (the same hyper settings, body
/// bounds, decoding and panic handling), with the daemon replaced by an
/// answer that lists the decoded request. For the fuzz targets: no pool,
/// store or root is needed.
pub fn exchange(raw: &[u8]) -> Exchange {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
    });
    let decoded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = decoded.clone();
    let run = move |r: ApiRequest| {
        let seen = seen.clone();
        async move {
            let text = format!("{r:?}");
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(r);
            Answer::<Done>(Ok(Done { message: text })).into_response()
        }
    };
    let (response, ended) = rt.block_on(exchange_with(raw, run));
    let decoded = std::mem::take(&mut *decoded.lock().unwrap_or_else(|p| p.into_inner()));
    Exchange { response, decoded, ended }
}

/// [`exchange`] with any `run`: what the server wrote back, and whether
/// the connection ended in time.
async fn exchange_with<F, Fut>(raw: &[u8], run: F) -> (Vec<u8>, bool)
where
    F: Fn(ApiRequest) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut conn = tokio::spawn(connection(server, run));
    let (mut rd, mut wr) = tokio::io::split(client);
    let send = async {
        let _ = wr.write_all(raw).await;
        let _ = wr.shutdown().await;
    };
    let mut response = Vec::new();
    let talk = async {
        let _ = tokio::join!(send, rd.read_to_end(&mut response));
    };
    // Nothing in an exchange waits on a clock: the client's bytes are all
    // there, then end-of-file. A connection that does not end is a bug.
    let ended = tokio::time::timeout(Duration::from_secs(5), talk).await.is_ok()
        && tokio::time::timeout(Duration::from_secs(5), &mut conn).await.is_ok();
    if !ended {
        conn.abort();
    }
    (response, ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn text(e: &Exchange) -> String {
        String::from_utf8_lossy(&e.response).into_owned()
    }

    #[test]
    fn a_request_is_decoded_and_answered() {
        let e = exchange(b"GET /v1/ping HTTP/1.1\r\nHost: zonevisord\r\n\r\n");
        assert!(e.ended, "{e:?} {}", text(&e));
        assert!(text(&e).starts_with("HTTP/1.1 200 "), "{}", text(&e));
        assert_eq!(e.decoded, vec![ApiRequest::Ping]);
        let e = exchange(b"POST /v1/vms/x/stop HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        assert!(text(&e).starts_with("HTTP/1.1 400 ") && text(&e).contains("is not a UUID"), "{}", text(&e));
        let e = exchange(b"PUT /v1/vms HTTP/1.1\r\n\r\n");
        assert!(text(&e).starts_with("HTTP/1.1 405 ") && text(&e).contains("allow: GET, POST"), "{}", text(&e));
        let e = exchange(b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(text(&e).starts_with("HTTP/1.1 404 ") && text(&e).contains("NotFound"), "{}", text(&e));
        assert!(e.decoded.is_empty());
    }

    #[test]
    fn bodies_are_bounded() {
        let head = format!("POST /v1/vms HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        let e = exchange(head.as_bytes());
        assert!(text(&e).starts_with("HTTP/1.1 413 "), "{}", text(&e));
        assert!(text(&e).contains("connection: close"), "{}", text(&e));
        // Chunked: the limit counts what arrives.
        let mut raw = b"POST /v1/vms HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..(MAX_BODY / 65536 + 1) {
            raw.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
            raw.extend(std::iter::repeat_n(b' ', 65536));
            raw.extend_from_slice(b"\r\n");
        }
        let e = exchange(&raw);
        assert!(text(&e).starts_with("HTTP/1.1 413 "), "{}", &text(&e)[..100.min(e.response.len())]);
        // Half a body, then the client is gone.
        let e = exchange(b"POST /v1/vms HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}");
        assert!(e.ended && e.decoded.is_empty());
    }

    #[test]
    fn a_receive_body_is_streamed_to_its_handler_past_the_body_bounds() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A chunked body larger than MAX_BODY: the handler reads it all.
        let mut raw = b"POST /v1/vms/receive HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunks = MAX_BODY / 65536 + 3;
        for _ in 0..chunks {
            raw.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
            raw.extend(std::iter::repeat_n(b'x', 65536));
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let run = |r: ApiRequest| async move {
            let ApiRequest::ReceiveVm(upload) = r else { panic!("{r:?}") };
            let mut body = upload.take().expect("the body is attached");
            let mut n = 0;
            while let Some(Ok(frame)) = body.frame().await {
                n += frame.into_data().map_or(0, |d| d.len());
            }
            Answer::<Done>(Ok(done(format!("read {n}")))).into_response()
        };
        let (response, ended) = rt.block_on(exchange_with(&raw, run));
        let response = String::from_utf8_lossy(&response);
        assert!(ended, "{response}");
        assert!(response.contains(&format!("read {}", chunks * 65536)), "{response}");
        // A handler that answers without reading it all still ends the exchange.
        let e = exchange(&raw);
        assert!(e.ended && text(&e).starts_with("HTTP/1.1 200 "), "{}", text(&e));
        assert!(matches!(e.decoded.as_slice(), [ApiRequest::ReceiveVm(_)]));
    }

    #[test]
    fn a_panic_is_a_500_and_the_connection_goes_on() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let raw = b"GET /v1/ping HTTP/1.1\r\n\r\nGET /v1/sysinfo HTTP/1.1\r\n\r\n";
        let run = |r: ApiRequest| async move {
            if r == ApiRequest::Ping {
                panic!("boom");
            }
            Answer::<Done>(Ok(done("fine".into()))).into_response()
        };
        let (response, ended) = rt.block_on(exchange_with(raw, run));
        let response = String::from_utf8_lossy(&response);
        assert!(ended);
        assert!(response.starts_with("HTTP/1.1 500 "), "{response}");
        assert!(response.contains("the request handler panicked: boom"), "{response}");
        assert!(
            response.contains("HTTP/1.1 200 ") && response.contains("fine"),
            "the next request is served: {response}"
        );
    }

    /// A connection served with nothing behind it; the client end.
    fn serve_one() -> tokio::io::DuplexStream {
        let (client, server) = tokio::io::duplex(1024);
        let run = |r: ApiRequest| async move { Answer::<Done>(Ok(done(format!("{r:?}")))).into_response() };
        tokio::spawn(connection(server, run));
        client
    }

    /// Reads until the server closes the connection.
    async fn until_closed(client: &mut tokio::io::DuplexStream) -> String {
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_or_half_sent_head_is_cut_off() {
        for sent in [&b""[..], b"GET /v1/vms HTTP/1.1\r\nHost: zon"] {
            let mut client = serve_one();
            client.write_all(sent).await.unwrap();
            let start = tokio::time::Instant::now();
            until_closed(&mut client).await;
            let took = start.elapsed();
            assert!(took >= HEADER_TIMEOUT && took < HEADER_TIMEOUT + Duration::from_secs(1), "{took:?}");
        }
        // Also between requests of a kept-alive connection.
        let mut client = serve_one();
        client.write_all(b"GET /v1/ping HTTP/1.1\r\n\r\n").await.unwrap();
        let start = tokio::time::Instant::now();
        let answer = until_closed(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(start.elapsed() >= HEADER_TIMEOUT, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_sent_body_is_cut_off() {
        let mut client = serve_one();
        client.write_all(b"POST /v1/validate HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"action\":").await.unwrap();
        let start = tokio::time::Instant::now();
        let answer = until_closed(&mut client).await;
        let took = start.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
        assert!(took >= BODY_TIMEOUT && took < BODY_TIMEOUT + Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off() {
        let (_reader, writer) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(writer);
        let start = tokio::time::Instant::now();
        let err = guarded.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= WRITE_STALL_TIMEOUT, "{:?}", start.elapsed());

        // A reader, however slow, keeps it going.
        let (mut reader, writer) = tokio::io::duplex(16);
        let mut guarded = StallGuard::new(writer);
        let slow = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut n = 0;
            while n < 1024 {
                tokio::time::sleep(WRITE_STALL_TIMEOUT / 2).await;
                n += reader.read(&mut buf).await.unwrap();
            }
            n
        });
        let start = tokio::time::Instant::now();
        guarded.write_all(&[0u8; 1024]).await.unwrap();
        assert_eq!(slow.await.unwrap(), 1024);
        assert!(start.elapsed() > WRITE_STALL_TIMEOUT * 10, "{:?}", start.elapsed());
    }
}
