//! Snapshots end to end (`vmadm create-snapshot`, `rollback-snapshot`,
//! `delete-snapshot`): each test has its own daemon and btrfs pool. A
//! zone's files and a VM's disks (byte for byte) roll back with the tags
//! and metadata SmartOS keeps beside them; a running VM is paused around
//! its snapshot and restarted around a rollback; snapshots count against
//! the quota; deleting an instance deletes its snapshots; a rollback the
//! daemon died in is finished at its next start. The zone's side (it
//! cannot see or reach its snapshots) is in `tests/escape/snapshots.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{busybox, vm_images, TestHost};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

/// A guest's boot under TCG on a busy 2-core host (as tests/vms.rs).
const BOOT: Duration = Duration::from_secs(180);
const READY: &str = "zonevisor-guest: ready";

fn snapshot_names(vm: &Value) -> Vec<String> {
    vm["snapshots"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// Runs `script` in the zone with zlogin; its stdout.
fn zsh(h: &TestHost, uuid: &str, script: &str) -> String {
    let r = h.cli("zlogin", &[uuid, script], None);
    assert_eq!(r.code, 0, "zlogin {script}: {} {}", r.stdout, r.stderr);
    r.stdout
}

fn update(h: &TestHost, uuid: &str, payload: Value) {
    h.cli("vmadm", &["update", uuid], Some(&payload.to_string())).ok();
}

#[test]
fn a_running_zone_rolls_back_its_files_tags_and_metadata_and_runs_again() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "alias": "snap-zone",
        "customer_metadata": {"color": "blue"}, "tags": {"tier": 1}}));
    zsh(&h, &uuid, "echo first > /root/data && sync");
    h.vmadm(&["create-snapshot", &uuid, "before"]).ok();
    let init = h.get(&uuid)["pid"].clone();

    zsh(&h, &uuid, "echo second > /root/data && echo new > /root/extra && sync");
    update(
        &h,
        &uuid,
        json!({"set_customer_metadata": {"color": "red", "added": "x"}, "set_tags": {"tier": 2},
        "set_internal_metadata": {"ops:note": "after"}}),
    );
    let r = h.vmadm(&["rollback-snapshot", &uuid, "before"]);
    r.ok();
    assert!(r.stderr.contains(&format!("Rolled back snapshot before for VM {uuid}")), "{}", r.stderr);

    let vm = h.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_ne!(vm["pid"], init, "the zone was stopped and started again");
    assert_eq!(zsh(&h, &uuid, "cat /root/data"), "first\n");
    let extra = zsh(&h, &uuid, "ls /root/extra 2>&1 || true");
    assert!(extra.contains("No such file"), "a file made after the snapshot is gone: {extra}");
    assert_eq!(vm["customer_metadata"], json!({"color": "blue"}), "{vm}");
    assert_eq!(vm["tags"], json!({"tier": 1}));
    assert!(vm.get("internal_metadata").is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty())), "{vm}");
    assert_eq!(snapshot_names(&vm), ["before"]);
    // The zone writes on after the rollback, and a second one goes back again.
    zsh(&h, &uuid, "echo third > /root/data && sync");
    h.vmadm(&["rollback-snapshot", &uuid, "before"]).ok();
    h.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_eq!(zsh(&h, &uuid, "cat /root/data"), "first\n");
}

/// Fills `path` with `len` bytes derived from `seed`; returns their SHA-1.
fn fill(path: &Path, len: usize, seed: u64) -> String {
    let mut n = seed | 1;
    let mut data = vec![0u8; len];
    for word in data.chunks_mut(8) {
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        word.copy_from_slice(&n.to_le_bytes()[..word.len()]);
    }
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data, 0).unwrap();
    f.sync_all().unwrap();
    digest(path)
}

fn digest(path: &Path) -> String {
    hex::encode(Sha1::digest(std::fs::read(path).unwrap()))
}

fn qemu_host() -> Option<TestHost> {
    let h = TestHost::new()?;
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        return common::skip("qemu-system-x86 is not installed (scripts/test installs it)");
    }
    Some(h)
}

