//! `update`: what `vmadm update` does to a VM (test-update.js,
//! test-alias.js, test-quota.js, test-tmpfs.js, test-zfs-limits.js,
//! test-zfs-limits-null.js; the nic tests test-primary-flag.js,
//! test-required-nic-props.js and test-spoof-opts.js; test-update-kvm.js;
//! test-internal_metadata_namespaces.js).
//!
//! zonevisor refuses multicast MACs on a NIC (the kernel would refuse the
//! link at boot), which SmartOS's tests use (`01:02:03:...`): the cases
//! here give the same addresses with the multicast bit clear (`02:...`).

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

// test-update.js "set then unset simple properties"; test-alias.js "test alias".
#[test]
fn update_simple_properties_set_then_cleared_with_null() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "test-update"})));
    for (prop, value) in [
        ("alias", "useless VM"),
        ("billing_id", "9.99"),
        ("hostname", "hamburgerhelper"),
        ("owner_uuid", "36bf401a-28ef-11e1-b4a7-c344deb1a5d6"),
        ("package_name", "really expensive package"),
        ("package_version", "XP"),
    ] {
        let vm = update_ok(&h, &uuid, &json!({ prop: value }));
        assert_eq!(vm[prop], value, "{prop} after setting it: {vm}");
        let vm = update_ok(&h, &uuid, &json!({ prop: null }));
        match prop {
            // zonevisor: null resets a defaulted property to its default
            // (SmartOS removes billing_id and owner_uuid altogether).
            "billing_id" | "owner_uuid" => assert_eq!(vm[prop], ZERO_UUID, "{prop} after null: {vm}"),
            _ => assert!(vm.get(prop).is_none(), "{prop} after null is still {}", vm[prop]),
        }
    }
    // The same through property=value arguments.
    h.vmadm(&["update", &uuid, "alias=from-args", "package_version=2"]).ok();
    let vm = h.get(&uuid);
    assert_eq!((vm["alias"].as_str(), vm["package_version"].as_str()), (Some("from-args"), Some("2")), "{vm}");

    // Aliases of every shape come back as they went in.
    let long = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZAlphaBravoCharlieDeltaechoFoxtrot\
                GolfHotelIndiaJulietKiloLimaMikeNovemberOscarPapaQuebecRomeoSierraTangoUniformVictorZulu987654";
    for alias in ["", "x", "hello", "hello world", "öÖ-çÇ-şŞ-ıI-iİ-üÜ-ğĞ", long] {
        let vm = update_ok(&h, &uuid, &json!({ "alias": alias }));
        assert_eq!(vm["alias"].as_str().unwrap_or(""), alias, "alias {alias:?}: {vm}");
    }
}

// test-update.js "attempt to modify unmodifiable properties"; vmadm(8):
// what `vmadm get` prints is a payload `vmadm update` takes unchanged.
#[test]
fn update_unmodifiable_properties_are_ignored_and_get_output_feeds_update() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "unmodifiable", "tags": {"role": "web"}})));
    let before = h.get(&uuid);
    for (prop, value) in [
        ("brand", "bogus-brand"),
        ("hvm", "bogus-hvm"),
        ("last_modified", "bogus-last-modified"),
        ("server_uuid", ZERO_UUID),
        ("uuid", ZERO_UUID),
        ("zonename", "bogus-zonename"),
    ] {
        let r = update(&h, &uuid, &json!({ prop: value }));
        assert_eq!(r.code, 0, "update {prop}: {} {}", r.stdout, r.stderr);
        // zonevisor warns on stderr naming what it dropped (SmartOS logs it).
        assert!(r.stderr.contains(prop), "update {prop} should warn about it: {}", r.stderr);
        if prop != "last_modified" {
            assert_eq!(h.get(&uuid)[prop], before[prop], "{prop} changed");
        }
    }

    let mut before = h.get(&uuid);
    let r = h.cli("vmadm", &["update", &uuid], Some(&before.to_string()));
    assert_eq!(r.code, 0, "vmadm get's output as an update: {} {}", r.stdout, r.stderr);
    assert_eq!(r.stderr, format!("Successfully updated VM {uuid}\n"), "nothing dropped, nothing to warn of");
    let mut after = h.get(&uuid);
    for vm in [&mut before, &mut after] {
        vm.as_object_mut().unwrap().remove("last_modified");
    }
    assert_eq!(after, before, "an update with vmadm get's output changed the VM");
    // validate still reports what update drops.
    let r = validate(&h, "update", Some("lx"), &h.get(&uuid));
    for prop in ["uuid", "brand", "zonename", "server_uuid", "last_modified", "state"] {
        assert_refused(&r, "bad_properties", prop, "validate update with vmadm get's output");
    }
}

/// `(max_physical_memory, max_locked_memory, max_swap, tmpfs)` of a VM.
fn memory(vm: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| vm[k].as_i64().unwrap_or_else(|| panic!("{k} is not an integer: {vm}"));
    (n("max_physical_memory"), n("max_locked_memory"), n("max_swap"), n("tmpfs"))
}

