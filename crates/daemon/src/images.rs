//! Images: SmartOS manifest v2 plus one file, installed as a read-only
//! dataset named by the image's uuid.
//!
//! ```text
//! <pool>/<image-uuid>/            the image's dataset, read-only once installed (SmartOS's @final)
//!   root/                         lx-dataset: the root filesystem, which zones clone in O(1)
//!   disk.raw                      zvol: the disk, raw and sparse, exactly image_size MiB long,
//!                                 which a VM's disk clones by reflink (pool volumes)
//! ```
//!
//! An install verifies the manifest and the file's size and SHA-1 (and
//! SHA-256 where the manifest gives one) before it touches the pool,
//! records the image as `installing`, fills the dataset, marks it
//! read-only and only then records it `ready`. Any failure destroys the
//! dataset and the row: a failed install leaves nothing. An image file
//! downloaded from a source ([`crate::imgapi`]) was verified as it
//! arrived and is installed by the same steps ([`Daemon::install_verified`]).
//! One install (or import, or delete) of an image runs at a time: the
//! others wait for it ([`ImageLocks`]) and then find it installed.
//!
//! An image with an `origin` (an incremental image, SmartOS's ZFS clone of
//! its origin's `@final`) is installed over a clone of its origin's
//! dataset, which must be installed; its file is extracted into that
//! clone's `root/`. An image that is another installed image's origin is
//! one of its clones (`clones`), and cannot be deleted before it.
//!
//! - **lx-dataset**: the file is a tarball (plain, gzip, xz or zstd, told
//!   by its magic), extracted into `root/`.
//! - **zvol** (a hardware VM's disk): the file, decompressed the same way,
//!   is a raw disk or a qcow2 one, told by its magic (`QFI\xfb`), never by
//!   its name. A raw disk is written with its zero blocks left as holes; a
//!   qcow2 one is converted by `qemu-img convert -O raw` (bounded in time,
//!   its stderr in the error; no backing file, external data file or
//!   encryption is accepted, so an image can read nothing of the host's).
//!   Then the disk is padded (sparse) to `image_size` MiB, the disk size
//!   SmartOS's manifests give and VMs' disks start from.
//!
//! A decompression bomb cannot fill the pool past its reserve (every
//! dataset is in the pool's datasets qgroup); a zvol's disk is bounded
//! tighter, by its manifest: a raw disk may not exceed `image_size`, a
//! qcow2 disk's virtual size may not either (and its compressed-away file
//! not by more than its metadata could need), and the install stops as
//! soon as the stream says otherwise, refusing `image_size`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use zonevisor_api::{ApiError, ImageRecord, ImageUuid, ValidationErrors};

use crate::layer::{copy_sparse, CopyError};
use crate::Daemon;

/// Image types a manifest may declare (IMGAPI).
const IMAGE_TYPES: &[&str] = &["zone-dataset", "lx-dataset", "zvol", "docker", "other"];
/// Image types this host can install today (`docker`: a root file system
/// for lx zones, as `imgadm import <reference>` makes them from a
/// registry, or from one flattened layer file).
const INSTALLABLE_TYPES: &[&str] = &["lx-dataset", "zvol", "docker"];
/// Operating systems a manifest may declare.
const IMAGE_OS: &[&str] = &["smartos", "linux", "windows", "bsd", "illumos", "other"];
/// The volume, in a zvol image's dataset, holding its disk.
pub(crate) const IMAGE_VOLUME: &str = "disk.raw";
/// Where a compressed qcow2 disk is decompressed to before its conversion
/// (in the image's dataset, so a failed install takes it along).
const QCOW2_VOLUME: &str = "disk.qcow2";
/// The largest `image_size` accepted, in MiB (1 PiB).
const MAX_IMAGE_SIZE_MIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A manifest that passed validation, with what the daemon needs from it.
pub struct Manifest {
    pub uuid: ImageUuid,
    pub value: Value,
    pub sha1: String,
    /// `files[0].sha256`, or the hex of a `files[0].digest` of `sha256:<hex>`
    /// (IMGAPI's docker images), lowercase: checked too where given.
    pub sha256: Option<String>,
    pub size: u64,
    /// `origin`: the image this one is incremental on.
    pub origin: Option<ImageUuid>,
    /// `type` (one of the installable types).
    pub image_type: String,
    /// `image_size` in MiB: a zvol's disk size (required for zvol images).
    pub image_size_mib: Option<u64>,
}

