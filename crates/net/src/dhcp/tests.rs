//! The client's leases from decoded replies, and the client against the
//! network's own dnsmasq across a veth pair between two namespaces the
//! tests make.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet;
use super::packet::tests::{reply, DNSMASQ_ACK};
use super::*;
use crate::dnsmasq::tests::{bridge, can_run, client, state_root, Netns};
use crate::dnsmasq::{Dnsmasq, Reservation};

const MAC: [u8; 6] = [0x02, 0, 0, 0x77, 0, 0x05];

fn reserved() -> Lease {
    Lease {
        address: "10.77.0.5/24".parse().unwrap(),
        router: Some(Ipv4Addr::new(10, 77, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 77, 0, 1)],
        domain: Some("zv.test".into()),
        lease: None,
        server: Ipv4Addr::new(10, 77, 0, 1),
    }
}

#[test]
fn leases_from_acks() {
    let ack = packet::decode(&reply(DNSMASQ_ACK), 0x1234_5678, &MAC).unwrap();
    assert_eq!(lease_of(&ack, Ipv4Addr::new(10, 77, 0, 1)).unwrap(), reserved());

    // A finite lease, no mask (class A), no server id: the sender serves.
    let bare = packet::decode(
        &reply(b"\x35\x01\x05\x33\x04\x00\x00\x0e\x10\x06\x08\x00\x00\x00\x00\x01\x01\x01\x01\xff"),
        0x1234_5678,
        &MAC,
    )
    .unwrap();
    let l = lease_of(&bare, Ipv4Addr::new(10, 77, 0, 254)).unwrap();
    assert_eq!(l.address, "10.77.0.5/8".parse::<Ipv4Net>().unwrap());
    assert_eq!((l.lease, l.server, l.router), (Some(Duration::from_secs(3600)), Ipv4Addr::new(10, 77, 0, 254), None));
    assert_eq!(l.dns, [Ipv4Addr::new(1, 1, 1, 1)], "0.0.0.0 dropped");

    let no_time = packet::decode(&reply(b"\x35\x01\x05\xff"), 0x1234_5678, &MAC).unwrap();
    assert_eq!(lease_of(&no_time, Ipv4Addr::new(10, 77, 0, 1)), Err("no lease time (51)"));
    // 10.77.0.7/30 is the broadcast address of 10.77.0.4/30.
    let mut b = reply(b"\x35\x01\x05\x33\x04\xff\xff\xff\xff\x01\x04\xff\xff\xff\xfc\xff");
    b[19] = 7;
    let net_addr = packet::decode(&b, 0x1234_5678, &MAC).unwrap();
    assert_eq!(lease_of(&net_addr, Ipv4Addr::new(10, 77, 0, 1)), Err("the address is its network's first or last"));
}

#[test]
fn backoff_doubles_up_to_a_minute() {
    for (tries, secs) in [(0, 1), (1, 2), (3, 8), (6, 64), (20, 64)] {
        let d = backoff(tries);
        assert!(
            d >= Duration::from_secs(secs) && d < Duration::from_secs(secs) + Duration::from_millis(250),
            "{tries}: {d:?}"
        );
    }
}

#[test]
fn bad_arguments_are_refused_before_sending() {
    let e = acquire("eth0", [1, 0, 0x5e, 0, 0, 1], None, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, Error::Invalid { what: "MAC address", .. }), "{e}");
    let e = acquire("eth0", MAC, Some("a b"), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, Error::Invalid { what: "host name", .. }), "{e}");
    let e = acquire("a/b", MAC, None, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn acquires_renews_and_releases_the_reserved_address() {
    if !can_run() {
        return;
    }
    let root = state_root();
    let ns = Netns::new();
    let cfg = bridge(&ns, root.path());
    let d = ns.run(|| Dnsmasq::start_or_adopt(&cfg).unwrap());
    let r = Reservation { mac: MAC, ipv4: Some("10.77.0.5".parse().unwrap()), hostname: Some("web".into()) };
    ns.run(|| d.update(&[r], &[])).unwrap();
    let zone = client(&ns, "zvport0", "02:00:00:77:00:05");

    let lease = zone.run(|| acquire("eth0", MAC, Some("web"), Duration::from_secs(10))).unwrap();
    assert_eq!(lease, reserved());
    // The four-message exchange, without rapid commit.
    let lease = zone.run(|| acquire_with("eth0", MAC, Some("web"), Duration::from_secs(10), false)).unwrap();
    assert_eq!(lease, reserved());
    let log = std::fs::read_to_string(cfg.dir.join("dnsmasq.log")).unwrap();
    assert!(log.contains("DHCPOFFER(zvbr0) 10.77.0.5 02:00:00:77:00:05"), "{log}");

    zone.ip("addr add 10.77.0.5/24 dev eth0");
    let renewed = zone.run(|| renew("eth0", MAC, Some("web"), &lease, Duration::from_secs(10))).unwrap();
    assert_eq!(renewed, reserved());
    zone.run(|| release("eth0", MAC, &lease)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let released =
        || std::fs::read_to_string(cfg.dir.join("dnsmasq.log")).unwrap().contains("DHCPRELEASE(zvbr0) 10.77.0.5");
    while !released() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(released());

    // An address that is not this MAC's: the server refuses to renew it.
    zone.ip("addr add 10.77.0.9/24 dev eth0");
    let wrong = Lease { address: "10.77.0.9/24".parse().unwrap(), ..lease };
    match zone.run(|| renew("eth0", MAC, None, &wrong, Duration::from_secs(5))) {
        Err(Error::Refused { server, .. }) => assert_eq!(server, Ipv4Addr::new(10, 77, 0, 1)),
        other => panic!("{other:?}"),
    }
    d.stop().unwrap();
}

#[test]
fn an_unreserved_mac_gets_no_lease() {
    if !can_run() {
        return;
    }
    let root = state_root();
    let ns = Netns::new();
    let cfg = bridge(&ns, root.path());
    let d = ns.run(|| Dnsmasq::start_or_adopt(&cfg).unwrap());
    let r = Reservation { mac: MAC, ipv4: Some("10.77.0.5".parse().unwrap()), hostname: None };
    ns.run(|| d.update(&[r], &[])).unwrap();
    let zone = client(&ns, "zvport0", "02:00:00:77:00:99");
    let start = Instant::now();
    let e = zone.run(|| acquire("eth0", [2, 0, 0, 0x77, 0, 0x99], None, Duration::from_secs(3))).unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(3) && took < Duration::from_millis(4500), "{took:?}");
    assert!(matches!(&e, Error::NoLease { heard, .. } if heard == "no answer"), "{e:?}");
    assert_eq!(e.to_string(), "DHCP on eth0: no lease within 3.0 s (no answer)");
    d.stop().unwrap();
}

#[test]
fn clients_on_two_interfaces_share_port_68() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    ns.ip("link add zvd0 type bridge");
    ns.ip("link add zvd1 type bridge");
    ns.run(|| {
        let a = super::socket::open("zvd0").unwrap();
        let b = super::socket::open("zvd1").unwrap();
        assert_eq!(a.local_addr().unwrap().port(), 68);
        assert_eq!(b.local_addr().unwrap().port(), 68);
        let e = super::socket::open("zvnone").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        let e = acquire("zvnone", MAC, None, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().starts_with("DHCP on zvnone: opening UDP port 68 on it"), "{e}");
    });
}
