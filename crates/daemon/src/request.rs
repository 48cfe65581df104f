//! Decoding an API request: its method, path, query and body become one
//! [`ApiRequest`] (the route and its typed inputs) or a [`RequestError`],
//! before anything touches the daemon's state.
//!
//! This is the whole of what a client controls on the way in, and it is
//! pure: no pool, store or root is needed, so the fuzz targets
//! (`crates/fuzzing`, `fuzz/`) run it on arbitrary bytes, through the same
//! HTTP server code (`server.rs`) the daemon uses.
//!
//! | method | path | request |
//! |---|---|---|
//! | GET | `/v1/ping` | [`ApiRequest::Ping`] |
//! | GET | `/v1/sysinfo` | [`ApiRequest::Sysinfo`] |
//! | GET, POST | `/v1/vms` (`?fields=a,b`) | [`ApiRequest::ListVms`], [`ApiRequest::CreateVm`] |
//! | POST | `/v1/validate` | [`ApiRequest::Validate`] |
//! | GET, DELETE | `/v1/vms/{uuid}` | [`ApiRequest::GetVm`], [`ApiRequest::DeleteVm`] |
//! | POST | `/v1/vms/{uuid}/{update,start,stop,reboot,kill}` | [`ApiRequest::UpdateVm`], ... |
//! | POST | `/v1/vms/{uuid}/create-image` | [`ApiRequest::CreateImage`] |
//! | GET | `/v1/vms/{uuid}/{info,console}` | [`ApiRequest::VmInfo`], [`ApiRequest::VmConsole`] |
//! | GET | `/v1/events` (`?uuid=`, `?full=true`) | [`ApiRequest::Events`] |
//! | GET, POST | `/v1/images` | [`ApiRequest::ListImages`], [`ApiRequest::InstallImage`] |
//! | GET, DELETE | `/v1/images/{uuid}` | [`ApiRequest::GetImage`], [`ApiRequest::DeleteImage`] |
//! | GET, POST | `/v1/nictags` | [`ApiRequest::ListNicTags`], [`ApiRequest::AddNicTag`] |
//! | GET, DELETE | `/v1/nictags/{name}` (`?force=true`) | [`ApiRequest::GetNicTag`], [`ApiRequest::DeleteNicTag`] |
//! | POST, GET | `/v1/nictags/{name}/{update,vms}` | [`ApiRequest::UpdateNicTag`], [`ApiRequest::NicTagVms`] |
//! | GET, POST | `/v1/fw/rules` | [`ApiRequest::ListFwRules`], [`ApiRequest::AddFwRules`] |
//! | GET, DELETE | `/v1/fw/rules/{uuid}` | [`ApiRequest::GetFwRule`], [`ApiRequest::DeleteFwRule`] |
//! | POST, GET | `/v1/fw/rules/{uuid}/{update,vms}` | [`ApiRequest::UpdateFwRule`], [`ApiRequest::FwRuleVms`] |
//! | POST | `/v1/fw/changes` | [`ApiRequest::ChangeFwRules`] |
//! | GET | `/v1/fw/vms/{uuid}/{rules,status,stats}` | [`ApiRequest::FwVm`] |
//! | GET, POST | `/v1/vms/{uuid}/snapshots` | [`ApiRequest::ListSnapshots`], [`ApiRequest::CreateSnapshot`] |
//! | DELETE | `/v1/vms/{uuid}/snapshots/{name}` | [`ApiRequest::DeleteSnapshot`] |
//! | POST | `/v1/vms/{uuid}/snapshots/{name}/rollback` | [`ApiRequest::RollbackSnapshot`] |
//! | GET, POST, PUT, DELETE | `/v1/sources` (`DELETE`: `?url=`) | [`ApiRequest::ListSources`], [`ApiRequest::AddSource`], [`ApiRequest::ReplaceSources`], [`ApiRequest::DeleteSource`] |
//! | GET | `/v1/sources/check` | [`ApiRequest::CheckSources`] |
//! | GET | `/v1/sources/images`, `/v1/sources/images/{image}` | [`ApiRequest::AvailableImages`], [`ApiRequest::AvailableImage`] |
//! | POST | `/v1/images/{import,update}` | [`ApiRequest::ImportImage`], [`ApiRequest::UpdateImages`] |
//! | GET | `/v1/vms/{uuid}/send` (`?base=`) | [`ApiRequest::SendVm`] (a streamed answer) |
//! | POST | `/v1/vms/receive` | [`ApiRequest::ReceiveVm`] (a streamed body, not read here: [`streams_body`]) |
//!
//! The paths are `zonevisor_api::routes`' (a test checks that every route
//! there decodes). Path segments are percent-decoded, query strings are
//! `application/x-www-form-urlencoded`; an empty body is `{}`; numbers out
//! of range (a stop's `timeout_secs`, a signal) are refused here, naming
//! the member.