/// Checks a manifest (v2) and returns its identity and file facts, or the
/// SmartOS-shaped list of what is wrong.
pub fn check_manifest(m: &Value) -> Result<Manifest, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let Some(obj) = m.as_object() else {
        errs.bad_value("manifest", "must be a JSON object");
        return Err(errs);
    };
    let s = |k: &str| obj.get(k).and_then(Value::as_str);
    match obj.get("v") {
        Some(v) if v.as_u64() == Some(2) || v.as_str() == Some("2") => {}
        Some(_) => errs.bad_value("v", "manifest version must be 2"),
        None => errs.missing("v", "manifest version (2) is required"),
    }
    let uuid = match obj.get("uuid") {
        None => {
            errs.missing("uuid", "is required");
            None
        }
        Some(v) => match v.as_str().map(str::parse::<ImageUuid>) {
            Some(Ok(u)) => Some(u),
            _ => {
                errs.bad_value("uuid", "must be a UUID (8-4-4-4-12 hex digits)");
                None
            }
        },
    };
    for key in ["name", "version"] {
        match obj.get(key) {
            None => errs.missing(key, "is required"),
            Some(Value::String(v)) if !v.is_empty() && v.len() <= 512 => {}
            Some(_) => errs.bad_value(key, "must be a non-empty string"),
        }
    }
    match s("type") {
        None => errs.missing("type", "is required"),
        Some(t) if !IMAGE_TYPES.contains(&t) => {
            errs.bad_value("type", format!("must be one of {}", IMAGE_TYPES.join(", ")))
        }
        Some(t) if !INSTALLABLE_TYPES.contains(&t) => errs.bad_value(
            "type",
            format!(
                "{t} images cannot be installed on this host yet; zones use lx-dataset or docker images, \
                 hardware VMs zvol images"
            ),
        ),
        Some(_) => {}
    }
    let zvol = s("type") == Some("zvol");
    let image_size_mib = match obj.get("image_size") {
        None if zvol => {
            errs.missing("image_size", "is required for images of type zvol (the disk's size in MiB)");
            None
        }
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_IMAGE_SIZE_MIB).contains(&n) => Some(n),
            _ => {
                errs.bad_value("image_size", format!("must be a whole number of MiB from 1 to {MAX_IMAGE_SIZE_MIB}"));
                None
            }
        },
    };
    match s("os") {
        None => errs.missing("os", "is required"),
        Some(o) if !IMAGE_OS.contains(&o) => errs.bad_value("os", format!("must be one of {}", IMAGE_OS.join(", "))),
        Some(o) if matches!(s("type"), Some("lx-dataset" | "docker")) && o != "linux" => {
            errs.bad_value("os", format!("{} images must have os linux", s("type").unwrap_or_default()))
        }
        Some(_) => {}
    }
    let origin = match obj.get("origin") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().map(str::parse::<ImageUuid>) {
            Some(Ok(o)) if Some(o) == uuid => {
                errs.bad_value("origin", "an image cannot be its own origin");
                None
            }
            Some(Ok(o)) if zvol => {
                errs.bad_value("origin", format!("incremental zvol images (origin {o}) are not supported"));
                None
            }
            Some(Ok(o)) => Some(o),
            _ => {
                errs.bad_value("origin", "must be the UUID of the image this one is incremental on");
                None
            }
        },
    };
    if let Some(st) = obj.get("state") {
        if !matches!(st.as_str(), Some("active" | "unactivated" | "disabled" | "creating" | "failed")) {
            errs.bad_value("state", "must be active, unactivated, disabled, creating or failed");
        }
    }
    let mut sha1 = String::new();
    let mut sha256 = None;
    let mut size = 0;
    match obj.get("files").and_then(Value::as_array) {
        None => errs.missing("files", "exactly one file entry is required"),
        Some(files) if files.len() != 1 => errs.bad_value("files", "must hold exactly one file entry"),
        Some(files) => {
            let f = &files[0];
            match f.get("sha1").and_then(Value::as_str) {
                Some(h) if h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()) => sha1 = h.to_ascii_lowercase(),
                Some(_) => errs.bad_value("files.0.sha1", "must be 40 hex digits"),
                None => errs.missing("files.0.sha1", "is required"),
            }
            let hex64 = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
            match f.get("sha256").and_then(Value::as_str) {
                Some(h) if hex64(h) => sha256 = Some(h.to_ascii_lowercase()),
                Some(_) => errs.bad_value("files.0.sha256", "must be 64 hex digits"),
                None if f.get("sha256").is_some() => errs.bad_value("files.0.sha256", "must be 64 hex digits"),
                None => {}
            }
            if let Some(d) = f.get("digest") {
                match d.as_str().map(|d| d.split_once(':')) {
                    Some(Some(("sha256", h))) if hex64(h) => match &sha256 {
                        Some(other) if !other.eq_ignore_ascii_case(h) => {
                            errs.bad_value("files.0.digest", "names another sha256 than files.0.sha256")
                        }
                        _ => sha256 = Some(h.to_ascii_lowercase()),
                    },
                    // Another algorithm: not one this host checks, and not refused.
                    Some(Some((alg, h))) if !alg.is_empty() && !h.is_empty() && alg != "sha256" => {}
                    _ => errs.bad_value("files.0.digest", "must be <algorithm>:<hex>, e.g. sha256:<64 hex digits>"),
                }
            }
            match f.get("size").and_then(Value::as_u64) {
                Some(n) => size = n,
                None if f.get("size").is_some() => errs.bad_value("files.0.size", "must be a non-negative integer"),
                None => errs.missing("files.0.size", "is required"),
            }
            if let Some(c) = f.get("compression") {
                if !matches!(c.as_str(), Some("gzip" | "bzip2" | "xz" | "zstd" | "none")) {
                    errs.bad_value("files.0.compression", "must be gzip, bzip2, xz, zstd or none");
                }
            }
        }
    }
    if let Some(brand) = obj.get("requirements").and_then(|r| r.get("brand")) {
        match (s("type"), brand.as_str()) {
            (Some("zvol"), Some("kvm" | "bhyve")) | (Some("lx-dataset" | "docker"), Some("lx")) => {}
            (Some("zvol"), _) => {
                errs.bad_value("requirements.brand", "zvol images (disks) can only require brand kvm or bhyve")
            }
            (Some("lx-dataset"), _) => {
                errs.bad_value("requirements.brand", "lx-dataset images can only require brand lx")
            }
            (Some("docker"), _) => errs.bad_value("requirements.brand", "docker images can only require brand lx"),
            // Another type, refused above already.
            _ => {}
        }
    }
    match (errs.is_empty(), uuid) {
        (true, Some(uuid)) => Ok(Manifest {
            uuid,
            value: m.clone(),
            sha1,
            sha256,
            size,
            origin,
            image_type: s("type").unwrap_or_default().to_string(),
            image_size_mib,
        }),
        _ => Err(errs),
    }
}

