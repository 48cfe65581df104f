//! `vmadm console <uuid>`: the zone's console on the caller's terminal, and
//! `vmadm console --log <uuid>`: what the zone last wrote there.
//!
//! ```text
//!  vmadm console <uuid>
//!    │ GET /v1/vms/<uuid>/console (daemon) ── state, brand, the monitor's
//!    │                                        socket and the log files
//!    │ connect <run_dir>/monitor.sock, {"op":"console"} → {"ok":true}
//!    v
//!  relay (crate::tty): stdin ─ input frames ─> monitor ─> pty master ─> zone's /dev/console
//!                      stdout <─ raw output ── monitor <─ pty master
//! ```
//!
//! The daemon only says where the console is; the connection is to the
//! zone's monitor, which holds the pty, so an attached console outlives a
//! daemon restart and the zone's reboots. On a terminal, the terminal is
//! in raw mode while attached and CTRL-] detaches; otherwise input is
//! relayed until it ends (and output until it pauses), so a script can
//! pipe commands into a console. `--log` reads the console logs the
//! daemon names (the previous one, then the current one), attached or not,
//! running or not.

use zonevisor_api::{Client, ConsoleInfo, InstanceUuid};
use zonevisor_zone::control::MonitorClient;

use crate::tty::{self, Ended, Input, Peer, Terminal};
use crate::{describe_client_error, CliError, Io};

/// Runs `vmadm console [--log] <uuid>`.
pub fn run(client: &Client, uuid: InstanceUuid, log: bool, io: &mut Io) -> Result<(), CliError> {
    let info = client.vm_console(&uuid.to_string()).map_err(|e| CliError::failed(describe_client_error(&e)))?;
    if log {
        return print_log(&info, io);
    }
    check_attachable(&info)?;
    let sock = MonitorClient::new(&info.run_dir)
        .attach_console()
        .map_err(|e| CliError::failed(format!("cannot attach to the console of VM {uuid}: {e}")))?;
    sock.set_nonblocking(true)
        .map_err(|e| CliError::failed(format!("cannot attach to the console of VM {uuid}: {e}")))?;
    io.out.flush()?;
    let interactive = tty::is_terminal(0);
    let hint = if interactive { "; CTRL-] to detach" } else { "" };
    writeln!(io.err, "[Connected to zone {uuid} console{hint}]")?;
    let ended = {
        let term = Terminal::take(true).map_err(|e| CliError::failed(format!("console of VM {uuid}: {e}")))?;
        let input = Input { detach_key: term.raw.is_some(), end_with_stdin: true };
        tty::relay(&Peer::Console(sock), &term, input)
        // The terminal is restored here, before anything more is printed.
    };
    // Raw output may have left the cursor mid-line.
    let nl = if interactive { "\n" } else { "" };
    match ended {
        Ok(Ended::Detached | Ended::InputEnded | Ended::Exited(_)) => {
            writeln!(io.err, "{nl}[Detached from zone {uuid} console]")?;
            Ok(())
        }
        Ok(Ended::Closed) => {
            writeln!(
                io.err,
                "{nl}[Connection to zone {uuid} console closed: its monitor ended it (the zone is down)]"
            )?;
            Ok(())
        }
        Ok(Ended::Signal(sig)) => {
            let _ = writeln!(io.err, "{nl}[Detached from zone {uuid} console: signal {sig}]");
            Err(CliError::Quiet(128 + sig))
        }
        Err(e) => {
            let _ = write!(io.err, "{nl}");
            Err(CliError::failed(format!("console of VM {uuid}: {e}")))
        }
    }
}

/// Whether the console in `info` can be attached: the zone must be running.
pub fn check_attachable(info: &ConsoleInfo) -> Result<(), CliError> {
    if info.state == "running" {
        return Ok(());
    }
    Err(CliError::failed(format!(
        "VM {} is not running (state: {}); `vmadm console --log {}` prints its last console output",
        info.uuid, info.state, info.uuid
    )))
}

/// Prints the console logs (`console.log.1`, then `console.log`).
fn print_log(info: &ConsoleInfo, io: &mut Io) -> Result<(), CliError> {
    let mut found = false;
    for path in [&info.previous_log, &info.log] {
        match std::fs::read(path) {
            Ok(bytes) => {
                found = true;
                io.out.write_all(&bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::failed(format!("cannot read {path}: {e}"))),
        }
    }
    if !found {
        return Err(CliError::failed(format!(
            "VM {} has no console log yet ({} does not exist: it has never run here)",
            info.uuid, info.log
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fake::{FakeDaemon, TestIo};

    const U1: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";

    fn info(run_dir: &std::path::Path, state: &str) -> String {
        json!({
            "uuid": U1, "brand": "lx", "state": state,
            "run_dir": run_dir, "socket": run_dir.join("monitor.sock"),
            "log": run_dir.join("console.log"), "previous_log": run_dir.join("console.log.1"),
        })
        .to_string()
    }

    #[test]
    fn log_prints_the_previous_log_then_the_current_one() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("console.log.1"), "old line\n").unwrap();
        std::fs::write(dir.join("console.log"), "new line\n").unwrap();
        let body = info(&dir, "stopped");
        let d = FakeDaemon::start(move |_| (200, body.clone()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", "--log", U1]), 0, "{}", t.err());
        assert_eq!(t.out(), "old line\nnew line\n");
        assert_eq!(d.seen()[0].path, format!("/v1/vms/{U1}/console"));
        // Only the current one (not rotated yet).
        std::fs::remove_file(dir.join("console.log.1")).unwrap();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", "-l", U1]), 0);
        assert_eq!(t.out(), "new line\n");
        // None: the zone never ran here.
        std::fs::remove_file(dir.join("console.log")).unwrap();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", "--log", U1]), 1);
        assert!(t.err().contains(&format!("VM {U1} has no console log yet")), "{}", t.err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_stopped_zone_has_no_console_to_attach() {
        let dir = tempfile_dir();
        let body = info(&dir, "stopped");
        let d = FakeDaemon::start(move |_| (200, body.clone()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", U1]), 1);
        assert_eq!(
            t.err(),
            format!(
                "vmadm: VM {U1} is not running (state: stopped); `vmadm console --log {U1}` prints its last console output\n"
            )
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_running_zone_without_a_monitor_is_an_error_naming_the_socket() {
        let dir = tempfile_dir();
        let body = info(&dir, "running");
        let d = FakeDaemon::start(move |_| (200, body.clone()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", U1]), 1);
        let want =
            format!("vmadm: cannot attach to the console of VM {U1}: no monitor is listening on {}", dir.display());
        assert!(t.err().starts_with(&want), "{}", t.err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hardware_vms_are_refused_by_the_daemon() {
        let msg = format!("vmadm console is not supported for brand kvm yet (VM {U1}): only zones have a console here");
        let body = json!({"kind": "Unsupported", "message": msg}).to_string();
        let d = FakeDaemon::start(move |_| (422, body.clone()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "console", U1]), 1);
        assert_eq!(t.err(), format!("vmadm: {msg}\n"));
    }

    fn tempfile_dir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "zv-console-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
