//! What runs in the zone's init process between `clone(2)` and `execve(2)`,
//! and the helper that runs a command (`poweroff`) inside a running zone.
//!
//! Both are forked from the single-threaded monitor, so they may allocate.
//! Every failure of the init setup is reported as `step\0message` on a
//! close-on-exec pipe; end-of-file without data means init was exec'd.

use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::enter::{Entry, Exec};
use crate::launch::{LaunchError, DEFAULT_PATH};
use crate::rootfs::{self, cstring, cvt};
use crate::{BindMount, ZoneSpec};

/// Everything the init child needs, prepared by the monitor before cloning.
pub(super) struct Plan {
    zone_root: PathBuf,
    console: RawFd,
    console_path: PathBuf,
    hostname: String,
    hosts: String,
    resolv: Option<String>,
    tmpfs_bytes: u64,
    mounts: Vec<BindMount>,
    locked: Option<u64>,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

/// The environment of processes started in the zone.
pub(super) fn zone_env() -> [String; 4] {
    ["container=zonevisor".to_owned(), format!("PATH={DEFAULT_PATH}"), "TERM=vt100".to_owned(), "HOME=/root".to_owned()]
}

impl Plan {
    pub(super) fn new(spec: &ZoneSpec, console: RawFd, console_path: &Path) -> Result<Plan, LaunchError> {
        let argv = spec
            .init
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| LaunchError::new("exec init", e))?;
        if argv.is_empty() {
            return Err(LaunchError::new("exec init", "init is empty"));
        }
        let h = &spec.hostname;
        let fqdn = match spec.dns_domain.as_deref() {
            Some(d) if !d.is_empty() => format!("{h}.{d} {h}"),
            _ => h.clone(),
        };
        let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{fqdn}\n");
        let resolv = spec.resolvers.as_ref().map(|rs| {
            let mut s = String::new();
            if let Some(d) = spec.dns_domain.as_deref().filter(|d| !d.is_empty()) {
                s.push_str(&format!("search {d}\n"));
            }
            for r in rs {
                s.push_str(&format!("nameserver {r}\n"));
            }
            s
        });
        Ok(Plan {
            zone_root: spec.zone_root.clone(),
            console,
            console_path: console_path.to_path_buf(),
            hostname: spec.hostname.clone(),
            hosts,
            resolv,
            tmpfs_bytes: spec.tmpfs_bytes.unwrap_or(0),
            mounts: spec.mounts.clone(),
            locked: spec.limits.locked_bytes,
            argv,
            envp: zone_env().into_iter().filter_map(|s| CString::new(s).ok()).collect(),
        })
    }
}

/// Runs in the cloned child: sets the zone up and execs init, or reports the
/// failed step on `err` and exits. Never returns. The monitor moves the child
/// into the zone's cgroup meanwhile (a cgroup migration waits for an RCU grace
/// period: overlapping it with the mounts saves milliseconds) and writes a
/// byte on `go` when done; the child enters its cgroup namespace and execs
/// only then.
pub(super) fn run(plan: &Plan, err: OwnedFd, go: OwnedFd) -> ! {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(plan, go)));
    let e = match res {
        Ok(Err(e)) => e,
        Ok(Ok(never)) => match never {},
        Err(_) => LaunchError::new("zone setup", "panicked (see monitor.log)"),
    };
    let _ = std::fs::File::from(err).write_all(format!("{}\0{}", e.step, e.message).as_bytes());
    // SAFETY: _exit ends this (forked) process without running the monitor's destructors.
    unsafe { libc::_exit(1) }
}

