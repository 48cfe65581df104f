//! Images from IMGAPI servers, the client side: the image sources
//! (`imgadm sources`), what they offer (`imgadm avail`, `show`), imports
//! with their origin chains (`imgadm import`), and installed images'
//! manifests fetched again (`imgadm update`).
//!
//! ```text
//! imgadm import <uuid | name[@version]>        (CLI: a progress bar on a terminal)
//!   │ POST /v1/images/import ── answered with a stream of ImportEvent lines
//!   ▼
//! Daemon::import_image (a blocking thread; its events go to the stream)
//!   1. find the image: the sources in order, the first that has it
//!      (uuid: GET /images/<uuid>, active; name: GET /images?name=&version=, latest)
//!   2. its origin chain from the same source (GET /images/<origin>), up to
//!      an installed origin; every manifest checked before any download
//!   3. oldest first, each under its image lock:
//!        download.rs: GET /images/<uuid>/file → <pool>/<uuid>-download/<sha1>,
//!                     hashed as it arrives, resumed with Range; verified
//!        images.rs:   install_verified (a clone of the origin, or a new dataset;
//!                     extract; read-only; the row `ready`, its source recorded)
//!        the download dataset removed
//!   4. `done` with the image record, or `error` naming the image
//! ```
//!
//! Docker sources are listed and kept here; imports from them are the
//! registry client's.

mod client;
mod download;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use zonevisor_api::{
    ApiError, AvailableImage, AvailableImages, ErrorKind, ImageImportRequest, ImageRecord, ImageSource,
    ImageUpdateRequest, ImageUpdateResult, ImageUuid, ImportEvent, SourceAddRequest, SourceAdded, SourceChange,
    SourceChangeKind, SourceCheck, SourceType, SourcesChanged, SourcesDeleted, SourcesReplaceRequest,
};

pub(crate) use client::{Source, SourceError};
use download::Note;

use crate::images::{check_manifest, ImageLocks, Manifest};
use crate::Daemon;

/// Origins followed at most (SmartOS's deepest chains are a handful).
const MAX_ORIGIN_DEPTH: usize = 64;
/// The least time between two progress events of an import.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The daemon's state for images from sources.
#[derive(Default)]
pub(crate) struct State {
    /// One install, import or delete per image at a time.
    pub(crate) locks: ImageLocks,
    /// Changes to the source list, one at a time.
    sources: Mutex<()>,
}

/// What `imgadm import` was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ImportArg {
    /// An image by uuid.
    Uuid(ImageUuid),
    /// The latest active image of this name, or of this name and version.
    Name {
        /// `name`.
        name: String,
        /// `version`.
        version: Option<String>,
    },
}

impl ImportArg {
    /// A uuid, `name` or `name@version`.
    pub(crate) fn parse(arg: &str) -> Result<ImportArg, ApiError> {
        if let Ok(u) = arg.parse::<ImageUuid>() {
            return Ok(ImportArg::Uuid(u));
        }
        let bad = || {
            ApiError::invalid(format!(
                "invalid image-id arg: {arg:?} (give an image's uuid, or its name and optionally @version)"
            ))
        };
        let (name, version) = match arg.rsplit_once('@') {
            Some((n, v)) if !v.is_empty() => (n, Some(v.to_string())),
            Some(_) => return Err(bad()),
            None => (arg, None),
        };
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 512 && !s.starts_with('-') && !s.chars().any(|c| c.is_whitespace() || c == '/')
        };
        if !ok(name) || version.as_deref().is_some_and(|v| !ok(v)) || name.contains('@') {
            return Err(bad());
        }
        Ok(ImportArg::Name { name: name.to_string(), version })
    }
}

impl std::fmt::Display for ImportArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportArg::Uuid(u) => write!(f, "{u}"),
            ImportArg::Name { name, version: Some(v) } => write!(f, "{name}@{v}"),
            ImportArg::Name { name, version: None } => write!(f, "{name}"),
        }
    }
}

/// An image found in a source.
struct Found {
    /// Which of the sources searched.
    source: usize,
    manifest: Value,
}

/// A manifest's string field.
fn field<'a>(m: &'a Value, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// `<uuid> (<name>@<version>)`, as SmartOS names an image.
fn title(m: &Value) -> String {
    format!("{} ({}@{})", field(m, "uuid"), field(m, "name"), field(m, "version"))
}

