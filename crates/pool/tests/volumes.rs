//! Volumes (a VM's disks as files in a dataset) against the real kernel:
//! sparse until written, bounded by the dataset's quota, cloned by reflink
//! in O(1) on btrfs, resized only upwards unless forced. The btrfs cases
//! need root (skipped otherwise, failing under `CI`); the dir backend's
//! run anywhere.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use zonevisor_pool::{Pool, PoolConfig, PoolError, PoolSource};

/// Bytes the file at `path` takes on disk.
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// Writes 1 MiB chunks of a non-repeating pattern into the volume at
/// `path`, from `offset` on, until `max` bytes are written or a write (or
/// the periodic `fdatasync`) fails; returns the bytes written and the error.
fn write_volume(path: &Path, offset: u64, max: u64, seed: u64) -> (u64, Option<std::io::Error>) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut chunk = vec![0u8; MIB as usize];
    let mut n = seed;
    let mut written = 0;
    while written < max {
        for word in chunk.chunks_mut(8) {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            word.copy_from_slice(&n.to_le_bytes());
        }
        let step = f.write_all_at(&chunk, offset + written).and_then(|()| {
            if (written / MIB) % 4 == 3 {
                f.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = step {
            return (written, Some(e));
        }
        written += MIB;
    }
    (written, f.sync_data().err())
}

#[test]
fn volume_lifecycle_on_btrfs() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    p.create("vm").unwrap();
    let disk = p.create_volume("vm", "disk0", 1 << 30).unwrap();
    assert_eq!(disk, t.mountpoint().join("vm/disk0"));
    assert_eq!(p.volume_path("vm", "disk0").unwrap(), disk);
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 1 << 30);
    assert_eq!(fs::metadata(&disk).unwrap().permissions().mode() & 0o7777, 0o600);
    assert_eq!(allocated(&disk), 0, "a new volume is all hole");
    assert!(matches!(p.create_volume("vm", "disk0", MIB), Err(PoolError::VolumeExists(_))));
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 1 << 30, "the existing volume is untouched");

    // Growing is free; shrinking is refused, naming both sizes, unless forced.
    assert_eq!(p.resize_volume("vm", "disk0", 2 << 30, false).unwrap(), 1 << 30);
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 2 << 30);
    assert_eq!(allocated(&disk), 0);
    let err = p.resize_volume("vm", "disk0", 512 * MIB, false).unwrap_err();
    assert!(
        matches!(err, PoolError::Shrink { current, requested, .. } if current == 2 << 30 && requested == 512 * MIB)
    );
    let msg = err.to_string();
    assert!(msg.contains("2147483648") && msg.contains("536870912") && msg.contains("forced"), "{msg}");
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 2 << 30);
    assert_eq!(p.resize_volume("vm", "disk0", 512 * MIB, true).unwrap(), 2 << 30);
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 512 * MIB);
    assert_eq!(p.resize_volume("vm", "disk0", 512 * MIB, false).unwrap(), 512 * MIB, "same size: nothing to do");

    // Names are one plain component; datasets must exist.
    for bad in ["", ".", "..", ".hidden", "a/b", "../vm2", "sp ace"] {
        assert!(matches!(p.create_volume("vm", bad, MIB), Err(PoolError::BadVolumeName(_))), "{bad:?}");
        assert!(matches!(p.volume_path("vm", bad), Err(PoolError::BadVolumeName(_))), "{bad:?}");
        assert!(matches!(p.resize_volume("vm", bad, MIB, true), Err(PoolError::BadVolumeName(_))), "{bad:?}");
        assert!(matches!(p.destroy_volume("vm", bad), Err(PoolError::BadVolumeName(_))), "{bad:?}");
    }
    assert!(matches!(p.create_volume("nope", "disk0", MIB), Err(PoolError::NotFound(_))));
    assert!(matches!(p.create_volume("../x", "disk0", MIB), Err(PoolError::BadName(_))));
    assert!(matches!(p.volume_size("vm", "disk9"), Err(PoolError::VolumeNotFound(_))));
    assert!(matches!(p.resize_volume("vm", "disk9", MIB, false), Err(PoolError::VolumeNotFound(_))));

    // What is not a regular file is no volume, and a symlink is not followed.
    fs::create_dir(disk.with_file_name("dir")).unwrap();
    std::os::unix::fs::symlink(&disk, disk.with_file_name("link")).unwrap();
    for odd in ["dir", "link"] {
        assert!(matches!(p.volume_size("vm", odd), Err(PoolError::VolumeNotFound(_))), "{odd}");
        assert!(matches!(p.resize_volume("vm", odd, 4 << 30, false), Err(PoolError::VolumeNotFound(_))), "{odd}");
    }
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 512 * MIB, "not resized through the link");

    p.destroy_volume("vm", "disk0").unwrap();
    p.destroy_volume("vm", "disk0").unwrap();
    assert!(!disk.exists());

    // A read-only dataset (an image's) takes no new volume, and a failed
    // create leaves nothing.
    p.set_readonly("vm", true).unwrap();
    let err = p.create_volume("vm", "disk1", MIB).unwrap_err();
    assert!(matches!(&err, PoolError::Io { source, .. } if source.raw_os_error() == Some(libc::EROFS)), "{err}");
    assert!(!disk.with_file_name("disk1").exists());

    // An instance without an image: an empty dataset, private, with its quota.
    let bare = p.create("bare").unwrap();
    assert_eq!(fs::metadata(&bare).unwrap().permissions().mode() & 0o7777, 0o700);
    p.set_quota("bare", Some(64 * MIB)).unwrap();
    p.create_volume("bare", "disk0", 10 << 30).expect("a sparse disk larger than the quota");
}

