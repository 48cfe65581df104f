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
//! A round reads each running zone's counter file once (`open`, `read`),
//! found once per zone ([`Counter`]); while no zone does I/O and none is
//! limited, only every [`QUIET_EVERY`]th tick reads them all (a zone new
//! since the last round is read at once, alone: its first reading), so
//! contention that starts on a quiet device is met within a second. The
//! bookkeeping between rounds is by hash, so a round costs its reads: with
//! zones starting one after another, each tick reads the new ones only,
//! not every zone again. A daemon with 100 idle zones spends
//! ~0.8% of a core on the governor this way (most of it the daemon's
//! lookup of their priorities), where looking for every zone's file in
//! every hierarchy at every tick cost ~3.7%: `bench/run`'s "daemon CPU".
//!
//! It limits operations, not bytes: a zone doing large sequential I/O gets
//! its share of operations, which may be more of the bandwidth.

use std::collections::{HashMap, HashSet};
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
/// While no zone does I/O and none is limited, the counters are read
/// every this many ticks.
pub const QUIET_EVERY: u32 = 4;
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
    /// Per cgroup: where its operations are counted.
    counters: HashMap<String, Counter>,
    /// Per cgroup: operations counted at the last tick, and when.
    last: HashMap<String, (u64, Instant)>,
    /// Per cgroup: the limit in force (`None`: none, but counted).
    limits: HashMap<String, Option<u64>>,
    /// The device's capacity estimate, operations a second.
    capacity: f64,
    /// The zones of the last round that read the counters, and when it was.
    known: HashSet<String>,
    last_round: Option<Instant>,
    /// Whether a zone did I/O in that round, or one is limited.
    busy: bool,
    /// Ticks since that round.
    skipped: u32,
}

impl Governor {
    /// One round for the device `dev` (`major:minor`) and the running zones
    /// `zones` (`(cgroup, priority)`): reads their counters, plans, and
    /// writes the limits that changed. Zones gone since are forgotten.
    /// Returns the limits now in force, by cgroup.
    pub fn tick(&mut self, dev: &str, zones: &[(String, u64)]) -> HashMap<String, u64> {
        if !self.due() {
            // Zones new since the last round are only counted from now
            // on: their rates need a second reading, at the next round.
            let now = Instant::now();
            for (cg, _) in zones {
                if !self.known.contains(cg) {
                    self.known.insert(cg.clone());
                    self.read(cg, dev, now);
                }
            }
            self.skipped += 1;
            return self.in_force();
        }
        self.skipped = 0;
        self.known = zones.iter().map(|(cg, _)| cg.clone()).collect();
        let now = Instant::now();
        let mut rates = Vec::with_capacity(zones.len());
        for (cg, priority) in zones {
            let before = self.last.get(cg).copied();
            let Some(ops) = self.read(cg, dev, now) else { continue };
            let iops = match before {
                Some((before, at)) if ops >= before => {
                    (ops - before) as f64 / now.duration_since(at).as_secs_f64().max(0.001)
                }
                _ => 0.0,
            };
            rates.push(ZoneRate { cgroup: cg.clone(), priority: *priority, iops });
        }
        let known = &self.known;
        self.counters.retain(|cg, _| known.contains(cg));
        self.last.retain(|cg, _| known.contains(cg));
        self.limits.retain(|cg, _| known.contains(cg));
        let total: f64 = rates.iter().map(|r| r.iops).sum();
        let ticks = self.last_round.map_or(1.0, |at| now.duration_since(at).as_secs_f64() / TICK.as_secs_f64());
        self.capacity = decayed(self.capacity, ticks).max(total);
        self.last_round = Some(now);
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
        let limited = self.in_force();
        self.busy = !limited.is_empty() || rates.iter().any(|r| r.iops >= ACTIVE_IOPS);
        limited
    }

    /// Reads zone `cgroup`'s operations on `dev` at `now` and keeps them
    /// for its next rate; its rule is set first (v1 counts only under
    /// one), its counter file found once. `None`: gone, or never there
    /// (looked for again next time).
    fn read(&mut self, cgroup: &str, dev: &str, now: Instant) -> Option<u64> {
        if !self.limits.contains_key(cgroup) && set_iops_limit(cgroup, dev, None).is_ok() {
            self.limits.insert(cgroup.to_owned(), None);
        }
        if !self.counters.contains_key(cgroup) {
            self.counters.insert(cgroup.to_owned(), Counter::find(cgroup)?);
        }
        let Some(ops) = self.counters.get(cgroup).and_then(|c| c.ops(dev)) else {
            self.counters.remove(cgroup);
            return None;
        };
        self.last.insert(cgroup.to_owned(), (ops, now));
        Some(ops)
    }

    /// Whether this tick reads every zone's counter: a zone did I/O or is
    /// limited at the last round, or it is the [`QUIET_EVERY`]th tick.
    fn due(&self) -> bool {
        self.busy || self.skipped + 1 >= QUIET_EVERY
    }

    /// The limits in force, by cgroup.
    fn in_force(&self) -> HashMap<String, u64> {
        self.limits.iter().filter_map(|(cg, l)| l.map(|l| (cg.clone(), l))).collect()
    }
}

/// The capacity estimate `capacity` after `ticks` ticks (of [`TICK`],
/// counted by the clock: quiet rounds are further apart) without a new high.
fn decayed(capacity: f64, ticks: f64) -> f64 {
    capacity * DECAY.powf(ticks.max(1.0))
}

