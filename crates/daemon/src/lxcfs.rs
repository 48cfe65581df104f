//! The daemon's lxcfs: a FUSE file system whose `proc/meminfo`,
//! `proc/cpuinfo`, `proc/stat`, ... answer with the reader's cgroup limits,
//! so `free`, `top` and `nproc` in a zone show its own memory cap and CPU
//! allowance, as a SmartOS zone's tools do. Zones get its files bound over
//! their `/proc` (`zonevisor_zone::lxcfs`).
//!
//! One lxcfs per daemon root, mounted on `<root>/run/lxcfs` (pid in
//! `<root>/run/lxcfs.pid`, output in `<root>/run/lxcfs.log`), started with
//! `--enable-cfs` (CPU views follow the CPU quota as well as the cpuset),
//! `--enable-loadavg` (per-zone load averages) and `--enable-pidfd`.
//!
//! ```text
//!  daemon start ── mount answers (fuse.lxcfs, proc/uptime reads)? ── yes ──> reuse it
//!                      │ no: kill the recorded lxcfs, lazy-umount a dead mount
//!                      v
//!                  spawn lxcfs -f (setsid, double fork: outlives the daemon,
//!                  even a kill -9) ── mounted within 10 s? ── no ──> unavailable
//!                      │ yes                                          (reason logged once,
//!                      v                                               zones get plain /proc)
//!                  serving ── zone start: still answering? ── no ──> restart it
//!                      │
//!  daemon stop ────────┴── no zone running: SIGTERM it (it unmounts); else leave it
//! ```
//!
//! Zones keep running across daemon restarts and their `/proc` files point
//! into this mount, so the daemon never stops lxcfs while a zone runs. If
//! lxcfs itself dies, the zones that were running keep bind mounts of the
//! dead connection (reads fail with `ENOTCONN`) until they restart.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `FUSE_SUPER_MAGIC` from `statfs(2)`.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// How long a fresh lxcfs gets to mount.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What is on the mount point.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Probe {
    /// A FUSE mount that answers.
    Serving,
    /// A FUSE mount whose server is gone (`ENOTCONN`) or does not answer.
    Dead,
    /// Nothing is mounted there.
    NotMounted,
    /// Some other file system (named) is mounted there.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not looked at yet.
    Unknown,
    /// lxcfs serves the mount point.
    Serving,
    /// No lxcfs for this daemon, and why.
    Unavailable(String),
}

/// The daemon's lxcfs.
pub(crate) struct Lxcfs {
    mountpoint: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    state: Mutex<State>,
}

impl Lxcfs {
    /// The lxcfs of the daemon whose runtime directory is `run`; nothing
    /// happens until [`Lxcfs::start`].
    pub(crate) fn new(run: &Path) -> Lxcfs {
        Lxcfs {
            mountpoint: run.join("lxcfs"),
            pidfile: run.join("lxcfs.pid"),
            log: run.join("lxcfs.log"),
            state: Mutex::new(State::Unknown),
        }
    }

    /// At daemon start: reuses a live lxcfs mount or starts a fresh lxcfs.
    /// When that is impossible (not installed, no `/dev/fuse`), says why
    /// once; zones then get the kernel's `/proc`.
    pub(crate) fn start(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match self.bring_up(true) {
            Ok(reused) => {
                let how = if reused { "reusing" } else { "started" };
                tracing::info!(mount = %self.mountpoint.display(), pid = ?self.pid(), "lxcfs: {how}");
                State::Serving
            }
            Err(why) => {
                tracing::warn!(
                    "lxcfs unavailable ({why}): zones will see the host's memory and CPUs in /proc \
                     (apt-get install lxcfs, then restart zonevisord)"
                );
                State::Unavailable(why)
            }
        };
    }

