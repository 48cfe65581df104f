//! The parsed form of a rule and the canonical text SmartOS prints for it.
//!
//! A [`Rule`] is only made by [`super::parse`], which normalizes it the way
//! SmartOS's `FwRule` does: targets are deduplicated and sorted (ips, then
//! subnets, then tags, then vms; each by its text), a bare `tag x` swallows
//! every `tag x = v` on the same side, ports are sorted by their first
//! number and ICMP types by type and code. Two texts meaning the same rule
//! therefore parse to equal values, and [`Rule`]'s `Display` is that one
//! canonical text.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use uuid::Uuid;

/// A firewall rule: `FROM <from> TO <to> <action> <protocol> [PRIORITY n]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub(super) from: Side,
    pub(super) to: Side,
    pub(super) action: Action,
    pub(super) protocol: Protocol,
    pub(super) priority: u8,
}

impl Rule {
    /// The sources (`FROM`).
    pub fn from(&self) -> &Side {
        &self.from
    }

    /// The destinations (`TO`).
    pub fn to(&self) -> &Side {
        &self.to
    }

    /// `ALLOW` or `BLOCK`.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The protocol with its ports or ICMP types.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// `PRIORITY` level, 0 (the default) to 100; higher applies first.
    pub fn priority(&self) -> u8 {
        self.priority
    }
}

/// What a rule does with the traffic it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `ALLOW`: accept.
    Allow,
    /// `BLOCK`: drop.
    Block,
}

/// One side of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Side {
    /// `any`: every host, IPv4 and IPv6.
    Any,
    /// `all vms`: every instance (of the rule's owner, if it has one).
    AllVms,
    /// One target or `( t OR t ... )`, normalized: deduplicated and in the
    /// order SmartOS prints them.
    Targets(Vec<Target>),
}

/// A single target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `ip <addr>`.
    Ip(IpAddr),
    /// `subnet <cidr>`, as written (host bits may be set: SmartOS's `fwadm`
    /// accepts them; the compiler masks them off).
    Subnet(IpNet),
    /// `tag <name>` (value `None`) or `tag <name> = <value>`.
    Tag {
        /// The tag's name.
        name: String,
        /// The value it must have, compared as text.
        value: Option<String>,
    },
    /// `vm <uuid>`.
    Vm(Uuid),
}

/// The protocol and what of it the rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `tcp` with ports.
    Tcp(Ports),
    /// `udp` with ports.
    Udp(Ports),
    /// `icmp` with ICMPv4 types.
    Icmp(IcmpTypes),
    /// `icmp6` with ICMPv6 types.
    Icmp6(IcmpTypes),
    /// `ah` (IPsec authentication header); takes no ports.
    Ah,
    /// `esp` (IPsec encapsulating security payload); takes no ports.
    Esp,
}

impl Protocol {
    /// The protocol's name as rules spell it: `tcp`, `udp`, `icmp`, `icmp6`,
    /// `ah` or `esp`.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Tcp(_) => "tcp",
            Protocol::Udp(_) => "udp",
            Protocol::Icmp(_) => "icmp",
            Protocol::Icmp6(_) => "icmp6",
            Protocol::Ah => "ah",
            Protocol::Esp => "esp",
        }
    }
}

/// TCP or UDP destination ports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ports {
    /// `PORT all`.
    All,
    /// Ports and ranges, sorted by their first port.
    List(Vec<Port>),
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// A single port, 1-65535.
    One(u16),
    /// `start - end`, inclusive, `start <= end`.
    Range(u16, u16),
}

impl Port {
    /// The first port it covers.
    pub fn start(self) -> u16 {
        match self {
            Port::One(p) | Port::Range(p, _) => p,
        }
    }

    /// The last port it covers.
    pub fn end(self) -> u16 {
        match self {
            Port::One(p) | Port::Range(_, p) => p,
        }
    }
}

/// ICMP or ICMPv6 types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IcmpTypes {
    /// `TYPE all`.
    All,
    /// Types, each with an optional code, sorted by type then code.
    List(Vec<IcmpType>),
}

