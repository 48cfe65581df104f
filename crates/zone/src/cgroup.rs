//! Zone cgroups on cgroup v2 (unified) and v1/hybrid hosts.
//!
//! The hierarchies are found at run time in `/proc/self/mountinfo`: on a v2
//! host the single `cgroup2` mount, on a v1/hybrid host every v1 hierarchy
//! (one per controller, plus `name=systemd`) and the controller-less unified
//! one when mounted (it tracks processes and offers `cgroup.kill`). A zone's
//! cgroup is the same relative path (e.g. `zonevisor/<uuid>`) in each of them.
//!
//! [`Limits`] map to files as follows (`None` leaves a value unchanged, except
//! `cpu_cap_pct` where `None` means "no cap"); a file the kernel does not
//! offer (no swap accounting, no I/O weight) is skipped, not an error:
//!
//! | limit          | v2                                 | v1                                   |
//! |----------------|------------------------------------|--------------------------------------|
//! | `memory_bytes` | `memory.max`                       | `memory.limit_in_bytes`              |
//! | `swap_bytes`   | `memory.swap.max` (= swap − memory)| `memory.memsw.limit_in_bytes`        |
//! | `pids`         | `pids.max`                         | `pids.max`                           |
//! | `cpu_shares`   | `cpu.weight` (clamped 1..=10000)   | `cpu.shares` (= shares·1024/100, ≥2) |
//! | `cpu_cap_pct`  | `cpu.max` (`cap·1000 100000`)      | `cpu.cfs_period_us`/`cfs_quota_us`   |
//! | `cpus`         | `cpuset.cpus` (`None`: see below)  | `cpuset.cpus` (`None`: the parent's) |
//! | `io_priority`  | `io.bfq.weight` and `io.weight`    | `blkio.bfq.weight` and `blkio.weight`|
//!
//! `io_priority` (`zfs_io_priority`, default 100) is written to every weight
//! file present, clamped to its range (bfq 1..=1000, `io.weight` 1..=10000,
//! v1 `blkio.weight` 10..=1000); bfq's act only on devices that run bfq.
//!
//! `cpus` is the zone's cpuset, chosen by the daemon for `cpu_cap` (see
//! [`crate::cpuset`]): on v1 the `cpuset` hierarchy's `cpuset.cpus` (the
//! parent's list when not pinned: v1 has no "inherit"), on v2 `cpuset.cpus`
//! where the `cpuset` controller could be enabled on the way down (an empty
//! value inherits the parent's CPUs; a pinned zone with tasks cannot go back
//! to empty, so it is unpinned to its parent's effective CPUs).

use std::borrow::Cow;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Limits;

/// Which cgroup layout the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// v1 controllers (possibly with an empty v2 hierarchy beside them: "hybrid").
    V1,
    /// `/sys/fs/cgroup` is the unified v2 hierarchy.
    V2,
}

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup name is not a relative path of plain components.
    #[error("invalid cgroup name {0:?}")]
    InvalidName(String),
    /// No cgroup file system is mounted.
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    /// A file-system operation on a cgroup failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a limit (everything already written was restored).
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The control file.
        path: PathBuf,
        /// The refused value.
        value: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A zone's resource usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory charged to the cgroup, in bytes.
    pub memory_bytes: u64,
    /// Number of tasks.
    pub pids: u64,
    /// CPU time consumed, in nanoseconds.
    pub cpu_ns: u64,
}

/// A mounted cgroup hierarchy, from `/proc/self/mountinfo`.
struct Hierarchy {
    /// Where it is mounted.
    mount: PathBuf,
    /// The cgroup mounted there (usually `/`).
    root: String,
    /// `true` for the v2 (unified) hierarchy.
    v2: bool,
    /// The super-block options: a v1 hierarchy's controllers (and `name=...`).
    options: String,
}

impl Hierarchy {
    fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { op, path: path.to_path_buf(), source }
}

/// The host's cgroup layout: v2 when `/sys/fs/cgroup` is a `cgroup2` mount.
pub fn version() -> CgroupVersion {
    // SAFETY: statfs writes into a zeroed struct we own; the path is a valid C string.
    let magic = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c"/sys/fs/cgroup".as_ptr(), &mut st) != 0 {
            return CgroupVersion::V1;
        }
        st.f_type
    };
    if magic as u64 == libc::CGROUP2_SUPER_MAGIC as u64 {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

fn hierarchies() -> &'static [Hierarchy] {
    static H: OnceLock<Vec<Hierarchy>> = OnceLock::new();
    H.get_or_init(|| fs::read_to_string("/proc/self/mountinfo").map(|s| parse_mountinfo(&s)).unwrap_or_default())
}

fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&crate::rootfs::unescape_mountinfo(s)).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || !(r[0] == "cgroup" || r[0] == "cgroup2") || seen.contains(&l[2]) {
            continue;
        }
        seen.push(l[2]);
        out.push(Hierarchy {
            mount: PathBuf::from(unescape(l[4])),
            root: unescape(l[3]),
            v2: r[0] == "cgroup2",
            options: r[2].to_owned(),
        });
    }
    out
}

/// The `cgroup.procs` files to write to be in the same cgroups as the process
/// whose `/proc/<pid>/cgroup` is `proc_cgroup`: one per mounted v1 hierarchy it
/// belongs to, and the v2 one. Hierarchies that are not mounted are skipped.
fn procs_files_in(proc_cgroup: &str, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let h = if controllers.is_empty() {
            hierarchies.iter().find(|h| h.v2)
        } else {
            hierarchies.iter().find(|h| !h.v2 && controllers.split(',').all(|c| h.has_option(c)))
        };
        let Some(h) = h else { continue };
        let relative = if h.root != "/" { path.strip_prefix(h.root.as_str()).unwrap_or(path) } else { path };
        let mut file = h.mount.clone();
        for seg in relative.split('/').filter(|s| !s.is_empty()) {
            file.push(seg);
        }
        file.push("cgroup.procs");
        if !out.contains(&file) {
            out.push(file);
        }
    }
    out
}

