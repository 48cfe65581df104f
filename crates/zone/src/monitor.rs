//! The per-instance monitor process (a zone's or a VM's): `zonevisor-monitor <run_dir>`.
//!
//! Started by [`crate::launch()`] or [`crate::launch_qemu()`], it reads `spec.json`, writes
//! `monitor.pid`, creates the instance's cgroup with its limits (the
//! monitor itself stays outside it), opens the console pty (output
//! appended to `console.log`, rotated to `console.log.1` past 1 MiB) and
//! the control socket, and has its **guest** start the instance's main
//! process. It reports to `launch` once that runs, then runs a single
//! `poll(2)` loop over a signalfd (SIGCHLD, SIGTERM), the control socket
//! and its connections, the pty master and the attached console client, if
//! any (`monitor/console.rs`), and the guest's own descriptors: no threads,
//! no runtime.
//!
//! # One supervisor, a guest per kind of instance
//!
//! What every instance shares is here: the loop, the control requests
//! (status, stop, reboot, kill, limits, console), the console, the restart
//! policy, the exit record and the cgroup. What differs sits behind the
//! `Guest` trait:
//!
//! | | `ZoneGuest` (`monitor/zone.rs`) | `QemuGuest` (`monitor/qemu.rs`) |
//! |---|---|---|
//! | main process | the zone's init, in new pid/mount/uts/ipc/cgroup namespaces, inside the user and network namespaces the monitor holds for the zone's whole life | QEMU, jailed (`monitor/jail.rs`: its own mount namespace on an empty read-only root, an unprivileged uid, no capabilities, `no_new_privs`), running once it answers on QMP |
//! | console | the pty slave is init's stdio and `/dev/console` | the pty slave is QEMU's stdin and stdout (`-chardev stdio`: the first serial port) |
//! | graceful shutdown | the zone's own `poweroff` run inside it (SIGPWR to init without one) | QMP `system_powerdown` (the ACPI power button) |
//! | forced | SIGKILL to init (and `cgroup.kill` for a stop) | QMP `quit`, SIGKILL 10 s later |
//! | forced reboot | kill init, start a new one | QMP `system_reset`, in place |
//! | how it ended | SIGHUP: a reboot; SIGINT: a halt; else its status or signal | the last `SHUTDOWN` event's reason, QEMU's status or signal, its stderr |
//! | restarts on its own | with `restart_init` | never |
//! | own descriptors | the seccomp listeners answering `sysinfo(2)`, `statfs(2)` and `uname(2)` (`monitor/notify.rs`) and the inbox they arrive on | the QMP connection |
//! | own requests | `set_tmpfs`, `sysinfo_listener` | `qmp` |
//!
//! ```text
//!              spawn ──> main process runs ─────────────── it ends on its own ──┐
//!                ^         │ stop / reboot / SIGTERM                             │
//!                │         v                                                     v
//!                │       ask_shutdown ── grace period over ──> force_down ─> (escalation) kill
//!                │         │                                     │
//!                │         └──────────── it ends ────────────────┘
//!                │                          │
//!                └── reboot requested, the guest rebooted itself, or
//!                    restart_init (at most 5 automatic restarts per 10 s)
//!                                           │ anything else
//!                                           v
//!          finish: cgroup emptied and removed, exit.json, socket and pid
//!          file removed, waiting `stop`s answered, the monitor exits
//! ```
//!
//! SIGTERM to the monitor means a graceful stop.
//!
//! The control socket is root's only, but a stalled client must not block
//! or exhaust the loop either: connections are nonblocking, a connection
//! has `REQUEST_TIMEOUT` (10 s) to send its request line and is dropped
//! after that, at most `MAX_CONNS` (32) wait at once (a new one pushes out
//! the oldest), and as many `stop` or `reboot` clients wait for the
//! instance (those that hung up go first). Replies are written with a 1 s
//! timeout.

mod child;

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::control::{self, MonitorStatus, Reply, Request, ZoneState};
use crate::launch::{LaunchError, Report, STATUS_FD_ENV};
use crate::rootfs::cvt;
use crate::spec::InstanceSpec;
use crate::{cgroup, ExitReason, ExitRecord, Limits};

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
/// Control connections waiting for their request, and requests waiting for
/// the instance to go down or come back: at most this many of each.
const MAX_CONNS: usize = 32;
/// The longest request line: `set_metadata` carries the whole instance,
/// its metadata included (which the daemon holds to 4 MiB).
const MAX_REQUEST: usize = 16 << 20;
/// How long a control connection may take to send its request line: the
/// daemon and `zlogin` send it at once, so a client that sends nothing or
/// half a line is only holding a slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The poll set's first entries: signals, the listener, the console's master
/// and client; then the connections, then the guest's descriptors.
const FIXED_FDS: usize = 4;

