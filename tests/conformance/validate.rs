//! `validate`: what `vmadm validate create|update` and `vmadm create`
//! refuse and accept, and how they say so (test-validate-payload.js,
//! test-quota.js's invalid quota, test-create.js's refused creates).
//!
//! zonevisor refuses multicast MACs on a NIC (the kernel would refuse the
//! link at boot), which SmartOS's tests use (`01:02:03:...`): the cases
//! here give the same addresses with the multicast bit clear (`02:...`).

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// An image uuid that is installed nowhere (test-validate-payload.js's).
const MISSING_IMAGE: &str = "a1fac27c-85fb-11e2-ae84-276612e8990c";

/// A `vmadm list -H -o uuid` that must show no VM: a refused create left nothing.
#[track_caller]
fn assert_no_vms(h: &TestHost, what: &str) {
    let r = h.vmadm(&["list", "-H", "-o", "uuid"]);
    assert_eq!((r.code, r.stdout.trim()), (0, ""), "{what}: a refused create left a VM: {}", r.stderr);
}

// test-validate-payload.js: "bail on gorilla brand", "test nonexistent
// action", "test valid property wrong action", "minimal joyent payload",
// "set update nics good fails on create", "set update nics good succeeds
// on update"; vmadm.js's validate usage errors.
#[test]
fn validate_brand_action_and_usage() {
    let Some((h, img)) = host() else { return };

    let r = validate(&h, "create", None, &json!({"brand": "gorilla", "hello": "world"}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(error_object(&r)["bad_brand"], "gorilla", "{}", r.stderr);
    // Without a brand: SmartOS's CLI reports a bad brand ("undefined"),
    // its library a missing one; either says what is wrong.
    let r = validate(&h, "create", None, &json!({"image_uuid": img}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    let errors = error_object(&r);
    assert!(
        errors.get("bad_brand").is_some() || names(&errors, "missing_properties").contains(&"brand".to_string()),
        "no brand: {errors}"
    );

    // zonevisor: the illumos-native brands are refused with an error that
    // names lx (SmartOS runs them).
    for brand in ["joyent", "joyent-minimal", "builder"] {
        let payload = json!({"brand": brand, "image_uuid": img});
        let r = validate(&h, "create", None, &payload);
        assert_eq!(r.code, 1, "validate {brand}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("lx"), "validate {brand} should name lx: {}", r.stderr);
        let r = h.create(&payload);
        assert_eq!(r.code, 1, "create {brand}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains("lx"), "create {brand} should name lx: {}", r.stderr);
    }
    assert_no_vms(&h, "illumos brands");

    // No property is valid for an action that does not exist.
    let r = validate(&h, "detonate", None, &json!({"brand": "lx", "hello": "world", "goodbye": "world"}));
    for prop in ["hello", "goodbye"] {
        assert_refused(&r, "bad_properties", prop, "validate detonate");
    }

    // uuid may be given to create, never to update.
    let r = validate(&h, "update", Some("lx"), &json!({"uuid": "doogle", "alias": "foo"}));
    let errors = assert_refused(&r, "bad_properties", "uuid", "update with uuid");
    assert_eq!(names(&errors, "bad_properties"), ["uuid"], "uuid is the only bad property: {errors}");
    // A refusal carries SmartOS's three arrays, empty or not.
    for key in ["bad_values", "bad_properties", "missing_properties"] {
        assert!(errors[key].is_array(), "{key} is not an array in {errors}");
    }

    assert_valid(&validate(&h, "create", None, &json!({"brand": "lx", "image_uuid": img})), "create", "lx", "minimal");

    let nic = json!({"update_nics": [{"mac": "02:02:03:0a:0b:0c", "nic_tag": "external"}]});
    let mut on_create = nic.clone();
    on_create["brand"] = json!("lx");
    on_create["image_uuid"] = json!(img);
    assert_refused(&validate(&h, "create", None, &on_create), "bad_properties", "update_nics", "update_nics on create");
    assert_valid(&validate(&h, "update", Some("lx"), &nic), "update", "lx", "update_nics on update");

    // An image is required to create a zone. (zonevisor: an lx zone does
    // not need SmartOS's kernel_version, which is its emulated kernel.)
    let r = validate(&h, "create", None, &json!({"brand": "lx"}));
    assert_refused(&r, "missing_properties", "image_uuid", "no image_uuid");

    // vmadm.js: an action is required, and update needs a brand.
    for args in [&["validate"][..], &["validate", "update"][..]] {
        let r = h.cli("vmadm", args, Some("{}"));
        assert_eq!(r.code, 2, "vmadm {args:?} is a usage error: {} {}", r.stdout, r.stderr);
    }
}

// test-validate-payload.js: "set invalid autoboot parameter", "set
// non-string alias", "set invalid max_swap", "set non-integer cpu_cap",
// "set non-existent zpool", "set bad customer metadata", "set bad array
// fs_allowed", "set bad object fs_allowed", "set mtu too low", "set mtu
// too high", "invalid mtu, fractional value", "invalid mtu, string",
// "invalid mtu, object", "set bad nic obj", "set bad nic string", "create
// OS VM with non-existent image_uuid"; test-quota.js "invalid type of quota".
#[test]
fn validate_bad_values_are_refused_by_validate_and_create() {
    let Some((h, img)) = host() else { return };
    let mtu = |v: Value| json!([{"nic_tag": "admin", "ip": "dhcp", "mtu": v}]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("autoboot", json!("aardvark"), "autoboot"),
        ("alias", json!(42), "alias"),
        ("max_swap", json!(128), "max_swap"),
        ("cpu_cap", json!("doogle"), "cpu_cap"),
        ("zpool", json!("doogle"), "zpool"),
        ("customer_metadata", json!({"hello": {"complicated": "world"}}), "customer_metadata"),
        ("fs_allowed", json!(["ufs,tmpfs,pcfs"]), "fs_allowed"),
        ("fs_allowed", json!({"hello": "world"}), "fs_allowed"),
        ("nics", mtu(json!(500)), "nics.*.mtu"),
        ("nics", mtu(json!(10000)), "nics.*.mtu"),
        ("nics", mtu(json!(1500.3)), "nics.*.mtu"),
        ("nics", mtu(json!("Ah Elbereth, Gilthoniel!")), "nics.*.mtu"),
        ("nics", mtu(json!({"hello": "world"})), "nics.*.mtu"),
        ("nics", json!({}), "nics"),
        ("nics", json!("[{'nic_tag': 'admin', 'ip': 'dhcp'}]"), "nics"),
        ("image_uuid", json!(MISSING_IMAGE), "image_uuid"),
        ("quota", json!("none"), "quota"),
    ];
    let mut problems = Vec::new();
    for (prop, value, bad) in cases {
        let mut payload = lx(&img, json!({"autoboot": false}));
        payload[prop] = value.clone();
        if let Some(p) = refusal_problem(&validate(&h, "create", None, &payload), "bad_values", bad) {
            problems.push(format!("validate {prop}={value}: {p}"));
        }
        let r = h.create(&payload);
        if r.code != 1 || !r.stderr.contains(bad) {
            problems.push(format!(
                "create {prop}={value}: exit {} (want 1 naming {bad} on stderr): {:?}",
                r.code, r.stderr
            ));
        }
    }
    assert_no_problems(problems, "bad values accepted");
    assert_no_vms(&h, "bad values");
}

// test-validate-payload.js: "set zones zpool", "set fs_allowed (string)",
// "set fs_allowed (array)", "set good customer metadata", "set good array
// fs_allowed", "set good nic list", "valid mtu, low", "valid mtu, mid",
// "valid mtu, high", "valid mtu, string", "typical joyent smartdc_role
// create payload", "all options on joyent create payload".
#[test]
fn validate_good_payloads_are_valid() {
    let Some((h, img)) = host() else { return };
    let nic = |mtu: Option<Value>| {
        let mut n = json!({"nic_tag": "admin", "ip": "dhcp"});
        if let Some(m) = mtu {
            n["mtu"] = m;
        }
        json!([n])
    };
    let good: Vec<(&str, Value)> = vec![
        ("zpool", json!("zones")),
        ("fs_allowed", json!("ufs,pcfs,tmpfs")),
        ("fs_allowed", json!(["ufs", "pcfs", "tmpfs"])),
        ("customer_metadata", json!({"hello": "world", "these keys should be valid": true, "how about a number?": 42})),
        ("nics", nic(None)),
        ("nics", nic(Some(json!(576)))),
        ("nics", nic(Some(json!(4242)))),
        ("nics", nic(Some(json!(9000)))),
        ("nics", nic(Some(json!("2323")))),
    ];
    let problems: Vec<String> = good
        .into_iter()
        .filter_map(|(prop, value)| {
            let r = validate(&h, "create", None, &lx(&img, json!({ prop: value })));
            valid_problem(&r, "create", "lx").map(|p| format!("{prop}={value}: {p}"))
        })
        .collect();
    assert_no_problems(problems, "good values refused");

    // A provisioner's payload with two properties vmadm does not know
    // (dataset_name, nics.*.physical): only those are reported.
    let uuid = "91273098-cc0a-4fdd-9e6d-8f7496f3db80";
    let typical = lx(
        &img,
        json!({
            "alias": "zapi0", "autoboot": true,
            "tags": {"smartdc_role": "zapi", "smartdc_type": "core"},
            "zfs_storage_pool_name": "zones", "dataset_name": "smartos-1.6.3",
            "cpu_shares": 64, "cpu_cap": 100, "zfs_io_priority": 10, "max_lwps": 1000,
            "max_physical_memory": 64, "max_locked_memory": 64, "max_swap": 256, "quota": 10,
            "internal_metadata": {"package_version": "1.0.0", "package_name": "sdc_64"},
            "uuid": uuid, "owner_uuid": "930896af-bf8c-48d4-885c-6573a94b1853",
            "customer_metadata": {
                "assets-ip": "10.99.99.9", "sdc-datacenter-name": "coal",
                "sdc-datacenter-headnode-id": "0", "user-script": "$!/bin/bash",
            },
            "nics": [{
                "ip": "10.99.99.19", "netmask": "255.255.255.0", "gateway": "10.99.99.7",
                "nic_tag": "admin", "vlan_id": 0, "primary": true, "mac": "c2:de:e7:ec:99:68",
                "physical": "net0",
            }],
            "zonename": uuid, "zpool": "zones", "dns_domain": "local", "tmpfs": 64,
            "limit_priv": ["default"], "billing_id": "01b2c898-945f-11e1-a523-af1afbe22822",
        }),
    );
    let r = validate(&h, "create", None, &typical);
    for prop in ["dataset_name", "nics.*.physical"] {
        assert_refused(&r, "bad_properties", prop, "typical smartdc payload");
    }
    assert_eq!(names(&error_object(&r), "bad_values"), Vec::<String>::new(), "no bad values: {}", r.stderr);

    // Every option a zone takes, booleans given as strings included.
    let all = lx(
        &img,
        json!({
            "alias": "maximumpower", "autoboot": "true",
            "billing_id": "0445e934-a736-11e1-921c-df8fa4e4f3b6",
            "cpu_cap": 800, "cpu_shares": 20,
            "customer_metadata": {"fancy machine": "with all options"},
            "delegate_dataset": "true", "do_not_inventory": "true", "dns_domain": "joyent.com",
            "filesystems": [{"type": "lofs", "source": "/var/tmp", "target": "/gztmp", "options": ["ro", "nodevices"]}],
            "fs_allowed": ["ufs", "tmpfs", "pcfs"], "hostname": "maximumpower",
            // zonevisor differs: a static ip needs its netmask at validate
            // already (SmartOS's create refuses it; its validate does not),
            // and zonename is the uuid, never given (see README).
            "internal_metadata": {"fancy internal metadata": "with some options too"},
            "limit_priv": ["proc_info", "-proc_session"],
            "max_locked_memory": 600, "max_lwps": 1800, "max_physical_memory": 800, "max_swap": 256,
            "nics": [{
                "blocked_outgoing_ports": [1, 2, 3], "dhcp_server": true, "gateway": "10.88.88.2",
                "interface": "net0", "ip": "10.88.88.200", "netmask": "255.255.255.0",
                "nic_tag": "external", "primary": true,
                "vlan_id": 400, "mtu": 1500,
            }],
            "owner_uuid": "9258cc86-a737-11e1-995c-bbd52ce4e9c1",
            "package_name": "crazypackage", "package_version": "XP", "quota": 10000,
            "resolvers": ["8.8.8.8", "8.8.4.4"], "tags": {"spoon_tag": "bork", "fork_tag": "bork"},
            "tmpfs": 1024, "uuid": "e6b34a72-a737-11e1-9b5d-1739e973d7b5",
            "zfs_data_compression": "gzip-3", "zfs_data_recsize": 16384, "zfs_io_priority": 100,
            "zfs_root_compression": "off", "zfs_root_recsize": 8192, "zpool": "zones",
        }),
    );
    assert_valid(&validate(&h, "create", None, &all), "create", "lx", "all options");
}

// vmadm(8)/VM.js: create and update drop what the action does not take
// (unknown properties, update-only ones, read-only runtime ones) with a
// warning that names each, and succeed; validate reports them.
#[test]
fn validate_create_drops_what_it_does_not_take_with_a_warning() {
    let Some((h, img)) = host() else { return };
    let dropped = json!({
        "hello": "world",
        "update_nics": [{"mac": "02:02:03:0a:0b:0c", "nic_tag": "external"}],
        "state": "running",
        "zonepath": "/zones/elsewhere",
    });
    let payload = lx(&img, json!({"autoboot": false, "alias": "dropped"}));
    let mut with = payload.clone();
    for (k, v) in dropped.as_object().unwrap() {
        with[k] = v.clone();
    }
    let r = validate(&h, "create", None, &with);
    for k in dropped.as_object().unwrap().keys() {
        assert_refused(&r, "bad_properties", k, "validate reports what create drops");
    }
    let r = h.create(&with);
    let uuid = created_uuid(&r);
    for k in dropped.as_object().unwrap().keys() {
        assert!(r.stderr.contains(k.as_str()), "create should warn about {k}: {}", r.stderr);
    }
    let vm = h.get(&uuid);
    assert!(vm.get("hello").is_none() && vm.get("update_nics").is_none(), "{vm}");
    assert_eq!(vm["state"], "stopped", "state is not taken from the payload: {vm}");
    assert_ne!(vm["zonepath"], "/zones/elsewhere", "{vm}");
    assert_eq!(vm["alias"], "dropped");
}

// test-validate-payload.js's kvm cases that need no installed disk image:
// "minimal kvm payload", "man page kvm add nic payload", "add disk with
// both size and image_uuid should fail", "kvm create with bad disk
// (image_uuid + size)", "kvm create with bad disk (image_uuid +
// block_size)", "add disk with just size should succeed", "kvm create with
// good disk (just size)", "create KVM VM with non-existent image_uuid",
// "add disk to KVM VM with non-existent image_uuid".
#[test]
fn validate_kvm_payloads() {
    let Some((h, _img)) = host() else { return };
    let nics = json!([{
        "nic_tag": "external", "model": "virtio", "ip": "10.88.88.51",
        "netmask": "255.255.255.0", "gateway": "10.88.88.2", "primary": true,
    }]);
    assert_valid(&validate(&h, "create", None, &json!({"brand": "kvm"})), "create", "kvm", "minimal kvm");
    let add_nic = json!({"add_nics": [{
        "interface": "net1", "nic_tag": "external", "mac": "b2:1e:ba:a5:6e:71",
        "ip": "10.2.121.71", "netmask": "255.255.0.0", "gateway": "10.2.121.1",
    }]});
    assert_valid(&validate(&h, "update", Some("kvm"), &add_nic), "update", "kvm", "add nic");
    let r = validate(
        &h,
        "update",
        Some("kvm"),
        &json!({"add_disks": [{"model": "virtio", "image_uuid": MISSING_IMAGE, "size": 10240}]}),
    );
    assert_refused(&r, "bad_properties", "add_disks.0.size", "add disk with image_uuid and size");
    let kvm = |disk: Value| json!({"brand": "kvm", "vcpus": 1, "ram": 256, "disks": [disk], "nics": nics.clone()});
    let r = validate(
        &h,
        "create",
        None,
        &kvm(
            json!({"boot": true, "model": "virtio", "image_uuid": MISSING_IMAGE, "image_name": "ubuntu", "size": 10240}),
        ),
    );
    assert_refused(&r, "bad_properties", "disks.0.size", "disk with image_uuid and size");
    let r = validate(
        &h,
        "create",
        None,
        &kvm(
            json!({"boot": true, "model": "virtio", "image_uuid": MISSING_IMAGE, "image_size": 10240, "block_size": 8192}),
        ),
    );
    assert_refused(&r, "bad_properties", "disks.0.block_size", "disk with image_uuid and block_size");
    let r = validate(&h, "update", Some("kvm"), &json!({"add_disks": [{"model": "virtio", "size": 5120}]}));
    assert_valid(&r, "update", "kvm", "add disk with just size");
    let r = validate(&h, "create", None, &kvm(json!({"boot": true, "model": "virtio", "size": 5120})));
    assert_valid(&r, "create", "kvm", "disk with just size");
    let r = validate(
        &h,
        "create",
        None,
        &json!({"brand": "kvm", "ram": 256, "disks": [{"image_uuid": MISSING_IMAGE, "image_size": 5120, "model": "virtio"}]}),
    );
    assert_refused(&r, "bad_values", "disks.0.image_uuid", "kvm disk image not installed");
    let r = validate(
        &h,
        "update",
        Some("kvm"),
        &json!({"add_disks": [{"image_uuid": MISSING_IMAGE, "image_size": 5120, "model": "virtio"}]}),
    );
    assert_refused(&r, "bad_values", "add_disks.0.image_uuid", "added disk image not installed");
}

/// Installs a small zvol image (a raw disk of `mib` MiB) and returns its uuid.
fn install_zvol_image(h: &TestHost, mib: u64) -> String {
    let uuid = "5a6d2f7e-3c1b-4f0e-9d8a-7b6c5d4e3f21";
    let file = h.dir.path().join("disk.raw");
    std::fs::write(&file, vec![0u8; (mib << 20) as usize]).unwrap();
    let out = Command::new("sha1sum").arg(&file).output().expect("sha1sum");
    let sha1 = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    let manifest = json!({
        "v": 2, "uuid": uuid, "owner": ZERO_UUID, "name": "tiny-disk", "version": "1.0.0",
        "state": "active", "disabled": false, "public": true, "published_at": "2026-01-01T00:00:00.000Z",
        "type": "zvol", "os": "linux", "image_size": mib,
        "files": [{"sha1": sha1, "size": mib << 20, "compression": "none"}],
        "requirements": {}, "tags": {},
    });
    let path = h.dir.path().join("disk.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    h.imgadm(&["install", "-m", path.to_str().unwrap(), "-f", file.to_str().unwrap()]).ok();
    uuid.to_string()
}

// test-validate-payload.js's kvm cases against an installed disk image:
// "man page kvm create payload", "add disk with both image_size and
// image_uuid should succeed", "kvm create with good disk (image_uuid +
// image_size)"; test-create.js "wrong image_uuid type (KVM for OS VM)".
#[test]
fn validate_kvm_payloads_against_an_installed_disk_image() {
    let Some((h, img)) = host() else { return };
    let disk = install_zvol_image(&h, 8);
    let payload = json!({
        "brand": "kvm", "vcpus": 1, "ram": 256,
        "disks": [{"boot": true, "model": "virtio", "image_uuid": disk, "image_name": "tiny-disk", "image_size": 8}],
        "nics": [{
            "nic_tag": "external", "model": "virtio", "ip": "10.88.88.51",
            "netmask": "255.255.255.0", "gateway": "10.88.88.2", "primary": true,
        }],
    });
    assert_valid(&validate(&h, "create", None, &payload), "create", "kvm", "man page kvm payload");
    let add = json!({"add_disks": [{"model": "virtio", "image_uuid": disk, "image_size": 8}]});
    assert_valid(&validate(&h, "update", Some("kvm"), &add), "update", "kvm", "add disk from an image");
    // A zone cannot be cloned from a disk image, nor a disk from a zone image.
    let r = validate(&h, "create", None, &lx(&disk, json!({})));
    assert_refused(&r, "bad_values", "image_uuid", "lx zone from a zvol image");
    let mut wrong = payload.clone();
    wrong["disks"][0]["image_uuid"] = json!(img);
    assert_refused(&validate(&h, "create", None, &wrong), "bad_values", "disks.0.image_uuid", "disk from a zone image");
}
