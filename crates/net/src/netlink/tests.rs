//! Tests against the real kernel, each in namespaces of its own.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::testns::{kind_or_skip, ns_or_skip, plug, unique_name, TestNs};
use super::*;

/// Whether a TCP connection from `from` reaches a listener of `to` on `ip`
/// (and carries a few bytes both ways).
fn reaches(from: &TestNs, to: &TestNs, ip: &str, timeout: Duration) -> bool {
    let listener = to.listen(ip);
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    match from.connect(addr, timeout) {
        Ok(mut s) => {
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            server.join().unwrap();
            &buf == b"ping"
        }
        Err(_) => {
            // Unblock the server's accept so its thread ends.
            drop(to.connect(addr, timeout));
            let _ = server.join();
            false
        }
    }
}

#[test]
fn bridge_veth_addresses_and_traffic() {
    let test = "bridge_veth_addresses_and_traffic";
    let Some(host) = ns_or_skip(test) else { return };
    if !kind_or_skip(test, &host, "bridge") || !kind_or_skip(test, &host, "veth") {
        return;
    }
    let (a, b) = (TestNs::new().unwrap(), TestNs::new().unwrap());
    let mut nl = host.netlink();
    let br = unique_name("zvbr");
    let bridge = nl.add_bridge(&br, Some(1400), false).unwrap();
    nl.set_up(bridge, true).unwrap();
    let mac_a = [0x02, 0x08, 0x20, 0, 0, 0xa];
    let (port_a, index_a) = plug(&host, bridge, &a, mac_a, &["10.9.0.2/24", "fd00:9::2/64"]);
    let (_, index_b) = plug(&host, bridge, &b, [0x02, 0x08, 0x20, 0, 0, 0xb], &["10.9.0.3/24", "fd00:9::3/64"]);

    let info = nl.link(&port_a).unwrap().unwrap();
    assert_eq!(info.index, index_a);
    assert_eq!(info.kind.as_deref(), Some("veth"));
    assert_eq!(info.master, Some(bridge));
    assert_eq!(info.mtu, 1400);
    assert!(info.up);
    let br_info = nl.link(&br).unwrap().unwrap();
    assert_eq!(br_info.kind.as_deref(), Some("bridge"));
    assert!(nl.links().unwrap().iter().any(|l| l.index == index_b));
    assert_eq!(nl.link("zvnosuchlink").unwrap(), None);

    let mut nla = a.netlink();
    let eth0 = nla.link("eth0").unwrap().unwrap();
    assert_eq!(eth0.mac, Some(mac_a));
    assert_eq!(eth0.mtu, 1400);
    let addrs = nla.addresses(Some(eth0.index)).unwrap();
    for want in ["10.9.0.2/24", "fd00:9::2/64"] {
        assert!(addrs.contains(&(eth0.index, want.parse().unwrap())), "{want} in {addrs:?}");
    }
    // Adding again is fine.
    nla.add_address(eth0.index, "10.9.0.2/24".parse().unwrap()).unwrap();

    // IPv4 and, without waiting for DAD, IPv6.
    let t = Duration::from_secs(3);
    assert!(reaches(&a, &b, "10.9.0.3", t));
    assert!(reaches(&b, &a, "fd00:9::2", t));

    // Removing an address makes it unreachable; removing it again is fine.
    let gone = "10.9.0.2/24".parse().unwrap();
    nla.del_address(eth0.index, gone).unwrap();
    nla.del_address(eth0.index, gone).unwrap();
    assert!(!nla.addresses(Some(eth0.index)).unwrap().contains(&(eth0.index, gone)));

    // Deleting the host side takes the zone side with it; twice is fine.
    nl.delete_link(index_a).unwrap();
    nl.delete_link(index_a).unwrap();
    assert_eq!(nl.link(&port_a).unwrap(), None);
    assert_eq!(nla.link("eth0").unwrap(), None);
    nl.delete_link(bridge).unwrap();
    assert_eq!(nl.link(&br).unwrap(), None);
}

