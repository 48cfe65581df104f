//! JSON values built from fuzzer bytes (with `arbitrary`), biased toward
//! what the validators look at: object keys are mostly property names
//! (read from `zonevisor_spec::props`, so new properties are fuzzed as soon
//! as they are in the table), strings are often values of the forms those
//! properties take, numbers are often at the edges of their ranges. Plain
//! random JSON would almost never name a property.

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};
use zonevisor_spec::props::{Fmt, Kind, MapVal, Prop, DISK_PROPS, FS_PROPS, NIC_PROPS, PROPS};

/// How deep values nest.
const MAX_DEPTH: u32 = 4;
/// Most members of a generated object or array.
const MAX_LEN: usize = 8;

/// Strings worth trying as values: brands, the forms of the property
/// table, and malformed neighbours of them.
const STRINGS: &[&str] = &[
    "lx",
    "kvm",
    "bhyve",
    "joyent",
    "joyent-minimal",
    "",
    " ",
    "0",
    "-1",
    "1",
    "256",
    "4096",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "1.5",
    "true",
    "false",
    "null",
    "10.0.0.1",
    "10.0.0.1/24",
    "10.0.0.0/33",
    "255.255.255.0",
    "fd00::1",
    "fd00::1/64",
    "dhcp",
    "addrconf",
    "auto",
    "00:11:22:33:44:55",
    "00:11:22:33:44:5",
    "net0",
    "eth0",
    "admin",
    "external",
    "virtio",
    "e1000",
    "ide",
    "scsi",
    "nvme",
    "ahci",
    "cdrom",
    "disk",
    "lz4",
    "off",
    "on",
    "lofs",
    "tmpfs",
    "ro",
    "rw",
    "nodevice",
    "/",
    "/data",
    "/data/../etc",
    "data",
    "//x",
    "/dev/zvol/rdsk/zones/x-disk0",
    "zones",
    "zones/x",
    "web-1",
    "web_1.example.com",
    "-bad-",
    "a.b.c.d.e.f.g",
    "80",
    "65536",
    "1:2",
    "0:1f.7",
    "512/4096",
    "order=cd,once=d",
    "/sbin/init",
    "linux",
    "smartos",
    "lx-dataset",
    "zone-dataset",
    "zvol",
    "active",
    "gzip",
    "xz",
    "zstd",
    "none",
    "0123456789abcdef0123456789abcdef01234567",
    "0123456789ABCDEF0123456789ABCDEF01234567",
    "é",
    "\u{0}",
    "\u{fffd}",
    "a,b,,c",
    "SIGKILL",
    "TERM",
];

/// UUIDs, well and badly written.
const UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "6a2e1f44-bb0e-4bd8-a2a5-0d3c5f0e9a01",
    "6A2E1F44-BB0E-4BD8-A2A5-0D3C5F0E9A01",
    "6a2e1f44bb0e4bd8a2a50d3c5f0e9a01",
    "6a2e1f44-bb0e-4bd8-a2a5-0d3c5f0e9a0",
];

/// Integers at the edges of the table's ranges.
const INTEGERS: &[i64] = &[
    0,
    1,
    -1,
    2,
    255,
    256,
    512,
    576,
    1024,
    4095,
    4096,
    9000,
    9001,
    65_535,
    65_536,
    131_072,
    1 << 30,
    (1 << 30) + 1,
    i32::MAX as i64,
    i32::MAX as i64 + 1,
    u32::MAX as i64,
    i64::MAX,
    i64::MIN,
];

/// The names a generated object's keys are drawn from.
pub struct Keys(Vec<String>);

impl Keys {
    /// Every vmadm property name (top-level and of NICs, disks and
    /// filesystems) and every update operator (`set_tags`, `add_nics`, ...).
    pub fn payload() -> Keys {
        let mut keys: Vec<String> = Vec::new();
        let mut add = |props: &[Prop]| {
            for p in props {
                keys.push(p.name.to_string());
                match p.kind {
                    Kind::Map { .. } => {
                        keys.push(format!("set_{}", p.name));
                        keys.push(format!("remove_{}", p.name));
                    }
                    Kind::Objects { .. } => {
                        for op in ["add", "update", "remove"] {
                            keys.push(format!("{op}_{}", p.name));
                        }
                    }
                    _ => {}
                }
            }
        };
        add(PROPS);
        add(NIC_PROPS);
        add(DISK_PROPS);
        add(FS_PROPS);
        keys.sort();
        keys.dedup();
        Keys(keys)
    }

    /// The members of an image manifest (IMGAPI v2).
    pub fn manifest() -> Keys {
        let names = [
            "v",
            "uuid",
            "name",
            "version",
            "type",
            "os",
            "state",
            "files",
            "sha1",
            "size",
            "compression",
            "requirements",
            "brand",
            "owner",
            "public",
            "disabled",
            "published_at",
            "description",
            "tags",
            "origin",
            "image_size",
        ];
        Keys(names.iter().map(|n| n.to_string()).collect())
    }

    fn pick(&self, u: &mut Unstructured) -> Result<String> {
        Ok(match u.int_in_range(0u8..=9)? {
            0 => u.arbitrary::<String>()?,
            _ => u.choose(&self.0)?.clone(),
        })
    }
}

/// A string: mostly from [`STRINGS`] or [`UUIDS`], sometimes anything.
pub fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => u.arbitrary::<String>()?,
        1 => u.choose(UUIDS)?.to_string(),
        _ => u.choose(STRINGS)?.to_string(),
    })
}

