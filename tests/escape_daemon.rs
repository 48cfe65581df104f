//! Hostile and broken clients against the real daemon: absurd arguments,
//! stalled connections, a killed monitor (see `escape/daemon.rs`).

mod common;

#[path = "escape/daemon.rs"]
mod daemon;
