//! The daemon against clients that misbehave and monitors that die:
//!
//! - an absurd `vmadm stop -t` (and other out-of-range numbers) gets a clear
//!   error or works, the daemon keeps answering, and no row is left
//!   `stopping`, even when a stop fails;
//! - clients that send nothing, half a header or half a body are
//!   disconnected within the server's bounds while others are served, a
//!   flood of idle connections is held to the server's connection limit,
//!   and `vmadm events` streams outlive those bounds;
//! - a monitor killed with SIGKILL (while the daemon runs, or while it is
//!   away) leaves no cgroup behind and the zone's `exit_reason` says so.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::common::*;

/// `crates/daemon/src/server.rs`: `HEADER_TIMEOUT` and `BODY_TIMEOUT`.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// `crates/daemon/src/server.rs`: `MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 256;
/// `crates/zone/src/monitor.rs`: `REQUEST_TIMEOUT`.
const MONITOR_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What a loaded test host may add to a bound.
const SLACK: Duration = Duration::from_secs(8);

/// Sends one raw request to the API and returns the status and body.
fn raw_call(h: &TestHost, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = zonevisor_api::Client::new(&h.socket)
        .with_timeout(Duration::from_secs(60))
        .request(method, path, Some(body.as_bytes()))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", h.log()));
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

#[test]
fn stop_with_an_absurd_timeout_never_leaves_the_zone_stopping() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "huge-t", "image_uuid": img, "restart_init": false}));
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();

    let r = h.vmadm(&["stop", "-t", "18446744073709551615", &uuid]);
    let vm = h.get(&uuid);
    if r.code == 0 {
        assert_eq!(vm["state"], "stopped", "{vm}");
    } else {
        assert!(r.stderr.contains("timeout"), "the error names the timeout: {}", r.stderr);
        assert_eq!(vm["state"], "running", "a refused stop leaves the zone as it was: {vm}\n{}", h.log());
        assert!(alive(pid));
    }
    if vm["state"] == "stopped" {
        h.vmadm(&["start", &uuid]).ok();
    }
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();

    // The same, and other numbers out of range, straight through the API.
    let stop = format!("/v1/vms/{uuid}/stop");
    for body in [
        json!({"timeout_secs": u64::MAX}).to_string(),
        json!({"timeout_secs": u64::MAX - 29}).to_string(),
        json!({"timeout_secs": 1u64 << 40}).to_string(),
        r#"{"timeout_secs": 1e400}"#.to_string(),
        r#"{"timeout_secs": -1}"#.to_string(),
        r#"{"timeout_secs": 18446744073709551616}"#.to_string(),
    ] {
        let (status, text) = raw_call(&h, "POST", &stop, &body);
        assert_eq!(status, 400, "{body} -> {status} {text}");
        assert!(text.contains("timeout_secs"), "the error names timeout_secs: {body} -> {text}");
        assert_eq!(h.get(&uuid)["state"], "running", "after {body}");
    }
    for sig in ["99999999999", "-1", "0", "65", "SIG", "SIGNOPE", "4294967305"] {
        let r = h.vmadm(&["kill", "-s", sig, &uuid]);
        assert_ne!(r.code, 0, "kill -s {sig} was accepted");
    }
    for (method, path, body) in [
        ("GET", format!("/v1/vms?fields={}", ",".repeat(10_000)), String::new()),
        ("GET", "/v1/events?uuid=%FF%FE".to_string(), String::new()),
        ("POST", format!("/v1/vms/{uuid}/reboot"), r#"{"force": 1e999}"#.to_string()),
        ("POST", format!("/v1/vms/{uuid}/kill"), r#"{"signal": "SIGKILL\u0000"}"#.to_string()),
    ] {
        let (status, text) = raw_call(&h, method, &path, &body);
        assert!(status < 500, "{method} {path} {body} -> {status} {text}");
    }
    let vm = h.get(&uuid);
    assert_eq!((vm["state"].as_str(), vm["pid"].as_i64()), (Some("running"), Some(pid)), "{vm}");
    assert!(alive(pid));

    // A sane stop still works.
    h.vmadm(&["stop", "-t", "5", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "stopped");
}

#[test]
fn a_stop_that_fails_puts_the_row_back() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "frozen", "image_uuid": img, "restart_init": false}));
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    // A monitor that cannot answer: the stop times out (1 s of grace, then
    // the client's 30 s) while the monitor is still there.
    let monitor = Pid::from_raw(monitor_pid(&h, &uuid));
    kill(monitor, Signal::SIGSTOP).unwrap();
    let stop = std::thread::scope(|s| {
        let stop = s.spawn(|| h.vmadm(&["stop", "-t", "1", &uuid]));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(h.get(&uuid)["state"], "stopping", "a graceful stop shows the zone stopping");
        stop.join().unwrap()
    });
    assert_ne!(stop.code, 0, "the stop of a frozen monitor succeeded: {}", stop.stdout);
    let vm = h.get(&uuid);
    assert_eq!(vm["state"], "running", "a failed stop leaves the zone as it was: {vm}\n{}", h.log());
    assert_eq!(vm["zone_state"], "running", "{vm}");
    assert!(alive(pid));
    // The monitor, thawed, still carries out the stop it was sent: its
    // exit is recorded when it comes.
    kill(monitor, Signal::SIGCONT).unwrap();
    let vm = h.wait_state(&uuid, "stopped", Duration::from_secs(30));
    assert!(vm["exit_reason"].as_str().unwrap_or_default().contains("stopped on request"), "{vm}");
}