/// Verifies the file's size and SHA-1 against the manifest.
fn verify_file(file: &mut File, path: &Path, m: &Manifest) -> Result<(), ApiError> {
    let len = file
        .metadata()
        .map_err(|e| ApiError::invalid(format!("cannot read image file {}: {e}", path.display())))?
        .len();
    let mut errs = ValidationErrors::default();
    if len != m.size {
        errs.bad_value("files.0.size", format!("manifest says {} bytes but {} has {len}", m.size, path.display()));
        return Err(ApiError::validation(errs));
    }
    let mut hashes = FileHashes::new(m);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
    }
    if let Some(errs) = hashes.check(m, &path.display().to_string()) {
        return Err(ApiError::validation(errs));
    }
    file.rewind().map_err(|e| ApiError::internal(format!("rewinding {}: {e}", path.display())))?;
    Ok(())
}

/// The digests of an image file, computed as its bytes go by (read from a
/// file, or as they arrive from a source), to check against its manifest.
pub(crate) struct FileHashes {
    sha1: Sha1,
    /// Only when the manifest gives one.
    sha256: Option<Sha256>,
}

impl FileHashes {
    /// Empty digests of what `m` names.
    pub(crate) fn new(m: &Manifest) -> FileHashes {
        FileHashes { sha1: Sha1::new(), sha256: m.sha256.as_ref().map(|_| Sha256::new()) }
    }

    /// Adds the next bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha1.update(bytes);
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
    }

    /// What does not match `m`, in SmartOS's shape, saying what `what`
    /// (the file, or the download) hashed to; `None` when all match.
    pub(crate) fn check(self, m: &Manifest, what: &str) -> Option<ValidationErrors> {
        let mut errs = ValidationErrors::default();
        let got = hex::encode(self.sha1.finalize());
        if got != m.sha1 {
            errs.bad_value("files.0.sha1", format!("{what} has sha1 {got}, the manifest says {}", m.sha1));
        }
        if let (Some(h), Some(want)) = (self.sha256, &m.sha256) {
            let got = hex::encode(h.finalize());
            if &got != want {
                errs.bad_value("files.0.sha256", format!("{what} has sha256 {got}, the manifest says {want}"));
            }
        }
        (!errs.is_empty()).then_some(errs)
    }
}

/// One install, import or delete of an image at a time: the per-image
/// locks. A second caller waits until the first is done (and then finds
/// the image installed, or gone).
#[derive(Default)]
pub(crate) struct ImageLocks {
    held: Mutex<HashSet<ImageUuid>>,
    freed: Condvar,
}

/// An image's lock, held until dropped.
pub(crate) struct ImageLock<'a> {
    locks: &'a ImageLocks,
    uuid: ImageUuid,
}

impl ImageLocks {
    /// Takes `uuid`'s lock, waiting while another holds it.
    pub(crate) fn lock(&self, uuid: ImageUuid) -> ImageLock<'_> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.contains(&uuid) {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.insert(uuid);
        ImageLock { locks: self, uuid }
    }

    /// Takes `uuid`'s lock if no one holds it.
    pub(crate) fn try_lock(&self, uuid: ImageUuid) -> Option<ImageLock<'_>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        // Lazily: a lock made and dropped here would free the holder's.
        held.insert(uuid).then(|| ImageLock { locks: self, uuid })
    }
}

impl Drop for ImageLock<'_> {
    fn drop(&mut self) {
        self.locks.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.uuid);
        self.locks.freed.notify_all();
    }
}

/// The file's stream, decompressed as its first bytes say (gzip, xz,
/// zstd; anything else is read as it is), and the compression's name.
fn decompress(file: File) -> std::io::Result<(Box<dyn Read>, Option<&'static str>)> {
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 6];
    let n = {
        let buf = reader.fill_buf()?;
        let n = buf.len().min(6);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    let magic = &magic[..n];
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        (Box::new(flate2::read::MultiGzDecoder::new(reader)), Some("gzip"))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        (Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)), Some("xz"))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        (Box::new(zstd::stream::read::Decoder::with_buffer(reader)?), Some("zstd"))
    } else if magic.starts_with(b"BZh") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "bzip2 image files are not supported; recompress with gzip, xz or zstd",
        ));
    } else {
        (Box::new(reader), None)
    })
}

/// Extracts a (possibly compressed) tarball into `dest` as a layer
/// ([`crate::layer::apply`]: whiteouts honoured, owners, modes, xattrs
/// and special files kept, every path resolved inside `dest`).
fn extract(file: File, dest: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(file);
    if reader.fill_buf()?.starts_with(b"BZh") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "bzip2 image files are not supported; recompress with gzip, xz or zstd",
        ));
    }
    crate::layer::apply(reader, dest).map(|_| ())
}

/// The first bytes of a qcow2 disk (any version).
const QCOW2_MAGIC: &[u8] = b"QFI\xfb";

/// A host tool's run that ended: its exit status, stdout and stderr (each
/// cut at a bound).
struct ToolRun {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Why a host tool's run did not give an answer.
#[derive(Debug, thiserror::Error)]
enum ToolError {
    /// It could not start.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran out of time and was killed.
    #[error("{program} did not finish within {} s and was killed", limit.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// Its time.
        limit: Duration,
    },
}

/// Reads `pipe` to its end, keeping the first `keep` bytes.
fn drain(mut pipe: impl Read + Send + 'static, keep: usize) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = keep.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    })
}

/// Runs `program args…` with no stdin for at most `limit`, killing it
/// then. Keeps 1 MiB of its stdout and 16 KiB of its stderr.
fn run_bounded(program: &str, args: &[&OsStr], limit: Duration) -> Result<ToolRun, ToolError> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::Spawn { program: program.to_string(), source })?;
    let stdout = child.stdout.take().map(|p| drain(p, 1 << 20));
    let stderr = child.stderr.take().map(|p| drain(p, 16 << 10));
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < limit => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => {
                if let Err(e) = &other {
                    tracing::warn!(program, error = %e, "cannot wait for a host tool; killing it");
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(ToolError::TimedOut { program: program.to_string(), limit });
            }
        }
    };
    let joined = |h: Option<std::thread::JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(ToolRun { status, stdout: joined(stdout), stderr: joined(stderr) })
}

