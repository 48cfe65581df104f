//! `vmadm update` payloads.
//!
//! A payload holds plain properties (`"alias": "web"`; `null` clears an
//! optional one) and operators on the map and array properties:
//!
//! | operator | on | takes |
//! |---|---|---|
//! | `set_<map>` / `remove_<map>` | tags, customer_metadata, internal_metadata, routes | an object / a list of keys |
//! | `add_<array>` / `update_<array>` / `remove_<array>` | nics (by `mac`), disks (by `path`), filesystems (by `target`) | objects / objects with the key / a list of keys |
//!
//! Which operators exist follows from the table: every [`Kind::Map`] property
//! has `set_`/`remove_`, every [`Kind::Objects`] property `add_`/`update_`/
//! `remove_` keyed by its `key`. They apply in the order remove, update,
//! add/set, after the plain properties. The merged object is then checked
//! again (memory caps move together as in SmartOS, see `normalize`).
//!
//! The result, an [`UpdatePlan`], says which top-level properties changed and
//! splits them into those applied at once and those needing a reboot.

use std::collections::HashSet;

use serde_json::{Map, Value};
use zonevisor_api::{PropertyWarning, ValidationErrors, VmObject};

use crate::check::{self, as_int, Mode};
use crate::normalize::{self, element_key, key_of, Ctx};
use crate::props::{lookup, top, Dflt, Kind, Lookup, Prop, Upd, MIN_SWAP, NONEMPTY, PROPS};
use crate::{payload_brand, Brand, READ_ONLY};

/// What an update does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpdatePlan {
    /// The VM object after the update.
    pub vm: VmObject,
    /// Top-level properties whose value changed (including memory caps
    /// moved along with `max_physical_memory` or `ram`).
    pub changed: Vec<String>,
    /// Those of `changed` that take effect at once, even while running
    /// (resource controls, antispoof flags, metadata, alias, ...).
    pub live: Vec<String>,
    /// Those of `changed` that take effect at the next boot (ram, vcpus,
    /// nic_tag and other NIC wiring, disks, filesystems, hostname, ...).
    /// `live` and `needs_reboot` together are exactly `changed`.
    pub needs_reboot: Vec<String>,
    /// Properties of the payload that were dropped (unknown, not for this
    /// brand, or not changeable) or adjusted (memory caps clamped).
    pub warnings: Vec<PropertyWarning>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum OpKind {
    Remove,
    Update,
    Add,
    Set,
}

struct Op<'a> {
    kind: OpKind,
    name: &'a str,
    target: &'static Prop,
    arg: &'a Value,
}

fn split_op(name: &str) -> Option<(OpKind, &str)> {
    [("set_", OpKind::Set), ("remove_", OpKind::Remove), ("add_", OpKind::Add), ("update_", OpKind::Update)]
        .into_iter()
        .find_map(|(pre, k)| name.strip_prefix(pre).map(|t| (k, t)))
}

fn op_fits(kind: OpKind, target: &Kind) -> bool {
    match target {
        Kind::Map { .. } => matches!(kind, OpKind::Set | OpKind::Remove),
        Kind::Objects { .. } => matches!(kind, OpKind::Add | OpKind::Update | OpKind::Remove),
        _ => false,
    }
}

/// True when `name` is an update operator (`set_tags`, `add_nics`, ...) for
/// some brand.
pub fn is_operator(name: &str) -> bool {
    split_op(name).is_some_and(|(k, t)| PROPS.iter().any(|p| p.name == t && op_fits(k, &p.kind)))
}

