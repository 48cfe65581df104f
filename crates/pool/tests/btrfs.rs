//! The btrfs backend against the real kernel: each test has its own pool on
//! its own loop file, unmounted by a guard. Needs root; skipped otherwise
//! (fails under `CI`).

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use zonevisor_pool::{Capabilities, Pool, PoolConfig, PoolError, PoolSource};

#[test]
fn open_is_idempotent_and_unmount_detaches() {
    let Some(t) = btrfs_pool() else { return };
    assert_eq!(t.pool.capabilities(), Capabilities { backend: "btrfs", o1_clone: true, quota: true });
    t.pool.create("a").unwrap();
    assert!(t.pool.config_dir().is_dir());
    assert_eq!(loop_devices_for(&t.loop_file()).len(), 1);

    let again = Pool::open(t.config()).unwrap();
    assert_eq!(again.list().unwrap(), ["a"]);
    assert_eq!(loop_devices_for(&t.loop_file()).len(), 1, "the second open attached nothing");

    Pool::unmount(t.config()).unwrap();
    assert!(!is_mounted(t.mountpoint()));
    // The loop device clears itself once its last user (udev, maybe) lets go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !loop_devices_for(&t.loop_file()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(loop_devices_for(&t.loop_file()), Vec::<String>::new(), "the loop device auto-cleared");
    Pool::unmount(t.config()).unwrap();

    let reopened = Pool::open(t.config()).unwrap();
    assert_eq!(reopened.list().unwrap(), ["a"], "the pool's file was reused, not reformatted");
}

#[test]
fn the_loop_device_gets_bfq_for_fair_io() {
    let Some(t) = btrfs_pool() else { return };
    let name = loop_devices_for(&t.loop_file()).pop().expect("a loop device");
    let device = format!("/dev/{name}");
    let scheduler = fs::read_to_string(format!("/sys/block/{name}/queue/scheduler")).unwrap();
    if !scheduler.split_whitespace().any(|s| s.trim_matches(['[', ']']) == "bfq") {
        // A kernel without bfq: the pool says so and why (the daemon then
        // governs zones' I/O by throttling: tests/limits.rs), and what it
        // reports is the device the governor throttles on.
        let current = scheduler.split_whitespace().find(|s| s.starts_with('[')).unwrap().trim_matches(['[', ']']);
        assert_eq!(
            t.pool.fair_io(),
            Err(format!("{device} uses the {current} I/O scheduler, not bfq, and cgroup v2's iocost is off for it"))
        );
        let (path, number) = t.pool.block_device().expect("the pool's block device");
        assert_eq!(path.display().to_string(), device);
        assert_eq!(fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap().trim(), number);
        return;
    }
    assert!(scheduler.contains("[bfq]"), "{scheduler}");
    assert_eq!(fs::read_to_string(format!("/sys/block/{name}/queue/iosched/low_latency")).unwrap().trim(), "0");
    assert_eq!(t.pool.fair_io(), Ok(format!("bfq on {device}")));

    // Another scheduler: the pool says the weights are not enforced, and why.
    fs::write(format!("/sys/block/{name}/queue/scheduler"), "none").unwrap();
    assert_eq!(
        t.pool.fair_io(),
        Err(format!("{device} uses the none I/O scheduler, not bfq, and cgroup v2's iocost is off for it"))
    );
}

#[test]
fn mounted_source_needs_a_btrfs_mount_and_stays_mounted() {
    let Some(t) = btrfs_pool() else { return };
    let mounted = PoolConfig { source: PoolSource::Mounted, ..t.config().clone() };
    let pool = Pool::open(&mounted).unwrap();
    pool.create("x").unwrap();
    assert!(t.pool.exists("x"));
    Pool::unmount(&mounted).unwrap();
    assert!(is_mounted(t.mountpoint()), "a Mounted pool is not ours to unmount");

    // Through a symlink to the mountpoint.
    let link = t.dir.path().join("link");
    std::os::unix::fs::symlink(t.mountpoint(), &link).unwrap();
    let linked = Pool::open(&PoolConfig { mountpoint: link, ..mounted.clone() }).unwrap();
    linked.clone_from("x", "y").unwrap();
    assert_eq!(linked.list().unwrap(), ["x", "y"]);
    linked.destroy("y").unwrap();

    let elsewhere = PoolConfig { mountpoint: t.dir.path().join("plain"), ..mounted };
    assert!(matches!(Pool::open(&elsewhere), Err(PoolError::BadFilesystem { .. })));
}

