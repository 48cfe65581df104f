//! Caps on a real bridge port, between two namespaces, measured with TCP.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::netlink::testns::{kind_or_skip, ns_or_skip, plug, skip, unique_name, TestNs};

/// A host namespace with a bridge, and two instances on it: `a` (whose
/// port gets the caps) at 10.9.2.2 and `b` at 10.9.2.3.
struct Lan {
    host: TestNs,
    a: TestNs,
    b: TestNs,
    port: String,
}

fn lan(test: &str) -> Option<Lan> {
    let host = ns_or_skip(test)?;
    if !kind_or_skip(test, &host, "bridge") || !kind_or_skip(test, &host, "veth") || !kind_or_skip(test, &host, "ifb") {
        return None;
    }
    if !std::path::Path::new(tc_path()).exists() {
        skip(test, "no tc");
        return None;
    }
    let (a, b) = (TestNs::new().unwrap(), TestNs::new().unwrap());
    let mut nl = host.netlink();
    let bridge = nl.add_bridge(&unique_name("zvbr"), None, false).unwrap();
    nl.set_up(bridge, true).unwrap();
    let (port, _) = plug(&host, bridge, &a, [2, 8, 0x20, 0, 2, 2], &["10.9.2.2/24"]);
    plug(&host, bridge, &b, [2, 8, 0x20, 0, 2, 3], &["10.9.2.3/24"]);
    Some(Lan { host, a, b, port })
}

impl Lan {
    fn set(&self, ingress: Option<u32>, egress: Option<u32>) {
        let port = self.port.clone();
        self.host.run(move || set_caps(&port, Caps { ingress_mbps: ingress, egress_mbps: egress })).unwrap();
    }

    /// What `tc qdisc show dev <dev>` prints in the host namespace.
    fn qdiscs(&self, dev: &str) -> String {
        let dev = dev.to_string();
        let out = self.host.run(move || Command::new(tc_path()).args(["qdisc", "show", "dev", &dev]).output()).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_link(&self, name: &str) -> bool {
        self.host.netlink().link(name).unwrap().is_some()
    }

    /// TCP throughput in Mbit/s from instance a to b (`from_a`) or back,
    /// measured at the receiver after `warmup`, over `span`.
    fn throughput(&self, from_a: bool, warmup: Duration, span: Duration) -> f64 {
        let (from, to, ip) = if from_a { (&self.a, &self.b, "10.9.2.3") } else { (&self.b, &self.a, "10.9.2.2") };
        let listener = to.listen(ip);
        let addr: SocketAddr = listener.local_addr().unwrap();
        let receiver = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            let mut start = None;
            let mut mark = None;
            loop {
                let n = s.read(&mut buf).unwrap();
                let now = Instant::now();
                if n == 0 {
                    let (t0, b0): (Instant, u64) = mark.expect("the transfer outlasted its warm-up");
                    return (total - b0) as f64 * 8.0 / now.duration_since(t0).as_secs_f64() / 1e6;
                }
                total += n as u64;
                let first = *start.get_or_insert(now);
                if mark.is_none() && now.duration_since(first) >= warmup {
                    mark = Some((now, total));
                }
            }
        });
        let mut s = from.connect(addr, Duration::from_secs(3)).unwrap();
        let chunk = vec![0x5au8; 128 * 1024];
        let begin = Instant::now();
        while begin.elapsed() < warmup + span {
            s.write_all(&chunk).unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
        receiver.join().unwrap()
    }
}

fn within(measured: f64, cap: u32, tolerance: f64) -> bool {
    (measured - f64::from(cap)).abs() <= f64::from(cap) * tolerance
}

