//! Compiling to nftables statements: the ipf rule sets SmartOS's unit tests
//! expect (fw `test/unit/priority.test.js`, `owner.test.js`,
//! `tags.test.js`, `icmp.test.js`, `ipsec.test.js`, `wildcards.test.js`,
//! `fw.test.js`), translated to nft, plus ordering, owner and tag cases.

use serde_json::json;
use uuid::Uuid;

use super::resolve::{instance, stored, uuid, with_ips, with_owner, with_tags};
use super::*;

/// A statement without the counter and rule comment every compiled one
/// carries (see `statements_count_under_their_rule`).
fn bare(s: String) -> String {
    let (head, comment) = s.rsplit_once(" comment \"").unwrap_or_else(|| panic!("{s} has no comment"));
    assert!(comment.ends_with('"'), "{s}");
    let (matches, verdict) = head.rsplit_once(' ').unwrap();
    match matches.strip_suffix(" counter").or_else(|| matches.strip_suffix("counter")) {
        Some("") => verdict.to_string(),
        Some(m) => format!("{m} {verdict}"),
        None => panic!("{s} has no counter"),
    }
}

/// [`compile`], its statements [`bare`].
fn compile_bare(rules: &[StoredRule], insts: &[Instance]) -> std::collections::BTreeMap<Uuid, Chains> {
    compile(rules, insts)
        .into_iter()
        .map(|(u, c)| {
            (
                u,
                Chains {
                    inbound: c.inbound.into_iter().map(bare).collect(),
                    outbound: c.outbound.into_iter().map(bare).collect(),
                },
            )
        })
        .collect()
}

fn chains(rules: &[StoredRule], insts: &[Instance], vm: Uuid) -> Chains {
    compile_bare(rules, insts).remove(&vm).unwrap_or_else(|| panic!("no chains for {vm}"))
}

