//! Request and response bodies.
//!
//! A VM object is SmartOS's: a JSON object keyed by vmadm property names
//! (`uuid`, `brand`, `state`, `max_physical_memory`, ...). It stays a JSON
//! object on the wire so that every property a SmartOS tool knows survives
//! the trip; `zonevisor-spec` owns which properties exist and what they mean.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;

/// A VM object as `vmadm get` prints it.
pub type VmObject = Map<String, Value>;

/// The longest grace period `vmadm stop -t` may ask for: one day.
///
/// SmartOS documents no maximum (its `-t` is a JavaScript number that ends
/// up in a `setTimeout`, which treats anything past 2^31 ms, ~24.8 days, as
/// 1 ms); a stop waits for its answer for the whole grace period, so a day
/// is already far more than any shutdown needs, and larger values are
/// refused rather than clamped.
pub const MAX_STOP_TIMEOUT_SECS: u64 = 86_400;

/// `POST /v1/vms/{uuid}/stop`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StopRequest {
    /// Halt at once instead of asking init to shut down.
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for a graceful shutdown before halting (default 60,
    /// at most [`MAX_STOP_TIMEOUT_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 86400)]
    pub timeout_secs: Option<u64>,
}

impl StopRequest {
    /// Refuses a `timeout_secs` above [`MAX_STOP_TIMEOUT_SECS`], naming it.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.timeout_secs {
            Some(t) if t > MAX_STOP_TIMEOUT_SECS => Err(ApiError::invalid(format!(
                "timeout_secs {t} is too long: a stop waits at most {MAX_STOP_TIMEOUT_SECS} seconds (one day)"
            ))),
            _ => Ok(()),
        }
    }
}

/// `POST /v1/vms/{uuid}/reboot`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RebootRequest {
    /// Halt at once instead of asking init to shut down.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/vms/{uuid}/start`: SmartOS's one-off boot options of a
/// hardware VM (`vmadm start <uuid> order=cd,once=d cdrom=/x.iso,ide`);
/// a zone takes none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StartRequest {
    /// The boot order for this boot (`c` disk, `d` CD-ROM, `n` network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The boot order for the first boot only (a reboot from inside goes
    /// back to `order`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<String>,
    /// CD-ROMs attached for this boot: a path inside the VM's zone root
    /// (`<zonepath>/root`) and a model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdrom: Vec<AttachDisk>,
    /// Disks attached for this boot, likewise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk: Vec<AttachDisk>,
}

impl StartRequest {
    /// Whether it asks for nothing.
    pub fn is_empty(&self) -> bool {
        self == &StartRequest::default()
    }
}

/// A disk or CD-ROM attached for one boot (`cdrom=/x.iso,ide`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttachDisk {
    /// The file, inside the VM's zone root.
    pub path: String,
    /// `ide`, `scsi`, `virtio`, ...
    pub model: String,
}

/// `POST /v1/vms/{uuid}/sysrq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SysrqRequest {
    /// `nmi` or `screenshot`.
    pub request: String,
}

/// `POST /v1/vms/{uuid}/kill`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct KillRequest {
    /// Signal name (`SIGTERM`, `TERM`) or number; default SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// `POST /v1/validate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageInstallRequest {
    /// The image manifest (v2).
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// Absolute path of the image file (tar, tar.gz, tar.xz or tar.zst) on the host.
    pub file: String,
}

/// An installed image as `imgadm get` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageRecord {
    /// The manifest as installed.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// The pool the image lives in.
    pub zpool: String,
    /// Instances cloned from this image, and installed images whose
    /// `origin` it is (SmartOS's dependent clones).
    #[serde(default)]
    pub clones: u64,
    /// The URL of the image source it was imported from (none when it
    /// was installed from local files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The compressions `imgadm create -c` takes.
pub const IMAGE_COMPRESSIONS: &[&str] = &["none", "gzip", "xz", "zstd"];