/// Validates an update of `current` and returns what it does. As SmartOS's
/// `vmadm update`, it drops misplaced properties with a warning (unknown
/// ones, and those that cannot change: given with the value they already
/// have, as in `vmadm get` output fed back, they are dropped silently) and
/// clamps contradicting memory caps; bad values fail it.
pub fn validate_update(current: &VmObject, update: &Value) -> Result<UpdatePlan, ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let brand = payload_brand(current.get("brand"), &mut errs).ok_or_else(|| errs.clone())?;
    let mut notes = Vec::new();
    let vm = apply(brand, Some(current), update, &mut errs, &mut notes);
    crate::smartos_names(&mut errs);
    if crate::fatal(&errs) {
        return Err(errs);
    }
    let mut warnings = crate::dropped(&errs, "update");
    warnings.extend(notes);
    let mut plan = UpdatePlan { vm, warnings, ..UpdatePlan::default() };
    let removed = current.keys().filter(|k| !plan.vm.contains_key(*k));
    let names: Vec<String> = plan.vm.keys().chain(removed).cloned().collect();
    for name in names {
        let (old, new) = (current.get(&name), plan.vm.get(&name));
        if old == new {
            continue;
        }
        if apply_class(brand, &name, old, new) == Upd::Live {
            plan.live.push(name.clone());
        } else {
            plan.needs_reboot.push(name.clone());
        }
        plan.changed.push(name);
    }
    Ok(plan)
}

/// Checks an update payload for `brand` without an instance, as
/// `vmadm validate update <brand>` does: names, types, values and the
/// rules between the properties it gives. The answer is empty when valid.
pub fn check_update_payload(brand: &str, update: &Value) -> ValidationErrors {
    let mut errs = ValidationErrors::default();
    match brand.parse::<Brand>() {
        Ok(b) => {
            apply(b, None, update, &mut errs, &mut Vec::new());
        }
        Err(e) => errs.bad_brand(brand, e.to_string()),
    }
    crate::smartos_names(&mut errs);
    errs
}

