//! Resolving the host path of a `lofs` filesystem (a bind mount's source)
//! so that no zone's owner can choose what it names.
//!
//! A source is a host path, resolved with the host's privileges, so every
//! symlink on the way is a choice someone made. Zones write symlinks
//! wherever they can write: in their own datasets (owned by `0` on disk,
//! since their roots are idmapped) and in the host directories given to
//! them as `lofs` filesystems (owned by their host uids). A source that
//! followed one of those could be pointed anywhere, the host's `/`
//! included, by another zone's owner. So a source is walked one component
//! at a time from `/` (each step an `openat(O_PATH | O_NOFOLLOW)` on the
//! directory found so far, so nothing is looked up twice) and refused when:
//!
//! - a step lands inside a **protected** path (the daemon's root and the
//!   pool's mountpoint: every dataset, every zone's root, the monitors'
//!   run directories), or on a mount of the pool's filesystem wherever it
//!   is mounted (a **protected device**, from `/proc/self/mountinfo`);
//! - a symlink on the way is owned by anyone but root: the host's own
//!   symlinks (`/home -> /data/home`) are followed, a zone's are not;
//! - it takes more than 40 symlinks (`ELOOP`, as the kernel).
//!
//! `..` goes back up the directories found (never above `/`). Magic links
//! (`/proc/<pid>/root`) are read as the path they print, not followed into
//! another mount namespace. What the walk ends on is returned as an
//! `O_PATH` descriptor, which the monitor clones for the zone
//! (`open_tree`), so nothing can swap the path between the check and the
//! mount.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rootfs::{cstring, cvt};

/// The most symlinks one resolution follows (the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// What `lofs` sources may not reach: paths and the filesystems under them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protected {
    /// Host paths no source may be in (canonical: no symlinks in them).
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Filesystems (`major:minor` of their superblock, as in
    /// `/proc/self/mountinfo`) no source may be on, wherever mounted.
    #[serde(default)]
    pub devices: Vec<String>,
}

impl Protected {
    /// `paths` (each canonicalized; a path that does not exist is kept as
    /// given) and the filesystems of those among them that are mount
    /// points of a filesystem of their own (the pool's btrfs; not a
    /// directory of the host's root filesystem, which would refuse every
    /// source on it).
    pub fn of(paths: &[&Path]) -> Protected {
        let mut p = Protected::default();
        let mounts = Mounts::read();
        for path in paths {
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            if let Some(dev) = mounts.as_ref().and_then(|m| m.device_of_mount_point(&canonical)) {
                if !p.devices.contains(&dev) {
                    p.devices.push(dev);
                }
            }
            p.paths.push(canonical);
        }
        p
    }

    fn holds(&self, path: &Path) -> Option<&Path> {
        self.paths.iter().find(|p| path.starts_with(p)).map(PathBuf::as_path)
    }
}

/// Why a source was refused.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source is not an absolute path.
    #[error("{0} is not an absolute path")]
    Relative(PathBuf),
    /// It reaches into a protected path or filesystem.
    #[error("{path} reaches {reached}, inside {protected}: a lofs source may not be in the pool, an instance's dataset or the daemon's root")]
    Protected {
        /// The source as given.
        path: PathBuf,
        /// Where the walk had got to.
        reached: PathBuf,
        /// The protected path (or the pool's filesystem) it is in.
        protected: String,
    },
    /// A symlink on the way belongs to someone other than root.
    #[error("{path} goes through the symlink {link}, owned by uid {uid}: lofs sources follow only root's symlinks (it may be a zone's)")]
    ForeignSymlink {
        /// The source as given.
        path: PathBuf,
        /// The symlink.
        link: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Too many symlinks, or the walk failed.
    #[error("{path}: {err}")]
    Io {
        /// The source as given.
        path: PathBuf,
        /// What failed.
        #[source]
        err: io::Error,
    },
}

impl SourceError {
    /// Whether the source merely does not exist (yet): a create may name a
    /// directory the admin makes before the zone starts.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SourceError::Io { err, .. } if err.kind() == io::ErrorKind::NotFound)
    }
}

