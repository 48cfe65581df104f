//! The metadata service's host side: what each monitor serves its instance
//! (`zonevisor_zone::MetadataSpec`, and a new copy after every change),
//! and `/native`, the read-only directory zones get with the guest tools.
//!
//! The protocol, the key rules and the tools are `zonevisor_mdata`; the
//! monitor serves them (`monitor/mdata.rs` in the zone crate). A guest's
//! `PUT` or `DELETE` comes back here as a `vmadm update` through the API
//! socket, so it is validated, stored and evented like any other.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zonevisor_api::{InstanceUuid, VmObject};
use zonevisor_zone::MetadataSpec;

use crate::Daemon;

/// The guest tools, as SmartOS names them: links to the one `mdata` binary.
pub(crate) const TOOLS: [&str; 4] = ["mdata-get", "mdata-put", "mdata-list", "mdata-delete"];

/// Where the metadata service's host side keeps what it needs.
#[derive(Debug, Default)]
pub(crate) struct Metadata {
    /// The daemon's API socket: where guests' writes go.
    pub(crate) api_socket: PathBuf,
    /// `<root>/native`, when it could be made.
    pub(crate) native: Option<PathBuf>,
}

impl Metadata {
    /// Makes `<root>/native`: `usr/sbin/mdata` (a copy of `tools`, the
    /// static `mdata` binary), its four names, and `.zonecontrol` (where
    /// zones get their metadata socket). Without `tools`, zones still get
    /// `/native/.zonecontrol`, and the daemon says why they have no tools.
    pub(crate) fn prepare(root: &Path, api_socket: PathBuf, tools: Option<&Path>) -> Metadata {
        let dir = root.join("native");
        match make_native(&dir, tools) {
            Ok(()) => Metadata { api_socket, native: Some(dir) },
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "zones get no /native (no guest tools, no /native/.zonecontrol)");
                Metadata { api_socket, native: None }
            }
        }
    }
}

fn make_native(dir: &Path, tools: Option<&Path>) -> io::Result<()> {
    let sbin = dir.join("usr/sbin");
    fs::create_dir_all(&sbin)?;
    fs::create_dir_all(dir.join(".zonecontrol"))?;
    for d in [dir.to_path_buf(), dir.join("usr"), sbin.clone(), dir.join(".zonecontrol")] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    }
    match tools.filter(|t| t.is_file()) {
        Some(tools) => {
            // A new binary replaces the old by rename: zones running with
            // this directory mounted see the new one, never half of it.
            let tmp = sbin.join(".mdata.new");
            fs::copy(tools, &tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
            fs::rename(&tmp, sbin.join("mdata"))?;
            for t in TOOLS {
                let link = sbin.join(t);
                if fs::read_link(&link).ok().as_deref() != Some(Path::new("mdata")) {
                    let _ = fs::remove_file(&link);
                    std::os::unix::fs::symlink("mdata", &link)?;
                }
            }
        }
        None => tracing::warn!(
            "the guest tools (the mdata binary) were not found beside zonevisord (see --mdata): zones get no mdata-get"
        ),
    }
    Ok(())
}

impl Daemon {
    /// What an instance's monitor serves it: the instance as `vmadm get`
    /// shows it, and where its writes go.
    pub(crate) fn metadata_spec(&self, vm: &VmObject) -> MetadataSpec {
        let vm = self.view(vm.clone());
        MetadataSpec { vm: serde_json::Value::Object(vm), api_socket: self.metadata.api_socket.clone() }
    }

    /// `/native` for zones, if there is one.
    pub(crate) fn native_dir(&self) -> Option<PathBuf> {
        self.metadata.native.clone()
    }

    /// Sends a running instance's monitor the instance as it now is; a
    /// monitor that does not answer keeps the copy it had (logged).
    pub(crate) fn push_metadata(&self, uuid: InstanceUuid, vm: &VmObject) {
        let vm = serde_json::Value::Object(self.view(vm.clone()));
        if let Err(e) = self.host.set_metadata(&self.run_dir(uuid), &vm) {
            tracing::warn!(vm = %uuid, error = %crate::chain(&e), "the metadata service did not take the change");
        }
    }
}
