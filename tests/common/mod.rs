//! The end-to-end harness: each test gets its own root directory, btrfs
//! pool on a sparse loop file, network namespace and `zonevisord`, and
//! drives it through the real CLI binaries, as a user would.
//!
//! Tests need root and a kernel with btrfs, loop devices and namespaces.
//! Elsewhere they skip with a printed reason, except in CI (`CI` set),
//! where a missing feature fails the test.

#![allow(dead_code)]

pub mod imgapi;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether tests must fail rather than skip when the host lacks something.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Skips (or in CI fails) with `reason`.
pub fn skip(reason: &str) -> Option<TestHost> {
    if in_ci() {
        panic!("required for this test in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

fn host_ready() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.contains("btrfs") {
        // The module may load on first mount; mkfs/mount will tell.
        if Command::new("modprobe").arg("btrfs").status().map(|s| !s.success()).unwrap_or(true) {
            return Err("the kernel has no btrfs".into());
        }
    }
    for tool in ["mkfs.btrfs", "ip", "nsenter"] {
        if !Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            return Err(format!("{tool} is not installed (run scripts/setup or scripts/test)"));
        }
    }
    Ok(())
}

/// Where a fixture image is, built on first use by `fixtures/build-<name>-image`.
pub struct Fixture {
    pub uuid: String,
    pub manifest: PathBuf,
    pub file: PathBuf,
}

fn build_fixture(name: &str) -> Result<Fixture, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("fixtures").join(format!("build-{name}-image"));
    let dir = std::env::var_os("ZONEVISOR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/zonevisor/fixtures"))
        .join(name);
    let manifest = dir.join("manifest.json");
    let out = Command::new("bash").arg(&script).output().map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        let why = format!(
            "{} failed: {}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !manifest.exists() {
            return Err(why);
        }
        // E.g. the package mirror is unreachable: an earlier build still serves.
        eprintln!("WARNING: using the previous {name} fixture; rebuilding it failed: {why}");
    }
    let m: Value =
        serde_json::from_slice(&std::fs::read(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
    let file = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rootfs.tar")))
        .ok_or_else(|| format!("no rootfs.tar* in {}", dir.display()))?;
    Ok(Fixture { uuid: m["uuid"].as_str().unwrap_or_default().to_string(), manifest, file })
}

/// The busybox fixture image (built once per test process).
pub fn busybox() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build_fixture("busybox").unwrap_or_else(|e| panic!("busybox fixture: {e}")))
}

/// The Debian fixture image (built once per test process; slow the first time).
pub fn debian() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build_fixture("debian").unwrap_or_else(|e| panic!("debian fixture: {e}")))
}

/// The Debian fixture with Debian's cloud-init package (built once per
/// test process; slow the first time).
pub fn debian_cloudinit() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| build_fixture("debian-cloudinit").unwrap_or_else(|e| panic!("debian-cloudinit fixture: {e}")))
}

/// The VM guest whose root is the Debian cloud-init image, in its
/// initramfs (`fixtures/build-vm-cloudinit-image`; its header says what
/// the guest prints): built once per test process.
pub fn vm_cloudinit_initrd() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-vm-cloudinit-image");
        let out = Command::new("python3").arg(&script).output().expect("running fixtures/build-vm-cloudinit-image");
        assert!(out.status.success(), "build-vm-cloudinit-image failed:\n{}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("initrd.img")
    })
}

/// The guest tools' binary (`mdata`, shown in zones as
/// `/native/usr/sbin/mdata-get`, ...), linked statically as
/// `scripts/build` links it, so that it runs in zones whatever their libc:
/// built once per test run (cargo's lock serializes the test processes)
/// into a target directory of its own under this build's.
pub fn static_mdata() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { repo.join(t) })
            .unwrap_or_else(|| repo.join("target"))
            .join("static-tools");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(repo)
            .env("CARGO_TARGET_DIR", &target)
            .args(["rustc", "--release", "-p", "zonevisor-mdata", "--bin", "mdata", "--"])
            .args(["-C", "target-feature=+crt-static"])
            .output()
            .expect("running cargo for the static mdata");
        assert!(out.status.success(), "building the static mdata:\n{}", String::from_utf8_lossy(&out.stderr));
        target.join("release/mdata")
    })
}

