//! What the daemon tells a monitor: the instance to run, a zone
//! ([`ZoneSpec`]) or a QEMU VM ([`QemuSpec`]), and what it leaves behind
//! ([`ExitRecord`]).
//!
//! `run_dir/spec.json` holds a zone's spec as a plain object (as it always
//! did: monitors of running zones are re-adopted across an upgrade, and an
//! older monitor reads a newer daemon's zone specs) and a VM's as
//! `{"qemu": {...}}`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything a monitor needs to run one zone. Written as JSON to
/// `run_dir/spec.json` by [`crate::launch()`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSpec {
    /// The instance UUID.
    pub uuid: String,
    /// The zone's root filesystem on the host (the dataset's `root`).
    pub zone_root: PathBuf,
    /// The zone's runtime directory on the host (socket, pid files, console log).
    pub run_dir: PathBuf,
    /// Hostname set in the zone's UTS namespace and written to `/etc/hostname`.
    pub hostname: String,
    /// DNS domain, added to `/etc/hosts` and `search` in resolv.conf.
    #[serde(default)]
    pub dns_domain: Option<String>,
    /// When set, `/etc/resolv.conf` is written with these nameservers.
    #[serde(default)]
    pub resolvers: Option<Vec<String>>,
    /// init's argv; `init[0]` is a path inside the zone.
    pub init: Vec<String>,
    /// Size of the tmpfs on `/tmp`; `None` or 0 leaves `/tmp` on the dataset.
    #[serde(default)]
    pub tmpfs_bytes: Option<u64>,
    /// Host directories or files bind-mounted into the zone.
    #[serde(default)]
    pub mounts: Vec<BindMount>,
    /// The zone's cgroup, relative to each hierarchy's root (e.g. `zonevisor/<uuid>`).
    pub cgroup: String,
    /// Resource limits applied to the cgroup.
    #[serde(default)]
    pub limits: Limits,
    /// Restart init when it exits on its own (not on halt).
    #[serde(default)]
    pub restart_init: bool,
    /// The zone's user namespace: root in the zone is `host_uid` on the host.
    /// `None` runs the zone as the host's root (specs written before user
    /// namespaces; tests of the privileged path).
    #[serde(default)]
    pub idmap: Option<IdMap>,
    /// `limit_priv` opt-ins (see [`crate::security`]); unknown names are ignored.
    #[serde(default)]
    pub limit_priv: Vec<String>,
    /// Where the daemon's lxcfs is mounted: its `proc` files (and
    /// `sys/devices/system/cpu`) are bound over the zone's, so `free`,
    /// `top` and `/proc/cpuinfo` show the zone's limits (see [`crate::lxcfs`]).
    /// `None` leaves the kernel's `/proc` and `/sys` as they are.
    #[serde(default)]
    pub lxcfs: Option<PathBuf>,
    /// What `lofs` sources may not reach (the daemon's root, the pool):
    /// see [`crate::lofs`].
    #[serde(default)]
    pub protected: crate::lofs::Protected,
    /// The zone's NICs: veth pairs the monitor makes into the zone's
    /// network namespace, addressed and routed, before init starts.
    #[serde(default)]
    pub nics: Vec<zonevisor_net::plan::Port>,
    /// The metadata service the monitor serves to the zone, at
    /// `/.zonecontrol/metadata.sock` and `/native/.zonecontrol/metadata.sock`.
    #[serde(default)]
    pub metadata: Option<MetadataSpec>,
    /// A host directory shown read-only at `/native` in the zone: the
    /// guest tools (`usr/sbin/mdata-get`, ...) and the `.zonecontrol`
    /// mount point. The tools are linked from `/usr/sbin` where the zone
    /// has none of its own.
    #[serde(default)]
    pub native: Option<PathBuf>,
    /// A docker zone (`docker: true`): init is the image's command, run
    /// as [`crate::docker`] describes, instead of `init`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<Box<DockerInit>>,
}

/// What a docker zone runs as its init (SmartOS's `dockerinit` reads the
/// same from the zone's `docker:*` metadata): see [`crate::docker`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerInit {
    /// The entrypoint followed by the command; `argv[0]` without a `/`
    /// is looked up in the environment's `PATH` inside the zone.
    pub argv: Vec<String>,
    /// `NAME=value` entries over the defaults (`TERM`, `HOME`, `PATH`, `HOSTNAME`).
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory (`~` is the user's home); `/` when absent.
    #[serde(default)]
    pub workdir: Option<String>,
    /// `user[:group]`, names or ids, resolved in the zone's `/etc/passwd`
    /// and `/etc/group`; root when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// stdin is the console (`docker:open_stdin`); otherwise `/dev/null`.
    #[serde(default)]
    pub open_stdin: bool,
}

