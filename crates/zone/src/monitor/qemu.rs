//! The QEMU guest: a hardware VM whose main process is QEMU, jailed
//! (`jail.rs`), spoken to over QMP.
//!
//! **Start.** QEMU's stdin and stdout are the console pty's slave (so
//! `-chardev stdio` is the console, and `vmadm console` and `console.log`
//! work as for zones), its stderr is appended to `run_dir/qemu.log`. The
//! VM runs once the monitor has connected to the QMP socket (retried until
//! it appears) and left negotiation; a QEMU that exits before that fails
//! the start with the last lines of its stderr.
//!
//! **Lifecycle through QMP:**
//!
//! | request | what the monitor does |
//! |---|---|
//! | graceful stop | `system_powerdown` (the ACPI power button); after the grace period `quit`; [`QUIT_GRACE`] later SIGKILL |
//! | forced stop | `quit` at once (then SIGKILL after [`QUIT_GRACE`]) |
//! | graceful reboot | as a graceful stop, then a new QEMU (same pty: the console survives) |
//! | forced reboot | `system_reset`, QEMU keeps running |
//! | `kill` | the signal to QEMU |
//! | `qmp` | the command, its `return` back to the client |
//!
//! Guest reboots (`RESET` events) keep QEMU running; QEMU is not
//! restarted when it ends on its own (no `restart_init`).
//!
//! **Exit record.** The last `SHUTDOWN` event's reason says why QEMU
//! ended: `guest-shutdown` and exit status 0 is the guest powering off
//! (`Halted`, code 0, "the guest powered off"); QEMU killed by a signal is
//! `Signaled`; QEMU failing is its exit status with the last lines of
//! `qemu.log`.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zonevisor_vm::qmp::{self, Message, Qmp};

use super::{died_before_exec, fork_into, jail, now_secs, pipe, send, Core, Death, Guest, Intent, MAX_CONNS};
use crate::control::{self, Reply, Request};
use crate::launch::LaunchError;
use crate::rootfs;
use crate::{cgroup, ExitReason, QemuSpec};

/// QEMU's stderr, in the run directory.
pub(crate) const QEMU_LOG: &str = "qemu.log";
/// `qemu.log` is emptied at a start when it has grown past this.
const QEMU_LOG_MAX: u64 = 1 << 20;
/// How long QEMU has to answer on QMP after it was exec'd.
const QMP_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long QEMU has to exit after `quit` before it is killed.
pub(crate) const QUIT_GRACE: Duration = Duration::from_secs(10);
/// How many lines of QEMU's stderr an error or exit record quotes.
const TAIL_LINES: usize = 8;

/// Who waits for a QMP answer.
enum Waiter {
    /// A `qmp` request: the answer goes back as is.
    Client(UnixStream),
    /// A forced reboot: the monitor's status once QEMU has reset.
    Reset(UnixStream),
    /// The monitor itself (power button, quit): failures are logged.
    Monitor,
}

struct Pending {
    id: u64,
    command: String,
    waiter: Waiter,
    deadline: Instant,
}

/// What the monitor keeps for a VM (see the module documentation).
pub(super) struct QemuGuest {
    spec: QemuSpec,
    qmp: Option<Qmp>,
    next_id: u64,
    pending: VecDeque<Pending>,
    /// The reason of the last `SHUTDOWN` event of the current QEMU.
    shutdown: Option<String>,
    /// Where the current QEMU's stderr starts in `qemu.log`.
    log_from: u64,
    /// The monitor asked the current QEMU to quit.
    quit_sent: bool,
    /// A QEMU started whose metadata port nobody has connected to yet.
    metadata_fresh: bool,
}