/// The guest images of the VM tests (`fixtures/build-vm-images`: its
/// header documents the guest's protocol on the serial console).
pub struct VmFixture {
    /// The kernel, for a direct boot.
    pub vmlinuz: PathBuf,
    /// Its initramfs (the guest agent).
    pub initrd: PathBuf,
    /// The zvol image's manifest and file (`imgadm install -m -f`): a disk
    /// that boots through SYSLINUX (BIOS) and systemd-boot (UEFI).
    pub zvol_manifest: PathBuf,
    pub zvol_file: PathBuf,
    /// The zvol image's uuid.
    pub zvol_uuid: String,
}

/// The VM fixtures (built once per test process; they need QEMU-free
/// tools only, and the package mirror the first time).
pub fn vm_images() -> &'static VmFixture {
    static F: OnceLock<VmFixture> = OnceLock::new();
    F.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/build-vm-images");
        let out = Command::new("python3").arg(&script).output().expect("running fixtures/build-vm-images");
        assert!(out.status.success(), "fixtures/build-vm-images failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let zvol_manifest = dir.join("zvol/manifest.json");
        let m: Value = serde_json::from_slice(&std::fs::read(&zvol_manifest).expect("the zvol manifest")).unwrap();
        VmFixture {
            vmlinuz: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            zvol_file: dir.join("zvol/disk.qcow2.gz"),
            zvol_uuid: m["uuid"].as_str().unwrap().to_string(),
            zvol_manifest,
        }
    })
}

/// Builds `tests/probes/<name>.c` as a static binary into `dir` (the
/// zone images have no compiler and busybox lacks some tools).
pub fn build_probe(name: &str, dir: &Path) -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probes").join(format!("{name}.c"));
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(dir.join(name))
        .arg(&src)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if !out.status.success() {
        return Err(format!("gcc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// One daemon with its own root, pool and network namespace.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    pub netns: String,
    pub daemon: Option<Child>,
    pub cgroup_parent: String,
    /// The pool's size (`--pool-size`), 8G unless [`TestHost::with_pool_size`].
    pub pool_size: String,
    /// More arguments for the daemon.
    pub daemon_args: Vec<String>,
    /// Environment variables for the daemon.
    pub daemon_env: Vec<(String, String)>,
}

/// The result of a CLI call.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: stdout={} stderr={}", self.stdout, self.stderr);
        &self.stdout
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", self.stdout, self.stderr))
    }
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "zonevisord" => PathBuf::from(env!("CARGO_BIN_EXE_zonevisord")),
        "zonevisor" => PathBuf::from(env!("CARGO_BIN_EXE_zonevisor")),
        "zonevisor-monitor" => PathBuf::from(env!("CARGO_BIN_EXE_zonevisor-monitor")),
        other => panic!("unknown binary {other}"),
    }
}

impl TestHost {
    /// A new host, or `None` (skipped) when this machine cannot run it.
    pub fn new() -> Option<TestHost> {
        TestHost::with_pool_size("8G")
    }

    /// A new host whose daemon gives zones the static guest tools
    /// ([`static_mdata`]: `mdata-get` and the others run in any zone).
    pub fn with_tools() -> Option<TestHost> {
        if let Err(reason) = host_ready() {
            return skip(&reason);
        }
        let tools = static_mdata().display().to_string();
        let mut host = TestHost::prepare("8G");
        host.daemon_args = vec!["--mdata".into(), tools];
        host.start_daemon();
        Some(host)
    }

    /// A new host whose daemon also gets `args`.
    pub fn with_daemon_args(args: &[&str]) -> Option<TestHost> {
        if let Err(reason) = host_ready() {
            return skip(&reason);
        }
        let mut host = TestHost::prepare("8G");
        host.daemon_args = args.iter().map(|a| a.to_string()).collect();
        host.start_daemon();
        Some(host)
    }

    /// A new host whose pool is `size` (e.g. `2G`: tests that fill it).
    pub fn with_pool_size(size: &str) -> Option<TestHost> {
        if let Err(reason) = host_ready() {
            return skip(&reason);
        }
        let mut host = TestHost::prepare(size);
        host.start_daemon();
        Some(host)
    }