/// The metadata service (SmartOS's mdata) a monitor serves its instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSpec {
    /// The instance as `vmadm get` shows it: what `sdc:*` keys, the
    /// metadata and `KEYS` answer from. The daemon sends a new one with
    /// [`crate::control::Request::SetMetadata`] after every change.
    pub vm: serde_json::Value,
    /// The daemon's API socket: a guest's `PUT` and `DELETE` become
    /// `vmadm update`s there (so they are stored, shown and evented like
    /// any update).
    pub api_socket: PathBuf,
}

/// Everything a monitor needs to run one QEMU VM, jailed. Written to
/// `run_dir/spec.json` by [`crate::launch_qemu()`].
///
/// QEMU runs in the cgroup (`limits.memory_bytes` is the guest's RAM plus
/// QEMU's own overhead, which the daemon adds), in a mount namespace of its
/// own whose root is an empty read-only tmpfs showing only `/usr`
/// read-only (and `/bin`, `/sbin`, `/lib*` as on the host), `/dev/null`,
/// `/dev/zero`, `/dev/urandom`, [`Jail::devices`] and [`Jail::binds`], as
/// the unprivileged [`Jail::uid`]/[`Jail::gid`] without supplementary
/// groups, capabilities or a way to gain privileges (`no_new_privs`).
/// `argv` must turn QEMU's own seccomp sandbox on (`-sandbox on,...`;
/// [`crate::launch_qemu()`] refuses it otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QemuSpec {
    /// The instance UUID.
    pub uuid: String,
    /// The VM's runtime directory on the host: `monitor.sock`,
    /// `monitor.pid`, `spec.json`, `console.log`, `exit.json`, and
    /// `qemu.log` (QEMU's stderr).
    pub run_dir: PathBuf,
    /// The VM's cgroup, relative to each hierarchy's root.
    pub cgroup: String,
    /// Resource limits applied to the cgroup.
    #[serde(default)]
    pub limits: Limits,
    /// The host path of `qemu-system-x86_64`, executed from the host (it
    /// need not be visible in the jail; its libraries and data, in `/usr`, must).
    pub qemu: PathBuf,
    /// QEMU's arguments (without `argv[0]`); paths in them are the jail's.
    pub argv: Vec<String>,
    /// The host path of the QMP socket QEMU creates (`argv` holds
    /// `-qmp unix:<its path in the jail>,server=on,wait=off`): the monitor
    /// connects to it, and the VM counts as running once it answers.
    pub qmp: PathBuf,
    /// What QEMU runs as and sees.
    pub jail: Jail,
    /// The VM's NICs: taps the monitor opens and joins to their bridges
    /// at each QEMU start; QEMU inherits NIC `i`'s at descriptor
    /// `zonevisor_vm::config::TAP_FD_BASE + i`.
    #[serde(default)]
    pub nics: Vec<zonevisor_net::plan::Port>,
    /// The metadata service the monitor serves on the VM's second serial
    /// port, whose chardev is a socket QEMU listens on
    /// ([`QemuSpec::metadata_socket`]); the monitor connects at each QEMU start.
    #[serde(default)]
    pub metadata: Option<MetadataSpec>,
    /// The host path of that socket.
    #[serde(default)]
    pub metadata_socket: Option<PathBuf>,
}

/// QEMU's jail (see [`QemuSpec`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jail {
    /// The unprivileged host uid QEMU runs as (one per VM; never 0).
    pub uid: u32,
    /// Its gid (never 0).
    pub gid: u32,
    /// Host files and directories shown in the jail: disks, ISO, kernel,
    /// initrd, the copy of the firmware's variables, the QMP socket's directory.
    #[serde(default)]
    pub binds: Vec<JailBind>,
    /// Host device nodes shown at the same path in the jail (`/dev/kvm`
    /// when KVM is used, `/dev/net/tun`).
    #[serde(default)]
    pub devices: Vec<PathBuf>,
}

