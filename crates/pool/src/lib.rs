//! The pool: where every instance and image lives, copy-on-write.
//!
//! A pool is a filesystem mounted at one mountpoint (SmartOS's `/zones`),
//! holding one *dataset* per image and per instance, plus a `config`
//! directory for the daemon's database. Datasets are named by a flat name
//! (an image or instance UUID, or `<uuid>-<suffix>`).
//!
//! Backends:
//! - **btrfs** (default): each dataset is a subvolume; an image is a
//!   read-only subvolume (SmartOS's `@final`), an instance an O(1) writable
//!   snapshot of it; quotas are btrfs qgroups (simple quotas where the kernel
//!   has them). The filesystem lives on a block device, an existing btrfs
//!   mount, or a sparse loop file.
//! - **dir**: plain directories, for hosts without btrfs. Clones are copies
//!   (reflinked where the filesystem can), and quotas are not enforced:
//!   [`Capabilities`] says so and [`Pool::set_quota`] refuses.
//!
//! A dataset may also hold **volumes**, a hardware VM's disks: sparse
//! files in its top directory, cloned from an image's by reflink
//! (`volume.rs` has the layout and the rules).
//!
//! A dataset has **snapshots** on btrfs (`snapshot.rs`): read-only, O(1),
//! in a hidden directory of the pool, counted against the dataset's
//! quota, and a crash-safe rollback to any of them.

mod btrfs;
mod dir;
mod error;
mod host;
mod sendstream;
mod snapshot;
mod sys;
mod transfer;
mod volume;

use std::path::{Path, PathBuf};

pub use error::PoolError;
pub use snapshot::{check_snapshot_name, PendingRollback, RollbackOutcome, SnapshotInfo};
pub use transfer::{Received, SectionReceiver, SnapshotIdentity};
pub use volume::check_volume_name;

/// Reading a btrfs file system's trees, for what outside the pool needs to
/// know of a dataset (the zone's monitor answers `statfs(2)` with its
/// qgroup): the subvolume holding a descriptor, the qgroup that carries
/// its dataset's quota, one item of a tree, and the little-endian numbers
/// in it.
pub mod btrfs_tree {
    pub use crate::btrfs::quota_qgroup;
    pub use crate::sys::{le_u64, search_item, subvol_id};
}

/// Result of pool operations.
pub type Result<T> = std::result::Result<T, PoolError>;

/// Where a pool's filesystem comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolSource {
    /// btrfs on a sparse file, attached through a loop device. The file is
    /// created (and formatted) when absent.
    LoopFile {
        /// The backing file.
        path: PathBuf,
        /// Its apparent size when created.
        size_bytes: u64,
    },
    /// btrfs on a block device; formatted only when it holds no filesystem.
    Device(PathBuf),
    /// An existing btrfs filesystem, already mounted at the mountpoint.
    Mounted,
    /// Plain directories under the mountpoint (no O(1) clone, no quota).
    Dir,
}

/// How to open a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The pool's name as SmartOS shows it (`zones`).
    pub name: String,
    /// Where the pool is mounted.
    pub mountpoint: PathBuf,
    /// Where its filesystem comes from.
    pub source: PoolSource,
}

/// What a backend can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// `"btrfs"` or `"dir"`.
    pub backend: &'static str,
    /// Clones take constant time and share blocks with their origin.
    pub o1_clone: bool,
    /// Quotas are enforced.
    pub quota: bool,
}

/// Space used by one dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes the dataset holds that no other dataset shares, where the
    /// backend can tell; otherwise the apparent size of its files.
    pub used_bytes: u64,
    /// The quota in force, if any.
    pub quota_bytes: Option<u64>,
}

/// Size and free space of the whole pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Bytes still free for datasets: the filesystem's free space less the
    /// reserve, where the backend keeps one.
    pub free_bytes: u64,
    /// The reserve ([`Pool::keep_reserve`]); 0 where the backend keeps none.
    pub reserved_bytes: u64,
}

/// The pool's reserve, as ZFS keeps "slop space": bytes no dataset may
/// take, so that the state store (outside every dataset) can always write,
/// even when instances have filled everything they may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reserve {
    /// Bytes kept back: 1/32 of the pool, at least 128 MiB, at most 128 GiB.
    pub reserved_bytes: u64,
    /// What all datasets together hold now.
    pub datasets_bytes: u64,
    /// What they may hold: the free space less the reserve, at the last
    /// [`Pool::keep_reserve`].
    pub datasets_limit_bytes: u64,
}

