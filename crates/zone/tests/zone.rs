//! Integration tests on the real kernel: they start zones (root required).
//!
//! They need the `zonevisor-monitor` binary, which belongs to the workspace's
//! root package and so is not built by `cargo test -p zonevisor-zone`. Build it
//! first:
//!
//! ```text
//! cargo build --bin zonevisor-monitor && cargo test -p zonevisor-zone
//! ```
//!
//! The binary is taken from `$ZONEVISOR_MONITOR` when set, else from
//! `<workspace>/target/debug/zonevisor-monitor` (or `$CARGO_TARGET_DIR/debug`).
//! Zone roots are built from the host's `/bin/busybox`. Without root the tests
//! are skipped with a message, or fail when `CI` is set. Tests run one at a
//! time (a global lock) so the latency figures are not disturbed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zonevisor_zone::cgroup::{self, CgroupVersion};
use zonevisor_zone::control::{self, MonitorClient, ZoneState};
use zonevisor_zone::{launch, BindMount, ExitReason, IdMap, Launched, Limits, ZoneSpec};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether to run: root, or skip (fail under CI).
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "zone tests need root (CI is set)");
    eprintln!("skipping: zone tests need root");
    false
}

fn monitor_exe() -> PathBuf {
    if let Some(p) = std::env::var_os("ZONEVISOR_MONITOR") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let exe = target.join("debug/zonevisor-monitor");
    assert!(exe.exists(), "{} is missing: run `cargo build --bin zonevisor-monitor` first", exe.display());
    exe
}

fn unique() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().to_owned()
}

/// A busybox zone root in `dir/root`.
fn make_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in ["bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    if fs::hard_link("/bin/busybox", root.join("bin/busybox")).is_err() {
        fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    }
    for app in [
        "sh", "sleep", "cat", "echo", "hostname", "ps", "ls", "touch", "grep", "init", "reboot", "halt", "kill",
        "test", "mkdir",
    ] {
        symlink("busybox", root.join("bin").join(app)).unwrap();
    }
    for app in ["poweroff", "halt", "init"] {
        symlink("/bin/busybox", root.join("sbin").join(app)).unwrap();
    }
    fs::write(
        root.join("etc/inittab"),
        "::sysinit:/bin/echo booted\n::respawn:/bin/sleep 1000\n::shutdown:/bin/echo going-down\n",
    )
    .unwrap();
    root
}

struct Zone {
    dir: tempfile::TempDir,
    spec: ZoneSpec,
    launched: Option<Launched>,
}

impl Zone {
    fn new(init: &[&str]) -> Zone {
        let dir = tempfile::Builder::new().prefix("zv-test-").tempdir().unwrap();
        let root = make_root(dir.path());
        let spec = ZoneSpec {
            uuid: unique(),
            zone_root: root,
            run_dir: dir.path().join("run"),
            hostname: "zone1".into(),
            dns_domain: Some("example.com".into()),
            resolvers: Some(vec!["192.0.2.53".into()]),
            init: init.iter().map(|s| s.to_string()).collect(),
            tmpfs_bytes: Some(16 << 20),
            mounts: Vec::new(),
            // A parent of its own, so removing it never races another test.
            cgroup: format!("zonevisor-test-{}/zone", unique()),
            limits: Limits::default(),
            restart_init: false,
            idmap: None,
            limit_priv: Vec::new(),
            lxcfs: None,
            protected: Default::default(),
            nics: Vec::new(),
            metadata: None,
            native: None,
            docker: None,
        };
        Zone { dir, spec, launched: None }
    }

    fn sh(script: &str) -> Zone {
        Zone::new(&["/bin/sh", "-c", script])
    }

    fn root(&self) -> &Path {
        &self.spec.zone_root
    }

    fn launch(&mut self) -> Launched {
        let l = launch(&monitor_exe(), &self.spec).unwrap_or_else(|e| panic!("launch: {e}\n{}", self.log()));
        self.launched = Some(l);
        l
    }

    fn client(&self) -> MonitorClient {
        MonitorClient::new(&self.spec.run_dir)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.spec.run_dir.join("monitor.log")).unwrap_or_default()
    }

    fn wait_file(&self, rel: &str) -> String {
        let p = self.root().join(rel);
        let start = Instant::now();
        while !p.exists() {
            // What the zone wrote so far, and the monitor's log, say where it stuck.
            let partial = fs::read_to_string(self.root().join(format!("{rel}.tmp"))).unwrap_or_default();
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {rel} in the zone; so far: {partial:?}; monitor log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        fs::read_to_string(p).unwrap_or_default()
    }

    fn exit_record(&self) -> zonevisor_zone::ExitRecord {
        let run = &self.spec.run_dir;
        wait_for("exit.json", || control::read_exit(run).is_some());
        control::read_exit(run).unwrap()
    }

    /// Asserts the zone is entirely gone: monitor, cgroup, socket, pid file.
    fn assert_gone(&self) {
        if let Some(l) = self.launched {
            wait_for("the monitor to exit", || !alive(l.monitor_pid));
            assert!(!alive(l.init_pid));
        }
        for d in cgroup::dirs(&self.spec.cgroup).unwrap() {
            assert!(!d.exists(), "{} still exists", d.display());
        }
        for f in ["monitor.sock", "monitor.pid"] {
            assert!(!self.spec.run_dir.join(f).exists(), "{f} left behind");
        }
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        if let Some(l) = self.launched {
            if alive(l.monitor_pid) {
                let _ = self.client().stop(true, Some(5));
                if alive(l.monitor_pid) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(l.monitor_pid, libc::SIGKILL) };
                }
            }
        }
        cgroup::destroy(&self.spec.cgroup);
        // The zone's own parent goes with it.
        for d in cgroup::dirs(&self.spec.cgroup).unwrap_or_default() {
            let _ = d.parent().map(fs::remove_dir);
        }
    }
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn status_field(pid: i32, key: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim().to_owned()
}

