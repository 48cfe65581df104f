//! Snapshots of datasets: read-only, O(1), kept where neither
//! [`Pool::list`] nor any instance sees them, counted against their
//! dataset's quota, and rolled back without ever losing the dataset.
//!
//! ```text
//! <mountpoint>/.snapshots/<dataset>/<snapshot>   read-only subvolumes (the directories root's, 0700)
//! <mountpoint>/.snapshots/<dataset>/.created     when received snapshots were first taken
//!                                                (their subvolumes were made at the receive)
//! <mountpoint>/.rollback/<dataset>@<snapshot>/   a rollback in progress (its record):
//!     new   a writable snapshot of <snapshot>, to become <dataset>
//!     old   what <dataset> was, moved aside (its presence is the commit)
//! ```
//!
//! A snapshot counts against its dataset's quota as ZFS's `quota` counts a
//! dataset's snapshots: on btrfs the dataset and its snapshots share a
//! level-1 qgroup that carries the quota (`btrfs.rs`), so blocks the
//! dataset no longer holds but a snapshot pins are still charged.
//!
//! A rollback (`zfs rollback -r`) replaces the dataset with a writable
//! snapshot of the snapshot and destroys the newer snapshots:
//!
//! ```text
//!  1. mkdir .rollback/<ds>@<snap>            the record          crash: undone
//!  2. clone_snapshot <snap> -> record/new    quota, group kept   crash: undone
//!  3. rename <ds> -> record/old              COMMIT              crash: finished
//!  4. rename record/new -> <ds>                                  crash: finished
//!  5. destroy snapshots newer than <snap>                        crash: finished
//!  -- Pool::rollback returns; the caller records what goes with the data --
//!  6. end_rollback: destroy record/old, remove the record
//! ```
//!
//! Every state a crash can leave keeps the dataset's data in one place
//! (the dataset, or `old`/`new` under the record), and
//! [`Pool::resume_rollback`] takes it to one end: before the commit the
//! rollback is undone, after it finished. The record outlives
//! [`Pool::rollback`] so that the caller (the daemon, which rolls an
//! instance's tags and metadata back with its data) can tell after a
//! crash whether the rollback happened: [`Pool::pending_rollbacks`].

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{check_name, private, Pool, PoolError, Result};

/// The directory of the pool's snapshots (hidden: not a dataset name).
pub(crate) const SNAPSHOTS_DIR: &str = ".snapshots";
/// The directory of rollbacks in progress.
pub(crate) const ROLLBACK_DIR: &str = ".rollback";

/// One snapshot of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Its name.
    pub name: String,
    /// When it was made.
    pub created: SystemTime,
    /// A number that grows with each snapshot made in the pool: the
    /// snapshots' order (two made within a clock tick still have one).
    pub order: u64,
}

/// A rollback a crash interrupted (see [`Pool::pending_rollbacks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRollback {
    /// The dataset rolled back.
    pub dataset: String,
    /// The snapshot it is rolled back to.
    pub snapshot: String,
    /// Whether it passed its commit (the dataset's old data moved aside):
    /// resumed, it finishes; otherwise it is undone.
    pub committed: bool,
}

/// How [`Pool::resume_rollback`] ended an interrupted rollback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The dataset is rolled back; its record stays until
    /// [`Pool::end_rollback`].
    Finished,
    /// The dataset is as it was before; the record is gone.
    Undone,
}

/// The file of a dataset's snapshot directory that keeps when its
/// received snapshots were taken where they came from: `<secs>.<nanos>
/// <snapshot>` lines.
const CREATED_FILE: &str = ".created";

/// Snapshot names: 1–100 characters of `[A-Za-z0-9._:%-]` (ZFS's, which
/// SmartOS's `vmadm` checks too), not starting with a dot.
pub fn check_snapshot_name(snap: &str) -> Result<()> {
    let ok = !snap.is_empty()
        && snap.len() <= 100
        && !snap.starts_with('.')
        && snap.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PoolError::BadName(snap.to_string()))
    }
}

/// Where a rollback in progress stands on disk.
struct Record {
    dir: PathBuf,
    snapshot: String,
}

impl Record {
    fn new_path(&self) -> PathBuf {
        self.dir.join("new")
    }

    fn old_path(&self) -> PathBuf {
        self.dir.join("old")
    }
}

fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PoolError::io("stat", path, e)),
    }
}