/// The reserve for a pool of `size` bytes (ZFS's slop: 1/32, within
/// 128 MiB .. 128 GiB).
pub fn reserve_for(size: u64) -> u64 {
    (size / 32).clamp(128 << 20, 128 << 30)
}

/// The operations a backend provides. Every method is idempotent where its
/// doc says so, so a crash half-way is repaired by running it again.
pub(crate) trait Backend: Send + Sync {
    fn capabilities(&self) -> Capabilities;
    /// A new empty dataset at `path`; fails if it exists.
    fn create(&self, path: &Path) -> Result<()>;
    /// A writable clone of `origin` at `path`; fails if `path` exists.
    fn clone_from(&self, origin: &Path, path: &Path) -> Result<()>;
    /// Makes `dst` (a new, empty file at `path`) a copy of `src`: a
    /// reflink sharing its blocks where the backend can, O(1) where
    /// [`Capabilities::o1_clone`] says so.
    fn clone_file(&self, src: &std::fs::File, dst: &std::fs::File, path: &Path) -> Result<()>;
    /// Marks a dataset read-only or writable.
    fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()>;
    /// Whether a dataset is read-only.
    fn is_readonly(&self, path: &Path) -> Result<bool>;
    /// Removes a dataset and everything in it; absent is success.
    fn destroy(&self, path: &Path) -> Result<()>;
    /// As `destroy`, and returns only once its space is free again
    /// (btrfs cleans deleted subvolumes up in the background).
    fn destroy_and_wait(&self, path: &Path) -> Result<()> {
        self.destroy(path)
    }
    /// Limits what all datasets together may hold to the pool's free space
    /// less `reserve` bytes, and says where that stands; `None` where the
    /// backend cannot (then a full pool is full for the state store too).
    fn keep_reserve(&self, _mountpoint: &Path, _reserve: u64) -> Result<Option<Reserve>> {
        Ok(None)
    }
    /// Sets or clears the dataset's quota.
    fn set_quota(&self, path: &Path, bytes: Option<u64>) -> Result<()>;
    /// Space used by the dataset.
    fn usage(&self, path: &Path) -> Result<Usage>;
    /// Whether `path` is a dataset of this backend.
    fn is_dataset(&self, path: &Path) -> bool;
    /// A read-only snapshot of dataset `path` at `target` (a new name),
    /// counted against the dataset's quota.
    fn snapshot(&self, _path: &Path, _target: &Path) -> Result<()> {
        Err(PoolError::Unsupported { backend: self.capabilities().backend, what: "snapshot datasets" })
    }
    /// A writable snapshot of the snapshot at `snapshot`, made at `target`
    /// (a new name) to take dataset `path`'s place: counted against the
    /// same quota, with the same quota.
    fn clone_snapshot(&self, _path: &Path, _snapshot: &Path, _target: &Path) -> Result<()> {
        Err(PoolError::Unsupported { backend: self.capabilities().backend, what: "roll datasets back" })
    }
    /// Commits what was done on the filesystem of `path` and wakes its
    /// cleaner, so that the space of what was destroyed frees now rather
    /// than at the next periodic commit (btrfs: up to 30 s away).
    fn commit(&self, _path: &Path) -> Result<()> {
        Ok(())
    }
    /// The UUID of the subvolume at `path` and the UUID it was received
    /// from (zero when it was not).
    fn subvol_uuids(&self, _path: &Path) -> Result<([u8; 16], [u8; 16])> {
        Err(PoolError::Unsupported { backend: self.capabilities().backend, what: "send or receive datasets" })
    }
    /// Makes the snapshot at `member` count with dataset `dataset`: in the
    /// pool's datasets and in the dataset's quota group (a received
    /// subvolume is in neither).
    fn join_group(&self, _dataset: &Path, _member: &Path) -> Result<()> {
        Err(PoolError::Unsupported { backend: self.capabilities().backend, what: "send or receive datasets" })
    }
    /// The snapshot at `path`: a number that grows with each snapshot made
    /// in the pool (their order), and when it was made.
    fn snapshot_info(&self, _path: &Path) -> Result<(u64, std::time::SystemTime)> {
        Err(PoolError::Unsupported { backend: self.capabilities().backend, what: "snapshot datasets" })
    }
}

/// An open pool.
pub struct Pool {
    name: String,
    mountpoint: PathBuf,
    backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.name)
            .field("mountpoint", &self.mountpoint)
            .field("backend", &self.backend.capabilities().backend)
            .finish()
    }
}

