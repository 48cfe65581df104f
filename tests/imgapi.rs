//! Images from IMGAPI servers end to end: a test IMGAPI server
//! (`common/imgapi.rs`) in each test host's network namespace, the real
//! daemon, pool and CLI. Sources, avail, show, import by uuid and by
//! name[@version], origin chains, two imports racing, update, vacuum, a
//! zone from an imported image, and every fault: an unreachable source, a
//! 404, a bad manifest, a corrupted file, a connection dropped mid-file
//! (resumed), a server that ignores Range, a pool that fills.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::imgapi::{manifest_for, tarball, Fault, ImgapiServer};
use common::*;
use serde_json::{json, Value};

/// A server in `h`'s namespace, made `h`'s only image source.
fn serve(h: &TestHost) -> ImgapiServer {
    let server = ImgapiServer::start(&h.netns);
    h.imgadm(&["sources", "-d", "https://images.smartos.org"]).ok();
    let r = h.imgadm(&["sources", "-a", &server.url]);
    assert_eq!(r.ok().trim(), format!("Added \"imgapi\" image source \"{}\"", server.url));
    server
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `n` bytes no compressor shrinks (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An image of `name@version` holding `/etc/<name>` (its version) and
/// `payload` bytes of noise, served by `server`; its manifest.
fn add_image(h: &TestHost, server: &ImgapiServer, name: &str, version: &str, payload: usize, extra: Value) -> Value {
    let etc = format!("etc/{name}");
    let data = noise(payload, payload as u64 + version.len() as u64);
    let file = tarball(&[(etc.as_str(), version.as_bytes()), ("var/noise", &data)]);
    let m = manifest_for(&new_uuid(), name, version, &file, extra);
    server.add(h.dir.path(), m.clone(), &file);
    m
}

/// The busybox fixture, served as it is (an image zones boot).
fn add_busybox(server: &ImgapiServer) -> Value {
    let f = busybox();
    let m: Value = serde_json::from_slice(&std::fs::read(&f.manifest).unwrap()).unwrap();
    server.add_file(m.clone(), f.file.clone());
    m
}

fn uuid_of(m: &Value) -> &str {
    m["uuid"].as_str().unwrap()
}

/// `imgadm` with environment variables set.
fn imgadm_env(h: &TestHost, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin("zonevisor"));
    cmd.arg0("imgadm").args(args).env("ZONEVISOR_SOCKET", &h.socket).envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Nothing of image `uuid` is installed: not listed, no dataset, no download.
#[track_caller]
fn nothing_of(h: &TestHost, uuid: &str) {
    assert_eq!(h.imgadm(&["get", uuid]).code, 3, "image {uuid} is not installed");
    assert!(!h.pool().join(uuid).exists(), "no dataset of {uuid}");
}

// imgadm(8) sources: -a (with its ping check, -f without), -d, -j, -v, -e,
// -c, --add-docker-hub; SmartOS's messages (lib/cli.js do_sources).
#[test]
fn sources_are_listed_added_edited_and_deleted() {
    let Some(mut h) = TestHost::new() else { return };
    assert_eq!(h.imgadm(&["sources"]).ok(), "https://images.smartos.org\n", "SmartOS's default source");
    let server = ImgapiServer::start(&h.netns);
    let url = server.url.clone();
    let desc = format!("\"imgapi\" image source \"{url}\"");
    assert_eq!(h.imgadm(&["sources", "-a", &url]).ok(), format!("Added {desc}\n"), "it answers its ping");
    assert_eq!(h.imgadm(&["sources", "-a", &format!("{url}/")]).ok(), format!("Already have {desc}, no change\n"));
    // A source that does not answer is refused unless -f.
    let dead = "http://127.0.0.1:9";
    let r = h.imgadm(&["sources", "-a", dead]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("error (SourcePing)") && r.stderr.contains(dead), "{}", r.stderr);
    assert_eq!(h.imgadm(&["sources", "-a", dead, "-f"]).ok(), format!("Added \"imgapi\" image source \"{dead}\"\n"));
    assert_eq!(h.imgadm(&["sources", "-a", "ftp://x", "-f"]).code, 1, "not http(s)");
    let r = h.imgadm(&["sources", "--add-docker-hub", "-f"]);
    assert_eq!(r.ok(), "Added \"docker\" image source \"https://docker.io\"\n");
    assert_eq!(
        h.imgadm(&["sources", "-j"]).json(),
        json!([{"url": "https://images.smartos.org", "type": "imgapi"}, {"url": url, "type": "imgapi"},
               {"url": dead, "type": "imgapi"}, {"url": "https://docker.io", "type": "docker"}])
    );
    let v = h.imgadm(&["sources", "-v"]);
    assert!(
        v.ok().starts_with("URL ") && v.stdout.contains("https://docker.io           docker  false"),
        "{}",
        v.stdout
    );
    let c = h.imgadm(&["sources", "-c"]);
    let ok_line = c.stdout.lines().find(|l| l.starts_with(&url)).unwrap_or_default().to_string();
    assert!(ok_line.contains(" true"), "{}", c.stdout);
    assert!(c.stdout.lines().any(|l| l.starts_with(dead) && l.contains(" false")), "{}", c.stdout);
    assert_eq!(h.imgadm(&["sources", "-d", dead]).ok(), format!("Deleted \"imgapi\" image source \"{dead}\"\n"));
    assert_eq!(h.imgadm(&["sources", "-d", dead]).ok(), format!("Do not have image source \"{dead}\", no change\n"));

    // -e: the editor gets SmartOS's text; what it leaves is the new list.
    let script = h.dir.path().join("edit.sh");
    std::fs::write(&script, "#!/bin/sh\nsed -i -e '/docker.io/d' -e 's|^https://images.smartos.org.*|https://images.smartos.org imgapi insecure|' \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = imgadm_env(&h, &["sources", "-e", "-f"], &[("EDITOR", script.to_str().unwrap()), ("VISUAL", "")]);
    assert_eq!(
        r.ok(),
        "Deleted \"imgapi\" image source \"https://images.smartos.org\"\n\
         Deleted \"docker\" image source \"https://docker.io\"\n\
         Added \"imgapi\" image source \"https://images.smartos.org\" (insecure)\n"
    );
    assert_eq!(
        h.imgadm(&["sources", "-j"]).json(),
        json!([{"url": "https://images.smartos.org", "type": "imgapi", "insecure": true}, {"url": url, "type": "imgapi"}])
    );
    let r = imgadm_env(&h, &["sources", "-e"], &[("EDITOR", "true"), ("VISUAL", "")]);
    assert_eq!(r.ok(), "Image sources unchanged\n");
    // The list is the daemon's: it survives a restart.
    h.kill_daemon();
    h.start_daemon();
    assert_eq!(h.imgadm(&["sources"]).ok(), format!("https://images.smartos.org\n{url}\n"));
}

// imgadm(8) avail: every source's active images merged (the first source
// listing a uuid wins), list's columns, sort, filters and -j; a source
// that does not answer fails the command after the others are listed.
#[test]
fn avail_merges_the_sources_and_show_asks_them() {
    let Some(h) = TestHost::new() else { return };
    let a = serve(&h);
    let b = ImgapiServer::start(&h.netns);
    let one = add_image(&h, &a, "alpha", "1.0", 10, json!({"published_at": "2026-01-02T00:00:00.000Z"}));
    let two = add_image(&h, &b, "beta", "2.0", 10, json!({"published_at": "2026-01-01T00:00:00.000Z"}));
    b.add_file(one.clone(), h.dir.path().join(format!("{}.file", uuid_of(&one))));
    let off = add_image(&h, &a, "gamma", "3.0", 10, json!({"state": "disabled"}));
    h.imgadm(&["sources", "-a", &b.url]).ok();

    let r = h.imgadm(&["avail"]);
    let lines: Vec<&str> = r.ok().lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    assert!(lines[0].starts_with("UUID") && lines[0].ends_with("PUB"), "{}", lines[0]);
    assert!(lines[1].starts_with(uuid_of(&two)) && lines[1].contains("beta"), "sorted by published_at: {}", r.stdout);
    assert!(lines[2].starts_with(uuid_of(&one)) && lines[2].ends_with("2026-01-02"), "{}", r.stdout);
    assert!(!r.stdout.contains(uuid_of(&off)), "only active images");
    assert_eq!(h.imgadm(&["avail", "-H", "-o", "name,source", "name=alpha"]).ok(), format!("alpha  {}\n", a.url));
    assert_eq!(h.imgadm(&["available", "-H", "-o", "name", "-s", "-name"]).ok(), "beta\nalpha\n");
    assert_eq!(h.imgadm(&["avail", "-H", "-o", "uuid", "version=~2."]).ok(), format!("{}\n", uuid_of(&two)));
    let j = h.imgadm(&["avail", "-j"]).json();
    assert_eq!(j.as_array().unwrap().len(), 2);
    assert_eq!(j[1], json!({"manifest": one, "source": a.url}));

    // show: by uuid in any state, by name (the latest), by name@version.
    assert_eq!(h.imgadm(&["show", uuid_of(&off)]).json(), off);
    assert_eq!(h.imgadm(&["show", "beta"]).json(), two);
    assert_eq!(h.imgadm(&["show", "alpha@1.0"]).json(), one);
    let bogus = new_uuid();
    let r = h.imgadm(&["show", &bogus]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("error (ImageNotFound): image \"{bogus}\" was not found")), "{}", r.stderr);

    // A source that is down: the others' images, then an error naming it.
    drop(b);
    let r = h.imgadm(&["avail", "-H", "-o", "name"]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "alpha\n");
    assert!(r.stderr.contains("cannot reach image source"), "{}", r.stderr);
}

// import.test.js "imgadm import <uuid>" and its already-installed skip,
// import by name and name@version (the latest when no version), get's
// source; an image with an origin imports its origin chain first; a zone
// from the imported image runs with the files of the whole chain.
#[test]
fn import_by_uuid_and_name_with_the_origin_chain_and_a_zone_runs() {
    let Some(h) = TestHost::new() else { return };
    let server = serve(&h);
    let base = add_busybox(&server);
    let base_uuid = uuid_of(&base).to_string();
    let motd = tarball(&[("etc/motd", b"child of busybox\n")]);
    let child = manifest_for(&new_uuid(), "motd", "1.0", &motd, json!({"origin": base_uuid}));
    server.add(h.dir.path(), child.clone(), &motd);
    let more = tarball(&[("etc/more", b"grandchild\n")]);
    let grand = manifest_for(&new_uuid(), "more", "2.0", &more, json!({"origin": uuid_of(&child)}));
    server.add(h.dir.path(), grand.clone(), &more);

    let g = uuid_of(&grand);
    let r = h.imgadm(&["import", g]);
    let out = r.ok();
    let want = [
        format!("Importing {g} (more@2.0) from \"{}\"", server.url),
        format!("Gather image {g} ancestry"),
        format!("Must download and install 3 images ({})", human_size(base_total(&[&base, &child, &grand]))),
        format!("Imported image {base_uuid} (busybox@1.0.1)"),
        format!("Imported image {} (motd@1.0)", uuid_of(&child)),
        format!("Imported image {g} (more@2.0)"),
    ];
    let lines: Vec<&str> = out.lines().collect();
    let mut at = 0;
    for w in &want {
        let i = lines[at..].iter().position(|l| l == w).unwrap_or_else(|| panic!("{w:?} in order in:\n{out}"));
        at += i + 1;
    }
    assert!(r.stderr.is_empty(), "no progress bar when stderr is not a terminal: {:?}", r.stderr);
    let got = h.imgadm(&["get", g]).json();
    assert_eq!(got["manifest"], grand);
    assert_eq!(got["source"], server.url.as_str());
    assert_eq!(h.imgadm(&["get", &base_uuid]).json()["clones"], 1, "its child image");
    let anc = h.imgadm(&["ancestry", "-H", "-o", "uuid", g]);
    assert_eq!(anc.ok(), format!("{g}\n{}\n{base_uuid}\n", uuid_of(&child)));
    let r = h.imgadm(&["delete", &base_uuid]);
    assert!(
        r.code == 1 && r.stderr.contains("has dependent clones") && r.stderr.contains(uuid_of(&child)),
        "{}",
        r.stderr
    );
    let again = h.imgadm(&["import", g]);
    assert_eq!(again.ok(), format!("Image {g} (more 2.0) is already installed, skipping\n"));

    // A zone from it: busybox's init, and each image's file.
    let vm = h.create_ok(&json!({"brand": "lx", "image_uuid": g, "alias": "imported"}));
    let r = h.cli("zlogin", &[&vm, "cat /etc/motd /etc/more && test -x /bin/busybox && echo ok"], None);
    assert_eq!(r.ok(), "child of busybox\ngrandchild\nok\n");
    assert_eq!(h.imgadm(&["get", g]).json()["clones"], 1, "the zone");
    assert!(server.file_requests(g).len() == 1, "downloaded once: {:?}", server.log());

    // By name: the latest version; by name@version: that one; an origin
    // already installed is not downloaded again.
    let v1 = add_image(&h, &server, "tool", "1.0", 1000, json!({"published_at": "2026-02-01T00:00:00.000Z"}));
    let v3 = add_image(
        &h,
        &server,
        "tool",
        "3.0",
        1000,
        json!({"published_at": "2026-03-01T00:00:00.000Z", "origin": base_uuid}),
    );
    let _v2 = add_image(&h, &server, "tool", "2.0", 1000, json!({"published_at": "2026-02-15T00:00:00.000Z"}));
    let r = h.imgadm(&["import", "tool"]);
    assert!(r.ok().contains(&format!("Image {base_uuid} already installed")), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("Imported image {} (tool@3.0)", uuid_of(&v3))), "{}", r.stdout);
    assert_eq!(server.file_requests(&base_uuid).len(), 1, "the origin was downloaded once");
    let r = h.imgadm(&["import", "-q", "tool@1.0"]);
    assert!(r.ok().contains(&format!("Imported image {} (tool@1.0)", uuid_of(&v1))), "{}", r.stdout);
    let r = h.imgadm(&["import", "tool@3.0"]);
    assert_eq!(r.ok(), format!("Image {} (tool@3.0) is already installed from {}\n", uuid_of(&v3), server.url));
    let r = h.imgadm(&["import", "tool@9.9"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("error (ActiveImageNotFound): an active image \"tool@9.9\" was not found"),
        "{}",
        r.stderr
    );
    let r = h.imgadm(&["import", "a b"]);
    assert!(r.code == 1 && r.stderr.contains("invalid image-id arg"), "{}", r.stderr);
    // -S: this source only.
    let other = ImgapiServer::start(&h.netns);
    let only_there = add_image(&h, &other, "elsewhere", "1", 10, json!({}));
    assert_eq!(h.imgadm(&["import", uuid_of(&only_there)]).code, 1, "not in the sources");
    let r = h.imgadm(&["import", "-S", &other.url, uuid_of(&only_there)]);
    assert!(r.ok().contains("Imported image"), "{}", r.stdout);
    assert_eq!(h.imgadm(&["get", uuid_of(&only_there)]).json()["source"], other.url.as_str());
}

/// SmartOS's human size of the sum of the manifests' file sizes.
fn base_total(ms: &[&Value]) -> u64 {
    ms.iter().map(|m| m["files"][0]["size"].as_u64().unwrap()).sum()
}

/// SmartOS's human size (one decimal, cut).
fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut i = 0;
    while i + 1 < units.len() && bytes >= 1024u64.pow(i as u32 + 1) {
        i += 1;
    }
    let tenths = bytes * 10 / 1024u64.pow(i as u32);
    format!("{}.{} {}", tenths / 10, tenths % 10, units[i])
}

// import.test.js "concurrent: imgadm import": two imports of one image at
// once both succeed, and it is downloaded and installed once.
#[test]
fn two_imports_of_one_image_race_and_it_is_installed_once() {
    let Some(h) = TestHost::new() else { return };
    let server = serve(&h);
    let m = add_image(&h, &server, "raced", "1.0", 2 << 20, json!({}));
    let uuid = uuid_of(&m).to_string();
    // ~32 chunks of 64 KiB, 40 ms each: the second import comes mid-download.
    server.fault(&uuid, Fault::Slow(Duration::from_millis(40)));
    let runs: Vec<Run> = std::thread::scope(|s| {
        let first = s.spawn(|| h.imgadm(&["import", &uuid]));
        std::thread::sleep(Duration::from_millis(300));
        let second = s.spawn(|| h.imgadm(&["import", &uuid]));
        vec![first.join().unwrap(), second.join().unwrap()]
    });
    for r in &runs {
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    }
    let all = format!("{}{}", runs[0].stdout, runs[1].stdout);
    assert_eq!(all.matches(&format!("Imported image {uuid}")).count(), 1, "{all}");
    assert!(
        runs[1].stdout.contains("was imported while waiting on lock")
            || runs[1].stdout.contains("is already installed"),
        "{}",
        runs[1].stdout
    );
    assert_eq!(server.file_requests(&uuid).len(), 1, "downloaded once: {:?}", server.log());
    assert_eq!(h.imgadm(&["list", "-H", "-o", "uuid"]).ok(), format!("{uuid}\n"));
}

// imgadm(8) import -q: a progress bar on a terminal (here a pty that
// `script` makes), none with -q; none when piped (the other tests).
#[test]
fn a_progress_bar_is_drawn_on_a_terminal_only() {
    let Some(h) = TestHost::new() else { return };
    if Command::new("script").arg("--version").output().is_err() {
        skip("script (util-linux) is not installed");
        return;
    }
    let server = serve(&h);
    let on_tty = |uuid: &str, quiet: bool| {
        let q = if quiet { "-q " } else { "" };
        let cmd =
            format!("ZONEVISOR_SOCKET={} {} imgadm import {q}{uuid}", h.socket.display(), bin("zonevisor").display());
        let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let m = add_image(&h, &server, "bar", "1", 2 << 20, json!({}));
    server.fault(uuid_of(&m), Fault::Slow(Duration::from_millis(20)));
    let out = on_tty(uuid_of(&m), false);
    assert!(out.contains("Downloading [") && out.contains('%'), "a bar: {out:?}");
    assert!(out.contains(&format!("Imported image {}", uuid_of(&m))), "{out:?}");
    let m = add_image(&h, &server, "nobar", "1", 2 << 20, json!({}));
    server.fault(uuid_of(&m), Fault::Slow(Duration::from_millis(20)));
    let out = on_tty(uuid_of(&m), true);
    assert!(!out.contains("Downloading ["), "-q: no bar: {out:?}");
    assert!(out.contains(&format!("Imported image {}", uuid_of(&m))), "{out:?}");
}

// Faults, each a clear error naming the image with nothing of it
// installed, and the next import succeeding: an unreachable source, an
// image or file that is not there (404), a manifest that fails
// validation, a corrupted file (sha1), a connection dropped mid-file
// (resumed in the same import, or by the next one), a server that
// ignores Range.
#[test]
fn faults_are_clear_errors_and_the_next_import_succeeds() {
    let Some(h) = TestHost::new() else { return };
    let server = serve(&h);
    let size = 1 << 20;

    // An unreachable source.
    let m = add_image(&h, &server, "reach", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    h.imgadm(&["sources", "-a", "http://127.0.0.1:9", "-f"]).ok();
    h.imgadm(&["sources", "-d", &server.url]).ok();
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&uuid) && r.stderr.contains("cannot reach image source http://127.0.0.1:9"),
        "{}",
        r.stderr
    );
    nothing_of(&h, &uuid);
    h.imgadm(&["sources", "-a", &server.url]).ok();
    h.imgadm(&["import", &uuid]).ok();
    h.imgadm(&["sources", "-d", "http://127.0.0.1:9"]).ok();

    // Not there: the image, or its file.
    let bogus = new_uuid();
    let r = h.imgadm(&["import", &bogus]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&format!("error (ActiveImageNotFound): an active image \"{bogus}\"")), "{}", r.stderr);
    let m = add_image(&h, &server, "nofile", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    server.fault(&uuid, Fault::NotFound { times: 1 });
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&uuid) && r.stderr.contains("its file is not on the source"), "{}", r.stderr);
    nothing_of(&h, &uuid);
    h.imgadm(&["import", &uuid]).ok();

    // A manifest that fails validation: nothing is downloaded.
    let m = add_image(&h, &server, "badmanifest", "1", size, json!({"os": "smartos"}));
    let uuid = uuid_of(&m).to_string();
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&uuid) && r.stderr.contains("is not valid") && r.stderr.contains("os"), "{}", r.stderr);
    assert!(server.file_requests(&uuid).is_empty(), "nothing downloaded");
    nothing_of(&h, &uuid);
    let mut fixed = m.clone();
    fixed["os"] = json!("linux");
    server.set_manifest(fixed);
    h.imgadm(&["import", &uuid]).ok();

    // A corrupted byte: the sha1 does not match; the download is deleted.
    let m = add_image(&h, &server, "corrupt", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    server.fault(&uuid, Fault::Corrupt { at: 1000, times: 1 });
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains(&uuid) && r.stderr.contains("files.0.sha1"), "{}", r.stderr);
    nothing_of(&h, &uuid);
    assert!(!h.pool().join(format!("{uuid}-download")).exists(), "the corrupt download is gone");
    h.imgadm(&["import", &uuid]).ok();

    // Dropped mid-file once: resumed with Range in the same import.
    let m = add_image(&h, &server, "dropped", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    server.fault(&uuid, Fault::DropAfter { bytes: 300_000, times: 1 });
    let r = h.imgadm(&["import", &uuid]);
    assert!(r.ok().contains(&format!("Download of image {uuid} interrupted at 300000")), "{}", r.stdout);
    let ranges: Vec<Option<String>> = server.file_requests(&uuid).into_iter().map(|l| l.range).collect();
    assert_eq!(ranges, [None, Some("bytes=300000-".to_string())]);
    h.imgadm(&["get", &uuid]).ok();

    // Dropped every time: the import fails, keeps what arrived, and the
    // next import resumes from there.
    let m = add_image(&h, &server, "flaky", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    server.fault(&uuid, Fault::DropAfter { bytes: 100_000, times: 5 });
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&uuid) && r.stderr.contains("failed 5 times"), "{}", r.stderr);
    assert_eq!(h.imgadm(&["get", &uuid]).code, 3);
    let kept = h.pool().join(format!("{uuid}-download")).join(m["files"][0]["sha1"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&kept).map(|m| m.len()).ok(), Some(500_000), "five drops of 100000 bytes kept");
    let before = server.file_requests(&uuid).len();
    h.imgadm(&["import", &uuid]).ok();
    let next: Vec<Option<String>> = server.file_requests(&uuid)[before..].iter().map(|l| l.range.clone()).collect();
    assert_eq!(next, [Some("bytes=500000-".to_string())], "resumed where the last import stopped");
    assert!(!h.pool().join(format!("{uuid}-download")).exists(), "the download goes once installed");

    // A server that ignores Range: the file again from the start.
    let m = add_image(&h, &server, "norange", "1", size, json!({}));
    let uuid = uuid_of(&m).to_string();
    server.fault(&uuid, Fault::IgnoreRange);
    server.fault(&uuid, Fault::DropAfter { bytes: 200_000, times: 1 });
    let r = h.imgadm(&["import", &uuid]);
    assert!(r.ok().contains("does not resume downloads"), "{}", r.stdout);
    h.imgadm(&["get", &uuid]).ok();
    assert!(h.log().contains("installed image"), "the daemon logs its installs");
}

