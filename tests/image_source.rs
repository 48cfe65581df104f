//! zonevisord as an IMGAPI image source (`--imgapi-listen`): what it
//! serves, read with a plain HTTP client inside the host's network
//! namespace.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use sha1::Digest;

const PORT: u16 = 8087;

/// A host whose daemon serves its images on 127.0.0.1:[`PORT`] in its namespace.
fn source() -> Option<TestHost> {
    TestHost::with_daemon_args(&["--imgapi-listen", &format!("127.0.0.1:{PORT}")])
}

/// `GET path` (with `range`, if any) from inside the host's namespace:
/// the status and the body, saved to `out`.
fn get(h: &TestHost, path: &str, range: Option<&str>, out: &Path) -> u16 {
    let script = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
if sys.argv[3]:
    req.add_header("Range", sys.argv[3])
try:
    r = urllib.request.urlopen(req, timeout=60)
except urllib.error.HTTPError as e:
    r = e
open(sys.argv[2], "wb").write(r.read())
print(r.status)
"#;
    let url = format!("http://127.0.0.1:{PORT}{path}");
    let o = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", h.netns))
        .args(["python3", "-c", script, &url, out.to_str().unwrap(), range.unwrap_or("")])
        .output()
        .unwrap();
    assert!(o.status.success(), "GET {path}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

fn get_json(h: &TestHost, path: &str) -> (u16, Value) {
    let t = tempfile::NamedTempFile::new().unwrap();
    let status = get(h, path, None, t.path());
    (status, serde_json::from_slice(&std::fs::read(t.path()).unwrap()).unwrap())
}

#[test]
fn installed_images_are_served_with_files_made_on_first_request() {
    let Some(h) = source() else { return };
    let img = h.install(busybox());
    let (status, ping) = get_json(&h, "/ping");
    assert_eq!((status, &ping["ping"], &ping["imgapi"]), (200, &json!("pong"), &json!(true)));

    // A golden zone made into an image in the pool, served beside the fixture.
    let zone = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    std::fs::write(h.pool().join(&zone).join("root/etc/served"), "from the source\n").unwrap();
    let said = h.imgadm(&["create", "-O", &zone, "name=served", "version=1.0"]).ok().to_string();
    let made = said.lines().last().unwrap().split_whitespace().nth(2).unwrap().to_string();

    let (status, list) = get_json(&h, "/images");
    assert_eq!(status, 200);
    let uuids: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["uuid"].as_str().unwrap()).collect();
    assert!(uuids.contains(&img.as_str()) && uuids.contains(&made.as_str()), "{list}");
    let (_, only) = get_json(&h, "/images?name=served&os=linux");
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    let (_, sub) = get_json(&h, "/images?name=~erve");
    assert_eq!(sub[0]["uuid"], made.as_str());
    let (_, none) = get_json(&h, "/images?name=nothing");
    assert_eq!(none, json!([]));
    let (status, missing) = get_json(&h, "/images/00000000-0000-4000-8000-000000000bad");
    assert_eq!((status, &missing["code"]), (404, &json!("ResourceNotFound")));

    // The file, made on first request: its digest is the served manifest's.
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("file");
    assert_eq!(get(&h, &format!("/images/{made}/file"), None, &file), 200);
    let bytes = std::fs::read(&file).unwrap();
    let (_, m) = get_json(&h, &format!("/images/{made}"));
    assert_eq!(m["name"], "served");
    assert_eq!(m["files"][0]["size"], bytes.len() as u64);
    assert_eq!(m["files"][0]["sha1"], hex::encode(sha1::Sha1::digest(&bytes)));
    assert_eq!(m["files"][0]["compression"], "zstd");
    // It is a tar of the image's root holding what the zone wrote.
    let plain = zstd_decode(&bytes);
    let mut a = tar::Archive::new(plain.as_slice());
    let names: Vec<String> =
        a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n == "etc/served"), "{names:?}");

    // A range: the rest of the file from where a download stopped.
    let part = t.path().join("part");
    let from = bytes.len() / 3;
    assert_eq!(get(&h, &format!("/images/{made}/file"), Some(&format!("bytes={from}-")), &part), 206);
    assert_eq!(std::fs::read(&part).unwrap(), &bytes[from..]);
    let beyond = format!("bytes={}-", bytes.len() + 10);
    assert_eq!(get(&h, &format!("/images/{made}/file"), Some(&beyond), &part), 416);
    // The same file the second time (kept, not remade).
    assert_eq!(get(&h, &format!("/images/{made}/file"), None, &part), 200);
    assert_eq!(std::fs::read(&part).unwrap(), bytes);

    // A deleted image is no longer served.
    h.vmadm(&["delete", &zone]).ok();
    h.imgadm(&["delete", &made]).ok();
    let (status, _) = get_json(&h, &format!("/images/{made}"));
    assert_eq!(status, 404);
    assert_eq!(get(&h, &format!("/images/{made}/file"), None, &part), 404);
    assert!(!h.pool().join("imgapi-files").join(format!("{made}.file")).exists(), "its file went with it");
}

