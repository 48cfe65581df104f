//! OCI images end to end: Debian's `docker-registry` in each test host's
//! network namespace, images pushed by `skopeo` (built with `umoci` from
//! the busybox fixture), `imgadm import` of them, and lx zones that run
//! their entrypoint (`docker: true`).

mod common;
#[path = "common/registry.rs"]
mod registry;

use std::time::Duration;

use common::*;
use registry::*;
use serde_json::{json, Value};

/// Imports `reference`; the image's uuid.
#[track_caller]
fn import_ok(h: &TestHost, reference: &str) -> (String, String) {
    let r = h.imgadm(&["import", reference]);
    assert_eq!(r.code, 0, "imgadm import {reference}: {} {}\n{}", r.stdout, r.stderr, h.log());
    let uuid = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Imported image ").or_else(|| l.strip_prefix("Image ")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no uuid in {:?}", r.stdout))
        .to_string();
    (uuid, r.stdout.clone())
}

/// The datasets in the pool (its top-level directories, the store's aside).
fn datasets(h: &TestHost) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.pool())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config")
        .collect();
    names.sort();
    names
}

#[test]
fn import_applies_the_layers_with_their_whiteouts_once() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    let layout = test_layout();
    reg.push(layout, TEST_TAG, "zv/test:1");
    let digests = layer_digests(layout, TEST_TAG);
    assert_eq!(digests.len(), 2, "the test image has two layers");

    let (uuid, out) = import_ok(&h, &reg.reference("zv/test:1"));
    assert!(out.starts_with(&format!("Importing {} from its registry\n", reg.reference("zv/test:1"))), "{out}");
    assert_eq!(uuid, smartos_uuid(&digests), "SmartOS's uuid of the digest chain");
    let img = h.imgadm(&["get", &uuid]).json();
    let m = &img["manifest"];
    assert_eq!((m["type"].as_str(), m["os"].as_str()), (Some("docker"), Some("linux")), "{m}");
    assert_eq!(m["requirements"]["brand"], "lx");
    assert_eq!((m["name"].as_str(), m["version"].as_str()), (Some("127.0.0.1:5000/zv/test"), Some("1")));
    assert_eq!(m["tags"]["docker:repo"], "127.0.0.1:5000/zv/test");
    assert_eq!(m["tags"]["docker:id"], Value::from(digests[1].clone()), "the top layer, as SmartOS");
    assert_eq!(m["tags"]["docker:tag:1"], true);
    assert_eq!(m["tags"]["docker:layers"], json!(digests));
    assert_eq!(m["tags"]["docker:config"]["User"], "app");
    assert_eq!(m["tags"]["docker:config"]["WorkingDir"], "/srv");
    assert_eq!(m["tags"]["docker:config"]["Entrypoint"], json!(["/bin/sh", "-c"]));
    let listed = h.imgadm(&["list", "-H", "-o", "uuid,type"]);
    assert_eq!(listed.ok().split_whitespace().collect::<Vec<_>>(), [uuid.as_str(), "docker"]);

    // One dataset: the layers flattened, the whiteout honoured, nothing staged left.
    let ds = h.pool().join(&uuid);
    let root = ds.join("root");
    assert_eq!(std::fs::read_to_string(root.join("srv/new")).unwrap(), "new\n");
    assert_eq!(std::fs::read_to_string(root.join("srv/keep")).unwrap(), "keep\n");
    assert!(!root.join("srv/old").exists(), "layer 2's whiteout removed /srv/old");
    assert!(!root.join("srv/.wh.old").exists(), "a whiteout is no file");
    assert!(root.join("bin/busybox").exists());
    let top: Vec<String> =
        std::fs::read_dir(&ds).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(top, ["root"], "the staged layers are gone");
    let err = std::fs::write(root.join("srv/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "the image is read-only: {err}");

    // Twice: nothing downloaded, nothing made. By digest: the same image.
    let before = datasets(&h);
    let (again, out) = import_ok(&h, &reg.reference("zv/test:1"));
    assert_eq!(again, uuid);
    assert!(out.contains("is already installed, skipping"), "{out}");
    let by_digest = format!("{}@{}", reg.reference("zv/test"), m["tags"]["docker:manifest"].as_str().unwrap());
    let (same, out) = import_ok(&h, &by_digest);
    assert_eq!(same, uuid, "{out}");
    assert_eq!(datasets(&h), before);
    assert!(h.log().contains("image already installed"), "{}", h.log());
}

#[test]
fn a_corrupted_layer_is_refused_and_leaves_nothing() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    let layout = test_layout();
    reg.push(layout, TEST_TAG, "zv/test:1");
    let digests = layer_digests(layout, TEST_TAG);
    let before = datasets(&h);
    // The registry keeps blobs as files and serves them as they are: flip
    // bytes of the upper layer, keeping its size.
    let stored = reg.blob_path(&digests[1]);
    let good = std::fs::read(&stored).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&stored, &bad).unwrap();
    let r = h.imgadm(&["import", &reg.reference("zv/test:1")]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&reg.reference("zv/test:1")), "names the image: {}", r.stderr);
    assert!(r.stderr.contains("digest") && r.stderr.contains(&digests[1]), "says which digest: {}", r.stderr);
    assert_eq!(datasets(&h), before, "no dataset left");
    assert_eq!(h.imgadm(&["list", "-H"]).ok(), "", "no image left");
    assert!(!h.imgadm(&["get", &smartos_uuid(&digests)]).stderr.is_empty(), "the image is not installed");
    // The next attempt, the blob repaired, succeeds.
    std::fs::write(&stored, &good).unwrap();
    let (uuid, _) = import_ok(&h, &reg.reference("zv/test:1"));
    assert_eq!(uuid, smartos_uuid(&digests));
}

