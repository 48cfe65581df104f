//! Rules to nftables statements for each firewalled instance's chains.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use ipnet::IpNet;
use uuid::Uuid;

use super::resolve::{owned_by, target_is};
use super::rule::{ip_text, net_text, Action, IcmpTypes, Ports, Protocol, Side, Target};
use super::{Instance, StoredRule};

/// The firewall statements of one instance, in the order they go into its
/// chains of table `inet zonevisor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chains {
    /// Rules for `fw_in_<uuid>`: traffic to the instance. The daemon jumps
    /// there after accepting established and related traffic, and drops
    /// what comes back.
    pub inbound: Vec<String>,
    /// Rules for `fw_out_<uuid>`: traffic from the instance. The daemon
    /// accepts what comes back.
    pub outbound: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The instance is on the rule's `TO` side; match sources.
    In,
    /// The instance is on the rule's `FROM` side; match destinations.
    Out,
}

/// Orders a chain: higher priority first, then the action against the
/// chain's default (inbound ALLOW, outbound BLOCK), then rule UUID.
type SortKey = (Reverse<u8>, u8, Uuid);

/// Compiles the enabled `rules` into nftables statements for every instance
/// (each counting its matches under its rule's uuid, as a comment)
/// with `firewall_enabled` (an instance no rule names gets empty chains).
///
/// For a rule `FROM A TO B`, each firewalled instance in B gets inbound
/// statements matching sources A, and each firewalled instance in A gets
/// outbound statements matching destinations B. See the module
/// documentation of [`super`] for the details.
pub fn compile(rules: &[StoredRule], instances: &[Instance]) -> BTreeMap<Uuid, Chains> {
    let mut entries: BTreeMap<Uuid, [Vec<(SortKey, usize)>; 2]> =
        instances.iter().filter(|i| i.firewall_enabled).map(|i| (i.uuid, Default::default())).collect();
    // Each rule's statements per direction, shared by the instances it names.
    let mut compiled: Vec<Vec<String>> = Vec::new();

    for stored in rules.iter().filter(|r| r.enabled) {
        let rule = &stored.rule;
        for dir in [Dir::In, Dir::Out] {
            // As SmartOS does, skip what the default policy already does: a
            // priority 0 inbound BLOCK or outbound ALLOW would sort after
            // every rule that could override it, just before the default.
            let redundant = matches!((dir, rule.action()), (Dir::In, Action::Block) | (Dir::Out, Action::Allow));
            if rule.priority() == 0 && redundant {
                continue;
            }
            let (local, remote) = match dir {
                Dir::In => (rule.to(), rule.from()),
                Dir::Out => (rule.from(), rule.to()),
            };
            let locals = local_instances(stored, local, instances);
            if locals.is_empty() {
                continue;
            }
            let statements: Vec<String> =
                statements(stored, dir, remote, instances).iter().map(|s| counted(s, stored.uuid)).collect();
            if statements.is_empty() {
                continue;
            }
            compiled.push(statements);
            let index = compiled.len() - 1;
            let key = (Reverse(rule.priority()), action_rank(dir, rule.action()), stored.uuid);
            for uuid in locals {
                if let Some(chains) = entries.get_mut(&uuid) {
                    chains[dir as usize].push((key, index));
                }
            }
        }
    }

    entries
        .into_iter()
        .map(|(uuid, [mut inbound, mut outbound])| {
            let flatten = |list: &mut Vec<(SortKey, usize)>| {
                list.sort_by_key(|(key, _)| *key);
                list.iter().flat_map(|(_, i)| compiled[*i].iter().cloned()).collect()
            };
            let chains = Chains { inbound: flatten(&mut inbound), outbound: flatten(&mut outbound) };
            (uuid, chains)
        })
        .collect()
}

/// A statement that counts what it matches, under its rule's uuid
/// (`fwadm stats` reads the counters back by that comment).
fn counted(statement: &str, rule: Uuid) -> String {
    match statement.rsplit_once(' ') {
        Some((matches, verdict)) => format!("{matches} counter {verdict} comment \"{rule}\""),
        None => format!("counter {statement} comment \"{rule}\""),
    }
}

fn action_rank(dir: Dir, action: Action) -> u8 {
    match (dir, action) {
        (Dir::In, Action::Allow) | (Dir::Out, Action::Block) => 0,
        _ => 1,
    }
}

/// The firewalled instances a side names, within the rule's owner.
fn local_instances(rule: &StoredRule, side: &Side, instances: &[Instance]) -> Vec<Uuid> {
    let named = |i: &Instance| match side {
        Side::Any => false,
        Side::AllVms => true,
        Side::Targets(targets) => targets.iter().any(|t| target_is(t, i)),
    };
    let mut found: Vec<Uuid> =
        instances.iter().filter(|i| i.firewall_enabled && owned_by(rule, i) && named(i)).map(|i| i.uuid).collect();
    found.sort();
    found.dedup();
    found
}

/// The addresses on the other side of a rule: `None` for `any`.
fn remote_addresses(rule: &StoredRule, side: &Side, instances: &[Instance]) -> Option<Vec<IpNet>> {
    // SmartOS resolves the other side more loosely than the instances a rule
    // is for: an instance is left out only when both it and the rule have
    // owners and they differ.
    let peer = |i: &Instance| match (rule.owner_uuid, i.owner_uuid) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    let ips_of = |i: &Instance| i.ips.iter().copied().map(IpNet::from).collect::<Vec<_>>();
    let nets = match side {
        Side::Any => return None,
        Side::AllVms => instances.iter().filter(|i| peer(i)).flat_map(ips_of).collect(),
        Side::Targets(targets) => targets
            .iter()
            .flat_map(|t| match t {
                Target::Ip(ip) => vec![IpNet::from(*ip)],
                Target::Subnet(net) => vec![net.trunc()],
                _ => instances.iter().filter(|i| peer(i) && target_is(t, i)).flat_map(ips_of).collect(),
            })
            .collect(),
    };
    Some(nets)
}