/// One host path shown in QEMU's jail: always `nosuid`, `nodev`, `noexec`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailBind {
    /// Host path (a file or a directory).
    pub source: PathBuf,
    /// Absolute path in the jail; created (like the source: a directory or a file).
    pub target: PathBuf,
    /// Writable; otherwise read-only.
    #[serde(default)]
    pub writable: bool,
}

/// What `spec.json` holds: the instance a monitor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InstanceSpec {
    /// A zone.
    Zone(ZoneSpec),
    /// A VM run by QEMU.
    Qemu(QemuSpec),
}

/// `{"qemu": {...}}`, the wire form of [`InstanceSpec::Qemu`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QemuFile<T> {
    qemu: T,
}

impl InstanceSpec {
    /// The JSON of `spec.json`.
    pub(crate) fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        match self {
            InstanceSpec::Zone(z) => serde_json::to_vec_pretty(z),
            InstanceSpec::Qemu(q) => serde_json::to_vec_pretty(&QemuFile { qemu: q }),
        }
    }

    /// Reads `spec.json`: `{"qemu": {...}}` is a VM, anything else a zone.
    pub(crate) fn from_json(bytes: &[u8]) -> serde_json::Result<InstanceSpec> {
        let v: serde_json::Value = serde_json::from_slice(bytes)?;
        if v.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("qemu")) {
            return Ok(InstanceSpec::Qemu(serde_json::from_value::<QemuFile<QemuSpec>>(v)?.qemu));
        }
        serde_json::from_value(v).map(InstanceSpec::Zone)
    }

    /// The instance's run directory.
    pub(crate) fn run_dir(&self) -> &std::path::Path {
        match self {
            InstanceSpec::Zone(z) => &z.run_dir,
            InstanceSpec::Qemu(q) => &q.run_dir,
        }
    }

    /// The instance's cgroup.
    pub(crate) fn cgroup(&self) -> &str {
        match self {
            InstanceSpec::Zone(z) => &z.cgroup,
            InstanceSpec::Qemu(q) => &q.cgroup,
        }
    }

    /// The instance's uuid.
    pub(crate) fn uuid(&self) -> &str {
        match self {
            InstanceSpec::Zone(z) => &z.uuid,
            InstanceSpec::Qemu(q) => &q.uuid,
        }
    }

    /// The instance's limits.
    pub(crate) fn limits(&self) -> &Limits {
        match self {
            InstanceSpec::Zone(z) => &z.limits,
            InstanceSpec::Qemu(q) => &q.limits,
        }
    }
}

/// A zone's id range: ids `0..count` in the zone are `host_uid..host_uid+count`
/// (and likewise for groups) on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The host uid of the zone's root.
    pub host_uid: u32,
    /// The host gid of the zone's root group.
    pub host_gid: u32,
    /// How many ids are mapped (65536: every id an image uses).
    pub count: u32,
}

/// A bind mount (SmartOS `filesystems` entry of type `lofs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path inside the zone; created when absent.
    pub target: PathBuf,
    /// Mounted read-only (`ro`).
    #[serde(default)]
    pub readonly: bool,
    /// Setuid bits and file capabilities ignored (`nosuid`).
    #[serde(default)]
    pub nosuid: bool,
    /// Device nodes unusable (`nodevice`).
    #[serde(default)]
    pub nodev: bool,
    /// Nothing executable (`noexec`).
    #[serde(default)]
    pub noexec: bool,
}

/// Resource limits, in SmartOS's meaning, converted to bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `max_physical_memory`: resident memory cap.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// `max_swap`: memory + swap cap (≥ memory).
    #[serde(default)]
    pub swap_bytes: Option<u64>,
    /// `max_locked_memory`: RLIMIT_MEMLOCK of init.
    #[serde(default)]
    pub locked_bytes: Option<u64>,
    /// `max_lwps`: maximum number of tasks.
    #[serde(default)]
    pub pids: Option<u64>,
    /// `cpu_shares`: relative CPU weight (SmartOS default 100).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// `cpu_cap`: percent of one CPU (100 = one CPU); `None` or 0 = no cap.
    #[serde(default)]
    pub cpu_cap_pct: Option<u64>,
    /// The CPUs the zone may run on (its cpuset), chosen by the daemon for
    /// `cpu_cap` (see [`crate::cpuset`]); `None` or empty = every CPU its
    /// parent cgroup has.
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
    /// `zfs_io_priority`: relative disk I/O weight (default 100).
    #[serde(default)]
    pub io_priority: Option<u64>,
}

