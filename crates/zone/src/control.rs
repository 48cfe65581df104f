//! The monitor's control socket: protocol and client.
//!
//! `run_dir/monitor.sock` (mode 0600) takes one JSON request line per
//! connection and answers with one JSON reply line:
//!
//! ```text
//! {"op":"status"}                                  → {"ok":true,"monitor_pid":..,"init_pid":..,"state":"running","started_at":..}
//! {"op":"stop","force":false,"timeout_secs":60}    → {"ok":true,"exit":{ExitRecord}}       (once the zone is down)
//! {"op":"reboot","force":false}                    → {"ok":true,"monitor_pid":..,"init_pid":<new>,..} (once it runs again)
//! {"op":"kill","signal":15}                        → {"ok":true}
//! {"op":"set_limits","limits":{Limits}}            → {"ok":true} | {"ok":false,"error":"..."}
//! ```
//!
//! A graceful stop runs the zone's own `poweroff` (or signals init), then
//! kills the cgroup after `timeout_secs` (default 60); `force` kills at once.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ExitRecord, Limits};

pub(crate) const SPEC_FILE: &str = "spec.json";
pub(crate) const PID_FILE: &str = "monitor.pid";
pub(crate) const SOCKET_FILE: &str = "monitor.sock";
pub(crate) const EXIT_FILE: &str = "exit.json";
pub(crate) const LOG_FILE: &str = "monitor.log";
pub(crate) const CONSOLE_FILE: &str = "console.log";

/// Default grace period of a graceful stop or reboot.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Report the monitor's status.
    Status,
    /// Shut the zone down; the reply comes when it is down.
    Stop {
        /// Kill at once instead of asking the zone to shut down.
        #[serde(default)]
        force: bool,
        /// Grace period before killing (default 60 s).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Stop the zone and start it again; the reply comes when it runs again.
    Reboot {
        /// Kill at once instead of asking the zone to shut down.
        #[serde(default)]
        force: bool,
        /// Grace period before killing (default 60 s).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// Send a signal to the zone's init.
    Kill {
        /// The signal number.
        signal: i32,
    },
    /// Apply new resource limits to the running zone (all or nothing).
    SetLimits {
        /// The limits.
        limits: Limits,
    },
}

/// Whether the zone is up or on its way down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneState {
    /// init runs.
    Running,
    /// A stop or reboot is in progress.
    Stopping,
}

/// A monitor's answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorStatus {
    /// The monitor's PID.
    pub monitor_pid: i32,
    /// init's PID on the host.
    pub init_pid: i32,
    /// Running or stopping.
    pub state: ZoneState,
    /// When the current init started, in seconds since the epoch.
    pub started_at: u64,
}

/// A reply line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status` and `reboot`.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<MonitorStatus>,
    /// For `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
}

impl Reply {
    pub(crate) fn error(msg: impl Into<String>) -> Self {
        Reply { ok: false, error: Some(msg.into()), ..Reply::default() }
    }
}

