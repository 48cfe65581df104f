//! Starting an instance: spawning its detached monitor and waiting for its verdict.
//!
//! [`launch`] (a zone) and [`launch_qemu`] (a VM) write `spec.json`, then spawn `monitor_exe <run_dir>` through an
//! intermediate child that calls `setsid` and forks the real monitor before
//! exiting, so the monitor is reparented (never the caller's child, never a
//! zombie of the caller) and survives the caller. The monitor reports on a
//! pipe whose descriptor number is in `ZONEVISOR_STATUS_FD`: one JSON line
//! once the main process runs (a zone's init has been exec'd, a VM's QEMU
//! answers on QMP) or a step failed, then end-of-file. On failure the
//! monitor has undone everything before closing the pipe (by exiting).

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::rootfs::cvt;
use crate::spec::InstanceSpec;
use crate::{cgroup, control, QemuSpec, ZoneSpec};

/// Environment variable naming the status pipe's descriptor in the monitor.
pub(crate) const STATUS_FD_ENV: &str = "ZONEVISOR_STATUS_FD";
/// `PATH` for the monitor and the zone's processes.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long `launch` waits for the monitor's verdict.
const LAUNCH_TIMEOUT_MS: i32 = 120_000;

/// A started instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launched {
    /// The monitor's PID (reparented away from the caller; watch it with `pidfd_open`).
    pub monitor_pid: i32,
    /// The main process's PID on the host: the zone's init, the VM's QEMU.
    pub init_pid: i32,
}

/// Why an instance did not start: the step that failed and the error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {message}")]
pub struct LaunchError {
    /// The step, e.g. `mount /proc` or `exec init`.
    pub step: String,
    /// What went wrong.
    pub message: String,
}

impl LaunchError {
    pub(crate) fn new(step: impl Into<String>, message: impl std::fmt::Display) -> Self {
        LaunchError { step: step.into(), message: message.to_string() }
    }
}

/// The monitor's report on the status pipe.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Report {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Starts `spec`'s zone under a new, detached `monitor_exe` and returns once
/// its init has been exec'd. Blocking. On error nothing is left behind but
/// `run_dir/monitor.log` (and `console.log` when something was written).
pub fn launch(monitor_exe: &Path, spec: &ZoneSpec) -> Result<Launched, LaunchError> {
    start_monitor(monitor_exe, &InstanceSpec::Zone(spec.clone()))
}

/// Starts `spec`'s VM under a new, detached `monitor_exe` and returns once
/// its QEMU runs, jailed, and answers on QMP (`init_pid` is QEMU's pid).
/// Blocking. On error nothing is left behind but `run_dir/monitor.log`
/// and `qemu.log`, and a QEMU that failed has its stderr's last lines in
/// the message.
pub fn launch_qemu(monitor_exe: &Path, spec: &QemuSpec) -> Result<Launched, LaunchError> {
    check_qemu(spec)?;
    start_monitor(monitor_exe, &InstanceSpec::Qemu(spec.clone()))
}

/// Refuses a VM spec the monitor could not jail as documented.
fn check_qemu(spec: &QemuSpec) -> Result<(), LaunchError> {
    let bad = |m: String| Err(LaunchError::new("check spec", m));
    if spec.jail.uid == 0 || spec.jail.gid == 0 {
        return bad("QEMU must run as an unprivileged uid and gid, not 0".into());
    }
    if !spec.qemu.is_absolute() || !spec.qmp.is_absolute() {
        return bad(format!("{} and {} must be absolute host paths", spec.qemu.display(), spec.qmp.display()));
    }
    for b in &spec.jail.binds {
        if !b.source.is_absolute() || !b.target.is_absolute() || b.target.parent().is_none() {
            return bad(format!(
                "a jail bind needs an absolute source and a target below /: {} -> {}",
                b.source.display(),
                b.target.display()
            ));
        }
    }
    let sandboxed = spec.argv.windows(2).any(|w| w[0] == "-sandbox" && (w[1] == "on" || w[1].starts_with("on,")));
    if !sandboxed {
        return bad("QEMU's arguments must turn its seccomp sandbox on (-sandbox on,...)".into());
    }
    if let Some(d) = spec.jail.devices.iter().find(|d| !d.starts_with("/dev/") || d.components().count() < 3) {
        return bad(format!("{} is not a device under /dev", d.display()));
    }
    Ok(())
}