/// `POST /v1/vms/{uuid}/create-image`: `imgadm create`, an image from a
/// stopped instance.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImageCreateRequest {
    /// Manifest fields (`name` and `version` at least), as `-m` and the
    /// `field=value` arguments give them.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// `none` (default), `gzip`, `xz` or `zstd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Only what changed since the instance's image (`-i`): the manifest's
    /// `origin` is that image.
    #[serde(default)]
    pub incremental: bool,
    /// Refuse when the origin chain would be deeper than this (`--max-origin-depth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_origin_depth: Option<u32>,
    /// Write `<prefix>.imgmanifest` and the image file here (absolute; a
    /// directory gets `<name>-<version>` in it). With neither this nor
    /// `install`, the CLI sends its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_prefix: Option<String>,
    /// Install the image in the pool instead (`-O`): an O(1) snapshot of
    /// the instance's dataset, no file.
    #[serde(default)]
    pub install: bool,
    /// A prepare-image script (`-s`, its text): the instance is
    /// snapshotted, booted with it as its `operator-script`, and imaged
    /// once the script said `success` and stopped it; then rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_script: Option<String>,
    /// How long each step of the script may take (booted → running →
    /// success or error → stopped), in seconds (default 300, as SmartOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_timeout_secs: Option<u64>,
}

/// What `imgadm create` made.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImageCreated {
    /// The new image's manifest.
    #[schema(value_type = Object)]
    pub manifest: Value,
    /// Where the manifest was saved (not with `install`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_path: Option<String>,
    /// Where the image file was saved (not with `install`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
    /// What the daemon did, line by line, as SmartOS's imgadm prints it.
    #[serde(default)]
    pub log: Vec<String>,
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

/// A property `vmadm create` or `vmadm update` left out or adjusted, as
/// SmartOS does (it drops properties that are unknown or not valid for the
/// action, and clamps memory caps that contradict each other).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PropertyWarning {
    /// The property, as a user names it (`max_swap`, `nics.0.foo`).
    pub property: String,
    /// What was done with it and why.
    pub message: String,
}

/// The answer to `vmadm create` and `vmadm update`: the instance as it now
/// is, and what of the payload was dropped or adjusted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Changed {
    /// The VM object after the change (what `vmadm get` shows).
    #[schema(value_type = Object)]
    pub vm: VmObject,
    /// Properties dropped or adjusted, in payload order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PropertyWarning>,
}

/// `DELETE` answers and other empty successes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// What was done, in words.
    pub message: String,
}

/// `GET /v1/vms/{uuid}/console`: where a zone's console is. The console
/// itself is not carried over this API: the client connects to the zone's
/// monitor (`socket`, the JSON line protocol of `zonevisor_zone::control`
/// with `{"op":"console"}`), so an attached console outlives a daemon
/// restart, and reads the logs (`previous_log`, then `log`) directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsoleInfo {
    /// The VM.
    pub uuid: String,
    /// Its brand.
    pub brand: String,
    /// Its state (`running` when the console can be attached).
    pub state: String,
    /// The zone's run directory on the host.
    pub run_dir: String,
    /// The zone monitor's control socket (in `run_dir`).
    pub socket: String,
    /// The console log (what the zone wrote to its console, up to 1 MiB).
    pub log: String,
    /// The console log before the last rotation (up to 1 MiB more).
    pub previous_log: String,
}

/// What an [`Event`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The stream is established: every later change will be reported.
    Ready,
    /// A VM appeared (in state `provisioning`).
    Create,
    /// Properties of a VM changed (`changes` says which).
    Modify,
    /// A VM is gone.
    Delete,
}

/// One changed top-level property of a VM, as SmartOS's vminfod reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventChange {
    /// The property's path (one key: changes are reported per top-level property).
    pub path: Vec<String>,
    /// The path joined with dots.
    #[serde(rename = "prettyPath")]
    pub pretty_path: String,
    /// `added`, `removed` or `changed`.
    pub action: String,
    /// The value before (absent when `added`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub from: Option<Value>,
    /// The value after (absent when `removed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub to: Option<Value>,
}

/// One line of `GET /v1/events`: a VM was created, modified or deleted (or
/// the stream is ready).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the daemon recorded it (`2026-11-21T09:00:00.123Z`).
    pub timestamp: String,
    /// The VM (absent for `ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The VM's alias, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// For `modify`: the top-level properties whose value changed (`last_modified` is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<EventChange>,
    /// The whole VM object after the event (`GET /v1/events?full=true` only;
    /// for `delete`, the object as it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vm: Option<VmObject>,
}

/// One PSI line: the share of time tasks stalled, in percent, and the total stall.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PsiLine {
    /// Average over the last 10 s.
    pub avg10: f64,
    /// Average over the last 60 s.
    pub avg60: f64,
    /// Average over the last 300 s.
    pub avg300: f64,
    /// Total stall time, in microseconds.
    pub total_us: u64,
}

