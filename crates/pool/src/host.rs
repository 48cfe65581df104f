//! Host plumbing shared by the backends: running host commands (with their
//! failures recorded in [`PoolError::Command`]), mount-point and filesystem
//! checks, and attaching a file to a loop device.

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{sys, PoolError, Result};

/// Runs `program args…`; exit codes other than 0 and those in `allowed` are
/// a [`PoolError::Command`]. Returns the exit code and stdout.
pub(crate) fn run(program: &str, args: &[&OsStr], allowed: &[i32]) -> Result<(i32, String)> {
    let output = Command::new(program).args(args).output().map_err(|e| PoolError::io("run", program, e))?;
    let code = output.status.code();
    if code == Some(0) || code.is_some_and(|c| allowed.contains(&c)) {
        return Ok((code.unwrap_or(0), String::from_utf8_lossy(&output.stdout).into_owned()));
    }
    let mut command = program.to_string();
    for arg in args {
        command.push(' ');
        command.push_str(&arg.to_string_lossy());
    }
    Err(PoolError::Command {
        command,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Opens a directory, following symlinks (the mountpoint may be one).
pub(crate) fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(path)
}

/// Opens a directory, refusing a symlink in its place (a dataset is never one).
pub(crate) fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(path)
}

/// Whether `path` is the root of a mount (statx's `STATX_ATTR_MOUNT_ROOT`,
/// else the mount table; comparing `st_dev` with the parent's would be
/// fooled by btrfs subvolumes).
pub(crate) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `cpath` is NUL-terminated and `stx` is valid for writes of a struct statx.
    if unsafe { libc::statx(libc::AT_FDCWD, cpath.as_ptr(), 0, 0, stx.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded, and an all-zero struct statx is valid anyway.
    let stx = unsafe { stx.assume_init() };
    let mount_root = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & mount_root == 0 {
        // Kernel < 5.8: ask the mount table.
        let path = std::fs::canonicalize(path)?;
        return Ok(mounts_under(&path)?.contains(&path));
    }
    Ok(stx.stx_attributes & mount_root != 0)
}

/// `MOUNT_ATTR_NOSUID` and `MOUNT_ATTR_NODEV` of `mount_setattr(2)`.
const MOUNT_ATTR_NOSUID: u64 = 0x02;
const MOUNT_ATTR_NODEV: u64 = 0x04;

/// Adds `nosuid` and `nodev` to the mount at `path` (a mount point), and
/// only those: its other options stay as they are. Nothing in a pool may
/// gain privileges on the host, whoever wrote it (a zone's root, an
/// image's tarball); zones get their own copy of their root with `nosuid`
/// cleared (see `zonevisor_zone`), so setuid programs work inside.
pub(crate) fn set_nosuid_nodev(path: &Path) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let attr = MountAttr { attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: a NUL-terminated path and a mount_attr of the size passed, both alive across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            0,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the filesystem holding `path` is btrfs.
pub(crate) fn is_btrfs(path: &Path) -> io::Result<bool> {
    let st = nix::sys::statfs::statfs(path)?;
    Ok(st.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC)
}

/// The filesystem type `blkid` finds on a device or file, if any.
pub(crate) fn probe_filesystem(path: &Path) -> Result<Option<String>> {
    let args = [OsStr::new("-p"), OsStr::new("-o"), OsStr::new("value"), OsStr::new("-s"), OsStr::new("TYPE")];
    let mut args = args.to_vec();
    args.push(path.as_os_str());
    // Exit code 2: nothing found.
    let (code, out) = run("blkid", &args, &[2])?;
    Ok((code == 0).then(|| out.trim().to_string()).filter(|t| !t.is_empty()))
}

/// A loop device bound to a file; the device detaches itself once the last
/// user (this handle, then the mount) lets go.
pub(crate) struct LoopDevice {
    pub(crate) path: PathBuf,
    _device: File,
}

/// Attaches `file` to a free loop device with `LO_FLAGS_AUTOCLEAR`.
pub(crate) fn attach_loop(file: &Path) -> Result<LoopDevice> {
    let backing = OpenOptions::new().read(true).write(true).open(file).map_err(|e| PoolError::io("open", file, e))?;
    let control_path = Path::new("/dev/loop-control");
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(control_path)
        .map_err(|e| PoolError::io("open", control_path, e))?;
    let mut last = io::Error::from_raw_os_error(libc::EBUSY);
    // Another process may take the free device between GET_FREE and CONFIGURE.
    for _ in 0..32 {
        let n = sys::loop_get_free(&control).map_err(|e| PoolError::io("LOOP_CTL_GET_FREE", control_path, e))?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = open_loop_node(&path, n).map_err(|e| PoolError::io("open", &path, e))?;
        match sys::loop_configure(&device, &backing, sys::LO_FLAGS_AUTOCLEAR, file.as_os_str()) {
            Ok(()) => return Ok(LoopDevice { path, _device: device }),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) => return Err(PoolError::io("LOOP_CONFIGURE", &path, e)),
        }
    }
    Err(PoolError::io("attach a loop device to", file, last))
}

/// Gives the block device at `device` (e.g. `/dev/loop3`) the `bfq` I/O
/// scheduler, so the I/O weights of the cgroups reading and writing through
/// it (`blkio.bfq.weight`, `io.bfq.weight`) are honoured, and tunes it for
/// weight fidelity over interactive latency: `low_latency` off (it raises
/// the weight of new queues) and `strict_guarantees` on (no injection of
/// other queues' I/O while it idles for the in-service one). Best effort:
/// returns why it could not (no bfq in this kernel, no sysfs).
pub(crate) fn use_fair_scheduler(device: &Path) -> io::Result<()> {
    let name = device.file_name().ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let queue = Path::new("/sys/block").join(name).join("queue");
    let scheduler = queue.join("scheduler");
    let current = std::fs::read_to_string(&scheduler)?;
    if !current.split_whitespace().any(|s| s.trim_matches(|c| c == '[' || c == ']') == "bfq") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no bfq in {}: {}", scheduler.display(), current.trim()),
        ));
    }
    if !current.contains("[bfq]") {
        std::fs::write(&scheduler, "bfq")?;
    }
    for (tunable, value) in [("low_latency", "0"), ("strict_guarantees", "1")] {
        std::fs::write(queue.join("iosched").join(tunable), value)?;
    }
    Ok(())
}

