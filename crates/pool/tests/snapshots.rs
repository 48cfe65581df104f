//! Snapshots against the real kernel: each test has its own btrfs pool on
//! its own loop file. Needs root; skipped otherwise (fails under `CI`).
//! The dir backend's refusal runs unprivileged.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use zonevisor_pool::{Pool, PoolConfig, PoolError, PoolSource, RollbackOutcome};

/// `btrfs qgroup show -p` of the pool: the line of each qgroup with its parents.
fn qgroups(t: &TestPool) -> String {
    let out = Command::new("btrfs").args(["qgroup", "show", "-p", "--raw"]).arg(t.mountpoint()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The parents `btrfs qgroup show -p` lists for the qgroup of the subvolume at `path`.
fn parents_of(t: &TestPool, path: &std::path::Path) -> String {
    let out = Command::new("btrfs").args(["subvolume", "show"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Subvolume ID:"))
        .unwrap_or_else(|| panic!("no id for {}: {text}", path.display()))
        .trim()
        .to_string();
    let all = qgroups(t);
    let line = all
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&format!("0/{id}")))
        .unwrap_or_else(|| panic!("no qgroup 0/{id}: {all}"));
    line.split_whitespace().nth(3).unwrap_or("-").to_string()
}

#[test]
fn snapshots_are_read_only_hidden_and_listed_in_order() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let ds = p.create("zone").unwrap();
    fs::write(ds.join("hello"), "one").unwrap();
    let before = SystemTime::now() - Duration::from_secs(2);
    let s1 = p.snapshot("zone", "s1").unwrap();
    fs::write(ds.join("hello"), "two").unwrap();
    let s2 = p.snapshot("zone", "vmsnap-s%2:x_y.z").unwrap();
    assert!(s1.order < s2.order && s1.created >= before && s2.created >= s1.created, "{s1:?} {s2:?}");
    let names: Vec<String> = p.list_snapshots("zone").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["s1", "vmsnap-s%2:x_y.z"]);

    // The snapshot holds the data as it was, and cannot be written.
    let path = p.snapshot_path("zone", "s1").unwrap();
    assert_eq!(fs::read_to_string(path.join("hello")).unwrap(), "one");
    assert_eq!(fs::read_to_string(ds.join("hello")).unwrap(), "two");
    let err = fs::write(path.join("hello"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // Not a dataset, not where instances' datasets are.
    assert_eq!(p.list().unwrap(), ["zone"]);
    assert!(!path.starts_with(&ds));

    assert!(matches!(p.snapshot("zone", "s1"), Err(PoolError::Exists(_))));
    for bad in ["", ".hidden", "a/b", "a b", "a@b", "x,y", &"n".repeat(101)] {
        assert!(matches!(p.snapshot("zone", bad), Err(PoolError::BadName(_))), "{bad:?}");
    }
    assert!(matches!(p.snapshot("nope", "s"), Err(PoolError::NotFound(_))));
    assert!(p.list_snapshots("nope").unwrap().is_empty());

    p.destroy_snapshot("zone", "s1").unwrap();
    p.destroy_snapshot("zone", "s1").unwrap();
    assert_eq!(p.list_snapshots("zone").unwrap().len(), 1);
    // Destroying the dataset takes its snapshots along.
    p.destroy("zone").unwrap();
    assert!(p.list_snapshots("zone").unwrap().is_empty());
    assert!(!t.mountpoint().join(".snapshots/zone").exists());
}

#[test]
fn rollback_restores_the_data_keeps_the_quota_and_destroys_newer_snapshots() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let img = p.create("img").unwrap();
    write_file(&img.join("base"), 4 * MIB).unwrap();
    p.set_readonly("img", true).unwrap();
    let ds = p.clone_from("img", "zone").unwrap();
    p.set_quota("zone", Some(64 * MIB)).unwrap();
    fs::write(ds.join("data"), "first").unwrap();
    p.snapshot("zone", "s1").unwrap();
    fs::write(ds.join("data"), "second").unwrap();
    fs::write(ds.join("extra"), "only after s1").unwrap();
    p.snapshot("zone", "s2").unwrap();
    p.snapshot("zone", "s3").unwrap();
    fs::write(ds.join("data"), "third").unwrap();

    p.rollback("zone", "s2").unwrap();
    assert_eq!(fs::read_to_string(ds.join("data")).unwrap(), "second");
    let names: Vec<String> = p.list_snapshots("zone").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["s1", "s2"], "the newer snapshot is destroyed");
    assert_eq!(p.pending_rollbacks().unwrap().len(), 1, "the record stays until end_rollback");
    p.end_rollback("zone").unwrap();
    assert!(p.pending_rollbacks().unwrap().is_empty());

    p.rollback("zone", "s1").unwrap();
    p.end_rollback("zone").unwrap();
    assert_eq!(fs::read_to_string(ds.join("data")).unwrap(), "first");
    assert!(!ds.join("extra").exists());
    assert!(!p.is_readonly("zone").unwrap(), "the dataset is writable again");
    fs::write(ds.join("data"), "writable").unwrap();
    assert_eq!(p.list().unwrap(), ["img", "zone"]);
    assert_eq!(p.usage("zone").unwrap().quota_bytes, Some(64 * MIB), "the quota is kept");
    let parents = parents_of(&t, &ds);
    assert!(parents.contains("1/100"), "still in the pool's datasets qgroup: {parents}");
    assert!(!t.mountpoint().join(".rollback/zone@s1").exists());
    assert!(matches!(p.rollback("zone", "s9"), Err(PoolError::NotFound(_))));
}

