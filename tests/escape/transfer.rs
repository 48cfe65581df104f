//! `vmadm receive` of a crafted stream: whoever hands a host a send
//! stream (a compromised sending host, a tampered file) must not reach
//! another instance's data or the host's files through it. `btrfs
//! receive -C` confines the stream's paths to its staging directory, but
//! finds a snapshot's parent and a clone's source by UUID anywhere in the
//! pool; the pool's guard (`crates/pool/src/sendstream.rs`) refuses both
//! before `btrfs receive` reads them.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::*;

/// A btrfs send stream command: its number and its attributes (type, value).
type Cmd = (u16, Vec<(u16, Vec<u8>)>);

/// A btrfs send stream (version 1) of `cmds`.
fn btrfs_stream(cmds: &[Cmd]) -> Vec<u8> {
    let mut s = b"btrfs-stream\0".to_vec();
    s.extend_from_slice(&1u32.to_le_bytes());
    for (cmd, tlvs) in cmds {
        let mut payload = Vec::new();
        for (t, v) in tlvs {
            payload.extend_from_slice(&t.to_le_bytes());
            payload.extend_from_slice(&(v.len() as u16).to_le_bytes());
            payload.extend_from_slice(v);
        }
        s.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        s.extend_from_slice(&cmd.to_le_bytes());
        s.extend_from_slice(&[0; 4]);
        s.extend_from_slice(&payload);
    }
    s
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A send stream for a new zone `uuid` of image `img` whose one section
/// carries `btrfs` (the digest at its end is never reached).
fn send_stream(uuid: &str, img: &str, btrfs: &[u8]) -> Vec<u8> {
    let header = json!({"version": 1, "uuid": uuid, "vm": {"uuid": uuid, "brand": "lx", "image_uuid": img},
        "snapshots": [], "base": null, "sections": 1});
    let section = json!({"snapshot": "vmsend-1", "parent": null});
    [
        b"ZVSEND01".to_vec(),
        frame(b'H', header.to_string().as_bytes()),
        frame(b'S', section.to_string().as_bytes()),
        frame(b'D', btrfs),
        frame(b'F', json!({"bytes": btrfs.len()}).to_string().as_bytes()),
        frame(b'Z', &[0; 32]),
    ]
    .concat()
}

/// The UUID (16 bytes) of the subvolume at `path`.
fn subvol_uuid(path: &std::path::Path) -> Vec<u8> {
    let out = Command::new("btrfs").args(["subvolume", "show"]).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.trim().strip_prefix("UUID:")).unwrap_or_else(|| panic!("{text}"));
    hex::decode(line.trim().replace('-', "")).unwrap()
}

fn receive(h: &TestHost, bytes: &[u8]) -> (i32, String) {
    let mut c = Command::new(bin("zonevisor"));
    c.arg0("vmadm").arg("receive").env("ZONEVISOR_SOCKET", &h.socket);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(bytes);
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A crafted stream that clones another zone's file by that zone's
/// dataset UUID, or makes its subvolume a snapshot of that dataset, is
/// refused and leaves nothing; the other zone is untouched.
#[test]
fn a_crafted_stream_cannot_reach_another_instances_data() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let victim = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    std::fs::write(h.pool().join(&victim).join("root/secret"), "the victim's").unwrap();
    let victim_uuid = subvol_uuid(&h.pool().join(&victim));
    let own = vec![7u8; 16];
    let name = b"vmsend-1".to_vec();
    // SUBVOL=1, SNAPSHOT=2, MKFILE=3, CLONE=16, END=21; PATH=15, UUID=1,
    // CLONE_UUID=20, CLONE_PATH=22, CTRANSID=2, CLONE_CTRANSID=21.
    let clone_from_victim = btrfs_stream(&[
        (1, vec![(15, name.clone()), (1, own.clone()), (2, vec![0; 8])]),
        (3, vec![(15, b"stolen".to_vec())]),
        (
            16,
            vec![(15, b"stolen".to_vec()), (20, victim_uuid.clone()), (21, vec![0; 8]), (22, b"root/secret".to_vec())],
        ),
        (21, vec![]),
    ]);
    let snapshot_of_victim = btrfs_stream(&[
        (2, vec![(15, name), (1, own), (2, vec![0; 8]), (20, victim_uuid), (21, vec![0; 8])]),
        (21, vec![]),
    ]);
    for (what, btrfs) in
        [("a clone from another zone", clone_from_victim), ("a snapshot of another zone", snapshot_of_victim)]
    {
        let uuid = uuid::Uuid::new_v4().to_string();
        let (code, err) = receive(&h, &send_stream(&uuid, &img, &btrfs));
        assert_eq!(code, 1, "{what}: {err}");
        assert!(err.contains("refused btrfs send stream"), "{what}: {err}");
        assert_eq!(h.vmadm(&["get", &uuid]).code, 1, "{what}: the VM was received");
        assert!(!h.pool().join(&uuid).exists() && !h.pool().join(".receive").join(&uuid).exists(), "{what}");
    }
    assert_eq!(std::fs::read_to_string(h.pool().join(&victim).join("root/secret")).unwrap(), "the victim's");
}