    /// A new host (root, network namespace, cgroup parent) whose daemon is
    /// not started yet: the caller starts one (the upgrade test, an older
    /// release's).
    pub fn prepare(size: &str) -> TestHost {
        let dir = tempfile::Builder::new().prefix("zvtest-").tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let tag = dir.path().file_name().unwrap().to_string_lossy().replace("zvtest-", "");
        let netns = format!("zvt-{tag}");
        let st = Command::new("ip").args(["netns", "add", &netns]).status().expect("ip netns add");
        assert!(st.success(), "ip netns add {netns} failed");
        TestHost {
            socket: root.join("run").join("zonevisord.sock"),
            root,
            dir,
            netns,
            daemon: None,
            cgroup_parent: format!("zonevisor-test-{tag}"),
            pool_size: size.to_string(),
            daemon_args: Vec::new(),
            daemon_env: Vec::new(),
        }
    }

    /// The daemon's command line, run inside the test's network namespace.
    pub fn daemon_command(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(bin("zonevisord"))
            .arg("--root")
            .arg(&self.root)
            .arg("--pool-size")
            .arg(&self.pool_size)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--monitor")
            .arg(bin("zonevisor-monitor"))
            .args(&self.daemon_args)
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts the daemon and waits until it answers.
    pub fn start_daemon(&mut self) {
        std::fs::create_dir_all(&self.root).unwrap();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("daemon.log")).unwrap();
        let mut cmd = self.daemon_command();
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // Its own process group, so a test's Ctrl-C does not reach it first.
        cmd.process_group(0);
        let child = cmd.spawn().expect("spawn zonevisord");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if zonevisor_api::Client::new(&self.socket).ping().is_ok() {
                return;
            }
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("zonevisord exited ({st}) at start:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "zonevisord did not answer in 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon (SIGKILL) without touching zones.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Runs a CLI tool (`vmadm`, `imgadm`, `sysinfo`, `zlogin`) against this daemon.
    pub fn cli(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(bin("zonevisor"));
        cmd.arg0(tool).args(args).env("ZONEVISOR_SOCKET", &self.socket);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn zonevisor");
        if let Some(input) = stdin {
            // A tool that refuses its arguments exits without reading its
            // input: a broken pipe here is its answer, not the test's failure.
            match child.stdin.take().unwrap().write_all(input.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r.unwrap(),
            }
        }
        Run::from(child.wait_with_output().unwrap())
    }

    pub fn vmadm(&self, args: &[&str]) -> Run {
        self.cli("vmadm", args, None)
    }

    pub fn imgadm(&self, args: &[&str]) -> Run {
        self.cli("imgadm", args, None)
    }

    /// `vmadm create` from a JSON payload; returns the run.
    pub fn create(&self, payload: &Value) -> Run {
        self.cli("vmadm", &["create"], Some(&payload.to_string()))
    }

    /// `vmadm create` that must succeed; returns the new uuid.
    #[track_caller]
    pub fn create_ok(&self, payload: &Value) -> String {
        let r = self.create(payload);
        r.ok();
        // SmartOS prints it on stderr (after any warnings), stdout stays empty.
        let uuid = r
            .stderr
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("Successfully created VM "))
            .unwrap_or_else(|| panic!("unexpected create output {:?} / {:?}", r.stdout, r.stderr));
        uuid.to_string()
    }

    /// Installs a fixture image into this host's pool.
    pub fn install(&self, f: &Fixture) -> String {
        let r = self.imgadm(&["install", "-m", f.manifest.to_str().unwrap(), "-f", f.file.to_str().unwrap()]);
        r.ok();
        f.uuid.clone()
    }

    /// `vmadm get` as JSON.
    #[track_caller]
    pub fn get(&self, uuid: &str) -> Value {
        self.vmadm(&["get", uuid]).json()
    }

    /// Polls `vmadm get` until `state` is `want`.
    #[track_caller]
    pub fn wait_state(&self, uuid: &str, want: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let vm = self.get(uuid);
            if vm["state"] == want {
                return vm;
            }
            assert!(Instant::now() < deadline, "VM {uuid} stayed {} (wanted {want})\n{}", vm["state"], self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What instance `uuid`'s console has shown (a zone's console, a VM's
    /// first serial port), this boot and the one before.
    pub fn console(&self, uuid: &str) -> String {
        let dir = self.root.join("run/zones").join(uuid);
        let read =
            |f: &str| std::fs::read(dir.join(f)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        read("console.log.1") + &read("console.log")
    }

    /// Waits until instance `uuid`'s console has shown `marker` `count`
    /// times; returns the console.
    #[track_caller]
    pub fn wait_console(&self, uuid: &str, marker: &str, count: usize, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let console = self.console(uuid);
            if console.matches(marker).count() >= count {
                return console;
            }
            assert!(
                Instant::now() < deadline,
                "{uuid}'s console did not show {marker:?} {count} time(s) in {within:?}:\n{console}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pool's mountpoint.
    pub fn pool(&self) -> PathBuf {
        self.root.join("zones")
    }
}

/// Whether any line of this process's mount table mentions `needle`.
pub fn mounted(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| l.contains(needle))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

/// Every process in the named network namespace (`ip netns`), by the
/// namespace's inode.
pub fn pids_in_netns(netns: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(format!("/run/netns/{netns}")).map(|m| m.ino()) else { return Vec::new() };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|m| m.ino() == ns)
            && pid != std::process::id() as i32
        {
            out.push(pid);
        }
    }
    out
}

/// Every process whose command line mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) && pid != std::process::id() as i64 {
                out.push(pid);
            }
        }
    }
    out
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Stop every zone so nothing holds the pool, then the daemon, then the pool.
        if self.daemon.is_some() {
            let list = self.vmadm(&["list", "-H", "-o", "uuid,state"]);
            for line in list.stdout.lines() {
                let mut parts = line.split_whitespace();
                if let (Some(uuid), Some(state)) = (parts.next(), parts.next()) {
                    if state != "stopped" {
                        let _ = self.vmadm(&["stop", "-F", uuid]);
                    }
                }
            }
        }
        self.kill_daemon();
        // Monitors left by a failed test: kill them by their run directory.
        let run = self.root.join("run").display().to_string();
        for pid in pids_mentioning(&run) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        // The daemon's lxcfs (killed above: its command line names the run
        // directory) leaves its FUSE mount behind, disconnected.
        let _ = nix::mount::umount2(&self.root.join("run").join("lxcfs"), nix::mount::MntFlags::MNT_DETACH);
        for _ in 0..50 {
            match nix::mount::umount2(&self.pool(), nix::mount::MntFlags::empty()) {
                Err(nix::errno::Errno::EBUSY) => std::thread::sleep(Duration::from_millis(100)),
                _ => break,
            }
        }
        // What runs in the test's network namespace outlives the daemon
        // (the default network's dnsmasq, by design): kill it, and remove
        // the files it kept outside the root.
        for pid in pids_in_netns(&self.netns) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).into_owned();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            if let Some(conf) = cmd.split('\0').find_map(|a| a.strip_prefix("--conf-file=/run/zonevisor/")) {
                if let Some(id) = conf.split('/').next().filter(|id| !id.is_empty()) {
                    let _ = std::fs::remove_dir_all(format!("/run/zonevisor/{id}"));
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        for hier in [
            "", "pids/", "memory/", "cpu/", "cpuacct/", "cpuset/", "blkio/", "devices/", "freezer/", "systemd/",
            "unified/",
        ] {
            let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{hier}{}", self.cgroup_parent));
        }
    }
}