fn v1_or_v2(cg: &str, v1: &str, v2: &str) -> Option<String> {
    let (hier, file) = match cgroup::version() {
        CgroupVersion::V2 => ("", v2),
        CgroupVersion::V1 => (v1.split('.').next().unwrap(), v1),
    };
    fs::read_to_string(Path::new("/sys/fs/cgroup").join(hier).join(cg).join(file)).ok().map(|s| s.trim().to_owned())
}

#[test]
fn namespaces_hostname_files_console() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::sh(
        "echo hello-console; ps > /ps.out; hostname > /hostname.out; \
         [ -c /dev/null ] && [ -c /dev/console ] && [ -L /dev/ptmx ] && [ -d /dev/pts ] && echo devok > /dev.out; \
         grep ' /tmp ' /proc/mounts > /tmp.out; cat /sys/class/net/lo/flags > /lo.out; cat /proc/self/cgroup > /cg.out; \
         touch /ready; exec sleep 1000",
    );
    let l = z.launch();
    z.wait_file("ready");
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let theirs = fs::read_link(format!("/proc/{}/ns/{ns}", l.init_pid)).unwrap();
        assert_ne!(ours, theirs, "{ns} namespace is shared");
    }
    assert!(status_field(l.init_pid, "NSpid:").ends_with("\t1"), "init is not PID 1 in its namespace");
    assert_eq!(z.wait_file("hostname.out").trim(), "zone1");
    assert_eq!(fs::read_to_string(z.root().join("etc/hostname")).unwrap(), "zone1\n");
    assert!(fs::read_to_string(z.root().join("etc/hosts")).unwrap().contains("127.0.1.1\tzone1.example.com zone1"));
    assert_eq!(
        fs::read_to_string(z.root().join("etc/resolv.conf")).unwrap(),
        "search example.com\nnameserver 192.0.2.53\n"
    );
    assert_eq!(z.wait_file("dev.out").trim(), "devok");
    assert!(z.wait_file("tmp.out").contains("tmpfs"));
    let flags = u32::from_str_radix(z.wait_file("lo.out").trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up");
    let ps = z.wait_file("ps.out");
    let pids: Vec<i32> = ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(!pids.is_empty() && pids.iter().all(|p| *p < 10), "ps in the zone sees host processes:\n{ps}");
    let console = z.spec.run_dir.join("console.log");
    wait_for("console output", || fs::read_to_string(&console).unwrap_or_default().contains("hello-console"));

    // Cgroups: init inside, monitor outside; the monitor is not our child.
    assert!(fs::read_to_string(format!("/proc/{}/cgroup", l.init_pid)).unwrap().contains(&z.spec.cgroup));
    assert!(!fs::read_to_string(format!("/proc/{}/cgroup", l.monitor_pid)).unwrap().contains(&z.spec.cgroup));
    assert_ne!(status_field(l.monitor_pid, "PPid:"), std::process::id().to_string());
    assert!(cgroup::usage(&z.spec.cgroup).unwrap().pids >= 1);
    // The cgroup namespace was entered after joining: the zone sees its cgroup as the root.
    let cg = z.wait_file("cg.out");
    assert!(cg.lines().all(|l| l.ends_with(":/")), "{cg}");

    let st = z.client().status().unwrap();
    assert_eq!((st.monitor_pid, st.init_pid, st.state), (l.monitor_pid, l.init_pid, ZoneState::Running));
    assert_eq!(control::find_monitor(&z.spec.run_dir), Some(st));

    let rec = z.client().stop(true, None).unwrap();
    assert_eq!(rec.reason, ExitReason::Stopped);
    assert_eq!(control::read_exit(&z.spec.run_dir), Some(rec));
    z.assert_gone();
    assert_eq!(control::find_monitor(&z.spec.run_dir), None);
}

#[test]
fn graceful_reboot_and_stop_run_poweroff() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::new(&["/sbin/init"]);
    let l = z.launch();
    let console = z.spec.run_dir.join("console.log");
    let count = |what: &str| fs::read_to_string(&console).unwrap_or_default().matches(what).count();
    wait_for("busybox init to boot", || count("booted") == 1);
    // Graceful reboot: the zone's poweroff runs its shutdown actions, then it boots again.
    let st = z.client().reboot(false).unwrap();
    assert_ne!(st.init_pid, l.init_pid);
    assert_eq!(count("going-down"), 1, "shutdown actions did not run");
    wait_for("busybox init to boot again", || count("booted") == 2);
    let start = Instant::now();
    let rec = z.client().stop(false, Some(30)).unwrap();
    assert_eq!(rec.reason, ExitReason::Stopped, "{rec:?}");
    assert!(start.elapsed() < Duration::from_secs(20), "graceful stop hit the timeout");
    assert_eq!(count("going-down"), 2, "shutdown actions did not run");
    z.assert_gone();
}

#[test]
fn console_log_rotates() {
    let _g = serial();
    if !privileged() {
        return;
    }
    // 1100 lines of ~1 KiB: past the 1 MiB bound once.
    let line = "x".repeat(1000);
    let mut z = Zone::sh(&format!(
        "i=0; while [ $i -lt 1100 ]; do echo {line}; i=$((i+1)); done; echo end-of-output; exec sleep 1000"
    ));
    z.launch();
    let run = z.spec.run_dir.clone();
    wait_for("console output", || {
        fs::read_to_string(run.join("console.log")).unwrap_or_default().contains("end-of-output")
    });
    let old = fs::metadata(run.join("console.log.1")).expect("console.log.1 missing").len();
    let cur = fs::metadata(run.join("console.log")).unwrap().len();
    assert!(old > 1 << 20 && old < (1 << 20) + 64 * 1024, "console.log.1 is {old} bytes");
    assert!(cur > 0 && cur < 1 << 20, "console.log is {cur} bytes");
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn graceful_stop_without_poweroff_signals_init() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::sh("trap 'echo pwr > /pwr.out; exit 0' PWR; touch /ready; while :; do sleep 0.05; done");
    for c in ["sbin/poweroff", "sbin/halt"] {
        fs::remove_file(z.root().join(c)).unwrap();
    }
    z.launch();
    z.wait_file("ready");
    let rec = z.client().stop(false, Some(30)).unwrap();
    assert_eq!((rec.reason, rec.code), (ExitReason::Stopped, Some(0)), "{rec:?}");
    assert_eq!(z.wait_file("pwr.out").trim(), "pwr");
    z.assert_gone();
}

