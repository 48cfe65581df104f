//! zvol images (hardware VMs' disks) end to end: `imgadm install` of raw
//! and qcow2 disks, plain and compressed, made here with `qemu-img`;
//! what is refused and why; `imgadm list`, `get` and `delete`.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use sha1::Digest;

const MIB: u64 = 1 << 20;

/// A host that can make qcow2 disks, or `None` (skipped; failed in CI).
fn host() -> Option<TestHost> {
    match Command::new("qemu-img").arg("--version").output() {
        Ok(out) if out.status.success() => TestHost::new(),
        _ => skip("qemu-img is not installed (Debian: qemu-utils)"),
    }
}

/// Runs `qemu-img args…`, which must succeed.
#[track_caller]
fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().expect("run qemu-img");
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A sparse raw disk of `mib` MiB at `path` with `pattern` at `offset`.
fn raw_disk(path: &Path, mib: u64, offset: u64, pattern: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib * MIB).unwrap();
    f.write_all_at(pattern, offset).unwrap();
}

/// A qcow2 disk of `mib` MiB at `path` with `pattern` at `offset`,
/// converted by `qemu-img` from a raw one.
fn qcow2_disk(path: &Path, mib: u64, offset: u64, pattern: &[u8]) {
    let raw = path.with_extension("src.raw");
    raw_disk(&raw, mib, offset, pattern);
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw.to_str().unwrap(), path.to_str().unwrap()]);
    std::fs::remove_file(raw).unwrap();
}

/// `path` gzip'd into `path.gz`.
fn gzip(path: &Path) -> PathBuf {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    gz
}

