//! A zone's `/proc` tells the truth: `free`, `top`, `nproc` and
//! `/proc/cpuinfo` in a zone show its own memory cap and CPU allowance
//! (lxcfs's views bound over `/proc`, a cpuset for `cpu_cap`), and follow
//! `vmadm update` live. Also the daemon's lxcfs lifecycle: it outlives the
//! daemon while zones run, is reused by the next daemon, stops with the
//! daemon when no zone runs, and the harness leaves no lxcfs behind.
//!
//! `free` is procps's in the Debian image. busybox's `free` and `uptime`
//! ask `sysinfo(2)` instead, which no file system answers: the zone's
//! seccomp filter sends it to the monitor, which answers with the zone's
//! memory and uptime; that is checked for processes entered with `zlogin`
//! and for descendants of init (the console's shell), across a live update
//! and a reboot, with a probe that prints the whole `struct sysinfo`.
//!
//! Without lxcfs on the host these tests skip with the reason (and fail in
//! CI, where `CI` is set).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A test host whose daemon serves lxcfs, or `None` (skipped; a failure in CI).
fn lxcfs_host() -> Option<TestHost> {
    let h = TestHost::new()?;
    let info = h.cli("sysinfo", &[], None).json();
    let pv = info["Proc Virtualization"].as_str().unwrap_or("absent").to_string();
    if pv != "lxcfs" {
        skip(&format!("zonevisord has no lxcfs: Proc Virtualization is {pv:?} (apt-get install lxcfs)"));
        return None;
    }
    Some(h)
}

/// The host's online CPUs, as zones without a cap see them.
fn host_cpus() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    online
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// Runs `cmd` in the zone and returns its output (it must succeed).
#[track_caller]
fn zlogin(h: &TestHost, uuid: &str, cmd: &str) -> String {
    h.cli("zlogin", &[uuid, cmd], None).ok().to_string()
}

/// `free -m`'s total memory, in MiB.
#[track_caller]
fn free_total_mib(h: &TestHost, uuid: &str) -> u64 {
    let out = zlogin(h, uuid, "free -m");
    let mem = out.lines().find(|l| l.starts_with("Mem:")).unwrap_or_else(|| panic!("no Mem: line in {out:?}"));
    mem.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{mem:?}"))
}

/// `MemTotal` of the zone's `/proc/meminfo`, in KiB.
#[track_caller]
fn meminfo_total_kib(h: &TestHost, uuid: &str) -> u64 {
    let out = zlogin(h, uuid, "grep ^MemTotal: /proc/meminfo");
    out.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{out:?}"))
}

/// `top -bn1`'s memory (used + free, which busybox prints), in KiB.
#[track_caller]
fn top_total_kib(h: &TestHost, uuid: &str) -> u64 {
    let out = zlogin(h, uuid, "top -bn1");
    let mem = out.lines().find(|l| l.starts_with("Mem:")).unwrap_or_else(|| panic!("no Mem: line in {out:?}"));
    // Mem: 1234K used, 5678K free, ...
    let num = |word: &str| -> u64 {
        let field = mem.split(',').find(|f| f.trim_end().ends_with(word)).unwrap_or_else(|| panic!("{mem:?}"));
        field.trim().trim_start_matches("Mem:").trim().split('K').next().unwrap().parse().unwrap()
    };
    num("used") + num("free")
}

#[track_caller]
fn nproc(h: &TestHost, uuid: &str) -> usize {
    zlogin(h, uuid, "nproc").trim().parse().unwrap()
}

#[track_caller]
fn cpuinfo_processors(h: &TestHost, uuid: &str) -> usize {
    zlogin(h, uuid, "grep -c ^processor /proc/cpuinfo").trim().parse().unwrap()
}

#[track_caller]
fn assert_near(what: &str, got: u64, want: u64, slack: u64) {
    assert!(got.abs_diff(want) <= slack, "{what}: got {got}, want {want} (±{slack})");
}

/// The daemon's lxcfs pid, from its pid file.
fn lxcfs_pid(h: &TestHost) -> Option<i64> {
    std::fs::read_to_string(h.root.join("run/lxcfs.pid")).ok()?.trim().parse().ok()
}

fn lxcfs_mount(h: &TestHost) -> PathBuf {
    h.root.join("run/lxcfs")
}

