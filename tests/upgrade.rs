//! An upgrade, end to end: a pool made by the previous release, with a zone
//! running and one stopped, taken over by this release's daemon.
//!
//! The previous release is commit [`PREVIOUS_RELEASE`] (df84e2b): the last
//! one whose state database carried no schema version (it left `PRAGMA
//! user_version` at 0 and patched its tables at every start). It is named by
//! commit because the project tags no releases yet; when it does, this
//! becomes the tag of the release before the current one.
//!
//! Its binaries are built once from git history (`git archive` into a cache
//! under `/var/cache/zonevisor/releases/<commit>`, then `cargo build
//! --offline --locked` with its own target directory there), so reruns
//! start at once. Without git history, a toolchain or the crates of its
//! `Cargo.lock` in the local registry, the test skips with the reason,
//! except in CI, where it fails.
//!
//! What it guards: the state database migrates with every row kept; the
//! zone left running keeps running through the upgrade with the monitor the
//! old release started, which the new daemon re-adopts and then stops (the
//! new daemon speaking the old monitor's control protocol and reading the
//! run directory it wrote); the stopped zone starts under the new daemon;
//! `vmadm get` shows what it showed before, plus only what the new release
//! adds.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The release before this one (see the module doc): the full commit id.
const PREVIOUS_RELEASE: &str = "df84e2b95273f92df6346c9163af4f47e1e5e7e2";

/// The schema version this release's store migrates to
/// (`zonevisor_daemon::store::SCHEMA_VERSION`; the module is private).
const NEW_SCHEMA_VERSION: u32 = 5;

/// The previous release's binaries.
struct Release {
    /// Where `zonevisord`, `zonevisor` and `zonevisor-monitor` are.
    bin: PathBuf,
}

impl Release {
    fn exe(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// Runs `cmd`, returning its stdout, or what it printed when it failed.
fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!("{what} failed ({}):\n{}", out.status, tail.join("\n")));
    }
    Ok(out.stdout)
}

