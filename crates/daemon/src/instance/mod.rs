//! The instance lifecycle: create, start, stop, reboot, kill, update,
//! delete, and watching the monitors of running zones.
//!
//! ```text
//!            create                    start                     stop / init halts
//!  (none) ──────────> provisioning ──> stopped ─────────────> running ─────────────> stopped
//!                        │  clone, quota   ^   launch monitor    │
//!                        │                 └─────────────────────┘
//!                        └── any step fails: dataset destroyed, cgroup gone, row deleted
//! ```
//!
//! Every operation on one instance holds that instance's lock, so a stop
//! and a delete of the same zone never interleave. A running zone belongs to
//! its monitor process; the daemon keeps only the monitor's pidfd, and marks
//! the zone stopped when the monitor exits.
//!
//! A graceful stop shows the row `stopping` while the monitor works; if the
//! stop fails with the monitor still there (it refused, or did not answer
//! in time) or the handler panics, the row is put back as it was
//! (`Transition`): no error leaves a row half-way.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};
use zonevisor_api::{
    ApiError, Changed, InstanceUuid, StartRequest, ValidateAction, ValidateRequest, ValidationErrors, VmObject,
};
use zonevisor_spec::Brand;
use zonevisor_zone::ExitReason;

use crate::images::step_error;
use crate::Daemon;

mod create_image;
mod driver;
pub(crate) mod host;
mod snapshot;
pub(crate) mod spec;
mod transfer;
mod vm;

pub(crate) use vm::accelerator;
mod zone;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod faults;

use driver::{driver_of, Made};
use spec::{InstanceSpec, GIB};

/// Whether `vmadm create` runs VMs of `brand` on this host: zones
/// always, kvm where QEMU is installed, bhyve where OVMF is too (its
/// default firmware). `sysinfo`'s VM keys are read from here, so they
/// never promise what create refuses.
pub(crate) fn runs(brand: Brand) -> bool {
    match brand {
        Brand::Lx => true,
        Brand::Kvm => zonevisor_vm::config::qemu_binary().is_some(),
        Brand::Bhyve => zonevisor_vm::config::qemu_binary().is_some() && zonevisor_vm::config::ovmf().is_some(),
    }
}

/// What the daemon knows of a running instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Running {
    pub monitor_pid: i32,
}

/// A row in a transitional state (`stopping`): dropped before [`Self::done`]
/// (an error returned early, or a panic unwinding), it puts back the
/// values the row had, so no failed operation leaves the row half-way.
struct Transition<'a> {
    daemon: &'a Daemon,
    uuid: InstanceUuid,
    before: Vec<(&'static str, Value)>,
    removed: Vec<&'static str>,
}

impl<'a> Transition<'a> {
    /// Writes `fields` to the row, remembering what they were.
    fn enter(daemon: &'a Daemon, uuid: InstanceUuid, fields: &[(&'static str, Value)]) -> Self {
        let row = daemon.store.get_vm(uuid).ok().flatten().map(|r| r.vm).unwrap_or_default();
        let mut before = Vec::new();
        let mut removed = Vec::new();
        for (k, _) in fields {
            match row.get(*k) {
                Some(v) => before.push((*k, v.clone())),
                None => removed.push(*k),
            }
        }
        if let Err(e) = daemon.set_fields(uuid, fields, &[]) {
            tracing::warn!(vm = %uuid, error = %e, "recording a transition");
        }
        Transition { daemon, uuid, before, removed }
    }

    /// The operation went through: the caller records the outcome.
    fn done(mut self) {
        self.before.clear();
        self.removed.clear();
    }
}

impl Drop for Transition<'_> {
    fn drop(&mut self) {
        if self.before.is_empty() && self.removed.is_empty() {
            return;
        }
        if let Err(e) = self.daemon.set_fields(self.uuid, &self.before, &self.removed) {
            if e.kind != zonevisor_api::ErrorKind::NotFound {
                tracing::error!(vm = %self.uuid, error = %e, "putting back a row after a failed operation");
            }
        }
    }
}

/// Per-instance locks and the running zones.
#[derive(Default)]
pub(crate) struct Runtime {
    locks: Mutex<HashMap<InstanceUuid, Arc<Mutex<()>>>>,
    pub running: Mutex<HashMap<InstanceUuid, Running>>,
    /// The CPUs each running zone with a `cpu_cap` is pinned to
    /// (`zonevisor_zone::cpuset`); zones without a pin are absent.
    cpus: Mutex<HashMap<InstanceUuid, Vec<u32>>>,
    /// Each running zone's `zfs_io_priority`, read from the store once for
    /// the fair I/O governor's ticks; an update that changes it drops the
    /// entry.
    io_priorities: Mutex<HashMap<InstanceUuid, u64>>,
}

impl Runtime {
    fn lock_of(&self, uuid: InstanceUuid) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(uuid).or_default().clone()
    }
}

/// Now as SmartOS prints timestamps (`2026-11-21T08:00:00.123Z`).
pub(crate) fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn parse_uuid(uuid: &str) -> Result<InstanceUuid, ApiError> {
    uuid.parse().map_err(|_| ApiError::invalid(format!("{uuid:?} is not a UUID")))
}

fn u64_of(vm: &VmObject, key: &str) -> Option<u64> {
    vm.get(key).and_then(Value::as_u64)
}

/// Whether an instance has NICs (the network's rules know it).
fn has_nics(vm: &VmObject) -> bool {
    vm.get("nics").and_then(Value::as_array).is_some_and(|n| !n.is_empty())
}

fn str_of<'a>(vm: &'a VmObject, key: &str) -> Option<&'a str> {
    vm.get(key).and_then(Value::as_str)
}

/// The properties whose change alters an instance's cgroup limits.
const LIMIT_PROPS: &[&str] =
    &["max_physical_memory", "max_swap", "max_locked_memory", "max_lwps", "cpu_shares", "cpu_cap", "zfs_io_priority"];

