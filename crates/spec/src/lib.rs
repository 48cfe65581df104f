//! vmadm payloads: the property table, validation, defaults and update plans.
//!
//! This crate is pure: it reads JSON and answers JSON, with no I/O. The
//! daemon calls [`validate_create`] on a `vmadm create` payload and stores
//! the object it returns (the payload plus SmartOS's defaults, exactly what
//! `vmadm get` shows before the runtime properties are added), and calls
//! [`validate_update`] on a `vmadm update` payload to get the new object and
//! which changes apply live and which at the next boot. `vmadm validate`
//! uses the same functions, so a payload is judged the same way everywhere.
//!
//! Problems come back in SmartOS's shape ([`ValidationErrors`]): `bad_brand`,
//! `bad_properties`, `bad_values`, `missing_properties`, each with a reason;
//! nested members are named as SmartOS users read them (`nics.0.vlan_id`).
//! Every problem is reported, not just the first.
//!
//! - [`props`]: the table (one entry per property; everything else reads it)
//! - `check`: one value against its entry
//! - `normalize`: defaults, derived memory caps, NIC/disk/filesystem elements,
//!   cross-property rules
//! - [`update`]: update payloads and their operators (`set_tags`, `add_nics`, ...)
//! - [`docker`]: `docker: true` and the `docker:*` keys of `internal_metadata`

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use zonevisor_api::{PropertyWarning, ValidationErrors, VmObject};

mod check;
pub mod docker;
mod normalize;
pub mod props;
pub mod update;

pub use normalize::{default_memory_overhead, DEFAULT_BLOCK_SIZE, METADATA_MAX_BYTES, MIN_MEMORY_OVERHEAD};
pub use props::MIN_PHYSICAL_MEMORY;
pub use update::{check_update_payload, validate_update, UpdatePlan};

use props::{lookup, Kind, Lookup, Upd, PROPS};

/// A brand zonevisor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Brand {
    /// A Linux system container (SmartOS's lx zone).
    Lx,
    /// A QEMU/KVM virtual machine.
    Kvm,
    /// A QEMU/KVM virtual machine with bhyve's payload semantics.
    Bhyve,
}

impl Brand {
    /// Every brand, in the order SmartOS documents them.
    pub const ALL: [Brand; 3] = [Brand::Lx, Brand::Kvm, Brand::Bhyve];

    /// The payload name (`lx`, `kvm`, `bhyve`).
    pub fn as_str(self) -> &'static str {
        match self {
            Brand::Lx => "lx",
            Brand::Kvm => "kvm",
            Brand::Bhyve => "bhyve",
        }
    }

    /// The `type` property `vmadm get` shows (`LX`, `KVM`, `BHYVE`).
    pub fn vm_type(self) -> &'static str {
        match self {
            Brand::Lx => "LX",
            Brand::Kvm => "KVM",
            Brand::Bhyve => "BHYVE",
        }
    }

    /// True for the hardware-virtualized brands.
    pub fn is_hvm(self) -> bool {
        self != Brand::Lx
    }
}

impl fmt::Display for Brand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a brand name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrandError {
    /// `joyent`, `joyent-minimal` or `builder`: SmartOS brands that need illumos.
    IllumosNative(String),
    /// Not a brand at all.
    Unknown(String),
}

impl fmt::Display for BrandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrandError::IllumosNative(b) => {
                write!(f, "brand {b} is illumos-native and cannot run on Linux; use brand lx for a Linux zone")
            }
            BrandError::Unknown(b) => {
                write!(f, "unknown brand {b:?}: use lx for a Linux zone, or kvm or bhyve for a hardware VM")
            }
        }
    }
}

impl std::error::Error for BrandError {}

impl FromStr for Brand {
    type Err = BrandError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lx" => Ok(Brand::Lx),
            "kvm" => Ok(Brand::Kvm),
            "bhyve" => Ok(Brand::Bhyve),
            "joyent" | "joyent-minimal" | "builder" => Err(BrandError::IllumosNative(s.into())),
            _ => Err(BrandError::Unknown(s.into())),
        }
    }
}

const READ_ONLY: &str = "is owned by zonevisor (reported at run time) and cannot be given in a payload";

