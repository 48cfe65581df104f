//! What a zone's metadata asks of each of its boots, as SmartOS's
//! `mdata-fetch` and `mdata-execute` do it: `root_authorized_keys`
//! becomes root's `~/.ssh/authorized_keys`, and `user-script` is written
//! to `/var/svc/mdata-user-script` and run, as the zone's root, inside the
//! zone (its namespaces, root, cgroup and filter; a helper process the
//! monitor forks and that enters like `zlogin`). An operator's script
//! (`internal_metadata["operator-script"]`, `sdc:operator-script` to the
//! guest; what `imgadm create -s` runs) is run instead of the
//! `user-script` while it is set, from `/var/svc/mdata-operator-script`.
//!
//! The script's output (stdout and stderr) comes to the monitor through a
//! pipe and is appended to `user-script.log` in the zone's run directory
//! on the host, under a line naming the boot; at most [`LOG_PER_BOOT`]
//! bytes of it per boot are kept (the rest is read and dropped, so the
//! script never blocks on a full pipe), and the log starts afresh past
//! [`LOG_MAX`].

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{child, now_secs, pipe, Core};
use crate::enter;
use crate::rootfs::cvt;

/// The log's name in the zone's run directory.
pub(crate) const LOG_FILE: &str = "user-script.log";
/// What one boot's script may add to the log.
pub(crate) const LOG_PER_BOOT: u64 = 1 << 20;
/// Past this, the log is emptied at the next boot.
pub(crate) const LOG_MAX: u64 = 4 << 20;
/// Where the script is written in the zone (SmartOS's place).
pub(crate) const SCRIPT: &str = "/var/svc/mdata-user-script";
/// Where an operator's script is written in the zone.
pub(crate) const OPERATOR_SCRIPT: &str = "/var/svc/mdata-operator-script";

/// A boot's helper and its output.
pub(super) struct BootRun {
    pub(super) pid: i32,
    out: Option<fs::File>,
    log: Option<fs::File>,
    kept: u64,
    dropped: u64,
    /// `user-script` or `operator-script`, for the log.
    kind: &'static str,
}

impl BootRun {
    /// Starts what `vm`'s metadata asks of this boot, if anything.
    pub(super) fn start(core: &Core, vm: &Value, inbox_tx: &OwnedFd) -> io::Result<Option<BootRun>> {
        let md = vm.get("customer_metadata");
        let text = |k: &str| md.and_then(|m| m.get(k)).and_then(Value::as_str).filter(|s| !s.is_empty());
        let operator = vm
            .get("internal_metadata")
            .and_then(|m| m.get("operator-script"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let (kind, path, script) = match operator {
            Some(s) => ("operator-script", OPERATOR_SCRIPT, Some(s)),
            None => ("user-script", SCRIPT, text("user-script")),
        };
        let keys = text("root_authorized_keys");
        if keys.is_none() && script.is_none() {
            return Ok(None);
        }
        let log = open_log(&core.run_dir)?;
        let (r, w) = pipe()?;
        // SAFETY: setting a flag on our own descriptor.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let entry = enter::Entry::open(core.pid)?
            .chroot()?
            .cgroup_procs(core.procs.iter().cloned())
            .drop_capabilities()?
            .sysinfo_to(inbox_tx.try_clone()?);
        // A script without `#!` is the shell's, as a terminal would run it.
        let exec = match script {
            Some(s) if s.starts_with("#!") => enter::Exec::new(path, &[path], &child::zone_env())?,
            _ => enter::Exec::new("/bin/sh", &["/bin/sh", path], &child::zone_env())?,
        }
        .stdio(enter::Stdio::Inherit)
        .umask(0o022);
        // SAFETY: the monitor is single-threaded; the child never returns.
        let pid = cvt(unsafe { libc::fork() })?;
        if pid == 0 {
            drop(r);
            // SAFETY: dup2 onto our own standard streams.
            unsafe {
                libc::dup2(w.as_raw_fd(), 1);
                libc::dup2(w.as_raw_fd(), 2);
            }
            child::run_boot(entry, keys, script.map(|s| (path, s)), &exec);
        }
        drop(w);
        Ok(Some(BootRun { pid, out: Some(fs::File::from(r)), log: Some(log), kept: 0, dropped: 0, kind }))
    }

    /// The pipe to poll, while it is open.
    pub(super) fn fd(&self) -> Option<i32> {
        self.out.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Reads what the script wrote; closes the pipe at its end.
    pub(super) fn on_output(&mut self) {
        let Some(mut f) = self.out.take() else { return };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    let room = LOG_PER_BOOT.saturating_sub(self.kept) as usize;
                    let keep = n.min(room);
                    if let Some(log) = self.log.as_mut() {
                        let _ = log.write_all(&buf[..keep]);
                    }
                    self.kept += keep as u64;
                    self.dropped += (n - keep) as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // More may come: kept open.
                    self.out = Some(f);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// The script ended (its helper was reaped): what it left in the pipe
    /// is read, and its status noted in the log.
    pub(super) fn ended(&mut self, status: i32) {
        self.on_output();
        let how = if libc::WIFEXITED(status) {
            format!("exited {}", libc::WEXITSTATUS(status))
        } else {
            format!("killed by signal {}", libc::WTERMSIG(status))
        };
        self.note(&format!("== {} {how} ==\n", self.kind));
        self.close();
    }

    fn note(&mut self, text: &str) {
        if self.dropped > 0 {
            let line = format!("== {} more bytes of output dropped ==\n", self.dropped);
            self.dropped = 0;
            if let Some(log) = self.log.as_mut() {
                let _ = log.write_all(line.as_bytes());
            }
        }
        if let Some(log) = self.log.as_mut() {
            let _ = log.write_all(text.as_bytes());
        }
    }

    fn close(&mut self) {
        self.out = None;
    }
}

/// Opens the log for this boot, with its header line.
fn open_log(run_dir: &Path) -> io::Result<fs::File> {
    let path: PathBuf = run_dir.join(LOG_FILE);
    let too_big = fs::metadata(&path).is_ok_and(|m| m.len() > LOG_MAX);
    let mut log = fs::OpenOptions::new().create(true).append(true).open(&path)?;
    if too_big {
        log.set_len(0)?;
    }
    writeln!(log, "== boot at {} (seconds since the epoch) ==", now_secs())?;
    Ok(log)
}
