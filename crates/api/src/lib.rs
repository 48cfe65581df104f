//! The one definition of zonevisor's API.
//!
//! The daemon (`zonevisord`) and the command-line tools (`vmadm`, `imgadm`,
//! `sysinfo`, `zlogin`) share these types: typed identifiers, the error shape
//! (SmartOS's `bad_values` / `missing_properties` included), the request and
//! response bodies, the route table, the generated OpenAPI document and a
//! small blocking client that speaks HTTP/1.1 over the daemon's Unix socket.

pub mod client;
pub mod error;
pub mod ids;
pub mod openapi;
pub mod routes;
pub mod sources;
pub mod stream;
pub mod types;

pub use client::{Client, ClientError};
pub use error::{ApiError, ErrorKind, ValidationErrors};
pub use ids::{ImageUuid, InstanceUuid};
pub use sources::*;
pub use types::*;

/// Environment variable naming the daemon's socket for the CLIs.
pub const SOCKET_ENV: &str = "ZONEVISOR_SOCKET";
/// Default root directory of a daemon.
pub const DEFAULT_ROOT: &str = "/var/lib/zonevisor";
/// The daemon's API socket, relative to its root.
pub const SOCKET_NAME: &str = "zonevisord.sock";

/// The socket path of a daemon kept under `root`.
pub fn socket_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join("run").join(SOCKET_NAME)
}
