//! `lastexited`: `exit_status` and `exit_timestamp`, which say how a
//! zone's init last ended (test-lastexited.js).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// Starts the zone and waits until its init has exited and a new
/// `exit_timestamp` (not `old`) is recorded; returns the VM object.
fn run_until_exit(h: &TestHost, uuid: &str, old: &Value) -> Value {
    // SmartOS boots with zoneadm here, which does not wait for init; an
    // init that exits at once may make vmadm start report it, which is
    // not what this test is about.
    let r = h.vmadm(&["start", uuid]);
    eprintln!("vmadm start: exit {} {}{}", r.code, r.stdout, r.stderr);
    wait_for(Duration::from_secs(30), "init to exit and be recorded", || {
        let vm = h.get(uuid);
        (vm["state"] == "stopped" && vm.get("exit_timestamp").is_some() && &vm["exit_timestamp"] != old).then_some(vm)
    })
}

// test-lastexited.js "test lastexited not set, then set": no exit fields
// before init first exits; then 0, 13 and -9 (killed by SIGKILL) with a
// new exit_timestamp each time.
#[test]
fn lastexited_exit_status_and_timestamp_as_init_exits() {
    let Some((h, img)) = host() else { return };
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({
                "alias": "test-lastexited", "autoboot": false, "restart_init": false, "init_name": "/root/init",
                "max_locked_memory": 512, "max_physical_memory": 512, "max_swap": 1024,
            }),
        ),
    );
    let vm = h.get(&uuid);
    assert_eq!(vm["zone_state"], "installed", "{vm}");
    assert!(vm.get("exit_status").is_none() && vm.get("exit_timestamp").is_none(), "no exit yet: {vm}");

    let mut last = Value::Null;
    for (init, status) in [("exit 0", 0), ("exit 13", 13)] {
        write_script(&vm, "/root/init", &format!("#!/bin/sh\n{init}\n"));
        let from = now_secs();
        let vm = run_until_exit(&h, &uuid, &last);
        assert_eq!(vm["zone_state"], "installed", "{vm}");
        assert_eq!(vm["exit_status"], status, "init did `{init}`: {vm}");
        assert_timestamp_between(&vm["exit_timestamp"], from, now_secs(), "exit_timestamp");
        last = vm["exit_timestamp"].clone();
    }

    // Killed by SIGKILL: -9. (Linux ignores a SIGKILL that a pid
    // namespace's init sends itself, which is how SmartOS's test kills
    // it; here the kill comes from outside, through vmadm kill.)
    write_script(&vm, "/root/init", "#!/bin/sh\nwhile :; do sleep 1; done\n");
    h.vmadm(&["start", &uuid]).ok();
    let from = now_secs();
    h.vmadm(&["kill", "-s", "SIGKILL", &uuid]).ok();
    let vm = wait_for(Duration::from_secs(30), "the killed init to be recorded", || {
        let vm = h.get(&uuid);
        (vm["state"] == "stopped" && vm["exit_timestamp"] != last).then_some(vm)
    });
    assert_eq!(vm["zone_state"], "installed", "{vm}");
    assert_eq!(vm["exit_status"], -9, "init killed by SIGKILL: {vm}");
    assert_timestamp_between(&vm["exit_timestamp"], from, now_secs(), "exit_timestamp");
}
