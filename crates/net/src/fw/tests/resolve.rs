//! `fwadm vms` and `fwadm rules`: fw `test/unit/vms.test.js`,
//! `owner.test.js`, `tags.test.js`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;

/// The default owner of fw's test VMs (`helpers.generateVM`).
const DEFAULT_OWNER: &str = "00000000-0000-0000-0000-000000000000";

pub(super) fn uuid(n: u32) -> Uuid {
    format!("00000000-0000-4000-8000-{n:012}").parse().unwrap()
}

/// A test instance as `helpers.generateVM` makes it: firewall enabled, one
/// IPv4 address, the default owner, no tags.
pub(super) fn instance(n: u32) -> Instance {
    Instance {
        uuid: uuid(n),
        owner_uuid: Some(DEFAULT_OWNER.parse().unwrap()),
        tags: BTreeMap::new(),
        ips: vec![format!("10.88.88.{n}").parse().unwrap()],
        firewall_enabled: true,
    }
}

pub(super) fn with_tags(mut i: Instance, tags: Value) -> Instance {
    i.tags = serde_json::from_value(tags).unwrap();
    i
}

pub(super) fn with_owner(mut i: Instance, owner: Option<Uuid>) -> Instance {
    i.owner_uuid = owner;
    i
}

pub(super) fn with_ips(mut i: Instance, ips: &[&str]) -> Instance {
    i.ips = ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect();
    i
}

pub(super) fn stored(n: u32, owner: Option<Uuid>, text: &str) -> StoredRule {
    StoredRule {
        uuid: uuid(1000 + n),
        enabled: true,
        owner_uuid: owner,
        global: owner.is_none(),
        description: None,
        rule: ok(text),
        version: None,
    }
}

// fw test/unit/vms.test.js: "non-existent VM"
#[test]
fn rule_naming_no_local_vm() {
    let other_owner = Some(uuid(900));
    let r = stored(1, other_owner, &format!("FROM vm {} TO tag role = web ALLOW tcp PORT 80", uuid(999)));
    assert_eq!(vms(&r, &[instance(1), instance(2)]), Vec::<Uuid>::new());
}

// fw test/unit/vms.test.js: "all vms -> local VM"
#[test]
fn all_vms_of_the_owner() {
    let owner = Some(uuid(900));
    let insts = [with_owner(instance(1), owner), instance(2)];
    let r = stored(1, owner, &format!("FROM all vms TO vm {} ALLOW tcp PORT all", uuid(1)));
    assert_eq!(vms(&r, &insts), vec![uuid(1)]);
    // The same rule, global: every instance.
    let r = stored(1, None, &format!("FROM all vms TO vm {} ALLOW tcp PORT all", uuid(1)));
    assert_eq!(vms(&r, &insts), vec![uuid(1), uuid(2)]);
}