/// Builds (once; cached) the binaries of `commit` from this repository's
/// history.
fn build_release(commit: &str) -> Result<Release, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = std::env::var_os("ZONEVISOR_RELEASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/zonevisor/releases"))
        .join(commit);
    let src = cache.join("src");
    if !src.join("Cargo.lock").exists() {
        run(
            Command::new("git").arg("-C").arg(repo).args(["cat-file", "-e", &format!("{commit}^{{commit}}")]),
            &format!("finding commit {commit} in the git history of {}", repo.display()),
        )?;
        std::fs::create_dir_all(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
        // Unpacked beside, then renamed: a half-unpacked tree is never taken
        // for a whole one.
        let tmp = cache.join(format!("src.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
        run(
            Command::new("bash")
                .arg("-c")
                .arg(r#"set -o pipefail; git -C "$1" archive --format=tar "$2" | tar -x -C "$3""#)
                .arg("bash")
                .arg(repo)
                .arg(commit)
                .arg(&tmp),
            &format!("unpacking {commit} with git archive"),
        )?;
        if std::fs::rename(&tmp, &src).is_err() {
            // Another test process unpacked it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = cache.join("target");
    eprintln!("upgrade: building release {commit} in {} (slow only the first time)", cache.display());
    let started = Instant::now();
    run(
        Command::new(cargo)
            .current_dir(&src)
            .args(["build", "--bins", "--offline", "--locked", "--target-dir"])
            .arg(&target)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET_DIR"),
        &format!("cargo build of release {commit}"),
    )?;
    eprintln!("upgrade: release {commit} built in {:.1?}", started.elapsed());
    let bin = target.join("debug");
    for name in ["zonevisord", "zonevisor", "zonevisor-monitor"] {
        if !bin.join(name).is_file() {
            return Err(format!("the build of {commit} made no {}", bin.join(name).display()));
        }
    }
    Ok(Release { bin })
}

/// A test host whose first daemon is the previous release's: its own
/// root, pool and network namespace, as `TestHost::new` makes them.
fn old_host(old: &Release) -> TestHost {
    let mut h = TestHost::prepare("8G");
    start_old_daemon(&mut h, old);
    h
}

/// Starts the previous release's daemon on `h`, as `TestHost::start_daemon`
/// starts this one's, and waits until it answers.
fn start_old_daemon(h: &mut TestHost, old: &Release) {
    std::fs::create_dir_all(&h.root).unwrap();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(h.dir.path().join("daemon.log")).unwrap();
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{}", h.netns))
        .arg("--")
        .arg(old.exe("zonevisord"))
        .arg("--root")
        .arg(&h.root)
        .arg("--pool-size")
        .arg(&h.pool_size)
        .arg("--cgroup-parent")
        .arg(&h.cgroup_parent)
        .arg("--monitor")
        .arg(old.exe("zonevisor-monitor"));
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
    h.daemon = Some(cmd.spawn().expect("spawn the previous release's zonevisord"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while old_cli(h, old, "vmadm", &["list"], None).code != 0 {
        if let Some(st) = h.daemon.as_mut().unwrap().try_wait().unwrap() {
            panic!("the previous release's zonevisord exited ({st}) at start:\n{}", h.log());
        }
        assert!(Instant::now() < deadline, "the previous release's zonevisord did not answer in 60 s:\n{}", h.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the previous release's CLI (`vmadm`, `imgadm`, `zlogin`) against `h`.
fn old_cli(h: &TestHost, old: &Release, tool: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(old.exe("zonevisor"));
    cmd.arg0(tool).args(args).env("ZONEVISOR_SOCKET", &h.socket);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the previous release's zonevisor");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `vmadm create` with the previous release's CLI; returns the uuid.
#[track_caller]
fn old_create(h: &TestHost, old: &Release, payload: &Value) -> String {
    let r = old_cli(h, old, "vmadm", &["create"], Some(&payload.to_string()));
    r.ok();
    let uuid = r.stderr.lines().last().and_then(|l| l.strip_prefix("Successfully created VM "));
    uuid.unwrap_or_else(|| panic!("unexpected create output {:?} / {:?}", r.stdout, r.stderr)).to_string()
}

/// The pid the monitor of zone `uuid` recorded in its run directory.
fn monitor_pid(h: &TestHost, uuid: &str) -> Option<i64> {
    let file = h.root.join("run").join("zones").join(uuid).join("monitor.pid");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The state database's `PRAGMA user_version`, read without writing.
fn schema_version(h: &TestHost) -> u32 {
    let db = h.pool().join("config").join("zonevisor.db");
    let conn = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("opening {} read-only: {e}", db.display()));
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

/// Asserts that `after` holds every property of `before` with the same
/// value, but for `changes` (properties the re-adoption rewrites); returns
/// the properties `after` adds.
#[track_caller]
fn same_object(before: &Value, after: &Value, changes: &[&str]) -> Vec<String> {
    let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
    for (k, v) in b {
        if changes.contains(&k.as_str()) {
            assert!(a.contains_key(k), "{k} is gone after the upgrade: {after}");
        } else {
            assert_eq!(a.get(k), Some(v), "{k} changed in the upgrade:\nbefore {before}\nafter  {after}");
        }
    }
    a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
}

/// The executable `pid` runs.
fn exe_of(pid: i64) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_else(|e| panic!("/proc/{pid}/exe: {e}"))
}

/// Waits until `pid` is gone.
#[track_caller]
fn wait_gone(pid: i64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_pool_of_the_previous_release_upgrades_with_its_zones_running() {
    // Before the build, which takes minutes the first time.
    if !nix::unistd::Uid::effective().is_root() {
        skip("needs root");
        return;
    }
    let old = match build_release(PREVIOUS_RELEASE) {
        Ok(old) => old,
        Err(why) => {
            skip(&format!("the previous release {PREVIOUS_RELEASE} could not be built: {why}"));
            return;
        }
    };
    let mut h = old_host(&old);

    // The previous release makes the pool and two zones.
    let fixture = busybox();
    let r = old_cli(
        &h,
        &old,
        "imgadm",
        &["install", "-m", fixture.manifest.to_str().unwrap(), "-f", fixture.file.to_str().unwrap()],
        None,
    );
    r.ok();
    let img = fixture.uuid.clone();
    let running = old_create(
        &h,
        &old,
        &json!({"brand": "lx", "alias": "kept-running", "image_uuid": img, "max_physical_memory": 128}),
    );
    let stopped = old_create(&h, &old, &json!({"brand": "lx", "alias": "kept-stopped", "image_uuid": img}));
    old_cli(&h, &old, "vmadm", &["stop", &stopped], None).ok();
    old_cli(&h, &old, "zlogin", &[&running, "echo before-the-upgrade > /root/mark"], None).ok();
    let get = |uuid: &str| old_cli(&h, &old, "vmadm", &["get", uuid], None).json();
    let (running_before, stopped_before) = (get(&running), get(&stopped));
    assert_eq!(running_before["state"], "running", "{running_before}");
    assert_eq!(stopped_before["state"], "stopped", "{stopped_before}");
    let init = running_before["pid"].as_i64().expect("a running zone has a pid");
    let monitor = monitor_pid(&h, &running).expect("the running zone's monitor recorded its pid");
    assert!(alive(init) && alive(monitor));
    assert_eq!(exe_of(monitor), old.exe("zonevisor-monitor").canonicalize().unwrap(), "not the old release's monitor");
    assert_eq!(schema_version(&h), 0, "the previous release leaves the database unversioned");

    // The old daemon dies; its zone's monitor and init do not.
    h.kill_daemon();
    assert!(alive(monitor) && alive(init), "the zone died with the old daemon");

    // This release's daemon takes over the same root.
    h.start_daemon();
    assert_eq!(schema_version(&h), NEW_SCHEMA_VERSION, "the database was not migrated");
    let log = h.log();
    assert!(
        log.lines().any(|l| l.contains("re-adopted running zone") && l.contains(&running)),
        "the new daemon did not re-adopt the running zone through its monitor:\n{log}"
    );
    assert!(!log.contains("does not answer"), "the old monitor did not answer the new daemon:\n{log}");

    let running_after = h.get(&running);
    assert_eq!(running_after["state"], "running", "{running_after}");
    assert_eq!(running_after["pid"].as_i64(), Some(init), "the zone's init changed: {running_after}");
    assert_eq!(monitor_pid(&h, &running), Some(monitor), "the zone's monitor changed");
    assert!(alive(monitor) && alive(init));
    let added = same_object(&running_before, &running_after, &["last_modified"]);
    eprintln!("upgrade: properties the new release adds to a running zone: {added:?}");
    let stopped_after = h.get(&stopped);
    let added = same_object(&stopped_before, &stopped_after, &[]);
    eprintln!("upgrade: properties the new release adds to a stopped zone: {added:?}");
    let r = h.cli("zlogin", &[&running, "cat /root/mark"], None);
    assert_eq!(r.ok(), "before-the-upgrade\n", "zlogin into the re-adopted zone");

    // What migration 3 recorded from the old rows: both zones use the image.
    let r = h.imgadm(&["delete", &img]);
    assert_ne!(r.code, 0, "an image with clones was deleted");
    assert!(
        r.stderr.contains("has dependent clones") && r.stderr.contains(&running) && r.stderr.contains(&stopped),
        "{}",
        r.stderr
    );
    assert_eq!(h.imgadm(&["get", &img]).json()["clones"], 2);

    // The stopped zone starts under the new daemon, with the new monitor.
    h.vmadm(&["start", &stopped]).ok();
    let vm = h.get(&stopped);
    assert_eq!(vm["state"], "running", "{vm}");
    let new_monitor = monitor_pid(&h, &stopped).expect("the new monitor records its pid");
    assert_eq!(exe_of(new_monitor), bin("zonevisor-monitor").canonicalize().unwrap(), "not this release's monitor");
    assert_eq!(h.cli("zlogin", &[&stopped, "echo up"], None).ok(), "up\n");

    // The new daemon stops the zone the old monitor runs, gracefully.
    let r = h.vmadm(&["stop", &running]);
    assert_eq!(r.stderr.trim(), format!("Successfully completed stop for VM {running}"), "{}", r.stdout);
    let vm = h.get(&running);
    assert_eq!(vm["state"], "stopped", "{vm}");
    wait_gone(init, "the re-adopted zone's init");
    wait_gone(monitor, "the previous release's monitor");
    // And starts it again, now under this release's monitor.
    h.vmadm(&["start", &running]).ok();
    assert_eq!(h.get(&running)["state"], "running");
    assert_eq!(h.cli("zlogin", &[&running, "cat /root/mark"], None).ok(), "before-the-upgrade\n");
    assert_eq!(schema_version(&h), NEW_SCHEMA_VERSION);
}
