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
use std::path::{Path, PathBuf};

use crate::enter::{Entry, Exec};
use crate::launch::{LaunchError, DEFAULT_PATH};
use crate::rootfs::{self, cstring, cvt};
use crate::{control, lofs, lxcfs, security};
use crate::{BindMount, ZoneSpec};

/// The host devices bind-mounted into the zone's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// `/proc` files hidden behind `/dev/null` (as Docker and LXC do).
const PROC_MASKED: [&str; 5] = ["kcore", "keys", "timer_list", "sched_debug", "latency_stats"];
/// `/proc` directories hidden behind an empty read-only tmpfs.
const PROC_MASKED_DIRS: [&str; 2] = ["acpi", "scsi"];
/// `/proc` entries made read-only (`sys/net` is then put back read-write).
const PROC_READONLY: [&str; 5] = ["sys", "irq", "bus", "fs", "sysrq-trigger"];
/// `/sys` directories hidden behind an empty read-only tmpfs.
const SYS_MASKED_DIRS: [&str; 1] = ["firmware"];

/// Detached mounts (`open_tree(OPEN_TREE_CLONE)`) of everything on the host
/// the zone gets, opened by the monitor before cloning: host paths are
/// resolved with the host's privileges, and the child only attaches them.
pub(super) struct Trees {
    /// The zone root; the monitor makes it idmapped once the child's user
    /// namespace has its maps.
    pub(super) root: OwnedFd,
    devices: Vec<(&'static str, OwnedFd)>,
    console: OwnedFd,
    mounts: Vec<(BindMount, OwnedFd)>,
    /// lxcfs's files for `/proc` and `/sys` (empty without lxcfs).
    lxcfs: Vec<(lxcfs::View, OwnedFd)>,
    /// `/native` (read-only), and the metadata socket's directory for
    /// `/native/.zonecontrol` and `/.zonecontrol`.
    native: Option<OwnedFd>,
    zonecontrol: Vec<OwnedFd>,
}

impl Trees {
    pub(super) fn open(spec: &ZoneSpec, console_path: &Path) -> Result<Trees, LaunchError> {
        // An idmapped mount cannot be recursive over mounts that do not support it.
        let root = rootfs::clone_tree(&spec.zone_root, spec.idmap.is_none())
            .and_then(|tree| rootfs::allow_setuid(tree.as_fd()).map(|()| tree))
            .map_err(|e| LaunchError::new("bind zone root", format!("{}: {e}", spec.zone_root.display())))?;
        let mut devices = Vec::with_capacity(DEVICES.len());
        for name in DEVICES {
            let t =
                rootfs::clone_tree(&Path::new("/dev").join(name), false).map_err(step(format!("mount /dev/{name}")))?;
            devices.push((name, t));
        }
        let console = rootfs::clone_tree(console_path, false).map_err(step("mount /dev/console"))?;
        let mut mounts = Vec::with_capacity(spec.mounts.len());
        for m in &spec.mounts {
            let what = format!("mount {}", m.target.display());
            // Resolved without following what zones control (see `lofs`).
            let (source, _) =
                lofs::resolve(&m.source, &spec.protected).map_err(|e| LaunchError::new(what.clone(), e))?;
            let tree = rootfs::clone_tree_at(source.as_fd(), true)
                .map_err(|e| LaunchError::new(what.clone(), format!("{}: {e}", m.source.display())))?;
            rootfs::set_flags(tree.as_fd(), m.readonly, m.nosuid, m.nodev, m.noexec).map_err(step(what))?;
            mounts.push((m.clone(), tree));
        }
        // The daemon checked lxcfs answers before launching; if it died
        // since (a reboot from inside the zone, much later), the zone
        // still starts, on the kernel's /proc: a reboot must not fail for it.
        let lxcfs = match spec.lxcfs.as_deref().map(lxcfs::open) {
            Some(Ok(views)) => views,
            Some(Err(e)) => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let pid = std::process::id();
                let _ = writeln!(
                    io::stderr(),
                    "{now} zonevisor-monitor[{pid}]: lxcfs: {e}; the zone sees the host's /proc"
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        let native = match &spec.native {
            Some(dir) => {
                let t = rootfs::clone_tree(dir, false)
                    .map_err(|e| LaunchError::new("mount /native", format!("{}: {e}", dir.display())))?;
                rootfs::set_flags(t.as_fd(), true, true, true, false).map_err(step("mount /native"))?;
                Some(t)
            }
            None => None,
        };
        let mut zonecontrol = Vec::new();
        if spec.metadata.is_some() {
            let dir = spec.run_dir.join(crate::monitor::mdata::ZONECONTROL_DIR);
            for _ in 0..if native.is_some() { 2 } else { 1 } {
                // Read-only: the zone connects to the socket (which a
                // read-only mount allows) and can put nothing beside it.
                let t = rootfs::clone_tree(&dir, false).map_err(step("mount /.zonecontrol"))?;
                rootfs::set_flags(t.as_fd(), true, true, true, true).map_err(step("mount /.zonecontrol"))?;
                zonecontrol.push(t);
            }
        }
        Ok(Trees { root, devices, console, mounts, lxcfs, native, zonecontrol })
    }
}

/// Everything the init child needs, prepared by the monitor before cloning.
pub(super) struct Plan {
    zone_root: PathBuf,
    pub(super) trees: Trees,
    userns: bool,
    console: RawFd,
    hostname: String,
    hosts: String,
    resolv: Option<String>,
    tmpfs_bytes: u64,
    locked: Option<u64>,
    seccomp: Vec<libc::sock_filter>,
    /// The same filter, sending `sysinfo` and `statfs` to its listener.
    seccomp_notifying: Vec<libc::sock_filter>,
    /// The monitor's socket for the listener (inherited from the monitor).
    inbox: RawFd,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// A docker zone's command, decided inside the zone (see [`crate::docker`]).
    docker: Option<crate::DockerInit>,
}

/// The environment of processes started in the zone.
pub(super) fn zone_env() -> [String; 4] {
    ["container=zonevisor".to_owned(), format!("PATH={DEFAULT_PATH}"), "TERM=vt100".to_owned(), "HOME=/root".to_owned()]
}

impl Plan {
    pub(super) fn new(spec: &ZoneSpec, console: RawFd, console_path: &Path, inbox: RawFd) -> Result<Plan, LaunchError> {
        let trees = Trees::open(spec, console_path)?;
        let argv = spec
            .docker
            .as_ref()
            .map_or(&spec.init, |d| &d.argv)
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| LaunchError::new("exec init", e))?;
        if argv.is_empty() {
            let what = if spec.docker.is_some() { "docker command" } else { "exec init" };
            return Err(LaunchError::new(what, "the command is empty (no docker:entrypoint or docker:cmd)"));
        }
        let h = &spec.hostname;
        let fqdn = match spec.dns_domain.as_deref() {
            Some(d) if !d.is_empty() => format!("{h}.{d} {h}"),
            _ => h.clone(),
        };
        let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{fqdn}\n");
        let resolv = spec.resolvers.as_ref().map(|rs| resolv_conf(spec.dns_domain.as_deref(), rs));
        let profile = security::Profile::from_limit_priv(&spec.limit_priv);
        Ok(Plan {
            zone_root: spec.zone_root.clone(),
            trees,
            userns: spec.idmap.is_some(),
            console,
            hostname: spec.hostname.clone(),
            hosts,
            resolv,
            tmpfs_bytes: spec.tmpfs_bytes.unwrap_or(0),
            locked: spec.limits.locked_bytes,
            seccomp: profile.seccomp_program(false),
            seccomp_notifying: profile.seccomp_program(true),
            inbox,
            argv,
            envp: zone_env().into_iter().filter_map(|s| CString::new(s).ok()).collect(),
            docker: spec.docker.as_deref().cloned(),
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
pub(super) fn reset_signals() {
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
    // SAFETY: umask on our own process.
    unsafe { libc::umask(0) };
    let mut go = std::fs::File::from(go);
    // SAFETY: mount with static C strings.
    unsafe {
        let none = std::ptr::null();
        cvt(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()))
            .map_err(step("mount propagation"))?;
    }
    // The mount point, in our mount namespace. Looked up before we become
    // the zone's root: our ids are still the host's, which own the path.
    let mountpoint = rootfs::open_dir(&p.zone_root)
        .map_err(|e| LaunchError::new("bind zone root", format!("{}: {e}", p.zone_root.display())))?;
    // We were cloned into the zone's user namespace, which the monitor
    // holds with its maps written; it says go once it has set our limits.
    wait_go(&mut go, "user namespace")?;
    if p.userns {
        become_zone_root().map_err(step("user namespace"))?;
    }
    // SAFETY: prctl on our own process (after the id change, which clears it).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    rootfs::attach(p.trees.root.as_fd(), mountpoint.as_fd())
        .map_err(|e| LaunchError::new("bind zone root", format!("{}: {e}", p.zone_root.display())))?;
    let root = p.trees.root.as_fd();
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    mount_fs(root, "proc", c"proc", nosuid_nodev | libc::MS_NOEXEC, None).map_err(step("mount /proc"))?;
    mount_fs(root, "sys", c"sysfs", nosuid_nodev | libc::MS_NOEXEC | libc::MS_RDONLY, None)
        .map_err(step("mount /sys"))?;
    let null = setup_dev(root, p)?;
    // Opened anew: what is mounted there, not the directories mounted on.
    let dir = |rel: &str| rootfs::open_in(root, Path::new(rel), libc::O_PATH | libc::O_DIRECTORY, 0);
    let (proc, sys) = dir("proc").and_then(|proc| Ok((proc, dir("sys")?))).map_err(step("mask /proc and /sys"))?;
    overlay_lxcfs(proc.as_fd(), sys.as_fd(), &p.trees.lxcfs).map_err(step("mount lxcfs"))?;
    mask(proc.as_fd(), sys.as_fd(), null).map_err(step("mask /proc and /sys"))?;
    if p.tmpfs_bytes > 0 {
        let opts = cstring(format!("mode=1777,size={}", p.tmpfs_bytes).as_bytes()).map_err(step("mount /tmp"))?;
        mount_fs(root, "tmp", c"tmpfs", nosuid_nodev, Some(&opts)).map_err(step("mount /tmp"))?;
    }
    for (m, tree) in &p.trees.mounts {
        bind_into(root, m, tree.as_fd()).map_err(step(format!("mount {}", m.target.display())))?;
    }
    // The metadata socket's directory, and the guest tools (SmartOS's
    // places), over whatever the zone has there.
    let mut zonecontrol = p.trees.zonecontrol.iter();
    if let Some(native) = &p.trees.native {
        let at = rootfs::mkdir_all(root, Path::new("native"), 0o755).map_err(step("mount /native"))?;
        rootfs::attach(native.as_fd(), at.as_fd()).map_err(step("mount /native"))?;
        if let Some(t) = zonecontrol.next() {
            let at = rootfs::open_in(root, Path::new("native/.zonecontrol"), libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(step("mount /native/.zonecontrol"))?;
            rootfs::attach(t.as_fd(), at.as_fd()).map_err(step("mount /native/.zonecontrol"))?;
        }
    }
    if let Some(t) = zonecontrol.next() {
        let at = rootfs::mkdir_all(root, Path::new(".zonecontrol"), 0o700).map_err(step("mount /.zonecontrol"))?;
        rootfs::attach(t.as_fd(), at.as_fd()).map_err(step("mount /.zonecontrol"))?;
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
    if p.trees.native.is_some() {
        link_tools(root);
    }
    let docker = match &p.docker {
        Some(d) => Some(docker_command(root, &p.hostname, d, &p.argv)?),
        None => None,
    };
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
        match &docker {
            Some(d) => {
                cvt(libc::chdir(d.workdir.as_ptr())).map_err(|e| {
                    LaunchError::new("docker working directory", format!("{}: {e}", d.workdir.to_string_lossy()))
                })?;
                if let Some(null) = &d.stdin {
                    cvt(libc::dup2(null.as_raw_fd(), 0)).map_err(step("docker stdin"))?;
                }
            }
            None => {
                cvt(libc::chdir(c"/".as_ptr())).map_err(step("chdir /"))?;
            }
        }
        libc::umask(0o022);
    }
    wait_go(&mut go, "join cgroup")?;
    // SAFETY: unshare on our own process.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }).map_err(step("cgroup namespace"))?;
    security::drop_bounding_set().map_err(step("capabilities"))?;
    // The listener goes to the monitor before exec, so it is waiting there
    // by the time the monitor learns that init runs. Without one (the
    // monitor itself runs under a seccomp listener) the zone gets the
    // kernel's sysinfo and statfs, and the monitor says so in its log.
    match security::install_seccomp_with_listener(&p.seccomp_notifying, &p.seccomp).map_err(step("seccomp"))? {
        security::Installed::Listener(listener) => {
            // SAFETY: the monitor's socket, inherited and open until our exec.
            let inbox = unsafe { BorrowedFd::borrow_raw(p.inbox) };
            control::send_fd(inbox, control::LISTENER_INIT, listener.as_fd()).map_err(step("seccomp listener"))?;
        }
        security::Installed::Plain(_) => {}
    }
    if let Some(d) = &docker {
        // Last: the filter and its listener needed root's capabilities.
        d.ids.become_them().map_err(step("docker user"))?;
    }
    // SAFETY: close_range on our own descriptors.
    unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) };
    if let Some(d) = &docker {
        let argv = ptrs(&p.argv);
        let envp = ptrs(&d.envp);
        // SAFETY: argv and envp are null-terminated arrays of live C strings.
        unsafe { libc::execve(d.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = io::Error::last_os_error();
        return Err(LaunchError::new("docker command", format!("{}: {e}", d.program.to_string_lossy())));
    }
    let argv = ptrs(&p.argv);
    let envp = ptrs(&p.envp);
    // SAFETY: argv and envp are null-terminated arrays of live C strings.
    unsafe { libc::execve(p.argv[0].as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = io::Error::last_os_error();
    Err(LaunchError::new("exec init", format!("{}: {e}", p.argv[0].to_string_lossy())))
}

/// A docker zone's command, made ready inside the zone (after
/// `pivot_root`, as its root): see [`crate::docker`].
struct DockerCommand {
    /// What to execute (`argv[0]` looked up in `PATH`).
    program: CString,
    /// The environment.
    envp: Vec<CString>,
    /// The working directory (made when absent).
    workdir: CString,
    /// `/dev/null` for stdin, unless stdin is open.
    stdin: Option<OwnedFd>,
    /// Who it runs as.
    ids: DockerIds,
}

/// [`crate::docker::Ids`], to become.
struct DockerIds(crate::docker::Ids);

impl DockerIds {
    /// Takes the user's groups, gid and uid (dropping root's capabilities
    /// when the uid is not 0, as setuid(2) does).
    fn become_them(&self) -> io::Result<()> {
        let ids = &self.0;
        let groups: Vec<libc::gid_t> = ids.groups.clone();
        // SAFETY: id-changing syscalls on our own process; groups outlives the call.
        unsafe {
            cvt(libc::setgroups(groups.len(), groups.as_ptr()))?;
            cvt(libc::setresgid(ids.gid, ids.gid, ids.gid))?;
            cvt(libc::setresuid(ids.uid, ids.uid, ids.uid))?;
        }
        Ok(())
    }
}

/// Reads a zone's account file (`etc/passwd`, `etc/group`): empty when
/// absent; refused when it is no regular file or is too large (a FIFO
/// planted there must not hang the zone's start).
fn read_accounts(root: BorrowedFd, rel: &str) -> Result<String, LaunchError> {
    let what = || format!("docker user (/{rel})");
    let fd = match rootfs::open_in(root, Path::new(rel), libc::O_RDONLY | libc::O_NONBLOCK, 0) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(LaunchError::new(what(), e)),
    };
    let file = std::fs::File::from(fd);
    let md = file.metadata().map_err(|e| LaunchError::new(what(), e))?;
    if !md.is_file() || md.len() > crate::docker::MAX_ACCOUNTS_FILE {
        return Err(LaunchError::new(what(), "not a regular file of at most 4 MiB"));
    }
    let mut text = String::new();
    (&file)
        .take(crate::docker::MAX_ACCOUNTS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| LaunchError::new(what(), e))?;
    Ok(text)
}

/// Decides, inside the zone, what a docker zone's command runs as (user,
/// environment, working directory, program): see [`crate::docker`].
fn docker_command(
    root: BorrowedFd,
    hostname: &str,
    d: &crate::DockerInit,
    argv: &[CString],
) -> Result<DockerCommand, LaunchError> {
    use crate::docker;
    use std::os::unix::fs::PermissionsExt;
    let passwd = read_accounts(root, "etc/passwd")?;
    let group = read_accounts(root, "etc/group")?;
    let ids =
        docker::resolve_user(d.user.as_deref(), &passwd, &group).map_err(|e| LaunchError::new("docker user", e))?;
    let env = docker::environment(hostname, &ids.home, &d.env);
    let workdir = docker::workdir(d.workdir.as_deref(), &ids.home);
    rootfs::mkdir_all(root, &workdir, 0o755)
        .map_err(|e| LaunchError::new("docker working directory", format!("{}: {e}", workdir.display())))?;
    let argv0 = argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let is_exec = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let program = docker::find_program(&argv0, docker::env_value(&env, "PATH"), &workdir, is_exec)
        .map_err(|e| LaunchError::new("docker command", e))?;
    let c = |s: &[u8], what: &str| cstring(s).map_err(|e| LaunchError::new(what.to_string(), e));
    let envp = env.iter().map(|e| c(e.as_bytes(), "docker environment")).collect::<Result<Vec<_>, _>>()?;
    let stdin = if d.open_stdin {
        None
    } else {
        Some(
            rootfs::open_in(root, Path::new("dev/null"), libc::O_RDONLY, 0)
                .map_err(|e| LaunchError::new("docker stdin", e))?,
        )
    };
    Ok(DockerCommand {
        program: c(program.as_os_str().as_encoded_bytes(), "docker command")?,
        envp,
        workdir: c(workdir.as_os_str().as_encoded_bytes(), "docker working directory")?,
        stdin,
        ids: DockerIds(ids),
    })
}

/// The guest tools `/native` carries, linked from the zone's `/usr/sbin`
/// as SmartOS's lx images have them.
pub(crate) const TOOLS: [&str; 4] = ["mdata-get", "mdata-put", "mdata-list", "mdata-delete"];

/// Links each of [`TOOLS`] from `/usr/sbin` to `/native/usr/sbin`, where
/// the zone has nothing of that name (its own tool, file or link wins).
/// Runs as the zone's root after `pivot_root`, so what it touches is the
/// zone's; a zone without `/usr/sbin` (or a read-only one) goes without.
fn link_tools(root: BorrowedFd) {
    let Ok(sbin) = rootfs::open_in(root, Path::new("usr/sbin"), libc::O_PATH | libc::O_DIRECTORY, 0) else { return };
    for tool in TOOLS {
        let (Ok(name), Ok(target)) = (cstring(tool.as_bytes()), cstring(format!("/native/usr/sbin/{tool}").as_bytes()))
        else {
            continue;
        };
        // SAFETY: symlinkat with live C strings and an open directory;
        // EEXIST (the zone has one) is the expected refusal.
        unsafe { libc::symlinkat(target.as_ptr(), sbin.as_raw_fd(), name.as_ptr()) };
    }
}

/// Waits for the monitor's next go-ahead byte; end-of-file means it gave up.
fn wait_go(go: &mut std::fs::File, what: &str) -> Result<(), LaunchError> {
    let mut byte = [0u8; 1];
    if matches!(go.read(&mut byte), Ok(1)) {
        Ok(())
    } else {
        Err(LaunchError::new(what, "aborted by the monitor"))
    }
}

/// Becomes uid and gid 0 of our (mapped) user namespace, without
/// supplementary groups. Capabilities in the namespace are kept.
fn become_zone_root() -> io::Result<()> {
    // SAFETY: id-changing syscalls on our own process.
    unsafe {
        cvt(libc::setgroups(0, std::ptr::null()))?;
        cvt(libc::setresgid(0, 0, 0))?;
        cvt(libc::setresuid(0, 0, 0))?;
    }
    Ok(())
}

fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Builds `/dev`; returns the zone's `/dev/null` (a mount, for masking).
fn setup_dev<'p>(root: BorrowedFd, p: &'p Plan) -> Result<BorrowedFd<'p>, LaunchError> {
    let s = step("mount /dev");
    mount_fs(root, "dev", c"tmpfs", libc::MS_NOSUID | libc::MS_NOEXEC, Some(c"mode=755,size=65536k")).map_err(s)?;
    // The fresh tmpfs: nothing in it is the zone's, so plain *at calls are safe.
    let dev =
        rootfs::open_in(root, Path::new("dev"), libc::O_PATH | libc::O_DIRECTORY, 0).map_err(step("mount /dev"))?;
    let dev = dev.as_fd();
    let mut null = None;
    for (name, tree) in &p.trees.devices {
        let c = cstring(name.as_bytes()).map_err(step("mount /dev"))?;
        let f = rootfs::create_at(dev, &c, 0o666).map_err(step(format!("mount /dev/{name}")))?;
        rootfs::attach(tree.as_fd(), f.as_fd()).map_err(step(format!("mount /dev/{name}")))?;
        if *name == "null" {
            // Attached now: clones of it are cheap, and (unlike a detached
            // tree left open) free nothing at exec.
            null = Some(tree.as_fd());
        }
    }
    let null = null.ok_or_else(|| LaunchError::new("mount /dev/null", "missing"))?;
    let f = rootfs::create_at(dev, c"console", 0o600).map_err(step("mount /dev/console"))?;
    rootfs::attach(p.trees.console.as_fd(), f.as_fd()).map_err(step("mount /dev/console"))?;
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
    Ok(null)
}

/// Opens `name` in the directory `dir` (of a file system we just mounted)
/// as `O_PATH`, not following a symlink; `None` when absent.
fn open_at(dir: BorrowedFd, name: &str) -> io::Result<Option<OwnedFd>> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: valid C string and a live directory descriptor.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    match cvt(fd) {
        // SAFETY: just returned by openat, owned by nobody else.
        Ok(fd) => Ok(Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Binds lxcfs's files over the zone's `/proc` files and its
/// `/sys/devices/system/cpu` (see [`lxcfs`]); a file this kernel's `/proc`
/// lacks is skipped, as LXC's hook does.
fn overlay_lxcfs(proc: BorrowedFd, sys: BorrowedFd, views: &[(lxcfs::View, OwnedFd)]) -> io::Result<()> {
    for (view, tree) in views {
        let base = match view.base {
            lxcfs::Base::Proc => proc,
            lxcfs::Base::Sys => sys,
        };
        if let Some(target) = open_at(base, view.name)? {
            rootfs::attach(tree.as_fd(), target.as_fd())
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", view.source())))?;
        }
    }
    Ok(())
}

/// Hides or freezes what a zone must not reach in `/proc` and `/sys`, as
/// Docker and LXC do: kernel memory, keys and timers behind `/dev/null`
/// (`null`, a mount cloned for each), hardware directories behind empty
/// read-only tmpfs, and `/proc/sys`, `irq`, `bus`, `fs`, `sysrq-trigger`
/// read-only (`/proc/sys/net`, per network namespace, stays writable).
fn mask(proc: BorrowedFd, sys: BorrowedFd, null: BorrowedFd) -> io::Result<()> {
    let ctx = |what: &str| {
        let what = what.to_owned();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    for name in PROC_MASKED {
        if let Some(target) = open_at(proc, name)? {
            let tree = rootfs::clone_tree_fd(null).map_err(ctx(name))?;
            rootfs::attach(tree.as_fd(), target.as_fd()).map_err(ctx(name))?;
        }
    }
    let empty = |dir: BorrowedFd, name: &str| -> io::Result<()> {
        if let Some(target) = open_at(dir, name)? {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            rootfs::mount_on(c"tmpfs", target.as_fd(), c"tmpfs", flags, Some(c"mode=555")).map_err(ctx(name))?;
        }
        Ok(())
    };
    for name in PROC_MASKED_DIRS {
        empty(proc, name)?;
    }
    for name in SYS_MASKED_DIRS {
        empty(sys, name)?;
    }
    let net = match open_at(proc, "sys/net")? {
        Some(fd) => Some(rootfs::clone_tree_fd(fd.as_fd()).map_err(ctx("sys/net"))?),
        None => None,
    };
    for name in PROC_READONLY {
        if let Some(target) = open_at(proc, name)? {
            let tree = rootfs::clone_tree_fd(target.as_fd()).map_err(ctx(name))?;
            rootfs::set_readonly(tree.as_fd()).map_err(ctx(name))?;
            rootfs::attach(tree.as_fd(), target.as_fd()).map_err(ctx(name))?;
        }
    }
    if let (Some(tree), Some(target)) = (net, open_at(proc, "sys/net")?) {
        rootfs::attach(tree.as_fd(), target.as_fd()).map_err(ctx("sys/net"))?;
    }
    Ok(())
}

/// Makes directory `name` in `dir` and returns it (`O_PATH`), never following a symlink.
pub(super) fn mkdir_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: valid C string and a live directory descriptor.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })?;
    let how = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: as above; the returned descriptor is checked and owned.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), how) })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A `BindMount` (its detached tree, opened by the monitor): its target
/// resolved inside the zone root (created when absent, a directory or a
/// file like its source).
fn bind_into(root: BorrowedFd, m: &BindMount, tree: BorrowedFd) -> io::Result<()> {
    let target = if rootfs::is_dir(tree)? {
        rootfs::mkdir_all(root, &m.target, 0o755)?
    } else {
        rootfs::ensure_file(root, &m.target)?
    };
    rootfs::attach(tree, target.as_fd())
}

/// Makes `root` the process's root (`pivot_root`) and detaches the old one.
pub(super) fn pivot(root: BorrowedFd) -> io::Result<()> {
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
/// A zone's `/etc/resolv.conf`: its DNS domain to search and its resolvers.
pub(super) fn resolv_conf(dns_domain: Option<&str>, resolvers: &[String]) -> String {
    let mut s = String::new();
    if let Some(d) = dns_domain.filter(|d| !d.is_empty()) {
        s.push_str(&format!("search {d}\n"));
    }
    for r in resolvers {
        s.push_str(&format!("nameserver {r}\n"));
    }
    s
}

/// Runs in a forked child: enters the zone (`entry`) and replaces its
/// `/etc/resolv.conf` with `text` as the zone's root, through a file
/// beside it renamed over it: a symlink the zone put there is replaced,
/// never followed. Exits 0, or 1 with the error on stderr (the monitor's log).
pub(super) fn write_resolv_conf(entry: Entry, text: &str) -> ! {
    reset_signals();
    let res = entry.enter().and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = "/etc/.resolv.conf.zonevisor";
        let _ = std::fs::remove_file(tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(tmp, "/etc/resolv.conf")
    });
    let code = match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("writing the zone's /etc/resolv.conf: {e}");
            1
        }
    };
    // SAFETY: _exit ends this forked process without running the monitor's destructors.
    unsafe { libc::_exit(code) }
}

