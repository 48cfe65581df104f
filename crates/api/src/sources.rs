//! Image sources and what comes from them: the bodies of `/v1/sources`
//! (`imgadm sources`, `avail`, `show`) and of `/v1/images/import` and
//! `/v1/images/update` (`imgadm import`, `update`).
//!
//! An import answers with a stream, one [`ImportEvent`] per line
//! (`application/x-ndjson`): messages in SmartOS's words and download
//! progress as they happen, then one `done` (the image as installed) or
//! one `error` event. So the CLI can draw a progress bar while the daemon
//! downloads, and a failure after the answer has begun is still an
//! [`ApiError`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::types::ImageRecord;

/// The source every host starts with, as SmartOS's imgadm.
pub const DEFAULT_SOURCE_URL: &str = "https://images.smartos.org";
/// The Docker Hub, as `imgadm sources --add-docker-hub` adds it (SmartOS's URL).
pub const DOCKER_HUB_URL: &str = "https://docker.io";

/// What kind of server a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// An IMGAPI server (SmartOS's images.smartos.org, or a zonevisord serving its images).
    Imgapi,
    /// A Docker (OCI distribution) registry.
    Docker,
}

impl SourceType {
    /// The type's name as `imgadm` prints and takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Imgapi => "imgapi",
            SourceType::Docker => "docker",
        }
    }
}

impl std::fmt::Display for SourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "imgapi" => Ok(SourceType::Imgapi),
            "docker" => Ok(SourceType::Docker),
            "dsapi" => Err("source type \"dsapi\" (SmartOS's deprecated dataset API) is not supported".to_string()),
            other => Err(format!("type \"{other}\" is invalid: must be one of \"imgapi\", \"docker\"")),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An image source, as `imgadm sources -j` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageSource {
    /// The source's URL, as given (`https://images.smartos.org`; an IMGAPI
    /// URL may carry `?channel=<name>`).
    pub url: String,
    /// What kind of server it is.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// Whether its TLS certificate is not checked (`imgadm sources -k`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure: bool,
}

impl ImageSource {
    /// SmartOS's default source.
    pub fn default_source() -> ImageSource {
        ImageSource { url: DEFAULT_SOURCE_URL.to_string(), source_type: SourceType::Imgapi, insecure: false }
    }

    /// SmartOS's words for it: `"imgapi" image source "<url>"`, with
    /// ` (insecure)` when it is.
    pub fn describe(&self) -> String {
        let extra = if self.insecure { " (insecure)" } else { "" };
        format!("\"{}\" image source \"{}\"{extra}", self.source_type, self.url)
    }

    /// The URL compared as SmartOS compares sources: with a scheme
    /// (`http://` when none is given) and without a trailing `/`.
    pub fn normalized_url(&self) -> String {
        normalize_url(&self.url)
    }
}

/// `url` as SmartOS compares source URLs: `http://` added when it has no
/// scheme, a trailing `/` of its path removed.
pub fn normalize_url(url: &str) -> String {
    let url = url.trim();
    let with_scheme = if url.contains("://") { url.to_string() } else { format!("http://{url}") };
    let (base, query) = match with_scheme.split_once('?') {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => (with_scheme, None),
    };
    let base = base.trim_end_matches('/').to_string();
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

/// `POST /v1/sources`: add a source at the end of the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceAddRequest {
    /// The source.
    #[serde(flatten)]
    pub source: ImageSource,
    /// Skip the check that the URL answers as a server of its type (`-f`).
    #[serde(default)]
    pub force: bool,
}

/// The answer to [`SourceAddRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceAdded {
    /// False when the list already had it (nothing changed).
    pub added: bool,
    /// The source, as listed.
    pub source: ImageSource,
}

/// The answer to `DELETE /v1/sources?url=<url>`: the sources removed (those
/// whose URL is the one given, compared as [`normalize_url`] does), none
/// when the list had none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesDeleted {
    /// What was removed.
    pub deleted: Vec<ImageSource>,
}

/// `PUT /v1/sources`: the whole list, in order (`imgadm sources -e`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesReplaceRequest {
    /// The new list.
    pub sources: Vec<ImageSource>,
    /// Skip the check of sources new to the list (`-f`).
    #[serde(default)]
    pub force: bool,
}

/// What a [`SourcesReplaceRequest`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceChangeKind {
    /// A source was added.
    Add,
    /// A source was removed.
    Del,
    /// Only the order changed.
    Reorder,
}