/// SIGTERM to the daemon, and wait for it to exit.
fn term_daemon(h: &mut TestHost) {
    let mut child = h.daemon.take().expect("a running daemon");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "zonevisord ignored SIGTERM:\n{}", h.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn top_nproc_and_cpuinfo_show_the_zones_caps_and_follow_updates() {
    let Some(h) = lxcfs_host() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "max_physical_memory": 256, "cpu_cap": 100}));
    assert_eq!(meminfo_total_kib(&h, &uuid), 256 * 1024, "MemTotal in /proc/meminfo");
    assert_near("top's used + free (KiB)", top_total_kib(&h, &uuid), 256 * 1024, 1024);
    assert_eq!(nproc(&h, &uuid), 1, "nproc in a zone with cpu_cap=100");
    assert_eq!(cpuinfo_processors(&h, &uuid), 1, "/proc/cpuinfo in a zone with cpu_cap=100");
    let online = zlogin(&h, &uuid, "cat /sys/devices/system/cpu/online");
    assert!(!online.contains(',') && !online.contains('-'), "one CPU online in the zone: {online:?}");

    // Live: no restart, the same init.
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    h.vmadm(&["update", &uuid, "max_physical_memory=512", "cpu_cap=200"]).ok();
    let want = host_cpus().min(2);
    assert_eq!(meminfo_total_kib(&h, &uuid), 512 * 1024, "MemTotal after the update");
    assert_near("top's used + free after the update", top_total_kib(&h, &uuid), 512 * 1024, 1024);
    assert_eq!(nproc(&h, &uuid), want, "nproc after cpu_cap=200");
    assert_eq!(cpuinfo_processors(&h, &uuid), want, "/proc/cpuinfo after cpu_cap=200");
    assert_eq!(h.get(&uuid)["pid"].as_i64(), Some(pid), "the update restarted the zone");

    // Back to one CPU, then no cap at all: the host's CPUs.
    h.vmadm(&["update", &uuid, "cpu_cap=50"]).ok();
    assert_eq!(nproc(&h, &uuid), 1, "nproc after cpu_cap=50");
    h.vmadm(&["update", &uuid, "cpu_cap=null"]).ok();
    assert_eq!(nproc(&h, &uuid), host_cpus(), "nproc after removing the cap");
    assert_eq!(cpuinfo_processors(&h, &uuid), host_cpus());
}

#[test]
fn free_and_nproc_of_a_debian_zone_show_its_caps_and_follow_updates() {
    let Some(h) = lxcfs_host() else { return };
    let img = h.install(debian());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "max_physical_memory": 256, "cpu_cap": 100}));
    assert_near("free -m total", free_total_mib(&h, &uuid), 256, 1);
    assert_eq!(nproc(&h, &uuid), 1, "coreutils nproc with cpu_cap=100");
    // procps top: "MiB Mem :    256.0 total, ..."
    let top = zlogin(&h, &uuid, "COLUMNS=200 top -bn1 -E m | grep '^MiB Mem'");
    assert!(top.contains(" 256.0 total"), "{top:?}");
    h.vmadm(&["update", &uuid, "max_physical_memory=512", "cpu_cap=200"]).ok();
    assert_near("free -m total after the update", free_total_mib(&h, &uuid), 512, 1);
    assert_eq!(nproc(&h, &uuid), host_cpus().min(2), "coreutils nproc after cpu_cap=200");
}

#[test]
fn a_zone_without_a_cap_sees_the_hosts_cpus_and_its_own_uptime() {
    let Some(h) = lxcfs_host() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "max_physical_memory": 128}));
    assert_eq!(nproc(&h, &uuid), host_cpus());
    assert_eq!(cpuinfo_processors(&h, &uuid), host_cpus());
    assert_eq!(meminfo_total_kib(&h, &uuid), 128 * 1024);
    // The zone booted a moment ago; the host did not.
    let up: f64 = zlogin(&h, &uuid, "cat /proc/uptime").split_whitespace().next().unwrap().parse().unwrap();
    assert!(up < 60.0, "the zone's /proc/uptime says {up} s");
    // Every view lxcfs offers covers the zone's file, read-only.
    let mounts = zlogin(&h, &uuid, "cat /proc/self/mountinfo");
    for f in ["cpuinfo", "meminfo", "stat", "uptime", "loadavg", "diskstats", "swaps"] {
        let line = mounts
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(&format!("/proc/{f}")))
            .unwrap_or_else(|| panic!("/proc/{f} is not an lxcfs mount:\n{mounts}"));
        assert!(line.contains("fuse.lxcfs") && line.split(' ').nth(5).unwrap().starts_with("ro"), "{line}");
    }
    assert!(mounts.lines().any(|l| l.split(' ').nth(4) == Some("/sys/devices/system/cpu")), "{mounts}");
    let r = h.cli("zlogin", &[&uuid, "echo x > /proc/meminfo"], None);
    assert_ne!(r.code, 0, "the zone wrote to /proc/meminfo");
}