use serde::de::DeserializeOwned;
use serde_json::Value;
use zonevisor_api::{
    routes, ApiError, FwAddRequest, FwChangeRequest, FwRuleUpdate, ImageCreateRequest, ImageImportRequest,
    ImageInstallRequest, ImagePullRequest, ImageUpdateRequest, ImageUuid, InstanceUuid, KillRequest, NicTagRequest,
    NicTagUpdate, RebootRequest, SnapshotRequest, SourceAddRequest, SourcesReplaceRequest, StartRequest, StopRequest,
    SysrqRequest, ValidateRequest,
};

/// A decoded request: the route, with its inputs typed and checked.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiRequest {
    /// `GET /v1/nictags`.
    ListNicTags,
    /// `POST /v1/nictags`.
    AddNicTag(NicTagRequest),
    /// `GET /v1/nictags/{name}`.
    GetNicTag(String),
    /// `POST /v1/nictags/{name}/update`.
    UpdateNicTag(String, NicTagUpdate),
    /// `DELETE /v1/nictags/{name}`.
    DeleteNicTag {
        /// The tag.
        name: String,
        /// Even while NICs use it.
        force: bool,
    },
    /// `GET /v1/nictags/{name}/vms`.
    NicTagVms(String),
    /// `GET /v1/fw/rules`.
    ListFwRules,
    /// `POST /v1/fw/rules`.
    AddFwRules(FwAddRequest),
    /// `GET /v1/fw/rules/{uuid}`.
    GetFwRule(String),
    /// `POST /v1/fw/rules/{uuid}/update`.
    UpdateFwRule(String, FwRuleUpdate),
    /// `DELETE /v1/fw/rules/{uuid}`.
    DeleteFwRule(String),
    /// `GET /v1/fw/rules/{uuid}/vms`.
    FwRuleVms(String),
    /// `POST /v1/fw/changes`.
    ChangeFwRules(FwChangeRequest),
    /// `GET /v1/fw/vms/{uuid}/{rules,status,stats}`.
    FwVm {
        /// The instance.
        uuid: InstanceUuid,
        /// `rules`, `status` or `stats`.
        what: &'static str,
    },
    /// `GET /v1/ping`.
    Ping,
    /// `GET /v1/sysinfo`.
    Sysinfo,
    /// `GET /v1/vms`: every VM, or only the `fields` named (comma-separated).
    ListVms {
        /// `?fields=`.
        fields: Option<String>,
    },
    /// `POST /v1/vms`: a create payload (validated by the daemon).
    CreateVm {
        /// The payload.
        payload: Value,
    },
    /// `POST /v1/validate`.
    Validate(ValidateRequest),
    /// `GET /v1/vms/{uuid}`.
    GetVm(InstanceUuid),
    /// `DELETE /v1/vms/{uuid}`.
    DeleteVm(InstanceUuid),
    /// `POST /v1/vms/{uuid}/update`.
    UpdateVm {
        /// The VM.
        uuid: InstanceUuid,
        /// The update payload (validated by the daemon).
        payload: Value,
    },
    /// `POST /v1/vms/{uuid}/start`.
    StartVm {
        /// The VM.
        uuid: InstanceUuid,
        /// A hardware VM's one-off boot options.
        options: StartRequest,
    },
    /// `POST /v1/vms/{uuid}/sysrq`.
    SysrqVm {
        /// The VM.
        uuid: InstanceUuid,
        /// `nmi` or `screenshot`.
        request: String,
    },
    /// `POST /v1/vms/{uuid}/stop`.
    StopVm {
        /// The VM.
        uuid: InstanceUuid,
        /// Kill at once.
        force: bool,
        /// Grace period, at most `MAX_STOP_TIMEOUT_SECS`.
        timeout_secs: Option<u64>,
    },
    /// `POST /v1/vms/{uuid}/reboot`.
    RebootVm {
        /// The VM.
        uuid: InstanceUuid,
        /// Kill at once.
        force: bool,
    },
    /// `POST /v1/vms/{uuid}/kill`.
    KillVm {
        /// The VM.
        uuid: InstanceUuid,
        /// A signal number, 1 to 64 (SIGTERM when the request names none, as
        /// `vmadm kill` sends by default).
        signal: i32,
    },
    /// `GET /v1/vms/{uuid}/info`.
    VmInfo(InstanceUuid),
    /// `GET /v1/vms/{uuid}/console`.
    VmConsole(InstanceUuid),
    /// `GET /v1/events`.
    Events {
        /// `?uuid=`: only this VM's events.
        uuid: Option<InstanceUuid>,
        /// `?full=true`: each event with the VM object.
        full: bool,
    },
    /// `GET /v1/images`.
    ListImages,
    /// `POST /v1/images`.
    InstallImage(ImageInstallRequest),
    /// `GET /v1/images/{uuid}`.
    GetImage(ImageUuid),
    /// `DELETE /v1/images/{uuid}`.
    DeleteImage(ImageUuid),
    /// `POST /v1/vms/{uuid}/create-image`.
    CreateImage {
        /// The instance.
        uuid: InstanceUuid,
        /// What to make.
        request: ImageCreateRequest,
    },
    /// `GET /v1/vms/{uuid}/snapshots`.
    ListSnapshots(InstanceUuid),
    /// `POST /v1/vms/{uuid}/snapshots`.
    CreateSnapshot {
        /// The VM.
        uuid: InstanceUuid,
        /// The snapshot's name (checked by the daemon).
        name: String,
    },
    /// `POST /v1/vms/{uuid}/snapshots/{name}/rollback`.
    RollbackSnapshot {
        /// The VM.
        uuid: InstanceUuid,
        /// The snapshot's name.
        name: String,
    },
    /// `DELETE /v1/vms/{uuid}/snapshots/{name}`.
    DeleteSnapshot {
        /// The VM.
        uuid: InstanceUuid,
        /// The snapshot's name.
        name: String,
    },
    /// `GET /v1/sources`.
    ListSources,
    /// `POST /v1/sources`.
    AddSource(SourceAddRequest),
    /// `PUT /v1/sources`.
    ReplaceSources(SourcesReplaceRequest),
    /// `DELETE /v1/sources?url=`.
    DeleteSource(String),
    /// `GET /v1/sources/check`.
    CheckSources,
    /// `GET /v1/sources/images`.
    AvailableImages,
    /// `GET /v1/sources/images/{image}`: a uuid or `name[@version]`.
    AvailableImage(String),
    /// `POST /v1/images/import`.
    ImportImage(ImageImportRequest),
    /// `POST /v1/images/update`.
    UpdateImages(ImageUpdateRequest),
    /// `POST /v1/images/pull`.
    PullImage(ImagePullRequest),
    /// `GET /v1/vms/{uuid}/send`.
    SendVm {
        /// The VM.
        uuid: InstanceUuid,
        /// `?base=`: the snapshot an incremental stream starts from.
        base: Option<String>,
    },
    /// `POST /v1/vms/receive`: the body is the stream, left for the handler.
    ReceiveVm(Upload),
}

