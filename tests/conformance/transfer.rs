//! `transfer`: `vmadm send` and `vmadm receive` (vmadm.js; test-send-recv.js).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// `vmadm <args>` with raw bytes in and out: (exit code, stdout, stderr).
fn raw(h: &TestHost, args: &[&str], input: Option<&[u8]>) -> (i32, Vec<u8>, String) {
    let mut c = Command::new(bin("zonevisor"));
    c.arg0("vmadm").args(args).env("ZONEVISOR_SOCKET", &h.socket);
    c.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    if let Some(bytes) = input {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(bytes);
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

// test-send-recv.js "send", "delete after sending", "receive": a VM sent
// to a file, deleted, and received from the file on the same host comes
// back with every property it had but the ones SmartOS expects to differ
// (boot_timestamp, last_modified, pid, zonedid, zoneid), and no other;
// vmadm.js's messages ("Successfully sent VM", "Successfully received
// VM", on stderr). zonevisor differs: the sender is not stopped by the send.
#[test]
fn transfer_send_delete_receive_gives_the_same_vm_back() {
    let Some((h, img)) = host() else { return };
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({"alias": "sendrecv", "autoboot": false, "tags": {"a": "b"},
            "customer_metadata": {"user-script": "true"}, "quota": 3, "max_physical_memory": 256}),
        ),
    );
    h.vmadm(&["create-snapshot", &uuid, "s1"]).ok();
    let before = h.get(&uuid);
    let (code, stream, err) = raw(&h, &["send", &uuid], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.trim(), format!("Successfully sent VM {uuid}"));
    assert_eq!(h.get(&uuid)["state"], "stopped", "a stopped VM stays stopped");
    h.vmadm(&["delete", &uuid]).ok();
    let (code, out, err) = raw(&h, &["receive"], Some(&stream));
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.trim(), format!("Successfully received VM {uuid}"));
    let after = h.get(&uuid);
    let skip = ["boot_timestamp", "last_modified", "pid", "zonedid", "zoneid"];
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    for (k, v) in b.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
        assert_eq!(a.get(k), Some(v), "property {k} after the round trip");
    }
    let extra: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    assert!(extra.is_empty(), "new properties after the round trip: {extra:?}");
    assert_eq!(after["snapshots"].as_array().map(Vec::len), Some(1));
    // It starts.
    h.vmadm(&["start", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "running");
}

// vmadm.js: send refuses a terminal ("Cannot send VM to a TTY.") and a
// VM that does not exist; receive refuses what is not a stream, and a
// uuid that exists (zonevisor's message names it).
#[test]
fn transfer_errors_name_what_is_wrong() {
    let Some((h, img)) = host() else { return };
    let (code, _, err) = raw(&h, &["send", BOGUS_UUID], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(BOGUS_UUID), "{err}");
    let (code, _, err) = raw(&h, &["receive"], Some(b"{\"not\": \"a stream\"}"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a vmadm send stream"), "{err}");
    let uuid = create(&h, &lx(&img, json!({"autoboot": false})));
    let (_, stream, _) = raw(&h, &["send", &uuid], None);
    let (code, _, err) = raw(&h, &["receive"], Some(&stream));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&uuid) && err.contains("already exists"), "{err}");
    let (code, _, err) = raw(&h, &["send", &uuid, "-i", "nope"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("No snapshot named \"nope\""), "{err}");
    let _: Value = h.get(&uuid);
}
