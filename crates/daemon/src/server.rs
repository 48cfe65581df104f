//! The HTTP API on the Unix socket. Each handler parses its input, runs the
//! daemon's blocking operation on the blocking pool, and answers JSON; the
//! one place where an [`ApiError`] becomes an HTTP status is [`Answer`].

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use zonevisor_api::{
    routes, ApiError, Done, ImageInstallRequest, KillRequest, Ping, RebootRequest, StopRequest, ValidateRequest,
};

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

fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return serde_json::from_str("{}").map_err(|_| ApiError::invalid(format!("{what} is required")));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("{what} is not valid JSON: {e}")))
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
    match body::<StopRequest>(&bytes, "the stop request") {
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
    axum::serve(listener, router(d)).with_graceful_shutdown(shutdown).await?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