/// The properties [`Daemon::view`] adds to a stored VM object.
const VIEW_ONLY: &[&str] =
    &["hvm", "server_uuid", "platform_buildstamp", "zfs_filesystem", "snapshots", "v", "init_restarts"];

impl Daemon {
    pub(crate) fn run_dir(&self, uuid: InstanceUuid) -> PathBuf {
        self.root.join("run").join("zones").join(uuid.to_string())
    }

    fn cgroup_of(&self, uuid: InstanceUuid) -> String {
        format!("{}/{uuid}", self.cgroup_parent)
    }

    pub(crate) fn vm_row(&self, uuid: InstanceUuid) -> Result<VmObject, ApiError> {
        match self.store.get_vm(uuid)? {
            Some(row) if row.phase == "ready" => Ok(row.vm),
            _ => Err(ApiError::not_found(format!("VM {uuid} does not exist"))),
        }
    }

    fn set_fields(&self, uuid: InstanceUuid, fields: &[(&str, Value)], remove: &[&str]) -> Result<VmObject, ApiError> {
        let now = timestamp();
        let mut event = None;
        let vm = self
            .store
            .modify_vm(uuid, |vm| {
                let before = vm.clone();
                for (k, v) in fields {
                    vm.insert((*k).to_string(), v.clone());
                }
                for k in remove {
                    vm.remove(*k);
                }
                vm.insert("last_modified".into(), json!(now));
                event = crate::events::modify_event(&before, vm);
            })?
            .ok_or_else(|| ApiError::not_found(format!("VM {uuid} does not exist")))?;
        if let Some(ev) = event {
            self.events.send(ev);
        }
        Ok(vm)
    }

    /// `vmadm validate`.
    pub fn validate(&self, req: &ValidateRequest) -> Result<String, ApiError> {
        match req.action {
            ValidateAction::Create => {
                let mut payload = req.payload.clone();
                crate::net::fill_nic_defaults(&mut payload);
                let vm = zonevisor_spec::validate_create(&payload).map_err(ApiError::validation)?;
                self.check_create_refs(&vm).map_err(ApiError::validation)?;
                let brand = str_of(&vm, "brand").unwrap_or("lx").to_string();
                Ok(format!("VALID 'create' payload for {brand} brand VMs."))
            }
            ValidateAction::Update => {
                let Some(brand) = req.brand.as_deref() else {
                    let mut e = ValidationErrors::default();
                    e.missing("brand", "validate update needs the brand of the VM");
                    return Err(ApiError::validation(e));
                };
                let mut errs = zonevisor_spec::check_update_payload(brand, &req.payload);
                if let Some(obj) = req.payload.as_object() {
                    self.check_disk_images("add_disks", obj, &mut errs);
                }
                if errs.is_empty() {
                    Ok(format!("VALID 'update' payload for {brand} brand VMs."))
                } else {
                    Err(ApiError::validation(errs))
                }
            }
        }
    }