#[test]
fn unknown_tags_repositories_and_registries_are_clear_errors() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    reg.push(test_layout(), TEST_TAG, "zv/test:1");
    for (reference, says) in [
        (reg.reference("zv/test:nope"), "was not found in registry 127.0.0.1:5000"),
        (reg.reference("zv/absent:1"), "was not found in registry 127.0.0.1:5000"),
        ("127.0.0.1:5001/zv/test:1".to_string(), "cannot reach registry 127.0.0.1:5001"),
    ] {
        let r = h.imgadm(&["import", &reference]);
        assert_eq!(r.code, 1, "{reference}: {} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&reference) && r.stderr.contains(says), "{reference}: {}", r.stderr);
    }
    assert_eq!(h.imgadm(&["list", "-H"]).ok(), "");
}

#[test]
fn a_registry_that_demands_credentials() {
    let Some(mut h) = registry::host() else { return };
    let reg = Registry::start(&h, true);
    reg.push(test_layout(), TEST_TAG, "zv/test:1");
    let r = h.imgadm(&["import", &reg.reference("zv/test:1")]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("registry 127.0.0.1:5000 requires authentication to pull zv/test"), "{}", r.stderr);
    assert_eq!(h.imgadm(&["list", "-H"]).ok(), "");
    // With credentials in a Docker config.json (the daemon's $DOCKER_CONFIG).
    let docker = h.dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(docker.join("config.json"), json!({"auths": {"127.0.0.1:5000": {"auth": auth}}}).to_string())
        .unwrap();
    h.kill_daemon();
    h.daemon_env.push(("DOCKER_CONFIG".into(), docker.display().to_string()));
    h.start_daemon();
    let (uuid, _) = import_ok(&h, &reg.reference("zv/test:1"));
    assert_eq!(uuid, smartos_uuid(&layer_digests(test_layout(), TEST_TAG)));
}

/// The console's line that starts with `marker`.
#[track_caller]
fn console_line(h: &TestHost, uuid: &str, marker: &str) -> String {
    let console = h.wait_console(uuid, marker, 1, Duration::from_secs(60));
    console.lines().find(|l| l.contains(marker)).unwrap().trim().to_string()
}

