//! `zlogin <uuid> [command ...]`: a login shell, or a command, inside a
//! running zone, with its exit status passed through (128 + signal when
//! the command is killed).
//!
//! zlogin does the entering itself, on the host, the way `nsenter` does,
//! with [`zonevisor_zone::enter`] (which the monitor's graceful stop uses too):
//!
//! ```text
//!  vmadm get (daemon) ── state running, pid = the zone init's host PID
//!        │
//!  open /proc/<pid>/ns/{user,ipc,uts,net,pid,cgroup,mnt}   (skip ours)
//!  find the init's cgroups, open /proc/<pid>/root, read its capability
//!  bounding set
//!        │
//!  join the init's cgroups (each v1 hierarchy's and the v2 cgroup.procs)
//!        │
//!  ask the zone's monitor to serve sysinfo(2) for us (2 s at most;
//!  else the kernel's sysinfo: the host's memory)
//!        │
//!  setns user → ipc → uts → net → pid → cgroup → mnt, chroot to the
//!  init's root, become uid/gid 0 of the zone, drop capabilities the
//!  init does not have, install the zone's seccomp filter (its listener
//!  to the monitor)
//!        │
//!  fork (the child is born in the zone's pid namespace)
//!   ├─ child: cwd /, clean environment, exec `sh -l` or `sh -c "cmd"`
//!   └─ parent: wait, exit with the child's status
//! ```
//!
//! When stdin and stdout are both terminals (or with `-t`), the command
//! gets a pty of the zone's own (`tty` in the zone prints `/dev/pts/N`),
//! opened once inside, from the zone's devpts instance
//! ([`zonevisor_zone::enter::open_pty`]); the command starts a new session
//! with it as controlling terminal, so job control and `^C` work there.
//! This process relays between the caller's terminal (in raw mode,
//! restored on every way out) and the pty's master ([`crate::tty`]),
//! passing on the caller's modes and size at the start and every
//! SIGWINCH after. A SIGTERM, SIGHUP or SIGINT to zlogin hangs the pty up
//! (the zone's session gets SIGHUP). Otherwise (or with `-T`) standard
//! input, output and error are handed to the command as they are.
//! Either way the command's exit status is zlogin's.
//!
//! Entering namespaces needs root and a single-threaded process, which
//! the `zonevisor` binary is.

use std::os::fd::AsRawFd;
use std::path::Path;

use nix::unistd::geteuid;
use serde_json::Value;
use zonevisor_api::{InstanceUuid, VmObject};
use zonevisor_zone::enter::{self, Entry, Exec, Stdio};

use crate::args::{self, Mode};
use crate::tty::{self, Ended, Input, Peer, Terminal};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// `PATH` inside the zone.
pub const ZONE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `--socket`.
    pub socket: Option<String>,
    /// The zone.
    pub uuid: InstanceUuid,
    /// The command's words (empty: a login shell).
    pub command: Vec<String>,
    /// `-t` (`Some(true)`) or `-T` (`Some(false)`); `None`: as the terminals say.
    pub pty: Option<bool>,
}

/// How the command is connected to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Streams {
    /// The caller's stdin, stdout and stderr, as they are.
    Inherit,
    /// A new pty in the zone, relayed to the caller's stdin and stdout.
    Pty,
}

/// The streams for `-t`/`-T` (`forced`) and whether stdin and stdout are terminals.
pub fn streams_for(forced: Option<bool>, stdin_tty: bool, stdout_tty: bool) -> Streams {
    match forced.unwrap_or(stdin_tty && stdout_tty) {
        true => Streams::Pty,
        false => Streams::Inherit,
    }
}

/// Parses zlogin's arguments; `None` asks for help. Options must come
/// before the UUID: everything after it is the command.
pub fn parse_args(argv: &[String]) -> Result<Option<Request>, CliError> {
    let p = args::parse(argv, &pages::ZLOGIN.tool_opts(), Mode::StopAtPositional).map_err(CliError::usage)?;
    if p.has("help") {
        return Ok(None);
    }
    let pty = match (p.has("pty"), p.has("no-pty")) {
        (true, true) => return Err(CliError::usage("-t and -T contradict each other")),
        (true, false) => Some(true),
        (false, true) => Some(false),
        (false, false) => None,
    };
    let uuid = args::instance_uuid(p.positional.first(), "zlogin")?;
    let command = p.positional[1..].to_vec();
    Ok(Some(Request { socket: p.value("socket").map(str::to_string), uuid, command, pty }))
}

