//! The btrfs backend: bringing the pool's filesystem up (format a blank loop
//! file or device, attach and mount it, turn quotas on) and down, and the
//! dataset operations on subvolumes directly under the mountpoint.
//!
//! The dataset hot path (create, clone, read-only, destroy, quota, usage)
//! uses btrfs ioctls ([`crate::sys`]), never the `btrfs` command: a clone is
//! one `BTRFS_IOC_SNAP_CREATE_V2`, a volume's clone one `FICLONE`. Quotas are simple quotas where the kernel
//! has them (6.7+), otherwise classic qgroups.
//!
//! qgroups: every dataset is in the pool's `1/100` (the reserve); a
//! dataset with snapshots is also in its own level-1 group with them
//! (`1/<id>`, [`dataset_group`]), which carries its quota too, so what a
//! snapshot pins is charged to the dataset. Under simple quotas a block
//! is charged to the subvolume that wrote it for as long as anything
//! holds it, so the group also keeps charging what a rolled-back
//! dataset's old subvolume wrote while a snapshot holds it.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags};

use crate::host::{self, open_dir, open_dir_nofollow};
use crate::sys::{self, BTRFS_FIRST_FREE_OBJECTID, BTRFS_SUBVOL_RDONLY};
use crate::{Backend, Capabilities, PoolError, PoolSource, Result, Usage};

/// How the filesystem accounts space to subvolumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QuotaMode {
    /// Simple quotas: an extent is charged to the subvolume that wrote it,
    /// so a clone is charged only for what it writes (referenced = exclusive).
    Simple,
    /// Classic qgroups: a clone's quota limits its exclusive bytes, so the
    /// blocks it shares with its image do not count.
    Qgroups,
}

/// The level-1 qgroup every dataset of the pool belongs to (`1/100`): its
/// limit is what all datasets together may hold, the pool less its
/// reserve (see [`crate::Pool::keep_reserve`]).
pub(crate) const DATASETS_QGROUP: u64 = (1 << 48) | 100;

/// The level-1 qgroup of one dataset and its snapshots (`1/<id>`, the id
/// of the dataset's subvolume when its first snapshot was made; subvolume
/// ids are never reused, and are above 255, so no two datasets, and not
/// [`DATASETS_QGROUP`], share one). Its limit is the dataset's quota, so
/// what a snapshot pins counts against it, as ZFS's `quota` counts a
/// dataset's snapshots; a rollback's new subvolume joins it, so the
/// quota outlives the subvolume it was set on.
const fn dataset_group(subvol: u64) -> u64 {
    (1 << 48) | subvol
}

/// Datasets as btrfs subvolumes.
pub(crate) struct BtrfsBackend {
    quota: QuotaMode,
}

impl BtrfsBackend {
    /// Makes sure a btrfs filesystem from `source` is mounted at `mountpoint`
    /// (reusing one already there) with quotas enabled.
    pub(crate) fn open(mountpoint: &Path, source: &PoolSource) -> Result<Self> {
        let mounted = match host::is_mount_point(mountpoint) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            r => r.map_err(|e| PoolError::io("statx", mountpoint, e))?,
        };
        if mounted {
            if !host::is_btrfs(mountpoint).map_err(|e| PoolError::io("statfs", mountpoint, e))? {
                return Err(bad_fs(mountpoint, "another filesystem is mounted there"));
            }
        } else {
            match source {
                PoolSource::Mounted | PoolSource::Dir => {
                    return Err(bad_fs(mountpoint, "no btrfs filesystem is mounted there"));
                }
                PoolSource::Device(device) => {
                    format_if_blank(device)?;
                    mount(device, mountpoint)?;
                }
                PoolSource::LoopFile { path, size_bytes } => mount_loop_file(path, *size_bytes, mountpoint)?,
            }
        }
        host::set_nosuid_nodev(mountpoint).map_err(|e| PoolError::io("make nosuid,nodev", mountpoint, e))?;
        let quota = enable_quotas(mountpoint)?;
        join_datasets_qgroup(mountpoint)?;
        tracing::debug!(mountpoint = %mountpoint.display(), ?quota, "btrfs pool open");
        Ok(BtrfsBackend { quota })
    }
}