#[test]
fn routes_in_the_main_table() {
    let test = "routes_in_the_main_table";
    let Some(ns) = ns_or_skip(test) else { return };
    if !kind_or_skip(test, &ns, "veth") {
        return;
    }
    let mut nl = ns.netlink();
    assert_eq!(nl.default_route_link(true).unwrap(), None);
    // A veth pair stands in for the uplink (this kernel has no dummy links).
    let up = nl.add_veth("uplink0", "uplink1", None, None, None).unwrap();
    let far = nl.link("uplink1").unwrap().unwrap().index;
    nl.set_up(far, true).unwrap();
    nl.set_up(up, true).unwrap();
    nl.add_address(up, "10.8.0.1/24".parse().unwrap()).unwrap();
    nl.add_address(up, "fd00:8::1/64".parse().unwrap()).unwrap();

    let routes = [
        Route {
            dst: "10.7.0.0/16".parse().unwrap(),
            gateway: Some("10.8.0.254".parse().unwrap()),
            oif: Some(up),
            metric: None,
        },
        Route {
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("10.8.0.254".parse().unwrap()),
            oif: Some(up),
            metric: Some(100),
        },
        Route { dst: "10.6.0.0/24".parse().unwrap(), gateway: None, oif: Some(up), metric: Some(5) },
        Route {
            dst: "::/0".parse().unwrap(),
            gateway: Some("fd00:8::fe".parse().unwrap()),
            oif: Some(up),
            metric: Some(100),
        },
    ];
    for r in &routes {
        nl.add_route(r).unwrap();
        nl.add_route(r).unwrap();
    }
    let v4 = nl.routes(true).unwrap();
    let v6 = nl.routes(false).unwrap();
    for r in &routes {
        let list = if r.dst.addr().is_ipv4() { &v4 } else { &v6 };
        let found = list.iter().find(|x| x.dst == r.dst && x.gateway == r.gateway && x.oif == r.oif);
        let found = found.unwrap_or_else(|| panic!("{r} in {list:?}"));
        if r.metric.is_some() {
            assert_eq!(found.metric, r.metric);
        }
    }
    // The kernel's own route for the address is listed too.
    assert!(v4.iter().any(|x| x.dst == "10.8.0.0/24".parse().unwrap() && x.gateway.is_none()));
    assert_eq!(nl.default_route_link(true).unwrap(), Some(up));
    assert_eq!(nl.default_route_link(false).unwrap(), Some(up));

    for r in &routes {
        nl.del_route(r).unwrap();
        nl.del_route(r).unwrap();
    }
    let v4 = nl.routes(true).unwrap();
    assert!(!v4.iter().any(|x| x.dst.prefix_len() == 0 || x.dst == routes[0].dst), "{v4:?}");
    assert_eq!(nl.default_route_link(true).unwrap(), None);
    assert_eq!(nl.default_route_link(false).unwrap(), None);

    // A gateway that is not on any link is refused, and the error says so.
    let bad = Route {
        dst: "10.5.0.0/16".parse().unwrap(),
        gateway: Some("192.0.2.1".parse().unwrap()),
        oif: None,
        metric: None,
    };
    let e = nl.add_route(&bad).unwrap_err();
    assert!(e.to_string().starts_with("adding route 10.5.0.0/16 via 192.0.2.1: "), "{e}");
}

#[test]
fn vlan_filtering_separates_ports() {
    let test = "vlan_filtering_separates_ports";
    let Some(host) = ns_or_skip(test) else { return };
    if !kind_or_skip(test, &host, "bridge") || !kind_or_skip(test, &host, "veth") {
        return;
    }
    let zones: Vec<TestNs> = (0..3).map(|_| TestNs::new().unwrap()).collect();
    let mut nl = host.netlink();
    let name = unique_name("zvbr");
    let bridge = match nl.add_bridge(&name, None, true) {
        Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
            // Kernels without CONFIG_BRIDGE_VLAN_FILTERING: the refusal is
            // clear and leaves nothing behind; there is nothing more to test.
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
            assert!(e.to_string().starts_with(&format!("creating bridge {name} with VLAN filtering: ")), "{e}");
            assert_eq!(nl.link(&name).unwrap(), None);
            // VLAN requests to a plain bridge's port are refused the same way.
            let plain = nl.add_bridge(&name, None, false).unwrap();
            let zone = &zones[0];
            let (port_name, port) = plug(&host, plain, zone, [2, 8, 0x20, 0, 1, 0], &["10.9.1.2/24"]);
            assert_eq!(nl.bridge_vlans(port).unwrap(), vec![]);
            let e = nl.bridge_vlan_add(port, 10, true).unwrap_err();
            assert!(e.to_string().starts_with(&format!("adding VLAN 10 to bridge port {port_name}: ")), "{e}");
            eprintln!("{test}: this kernel has no bridge VLAN filtering; only its refusal was checked");
            return;
        }
        made => made.unwrap(),
    };
    nl.set_up(bridge, true).unwrap();
    // Zones 0 and 2 in VLAN 10, zone 1 in VLAN 20, all in one subnet.
    let vids = [10u16, 20, 10];
    for (i, (zone, vid)) in zones.iter().zip(vids).enumerate() {
        let addr = format!("10.9.1.{}/24", i + 2);
        let (_, port) = plug(&host, bridge, zone, [2, 8, 0x20, 0, 1, i as u8], &[&addr]);
        assert_eq!(nl.bridge_vlans(port).unwrap(), vec![BridgeVlan { vid: 1, pvid: true, untagged: true }]);
        nl.bridge_vlan_add(port, vid, true).unwrap();
        nl.bridge_vlan_add(port, vid, true).unwrap();
        nl.bridge_vlan_del(port, 1).unwrap();
        nl.bridge_vlan_del(port, 1).unwrap();
        assert_eq!(nl.bridge_vlans(port).unwrap(), vec![BridgeVlan { vid, pvid: true, untagged: true }]);
    }
    let t = Duration::from_secs(3);
    assert!(reaches(&zones[0], &zones[2], "10.9.1.4", t), "same VLAN");
    assert!(!reaches(&zones[0], &zones[1], "10.9.1.3", Duration::from_millis(800)), "VLAN 10 to 20");
    assert!(!reaches(&zones[1], &zones[2], "10.9.1.4", Duration::from_millis(800)), "VLAN 20 to 10");

    // A tagged membership on the bridge itself ("self") is allowed too.
    nl.bridge_vlan_add(bridge, 10, false).unwrap();
    assert!(nl.bridge_vlans(bridge).unwrap().iter().any(|v| v.vid == 10 && !v.pvid && !v.untagged));
}