    /// Before a zone starts: the mount point to give it, restarting an
    /// lxcfs that died; `None` when this daemon has no lxcfs.
    pub(crate) fn ensure(&self) -> Option<PathBuf> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Unavailable(_) | State::Unknown => return None,
            State::Serving if probe(&self.mountpoint) == Probe::Serving => return Some(self.mountpoint.clone()),
            State::Serving => {}
        }
        tracing::error!(
            mount = %self.mountpoint.display(),
            "lxcfs stopped answering; starting a new one (zones started before keep a broken /proc view until they restart)"
        );
        match self.bring_up(false) {
            Ok(_) => Some(self.mountpoint.clone()),
            Err(why) => {
                tracing::error!("lxcfs: restart failed ({why}); zones get the host's /proc");
                *state = State::Unavailable(why);
                None
            }
        }
    }

    /// For `sysinfo`: `lxcfs`, or `none (why)`.
    pub(crate) fn describe(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match state {
            State::Serving if probe(&self.mountpoint) == Probe::Serving => "lxcfs".to_owned(),
            State::Serving => format!("none (lxcfs on {} stopped answering)", self.mountpoint.display()),
            State::Unavailable(why) => format!("none ({why})"),
            State::Unknown => "none (not started)".to_owned(),
        }
    }

    /// At daemon shutdown with no zone running: stops lxcfs (it unmounts
    /// itself on SIGTERM; a mount left behind is detached).
    pub(crate) fn stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state != State::Serving {
            return;
        }
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions; pid is checked to be our lxcfs.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            // It unmounts at once, then waits up to 5 s for its load-average
            // thread's next round: once unmounted, it is killed.
            let deadline = Instant::now() + Duration::from_secs(3);
            while mount_type(&self.mountpoint).is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            kill_and_wait(pid, &self.mountpoint);
        }
        detach_all(&self.mountpoint);
        let _ = fs::remove_file(&self.pidfile);
        *state = State::Unknown;
        tracing::info!("lxcfs stopped (no zone running)");
    }

    /// The recorded lxcfs's pid, when that process is alive and is ours.
    fn pid(&self) -> Option<i32> {
        let pid = fs::read_to_string(&self.pidfile).ok()?.trim().parse().ok()?;
        is_ours(pid, &self.mountpoint).then_some(pid)
    }

    /// Makes lxcfs serve the mount point: `Ok(true)` when one already did
    /// (checked to be `fuse.lxcfs` when `verify` is set), `Ok(false)` when a
    /// new one was started, or why not.
    fn bring_up(&self, verify: bool) -> Result<bool, String> {
        match probe(&self.mountpoint) {
            Probe::Serving if !verify || mount_type(&self.mountpoint).as_deref() == Some("fuse.lxcfs") => {
                return Ok(true);
            }
            Probe::Serving => {
                let t = mount_type(&self.mountpoint).unwrap_or_else(|| "fuse".into());
                return Err(format!("{} is already mounted ({t}), not by lxcfs", self.mountpoint.display()));
            }
            Probe::Other(t) => return Err(format!("{} is already mounted ({t})", self.mountpoint.display())),
            Probe::Dead | Probe::NotMounted => {}
        }
        let exe = find_program("lxcfs").ok_or("lxcfs is not installed")?;
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse is missing (modprobe fuse)".into());
        }
        // Whatever is left of an earlier one: a hung process (holding the
        // pid file's lock a new one needs), a dead mount.
        if let Some(pid) = self.pid() {
            kill_and_wait(pid, &self.mountpoint);
        }
        detach_all(&self.mountpoint);
        fs::create_dir_all(&self.mountpoint).map_err(|e| format!("creating {}: {e}", self.mountpoint.display()))?;
        self.spawn(&exe).map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if probe(&self.mountpoint) == Probe::Serving {
                return Ok(false);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(pid) = self.pid() {
            kill_and_wait(pid, &self.mountpoint);
        }
        detach_all(&self.mountpoint);
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        Err(format!("lxcfs did not mount {} within {} s ({last})", self.mountpoint.display(), START_TIMEOUT.as_secs()))
    }

    /// Starts `lxcfs -f` detached: its own session (no signal to the
    /// daemon's process group reaches it), re-parented away from the daemon
    /// (a double fork), stdio to the log, and as hard to OOM-kill as
    /// Debian's service makes it.
    fn spawn(&self, exe: &Path) -> io::Result<()> {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new(exe);
        cmd.args(["-f", "--enable-loadavg", "--enable-cfs", "--enable-pidfd", "-p"])
            .arg(&self.pidfile)
            .arg(&self.mountpoint)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir("/");
        // SAFETY: the closure runs in the forked child and makes only
        // async-signal-safe calls (setsid, open, write, close, fork, _exit).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"-1000".as_ptr().cast(), 5);
                    libc::close(fd);
                }
                match libc::fork() {
                    0 => Ok(()),
                    n if n < 0 => Err(io::Error::last_os_error()),
                    _ => libc::_exit(0),
                }
            })
        };
        // The intermediate child exits as soon as it has forked lxcfs.
        cmd.spawn()?.wait()?;
        Ok(())
    }
}