// test-update.js "update ram 512", "update ram 128", "update ram 256",
// "update ram 64", "update ram 1024", "update max_swap (up)", "update
// max_swap (down)", "update max_physical_memory (up)", "update
// max_physical_memory (down)", "update max_locked_memory"; VM.js's tmpfs
// clamp; zonevisor's floor for max_physical_memory.
#[test]
fn update_memory_derivation_and_clamping() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "memory"})));
    assert_eq!(memory(&h.get(&uuid)), (256, 256, 256, 256));
    // (payload, max_physical_memory, max_locked_memory, max_swap, tmpfs):
    // ram sets max_physical_memory and max_locked_memory; max_swap follows
    // but never below 256; tmpfs keeps its ratio to max_physical_memory.
    let steps = [
        (json!({"ram": 512}), (512, 512, 512, 512)),
        (json!({"ram": 128}), (128, 128, 256, 128)),
        (json!({"ram": "256"}), (256, 256, 256, 256)),
        (json!({"ram": "64"}), (64, 64, 256, 64)),
        (json!({"ram": 1024}), (1024, 1024, 1024, 1024)),
        // max_swap alone changes only max_swap...
        (json!({"max_swap": 1536}), (1024, 1024, 1536, 1024)),
        // ...and is raised to max_physical_memory.
        (json!({"max_swap": 960}), (1024, 1024, 1024, 1024)),
        // max_physical_memory carries the others up and down.
        (json!({"max_physical_memory": 2048}), (2048, 2048, 2048, 2048)),
        (json!({"max_physical_memory": 512}), (512, 512, 512, 512)),
        // max_locked_memory is lowered to max_physical_memory.
        (json!({"max_locked_memory": 768}), (512, 512, 512, 512)),
        // So is tmpfs; 0 is kept (no tmpfs), not removed.
        (json!({"tmpfs": 1024}), (512, 512, 512, 512)),
        (json!({"tmpfs": 0}), (512, 512, 512, 0)),
        (json!({"tmpfs": 256}), (512, 512, 512, 256)),
    ];
    for (payload, want) in steps {
        let vm = update_ok(&h, &uuid, &payload);
        assert_eq!(memory(&vm), want, "after {payload}: (max_physical_memory, max_locked_memory, max_swap, tmpfs)");
    }
    // zonevisor refuses max_physical_memory below 32 MiB (SmartOS has no floor).
    let r = update(&h, &uuid, &json!({"max_physical_memory": 16}));
    assert_eq!(r.code, 1, "max_physical_memory=16: {} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("max_physical_memory"), "{}", r.stderr);
    assert_eq!(memory(&h.get(&uuid)), (512, 512, 512, 256), "a refused update changed nothing");
}

// test-update.js "update quota", "remove quota", "set low quota", "fill up
// zoneroot", "bump max_physical_memory", "raise quota to 2", "get vmobj for
// full VM after modifications"; test-quota.js's lx cases and its joyent
// cases restated for lx (quota 0, quota 1024, each doubled and restored).
#[test]
fn update_quota() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "quota"})));
    assert_eq!(update_ok(&h, &uuid, &json!({"quota": 13}))["quota"], 13);
    assert_eq!(update_ok(&h, &uuid, &json!({"quota": 0}))["quota"], 0, "quota 0 is no quota, shown as 0");

    // flexible_disk_size is bhyve's: an lx zone drops it and keeps its quota.
    for (quota, extra) in
        [(10, json!({"flexible_disk_size": 12288})), (0, json!({})), (1024, json!({})), (10, json!({}))]
    {
        let mut payload = lx(&img, json!({"quota": quota, "autoboot": false}));
        for (k, v) in extra.as_object().unwrap() {
            payload[k] = v.clone();
        }
        let id = create(&h, &payload);
        let vm = h.get(&id);
        assert_eq!(vm["quota"], quota, "created with quota {quota}: {vm}");
        assert!(vm.get("flexible_disk_size").is_none(), "{vm}");
        assert_eq!(update_ok(&h, &id, &json!({"quota": quota * 2}))["quota"], quota * 2);
        assert_eq!(update_ok(&h, &id, &json!({"quota": quota}))["quota"], quota);
        h.vmadm(&["delete", &id]).ok();
    }
    // Not given: 10 GiB.
    let id = create(&h, &lx(&img, json!({"autoboot": false})));
    assert_eq!(h.get(&id)["quota"], 10);

    // A zone whose root is full still takes updates that do not write
    // into it (OS-3191).
    update_ok(&h, &uuid, &json!({"quota": 1}));
    let vm = h.get(&uuid);
    let zeros = zone_root(&vm).join("zeros");
    let mut f = std::fs::File::create(&zeros).unwrap();
    let chunk = vec![0u8; 37 << 20];
    let mut written = 0u64;
    let full = loop {
        match f.write_all(&chunk).and_then(|_| f.sync_data()) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 3 << 30, "wrote {written} bytes into a zone with a 1 GiB quota");
    };
    drop(f);
    assert!(written <= 1100 << 20, "wrote {written} bytes past a 1 GiB quota before {full}");
    let mpm = vm["max_physical_memory"].as_i64().unwrap() + 1024;
    update_ok(&h, &uuid, &json!({"max_physical_memory": mpm}));
    let vm = update_ok(&h, &uuid, &json!({"quota": 2}));
    assert_eq!((vm["max_physical_memory"].as_i64(), vm["quota"].as_i64()), (Some(mpm), Some(2)), "{vm}");
    std::fs::remove_file(&zeros).unwrap();
}

