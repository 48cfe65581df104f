//! What the fuzz targets (`crates/fuzzing`, `fuzz/`) call: the daemon's own
//! request path ([`exchange`]: raw bytes through the HTTP server's
//! connection code and [`decode`]) and its image manifest check
//! ([`check_manifest`]), none of which needs a pool, a store or root.
//! Not an API: it follows the daemon's internals.

pub use crate::images::{check_manifest, Manifest};
pub use crate::request::{decode, ApiRequest, RequestError};
pub use crate::server::{exchange, Exchange, BODY_TIMEOUT, HEADER_TIMEOUT, MAX_BODY, MAX_CONNECTIONS};
