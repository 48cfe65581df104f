//! Defaults, derived values, array elements and the rules that tie
//! properties together.
//!
//! Memory follows SmartOS's `applyZoneDefaults` / `fixPayloadMemory`:
//!
//! ```text
//! create  lx   max_physical_memory = ram (if given) else 256
//!         hvm  ram = 256, max_physical_memory = ram + 1024 (kvm) | ram + 1280 (bhyve)
//!         all  max_locked_memory = max_shm_memory = max_physical_memory
//!              max_swap = max(max_physical_memory, 256); lx: tmpfs = max_physical_memory
//! update  a new max_physical_memory keeps the old distance to max_locked_memory and
//!         max_swap (and tmpfs keeps its ratio) unless those are given too;
//!         hvm: a new ram moves max_physical_memory to ram + overhead.
//! ```
//!
//! Where caps contradict each other (max_swap below max_physical_memory,
//! max_locked_memory or tmpfs above it, HVM memory caps below ram + 256),
//! they are clamped as SmartOS clamps them, and each adjustment of a value
//! the user gave is reported as a warning.

use std::collections::HashSet;

use serde_json::{Map, Value};
use uuid::Uuid;
use zonevisor_api::{PropertyWarning, ValidationErrors, VmObject};

use crate::check::as_int;
use crate::props::{format_mac, parse_mac, Dflt, MIN_SWAP, PROPS};
use crate::Brand;

/// Memory SmartOS adds to `ram` for the hypervisor when `max_physical_memory`
/// is not given (MiB).
pub fn default_memory_overhead(brand: Brand) -> i64 {
    match brand {
        Brand::Lx => 0,
        Brand::Kvm => 1024,
        Brand::Bhyve => 1024 + 256,
    }
}

/// The least room an HVM instance must have above `ram` (MiB).
pub const MIN_MEMORY_OVERHEAD: i64 = 256;

/// SmartOS's zvol block size for disks created from `size` (bytes).
pub const DEFAULT_BLOCK_SIZE: i64 = 8192;

fn int(vm: &VmObject, name: &str) -> Option<i64> {
    vm.get(name).and_then(as_int)
}

fn set(vm: &mut VmObject, name: &str, v: i64) {
    vm.insert(name.to_string(), Value::from(v));
}

/// Fills every constant default of the table for `brand`.
pub(crate) fn constant_defaults(brand: Brand, vm: &mut VmObject) {
    for p in PROPS.iter().filter(|p| p.brands.has(brand)) {
        if vm.contains_key(p.name) {
            continue;
        }
        let v = match p.default {
            Dflt::None | Dflt::Derived => continue,
            Dflt::Bool(b) => Value::Bool(b),
            Dflt::Int(n) => Value::from(n),
            Dflt::Str(s) => Value::from(s),
            Dflt::EmptyList => Value::Array(Vec::new()),
            Dflt::EmptyMap => Value::Object(Map::new()),
        };
        vm.insert(p.name.to_string(), v);
    }
}

/// SmartOS: `cpu_cap` 0 is no cap, and the property is left out.
/// The most `customer_metadata` and `internal_metadata` may hold
/// together (as JSON): what a guest's `mdata-put`s can make the host keep.
pub const METADATA_MAX_BYTES: usize = 4 << 20;

/// Refuses metadata larger than [`METADATA_MAX_BYTES`].
pub(crate) fn metadata_size(vm: &VmObject, errs: &mut ValidationErrors) {
    let size: usize =
        ["customer_metadata", "internal_metadata"].iter().filter_map(|k| vm.get(*k)).map(|v| v.to_string().len()).sum();
    if size > METADATA_MAX_BYTES {
        errs.bad_value(
            "customer_metadata",
            format!(
                "customer_metadata and internal_metadata would hold {size} bytes together; at most {METADATA_MAX_BYTES} are allowed"
            ),
        );
    }
}

pub(crate) fn no_cap_is_absent(vm: &mut VmObject) {
    if vm.get("cpu_cap").and_then(as_int) == Some(0) {
        vm.remove("cpu_cap");
    }
}

