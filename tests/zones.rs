//! Zones end to end: the real daemon, pool, kernel and CLI.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn ns_differs(pid: i64, ns: &str) -> bool {
    let mine = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
    mine != theirs
}

#[test]
fn create_runs_init_as_pid_1_in_its_own_namespaces() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({
        "brand": "lx", "alias": "web1", "hostname": "web1", "image_uuid": img,
        "max_physical_memory": 128, "quota": 1, "resolvers": ["192.0.2.53"],
    }));
    let vm = h.get(&uuid);
    assert_eq!(vm["state"], "running", "{vm}");
    assert!(vm.get("type").is_none(), "type is for list and lookup, as in SmartOS: {vm}");
    assert_eq!(vm["alias"], "web1");
    let pid = vm["pid"].as_i64().expect("a running zone has a pid");
    assert!(alive(pid));
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        assert!(ns_differs(pid, ns), "zone init shares the host's {ns} namespace");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "init is not PID 1 in its namespace: {nspid}");
    // busybox init renames itself to "init".
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).trim_end_matches('\0').ends_with("init"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    // The hostname inside the zone, and the files written into it.
    let r = h.cli("zlogin", &[&uuid, "hostname"], None);
    assert_eq!(r.ok().trim(), "web1");
    let r = h.cli("zlogin", &[&uuid, "cat", "/etc/hostname", "/etc/resolv.conf"], None);
    assert!(r.ok().contains("web1") && r.stdout.contains("nameserver 192.0.2.53"), "{}", r.stdout);
    // The zone sees only its own processes.
    // (zlogin joins its words and hands them to the zone's shell, as SmartOS does.)
    let r = h.cli("zlogin", &[&uuid, "ls /proc | grep -c '^[0-9]'"], None);
    let n: u32 = r.ok().trim().parse().unwrap();
    assert!((1..10).contains(&n), "the zone sees {n} processes");
    // A pipeline ends when its reader does: SIGPIPE is not ignored in the zone.
    let r = h.cli("zlogin", &[&uuid, "grep SigIgn /proc/self/status"], None);
    let ignored = u64::from_str_radix(r.ok().split_whitespace().last().unwrap(), 16).unwrap();
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is ignored in the zone: {}", r.stdout);
    // zlogin passes the exit status through.
    assert_eq!(h.cli("zlogin", &[&uuid, "exit 7"], None).code, 7);
    // /tmp is a tmpfs sized by `tmpfs` (default: max_physical_memory).
    let r = h.cli("zlogin", &[&uuid, "grep ' /tmp ' /proc/mounts"], None);
    assert!(r.ok().contains("tmpfs") && r.stdout.contains("size=131072k"), "{}", r.stdout);
}

#[test]
fn stop_start_reboot_kill_delete() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "life", "image_uuid": img, "restart_init": false}));
    let pid1 = h.get(&uuid)["pid"].as_i64().unwrap();

    // Graceful stop: busybox init runs its shutdown and halts.
    assert_eq!(h.vmadm(&["stop", &uuid]).stderr.trim(), format!("Successfully completed stop for VM {uuid}"));
    let vm = h.get(&uuid);
    assert_eq!(vm["state"], "stopped");
    assert!(vm.get("pid").is_none(), "a stopped zone has no pid: {vm}");
    assert_eq!(vm["autoboot"], false, "vmadm stop clears autoboot as SmartOS does");
    assert!(!alive(pid1));
    assert_eq!(h.vmadm(&["stop", &uuid]).code, 0, "stopping a stopped zone is not an error, as on SmartOS");

    assert_eq!(h.vmadm(&["start", &uuid]).stderr.trim(), format!("Successfully started VM {uuid}"));
    let vm = h.get(&uuid);
    assert_eq!((vm["state"].as_str(), vm["autoboot"].as_bool()), (Some("running"), Some(true)));
    let pid2 = vm["pid"].as_i64().unwrap();
    assert_ne!(pid1, pid2);

    h.vmadm(&["reboot", &uuid]).ok();
    let pid3 = h.wait_state(&uuid, "running", Duration::from_secs(30))["pid"].as_i64().unwrap();
    assert_ne!(pid2, pid3, "reboot starts a new init");
    assert!(!alive(pid2));

    // Forced stop, then start, then kill init with SIGKILL: the zone is down.
    h.vmadm(&["stop", "-F", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "stopped");
    h.vmadm(&["start", &uuid]).ok();
    h.vmadm(&["kill", "-s", "KILL", &uuid]).ok();
    let vm = h.wait_state(&uuid, "stopped", Duration::from_secs(20));
    assert_eq!(vm["exit_status"], -9, "SmartOS: the negated signal: {vm}");
    assert_eq!(vm["exit_reason"], "init was killed by signal 9", "{vm}");

    h.vmadm(&["start", &uuid]).ok();
    assert_eq!(h.vmadm(&["delete", &uuid]).stderr.trim(), format!("Successfully deleted VM {uuid}"));
    assert_eq!(h.vmadm(&["get", &uuid]).code, 1);
    assert!(!h.pool().join(&uuid).exists(), "the dataset is gone");
    assert!(pids_mentioning(&uuid).is_empty(), "no process of the zone is left");
}