// test-update.js "update resolvers when empty", "update resolvers to empty
// when filled", "update resolvers to empty when empty", "update shm
// rctls", "remove cpu_cap", "attempt to remove and set zonecfg
// properties"; test-snapshots.js's tags given as numbers.
#[test]
fn update_resolvers_rctls_cpu_cap_and_zonecfg_properties() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "rctls", "cpu_cap": 1600})));
    for resolvers in [json!(["4.2.2.1", "4.2.2.2"]), json!([]), json!([])] {
        let vm = update_ok(&h, &uuid, &json!({ "resolvers": resolvers }));
        assert_eq!(vm["resolvers"], resolvers, "{vm}");
    }

    let rctls = json!({"max_msg_ids": 3333, "max_sem_ids": 2332, "max_shm_ids": 2345, "max_shm_memory": 1234});
    let before = h.get(&uuid);
    for (k, v) in rctls.as_object().unwrap() {
        assert_ne!(&before[k], v, "{k} is already {v}");
    }
    let vm = update_ok(&h, &uuid, &rctls);
    for (k, v) in rctls.as_object().unwrap() {
        assert_eq!(&vm[k], v, "{k}: {vm}");
    }

    assert_eq!(h.get(&uuid)["cpu_cap"], 1600);
    let vm = update_ok(&h, &uuid, &json!({"cpu_cap": 0}));
    assert!(vm.get("cpu_cap").is_none(), "cpu_cap 0 removes the cap: {vm}");

    // Each property set, then cleared (null: back to its default).
    let mpm = vm["max_physical_memory"].clone();
    for (prop, value, default) in [
        ("cpu_shares", json!(5), json!(100)),
        ("max_lwps", json!(5000), json!(2000)),
        ("max_msg_ids", json!(5000), json!(4096)),
        ("max_shm_ids", json!(5000), json!(4096)),
        ("max_shm_memory", json!(5000), mpm),
        ("zfs_io_priority", json!(50), json!(100)),
    ] {
        for (payload, want) in [(Value::Null, &default), (value.clone(), &value), (Value::Null, &default)] {
            let vm = update_ok(&h, &uuid, &json!({ prop: payload }));
            assert_eq!(&vm[prop], want, "{prop} after {payload}: {vm}");
        }
    }
    for value in ["", "default", "default,dtrace_user", "", ""] {
        let vm = update_ok(&h, &uuid, &json!({ "limit_priv": value }));
        if !value.is_empty() {
            assert_eq!(vm["limit_priv"], value, "{vm}");
        }
    }

    for tags in [json!({"foo": 1}), json!({"foo": 2})] {
        assert_eq!(update_ok(&h, &uuid, &json!({ "set_tags": tags }))["tags"], tags);
    }
    assert_eq!(update_ok(&h, &uuid, &json!({"remove_tags": ["foo"]}))["tags"], json!({}));
}

// test-update.js "add fs /var/tmp/global", "set fs /var/tmp/global as
// readonly", "remove fs /var/tmp/global".
#[test]
fn update_filesystems_add_update_remove() {
    let Some((h, img)) = host() else { return };
    let uuid = create(&h, &lx(&img, json!({"alias": "filesystems"})));
    let source = h.dir.path().join("global");
    std::fs::create_dir(&source).unwrap();
    let fs = json!({"type": "lofs", "source": source, "target": "/var/tmp/global", "options": ["nodevice"]});
    let vm = update_ok(&h, &uuid, &json!({"add_filesystems": [fs]}));
    let got = vm["filesystems"].as_array().unwrap_or_else(|| panic!("no filesystems: {vm}"));
    assert_eq!(got.len(), 1, "{vm}");
    for (k, v) in fs.as_object().unwrap() {
        assert_eq!(&got[0][k], v, "filesystems.0.{k}");
    }
    let vm = update_ok(
        &h,
        &uuid,
        &json!({"update_filesystems": [{"options": ["nodevice", "ro"], "target": "/var/tmp/global"}]}),
    );
    assert_eq!(vm["filesystems"][0]["options"], json!(["nodevice", "ro"]), "{vm}");
    assert_eq!(vm["filesystems"][0]["source"], fs["source"], "{vm}");
    let vm = update_ok(&h, &uuid, &json!({"remove_filesystems": ["/var/tmp/global"]}));
    assert!(vm.get("filesystems").is_none(), "no filesystems left: {vm}");
}

// test-zfs-limits.js and test-zfs-limits-null.js. (zonevisor has no
// delegated dataset yet: the limits are set without delegate_dataset.)
#[test]
fn update_zfs_limits_cleared_with_empty_string_or_null() {
    let Some((h, img)) = host() else { return };
    let limits = json!({"zfs_filesystem_limit": 10, "zfs_snapshot_limit": 11});
    let uuid = create(&h, &lx(&img, json!({"zfs_filesystem_limit": 10, "zfs_snapshot_limit": 11})));
    let vm = h.get(&uuid);
    for (k, v) in limits.as_object().unwrap() {
        assert_eq!(&vm[k], v, "{k}: {vm}");
    }
    for clear in [
        json!({"zfs_filesystem_limit": "", "zfs_snapshot_limit": null}),
        json!({"zfs_filesystem_limit": null, "zfs_snapshot_limit": null}),
    ] {
        let vm = update_ok(&h, &uuid, &clear);
        for k in ["zfs_filesystem_limit", "zfs_snapshot_limit"] {
            assert!(vm.get(k).is_none(), "{k} after {clear}: {vm}");
        }
        let vm = update_ok(&h, &uuid, &limits);
        for (k, v) in limits.as_object().unwrap() {
            assert_eq!(&vm[k], v, "{k} set again: {vm}");
        }
    }
}

/// The line of `/tmp` in the zone's mount table, if it has one.
fn tmp_mount(h: &TestHost, uuid: &str) -> Option<String> {
    let r = h.cli("zlogin", &[uuid, "cat /proc/mounts"], None);
    assert_eq!(r.code, 0, "zlogin: {} {}", r.stdout, r.stderr);
    r.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("/tmp")).map(str::to_string)
}

