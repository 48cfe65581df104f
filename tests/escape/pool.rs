//! The pool: nothing in it gains privileges on the host, no zone takes
//! more of it than its quota, the state store keeps a reserve, and images
//! and instances never share a dataset.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::*;
use crate::probe::{self, zsh, Member};

/// The unprivileged host user the attacks run as.
const NOBODY: u32 = 65534;

/// Runs `path args` as `nobody`: its output, or how it failed to start.
fn as_nobody(path: &Path, args: &[&str]) -> String {
    match Command::new(path).args(args).uid(NOBODY).gid(NOBODY).output() {
        Ok(out) => format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        Err(e) => format!("spawn: {e}"),
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `vfs_cap_data` revision 2 (not namespaced: valid on the host) with
/// CAP_SETUID (7) permitted and effective.
fn cap_setuid_v2() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // VFS_CAP_REVISION_2 | EFFECTIVE
    v.extend_from_slice(&(1u32 << 7).to_le_bytes()); // permitted, low word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes()); // permitted, high word
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable, high word
    v
}

fn has_xattr(path: &Path, name: &str) -> bool {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings; a null buffer of size 0 asks for the size only.
    unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) > 0 }
}

/// Hole 1: a file the zone's root makes setuid-root, and setuid-root or
/// file-capability members of an image, gave host root to any host user
/// who ran them. Now the pool is root's alone and mounted nosuid; inside
/// the zone setuid still works.
#[test]
fn setuid_files_and_capabilities_in_the_pool_give_nothing_on_the_host() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    // As under /var/lib: the directories above the daemon's root are
    // world-traversable; the daemon's own must not be.
    chmod(h.dir.path(), 0o711);
    let img = h.install(busybox());
    let uuid = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let r = zsh(&h, &uuid, "cp /probes/escape /suid && chmod 4755 /suid && /probes/escape as 1000 /suid euid");
    assert!(r.contains("euid=0"), "setuid must work inside the zone: {r}");

    // An image with a setuid-root member and one with a host-valid file capability.
    let exe = std::fs::read(probes.join("escape")).unwrap();
    let cap = cap_setuid_v2();
    let image_uuid = uuid::Uuid::new_v4().to_string();
    let (m, f) = probe::image(
        &h,
        &image_uuid,
        &[
            Member { path: "suidprobe", mode: 0o4755, data: &exe, xattrs: &[] },
            Member { path: "capprobe", mode: 0o755, data: &exe, xattrs: &[("security.capability", &cap)] },
        ],
        0,
    );
    h.imgadm(&["install", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()]).ok();

    let zone_file = h.pool().join(&uuid).join("root/suid");
    let img_root = h.pool().join(&image_uuid).join("root");
    assert_ne!(std::fs::metadata(&zone_file).unwrap().mode() & 0o4000, 0, "the zone's file is setuid on disk");
    assert_eq!(std::fs::metadata(&zone_file).unwrap().uid(), 0, "and root's on disk");
    assert_ne!(std::fs::metadata(img_root.join("suidprobe")).unwrap().mode() & 0o4000, 0);
    assert!(has_xattr(&img_root.join("capprobe"), "security.capability"), "the image kept its capability");

    // 1. No host user reaches them.
    for (what, file, args) in [
        ("the zone's setuid file", zone_file.clone(), vec!["euid"]),
        ("the image's setuid member", img_root.join("suidprobe"), vec!["euid"]),
        ("the image's capability member", img_root.join("capprobe"), vec!["root"]),
    ] {
        let out = as_nobody(&file, &args);
        assert!(out.contains("Permission denied"), "nobody reached {what}: {out}");
    }
    for dir in [h.root.clone(), h.pool(), h.pool().join(&uuid), h.pool().join(&image_uuid)] {
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "{}", dir.display());
    }

    // 2. Even when an admin opens the way, they give no privilege: nosuid.
    // (The image's dataset is read-only: made writable for the chmod.)
    let image_ds = h.pool().join(&image_uuid);
    let ro = |v: &str| {
        let out = Command::new("btrfs").args(["property", "set"]).arg(&image_ds).args(["ro", v]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    ro("false");
    for dir in [h.root.clone(), h.pool(), h.pool().join(&uuid), image_ds.clone()] {
        chmod(&dir, 0o711);
    }
    let suid = as_nobody(&zone_file, &["euid"]);
    let image_suid = as_nobody(&img_root.join("suidprobe"), &["euid"]);
    let image_cap = as_nobody(&img_root.join("capprobe"), &["root"]);
    for dir in [h.root.clone(), h.pool(), h.pool().join(&uuid), image_ds.clone()] {
        chmod(&dir, 0o700);
    }
    ro("true");
    assert_eq!(suid.trim(), format!("euid={NOBODY}"), "the zone's setuid file ran as root on the host");
    assert_eq!(image_suid.trim(), format!("euid={NOBODY}"), "the image's setuid member ran as root");
    assert!(image_cap.contains("root: EPERM"), "the image's file capability counted on the host: {image_cap}");
}

/// Hole 3: `vmadm create` with an installed image's uuid failed, and its
/// rollback destroyed the image's dataset. Now the uuid is refused up
/// front, and the image (and a dataset left by someone else) is untouched.
#[test]
fn a_create_with_an_images_uuid_leaves_the_image_alone() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "uuid": img}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("uuid") && r.stderr.contains("image"), "{}", r.stderr);
    assert!(h.pool().join(&img).join("root/bin/busybox").exists(), "the image's dataset was destroyed");
    assert!(h.imgadm(&["list", "-H", "-o", "uuid"]).ok().contains(&img));
    // The image still serves.
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    assert_eq!(zsh(&h, &uuid, "echo ok").trim(), "ok");

    // A dataset the store does not know (left by hand, or by a crash of
    // something else) is not the create's to destroy either.
    let stray = uuid::Uuid::new_v4().to_string();
    let out = Command::new("btrfs").args(["subvolume", "create"]).arg(h.pool().join(&stray)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(h.pool().join(&stray).join("keep"), "data").unwrap();
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "uuid": stray}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(h.pool().join(&stray).join("keep")).unwrap(), "data");

    // Nor may an image take an instance's uuid.
    let (m, f) = probe::image(&h, &uuid, &[Member { path: "x", mode: 0o644, data: b"x", xattrs: &[] }], 0);
    let r = h.imgadm(&["install", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()]);
    assert_ne!(r.code, 0, "an image took the instance's uuid");
    assert_eq!(zsh(&h, &uuid, "cat /bin/busybox >/dev/null && echo ok").trim(), "ok", "the instance's dataset");
}