/// The `cgroup.procs` files a process writes `0` into to join the cgroups
/// process `pid` is in (as the host sees them), in every mounted hierarchy.
pub(crate) fn procs_files_of(pid: i32) -> io::Result<Vec<PathBuf>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
    Ok(procs_files_in(&text, hierarchies()))
}

fn check_name(cgroup: &str) -> Result<(), CgroupError> {
    let p = Path::new(cgroup);
    if cgroup.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(CgroupError::InvalidName(cgroup.to_owned()));
    }
    Ok(())
}

/// The zone's cgroup directory in every hierarchy (whether or not it exists).
pub fn dirs(cgroup: &str) -> Result<Vec<PathBuf>, CgroupError> {
    check_name(cgroup)?;
    let h = hierarchies();
    if h.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(h.iter().map(|h| h.mount.join(cgroup)).collect())
}

/// The `cgroup.procs` files a process writes `0` into to join the zone's cgroup.
pub(crate) fn procs_files(cgroup: &str) -> Result<Vec<PathBuf>, CgroupError> {
    Ok(dirs(cgroup)?.into_iter().map(|d| d.join("cgroup.procs")).collect())
}

/// The zone's directory in the v2 hierarchy (unified, or beside v1 ones), if any.
pub(crate) fn v2_dir(cgroup: &str) -> Option<PathBuf> {
    check_name(cgroup).ok()?;
    hierarchies().iter().find(|h| h.v2).map(|h| h.mount.join(cgroup))
}