macro_rules! log {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stderr(), "{} zonevisor-monitor[{}]: {}", $crate::monitor::now_secs(), std::process::id(), format_args!($($t)*));
    }};
}

mod boot;
mod console;
mod jail;
pub(crate) mod mdata;
mod notify;
mod qemu;
mod statfs;
mod sysinfo;
mod tmpfs;
mod uname;
mod zone;

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
            log!("{} {} running, {} pid {}", m.guest.noun(), m.core.uuid, m.guest.main_name(), m.core.pid);
            report(Report { ok: true, monitor_pid: pid, init_pid: Some(m.core.pid), ..Report::default() });
            // End-of-file tells launch() we are done reporting.
            drop(status);
            // Only now: the boot's helper (a user-script may run for
            // minutes) must not hold the status pipe open, or launch(),
            // and the create or start waiting on it, would wait for it.
            m.attach_metadata(true);
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

/// How one main process ended.
struct Death {
    reason: ExitReason,
    code: Option<i32>,
    signal: Option<i32>,
    oom_killed: bool,
    /// In words, for the logs and `exit_reason`.
    how: String,
}

impl Death {
    /// A main process that exited with `code`.
    fn exited(code: i32, how: String) -> Death {
        Death { reason: ExitReason::Exited, code: Some(code), signal: None, oom_killed: false, how }
    }

    /// A main process that `reason` (a signal `sig`) ended.
    fn signaled(reason: ExitReason, sig: i32, how: String) -> Death {
        Death { reason, code: None, signal: Some(sig), oom_killed: false, how }
    }
}

/// What the monitor is taking the instance towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Intent {
    None,
    Stop,
    Reboot,
}

struct Conn {
    sock: UnixStream,
    buf: Vec<u8>,
    /// When the connection is dropped if its request has not come.
    deadline: Instant,
}

