//! dnsmasq on a real bridge, in network namespaces the tests make (never
//! the host's own network): DNS answers, DHCP for reserved MACs only
//! (busybox's udhcpc as the client), adoption, restart, stop. Also the
//! namespace fixture the DHCP client's tests share.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::dns::{self, QType};
use super::{Dnsmasq, Error, NetworkConfig, Reservation};

/// Whether the host can run these tests (root, `ip`, dnsmasq); under `CI`
/// it must.
pub(crate) fn can_run() -> bool {
    let why = if !nix::unistd::geteuid().is_root() {
        Some("not running as root")
    } else if Command::new("ip").arg("-V").output().is_err() {
        Some("iproute2 (ip) is not installed")
    } else if super::supervisor::find_program("dnsmasq").is_none() {
        Some("dnsmasq is not installed")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(std::env::var_os("CI").is_none(), "{why} (CI is set)");
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// A network namespace of the test's own, deleted when dropped.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("zvt{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n <this> <args>`, which must succeed.
    pub(crate) fn ip(&self, args: &str) {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend(args.split_whitespace());
        run(&argv);
    }

    /// Runs `f` on a thread inside this namespace (only that thread moves;
    /// what it spawns starts there too).
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bridge `zvbr0` with 10.77.0.1/24 and fd00:77::1/64 in `ns`, and the
/// network's config with its state in `dir`.
pub(crate) fn bridge(ns: &Netns, dir: &Path) -> NetworkConfig {
    ns.ip("link add zvbr0 type bridge");
    ns.ip("link set zvbr0 up");
    ns.ip("addr add 10.77.0.1/24 dev zvbr0");
    ns.ip("addr add fd00:77::1/64 dev zvbr0 nodad");
    NetworkConfig {
        name: "test".into(),
        bridge: "zvbr0".into(),
        ipv4: Some("10.77.0.1/24".parse().unwrap()),
        ipv6: Some("fd00:77::1/64".parse().unwrap()),
        domain: Some("zv.test".into()),
        upstream: vec![],
        dir: dir.join("net"),
    }
}

/// A temporary directory dnsmasq's user can get through.
pub(crate) fn state_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    d
}

/// A veth from the bridge in `ns` (port `port`) to `eth0` (with `mac`) in
/// a new namespace.
pub(crate) fn client(ns: &Netns, port: &str, mac: &str) -> Netns {
    let c = Netns::new();
    run(&["ip", "-n", &ns.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &c.name]);
    ns.ip(&format!("link set {port} master zvbr0 up"));
    c.ip(&format!("link set eth0 address {mac} up"));
    c
}

fn lookup(name: &str, qtype: QType) -> Vec<IpAddr> {
    let a = dns::query(SocketAddr::from(([10, 77, 0, 1], 53)), name, qtype, Duration::from_secs(3)).unwrap();
    a.addrs
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(") ").unwrap().1.starts_with('Z'))
}