fn read_trim(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

/// Creates the zone's cgroup in every hierarchy (parents included, cpusets
/// initialised from the parent, v2 controllers enabled on the way down).
/// An existing cgroup is reused.
pub fn create(cgroup: &str) -> Result<(), CgroupError> {
    check_name(cgroup)?;
    if hierarchies().is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    for h in hierarchies() {
        // Another process may remove an empty parent (another daemon's
        // cleanup) while we walk down: start the walk again when it does.
        let mut attempts = 0;
        while let Err(e) = create_in(h, cgroup) {
            attempts += 1;
            let vanished = matches!(&e, CgroupError::Io { source, .. } if source.kind() == ErrorKind::NotFound);
            if !vanished || attempts >= 5 {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Creates `cgroup` under one hierarchy, parents first.
fn create_in(h: &Hierarchy, cgroup: &str) -> Result<(), CgroupError> {
    {
        let mut dir = h.mount.clone();
        let depth = Path::new(cgroup).components().count();
        for (i, comp) in Path::new(cgroup).components().enumerate() {
            if h.v2 {
                enable_controllers(&dir)?;
            }
            let parent = dir.clone();
            dir.push(comp);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", &dir)(e)),
            }
            if !h.v2 && h.has_option("cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let own = dir.join(f);
                    if read_trim(&own).map_err(io_err("read", &own))?.is_empty() {
                        let v = read_trim(&parent.join(f)).map_err(io_err("read", &parent))?;
                        write_file(&own, &v).map_err(io_err("write", &own))?;
                    }
                }
                if i + 1 < depth {
                    clone_children(&dir)?;
                }
            }
        }
    }
    Ok(())
}

/// Has v1's cpuset give `dir`'s new children its CPUs and memory nodes
/// itself (`cgroup.clone_children`), set on the parents we make (never
/// on a hierarchy's root): writing them into each new zone's cgroup
/// costs in proportion to its siblings (the kernel checks the new
/// cpuset against every one of them).
fn clone_children(dir: &Path) -> Result<(), CgroupError> {
    let flag = dir.join("cgroup.clone_children");
    if read_trim(&flag).map_err(io_err("read", &flag))? != "1" {
        write_file(&flag, "1").map_err(io_err("write", &flag))?;
    }
    Ok(())
}

/// Enables the controllers zones use in `dir`'s children. memory and pids
/// are required; cpu, io and cpuset are best effort (cpu cannot be enabled
/// while realtime threads run outside the root, io may be absent, cpuset
/// pins capped zones: see [`crate::cpuset`]).
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let avail = dir.join("cgroup.controllers");
    let avail = read_trim(&avail).map_err(io_err("read", &avail))?;
    let ctl = dir.join("cgroup.subtree_control");
    let enabled = read_trim(&ctl).map_err(io_err("read", &ctl))?;
    for c in ["memory", "pids", "cpu", "io", "cpuset"] {
        if !avail.split(' ').any(|a| a == c) || enabled.split(' ').any(|a| a == c) {
            continue;
        }
        match write_file(&ctl, &format!("+{c}")) {
            Err(e) if c == "memory" || c == "pids" => return Err(io_err("write", &ctl)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Applies `limits` to the zone's cgroup. Either every value is written or,
/// when the kernel refuses one, those already written are restored and the
/// refusal is returned.
pub fn apply_limits(cgroup: &str, limits: &Limits) -> Result<(), CgroupError> {
    let dirs = dirs(cgroup)?;
    let find = |names: &[&str]| names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n))).find(|p| p.exists());
    let mut plan: Vec<(PathBuf, String)> = Vec::new();

    if let Some(max) = find(&["memory.max"]) {
        // cgroup v2
        if let Some(m) = limits.memory_bytes {
            plan.push((max.clone(), m.to_string()));
        }
        if let (Some(s), Some(swap)) = (limits.swap_bytes, find(&["memory.swap.max"])) {
            let mem = limits.memory_bytes.or_else(|| read_trim(&max).ok().and_then(|v| v.parse().ok()));
            plan.push((swap, s.saturating_sub(mem.unwrap_or(0)).to_string()));
        }
    } else if let Some(lim) = find(&["memory.limit_in_bytes"]) {
        let memsw = limits.swap_bytes.and(find(&["memory.memsw.limit_in_bytes"]));
        match (limits.memory_bytes, limits.swap_bytes, memsw) {
            (Some(m), Some(s), Some(sw)) => {
                let cur: u64 = read_trim(&sw).ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
                if m > cur {
                    plan.push((sw, s.to_string()));
                    plan.push((lim, m.to_string()));
                } else {
                    plan.push((lim, m.to_string()));
                    plan.push((sw, s.to_string()));
                }
            }
            (None, Some(s), Some(sw)) => plan.push((sw, s.to_string())),
            (Some(m), _, _) => plan.push((lim, m.to_string())),
            _ => {}
        }
    }
    if let (Some(p), Some(f)) = (limits.pids, find(&["pids.max"])) {
        plan.push((f, p.to_string()));
    }
    if let Some(s) = limits.cpu_shares {
        if let Some(f) = find(&["cpu.weight"]) {
            plan.push((f, s.clamp(1, 10_000).to_string()));
        } else if let Some(f) = find(&["cpu.shares"]) {
            plan.push((f, (s.saturating_mul(1024) / 100).max(2).to_string()));
        }
    }
    let cap = limits.cpu_cap_pct.filter(|c| *c > 0);
    if let Some(f) = find(&["cpu.max"]) {
        let v = cap.map_or("max".to_owned(), |c| c.saturating_mul(1000).to_string());
        plan.push((f, format!("{v} 100000")));
    } else if let (Some(period), Some(quota)) = (find(&["cpu.cfs_period_us"]), find(&["cpu.cfs_quota_us"])) {
        plan.push((period, "100000".into()));
        plan.push((quota, cap.map_or("-1".to_owned(), |c| c.saturating_mul(1000).to_string())));
    }
    if let Some(f) = find(&["cpuset.cpus"]) {
        let pinned = limits.cpus.as_deref().filter(|c| !c.is_empty());
        let value = match (pinned, f.parent().and_then(Path::parent)) {
            (Some(cpus), _) => Some(crate::cpuset::format_list(cpus)),
            // v2: written only to undo a pin (see v2_unpinned).
            _ if is_v2_file(&f) => read_trim(&f).ok().filter(|v| !v.is_empty()).and_then(|_| v2_unpinned(&f)),
            // v1 has no inherit: the parent's list.
            (None, Some(parent)) => read_trim(&parent.join("cpuset.cpus")).ok().filter(|v| !v.is_empty()),
            (None, None) => None,
        };
        if let Some(v) = value {
            plan.push((f, v));
        }
    }
    if let Some(w) = limits.io_priority {
        let files = [
            ("io.weight", 1, 10_000, "default "),
            ("io.bfq.weight", 1, 1000, ""),
            ("blkio.weight", 10, 1000, ""),
            ("blkio.bfq.weight", 1, 1000, ""),
        ];
        // Every weight the kernel offers: bfq's where the device runs bfq (the
        // pool's loop device does), io.weight where an admin turned iocost on.
        for (name, lo, hi, prefix) in files {
            if let Some(f) = find(&[name]) {
                plan.push((f, format!("{prefix}{}", w.clamp(lo, hi))));
            }
        }
    }

    let mut done: Vec<(&Path, String)> = Vec::new();
    for (path, value) in &plan {
        let old = read_trim(path).map_err(io_err("read", path));
        // A value already there is not written again: some writes cost in
        // proportion to the host's cgroups (the CFS bandwidth files check
        // every task group's quota), and a new zone's defaults (no cap)
        // are most of what would be written.
        if old.as_ref().is_ok_and(|old| old == value.trim()) {
            continue;
        }
        let res = old.and_then(|old| {
            write_file(path, value).map(|()| old).map_err(|source| CgroupError::Write {
                path: path.clone(),
                value: value.clone(),
                source,
            })
        });
        match res {
            Ok(old) => done.push((path, old)),
            Err(e) => {
                for (p, old) in done.iter().rev() {
                    let _ = write_file(p, &restore_value(p, old));
                }
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether `path` is in the v2 hierarchy (the deepest mount holding it).
fn is_v2_file(path: &Path) -> bool {
    hierarchies()
        .iter()
        .filter(|h| path.starts_with(&h.mount))
        .max_by_key(|h| h.mount.components().count())
        .is_some_and(|h| h.v2)
}

/// The value that unpins a v2 zone's `cpuset.cpus` (`file`). Empty means
/// "the parent's CPUs" (written as a newline: an empty write never reaches
/// the kernel), but the kernel refuses to empty the cpuset of a cgroup with
/// tasks (ENOSPC), so a running zone gets its parent's effective CPUs,
/// which [`cpus`] reads back as unpinned all the same.
fn v2_unpinned(file: &Path) -> Option<String> {
    let dir = file.parent()?;
    let events = read_trim(&dir.join("cgroup.events")).ok()?;
    if !events.lines().any(|l| l == "populated 1") {
        return Some("\n".to_owned());
    }
    read_trim(&dir.parent()?.join("cpuset.cpus.effective")).ok().filter(|v| !v.is_empty())
}

/// What to write back to restore a value read from `path`.
fn restore_value<'a>(path: &Path, old: &'a str) -> Cow<'a, str> {
    // Empty: a v2 cpuset.cpus that was not pinned.
    if old.is_empty() {
        return v2_unpinned(path).map_or(Cow::Borrowed("\n"), Cow::Owned);
    }
    // v2 io.weight and io.bfq.weight read back as "default N\n<dev> N..."; the
    // first line restores the default.
    if path.ends_with("io.weight") || path.ends_with("io.bfq.weight") {
        return Cow::Borrowed(old.lines().next().unwrap_or(old));
    }
    Cow::Borrowed(old)
}

fn pids_in(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids_in(&e.path(), out);
            }
        }
    }
}

/// The processes in the zone's cgroup (and its descendants), as seen from the host.
pub fn pids(cgroup: &str) -> Result<Vec<i32>, CgroupError> {
    let mut out = Vec::new();
    for d in dirs(cgroup)? {
        pids_in(&d, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Sends SIGKILL to everything in the zone's cgroup, once: `cgroup.kill` where
/// a v2 hierarchy offers it, else to every listed process (racy against
/// forks; [`destroy`] repeats with the freezer).
pub fn kill(cgroup: &str) -> Result<(), CgroupError> {
    let dirs = dirs(cgroup)?;
    if let Some(k) = dirs.iter().map(|d| d.join("cgroup.kill")).find(|p| p.exists()) {
        return match write_file(&k, "1") {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("write", &k)(e)),
            _ => Ok(()),
        };
    }
    for pid in pids(cgroup)? {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    Ok(())
}

/// Kills everything in the zone's cgroup and removes it from every hierarchy
/// (descendants first). Idempotent; errors are ignored (see [`try_destroy`]).
pub fn destroy(cgroup: &str) {
    let _ = try_destroy(cgroup);
}

/// [`destroy`], reporting the first failure.
pub fn try_destroy(cgroup: &str) -> Result<(), CgroupError> {
    let dirs = dirs(cgroup)?;
    if !dirs.iter().any(|d| d.exists()) {
        return Ok(());
    }
    let freezer = dirs.iter().map(|d| d.join("freezer.state")).find(|p| p.exists());
    let has_kill = dirs.iter().any(|d| d.join("cgroup.kill").exists());
    for attempt in 0..200u32 {
        if pids(cgroup)?.is_empty() {
            break;
        }
        match (&freezer, has_kill) {
            (Some(f), false) => {
                let _ = write_file(f, "FROZEN");
                kill(cgroup)?;
                let _ = write_file(f, "THAWED");
            }
            _ => kill(cgroup)?,
        }
        std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) + 1));
    }
    let mut first = None;
    for d in &dirs {
        if let Err(e) = rmdir_tree(d) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    // Exiting tasks leave the cgroup asynchronously: retry EBUSY for a while.
    for attempt in 0..300u32 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 299 => {
                std::thread::sleep(Duration::from_millis(u64::from(attempt.min(10)) + 1));
            }
            Err(e) => return Err(io_err("rmdir", dir)(e)),
        }
    }
    Ok(())
}

/// The CPUs the zone is pinned to (its own `cpuset.cpus`); `None` when it
/// is not pinned (no cpuset file, or an empty one: v2's "the parent's"),
/// or pinned to every CPU of `available`.
pub fn cpus(cgroup: &str, available: &[u32]) -> Option<Vec<u32>> {
    let f = dirs(cgroup).ok()?.into_iter().map(|d| d.join("cpuset.cpus")).find(|p| p.exists())?;
    let cpus = crate::cpuset::parse_list(&read_trim(&f).ok()?)?;
    (!cpus.is_empty() && !available.iter().all(|c| cpus.contains(c))).then_some(cpus)
}

/// The CPUs zones under `parent` may use: the effective cpuset of `parent`
/// or of its nearest existing ancestor (v1 `cpuset.effective_cpus`, v2
/// `cpuset.cpus.effective`), else the host's online CPUs.
pub fn available_cpus(parent: &str) -> Vec<u32> {
    let from_cgroup = check_name(parent).ok().and_then(|()| {
        hierarchies().iter().find_map(|h| {
            let file = if h.v2 { "cpuset.cpus.effective" } else { "cpuset.effective_cpus" };
            if !h.v2 && !h.has_option("cpuset") {
                return None;
            }
            let mut dir = h.mount.join(parent);
            loop {
                if let Ok(v) = read_trim(&dir.join(file)) {
                    return crate::cpuset::parse_list(&v).filter(|c| !c.is_empty());
                }
                if dir == h.mount || !dir.pop() {
                    return None;
                }
            }
        })
    });
    from_cgroup
        .or_else(|| {
            fs::read_to_string("/sys/devices/system/cpu/online")
                .ok()
                .and_then(|v| crate::cpuset::parse_list(&v))
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n as u32).collect()
        })
}