/// SmartOS's human size: one decimal, cut rather than rounded (`40.4 MiB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes == 0 {
        return "0 B".to_string();
    }
    let mut i = 0;
    while i + 1 < UNITS.len() && bytes >= 1024u64.pow(i as u32 + 1) {
        i += 1;
    }
    let tenths = (bytes as u128 * 10) / 1024u128.pow(i as u32);
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[i])
}

/// The fields two manifests differ in, as SmartOS's `imgadm update` names
/// them (`requirements` by its own fields).
pub(crate) fn diff_fields(installed: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let a = installed.as_object().unwrap_or(&empty);
    let b = new.as_object().unwrap_or(&empty);
    let mut diffs = Vec::new();
    for (k, v) in b {
        if k == "requirements" {
            if !a.contains_key(k) {
                diffs.push(k.clone());
            }
            continue;
        }
        if a.get(k) != Some(v) {
            diffs.push(k.clone());
        }
    }
    for k in a.keys() {
        if !b.contains_key(k) {
            diffs.push(k.clone());
        }
    }
    if let (Some(ra), Some(rb)) =
        (a.get("requirements").and_then(Value::as_object), b.get("requirements").and_then(Value::as_object))
    {
        for (k, v) in rb {
            if ra.get(k) != Some(v) {
                diffs.push(format!("requirements.{k}"));
            }
        }
        for k in ra.keys() {
            if !rb.contains_key(k) {
                diffs.push(format!("requirements.{k}"));
            }
        }
    }
    diffs
}

/// Of the images listed under one name, the one an import of the name
/// takes: the latest published (of the types this host installs, when any
/// are), the last listed among equals.
fn latest(images: Vec<Value>) -> Option<Value> {
    let installable = |m: &Value| matches!(m.get("type").and_then(Value::as_str), Some("lx-dataset" | "zvol"));
    let pool: Vec<Value> =
        if images.iter().any(installable) { images.into_iter().filter(installable).collect() } else { images };
    pool.into_iter().fold(None, |best: Option<Value>, m| match &best {
        Some(b) if field(b, "published_at") > field(&m, "published_at") => best,
        _ => Some(m),
    })
}

