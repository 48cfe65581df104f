//! Fair I/O without `bfq`: a governor, as SmartOS's, that holds zones
//! doing I/O on the pool's device to shares of it in proportion to their
//! `zfs_io_priority`, with the block layer's throttle (`blkio.throttle.*`
//! on cgroup v1, `io.max` on v2), which every kernel with cgroups has.
//!
//! Where the pool's device runs `bfq`, its weights do this (see
//! `cgroup.rs`) and the governor stays off. Otherwise the daemon calls
//! [`Governor::tick`] every [`TICK`]:
//!
//! - each running zone's operations on the device (`io.stat` `rios`+`wios`,
//!   v1 `blkio.throttle.io_serviced_recursive`) give its rate since the
//!   last tick; a zone is **active** above [`ACTIVE_IOPS`];
//! - the device's **capacity** is the highest total rate seen recently
//!   (it decays by 2% a tick, so a slower device is found again);
//! - with two or more active zones, each active zone but those with the
//!   largest priority is limited to `capacity × priority / Σ priority of
//!   the active zones` operations a second (reads and writes each), never
//!   below [`FLOOR_IOPS`]; the zones with the largest priority are left
//!   free, so what the others leave is theirs and the capacity estimate
//!   keeps measuring the device, not the limits;
//! - with fewer than two, or for a zone that went quiet, limits are
//!   lifted. A limit is rewritten only when it moves by more than 10%.
//!
//! It limits operations, not bytes: a zone doing large sequential I/O gets
//! its share of operations, which may be more of the bandwidth.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cgroup::{self, CgroupError};

/// How often the daemon runs the governor.
pub const TICK: Duration = Duration::from_millis(250);
/// Operations a second above which a zone counts as doing I/O.
pub const ACTIVE_IOPS: f64 = 20.0;
/// No zone is limited below this.
pub const FLOOR_IOPS: u64 = 50;
/// How much of the capacity estimate survives a tick without a new high.
const DECAY: f64 = 0.98;
/// "No limit" on cgroup v1, as a rule: v1 counts a cgroup's I/O on a
/// device (`blkio.throttle.io_serviced`) only while it has a throttle
/// rule there, and `u32::MAX` (or 0) means none.
pub const V1_UNLIMITED_IOPS: u64 = u32::MAX as u64 - 1;

/// One zone as the governor sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneRate {
    /// The zone's cgroup (relative to each hierarchy's root).
    pub cgroup: String,
    /// Its `zfs_io_priority` (default 100).
    pub priority: u64,
    /// Its operations a second on the device since the last tick.
    pub iops: f64,
}

/// The limit of each zone of `zones` for a device whose capacity is
/// `capacity` operations a second (`None`: unlimited). Pure: the policy.
pub fn plan(zones: &[ZoneRate], capacity: f64) -> Vec<Option<u64>> {
    let active: Vec<&ZoneRate> = zones.iter().filter(|z| z.iops >= ACTIVE_IOPS).collect();
    if active.len() < 2 {
        return vec![None; zones.len()];
    }
    let total: u64 = active.iter().map(|z| z.priority.max(1)).sum();
    let top = active.iter().map(|z| z.priority.max(1)).max().unwrap_or(1);
    zones
        .iter()
        .map(|z| {
            let p = z.priority.max(1);
            if z.iops < ACTIVE_IOPS || p == top {
                return None;
            }
            let share = capacity * p as f64 / total as f64;
            Some((share as u64).max(FLOOR_IOPS))
        })
        .collect()
}

/// The governor's memory between ticks.
#[derive(Debug, Default)]
pub struct Governor {
    /// Per cgroup: operations counted at the last tick, and when.
    last: HashMap<String, (u64, Instant)>,
    /// Per cgroup: the limit in force (`None`: none, but counted).
    limits: HashMap<String, Option<u64>>,
    /// The device's capacity estimate, operations a second.
    capacity: f64,
}