#[test]
fn two_capped_zones_get_different_cpus() {
    let Some(mut h) = lxcfs_host() else { return };
    if host_cpus() < 2 {
        skip("needs 2 CPUs");
        return;
    }
    let img = h.install(busybox());
    let cpus_of = |h: &TestHost, uuid: &str| zlogin(h, uuid, "grep Cpus_allowed_list /proc/self/status");
    let a = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "cpu_cap": 100}));
    let b = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "cpu_cap": 100}));
    assert_ne!(cpus_of(&h, &a), cpus_of(&h, &b), "both zones are on the same CPU");
    // A restarted daemon knows where the running zones are.
    h.kill_daemon();
    h.start_daemon();
    h.vmadm(&["stop", "-F", &b]).ok();
    h.vmadm(&["start", &b]).ok();
    assert_ne!(cpus_of(&h, &a), cpus_of(&h, &b), "after a daemon restart, both zones are on the same CPU");
}

#[test]
fn lxcfs_outlives_the_daemon_while_zones_run_and_stops_with_it_otherwise() {
    let Some(mut h) = lxcfs_host() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "max_physical_memory": 256}));
    let pid = lxcfs_pid(&h).expect("lxcfs.pid");
    assert!(alive(pid));

    // kill -9: lxcfs and the zone's /proc stay; the next daemon reuses both.
    h.kill_daemon();
    assert!(alive(pid), "lxcfs died with the daemon");
    h.start_daemon();
    assert_eq!(lxcfs_pid(&h), Some(pid), "the restarted daemon did not reuse lxcfs");
    assert!(h.log().contains("lxcfs: reusing"), "{}", h.log());
    assert_eq!(meminfo_total_kib(&h, &uuid), 256 * 1024, "MemTotal across the daemon's restart");

    // SIGTERM with a zone running: lxcfs stays.
    term_daemon(&mut h);
    assert!(alive(pid), "lxcfs stopped while a zone runs");
    h.start_daemon();
    assert_eq!(lxcfs_pid(&h), Some(pid));

    // SIGTERM with no zone running: lxcfs goes, and its mount with it.
    h.vmadm(&["stop", "-F", &uuid]).ok();
    term_daemon(&mut h);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "lxcfs outlived a daemon with no zone");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!mounted(&format!(" {} ", lxcfs_mount(&h).display())), "the lxcfs mount stayed");

    // A dead mount (lxcfs killed) is cleaned up and replaced at the next start.
    h.start_daemon();
    let pid2 = lxcfs_pid(&h).expect("a new lxcfs");
    assert_ne!(pid2, pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid2 as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    h.kill_daemon();
    h.start_daemon();
    let pid3 = lxcfs_pid(&h).expect("a new lxcfs");
    assert!(pid3 != pid2 && alive(pid3));
    h.vmadm(&["start", &uuid]).ok();
    assert_eq!(meminfo_total_kib(&h, &uuid), 256 * 1024, "MemTotal with the new lxcfs");
}

#[test]
fn the_harness_leaves_no_lxcfs_behind() {
    let Some(h) = lxcfs_host() else { return };
    let img = h.install(busybox());
    h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let pid = lxcfs_pid(&h).expect("lxcfs.pid");
    let mount = lxcfs_mount(&h);
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(Instant::now() < deadline, "lxcfs {pid} outlived its test host");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!mounted(&format!(" {} ", mount.display())), "{} is still mounted", mount.display());
}

const MIB: u64 = 1 << 20;

/// busybox `free -m`'s total, in MiB: the `Mem:` line's column under the
/// header's `total` (busybox does not separate columns that overflow).
#[track_caller]
fn busybox_free_total_mib(out: &str) -> u64 {
    let header = out.lines().find(|l| l.contains("total")).unwrap_or_else(|| panic!("no header in {out:?}"));
    let end = header.find("total").unwrap() + "total".len();
    let mem = out.lines().find(|l| l.starts_with("Mem:")).unwrap_or_else(|| panic!("no Mem: line in {out:?}"));
    let column = mem.get(..end).unwrap_or(mem);
    column.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{mem:?}"))
}

