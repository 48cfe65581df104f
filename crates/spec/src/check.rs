//! Checking one payload value against its table entry.
//!
//! Each check records every problem it finds in a [`ValidationErrors`] under
//! the name a SmartOS user reads (`max_swap`, `nics.0.vlan_id`) and returns
//! the normalized value: integers given as strings of digits become numbers,
//! `"true"`/`"false"` become booleans, comma-separated lists become arrays and
//! UUIDs become lowercase.

use serde_json::{Map, Value};
use zonevisor_api::ids::parse_hyphenated;
use zonevisor_api::ValidationErrors;

use crate::props::{lookup, Kind, Lookup, MapVal, Prop, Upd, MIB_MAX};
use crate::Brand;

/// How the members of an array element are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A new element (`nics` at create, `add_nics`): required members must be
    /// present and `null` members are ignored.
    Add,
    /// Changes to an existing element (`update_nics`): only the key and
    /// updatable members; `null` removes an optional member.
    Update,
}

/// A value as a user would recognise it in a reason, cut to a readable length.
pub(crate) fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// What a value of `kind` must be, in words.
pub(crate) fn expected(kind: &Kind) -> String {
    match kind {
        Kind::Uuid => "a UUID (36 characters: 8-4-4-4-12 hex digits with hyphens)".into(),
        Kind::Bool => "true or false".into(),
        Kind::Int { min, max } if *max >= MIB_MAX => format!("an integer ≥ {min}"),
        Kind::Int { min, max } => format!("an integer from {min} to {max}"),
        Kind::Str(f) => f.form.into(),
        Kind::List { item, max } | Kind::Joined { item, max } => {
            format!("a list (array or comma-separated string) of at most {max} items, each {}", item.form)
        }
        Kind::Map { key, val: MapVal::Scalar } => {
            format!("an object whose keys are {} and values strings, numbers or booleans", key.form)
        }
        Kind::Map { key, val: MapVal::Str(f) } => {
            format!("an object whose keys are {} and values {}", key.form, f.form)
        }
        Kind::Objects { .. } => "an array of objects".into(),
    }
}

fn refuse(kind: &Kind, name: &str, v: &Value, errs: &mut ValidationErrors) -> Option<Value> {
    errs.bad_value(name, format!("must be {}; got {}", expected(kind), shown(v)));
    None
}