impl Conn {
    fn new(sock: UnixStream) -> Conn {
        Conn { sock, buf: Vec::new(), deadline: Instant::now() + REQUEST_TIMEOUT }
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

/// Makes room for one more waiting client: those that hung up go, then,
/// with [`MAX_CONNS`] waiting, the oldest.
fn make_room_for_waiter(waiters: &mut Vec<UnixStream>) {
    waiters.retain(|w| !hung_up(w));
    while waiters.len() >= MAX_CONNS {
        waiters.remove(0);
    }
}

/// Whether the client at the other end of `sock` has hung up.
fn hung_up(sock: &UnixStream) -> bool {
    let mut p = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: polling one live descriptor without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// What differs between the kinds of instance a monitor supervises (see
/// the module documentation). Every method gets the shared state,
/// [`Core`], read-only; the guest keeps its own.
trait Guest {
    /// The instance in words: `zone`, `VM`.
    fn noun(&self) -> &'static str;
    /// The main process in words: `init`, `QEMU`.
    fn main_name(&self) -> &'static str;
    /// Starts the main process and returns its pid once it runs.
    fn spawn(&mut self, core: &Core) -> Result<i32, LaunchError>;
    /// Asks the running instance to shut down.
    fn ask_shutdown(&mut self, core: &Core);
    /// Takes the instance down without asking. `Some(grace)`: if the main
    /// process still runs after `grace`, [`Guest::kill`] follows.
    fn force_down(&mut self, core: &Core) -> Option<Duration>;
    /// Kills the main process (for a stop, everything in the cgroup).
    fn kill(&mut self, core: &Core);
    /// A forced reboot in place, answering `sock` when done; the socket
    /// comes back when the guest has no such thing (the monitor then
    /// kills the main process and starts a new one).
    fn reset(&mut self, _core: &Core, sock: UnixStream) -> Option<UnixStream> {
        Some(sock)
    }
    /// How the main process ended (`status` from `waitpid`).
    fn death_of(&mut self, core: &Core, status: i32) -> Death;
    /// Whether a main process that ends on its own (neither halted nor
    /// rebooted) is started again.
    fn restarts_on_exit(&self) -> bool {
        false
    }
    /// The metadata service's end of the serial port the main process
    /// just started with (a VM's second serial port), once per spawn.
    fn take_metadata_stream(&mut self) -> Option<UnixStream> {
        None
    }
    /// The instance booted (started, or rebooted) with this metadata:
    /// what it asks of each boot (a zone's `user-script`).
    fn booted(&mut self, _core: &Core, _vm: &serde_json::Value) {}
    /// A child other than the main process ended.
    fn reaped(&mut self, _core: &Core, _pid: i32, _status: i32) {}
    /// Adds the guest's descriptors to the poll set.
    fn push_pollfds(&mut self, _pfds: &mut Vec<libc::pollfd>) {}
    /// Handles the guest's descriptors' events (`pfds`: what
    /// [`Guest::push_pollfds`] added, in its order); runs at every turn of
    /// the loop, before anything else.
    fn on_poll(&mut self, _core: &Core, _pfds: &[libc::pollfd]) {}
    /// When the loop must wake for the guest.
    fn wake_at(&self) -> Option<Instant> {
        None
    }
    /// A request the shared monitor does not handle.
    fn on_request(&mut self, _core: &Core, sock: UnixStream, req: Request) {
        send(&sock, &Reply::error(format!("{req:?} is not a request for this instance")));
    }
    /// New limits were applied to the cgroup.
    fn limits_applied(&mut self, _core: &Core, _limits: &Limits) {}
    /// The instance is down for good, or never came up: answer what
    /// waits, remove what the guest made.
    fn cleanup(&mut self, _core: &Core) {}
}

/// What every guest may read: the instance's shared state.
struct Core {
    run_dir: PathBuf,
    uuid: String,
    cgroup: String,
    /// The cgroup's `cgroup.procs` files, one per hierarchy.
    procs: Vec<PathBuf>,
    console: Console,
    /// The main process's pid (init, QEMU); 0 while none runs.
    pid: i32,
    /// When the current main process started, in seconds since the epoch.
    started_at: u64,
    intent: Intent,
    /// Automatic restarts of the main process since the instance booted.
    init_restarts: u32,
}

impl Core {
    fn status(&self) -> MonitorStatus {
        MonitorStatus {
            monitor_pid: std::process::id() as i32,
            init_pid: self.pid,
            state: if self.intent == Intent::None { ZoneState::Running } else { ZoneState::Stopping },
            started_at: self.started_at,
            init_restarts: self.init_restarts,
        }
    }
}

struct Monitor {
    core: Core,
    guest: Box<dyn Guest>,
    sigfd: OwnedFd,
    listener: UnixListener,
    killed: bool,
    /// When the grace period of a graceful stop or reboot ends.
    deadline: Option<Instant>,
    /// When a forced stop escalates to [`Guest::kill`].
    escalate: Option<Instant>,
    stop_waiters: Vec<UnixStream>,
    reboot_waiters: Vec<UnixStream>,
    conns: Vec<Conn>,
    restarts: Vec<Instant>,
    /// The instance's metadata service (`monitor/mdata.rs`).
    mdata: Option<mdata::Service>,
    /// The cgroup's OOM kill count when the current main process started
    /// (`None`: the kernel does not count them).
    oom_kills: Option<u64>,
    exit: Option<ExitRecord>,
}

fn step(name: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |e| LaunchError::new(name, e)
}

fn read_spec(run_dir: &Path) -> Result<InstanceSpec, LaunchError> {
    fs::read(run_dir.join(control::SPEC_FILE))
        .map_err(step("read spec"))
        .and_then(|b| InstanceSpec::from_json(&b).map_err(|e| LaunchError::new("read spec", e)))
}

impl Monitor {
    fn start(run_dir: PathBuf) -> Result<Monitor, LaunchError> {
        // SAFETY: umask has no preconditions. Everything the monitor creates is root-only.
        unsafe { libc::umask(0o077) };
        let spec = read_spec(&run_dir)?;
        let cgroup = spec.cgroup().to_owned();
        let mut cgroup_made = false;
        let res = Self::start_inner(&run_dir, spec, &mut cgroup_made);
        if res.is_err() {
            if cgroup_made {
                cgroup::destroy(&cgroup);
            }
            for f in [control::PID_FILE, control::SOCKET_FILE, control::SPEC_FILE] {
                let _ = fs::remove_file(run_dir.join(f));
            }
            let _ = fs::remove_dir_all(run_dir.join(mdata::ZONECONTROL_DIR));
            let console = run_dir.join(control::CONSOLE_FILE);
            if fs::metadata(&console).is_ok_and(|m| m.len() == 0) {
                let _ = fs::remove_file(console);
            }
        }
        res
    }

    fn start_inner(run_dir: &Path, spec: InstanceSpec, cgroup_made: &mut bool) -> Result<Monitor, LaunchError> {
        fs::write(run_dir.join(control::PID_FILE), format!("{}\n", std::process::id()))
            .map_err(step("write monitor.pid"))?;
        let sigfd = signalfd().map_err(step("signals"))?;
        let cgroup = spec.cgroup();
        cgroup::create(cgroup).map_err(|e| LaunchError::new("create cgroup", e))?;
        *cgroup_made = true;
        cgroup::apply_limits(cgroup, spec.limits()).map_err(|e| LaunchError::new("apply limits", e))?;
        let procs = cgroup::procs_files(cgroup).map_err(|e| LaunchError::new("create cgroup", e))?;
        let console = Console::open(run_dir).map_err(step("console"))?;
        let core = Core {
            run_dir: run_dir.to_owned(),
            uuid: spec.uuid().to_owned(),
            cgroup: cgroup.to_owned(),
            procs,
            console,
            pid: 0,
            started_at: 0,
            intent: Intent::None,
            init_restarts: 0,
        };
        let sock = run_dir.join(control::SOCKET_FILE);
        let _ = fs::remove_file(&sock);
        let listener = control::with_socket_path(run_dir, |p| UnixListener::bind(p))
            .map_err(|e| LaunchError::new("control socket", format!("{}: {e}", sock.display())))?;
        listener.set_nonblocking(true).map_err(step("control socket"))?;
        // A zone's metadata socket is there before its init (its mounts
        // bind the directory); a VM's serial port comes with each QEMU.
        let mdata = match &spec {
            InstanceSpec::Zone(z) => match &z.metadata {
                Some(md) => {
                    let mut s = mdata::Service::new(&z.uuid, md);
                    let owner = z.idmap.as_ref().map_or((0, 0), |m| (m.host_uid, m.host_gid));
                    s.listen(run_dir, owner).map_err(step("metadata socket"))?;
                    Some(s)
                }
                None => None,
            },
            InstanceSpec::Qemu(q) => q.metadata.as_ref().map(|md| mdata::Service::new(&q.uuid, md)),
        };
        let guest: Box<dyn Guest> = match spec {
            InstanceSpec::Zone(z) => Box::new(zone::ZoneGuest::new(z, &core)?),
            InstanceSpec::Qemu(q) => Box::new(qemu::QemuGuest::new(q)),
        };
        let mut m = Monitor {
            core,
            guest,
            sigfd,
            listener,
            killed: false,
            deadline: None,
            escalate: None,
            stop_waiters: Vec::new(),
            reboot_waiters: Vec::new(),
            conns: Vec::new(),
            restarts: Vec::new(),
            mdata,
            oom_kills: None,
            exit: None,
        };
        m.oom_kills = cgroup::oom_kills(&m.core.cgroup).ok().flatten();
        match m.guest.spawn(&m.core) {
            Ok(pid) => {
                m.core.pid = pid;
                m.core.started_at = now_secs();
                Ok(m)
            }
            Err(e) => {
                m.guest.cleanup(&m.core);
                Err(e)
            }
        }
    }

    fn run(&mut self) -> i32 {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(8);
        loop {
            pfds.clear();
            let console = self.core.console.interest();
            for (fd, events) in [
                (self.sigfd.as_raw_fd(), libc::POLLIN),
                (self.listener.as_raw_fd(), libc::POLLIN),
                console.master,
                console.client,
            ] {
                pfds.push(libc::pollfd { fd, events, revents: 0 });
            }
            for c in &self.conns {
                pfds.push(libc::pollfd { fd: c.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 });
            }
            let guest_from = pfds.len();
            self.guest.push_pollfds(&mut pfds);
            let mdata_from = pfds.len();
            if let Some(md) = self.mdata.as_mut() {
                md.push_pollfds(&mut pfds);
            }
            let conn_expiry = self.conns.iter().map(|c| c.deadline).min();
            let mdata_wake = self.mdata.as_ref().and_then(mdata::Service::wake_at);
            let wake = [self.deadline, self.escalate, self.guest.wake_at(), conn_expiry, mdata_wake]
                .into_iter()
                .flatten()
                .min();
            let timeout = wake.map_or(-1, |d| {
                let left = d.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            });
            // SAFETY: pfds is a live array of pollfds of the given length.
            if unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) } < 0 {
                continue;
            }
            // First: nothing below changes the guest's descriptors before it reads their events.
            self.guest.on_poll(&self.core, &pfds[guest_from..mdata_from]);
            if let Some(md) = self.mdata.as_mut() {
                md.on_poll(&pfds[mdata_from..]);
            }
            if pfds[2].revents != 0 {
                self.core.console.on_master(pfds[2].revents);
            }
            if pfds[3].revents != 0 {
                self.core.console.on_client(pfds[3].revents);
            }
            if pfds[0].revents != 0 {
                self.on_signals();
            }
            for i in (0..guest_from - FIXED_FDS).rev() {
                if pfds[i + FIXED_FDS].revents != 0 && i < self.conns.len() {
                    self.on_conn(i);
                }
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
                log!("grace period over: taking the {} down", self.guest.noun());
                self.force_down();
            }
            if self.escalate.is_some_and(|d| Instant::now() >= d) {
                self.escalate = None;
                if self.core.pid > 0 {
                    log!("{} {} still runs: killing it", self.guest.main_name(), self.core.pid);
                    self.guest.kill(&self.core);
                }
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
                libc::SIGTERM if self.exit.is_none() && self.core.intent != Intent::Stop => {
                    log!("SIGTERM: stopping the {}", self.guest.noun());
                    self.core.intent = Intent::Stop;
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
            if pid == self.core.pid {
                self.on_main_exit(status);
            } else {
                self.guest.reaped(&self.core, pid, status);
            }
        }
    }

    /// How the main process ended: the guest's reading, and a SIGKILL
    /// with the cgroup's OOM kill counter up since it started is the OOM
    /// killer's.
    fn death_of(&mut self, status: i32) -> Death {
        let mut death = self.guest.death_of(&self.core, status);
        let oom_now = cgroup::oom_kills(&self.core.cgroup).ok().flatten();
        if death.signal == Some(libc::SIGKILL) && matches!((self.oom_kills, oom_now), (Some(a), Some(b)) if b > a) {
            death.oom_killed = true;
            death.how =
                format!("{} was killed by the out-of-memory killer (signal {})", self.guest.main_name(), libc::SIGKILL);
            // (v1's "unlimited" is a huge number.)
            if let Some(limit) = cgroup::memory(&self.core.cgroup).ok().and_then(|m| m.limit).filter(|l| *l < 1 << 50) {
                death.how.push_str(&format!(
                    ": the {} used all of its memory ({} MiB)",
                    self.guest.noun(),
                    limit >> 20
                ));
            }
        }
        death
    }

    fn on_main_exit(&mut self, status: i32) {
        self.core.console.pump();
        let death = self.death_of(status);
        self.core.pid = 0;
        log!("{}", death.how);
        match (self.core.intent, death.reason) {
            (Intent::Stop, reason) => {
                // A zone's halt or reboot is init's signal, not its status; a
                // VM's guest powering off is QEMU's status 0.
                let code = death.code;
                let signal =
                    if reason == ExitReason::Signaled || reason == ExitReason::Exited { death.signal } else { None };
                let message = format!("stopped on request ({})", death.how);
                self.finish(ExitReason::Stopped, code, signal, death.oom_killed, message);
            }
            (Intent::Reboot, _) => self.restart(None, "reboot requested"),
            (Intent::None, ExitReason::Rebooted) => self.restart(Some(death), ""),
            (Intent::None, ExitReason::Halted) => self.finish(ExitReason::Halted, death.code, None, false, death.how),
            (Intent::None, _) if self.guest.restarts_on_exit() => self.restart(Some(death), "restart_init"),
            (Intent::None, reason) => self.finish(reason, death.code, death.signal, death.oom_killed, death.how),
        }
    }

    /// Starts a new main process: on request (`died` is `None`), or after
    /// the last one died on its own (`died`), at most [`MAX_RESTARTS`]
    /// times per [`RESTART_WINDOW`]; then the instance goes down, its exit
    /// record saying how that last one died.
    fn restart(&mut self, died: Option<Death>, why: &str) {
        if let Some(d) = &died {
            let now = Instant::now();
            self.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
            if self.restarts.len() >= MAX_RESTARTS {
                let msg = format!(
                    "{} restarted {MAX_RESTARTS} times within {} s; giving up ({})",
                    self.guest.main_name(),
                    RESTART_WINDOW.as_secs(),
                    d.how
                );
                let (code, signal) = if d.reason == ExitReason::Rebooted { (None, None) } else { (d.code, d.signal) };
                return self.finish(ExitReason::Failed, code, signal, d.oom_killed, msg);
            }
            self.restarts.push(now);
        }
        // `init_restarts` counts restart_init's restarts since the
        // instance (re)booted; a reboot starts the count again.
        // A boot, unless restart_init brings init back on its own.
        let boot = !(died.is_some() && why == "restart_init");
        if died.is_some() && why == "restart_init" {
            self.core.init_restarts = self.core.init_restarts.saturating_add(1);
        } else {
            self.core.init_restarts = 0;
        }
        let why = match died {
            Some(d) if !why.is_empty() => format!("{} ({why})", d.how),
            Some(d) => d.how,
            None => why.to_owned(),
        };
        log!("restarting the {}: {why}", self.guest.noun());
        self.oom_kills = cgroup::oom_kills(&self.core.cgroup).ok().flatten();
        match self.guest.spawn(&self.core) {
            Ok(pid) => {
                self.core.pid = pid;
                self.core.started_at = now_secs();
                self.attach_metadata(boot);
                self.core.intent = Intent::None;
                self.killed = false;
                self.deadline = None;
                self.escalate = None;
                log!("{} pid {pid}", self.guest.main_name());
                let reply = Reply { ok: true, status: Some(self.core.status()), ..Reply::default() };
                for w in std::mem::take(&mut self.reboot_waiters) {
                    send(&w, &reply);
                }
            }
            Err(e) => self.finish(ExitReason::Failed, None, None, false, format!("restart failed: {e}")),
        }
    }

    /// Hands the metadata service the serial port of the main process just
    /// started, if its guest has one; on a boot (not `restart_init`'s
    /// restarts) the guest does what the metadata asks of each boot.
    fn attach_metadata(&mut self, boot: bool) {
        if let (Some(md), Some(stream)) = (self.mdata.as_mut(), self.guest.take_metadata_stream()) {
            md.attach_serial(stream);
        }
        if let (true, Some(md)) = (boot, self.mdata.as_ref()) {
            self.guest.booted(&self.core, md.vm());
        }
    }

    /// The instance is down for good: clean up, record why, answer, and let `run` return.
    fn finish(
        &mut self,
        reason: ExitReason,
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
        message: String,
    ) {
        log!("{} down: {message}", self.guest.noun());
        self.core.console.pump();
        if let Err(e) = cgroup::try_destroy(&self.core.cgroup) {
            log!("removing cgroup {}: {e}", self.core.cgroup);
        }
        let rec = ExitRecord { reason, code, signal, oom_killed, message, at: now_secs() };
        let run_dir = &self.core.run_dir;
        let tmp = run_dir.join(".exit.json.tmp");
        let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
        if let Err(e) = fs::write(&tmp, json).and_then(|()| fs::rename(&tmp, run_dir.join(control::EXIT_FILE))) {
            log!("writing exit.json: {e}");
        }
        self.guest.cleanup(&self.core);
        let _ = fs::remove_file(run_dir.join(control::SOCKET_FILE));
        let _ = fs::remove_file(run_dir.join(control::PID_FILE));
        let _ = fs::remove_dir_all(run_dir.join(mdata::ZONECONTROL_DIR));
        let ok = Reply { ok: true, exit: Some(rec.clone()), ..Reply::default() };
        for w in std::mem::take(&mut self.stop_waiters) {
            send(&w, &ok);
        }
        let down = Reply::error(format!("the {} went down: {}", self.guest.noun(), rec.message));
        for w in std::mem::take(&mut self.reboot_waiters) {
            send(&w, &down);
        }
        self.exit = Some(rec);
    }

    fn accept(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            make_room(&mut self.conns);
            self.conns.push(Conn::new(sock));
        }
    }

    fn on_conn(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
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
            Ok(Request::Console) if self.exit.is_none() => self.core.console.attach(c.sock, &c.buf[end + 1..]),
            Ok(req) => self.on_request(c.sock, req),
            Err(e) => send(&c.sock, &Reply::error(format!("bad request: {e}"))),
        }
    }

    fn on_request(&mut self, sock: UnixStream, req: Request) {
        if let Some(rec) = &self.exit {
            let reply = match req {
                Request::Stop { .. } => Reply { ok: true, exit: Some(rec.clone()), ..Reply::default() },
                _ => Reply::error(format!("the {} is down", self.guest.noun())),
            };
            return send(&sock, &reply);
        }
        match req {
            Request::Status => send(&sock, &Reply { ok: true, status: Some(self.core.status()), ..Reply::default() }),
            Request::Stop { force, timeout_secs } => {
                log!("stop requested (force: {force})");
                self.core.intent = Intent::Stop;
                make_room_for_waiter(&mut self.stop_waiters);
                self.stop_waiters.push(sock);
                self.shutdown(force, timeout_secs);
            }
            Request::Reboot { force, timeout_secs } => {
                if self.core.intent == Intent::Stop {
                    return send(&sock, &Reply::error(format!("the {} is stopping", self.guest.noun())));
                }
                log!("reboot requested (force: {force})");
                let sock = if force && self.core.intent == Intent::None {
                    match self.guest.reset(&self.core, sock) {
                        Some(sock) => sock,
                        None => return,
                    }
                } else {
                    sock
                };
                self.core.intent = Intent::Reboot;
                make_room_for_waiter(&mut self.reboot_waiters);
                self.reboot_waiters.push(sock);
                self.shutdown(force, timeout_secs);
            }
            Request::Kill { signal } => {
                let pid = self.core.pid;
                // SAFETY: kill(2) has no memory-safety preconditions.
                let r = if pid > 0 && (1..=libc::SIGRTMAX()).contains(&signal) {
                    cvt(unsafe { libc::kill(pid, signal) })
                } else {
                    Err(io::Error::from_raw_os_error(libc::EINVAL))
                };
                match r {
                    Ok(_) => send(&sock, &Reply { ok: true, ..Reply::default() }),
                    Err(e) => send(&sock, &Reply::error(format!("signal {signal}: {e}"))),
                }
            }
            // Taken in on_conn, with the bytes that followed the request.
            Request::Console => self.core.console.attach(sock, &[]),
            Request::SetMetadata { vm } => match self.mdata.as_mut() {
                Some(md) => {
                    md.set_vm(vm);
                    send(&sock, &Reply { ok: true, ..Reply::default() })
                }
                None => send(&sock, &Reply::error(format!("the {} has no metadata service", self.guest.noun()))),
            },
            Request::SetLimits { limits } => match cgroup::apply_limits(&self.core.cgroup, &limits) {
                Ok(()) => {
                    self.guest.limits_applied(&self.core, &limits);
                    send(&sock, &Reply { ok: true, ..Reply::default() })
                }
                Err(e) => send(&sock, &Reply::error(e.to_string())),
            },
            other => self.guest.on_request(&self.core, sock, other),
        }
    }

    /// Starts taking the instance down: at once with `force`, else asks it
    /// and arms the deadline (a shorter one wins).
    fn shutdown(&mut self, force: bool, timeout_secs: Option<u64>) {
        if force {
            return self.force_down();
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
                self.guest.ask_shutdown(&self.core);
            }
        }
    }

    fn force_down(&mut self) {
        self.deadline = None;
        self.killed = true;
        self.escalate = self.guest.force_down(&self.core).map(|grace| Instant::now() + grace);
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

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: freshly created descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks (fork-like `clone3`) straight into the v2 cgroup `v2` where there
/// is one: moving a task between cgroups waits for an RCU grace period
/// (milliseconds). Returns the pid (0 in the child) and whether the child
/// is in `v2` already. The monitor is single-threaded, so the child may
/// keep running Rust code.
fn fork_into(v2: Option<&OwnedFd>, flags: u64) -> io::Result<(i32, bool)> {
    if let Some(fd) = v2 {
        let args = CloneArgs {
            flags: flags | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            cgroup: fd.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: a fork-like clone3 (no new stack, no shared VM) of a single-threaded process.
        let pid =
            unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
        if pid >= 0 {
            return Ok((pid as i32, true));
        }
    }
    // SAFETY: as above, with clone(2).
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    Ok((cvt(pid)? as i32, false))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(deadline: Instant) -> Conn {
        let (sock, _) = UnixStream::pair().unwrap();
        Conn { deadline, ..Conn::new(sock) }
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