#[test]
fn update_tags_metadata_and_limits() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": "upd", "image_uuid": img, "tags": {"a": "1"}}));
    h.cli("vmadm", &["update", &uuid], Some(r#"{"set_tags": {"role": "web", "n": 3}, "remove_tags": ["a"]}"#)).ok();
    h.cli("vmadm", &["update", &uuid], Some(r#"{"set_customer_metadata": {"user-script": "echo hi"}}"#)).ok();
    h.cli("vmadm", &["update", &uuid], Some(r#"{"set_internal_metadata": {"op:x": "y"}}"#)).ok();
    h.vmadm(&["update", &uuid, "alias=renamed", "max_physical_memory=512", "max_swap=1024"]).ok();
    let vm = h.get(&uuid);
    assert_eq!(vm["tags"], json!({"role": "web", "n": 3}));
    assert_eq!(vm["customer_metadata"], json!({"user-script": "echo hi"}));
    assert_eq!(vm["internal_metadata"], json!({"op:x": "y"}));
    assert_eq!(vm["alias"], "renamed");
    assert_eq!(vm["max_physical_memory"], 512);
    // The running zone's cgroup got the new cap at once.
    let (v1, v2) = (
        format!("/sys/fs/cgroup/memory/{}/{uuid}/memory.limit_in_bytes", h.cgroup_parent),
        format!("/sys/fs/cgroup/{}/{uuid}/memory.max", h.cgroup_parent),
    );
    let limit =
        std::fs::read_to_string(&v1).or_else(|_| std::fs::read_to_string(&v2)).expect("the zone's memory cgroup");
    assert_eq!(limit.trim(), (512u64 << 20).to_string());
    // max_locked_memory is init's RLIMIT_MEMLOCK, changed live too.
    h.vmadm(&["update", &uuid, "max_locked_memory=4"]).ok();
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let memlock = limits.lines().find(|l| l.starts_with("Max locked memory")).unwrap();
    assert_eq!(memlock.split_whitespace().nth(3), Some("4194304"), "{memlock}");
    h.cli("vmadm", &["update", &uuid], Some(r#"{"remove_customer_metadata": ["user-script"]}"#)).ok();
    assert_eq!(h.get(&uuid)["customer_metadata"], json!({}));
    // A bad update changes nothing.
    let r = h.vmadm(&["update", &uuid, "max_swap=100"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("max_swap"), "{}", r.stderr);
    assert_eq!(h.get(&uuid)["max_swap"], 1024);
    // What cannot change is dropped with a warning, as SmartOS drops it.
    let r = h.vmadm(&["update", &uuid, "brand=kvm"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Warning: invalid update property brand"), "{}", r.stderr);
    assert_eq!(h.get(&uuid)["brand"], "lx");
}

#[test]
fn quota_stops_writes_at_the_limit() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "quota": 1}));
    let r = h.cli(
        "zlogin",
        &[&uuid, "dd if=/dev/zero of=/big bs=1M count=1600 conv=fsync 2>&1; echo dd=$?; sync; ls -l /big"],
        None,
    );
    assert!(!r.stdout.contains("dd=0"), "writing 1.6 GiB into a 1 GiB quota must fail: {}", r.stdout);
    assert!(r.stdout.contains("quota") || r.stdout.contains("space"), "{}", r.stdout);
    let size: u64 =
        r.stdout.lines().last().and_then(|l| l.split_whitespace().nth(4)).and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(size <= 1100 << 20, "wrote {size} bytes past a 1 GiB quota");
    assert!(size >= 700 << 20, "quota stopped writes far too early ({size} bytes)");
    // Raising the quota live lets writes go on.
    h.vmadm(&["update", &uuid, "quota=3"]).ok();
    let r = h.cli("zlogin", &[&uuid, "dd if=/dev/zero of=/big2 bs=1M count=500 conv=fsync 2>&1"], None);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn list_and_lookup_filter_and_sort() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let mut ids = Vec::new();
    for (alias, ram, role) in
        [("alpha", 512, "web"), ("bravo", 256, "db"), ("charlie", 1024, "web"), ("delta", 128, "cache")]
    {
        ids.push(h.create_ok(&json!({
            "brand": "lx", "alias": alias, "image_uuid": img, "autoboot": false,
            "max_physical_memory": ram, "tags": {"role": role}, "customer_metadata": {"owner": alias},
        })));
    }
    let out = h.vmadm(&["list"]).ok().to_string();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["UUID", "TYPE", "RAM", "STATE", "ALIAS"]);
    let aliases: Vec<&str> = lines.map(|l| l.split_whitespace().last().unwrap()).collect();
    assert_eq!(aliases, ["delta", "bravo", "alpha", "charlie"], "default sort is ram,uuid");
    let out = h.vmadm(&["list", "-H", "-o", "alias,ram", "-s", "-ram"]).ok().to_string();
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["charlie", "1024"]);
    assert_eq!(rows[3], ["delta", "128"]);
    let out = h.vmadm(&["list", "-p", "-o", "alias,state", "tags.role=web"]).ok().to_string();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["alpha:stopped", "charlie:stopped"]);
    let out = h.vmadm(&["list", "-H", "-o", "alias", "alias=~^[bc]"]).ok().to_string();
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["bravo", "charlie"]);
    let one = h.vmadm(&["lookup", "-1", "customer_metadata.owner=delta"]).ok().trim().to_string();
    assert_eq!(one, ids[3]);
    let r = h.vmadm(&["lookup", "-1", "tags.role=web"]);
    assert_eq!(r.code, 1, "-1 with two matches is an error");
    let arr = h.vmadm(&["lookup", "-j", "max_physical_memory=256"]).json();
    assert_eq!(arr.as_array().unwrap().len(), 1);
    assert_eq!(arr[0]["alias"], "bravo");
    assert_eq!(h.vmadm(&["list", "-o", "nosuchfield"]).code, 1, "SmartOS: an error, not usage");
}

#[test]
fn bad_payloads_are_refused_with_smartos_errors_and_leave_nothing() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let base = json!({"brand": "lx", "image_uuid": img});
    let with = |k: &str, v: serde_json::Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    let cases = [
        (with("max_physical_memory", json!("lots")), "bad_values", "max_physical_memory"),
        (with("max_physical_memory", json!(1)), "bad_values", "max_physical_memory"),
        (with("max_physical_memory", json!(-5)), "bad_values", "max_physical_memory"),
        (with("uuid", json!("not-a-uuid")), "bad_values", "uuid"),
        (with("alias", json!("")), "bad_values", "alias"),
        (with("hostname", json!("bad_host!")), "bad_values", "hostname"),
        (with("max_swap", json!(128)), "bad_values", "max_swap"),
        (with("image_uuid", json!("00000000-1111-2222-3333-444444444444")), "bad_values", "image_uuid"),
        (json!({"image_uuid": img}), "missing_properties", "brand"),
        (json!({"brand": "lx"}), "missing_properties", "image_uuid"),
    ];
    for (payload, key, prop) in &cases {
        // `validate` prints SmartOS's errors object (on stderr, as SmartOS).
        let r = h.cli("vmadm", &["validate", "create"], Some(&payload.to_string()));
        assert_eq!(r.code, 1, "validate {payload} should fail: {} {}", r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stderr).unwrap_or_else(|e| panic!("{e}: {}", r.stderr));
        let list = v[key].as_array().unwrap_or_else(|| panic!("validate {payload}: no {key} in {v}"));
        assert!(list.iter().any(|p| p == prop), "validate {payload}: {key} lacks {prop}: {v}");
        assert!(v["reasons"][prop].is_string(), "no reason for {prop}: {v}");
        // `create` fails with SmartOS's line naming it, then the reason.
        let r = h.create(payload);
        assert_eq!(r.code, 1, "create {payload} should fail: {} {}", r.stdout, r.stderr);
        let head = if *key == "bad_values" { "Invalid value(s) for: " } else { "Missing required properties: " };
        assert!(r.stderr.starts_with(&format!("vmadm: {head}")) && r.stderr.contains(prop), "{}", r.stderr);
        assert!(r.stderr.contains(&format!("\n  {prop}: ")), "the reason follows: {}", r.stderr);
    }
    // An unknown property fails validate but is dropped by create with a
    // warning, as SmartOS drops it.
    let r = h.cli("vmadm", &["validate", "create"], Some(&with("frobnicate", json!(1)).to_string()));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("\"bad_properties\"") && r.stderr.contains("frobnicate"), "{}", r.stderr);
    let r = h.create(&with("frobnicate", json!(1)));
    assert!(r.stderr.contains("Warning: invalid create property frobnicate"), "{}", r.stderr);
    let dropped = r.stderr.lines().last().and_then(|l| l.strip_prefix("Successfully created VM ")).unwrap().to_string();
    assert!(h.get(&dropped).get("frobnicate").is_none());
    h.vmadm(&["delete", &dropped]).ok();
    let r = h.cli("vmadm", &["create"], Some(r#"{"brand": "joyent", "image_uuid": "x"}"#));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Invalid brand while validating payload: \"joyent\""), "{}", r.stderr);
    assert!(r.stderr.contains("lx"), "the refusal names lx: {}", r.stderr);
    // A duplicate uuid.
    let uuid = h.create_ok(&with("autoboot", json!(false)));
    let r = h.create(&with("uuid", json!(uuid)));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Invalid value(s) for: uuid"), "{}", r.stderr);
    // Not JSON at all.
    let r = h.cli("vmadm", &["create"], Some("{nope"));
    assert_eq!(r.code, 1);
    // kvm and bhyve payloads validate.
    let r = h.cli(
        "vmadm",
        &["validate", "create"],
        Some(r#"{"brand": "kvm", "ram": 512, "disks": [{"size": 1024, "boot": true}]}"#),
    );
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    // Nothing was left behind by any refusal: one VM, one dataset besides the image.
    let list = h.vmadm(&["list", "-H", "-o", "uuid"]).ok().to_string();
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), [uuid.as_str()]);
    let mut datasets: Vec<String> = std::fs::read_dir(h.pool())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config")
        .collect();
    datasets.sort();
    let mut want = vec![img.clone(), uuid.clone()];
    want.sort();
    assert_eq!(datasets, want);
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = "5c1a0e4e-1d2b-4c3d-8e4f-50617283a4b5";
    let r = h.create(&json!({"brand": "lx", "uuid": uuid, "image_uuid": img, "init_name": "/sbin/no-such-init"}));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("exec init") && r.stderr.contains("/sbin/no-such-init"),
        "the error names the step: {}",
        r.stderr
    );
    assert_eq!(h.vmadm(&["get", uuid]).code, 1, "no row");
    assert!(!h.pool().join(uuid).exists(), "no dataset");
    assert!(!mounted(uuid), "no mount");
    assert!(pids_mentioning(uuid).is_empty(), "no process");
    for hier in ["pids", "memory", "cpu", "freezer", "systemd", "unified", ""] {
        let p = std::path::Path::new("/sys/fs/cgroup").join(hier).join(&h.cgroup_parent).join(uuid);
        assert!(!p.exists(), "cgroup {} left behind", p.display());
    }
    assert!(!h.root.join("run/zones").join(uuid).join("monitor.sock").exists());
    // The same uuid can then be created for real.
    let r = h.create(&json!({"brand": "lx", "uuid": uuid, "image_uuid": img}));
    r.ok();
    assert_eq!(r.stderr.trim(), format!("Successfully created VM {uuid}"));
}