/// The host PID of the zone's init, if the VM is a running zone.
pub fn zone_init_pid(vm: &VmObject) -> Result<i32, String> {
    let uuid = vm.get("uuid").and_then(Value::as_str).unwrap_or("?");
    let brand = vm.get("brand").and_then(Value::as_str).unwrap_or("");
    if matches!(brand, "kvm" | "bhyve") {
        return Err(format!("VM {uuid} is a {brand} VM; zlogin enters zones only (use vmadm console)"));
    }
    let state = vm.get("state").and_then(Value::as_str).unwrap_or("unknown");
    if state != "running" {
        return Err(format!("VM {uuid} is not running (state: {state})"));
    }
    vm.get("pid")
        .and_then(Value::as_i64)
        .filter(|p| *p > 1 && *p <= i64::from(i32::MAX))
        .map(|p| p as i32)
        .ok_or_else(|| format!("VM {uuid} is running but zonevisord reports no init pid for it"))
}

/// The program and argv to run: a login shell, or the command through
/// the shell's `-c` with its words joined by spaces (as SmartOS's zlogin).
pub fn shell_command(command: &[String], has_bash: bool) -> (String, Vec<String>) {
    let (path, name) = if has_bash { ("/bin/bash", "bash") } else { ("/bin/sh", "sh") };
    let argv = if command.is_empty() {
        vec![name.to_string(), "-l".to_string()]
    } else {
        vec![name.to_string(), "-c".to_string(), command.join(" ")]
    };
    (path.to_string(), argv)
}

/// The environment inside the zone: nothing of the caller's but `TERM`.
pub fn zone_env(term: Option<&str>, shell: Option<&str>) -> Vec<String> {
    let mut env = vec![
        format!("PATH={ZONE_PATH}"),
        "HOME=/root".to_string(),
        "USER=root".to_string(),
        "LOGNAME=root".to_string(),
        "container=zonevisor".to_string(),
    ];
    if let Some(t) = term {
        env.push(format!("TERM={t}"));
    }
    if let Some(s) = shell {
        env.push(format!("SHELL={s}"));
    }
    env
}

/// Runs `zlogin` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = execute(argv, io);
    crate::report("zlogin", io, result)
}

fn execute(argv: &[String], io: &mut Io) -> Result<(), CliError> {
    let Some(req) = parse_args(argv)? else {
        io.out.write_all(doc::render_help(&pages::ZLOGIN).as_bytes())?;
        return Ok(());
    };
    if !geteuid().is_root() {
        return Err(CliError::failed("must be run as root (it joins the zone's namespaces and cgroups)"));
    }
    let client = crate::client(req.socket.as_deref(), io);
    let vm = client.get_vm(&req.uuid.to_string()).map_err(|e| CliError::failed(describe_client_error(&e)))?;
    let pid = zone_init_pid(&vm).map_err(CliError::failed)?;
    io.out.flush()?;
    let streams = streams_for(req.pty, tty::is_terminal(0), tty::is_terminal(1));
    let code = enter_and_run(pid, &req.command, streams).map_err(CliError::failed)?;
    if code == 0 {
        Ok(())
    } else {
        Err(CliError::Quiet(code))
    }
}

/// Enters the zone whose init is `pid` and runs `command` there (a login
/// shell when empty), connected as `streams` says; returns the exit status
/// to report. This process stays in the zone's namespaces afterwards:
/// call it last.
pub fn enter_and_run(pid: i32, command: &[String], streams: Streams) -> Result<i32, String> {
    let err = |e: std::io::Error| e.to_string();
    // Everything is opened and read before the first setns, while host
    // paths still mean what they say.
    let entry = Entry::open(pid)
        .and_then(Entry::cgroups_of_process)
        .and_then(Entry::chroot)
        .and_then(Entry::drop_capabilities)
        .map(Entry::sysinfo_from_monitor)
        .map_err(err)?;
    entry.enter().map_err(err)?;

    let has_bash = Path::new("/bin/bash").exists();
    let (program, argv) = shell_command(command, has_bash);
    let term = std::env::var("TERM").ok();
    let env = zone_env(term.as_deref(), command.is_empty().then_some(program.as_str()));
    let exec = Exec::new(&program, &argv, &env).map_err(err)?.report_exec_failure("zlogin");
    match streams {
        Streams::Inherit => exec.stdio(Stdio::Inherit).run().map_err(err),
        Streams::Pty => run_on_pty(exec).map_err(err),
    }
}