fn start_monitor(monitor_exe: &Path, spec: &InstanceSpec) -> Result<Launched, LaunchError> {
    let run_dir = spec.run_dir();
    fs::create_dir_all(run_dir)
        .map_err(|e| LaunchError::new("create run_dir", format!("{}: {e}", run_dir.display())))?;
    if let Some(pid) = control::live_monitor_pid(run_dir) {
        return Err(LaunchError::new("run_dir", format!("monitor {pid} is already running for {}", run_dir.display())));
    }
    for f in [control::EXIT_FILE, control::SOCKET_FILE, control::PID_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
    let json = spec.to_json().map_err(|e| LaunchError::new("write spec.json", e))?;
    fs::write(run_dir.join(control::SPEC_FILE), json).map_err(|e| LaunchError::new("write spec.json", e))?;
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join(control::LOG_FILE))
        .map_err(|e| LaunchError::new("open monitor.log", e))?;
    let log2 = log.try_clone().map_err(|e| LaunchError::new("open monitor.log", e))?;

    let (read_end, write_end) = pipe().map_err(|e| LaunchError::new("spawn monitor", e))?;
    let wfd = write_end.as_raw_fd();
    let mut cmd = Command::new(monitor_exe);
    cmd.arg(run_dir)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env(STATUS_FD_ENV, wfd.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .current_dir("/");
    if let Some(v) = std::env::var_os("RUST_BACKTRACE") {
        cmd.env("RUST_BACKTRACE", v);
    }
    // SAFETY: the closure runs in the forked child and only makes
    // async-signal-safe system calls (setsid, fcntl, fork, _exit).
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::setsid())?;
            // Let the status pipe survive exec in this process only.
            cvt(libc::fcntl(wfd, libc::F_SETFD, 0))?;
            match cvt(libc::fork())? {
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        })
    };
    let spawned = cmd.spawn();
    drop(write_end);
    let mut child =
        spawned.map_err(|e| LaunchError::new("spawn monitor", format!("{}: {e}", monitor_exe.display())))?;
    // The intermediate child exits right after forking the monitor.
    let _ = child.wait();

    let report = read_report(read_end);
    match report {
        Some(Report { ok: true, monitor_pid: Some(m), init_pid: Some(i), .. }) => {
            Ok(Launched { monitor_pid: m, init_pid: i })
        }
        Some(r) if !r.ok => {
            if let Some(pid) = r.monitor_pid {
                wait_gone(pid);
            }
            cleanup_failed(spec);
            Err(LaunchError::new(r.step.unwrap_or_else(|| "monitor".into()), r.error.unwrap_or_default()))
        }
        _ => {
            // The monitor died or hung without a verdict: make sure it and the zone are gone.
            if let Some(pid) = control::live_monitor_pid(run_dir) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            cleanup_failed(spec);
            let tail = fs::read_to_string(run_dir.join(control::LOG_FILE)).unwrap_or_default();
            let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            Err(LaunchError::new("monitor", format!("the monitor ended without reporting (monitor.log: {last})")))
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: the descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Keep the write end off 0..=2, which the child's stdio setup overwrites.
    // SAFETY: F_DUPFD_CLOEXEC on a live descriptor; the result is checked and owned.
    let w = unsafe { OwnedFd::from_raw_fd(cvt(libc::fcntl(w.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3))?) };
    Ok((r, w))
}

/// Reads the monitor's report: everything up to end-of-file (or a timeout).
fn read_report(fd: OwnedFd) -> Option<Report> {
    let mut buf = Vec::new();
    let mut file = fs::File::from(fd);
    loop {
        let mut pfd = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut pfd, 1, LAUNCH_TIMEOUT_MS) } {
            0 => break,
            n if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
            n if n < 0 => break,
            _ => {}
        }
        let mut chunk = [0u8; 512];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if buf.len() < 65536 => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let line = buf.split(|b| *b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// Waits (briefly) until process `pid` has exited: its pidfd turns readable.
fn wait_gone(pid: i32) {
    // SAFETY: pidfd_open returns a new descriptor or -1; poll reads one pollfd we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        if fd < 0 {
            return; // ESRCH: already gone
        }
        let fd = OwnedFd::from_raw_fd(fd as i32);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        libc::poll(&mut pfd, 1, 10_000);
    }
}

/// Removes what a failed start may have left (the monitor normally did already).
fn cleanup_failed(spec: &InstanceSpec) {
    cgroup::destroy(spec.cgroup());
    let run_dir = spec.run_dir();
    for f in [control::SPEC_FILE, control::PID_FILE, control::SOCKET_FILE, control::EXIT_FILE] {
        let _ = fs::remove_file(run_dir.join(f));
    }
    if let InstanceSpec::Qemu(q) = spec {
        let _ = fs::remove_file(&q.qmp);
    }
    let console = run_dir.join(control::CONSOLE_FILE);
    if fs::metadata(&console).is_ok_and(|m| m.len() == 0) {
        let _ = fs::remove_file(console);
    }
}