// test-tmpfs.js "test with default tmpfs", "test with tmpfs=0": /tmp
// follows tmpfs at boot; tmpfs=0 is no tmpfs on /tmp.
#[test]
fn update_tmpfs_takes_effect_at_the_next_boot() {
    let Some((h, img)) = host() else { return };
    let memory = json!({"max_physical_memory": 512, "max_locked_memory": 512, "max_swap": 1024});
    let uuid = create(&h, &lx(&img, memory.clone()));
    assert_eq!(h.get(&uuid)["tmpfs"], 512, "tmpfs defaults to max_physical_memory");
    let line = tmp_mount(&h, &uuid).expect("/tmp is mounted");
    assert!(line.contains("tmpfs") && line.contains("size=524288k"), "{line}");
    assert_eq!(update_ok(&h, &uuid, &json!({"tmpfs": 0}))["tmpfs"], 0);
    let line = tmp_mount(&h, &uuid).expect("/tmp stays mounted until the zone reboots");
    assert!(line.contains("size=524288k"), "{line}");
    h.vmadm(&["reboot", &uuid]).ok();
    h.wait_state(&uuid, "running", Duration::from_secs(30));
    assert_eq!(tmp_mount(&h, &uuid), None, "tmpfs=0: no tmpfs on /tmp after the reboot");

    let mut payload = memory.clone();
    payload["tmpfs"] = json!(0);
    let uuid = create(&h, &lx(&img, payload));
    assert_eq!(h.get(&uuid)["tmpfs"], 0);
    assert_eq!(tmp_mount(&h, &uuid), None, "created with tmpfs=0: no tmpfs on /tmp");
    assert_eq!(update_ok(&h, &uuid, &json!({"tmpfs": 256}))["tmpfs"], 256);
    h.vmadm(&["reboot", &uuid]).ok();
    h.wait_state(&uuid, "running", Duration::from_secs(30));
    let line = tmp_mount(&h, &uuid).expect("/tmp is mounted after the reboot");
    assert!(line.contains("tmpfs") && line.contains("size=262144k"), "{line}");
}

/// Makes the nic tags the SmartOS nic tests use (`admin`, `external`) as
/// host-local switches.
fn nic_tags(h: &TestHost) {
    for tag in ["admin", "external"] {
        h.cli("nictagadm", &["add", "-l", tag], None).ok();
    }
}

/// The nics of a VM.
#[track_caller]
fn nics(vm: &Value) -> Vec<Value> {
    vm["nics"].as_array().unwrap_or_else(|| panic!("no nics array: {vm}")).clone()
}

/// Asserts every member of `want` is in `got` with the same value.
#[track_caller]
fn assert_has(got: &Value, want: &Value, what: &str) {
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "{what}: {k} in {got}");
    }
}