/// Where a zone's operations on the devices are counted: v2's `io.stat`
/// (`<maj:min> rbytes=.. wbytes=.. rios=.. wios=..`), or v1's
/// `blkio.throttle.io_serviced_recursive` (`<maj:min> Read <n>`, ...).
#[derive(Clone, Debug, PartialEq)]
pub enum Counter {
    IoStat(PathBuf),
    Blkio(PathBuf),
}

impl Counter {
    /// The zone's counter file, in whichever hierarchy has one.
    pub fn find(cgroup: &str) -> Option<Counter> {
        let dirs = cgroup::dirs(cgroup).ok()?;
        let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
        find("io.stat")
            .map(Counter::IoStat)
            .or_else(|| find("blkio.throttle.io_serviced_recursive").map(Counter::Blkio))
    }

    /// The operations (reads and writes) on device `dev` so far; `None`
    /// when the file cannot be read.
    pub fn ops(&self, dev: &str) -> Option<u64> {
        let path = match self {
            Counter::IoStat(p) | Counter::Blkio(p) => p,
        };
        Some(self.ops_in(&std::fs::read_to_string(path).ok()?, dev))
    }

    /// [`Counter::ops`] of the file's `text`: 0 for a device it does not name.
    pub fn ops_in(&self, text: &str, dev: &str) -> u64 {
        let mine = text.lines().filter(|l| l.split_whitespace().next() == Some(dev));
        match self {
            Counter::IoStat(_) => mine.map(cgroup::parse_io_stat).map(|io| io.read_ops + io.write_ops).sum(),
            Counter::Blkio(_) => {
                let (read, write) = cgroup::parse_blkio(&mine.map(|l| format!("{l}\n")).collect::<String>());
                read + write
            }
        }
    }
}

/// The zone's operations (reads and writes) on device `dev` so far.
pub fn device_ops(cgroup: &str, dev: &str) -> Option<u64> {
    Counter::find(cgroup)?.ops(dev)
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
    fn counters_read_their_devices_operations_from_either_file() {
        let io_stat = "7:1 rbytes=4096 wbytes=8192 rios=10 wios=3 dbytes=0 dios=0\n\
                       8:0 rbytes=1 wbytes=1 rios=100 wios=100 dbytes=0 dios=0\n";
        let v2 = Counter::IoStat(PathBuf::from("io.stat"));
        assert_eq!((v2.ops_in(io_stat, "7:1"), v2.ops_in(io_stat, "8:0"), v2.ops_in(io_stat, "7:2")), (13, 200, 0));
        let blkio = "7:1 Read 10\n7:1 Write 3\n7:1 Sync 13\n7:1 Async 0\n7:1 Discard 0\n7:1 Total 13\n\
                     8:0 Read 100\n8:0 Write 100\n8:0 Total 200\nTotal 213\n";
        let v1 = Counter::Blkio(PathBuf::from("blkio.throttle.io_serviced_recursive"));
        assert_eq!((v1.ops_in(blkio, "7:1"), v1.ops_in(blkio, "8:0"), v1.ops_in(blkio, "7:2")), (13, 200, 0));
    }

    #[test]
    fn a_counter_found_once_is_read_afresh_each_time_and_fails_once_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io.stat");
        let c = Counter::IoStat(path.clone());
        assert_eq!(c.ops("7:1"), None);
        std::fs::write(&path, "7:1 rios=1 wios=1\n").unwrap();
        assert_eq!(c.ops("7:1"), Some(2));
        std::fs::write(&path, "7:1 rios=5 wios=2\n").unwrap();
        assert_eq!(c.ops("7:1"), Some(7));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.ops("7:1"), None);
    }

    #[test]
    fn quiet_rounds_read_the_counters_every_few_ticks_and_busy_ones_every_tick() {
        let zones = |names: &[&str]| names.iter().map(|n| (n.to_string(), 100)).collect::<Vec<_>>();
        // A round found zone a quiet, nothing limited.
        let mut g = Governor { known: ["a".to_string()].into(), ..Default::default() };
        for skipped in 0..QUIET_EVERY - 1 {
            g.skipped = skipped;
            assert!(!g.due(), "tick {skipped} after a quiet round");
        }
        g.skipped = QUIET_EVERY - 1;
        assert!(g.due(), "every {QUIET_EVERY}th tick");
        // A zone doing I/O, or one limited: every tick.
        (g.skipped, g.busy) = (0, true);
        assert!(g.due());
        // A zone new since the last round is read alone, at once: no
        // round, so the quiet ticks still count towards the next one.
        (g.skipped, g.busy) = (0, false);
        g.tick("7:1", &zones(&["a", "b-no-such-cgroup"]));
        assert!(g.known.contains("b-no-such-cgroup"), "the new zone is known");
        assert_eq!((g.skipped, g.last_round), (1, None), "no round for a new zone");
    }

    #[test]
    fn the_capacity_estimate_decays_by_the_clock() {
        assert_eq!(decayed(1000.0, 1.0), 980.0);
        assert_eq!(decayed(1000.0, 0.2), 980.0, "at least one tick's worth");
        // Four quiet ticks apart: as much as four ticks.
        assert!((decayed(1000.0, 4.0) - 1000.0 * 0.98f64.powi(4)).abs() < 1e-9);
    }

    #[test]
    fn alone_or_quiet_zones_are_not_limited_and_the_floor_holds() {
        assert_eq!(plan(&[z(1000, 6000.0), z(100, 5.0)], 11000.0), [None, None]);
        assert_eq!(plan(&[z(100, 9000.0)], 9000.0), [None]);
        assert_eq!(plan(&[], 9000.0), Vec::<Option<u64>>::new());
        assert_eq!(plan(&[z(1000, 100.0), z(1, 100.0)], 200.0), [None, Some(FLOOR_IOPS)]);
    }
}
