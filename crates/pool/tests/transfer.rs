//! Sending snapshots from one pool and receiving them into another (btrfs
//! send and receive), on the real kernel: each test has two pools on their
//! own loop files. Needs root and btrfs-progs; skipped otherwise (fails
//! under `CI`).

mod common;

use std::fs;

use common::*;
use zonevisor_pool::{Pool, PoolError, Received};

/// `(staged, snapshot)` moves, dated as received.
fn moves(names: &[&str]) -> Vec<Received> {
    names.iter().map(|n| Received { staged: n.to_string(), snapshot: n.to_string(), created: None }).collect()
}

/// The btrfs send stream of `snap` of `name` (from `parent`).
fn stream(p: &Pool, name: &str, snap: &str, parent: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = p
        .send_snapshot(name, snap, parent, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
    assert_eq!(n as usize, out.len());
    out
}

/// Receives `data` as `snap` (from `parent`) into `name` of `p`, in
/// chunks of 4 KiB as a network would hand them over.
fn receive(p: &Pool, name: &str, snap: &str, parent: Option<&str>, data: &[u8]) -> Result<u64, PoolError> {
    let mut r = p.receive_section(name, snap, parent)?;
    for chunk in data.chunks(4096) {
        r.write(chunk)?;
    }
    r.finish()
}

#[test]
fn snapshots_go_from_one_pool_to_another_whole_then_incrementally() {
    let (Some(a), Some(b)) = (btrfs_pool(), btrfs_pool()) else { return };
    let ds = a.pool.create("vm").unwrap();
    write_file(&ds.join("big"), 8 * MIB).unwrap();
    fs::write(ds.join("note"), "first").unwrap();
    a.pool.snapshot("vm", "s1").unwrap();
    fs::write(ds.join("note"), "second").unwrap();
    a.pool.snapshot("vm", "s2").unwrap();

    b.pool.begin_receive("vm").unwrap();
    receive(&b.pool, "vm", "s1", None, &stream(&a.pool, "vm", "s1", None)).unwrap();
    receive(&b.pool, "vm", "s2", Some("s1"), &stream(&a.pool, "vm", "s2", Some("s1"))).unwrap();
    assert!(b.pool.list().unwrap().is_empty(), "nothing is visible before the commit");
    assert!(b.pool.list_snapshots("vm").unwrap().is_empty());
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_000_000);
    let mut m = moves(&["s1", "s2"]);
    m[0].created = Some(when);
    b.pool.commit_receive("vm", &m).unwrap();
    assert_eq!(b.pool.list_snapshots("vm").unwrap()[0].created, when, "dated as taken where it came from");

    let got = b.pool.dataset_path("vm");
    assert_eq!(fs::read_to_string(got.join("note")).unwrap(), "second");
    assert_eq!(fs::read(got.join("big")).unwrap(), fs::read(ds.join("big")).unwrap());
    let s1 = b.pool.snapshot_path("vm", "s1").unwrap();
    assert_eq!(fs::read_to_string(s1.join("note")).unwrap(), "first");
    assert!(fs::write(s1.join("note"), "x").is_err(), "a received snapshot is read-only");
    fs::write(got.join("note"), "written on b").unwrap();
    let names: Vec<String> = b.pool.list_snapshots("vm").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["s1", "s2"]);
    assert!(!b.mountpoint().join(".receive/vm").exists());
    // A's s2 is B's s2's origin: an incremental stream from s2 applies to B.
    let id_a = a.pool.snapshot_identity("vm", "s2").unwrap();
    let id_b = b.pool.snapshot_identity("vm", "s2").unwrap();
    assert!(id_b.known_as.contains(&id_a.sent_as), "{id_a:?} {id_b:?}");

    fs::write(ds.join("note"), "third").unwrap();
    a.pool.snapshot("vm", "s3").unwrap();
    b.pool.begin_receive("vm").unwrap();
    receive(&b.pool, "vm", "s3", Some("s2"), &stream(&a.pool, "vm", "s3", Some("s2"))).unwrap();
    b.pool.commit_receive("vm", &moves(&["s3"])).unwrap();
    let s3 = b.pool.snapshot_path("vm", "s3").unwrap();
    assert_eq!(fs::read_to_string(s3.join("note")).unwrap(), "third");
    assert_eq!(fs::read_to_string(got.join("note")).unwrap(), "written on b", "the dataset itself is the caller's");
    // A snapshot destroyed and taken again is dated anew.
    b.pool.destroy_snapshot("vm", "s1").unwrap();
    b.pool.snapshot("vm", "s1").unwrap();
    assert_ne!(b.pool.list_snapshots("vm").unwrap().iter().find(|s| s.name == "s1").unwrap().created, when);
    // Its snapshots count with the dataset: destroying it takes them along.
    b.pool.destroy("vm").unwrap();
    assert!(!b.mountpoint().join(".snapshots/vm").exists());
    assert!(b.pool.list_snapshots("vm").unwrap().is_empty());
}

#[test]
fn a_stream_cut_short_or_corrupted_or_aimed_elsewhere_leaves_nothing() {
    let (Some(a), Some(b)) = (btrfs_pool(), btrfs_pool()) else { return };
    let ds = a.pool.create("vm").unwrap();
    write_file(&ds.join("big"), 2 * MIB).unwrap();
    a.pool.snapshot("vm", "s1").unwrap();
    let good = stream(&a.pool, "vm", "s1", None);

    let mut corrupted = good.clone();
    let at = corrupted.len() / 2;
    corrupted[at] ^= 0x55;
    for (what, data, snap) in [
        ("cut short", &good[..good.len() - 100], "s1"),
        ("corrupted", &corrupted[..], "s1"),
        ("named otherwise", &good[..], "other"),
        ("no stream at all", &b"hello"[..], "s1"),
    ] {
        b.pool.begin_receive("vm").unwrap();
        let r = receive(&b.pool, "vm", snap, None, data);
        assert!(r.is_err(), "{what}: received");
        println!("{what}: {}", r.unwrap_err());
        b.pool.abandon_receive("vm").unwrap();
        assert!(!b.mountpoint().join(".receive/vm").exists(), "{what}");
        assert!(b.pool.list().unwrap().is_empty(), "{what}");
    }
    // An incremental stream whose parent is not the one named.
    b.pool.begin_receive("vm").unwrap();
    receive(&b.pool, "vm", "s1", None, &good).unwrap();
    fs::write(ds.join("x"), "y").unwrap();
    a.pool.snapshot("vm", "s2").unwrap();
    let inc = stream(&a.pool, "vm", "s2", Some("s1"));
    let local = b.pool.create("local").unwrap();
    fs::write(local.join("z"), "z").unwrap();
    b.pool.snapshot("local", "p").unwrap();
    b.pool.begin_receive("local").unwrap();
    let r = receive(&b.pool, "local", "s2", Some("p"), &inc);
    assert!(matches!(r, Err(PoolError::BadStream(_))), "{r:?}");
    // And the next receive succeeds.
    b.pool.abandon_receive("local").unwrap();
    receive(&b.pool, "vm", "s2", Some("s1"), &inc).unwrap();
    b.pool.commit_receive("vm", &moves(&["s1", "s2"])).unwrap();
    assert_eq!(fs::read_to_string(b.pool.dataset_path("vm").join("x")).unwrap(), "y");
    assert!(b.pool.pending_receives().unwrap().is_empty());
}
