//! `imgadm create`: images from stopped zones and VMs, written to files
//! that install on a host, or installed straight into the pool, and the
//! new images cloned into instances that hold the data they were made from.

mod common;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

/// A stopped zone of the busybox image, with its uuid and root on the host.
fn stopped_zone(h: &TestHost, img: &str, alias: &str) -> (String, std::path::PathBuf) {
    let uuid = h.create_ok(&json!({"brand": "lx", "alias": alias, "image_uuid": img, "autoboot": false}));
    let root = h.pool().join(&uuid).join("root");
    assert!(root.join("bin").exists(), "the zone's root is on the host at {}", root.display());
    (uuid, root)
}

/// The members of a (possibly compressed) image tar.
fn tar_members(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let plain = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice()).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    };
    let mut a = tar::Archive::new(plain.as_slice());
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_zone_makes_an_image_file_that_installs_and_clones_with_its_data() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let (uuid, root) = stopped_zone(&h, &img, "golden");
    std::fs::write(root.join("etc/golden"), "made once\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let r =
        h.imgadm(&["create", "-c", "gzip", "-o", out.path().to_str().unwrap(), &uuid, "name=golden", "version=1.0"]);
    let said = r.ok().to_string();
    let file = out.path().join("golden-1.0.tar.gz");
    let manifest_path = out.path().join("golden-1.0.imgmanifest");
    assert!(said.contains(&format!("Sending image file to \"{}\"", file.display())), "{said}");
    assert!(said.contains("Created image "), "{said}");
    assert!(said.contains(&format!("Inheriting from origin image {img}")), "{said}");
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!((m["name"].as_str(), m["version"].as_str()), (Some("golden"), Some("1.0")));
    assert_eq!(m["type"], "lx-dataset");
    assert_eq!(m["os"], "linux");
    assert_eq!(m["requirements"]["brand"], "lx", "the source's brand is required");
    assert!(m.get("origin").is_none(), "a full image has no origin");
    assert_eq!(m["files"][0]["compression"], "gzip");
    assert_eq!(m["files"][0]["size"], std::fs::metadata(&file).unwrap().len());
    assert!(tar_members(&file).iter().any(|n| n == "etc/golden"));

    // Installed (here, after the source is gone), then cloned and run.
    h.vmadm(&["delete", &uuid]).ok();
    let new = m["uuid"].as_str().unwrap().to_string();
    h.imgadm(&["install", "-m", manifest_path.to_str().unwrap(), "-f", file.to_str().unwrap()]).ok();
    let clone = h.create_ok(&json!({"brand": "lx", "alias": "clone", "image_uuid": new}));
    h.wait_state(&clone, "running", Duration::from_secs(30));
    let r = h.cli("zlogin", &[&clone, "cat /etc/golden"], None);
    assert_eq!(r.ok(), "made once\n");
    assert_eq!(h.imgadm(&["get", &new]).json()["clones"], 1);
}

#[test]
fn install_to_the_pool_is_a_snapshot_and_incremental_files_hold_only_changes() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let (uuid, root) = stopped_zone(&h, &img, "proto");
    std::fs::write(root.join("etc/added"), "added\n").unwrap();
    std::fs::remove_file(root.join("etc/hostname")).ok();
    std::fs::remove_dir_all(root.join("home")).ok();
    std::fs::create_dir_all(root.join("home")).unwrap();

    // -O: in the pool, at once; the instance's data and nothing else of its dataset.
    let r = h.imgadm(&["create", "-O", &uuid, "name=proto", "version=2"]);
    let said = r.ok().to_string();
    let new = said.lines().last().unwrap().split_whitespace().nth(2).unwrap().to_string();
    let got = h.imgadm(&["get", &new]).json();
    assert_eq!(got["manifest"]["name"], "proto");
    assert_eq!(got["manifest"]["requirements"]["brand"], "lx");
    let ds = h.pool().join(&new);
    let names: Vec<String> =
        std::fs::read_dir(&ds).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["root"], "only the root goes into the image");
    assert_eq!(std::fs::read_to_string(ds.join("root/etc/added")).unwrap(), "added\n");
    assert!(std::fs::write(ds.join("root/etc/x"), "x").is_err(), "the image is read-only");
    let clone = h.create_ok(&json!({"brand": "lx", "image_uuid": new, "autoboot": false}));
    assert!(h.pool().join(&clone).join("root/etc/added").exists());
    // The image of an image's clone inherits from it.
    let r = h.imgadm(&["create", "-O", &clone, "name=proto", "version=3"]);
    assert!(r.ok().contains(&format!("Inheriting from origin image {new} (proto 2)")), "{}", r.stdout);

    // -i: only what changed since the origin, removals as whiteouts.
    let out = tempfile::tempdir().unwrap();
    let prefix = out.path().join("inc");
    let r = h.imgadm(&["create", "-i", "-o", prefix.to_str().unwrap(), &uuid, "name=inc", "version=1"]);
    r.ok();
    let m: Value = serde_json::from_slice(&std::fs::read(out.path().join("inc.imgmanifest")).unwrap()).unwrap();
    assert_eq!(m["origin"], img.as_str(), "the zone's image is the origin");
    let members = tar_members(&out.path().join("inc.tar"));
    assert!(members.contains(&"etc/added".to_string()), "{members:?}");
    assert!(members.contains(&"etc/.wh.hostname".to_string()) || !busybox_has(&h, &img, "etc/hostname"));
    assert!(!members.iter().any(|n| n == "bin/busybox"), "an unchanged file is left out: {members:?}");
    assert!(members.len() < 20, "only the changes: {members:?}");
    // Installed over a clone of its origin, its whiteouts honoured.
    let inc = m["uuid"].as_str().unwrap().to_string();
    let inc_file = out.path().join("inc.tar");
    h.imgadm(&[
        "install",
        "-m",
        out.path().join("inc.imgmanifest").to_str().unwrap(),
        "-f",
        inc_file.to_str().unwrap(),
    ])
    .ok();
    let inc_root = h.pool().join(&inc).join("root");
    assert_eq!(std::fs::read_to_string(inc_root.join("etc/added")).unwrap(), "added\n");
    assert!(inc_root.join("bin/busybox").exists(), "the origin's files are there");
    assert!(!inc_root.join("etc/hostname").exists(), "the whiteout removed what the zone removed");
    assert_eq!(h.imgadm(&["get", &inc]).json()["manifest"]["origin"], img.as_str());
    // Too deep an origin chain is refused (SmartOS's MaxOriginDepth).
    let r = h.imgadm(&["create", "-i", "--max-origin-depth", "2", "-O", &clone, "name=deep", "version=1"]);
    assert_eq!(r.code, 0, "a chain of two is allowed: {}", r.stderr);
}