impl QemuGuest {
    pub(super) fn new(spec: QemuSpec) -> QemuGuest {
        QemuGuest {
            spec,
            qmp: None,
            next_id: 0,
            pending: VecDeque::new(),
            shutdown: None,
            log_from: 0,
            quit_sent: false,
            metadata_fresh: false,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.spec.run_dir.join(QEMU_LOG)
    }

    /// Opens `qemu.log` for the next QEMU's stderr.
    fn open_log(&mut self) -> io::Result<fs::File> {
        let mut log = fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        if log.metadata()?.len() > QEMU_LOG_MAX {
            log.set_len(0)?;
        }
        writeln!(log, "-- {} zonevisor-monitor[{}]: starting QEMU", now_secs(), std::process::id())?;
        self.log_from = log.stream_position()?.max(log.metadata()?.len());
        Ok(log)
    }

    /// The last lines the current QEMU wrote on its stderr, on one line.
    fn stderr_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.log_path()) {
            let len = f.metadata().map_or(0, |m| m.len());
            let from = self.log_from.max(len.saturating_sub(16 * 1024));
            if f.seek(io::SeekFrom::Start(from)).is_ok() {
                let _ = f.take(16 * 1024).read_to_string(&mut text);
            }
        }
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("; ");
        if tail.is_empty() {
            "nothing on its stderr".to_owned()
        } else {
            tail
        }
    }

    /// Starts QEMU in its jail and connects to its QMP socket.
    fn spawn_qemu(&mut self, core: &Core) -> Result<i32, LaunchError> {
        self.qmp = None;
        self.shutdown = None;
        self.quit_sent = false;
        let log = self.open_log().map_err(|e| LaunchError::new("open qemu.log", e))?;
        // Sockets left by a QEMU that was killed would answer nothing.
        for path in std::iter::once(&self.spec.qmp).chain(self.spec.metadata_socket.as_ref()) {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(LaunchError::new("QEMU's sockets", format!("{}: {e}", path.display())))
                }
                _ => {}
            }
        }
        let v2 = cgroup::v2_dir(&core.cgroup).and_then(|d| rootfs::open_dir(&d).ok());
        let v2_procs = cgroup::v2_dir(&core.cgroup).map(|d| d.join("cgroup.procs"));
        let (err_r, err_w) = pipe().map_err(|e| LaunchError::new("fork", e))?;
        // Each QEMU gets fresh taps; they go when it does.
        let taps = self
            .spec
            .nics
            .iter()
            .map(|p| zonevisor_net::plan::open_vm_port(p).map_err(|e| LaunchError::new("network", e)))
            .collect::<Result<Vec<_>, _>>()?;
        // Opened before the fork, so that the child only attaches them.
        let mut plan = jail::Plan::new(
            &self.spec,
            core.procs.clone(),
            &core.run_dir,
            core.console.slave.as_raw_fd(),
            log.as_raw_fd(),
            taps.iter().map(|t| t.as_raw_fd()).collect(),
        )?;
        let (pid, in_v2) = fork_into(v2.as_ref(), 0).map_err(|e| LaunchError::new("fork", e))?;
        if pid == 0 {
            drop(err_r);
            if in_v2 {
                plan.skip_procs(v2_procs.as_deref());
            }
            jail::run(&plan, err_w);
        }
        drop((plan, err_w, v2, log, taps));
        let mut msg = Vec::new();
        let _ = fs::File::from(err_r).read_to_end(&mut msg);
        if msg.is_empty() && died_before_exec(pid) {
            msg = b"jail\0QEMU's child died before exec (see monitor.log)".to_vec();
        }
        if !msg.is_empty() {
            let mut status = 0;
            // SAFETY: reaping our own child, which failed before exec.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let text = String::from_utf8_lossy(&msg);
            let (s, m) = text.split_once('\0').unwrap_or(("jail", &text));
            return Err(LaunchError::new(s, m));
        }
        match self.connect(pid) {
            Ok(q) => {
                self.qmp = Some(q);
                self.metadata_fresh = true;
                Ok(pid)
            }
            Err(e) => {
                // SAFETY: kill and waitpid on our own child; a QEMU that
                // already exited was reaped by connect.
                unsafe {
                    if libc::kill(pid, libc::SIGKILL) == 0 {
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                Err(e)
            }
        }
    }

    /// Connects to the QMP socket of QEMU `pid` once it appears, failing
    /// with QEMU's stderr when QEMU exits first.
    fn connect(&self, pid: i32) -> Result<Qmp, LaunchError> {
        let deadline = Instant::now() + QMP_START_TIMEOUT;
        let sock = loop {
            let mut status = 0;
            // SAFETY: polling our own child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                return Err(LaunchError::new("start QEMU", format!("{}: {}", ended(status), self.stderr_tail())));
            }
            match qmp::connect_socket(&self.spec.qmp) {
                Ok(s) => break s,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(LaunchError::new(
                        "connect to QMP",
                        format!("{}: {e} (QEMU's stderr: {})", self.spec.qmp.display(), self.stderr_tail()),
                    ))
                }
            }
        };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        Qmp::handshake(sock, left)
            .map_err(|e| LaunchError::new("connect to QMP", format!("{e} (QEMU's stderr: {})", self.stderr_tail())))
    }

    /// Sends `command` for `waiter`; `false` when there is no QMP connection
    /// or the send failed (the waiter has been answered then).
    fn send_command(&mut self, command: &str, arguments: Option<&Value>, waiter: Waiter) -> bool {
        let Some(q) = self.qmp.as_mut() else {
            answer_error(waiter, "QEMU is not running (no QMP connection)");
            return false;
        };
        self.next_id += 1;
        let id = self.next_id;
        match q.send(command, arguments, &json!(id)) {
            Ok(()) => {
                let deadline = Instant::now() + control::QMP_TIMEOUT;
                self.pending.push_back(Pending { id, command: command.to_owned(), waiter, deadline });
                true
            }
            Err(e) => {
                log!("QMP {command}: {e}");
                answer_error(waiter, &format!("QMP {command}: {e}"));
                self.close_qmp("QEMU's QMP connection failed");
                false
            }
        }
    }

    /// Handles what QEMU sent.
    fn on_message(&mut self, core: &Core, m: Message) {
        match m {
            Message::Event(e) => {
                let name = qmp::event_name(&e);
                match name {
                    "SHUTDOWN" => {
                        let reason = e["data"]["reason"].as_str().unwrap_or("unknown").to_owned();
                        log!("QEMU: SHUTDOWN ({reason})");
                        self.shutdown = Some(reason);
                    }
                    "RESET" | "POWERDOWN" | "STOP" | "RESUME" | "GUEST_PANICKED" => {
                        log!("QEMU: {name} {}", e.get("data").map(Value::to_string).unwrap_or_default())
                    }
                    _ => {}
                }
            }
            Message::Return { id, value } => {
                if let Some(p) = self.take_pending(id.as_ref()) {
                    match p.waiter {
                        Waiter::Client(sock) => {
                            send(&sock, &Reply { ok: true, qmp_return: Some(value), ..Reply::default() })
                        }
                        Waiter::Reset(sock) => {
                            log!("QEMU reset the VM");
                            send(&sock, &Reply { ok: true, status: Some(core.status()), ..Reply::default() })
                        }
                        Waiter::Monitor => {}
                    }
                }
            }
            Message::Error { id, class, desc } => {
                if let Some(p) = self.take_pending(id.as_ref()) {
                    if matches!(p.waiter, Waiter::Monitor) {
                        log!("QMP {}: {class}: {desc}", p.command);
                    }
                    answer_error(p.waiter, &format!("QMP command failed: {class}: {desc}"));
                }
            }
            Message::Greeting(_) => {}
        }
    }

    fn take_pending(&mut self, id: Option<&Value>) -> Option<Pending> {
        let id = id?.as_u64()?;
        let i = self.pending.iter().position(|p| p.id == id)?;
        self.pending.remove(i)
    }

    /// Reads what QEMU sent (also after it exited: the socket keeps it).
    fn drain(&mut self, core: &Core) {
        let Some(q) = self.qmp.as_mut() else { return };
        let res = q.read_available();
        let closed = q.is_closed();
        match res {
            Ok(msgs) => msgs.into_iter().for_each(|m| self.on_message(core, m)),
            Err(e) => {
                if !matches!(e, qmp::QmpError::Closed) {
                    log!("QMP: {e}");
                }
                self.close_qmp("QEMU closed its QMP connection");
                return;
            }
        }
        if closed {
            self.close_qmp("QEMU closed its QMP connection");
        }
    }

    /// Drops the QMP connection and answers what waited on it.
    fn close_qmp(&mut self, why: &str) {
        self.qmp = None;
        for p in std::mem::take(&mut self.pending) {
            answer_error(p.waiter, why);
        }
    }
}

