//! The HTTP API on the Unix socket. Each handler parses its input, runs the
//! daemon's blocking operation on the blocking pool, and answers JSON; the
//! one place where an [`ApiError`] becomes an HTTP status is [`Answer`].

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use zonevisor_api::{
    routes, ApiError, CpuInfo, DiskIoInfo, Done, ImageInstallRequest, InstanceUuid, KillRequest, MemoryInfo, PidsInfo,
    Ping, PressureInfo, PsiInfo, PsiLine, RebootRequest, StopRequest, ValidateRequest, VmInfo, VmObject,
};
use zonevisor_zone::cgroup::{self, CgroupVersion, Stats};

use crate::Daemon;

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

type D = State<Arc<Daemon>>;

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    d: Arc<Daemon>,
    f: impl FnOnce(&Daemon) -> Result<T, ApiError> + Send + 'static,
) -> Answer<T> {
    Answer(match tokio::task::spawn_blocking(move || f(&d)).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("the operation panicked: {e}"))),
    })
}

/// Decodes a JSON body (an empty one is `{}`); an error names the member
/// that is wrong (`timeout_secs: invalid type ...`).
fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return serde_json::from_str("{}").map_err(|_| ApiError::invalid(format!("{what} is required")));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        match (e.inner().is_data(), path.as_str()) {
            (true, ".") => ApiError::invalid(format!("{what} is not valid: {}", e.inner())),
            (true, _) => ApiError::invalid(format!("{what} is not valid: {path}: {}", e.inner())),
            (false, ".") => ApiError::invalid(format!("{what} is not valid JSON: {}", e.inner())),
            (false, _) => ApiError::invalid(format!("{what} is not valid JSON: {path}: {}", e.inner())),
        }
    })?;
    de.end().map_err(|e| ApiError::invalid(format!("{what} is not valid JSON: {e}")))?;
    Ok(value)
}

fn done(message: String) -> Done {
    Done { message }
}

async fn ping(State(d): D) -> Answer<Ping> {
    Answer(Ok(Ping {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        root: d.root.display().to_string(),
    }))
}

async fn sysinfo(State(d): D) -> Answer<Value> {
    blocking(d, |d| Ok(d.sysinfo())).await
}

async fn list_vms(State(d): D, Query(q): Query<HashMap<String, String>>) -> Answer<Vec<zonevisor_api::VmObject>> {
    blocking(d, move |d| d.list_vms(q.get("fields").map(String::as_str))).await
}

