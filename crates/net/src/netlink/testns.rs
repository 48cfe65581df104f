//! Throwaway network namespaces for the crate's tests, and the rule for
//! tests that cannot run here: they fail when `CI=true`, and elsewhere
//! skip with a printed reason.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{run_in_netns, Netlink};

/// A network namespace that lives as long as this value (nothing else
/// holds it), with its loopback up.
pub(crate) struct TestNs {
    fd: OwnedFd,
}

impl TestNs {
    /// Makes a new namespace: a short thread unshares its network
    /// namespace, keeps a descriptor of it, and ends.
    pub(crate) fn new() -> io::Result<Self> {
        let fd = std::thread::spawn(|| -> io::Result<OwnedFd> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("unshare(CLONE_NEWNET): {e}")))?;
            let fd = std::fs::File::open("/proc/thread-self/ns/net")?;
            let mut nl = Netlink::open()?;
            let lo = nl.link("lo")?.ok_or_else(|| io::Error::other("no lo in a new namespace"))?;
            nl.set_up(lo.index, true)?;
            Ok(fd.into())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))??;
        Ok(TestNs { fd })
    }

    /// The namespace's descriptor.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Runs `f` in this namespace (on a thread of its own).
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in_netns(self.fd(), f).expect("entering a test namespace")
    }

    /// An rtnetlink socket in this namespace.
    pub(crate) fn netlink(&self) -> Netlink {
        Netlink::open_in(self.fd()).expect("opening rtnetlink in a test namespace")
    }

    /// Brings link `name` of this namespace up, adds `addrs`, and returns
    /// its index.
    pub(crate) fn configure(&self, name: &str, addrs: &[&str]) -> u32 {
        let mut nl = self.netlink();
        let link = nl.link(name).unwrap().unwrap_or_else(|| panic!("{name} is in the namespace"));
        nl.set_up(link.index, true).unwrap();
        for a in addrs {
            nl.add_address(link.index, a.parse().unwrap()).unwrap();
        }
        link.index
    }

    /// A TCP listener on `ip` (any port) inside this namespace.
    pub(crate) fn listen(&self, ip: &str) -> TcpListener {
        let ip = ip.to_string();
        self.run(move || TcpListener::bind((ip.parse::<std::net::IpAddr>().unwrap(), 0))).unwrap()
    }

    /// Connects from this namespace to `to` within `timeout`.
    pub(crate) fn connect(&self, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.run(move || TcpStream::connect_timeout(&to, timeout))
    }
}

/// Wires `zone` to bridge `bridge` of `host` with a veth pair: the host side
/// is returned (index), the zone side is `eth0` with `mac` and `addrs`.
pub(crate) fn plug(host: &TestNs, bridge: u32, zone: &TestNs, mac: [u8; 6], addrs: &[&str]) -> (String, u32) {
    let mut nl = host.netlink();
    let port = unique_name("zv");
    let index = nl.add_veth(&port, "eth0", Some(zone.fd()), Some(mac), Some(1400)).unwrap();
    nl.set_master(index, Some(bridge)).unwrap();
    nl.set_up(index, true).unwrap();
    zone.configure("eth0", addrs);
    (port, index)
}

/// A name no other test of this process (or a parallel run of it) uses:
/// `prefix` + process id and a counter, in hex, within 15 bytes.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n:x}", std::process::id() & 0xffff);
    assert!(name.len() <= super::MAX_NAME_LEN, "{name} is too long for a link name");
    name
}

/// Fails under CI, otherwise prints why `test` is skipped.
pub(crate) fn skip(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} cannot run here: {why}");
    }
    eprintln!("skipping {test}: {why}");
}

/// A first namespace for `test`, or `None` (after [`skip`]) when this is
/// not root or namespaces cannot be made.
pub(crate) fn ns_or_skip(test: &str) -> Option<TestNs> {
    if !nix::unistd::geteuid().is_root() {
        skip(test, "needs root");
        return None;
    }
    match TestNs::new() {
        Ok(ns) => Some(ns),
        Err(e) => {
            skip(test, &format!("cannot make a network namespace: {e}"));
            None
        }
    }
}

/// Whether links of `kind` can be made here (tries one in `ns`); skips
/// `test` when not.
pub(crate) fn kind_or_skip(test: &str, ns: &TestNs, kind: &str) -> bool {
    let mut nl = ns.netlink();
    let name = unique_name("zvprobe");
    let made = match kind {
        "bridge" => nl.add_bridge(&name, None, false),
        "veth" => {
            let peer = unique_name("zvprobe");
            nl.add_veth(&name, &peer, None, None, None)
        }
        "ifb" => nl.add_ifb(&name),
        other => panic!("no probe for link kind {other}"),
    };
    match made {
        Ok(index) => {
            nl.delete_link(index).unwrap();
            true
        }
        Err(e) => {
            skip(test, &format!("this kernel cannot make {kind} links: {e}"));
            false
        }
    }
}