// fw test/unit/vms.test.js: "tags with boolean values"
#[test]
fn tag_values_compare_as_text() {
    let owner = Some(uuid(900));
    let insts = [
        with_owner(instance(1), owner),
        with_tags(with_owner(instance(2), owner), json!({"private": "true"})),
        with_tags(with_owner(instance(3), owner), json!({"private": true})),
        instance(4),
    ];
    let r = stored(1, owner, "FROM ip 10.0.1.1 TO tag private = true ALLOW tcp PORT all");
    assert_eq!(vms(&r, &insts), vec![uuid(2), uuid(3)]);

    // Numbers too, as JavaScript prints them.
    let insts = [
        with_tags(instance(1), json!({"n": 5})),
        with_tags(instance(2), json!({"n": "5"})),
        with_tags(instance(3), json!({"n": 5.0})),
        with_tags(instance(4), json!({"n": 5.5})),
        with_tags(instance(5), json!({"n": "05"})),
        with_tags(instance(6), json!({"n": null})),
        with_tags(instance(7), json!({"n": [5]})),
    ];
    let r = stored(1, None, "FROM any TO tag n = 5 ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(1), uuid(2), uuid(3)]);
    let r = stored(1, None, "FROM any TO tag n = \"5.5\" ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(4)]);
    // A bare tag matches whatever the value.
    let r = stored(1, None, "FROM any TO tag n ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts).len(), 7);
    // -0 prints as 0 in JavaScript; booleans as true and false.
    let insts = [with_tags(instance(1), json!({"n": -0.0})), with_tags(instance(2), json!({"n": false}))];
    let r = stored(1, None, "FROM any TO tag n = 0 ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(1)]);
    let r = stored(1, None, "FROM any TO tag n = \"false\" ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(2)]);
    // Names and values are case sensitive.
    let r = stored(1, None, "FROM any TO tag N ALLOW tcp PORT 1");
    assert!(vms(&r, &insts).is_empty());
}

// fw test/unit/vms.test.js: "firewall disabled", "rule disabled"
#[test]
fn firewall_disabled_instances_are_left_out_but_disabled_rules_count() {
    let owners = [Some(uuid(900)), Some(uuid(901))];
    let web = json!({"role": "web"});
    let mut off = with_tags(with_owner(instance(2), owners[0]), web.clone());
    off.firewall_enabled = false;
    let mut unset = with_tags(with_owner(instance(1), owners[0]), web.clone());
    unset.firewall_enabled = false;
    let insts = [unset, off, with_tags(with_owner(instance(3), owners[1]), web)];
    let r = stored(1, owners[0], "FROM ip 10.0.1.1 TO tag role = web ALLOW tcp PORT 80");
    assert!(vms(&r, &insts).is_empty());
    // `fwadm rules` still lists it for those instances.
    assert_eq!(rules_for(uuid(2), std::slice::from_ref(&r), &insts), vec![r.uuid]);

    let owner = Some(uuid(900));
    let inst = with_owner(instance(1), owner);
    let mut r = stored(1, owner, &format!("FROM ip 10.0.1.1 TO vm {} ALLOW tcp PORT 2020", uuid(1)));
    r.enabled = false;
    assert_eq!(vms(&r, &[inst]), vec![uuid(1)]);
}

// fw test/unit/vms.test.js: "ip, vm, vm -> ip, vm, vm"
#[test]
fn ip_and_vm_targets() {
    let owner = Some(uuid(900));
    let insts = [with_owner(instance(1), owner)];
    let r = stored(
        1,
        owner,
        &format!(
            "FROM (ip 239.0.0.1 OR vm {other} OR vm {me}) TO (ip 239.0.0.1 OR vm {other} OR vm {me}) \
             ALLOW udp (PORT 4803 AND PORT 4804)",
            other = uuid(77),
            me = uuid(1)
        ),
    );
    assert_eq!(vms(&r, &insts), vec![uuid(1)]);
}

// SmartOS's vmsByRules walks `ip` targets too: an instance whose address
// a rule names is affected by it (subnets are not looked up).
#[test]
fn ip_target_names_the_instance_with_that_address() {
    let insts = [instance(5), with_ips(instance(6), &["fd00::6"])];
    let r = stored(1, None, "FROM ip 10.88.88.5 TO tag nobody ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(5)]);
    let r = stored(1, None, "FROM ip fd00::6 TO tag nobody ALLOW tcp PORT 1");
    assert_eq!(vms(&r, &insts), vec![uuid(6)]);
    let r = stored(1, None, "FROM subnet 10.88.88.0/24 TO tag nobody ALLOW tcp PORT 1");
    assert!(vms(&r, &insts).is_empty());
    assert_eq!(rules_for(uuid(5), std::slice::from_ref(&r), &insts), Vec::<Uuid>::new());
}

// fw test/unit/owner.test.js: "tag to IP"; tags.test.js: "tags that target
// no VMs" (fwadm rules for an instance no rule names is empty).
#[test]
fn rules_for_an_instance() {
    let owner = Some(uuid(900));
    let insts = [
        with_tags(instance(1), json!({"foo": true})),
        with_tags(with_owner(instance(2), owner), json!({"foo": true})),
        instance(3),
    ];
    let rules = [
        stored(1, owner, "FROM tag \"foo\" TO ip 10.99.99.254 BLOCK tcp PORT 25"),
        stored(2, None, "FROM tag \"foo\" TO ip 10.99.99.254 BLOCK tcp PORT 250"),
        stored(3, None, "FROM any TO tag \"doesnotexist\" ALLOW tcp PORT 80"),
        stored(4, None, "FROM any TO tag \"exists\" = \"nada\" ALLOW tcp PORT 81"),
        stored(5, None, "FROM any TO all vms ALLOW tcp PORT 22"),
    ];
    assert_eq!(vms(&rules[0], &insts), vec![uuid(2)]);
    assert_eq!(vms(&rules[1], &insts), vec![uuid(1), uuid(2)]);
    assert_eq!(rules_for(uuid(1), &rules, &insts), vec![rules[1].uuid, rules[4].uuid]);
    assert_eq!(rules_for(uuid(2), &rules, &insts), vec![rules[0].uuid, rules[1].uuid, rules[4].uuid]);
    assert_eq!(rules_for(uuid(3), &rules, &insts), vec![rules[4].uuid]);
    assert!(rules_for(uuid(4), &rules, &insts).is_empty(), "unknown VM");
    // An owned rule never names an instance without an owner.
    let no_owner = [with_owner(with_tags(instance(9), json!({"foo": 1})), None)];
    assert!(rules_for(uuid(9), &rules[..1], &no_owner).is_empty());
}

#[test]
fn instances_are_listed_once_in_their_order() {
    let insts = [with_tags(instance(3), json!({"a": 1, "b": 2})), with_tags(instance(1), json!({"a": 1})), instance(2)];
    let r = stored(
        1,
        None,
        &format!("FROM (tag a OR tag b OR vm {}) TO (tag a OR vm {}) ALLOW tcp PORT 1", uuid(3), uuid(3)),
    );
    assert_eq!(vms(&r, &insts), vec![uuid(3), uuid(1)]);
}
