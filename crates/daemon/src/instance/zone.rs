//! The zone driver (brand lx): a writable clone of an `lx-dataset` image,
//! run by the monitor as a set of namespaces around the image's init.

use serde_json::{Map, Value};
use zonevisor_api::{ApiError, StartRequest, ValidationErrors, VmObject};
use zonevisor_zone::control::ControlError;
use zonevisor_zone::lofs::Protected;
use zonevisor_zone::{IdMap, Limits, ZoneSpec};

use super::driver::{Driver, Made, Undo};
use super::host::Launch;
use super::spec::{InstanceSpec, Kind, ZonePart};
use crate::images::step_error;
use crate::Daemon;

/// The first host id of zones' user namespaces (well above normal users).
const IDMAP_BASE: u32 = 1_000_000;
/// Ids per zone: every uid and gid an image may use.
const IDMAP_COUNT: u32 = 65_536;

/// The zone driver.
pub(crate) struct ZoneDriver;

fn part(spec: &InstanceSpec) -> Result<&ZonePart, ApiError> {
    match &spec.kind {
        Kind::Zone(z) => Ok(z),
        Kind::Vm(_) => Err(ApiError::internal(format!("VM {} is not a zone", spec.uuid))),
    }
}

impl Driver for ZoneDriver {
    fn check_create(&self, d: &Daemon, vm: &VmObject, errs: &mut ValidationErrors) {
        if let Some(img) = vm.get("image_uuid").and_then(Value::as_str) {
            match img.parse().ok().and_then(|id| d.store.get_image(id).ok().flatten()) {
                Some(row) if row.phase == "ready" => {
                    let ty = row.manifest.get("type").and_then(Value::as_str).unwrap_or("");
                    if ty != "lx-dataset" {
                        errs.bad_value(
                            "image_uuid",
                            format!("image {img} is of type {ty}; brand lx needs an lx-dataset image"),
                        );
                    }
                }
                _ => errs.bad_value("image_uuid", format!("image {img} is not installed (see imgadm list)")),
            }
        }
        d.check_lofs_sources(vm, errs);
    }

    fn provision(&self, d: &Daemon, spec: &InstanceSpec, _vm: &mut VmObject, made: &mut Made) -> Result<(), ApiError> {
        let zone = part(spec)?;
        d.host.clone_dataset(&zone.image.to_string(), &spec.dataset())?;
        made.dataset = true;
        Ok(())
    }