/// Whether the image has `path` (the fixture's /etc/hostname may vary).
fn busybox_has(h: &TestHost, img: &str, path: &str) -> bool {
    h.pool().join(img).join("root").join(path).exists()
}

#[test]
fn a_vm_makes_an_image_of_its_first_disk() {
    let Some(h) = TestHost::new() else { return };
    let vm = h.create_ok(&json!({
        "brand": "bhyve", "alias": "disk-src", "autoboot": false, "bootrom": "bios",
        "disks": [{"boot": true, "size": 16, "model": "virtio"}, {"size": 8}],
    }));
    let disk0 = h.get(&vm)["disks"][0]["path"].as_str().unwrap().to_string();
    let f = std::fs::OpenOptions::new().write(true).open(&disk0).unwrap();
    f.write_all_at(b"ZONEVISOR-BOOT", 0).unwrap();
    f.write_all_at(b"ZONEVISOR-END", 16 * MIB - 13).unwrap();
    drop(f);
    let out = tempfile::tempdir().unwrap();
    let r = h.imgadm(&["create", "-c", "zstd", "-o", out.path().to_str().unwrap(), &vm, "name=disk", "version=1"]);
    r.ok();
    let m: Value = serde_json::from_slice(&std::fs::read(out.path().join("disk-1.imgmanifest")).unwrap()).unwrap();
    assert_eq!(m["type"], "zvol");
    assert_eq!(m["image_size"], 16);
    assert_eq!(m["requirements"]["brand"], "bhyve");
    assert_eq!(m["requirements"]["bootrom"], "bios");
    assert_eq!(m["disk_driver"], "virtio");
    let file = out.path().join("disk-1.raw.zst");
    assert!(std::fs::metadata(&file).unwrap().len() < MIB, "16 MiB of mostly holes compresses");
    h.imgadm(&["install", "-m", out.path().join("disk-1.imgmanifest").to_str().unwrap(), "-f", file.to_str().unwrap()])
        .ok();
    // A VM from it starts with the same bytes.
    let image = m["uuid"].as_str().unwrap();
    let copy = h.create_ok(&json!({
        "brand": "bhyve", "autoboot": false, "bootrom": "bios", "disks": [{"boot": true, "image_uuid": image}],
    }));
    let path = h.get(&copy)["disks"][0]["path"].as_str().unwrap().to_string();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, 16 * MIB);
    assert!(bytes.starts_with(b"ZONEVISOR-BOOT") && bytes.ends_with(b"ZONEVISOR-END"));
    // -O: the disk cloned into the pool.
    let r = h.imgadm(&["create", "-O", &vm, "name=disk", "version=2"]);
    let said = r.ok().to_string();
    let pooled = said.lines().last().unwrap().split_whitespace().nth(2).unwrap().to_string();
    let raw = std::fs::read(h.pool().join(&pooled).join("disk.raw")).unwrap();
    assert!(raw.starts_with(b"ZONEVISOR-BOOT"));
    // A VM's image is its whole disk: no incremental one.
    let r = h.imgadm(&["create", "-i", "-O", &copy, "name=x", "version=1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("from zones only"), "{}", r.stderr);
}

#[test]
fn bad_requests_name_the_problem_and_leave_nothing() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let running = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    h.wait_state(&running, "running", Duration::from_secs(30));
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let r = h.imgadm(&["create", "-o", o, &running, "name=a", "version=1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&format!("vm \"{running}\" is not stopped")), "{}", r.stderr);
    let ghost = "00000000-0000-4000-8000-00000000dead";
    let r = h.imgadm(&["create", "-o", o, ghost, "name=a", "version=1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&format!("vm \"{ghost}\" was not found")), "{}", r.stderr);
    let (stopped, _) = stopped_zone(&h, &img, "stopped");
    let r = h.imgadm(&["create", "-o", o, &stopped, "version=1"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("name"), "the missing field is named: {}", r.stderr);
    let r = h.imgadm(&["create", "-c", "lz4", "-o", o, &stopped, "name=a", "version=1"]);
    assert_eq!(r.code, 2, "a usage error: {}", r.stderr);
    assert!(r.stderr.contains("invalid -c,--compression \"lz4\""), "{}", r.stderr);
    let r = h.imgadm(&["create", "-o", o, &stopped, "name"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid manifest field arg \"name\""), "{}", r.stderr);
    let r = h.imgadm(&["create", "--max-origin-depth", "1", "-O", &stopped, "name=a", "version=1"]);
    assert_eq!(r.code, 2);
    // Into a directory that does not exist: nothing written, nothing installed.
    let r = h.imgadm(&["create", "-o", "/nonexistent/dir/img", &stopped, "name=a", "version=1"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent/dir/img.tar"), "the file is named: {}", r.stderr);
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing left in the output directory");
    let images = h.imgadm(&["list", "-j"]).json();
    assert_eq!(images.as_array().unwrap().len(), 1, "only the busybox image: {images}");
}

/// `-s`: SmartOS's prepare-image contract, run as the zone's operator-script.
#[test]
fn a_prepare_script_runs_in_the_zone_and_the_zone_is_rolled_back_after() {
    let Some(h) = TestHost::with_tools() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "customer_metadata": {"keep": "me"}}));
    h.wait_state(&uuid, "running", Duration::from_secs(30));
    let root = h.pool().join(&uuid).join("root");
    std::fs::write(root.join("etc/secret"), "do not ship\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("prepare");
    std::fs::write(
        &script,
        "#!/bin/sh\nmdata-put prepare-image:state running\necho prepared > /etc/prepared\nrm -f /etc/secret\n\
         mdata-put prepare-image:state success\npoweroff\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let r = h.imgadm(&[
        "create",
        "-s",
        script.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        &uuid,
        "name=prepped",
        "version=1",
    ]);
    let said = r.ok().to_string();
    for line in [
        format!("Stopping VM {uuid} to snapshot it"),
        "Prepare script is running".to_string(),
        "Prepare script succeeded".to_string(),
        format!("Prepare script stopped VM {uuid}"),
        format!("Rollback VM {uuid} to pre-prepare snapshot (cleanup)"),
        format!("Restarting VM {uuid} (cleanup)"),
    ] {
        assert!(said.contains(&line), "{line:?} in {said}");
    }
    // The image is of the prepared zone.
    let members = tar_members(&out.join("prepped-1.tar"));
    assert!(members.iter().any(|n| n == "etc/prepared"), "{members:?}");
    assert!(!members.iter().any(|n| n == "etc/secret"), "the script's removal is in the image");
    // The zone is as it was: its files, its metadata, running, no snapshot left.
    let vm = h.wait_state(&uuid, "running", Duration::from_secs(30));
    assert_eq!(std::fs::read_to_string(root.join("etc/secret")).unwrap(), "do not ship\n");
    assert!(!root.join("etc/prepared").exists());
    assert_eq!(vm["customer_metadata"], json!({"keep": "me"}), "prepare-image:state is gone with the rollback");
    assert!(vm["internal_metadata"].get("operator-script").is_none(), "{}", vm["internal_metadata"]);
    assert_eq!(vm["snapshots"], json!([]), "the pre-prepare snapshot is deleted");

    // A script that fails: SmartOS's error, the zone back as it was, no image.
    std::fs::write(
        &script,
        "#!/bin/sh\nmdata-put prepare-image:state running\ntouch /etc/half-done\n\
         mdata-put prepare-image:error 'no network'\nmdata-put prepare-image:state error\n",
    )
    .unwrap();
    let r = h.imgadm(&[
        "create",
        "-s",
        script.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        &uuid,
        "name=broken",
        "version=1",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("prepare-image script error while preparing VM {uuid}: no network")),
        "{}",
        r.stderr
    );
    assert!(!out.join("broken-1.tar").exists());
    let vm = h.wait_state(&uuid, "running", Duration::from_secs(30));
    assert!(!root.join("etc/half-done").exists(), "rolled back");
    assert_eq!(vm["snapshots"], json!([]));
    // The manifest is checked before the zone is touched.
    let r = h.imgadm(&["create", "-s", script.to_str().unwrap(), "-o", out.to_str().unwrap(), &uuid, "name=x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("version"), "{}", r.stderr);
}
