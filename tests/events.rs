//! `vmadm events` and `vmadm info` end to end: the real daemon, zones and CLI.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A `vmadm events ...` process and the lines it has printed.
struct Watcher {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    fn start(h: &TestHost, args: &[&str]) -> Watcher {
        let mut child = Command::new(bin("zonevisor"))
            .arg0("vmadm")
            .arg("events")
            .args(args)
            .env("ZONEVISOR_SOCKET", &h.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vmadm events");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line, waiting up to `within`.
    #[track_caller]
    fn line(&self, within: Duration) -> String {
        self.lines.recv_timeout(within).unwrap_or_else(|e| panic!("no event line within {within:?}: {e}"))
    }

    /// JSON events up to and including the first for which `last` holds.
    #[track_caller]
    fn until(&self, within: Duration, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!("the awaited event did not come ({e}); got {out:#?}"),
            };
            let ev: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            let done = last(&ev);
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// Nothing more arrives within `within`.
    #[track_caller]
    fn quiet(&self, within: Duration) {
        if let Ok(l) = self.lines.recv_timeout(within) {
            panic!("unexpected event line {l}");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `2026-11-21T09:00:00.123Z`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.chars().filter(char::is_ascii_digit).count() == 17
}

/// The `(from, to)` of every change of `prop` in `events`, in order.
fn transitions(events: &[Value], prop: &str) -> Vec<(Value, Value)> {
    events
        .iter()
        .filter(|e| e["type"] == "modify")
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["prettyPath"] == prop)
        .map(|c| (c["from"].clone(), c["to"].clone()))
        .collect()
}

fn pair(from: &str, to: &str) -> (Value, Value) {
    (json!(from), json!(to))
}

#[test]
fn events_follow_a_zone_from_create_to_delete() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let w = Watcher::start(&h, &["-j", "-r"]);
    let ready: Value = serde_json::from_str(&w.line(Duration::from_secs(10))).unwrap();
    assert_eq!(ready["type"], "ready", "-r prints the ready event first: {ready}");
    assert!(is_timestamp(ready["timestamp"].as_str().unwrap_or("")), "{ready}");

    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "ev1", "image_uuid": img, "restart_init": false}));
    h.vmadm(&["stop", &uuid]).ok();
    h.vmadm(&["start", &uuid]).ok();
    h.vmadm(&["update", &uuid, "alias=ev2"]).ok();
    h.vmadm(&["delete", &uuid]).ok();

    let events = w.until(Duration::from_secs(60), |e| e["type"] == "delete");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"create"), "{events:#?}");
    assert!(types[1..types.len() - 1].iter().all(|t| *t == "modify"), "{types:?}");
    for e in &events {
        assert_eq!(e["uuid"], uuid.as_str(), "{e}");
        assert!(is_timestamp(e["timestamp"].as_str().unwrap_or("")), "{e}");
        assert!(e.get("vm").is_none(), "without -f no VM object is sent: {e}");
        if e["type"] == "modify" {
            let changes = e["changes"].as_array().unwrap();
            assert!(!changes.is_empty(), "{e}");
            assert!(changes.iter().all(|c| c["prettyPath"] != "last_modified"), "{e}");
        }
    }
    let stamps: Vec<&str> = events.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "timestamps go forward: {stamps:?}");
    assert_eq!(events[0]["alias"], "ev1");
    assert_eq!(events.last().unwrap()["alias"], "ev2");

    assert_eq!(
        transitions(&events, "state"),
        [
            pair("provisioning", "stopped"), // create: cloned
            pair("stopped", "running"),      // autoboot
            pair("running", "stopping"),     // vmadm stop
            pair("stopping", "stopped"),
            pair("stopped", "running"), // vmadm start
            pair("running", "stopped"), // vmadm delete stops it first
        ]
    );
    assert_eq!(transitions(&events, "autoboot"), [(json!(true), json!(false)), (json!(false), json!(true))]);
    assert_eq!(transitions(&events, "alias"), [pair("ev1", "ev2")]);
    let pids = transitions(&events, "pid");
    assert!(pids.iter().any(|(from, to)| from.is_null() && to.is_i64()), "a started zone gains a pid: {pids:?}");
    assert!(pids.iter().any(|(from, to)| from.is_i64() && to.is_null()), "a stopped zone loses it: {pids:?}");
}

