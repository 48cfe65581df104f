//! `imgadm create`: an image from a stopped instance.
//!
//! SmartOS's `createImage` is the reference: the instance must be stopped
//! (`vm "<uuid>" is not stopped`), manifest fields come from `-m` and the
//! arguments, the instance's image is the origin whose `type`, `os`,
//! `requirements` and a few more fields the new image inherits, an lx,
//! kvm or bhyve instance's brand becomes `requirements.brand`, and `-i`
//! makes an incremental image whose `origin` is that image.
//!
//! Two outputs:
//! - **a file** (`-o`): `<prefix>.imgmanifest` and `<prefix>.tar[.gz|.xz|.zst]`
//!   (a zone's root, [`crate::imgfile::write_tree`]) or `<prefix>.raw[...]`
//!   (a VM's first disk, [`crate::imgfile::write_disk`]), what `imgadm
//!   install` takes on this or another host. The file is written under a
//!   temporary name and renamed once whole; a failure removes it.
//! - **the pool** (`-O`): the image is installed at once, in O(1): a
//!   zone's dataset is snapshotted (its `root`), a VM's disk cloned by
//!   reflink. Its manifest has no `files`: the IMGAPI source makes the file
//!   when a host first asks for it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use zonevisor_api::{
    ApiError, ImageCreateRequest, ImageCreated, ImageUuid, InstanceUuid, StartRequest, ValidationErrors, VmObject,
};

use super::{parse_uuid, str_of, timestamp};
use crate::images::{step_error, IMAGE_VOLUME};
use crate::imgfile::{self, Compression, FileDigest};
use crate::Daemon;

/// Manifest fields an image inherits from its origin when not given
/// (SmartOS's `INHERITED_FIELDS`).
const INHERITED: &[&str] = &[
    "type",
    "os",
    "requirements",
    "users",
    "billing_tags",
    "traits",
    "generate_passwords",
    "inherited_directories",
    "nic_driver",
    "disk_driver",
    "cpu_type",
    "image_size",
];

/// Brands whose images require the brand they were made from.
const BRAND_REQUIRED: &[&str] = &["bhyve", "lx", "kvm"];

const MIB: u64 = 1 << 20;

/// The snapshot `imgadm create -s` takes before preparing (SmartOS's
/// `@imgadm-create-pre-prepare`).
const PREPARE_SNAPSHOT: &str = "imgadm-create-pre-prepare";

/// What an instance's image is made from.
enum Source {
    /// A zone's root directory.
    Root(PathBuf),
    /// A VM's first disk (its volume) and its size in bytes.
    Disk(PathBuf, u64),
}

/// The image's origin: its uuid and manifest.
struct Origin {
    uuid: ImageUuid,
    manifest: Value,
}