#[test]
fn statements_count_under_their_rule() {
    let vm = instance(1);
    let me = vm.uuid;
    let rule = stored(7, vm.owner_uuid, &format!("FROM any TO vm {me} ALLOW tcp PORT 22"));
    let id = rule.uuid;
    let c = compile(&[rule], &[vm]).remove(&me).unwrap();
    assert_eq!(c.inbound, strings(&[&format!("tcp dport 22 counter accept comment \"{id}\"")]));
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// fw test/unit/priority.test.js: "Overriding inbound rules"
#[test]
fn overriding_inbound_rules() {
    let vm = instance(1);
    let me = vm.uuid;
    let owner = vm.owner_uuid;
    let rules = [
        stored(1, owner, &format!("FROM ip 10.99.99.254 TO vm {me} BLOCK tcp PORT 22 PRIORITY 2")),
        stored(2, owner, &format!("FROM subnet 10.99.99.0/24 TO vm {me} BLOCK tcp PORT all PRIORITY 1")),
        stored(3, owner, &format!("FROM ip 10.99.99.254 TO vm {me} ALLOW tcp PORTS 15 - 30 PRIORITY 1")),
        stored(4, owner, &format!("FROM any TO vm {me} ALLOW tcp PORT all")),
    ];
    let c = chains(&rules, &[vm], me);
    assert_eq!(
        c.inbound,
        strings(&[
            "ip saddr 10.99.99.254 tcp dport 22 drop",
            "ip saddr 10.99.99.254 tcp dport 15-30 accept",
            "ip saddr 10.99.99.0/24 meta l4proto tcp drop",
            "meta l4proto tcp accept",
        ])
    );
    assert!(c.outbound.is_empty());
}

// fw test/unit/priority.test.js: "Overriding outbound rules"
#[test]
fn overriding_outbound_rules() {
    let vm = instance(1);
    let me = vm.uuid;
    let owner = vm.owner_uuid;
    let rules = [
        stored(1, owner, &format!("FROM vm {me} TO ip 10.99.99.254 ALLOW udp PORT 22 PRIORITY 15")),
        stored(2, owner, &format!("FROM vm {me} TO subnet 10.99.99.0/24 ALLOW udp PORT all PRIORITY 2")),
        stored(3, owner, &format!("FROM vm {me} TO ip 10.99.99.254 BLOCK udp PORTS 15 - 30 PRIORITY 2")),
        stored(4, owner, &format!("FROM vm {me} TO any BLOCK udp PORT all")),
    ];
    let c = chains(&rules, &[vm], me);
    assert_eq!(
        c.outbound,
        strings(&[
            "ip daddr 10.99.99.254 udp dport 22 accept",
            "ip daddr 10.99.99.254 udp dport 15-30 drop",
            "ip daddr 10.99.99.0/24 meta l4proto udp accept",
            "meta l4proto udp drop",
        ])
    );
    assert!(c.inbound.is_empty());
}

// fw test/unit/priority.test.js: "Priority levels sorted correctly":
// numerically, not as text.
#[test]
fn priorities_sort_numerically() {
    let vm = instance(1);
    let me = vm.uuid;
    let levels = [1, 100, 10, 15, 2, 23, 25, 55, 50];
    let rules: Vec<StoredRule> = levels
        .iter()
        .enumerate()
        .map(|(i, p)| {
            stored(
                i as u32,
                vm.owner_uuid,
                &format!("FROM ip 10.99.99.{} TO vm {me} ALLOW tcp PORT all PRIORITY {p}", i + 1),
            )
        })
        .collect();
    let c = chains(&rules, &[vm], me);
    let order: Vec<&str> = c.inbound.iter().map(|s| s.split(' ').nth(2).unwrap()).collect();
    assert_eq!(
        order,
        [
            "10.99.99.2",
            "10.99.99.8",
            "10.99.99.9",
            "10.99.99.7",
            "10.99.99.6",
            "10.99.99.4",
            "10.99.99.3",
            "10.99.99.5",
            "10.99.99.1"
        ]
    );
}

// At equal priority the action against the chain's default goes first,
// then rule UUID; the input order does not matter.
#[test]
fn equal_priorities_order_by_action_then_uuid() {
    let a = with_tags(instance(1), json!({"a": true}));
    let me = a.uuid;
    let rules = [
        stored(5, None, "FROM ip 10.0.0.5 TO tag a BLOCK tcp PORT 5 PRIORITY 3"),
        stored(4, None, "FROM ip 10.0.0.4 TO tag a ALLOW tcp PORT 4 PRIORITY 3"),
        stored(3, None, "FROM ip 10.0.0.3 TO tag a BLOCK tcp PORT 3 PRIORITY 3"),
        stored(2, None, "FROM ip 10.0.0.2 TO tag a ALLOW tcp PORT 2 PRIORITY 3"),
        stored(1, None, "FROM tag a TO ip 10.0.1.1 ALLOW tcp PORT 1 PRIORITY 3"),
        stored(0, None, "FROM tag a TO ip 10.0.1.2 BLOCK tcp PORT 1 PRIORITY 3"),
        stored(9, None, "FROM tag a TO ip 10.0.1.3 BLOCK tcp PORT 1 PRIORITY 3"),
    ];
    let mut reversed = rules.clone();
    reversed.reverse();
    for rules in [&rules[..], &reversed[..]] {
        let c = chains(rules, std::slice::from_ref(&a), me);
        assert_eq!(
            c.inbound,
            strings(&[
                "ip saddr 10.0.0.2 tcp dport 2 accept",
                "ip saddr 10.0.0.4 tcp dport 4 accept",
                "ip saddr 10.0.0.3 tcp dport 3 drop",
                "ip saddr 10.0.0.5 tcp dport 5 drop",
            ])
        );
        assert_eq!(
            c.outbound,
            strings(&[
                "ip daddr 10.0.1.2 tcp dport 1 drop",
                "ip daddr 10.0.1.3 tcp dport 1 drop",
                "ip daddr 10.0.1.1 tcp dport 1 accept",
            ])
        );
    }
}

// SmartOS's noRulesNeeded: a priority 0 inbound BLOCK and outbound ALLOW
// do what the defaults do and emit nothing; with a priority they count.
#[test]
fn rules_agreeing_with_the_default_emit_nothing_at_priority_0() {
    let a = with_tags(instance(1), json!({"a": true}));
    let me = a.uuid;
    let rules = [
        stored(1, None, "FROM any TO tag a BLOCK tcp PORT 143"),
        stored(2, None, "FROM tag a TO any ALLOW tcp PORT 25"),
    ];
    assert_eq!(chains(&rules, std::slice::from_ref(&a), me), Chains::default());
    let rules = [
        stored(1, None, "FROM any TO tag a BLOCK tcp PORT 143 PRIORITY 1"),
        stored(2, None, "FROM tag a TO any ALLOW tcp PORT 25 PRIORITY 1"),
    ];
    let c = chains(&rules, &[a], me);
    assert_eq!(c.inbound, strings(&["tcp dport 143 drop"]));
    assert_eq!(c.outbound, strings(&["tcp dport 25 accept"]));
}

// fw test/unit/owner.test.js: "tag to IP"
#[test]
fn owned_rules_apply_to_their_owners_instances() {
    let owner = Some(uuid(900));
    let vm1 = with_tags(instance(1), json!({"foo": true}));
    let vm2 = with_tags(with_owner(instance(2), owner), json!({"foo": true}));
    let insts = [vm1.clone(), vm2.clone()];
    let owned = stored(1, owner, "FROM tag \"foo\" TO ip 10.99.99.254 BLOCK tcp PORT 25");
    let out = compile_bare(std::slice::from_ref(&owned), &insts);
    assert!(out[&vm1.uuid].outbound.is_empty());
    assert_eq!(out[&vm2.uuid].outbound, strings(&["ip daddr 10.99.99.254 tcp dport 25 drop"]));
    let global = stored(2, None, "FROM tag \"foo\" TO ip 10.99.99.254 BLOCK tcp PORT 250");
    let out = compile_bare(&[owned, global], &insts);
    assert_eq!(out[&vm1.uuid].outbound, strings(&["ip daddr 10.99.99.254 tcp dport 250 drop"]));
    assert_eq!(
        out[&vm2.uuid].outbound,
        strings(&["ip daddr 10.99.99.254 tcp dport 25 drop", "ip daddr 10.99.99.254 tcp dport 250 drop",])
    );
}

// fw lib/fw.js rulesFromOtherSide: the other side's instances are left out
// only when both they and the rule have owners and these differ.
#[test]
fn other_side_owner_matching_is_loose() {
    let owner = Some(uuid(900));
    let me = with_tags(with_owner(instance(1), owner), json!({"db": true}));
    let same = with_tags(with_owner(instance(2), owner), json!({"www": true}));
    let other = with_tags(with_owner(instance(3), Some(uuid(901))), json!({"www": true}));
    let none = with_tags(with_owner(instance(4), None), json!({"www": true}));
    let rules = [stored(1, owner, "FROM tag www TO tag db ALLOW tcp PORT 5432")];
    let out = compile_bare(&rules, &[me.clone(), same, other, none]);
    assert_eq!(out[&me.uuid].inbound, strings(&["ip saddr { 10.88.88.2, 10.88.88.4 } tcp dport 5432 accept"]));
}

// fw test/unit/tags.test.js: "tags with values"
#[test]
fn tags_with_values() {
    let insts = [
        instance(1),
        with_tags(instance(2), json!({"role": "web"})),
        with_tags(instance(3), json!({"role": "db"})),
        with_tags(instance(4), json!({"role": "web"})),
        with_tags(instance(5), json!({"role": "mon"})),
    ];
    let owner = insts[0].owner_uuid;
    let rules = [
        stored(1, owner, "FROM any TO tag \"role\" = \"web\" ALLOW tcp PORT 80"),
        stored(2, owner, "FROM tag \"role\" = \"web\" TO tag \"role\" = \"mon\" ALLOW udp PORT 514"),
    ];
    let out = compile_bare(&rules, &insts);
    assert_eq!(out.len(), 5);
    for n in [1, 3] {
        assert_eq!(out[&uuid(n)], Chains::default());
    }
    for n in [2, 4] {
        assert_eq!(out[&uuid(n)].inbound, strings(&["tcp dport 80 accept"]));
        // An outbound ALLOW at priority 0 emits nothing.
        assert!(out[&uuid(n)].outbound.is_empty());
    }
    assert_eq!(out[&uuid(5)].inbound, strings(&["ip saddr { 10.88.88.2, 10.88.88.4 } udp dport 514 accept"]));
}

// fw test/unit/tags.test.js: "tags that target no VMs", "FWAPI-273: Tag
// without a value following one with"
#[test]
fn tags_that_name_no_instance() {
    let vm1 = instance(1);
    let owner = vm1.owner_uuid;
    let rules = [
        stored(1, owner, "FROM any TO tag \"doesnotexist\" ALLOW tcp PORT 80"),
        stored(2, owner, "FROM any TO tag \"exists\" = \"nada\" ALLOW tcp PORT 81"),
    ];
    let mut insts = vec![vm1, instance(2)];
    assert!(compile_bare(&rules, &insts).values().all(|c| *c == Chains::default()));
    insts.push(with_tags(instance(3), json!({"doesnotexist": true})));
    let out = compile_bare(&rules, &insts);
    assert_eq!(out[&uuid(3)].inbound, strings(&["tcp dport 80 accept"]));

    let vm = with_tags(instance(1), json!({"c": true}));
    let rules = [stored(1, vm.owner_uuid, "FROM any TO (tag \"a\" = \"b\" OR tag \"c\") ALLOW tcp PORT 25")];
    assert_eq!(chains(&rules, &[vm], uuid(1)).inbound, strings(&["tcp dport 25 accept"]));
}

// A side that resolves to no address emits nothing, rather than a
// statement matching every address.
#[test]
fn empty_sides_emit_nothing() {
    let me = with_tags(instance(1), json!({"db": true}));
    let no_ips = with_ips(with_tags(instance(2), json!({"www": true})), &[]);
    let rules = [
        stored(1, None, "FROM tag www TO tag db ALLOW tcp PORT 5432"),
        stored(2, None, "FROM tag nobody TO tag db ALLOW tcp PORT 1"),
        stored(3, None, &format!("FROM vm {} TO tag db ALLOW tcp PORT 2", uuid(77))),
        stored(4, None, "FROM tag db TO tag www BLOCK tcp PORT 3"),
    ];
    assert_eq!(chains(&rules, &[me, no_ips], uuid(1)), Chains::default());
}

// fw test/unit/icmp.test.js: "add / update ICMPv4", "add / update ICMPv6"
#[test]
fn icmp() {
    let vm = with_ips(instance(1), &["10.88.88.1", "fd00::1"]);
    let me = vm.uuid;
    for (rule, want) in [
        ("FROM ip 10.99.99.254 TO vm {me} ALLOW icmp TYPE 8", "ip saddr 10.99.99.254 icmp type 8 accept"),
        (
            "FROM ip 10.99.99.254 TO vm {me} ALLOW icmp TYPE 8 CODE 0",
            "ip saddr 10.99.99.254 icmp type 8 icmp code 0 accept",
        ),
        ("FROM ip 10.99.99.254 TO vm {me} ALLOW icmp TYPE ALL", "ip saddr 10.99.99.254 meta l4proto icmp accept"),
        ("FROM ip fd00::254 TO vm {me} ALLOW icmp6 TYPE 128", "ip6 saddr fd00::254 icmpv6 type 128 accept"),
        (
            "FROM ip fd00::254 TO vm {me} ALLOW icmp6 TYPE 128 CODE 0",
            "ip6 saddr fd00::254 icmpv6 type 128 icmpv6 code 0 accept",
        ),
        ("FROM ip fd00::254 TO vm {me} ALLOW icmp6 TYPE all", "ip6 saddr fd00::254 meta l4proto ipv6-icmp accept"),
        ("FROM any TO vm {me} ALLOW icmp6 TYPE 128", "meta nfproto ipv6 icmpv6 type 128 accept"),
        ("FROM any TO vm {me} ALLOW icmp TYPE all", "meta nfproto ipv4 meta l4proto icmp accept"),
    ] {
        let text = rule.replace("{me}", &me.to_string());
        let r = stored(1, None, &text);
        assert_eq!(chains(&[r], std::slice::from_ref(&vm), me).inbound, strings(&[want]), "{text}");
    }
    // fw test/unit/fw.test.js: "sorting: multiple icmp types": type-only
    // types share a set; each type with a code is its own statement.
    let text =
        format!("FROM any TO vm {me} ALLOW icmp (TYPE 8 CODE 0 AND TYPE 3 AND TYPE 11 CODE 0 AND TYPE 0 AND TYPE 3)");
    assert_eq!(
        chains(&[stored(1, None, &text)], std::slice::from_ref(&vm), me).inbound,
        strings(&[
            "meta nfproto ipv4 icmp type { 0, 3 } accept",
            "meta nfproto ipv4 icmp type 8 icmp code 0 accept",
            "meta nfproto ipv4 icmp type 11 icmp code 0 accept",
        ])
    );
    // Instances on the other side contribute only their addresses of the
    // protocol's family.
    let peer = with_tags(with_ips(instance(2), &["10.88.88.2", "fd00::2"]), json!({"p": 1}));
    let insts = [vm.clone(), peer];
    let r4 = stored(1, None, &format!("FROM tag p TO vm {me} ALLOW icmp TYPE 8"));
    let r6 = stored(2, None, &format!("FROM tag p TO vm {me} ALLOW icmp6 TYPE 128"));
    assert_eq!(
        chains(&[r4, r6], &insts, me).inbound,
        strings(&["ip saddr 10.88.88.2 icmp type 8 accept", "ip6 saddr fd00::2 icmpv6 type 128 accept",])
    );
}

// fw test/unit/ipsec.test.js: "IPsec rules and keepstate"
#[test]
fn ipsec() {
    let vm = instance(1);
    let me = vm.uuid;
    let owner = vm.owner_uuid;
    let rules = [
        stored(1, owner, &format!("FROM ip 1.2.3.4 TO vm {me} ALLOW ah")),
        stored(2, owner, &format!("FROM ip 1.2.3.4 TO vm {me} ALLOW esp")),
        stored(3, owner, &format!("FROM vm {me} TO any BLOCK ah")),
        stored(4, owner, &format!("FROM vm {me} TO any BLOCK esp")),
    ];
    let c = chains(&rules, &[vm], me);
    assert_eq!(
        c.inbound,
        strings(&["ip saddr 1.2.3.4 meta l4proto ah accept", "ip saddr 1.2.3.4 meta l4proto esp accept",])
    );
    assert_eq!(c.outbound, strings(&["meta l4proto ah drop", "meta l4proto esp drop"]));
}

// fw test/unit/wildcards.test.js: "any <-> vm", "any <-> all vms", "all
// ports"
#[test]
fn wildcards() {
    let insts =
        [instance(1), with_ips(instance(2), &["10.88.88.2", "fd00::2"]), with_owner(instance(3), Some(uuid(900)))];
    let owner = insts[0].owner_uuid;
    let rules = [
        stored(1, owner, "FROM any TO all vms ALLOW tcp PORT 22"),
        stored(2, owner, "FROM all vms TO all vms ALLOW udp PORT all PRIORITY 1"),
        stored(3, owner, &format!("FROM vm {} TO any BLOCK tcp PORT all", uuid(1))),
    ];
    let out = compile_bare(&rules, &insts);
    let peers = "ip saddr { 10.88.88.1, 10.88.88.2 } meta l4proto udp accept";
    let peers6 = "ip6 saddr fd00::2 meta l4proto udp accept";
    assert_eq!(out[&uuid(1)].inbound, strings(&[peers, peers6, "tcp dport 22 accept"]));
    assert_eq!(
        out[&uuid(1)].outbound,
        strings(&[
            "ip daddr { 10.88.88.1, 10.88.88.2 } meta l4proto udp accept",
            "ip6 daddr fd00::2 meta l4proto udp accept",
            "meta l4proto tcp drop",
        ])
    );
    assert_eq!(out[&uuid(2)].inbound, strings(&[peers, peers6, "tcp dport 22 accept"]));
    // Another owner's instance: none of these rules apply to it, and its
    // address is not among the peers.
    assert_eq!(out[&uuid(3)], Chains::default());
}

// fw test/unit/fw.test.js: "add: tag to subnet", "add: vm to subnet",
// "sorting: multiple ip and subnet rules", plus the overlaps nft refuses
// in one set.
#[test]
fn addresses_and_ports_in_sets() {
    let vm = with_tags(instance(1), json!({"a": true}));
    let me = vm.uuid;
    let peer = with_tags(with_ips(instance(2), &["10.1.2.3", "10.9.9.9", "fd00::9"]), json!({"p": 1}));
    let insts = [vm, peer];
    for (text, want) in [
        (
            "FROM (subnet 10.0.0.0/8 OR ip 10.1.2.3 OR ip 192.168.1.1) TO tag a ALLOW tcp PORT 1",
            vec!["ip saddr { 10.0.0.0/8, 192.168.1.1 } tcp dport 1 accept"],
        ),
        (
            "FROM (subnet 10.8.0.1/16 OR tag p OR subnet fd00::1/64) TO tag a ALLOW tcp PORT 1",
            vec![
                "ip saddr { 10.1.2.3, 10.8.0.0/16, 10.9.9.9 } tcp dport 1 accept",
                "ip6 saddr fd00::/64 tcp dport 1 accept",
            ],
        ),
        (
            "FROM ip 10.0.0.1 TO tag a ALLOW tcp PORTS 6 - 11, 10, 20-40, 41, 80, 80",
            vec!["ip saddr 10.0.0.1 tcp dport { 6-11, 20-41, 80 } accept"],
        ),
        ("FROM ip 10.0.0.1 TO tag a ALLOW udp (PORT 80 AND PORT 80)", vec!["ip saddr 10.0.0.1 udp dport 80 accept"]),
        ("FROM ip 10.0.0.1 TO tag a ALLOW udp PORTS 1-65535", vec!["ip saddr 10.0.0.1 udp dport 1-65535 accept"]),
        ("FROM tag a TO (subnet 0.0.0.0/0 OR subnet ::/0) BLOCK tcp PORT 25", vec![]),
    ] {
        let c = chains(&[stored(1, None, text)], &insts, me);
        assert_eq!(c.inbound, strings(&want), "{text}");
    }
    let c = chains(&[stored(1, None, "FROM tag a TO (subnet 0.0.0.0/0 OR subnet ::/0) BLOCK tcp PORT 25")], &insts, me);
    assert_eq!(c.outbound, strings(&["ip daddr 0.0.0.0/0 tcp dport 25 drop", "ip6 daddr ::/0 tcp dport 25 drop",]));
}

// fw test/unit/fw.test.js: "enable / disable rule"; only firewalled
// instances get chains.
#[test]
fn disabled_rules_and_unfirewalled_instances() {
    let mut off = instance(2);
    off.firewall_enabled = false;
    let insts = [instance(1), off];
    let mut r = stored(1, None, "FROM any TO all vms ALLOW tcp PORT 22");
    let out = compile_bare(std::slice::from_ref(&r), &insts);
    assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![uuid(1)]);
    assert_eq!(out[&uuid(1)].inbound, strings(&["tcp dport 22 accept"]));
    r.enabled = false;
    assert_eq!(compile_bare(&[r], &insts)[&uuid(1)], Chains::default());
    // An unfirewalled instance still counts as an address on the other side.
    let r = stored(1, None, &format!("FROM vm {} TO all vms ALLOW tcp PORT 5", uuid(2)));
    assert_eq!(compile_bare(&[r], &insts)[&uuid(1)].inbound, strings(&["ip saddr 10.88.88.2 tcp dport 5 accept"]));
}

// An instance on both sides gets both chains; one named twice on a side
// gets each statement once.
#[test]
fn both_sides() {
    let vm = with_tags(instance(1), json!({"a": true, "b": true}));
    let me = vm.uuid;
    let r = stored(1, None, &format!("FROM (tag a OR tag b OR vm {me}) TO tag a BLOCK udp PORT 53 PRIORITY 4"));
    let c = chains(&[r], &[vm], me);
    assert_eq!(c.inbound, strings(&["ip saddr 10.88.88.1 udp dport 53 drop"]));
    assert_eq!(c.outbound, strings(&["ip daddr 10.88.88.1 udp dport 53 drop"]));
}