/// What `qemu-img info` says of a qcow2 disk that matters here.
#[derive(Debug, PartialEq, Eq)]
struct Qcow2Info {
    virtual_size: u64,
    /// Why the disk cannot be installed, if it cannot: it reads other
    /// files (a backing file, an external data file) or is encrypted.
    refused: Option<String>,
}

/// Reads `qemu-img info --output=json`'s answer.
fn parse_qcow2_info(json: &str) -> Result<Qcow2Info, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("unreadable qemu-img info output: {e}"))?;
    let virtual_size =
        v.get("virtual-size").and_then(Value::as_u64).ok_or("qemu-img info gave no virtual-size".to_string())?;
    let data = v.pointer("/format-specific/data");
    let refused = if let Some(backing) = v.get("backing-filename").and_then(Value::as_str) {
        Some(format!("it has a backing file ({backing}); an image must hold its whole disk"))
    } else if let Some(file) = data.and_then(|d| d.get("data-file")).and_then(Value::as_str) {
        Some(format!("its data is in an external file ({file}); an image must hold its whole disk"))
    } else if v.get("encrypted").and_then(Value::as_bool) == Some(true) {
        Some("it is encrypted".to_string())
    } else {
        None
    };
    Ok(Qcow2Info { virtual_size, refused })
}

/// `qemu-img`'s `json:` name for the qcow2 disk at `path` opened with no
/// backing file whatever its header says (so a disk swapped after
/// `qemu-img info` still reads nothing but itself), as an argument.
fn qcow2_source(path: &Path) -> std::ffi::OsString {
    let spec = serde_json::json!({
        "driver": "qcow2",
        "backing": null,
        "file": {"driver": "file", "filename": path.to_string_lossy()},
    });
    format!("json:{spec}").into()
}

/// How long `qemu-img convert` may take for a disk of `bytes`: 2 minutes,
/// and a minute more per GiB (a slow disk writes 20 MB/s).
fn convert_time(bytes: u64) -> Duration {
    Duration::from_secs(120 + 60 * bytes.div_ceil(1 << 30))
}

impl Daemon {
    /// `imgadm install`.
    pub fn install_image(&self, manifest: &Value, file_path: &str) -> Result<ImageRecord, ApiError> {
        let m = check_manifest(manifest).map_err(ApiError::validation)?;
        let path = Path::new(file_path);
        if !path.is_absolute() {
            return Err(ApiError::invalid(format!("image file path {file_path:?} must be absolute")));
        }
        let mut file = File::open(path)
            .map_err(|e| ApiError::invalid(format!("cannot open image file {}: {e}", path.display())))?;
        verify_file(&mut file, path, &m)?;
        let _lock = self.imgapi.locks.lock(m.uuid);
        self.install_verified(&m, file, path, None)
    }