    fn update_storage<'a>(
        &self,
        _d: &'a Daemon,
        _current: &InstanceSpec,
        _vm: &mut VmObject,
    ) -> Result<(Option<Undo<'a>>, Vec<String>), ApiError> {
        // A zone's storage is its dataset: quota is a live change.
        Ok((None, Vec::new()))
    }

    fn limits(&self, spec: &InstanceSpec) -> Limits {
        spec.limits.clone()
    }

    fn launch(
        &self,
        d: &Daemon,
        spec: &InstanceSpec,
        obj: &VmObject,
        limits: Limits,
        opts: &StartRequest,
    ) -> Result<Launch, ApiError> {
        let zone = part(spec)?;
        if !opts.is_empty() {
            // SmartOS: "For OS VMs, this doesn't take any arguments."
            return Err(ApiError::invalid(format!(
                "VM {} is a zone: start options (order, once, cdrom, disk) are for hardware VMs",
                spec.uuid
            )));
        }
        let name = spec.dataset();
        Ok(Launch::Zone(Box::new(ZoneSpec {
            uuid: name.clone(),
            zone_root: d.pool.dataset_path(&name).join("root"),
            run_dir: d.run_dir(spec.uuid),
            hostname: spec.hostname.clone(),
            dns_domain: zone.dns_domain.clone(),
            resolvers: if spec.resolvers.is_empty() {
                d.network_resolvers(&spec.net)
            } else {
                Some(spec.resolvers.clone())
            },
            init: vec![zone.init.clone()],
            tmpfs_bytes: zone.tmpfs_bytes,
            mounts: zone.mounts.clone(),
            cgroup: d.cgroup_of(spec.uuid),
            limits,
            restart_init: zone.restart_init,
            idmap: Some(idmap_of(d, spec)?),
            lxcfs: d.host.lxcfs(),
            limit_priv: zone.limit_priv.clone(),
            protected: d.protected(),
            nics: d.ports_of(spec.uuid, &spec.net, true)?,
            metadata: Some(d.metadata_spec(obj)),
            native: d.native_dir(),
            docker: None,
        })))
    }

    fn started(&self, _d: &Daemon, _spec: &InstanceSpec) -> Result<(), ApiError> {
        Ok(())
    }

    fn apply_live<'a>(
        &self,
        d: &'a Daemon,
        current: &'a InstanceSpec,
        next: &InstanceSpec,
        live: &[String],
    ) -> Result<Option<Undo<'a>>, ApiError> {
        // SmartOS rewrites a running zone's resolv.conf for new `resolvers`
        // when it maintains them. Not undone: the file is the zone's, and
        // what follows cannot fail on its account.
        let maintains = part(next).is_ok_and(|z| z.maintain_resolvers);
        if maintains && live.iter().any(|c| c == "resolvers" || c == "maintain_resolvers") {
            let resolvers = if next.resolvers.is_empty() {
                d.network_resolvers(&next.net).unwrap_or_default()
            } else {
                next.resolvers.clone()
            };
            d.host
                .set_resolvers(&d.run_dir(current.uuid), &resolvers)
                .map_err(|e| step_error("rewrite /etc/resolv.conf", e))?;
        }
        if !live.iter().any(|c| c == "tmpfs") {
            return Ok(None);
        }
        let run_dir = d.run_dir(current.uuid);
        let bytes = |s: &InstanceSpec| part(s).map(|z| z.tmpfs_bytes.unwrap_or(0));
        d.host.set_tmpfs(&run_dir, bytes(next)?).map_err(|e| match e {
            ControlError::Refused(why) => {
                let mut errs = ValidationErrors::default();
                errs.bad_value("tmpfs", why);
                ApiError::validation(errs)
            }
            e => step_error("resize /tmp", e),
        })?;
        let before = bytes(current)?;
        Ok(Some(Box::new(move || {
            if let Err(e) = d.host.set_tmpfs(&run_dir, before) {
                tracing::warn!(vm = %current.uuid, error = %crate::chain(&e), "putting back the size of /tmp");
            }
        })))
    }

    fn sysrq(&self, _d: &Daemon, spec: &InstanceSpec, _request: &str) -> Result<String, ApiError> {
        // SmartOS: "This command is only available for KVM VMs."
        Err(ApiError::invalid(format!("VM {} is a zone: sysrq is for hardware VMs", spec.uuid)))
    }

    fn info(&self, _d: &Daemon, _spec: &InstanceSpec) -> Result<Map<String, Value>, ApiError> {
        Ok(Map::new())
    }
}

/// The zone's user-namespace id range, allocated on its first start and
/// kept in the store with its row (freed when the row goes):
/// `IDMAP_BASE + slot * IDMAP_COUNT`, for uids and gids alike.
pub(crate) fn idmap_of(d: &Daemon, spec: &InstanceSpec) -> Result<IdMap, ApiError> {
    let max = (u32::MAX - IDMAP_BASE) / IDMAP_COUNT - 1;
    let slot = d
        .store
        .idmap_slot(spec.uuid, max)?
        .ok_or_else(|| ApiError::internal(format!("no free user id range for VM {}", spec.uuid)))?;
    let host = IDMAP_BASE + slot * IDMAP_COUNT;
    Ok(IdMap { host_uid: host, host_gid: host, count: IDMAP_COUNT })
}

impl Daemon {
    /// What `lofs` sources may not reach: the daemon's root and the pool,
    /// wherever its filesystem is mounted (see `zonevisor_zone::lofs`).
    pub(crate) fn protected(&self) -> Protected {
        Protected::of(&[&self.root, self.pool.mountpoint()])
    }

    /// Refuses `lofs` sources that reach into the pool, the daemon's root,
    /// or through a symlink a zone could have made (`filesystems.N.source`);
    /// one that does not exist yet is left for the start to report.
    pub(crate) fn check_lofs_sources(&self, vm: &VmObject, errs: &mut ValidationErrors) {
        let Some(fs) = vm.get("filesystems").and_then(Value::as_array) else { return };
        let protected = self.protected();
        for (i, f) in fs.iter().enumerate() {
            let Some(source) = f.get("source").and_then(Value::as_str) else { continue };
            if f.get("type").and_then(Value::as_str) != Some("lofs") {
                continue;
            }
            match zonevisor_zone::lofs::resolve(std::path::Path::new(source), &protected) {
                Err(e) if !e.is_not_found() => errs.bad_value(&format!("filesystems.{i}.source"), e.to_string()),
                _ => {}
            }
        }
    }
}