/// Undoes what the monitor's signal handling left in a forked child.
fn reset_signals() {
    // SAFETY: plain signal-state syscalls on our own process.
    unsafe {
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

fn step(name: impl Into<String>) -> impl FnOnce(io::Error) -> LaunchError {
    let name = name.into();
    move |e| LaunchError::new(name, e)
}

fn mount_fs(
    root: BorrowedFd,
    rel: &str,
    fstype: &CStr,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<OwnedFd> {
    let dir = rootfs::mkdir_all(root, Path::new(rel), 0o755)?;
    rootfs::mount_on(fstype, dir.as_fd(), fstype, flags, data)?;
    Ok(dir)
}

fn setup(p: &Plan, go: OwnedFd) -> Result<Infallible, LaunchError> {
    reset_signals();
    // SAFETY: prctl/umask on our own process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::umask(0);
    }
    // SAFETY: mount with valid (static or owned) C strings.
    unsafe {
        let none = std::ptr::null();
        cvt(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()))
            .map_err(step("mount propagation"))?;
        let r = cstring(p.zone_root.as_os_str().as_bytes()).map_err(step("bind zone root"))?;
        cvt(libc::mount(r.as_ptr(), r.as_ptr(), none, libc::MS_BIND | libc::MS_REC, none.cast()))
            .map_err(|e| LaunchError::new("bind zone root", format!("{}: {e}", p.zone_root.display())))?;
    }
    let root = rootfs::open_dir(&p.zone_root).map_err(step("bind zone root"))?;
    let root = root.as_fd();
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    mount_fs(root, "proc", c"proc", nosuid_nodev | libc::MS_NOEXEC, None).map_err(step("mount /proc"))?;
    mount_fs(root, "sys", c"sysfs", nosuid_nodev | libc::MS_NOEXEC | libc::MS_RDONLY, None)
        .map_err(step("mount /sys"))?;
    setup_dev(root, p)?;
    if p.tmpfs_bytes > 0 {
        let opts = cstring(format!("mode=1777,size={}", p.tmpfs_bytes).as_bytes()).map_err(step("mount /tmp"))?;
        mount_fs(root, "tmp", c"tmpfs", nosuid_nodev, Some(&opts)).map_err(step("mount /tmp"))?;
    }
    for m in &p.mounts {
        bind_into(root, m).map_err(step(format!("mount {}", m.target.display())))?;
    }
    pivot(root).map_err(step("pivot_root"))?;
    nix::unistd::sethostname(&p.hostname).map_err(|e| LaunchError::new("set hostname", io::Error::from(e)))?;
    loopback_up().map_err(step("loopback up"))?;
    let root = rootfs::open_dir(Path::new("/")).map_err(step("pivot_root"))?;
    let root = root.as_fd();
    rootfs::write_file(root, Path::new("etc/hostname"), format!("{}\n", p.hostname).as_bytes())
        .map_err(step("write /etc/hostname"))?;
    rootfs::write_file(root, Path::new("etc/hosts"), p.hosts.as_bytes()).map_err(step("write /etc/hosts"))?;
    if let Some(r) = &p.resolv {
        rootfs::write_file(root, Path::new("etc/resolv.conf"), r.as_bytes()).map_err(step("write /etc/resolv.conf"))?;
    }
    // SAFETY: session/terminal/descriptor syscalls on our own process and its descriptors.
    unsafe {
        // A new session, but no controlling terminal: like the kernel's own
        // /dev/console for init, so init can hand the console to a shell
        // with job control.
        cvt(libc::setsid()).map_err(step("console"))?;
        for fd in 0..3 {
            cvt(libc::dup2(p.console, fd)).map_err(step("console"))?;
        }
        if let Some(n) = p.locked {
            let mut lim = libc::rlimit { rlim_cur: n, rlim_max: n };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 && *libc::__errno_location() == libc::EPERM {
                // Raising the hard limit needs CAP_SYS_RESOURCE, which some
                // hosts (nested containers) withhold: the zone gets as much
                // as the host's hard limit allows.
                cvt(libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim)).map_err(step("rlimit memlock"))?;
                lim.rlim_cur = lim.rlim_max.min(n);
                cvt(libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim)).map_err(step("rlimit memlock"))?;
            }
        }
        cvt(libc::chdir(c"/".as_ptr())).map_err(step("chdir /"))?;
        libc::umask(0o022);
    }
    let mut byte = [0u8; 1];
    if !matches!(std::fs::File::from(go).read(&mut byte), Ok(1)) {
        return Err(LaunchError::new("join cgroup", "aborted by the monitor"));
    }
    // SAFETY: unshare/close_range on our own process.
    unsafe {
        cvt(libc::unshare(libc::CLONE_NEWCGROUP)).map_err(step("cgroup namespace"))?;
        libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
    }
    let argv = ptrs(&p.argv);
    let envp = ptrs(&p.envp);
    // SAFETY: argv and envp are null-terminated arrays of live C strings.
    unsafe { libc::execve(p.argv[0].as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = io::Error::last_os_error();
    Err(LaunchError::new("exec init", format!("{}: {e}", p.argv[0].to_string_lossy())))
}

fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

fn setup_dev(root: BorrowedFd, p: &Plan) -> Result<(), LaunchError> {
    let s = step("mount /dev");
    mount_fs(root, "dev", c"tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, Some(c"mode=755,size=65536k")).map_err(s)?;
    // The fresh tmpfs: nothing in it is the zone's, so plain *at calls are safe.
    let dev =
        rootfs::open_in(root, Path::new("dev"), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(step("mount /dev"))?;
    let dev = dev.as_fd();
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let c = cstring(name.as_bytes()).map_err(step("mount /dev"))?;
        let f = rootfs::create_at(dev, &c, 0o666).map_err(step(format!("mount /dev/{name}")))?;
        rootfs::bind(&Path::new("/dev").join(name), f.as_fd(), false).map_err(step(format!("mount /dev/{name}")))?;
    }
    let f = rootfs::create_at(dev, c"console", 0o600).map_err(step("mount /dev/console"))?;
    rootfs::bind(&p.console_path, f.as_fd(), false).map_err(step("mount /dev/console"))?;
    let pts = mkdir_at(dev, c"pts", 0o755).map_err(step("mount /dev/pts"))?;
    rootfs::mount_on(
        c"devpts",
        pts.as_fd(),
        c"devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(step("mount /dev/pts"))?;
    let shm = mkdir_at(dev, c"shm", 0o1777).map_err(step("mount /dev/shm"))?;
    rootfs::mount_on(c"tmpfs", shm.as_fd(), c"tmpfs", libc::MS_NOSUID | libc::MS_NODEV, Some(c"mode=1777"))
        .map_err(step("mount /dev/shm"))?;
    let links: [(&CStr, &CStr); 5] = [
        (c"pts/ptmx", c"ptmx"),
        (c"/proc/self/fd", c"fd"),
        (c"/proc/self/fd/0", c"stdin"),
        (c"/proc/self/fd/1", c"stdout"),
        (c"/proc/self/fd/2", c"stderr"),
    ];
    for (target, name) in links {
        // SAFETY: valid C strings and a live directory descriptor.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), dev.as_raw_fd(), name.as_ptr()) }).map_err(step("mount /dev"))?;
    }
    Ok(())
}

fn mkdir_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: valid C string and a live directory descriptor.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    let how = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; the returned descriptor is checked and owned.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), how) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A `BindMount`: its target resolved inside the zone root (created when
/// absent, a directory or a file like its source).
fn bind_into(root: BorrowedFd, m: &BindMount) -> io::Result<()> {
    let tree = rootfs::clone_tree(&m.source, true)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", m.source.display())))?;
    let target = if rootfs::is_dir(tree.as_fd())? {
        rootfs::mkdir_all(root, &m.target, 0o755)?
    } else {
        rootfs::ensure_file(root, &m.target)?
    };
    if m.readonly {
        rootfs::set_readonly(tree.as_fd())?;
    }
    rootfs::attach(tree.as_fd(), target.as_fd())
}

fn pivot(root: BorrowedFd) -> io::Result<()> {
    // SAFETY: syscalls on our own process with valid C strings and a live descriptor.
    unsafe {
        cvt(libc::fchdir(root.as_raw_fd()))?;
        cvt(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()))?;
        // The old root is now stacked on top of "/": detach it.
        cvt(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        cvt(libc::chdir(c"/".as_ptr()))?;
    }
    Ok(())
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: a socket we own and an ifreq we own, for the SIOC[GS]IFFLAGS ioctls.
    unsafe {
        let s = cvt(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0))?;
        let s = <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(s);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, c) in ifr.ifr_name.iter_mut().zip(b"lo") {
            *d = *c as libc::c_char;
        }
        cvt(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr))?;
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr))?;
    }
    Ok(())
}

/// Runs in a forked child of the monitor: enters the zone (its cgroup and
/// init's namespaces), runs the command there (as a grandchild, inside the
/// PID namespace, on the console) and exits with its status (126: could not
/// enter or could not execute, 127: no such program).
pub(super) fn run_helper(entry: Entry, exec: &Exec) -> ! {
    reset_signals();
    let code = match entry.enter() {
        Ok(()) => exec.run().unwrap_or(126),
        Err(_) => 126,
    };
    // SAFETY: _exit ends this forked process without running the monitor's destructors.
    unsafe { libc::_exit(code) }
}