/// Creates the datasets' qgroup ([`DATASETS_QGROUP`]) unless it exists,
/// and makes every dataset a member (those made since are members from
/// their creation; these are datasets of a pool made before the group
/// existed). Starts a rescan when the kernel asks for one.
fn join_datasets_qgroup(mountpoint: &Path) -> Result<()> {
    let dir = open_dir(mountpoint).map_err(|e| PoolError::io("open", mountpoint, e))?;
    match sys::qgroup_create(&dir, true, DATASETS_QGROUP) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
            return Err(PoolError::io("create the datasets' qgroup", mountpoint, e))
        }
        _ => {}
    }
    let mut rescan = false;
    let entries = std::fs::read_dir(mountpoint).map_err(|e| PoolError::io("list datasets", mountpoint, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(subvol) = open_subvol(&path) else { continue };
        let id = sys::subvol_id(&subvol).map_err(|e| PoolError::io("read subvolume id", &path, e))?;
        let member =
            sys::search_item(&dir, sys::BTRFS_QUOTA_TREE_OBJECTID, id, sys::BTRFS_QGROUP_RELATION_KEY, DATASETS_QGROUP)
                .map_err(|e| PoolError::io("read qgroup relations", &path, e))?
                .is_some();
        if !member {
            tracing::info!(dataset = %path.display(), "joining the pool's datasets qgroup");
            rescan |= sys::qgroup_assign(&dir, true, id, DATASETS_QGROUP)
                .map_err(|e| PoolError::io("join the datasets' qgroup", &path, e))?;
        }
    }
    if rescan {
        match sys::quota_rescan(&dir) {
            Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => {
                tracing::warn!(pool = %mountpoint.display(), error = %e, "cannot start a qgroup rescan");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unmounts the btrfs filesystem at `mountpoint` (a loop device under it
/// detaches itself). Nothing mounted there is success.
pub(crate) fn unmount(mountpoint: &Path) -> Result<()> {
    match host::is_mount_point(mountpoint) {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PoolError::io("statx", mountpoint, e)),
    }
    if !host::is_btrfs(mountpoint).map_err(|e| PoolError::io("statfs", mountpoint, e))? {
        return Err(bad_fs(mountpoint, "the filesystem mounted there is not btrfs; not unmounting it"));
    }
    // Busy is often fleeting (a process leaving the pool); lazy unmounting
    // would hide a real leak, so retry a few times instead.
    let mut retries = 0;
    loop {
        match nix::mount::umount2(mountpoint, MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) if retries < 5 => {
                retries += 1;
                std::thread::sleep(Duration::from_millis(50 << retries));
            }
            Err(e) => return Err(PoolError::io("unmount", mountpoint, e.into())),
        }
    }
}

fn bad_fs(path: &Path, reason: impl Into<String>) -> PoolError {
    PoolError::BadFilesystem { path: path.to_path_buf(), reason: reason.into() }
}

fn mkfs(device: &Path) -> Result<()> {
    host::run("mkfs.btrfs", &[OsStr::new("-q"), device.as_os_str()], &[]).map(drop)
}

/// Formats `device` with btrfs unless it already holds a filesystem; one
/// that is not btrfs is an error (nothing is ever overwritten).
fn format_if_blank(device: &Path) -> Result<()> {
    match host::probe_filesystem(device)?.as_deref() {
        None => mkfs(device),
        Some("btrfs") => Ok(()),
        Some(other) => Err(bad_fs(device, format!("holds a {other} filesystem; refusing to format it"))),
    }
}

fn mount(device: &Path, mountpoint: &Path) -> Result<()> {
    std::fs::create_dir_all(mountpoint).map_err(|e| PoolError::io("create mountpoint", mountpoint, e))?;
    // Nothing in the pool gains privileges on the host (see `host::set_nosuid_nodev`).
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    nix::mount::mount(Some(device), mountpoint, Some("btrfs"), flags, None::<&str>)
        .map_err(|e| PoolError::io("mount", mountpoint, e.into()))
}

/// Creates (sparse) and formats `file` when absent, attaches it to a loop
/// device and mounts that. A file created here is removed if this fails.
fn mount_loop_file(file: &Path, size_bytes: u64, mountpoint: &Path) -> Result<()> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| PoolError::io("create directory", dir, e))?;
    }
    let created = match OpenOptions::new().write(true).create_new(true).open(file) {
        Ok(f) => {
            if let Err(e) = f.set_len(size_bytes) {
                let _ = std::fs::remove_file(file);
                return Err(PoolError::io("size", file, e));
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(PoolError::io("create", file, e)),
    };
    let result = (|| {
        if created {
            mkfs(file)?;
        } else {
            format_if_blank(file)?;
        }
        let device = host::attach_loop(file)?;
        // zfs_io_priority: the zones' I/O weights act in the loop device's scheduler.
        if let Err(e) = host::use_fair_scheduler(&device.path) {
            tracing::warn!(device = %device.path.display(), error = %e, "zfs_io_priority is not enforced: cannot use the bfq I/O scheduler");
        }
        mount(&device.path, mountpoint)
        // `device` closes here; the mount now holds the loop device, or
        // nothing does and it detaches.
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// The quota mode the filesystem at `dir` runs, if quotas are on.
fn quota_mode(dir: &File, path: &Path) -> Result<Option<QuotaMode>> {
    let status = sys::search_item(dir, sys::BTRFS_QUOTA_TREE_OBJECTID, 0, sys::BTRFS_QGROUP_STATUS_KEY, 0)
        .map_err(|e| PoolError::io("read quota status", path, e))?;
    Ok(status.map(|item| {
        let flags = sys::le_u64(&item, 16);
        if flags & sys::BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT != 0 {
            tracing::warn!(pool = %path.display(), "btrfs qgroup numbers are inconsistent until a rescan");
        }
        if flags & sys::BTRFS_QGROUP_STATUS_FLAG_SIMPLE_MODE != 0 {
            QuotaMode::Simple
        } else {
            QuotaMode::Qgroups
        }
    }))
}

/// Turns quotas on (simple quotas if the kernel has them) unless they are.
fn enable_quotas(mountpoint: &Path) -> Result<QuotaMode> {
    let dir = open_dir(mountpoint).map_err(|e| PoolError::io("open", mountpoint, e))?;
    if let Some(mode) = quota_mode(&dir, mountpoint)? {
        return Ok(mode);
    }
    if let Err(e) = sys::quota_ctl(&dir, sys::BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA) {
        tracing::info!(error = %e, "btrfs simple quotas unavailable; using qgroups");
        sys::quota_ctl(&dir, sys::BTRFS_QUOTA_CTL_ENABLE).map_err(|e| PoolError::io("enable quotas", mountpoint, e))?;
    }
    quota_mode(&dir, mountpoint)?.ok_or_else(|| bad_fs(mountpoint, "quotas did not turn on"))
}

/// Opens the subvolume at `path`; anything else there is "not found".
fn open_subvol(path: &Path) -> Result<File> {
    let not_found = || PoolError::NotFound(path.to_path_buf());
    let dir = open_dir_nofollow(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => not_found(),
        _ => PoolError::io("open dataset", path, e),
    })?;
    let md = dir.metadata().map_err(|e| PoolError::io("stat dataset", path, e))?;
    if md.ino() != BTRFS_FIRST_FREE_OBJECTID {
        return Err(not_found());
    }
    Ok(dir)
}

/// The directory holding `path`, opened, and `path`'s last component.
fn parent_and_name(path: &Path) -> Result<(File, &OsStr)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(PoolError::io("split", path, io::Error::from_raw_os_error(libc::EINVAL)));
    };
    Ok((open_dir(parent).map_err(|e| PoolError::io("open", parent, e))?, name))
}

fn created(path: &Path, op: &'static str, result: io::Result<()>) -> Result<()> {
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => PoolError::Exists(path.to_path_buf()),
        _ => PoolError::io(op, path, e),
    })
}