#[test]
fn loop_file_with_another_filesystem_is_refused() {
    if !host_can(true) {
        return;
    }
    if let Err(e) = Command::new("mkfs.ext4").arg("-V").output() {
        assert!(std::env::var_os("CI").is_none(), "CI: mkfs.ext4 (e2fsprogs) is needed: {e}");
        eprintln!("skipping: no mkfs.ext4 ({e}; apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ext4.img");
    fs::File::create(&file).unwrap().set_len(64 * MIB).unwrap();
    assert!(Command::new("mkfs.ext4").arg("-q").arg(&file).status().unwrap().success());
    let config = PoolConfig {
        name: "zones".into(),
        mountpoint: dir.path().join("zones"),
        source: PoolSource::LoopFile { path: file.clone(), size_bytes: 1 << 30 },
    };
    let _guard = UnmountGuard { config: config.clone() };
    let err = Pool::open(&config).unwrap_err();
    assert!(matches!(err, PoolError::BadFilesystem { .. }), "{err}");
    assert_eq!(fs::metadata(&file).unwrap().len(), 64 * MIB, "the file is left as it was");
    assert!(loop_devices_for(&file).is_empty());
}

/// Detaches a loop device `losetup` attached, when dropped.
struct Losetup(String);

impl Drop for Losetup {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn device_source_is_formatted_only_when_blank() {
    if !host_can(true) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.img");
    fs::File::create(&file).unwrap().set_len(512 * MIB).unwrap();
    let out = Command::new("losetup").arg("--find").arg("--show").arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let device = Losetup(String::from_utf8(out.stdout).unwrap().trim().to_string());
    let config = PoolConfig {
        name: "zones".into(),
        mountpoint: dir.path().join("zones"),
        source: PoolSource::Device(device.0.clone().into()),
    };
    let guard = UnmountGuard { config };
    let pool = Pool::open(&guard.config).unwrap();
    pool.create("keep").unwrap();
    Pool::unmount(&guard.config).unwrap();
    assert!(!is_mounted(&guard.config.mountpoint));
    let pool = Pool::open(&guard.config).unwrap();
    assert_eq!(pool.list().unwrap(), ["keep"], "not reformatted");
}

#[test]
fn dataset_lifecycle() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let img = p.create("img").unwrap();
    assert_eq!(img, t.mountpoint().join("img"));
    assert!(p.exists("img"));
    assert!(matches!(p.create("img"), Err(PoolError::Exists(_))));
    fs::write(img.join("hello"), "hi").unwrap();
    assert!(!p.is_readonly("img").unwrap());

    p.set_readonly("img", true).unwrap();
    p.set_readonly("img", true).unwrap();
    assert!(p.is_readonly("img").unwrap());
    let err = fs::write(img.join("new"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));

    let zone = p.clone_from("img", "zone1").unwrap();
    assert!(!p.is_readonly("zone1").unwrap());
    assert_eq!(fs::read_to_string(zone.join("hello")).unwrap(), "hi");
    fs::write(zone.join("hello"), "changed").unwrap();
    assert_eq!(fs::read_to_string(img.join("hello")).unwrap(), "hi");
    assert!(matches!(p.clone_from("img", "zone1"), Err(PoolError::Exists(_))));
    assert!(matches!(p.clone_from("missing", "zone2"), Err(PoolError::NotFound(_))));
    assert!(!p.exists("zone2") && !p.dataset_path("zone2").exists());
    assert_eq!(p.list().unwrap(), ["img", "zone1"]);

    p.destroy("zone1").unwrap();
    p.destroy("zone1").unwrap();
    assert!(!p.exists("zone1") && !zone.exists());
    assert!(matches!(p.is_readonly("zone1"), Err(PoolError::NotFound(_))));
    assert!(matches!(p.set_quota("zone1", Some(MIB)), Err(PoolError::NotFound(_))));
    assert!(matches!(p.usage("zone1"), Err(PoolError::NotFound(_))));

    p.destroy("img").unwrap();
    assert_eq!(p.list().unwrap(), Vec::<String>::new());

    // A plain directory is not a dataset, but destroy clears it away.
    fs::create_dir(t.mountpoint().join("junk")).unwrap();
    assert!(!p.exists("junk"));
    assert!(matches!(p.clone_from("junk", "j2"), Err(PoolError::NotFound(_))));
    p.destroy("junk").unwrap();
    assert!(!t.mountpoint().join("junk").exists());

    for bad in ["", ".hidden", "..", "a/b", "config", "sp ace"] {
        assert!(matches!(p.create(bad), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(matches!(p.destroy(bad), Err(PoolError::BadName(_))), "{bad:?}");
    }
}

#[test]
fn destroy_removes_nested_subvolumes_of_a_readonly_dataset() {
    let Some(t) = btrfs_pool() else { return };
    let outer = t.pool.create("outer").unwrap();
    fs::create_dir(outer.join("d")).unwrap();
    for inner in [outer.join("inner"), outer.join("d/inner2")] {
        let ok = Command::new("btrfs").args(["subvolume", "create"]).arg(&inner).output().unwrap();
        assert!(ok.status.success());
        fs::write(inner.join("f"), "data").unwrap();
    }
    let ro = Command::new("btrfs").args(["property", "set"]).arg(outer.join("d/inner2")).args(["ro", "true"]).output();
    assert!(ro.unwrap().status.success());
    t.pool.set_readonly("outer", true).unwrap();
    t.pool.destroy("outer").unwrap();
    assert!(!outer.exists());
}

/// The filesystem's quota mode as sysfs shows it (kernel 6.7+).
fn quota_mode(t: &TestPool) -> Option<String> {
    let out = Command::new("blkid").args(["-o", "value", "-s", "UUID"]).arg(t.loop_file()).output().unwrap();
    let uuid = String::from_utf8(out.stdout).unwrap();
    fs::read_to_string(format!("/sys/fs/btrfs/{}/qgroups/mode", uuid.trim())).ok().map(|m| m.trim().to_string())
}

/// A clone of an 8 MiB image under a 16 MiB quota can write about 16 MiB.
fn check_quota_bounds_writes(t: &TestPool, p: &Pool) {
    let img = p.create("img").unwrap();
    write_file(&img.join("base"), 8 * MIB).unwrap();
    p.set_readonly("img", true).unwrap();
    let zone = p.clone_from("img", "zone").unwrap();
    let limit = 16 * MIB;
    p.set_quota("zone", Some(limit)).unwrap();
    assert_eq!(p.usage("zone").unwrap().quota_bytes, Some(limit));

    let mut written = 0;
    let mut failure = None;
    for i in 0..64 {
        match write_file(&zone.join(format!("f{i}")), MIB) {
            Ok(()) => written += MIB,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let err = failure.expect("writing 64 MiB under a 16 MiB quota succeeded");
    assert!(matches!(err.raw_os_error(), Some(libc::EDQUOT | libc::ENOSPC)), "{err}");
    t.sync();
    let usage = p.usage("zone").unwrap();
    println!("{:?} quota {limit}: wrote {written} bytes before {err}; usage {usage:?}", quota_mode(t));
    // The 8 MiB shared with the image do not count.
    assert!(written >= limit - 4 * MIB && written <= limit + 2 * MIB, "wrote {written}");
    assert!(usage.used_bytes <= limit + 2 * MIB && usage.used_bytes + 4 * MIB >= written, "{usage:?}");

    p.set_quota("zone", None).unwrap();
    assert_eq!(p.usage("zone").unwrap().quota_bytes, None);
    write_file(&zone.join("after"), 8 * MIB).unwrap();
}

#[test]
fn quota_bounds_what_a_clone_writes() {
    let Some(t) = btrfs_pool() else { return };
    if let Some(mode) = quota_mode(&t) {
        assert_eq!(mode, "squota", "simple quotas where the kernel has them");
    }
    check_quota_bounds_writes(&t, &t.pool);
}

#[test]
fn quota_bounds_what_a_clone_writes_with_classic_qgroups() {
    let Some(t) = btrfs_pool() else { return };
    for args in [["quota", "disable"], ["quota", "enable"]] {
        let out = Command::new("btrfs").args(args).arg(t.mountpoint()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pool = Pool::open(t.config()).unwrap();
    if let Some(mode) = quota_mode(&t) {
        assert_eq!(mode, "qgroup");
    }
    check_quota_bounds_writes(&t, &pool);
}

#[test]
fn clone_shares_data_with_its_image() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let img = p.create("img").unwrap();
    for i in 0..5 {
        write_file(&img.join(format!("blob{i}")), 10 * MIB).unwrap();
    }
    p.set_readonly("img", true).unwrap();
    t.sync();
    let before = p.stats().unwrap();
    assert!(before.size_bytes > 900 * MIB && before.size_bytes <= 1 << 30, "{before:?}");
    assert!(before.free_bytes < before.size_bytes - 50 * MIB, "{before:?}");

    let start = Instant::now();
    let zone = p.clone_from("img", "zone").unwrap();
    let took = start.elapsed();
    t.sync();
    let after = p.stats().unwrap();
    println!("clone of a 50 MiB image: {took:?}; free {} -> {}", before.free_bytes, after.free_bytes);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(before.free_bytes.saturating_sub(after.free_bytes) < 4 * MIB, "{before:?} -> {after:?}");
    assert_eq!(fs::read(zone.join("blob3")).unwrap(), fs::read(img.join("blob3")).unwrap());
    let (img_use, zone_use) = (p.usage("img").unwrap(), p.usage("zone").unwrap());
    println!("usage: image {img_use:?}, clone {zone_use:?}");
    if quota_mode(&t).as_deref() == Some("squota") {
        // Simple quotas charge a shared extent to the dataset that wrote it.
        assert!(img_use.used_bytes >= 50 * MIB, "{img_use:?}");
    } else {
        // Classic qgroups (kernels before 6.7) count only what one dataset
        // holds alone: shared with the clone, the image's data is not.
        assert!(img_use.used_bytes < MIB, "{img_use:?}");
    }
    assert!(zone_use.used_bytes < MIB, "{zone_use:?}");
    assert_eq!(zone_use.quota_bytes, None);
}

/// Clones and destroys, one after another, each in well under a second
/// (generous bounds that catch a clone that copies or a destroy that waits
/// for the cleaner; the speed figures are `bench/run`'s create and delete),
/// and nothing is left of them.
#[test]
fn clones_and_destroys_are_quick_and_leave_nothing() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let img = p.create("img").unwrap();
    for i in 0..200 {
        fs::write(img.join(format!("file{i}")), format!("contents {i}\n").repeat(100)).unwrap();
    }
    p.set_readonly("img", true).unwrap();
    t.sync();
    let (mut clones, mut destroys) = (Vec::new(), Vec::new());
    for i in 0..21 {
        let name = format!("zone{i}");
        let start = Instant::now();
        let zone = p.clone_from("img", &name).unwrap();
        clones.push(start.elapsed());
        assert_eq!(fs::read_to_string(zone.join("file199")).unwrap(), "contents 199\n".repeat(100));
        fs::write(zone.join("written"), "x").unwrap();
        let start = Instant::now();
        p.destroy(&name).unwrap();
        destroys.push(start.elapsed());
        assert!(!p.exists(&name) && !zone.exists(), "{name} is still there");
    }
    let (clone, destroy) = (clones.iter().max().unwrap(), destroys.iter().max().unwrap());
    println!("btrfs clone median {:?} (max {clone:?})", median(clones.clone()));
    println!("btrfs destroy median {:?} (max {destroy:?})", median(destroys.clone()));
    assert!(*clone < Duration::from_secs(1), "a clone took {clone:?}: {clones:?}");
    assert!(*destroy < Duration::from_secs(1), "a destroy took {destroy:?}: {destroys:?}");
    assert_eq!(p.list().unwrap(), ["img"]);
    assert!(p.is_readonly("img").unwrap(), "the image stays read-only");
}

/// Writes 1 MiB chunks (of random-looking data, so nothing compresses)
/// into a new file in `dir` until a write fails; returns the bytes written
/// and the error.
fn fill(dir: &std::path::Path) -> (u64, std::io::Error) {
    use std::io::Write;
    let mut f = fs::File::create(dir.join("fill")).unwrap();
    let mut chunk = vec![0u8; MIB as usize];
    let mut n = 1u64;
    let mut written = 0;
    loop {
        for word in chunk.chunks_mut(8) {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            word.copy_from_slice(&n.to_le_bytes());
        }
        if let Err(e) =
            f.write_all(&chunk).and_then(|()| if written % (64 * MIB) == 0 { f.sync_data() } else { Ok(()) })
        {
            return (written, e);
        }
        written += MIB;
    }
}

#[test]
fn datasets_cannot_take_the_reserve_of_the_state_store() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let before = p.keep_reserve().unwrap().expect("btrfs keeps a reserve");
    assert_eq!(before.reserved_bytes, zonevisor_pool::reserve_for(1 << 30));
    assert_eq!(before.reserved_bytes, 128 * MIB, "1/32 of 1 GiB is below the 128 MiB floor");
    // Two datasets without quotas, an image and its clone, fill what they may.
    let img = p.create("img").unwrap();
    write_file(&img.join("base"), 8 * MIB).unwrap();
    p.set_readonly("img", true).unwrap();
    let zone = p.clone_from("img", "zone").unwrap();
    let (written, err) = fill(&zone);
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "the datasets' limit stops them, not a full pool: {err}");
    t.sync();
    let after = p.keep_reserve().unwrap().unwrap();
    println!("wrote {} MiB; reserve {before:?} -> {after:?}; stats {:?}", written / MIB, p.stats().unwrap());
    assert!(written > 512 * MIB, "only {written} bytes of a 1 GiB pool");
    // The state store (outside every dataset) still writes, and so does
    // the pool's own work: a new clone, a new dataset.
    write_file(&p.config_dir().join("db-growth"), 32 * MIB).expect("the reserve is gone");
    p.clone_from("img", "zone2").expect("a clone in a full pool");
    let stats = p.stats().unwrap();
    assert_eq!(stats.reserved_bytes, 128 * MIB);
    // Freeing data gives it back, by the time destroy_and_wait returns.
    p.destroy_and_wait("zone").unwrap();
    t.sync();
    let freed = p.keep_reserve().unwrap().unwrap();
    assert!(freed.datasets_bytes < 64 * MIB, "the destroyed dataset's space is not free yet: {freed:?}");
    write_file(&p.dataset_path("zone2").join("after"), 64 * MIB).unwrap();
}

#[test]
fn pool_is_private_and_nosuid() {
    use std::os::unix::fs::PermissionsExt;
    let Some(t) = btrfs_pool() else { return };
    let ds = t.pool.create("ds").unwrap();
    for dir in [t.mountpoint().to_path_buf(), t.pool.config_dir(), ds] {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
    }
    let mp = t.mountpoint().to_str().unwrap().to_string();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info.lines().find(|l| l.split(' ').nth(4) == Some(mp.as_str())).expect("the pool is mounted");
    let opts: Vec<&str> = line.split(' ').nth(5).unwrap().split(',').collect();
    assert!(opts.contains(&"nosuid") && opts.contains(&"nodev"), "{line}");
}

#[test]
fn datasets_made_before_the_reserve_join_it() {
    let Some(t) = btrfs_pool() else { return };
    // A subvolume made outside the pool's API (an older zonevisor).
    let out = Command::new("btrfs").args(["subvolume", "create"]).arg(t.mountpoint().join("old")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pool = Pool::open(t.config()).unwrap();
    let out = Command::new("btrfs").args(["qgroup", "show", "-p"]).arg(t.mountpoint()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.trim_end().ends_with("old")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("1/100"), "old is not in the datasets' qgroup: {text}");
    let (_, err) = fill(&pool.dataset_path("old"));
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
}