/// Fills the derived defaults of a new instance (after [`constant_defaults`]).
pub(crate) fn derive_create(brand: Brand, vm: &mut VmObject) {
    if !vm.contains_key("uuid") {
        vm.insert("uuid".into(), Value::String(Uuid::new_v4().hyphenated().to_string()));
    }
    if brand.is_hvm() {
        if int(vm, "max_physical_memory").is_none() {
            let ram = int(vm, "ram").unwrap_or(256);
            set(vm, "max_physical_memory", ram + default_memory_overhead(brand));
        }
    } else if let Some(ram) = vm.remove("ram").as_ref().and_then(as_int) {
        vm.entry("max_physical_memory").or_insert(Value::from(ram));
    }
    let mpm = int(vm, "max_physical_memory").unwrap_or(256);
    set(vm, "max_physical_memory", mpm);
    for name in ["max_locked_memory", "max_shm_memory"] {
        vm.entry(name).or_insert(Value::from(mpm));
    }
    vm.entry("max_swap").or_insert(Value::from(mpm.max(MIN_SWAP)));
    if brand == Brand::Lx {
        vm.entry("tmpfs").or_insert(Value::from(mpm));
    }
    let quota = if brand == Brand::Bhyve { 1 } else { 10 };
    vm.entry("quota").or_insert(Value::from(quota));
}

/// Moves the memory caps an update did not name along with the ones it did.
pub(crate) fn derive_update(brand: Brand, old: &VmObject, vm: &mut VmObject, given: &mut HashSet<String>) {
    let g = |given: &HashSet<String>, n: &str| given.contains(n);
    if given.contains("ram") {
        if brand.is_hvm() {
            if !g(given, "max_physical_memory") {
                if let Some(ram) = int(vm, "ram") {
                    set(vm, "max_physical_memory", ram + default_memory_overhead(brand));
                }
            }
        } else if let Some(ram) = vm.remove("ram").as_ref().and_then(as_int) {
            if !g(given, "max_physical_memory") {
                set(vm, "max_physical_memory", ram);
                given.insert("max_physical_memory".into());
            }
        }
    }
    let (om, nm) = (int(old, "max_physical_memory"), int(vm, "max_physical_memory"));
    if let Some(new) = nm.filter(|n| Some(*n) != om) {
        if !g(given, "max_locked_memory") {
            let locked = match (om, int(old, "max_locked_memory")) {
                (Some(om), Some(ol)) => new - (om - ol),
                _ => new,
            };
            set(vm, "max_locked_memory", if locked > 0 { locked } else { new });
        }
        if !g(given, "max_swap") {
            let swap = match (om, int(old, "max_swap")) {
                // SmartOS: a swap cap raised to the 256 floor follows memory again.
                (Some(_), Some(MIN_SWAP)) if new >= MIN_SWAP => new,
                (Some(om), Some(os)) => new + (os - om),
                _ => new,
            };
            set(vm, "max_swap", swap.max(MIN_SWAP));
        }
        if brand == Brand::Lx && !g(given, "tmpfs") {
            let tmpfs = match (om, int(old, "tmpfs")) {
                (Some(om), Some(t)) if om > 0 => (t * new + om / 2) / om,
                _ => new,
            };
            set(vm, "tmpfs", tmpfs);
        }
    }
    if brand.is_hvm() {
        if let Some(floor) = int(vm, "ram").map(|r| r + MIN_MEMORY_OVERHEAD) {
            for name in ["max_physical_memory", "max_locked_memory"] {
                if !g(given, name) && int(vm, name).is_some_and(|v| v < floor) {
                    set(vm, name, floor);
                }
            }
            if let (false, Some(m), Some(s)) =
                (g(given, "max_swap"), int(vm, "max_physical_memory"), int(vm, "max_swap"))
            {
                if s < m {
                    set(vm, "max_swap", m);
                }
            }
        }
    }
}

