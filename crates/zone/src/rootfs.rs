//! Path-safe helpers for building a zone's root file system.
//!
//! A zone's files are untrusted: any path inside the zone root may be a
//! symlink planted to escape it (`/etc -> /`, `/mnt -> ../../../host`). Every
//! lookup here is `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`
//! relative to a descriptor of the zone root, so `..` and absolute symlinks
//! stop at the zone root. Mounts are attached to the resulting descriptors
//! (via `/proc/self/fd/N`, or `move_mount(2)` for bind mounts), never to a
//! path the host re-resolves.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const MOUNT_ATTR_RDONLY: u64 = 0x01;
const MOUNT_ATTR_NOSUID: u64 = 0x02;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Converts a `-1`-on-error return value.
pub(crate) fn cvt<T: Copy + PartialOrd + Default>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt(r)? as RawFd;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `p` as a relative path of plain components (`/a/./b` → `a/b`); `..` is refused.
pub(crate) fn relative(p: &Path) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: `..` is not allowed", p.display()),
                ))
            }
        }
    }
    Ok(out)
}

/// Opens a host path (trusted) as an `O_PATH` directory descriptor.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: valid C string; the returned descriptor is checked and owned.
    owned(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }.into())
}

/// `openat2(2)`: `path` opened under `dir` with `flags` (plus
/// `O_CLOEXEC`), `mode` (for `O_CREAT`) and the `RESOLVE_*` bits `resolve`.
pub(crate) fn openat2(
    dir: BorrowedFd,
    path: &CStr,
    flags: libc::c_int,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 { u64::from(mode) } else { 0 };
    how.resolve = resolve;
    // SAFETY: pointers to a live C string and an open_how of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    owned(r)
}

/// `openat2(root, rel)` resolved as if `root` were `/`, refusing magic links.
pub(crate) fn open_in(root: BorrowedFd, rel: &Path, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let rel = relative(rel)?;
    let c = cstring(if rel.as_os_str().is_empty() { b"." } else { rel.as_os_str().as_bytes() })?;
    loop {
        match openat2(root, &c, flags, mode, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS) {
            // EAGAIN: a concurrent rename raced the lookup; retry.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            r => return r,
        }
    }
}

fn split(rel: &Path) -> io::Result<(PathBuf, CString)> {
    let rel = relative(rel)?;
    let name = rel.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
    let name = cstring(name.as_bytes())?;
    Ok((rel.parent().map(Path::to_path_buf).unwrap_or_default(), name))
}

/// `mkdir -p` inside the root; returns an `O_PATH` descriptor of the directory.
pub(crate) fn mkdir_all(root: BorrowedFd, rel: &Path, mode: u32) -> io::Result<OwnedFd> {
    match open_in(root, rel, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => return r,
    }
    let (parent, name) = split(rel)?;
    let dir = mkdir_all(root, &parent, mode)?;
    // SAFETY: dir is a live descriptor, name a valid C string.
    match cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
        _ => {}
    }
    open_in(root, rel, libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// Creates `name` in `dir` exclusively, never following a symlink.
pub(crate) fn create_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: dir is a live descriptor, name a valid C string.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) }.into())
}

/// An `O_PATH` descriptor of the file at `rel`, created (with its parents) when absent.
pub(crate) fn ensure_file(root: BorrowedFd, rel: &Path) -> io::Result<OwnedFd> {
    match open_in(root, rel, libc::O_PATH, 0) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        r => return r,
    }
    let (parent, name) = split(rel)?;
    let dir = mkdir_all(root, &parent, 0o755)?;
    match create_at(dir.as_fd(), &name, 0o644) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => return Err(e),
        _ => {}
    }
    open_in(root, rel, libc::O_PATH, 0)
}

fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: fstat fills the zeroed struct we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok(st)
    }
}

/// Whether `fd` refers to a directory.
pub(crate) fn is_dir(fd: BorrowedFd) -> io::Result<bool> {
    Ok(fstat(fd)?.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// `/proc/self/fd/N`: the magic link through which `mount(2)` reaches `fd`.
pub(crate) fn proc_fd_path(fd: BorrowedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// Replaces the contents of the regular file at `rel` (creating it and its
/// parents when absent). A symlink in the last component, or anything but a
/// regular file, is refused; reopening goes through the pinned inode
/// (`/proc/self/fd/N`), so even a device node is never opened.
pub(crate) fn write_file(root: BorrowedFd, rel: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let file = match open_in(root, rel, libc::O_PATH | libc::O_NOFOLLOW, 0) {
        Ok(fd) => {
            let st = fstat(fd.as_fd())?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                let what = if st.st_mode & libc::S_IFMT == libc::S_IFLNK { "a symlink" } else { "not a regular file" };
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is {what}", rel.display())));
            }
            let p = proc_fd_path(fd.as_fd());
            // SAFETY: valid C string; the returned descriptor is checked and owned.
            owned(unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC) }.into())?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (parent, name) = split(rel)?;
            let dir = mkdir_all(root, &parent, 0o755)?;
            create_at(dir.as_fd(), &name, 0o644)?
        }
        Err(e) => return Err(e),
    };
    std::fs::File::from(file).write_all(data)
}

/// `mount(source, fd, fstype, flags, data)` onto the directory `target`.
pub(crate) fn mount_on(
    source: &CStr,
    target: BorrowedFd,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let t = proc_fd_path(target);
    let data = data.map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: all pointers are live C strings (or null data).
    cvt(unsafe { libc::mount(source.as_ptr(), t.as_ptr(), fstype.as_ptr(), flags, data) }).map(drop)
}

