//! DHCP and DNS for a network zonevisor manages: one dnsmasq per network,
//! listening on the network's bridge only.
//!
//! - [`render`], [`render_hosts`] and [`render_names`] turn a
//!   [`NetworkConfig`], the DHCP reservations and the instances' names into
//!   dnsmasq's configuration file, its `dhcp-hostsfile` and its `addn-hosts`
//!   file (pure).
//! - [`Dnsmasq`] supervises the process: it starts one that outlives its
//!   caller (even a `kill -9`), adopts the one a previous caller started,
//!   restarts it when its configuration changed, and reloads the hosts files.
//!
//! What dnsmasq serves:
//!
//! | | IPv4 | IPv6 (ULA /64) |
//! |---|---|---|
//! | addresses | DHCP, reserved MACs only (`static` range, leases `infinite`; unknown MACs get no answer) | SLAAC from router advertisements |
//! | router | the host's bridge address | the host (RA) |
//! | DNS server | the host's bridge address | the host's bridge address (stateless DHCPv6) |
//! | names | `addn-hosts` (the instances), `local=/<domain>/`, the rest forwarded upstream | same |
//!
//! Files in the network's state directory (`NetworkConfig::dir`):
//!
//! ```text
//!  dnsmasq.conf   root 0600   read once, as root, at start (only this file:
//!                             dnsmasq runs with --conf-file=, so /etc/dnsmasq.conf
//!                             and /etc/dnsmasq.d are never read)
//!  dhcp-hosts     U 0400      reservations  ┐ re-read on SIGHUP, after dnsmasq
//!  names          U 0400      instance names┘ dropped root: owned by its user U
//!  leases         root 0600   opened as root at start, kept open
//!  dnsmasq.pid    written as root at start (then handed to U by dnsmasq)
//!  dnsmasq.log    created by dnsmasq, owned by U; copied to .1 and emptied past 1 MiB
//! ```
//!
//! dnsmasq drops root right after start-up, to Debian's `dnsmasq` user
//! (`nobody` where that user does not exist), and from then on re-reads its
//! hosts files as that user: the state directory is made `root 0711`, the
//! hosts files belong to that user (mode 0400), and every directory above
//! the state directory must let that user through (`o+x`). [`Dnsmasq::start_or_adopt`]
//! checks the latter and refuses a directory that user cannot reach, rather
//! than starting a dnsmasq that silently serves no reservations.

mod conf;
mod dns;
mod supervisor;
#[cfg(test)]
pub(crate) mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

pub use conf::{render, render_hosts, render_names};
pub use supervisor::Dnsmasq;

pub(crate) use conf::{format_mac, is_dns_name};
pub(crate) use dns::random_bytes;

/// A network zonevisor manages: its bridge, the host's addresses on it and
/// where its dnsmasq keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The network's name (the nic tag), for messages and the conf's header.
    pub name: String,
    /// The bridge dnsmasq serves; it listens on no other interface.
    pub bridge: String,
    /// The host's IPv4 address on the bridge with the network's prefix
    /// (e.g. `10.43.17.1/24`): DHCPv4 serves that network, and the address
    /// is the instances' router and DNS server.
    pub ipv4: Option<Ipv4Net>,
    /// The host's IPv6 address on the bridge in the network's ULA /64:
    /// router advertisements (SLAAC) and stateless DHCPv6 for that prefix.
    pub ipv6: Option<Ipv6Net>,
    /// The DNS domain of the instances' names: answered locally, never
    /// forwarded.
    pub domain: Option<String>,
    /// Upstream DNS servers; empty: the host's `/etc/resolv.conf`.
    pub upstream: Vec<IpAddr>,
    /// The state directory: conf, hosts files, leases, pid and log.
    pub dir: PathBuf,
}

/// A DHCP reservation: the address (and name) a MAC gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The NIC's MAC address.
    pub mac: [u8; 6],
    /// The address it gets; it must be inside the network's IPv4 prefix.
    pub ipv4: Option<Ipv4Addr>,
    /// The name dnsmasq gives it (one DNS label), whatever the client asks.
    pub hostname: Option<String>,
}

/// What went wrong with a network's dnsmasq.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that cannot go into dnsmasq's files.
    #[error("{what} {value:?}: {why}")]
    Invalid {
        /// Which value (e.g. "bridge name").
        what: &'static str,
        /// The value, as given.
        value: String,
        /// Why it cannot be used.
        why: String,
    },
    /// Reading or writing one of the network's files failed.
    #[error("{what} {}", path.display())]
    File {
        /// What was done (e.g. "writing").
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// dnsmasq would not be able to read its hosts files once it dropped root.
    #[error("dnsmasq runs as user {user} and cannot reach {}: {why}", path.display())]
    Unreachable {
        /// The user dnsmasq drops to.
        user: String,
        /// The directory it cannot get through.
        path: PathBuf,
        /// The offending permissions.
        why: String,
    },
    /// The dnsmasq process: not installed, refused to start, does not
    /// answer, or is not running.
    #[error("dnsmasq for network {network}: {why}")]
    Process {
        /// The network's name.
        network: String,
        /// What happened, with dnsmasq's own words where it gave some.
        why: String,
    },
}

impl Error {
    fn invalid(what: &'static str, value: impl ToString, why: impl Into<String>) -> Error {
        Error::Invalid { what, value: value.to_string(), why: why.into() }
    }
}