#[test]
fn a_stopped_vm_rolls_back_every_disk_byte_for_byte_with_its_metadata() {
    let Some(h) = qemu_host() else { return };
    let uuid = h.create_ok(&json!({"brand": "kvm", "alias": "snap-vm", "ram": 256, "autoboot": false,
        "customer_metadata": {"disk0test": "oldString"},
        "disks": [{"size": 16, "model": "virtio", "boot": true}, {"size": 8, "model": "virtio"}]}));
    let vm = h.get(&uuid);
    let disks: Vec<PathBuf> =
        vm["disks"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().into()).collect();
    let before: Vec<String> = disks.iter().enumerate().map(|(i, d)| fill(d, 8 << 20, i as u64 + 1)).collect();
    h.vmadm(&["create-snapshot", &uuid, "snapshot1"]).ok();

    let after: Vec<String> = disks.iter().enumerate().map(|(i, d)| fill(d, 8 << 20, i as u64 + 100)).collect();
    assert_ne!(before, after);
    update(&h, &uuid, json!({"set_customer_metadata": {"disk0test": "newString"}}));
    h.vmadm(&["create-snapshot", &uuid, "snapshot2"]).ok();
    assert_eq!(snapshot_names(&h.get(&uuid)), ["snapshot2", "snapshot1"], "newest first");

    h.vmadm(&["rollback-snapshot", &uuid, "snapshot1"]).ok();
    let vm = h.get(&uuid);
    assert_eq!(vm["state"], "stopped", "a stopped VM stays stopped");
    let rolled: Vec<String> = disks.iter().map(|d| digest(d)).collect();
    assert_eq!(rolled, before, "every disk as it was at snapshot1");
    for (d, want) in disks.iter().zip([16u64 << 20, 8 << 20]) {
        assert_eq!(std::fs::metadata(d).unwrap().len(), want, "{} keeps its size", d.display());
    }
    assert_eq!(vm["customer_metadata"]["disk0test"], "oldString", "disk0 metadata gets rolled back");
    assert_eq!(snapshot_names(&vm), ["snapshot1"], "the newer snapshot is deleted");
    h.vmadm(&["delete-snapshot", &uuid, "snapshot1"]).ok();
    assert!(snapshot_names(&h.get(&uuid)).is_empty());
}

#[test]
fn a_running_vm_is_paused_for_its_snapshot_and_its_rollback_restarts_it() {
    let Some(h) = qemu_host() else { return };
    let f = vm_images();
    let uuid = h.create_ok(&json!({
        "brand": "kvm", "alias": "snap-running", "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd, "boot_args": "console=ttyS0 quiet zv.boot=direct",
        "disks": [{"size": 16, "model": "virtio"}],
    }));
    // The guest read 0 from its counter disk and wrote 1 back.
    let console = h.wait_console(&uuid, READY, 1, BOOT);
    assert!(console.contains("zonevisor-guest: counter 0"), "{console}");
    let pid = h.get(&uuid)["pid"].clone();
    h.vmadm(&["create-snapshot", &uuid, "one"]).ok();
    let info = h.vmadm(&["info", &uuid, "status"]).json();
    assert_eq!(info["status"]["status"], "running", "resumed after its snapshot: {info}");
    assert_eq!(h.get(&uuid)["pid"], pid, "the same QEMU: a snapshot does not restart the VM");

    // Its next boot reads 1 and writes 2.
    h.vmadm(&["reboot", &uuid]).ok();
    let console = h.wait_console(&uuid, READY, 2, BOOT);
    assert!(tail(&console).contains("zonevisor-guest: counter 1"), "{console}");

    // Rolled back while running: stopped, its disk as at the snapshot (1), started.
    h.vmadm(&["rollback-snapshot", &uuid, "one"]).ok();
    assert_eq!(h.get(&uuid)["state"], "running");
    let console = h.wait_console(&uuid, READY, 3, BOOT);
    assert!(tail(&console).contains("zonevisor-guest: counter 1"), "the disk as it was at the snapshot:\n{console}");
}

/// The console from its last boot on.
fn tail(console: &str) -> &str {
    console.rfind("zonevisor-guest: up").map_or(console, |i| &console[i..])
}

