//! A host reboot, simulated: the power goes (daemon, monitors, zones and
//! lxcfs killed at once, the pool unmounted), the host comes back with a new
//! boot id, and the daemon starts again. Zones with `autoboot` start, the
//! others stay stopped, and nothing written before is lost.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// Kills every process of the test host at once, as a power cut would:
/// the daemon, the monitors and lxcfs (their command lines name the run
/// directory) and the zones' processes (`zone_pids`).
fn power_cut(h: &mut TestHost, zone_pids: &[i64]) {
    h.kill_daemon();
    let run = h.root.join("run").display().to_string();
    let mut victims = pids_mentioning(&run);
    victims.extend_from_slice(zone_pids);
    for &pid in &victims {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while victims.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "processes outlived SIGKILL: {victims:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    // The next boot: a new boot id (the daemon compares it with the one it
    // recorded), and the pool is no longer mounted.
    let db = h.pool().join("config").join("zonevisor.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn.execute("UPDATE host SET value = 'the-previous-boot' WHERE key = 'boot_id'", []).unwrap();
    assert_eq!(changed, 1, "the daemon records the boot id");
    drop(conn);
    let _ = nix::mount::umount2(&h.root.join("run").join("lxcfs"), nix::mount::MntFlags::MNT_DETACH);
    nix::mount::umount2(&h.pool(), nix::mount::MntFlags::empty()).unwrap();
    assert!(!mounted(&h.pool().display().to_string()));

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
