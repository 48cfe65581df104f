//! One image in one registry, spoken to with `oci-client` (the OCI
//! distribution protocol, over reqwest and rustls) and read with
//! `oci-spec`'s types: the manifest (an image index resolved to this
//! host's platform first), the image configuration, and the layers'
//! blobs, each checked against its digest and its size.
//!
//! Authentication: anonymous, with the registry's bearer-token flow when
//! it asks for one (Docker Hub), or HTTP Basic with credentials from a
//! Docker-style `config.json` (see [`credentials`]). A registry that
//! refuses what we have is [`PullError::Auth`].

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use oci_spec::image::{Arch, ImageConfiguration, ImageIndex, ImageManifest, Os};
use sha2::Digest as _;

/// Media types of the manifests asked for (OCI and Docker v2 schema 2,
/// single images and indexes).
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Layer media types applied (compression is told by the bytes anyway).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// The largest image configuration read (they are a few KiB).
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// The registry wants credentials we do not have (or refused ours).
    #[error("registry {registry} requires authentication to pull {repository}{why}")]
    Auth {
        /// The registry's host.
        registry: String,
        /// The repository.
        repository: String,
        /// What it said, if anything (`: ...`).
        why: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("{what} was not found in registry {registry}{why}")]
    NotFound {
        /// What was looked for (`image docker.io/library/x:1`).
        what: String,
        /// The registry's host.
        registry: String,
        /// What it said (`: manifest unknown`).
        why: String,
    },
    /// The registry could not be reached or spoken to.
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable {
        /// The registry's host.
        registry: String,
        /// Why (the transport's error chain).
        message: String,
    },
    /// Content did not match its digest.
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    Digest {
        /// What (`layer sha256:...`).
        what: String,
        /// The digest the manifest names.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// What the registry sent cannot be installed (a manifest or
    /// configuration that is invalid, another platform, foreign layers).
    #[error("{0}")]
    Invalid(String),
    /// Writing a downloaded blob failed.
    #[error("writing {what}: {source}")]
    Write {
        /// What was written.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A layer to download: its descriptor's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerBlob {
    /// `sha256:<64 hex>`.
    pub digest: String,
    /// Its size in bytes, as the manifest says.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// An image resolved in its registry: everything but its layers' bytes.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The digest of the image manifest (for this platform).
    pub manifest_digest: String,
    /// The digest of the index it was chosen from, when the reference named one.
    pub index_digest: Option<String>,
    /// The image configuration.
    pub config: ImageConfiguration,
    /// Its digest.
    pub config_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<LayerBlob>,
}

/// Credentials for registries, from a Docker-style `config.json`: the
/// file `$DOCKER_CONFIG/config.json`, or `$HOME/.docker/config.json`.
/// An entry of `auths` keyed by the registry's host (or its URL, as
/// `docker login` writes Docker Hub's, `https://index.docker.io/v1/`)
/// gives `auth` (base64 of `user:password`) or `username` and
/// `password`. Credential helpers (`credsStore`, `credHelpers`) are not
/// run. No file, or no entry: anonymous.
pub(crate) fn credentials(registry: &str) -> RegistryAuth {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker/config.json"),
            None => return RegistryAuth::Anonymous,
        },
    };
    match std::fs::read(&path) {
        Ok(bytes) => auth_from_config(&bytes, registry).unwrap_or(RegistryAuth::Anonymous),
        Err(_) => RegistryAuth::Anonymous,
    }
}

/// The credentials `config` (a Docker `config.json`) holds for `registry`.
pub(crate) fn auth_from_config(config: &[u8], registry: &str) -> Option<RegistryAuth> {
    use base64::Engine as _;
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    let auths = v.get("auths")?.as_object()?;
    let hub = matches!(registry, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    let entry = auths.iter().find_map(|(key, entry)| {
        let host = key.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        let same =
            host == registry || (hub && matches!(host, "docker.io" | "index.docker.io" | "registry-1.docker.io"));
        same.then_some(entry)
    })?;
    if let Some(auth) = entry.get("auth").and_then(serde_json::Value::as_str).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    let user = entry.get("username")?.as_str()?;
    let password = entry.get("password")?.as_str()?;
    Some(RegistryAuth::Basic(user.to_string(), password.to_string()))
}

/// True for a registry on a loopback address (`localhost`, `127.0.0.0/8`,
/// `[::1]`, with or without a port): Docker lets those speak plain HTTP.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => {
            registry.rsplit_once(':').map_or(registry, |(h, p)| if p.parse::<u16>().is_ok() { h } else { registry })
        }
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

