//! What an instance's NICs are, as the daemon decides them and the
//! monitor wires them: [`Port`] (one per NIC, carried in the monitor's
//! spec), and the wiring itself ([`wire_zone`], [`open_vm_port`]).
//!
//! ```text
//!  bridge (the nic tag's, or its VLAN's) ── port "zv<uuid 8><mac 4>" (host side, up)
//!                              │ veth pair, made with its peer already inside
//!                              v
//!                  zone netns: eth0/net0 (MAC, MTU, addresses, routes, up)
//!
//!  bridge (the nic tag) ── tap "zv<uuid 8><mac 4>" ── QEMU's -netdev tap,fd=N
//! ```

use std::io;
use std::net::IpAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::netlink::{Netlink, Route};
use crate::shape::Caps;

/// One NIC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The host side's name ([`port_name`]).
    pub host: String,
    /// The bridge it joins: its nic tag's, or for a `vlan_id` the tag's
    /// bridge of that VLAN.
    pub bridge: String,
    /// `mtu`, when the payload gives one.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `mac`.
    pub mac: String,
    /// Its bandwidth caps, put on the host side once it is up.
    #[serde(default)]
    pub caps: Caps,
    /// A zone's side of it; `None` for a VM (the guest configures itself).
    #[serde(default)]
    pub guest: Option<GuestLink>,
}

/// A zone NIC as the zone sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLink {
    /// `interface` (`eth0`, `net0`).
    pub name: String,
    /// Static addresses with their prefix.
    #[serde(default)]
    pub addrs: Vec<IpNet>,
    /// `ips` says `dhcp`: DHCPv4 at start.
    #[serde(default)]
    pub dhcp: bool,
    /// The routes through this NIC: the default ones (`gateways` of the
    /// primary NIC) and `routes`.
    #[serde(default)]
    pub routes: Vec<RouteVia>,
    /// Whether this is the primary NIC (a DHCP lease's router becomes
    /// the default route).
    #[serde(default)]
    pub primary: bool,
}

/// A route through a gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteVia {
    /// The destination (`0.0.0.0/0` for the default route).
    pub dst: IpNet,
    /// The gateway.
    pub via: IpAddr,
}

/// The host side of an instance's NIC: `zv`, eight hex digits of the
/// instance's uuid and the last two bytes of the MAC (14 bytes, under
/// the kernel's 15). Stable for the NIC's life, whatever its index.
pub fn port_name(instance: &Uuid, mac: &str) -> String {
    let id = instance.simple().to_string();
    let tail = parse_mac(mac).map_or_else(|| "0000".to_string(), |m| format!("{:02x}{:02x}", m[4], m[5]));
    format!("zv{}{tail}", &id[..8])
}

/// `aa:bb:cc:dd:ee:ff` (or SmartOS's short form `2:8:20:aa:bb:1`) as bytes.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

fn mac_of(p: &Port) -> io::Result<[u8; 6]> {
    parse_mac(&p.mac).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a MAC", p.mac)))
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Joins the host side `index` to its bridge, caps it, and brings it up.
fn join_bridge(nl: &mut Netlink, p: &Port, index: u32) -> io::Result<()> {
    let bridge = nl
        .link(&p.bridge)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("bridge {} does not exist", p.bridge)))?;
    nl.set_master(index, Some(bridge.index)).map_err(context(format!("adding {} to {}", p.host, p.bridge)))?;
    if p.caps.ingress_mbps.is_some() || p.caps.egress_mbps.is_some() {
        crate::shape::set_caps(&p.host, p.caps)?;
    }
    nl.set_up(index, true).map_err(context(format!("bringing {} up", p.host)))
}