/// The brand named by a payload's `brand` member, recording why not.
pub(crate) fn payload_brand(v: Option<&Value>, errs: &mut ValidationErrors) -> Option<Brand> {
    match v {
        None | Some(Value::Null) => {
            errs.missing("brand", "is required: lx for a Linux zone, or kvm or bhyve for a hardware VM");
            None
        }
        Some(Value::String(s)) => match s.parse() {
            Ok(b) => Some(b),
            Err(e) => {
                errs.bad_brand(s, e.to_string());
                None
            }
        },
        Some(other) => {
            errs.bad_brand(&other.to_string(), "must be a string: lx, kvm or bhyve");
            None
        }
    }
}

const MEMORY: [&str; 5] = ["ram", "max_physical_memory", "max_swap", "max_locked_memory", "tmpfs"];

/// A create payload as the daemon takes it: the VM object to store and
/// what of the payload was dropped or adjusted on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Accepted {
    /// The payload's properties (normalized) plus every default.
    pub vm: VmObject,
    /// Properties dropped (unknown, not for this brand or action) or
    /// adjusted (memory caps clamped), as SmartOS drops and clamps them.
    pub warnings: Vec<PropertyWarning>,
}

/// True when `errs` holds more than misplaced properties: a bad brand, a
/// bad value or a missing property fails a create or update outright,
/// while SmartOS drops misplaced properties with a warning.
pub(crate) fn fatal(errs: &ValidationErrors) -> bool {
    errs.bad_brand.is_some() || !errs.bad_values.is_empty() || !errs.missing_properties.is_empty()
}

/// `name` as SmartOS reports it (see [`smartos_names`]).
pub(crate) fn smartos_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if let [coll, _, member] = parts.as_slice() {
        let source = ["size", "image_size", "image_name", "image_uuid", "block_size"].contains(member);
        if (*coll == "disks" || *coll == "add_disks") && source {
            return name.to_string();
        }
    }
    let starred: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i > 0 && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) { "*" } else { p })
        .collect();
    starred.join(".")
}

/// Names members of array elements as SmartOS does, `nics.*.mtu` rather
/// than `nics.0.mtu` (scripts look for those names), keeping the element's
/// index in the reason: `nics.0.mtu: must be ...`. SmartOS's own check of
/// a disk's source (`size` against `image_uuid`) names the disk by index,
/// and so do these.
pub fn smartos_names(errs: &mut ValidationErrors) {
    let mut reasons = std::collections::BTreeMap::new();
    for (name, reason) in std::mem::take(&mut errs.reasons) {
        let star = smartos_name(&name);
        let reason = if star == name { reason } else { format!("{name}: {reason}") };
        reasons
            .entry(star)
            .and_modify(|r: &mut String| {
                r.push_str("; ");
                r.push_str(&reason);
            })
            .or_insert(reason);
    }
    errs.reasons = reasons;
    for list in [&mut errs.bad_values, &mut errs.bad_properties, &mut errs.missing_properties] {
        let mut seen = Vec::new();
        for name in list.drain(..) {
            let star = smartos_name(&name);
            if !seen.contains(&star) {
                seen.push(star);
            }
        }
        *list = seen;
    }
}

/// The misplaced properties of `errs` as warnings (each has been left out).
pub(crate) fn dropped(errs: &ValidationErrors, action: &str) -> Vec<PropertyWarning> {
    errs.bad_properties
        .iter()
        .map(|p| PropertyWarning {
            property: p.clone(),
            message: format!(
                "invalid {action} property {p}: {}; removed from the payload",
                errs.reasons.get(p).map(String::as_str).unwrap_or("not valid here")
            ),
        })
        .collect()
}

/// Validates a `vmadm create` payload strictly, as `vmadm validate create`
/// does: every misplaced property is an error too. Returns the VM object a
/// create would store.
pub fn validate_create(payload: &Value) -> Result<VmObject, ValidationErrors> {
    let (vm, errs, _) = create(payload)?;
    if errs.is_empty() {
        Ok(vm)
    } else {
        Err(errs)
    }
}

/// Takes a `vmadm create` payload as SmartOS's `vmadm create` does:
/// misplaced properties are dropped with a warning and contradicting memory
/// caps clamped; bad values and missing properties fail it.
pub fn accept_create(payload: &Value) -> Result<Accepted, ValidationErrors> {
    let (vm, errs, notes) = create(payload)?;
    let mut warnings = dropped(&errs, "create");
    warnings.extend(notes);
    Ok(Accepted { vm, warnings })
}