/// This host's platform in OCI's words.
fn host_platform() -> (Os, Arch) {
    (Os::Linux, Arch::default())
}

/// One image's registry.
pub(crate) struct Registry {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl Registry {
    /// Resolves `reference` in its registry: HTTPS, or for an insecure
    /// registry (`insecure`, or a loopback one) HTTPS without checking
    /// the certificate and then plain HTTP when HTTPS cannot be spoken.
    /// Returns the registry to download from and the image.
    pub(crate) async fn resolve(reference: &Reference, insecure: bool) -> Result<(Registry, Resolved), PullError> {
        install_crypto();
        let host = reference.resolve_registry().to_string();
        let auth = credentials(reference.registry());
        let insecure = insecure || is_loopback(&host);
        let https = Registry::with(reference, auth.clone(), ClientProtocol::Https, insecure);
        match https.resolve_here().await {
            Err(PullError::Unreachable { .. }) if insecure => {
                let http = Registry::with(reference, auth, ClientProtocol::Http, true);
                let resolved = http.resolve_here().await?;
                Ok((http, resolved))
            }
            Err(e) => Err(e),
            Ok(resolved) => Ok((https, resolved)),
        }
    }

    fn with(reference: &Reference, auth: RegistryAuth, protocol: ClientProtocol, insecure: bool) -> Registry {
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: insecure,
            // Chosen below from the index, for this host's platform.
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        Registry { client: Client::new(config), reference: reference.clone(), auth }
    }

    fn host(&self) -> String {
        self.reference.resolve_registry().to_string()
    }