/// A zvol manifest for `file` (its real size and SHA-1) in `dir`; returns
/// the manifest's path. `extra` is merged in last (`null` removes a key).
fn manifest(dir: &Path, uuid: &str, file: &Path, image_size: u64, extra: Value) -> PathBuf {
    let bytes = std::fs::read(file).unwrap();
    let sha1 = hex::encode(sha1::Sha1::digest(&bytes));
    let compression = if file.extension().is_some_and(|e| e == "gz") { "gzip" } else { "none" };
    let mut m = json!({
        "v": 2, "uuid": uuid, "owner": "00000000-0000-0000-0000-000000000000",
        "name": format!("disk-{}", &uuid[..8]), "version": "1.0.0", "state": "active", "disabled": false,
        "public": true, "published_at": "2026-01-01T00:00:00.000Z",
        "type": "zvol", "os": "linux", "image_size": image_size,
        "files": [{"sha1": sha1, "size": bytes.len(), "compression": compression}],
        "requirements": {"brand": "bhyve"}, "tags": {},
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    let path = dir.join(format!("{uuid}.json"));
    std::fs::write(&path, m.to_string()).unwrap();
    path
}

/// `imgadm install -m manifest -f file`.
fn install(h: &TestHost, manifest: &Path, file: &Path) -> Run {
    h.imgadm(&["install", "-m", manifest.to_str().unwrap(), "-f", file.to_str().unwrap()])
}

/// `len` bytes of the file at `path` from `offset`.
fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open(path).unwrap().read_exact_at(&mut buf, offset).unwrap();
    buf
}

const RAW: &str = "a1e0b7c2-5d4f-4e3a-8b9c-0d1e2f3a4b01";
const QCOW2_GZ: &str = "a1e0b7c2-5d4f-4e3a-8b9c-0d1e2f3a4b02";
const QCOW2: &str = "a1e0b7c2-5d4f-4e3a-8b9c-0d1e2f3a4b03";

#[test]
fn raw_and_qcow2_zvol_images_install_as_sparse_raw_disks() {
    let Some(h) = host() else { return };
    let dir = h.dir.path();

    // A raw disk, exactly image_size long.
    let raw = dir.join("disk.raw");
    raw_disk(&raw, 16, 5 * MIB + 17, b"ZONEVISOR-RAW-PATTERN");
    install(&h, &manifest(dir, RAW, &raw, 16, json!({})), &raw).ok();

    // A gzip'd qcow2 disk of 32 MiB, for a 64 MiB image: converted, then
    // padded to image_size. Named like a raw file: the magic decides.
    let qcow2 = dir.join("looks-raw.img");
    qcow2_disk(&qcow2, 32, 7 * MIB + 123, b"ZONEVISOR-QCOW2-PATTERN");
    let gz = gzip(&qcow2);
    install(&h, &manifest(dir, QCOW2_GZ, &gz, 64, json!({"os": "windows"})), &gz).ok();

    // The same qcow2 disk uncompressed (qemu-img reads the file itself).
    install(&h, &manifest(dir, QCOW2, &qcow2, 32, json!({"requirements": {"brand": "kvm"}})), &qcow2).ok();

    for (uuid, mib, offset, pattern) in [
        (RAW, 16, 5 * MIB + 17, &b"ZONEVISOR-RAW-PATTERN"[..]),
        (QCOW2_GZ, 64, 7 * MIB + 123, b"ZONEVISOR-QCOW2-PATTERN"),
        (QCOW2, 32, 7 * MIB + 123, b"ZONEVISOR-QCOW2-PATTERN"),
    ] {
        let ds = h.pool().join(uuid);
        let disk = ds.join("disk.raw");
        let names: Vec<_> = std::fs::read_dir(&ds).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["disk.raw"], "{uuid}: the disk and nothing else (no qcow2 left behind)");
        let md = std::fs::metadata(&disk).unwrap();
        assert_eq!(md.len(), mib * MIB, "{uuid}: image_size long");
        assert!(md.blocks() * 512 < 2 * MIB, "{uuid}: {} bytes allocated; not sparse", md.blocks() * 512);
        assert_eq!(read_at(&disk, offset, pattern.len()), pattern, "{uuid}: the pattern where it was put");
        assert!(read_at(&disk, 0, 4096).iter().all(|&b| b == 0), "{uuid}: zeros elsewhere");
        assert_eq!(read_at(&disk, mib * MIB - 1, 1), [0], "{uuid}");
        // Read-only once installed, for root too.
        let err = std::fs::OpenOptions::new().write(true).open(&disk).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{uuid}: {err}");
        let got = h.imgadm(&["get", uuid]).json();
        assert_eq!(
            (got["manifest"]["type"].as_str(), got["manifest"]["image_size"].as_u64()),
            (Some("zvol"), Some(mib))
        );
        assert_eq!(got["clones"], 0);
    }

    let out = h.imgadm(&["list"]).ok().to_string();
    for uuid in [RAW, QCOW2_GZ, QCOW2] {
        let line = out.lines().find(|l| l.starts_with(uuid)).unwrap_or_else(|| panic!("{uuid} not listed:\n{out}"));
        assert_eq!(line.split_whitespace().nth(4), Some("zvol"), "{line}");
    }
    assert!(out.lines().any(|l| l.starts_with(QCOW2_GZ) && l.contains("windows")), "{out}");
    let listed = h.imgadm(&["list", "-j"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    h.imgadm(&["delete", QCOW2]).ok();
    assert!(!h.pool().join(QCOW2).exists());
    assert_eq!(h.imgadm(&["get", QCOW2]).code, 3, "deleted");
}

/// Asserts `r` failed, its message naming each of `words`, and that the
/// image `uuid` left nothing behind.
#[track_caller]
fn refused(h: &TestHost, r: &Run, uuid: &str, words: &[&str]) {
    assert_eq!(r.code, 1, "not refused: {} / {}", r.stdout, r.stderr);
    println!("refused: {}", r.stderr.trim());
    for w in words {
        assert!(r.stderr.contains(w), "{w:?} not in: {}", r.stderr);
    }
    assert!(!h.pool().join(uuid).exists(), "{uuid}: the dataset was left behind");
    assert_eq!(h.imgadm(&["get", uuid]).code, 3, "{uuid} is listed");
}

#[test]
fn bad_zvol_images_are_refused_naming_what_is_wrong() {
    let Some(h) = host() else { return };
    let dir = h.dir.path();
    let uuid = "b2f1c8d3-6e5a-4f4b-9cad-1e2f3a4b5c01";

    // A disk larger than image_size, raw or qcow2: refused naming image_size.
    let raw = dir.join("big.raw");
    raw_disk(&raw, 16, 15 * MIB, b"end");
    refused(&h, &install(&h, &manifest(dir, uuid, &raw, 8, json!({})), &raw), uuid, &["image_size", "8 MiB"]);
    let qcow2 = dir.join("big.qcow2");
    qcow2_disk(&qcow2, 32, 0, b"x");
    let gz = gzip(&qcow2);
    refused(&h, &install(&h, &manifest(dir, uuid, &gz, 16, json!({})), &gz), uuid, &["image_size", "33554432"]);

    // A compressed bomb: 1 GiB of zeros in ~1 MiB of gzip, for an 8 MiB
    // image; refused as soon as the stream passes image_size.
    let bomb = dir.join("bomb.raw");
    std::fs::File::create(&bomb).unwrap().set_len(1 << 30).unwrap();
    let bomb = gzip(&bomb);
    refused(&h, &install(&h, &manifest(dir, uuid, &bomb, 8, json!({})), &bomb), uuid, &["image_size"]);

    // A corrupt qcow2: qemu-img's own words.
    let corrupt = dir.join("corrupt.qcow2");
    qcow2_disk(&corrupt, 8, 0, b"x");
    // The L1 table's offset (header bytes 40..48), no longer cluster-aligned.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&corrupt)
        .unwrap()
        .write_all_at(&0x12345u64.to_be_bytes(), 40)
        .unwrap();
    let r = install(&h, &manifest(dir, uuid, &corrupt, 8, json!({})), &corrupt);
    refused(&h, &r, uuid, &["qemu-img", "L1 table offset invalid"]);

    // A qcow2 disk that would read another file of the host's.
    let base = dir.join("base.raw");
    raw_disk(&base, 8, 0, b"host secret");
    let overlay = dir.join("overlay.qcow2");
    let backing = format!("backing_file={},backing_fmt=raw", base.display());
    qemu_img(&["create", "-f", "qcow2", "-o", &backing, overlay.to_str().unwrap(), "8M"]);
    let r = install(&h, &manifest(dir, uuid, &overlay, 8, json!({})), &overlay);
    refused(&h, &r, uuid, &["backing file", base.to_str().unwrap()]);

    // Manifest errors name the property.
    let r = install(&h, &manifest(dir, uuid, &raw, 16, json!({"image_size": null})), &raw);
    refused(&h, &r, uuid, &["image_size", "type zvol"]);
    let r = install(&h, &manifest(dir, uuid, &raw, 16, json!({"requirements": {"brand": "lx"}})), &raw);
    refused(&h, &r, uuid, &["requirements.brand", "kvm or bhyve"]);
    let r = install(&h, &manifest(dir, uuid, &raw, 16, json!({"type": "zone-dataset"})), &raw);
    refused(&h, &r, uuid, &["type", "cannot be installed"]);
    let r = install(
        &h,
        &manifest(dir, uuid, &raw, 16, json!({"files": [{"sha1": "0".repeat(40), "size": 16 * MIB}]})),
        &raw,
    );
    refused(&h, &r, uuid, &["sha1"]);

    // After all that, the same uuid installs fine.
    install(&h, &manifest(dir, uuid, &raw, 16, json!({})), &raw).ok();
}

#[test]
fn a_zvol_image_in_use_by_a_vm_disk_cannot_be_deleted() {
    let Some(h) = host() else { return };
    let dir = h.dir.path().to_path_buf();
    let raw = dir.join("disk.raw");
    raw_disk(&raw, 8, 0, b"boot");
    install(&h, &manifest(&dir, RAW, &raw, 8, json!({})), &raw).ok();
    let vm = h.create_ok(&json!({
        "alias": "disky", "brand": "bhyve", "bootrom": "bios", "autoboot": false,
        "disks": [{"boot": true, "image_uuid": RAW}, {"size": 1024}],
    }));
    // The VM's disk is a clone of the image: its data, the image's size.
    let disk0 = h.get(&vm)["disks"][0]["path"].as_str().unwrap().to_string();
    let clone = std::fs::read(&disk0).unwrap();
    assert_eq!(clone.len(), 8 << 20);
    assert!(clone.starts_with(b"boot"), "the image's bytes");
    let r = h.imgadm(&["delete", RAW]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("has dependent clones") && r.stderr.contains(&vm), "{}", r.stderr);
    assert!(h.pool().join(RAW).join("disk.raw").exists());
    assert_eq!(h.imgadm(&["get", RAW]).json()["clones"], 1);
    let listed = h.imgadm(&["list", "-j"]).json();
    assert_eq!(listed[0]["clones"], 1, "{listed}");

    h.vmadm(&["delete", &vm]).ok();
    assert_eq!(h.imgadm(&["get", RAW]).json()["clones"], 0);
    h.imgadm(&["delete", RAW]).ok();
    assert!(!h.pool().join(RAW).exists());
}
