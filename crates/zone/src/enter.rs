//! Entering a running zone from the host, and running a command there: the
//! one implementation behind `zlogin` and the monitor's graceful stop (which
//! runs the zone's `poweroff`).
//!
//! This module owns joining another process's cgroups and namespaces
//! ([`Entry`]) and the fork/exec/wait of a command once inside ([`Exec`]):
//!
//! ```text
//!  Entry::open(pid)           open /proc/<pid>/ns/{user,ipc,uts,net,pid,cgroup,mnt}
//!   [.cgroups_of_process()]   (those we already share are skipped: the user
//!   [.cgroup_procs(files)]     namespace is joined only when it differs)
//!   [.chroot()]               everything is opened and read here, while host
//!   [.drop_capabilities()]    paths still mean what they say
//!   [.sysinfo_from_monitor()  the zone's monitor agrees to serve sysinfo(2)
//!    | .sysinfo_to(socket)]    (zlogin), or the monitor's own socket (its helpers)
//!        │
//!  entry.enter()              join the cgroups (write 0 into each cgroup.procs),
//!                             setns user → ipc → uts → net → pid → cgroup → mnt,
//!                             [chroot to pid's root], chdir /, no supplementary
//!                             groups, uid/gid 0 of a joined user namespace,
//!                             [drop capabilities pid's bounding set lacks,
//!                              install the zone's seccomp filter
//!                              [with its listener (sysinfo, statfs), sent to the monitor]]
//!        │
//!  [open_pty()]               a pty of the zone's own devpts (zlogin on a terminal)
//!        │
//!  exec.run() / spawn()+wait  fork (the child is born in the pid namespace)
//!   ├─ child: signals unblocked, [new session on a console or the pty,
//!   │         the pty as controlling terminal], [umask], exec
//!   └─ parent: wait (zlogin relays the pty meanwhile); the exit status,
//!              or 128 + signal
//! ```
//!
//! The process that enters stays in the zone: `zlogin` enters itself and
//! runs the command last; the monitor forks a helper that enters, runs the
//! command and exits with its status. Entering namespaces needs root (or the
//! capabilities over them) and a single-threaded process.
//!
//! Every cgroup path comes from [`crate::cgroup`]'s view of the host's
//! mounted hierarchies (the one `/proc/self/mountinfo` parser).

use std::ffi::CString;
use std::fmt::Display;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, chroot, fchdir, fork, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid};

use crate::{cgroup, control, security, ZoneSpec};

/// The namespaces joined, in order: the user namespace first (it owns the
/// others), the mount namespace last (it changes what paths mean).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// `what: error`, keeping the error's kind.
fn context<E: Display + Into<io::Error>>(what: impl Display) -> impl FnOnce(E) -> io::Error {
    move |e| {
        let msg = format!("{what}: {e}");
        io::Error::new(e.into().kind(), msg)
    }
}

fn read(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(context(format_args!("cannot read {}", path.display())))
}