// test-update.js's nic cases: "add net0", "add IPv6 to net0", "add net1 --
// bad IP", "add KVM-only property to zone", "remove net0", "add net0 and
// net1", "remove net0 and net1", "add 3 nics, 2 non-private", "remove net1
// -- 1st time", "remove net0 and net2 -- 1st time", "add 3 nics, 1
// non-private", "remove net1 -- 2nd time", "remove net0 and net2 -- 2nd
// time", "add empty NICs", "remove empty, primary NIC", "add IPs to empty
// NIC", "remove IPs to make empty NIC", "clean up from empty tests", "add
// NIC with minimal properties".
#[test]
fn update_nics_add_update_remove() {
    let Some((h, img)) = host() else { return };
    nic_tags(&h);
    let uuid = create(&h, &lx(&img, json!({"alias": "nics", "cpu_cap": 1600})));
    let net0 = json!({
        "ip": "10.254.254.254", "ips": ["10.254.254.254/24"], "netmask": "255.255.255.0",
        "nic_tag": "external", "interface": "net0", "vlan_id": 0, "gateway": "10.254.254.1",
        "gateways": ["10.254.254.1"], "mac": "02:02:03:04:05:06",
    });
    let vm = update_ok(&h, &uuid, &json!({"add_nics": [net0]}));
    assert_eq!(nics(&vm).len(), 1, "{vm}");
    assert_has(&nics(&vm)[0], &net0, "add net0");
    let ips = json!(["10.254.254.254/24", "fd00::1/64", "addrconf"]);
    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"ips": ips, "mac": "02:02:03:04:05:06"}]}));
    assert_eq!(nics(&vm)[0]["ips"], ips);
    let r = update(
        &h,
        &uuid,
        &json!({"add_nics": [{
            "ip": "10.99.99.12,10.99.99.33,10.99.99.34", "netmask": "255.255.255.0", "nic_tag": "external",
            "interface": "net1", "vlan_id": 0, "gateway": "10.254.254.1",
        }]}),
    );
    assert_eq!(r.code, 1, "a nic with a list for ip is refused: {}", r.stderr);
    let vm =
        update_ok(&h, &uuid, &json!({"update_nics": [{"mac": "02:02:03:04:05:06", "allow_unfiltered_promisc": true}]}));
    assert_eq!(nics(&vm).len(), 1);
    assert!(nics(&vm)[0].get("allow_unfiltered_promisc").is_none(), "kvm-only property kept: {vm}");
    let vm = update_ok(&h, &uuid, &json!({"remove_nics": ["02:02:03:04:05:06"]}));
    assert!(nics(&vm).is_empty(), "{vm}");

    let net1 = json!({
        "ip": "10.254.254.253", "ips": ["10.254.254.253/24"], "netmask": "255.255.255.0",
        "nic_tag": "external", "interface": "net1", "vlan_id": 253, "gateway": "10.254.254.1",
        "gateways": ["10.254.254.1"], "mac": "02:03:04:05:06:07",
    });
    let vm = update_ok(&h, &uuid, &json!({"add_nics": [net0, net1]}));
    assert_eq!(nics(&vm).len(), 2);
    assert_has(&nics(&vm)[0], &net0, "net0");
    assert_has(&nics(&vm)[1], &net1, "net1");
    let vm = update_ok(&h, &uuid, &json!({"remove_nics": ["02:02:03:04:05:06", "02:03:04:05:06:07"]}));
    assert!(nics(&vm).is_empty());

    // Three nics, the second primary; removing the primary makes another
    // primary (a public address first, as SmartOS picks).
    let three = |third_ip: &str, third_gw: &str, third_vlan: i64| {
        json!({"add_nics": [
            {"ip": "10.254.254.254", "netmask": "255.255.255.0", "nic_tag": "external", "interface": "net0",
             "vlan_id": 0, "gateway": "10.254.254.1", "mac": "02:02:03:04:05:06"},
            {"ip": "169.254.169.254", "netmask": "255.255.255.0", "nic_tag": "external", "interface": "net1",
             "vlan_id": 254, "gateway": "169.254.169.1", "mac": "02:03:04:05:06:07", "primary": true},
            {"ip": third_ip, "netmask": "255.255.255.0", "nic_tag": "external", "interface": "net2",
             "vlan_id": third_vlan, "gateway": third_gw, "mac": "02:03:04:05:06:08"},
        ]})
    };
    for (third, primary_after) in
        [(three("169.254.169.253", "169.254.169.1", 253), 1), (three("10.254.254.253", "10.254.254.1", 0), 0)]
    {
        let vm = update_ok(&h, &uuid, &third);
        assert_eq!(nics(&vm).len(), 3);
        assert_eq!(nics(&vm)[1]["primary"], true, "{vm}");
        let vm = update_ok(&h, &uuid, &json!({"remove_nics": ["02:03:04:05:06:07"]}));
        assert_eq!(nics(&vm).len(), 2);
        assert_eq!(nics(&vm)[primary_after]["primary"], true, "{vm}");
        let vm = update_ok(&h, &uuid, &json!({"remove_nics": ["02:02:03:04:05:06", "02:03:04:05:06:08"]}));
        assert!(nics(&vm).is_empty());
    }

    // Nics without addresses.
    let vm = update_ok(
        &h,
        &uuid,
        &json!({"add_nics": [
            {"mac": "02:02:03:04:05:06", "nic_tag": "admin", "primary": true},
            {"mac": "02:02:03:04:05:07", "nic_tag": "admin"},
        ]}),
    );
    assert_eq!(nics(&vm).len(), 2);
    for nic in nics(&vm) {
        assert!(nic.get("ips").is_none() && nic.get("ip").is_none(), "{nic}");
    }
    assert_eq!(nics(&update_ok(&h, &uuid, &json!({"remove_nics": ["02:02:03:04:05:06"]}))).len(), 1);
    let ips = json!(["10.254.254.254/24", "addrconf"]);
    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"mac": "02:02:03:04:05:07", "ips": ips}]}));
    assert_eq!(nics(&vm)[0]["ips"], ips);
    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"mac": "02:02:03:04:05:07", "ips": []}]}));
    assert!(nics(&vm)[0].get("ips").is_none() && nics(&vm)[0].get("ip").is_none(), "{vm}");
    assert!(nics(&update_ok(&h, &uuid, &json!({"remove_nics": ["02:02:03:04:05:07"]}))).is_empty());

    let vm =
        update_ok(&h, &uuid, &json!({"add_nics": [{"mac": "02:02:03:04:05:06", "ip": "dhcp", "nic_tag": "admin"}]}));
    assert_eq!(nics(&vm).len(), 1);
    for k in keys(&nics(&vm)[0]) {
        assert!(["interface", "mac", "nic_tag", "ip", "ips"].contains(&k.as_str()), "unexpected {k}: {vm}");
    }
}

/// The nics of a VM that carry `primary`, and whether each is `true`.
fn primaries(vm: &Value) -> Vec<(String, bool)> {
    nics(vm)
        .iter()
        .filter(|n| n.get("primary").is_some())
        .map(|n| (n["mac"].as_str().unwrap_or("").to_string(), n["primary"] == true))
        .collect()
}

