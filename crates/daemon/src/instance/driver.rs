//! The drivers: what differs between a zone and a hardware VM.
//!
//! The lifecycle (`mod.rs`) is written once: rows, locks, events, quota,
//! cgroup limits, CPU placement, watching monitors, stop, reboot, kill,
//! delete and recovery. It asks the instance's driver, chosen by the
//! typed spec's [`Kind`], only for what differs: what a create refers to,
//! how the dataset is filled, what the monitor runs, which live changes
//! only this kind has, and what `vmadm info` adds. The monitor is the
//! same program for both (it runs a zone's init or QEMU behind one guest
//! trait), so stop, reboot, kill and the console need no driver.

use serde_json::{Map, Value};
use zonevisor_api::{ApiError, StartRequest, ValidationErrors, VmObject};
use zonevisor_spec::Brand;
use zonevisor_zone::Limits;

use super::host::Launch;
use super::spec::{InstanceSpec, Kind};
use super::zone::ZoneDriver;
use crate::Daemon;

/// What a create has made so far, so that its rollback undoes only that.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Made {
    /// The instance's dataset.
    pub dataset: bool,
}

/// A live change to put back when a later one is refused.
pub(crate) type Undo<'a> = Box<dyn FnOnce() + 'a>;

/// What resumes an instance paused for a snapshot.
pub(crate) type Resume<'a> = Box<dyn Fn() -> Result<(), ApiError> + 'a>;

/// One kind of instance.
pub(crate) trait Driver: Sync {
    /// Checks what a create payload refers to that only this kind has
    /// (its image, its disks' images, host paths), adding problems to `errs`.
    fn check_create(&self, d: &Daemon, vm: &VmObject, errs: &mut ValidationErrors);

    /// Makes the instance's dataset and what it holds, recording in `made`
    /// what a rollback must undo, and in `vm` what it assigned (a VM's
    /// disks' paths).
    fn provision(&self, d: &Daemon, spec: &InstanceSpec, vm: &mut VmObject, made: &mut Made) -> Result<(), ApiError>;

    /// Makes the storage an update asks for (a VM's added disks, new
    /// sizes), recording in `vm` what it assigned; returns the undo, and
    /// what to remove once the update is stored (removed disks).
    fn update_storage<'a>(
        &self,
        d: &'a Daemon,
        current: &InstanceSpec,
        vm: &mut VmObject,
    ) -> Result<(Option<Undo<'a>>, Vec<String>), ApiError>;

    /// The cgroup limits the instance runs under (a VM's memory follows
    /// its `ram`, a zone's its `max_physical_memory`).
    fn limits(&self, spec: &InstanceSpec) -> Limits;

    /// What the monitor runs, with `limits` (CPUs placed) and this boot's
    /// options (`vmadm start`'s `order=`, `cdrom=`, ...; empty for zones);
    /// `vm` is the instance as stored (`spec` was read from it), for what
    /// its guest is shown of itself (metadata, a cloud-init seed).
    fn launch(
        &self,
        d: &Daemon,
        spec: &InstanceSpec,
        vm: &VmObject,
        limits: Limits,
        opts: &StartRequest,
    ) -> Result<Launch, ApiError>;

    /// Finishes a start once the monitor runs the guest (a VM's VNC
    /// password, given over QMP); an error stops it again.
    fn started(&self, d: &Daemon, spec: &InstanceSpec) -> Result<(), ApiError>;

    /// Applies the live changes (`live`, from the update plan) that only
    /// this kind has to the running instance; the returned undo puts them
    /// back if a later change is refused.
    fn apply_live<'a>(
        &self,
        d: &'a Daemon,
        current: &'a InstanceSpec,
        next: &InstanceSpec,
        live: &[String],
    ) -> Result<Option<Undo<'a>>, ApiError>;

    /// `vmadm sysrq`: `nmi` or `screenshot` to the running instance; the
    /// message for the operator.
    fn sysrq(&self, d: &Daemon, spec: &InstanceSpec, request: &str) -> Result<String, ApiError>;

    /// What `vmadm info` shows of a running instance beyond its cgroup's
    /// figures (a VM: QEMU's answers), as top-level keys.
    fn info(&self, d: &Daemon, spec: &InstanceSpec) -> Result<Map<String, Value>, ApiError>;

    /// Pauses the running instance for a snapshot of its dataset and
    /// returns what resumes it (callable again if it fails). A zone is not
    /// paused: its snapshot is one atomic cut of its files, as a crash
    /// would leave them.
    fn pause<'a>(&self, _d: &'a Daemon, _spec: &InstanceSpec) -> Result<Option<Resume<'a>>, ApiError> {
        Ok(None)
    }

    /// A running instance found at the daemon's start: puts right what a
    /// daemon dying mid-operation left (a VM paused for a snapshot is
    /// resumed).
    fn adopted(&self, _d: &Daemon, _spec: &InstanceSpec) -> Result<(), ApiError> {
        Ok(())
    }
}

/// The driver of instances of `brand`.
pub(crate) fn driver_of_brand(brand: Brand) -> &'static dyn Driver {
    if brand.is_hvm() {
        &super::vm::VmDriver
    } else {
        &ZoneDriver
    }
}

/// The driver of an instance of this kind.
pub(crate) fn driver_of(kind: &Kind) -> &'static dyn Driver {
    match kind {
        Kind::Zone(_) => &ZoneDriver,
        Kind::Vm(_) => &super::vm::VmDriver,
    }
}
