//! OCI images from registries, installed as images of type `docker` that
//! lx zones run (`imgadm import <reference>`, `POST /v1/images/pull`).
//!
//! ```text
//! reference ──> Registry::resolve (registry.rs)     manifest (an index resolved to linux/<arch>),
//!   │                                               configuration, layer descriptors
//!   │ uuid = SmartOS's imgUuidFromDockerDigests(layer digests): installed already? done
//!   │ store: image row `installing` (the manifest below)
//!   │ pool:  dataset <uuid>, mode 0700
//!   │          .layers/<hex>   each layer downloaded, its size and sha256 checked
//!   │          root/           the layers applied in order (crate::layer: whiteouts,
//!   │                          nothing outside root), each staged blob removed after
//!   │ dataset read-only; row `ready`
//!   └ any failure: dataset destroyed, row deleted (a crash: the next start's recovery)
//! ```
//!
//! SmartOS installs a Docker image as one image per layer, each a ZFS
//! clone of the one below (`imgadm`'s `_installDockerImage`); here the
//! layers are flattened into one dataset, which zones clone in O(1) all
//! the same. The uuid is SmartOS's, derived from the whole chain of layer
//! digests, so the same image pulled twice, by tag or by digest, is the
//! same image. The manifest keeps what SmartOS's `imgManifestFromDockerInfo`
//! keeps in its `tags` (`docker:repo`, `docker:id`, `docker:architecture`,
//! `docker:tag:<tag>`, `docker:config` with the image's `Cmd`,
//! `Entrypoint`, `Env`, `WorkingDir`, and here also `User`), plus the
//! digests it came from (`docker:manifest`, `docker:layers`).

mod registry;

use std::path::Path;

use oci_client::Reference;
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use zonevisor_api::{ApiError, ImagePullRequest, ImagePulled, ImageUuid};

use crate::images::step_error;
use crate::Daemon;
use registry::{PullError, Registry, Resolved};

/// Where, in an importing image's dataset, its layers wait to be applied.
const STAGING: &str = ".layers";
/// How long an import of an image another import is installing waits for it.
const IMPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Parses a Docker-style image reference (`alpine:3.20`,
/// `127.0.0.1:5000/x/y@sha256:...`): without a registry, Docker Hub;
/// without a tag or digest, `latest`.
pub fn parse_reference(text: &str) -> Result<Reference, ApiError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::invalid("an image reference is required"));
    }
    Reference::try_from(t).map_err(|e| ApiError::invalid(format!("{t:?} is not an image reference: {e}")))
}

/// SmartOS's image uuid for a chain of layer digests (base first): the
/// sha256 of the digests joined by spaces, its first 32 hex digits as a
/// uuid (imgmanifest's `imgUuidFromDockerDigests`, RFD 57).
pub fn uuid_from_digests(digests: &[String]) -> ImageUuid {
    let sum = hex::encode(sha2::Sha256::digest(digests.join(" ").as_bytes()));
    let s = format!("{}-{}-{}-{}-{}", &sum[0..8], &sum[8..12], &sum[12..16], &sum[16..20], &sum[20..32]);
    s.parse().expect("32 hex digits in 8-4-4-4-12 are a uuid")
}

/// The name `imgadm list` shows for an image from `reference`: Docker's
/// familiar form (`alpine`, `user/app`, `127.0.0.1:5000/app`).
pub fn familiar_name(reference: &Reference) -> String {
    let repo = reference.repository();
    if reference.registry() == "docker.io" {
        repo.strip_prefix("library/").unwrap_or(repo).to_string()
    } else {
        format!("{}/{repo}", reference.registry())
    }
}

/// What a zone of a `docker` image runs unless its payload says
/// otherwise: the image configuration kept in its manifest's
/// `tags["docker:config"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User` (`name`, `uid`, `name:group`, `uid:gid`).
    pub user: Option<String>,
}

impl DockerConfig {
    /// Reads an installed image's manifest; `None` when it is no `docker` image.
    pub fn of_manifest(manifest: &Value) -> Option<DockerConfig> {
        if manifest.get("type").and_then(Value::as_str) != Some("docker") {
            return None;
        }
        let c = manifest.pointer("/tags/docker:config").cloned().unwrap_or(Value::Null);
        let strings = |k: &str| {
            c.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        };
        let string = |k: &str| c.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
        Some(DockerConfig {
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            env: strings("Env").unwrap_or_default(),
            workdir: string("WorkingDir"),
            user: string("User"),
        })
    }
}

