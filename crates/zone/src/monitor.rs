//! The per-zone monitor process: `zonevisor-monitor <run_dir>`.
//!
//! Started by [`crate::launch()`], it reads `spec.json`, writes `monitor.pid`,
//! creates the cgroup (the monitor itself stays outside it), opens the
//! console pty (output appended to `console.log`, rotated to `console.log.1`
//! past 1 MiB), clones init into new user/pid/mount/uts/ipc/net/cgroup
//! namespaces (writing the user namespace's maps and idmapping the zone
//! root for it: see ARCHITECTURE.md) and reports to `launch` once init has
//! been exec'd. It then runs a single
//! `poll(2)` loop over a signalfd (SIGCHLD, SIGTERM), the control socket and
//! its connections, the pty master and the attached console client, if any
//! (`monitor/console.rs`), and the seccomp listeners through which it
//! answers the zone's `sysinfo(2)` and `statfs(2)` (`monitor/notify.rs`) and the socket
//! they arrive on: no threads, no runtime.
//!
//! When init dies the monitor decides: a reboot (init killed by SIGHUP, or a
//! `reboot` request) or an exit with `restart_init` starts a new init in the
//! same cgroup (at most 5 automatic restarts per 10 s); anything else is
//! final: the cgroup is emptied and removed, `exit.json` written, the socket
//! and pid file removed, pending `stop` requests answered, and the monitor exits.
//! SIGTERM to the monitor means a graceful stop.
//!
//! The control socket is root's only, but a stalled client must not block
//! or exhaust the loop either: connections are nonblocking, a connection
//! has `REQUEST_TIMEOUT` (10 s) to send its request line (or, after a
//! `sysinfo_listener` request, its listener) and is dropped after that, at
//! most `MAX_CONNS` (32) wait at once (a new one pushes out the oldest),
//! and as many `stop` or `reboot` clients wait for the zone (those that
//! hung up go first). Replies are written with a 1 s timeout.