#[test]
fn stop_times_out_then_kills() {
    let _g = serial();
    if !privileged() {
        return;
    }
    // init ignores SIGPWR and has no poweroff: only the timeout ends it.
    let mut z = Zone::sh("trap '' PWR; touch /ready; while :; do sleep 0.05; done");
    for c in ["sbin/poweroff", "sbin/halt"] {
        fs::remove_file(z.root().join(c)).unwrap();
    }
    z.launch();
    z.wait_file("ready");
    let start = Instant::now();
    let rec = z.client().stop(false, Some(1)).unwrap();
    assert_eq!((rec.reason, rec.signal), (ExitReason::Stopped, Some(libc::SIGKILL)), "{rec:?}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    z.assert_gone();
}

#[test]
fn reboot_request_changes_init_pid() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    let l = z.launch();
    let st = z.client().reboot(true).unwrap();
    assert_ne!(st.init_pid, l.init_pid);
    assert_eq!((st.monitor_pid, st.state), (l.monitor_pid, ZoneState::Running));
    assert!(!alive(l.init_pid));
    assert!(alive(st.init_pid));
    assert_eq!(z.client().status().unwrap().init_pid, st.init_pid);
    assert!(control::read_exit(&z.spec.run_dir).is_none());
    // A graceful reboot of busybox sleep (no inittab) falls back to the kill after the timeout;
    // a forced one is enough here. Then stop.
    assert_eq!(z.client().stop(true, None).unwrap().reason, ExitReason::Stopped);
    z.assert_gone();
}

fn ns_of(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap().display().to_string()
}

#[test]
fn the_zone_keeps_its_user_and_network_namespaces_across_reboots_and_restarts() {
    let _g = serial();
    if !privileged() {
        return;
    }
    const HOST: u32 = 2_100_000;
    let mut z = Zone::sh("hostname > /booted.$$; cat /proc/self/uid_map > /uid_map.out; exec sleep 1000");
    z.spec.idmap = Some(IdMap { host_uid: HOST, host_gid: HOST, count: 65536 });
    z.spec.restart_init = true;
    let l = z.launch();
    let (user, net, pid_ns) = (ns_of(l.init_pid, "user"), ns_of(l.init_pid, "net"), ns_of(l.init_pid, "pid"));
    assert_ne!(net, ns_of(std::process::id() as i32, "net"), "the zone has its own network namespace");
    assert_ne!(user, ns_of(std::process::id() as i32, "user"));
    // A reboot: a new init in a new pid namespace, in the same user and network namespaces.
    // The old pid namespace is held open, so that the kernel cannot give its
    // inode number to the new one.
    let _old_pid_ns = std::fs::File::open(format!("/proc/{}/ns/pid", l.init_pid)).unwrap();
    let st = z.client().reboot(true).unwrap();
    assert_ne!(st.init_pid, l.init_pid);
    assert_eq!((ns_of(st.init_pid, "user"), ns_of(st.init_pid, "net")), (user.clone(), net.clone()));
    assert_ne!(ns_of(st.init_pid, "pid"), pid_ns, "each boot has its own pid namespace");
    // restart_init after init was killed: the same again.
    z.client().kill(libc::SIGKILL).unwrap();
    let mut restarted = 0;
    wait_for("init restarted", || {
        restarted = z.client().status().map_or(0, |s| s.init_pid);
        restarted != 0 && restarted != st.init_pid && z.client().status().is_ok_and(|s| s.init_restarts == 1)
    });
    assert_eq!((ns_of(restarted, "user"), ns_of(restarted, "net")), (user, net));
    // init is the monitor's child and the zone's root, as before.
    let ppid = status_field(restarted, "PPid:");
    assert_eq!(ppid, l.monitor_pid.to_string());
    assert_eq!(status_field(restarted, "Uid:").split_whitespace().next(), Some(HOST.to_string().as_str()));
    let map: Vec<String> = z.wait_file("uid_map.out").split_whitespace().map(String::from).collect();
    assert_eq!(map, ["0", &HOST.to_string(), "65536"]);
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn long_run_dir_path() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    z.spec.run_dir = z.dir.path().join(format!("run-{}", "d".repeat(120)));
    assert!(z.spec.run_dir.join("monitor.sock").as_os_str().len() > 108);
    let l = z.launch();
    assert_eq!(z.client().status().unwrap().init_pid, l.init_pid);
    assert!(control::find_monitor(&z.spec.run_dir).is_some());
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn init_reboot_restarts_in_place() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::sh("if [ -e /rebooted ]; then touch /ready; exec sleep 1000; fi; touch /rebooted; reboot -f");
    let l = z.launch();
    z.wait_file("ready");
    let st = z.client().status().unwrap();
    assert_ne!(st.init_pid, l.init_pid);
    assert_eq!(st.monitor_pid, l.monitor_pid);
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn restart_init_gives_up() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::sh("echo run >> /runs; exit 3");
    z.spec.restart_init = true;
    z.launch();
    let rec = z.exit_record();
    assert_eq!(rec.reason, ExitReason::Failed, "{rec:?}");
    assert_eq!(fs::read_to_string(z.root().join("runs")).unwrap().lines().count(), 6);
    z.assert_gone();
}

