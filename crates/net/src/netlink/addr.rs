//! IP addresses on links.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;

fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// The request for `net` on link `index`: IPv4 with its broadcast address,
/// IPv6 without duplicate address detection (usable at once).
fn address_message(index: u32, net: IpNet) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(net.addr());
    m.header.prefix_len = net.prefix_len();
    m.header.index = index;
    m.header.scope = if net.addr().is_loopback() { AddressScope::Host } else { AddressScope::Universe };
    match net {
        IpNet::V4(v4) => {
            m.attributes.push(AddressAttribute::Local(net.addr()));
            m.attributes.push(AddressAttribute::Address(net.addr()));
            if v4.prefix_len() < 31 {
                m.attributes.push(AddressAttribute::Broadcast(v4.broadcast()));
            }
        }
        IpNet::V6(_) => {
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Address(net.addr()));
            m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

impl Netlink {
    /// Adds address `net` (host address and prefix, e.g. 10.0.0.2/24) to
    /// link `index`. The address being there already is not an error.
    pub fn add_address(&mut self, index: u32, net: IpNet) -> io::Result<()> {
        let m = address_message(index, net);
        match self.ack(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::EEXIST) => Ok(()),
            Err(f) => {
                let name = self.describe(index);
                Err(f.context(format!("adding address {net} to {name}")))
            }
        }
    }

    /// The addresses of link `index`, or of every link, as (link index,
    /// address with prefix) pairs. IPv6 link-local addresses are included.
    pub fn addresses(&mut self, index: Option<u32>) -> io::Result<Vec<(u32, IpNet)>> {
        let answers = self
            .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
            .map_err(|f| f.context("listing addresses"))?;
        let mut out = Vec::new();
        for a in &answers {
            let RouteNetlinkMessage::NewAddress(m) = a else { continue };
            if index.is_some_and(|i| i != m.header.index) {
                continue;
            }
            // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer's on
            // point-to-point links and the same as IFA_LOCAL elsewhere.
            let mut local = None;
            let mut address = None;
            for attr in &m.attributes {
                match attr {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                if let Ok(net) = IpNet::new(ip, m.header.prefix_len) {
                    out.push((m.header.index, net));
                }
            }
        }
        Ok(out)
    }

    /// Removes address `net` from link `index`. An address already gone is
    /// not an error.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> io::Result<()> {
        let m = address_message(index, net);
        match self.ack(RouteNetlinkMessage::DelAddress(m), 0) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            Err(f) => {
                let name = self.describe(index);
                Err(f.context(format!("removing address {net} from {name}")))
            }
        }
    }
}