/// A request body left unread, for its handler to stream
/// (`POST /v1/vms/receive`); the server attaches it after decoding.
#[derive(Clone, Default)]
pub struct Upload(std::sync::Arc<std::sync::Mutex<Option<hyper::body::Incoming>>>);

impl Upload {
    /// Gives the upload its body.
    pub(crate) fn attach(&self, body: hyper::body::Incoming) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    }

    /// Takes the body (once).
    pub(crate) fn take(&self) -> Option<hyper::body::Incoming> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upload")
    }
}

impl PartialEq for Upload {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Whether a request's body is the handler's to stream (no bound on its
/// size or time but a stall's): `POST /v1/vms/receive`.
pub fn streams_body(method: &str, path: &str) -> bool {
    method == "POST" && path == routes::VMS_RECEIVE
}

/// Why a request was not decoded. Each answers with its own status and an
/// [`ApiError`] body ([`RequestError::status`], [`RequestError::to_api_error`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// No route has this path (404).
    #[error("no such API route: {0}")]
    NoRoute(String),
    /// The route exists but not with this method (405, with `Allow`).
    #[error("{method} is not allowed on {path} (use {allow})")]
    Method {
        /// The method given.
        method: String,
        /// The path.
        path: String,
        /// The methods the route takes, as the `Allow` header lists them.
        allow: &'static str,
    },
    /// The body is larger than the server takes (413).
    #[error("the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body did not arrive in time (408).
    #[error("the request body did not arrive within {secs} s")]
    Timeout {
        /// The bound.
        secs: u64,
    },
    /// The body could not be read (the client went away, or sent a broken chunk) (400).
    #[error("reading the request body: {0}")]
    Body(String),
    /// The request's inputs are invalid: the daemon's own error (400).
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl RequestError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::NoRoute(_) => 404,
            RequestError::Method { .. } => 405,
            RequestError::TooLarge { .. } => 413,
            RequestError::Timeout { .. } => 408,
            RequestError::Body(_) => 400,
            RequestError::Api(e) => e.http_status(),
        }
    }

    /// The body it is answered with.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            RequestError::NoRoute(_) => ApiError::not_found(self.to_string()),
            RequestError::Api(e) => e.clone(),
            _ => ApiError::invalid(self.to_string()),
        }
    }
}

fn parse_uuid<T: std::str::FromStr>(segment: &str) -> Result<T, ApiError> {
    let text = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    text.parse().map_err(|_| ApiError::invalid(format!("{text:?} is not a UUID")))
}

/// Decodes a JSON body (an empty one is `{}`); an error names the member
/// that is wrong (`timeout_secs: invalid type ...`).
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
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

/// Signal names and numbers as `vmadm kill -s` takes them (`KILL`,
/// `SIGKILL`, `9`); none is SIGKILL.
pub(crate) fn parse_signal(s: Option<&str>) -> Result<i32, ApiError> {
    let Some(s) = s else { return Ok(libc::SIGTERM) };
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let name = format!("SIG{name}");
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| ApiError::invalid(format!("signal: {s:?} is not a signal name or number")))
}