/// A detached copy (`open_tree(OPEN_TREE_CLONE)`) of the mount at host path `path`.
pub(crate) fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str().as_bytes())?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: valid C string; the returned descriptor is checked and owned.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) })
}

/// A detached copy of the mount at `fd` (itself a mount, e.g. a file just
/// bind-mounted in the zone), non-recursive.
pub(crate) fn clone_tree_fd(fd: BorrowedFd) -> io::Result<OwnedFd> {
    clone_tree_at(fd, false)
}

/// A detached copy (a bind) of what `fd` (e.g. an `O_PATH` descriptor)
/// names, with the mounts under it when `recursive`.
pub(crate) fn clone_tree_at(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: an empty C string and a live descriptor; the result is checked and owned.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// Makes a detached tree (not recursively) an idmapped mount with the id
/// mappings of the user namespace `userns` (its maps must be written).
pub(crate) fn set_idmap(tree: BorrowedFd, userns: BorrowedFd) -> io::Result<()> {
    let attr =
        MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    setattr(tree, &attr, 0)
}

fn setattr(tree: BorrowedFd, attr: &MountAttr, recursive: libc::c_int) -> io::Result<()> {
    // SAFETY: pointers to an empty C string and a MountAttr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | recursive) as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(r).map(drop)
}

/// Lets setuid and file capabilities count again on a detached tree (not
/// recursively): the pool is mounted `nosuid` on the host, so that nothing
/// a zone writes gains privileges there, and each zone's own copy of its
/// root gets them back, for its setuid programs (`su`, `ping`, `passwd`).
pub(crate) fn allow_setuid(tree: BorrowedFd) -> io::Result<()> {
    let attr = MountAttr { attr_set: 0, attr_clr: MOUNT_ATTR_NOSUID, propagation: 0, userns_fd: 0 };
    setattr(tree, &attr, 0)
}

/// Makes a detached tree read-only, recursively.
pub(crate) fn set_readonly(tree: BorrowedFd) -> io::Result<()> {
    set_flags(tree, true, false, false, false)
}

/// Adds the chosen options to a detached tree, recursively: read-only,
/// `nosuid`, `nodev`, `noexec` (a `lofs` filesystem's `ro`, `nosuid`,
/// `nodevice`, `noexec`).
pub(crate) fn set_flags(tree: BorrowedFd, ro: bool, nosuid: bool, nodev: bool, noexec: bool) -> io::Result<()> {
    let mut set = 0;
    for (on, flag) in [(ro, MOUNT_ATTR_RDONLY), (nosuid, MOUNT_ATTR_NOSUID), (nodev, 0x04), (noexec, 0x08)] {
        if on {
            set |= flag;
        }
    }
    if set == 0 {
        return Ok(());
    }
    let attr = MountAttr { attr_set: set, attr_clr: 0, propagation: 0, userns_fd: 0 };
    setattr(tree, &attr, libc::AT_RECURSIVE)
}

/// Attaches a detached tree onto the file or directory `target`.
pub(crate) fn attach(tree: BorrowedFd, target: BorrowedFd) -> io::Result<()> {
    // SAFETY: pointers to empty C strings; descriptors are live.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    cvt(r).map(drop)
}

/// Undoes the octal escapes of a `/proc/self/mountinfo` field (`\040` for
/// a space, `\134` for a backslash).
pub fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("zv-rootfs-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root")).unwrap();
        d
    }

    #[test]
    fn symlinks_stay_inside() {
        let d = tmp();
        let root = d.join("root");
        symlink("/", root.join("etc")).unwrap();
        symlink("../../../../../../..", root.join("up")).unwrap();
        std::fs::create_dir(d.join("outside")).unwrap();
        let fd = open_dir(&root).unwrap();
        write_file(fd.as_fd(), Path::new("/etc/hostname"), b"zone\n").unwrap();
        assert_eq!(std::fs::read(root.join("hostname")).unwrap(), b"zone\n");
        let x = mkdir_all(fd.as_fd(), Path::new("/up/outside/x"), 0o755).unwrap();
        assert!(is_dir(x.as_fd()).unwrap());
        assert!(root.join("outside/x").is_dir());
        assert!(!d.join("outside/x").exists());
        assert!(relative(Path::new("/a/../b")).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_refuses_links_and_specials() {
        let d = tmp();
        let root = d.join("root");
        std::fs::write(d.join("secret"), b"host").unwrap();
        symlink(d.join("secret"), root.join("link")).unwrap();
        let fifo = cstring(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let fd = open_dir(&root).unwrap();
        assert!(write_file(fd.as_fd(), Path::new("link"), b"x").is_err());
        assert!(write_file(fd.as_fd(), Path::new("fifo"), b"x").is_err());
        assert_eq!(std::fs::read(d.join("secret")).unwrap(), b"host");
        write_file(fd.as_fd(), Path::new("a/b/c"), b"1").unwrap();
        write_file(fd.as_fd(), Path::new("a/b/c"), b"22").unwrap();
        assert_eq!(std::fs::read(root.join("a/b/c")).unwrap(), b"22");
        let f = ensure_file(fd.as_fd(), Path::new("d/e")).unwrap();
        assert!(!is_dir(f.as_fd()).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
