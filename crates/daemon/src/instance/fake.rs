//! A fake [`Host`] for the lifecycle's unit tests: the same state as the
//! host's (datasets, quotas, cgroups, run directories, monitors), kept in
//! memory, and a fault that can be put on any step: an error returned, or
//! a panic standing for the daemon dying there.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use zonevisor_api::ApiError;
use zonevisor_zone::cgroup::Stats;
use zonevisor_zone::control::{ControlError, MonitorStatus, ZoneState};
use zonevisor_zone::{ExitReason, ExitRecord, Launched, Limits};

use super::host::{Host, Launch};

/// What a fault does at its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The step fails with an error.
    Error,
    /// The daemon dies at the step (a panic the test catches).
    Crash,
}

/// A fake monitor: its guest runs until it is stopped.
#[derive(Debug)]
pub(crate) struct Monitor {
    pub pid: i32,
    pub init_pid: i32,
    pub cgroup: String,
    pub limits: Limits,
    /// The write end of the pipe whose read end stands for the monitor's
    /// pidfd: dropped when the monitor exits.
    alive: Option<OwnedFd>,
    exited: OwnedFd,
}

/// A fake snapshot: what its dataset held when it was taken.
#[derive(Clone, Debug)]
pub(crate) struct FakeSnapshot {
    pub name: String,
    pub order: u64,
    /// Its identity, unique among all fake hosts, and the one it was
    /// received from (btrfs's UUID and received UUID).
    pub uuid: String,
    pub received_from: Option<String>,
    /// When it was taken where it came from (a received one).
    pub created: Option<std::time::SystemTime>,
    /// The dataset's data ([`State::contents`]).
    pub content: u64,
    /// The files at the dataset's top.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A rollback not ended.
#[derive(Clone, Debug)]
pub(crate) struct FakeRollback {
    pub snapshot: String,
    pub committed: bool,
}

/// The fake host's state.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub datasets: BTreeSet<String>,
    pub quotas: BTreeMap<String, Option<u64>>,
    /// `<dataset>/<file>` of each volume.
    pub volumes: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    pub run_dirs: BTreeSet<PathBuf>,
    pub monitors: BTreeMap<PathBuf, Monitor>,
    pub exits: BTreeMap<PathBuf, ExitRecord>,
    /// Each dataset's data, a number a test changes to stand for writes.
    pub contents: BTreeMap<String, u64>,
    /// Files at the top of datasets, by dataset.
    pub files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Each dataset's snapshots, oldest first.
    pub snapshots: BTreeMap<String, Vec<FakeSnapshot>>,
    /// Rollbacks not ended, by dataset.
    pub rollbacks: BTreeMap<String, FakeRollback>,
    /// The run directories of VMs paused over QMP (`stop`, until `cont`).
    pub paused: BTreeSet<PathBuf>,
    /// What receives staged, by dataset.
    pub staged: BTreeMap<String, Vec<FakeSnapshot>>,
    next_order: u64,
    /// The steps taken, in order (for the tests to enumerate them).
    pub steps: Vec<&'static str>,
    fault: Option<(&'static str, Fault)>,
    next_pid: i32,
}

/// The fake host; clones share one state (a "restarted daemon" sees what
/// the crashed one left).
#[derive(Clone, Default)]
pub(crate) struct FakeHost(pub Arc<Mutex<State>>);

impl FakeHost {
    /// The state, locked.
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `fault` on the next time `step` is taken.
    pub(crate) fn fail(&self, step: &'static str, fault: Fault) {
        self.state().fault = Some((step, fault));
    }

    /// Takes `step`: recorded, and failed if a fault is on it.
    fn step(&self, step: &'static str) -> Result<(), String> {
        let mut st = self.state();
        st.steps.push(step);
        match st.fault {
            Some((s, fault)) if s == step => {
                st.fault = None;
                drop(st);
                match fault {
                    Fault::Error => Err(format!("{step}: injected fault")),
                    Fault::Crash => panic!("injected crash at {step}"),
                }
            }
            _ => Ok(()),
        }
    }

    fn api_step(&self, step: &'static str) -> Result<(), ApiError> {
        self.step(step).map_err(ApiError::internal)
    }

    fn control_step(&self, step: &'static str) -> Result<(), ControlError> {
        self.step(step).map_err(ControlError::Refused)
    }