/// The `CapBnd` mask in a `/proc/<pid>/status` text.
fn capability_bounding_set(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// The way into another process's cgroups and namespaces (a zone's init),
/// opened from the host. Build it with [`Entry::open`] and the options the
/// caller needs, then [`Entry::enter`].
#[derive(Debug)]
pub struct Entry {
    pid: i32,
    namespaces: Vec<(&'static str, CloneFlags, File)>,
    cgroup_procs: Vec<PathBuf>,
    root: Option<File>,
    /// The bounding set to keep, and the highest capability the kernel knows.
    bounding: Option<(u64, u32)>,
    /// The seccomp filters to install last (when `pid` has one).
    seccomp: Option<Filters>,
    /// The zone's run directory (from its monitor's command line).
    run_dir: Option<PathBuf>,
    /// Where the filter's listener goes: a connection to the zone's monitor
    /// that agreed to serve it, or the monitor's own socket for its helpers.
    /// `None`: the filter has no rules for the monitor (`security::NOTIFIED`).
    sysinfo: Option<OwnedFd>,
}

/// The zone's filter, with and without the rules that send calls to the monitor.
#[derive(Debug)]
struct Filters {
    plain: Vec<libc::sock_filter>,
    notifying: Vec<libc::sock_filter>,
}

/// How long `zlogin` waits for the zone's monitor to agree to serve its
/// `sysinfo` before going on without (the kernel's answer).
const MONITOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Entry {
    /// Opens the namespaces of process `pid` that are not already ours
    /// (a kind the kernel does not offer is skipped). Fails when `pid` is gone.
    pub fn open(pid: i32) -> io::Result<Entry> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let mut namespaces = Vec::with_capacity(NAMESPACES.len());
        for (name, flag) in NAMESPACES {
            let theirs = proc_dir.join("ns").join(name);
            let file = match File::open(&theirs) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound && proc_dir.exists() => continue,
                Err(e) => return Err(gone(pid, &theirs)(e)),
            };
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).ok();
            let their_meta = file.metadata().map_err(gone(pid, &theirs))?;
            if ours.is_some_and(|o| o.ino() == their_meta.ino() && o.dev() == their_meta.dev()) {
                continue;
            }
            namespaces.push((name, flag, file));
        }
        Ok(Entry {
            pid,
            namespaces,
            cgroup_procs: Vec::new(),
            root: None,
            bounding: None,
            seccomp: None,
            run_dir: None,
            sysinfo: None,
        })
    }

    /// Also joins the cgroups `pid` is in, in every mounted hierarchy.
    pub fn cgroups_of_process(mut self) -> io::Result<Entry> {
        for file in cgroup::procs_files_of(self.pid)? {
            if !self.cgroup_procs.contains(&file) {
                self.cgroup_procs.push(file);
            }
        }
        Ok(self)
    }

    /// Also joins the cgroups whose `cgroup.procs` files these are (the
    /// monitor's: its zone's cgroup, from [`crate::cgroup`]).
    pub fn cgroup_procs(mut self, files: impl IntoIterator<Item = PathBuf>) -> Entry {
        for file in files {
            if !self.cgroup_procs.contains(&file) {
                self.cgroup_procs.push(file);
            }
        }
        self
    }

    /// Also changes root to `pid`'s root (`/proc/<pid>/root`) once in its
    /// mount namespace. Without it the root is the mount namespace's.
    pub fn chroot(mut self) -> io::Result<Entry> {
        let path = PathBuf::from(format!("/proc/{}/root", self.pid));
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&path)
            .map_err(gone(self.pid, &path))?;
        self.root = Some(root);
        Ok(self)
    }

    /// Also drops, once inside, the capabilities missing from `pid`'s
    /// bounding set, and installs the zone's seccomp filter when `pid` runs
    /// under one, so nothing started inside can hold more than it.
    ///
    /// The filter is rebuilt from the zone's `limit_priv` in the spec its
    /// monitor (`pid`'s parent, a `zonevisor-monitor <run_dir>`) runs; when
    /// that cannot be read, the default (strictest) profile applies.
    pub fn drop_capabilities(mut self) -> io::Result<Entry> {
        let status = read(format!("/proc/{}/status", self.pid))?;
        let cap_last: u32 =
            read("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
        self.bounding = capability_bounding_set(&status).map(|mask| (mask, cap_last));
        if status_field(&status, "Seccomp:").is_some_and(|v| v != "0") {
            let monitor = status_field(&status, "PPid:").and_then(|ppid| monitor_spec(ppid.parse().ok()?));
            let limit_priv = monitor.as_ref().map(|(_, spec)| spec.limit_priv.clone()).unwrap_or_default();
            let profile = security::Profile::from_limit_priv(&limit_priv);
            self.seccomp =
                Some(Filters { plain: profile.seccomp_program(false), notifying: profile.seccomp_program(true) });
            self.run_dir = monitor.map(|(run_dir, _)| run_dir);
        }
        Ok(self)
    }

    /// Also gives what runs inside the zone's answers to `sysinfo(2)` and `statfs(2)`
    /// (the zone's memory, not the host's; see [`crate::security`]): asks
    /// the zone's monitor, found by [`Entry::drop_capabilities`], to serve
    /// the listener of the filter [`Entry::enter`] installs. When there is
    /// no filter, no monitor, or the monitor does not agree within 2 s
    /// (an older monitor, one that is stopped), the filter has no such
    /// rules and the kernel answers those calls: never an error, never a hang.
    pub fn sysinfo_from_monitor(mut self) -> Entry {
        if let (Some(_), Some(run_dir)) = (&self.seccomp, &self.run_dir) {
            self.sysinfo =
                control::MonitorClient::new(run_dir).offer_sysinfo_listener(MONITOR_TIMEOUT).ok().map(OwnedFd::from);
        }
        self
    }

    /// As [`Entry::sysinfo_from_monitor`], for the monitor's own helpers:
    /// the listener goes to `sink`, a socket the monitor reads.
    pub fn sysinfo_to(mut self, sink: OwnedFd) -> Entry {
        if self.seccomp.is_some() {
            self.sysinfo = Some(sink);
        }
        self
    }

    /// Moves this process into the cgroups and namespaces: see the module
    /// documentation for the steps. The process stays there; its working
    /// directory is the zone's `/`. Stops at the first failure.
    pub fn enter(self) -> io::Result<()> {
        for file in &self.cgroup_procs {
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)
                .and_then(|mut f| f.write_all(b"0"))
                .map_err(context(format_args!("cannot join the zone's cgroup {}", file.display())))?;
        }
        let joins_user = self.namespaces.iter().any(|(name, _, _)| *name == "user");
        for (name, flag, file) in &self.namespaces {
            setns(file, *flag).map_err(context(format_args!("cannot enter the zone's {name} namespace")))?;
        }
        if let Some(root) = self.root {
            fchdir(&root).map_err(context("cannot enter the zone's root"))?;
            chroot(".").map_err(context("cannot enter the zone's root"))?;
        }
        chdir("/").map_err(context("cannot enter the zone's root"))?;
        // Supplementary groups may be refused in a user namespace (setgroups
        // "deny"); the ids must not.
        let _ = setgroups(&[]);
        if joins_user {
            setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                .map_err(context("cannot become gid 0 in the zone"))?;
            setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                .map_err(context("cannot become uid 0 in the zone"))?;
        }
        if let Some((mask, cap_last)) = self.bounding {
            for cap in 0..=cap_last.min(63) {
                if mask & (1u64 << cap) == 0 {
                    // SAFETY: prctl with PR_CAPBSET_DROP takes a capability
                    // number and touches no memory of ours.
                    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
                    if rc != 0 && Errno::last() != Errno::EINVAL {
                        return Err(context(format_args!("cannot drop capability {cap}"))(io::Error::last_os_error()));
                    }
                }
            }
        }
        let confine = context("cannot confine the command like the zone's init");
        match (&self.seccomp, &self.sysinfo) {
            (Some(f), Some(sink)) => match security::install_seccomp_with_listener(&f.notifying, &f.plain) {
                Ok(security::Installed::Listener(listener)) => {
                    // The filter cannot be taken back: the monitor agreed,
                    // and only its death (which ends the zone) loses this.
                    control::send_fd(sink.as_fd(), control::LISTENER_ENTERED, listener.as_fd())
                        .map_err(context("cannot hand the seccomp listener to the zone's monitor"))?;
                }
                // Dropping the sink tells the monitor there is nothing to serve.
                Ok(security::Installed::Plain(_)) => {}
                Err(e) => return Err(confine(e)),
            },
            (Some(f), None) => security::install_seccomp(&f.plain).map_err(confine)?,
            (None, _) => {}
        }
        Ok(())
    }
}