/// How long a zone's start waits for a DHCP lease.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Wires a zone's NICs into its network namespace `netns` (held by the
/// monitor for the zone's life): each veth pair is made with its peer
/// already inside, named, addressed and routed, before the zone's init
/// starts. The namespace's `lo` comes up too (when it has NICs). A NIC whose `ips` says
/// `dhcp` gets the lease its network's DHCP server gives.
pub fn wire_zone(ports: &[Port], netns: BorrowedFd<'_>, hostname: Option<&str>) -> io::Result<()> {
    if ports.is_empty() {
        // Nothing of the host's to join: the zone's own init does its `lo`,
        // and its start pays nothing for networks it has none of.
        return Ok(());
    }
    let mut host = Netlink::open()?;
    let mut zone = Netlink::open_in(netns)?;
    if let Some(lo) = zone.link("lo")? {
        zone.set_up(lo.index, true)?;
    }
    let mut routes = Vec::new();
    for p in ports {
        let Some(g) = &p.guest else { continue };
        let mac = mac_of(p)?;
        if let Some(old) = host.link(&p.host)? {
            // Left by a monitor that died before its namespace did.
            host.delete_link(old.index)?;
        }
        let index = host
            .add_veth(&p.host, &g.name, Some(netns), Some(mac), p.mtu)
            .map_err(context(format!("making {} for {}", p.host, g.name)))?;
        join_bridge(&mut host, p, index)?;
        let inside = zone
            .link(&g.name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} did not reach the zone", g.name)))?;
        for a in &g.addrs {
            zone.add_address(inside.index, *a).map_err(context(format!("{}: address {a}", g.name)))?;
        }
        zone.set_up(inside.index, true)?;
        if g.dhcp {
            let lease =
                crate::netlink::run_in_netns(netns, || crate::dhcp::acquire(&g.name, mac, hostname, DHCP_TIMEOUT))
                    .and_then(|r| r.map_err(io::Error::other));
            match lease {
                Ok(lease) => {
                    zone.add_address(inside.index, IpNet::V4(lease.address))?;
                    if let (true, Some(router)) = (g.primary, lease.router) {
                        let dst = "0.0.0.0/0".parse().expect("a net");
                        routes.push((inside.index, RouteVia { dst, via: router.into() }));
                    }
                }
                // As a SmartOS zone does, it boots without the address.
                Err(e) => eprintln!("{}: no DHCP lease: {e}", g.name),
            }
        }
        for r in &g.routes {
            routes.push((inside.index, r.clone()));
        }
    }
    // After every address is there, so each gateway is reachable.
    for (oif, r) in routes {
        let route = Route { dst: r.dst, gateway: Some(r.via), oif: Some(oif), metric: None };
        zone.add_route(&route).map_err(context(format!("route to {} via {}", r.dst, r.via)))?;
    }
    Ok(())
}

/// Opens a VM NIC's tap (with virtio-net headers), joins it to its
/// bridge and returns it for QEMU. The tap lives while a descriptor of
/// it does: it goes with QEMU.
pub fn open_vm_port(p: &Port) -> io::Result<OwnedFd> {
    let mut nl = Netlink::open()?;
    if let Some(old) = nl.link(&p.host)? {
        nl.delete_link(old.index)?;
    }
    let fd = crate::tap::open_tap(&p.host, true).map_err(context(format!("opening tap {}", p.host)))?;
    let link =
        nl.link(&p.host)?.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("tap {} vanished", p.host)))?;
    if let Some(mtu) = p.mtu {
        nl.set_mtu(link.index, mtu)?;
    }
    join_bridge(&mut nl, p, link.index)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_are_short_and_stable() {
        let u: Uuid = "6a9f1ff0-0d2a-4b0e-9d4a-54d1c5a0c001".parse().unwrap();
        assert_eq!(port_name(&u, "02:08:20:AA:BB:01"), "zv6a9f1ff0bb01");
        assert_eq!(port_name(&u, "2:8:20:aa:bb:1"), "zv6a9f1ff0bb01");
    }

    #[test]
    fn macs_in_both_forms() {
        assert_eq!(parse_mac("02:08:20:aa:bb:01"), Some([2, 8, 0x20, 0xaa, 0xbb, 1]));
        assert_eq!(parse_mac("2:8:20:aa:bb:1"), Some([2, 8, 0x20, 0xaa, 0xbb, 1]));
        assert_eq!(parse_mac("02:08:20:aa:bb"), None);
        assert_eq!(parse_mac("02:08:20:aa:bb:xyz"), None);
    }
}