/// One resource's pressure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PsiInfo {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<PsiLine>,
}

/// Pressure stall information (Linux PSI) for CPU, memory and I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PressureInfo {
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<PsiInfo>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<PsiInfo>,
    /// I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<PsiInfo>,
}

/// CPU use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CpuInfo {
    /// CPU time consumed by the zone's tasks, in nanoseconds.
    pub usage_ns: u64,
}

/// Memory use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemoryInfo {
    /// Memory charged to the zone, in bytes.
    pub current_bytes: u64,
    /// Swap in use, in bytes (absent where the kernel does not account swap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_bytes: Option<u64>,
}

/// Task count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PidsInfo {
    /// Tasks (processes and threads) in the zone.
    pub current: u64,
}

/// Block I/O, all devices together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiskIoInfo {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// `GET /v1/vms/{uuid}/info`: a running zone's live usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmInfo {
    /// The VM.
    pub uuid: String,
    /// Its state (`running`).
    pub state: String,
    /// The host pid of the zone's init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// When the zone booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_timestamp: Option<String>,
    /// Seconds since the zone booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// The host's cgroup layout: `v1` (v1 or hybrid) or `v2`.
    pub cgroup_version: String,
    /// CPU use.
    pub cpu: CpuInfo,
    /// Memory and swap use.
    pub memory: MemoryInfo,
    /// Tasks.
    pub pids: PidsInfo,
    /// Block I/O (absent where no hierarchy accounts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_io: Option<DiskIoInfo>,
    /// Where `pressure` comes from: `zone` (the zone's own cgroup), `host`
    /// (the kernel has no per-cgroup PSI here, so this is `/proc/pressure`),
    /// or `none` (the kernel has no PSI).
    pub pressure_source: String,
    /// The zone's pressure (when `pressure_source` is `zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<PressureInfo>,
    /// The host's pressure (when `pressure_source` is `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_pressure: Option<PressureInfo>,
    /// What a hardware VM adds, as SmartOS's `vmadm info` shows it (QEMU's
    /// `block`, `blockstats`, `chardev`, `cpus`, `pci`, `status`, `version`,
    /// `vnc`, and the `accelerator`); nothing for a zone.
    #[serde(default, flatten)]
    #[schema(additional_properties)]
    pub guest: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_timeouts_above_a_day_are_refused() {
        for t in [None, Some(0), Some(60), Some(MAX_STOP_TIMEOUT_SECS)] {
            StopRequest { force: false, timeout_secs: t }.check().unwrap();
        }
        for t in [MAX_STOP_TIMEOUT_SECS + 1, u64::MAX] {
            let e = StopRequest { force: true, timeout_secs: Some(t) }.check().unwrap_err();
            assert_eq!(e.http_status(), 400);
            assert!(e.message.contains("timeout_secs") && e.message.contains(&t.to_string()), "{e}");
        }
    }
}

/// A nic tag: a name for a host network that instance NICs join
/// (`nictagadm list -j`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NicTag {
    /// The tag's name (what `nics.*.nic_tag` says).
    pub name: String,
    /// `normal` (a physical link; zonevisor builds a bridge over it),
    /// `bridge` (a Linux bridge the host already has) or `etherstub` (a
    /// host-local switch, `nictagadm add -l`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The physical link or the existing bridge (none for an etherstub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The link's MAC address, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// The largest MTU a NIC on the tag may have (1500-9000).
    pub mtu: u32,
    /// The Linux bridge the instances' NICs are ports of.
    pub bridge: String,
    /// Addresses, DHCP, DNS and NAT, for the network zonevisor manages
    /// itself (the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ManagedNetwork>,
}

/// What zonevisor runs for a network it manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManagedNetwork {
    /// The host's IPv4 address on the bridge, with the subnet's prefix
    /// (`10.65.3.1/24`): the instances' gateway, DHCP and DNS server.
    pub ipv4: String,
    /// The host's IPv6 address on the bridge (a ULA /64), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// The link the network's traffic is masqueraded out of, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
    /// Why there is no NAT (no uplink found), when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_missing: Option<String>,
    /// Whether its DHCP and DNS server (dnsmasq) is running.
    pub dhcp: bool,
    /// Where its dnsmasq keeps its configuration, reservations and leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
}