/// The block device the filesystem holding `path` comes from (the source
/// of the innermost mount containing it, when that is a `/dev/` node).
pub(crate) fn mount_source(path: &Path) -> io::Result<Option<PathBuf>> {
    let path = std::fs::canonicalize(path)?;
    let mountinfo = std::fs::read("/proc/self/mountinfo")?;
    Ok(mount_source_in(&mountinfo, &path))
}

fn mount_source_in(mountinfo: &[u8], path: &Path) -> Option<PathBuf> {
    let mut found: Option<(PathBuf, Option<PathBuf>)> = None;
    for line in mountinfo.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        // "... mount_point options [optional fields] - fstype source super_options"
        let Some(dash) = fields.iter().position(|f| *f == b"-") else { continue };
        let Some(mount_point) = fields.get(4).map(|f| unescape_mount_path(f)) else { continue };
        // Later lines are mounted later: on the same point, they are on top.
        if !path.starts_with(&mount_point) || found.as_ref().is_some_and(|(m, _)| !mount_point.starts_with(m)) {
            continue;
        }
        let source = fields.get(dash + 2).map(|s| unescape_mount_path(s)).filter(|s| s.starts_with("/dev/"));
        found = Some((mount_point, source));
    }
    found.and_then(|(_, source)| source)
}

/// How zones' I/O weights are enforced on `device`: the I/O scheduler in
/// force, with the reason when it is not the proportional (`bfq`) one.
pub(crate) fn io_scheduler(device: &Path) -> io::Result<(String, bool)> {
    let real = std::fs::canonicalize(device)?;
    let name = real.file_name().ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut block = Path::new("/sys/class/block").join(name);
    // A partition's queue is its disk's.
    if block.join("partition").exists() {
        block = std::fs::canonicalize(&block)?.parent().map(Path::to_path_buf).unwrap_or(block);
    }
    let current = std::fs::read_to_string(block.join("queue/scheduler"))?;
    let chosen = current
        .split_whitespace()
        .find_map(|s| s.strip_prefix('[').and_then(|s| s.strip_suffix(']')))
        .unwrap_or("none")
        .to_owned();
    let bfq = chosen == "bfq";
    Ok((chosen, bfq))
}