/// Parses "wrote N MiB: ERRNO".
fn wrote(out: &str) -> (u64, String) {
    let line = out.lines().find(|l| l.starts_with("wrote ")).unwrap_or_else(|| panic!("no fill result: {out}"));
    let n = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (n, line.rsplit(": ").next().unwrap().to_string())
}

/// Hole 4: a zone with `quota: 1` made a btrfs subvolume inside its root,
/// which no quota held, filled the pool, and the state store then failed
/// for everyone. Now a zone can make no subvolume or snapshot, reflinks
/// take no new space, every dataset together stops short of the pool's
/// reserve, and the daemon keeps writing its state.
#[test]
fn a_zone_cannot_fill_the_pool_past_its_quota() {
    let Some(h) = TestHost::with_pool_size("2G") else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let small = h.create_ok(&probe::payload(&img, &probes, json!({"quota": 1})));

    // Nested subvolumes and snapshots: refused.
    let r = zsh(&h, &small, "/probes/escape subvol / nested; /probes/escape snap / / snap1");
    assert!(r.contains("subvol: EPERM") && r.contains("snap: EPERM"), "{r}");
    assert!(!h.pool().join(&small).join("root/nested").exists() && !h.pool().join(&small).join("root/snap1").exists());

    // Reflinks share blocks: 16 clones of 128 MiB take no more of the pool,
    // and writing them is charged to the zone's quota.
    let free = |h: &TestHost| nix::sys::statvfs::statvfs(&h.pool()).unwrap().blocks_available() as u64 * 4096;
    let r = zsh(&h, &small, "dd if=/dev/urandom of=/base bs=1M count=128 2>/dev/null; sync");
    assert!(!r.contains("EDQUOT"), "{r}");
    let before = free(&h);
    let r = zsh(&h, &small, "/probes/escape reflink /base /copy 16 && sync");
    assert!(r.contains("cloned 16"), "{r}");
    let after = free(&h);
    assert!(before.saturating_sub(after) < 64 << 20, "16 reflinks took {} MiB", (before - after) >> 20);
    let (mib, err) = wrote(&zsh(&h, &small, "/probes/escape fill /more"));
    assert_eq!(err, "EDQUOT", "quota 1 GiB");
    assert!((700..=1024).contains(&mib), "a 1 GiB quota with 128 MiB used let {mib} MiB through");

    // A zone whose quota is larger than the pool stops at the pool's
    // reserve, not at a full pool...
    let big = h.create_ok(&probe::payload(&img, &probes, json!({"quota": 100})));
    let (mib, err) = wrote(&zsh(&h, &big, "/probes/escape fill /big"));
    assert_eq!(err, "EDQUOT", "the datasets' limit, not ENOSPC, after {mib} MiB");
    assert!(mib > 512, "{mib}");
    // ...and the daemon's state still changes: an update, a delete; a
    // create is refused for want of space, plainly, and leaves nothing.
    h.vmadm(&["update", &big, "alias=filled"]).ok();
    assert_eq!(h.get(&big)["alias"], "filled");
    let sysinfo = h.cli("sysinfo", &[], None).json();
    assert_eq!(sysinfo["Zpool Free in GiB"].as_u64(), Some(0), "{sysinfo}");
    let datasets = |h: &TestHost| std::fs::read_dir(h.pool()).unwrap().count();
    let before = datasets(&h);
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("is full"), "{}", r.stderr);
    assert_eq!(datasets(&h), before, "the refused create left a dataset");
    assert_eq!(h.vmadm(&["list", "-H"]).ok().lines().count(), 2);
    h.vmadm(&["delete", &small]).ok();
    h.vmadm(&["delete", &big]).ok();
    let third = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    assert_eq!(zsh(&h, &third, "dd if=/dev/zero of=/f bs=1M count=64 2>/dev/null && echo ok").trim(), "ok");
}