/// The directory, inside every pool, that holds the daemon's database and
/// other host configuration.
pub const CONFIG_DIR: &str = "config";

impl Pool {
    /// Opens the pool, creating, formatting, attaching and mounting its
    /// filesystem as needed. Idempotent: opening an open pool is cheap.
    pub fn open(config: &PoolConfig) -> Result<Pool> {
        let backend: Box<dyn Backend> = match &config.source {
            PoolSource::Dir => Box::new(dir::DirBackend::open(&config.mountpoint)?),
            source => Box::new(btrfs::BtrfsBackend::open(&config.mountpoint, source)?),
        };
        let pool = Pool { name: config.name.clone(), mountpoint: config.mountpoint.clone(), backend };
        std::fs::create_dir_all(pool.config_dir())
            .map_err(|e| PoolError::io("create config directory", pool.config_dir(), e))?;
        // No host user but root reaches into the pool: the datasets hold
        // the zones' files, which the zones' owners control.
        for dir in [pool.mountpoint.clone(), pool.config_dir()] {
            private(&dir)?;
        }
        pool.keep_reserve()?;
        Ok(pool)
    }

    /// Limits what the datasets together may hold so that the pool keeps
    /// its reserve ([`reserve_for`] its size) for the state store, and
    /// returns where that stands; `None` where the backend cannot. The
    /// limit is set from the free space now: call it again now and then
    /// (the daemon does every 30 s), as the filesystem's metadata grows.
    pub fn keep_reserve(&self) -> Result<Option<Reserve>> {
        let size = self.raw_stats()?.size_bytes;
        self.backend.keep_reserve(&self.mountpoint, reserve_for(size))
    }

    /// Unmounts a pool opened from `config` and detaches its loop device.
    /// Absent or already unmounted is success. Instances must be stopped.
    /// A [`PoolSource::Mounted`] filesystem was mounted by someone else and
    /// is left mounted.
    pub fn unmount(config: &PoolConfig) -> Result<()> {
        match &config.source {
            PoolSource::Dir | PoolSource::Mounted => Ok(()),
            PoolSource::LoopFile { .. } | PoolSource::Device(_) => btrfs::unmount(&config.mountpoint),
        }
    }

    /// The pool's name (`zones`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the pool is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The directory for the daemon's database.
    pub fn config_dir(&self) -> PathBuf {
        self.mountpoint.join(CONFIG_DIR)
    }

    /// What this pool's backend can do.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// How `zfs_io_priority` is enforced on this pool: `Ok("bfq on
    /// /dev/loop3")`, or `Err(why not)` when the pool's block device does
    /// not use the proportional `bfq` scheduler (the weights are written to
    /// the zones' cgroups all the same, and count once an admin selects it).
    pub fn fair_io(&self) -> std::result::Result<String, String> {
        let device = match host::mount_source(&self.mountpoint) {
            Ok(Some(d)) => d,
            Ok(None) => return Err(format!("{} is not on a block device", self.mountpoint.display())),
            Err(e) => return Err(format!("cannot find the block device of {}: {e}", self.mountpoint.display())),
        };
        match host::io_scheduler(&device) {
            Ok((_, true)) => Ok(format!("bfq on {}", device.display())),
            // cgroup v2's iocost weighs the zones' io.weight on any
            // scheduler, where the host's administrator has turned it on
            // for the device (zonevisord does not: it is host-wide policy).
            Ok((_, false)) if host::iocost_enabled(&device) => Ok(format!("iocost on {}", device.display())),
            Ok((scheduler, false)) => Err(format!(
                "{} uses the {scheduler} I/O scheduler, not bfq, and cgroup v2's iocost is off for it",
                device.display()
            )),
            Err(e) => Err(format!("cannot read the I/O scheduler of {}: {e}", device.display())),
        }
    }

    /// The block device under the pool and its number (`major:minor`),
    /// where the pool is on one (the fair-I/O governor throttles zones on
    /// it where the device has no `bfq`).
    pub fn block_device(&self) -> Option<(PathBuf, String)> {
        use std::os::unix::fs::MetadataExt;
        let device = host::mount_source(&self.mountpoint).ok()??;
        let rdev = std::fs::metadata(&device).ok()?.rdev();
        Some((device, format!("{}:{}", libc::major(rdev), libc::minor(rdev))))
    }

    /// The path of dataset `name` (whether or not it exists).
    pub fn dataset_path(&self, name: &str) -> PathBuf {
        self.mountpoint.join(name)
    }

