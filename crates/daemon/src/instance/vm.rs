//! The VM driver (brands kvm and bhyve): QEMU run by the monitor in a jail,
//! with its disks as volumes in the instance's dataset.

use serde_json::{Map, Value};
use zonevisor_api::{ApiError, StartRequest, ValidationErrors, VmObject};
use zonevisor_zone::Limits;

use super::driver::{Driver, Made, Undo};
use super::host::Launch;
use super::spec::InstanceSpec;
use crate::Daemon;

/// The VM driver.
pub(crate) struct VmDriver;

fn not_here(spec: &InstanceSpec) -> ApiError {
    ApiError::unsupported(format!("this host cannot run {} VMs yet", spec.brand))
}

impl Driver for VmDriver {
    fn check_create(&self, d: &Daemon, vm: &VmObject, errs: &mut ValidationErrors) {
        d.check_disk_images("disks", vm, errs);
    }

    fn provision(&self, _d: &Daemon, spec: &InstanceSpec, _made: &mut Made) -> Result<(), ApiError> {
        Err(not_here(spec))
    }

    fn limits(&self, spec: &InstanceSpec) -> Limits {
        spec.limits.clone()
    }

    fn launch(
        &self,
        _d: &Daemon,
        spec: &InstanceSpec,
        _limits: Limits,
        _opts: &StartRequest,
    ) -> Result<Launch, ApiError> {
        Err(not_here(spec))
    }

    fn apply_live<'a>(
        &self,
        _d: &'a Daemon,
        _current: &'a InstanceSpec,
        _next: &InstanceSpec,
        _live: &[String],
    ) -> Result<Option<Undo<'a>>, ApiError> {
        Ok(None)
    }

    fn sysrq(&self, _d: &Daemon, spec: &InstanceSpec, _request: &str) -> Result<String, ApiError> {
        Err(not_here(spec))
    }

    fn info(&self, _d: &Daemon, spec: &InstanceSpec) -> Result<Map<String, Value>, ApiError> {
        Err(not_here(spec))
    }
}