#[test]
fn images_install_list_get_delete() {
    let Some(h) = TestHost::new() else { return };
    let f = busybox();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&f.manifest).unwrap()).unwrap();
    // A checksum mismatch installs nothing.
    let bad = h.dir.path().join("bad.json");
    let mut m = manifest.clone();
    m["files"][0]["sha1"] = json!("0000000000000000000000000000000000000000");
    std::fs::write(&bad, m.to_string()).unwrap();
    let r = h.imgadm(&["install", "-m", bad.to_str().unwrap(), "-f", f.file.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("sha1"), "{}", r.stderr);
    assert!(!h.pool().join(&f.uuid).exists());
    // A manifest of a type zones cannot use.
    let mut m = manifest.clone();
    m["type"] = json!("zvol");
    std::fs::write(&bad, m.to_string()).unwrap();
    let r = h.imgadm(&["install", "-m", bad.to_str().unwrap(), "-f", f.file.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("type"), "{}", r.stderr);
    assert_eq!(h.imgadm(&["get", &f.uuid]).code, 3, "not installed");

    let img = h.install(f);
    let r = h.imgadm(&["install", "-m", f.manifest.to_str().unwrap(), "-f", f.file.to_str().unwrap()]);
    // SmartOS: an installed image is skipped, exit 0.
    assert_eq!(r.code, 0, "installing twice is a no-op: {}", r.stderr);
    assert!(r.stdout.contains("is already installed, skipping"), "{}", r.stdout);
    let r = h.imgadm(&["import", &img]);
    assert_eq!((r.code, r.stdout.contains("is already installed, skipping")), (0, true), "{}", r.stderr);
    let out = h.imgadm(&["list"]).ok().to_string();
    assert!(out.lines().next().unwrap().split_whitespace().eq(["UUID", "NAME", "VERSION", "OS", "TYPE", "PUB"]));
    assert!(out.contains(&img) && out.contains("lx-dataset"));
    let j = h.imgadm(&["list", "-j"]).json();
    assert_eq!(j[0]["manifest"]["uuid"], img.as_str());
    assert_eq!(h.imgadm(&["get", &img]).json()["manifest"]["name"], manifest["name"]);
    // The image is read-only on the pool.
    assert!(std::fs::write(h.pool().join(&img).join("root/etc/x"), "x").is_err());
    // In use: delete refused.
    let vm = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    let r = h.imgadm(&["delete", &img]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("has dependent clones") && r.stderr.contains(&vm), "{}", r.stderr);
    h.vmadm(&["delete", &vm]).ok();
    h.imgadm(&["delete", &img]).ok();
    assert!(!h.pool().join(&img).exists());
    assert_eq!(h.imgadm(&["get", &img]).code, 3);
}

#[test]
fn one_daemon_per_root_and_zones_survive_a_daemon_kill() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    // A second daemon on the same root is refused.
    let out = h.daemon_command().output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // kill -9 the daemon: the zone keeps running, and is re-adopted.
    h.kill_daemon();
    assert!(alive(pid));
    h.start_daemon();
    let vm = h.get(&uuid);
    assert_eq!((vm["state"].as_str(), vm["pid"].as_i64()), (Some("running"), Some(pid)));
    // A zone that ends while the daemon is away is found stopped.
    h.kill_daemon();
    let monitor: i32 = std::fs::read_to_string(h.root.join("run/zones").join(&uuid).join("monitor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(std::time::Instant::now() < deadline, "the zone outlived its monitor");
        std::thread::sleep(Duration::from_millis(20));
    }
    h.start_daemon();
    let vm = h.get(&uuid);
    assert_eq!(vm["state"], "stopped", "{vm}");
    assert!(vm.get("pid").is_none());
    h.vmadm(&["start", &uuid]).ok();
    h.vmadm(&["stop", "-F", &uuid]).ok();
}

#[test]
fn sysinfo_reports_the_host() {
    let Some(h) = TestHost::new() else { return };
    let s = h.cli("sysinfo", &[], None).json();
    for key in ["UUID", "Hostname", "CPU Type", "MiB of Memory", "Zpool", "HVM Accelerator", "Cgroup Version"] {
        assert!(s.get(key).is_some(), "sysinfo lacks {key}: {s}");
    }
    assert_eq!(s["Zpool"], "zones");
    assert_eq!(s["Zpool Backend"], "btrfs");
    // The state store's reserve: 1/32 of the 8 GiB pool, kept from the datasets.
    assert_eq!(s["Zpool Reserve in MiB"], 256);
    assert!(s["Zpool Free in GiB"].as_u64().is_some_and(|f| (6..8).contains(&f)), "{s}");
    assert!(s["HVM Accelerator"] == "kvm" || s["HVM Accelerator"] == "tcg");
    // The test pool is a loop file; the daemon puts its device on bfq where
    // the kernel has it, and governs zones' I/O by throttling elsewhere.
    let fair = s["Fair I/O"].as_str().unwrap_or_default();
    let bfq = std::fs::read_dir("/sys/block").unwrap().flatten().any(|d| {
        d.file_name().to_string_lossy().starts_with("loop")
            && std::fs::read_to_string(d.path().join("queue/scheduler")).is_ok_and(|s| s.contains("bfq"))
    });
    if bfq {
        assert!(fair.starts_with("bfq on /dev/loop"), "Fair I/O: {fair}");
    } else {
        assert!(fair.starts_with("governor on /dev/loop") && fair.contains("not bfq"), "Fair I/O: {fair}");
    }
}

#[test]
fn debian_zone_runs_its_own_init() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(debian());
    let uuid = h.create_ok(
        &json!({"brand": "lx", "alias": "deb", "hostname": "deb", "image_uuid": img, "max_physical_memory": 512}),
    );
    let vm = h.get(&uuid);
    let pid = vm["pid"].as_i64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.to_string_lossy().ends_with("/sbin/init"), "{}", exe.display());
    // sysvinit reaches its runlevel: `runlevel` answers from utmp.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = h.cli("zlogin", &[&uuid, "/sbin/runlevel"], None);
        if r.code == 0 && r.stdout.trim().ends_with('2') {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "runlevel: {} {}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(h.cli("zlogin", &[&uuid, "hostname"], None).ok().trim(), "deb");
    // A graceful stop runs Debian's shutdown.
    h.vmadm(&["stop", "-t", "60", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "stopped");
    assert!(!alive(pid));
}

#[test]
fn init_that_dies_is_restarted_when_restart_init_is_set() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let vm = h.get(&uuid);
    assert!(vm.get("restart_init").is_none(), "absent unless given, as in SmartOS: {vm}");
    assert_eq!(vm["init_restarts"], 0, "{vm}");
    let pid = vm["pid"].as_i64().unwrap();
    h.vmadm(&["kill", "-s", "KILL", &uuid]).ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let vm = h.get(&uuid);
        if vm["state"] == "running" && vm["pid"].as_i64().is_some_and(|p| p != pid) {
            assert_eq!(vm["init_restarts"], 1, "SmartOS counts the restart: {vm}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "init was not restarted: {vm}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A reboot starts the count again.
    h.vmadm(&["reboot", &uuid]).ok();
    assert_eq!(h.wait_state(&uuid, "running", Duration::from_secs(30))["init_restarts"], 0);
}

#[test]
fn lofs_filesystems_are_bind_mounted_and_ro_is_read_only() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let shared = h.dir.path().join("shared");
    let scratch = h.dir.path().join("scratch");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    // The zone's root is an unprivileged host uid (tests/security.rs): it
    // writes where that uid may.
    std::fs::set_permissions(&scratch, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::write(shared.join("hello"), "from the host\n").unwrap();
    let uuid = h.create_ok(&json!({
        "brand": "lx", "image_uuid": img,
        "filesystems": [
            {"type": "lofs", "source": shared, "target": "/data", "options": ["ro"]},
            {"type": "lofs", "source": scratch, "target": "/srv/scratch"},
        ],
    }));
    let r = h.cli("zlogin", &[&uuid, "cat /data/hello"], None);
    assert_eq!(r.ok(), "from the host\n");
    let r = h.cli("zlogin", &[&uuid, "echo x > /data/new"], None);
    assert_ne!(r.code, 0, "a ro filesystem took a write");
    assert!(!shared.join("new").exists());
    h.cli("zlogin", &[&uuid, "echo y > /srv/scratch/out"], None).ok();
    assert_eq!(std::fs::read_to_string(scratch.join("out")).unwrap(), "y\n");
    // A relative source is refused before anything is made.
    let r = h.create(&json!({"brand": "lx", "image_uuid": img,
        "filesystems": [{"type": "lofs", "source": "relative/dir", "target": "/x"}]}));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("Invalid value(s) for: filesystems.*.source"), "{}", r.stderr);
    assert!(r.stderr.contains("filesystems.0.source: must be an absolute path"), "{}", r.stderr);
}

/// The zone's monitor pid, from its pid file.
fn monitor_pid(h: &TestHost, uuid: &str) -> i64 {
    let file = h.root.join("run/zones").join(uuid).join("monitor.pid");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().parse().unwrap()
}

/// The pty index (`/dev/pts/N`) of the console master `monitor` holds.
fn console_pty(monitor: i64) -> u32 {
    let fds = std::fs::read_dir(format!("/proc/{monitor}/fd")).unwrap();
    let masters: Vec<u32> = fds
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().ends_with("/ptmx")))
        .filter_map(|e| {
            let info = std::fs::read_to_string(format!("/proc/{monitor}/fdinfo/{}", e.file_name().to_string_lossy()));
            info.ok()?.lines().find_map(|l| l.strip_prefix("tty-index:")?.trim().parse().ok())
        })
        .collect();
    assert_eq!(masters.len(), 1, "monitor {monitor} holds pty masters {masters:?}");
    masters[0]
}