#[test]
fn errors_name_the_operation_and_errno() {
    let test = "errors_name_the_operation_and_errno";
    let Some(ns) = ns_or_skip(test) else { return };
    if !kind_or_skip(test, &ns, "bridge") || !kind_or_skip(test, &ns, "veth") {
        return;
    }
    let mut nl = ns.netlink();
    let br = nl.add_bridge("zvbr0", None, false).unwrap();
    let e = nl.add_bridge("zvbr0", None, false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(e.to_string(), "creating bridge zvbr0: File exists");
    assert_eq!(errno(&e), Some(libc::EEXIST));

    let d = nl.add_veth("zv12ab", "zv12ab-peer", None, None, None).unwrap();
    // A link cannot be its own bridge's... bridge: the kernel explains.
    let e = nl.set_master(br, Some(br)).unwrap_err();
    assert!(e.to_string().starts_with("adding zvbr0 to bridge zvbr0: "), "{e}");
    let e = nl.set_master(d, Some(999_999)).unwrap_err();
    assert!(e.to_string().starts_with("adding zv12ab to bridge link #999999: "), "{e}");
    let e = nl.link("much-too-long-name").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = nl.set_mtu(d, 10).unwrap_err();
    assert!(e.to_string().starts_with("setting the MTU of zv12ab to 10: Invalid argument"), "{e}");
    nl.set_mac(d, [2, 0, 0, 0, 0, 1]).unwrap();
    assert_eq!(nl.link("zv12ab").unwrap().unwrap().mac, Some([2, 0, 0, 0, 0, 1]));
    nl.set_master(d, Some(br)).unwrap();
    assert_eq!(nl.link("zv12ab").unwrap().unwrap().master, Some(br));
    nl.set_master(d, None).unwrap();
    assert_eq!(nl.link("zv12ab").unwrap().unwrap().master, None);
}

#[test]
fn sysctl_and_open_in_belong_to_the_namespace() {
    let test = "sysctl_and_open_in_belong_to_the_namespace";
    let Some(ns) = ns_or_skip(test) else { return };
    let forwarding = || std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string();
    let host = forwarding();
    // A new namespace starts with the host's IPv4 settings (the kernel's
    // default, devconf_inherit_init_net=0): the write flips its own.
    let (before, inside) = ns.run(|| {
        let before = forwarding();
        sysctl_write("net/ipv4/ip_forward", if before == "1" { "0" } else { "1" }).unwrap();
        (before, forwarding())
    });
    assert_ne!(before, inside, "the namespace's forwarding did not change");
    assert_eq!(forwarding(), host, "the write reached the host's forwarding");
    let e = sysctl_write("net/../../etc/passwd", "x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = sysctl_write("net/ipv4/no_such_knob", "1").unwrap_err();
    assert!(e.to_string().starts_with("setting sysctl net/ipv4/no_such_knob to 1: "), "{e}");

    // A socket opened for the namespace sees only its links.
    let mut nl = Netlink::open_in(ns.fd()).unwrap();
    let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, vec!["lo".to_string()]);
}