    /// Maps the client's errors to ours, for `what`.
    fn error(&self, what: &str, e: OciDistributionError) -> PullError {
        let registry = self.host();
        let repository = self.reference.repository().to_string();
        match e {
            OciDistributionError::UnauthorizedError { .. } => {
                PullError::Auth { registry, repository, why: String::new() }
            }
            OciDistributionError::AuthenticationFailure(why) => {
                PullError::Auth { registry, repository, why: format!(": {}", why.trim()) }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let why = envelope.errors.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ");
                let why = if why.is_empty() { String::new() } else { format!(": {why}") };
                if codes.iter().any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied)) {
                    PullError::Auth { registry, repository, why }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    PullError::NotFound { what: what.to_string(), registry, why }
                } else {
                    PullError::Invalid(format!("registry {registry} refused {what}{why}"))
                }
            }
            OciDistributionError::ServerError { code: 401 | 403, message, .. } => {
                PullError::Auth { registry, repository, why: short(&message) }
            }
            OciDistributionError::ServerError { code: 404, message, .. } => {
                PullError::NotFound { what: what.to_string(), registry, why: short(&message) }
            }
            OciDistributionError::ServerError { code, message, .. } => PullError::Unreachable {
                registry,
                message: format!("it answered {what} with HTTP status {code}{}", short(&message)),
            },
            OciDistributionError::RequestError(e) => PullError::Unreachable { registry, message: crate::chain(&e) },
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => PullError::Digest { what: what.to_string(), expected, actual },
            OciDistributionError::ImageManifestNotFoundError(why) => {
                PullError::NotFound { what: what.to_string(), registry, why: format!(": {why}") }
            }
            other => PullError::Invalid(format!("{what} from registry {registry}: {}", crate::chain(&other))),
        }
    }

    /// The manifest (resolved through an index), its configuration and layers.
    async fn resolve_here(&self) -> Result<Resolved, PullError> {
        let image = format!("image {}", self.reference.whole());
        self.client
            .auth(&self.reference, &self.auth, RegistryOperation::Pull)
            .await
            .map_err(|e| self.error(&image, e))?;
        let (body, digest) = self
            .client
            .pull_manifest_raw(&self.reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.error(&image, e))?;
        let (body, manifest_digest, index_digest) = if is_index(&body)? {
            let index: ImageIndex = serde_json::from_slice(&body)
                .map_err(|e| PullError::Invalid(format!("the image index of {image} is not valid: {e}")))?;
            let chosen = choose_platform(&index).ok_or_else(|| {
                let have: Vec<String> = index
                    .manifests()
                    .iter()
                    .map(|m| m.platform().as_ref().map_or("?".into(), |p| format!("{}/{}", p.os(), p.architecture())))
                    .collect();
                let (os, arch) = host_platform();
                PullError::Invalid(format!("{image} has no {os}/{arch} image (it has: {})", have.join(", ")))
            })?;
            let by_digest = self.reference.clone_with_digest(chosen.clone());
            let (body, d) = self
                .client
                .pull_manifest_raw(&by_digest, &self.auth, MANIFEST_TYPES)
                .await
                .map_err(|e| self.error(&format!("{image} ({chosen})"), e))?;
            if d != chosen {
                return Err(PullError::Digest {
                    what: format!("the manifest of {image}"),
                    expected: chosen,
                    actual: d,
                });
            }
            (body, d, Some(digest))
        } else {
            (body, digest, None)
        };
        let manifest: ImageManifest = serde_json::from_slice(&body)
            .map_err(|e| PullError::Invalid(format!("the manifest of {image} is not valid: {e}")))?;
        let layers = layers_of(&manifest).map_err(|why| PullError::Invalid(format!("{image}: {why}")))?;
        let cfg = manifest.config();
        let config_digest = cfg.digest().to_string();
        if cfg.size() > MAX_CONFIG_BYTES {
            return Err(PullError::Invalid(format!("{image}: its configuration is {} bytes", cfg.size())));
        }
        let desc = OciDescriptor { digest: config_digest.clone(), size: cfg.size() as i64, ..Default::default() };
        let mut raw = Vec::new();
        self.client
            .pull_blob(&self.reference, &desc, &mut raw)
            .await
            .map_err(|e| self.error(&format!("the configuration of {image}"), e))?;
        let config: ImageConfiguration = serde_json::from_slice(&raw)
            .map_err(|e| PullError::Invalid(format!("the configuration of {image} is not valid: {e}")))?;
        let (os, arch) = host_platform();
        if *config.os() != os || *config.architecture() != arch {
            return Err(PullError::Invalid(format!(
                "{image} is for {}/{}; this host runs {os}/{arch}",
                config.os(),
                config.architecture()
            )));
        }
        Ok(Resolved { manifest_digest, index_digest, config, config_digest, layers })
    }

    /// Downloads `layer` into the new file `to`, checking its size (no
    /// more than the manifest says: a registry streaming without end is
    /// cut off) and its sha256 digest. The file is synced.
    pub(crate) async fn download(&self, layer: &LayerBlob, to: &Path) -> Result<(), PullError> {
        let what = format!("layer {}", layer.digest);
        let desc = OciDescriptor { digest: layer.digest.clone(), size: layer.size as i64, ..Default::default() };
        let mut stream =
            self.client.pull_blob_stream(&self.reference, &desc).await.map_err(|e| self.error(&what, e))?;
        let write_err = |source| PullError::Write { what: what.clone(), source };
        let mut out = std::fs::File::options().write(true).create_new(true).open(to).map_err(write_err)?;
        let mut hasher = sha2::Sha256::new();
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // The client's own check at the end of the stream, or the transport.
                    let text = crate::chain(&e);
                    return Err(if text.contains("Invalid digest") {
                        // "... Expected <digest>, got <digest>": what arrived is the last.
                        let actual = text.rsplit("got ").next().filter(|a| a.starts_with("sha256:"));
                        PullError::Digest {
                            what,
                            expected: layer.digest.clone(),
                            actual: actual.map_or_else(|| format!("something else ({text})"), str::to_string),
                        }
                    } else {
                        PullError::Unreachable { registry: self.host(), message: format!("downloading {what}: {text}") }
                    });
                }
            };
            got += chunk.len() as u64;
            if got > layer.size {
                return Err(PullError::Invalid(format!(
                    "{what} is larger than its manifest says ({} bytes)",
                    layer.size
                )));
            }
            hasher.update(&chunk);
            out.write_all(&chunk).map_err(write_err)?;
        }
        if got != layer.size {
            return Err(PullError::Invalid(format!(
                "{what} ended after {got} bytes; its manifest says {} (a cut download?)",
                layer.size
            )));
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != layer.digest {
            return Err(PullError::Digest { what, expected: layer.digest.clone(), actual });
        }
        out.sync_all().map_err(write_err)
    }
}

/// rustls's process-wide crypto provider (ring), installed once.
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: one was installed already (by another user of rustls): fine.
        // ring has no post-quantum key exchange (aws-lc-rs has; rustls
        // deprecates ring's provider for it), which registries do not need.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// `: <message>` cut to a line, or nothing.
fn short(message: &str) -> String {
    let m = message.trim();
    if m.is_empty() {
        return String::new();
    }
    let line = m.lines().next().unwrap_or(m);
    let cut: String = line.chars().take(200).collect();
    format!(": {cut}")
}

