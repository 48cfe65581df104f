//! Volumes: a hardware VM's disks, as files in a dataset.
//!
//! SmartOS keeps a VM's disks as zvols, datasets of their own
//! (`zones/<vm>-disk0`). Here a volume is a regular file in the top
//! directory of a dataset: an image's disk in the image's dataset, a VM's
//! disks in the VM's, so the VM's quota and destroy cover them.
//!
//! ```text
//! <pool>/<dataset>/<file>        mode 0600, root's; apparent size = the disk's size
//! ```
//!
//! - **Sparse.** A new volume, or a volume grown, costs nothing until the
//!   guest writes: the size is the file's length, unwritten ranges are
//!   holes. What is written is counted against the dataset's quota like
//!   any file (btrfs charges extents to the subvolume's qgroup), so a full
//!   quota fails the guest's writes with `EDQUOT`.
//! - **Clones.** [`Pool::clone_volume`] reflinks the source (`FICLONE`):
//!   on btrfs O(1) in the disk's size, sharing every extent, the clone
//!   charged only for what is written to it afterwards (simple quotas
//!   charge a shared extent to the dataset that wrote it; classic qgroups
//!   limit a dataset's exclusive bytes). The btrfs backend never falls
//!   back to copying. The dir backend reflinks where its filesystem can
//!   and otherwise copies the source's data ranges, holes kept
//!   ([`Capabilities::o1_clone`](crate::Capabilities) says which to
//!   expect; its quotas are not enforced either).
//! - **Resizing** grows a volume freely (sparse) and shrinks it only when
//!   forced: a shrink discards the disk's end ([`PoolError::Shrink`]).
//! - **Names.** A volume's name is one path component of
//!   `[A-Za-z0-9._:-]`, never starting with a dot; volumes are opened
//!   relative to their dataset's directory without following symlinks.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::host::open_dir_nofollow;
use crate::{Pool, PoolError, Result};

/// Volume names: 1–128 characters of `[A-Za-z0-9._:-]`, not starting with
/// a dot (so never `.`, `..`, a hidden file or a path).
pub fn check_volume_name(file: &str) -> Result<()> {
    let ok = !file.is_empty()
        && file.len() <= 128
        && !file.starts_with('.')
        && file.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PoolError::BadVolumeName(file.to_string()))
    }
}

/// Creates volume `name` in the dataset directory `dir` (at `path`),
/// empty, mode 0600; an existing one is [`PoolError::VolumeExists`].
fn create_file(dir: &File, name: &str, path: &Path) -> Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o600)).map(File::from).map_err(|e| match e {
        nix::errno::Errno::EEXIST => PoolError::VolumeExists(path.to_path_buf()),
        e => PoolError::io("create volume", path, e.into()),
    })
}

/// Opens a regular file without following a symlink at its last
/// component: `name` in `dir` when given, else the path itself. Anything
/// else there, or nothing, is [`PoolError::VolumeNotFound`].
fn open_regular(dir: Option<&File>, name: &Path, path: &Path, write: bool) -> Result<File> {
    let mode = if write { OFlag::O_RDWR } else { OFlag::O_RDONLY };
    let flags = mode | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let opened = match dir {
        Some(dir) => nix::fcntl::openat(dir, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    let not_found = || PoolError::VolumeNotFound(path.to_path_buf());
    let file = File::from(opened.map_err(|e| match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP | nix::errno::Errno::EISDIR => not_found(),
        e => PoolError::io("open volume", path, e.into()),
    })?);
    let md = file.metadata().map_err(|e| PoolError::io("stat volume", path, e))?;
    if !md.file_type().is_file() {
        return Err(not_found());
    }
    Ok(file)
}

/// Removes `name` from `dir`, after a failed create (best effort: the
/// error that brought us here is the one to report).
fn remove_after_failure(dir: &File, name: &str, path: &Path) {
    if let Err(e) = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        tracing::error!(volume = %path.display(), error = %e, "cannot remove a volume just made");
    }
}

/// Copies `src` into the empty `dst`: only its data ranges
/// (`SEEK_DATA`/`SEEK_HOLE`), so holes stay holes, with
/// `copy_file_range` (which shares blocks itself where the filesystem
/// can); then gives `dst` `src`'s length.
pub(crate) fn sparse_copy(src: &File, dst: &File) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    let len = i64::try_from(src.metadata()?.len()).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    let mut at = 0i64;
    while at < len {
        let start = match lseek(src.as_fd(), at, Whence::SeekData) {
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            r => r?,
        };
        let end = lseek(src.as_fd(), start, Whence::SeekHole)?.min(len);
        let (mut off_in, mut off_out) = (start, start);
        while off_in < end {
            let want = usize::try_from(end - off_in).unwrap_or(usize::MAX).min(1 << 30);
            let n = nix::fcntl::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want)?;
            if n == 0 {
                // The source shrank under us.
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the source volume shrank while copied"));
            }
        }
        at = end;
    }
    dst.set_len(len as u64)
}

