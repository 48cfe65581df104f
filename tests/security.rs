//! Zones are unprivileged: a user namespace per zone (root in the zone is an
//! unprivileged host uid, a distinct range per zone), an idmapped root, a
//! seccomp profile, a reduced capability bounding set, masked /proc and /sys,
//! and only the standard devices. End to end, through the daemon and the CLI.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use serde_json::json;

/// The `0 <host> <count>` line of a uid_map or gid_map.
fn parse_map(text: &str) -> (u32, u32, u32) {
    let v: Vec<u32> = text.split_whitespace().map(|w| w.parse().unwrap()).collect();
    assert_eq!(v.len(), 3, "one mapping line expected: {text:?}");
    (v[0], v[1], v[2])
}

fn status_field(pid: i64, key: &str) -> String {
    read_status_field(pid, key).unwrap_or_else(|| panic!("process {pid} has no status (gone?)"))
}

/// [`status_field`] of a process that may be gone by now (`None` then).
fn read_status_field(pid: i64, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(s.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim().to_owned())
}

/// Runs a shell command in the zone and returns its combined output.
fn zsh(h: &TestHost, uuid: &str, script: &str) -> String {
    let r = h.cli("zlogin", &[uuid, &format!("{{ {script}; }} 2>&1")], None);
    format!("{}{}", r.stdout, r.stderr)
}

/// A host process (host root's credentials, the host's user namespace)
/// inside the zone's pid namespace, as `nsenter --pid` from the host makes
/// one: the zone names it, so only the user namespace stands between the
/// zone and it. Killed when dropped (and with the zone's pid namespace).
struct HostProcessInZone {
    nsenter: std::process::Child,
    /// Its pid on the host and in the zone.
    host_pid: i64,
    zone_pid: i64,
}

impl HostProcessInZone {
    fn start(init: i64) -> HostProcessInZone {
        let nsenter = std::process::Command::new("nsenter")
            .args(["--target", &init.to_string(), "--pid", "--", "sleep", "600"])
            .spawn()
            .expect("nsenter");
        // nsenter forks the process that is born in the pid namespace.
        let parent = nsenter.id().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let host_pid = loop {
            let child = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let pid: i64 = e.file_name().to_str()?.parse().ok()?;
                // Processes come and go while /proc is read.
                (read_status_field(pid, "PPid:")? == parent
                    && std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim() == "sleep")
                    .then_some(pid)
            });
            if let Some(pid) = child {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "nsenter --pid made no sleep");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let nspid = status_field(host_pid, "NSpid:");
        let ids: Vec<i64> = nspid.split_whitespace().map(|p| p.parse().unwrap()).collect();
        assert_eq!(ids.len(), 2, "not in the zone's pid namespace: NSpid {nspid}");
        assert_eq!(status_field(host_pid, "Uid:").split_whitespace().next(), Some("0"), "not host root's");
        HostProcessInZone { nsenter, host_pid, zone_pid: ids[1] }
    }
}

impl Drop for HostProcessInZone {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.host_pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = self.nsenter.wait();
    }
}

#[test]
fn root_in_a_zone_is_not_root_on_the_host() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let out = h.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // World-writable, so that the zone's (unprivileged) root may write.
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let uuid = h.create_ok(&json!({
        "brand": "lx", "image_uuid": img,
        "filesystems": [{"type": "lofs", "source": out, "target": "/srv/out"}],
    }));
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();

    // The zone's user namespace maps its root to an unprivileged host range.
    let inside = h.cli("zlogin", &[&uuid, "cat /proc/self/uid_map"], None);
    let (zero, host, count) = parse_map(inside.ok());
    assert_eq!((zero, count), (0, 65536), "{}", inside.stdout);
    assert!(host >= 1_000_000, "the zone's root is host uid {host}");
    assert_eq!(parse_map(&std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap()), (0, host, 65536));
    assert_eq!(parse_map(&std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap()), (0, host, 65536));
    assert_eq!(status_field(pid, "Uid:").split_whitespace().next(), Some(host.to_string().as_str()));
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap()
    );
    assert_eq!(h.cli("zlogin", &[&uuid, "id -u"], None).ok().trim(), "0", "zlogin runs as the zone's root");

    // A file the zone's root creates in a bind mount is the mapped uid's on the host.
    h.cli("zlogin", &[&uuid, "touch /srv/out/made-in-zone"], None).ok();
    let meta = std::fs::metadata(out.join("made-in-zone")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (host, host), "owned by the zone's host ids, not root");

    // The root is idmapped: on disk the zone's files stay unshifted (the
    // image's 0, and 0 for what the zone's root writes), in the zone they
    // are root's, and from the host through the zone's mount they are the
    // zone's host uid.
    h.cli("zlogin", &[&uuid, "touch /made-on-root"], None).ok();
    let r = h.cli("zlogin", &[&uuid, "stat -c %u:%g /made-on-root /bin/busybox /etc/hostname"], None);
    assert_eq!(r.ok().split_whitespace().collect::<Vec<_>>(), ["0:0", "0:0", "0:0"]);
    let on_disk = h.pool().join(&uuid).join("root");
    for f in ["made-on-root", "bin/busybox", "etc/hostname"] {
        assert_eq!(std::fs::metadata(on_disk.join(f)).unwrap().uid(), 0, "{f} is shifted on disk");
        let via_zone = std::fs::metadata(format!("/proc/{pid}/root/{f}")).unwrap();
        assert_eq!((via_zone.uid(), via_zone.gid()), (host, host), "{f} through the zone's idmapped root");
    }

    // init and zlogin'd processes: seccomp filter on, capabilities dropped.
    let init_bnd = u64::from_str_radix(&status_field(pid, "CapBnd:"), 16).unwrap();
    for cap in [16, 17, 25, 32, 33] {
        assert_eq!(init_bnd & (1 << cap), 0, "capability {cap} is in init's bounding set");
    }
    assert_ne!(init_bnd & (1 << 22), 0, "sys_boot stays (reboot in the zone)");
    assert_eq!(status_field(pid, "Seccomp:"), "2", "init runs under a seccomp filter");
    let r = h.cli("zlogin", &[&uuid, "grep -E '^(Seccomp|CapBnd):' /proc/self/status"], None);
    let lines: Vec<&str> = r.ok().lines().map(|l| l.split_whitespace().last().unwrap()).collect();
    assert_eq!(lines, [format!("{init_bnd:016x}").as_str(), "2"], "zlogin is confined like init: {}", r.stdout);

    // A second zone gets another, disjoint range; ranges survive a restart.
    let other = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let other_pid = h.get(&other)["pid"].as_i64().unwrap();
    let (_, host2, _) = parse_map(&std::fs::read_to_string(format!("/proc/{other_pid}/uid_map")).unwrap());
    assert!(host2.abs_diff(host) >= 65536, "overlapping ranges: {host} and {host2}");
    h.vmadm(&["stop", "-F", &uuid]).ok();
    h.vmadm(&["start", &uuid]).ok();
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();
    assert_eq!(parse_map(&std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap()).1, host, "stable");
}