fn monitor_pid(h: &TestHost, uuid: &str) -> i32 {
    let f = h.root.join("run/zones").join(uuid).join("monitor.pid");
    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).trim().parse().unwrap()
}

/// Reads `sock` until the daemon closes it; how long that took from `since`.
fn wait_closed(name: &str, mut sock: &UnixStream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        let left = (since + within).saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the {name} client is still connected after {within:?}");
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            // An answer (408, 400) before the close is fine.
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return since.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("reading the {name} client: {e}"),
        }
    }
}

#[test]
fn stalled_clients_are_cut_off_while_others_are_served() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());

    // A long-lived event stream, opened first: it must outlive every bound.
    let mut events = UnixStream::connect(&h.socket).unwrap();
    events.write_all(b"GET /v1/events HTTP/1.1\r\nHost: zonevisord\r\n\r\n").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        let mut events = events.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = events.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }

    let start = Instant::now();
    let silent = UnixStream::connect(&h.socket).unwrap();
    let mut half_header = UnixStream::connect(&h.socket).unwrap();
    half_header.write_all(b"GET /v1/vms HTTP/1.1\r\nHost: zonev").unwrap();
    let mut half_body = UnixStream::connect(&h.socket).unwrap();
    half_body
        .write_all(b"POST /v1/validate HTTP/1.1\r\nHost: zonevisord\r\nContent-Length: 100\r\n\r\n{\"action\":")
        .unwrap();

    // Others are served meanwhile, at once.
    for _ in 0..3 {
        let t = Instant::now();
        h.vmadm(&["list"]).ok();
        assert!(t.elapsed() < Duration::from_secs(5), "vmadm list took {:?} beside stalled clients", t.elapsed());
    }

    for (name, sock, bound) in [
        ("silent", &silent, HEADER_TIMEOUT),
        ("half-header", &half_header, HEADER_TIMEOUT),
        ("half-body", &half_body, BODY_TIMEOUT),
    ] {
        let took = wait_closed(name, sock, start, bound + SLACK);
        eprintln!("the {name} client was disconnected after {took:?}");
    }

    // The event stream, open longer than any bound, still delivers.
    assert!(start.elapsed() > HEADER_TIMEOUT);
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "late", "image_uuid": img, "autoboot": false}));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        if text.contains(r#""type":"create""#) && text.contains(&uuid) {
            break;
        }
        assert!(Instant::now() < deadline, "the event stream stopped delivering: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(events);
}

