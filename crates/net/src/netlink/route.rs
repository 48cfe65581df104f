//! Routes in the main table.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;

/// A unicast route in the main routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination; `0.0.0.0/0` or `::/0` for a default route.
    pub dst: IpNet,
    /// The next hop, if the destination is not on the link itself.
    pub gateway: Option<IpAddr>,
    /// The outgoing link's index.
    pub oif: Option<u32>,
    /// The route's metric (priority); lower wins.
    pub metric: Option<u32>,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dst.prefix_len() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(oif) = self.oif {
            write!(f, " dev #{oif}")?;
        }
        if let Some(metric) = self.metric {
            write!(f, " metric {metric}")?;
        }
        Ok(())
    }
}

fn route_address(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The request for `route`; `delete` widens the scope so the kernel
/// matches the route whatever scope it was added with.
fn route_message(route: &Route, delete: bool) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = match route.dst {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    m.header.destination_prefix_length = route.dst.prefix_len();
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Static;
    m.header.kind = RouteType::Unicast;
    m.header.scope = if delete {
        RouteScope::NoWhere
    } else if route.gateway.is_none() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    if route.dst.prefix_len() > 0 {
        m.attributes.push(RouteAttribute::Destination(route_address(route.dst.network())));
    }
    if let Some(gw) = route.gateway {
        m.attributes.push(RouteAttribute::Gateway(route_address(gw)));
    }
    if let Some(oif) = route.oif {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(metric) = route.metric {
        m.attributes.push(RouteAttribute::Priority(metric));
    }
    m
}

impl Netlink {
    /// Adds `route` to the main table. The same route being there already
    /// is not an error.
    pub fn add_route(&mut self, route: &Route) -> io::Result<()> {
        let m = route_message(route, false);
        match self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::EEXIST) => Ok(()),
            Err(f) => {
                let on = route.oif.map(|i| format!(" on {}", self.describe(i))).unwrap_or_default();
                Err(f.context(format!("adding route {route}{on}")))
            }
        }
    }

    /// Removes `route` from the main table. A route already gone is not an
    /// error. Fields left `None` match any value.
    pub fn del_route(&mut self, route: &Route) -> io::Result<()> {
        let m = route_message(route, true);
        match self.ack(RouteNetlinkMessage::DelRoute(m), 0) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::ESRCH) => Ok(()),
            Err(f) => Err(f.context(format!("removing route {route}"))),
        }
    }

    /// The unicast routes of the main table, IPv4 (`v4`) or IPv6, including
    /// those the kernel adds for addresses.
    pub fn routes(&mut self, v4: bool) -> io::Result<Vec<Route>> {
        let mut q = RouteMessage::default();
        q.header.address_family = if v4 { AddressFamily::Inet } else { AddressFamily::Inet6 };
        let answers = self
            .dump(RouteNetlinkMessage::GetRoute(q))
            .map_err(|f| f.context(format!("listing IPv{} routes", if v4 { 4 } else { 6 })))?;
        let mut out = Vec::new();
        for a in &answers {
            let RouteNetlinkMessage::NewRoute(m) = a else { continue };
            if m.header.kind != RouteType::Unicast {
                continue;
            }
            let mut table = u32::from(m.header.table);
            let mut dst = None;
            let mut gateway = None;
            let mut oif = None;
            let mut metric = None;
            for attr in &m.attributes {
                match attr {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Destination(d) => dst = ip_of(d),
                    RouteAttribute::Gateway(g) => gateway = ip_of(g),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = Some(*p),
                    _ => {}
                }
            }
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let dst =
                dst.unwrap_or(if v4 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) });
            let Ok(dst) = IpNet::new(dst, m.header.destination_prefix_length) else { continue };
            out.push(Route { dst, gateway, oif, metric });
        }
        Ok(out)
    }

    /// The uplink: the link of the default route (IPv4 or IPv6) with the
    /// lowest metric, if there is one.
    pub fn default_route_link(&mut self, v4: bool) -> io::Result<Option<u32>> {
        Ok(self
            .routes(v4)?
            .into_iter()
            .filter(|r| r.dst.prefix_len() == 0 && r.oif.is_some())
            .min_by_key(|r| r.metric.unwrap_or(0))
            .and_then(|r| r.oif))
    }
}