    /// Installs the image of manifest `m` from `file` (at `path`), which
    /// was checked against `m` (size and digests) already; `source` is the
    /// URL it was imported from. The caller holds the image's lock
    /// ([`ImageLocks`]). See the module doc.
    pub(crate) fn install_verified(
        &self,
        m: &Manifest,
        file: File,
        path: &Path,
        source: Option<&str>,
    ) -> Result<ImageRecord, ApiError> {
        if self.store.get_image(m.uuid)?.is_some() {
            return Err(ApiError::conflict(format!("image {} is already installed", m.uuid)));
        }
        let name = m.uuid.to_string();
        if self.pool.exists(&name) {
            return Err(ApiError::conflict(format!("dataset {name} already exists in pool {}", self.pool.name())));
        }
        // The origin may not be deleted between its check and its clone.
        let _origin_lock = m.origin.map(|o| self.imgapi.locks.lock(o));
        if let Some(origin) = m.origin {
            match self.store.get_image(origin)? {
                Some(row) if row.phase == "ready" && row.manifest.get("type") == m.value.get("type") => {}
                Some(row) if row.phase == "ready" => {
                    return Err(ApiError::invalid(format!(
                        "image {}: its origin image {origin} is of type {}, not {}",
                        m.uuid,
                        row.manifest.get("type").and_then(Value::as_str).unwrap_or("?"),
                        m.image_type
                    )))
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "image {}: origin image \"{origin}\" is not installed on zpool \"{}\"",
                        m.uuid,
                        self.pool.name()
                    )))
                }
            }
        }
        self.store.insert_image(m.uuid, "installing", &m.value)?;
        let mut made = false;
        let result = (|| -> Result<(), ApiError> {
            if let Some(url) = source {
                self.store.set_image_source(m.uuid, url)?;
            }
            let ds = match m.origin {
                Some(origin) => zonevisor_pool::Pool::clone_from(&self.pool, &origin.to_string(), &name)
                    .map_err(|e| self.pool_step_error("clone the origin image's dataset", e))?,
                None => self.pool.create(&name).map_err(|e| self.pool_step_error("create image dataset", e))?,
            };
            made = true;
            if m.image_type == "zvol" {
                self.install_disk(m, file, path)?;
            } else {
                // A root (lx-dataset, docker): the file is a layer laid over
                // nothing, or over its origin's clone (an incremental
                // image), its whiteouts honoured, every path kept inside.
                let root = ds.join("root");
                if m.origin.is_none() {
                    std::fs::create_dir(&root).map_err(|e| step_error("create image root", e))?;
                }
                extract(file, &root).map_err(|e| {
                    if crate::oci::is_full(&e) {
                        ApiError::internal(format!("extract image: pool {} is full", self.pool.name()))
                    } else {
                        ApiError::invalid(format!("image file {}: {e}", path.display()))
                    }
                })?;
            }
            self.pool.set_readonly(&name, true).map_err(|e| step_error("make image read-only", e))?;
            self.store.set_image_phase(m.uuid, "ready")?;
            Ok(())
        })();
        if let Err(e) = result {
            self.rollback_image(m.uuid, made);
            return Err(e);
        }
        self.keep_reserve();
        tracing::info!(image = %m.uuid, source, "installed image");
        self.image_record(m.uuid)
    }

    /// An I/O error while filling an image's dataset, saying so plainly
    /// when the pool is full.
    fn write_error(&self, step: &str, e: std::io::Error) -> ApiError {
        if is_no_space(&e) {
            ApiError::internal(format!("{step}: pool {} is full", self.pool.name()))
        } else {
            step_error(step, e)
        }
    }

    /// Fills a zvol image's (new, empty) dataset with its disk,
    /// [`IMAGE_VOLUME`], from the verified `file` at `path`: see the
    /// module doc.
    fn install_disk(&self, m: &Manifest, file: File, path: &Path) -> Result<(), ApiError> {
        let name = m.uuid.to_string();
        let mib = m.image_size_mib.ok_or_else(|| ApiError::internal("a zvol manifest without image_size"))?;
        let size = mib * MIB;
        let too_big = |what: String| {
            let mut errs = ValidationErrors::default();
            errs.bad_value("image_size", format!("{what} is larger than image_size ({mib} MiB, {size} bytes)"));
            ApiError::validation(errs)
        };
        let read_error = |e: std::io::Error| ApiError::invalid(format!("reading image file {}: {e}", path.display()));
        let (mut stream, compression) = decompress(file).map_err(read_error)?;
        // Told by its first bytes, whatever the file is called.
        let mut head = [0u8; 4];
        let mut n = 0;
        while n < head.len() {
            match stream.read(&mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        let mut stream = std::io::Cursor::new(head[..n].to_vec()).chain(stream);
        let create = |volume: &str, bytes: u64| -> Result<(PathBuf, File), ApiError> {
            let at = self
                .pool
                .create_volume(&name, volume, bytes)
                .map_err(|e| self.pool_step_error("create image disk", e))?;
            let f = File::options().write(true).open(&at).map_err(|e| step_error("open image disk", e))?;
            Ok((at, f))
        };
        if head[..n] != *QCOW2_MAGIC {
            let (_, out) = create(IMAGE_VOLUME, 0)?;
            match copy_sparse(&mut stream, &out, size) {
                Ok(_) => {}
                Err(CopyError::TooBig) => return Err(too_big(format!("the raw disk in {}", path.display()))),
                Err(CopyError::Io(e)) => return Err(self.write_error("write image disk", e)),
            }
            // The disk is image_size long, the end a hole where the file stopped short.
            out.set_len(size).map_err(|e| self.write_error("size image disk", e))?;
            return out.sync_all().map_err(|e| self.write_error("write image disk", e));
        }
        let source = match compression {
            None => path.to_path_buf(),
            Some(_) => {
                // qemu-img reads a disk, not a stream. The bound: the disk
                // plus all the metadata a qcow2 file could need for it.
                let (at, out) = create(QCOW2_VOLUME, 0)?;
                match copy_sparse(&mut stream, &out, size + size / 16 + 64 * MIB) {
                    Ok(_) => at,
                    Err(CopyError::TooBig) => {
                        return Err(too_big(format!("the qcow2 file decompressed from {}", path.display())))
                    }
                    Err(CopyError::Io(e)) => return Err(self.write_error("decompress image disk", e)),
                }
            }
        };
        let info = qemu_img(
            "read the qcow2 disk",
            path,
            &[
                OsStr::new("info"),
                OsStr::new("--output=json"),
                OsStr::new("-f"),
                OsStr::new("qcow2"),
                source.as_os_str(),
            ],
            Duration::from_secs(60),
        )?;
        let info =
            parse_qcow2_info(&info).map_err(|e| ApiError::internal(format!("image file {}: {e}", path.display())))?;
        if let Some(why) = info.refused {
            return Err(ApiError::invalid(format!(
                "image file {}: its qcow2 disk cannot be installed: {why}",
                path.display()
            )));
        }
        if info.virtual_size > size {
            return Err(too_big(format!("the qcow2 disk in {} ({} bytes)", path.display(), info.virtual_size)));
        }
        let (disk, out) = create(IMAGE_VOLUME, size)?;
        let target =
            serde_json::json!({"driver": "raw", "file": {"driver": "file", "filename": disk.to_string_lossy()}});
        let target = std::ffi::OsString::from(format!("json:{target}"));
        let args = [
            OsStr::new("convert"),
            OsStr::new("-q"),
            OsStr::new("-n"),
            OsStr::new("--target-is-zero"),
            OsStr::new("-f"),
            OsStr::new("qcow2"),
            OsStr::new("-O"),
            OsStr::new("raw"),
            &qcow2_source(&source),
            &target,
        ];
        qemu_img("convert the qcow2 disk to raw", path, &args, convert_time(size)).map_err(|e| {
            if e.message.contains("Disk quota exceeded") || e.message.contains("No space left") {
                ApiError::internal(format!("convert image disk: pool {} is full: {}", self.pool.name(), e.message))
            } else {
                e
            }
        })?;
        out.sync_all().map_err(|e| self.write_error("write image disk", e))?;
        if compression.is_some() {
            self.pool.destroy_volume(&name, QCOW2_VOLUME).map_err(|e| step_error("remove the qcow2 file", e))?;
        }
        Ok(())
    }

    /// An installed zvol image's disk, for a VM's disk to clone
    /// ([`zonevisor_pool::Pool::clone_volume`]); `None` when `uuid` is no
    /// installed zvol image.
    pub fn image_volume(&self, uuid: ImageUuid) -> Option<ImageVolume> {
        let row = self.store.get_image(uuid).ok().flatten().filter(|r| r.phase == "ready")?;
        if row.manifest.get("type").and_then(Value::as_str) != Some("zvol") {
            return None;
        }
        let name = uuid.to_string();
        let path = self.pool.volume_path(&name, IMAGE_VOLUME).ok()?;
        let size_bytes = self.pool.volume_size(&name, IMAGE_VOLUME).ok()?;
        Some(ImageVolume { path, size_bytes })
    }

    /// Removes whatever an image install left: its row, and its dataset
    /// when `dataset` says the install made it (an interrupted install's
    /// dataset is its own: the row is recorded only once no dataset holds
    /// the name, and no instance can take an image's uuid).
    pub(crate) fn rollback_image(&self, uuid: ImageUuid, dataset: bool) {
        if dataset {
            // Waiting: an install refused for filling the pool (a bomb)
            // must not leave it full for the zones after it.
            if let Err(e) = self.pool.destroy_and_wait(&uuid.to_string()) {
                tracing::error!(image = %uuid, error = %crate::chain(&e), "rollback: destroy image dataset");
            }
        }
        if let Err(e) = self.store.delete_image(uuid) {
            tracing::error!(image = %uuid, error = %crate::chain(&e), "rollback: delete image row");
        }
    }

    /// `imgadm get`.
    pub fn image_record(&self, uuid: ImageUuid) -> Result<ImageRecord, ApiError> {
        match self.store.get_image(uuid)? {
            Some(row) if row.phase == "ready" => {
                let children = self.child_images(uuid)?.len() as u64;
                Ok(ImageRecord {
                    zpool: self.pool.name().to_string(),
                    clones: self.store.image_clones(uuid)? + children,
                    manifest: row.manifest,
                    source: self.store.image_source(uuid)?,
                })
            }
            _ => Err(ApiError::not_found(format!("image \"{uuid}\" was not found on zpool \"{}\"", self.pool.name()))),
        }
    }

    /// `imgadm list`.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, ApiError> {
        let rows = self.store.list_images()?;
        let mut out = Vec::new();
        for (uuid, row) in &rows {
            if row.phase == "ready" {
                let children = rows.iter().filter(|(_, r)| origin_of(&r.manifest) == Some(*uuid)).count() as u64;
                out.push(ImageRecord {
                    zpool: self.pool.name().to_string(),
                    clones: self.store.image_clones(*uuid)? + children,
                    manifest: row.manifest.clone(),
                    source: self.store.image_source(*uuid)?,
                });
            }
        }
        Ok(out)
    }

    /// The images (installed, or being installed) whose origin is `uuid`.
    fn child_images(&self, uuid: ImageUuid) -> Result<Vec<ImageUuid>, ApiError> {
        let rows = self.store.list_images()?;
        Ok(rows.into_iter().filter(|(_, r)| origin_of(&r.manifest) == Some(uuid)).map(|(u, _)| u).collect())
    }

    /// `imgadm delete`: refused while any instance was cloned from it
    /// (a zone's root, or a VM's disk), or another image has it as origin.
    pub fn delete_image(&self, uuid: ImageUuid) -> Result<(), ApiError> {
        let _lock = self.imgapi.locks.lock(uuid);
        self.image_record(uuid)?;
        let mut users: Vec<String> = self.store.instances_using_image(uuid)?.iter().map(ToString::to_string).collect();
        users.extend(self.child_images(uuid)?.iter().map(ToString::to_string));
        if !users.is_empty() {
            // SmartOS's words, naming the instances made from it.
            return Err(ApiError::conflict(format!(
                "image \"{uuid}\" has dependent clones: {}; delete them first",
                users.join(", ")
            )));
        }
        self.pool.destroy(&uuid.to_string()).map_err(|e| step_error("destroy image dataset", e))?;
        self.store.delete_image(uuid)?;
        self.drop_served_file(uuid);
        tracing::info!(image = %uuid, "deleted image");
        Ok(())
    }
}