#[test]
fn a_rollback_interrupted_at_any_step_is_undone_or_finished() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    for steps in 1..=5u8 {
        let ds = p.create("zone").unwrap();
        p.set_quota("zone", Some(32 * MIB)).unwrap();
        fs::write(ds.join("data"), "old").unwrap();
        p.snapshot("zone", "s1").unwrap();
        p.snapshot("zone", "s2").unwrap();
        fs::write(ds.join("data"), "new").unwrap();
        p.rollback_interrupted("zone", "s1", steps).unwrap();
        let pending = p.pending_rollbacks().unwrap();
        assert_eq!(pending.len(), 1, "step {steps}");
        assert_eq!((pending[0].dataset.as_str(), pending[0].snapshot.as_str()), ("zone", "s1"));
        assert_eq!(pending[0].committed, steps >= 3, "step {steps}");
        // A second rollback waits for this one to be resumed.
        let again = p.rollback("zone", "s1");
        assert!(matches!(again, Err(PoolError::Busy { .. })), "step {steps}: {again:?}");

        let outcome = p.resume_rollback("zone").unwrap();
        let expected = if steps >= 3 { RollbackOutcome::Finished } else { RollbackOutcome::Undone };
        assert_eq!(outcome, expected, "step {steps}");
        p.end_rollback("zone").unwrap();
        assert!(p.pending_rollbacks().unwrap().is_empty(), "step {steps}");
        let data = fs::read_to_string(ds.join("data")).unwrap();
        let snaps: Vec<String> = p.list_snapshots("zone").unwrap().into_iter().map(|s| s.name).collect();
        if outcome == RollbackOutcome::Finished {
            assert_eq!((data.as_str(), snaps), ("old", vec!["s1".to_string()]), "step {steps}");
        } else {
            assert_eq!((data.as_str(), snaps), ("new", vec!["s1".to_string(), "s2".to_string()]), "step {steps}");
        }
        assert_eq!(p.usage("zone").unwrap().quota_bytes, Some(32 * MIB), "step {steps}");
        assert_eq!(p.list().unwrap(), ["zone"], "step {steps}");
        assert_eq!(fs::read_dir(t.mountpoint().join(".rollback")).unwrap().count(), 0, "step {steps}");
        // Then it rolls back for good.
        p.rollback("zone", "s1").unwrap();
        p.end_rollback("zone").unwrap();
        assert_eq!(fs::read_to_string(ds.join("data")).unwrap(), "old");
        p.destroy("zone").unwrap();
    }
}

#[test]
fn a_destroy_takes_an_interrupted_rollback_along() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    p.create("zone").unwrap();
    p.snapshot("zone", "s1").unwrap();
    p.rollback_interrupted("zone", "s1", 3).unwrap();
    assert!(!p.exists("zone"), "between the renames the dataset is aside");
    p.destroy("zone").unwrap();
    assert!(p.pending_rollbacks().unwrap().is_empty());
    assert!(p.list_snapshots("zone").unwrap().is_empty());
    assert_eq!(fs::read_dir(t.mountpoint().join(".rollback")).unwrap().count(), 0);
}

/// Writes `mib` MiB to `name` in `dir`, returning how much went in before an error.
fn write_mib(dir: &std::path::Path, name: &str, mib: u64) -> Result<(), (u64, std::io::Error)> {
    use std::io::Write;
    let mut f = fs::File::create(dir.join(name)).map_err(|e| (0, e))?;
    let mut chunk = vec![0u8; MIB as usize];
    let mut n = mib.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in 0..mib {
        for word in chunk.chunks_mut(8) {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            word.copy_from_slice(&n.to_le_bytes());
        }
        f.write_all(&chunk).map_err(|e| (i * MIB, e))?;
    }
    f.sync_all().map_err(|e| (mib * MIB, e))
}

fn is_quota_error(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EDQUOT | libc::ENOSPC))
}

