//! `lifecycle`: create, start, stop, reboot, kill and delete: what each
//! prints, on which stream, the states they leave and their exit codes
//! (vmadm.js; test-start-stop.js; test-reboot.js; test-snapshots.js).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// Asserts a successful command that prints `message` on stderr (as
/// SmartOS's vmadm does) and nothing on stdout.
#[track_caller]
fn assert_says(r: &Run, message: &str, what: &str) {
    assert_eq!(r.code, 0, "{what}: stdout={} stderr={}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "", "{what}: nothing on stdout (SmartOS prints {message:?} on stderr)");
    assert!(r.stderr.lines().any(|l| l.trim() == message), "{what}: stderr should say {message:?}: {:?}", r.stderr);
}

/// Asserts a failure (exit `code`) whose stderr contains `message`.
#[track_caller]
fn assert_fails_with(r: &Run, code: i32, message: &str, what: &str) {
    assert_eq!(r.code, code, "{what}: stdout={} stderr={}", r.stdout, r.stderr);
    assert!(r.stderr.contains(message), "{what}: stderr should contain {message:?}: {:?}", r.stderr);
}

/// `(state, zone_state, autoboot, has a pid)` of a VM.
fn status(vm: &Value) -> (String, String, bool, bool) {
    (
        vm["state"].as_str().unwrap_or("").to_string(),
        vm["zone_state"].as_str().unwrap_or("").to_string(),
        vm["autoboot"].as_bool().unwrap_or(false),
        vm.get("pid").is_some(),
    )
}

fn st(state: &str, zone_state: &str, autoboot: bool, pid: bool) -> (String, String, bool, bool) {
    (state.to_string(), zone_state.to_string(), autoboot, pid)
}

// vmadm.js's messages for create, start, stop, reboot and delete, and its
// no-ops (start of a running VM, stop of a stopped one: exit 0);
// test-reboot.js "test reboot SmartOS VM", "test reboot stopped SmartOS VM
// fails"; the command aliases boot, halt, destroy and json.
#[test]
fn lifecycle_messages_states_and_exit_codes() {
    let Some((h, img)) = host() else { return };
    let r = h.create(&lx(&img, json!({"alias": "lifecycle"})));
    let uuid = created_uuid(&r);
    assert_says(&r, &format!("Successfully created VM {uuid}"), "create");
    assert_eq!(status(&h.get(&uuid)), st("running", "running", true, true));

    let r = h.vmadm(&["start", &uuid]);
    assert_says(&r, &format!("VM {uuid} is already 'running'"), "start of a running VM");

    let r = h.vmadm(&["stop", &uuid]);
    assert_says(&r, &format!("Successfully completed stop for VM {uuid}"), "stop");
    assert_eq!(status(&h.get(&uuid)), st("stopped", "installed", false, false), "stop clears autoboot");
    let r = h.vmadm(&["stop", &uuid]);
    assert_says(&r, &format!("VM {uuid} is already not 'running' (currently: stopped)"), "stop of a stopped VM");

    let r = h.vmadm(&["reboot", &uuid]);
    assert_fails_with(&r, 1, "Cannot reboot vm from state \"stopped\"", "reboot of a stopped VM");
    assert_eq!(h.get(&uuid)["state"], "stopped", "a refused reboot leaves it stopped");
    let r = h.vmadm(&["kill", &uuid]);
    assert_fails_with(&r, 1, &format!("Cannot find running init PID for VM {uuid}"), "kill of a stopped VM");

    let r = h.vmadm(&["start", &uuid]);
    assert_says(&r, &format!("Successfully started VM {uuid}"), "start");
    let vm = h.get(&uuid);
    assert_eq!(status(&vm), st("running", "running", true, true), "start sets autoboot");

    for args in [&["reboot"][..], &["reboot", "-F"]] {
        let before = h.get(&uuid);
        // boot_timestamp has SmartOS's one-second resolution at worst.
        std::thread::sleep(Duration::from_millis(1100));
        let mut all = args.to_vec();
        all.push(&uuid);
        let r = h.vmadm(&all);
        assert_says(&r, &format!("Successfully completed reboot for VM {uuid}"), &format!("vmadm {args:?}"));
        let vm = h.wait_state(&uuid, "running", Duration::from_secs(30));
        assert_ne!(vm["boot_timestamp"], before["boot_timestamp"], "{args:?}: boot_timestamp changed");
        assert_ne!(vm["pid"], before["pid"], "{args:?}: a new init");
        assert_eq!(status(&vm), st("running", "running", true, true));
    }

    let r = h.vmadm(&["stop", "-F", &uuid]);
    assert_says(&r, &format!("Successfully completed stop for VM {uuid}"), "stop -F");
    assert_eq!(h.get(&uuid)["state"], "stopped");

    // The aliases.
    assert_says(&h.vmadm(&["boot", &uuid]), &format!("Successfully started VM {uuid}"), "boot");
    assert_says(&h.vmadm(&["halt", &uuid]), &format!("Successfully completed stop for VM {uuid}"), "halt");
    assert_eq!(h.vmadm(&["json", &uuid]).json(), h.get(&uuid), "json is get");

    let r = h.vmadm(&["delete", &uuid]);
    assert_says(&r, &format!("Successfully deleted VM {uuid}"), "delete");
    let r = h.vmadm(&["get", &uuid]);
    assert_fails_with(&r, 1, &format!("zoneadm: {uuid}: No such zone configured"), "get after delete");
    let uuid = create(&h, &lx(&img, json!({})));
    assert_says(&h.vmadm(&["destroy", &uuid]), &format!("Successfully deleted VM {uuid}"), "destroy");
    assert_eq!(h.vmadm(&["list", "-H"]).ok(), "", "no VM left");
}

// test-start-stop.js "test start/stop": a stopped VM started and stopped
// again and again.
#[test]
fn lifecycle_start_stop_loops() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "test-start-stop", "autoboot": false})));
    for _ in 0..3 {
        h.vmadm(&["start", &uuid]).ok();
        assert_eq!(h.get(&uuid)["state"], "running");
        h.vmadm(&["stop", &uuid]).ok();
        assert_eq!(h.get(&uuid)["state"], "stopped");
    }
}