/// One change of a [`SourcesReplaceRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceChange {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: SourceChangeKind,
    /// The source added or removed (none for a reorder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ImageSource>,
}

/// The answer to a [`SourcesReplaceRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourcesChanged {
    /// The removals, then the additions; one `reorder` when nothing was
    /// removed (as SmartOS reports it); empty when the list is the same.
    pub changes: Vec<SourceChange>,
}

/// `GET /v1/sources/check`: whether each source answers (`imgadm sources -c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceCheck {
    /// The source's URL.
    pub url: String,
    /// Its type.
    #[serde(rename = "type")]
    pub source_type: SourceType,
    /// Whether it answered as a server of its type.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An image a source offers, as `imgadm avail -j` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AvailableImage {
    /// Its manifest, as the source has it.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The URL of the source it is listed by (the first source that lists it).
    pub source: String,
}

/// `GET /v1/sources/images`: every active image of every IMGAPI source,
/// the first source listing a uuid winning (`imgadm avail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AvailableImages {
    /// The images of the sources that answered.
    pub images: Vec<AvailableImage>,
    /// Why each source that did not answer did not (the images of the
    /// others are listed all the same, as SmartOS does).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// `POST /v1/images/import`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageImportRequest {
    /// The image: a uuid, or `<name>` (its latest version) or `<name>@<version>`.
    pub image: String,
    /// Import from this IMGAPI URL instead of the configured sources (`-S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One line of the answer to `POST /v1/images/import`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ImportEvent {
    /// A line to show, in SmartOS's words (`Importing <uuid> (<name>@<version>) from "<url>"`, ...).
    Message {
        /// The line.
        message: String,
    },
    /// Bytes downloaded so far, of all the images this import downloads.
    Progress {
        /// Bytes downloaded (resumed bytes count as downloaded).
        done: u64,
        /// Bytes to download in all.
        total: u64,
    },
    /// The import ended: the image asked for, as installed.
    Done {
        /// The image.
        image: ImageRecord,
    },
    /// The import failed; what it installed of the origin chain stays,
    /// nothing of the image that failed does.
    Error {
        /// Why.
        error: ApiError,
    },
}

/// `POST /v1/images/update`: fetch installed images' manifests again from
/// the sources (`imgadm update`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageUpdateRequest {
    /// The images (every installed image when empty).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub uuids: Vec<crate::ImageUuid>,
    /// Say what would change, change nothing (`-n`).
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to [`ImageUpdateRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageUpdateResult {
    /// What was (or with `dry_run` would be) changed, and warnings, in SmartOS's words.
    pub messages: Vec<String>,
    /// The images whose update failed, each naming the image and why.
    #[serde(default)]
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_print_as_smartos_prints_them() {
        let s = ImageSource::default_source();
        assert_eq!(serde_json::to_value(&s).unwrap(), json!({"url": "https://images.smartos.org", "type": "imgapi"}));
        assert_eq!(s.describe(), "\"imgapi\" image source \"https://images.smartos.org\"");
        let k = ImageSource { insecure: true, ..s };
        assert_eq!(serde_json::to_value(&k).unwrap()["insecure"], true);
        assert!(k.describe().ends_with(" (insecure)"));
        let add: SourceAddRequest =
            serde_json::from_value(json!({"url": "http://x", "type": "docker", "force": true})).unwrap();
        assert_eq!(add.source.source_type, SourceType::Docker);
        assert!(add.force && !add.source.insecure);
        assert!("dsapi".parse::<SourceType>().unwrap_err().contains("not supported"));
        assert!("ftp".parse::<SourceType>().unwrap_err().contains("\"imgapi\", \"docker\""));
    }

    #[test]
    fn urls_compare_as_smartos_compares_them() {
        assert_eq!(normalize_url("images.example.com/"), "http://images.example.com");
        assert_eq!(normalize_url("https://x.org/a/"), "https://x.org/a");
        assert_eq!(normalize_url("https://x.org/?channel=dev"), "https://x.org?channel=dev");
    }

    #[test]
    fn import_events_are_tagged_lines() {
        let ev = ImportEvent::Progress { done: 1, total: 2 };
        assert_eq!(serde_json::to_string(&ev).unwrap(), r#"{"type":"progress","done":1,"total":2}"#);
        let ev: ImportEvent =
            serde_json::from_str(r#"{"type":"error","error":{"kind":"NotFound","message":"m"}}"#).unwrap();
        assert!(matches!(ev, ImportEvent::Error { error } if error.message == "m"));
    }
}