impl Daemon {
    /// `imgadm create`: see the module doc.
    pub fn create_image(&self, vm_uuid: &str, req: &ImageCreateRequest) -> Result<ImageCreated, ApiError> {
        let uuid = parse_uuid(vm_uuid)?;
        let compression = match req.compression.as_deref() {
            None => Compression::None,
            Some(c) => Compression::parse(c).ok_or_else(|| {
                ApiError::invalid(format!(
                    "invalid -c,--compression \"{c}\": must be one of \"{}\"",
                    Compression::NAMES.join("\", \"")
                ))
            })?,
        };
        if req.max_origin_depth.is_some_and(|d| d < 2) {
            return Err(ApiError::invalid(format!(
                "invalid max-origin-depth \"{}\": must be greater than 1",
                req.max_origin_depth.unwrap_or_default()
            )));
        }
        if req.install == req.output_prefix.is_some() {
            return Err(ApiError::invalid("give exactly one of an output prefix (-o) and install to the pool (-O)"));
        }
        let Some(fields) = req.manifest.as_object() else {
            return Err(ApiError::invalid("the manifest data must be a JSON object"));
        };
        if let Some(script) = &req.prepare_script {
            // What the manifest must have, checked before the instance is touched.
            let mut errs = ValidationErrors::default();
            for key in ["name", "version"] {
                match fields.get(key) {
                    None => errs.missing(key, "is required"),
                    Some(Value::String(v)) if !v.is_empty() => {}
                    Some(_) => errs.bad_value(key, "must be a non-empty string"),
                }
            }
            if !errs.is_empty() {
                return Err(ApiError::validation(errs));
            }
            return self.create_image_prepared(uuid, req, script);
        }
        // Stopped it stays while its image is made.
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid).map_err(|_| ApiError::not_found(format!("vm \"{uuid}\" was not found")))?;
        if self.is_running(uuid) || str_of(&vm, "state").is_some_and(|s| s != "stopped") {
            return Err(ApiError::conflict(format!("vm \"{uuid}\" is not stopped")));
        }
        let mut log = Vec::new();
        let brand = str_of(&vm, "brand").unwrap_or_default().to_string();
        let (source, origin_uuid) = self.image_source(uuid, &vm)?;
        let origin = match origin_uuid {
            Some(o) => Some(self.origin_of(o)?),
            None => None,
        };
        if let (Some(o), Some(max)) = (&origin, req.max_origin_depth) {
            self.check_origin_depth(o, max)?;
        }
        // The manifest: SmartOS's gatherManifest.
        let mut m = Map::new();
        m.insert("v".into(), json!(2));
        m.insert("uuid".into(), json!(ImageUuid::new_random().to_string()));
        for (k, v) in fields {
            m.insert(k.clone(), v.clone());
        }
        if let Some(o) = &origin {
            let om = o.manifest.as_object().cloned().unwrap_or_default();
            log.push(format!(
                "Inheriting from origin image {} ({} {})",
                o.uuid,
                om.get("name").and_then(Value::as_str).unwrap_or_default(),
                om.get("version").and_then(Value::as_str).unwrap_or_default()
            ));
            for field in INHERITED {
                if let (false, Some(v)) = (m.contains_key(*field), om.get(*field)) {
                    if !v.as_array().is_some_and(Vec::is_empty) {
                        m.insert((*field).to_string(), v.clone());
                    }
                }
            }
        }
        let given_requirements = fields.get("requirements").and_then(Value::as_object);
        if BRAND_REQUIRED.contains(&brand.as_str()) && !given_requirements.is_some_and(|r| r.contains_key("brand")) {
            requirements(&mut m).insert("brand".into(), json!(brand));
        }
        if brand == "bhyve" && !given_requirements.is_some_and(|r| r.contains_key("bootrom")) {
            if let Some(b) = vm.get("bootrom") {
                requirements(&mut m).insert("bootrom".into(), b.clone());
            }
        }
        // An explicitly empty brand: none required.
        if let Some(r) = m.get_mut("requirements").and_then(Value::as_object_mut) {
            if r.get("brand").is_some_and(|b| b.is_null() || b.as_str() == Some("")) {
                r.remove("brand");
            }
        }
        // What the image is, whatever its origin was (an OCI image's
        // instance makes an lx-dataset image).
        let kind = match source {
            Source::Root(_) => "lx-dataset",
            Source::Disk(..) => "zvol",
        };
        // An origin's other type (docker) is not inherited.
        if !fields.contains_key("type") {
            m.insert("type".into(), json!(kind));
        }
        if !m.contains_key("os") {
            m.insert("os".into(), json!(if kind == "lx-dataset" { "linux" } else { "other" }));
        }
        if let Source::Disk(_, size) = &source {
            m.insert("image_size".into(), json!(size.div_ceil(MIB)));
            if !m.contains_key("disk_driver") {
                if let Some(model) = vm.get("disks").and_then(|d| d.get(0)).and_then(|d| d.get("model")) {
                    m.insert("disk_driver".into(), model.clone());
                }
            }
            if !m.contains_key("nic_driver") {
                if let Some(model) = vm.get("nics").and_then(|d| d.get(0)).and_then(|d| d.get("model")) {
                    m.insert("nic_driver".into(), model.clone());
                }
            }
        }
        if req.incremental {
            match (&origin, &source) {
                (None, _) => {
                    return Err(ApiError::invalid(format!(
                        "cannot create an incremental image: vm \"{uuid}\" has no origin"
                    )))
                }
                (Some(_), Source::Disk(..)) => {
                    return Err(ApiError::invalid(
                        "incremental images are made from zones only; a VM's image is its whole disk",
                    ))
                }
                (Some(o), Source::Root(_)) => {
                    m.insert("origin".into(), json!(o.uuid.to_string()));
                }
            }
        }
        m.entry("published_at").or_insert_with(|| json!(timestamp()));
        m.entry("state").or_insert_with(|| json!("active"));
        m.entry("disabled").or_insert_with(|| json!(false));
        m.entry("public").or_insert_with(|| json!(false));
        m.entry("owner").or_insert_with(|| json!("00000000-0000-0000-0000-000000000000"));
        // Validated as an install would, with the file still to come.
        let mut probe = Value::Object(m.clone());
        probe["files"] = json!([{"sha1": "0".repeat(40), "size": 0, "compression": compression.name()}]);
        let checked = crate::images::check_manifest(&probe).map_err(ApiError::validation)?;
        if m.get("type").and_then(Value::as_str) != Some(kind) {
            let mut errs = ValidationErrors::default();
            errs.bad_value("type", format!("an image made from this instance is of type {kind}"));
            return Err(ApiError::validation(errs));
        }
        let image = checked.uuid;
        if self.store.get_image(image)?.is_some() || self.pool.exists(&image.to_string()) {
            return Err(ApiError::conflict(format!("image {image} is already installed")));
        }
        let origin_root = match (&origin, req.incremental) {
            (Some(o), true) => Some(self.pool.dataset_path(&o.uuid.to_string()).join("root")),
            _ => None,
        };
        if req.install {
            let manifest = Value::Object(m);
            self.install_from_instance(uuid, image, &source, &manifest)?;
            log.push(format!("Installed image {image} in pool {}", self.pool.name()));
            return Ok(ImageCreated { manifest, manifest_path: None, file_path: None, log });
        }
        let prefix = PathBuf::from(req.output_prefix.as_deref().unwrap_or_default());
        if !prefix.is_absolute() {
            return Err(ApiError::invalid(format!("the output prefix {} must be absolute", prefix.display())));
        }
        let prefix =
            if prefix.is_dir() { prefix.join(format!("{}-{}", slug(&m["name"]), slug(&m["version"]))) } else { prefix };
        let ext = match source {
            Source::Root(_) => ".tar",
            Source::Disk(..) => ".raw",
        };
        let file_path = PathBuf::from(format!("{}{ext}{}", prefix.display(), compression.suffix()));
        let manifest_path = PathBuf::from(format!("{}.imgmanifest", prefix.display()));
        log.push(format!("Sending image file to \"{}\"", file_path.display()));
        let digest = write_atomically(&file_path, |out| match &source {
            Source::Root(root) => imgfile::write_tree(root, origin_root.as_deref(), out, compression).map(|(d, _)| d),
            Source::Disk(disk, _) => {
                let disk = File::open(disk)?;
                imgfile::write_disk(&disk, out, compression)
            }
        })
        .map_err(|e| step_error(&format!("write image file {}", file_path.display()), e))?;
        m.insert(
            "files".into(),
            json!([{"sha1": digest.sha1, "size": digest.size, "compression": compression.name()}]),
        );
        let manifest = Value::Object(m);
        log.push(format!("Saving manifest to \"{}\"", manifest_path.display()));
        let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        if let Err(e) = write_atomically(&manifest_path, |out| {
            std::io::Write::write_all(out, &text)?;
            Ok(FileDigest { sha1: String::new(), size: 0 })
        }) {
            let _ = std::fs::remove_file(&file_path);
            return Err(step_error(&format!("write manifest {}", manifest_path.display()), e));
        }
        tracing::info!(vm = %uuid, %image, file = %file_path.display(), "created image");
        Ok(ImageCreated {
            manifest,
            manifest_path: Some(manifest_path.display().to_string()),
            file_path: Some(file_path.display().to_string()),
            log,
        })
    }

    /// `imgadm create -s`: SmartOS's automatic preparation. The instance
    /// (stopped first if it runs) is snapshotted, booted with `script` as
    /// its `operator-script`; the script reports through the
    /// `prepare-image:state` customer metadata (`running`, then `success`
    /// or `error` with `prepare-image:error`) and shuts the instance down,
    /// each step within the timeout; the stopped instance is imaged; then,
    /// whatever happened, it is rolled back to the snapshot (which takes the
    /// operator-script away again), the snapshot deleted, and the instance
    /// started again if it ran.
    fn create_image_prepared(
        &self,
        uuid: InstanceUuid,
        req: &ImageCreateRequest,
        script: &str,
    ) -> Result<ImageCreated, ApiError> {
        let id = uuid.to_string();
        let step = Duration::from_secs(req.prepare_timeout_secs.unwrap_or(300).clamp(1, 24 * 3600));
        self.vm_row(uuid).map_err(|_| ApiError::not_found(format!("vm \"{uuid}\" was not found")))?;
        if self.snapshots_of(&id).iter().any(|s| s.name == PREPARE_SNAPSHOT) {
            return Err(ApiError::conflict(format!(
                "vm \"{uuid}\" has a snapshot {PREPARE_SNAPSHOT} left by an interrupted imgadm create -s: roll it \
                 back (vmadm rollback-snapshot {uuid} {PREPARE_SNAPSHOT}) or delete it first"
            )));
        }
        let mut log = Vec::new();
        let was_running = self.is_running(uuid);
        if was_running {
            log.push(format!("Stopping VM {uuid} to snapshot it"));
            self.stop_vm(&id, false, None)?;
        }
        log.push(format!("Snapshotting VM \"{uuid}\" to @{PREPARE_SNAPSHOT}"));
        if let Err(e) = self.create_snapshot(&id, PREPARE_SNAPSHOT) {
            if was_running {
                let _ = self.start_vm(&id, &StartRequest::default());
            }
            return Err(e);
        }
        let made = (|| -> Result<ImageCreated, ApiError> {
            let update = json!({
                "set_internal_metadata": {"operator-script": script},
                "remove_customer_metadata": ["prepare-image:state", "prepare-image:error"],
            });
            self.update_vm(&id, &update)?;
            log.push(format!("Preparing VM {uuid} (starting it)"));
            self.start_vm(&id, &StartRequest::default())?;
            let state = |vm: &VmObject| {
                vm.get("customer_metadata")
                    .and_then(|m| m.get("prepare-image:state"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            self.wait_for(uuid, step, |vm| state(vm).is_some())
                .map_err(|_| ApiError::invalid(format!("prepare-image script did not run on VM {uuid} boot")))?;
            log.push("Prepare script is running".to_string());
            let vm = self
                .wait_for(uuid, step, |vm| matches!(state(vm).as_deref(), Some("success" | "error")))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "prepare-image script error while preparing VM {uuid}: prepare-image script did not complete"
                    ))
                })?;
            if state(&vm).as_deref() == Some("error") {
                let why = vm
                    .get("customer_metadata")
                    .and_then(|m| m.get("prepare-image:error"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(ApiError::invalid(format!(
                    "prepare-image script error while preparing VM {uuid}{}",
                    if why.is_empty() { String::new() } else { format!(": {why}") }
                )));
            }
            log.push("Prepare script succeeded".to_string());
            self.wait_for(uuid, step, |vm| str_of(vm, "state") == Some("stopped") && !self.is_running(uuid)).map_err(
                |_| {
                    ApiError::invalid(format!(
                        "prepare-image script error while preparing VM {uuid}: VM did not shutdown"
                    ))
                },
            )?;
            log.push(format!("Prepare script stopped VM {uuid}"));
            let mut plain = req.clone();
            plain.prepare_script = None;
            self.create_image(&id, &plain)
        })();
        // Cleanup, whatever happened: the instance as it was.
        log.push(format!("Rollback VM {uuid} to pre-prepare snapshot (cleanup)"));
        let cleaned = (|| -> Result<(), ApiError> {
            if self.is_running(uuid) {
                self.stop_vm(&id, true, None)?;
            }
            self.rollback_snapshot(&id, PREPARE_SNAPSHOT)?;
            self.delete_snapshot(&id, PREPARE_SNAPSHOT)?;
            if was_running {
                log.push(format!("Restarting VM {uuid} (cleanup)"));
                self.start_vm(&id, &StartRequest::default())?;
            }
            Ok(())
        })();
        let mut created = made?;
        if let Err(e) = cleaned {
            return Err(ApiError {
                message: format!(
                    "image {} was created, but restoring VM {uuid} failed: {} (its snapshot {PREPARE_SNAPSHOT} is kept)",
                    created.manifest["uuid"].as_str().unwrap_or("?"),
                    e.message
                ),
                ..e
            });
        }
        log.append(&mut created.log);
        created.log = log;
        Ok(created)
    }

    /// Polls the instance's stored object until `done` says so, for at
    /// most `within`; the object that satisfied it.
    fn wait_for(&self, uuid: InstanceUuid, within: Duration, done: impl Fn(&VmObject) -> bool) -> Result<VmObject, ()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(vm) = self.vm_row(uuid) {
                if done(&vm) {
                    return Ok(vm);
                }
            }
            if Instant::now() >= deadline {
                return Err(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What an instance's image is made of, and the image it came from.
    fn image_source(&self, uuid: InstanceUuid, vm: &VmObject) -> Result<(Source, Option<ImageUuid>), ApiError> {
        let dataset = self.pool.dataset_path(&uuid.to_string());
        let image_of = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| s.parse::<ImageUuid>().ok());
        match str_of(vm, "brand") {
            Some("kvm" | "bhyve") => {
                let disk = vm
                    .get("disks")
                    .and_then(|d| d.get(0))
                    .ok_or_else(|| ApiError::invalid(format!("vm \"{uuid}\" has no disk to make an image of")))?;
                let path =
                    disk.get("path").and_then(Value::as_str).map(PathBuf::from).ok_or_else(|| {
                        ApiError::invalid(format!("vm \"{uuid}\"'s first disk has no volume (a cdrom?)"))
                    })?;
                if !path.starts_with(&dataset) {
                    return Err(ApiError::invalid(format!(
                        "vm \"{uuid}\"'s first disk {} is not a volume of its dataset (nocreate?)",
                        path.display()
                    )));
                }
                let size = std::fs::metadata(&path).map_err(|e| step_error("read the VM's disk", e))?.len();
                Ok((Source::Disk(path, size), image_of(disk.get("image_uuid"))))
            }
            _ => Ok((Source::Root(dataset.join("root")), image_of(vm.get("image_uuid")))),
        }
    }

    /// The installed image `uuid`, as an origin.
    fn origin_of(&self, uuid: ImageUuid) -> Result<Origin, ApiError> {
        match self.store.get_image(uuid)? {
            Some(row) if row.phase == "ready" => Ok(Origin { uuid, manifest: row.manifest }),
            _ => Err(ApiError::not_found(format!("image \"{uuid}\" was not found on zpool \"{}\"", self.pool.name()))),
        }
    }

    /// SmartOS's `validateMaxOriginDepth`: the origin counts one, each
    /// image above it one more.
    fn check_origin_depth(&self, origin: &Origin, max: u32) -> Result<(), ApiError> {
        let mut depth = 1;
        let mut at = origin.manifest.clone();
        while depth <= max {
            let Some(up) = at.get("origin").and_then(Value::as_str).and_then(|s| s.parse::<ImageUuid>().ok()) else {
                return Ok(());
            };
            at = self.origin_of(up)?.manifest;
            depth += 1;
        }
        Err(ApiError::invalid(format!("cannot create image: maximum origin depth \"{max}\" has been reached")))
    }

    /// `-O`: the image installed from the instance in O(1); nothing is
    /// left when a step fails.
    fn install_from_instance(
        &self,
        uuid: InstanceUuid,
        image: ImageUuid,
        source: &Source,
        manifest: &Value,
    ) -> Result<(), ApiError> {
        let name = image.to_string();
        self.store.insert_image(image, "installing", manifest)?;
        let mut made = false;
        let result = (|| -> Result<(), ApiError> {
            match source {
                Source::Root(_) => {
                    let ds = zonevisor_pool::Pool::clone_from(&self.pool, &uuid.to_string(), &name)
                        .map_err(|e| self.pool_step_error("snapshot the instance", e))?;
                    made = true;
                    // Only the root goes into the image.
                    for entry in std::fs::read_dir(&ds).map_err(|e| step_error("read the image dataset", e))? {
                        let entry = entry.map_err(|e| step_error("read the image dataset", e))?;
                        if entry.file_name() == "root" {
                            continue;
                        }
                        let p = entry.path();
                        let r = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                        r.map_err(|e| step_error(&format!("remove {} from the image", p.display()), e))?;
                    }
                }
                Source::Disk(disk, size) => {
                    self.pool.create(&name).map_err(|e| self.pool_step_error("create image dataset", e))?;
                    made = true;
                    let bytes = size.div_ceil(MIB) * MIB;
                    self.pool
                        .clone_volume(disk, &name, IMAGE_VOLUME, bytes)
                        .map_err(|e| self.pool_step_error("clone the VM's disk", e))?;
                }
            }
            self.pool.set_readonly(&name, true).map_err(|e| step_error("make image read-only", e))?;
            self.store.set_image_phase(image, "ready")?;
            Ok(())
        })();
        if let Err(e) = result {
            self.rollback_image(image, made);
            return Err(e);
        }
        self.keep_reserve();
        tracing::info!(vm = %uuid, %image, "installed an image made from an instance");
        Ok(())
    }
}

/// The manifest's `requirements`, made an object if it was not one.
fn requirements(m: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let r = m.entry("requirements").or_insert_with(|| json!({}));
    if !r.is_object() {
        *r = json!({});
    }
    r.as_object_mut().expect("an object")
}

/// SmartOS's `pathSlugify`: a name or version made safe for a file name.
fn slug(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// Writes `path` through `write` under a temporary name beside it, renamed
/// to `path` once whole and synced; a failure leaves nothing.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<FileDigest>,
) -> std::io::Result<FileDigest> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let result = (|| {
        let f = File::options().write(true).create_new(true).open(&tmp)?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let digest = write(&mut out)?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(digest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_only_safe_characters() {
        assert_eq!(slug(&json!("my image/1")), "my_image_1");
        assert_eq!(slug(&json!("1.0.0-rc1")), "1.0.0-rc1");
        assert_eq!(slug(&json!(2)), "2");
    }

    #[test]
    fn a_failed_write_leaves_no_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("img.tar");
        let r = write_atomically(&p, |out| {
            std::io::Write::write_all(out, b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0, "neither the file nor its temporary");
        write_atomically(&p, |out| {
            std::io::Write::write_all(out, b"whole")?;
            Ok(FileDigest { sha1: String::new(), size: 5 })
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"whole");
    }
}