mod child;

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::control::{self, MonitorStatus, Reply, Request, ZoneState, LISTENER_INIT};
use crate::launch::{LaunchError, Report, STATUS_FD_ENV};
use crate::rootfs::{self, cvt};
use crate::{cgroup, enter, ExitReason, ExitRecord, ZoneSpec};

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of `clone3(2)` (up to `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(10);
/// Control connections waiting for their request (or, after a
/// `sysinfo_listener` request, for the listener), and requests waiting for
/// the zone to go down or come back: at most this many of each.
const MAX_CONNS: usize = 32;
const MAX_REQUEST: usize = 64 * 1024;
/// How long a control connection may take to send its request line (or
/// its listener): the daemon and `zlogin` send it at once, so a client
/// that sends nothing or half a line is only holding a slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The poll set's first entries: signals, the listener, the console's master
/// and client, the inbox; then the connections, then the seccomp listeners.
const FIXED_FDS: usize = 5;
const SHUTDOWN_COMMANDS: [&str; 4] = ["sbin/poweroff", "usr/sbin/poweroff", "bin/poweroff", "sbin/halt"];

macro_rules! log {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stderr(), "{} zonevisor-monitor[{}]: {}", $crate::monitor::now_secs(), std::process::id(), format_args!($($t)*));
    }};
}

mod console;
mod notify;
mod statfs;
mod sysinfo;
mod tmpfs;

use console::Console;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Entry point of the `zonevisor-monitor` binary.
pub fn main() -> ! {
    let mut args = std::env::args_os().skip(1);
    let (Some(run_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: zonevisor-monitor <run_dir>");
        std::process::exit(2);
    };
    // SAFETY: setting a signal disposition; a client hanging up must not kill us.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut status =
        std::env::var(STATUS_FD_ENV).ok().and_then(|v| v.parse::<RawFd>().ok()).filter(|fd| *fd > 2).map(|fd| {
            // SAFETY: launch() passed us this descriptor (the status pipe) and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: F_SETFD on a descriptor we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
            fs::File::from(fd)
        });
    let mut report = |r: Report| {
        if let (Some(f), Ok(mut line)) = (status.as_mut(), serde_json::to_vec(&r)) {
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    };
    let pid = Some(std::process::id() as i32);
    match Monitor::start(PathBuf::from(run_dir)) {
        Ok(mut m) => {
            log!("zone {} running, init pid {}", m.spec.uuid, m.init_pid);
            report(Report { ok: true, monitor_pid: pid, init_pid: Some(m.init_pid), ..Report::default() });
            // End-of-file tells launch() we are done reporting.
            drop(status);
            std::process::exit(m.run())
        }
        Err(e) => {
            log!("start failed: {e}");
            report(Report {
                ok: false,
                monitor_pid: pid,
                step: Some(e.step),
                error: Some(e.message),
                ..Report::default()
            });
            // The pipe stays open until we exit: end-of-file means we are gone.
            std::process::exit(1)
        }
    }
}

/// How one init ended.
struct Death {
    reason: ExitReason,
    code: Option<i32>,
    signal: Option<i32>,
    oom_killed: bool,
    /// In words, for the logs and `exit_reason`.
    how: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    None,
    Stop,
    Reboot,
}

struct Conn {
    sock: UnixStream,
    buf: Vec<u8>,
    /// Agreed to a `sysinfo_listener` request: the listener comes next.
    listener: bool,
    /// When the connection is dropped if its request (or listener) has not come.
    deadline: Instant,
}

impl Conn {
    fn new(sock: UnixStream, listener: bool) -> Conn {
        Conn { sock, buf: Vec::new(), listener, deadline: Instant::now() + REQUEST_TIMEOUT }
    }
}

/// Drops the connections whose request did not come by `now`; how many.
fn drop_expired(conns: &mut Vec<Conn>, now: Instant) -> usize {
    let before = conns.len();
    conns.retain(|c| c.deadline > now);
    before - conns.len()
}

/// Makes room for one more connection: with [`MAX_CONNS`] waiting, the
/// oldest goes (a new client sends its request right away; the oldest has
/// had the longest to do so).
fn make_room(conns: &mut Vec<Conn>) {
    while conns.len() >= MAX_CONNS {
        let Some(oldest) = conns.iter().enumerate().min_by_key(|(_, c)| c.deadline).map(|(i, _)| i) else { return };
        conns.swap_remove(oldest);
    }
}

/// Makes room for one more waiting `stop` or `reboot` client: those that
/// hung up go, then, with [`MAX_CONNS`] waiting, the oldest.
fn make_room_for_waiter(waiters: &mut Vec<UnixStream>) {
    waiters.retain(|w| {
        let mut p = libc::pollfd { fd: w.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: polling one live descriptor without waiting.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n <= 0 || p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) == 0
    });
    while waiters.len() >= MAX_CONNS {
        waiters.remove(0);
    }
}

struct Monitor {
    run_dir: PathBuf,
    spec: ZoneSpec,
    procs: Vec<PathBuf>,
    sigfd: OwnedFd,
    listener: UnixListener,
    console: Console,
    /// Where init's child and the shutdown helpers send their seccomp
    /// listeners (a datagram socket pair: the monitor reads `inbox`, the
    /// children inherit `inbox_tx` until they exec).
    inbox: OwnedFd,
    inbox_tx: OwnedFd,
    listeners: notify::Listeners,
    /// What the answers to the zone's notified calls need.
    answers: notify::Answers,
    init_pid: i32,
    started_at: u64,
    /// `CLOCK_BOOTTIME` when init started: the zone's uptime counts from it.
    booted: Duration,
    intent: Intent,
    killed: bool,
    deadline: Option<Instant>,
    stop_waiters: Vec<UnixStream>,
    reboot_waiters: Vec<UnixStream>,
    conns: Vec<Conn>,
    helpers: Vec<i32>,
    restarts: Vec<Instant>,
    /// Automatic restarts of init since the zone booted.
    init_restarts: u32,
    /// The zone's OOM kill count when the current init started (`None`:
    /// the kernel does not count them).
    oom_kills: Option<u64>,
    exit: Option<ExitRecord>,
}

fn step(name: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |e| LaunchError::new(name, e)
}

impl Monitor {
    fn start(run_dir: PathBuf) -> Result<Monitor, LaunchError> {
        // SAFETY: umask has no preconditions. Everything the monitor creates is root-only.
        unsafe { libc::umask(0o077) };
        let spec: ZoneSpec = fs::read(run_dir.join(control::SPEC_FILE))
            .map_err(step("read spec"))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| LaunchError::new("read spec", e)))?;
        let mut cgroup_made = false;
        let res = Self::start_inner(run_dir.clone(), spec.clone(), &mut cgroup_made);
        if res.is_err() {
            if cgroup_made {
                cgroup::destroy(&spec.cgroup);
            }
            for f in [control::PID_FILE, control::SOCKET_FILE, control::SPEC_FILE] {
                let _ = fs::remove_file(run_dir.join(f));
            }
            let console = run_dir.join(control::CONSOLE_FILE);
            if fs::metadata(&console).is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(console);
            }
        }
        res
    }

    fn start_inner(run_dir: PathBuf, spec: ZoneSpec, cgroup_made: &mut bool) -> Result<Monitor, LaunchError> {
        fs::write(run_dir.join(control::PID_FILE), format!("{}\n", std::process::id()))
            .map_err(step("write monitor.pid"))?;
        let sigfd = signalfd().map_err(step("signals"))?;
        cgroup::create(&spec.cgroup).map_err(|e| LaunchError::new("create cgroup", e))?;
        *cgroup_made = true;
        cgroup::apply_limits(&spec.cgroup, &spec.limits).map_err(|e| LaunchError::new("apply limits", e))?;
        let procs = cgroup::procs_files(&spec.cgroup).map_err(|e| LaunchError::new("create cgroup", e))?;
        let console = Console::open(&run_dir).map_err(step("console"))?;
        if let Some(map) = spec.idmap {
            // The zone's root owns its console.
            nix::unistd::fchown(
                &console.slave,
                Some(nix::unistd::Uid::from_raw(map.host_uid)),
                Some(nix::unistd::Gid::from_raw(map.host_gid)),
            )
            .map_err(|e| LaunchError::new("console", io::Error::from(e)))?;
        }
        let sock = run_dir.join(control::SOCKET_FILE);
        let _ = fs::remove_file(&sock);
        let listener = control::with_socket_path(&run_dir, |p| UnixListener::bind(p))
            .map_err(|e| LaunchError::new("control socket", format!("{}: {e}", sock.display())))?;
        listener.set_nonblocking(true).map_err(step("control socket"))?;
        let (inbox, inbox_tx) = seqpacket_pair().map_err(step("seccomp listener"))?;
        let root_fs = statfs::RootFs::open(&spec.zone_root, spec.idmap.map_or(0, |m| m.host_uid));
        let mut m = Monitor {
            run_dir,
            spec,
            procs,
            sigfd,
            listener,
            console,
            inbox,
            inbox_tx,
            listeners: notify::Listeners::new(),
            answers: notify::Answers { sysinfo: sysinfo::Cache::default(), statfs: root_fs },
            init_pid: 0,
            started_at: 0,
            booted: Duration::ZERO,
            intent: Intent::None,
            killed: false,
            deadline: None,
            stop_waiters: Vec::new(),
            reboot_waiters: Vec::new(),
            conns: Vec::new(),
            helpers: Vec::new(),
            restarts: Vec::new(),
            init_restarts: 0,
            oom_kills: None,
            exit: None,
        };
        m.init_pid = m.spawn_init()?;
        m.started_at = now_secs();
        Ok(m)
    }

    /// Takes the listeners waiting in the inbox.
    fn drain_inbox(&mut self) {
        let mut tag = [0u8; 1];
        while let Ok((1, fds)) = control::recv_fds(self.inbox.as_fd(), &mut tag) {
            if let Some(fd) = fds.into_iter().next() {
                self.listeners.add(fd, tag[0] == LISTENER_INIT);
            }
        }
    }

    /// Clones and sets up the zone's init; returns its PID once it has exec'd.
    /// Init's seccomp listener is served once this returns (when the
    /// kernel gave one: the monitor's log says when not).
    fn spawn_init(&mut self) -> Result<i32, LaunchError> {
        // The previous init's filter is gone with its zone.
        self.listeners.drop_init();
        self.answers.sysinfo.refresh();
        self.oom_kills = cgroup::oom_kills(&self.spec.cgroup).ok().flatten();
        let plan = child::Plan::new(
            &self.spec,
            self.console.slave.as_raw_fd(),
            &self.console.slave_path,
            self.inbox_tx.as_raw_fd(),
        )?;
        let (err_r, err_w) = pipe().map_err(step("clone"))?;
        let (go_r, go_w) = pipe().map_err(step("clone"))?;
        let mut flags =
            (libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWNET)
                as u64;
        if self.spec.idmap.is_some() {
            // Created first by clone, the user namespace owns all the others.
            flags |= libc::CLONE_NEWUSER as u64;
        }
        // Fork straight into the v2 cgroup where there is one: moving a task
        // between cgroups waits for an RCU grace period (milliseconds). The
        // v1 hierarchies need the move; it overlaps with the child's mounts.
        let v2 = cgroup::v2_dir(&self.spec.cgroup).and_then(|d| rootfs::open_dir(&d).ok());
        let mut moves: Vec<&PathBuf> = self.procs.iter().collect();
        let mut pid = -1;
        if let Some(fd) = &v2 {
            let args = CloneArgs {
                flags: flags | CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: fd.as_raw_fd() as u64,
                ..CloneArgs::default()
            };
            // SAFETY: a fork-like clone3 (no new stack, no shared VM). The monitor
            // is single-threaded, so the child may keep running Rust code; it
            // never returns from child::run.
            pid =
                unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
            if pid >= 0 {
                let dir = cgroup::v2_dir(&self.spec.cgroup).unwrap_or_default().join("cgroup.procs");
                moves.retain(|p| **p != dir);
            }
        }
        if pid < 0 {
            // SAFETY: as above, with clone(2).
            pid =
                unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
        }
        if pid == 0 {
            drop((err_r, go_w, v2));
            child::run(&plan, err_w, go_r);
        }
        drop((err_w, go_r, v2));
        let pid = cvt(pid).map_err(step("clone"))? as i32;
        let mut go = fs::File::from(go_w);
        // First go: the user namespace is mapped and the root tree idmapped.
        // Second go: the child is in the zone's (v1) cgroups, moved while it
        // builds its root.
        let handoff =
            self.map_ids(pid, &plan).and_then(|()| go.write_all(b"1").map_err(step("user namespace"))).and_then(|()| {
                moves.iter().try_for_each(|f| {
                    fs::OpenOptions::new()
                        .write(true)
                        .open(f)
                        .and_then(|mut file| file.write_all(pid.to_string().as_bytes()))
                        .map_err(|e| LaunchError::new("join cgroup", format!("{}: {e}", f.display())))
                })
            });
        if handoff.is_ok() {
            let _ = go.write_all(b"1");
        }
        drop(go);
        drop(plan);
        let mut msg = Vec::new();
        let _ = fs::File::from(err_r).read_to_end(&mut msg);
        if msg.is_empty() && died_before_exec(pid) {
            msg = b"zone setup\0init died before exec (see monitor.log)".to_vec();
        }
        if msg.is_empty() {
            // init has exec'd: its listener, sent before exec, is waiting.
            self.booted = sysinfo::boottime();
            self.drain_inbox();
            if handoff.is_ok() && !self.listeners.has_init() {
                log!("init runs without a seccomp listener: sysinfo(2) and statfs(2) in the zone show the host's memory and the pool");
            }
            return handoff.map(|()| pid);
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        handoff?;
        let text = String::from_utf8_lossy(&msg);
        let (s, m) = text.split_once('\0').unwrap_or(("zone setup", &text));
        Err(LaunchError::new(s, m))
    }

    /// Writes the child's user namespace maps (root in the zone is the
    /// zone's host uid; `setgroups` stays allowed, as we write them with
    /// the host's privileges) and makes the zone root's tree an idmapped
    /// mount with them, so the image's files, owned by 0.. on disk, are the
    /// zone's own. Nothing to do for a zone without an id map.
    fn map_ids(&self, pid: i32, plan: &child::Plan) -> Result<(), LaunchError> {
        let Some(map) = self.spec.idmap else { return Ok(()) };
        if let Some(n) = self.spec.limits.locked_bytes {
            // Raising a hard limit takes CAP_SYS_RESOURCE on the host, which
            // init will not have: set it from here while init's ids are
            // still ours. Where we lack it too, init caps it at the host's.
            set_memlock(pid, n);
        }
        let s = step("user namespace");
        fs::write(format!("/proc/{pid}/uid_map"), format!("0 {} {}\n", map.host_uid, map.count)).map_err(s)?;
        fs::write(format!("/proc/{pid}/gid_map"), format!("0 {} {}\n", map.host_gid, map.count))
            .map_err(step("user namespace"))?;
        let userns = fs::File::open(format!("/proc/{pid}/ns/user")).map_err(step("user namespace"))?;
        rootfs::set_idmap(plan.trees.root.as_fd(), userns.as_fd())
            .map_err(|e| LaunchError::new("idmapped zone root", format!("{}: {e}", self.spec.zone_root.display())))
    }

    fn run(&mut self) -> i32 {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(8);
        loop {
            pfds.clear();
            let console = self.console.interest();
            for (fd, events) in [
                (self.sigfd.as_raw_fd(), libc::POLLIN),
                (self.listener.as_raw_fd(), libc::POLLIN),
                console.master,
                console.client,
            ] {
                pfds.push(libc::pollfd { fd, events, revents: 0 });
            }
            pfds.push(libc::pollfd { fd: self.inbox.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            for c in &self.conns {
                pfds.push(libc::pollfd { fd: c.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let served_from = pfds.len();
            self.listeners.push_pollfds(&mut pfds);
            let conn_expiry = self.conns.iter().map(|c| c.deadline).min();
            let wake = [self.deadline, self.listeners.wake_at(), conn_expiry].into_iter().flatten().min();
            let timeout = wake.map_or(-1, |d| {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            });
            // SAFETY: pfds is a live array of pollfds of the given length.
            if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) } < 0 {
                continue;
            }
            // First: nothing below changes the listeners before this reads their events.
            let zone = sysinfo::Zone { cgroup: &self.spec.cgroup, booted: self.booted };
            let answers = &mut self.answers;
            self.listeners.on_events(&pfds[served_from..], &mut |call| answers.answer(call, &zone));
            if pfds[2].revents != 0 {
                self.console.on_master(pfds[2].revents);
            }
            if pfds[3].revents != 0 {
                self.console.on_client(pfds[3].revents);
            }
            if pfds[0].revents != 0 {
                self.on_signals();
            }
            for i in (0..served_from - FIXED_FDS).rev() {
                if pfds[i + FIXED_FDS].revents != 0 && i < self.conns.len() {
                    self.on_conn(i);
                }
            }
            if pfds[4].revents != 0 {
                self.drain_inbox();
            }
            let expired = drop_expired(&mut self.conns, Instant::now());
            if expired > 0 {
                log!(
                    "dropped {expired} control connection(s) that sent no request within {} s",
                    REQUEST_TIMEOUT.as_secs()
                );
            }
            if pfds[1].revents != 0 {
                self.accept();
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                log!("grace period over: killing the zone");
                self.kill_zone();
            }
            if self.exit.is_some() {
                return 0;
            }
        }
    }

    fn on_signals(&mut self) {
        // SAFETY: signalfd_siginfo is plain data.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: reading one record into a buffer of its size.
            let n =
                unsafe { libc::read(self.sigfd.as_raw_fd(), (&mut si as *mut libc::signalfd_siginfo).cast(), size) };
            if n != size as isize {
                return;
            }
            match si.ssi_signo as i32 {
                libc::SIGCHLD => self.reap(),
                libc::SIGTERM if self.exit.is_none() && self.intent != Intent::Stop => {
                    log!("SIGTERM: stopping the zone");
                    self.intent = Intent::Stop;
                    self.shutdown(false, None);
                }
                _ => {}
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: reaping our own children.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            if pid == self.init_pid {
                self.on_init_exit(status);
            } else if let Some(i) = self.helpers.iter().position(|h| *h == pid) {
                self.helpers.swap_remove(i);
                let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
                log!("shutdown helper {pid} ended: {status:#x}");
                if matches!(code, Some(126 | 127)) && self.init_pid > 0 && self.exit.is_none() {
                    self.signal_shutdown();
                }
            }
        }
    }

    /// How init ended (`status` from `waitpid`): a signal with the
    /// zone's OOM kill counter up since it started is the OOM killer's.
    fn death_of(&self, status: i32) -> Death {
        if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            return Death {
                reason: ExitReason::Exited,
                code: Some(code),
                signal: None,
                oom_killed: false,
                how: format!("init exited with status {code}"),
            };
        }
        let sig = libc::WTERMSIG(status);
        let (reason, mut how) = match sig {
            libc::SIGHUP => (ExitReason::Rebooted, "init rebooted the zone".to_owned()),
            libc::SIGINT => (ExitReason::Halted, "init halted the zone".to_owned()),
            _ => (ExitReason::Signaled, format!("init was killed by signal {sig}")),
        };
        let oom_now = cgroup::oom_kills(&self.spec.cgroup).ok().flatten();
        let oom_killed = sig == libc::SIGKILL && matches!((self.oom_kills, oom_now), (Some(a), Some(b)) if b > a);
        if oom_killed {
            how = format!("init was killed by the out-of-memory killer (signal {sig})");
            // (v1's "unlimited" is a huge number.)
            if let Some(limit) = cgroup::memory(&self.spec.cgroup).ok().and_then(|m| m.limit).filter(|l| *l < 1 << 50) {
                how.push_str(&format!(": the zone used all of its memory ({} MiB)", limit >> 20));
            }
        }
        Death { reason, code: None, signal: Some(sig), oom_killed, how }
    }

    fn on_init_exit(&mut self, status: i32) {
        self.init_pid = 0;
        self.console.pump();
        let death = self.death_of(status);
        log!("{}", death.how);
        match (self.intent, death.reason) {
            (Intent::Stop, reason) => {
                let (code, signal) = if reason == ExitReason::Signaled || reason == ExitReason::Exited {
                    (death.code, death.signal)
                } else {
                    (None, None)
                };
                let message = format!("stopped on request ({})", death.how);
                self.finish(ExitReason::Stopped, code, signal, death.oom_killed, message);
            }
            (Intent::Reboot, _) => self.restart(None, "reboot requested"),
            (Intent::None, ExitReason::Rebooted) => self.restart(Some(death), ""),
            (Intent::None, ExitReason::Halted) => self.finish(ExitReason::Halted, None, None, false, death.how),
            (Intent::None, _) if self.spec.restart_init => self.restart(Some(death), "restart_init"),
            (Intent::None, reason) => self.finish(reason, death.code, death.signal, death.oom_killed, death.how),
        }
    }

    /// Starts a new init: on request (`died` is `None`), or after the last
    /// one died on its own (`died`), at most [`MAX_RESTARTS`] times per
    /// [`RESTART_WINDOW`]; then the zone goes down, its exit record saying
    /// how that last init died.
    fn restart(&mut self, died: Option<Death>, why: &str) {
        if let Some(d) = &died {
            let now = Instant::now();
            self.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
            if self.restarts.len() >= MAX_RESTARTS {
                let msg = format!(
                    "init restarted {MAX_RESTARTS} times within {} s; giving up ({})",
                    RESTART_WINDOW.as_secs(),
                    d.how
                );
                let (code, signal) = if d.reason == ExitReason::Rebooted { (None, None) } else { (d.code, d.signal) };
                return self.finish(ExitReason::Failed, code, signal, d.oom_killed, msg);
            }
            self.restarts.push(now);
        }
        // `init_restarts` counts restart_init's restarts since the zone
        // (re)booted; a reboot starts the count again.
        if died.is_some() && why == "restart_init" {
            self.init_restarts = self.init_restarts.saturating_add(1);
        } else {
            self.init_restarts = 0;
        }
        let why = match died {
            Some(d) if !why.is_empty() => format!("{} ({why})", d.how),
            Some(d) => d.how,
            None => why.to_owned(),
        };
        log!("restarting the zone: {why}");
        match self.spawn_init() {
            Ok(pid) => {
                self.init_pid = pid;
                self.started_at = now_secs();
                self.intent = Intent::None;
                self.killed = false;
                self.deadline = None;
                log!("init pid {pid}");
                let reply = Reply { ok: true, status: Some(self.status()), ..Reply::default() };
                for w in std::mem::take(&mut self.reboot_waiters) {
                    send(&w, &reply);
                }
            }
            Err(e) => self.finish(ExitReason::Failed, None, None, false, format!("restart failed: {e}")),
        }
    }

    /// The zone is down for good: clean up, record why, answer, and let `run` return.
    fn finish(
        &mut self,
        reason: ExitReason,
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        message: String,
    ) {
        log!("zone down: {message}");
        self.console.pump();
        if let Err(e) = cgroup::try_destroy(&self.spec.cgroup) {
            log!("removing cgroup {}: {e}", self.spec.cgroup);
        }
        let rec = ExitRecord { reason, code, signal, oom_killed, message, at: now_secs() };
        let tmp = self.run_dir.join(".exit.json.tmp");
        let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
        if let Err(e) = fs::write(&tmp, json).and_then(|()| fs::rename(&tmp, self.run_dir.join(control::EXIT_FILE))) {
            log!("writing exit.json: {e}");
        }
        let _ = fs::remove_file(self.run_dir.join(control::SOCKET_FILE));
        let _ = fs::remove_file(self.run_dir.join(control::PID_FILE));
        let ok = Reply { ok: true, exit: Some(rec.clone()), ..Reply::default() };
        for w in std::mem::take(&mut self.stop_waiters) {
            send(&w, &ok);
        }
        let down = Reply::error(format!("the zone went down: {}", rec.message));
        for w in std::mem::take(&mut self.reboot_waiters) {
            send(&w, &down);
        }
        self.exit = Some(rec);
    }

    fn status(&self) -> MonitorStatus {
        MonitorStatus {
            monitor_pid: std::process::id() as i32,
            init_pid: self.init_pid,
            state: if self.intent == Intent::None { ZoneState::Running } else { ZoneState::Stopping },
            started_at: self.started_at,
            init_restarts: self.init_restarts,
        }
    }

    fn accept(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            make_room(&mut self.conns);
            self.conns.push(Conn::new(sock, false));
        }
    }

    fn on_conn(&mut self, i: usize) {
        if self.conns[i].listener {
            return self.on_listener_conn(i);
        }
        let mut buf = [0u8; 1024];
        let c = &mut self.conns[i];
        match c.sock.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Ok(0) | Err(_) => {
                self.conns.swap_remove(i);
                return;
            }
            Ok(n) => c.buf.extend_from_slice(&buf[..n]),
        }
        let Some(end) = c.buf.iter().position(|b| *b == b'\n') else {
            if c.buf.len() > MAX_REQUEST {
                self.conns.swap_remove(i);
            }
            return;
        };
        let c = self.conns.swap_remove(i);
        match serde_json::from_slice::<Request>(&c.buf[..end]) {
            Ok(Request::Console) if self.exit.is_none() => self.console.attach(c.sock, &c.buf[end + 1..]),
            Ok(req) => self.on_request(c.sock, req),
            Err(e) => send(&c.sock, &Reply::error(format!("bad request: {e}"))),
        }
    }

    /// The listener a `sysinfo_listener` client sends once we agreed; its
    /// end-of-file instead means it got none (nothing to serve).
    fn on_listener_conn(&mut self, i: usize) {
        let mut byte = [0u8; 1];
        match control::recv_fds(self.conns[i].sock.as_fd(), &mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok((n, fds)) => {
                self.conns.swap_remove(i);
                if let (1, Some(fd)) = (n, fds.into_iter().next()) {
                    self.listeners.add(fd, false);
                }
            }
            Err(_) => {
                self.conns.swap_remove(i);
            }
        }
    }

    fn on_request(&mut self, sock: UnixStream, req: Request) {
        if let Some(rec) = &self.exit {
            let reply = match req {
                Request::Stop { .. } => Reply { ok: true, exit: Some(rec.clone()), ..Reply::default() },
                _ => Reply::error("the zone is down"),
            };
            return send(&sock, &reply);
        }
        match req {
            Request::Status => send(&sock, &Reply { ok: true, status: Some(self.status()), ..Reply::default() }),
            Request::Stop { force, timeout_secs } => {
                log!("stop requested (force: {force})");
                self.intent = Intent::Stop;
                make_room_for_waiter(&mut self.stop_waiters);
                self.stop_waiters.push(sock);
                self.shutdown(force, timeout_secs);
            }
            Request::Reboot { force, timeout_secs } => {
                if self.intent == Intent::Stop {
                    return send(&sock, &Reply::error("the zone is stopping"));
                }
                log!("reboot requested (force: {force})");
                self.intent = Intent::Reboot;
                make_room_for_waiter(&mut self.reboot_waiters);
                self.reboot_waiters.push(sock);
                self.shutdown(force, timeout_secs);
            }
            Request::Kill { signal } => {
                // SAFETY: kill(2) has no memory-safety preconditions.
                let r = if self.init_pid > 0 && (1..=libc::SIGRTMAX()).contains(&signal) {
                    cvt(unsafe { libc::kill(self.init_pid, signal) })
                } else {
                    Err(io::Error::from_raw_os_error(libc::EINVAL))
                };
                match r {
                    Ok(_) => send(&sock, &Reply { ok: true, ..Reply::default() }),
                    Err(e) => send(&sock, &Reply::error(format!("signal {signal}: {e}"))),
                }
            }
            // Taken in on_conn, with the bytes that followed the request.
            Request::Console => self.console.attach(sock, &[]),
            Request::SysinfoListener => {
                if !self.listeners.has_room() {
                    return send(&sock, &Reply::error("too many seccomp listeners"));
                }
                send(&sock, &Reply { ok: true, ..Reply::default() });
                if sock.set_nonblocking(true).is_ok() {
                    make_room(&mut self.conns);
                    self.conns.push(Conn::new(sock, true));
                }
            }
            Request::SetTmpfs { bytes } => {
                let old = self.spec.tmpfs_bytes.unwrap_or(0);
                if old > 0 && bytes > 0 && old != bytes {
                    if let Err(e) = tmpfs::resize(self.init_pid, bytes) {
                        return send(&sock, &Reply::error(e.to_string()));
                    }
                    log!("/tmp resized to {} MiB", bytes >> 20);
                } else if old != bytes {
                    log!("tmpfs set to {} MiB from the zone's next boot", bytes >> 20);
                }
                // What a reboot in place mounts.
                self.spec.tmpfs_bytes = Some(bytes).filter(|b| *b > 0);
                send(&sock, &Reply { ok: true, ..Reply::default() })
            }
            Request::SetLimits { limits } => match cgroup::apply_limits(&self.spec.cgroup, &limits) {
                Ok(()) => {
                    self.answers.sysinfo.refresh();
                    if let Some(n) = limits.locked_bytes {
                        // Init's limit, inherited by what it starts from now on.
                        set_memlock(self.init_pid, n);
                    }
                    let l = &mut self.spec.limits;
                    l.locked_bytes = limits.locked_bytes.or(l.locked_bytes);
                    send(&sock, &Reply { ok: true, ..Reply::default() })
                }
                Err(e) => send(&sock, &Reply::error(e.to_string())),
            },
        }
    }

    /// Starts taking the zone down: at once with `force`, else asks it and
    /// arms the kill deadline (a shorter one wins).
    fn shutdown(&mut self, force: bool, timeout_secs: Option<u64>) {
        if force {
            return self.kill_zone();
        }
        if self.killed {
            return;
        }
        // Bounded (control::MAX_STOP_TIMEOUT): an absurd timeout must not overflow the clock.
        let deadline = Instant::now() + control::stop_grace(timeout_secs);
        match self.deadline {
            Some(d) if d <= deadline => {}
            Some(_) => self.deadline = Some(deadline),
            None => {
                self.deadline = Some(deadline);
                self.ask_shutdown();
            }
        }
    }

    fn kill_zone(&mut self) {
        self.deadline = None;
        self.killed = true;
        if self.init_pid > 0 {
            // SAFETY: kill(2) has no memory-safety preconditions. Killing a PID namespace's init kills the namespace.
            unsafe { libc::kill(self.init_pid, libc::SIGKILL) };
        }
        // Not before a reboot: on Linux 6.18 a cgroup once killed through
        // cgroup.kill makes every later CLONE_INTO_CGROUP child die at birth
        // (kill_seq is sampled before the target cgroup is known).
        if self.intent == Intent::Stop {
            if let Err(e) = cgroup::kill(&self.spec.cgroup) {
                log!("killing cgroup: {e}");
            }
        }
    }

    /// Runs the zone's poweroff (or halt) inside it, or signals init when it has none.
    fn ask_shutdown(&mut self) {
        let init = self.init_pid;
        let found = rootfs::open_dir(Path::new(&format!("/proc/{init}/root"))).ok().and_then(|root| {
            SHUTDOWN_COMMANDS.iter().find(|c| {
                rootfs::open_in(root.as_fd(), Path::new(c), libc::O_PATH, 0)
                    .is_ok_and(|f| rootfs::is_dir(f.as_fd()).is_ok_and(|d| !d))
            })
        });
        match found.map(|c| self.spawn_helper(&format!("/{c}"))) {
            Some(Ok(pid)) => {
                log!("running /{} in the zone (pid {pid})", found.unwrap_or(&""));
                self.helpers.push(pid);
            }
            Some(Err(e)) => {
                log!("cannot run the zone's shutdown command: {e}");
                self.signal_shutdown();
            }
            None => self.signal_shutdown(),
        }
    }

    fn signal_shutdown(&self) {
        let init = self.init_pid;
        if init <= 0 {
            return;
        }
        let systemd = fs::read_link(format!("/proc/{init}/exe"))
            .is_ok_and(|p| p.as_os_str().as_bytes().windows(7).any(|w| w == b"systemd"));
        log!("signalling init {init} to shut down{}", if systemd { " (systemd)" } else { "" });
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(init, libc::SIGPWR);
            if systemd {
                libc::kill(init, libc::SIGRTMIN() + 4);
            }
        }
    }

    /// Forks a helper that runs `path` in the zone (see [`child::run_helper`]).
    fn spawn_helper(&self, path: &str) -> io::Result<i32> {
        // Opened here, so a zone that is gone is an error for the caller.
        let entry = enter::Entry::open(self.init_pid)?
            .cgroup_procs(self.procs.iter().cloned())
            .drop_capabilities()?
            .sysinfo_to(self.inbox_tx.try_clone()?);
        let exec = enter::Exec::new(path, &[path], &child::zone_env())?
            .stdio(enter::Stdio::Console(self.console.slave.as_raw_fd()))
            .umask(0o022);
        // SAFETY: the monitor is single-threaded; the child never returns from run_helper.
        let pid = cvt(unsafe { libc::fork() })?;
        if pid == 0 {
            child::run_helper(entry, &exec);
        }
        Ok(pid)
    }
}

fn send(sock: &UnixStream, reply: &Reply) {
    if let Ok(mut line) = serde_json::to_vec(reply) {
        line.push(b'\n');
        let _ = sock.set_nonblocking(false);
        let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
        let _ = (&*sock).write_all(&line);
    }
}

/// Whether child `pid` (whose error pipe saw end-of-file without a message)
/// is a zombie still named like the monitor, i.e. it never reached exec.
fn died_before_exec(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ours = fs::read_to_string("/proc/self/comm").unwrap_or_default();
    match (stat.split_once(" ("), stat.rsplit_once(") ")) {
        (Some((_, rest)), Some((_, state))) => {
            state.starts_with('Z') && rest.rsplit_once(") ").is_some_and(|(comm, _)| comm == ours.trim_end())
        }
        _ => false,
    }
}

/// A close-on-exec `SOCK_SEQPACKET` pair, the first end nonblocking.
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array we own.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: freshly created descriptors, owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    cvt(unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((r, w))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: freshly created descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a set we own, then sigprocmask/signalfd with it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        cvt(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
        let fd = cvt(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Sets `pid`'s RLIMIT_MEMLOCK (`max_locked_memory`) to `bytes`. Without
/// CAP_SYS_RESOURCE the hard limit cannot be raised, so the soft limit is
/// then capped at the hard one the host gives.
fn set_memlock(pid: i32, bytes: u64) {
    let mut lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: prlimit reads and writes only the rlimit structs we pass.
    unsafe {
        if libc::prlimit(pid, libc::RLIMIT_MEMLOCK, &lim, std::ptr::null_mut()) != 0
            && libc::prlimit(pid, libc::RLIMIT_MEMLOCK, std::ptr::null(), &mut lim) == 0
        {
            lim.rlim_cur = lim.rlim_max.min(bytes);
            libc::prlimit(pid, libc::RLIMIT_MEMLOCK, &lim, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(deadline: Instant) -> Conn {
        let (sock, _) = UnixStream::pair().unwrap();
        Conn { deadline, ..Conn::new(sock, false) }
    }

    #[test]
    fn stalled_connections_expire_and_make_room() {
        let now = Instant::now();
        let mut conns: Vec<Conn> = (0..MAX_CONNS as u64).map(|i| conn(now + Duration::from_secs(i + 1))).collect();
        make_room(&mut conns);
        assert_eq!(conns.len(), MAX_CONNS - 1);
        assert!(conns.iter().all(|c| c.deadline > now + Duration::from_secs(1)), "the oldest went");
        conns.push(conn(now + REQUEST_TIMEOUT));
        assert_eq!(drop_expired(&mut conns, now + Duration::from_secs(5)), 4);
        let left = conns.len();
        assert_eq!(drop_expired(&mut conns, now + Duration::from_secs(1000)), left);
        assert!(conns.is_empty());
    }

    #[test]
    fn waiters_that_hung_up_go_first() {
        let mut kept = Vec::new();
        let mut waiters = Vec::new();
        for i in 0..MAX_CONNS {
            let (ours, theirs) = UnixStream::pair().unwrap();
            waiters.push(ours);
            if i % 2 == 0 {
                kept.push(theirs);
            }
        }
        make_room_for_waiter(&mut waiters);
        assert_eq!(waiters.len(), MAX_CONNS / 2, "the clients that left are dropped");
        let mut full: Vec<UnixStream> = (0..MAX_CONNS)
            .map(|_| UnixStream::pair().unwrap())
            .map(|(a, b)| {
                kept.push(b);
                a
            })
            .collect();
        let second = full[1].as_raw_fd();
        make_room_for_waiter(&mut full);
        assert_eq!(full.len(), MAX_CONNS - 1);
        assert_eq!(full[0].as_raw_fd(), second, "the oldest live one goes when all are live");
    }
}
