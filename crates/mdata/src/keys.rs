//! Which key answers from where: SmartOS's key resolution over a VM object.
//!
//! The object is the instance as `vmadm get` prints it. The rules are
//! those of SmartOS's metadata agent (`makeMetadataHandler` in
//! `src/vm/lib/metadata/agent.js`):
//!
//! | key                                   | answered from                                    |
//! |---------------------------------------|--------------------------------------------------|
//! | `sdc:nics`, `sdc:resolvers`, `sdc:tmpfs` | that field, as JSON                           |
//! | `sdc:routes`                          | `routes` as a JSON list; `nics[N]` and `macs[..]` gateways become that NIC's IP (`linklocal: true`) |
//! | `sdc:operator-script`                 | `internal_metadata["operator-script"]`           |
//! | `sdc:volumes`                         | `internal_metadata["sdc:volumes"]`               |
//! | `sdc:tags.<k>`                        | `tags[k]`                                        |
//! | `sdc:<path>`                          | the VM field, dotted (`sdc:nics.0.ip`, `sdc:customer_metadata.k`) |
//! | `<k>_pw`, `<ns>:<k>` with `ns` in `internal_metadata_namespaces` | `internal_metadata[k]` |
//! | anything else                         | `customer_metadata[k]`                           |
//!
//! Strings, numbers and booleans answer `SUCCESS` (printed as JavaScript
//! prints them), objects `FAILURE`, a missing key `NOTFOUND`; an array
//! answers as JavaScript's `isNaN` judges it (`[]` is `SUCCESS` with an
//! empty value, `["a"]` is `FAILURE`). `KEYS` lists the customer keys that
//! are neither `_pw` nor namespaced, then the internal keys that are.
//!
//! Writes (`PUT`, `DELETE`; V2 only) are refused for `sdc:` and for a
//! namespace; `_pw` keys and `operator-script` go to `internal_metadata`,
//! everything else to `customer_metadata`. The host applies a [`Write`]
//! and answers with [`write_reply`]. (A `PUT` of an empty value never gets
//! here: SmartOS trims the payload before splitting it, so `mdata-put k ''`
//! is an "Invalid PUT Request"; a [`Request::Put`] with an empty value
//! still removes the key, as SmartOS's `setMetadata` would.)
//!
//! Where SmartOS's JavaScript would throw (a `null` value, an instance
//! without `customer_metadata` on `KEYS`), this module answers `NOTFOUND`
//! or an empty list instead. `PUT`s are held to [`MAX_KEY`] and
//! [`MAX_VALUE`], which SmartOS does not have.

use serde_json::{Map, Value};

use crate::proto::{Framing, Reply, Request};
use crate::{js, MAX_KEY, MAX_VALUE};

/// Which metadata map a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `customer_metadata`.
    Customer,
    /// `internal_metadata` (`*_pw` keys and `operator-script`).
    Internal,
}

/// A change a guest asked for, for the host to apply to the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The map to change.
    pub target: Target,
    /// The key, trimmed as SmartOS trims it.
    pub key: String,
    /// The new value, or `None` to remove the key.
    pub value: Option<String>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Answer this now.
    Reply(Reply),
    /// Apply this change, then answer with [`write_reply`].
    Write(Write),
}

/// The answer to a write once the host has tried it: `SUCCESS` with `OK`,
/// or `FAILURE` with the reason (SmartOS sends its update's error message).
pub fn write_reply(result: Result<(), String>) -> Reply {
    match result {
        Ok(()) => Reply::Success(Some("OK".to_string())),
        Err(message) => Reply::Failure(Some(message)),
    }
}

/// Answers `req`, which arrived with `framing`, from `vm` (the instance as
/// `vmadm get` prints it).
pub fn resolve(vm: &Value, framing: &Framing, req: &Request) -> Resolution {
    let v2 = matches!(framing, Framing::V2 { .. });
    let reply = match req {
        Request::Negotiate { version } if !v2 => {
            if version == "V2" {
                Reply::V2Ok
            } else {
                Reply::Failure(None)
            }
        }
        Request::Negotiate { .. } => unknown("NEGOTIATE"),
        Request::Get { key } => get(vm, js::trim(key)),
        Request::Keys => list(vm),
        Request::Put { key, value } if v2 => return put(vm, js::trim(key), value),
        Request::Put { .. } => unknown("PUT"),
        Request::Delete { key } if v2 => return delete(vm, js::trim(key)),
        Request::Delete { .. } => unknown("DELETE"),
        Request::Unknown { command } => unknown(command),
        Request::Malformed { command, problem } => Reply::Failure(Some(match problem {
            Some(problem) => format!("Invalid {command} Request: {problem}"),
            None => format!("Invalid {command} Request"),
        })),
    };
    Resolution::Reply(reply)
}

fn unknown(command: &str) -> Reply {
    Reply::Failure(Some(format!("Unknown command {command}")))
}

