//! Request and response bodies.
//!
//! A VM object is SmartOS's: a JSON object keyed by vmadm property names
//! (`uuid`, `brand`, `state`, `max_physical_memory`, ...). It stays a JSON
//! object on the wire so that every property a SmartOS tool knows survives
//! the trip; `zonevisor-spec` owns which properties exist and what they mean.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A VM object as `vmadm get` prints it.
pub type VmObject = Map<String, Value>;

/// `POST /v1/vms/{uuid}/stop`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StopRequest {
    /// Halt at once instead of asking init to shut down.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for a graceful shutdown before halting (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/vms/{uuid}/reboot`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RebootRequest {
    /// Halt at once instead of asking init to shut down.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/vms/{uuid}/kill`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KillRequest {
    /// Signal name (`SIGTERM`, `TERM`) or number; default SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// `POST /v1/validate`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidateRequest {
    /// `create` or `update`.
    pub action: ValidateAction,
    /// The brand the payload is for (required for `update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// The payload to check.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// What a payload is validated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValidateAction {
    /// A `vmadm create` payload.
    Create,
    /// A `vmadm update` payload.
    Update,
}

/// `POST /v1/images`: install an image from a manifest and a file on the host.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageInstallRequest {
    /// The image manifest (v2).
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// Absolute path of the image file (tar, tar.gz, tar.xz or tar.zst) on the host.
    pub file: String,
}

/// An installed image as `imgadm get` prints it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageRecord {
    /// The manifest as installed.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The pool the image lives in.
    pub zpool: String,
    /// Instances cloned from this image.
    #[serde(default)]
    pub clones: u64,
}

/// `GET /v1/ping`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Ping {
    /// Always `"ok"`.
    pub status: String,
    /// The daemon's version.
    pub version: String,
    /// The daemon's process ID.
    pub pid: u32,
    /// The daemon's root directory.
    pub root: String,
}

/// `DELETE` answers and other empty successes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// What was done, in words.
    pub message: String,
}