/// The VM object for `payload`, the misplaced properties found and the
/// adjustments made; `Err` when the payload cannot be taken at all.
fn create(payload: &Value) -> Result<(VmObject, ValidationErrors, Vec<PropertyWarning>), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let mut notes = Vec::new();
    let Some(obj) = payload.as_object() else {
        errs.bad_value("payload", "must be a JSON object of vmadm properties");
        return Err(errs);
    };
    let brand = payload_brand(obj.get("brand"), &mut errs);
    let mut vm = VmObject::new();
    for (k, v) in obj {
        if k == "brand" || v.is_null() {
            continue;
        }
        match lookup(PROPS, k, brand) {
            Lookup::Unknown if update::is_operator(k) => errs.bad_property(k, "is only valid in vmadm update payloads"),
            Lookup::Unknown => errs.bad_property(k, "is not a vmadm property"),
            Lookup::NotForBrand => {
                if let Some(b) = brand {
                    errs.bad_property(k, check::not_for_brand(PROPS, k, b));
                }
            }
            Lookup::Found(p) if p.update == Upd::ReadOnly => errs.bad_property(k, READ_ONLY),
            Lookup::Found(p) => {
                if let Some(nv) = check::value(&p.kind, k, v, brand, &mut errs) {
                    vm.insert(k.clone(), nv);
                }
            }
        }
    }
    let Some(brand) = brand else {
        smartos_names(&mut errs);
        return Err(errs);
    };
    vm.insert("brand".into(), Value::from(brand.as_str()));
    for p in PROPS.iter().filter(|p| p.required.has(brand) && p.name != "brand") {
        if obj.get(p.name).is_none_or(Value::is_null) {
            errs.missing(p.name, format!("is required for brand {brand}"));
        }
    }
    normalize::constant_defaults(brand, &mut vm);
    normalize::no_cap_is_absent(&mut vm);
    normalize::derive_create(brand, &mut vm);
    for coll in ["nics", "disks", "filesystems"] {
        let Some(Value::Array(list)) = vm.get(coll) else { continue };
        let mut list = list.clone();
        let ctx = normalize::Ctx { brand, vm: &vm, existing: &[], prefix: coll };
        normalize::new_elements(coll, &ctx, &mut list, &mut errs);
        if coll == "nics" && !list.is_empty() {
            normalize::settle_primary(&mut list, None);
        }
        vm.insert(coll.into(), Value::Array(list));
    }
    if !errs.bad_values.iter().any(|b| MEMORY.contains(&b.as_str())) {
        let given = |n: &str| obj.get(n).is_some_and(|v| !v.is_null());
        normalize::clamp_memory(brand, &mut vm, &given, &mut notes);
    }
    if let Some(Value::Object(m)) = vm.get("internal_metadata") {
        docker::check_keys(m, &mut errs);
    }
    docker::apply_defaults(&mut vm);
    normalize::metadata_size(&vm, &mut errs);
    smartos_names(&mut errs);
    if fatal(&errs) {
        return Err(errs);
    }
    let mut out = VmObject::new();
    for p in PROPS {
        if let Some(v) = vm.remove(p.name) {
            out.insert(p.name.into(), v);
        }
    }
    out.extend(vm);
    Ok((out, errs, notes))
}

/// True when `name` is a vmadm property, for the CLI's `-o`, `-s` and
/// filters. Dotted names reach into arrays and maps as `vmadm lookup` does:
/// `nics.0.ip`, `nics.*.mac`, `disks.1.size`, `tags.role`,
/// `customer_metadata.user-script`, `resolvers.0`.
pub fn is_property(name: &str) -> bool {
    let (head, rest) = match name.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    let Some(p) = PROPS.iter().find(|p| p.name == head) else { return false };
    let index = |s: &str| s == "*" || (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()));
    match (p.kind, rest) {
        (_, None) => true,
        (Kind::Map { .. }, Some(key)) => !key.is_empty(),
        (Kind::List { .. }, Some(i)) => index(i),
        (Kind::Objects { props, .. }, Some(rest)) => match rest.split_once('.') {
            Some((i, member)) => index(i) && props.iter().any(|m| m.name == member),
            None => index(rest),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests;