/// Errors of several sources as one message.
fn joined(errs: &[SourceError]) -> String {
    errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `e`, its message naming the image (`image <uuid> (<name>@<version>): ...`)
/// when it does not already.
fn naming(m: &Value, mut e: ApiError) -> ApiError {
    let uuid = field(m, "uuid");
    if !e.message.contains(&format!("image {uuid}")) && !e.message.contains(&format!("image \"{uuid}\"")) {
        e.message = format!("image {}: {}", title(m), e.message);
    }
    e
}

impl Daemon {
    /// The configured sources.
    pub fn list_sources(&self) -> Result<Vec<ImageSource>, ApiError> {
        Ok(self.store.image_sources()?)
    }

    /// The IMGAPI sources, as clients (a source whose URL cannot be used
    /// is left out, with a warning: its add refused such URLs).
    fn imgapi_sources(&self) -> Result<Vec<Source>, ApiError> {
        let mut out = Vec::new();
        for s in self.store.image_sources()? {
            if s.source_type != SourceType::Imgapi {
                continue;
            }
            match Source::new(&s) {
                Ok(src) => out.push(src),
                Err(e) => tracing::warn!(error = %e, "skipping an image source"),
            }
        }
        Ok(out)
    }

    /// Checks that `s` answers as a server of its type.
    fn ping_source(s: &ImageSource) -> Result<(), ApiError> {
        let src = Source::new(s).map_err(|e| ApiError::invalid(e.to_string()))?;
        let answer = match s.source_type {
            SourceType::Imgapi => src.ping(),
            SourceType::Docker => src.ping_registry(),
        };
        answer.map_err(|e| {
            ApiError::invalid(format!(
                "unexpected ping error with {}: {e} (add it without this check with -f)",
                s.describe()
            ))
        })
    }

    /// `imgadm sources -a`.
    pub fn add_source(&self, req: &SourceAddRequest) -> Result<SourceAdded, ApiError> {
        let _one = self.imgapi.sources.lock().unwrap_or_else(|p| p.into_inner());
        let new = ImageSource { url: req.source.url.trim().to_string(), ..req.source.clone() };
        Source::new(&new).map_err(|e| ApiError::invalid(e.to_string()))?;
        let mut list = self.store.image_sources()?;
        if let Some(have) = list.iter().find(|s| {
            s.normalized_url() == new.normalized_url() && s.source_type == new.source_type && s.insecure == new.insecure
        }) {
            return Ok(SourceAdded { added: false, source: have.clone() });
        }
        if !req.force {
            Self::ping_source(&new)?;
        }
        list.push(new.clone());
        self.store.set_image_sources(&list)?;
        tracing::info!(source = %new.url, kind = %new.source_type, "added image source");
        Ok(SourceAdded { added: true, source: new })
    }

    /// `imgadm sources -d`: every source with this URL.
    pub fn delete_source(&self, url: &str) -> Result<SourcesDeleted, ApiError> {
        let _one = self.imgapi.sources.lock().unwrap_or_else(|p| p.into_inner());
        let norm = zonevisor_api::normalize_url(url);
        let (deleted, kept): (Vec<ImageSource>, Vec<ImageSource>) =
            self.store.image_sources()?.into_iter().partition(|s| s.normalized_url() == norm);
        if !deleted.is_empty() {
            self.store.set_image_sources(&kept)?;
            tracing::info!(source = url, "deleted image source");
        }
        Ok(SourcesDeleted { deleted })
    }

    /// `imgadm sources -e`: the whole list; sources new to it are checked
    /// unless `force`.
    pub fn replace_sources(&self, req: &SourcesReplaceRequest) -> Result<SourcesChanged, ApiError> {
        let _one = self.imgapi.sources.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.store.image_sources()?;
        let new: Vec<ImageSource> =
            req.sources.iter().map(|s| ImageSource { url: s.url.trim().to_string(), ..s.clone() }).collect();
        if new == old {
            return Ok(SourcesChanged { changes: Vec::new() });
        }
        for s in &new {
            Source::new(s).map_err(|e| ApiError::invalid(e.to_string()))?;
        }
        let mut changes = Vec::new();
        for s in &old {
            if !new.contains(s) {
                changes.push(SourceChange { kind: SourceChangeKind::Del, source: Some(s.clone()) });
            }
        }
        let kept_old: Vec<&ImageSource> = old.iter().filter(|s| new.contains(s)).collect();
        let kept_new: Vec<&ImageSource> = new.iter().filter(|s| old.contains(s)).collect();
        if changes.is_empty() && kept_old != kept_new {
            changes.push(SourceChange { kind: SourceChangeKind::Reorder, source: None });
        }
        for s in &new {
            if !old.contains(s) {
                if !req.force {
                    Self::ping_source(s)?;
                }
                changes.push(SourceChange { kind: SourceChangeKind::Add, source: Some(s.clone()) });
            }
        }
        self.store.set_image_sources(&new)?;
        tracing::info!(sources = new.len(), "replaced the image sources");
        Ok(SourcesChanged { changes })
    }

    /// `imgadm sources -c`.
    pub fn check_sources(&self) -> Result<Vec<SourceCheck>, ApiError> {
        let sources = self.store.image_sources()?;
        Ok(sources
            .iter()
            .map(|s| {
                let r = Self::ping_source(s);
                SourceCheck {
                    url: s.url.clone(),
                    source_type: s.source_type,
                    ok: r.is_ok(),
                    error: r.err().map(|e| e.message),
                }
            })
            .collect())
    }

    /// `imgadm avail`: every IMGAPI source's active images, the first
    /// source listing a uuid winning; a source that does not answer is
    /// reported beside the others' images.
    pub fn available_images(&self) -> Result<AvailableImages, ApiError> {
        let mut out = AvailableImages { images: Vec::new(), errors: Vec::new() };
        let mut seen = std::collections::HashSet::new();
        for src in self.imgapi_sources()? {
            match src.list_images(&[]) {
                Ok(images) => {
                    for m in images {
                        if seen.insert(field(&m, "uuid").to_string()) {
                            out.images.push(AvailableImage { manifest: m, source: src.url.clone() });
                        }
                    }
                }
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        Ok(out)
    }

    /// Finds `arg` in `sources`, in order: a uuid in any state, or only
    /// active (`active`); a name's latest active image. Sources that fail
    /// are skipped when another has it; `Err` when none has it and some
    /// failed.
    fn find(&self, sources: &[Source], arg: &ImportArg, active: bool) -> Result<Option<Found>, Vec<SourceError>> {
        let mut errs = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            let got = match arg {
                ImportArg::Uuid(u) => src
                    .get_image(*u)
                    .map(|m| m.filter(|m| !active || m.get("state").and_then(Value::as_str) == Some("active"))),
                ImportArg::Name { name, version } => {
                    let mut filters = vec![("name", name.as_str())];
                    if let Some(v) = version {
                        filters.push(("version", v.as_str()));
                    }
                    src.list_images(&filters).map(|list| {
                        // A server that ignores the filters is filtered here.
                        let list = list
                            .into_iter()
                            .filter(|m| field(m, "name") == name)
                            .filter(|m| version.as_deref().is_none_or(|v| field(m, "version") == v))
                            .filter(|m| m.get("state").and_then(Value::as_str).is_none_or(|s| s == "active"))
                            .collect();
                        latest(list)
                    })
                }
            };
            match got {
                Ok(Some(manifest)) => {
                    for e in &errs {
                        tracing::warn!(error = %e, image = %arg, "an image source did not answer; another had the image");
                    }
                    return Ok(Some(Found { source: i, manifest }));
                }
                Ok(None) => {}
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() {
            Ok(None)
        } else {
            Err(errs)
        }
    }

    /// `imgadm show`: an image the sources offer, by uuid (any state) or
    /// `name[@version]` (the latest active).
    pub fn available_image(&self, id: &str) -> Result<AvailableImage, ApiError> {
        let arg = ImportArg::parse(id)?;
        let sources = self.imgapi_sources()?;
        match self.find(&sources, &arg, false) {
            Ok(Some(f)) => Ok(AvailableImage { manifest: f.manifest, source: sources[f.source].url.clone() }),
            Ok(None) => Err(ApiError::not_found(format!("image \"{arg}\" was not found"))),
            Err(errs) => Err(ApiError::internal(format!("image \"{arg}\": {}", joined(&errs)))),
        }
    }

    /// `imgadm import`: see the module doc. `emit` hears the import's
    /// messages and progress.
    pub fn import_image(&self, req: &ImageImportRequest, emit: &dyn Fn(ImportEvent)) -> Result<ImageRecord, ApiError> {
        let say = |message: String| emit(ImportEvent::Message { message });
        let arg = ImportArg::parse(req.image.trim())?;
        if let ImportArg::Uuid(u) = arg {
            if let Ok(record) = self.image_record(u) {
                let m = &record.manifest;
                say(format!("Image {u} ({} {}) is already installed, skipping", field(m, "name"), field(m, "version")));
                return Ok(record);
            }
        }
        let sources = match &req.source {
            Some(url) => {
                let s = ImageSource { url: url.clone(), source_type: SourceType::Imgapi, insecure: false };
                vec![Source::new(&s).map_err(|e| ApiError::invalid(e.to_string()))?]
            }
            None => self.imgapi_sources()?,
        };
        if sources.is_empty() {
            return Err(ApiError::invalid(
                "imgadm has no configured IMGAPI sources (add one with imgadm sources -a <url>)",
            ));
        }
        let found = match self.find(&sources, &arg, true) {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(ApiError::not_found(format!("an active image \"{arg}\" was not found in image sources")))
            }
            Err(errs) => return Err(ApiError::internal(format!("image \"{arg}\": {}", joined(&errs)))),
        };
        let src = &sources[found.source];
        let target = found.manifest;
        let target_uuid: ImageUuid = field(&target, "uuid")
            .parse()
            .map_err(|_| ApiError::internal(format!("{} listed an image without a valid uuid for {arg}", src.url)))?;
        if let Ok(record) = self.image_record(target_uuid) {
            let from = record.source.as_deref().map(|s| format!(" from {s}")).unwrap_or_default();
            say(format!("Image {} is already installed{from}", title(&record.manifest)));
            return Ok(record);
        }
        say(format!("Importing {} from \"{}\"", title(&target), src.url));
        say(format!("Gather image {target_uuid} ancestry"));
        let chain = self.ancestry(src, target_uuid, target, &say)?;
        let total: u64 = chain.iter().map(|m| m.size).sum();
        let n = chain.len();
        say(format!("Must download and install {n} image{} ({})", if n == 1 { "" } else { "s" }, human_size(total)));
        let mut done_before = 0u64;
        let mut last = (Instant::now() - PROGRESS_EVERY, None);
        for m in chain.iter().rev() {
            let lock = match self.imgapi.locks.try_lock(m.uuid) {
                Some(l) => l,
                None => {
                    say(format!("Waiting for another import of image {}", title(&m.value)));
                    self.imgapi.locks.lock(m.uuid)
                }
            };
            if self.image_record(m.uuid).is_ok() {
                say(format!("Image {} was imported while waiting on lock", title(&m.value)));
                drop(lock);
                done_before += m.size;
                continue;
            }
            let mut note = |n: Note| match n {
                Note::Bytes(b) => {
                    let done = done_before + b;
                    if last.1 != Some(done) && (last.0.elapsed() >= PROGRESS_EVERY || b == m.size) {
                        last = (Instant::now(), Some(done));
                        emit(ImportEvent::Progress { done, total });
                    }
                }
                Note::Message(message) => emit(ImportEvent::Message { message }),
            };
            let downloaded = self.download_file(src, m, &mut note).map_err(|e| naming(&m.value, e))?;
            say(format!("Downloaded image {} ({})", m.uuid, human_size(m.size)));
            let installed = self.install_verified(m, downloaded.file, &downloaded.path, Some(&src.url));
            match &installed {
                Ok(_) => self.forget_download(m.uuid),
                // A failed install may have filled the pool: its space back first.
                Err(_) => self.drop_download(m.uuid),
            }
            installed.map_err(|e| naming(&m.value, e))?;
            drop(lock);
            done_before += m.size;
            say(format!("Imported image {}", title(&m.value)));
        }
        self.image_record(target_uuid)
    }

    /// The images to install for `target` from `src`: it, its origin, and
    /// so on up to an installed origin (or one without origin), each
    /// manifest checked; the target first.
    fn ancestry(
        &self,
        src: &Source,
        target_uuid: ImageUuid,
        target: Value,
        say: &dyn Fn(String),
    ) -> Result<Vec<Manifest>, ApiError> {
        let check = |m: &Value, child: Option<ImageUuid>| -> Result<Manifest, ApiError> {
            let what = match child {
                Some(c) => format!("image {} (origin of {c})", title(m)),
                None => format!("image {}", title(m)),
            };
            let checked = check_manifest(m).map_err(|errs| ApiError {
                kind: ErrorKind::Invalid,
                message: format!("{what}: its manifest from {} is not valid: {}", src.url, errs.summary()),
                validation: Some(Box::new(errs)),
            })?;
            if checked.uuid.to_string() != field(m, "uuid") {
                return Err(ApiError::invalid(format!("{what}: the source answered with another image's manifest")));
            }
            Ok(checked)
        };
        let first = check(&target, None)?;
        if first.uuid != target_uuid {
            return Err(ApiError::invalid(format!("image {target_uuid}: the source answered another image")));
        }
        let mut chain = vec![first];
        while let Some(origin) = chain.last().and_then(|m| m.origin) {
            let child = chain.last().map(|m| m.uuid);
            if chain.iter().any(|m| m.uuid == origin) {
                return Err(ApiError::invalid(format!(
                    "image {target_uuid}: its origin chain comes back to image {origin}"
                )));
            }
            if chain.len() > MAX_ORIGIN_DEPTH {
                return Err(ApiError::invalid(format!(
                    "image {target_uuid}: its origin chain is deeper than {MAX_ORIGIN_DEPTH} images"
                )));
            }
            if self.image_record(origin).is_ok() {
                say(format!("Image {origin} already installed"));
                break;
            }
            let m = match src.get_image(origin) {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return Err(ApiError::not_found(format!(
                        "image {target_uuid}: its origin image {origin} was not found in image source {}",
                        src.url
                    )))
                }
                Err(e) => {
                    return Err(ApiError::internal(format!("image {target_uuid}: getting its origin {origin}: {e}")))
                }
            };
            chain.push(check(&m, child)?);
        }
        Ok(chain)
    }

    /// `imgadm update`: the installed images' manifests fetched again from
    /// the sources (any state); what changed is stored (not with `dry_run`)
    /// and said in SmartOS's words.
    pub fn update_images(&self, req: &ImageUpdateRequest) -> Result<ImageUpdateResult, ApiError> {
        let installed = self.list_images()?;
        let uuid_of = |r: &ImageRecord| field(&r.manifest, "uuid").parse::<ImageUuid>().ok();
        let images: Vec<ImageRecord> = if req.uuids.is_empty() {
            installed
        } else {
            let missing: Vec<String> = req
                .uuids
                .iter()
                .filter(|u| !installed.iter().any(|r| uuid_of(r) == Some(**u)))
                .map(ToString::to_string)
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::not_found(format!(
                    "no installed image with the given UUID(s): {}",
                    missing.join(", ")
                )));
            }
            installed.into_iter().filter(|r| uuid_of(r).is_some_and(|u| req.uuids.contains(&u))).collect()
        };
        let sources = self.imgapi_sources()?;
        let mut out = ImageUpdateResult::default();
        for record in images {
            let Some(uuid) = uuid_of(&record) else { continue };
            let found = match self.find(&sources, &ImportArg::Uuid(uuid), false) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if field(&record.manifest, "type") != "docker" {
                        out.messages.push(format!("warning: Could not find image {uuid} in image sources (skipping)"));
                    }
                    continue;
                }
                Err(errs) => {
                    out.errors.push(format!("image {uuid}: {}", joined(&errs)));
                    continue;
                }
            };
            let url = &sources[found.source].url;
            let new = found.manifest;
            if new == record.manifest {
                continue;
            }
            let diffs = diff_fields(&record.manifest, &new);
            if diffs.is_empty() {
                continue;
            }
            match check_manifest(&new) {
                Ok(m) if m.uuid == uuid && field(&new, "type") == field(&record.manifest, "type") => {}
                Ok(_) => {
                    out.errors.push(format!("image {uuid}: {url} has it as another uuid or type; not updated"));
                    continue;
                }
                Err(errs) => {
                    out.errors.push(format!("image {uuid}: its manifest from {url} is not valid: {}", errs.summary()));
                    continue;
                }
            }
            let msg = if record.manifest.get("name").is_none() {
                format!("Added manifest info for image {uuid} from \"{url}\"")
            } else {
                format!(
                    "Updated {} manifest field{} for image {uuid} from \"{url}\": {}",
                    diffs.len(),
                    if diffs.len() == 1 { "" } else { "s" },
                    diffs.join(", ")
                )
            };
            if !req.dry_run {
                let _lock = self.imgapi.locks.lock(uuid);
                if self.image_record(uuid).is_err() {
                    continue;
                }
                self.store.set_image_manifest(uuid, &new)?;
                self.store.set_image_source(uuid, url)?;
                tracing::info!(image = %uuid, source = %url, fields = %diffs.join(","), "updated image manifest");
            }
            out.messages.push(msg);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn import_args_are_uuids_or_names() {
        let u = "0764d78e-3472-11e5-8949-4f31abea4e05";
        assert_eq!(ImportArg::parse(u).unwrap(), ImportArg::Uuid(u.parse().unwrap()));
        assert_eq!(ImportArg::parse("base-64").unwrap(), ImportArg::Name { name: "base-64".into(), version: None });
        assert_eq!(
            ImportArg::parse("base-64@15.4.1").unwrap(),
            ImportArg::Name { name: "base-64".into(), version: Some("15.4.1".into()) }
        );
        assert_eq!(ImportArg::parse("base-64@15.4.1").unwrap().to_string(), "base-64@15.4.1");
        for bad in ["", "a@", "@1", "a b", "-x", "a@b@c", "docker.io/library/busybox"] {
            let e = ImportArg::parse(bad).unwrap_err();
            assert!(e.message.contains("invalid image-id arg"), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_are_smartos_human_sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512.0 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(42_364_928), "40.4 MiB");
        assert_eq!(human_size(1_073_741_823), "1023.9 MiB", "cut, not rounded");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }

    #[test]
    fn manifest_diffs_name_fields_as_smartos_does() {
        let a = json!({"uuid": "u", "name": "n", "tags": {"a": 1}, "requirements": {"brand": "lx", "min_ram": 1}});
        let b = json!({"uuid": "u", "name": "n", "tags": {"a": 2}, "description": "d",
                       "requirements": {"brand": "lx", "max_ram": 2}});
        assert_eq!(diff_fields(&a, &b), ["tags", "description", "requirements.max_ram", "requirements.min_ram"]);
        assert!(diff_fields(&a, &a).is_empty());
        let bare = json!({"uuid": "u"});
        assert_eq!(diff_fields(&bare, &a), ["name", "tags", "requirements"]);
    }

    #[test]
    fn a_name_imports_its_latest_installable_version() {
        let m = |v: &str, at: &str, t: &str| json!({"version": v, "published_at": at, "type": t});
        let list = vec![
            m("1", "2024-01-01T00:00:00Z", "lx-dataset"),
            m("3", "2024-03-01T00:00:00Z", "lx-dataset"),
            m("2", "2024-02-01T00:00:00Z", "lx-dataset"),
            m("4", "2024-04-01T00:00:00Z", "zone-dataset"),
        ];
        assert_eq!(latest(list).unwrap()["version"], "3");
        assert_eq!(latest(vec![m("4", "2024-04-01T00:00:00Z", "zone-dataset")]).unwrap()["version"], "4");
        assert!(latest(Vec::new()).is_none());
    }
}
