//! Golden-style tests: payloads in, VM objects or SmartOS-shaped errors out.

use serde_json::{json, Value};
use zonevisor_api::{ValidationErrors, VmObject};

use crate::{check_update_payload, is_property, validate_create, validate_update, Brand, BrandError};

const VM: &str = "6f1b5f2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b";
const IMG: &str = "a21a64a0-0809-11e5-a64f-ff80e8e8086f";
const IMG2: &str = "b21a64a0-0809-11e5-a64f-ff80e8e8086f";
const MAC0: &str = "02:08:20:aa:bb:cc";

fn refused(payload: Value) -> ValidationErrors {
    match validate_create(&payload) {
        Ok(vm) => panic!("payload was accepted: {}", Value::Object(vm)),
        Err(e) => e,
    }
}

fn created(payload: Value) -> VmObject {
    validate_create(&payload).unwrap_or_else(|e| panic!("refused: {}", e.summary()))
}

/// Asserts `name` is in the list `which` and its reason mentions `says`.
fn assert_has(e: &ValidationErrors, which: &str, name: &str, says: &str) {
    let list = match which {
        "bad_properties" => &e.bad_properties,
        "bad_values" => &e.bad_values,
        "missing_properties" => &e.missing_properties,
        _ => panic!("no list {which}"),
    };
    // SmartOS names array members `nics.*.mtu`; the reason names the element.
    let star = crate::smartos_name(name);
    assert!(list.contains(&star), "{star} not in {which}: {}", e.summary());
    let reason = e.reasons.get(&star).map(String::as_str).unwrap_or("");
    assert!(reason.contains(says), "reason for {star} is {reason:?}, wanted {says:?}");
    if star != name {
        assert!(reason.contains(&format!("{name}: ")), "the reason for {star} names {name}: {reason:?}");
    }
}