/// The query's `name=value` pairs, decoded (the last of a repeated name wins).
fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .map_err(|e| ApiError::invalid(format!("the query string is not valid: {e}")))
}

fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The routes of `zonevisor_api::routes`, as path segments after `/v1`
/// (`{uuid}` matches one segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Ping,
    Sysinfo,
    Vms,
    Validate,
    Vm,
    VmVerb(&'static str),
    Events,
    Images,
    Image,
    NicTags,
    NicTag,
    NicTagVerb(&'static str),
    FwRules,
    FwRule,
    FwRuleVerb(&'static str),
    FwChanges,
    FwVm(&'static str),
    VmSnapshots,
    VmSnapshot,
    VmSnapshotRollback,
    Sources,
    SourcesCheck,
    SourcesImages,
    SourcesImage,
    ImagesImport,
    ImagesUpdate,
    ImagesPull,
    VmSend,
    VmsReceive,
}

impl Route {
    fn allow(self) -> &'static str {
        match self {
            Route::Ping | Route::Sysinfo | Route::Events => "GET",
            Route::Vms | Route::Images | Route::NicTags => "GET, POST",
            Route::NicTag | Route::FwRule => "GET, DELETE",
            Route::FwRules => "GET, POST",
            Route::FwRuleVerb("vms") | Route::FwVm(_) => "GET",
            Route::FwRuleVerb(_) => "POST",
            Route::NicTagVerb("vms") => "GET",
            Route::NicTagVerb(_) => "POST",
            Route::Validate | Route::FwChanges => "POST",
            Route::Vm | Route::Image => "GET, DELETE",
            Route::VmVerb("info" | "console") => "GET",
            Route::VmVerb(_) => "POST",
            Route::VmSnapshots => "GET, POST",
            Route::VmSnapshot => "DELETE",
            Route::VmSnapshotRollback => "POST",
            Route::Sources => "GET, POST, PUT, DELETE",
            Route::SourcesCheck | Route::SourcesImages | Route::SourcesImage => "GET",
            Route::ImagesImport | Route::ImagesUpdate => "POST",
            Route::ImagesPull => "POST",
            Route::VmSend => "GET",
            Route::VmsReceive => "POST",
        }
    }
}

/// The route of `path` and its `{uuid}` segment, if any.
fn route(path: &str) -> Option<(Route, Option<&str>)> {
    let rest = path.strip_prefix(routes::PREFIX)?.strip_prefix('/')?;
    let segments: Vec<&str> = rest.split('/').collect();
    let r = match segments.as_slice() {
        ["ping"] => (Route::Ping, None),
        ["sysinfo"] => (Route::Sysinfo, None),
        ["vms"] => (Route::Vms, None),
        ["validate"] => (Route::Validate, None),
        ["events"] => (Route::Events, None),
        ["images"] => (Route::Images, None),
        ["vms", "receive"] => (Route::VmsReceive, None),
        ["vms", id] if !id.is_empty() => (Route::Vm, Some(*id)),
        ["images", "import"] => (Route::ImagesImport, None),
        ["images", "update"] => (Route::ImagesUpdate, None),
        ["images", "pull"] => (Route::ImagesPull, None),
        ["images", id] if !id.is_empty() => (Route::Image, Some(*id)),
        ["sources"] => (Route::Sources, None),
        ["sources", "check"] => (Route::SourcesCheck, None),
        ["sources", "images"] => (Route::SourcesImages, None),
        ["sources", "images", id] if !id.is_empty() => (Route::SourcesImage, Some(*id)),
        ["nictags"] => (Route::NicTags, None),
        ["fw", "rules"] => (Route::FwRules, None),
        ["fw", "changes"] => (Route::FwChanges, None),
        ["fw", "rules", id] if !id.is_empty() => (Route::FwRule, Some(*id)),
        ["fw", "rules", id, verb] if !id.is_empty() => {
            let verb = ["update", "vms"].into_iter().find(|v| v == verb)?;
            (Route::FwRuleVerb(verb), Some(*id))
        }
        ["fw", "vms", id, what] if !id.is_empty() => {
            let what = ["rules", "status", "stats"].into_iter().find(|v| v == what)?;
            (Route::FwVm(what), Some(*id))
        }
        ["nictags", name] if !name.is_empty() => (Route::NicTag, Some(*name)),
        ["nictags", name, verb] if !name.is_empty() => {
            let verb = ["update", "vms"].into_iter().find(|v| v == verb)?;
            (Route::NicTagVerb(verb), Some(*name))
        }
        ["vms", id, "send"] if !id.is_empty() => (Route::VmSend, Some(*id)),
        ["vms", id, "snapshots"] if !id.is_empty() => (Route::VmSnapshots, Some(*id)),
        ["vms", id, "snapshots", name] if !id.is_empty() && !name.is_empty() => (Route::VmSnapshot, Some(*id)),
        ["vms", id, "snapshots", name, "rollback"] if !id.is_empty() && !name.is_empty() => {
            (Route::VmSnapshotRollback, Some(*id))
        }
        ["vms", id, verb] if !id.is_empty() => {
            let verb = ["update", "start", "stop", "reboot", "kill", "info", "console", "sysrq", "create-image"]
                .into_iter()
                .find(|v| v == verb)?;
            (Route::VmVerb(verb), Some(*id))
        }
        _ => return None,
    };
    Some(r)
}

/// The `{name}` of `/v1/vms/{uuid}/snapshots/{name}[/rollback]`, decoded.
fn snapshot_segment(path: &str) -> String {
    let segment = path.split('/').nth(5).unwrap_or_default();
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// Decodes one request: `method` as sent (`GET`), `path` without the query,
/// `query` without the `?`, and the whole body.
pub fn decode(method: &str, path: &str, query: Option<&str>, bytes: &[u8]) -> Result<ApiRequest, RequestError> {
    let (route, id) = route(path).ok_or_else(|| RequestError::NoRoute(path.to_string()))?;
    let not_allowed =
        || RequestError::Method { method: method.to_string(), path: path.to_string(), allow: route.allow() };
    let vm = || parse_uuid::<InstanceUuid>(id.unwrap_or_default());
    let image = || parse_uuid::<ImageUuid>(id.unwrap_or_default());
    let name = || percent_encoding::percent_decode_str(id.unwrap_or_default()).decode_utf8_lossy().into_owned();
    let req = match (route, method) {
        (Route::Ping, "GET") => ApiRequest::Ping,
        (Route::Sysinfo, "GET") => ApiRequest::Sysinfo,
        (Route::Vms, "GET") => {
            let q = query_pairs(query)?;
            ApiRequest::ListVms { fields: query_get(&q, "fields").map(str::to_string) }
        }
        (Route::Vms, "POST") => ApiRequest::CreateVm { payload: body(bytes, "the payload")? },
        (Route::Validate, "POST") => ApiRequest::Validate(body(bytes, "the validate request")?),
        (Route::Vm, "GET") => ApiRequest::GetVm(vm()?),
        (Route::Vm, "DELETE") => ApiRequest::DeleteVm(vm()?),
        (Route::VmVerb("update"), "POST") => {
            let uuid = vm()?;
            ApiRequest::UpdateVm { uuid, payload: body(bytes, "the update payload")? }
        }
        (Route::VmVerb("start"), "POST") => {
            let uuid = vm()?;
            ApiRequest::StartVm { uuid, options: body(bytes, "the start request")? }
        }
        (Route::VmVerb("sysrq"), "POST") => {
            let uuid = vm()?;
            let r: SysrqRequest = body(bytes, "the sysrq request")?;
            ApiRequest::SysrqVm { uuid, request: r.request }
        }
        (Route::VmVerb("stop"), "POST") => {
            let uuid = vm()?;
            let r: StopRequest = body(bytes, "the stop request")?;
            r.check()?;
            ApiRequest::StopVm { uuid, force: r.force, timeout_secs: r.timeout_secs }
        }
        (Route::VmVerb("reboot"), "POST") => {
            let uuid = vm()?;
            let r: RebootRequest = body(bytes, "the reboot request")?;
            ApiRequest::RebootVm { uuid, force: r.force }
        }
        (Route::VmVerb("kill"), "POST") => {
            let uuid = vm()?;
            let r: KillRequest = body(bytes, "the kill request")?;
            ApiRequest::KillVm { uuid, signal: parse_signal(r.signal.as_deref())? }
        }
        (Route::VmVerb("create-image"), "POST") => {
            let uuid = vm()?;
            ApiRequest::CreateImage { uuid, request: body(bytes, "the image create request")? }
        }
        (Route::VmVerb("info"), "GET") => ApiRequest::VmInfo(vm()?),
        (Route::VmVerb("console"), "GET") => ApiRequest::VmConsole(vm()?),
        (Route::Events, "GET") => {
            let q = query_pairs(query)?;
            let uuid = match query_get(&q, "uuid").filter(|u| !u.is_empty()) {
                None => None,
                Some(u) => Some(u.parse().map_err(|_| ApiError::invalid(format!("{u:?} is not a UUID")))?),
            };
            let full = query_get(&q, "full").is_some_and(|v| v == "true" || v == "1");
            ApiRequest::Events { uuid, full }
        }
        (Route::Images, "GET") => ApiRequest::ListImages,
        (Route::Images, "POST") => ApiRequest::InstallImage(body(bytes, "the install request")?),
        (Route::Image, "GET") => ApiRequest::GetImage(image()?),
        (Route::Image, "DELETE") => ApiRequest::DeleteImage(image()?),
        (Route::NicTags, "GET") => ApiRequest::ListNicTags,
        (Route::NicTags, "POST") => ApiRequest::AddNicTag(body(bytes, "the nic tag")?),
        (Route::NicTag, "GET") => ApiRequest::GetNicTag(name()),
        (Route::NicTag, "DELETE") => {
            let q = query_pairs(query)?;
            let force = query_get(&q, "force").is_some_and(|v| v == "true" || v == "1");
            ApiRequest::DeleteNicTag { name: name(), force }
        }
        (Route::NicTagVerb("update"), "POST") => ApiRequest::UpdateNicTag(name(), body(bytes, "the nic tag update")?),
        (Route::NicTagVerb("vms"), "GET") => ApiRequest::NicTagVms(name()),
        (Route::FwRules, "GET") => ApiRequest::ListFwRules,
        (Route::FwRules, "POST") => ApiRequest::AddFwRules(body(bytes, "the firewall rules")?),
        (Route::FwRule, "GET") => ApiRequest::GetFwRule(name()),
        (Route::FwRule, "DELETE") => ApiRequest::DeleteFwRule(name()),
        (Route::FwRuleVerb("update"), "POST") => ApiRequest::UpdateFwRule(name(), body(bytes, "the rule update")?),
        (Route::FwRuleVerb("vms"), "GET") => ApiRequest::FwRuleVms(name()),
        (Route::FwChanges, "POST") => ApiRequest::ChangeFwRules(body(bytes, "the rule changes")?),
        (Route::FwVm(what), "GET") => ApiRequest::FwVm { uuid: vm()?, what },
        (Route::VmSnapshots, "GET") => ApiRequest::ListSnapshots(vm()?),
        (Route::VmSnapshots, "POST") => {
            let uuid = vm()?;
            let r: SnapshotRequest = body(bytes, "the snapshot request")?;
            ApiRequest::CreateSnapshot { uuid, name: r.name }
        }
        (Route::VmSnapshot, "DELETE") => ApiRequest::DeleteSnapshot { uuid: vm()?, name: snapshot_segment(path) },
        (Route::VmSnapshotRollback, "POST") => {
            ApiRequest::RollbackSnapshot { uuid: vm()?, name: snapshot_segment(path) }
        }
        (Route::Sources, "GET") => ApiRequest::ListSources,
        (Route::Sources, "POST") => ApiRequest::AddSource(body(bytes, "the image source")?),
        (Route::Sources, "PUT") => ApiRequest::ReplaceSources(body(bytes, "the image sources")?),
        (Route::Sources, "DELETE") => {
            let q = query_get(&query_pairs(query)?, "url").map(str::to_string);
            ApiRequest::DeleteSource(q.ok_or_else(|| ApiError::invalid("the source's ?url= is required"))?)
        }
        (Route::SourcesCheck, "GET") => ApiRequest::CheckSources,
        (Route::SourcesImages, "GET") => ApiRequest::AvailableImages,
        (Route::SourcesImage, "GET") => ApiRequest::AvailableImage(name()),
        (Route::ImagesImport, "POST") => ApiRequest::ImportImage(body(bytes, "the import request")?),
        (Route::ImagesUpdate, "POST") => ApiRequest::UpdateImages(body(bytes, "the update request")?),
        (Route::ImagesPull, "POST") => ApiRequest::PullImage(body(bytes, "the pull request")?),
        (Route::VmSend, "GET") => {
            let q = query_pairs(query)?;
            ApiRequest::SendVm { uuid: vm()?, base: query_get(&q, "base").map(str::to_string) }
        }
        (Route::VmsReceive, "POST") => ApiRequest::ReceiveVm(Upload::default()),
        _ => return Err(not_allowed()),
    };
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const U: &str = "6a2e1f44-bb0e-4bd8-a2a5-0d3c5f0e9a01";

    fn ok(method: &str, path: &str, query: Option<&str>, body: &str) -> ApiRequest {
        decode(method, path, query, body.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn err(method: &str, path: &str, query: Option<&str>, body: &str) -> RequestError {
        decode(method, path, query, body.as_bytes()).expect_err(path)
    }

    #[test]
    fn every_route_of_the_table_decodes() {
        let uuid: InstanceUuid = U.parse().unwrap();
        let image: ImageUuid = U.parse().unwrap();
        let with = |r: &str| routes::with_uuid(r, U);
        assert_eq!(ok("GET", routes::PING, None, ""), ApiRequest::Ping);
        assert_eq!(ok("GET", routes::SYSINFO, None, ""), ApiRequest::Sysinfo);
        assert_eq!(ok("GET", routes::VMS, None, ""), ApiRequest::ListVms { fields: None });
        assert_eq!(
            ok("GET", routes::VMS, Some("fields=uuid%2Cstate&x=1"), ""),
            ApiRequest::ListVms { fields: Some("uuid,state".into()) }
        );
        assert_eq!(
            ok("POST", routes::VMS, None, r#"{"brand":"lx"}"#),
            ApiRequest::CreateVm { payload: json!({"brand": "lx"}) }
        );
        assert!(matches!(
            ok("POST", routes::VALIDATE, None, r#"{"action":"create","payload":{}}"#),
            ApiRequest::Validate(_)
        ));
        assert_eq!(ok("GET", &with(routes::VM), None, ""), ApiRequest::GetVm(uuid));
        assert_eq!(ok("DELETE", &with(routes::VM), None, ""), ApiRequest::DeleteVm(uuid));
        assert_eq!(
            ok("POST", &with(routes::VM_UPDATE), None, r#"{"alias":"a"}"#),
            ApiRequest::UpdateVm { uuid, payload: json!({"alias": "a"}) }
        );
        assert_eq!(
            ok("POST", &with(routes::VM_START), None, ""),
            ApiRequest::StartVm { uuid, options: StartRequest::default() }
        );
        assert_eq!(
            ok("POST", &with(routes::VM_STOP), None, r#"{"force":true,"timeout_secs":5}"#),
            ApiRequest::StopVm { uuid, force: true, timeout_secs: Some(5) }
        );
        assert_eq!(ok("POST", &with(routes::VM_REBOOT), None, ""), ApiRequest::RebootVm { uuid, force: false });
        assert_eq!(ok("POST", &with(routes::VM_KILL), None, "{}"), ApiRequest::KillVm { uuid, signal: libc::SIGTERM });
        assert_eq!(
            ok("POST", &with(routes::VM_KILL), None, r#"{"signal":"term"}"#),
            ApiRequest::KillVm { uuid, signal: libc::SIGTERM }
        );
        assert_eq!(ok("GET", &with(routes::VM_INFO), None, ""), ApiRequest::VmInfo(uuid));
        assert_eq!(ok("GET", &with(routes::VM_CONSOLE), None, ""), ApiRequest::VmConsole(uuid));
        assert_eq!(ok("GET", routes::EVENTS, None, ""), ApiRequest::Events { uuid: None, full: false });
        assert_eq!(
            ok("GET", routes::EVENTS, Some(&format!("uuid={U}&full=true")), ""),
            ApiRequest::Events { uuid: Some(uuid), full: true }
        );
        assert_eq!(ok("GET", routes::IMAGES, None, ""), ApiRequest::ListImages);
        assert!(matches!(
            ok("POST", routes::IMAGES, None, r#"{"manifest":{},"file":"/x"}"#),
            ApiRequest::InstallImage(_)
        ));
        assert_eq!(ok("GET", &with(routes::IMAGE), None, ""), ApiRequest::GetImage(image));
        assert_eq!(ok("DELETE", &with(routes::IMAGE), None, ""), ApiRequest::DeleteImage(image));
        assert_eq!(
            ok("POST", routes::IMAGES_PULL, None, r#"{"reference": "alpine:3.20"}"#),
            ApiRequest::PullImage(ImagePullRequest { reference: "alpine:3.20".into(), insecure: false })
        );
        assert_eq!(err("GET", routes::IMAGES_PULL, None, "").status(), 405);
        assert_eq!(
            ok(
                "POST",
                routes::FW_CHANGES,
                None,
                &format!(r#"{{"update":[{{"uuid":"{U}","enabled":false}}],"delete":["{U}"]}}"#)
            ),
            ApiRequest::ChangeFwRules(zonevisor_api::FwChangeRequest {
                update: vec![zonevisor_api::FwRuleChange {
                    uuid: U.into(),
                    enabled: Some(false),
                    ..Default::default()
                }],
                delete: vec![U.into()],
            })
        );
        assert_eq!(err("GET", routes::FW_CHANGES, None, "").status(), 405);
        assert_eq!(ok("GET", &with(routes::VM_SNAPSHOTS), None, ""), ApiRequest::ListSnapshots(uuid));
        assert_eq!(
            ok("POST", &with(routes::VM_SNAPSHOTS), None, r#"{"name":"s1"}"#),
            ApiRequest::CreateSnapshot { uuid, name: "s1".into() }
        );
        let snap = |r: &str| routes::with_name(&with(r), "a%25b:c");
        assert_eq!(
            ok("POST", &snap(routes::VM_SNAPSHOT_ROLLBACK), None, ""),
            ApiRequest::RollbackSnapshot { uuid, name: "a%b:c".into() }
        );
        assert_eq!(
            ok("DELETE", &snap(routes::VM_SNAPSHOT), None, ""),
            ApiRequest::DeleteSnapshot { uuid, name: "a%b:c".into() }
        );
        assert_eq!(err("GET", &snap(routes::VM_SNAPSHOT), None, "").status(), 405);
        assert_eq!(err("POST", &with(routes::VM_SNAPSHOTS), None, r#"{"nom":"s1"}"#).status(), 400);
        assert_eq!(ok("GET", routes::SOURCES, None, ""), ApiRequest::ListSources);
        assert!(matches!(
            ok("POST", routes::SOURCES, None, r#"{"url":"http://x","type":"imgapi"}"#),
            ApiRequest::AddSource(r) if r.source.url == "http://x" && !r.force
        ));
        assert!(matches!(ok("PUT", routes::SOURCES, None, r#"{"sources":[]}"#), ApiRequest::ReplaceSources(_)));
        assert_eq!(
            ok("DELETE", routes::SOURCES, Some("url=http%3A%2F%2Fx%2F"), ""),
            ApiRequest::DeleteSource("http://x/".into())
        );
        assert_eq!(err("DELETE", routes::SOURCES, None, "").status(), 400);
        assert_eq!(ok("GET", routes::SOURCES_CHECK, None, ""), ApiRequest::CheckSources);
        assert_eq!(ok("GET", routes::SOURCES_IMAGES, None, ""), ApiRequest::AvailableImages);
        assert_eq!(
            ok("GET", &routes::SOURCES_IMAGE.replace("{image}", "base%4015.4.1"), None, ""),
            ApiRequest::AvailableImage("base@15.4.1".into())
        );
        assert_eq!(
            ok("POST", routes::IMAGES_IMPORT, None, r#"{"image":"base"}"#),
            ApiRequest::ImportImage(zonevisor_api::ImageImportRequest { image: "base".into(), source: None })
        );
        assert_eq!(err("GET", routes::IMAGES_IMPORT, None, "").status(), 405, "not an image uuid");
        assert_eq!(
            ok("POST", routes::IMAGES_UPDATE, None, ""),
            ApiRequest::UpdateImages(zonevisor_api::ImageUpdateRequest::default())
        );
        assert_eq!(ok("GET", &with(routes::VM_SEND), None, ""), ApiRequest::SendVm { uuid, base: None });
        assert_eq!(
            ok("GET", &with(routes::VM_SEND), Some("base=s%251"), ""),
            ApiRequest::SendVm { uuid, base: Some("s%1".into()) }
        );
        assert!(matches!(ok("POST", routes::VMS_RECEIVE, None, ""), ApiRequest::ReceiveVm(_)));
        assert!(streams_body("POST", routes::VMS_RECEIVE) && !streams_body("GET", routes::VMS_RECEIVE));
        assert_eq!(err("GET", routes::VMS_RECEIVE, None, "").status(), 405);
        // Percent-encoded path segments are decoded, as axum's did.
        assert_eq!(ok("GET", &format!("/v1/vms/%36{}", &U[1..]), None, ""), ApiRequest::GetVm(uuid));
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        for path in ["", "/", "/v1", "/v1/", "/v1/vms/", "/v2/vms", "/v1/vms//stop", "/v1/vms/x/y/z", "/v1/ping/"] {
            let e = err("GET", path, None, "");
            assert_eq!((e.status(), e.to_api_error().kind), (404, zonevisor_api::ErrorKind::NotFound), "{path}");
        }
        assert_eq!(err("GET", &format!("/v1/vms/{U}/nope"), None, "").status(), 404);
        let e = err("PUT", routes::VMS, None, "");
        assert_eq!(e.status(), 405);
        assert!(matches!(e, RequestError::Method { allow: "GET, POST", .. }), "{e:?}");
        assert_eq!(err("GET", &routes::with_uuid(routes::VM_STOP, U), None, "").status(), 405);
        assert_eq!(err("get", routes::PING, None, "").status(), 405, "methods are case-sensitive");
    }

    #[test]
    fn bad_inputs_are_the_daemons_errors() {
        let e = err("GET", "/v1/vms/not-a-uuid", None, "");
        assert_eq!(e.to_api_error(), ApiError::invalid("\"not-a-uuid\" is not a UUID"));
        assert_eq!(err("GET", "/v1/images/%FF", None, "").status(), 400);
        let stop = routes::with_uuid(routes::VM_STOP, U);
        for body in [r#"{"timeout_secs":18446744073709551615}"#, r#"{"timeout_secs":-1}"#, r#"{"timeout_secs":1e400}"#]
        {
            let e = err("POST", &stop, None, body);
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.to_string().contains("timeout_secs"), "{body}: {e}");
        }
        let e = err("POST", &stop, None, r#"{"force":true} x"#);
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let kill = routes::with_uuid(routes::VM_KILL, U);
        for sig in ["0", "65", "-1", "99999999999", "SIG", "SIGNOPE", "ÿ"] {
            let e = err("POST", &kill, None, &json!({ "signal": sig }).to_string());
            assert!(e.to_string().contains("not a signal"), "{sig}: {e}");
        }
        let e = err("POST", routes::VALIDATE, None, "");
        assert_eq!(e.to_string(), "the validate request is required");
        assert_eq!(err("GET", routes::EVENTS, Some("uuid=nope"), "").status(), 400);
        assert_eq!(err("GET", routes::EVENTS, Some("uuid=%FF%FE"), "").status(), 400);
    }

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal(None).unwrap(), libc::SIGTERM, "vmadm kill sends SIGTERM by default");
        assert_eq!(parse_signal(Some("TERM")).unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal(Some("SIGHUP")).unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal(Some("10")).unwrap(), 10);
        assert!(parse_signal(Some("SIGNOPE")).is_err());
        assert!(parse_signal(Some("0")).is_err());
    }
}