/// Whether `e`, or an I/O error it wraps (the tar crate wraps the one of
/// the member it was writing), says the file system is out of space or
/// over its quota.
fn is_no_space(e: &std::io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = err.source();
    }
    false
}

/// A manifest's `origin`, when it names one.
fn origin_of(manifest: &Value) -> Option<ImageUuid> {
    manifest.get("origin").and_then(Value::as_str).and_then(|o| o.parse().ok())
}

/// An installed zvol image's disk ([`Daemon::image_volume`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVolume {
    /// The raw disk file (read-only: the image's dataset is).
    pub path: PathBuf,
    /// Its size in bytes: the manifest's `image_size` MiB.
    pub size_bytes: u64,
}

/// Runs `qemu-img args…` (bounded by `limit`) on the image file at
/// `path` for `what`; its stdout, or an error with its stderr.
fn qemu_img(what: &str, path: &Path, args: &[&OsStr], limit: Duration) -> Result<String, ApiError> {
    match run_bounded("qemu-img", args, limit) {
        Ok(run) if run.status.success() => Ok(run.stdout),
        Ok(run) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (run.status.code(), run.status.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(signal)) => format!("was killed by signal {signal}"),
                (None, None) => run.status.to_string(),
            };
            Err(ApiError::invalid(format!(
                "image file {}: cannot {what}: qemu-img {how}: {}",
                path.display(),
                run.stderr
            )))
        }
        Err(e @ ToolError::Spawn { .. }) => {
            Err(ApiError::internal(format!("{what}: {e} (qemu-img comes with Debian's qemu-utils)")))
        }
        Err(e) => Err(ApiError::internal(format!("image file {}: cannot {what}: {e}", path.display()))),
    }
}

/// An internal error that names the step that failed and its causes.
pub(crate) fn step_error(step: &str, e: impl std::error::Error) -> ApiError {
    ApiError::internal(format!("{step}: {}", crate::chain(&e)))
}

