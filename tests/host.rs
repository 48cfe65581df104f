//! What a zone sees of its host, and what the host says of it: `df` and
//! `statfs(2)` in a zone show its `quota` (and follow `vmadm update`),
//! `tmpfs` resizes a running zone's `/tmp`, `exit_status` and
//! `exit_reason` say how an init that `restart_init` gave up on died
//! (a signal, the OOM killer), and `sysinfo`'s VM keys agree with what
//! `vmadm create` accepts.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;

/// Runs a shell command in the zone; stdout and stderr together, and the status.
fn zsh(h: &TestHost, uuid: &str, script: &str) -> (String, i32) {
    let r = h.cli("zlogin", &[uuid, &format!("{{ {script}; }} 2>&1")], None);
    (format!("{}{}", r.stdout, r.stderr), r.code)
}

/// `zsh` that must succeed.
#[track_caller]
fn zok(h: &TestHost, uuid: &str, script: &str) -> String {
    let (out, code) = zsh(h, uuid, script);
    assert_eq!(code, 0, "{script} in the zone: {out}");
    out
}

/// The zone's root on the host (its dataset's `root`).
fn zone_root(h: &TestHost, uuid: &str) -> PathBuf {
    Path::new(h.get(uuid)["zonepath"].as_str().unwrap()).join("root")
}

/// `df -P <path>` in the zone: (1K blocks, used, available).
#[track_caller]
fn df(h: &TestHost, uuid: &str, path: &str) -> (u64, u64, u64) {
    let out = zok(h, uuid, &format!("df -P {path}"));
    let line = out.lines().nth(1).unwrap_or_else(|| panic!("df -P {path}: {out}"));
    let f: Vec<u64> = line.split_whitespace().skip(1).take(3).map(|v| v.parse().unwrap()).collect();
    assert_eq!(f.len(), 3, "df -P {path}: {out}");
    (f[0], f[1], f[2])
}

/// Builds `tests/probes/<name>.c` into the test's directory.
fn probe(h: &TestHost, name: &str) -> Option<PathBuf> {
    let dir = h.dir.path().join("probes");
    std::fs::create_dir_all(&dir).unwrap();
    match build_probe(name, &dir) {
        Ok(()) => Some(dir.join(name)),
        Err(e) => {
            skip(&format!("cannot build the {name} probe: {e}"));
            None
        }
    }
}

/// Waits until the zone is stopped and returns its object.
#[track_caller]
fn stopped(h: &TestHost, uuid: &str) -> Value {
    h.wait_state(uuid, "stopped", Duration::from_secs(60))
}

/// A zone whose init is the `die` probe under `name`, with `restart_init`;
/// started, and stopped for good once `restart_init` gives up.
fn dying_zone(h: &TestHost, img: &str, die: &Path, name: &str, more: Value) -> (String, Value) {
    let mut p = json!({"brand": "lx", "image_uuid": img, "autoboot": false, "restart_init": true,
                       "init_name": format!("/sbin/{name}")});
    p.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    let uuid = h.create_ok(&p);
    let target = zone_root(h, &uuid).join("sbin").join(name);
    std::fs::copy(die, &target).unwrap();
    h.vmadm(&["start", &uuid]).ok();
    let vm = stopped(h, &uuid);
    (uuid, vm)
}

