//! Resizing a running zone's `/tmp` (`vmadm update tmpfs=N`), as SmartOS
//! remounts it with `size=`.
//!
//! ```text
//!  /proc/<init>/root ── openat2 "tmp" (RESOLVE_IN_ROOT, no symlinks) ── not there ──> refused
//!    │ a tmpfs, the root of its mount ─────────────────────── otherwise ──> refused
//!    │ what it holds ≤ the new size ───────────────────────── otherwise ──> refused (names both)
//!    │ fspick(fd) + fsconfig("size", N) + FSCONFIG_CMD_RECONFIGURE
//!    └ only the superblock's size changes: the mount keeps its flags
//! ```
//!
//! The descriptor is the zone's own mount, reached through init's root in
//! the zone's mount namespace and resolved inside it, so nothing the zone
//! put at `/tmp` (a symlink) sends the monitor anywhere else; a zone that
//! replaced its `/tmp` (with `limit_priv=sys_mount`) gets its own tmpfs
//! resized, which is its business. The kernel checks the size again
//! (`Too small a size for current use`) for what is written meanwhile.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::rootfs::{self, cvt};

const TMPFS_MAGIC: libc::__fsword_t = 0x0102_1994;
const FSPICK_CLOEXEC: libc::c_uint = 0x01;
const FSPICK_NO_AUTOMOUNT: libc::c_uint = 0x04;
const FSPICK_EMPTY_PATH: libc::c_uint = 0x08;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_RECONFIGURE: libc::c_uint = 7;
const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;

/// Why `/tmp` was not resized.
#[derive(Debug)]
pub(super) enum ResizeError {
    /// The zone's `/tmp` holds more than the new size.
    TooSmall {
        /// Bytes in use.
        used: u64,
        /// The size asked for.
        wanted: u64,
    },
    /// No tmpfs is mounted on the zone's `/tmp`.
    NotTmpfs(String),
    /// The kernel refused.
    Io(io::Error),
}

impl fmt::Display for ResizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: u64 = 1 << 20;
        match self {
            ResizeError::TooSmall { used, wanted } => write!(
                f,
                "the zone's /tmp holds {} MiB, more than {} MiB: tmpfs cannot be set below what /tmp holds while the zone runs",
                used.div_ceil(MIB),
                wanted / MIB
            ),
            ResizeError::NotTmpfs(why) => write!(f, "the zone's /tmp is not its tmpfs ({why})"),
            ResizeError::Io(e) => write!(f, "resizing the zone's /tmp: {e}"),
        }
    }
}

/// Sets the size of the tmpfs on the `/tmp` of the zone whose init is
/// `init_pid` to `bytes` (see the module documentation).
pub(super) fn resize(init_pid: i32, bytes: u64) -> Result<(), ResizeError> {
    let root = rootfs::open_dir(Path::new(&format!("/proc/{init_pid}/root"))).map_err(ResizeError::Io)?;
    let tmp = open_tmp(root.as_fd())?;
    let used = used_bytes(tmp.as_fd()).map_err(ResizeError::Io)?;
    if used > bytes {
        return Err(ResizeError::TooSmall { used, wanted: bytes });
    }
    reconfigure_size(tmp.as_fd(), bytes).map_err(|e| match e.raw_os_error() {
        // Filled meanwhile: the kernel's own check.
        Some(libc::EINVAL) if used_bytes(tmp.as_fd()).is_ok_and(|u| u > bytes) => {
            ResizeError::TooSmall { used: used_bytes(tmp.as_fd()).unwrap_or(used), wanted: bytes }
        }
        _ => ResizeError::Io(e),
    })
}

/// The zone's `/tmp`, checked to be the root of a tmpfs mount.
fn open_tmp(root: BorrowedFd) -> Result<OwnedFd, ResizeError> {
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    let tmp = crate::rootfs::openat2(root, c"tmp", libc::O_PATH | libc::O_DIRECTORY, 0, resolve)
        .map_err(|e| ResizeError::NotTmpfs(format!("/tmp: {e}")))?;
    // SAFETY: statfs/statx fill the zeroed structs we own.
    let (fs, stx) = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        cvt(libc::fstatfs(tmp.as_raw_fd(), &mut fs)).map_err(ResizeError::Io)?;
        let mut stx: libc::statx = std::mem::zeroed();
        let flags = libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC;
        cvt(libc::statx(tmp.as_raw_fd(), c"".as_ptr(), flags, 0, &mut stx)).map_err(ResizeError::Io)?;
        (fs, stx)
    };
    if fs.f_type != TMPFS_MAGIC {
        return Err(ResizeError::NotTmpfs(format!("file system type {:#x}", fs.f_type)));
    }
    if stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0 && stx.stx_attributes & STATX_ATTR_MOUNT_ROOT == 0 {
        return Err(ResizeError::NotTmpfs("a directory of a tmpfs, not its mount".into()));
    }
    Ok(tmp)
}

/// What the tmpfs at `fd` holds, in bytes.
fn used_bytes(fd: BorrowedFd) -> io::Result<u64> {
    // SAFETY: fstatfs fills the zeroed struct we own.
    let fs = unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        cvt(libc::fstatfs(fd.as_raw_fd(), &mut fs))?;
        fs
    };
    Ok(fs.f_blocks.saturating_sub(fs.f_bfree).saturating_mul(fs.f_bsize as u64))
}

/// Changes the `size` of the superblock mounted at `fd` (the root of its
/// mount), leaving its other options and the mount's flags as they are.
fn reconfigure_size(fd: BorrowedFd, bytes: u64) -> io::Result<()> {
    // SAFETY: fspick with AT_EMPTY_PATH semantics on a live descriptor; the
    // result is checked and owned.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fspick,
            fd.as_raw_fd(),
            c"".as_ptr(),
            FSPICK_CLOEXEC | FSPICK_NO_AUTOMOUNT | FSPICK_EMPTY_PATH,
        )
    };
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    let fc = unsafe { OwnedFd::from_raw_fd(cvt(r)? as i32) };
    let size = rootfs::cstring(bytes.to_string().as_bytes())?;
    let config = |cmd: libc::c_uint, key: Option<&std::ffi::CStr>, value: Option<&std::ffi::CStr>| {
        let ptr = |c: Option<&std::ffi::CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: fsconfig reads the C strings (or NULLs) we pass, on a live fs context.
        cvt(unsafe { libc::syscall(libc::SYS_fsconfig, fc.as_raw_fd(), cmd, ptr(key), ptr(value), 0) })
            .map_err(|e| with_log(fc.as_fd(), e))
    };
    config(FSCONFIG_SET_STRING, Some(c"size"), Some(&size))?;
    config(FSCONFIG_CMD_RECONFIGURE, None, None)?;
    Ok(())
}

/// `e`, with what the kernel logged in the fs context (`e tmpfs: ...`) when it did.
fn with_log(fc: BorrowedFd, e: io::Error) -> io::Error {
    let mut buf = [0u8; 512];
    let mut file = std::fs::File::from(match fc.try_clone_to_owned() {
        Ok(fd) => fd,
        Err(_) => return e,
    });
    match file.read(&mut buf) {
        Ok(n) if n > 0 => {
            let msg = String::from_utf8_lossy(&buf[..n]);
            let msg = msg.trim().trim_start_matches("e ");
            io::Error::new(e.kind(), format!("{e} ({msg})"))
        }
        _ => e,
    }
}