#[test]
fn ifb_names_follow_the_port() {
    assert_eq!(ifb_name("zv0123456789a0").unwrap(), "zb0123456789a0");
    assert_eq!(ifb_name("eth0").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(ifb_name("zv").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // Enough burst for a GSO packet, and about 4 ms at high rates.
    assert_eq!(burst_bytes(1), 32 * 1024);
    assert_eq!(burst_bytes(1000), 500_000);
}

#[test]
fn caps_replace_and_remove_cleanly() {
    let test = "caps_replace_and_remove_cleanly";
    let Some(lan) = lan(test) else { return };
    let ifb = ifb_name(&lan.port).unwrap();

    lan.set(Some(10), Some(20));
    lan.set(Some(10), Some(20));
    assert!(lan.qdiscs(&lan.port).contains("tbf 1: root"), "{}", lan.qdiscs(&lan.port));
    assert!(lan.qdiscs(&lan.port).contains("rate 10Mbit"), "{}", lan.qdiscs(&lan.port));
    assert!(lan.qdiscs(&lan.port).contains("ingress ffff:"), "{}", lan.qdiscs(&lan.port));
    assert!(lan.qdiscs(&ifb).contains("rate 20Mbit"), "{}", lan.qdiscs(&ifb));

    // A new rate replaces the old one.
    lan.set(Some(30), Some(40));
    assert!(lan.qdiscs(&lan.port).contains("rate 30Mbit"), "{}", lan.qdiscs(&lan.port));
    assert!(lan.qdiscs(&ifb).contains("rate 40Mbit"), "{}", lan.qdiscs(&ifb));

    // Each direction goes on its own.
    lan.set(None, Some(40));
    assert!(!lan.qdiscs(&lan.port).contains("tbf"), "{}", lan.qdiscs(&lan.port));
    assert!(lan.qdiscs(&lan.port).contains("ingress ffff:"));
    lan.set(None, None);
    assert!(!lan.qdiscs(&lan.port).contains("ingress"), "{}", lan.qdiscs(&lan.port));
    assert!(!lan.has_link(&ifb));
    lan.set(None, None);

    // clear takes everything, and can be repeated.
    lan.set(Some(5), Some(5));
    let port = lan.port.clone();
    lan.host.run(|| clear(&port)).unwrap();
    lan.host.run(|| clear(&port)).unwrap();
    let q = lan.qdiscs(&lan.port);
    assert!(!q.contains("tbf") && !q.contains("ingress"), "{q}");
    assert!(!lan.has_link(&ifb));

    // Errors say which port and why.
    let e = lan.host.run(|| set_caps("zvnosuch0", Caps { ingress_mbps: Some(1), egress_mbps: None })).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(e.to_string(), "setting bandwidth caps on zvnosuch0: no such link");
    let e = lan.host.run(|| set_caps("lo", Caps { ingress_mbps: None, egress_mbps: Some(1) })).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
}

#[test]
fn caps_hold_tcp_within_ten_percent_both_ways() {
    let test = "caps_hold_tcp_within_ten_percent_both_ways";
    let Some(lan) = lan(test) else { return };
    let (warmup, span) = (Duration::from_millis(300), Duration::from_millis(900));
    for cap in [20, 100] {
        lan.set(Some(cap), Some(cap));
        let to_instance = lan.throughput(false, warmup, span);
        let from_instance = lan.throughput(true, warmup, span);
        eprintln!("cap {cap} Mbit/s: to the instance {to_instance:.1}, from it {from_instance:.1}");
        assert!(within(to_instance, cap, 0.10), "to the instance at {cap} Mbit/s: {to_instance:.1}");
        assert!(within(from_instance, cap, 0.10), "from the instance at {cap} Mbit/s: {from_instance:.1}");
    }
    // Without caps, well past the last one in both directions.
    lan.set(None, None);
    let (warmup, span) = (Duration::from_millis(100), Duration::from_millis(400));
    let to_instance = lan.throughput(false, warmup, span);
    let from_instance = lan.throughput(true, warmup, span);
    eprintln!("uncapped: to the instance {to_instance:.1}, from it {from_instance:.1}");
    assert!(to_instance > 200.0 && from_instance > 200.0, "uncapped: {to_instance:.1} / {from_instance:.1}");
}

/// The accuracy table for the module doc: `SHAPE_RATES="1 10 100 1000"
/// cargo test -p zonevisor-net shaping_sweep -- --ignored --nocapture`.
#[test]
#[ignore = "a slow measurement, run by hand"]
fn shaping_sweep() {
    let Some(lan) = lan("shaping_sweep") else { return };
    let rates = std::env::var("SHAPE_RATES").unwrap_or_else(|_| "1 10 20 100 500 1000".into());
    for cap in rates.split_whitespace().map(|r| r.parse::<u32>().unwrap()) {
        lan.set(Some(cap), Some(cap));
        let warmup = Duration::from_millis(if cap < 10 { 1500 } else { 500 });
        let span = Duration::from_secs(if cap < 10 { 4 } else { 2 });
        let to = lan.throughput(false, warmup, span);
        let from = lan.throughput(true, warmup, span);
        let pct = |m: f64| (m - f64::from(cap)) / f64::from(cap) * 100.0;
        eprintln!(
            "cap {cap:5} Mbit/s: to the instance {to:8.1} ({:+.1}%), from it {from:8.1} ({:+.1}%)",
            pct(to),
            pct(from)
        );
    }
}