// A pool that fills mid-import: while downloading (the download is
// deleted) and while extracting (the half-made image is destroyed); the
// pool is usable again and the next import of a smaller image succeeds.
#[test]
fn a_pool_that_fills_mid_import_is_a_clear_error() {
    let Some(h) = TestHost::with_pool_size("512M") else { return };
    let server = serve(&h);
    // More than the pool holds, incompressible: the download fills it.
    let path = h.dir.path().join("big.file");
    let st = Command::new("sh").arg("-c").arg(format!("head -c 600M /dev/urandom > {}", path.display())).status();
    assert!(st.unwrap().success());
    let sum = Command::new("sha1sum").arg(&path).output().unwrap();
    let sha1 = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    let mut m = manifest_for(&new_uuid(), "big", "1", b"", json!({}));
    m["files"] = json!([{"sha1": sha1, "size": 600u64 << 20, "compression": "none"}]);
    let uuid = uuid_of(&m).to_string();
    server.add_file(m, path);
    let r = h.imgadm(&["import", &uuid]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&uuid) && r.stderr.contains("pool zones is full"), "{}", r.stderr);
    nothing_of(&h, &uuid);
    assert!(!h.pool().join(format!("{uuid}-download")).exists(), "the download is deleted");

    // A small file that extracts to more than the pool holds (a repeated
    // byte: zeros would be installed as holes and take no space).
    let zeros = vec![b'x'; 64 << 20];
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for i in 0..20 {
        let mut hd = tar::Header::new_gnu();
        hd.set_size(zeros.len() as u64);
        hd.set_mode(0o644);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_mtime(0);
        hd.set_cksum();
        b.append_data(&mut hd, format!("zero{i}"), &zeros[..]).unwrap();
    }
    let bomb = b.into_inner().unwrap().finish().unwrap();
    let m = manifest_for(&new_uuid(), "bomb", "1", &bomb, json!({}));
    let bomb_uuid = uuid_of(&m).to_string();
    server.add(h.dir.path(), m, &bomb);
    let r = h.imgadm(&["import", &bomb_uuid]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&bomb_uuid) && r.stderr.contains("is full"), "{}", r.stderr);
    nothing_of(&h, &bomb_uuid);

    let small = add_image(&h, &server, "small", "1", 1 << 20, json!({}));
    h.imgadm(&["import", uuid_of(&small)]).ok();
    assert_eq!(h.imgadm(&["list", "-H", "-o", "name"]).ok(), "small\n");
}

