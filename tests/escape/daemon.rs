//! The daemon against clients that misbehave: an absurd `vmadm stop -t`
//! (and other out-of-range numbers) gets a clear error or works, the daemon
//! keeps answering, and no row is left `stopping`, even when a stop fails.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::common::*;

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