/// Resolves the host path `source` as the module documentation says and
/// returns an `O_PATH` descriptor of what it names, with its canonical path.
pub fn resolve(source: &Path, protected: &Protected) -> Result<(OwnedFd, PathBuf), SourceError> {
    if !source.is_absolute() {
        return Err(SourceError::Relative(source.to_path_buf()));
    }
    let io_err = |err: io::Error| SourceError::Io { path: source.to_path_buf(), err };
    let mounts = if protected.devices.is_empty() { None } else { Mounts::read() };
    let check = |path: &Path, fd: BorrowedFd| -> Result<(), SourceError> {
        let refuse = |what: String| SourceError::Protected {
            path: source.to_path_buf(),
            reached: path.to_path_buf(),
            protected: what,
        };
        if let Some(p) = protected.holds(path) {
            return Err(refuse(p.display().to_string()));
        }
        if let Some(m) = &mounts {
            let dev = m.device_of(fd).map_err(io_err)?;
            if protected.devices.contains(&dev) {
                return Err(refuse(format!("the pool's filesystem (device {dev})")));
            }
        }
        Ok(())
    };
    let root = open_path(None, OsStr::new("/")).map_err(io_err)?;
    // The directories found so far, `/` first; the last is where we are.
    let mut stack: Vec<(PathBuf, OwnedFd)> = vec![(PathBuf::from("/"), root)];
    let mut todo: VecDeque<OsString> = components(source);
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let (here, dir) = stack.last().expect("/ is never popped");
        let path = here.join(&name);
        let fd = open_path(Some(dir.as_fd()), &name).map_err(|e| io_err(with_path(e, &path)))?;
        let st = fstat(fd.as_fd()).map_err(io_err)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if st.st_uid != 0 {
                return Err(SourceError::ForeignSymlink { path: source.to_path_buf(), link: path, uid: st.st_uid });
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io_err(with_path(io::Error::from_raw_os_error(libc::ELOOP), source)));
            }
            let target = read_link(fd.as_fd()).map_err(|e| io_err(with_path(e, &path)))?;
            if target.is_absolute() {
                stack.truncate(1);
            }
            for c in components(&target).into_iter().rev() {
                todo.push_front(c);
            }
            continue;
        }
        check(&path, fd.as_fd())?;
        stack.push((path, fd));
    }
    let (path, fd) = stack.pop().expect("/ is never popped");
    check(&path, fd.as_fd())?;
    Ok((fd, path))
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// The names along `path` (`.` dropped, `..` kept).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// `openat(dir, name, O_PATH | O_NOFOLLOW)` (`dir` `None`: an absolute name).
fn open_path(dir: Option<BorrowedFd>, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cstring(name.as_bytes())?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a live C string and directory descriptor; the result is checked and owned.
    let fd = cvt(unsafe { libc::openat(dirfd, c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) })?;
    // SAFETY: openat just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat fills the zeroed struct we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok(st)
    }
}

/// The target of the symlink open (`O_PATH | O_NOFOLLOW`) as `fd`.
fn read_link(fd: BorrowedFd) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty C string names `fd` itself; the buffer is ours and its length is passed.
    let n = unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = cvt(n)? as usize;
    buf.truncate(n);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// This process's mount table: mount id → `major:minor` of its superblock,
/// and mount points.
struct Mounts {
    /// (mount id, `major:minor`, mount point)
    entries: Vec<(u64, String, PathBuf)>,
}

