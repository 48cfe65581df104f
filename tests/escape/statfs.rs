//! The zone's monitor answers `statfs(2)` for it (`monitor/statfs.rs`),
//! resolving what the zone names as the host's root; and it resizes the
//! zone's `/tmp` (`monitor/tmpfs.rs`). Root in the zone tries to make it
//! reveal or touch the host through them, with the `statfs` probe
//! (`tests/probes/statfs.c`): paths that leave the zone (`..` chains,
//! symlinks to `/proc/1/root` and to the host's paths, magic links),
//! descriptors from outside, bad pointers, a path swapped while the
//! monitor reads it, a flood of calls (and one of `uname(2)`, which the
//! monitor answers in the caller's UTS namespace: `tests/probes/uname.c`),
//! and a `/tmp` replaced by a symlink.
//! Every answer must be one the zone gets for a file system it has, and
//! the monitor must go on serving it and every other zone.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::probe::{self, zsh};

const GIB: u64 = 1 << 30;
/// `crates/zone/src/monitor/notify.rs`: `BUDGET` per `WINDOW` (256 per 100 ms).
const BUDGET_PER_SEC: u64 = 2560;

/// One answer of the probe: the file system's type and id, and its size
/// in bytes; `None` for an error.
type Answer = Option<(String, String, u64)>;

fn parse(line: &str) -> (String, Answer) {
    let mut words = line.split_whitespace();
    let label = words.next().unwrap_or_default().to_string();
    let f: HashMap<&str, &str> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
    if !line.contains(" ok ") {
        return (label, None);
    }
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
    let unit = num("frsize").or(num("bsize")).unwrap_or_else(|| panic!("no block size in {line}"));
    let blocks = num("blocks").unwrap_or_else(|| panic!("no blocks in {line}"));
    (label, Some((f["type"].to_string(), f["fsid"].to_string(), blocks * unit)))
}

/// Every answer the probe printed, by label.
fn answers(out: &str) -> HashMap<String, Answer> {
    out.lines().filter(|l| l.contains(" ok ") || l.contains(" err=")).map(parse).collect()
}

/// The probe run on the host: the kernel's answers there.
fn on_host(probes: &Path, args: &[&str]) -> HashMap<String, Answer> {
    let out = Command::new(probes.join("statfs")).args(args).output().unwrap();
    answers(&String::from_utf8_lossy(&out.stdout))
}

/// What the zone gets for each file system it has: the answer for each
/// of its mount points, and for its root also the kernel's (the pool's,
/// which a magic link gets, see `monitor/statfs.rs`).
struct ZoneView {
    allowed: Vec<(String, String, u64)>,
    root: (String, String, u64),
}

impl ZoneView {
    fn of(h: &TestHost, uuid: &str) -> ZoneView {
        let mounts = zsh(h, uuid, "cut -d' ' -f2 /proc/mounts | sort -u | tr '\\n' ' '");
        let out = zsh(h, uuid, &format!("/probes/statfs path {mounts}"));
        let mut allowed: Vec<_> = answers(&out).into_values().flatten().collect();
        let root = answers(&zsh(h, uuid, "/probes/statfs path /"))["/"].clone().expect("statfs / in the zone");
        assert_eq!(root.2, GIB, "the zone's root shows its quota");
        let pid = h.get(uuid)["pid"].as_i64().unwrap();
        let probes = h.dir.path().join("probes");
        let pool = on_host(&probes, &["path", &format!("/proc/{pid}/root")]);
        allowed.extend(pool.into_values().flatten());
        ZoneView { allowed, root }
    }

    #[track_caller]
    fn check(&self, what: &str, a: &Answer) {
        if let Some(a) = a {
            assert!(self.allowed.contains(a), "{what}: {a:?} is no file system of the zone's ({:?})", self.allowed);
        }
    }
}

fn zone(h: &TestHost, img: &str, probes: &Path, more: serde_json::Value) -> String {
    let mut extra = json!({"quota": 1});
    extra.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
    h.create_ok(&probe::payload(img, probes, extra))
}

fn monitor_of(h: &TestHost, uuid: &str) -> i64 {
    let pid = std::fs::read_to_string(h.root.join("run/zones").join(uuid).join("monitor.pid")).unwrap();
    pid.trim().parse().unwrap()
}