/// Applies `update` to `current` (or to an empty object when there is no
/// instance: then keys are not looked up and only given values are compared).
fn apply(
    brand: Brand,
    current: Option<&VmObject>,
    update: &Value,
    errs: &mut ValidationErrors,
    notes: &mut Vec<PropertyWarning>,
) -> VmObject {
    let mut vm = current.cloned().unwrap_or_default();
    let Some(obj) = update.as_object() else {
        errs.bad_value("payload", "must be a JSON object of properties to change");
        return vm;
    };
    let mut given = HashSet::new();
    let mut ops = Vec::new();
    let mut resets = Vec::new();
    for (k, v) in obj {
        if let Some((kind, target)) = split_op(k) {
            match lookup(PROPS, target, Some(brand)) {
                Lookup::Found(t) if op_fits(kind, &t.kind) => {
                    ops.push(Op { kind, name: k, target: t, arg: v });
                    continue;
                }
                Lookup::NotForBrand if is_operator(k) => {
                    errs.bad_property(k, format!("{target} {}", check::not_for_brand(PROPS, target, brand)));
                    continue;
                }
                _ => {}
            }
        }
        // SmartOS: an empty string unsets a property, as null does.
        let v = if v.as_str() == Some("") { &Value::Null } else { v };
        let p = match lookup(PROPS, k, Some(brand)) {
            Lookup::Found(p) => p,
            Lookup::Unknown => {
                errs.bad_property(k, "is not a vmadm property");
                continue;
            }
            Lookup::NotForBrand => {
                errs.bad_property(k, check::not_for_brand(PROPS, k, brand));
                continue;
            }
        };
        // What cannot change is dropped silently when it is given as it
        // stands (or cleared), so that `vmadm get` output can be fed back
        // into `vmadm update`; a different value is dropped with a warning.
        let inert = current.is_some_and(|c| v.is_null() || c.get(k) == Some(v));
        match (p.update, p.kind) {
            (Upd::ReadOnly | Upd::Fixed, _) | (_, Kind::Map { .. } | Kind::Objects { .. }) if inert => {}
            (Upd::ReadOnly, _) => errs.bad_property(k, READ_ONLY),
            (Upd::Fixed, _) => errs.bad_property(k, "cannot be changed after the instance is created"),
            (_, Kind::Map { .. }) => {
                errs.bad_property(k, format!("cannot be replaced by update; use set_{k} / remove_{k}"))
            }
            (_, Kind::Objects { .. }) => {
                errs.bad_property(k, format!("cannot be replaced by update; use add_{k} / update_{k} / remove_{k}"))
            }
            _ if v.is_null() && p.clearable() => {
                vm.remove(k);
                given.insert(k.clone());
            }
            // Clearing a property that always has a value restores its default.
            _ if v.is_null() => {
                resets.push(p);
                given.insert(k.clone());
            }
            _ => {
                if let Some(nv) = check::value(&p.kind, k, v, Some(brand), errs) {
                    vm.insert(k.clone(), nv);
                    given.insert(k.clone());
                }
            }
        }
    }
    ops.sort_by_key(|o| o.kind);
    for op in &ops {
        apply_op(brand, current.is_some(), &mut vm, op, errs);
    }
    // Memory caps first: the others' defaults follow max_physical_memory.
    resets.sort_by_key(|p| p.name != "max_physical_memory");
    for p in resets {
        reset(brand, &mut vm, p);
    }
    if let Some(old) = current {
        normalize::derive_update(brand, old, &mut vm, &mut given);
    }
    if !errs.bad_values.iter().any(|b| crate::MEMORY.contains(&b.as_str())) {
        normalize::clamp_memory(brand, &mut vm, &|n| given.contains(n), notes);
    }
    normalize::no_cap_is_absent(&mut vm);
    // The docker keys this update sets (what is stored was checked when stored).
    if let Some(Value::Object(m)) = vm.get("internal_metadata") {
        let before = current.and_then(|c| c.get("internal_metadata"));
        let changed: Map<String, Value> = m
            .iter()
            .filter(|(k, v)| before.and_then(|b| b.get(k.as_str())) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        crate::docker::check_keys(&changed, errs);
    }
    if current.is_some_and(|c| c.get("docker") != Some(&Value::Bool(true))) {
        crate::docker::apply_defaults(&mut vm);
    }
    normalize::metadata_size(&vm, errs);
    vm
}

/// Gives `p` the value a create would have given it (`null` in an update).
fn reset(brand: Brand, vm: &mut VmObject, p: &Prop) {
    let int = |vm: &VmObject, n: &str| vm.get(n).and_then(as_int);
    let v = match p.default {
        Dflt::None => None,
        Dflt::Bool(b) => Some(Value::Bool(b)),
        Dflt::Int(n) => Some(Value::from(n)),
        Dflt::Str(s) => Some(Value::from(s)),
        Dflt::EmptyList => Some(Value::Array(Vec::new())),
        Dflt::EmptyMap => Some(Value::Object(Map::new())),
        Dflt::Derived => {
            let mpm = int(vm, "max_physical_memory").unwrap_or(256);
            match p.name {
                "max_physical_memory" if brand.is_hvm() => {
                    int(vm, "ram").map(|r| Value::from(r + normalize::default_memory_overhead(brand)))
                }
                "max_physical_memory" => Some(Value::from(256)),
                "max_swap" => Some(Value::from(mpm.max(MIN_SWAP))),
                "max_locked_memory" | "max_shm_memory" | "tmpfs" => Some(Value::from(mpm)),
                // SmartOS: a cleared quota is no quota.
                "quota" => Some(Value::from(0)),
                _ => None,
            }
        }
    };
    match v {
        Some(v) => vm.insert(p.name.to_string(), v),
        None => vm.remove(p.name),
    };
}

fn apply_op(brand: Brand, known: bool, vm: &mut VmObject, op: &Op<'_>, errs: &mut ValidationErrors) {
    let coll = op.target.name;
    match (op.kind, op.target.kind) {
        (OpKind::Set, kind @ Kind::Map { .. }) => {
            let Some(Value::Object(set)) = check::value(&kind, op.name, op.arg, Some(brand), errs) else {
                return;
            };
            let map = vm.entry(coll).or_insert_with(|| Value::Object(Map::new()));
            if let Some(map) = map.as_object_mut() {
                map.extend(set);
            }
        }
        (OpKind::Remove, kind) => {
            let keys = Kind::List { item: NONEMPTY, max: usize::MAX };
            let Some(Value::Array(keys)) = check::value(&keys, op.name, op.arg, Some(brand), errs) else {
                return;
            };
            let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
            match (kind, vm.get_mut(coll)) {
                (Kind::Map { .. }, Some(Value::Object(map))) => {
                    for k in keys {
                        map.remove(k);
                    }
                }
                (Kind::Objects { key, .. }, Some(Value::Array(list))) => {
                    for k in keys {
                        let want = Some(key_of(coll, k));
                        match list.iter().position(|e| element_key(coll, key, e) == want) {
                            Some(i) => {
                                list.remove(i);
                            }
                            None => errs.bad_value(op.name, format!("no element of {coll} has {key} {k}")),
                        }
                    }
                    if coll == "nics" && !list.is_empty() {
                        normalize::settle_primary(list, None);
                    }
                    // SmartOS leaves out an emptied list that has no default.
                    if list.is_empty() && op.target.default == Dflt::None {
                        vm.remove(coll);
                    }
                }
                _ if known && !keys.is_empty() && matches!(kind, Kind::Objects { .. }) => {
                    errs.bad_value(op.name, format!("the instance has no {coll}"))
                }
                _ => {}
            }
        }
        (OpKind::Add, Kind::Objects { props, key }) => add(brand, vm, op, props, key, errs),
        (OpKind::Update, Kind::Objects { props, key }) => modify(brand, known, vm, op, props, key, errs),
        _ => {}
    }
}

fn add(brand: Brand, vm: &mut VmObject, op: &Op<'_>, props: &'static [Prop], key: &str, errs: &mut ValidationErrors) {
    let coll = op.target.name;
    let Some(arr) = op.arg.as_array() else {
        errs.bad_value(op.name, format!("must be an array of {coll} objects; got {}", check::shown(op.arg)));
        return;
    };
    let before = check::count(errs);
    let mut new: Vec<Value> = arr
        .iter()
        .enumerate()
        .map(|(i, el)| {
            let prefix = format!("{}.{i}", op.name);
            check::object(props, key, &prefix, el, Some(brand), Mode::Add, errs)
                .map_or_else(|| el.clone(), Value::Object)
        })
        .collect();
    let existing = match vm.get(coll) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let ctx = Ctx { brand, vm, existing: &existing, prefix: op.name };
    normalize::new_elements(coll, &ctx, &mut new, errs);
    if check::count(errs) != before {
        return;
    }
    let new_flag = |flag: &str| new.iter().position(|e| e.get(flag) == Some(&Value::Bool(true)));
    let (new_primary, new_boot) = (new_flag("primary"), new_flag("boot"));
    let mut list = existing;
    let first_new = list.len();
    list.extend(new);
    match coll {
        // SmartOS: a NIC added as primary takes the flag from the others;
        // added otherwise, it leaves the flag where it is (or nowhere).
        "nics" if new_primary.is_some() => normalize::settle_primary(&mut list, new_primary.map(|i| first_new + i)),
        "disks" if new_boot.is_some() => set_only(&mut list, "boot", new_boot.map(|i| first_new + i)),
        _ => {}
    }
    vm.insert(coll.into(), Value::Array(list));
}

/// Sets boolean `flag` true on element `keep` and false on the others.
fn set_only(list: &mut [Value], flag: &str, keep: Option<usize>) {
    for (i, el) in list.iter_mut().enumerate() {
        if let Some(o) = el.as_object_mut() {
            o.insert(flag.into(), Value::Bool(Some(i) == keep));
        }
    }
}

fn modify(
    brand: Brand,
    known: bool,
    vm: &mut VmObject,
    op: &Op<'_>,
    props: &'static [Prop],
    key: &str,
    errs: &mut ValidationErrors,
) {
    let coll = op.target.name;
    let Some(arr) = op.arg.as_array() else {
        errs.bad_value(op.name, format!("must be an array of {coll} objects; got {}", check::shown(op.arg)));
        return;
    };
    let mut list = match vm.get(coll) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for (i, el) in arr.iter().enumerate() {
        let prefix = format!("{}.{i}", op.name);
        // Used for this update only, never stored (bhyve disks).
        let mut el = el.clone();
        let allow_shrink = (coll == "disks" && brand == Brand::Bhyve)
            && el
                .as_object_mut()
                .and_then(|o| o.remove("dangerous_allow_shrink"))
                .is_some_and(|v| v == Value::Bool(true) || v == "true");
        let before = check::count(errs);
        let changes = check::object(props, key, &prefix, &el, Some(brand), Mode::Update, errs);
        let Some(changes) = changes.filter(|_| check::count(errs) == before) else { continue };
        let Some(want) = element_key(coll, key, &Value::Object(changes.clone())) else {
            errs.missing(&format!("{prefix}.{key}"), format!("identifies the element of {coll} to update"));
            continue;
        };
        if changes.get("primary") == Some(&Value::Bool(false)) {
            errs.bad_value(&format!("{prefix}.primary"), "only true is valid; mark another nic primary instead");
            continue;
        }
        let Some(pos) = list.iter().position(|e| element_key(coll, key, e).as_deref() == Some(&want)) else {
            if known {
                errs.bad_value(&format!("{prefix}.{key}"), format!("no element of {coll} has {key} {want}"));
            }
            continue;
        };
        if coll == "disks" {
            let (old, new) = (list[pos].get("size").and_then(as_int), changes.get("size").and_then(as_int));
            if let (Some(old), Some(new)) = (old, new) {
                if new < old && !allow_shrink {
                    errs.bad_value(
                        &format!("{prefix}.size"),
                        format!(
                            "{new} MiB is smaller than the disk ({old} MiB) and would destroy its end; \
                             add dangerous_allow_shrink: true to shrink it"
                        ),
                    );
                    continue;
                }
            }
        }
        if let Some(obj) = list[pos].as_object_mut() {
            for (k, v) in &changes {
                if k == key {
                    continue;
                }
                if v.is_null() {
                    obj.remove(k);
                } else {
                    obj.insert(k.clone(), v.clone());
                }
            }
            if coll == "nics" {
                legacy_address_update(obj, &changes);
                normalize::derive_ip_fields(obj);
            }
        }
        for flag in ["primary", "boot"] {
            if changes.get(flag) == Some(&Value::Bool(true)) {
                if flag == "primary" {
                    normalize::settle_primary(&mut list, Some(pos));
                } else {
                    set_only(&mut list, flag, Some(pos));
                }
            }
        }
    }
    vm.insert(coll.into(), Value::Array(list));
}

/// An `update_nics` element that names the deprecated `ip` / `netmask` /
/// `gateway` instead of `ips` / `gateways` changes the lists (SmartOS's
/// `updateNic`): `ip` with the given or current netmask replaces `ips`.
fn legacy_address_update(nic: &mut Map<String, Value>, changes: &Map<String, Value>) {
    if !changes.contains_key("ips") && (changes.contains_key("ip") || changes.contains_key("netmask")) {
        let ip = nic.get("ip").and_then(Value::as_str).map(String::from);
        let len = nic
            .get("netmask")
            .and_then(Value::as_str)
            .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok())
            .map(|m| u32::from(m).leading_ones());
        match (ip.as_deref(), len) {
            (Some("dhcp"), _) => {
                nic.insert("ips".into(), Value::from(vec!["dhcp"]));
            }
            (Some(ip), Some(len)) => {
                nic.insert("ips".into(), Value::from(vec![format!("{ip}/{len}")]));
            }
            _ => {}
        }
    }
    if !changes.contains_key("gateways") {
        if let Some(gw) = changes.get("gateway").cloned() {
            nic.insert("gateways".into(), Value::Array(vec![gw]));
        }
    }
}