// update.test.js "imgadm update" and imgadm(8)'s update: manifests
// fetched again, what changed said in SmartOS's words, -n changes
// nothing; vacuum deletes what no instance uses, asking first unless -f.
#[test]
fn update_refetches_manifests_and_vacuum_deletes_unused_images() {
    let Some(h) = TestHost::new() else { return };
    let server = serve(&h);
    let base = add_busybox(&server);
    let a = add_image(&h, &server, "a", "1", 10, json!({}));
    let b = add_image(&h, &server, "b", "1", 10, json!({"origin": uuid_of(&base)}));
    for m in [&a, &b] {
        h.imgadm(&["import", uuid_of(m)]).ok();
    }
    assert_eq!(h.imgadm(&["update"]).ok(), "", "nothing changed");
    let mut a2 = a.clone();
    a2["description"] = json!("now described");
    a2["tags"] = json!({"role": "web"});
    server.set_manifest(a2.clone());
    let ua = uuid_of(&a);
    let msg = format!("Updated 2 manifest fields for image {ua} from \"{}\": description, tags\n", server.url);
    assert_eq!(h.imgadm(&["update", "-n"]).ok(), msg);
    assert_eq!(h.imgadm(&["get", ua]).json()["manifest"], a, "-n changes nothing");
    assert_eq!(h.imgadm(&["update", ua]).ok(), msg);
    assert_eq!(h.imgadm(&["get", ua]).json()["manifest"], a2);
    let bogus = new_uuid();
    let r = h.imgadm(&["update", &bogus]);
    assert!(r.code == 1 && r.stderr.contains("no installed image with the given UUID(s)"), "{}", r.stderr);
    // An image no source has: a warning.
    let local = new_uuid();
    let file = tarball(&[("etc/local", b"x")]);
    let lm = manifest_for(&local, "local", "1", &file, json!({}));
    let (mp, fp) = (h.dir.path().join("local.json"), h.dir.path().join("local.tgz"));
    std::fs::write(&mp, lm.to_string()).unwrap();
    std::fs::write(&fp, &file).unwrap();
    h.imgadm(&["install", "-m", mp.to_str().unwrap(), "-f", fp.to_str().unwrap()]).ok();
    assert_eq!(
        h.imgadm(&["update", &local]).ok(),
        format!("warning: Could not find image {local} in image sources (skipping)\n")
    );

    // vacuum: a zone keeps busybox; b (on busybox) and a and local go.
    let vm = h.create_ok(&json!({"brand": "lx", "image_uuid": uuid_of(&base), "autoboot": false}));
    let r = h.imgadm(&["vacuum", "-n", "-f"]);
    let mut dry: Vec<&str> = r.ok().lines().collect();
    dry.sort();
    assert_eq!(dry.len(), 3, "{}", r.stdout);
    assert!(dry.iter().all(|l| l.starts_with("[dry-run] Deleted image ")), "{}", r.stdout);
    assert_eq!(h.imgadm(&["list", "-H", "-o", "name"]).stdout.lines().count(), 4, "a dry run deletes nothing");
    let r = h.cli("imgadm", &["vacuum"], Some("n\n"));
    assert!(
        r.ok().starts_with("This will delete the following images:\n")
            && r.stdout.ends_with("Delete these 3 images? [y/N] Aborting\n"),
        "{}",
        r.stdout
    );
    let r = h.imgadm(&["vacuum", "-f"]);
    assert!(r.ok().contains(&format!("Deleted image {} (b@1)", uuid_of(&b))), "{}", r.stdout);
    assert_eq!(h.imgadm(&["list", "-H", "-o", "name"]).ok(), "busybox\n");
    h.vmadm(&["delete", &vm]).ok();
    let r = h.imgadm(&["vacuum", "-f"]);
    assert_eq!(r.ok(), format!("Deleted image {} (busybox@1.0.1)\n", uuid_of(&base)));
    assert_eq!(h.imgadm(&["vacuum", "-f"]).ok(), "", "nothing left");
}