/// Brings the memory caps into SmartOS's order, as `fixPayloadMemory` does:
/// an HVM instance's `max_physical_memory` and `max_locked_memory` are
/// raised to `ram` + [`MIN_MEMORY_OVERHEAD`]; `max_locked_memory` and (lx)
/// `tmpfs` above `max_physical_memory` are lowered to it; `max_swap` below
/// it is raised to it. Each adjustment of a value the user gave (`given`)
/// or of one derived from it is recorded in `notes`.
pub(crate) fn clamp_memory(
    brand: Brand,
    vm: &mut VmObject,
    given: &dyn Fn(&str) -> bool,
    notes: &mut Vec<PropertyWarning>,
) {
    let mut adjust = |vm: &mut VmObject, name: &str, to: i64, why: String| {
        let from = int(vm, name);
        set(vm, name, to);
        if given(name) {
            notes.push(PropertyWarning {
                property: name.to_string(),
                message: format!("{name} {} {why}: set to {to}", from.map_or("-".into(), |f| f.to_string())),
            });
        }
    };
    if let (true, Some(ram)) = (brand.is_hvm(), int(vm, "ram")) {
        let floor = ram + MIN_MEMORY_OVERHEAD;
        for name in ["max_physical_memory", "max_locked_memory"] {
            if int(vm, name).is_some_and(|v| v < floor) {
                adjust(vm, name, floor, format!("leaves less than {MIN_MEMORY_OVERHEAD} MiB above ram ({ram})"));
            }
        }
    }
    let Some(mpm) = int(vm, "max_physical_memory") else { return };
    let mut at_most = vec!["max_locked_memory"];
    if brand == Brand::Lx {
        at_most.push("tmpfs");
    }
    for name in at_most {
        if int(vm, name).is_some_and(|v| v > mpm) {
            adjust(vm, name, mpm, format!("is above max_physical_memory ({mpm})"));
        }
    }
    if int(vm, "max_swap").is_some_and(|s| s < mpm) {
        adjust(vm, "max_swap", mpm, format!("is below max_physical_memory ({mpm})"));
    }
}

// ---- array elements ----------------------------------------------------------

/// What the element normalizers need to know about the instance.
pub(crate) struct Ctx<'a> {
    pub brand: Brand,
    /// The instance as it stands (its `nic_driver`, `disk_driver`, ...).
    pub vm: &'a VmObject,
    /// The elements the instance already has.
    pub existing: &'a [Value],
    /// The name errors are reported under (`nics`, `add_nics`).
    pub prefix: &'a str,
}

fn str_of<'v>(v: &'v Value, name: &str) -> Option<&'v str> {
    v.get(name).and_then(Value::as_str)
}

/// A MAC in SmartOS's printed form, for comparing keys.
pub(crate) fn canonical_mac(s: &str) -> String {
    parse_mac(s).map(format_mac).unwrap_or_else(|| s.to_ascii_lowercase())
}

/// An element key as given in `update_*` / `remove_*`, in stored form.
pub(crate) fn key_of(coll: &str, raw: &str) -> String {
    if coll == "nics" {
        canonical_mac(raw)
    } else {
        raw.to_string()
    }
}

/// The value identifying an element in `update_*` / `remove_*`.
pub(crate) fn element_key(coll: &str, key: &str, el: &Value) -> Option<String> {
    str_of(el, key).map(|k| key_of(coll, k))
}

/// Normalizes new elements of the array property `coll`, given the
/// elements already present.
pub(crate) fn new_elements(coll: &str, ctx: &Ctx<'_>, new: &mut [Value], errs: &mut ValidationErrors) {
    match coll {
        "nics" => nics(ctx, new, errs),
        "disks" => disks(ctx, new, errs),
        "filesystems" => filesystems(ctx, new, errs),
        _ => {}
    }
}

/// The elements that are objects, with their places in the array.
fn objects(new: &mut [Value]) -> impl Iterator<Item = (usize, &mut Map<String, Value>)> {
    new.iter_mut().enumerate().filter_map(|(i, v)| v.as_object_mut().map(|o| (i, o)))
}

/// A random locally administered unicast MAC (`x2:xx:xx:xx:xx:xx`, as SmartOS
/// generates them) that no other NIC of the instance uses.
fn generate_mac(taken: &HashSet<String>) -> String {
    loop {
        let r = Uuid::new_v4();
        let b = r.as_bytes();
        let mac = [(b[0] >> 4).max(1) << 4 | 0x02, b[1], b[2], b[3], b[4], b[5]];
        let s = format_mac(mac);
        if !taken.contains(&s) {
            return s;
        }
    }
}