/// Links the network namespaces of `a` and `b` with a veth pair:
/// `a` is 10.213.0.1/30, `b` 10.213.0.2/30.
fn link(a: &TestHost, b: &TestHost) {
    let tag = &a.netns[a.netns.len().saturating_sub(6)..];
    let (ea, eb) = (format!("zvsa{tag}"), format!("zvsb{tag}"));
    let run = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    run(&["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
    run(&["link", "set", &ea, "netns", &a.netns]);
    run(&["link", "set", &eb, "netns", &b.netns]);
    run(&["-n", &a.netns, "addr", "add", "10.213.0.1/30", "dev", &ea]);
    run(&["-n", &b.netns, "addr", "add", "10.213.0.2/30", "dev", &eb]);
    run(&["-n", &a.netns, "link", "set", &ea, "up"]);
    run(&["-n", &b.netns, "link", "set", &eb, "up"]);
}

/// A second host imports from the first: an incremental image made
/// there in the pool, and its origin first.
#[test]
fn a_second_host_imports_an_image_and_its_origin_from_the_first() {
    let Some(a) = TestHost::with_daemon_args(&["--imgapi-listen", &format!("0.0.0.0:{PORT}")]) else { return };
    let Some(b) = TestHost::new() else { return };
    link(&a, &b);
    let img = a.install(busybox());
    let zone = a.create_ok(&json!({"brand": "lx", "image_uuid": img, "autoboot": false}));
    std::fs::write(a.pool().join(&zone).join("root/etc/golden"), "built on a\n").unwrap();
    std::fs::remove_file(a.pool().join(&zone).join("root/bin/vi")).ok();
    let said = a.imgadm(&["create", "-i", "-O", &zone, "name=golden", "version=1"]).ok().to_string();
    let golden = said.lines().last().unwrap().split_whitespace().nth(2).unwrap().to_string();

    let url = format!("http://10.213.0.1:{PORT}");
    b.imgadm(&["sources", "-a", &url]).ok();
    let r = b.imgadm(&["import", "-q", &golden]);
    r.ok();
    let got = b.imgadm(&["get", &golden]).json();
    assert_eq!(got["manifest"]["origin"], img.as_str());
    assert_eq!(b.imgadm(&["get", &img]).json()["manifest"]["uuid"], img.as_str(), "the origin came first");
    let clone = b.create_ok(&json!({"brand": "lx", "image_uuid": golden}));
    b.wait_state(&clone, "running", std::time::Duration::from_secs(30));
    assert_eq!(b.cli("zlogin", &[&clone, "cat /etc/golden"], None).ok(), "built on a\n");
    let r = b.cli("zlogin", &[&clone, "test -e /bin/vi && echo there || echo gone"], None);
    assert_eq!(r.ok(), "gone\n", "the whiteout crossed hosts");
    // Imported again: nothing to do.
    let again = b.imgadm(&["import", &golden]);
    assert!(again.ok().contains("already installed"), "{}", again.stdout);
}

/// The source answers nothing but reads.
#[test]
fn the_source_is_read_only() {
    let Some(h) = source() else { return };
    let script = format!(
        "import urllib.request, urllib.error\n\
         try:\n    urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:{PORT}/images', data=b'{{}}', method='POST'))\n\
         except urllib.error.HTTPError as e:\n    print(e.code)\n"
    );
    let o = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", h.netns))
        .args(["python3", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "405", "{}", String::from_utf8_lossy(&o.stderr));
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).expect("a zstd stream")
}