/// The zone's current memory, task and CPU usage.
pub fn usage(cgroup: &str) -> Result<Usage, CgroupError> {
    let dirs = dirs(cgroup)?;
    let find = |names: &[&str]| names.iter().flat_map(|n| dirs.iter().map(move |d| d.join(n))).find(|p| p.exists());
    let num = |p: Option<PathBuf>| -> Result<u64, CgroupError> {
        match p {
            Some(p) => Ok(read_trim(&p).map_err(io_err("read", &p))?.parse().unwrap_or(0)),
            None => Ok(0),
        }
    };
    let mut u = Usage {
        memory_bytes: num(find(&["memory.current", "memory.usage_in_bytes"]))?,
        pids: tasks_in(&dirs)?,
        cpu_ns: num(find(&["cpuacct.usage"]))?,
    };
    if u.cpu_ns == 0 {
        if let Some(p) = find(&["cpu.stat"]) {
            let s = read_trim(&p).map_err(io_err("read", &p))?;
            let usec = s.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.parse::<u64>().ok());
            u.cpu_ns = usec.unwrap_or(0).saturating_mul(1000);
        }
    }
    Ok(u)
}

/// A zone's memory as lxcfs shows it in the zone's `/proc/meminfo`, for
/// the zone's answer to `sysinfo(2)` (see `monitor/sysinfo.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// The lowest memory limit of the zone's cgroup and its ancestors
    /// (v2 `memory.max`, v1 `memory.limit_in_bytes`); `None`: unlimited.
    /// v1's "unlimited" is a huge number, kept as it is.
    pub limit: Option<u64>,
    /// Memory charged to the cgroup, page cache included (v2
    /// `memory.current`, v1 `memory.usage_in_bytes`): what lxcfs subtracts
    /// from the limit for `MemFree`.
    pub usage: u64,
    /// Shared memory (tmpfs, shm): `shmem` (v2) or `total_shmem` (v1) in `memory.stat`.
    pub shmem: u64,
    /// Swap the zone may use besides its memory, the lowest of its cgroup's
    /// and its ancestors' (v2 `memory.swap.max`; v1 `memory.memsw.limit_in_bytes`
    /// minus the memory limit); `None`: unlimited or not accounted.
    pub swap_limit: Option<u64>,
    /// Swap in use (v2 `memory.swap.current`; v1 `memory.memsw.usage_in_bytes`
    /// minus `memory.usage_in_bytes`); `None` where the kernel does not account swap.
    pub swap_usage: Option<u64>,
}