#[test]
fn restart_init_gives_up_saying_how_init_died() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let Some(die) = probe(&h, "die") else { return };

    // Killed by a signal, again and again.
    let (segv, vm) = dying_zone(&h, &img, &die, "die-segv", json!({}));
    assert_eq!(vm["exit_status"], -11, "SmartOS: the negated signal: {vm}");
    let reason = vm["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("giving up") && reason.contains("killed by signal 11"), "{vm}");

    // An exit status.
    let (_, vm) = dying_zone(&h, &img, &die, "die-exit", json!({}));
    assert_eq!(vm["exit_status"], 3, "{vm}");
    assert!(vm["exit_reason"].as_str().unwrap_or_default().contains("exited with status 3"), "{vm}");

    // The OOM killer: init allocates beyond max_physical_memory.
    let (oom, vm) = dying_zone(&h, &img, &die, "die-hog", json!({"max_physical_memory": 64}));
    assert_eq!(vm["exit_status"], -9, "{vm}");
    let reason = vm["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("giving up") && reason.contains("out-of-memory killer"), "{vm}");
    assert!(reason.contains("64 MiB"), "the limit it ran into: {vm}");

    // The daemon said so, as a warning naming the zone.
    let log = h.log();
    for (uuid, what) in [(&segv, "killed by signal 11"), (&oom, "out-of-memory")] {
        assert!(
            log.lines().any(|l| l.contains("WARN") && l.contains(uuid.as_str()) && l.contains(what)),
            "no warning for {uuid} ({what}) in the daemon's log:\n{log}"
        );
    }
}

#[test]
fn an_init_the_oom_killer_ends_says_so_without_restart_init() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let Some(die) = probe(&h, "die") else { return };
    let (_, vm) = dying_zone(&h, &img, &die, "die-hog", json!({"max_physical_memory": 64, "restart_init": false}));
    assert_eq!(vm["exit_status"], -9, "{vm}");
    let reason = vm["exit_reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("init was killed by the out-of-memory killer"), "{vm}");
    assert!(!reason.contains("giving up"), "{vm}");
}

#[test]
fn tmpfs_follows_vmadm_update_live_and_is_refused_below_what_tmp_holds() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "tmpfs": 64}));
    assert_eq!(df(&h, &uuid, "/tmp").0, 64 * 1024);
    let flags = || {
        let m = zok(&h, &uuid, "grep ' /tmp ' /proc/mounts");
        let opts = m.split_whitespace().nth(3).unwrap_or_default().to_string();
        let mut o: Vec<String> =
            opts.split(',').filter(|o| !o.starts_with("size=") && !o.starts_with("uid=")).map(String::from).collect();
        o.sort();
        o
    };
    let before = flags();
    assert!(before.iter().any(|o| o == "nosuid") && before.iter().any(|o| o == "nodev"), "{before:?}");

    // Grown live.
    h.vmadm(&["update", &uuid, "tmpfs=128"]).ok();
    assert_eq!(h.get(&uuid)["tmpfs"], 128);
    assert_eq!(df(&h, &uuid, "/tmp").0, 128 * 1024);
    assert_eq!(flags(), before, "only the size changed");

    // Below what /tmp holds: refused, naming tmpfs, nothing changed.
    zok(&h, &uuid, "dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>/dev/null");
    let r = h.vmadm(&["update", &uuid, "tmpfs=64"]);
    assert_ne!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("tmpfs") && said.contains("/tmp holds"), "{said}");
    assert_eq!(h.get(&uuid)["tmpfs"], 128);
    assert_eq!(df(&h, &uuid, "/tmp").0, 128 * 1024);

    // Shrunk live once there is room.
    zok(&h, &uuid, "rm /tmp/fill");
    h.vmadm(&["update", &uuid, "tmpfs=96"]).ok();
    assert_eq!(df(&h, &uuid, "/tmp").0, 96 * 1024);

    // To 0 (no tmpfs), as SmartOS: recorded now, /tmp left as it is until
    // the next boot, which a reboot in place is.
    h.vmadm(&["update", &uuid, "tmpfs=0"]).ok();
    assert_eq!(h.get(&uuid)["tmpfs"], 0);
    assert_eq!(df(&h, &uuid, "/tmp").0, 96 * 1024);
    h.vmadm(&["reboot", &uuid]).ok();
    assert!(!zok(&h, &uuid, "cat /proc/mounts").contains(" /tmp "), "no tmpfs on /tmp after the reboot");
    // And back from 0 at the next boot.
    h.vmadm(&["update", &uuid, "tmpfs=32"]).ok();
    assert!(!zok(&h, &uuid, "cat /proc/mounts").contains(" /tmp "));
    h.vmadm(&["reboot", &uuid]).ok();
    assert_eq!(df(&h, &uuid, "/tmp").0, 32 * 1024);
}

#[test]
fn sysinfo_says_which_vms_create_runs() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let info = h.cli("sysinfo", &[], None).json();
    let payloads = [
        ("lx", json!({"brand": "lx", "image_uuid": img, "autoboot": false}), None),
        ("kvm", json!({"brand": "kvm", "autoboot": false, "disks": [{"size": 8}]}), Some("VM Capable")),
        ("bhyve", json!({"brand": "bhyve", "autoboot": false, "disks": [{"size": 8}]}), Some("Bhyve Capable")),
    ];
    let mut hvm = false;
    for (brand, payload, key) in payloads {
        let valid = h.cli("vmadm", &["validate", "create"], Some(&payload.to_string()));
        assert_eq!(valid.code, 0, "{brand}: the payload is valid: {} {}", valid.stdout, valid.stderr);
        let r = h.create(&payload);
        let created = r.code == 0;
        if !created {
            assert!(format!("{}{}", r.stdout, r.stderr).contains("cannot run"), "{brand}: {} {}", r.stdout, r.stderr);
        }
        match key {
            Some(key) => {
                assert_eq!(info[key], created, "{brand}: create {} but sysinfo says {key} {}", created, info[key]);
                hvm |= created;
            }
            None => assert!(created, "{brand}: {} {}", r.stdout, r.stderr),
        }
    }
    assert_eq!(info["HVM API"], hvm, "{info}");
    if !hvm {
        assert_eq!(info["Bhyve Max Vcpus"], 0, "{info}");
    }
    // Where QEMU is installed (CI's hosts), both run.
    if in_ci() {
        assert!(hvm && info["VM Capable"] == true && info["Bhyve Capable"] == true, "{info}");
    }
    // How fast: the hardware's side and the accelerator chosen, with why.
    assert!(["vmx", "svm", "none"].contains(&info["CPU Virtualization"].as_str().unwrap_or("")), "{info}");
    assert!(["kvm", "tcg"].contains(&info["HVM Accelerator"].as_str().unwrap_or("")), "{info}");
    assert!(info["HVM Accelerator Reason"].as_str().is_some_and(|r| !r.is_empty()), "{info}");
}