fn failure(message: impl Into<String>) -> Reply {
    Reply::Failure(Some(message.into()))
}

fn object<'a>(vm: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    vm.get(field).and_then(Value::as_object)
}

/// `internalNamespace`: the namespace of `key` when it is one of the
/// instance's `internal_metadata_namespaces`.
fn namespace<'k>(vm: &Value, key: &'k str) -> Option<&'k str> {
    let (prefix, _) = key.split_once(':')?;
    let namespaces = vm.get("internal_metadata_namespaces")?.as_array()?;
    namespaces.iter().any(|ns| ns.as_str() == Some(prefix)).then_some(prefix)
}

/// Whether `key` is read from (and written to) `internal_metadata`.
fn is_internal(vm: &Value, key: &str) -> bool {
    key.ends_with("_pw") || namespace(vm, key).is_some()
}

/// `returnit(null, value)`: how the agent answers with a JavaScript value.
fn value_reply(value: Option<&Value>) -> Reply {
    match value {
        None | Some(Value::Null) => Reply::NotFound,
        Some(Value::String(s)) => Reply::Success(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Reply::Success(Some(js::to_string(v))),
        // !isNaN(array) converts the array to a string, then to a number.
        Some(v @ Value::Array(_)) => {
            let s = js::to_string(v);
            if js::string_to_number(&s).is_some() {
                Reply::Success(Some(s))
            } else {
                Reply::Failure(None)
            }
        }
        Some(Value::Object(_)) => Reply::Failure(None),
    }
}

fn get(vm: &Value, want: &str) -> Reply {
    if want.is_empty() {
        return failure("Invalid GET Request");
    }
    if let Some(field) = want.strip_prefix("sdc:") {
        return get_sdc(vm, field);
    }
    let which = if is_internal(vm, want) { "internal_metadata" } else { "customer_metadata" };
    match vm.get(which) {
        Some(map) => value_reply(map.as_object().and_then(|m| m.get(want))),
        None => failure(format!("Zone did not contain {which}")),
    }
}

fn get_sdc(vm: &Value, field: &str) -> Reply {
    let has = |name: &str| vm.get(name).is_some();
    let internal = |key: &str| value_reply(object(vm, "internal_metadata").and_then(|m| m.get(key)));
    match field {
        "nics" | "resolvers" | "tmpfs" if has(field) => Reply::Success(Some(js::stringify(&vm[field]))),
        "routes" if has(field) => Reply::Success(Some(js::stringify(&routes(vm)))),
        "operator-script" => internal("operator-script"),
        "volumes" => internal("sdc:volumes"),
        _ => match field.strip_prefix("tags.") {
            Some(tag) => value_reply(object(vm, "tags").and_then(|t| t.get(tag))),
            None => value_reply(flatten(vm, field)),
        },
    }
}

/// `sdc:routes`: each route with its gateway; a gateway of `nics[N]` or
/// `macs[<mac>]` names one of the instance's NICs and becomes its IP (a
/// link-local route), and is left out when that NIC has no static IP.
fn routes(vm: &Value) -> Value {
    let nics = vm.get("nics").and_then(Value::as_array);
    let ip_of = |nic: &Value| -> Option<String> {
        match nic.get("ip")? {
            Value::String(ip) if ip != "dhcp" => Some(ip.clone()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    let Some(table) = object(vm, "routes") else {
        return Value::Array(out);
    };
    for dst in js::keys(table) {
        let Some(gw) = table[dst].as_str() else { continue };
        let link_local = if let Some(mac) = gw.strip_prefix("macs[").and_then(|s| s.strip_suffix(']')) {
            if mac.is_empty() || mac.contains(js::is_line_terminator) {
                None
            } else {
                let Some(want) = parse_mac(mac) else { continue };
                let Some(nics) = nics else { continue };
                let found =
                    nics.iter().find(|nic| nic.get("mac").and_then(Value::as_str).and_then(parse_mac) == Some(want));
                let Some(gateway) = found.and_then(ip_of) else { continue };
                Some(gateway)
            }
        } else if let Some(index) = gw.strip_prefix("nics[").and_then(|s| s.strip_suffix(']')) {
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                let nic = index.parse::<usize>().ok().and_then(|i| nics?.get(i));
                let Some(gateway) = nic.filter(|n| n.is_object()).and_then(ip_of) else { continue };
                Some(gateway)
            }
        } else {
            None
        };
        let mut route = Map::new();
        route.insert("linklocal".to_string(), Value::Bool(link_local.is_some()));
        route.insert("dst".to_string(), Value::String(dst.to_string()));
        route.insert("gateway".to_string(), Value::String(link_local.unwrap_or_else(|| gw.to_string())));
        out.push(Value::Object(route));
    }
    Value::Array(out)
}

/// A MAC address as the `macaddr` module parses one: six octets of one or
/// two hex digits separated by `:` or `-` (one kind throughout), or twelve
/// hex digits; any case.
fn parse_mac(s: &str) -> Option<u64> {
    let s = s.to_ascii_lowercase();
    let Some(sep) = s.chars().find(|c| matches!(c, ':' | '-')) else {
        return (s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(&s, 16).ok())
            .flatten();
    };
    let octets: Vec<&str> = s.split(sep).collect();
    if octets.len() != 6 {
        return None;
    }
    octets.iter().try_fold(0u64, |acc, octet| {
        let ok = (1..=2).contains(&octet.len()) && octet.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| u64::from_str_radix(octet, 16).ok().map(|o| acc << 8 | o)).flatten()
    })
}

/// The member of a JavaScript array `arr` whose own property `key` names,
/// if `key` is one of its indices.
fn own_index<'a>(arr: &'a Value, key: &str) -> Option<&'a Value> {
    match arr {
        Value::Array(items) => {
            let canonical = key == "0" || (!key.starts_with('0') && !key.is_empty());
            if !canonical || !key.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            items.get(key.parse::<usize>().ok()?)
        }
        Value::Object(map) => map.get(key),
        _ => None,
    }
}