/// The value of `key` (e.g. `PPid:`) in a `/proc/<pid>/status` text.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

/// The run directory and spec of the zone whose monitor is `monitor_pid`,
/// if that process is a `zonevisor-monitor <run_dir>`.
fn monitor_spec(monitor_pid: i32) -> Option<(PathBuf, ZoneSpec)> {
    let cmdline = std::fs::read(format!("/proc/{monitor_pid}/cmdline")).ok()?;
    let mut args = cmdline.split(|b| *b == 0);
    let exe = args.next()?;
    if !exe.ends_with(b"zonevisor-monitor") {
        return None;
    }
    let run_dir = Path::new(std::ffi::OsStr::from_bytes(args.next()?));
    let spec = serde_json::from_slice(&std::fs::read(run_dir.join(control::SPEC_FILE)).ok()?).ok()?;
    Some((run_dir.to_path_buf(), spec))
}

fn gone(pid: i32, what: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| {
        let msg = format!("cannot open {}: {e} (has the zone's init, pid {pid}, exited?)", what.display());
        io::Error::new(e.kind(), msg)
    }
}

/// How the command's standard streams are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// The command uses the caller's stdin, stdout and stderr (pipes and
    /// terminals alike), in the caller's session. Every other descriptor
    /// the caller has is closed on exec, whatever its flags, as for the
    /// other two: only the three standard streams cross into the zone.
    Inherit,
    /// The command starts a new session with this descriptor (a terminal,
    /// e.g. the zone's console) as stdin, stdout and stderr; every other
    /// descriptor is closed on exec.
    Console(RawFd),
    /// As `Console`, and the terminal (a pty slave, see [`open_pty`])
    /// becomes the new session's controlling terminal (`TIOCSCTTY`), so
    /// job control, `^C` and `/dev/tty` work in the command.
    Pty(RawFd),
}