fn number(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 | 1 => Value::from(*u.choose(INTEGERS)?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        _ => Value::from(u.int_in_range(0u16..=300)?),
    })
}

/// A string of the form `fmt`, when [`STRINGS`] or [`UUIDS`] has one (now
/// and then any string).
pub fn fitting(u: &mut Unstructured, fmt: &Fmt) -> Result<String> {
    let fits: Vec<&str> = STRINGS.iter().chain(UUIDS).copied().filter(|s| (fmt.test)(s)).collect();
    if fits.is_empty() || u.ratio(1, 8)? {
        return string(u);
    }
    Ok(u.choose(&fits)?.to_string())
}

/// A value of the shape `kind` asks for, usually within its range (now and
/// then at or past its edges).
pub fn typed(u: &mut Unstructured, kind: &Kind, depth: u32) -> Result<Value> {
    Ok(match kind {
        Kind::Uuid => Value::String(u.choose(UUIDS)?.to_string()),
        Kind::Bool => Value::Bool(u.arbitrary()?),
        Kind::Int { min, max } => match u.int_in_range(0u8..=15)? {
            0 => Value::from(min.saturating_sub(1)),
            1 => Value::from(max.saturating_add(1)),
            2 | 3 => Value::from(*min),
            4 | 5 => Value::from(*max),
            6 => Value::String(u.int_in_range(*min..=*max)?.to_string()),
            _ => Value::from(u.int_in_range(*min..=*max)?),
        },
        Kind::Str(fmt) => Value::String(fitting(u, fmt)?),
        Kind::List { item, max } | Kind::Joined { item, max } => {
            let n = u.int_in_range(0..=(*max).min(4))?;
            Value::Array((0..n).map(|_| fitting(u, item).map(Value::String)).collect::<Result<_>>()?)
        }
        Kind::Map { key, val } => {
            let n = u.int_in_range(0..=3)?;
            let mut m = Map::new();
            for _ in 0..n {
                let v = match val {
                    MapVal::Str(f) => Value::String(fitting(u, f)?),
                    MapVal::Scalar => match u.int_in_range(0u8..=2)? {
                        0 => Value::Bool(u.arbitrary()?),
                        1 => number(u)?,
                        _ => Value::String(string(u)?),
                    },
                };
                m.insert(fitting(u, key)?, v);
            }
            Value::Object(m)
        }
        Kind::Objects { props, .. } if depth < MAX_DEPTH => {
            let n = u.int_in_range(0..=3)?;
            let mut list = Vec::new();
            for _ in 0..n {
                let mut m = Map::new();
                for p in *props {
                    if u.ratio(1, 2)? {
                        m.insert(p.name.to_string(), typed(u, &p.kind, depth + 1)?);
                    }
                }
                list.push(Value::Object(m));
            }
            Value::Array(list)
        }
        Kind::Objects { .. } => Value::Array(Vec::new()),
    })
}

/// Any JSON value, keys of objects from `keys`.
pub fn value(u: &mut Unstructured, keys: &Keys, depth: u32) -> Result<Value> {
    let last = if depth >= MAX_DEPTH { 3 } else { 5 };
    Ok(match u.int_in_range(0u8..=last)? {
        0 => match u.int_in_range(0u8..=2)? {
            0 => Value::Null,
            _ => Value::Bool(u.arbitrary()?),
        },
        1 => number(u)?,
        2 | 3 => Value::String(string(u)?),
        4 => {
            let n = u.int_in_range(0..=MAX_LEN)?;
            Value::Array((0..n).map(|_| value(u, keys, depth + 1)).collect::<Result<_>>()?)
        }
        _ => Value::Object(object(u, keys, depth + 1)?),
    })
}

/// A JSON object of up to [`MAX_LEN`] members keyed from `keys`.
pub fn object(u: &mut Unstructured, keys: &Keys, depth: u32) -> Result<Map<String, Value>> {
    let n = u.int_in_range(0..=MAX_LEN)?;
    let mut obj = Map::new();
    for _ in 0..n {
        let k = keys.pick(u)?;
        obj.insert(k, value(u, keys, depth)?);
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_property_table() {
        let k = Keys::payload();
        for name in ["brand", "max_physical_memory", "nics", "add_nics", "set_tags", "vlan_id", "source"] {
            assert!(k.0.iter().any(|n| n == name), "{name}");
        }
    }

    #[test]
    fn typed_values_mostly_fit_their_properties() {
        let mut fit = 0;
        for seed in 0u8..=255 {
            let data: Vec<u8> = (0..256).map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed)).collect();
            let mut u = Unstructured::new(&data);
            let v = typed(&mut u, &Kind::Int { min: 1, max: 10 }, 0).unwrap();
            fit += usize::from(v.as_i64().is_some_and(|n| (1..=10).contains(&n)));
        }
        assert!(fit > 128, "{fit} of 256 in range");
    }

    #[test]
    fn every_byte_string_gives_a_value() {
        let keys = Keys::payload();
        for seed in 0u8..=255 {
            let data: Vec<u8> = (0..512).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed)).collect();
            let mut u = Unstructured::new(&data);
            value(&mut u, &keys, 0).unwrap();
        }
        // And nothing at all is still a value.
        value(&mut Unstructured::new(&[]), &keys, 0).unwrap();
    }
}