    /// The guest of the monitor in `run_dir` goes down on its own with
    /// `exit` (what a real monitor writes to `exit.json` before exiting).
    pub(crate) fn guest_exits(&self, run_dir: &Path, exit: ExitRecord) {
        let mut st = self.state();
        if let Some(m) = st.monitors.remove(run_dir) {
            st.cgroups.remove(&m.cgroup);
            st.exits.insert(run_dir.to_path_buf(), exit);
        }
    }

    fn status_of(m: &Monitor) -> MonitorStatus {
        MonitorStatus {
            monitor_pid: m.pid,
            init_pid: m.init_pid,
            state: ZoneState::Running,
            started_at: 0,
            init_restarts: 0,
        }
    }
}

fn stopped() -> ExitRecord {
    ExitRecord {
        reason: ExitReason::Stopped,
        code: None,
        signal: Some(9),
        message: "stopped by the fake host".into(),
        oom_killed: false,
        at: 0,
    }
}

fn not_running(run_dir: &Path) -> ControlError {
    ControlError::NotRunning {
        path: run_dir.join("monitor.sock"),
        source: std::io::Error::from_raw_os_error(libc::ECONNREFUSED),
    }
}

impl Host for FakeHost {
    fn clone_dataset(&self, image: &str, name: &str) -> Result<(), ApiError> {
        self.api_step("clone_dataset")?;
        let mut st = self.state();
        assert!(!st.datasets.contains(name), "clone over an existing dataset {name} (from {image})");
        st.datasets.insert(name.to_string());
        st.contents.insert(name.to_string(), 0);
        Ok(())
    }

    fn create_dataset(&self, name: &str) -> Result<(), ApiError> {
        self.api_step("create_dataset")?;
        let mut st = self.state();
        st.datasets.insert(name.to_string());
        st.contents.insert(name.to_string(), 0);
        Ok(())
    }

    fn create_volume(&self, dataset: &str, file: &str, _bytes: u64) -> Result<(), ApiError> {
        self.api_step("create_volume")?;
        self.state().volumes.insert(format!("{dataset}/{file}"));
        Ok(())
    }

    fn clone_volume(&self, _source: &Path, dataset: &str, file: &str, _bytes: u64) -> Result<(), ApiError> {
        self.api_step("clone_volume")?;
        self.state().volumes.insert(format!("{dataset}/{file}"));
        Ok(())
    }

    fn resize_volume(&self, dataset: &str, file: &str, _bytes: u64, _shrink: bool) -> Result<u64, ApiError> {
        self.api_step("resize_volume")?;
        match self.state().volumes.contains(&format!("{dataset}/{file}")) {
            true => Ok(0),
            false => Err(ApiError::internal(format!("resize volume: no volume {dataset}/{file}"))),
        }
    }

    fn destroy_volume(&self, dataset: &str, file: &str) -> Result<(), ApiError> {
        self.api_step("destroy_volume")?;
        self.state().volumes.remove(&format!("{dataset}/{file}"));
        Ok(())
    }

    fn copy_into_dataset(&self, _source: &Path, dataset: &str, file: &str) -> Result<(), ApiError> {
        self.api_step("copy_into_dataset")?;
        self.state().volumes.insert(format!("{dataset}/{file}"));
        Ok(())
    }

    fn give_to(&self, _path: &Path, _uid: u32, _gid: u32) -> Result<(), ApiError> {
        self.api_step("give_to")
    }

    fn make_dir(&self, _path: &Path, _owner: Option<(u32, u32)>) -> Result<(), ApiError> {
        self.api_step("make_dir")
    }

    fn move_file(&self, _from: &Path, _to: &Path) -> Result<(), ApiError> {
        self.api_step("move_file")
    }

    fn dataset_exists(&self, name: &str) -> bool {
        self.state().datasets.contains(name)
    }

    fn destroy_dataset(&self, name: &str, _wait: bool) -> Result<(), ApiError> {
        self.api_step("destroy_dataset")?;
        let mut st = self.state();
        st.datasets.remove(name);
        st.quotas.remove(name);
        st.volumes.retain(|v| !v.starts_with(&format!("{name}/")));
        // Its snapshots and what a rollback left go with it.
        st.contents.remove(name);
        st.files.remove(name);
        st.snapshots.remove(name);
        st.rollbacks.remove(name);
        st.staged.remove(name);
        Ok(())
    }

    fn quotas(&self) -> bool {
        true
    }

