//! The host facilities the lifecycle uses, behind one narrow trait.
//!
//! Everything the lifecycle does to the kernel goes through [`Host`]:
//! datasets and quotas in the pool, starting a monitor, asking a monitor
//! to stop, reboot or signal its guest, reading what a monitor left, and
//! removing cgroups. [`RealHost`] does it (the pool crate, the zone
//! crate's monitor client and cgroups); the lifecycle's unit tests use a
//! fake (`fake.rs`) that keeps the same state in memory and can fail any
//! step, so that every step's failure and every crash is tested without
//! root.
//!
//! Errors are [`ApiError`]s that already name the step.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zonevisor_api::ApiError;
use zonevisor_pool::{PendingRollback, Pool, PoolError, Received, RollbackOutcome, SnapshotInfo};
use zonevisor_zone::cgroup::Stats;
use zonevisor_zone::control::{ControlError, MonitorClient, MonitorStatus};
use zonevisor_zone::{ExitRecord, Launched, Limits, QemuSpec, ZoneSpec};

use crate::images::step_error;

/// What a monitor is started with.
#[derive(Clone, Debug)]
pub(crate) enum Launch {
    /// A zone.
    Zone(Box<ZoneSpec>),
    /// A hardware VM.
    Qemu(Box<QemuSpec>),
}

impl Launch {
    /// The monitor's run directory and the instance's cgroup.
    #[cfg(test)]
    pub(crate) fn run_dir_and_cgroup(&self) -> (&Path, &str) {
        match self {
            Launch::Zone(z) => (&z.run_dir, &z.cgroup),
            Launch::Qemu(q) => (&q.run_dir, &q.cgroup),
        }
    }
}

/// The host, as the lifecycle sees it.
pub(crate) trait Host: Send + Sync {
    /// Makes dataset `name` a writable clone of image dataset `image`.
    fn clone_dataset(&self, image: &str, name: &str) -> Result<(), ApiError>;
    /// Makes an empty dataset `name` (a VM's, for its volumes).
    fn create_dataset(&self, name: &str) -> Result<(), ApiError>;
    /// Makes a sparse volume `file` of `bytes` in dataset `dataset`.
    fn create_volume(&self, dataset: &str, file: &str, bytes: u64) -> Result<(), ApiError>;
    /// Makes volume `file` in `dataset` a copy-on-write clone of `source`
    /// (an image's volume), grown to `bytes`.
    fn clone_volume(&self, source: &Path, dataset: &str, file: &str, bytes: u64) -> Result<(), ApiError>;
    /// Resizes volume `file` of `dataset` to `bytes` (shrinking only when
    /// `shrink`); returns the size before.
    fn resize_volume(&self, dataset: &str, file: &str, bytes: u64, shrink: bool) -> Result<u64, ApiError>;
    /// Removes volume `file` of `dataset`.
    fn destroy_volume(&self, dataset: &str, file: &str) -> Result<(), ApiError>;
    /// Copies the host file `source` to `file` in `dataset` (a VM's own
    /// UEFI variable store).
    fn copy_into_dataset(&self, source: &Path, dataset: &str, file: &str) -> Result<(), ApiError>;
    /// Makes the regular file `path` (never a symlink) the jailed QEMU's:
    /// owned by `uid`:`gid`, mode 0600.
    fn give_to(&self, path: &Path, uid: u32, gid: u32) -> Result<(), ApiError>;
    /// Makes directory `path` and its parents (0700), owned by `owner`
    /// (uid, gid) when given, else by root.
    fn make_dir(&self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), ApiError>;
    /// Moves file `from` to `to` (root's, 0600), making `to`'s parents.
    fn move_file(&self, from: &Path, to: &Path) -> Result<(), ApiError>;
    /// Whether a dataset `name` exists.
    fn dataset_exists(&self, name: &str) -> bool;
    /// Destroys dataset `name`; with `wait`, until its space is free again.
    fn destroy_dataset(&self, name: &str, wait: bool) -> Result<(), ApiError>;
    /// Whether the pool enforces quotas.
    fn quotas(&self) -> bool;
    /// Sets (or, with `None`, clears) dataset `name`'s quota.
    fn set_quota(&self, name: &str, bytes: Option<u64>) -> Result<(), ApiError>;
    /// Whether the pool is (nearly) full: its free space is below its reserve.
    fn pool_nearly_full(&self) -> bool;

