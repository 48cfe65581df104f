//! The zone driver (brand lx): a writable clone of an `lx-dataset` or
//! `docker` image, run by the monitor as a set of namespaces around the
//! image's init, or with `docker: true` around the image's command (its
//! `docker:*` metadata, filled at create from the image's configuration
//! where the payload gives none, as Triton's sdc-docker fills them).

use serde_json::{Map, Value};
use zonevisor_api::{ApiError, StartRequest, ValidationErrors, VmObject};
use zonevisor_zone::control::ControlError;
use zonevisor_zone::lofs::Protected;
use zonevisor_zone::{IdMap, Limits, ZoneSpec};

use super::driver::{Driver, Made, Undo};
use super::host::Launch;
use super::spec::{InstanceSpec, Kind, ZonePart};
use crate::images::step_error;
use crate::oci::DockerConfig;
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
                    if ty != "lx-dataset" && ty != "docker" {
                        errs.bad_value(
                            "image_uuid",
                            format!("image {img} is of type {ty}; brand lx needs an lx-dataset or docker image"),
                        );
                    }
                    check_docker_command(vm, &row.manifest, errs);
                }
                _ => errs.bad_value("image_uuid", format!("image {img} is not installed (see imgadm list)")),
            }
        }
        d.check_lofs_sources(vm, errs);
    }

    fn provision(&self, d: &Daemon, spec: &InstanceSpec, vm: &mut VmObject, made: &mut Made) -> Result<(), ApiError> {
        let zone = part(spec)?;
        if vm.get("docker") == Some(&Value::Bool(true)) {
            if let Some(cfg) = d.store.get_image(zone.image)?.and_then(|r| DockerConfig::of_manifest(&r.manifest)) {
                fill_docker_metadata(vm, &cfg);
            }
        }
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
            docker: zone.docker.clone().map(Box::new),
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

/// How long `vmadm stop` waits for a docker zone's command to end after
/// SIGTERM before SIGKILL, unless told (SmartOS's `doTermStop`: 10 s);
/// `None` for other instances.
pub(crate) fn docker_stop_timeout(vm: &VmObject) -> Option<u64> {
    (vm.get("docker") == Some(&Value::Bool(true))).then_some(10)
}

/// A zone with `docker: true` and no `init_name` needs a command: its
/// payload's `docker:entrypoint` or `docker:cmd`, or its image's (SmartOS's
/// dockerinit refuses to start without one, `ERR_NO_COMMAND`).
fn check_docker_command(vm: &VmObject, image: &Value, errs: &mut ValidationErrors) {
    if vm.get("docker") != Some(&Value::Bool(true)) || vm.contains_key("init_name") {
        return;
    }
    let md = vm.get("internal_metadata").and_then(Value::as_object);
    let given = |k: &str| md.and_then(|m| m.get(k)).and_then(zonevisor_spec::docker::string_array);
    let image_has = DockerConfig::of_manifest(image).is_some_and(|c| {
        c.entrypoint.as_ref().is_some_and(|e| !e.is_empty()) || c.cmd.as_ref().is_some_and(|c| !c.is_empty())
    });
    let payload_has = ["docker:entrypoint", "docker:cmd"].iter().any(|k| given(k).is_some_and(|a| !a.is_empty()));
    if !payload_has && !image_has {
        errs.bad_value(
            "internal_metadata.docker:cmd",
            "a zone with docker: true needs docker:cmd or docker:entrypoint (its image names no command)",
        );
    }
}

/// Fills a docker zone's `docker:*` metadata from its image's
/// configuration, as Docker combines them: the payload's
/// `docker:entrypoint` and `docker:cmd` replace the image's (a payload
/// entrypoint without a command drops the image's command, as
/// `docker run --entrypoint` does); `docker:env` is the image's `Env`
/// with the payload's entries replacing those of their name;
/// `docker:workdir` and `docker:user` are the payload's or the image's.
/// Arrays are kept as SmartOS keeps them, JSON in strings.
pub(crate) fn fill_docker_metadata(vm: &mut VmObject, cfg: &DockerConfig) {
    use zonevisor_spec::docker::string_array;
    let md = vm.entry("internal_metadata").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(md) = md else { return };
    let given = |md: &Map<String, Value>, k: &str| md.get(k).and_then(string_array);
    let json = |a: &[String]| Value::from(serde_json::to_string(a).unwrap_or_default());
    let entrypoint_given = given(md, "docker:entrypoint").is_some();
    if !entrypoint_given {
        if let Some(e) = &cfg.entrypoint {
            md.insert("docker:entrypoint".into(), json(e));
        }
    }
    if given(md, "docker:cmd").is_none() && !entrypoint_given {
        if let Some(c) = &cfg.cmd {
            md.insert("docker:cmd".into(), json(c));
        }
    }
    let mut env = cfg.env.clone();
    for e in given(md, "docker:env").unwrap_or_default() {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n).to_string();
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(n, _)| n) != name);
        env.push(e);
    }
    if !env.is_empty() {
        md.insert("docker:env".into(), json(&env));
    }
    for (key, value) in [("docker:workdir", &cfg.workdir), ("docker:user", &cfg.user)] {
        if let (false, Some(v)) = (md.contains_key(key), value) {
            md.insert(key.into(), Value::from(v.clone()));
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vm(v: Value) -> VmObject {
        v.as_object().unwrap().clone()
    }

    fn image() -> DockerConfig {
        DockerConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo image".into()]),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            workdir: Some("/srv".into()),
            user: Some("app".into()),
        }
    }

    #[test]
    fn the_image_fills_what_the_payload_leaves_out() {
        let mut v = vm(json!({"docker": true}));
        fill_docker_metadata(&mut v, &image());
        assert_eq!(
            v["internal_metadata"],
            json!({"docker:entrypoint": "[\"/bin/sh\",\"-c\"]", "docker:cmd": "[\"echo image\"]",
                   "docker:env": "[\"PATH=/bin\",\"A=image\"]", "docker:workdir": "/srv", "docker:user": "app"})
        );
        // The payload's command replaces the image's; its env entries replace theirs by name.
        let mut v = vm(json!({"internal_metadata": {"docker:cmd": "[\"echo mine\"]",
            "docker:env": "[\"A=mine\",\"B=2\"]", "docker:user": "0"}}));
        fill_docker_metadata(&mut v, &image());
        let md = &v["internal_metadata"];
        assert_eq!(md["docker:entrypoint"], "[\"/bin/sh\",\"-c\"]");
        assert_eq!(md["docker:cmd"], "[\"echo mine\"]");
        assert_eq!(md["docker:env"], "[\"PATH=/bin\",\"A=mine\",\"B=2\"]");
        assert_eq!(md["docker:user"], "0");
        // A payload entrypoint drops the image's command, as `docker run --entrypoint` does.
        let mut v = vm(json!({"internal_metadata": {"docker:entrypoint": "[\"/bin/true\"]"}}));
        fill_docker_metadata(&mut v, &image());
        assert_eq!(v["internal_metadata"].get("docker:cmd"), None);
    }

    #[test]
    fn a_docker_zone_needs_a_command() {
        let docker_image = json!({"type": "docker", "tags": {"docker:config": {"Cmd": ["sh"]}}});
        let bare = json!({"type": "docker", "tags": {"docker:config": {}}});
        let check = |v: Value, image: &Value| {
            let mut errs = ValidationErrors::default();
            check_docker_command(&vm(v), image, &mut errs);
            errs.bad_values
        };
        assert!(check(json!({"docker": true}), &docker_image).is_empty());
        assert_eq!(check(json!({"docker": true}), &bare), ["internal_metadata.docker:cmd"]);
        assert!(check(json!({"docker": true, "internal_metadata": {"docker:cmd": "[\"sh\"]"}}), &bare).is_empty());
        assert!(check(json!({"docker": true, "init_name": "/sbin/init"}), &bare).is_empty());
        assert!(check(json!({}), &bare).is_empty());
        assert_eq!(docker_stop_timeout(&vm(json!({"docker": true}))), Some(10));
        assert_eq!(docker_stop_timeout(&vm(json!({}))), None);
    }
}