#[test]
fn statfs_through_paths_that_leave_the_zone_answers_only_for_the_zones_file_systems() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let uuid = zone(&h, &img, &probes, json!({}));
    let monitor = monitor_of(&h, &uuid);
    // The daemon's root, the pool, the zone's own dataset, the host's root.
    let host_paths = [h.root.clone(), h.pool(), h.pool().join(&uuid), PathBuf::from("/")];
    let mut links = String::from("ln -s /proc/1/root /l1; ln -s ../../../../../../.. /l2; ln -s /proc/self/root /l3;");
    for (i, p) in host_paths.iter().enumerate() {
        links.push_str(&format!(" ln -s {} /h{i};", p.display()));
    }
    let made = zsh(&h, &uuid, &format!("{links} ls -l /l1 /l2 /l3 /h3"));
    assert!(made.contains("/l1 -> /proc/1/root") && made.contains("/h3 -> /"), "{made}");
    let view = ZoneView::of(&h, &uuid);
    let paths = [
        "/l1",
        "/l1/etc",
        "/l1/../../..",
        "/l2",
        "/l2/etc",
        "/l3",
        "/l3/..",
        "/../../../../..",
        "/proc/1/root",
        "/proc/self/root/../../..",
        "/proc/1/cwd",
        "/h0",
        "/h1",
        "/h2",
        "/h3",
        "/h3/proc",
    ];
    for mode in ["path", "fd"] {
        let out = zsh(&h, &uuid, &format!("cd /etc && /probes/statfs {mode} {} ../../../..", paths.join(" ")));
        let got = answers(&out);
        for p in paths.iter().chain(&["../../../.."]) {
            view.check(
                &format!("{mode} {p}"),
                got.get(*p).unwrap_or_else(|| panic!("{mode}: no answer for {p}: {out}")),
            );
        }
        // The paths that stay in the zone's root answer with its quota.
        for p in ["/l2", "/l2/etc", "/../../../../..", "../../../..", "/h3"] {
            assert_eq!(got[p].as_ref(), Some(&view.root), "{mode} {p}: {out}");
        }
        // The host's own paths do not exist in the zone.
        for p in ["/h0", "/h1", "/h2"] {
            assert_eq!(got[p], None, "{mode} {p}: {out}");
        }
    }
    assert_eq!(monitor_of(&h, &uuid), monitor, "the monitor is the same");
    assert_eq!(h.get(&uuid)["state"], "running");
}

#[test]
fn bad_pointers_fail_as_the_kernel_fails_them_and_the_monitor_serves_on() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let uuid = zone(&h, &img, &probes, json!({}));
    let monitor = monitor_of(&h, &uuid);
    let out = zsh(&h, &uuid, "/probes/statfs bad /; /probes/statfs i386 / /../..");
    let got = answers(&out);
    for (what, errno) in [
        ("null-path", "EFAULT"),
        ("null-buf", "EFAULT"),
        ("unmapped-buf", "EFAULT"),
        ("unterminated-path", "EFAULT"),
        ("long-path", "ENAMETOOLONG"),
        ("empty-path", "ENOENT"),
    ] {
        assert!(out.contains(&format!("{what} err={errno}")), "{what}: {out}");
        assert_eq!(got[what], None);
    }
    // A buffer the caller may only read: the monitor writes it as a
    // debugger would (its own memory), or it faults; either way the
    // monitor lives on.
    assert!(out.contains("readonly-buf ok") || out.contains("readonly-buf EFAULT"), "{out}");
    assert_eq!(got["after"].as_ref().map(|a| a.2), Some(GIB), "{out}");
    if !out.contains("unsupported") {
        assert!(out.contains("i386-statfs64-wrong-size EINVAL"), "{out}");
    }
    assert_eq!(monitor_of(&h, &uuid), monitor);
    assert!(zsh(&h, &uuid, "/probes/statfs path /").contains(&format!("blocks={}", GIB / 4096)));
}

