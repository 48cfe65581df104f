//! `defaults`: the properties of a new VM, each with its type and value,
//! and nothing else (test-defaults.js; test-autoboot.js; the create cases
//! of test-create.js that read back what was given).

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// test-defaults.js's zone table, adapted to an lx zone on zonevisor:
/// every property a new zone shows, with its exact value, except those
/// that depend on the zone (uuid, timestamps, paths), checked by the caller.
fn zone_table(img: &str) -> Value {
    json!({
        "autoboot": true,
        "billing_id": ZERO_UUID,
        // zonevisor runs lx zones (SmartOS's table is for joyent-minimal).
        "brand": "lx",
        "cpu_shares": 100,
        "customer_metadata": {},
        "dns_domain": "local",
        "firewall_enabled": false,
        "hvm": false,
        "image_uuid": img,
        "init_restarts": 0,
        "internal_metadata": {},
        "limit_priv": "default",
        "max_locked_memory": 256,
        "max_lwps": 2000,
        "max_msg_ids": 4096,
        "max_physical_memory": 256,
        "max_sem_ids": 4096,
        "max_shm_ids": 4096,
        "max_shm_memory": 256,
        "max_swap": 256,
        "nics": [],
        "owner_uuid": ZERO_UUID,
        "quota": 10,
        "resolvers": [],
        "routes": {},
        "snapshots": [],
        "tags": {},
        "tmpfs": 256,
        "v": 1,
        "zfs_io_priority": 100,
        "zfs_root_recsize": 131072,
        "zpool": "zones",
    })
}

/// Properties whose values depend on the zone or the host.
const PER_ZONE: &[&str] = &[
    "create_timestamp",
    "last_modified",
    "platform_buildstamp",
    "server_uuid",
    "uuid",
    "zfs_filesystem",
    "zonename",
    "zonepath",
    "state",
    "zone_state",
];

/// Every way `vm` differs from `table`, and what it has beyond `table`,
/// the per-zone properties and `runtime` (each checked by its caller).
fn table_mismatches(vm: &Value, table: &Value, runtime: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (k, want) in table.as_object().unwrap() {
        if &vm[k] != want {
            out.push(format!("{k}: {} (want {want})", vm.get(k).map_or("absent".to_string(), |v| v.to_string())));
        }
    }
    let mut expected: Vec<String> = table.as_object().unwrap().keys().cloned().collect();
    expected.extend(PER_ZONE.iter().chain(runtime).map(|k| k.to_string()));
    for k in keys(vm).into_iter().filter(|k| !expected.contains(k)) {
        out.push(format!("unexpected {k}: {}", vm[&k]));
    }
    out
}

/// Every way the per-zone properties of a zone created between `before`
/// and `after` differ from SmartOS's.
fn per_zone_mismatches(h: &TestHost, vm: &Value, uuid: &str, before: i64, after: i64) -> Vec<String> {
    let sysinfo = h.cli("sysinfo", &[], None).json();
    let mut out = Vec::new();
    let mut check = |k: &str, want: Value, why: &str| {
        if vm[k] != want {
            out.push(format!("{k}: {} (want {want}: {why})", vm[k]));
        }
    };
    check("uuid", json!(uuid), "the created uuid");
    check("zonename", json!(uuid), "the uuid");
    // zonevisor: zonepath is <pool mountpoint>/<uuid> (SmartOS: /zones/<uuid>).
    check("zonepath", json!(h.pool().join(uuid)), "the pool's mountpoint/<uuid>");
    check("zfs_filesystem", json!(format!("zones/{uuid}")), "zones/<uuid>");
    check("server_uuid", sysinfo["UUID"].clone(), "sysinfo's UUID");
    check("platform_buildstamp", sysinfo["Live Image"].clone(), "sysinfo's Live Image");
    if vm["platform_buildstamp"] == "" {
        out.push(format!("platform_buildstamp is empty: {}", vm["platform_buildstamp"]));
    }
    let stamp = |k: &str, from: i64, to: i64, out: &mut Vec<String>| {
        let t = vm[k].as_str().and_then(iso_secs);
        match t {
            Some(t) if from - 1 <= t && t <= to + 1 => Some(t),
            _ => {
                out.push(format!("{k}: {} (want an ISO-8601 UTC time between {from} and {to})", vm[k]));
                None
            }
        }
    };
    let created = stamp("create_timestamp", before, after, &mut out);
    let modified = stamp("last_modified", before, now_secs(), &mut out);
    if let (Some(c), Some(m)) = (created, modified) {
        if m < c {
            out.push("last_modified is before create_timestamp".to_string());
        }
    }
    out
}