async fn create_vm(State(d): D, bytes: Bytes) -> Answer<zonevisor_api::VmObject> {
    match body::<Value>(&bytes, "the payload") {
        Ok(p) => blocking(d, move |d| d.create_vm(&p)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn validate(State(d): D, bytes: Bytes) -> Answer<Done> {
    match body::<ValidateRequest>(&bytes, "the validate request") {
        Ok(r) => blocking(d, move |d| d.validate(&r).map(done)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn get_vm(State(d): D, Path(uuid): Path<String>) -> Answer<zonevisor_api::VmObject> {
    blocking(d, move |d| d.get_vm(&uuid)).await
}

async fn delete_vm(State(d): D, Path(uuid): Path<String>) -> Answer<Done> {
    blocking(d, move |d| d.delete_vm(&uuid).map(done)).await
}

async fn update_vm(State(d): D, Path(uuid): Path<String>, bytes: Bytes) -> Answer<zonevisor_api::VmObject> {
    match body::<Value>(&bytes, "the update payload") {
        Ok(p) => blocking(d, move |d| d.update_vm(&uuid, &p)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn start_vm(State(d): D, Path(uuid): Path<String>) -> Answer<Done> {
    blocking(d, move |d| d.start_vm(&uuid).map(done)).await
}

async fn stop_vm(State(d): D, Path(uuid): Path<String>, bytes: Bytes) -> Answer<Done> {
    match body::<StopRequest>(&bytes, "the stop request").and_then(|r| r.check().map(|()| r)) {
        Ok(r) => blocking(d, move |d| d.stop_vm(&uuid, r.force, r.timeout_secs).map(done)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn reboot_vm(State(d): D, Path(uuid): Path<String>, bytes: Bytes) -> Answer<Done> {
    match body::<RebootRequest>(&bytes, "the reboot request") {
        Ok(r) => blocking(d, move |d| d.reboot_vm(&uuid, r.force).map(done)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn kill_vm(State(d): D, Path(uuid): Path<String>, bytes: Bytes) -> Answer<Done> {
    match body::<KillRequest>(&bytes, "the kill request") {
        Ok(r) => blocking(d, move |d| d.kill_vm(&uuid, r.signal.as_deref()).map(done)).await,
        Err(e) => Answer(Err(e)),
    }
}

async fn get_vm_info(State(d): D, Path(uuid): Path<String>) -> Answer<VmInfo> {
    blocking(d, move |d| d.vm_info(&uuid)).await
}

async fn get_vm_console(State(d): D, Path(uuid): Path<String>) -> Answer<zonevisor_api::ConsoleInfo> {
    blocking(d, move |d| d.console_info(&uuid)).await
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
async fn events(State(d): D, Query(q): Query<HashMap<String, String>>) -> Response {
    let only = match q.get("uuid").filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => match u.parse::<InstanceUuid>() {
            Ok(u) => Some(u.to_string()),
            Err(_) => return Answer::<Done>(Err(ApiError::invalid(format!("{u:?} is not a UUID")))).into_response(),
        },
    };
    let full = q.get("full").is_some_and(|v| v == "true" || v == "1");
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
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .header(axum::http::header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn list_images(State(d): D) -> Answer<Vec<zonevisor_api::ImageRecord>> {
    blocking(d, |d| d.list_images()).await
}

async fn install_image(State(d): D, bytes: Bytes) -> Answer<zonevisor_api::ImageRecord> {
    match body::<ImageInstallRequest>(&bytes, "the install request") {
        Ok(r) => blocking(d, move |d| d.install_image(&r.manifest, &r.file)).await,
        Err(e) => Answer(Err(e)),
    }
}

fn image_uuid(uuid: &str) -> Result<zonevisor_api::ImageUuid, ApiError> {
    uuid.parse().map_err(|_| ApiError::invalid(format!("{uuid:?} is not a UUID")))
}

async fn get_image(State(d): D, Path(uuid): Path<String>) -> Answer<zonevisor_api::ImageRecord> {
    blocking(d, move |d| d.image_record(image_uuid(&uuid)?)).await
}

async fn delete_image(State(d): D, Path(uuid): Path<String>) -> Answer<Done> {
    blocking(d, move |d| {
        let id = image_uuid(&uuid)?;
        d.delete_image(id).map(|()| done(format!("Deleted image {id}")))
    })
    .await
}

async fn not_found() -> Answer<Done> {
    Answer(Err(ApiError::not_found("no such API route")))
}

/// The router: the route table of `zonevisor_api::routes`.
pub(crate) fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route(routes::PING, get(ping))
        .route(routes::SYSINFO, get(sysinfo))
        .route(routes::VMS, get(list_vms).post(create_vm))
        .route(routes::VALIDATE, post(validate))
        .route(routes::VM, get(get_vm).delete(delete_vm))
        .route(routes::VM_UPDATE, post(update_vm))
        .route(routes::VM_START, post(start_vm))
        .route(routes::VM_STOP, post(stop_vm))
        .route(routes::VM_REBOOT, post(reboot_vm))
        .route(routes::VM_KILL, post(kill_vm))
        .route(routes::VM_INFO, get(get_vm_info))
        .route(routes::VM_CONSOLE, get(get_vm_console))
        .route(routes::EVENTS, get(events))
        .route(routes::IMAGES, get(list_images).post(install_image))
        .route(routes::IMAGE, get(get_image).delete(delete_image))
        .fallback(not_found)
        .with_state(d)
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
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        tracing::info!("shutting down; zones keep running");
    };
    let hub = d.clone();
    let shutdown = async move {
        shutdown.await;
        // Open event streams would keep the graceful shutdown waiting forever.
        hub.events.close();
    };
    axum::serve(listener, router(d)).with_graceful_shutdown(shutdown).await?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