// test-primary-flag.js: "create VM with 2 nics (no primary)" and its
// updates, "create VM with 2 nics (second primary)", "create VM with 3
// nics (all primary)", "create VM with 3 nics (one primary, 2 false)",
// "create VM with 3 nics (all false)".
#[test]
fn update_nics_primary_flag() {
    let Some((h, img)) = host() else { return };
    nic_tags(&h);
    let dhcp = |primary: Option<Value>| {
        let mut n = json!({"nic_tag": "admin", "ip": "dhcp"});
        if let Some(p) = primary {
            n["primary"] = p;
        }
        n
    };
    let create_nics = |nics: Vec<Value>| h.create(&lx(&img, json!({"autoboot": false, "nics": nics})));

    let uuid = created_uuid(&create_nics(vec![dhcp(None), dhcp(None)]));
    let vm = h.get(&uuid);
    let p = primaries(&vm);
    assert_eq!(p.len(), 1, "exactly one primary: {vm}");
    assert!(p[0].1, "primary is boolean true: {vm}");
    let other = nics(&vm).iter().find(|n| n.get("primary").is_none()).unwrap()["mac"].as_str().unwrap().to_string();
    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"mac": other, "primary": true}]}));
    assert_eq!(primaries(&vm), [(other.clone(), true)], "only the updated nic is primary: {vm}");
    for bad in [json!(false), json!("blah")] {
        let r = update(&h, &uuid, &json!({"update_nics": [{"mac": other, "primary": bad}]}));
        assert_eq!(r.code, 1, "primary={bad} is refused: {} {}", r.stdout, r.stderr);
    }
    let old: Vec<String> = nics(&h.get(&uuid)).iter().map(|n| n["mac"].as_str().unwrap().to_string()).collect();
    let vm = update_ok(&h, &uuid, &json!({"add_nics": [{"primary": true, "nic_tag": "admin", "ip": "dhcp"}]}));
    for nic in nics(&vm) {
        let is_old = old.contains(&nic["mac"].as_str().unwrap().to_string());
        assert_eq!(nic.get("primary").is_some(), !is_old, "only the added nic is primary: {vm}");
    }

    let uuid = created_uuid(&create_nics(vec![dhcp(None), dhcp(Some(json!(1)))]));
    assert_eq!(primaries(&h.get(&uuid)).len(), 1);
    let r = create_nics(vec![dhcp(Some(json!(true))), dhcp(Some(json!(true))), dhcp(Some(json!(1)))]);
    assert_eq!(r.code, 1, "three primaries are refused: {} {}", r.stdout, r.stderr);
    for nics in [
        vec![dhcp(Some(json!(true))), dhcp(Some(json!(false))), dhcp(Some(json!(false)))],
        vec![dhcp(Some(json!(false))), dhcp(Some(json!(false))), dhcp(Some(json!(false)))],
    ] {
        let uuid = created_uuid(&create_nics(nics));
        let vm = h.get(&uuid);
        let p = primaries(&vm);
        assert_eq!(p.len(), 1, "exactly one primary: {vm}");
        assert!(p[0].1, "{vm}");
    }
}

// test-required-nic-props.js: "test create without netmask", "test create
// without nic_tag", "test create with netmask then add nic with no
// netmask", "test create machine then add nic with no nic_tag", "test
// create with netmask add update to empty netmask", "test create good OS
// w/ dhcp", "test create good OS w/ network_uuid", "test create w/ invalid
// network_uuid"; test-create.js "test create with invalid mac address",
// "test create with invalid IP".
#[test]
fn update_nics_required_properties() {
    let Some((h, img)) = host() else { return };
    nic_tags(&h);
    let with_nics = |nics: Value| lx(&img, json!({"autoboot": false, "nics": nics}));
    for (nics, what) in [
        (json!([{"nic_tag": "admin", "ip": "10.99.99.222", "gateway": "10.99.99.1"}]), "no netmask"),
        (
            json!([{"nic_tag": "admin", "ip": "10.99.99.12", "mac": "aa:bb:cc:dd:ee:ff:12",
                    "gateway": "10.99.99.1", "netmask": "255.255.255.0"}]),
            "a bad mac",
        ),
        (
            json!([{"nic_tag": "admin", "ip": "10.99.99.12,10.99.99.33,10.99.99.34",
                    "gateway": "10.99.99.1", "netmask": "255.255.255.0"}]),
            "a list for ip",
        ),
        (
            json!([{"mac": "01:02:01:01:01:03", "nic_tag": "admin", "network_uuid": "asdf",
                    "ip": "10.99.99.227", "netmask": "255.255.255.0"}]),
            "a bad network_uuid",
        ),
    ] {
        let r = h.create(&with_nics(nics));
        assert_eq!(r.code, 1, "create with {what}: {} {}", r.stdout, r.stderr);
    }

    let good = json!([{"mac": "02:02:03:04:05:06", "nic_tag": "admin", "ip": "10.99.99.222",
                       "netmask": "255.255.255.0", "gateway": "10.99.99.1"}]);
    let uuid = create(&h, &with_nics(good));
    for (payload, what) in [
        (json!({"add_nics": [{"ip": "10.99.99.223", "nic_tag": "admin", "gateway": "10.99.99.1"}]}), "no netmask"),
        (json!({"update_nics": [{"mac": "02:02:03:04:05:06", "netmask": ""}]}), "an empty netmask"),
    ] {
        let r = update(&h, &uuid, &payload);
        assert_eq!(r.code, 1, "update with {what}: {} {}", r.stdout, r.stderr);
        let vm = h.get(&uuid);
        assert_eq!(nics(&vm).len(), 1, "{vm}");
        assert_eq!(nics(&vm)[0]["netmask"], "255.255.255.0", "{vm}");
    }

    // A deliberate difference (README, "SmartOS differences"): SmartOS
    // refuses a nic without nic_tag; here it joins the default network.
    let uuid =
        create(&h, &with_nics(json!([{"ip": "10.99.99.222", "netmask": "255.255.255.0", "gateway": "10.99.99.1"}])));
    assert_eq!(nics(&h.get(&uuid))[0]["nic_tag"], "default");
    let vm = update_ok(&h, &uuid, &json!({"add_nics": [{"ip": "10.99.98.223", "netmask": "255.255.255.0"}]}));
    assert_eq!(nics(&vm)[1]["nic_tag"], "default", "{vm}");

    let uuid = create(&h, &with_nics(json!([{"nic_tag": "admin", "ip": "dhcp"}])));
    assert_eq!(nics(&h.get(&uuid)).len(), 1, "dhcp needs no netmask");

    let (n1, n2, n3) = (
        "6e868da4-ce12-11e2-bf66-27709b9e398b",
        "8231fca4-ce34-11e2-a865-bbf227a0fb8d",
        "1ce9deee-ce38-11e2-8c7c-7f348665d851",
    );
    let uuid = create(
        &h,
        // SmartOS's test uses the multicast 01:02:...; a NIC's MAC is unicast here.
        &with_nics(json!([{"mac": "02:02:01:01:01:02", "nic_tag": "admin", "network_uuid": n1,
                           "ip": "10.99.99.226", "netmask": "255.255.255.0"}])),
    );
    assert_eq!(nics(&h.get(&uuid))[0]["network_uuid"], n1);
    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"mac": "02:02:01:01:01:02", "network_uuid": n2}]}));
    assert_eq!(nics(&vm)[0]["network_uuid"], n2);
    let vm = update_ok(
        &h,
        &uuid,
        &json!({"add_nics": [{"ip": "10.99.99.228", "nic_tag": "admin", "netmask": "255.255.255.0", "network_uuid": n3}]}),
    );
    assert_eq!(nics(&vm).len(), 2);
    assert_eq!(nics(&vm)[1]["network_uuid"], n3);
    let r = update(&h, &uuid, &json!({"update_nics": [{"mac": "02:02:01:01:01:02", "network_uuid": "asdf"}]}));
    assert_eq!(r.code, 1, "a bad network_uuid is refused: {}", r.stderr);
}