#[test]
fn stalled_clients_of_a_monitor_do_not_lock_the_daemon_out() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "busy", "image_uuid": img, "restart_init": false}));
    let socket = h.root.join("run/zones").join(&uuid).join("monitor.sock");
    // More than the monitor's 32 slots, silent or with half a request line.
    let start = Instant::now();
    let stalled: Vec<UnixStream> = (0..40)
        .map(|i| {
            let mut s = UnixStream::connect(&socket).unwrap();
            if i % 2 == 0 {
                s.write_all(br#"{"op":"sta"#).unwrap();
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The daemon still gets through: `get` asks the monitor for init's pid.
    for _ in 0..3 {
        let vm = h.get(&uuid);
        assert!(vm["pid"].is_i64(), "the daemon could not reach the monitor: {vm}");
    }
    // The monitor drops them after its 10 s; some went earlier, to make room.
    for (i, s) in stalled.iter().enumerate() {
        wait_closed(&format!("monitor #{i}"), s, start, MONITOR_REQUEST_TIMEOUT + SLACK);
    }
    h.vmadm(&["stop", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "stopped");
}

/// The daemon's open sockets.
fn socket_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count()
}

#[test]
fn a_flood_of_idle_connections_is_held_to_the_limit() {
    let Some(h) = TestHost::new() else { return };
    let daemon = zonevisor_api::Client::new(&h.socket).ping().unwrap().pid;
    let before = socket_fds(daemon);
    let flood: Vec<UnixStream> = (0..MAX_CONNECTIONS + 64).map(|_| UnixStream::connect(&h.socket).unwrap()).collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = socket_fds(daemon);
    assert!(
        during <= before + MAX_CONNECTIONS + 4,
        "the daemon holds {} connections ({before} sockets before, {during} during)",
        during - before
    );
    // Answered at the latest once the idle ones are cut off.
    let t = Instant::now();
    let ping = zonevisor_api::Client::new(&h.socket).with_timeout(HEADER_TIMEOUT * 3).ping();
    assert!(ping.is_ok(), "{ping:?}");
    assert!(t.elapsed() < HEADER_TIMEOUT + SLACK, "ping took {:?}", t.elapsed());
    drop(flood);
    h.vmadm(&["list"]).ok();
}

/// The zone's cgroup directory in every mounted cgroup hierarchy.
fn cgroup_dirs(parent: &str, uuid: &str) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount).join(parent).join(uuid))
        })
        .collect()
}

/// The zone's state after its monitor died: stopped, saying so, no cgroup,
/// no stale socket or pid file, the console log kept.
#[track_caller]
fn assert_cleaned_up(h: &TestHost, uuid: &str, monitor: i32) {
    let vm = h.get(uuid);
    assert_eq!(vm["state"], "stopped", "{vm}");
    let reason = vm["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("monitor"), "exit_reason does not say the monitor died: {vm}");
    assert!(reason.contains(&monitor.to_string()), "exit_reason does not name the monitor's pid: {vm}");
    assert!(vm["exit_timestamp"].is_string(), "{vm}");
    assert!(vm.get("pid").is_none(), "{vm}");
    let left: Vec<_> = cgroup_dirs(&h.cgroup_parent, uuid).into_iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "the zone's cgroups are left behind: {left:?}");
    let run = h.root.join("run/zones").join(uuid);
    for f in ["monitor.sock", "monitor.pid"] {
        assert!(!run.join(f).exists(), "{f} is left behind");
    }
    assert!(run.join("console.log").exists(), "the console log is kept");
}

#[test]
fn a_killed_monitor_leaves_no_cgroup_and_says_why() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "orphan", "image_uuid": img, "restart_init": false}));
    let dirs = cgroup_dirs(&h.cgroup_parent, &uuid);
    assert!(dirs.iter().any(|d| d.exists()), "no cgroup of the zone found among {dirs:?}");

    // While the daemon runs.
    let monitor = monitor_pid(&h, &uuid);
    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    h.wait_state(&uuid, "stopped", Duration::from_secs(20));
    assert_cleaned_up(&h, &uuid, monitor);
    h.vmadm(&["start", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "running");
    assert!(h.get(&uuid).get("exit_reason").is_none(), "a start clears the last exit");

    // While the daemon is away.
    let monitor = monitor_pid(&h, &uuid);
    h.kill_daemon();
    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(i64::from(monitor)) {
        assert!(Instant::now() < deadline, "monitor {monitor} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.start_daemon();
    assert_cleaned_up(&h, &uuid, monitor);
    h.vmadm(&["start", &uuid]).ok();
    h.vmadm(&["stop", &uuid]).ok();
    let vm = h.get(&uuid);
    assert!(!vm["exit_reason"].as_str().unwrap_or_default().contains("monitor"), "{vm}");
}