    /// A VM's disks from images (`disks` or an update's `add_disks` of
    /// `obj`): each image must be installed (zonevisor installs no zvol
    /// images yet, so none is).
    pub(crate) fn check_disk_images(
        &self,
        key: &str,
        obj: &serde_json::Map<String, Value>,
        errs: &mut ValidationErrors,
    ) {
        for (i, disk) in obj.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(img) = disk.get("image_uuid").and_then(Value::as_str) {
                let row = img.parse().ok().and_then(|id| self.store.get_image(id).ok().flatten());
                if row.is_none_or(|r| r.phase != "ready") {
                    errs.bad_value(
                        &format!("{key}.{i}.image_uuid"),
                        format!("image {img} is not installed (see imgadm list)"),
                    );
                }
            }
        }
    }

    /// Checks what a create payload refers to: the image and the uuid.
    fn check_create_refs(&self, vm: &VmObject) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        if let Some(uuid) = str_of(vm, "uuid").and_then(|u| u.parse::<InstanceUuid>().ok()) {
            // The uuid names the instance's dataset: it may be no other
            // instance's, no image's, and no dataset may already hold it
            // (a failed create must destroy only what it made).
            let as_image = uuid.to_string().parse().ok().and_then(|id| self.store.get_image(id).ok().flatten());
            if matches!(self.store.get_vm(uuid), Ok(Some(_))) {
                errs.bad_value("uuid", format!("a VM with uuid {uuid} already exists"));
            } else if as_image.is_some() {
                errs.bad_value(
                    "uuid",
                    format!("{uuid} is the uuid of an installed image; a VM needs a uuid of its own"),
                );
            } else if self.host.dataset_exists(&uuid.to_string()) {
                errs.bad_value("uuid", format!("a dataset named {uuid} already exists in pool {}", self.pool.name()));
            }
        }
        if let Some(brand) = str_of(vm, "brand").and_then(|b| b.parse::<Brand>().ok()) {
            driver::driver_of_brand(brand).check_create(self, vm, &mut errs);
        }
        zonevisor_spec::smartos_names(&mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// `vmadm create`: validates, records, clones, and (with `autoboot`)
    /// starts; any failure undoes every step and names the step.
    pub fn create_vm(&self, payload: &Value) -> Result<Changed, ApiError> {
        let mut payload = payload.clone();
        crate::net::fill_nic_defaults(&mut payload);
        let accepted = zonevisor_spec::accept_create(&payload).map_err(ApiError::validation)?;
        let (mut vm, warnings) = (accepted.vm, accepted.warnings);
        self.check_create_refs(&vm).map_err(ApiError::validation)?;
        // The host's networks: at create, not at validate, as SmartOS's
        // vmadm checks nic tags.
        let mut errs = ValidationErrors::default();
        self.check_nics(None, &vm, &mut errs);
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        let brand = str_of(&vm, "brand").unwrap_or_default().to_string();
        if !brand.parse().is_ok_and(runs) {
            return Err(ApiError::unsupported(format!(
                "this host cannot run {brand} VMs: QEMU{} is not installed (Debian: apt-get install qemu-system-x86 ovmf)",
                if brand == "bhyve" { " or OVMF" } else { "" }
            )));
        }
        let uuid: InstanceUuid = str_of(&vm, "uuid")
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| ApiError::internal("validated payload lacks a uuid"))?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = timestamp();
        let name = uuid.to_string();
        for (k, v) in [
            ("zonename", json!(name)),
            ("zonepath", json!(self.pool.dataset_path(&name).display().to_string())),
            ("zpool", json!(self.pool.name())),
            ("state", json!("provisioning")),
            ("zone_state", json!("installed")),
            ("create_timestamp", json!(now)),
            ("last_modified", json!(now)),
        ] {
            vm.insert(k.to_string(), v);
        }
        self.store.insert_vm(uuid, "provisioning", &vm).map_err(|e| {
            let taken = match (&e, self.store.get_vm(uuid)) {
                (crate::StoreError::UuidTaken { .. }, _) => Some(e.to_string()),
                (_, Ok(Some(_))) => Some(format!("a VM with uuid {uuid} already exists")),
                _ => None,
            };
            match taken {
                Some(why) => {
                    let mut errs = ValidationErrors::default();
                    errs.bad_value("uuid", why);
                    ApiError::validation(errs)
                }
                None => ApiError::from(e),
            }
        })?;
        self.events.created(&vm);
        let mut made = Made::default();
        let result = self.provision(uuid, &mut vm, &mut made);
        if let Err(e) = result {
            self.rollback_vm(uuid, made.dataset);
            return Err(e);
        }
        for w in &warnings {
            tracing::warn!(vm = %uuid, property = %w.property, "{}", w.message);
        }
        tracing::info!(vm = %uuid, "created VM");
        Ok(Changed { vm: self.view(self.vm_row(uuid)?), warnings })
    }

    /// Makes the instance's dataset (through its driver), sets its quota,
    /// marks it ready and, with `autoboot`, starts it.
    fn provision(&self, uuid: InstanceUuid, vm: &mut VmObject, made: &mut Made) -> Result<(), ApiError> {
        let spec = InstanceSpec::from_vm(vm)?;
        driver_of(&spec.kind).provision(self, &spec, vm, made)?;
        self.store.put_vm(uuid, "provisioning", vm)?;
        if let Some(q) = spec.quota_bytes {
            if self.host.quotas() {
                self.host.set_quota(&spec.dataset(), Some(q))?;
            } else {
                tracing::warn!(vm = %uuid, "the {} pool backend cannot enforce quota {} GiB", self.pool.capabilities().backend, q / GIB);
            }
        }
        let before = vm.clone();
        vm.insert("state".into(), json!("stopped"));
        self.store.put_vm(uuid, "provisioning", vm)?;
        self.events.modified(&before, vm);
        // Its addresses reserved and its NICs' antispoof in place before
        // it can send anything (an instance without NICs changes nothing
        // of the network's rules).
        if has_nics(vm) {
            self.reserve_nics(uuid, vm)?;
            if !spec.autoboot {
                // Its reservations, for its network's DHCP and names (its
                // start adds its NICs' rules).
                self.refresh_net();
            }
        }
        if spec.autoboot {
            *vm = self
                .start_locked(uuid, vm, &StartRequest::default())
                .map_err(|e| ApiError { message: format!("start: {}", e.message), ..e })?;
        }
        // Only now is the create done: a crash before this line leaves a
        // `provisioning` row, which the next start undoes entirely.
        self.store.put_vm(uuid, "ready", vm)?;
        Ok(())
    }

    /// Removes everything a create or a crashed create left behind; the
    /// dataset only when `dataset` says the create made it. (A crashed
    /// create's dataset is its own: the row is recorded only once no
    /// dataset holds the name, under the instance's lock, and no image can
    /// take an instance's uuid.)
    pub(crate) fn rollback_vm(&self, uuid: InstanceUuid, dataset: bool) {
        let run_dir = self.run_dir(uuid);
        if let Some(st) = self.host.find_monitor(&run_dir) {
            let _ = self.host.stop(&run_dir, true, None);
            tracing::warn!(vm = %uuid, monitor = st.monitor_pid, "rollback: stopped an instance left running");
        }
        self.host.destroy_cgroup(&self.cgroup_of(uuid));
        if dataset {
            if let Err(e) = self.host.destroy_dataset(&uuid.to_string(), false) {
                tracing::error!(vm = %uuid, error = %e, "rollback: destroy dataset");
            }
        }
        self.host.remove_run_dir(&run_dir);
        let row = self.store.get_vm(uuid).ok().flatten();
        match self.store.delete_vm(uuid) {
            Err(e) => tracing::error!(vm = %uuid, error = %crate::chain(&e), "rollback: delete row"),
            Ok(()) => {
                if let Some(row) = row {
                    if has_nics(&row.vm) {
                        // Its reservations went with the row: its rules go too.
                        self.refresh_net();
                    }
                    self.events.deleted(&row.vm);
                }
            }
        }
        self.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&uuid);
        self.unplace_cpus(uuid, None);
    }

    /// The VM object as `vmadm get` shows it: the stored record plus the
    /// properties SmartOS derives for every VM (`hvm`, `v`, `server_uuid`,
    /// `platform_buildstamp`, `zfs_filesystem`, `snapshots`). `type` is not
    /// among them: SmartOS computes it for `list` and `lookup` only.
    pub(crate) fn view(&self, vm: VmObject) -> VmObject {
        self.view_on(vm, &self.host_uuid())
    }

    /// [`Daemon::view`] on the host whose uuid is `server_uuid`.
    fn view_on(&self, mut vm: VmObject, server_uuid: &str) -> VmObject {
        let hvm = str_of(&vm, "brand").and_then(|b| b.parse::<Brand>().ok()).is_some_and(Brand::is_hvm);
        let dataset = str_of(&vm, "uuid").map(|u| format!("{}/{u}", self.pool.name()));
        vm.remove("type");
        let derived = [
            ("hvm", Some(json!(hvm))),
            ("server_uuid", Some(json!(server_uuid))),
            ("platform_buildstamp", Some(json!(crate::sysinfo::live_image()))),
            ("zfs_filesystem", dataset.map(Value::from)),
            ("snapshots", Some(self.snapshots_json(&vm))),
            ("v", Some(json!(1))),
            // The running count comes from the monitor (`get_vm`).
            ("init_restarts", Some(json!(0))),
        ];
        for (k, v) in derived {
            if let Some(v) = v {
                vm.entry(k).or_insert(v);
            }
        }
        vm
    }

    /// `vmadm get`: the VM object, with the live init pid of a running zone.
    pub fn get_vm(&self, uuid: &str) -> Result<VmObject, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let mut vm = self.view(self.vm_row(uuid)?);
        if str_of(&vm, "state") == Some("running") {
            if let Ok(st) = self.host.status(&self.run_dir(uuid)) {
                vm.insert("pid".into(), json!(st.init_pid));
                vm.insert("init_restarts".into(), json!(st.init_restarts));
            }
        }
        Ok(vm)
    }

    /// `vmadm list`: every VM, optionally with only some properties.
    pub fn list_vms(&self, fields: Option<&str>) -> Result<Vec<VmObject>, ApiError> {
        let rows = self.store.list_vms()?;
        let fields: Option<Vec<&str>> = fields.map(|f| f.split(',').filter(|s| !s.is_empty()).collect());
        let server = self.host_uuid();
        Ok(rows
            .into_iter()
            .filter(|r| r.phase == "ready")
            .map(|r| match &fields {
                Some(f) => self.view_on(r.vm, &server).into_iter().filter(|(k, _)| f.contains(&k.as_str())).collect(),
                None => self.view_on(r.vm, &server),
            })
            .collect())
    }

    /// The running zones' cgroups and `zfs_io_priority` (default 100), for
    /// the fair-I/O governor.
    pub(crate) fn io_zones(&self) -> Vec<(String, u64)> {
        let running: Vec<InstanceUuid> =
            self.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        let mut cache = self.runtime.io_priorities.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|u, _| running.contains(u));
        running
            .into_iter()
            .map(|uuid| {
                let priority = *cache.entry(uuid).or_insert_with(|| {
                    let row = self.store.get_vm(uuid).ok().flatten();
                    row.and_then(|r| u64_of(&r.vm, "zfs_io_priority")).unwrap_or(100)
                });
                (self.cgroup_of(uuid), priority)
            })
            .collect()
    }

    /// Pins the zone to CPUs for `cap_pct` (see `zonevisor_zone::cpuset`):
    /// the least-used of its parent cgroup's CPUs, keeping those it has.
    /// Records the choice at once, so zones starting side by side spread
    /// too, and returns it with the previous one (for [`Self::unplace_cpus`]).
    fn place_cpus(&self, uuid: InstanceUuid, cap_pct: Option<u64>) -> (Option<Vec<u32>>, Option<Vec<u32>>) {
        let available = self.host.available_cpus(&self.cgroup_parent);
        let mut pinned = self.runtime.cpus.lock().unwrap_or_else(|p| p.into_inner());
        let current = pinned.get(&uuid).cloned();
        let others: Vec<&[u32]> = pinned.iter().filter(|(u, _)| **u != uuid).map(|(_, c)| c.as_slice()).collect();
        let seed = zonevisor_zone::cpuset::seed_of(&uuid.to_string());
        let chosen =
            zonevisor_zone::cpuset::choose(cap_pct, &available, current.as_deref().unwrap_or_default(), &others, seed);
        match &chosen {
            Some(c) => pinned.insert(uuid, c.clone()),
            None => pinned.remove(&uuid),
        };
        (chosen, current)
    }

    /// Puts back the pin a failed start or update had (`None`: no pin).
    fn unplace_cpus(&self, uuid: InstanceUuid, previous: Option<Vec<u32>>) {
        let mut pinned = self.runtime.cpus.lock().unwrap_or_else(|p| p.into_inner());
        match previous {
            Some(c) => pinned.insert(uuid, c),
            None => pinned.remove(&uuid),
        };
    }

    /// Starts an instance; the caller holds its lock.
    fn start_locked(&self, uuid: InstanceUuid, vm: &VmObject, opts: &StartRequest) -> Result<VmObject, ApiError> {
        let spec = InstanceSpec::from_vm(vm)?;
        let driver = driver_of(&spec.kind);
        let mut limits = driver.limits(&spec);
        let (cpus, previous) = self.place_cpus(uuid, limits.cpu_cap_pct);
        limits.cpus = cpus;
        if !spec.net.nics.is_empty() {
            // Its NICs' antispoof and firewall in place before it can send.
            self.refresh_net_for(Some(uuid));
        }
        let launched =
            driver.launch(self, &spec, vm, limits, opts).and_then(|l| self.host.launch(&l)).inspect_err(|_| {
                self.unplace_cpus(uuid, previous.clone());
            })?;
        if let Err(e) = driver.started(self, &spec) {
            // Not watched yet: stopped here, and nothing of it is left.
            let _ = self.host.stop(&self.run_dir(uuid), true, None);
            self.host.destroy_cgroup(&self.cgroup_of(uuid));
            self.unplace_cpus(uuid, previous);
            return Err(e);
        }
        self.watch(uuid, launched.monitor_pid);
        self.set_fields(
            uuid,
            &[
                ("state", json!("running")),
                ("zone_state", json!("running")),
                ("pid", json!(launched.init_pid)),
                ("boot_timestamp", json!(timestamp())),
            ],
            &["exit_status", "exit_timestamp", "exit_reason"],
        )
    }

    /// Watches a monitor: when it exits, the instance is marked stopped.
    pub(crate) fn watch(&self, uuid: InstanceUuid, monitor_pid: i32) {
        self.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).insert(uuid, Running { monitor_pid });
        let Some(me) = self.me.upgrade() else { return };
        let Some(fd) = self.host.pidfd(monitor_pid) else {
            // Already gone: recorded on the blocking pool, once the caller
            // (which may hold the instance's lock) is done.
            drop(self.rt.spawn_blocking(move || me.on_monitor_exit(uuid, monitor_pid)));
            return;
        };
        self.rt.spawn(async move {
            // SAFETY: the AsyncFd owns the pidfd and nothing else uses or closes it.
            let afd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
            if let Ok(afd) = afd {
                let _ = afd.readable().await;
            }
            let _ = tokio::task::spawn_blocking(move || me.on_monitor_exit(uuid, monitor_pid)).await;
        });
    }

    /// Monitor `monitor_pid` exited: under the zone's lock (a start, stop or
    /// delete in progress finishes first), record why and mark the zone
    /// stopped, unless that was done already (a stop or delete saw it go).
    pub(crate) fn on_monitor_exit(&self, uuid: InstanceUuid, monitor_pid: i32) {
        let watched = |d: &Daemon| {
            let running = d.runtime.running.lock().unwrap_or_else(|p| p.into_inner());
            running.get(&uuid).is_some_and(|r| r.monitor_pid == monitor_pid)
        };
        // Checked first so that the exit of a deleted zone's monitor does not
        // bring back its lock; a monitor pid, once gone, is never re-added.
        if !watched(self) {
            return;
        }
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.monitor_exited_locked(uuid, monitor_pid);
    }

    /// [`Self::on_monitor_exit`]; the caller holds the zone's lock.
    fn monitor_exited_locked(&self, uuid: InstanceUuid, monitor_pid: i32) {
        {
            let mut running = self.runtime.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get(&uuid) {
                Some(r) if r.monitor_pid == monitor_pid => {
                    running.remove(&uuid);
                }
                _ => return,
            }
        }
        self.unplace_cpus(uuid, None);
        self.mark_stopped(uuid, Some(monitor_pid), false);
    }

    /// Records a zone whose monitor is gone as stopped, with its exit status
    /// when the monitor left one (`exit.json`). A monitor that left none
    /// died without cleaning up (killed, crashed; its zone died with it
    /// through PDEATHSIG): the daemon does what the monitor would have done,
    /// killing what is left in the zone's cgroup and removing it and the
    /// monitor's socket and pid file, and records why the zone stopped.
    /// `host_rebooted`: the monitor is gone because the host restarted.
    fn mark_stopped(&self, uuid: InstanceUuid, monitor_pid: Option<i32>, host_rebooted: bool) {
        let run_dir = self.run_dir(uuid);
        if let Ok(Some(row)) = self.store.get_vm(uuid) {
            self.apply_caps(uuid, &row.vm, true);
        }
        let mut fields = vec![("state", json!("stopped")), ("zone_state", json!("installed"))];
        match self.host.read_exit(&run_dir) {
            Some(x) => {
                let status = match x.code {
                    Some(c) => json!(c),
                    // SmartOS: the negated signal (-9 for SIGKILL).
                    None => json!(x.signal.map(|s| -s).unwrap_or(0)),
                };
                fields.push(("exit_status", status));
                fields.push(("exit_timestamp", json!(timestamp())));
                fields.push(("exit_reason", json!(x.message)));
                // A zone that went down on its own for good (restart_init
                // gave up, a restart failed) or by the OOM killer is the
                // operator's business; the rest is the ordinary course.
                if x.reason == ExitReason::Failed || x.oom_killed {
                    tracing::warn!(vm = %uuid, reason = ?x.reason, oom_killed = x.oom_killed, "zone down: {}", x.message);
                } else {
                    tracing::info!(vm = %uuid, reason = ?x.reason, "{}", x.message);
                }
            }
            None => {
                let monitor_pid = monitor_pid.or_else(|| self.host.recorded_monitor_pid(&run_dir));
                let cgroup = self.cgroup_of(uuid);
                if let Err(e) = self.host.try_destroy_cgroup(&cgroup) {
                    tracing::error!(vm = %uuid, cgroup, error = %e, "removing a dead monitor's cgroup");
                }
                self.host.remove_stale_files(&run_dir);
                let reason = monitor_death_reason(monitor_pid, host_rebooted);
                tracing::warn!(vm = %uuid, "{reason}");
                fields.push(("exit_timestamp", json!(timestamp())));
                fields.push(("exit_reason", json!(reason)));
            }
        }
        if let Err(e) = self.set_fields(uuid, &fields, &["pid"]) {
            if e.kind != zonevisor_api::ErrorKind::NotFound {
                tracing::error!(vm = %uuid, error = %e, "recording zone exit");
            }
        }
    }

    fn is_running(&self, uuid: InstanceUuid) -> bool {
        self.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&uuid)
    }

    /// `vmadm start`: also sets `autoboot`, as SmartOS does; a hardware
    /// VM takes this boot's options.
    pub fn start_vm(&self, uuid: &str, opts: &StartRequest) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        if self.is_running(uuid) {
            return Err(ApiError::conflict(format!("VM {uuid} is already 'running'")));
        }
        self.start_locked(uuid, &vm, opts)?;
        self.set_fields(uuid, &[("autoboot", json!(true))], &[])?;
        Ok(format!("Successfully started VM {uuid}"))
    }

    /// Stops a zone; the caller holds its lock. A graceful stop shows the
    /// zone `stopping` while it waits; when the stop fails with the monitor
    /// still there (refused, timed out), or panics, the row goes back to
    /// what it was ([`Transition`]), and the monitor's exit, if it comes
    /// later, is recorded by [`Self::watch`].
    fn stop_locked(&self, uuid: InstanceUuid, force: bool, timeout: Option<u64>) -> Result<(), ApiError> {
        let monitor_pid = match self.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).get(&uuid) {
            Some(r) => r.monitor_pid,
            None => return Err(ApiError::conflict(format!("VM {uuid} is not running"))),
        };
        let transition = if force {
            None
        } else {
            Some(Transition::enter(self, uuid, &[("state", json!("stopping")), ("zone_state", json!("shutting_down"))]))
        };
        let run_dir = self.run_dir(uuid);
        if let Err(e) = self.host.stop(&run_dir, force, timeout) {
            // The monitor may have exited between our check and the request
            // (its exit record says why); if it is still there, the stop failed.
            if self.host.live_monitor_pid(&run_dir).is_some() {
                return Err(step_error("stop zone", e));
            }
        }
        if let Some(t) = transition {
            t.done();
        }
        self.monitor_exited_locked(uuid, monitor_pid);
        Ok(())
    }

    /// `vmadm stop`: also clears `autoboot`, as SmartOS does.
    pub fn stop_vm(&self, uuid: &str, force: bool, timeout: Option<u64>) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        if !self.is_running(uuid) {
            // SmartOS's words; vmadm treats it as nothing to do.
            let state = str_of(&vm, "state").unwrap_or("stopped");
            return Err(ApiError::conflict(format!("VM {uuid} is already not 'running' (currently: {state})")));
        }
        // A docker zone gets SmartOS's (and docker's) 10 s before SIGKILL.
        let timeout = timeout.or_else(|| zone::docker_stop_timeout(&vm));
        self.stop_locked(uuid, force, timeout)?;
        self.set_fields(uuid, &[("autoboot", json!(false))], &[])?;
        Ok(format!("Successfully completed stop for VM {uuid}"))
    }

    /// `vmadm reboot`.
    pub fn reboot_vm(&self, uuid: &str, force: bool) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        if !self.is_running(uuid) {
            let state = str_of(&vm, "state").unwrap_or("stopped");
            return Err(ApiError::conflict(format!("Cannot reboot vm from state \"{state}\"")));
        }
        let st = self.host.reboot(&self.run_dir(uuid), force).map_err(|e| step_error("reboot", e))?;
        let mut fields = vec![("pid", json!(st.init_pid)), ("state", json!("running"))];
        // A VM reset in place (`-F`: the same QEMU) did not boot anew, as
        // in SmartOS; a new init or a new QEMU did.
        if vm.get("pid") != Some(&json!(st.init_pid)) {
            fields.push(("boot_timestamp", json!(timestamp())));
        }
        self.set_fields(uuid, &fields, &[])?;
        Ok(format!("Successfully completed reboot for VM {uuid}"))
    }

    /// `vmadm kill`: sends `sig` (1 to 64, checked when the request was
    /// decoded) to the zone's init.
    pub fn kill_vm(&self, uuid: &str, sig: i32) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        self.vm_row(uuid)?;
        if !self.is_running(uuid) {
            return Err(ApiError::conflict(format!("Cannot find running init PID for VM {uuid}")));
        }
        self.host.kill(&self.run_dir(uuid), sig).map_err(|e| step_error("send signal", e))?;
        Ok(format!("Successfully sent signal {sig} to VM {uuid}"))
    }

    /// `vmadm sysrq`: a running hardware VM's NMI (`nmi`) or a screenshot
    /// of its display (`screenshot`).
    pub fn sysrq_vm(&self, uuid: &str, request: &str) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        let spec = InstanceSpec::from_vm(&vm)?;
        if !matches!(request, "nmi" | "screenshot") {
            return Err(ApiError::invalid(format!("Invalid sysrq request: \"{request}\" (nmi or screenshot)")));
        }
        if !self.is_running(uuid) {
            let state = str_of(&vm, "state").unwrap_or("stopped");
            return Err(ApiError::conflict(format!("Unable to send sysrq to VM {uuid} in state \"{state}\"")));
        }
        driver_of(&spec.kind).sysrq(self, &spec, request)
    }

    /// `vmadm info`: a running zone's live usage from its cgroups.
    pub fn vm_info(&self, uuid: &str) -> Result<zonevisor_api::VmInfo, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let vm = self.vm_row(uuid)?;
        if !self.is_running(uuid) {
            let state = str_of(&vm, "state").unwrap_or("stopped");
            return Err(ApiError::conflict(format!(
                "VM {uuid} is not running (state {state}); info needs a running instance"
            )));
        }
        let stats = self.host.cgroup_stats(&self.cgroup_of(uuid))?;
        let pid = self
            .host
            .status(&self.run_dir(uuid))
            .map(|st| i64::from(st.init_pid))
            .ok()
            .or_else(|| vm.get("pid").and_then(Value::as_i64));
        let spec = InstanceSpec::from_vm(&vm)?;
        let mut info = crate::server::info_of(uuid, &vm, pid, &stats);
        info.guest = driver_of(&spec.kind).info(self, &spec)?;
        Ok(info)
    }

    /// `vmadm console`: where the zone's console is served (its monitor's
    /// socket) and logged, in any state; the CLI attaches to a running one.
    pub fn console_info(&self, uuid: &str) -> Result<zonevisor_api::ConsoleInfo, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let vm = self.vm_row(uuid)?;
        // A zone's /dev/console and a VM's first serial port alike: the
        // monitor's pty.
        let brand = str_of(&vm, "brand").unwrap_or("").to_string();
        let run_dir = self.run_dir(uuid);
        let path = |f: &str| run_dir.join(f).display().to_string();
        Ok(zonevisor_api::ConsoleInfo {
            uuid: uuid.to_string(),
            brand,
            state: str_of(&vm, "state").unwrap_or("unknown").to_string(),
            socket: path(zonevisor_zone::control::SOCKET_FILE),
            log: path(zonevisor_zone::control::CONSOLE_FILE),
            previous_log: path(zonevisor_zone::control::CONSOLE_PREVIOUS_FILE),
            run_dir: run_dir.display().to_string(),
        })
    }

    /// `vmadm update`: validated against the current object; resource
    /// changes apply live to a running zone first (the size of `/tmp`,
    /// `quota`, the cgroup's limits), and are undone if the kernel refuses
    /// any of them, so a refused update changes nothing. A `tmpfs` below
    /// what the running zone's `/tmp` holds is refused (`bad_values`).
    pub fn update_vm(&self, uuid: &str, payload: &Value) -> Result<Changed, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.vm_row(uuid)?;
        // Judged against what `vmadm get` shows, so that its output given
        // back changes nothing; what the view adds is not stored.
        let shown = self.view(current.clone());
        let mut payload = payload.clone();
        crate::net::fill_nic_defaults(&mut payload);
        let mut plan = zonevisor_spec::validate_update(&shown, &payload).map_err(ApiError::validation)?;
        for k in VIEW_ONLY {
            if !current.contains_key(*k) {
                plan.vm.remove(*k);
                plan.changed.retain(|c| c != k);
                plan.live.retain(|c| c != k);
                plan.needs_reboot.retain(|c| c != k);
            }
        }
        let mut errs = ValidationErrors::default();
        self.check_lofs_sources(&plan.vm, &mut errs);
        self.check_nics(Some(uuid), &plan.vm, &mut errs);
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        let before = InstanceSpec::from_vm(&current)?;
        let after = InstanceSpec::from_vm(&plan.vm)?;
        let driver = driver_of(&before.kind);
        let running = self.is_running(uuid);
        let live = |p: &str| plan.live.iter().any(|c| c == p);
        // The plan's live changes go in this order; a refusal undoes those
        // before it. What needs a reboot is only recorded.
        // Storage first (a VM's new disks, new sizes): nothing else has
        // changed if it fails.
        let mut vm = plan.vm;
        let (undo_storage, remove_after) = driver.update_storage(self, &before, &mut vm)?;
        let undo_storage = std::cell::Cell::new(undo_storage);
        let undo_storage = || {
            if let Some(undo) = undo_storage.take() {
                undo();
            }
        };
        let undo_driver = if running {
            driver.apply_live(self, &before, &after, &plan.live).inspect_err(|_| undo_storage())?
        } else {
            None
        };
        let undo_driver = std::cell::Cell::new(undo_driver);
        let undo_driver = || {
            if let Some(undo) = undo_driver.take() {
                undo();
            }
            undo_storage();
        };
        let mut undo_quota = None;
        if live("quota") && self.host.quotas() {
            self.host.set_quota(&after.dataset(), after.quota_bytes).inspect_err(|_| undo_driver())?;
            undo_quota = Some(before.quota_bytes);
        }
        let limits = driver.limits(&after);
        if running && LIMIT_PROPS.iter().any(|p| live(p)) && driver.limits(&before) != limits {
            let mut limits = limits;
            let (cpus, previous) = self.place_cpus(uuid, limits.cpu_cap_pct);
            limits.cpus = cpus;
            if let Err(e) = self.host.set_limits(&self.run_dir(uuid), &limits) {
                self.unplace_cpus(uuid, previous);
                if let Some(q) = undo_quota {
                    let _ = self.host.set_quota(&after.dataset(), q);
                }
                undo_driver();
                return Err(ApiError::invalid(format!("the kernel refused the new limits: {}", crate::chain(&e))));
            }
        }
        vm.insert("last_modified".into(), json!(timestamp()));
        self.store.put_vm(uuid, "ready", &vm).inspect_err(|_| undo_driver())?;
        for file in remove_after {
            if let Err(e) = self.host.destroy_volume(&after.dataset(), &file) {
                tracing::warn!(vm = %uuid, volume = file, error = %e, "removing a removed disk's volume");
            }
        }
        // After the store has it: a governor tick re-reads it from there.
        if plan.changed.iter().any(|c| c == "zfs_io_priority") {
            self.runtime.io_priorities.lock().unwrap_or_else(|p| p.into_inner()).remove(&uuid);
        }
        self.events.modified(&current, &vm);
        // Its metadata service answers from the instance as it now is
        // (`sdc:*` reads any field, so every change goes).
        if running {
            self.push_metadata(uuid, &vm);
        }
        // What the network's rules are made of: NICs, and for the
        // firewall the tags, owner and the switch itself.
        let differs = |k: &str| current.get(k) != vm.get(k);
        if ["nics", "tags", "owner_uuid", "firewall_enabled", "hostname"].iter().any(|k| differs(k)) {
            if let Err(e) = self.reserve_nics(uuid, &vm) {
                tracing::warn!(vm = %uuid, error = %e.message, "reserving the new NICs' addresses");
            }
            self.refresh_net();
            if running && differs("nics") {
                self.apply_caps(uuid, &vm, false);
            }
        }
        for w in &plan.warnings {
            tracing::warn!(vm = %uuid, property = %w.property, "{}", w.message);
        }
        tracing::info!(vm = %uuid, changed = ?plan.changed, "updated VM");
        Ok(Changed { vm: self.view(vm), warnings: plan.warnings })
    }

    /// `vmadm delete`: stops the zone, destroys its dataset and forgets it.
    pub fn delete_vm(&self, uuid: &str) -> Result<String, ApiError> {
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        for flag in ["indestructible_zoneroot", "indestructible_delegated"] {
            if vm.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(ApiError::conflict(format!(
                    "VM {uuid} has {flag} set; run `vmadm update {uuid} {flag}=false` first"
                )));
            }
        }
        if self.is_running(uuid) {
            self.stop_locked(uuid, true, None)?;
        }
        self.host.destroy_cgroup(&self.cgroup_of(uuid));
        // btrfs frees a deleted dataset's space in the background; when the
        // pool is (nearly) full, wait for it, so that what comes next (a
        // create) finds the space.
        self.host.destroy_dataset(&uuid.to_string(), self.host.pool_nearly_full())?;
        self.host.remove_run_dir(&self.run_dir(uuid));
        let last = self.store.get_vm(uuid)?.map(|row| row.vm).unwrap_or(vm);
        self.apply_caps(uuid, &last, true);
        self.store.delete_vm(uuid)?;
        if has_nics(&last) {
            self.refresh_net();
        }
        self.events.deleted(&last);
        self.runtime.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(&uuid);
        tracing::info!(vm = %uuid, "deleted VM");
        Ok(format!("Successfully deleted VM {uuid}"))
    }

    /// Start-up: undo interrupted creates, re-adopt running zones, and after
    /// a host reboot start every zone with `autoboot`.
    pub(crate) fn recover(&self) -> anyhow::Result<()> {
        // First the rollbacks a dying daemon left: a dataset is then in its place.
        let rolled_back = self.recover_rollbacks();
        self.recover_transfers();
        for (uuid, row) in self.store.list_images()? {
            if row.phase != "ready" {
                tracing::warn!(image = %uuid, "undoing an interrupted image install");
                self.rollback_image(uuid, true);
            }
        }
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let boot_id = boot_id.trim();
        let rebooted = self.store.host_get("boot_id")?.is_some_and(|b| b != boot_id);
        let mut autoboot = Vec::new();
        for row in self.store.list_vms()? {
            let Some(uuid) = str_of(&row.vm, "uuid").and_then(|u| u.parse::<InstanceUuid>().ok()) else { continue };
            if row.phase != "ready" {
                tracing::warn!(vm = %uuid, "undoing an interrupted create");
                self.rollback_vm(uuid, true);
                continue;
            }
            match self.host.find_monitor(&self.run_dir(uuid)) {
                Some(st) => {
                    tracing::info!(vm = %uuid, monitor = st.monitor_pid, init = st.init_pid, "re-adopted running zone");
                    let available = self.host.available_cpus(&self.cgroup_parent);
                    if let Some(cpus) = self.host.cgroup_cpus(&self.cgroup_of(uuid), &available) {
                        self.runtime.cpus.lock().unwrap_or_else(|p| p.into_inner()).insert(uuid, cpus);
                    }
                    self.set_fields(
                        uuid,
                        &[("state", json!("running")), ("zone_state", json!("running")), ("pid", json!(st.init_pid))],
                        &[],
                    )?;
                    self.watch(uuid, st.monitor_pid);
                    match InstanceSpec::from_vm(&row.vm).and_then(|spec| driver_of(&spec.kind).adopted(self, &spec)) {
                        Ok(()) => {}
                        Err(e) => tracing::warn!(vm = %uuid, error = %e.message, "re-adopting"),
                    }
                }
                None => match self.host.live_monitor_pid(&self.run_dir(uuid)) {
                    // Alive but not answering (busy, or stopped by a
                    // debugger): still the zone's owner, so watched, never
                    // cleaned up after.
                    Some(pid) => {
                        tracing::warn!(vm = %uuid, monitor = pid, "re-adopted a zone whose monitor does not answer");
                        self.set_fields(uuid, &[("state", json!("running")), ("zone_state", json!("running"))], &[])?;
                        self.watch(uuid, pid);
                    }
                    None => {
                        if str_of(&row.vm, "state") != Some("stopped") {
                            tracing::info!(vm = %uuid, "zone stopped while the daemon was away");
                            self.mark_stopped(uuid, None, rebooted);
                        }
                        if rebooted && row.vm.get("autoboot").and_then(Value::as_bool) == Some(true) {
                            autoboot.push(uuid);
                        }
                    }
                },
            }
        }
        self.store.host_set("boot_id", boot_id)?;
        for uuid in rolled_back {
            if !autoboot.contains(&uuid) && !self.is_running(uuid) {
                autoboot.push(uuid);
            }
        }
        for uuid in autoboot {
            let lock = self.runtime.lock_of(uuid);
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            match self.vm_row(uuid).and_then(|vm| self.start_locked(uuid, &vm, &StartRequest::default())) {
                Ok(_) => tracing::info!(vm = %uuid, "autoboot: started"),
                Err(e) => tracing::error!(vm = %uuid, error = %e, "autoboot: start failed"),
            }
        }
        Ok(())
    }
}

/// The `exit_reason` of a zone whose monitor died without leaving an exit record.
fn monitor_death_reason(monitor_pid: Option<i32>, host_rebooted: bool) -> String {
    match (host_rebooted, monitor_pid) {
        (true, _) => "the host rebooted while the zone ran; the zone was stopped".to_string(),
        (false, Some(pid)) => format!("the zone's monitor (pid {pid}) died; the zone was stopped"),
        (false, None) => "the zone's monitor died; the zone was stopped".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_monitor_is_named_in_the_exit_reason() {
        assert_eq!(monitor_death_reason(Some(42), false), "the zone's monitor (pid 42) died; the zone was stopped");
        assert!(monitor_death_reason(None, false).contains("monitor died"));
        assert!(monitor_death_reason(Some(42), true).contains("host rebooted"));
    }
}