/// Deletes subvolume `name` in `dir` (at `path`), and any subvolumes
/// nested in it first. Absent is success.
fn delete_subvolume(dir: &File, name: &OsStr, path: &Path) -> Result<()> {
    match sys::snap_destroy(dir, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
            delete_nested(path)?;
            sys::snap_destroy(dir, name)
        }
        r => r,
    }
    .or_else(|e| if e.raw_os_error() == Some(libc::ENOENT) { Ok(()) } else { Err(e) })
    .map_err(|e| PoolError::io("delete subvolume", path, e))
}

/// Deletes the subvolumes nested anywhere inside subvolume `path`, making it
/// writable first so their entries can go. Does not cross mount points.
fn delete_nested(path: &Path) -> Result<()> {
    let subvol = open_subvol(path)?;
    let flags = sys::subvol_flags(&subvol).map_err(|e| PoolError::io("get subvolume flags", path, e))?;
    if flags & BTRFS_SUBVOL_RDONLY != 0 {
        sys::set_subvol_flags(&subvol, flags & !BTRFS_SUBVOL_RDONLY)
            .map_err(|e| PoolError::io("make writable", path, e))?;
    }
    fn walk(dir_path: &Path) -> Result<()> {
        let list_err = |e| PoolError::io("list", dir_path, e);
        for entry in std::fs::read_dir(dir_path).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if !entry.file_type().map_err(list_err)?.is_dir() {
                continue;
            }
            let child = entry.path();
            if host::is_mount_point(&child).map_err(|e| PoolError::io("statx", &child, e))? {
                continue;
            }
            if entry.metadata().map_err(list_err)?.ino() == BTRFS_FIRST_FREE_OBJECTID {
                let dir = open_dir(dir_path).map_err(list_err)?;
                delete_subvolume(&dir, &entry.file_name(), &child)?;
            } else {
                walk(&child)?;
            }
        }
        Ok(())
    }
    walk(path)
}