/// [`step_error`] for an operation on pool `pool`, saying so plainly
/// when the pool is full (its datasets hold all it has but the reserve).
pub(crate) fn pool_error(pool: &str, step: &str, e: zonevisor_pool::PoolError) -> ApiError {
    if e.is_no_space() {
        ApiError::internal(format!(
            "{step}: pool {pool} is full (free space for datasets: none; delete instances or images): {}",
            crate::chain(&e)
        ))
    } else {
        step_error(step, e)
    }
}

impl Daemon {
    /// [`pool_error`] on this daemon's pool.
    pub(crate) fn pool_step_error(&self, step: &str, e: zonevisor_pool::PoolError) -> ApiError {
        pool_error(self.pool.name(), step, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({"v": 2, "uuid": "6e3a0bbc-3c2f-4b0e-9a1d-1f2e3d4c5b6a", "name": "busybox", "version": "1.0",
               "type": "lx-dataset", "os": "linux", "state": "active",
               "files": [{"sha1": "da39a3ee5e6b4b0d3255bfef95601890afd80709", "size": 0, "compression": "none"}]})
    }

    #[test]
    fn accepts_a_good_manifest() {
        let m = check_manifest(&good()).unwrap();
        assert_eq!(m.uuid.to_string(), "6e3a0bbc-3c2f-4b0e-9a1d-1f2e3d4c5b6a");
        assert_eq!(m.size, 0);
    }

    #[test]
    fn names_each_bad_field() {
        let mut m = good();
        m["v"] = json!(1);
        m["uuid"] = json!("nope");
        m["type"] = json!("zone-dataset");
        m["files"][0]["sha1"] = json!("xyz");
        m.as_object_mut().unwrap().remove("name");
        let e = check_manifest(&m).err().unwrap();
        assert_eq!(e.missing_properties, vec!["name"]);
        for k in ["v", "uuid", "type", "files.0.sha1"] {
            assert!(e.bad_values.contains(&k.to_string()), "{k} in {:?}", e.bad_values);
        }
        assert!(e.reasons["type"].contains("cannot be installed"), "{:?}", e.reasons);
    }

    fn tarball() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_cksum();
        b.append_data(&mut h, "./etc/motd", &b"hello"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn extracted(bytes: &[u8]) -> std::io::Result<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, bytes).unwrap();
        let dest = dir.path().join("root");
        std::fs::create_dir(&dest).unwrap();
        extract(File::open(&f)?, &dest)?;
        Ok(dir)
    }

    #[test]
    fn extracts_every_compression_keeping_owners() {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        let plain = tarball();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        let zst = zstd::stream::encode_all(&plain[..], 1).unwrap();
        for (name, bytes) in
            [("tar", plain.clone()), ("gz", gz.finish().unwrap()), ("xz", xz.finish().unwrap()), ("zst", zst)]
        {
            let dir = extracted(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let motd = dir.path().join("root/etc/motd");
            assert_eq!(std::fs::read(&motd).unwrap(), b"hello", "{name}");
            let md = std::fs::metadata(&motd).unwrap();
            assert_eq!(md.mode() & 0o777, 0o640, "{name}");
            if nix::unistd::Uid::effective().is_root() {
                assert_eq!((md.uid(), md.gid()), (1234, 4321), "{name}: owners kept");
            }
        }
        let err = extracted(b"BZh91AY&SY").unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }

    #[test]
    fn members_cannot_escape_the_root() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "./escape", "/tmp").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_cksum();
        let marker = format!("zv-escape-{}", std::process::id());
        b.append_data(&mut h, format!("./escape/{marker}"), &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let _ = extracted(&bytes);
        assert!(!std::path::Path::new("/tmp").join(&marker).exists(), "a member was written through a symlink");
    }

