//! The dir backend, for hosts without btrfs: datasets are plain directories
//! under the mountpoint, clones are `cp -a --reflink=auto` copies, the
//! read-only flag is a marker file next to the dataset (`.<name>.readonly`;
//! dot names are never datasets), and quotas are refused. A volume's clone
//! is a reflink where the filesystem has them (XFS, btrfs), else a copy of
//! its data ranges, holes kept: time and space in what the disk holds.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{host, Backend, Capabilities, PoolError, Result, Usage};

/// Datasets as plain directories.
pub(crate) struct DirBackend;

impl DirBackend {
    /// Creates the mountpoint directory if needed.
    pub(crate) fn open(mountpoint: &Path) -> Result<Self> {
        std::fs::create_dir_all(mountpoint).map_err(|e| PoolError::io("create pool directory", mountpoint, e))?;
        Ok(DirBackend)
    }

    fn require(&self, path: &Path) -> Result<()> {
        if self.is_dataset(path) {
            Ok(())
        } else {
            Err(PoolError::NotFound(path.to_path_buf()))
        }
    }
}

/// The read-only marker of the dataset at `path`.
fn marker(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".readonly");
    path.with_file_name(name)
}

fn remove_if_present(path: &Path, result: io::Result<()>) -> Result<()> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(PoolError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Clears a marker a crash may have left behind a destroyed dataset.
fn clear_marker(path: &Path) -> Result<()> {
    let marker = marker(path);
    remove_if_present(&marker, std::fs::remove_file(&marker))
}

/// Apparent size of the files under `dir` on device `dev`, each hard-linked
/// file counted once; files vanishing meanwhile are skipped.
fn apparent_size(dir: &Path, dev: u64, seen: &mut HashSet<u64>) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let md = match entry.and_then(|e| e.metadata().map(|md| (e.path(), md))) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        };
        match md {
            (path, md) if md.is_dir() => {
                if md.dev() == dev {
                    total += match apparent_size(&path, dev, seen) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                        r => r?,
                    };
                }
            }
            (_, md) if md.nlink() > 1 && !seen.insert(md.ino()) => {}
            (_, md) => total += md.len(),
        }
    }
    Ok(total)
}

impl Backend for DirBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities { backend: "dir", o1_clone: false, quota: false }
    }

    fn create(&self, path: &Path) -> Result<()> {
        std::fs::create_dir(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PoolError::Exists(path.to_path_buf()),
            _ => PoolError::io("create dataset", path, e),
        })?;
        clear_marker(path)
    }

    fn clone_from(&self, origin: &Path, path: &Path) -> Result<()> {
        self.require(origin)?;
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(PoolError::Exists(path.to_path_buf()));
        }
        clear_marker(path)?;
        let args =
            [OsStr::new("-a"), OsStr::new("--reflink=auto"), OsStr::new("--"), origin.as_os_str(), path.as_os_str()];
        let copied = host::run("cp", &args, &[]);
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(path);
        }
        copied.map(drop)
    }

    fn clone_file(&self, src: &std::fs::File, dst: &std::fs::File, path: &Path) -> Result<()> {
        match crate::sys::ficlone(dst, src) {
            Ok(()) => Ok(()),
            // No reflinks here (ext4, tmpfs: EOPNOTSUPP or ENOTTY; EINVAL
            // for files the filesystem will not share): copy.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::EXDEV)) =>
            {
                crate::volume::sparse_copy(src, dst).map_err(|e| PoolError::io("copy volume into", path, e))
            }
            Err(e) => Err(PoolError::io("reflink (FICLONE) into", path, e)),
        }
    }

    fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()> {
        self.require(path)?;
        let marker = marker(path);
        if readonly {
            std::fs::write(&marker, b"").map_err(|e| PoolError::io("write read-only marker", &marker, e))
        } else {
            remove_if_present(&marker, std::fs::remove_file(&marker))
        }
    }

    fn is_readonly(&self, path: &Path) -> Result<bool> {
        self.require(path)?;
        Ok(std::fs::symlink_metadata(marker(path)).is_ok())
    }

    fn destroy(&self, path: &Path) -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PoolError::io("stat", path, e)),
            Ok(md) if md.is_dir() => {
                let mounts = host::mounts_under(path).map_err(|e| PoolError::io("read mounts under", path, e))?;
                if let Some(mount) = mounts.first() {
                    let reason = format!("{} is mounted inside it", mount.display());
                    return Err(PoolError::Busy { path: path.to_path_buf(), reason });
                }
                remove_if_present(path, std::fs::remove_dir_all(path))?;
            }
            Ok(_) => remove_if_present(path, std::fs::remove_file(path))?,
        }
        clear_marker(path)
    }

    fn set_quota(&self, _path: &Path, _bytes: Option<u64>) -> Result<()> {
        Err(PoolError::Unsupported { backend: "dir", what: "enforce a quota" })
    }

    fn usage(&self, path: &Path) -> Result<Usage> {
        self.require(path)?;
        let dev = std::fs::metadata(path).map_err(|e| PoolError::io("stat", path, e))?.dev();
        let used_bytes =
            apparent_size(path, dev, &mut HashSet::new()).map_err(|e| PoolError::io("measure", path, e))?;
        Ok(Usage { used_bytes, quota_bytes: None })
    }

    fn is_dataset(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|md| md.is_dir())
    }
}