#[test]
fn exit_reasons() {
    let _g = serial();
    if !privileged() {
        return;
    }
    // Exit code, through a signal sent with `kill`.
    let mut z = Zone::sh("trap 'exit 7' USR1; touch /ready; while :; do sleep 0.05; done");
    z.launch();
    z.wait_file("ready");
    z.client().kill(libc::SIGUSR1).unwrap();
    let rec = z.exit_record();
    assert_eq!((rec.reason, rec.code), (ExitReason::Exited, Some(7)), "{rec:?}");
    z.assert_gone();

    // Halt from inside the zone.
    let mut z = Zone::sh("halt -f");
    z.launch();
    assert_eq!(z.exit_record().reason, ExitReason::Halted);
    z.assert_gone();

    // Killed by a signal.
    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    z.launch();
    assert!(z.client().kill(0).is_err());
    z.client().kill(libc::SIGKILL).unwrap();
    let rec = z.exit_record();
    assert_eq!((rec.reason, rec.signal), (ExitReason::Signaled, Some(libc::SIGKILL)), "{rec:?}");
    z.assert_gone();
}

/// Everything a failed launch must not leave behind.
fn assert_nothing_left(z: &Zone) {
    for d in cgroup::dirs(&z.spec.cgroup).unwrap() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let run = z.spec.run_dir.to_string_lossy().into_owned();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!(String::from_utf8_lossy(&cmd).contains(&run) && alive(pid)), "monitor {pid} still running: {stat}");
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*z.root().to_string_lossy()), "mounts left behind");
    let left: Vec<_> =
        fs::read_dir(&z.spec.run_dir).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    assert_eq!(left, ["monitor.log"], "run_dir not cleaned up");
}

#[test]
fn failed_launches_leave_nothing() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let z = Zone::new(&["/sbin/nonexistent", "arg"]);
    let e = launch(&monitor_exe(), &z.spec).unwrap_err();
    assert_eq!(e.step, "exec init", "{e}");
    assert!(e.message.contains("/sbin/nonexistent"), "{e}");
    assert_nothing_left(&z);

    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    z.spec.mounts.push(BindMount {
        source: "/nonexistent-source".into(),
        target: "/data".into(),
        ..BindMount::default()
    });
    let e = launch(&monitor_exe(), &z.spec).unwrap_err();
    assert_eq!(e.step, "mount /data", "{e}");
    assert_nothing_left(&z);

    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    z.spec.limits.pids = Some(1_000_000_000);
    let e = launch(&monitor_exe(), &z.spec).unwrap_err();
    assert_eq!(e.step, "apply limits", "{e}");
    assert_nothing_left(&z);
}