impl Governor {
    /// One round for the device `dev` (`major:minor`) and the running zones
    /// `zones` (`(cgroup, priority)`): reads their counters, plans, and
    /// writes the limits that changed. Zones gone since are forgotten.
    /// Returns the limits now in force, by cgroup.
    pub fn tick(&mut self, dev: &str, zones: &[(String, u64)]) -> HashMap<String, u64> {
        let now = Instant::now();
        let mut rates = Vec::with_capacity(zones.len());
        for (cg, priority) in zones {
            if !self.limits.contains_key(cg) && set_iops_limit(cg, dev, None).is_ok() {
                // Counted from now on (v1 counts only under a rule).
                self.limits.insert(cg.clone(), None);
            }
            let Some(ops) = device_ops(cg, dev) else { continue };
            let iops = match self.last.insert(cg.clone(), (ops, now)) {
                Some((before, at)) if ops >= before => {
                    (ops - before) as f64 / now.duration_since(at).as_secs_f64().max(0.001)
                }
                _ => 0.0,
            };
            rates.push(ZoneRate { cgroup: cg.clone(), priority: *priority, iops });
        }
        self.last.retain(|cg, _| zones.iter().any(|(z, _)| z == cg));
        self.limits.retain(|cg, _| zones.iter().any(|(z, _)| z == cg));
        let total: f64 = rates.iter().map(|r| r.iops).sum();
        self.capacity = (self.capacity * DECAY).max(total);
        for (r, limit) in rates.iter().zip(plan(&rates, self.capacity)) {
            let current = self.limits.get(&r.cgroup).copied().flatten();
            let changed = match (current, limit) {
                (None, None) => false,
                (Some(a), Some(b)) => a.abs_diff(b) * 10 > a,
                _ => true,
            };
            if changed && set_iops_limit(&r.cgroup, dev, limit).is_ok() {
                self.limits.insert(r.cgroup.clone(), limit);
            }
        }
        self.limits.iter().filter_map(|(cg, l)| l.map(|l| (cg.clone(), l))).collect()
    }
}

/// The zone's operations (reads and writes) on device `dev` so far.
pub fn device_ops(cgroup: &str, dev: &str) -> Option<u64> {
    let dirs = cgroup::dirs(cgroup).ok()?;
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
    if let Some(p) = find("io.stat") {
        let text = std::fs::read_to_string(p).ok()?;
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(dev))?;
        let io = cgroup::parse_io_stat(line);
        return Some(io.read_ops + io.write_ops);
    }
    let text = std::fs::read_to_string(find("blkio.throttle.io_serviced_recursive")?).ok()?;
    let mine: String =
        text.lines().filter(|l| l.split_whitespace().next() == Some(dev)).map(|l| format!("{l}\n")).collect();
    let (read, write) = cgroup::parse_blkio(&mine);
    Some(read + write)
}

/// Limits the zone's reads and writes on `dev` to `limit` operations a
/// second each (`None`: unlimited; on v1 [`V1_UNLIMITED_IOPS`], so that
/// its I/O is still counted).
pub fn set_iops_limit(cgroup: &str, dev: &str, limit: Option<u64>) -> Result<(), CgroupError> {
    let dirs = cgroup::dirs(cgroup)?;
    let write = |path: PathBuf, value: String| {
        std::fs::write(&path, value).map_err(|e| CgroupError::Io { op: "write", path: path.clone(), source: e })
    };
    if let Some(d) = dirs.iter().find(|d| d.join("io.max").exists()) {
        let v = limit.map_or("max".to_owned(), |l| l.to_string());
        return write(d.join("io.max"), format!("{dev} riops={v} wiops={v}"));
    }
    let d =
        dirs.iter().find(|d| d.join("blkio.throttle.read_iops_device").exists()).ok_or_else(|| CgroupError::Io {
            op: "find",
            path: PathBuf::from("blkio.throttle.read_iops_device"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })?;
    let v = limit.unwrap_or(V1_UNLIMITED_IOPS);
    write(d.join("blkio.throttle.read_iops_device"), format!("{dev} {v}"))?;
    write(d.join("blkio.throttle.write_iops_device"), format!("{dev} {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(priority: u64, iops: f64) -> ZoneRate {
        ZoneRate { cgroup: format!("z{priority}-{iops}"), priority, iops }
    }

    #[test]
    fn the_lower_priorities_get_their_share_and_the_top_one_is_free() {
        // 1000:100 on a device doing 11000 ops/s: the 100 zone gets 1000.
        assert_eq!(plan(&[z(1000, 6000.0), z(100, 5000.0)], 11000.0), [None, Some(1000)]);
        // Equal priorities: nobody is limited (the scheduler shares).
        assert_eq!(plan(&[z(100, 6000.0), z(100, 5000.0)], 11000.0), [None, None]);
        // Three zones: shares of the active ones only.
        assert_eq!(plan(&[z(400, 100.0), z(100, 100.0), z(100, 0.0)], 5000.0), [None, Some(1000), None]);
    }

    #[test]
    fn alone_or_quiet_zones_are_not_limited_and_the_floor_holds() {
        assert_eq!(plan(&[z(1000, 6000.0), z(100, 5.0)], 11000.0), [None, None]);
        assert_eq!(plan(&[z(100, 9000.0)], 9000.0), [None]);
        assert_eq!(plan(&[], 9000.0), Vec::<Option<u64>>::new());
        assert_eq!(plan(&[z(1000, 100.0), z(1, 100.0)], 200.0), [None, Some(FLOOR_IOPS)]);
    }
}