/// What is mounted on `dir`, and whether it answers. Reading `proc/uptime`
/// goes all the way to the FUSE server.
fn probe(dir: &Path) -> Probe {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return Probe::NotMounted };
    // SAFETY: statfs writes into a zeroed struct we own; the path is a valid C string.
    let st = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut st) != 0 {
            return match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOTCONN) | Some(libc::ECONNABORTED) => Probe::Dead,
                _ => Probe::NotMounted,
            };
        }
        st
    };
    if st.f_type as i64 != FUSE_SUPER_MAGIC {
        return match mount_type(dir) {
            Some(t) => Probe::Other(t),
            None => Probe::NotMounted,
        };
    }
    match fs::read(dir.join("proc/uptime")) {
        Ok(b) if !b.is_empty() => Probe::Serving,
        _ => Probe::Dead,
    }
}

/// The file system type of the mount on `dir` (the top one), from
/// `/proc/self/mountinfo`; `None` when nothing is mounted there.
fn mount_type(dir: &Path) -> Option<String> {
    mount_type_in(&fs::read_to_string("/proc/self/mountinfo").ok()?, dir)
}

fn mount_type_in(mountinfo: &str, dir: &Path) -> Option<String> {
    // Later lines are mounted on top of earlier ones.
    mountinfo.lines().rev().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let point = left.split(' ').nth(4)?;
        (Path::new(OsStr::from_bytes(&zonevisor_zone::unescape_mountinfo(point))) == dir)
            .then(|| right.split(' ').next().map(String::from))?
    })
}

/// Lazily unmounts everything stacked on `dir` (a dead FUSE mount cannot be
/// unmounted otherwise while zones hold copies of it).
fn detach_all(dir: &Path) {
    for _ in 0..16 {
        if mount_type(dir).is_none() {
            return;
        }
        if let Err(e) = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %dir.display(), error = %e, "lxcfs: unmounting");
            return;
        }
    }
}

/// SIGKILLs our lxcfs `pid` and waits (up to a second) until it is gone.
fn kill_and_wait(pid: i32, mountpoint: &Path) {
    if !is_ours(pid, mountpoint) {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; pid was just checked to be our lxcfs.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(1);
    while is_ours(pid, mountpoint) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` is an lxcfs serving `mountpoint` (its command line names it).
fn is_ours(pid: i32, mountpoint: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
    let mut args = cmdline.split(|b| *b == 0);
    let is_lxcfs = args.next().is_some_and(|a0| a0.ends_with(b"lxcfs"));
    !zombie && is_lxcfs && args.any(|a| a == mountpoint.as_os_str().as_bytes())
}

/// `name` in `$PATH` (or the usual system directories), as an executable file.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_types_from_mountinfo() {
        let mi = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
43 27 0:41 / /var/lib/zv/run/lxcfs rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0,allow_other
50 27 0:44 / /var/lib/my\\040root/run/lxcfs rw - fuse.lxcfs lxcfs rw
51 43 0:45 / /var/lib/zv/run/lxcfs rw - tmpfs tmpfs rw
";
        assert_eq!(mount_type_in(mi, Path::new("/var/lib/my root/run/lxcfs")).as_deref(), Some("fuse.lxcfs"));
        assert_eq!(mount_type_in(mi, Path::new("/var/lib/zv/run/lxcfs")).as_deref(), Some("tmpfs"), "the top one");
        assert_eq!(mount_type_in(mi, Path::new("/var/lib/zv/run")), None);
    }

    #[test]
    fn probe_tells_nothing_from_other_file_systems() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(probe(d.path()), Probe::NotMounted);
        assert_eq!(probe(&d.path().join("absent")), Probe::NotMounted);
    }

    #[test]
    fn processes_are_ours_only_by_command_line() {
        assert!(!is_ours(std::process::id() as i32, Path::new("/var/lib/zonevisor/run/lxcfs")));
        assert!(!is_ours(-1, Path::new("/x")));
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-zv").is_none());
    }
}