    #[test]
    fn a_full_pool_is_found_inside_wrapped_errors() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("failed to unpack")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(is_no_space(&quota));
        let wrapped = std::io::Error::other(Wrap(std::io::Error::other(Wrap(quota))));
        assert!(is_no_space(&wrapped), "{wrapped}");
        assert!(!is_no_space(&std::io::Error::other(Wrap(std::io::Error::from_raw_os_error(libc::EIO)))));
    }

    #[test]
    fn image_locks_are_one_holder_at_a_time() {
        let locks = ImageLocks::default();
        let (a, b) = (ImageUuid::new_random(), ImageUuid::new_random());
        let held = locks.lock(a);
        assert!(locks.try_lock(a).is_none(), "held");
        assert!(locks.try_lock(a).is_none(), "a refused try leaves the holder's lock alone");
        let other = locks.try_lock(b).expect("another image is free");
        drop(held);
        let again = locks.try_lock(a).expect("free once dropped");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| drop(locks.lock(a)));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "lock waits for the holder");
            drop(again);
            waiter.join().unwrap();
        });
        drop(other);
    }

    #[test]
    fn lx_images_must_be_linux() {
        let mut m = good();
        m["os"] = json!("smartos");
        assert_eq!(check_manifest(&m).err().unwrap().bad_values, vec!["os"]);
    }

    fn zvol() -> Value {
        let mut m = good();
        m["type"] = json!("zvol");
        m["image_size"] = json!(10240);
        m["requirements"] = json!({"brand": "bhyve"});
        m
    }

    #[test]
    fn zvol_manifests_need_image_size_and_a_vm_brand() {
        let m = check_manifest(&zvol()).unwrap();
        assert_eq!((m.image_type.as_str(), m.image_size_mib), ("zvol", Some(10240)));
        let mut any_os = zvol();
        any_os["os"] = json!("windows");
        any_os["requirements"] = json!({"brand": "kvm"});
        check_manifest(&any_os).unwrap();

        let mut no_size = zvol();
        no_size.as_object_mut().unwrap().remove("image_size");
        let e = check_manifest(&no_size).err().unwrap();
        assert_eq!(e.missing_properties, ["image_size"]);
        assert!(e.reasons["image_size"].contains("type zvol"), "{:?}", e.reasons);
        for bad in [json!(0), json!(-1), json!(1.5), json!("10240"), json!(1u64 << 31)] {
            let mut m = zvol();
            m["image_size"] = bad.clone();
            assert_eq!(check_manifest(&m).err().unwrap().bad_values, ["image_size"], "{bad}");
        }
        let mut lx = zvol();
        lx["requirements"] = json!({"brand": "lx"});
        let e = check_manifest(&lx).err().unwrap();
        assert_eq!(e.bad_values, ["requirements.brand"]);
        assert!(e.reasons["requirements.brand"].contains("kvm or bhyve"), "{:?}", e.reasons);
        // An lx-dataset image may not require a VM brand, and its image_size is optional.
        let mut zone = good();
        zone["requirements"] = json!({"brand": "kvm"});
        assert_eq!(check_manifest(&zone).err().unwrap().bad_values, ["requirements.brand"]);
        assert_eq!(check_manifest(&good()).unwrap().image_size_mib, None);
        // Other types are still refused, naming what this host installs.
        let mut other = zvol();
        other["type"] = json!("other");
        let e = check_manifest(&other).err().unwrap();
        assert!(e.reasons["type"].contains("zvol") && e.reasons["type"].contains("lx-dataset"), "{:?}", e.reasons);
        // Docker images (imgadm import from a registry): linux, for lx.
        let mut docker = good();
        docker["type"] = json!("docker");
        docker["requirements"] = json!({"brand": "lx"});
        assert_eq!(check_manifest(&docker).unwrap().image_type, "docker");
        docker["requirements"] = json!({"brand": "bhyve"});
        docker["os"] = json!("windows");
        let e = check_manifest(&docker).err().unwrap();
        assert_eq!(e.bad_values, ["os", "requirements.brand"]);
    }

    #[test]
    fn copy_sparse_leaves_zero_blocks_as_holes_and_stops_at_the_bound() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let mut disk = vec![0u8; 8 << 20];
        disk[..4].copy_from_slice(b"boot");
        disk[5 << 20..(5 << 20) + 3].copy_from_slice(b"mid");
        let out = File::options().read(true).write(true).create_new(true).open(dir.path().join("d")).unwrap();
        let n = copy_sparse(&mut &disk[..], &out, 8 << 20).unwrap();
        assert_eq!(n, 8 << 20);
        let md = out.metadata().unwrap();
        assert_eq!(md.len(), 8 << 20);
        assert!(md.blocks() * 512 <= 256 << 10, "{} bytes allocated for two blocks", md.blocks() * 512);
        assert_eq!(std::fs::read(dir.path().join("d")).unwrap(), disk);

        // One byte over: refused, having read no more than the bound and a buffer.
        let out = File::options().write(true).create_new(true).open(dir.path().join("e")).unwrap();
        let mut endless = std::io::repeat(1).take(1 << 40);
        assert!(matches!(copy_sparse(&mut endless, &out, (8 << 20) - 1), Err(CopyError::TooBig)));
        assert!(endless.limit() > (1 << 40) - (16 << 20), "read {} bytes", (1u64 << 40) - endless.limit());
    }

    #[test]
    fn qcow2_info_refuses_disks_that_read_other_files() {
        let plain = r#"{"virtual-size": 8388608, "format": "qcow2",
            "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}}}"#;
        assert_eq!(parse_qcow2_info(plain).unwrap(), Qcow2Info { virtual_size: 8 << 20, refused: None });
        let backing = r#"{"virtual-size": 1, "backing-filename": "/etc/shadow", "format": "qcow2"}"#;
        assert!(parse_qcow2_info(backing).unwrap().refused.unwrap().contains("backing file (/etc/shadow)"));
        let data_file = r#"{"virtual-size": 1, "format-specific": {"data": {"data-file": "/dev/sda"}}}"#;
        assert!(parse_qcow2_info(data_file).unwrap().refused.unwrap().contains("external file (/dev/sda)"));
        let encrypted = r#"{"virtual-size": 1, "encrypted": true}"#;
        assert!(parse_qcow2_info(encrypted).unwrap().refused.unwrap().contains("encrypted"));
        assert!(parse_qcow2_info("{}").unwrap_err().contains("virtual-size"));
        assert!(parse_qcow2_info("qemu-img: oops").is_err());
        // The source qemu-img converts never opens a backing file.
        let arg = qcow2_source(Path::new("/pool/x/disk \"q\".qcow2"));
        let spec: Value = serde_json::from_str(arg.to_str().unwrap().strip_prefix("json:").unwrap()).unwrap();
        assert_eq!(spec["backing"], Value::Null);
        assert_eq!(spec["file"]["filename"], "/pool/x/disk \"q\".qcow2");
    }

    #[test]
    fn host_tools_run_bounded_in_time_with_their_stderr() {
        let sh = |script: &str, limit| run_bounded("sh", &[OsStr::new("-c"), OsStr::new(script)], limit);
        let run = sh("echo out; echo err >&2; exit 3", Duration::from_secs(10)).unwrap();
        assert_eq!((run.status.code(), run.stdout.as_str(), run.stderr.as_str()), (Some(3), "out", "err"));
        let start = Instant::now();
        let err = sh("sleep 30", Duration::from_millis(200)).err().unwrap();
        assert!(matches!(err, ToolError::TimedOut { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        let err = run_bounded("/nonexistent/qemu-img", &[], Duration::from_secs(1)).err().unwrap();
        assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
        // A flood of stderr neither blocks the tool nor the daemon's memory.
        let run = sh("head -c 4000000 /dev/zero | tr '\\0' x >&2", Duration::from_secs(30)).unwrap();
        assert!(run.status.success() && run.stderr.len() == 16 << 10, "{}", run.stderr.len());
    }
}