/// Panics with every mismatch, if there is one.
#[track_caller]
fn assert_none(mismatches: Vec<String>, what: &str, vm: &Value) {
    assert!(mismatches.is_empty(), "{what} differs from SmartOS's:\n  {}\nVM: {vm:#}", mismatches.join("\n  "));
}

// test-defaults.js "check default zone properties" and "check default
// create_timestamp"; test-autoboot.js "autoboot=true" (default).
#[test]
fn defaults_new_lx_zone_has_exactly_smartos_properties() {
    let Some((h, img)) = host() else { return };
    let before = now_secs();
    let uuid = create(&h, &lx(&img, json!({})));
    let after = now_secs();
    let vm = h.get(&uuid);
    let mut m = per_zone_mismatches(&h, &vm, &uuid, before, after);
    m.extend(table_mismatches(&vm, &zone_table(&img), &["boot_timestamp", "pid"]));
    if (vm["state"].as_str(), vm["zone_state"].as_str()) != (Some("running"), Some("running")) {
        m.push(format!("state/zone_state: {}/{} (want running/running)", vm["state"], vm["zone_state"]));
    }
    // Once booted it has a pid and a boot_timestamp.
    if vm["pid"].as_i64().is_none_or(|p| p <= 1) {
        m.push(format!("pid: {} (want the init's pid)", vm["pid"]));
    }
    if !vm["boot_timestamp"].as_str().and_then(iso_secs).is_some_and(|t| before - 1 <= t && t <= after + 1) {
        m.push(format!("boot_timestamp: {} (want an ISO-8601 UTC time of the create)", vm["boot_timestamp"]));
    }
    assert_none(m, "a new running lx zone", &vm);
}

// test-autoboot.js "autoboot=false"; test-defaults.js's table for a zone
// that never booted (no pid, no boot_timestamp).
#[test]
fn defaults_zone_that_never_booted_and_what_a_payload_adds() {
    let Some((h, img)) = host() else { return };
    let before = now_secs();
    let uuid = create(&h, &lx(&img, json!({"autoboot": false})));
    let after = now_secs();
    let vm = h.get(&uuid);
    let mut table = zone_table(&img);
    table["autoboot"] = json!(false);
    let mut m = per_zone_mismatches(&h, &vm, &uuid, before, after);
    m.extend(table_mismatches(&vm, &table, &[]));
    if (vm["state"].as_str(), vm["zone_state"].as_str()) != (Some("stopped"), Some("installed")) {
        m.push(format!("state/zone_state: {}/{} (want stopped/installed)", vm["state"], vm["zone_state"]));
    }
    assert_none(m, "a new lx zone that never booted", &vm);

    // test-create.js "create with null alias": no alias at all.
    let uuid = create(&h, &lx(&img, json!({"autoboot": false, "alias": null})));
    assert!(h.get(&uuid).get("alias").is_none(), "a null alias is absent: {}", h.get(&uuid));

    // test-create.js "create with tags" and "create with rctls": what is
    // given is what is shown, with its type.
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({
                "autoboot": false, "tags": {"hello": "world", "n": 3, "flag": true},
                "max_physical_memory": 1024, "max_shm_memory": 4096, "max_shm_ids": 256,
                "max_sem_ids": 256, "max_msg_ids": 256,
            }),
        ),
    );
    let vm = h.get(&uuid);
    assert_eq!(vm["tags"], json!({"hello": "world", "n": 3, "flag": true}));
    for (k, v) in [("max_shm_memory", 4096), ("max_shm_ids", 256), ("max_sem_ids", 256), ("max_msg_ids", 256)] {
        assert_eq!(vm[k], v, "{k}: {vm}");
    }
    // max_physical_memory given alone carries the others (test-defaults.js:
    // max_locked_memory, max_swap and tmpfs follow max_physical_memory).
    for k in ["max_physical_memory", "max_locked_memory", "max_swap", "tmpfs"] {
        assert_eq!(vm[k], 1024, "{k}: {vm}");
    }

    // Optional properties appear only when given: hostname, init_name,
    // restart_init, maintain_resolvers.
    let given = json!({
        "autoboot": false, "alias": "given", "hostname": "given-host", "init_name": "/sbin/init",
        "restart_init": false, "maintain_resolvers": true, "resolvers": ["192.0.2.53"],
        "owner_uuid": "36bf401a-28ef-11e1-b4a7-c344deb1a5d6", "billing_id": "9.99",
        "package_name": "pkg", "package_version": "1.0",
    });
    let uuid = create(&h, &lx(&img, given.clone()));
    let vm = h.get(&uuid);
    for (k, v) in given.as_object().unwrap() {
        assert_eq!(&vm[k], v, "{k} as given: {vm}");
    }
    let mut table = zone_table(&img);
    for (k, v) in given.as_object().unwrap() {
        table[k] = v.clone();
    }
    assert_none(table_mismatches(&vm, &table, &[]), "a zone with optional properties given", &vm);
}