#[test]
fn descriptors_from_outside_the_zone_get_the_kernels_answer() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let uuid = zone(&h, &img, &probes, json!({}));
    // zlogin's stdin: a file of the host's.
    let file = h.dir.path().join("host-file");
    std::fs::write(&file, "host").unwrap();
    let out = Command::new(bin("zonevisor"))
        .arg0("zlogin")
        .args([&uuid, "/probes/statfs stdin; /probes/statfs fd /probes"])
        .env("ZONEVISOR_SOCKET", &h.socket)
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).to_string();
    let got = answers(&out);
    let host = on_host(&probes, &["path", &file.display().to_string(), &probes.display().to_string()]);
    assert_eq!(got["stdin"], host[&file.display().to_string()], "{out}");
    assert_eq!(got["/probes"], host[&probes.display().to_string()], "{out}");
    assert_ne!(got["stdin"].as_ref().map(|a| a.2), Some(GIB), "not the zone's quota");
}

#[test]
fn a_path_swapped_while_the_monitor_reads_it_answers_for_one_or_the_other() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let uuid = zone(&h, &img, &probes, json!({}));
    zsh(&h, &uuid, "ln -s /proc/1/root /l1");
    let view = ZoneView::of(&h, &uuid);
    for (a, b) in [("/", "/l1/../../.."), ("/", "/proc/self/root"), ("/etc", "/proc")] {
        let out = zsh(&h, &uuid, &format!("/probes/statfs race {a} {b} 3000"));
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("race ")).collect();
        assert!(!lines.is_empty(), "{out}");
        for l in lines {
            view.check(&format!("{a} / {b}"), &parse(l).1);
        }
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(") ").unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_flood_of_statfs_is_held_to_the_monitors_budget_and_stalls_no_one() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let a = zone(&h, &img, &probes, json!({}));
    let b = zone(&h, &img, &probes, json!({"quota": 2}));
    let monitor = monitor_of(&h, &a);
    const SECS: u64 = 8;
    let ticks = cpu_ticks(monitor);
    let started = Instant::now();
    let flood = {
        let (socket, a) = (h.socket.clone(), a.clone());
        std::thread::spawn(move || {
            let out = Command::new(bin("zonevisor"))
                .arg0("zlogin")
                .args([&a, &format!("/probes/statfs flood {SECS} 8")])
                .env("ZONEVISOR_SOCKET", &socket)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    // Another zone is served as ever.
    let t = Instant::now();
    let out = zsh(&h, &b, "/probes/statfs path /");
    assert!(out.contains(&format!("blocks={}", 2 * GIB / 4096)), "{out}");
    assert!(t.elapsed() < Duration::from_secs(5), "the other zone waited {:?}", t.elapsed());
    // The flooded zone's monitor still answers its control socket and its
    // zone's other callers (they wait their turn in the budget).
    let t = Instant::now();
    assert!(zsh(&h, &a, "/probes/statfs path /").contains(&format!("blocks={}", GIB / 4096)));
    h.vmadm(&["get", &a]).ok();
    assert!(t.elapsed() < Duration::from_secs(5), "the flooded zone's own statfs waited {:?}", t.elapsed());
    let out = flood.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let calls: u64 = out.lines().find_map(|l| l.strip_prefix("calls ")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(calls > 0, "{out}");
    assert!(calls <= BUDGET_PER_SEC * (SECS + 2), "{calls} calls in {SECS} s: the budget did not hold");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_ticks(monitor) - ticks) as f64 / hz / elapsed;
    eprintln!("flood: {calls} calls in {SECS} s; the monitor used {:.1}% of a CPU", cpu * 100.0);
    assert!(cpu < 0.5, "the monitor used {:.0}% of a CPU", cpu * 100.0);
    assert_eq!(monitor_of(&h, &a), monitor);
}

#[test]
fn a_flood_of_uname_is_held_to_the_monitors_budget_and_stalls_no_one() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "uname") else { return };
    let img = h.install(busybox());
    let a = zone(&h, &img, &probes, json!({}));
    let b = zone(&h, &img, &probes, json!({}));
    let monitor = monitor_of(&h, &a);
    let names = |uuid: &str| (zsh(&h, uuid, "hostname").trim().to_owned(), zsh(&h, uuid, "uname -n; uname -v"));
    let (host_a, said) = names(&a);
    assert_eq!(said, format!("{host_a}\nBrandZ virtual linux\n"));
    const SECS: u64 = 8;
    let ticks = cpu_ticks(monitor);
    let started = Instant::now();
    let flood = {
        let (socket, a) = (h.socket.clone(), a.clone());
        std::thread::spawn(move || {
            let out = Command::new(bin("zonevisor"))
                .arg0("zlogin")
                .args([&a, &format!("/probes/uname flood {SECS} 8")])
                .env("ZONEVISOR_SOCKET", &socket)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    // Another zone is served as ever, with its own name.
    let t = Instant::now();
    let (host_b, said) = names(&b);
    assert_eq!(said, format!("{host_b}\nBrandZ virtual linux\n"));
    assert_ne!(host_a, host_b);
    assert!(t.elapsed() < Duration::from_secs(5), "the other zone waited {:?}", t.elapsed());
    // The flooded zone's monitor still answers its control socket and its
    // zone's other callers (they wait their turn in the budget).
    let t = Instant::now();
    assert!(zsh(&h, &a, "/probes/uname show").contains("native version=BrandZ virtual linux"));
    h.vmadm(&["get", &a]).ok();
    assert!(t.elapsed() < Duration::from_secs(5), "the flooded zone's own uname waited {:?}", t.elapsed());
    let out = flood.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let calls: u64 = out.lines().find_map(|l| l.strip_prefix("calls ")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(calls > 0, "{out}");
    assert!(calls <= BUDGET_PER_SEC * (SECS + 2), "{calls} calls in {SECS} s: the budget did not hold");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (cpu_ticks(monitor) - ticks) as f64 / hz / elapsed;
    eprintln!("uname flood: {calls} calls in {SECS} s; the monitor used {:.1}% of a CPU", cpu * 100.0);
    assert!(cpu < 0.5, "the monitor used {:.0}% of a CPU", cpu * 100.0);
    assert_eq!(monitor_of(&h, &a), monitor);
    // The monitor went back to its own UTS namespace after every call.
    let uts = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    assert_eq!(uts(&monitor.to_string()), uts("self"), "the monitor stayed in a zone's UTS namespace");
    assert_eq!(names(&a).1, format!("{host_a}\nBrandZ virtual linux\n"));
}

#[test]
fn a_tmp_replaced_by_a_symlink_is_not_resized() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build_named(&h, "statfs") else { return };
    let img = h.install(busybox());
    let uuid = zone(&h, &img, &probes, json!({"tmpfs": 64, "limit_priv": "sys_mount"}));
    // The host's mounts a resize through the symlinks would touch: its /,
    // /tmp and /dev/shm, and this test's own root (other tests mount and
    // unmount their pools meanwhile).
    let root = h.root.display().to_string();
    let host_mounts = || {
        let all = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let touched = |l: &&str| {
            let target = l.split_whitespace().nth(4).unwrap_or("");
            ["/", "/tmp", "/dev/shm"].contains(&target) || target.starts_with(&root)
        };
        all.lines().filter(touched).map(|l| format!("{l}\n")).collect::<String>()
    };
    let before = host_mounts();
    for target in ["/", "/proc/1/root/tmp", "/dev/shm"] {
        zsh(&h, &uuid, &format!("umount /tmp 2>/dev/null; rm -rf /tmp; ln -sfn {target} /tmp"));
        assert!(zsh(&h, &uuid, "ls -ld /tmp").contains("->"), "/tmp is not a symlink");
        let r = h.vmadm(&["update", &uuid, "tmpfs=32"]);
        let said = format!("{}{}", r.stdout, r.stderr);
        assert_ne!(r.code, 0, "{target}: {said}");
        assert!(said.contains("tmpfs") && said.contains("not its tmpfs"), "{target}: {said}");
        assert_eq!(h.get(&uuid)["tmpfs"], 64);
    }
    assert_eq!(host_mounts(), before, "the host's mounts changed");
    // The zone's /dev/shm (a symlink's target above) kept its size.
    let shm = zsh(&h, &uuid, "grep ' /dev/shm ' /proc/mounts");
    assert!(!shm.contains("size=32768k"), "{shm}");
}
