//! QEMU's jail, as SmartOS jails QEMU in a zone and firecracker's jailer
//! jails its VMM: what the monitor prepares, and what runs in the forked
//! child between `fork` and QEMU's `execve`.
//!
//! ```text
//!  monitor: open detached copies (open_tree) of /usr, /bin.. /lib*, the
//!           devices and the binds (host paths resolved following only
//!           root's symlinks), QEMU's binary (O_PATH)
//!    └ fork (clone3 into the v2 cgroup where there is one)
//!       child: join the (v1) cgroups
//!              unshare(CLONE_NEWNS), make every mount private
//!              a fresh tmpfs on the run directory (in this namespace only):
//!                /usr (read-only), /bin /sbin /lib /lib64 .. (the host's
//!                symlinks, or read-only binds), /dev/{null,zero,urandom}
//!                and the spec's devices, the spec's binds (read-only
//!                unless writable; all nosuid, nodev, noexec)
//!              the tmpfs made read-only, pivot_root into it
//!              setsid, stdin/stdout the console pty, stderr qemu.log
//!              bounding set dropped, setgroups([]), setresgid, setresuid
//!              (the jail's ids: no capabilities left), no_new_privs,
//!              PDEATHSIG=SIGKILL
//!              execveat(QEMU's binary), QEMU installs its -sandbox filter
//! ```
//!
//! Every failure is reported as `step\0message` on a close-on-exec pipe;
//! end-of-file without data means QEMU was exec'd.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::child;
use crate::launch::LaunchError;
use crate::rootfs::{self, cstring, cvt};
use crate::{lofs, JailBind, QemuSpec};

/// The host entries next to `/usr` a dynamically linked program needs:
/// recreated as the host's symlinks (merged `/usr`), or bound read-only.
const TOP: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// The devices every jail has.
const DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/urandom"];
/// The jail's tmpfs holds only directories, symlinks and mount points.
const TMPFS_OPTIONS: &std::ffi::CStr = c"mode=755,size=256k,nr_inodes=1024";

/// A host entry next to `/usr`.
enum Top {
    Link(CString),
    Dir(OwnedFd),
}

/// Everything the jail's child needs, prepared by the monitor.
pub(super) struct Plan {
    /// QEMU's binary (`O_PATH`), executed from the host.
    qemu: OwnedFd,
    argv: Vec<CString>,
    uid: u32,
    gid: u32,
    /// `cgroup.procs` files the child writes itself into.
    procs: Vec<PathBuf>,
    /// Where the jail's tmpfs is mounted in the child's namespace.
    mountpoint: PathBuf,
    usr: OwnedFd,
    top: Vec<(CString, Top)>,
    /// Device nodes (detached binds) and their paths in the jail.
    devices: Vec<(PathBuf, OwnedFd)>,
    binds: Vec<(JailBind, bool, OwnedFd)>,
    console: RawFd,
    stderr: RawFd,
    /// The NICs' taps, handed to QEMU at `TAP_FD_BASE + i`.
    taps: Vec<RawFd>,
    monitor: i32,
}

fn step(name: impl Into<String>) -> impl FnOnce(io::Error) -> LaunchError {
    let name = name.into();
    move |e| LaunchError::new(name, e)
}

/// Resolves a host path following only root's symlinks (see [`lofs`]).
fn resolve(path: &Path, what: &str) -> Result<OwnedFd, LaunchError> {
    lofs::resolve(path, &lofs::Protected::default()).map(|(fd, _)| fd).map_err(|e| LaunchError::new(what.to_owned(), e))
}

fn file_type(fd: BorrowedFd) -> io::Result<libc::mode_t> {
    // SAFETY: fstat fills the zeroed struct we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st))?;
        Ok(st.st_mode & libc::S_IFMT)
    }
}