/// The `key=value` lines the sysinfo probe prints.
fn probe_fields(out: &str) -> HashMap<String, String> {
    out.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

#[track_caller]
fn field(fields: &HashMap<String, String>, key: &str) -> u64 {
    fields.get(key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {key} in {fields:?}"))
}

/// Runs `cmd` on the zone's console, in the shell busybox's init keeps
/// there (a descendant of init, under init's filter), and returns its
/// output, written to a file in the zone and read back with zlogin.
#[track_caller]
fn on_console(h: &TestHost, uuid: &str, cmd: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let out = format!("/tmp/console-{}.out", N.fetch_add(1, Ordering::Relaxed));
    let r = h.cli("vmadm", &["console", uuid], Some(&format!("{cmd} > {out}.tmp 2>&1; mv {out}.tmp {out}\n")));
    assert_eq!(r.code, 0, "vmadm console: {} {}", r.stdout, r.stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = h.cli("zlogin", &[uuid, &format!("cat {out}")], None);
        if r.code == 0 {
            return r.stdout;
        }
        let log = h.vmadm(&["console", "--log", uuid]).stdout;
        assert!(Instant::now() < deadline, "{cmd:?} on the console wrote nothing; the console shows:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Minutes of busybox `uptime`'s "up N min" (`None` when it says hours or days).
fn uptime_minutes(out: &str) -> Option<u64> {
    let up = out.split(" up ").nth(1)?.split(',').next()?.trim();
    up.strip_suffix(" min")?.trim().parse().ok()
}

#[test]
fn busybox_free_and_uptime_get_the_zones_sysinfo_from_zlogin_and_from_init() {
    let Some(h) = lxcfs_host() else { return };
    let probes = h.dir.path().join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    if let Err(e) = build_probe("sysinfo", &probes) {
        skip(&format!("cannot build the sysinfo probe: {e}"));
        return;
    }
    let on_host = std::process::Command::new(probes.join("sysinfo")).output().unwrap();
    let host = probe_fields(&String::from_utf8_lossy(&on_host.stdout));
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({
        "brand": "lx", "image_uuid": img, "max_physical_memory": 256,
        "filesystems": [{"type": "lofs", "source": probes, "target": "/probes", "options": ["ro"]}],
    }));
    let created = Instant::now();

    // zlogin: busybox's free, and the whole struct.
    assert_near("busybox free -m total (zlogin)", busybox_free_total_mib(&zlogin(&h, &uuid, "free -m")), 256, 1);
    let si = probe_fields(&zlogin(&h, &uuid, "/probes/sysinfo; grep -E '^Mem(Total|Free):' /proc/meminfo"));
    assert_eq!(field(&si, "totalram"), 256 * MIB, "{si:?}");
    assert_eq!(field(&si, "mem_unit"), 1);
    assert_eq!(si["null"], "EFAULT", "sysinfo(NULL) in the zone");
    let procs = field(&si, "procs");
    assert!(
        (2..=64).contains(&procs) && procs < field(&host, "procs"),
        "procs {procs}, the host's {:?}",
        host["procs"]
    );
    let uptime = field(&si, "uptime");
    assert!(
        uptime <= created.elapsed().as_secs() + 2,
        "uptime {uptime} s in a zone created {:?} ago",
        created.elapsed()
    );
    assert!(field(&host, "uptime") < 60 || uptime < field(&host, "uptime"), "the host's uptime: {host:?}");
    // sysinfo's free memory is lxcfs's MemFree, give or take what changed between the two reads.
    let meminfo = zlogin(&h, &uuid, "/probes/sysinfo; grep ^MemFree: /proc/meminfo");
    let free_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemFree:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    assert_near(
        "sysinfo freeram vs MemFree (KiB)",
        field(&probe_fields(&meminfo), "freeram") / 1024,
        free_kib,
        8 * 1024,
    );

    // A descendant of init: the console's shell.
    assert_near("busybox free -m total (console)", busybox_free_total_mib(&on_console(&h, &uuid, "free -m")), 256, 1);
    let si = probe_fields(&on_console(&h, &uuid, "/probes/sysinfo"));
    assert_eq!(field(&si, "totalram"), 256 * MIB, "{si:?}");
    assert!(field(&si, "uptime") <= created.elapsed().as_secs() + 2, "{si:?}");
    let up = on_console(&h, &uuid, "uptime");
    assert!(uptime_minutes(&up).is_some_and(|m| m <= created.elapsed().as_secs() / 60 + 1), "busybox uptime: {up:?}");

    // Live: no restart.
    h.vmadm(&["update", &uuid, "max_physical_memory=512"]).ok();
    assert_near(
        "free -m total after the update (zlogin)",
        busybox_free_total_mib(&zlogin(&h, &uuid, "free -m")),
        512,
        1,
    );
    let console = busybox_free_total_mib(&on_console(&h, &uuid, "free -m"));
    assert_near("free -m total after the update (console)", console, 512, 1);

    // A reboot: a new init with a new filter and listener; uptime starts again.
    let pid = h.get(&uuid)["pid"].as_i64();
    h.vmadm(&["reboot", &uuid]).ok();
    let rebooted = Instant::now();
    assert_ne!(h.get(&uuid)["pid"].as_i64(), pid, "the reboot kept init");
    assert_near(
        "free -m total after a reboot (console)",
        busybox_free_total_mib(&on_console(&h, &uuid, "free -m")),
        512,
        1,
    );
    assert_near("free -m total after a reboot (zlogin)", busybox_free_total_mib(&zlogin(&h, &uuid, "free -m")), 512, 1);
    let si = probe_fields(&on_console(&h, &uuid, "/probes/sysinfo"));
    assert_eq!(field(&si, "totalram"), 512 * MIB, "{si:?}");
    assert!(field(&si, "uptime") <= rebooted.elapsed().as_secs() + 2, "uptime after the reboot: {si:?}");
}