/// The `key=value` fields of the statfs probe's line labelled `label`
/// (`ok` or `err` under `result`).
fn probe_line(out: &str, label: &str) -> HashMap<String, String> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no {label} line in: {out}"));
    let mut f: HashMap<String, String> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let result = line.split_whitespace().nth(1).unwrap_or_default();
    f.insert("result".into(), if result.starts_with("err=") { "err".into() } else { result.into() });
    f
}

fn num(f: &HashMap<String, String>, key: &str) -> u64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{key} in {f:?}"))
}

/// Total bytes of a probe answer.
fn total(f: &HashMap<String, String>) -> u64 {
    assert_eq!(f["result"], "ok", "{f:?}");
    num(f, "blocks") * num(f, "frsize")
}

/// The kernel's answer for `path` on the host: (type, total bytes).
fn host_statfs(path: &Path) -> (i64, u64) {
    let s = nix::sys::statfs::statfs(path).unwrap_or_else(|e| panic!("statfs {}: {e}", path.display()));
    (s.filesystem_type().0 as i64, s.blocks() * s.block_size() as u64)
}

/// A zone of the busybox image with the statfs probe at `/probes`.
fn statfs_zone(h: &TestHost, img: &str, probes: &Path, more: Value) -> String {
    let mut p = json!({"brand": "lx", "image_uuid": img,
                       "filesystems": [{"type": "lofs", "source": probes, "target": "/probes", "options": ["ro"]}]});
    p.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    h.create_ok(&p)
}

#[test]
fn df_in_a_zone_shows_its_quota_and_follows_vmadm_update() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let Some(probe) = probe(&h, "statfs") else { return };
    let probes = probe.parent().unwrap().to_path_buf();
    let uuid = statfs_zone(&h, &img, &probes, json!({"quota": 1, "tmpfs": 64}));
    let (size, used, avail) = df(&h, &uuid, "/");
    assert_eq!(size, GIB / 1024, "df -P / shows the quota");
    assert_eq!(used + avail, size);
    // busybox's stat -f: total blocks times their size.
    let stat_f = || {
        let st = zok(&h, &uuid, "stat -f -c '%b %S' /");
        st.split_whitespace().map(|v| v.parse::<u64>().unwrap()).product::<u64>()
    };
    assert_eq!(stat_f(), GIB, "stat -f /");

    // What the zone writes is used (btrfs charges it at its next commit: sync).
    zok(&h, &uuid, "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null && sync");
    let (size, used2, avail2) = df(&h, &uuid, "/");
    assert_eq!(size, GIB / 1024);
    assert!(used2 >= used + 64 * 1024 && used2 < used + 80 * 1024, "used {used} -> {used2} KiB after 64 MiB");
    assert_eq!(used2 + avail2, size);

    // Followed live.
    h.vmadm(&["update", &uuid, "quota=2"]).ok();
    let (size, used3, _) = df(&h, &uuid, "/");
    assert_eq!(size, 2 * GIB / 1024, "df -P / after quota=2");
    assert_eq!(used3, used2);
    assert_eq!(stat_f(), 2 * GIB, "stat -f / after quota=2");
    let out = zok(&h, &uuid, "/probes/statfs path / /etc/passwd; /probes/statfs fd / /bin");
    for label in ["/", "/etc/passwd", "/bin"] {
        assert_eq!(total(&probe_line(&out, label)), 2 * GIB, "{label}: {out}");
    }

    // Other mounts: the kernel's answer, as the host sees them.
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    let out = zok(&h, &uuid, "/probes/statfs path /proc /dev/shm /tmp /probes");
    for label in ["/proc", "/dev/shm", "/tmp", "/probes"] {
        let f = probe_line(&out, label);
        let host = host_statfs(&Path::new(&format!("/proc/{pid}/root")).join(&label[1..]));
        let ty = i64::from_str_radix(f["type"].trim_start_matches("0x"), 16).unwrap();
        assert_eq!((ty, total(&f)), host, "{label}: {out}");
    }
    assert_eq!(df(&h, &uuid, "/tmp").0, 64 * 1024);

    // i386 programs get theirs, in i386's structs.
    let out = zok(&h, &uuid, "/probes/statfs i386 /");
    if out.contains("unsupported") || out.contains("i386-statfs64 err=") {
        eprintln!("NOTE: no i386 calls here: {out}");
    } else {
        let f = probe_line(&out, "/");
        assert_eq!(f["result"], "i386-statfs64", "{out}");
        assert_eq!(num(&f, "blocks") * num(&f, "frsize"), 2 * GIB, "{out}");
        assert!(out.contains("i386-statfs64-wrong-size EINVAL"), "{out}");
        let s32 = out.lines().find(|l| l.contains("i386-statfs ok")).unwrap_or_else(|| panic!("{out}"));
        assert!(s32.contains(&format!("blocks={}", 2 * GIB / 4096)), "{out}");
    }

    // A zone without a quota sees the pool, as before.
    h.vmadm(&["update", &uuid, "quota=0"]).ok();
    let root = zone_root(&h, &uuid);
    assert_eq!(df(&h, &uuid, "/").0 * 1024, host_statfs(&root).1, "no quota: the pool");
}