#[test]
fn a_docker_zone_runs_the_image_s_command_as_its_user_and_stops_when_it_exits() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    reg.push(test_layout(), TEST_TAG, "zv/test:1");
    let (img, _) = import_ok(&h, &reg.reference("zv/test:1"));

    // The image's entrypoint and command, environment, working directory and user.
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "docker": true, "alias": "oci",
                                   "max_physical_memory": 128}));
    let line = console_line(&h, &uuid, TEST_MARKER);
    assert_eq!(line, format!("{TEST_MARKER} user=1000:1000 groups=1000 1001 pwd=/srv greeting=hello home=/home/app"));
    let console = h.wait_console(&uuid, "new", 1, Duration::from_secs(30));
    assert!(console.contains("keep") && !console.contains("old"), "ls /srv: {console}");
    // Its exit stops the zone, with its status recorded.
    let vm = h.wait_state(&uuid, "stopped", Duration::from_secs(30));
    assert_eq!(vm["exit_status"], 0, "{vm}");
    assert_eq!(vm["restart_init"], false);
    assert_eq!(vm["internal_metadata_namespaces"], json!(["docker"]));
    let md = &vm["internal_metadata"];
    assert_eq!(md["docker:entrypoint"], "[\"/bin/sh\",\"-c\"]", "filled from the image: {md}");
    assert_eq!((md["docker:user"].as_str(), md["docker:workdir"].as_str()), (Some("app"), Some("/srv")));
    assert_eq!(md["docker:id"].as_str().map(str::len), Some(64));
    let log = h.vmadm(&["console", "--log", &uuid]);
    assert!(log.ok().contains(TEST_MARKER), "vmadm console --log: {}", log.stdout);

    // The payload's docker:* keys override the image's, as SmartOS's do.
    let cmd = "echo OVERRIDE user=$(id -u) greeting=$GREETING extra=$EXTRA pwd=$(pwd) stdin=$(readlink /proc/self/fd/0); exit 3";
    let u2 = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "docker": true, "internal_metadata": {
        "docker:cmd": serde_json::to_string(&[cmd]).unwrap(), "docker:user": "0", "docker:workdir": "~/work",
        "docker:env": "[\"EXTRA=yes\"]"}}));
    let line = console_line(&h, &u2, "OVERRIDE");
    assert_eq!(line, "OVERRIDE user=0 greeting=hello extra=yes pwd=/root/work stdin=/dev/null");
    assert_eq!(h.wait_state(&u2, "stopped", Duration::from_secs(30))["exit_status"], 3);

    // Otherwise a zone like any other: zlogin, limits; vmadm stop sends SIGTERM.
    let cmd = "trap 'echo GOT-TERM; exit 0' TERM; echo READY; while :; do sleep 1; done";
    let u3 = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "docker": true, "max_physical_memory": 96,
        "internal_metadata": {"docker:cmd": serde_json::to_string(&[cmd]).unwrap()}}));
    console_line(&h, &u3, "READY");
    let r = h.cli(
        "zlogin",
        &[&u3, "grep -E '^(Uid|Gid|Groups):' /proc/1/status; cat /proc/1/cmdline | tr '\\0' ' '"],
        None,
    );
    let out = r.ok();
    assert!(out.contains("Uid:\t1000\t1000\t1000\t1000") && out.contains("Groups:\t1000 1001"), "{out}");
    assert!(out.contains("/bin/sh -c trap"), "{out}");
    let mem = h.cli("zlogin", &[&u3, "grep MemTotal /proc/meminfo"], None);
    assert!(mem.ok().contains(&format!("{}", 96 * 1024)), "the zone's memory cap: {}", mem.stdout);
    let stop = h.vmadm(&["stop", &u3]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(h.console(&u3).contains("GOT-TERM"), "SIGTERM reached the command: {}", h.console(&u3));
    assert_eq!(h.get(&u3)["exit_status"], 0);
}

#[test]
fn docker_zones_are_checked_at_create() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    // An image without a command: the payload must give one.
    let layout = write_layout(&h.dir.path().join("bare"), "bare", &[busybox_layer()], json!({"config": {}}));
    reg.push(&layout, "bare", "zv/bare:1");
    let (img, _) = import_ok(&h, &reg.reference("zv/bare:1"));
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "docker": true}));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("internal_metadata.docker:cmd") && r.stderr.contains("needs docker:cmd"), "{}", r.stderr);
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "docker": true,
                             "internal_metadata": {"docker:cmd": "sleep 1"}}));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("JSON array of strings"), "{}", r.stderr);
    // A user the image does not have: the start fails, saying so.
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "docker": true,
                             "internal_metadata": {"docker:cmd": "[\"true\"]", "docker:user": "ghost"}}));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("ghost") && r.stderr.contains("/etc/passwd"), "{}", r.stderr);
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "docker": true,
                             "internal_metadata": {"docker:cmd": "[\"no-such-program\"]"}}));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no-such-program") && r.stderr.contains("PATH"), "{}", r.stderr);
}