#[test]
fn bind_mounts_and_symlink_escapes() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::sh(
        "cat /data/f > /data.out; if touch /data/new 2>/dev/null; then echo rw; else echo ro; fi > /ro.out; \
         touch /rw/new; ls /x > /x.out; cat /file.txt > /file.out; touch /ready; exec sleep 1000",
    );
    z.spec.tmpfs_bytes = None; // the host side of the climb is under /tmp
    let host = z.dir.path().to_path_buf();
    for d in ["data", "rw", "marker-dir", "outside"] {
        fs::create_dir(host.join(d)).unwrap();
    }
    fs::write(host.join("data/f"), "data-content").unwrap();
    fs::write(host.join("marker-dir/marker"), "").unwrap();
    fs::write(host.join("file.txt"), "file-content").unwrap();
    // Escapes: an absolute symlink to / and a relative one climbing out to a host directory.
    symlink("/", z.root().join("mnt")).unwrap();
    let outside = host.join("outside");
    let climb = format!("../../../../../../../../..{}", outside.display());
    symlink(&climb, z.root().join("up")).unwrap();
    // /etc is a symlink out too (to the host's `outside` if followed on the host).
    fs::rename(z.root().join("etc"), z.root().join("etc.real")).unwrap();
    symlink(&climb, z.root().join("etc")).unwrap();
    let inside_outside = z.root().join(outside.strip_prefix("/").unwrap());
    fs::create_dir_all(&inside_outside).unwrap();
    let m = |s: &Path, t: &str, ro| BindMount {
        source: s.to_path_buf(),
        target: t.into(),
        readonly: ro,
        ..BindMount::default()
    };
    z.spec.mounts = vec![
        m(&host.join("data"), "/data", true),
        m(&host.join("rw"), "/rw", false),
        m(&host.join("file.txt"), "/file.txt", true),
        m(&host.join("marker-dir"), "/mnt/x", false),
        m(&host.join("marker-dir"), "/up/y", false),
    ];
    z.launch();
    z.wait_file("ready");
    assert_eq!(z.wait_file("data.out"), "data-content");
    assert_eq!(z.wait_file("ro.out").trim(), "ro");
    assert!(!host.join("data/new").exists());
    assert!(host.join("rw/new").exists());
    assert_eq!(z.wait_file("file.out"), "file-content");
    assert_eq!(z.wait_file("x.out").trim(), "marker");
    // Everything landed inside the zone root, nothing on the host.
    assert!(z.root().join("x").is_dir());
    assert!(inside_outside.join("y").is_dir());
    assert!(!outside.join("y").exists());
    assert!(!outside.join("hostname").exists());
    assert_eq!(fs::read_to_string(inside_outside.join("hostname")).unwrap(), "zone1\n");
    assert!(!Path::new("/x").exists());
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn unprivileged_zone_has_a_user_namespace_and_an_idmapped_root() {
    let _g = serial();
    if !privileged() {
        return;
    }
    const HOST: u32 = 2_000_000;
    let mut z = Zone::sh(
        "cat /proc/self/uid_map > /uid_map.out; cat /proc/self/gid_map > /gid_map.out; \
         /bin/busybox stat -c %u:%g /bin/busybox /etc > /owners.out; \
         mkdir /srv; touch /made /rw/made; grep -E '^(Seccomp|CapBnd):' /proc/self/status > /security.out; \
         touch /ready; exec sleep 1000",
    );
    let rw = z.dir.path().join("rw");
    fs::create_dir(&rw).unwrap();
    fs::set_permissions(&rw, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    z.spec.mounts = vec![BindMount { source: rw.clone(), target: "/rw".into(), ..BindMount::default() }];
    z.spec.idmap = Some(IdMap { host_uid: HOST, host_gid: HOST + 7, count: 65536 });
    let l = z.launch();
    z.wait_file("ready");
    let map = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(map(z.wait_file("uid_map.out")), ["0", &HOST.to_string(), "65536"]);
    assert_eq!(map(z.wait_file("gid_map.out")), ["0", &(HOST + 7).to_string(), "65536"]);
    assert_eq!(status_field(l.init_pid, "Uid:").split_whitespace().next(), Some(HOST.to_string().as_str()));
    // Inside, the image's files (root's on disk) are the zone root's ...
    assert_eq!(map(z.wait_file("owners.out")), ["0:0", "0:0"]);
    // ... and what the zone's root writes stays root's on disk (unshifted),
    // while the host sees it through the zone's mount as the mapped ids.
    use std::os::unix::fs::MetadataExt;
    for f in ["made", "srv", "etc/hostname"] {
        let m = fs::metadata(z.root().join(f)).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{f} on disk");
        let m = fs::metadata(format!("/proc/{}/root/{f}", l.init_pid)).unwrap();
        assert_eq!((m.uid(), m.gid()), (HOST, HOST + 7), "{f} through the idmapped root");
    }
    // A bind mount is not idmapped: the zone's root is its host uid there.
    let m = fs::metadata(rw.join("made")).unwrap();
    assert_eq!((m.uid(), m.gid()), (HOST, HOST + 7));
    let sec = z.wait_file("security.out");
    assert!(sec.contains("Seccomp:\t2"), "{sec}");
    assert_eq!(status_field(l.init_pid, "Seccomp:"), "2");
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

#[test]
fn limits_written_and_rolled_back() {
    let _g = serial();
    if !privileged() {
        return;
    }
    const MIB: u64 = 1 << 20;
    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    z.spec.limits = Limits {
        memory_bytes: Some(64 * MIB),
        swap_bytes: Some(128 * MIB),
        locked_bytes: Some(MIB),
        pids: Some(100),
        cpu_shares: Some(50),
        cpu_cap_pct: Some(150),
        cpus: None,
        io_priority: Some(200),
    };
    let l = z.launch();
    let cg = z.spec.cgroup.clone();
    let read = |v1: &str, v2: &str| v1_or_v2(&cg, v1, v2);
    let v2 = cgroup::version() == CgroupVersion::V2;
    assert_eq!(read("memory.limit_in_bytes", "memory.max").unwrap(), (64 * MIB).to_string());
    // `swap_bytes` is memory and swap together (SmartOS's max_swap): v1's
    // memsw limit holds it, v2's `memory.swap.max` the swap alone. Without
    // swap accounting (v1 `swapaccount=0`, or no CONFIG_MEMCG_SWAP) the
    // file is missing.
    let swap = |memory: u64, swap: u64| match read("memory.memsw.limit_in_bytes", "memory.swap.max") {
        Some(sw) => assert_eq!(sw, if v2 { swap - memory } else { swap }.to_string()),
        None => {
            let why = "the kernel has no swap accounting (memory.memsw.limit_in_bytes / memory.swap.max)";
            assert!(std::env::var_os("CI").is_none(), "{why} (CI is set)");
            eprintln!("SKIPPED the swap limit: {why}");
        }
    };
    swap(64 * MIB, 128 * MIB);
    assert_eq!(read("pids.max", "pids.max").unwrap(), "100");
    assert_eq!(read("cpu.shares", "cpu.weight").unwrap(), if v2 { "50" } else { "512" });
    if v2 {
        assert_eq!(read("", "cpu.max").unwrap(), "150000 100000");
    } else {
        assert_eq!(read("cpu.cfs_quota_us", "").unwrap(), "150000");
    }
    assert!(status_field(l.init_pid, "VmLck:").starts_with('0'));
    let memlock = fs::read_to_string(format!("/proc/{}/limits", l.init_pid)).unwrap();
    assert!(memlock.lines().any(|l| l.starts_with("Max locked memory") && l.contains(" 1048576 ")), "{memlock}");

    let new =
        Limits { memory_bytes: Some(96 * MIB), swap_bytes: Some(192 * MIB), pids: Some(200), ..Limits::default() };
    z.client().set_limits(&new).unwrap();
    assert_eq!(read("memory.limit_in_bytes", "memory.max").unwrap(), (96 * MIB).to_string());
    swap(96 * MIB, 192 * MIB);
    assert_eq!(read("pids.max", "pids.max").unwrap(), "200");
    // cpu_cap None means no cap.
    if v2 {
        assert_eq!(read("", "cpu.max").unwrap(), "max 100000");
    } else {
        assert_eq!(read("cpu.cfs_quota_us", "").unwrap(), "-1");
    }

    // The kernel refuses pids.max = 10^9: the memory change before it is undone.
    let bad = Limits { memory_bytes: Some(80 * MIB), pids: Some(1_000_000_000), ..Limits::default() };
    let err = z.client().set_limits(&bad).unwrap_err();
    assert!(err.to_string().contains("pids.max"), "{err}");
    assert_eq!(read("memory.limit_in_bytes", "memory.max").unwrap(), (96 * MIB).to_string());
    assert_eq!(read("pids.max", "pids.max").unwrap(), "200");
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

/// Not a test on its own (so ignored, and failing when run without
/// `ZV_HELPER_SPEC`): the launcher process of `survives_its_launcher`,
/// which runs it with `--ignored`.
#[test]
#[ignore = "not a test: the launcher process of survives_its_launcher, which runs it"]
fn helper_launcher() {
    let spec = std::env::var_os("ZV_HELPER_SPEC")
        .unwrap_or_else(|| panic!("not a test on its own: survives_its_launcher runs it with ZV_HELPER_SPEC set"));
    let spec: ZoneSpec = serde_json::from_slice(&fs::read(spec).unwrap()).unwrap();
    let start = Instant::now();
    let l = launch(&monitor_exe(), &spec).unwrap();
    println!("LAUNCHED {} {} {}", l.monitor_pid, l.init_pid, start.elapsed().as_micros());
}

#[test]
fn survives_its_launcher() {
    let _g = serial();
    if !privileged() {
        return;
    }
    let mut z = Zone::new(&["/bin/sleep", "1000"]);
    let spec_file = z.dir.path().join("spec-for-helper.json");
    fs::write(&spec_file, serde_json::to_vec(&z.spec).unwrap()).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_launcher", "--ignored", "--nocapture", "--test-threads=1"])
        .env("ZV_HELPER_SPEC", &spec_file)
        .env("ZONEVISOR_MONITOR", monitor_exe())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| Some(l.split_once("LAUNCHED ")?.1))
        .unwrap_or_else(|| panic!("helper failed: {text}"));
    let pids: Vec<i32> = line.split(' ').take(2).map(|p| p.parse().unwrap()).collect();
    z.launched = Some(Launched { monitor_pid: pids[0], init_pid: pids[1] });
    // The launcher has exited; the monitor and the zone run on, reparented.
    assert!(alive(pids[0]) && alive(pids[1]));
    assert_ne!(status_field(pids[0], "PPid:"), std::process::id().to_string());
    let st = control::find_monitor(&z.spec.run_dir).expect("monitor not found after its launcher exited");
    assert_eq!((st.monitor_pid, st.init_pid), (pids[0], pids[1]));
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

/// What [`measure`] saw of `n` launches.
struct Launches {
    /// Launch times, sorted.
    launches: Vec<Duration>,
    /// Forced-stop times, sorted.
    stops: Vec<Duration>,
    /// The largest monitor's `VmRSS` and `RssAnon`, in KiB.
    rss_kib: u64,
    anon_kib: u64,
}

/// A `/proc/<pid>/status` field in kB, as a number.
fn status_kib(pid: i32, key: &str) -> u64 {
    status_field(pid, key).trim_end_matches("kB").trim().parse().unwrap_or_else(|e| panic!("{key} of {pid}: {e}"))
}

/// Launches `n` trivial zones one after another, `gap` apart, and stops
/// each by force; every one must be entirely gone after.
fn measure(n: usize, gap: Duration) -> Launches {
    let mut m = Launches { launches: Vec::new(), stops: Vec::new(), rss_kib: 0, anon_kib: 0 };
    for _ in 0..n {
        let mut z = Zone::new(&["/bin/sleep", "1000"]);
        std::thread::sleep(gap);
        let start = Instant::now();
        let l = z.launch();
        m.launches.push(start.elapsed());
        m.rss_kib = m.rss_kib.max(status_kib(l.monitor_pid, "VmRSS:"));
        m.anon_kib = m.anon_kib.max(status_kib(l.monitor_pid, "RssAnon:"));
        let start = Instant::now();
        z.client().stop(true, None).unwrap();
        m.stops.push(start.elapsed());
        z.assert_gone();
    }
    m.launches.sort();
    m.stops.sort();
    m
}

/// Launches and forced stops, back to back and apart, within generous
/// bounds (a hang, a lost wake-up or a leak fails; the speed figures are
/// `bench/run`'s), and a monitor's memory within a generous bound too.
#[test]
fn launches_and_forced_stops_are_bounded() {
    let _g = serial();
    if !privileged() {
        return;
    }
    // Isolated launches pay a full RCU grace period for the v1 cgroup moves
    // (see cgroup::enable_favordynmods), which back-to-back ones share.
    for (what, n, gap) in [("back-to-back", 20, Duration::ZERO), ("isolated", 10, Duration::from_millis(300))] {
        let m = measure(n, gap);
        let (launch, stop) = (m.launches[n / 2], m.stops[n / 2]);
        eprintln!(
            "{n} {what} launches: median {launch:?} (max {:?}); forced stop median {stop:?} (max {:?}); \
             monitor VmRSS <= {} KiB (RssAnon <= {} KiB)",
            m.launches[n - 1],
            m.stops[n - 1],
            m.rss_kib,
            m.anon_kib
        );
        assert!(launch < Duration::from_millis(500), "{what}: median launch {launch:?}: {:?}", m.launches);
        assert!(m.launches[n - 1] < Duration::from_secs(2), "{what}: a launch took {:?}", m.launches[n - 1]);
        assert!(stop < Duration::from_millis(500), "{what}: median forced stop {stop:?}: {:?}", m.stops);
        assert!(m.stops[n - 1] < Duration::from_secs(2), "{what}: a forced stop took {:?}", m.stops[n - 1]);
        assert!(
            m.rss_kib < 16 * 1024 && m.anon_kib < 4 * 1024,
            "a monitor holds {} KiB ({} KiB anonymous)",
            m.rss_kib,
            m.anon_kib
        );
    }
}

/// Enters the zone whose init is `init` from a forked child, as `zlogin`
/// does (asking the zone's monitor to serve its `sysinfo`), and runs
/// `script` there; returns its status and how long the whole took. Fails
/// the test after 20 s instead of hanging.
fn enter_and_run(init: i32, script: &str) -> (i32, Duration) {
    use zonevisor_zone::enter::{Entry, Exec};
    let start = Instant::now();
    // SAFETY: the child only enters, runs the command and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = Entry::open(init)
            .and_then(Entry::cgroups_of_process)
            .and_then(Entry::chroot)
            .and_then(Entry::drop_capabilities)
            .map(Entry::sysinfo_from_monitor)
            .and_then(Entry::enter)
            .and_then(|()| Exec::new("/bin/sh", &["sh", "-c", script], &["PATH=/bin:/sbin"]))
            .and_then(|e| e.run())
            .unwrap_or_else(|e| {
                eprintln!("entering the zone: {e}");
                125
            });
        // SAFETY: ends the forked child without running the test harness's code.
        unsafe { libc::_exit(code) };
    }
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return (libc::WEXITSTATUS(status), start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(20) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the entered command hung: {script}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// busybox `free -m`'s total memory, in MiB: the `Mem:` line's column
/// under the header's `total`. (Without lxcfs, `/proc/meminfo`'s page
/// cache is the host's, larger than the zone: busybox's `used`
/// underflows and runs into the total, without a space between them.)
fn free_total_mib(out: &str) -> u64 {
    let header = out.lines().find(|l| l.contains("total")).unwrap_or_else(|| panic!("no header in {out:?}"));
    let end = header.find("total").unwrap() + "total".len();
    let mem = out.lines().find(|l| l.starts_with("Mem:")).unwrap_or_else(|| panic!("no Mem: in {out:?}"));
    let column = mem.get(..end).unwrap_or(mem);
    column.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{mem:?}"))
}

/// The seccomp listeners the monitor holds (`anon_inode:seccomp notify` descriptors).
fn listeners_of(monitor: i32) -> usize {
    fs::read_dir(format!("/proc/{monitor}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("seccomp")))
        .count()
}

#[test]
fn sysinfo_answers_with_the_zones_memory_for_init_and_entered_processes() {
    let _g = serial();
    if !privileged() {
        return;
    }
    const MIB: u64 = 1 << 20;
    // init's descendants run `free` whenever /go appears.
    let mut z = Zone::sh(
        "while :; do if [ -e /go ]; then /bin/busybox free -m > /free.tmp; /bin/busybox mv /free.tmp /init-free.out; \
         /bin/busybox rm /go; fi; /bin/busybox usleep 20000; done",
    );
    z.spec.limits = Limits { memory_bytes: Some(64 * MIB), ..Limits::default() };
    z.spec.idmap = Some(IdMap { host_uid: 2_100_000, host_gid: 2_100_000, count: 65536 });
    let l = z.launch();
    let from_init = |z: &Zone| {
        let _ = fs::remove_file(z.root().join("init-free.out"));
        fs::write(z.root().join("go"), "").unwrap();
        free_total_mib(&z.wait_file("init-free.out"))
    };
    let entered = |z: &Zone, init: i32| {
        let out = z.root().join("entered-free.out");
        let _ = fs::remove_file(&out);
        let (code, took) = enter_and_run(init, "/bin/busybox free -m > /entered-free.out");
        assert_eq!(code, 0, "{}", z.log());
        (free_total_mib(&fs::read_to_string(out).unwrap()), took)
    };
    assert_eq!(from_init(&z), 64, "free in init's descendant");
    assert_eq!(entered(&z, l.init_pid).0, 64, "free in an entered process");
    // init's listener is all that is left once the entered process is gone.
    wait_for("the entered process's listener to be dropped", || listeners_of(l.monitor_pid) == 1);

    // Live: the cgroup is read at each call.
    z.client().set_limits(&Limits { memory_bytes: Some(96 * MIB), ..Limits::default() }).unwrap();
    assert_eq!(from_init(&z), 96, "after set_limits, init's descendant");
    assert_eq!(entered(&z, l.init_pid).0, 96, "after set_limits, an entered process");

    // A new init brings a new filter, whose listener replaces the old one.
    let st = z.client().reboot(true).unwrap();
    assert_ne!(st.init_pid, l.init_pid);
    assert_eq!(from_init(&z), 96, "after a reboot, init's descendant");
    assert_eq!(entered(&z, st.init_pid).0, 96, "after a reboot, an entered process");
    wait_for("one listener after the reboot", || listeners_of(l.monitor_pid) == 1);

    // A monitor that does not answer (stopped): the entered process still
    // runs, without the notification rule, on the kernel's sysinfo.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(l.monitor_pid, libc::SIGSTOP) };
    let (total, took) = entered(&z, st.init_pid);
    // SAFETY: as above.
    unsafe { libc::kill(l.monitor_pid, libc::SIGCONT) };
    // SAFETY: sysinfo fills the struct we own.
    let mut host: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::sysinfo(&mut host) }, 0);
    let host_mib = host.totalram as u64 * u64::from(host.mem_unit) / MIB;
    assert!(total.abs_diff(host_mib) <= 1, "with the monitor stopped: {total} MiB, the host has {host_mib}");
    assert!(took < Duration::from_secs(10), "entering took {took:?} with the monitor stopped");
    assert_eq!(from_init(&z), 96, "init's descendant after SIGCONT");
    assert!(!z.log().contains("without a sysinfo listener"), "{}", z.log());
    eprintln!(
        "monitor VmRSS after serving sysinfo: {} (RssAnon {})",
        status_field(l.monitor_pid, "VmRSS:"),
        status_field(l.monitor_pid, "RssAnon:")
    );
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}

/// Builds the workspace's `uname` probe (`tests/probes/uname.c`) as a
/// static binary at `out`; `false` (skipped, or failing in CI) without a
/// C compiler.
fn build_uname_probe(out: &Path) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/probes/uname.c");
    let built = std::process::Command::new("gcc").args(["-static", "-O2", "-Wall", "-o"]).arg(out).arg(&src).output();
    match built {
        Ok(o) if o.status.success() => true,
        other => {
            assert!(std::env::var_os("CI").is_none(), "cannot build {} (CI is set): {other:?}", src.display());
            eprintln!("SKIPPED: cannot build {}: {other:?}", src.display());
            false
        }
    }
}

/// The probe's answers, `label field` → value.
fn uname_fields(out: &str) -> std::collections::BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| {
            let (label, rest) = l.split_once(' ')?;
            let (field, value) = rest.split_once('=')?;
            Some((format!("{label} {field}"), value.to_owned()))
        })
        .collect()
}

#[test]
fn uname_says_brandz_with_the_callers_names_and_the_hosts_kernel() {
    let _g = serial();
    if !privileged() {
        return;
    }
    // init's descendants run /go.sh whenever /go appears.
    let mut z = Zone::sh(
        "while :; do if [ -e /go ]; then /bin/sh /go.sh > /out.tmp 2>&1; /bin/busybox mv /out.tmp /out; \
         /bin/busybox rm /go; fi; /bin/busybox usleep 20000; done",
    );
    let probe = z.root().join("bin/uname-probe");
    if !build_uname_probe(&probe) {
        return;
    }
    z.spec.idmap = Some(IdMap { host_uid: 2_200_000, host_gid: 2_200_000, count: 65536 });
    let l = z.launch();
    let run = |script: &str| {
        let _ = fs::remove_file(z.root().join("out"));
        fs::write(z.root().join("go.sh"), script).unwrap();
        fs::write(z.root().join("go"), "").unwrap();
        z.wait_file("out")
    };
    let on_host = |args: &[&str]| {
        let out = std::process::Command::new(&probe).args(args).output().unwrap();
        uname_fields(&String::from_utf8_lossy(&out.stdout))
    };
    let host = on_host(&["show"]);
    let bb = "/bin/busybox uname";
    let out = run(&format!("{bb} -v; {bb} -n; {bb} -r; {bb} -m; {bb} -s"));
    let want =
        ["BrandZ virtual linux", "zone1", &host["native release"], &host["native machine"], &host["native sysname"]];
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "uname -v -n -r -m -s in init's descendant");

    // The zone names itself; a process names a UTS namespace of its own.
    let out =
        run(&format!("hostname other; {bb} -n; /bin/busybox unshare -u /bin/sh -c 'hostname x; {bb} -n'; {bb} -n"));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["other", "x", "other"]);
    let out = run("/bin/uname-probe unshare host2 dom2; /bin/uname-probe thread t1; cat /proc/sys/kernel/domainname");
    let got = uname_fields(&out);
    assert_eq!((got["unshared nodename"].as_str(), got["unshared domainname"].as_str()), ("host2", "dom2"), "{out}");
    assert_eq!(got["unshared version"], "BrandZ virtual linux");
    // Per thread: one thread's namespace is not its process's.
    assert_eq!((got["thread nodename"].as_str(), got["main nodename"].as_str()), ("t1", "other"), "{out}");
    assert_eq!(got["main domainname"], out.lines().last().unwrap(), "the zone's domainname");

    // Each personality and ABI gets the kernel's own answer but the version:
    // PER_LINUX32 (8) makes the machine i686, UNAME26 the release 2.6.x.
    let cases: [&[&str]; 5] =
        [&["show"], &["as", "8", "show"], &["as", "0020000", "show"], &["i386"], &["as", "8", "i386"]];
    let i386 = !host.is_empty() && on_host(&["i386"]).contains_key("i386 machine");
    if !i386 {
        eprintln!("NOTE: this kernel does not answer i386 calls: only native ones tried");
    }
    for args in cases.iter().filter(|a| i386 || !a.contains(&"i386")) {
        let want = on_host(args);
        let got = uname_fields(&run(&format!("/bin/uname-probe {}", args.join(" "))));
        let label = if args.contains(&"i386") { "i386" } else { "native" };
        for field in ["sysname", "release", "machine"] {
            let key = format!("{label} {field}");
            assert_eq!(got.get(&key), want.get(&key), "{args:?} {field}");
        }
        assert_eq!(got[&format!("{label} version")], "BrandZ virtual linux", "{args:?}");
        assert_eq!(got[&format!("{label} nodename")], "other", "{args:?}");
        if args.starts_with(&["as", "8"]) && cfg!(target_arch = "x86_64") {
            assert_eq!(got[&format!("{label} machine")], "i686", "{args:?}");
        }
    }

    // Bad buffers fail as the kernel fails them; the monitor serves on.
    let got = run("/bin/uname-probe bad");
    assert!(got.contains("null err=EFAULT") && got.contains("unmapped err=EFAULT"), "{got}");
    assert!(got.contains("readonly ok") || got.contains("readonly EFAULT"), "{got}");
    assert!(got.contains("after version=BrandZ virtual linux"), "{got}");

    // A process entered from the host gets the same answer.
    let (code, _) = enter_and_run(l.init_pid, &format!("{{ {bb} -v; {bb} -n; }} > /entered.out"));
    assert_eq!(code, 0, "{}", z.log());
    assert_eq!(fs::read_to_string(z.root().join("entered.out")).unwrap(), "BrandZ virtual linux\nother\n");

    // Many calls in a row (what a call costs is bench/'s to say): all
    // answered, and the monitor is still in its own UTS namespace.
    let many = run("/bin/uname-probe bench 500");
    assert!(many.starts_with("uname_ns="), "{many}");
    assert!(!z.log().contains("UTS namespace"), "{}", z.log());
    z.client().stop(true, None).unwrap();
    z.assert_gone();
}