/// Reads an integer: a JSON integer, an integral float or a string of digits.
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Checks `v` against `kind`; returns the normalized value, or `None` after
/// recording why it is refused under `name`.
pub(crate) fn value(
    kind: &Kind,
    name: &str,
    v: &Value,
    brand: Option<Brand>,
    errs: &mut ValidationErrors,
) -> Option<Value> {
    match kind {
        Kind::Uuid => match v.as_str().map(parse_hyphenated) {
            Some(Ok(u)) => Some(Value::String(u.hyphenated().to_string())),
            _ => refuse(kind, name, v, errs),
        },
        Kind::Bool => match v {
            Value::Bool(b) => Some(Value::Bool(*b)),
            Value::String(s) if s == "true" || s == "false" => Some(Value::Bool(s == "true")),
            // SmartOS's tests mark the primary NIC with 1 as well.
            Value::Number(n) if name.ends_with(".primary") && n.as_u64() == Some(1) => Some(Value::Bool(true)),
            _ => refuse(kind, name, v, errs),
        },
        Kind::Int { min, max } => match as_int(v) {
            Some(n) if (*min..=*max).contains(&n) => Some(Value::from(n)),
            _ => refuse(kind, name, v, errs),
        },
        Kind::Str(f) => match v.as_str() {
            Some(s) if (f.test)(s) => Some(Value::String(s.to_string())),
            _ => refuse(kind, name, v, errs),
        },
        Kind::Joined { item, max } => {
            let list = Kind::List { item: *item, max: *max };
            // SmartOS: an item of an array may not hold a comma (the list is
            // kept joined by commas).
            if let Some(bad) = v.as_array().and_then(|a| a.iter().filter_map(Value::as_str).find(|s| s.contains(','))) {
                errs.bad_value(name, format!("items of an array may not contain commas; got {bad:?}"));
                return None;
            }
            let items = value(&list, name, v, brand, errs)?;
            let items: Vec<&str> = items.as_array()?.iter().filter_map(Value::as_str).collect();
            Some(Value::String(items.join(",")))
        }
        Kind::List { item, max } => {
            let items: Option<Vec<String>> = match v {
                Value::String(s) => {
                    Some(s.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect())
                }
                Value::Array(a) => a
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            match items {
                Some(items) if items.len() > *max => {
                    let why = match name.rsplit('.').next() {
                        // SmartOS's own words for these two.
                        Some("allowed_ips") => format!("Maximum of {max} allowed_ips per nic"),
                        Some("allowed_dhcp_cids") => format!(
                            "nics.*.allowed_dhcp_cids contains {} Client Identifiers, but is limited to {max}",
                            items.len()
                        ),
                        _ => format!("has {} items; at most {max} are allowed", items.len()),
                    };
                    errs.bad_value(name, why);
                    None
                }
                Some(items) => match items.iter().find(|i| !(item.test)(i)) {
                    Some(bad) => {
                        let why = match name.rsplit('.').next() {
                            Some("allowed_dhcp_cids") => {
                                format!("Invalid value(s) for: nics.*.allowed_dhcp_cids: {bad:?} is not {}", item.form)
                            }
                            _ => format!("each item must be {}; got {bad:?}", item.form),
                        };
                        errs.bad_value(name, why);
                        None
                    }
                    None => Some(Value::from(items)),
                },
                None => refuse(kind, name, v, errs),
            }
        }
        Kind::Map { key, val } => {
            let Some(obj) = v.as_object() else { return refuse(kind, name, v, errs) };
            for (k, x) in obj {
                let ok_val = match val {
                    MapVal::Scalar => matches!(x, Value::String(_) | Value::Number(_) | Value::Bool(_)),
                    MapVal::Str(f) => x.as_str().is_some_and(|s| (f.test)(s)),
                };
                if !(key.test)(k) || !ok_val {
                    errs.bad_value(name, format!("must be {}; key {k:?} has {}", expected(kind), shown(x)));
                    return None;
                }
            }
            Some(v.clone())
        }
        // Elements keep their places (a refused member is left out, a
        // non-object stays as given) so that the rules between elements name
        // the right index; the caller knows from `errs` whether all passed.
        Kind::Objects { props, key } => {
            let Some(arr) = v.as_array() else { return refuse(kind, name, v, errs) };
            let out = arr.iter().enumerate().map(|(i, el)| {
                object(props, key, &format!("{name}.{i}"), el, brand, Mode::Add, errs)
                    .map_or_else(|| el.clone(), Value::Object)
            });
            Some(Value::Array(out.collect()))
        }
    }
}

/// The reason a property is refused for a brand, naming where it belongs.
pub(crate) fn not_for_brand(table: &[Prop], name: &str, brand: Brand) -> String {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if leaf == "image_uuid" && brand.is_hvm() && !name.contains('.') {
        return format!(
            "is not valid for brand {brand}: a {brand} VM boots from its disks; \
             give image_uuid on the boot disk (disks.0.image_uuid)"
        );
    }
    let valid: Vec<&str> = Brand::ALL
        .iter()
        .filter(|b| table.iter().any(|p| p.name == leaf && p.brands.has(**b)))
        .map(|b| b.as_str())
        .collect();
    format!("is not valid for brand {brand} (only for {})", valid.join(", "))
}

/// The number of problems recorded so far.
pub(crate) fn count(errs: &ValidationErrors) -> usize {
    errs.bad_values.len() + errs.bad_properties.len() + errs.missing_properties.len()
}

/// Checks one element of an object array against its nested table and
/// returns its accepted members (`None` when it is not an object). In
/// [`Mode::Update`] the result may hold `null` members: they mark removals.
pub(crate) fn object(
    table: &'static [Prop],
    key: &str,
    prefix: &str,
    v: &Value,
    brand: Option<Brand>,
    mode: Mode,
    errs: &mut ValidationErrors,
) -> Option<Map<String, Value>> {
    let Some(obj) = v.as_object() else {
        errs.bad_value(prefix, format!("must be an object; got {}", shown(v)));
        return None;
    };
    let mut out = Map::new();
    for (k, x) in obj {
        let name = format!("{prefix}.{k}");
        let prop = match lookup(table, k, brand) {
            Lookup::Found(p) => p,
            Lookup::Unknown => {
                errs.bad_property(&name, "is not a known member of this object");
                continue;
            }
            Lookup::NotForBrand => {
                if let Some(b) = brand {
                    errs.bad_property(&name, not_for_brand(table, k, b));
                }
                continue;
            }
        };
        if mode == Mode::Update && k != key && prop.update == Upd::Fixed {
            errs.bad_property(&name, "can only be set when the element is added");
            continue;
        }
        if x.is_null() {
            match mode {
                Mode::Add => {}
                Mode::Update if prop.clearable() && k != key => {
                    out.insert(k.clone(), Value::Null);
                }
                Mode::Update => errs.bad_value(&name, "cannot be cleared"),
            }
            continue;
        }
        if let Some(nv) = value(&prop.kind, &name, x, brand, errs) {
            out.insert(k.clone(), nv);
        }
    }
    if mode == Mode::Add {
        if let Some(b) = brand {
            for p in table.iter().filter(|p| p.required.has(b)) {
                if !out.contains_key(p.name) && obj.get(p.name).is_none_or(Value::is_null) {
                    errs.missing(&format!("{prefix}.{}", p.name), "is required");
                }
            }
        }
    }
    Some(out)
}