#[test]
fn answers_names_is_adopted_restarted_and_stopped() {
    if !can_run() {
        return;
    }
    let root = state_root();
    let ns = Netns::new();
    let cfg = bridge(&ns, root.path());
    ns.run(|| {
        let d = Dnsmasq::start_or_adopt(&cfg).unwrap();
        assert!(d.is_running());
        let names = [("10.77.0.5".parse().unwrap(), "web".to_string()), ("fd00:77::5".parse().unwrap(), "web".into())];
        d.update(&[], &names).unwrap();
        assert_eq!(lookup("web", QType::A), ["10.77.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup("web.zv.test", QType::A), ["10.77.0.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(lookup("web.zv.test", QType::Aaaa), ["fd00:77::5".parse::<IpAddr>().unwrap()]);
        assert!(lookup("db.zv.test", QType::A).is_empty());

        // What dnsmasq's user may read, and what it may not.
        let meta = |f: &str| std::fs::metadata(cfg.dir.join(f)).unwrap();
        assert_eq!((meta("dnsmasq.conf").uid(), meta("dnsmasq.conf").mode() & 0o777), (0, 0o600));
        assert_eq!(meta("names").mode() & 0o777, 0o400);
        assert_ne!(meta("names").uid(), 0);
        assert_eq!((meta(".").uid(), meta(".").mode() & 0o777), (0, 0o711));
        let pid = d.pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(cmdline.windows(7).any(|w| w == b"--user="), "dropped root");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_owned();
        assert!(!uid.split_whitespace().skip(1).any(|u| u == "0"), "{uid}");

        // The supervisor goes away without stopping it: the next one adopts it.
        drop(d);
        let d = Dnsmasq::start_or_adopt(&cfg).unwrap();
        assert_eq!(d.pid(), pid, "adopted");
        assert_eq!(lookup("web", QType::A), ["10.77.0.5".parse::<IpAddr>().unwrap()]);

        // Names change: SIGHUP, same process; served once update returns.
        d.update(&[], &[("10.77.0.6".parse().unwrap(), "db".into())]).unwrap();
        assert_eq!(lookup("db", QType::A), ["10.77.0.6".parse::<IpAddr>().unwrap()]);
        assert!(lookup("web", QType::A).is_empty());
        assert_eq!(d.pid(), pid);

        // The conf changes: a new dnsmasq, the old one gone.
        let changed = NetworkConfig { domain: Some("zv2.test".into()), ..cfg.clone() };
        drop(d);
        let d = Dnsmasq::start_or_adopt(&changed).unwrap();
        assert_ne!(d.pid(), pid, "restarted");
        assert!(!alive(pid));
        assert_eq!(lookup("db.zv2.test", QType::A), ["10.77.0.6".parse::<IpAddr>().unwrap()]);
        assert!(std::fs::read_to_string(cfg.dir.join("dnsmasq.conf")).unwrap().contains("domain=zv2.test"));

        // A dnsmasq killed behind our back is replaced.
        let pid = d.pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while d.is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!d.is_running());
        assert!(matches!(d.update(&[], &[]), Err(Error::Process { .. })));
        let d = Dnsmasq::start_or_adopt(&changed).unwrap();
        assert_ne!(d.pid(), pid);

        let pid = d.pid();
        d.stop().unwrap();
        assert!(!alive(pid));
        assert!(!cfg.dir.join("dnsmasq.pid").exists());
        assert!(
            super::supervisor::find_ours(&super::conf::Paths::new(&cfg.dir)).is_empty(),
            "no dnsmasq left with our conf"
        );
    });
}

#[test]
fn start_up_errors_are_dnsmasqs_own() {
    if !can_run() {
        return;
    }
    let root = state_root();
    let ns = Netns::new();
    let cfg = bridge(&ns, root.path());
    let other = NetworkConfig { dir: root.path().join("other"), ..cfg.clone() };
    ns.run(|| {
        let d = Dnsmasq::start_or_adopt(&cfg).unwrap();
        let e = Dnsmasq::start_or_adopt(&other).unwrap_err().to_string();
        assert!(e.contains("Address already in use"), "{e}");
        d.stop().unwrap();
    });
}

#[test]
fn refuses_a_directory_its_user_cannot_reach() {
    if !can_run() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = NetworkConfig {
        name: "test".into(),
        bridge: "zvbr0".into(),
        ipv4: Some("10.77.0.1/24".parse().unwrap()),
        ipv6: None,
        domain: None,
        upstream: vec![],
        dir: root.path().join("net"),
    };
    match Dnsmasq::start_or_adopt(&cfg) {
        Err(Error::Unreachable { path, .. }) => assert_eq!(path, root.path()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dhcp_for_reserved_macs_only() {
    if !can_run() {
        return;
    }
    let root = state_root();
    let ns = Netns::new();
    let cfg = bridge(&ns, root.path());
    let known = client(&ns, "zvport0", "02:00:00:77:00:05");
    let d = ns.run(|| Dnsmasq::start_or_adopt(&cfg).unwrap());
    let r = Reservation {
        mac: [2, 0, 0, 0x77, 0, 5],
        ipv4: Some("10.77.0.5".parse().unwrap()),
        hostname: Some("web".into()),
    };
    ns.run(|| d.update(&[r], &[])).unwrap();

    let script = root.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $subnet $router $dns $domain\" > \"$OUT\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let udhcpc = |ns: &Netns, out: &Path| {
        Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "3", "-T", "1",
                "-s",
            ])
            .arg(&script)
            .env("OUT", out)
            .output()
            .unwrap()
    };
    let out = root.path().join("known");
    let r = udhcpc(&known, &out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "10.77.0.5 255.255.255.0 10.77.0.1 10.77.0.1 zv.test");
    drop(known);

    let unknown = client(&ns, "zvport1", "02:00:00:77:00:99");
    let out = root.path().join("unknown");
    let r = udhcpc(&unknown, &out);
    assert!(!r.status.success(), "an unknown MAC got a lease");
    assert!(!out.exists());
    let log = std::fs::read_to_string(cfg.dir.join("dnsmasq.log")).unwrap();
    assert!(log.contains("DHCPACK(zvbr0) 10.77.0.5 02:00:00:77:00:05 web"), "{log}");
    d.stop().unwrap();
}
