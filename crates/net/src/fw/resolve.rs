//! Which instances a rule names, and which rules name an instance
//! (`fwadm vms` and `fwadm rules`), with SmartOS's owner and tag matching.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde_json::Value;
use uuid::Uuid;

use super::rule::{Side, Target};
use super::StoredRule;

/// What the firewall needs to know of an instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instance {
    /// The instance's UUID.
    pub uuid: Uuid,
    /// Its owner; rules with an `owner_uuid` apply only to instances with
    /// the same owner.
    pub owner_uuid: Option<Uuid>,
    /// Its `tags`, as in its payload.
    pub tags: BTreeMap<String, Value>,
    /// The addresses of all its NICs (not `dhcp`/`addrconf`, which have no
    /// address to name).
    pub ips: Vec<IpAddr>,
    /// `firewall_enabled`: rules are compiled only for these.
    pub firewall_enabled: bool,
}

/// The instances `rule` affects (`fwadm vms <rule>`): those with their
/// firewall enabled that a `vm`, `tag`, `all vms` or `ip` target on either
/// side names, restricted to the rule owner's instances when the rule has an
/// owner. Whether the rule itself is enabled does not matter. In the order
/// of `instances`, each once.
pub fn vms(rule: &StoredRule, instances: &[Instance]) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    instances
        .iter()
        .filter(|i| i.firewall_enabled && names(rule, i))
        .filter(|i| seen.insert(i.uuid))
        .map(|i| i.uuid)
        .collect()
}

/// The rules that name instance `vm` (`fwadm rules <vm>`), enabled or not,
/// by the same matching as [`vms`] but whether or not its firewall is
/// enabled; in the order of `rules`. Empty when `vm` is not in `instances`.
pub fn rules_for(vm: Uuid, rules: &[StoredRule], instances: &[Instance]) -> Vec<Uuid> {
    let Some(instance) = instances.iter().find(|i| i.uuid == vm) else {
        return Vec::new();
    };
    rules.iter().filter(|r| names(r, instance)).map(|r| r.uuid).collect()
}

/// Whether either side of `rule` names `instance` (SmartOS's
/// `vmsByRules`/`rulesByVMs`: `ip` targets count, subnets do not).
fn names(rule: &StoredRule, instance: &Instance) -> bool {
    if !owned_by(rule, instance) {
        return false;
    }
    let side_names = |side: &Side| match side {
        Side::Any => false,
        Side::AllVms => true,
        Side::Targets(targets) => targets.iter().any(|t| match t {
            Target::Ip(ip) => instance.ips.contains(ip),
            Target::Subnet(_) => false,
            other => target_is(other, instance),
        }),
    };
    side_names(rule.rule.from()) || side_names(rule.rule.to())
}

/// Whether an instance is within the rule's owner: a rule with an owner
/// applies only to instances with that same owner, a global one to all.
pub(super) fn owned_by(rule: &StoredRule, instance: &Instance) -> bool {
    match rule.owner_uuid {
        Some(owner) => instance.owner_uuid == Some(owner),
        None => true,
    }
}

/// Whether a `vm` or `tag` target names `instance`.
pub(super) fn target_is(target: &Target, instance: &Instance) -> bool {
    match target {
        Target::Vm(uuid) => *uuid == instance.uuid,
        Target::Tag { name, value: None } => instance.tags.contains_key(name),
        Target::Tag { name, value: Some(want) } => {
            instance.tags.get(name).and_then(tag_text).is_some_and(|have| have == *want)
        }
        Target::Ip(_) | Target::Subnet(_) => false,
    }
}

/// A tag value as SmartOS compares it with a rule's `tag name = value`: as
/// JavaScript turns it into an object key, so the number `5` and the string
/// `"5"` match `= 5`, and `true` and `"true"` match `= true`. Other JSON
/// values (null, arrays, objects) match no value.
fn tag_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(js_number(n)),
        _ => None,
    }
}

/// JavaScript's `String(n)` for the numbers JSON tags carry: integers
/// without a fraction (`5.0` is `"5"`), others in Rust's shortest form.
fn js_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        // `+ 0.0` turns -0 into 0, as JavaScript prints it.
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 => {
            format!("{:.0}", f + 0.0)
        }
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}