    fn set_quota(&self, name: &str, bytes: Option<u64>) -> Result<(), ApiError> {
        self.api_step("set_quota")?;
        self.state().quotas.insert(name.to_string(), bytes);
        Ok(())
    }

    fn pool_nearly_full(&self) -> bool {
        false
    }

    fn launch(&self, launch: &Launch) -> Result<Launched, ApiError> {
        self.api_step("launch")?;
        let (run_dir, cgroup) = launch.run_dir_and_cgroup();
        let (run_dir, cgroup) = (run_dir.to_path_buf(), cgroup.to_string());
        let limits = match launch {
            Launch::Zone(z) => z.limits.clone(),
            Launch::Qemu(q) => q.limits.clone(),
        };
        let (exited, alive) = nix::unistd::pipe().map_err(|e| ApiError::internal(e.to_string()))?;
        let mut st = self.state();
        st.next_pid += 2;
        let pid = 10_000 + st.next_pid;
        st.cgroups.insert(cgroup.clone());
        st.run_dirs.insert(run_dir.clone());
        st.exits.remove(&run_dir);
        let m = Monitor { pid, init_pid: pid + 1, cgroup, limits, alive: Some(alive), exited };
        let launched = Launched { monitor_pid: m.pid, init_pid: m.init_pid };
        st.monitors.insert(run_dir, m);
        Ok(launched)
    }

    fn status(&self, run_dir: &Path) -> Result<MonitorStatus, ControlError> {
        self.state().monitors.get(run_dir).map(Self::status_of).ok_or_else(|| not_running(run_dir))
    }

    fn stop(&self, run_dir: &Path, _force: bool, _timeout: Option<u64>) -> Result<ExitRecord, ControlError> {
        self.control_step("stop")?;
        if !self.state().monitors.contains_key(run_dir) {
            return Err(not_running(run_dir));
        }
        self.guest_exits(run_dir, stopped());
        Ok(stopped())
    }

    fn reboot(&self, run_dir: &Path, _force: bool) -> Result<MonitorStatus, ControlError> {
        self.control_step("reboot")?;
        let mut st = self.state();
        let m = st.monitors.get_mut(run_dir).ok_or_else(|| not_running(run_dir))?;
        m.init_pid += 100;
        Ok(Self::status_of(m))
    }

    fn kill(&self, run_dir: &Path, _signal: i32) -> Result<(), ControlError> {
        self.control_step("kill")?;
        self.status(run_dir).map(drop)
    }

    fn set_limits(&self, run_dir: &Path, limits: &Limits) -> Result<(), ControlError> {
        self.control_step("set_limits")?;
        let mut st = self.state();
        let m = st.monitors.get_mut(run_dir).ok_or_else(|| not_running(run_dir))?;
        m.limits = limits.clone();
        Ok(())
    }