/// `fallocate -l <mib>M path`: its error output, if it failed.
fn fallocate(path: &Path, mib: u64) -> Result<(), String> {
    let out = Command::new("fallocate").args(["-l", &format!("{mib}M")]).arg(path).output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn sync_pool(h: &TestHost) {
    nix::unistd::syncfs(std::fs::File::open(h.pool()).unwrap()).unwrap();
}

#[test]
fn snapshots_count_against_the_zone_quota() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "quota": 1, "autoboot": false}));
    let root = h.pool().join(&uuid).join("root");
    // 600 MiB under a 1 GiB quota, replaced: it fits, the old blocks are freed.
    fallocate(&root.join("a"), 600).unwrap();
    std::fs::remove_file(root.join("a")).unwrap();
    sync_pool(&h);
    fallocate(&root.join("a"), 600).unwrap();
    // After a snapshot the old 600 MiB stay charged: replacing them does not fit.
    h.vmadm(&["create-snapshot", &uuid, "pins"]).ok();
    std::fs::remove_file(root.join("a")).unwrap();
    sync_pool(&h);
    let err = fallocate(&root.join("b"), 600).expect_err("600 MiB more fit beside a snapshot's 600 under 1 GiB");
    assert!(err.contains("quota") || err.contains("No space"), "{err}");
    // The snapshot deleted, they fit again.
    h.vmadm(&["delete-snapshot", &uuid, "pins"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        sync_pool(&h);
        match fallocate(&root.join("b"), 600) {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "the deleted snapshot's blocks are still charged: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The subvolumes `btrfs subvolume list` shows in the pool.
fn subvolumes(h: &TestHost) -> String {
    let out = Command::new("btrfs").args(["subvolume", "list", "-a"]).arg(h.pool()).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deleting_an_instance_deletes_its_snapshots() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    for s in ["a", "b"] {
        h.vmadm(&["create-snapshot", &uuid, s]).ok();
    }
    assert_eq!(subvolumes(&h).matches(&uuid).count(), 3, "the dataset and two snapshots:\n{}", subvolumes(&h));
    h.vmadm(&["delete", &uuid]).ok();
    assert!(!subvolumes(&h).contains(&uuid), "left behind:\n{}", subvolumes(&h));
    assert!(!h.pool().join(".snapshots").join(&uuid).exists());
}

#[test]
fn a_rollback_the_daemon_died_in_is_finished_at_its_next_start() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "tags": {"v": 1}}));
    let root = h.pool().join(&uuid).join("root");
    std::fs::write(root.join("data"), "at the snapshot").unwrap();
    h.vmadm(&["create-snapshot", &uuid, "s1"]).ok();
    std::fs::write(root.join("data"), "after it").unwrap();
    update(&h, &uuid, json!({"set_tags": {"v": 2}}));
    h.vmadm(&["stop", &uuid]).ok();
    update(&h, &uuid, json!({"autoboot": true}));

    // The daemon dies between the rollback's commit and the dataset's
    // return: the pool holds the record, the copy and the old data aside.
    h.kill_daemon();
    let record = h.pool().join(".rollback").join(format!("{uuid}@vmsnap-s1"));
    std::fs::create_dir_all(&record).unwrap();
    let snap = h.pool().join(".snapshots").join(&uuid).join("vmsnap-s1");
    let out =
        Command::new("btrfs").args(["subvolume", "snapshot"]).arg(&snap).arg(record.join("new")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::rename(h.pool().join(&uuid), record.join("old")).unwrap();

    h.start_daemon();
    let vm = h.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_eq!(std::fs::read_to_string(root.join("data")).unwrap(), "at the snapshot");
    assert_eq!(vm["tags"], json!({"v": 1}), "the tags went back with the data");
    assert!(!record.exists(), "the rollback was ended");
    assert!(h.log().contains("finished an interrupted rollback"), "{}", h.log());
}

/// KiB used on `/` as `df` in the zone says (the monitor's `statfs(2)`).
fn df_used_kib(h: &TestHost, uuid: &str) -> u64 {
    let out = zsh(h, uuid, "df -k / | tail -1");
    out.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("df: {out}"))
}

#[test]
fn a_zones_df_counts_what_its_snapshots_hold_also_after_a_rollback() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "quota": 1}));
    let root = h.pool().join(&uuid).join("root");
    fallocate(&root.join("big"), 400).unwrap();
    h.vmadm(&["create-snapshot", &uuid, "s1"]).ok();
    h.vmadm(&["rollback-snapshot", &uuid, "s1"]).ok();
    h.wait_state(&uuid, "running", Duration::from_secs(60));
    // The zone deletes the file: the snapshot still holds its 400 MiB, and
    // the zone's df says so (they count against its quota).
    zsh(&h, &uuid, "rm /big && sync");
    sync_pool(&h);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let used = df_used_kib(&h, &uuid);
        if used >= 390 * 1024 {
            break;
        }
        assert!(Instant::now() < deadline, "df in the zone shows {used} KiB used, not the snapshot's 400 MiB");
        sync_pool(&h);
        std::thread::sleep(Duration::from_millis(300));
    }
}