    /// Starts a monitor for `launch`; returns once the guest runs.
    fn launch(&self, launch: &Launch) -> Result<Launched, ApiError>;
    /// The status of the monitor in `run_dir`.
    fn status(&self, run_dir: &Path) -> Result<MonitorStatus, ControlError>;
    /// Asks the monitor in `run_dir` to stop its guest.
    fn stop(&self, run_dir: &Path, force: bool, timeout: Option<u64>) -> Result<ExitRecord, ControlError>;
    /// Asks the monitor in `run_dir` to reboot its guest.
    fn reboot(&self, run_dir: &Path, force: bool) -> Result<MonitorStatus, ControlError>;
    /// Sends `signal` to the guest's init (a zone) or QEMU (a VM).
    fn kill(&self, run_dir: &Path, signal: i32) -> Result<(), ControlError>;
    /// Applies new limits to the running guest's cgroup.
    fn set_limits(&self, run_dir: &Path, limits: &Limits) -> Result<(), ControlError>;
    /// Sends a QMP command to a running VM's QEMU (through its monitor).
    fn qmp(
        &self,
        run_dir: &Path,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ControlError>;
    /// Resizes a running zone's `/tmp`.
    fn set_tmpfs(&self, run_dir: &Path, bytes: u64) -> Result<(), ControlError>;
    /// Rewrites a running zone's `/etc/resolv.conf`.
    fn set_resolvers(&self, run_dir: &Path, resolvers: &[String]) -> Result<(), ControlError>;
    /// Gives a running instance's metadata service the instance as it now is.
    fn set_metadata(&self, run_dir: &Path, vm: &serde_json::Value) -> Result<(), ControlError>;
    /// The monitor in `run_dir`, if one answers.
    fn find_monitor(&self, run_dir: &Path) -> Option<MonitorStatus>;
    /// The pid of a live monitor in `run_dir`, answering or not.
    fn live_monitor_pid(&self, run_dir: &Path) -> Option<i32>;
    /// The pid the monitor in `run_dir` recorded, alive or not.
    fn recorded_monitor_pid(&self, run_dir: &Path) -> Option<i32>;
    /// The exit record a monitor left in `run_dir`.
    fn read_exit(&self, run_dir: &Path) -> Option<ExitRecord>;
    /// Removes what a dead monitor left in `run_dir` (socket, pid file).
    fn remove_stale_files(&self, run_dir: &Path);
    /// Removes `run_dir` and everything in it.
    fn remove_run_dir(&self, run_dir: &Path);
    /// A descriptor that becomes readable when process `pid` exits;
    /// `None` when it is already gone.
    fn pidfd(&self, pid: i32) -> Option<OwnedFd>;

    /// Kills what is left in `cgroup` and removes it (errors logged).
    fn destroy_cgroup(&self, cgroup: &str);
    /// [`Host::destroy_cgroup`], reporting failure.
    fn try_destroy_cgroup(&self, cgroup: &str) -> Result<(), ApiError>;
    /// The CPUs the instances' parent cgroup may use.
    fn available_cpus(&self, parent: &str) -> Vec<u32>;
    /// The CPUs `cgroup` is pinned to, if it is pinned.
    fn cgroup_cpus(&self, cgroup: &str, available: &[u32]) -> Option<Vec<u32>>;
    /// `cgroup`'s live usage.
    fn cgroup_stats(&self, cgroup: &str) -> Result<Stats, ApiError>;
    /// Where the daemon's lxcfs serves (started if it is not), for zones.
    fn lxcfs(&self) -> Option<PathBuf>;

    /// Takes snapshot `snap` of dataset `name` (read-only, O(1), counted
    /// against its quota).
    fn snapshot_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError>;
    /// The snapshots of dataset `name`, oldest first.
    fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, ApiError>;
    /// Destroys snapshot `snap` of dataset `name`.
    fn destroy_snapshot(&self, name: &str, snap: &str) -> Result<(), ApiError>;
    /// Rolls dataset `name` back to its snapshot `snap`, destroying the
    /// newer ones; a record of it stays until [`Host::end_rollback`]
    /// (`Pool::rollback`). An error leaves the dataset as it was, or
    /// rolled back with the record left for [`Host::resume_rollback`].
    fn rollback_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError>;
    /// Ends dataset `name`'s rollback: what it was is destroyed.
    fn end_rollback(&self, name: &str) -> Result<(), ApiError>;
    /// The rollbacks not ended (interrupted, or not ended yet).
    fn pending_rollbacks(&self) -> Result<Vec<PendingRollback>, ApiError>;
    /// Takes dataset `name`'s unended rollback to one end: finished (the
    /// record stays for [`Host::end_rollback`]) or undone.
    fn resume_rollback(&self, name: &str) -> Result<RollbackOutcome, ApiError>;
    /// Replaces `file` at the top of dataset `name` (never a symlink) with
    /// `bytes`: written beside it, synced, renamed over it.
    fn write_dataset_file(&self, name: &str, file: &str, bytes: &[u8]) -> Result<(), ApiError>;
    /// `file` at the top of dataset `name`, or of its snapshot `snapshot`;
    /// `None` when there is none.
    fn read_dataset_file(&self, name: &str, snapshot: Option<&str>, file: &str) -> Result<Option<Vec<u8>>, ApiError>;

    /// Sends snapshot `snap` of dataset `name` (incremental from its
    /// snapshot `parent`) as a btrfs send stream, handing it to `out` as it
    /// comes; returns its length.
    fn send_snapshot(
        &self,
        name: &str,
        snap: &str,
        parent: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ApiError>;
    /// Starts receiving into dataset `name` (a fresh, hidden staging place).
    fn begin_receive(&self, name: &str) -> Result<(), ApiError>;
    /// Receives one btrfs stream into `name`'s staging: snapshot `snap`,
    /// whole or (with `parent`) from `name`'s snapshot `parent`.
    fn receive_section(&self, name: &str, snap: &str, parent: Option<&str>) -> Result<Box<dyn Section>, ApiError>;
    /// Makes what was staged for `name` its snapshots, and the dataset a
    /// copy of the last when there is none.
    fn commit_receive(&self, name: &str, moves: &[Received]) -> Result<(), ApiError>;
    /// Destroys what a receive into `name` staged.
    fn abandon_receive(&self, name: &str) -> Result<(), ApiError>;
    /// The datasets with a receive staged.
    fn pending_receives(&self) -> Result<Vec<String>, ApiError>;
}

/// One section of a receive: the btrfs stream goes in, then it is finished.
pub(crate) trait Section: Send {
    /// The stream's next bytes.
    fn write(&mut self, data: &[u8]) -> Result<(), ApiError>;
    /// The stream ended: the section is received whole; its length.
    fn finish(self: Box<Self>) -> Result<u64, ApiError>;
}

impl Section for zonevisor_pool::SectionReceiver {
    fn write(&mut self, data: &[u8]) -> Result<(), ApiError> {
        zonevisor_pool::SectionReceiver::write(self, data).map_err(|e| receive_error("receive a stream", e))
    }

    fn finish(self: Box<Self>) -> Result<u64, ApiError> {
        zonevisor_pool::SectionReceiver::finish(*self).map_err(|e| receive_error("receive a stream", e))
    }
}

/// A receive's error: a refused stream is the request's fault.
fn receive_error(step: &str, e: PoolError) -> ApiError {
    match e {
        PoolError::BadStream(_) => ApiError::invalid(format!("{step}: {e}")),
        e => step_error(step, e),
    }
}

/// The host itself.
pub(crate) struct RealHost {
    /// The pool (shared with image management).
    pub pool: Arc<Pool>,
    /// The monitor binary.
    pub monitor_exe: PathBuf,
    /// The daemon's lxcfs.
    pub lxcfs: Arc<crate::lxcfs::Lxcfs>,
}

impl RealHost {
    fn pool_error(&self, step: &str, e: zonevisor_pool::PoolError) -> ApiError {
        crate::images::pool_error(self.pool.name(), step, e)
    }

    /// [`RealHost::pool_error`], where what the pool's backend cannot do
    /// is not supported (rather than failed).
    fn snapshot_error(&self, step: &str, e: PoolError) -> ApiError {
        match e {
            PoolError::Unsupported { .. } => ApiError::unsupported(format!("{step}: {e}")),
            e => self.pool_error(step, e),
        }
    }
}

impl Host for RealHost {
    fn clone_dataset(&self, image: &str, name: &str) -> Result<(), ApiError> {
        Pool::clone_from(&self.pool, image, name).map(drop).map_err(|e| self.pool_error("clone image", e))
    }

    fn create_dataset(&self, name: &str) -> Result<(), ApiError> {
        self.pool.create(name).map(drop).map_err(|e| self.pool_error("create dataset", e))
    }

    fn create_volume(&self, dataset: &str, file: &str, bytes: u64) -> Result<(), ApiError> {
        self.pool.create_volume(dataset, file, bytes).map(drop).map_err(|e| self.pool_error("create volume", e))
    }

    fn clone_volume(&self, source: &Path, dataset: &str, file: &str, bytes: u64) -> Result<(), ApiError> {
        self.pool.clone_volume(source, dataset, file, bytes).map(drop).map_err(|e| self.pool_error("clone volume", e))
    }

    fn resize_volume(&self, dataset: &str, file: &str, bytes: u64, shrink: bool) -> Result<u64, ApiError> {
        self.pool.resize_volume(dataset, file, bytes, shrink).map_err(|e| self.pool_error("resize volume", e))
    }

    fn destroy_volume(&self, dataset: &str, file: &str) -> Result<(), ApiError> {
        self.pool.destroy_volume(dataset, file).map_err(|e| step_error("remove volume", e))
    }

    fn copy_into_dataset(&self, source: &Path, dataset: &str, file: &str) -> Result<(), ApiError> {
        let bytes = std::fs::metadata(source).map_err(|e| step_error(&format!("read {}", source.display()), e))?.len();
        self.pool.create_volume(dataset, file, bytes).map_err(|e| self.pool_error("create volume", e))?;
        let target = self.pool.volume_path(dataset, file).map_err(|e| step_error("create volume", e))?;
        std::fs::copy(source, &target).map(drop).map_err(|e| step_error(&format!("copy {}", source.display()), e))
    }

    fn give_to(&self, path: &Path, uid: u32, gid: u32) -> Result<(), ApiError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let step = || format!("give {} to the VM's user", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| step_error(&step(), e))?;
        let meta = file.metadata().map_err(|e| step_error(&step(), e))?;
        let kind = meta.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(ApiError::invalid(format!("{}: not a regular file", path.display())));
        }
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| step_error(&step(), e))?;
        }
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| step_error(&step(), e))
    }

    fn make_dir(&self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), ApiError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let step = || format!("make {}", path.display());
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| step_error(&step(), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(|e| step_error(&step(), e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| step_error(&step(), e))?;
        }
        Ok(())
    }

    fn move_file(&self, from: &Path, to: &Path) -> Result<(), ApiError> {
        use std::os::unix::fs::PermissionsExt;
        let step = || format!("move {} to {}", from.display(), to.display());
        if let Some(parent) = to.parent() {
            self.make_dir(parent, None)?;
        }
        // Across filesystems (the run directory is not in the pool): a copy.
        std::fs::copy(from, to).map_err(|e| step_error(&step(), e))?;
        let _ = std::fs::remove_file(from);
        std::os::unix::fs::lchown(to, Some(0), Some(0)).map_err(|e| step_error(&step(), e))?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(|e| step_error(&step(), e))
    }

    fn dataset_exists(&self, name: &str) -> bool {
        self.pool.exists(name)
    }

    fn destroy_dataset(&self, name: &str, wait: bool) -> Result<(), ApiError> {
        if wait { self.pool.destroy_and_wait(name) } else { self.pool.destroy(name) }
            .map_err(|e| step_error("destroy dataset", e))
    }

    fn quotas(&self) -> bool {
        self.pool.capabilities().quota
    }

    fn set_quota(&self, name: &str, bytes: Option<u64>) -> Result<(), ApiError> {
        self.pool.set_quota(name, bytes).map_err(|e| step_error("set quota", e))
    }

    fn pool_nearly_full(&self) -> bool {
        self.pool.stats().is_ok_and(|s| s.free_bytes < s.reserved_bytes)
    }

    fn launch(&self, launch: &Launch) -> Result<Launched, ApiError> {
        let launched = match launch {
            Launch::Zone(spec) => zonevisor_zone::launch(&self.monitor_exe, spec),
            Launch::Qemu(spec) => zonevisor_zone::launch_qemu(&self.monitor_exe, spec),
        };
        launched.map_err(|e| ApiError::internal(format!("{}: {}", e.step, e.message)))
    }

    fn status(&self, run_dir: &Path) -> Result<MonitorStatus, ControlError> {
        MonitorClient::new(run_dir).status()
    }

    fn stop(&self, run_dir: &Path, force: bool, timeout: Option<u64>) -> Result<ExitRecord, ControlError> {
        MonitorClient::new(run_dir).stop(force, timeout)
    }

    fn reboot(&self, run_dir: &Path, force: bool) -> Result<MonitorStatus, ControlError> {
        MonitorClient::new(run_dir).reboot(force)
    }

    fn kill(&self, run_dir: &Path, signal: i32) -> Result<(), ControlError> {
        MonitorClient::new(run_dir).kill(signal)
    }

    fn set_limits(&self, run_dir: &Path, limits: &Limits) -> Result<(), ControlError> {
        MonitorClient::new(run_dir).set_limits(limits)
    }

    fn set_tmpfs(&self, run_dir: &Path, bytes: u64) -> Result<(), ControlError> {
        MonitorClient::new(run_dir).set_tmpfs(bytes)
    }

    fn set_resolvers(&self, run_dir: &Path, resolvers: &[String]) -> Result<(), ControlError> {
        MonitorClient::new(run_dir).set_resolvers(resolvers)
    }

    fn set_metadata(&self, run_dir: &Path, vm: &serde_json::Value) -> Result<(), ControlError> {
        MonitorClient::new(run_dir).set_metadata(vm)
    }

    fn qmp(
        &self,
        run_dir: &Path,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ControlError> {
        MonitorClient::new(run_dir).qmp(command, arguments)
    }

    fn find_monitor(&self, run_dir: &Path) -> Option<MonitorStatus> {
        zonevisor_zone::control::find_monitor(run_dir)
    }

    fn live_monitor_pid(&self, run_dir: &Path) -> Option<i32> {
        zonevisor_zone::control::live_monitor_pid(run_dir)
    }

    fn recorded_monitor_pid(&self, run_dir: &Path) -> Option<i32> {
        zonevisor_zone::control::recorded_monitor_pid(run_dir)
    }

    fn read_exit(&self, run_dir: &Path) -> Option<ExitRecord> {
        zonevisor_zone::control::read_exit(run_dir)
    }

    fn remove_stale_files(&self, run_dir: &Path) {
        zonevisor_zone::control::remove_stale_files(run_dir);
    }

    fn remove_run_dir(&self, run_dir: &Path) {
        let _ = std::fs::remove_dir_all(run_dir);
    }

    fn pidfd(&self, pid: i32) -> Option<OwnedFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: fd is a new pidfd that nothing else owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    fn destroy_cgroup(&self, cgroup: &str) {
        zonevisor_zone::cgroup::destroy(cgroup);
    }

    fn try_destroy_cgroup(&self, cgroup: &str) -> Result<(), ApiError> {
        zonevisor_zone::cgroup::try_destroy(cgroup).map_err(|e| step_error("remove cgroup", e))
    }

    fn available_cpus(&self, parent: &str) -> Vec<u32> {
        zonevisor_zone::cgroup::available_cpus(parent)
    }

    fn cgroup_cpus(&self, cgroup: &str, available: &[u32]) -> Option<Vec<u32>> {
        zonevisor_zone::cgroup::cpus(cgroup, available)
    }

    fn cgroup_stats(&self, cgroup: &str) -> Result<Stats, ApiError> {
        zonevisor_zone::cgroup::stats(cgroup).map_err(|e| step_error("read cgroup", e))
    }

    fn lxcfs(&self) -> Option<PathBuf> {
        self.lxcfs.ensure()
    }

    fn snapshot_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.pool.snapshot(name, snap).map(drop).map_err(|e| self.snapshot_error("snapshot dataset", e))
    }

    fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, ApiError> {
        self.pool.list_snapshots(name).map_err(|e| step_error("list snapshots", e))
    }

    fn destroy_snapshot(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.pool.destroy_snapshot(name, snap).map_err(|e| step_error("destroy snapshot", e))
    }

    fn rollback_dataset(&self, name: &str, snap: &str) -> Result<(), ApiError> {
        self.pool.rollback(name, snap).map_err(|e| self.snapshot_error("roll dataset back", e))
    }

    fn end_rollback(&self, name: &str) -> Result<(), ApiError> {
        self.pool.end_rollback(name).map_err(|e| step_error("end rollback", e))
    }

    fn pending_rollbacks(&self) -> Result<Vec<PendingRollback>, ApiError> {
        self.pool.pending_rollbacks().map_err(|e| step_error("list rollbacks", e))
    }

    fn resume_rollback(&self, name: &str) -> Result<RollbackOutcome, ApiError> {
        self.pool.resume_rollback(name).map_err(|e| step_error("resume rollback", e))
    }

    fn write_dataset_file(&self, name: &str, file: &str, bytes: &[u8]) -> Result<(), ApiError> {
        use std::io::Write;
        let step = || format!("write {file} in dataset {name}");
        if !self.pool.exists(name) || file.contains('/') || file.starts_with('.') {
            return Err(ApiError::internal(format!("{}: no such dataset or a bad name", step())));
        }
        let target = self.pool.dataset_path(name).join(file);
        let temp = self.pool.dataset_path(name).join(format!(".{file}.new"));
        let _ = std::fs::remove_file(&temp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| step_error(&step(), e))?;
        let written = f.write_all(bytes).and_then(|()| f.sync_all()).and_then(|()| std::fs::rename(&temp, &target));
        written.map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            step_error(&step(), e)
        })
    }

    fn send_snapshot(
        &self,
        name: &str,
        snap: &str,
        parent: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, ApiError> {
        self.pool.send_snapshot(name, snap, parent, out).map_err(|e| self.snapshot_error("send a snapshot", e))
    }

    fn begin_receive(&self, name: &str) -> Result<(), ApiError> {
        self.pool.begin_receive(name).map_err(|e| self.pool_error("begin a receive", e))
    }

    fn receive_section(&self, name: &str, snap: &str, parent: Option<&str>) -> Result<Box<dyn Section>, ApiError> {
        match self.pool.receive_section(name, snap, parent) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(receive_error("receive a stream", e)),
        }
    }

    fn commit_receive(&self, name: &str, moves: &[Received]) -> Result<(), ApiError> {
        self.pool.commit_receive(name, moves).map_err(|e| self.pool_error("commit a receive", e))
    }

    fn abandon_receive(&self, name: &str) -> Result<(), ApiError> {
        self.pool.abandon_receive(name).map_err(|e| step_error("abandon a receive", e))
    }

    fn pending_receives(&self) -> Result<Vec<String>, ApiError> {
        self.pool.pending_receives().map_err(|e| step_error("list receives", e))
    }

    fn read_dataset_file(&self, name: &str, snapshot: Option<&str>, file: &str) -> Result<Option<Vec<u8>>, ApiError> {
        use std::io::Read;
        let step = || format!("read {file} in dataset {name}{}", snapshot.map(|s| format!("@{s}")).unwrap_or_default());
        let top = match snapshot {
            Some(snap) => self.pool.snapshot_path(name, snap).map_err(|e| step_error(&step(), e))?,
            None => self.pool.dataset_path(name),
        };
        let path = top.join(file);
        let mut f =
            match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                r => r.map_err(|e| step_error(&step(), e))?,
            };
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(|e| step_error(&step(), e))?;
        Ok(Some(bytes))
    }
}