/// The dataset's level-1 qgroup (see [`dataset_group`]) that subvolume
/// `id` belongs to, if any.
fn group_of(fs: &File, id: u64) -> io::Result<Option<u64>> {
    quota_qgroup(fs, id).map(|q| (q != id).then_some(q))
}

/// The qgroup that carries the quota of the dataset whose subvolume is
/// `subvol` (on the file system of `fs`): its dataset's group when it has
/// snapshots (what they pin is charged there, also after a rollback),
/// else its own level-0 qgroup (`subvol`).
pub fn quota_qgroup(fs: impl std::os::fd::AsFd, subvol: u64) -> io::Result<u64> {
    let parents = sys::search_items(
        fs,
        sys::BTRFS_QUOTA_TREE_OBJECTID,
        subvol,
        sys::BTRFS_QGROUP_RELATION_KEY,
        dataset_group(0)..=dataset_group((1 << 48) - 1),
    )?;
    Ok(parents.into_iter().map(|(parent, _)| parent).find(|&p| p != DATASETS_QGROUP).unwrap_or(subvol))
}

/// The limit item of qgroup `qgroup`: (flags, max_rfer, max_excl).
fn limit_of(fs: &File, qgroup: u64) -> io::Result<(u64, u64, u64)> {
    let item = sys::search_item(fs, sys::BTRFS_QUOTA_TREE_OBJECTID, 0, sys::BTRFS_QGROUP_LIMIT_KEY, qgroup)?;
    Ok(item.map_or((0, 0, 0), |l| (sys::le_u64(&l, 0), sys::le_u64(&l, 8), sys::le_u64(&l, 16))))
}

