//! `vmadm console` and `zlogin` on a terminal, end to end: the real daemon,
//! monitor, zones and CLI, driven through a pty as a user's terminal
//! would drive them (raw mode, CTRL-], window sizes, exit statuses).

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// A CLI process whose stdin, stdout and stderr are the slave of a pty
/// (its controlling terminal), and everything it has printed there.
struct Session {
    child: Child,
    master: Arc<File>,
    /// The test's own copy of the slave, to read the terminal's modes.
    slave: OwnedFd,
    /// The terminal's modes before the tool started (read after the start
    /// they may already be the tool's raw ones).
    before: libc::termios,
    out: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// Where the next `expect` starts looking.
    mark: usize,
}

fn modes(fd: &OwnedFd) -> libc::termios {
    nix::sys::termios::tcgetattr(fd).expect("tcgetattr").into()
}

fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
}

impl Session {
    fn start(h: &TestHost, tool: &str, args: &[&str], rows: u16, cols: u16) -> Session {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        set_size(&pty.master, rows, cols);
        let mut cmd = Command::new(bin("zonevisor"));
        cmd.arg0(tool).args(args).env("ZONEVISOR_SOCKET", &h.socket).env("TERM", "vt100");
        cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()));
        cmd.stdout(Stdio::from(pty.slave.try_clone().unwrap()));
        cmd.stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let before = modes(&pty.slave);
        let child = cmd.spawn().expect("spawn the CLI on a pty");
        let master = Arc::new(File::from(pty.master));
        let out = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (master, out, stop) = (master.clone(), out.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one live pollfd.
                    if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                        continue;
                    }
                    match (&*master).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => out.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            })
        };
        Session { child, master, slave: pty.slave, before, out, stop, reader: Some(reader), mark: 0 }
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` appears after the mark, and moves the mark past it.
    #[track_caller]
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.output();
            if let Some(at) = text.get(self.mark..).and_then(|t| t.find(needle)) {
                self.mark += at + needle.len();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear within {WAIT:?}; the terminal shows:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `bytes` on the terminal.
    /// Resizes the caller's terminal and waits until `stty size` in the
    /// zone reports the new size (the CLI passes SIGWINCH on).
    fn resize_and_expect(&mut self, rows: u16, cols: u16) {
        set_size(&*self.master, rows, cols);
        let want = format!("{rows} {cols}");
        let deadline = Instant::now() + WAIT;
        loop {
            self.send(b"stty size\r");
            std::thread::sleep(Duration::from_millis(100));
            if self.output()[self.mark..].contains(&want) {
                break;
            }
            assert!(Instant::now() < deadline, "the new size did not reach the zone:\n{}", self.output());
        }
    }

    fn send(&self, bytes: &[u8]) {
        (&*self.master).write_all(bytes).expect("write to the pty");
    }

    /// Waits for the process to exit and returns its status.
    #[track_caller]
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader take the last output.
                std::thread::sleep(Duration::from_millis(100));
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the CLI did not exit; the terminal shows:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The terminal modes that raw mode changes.
fn cooked_parts(t: &libc::termios) -> (u32, u32, u32) {
    (t.c_iflag, t.c_oflag, t.c_lflag)
}

fn busybox_zone(h: &TestHost, alias: &str) -> String {
    let img = h.install(busybox());
    h.create_ok(&json!({"brand": "lx", "alias": alias, "image_uuid": img, "max_physical_memory": 128}))
}

fn run_dir(h: &TestHost, uuid: &str) -> std::path::PathBuf {
    h.root.join("run/zones").join(uuid)
}

/// Waits until the zone's console log holds `needle`.
#[track_caller]
fn wait_log(h: &TestHost, uuid: &str, needle: &str) {
    let log = run_dir(h, uuid).join("console.log");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(needle) {
        assert!(Instant::now() < deadline, "{needle:?} not in {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn console_attach_type_detach_replay_and_log() {
    let Some(mut h) = TestHost::new() else { return };
    let uuid = busybox_zone(&h, "con1");
    // The console shell is up (busybox init respawns `-/bin/sh` there).
    wait_log(&h, &uuid, "zone booted");

    let mut s = Session::start(&h, "vmadm", &["console", &uuid], 33, 99);
    let before = s.before;
    s.expect(&format!("[Connected to zone {uuid} console; CTRL-] to detach]"));
    // What the zone printed before anyone attached is replayed.
    s.expect("zone booted");
    let raw = modes(&s.slave);
    assert_eq!(raw.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0, "the terminal is raw while attached");
    s.send(b"echo hello-$((6*7))\r");
    s.expect("hello-42");
    // The zone's console has the caller's size.
    s.send(b"stty size\r");
    s.expect("33 99");
    // And follows it: the kernel signals SIGWINCH to the CLI, which passes it on.
    s.resize_and_expect(41, 101);

    // One client at a time.
    let second = h.vmadm(&["console", &uuid]);
    assert_eq!(second.code, 1, "{} {}", second.stdout, second.stderr);
    assert!(second.stderr.contains("console already in use"), "{}", second.stderr);

    // CTRL-] detaches, exit 0, the terminal as it was.
    s.send(&[0x1d]);
    s.expect(&format!("[Detached from zone {uuid} console]"));
    assert_eq!(s.wait(), 0, "{}", s.output());
    assert_eq!(cooked_parts(&modes(&s.slave)), cooked_parts(&before), "terminal modes restored");
    drop(s);

    // Written while nobody is attached: replayed on the next attach, once,
    // and not what the first session already showed.
    h.cli("zlogin", &[&uuid, "echo while-away > /dev/console"], None).ok();
    wait_log(&h, &uuid, "while-away");
    let mut s = Session::start(&h, "vmadm", &["console", &uuid], 24, 80);
    s.expect("while-away");
    s.send(b"echo again-$((6*7))\r");
    s.expect("again-42");
    let shown = s.output();
    assert_eq!(shown.matches("while-away").count(), 1, "{shown}");
    assert!(!shown.contains("hello-42"), "the first session's output is shown again:\n{shown}");

    // The daemon is not in the path: the console works while it is down.
    h.kill_daemon();
    s.send(b"echo no-daemon-$((6*7))\r");
    s.expect("no-daemon-42");
    h.start_daemon();

    // The console lives through a reboot: the monitor keeps the pty.
    h.vmadm(&["reboot", &uuid]).ok();
    s.expect("zone booted");
    s.send(b"\recho rebooted-$((6*7))\r");
    s.expect("rebooted-42");
    s.send(&[0x1d]);
    assert_eq!(s.wait(), 0, "{}", s.output());
    drop(s);

    // Without a terminal: stdin is relayed until it ends, output until it pauses.
    let r = h.cli("vmadm", &["console", &uuid], Some("echo piped-$((6*7))\n"));
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("piped-42"), "{}", r.stdout);
    assert!(r.stderr.contains(&format!("[Connected to zone {uuid} console]")), "{}", r.stderr);

    // --log: the whole story, attached or not.
    let log = h.vmadm(&["console", "--log", &uuid]);
    for want in ["zone booted", "hello-42", "while-away", "again-42", "rebooted-42", "piped-42"] {
        assert!(log.ok().contains(want), "{want} missing from --log:\n{}", log.stdout);
    }

    // A SIGTERM to the CLI detaches too, the terminal restored.
    let mut s = Session::start(&h, "vmadm", &["console", &uuid], 24, 80);
    let before = s.before;
    s.expect("[Connected");
    s.send(b"echo term-$((6*7))\r");
    s.expect("term-42");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(s.wait(), 128 + libc::SIGTERM, "{}", s.output());
    assert_eq!(cooked_parts(&modes(&s.slave)), cooked_parts(&before), "terminal modes restored after SIGTERM");
    drop(s);

    // The zone halting ends an attached console.
    let mut s = Session::start(&h, "vmadm", &["console", &uuid], 24, 80);
    s.expect("[Connected");
    h.vmadm(&["stop", "-F", &uuid]).ok();
    s.expect(&format!("[Connection to zone {uuid} console closed"));
    assert_eq!(s.wait(), 0, "{}", s.output());
    drop(s);

    // A stopped zone: no console, a clear error; the log is still there.
    let r = h.vmadm(&["console", &uuid]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&format!("VM {uuid} is not running (state: stopped)")), "{}", r.stderr);
    assert!(h.vmadm(&["console", "-l", &uuid]).ok().contains("rebooted-42"));
    // Usage errors.
    assert_eq!(h.vmadm(&["console"]).code, 2);
    assert_eq!(h.vmadm(&["console", &uuid, "extra"]).code, 2);
}

#[test]
fn a_client_that_does_not_read_does_not_block_the_zone_or_the_monitor() {
    let Some(h) = TestHost::new() else { return };
    let uuid = busybox_zone(&h, "con2");
    wait_log(&h, &uuid, "zone booted");
    // Attach by hand and never read.
    let mut stuck = UnixStream::connect(run_dir(&h, &uuid).join("monitor.sock")).unwrap();
    stuck.write_all(b"{\"op\":\"console\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(stuck.try_clone().unwrap()).read_line(&mut reply).unwrap();
    assert_eq!(reply.trim(), r#"{"ok":true}"#);

    // ~600 kB to the console: far more than the socket and the monitor hold.
    let script = "i=0; while [ $i -lt 8000 ]; do \
                  echo flood-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); \
                  done > /dev/console; echo flood-done > /dev/console";
    let t = Instant::now();
    h.cli("zlogin", &[&uuid, script], None).ok();
    assert!(t.elapsed() < WAIT, "writing to the console took {:?}", t.elapsed());
    wait_log(&h, &uuid, "flood-done");
    wait_log(&h, &uuid, "flood-7999-");
    // The monitor still answers (vmadm get asks it for init's pid).
    assert!(h.get(&uuid)["pid"].as_i64().is_some());
    // The stuck client still holds the console.
    let r = h.vmadm(&["console", &uuid]);
    assert!(r.stderr.contains("console already in use"), "{}", r.stderr);
    // It got a bounded share of the flood: what the monitor's end of the
    // socket may have in flight (its send buffer, `wmem_default`: a Unix
    // stream socket charges its peer's queue to the sender) plus at most
    // 64 KiB held by the monitor; the rest was dropped for it (the log
    // keeps it). Then the console detaches it when it leaves.
    let flood: usize = (0..8000).map(|i| format!("flood-{i}-{}\r\n", "x".repeat(64)).len()).sum();
    let sndbuf: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_default").unwrap().trim().parse().unwrap();
    let bound = sndbuf + 64 * 1024;
    assert!(bound < flood / 2, "the flood ({flood} bytes) is too small to test the bound ({bound} bytes)");
    stuck.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = stuck.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() > 4 << 20 {
            break;
        }
    }
    eprintln!("the stuck client got {} of the flood's {flood} bytes (bound {bound})", got.len());
    assert!(!got.is_empty() && got.len() <= bound, "the stuck client got {} bytes (bound {bound})", got.len());
    drop(stuck);
    let r = h.cli("vmadm", &["console", &uuid], Some("echo back-$((6*7))\n"));
    assert!(r.stdout.contains("back-42"), "{} {}", r.stdout, r.stderr);
}

/// Says whether stdin is a terminal of the zone's own devpts mount (the
/// mount of the open file against the zone's `/dev/pts`).
const WHICH_DEVPTS: &str = "m=$(grep mnt_id /proc/self/fdinfo/0 | tr -dc 0-9); \
    p=$(awk '$5==\"/dev/pts\"{print $1}' /proc/self/mountinfo); \
    if [ -n \"$m\" ] && [ \"$m\" = \"$p\" ]; then echo on-the-zone-devpts; else echo not-the-zone-devpts; fi";

/// The pid namespace of process `pid`.
fn ns_of(pid: i64) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

#[test]
fn zlogin_on_a_terminal_gets_a_pty_of_the_zone() {
    let Some(h) = TestHost::new() else { return };
    let uuid = busybox_zone(&h, "zl1");

    // A command on a terminal: a pty of the zone's own devpts.
    let script = format!("tty; test -t 0 && echo stdin-is-a-tty; {WHICH_DEVPTS}; exit 7");
    let mut s = Session::start(&h, "zlogin", &[&uuid, &script], 24, 80);
    let before = s.before;
    s.expect("/dev/pts/");
    s.expect("stdin-is-a-tty");
    s.expect("on-the-zone-devpts");
    assert_eq!(s.wait(), 7, "{}", s.output());
    assert_eq!(cooked_parts(&modes(&s.slave)), cooked_parts(&before), "terminal modes restored");
    drop(s);

    // Killed by a signal: 128 + the signal.
    let mut s = Session::start(&h, "zlogin", &[&uuid, "kill -TERM $$"], 24, 80);
    assert_eq!(s.wait(), 143, "{}", s.output());
    drop(s);

    // An interactive shell: the caller's size, job control, ^C, exit status.
    let mut s = Session::start(&h, "zlogin", &[&uuid], 37, 111);
    s.send(b"stty size; echo in-$((6*7))\r");
    s.expect("37 111");
    s.expect("in-42");
    s.resize_and_expect(45, 121);
    // ^C reaches the foreground job through the zone's pty, not zlogin.
    s.send(b"sleep 67; echo sl''ept\r");
    let deadline = Instant::now() + WAIT;
    let zone_ns = ns_of(h.get(&uuid)["pid"].as_i64().unwrap());
    while !pids_mentioning("sleep\x0067").iter().any(|p| ns_of(*p) == zone_ns) {
        assert!(Instant::now() < deadline, "sleep did not start:\n{}", s.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    s.send(&[0x03]);
    s.send(b"echo interrupted-$((6*7))\r");
    s.expect("interrupted-42");
    assert!(!s.output().contains("slept"), "the line went on after ^C:\n{}", s.output());
    s.send(b"exit 3\r");
    assert_eq!(s.wait(), 3, "{}", s.output());
    drop(s);

    // SIGHUP to zlogin (its terminal went away): the zone's session is
    // hung up, the terminal restored, the shell's status reported.
    let mut s = Session::start(&h, "zlogin", &[&uuid], 24, 80);
    let before = s.before;
    s.send(b"echo up-$((6*7))\r");
    s.expect("up-42");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert_eq!(s.wait(), 128 + libc::SIGHUP, "{}", s.output());
    assert_eq!(cooked_parts(&modes(&s.slave)), cooked_parts(&before), "terminal modes restored after SIGHUP");
    drop(s);

    // Without a terminal: pipes, as before.
    let r = h.cli("zlogin", &[&uuid, "tty"], None);
    assert_eq!(r.stdout.trim(), "not a tty", "{} {}", r.stdout, r.stderr);
    assert_eq!(h.cli("zlogin", &[&uuid, "exit 7"], None).code, 7);
    // -T on a terminal: no pty, the command gets the caller's streams.
    let script = format!("{WHICH_DEVPTS}; exit 5");
    let mut s = Session::start(&h, "zlogin", &["-T", &uuid, &script], 24, 80);
    s.expect("not-the-zone-devpts");
    assert_eq!(s.wait(), 5, "{}", s.output());
    drop(s);
    // -t without a terminal: a pty anyway.
    let r = h.cli("zlogin", &["-t", &uuid, "tty"], None);
    assert!(r.stdout.contains("/dev/pts/"), "{} {}", r.stdout, r.stderr);
    assert_eq!(r.code, 0);
}