// test-spoof-opts.js's stored properties and refusals (its link
// properties are illumos's dladm and are checked by the networking suite).
#[test]
fn update_nics_antispoof_options() {
    let Some((h, img)) = host() else { return };
    nic_tags(&h);
    let n = |tag: &str, ip: &str| json!({"nic_tag": tag, "ip": ip, "netmask": "255.255.255.0"});
    let mut net3 = n("admin", "10.6.0.200");
    net3["allow_dhcp_spoofing"] = json!(true);
    net3["allow_mac_spoofing"] = json!(true);
    net3["allowed_ips"] = json!(["10.6.0.201", "10.6.0.202", "10.6.0.0/25"]);
    let nics_in = json!([
        n("admin", "10.3.0.200"), n("external", "10.4.0.200"), n("external", "10.5.0.200"), net3,
        {"nic_tag": "admin", "ips": ["addrconf"]},
    ]);
    let uuid = create(&h, &lx(&img, json!({"alias": "spoof", "nics": nics_in})));
    let spoof =
        ["allowed_ips", "allow_dhcp_spoofing", "allow_ip_spoofing", "allow_mac_spoofing", "allow_restricted_traffic"];
    let set = |nic: &Value| -> Vec<&str> { spoof.iter().copied().filter(|k| nic.get(*k).is_some()).collect() };
    let vm = h.get(&uuid);
    let got = nics(&vm);
    assert_eq!(got[0]["primary"], true);
    for i in [0, 1, 2, 4] {
        assert!(set(&got[i]).is_empty(), "net{i} has antispoof properties: {}", got[i]);
    }
    assert_eq!(set(&got[3]), ["allowed_ips", "allow_dhcp_spoofing", "allow_mac_spoofing"]);
    assert_eq!(got[3]["allowed_ips"], json!(["10.6.0.201", "10.6.0.202", "10.6.0.0/25"]));

    let mac = |i: usize| got[i]["mac"].as_str().unwrap().to_string();
    let too_many: Vec<String> = (201..216).map(|i| format!("10.5.0.{i}")).collect();
    let r = update(&h, &uuid, &json!({"update_nics": [{"mac": mac(2), "allowed_ips": too_many}]}));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Maximum of 13 allowed_ips per nic"), "{}", r.stderr);
    let cids: Vec<String> = (1..=33).map(|i| format!("0x{i:02x}")).collect();
    let r = update(&h, &uuid, &json!({"update_nics": [{"mac": mac(2), "allowed_dhcp_cids": cids}]}));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("nics.*.allowed_dhcp_cids contains 33 Client Identifiers, but is limited to 20"),
        "{}",
        r.stderr
    );
    for bad in ["1234", "0xqz"] {
        let r = update(&h, &uuid, &json!({"update_nics": [{"mac": mac(2), "allowed_dhcp_cids": [bad]}]}));
        assert_eq!(r.code, 1);
        assert!(r.stderr.contains("Invalid value(s) for: nics.*.allowed_dhcp_cids"), "{}", r.stderr);
    }

    let vm = update_ok(
        &h,
        &uuid,
        &json!({"update_nics": [
            {"mac": mac(0), "allow_ip_spoofing": true, "allow_mac_spoofing": true},
            {"mac": mac(1), "allow_ip_spoofing": true, "allow_mac_spoofing": true,
             "allow_dhcp_spoofing": true, "allow_restricted_traffic": true},
            {"mac": mac(2), "allowed_ips": ["10.5.0.201", "10.5.0.202"]},
            {"mac": mac(4), "allowed_dhcp_cids": ["0x4321"]},
        ]}),
    );
    let got = nics(&vm);
    assert_eq!(set(&got[0]), ["allow_ip_spoofing", "allow_mac_spoofing"]);
    assert_eq!(got[0]["primary"], true);
    assert_eq!(
        set(&got[1]),
        ["allow_dhcp_spoofing", "allow_ip_spoofing", "allow_mac_spoofing", "allow_restricted_traffic"]
    );
    assert_eq!(got[2]["allowed_ips"], json!(["10.5.0.201", "10.5.0.202"]));
    assert_eq!(set(&got[3]), ["allowed_ips", "allow_dhcp_spoofing", "allow_mac_spoofing"]);
    assert_eq!(got[4]["allowed_dhcp_cids"], json!(["0x4321"]));

    let vm = update_ok(&h, &uuid, &json!({"update_nics": [{"mac": mac(1), "allow_dhcp_spoofing": false}]}));
    let got = nics(&vm);
    assert_eq!(got[1]["allow_dhcp_spoofing"], false, "{vm}");
    assert_eq!(got[1]["allow_ip_spoofing"], true, "{vm}");
    assert_eq!(set(&got[0]), ["allow_ip_spoofing", "allow_mac_spoofing"], "net0 unchanged");
}