/// Sets the limits of qgroup `qgroup` to (flags, max_rfer, max_excl) as
/// [`limit_of`] reads them: the limits not flagged are cleared.
fn set_limit(fs: &File, qgroup: u64, (flags, max_rfer, max_excl): (u64, u64, u64)) -> io::Result<()> {
    use sys::{
        BTRFS_QGROUP_LIMIT_CLEAR as CLEAR, BTRFS_QGROUP_LIMIT_MAX_EXCL as EXCL, BTRFS_QGROUP_LIMIT_MAX_RFER as RFER,
    };
    let rfer = if flags & RFER != 0 { max_rfer } else { CLEAR };
    let excl = if flags & EXCL != 0 { max_excl } else { CLEAR };
    let limit = || sys::qgroup_limit(fs, qgroup, RFER | EXCL, rfer, excl);
    match limit() {
        // A qgroup at its limit: commit the pending writes first (as set_quota).
        Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => sys::fs_sync(fs).and_then(|()| limit()),
        r => r,
    }
}

/// Rescans the quota numbers when classic qgroups say they need it (a
/// subvolume that joined a group holding blocks it shares, a snapshot in
/// two groups), and waits for it: until it is done the groups' limits do
/// not hold. Simple quotas never need one.
fn rescan_if_inconsistent(fs: &File, path: &Path) {
    let status = sys::search_item(fs, sys::BTRFS_QUOTA_TREE_OBJECTID, 0, sys::BTRFS_QGROUP_STATUS_KEY, 0);
    let inconsistent = status
        .ok()
        .flatten()
        .is_some_and(|item| sys::le_u64(&item, 16) & sys::BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT != 0);
    if !inconsistent {
        return;
    }
    match sys::quota_rescan(fs) {
        Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => {
            tracing::warn!(pool = %path.display(), error = %e, "cannot start a qgroup rescan");
            return;
        }
        _ => {}
    }
    if let Err(e) = sys::quota_rescan_wait(fs) {
        tracing::warn!(pool = %path.display(), error = %e, "waiting for a qgroup rescan");
    }
}

impl BtrfsBackend {
    /// The quota group of the dataset open as `subvol` (at `path`), made
    /// now if it has none: the dataset joins it, and its quota is put on it.
    fn ensure_group(&self, subvol: &File, path: &Path) -> Result<u64> {
        let err = |op| move |e| PoolError::io(op, path, e);
        let id = sys::subvol_id(subvol).map_err(err("read subvolume id"))?;
        if let Some(group) = group_of(subvol, id).map_err(err("read qgroup relations"))? {
            return Ok(group);
        }
        let group = dataset_group(id);
        match sys::qgroup_create(subvol, true, group) {
            Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(err("create the dataset's qgroup")(e)),
            _ => {}
        }
        // The quota first, then membership: a group joined without its
        // limit never holds a dataset past its quota.
        let limit = limit_of(subvol, id).map_err(err("read qgroup limit"))?;
        set_limit(subvol, group, limit).map_err(err("set the dataset's qgroup limit"))?;
        let rescan = sys::qgroup_assign(subvol, true, id, group).map_err(err("join the dataset's qgroup"))?;
        if rescan {
            rescan_if_inconsistent(subvol, path);
        }
        Ok(group)
    }
}