    fn qmp(
        &self,
        run_dir: &Path,
        command: &str,
        _arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ControlError> {
        // A VM paused for a snapshot and resumed: steps of their own.
        self.control_step(match command {
            "stop" => "qmp_stop",
            "cont" => "qmp_cont",
            _ => "qmp",
        })?;
        self.status(run_dir)?;
        let mut st = self.state();
        match command {
            "stop" => st.paused.insert(run_dir.to_path_buf()),
            "cont" => st.paused.remove(run_dir),
            "query-status" => {
                let status = if st.paused.contains(run_dir) { "paused" } else { "running" };
                return Ok(serde_json::json!({"status": status, "running": status == "running"}));
            }
            _ => false,
        };
        Ok(serde_json::json!({"command": command}))
    }

    fn set_tmpfs(&self, run_dir: &Path, _bytes: u64) -> Result<(), ControlError> {
        self.control_step("set_tmpfs")?;
        self.status(run_dir).map(drop)
    }

    fn set_resolvers(&self, run_dir: &Path, _resolvers: &[String]) -> Result<(), ControlError> {
        self.control_step("set_resolvers")?;
        self.status(run_dir).map(drop)
    }

    fn set_metadata(&self, run_dir: &Path, _vm: &serde_json::Value) -> Result<(), ControlError> {
        self.control_step("set_metadata")?;
        self.status(run_dir).map(drop)
    }

    fn find_monitor(&self, run_dir: &Path) -> Option<MonitorStatus> {
        self.status(run_dir).ok()
    }

    fn live_monitor_pid(&self, run_dir: &Path) -> Option<i32> {
        self.state().monitors.get(run_dir).map(|m| m.pid)
    }

    fn recorded_monitor_pid(&self, run_dir: &Path) -> Option<i32> {
        self.live_monitor_pid(run_dir)
    }

    fn read_exit(&self, run_dir: &Path) -> Option<ExitRecord> {
        self.state().exits.get(run_dir).cloned()
    }

    fn remove_stale_files(&self, _run_dir: &Path) {}

    fn remove_run_dir(&self, run_dir: &Path) {
        let mut st = self.state();
        st.run_dirs.remove(run_dir);
        st.exits.remove(run_dir);
    }

    fn pidfd(&self, pid: i32) -> Option<OwnedFd> {
        let st = self.state();
        let m = st.monitors.values().find(|m| m.pid == pid && m.alive.is_some())?;
        m.exited.as_fd().try_clone_to_owned().ok()
    }

    fn destroy_cgroup(&self, cgroup: &str) {
        self.state().cgroups.remove(cgroup);
    }

    fn try_destroy_cgroup(&self, cgroup: &str) -> Result<(), ApiError> {
        self.destroy_cgroup(cgroup);
        Ok(())
    }

    fn available_cpus(&self, _parent: &str) -> Vec<u32> {
        vec![0, 1]
    }

    fn cgroup_cpus(&self, _cgroup: &str, _available: &[u32]) -> Option<Vec<u32>> {
        None
    }

    fn cgroup_stats(&self, _cgroup: &str) -> Result<Stats, ApiError> {
        Ok(Stats::default())
    }

    fn lxcfs(&self) -> Option<PathBuf> {
        None
    }

    fn snapshot_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.api_step("snapshot_dataset")?;
        let mut st = self.state();
        if !st.datasets.contains(name) {
            return Err(ApiError::internal(format!("snapshot dataset: no dataset {name}")));
        }
        if st.snapshots.get(name).is_some_and(|l| l.iter().any(|s| s.name == snap)) {
            return Err(ApiError::internal(format!("snapshot dataset: {name}@{snap} exists")));
        }
        st.next_order += 1;
        let snapshot = FakeSnapshot {
            name: snap.to_string(),
            order: st.next_order,
            uuid: fake_uuid(),
            received_from: None,
            created: None,
            content: st.contents.get(name).copied().unwrap_or_default(),
            files: st.files.get(name).cloned().unwrap_or_default(),
        };
        st.snapshots.entry(name.to_string()).or_default().push(snapshot);
        Ok(())
    }

    fn list_snapshots(&self, name: &str) -> Result<Vec<zonevisor_pool::SnapshotInfo>, ApiError> {
        let st = self.state();
        Ok(st
            .snapshots
            .get(name)
            .into_iter()
            .flatten()
            .map(|s| zonevisor_pool::SnapshotInfo {
                name: s.name.clone(),
                created: s
                    .created
                    .unwrap_or(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + s.order)),
                order: s.order,
            })
            .collect())
    }

    fn destroy_snapshot(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.api_step("destroy_snapshot")?;
        if let Some(list) = self.state().snapshots.get_mut(name) {
            list.retain(|s| s.name != snap);
        }
        Ok(())
    }