fn nics(ctx: &Ctx<'_>, new: &mut [Value], errs: &mut ValidationErrors) {
    let prefix = ctx.prefix;
    let mut macs: HashSet<String> = ctx.existing.iter().filter_map(|n| str_of(n, "mac")).map(canonical_mac).collect();
    let mut ifaces: HashSet<String> =
        ctx.existing.iter().filter_map(|n| str_of(n, "interface")).map(String::from).collect();
    for (i, nic) in objects(new) {
        if let Some(m) = nic.get("mac").and_then(Value::as_str).map(canonical_mac) {
            if !macs.insert(m.clone()) {
                errs.bad_value(&format!("{prefix}.{i}.mac"), format!("{m} is already used by another nic"));
            }
            nic.insert("mac".into(), Value::String(m));
        }
        if let Some(ifc) = nic.get("interface").and_then(Value::as_str) {
            if !ifaces.insert(ifc.to_string()) {
                errs.bad_value(&format!("{prefix}.{i}.interface"), format!("{ifc} is already used by another nic"));
            }
        }
        if nic.get("primary") == Some(&Value::Bool(false)) {
            nic.remove("primary");
        }
        // SmartOS's deprecated single-address form becomes `ips` / `gateways`.
        if let Some(ip) = nic.get("ip").and_then(Value::as_str).map(String::from) {
            let mask = nic
                .get("netmask")
                .and_then(Value::as_str)
                .and_then(|m| m.parse::<std::net::Ipv4Addr>().ok().map(|m| u32::from(m).leading_ones()));
            match (ip.as_str(), mask) {
                ("dhcp", _) => {
                    nic.entry("ips").or_insert(Value::from(vec!["dhcp"]));
                }
                (_, Some(len)) => {
                    nic.entry("ips").or_insert(Value::from(vec![format!("{ip}/{len}")]));
                }
                (_, None) => errs.missing(
                    &format!("{prefix}.{i}.netmask"),
                    "is required with a static ip (or give ips: [\"addr/len\"] instead)",
                ),
            }
        }
        if let Some(gw) = nic.get("gateway").cloned() {
            nic.entry("gateways").or_insert(Value::Array(vec![gw]));
        }
        gateways_in_subnets(nic, &format!("{prefix}.{i}"), errs);
        derive_ip_fields(nic);
    }
    let iface_base = if ctx.brand == Brand::Lx { "eth" } else { "net" };
    let model = ctx
        .vm
        .get("nic_driver")
        .or_else(|| ctx.existing.first().and_then(|n| n.get("model")))
        .cloned()
        .unwrap_or_else(|| Value::from("virtio"));
    for (_, nic) in objects(new) {
        if !nic.contains_key("mac") {
            let mac = generate_mac(&macs);
            macs.insert(mac.clone());
            nic.insert("mac".into(), Value::String(mac));
        }
        if !nic.contains_key("interface") {
            let name = (0..).map(|n| format!("{iface_base}{n}")).find(|n| !ifaces.contains(n)).unwrap_or_default();
            ifaces.insert(name.clone());
            nic.insert("interface".into(), Value::String(name));
        }
        if ctx.brand.is_hvm() {
            nic.entry("model").or_insert(model.clone());
        }
    }
    let primaries: Vec<usize> = (0..new.len()).filter(|i| new[*i].get("primary") == Some(&Value::Bool(true))).collect();
    for extra in primaries.iter().skip(1) {
        errs.bad_value(
            &format!("{prefix}.{extra}.primary"),
            format!("only one nic may be primary; {prefix}.{}.primary is already true", primaries[0]),
        );
    }
}