/// The manifest recorded for an image pulled as `reference`.
fn manifest_of(reference: &Reference, r: &Resolved, uuid: ImageUuid) -> Value {
    let cfg = r.config.config().as_ref();
    let mut config = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            config.insert(k.to_string(), v);
        }
    };
    put("Cmd", cfg.and_then(|c| c.cmd().clone()).map(Value::from));
    put("Entrypoint", cfg.and_then(|c| c.entrypoint().clone()).map(Value::from));
    put("Env", cfg.and_then(|c| c.env().clone()).map(Value::from));
    put("WorkingDir", cfg.and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty()).map(Value::from));
    put("User", cfg.and_then(|c| c.user().clone()).filter(|u| !u.is_empty()).map(Value::from));
    let top = r.layers.last().map(|l| l.digest.clone()).unwrap_or_default();
    let short = |d: &str| d.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    let version = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(d)) => short(d),
        (None, None) => "latest".to_string(),
    };
    let mut tags = Map::new();
    tags.insert("docker:repo".into(), json!(format!("{}/{}", reference.registry(), reference.repository())));
    tags.insert("docker:id".into(), json!(top));
    tags.insert("docker:architecture".into(), json!(r.config.architecture().to_string()));
    if let Some(tag) = reference.tag() {
        tags.insert(format!("docker:tag:{tag}"), json!(true));
    }
    tags.insert("docker:config".into(), Value::Object(config));
    tags.insert("docker:manifest".into(), json!(r.manifest_digest));
    if let Some(index) = &r.index_digest {
        tags.insert("docker:index".into(), json!(index));
    }
    tags.insert("docker:config_digest".into(), json!(r.config_digest));
    tags.insert("docker:layers".into(), json!(r.layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()));
    let mut m = json!({
        "v": 2,
        "uuid": uuid.to_string(),
        "owner": "00000000-0000-0000-0000-000000000000",
        "name": familiar_name(reference),
        "version": version,
        "description": format!("Docker image {} ({})", reference.whole(), short(&top)),
        "disabled": false,
        "public": false,
        "state": "active",
        "type": "docker",
        "os": "linux",
        "requirements": {"brand": "lx"},
        "tags": tags,
    });
    if let Some(created) = r.config.created().as_deref().and_then(published_at) {
        m["published_at"] = json!(created);
    }
    m
}