fn answer_error(waiter: Waiter, msg: &str) {
    match waiter {
        Waiter::Client(sock) | Waiter::Reset(sock) => send(&sock, &Reply::error(msg)),
        Waiter::Monitor => {}
    }
}

/// A `waitpid` status in words.
fn ended(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("QEMU exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("QEMU was killed by signal {}", libc::WTERMSIG(status))
    }
}

impl Guest for QemuGuest {
    fn noun(&self) -> &'static str {
        "VM"
    }

    fn main_name(&self) -> &'static str {
        "QEMU"
    }

    fn spawn(&mut self, core: &Core) -> Result<i32, LaunchError> {
        self.spawn_qemu(core)
    }

    fn take_metadata_stream(&mut self) -> Option<UnixStream> {
        if !std::mem::take(&mut self.metadata_fresh) || self.spec.metadata.is_none() {
            return None;
        }
        // QEMU made its chardevs before QMP answered.
        let path = self.spec.metadata_socket.as_ref()?;
        let (dir, name) = (path.parent()?, path.file_name()?.to_str()?);
        match control::with_short_path(dir, name, |p| UnixStream::connect(p)) {
            Ok(s) => Some(s),
            Err(e) => {
                log!("metadata: connecting to the second serial port ({}): {e}", path.display());
                None
            }
        }
    }

    fn ask_shutdown(&mut self, _core: &Core) {
        log!("pressing the VM's power button");
        self.send_command("system_powerdown", None, Waiter::Monitor);
    }

    fn force_down(&mut self, core: &Core) -> Option<Duration> {
        if core.pid <= 0 {
            return None;
        }
        if self.send_command("quit", None, Waiter::Monitor) {
            self.quit_sent = true;
            return Some(QUIT_GRACE);
        }
        self.kill(core);
        None
    }

    fn kill(&mut self, core: &Core) {
        if core.pid > 0 {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(core.pid, libc::SIGKILL) };
        }
        if core.intent == Intent::Stop {
            if let Err(e) = cgroup::kill(&core.cgroup) {
                log!("killing cgroup: {e}");
            }
        }
    }

    fn reset(&mut self, _core: &Core, sock: UnixStream) -> Option<UnixStream> {
        if self.qmp.is_none() {
            return Some(sock);
        }
        self.send_command("system_reset", None, Waiter::Reset(sock));
        None
    }

    fn death_of(&mut self, core: &Core, status: i32) -> Death {
        // QEMU's last words (its SHUTDOWN event) are still in the socket.
        self.drain(core);
        self.close_qmp("QEMU exited");
        if !libc::WIFEXITED(status) {
            let sig = libc::WTERMSIG(status);
            return Death::signaled(ExitReason::Signaled, sig, format!("QEMU was killed by signal {sig}"));
        }
        let code = libc::WEXITSTATUS(status);
        if code != 0 {
            return Death::exited(code, format!("QEMU exited with status {code}: {}", self.stderr_tail()));
        }
        match self.shutdown.as_deref() {
            Some("guest-shutdown") => Death {
                reason: ExitReason::Halted,
                code: Some(0),
                signal: None,
                oom_killed: false,
                how: "the guest powered off".to_owned(),
            },
            // Only with -no-reboot: a reboot the monitor carries out.
            Some("guest-reset") => Death {
                reason: ExitReason::Rebooted,
                code: Some(0),
                signal: None,
                oom_killed: false,
                how: "the guest rebooted".to_owned(),
            },
            Some("guest-panic") => Death::exited(0, "the guest panicked".to_owned()),
            Some("host-qmp-quit") => Death::exited(0, "QEMU quit on request".to_owned()),
            Some("host-signal") => Death::exited(0, "QEMU quit on a signal".to_owned()),
            Some(other) => Death::exited(0, format!("QEMU shut down ({other})")),
            None if self.quit_sent => Death::exited(0, "QEMU quit on request".to_owned()),
            None => Death::exited(0, "QEMU exited with status 0".to_owned()),
        }
    }

    fn push_pollfds(&mut self, pfds: &mut Vec<libc::pollfd>) {
        if let Some(q) = &self.qmp {
            let events = libc::POLLIN | if q.wants_write() { libc::POLLOUT } else { 0 };
            pfds.push(libc::pollfd { fd: q.as_raw_fd(), events, revents: 0 });
        }
    }

    fn on_poll(&mut self, core: &Core, pfds: &[libc::pollfd]) {
        if let (Some(p), Some(q)) = (pfds.first(), self.qmp.as_mut()) {
            if p.revents & libc::POLLOUT != 0 {
                if let Err(e) = q.flush() {
                    log!("QMP: {e}");
                    self.close_qmp("QEMU's QMP connection failed");
                }
            }
            if p.revents & !libc::POLLOUT != 0 {
                self.drain(core);
            }
        }
        let now = Instant::now();
        while self.pending.front().is_some_and(|p| p.deadline <= now) {
            if let Some(p) = self.pending.pop_front() {
                log!("QEMU did not answer {} within {} s", p.command, control::QMP_TIMEOUT.as_secs());
                answer_error(
                    p.waiter,
                    &format!("QEMU did not answer {} within {} s", p.command, control::QMP_TIMEOUT.as_secs()),
                );
            }
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.deadline)
    }

    fn on_request(&mut self, _core: &Core, sock: UnixStream, req: Request) {
        match req {
            Request::Qmp { command, arguments } => {
                if self.pending.len() >= MAX_CONNS {
                    return send(&sock, &Reply::error("too many QMP requests waiting for QEMU"));
                }
                self.send_command(&command, arguments.as_ref(), Waiter::Client(sock));
            }
            other => send(&sock, &Reply::error(format!("{other:?} is not a request for a VM"))),
        }
    }

    fn cleanup(&mut self, _core: &Core) {
        self.close_qmp("the VM is down");
        let _ = fs::remove_file(&self.spec.qmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitpid_statuses_in_words() {
        assert_eq!(ended(3 << 8), "QEMU exited with status 3");
        assert_eq!(ended(libc::SIGKILL), "QEMU was killed by signal 9");
    }
}