/// Kills every process of the test host at once, as a power cut would:
/// the daemon, the monitors and lxcfs (their command lines name the run
/// directory) and the instances' processes (`pids`: zones' inits, VMs' QEMUs).
pub fn power_cut(h: &mut TestHost, pids: &[i64]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    h.kill_daemon();
    let run = h.root.join("run").display().to_string();
    let mut victims = pids_mentioning(&run);
    victims.extend_from_slice(pids);
    for &pid in &victims {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while victims.iter().any(|&p| alive(p)) {
        assert!(Instant::now() < deadline, "processes outlived SIGKILL: {victims:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After [`power_cut`], the host's next boot: a new boot id (the daemon
/// compares it with the one it recorded), and the pool no longer mounted.
pub fn next_boot(h: &TestHost) {
    let db = h.pool().join("config").join("zonevisor.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn.execute("UPDATE host SET value = 'the-previous-boot' WHERE key = 'boot_id'", []).unwrap();
    assert_eq!(changed, 1, "the daemon records the boot id");
    drop(conn);
    let _ = nix::mount::umount2(&h.root.join("run").join("lxcfs"), nix::mount::MntFlags::MNT_DETACH);
    nix::mount::umount2(&h.pool(), nix::mount::MntFlags::empty()).unwrap();
    assert!(!mounted(&h.pool().display().to_string()));
}