fn lx(extra: Value) -> Value {
    let mut p = json!({"brand": "lx", "image_uuid": IMG});
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn kvm(extra: Value) -> Value {
    let mut p = json!({"brand": "kvm", "disks": [{"image_uuid": IMG, "image_size": 10240}]});
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

// ---- create: the happy paths -------------------------------------------------

#[test]
fn full_lx_payload_normalizes_with_every_default() {
    let vm = created(json!({
        "brand": "lx",
        "uuid": VM,
        "alias": "web01",
        "image_uuid": IMG,
        "max_physical_memory": 1024,
        "quota": 20,
        "nics": [{"nic_tag": "admin", "mac": MAC0, "ips": ["10.0.0.5/24"], "gateways": ["10.0.0.1"]}],
        "resolvers": ["8.8.8.8", "2001:4860:4860::8888"],
        "customer_metadata": {"user-script": "echo hi"}
    }));
    let expected = json!({
        "uuid": VM,
        "alias": "web01",
        "brand": "lx",
        "image_uuid": IMG,
        "owner_uuid": "00000000-0000-0000-0000-000000000000",
        "billing_id": "00000000-0000-0000-0000-000000000000",
        "dns_domain": "local",
        "autoboot": true,
        "firewall_enabled": false,
        "max_physical_memory": 1024,
        "max_locked_memory": 1024,
        "max_swap": 1024,
        "max_shm_memory": 1024,
        "max_msg_ids": 4096,
        "max_sem_ids": 4096,
        "max_shm_ids": 4096,
        "max_lwps": 2000,
        "cpu_shares": 100,
        "zfs_io_priority": 100,
        "quota": 20,
        "tmpfs": 1024,
        "zfs_root_recsize": 131072,
        "nics": [{
            "nic_tag": "admin", "mac": MAC0, "ips": ["10.0.0.5/24"], "gateways": ["10.0.0.1"],
            // SmartOS's derived single-address members.
            "ip": "10.0.0.5", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
            "interface": "eth0", "primary": true
        }],
        "resolvers": ["8.8.8.8", "2001:4860:4860::8888"],
        "routes": {},
        "tags": {},
        "customer_metadata": {"user-script": "echo hi"},
        "internal_metadata": {},
        "limit_priv": "default"
    });
    assert_eq!(Value::Object(vm.clone()), expected);
    // `vmadm get` order: the table's, not the payload's.
    let keys: Vec<&str> = vm.keys().map(String::as_str).collect();
    let want: Vec<&str> = expected.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap();
    assert_eq!(keys, want);
}

#[test]
fn minimal_lx_gets_generated_uuid_and_smartos_defaults() {
    let vm = created(lx(json!({})));
    let uuid = vm["uuid"].as_str().unwrap();
    assert_eq!(uuid.len(), 36);
    assert_eq!(uuid.as_bytes()[14], b'4', "a v4 uuid: {uuid}");
    assert!(!vm.contains_key("hostname"), "SmartOS leaves hostname out unless given");
    assert_eq!(vm["max_physical_memory"], 256);
    assert_eq!(vm["max_swap"], 256);
    assert_eq!(vm["max_locked_memory"], 256);
    assert_eq!(vm["tmpfs"], 256);
    assert_eq!(vm["quota"], 10);
    assert_eq!(vm["nics"], json!([]));
    assert_eq!(vm["limit_priv"], "default");
    for absent in [
        "alias",
        "cpu_cap",
        "filesystems",
        "kernel_version",
        "disks",
        "ram",
        "vcpus",
        "init_name",
        "restart_init",
        "maintain_resolvers",
    ] {
        assert!(!vm.contains_key(absent), "{absent} should be absent");
    }
    // Two creates never share a uuid.
    assert_ne!(created(lx(json!({})))["uuid"], vm["uuid"]);
}

#[test]
fn small_memory_keeps_swap_at_256() {
    let vm = created(lx(json!({"max_physical_memory": 128})));
    assert_eq!((vm["max_physical_memory"].clone(), vm["max_swap"].clone()), (json!(128), json!(256)));
}

#[test]
fn lx_ram_is_smartos_shorthand_for_max_physical_memory() {
    let vm = created(lx(json!({"ram": 2048})));
    assert_eq!(vm["max_physical_memory"], 2048);
    assert_eq!(vm["max_swap"], 2048);
    assert!(!vm.contains_key("ram"));
}

#[test]
fn strings_from_the_cli_are_coerced() {
    let vm = created(lx(json!({
        "max_physical_memory": "512",
        "cpu_cap": "150",
        "autoboot": "false",
        "resolvers": "8.8.8.8,8.8.4.4",
        "nics": [{"nic_tag": "admin", "vlan_id": "10", "primary": "true"}],
        "uuid": VM.to_uppercase()
    })));
    assert_eq!(vm["max_physical_memory"], 512);
    assert_eq!(vm["max_swap"], 512);
    assert_eq!(vm["cpu_cap"], 150);
    assert_eq!(vm["autoboot"], false);
    assert_eq!(vm["resolvers"], json!(["8.8.8.8", "8.8.4.4"]));
    assert_eq!(vm["nics"][0]["vlan_id"], 10);
    assert_eq!(vm["nics"][0]["primary"], true);
    assert_eq!(vm["uuid"], VM, "uuids are stored lowercase");
}

#[test]
fn nics_get_interfaces_macs_and_one_primary() {
    let vm = created(lx(json!({"nics": [
        {"nic_tag": "admin", "interface": "eth1"},
        {"nic_tag": "external"},
        {"nic_tag": "internal", "primary": true, "mac": "2:8:20:A:B:C", "ip": "192.168.1.5", "netmask": "255.255.255.0"}
    ]})));
    let nics = vm["nics"].as_array().unwrap();
    let names: Vec<&str> = nics.iter().map(|n| n["interface"].as_str().unwrap()).collect();
    assert_eq!(names, ["eth1", "eth0", "eth2"]);
    let mac = nics[1]["mac"].as_str().unwrap();
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0x03, 0x02, "locally administered unicast: {mac}");
    assert_eq!(nics[2]["mac"], "02:08:20:0a:0b:0c");
    assert_eq!(nics[2]["ips"], json!(["192.168.1.5/24"]), "deprecated ip/netmask become ips");
    let primaries: Vec<bool> = nics.iter().map(|n| n.get("primary") == Some(&json!(true))).collect();
    assert_eq!(primaries, [false, false, true]);
}

#[test]
fn kvm_payload_validates_with_hvm_defaults() {
    let vm = created(json!({
        "brand": "kvm",
        "ram": 1024,
        "vcpus": "2",
        "disk_driver": "virtio",
        "nic_driver": "e1000",
        "disks": [{"image_uuid": IMG, "image_size": 10240}, {"size": 20480, "model": "ide"}],
        "nics": [{"nic_tag": "admin", "ips": ["dhcp"]}]
    }));
    assert!(!vm.contains_key("type"), "type is the daemon's");
    assert_eq!(vm["vcpus"], 2);
    assert_eq!(vm["max_physical_memory"], 2048, "ram + 1024 as SmartOS");
    assert_eq!(vm["max_locked_memory"], 2048);
    assert_eq!(vm["max_swap"], 2048);
    assert_eq!(vm["quota"], 10);
    assert!(!vm.contains_key("tmpfs") && !vm.contains_key("dns_domain") && !vm.contains_key("init_name"));
    assert_eq!(
        vm["disks"],
        json!([
            {"image_uuid": IMG, "image_size": 10240, "media": "disk", "model": "virtio", "size": 10240,
             "compression": "off", "boot": true},
            {"size": 20480, "model": "ide", "media": "disk", "block_size": 8192, "compression": "off",
             "boot": false}
        ])
    );
    assert_eq!(vm["nics"][0]["interface"], "net0");
    assert_eq!(vm["nics"][0]["model"], "e1000");
}

#[test]
fn bhyve_payload_validates_with_its_own_overhead_and_quota() {
    let vm = created(json!({
        "brand": "bhyve",
        "ram": 2048,
        "bootrom": "uefi",
        "flexible_disk_size": 40960,
        "disks": [{"image_uuid": IMG, "size": 30720}, {"media": "cdrom", "path": "/isos/install.iso"}]
    }));
    assert_eq!(vm["ram"], 2048);
    assert_eq!(vm["vcpus"], 1);
    assert_eq!(vm["max_physical_memory"], 2048 + 1280);
    assert_eq!(vm["quota"], 1);
    assert_eq!(vm["disks"][0]["boot"], true);
    assert_eq!(vm["disks"][0]["size"], 30720, "flexible_disk_size allows a size with an image");
    assert_eq!(vm["disks"][0]["uuid"].as_str().map(str::len), Some(36), "bhyve disks get a uuid");
    assert_eq!(vm["disks"][1]["boot"], false);
    assert_eq!(vm["disks"][1]["media"], "cdrom");
}

// ---- create: refusals ------------------------------------------------------------

#[test]
fn brand_is_required_and_must_run_on_linux() {
    let e = refused(json!({"alias": "x"}));
    assert_eq!(e.missing_properties, ["brand"]);
    for b in ["joyent", "joyent-minimal", "builder"] {
        let e = refused(json!({"brand": b, "image_uuid": IMG}));
        assert_eq!(e.bad_brand.as_deref(), Some(b));
        let reason = &e.reasons["brand"];
        assert!(reason.contains("illumos-native") && reason.contains("use brand lx"), "{reason}");
    }
    let e = refused(json!({"brand": "solaris10"}));
    assert_eq!(e.bad_brand.as_deref(), Some("solaris10"));
    assert!(e.reasons["brand"].contains("lx"));
}

#[test]
fn unknown_properties_are_refused_not_dropped() {
    let e = refused(lx(json!({"max_physcial_memory": 512, "set_tags": {"a": "b"}})));
    assert_has(&e, "bad_properties", "max_physcial_memory", "not a vmadm property");
    assert_has(&e, "bad_properties", "set_tags", "only valid in vmadm update");
}

#[test]
fn properties_of_other_brands_are_refused() {
    let e = refused(lx(json!({"vcpus": 2, "disks": [], "nic_driver": "virtio"})));
    assert_has(&e, "bad_properties", "vcpus", "not valid for brand lx (only for kvm, bhyve)");
    assert_has(&e, "bad_properties", "disks", "not valid for brand lx");
    assert_has(&e, "bad_properties", "nic_driver", "not valid for brand lx");
    let e = refused(kvm(json!({"image_uuid": IMG, "tmpfs": 10, "init_name": "/sbin/init"})));
    assert_has(&e, "bad_properties", "image_uuid", "disks.0.image_uuid");
    assert_has(&e, "bad_properties", "tmpfs", "only for lx");
    assert_has(&e, "bad_properties", "init_name", "only for lx");
    let e = refused(lx(json!({"nics": [{"nic_tag": "admin", "model": "virtio"}]})));
    assert_has(&e, "bad_properties", "nics.0.model", "not valid for brand lx");
}

#[test]
fn runtime_properties_belong_to_the_daemon() {
    let runtime = [
        "state",
        "zone_state",
        "pid",
        "zoneid",
        "zonepath",
        "zonename",
        "type",
        "create_timestamp",
        "boot_timestamp",
        "last_modified",
        "exit_status",
        "exit_timestamp",
        "exit_reason",
    ];
    let mut payload = lx(json!({"zpool": "tank"}));
    for r in runtime {
        payload[r] = json!("x");
    }
    let e = refused(payload);
    for r in runtime {
        assert_has(&e, "bad_properties", r, "owned by zonevisor");
    }
    assert_has(&e, "bad_values", "zpool", "\"zones\"");
    assert_eq!(created(lx(json!({"zpool": "zones"})))["zpool"], "zones");
}

#[test]
fn identity_values_are_checked() {
    let e = refused(lx(json!({
        "uuid": "6f1b5f2e3c4d4e5f8a9b0c1d2e3f4a5b",
        "owner_uuid": "nobody",
        "hostname": "-web_01",
        "dns_domain": "example..com",
        "alias": ""
    })));
    assert_has(&e, "bad_values", "uuid", "36 characters");
    assert_has(&e, "bad_values", "owner_uuid", "UUID");
    assert_has(&e, "bad_values", "hostname", "labels");
    assert_has(&e, "bad_values", "dns_domain", "labels");
    assert_has(&e, "bad_values", "alias", "1 to 1024 printable characters");
    let e = refused(lx(json!({"alias": "a".repeat(1025), "hostname": "a".repeat(64)})));
    assert_has(&e, "bad_values", "alias", "got");
    assert_has(&e, "bad_values", "hostname", "1-63");
    let e = refused(lx(json!({"alias": "tab\there", "image_uuid": 42})));
    assert_has(&e, "bad_values", "alias", "control");
    assert_has(&e, "bad_values", "image_uuid", "got 42");
    assert_eq!(created(lx(json!({"alias": "Web server #1 (ünïcode)"})))["alias"], "Web server #1 (ünïcode)");
}

#[test]
fn resource_limits_are_checked() {
    let e = refused(lx(json!({
        "cpu_cap": -1,
        "cpu_shares": 0,
        "max_lwps": 0,
        "zfs_io_priority": 0,
        "quota": -5,
        "tmpfs": -1,
        "max_physical_memory": "lots",
        "autoboot": "yes"
    })));
    assert_has(&e, "bad_values", "cpu_cap", "integer ≥ 0; got -1");
    assert_has(&e, "bad_values", "cpu_shares", "from 1 to 65535");
    assert_has(&e, "bad_values", "max_lwps", "≥ 1");
    assert_has(&e, "bad_values", "zfs_io_priority", "from 1 to 16384");
    assert_has(&e, "bad_values", "quota", "≥ 0");
    assert_has(&e, "bad_values", "tmpfs", "≥ 0");
    assert_has(&e, "bad_values", "max_physical_memory", "got \"lots\"");
    assert_has(&e, "bad_values", "autoboot", "true or false");
    let e = refused(lx(json!({"cpu_shares": 70000, "zfs_io_priority": 20000, "max_swap": 128})));
    assert_has(&e, "bad_values", "cpu_shares", "65535");
    assert_has(&e, "bad_values", "zfs_io_priority", "16384");
    assert_has(&e, "bad_values", "max_swap", "≥ 256");
}

#[test]
fn memory_caps_that_disagree_are_clamped_as_smartos_does() {
    let a = crate::accept_create(&lx(json!(
        {"max_physical_memory": 512, "max_swap": 384, "max_locked_memory": 1024, "tmpfs": 600}
    )))
    .unwrap();
    assert_eq!(a.vm["max_swap"], 512, "raised to max_physical_memory");
    assert_eq!(a.vm["max_locked_memory"], 512, "lowered to max_physical_memory");
    assert_eq!(a.vm["tmpfs"], 512, "lowered to max_physical_memory");
    let warned: Vec<&str> = a.warnings.iter().map(|w| w.property.as_str()).collect();
    assert_eq!(warned, ["max_locked_memory", "tmpfs", "max_swap"]);
    assert!(a.warnings[2].message.contains("max_swap 384 is below max_physical_memory (512): set to 512"));
    let a = crate::accept_create(&kvm(json!({"ram": 1024, "max_physical_memory": 1100}))).unwrap();
    assert_eq!(a.vm["max_physical_memory"], 1280, "raised to ram + 256");
    // Below the floor nothing runs: refused, not clamped.
    let e = refused(lx(json!({"max_physical_memory": 1})));
    assert_has(&e, "bad_values", "max_physical_memory", "≥ 32");
    let e = refused(lx(json!({"ram": 16})));
    assert_has(&e, "bad_values", "ram", "≥ 32");
}

#[test]
fn misplaced_properties_are_dropped_with_a_warning_by_create() {
    let payload = lx(json!({"bogus": 1, "state": "running", "update_nics": [], "vcpus": 2, "alias": "a"}));
    let e = refused(payload.clone());
    assert_eq!(e.bad_properties, ["bogus", "state", "update_nics", "vcpus"], "validate reports them");
    let a = crate::accept_create(&payload).unwrap();
    for p in ["bogus", "state", "update_nics", "vcpus"] {
        assert!(!a.vm.contains_key(p), "{p} dropped");
        assert!(a.warnings.iter().any(|w| w.property == p && w.message.starts_with("invalid create property")));
    }
    assert_eq!(a.vm["alias"], "a");
    // Bad values still fail it.
    assert!(crate::accept_create(&lx(json!({"bogus": 1, "max_lwps": "many"}))).is_err());
}

#[test]
fn nic_values_are_checked_and_named_by_index() {
    let many: Vec<String> = (1..=21).map(|i| format!("10.0.0.{i}/24")).collect();
    let e = refused(lx(json!({"nics": [
        {"nic_tag": "admin", "primary": true},
        {"nic_tag": "admin", "vlan_id": 5000, "mac": "02:08:20:zz:00:01", "mtu": 100},
        {"nic_tag": "admin", "ips": ["10.0.0.300/24"], "gateways": ["gw"]},
        {"nic_tag": "admin", "ips": many, "primary": true},
        {"ips": ["dhcp"], "allow_ip_spoofing": "maybe"},
        "eth9"
    ]})));
    assert_has(&e, "bad_values", "nics.1.vlan_id", "from 0 to 4095; got 5000");
    assert_has(&e, "bad_values", "nics.1.mac", "unicast MAC address");
    assert_has(&e, "bad_values", "nics.1.mtu", "from 576 to 9000");
    assert_has(&e, "bad_values", "nics.2.ips", "\"10.0.0.300/24\"");
    assert_has(&e, "bad_values", "nics.2.gateways", "IPv4 or IPv6 address");
    assert_has(&e, "bad_values", "nics.3.ips", "at most 20");
    assert_has(&e, "missing_properties", "nics.4.nic_tag", "required");
    assert_has(&e, "bad_values", "nics.4.allow_ip_spoofing", "true or false");
    assert_has(&e, "bad_values", "nics.5", "must be an object");
    // The second primary is reported when the others are valid.
    let e = refused(lx(json!({"nics": [
        {"nic_tag": "admin", "primary": true, "mac": MAC0},
        {"nic_tag": "admin", "primary": true, "mac": MAC0}
    ]})));
    assert_has(&e, "bad_values", "nics.1.primary", "only one nic may be primary; nics.0.primary");
    assert_has(&e, "bad_values", "nics.1.mac", "already used");
}

#[test]
fn resolvers_routes_and_maps_are_checked() {
    let e = refused(lx(json!({
        "resolvers": ["8.8.8.8", "dns.google"],
        "routes": {"10.2.0.0/16": "10.0.0.1", "bad": "10.0.0.1"},
        "customer_metadata": {"n": {"nested": 5}},
        "tags": {"role": {"nested": true}}
    })));
    assert_has(&e, "bad_values", "resolvers", "\"dns.google\"");
    assert_has(&e, "bad_values", "routes", "key \"bad\"");
    assert_has(&e, "bad_values", "customer_metadata", "key \"n\"");
    assert_has(&e, "bad_values", "tags", "strings, numbers or booleans");
    let vm = created(lx(json!({"tags": {"n": 5, "on": true, "s": "x"}, "routes": {"10.3.0.1": "nics[0]"}})));
    assert_eq!(vm["tags"], json!({"n": 5, "on": true, "s": "x"}));
}

#[test]
fn filesystems_are_bind_mounts_with_safe_paths() {
    let e = refused(lx(json!({"filesystems": [
        {"source": "/data"},
        {"type": "nfs", "source": "data", "target": "/mnt/../etc", "options": ["ro", "sync"]},
        {"type": "lofs", "source": "/a", "target": "/", "options": ["ro", "rw"]}
    ], "init_name": "sbin/init"})));
    assert_has(&e, "missing_properties", "filesystems.0.type", "required");
    assert_has(&e, "missing_properties", "filesystems.0.target", "required");
    assert_has(&e, "bad_values", "filesystems.1.type", "lofs");
    assert_has(&e, "bad_values", "filesystems.1.source", "absolute path");
    assert_has(&e, "bad_values", "filesystems.1.target", "without `..`");
    assert_has(&e, "bad_values", "filesystems.1.options", "\"sync\"");
    assert_has(&e, "bad_values", "filesystems.2.target", "cannot be /");
    assert_has(&e, "bad_values", "filesystems.2.options", "exclude each other");
    assert_has(&e, "bad_values", "init_name", "absolute path");
    let vm = created(lx(json!({"filesystems": [
        {"type": "lofs", "source": "/srv/data", "target": "/data", "options": ["ro", "nodevice", "nosuid", "noexec"]}
    ]})));
    assert_eq!(vm["filesystems"][0]["options"], json!(["ro", "nodevice", "nosuid", "noexec"]));
}

#[test]
fn hvm_disks_follow_smartos_rules() {
    let e = refused(json!({"brand": "kvm", "disks": [
        {"model": "virtio"},
        {"image_uuid": IMG, "size": 10240, "block_size": 4096},
        {"size": 1024, "path": "/dev/zvol/x", "block_size": 1000},
        {"size": 1024, "model": "nvme"},
        {"media": "cdrom"}
    ]}));
    assert_has(&e, "missing_properties", "disks.0.size", "without image_uuid");
    assert_has(&e, "bad_properties", "disks.1.size", "flexible_disk_size");
    assert_has(&e, "bad_properties", "disks.1.block_size", "image sets it");
    assert_has(&e, "bad_properties", "disks.2.path", "nocreate");
    assert_has(&e, "bad_values", "disks.3.model", "virtio, ide, scsi");
    assert_has(&e, "missing_properties", "disks.4.path", "cdrom");
    let e = refused(json!({"brand": "kvm", "disks": [{"size": 1024, "block_size": 1000}]}));
    assert_has(&e, "bad_values", "disks.0.block_size", "power of 2");
    let e = refused(json!({"brand": "bhyve", "disks": [{"size": 1024, "model": "ide"}]}));
    assert_has(&e, "bad_values", "disks.0.model", "virtio, ahci, nvme");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = refused(json!({
        "brand": "lx",
        "alias": "",
        "vcpus": 4,
        "bogus": 1,
        "state": "running",
        "max_lwps": -3,
        "nics": [{"nic_tag": "admin", "vlan_id": -1}]
    }));
    assert_eq!(e.bad_brand, None);
    let mut bad_props = e.bad_properties.clone();
    bad_props.sort();
    assert_eq!(bad_props, ["bogus", "state", "vcpus"]);
    let mut bad_values = e.bad_values.clone();
    bad_values.sort();
    assert_eq!(bad_values, ["alias", "max_lwps", "nics.*.vlan_id"], "SmartOS's names for array members");
    assert_eq!(e.missing_properties, ["image_uuid"]);
    for name in bad_props.iter().chain(&bad_values).chain(&e.missing_properties) {
        assert!(!e.reasons[name].is_empty(), "no reason for {name}");
    }
    // Without a brand, the rest of the payload is still checked.
    let e = refused(json!({"brand": "joyent", "cpu_shares": "many", "nonsense": 1}));
    assert_eq!(e.bad_brand.as_deref(), Some("joyent"));
    assert_eq!(e.bad_values, ["cpu_shares"]);
    assert_eq!(e.bad_properties, ["nonsense"]);
    let e = refused(json!([1, 2]));
    assert_has(&e, "bad_values", "payload", "JSON object");
}

// ---- updates -------------------------------------------------------------------------

fn lx_vm() -> VmObject {
    created(json!({
        "brand": "lx",
        "uuid": VM,
        "alias": "web01",
        "image_uuid": IMG,
        "max_physical_memory": 1024,
        "max_swap": 2048,
        "tmpfs": 512,
        "tags": {"role": "web", "tier": 1},
        "customer_metadata": {"user-script": "x", "keep": "y"},
        "nics": [
            {"nic_tag": "admin", "mac": MAC0, "ips": ["10.0.0.5/24"]},
            {"nic_tag": "external", "mac": "02:08:20:00:00:02", "ips": ["dhcp"]}
        ],
        "filesystems": [{"type": "lofs", "source": "/srv", "target": "/srv"}]
    }))
}

fn kvm_vm() -> VmObject {
    created(json!({
        "brand": "kvm",
        "uuid": VM,
        "ram": 1024,
        "disks": [{"image_uuid": IMG, "image_size": 10240, "path": "/dev/zvol/disk0", "nocreate": true}]
    }))
}

fn updated(vm: &VmObject, update: Value) -> crate::UpdatePlan {
    validate_update(vm, &update).unwrap_or_else(|e| panic!("refused: {}", e.summary()))
}

fn update_refused(vm: &VmObject, update: Value) -> ValidationErrors {
    match validate_update(vm, &update) {
        Ok(p) => panic!("update accepted: {:?}", p.changed),
        Err(e) => e,
    }
}

#[test]
fn plain_update_reports_what_changed() {
    let vm = lx_vm();
    let plan = updated(&vm, json!({"alias": "web02", "cpu_cap": "200", "hostname": "web02", "autoboot": true}));
    assert_eq!(plan.vm["alias"], "web02");
    assert_eq!(plan.vm["cpu_cap"], 200);
    assert_eq!(plan.changed, ["alias", "cpu_cap", "hostname"]);
    assert_eq!(plan.live, ["alias", "cpu_cap"]);
    assert_eq!(plan.needs_reboot, ["hostname"]);
    let plan = updated(&vm, json!({}));
    assert!(plan.changed.is_empty());
    assert_eq!(plan.vm, vm);
}

#[test]
fn memory_caps_move_together_as_in_smartos() {
    let vm = lx_vm(); // mpm 1024, swap 2048, locked 1024, tmpfs 512
    let plan = updated(&vm, json!({"max_physical_memory": 2048}));
    assert_eq!(plan.vm["max_swap"], 3072, "keeps swap's distance");
    assert_eq!(plan.vm["max_locked_memory"], 2048);
    assert_eq!(plan.vm["tmpfs"], 1024, "keeps tmpfs's ratio");
    assert_eq!(plan.changed, ["max_physical_memory", "max_locked_memory", "max_swap", "tmpfs"]);
    assert_eq!(plan.live, ["max_physical_memory", "max_locked_memory", "max_swap", "tmpfs"]);
    assert!(plan.needs_reboot.is_empty(), "a running zone's /tmp is resized live");

    // SmartOS raises a max_swap below max_physical_memory to it.
    let plan = updated(&vm, json!({"max_swap": 512}));
    assert_eq!(plan.vm["max_swap"], 1024);
    assert_eq!(plan.warnings[0].property, "max_swap");
    let plan = updated(&vm, json!({"max_physical_memory": 4096, "max_swap": 2048}));
    assert_eq!(plan.vm["max_swap"], 4096);
    let plan = updated(&vm, json!({"max_locked_memory": 4096}));
    assert_eq!(plan.vm["max_locked_memory"], 1024, "lowered to max_physical_memory");

    let hvm = kvm_vm(); // ram 1024, mpm 2048
    let plan = updated(&hvm, json!({"ram": 2048, "vcpus": 4}));
    assert_eq!(plan.vm["max_physical_memory"], 3072, "ram + 1024");
    assert_eq!(plan.vm["max_swap"], 3072);
    assert_eq!(plan.needs_reboot, ["ram", "vcpus"]);
    assert_eq!(plan.live, ["max_physical_memory", "max_locked_memory", "max_swap"]);
    let plan = updated(&hvm, json!({"max_physical_memory": 1100}));
    assert_eq!(plan.vm["max_physical_memory"], 1280, "raised to ram + 256");
}

#[test]
fn never_changeable_and_runtime_properties_are_dropped() {
    let vm = lx_vm();
    let plan = updated(
        &vm,
        json!({"brand": "kvm", "uuid": VM, "image_uuid": IMG2, "zpool": "zones", "state": "stopped",
               "vcpus": 2, "bogus": true, "alias": "new"}),
    );
    assert_eq!(plan.changed, ["alias"]);
    let warned: Vec<&str> = plan.warnings.iter().map(|w| w.property.as_str()).collect();
    // uuid is given as it stands: silent.
    assert_eq!(warned, ["brand", "image_uuid", "zpool", "state", "vcpus", "bogus"]);
    assert!(plan.warnings[0].message.contains("cannot be changed after the instance is created"));
    assert!(plan.warnings[3].message.contains("owned by zonevisor"));
    assert!(plan.warnings[4].message.contains("not valid for brand lx"));
    assert!(plan.warnings[5].message.contains("not a vmadm property"));
    let plan = updated(&vm, json!({"tags": {"x": 1}, "nics": vm["nics"].clone()}));
    assert!(plan.changed.is_empty());
    assert!(plan.warnings[0].message.contains("use set_tags / remove_tags"));
    assert_eq!(plan.warnings.len(), 1, "nics given as they stand: silent");
    // `vmadm get` output fed back changes nothing and says nothing.
    let plan = updated(&vm, Value::Object(vm.clone()));
    assert!(plan.changed.is_empty() && plan.warnings.is_empty(), "{:?}", plan.warnings);
    // `vmadm validate update` still reports them.
    let e = check_update_payload("lx", &json!({"uuid": VM, "bogus": 1}));
    assert_eq!(e.bad_properties, ["uuid", "bogus"]);
}

#[test]
fn null_clears_optional_properties_only() {
    let vm = lx_vm();
    let plan = updated(&vm, json!({"alias": null, "cpu_cap": null}));
    assert!(!plan.vm.contains_key("alias"));
    assert_eq!(plan.changed, ["alias"], "cpu_cap was not set");
    // Those that always have a value go back to their defaults.
    let plan = updated(&vm, json!({"max_lwps": null, "autoboot": null, "quota": null, "max_swap": null}));
    assert_eq!(plan.vm["max_lwps"], 2000);
    assert_eq!(plan.vm["autoboot"], true);
    assert_eq!(plan.vm["quota"], 0, "a cleared quota is no quota");
    assert_eq!(plan.vm["max_swap"], 1024, "max_physical_memory");
    let plan = updated(&vm, json!({"max_physical_memory": null}));
    assert_eq!((plan.vm["max_physical_memory"].clone(), plan.vm["max_swap"].clone()), (json!(256), json!(1280)));
}

#[test]
fn map_operators() {
    let vm = lx_vm();
    let plan = updated(
        &vm,
        json!({
            "set_tags": {"tier": 2, "new": true},
            "remove_tags": ["role", "absent"],
            "set_customer_metadata": {"user-script": "y"},
            "remove_customer_metadata": "keep",
            "set_internal_metadata": {"operator-script": "z"},
            "set_routes": {"10.9.0.0/16": "10.0.0.1"},
            "remove_routes": ["10.9.0.0/16"]
        }),
    );
    assert_eq!(plan.vm["tags"], json!({"tier": 2, "new": true}));
    assert_eq!(plan.vm["customer_metadata"], json!({"user-script": "y"}));
    assert_eq!(plan.vm["internal_metadata"], json!({"operator-script": "z"}));
    assert_eq!(plan.vm["routes"], json!({"10.9.0.0/16": "10.0.0.1"}), "removes run before sets");
    assert_eq!(plan.changed, ["routes", "tags", "customer_metadata", "internal_metadata"]);
    assert_eq!(plan.live, plan.changed);
    let plan = updated(&plan.vm, json!({"remove_routes": "10.9.0.0/16"}));
    assert_eq!(plan.vm["routes"], json!({}));
    // SmartOS's flat objects take numbers and booleans, not objects.
    let plan = updated(&vm, json!({"set_customer_metadata": {"n": 1, "b": true}}));
    assert_eq!((&plan.vm["customer_metadata"]["n"], &plan.vm["customer_metadata"]["b"]), (&json!(1), &json!(true)));
    let e = update_refused(&vm, json!({"set_customer_metadata": {"n": [1]}, "set_tags": "x"}));
    assert_has(&e, "bad_values", "set_customer_metadata", "key \"n\"");
    assert_has(&e, "bad_values", "set_tags", "an object");
}

#[test]
fn metadata_is_held_to_its_size() {
    let big = "x".repeat(crate::METADATA_MAX_BYTES / 2);
    let vm = lx_vm();
    let plan = updated(&vm, json!({"set_customer_metadata": {"a": big}}));
    // Over the cap with the other map's share: refused, named.
    let e = update_refused(&plan.vm, json!({"set_internal_metadata": {"b": big}}));
    assert_has(&e, "bad_values", "customer_metadata", "at most 4194304");
    let e = lx_refused(json!({"customer_metadata": {"a": big, "b": big}}));
    assert_has(&e, "bad_values", "customer_metadata", "would hold");
    // Removing makes room again.
    let plan = updated(&plan.vm, json!({"remove_customer_metadata": ["a"], "set_internal_metadata": {"b": big}}));
    assert_eq!(plan.vm["internal_metadata"]["b"].as_str().map(str::len), Some(big.len()));
}

#[test]
fn nic_operators() {
    let vm = lx_vm();
    let plan = updated(&vm, json!({"add_nics": [{"nic_tag": "internal", "vlan_id": 12}]}));
    let nics = plan.vm["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 3);
    assert_eq!(nics[2]["interface"], "eth2");
    assert_eq!(nics[2]["vlan_id"], 12);
    assert!(nics[2]["mac"].as_str().is_some_and(|m| m.len() == 17));
    assert_eq!(nics[0]["primary"], true, "the primary stays");
    assert_eq!(plan.needs_reboot, ["nics"]);

    let plan =
        updated(&vm, json!({"add_nics": [{"nic_tag": "internal", "primary": true, "mac": "02:08:20:00:00:09"}]}));
    let prim: Vec<bool> = plan.vm["nics"].as_array().unwrap().iter().map(|n| n.get("primary").is_some()).collect();
    assert_eq!(prim, [false, false, true], "an added primary takes the flag");

    // Antispoof flags apply live; vlan changes need a reboot.
    let plan = updated(&vm, json!({"update_nics": [{"mac": "02:08:20:AA:BB:CC", "allow_ip_spoofing": true}]}));
    assert_eq!(plan.vm["nics"][0]["allow_ip_spoofing"], true);
    assert_eq!((plan.live.clone(), plan.needs_reboot.clone()), (vec!["nics".to_string()], vec![]));
    let plan = updated(&vm, json!({"update_nics": [{"mac": MAC0, "vlan_id": 7, "ips": null}]}));
    assert_eq!(plan.vm["nics"][0]["vlan_id"], 7);
    assert!(plan.vm["nics"][0].get("ips").is_none(), "null removes a member");
    assert_eq!(plan.needs_reboot, ["nics"]);
    let plan = updated(&vm, json!({"update_nics": [{"mac": "02:08:20:00:00:02", "primary": true}]}));
    assert_eq!(plan.vm["nics"][1]["primary"], true);
    assert!(plan.vm["nics"][0].get("primary").is_none());

    let plan = updated(&vm, json!({"remove_nics": [MAC0]}));
    let nics = plan.vm["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 1);
    assert_eq!(nics[0]["primary"], true, "the remaining nic becomes primary");

    let e = update_refused(
        &vm,
        json!({
            "update_nics": [{"mac": "02:08:20:00:00:99", "vlan_id": 1}, {"vlan_id": 2}, {"mac": MAC0, "primary": false},
                            {"mac": MAC0, "vlan_id": 4096}, {"mac": MAC0, "dangerous_allow_shrink": true}],
            "remove_nics": ["02:08:20:00:00:98"],
            "add_nics": [{"nic_tag": "x", "mac": MAC0}]
        }),
    );
    assert_has(&e, "bad_values", "update_nics.0.mac", "no element of nics has mac 02:08:20:00:00:99");
    assert_has(&e, "missing_properties", "update_nics.1.mac", "identifies");
    assert_has(&e, "bad_values", "update_nics.2.primary", "only true is valid");
    assert_has(&e, "bad_values", "update_nics.3.vlan_id", "0 to 4095");
    assert_has(&e, "bad_properties", "update_nics.4.dangerous_allow_shrink", "not a known member");
    assert_has(&e, "bad_values", "remove_nics", "no element of nics has mac 02:08:20:00:00:98");
    assert_has(&e, "bad_values", "add_nics.0.mac", "already used by another nic");
}

#[test]
fn filesystem_operators() {
    let vm = lx_vm();
    let plan = updated(
        &vm,
        json!({"add_filesystems": [{"type": "lofs", "source": "/logs", "target": "/var/log/app", "options": ["rw"]}],
               "remove_filesystems": ["/srv"]}),
    );
    assert_eq!(
        plan.vm["filesystems"],
        json!([{"type": "lofs", "source": "/logs", "target": "/var/log/app", "options": ["rw"]}])
    );
    assert_eq!(plan.needs_reboot, ["filesystems"]);
    let e = update_refused(&vm, json!({"add_filesystems": [{"type": "lofs", "source": "/x", "target": "/srv"}]}));
    assert_has(&e, "bad_values", "add_filesystems.0.target", "already the target");
    let e = update_refused(&vm, json!({"add_filesystems": [{"type": "lofs", "source": "/x", "target": "rel"}]}));
    assert_has(&e, "bad_values", "add_filesystems.0.target", "absolute path");
}

#[test]
fn disk_operators_are_for_hvm() {
    let vm = kvm_vm();
    let plan = updated(
        &vm,
        json!({"add_disks": [{"size": 4096, "boot": true}, {"media": "cdrom", "path": "/isos/a.iso", "model": "ide"}]}),
    );
    let disks = plan.vm["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 3);
    assert_eq!(disks[0]["boot"], false, "the added boot disk takes the flag");
    assert_eq!(disks[1]["boot"], true);
    assert_eq!(disks[1]["model"], "virtio", "model of the first disk");
    assert_eq!(plan.needs_reboot, ["disks"]);

    let plan = updated(&vm, json!({"update_disks": [{"path": "/dev/zvol/disk0", "compression": "lz4"}]}));
    assert_eq!(plan.vm["disks"][0]["compression"], "lz4");
    assert_eq!(plan.live, ["disks"], "compression applies live");
    let plan = updated(&vm, json!({"remove_disks": ["/dev/zvol/disk0"]}));
    assert_eq!(plan.vm["disks"], json!([]));

    let e = update_refused(
        &vm,
        json!({"update_disks": [{"path": "/dev/zvol/disk0", "block_size": 4096}, {"path": "/nope", "boot": true}],
               "remove_disks": ["/nope"]}),
    );
    assert_has(&e, "bad_properties", "update_disks.0.block_size", "only be set when the element is added");
    assert_has(&e, "bad_values", "update_disks.1.path", "no element of disks has path /nope");
    assert_has(&e, "bad_values", "remove_disks", "/nope");
    let plan = updated(&lx_vm(), json!({"add_disks": [{"size": 1}], "remove_disks": ["/x"]}));
    assert!(plan.changed.is_empty());
    assert!(plan.warnings[0].message.contains("disks is not valid for brand lx"), "{:?}", plan.warnings);
    assert_eq!(plan.warnings[1].property, "remove_disks");
}

#[test]
fn bhyve_disks_grow_but_shrink_only_when_asked() {
    let vm = created(json!({"brand": "bhyve", "uuid": VM,
        "disks": [{"size": 10240, "path": "/dev/zvol/disk0", "nocreate": true}]}));
    let plan = updated(&vm, json!({"update_disks": [{"path": "/dev/zvol/disk0", "size": 20480}]}));
    assert_eq!(plan.vm["disks"][0]["size"], 20480);
    let e = update_refused(&vm, json!({"update_disks": [{"path": "/dev/zvol/disk0", "size": 1024}]}));
    assert_has(&e, "bad_values", "update_disks.0.size", "dangerous_allow_shrink");
    let plan = updated(
        &vm,
        json!({"update_disks": [{"path": "/dev/zvol/disk0", "size": 1024, "dangerous_allow_shrink": true}]}),
    );
    assert_eq!(plan.vm["disks"][0]["size"], 1024);
    assert!(plan.vm["disks"][0].get("dangerous_allow_shrink").is_none(), "never stored");
}

#[test]
fn update_of_an_instance_with_a_bad_brand_is_refused() {
    let mut vm = lx_vm();
    vm.insert("brand".into(), json!("joyent"));
    let e = validate_update(&vm, &json!({"alias": "x"})).unwrap_err();
    assert_eq!(e.bad_brand.as_deref(), Some("joyent"));
}

#[test]
fn validate_update_without_an_instance() {
    assert!(check_update_payload("lx", &json!({"alias": "x", "set_tags": {"a": 1}})).is_empty());
    assert!(check_update_payload("kvm", &json!({"update_disks": [{"path": "/dev/zvol/d", "compression": "lz4"}]}))
        .is_empty());
    let e = check_update_payload("lx", &json!({"max_physical_memory": 1024, "max_swap": 100, "vcpus": 1}));
    assert_has(&e, "bad_values", "max_swap", "≥ 256");
    assert_has(&e, "bad_properties", "vcpus", "not valid for brand lx");
    let e = check_update_payload("builder", &json!({}));
    assert_eq!(e.bad_brand.as_deref(), Some("builder"));
    assert!(e.reasons["brand"].contains("use brand lx"));
}

// ---- brands and names -------------------------------------------------------------

#[test]
fn brands() {
    assert_eq!("bhyve".parse::<Brand>(), Ok(Brand::Bhyve));
    assert_eq!(Brand::Kvm.vm_type(), "KVM");
    assert_eq!(Brand::Lx.vm_type(), "LX");
    assert_eq!(Brand::Bhyve.as_str(), "bhyve");
    assert!(Brand::Bhyve.is_hvm() && !Brand::Lx.is_hvm());
    assert_eq!("joyent".parse::<Brand>(), Err(BrandError::IllumosNative("joyent".into())));
    assert_eq!("LX".parse::<Brand>(), Err(BrandError::Unknown("LX".into())));
}

#[test]
fn property_names_for_the_cli() {
    for yes in [
        "uuid",
        "ram",
        "state",
        "type",
        "zonename",
        "max_physical_memory",
        "nics.0.ip",
        "nics.*.mac",
        "disks.1.size",
        "tags.role",
        "customer_metadata.user-script",
        "resolvers.0",
    ] {
        assert!(is_property(yes), "{yes}");
    }
    for no in ["bogus", "nics.0.bogus", "nics.x.ip", "alias.x", "tags.", "set_tags", "resolvers.a"] {
        assert!(!is_property(no), "{no}");
    }
}

#[test]
fn vnc_listens_where_asked() {
    assert_eq!(created(json!({"brand": "bhyve", "vnc_listen": "10.0.0.5"}))["vnc_listen"], "10.0.0.5");
    assert!(!created(json!({"brand": "kvm"})).contains_key("vnc_listen"), "loopback unless given");
    assert_eq!(refused(json!({"brand": "kvm", "vnc_listen": "anywhere"})).bad_values, ["vnc_listen"]);
}

#[test]
fn a_direct_kernel_boot_is_for_hardware_vms_only() {
    let vm = created(json!({"brand": "kvm", "boot_kernel": "/srv/vmlinuz", "boot_initrd": "/srv/initrd.img",
                            "boot_args": "console=ttyS0 quiet"}));
    assert_eq!(vm["boot_kernel"], "/srv/vmlinuz");
    assert_eq!(vm["boot_args"], "console=ttyS0 quiet");
    let e = refused(json!({"brand": "kvm", "boot_kernel": "vmlinuz"}));
    assert_eq!(e.bad_values, ["boot_kernel"], "a relative path");
    let e = lx_refused(json!({"boot_kernel": "/srv/vmlinuz"}));
    assert!(e.bad_properties.contains(&"boot_kernel".to_string()), "{e:?}");
}

fn lx_refused(extra: Value) -> ValidationErrors {
    let mut p = json!({"brand": "lx", "image_uuid": IMG});
    p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    crate::validate_create(&p).unwrap_err()
}

#[test]
fn a_gateway_must_be_inside_one_of_the_nics_subnets() {
    let e = refused(lx(json!({"nics": [
        {"nic_tag": "admin", "ips": ["10.0.0.5/24"], "gateways": ["10.0.1.1"]},
        {"nic_tag": "admin", "ip": "192.168.4.9", "netmask": "255.255.255.0", "gateway": "192.168.5.1"},
    ]})));
    assert_has(&e, "bad_values", "nics.0.gateways", "10.0.1.1 is outside every subnet of the nic's ips (10.0.0.5/24)");
    assert_has(&e, "bad_values", "nics.1.gateways", "192.168.5.1 is outside");
    // Inside, or learnt by DHCP / SLAAC: accepted.
    for nic in [
        json!({"nic_tag": "admin", "ips": ["10.0.0.5/24", "fd00::5/64"], "gateways": ["10.0.0.1", "fd00::1"]}),
        json!({"nic_tag": "admin", "ips": ["dhcp"], "gateways": ["10.9.9.1"]}),
        json!({"nic_tag": "admin", "ips": ["10.0.0.5/24", "addrconf"], "gateways": ["fe80::1"]}),
    ] {
        crate::accept_create(&lx(json!({"nics": [nic]}))).unwrap_or_else(|e| panic!("{nic} refused: {e:?}"));
    }
}

// ---- docker ----------------------------------------------------------------------

// VM.js (smartos-live src/vm/node_modules/VM.js, the docker branch of
// create/update) and src/vm/tests/test-docker.js: docker=true makes a
// docker:id, sets restart_init false and adds the docker namespace.
#[test]
fn docker_true_brings_smartos_s_defaults_and_checks_the_docker_keys() {
    let vm = created(lx(json!({"uuid": VM, "docker": true, "restart_init": true,
        "internal_metadata": {"docker:cmd": "[\"sleep\",\"3600\"]", "docker:user": "app"}})));
    assert_eq!(vm["restart_init"], false);
    assert_eq!(vm["internal_metadata_namespaces"], json!(["docker"]));
    let id = vm["internal_metadata"]["docker:id"].as_str().unwrap();
    assert!(id.len() == 64 && id.starts_with(&VM.replace('-', "")), "{id}");
    let e = refused(lx(json!({"docker": true, "internal_metadata": {"docker:cmd": "sleep 3600"}})));
    assert_has(&e, "bad_values", "internal_metadata.docker:cmd", "JSON array of strings");
    let e = refused(lx(json!({"internal_metadata": {"docker:env": "[\"A\"]", "docker:tty": "maybe"}})));
    assert_has(&e, "bad_values", "internal_metadata.docker:env", "NAME=value");
    assert_has(&e, "bad_values", "internal_metadata.docker:tty", "true or false");
    let e = refused(kvm(json!({"docker": true})));
    assert_has(&e, "bad_properties", "docker", "lx");

    // An update: a bad key it sets is refused; docker=true brings the defaults once.
    let plain = created(lx(json!({"uuid": VM})));
    let e = update_refused(&plain, json!({"set_internal_metadata": {"docker:user": "a:b:c"}}));
    assert_has(&e, "bad_values", "internal_metadata.docker:user", "user:group");
    let plan = updated(&plain, json!({"docker": true}));
    assert_eq!(plan.vm["restart_init"], false);
    let id = plan.vm["internal_metadata"]["docker:id"].clone();
    assert!(id.is_string());
    let again = updated(&plan.vm, json!({"docker": false}));
    let back = updated(&again.vm, json!({"docker": true}));
    assert_eq!(back.vm["internal_metadata"]["docker:id"], id, "the docker:id stays, as test-docker.js checks");
}