impl Mounts {
    fn read() -> Option<Mounts> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Some(Mounts::parse(&text))
    }

    fn parse(text: &str) -> Mounts {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let id = f.next()?.parse().ok()?;
                let dev = f.nth(1)?.to_owned();
                let point = f.nth(1)?;
                Some((id, dev, PathBuf::from(OsString::from_vec(crate::rootfs::unescape_mountinfo(point)))))
            })
            .collect();
        Mounts { entries }
    }

    /// The device of the mount whose mount point is `path`, if one is.
    fn device_of_mount_point(&self, path: &Path) -> Option<String> {
        self.entries.iter().rev().find(|(_, _, p)| p == path).map(|(_, d, _)| d.clone())
    }

    /// The device of the mount holding `fd` (statx's mount id).
    fn device_of(&self, fd: BorrowedFd) -> io::Result<String> {
        let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: an empty C string with AT_EMPTY_PATH names `fd`; stx is valid for writes.
        cvt(unsafe {
            libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_MNT_ID, stx.as_mut_ptr())
        })?;
        // SAFETY: statx succeeded (and all-zero is a valid statx anyway).
        let stx = unsafe { stx.assume_init() };
        if stx.stx_mask & libc::STATX_MNT_ID == 0 {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "this kernel's statx gives no mount id"));
        }
        let id = stx.stx_mnt_id;
        match self.entries.iter().find(|(i, _, _)| *i == id) {
            Some((_, dev, _)) => Ok(dev.clone()),
            // Mounted since we read the table: read it again.
            None => Mounts::read()
                .and_then(|m| m.entries.into_iter().find(|(i, _, _)| *i == id).map(|(_, d, _)| d))
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("mount {id} is not in the mount table"))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("zv-lofs-").tempdir().unwrap()
    }

    fn chown_link(path: &Path, uid: u32) {
        let c = cstring(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string; lchown changes the link itself.
        assert_eq!(unsafe { libc::lchown(c.as_ptr(), uid, uid) }, 0, "lchown {}", path.display());
    }

    #[test]
    fn plain_paths_and_roots_symlinks_resolve() {
        let d = tmp();
        let real = d.path().join("data/www");
        std::fs::create_dir_all(&real).unwrap();
        symlink(d.path().join("data"), d.path().join("srv")).unwrap();
        symlink("../data/www", d.path().join("data/rel")).unwrap();
        let none = Protected::default();
        let (_, p) = resolve(&d.path().join("srv/www"), &none).unwrap();
        assert_eq!(p, std::fs::canonicalize(&real).unwrap());
        let (_, p) = resolve(&d.path().join("data/rel"), &none).unwrap();
        assert_eq!(p, std::fs::canonicalize(&real).unwrap());
        let (_, p) = resolve(&d.path().join("data/./www/../www"), &none).unwrap();
        assert_eq!(p, std::fs::canonicalize(&real).unwrap());
        assert!(resolve(&d.path().join("nope"), &none).unwrap_err().is_not_found());
        assert!(matches!(resolve(Path::new("data/x"), &none), Err(SourceError::Relative(_))));
        symlink("loop", d.path().join("loop")).unwrap();
        let e = resolve(&d.path().join("loop"), &none).unwrap_err();
        assert!(e.to_string().contains("many"), "{e}");
    }

    #[test]
    fn protected_paths_are_refused_however_reached() {
        let d = tmp();
        let pool = d.path().join("pool");
        std::fs::create_dir_all(pool.join("vm/root/etc")).unwrap();
        symlink(&pool, d.path().join("to-pool")).unwrap();
        let protected = Protected::of(&[&pool]);
        for p in [pool.join("vm/root/etc"), d.path().join("to-pool/vm"), pool.join("../pool")] {
            let e = resolve(&p, &protected).unwrap_err();
            assert!(matches!(e, SourceError::Protected { .. }), "{}: {e}", p.display());
        }
        assert!(resolve(d.path(), &protected).is_ok());
    }

    #[test]
    fn symlinks_of_others_are_not_followed() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "lchown needs root (CI is set)");
            eprintln!("SKIPPED: lchown needs root");
            return;
        }
        let d = tmp();
        let shared = d.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        // What a zone's root leaves in a directory it was given.
        symlink("/", shared.join("evil")).unwrap();
        chown_link(&shared.join("evil"), 1_000_000);
        let e = resolve(&shared.join("evil/etc"), &Protected::default()).unwrap_err();
        assert!(matches!(e, SourceError::ForeignSymlink { uid: 1_000_000, .. }), "{e}");
        // The same link made by root is the host's own choice.
        chown_link(&shared.join("evil"), 0);
        let (_, p) = resolve(&shared.join("evil/etc"), &Protected::default()).unwrap();
        assert_eq!(p, Path::new("/etc"));
    }

    #[test]
    fn magic_links_are_read_not_followed() {
        // /proc/self/root prints "/": the walk goes on from the host's /.
        let (_, p) = resolve(Path::new("/proc/self/root/etc"), &Protected::default()).unwrap();
        assert_eq!(p, Path::new("/etc"));
    }

    #[test]
    fn mountinfo_devices() {
        let m = Mounts::parse(
            "22 1 0:21 / /proc rw - proc proc rw\n\
             30 1 0:44 / /var/lib/zonevisor/zones rw,nosuid,nodev - btrfs /dev/loop0 rw\n\
             31 1 0:44 /vm/root/data /srv/x rw - btrfs /dev/loop0 rw\n\
             32 1 0:50 / /a\\040b rw - tmpfs tmpfs rw\n",
        );
        assert_eq!(m.device_of_mount_point(Path::new("/var/lib/zonevisor/zones")).as_deref(), Some("0:44"));
        assert_eq!(m.device_of_mount_point(Path::new("/a b")).as_deref(), Some("0:50"));
        assert_eq!(m.device_of_mount_point(Path::new("/srv")), None);
    }
}