/// `VM.flatten(vmobj, key)`: a dotted path into the VM object, for the
/// members SmartOS lets one flatten (`proptable.js`: `flattenable`).
fn flatten<'a>(vm: &'a Value, key: &str) -> Option<&'a Value> {
    const ARRAY_HASH_KEYS: [&str; 3] = ["disks", "nics", "pci_devices"];
    const HASH_KEYS: [&str; 4] = ["customer_metadata", "internal_metadata", "routes", "tags"];
    const ARRAYS: [&str; 2] = ["internal_metadata_namespaces", "resolvers"];
    let tokens: Vec<&str> = key.split('.').collect();
    match tokens[..] {
        [list, index, member] if ARRAY_HASH_KEYS.contains(&list) => {
            own_index(vm.get(list)?, index)?.as_object()?.get(member)
        }
        [map, member] if HASH_KEYS.contains(&map) => vm.get(map)?.as_object()?.get(member),
        [list, index] if ARRAYS.contains(&list) => {
            let list = vm.get(list)?;
            // Number(index), then hasOwnProperty of that number's string.
            let n = js::string_to_number(index)?;
            let n = if n == 0.0 { 0.0 } else { n };
            own_index(list, &js::number_to_string(n))
        }
        _ => vm.get(key),
    }
}

fn list(vm: &Value) -> Reply {
    let empty = Map::new();
    let customer = object(vm, "customer_metadata").unwrap_or(&empty);
    let internal = object(vm, "internal_metadata").unwrap_or(&empty);
    let keys: Vec<&str> = js::keys(customer)
        .into_iter()
        .filter(|k| !is_internal(vm, k))
        .chain(js::keys(internal).into_iter().filter(|k| is_internal(vm, k)))
        .collect();
    Reply::Success(Some(keys.join("\n")))
}

/// The refusals PUT and DELETE share.
fn check_writable(vm: &Value, key: &str) -> Result<(), Reply> {
    if key.starts_with("sdc:") {
        return Err(failure("Cannot update the \"sdc\" Namespace."));
    }
    if let Some(ns) = namespace(vm, key) {
        return Err(failure(format!("Cannot update the \"{ns}\" Namespace.")));
    }
    Ok(())
}

/// `setMetadata`: where a write goes.
fn target(key: &str) -> Target {
    if key.ends_with("_pw") || key == "operator-script" {
        Target::Internal
    } else {
        Target::Customer
    }
}

fn put(vm: &Value, key: &str, value: &str) -> Resolution {
    if key.is_empty() {
        return Resolution::Reply(failure("Invalid PUT Request"));
    }
    if let Err(reply) = check_writable(vm, key) {
        return Resolution::Reply(reply);
    }
    if key.len() > MAX_KEY {
        return Resolution::Reply(failure(format!(
            "Invalid PUT Request: the key is {} bytes long, more than the {MAX_KEY} allowed",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE {
        return Resolution::Reply(failure(format!(
            "Invalid PUT Request: the value is {} bytes long, more than the {MAX_VALUE} allowed",
            value.len()
        )));
    }
    Resolution::Write(Write {
        target: target(key),
        key: key.to_string(),
        // `if (_value)`: an empty value removes the key.
        value: (!value.is_empty()).then(|| value.to_string()),
    })
}

fn delete(vm: &Value, key: &str) -> Resolution {
    if key.is_empty() {
        return Resolution::Reply(failure("Invalid DELETE Request"));
    }
    if let Err(reply) = check_writable(vm, key) {
        return Resolution::Reply(reply);
    }
    Resolution::Write(Write { target: target(key), key: key.to_string(), value: None })
}

#[cfg(test)]
mod tests;