/// Sorts addresses and drops those inside another, so that no two elements
/// of an nft set overlap (nft refuses overlapping intervals).
fn merge_nets(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort_by_key(|n| (n.network(), n.prefix_len()));
    let mut out: Vec<IpNet> = Vec::with_capacity(nets.len());
    for net in nets {
        if out.last().is_some_and(|last| last.contains(&net)) {
            continue;
        }
        out.push(net);
    }
    out
}

fn statements(rule: &StoredRule, dir: Dir, remote: &Side, instances: &[Instance]) -> Vec<String> {
    let verdict = match rule.rule.action() {
        Action::Allow => "accept",
        Action::Block => "drop",
    };
    let protocol = rule.rule.protocol();
    let field = match dir {
        Dir::In => "saddr",
        Dir::Out => "daddr",
    };
    // Which families the protocol can carry.
    let (v4_ok, v6_ok) = match protocol {
        Protocol::Icmp(_) => (true, false),
        Protocol::Icmp6(_) => (false, true),
        _ => (true, true),
    };

    // (address match, family) pairs: one with no address match for `any`,
    // otherwise one per family with addresses. An empty side matches
    // nothing rather than everything.
    let mut heads: Vec<(Option<String>, Option<bool>)> = Vec::new();
    match remote_addresses(rule, remote, instances) {
        None => heads.push((None, None)),
        Some(nets) => {
            let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = nets.into_iter().partition(|n| n.addr().is_ipv4());
            for (family, nets, ok, keyword) in [(true, v4, v4_ok, "ip"), (false, v6, v6_ok, "ip6")] {
                let nets = merge_nets(nets);
                if ok && !nets.is_empty() {
                    let set = set_text(nets.iter().map(|n| net_elem(*n)).collect());
                    heads.push((Some(format!("{keyword} {field} {set}")), Some(family)));
                }
            }
        }
    }

    let mut out = Vec::new();
    for (addr, family) in heads {
        for proto in protocol_matches(protocol, family.is_some()) {
            let mut s = String::new();
            if let Some(a) = &addr {
                s.push_str(a);
                s.push(' ');
            }
            s.push_str(&proto);
            s.push(' ');
            s.push_str(verdict);
            out.push(s);
        }
    }
    out
}

/// The protocol part of the statements for a protocol: one per match (a
/// set of ICMP types without codes, and one per type with a code).
/// `has_address` says an `ip`/`ip6` match already fixes the family.
fn protocol_matches(protocol: &Protocol, has_address: bool) -> Vec<String> {
    match protocol {
        Protocol::Tcp(ports) => vec![ports_match("tcp", ports)],
        Protocol::Udp(ports) => vec![ports_match("udp", ports)],
        Protocol::Ah => vec!["meta l4proto ah".to_string()],
        Protocol::Esp => vec!["meta l4proto esp".to_string()],
        Protocol::Icmp(types) => icmp_matches(types, "icmp", "icmp", "ipv4", has_address),
        Protocol::Icmp6(types) => icmp_matches(types, "icmpv6", "ipv6-icmp", "ipv6", has_address),
    }
}

fn ports_match(proto: &str, ports: &Ports) -> String {
    let list = match ports {
        Ports::All => return format!("meta l4proto {proto}"),
        Ports::List(list) => list,
    };
    // Merge overlapping and adjacent ranges: nft refuses overlapping set
    // elements.
    let mut ranges: Vec<(u16, u16)> = list.iter().map(|p| (p.start(), p.end())).collect();
    ranges.sort();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let elems = merged.into_iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
    format!("{proto} dport {}", set_text(elems))
}

fn icmp_matches(types: &IcmpTypes, keyword: &str, l4proto: &str, nfproto: &str, has_address: bool) -> Vec<String> {
    let family = if has_address { String::new() } else { format!("meta nfproto {nfproto} ") };
    let list = match types {
        IcmpTypes::All => return vec![format!("{family}meta l4proto {l4proto}")],
        IcmpTypes::List(list) => list,
    };
    let mut out = Vec::new();
    let mut bare: Vec<u8> = list.iter().filter(|t| t.code.is_none()).map(|t| t.icmp_type).collect();
    bare.sort();
    bare.dedup();
    if !bare.is_empty() {
        let set = set_text(bare.iter().map(u8::to_string).collect());
        out.push(format!("{family}{keyword} type {set}"));
    }
    let mut coded: Vec<(u8, u8)> = list.iter().filter_map(|t| t.code.map(|c| (t.icmp_type, c))).collect();
    coded.sort();
    coded.dedup();
    for (t, c) in coded {
        out.push(format!("{family}{keyword} type {t} {keyword} code {c}"));
    }
    out
}

/// A set element for an address: a host without its prefix, a network
/// with it.
fn net_elem(net: IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        ip_text(net.addr())
    } else {
        net_text(net.trunc())
    }
}

/// One value as is, several as an anonymous set.
fn set_text(elems: Vec<String>) -> String {
    if elems.len() == 1 {
        elems.into_iter().next().unwrap_or_default()
    } else {
        format!("{{ {} }}", elems.join(", "))
    }
}