/// An RFC 3339 time as IMGAPI writes `published_at` (UTC, milliseconds).
fn published_at(created: &str) -> Option<String> {
    // Seconds are enough; an offset is taken as UTC.
    let t = humantime::parse_rfc3339_weak(created.get(..19)?).ok()?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// Whether a write failed for want of space (the pool, or the datasets'
/// share of it): by its errno, or by its kind once wrapped with context.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// The error for a failed pull of `reference`.
fn pull_error(d: &Daemon, reference: &str, e: PullError) -> ApiError {
    let msg = format!("importing {reference}: {e}");
    match e {
        PullError::NotFound { .. } => ApiError::not_found(msg),
        PullError::Unreachable { .. } => ApiError::internal(msg),
        PullError::Write { source, .. } if is_full(&source) => {
            ApiError::internal(format!("importing {reference}: pool {} is full", d.pool.name()))
        }
        PullError::Write { .. } => ApiError::internal(msg),
        PullError::Auth { .. } | PullError::Digest { .. } | PullError::Invalid(_) => ApiError::invalid(msg),
    }
}

impl Daemon {
    /// `imgadm import <reference>`: see the module documentation.
    pub fn pull_image(&self, req: &ImagePullRequest) -> Result<ImagePulled, ApiError> {
        let reference = parse_reference(&req.reference)?;
        let whole = reference.whole();
        let (registry, resolved) =
            self.rt.block_on(Registry::resolve(&reference, req.insecure)).map_err(|e| pull_error(self, &whole, e))?;
        let digests: Vec<String> = resolved.layers.iter().map(|l| l.digest.clone()).collect();
        let uuid = uuid_from_digests(&digests);
        let name = uuid.to_string();
        let manifest = manifest_of(&reference, &resolved, uuid);
        // Two imports of one image: the second waits for the first (its
        // row says `installing`) and then finds the image installed, or
        // installs it itself if the first failed. The store's primary key
        // decides who installs.
        let deadline = std::time::Instant::now() + IMPORT_WAIT;
        loop {
            match self.store.get_image(uuid)? {
                Some(row) if row.phase == "ready" => {
                    tracing::info!(image = %uuid, reference = %whole, "image already installed");
                    let image = self.image_record(uuid)?;
                    return Ok(ImagePulled { image, reference: whole, already_installed: true });
                }
                Some(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
                Some(_) => {
                    return Err(ApiError::conflict(format!(
                        "image {uuid} ({whole}) is still being installed by another import"
                    )))
                }
                None => {}
            }
            if self.pool.exists(&name) {
                return Err(ApiError::conflict(format!("dataset {name} already exists in pool {}", self.pool.name())));
            }
            match self.store.insert_image(uuid, "installing", &manifest) {
                Ok(()) => break,
                // Another import took it between our look and our insert.
                Err(_) if self.store.get_image(uuid)?.is_some() => continue,
                Err(e) => return Err(ApiError::from(e)),
            }
        }
        tracing::info!(image = %uuid, reference = %whole, layers = digests.len(), "importing image");
        let mut made = false;
        let result = (|| -> Result<(), ApiError> {
            let ds = self.pool.create(&name).map_err(|e| self.pool_step_error("create image dataset", e))?;
            made = true;
            let staging = ds.join(STAGING);
            std::fs::create_dir(&staging).map_err(|e| step_error("create the layers' staging directory", e))?;
            let mut staged = Vec::with_capacity(resolved.layers.len());
            for layer in &resolved.layers {
                let at = staging.join(layer.digest.trim_start_matches("sha256:"));
                self.rt.block_on(registry.download(layer, &at)).map_err(|e| pull_error(self, &whole, e))?;
                staged.push(at);
            }
            let root = ds.join("root");
            std::fs::create_dir(&root).map_err(|e| step_error("create image root", e))?;
            for (i, (layer, at)) in resolved.layers.iter().zip(&staged).enumerate() {
                self.apply_layer(&whole, i, &layer.digest, at, &root)?;
            }
            std::fs::remove_dir(&staging).map_err(|e| step_error("remove the layers' staging directory", e))?;
            self.pool.set_readonly(&name, true).map_err(|e| step_error("make image read-only", e))?;
            self.store.set_image_phase(uuid, "ready")?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(image = %uuid, reference = %whole, error = %e.message, "import failed; removing what it made");
            self.rollback_image(uuid, made);
            return Err(e);
        }
        self.keep_reserve();
        tracing::info!(image = %uuid, reference = %whole, "imported image");
        Ok(ImagePulled { image: self.image_record(uuid)?, reference: whole, already_installed: false })
    }

    /// Applies the staged layer `at` (the `i`th, bottom first) over `root`
    /// and removes it.
    fn apply_layer(&self, whole: &str, i: usize, digest: &str, at: &Path, root: &Path) -> Result<(), ApiError> {
        let file = std::fs::File::open(at).map_err(|e| step_error("open a staged layer", e))?;
        match crate::layer::apply(std::io::BufReader::with_capacity(1 << 20, file), root) {
            Ok(stats) => {
                tracing::debug!(layer = digest, ?stats, "applied layer");
            }
            Err(e) if is_full(&e) => {
                return Err(ApiError::internal(format!("importing {whole}: pool {} is full", self.pool.name())))
            }
            Err(e) => {
                return Err(ApiError::invalid(format!(
                    "importing {whole}: layer {i} ({digest}) cannot be applied: {e}"
                )))
            }
        }
        std::fs::remove_file(at).map_err(|e| step_error("remove a staged layer", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_is_smartos_s() {
        // imgmanifest's imgUuidFromDockerDigests: sha256("d1 d2") as a uuid.
        let d = vec![format!("sha256:{}", "a".repeat(64)), format!("sha256:{}", "b".repeat(64))];
        let sum = hex::encode(sha2::Sha256::digest(format!("{} {}", d[0], d[1]).as_bytes()));
        let u = uuid_from_digests(&d).to_string();
        assert_eq!(u.replace('-', ""), sum[..32]);
        assert_eq!(u.len(), 36);
        assert_ne!(uuid_from_digests(&d[..1]), uuid_from_digests(&d), "a different chain is a different image");
    }

    #[test]
    fn references_and_their_names() {
        let r = parse_reference("alpine:3.20").unwrap();
        assert_eq!((r.whole().as_str(), familiar_name(&r).as_str()), ("docker.io/library/alpine:3.20", "alpine"));
        let r = parse_reference("127.0.0.1:5000/tests/app").unwrap();
        assert_eq!(r.whole(), "127.0.0.1:5000/tests/app:latest");
        assert_eq!(familiar_name(&r), "127.0.0.1:5000/tests/app");
        let r = parse_reference(&format!("quay.io/x/y@sha256:{}", "c".repeat(64))).unwrap();
        assert_eq!(r.tag(), None);
        assert!(parse_reference("").is_err());
        assert!(parse_reference("has space").is_err());
        assert!(parse_reference("x:y:z").is_err());
    }

    #[test]
    fn docker_config_comes_from_the_manifest_tags() {
        let m = json!({"type": "docker", "tags": {"docker:config": {
            "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "app"}}});
        let c = DockerConfig::of_manifest(&m).unwrap();
        assert_eq!(c.entrypoint.as_deref(), Some(&["/bin/sh".to_string(), "-c".to_string()][..]));
        assert_eq!((c.workdir.as_deref(), c.user.as_deref(), c.env.len()), (Some("/srv"), Some("app"), 1));
        assert_eq!(DockerConfig::of_manifest(&json!({"type": "docker"})), Some(DockerConfig::default()));
        assert_eq!(DockerConfig::of_manifest(&json!({"type": "lx-dataset"})), None);
    }

    #[test]
    fn published_at_is_imgapi_s_form() {
        assert_eq!(published_at("2024-05-01T10:20:30.123456789Z").as_deref(), Some("2024-05-01T10:20:30.000Z"));
        assert_eq!(published_at("2024-05-01T10:20:30Z").as_deref(), Some("2024-05-01T10:20:30.000Z"));
        assert_eq!(published_at("nonsense"), None);
    }
}