/// Why an instance's main process (a zone's init, a VM's QEMU) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// init halted or powered the zone off (reboot(2) with HALT/POWER_OFF),
    /// or the VM's guest powered off (QEMU then exits with 0).
    Halted,
    /// init asked for a reboot (reboot(2) with RESTART).
    Rebooted,
    /// The zone was stopped from outside (`vmadm stop`).
    Stopped,
    /// init exited on its own with a status.
    Exited,
    /// init was killed by a signal.
    Signaled,
    /// The monitor could not (re)start the zone, or gave up restarting
    /// an init that kept dying (`restart_init`): `code`, `signal` and
    /// `oom_killed` then say how the last one died.
    Failed,
}

/// `run_dir/exit.json`, written by the monitor when the zone is down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Why.
    pub reason: ExitReason,
    /// init's exit status, when it exited.
    #[serde(default)]
    pub code: Option<i32>,
    /// The signal that killed init, when one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// init was killed by the kernel's out-of-memory killer (the zone's
    /// cgroup counted an OOM kill while it ran, and it died of `SIGKILL`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// A sentence for the operator.
    pub message: String,
    /// Seconds since the epoch.
    pub at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneSpec {
        ZoneSpec {
            uuid: "u".into(),
            zone_root: "/z/root".into(),
            run_dir: "/run/z".into(),
            hostname: "h".into(),
            dns_domain: None,
            resolvers: None,
            init: vec!["/sbin/init".into()],
            tmpfs_bytes: None,
            mounts: Vec::new(),
            cgroup: "zonevisor/u".into(),
            limits: Limits::default(),
            restart_init: true,
            idmap: None,
            limit_priv: Vec::new(),
            lxcfs: None,
            protected: Default::default(),
            nics: Vec::new(),
            metadata: None,
            native: None,
            docker: None,
        }
    }

    #[test]
    fn spec_json_holds_either_guest_and_old_zone_specs_read_as_zones() {
        let z = InstanceSpec::Zone(zone());
        let text = z.to_json().unwrap();
        let plain: ZoneSpec = serde_json::from_slice(&text).unwrap();
        assert_eq!(plain, zone(), "a zone's spec.json is a plain ZoneSpec, as older monitors read it");
        assert_eq!(InstanceSpec::from_json(&text).unwrap(), z);
        // Written before VMs existed, without the newer fields.
        let old = br#"{"uuid":"u","zone_root":"/z/root","run_dir":"/run/z","hostname":"h","init":["/sbin/init"],"cgroup":"zonevisor/u"}"#;
        match InstanceSpec::from_json(old).unwrap() {
            InstanceSpec::Zone(s) => assert_eq!((s.uuid.as_str(), s.restart_init), ("u", false)),
            other => panic!("{other:?}"),
        }
        let q = InstanceSpec::Qemu(QemuSpec {
            uuid: "v".into(),
            run_dir: "/run/v".into(),
            cgroup: "zonevisor/v".into(),
            limits: Limits { memory_bytes: Some(1 << 30), ..Limits::default() },
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            argv: vec!["-nodefaults".into()],
            qmp: "/run/v/jail/qmp.sock".into(),
            jail: Jail {
                uid: 3_000_000,
                gid: 3_000_000,
                binds: vec![JailBind { source: "/run/v/jail".into(), target: "/vm".into(), writable: true }],
                devices: vec!["/dev/kvm".into()],
            },
            nics: Vec::new(),
            metadata: Some(MetadataSpec { vm: serde_json::json!({"uuid": "v"}), api_socket: "/run/zv.sock".into() }),
            metadata_socket: Some("/run/v/vm/metadata.sock".into()),
        });
        let text = q.to_json().unwrap();
        assert!(String::from_utf8_lossy(&text).starts_with("{\n  \"qemu\": {"));
        assert_eq!(InstanceSpec::from_json(&text).unwrap(), q);
        assert_eq!((q.uuid(), q.cgroup(), q.run_dir()), ("v", "zonevisor/v", std::path::Path::new("/run/v")));
        assert!(InstanceSpec::from_json(br#"{"qemu": {"uuid": "v"}}"#).is_err(), "an incomplete VM spec");
        assert!(InstanceSpec::from_json(b"[]").is_err());
    }
}