impl Backend for BtrfsBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities { backend: "btrfs", o1_clone: true, quota: true }
    }

    fn create(&self, path: &Path) -> Result<()> {
        let (dir, name) = parent_and_name(path)?;
        created(path, "create subvolume", sys::subvol_create(&dir, name, &[DATASETS_QGROUP]))
    }

    fn clone_from(&self, origin: &Path, path: &Path) -> Result<()> {
        let origin = open_subvol(origin)?;
        let (dir, name) = parent_and_name(path)?;
        created(path, "snapshot subvolume", sys::snap_create(&dir, name, &origin, false, &[DATASETS_QGROUP]))
    }

    fn clone_file(&self, src: &File, dst: &File, path: &Path) -> Result<()> {
        // Never a copy: that would take time and space in the disk's size,
        // all charged to the dataset's quota.
        sys::ficlone(dst, src).map_err(|e| PoolError::io("reflink (FICLONE) into", path, e))
    }

    fn destroy_and_wait(&self, path: &Path) -> Result<()> {
        let id = open_subvol(path).ok().and_then(|s| sys::subvol_id(&s).ok());
        self.destroy(path)?;
        let (Some(id), Some(parent)) = (id, path.parent()) else { return Ok(()) };
        let dir = open_dir(parent).map_err(|e| PoolError::io("open", parent, e))?;
        // Committing the deletion wakes the cleaner now rather than at the
        // next periodic commit (up to 30 s away).
        sys::fs_sync(&dir).map_err(|e| PoolError::io("sync", path, e))?;
        match sys::subvol_sync_wait(&dir, id) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
                tracing::debug!("this kernel cannot wait for a deleted subvolume; its space frees in the background");
                Ok(())
            }
            r => r.map_err(|e| PoolError::io("wait for the deleted subvolume", path, e)),
        }
    }

    fn keep_reserve(&self, mountpoint: &Path, reserve: u64) -> Result<Option<crate::Reserve>> {
        let dir = open_dir(mountpoint).map_err(|e| PoolError::io("open", mountpoint, e))?;
        let err = |e| PoolError::io("read the datasets' qgroup", mountpoint, e);
        // btrfs_qgroup_info_item: generation, rfer, ...
        let used =
            sys::search_item(&dir, sys::BTRFS_QUOTA_TREE_OBJECTID, 0, sys::BTRFS_QGROUP_INFO_KEY, DATASETS_QGROUP)
                .map_err(err)?
                .map_or(0, |info| sys::le_u64(&info, 8));
        let st = nix::sys::statvfs::statvfs(mountpoint).map_err(|e| PoolError::io("statvfs", mountpoint, e.into()))?;
        let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
        // What the datasets hold plus what is still free, less the reserve;
        // never below what they hold (then nothing more can be written).
        let limit = used.saturating_add(free).saturating_sub(reserve).max(used);
        sys::qgroup_limit(&dir, DATASETS_QGROUP, sys::BTRFS_QGROUP_LIMIT_MAX_RFER, limit, 0)
            .map_err(|e| PoolError::io("limit the datasets' qgroup", mountpoint, e))?;
        Ok(Some(crate::Reserve { reserved_bytes: reserve, datasets_bytes: used, datasets_limit_bytes: limit }))
    }

    fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()> {
        let subvol = open_subvol(path)?;
        let flags = sys::subvol_flags(&subvol).map_err(|e| PoolError::io("get subvolume flags", path, e))?;
        let new = if readonly { flags | BTRFS_SUBVOL_RDONLY } else { flags & !BTRFS_SUBVOL_RDONLY };
        if new == flags {
            return Ok(());
        }
        sys::set_subvol_flags(&subvol, new).map_err(|e| PoolError::io("set subvolume flags", path, e))
    }

    fn is_readonly(&self, path: &Path) -> Result<bool> {
        let subvol = open_subvol(path)?;
        let flags = sys::subvol_flags(&subvol).map_err(|e| PoolError::io("get subvolume flags", path, e))?;
        Ok(flags & BTRFS_SUBVOL_RDONLY != 0)
    }

    fn destroy(&self, path: &Path) -> Result<()> {
        let md = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(|e| PoolError::io("stat", path, e))?,
        };
        if !(md.is_dir() && md.ino() == BTRFS_FIRST_FREE_OBJECTID) {
            // A leftover that is not a subvolume, in a dataset's place.
            let removed = if md.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            return removed.map_err(|e| PoolError::io("remove", path, e));
        }
        let qgroup = open_subvol(path).ok().and_then(|s| sys::subvol_id(&s).ok());
        let (dir, name) = parent_and_name(path)?;
        delete_subvolume(&dir, name, path)?;
        if let Some(id) = qgroup {
            // Best effort: recent kernels drop the qgroup themselves once the
            // subvolume is cleaned up; until then it may still be busy.
            if let Err(e) = sys::qgroup_create(&dir, false, id) {
                tracing::trace!(qgroup = id, error = %e, "qgroup left for the kernel to remove");
            }
        }
        Ok(())
    }

    fn set_quota(&self, path: &Path, bytes: Option<u64>) -> Result<()> {
        use sys::{
            BTRFS_QGROUP_LIMIT_CLEAR as CLEAR, BTRFS_QGROUP_LIMIT_MAX_EXCL as EXCL, BTRFS_QGROUP_LIMIT_MAX_RFER as RFER,
        };
        let subvol = open_subvol(path)?;
        let (flags, max_rfer, max_excl) = match (bytes, self.quota) {
            (Some(b), QuotaMode::Simple) => (RFER, b, 0),
            (Some(b), QuotaMode::Qgroups) => (EXCL, 0, b),
            (None, _) => (RFER | EXCL, CLEAR, CLEAR),
        };
        let id = sys::subvol_id(&subvol).map_err(|e| PoolError::io("read subvolume id", path, e))?;
        // The ioctl's transaction is charged to the subvolume of the
        // descriptor it is made on: made on the dataset's own, it fails
        // with EDQUOT when the dataset is at its quota, which is when a
        // raised quota is wanted. So it is made on the pool's (the
        // parent's, limited by nothing), naming the dataset's qgroup.
        let parent = path.parent().ok_or_else(|| PoolError::NotFound(path.to_path_buf()))?;
        let pool = open_dir(parent).map_err(|e| PoolError::io("open the pool", parent, e))?;
        let limit = || sys::qgroup_limit(&pool, id, flags, max_rfer, max_excl);
        match limit() {
            // The subvolume predates quotas and has no qgroup yet.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                sys::qgroup_create(&subvol, true, id).and_then(|()| limit())
            }
            // A reservation still held by writes not yet committed.
            Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => sys::fs_sync(&subvol).and_then(|()| limit()),
            r => r,
        }
        .map_err(|e| PoolError::io("set qgroup limit", path, e))?;
        // A dataset with snapshots: the quota holds for it and them together.
        if let Some(group) = group_of(&subvol, id).map_err(|e| PoolError::io("read qgroup relations", path, e))? {
            let limit = limit_of(&subvol, id).map_err(|e| PoolError::io("read qgroup limit", path, e))?;
            set_limit(&pool, group, limit).map_err(|e| PoolError::io("set the dataset's qgroup limit", path, e))?;
        }
        Ok(())
    }

    fn usage(&self, path: &Path) -> Result<Usage> {
        let subvol = open_subvol(path)?;
        let err = |e| PoolError::io("read qgroup", path, e);
        let id = sys::subvol_id(&subvol).map_err(err)?;
        // With snapshots, what counts against the quota is the group's.
        let id = group_of(&subvol, id).map_err(err)?.unwrap_or(id);
        let search = |item_type| sys::search_item(&subvol, sys::BTRFS_QUOTA_TREE_OBJECTID, 0, item_type, id);
        // btrfs_qgroup_info_item: generation, rfer, rfer_cmpr, excl, excl_cmpr.
        let used_bytes = search(sys::BTRFS_QGROUP_INFO_KEY).map_err(err)?.map_or(0, |info| sys::le_u64(&info, 24));
        // btrfs_qgroup_limit_item: flags, max_rfer, max_excl, rsv_rfer, rsv_excl.
        let quota_bytes = search(sys::BTRFS_QGROUP_LIMIT_KEY).map_err(err)?.and_then(|limit| {
            let flags = sys::le_u64(&limit, 0);
            [(sys::BTRFS_QGROUP_LIMIT_MAX_RFER, 8), (sys::BTRFS_QGROUP_LIMIT_MAX_EXCL, 16)]
                .into_iter()
                .filter(|&(flag, _)| flags & flag != 0)
                .map(|(_, at)| sys::le_u64(&limit, at))
                .min()
        });
        Ok(Usage { used_bytes, quota_bytes })
    }

    fn is_dataset(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|md| md.is_dir() && md.ino() == BTRFS_FIRST_FREE_OBJECTID)
    }

    fn snapshot(&self, path: &Path, target: &Path) -> Result<()> {
        let subvol = open_subvol(path)?;
        let group = self.ensure_group(&subvol, path)?;
        let (dir, name) = parent_and_name(target)?;
        let inherit = [DATASETS_QGROUP, group];
        created(target, "snapshot subvolume", sys::snap_create(&dir, name, &subvol, true, &inherit))?;
        if self.quota == QuotaMode::Qgroups {
            rescan_if_inconsistent(&dir, target);
        }
        Ok(())
    }

    fn clone_snapshot(&self, path: &Path, snapshot: &Path, target: &Path) -> Result<()> {
        let live = open_subvol(path)?;
        let group = self.ensure_group(&live, path)?;
        let id = sys::subvol_id(&live).map_err(|e| PoolError::io("read subvolume id", path, e))?;
        let limit = limit_of(&live, id).map_err(|e| PoolError::io("read qgroup limit", path, e))?;
        let source = open_subvol(snapshot)?;
        let (dir, name) = parent_and_name(target)?;
        let inherit = [DATASETS_QGROUP, group];
        created(target, "snapshot subvolume", sys::snap_create(&dir, name, &source, false, &inherit))?;
        // The dataset's own quota too (what its statfs(2) reports in a zone).
        let clone = open_subvol(target)?;
        let new_id = sys::subvol_id(&clone).map_err(|e| PoolError::io("read subvolume id", target, e))?;
        let set = match set_limit(&clone, new_id, limit) {
            // A qgroup the kernel did not make (quotas turned on since).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                sys::qgroup_create(&clone, true, new_id).and_then(|()| set_limit(&clone, new_id, limit))
            }
            r => r,
        };
        if let Err(e) = set {
            let _ = delete_subvolume(&dir, name, target);
            return Err(PoolError::io("set qgroup limit", target, e));
        }
        if self.quota == QuotaMode::Qgroups {
            rescan_if_inconsistent(&dir, target);
        }
        Ok(())
    }

    fn subvol_uuids(&self, path: &Path) -> Result<([u8; 16], [u8; 16])> {
        let subvol = open_subvol(path)?;
        let info = sys::subvol_info(&subvol).map_err(|e| PoolError::io("read subvolume info", path, e))?;
        Ok((info.uuid, info.received_uuid))
    }

    fn join_group(&self, dataset: &Path, member: &Path) -> Result<()> {
        let live = open_subvol(dataset)?;
        let group = self.ensure_group(&live, dataset)?;
        let m = open_subvol(member)?;
        let err = |op| move |e| PoolError::io(op, member, e);
        let id = sys::subvol_id(&m).map_err(err("read subvolume id"))?;
        let mut rescan = false;
        for parent in [DATASETS_QGROUP, group] {
            let already =
                sys::search_item(&m, sys::BTRFS_QUOTA_TREE_OBJECTID, id, sys::BTRFS_QGROUP_RELATION_KEY, parent)
                    .map_err(err("read qgroup relations"))?
                    .is_some();
            if !already {
                rescan |= sys::qgroup_assign(&m, true, id, parent).map_err(err("join the dataset's qgroups"))?;
            }
        }
        if rescan {
            rescan_if_inconsistent(&m, member);
        }
        Ok(())
    }

    fn commit(&self, path: &Path) -> Result<()> {
        let dir = open_dir(path).map_err(|e| PoolError::io("open", path, e))?;
        sys::fs_sync(&dir).map_err(|e| PoolError::io("sync", path, e))
    }

    fn snapshot_info(&self, path: &Path) -> Result<(u64, std::time::SystemTime)> {
        let subvol = open_subvol(path)?;
        let info = sys::subvol_info(&subvol).map_err(|e| PoolError::io("read subvolume info", path, e))?;
        let created = std::time::UNIX_EPOCH + Duration::new(info.otime.sec, info.otime.nsec.min(999_999_999));
        Ok((info.id, created))
    }
}
