//! `vmadm send` and `vmadm receive` between two hosts: each test has two
//! daemons with their own roots and pools, and pipes one's `vmadm send`
//! into the other's `vmadm receive`, as `vmadm send <uuid> | ssh host2
//! vmadm receive` does. A zone and a VM arrive with their data, snapshots
//! and tags, and start; an incremental stream brings a copy up to date; a
//! stream cut short or corrupted leaves nothing, and the next receive
//! succeeds; a uuid that exists is refused.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{busybox, vm_images, TestHost};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

/// `vmadm` of host `h`, its stdio the caller's to set.
fn vmadm(h: &TestHost, args: &[&str]) -> Command {
    let mut c = Command::new(common::bin("zonevisor"));
    c.arg0("vmadm").args(args).env("ZONEVISOR_SOCKET", &h.socket);
    c
}

/// `vmadm send <args>` on `from` piped into `vmadm receive` on `to`: the
/// exit codes and what each said on stderr.
fn pipe(from: &TestHost, args: &[&str], to: &TestHost) -> ((i32, String), (i32, String)) {
    let mut send =
        vmadm(from, &[&["send"], args].concat()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stream = send.stdout.take().unwrap();
    let recv = vmadm(to, &["receive"]).stdin(stream).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let r = recv.wait_with_output().unwrap();
    let s = send.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    ((s.status.code().unwrap_or(-1), text(&s.stderr)), (r.status.code().unwrap_or(-1), text(&r.stderr)))
}

/// `vmadm send <args>` on `h` into bytes.
fn send_bytes(h: &TestHost, args: &[&str]) -> Vec<u8> {
    let out = vmadm(h, &[&["send"], args].concat()).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "send: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `vmadm receive` of `bytes` on `h`: exit code and stderr.
fn receive_bytes(h: &TestHost, bytes: &[u8]) -> (i32, String) {
    let mut c =
        vmadm(h, &["receive"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    // The daemon may refuse before reading it all: a broken pipe is its answer.
    let _ = stdin.write_all(bytes);
    drop(stdin);
    let out = c.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn names(vm: &Value) -> Vec<String> {
    vm["snapshots"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

fn zsh(h: &TestHost, uuid: &str, script: &str) -> String {
    let r = h.cli("zlogin", &[uuid, script], None);
    assert_eq!(r.code, 0, "zlogin {script}: {} {}", r.stdout, r.stderr);
    r.stdout
}

/// Nothing of `uuid` on `h`: no VM, no dataset, nothing staged, no snapshots.
fn assert_nothing_of(h: &TestHost, uuid: &str, when: &str) {
    let r = h.vmadm(&["get", uuid]);
    assert_eq!(r.code, 1, "{when}: the VM exists: {}", r.stdout);
    for path in [h.pool().join(uuid), h.pool().join(".receive").join(uuid), h.pool().join(".snapshots").join(uuid)] {
        assert!(!path.exists(), "{when}: {} is left", path.display());
    }
    let out = Command::new("btrfs").args(["subvolume", "list", "-a"]).arg(h.pool()).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(!list.contains(uuid), "{when}: subvolumes left:\n{list}");
}

fn two_hosts() -> Option<(TestHost, TestHost, String)> {
    let a = TestHost::new()?;
    let b = TestHost::new()?;
    let img = a.install(busybox());
    b.install(busybox());
    Some((a, b, img))
}

#[test]
fn a_zone_moves_to_another_host_with_its_data_snapshots_and_tags_and_starts_there() {
    let Some((a, b, img)) = two_hosts() else { return };
    let uuid = a.create_ok(&json!({"brand": "lx", "image_uuid": img, "alias": "mover", "quota": 2,
        "tags": {"role": "web"}, "customer_metadata": {"k": "v1"}}));
    zsh(&a, &uuid, "echo one > /root/data && sync");
    a.vmadm(&["create-snapshot", &uuid, "s1"]).ok();
    zsh(&a, &uuid, "echo two > /root/data && echo more > /root/more && sync");
    a.cli("vmadm", &["update", &uuid], Some(r#"{"set_customer_metadata": {"k": "v2"}}"#)).ok();
    a.vmadm(&["create-snapshot", &uuid, "s2"]).ok();
    zsh(&a, &uuid, "echo three > /root/data && sync");

    let ((sc, se), (rc, re)) = pipe(&a, &[&uuid], &b);
    assert_eq!((sc, rc), (0, 0), "send: {se}\nreceive: {re}");
    assert!(se.contains(&format!("Successfully sent VM {uuid}")), "{se}");
    assert!(re.contains(&format!("Successfully received VM {uuid}")), "{re}");
    // The sender keeps it, running, and no trace of the send.
    assert_eq!(a.get(&uuid)["state"], "running");
    assert!(!std::fs::read_dir(a.pool().join(".snapshots").join(&uuid)).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("vmsend-")));

    let vm = b.get(&uuid);
    assert_eq!((vm["alias"].as_str(), vm["state"].as_str()), (Some("mover"), Some("stopped")), "{vm}");
    assert_eq!(vm["tags"], json!({"role": "web"}));
    assert_eq!(vm["customer_metadata"], json!({"k": "v2"}));
    assert_eq!(vm["quota"], 2);
    assert_eq!(names(&vm), ["s2", "s1"]);
    assert!(vm["zonepath"].as_str().unwrap().starts_with(b.pool().to_str().unwrap()), "{vm}");
    b.vmadm(&["start", &uuid]).ok();
    assert_eq!(zsh(&b, &uuid, "cat /root/data"), "three\n");
    // Its snapshots are whole there: a rollback brings s1's data and metadata.
    b.vmadm(&["rollback-snapshot", &uuid, "s1"]).ok();
    b.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_eq!(zsh(&b, &uuid, "cat /root/data; ls /root"), "one\ndata\n");
    assert_eq!(b.get(&uuid)["customer_metadata"], json!({"k": "v1"}));
    // And it counts against its quota there as here.
    let out = Command::new("btrfs").args(["qgroup", "show", "-p"]).arg(b.pool()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("1/100"));

    // A second receive of the same uuid is refused, and changes nothing.
    let ((_, _), (rc, re)) = pipe(&a, &[&uuid], &b);
    assert_eq!(rc, 1, "{re}");
    assert!(re.contains(&uuid) && re.contains("already exists"), "{re}");
    assert_eq!(b.get(&uuid)["state"], "running");
    assert!(!b.pool().join(".receive").join(&uuid).exists());
}

#[test]
fn an_incremental_stream_brings_a_copy_up_to_date() {
    let Some((a, b, img)) = two_hosts() else { return };
    let uuid = a.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false, "tags": {"v": 1}}));
    let root = a.pool().join(&uuid).join("root");
    std::fs::write(root.join("data"), "first").unwrap();
    a.vmadm(&["create-snapshot", &uuid, "base"]).ok();
    let ((sc, se), (rc, re)) = pipe(&a, &[&uuid], &b);
    assert_eq!((sc, rc), (0, 0), "{se} {re}");

    std::fs::write(root.join("data"), "second").unwrap();
    a.vmadm(&["create-snapshot", &uuid, "next"]).ok();
    std::fs::write(root.join("data"), "third").unwrap();
    a.cli("vmadm", &["update", &uuid], Some(r#"{"set_tags": {"v": 3}}"#)).ok();
    let full = send_bytes(&a, &[&uuid]).len();
    let inc = send_bytes(&a, &[&uuid, "-i", "base"]);
    assert!(inc.len() < full, "the incremental stream ({}) is not smaller than the whole one ({full})", inc.len());
    let (rc, re) = receive_bytes(&b, &inc);
    assert_eq!(rc, 0, "{re}");
    let vm = b.get(&uuid);
    assert_eq!(names(&vm), ["next", "base"]);
    assert_eq!(vm["tags"], json!({"v": 3}));
    let copy = b.pool().join(&uuid).join("root/data");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "third");
    b.vmadm(&["rollback-snapshot", &uuid, "next"]).ok();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "second");

    // Onto a copy without the base, or with newer snapshots of its own: refused.
    let (rc, re) = receive_bytes(&b, &send_bytes(&a, &[&uuid, "-i", "next"]));
    assert_eq!(rc, 0, "{re}");
    b.vmadm(&["create-snapshot", &uuid, "local"]).ok();
    let (rc, re) = receive_bytes(&b, &send_bytes(&a, &[&uuid, "-i", "next"]));
    assert_eq!(rc, 1, "{re}");
    assert!(re.contains("newer") && re.contains("local"), "{re}");
    let (rc, re) = receive_bytes(&b, &send_bytes(&a, &[&uuid, "-i", "next"])[..200]);
    assert_eq!(rc, 1, "{re}");
    let c = TestHost::new().unwrap();
    let (rc, re) = receive_bytes(&c, &send_bytes(&a, &[&uuid, "-i", "next"]));
    assert_eq!(rc, 1, "{re}");
    assert!(re.contains("does not exist"), "{re}");
}

#[test]
fn a_stream_cut_short_or_corrupted_leaves_nothing_and_the_next_receive_succeeds() {
    let Some((a, b, img)) = two_hosts() else { return };
    let uuid = a.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    let root = a.pool().join(&uuid).join("root");
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(root.join("big"), &big).unwrap();
    a.vmadm(&["create-snapshot", &uuid, "s1"]).ok();
    let stream = send_bytes(&a, &[&uuid]);
    assert!(stream.len() > big.len(), "{}", stream.len());

    for cut in [10, 100, stream.len() / 2, stream.len() - 40, stream.len() - 1] {
        let (rc, re) = receive_bytes(&b, &stream[..cut]);
        assert_eq!(rc, 1, "cut at {cut}: {re}");
        assert!(re.contains("cut short") || re.contains("corrupted") || re.contains("refused"), "cut at {cut}: {re}");
        assert_nothing_of(&b, &uuid, &format!("cut at {cut}"));
    }
    for at in [20, stream.len() / 3, stream.len() / 2, stream.len() - 10] {
        let mut bad = stream.clone();
        bad[at] ^= 0x01;
        let (rc, re) = receive_bytes(&b, &bad);
        assert_eq!(rc, 1, "a byte changed at {at} went unnoticed");
        assert!(!re.is_empty());
        assert_nothing_of(&b, &uuid, &format!("corrupted at {at}"));
    }
    let (rc, re) = receive_bytes(&b, b"GIF89a not a stream");
    assert_eq!(rc, 1);
    assert!(re.contains("not a vmadm send stream"), "{re}");
    let (rc, re) = receive_bytes(&b, &stream);
    assert_eq!(rc, 0, "{re}");
    assert_eq!(std::fs::read(b.pool().join(&uuid).join("root/big")).unwrap(), big);
}

fn digest(path: &Path) -> String {
    hex::encode(Sha1::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_vm_moves_with_every_disk_and_boots_there() {
    let Some((a, b, _)) = two_hosts() else { return };
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        common::skip("qemu-system-x86 is not installed (scripts/test installs it)");
        return;
    }
    let f = vm_images();
    let uuid = a.create_ok(&json!({
        "brand": "kvm", "alias": "vm-mover", "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd, "boot_args": "console=ttyS0 quiet zv.boot=direct",
        "disks": [{"size": 16, "model": "virtio"}, {"size": 8, "model": "virtio"}],
    }));
    // The guest counts its boots on its first disk: 0 read, 1 written.
    let ready = "zonevisor-guest: ready";
    let console = a.wait_console(&uuid, ready, 1, Duration::from_secs(180));
    assert!(console.contains("zonevisor-guest: counter 0"), "{console}");
    let disks = |h: &TestHost| -> Vec<PathBuf> {
        h.get(&uuid)["disks"].as_array().unwrap().iter().map(|d| PathBuf::from(d["path"].as_str().unwrap())).collect()
    };
    a.vmadm(&["create-snapshot", &uuid, "running"]).ok();
    a.vmadm(&["stop", &uuid]).ok();
    std::fs::OpenOptions::new().write(true).open(&disks(&a)[1]).unwrap().write_all(b"second disk").unwrap();
    let ((sc, se), (rc, re)) = pipe(&a, &[&uuid], &b);
    assert_eq!((sc, rc), (0, 0), "{se} {re}");
    let (da, db) = (disks(&a), disks(&b));
    for (x, y) in da.iter().zip(&db) {
        assert!(y.starts_with(b.pool()), "{}", y.display());
        assert_eq!(digest(x), digest(y), "{} arrived byte for byte", y.display());
    }
    // It boots there: its counter disk came along (1 read, 2 written).
    b.vmadm(&["start", &uuid]).ok();
    let console = b.wait_console(&uuid, ready, 1, Duration::from_secs(180));
    assert!(console.contains("zonevisor-guest: counter 1"), "{console}");
    assert_eq!(names(&b.get(&uuid)), ["running"]);
}