impl Plan {
    /// Opens what the jail shows. `procs`: the cgroup hierarchies the
    /// child still has to join; `console`, `stderr`: QEMU's stdio.
    pub(super) fn new(
        spec: &QemuSpec,
        procs: Vec<PathBuf>,
        mountpoint: &Path,
        console: RawFd,
        stderr: RawFd,
        taps: Vec<RawFd>,
    ) -> Result<Plan, LaunchError> {
        let qemu = resolve(&spec.qemu, "exec QEMU")?;
        let argv = std::iter::once(spec.qemu.as_os_str().as_bytes())
            .chain(spec.argv.iter().map(|a| a.as_bytes()))
            .map(cstring)
            .collect::<io::Result<Vec<_>>>()
            .map_err(step("exec QEMU"))?;
        let usr = rootfs::clone_tree(Path::new("/usr"), true)
            .and_then(|t| rootfs::set_flags(t.as_fd(), true, true, true, false).map(|()| t))
            .map_err(step("jail /usr"))?;
        let mut top = Vec::new();
        for name in TOP {
            let host = Path::new("/").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&host) else { continue };
            let c = cstring(name.as_bytes()).map_err(step("jail /"))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&host).map_err(step(format!("jail {}", host.display())))?;
                top.push((c, Top::Link(cstring(target.as_os_str().as_bytes()).map_err(step("jail /"))?)));
            } else if meta.is_dir() {
                let tree = rootfs::clone_tree(&host, true)
                    .and_then(|t| rootfs::set_flags(t.as_fd(), true, true, true, false).map(|()| t))
                    .map_err(step(format!("jail {}", host.display())))?;
                top.push((c, Top::Dir(tree)));
            }
        }
        let mut devices = Vec::new();
        for dev in DEVICES.iter().map(PathBuf::from).chain(spec.jail.devices.iter().cloned()) {
            let what = format!("jail {}", dev.display());
            let fd = resolve(&dev, &what)?;
            let kind = file_type(fd.as_fd()).map_err(step(what.clone()))?;
            if kind != libc::S_IFCHR && kind != libc::S_IFBLK {
                return Err(LaunchError::new(what, "not a device node"));
            }
            let tree = rootfs::clone_tree_at(fd.as_fd(), false)
                .and_then(|t| rootfs::set_flags(t.as_fd(), false, true, false, true).map(|()| t))
                .map_err(step(what))?;
            devices.push((dev, tree));
        }
        let mut binds = Vec::new();
        for b in &spec.jail.binds {
            let what = format!("jail {}", b.target.display());
            let fd = resolve(&b.source, &what)?;
            let dir = rootfs::is_dir(fd.as_fd()).map_err(step(what.clone()))?;
            let tree = rootfs::clone_tree_at(fd.as_fd(), true)
                .and_then(|t| rootfs::set_flags(t.as_fd(), !b.writable, true, true, true).map(|()| t))
                .map_err(|e| LaunchError::new(what, format!("{}: {e}", b.source.display())))?;
            binds.push((b.clone(), dir, tree));
        }
        Ok(Plan {
            qemu,
            argv,
            uid: spec.jail.uid,
            gid: spec.jail.gid,
            procs,
            mountpoint: mountpoint.to_owned(),
            usr,
            top,
            devices,
            binds,
            console,
            stderr,
            taps,
            monitor: std::process::id() as i32,
        })
    }
}

impl Plan {
    /// Leaves out the hierarchy whose `cgroup.procs` is `file` (the child
    /// was cloned into it).
    pub(super) fn skip_procs(&mut self, file: Option<&Path>) {
        self.procs.retain(|p| Some(p.as_path()) != file);
    }
}

/// Runs in the forked child: builds the jail and execs QEMU, or reports
/// the failed step on `err` and exits. Never returns.
pub(super) fn run(plan: &Plan, err: OwnedFd) -> ! {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(plan)));
    let e = match res {
        Ok(Err(e)) => e,
        Ok(Ok(never)) => match never {},
        Err(_) => LaunchError::new("jail", "panicked (see monitor.log)"),
    };
    let _ = std::fs::File::from(err).write_all(format!("{}\0{}", e.step, e.message).as_bytes());
    // SAFETY: _exit ends this (forked) process without running the monitor's destructors.
    unsafe { libc::_exit(1) }
}