// test-defaults.js "check default kvm properties"; test-autoboot.js's kvm cases.
#[test]
fn defaults_new_kvm_vm_has_exactly_smartos_properties() {
    let Some((h, img)) = host() else { return };
    let before = now_secs();
    let uuid = create(&h, &json!({"brand": "kvm", "autoboot": false}));
    let after = now_secs();
    let vm = h.get(&uuid);
    // test-defaults.js's kvm table: the zone table without dns_domain,
    // image_uuid and tmpfs, plus the kvm values.
    let mut table = zone_table(&img);
    for k in ["dns_domain", "image_uuid", "tmpfs"] {
        table.as_object_mut().unwrap().remove(k);
    }
    for (k, v) in [
        ("autoboot", json!(false)),
        ("brand", json!("kvm")),
        ("disks", json!([])),
        ("hvm", json!(true)),
        ("limit_priv", json!("default,-file_link_any,-net_access,-proc_fork,-proc_info,-proc_session")),
        ("max_physical_memory", json!(1280)),
        ("max_locked_memory", json!(1280)),
        ("max_shm_memory", json!(1280)),
        ("max_swap", json!(1280)),
        ("ram", json!(256)),
        ("vcpus", json!(1)),
    ] {
        table[k] = v;
    }
    let mut m = per_zone_mismatches(&h, &vm, &uuid, before, after);
    m.extend(table_mismatches(&vm, &table, &[]));
    assert_none(m, "a new kvm VM", &vm);

    let uuid = create(&h, &json!({"brand": "kvm", "autoboot": true}));
    assert_eq!(h.get(&uuid)["autoboot"], true);
}

// test-create.js "test create with IPv6 autoconfiguration", "test create
// with static IPv6 address", "test create with static IPv4 and IPv6
// addresses", "test create with IPv4 and IPv6 autoconfiguration": the
// representative ip and netmask a nic shows for its ips.
#[test]
fn defaults_nic_ip_and_netmask_from_ips() {
    let Some((h, img)) = host() else { return };
    h.cli("nictagadm", &["add", "-l", "admin"], None).ok();
    let nic = |ips: Value| {
        let uuid = create(&h, &lx(&img, json!({"autoboot": false, "nics": [{"nic_tag": "admin", "ips": ips}]})));
        h.get(&uuid)["nics"][0].clone()
    };
    let n = nic(json!(["addrconf"]));
    assert_eq!(n["ips"], json!(["addrconf"]), "{n}");
    let n = nic(json!(["fd00::1234/64"]));
    assert_eq!(n["ips"], json!(["fd00::1234/64"]), "{n}");
    let n = nic(json!(["10.11.12.13/24", "fd00::4321/64"]));
    assert_eq!(n["ips"].as_array().map(Vec::len), Some(2), "{n}");
    assert_eq!((n["ip"].as_str(), n["netmask"].as_str()), (Some("10.11.12.13"), Some("255.255.255.0")), "{n}");
    let n = nic(json!(["dhcp", "addrconf"]));
    assert_eq!(n["ips"].as_array().map(Vec::len), Some(2), "{n}");
    assert_eq!(n["ip"], "dhcp", "{n}");
    assert!(n.get("netmask").is_none(), "dhcp has no netmask: {n}");
}
