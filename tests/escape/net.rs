//! The network as the attacker's tool, from root in a zone:
//!
//! - the host's own services on a managed network's bridge: only DHCP, DNS
//!   and ICMP answer (a listener on the host's address does not);
//! - the zone sees only its own links, and cannot hand its NIC to another
//!   namespace or make links that reach the host's;
//! - ARP that claims the gateway's address (to take another instance's
//!   traffic) and frames from a forged MAC never reach the other instances;
//! - VLAN-tagged frames (to hop onto another VLAN) are dropped.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn zexec(h: &TestHost, uuid: &str, cmd: &str) -> Run {
    h.cli("zlogin", &[uuid, cmd], None)
}

fn on_default(h: &TestHost, img: &str, alias: &str) -> (String, String) {
    let uuid = h.create_ok(&json!({
        "brand": "lx", "alias": alias, "image_uuid": img, "max_physical_memory": 128,
        "nics": [{"ips": ["dhcp"], "primary": true}],
    }));
    let addr = zexec(h, &uuid, "ip -o -4 addr show eth0").ok().split_whitespace().nth(3).unwrap().to_string();
    (uuid, addr.split('/').next().unwrap().to_string())
}

fn gateway(h: &TestHost) -> String {
    let tags = h.cli("nictagadm", &["list", "-j"], None).json();
    let d = tags.as_array().unwrap().iter().find(|t| t["name"] == "default").unwrap().clone();
    d["network"]["ipv4"].as_str().unwrap().split('/').next().unwrap().to_string()
}

#[test]
fn a_zone_reaches_only_dhcp_dns_and_icmp_of_the_host() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let (z, _) = on_default(&h, &img, "z");
    let gw = gateway(&h);
    // A service of the host's, listening on every address of its network namespace.
    let ns = std::fs::File::open(format!("/run/netns/{}", h.netns)).unwrap();
    let listener = std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind(("0.0.0.0", 2222)).unwrap()
    })
    .join()
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let r = zexec(&h, &z, &format!("echo hi | nc -w 2 {gw} 2222; echo rc=$?"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(listener.accept().is_err(), "the zone reached a host service on the bridge: {}", r.stdout);
    // What it may reach: ICMP and the network's DNS.
    assert_eq!(zexec(&h, &z, &format!("ping -c 1 -W 2 {gw}")).code, 0, "ICMP to the gateway");
    let r = zexec(&h, &z, &format!("nslookup localhost {gw}"));
    assert!(r.stdout.contains("Server:"), "DNS to the gateway: {} {}", r.stdout, r.stderr);
}

#[test]
fn a_zone_sees_and_moves_only_its_own_links() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let (z, _) = on_default(&h, &img, "z");
    let links = zexec(&h, &z, "ip -o link show").ok().to_string();
    let names: Vec<&str> =
        links.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap()).collect();
    assert_eq!(names, ["lo", "eth0"], "{links}");
    // Its NIC cannot be handed to the host's namespace (pid 1 of the
    // host is not in its pid namespace; /proc/1 is its own init).
    let host_ns = zexec(&h, &z, "ip link set eth0 netns /proc/1/ns/net 2>&1; ip -o link show eth0");
    assert!(host_ns.stdout.contains("eth0"), "{}", host_ns.stdout);
    // A veth it makes stays in its namespace: no new link on the host.
    let before = std::process::Command::new("ip").args(["-n", &h.netns, "-o", "link"]).output().unwrap().stdout;
    let _ = zexec(&h, &z, "ip link add evil0 type veth peer name evil1");
    let after = std::process::Command::new("ip").args(["-n", &h.netns, "-o", "link"]).output().unwrap().stdout;
    assert_eq!(before, after, "a zone's link appeared on the host");
}

#[test]
fn forged_arp_macs_and_vlan_tags_never_reach_another_instance() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let (attacker, _) = on_default(&h, &img, "attacker");
    let (victim, _) = on_default(&h, &img, "victim");
    let gw = gateway(&h);
    // The victim learns the gateway's real MAC.
    zexec(&h, &victim, &format!("ping -c 1 -W 2 {gw}")).ok();
    let real = zexec(&h, &victim, &format!("ip neigh show {gw}")).ok().to_string();
    // Unsolicited ARP claiming the gateway's address, from the attacker's own MAC.
    let _ = zexec(&h, &attacker, &format!("arping -U -c 3 -I eth0 -s {gw} {gw}"));
    let after = zexec(&h, &victim, &format!("ip neigh show {gw}")).ok().to_string();
    let mac = |s: &str| s.split_whitespace().skip_while(|w| *w != "lladdr").nth(1).map(str::to_string);
    assert_eq!(mac(&after), mac(&real), "the gateway's MAC changed: {real} -> {after}");
    // A forged source MAC: the victim never sees its packets.
    zexec(&h, &attacker, "ip link set eth0 down; ip link set eth0 address 02:66:66:66:66:66; ip link set eth0 up").ok();
    let victim_ip = zexec(&h, &victim, "ip -o -4 addr show eth0").ok().split_whitespace().nth(3).unwrap().to_string();
    let victim_ip = victim_ip.split('/').next().unwrap();
    assert_ne!(zexec(&h, &attacker, &format!("ping -c 1 -W 2 {victim_ip}")).code, 0, "a forged MAC got through");
    // 802.1Q frames (to hop VLANs) from a VLAN link the zone makes.
    zexec(&h, &attacker, "ip link set eth0 down; ip link set eth0 address $(cat /sys/class/net/eth0/addr_assign_type >/dev/null; echo 02:66:66:66:66:66); true").ok();
    let vlan = zexec(&h, &attacker, "ip link add link eth0 name eth0.7 type vlan id 7 2>&1");
    if vlan.code == 0 {
        zexec(&h, &attacker, "ip link set eth0 up; ip addr add 192.0.2.9/24 dev eth0.7; ip link set eth0.7 up").ok();
        zexec(&h, &victim, "ip link add link eth0 name eth0.7 type vlan id 7 && ip addr add 192.0.2.10/24 dev eth0.7 && ip link set eth0.7 up").ok();
        assert_ne!(zexec(&h, &attacker, "ping -c 1 -W 2 192.0.2.10").code, 0, "tagged frames crossed the bridge");
    } else {
        // This kernel has no 802.1Q links: nothing tagged can be made.
        assert!(vlan.stdout.contains("not supported") || vlan.stdout.contains("Unknown"), "{}", vlan.stdout);
    }
}