/// A value of a memory control file: a number, or `None` for `max`.
fn memory_value(path: &Path) -> Result<Option<u64>, CgroupError> {
    let v = read_trim(path).map_err(io_err("read", path))?;
    Ok(v.parse().ok())
}

/// The lowest limit in `name` of `dir` (the zone's cgroup in one hierarchy,
/// `depth` levels below the hierarchy's root) and its ancestors that have
/// the file; `None` when none is limited.
fn min_limit(dir: &Path, depth: usize, name: &str) -> Result<Option<u64>, CgroupError> {
    let mut lowest: Option<u64> = None;
    for d in dir.ancestors().take(depth) {
        let f = d.join(name);
        if !f.exists() {
            continue;
        }
        if let Some(v) = memory_value(&f)? {
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
    }
    Ok(lowest)
}

/// The zone's memory limit, usage and swap, as lxcfs reads them (see [`Memory`]).
pub fn memory(cgroup: &str) -> Result<Memory, CgroupError> {
    memory_in(&dirs(cgroup)?, Path::new(cgroup).components().count(), cgroup)
}

/// [`memory`] of the cgroup whose directories (one per hierarchy) are
/// `dirs`, `depth` levels below their hierarchies' roots.
fn memory_in(dirs: &[PathBuf], depth: usize, cgroup: &str) -> Result<Memory, CgroupError> {
    let num = |p: &Path| -> Result<u64, CgroupError> { Ok(memory_value(p)?.unwrap_or(0)) };
    let stat_value = |dir: &Path, key: &str| -> Result<u64, CgroupError> {
        let p = dir.join("memory.stat");
        let text = fs::read_to_string(&p).map_err(io_err("read", &p))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    if let Some(dir) = dirs.iter().find(|d| d.join("memory.current").exists()) {
        let swap_usage = dir.join("memory.swap.current");
        let swap_usage = if swap_usage.exists() { Some(num(&swap_usage)?) } else { None };
        return Ok(Memory {
            limit: min_limit(dir, depth, "memory.max")?,
            usage: num(&dir.join("memory.current"))?,
            shmem: stat_value(dir, "shmem")?,
            swap_limit: if swap_usage.is_some() { min_limit(dir, depth, "memory.swap.max")? } else { None },
            swap_usage,
        });
    }
    let Some(dir) = dirs.iter().find(|d| d.join("memory.usage_in_bytes").exists()) else {
        return Err(CgroupError::Io {
            op: "find",
            path: PathBuf::from(cgroup),
            source: io::Error::new(ErrorKind::NotFound, "no memory controller for the cgroup"),
        });
    };
    let limit = min_limit(dir, depth, "memory.limit_in_bytes")?;
    let usage = num(&dir.join("memory.usage_in_bytes"))?;
    let memsw_usage = dir.join("memory.memsw.usage_in_bytes");
    let (swap_limit, swap_usage) = if memsw_usage.exists() {
        let memsw = min_limit(dir, depth, "memory.memsw.limit_in_bytes")?;
        let swap_limit = memsw.map(|sw| sw.saturating_sub(limit.unwrap_or(0)));
        (swap_limit, Some(num(&memsw_usage)?.saturating_sub(usage)))
    } else {
        (None, None)
    };
    Ok(Memory { limit, usage, shmem: stat_value(dir, "total_shmem")?, swap_limit, swap_usage })
}

/// The number of tasks (threads) in the zone's cgroup (`pids.current`).
pub fn tasks(cgroup: &str) -> Result<u64, CgroupError> {
    tasks_in(&dirs(cgroup)?)
}

/// How many processes of the zone's cgroup the kernel's out-of-memory
/// killer has killed (`oom_kill` in v2 `memory.events`, or in v1
/// `memory.oom_control`, Linux 4.13+); `None` where the kernel does not
/// count them.
pub fn oom_kills(cgroup: &str) -> Result<Option<u64>, CgroupError> {
    oom_kills_in(&dirs(cgroup)?)
}

fn oom_kills_in(dirs: &[PathBuf]) -> Result<Option<u64>, CgroupError> {
    let Some(p) =
        dirs.iter().flat_map(|d| [d.join("memory.events"), d.join("memory.oom_control")]).find(|p| p.exists())
    else {
        return Ok(None);
    };
    let text = fs::read_to_string(&p).map_err(io_err("read", &p))?;
    Ok(text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|v| v.trim().parse().ok()))
}

fn tasks_in(dirs: &[PathBuf]) -> Result<u64, CgroupError> {
    match dirs.iter().map(|d| d.join("pids.current")).find(|p| p.exists()) {
        Some(p) => Ok(memory_value(&p)?.unwrap_or(0)),
        None => Ok(0),
    }
}

/// One line of a PSI file (`some ...` or `full ...`): the share of wall
/// time tasks were stalled over the last 10, 60 and 300 seconds (percent),
/// and the total stall time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// Average over 10 s, in percent.
    pub avg10: f64,
    /// Average over 60 s, in percent.
    pub avg60: f64,
    /// Average over 300 s, in percent.
    pub avg300: f64,
    /// Total stall time, in microseconds.
    pub total_us: u64,
}

/// A PSI file (`cpu.pressure`, `/proc/pressure/memory`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiLine,
    /// All non-idle tasks stalled at once (absent for CPU on older kernels).
    pub full: Option<PsiLine>,
}

