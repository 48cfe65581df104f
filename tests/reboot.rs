//! A host reboot, simulated: the power goes (daemon, monitors, zones and
//! lxcfs killed at once, the pool unmounted), the host comes back with a new
//! boot id, and the daemon starts again. Zones with `autoboot` start, the
//! others stay stopped, and nothing written before is lost.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn after_a_host_reboot_autoboot_zones_start_and_the_others_stay_stopped() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let boots = h.create_ok(&json!({"brand": "lx", "alias": "boots", "image_uuid": img}));
    let never = h.create_ok(&json!({"brand": "lx", "alias": "never", "image_uuid": img, "autoboot": false}));
    let halted = h.create_ok(&json!({"brand": "lx", "alias": "halted", "image_uuid": img}));
    h.vmadm(&["stop", &halted]).ok();
    assert_eq!(h.get(&halted)["autoboot"], false, "vmadm stop clears autoboot");
    h.cli("zlogin", &[&boots, "echo kept > /root/kept"], None).ok();
    let old_pid = h.get(&boots)["pid"].as_i64().unwrap();

    power_cut(&mut h, &[old_pid]);
    next_boot(&h);

    h.start_daemon();
    assert!(mounted(&h.pool().display().to_string()), "the daemon imported the pool");
    let vm = h.wait_state(&boots, "running", Duration::from_secs(30));
    let new_pid = vm["pid"].as_i64().unwrap();
    assert!(new_pid != old_pid && alive(new_pid), "autoboot zone runs again as pid {new_pid}");
    assert_eq!(vm["autoboot"], true);
    assert_eq!(h.cli("zlogin", &[&boots, "cat /root/kept"], None).ok(), "kept\n");
    for uuid in [&never, &halted] {
        let vm = h.get(uuid);
        assert_eq!((vm["state"].as_str(), vm["autoboot"].as_bool()), (Some("stopped"), Some(false)), "{uuid}");
    }
    assert!(h.log().contains("autoboot: started"), "{}", h.log());

    // A daemon restart on the same boot starts nothing that was stopped.
    h.vmadm(&["stop", &boots]).ok();
    h.vmadm(&["update", &boots, "autoboot=true"]).ok();
    h.kill_daemon();
    h.start_daemon();
    assert_eq!(h.get(&boots)["state"], "stopped", "not a reboot: autoboot does not apply");
}

fn netns_of(pid: i64) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap().display().to_string()
}

/// Waits until the zone runs with an init other than `old`; returns the new pid.
fn new_init(h: &TestHost, uuid: &str, old: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let vm = h.get(uuid);
        if let Some(pid) = vm["pid"].as_i64().filter(|p| *p != old && vm["state"] == "running") {
            return pid;
        }
        assert!(Instant::now() < deadline, "init was not started again: {vm}\n{}", h.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_zone_keeps_its_network_namespace_across_reboots_and_init_restarts() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "netns", "image_uuid": img}));
    let pid1 = h.get(&uuid)["pid"].as_i64().unwrap();
    let netns = netns_of(pid1);
    assert_ne!(netns, netns_of(std::process::id() as i64), "the zone has a network namespace of its own");
    // From inside the zone, too: the inode its own processes see.
    let inside = h.cli("zlogin", &[&uuid, "readlink /proc/self/ns/net"], None).ok().trim().to_owned();
    assert_eq!(inside, netns);

    h.vmadm(&["reboot", &uuid]).ok();
    let pid2 = new_init(&h, &uuid, pid1);
    assert_eq!(netns_of(pid2), netns, "vmadm reboot keeps the zone's network namespace");

    // init killed: restart_init starts another, in the same namespace.
    h.vmadm(&["kill", "-s", "KILL", &uuid]).ok();
    let pid3 = new_init(&h, &uuid, pid2);
    assert_eq!(h.get(&uuid)["init_restarts"], 1);
    assert_eq!(netns_of(pid3), netns, "an init restart keeps the zone's network namespace");
    let inside = h.cli("zlogin", &[&uuid, "readlink /proc/self/ns/net"], None).ok().trim().to_owned();
    assert_eq!(inside, netns);
}