#[test]
fn escape_attempts_are_refused() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    let pid = h.get(&uuid)["pid"].as_i64().unwrap();

    // Mounting what it was not given.
    let r = zsh(&h, &uuid, "mkdir -p /mnt; mount -t tmpfs none /mnt; echo rc=$?");
    assert!(!r.contains("rc=0"), "mount succeeded: {r}");
    assert!(!zsh(&h, &uuid, "cat /proc/mounts").contains(" /mnt "), "a tmpfs is on /mnt");

    // Loading a kernel module: refused for want of privilege, not because
    // the module is bad (a privileged caller gets "invalid module format").
    let r = zsh(&h, &uuid, "echo garbage > /tmp/x.ko; insmod /tmp/x.ko; echo rc=$?");
    assert!(r.contains("not permitted") && !r.contains("rc=0"), "insmod: {r}");
    let r = zsh(&h, &uuid, "rmmod zonevisor_no_such_module; echo rc=$?");
    assert!(r.contains("not permitted") && !r.contains("rc=0"), "rmmod: {r}");

    // The magic SysRq key ("_" alone does nothing, should this ever get
    // through), where the host's kernel has one.
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        let r = zsh(&h, &uuid, "printf _ > /proc/sysrq-trigger; echo rc=$?");
        assert!(!r.contains("rc=0"), "wrote /proc/sysrq-trigger: {r}");
    } else {
        eprintln!("NOTE: this kernel has no /proc/sysrq-trigger; not tried");
    }
    // /proc/sys is read-only, masked files read empty, /sys/firmware is empty.
    let r = zsh(&h, &uuid, "echo 1 > /proc/sys/vm/drop_caches; echo rc=$?");
    assert!(!r.contains("rc=0"), "wrote /proc/sys: {r}");
    for f in ["kcore", "keys", "timer_list"].iter().filter(|f| std::path::Path::new("/proc").join(f).exists()) {
        assert_eq!(zsh(&h, &uuid, &format!("wc -c < /proc/{f}")).trim(), "0", "/proc/{f} is not masked");
    }
    assert_eq!(zsh(&h, &uuid, "ls -A /sys/firmware | wc -l").trim(), "0");

    // The host's devices: only the standard set in /dev, and a node made
    // for the host's root disk cannot be read.
    let dev = zsh(&h, &uuid, "ls /dev");
    let mut names: Vec<&str> = dev.split_whitespace().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "console", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
            "urandom", "zero"
        ]
    );
    let st = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(st), libc::minor(st));
    let r = zsh(
        &h,
        &uuid,
        &format!("mknod /root/disk b {major} {minor}; dd if=/root/disk of=/dev/null bs=512 count=1; echo rc=$?"),
    );
    assert!(!r.contains("rc=0"), "read the host's disk {major}:{minor}: {r}");
    assert!(!zsh(&h, &uuid, "ls -A /root").contains("disk"), "a device node was made");

    // Host processes: invisible (the pid namespace: ESRCH), and one the
    // zone can name cannot be signalled (the user namespace: EPERM).
    let daemon = h.daemon.as_ref().unwrap().id();
    let me = std::process::id();
    let zone_pids: Vec<u32> = zsh(&h, &uuid, "ls /proc").split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(!zone_pids.is_empty() && zone_pids.len() < 10, "the zone sees {zone_pids:?}");
    let mut tried = 0;
    for host_pid in [daemon, me, pid as u32] {
        if zone_pids.contains(&host_pid) {
            continue; // the same number names a zone process
        }
        let r = zsh(&h, &uuid, &format!("kill -0 {host_pid}; echo rc=$?"));
        assert!(r.contains("No such process") && r.contains("rc=1"), "kill -0 host pid {host_pid}: {r}");
        tried += 1;
    }
    assert!(tried >= 2, "every host pid tried names a zone process: {zone_pids:?}");
    assert!(!zsh(&h, &uuid, "ps").contains("zonevisord"), "the zone sees the daemon");
    let host = HostProcessInZone::start(pid);
    assert!(zsh(&h, &uuid, &format!("cat /proc/{}/comm", host.zone_pid)).contains("sleep"), "the zone does not see it");
    let r = zsh(&h, &uuid, &format!("kill -0 {}; echo rc=$?", host.zone_pid));
    assert!(r.contains("Operation not permitted") && r.contains("rc=1"), "kill -0 a host process in the zone: {r}");
    assert!(alive(host.host_pid));
    // The zone's own processes it may signal.
    let r = zsh(&h, &uuid, "sleep 60 & kill -0 $!; echo rc=$?; kill $!");
    assert!(r.contains("rc=0"), "kill -0 a process of the zone itself: {r}");
    drop(host);

    // The zone still works: files, hostname, reboot, graceful stop.
    assert_eq!(zsh(&h, &uuid, "echo hi > /root/f && cat /root/f").trim(), "hi");
    h.vmadm(&["reboot", &uuid]).ok();
    h.wait_state(&uuid, "running", std::time::Duration::from_secs(30));
    h.vmadm(&["stop", &uuid]).ok();
    assert_eq!(h.get(&uuid)["state"], "stopped");
}