/// A gzip bomb image filled the pool and, refused and rolled back, left it
/// full for half a minute. Now it stops at the datasets' limit and its
/// space is free again when `imgadm install` returns.
#[test]
fn a_gzip_bomb_image_is_refused_and_leaves_the_pool_usable_quota() {
    let Some(h) = TestHost::with_pool_size("2G") else { return };
    let img = h.install(busybox());
    let bomb = uuid::Uuid::new_v4().to_string();
    let (m, f) = probe::image(&h, &bomb, &[Member { path: "x", mode: 0o644, data: b"x", xattrs: &[] }], 3 << 30);
    assert!(std::fs::metadata(&f).unwrap().len() < 64 << 20, "not much of a bomb");
    let r = h.imgadm(&["install", "-m", m.to_str().unwrap(), "-f", f.to_str().unwrap()]);
    assert_ne!(r.code, 0, "a 3 GiB image fit a 2 GiB pool");
    assert!(r.stderr.contains("full") || r.stderr.contains("quota"), "{}", r.stderr);
    assert!(!h.pool().join(&bomb).exists(), "the bomb's dataset is left");
    assert!(!h.imgadm(&["list", "-H", "-o", "uuid"]).ok().contains(&bomb));
    // At once: a zone writes, the store records.
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let r = zsh(&h, &uuid, "dd if=/dev/zero of=/f bs=1M count=256 && sync && echo done");
    assert!(r.contains("done"), "the pool is still full after the bomb: {r}");
}