    fn checked_path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dataset_path(name))
    }

    /// Whether dataset `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        check_name(name).is_ok() && self.backend.is_dataset(&self.dataset_path(name))
    }

    /// Creates an empty dataset (its top directory root's alone), a member
    /// of the pool's datasets from its first byte (on btrfs: of the
    /// qgroup that keeps the reserve): an image's, or an instance's
    /// without an image (a VM whose disks are all new volumes).
    pub fn create(&self, name: &str) -> Result<PathBuf> {
        let path = self.checked_path(name)?;
        self.backend.create(&path)?;
        self.private_or_undo(&path)?;
        Ok(path)
    }

    /// Makes a dataset just made private; if that fails (a full pool),
    /// destroys it again: the caller made nothing.
    fn private_or_undo(&self, path: &Path) -> Result<()> {
        private(path).inspect_err(|_| {
            if let Err(e) = self.backend.destroy(path) {
                tracing::error!(dataset = %path.display(), error = %e, "cannot undo a dataset just made");
            }
        })
    }

    /// Creates `name` as a writable clone of `origin` (its top directory root's alone).
    pub fn clone_from(&self, origin: &str, name: &str) -> Result<PathBuf> {
        let origin = self.checked_path(origin)?;
        let path = self.checked_path(name)?;
        self.backend.clone_from(&origin, &path)?;
        self.private_or_undo(&path)?;
        Ok(path)
    }

    /// Marks a dataset read-only (an image's final state) or writable.
    pub fn set_readonly(&self, name: &str, readonly: bool) -> Result<()> {
        self.backend.set_readonly(&self.checked_path(name)?, readonly)
    }

    /// Whether a dataset is read-only.
    pub fn is_readonly(&self, name: &str) -> Result<bool> {
        self.backend.is_readonly(&self.checked_path(name)?)
    }

    /// Destroys a dataset and all it holds, its snapshots too. Absent is
    /// success.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let path = self.checked_path(name)?;
        self.destroy_snapshots_of(name)?;
        self.backend.destroy(&path)
    }

    /// As [`Pool::destroy`], and returns once the dataset's space is free
    /// again (a failed image install that filled the pool must not leave
    /// it full behind it).
    pub fn destroy_and_wait(&self, name: &str) -> Result<()> {
        let path = self.checked_path(name)?;
        self.destroy_snapshots_of(name)?;
        self.backend.destroy_and_wait(&path)
    }

    /// Sets (or with `None` clears) a dataset's quota in bytes.
    pub fn set_quota(&self, name: &str, bytes: Option<u64>) -> Result<()> {
        self.backend.set_quota(&self.checked_path(name)?, bytes)
    }

    /// Space used by a dataset.
    pub fn usage(&self, name: &str) -> Result<Usage> {
        self.backend.usage(&self.checked_path(name)?)
    }

    /// The names of all datasets in the pool.
    pub fn list(&self) -> Result<Vec<String>> {
        let rd =
            std::fs::read_dir(&self.mountpoint).map_err(|e| PoolError::io("list datasets", &self.mountpoint, e))?;
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| PoolError::io("list datasets", &self.mountpoint, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != CONFIG_DIR && check_name(&name).is_ok() && self.backend.is_dataset(&entry.path()) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Size and free space of the pool's filesystem, less the reserve.
    pub fn stats(&self) -> Result<PoolStats> {
        let mut st = self.raw_stats()?;
        if self.capabilities().quota {
            st.reserved_bytes = reserve_for(st.size_bytes);
            st.free_bytes = st.free_bytes.saturating_sub(st.reserved_bytes);
        }
        Ok(st)
    }

    fn raw_stats(&self) -> Result<PoolStats> {
        let st = nix::sys::statvfs::statvfs(&self.mountpoint)
            .map_err(|e| PoolError::io("statvfs", &self.mountpoint, e.into()))?;
        let frsize = st.fragment_size() as u64;
        Ok(PoolStats {
            size_bytes: (st.blocks() as u64).saturating_mul(frsize),
            free_bytes: (st.blocks_available() as u64).saturating_mul(frsize),
            reserved_bytes: 0,
        })
    }
}

/// Makes the directory at `path` root's alone (mode 0700).
fn private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PoolError::io("make private (0700)", path, e))
}

/// Dataset names: 1–128 characters of `[A-Za-z0-9._:-]`, not starting with
/// a dot, and not the config directory.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name != CONFIG_DIR
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PoolError::BadName(name.to_string()))
    }
}