#[test]
fn ptrace_reaches_only_the_zones_own_processes() {
    let Some(h) = TestHost::new() else { return };
    let probes = h.dir.path().join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    if let Err(e) = build_probe("ptrace_attach", &probes) {
        skip(&format!("cannot build the ptrace probe: {e}"));
        return;
    }
    let img = h.install(busybox());
    let payload = |p: &std::path::Path| {
        json!({
            "brand": "lx", "image_uuid": img,
            "filesystems": [{"type": "lofs", "source": p, "target": "/probes", "options": ["ro"]}],
        })
    };
    let uuid = h.create_ok(&payload(&probes));
    let other = h.create_ok(&payload(&probes));
    let other_init = h.get(&other)["pid"].as_i64().unwrap();

    // The probe works: the zone's root may trace the zone's own processes.
    let r = zsh(&h, &uuid, "sleep 60 & /probes/ptrace_attach $!; kill $!");
    assert!(r.contains("attached"), "tracing a process of the zone itself: {r}");

    // Host processes, and the other zone's init, cannot be traced: their
    // pids name nothing in the zone (ESRCH; a pid that names a zone
    // process is not tried).
    let zone_pids: Vec<i64> = zsh(&h, &uuid, "ls /proc").split_whitespace().filter_map(|w| w.parse().ok()).collect();
    let daemon = i64::from(h.daemon.as_ref().unwrap().id());
    let mut tried = 0;
    for host_pid in [daemon, i64::from(std::process::id()), other_init] {
        if zone_pids.contains(&host_pid) {
            continue;
        }
        let r = zsh(&h, &uuid, &format!("/probes/ptrace_attach {host_pid}; echo rc=$?"));
        assert!(r.contains("refused: ESRCH") && r.contains("rc=1"), "ptrace host pid {host_pid}: {r}");
        tried += 1;
    }
    assert!(tried >= 2, "every host pid tried names a zone process: {zone_pids:?}");
    // A host process in the zone's pid namespace: the zone names it, and
    // the user namespace refuses (EPERM).
    let init = h.get(&uuid)["pid"].as_i64().unwrap();
    let host = HostProcessInZone::start(init);
    let r = zsh(&h, &uuid, &format!("/probes/ptrace_attach {}; echo rc=$?", host.zone_pid));
    assert!(r.contains("refused: EPERM") && r.contains("rc=1"), "ptrace a host process in the zone: {r}");
    assert_eq!(status_field(host.host_pid, "TracerPid:"), "0");
}

#[test]
fn limit_priv_sys_mount_lets_a_zone_mount() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "limit_priv": "default,sys_mount"}));
    let r = zsh(&h, &uuid, "mkdir -p /mnt; mount -t tmpfs none /mnt && grep ' /mnt ' /proc/mounts; echo rc=$?");
    assert!(r.contains("rc=0") && r.contains(" /mnt tmpfs "), "{r}");
    // Everything else stays refused.
    let r = zsh(&h, &uuid, "echo garbage > /tmp/x.ko; insmod /tmp/x.ko; echo rc=$?");
    assert!(r.contains("not permitted"), "insmod: {r}");
}