/// Runs `exec` on a new pty of the zone's (the caller is inside it) and
/// relays it to the caller's terminal until the command ends.
fn run_on_pty(exec: Exec) -> std::io::Result<i32> {
    let (master, slave) = enter::open_pty()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{e} (zlogin -T runs the command without a pty)")))?;
    // The new terminal starts like the caller's: its modes (erase and
    // interrupt keys...) and size.
    // SAFETY: tcgetattr writes one termios into ours; tcsetattr and
    // TIOCSWINSZ read what we pass.
    unsafe {
        let mut modes: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut modes) == 0 {
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &modes);
        }
        if let Some(ws) = tty::winsize(0).or_else(|| tty::winsize(1)) {
            libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
    // Signals first: the command's SIGCHLD must not be missed.
    let term = Terminal::take(true)?;
    let child = exec.stdio(Stdio::Pty(slave.as_raw_fd())).spawn()?;
    // Only the command holds the slave now: its end is the pty's hang-up.
    drop(slave);
    let peer = Peer::Pty { master, child };
    let ended = tty::relay(&peer, &term, Input { detach_key: false, end_with_stdin: false });
    // Closing the master hangs the pty up: the zone's session gets SIGHUP.
    drop(peer);
    match ended {
        Ok(Ended::Exited(code)) => Ok(code),
        Ok(Ended::Signal(sig)) => Ok(tty::wait_after_hangup(child, &term.signals)?.unwrap_or(128 + sig)),
        Ok(_) => enter::wait(child),
        Err(e) => {
            let _ = tty::wait_after_hangup(child, &term.signals);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::s;
    use crate::fake::{FakeDaemon, TestIo};
    use nix::sys::wait::waitpid;
    use nix::unistd::{fork, ForkResult};
    use serde_json::json;
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Command, Stdio as PStdio};
    use zonevisor_zone::enter::exit_code;

    const U1: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";

    fn vm(v: Value) -> VmObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn arguments() {
        let r = parse_args(&s(&["--socket", "/s", U1, "ls", "-l", "--help"])).unwrap().unwrap();
        assert_eq!(r.socket.as_deref(), Some("/s"));
        assert_eq!(r.uuid.to_string(), U1);
        assert_eq!(r.command, s(&["ls", "-l", "--help"]));
        assert_eq!(parse_args(&s(&[U1])).unwrap().unwrap().command, Vec::<String>::new());
        assert!(parse_args(&s(&["-h"])).unwrap().is_none());
        assert!(matches!(parse_args(&s(&["web01"])), Err(CliError::Usage(m)) if m.contains("UUID")));
        assert!(matches!(parse_args(&s(&[])), Err(CliError::Usage(_))));
        assert!(matches!(parse_args(&s(&["-x", U1])), Err(CliError::Usage(m)) if m == "unknown option -x"));
        assert_eq!(parse_args(&s(&[U1])).unwrap().unwrap().pty, None);
        assert_eq!(parse_args(&s(&["-t", U1, "tty"])).unwrap().unwrap().pty, Some(true));
        let r = parse_args(&s(&["-T", U1, "ls", "-t"])).unwrap().unwrap();
        assert_eq!((r.pty, r.command), (Some(false), s(&["ls", "-t"])), "options after the UUID are the command's");
        assert!(matches!(parse_args(&s(&["-tT", U1])), Err(CliError::Usage(m)) if m.contains("contradict")));
    }

    #[test]
    fn a_pty_when_both_ends_are_terminals_or_asked_for() {
        assert_eq!(streams_for(None, true, true), Streams::Pty);
        assert_eq!(streams_for(None, true, false), Streams::Inherit, "zlogin uuid cmd > file");
        assert_eq!(streams_for(None, false, true), Streams::Inherit, "echo x | zlogin uuid cmd");
        assert_eq!(streams_for(None, false, false), Streams::Inherit);
        assert_eq!(streams_for(Some(true), false, false), Streams::Pty);
        assert_eq!(streams_for(Some(false), true, true), Streams::Inherit);
    }

    #[test]
    fn only_running_zones_with_a_pid() {
        let ok = vm(json!({"uuid": U1, "brand": "lx", "state": "running", "pid": 4242}));
        assert_eq!(zone_init_pid(&ok), Ok(4242));
        let stopped = vm(json!({"uuid": U1, "brand": "lx", "state": "stopped"}));
        assert_eq!(zone_init_pid(&stopped).unwrap_err(), format!("VM {U1} is not running (state: stopped)"));
        let hvm = vm(json!({"uuid": U1, "brand": "bhyve", "state": "running", "pid": 9}));
        assert!(zone_init_pid(&hvm).unwrap_err().contains("vmadm console"));
        let nopid = vm(json!({"uuid": U1, "brand": "lx", "state": "running"}));
        assert!(zone_init_pid(&nopid).unwrap_err().contains("no init pid"));
        let host_init = vm(json!({"uuid": U1, "brand": "lx", "state": "running", "pid": 1}));
        assert!(zone_init_pid(&host_init).is_err(), "never enter the host's own init");
    }

    #[test]
    fn shell_and_environment() {
        assert_eq!(shell_command(&[], false), ("/bin/sh".into(), s(&["sh", "-l"])));
        assert_eq!(shell_command(&[], true), ("/bin/bash".into(), s(&["bash", "-l"])));
        assert_eq!(
            shell_command(&s(&["cat", "/etc/hosts", "|", "wc", "-l"]), false),
            ("/bin/sh".into(), s(&["sh", "-c", "cat /etc/hosts | wc -l"]))
        );
        let env = zone_env(Some("xterm"), Some("/bin/sh"));
        assert_eq!(
            env,
            s(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "USER=root",
                "LOGNAME=root",
                "container=zonevisor",
                "TERM=xterm",
                "SHELL=/bin/sh"
            ])
        );
        assert_eq!(zone_env(None, None).len(), 5);
    }

    #[test]
    fn refuses_a_stopped_zone() {
        if !geteuid().is_root() {
            let mut t = TestIo::new();
            assert_eq!(t.run(&["zlogin", U1]), 1);
            assert!(t.err().contains("must be run as root"), "{}", t.err());
            return;
        }
        let d = FakeDaemon::start(|_| (200, json!({"uuid": U1, "brand": "lx", "state": "stopped"}).to_string()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["zlogin", U1, "true"]), 1);
        assert_eq!(t.err(), format!("zlogin: VM {U1} is not running (state: stopped)\n"));
        assert_eq!(d.seen()[0].path, format!("/v1/vms/{U1}"));
    }

    // --- entering real namespaces ---

    const REEXEC_ENV: &str = "ZONEVISOR_CLI_TEST_ZLOGIN_ARGV";

    /// Not a test on its own (so ignored, and failing when run without
    /// `REEXEC_ENV`): the zlogin process of the test below, which re-runs
    /// this binary with `--ignored` and `REEXEC_ENV` set. It forks (so
    /// zlogin runs single-threaded, as in the real binary) and exits with
    /// zlogin's status.
    #[test]
    #[ignore = "not a test: the zlogin process that enters_a_zone_and_passes_exit_status runs"]
    fn reexec_zlogin() {
        let argv = std::env::var(REEXEC_ENV).unwrap_or_else(|_| {
            panic!("not a test on its own: enters_a_zone_and_passes_exit_status runs it with {REEXEC_ENV} set")
        });
        let argv: Vec<String> = serde_json::from_str(&argv).unwrap();
        // SAFETY: the child runs zlogin and leaves with _exit; the other
        // test-harness thread only waits for this one.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                let mut err = std::io::stderr();
                let mut input = std::io::empty();
                let code = {
                    let mut io = Io {
                        out: &mut out,
                        err: &mut err,
                        input: &mut input,
                        input_is_tty: false,
                        output_is_tty: false,
                        socket_env: std::env::var(zonevisor_api::SOCKET_ENV).ok(),
                    };
                    crate::run(&argv, &mut io)
                };
                let _ = out.flush();
                // SAFETY: ends the forked child without running the harness.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                std::process::exit(exit_code(status).unwrap_or(255));
            }
        }
    }

    /// A process in its own user, pid, mount, uts, ipc and net namespaces
    /// and its own pids cgroup, standing in for a zone's init.
    struct FakeZone {
        unshare: std::process::Child,
        init: i32,
        cgroup: Option<PathBuf>,
    }

    impl FakeZone {
        fn start() -> Result<FakeZone, String> {
            let mut unshare = Command::new("unshare")
                .args(["--user", "--map-root-user", "--fork", "--kill-child", "--pid", "--mount", "--mount-proc"])
                .args(["--uts", "--ipc", "--net", "sh", "-c", "hostname zlogin-test && echo ready && exec sleep 60"])
                .stdout(PStdio::piped())
                .stderr(PStdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run unshare: {e}"))?;
            let mut line = String::new();
            BufReader::new(unshare.stdout.take().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
            if line.trim() != "ready" {
                let _ = unshare.kill();
                let out = unshare.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!("unshare failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            let parent = unshare.id().to_string();
            let init = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .find(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or("");
                    after.split(' ').nth(1) == Some(parent.as_str())
                })
                .ok_or("cannot find the namespace's init")?;
            let mut zone = FakeZone { unshare, init, cgroup: None };
            // Its own pids cgroup, to see zlogin join it.
            let base = if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
                PathBuf::from("/sys/fs/cgroup/pids")
            } else {
                PathBuf::from("/sys/fs/cgroup")
            };
            let dir = base.join(format!("zonevisor-cli-test-{}", std::process::id()));
            std::fs::create_dir(&dir).map_err(|e| format!("cannot make the cgroup {}: {e}", dir.display()))?;
            zone.cgroup = Some(dir.clone());
            std::fs::write(dir.join("cgroup.procs"), init.to_string())
                .map_err(|e| format!("cannot move {init} into {}: {e}", dir.display()))?;
            Ok(zone)
        }
    }

    impl Drop for FakeZone {
        fn drop(&mut self) {
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
            if let Some(dir) = &self.cgroup {
                for _ in 0..50 {
                    if std::fs::remove_dir(dir).is_ok() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
    }

    fn zlogin_in(zone: &FakeZone, command: &str) -> (i32, String, String) {
        let init = zone.init;
        let d = FakeDaemon::start(move |_| {
            (200, json!({"uuid": U1, "brand": "lx", "state": "running", "pid": init}).to_string())
        });
        let argv = json!(["zlogin", U1, command]).to_string();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["zlogin::tests::reexec_zlogin", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(REEXEC_ENV, argv)
            .env(zonevisor_api::SOCKET_ENV, d.path())
            .env("TERM", "vt100")
            .stdin(PStdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn enters_a_zone_and_passes_exit_status() {
        if !geteuid().is_root() || Command::new("unshare").arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root with util-linux");
            eprintln!("skipping enters_a_zone_and_passes_exit_status: needs root and unshare(1)");
            return;
        }
        let zone = match FakeZone::start() {
            Ok(z) => z,
            Err(e) => {
                assert!(std::env::var_os("CI").is_none(), "{e}");
                eprintln!("skipping enters_a_zone_and_passes_exit_status: {e}");
                return;
            }
        };
        let script = "echo host=$(hostname); echo pid=$$; echo uid=$(id -u); \
                      echo env=$HOME:$USER:$container:$TERM:$PATH; echo cwd=$(pwd); \
                      echo netdevs=$(tail -n +3 /proc/net/dev | wc -l); \
                      echo cgroup=$(grep -c zonevisor-cli-test /proc/self/cgroup); exit 7";
        let (code, out, err) = zlogin_in(&zone, script);
        assert_eq!(code, 7, "stdout: {out}\nstderr: {err}");
        assert!(out.contains("host=zlogin-test\n"), "{out}");
        let pid: u32 = out.split("pid=").nth(1).and_then(|r| r.lines().next()).unwrap().parse().unwrap();
        assert!(pid < 10, "the command runs in the zone's pid namespace: {out}");
        assert!(out.contains("uid=0\n"), "{out}");
        assert!(out.contains(&format!("env=/root:root:zonevisor:vt100:{ZONE_PATH}\n")), "{out}");
        assert!(out.contains("cwd=/\n"), "{out}");
        assert!(out.contains("netdevs=1\n"), "only lo in the zone's network namespace: {out}");
        assert!(out.contains("cgroup=1\n"), "joined the zone's cgroup: {out}");

        let (code, out, err) = zlogin_in(&zone, "kill -TERM $$");
        assert_eq!(code, 143, "killed by SIGTERM is 128+15: {out} {err}");
    }
}