fn setup(p: &Plan) -> Result<Infallible, LaunchError> {
    child::reset_signals();
    let pid = std::process::id().to_string();
    for f in &p.procs {
        std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .and_then(|mut file| file.write_all(pid.as_bytes()))
            .map_err(|e| LaunchError::new("join cgroup", format!("{}: {e}", f.display())))?;
    }
    // SAFETY: unshare and mount on our own process, with static C strings.
    unsafe {
        cvt(libc::unshare(libc::CLONE_NEWNS)).map_err(step("mount namespace"))?;
        let none = std::ptr::null();
        cvt(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()))
            .map_err(step("mount namespace"))?;
    }
    // Looked up in our namespace, where the tmpfs goes.
    let mountpoint = rootfs::open_dir(&p.mountpoint).map_err(step("jail root"))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    rootfs::mount_on(c"tmpfs", mountpoint.as_fd(), c"tmpfs", flags, Some(TMPFS_OPTIONS)).map_err(step("jail root"))?;
    let root = rootfs::open_dir(&p.mountpoint).map_err(step("jail root"))?;
    // The monitor's umask (077) would make the jail's directories root's
    // only, and QEMU could not reach a bind below one (`/vm/run`).
    // SAFETY: umask on this (single-threaded) child.
    let umask = unsafe { libc::umask(0o022) };
    let built = build(root.as_fd(), p);
    // SAFETY: as above.
    unsafe { libc::umask(umask) };
    built?;
    // Nothing more is made in the jail's root: QEMU writes only where a
    // writable bind lets it.
    rootfs::mount_on(c"none", root.as_fd(), c"", libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags, None)
        .map_err(step("jail root"))?;
    child::pivot(root.as_fd()).map_err(step("pivot_root"))?;
    // SAFETY: session, descriptor, id and prctl syscalls on our own process.
    unsafe {
        cvt(libc::setsid()).map_err(step("console"))?;
        for (from, to) in [(p.console, 0), (p.console, 1), (p.stderr, 2)] {
            cvt(libc::dup2(from, to)).map_err(step("console"))?;
        }
        drop_bounding_set().map_err(step("drop privileges"))?;
        cvt(libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
            .map_err(step("drop privileges"))?;
        cvt(libc::setgroups(0, std::ptr::null())).map_err(step("drop privileges"))?;
        cvt(libc::setresgid(p.gid, p.gid, p.gid)).map_err(step("drop privileges"))?;
        // From root to another uid: the kernel clears the permitted and
        // effective sets; the inheritable one goes here.
        cvt(libc::setresuid(p.uid, p.uid, p.uid)).map_err(step("drop privileges"))?;
        clear_capabilities().map_err(step("drop privileges"))?;
        cvt(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)).map_err(step("drop privileges"))?;
        // After the id change, which clears it.
        cvt(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL)).map_err(step("drop privileges"))?;
        if libc::getppid() != p.monitor {
            return Err(LaunchError::new("jail", "the monitor is gone"));
        }
        libc::umask(0o077);
        libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
        // Out of the way first (a tap may sit where another belongs), then
        // in place, without close-on-exec.
        let mut high = Vec::with_capacity(p.taps.len());
        for &tap in &p.taps {
            high.push(cvt(libc::fcntl(tap, libc::F_DUPFD_CLOEXEC, 1024)).map_err(step("taps"))?);
        }
        for (i, fd) in high.into_iter().enumerate() {
            cvt(libc::dup2(fd, zonevisor_vm::config::TAP_FD_BASE + i as i32)).map_err(step("taps"))?;
        }
    }
    let argv: Vec<*const libc::c_char> =
        p.argv.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: argv and envp are null-terminated arrays of live C strings; an
    // empty path with AT_EMPTY_PATH executes the descriptor.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            p.qemu.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    let e = io::Error::last_os_error();
    Err(LaunchError::new("exec QEMU", format!("{}: {e}", p.argv[0].to_string_lossy())))
}

/// Fills the jail's fresh tmpfs (`root`): nothing in it is anyone else's,
/// so plain `*at` calls are safe.
fn build(root: BorrowedFd, p: &Plan) -> Result<(), LaunchError> {
    let usr = child::mkdir_at(root, c"usr", 0o755).map_err(step("jail /usr"))?;
    rootfs::attach(p.usr.as_fd(), usr.as_fd()).map_err(step("jail /usr"))?;
    for (name, entry) in &p.top {
        let what = format!("jail /{}", name.to_string_lossy());
        match entry {
            // SAFETY: valid C strings and a live directory descriptor.
            Top::Link(target) => cvt(unsafe { libc::symlinkat(target.as_ptr(), root.as_raw_fd(), name.as_ptr()) })
                .map(drop)
                .map_err(step(what))?,
            Top::Dir(tree) => {
                let dir = child::mkdir_at(root, name, 0o755).map_err(step(what.clone()))?;
                rootfs::attach(tree.as_fd(), dir.as_fd()).map_err(step(what))?;
            }
        }
    }
    for (path, tree) in &p.devices {
        let what = format!("jail {}", path.display());
        let (parent, name) = parent_and_name(path).map_err(step(what.clone()))?;
        let dir = rootfs::mkdir_all(root, &parent, 0o755).map_err(step(what.clone()))?;
        let node = rootfs::create_at(dir.as_fd(), &name, 0o600).map_err(step(what.clone()))?;
        rootfs::attach(tree.as_fd(), node.as_fd()).map_err(step(what))?;
    }
    for (b, dir, tree) in &p.binds {
        let what = format!("jail {}", b.target.display());
        let target =
            if *dir { rootfs::mkdir_all(root, &b.target, 0o755) } else { rootfs::ensure_file(root, &b.target) }
                .map_err(step(what.clone()))?;
        rootfs::attach(tree.as_fd(), target.as_fd()).map_err(step(what))?;
    }
    Ok(())
}

/// Empties the bounding set: every capability, up to the kernel's last.
fn drop_bounding_set() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes a number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: past the kernel's last capability.
            return if e.raw_os_error() == Some(libc::EINVAL) { Ok(()) } else { Err(e) };
        }
    }
    Ok(())
}

/// `capset(2)` with every set empty.
fn clear_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset reads the header and two data structs, which we own.
    cvt(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) }).map(drop)
}

fn parent_and_name(path: &Path) -> io::Result<(PathBuf, CString)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no file name"));
    };
    Ok((parent.to_owned(), cstring(name.as_bytes())?))
}