/// An ICMP type and, optionally, a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpType {
    /// The ICMP type, 0-255.
    pub icmp_type: u8,
    /// The ICMP code, 0-255; `None` matches every code.
    pub code: Option<u8>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Allow => "ALLOW",
            Action::Block => "BLOCK",
        };
        write!(f, "FROM {} TO {} {} {}", self.from, self.to, action, self.protocol.name())?;
        match &self.protocol {
            Protocol::Tcp(ports) | Protocol::Udp(ports) => write_ports(f, ports)?,
            Protocol::Icmp(types) | Protocol::Icmp6(types) => write_types(f, types)?,
            Protocol::Ah | Protocol::Esp => {}
        }
        if self.priority > 0 {
            write!(f, " PRIORITY {}", self.priority)?;
        }
        Ok(())
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Side::Any => f.write_str("any"),
            Side::AllVms => f.write_str("all vms"),
            Side::Targets(targets) => {
                let many = targets.len() > 1;
                if many {
                    f.write_str("(")?;
                }
                for (i, t) in targets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" OR ")?;
                    }
                    write!(f, "{t}")?;
                }
                if many {
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(ip) => write!(f, "ip {}", ip_text(*ip)),
            Target::Subnet(net) => write!(f, "subnet {}", net_text(*net)),
            Target::Tag { name, value: None } => write!(f, "tag \"{}\"", escape(name)),
            Target::Tag { name, value: Some(v) } => write!(f, "tag \"{}\" = \"{}\"", escape(name), escape(v)),
            Target::Vm(uuid) => write!(f, "vm {}", uuid.hyphenated()),
        }
    }
}

/// SmartOS prints `PORTS a, b - c` when any range is present (it cannot tell
/// `PORTS 1, 2` from `(PORT 1 AND PORT 2)` once parsed), otherwise `PORT a`
/// or `(PORT a AND PORT b)`.
fn write_ports(f: &mut fmt::Formatter<'_>, ports: &Ports) -> fmt::Result {
    let list = match ports {
        Ports::All => return f.write_str(" PORT all"),
        Ports::List(list) => list,
    };
    if list.iter().any(|p| matches!(p, Port::Range(..))) {
        f.write_str(" PORTS ")?;
        for (i, p) in list.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p {
                Port::One(n) => write!(f, "{n}")?,
                Port::Range(a, b) => write!(f, "{a} - {b}")?,
            }
        }
        return Ok(());
    }
    let many = list.len() > 1;
    f.write_str(if many { " (" } else { " " })?;
    for (i, p) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(" AND ")?;
        }
        write!(f, "PORT {}", p.start())?;
    }
    if many {
        f.write_str(")")?;
    }
    Ok(())
}

fn write_types(f: &mut fmt::Formatter<'_>, types: &IcmpTypes) -> fmt::Result {
    let list = match types {
        IcmpTypes::All => return f.write_str(" TYPE all"),
        IcmpTypes::List(list) => list,
    };
    let many = list.len() > 1;
    f.write_str(if many { " (" } else { " " })?;
    for (i, t) in list.iter().enumerate() {
        if i > 0 {
            f.write_str(" AND ")?;
        }
        write!(f, "TYPE {}", t.icmp_type)?;
        if let Some(code) = t.code {
            write!(f, " CODE {code}")?;
        }
    }
    if many {
        f.write_str(")")?;
    }
    Ok(())
}

/// An address as rules (and nft) print it. IPv6 is always in hexadecimal
/// groups, lowercase, with the longest run of zero groups compressed
/// (RFC 5952), never with a dotted IPv4 tail, which the rule lexer would not
/// read back.
pub(super) fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => ipv6_text(v6),
    }
}

/// A subnet as `address/prefix`, the address printed by [`ip_text`].
pub(super) fn net_text(net: IpNet) -> String {
    format!("{}/{}", ip_text(net.addr()), net.prefix_len())
}

fn ipv6_text(ip: Ipv6Addr) -> String {
    let groups = ip.segments();
    // The longest run of two or more zero groups, the first one on a tie.
    let (mut best_start, mut best_len) = (0, 0);
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let hex = |gs: &[u16]| gs.iter().map(|g| format!("{g:x}")).collect::<Vec<_>>().join(":");
    if best_len < 2 {
        return hex(&groups);
    }
    format!("{}::{}", hex(&groups[..best_start]), hex(&groups[best_start + best_len..]))
}

/// Compares strings as JavaScript's default sort does (by UTF-16 code
/// units), which is how SmartOS orders tags and addresses in rule text.
pub(super) fn js_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Escapes a tag name or value for a quoted string: `"`, `\`, the
/// parentheses, control characters and Unicode spaces (so a reader cannot
/// mistake them for an ASCII space), as SmartOS's `tagEscape` does.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' | '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{0}'..='\u{1f}'
            | '\u{7f}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{180e}'
            | '\u{2000}'..='\u{200d}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{2060}'
            | '\u{3000}'
            | '\u{feff}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}