/// The pty index of `pid`'s standard output (a `/dev/pts/N`).
fn stdout_pty(pid: i64) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(format!("/proc/{pid}/fd/1")).unwrap();
    // Unix 98 pty slaves: majors 136-143, 256 indexes each.
    let major = libc::major(m.rdev());
    let link = std::fs::read_link(format!("/proc/{pid}/fd/1"));
    assert!((136..144).contains(&major), "{pid}'s stdout is no pty slave: {link:?}");
    (major - 136) * 256 + libc::minor(m.rdev())
}

#[test]
fn three_zones_keep_their_pids_and_consoles_across_a_daemon_kill() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuids: Vec<String> =
        (0..3).map(|i| h.create_ok(&json!({"brand": "lx", "alias": format!("z{i}"), "image_uuid": img}))).collect();
    // Each zone's init writes to a pty whose master its monitor holds.
    let before: Vec<(i64, i64, u32)> = uuids
        .iter()
        .map(|u| {
            let (pid, monitor) = (h.get(u)["pid"].as_i64().unwrap(), monitor_pid(&h, u));
            let pty = console_pty(monitor);
            assert_eq!(stdout_pty(pid), pty, "{u}: init's console is not its monitor's pty");
            (pid, monitor, pty)
        })
        .collect();
    h.kill_daemon();
    h.start_daemon();
    for (u, (pid, monitor, pty)) in uuids.iter().zip(&before) {
        let vm = h.get(u);
        assert_eq!((vm["state"].as_str(), vm["pid"].as_i64()), (Some("running"), Some(*pid)), "{u}");
        // The same monitor, not a new one, still holds the same pty.
        assert_eq!(monitor_pid(&h, u), *monitor, "{u}: another monitor");
        assert!(alive(*monitor), "{u}: the monitor died");
        assert_eq!(console_pty(*monitor), *pty, "{u}: the monitor's console changed");
        // And serves it: what the zone writes to its console after the
        // restart reaches the log.
        let mark = format!("after-the-restart-{u}");
        h.cli("zlogin", &[u, &format!("echo {mark} > /dev/console")], None).ok();
        let log = h.root.join("run/zones").join(u).join("console.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(&mark) {
            assert!(std::time::Instant::now() < deadline, "{u}: {mark} did not reach {}", log.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(h.cli("zlogin", &[u, "echo alive"], None).ok(), "alive\n");
    }
}
