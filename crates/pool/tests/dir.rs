//! The dir backend: plain directories, copied clones, marker-file read-only,
//! no quotas. Runs unprivileged; the mount-based cases need root.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use zonevisor_pool::{Capabilities, Pool, PoolConfig, PoolError, PoolSource};

fn dir_pool(root: &Path) -> Pool {
    let config = PoolConfig { name: "zones".into(), mountpoint: root.join("zones"), source: PoolSource::Dir };
    let pool = Pool::open(&config).unwrap();
    assert_eq!(Pool::open(&config).unwrap().mountpoint(), pool.mountpoint(), "open is idempotent");
    pool
}

#[test]
fn dir_backend_clone_readonly_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let p = dir_pool(tmp.path());
    assert_eq!(p.capabilities(), Capabilities { backend: "dir", o1_clone: false, quota: false });
    let img = p.create("img").unwrap();
    assert!(matches!(p.create("img"), Err(PoolError::Exists(_))));
    fs::create_dir(img.join("etc")).unwrap();
    fs::write(img.join("etc/passwd"), "root:x:0:0\n").unwrap();
    fs::set_permissions(img.join("etc/passwd"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(img.join("big"), vec![7u8; 10_000]).unwrap();
    fs::hard_link(img.join("big"), img.join("big.link")).unwrap();
    std::os::unix::fs::symlink("etc/passwd", img.join("link")).unwrap();

    p.set_readonly("img", true).unwrap();
    assert!(p.is_readonly("img").unwrap());
    assert_eq!(p.list().unwrap(), ["img"], "the marker is not a dataset");

    let zone = p.clone_from("img", "zone").unwrap();
    assert!(!p.is_readonly("zone").unwrap());
    assert_eq!(fs::read_to_string(zone.join("etc/passwd")).unwrap(), "root:x:0:0\n");
    assert_eq!(fs::metadata(zone.join("etc/passwd")).unwrap().mode() & 0o777, 0o640);
    assert_eq!(fs::read_link(zone.join("link")).unwrap(), Path::new("etc/passwd"));
    assert_eq!(fs::metadata(zone.join("big.link")).unwrap().nlink(), 2, "hard links kept");
    assert!(matches!(p.clone_from("img", "zone"), Err(PoolError::Exists(_))));
    assert!(matches!(p.clone_from("missing", "zone2"), Err(PoolError::NotFound(_))));
    assert!(!p.dataset_path("zone2").exists());
    assert_eq!(p.list().unwrap(), ["img", "zone"]);

    let err = p.set_quota("zone", Some(16 * MIB)).unwrap_err();
    assert!(matches!(err, PoolError::Unsupported { backend: "dir", .. }), "{err}");
    let usage = p.usage("img").unwrap();
    assert_eq!(usage.used_bytes, 11 + 10_000 + "etc/passwd".len() as u64);
    assert_eq!(usage.quota_bytes, None);

    p.destroy("img").unwrap();
    p.destroy("img").unwrap();
    assert!(!img.exists() && !p.mountpoint().join(".img.readonly").exists());
    assert!(matches!(p.is_readonly("img"), Err(PoolError::NotFound(_))));
    p.create("img").unwrap();
    assert!(!p.is_readonly("img").unwrap(), "a new dataset is writable");
    p.set_readonly("zone", true).unwrap();
    p.set_readonly("zone", false).unwrap();
    assert!(!p.is_readonly("zone").unwrap());
}

#[test]
fn bad_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = dir_pool(tmp.path());
    p.create("good").unwrap();
    let long = "x".repeat(129);
    for bad in ["", ".", "..", ".hidden", "a/b", "../escape", "config", "sp ace", "tab\t", long.as_str()] {
        assert!(matches!(p.create(bad), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(matches!(p.clone_from("good", bad), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(matches!(p.clone_from(bad, "fine"), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(matches!(p.destroy(bad), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(matches!(p.set_readonly(bad, true), Err(PoolError::BadName(_))), "{bad:?}");
        assert!(!p.exists(bad));
    }
    assert!(p.exists("good") && !p.exists("fine") && !p.exists("config"));
    assert_eq!(p.list().unwrap(), ["good"]);
}

/// Unmounts a mount made by a test, when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::empty());
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Unmount {
    fs::create_dir_all(at).unwrap();
    let options = format!("size={size}");
    nix::mount::mount(Some("tmpfs"), at, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(options.as_str())).unwrap();
    Unmount(at.to_path_buf())
}

#[test]
fn failed_clone_leaves_nothing() {
    if !host_can(false) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A 2 MiB pool holding a 1.5 MiB image has no room for its copy.
    let _mount = mount_tmpfs(&tmp.path().join("zones"), "2m");
    let p = dir_pool(tmp.path());
    let img = p.create("img").unwrap();
    fs::write(img.join("blob"), vec![1u8; 1536 * 1024]).unwrap();
    let err = p.clone_from("img", "zone").unwrap_err();
    assert!(matches!(err, PoolError::Command { .. }), "{err}");
    assert!(!p.exists("zone") && !p.dataset_path("zone").exists());
    assert_eq!(p.list().unwrap(), ["img"]);
}

#[test]
fn a_pool_off_any_block_device_says_fair_io_is_not_enforced() {
    if !host_can(false) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let _mount = mount_tmpfs(&tmp.path().join("zones"), "2m");
    let p = dir_pool(tmp.path());
    let why = p.fair_io().unwrap_err();
    assert!(why.ends_with("/zones is not on a block device"), "{why}");
}

#[test]
fn destroy_refuses_a_dataset_with_mounts_inside() {
    if !host_can(false) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = dir_pool(tmp.path());
    let zone = p.create("zone").unwrap();
    let mount = mount_tmpfs(&zone.join("proc"), "1m");
    fs::write(zone.join("proc/precious"), "x").unwrap();
    let err = p.destroy("zone").unwrap_err();
    assert!(matches!(err, PoolError::Busy { .. }), "{err}");
    assert!(zone.join("proc/precious").exists());
    drop(mount);
    p.destroy("zone").unwrap();
    assert!(!zone.exists());
}
