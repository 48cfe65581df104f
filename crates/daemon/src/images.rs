//! Images: SmartOS manifest v2 plus a root filesystem tarball, installed as
//! a read-only dataset that zones clone in O(1).
//!
//! An install verifies the manifest and the file's size and SHA-1 before it
//! touches the pool, records the image as `installing`, extracts the
//! tarball into `<dataset>/root`, marks the dataset read-only (SmartOS's
//! `@final`) and only then records it `ready`. Any failure destroys the
//! dataset and the row: a failed install leaves nothing.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use serde_json::Value;
use sha1::{Digest, Sha1};
use zonevisor_api::{ApiError, ImageRecord, ImageUuid, ValidationErrors};

use crate::Daemon;

/// Image types a manifest may declare (IMGAPI).
const IMAGE_TYPES: &[&str] = &["zone-dataset", "lx-dataset", "zvol", "docker", "other"];
/// Image types this host can install today.
const INSTALLABLE_TYPES: &[&str] = &["lx-dataset"];
/// Operating systems a manifest may declare.
const IMAGE_OS: &[&str] = &["smartos", "linux", "windows", "bsd", "illumos", "other"];

/// A manifest that passed validation, with what the daemon needs from it.
pub struct Manifest {
    pub uuid: ImageUuid,
    pub value: Value,
    pub sha1: String,
    pub size: u64,
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
        Some(t) if !INSTALLABLE_TYPES.contains(&t) => errs
            .bad_value("type", format!("{t} images cannot be installed on this host yet; zones use lx-dataset images")),
        Some(_) => {}
    }
    match s("os") {
        None => errs.missing("os", "is required"),
        Some(o) if !IMAGE_OS.contains(&o) => errs.bad_value("os", format!("must be one of {}", IMAGE_OS.join(", "))),
        Some(o) if s("type") == Some("lx-dataset") && o != "linux" => {
            errs.bad_value("os", "lx-dataset images must have os linux")
        }
        Some(_) => {}
    }
    if let Some(st) = obj.get("state") {
        if !matches!(st.as_str(), Some("active" | "unactivated" | "disabled" | "creating" | "failed")) {
            errs.bad_value("state", "must be active, unactivated, disabled, creating or failed");
        }
    }
    let mut sha1 = String::new();
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
    if let Some(req) = obj.get("requirements") {
        match req.get("brand").map(Value::as_str) {
            None | Some(Some("lx")) => {}
            Some(_) if !req.is_object() => errs.bad_value("requirements", "must be an object"),
            Some(_) => errs.bad_value("requirements.brand", "lx-dataset images can only require brand lx"),
        }
    }
    match (errs.is_empty(), uuid) {
        (true, Some(uuid)) => Ok(Manifest { uuid, value: m.clone(), sha1, size }),
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
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| ApiError::internal(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hex::encode(hasher.finalize());
    if got != m.sha1 {
        errs.bad_value("files.0.sha1", format!("{} has sha1 {got}, the manifest says {}", path.display(), m.sha1));
        return Err(ApiError::validation(errs));
    }
    file.rewind().map_err(|e| ApiError::internal(format!("rewinding {}: {e}", path.display())))?;
    Ok(())
}

/// Extracts a (possibly compressed) tarball into `dest`, keeping owners,
/// modes, xattrs and special files; members may not escape `dest`.
fn extract(file: File, dest: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 6];
    let n = {
        use std::io::BufRead;
        let buf = reader.fill_buf()?;
        let n = buf.len().min(6);
        magic[..n].copy_from_slice(&buf[..n]);
        n
    };
    let magic = &magic[..n];
    let stream: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else if magic.starts_with(b"BZh") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "bzip2 image files are not supported; recompress with gzip, xz or zstd",
        ));
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    archive.unpack(dest)
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
        if self.store.get_image(m.uuid)?.is_some() {
            return Err(ApiError::conflict(format!("image {} is already installed", m.uuid)));
        }
        let name = m.uuid.to_string();
        if self.pool.exists(&name) {
            return Err(ApiError::conflict(format!("dataset {name} already exists in pool {}", self.pool.name())));
        }
        self.store.insert_image(m.uuid, "installing", &m.value)?;
        let mut made = false;
        let result = (|| -> Result<(), ApiError> {
            let ds = self.pool.create(&name).map_err(|e| self.pool_step_error("create image dataset", e))?;
            made = true;
            let root = ds.join("root");
            std::fs::create_dir(&root).map_err(|e| step_error("create image root", e))?;
            extract(file, &root).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
                    ApiError::internal(format!("extract image: pool {} is full", self.pool.name()))
                } else {
                    step_error("extract image", e)
                }
            })?;
            self.pool.set_readonly(&name, true).map_err(|e| step_error("make image read-only", e))?;
            self.store.set_image_phase(m.uuid, "ready")?;
            Ok(())
        })();
        if let Err(e) = result {
            self.rollback_image(m.uuid, made);
            return Err(e);
        }
        self.keep_reserve();
        tracing::info!(image = %m.uuid, "installed image");
        self.image_record(m.uuid)
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
            Some(row) if row.phase == "ready" => Ok(ImageRecord {
                manifest: row.manifest,
                zpool: self.pool.name().to_string(),
                clones: self.store.image_clones(uuid)?,
            }),
            _ => Err(ApiError::not_found(format!("image \"{uuid}\" was not found on zpool \"{}\"", self.pool.name()))),
        }
    }

    /// `imgadm list`.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, ApiError> {
        let mut out = Vec::new();
        for (uuid, row) in self.store.list_images()? {
            if row.phase == "ready" {
                out.push(ImageRecord {
                    manifest: row.manifest,
                    zpool: self.pool.name().to_string(),
                    clones: self.store.image_clones(uuid)?,
                });
            }
        }
        Ok(out)
    }

    /// `imgadm delete`: refused while any instance was cloned from it.
    pub fn delete_image(&self, uuid: ImageUuid) -> Result<(), ApiError> {
        self.image_record(uuid)?;
        let users = self.store.instances_using_image(uuid)?;
        if !users.is_empty() {
            // SmartOS's words, naming the instances made from it.
            let users: Vec<String> = users.iter().map(ToString::to_string).collect();
            return Err(ApiError::conflict(format!(
                "image \"{uuid}\" has dependent clones: {}; delete them first",
                users.join(", ")
            )));
        }
        self.pool.destroy(&uuid.to_string()).map_err(|e| step_error("destroy image dataset", e))?;
        self.store.delete_image(uuid)?;
        tracing::info!(image = %uuid, "deleted image");
        Ok(())
    }
}

/// An internal error that names the step that failed and its causes.
pub(crate) fn step_error(step: &str, e: impl std::error::Error) -> ApiError {
    ApiError::internal(format!("{step}: {}", crate::chain(&e)))
}

impl Daemon {
    /// [`step_error`] for a pool operation, saying so plainly when the
    /// pool is full (its datasets hold all it has but the reserve).
    pub(crate) fn pool_step_error(&self, step: &str, e: zonevisor_pool::PoolError) -> ApiError {
        if e.is_no_space() {
            ApiError::internal(format!(
                "{step}: pool {} is full (free space for datasets: none; delete instances or images): {}",
                self.pool.name(),
                crate::chain(&e)
            ))
        } else {
            step_error(step, e)
        }
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
        m["type"] = json!("zvol");
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
    fn lx_images_must_be_linux() {
        let mut m = good();
        m["os"] = json!("smartos");
        assert_eq!(check_manifest(&m).err().unwrap().bad_values, vec!["os"]);
    }
}