/// Whether a change of `name` from `old` to `new` applies at once.
fn apply_class(brand: Brand, name: &str, old: Option<&Value>, new: Option<&Value>) -> Upd {
    let Some(p) = top(name, brand) else { return Upd::Live };
    let Kind::Objects { props, key } = p.kind else {
        return if p.update == Upd::Live { Upd::Live } else { Upd::Reboot };
    };
    let empty = Vec::new();
    let list = |v: Option<&Value>| v.and_then(Value::as_array).unwrap_or(&empty).clone();
    let (old, new) = (list(old), list(new));
    let keys = |l: &[Value]| l.iter().map(|e| element_key(name, key, e)).collect::<Vec<_>>();
    if keys(&old) != keys(&new) {
        return Upd::Reboot;
    }
    for (o, n) in old.iter().zip(&new) {
        let (o, n) = (o.as_object(), n.as_object());
        let members: HashSet<&String> = o.into_iter().chain(n).flat_map(|m| m.keys()).collect();
        for m in members {
            if o.and_then(|o| o.get(m)) != n.and_then(|n| n.get(m))
                && !matches!(lookup(props, m, Some(brand)), Lookup::Found(p) if p.update == Upd::Live)
            {
                return Upd::Reboot;
            }
        }
    }
    Upd::Live
}
