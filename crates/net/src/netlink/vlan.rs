//! VLANs on the ports of a VLAN-filtering bridge (`bridge vlan`).
//!
//! A port of a VLAN-filtering bridge starts as an untagged member of the
//! bridge's default VLAN 1. To make it an access port of VLAN `v`:
//! `bridge_vlan_add(port, v, true)` then `bridge_vlan_del(port, 1)`.
//!
//! Kernels built without bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)
//! refuse all of this with EOPNOTSUPP; there, one bridge per VLAN is what
//! keeps VLANs apart.

use std::io;

use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;

/// One VLAN a bridge port is a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    /// The VLAN id.
    pub vid: u16,
    /// Untagged frames arriving on the port are put in this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

impl Netlink {
    /// The AF_BRIDGE request naming `port` and carrying `specs`; for the
    /// bridge device itself, the "self" flag says so.
    fn vlan_message(&mut self, port: u32, vlan: BridgeVlanInfo) -> io::Result<LinkMessage> {
        let is_bridge = self.link_by_index(port)?.is_some_and(|l| l.kind.as_deref() == Some("bridge"));
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.header.index = port;
        let mut specs = Vec::new();
        if is_bridge {
            specs.push(AfSpecBridge::Flags(BridgeFlag::LowerDev));
        }
        specs.push(AfSpecBridge::VlanInfo(vlan));
        m.attributes.push(LinkAttribute::AfSpecBridge(specs));
        Ok(m)
    }

    /// Makes bridge port `port` (or the bridge itself, given its own index)
    /// a member of VLAN `vid`: tagged, or with `pvid_untagged` its native
    /// VLAN (untagged frames in, untagged out). Adding a membership that
    /// exists updates its flags.
    pub fn bridge_vlan_add(&mut self, port: u32, vid: u16, pvid_untagged: bool) -> io::Result<()> {
        let flags = if pvid_untagged {
            BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged
        } else {
            BridgeVlanInfoFlags::empty()
        };
        let m = self.vlan_message(port, BridgeVlanInfo { flags, vid })?;
        self.ack(RouteNetlinkMessage::SetLink(m), 0).map_err(|f| {
            let name = self.describe(port);
            f.context(format!("adding VLAN {vid} to bridge port {name}"))
        })
    }

    /// Removes bridge port `port` from VLAN `vid` (VLAN 1 is where every
    /// port starts). Not being a member is not an error.
    pub fn bridge_vlan_del(&mut self, port: u32, vid: u16) -> io::Result<()> {
        let info = BridgeVlanInfo { flags: BridgeVlanInfoFlags::empty(), vid };
        let m = self.vlan_message(port, info)?;
        match self.ack(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(()) => Ok(()),
            Err(f) if f.errno() == Some(libc::ENOENT) => Ok(()),
            Err(f) => {
                let name = self.describe(port);
                Err(f.context(format!("removing VLAN {vid} from bridge port {name}")))
            }
        }
    }

    /// The VLANs bridge port `port` is a member of (empty when the bridge
    /// does not filter by VLAN).
    pub fn bridge_vlans(&mut self, port: u32) -> io::Result<Vec<BridgeVlan>> {
        let mut q = LinkMessage::default();
        q.header.interface_family = AddressFamily::Bridge;
        q.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let answers = self.dump(RouteNetlinkMessage::GetLink(q)).map_err(|f| f.context("listing bridge VLANs"))?;
        let mut out = Vec::new();
        for a in &answers {
            let RouteNetlinkMessage::NewLink(m) = a else { continue };
            if m.header.index != port {
                continue;
            }
            for attr in &m.attributes {
                let LinkAttribute::AfSpecBridge(specs) = attr else { continue };
                for spec in specs {
                    if let AfSpecBridge::VlanInfo(v) = spec {
                        out.push(BridgeVlan {
                            vid: v.vid,
                            pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}