/// An init that records the signals it gets in /root/got-signal and exits on them.
const SIGNAL_INIT: &str = "#!/bin/sh\n\
    trap 'echo TERM >> /root/got-signal; exit 0' TERM\n\
    trap 'echo HUP >> /root/got-signal; exit 0' HUP\n\
    while :; do sleep 1; done\n";

// vmadm.js's kill: SIGTERM unless -s says otherwise, to the VM's init, and
// its message.
#[test]
fn lifecycle_kill_sends_sigterm_by_default() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"autoboot": false, "restart_init": false, "init_name": "/root/init"})));
    let vm = h.get(&uuid);
    write_script(&vm, "/root/init", SIGNAL_INIT);
    let got = zone_root(&vm).join("root/got-signal");
    for (args, signal) in [(&[][..], "SIGTERM"), (&["-s", "SIGHUP"][..], "SIGHUP")] {
        let _ = std::fs::remove_file(&got);
        h.vmadm(&["start", &uuid]).ok();
        let mut all = vec!["kill"];
        all.extend(args);
        all.push(&uuid);
        let r = h.vmadm(&all);
        assert_says(&r, &format!("Sent signal \"{signal}\" to init process for VM {uuid}"), &format!("vmadm {all:?}"));
        let seen = wait_for(Duration::from_secs(20), &format!("init to record {signal}"), || {
            std::fs::read_to_string(&got).ok().filter(|s| !s.is_empty())
        });
        assert_eq!(seen.trim(), signal.trim_start_matches("SIG"), "init got {seen:?}");
        h.wait_state(&uuid, "stopped", Duration::from_secs(20));
    }
}