/// A NIC's static gateways must each be inside one of its static
/// subnets of the same family (a NIC with only `dhcp` or `addrconf` for
/// that family learns where its gateway is).
fn gateways_in_subnets(nic: &Map<String, Value>, at: &str, errs: &mut ValidationErrors) {
    let strs = |k: &str| -> Vec<String> {
        nic.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let ips = strs("ips");
    let nets: Vec<(std::net::IpAddr, u32)> = ips
        .iter()
        .filter_map(|ip| ip.split_once('/'))
        .filter_map(|(a, l)| Some((a.parse().ok()?, l.parse().ok()?)))
        .collect();
    let dynamic_v4 = ips.iter().any(|s| s == "dhcp");
    let dynamic_v6 = ips.iter().any(|s| s == "addrconf");
    for gw in strs("gateways") {
        let Ok(g) = gw.parse::<std::net::IpAddr>() else { continue };
        if (g.is_ipv4() && dynamic_v4) || (g.is_ipv6() && dynamic_v6) {
            continue;
        }
        let inside = nets.iter().any(|&(a, len)| match (a, g) {
            (std::net::IpAddr::V4(a), std::net::IpAddr::V4(g)) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(a) & mask == u32::from(g) & mask
            }
            (std::net::IpAddr::V6(a), std::net::IpAddr::V6(g)) if len <= 128 => {
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                u128::from(a) & mask == u128::from(g) & mask
            }
            _ => false,
        });
        if !inside && nets.iter().any(|(a, _)| a.is_ipv4() == g.is_ipv4()) {
            errs.bad_value(
                &format!("{at}.gateways"),
                format!("{gw} is outside every subnet of the nic's ips ({})", ips.join(", ")),
            );
        }
    }
}

/// Sets a NIC's deprecated single-address members from its lists, as
/// SmartOS shows them: `ip` and `netmask` from the first IPv4 address (or
/// `dhcp`) of `ips`, `gateway` from the first IPv4 gateway. Empty lists are
/// left out, as SmartOS leaves them out.
pub(crate) fn derive_ip_fields(nic: &mut Map<String, Value>) {
    let list = |nic: &Map<String, Value>, k: &str| -> Vec<String> {
        nic.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let ips = list(nic, "ips");
    let repr = ips.iter().find_map(|ip| match ip.split_once('/') {
        _ if ip == "dhcp" => Some(("dhcp".to_string(), None)),
        Some((addr, len)) => match (addr.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) {
            (Ok(a), Ok(len)) if len <= 32 => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Some((a.to_string(), Some(std::net::Ipv4Addr::from(mask).to_string())))
            }
            _ => None,
        },
        None => None,
    });
    if ips.is_empty() {
        nic.remove("ips");
    }
    match repr {
        Some((ip, mask)) => {
            nic.insert("ip".into(), Value::String(ip));
            match mask {
                Some(m) => nic.insert("netmask".into(), Value::String(m)),
                None => nic.remove("netmask"),
            };
        }
        None => {
            nic.remove("ip");
            nic.remove("netmask");
        }
    }
    let gateways = list(nic, "gateways");
    if gateways.is_empty() {
        nic.remove("gateways");
    }
    match gateways.iter().find(|g| g.parse::<std::net::Ipv4Addr>().is_ok()) {
        Some(g) => nic.insert("gateway".into(), Value::String(g.clone())),
        None => nic.remove("gateway"),
    };
}

/// Makes sure exactly one NIC of `list` is primary: `keep` (an index) when
/// given, else the first one already marked, else (as SmartOS picks) the
/// first whose address is not private (RFC 1918), else the first NIC.
pub(crate) fn settle_primary(list: &mut [Value], keep: Option<usize>) {
    let public = |n: &Value| {
        n.get("ip")
            .and_then(Value::as_str)
            .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
            .is_some_and(|a| !a.is_private())
    };
    let keep = keep
        .or_else(|| list.iter().position(|n| n.get("primary") == Some(&Value::Bool(true))))
        .or_else(|| list.iter().position(public))
        .unwrap_or(0);
    for (i, nic) in list.iter_mut().enumerate() {
        if let Some(o) = nic.as_object_mut() {
            if i == keep {
                o.insert("primary".into(), Value::Bool(true));
            } else {
                o.remove("primary");
            }
        }
    }
}