/// A sparse volume costs nothing until written; what is written counts
/// against the dataset's quota and stops at it with `EDQUOT`.
fn check_sparse_volume_is_bounded_by_the_quota(t: &TestPool, p: &Pool) {
    p.create("vm").unwrap();
    let limit = 16 * MIB;
    p.set_quota("vm", Some(limit)).unwrap();
    let disk = p.create_volume("vm", "disk0", 1 << 30).unwrap();
    t.sync();
    let usage = p.usage("vm").unwrap();
    assert!(usage.used_bytes < MIB, "a 1 GiB sparse volume costs {usage:?}");

    let (written, err) = write_volume(&disk, 100 * MIB, 64 * MIB, 1);
    let err = err.expect("writing 64 MiB into a volume under a 16 MiB quota succeeded");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    t.sync();
    let usage = p.usage("vm").unwrap();
    println!("wrote {written} bytes into a sparse volume under a {limit}-byte quota before {err}; {usage:?}");
    assert!(written >= limit - 4 * MIB && written <= limit + 2 * MIB, "wrote {written}");
    assert!(usage.used_bytes + 4 * MIB >= written && usage.used_bytes <= limit + 2 * MIB, "{usage:?}");
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 1 << 30, "the disk's size is not its usage");
}

#[test]
fn sparse_volume_is_free_until_written_and_bounded_by_the_quota() {
    let Some(t) = btrfs_pool() else { return };
    if let Some(mode) = quota_mode(&t) {
        assert_eq!(mode, "squota", "simple quotas where the kernel has them");
    }
    check_sparse_volume_is_bounded_by_the_quota(&t, &t.pool);
}

/// The filesystem's quota mode as sysfs shows it (kernel 6.7+).
fn quota_mode(t: &TestPool) -> Option<String> {
    let out = Command::new("blkid").args(["-o", "value", "-s", "UUID"]).arg(t.loop_file()).output().unwrap();
    let uuid = String::from_utf8(out.stdout).unwrap();
    fs::read_to_string(format!("/sys/fs/btrfs/{}/qgroups/mode", uuid.trim())).ok().map(|m| m.trim().to_string())
}