// vmadm.js: every command on a VM that does not exist is an error (exit 1)
// naming it.
#[test]
fn lifecycle_unknown_vm() {
    let Some((h, _img)) = host() else { return };
    for verb in ["start", "stop", "reboot", "kill", "delete", "get", "info"] {
        let r = h.vmadm(&[verb, BOGUS_UUID]);
        assert_fails_with(&r, 1, BOGUS_UUID, &format!("vmadm {verb} of an unknown VM"));
    }
    let r = h.cli("vmadm", &["update", BOGUS_UUID], Some(r#"{"alias": "x"}"#));
    assert_fails_with(&r, 1, BOGUS_UUID, "vmadm update of an unknown VM");
    let r = h.vmadm(&["update", BOGUS_UUID, "alias=x"]);
    assert_fails_with(&r, 1, BOGUS_UUID, "vmadm update k=v of an unknown VM");
}

/// The names of a VM's snapshots.
fn snapshots(vm: &Value) -> Vec<String> {
    let mut names: Vec<String> = vm["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("no snapshots array: {vm}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

// test-snapshots.js's cases for a zone without delegated datasets:
// "create snapshot with bad name", "write file to joyent-minimal zoneroot
// then snapshot1" (and 2 and 3), "try joyent-minimal snapshot2 again",
// "rollback joyent-minimal to snapshot2 and test data", "rollback ... to
// snapshot1", "delete snapshot1", "create snapshot ... with numeric name",
// "create/delete snapshot ... should update last_modified", "take snapshot
// of stopped joyent-minimal VM", "modify tags and rollback".
#[test]
fn lifecycle_snapshots_create_rollback_delete() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "snapshots"})));
    assert!(snapshots(&h.get(&uuid)).is_empty());
    let vm = h.get(&uuid);
    let hello = zone_root(&vm).join("root/hello.txt");
    let snap = |name: &str| h.vmadm(&["create-snapshot", &uuid, name]);

    for bad in [
        "thisisareallylongsnapshotnamethatshouldbreakthingsbecauseitiswaytoolongforthemaxsnapshotnamevalue",
        "01234567890123456789012345678901234567890123456789012345678901234567890123456789",
        "!@#)!%*#^@)^#%$@U^@#)$*#@$!@#!@#",
        "\n",
        "bacon & eggs & ham",
        "one fish two fish red fish blue fish",
        "this,string,has,commas",
    ] {
        assert_eq!(snap(bad).code, 1, "snapshot name {bad:?} is refused");
    }
    assert!(snapshots(&h.get(&uuid)).is_empty(), "no snapshot from a bad name");

    for (n, magic) in ["snapshot1", "snapshot2", "snapshot3"].iter().zip(["MAGIC1", "MAGIC2", "MAGIC3"]) {
        std::fs::write(&hello, magic).unwrap();
        assert_says(&snap(n), &format!("Created snapshot {n} for VM {uuid}"), "create-snapshot");
    }
    assert_eq!(snapshots(&h.get(&uuid)), ["snapshot1", "snapshot2", "snapshot3"]);
    assert_eq!(snap("snapshot2").code, 1, "a snapshot name is used once");

    // Rolling back deletes the newer snapshots; the VM runs again after.
    for (n, magic, left) in
        [("snapshot2", "MAGIC2", &["snapshot1", "snapshot2"][..]), ("snapshot1", "MAGIC1", &["snapshot1"][..])]
    {
        let r = h.vmadm(&["rollback-snapshot", &uuid, n]);
        assert_says(&r, &format!("Rolled back snapshot {n} for VM {uuid}"), "rollback-snapshot");
        assert_eq!(std::fs::read_to_string(&hello).unwrap(), magic);
        let vm = h.wait_state(&uuid, "running", Duration::from_secs(30));
        assert_eq!(snapshots(&vm), left);
    }
    let r = h.vmadm(&["delete-snapshot", &uuid, "snapshot1"]);
    assert_says(&r, &format!("Deleted snapshot snapshot1 for VM {uuid}"), "delete-snapshot");
    assert!(snapshots(&h.get(&uuid)).is_empty());

    let before = h.get(&uuid)["last_modified"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    snap("20130131180505");
    let vm = h.get(&uuid);
    assert_eq!(snapshots(&vm), ["20130131180505"], "a numeric name");
    assert_ne!(vm["last_modified"], before, "create-snapshot updates last_modified");
    let before = vm["last_modified"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    h.vmadm(&["delete-snapshot", &uuid, "20130131180505"]).ok();
    assert_ne!(h.get(&uuid)["last_modified"], before, "delete-snapshot updates last_modified");

    // Tags roll back with the VM.
    update_ok(&h, &uuid, &json!({"set_tags": {"foo": 1}}));
    snap("initial-tags-snap");
    assert_eq!(update_ok(&h, &uuid, &json!({"set_tags": {"foo": 2}}))["tags"], json!({"foo": 2}));
    h.vmadm(&["rollback-snapshot", &uuid, "initial-tags-snap"]).ok();
    assert_eq!(h.get(&uuid)["tags"], json!({"foo": 1}));

    // A stopped VM can be snapshotted.
    h.vmadm(&["stop", &uuid]).ok();
    assert_says(&snap("shouldntmount"), &format!("Created snapshot shouldntmount for VM {uuid}"), "stopped");
    assert!(snapshots(&h.get(&uuid)).contains(&"shouldntmount".to_string()));
}

// test-snapshots.js "create snapshot without vmsnap name and it should not
// show up" (a snapshot of the dataset made by another tool), "create 50
// snapshots on joyent-minimal" and "delete 50 snapshots" (20 here), and
// vmadm.js's usage for the snapshot commands: a missing snapshot name is a
// usage error (exit 2), an unknown VM or snapshot an error naming it.
#[test]
fn lifecycle_snapshots_only_vmsnap_many_and_errors() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "snapshots2", "autoboot": false})));
    // A snapshot another tool made is not one of vmadm's.
    let dir = h.pool().join(".snapshots").join(&uuid);
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(h.pool().join(&uuid))
        .arg(dir.join("manual-snapshot"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(snapshots(&h.get(&uuid)).is_empty(), "a snapshot without the vmsnap- prefix shows up");

    let names: Vec<String> = (0..20).map(|i| format!("snap{i:02}")).collect();
    for n in &names {
        assert_says(&h.vmadm(&["create-snapshot", &uuid, n]), &format!("Created snapshot {n} for VM {uuid}"), n);
    }
    let vm = h.get(&uuid);
    assert_eq!(snapshots(&vm), names);
    // Newest first, each with its creation time, as SmartOS lists them.
    let listed = vm["snapshots"].as_array().unwrap();
    assert_eq!(listed[0]["name"], "snap19");
    assert!(listed.iter().all(|s| s["created_at"].as_str().is_some_and(|t| t.ends_with('Z'))), "{vm}");
    for n in &names {
        assert_says(&h.vmadm(&["delete-snapshot", &uuid, n]), &format!("Deleted snapshot {n} for VM {uuid}"), n);
    }
    assert!(snapshots(&h.get(&uuid)).is_empty());

    let r = h.vmadm(&["create-snapshot", &uuid]);
    assert_eq!(r.code, 2, "a missing name is a usage error: {}", r.stderr);
    assert!(r.stderr.contains("Wrong number of parameters to \"create-snapshot\""), "{}", r.stderr);
    assert_fails_with(&h.vmadm(&["rollback-snapshot", &uuid, "nope"]), 1, "No snapshot named \"nope\"", "rollback");
    assert_fails_with(&h.vmadm(&["delete-snapshot", &uuid, "nope"]), 1, "No snapshot named \"nope\"", "delete");
    for verb in ["create-snapshot", "rollback-snapshot", "delete-snapshot"] {
        assert_fails_with(&h.vmadm(&[verb, BOGUS_UUID, "s1"]), 1, BOGUS_UUID, verb);
    }
    assert_fails_with(&h.vmadm(&["create-snapshot", &uuid, "a b"]), 1, "Invalid snapshot name", "bad name");
}

// test-reboot.js "test force reboot kvm": a forced reboot resets the
// guest in place, so the VM keeps its boot_timestamp.
#[test]
fn lifecycle_kvm_force_reboot_keeps_boot_timestamp() {
    let Some((h, _img)) = host() else { return };
    let uuid = create(
        &h,
        &json!({"brand": "kvm", "vcpus": 1, "ram": 256, "autoboot": true,
                "disks": [{"boot": true, "model": "virtio", "size": 1024}]}),
    );
    let before = h.wait_state(&uuid, "running", Duration::from_secs(60));
    assert!(before["boot_timestamp"].is_string(), "{before}");
    std::thread::sleep(Duration::from_millis(1100));
    let r = h.vmadm(&["reboot", "-F", &uuid]);
    assert_says(&r, &format!("Successfully completed reboot for VM {uuid}"), "reboot -F of a kvm VM");
    let vm = h.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_eq!(vm["boot_timestamp"], before["boot_timestamp"], "a forced kvm reboot keeps boot_timestamp");
}

// vmadm.8.md "start <uuid> [option=value ...]": a KVM VM takes order=cdn
// (with ,once=), cdrom= and disk= for one boot; "For OS VMs, this doesn't
// take any arguments". "sysrq <uuid> <nmi|screenshot>": "only available
// for KVM VMs"; screenshots "end up under the directory zonepath for the
// VM, at: <zonepath>/root/tmp/vm.ppm".
#[test]
fn lifecycle_kvm_start_options_and_sysrq() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &json!({"brand": "kvm", "ram": 128, "autoboot": false, "disks": [{"size": 64}]}));
    let r = h.vmadm(&["start", &uuid, "order=cd,once=d"]);
    assert_says(&r, &format!("Successfully started VM {uuid}"), "start with order=cd,once=d");
    h.vmadm(&["sysrq", &uuid, "nmi"]).ok();
    h.vmadm(&["sysrq", &uuid, "screenshot"]).ok();
    let zonepath = h.get(&uuid)["zonepath"].as_str().unwrap().to_string();
    let shot = std::fs::read(std::path::Path::new(&zonepath).join("root/tmp/vm.ppm")).unwrap();
    assert!(shot.starts_with(b"P6"), "a PPM screenshot at <zonepath>/root/tmp/vm.ppm");
    assert_eq!(h.vmadm(&["sysrq", &uuid, "reboot"]).code, 2, "nmi or screenshot only");
    let zone = create(&h, &lx(&img, json!({})));
    assert_fails_with(&h.vmadm(&["sysrq", &zone, "nmi"]), 1, "hardware VMs", "sysrq of an OS VM");
    h.vmadm(&["stop", &zone]).ok();
    assert_fails_with(&h.vmadm(&["start", &zone, "order=cd"]), 1, "hardware VMs", "start options of an OS VM");
    assert_eq!(h.get(&zone)["state"], "stopped");
    h.vmadm(&["stop", "-F", &uuid]).ok();
}