/// Makes directory `path` (root's alone) unless it exists.
fn private_dir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => private(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(PoolError::io("create directory", path, e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| PoolError::io("rename", from, e))
}

/// Removes directory `path` if it is empty (best effort).
fn remove_if_empty(path: &Path) {
    let _ = std::fs::remove_dir(path);
}

impl Pool {
    fn snapshots_dir(&self, name: &str) -> PathBuf {
        self.mountpoint.join(SNAPSHOTS_DIR).join(name)
    }

    /// The path of snapshot `snap` of dataset `name` (whether or not it
    /// exists): read-only, a copy of the dataset as it was.
    pub fn snapshot_path(&self, name: &str, snap: &str) -> Result<PathBuf> {
        check_name(name)?;
        check_snapshot_name(snap)?;
        Ok(self.snapshots_dir(name).join(snap))
    }

    /// Takes snapshot `snap` of dataset `name`: O(1), read-only, counted
    /// against the dataset's quota. Fails if it exists.
    pub fn snapshot(&self, name: &str, snap: &str) -> Result<SnapshotInfo> {
        let target = self.snapshot_path(name, snap)?;
        let path = self.dataset_path(name);
        if !self.backend.is_dataset(&path) {
            return Err(PoolError::NotFound(path));
        }
        if exists(&target)? {
            return Err(PoolError::Exists(target));
        }
        private_dir(&self.mountpoint.join(SNAPSHOTS_DIR))?;
        private_dir(&self.snapshots_dir(name))?;
        self.backend.snapshot(&path, &target).inspect_err(|_| remove_if_empty(&self.snapshots_dir(name)))?;
        self.forget_created(name, &[snap]);
        let (order, created) = self.backend.snapshot_info(&target)?;
        Ok(SnapshotInfo { name: snap.to_string(), created, order })
    }

    /// The snapshots of dataset `name`, oldest first (none where the
    /// backend cannot snapshot).
    pub fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>> {
        check_name(name)?;
        let dir = self.snapshots_dir(name);
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(|e| PoolError::io("list snapshots", &dir, e))?,
        };
        let received = self.created_times(name);
        let mut snaps = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PoolError::io("list snapshots", &dir, e))?;
            let snap = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if check_snapshot_name(&snap).is_err() || !self.backend.is_dataset(&path) {
                continue;
            }
            let (order, made) = self.backend.snapshot_info(&path)?;
            let created = received.get(&snap).copied().unwrap_or(made);
            snaps.push(SnapshotInfo { name: snap, created, order });
        }
        snaps.sort_by_key(|s| s.order);
        Ok(snaps)
    }

    /// Destroys snapshot `snap` of dataset `name`; the blocks only it held
    /// are freed in the background, starting now (no longer charged to
    /// the dataset's quota within a second or two). Absent is success.
    pub fn destroy_snapshot(&self, name: &str, snap: &str) -> Result<()> {
        let path = self.snapshot_path(name, snap)?;
        self.backend.destroy(&path)?;
        self.forget_created(name, &[snap]);
        self.backend.commit(&self.mountpoint)?;
        remove_if_empty(&self.snapshots_dir(name));
        Ok(())
    }

    /// When the received snapshots of `name` were taken where they came
    /// from (unreadable lines are skipped).
    fn created_times(&self, name: &str) -> std::collections::BTreeMap<String, SystemTime> {
        let text = std::fs::read_to_string(self.snapshots_dir(name).join(CREATED_FILE)).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let (when, snap) = l.split_once(' ')?;
                let (secs, nanos) = when.split_once('.')?;
                let t = std::time::Duration::new(secs.parse().ok()?, nanos.parse().ok()?);
                Some((snap.to_string(), std::time::UNIX_EPOCH + t))
            })
            .collect()
    }

    fn write_created(&self, name: &str, times: &std::collections::BTreeMap<String, SystemTime>) -> Result<()> {
        let dir = self.snapshots_dir(name);
        let path = dir.join(CREATED_FILE);
        if times.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PoolError::io("remove", &path, e)),
                _ => Ok(()),
            };
        }
        let mut text = String::new();
        for (snap, t) in times {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            text.push_str(&format!("{}.{:09} {snap}\n", d.as_secs(), d.subsec_nanos()));
        }
        let temp = dir.join(format!("{CREATED_FILE}.new"));
        std::fs::write(&temp, text).map_err(|e| PoolError::io("write", &temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| PoolError::io("rename", &temp, e))
    }

    /// Records when received snapshots of `name` were taken.
    pub(crate) fn record_created(&self, name: &str, times: &[(String, SystemTime)]) -> Result<()> {
        let mut all = self.created_times(name);
        all.extend(times.iter().cloned());
        self.write_created(name, &all)
    }

    /// Forgets when `snaps` of `name` were taken (destroyed, or made anew).
    fn forget_created(&self, name: &str, snaps: &[&str]) {
        let mut all = self.created_times(name);
        if snaps.iter().any(|s| all.remove(*s).is_some()) {
            if let Err(e) = self.write_created(name, &all) {
                tracing::warn!(dataset = name, error = %e, "cannot update when received snapshots were taken");
            }
        }
    }

    /// Destroys every snapshot of `name`, what an interrupted rollback of
    /// it left and what a receive into it staged (a dataset being
    /// destroyed takes them along).
    pub(crate) fn destroy_snapshots_of(&self, name: &str) -> Result<()> {
        self.abandon_receive(name)?;
        if let Some(record) = self.rollback_record(name)? {
            self.backend.destroy(&record.new_path())?;
            self.backend.destroy(&record.old_path())?;
            remove_if_empty(&record.dir);
        }
        for snap in self.list_snapshots(name)? {
            self.backend.destroy(&self.snapshot_path(name, &snap.name)?)?;
        }
        self.write_created(name, &Default::default())?;
        remove_if_empty(&self.snapshots_dir(name));
        Ok(())
    }

    /// The record of dataset `name`'s rollback in progress, if any.
    fn rollback_record(&self, name: &str) -> Result<Option<Record>> {
        let dir = self.mountpoint.join(ROLLBACK_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            r => r.map_err(|e| PoolError::io("list rollbacks", &dir, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| PoolError::io("list rollbacks", &dir, e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some((dataset, snap)) = file.split_once('@') {
                if dataset == name {
                    return Ok(Some(Record { dir: entry.path(), snapshot: snap.to_string() }));
                }
            }
        }
        Ok(None)
    }

    /// Rolls dataset `name` back to its snapshot `snap` (`zfs rollback
    /// -r`): the dataset becomes a writable snapshot of `snap`, keeping its
    /// quota, and the snapshots newer than `snap` are destroyed. The
    /// dataset must not be in use (its instance stopped). Crash-safe (see
    /// the module's doc); when it returns, the dataset is rolled back and
    /// a record of the rollback stays until [`Pool::end_rollback`]. An
    /// error before the commit leaves the dataset as it was.
    pub fn rollback(&self, name: &str, snap: &str) -> Result<()> {
        self.rollback_until(name, snap, u8::MAX)
    }

    /// [`Pool::rollback`] stopped after its step `steps` (1 to 5, as the
    /// module's doc numbers them), as if the process died there: for tests
    /// of crash recovery.
    #[doc(hidden)]
    pub fn rollback_interrupted(&self, name: &str, snap: &str, steps: u8) -> Result<()> {
        self.rollback_until(name, snap, steps)
    }

    fn rollback_until(&self, name: &str, snap: &str, steps: u8) -> Result<()> {
        let source = self.snapshot_path(name, snap)?;
        let live = self.dataset_path(name);
        if let Some(record) = self.rollback_record(name)? {
            return Err(PoolError::Busy {
                path: live,
                reason: format!("its rollback to {} was interrupted and is not finished", record.snapshot),
            });
        }
        if !self.backend.is_dataset(&source) {
            return Err(PoolError::NotFound(source));
        }
        if !self.backend.is_dataset(&live) {
            return Err(PoolError::NotFound(live));
        }
        let (order, _) = self.backend.snapshot_info(&source)?;
        private_dir(&self.mountpoint.join(ROLLBACK_DIR))?;
        let record =
            Record { dir: self.mountpoint.join(ROLLBACK_DIR).join(format!("{name}@{snap}")), snapshot: snap.into() };
        std::fs::create_dir(&record.dir).map_err(|e| PoolError::io("create directory", &record.dir, e))?;
        private(&record.dir)?;
        if steps < 2 {
            return Ok(());
        }
        let (new, old) = (record.new_path(), record.old_path());
        let undo = |e: PoolError| {
            if let Err(u) = self.backend.destroy(&new) {
                tracing::error!(dataset = name, error = %u, "cannot undo a rollback's copy");
            }
            remove_if_empty(&record.dir);
            e
        };
        self.backend.clone_snapshot(&live, &source, &new).map_err(undo)?;
        if steps < 3 {
            return Ok(());
        }
        rename(&live, &old).map_err(undo)?;
        if steps < 4 {
            return Ok(());
        }
        if let Err(e) = rename(&new, &live) {
            // Put the dataset back; if even that fails, the record holds
            // both and resume_rollback finishes it.
            return Err(match rename(&old, &live) {
                Ok(()) => undo(e),
                Err(back) => {
                    tracing::error!(dataset = name, error = %back, "cannot put a dataset back after a failed rollback");
                    e
                }
            });
        }
        if steps < 5 {
            return Ok(());
        }
        self.destroy_newer(name, order);
        Ok(())
    }

    /// Destroys the snapshots of `name` made after the one of `order`
    /// (errors logged: [`Pool::end_rollback`] tries again).
    fn destroy_newer(&self, name: &str, order: u64) {
        let snaps = match self.list_snapshots(name) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(dataset = name, error = %e, "cannot list the snapshots a rollback destroys");
                return;
            }
        };
        for snap in snaps.into_iter().filter(|s| s.order > order) {
            let path = self.snapshots_dir(name).join(&snap.name);
            match self.backend.destroy(&path) {
                Ok(()) => self.forget_created(name, &[&snap.name]),
                Err(e) => {
                    tracing::warn!(dataset = name, snapshot = snap.name, error = %e, "cannot destroy a snapshot newer than the rollback's")
                }
            }
        }
    }

    /// Ends dataset `name`'s rollback once its caller recorded what goes
    /// with the data: destroys what the dataset was (and any snapshot
    /// newer than the one rolled back to that is still there) and removes
    /// the record. No rollback in progress is success; an uncommitted one
    /// is undone.
    pub fn end_rollback(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let Some(record) = self.rollback_record(name)? else { return Ok(()) };
        if !exists(&record.old_path())? {
            self.resume_rollback(name)?;
            return Ok(());
        }
        if let Ok((order, _)) = self.backend.snapshot_info(&self.snapshot_path(name, &record.snapshot)?) {
            self.destroy_newer(name, order);
            if let Some(left) = self.list_snapshots(name)?.into_iter().find(|s| s.order > order) {
                return Err(PoolError::Busy {
                    path: self.snapshot_path(name, &left.name)?,
                    reason: format!("a snapshot newer than {}, which the rollback destroys", record.snapshot),
                });
            }
        }
        self.backend.destroy(&record.old_path())?;
        std::fs::remove_dir(&record.dir).map_err(|e| PoolError::io("remove directory", &record.dir, e))
    }

    /// The rollbacks a crash interrupted (or whose caller has not called
    /// [`Pool::end_rollback`] yet).
    pub fn pending_rollbacks(&self) -> Result<Vec<PendingRollback>> {
        let dir = self.mountpoint.join(ROLLBACK_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(|e| PoolError::io("list rollbacks", &dir, e))?,
        };
        let mut pending = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PoolError::io("list rollbacks", &dir, e))?;
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some((dataset, snapshot)) = file.split_once('@') else { continue };
            let committed = exists(&entry.path().join("old"))?;
            pending.push(PendingRollback { dataset: dataset.into(), snapshot: snapshot.into(), committed });
        }
        pending.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        Ok(pending)
    }

    /// Takes dataset `name`'s interrupted rollback to one end: past its
    /// commit it is finished (the dataset is the snapshot's copy, the
    /// newer snapshots are destroyed; call [`Pool::end_rollback`] once
    /// what goes with the data is recorded), before it undone. Either
    /// way the dataset is in its place again.
    pub fn resume_rollback(&self, name: &str) -> Result<RollbackOutcome> {
        check_name(name)?;
        let live = self.dataset_path(name);
        let Some(record) = self.rollback_record(name)? else {
            return Err(PoolError::NotFound(self.mountpoint.join(ROLLBACK_DIR).join(format!("{name}@*"))));
        };
        let (new, old) = (record.new_path(), record.old_path());
        if !exists(&old)? {
            self.backend.destroy(&new)?;
            std::fs::remove_dir(&record.dir).map_err(|e| PoolError::io("remove directory", &record.dir, e))?;
            return Ok(RollbackOutcome::Undone);
        }
        if !exists(&live)? {
            if exists(&new)? {
                rename(&new, &live)?;
            } else {
                // Only the old data is left (someone removed the copy):
                // the dataset goes back to what it was.
                rename(&old, &live)?;
                std::fs::remove_dir(&record.dir).map_err(|e| PoolError::io("remove directory", &record.dir, e))?;
                return Ok(RollbackOutcome::Undone);
            }
        }
        if let Ok((order, _)) = self.backend.snapshot_info(&self.snapshot_path(name, &record.snapshot)?) {
            self.destroy_newer(name, order);
        }
        Ok(RollbackOutcome::Finished)
    }
}