/// A zone with a 64 MiB quota holding 40 MiB: after a snapshot, replacing
/// those 40 MiB does not fit (the snapshot pins them); without it, it does.
/// After a rollback to the snapshot too.
fn check_snapshots_count_against_the_quota(t: &TestPool, p: &Pool) {
    let img = p.create("img").unwrap();
    write_file(&img.join("base"), 4 * MIB).unwrap();
    p.set_readonly("img", true).unwrap();
    let ds = p.clone_from("img", "zone").unwrap();
    p.set_quota("zone", Some(64 * MIB)).unwrap();
    write_mib(&ds, "a", 40).unwrap();

    // Replaced without a snapshot: the old blocks are freed, it fits.
    fs::remove_file(ds.join("a")).unwrap();
    t.sync();
    write_mib(&ds, "a", 40).unwrap();

    p.snapshot("zone", "s1").unwrap();
    fs::remove_file(ds.join("a")).unwrap();
    t.sync();
    let (written, err) =
        write_mib(&ds, "b", 40).expect_err("40 MiB more fit under a 64 MiB quota beside a snapshot's 40");
    assert!(is_quota_error(&err), "{err}");
    assert!(written <= 28 * MIB, "wrote {written} bytes past the snapshot's pinned 40 MiB");
    let usage = p.usage("zone").unwrap();
    assert_eq!(usage.quota_bytes, Some(64 * MIB));
    fs::remove_file(ds.join("b")).unwrap();

    // Rolled back to the snapshot: the new dataset shares everything with
    // it; replacing the 40 MiB still does not fit.
    p.rollback("zone", "s1").unwrap();
    p.end_rollback("zone").unwrap();
    fs::remove_file(ds.join("a")).unwrap();
    t.sync();
    let (written, err) = write_mib(&ds, "c", 40).expect_err("the quota forgot the snapshot after a rollback");
    assert!(is_quota_error(&err), "{err}");
    assert!(written <= 28 * MIB, "wrote {written} bytes after a rollback");
    fs::remove_file(ds.join("c")).unwrap();

    // The snapshot gone, its blocks are free again.
    p.destroy_snapshot("zone", "s1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        t.sync();
        match write_mib(&ds, "d", 40) {
            Ok(()) => break,
            Err((_, e)) if is_quota_error(&e) && Instant::now() < deadline => {
                // The cleaner frees the deleted snapshot's blocks in the background.
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((w, e)) => panic!("after the snapshot was destroyed: wrote {w}: {e}\n{}", qgroups(t)),
        }
    }
}

#[test]
fn snapshots_count_against_the_quota() {
    let Some(t) = btrfs_pool() else { return };
    check_snapshots_count_against_the_quota(&t, &t.pool);
}

#[test]
fn snapshots_count_against_the_quota_with_classic_qgroups() {
    let Some(t) = btrfs_pool() else { return };
    for args in [["quota", "disable"], ["quota", "enable"]] {
        let out = Command::new("btrfs").args(args).arg(t.mountpoint()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pool = Pool::open(t.config()).unwrap();
    check_snapshots_count_against_the_quota(&t, &pool);
}

/// Gives `path` `bytes` of allocated blocks (`fallocate`) and writes a
/// little real data: the dataset holds them, and no page cache does (a
/// subvolume's destroy evicts its cached pages, which would time the
/// cache, not the dataset).
fn allocate(path: &std::path::Path, bytes: u64) {
    use std::os::fd::AsRawFd;
    let f = fs::File::create(path).unwrap();
    // SAFETY: fallocate on a descriptor we own, no pointers.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
    std::os::unix::fs::FileExt::write_all_at(&f, b"some real data", bytes / 2).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn snapshot_and_rollback_take_the_same_time_whatever_the_size() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    let mut times = Vec::new();
    for (name, mib) in [("small", 1), ("large", 512)] {
        let ds = p.create(name).unwrap();
        allocate(&ds.join("data"), mib * MIB);
        // Committed first: a snapshot commits what is still dirty, which
        // takes the time of the writing, not of the dataset's size.
        t.sync();
        let start = Instant::now();
        p.snapshot(name, "s").unwrap();
        p.rollback(name, "s").unwrap();
        p.end_rollback(name).unwrap();
        times.push(start.elapsed());
        assert!(p.usage(name).unwrap().used_bytes >= mib * MIB, "{name} holds its data");
    }
    println!("snapshot+rollback: 1 MiB {:?}, 512 MiB {:?}", times[0], times[1]);
    assert!(times[1] < Duration::from_secs(2), "{times:?}");
    assert!(times[1] < times[0] * 10 + Duration::from_millis(100), "{times:?}");
}

#[test]
fn the_dir_backend_cannot_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let config = PoolConfig { name: "zones".into(), mountpoint: tmp.path().join("zones"), source: PoolSource::Dir };
    let p = Pool::open(&config).unwrap();
    p.create("zone").unwrap();
    let err = p.snapshot("zone", "s1").unwrap_err();
    assert!(matches!(err, PoolError::Unsupported { backend: "dir", .. }), "{err}");
    assert_eq!(err.to_string(), "the dir pool backend cannot snapshot datasets");
    assert!(p.list_snapshots("zone").unwrap().is_empty());
    assert!(matches!(p.rollback("zone", "s1"), Err(PoolError::NotFound(_))));
    assert_eq!(p.list().unwrap(), ["zone"], "no hidden directory shows up as a dataset");
    p.destroy("zone").unwrap();
}