#[test]
fn two_imports_of_one_image_install_it_once() {
    let Some(h) = registry::host() else { return };
    let reg = Registry::start(&h, false);
    reg.push(test_layout(), TEST_TAG, "zv/test:1");
    let before = datasets(&h);
    let reference = reg.reference("zv/test:1");
    let runs: Vec<Run> = std::thread::scope(|s| {
        let a = s.spawn(|| h.imgadm(&["import", &reference]));
        let b = s.spawn(|| h.imgadm(&["import", &reference]));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for r in &runs {
        assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    }
    let imported = runs.iter().filter(|r| r.stdout.contains("Imported image")).count();
    let skipped = runs.iter().filter(|r| r.stdout.contains("is already installed")).count();
    assert_eq!((imported, skipped), (1, 1), "{:?}", runs.iter().map(|r| &r.stdout).collect::<Vec<_>>());
    let uuid = smartos_uuid(&layer_digests(test_layout(), TEST_TAG));
    let mut want = before;
    want.push(uuid);
    want.sort();
    assert_eq!(datasets(&h), want);
}

#[test]
fn a_layer_that_fills_the_pool_is_refused_and_leaves_it_usable() {
    if let Err(why) = tools_ready() {
        skip(&why);
        return;
    }
    let Some(h) = TestHost::with_pool_size("2G") else { return };
    let reg = Registry::start(&h, false);
    // A few MiB that expand to 3 GiB in a 2 GiB pool.
    let bomb = bomb_layer(&h.dir.path().join("bomb-layer"), "big", 3 << 30);
    assert!(bomb.0.len() < 32 << 20, "not much of a bomb");
    let tar = busybox_layer();
    let base = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), format!("sha256:{}", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tar))))
    };
    let layout = write_layout_gzipped(&h.dir.path().join("bomb"), "bomb", &[base, bomb], json!({"config": {}}));
    reg.push(&layout, "bomb", "zv/bomb:1");
    let before = datasets(&h);
    let r = h.imgadm(&["import", &reg.reference("zv/bomb:1")]);
    assert_eq!(r.code, 1, "a 3 GiB layer fit a 2 GiB pool: {} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("pool zones is full") && r.stderr.contains("zv/bomb:1"), "{}", r.stderr);
    assert_eq!(datasets(&h), before, "nothing left");
    // The next import fits.
    reg.push(test_layout(), TEST_TAG, "zv/test:1");
    import_ok(&h, &reg.reference("zv/test:1"));
}

#[test]
fn a_docker_image_installs_from_one_layer_file() {
    let Some(h) = TestHost::new() else { return };
    // imgadm install takes type docker too: one flattened layer.
    let dir = h.dir.path().join("docker-image");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("layer.tar.gz");
    std::fs::copy(&busybox().file, &file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let sha1 = hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&bytes));
    let uuid = "4d1f5a2e-0c1b-4e6f-9a8d-7c6b5a4f3e21";
    let manifest = json!({"v": 2, "uuid": uuid, "name": "flat", "version": "1", "type": "docker", "os": "linux",
        "requirements": {"brand": "lx"},
        "tags": {"docker:config": {"Entrypoint": ["/bin/echo"], "Cmd": ["FLAT-OK"]}},
        "files": [{"sha1": sha1, "size": bytes.len(), "compression": "gzip"}]});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let r = h.imgadm(&["install", "-m", dir.join("manifest.json").to_str().unwrap(), "-f", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert_eq!(h.imgadm(&["get", uuid]).json()["manifest"]["type"], "docker");
    let zone = h.create_ok(&json!({"brand": "lx", "image_uuid": uuid, "docker": true}));
    h.wait_console(&zone, "FLAT-OK", 1, Duration::from_secs(60));
    assert_eq!(h.wait_state(&zone, "stopped", Duration::from_secs(30))["exit_status"], 0);
}