/// Pressure stall information for CPU, memory and I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    /// CPU pressure.
    pub cpu: Option<Psi>,
    /// Memory pressure.
    pub memory: Option<Psi>,
    /// I/O pressure.
    pub io: Option<Psi>,
}

impl Pressure {
    /// Whether no resource had a PSI file.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.io.is_none()
    }
}

/// Block I/O done by a zone's tasks (all devices together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// A zone's live usage, as `vmadm info` reports it: [`usage`] plus swap,
/// block I/O and pressure.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// The host's cgroup layout.
    pub version: Option<CgroupVersion>,
    /// Memory, tasks and CPU time.
    pub usage: Usage,
    /// Swap in use, in bytes, where the kernel accounts it (v2
    /// `memory.swap.current`; v1 `memory.memsw.usage_in_bytes` − `memory.usage_in_bytes`).
    pub swap_bytes: Option<u64>,
    /// Block I/O (v2 `io.stat`; v1 `blkio.throttle.io_service_bytes_recursive`
    /// and `io_serviced_recursive`), where a hierarchy offers it.
    pub io: Option<IoStats>,
    /// The zone's own PSI (`cpu.pressure`, `memory.pressure`, `io.pressure` in its
    /// v2 directory); empty when the kernel offers none for cgroups.
    pub pressure: Pressure,
}

/// Parses a PSI file's text.
pub fn parse_psi(text: &str) -> Option<Psi> {
    let parse_line = |l: &str| -> Option<PsiLine> {
        let mut line = PsiLine::default();
        let mut seen = 0;
        for field in l.split_whitespace().skip(1) {
            let (k, v) = field.split_once('=')?;
            match k {
                "avg10" => line.avg10 = v.parse().ok()?,
                "avg60" => line.avg60 = v.parse().ok()?,
                "avg300" => line.avg300 = v.parse().ok()?,
                "total" => line.total_us = v.parse().ok()?,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 4).then_some(line)
    };
    let mut some = None;
    let mut full = None;
    for l in text.lines() {
        if l.starts_with("some ") {
            some = parse_line(l);
        } else if l.starts_with("full ") {
            full = parse_line(l);
        }
    }
    Some(Psi { some: some?, full })
}

/// Sums v2 `io.stat` (`<maj:min> rbytes=.. wbytes=.. rios=.. wios=.. ...` per device).
pub fn parse_io_stat(text: &str) -> IoStats {
    let mut s = IoStats::default();
    for field in text.split_whitespace() {
        let Some((k, v)) = field.split_once('=') else { continue };
        let v: u64 = v.parse().unwrap_or(0);
        match k {
            "rbytes" => s.read_bytes += v,
            "wbytes" => s.write_bytes += v,
            "rios" => s.read_ops += v,
            "wios" => s.write_ops += v,
            _ => {}
        }
    }
    s
}

/// Sums the `Read` and `Write` lines of a v1 blkio file
/// (`<maj:min> Read <n>`, ..., `Total <n>`): `(read, write)`.
pub fn parse_blkio(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [_dev, op, n] = f.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => read += n,
                "Write" => write += n,
                _ => {}
            }
        }
    }
    (read, write)
}

fn read_pressure(dir: &Path) -> Pressure {
    let psi = |name: &str| fs::read_to_string(dir.join(name)).ok().as_deref().and_then(parse_psi);
    Pressure { cpu: psi("cpu.pressure"), memory: psi("memory.pressure"), io: psi("io.pressure") }
}

/// The host's pressure (`/proc/pressure/*`); empty when the kernel has no PSI.
pub fn host_pressure() -> Pressure {
    let psi = |name: &str| fs::read_to_string(format!("/proc/pressure/{name}")).ok().as_deref().and_then(parse_psi);
    Pressure { cpu: psi("cpu"), memory: psi("memory"), io: psi("io") }
}