/// Opens a new pty in the mount namespace and root the caller is in (the
/// zone's, after [`Entry::enter`]): the master from `/dev/pts/ptmx` (the
/// zone's own devpts instance), the slave through the master
/// (`TIOCGPTPEER`, no path looked up). The slave is then a
/// `/dev/pts/<n>` of the zone's, owned by whoever opened it (the zone's
/// root). Both are close-on-exec; the master is nonblocking.
pub fn open_pty() -> io::Result<(File, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open("/dev/pts/ptmx")
        .map_err(context("cannot open the zone's /dev/pts/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads the int we pass; TIOCGPTPEER takes flags
    // and returns a new descriptor, owned below. On anything but a pty
    // master both fail, which is the check that /dev/pts/ptmx is one.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(context("/dev/pts/ptmx in the zone is not a pty multiplexer")(io::Error::last_os_error()));
        }
        let fd = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(context("cannot open the new pty's slave")(io::Error::last_os_error()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    Ok((master, slave))
}

/// A command to run where the caller is (inside a zone, after
/// [`Entry::enter`]): a program, its argv and its whole environment.
#[derive(Debug)]
pub struct Exec {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    stdio: Stdio,
    umask: Option<libc::mode_t>,
    /// Written to stderr before the reason when exec fails.
    exec_failed: Option<String>,
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("argument {s:?} holds a NUL byte")))
}

impl Exec {
    /// `program` (a path: there is no `PATH` search) with `argv` (`argv[0]`
    /// included) and nothing but `env` (`NAME=value` strings) in its
    /// environment; its streams are the caller's ([`Stdio::Inherit`]).
    /// Fails when a string holds a NUL byte.
    pub fn new<A: AsRef<str>, E: AsRef<str>>(program: &str, argv: &[A], env: &[E]) -> io::Result<Exec> {
        Ok(Exec {
            program: cstring(program)?,
            argv: argv.iter().map(|a| cstring(a.as_ref())).collect::<io::Result<_>>()?,
            env: env.iter().map(|a| cstring(a.as_ref())).collect::<io::Result<_>>()?,
            stdio: Stdio::Inherit,
            umask: None,
            exec_failed: None,
        })
    }

    /// Connects the command's standard streams.
    pub fn stdio(mut self, stdio: Stdio) -> Exec {
        self.stdio = stdio;
        self
    }

    /// Sets the command's umask (else it inherits the caller's).
    pub fn umask(mut self, mask: libc::mode_t) -> Exec {
        self.umask = Some(mask);
        self
    }

    /// When exec fails, says so on stderr as `<tool>: cannot execute <program>: <reason>`
    /// (without it the failure shows only in the status: 127, or 126).
    pub fn report_exec_failure(mut self, tool: &str) -> Exec {
        self.exec_failed = Some(format!("{tool}: cannot execute {}: ", self.program.to_string_lossy()));
        self
    }

    /// Forks, execs the command in the child (127 when the program is
    /// missing, 126 when it cannot be executed) and waits for it; returns
    /// its exit status, or 128 + the signal that killed it. SIGINT and
    /// SIGQUIT are ignored meanwhile (a terminal's ^C and ^\ are for the
    /// command alone) and are at their defaults in the command.
    ///
    /// The caller must be single-threaded: the child only makes syscalls
    /// on what was prepared before the fork.
    pub fn run(&self) -> io::Result<i32> {
        // SAFETY: installing SIG_IGN runs no handler code of ours.
        let old = unsafe { (signal(Signal::SIGINT, SigHandler::SigIgn), signal(Signal::SIGQUIT, SigHandler::SigIgn)) };
        let result = self.spawn().and_then(wait);
        // SAFETY: as above, restoring dispositions only.
        unsafe {
            if let Ok(h) = old.0 {
                let _ = signal(Signal::SIGINT, h);
            }
            if let Ok(h) = old.1 {
                let _ = signal(Signal::SIGQUIT, h);
            }
        }
        result
    }

    /// Forks and execs the command in the child (see [`Exec::run`]) and
    /// returns the child's pid at once; the caller waits for it ([`wait`]).
    /// The command starts with every signal unblocked and SIGINT, SIGQUIT
    /// and SIGPIPE at their defaults, whatever the caller's mask.
    ///
    /// The caller must be single-threaded (see [`Exec::run`]).
    pub fn spawn(&self) -> io::Result<Pid> {
        let argv = ptrs(&self.argv);
        let envp = ptrs(&self.env);
        // SAFETY: the caller is single-threaded (see above); the child only
        // makes async-signal-safe calls on data made before the fork.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => self.exec_child(&argv, &envp),
            Ok(ForkResult::Parent { child }) => Ok(child),
            Err(e) => Err(context("cannot fork")(e)),
        }
    }

    fn exec_child(&self, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> ! {
        // SAFETY: async-signal-safe calls only, on data made before fork;
        // argv and envp are null-terminated arrays of live C strings.
        unsafe {
            let _ = signal(Signal::SIGINT, SigHandler::SigDfl);
            let _ = signal(Signal::SIGQUIT, SigHandler::SigDfl);
            // Rust's runtime ignores SIGPIPE; the command must not inherit that.
            let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
            // Nor a mask its caller set up for a signalfd (exec keeps masks).
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            if let Stdio::Console(fd) | Stdio::Pty(fd) = self.stdio {
                libc::setsid();
                if matches!(self.stdio, Stdio::Pty(_)) && libc::ioctl(fd, libc::TIOCSCTTY, 0) != 0 {
                    let msg = b"cannot make the pty the command's controlling terminal (TIOCSCTTY)\n";
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::_exit(126);
                }
                for target in 0..3 {
                    libc::dup2(fd, target);
                }
            }
            // Only stdin, stdout and stderr cross into the zone: whatever
            // else the caller had open (a descriptor of a host directory,
            // say) would be a way out of the zone's root.
            libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32);
            if let Some(mask) = self.umask {
                libc::umask(mask);
            }
            libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let err = Errno::last();
            if let Some(prefix) = &self.exec_failed {
                let desc = err.desc();
                libc::write(2, prefix.as_ptr().cast(), prefix.len());
                libc::write(2, desc.as_ptr().cast(), desc.len());
                libc::write(2, b"\n".as_ptr().cast(), 1);
            }
            libc::_exit(if err == Errno::ENOENT { 127 } else { 126 })
        }
    }
}

fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Waits for `child` (from [`Exec::spawn`]) to end and returns its exit
/// status, or 128 + the signal that killed it.
pub fn wait(child: Pid) -> io::Result<i32> {
    loop {
        match waitpid(child, None) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(context("waiting for the command in the zone")(e)),
        }
    }
}

/// The exit status to report for a child's wait status: its exit code, or
/// 128 + the signal that killed it; `None` while it has not ended.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_mask() {
        let status = "Name:\tsh\nCapInh:\t0000000000000000\nCapBnd:\t00000000a80425fb\nSeccomp:\t0\n";
        assert_eq!(capability_bounding_set(status), Some(0xa80425fb));
        assert_eq!(capability_bounding_set("Name: x\n"), None);
        assert_eq!(status_field(status, "Seccomp:"), Some("0"));
        assert_eq!(status_field(status, "PPid:"), None);
        assert!(monitor_spec(std::process::id() as i32).is_none(), "not a monitor");
    }

    #[test]
    fn exit_codes() {
        let pid = nix::unistd::Pid::from_raw(5);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 7)), Some(7));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)), Some(143));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn our_own_namespaces_are_skipped() {
        let e = Entry::open(std::process::id() as i32).unwrap();
        assert!(e.namespaces.is_empty(), "{:?}", e.namespaces);
        let e = e.cgroup_procs([PathBuf::from("/a/cgroup.procs"), PathBuf::from("/a/cgroup.procs")]);
        assert_eq!(e.cgroup_procs.len(), 1);
        let err = Entry::open(i32::MAX).unwrap_err().to_string();
        assert!(err.contains(&format!("/proc/{}/ns/user", i32::MAX)) && err.contains("exited?"), "{err}");
    }

    #[test]
    fn exec_statuses_and_errors() {
        let env: [&str; 0] = [];
        let run = |script: &str| Exec::new("/bin/sh", &["sh", "-c", script], &env).unwrap().run().unwrap();
        assert_eq!(run("exit 7"), 7);
        assert_eq!(run("kill -TERM $$"), 143);
        assert_eq!(run("test -z \"$HOME\""), 0, "nothing of ours in the environment");
        let missing = Exec::new("/nonexistent/zonevisor", &["x"], &env).unwrap();
        assert_eq!(missing.run().unwrap(), 127);
        let nul = Exec::new("/bin/sh", &["a\0b"], &env).unwrap_err();
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
        assert!(nul.to_string().contains("NUL byte"));
    }
}