impl Pool {
    /// The dataset `dataset`, opened (not following a symlink), and its path.
    fn open_dataset(&self, dataset: &str) -> Result<(File, PathBuf)> {
        let path = self.checked_path(dataset)?;
        if !self.backend.is_dataset(&path) {
            return Err(PoolError::NotFound(path));
        }
        let dir = open_dir_nofollow(&path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP) => PoolError::NotFound(path.clone()),
            _ => PoolError::io("open dataset", &path, e),
        })?;
        Ok((dir, path))
    }

    /// The path of volume `file` in dataset `dataset` (whether or not it
    /// exists); both names are checked.
    pub fn volume_path(&self, dataset: &str, file: &str) -> Result<PathBuf> {
        check_volume_name(file)?;
        Ok(self.checked_path(dataset)?.join(file))
    }

    /// Creates volume `file` in dataset `dataset`, sparse at `bytes`: it
    /// takes no space until written. Fails if it exists; a failure leaves
    /// nothing.
    pub fn create_volume(&self, dataset: &str, file: &str, bytes: u64) -> Result<PathBuf> {
        check_volume_name(file)?;
        let (dir, ds) = self.open_dataset(dataset)?;
        let path = ds.join(file);
        let volume = create_file(&dir, file, &path)?;
        if let Err(e) = volume.set_len(bytes) {
            remove_after_failure(&dir, file, &path);
            return Err(PoolError::io("size volume", &path, e));
        }
        Ok(path)
    }

    /// Creates volume `file` in dataset `dataset` as a clone of the file
    /// at `source` (an image's volume), then grows it to `bytes` where
    /// that is larger. On btrfs the clone is a reflink, O(1), charged to
    /// the dataset only as it is written; the dir backend may copy (see
    /// the module doc). `bytes` below the source's size is
    /// [`PoolError::Shrink`]. Fails if the volume exists; a failure leaves
    /// nothing.
    pub fn clone_volume(&self, source: &Path, dataset: &str, file: &str, bytes: u64) -> Result<PathBuf> {
        check_volume_name(file)?;
        let src = open_regular(None, source, source, false)?;
        let len = src.metadata().map_err(|e| PoolError::io("stat volume", source, e))?.len();
        if bytes < len {
            return Err(PoolError::Shrink { path: source.to_path_buf(), current: len, requested: bytes });
        }
        let (dir, ds) = self.open_dataset(dataset)?;
        let path = ds.join(file);
        let dst = create_file(&dir, file, &path)?;
        let cloned = self.backend.clone_file(&src, &dst, &path).and_then(|()| {
            if bytes > len {
                dst.set_len(bytes).map_err(|e| PoolError::io("grow volume", &path, e))
            } else {
                Ok(())
            }
        });
        if let Err(e) = cloned {
            drop(dst);
            remove_after_failure(&dir, file, &path);
            return Err(e);
        }
        Ok(path)
    }

    /// Sets volume `file` of dataset `dataset` to `bytes` and returns its
    /// size before. Growing is sparse (free until written); shrinking
    /// discards the disk's end and is refused ([`PoolError::Shrink`],
    /// naming both sizes) unless `force_shrink`.
    pub fn resize_volume(&self, dataset: &str, file: &str, bytes: u64, force_shrink: bool) -> Result<u64> {
        check_volume_name(file)?;
        let (dir, ds) = self.open_dataset(dataset)?;
        let path = ds.join(file);
        let volume = open_regular(Some(&dir), Path::new(file), &path, true)?;
        let current = volume.metadata().map_err(|e| PoolError::io("stat volume", &path, e))?.len();
        if bytes < current && !force_shrink {
            return Err(PoolError::Shrink { path, current, requested: bytes });
        }
        if bytes != current {
            volume.set_len(bytes).map_err(|e| PoolError::io("resize volume", &path, e))?;
        }
        Ok(current)
    }

    /// The size in bytes (the disk's size, not the space it takes) of
    /// volume `file` of dataset `dataset`.
    pub fn volume_size(&self, dataset: &str, file: &str) -> Result<u64> {
        check_volume_name(file)?;
        let (dir, ds) = self.open_dataset(dataset)?;
        let path = ds.join(file);
        let volume = open_regular(Some(&dir), Path::new(file), &path, false)?;
        Ok(volume.metadata().map_err(|e| PoolError::io("stat volume", &path, e))?.len())
    }

    /// Removes volume `file` of dataset `dataset` (a removed disk). Absent
    /// is success.
    pub fn destroy_volume(&self, dataset: &str, file: &str) -> Result<()> {
        check_volume_name(file)?;
        let (dir, ds) = self.open_dataset(dataset)?;
        let path = ds.join(file);
        match nix::unistd::unlinkat(&dir, file, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(PoolError::io("remove volume", &path, e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_are_one_plain_component() {
        for good in ["disk0", "disk.raw", "disk-1_a:b", "a", &"x".repeat(128)] {
            check_volume_name(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "/abs", "sp ace", "nul\0", "é", &"x".repeat(129)] {
            assert!(matches!(check_volume_name(bad), Err(PoolError::BadVolumeName(_))), "{bad:?}");
        }
    }

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let dir = tempfile::tempdir().unwrap();
        let src =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("s")).unwrap();
        src.set_len(64 << 20).unwrap();
        src.write_all_at(b"head", 0).unwrap();
        src.write_all_at(&[7u8; 8192], 40 << 20).unwrap();
        let dst =
            File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("d")).unwrap();
        sparse_copy(&src, &dst).unwrap();
        let md = dst.metadata().unwrap();
        assert_eq!(md.len(), 64 << 20);
        let mut buf = [0u8; 4];
        dst.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"head");
        let mut buf = vec![0u8; 8192];
        dst.read_exact_at(&mut buf, 40 << 20).unwrap();
        assert!(buf.iter().all(|&b| b == 7));
        // Where the filesystem has holes (tmpfs, ext4, btrfs, xfs do),
        // the copy takes about what the data does, not 64 MiB.
        assert!(md.blocks() * 512 < 4 << 20, "{} bytes allocated", md.blocks() * 512);
    }
}
