//! Links: look up, create (bridge, veth pair, IFB), change, delete.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as NlLinkInfo,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::Netlink;

/// The Linux maximum for an interface name (IFNAMSIZ less the NUL).
pub const MAX_NAME_LEN: usize = 15;

/// What [`Netlink::link`] and [`Netlink::links`] tell about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The link kind (`bridge`, `veth`, `tun`, `ifb`...), absent
    /// for physical devices and loopback.
    pub kind: Option<String>,
    /// The MTU.
    pub mtu: u32,
    /// The Ethernet address, for links that have a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// The index of the bridge (or bond) this link is a port of.
    pub master: Option<u32>,
    /// Whether the link is administratively up.
    pub up: bool,
}

impl LinkInfo {
    fn from_message(m: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut kind = None;
        let mut mtu = 0;
        let mut mac = None;
        let mut master = None;
        for attr in &m.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Mtu(v) => mtu = *v,
                LinkAttribute::Address(a) => mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::Controller(v) if *v != 0 => master = Some(*v),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let NlLinkInfo::Kind(k) = info {
                            kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        Some(LinkInfo {
            index: m.header.index,
            name: name?,
            kind,
            mtu,
            mac,
            master,
            up: m.header.flags.contains(LinkFlags::Up),
        })
    }
}

/// Refuses names the kernel would refuse, with a clearer word.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.contains(['/', '%', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid link name (1 to {MAX_NAME_LEN} bytes, no '/', '%', ':' or spaces)"),
        ));
    }
    Ok(())
}

/// Formats a MAC address the usual way.
pub(crate) fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn link_message(index: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m
}

impl Netlink {
    /// The link named `name`, or `None` when there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        check_name(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.get_link(m, || format!("looking up link {name}"))
    }

    /// The link with index `index`, or `None` when there is none.
    pub fn link_by_index(&mut self, index: u32) -> io::Result<Option<LinkInfo>> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.get_link(m, || format!("looking up link #{index}"))
    }

    fn get_link(&mut self, m: LinkMessage, op: impl FnOnce() -> String) -> io::Result<Option<LinkInfo>> {
        match self.exchange(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(answers) => Ok(answers.iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => LinkInfo::from_message(l),
                _ => None,
            })),
            Err(f) if f.errno() == Some(libc::ENODEV) => Ok(None),
            Err(f) => Err(f.context(op())),
        }
    }

    /// Every link in this namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let answers = self.dump(RouteNetlinkMessage::GetLink(m)).map_err(|f| f.context("listing links"))?;
        Ok(answers
            .iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(l) => LinkInfo::from_message(l),
                _ => None,
            })
            .collect())
    }

    /// A link's name for an error message, or its index if it has none
    /// (any more).
    pub(crate) fn describe(&mut self, index: u32) -> String {
        match self.link_by_index(index) {
            Ok(Some(l)) => l.name,
            _ => format!("link #{index}"),
        }
    }

    /// Creates a link from `m` (which names it `name`) and returns its index.
    fn create(&mut self, m: LinkMessage, name: &str, op: impl Fn() -> String) -> io::Result<u32> {
        self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL).map_err(|f| f.context(op()))?;
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => {
                Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: the new link was gone right after", op())))
            }
        }
    }

    fn kind_message(name: &str, kind: InfoKind, data: Option<InfoData>, mtu: Option<u32>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![NlLinkInfo::Kind(kind)];
        info.extend(data.map(NlLinkInfo::Data));
        m.attributes.push(LinkAttribute::LinkInfo(info));
        m
    }

    /// Creates a bridge (down) and returns its index. Fails if the name is
    /// taken.
    ///
    /// With `vlan_filtering` the bridge forwards by VLAN: every port starts
    /// in VLAN 1 untagged until [`Netlink::bridge_vlan_add`] /
    /// [`Netlink::bridge_vlan_del`] say otherwise. Kernels built without
    /// bridge VLAN filtering refuse it with `Unsupported` (EOPNOTSUPP) and
    /// leave no bridge behind; without `vlan_filtering` the option is not
    /// sent at all, so those kernels make plain bridges.
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> io::Result<u32> {
        check_name(name)?;
        let data = vlan_filtering.then(|| InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)]));
        let m = Self::kind_message(name, InfoKind::Bridge, data, mtu);
        let with = if vlan_filtering { " with VLAN filtering" } else { "" };
        self.create(m, name, || format!("creating bridge {name}{with}"))
    }

    /// Creates a veth pair in one request and returns the index of the
    /// `host` side (in this socket's namespace). The `peer` side is created
    /// directly in `peer_netns` when given (so its name only has to be free
    /// there), with `peer_mac` as its address. Both sides start down.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
        peer_mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> io::Result<u32> {
        check_name(host)?;
        check_name(peer)?;
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        if let Some(fd) = peer_netns {
            p.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        if let Some(mac) = peer_mac {
            p.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = mtu {
            p.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let data = InfoData::Veth(InfoVeth::Peer(p));
        let m = Self::kind_message(host, InfoKind::Veth, Some(data), mtu);
        let elsewhere = if peer_netns.is_some() { " (peer in the instance's namespace)" } else { "" };
        self.create(m, host, || format!("creating veth pair {host}/{peer}{elsewhere}"))
    }

    /// Creates an IFB device (the target of redirected ingress traffic for
    /// shaping) and returns its index.
    pub fn add_ifb(&mut self, name: &str) -> io::Result<u32> {
        check_name(name)?;
        let m = Self::kind_message(name, InfoKind::Ifb, None, None);
        self.create(m, name, || format!("creating IFB device {name}"))
    }

    /// Makes link `index` a port of bridge `master`, or with `None` takes
    /// it out of whatever bridge it is in.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::Controller(master.unwrap_or(0)));
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(index);
            match master {
                Some(br) => {
                    let br = self.describe(br);
                    f.context(format!("adding {name} to bridge {br}"))
                }
                None => f.context(format!("taking {name} out of its bridge")),
            }
        })
    }

    /// Brings link `index` up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut m = link_message(index);
        m.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        m.header.change_mask = LinkFlags::Up;
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(index);
            f.context(format!("bringing {name} {}", if up { "up" } else { "down" }))
        })
    }

    /// Whether bridge `index` hands the IPv4 and IPv6 packets it forwards
    /// to the host's `inet` netfilter hooks (`br_netfilter`), where they
    /// meet connection tracking: the stateful firewall needs it.
    pub fn set_bridge_nf_call(&mut self, index: u32, on: bool) -> io::Result<()> {
        let mut m = link_message(index);
        let data = InfoData::Bridge(vec![InfoBridge::NfCallIpTables(on), InfoBridge::NfCallIp6Tables(on)]);
        m.attributes.push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge), NlLinkInfo::Data(data)]));
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(index);
            f.context(format!("setting nf_call_iptables of bridge {name} to {on}"))
        })
    }

    /// Sets the MTU of link `index`.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(index);
            f.context(format!("setting the MTU of {name} to {mtu}"))
        })
    }

    /// Sets the Ethernet address of link `index`.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> io::Result<()> {
        let mut m = link_message(index);
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(index);
            f.context(format!("setting the MAC address of {name} to {}", mac_string(&mac)))
        })
    }

    /// Deletes link `index` (for a veth pair, both sides). A link already
    /// gone is not an error.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        match self.ack(RouteNetlinkMessage::DelLink(link_message(index)), 0) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::ENODEV) => Ok(()),
            Err(f) => {
                let name = self.describe(index);
                Err(f.context(format!("deleting link {name}")))
            }
        }
    }
}