// test-update-kvm.js "update ram 512", "update ram 128", "update ram
// 1024", "update KVM VM max_swap", "update KVM VM max_swap to lower value
// than RAM", "update max_physical_memory to RAM + 256", "update
// max_physical_memory to RAM + 1024", "update max_swap to RAM - 64",
// "update max_locked_memory to high value", "set then unset simple
// properties on KVM VM", "add disk1 to KVM VM".
#[test]
fn update_kvm_memory_overhead_and_disks() {
    let Some((h, _img)) = host() else { return };
    let uuid =
        create(&h, &json!({"brand": "kvm", "ram": 256, "autoboot": false, "disks": [{"size": 1024, "model": "ide"}]}));
    let n = |vm: &Value, k: &str| vm[k].as_i64().unwrap_or_else(|| panic!("{k}: {vm}"));
    // kvm adds 1024 MiB for qemu to every memory cap.
    for ram in [512, 128, 1024] {
        let vm = update_ok(&h, &uuid, &json!({ "ram": ram }));
        assert_eq!(n(&vm, "ram"), ram);
        for k in ["max_physical_memory", "max_locked_memory", "max_swap"] {
            assert_eq!(n(&vm, k), ram + 1024, "{k} after ram={ram}: {vm}");
        }
    }
    let vm = update_ok(&h, &uuid, &json!({"max_swap": 2560}));
    assert_eq!((n(&vm, "max_swap"), n(&vm, "max_physical_memory"), n(&vm, "max_locked_memory")), (2560, 2048, 2048));
    let vm = update_ok(&h, &uuid, &json!({"max_swap": 2048 - 64}));
    assert_eq!(n(&vm, "max_swap"), 2048, "max_swap is raised to max_physical_memory");
    for mpm in [1024 + 256, 1024 + 1024] {
        let vm = update_ok(&h, &uuid, &json!({ "max_physical_memory": mpm }));
        for k in ["max_physical_memory", "max_locked_memory", "max_swap"] {
            assert_eq!(n(&vm, k), mpm, "{k} after max_physical_memory={mpm}: {vm}");
        }
    }
    let vm = update_ok(&h, &uuid, &json!({"max_swap": 1024 - 64}));
    assert_eq!(n(&vm, "max_swap"), 2048);
    let vm = update_ok(&h, &uuid, &json!({"max_locked_memory": 2048 + 256}));
    assert_eq!(n(&vm, "max_locked_memory"), 2048, "clamped to max_physical_memory");

    for (prop, value, want) in [
        ("alias", json!("useless VM"), json!("useless VM")),
        ("hostname", json!("hamburgerhelper"), json!("hamburgerhelper")),
        ("virtio_txtimer", json!(150000), json!(150000)),
        ("virtio_txtimer", json!("200000"), json!(200000)),
        ("virtio_txburst", json!(256), json!(256)),
        ("virtio_txburst", json!("128"), json!(128)),
    ] {
        assert_eq!(update_ok(&h, &uuid, &json!({ prop: value }))[prop], want, "{prop}={value}");
        assert!(update_ok(&h, &uuid, &json!({ prop: null })).get(prop).is_none(), "{prop} after null");
    }
    // A disk added without a model gets the first disk's.
    let vm = update_ok(&h, &uuid, &json!({"add_disks": [{"size": 1024}]}));
    let disks = vm["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 2);
    assert_eq!(disks[1]["model"], disks[0]["model"], "{vm}");
}

// test-internal_metadata_namespaces.js: namespaced keys come from
// internal_metadata, are listed, and cannot be put or deleted from the zone.
#[test]
fn update_internal_metadata_namespaces() {
    let Some((h, img)) = host_with_tools() else { return };
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({
                "alias": "imn", "internal_metadata_namespaces": ["baz", "foo"],
                "customer_metadata": {"bar:foo": "customer", "foo:bar": "customer"},
                "internal_metadata": {"bar:foo": "internal", "foo:bar": "internal", "hidden": "this should be hidden in the zone"},
            }),
        ),
    );
    let vm = h.get(&uuid);
    assert_eq!(vm["internal_metadata_namespaces"], json!(["baz", "foo"]));
    let mdata = |cmd: &str| h.cli("zlogin", &[&uuid, cmd], None);
    assert_eq!(mdata("mdata-get bar:foo").stdout.trim(), "customer", "not namespaced: customer_metadata");
    assert_eq!(mdata("mdata-get foo:bar").stdout.trim(), "internal", "namespaced: internal_metadata");
    let mut listed: Vec<String> = mdata("mdata-list").stdout.lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(listed, ["bar:foo", "foo:bar"], "namespaced keys are listed, other internal ones are not");
    assert_eq!(mdata("mdata-put foo:qux value").code, 2, "no put into a namespace");
    assert_eq!(mdata("mdata-put quux:qux value").code, 0);
    assert_eq!(mdata("mdata-delete foo:bar").code, 2, "no delete in a namespace");
    let vm = h.get(&uuid);
    assert_eq!(
        vm["internal_metadata"],
        json!({"bar:foo": "internal", "foo:bar": "internal", "hidden": "this should be hidden in the zone"})
    );
    assert_eq!(vm["customer_metadata"], json!({"bar:foo": "customer", "foo:bar": "customer", "quux:qux": "value"}));
}