/// Runs in the forked helper of a zone's boot (`boot.rs`): enters the
/// zone as its root, installs `keys` as `/root/.ssh/authorized_keys`, and
/// runs `script` from `/var/svc/mdata-user-script` with `exec` (its
/// output is this process's, the monitor's pipe). Both files are written
/// beside their place and renamed over it, never through a link the zone
/// put there. Exits with the script's status (0 without one).
pub(super) fn run_boot(entry: Entry, keys: Option<&str>, script: Option<(&str, &str)>, exec: &Exec) -> ! {
    reset_signals();
    let code = match entry.enter() {
        Err(e) => {
            eprintln!("entering the zone: {e}");
            126
        }
        Ok(()) => {
            if let Some(k) = keys {
                let text = if k.ends_with('\n') { k.to_owned() } else { format!("{k}\n") };
                if let Err(e) = replace_file("/root/.ssh", "authorized_keys", text.as_bytes(), 0o600) {
                    eprintln!("root_authorized_keys: writing /root/.ssh/authorized_keys: {e}");
                }
            }
            match script {
                None => 0,
                Some((path, s)) => {
                    let (dir, name) = path.rsplit_once('/').unwrap_or(("/var/svc", path));
                    match replace_file(dir, name, s.as_bytes(), 0o700) {
                        Ok(()) => exec.run().unwrap_or_else(|e| {
                            eprintln!("{name}: {e}");
                            126
                        }),
                        Err(e) => {
                            eprintln!("{name}: writing {path}: {e}");
                            126
                        }
                    }
                }
            }
        }
    };
    // SAFETY: _exit ends this forked process without running the monitor's destructors.
    unsafe { libc::_exit(code) }
}

/// Writes `dir/name` (making `dir`, 0700 for `.ssh`, 0755 otherwise) as a
/// new file beside it renamed over it.
fn replace_file(dir: &str, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir_mode = if dir.ends_with(".ssh") { 0o700 } else { 0o755 };
    std::fs::DirBuilder::new().recursive(true).mode(dir_mode).create(dir)?;
    let tmp = format!("{dir}/.{name}.zonevisor");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, format!("{dir}/{name}"))
}

pub(super) fn run_helper(entry: Entry, exec: &Exec) -> ! {
    reset_signals();
    let code = match entry.enter() {
        Ok(()) => exec.run().unwrap_or(126),
        Err(_) => 126,
    };
    // SAFETY: _exit ends this forked process without running the monitor's destructors.
    unsafe { libc::_exit(code) }
}