/// Turns simple quotas off and classic qgroups on, and reopens the pool.
fn with_classic_qgroups(t: &TestPool) -> Pool {
    for args in [["quota", "disable"], ["quota", "enable"]] {
        let out = Command::new("btrfs").args(args).arg(t.mountpoint()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pool = Pool::open(t.config()).unwrap();
    if let Some(mode) = quota_mode(t) {
        assert_eq!(mode, "qgroup");
    }
    pool
}

#[test]
fn sparse_volume_is_bounded_by_the_quota_with_classic_qgroups() {
    let Some(t) = btrfs_pool() else { return };
    let pool = with_classic_qgroups(&t);
    check_sparse_volume_is_bounded_by_the_quota(&t, &pool);
}

/// A clone of a 64 MiB image volume takes no time and no space until
/// written; then what it writes counts against its dataset's quota, and
/// the image never changes.
fn check_clone_costs_nothing_until_written(t: &TestPool, p: &Pool) {
    p.create("img").unwrap();
    let image = p.create_volume("img", "disk.raw", 64 * MIB).unwrap();
    assert_eq!(write_volume(&image, 0, 64 * MIB, 7).0, 64 * MIB);
    p.set_readonly("img", true).unwrap();
    let image_bytes = fs::read(&image).unwrap();
    p.create("vm").unwrap();
    let limit = 32 * MIB;
    p.set_quota("vm", Some(limit)).unwrap();
    t.sync();
    let before = p.stats().unwrap();

    let start = Instant::now();
    let disk = p.clone_volume(&image, "vm", "disk0", 128 * MIB).unwrap();
    let took = start.elapsed();
    t.sync();
    let after = p.stats().unwrap();
    let usage = p.usage("vm").unwrap();
    println!("clone of a 64 MiB volume: {took:?}; free {} -> {}; {usage:?}", before.free_bytes, after.free_bytes);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(before.free_bytes.saturating_sub(after.free_bytes) < 4 * MIB, "{before:?} -> {after:?}");
    assert!(usage.used_bytes < MIB, "the clone is charged {usage:?} before any write");
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 128 * MIB, "grown to the size asked");
    let cloned = fs::read(&disk).unwrap();
    assert!(cloned[..64 * MIB as usize] == image_bytes[..], "the clone holds the image");
    assert!(cloned[64 * MIB as usize..].iter().all(|&b| b == 0), "and zeros beyond");

    // Overwriting the shared blocks, then writing new ones, is charged.
    let (written, err) = write_volume(&disk, 0, 128 * MIB, 99);
    let err = err.expect("writing 128 MiB into a clone under a 32 MiB quota succeeded");
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    t.sync();
    println!("wrote {written} bytes into the clone before {err}; {:?}", p.usage("vm").unwrap());
    assert!(written >= limit - 4 * MIB && written <= limit + 2 * MIB, "wrote {written}");
    assert!(fs::read(&image).unwrap() == image_bytes, "the image changed under its clone");
}

#[test]
fn clone_volume_is_a_reflink_that_costs_nothing_until_written() {
    let Some(t) = btrfs_pool() else { return };
    if let Some(mode) = quota_mode(&t) {
        assert_eq!(mode, "squota", "simple quotas where the kernel has them");
    }
    check_clone_costs_nothing_until_written(&t, &t.pool);
}

#[test]
fn clone_volume_costs_nothing_until_written_with_classic_qgroups() {
    let Some(t) = btrfs_pool() else { return };
    let pool = with_classic_qgroups(&t);
    check_clone_costs_nothing_until_written(&t, &pool);
}

#[test]
fn clone_volume_refuses_what_it_cannot_do_and_leaves_nothing() {
    let Some(t) = btrfs_pool() else { return };
    let p = &t.pool;
    p.create("img").unwrap();
    let image = p.create_volume("img", "disk.raw", 8 * MIB).unwrap();
    p.create("vm").unwrap();

    // Smaller than its image: refused, naming both sizes.
    let err = p.clone_volume(&image, "vm", "disk0", 4 * MIB).unwrap_err();
    assert!(matches!(err, PoolError::Shrink { current, requested, .. } if current == 8 * MIB && requested == 4 * MIB));
    // The same size is fine.
    p.clone_volume(&image, "vm", "same", 8 * MIB).unwrap();
    assert!(matches!(p.clone_volume(&image, "vm", "same", 8 * MIB), Err(PoolError::VolumeExists(_))));

    // No source, or a source that is not a regular file (not followed).
    let link = t.dir.path().join("link");
    std::os::unix::fs::symlink(&image, &link).unwrap();
    for source in [t.mountpoint().join("img/missing"), link, t.mountpoint().join("img")] {
        let err = p.clone_volume(&source, "vm", "disk0", 8 * MIB).unwrap_err();
        assert!(matches!(err, PoolError::VolumeNotFound(_)), "{}: {err}", source.display());
    }

    // btrfs never copies: a source on another filesystem is refused.
    let outside = t.dir.path().join("outside.raw");
    fs::File::create(&outside).unwrap().set_len(MIB).unwrap();
    let err = p.clone_volume(&outside, "vm", "disk0", MIB).unwrap_err();
    assert!(matches!(&err, PoolError::Io { source, .. } if source.raw_os_error() == Some(libc::EXDEV)), "{err}");

    for bad in ["..", "a/b"] {
        assert!(matches!(p.clone_volume(&image, "vm", bad, 8 * MIB), Err(PoolError::BadVolumeName(_))), "{bad}");
    }
    assert!(matches!(p.clone_volume(&image, "none", "disk0", 8 * MIB), Err(PoolError::NotFound(_))));
    let names: Vec<_> = fs::read_dir(t.mountpoint().join("vm")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["same"], "failed clones left nothing");
}

fn dir_pool(root: &Path) -> Pool {
    let config = PoolConfig { name: "zones".into(), mountpoint: root.join("zones"), source: PoolSource::Dir };
    Pool::open(&config).unwrap()
}

#[test]
fn dir_backend_volumes_clone_by_copy_where_it_cannot_reflink() {
    let tmp = tempfile::tempdir().unwrap();
    let p = dir_pool(tmp.path());
    p.create("img").unwrap();
    let image = p.create_volume("img", "disk.raw", 256 * MIB).unwrap();
    image_pattern(&image);
    p.set_readonly("img", true).unwrap();
    p.create("vm").unwrap();
    let disk = p.clone_volume(&image, "vm", "disk0", 512 * MIB).unwrap();
    assert_eq!(p.volume_size("vm", "disk0").unwrap(), 512 * MIB);
    let mut buf = [0u8; 5];
    let f = fs::File::open(&disk).unwrap();
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"first");
    f.read_exact_at(&mut buf, 200 * MIB).unwrap();
    assert_eq!(&buf, b"later");
    // Reflinked or copied, the holes stay holes.
    assert!(allocated(&disk) < 4 * MIB, "{} bytes allocated", allocated(&disk));
    let err = p.resize_volume("vm", "disk0", MIB, false).unwrap_err();
    assert!(matches!(err, PoolError::Shrink { .. }), "{err}");
    p.destroy_volume("vm", "disk0").unwrap();
    assert!(!disk.exists());
    // The dir backend still enforces no quota, and says so.
    assert!(matches!(p.set_quota("vm", Some(MIB)), Err(PoolError::Unsupported { backend: "dir", .. })));
}

/// Writes markers at 0 and at 200 MiB of the file at `path`.
fn image_pattern(path: &Path) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(b"first", 0).unwrap();
    f.write_all_at(b"later", 200 * MIB).unwrap();
    f.sync_all().unwrap();
}