/// `nictagadm add`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicTagRequest {
    /// The tag's name: letters, digits and `_`, at most 31.
    pub name: String,
    /// A host-local switch (`-l`).
    #[serde(default)]
    pub local: bool,
    /// A physical link or an existing Linux bridge, by name or MAC address.
    #[serde(default)]
    pub link: Option<String>,
    /// The MTU (1500-9000; default the link's, or 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// `nictagadm update`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicTagUpdate {
    /// A new link (by name or MAC address), for a tag that is not an etherstub.
    #[serde(default)]
    pub link: Option<String>,
    /// A new MTU (1500-9000).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// A firewall rule as `fwadm get` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FwRule {
    /// The rule's uuid.
    pub uuid: String,
    /// Whether it applies.
    pub enabled: bool,
    /// A rule for every instance on the host (no owner).
    #[serde(default)]
    pub global: bool,
    /// The owner whose instances it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_uuid: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rule, in SmartOS's rule language, as fwadm prints it.
    pub rule: String,
}

/// One rule to add (`fwadm add`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FwRuleRequest {
    /// The rule text.
    pub rule: String,
    /// Whether it applies at once (default: false, as fwadm).
    #[serde(default)]
    pub enabled: bool,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The owner whose instances it applies to.
    #[serde(default)]
    pub owner_uuid: Option<String>,
    /// For every instance (no owner).
    #[serde(default)]
    pub global: bool,
    /// The uuid to give it (default: a new one).
    #[serde(default)]
    pub uuid: Option<String>,
}

/// `fwadm add`: the rules, added together or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FwAddRequest {
    /// The rules.
    pub rules: Vec<FwRuleRequest>,
}

/// `fwadm update`, `enable`, `disable`: what changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FwRuleUpdate {
    /// New rule text.
    #[serde(default)]
    pub rule: Option<String>,
    /// Enable or disable it.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// One rule's change in a [`FwChangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FwRuleChange {
    /// The rule.
    pub uuid: String,
    /// New rule text.
    #[serde(default)]
    pub rule: Option<String>,
    /// Enable or disable it.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

/// `fwadm update -f`, `enable`, `disable`, `delete` of several rules: all
/// changed in one transaction and one firewall update, or none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FwChangeRequest {
    /// Rules to change.
    #[serde(default)]
    pub update: Vec<FwRuleChange>,
    /// Rules to delete.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// What a [`FwChangeRequest`] did: the rules as they are now, and the
/// rules deleted as they were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FwChanged {
    /// The changed rules.
    pub updated: Vec<FwRule>,
    /// The deleted rules.
    pub deleted: Vec<FwRule>,
}

/// `fwadm status <vm>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FwStatus {
    /// `running` when the instance's firewall is on (`firewall_enabled`), else `stopped`.
    pub status: String,
    /// The enabled rules that apply to it.
    pub rules: u64,
}

/// One rule's traffic in an instance's firewall (`fwadm stats <vm>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FwRuleStats {
    /// The rule.
    pub uuid: String,
    /// Packets it matched.
    pub packets: u64,
    /// Bytes it matched.
    pub bytes: u64,
}

/// `vmadm create-snapshot <uuid> <name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// The snapshot's name: 1 to 64 characters of `[A-Za-z0-9_.:%-]`.
    pub name: String,
}

/// One snapshot of a VM, as `vmadm get` lists it in `snapshots`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot {
    /// Its name.
    pub name: String,
    /// When it was taken (`2026-01-31T18:05:05.000Z`).
    pub created_at: String,
}

/// `POST /v1/images/pull`: import an image from an OCI registry
/// (`imgadm import <reference>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImagePullRequest {
    /// A Docker-style image reference: `[registry[:port]/]repository[:tag][@sha256:digest]`
    /// (`alpine:3.20`, `docker.io/library/alpine:3.20`, `127.0.0.1:5000/busybox@sha256:...`).
    /// Without a registry, Docker Hub (`docker.io`); without a tag, `latest`.
    pub reference: String,
    /// Speak plain HTTP to the registry (and HTTPS without checking its
    /// certificate where it speaks HTTPS). Registries on loopback
    /// addresses (`localhost`, `127.0.0.0/8`, `::1`) are insecure
    /// without it, as Docker treats them.
    #[serde(default)]
    pub insecure: bool,
}

/// What `POST /v1/images/pull` did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImagePulled {
    /// The image as installed (type `docker`).
    pub image: ImageRecord,
    /// The reference as resolved (`docker.io/library/alpine:3.20`).
    pub reference: String,
    /// True when the image was installed already: nothing was downloaded.
    pub already_installed: bool,
}