    fn rollback_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.api_step("rollback_dataset")?;
        {
            let mut st = self.state();
            if st.rollbacks.contains_key(name) {
                return Err(ApiError::internal(format!("roll dataset back: {name}'s rollback is not finished")));
            }
            if !st.snapshots.get(name).is_some_and(|l| l.iter().any(|s| s.name == snap)) {
                return Err(ApiError::internal(format!("roll dataset back: no snapshot {name}@{snap}")));
            }
            st.rollbacks.insert(name.to_string(), FakeRollback { snapshot: snap.to_string(), committed: false });
        }
        // The commit: an error before it undoes the rollback, as the pool does.
        if let Err(e) = self.step("rollback_commit") {
            self.state().rollbacks.remove(name);
            return Err(ApiError::internal(e));
        }
        {
            let mut st = self.state();
            let target = st.snapshots[name].iter().find(|s| s.name == snap).cloned().expect("checked above");
            st.contents.insert(name.to_string(), target.content);
            st.files.insert(name.to_string(), target.files);
            if let Some(r) = st.rollbacks.get_mut(name) {
                r.committed = true;
            }
        }
        // Destroying the newer snapshots: an error is left to end_rollback.
        if self.step("rollback_cleanup").is_ok() {
            self.destroy_newer(name);
        }
        Ok(())
    }

    fn end_rollback(&self, name: &str) -> Result<(), ApiError> {
        self.api_step("end_rollback")?;
        let committed = self.state().rollbacks.get(name).map(|r| r.committed);
        if committed == Some(true) {
            self.destroy_newer(name);
        }
        self.state().rollbacks.remove(name);
        Ok(())
    }

    fn pending_rollbacks(&self) -> Result<Vec<zonevisor_pool::PendingRollback>, ApiError> {
        Ok(self
            .state()
            .rollbacks
            .iter()
            .map(|(d, r)| zonevisor_pool::PendingRollback {
                dataset: d.clone(),
                snapshot: r.snapshot.clone(),
                committed: r.committed,
            })
            .collect())
    }

    fn resume_rollback(&self, name: &str) -> Result<zonevisor_pool::RollbackOutcome, ApiError> {
        self.api_step("resume_rollback")?;
        let committed = self.state().rollbacks.get(name).map(|r| r.committed);
        match committed {
            None => Err(ApiError::internal(format!("resume rollback: none of {name}"))),
            Some(true) => {
                self.destroy_newer(name);
                Ok(zonevisor_pool::RollbackOutcome::Finished)
            }
            Some(false) => {
                self.state().rollbacks.remove(name);
                Ok(zonevisor_pool::RollbackOutcome::Undone)
            }
        }
    }

    fn write_dataset_file(&self, name: &str, file: &str, bytes: &[u8]) -> Result<(), ApiError> {
        self.api_step("write_dataset_file")?;
        let mut st = self.state();
        if !st.datasets.contains(name) {
            return Err(ApiError::internal(format!("write {file}: no dataset {name}")));
        }
        st.files.entry(name.to_string()).or_default().insert(file.to_string(), bytes.to_vec());
        Ok(())
    }

    fn send_snapshot(
        &self,
        name: &str,
        snap: &str,
        parent: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ApiError> {
        self.api_step("send_snapshot")?;
        let s =
            self.find_snapshot(name, snap).ok_or_else(|| ApiError::internal(format!("no snapshot {name}@{snap}")))?;
        let parent = match parent {
            Some(p) => Some(self.snapshot_identity(name, p)?.sent_as),
            None => None,
        };
        let uuid = s.received_from.clone().unwrap_or(s.uuid.clone());
        let stream = FakeStream { snapshot: s.name, uuid, parent, content: s.content, files: s.files };
        let bytes = serde_json::to_vec(&stream).unwrap_or_default();
        // In two pieces, as a pipe hands a stream over.
        let (a, b) = bytes.split_at(bytes.len() / 2);
        out(a).and_then(|()| out(b)).map_err(|e| ApiError::internal(format!("send a snapshot: {e}")))?;
        Ok(bytes.len() as u64)
    }

    fn begin_receive(&self, name: &str) -> Result<(), ApiError> {
        self.api_step("begin_receive")?;
        self.state().staged.insert(name.to_string(), Vec::new());
        Ok(())
    }

    fn receive_section(
        &self,
        name: &str,
        snap: &str,
        parent: Option<&str>,
    ) -> Result<Box<dyn super::host::Section>, ApiError> {
        self.api_step("receive_section")?;
        let parent = match parent {
            Some(p) => Some(self.snapshot_identity(name, p)?.known_as),
            None => None,
        };
        Ok(Box::new(FakeSection {
            host: self.clone(),
            dataset: name.to_string(),
            snapshot: snap.to_string(),
            parent,
            bytes: Vec::new(),
        }))
    }

    fn commit_receive(&self, name: &str, moves: &[zonevisor_pool::Received]) -> Result<(), ApiError> {
        self.api_step("commit_receive")?;
        let mut st = self.state();
        let staged = st.staged.remove(name).unwrap_or_default();
        let mut last = None;
        for m in moves {
            let mut s = staged
                .iter()
                .find(|s| s.name == m.staged)
                .cloned()
                .ok_or_else(|| ApiError::internal(format!("commit a receive: nothing staged as {}", m.staged)))?;
            s.name = m.snapshot.clone();
            s.created = m.created;
            last = Some(s.clone());
            st.snapshots.entry(name.to_string()).or_default().push(s);
        }
        if !st.datasets.contains(name) {
            let last = last.ok_or_else(|| ApiError::internal("commit a receive: nothing received"))?;
            st.datasets.insert(name.to_string());
            st.contents.insert(name.to_string(), last.content);
            st.files.insert(name.to_string(), last.files);
        }
        Ok(())
    }

    fn abandon_receive(&self, name: &str) -> Result<(), ApiError> {
        self.api_step("abandon_receive")?;
        self.state().staged.remove(name);
        Ok(())
    }

    fn pending_receives(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.state().staged.keys().cloned().collect())
    }

    fn read_dataset_file(&self, name: &str, snapshot: Option<&str>, file: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.api_step("read_dataset_file")?;
        let st = self.state();
        let files = match snapshot {
            Some(snap) => st.snapshots.get(name).and_then(|l| l.iter().find(|s| s.name == snap)).map(|s| &s.files),
            None => st.files.get(name),
        };
        Ok(files.and_then(|f| f.get(file)).cloned())
    }
}