#[test]
fn events_for_one_zone_full_objects_and_the_human_format() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let a = h.create_ok(&json!({"brand": "lx", "alias": "a1", "image_uuid": img, "autoboot": false}));
    let only_a = Watcher::start(&h, &["-j", "-r", "-f", &a]);
    let human = Watcher::start(&h, &["-r"]);
    let line = only_a.line(Duration::from_secs(10));
    assert!(line.contains("\"type\":\"ready\""), "{line}");
    let line = human.line(Duration::from_secs(10));
    assert!(line.starts_with('[') && line.ends_with("] ready"), "{line}");

    let b = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    h.vmadm(&["update", &a, "alias=a2"]).ok();
    h.vmadm(&["delete", &b]).ok();
    h.vmadm(&["delete", &a]).ok();

    let events = only_a.until(Duration::from_secs(30), |e| e["type"] == "delete");
    assert!(events.iter().all(|e| e["uuid"] == a.as_str()), "only {a}'s events: {events:#?}");
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(transitions(&events, "alias"), [pair("a1", "a2")]);
    assert_eq!(events[0]["vm"]["alias"], "a2", "-f sends the VM object as it is after the event");
    assert_eq!(events[1]["vm"]["uuid"], a.as_str());
    only_a.quiet(Duration::from_millis(300));

    // [<timestamp>] <uuid> <alias> <type>[: <property> <from> -> <to>; ...]
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&a) && l.ends_with(" delete")) {
        seen.push(human.line(Duration::from_secs(30)));
    }
    let stamp_ok =
        |l: &String| l.starts_with('[') && l.get(1..25).is_some_and(is_timestamp) && l[25..].starts_with("] ");
    assert!(seen.iter().all(stamp_ok), "{seen:#?}");
    let has = |needle: &str| seen.iter().any(|l| l.ends_with(needle));
    assert!(has(&format!("{b} - create")), "{seen:#?}");
    assert!(has(&format!("{b} - modify: state provisioning -> stopped")), "{seen:#?}");
    assert!(has(&format!("{a} a2 modify: alias a1 -> a2")), "{seen:#?}");
    assert!(has(&format!("{b} - delete")), "{seen:#?}");
}

#[test]
fn info_reports_live_usage_of_a_running_zone() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "inf", "image_uuid": img, "max_physical_memory": 256}));
    let info = h.vmadm(&["info", &uuid]).json();
    assert_eq!(info["uuid"], uuid.as_str(), "{info}");
    assert_eq!(info["state"], "running");
    assert_eq!(info["pid"], h.get(&uuid)["pid"]);
    assert!(info["uptime_secs"].is_u64(), "{info}");
    assert!(info["memory"]["current_bytes"].as_u64().unwrap() > 0, "{info}");
    assert!(info["pids"]["current"].as_u64().unwrap() >= 1, "{info}");
    let cpu1 = info["cpu"]["usage_ns"].as_u64().unwrap();
    assert!(cpu1 > 0, "{info}");
    match info["pressure_source"].as_str() {
        Some("zone") => assert!(info["pressure"]["cpu"]["some"]["avg10"].is_number(), "{info}"),
        Some("host") => assert!(info["host_pressure"]["cpu"]["some"]["avg10"].is_number(), "{info}"),
        Some("none") => assert!(!std::path::Path::new("/proc/pressure/cpu").exists(), "{info}"),
        other => panic!("pressure_source {other:?}: {info}"),
    }

    // Work in the zone moves the numbers.
    h.cli(
        "zlogin",
        &[
            &uuid,
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; dd if=/dev/zero of=/tmp/f bs=1k count=2048 2>/dev/null",
        ],
        None,
    )
    .ok();
    let info2 = h.vmadm(&["info", &uuid]).json();
    let cpu2 = info2["cpu"]["usage_ns"].as_u64().unwrap();
    assert!(cpu2 > cpu1, "CPU time moves: {cpu1} then {cpu2}");
    assert!(
        info2["memory"]["current_bytes"].as_u64().unwrap() > 2 << 20,
        "a 2 MiB file in the zone's /tmp is charged to it: {info2}"
    );

    // Types select parts of the answer.
    let cpu_only = h.vmadm(&["info", &uuid, "cpu,pids"]).json();
    let keys: Vec<&String> = cpu_only.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["cpu", "pids"]);
    assert_eq!(h.vmadm(&["info", &uuid, "spice"]).code, 2);

    h.vmadm(&["stop", "-F", &uuid]).ok();
    let r = h.vmadm(&["info", &uuid]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is not running"), "{}", r.stderr);
    assert_eq!(r.stdout, "");
}

/// Waits for `child` to exit and returns its status.
#[track_caller]
fn exited(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "{what} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_end_cleanly_when_the_daemon_goes_away() {
    let Some(mut h) = TestHost::new() else { return };
    // Killed: the connection drops mid-stream.
    let mut w = Watcher::start(&h, &["-r"]);
    assert!(w.line(Duration::from_secs(10)).ends_with("] ready"));
    h.kill_daemon();
    assert_eq!(exited(&mut w.child, "vmadm events (daemon killed)").code(), Some(0));
    // SIGTERM: the daemon ends open streams instead of waiting for them.
    h.start_daemon();
    let mut w = Watcher::start(&h, &["-j", "-r"]);
    assert!(w.line(Duration::from_secs(10)).contains("ready"));
    let mut daemon = h.daemon.take().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(exited(&mut daemon, "zonevisord (SIGTERM with an event stream open)").success(), "{}", h.log());
    assert_eq!(exited(&mut w.child, "vmadm events (daemon stopped)").code(), Some(0));
    h.start_daemon();
    assert_eq!(h.vmadm(&["events", "-x"]).code, 2, "usage errors exit 2");
}
