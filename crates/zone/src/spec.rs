//! What the daemon tells a monitor: the zone to run.

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

/// Why a zone's init ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// init halted or powered the zone off (reboot(2) with HALT/POWER_OFF).
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