/// The zone's live usage: [`usage`], swap, block I/O and its own pressure.
pub fn stats(cgroup: &str) -> Result<Stats, CgroupError> {
    let usage = usage(cgroup)?;
    let dirs = dirs(cgroup)?;
    let find = |name: &str| dirs.iter().map(|d| d.join(name)).find(|p| p.exists());
    let swap_bytes = memory_in(&dirs, Path::new(cgroup).components().count(), cgroup).ok().and_then(|m| m.swap_usage);
    let io = if let Some(p) = find("io.stat") {
        fs::read_to_string(&p).ok().map(|t| parse_io_stat(&t))
    } else {
        let bytes = find("blkio.throttle.io_service_bytes_recursive").and_then(|p| fs::read_to_string(p).ok());
        let ops = find("blkio.throttle.io_serviced_recursive").and_then(|p| fs::read_to_string(p).ok());
        match (bytes, ops) {
            (Some(b), Some(o)) => {
                let (read_bytes, write_bytes) = parse_blkio(&b);
                let (read_ops, write_ops) = parse_blkio(&o);
                Some(IoStats { read_bytes, write_bytes, read_ops, write_ops })
            }
            _ => None,
        }
    };
    let pressure = v2_dir(cgroup).filter(|d| d.exists()).map(|d| read_pressure(&d)).unwrap_or_default();
    Ok(Stats { version: Some(version()), usage, swap_bytes, io, pressure })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_cpusets_of_new_zones_come_from_their_parent_and_no_cap_keeps_the_cfs_defaults() {
        let Some(h) = hierarchies().iter().find(|h| !h.v2 && h.has_option("cpuset")) else {
            eprintln!("skipping: no v1 cpuset hierarchy");
            return;
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: cgroups need root");
            return;
        }
        let parent = format!("zonevisor-test-{}", std::process::id());
        let zone = format!("{parent}/zone");
        create(&zone).unwrap();
        let read = |c: &str, f: &str| read_trim(&h.mount.join(c).join(f)).unwrap();
        assert_eq!(read(&parent, "cgroup.clone_children"), "1", "set on the parent made");
        assert_eq!(read(&zone, "cpuset.cpus"), read(&parent, "cpuset.cpus"), "the kernel's copy");
        assert_eq!(read(&zone, "cpuset.mems"), read(&parent, "cpuset.mems"));
        // The hierarchy's root keeps its own flag, whatever it was.
        let root_flag = read_trim(&h.mount.join("cgroup.clone_children")).unwrap();
        create(&format!("{parent}/other")).unwrap();
        assert_eq!(read_trim(&h.mount.join("cgroup.clone_children")).unwrap(), root_flag);
        // No cap: the CFS files keep their defaults (apply_limits skips a
        // value already there); a cap, then none again, is written.
        let quota = dirs(&zone).unwrap().into_iter().map(|d| d.join("cpu.cfs_quota_us")).find(|f| f.exists());
        for (cap, want) in [(None, "-1"), (Some(50), "50000"), (None, "-1")] {
            apply_limits(&zone, &Limits { cpu_cap_pct: cap, ..Limits::default() }).unwrap();
            if let Some(f) = &quota {
                assert_eq!(read_trim(f).unwrap(), want, "cpu_cap {cap:?}");
            }
        }
        for c in [zone.as_str(), &format!("{parent}/other"), &parent] {
            try_destroy(c).unwrap();
        }
    }

    #[test]
    fn mountinfo_hybrid() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
42 31 0:38 / /mnt/other\\040dir rw,relatime - cgroup2 cgroup2 rw\n\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        let h = parse_mountinfo(text);
        assert_eq!(h.len(), 4);
        assert!(h[1].has_option("cpuset") && !h[0].has_option("cpuset"));
        assert!(h[3].v2 && h[3].mount == Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    const MOUNTINFO_HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
";

    #[test]
    fn procs_files_of_a_process_on_a_hybrid_host() {
        let h = parse_mountinfo(MOUNTINFO_HYBRID);
        assert_eq!(h.len(), 5);
        assert!(h[4].v2);
        let proc_cgroup = "\
9:name=systemd:/zonevisor/z1
8:pids:/zonevisor/z1
4:memory:/zonevisor/z1
2:cpu,cpuacct:/zonevisor/z1
6:freezer:/zonevisor/z1
0::/zonevisor/z1
";
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/systemd/zonevisor/z1/cgroup.procs",
            "/sys/fs/cgroup/pids/zonevisor/z1/cgroup.procs",
            "/sys/fs/cgroup/memory/zonevisor/z1/cgroup.procs",
            "/sys/fs/cgroup/cpu,cpuacct/zonevisor/z1/cgroup.procs",
            "/sys/fs/cgroup/unified/zonevisor/z1/cgroup.procs",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(procs_files_in(proc_cgroup, &h), want, "freezer is not mounted, so it is skipped");
    }

    #[test]
    fn procs_files_of_a_process_on_a_v2_host_and_mount_roots() {
        let h = parse_mountinfo("30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n");
        assert_eq!(
            procs_files_in("0::/zonevisor.slice/z1\n", &h),
            [PathBuf::from("/sys/fs/cgroup/zonevisor.slice/z1/cgroup.procs")]
        );
        assert_eq!(procs_files_in("0::/\n", &h), [PathBuf::from("/sys/fs/cgroup/cgroup.procs")]);
        let nested = parse_mountinfo("30 23 0:26 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(procs_files_in("0::/outer/z1\n", &nested), [PathBuf::from("/sys/fs/cgroup/z1/cgroup.procs")]);
        assert_eq!(nested[0].root, "/outer");
    }

    #[test]
    fn procs_files_of_ourselves() {
        // Whatever the host's layout, we are somewhere in each mounted hierarchy.
        let files = procs_files_of(std::process::id() as i32).unwrap();
        assert!(files.iter().all(|f| f.ends_with("cgroup.procs")), "{files:?}");
        assert!(procs_files_of(-1).unwrap_err().to_string().contains("/proc/-1/cgroup"));
    }

    #[test]
    fn names() {
        assert!(check_name("zonevisor/abc").is_ok());
        for bad in ["", "/abs", "a/../b", "./a"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn v2_unpinning_empties_only_a_cgroup_without_tasks() {
        let parent = tempfile::tempdir().unwrap();
        let zone = parent.path().join("zone");
        fs::create_dir(&zone).unwrap();
        fs::write(parent.path().join("cpuset.cpus.effective"), "0-3\n").unwrap();
        let cpus = zone.join("cpuset.cpus");
        fs::write(zone.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert_eq!(v2_unpinned(&cpus).as_deref(), Some("\n"));
        assert_eq!(restore_value(&cpus, ""), "\n");
        // The kernel refuses to empty the cpuset of a cgroup with tasks (ENOSPC).
        fs::write(zone.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert_eq!(v2_unpinned(&cpus).as_deref(), Some("0-3"));
        assert_eq!(restore_value(&cpus, ""), "0-3");
        assert_eq!(restore_value(&cpus, "1"), "1");
    }

    #[test]
    fn psi_io_stat_and_blkio_parse() {
        let p = parse_psi(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        assert_eq!(p.some, PsiLine { avg10: 1.5, avg60: 0.25, avg300: 0.0, total_us: 12345 });
        assert_eq!(p.full.unwrap().total_us, 7);
        assert!(parse_psi("some avg10=1.00 avg60=0.00 avg300=0.00 total=3\n").unwrap().full.is_none());
        assert!(parse_psi("").is_none());
        let io = parse_io_stat(
            "8:0 rbytes=100 wbytes=20 rios=3 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n",
        );
        assert_eq!(io, IoStats { read_bytes: 101, write_bytes: 22, read_ops: 4, write_ops: 2 });
        let b = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 1\n8:0 Async 2\n8:0 Total 4608\n8:16 Read 4\nTotal 4612\n";
        assert_eq!(parse_blkio(b), (4100, 512));
    }

    /// Writes `files` (name, content) into `dir`, creating it.
    fn cgroup_files(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, content) in files {
            fs::write(dir.join(name), content).unwrap();
        }
    }

    #[test]
    fn memory_on_v2_takes_the_lowest_limit_up_the_tree() {
        const MIB: u64 = 1 << 20;
        let t = tempfile::tempdir().unwrap();
        let parent = t.path().join("zonevisor");
        let zone = parent.join("z1");
        cgroup_files(&parent, &[("memory.max", "max\n"), ("memory.swap.max", "max\n")]);
        cgroup_files(
            &zone,
            &[
                ("memory.max", &format!("{}\n", 256 * MIB)),
                ("memory.current", &format!("{}\n", 100 * MIB)),
                ("memory.stat", &format!("anon 1\nfile 2\nshmem_thp 9\nshmem {}\n", 3 * MIB)),
                ("memory.swap.max", &format!("{}\n", 512 * MIB)),
                ("memory.swap.current", "4096\n"),
            ],
        );
        let m = memory_in(std::slice::from_ref(&zone), 2, "zonevisor/z1").unwrap();
        let want = Memory {
            limit: Some(256 * MIB),
            usage: 100 * MIB,
            shmem: 3 * MIB,
            swap_limit: Some(512 * MIB),
            swap_usage: Some(4096),
        };
        assert_eq!(m, want);
        // A lower limit on the parent wins; no limit anywhere is None.
        fs::write(parent.join("memory.max"), format!("{}\n", 128 * MIB)).unwrap();
        assert_eq!(memory_in(std::slice::from_ref(&zone), 2, "zonevisor/z1").unwrap().limit, Some(128 * MIB));
        fs::write(parent.join("memory.max"), "max\n").unwrap();
        fs::write(zone.join("memory.max"), "max\n").unwrap();
        assert_eq!(memory_in(std::slice::from_ref(&zone), 2, "zonevisor/z1").unwrap().limit, None);
        // No swap accounting (no memory.swap.* files).
        fs::remove_file(zone.join("memory.swap.current")).unwrap();
        let m = memory_in(std::slice::from_ref(&zone), 2, "zonevisor/z1").unwrap();
        assert_eq!((m.swap_limit, m.swap_usage), (None, None));
        // Above the hierarchy's root nothing is read.
        fs::write(t.path().join("memory.max"), "1\n").unwrap();
        assert_eq!(memory_in(&[zone], 2, "zonevisor/z1").unwrap().limit, None);
    }

    #[test]
    fn memory_on_v1_reads_the_memory_hierarchy() {
        const MIB: u64 = 1 << 20;
        let t = tempfile::tempdir().unwrap();
        let unlimited = "9223372036854771712\n";
        // name=systemd and the controller-less unified hierarchy come first.
        let systemd = t.path().join("systemd/zonevisor/z1");
        let unified = t.path().join("unified/zonevisor/z1");
        cgroup_files(&systemd, &[("cgroup.procs", "")]);
        cgroup_files(&unified, &[("cgroup.procs", ""), ("memory.pressure", "")]);
        let parent = t.path().join("memory/zonevisor");
        let zone = parent.join("z1");
        cgroup_files(&parent, &[("memory.limit_in_bytes", unlimited), ("memory.memsw.limit_in_bytes", unlimited)]);
        cgroup_files(
            &zone,
            &[
                ("memory.limit_in_bytes", &format!("{}\n", 256 * MIB)),
                ("memory.usage_in_bytes", &format!("{}\n", 100 * MIB)),
                ("memory.stat", &format!("cache 5\nshmem 1\ntotal_cache 6\ntotal_shmem {}\n", 2 * MIB)),
                ("memory.memsw.limit_in_bytes", &format!("{}\n", 768 * MIB)),
                ("memory.memsw.usage_in_bytes", &format!("{}\n", 110 * MIB)),
            ],
        );
        let dirs = [systemd, unified, zone.clone()];
        let m = memory_in(&dirs, 2, "zonevisor/z1").unwrap();
        let want = Memory {
            limit: Some(256 * MIB),
            usage: 100 * MIB,
            shmem: 2 * MIB,
            swap_limit: Some(512 * MIB),
            swap_usage: Some(10 * MIB),
        };
        assert_eq!(m, want);
        // No swap accounting (swapaccount=0): no memory.memsw.* files.
        fs::remove_file(zone.join("memory.memsw.usage_in_bytes")).unwrap();
        let m = memory_in(&dirs, 2, "zonevisor/z1").unwrap();
        assert_eq!((m.swap_limit, m.swap_usage), (None, None));
        // No memory controller at all: an error (the caller falls back to the kernel's answer).
        assert!(memory_in(&dirs[..2], 2, "zonevisor/z1").is_err());
    }

    #[test]
    fn oom_kills_are_read_from_v2_events_or_v1_oom_control() {
        let t = tempfile::tempdir().unwrap();
        let v2 = t.path().join("v2/zonevisor/z1");
        cgroup_files(&v2, &[("memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n")]);
        assert_eq!(oom_kills_in(std::slice::from_ref(&v2)).unwrap(), Some(2), "oom_kill, not oom_group_kill");
        let unified = t.path().join("unified/zonevisor/z1");
        let v1 = t.path().join("memory/zonevisor/z1");
        cgroup_files(&unified, &[("cgroup.procs", "")]);
        cgroup_files(&v1, &[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n")]);
        assert_eq!(oom_kills_in(&[unified.clone(), v1]).unwrap(), Some(5));
        // A kernel that does not count them (v1 before 4.13), or no memory controller.
        let old = t.path().join("old/zonevisor/z1");
        cgroup_files(&old, &[("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")]);
        assert_eq!(oom_kills_in(&[old]).unwrap(), None);
        assert_eq!(oom_kills_in(&[unified]).unwrap(), None);
    }

    #[test]
    fn host_pressure_reads_proc() {
        let p = host_pressure();
        assert_eq!(p.cpu.is_some(), Path::new("/proc/pressure/cpu").exists());
    }
}