fn disks(ctx: &Ctx<'_>, new: &mut [Value], errs: &mut ValidationErrors) {
    let prefix = ctx.prefix;
    let flexible = ctx.vm.contains_key("flexible_disk_size");
    let mut paths: HashSet<String> = ctx.existing.iter().filter_map(|d| str_of(d, "path")).map(String::from).collect();
    let model = ctx
        .vm
        .get("disk_driver")
        .or_else(|| ctx.existing.first().and_then(|d| d.get("model")))
        .cloned()
        .unwrap_or_else(|| Value::from("virtio"));
    for (i, d) in objects(new) {
        let at = |m: &str| format!("{prefix}.{i}.{m}");
        let media = d.get("media").and_then(Value::as_str).unwrap_or("disk").to_string();
        let (has_image, has_size) = (d.contains_key("image_uuid"), d.contains_key("size"));
        if media == "cdrom" {
            if !d.contains_key("path") {
                errs.missing(&at("path"), "is required for a cdrom (the ISO image to attach)");
            }
        } else if has_image {
            if has_size && !flexible {
                errs.bad_property(
                    &at("size"),
                    "cannot be given with image_uuid (the image sets the size) unless \
                     flexible_disk_size is set",
                );
            }
            if d.contains_key("block_size") {
                errs.bad_property(&at("block_size"), "cannot be given with image_uuid (the image sets it)");
            }
        } else {
            if !has_size {
                errs.missing(&at("size"), "is required for a disk without image_uuid (size in MiB)");
            }
            for m in ["image_size", "image_name"] {
                if d.contains_key(m) {
                    errs.bad_property(&at(m), "is only valid together with image_uuid");
                }
            }
        }
        if media == "disk" && d.contains_key("path") && d.get("nocreate") != Some(&Value::Bool(true)) {
            errs.bad_property(
                &at("path"),
                "can only be given for a cdrom or with nocreate: true; zonevisor assigns the \
                 paths of the disks it creates",
            );
        }
        if let Some(p) = d.get("path").and_then(Value::as_str) {
            if !paths.insert(p.to_string()) {
                errs.bad_value(&at("path"), format!("{p} is already used by another disk"));
            }
        }
        if let Some(bs) = d.get("block_size").and_then(as_int) {
            if bs.count_ones() != 1 {
                errs.bad_value(&at("block_size"), format!("must be a power of 2 from 512 to 131072; got {bs}"));
            }
        }
        d.insert("media".into(), Value::String(media.clone()));
        d.entry("model").or_insert(model.clone());
        if media == "disk" {
            if !has_image {
                d.entry("block_size").or_insert(Value::from(DEFAULT_BLOCK_SIZE));
            }
            if let (false, Some(sz)) = (has_size, d.get("image_size").cloned()) {
                d.insert("size".into(), sz);
            }
            d.entry("compression").or_insert(Value::from("off"));
        }
        if ctx.brand == Brand::Bhyve && !d.contains_key("uuid") {
            d.insert("uuid".into(), Value::String(Uuid::new_v4().hyphenated().to_string()));
        }
    }
    let boots: Vec<usize> = (0..new.len()).filter(|i| new[*i].get("boot") == Some(&Value::Bool(true))).collect();
    for extra in boots.iter().skip(1) {
        errs.bad_value(
            &format!("{prefix}.{extra}.boot"),
            format!("only one disk may boot; {prefix}.{}.boot is already true", boots[0]),
        );
    }
    let existing_boot = ctx.existing.iter().any(|d| d.get("boot") == Some(&Value::Bool(true)));
    let first_disk = new.iter().position(|d| d.get("media").and_then(Value::as_str) == Some("disk"));
    for (i, d) in objects(new) {
        let boot = boots.first() == Some(&i) || (boots.is_empty() && !existing_boot && first_disk == Some(i));
        d.insert("boot".into(), Value::Bool(boot));
    }
}

fn filesystems(ctx: &Ctx<'_>, new: &mut [Value], errs: &mut ValidationErrors) {
    let prefix = ctx.prefix;
    let mut targets: HashSet<String> =
        ctx.existing.iter().filter_map(|f| str_of(f, "target")).map(String::from).collect();
    for (i, fs) in objects(new) {
        if let Some(t) = fs.get("target").and_then(Value::as_str) {
            let t = t.trim_end_matches('/');
            if t.is_empty() {
                errs.bad_value(&format!("{prefix}.{i}.target"), "cannot be / (the zone's root)");
            } else if !targets.insert(t.to_string()) {
                errs.bad_value(
                    &format!("{prefix}.{i}.target"),
                    format!("{t} is already the target of another filesystem"),
                );
            }
        }
        let opts: Vec<&str> = fs
            .get("options")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if opts.contains(&"ro") && opts.contains(&"rw") {
            errs.bad_value(&format!("{prefix}.{i}.options"), "ro and rw exclude each other");
        }
    }
}