/// Whether a manifest's body is an index (OCI or Docker's manifest list).
fn is_index(body: &[u8]) -> Result<bool, PullError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PullError::Invalid(format!("the manifest is not JSON: {e}")))?;
    let media = v.get("mediaType").and_then(serde_json::Value::as_str).unwrap_or("");
    Ok(media.ends_with("index.v1+json") || media.ends_with("manifest.list.v2+json") || v.get("manifests").is_some())
}

/// The digest of the index's image for this host's platform.
fn choose_platform(index: &ImageIndex) -> Option<String> {
    let (os, arch) = host_platform();
    index
        .manifests()
        .iter()
        .find(|m| m.platform().as_ref().is_some_and(|p| *p.os() == os && *p.architecture() == arch))
        .map(|m| m.digest().to_string())
}

/// The manifest's layers, checked: sha256 digests, media types we apply.
fn layers_of(manifest: &ImageManifest) -> Result<Vec<LayerBlob>, String> {
    let mut out = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        let media_type = l.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(format!(
                "layer {i} has media type {media_type}; only tar layers (plain, gzip or zstd) can be installed"
            ));
        }
        if l.urls().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(format!("layer {i} is a foreign layer (its blob is elsewhere); it cannot be installed"));
        }
        let digest = l.digest().to_string();
        if !is_sha256(&digest) {
            return Err(format!("layer {i} has digest {digest}; only sha256 digests are supported"));
        }
        out.push(LayerBlob { digest, size: l.size(), media_type });
    }
    if out.is_empty() {
        return Err("the image has no layers".into());
    }
    Ok(out)
}

/// `sha256:` and 64 lowercase hex digits.
pub(crate) fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_told_apart() {
        for r in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "[::1]"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["docker.io", "index.docker.io", "10.0.0.1:5000", "registry.example:443", "[fe80::1]:5000"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn docker_config_credentials() {
        let cfg = br#"{"auths": {"127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
                                 "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}}}"#;
        let basic = |u: &str, p: &str| Some(RegistryAuth::Basic(u.into(), p.into()));
        let got = |r| match auth_from_config(cfg, r) {
            Some(RegistryAuth::Basic(u, p)) => Some(RegistryAuth::Basic(u, p)),
            _ => None,
        };
        assert!(
            matches!((got("127.0.0.1:5000"), basic("user", "pa:ss")), (Some(RegistryAuth::Basic(a, b)), Some(RegistryAuth::Basic(c, d))) if a == c && b == d)
        );
        assert!(matches!(got("index.docker.io"), Some(RegistryAuth::Basic(u, _)) if u == "hub"));
        assert!(got("other:5000").is_none());
        assert!(auth_from_config(b"not json", "x").is_none());
    }

    #[test]
    fn manifests_are_checked_for_what_can_be_installed() {
        let m = |layers: &str| -> ImageManifest {
            serde_json::from_str(&format!(
                r#"{{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 10,
                               "digest": "sha256:{0}"}}, "layers": [{layers}]}}"#,
                "a".repeat(64)
            ))
            .unwrap()
        };
        let good = format!(
            r#"{{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 5, "digest": "sha256:{}"}}"#,
            "b".repeat(64)
        );
        assert_eq!(layers_of(&m(&good)).unwrap()[0].size, 5);
        let foreign = good.replace("rootfs.diff.tar.gzip", "rootfs.foreign.diff.tar.gzip");
        assert!(layers_of(&m(&foreign)).unwrap_err().contains("media type"));
        let sha512 = format!(
            r#"{{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 5, "digest": "sha512:{}"}}"#,
            "c".repeat(128)
        );
        assert!(layers_of(&m(&sha512)).unwrap_err().contains("sha256"));
        assert!(layers_of(&m("")).unwrap_err().contains("no layers"));
        assert!(is_index(br#"{"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}"#).unwrap());
        assert!(!is_index(br#"{"schemaVersion": 2, "layers": []}"#).unwrap());
    }

    #[test]
    fn an_index_gives_this_hosts_platform() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "1".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "2".repeat(64)), "platform": {"os": "unknown", "architecture": "unknown"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "3".repeat(64)),
                 "platform": {"os": "linux", "architecture": Arch::default().to_string()}}
            ]
        }))
        .unwrap();
        assert_eq!(choose_platform(&index), Some(format!("sha256:{}", "3".repeat(64))));
    }
}