/// A fake btrfs UUID, unique among the fake hosts of a test process.
fn fake_uuid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("fake-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

/// What a fake send stream holds: a snapshot as JSON.
#[derive(serde::Serialize, serde::Deserialize)]
struct FakeStream {
    snapshot: String,
    uuid: String,
    parent: Option<String>,
    content: u64,
    files: BTreeMap<String, Vec<u8>>,
}

/// A fake section: collects the stream and stages it when finished.
struct FakeSection {
    host: FakeHost,
    dataset: String,
    snapshot: String,
    /// The identities the named parent is known by.
    parent: Option<Vec<String>>,
    bytes: Vec<u8>,
}

impl super::host::Section for FakeSection {
    fn write(&mut self, data: &[u8]) -> Result<(), ApiError> {
        self.host.api_step("section_write")?;
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, ApiError> {
        self.host.api_step("section_finish")?;
        let s: FakeStream = serde_json::from_slice(&self.bytes)
            .map_err(|e| ApiError::invalid(format!("receive a stream: not a (fake) btrfs stream: {e}")))?;
        if s.snapshot != self.snapshot {
            return Err(ApiError::invalid(format!("receive a stream: it makes {}, not {}", s.snapshot, self.snapshot)));
        }
        match (&self.parent, &s.parent) {
            (None, None) => {}
            (Some(known), Some(p)) if known.contains(p) => {}
            _ => return Err(ApiError::invalid("receive a stream: not from the parent named")),
        }
        let mut st = self.host.state();
        st.next_order += 1;
        let order = st.next_order;
        let staged = FakeSnapshot {
            name: s.snapshot,
            order,
            uuid: fake_uuid(),
            received_from: Some(s.uuid),
            created: None,
            content: s.content,
            files: s.files,
        };
        st.staged.entry(self.dataset.clone()).or_default().push(staged);
        Ok(self.bytes.len() as u64)
    }
}

impl FakeHost {
    /// How snapshot `snap` of `name` is known to send and receive.
    fn snapshot_identity(&self, name: &str, snap: &str) -> Result<zonevisor_pool::SnapshotIdentity, ApiError> {
        let s =
            self.find_snapshot(name, snap).ok_or_else(|| ApiError::internal(format!("no snapshot {name}@{snap}")))?;
        let mut known_as = vec![s.uuid.clone()];
        known_as.extend(s.received_from.clone());
        Ok(zonevisor_pool::SnapshotIdentity { sent_as: s.received_from.unwrap_or(s.uuid), known_as })
    }

    /// The snapshot `snap` of `name`, staged or committed.
    fn find_snapshot(&self, name: &str, snap: &str) -> Option<FakeSnapshot> {
        let st = self.state();
        let staged = st.staged.get(name).and_then(|l| l.iter().find(|s| s.name == snap));
        staged.or_else(|| st.snapshots.get(name).and_then(|l| l.iter().find(|s| s.name == snap))).cloned()
    }

    /// Destroys the snapshots of `name` newer than its rollback's.
    fn destroy_newer(&self, name: &str) {
        let mut st = self.state();
        let Some(snap) = st.rollbacks.get(name).map(|r| r.snapshot.clone()) else { return };
        if let Some(list) = st.snapshots.get_mut(name) {
            if let Some(order) = list.iter().find(|s| s.name == snap).map(|s| s.order) {
                list.retain(|s| s.order <= order);
            }
        }
    }
}