/// A control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket: the monitor is gone.
    #[error("no monitor is listening on {}: {source}", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (or timed out).
    #[error("control socket: {0}")]
    Io(#[source] io::Error),
    /// The monitor closed the connection without replying (it exited meanwhile).
    #[error("the monitor closed the connection without replying")]
    NoReply,
    /// The reply was not valid JSON.
    #[error("bad reply from the monitor: {0}")]
    BadReply(#[source] serde_json::Error),
    /// The monitor refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Client of one zone's monitor.
#[derive(Clone, Debug)]
pub struct MonitorClient {
    run_dir: PathBuf,
}

impl MonitorClient {
    /// A client for the monitor whose run directory is `run_dir`.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        MonitorClient { run_dir: run_dir.into() }
    }

    /// Sends `req` and waits up to `timeout` for the reply.
    pub fn request(&self, req: &Request, timeout: Duration) -> Result<Reply, ControlError> {
        let path = self.run_dir.join(SOCKET_FILE);
        let mut sock = with_socket_path(&self.run_dir, |p| UnixStream::connect(p))
            .map_err(|source| ControlError::NotRunning { path, source })?;
        sock.set_read_timeout(Some(timeout)).map_err(ControlError::Io)?;
        sock.set_write_timeout(Some(Duration::from_secs(10))).map_err(ControlError::Io)?;
        let mut line = serde_json::to_vec(req).map_err(ControlError::BadReply)?;
        line.push(b'\n');
        sock.write_all(&line).map_err(ControlError::Io)?;
        let mut reply = String::new();
        BufReader::new(sock).read_line(&mut reply).map_err(ControlError::Io)?;
        if reply.is_empty() {
            return Err(ControlError::NoReply);
        }
        let reply: Reply = serde_json::from_str(&reply).map_err(ControlError::BadReply)?;
        if !reply.ok {
            return Err(ControlError::Refused(reply.error.unwrap_or_else(|| "request failed".into())));
        }
        Ok(reply)
    }

    fn status_of(reply: Reply) -> Result<MonitorStatus, ControlError> {
        reply.status.ok_or_else(|| ControlError::Refused("reply lacks a status".into()))
    }

    /// The monitor's status.
    pub fn status(&self) -> Result<MonitorStatus, ControlError> {
        Self::status_of(self.request(&Request::Status, Duration::from_secs(10))?)
    }

    /// Stops the zone and returns its exit record once it is down.
    /// `timeout_secs`: grace period before the zone is killed (default 60 s;
    /// ignored with `force`).
    pub fn stop(&self, force: bool, timeout_secs: Option<u64>) -> Result<ExitRecord, ControlError> {
        let grace = timeout_secs.map_or(DEFAULT_STOP_TIMEOUT, Duration::from_secs);
        let req = Request::Stop { force, timeout_secs: Some(grace.as_secs()) };
        let wait = if force { Duration::from_secs(30) } else { grace + Duration::from_secs(30) };
        match self.request(&req, wait) {
            Ok(Reply { exit: Some(rec), .. }) => Ok(rec),
            Ok(_) => read_exit(&self.run_dir).ok_or_else(|| ControlError::Refused("reply lacks an exit record".into())),
            // The zone went down on its own just before or while we asked.
            Err(e @ (ControlError::NotRunning { .. } | ControlError::NoReply)) => read_exit(&self.run_dir).ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Reboots the zone (gracefully unless `force`, with the default grace
    /// period) and returns its status once the new init runs.
    pub fn reboot(&self, force: bool) -> Result<MonitorStatus, ControlError> {
        let req = Request::Reboot { force, timeout_secs: None };
        Self::status_of(self.request(&req, DEFAULT_STOP_TIMEOUT + Duration::from_secs(60))?)
    }

    /// Sends `signal` to the zone's init.
    pub fn kill(&self, signal: i32) -> Result<(), ControlError> {
        self.request(&Request::Kill { signal }, Duration::from_secs(10)).map(drop)
    }

    /// Applies `limits` to the running zone; on a refusal nothing changed.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), ControlError> {
        self.request(&Request::SetLimits { limits: limits.clone() }, Duration::from_secs(30)).map(drop)
    }
}

/// Runs `f` on the path of `run_dir/monitor.sock`, or, when that is too long
/// for a socket address (108 bytes), on `/proc/self/fd/N/monitor.sock`
/// through a descriptor of `run_dir`.
pub(crate) fn with_socket_path<T>(run_dir: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let path = run_dir.join(SOCKET_FILE);
    if path.as_os_str().len() < 100 {
        return f(&path);
    }
    let dir = crate::rootfs::open_dir(run_dir)?;
    f(&Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&dir))).join(SOCKET_FILE))
}

/// The PID in `run_dir/monitor.pid` if that process is alive and is a
/// monitor serving `run_dir` (its command line is `<exe> <run_dir>`).
pub(crate) fn live_monitor_pid(run_dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(run_dir.join(PID_FILE)).ok()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie's cmdline is empty, but check its state anyway.
    if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])) {
        return None;
    }
    let arg = cmdline.split(|b| *b == 0).nth(1)?;
    let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
    let same = arg == run_dir || matches!((fs::canonicalize(arg), fs::canonicalize(run_dir)), (Ok(a), Ok(b)) if a == b);
    same.then_some(pid)
}

/// Finds a live monitor for `run_dir` (after a daemon restart) and returns its status.
pub fn find_monitor(run_dir: &Path) -> Option<MonitorStatus> {
    let pid = live_monitor_pid(run_dir)?;
    let st = MonitorClient::new(run_dir).status().ok()?;
    (st.monitor_pid == pid).then_some(st)
}

/// The zone's last exit record (`run_dir/exit.json`), if any.
pub fn read_exit(run_dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&fs::read(run_dir.join(EXIT_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitReason;

    #[test]
    fn wire_format() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"op":"stop","force":true}"#).unwrap();
        assert_eq!(r, Request::Stop { force: true, timeout_secs: None });
        let st = MonitorStatus { monitor_pid: 5, init_pid: 6, state: ZoneState::Running, started_at: 7 };
        let reply = Reply { ok: true, status: Some(st.clone()), ..Reply::default() };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"ok":true,"monitor_pid":5,"init_pid":6,"state":"running","started_at":7}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        let exit = ExitRecord { reason: ExitReason::Halted, code: None, signal: None, message: "m".into(), at: 1 };
        let reply = Reply { ok: true, exit: Some(exit), ..Reply::default() };
        let back: Reply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
        let back: Reply = serde_json::from_str(r#"{"ok":false,"error":"no"}"#).unwrap();
        assert_eq!(back, Reply::error("no"));
    }
}
