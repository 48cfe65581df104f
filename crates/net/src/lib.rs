//! Networking for zones and VMs.
//!
//! - [`netlink`]: links, bridges, veth pairs, addresses and routes over
//!   rtnetlink, in the caller's network namespace or another one.
//! - [`tap`]: TAP devices for QEMU.
//! - [`shape`]: per-NIC bandwidth caps (tc).
//! - [`dnsmasq`]: DHCP and DNS for the networks zonevisor manages.
//! - [`dhcp`]: a DHCP client for zone NICs whose address is `dhcp`.
//! - [`fw`]: SmartOS's firewall rule language: parse, print, compile.
//! - [`nft`]: the host's nftables ruleset (antispoof, firewall, NAT),
//!   rendered as one text and applied as one transaction.
//! - [`plan`]: an instance's NICs as the daemon decides them, and their
//!   wiring by the monitor.

pub mod dhcp;
pub mod dnsmasq;
pub mod fw;
pub mod netlink;
pub mod nft;
pub mod plan;
pub mod shape;
pub mod tap;