/// Whether cgroup v2's iocost controller is enabled for the disk under
/// `device` (its line in the root cgroup's `io.cost.qos` says `enable=1`).
pub(crate) fn iocost_enabled(device: &Path) -> bool {
    let Some(majmin) = disk_number(device) else { return false };
    ["/sys/fs/cgroup/io.cost.qos", "/sys/fs/cgroup/unified/io.cost.qos"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .any(|qos| iocost_on(&qos, &majmin))
}

/// Whether `qos` (the text of `io.cost.qos`) enables iocost for the disk
/// numbered `majmin`.
pub(crate) fn iocost_on(qos: &str, majmin: &str) -> bool {
    qos.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(majmin) && words.any(|w| w == "enable=1")
    })
}

/// The `major:minor` of the disk holding `device` (a partition's disk).
fn disk_number(device: &Path) -> Option<String> {
    let real = std::fs::canonicalize(device).ok()?;
    let mut block = Path::new("/sys/class/block").join(real.file_name()?);
    if block.join("partition").exists() {
        block = std::fs::canonicalize(&block).ok()?.parent()?.to_path_buf();
    }
    Some(std::fs::read_to_string(block.join("dev")).ok()?.trim().to_string())
}

/// Opens `/dev/loopN`, creating the node when the host's /dev lacks it.
fn open_loop_node(path: &Path, n: u32) -> io::Result<File> {
    let open = || OpenOptions::new().read(true).write(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use nix::sys::stat::{makedev, mknod, Mode, SFlag};
            match mknod(path, SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(7, n.into())) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => open(),
                Err(e) => Err(e.into()),
            }
        }
        r => r,
    }
}

/// The mount points at or below `path`, from /proc/self/mountinfo.
pub(crate) fn mounts_under(path: &Path) -> io::Result<Vec<PathBuf>> {
    let path = std::fs::canonicalize(path)?;
    let mountinfo = std::fs::read("/proc/self/mountinfo")?;
    let mounts = mountinfo.split(|&b| b == b'\n').filter_map(|line| line.split(|&b| b == b' ').nth(4));
    Ok(mounts.map(unescape_mount_path).filter(|m| m.starts_with(&path)).collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape_mount_path(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal =
            field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iocost_is_on_only_for_the_device_whose_line_enables_it() {
        let qos = "8:0 enable=1 ctrl=auto rpct=0.00 rlat=250000 wpct=0.00 wlat=250000 min=1.00 max=10000.00\n\
                   7:3 enable=0 ctrl=auto rpct=0.00 rlat=250000 wpct=0.00 wlat=250000 min=1.00 max=10000.00\n";
        assert!(iocost_on(qos, "8:0"));
        assert!(!iocost_on(qos, "7:3"), "listed but off");
        assert!(!iocost_on(qos, "7:30"), "not listed");
        assert!(!iocost_on("", "8:0"));
    }

    #[test]
    fn the_innermost_mount_names_the_source() {
        let info = b"22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n\
            90 22 0:50 / /var/lib/zonevisor/zones rw,relatime shared:40 - btrfs /dev/loop3 rw,space_cache=v2\n\
            91 90 0:51 / /var/lib/zonevisor/zones/a\\040b rw - tmpfs tmpfs rw\n";
        assert_eq!(mount_source_in(info, Path::new("/")), Some(PathBuf::from("/dev/sda1")));
        assert_eq!(mount_source_in(info, Path::new("/var/lib/zonevisor/zones")), Some(PathBuf::from("/dev/loop3")));
        assert_eq!(mount_source_in(info, Path::new("/var/lib/zonevisor/zones/a b")), None, "tmpfs has no device");
        assert_eq!(mount_source_in(info, Path::new("/srv")), Some(PathBuf::from("/dev/sda1")));
        assert_eq!(
            mount_source_in(info, Path::new("/var/lib/zonevisor/zones/config")),
            Some(PathBuf::from("/dev/loop3"))
        );
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(br"/zones/a\040b\134c"), PathBuf::from("/zones/a b\\c"));
        assert_eq!(unescape_mount_path(br"/x\0"), PathBuf::from("/x\\0"));
    }
}
