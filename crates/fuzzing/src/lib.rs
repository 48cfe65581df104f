//! The bodies of the fuzz targets: each takes the fuzzer's bytes, runs them
//! through the daemon's own code, and panics when the code panics or an
//! invariant breaks. `fuzz/` (cargo fuzz, nightly, libFuzzer) calls them
//! with generated inputs; `tests/corpus.rs` (stable, every CI run) replays
//! the committed corpora (`fuzz/corpus/<target>/`) and the inputs of fixed
//! crashes (`fuzz/regressions/<target>/`) through them.
//!
//! | target | the bytes are | run through | invariants beyond "no panic" |
//! |---|---|---|---|
//! | [`payload`] | a create payload, an update payload and a brand, built with [`json`] | `zonevisor_spec::validate_create`, `validate_update` (on the created object), `check_update_payload` | a refusal names something; a created object that is a valid payload validates to itself; an empty update changes nothing; a change applies live or at reboot, not both |
//! | [`payload_json`] | JSON text | the same | the same |
//! | [`manifest`] | an image manifest, built with [`json`] | the daemon's `check_manifest` | a refusal names something; an accepted manifest's UUID and SHA-1 are its own |
//! | [`http_request`] | raw bytes a client sends on the API socket | the daemon's HTTP connection code and request decoding (`zonevisor_daemon::fuzzing::exchange`) | every exchange ends; every answer is HTTP and none is a 500 (a panic) |

pub mod json;

use std::sync::OnceLock;

use arbitrary::Unstructured;
use serde_json::{json, Value};
use zonevisor_api::{ApiError, VmObject};
use zonevisor_daemon::fuzzing;
use zonevisor_spec::props::{Kind, Prop, Upd, PROPS};

/// A target: the fuzzer's bytes in, a panic when something is wrong.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` names its binaries and corpora.
pub const TARGETS: &[(&str, Target)] =
    &[("payload", payload), ("payload_json", payload_json), ("manifest", manifest), ("http_request", http_request)];

fn payload_keys() -> &'static json::Keys {
    static KEYS: OnceLock<json::Keys> = OnceLock::new();
    KEYS.get_or_init(json::Keys::payload)
}

fn manifest_keys() -> &'static json::Keys {
    static KEYS: OnceLock<json::Keys> = OnceLock::new();
    KEYS.get_or_init(json::Keys::manifest)
}

/// Structured payloads: mostly with a brand and (for lx) an image, which
/// every valid create needs, and properties of that brand with values of
/// their shape, so that the fuzzer gets past the first checks to the rules
/// between properties and to updates of a created object.
pub fn payload(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = build_payloads(&mut u).map(|(create, update, brand)| check_payloads(&create, &update, &brand));
}

fn build_payloads(u: &mut Unstructured) -> arbitrary::Result<(Value, Value, String)> {
    let keys = payload_keys();
    let brand = *u.choose(&["lx", "lx", "kvm", "bhyve", "joyent"])?;
    let parsed = brand.parse::<zonevisor_spec::Brand>().ok();
    let mut create = json::object(u, keys, 1)?;
    if u.ratio(1, 2)? {
        create.clear();
    }
    if u.ratio(15, 16)? {
        create.insert("brand".into(), json!(brand));
    }
    if brand == "lx" && u.ratio(7, 8)? {
        create.insert("image_uuid".into(), json!("6a2e1f44-bb0e-4bd8-a2a5-0d3c5f0e9a01"));
    }
    // Read-only properties are refused in any payload: the random members
    // above try them now and then.
    let mine = |p: &&Prop| parsed.is_none_or(|b| p.brands.has(b)) && p.name != "brand" && p.update != Upd::ReadOnly;
    for p in PROPS.iter().filter(mine) {
        if u.ratio(1, 8)? {
            create.insert(p.name.to_string(), json::typed(u, &p.kind, 1)?);
        }
    }
    let mut update = json::object(u, keys, 1)?;
    if u.ratio(1, 2)? {
        update.clear();
    }
    for p in PROPS.iter().filter(mine).filter(|p| p.update != Upd::Fixed) {
        if !u.ratio(1, 12)? {
            continue;
        }
        let (name, value) = match (p.kind, u.int_in_range(0u8..=2)?) {
            (Kind::Map { key, .. }, 0) => (format!("remove_{}", p.name), json!([json::fitting(u, &key)?])),
            (Kind::Map { .. }, _) => (format!("set_{}", p.name), json::typed(u, &p.kind, 1)?),
            (Kind::Objects { .. }, 0) => (format!("add_{}", p.name), json::typed(u, &p.kind, 1)?),
            (Kind::Objects { .. }, 1) => (format!("update_{}", p.name), json::typed(u, &p.kind, 1)?),
            (Kind::Objects { .. }, _) => (format!("remove_{}", p.name), json!([json::string(u)?])),
            _ => (p.name.to_string(), json::typed(u, &p.kind, 1)?),
        };
        update.insert(name, value);
    }
    let brand = if u.ratio(7, 8)? { brand.to_string() } else { json::string(u)? };
    Ok((Value::Object(create), Value::Object(update), brand))
}

/// Payloads as JSON text: the same value is the create payload and the
/// update payload, its `brand` (or lx) the brand.
pub fn payload_json(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let brand = v.get("brand").and_then(Value::as_str).unwrap_or("lx").to_string();
    check_payloads(&v, &v, &brand);
}

#[track_caller]
fn assert_names_something(errs: &zonevisor_api::ValidationErrors, what: &str, input: &Value) {
    assert!(!errs.is_empty(), "{what} refused without saying why: {errs:?}\ninput: {input}");
    let e = ApiError::validation(errs.clone());
    assert!(e.message.len() > "Invalid payload: ".len(), "{what}: {}", e.message);
}

fn check_payloads(create: &Value, update: &Value, brand: &str) {
    match zonevisor_spec::validate_create(create) {
        Ok(vm) => check_created(&vm, create, update),
        Err(errs) => assert_names_something(&errs, "validate_create", create),
    }
    let errs = zonevisor_spec::check_update_payload(brand, update);
    if !errs.is_empty() {
        assert_names_something(&errs, "check_update_payload", update);
    }
}

fn check_created(vm: &VmObject, create: &Value, update: &Value) {
    let brand = vm.get("brand").and_then(Value::as_str);
    assert!(matches!(brand, Some("lx" | "kvm" | "bhyve")), "created with brand {brand:?} from {create}");
    // Normalizing is done once: a created object that is valid as a
    // payload (not all are: a kvm disk from an image gets the image's size,
    // which a payload may not give) validates to itself.
    if let Ok(again) = zonevisor_spec::validate_create(&Value::Object(vm.clone())) {
        assert_eq!(&again, vm, "a created object validates to another\ninput: {create}");
    }
    // An empty update changes nothing.
    let plan = zonevisor_spec::validate_update(vm, &json!({}))
        .unwrap_or_else(|e| panic!("an empty update is refused: {e:?}\nobject: {vm:?}"));
    assert!(plan.changed.is_empty(), "an empty update changes {:?}\nobject: {vm:?}", plan.changed);
    match zonevisor_spec::validate_update(vm, update) {
        Ok(plan) => {
            for name in &plan.changed {
                assert!(
                    plan.live.contains(name) != plan.needs_reboot.contains(name),
                    "{name} is changed but neither live nor at reboot (or both): {plan:?}"
                );
            }
        }
        Err(errs) => assert_names_something(&errs, "validate_update", update),
    }
}

/// Structured image manifests, mostly with the members an install needs.
pub fn manifest(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mut m) = json::object(&mut u, manifest_keys(), 1) else { return };
    for (k, v) in [
        ("v", json!(2)),
        ("uuid", json!("7b3a2c6e-1f4d-4e8a-9c5b-b05b0c0e0001")),
        ("name", json!("busybox")),
        ("version", json!("1.0")),
        ("type", json!("lx-dataset")),
        ("os", json!("linux")),
        ("files", json!([{"sha1": "0123456789abcdef0123456789abcdef01234567", "size": 1024, "compression": "gzip"}])),
    ] {
        if u.ratio(3, 4).unwrap_or(false) {
            m.entry(k).or_insert(v);
        }
    }
    let m = Value::Object(m);
    match fuzzing::check_manifest(&m) {
        Ok(ok) => {
            assert_eq!(ok.sha1.len(), 40, "{m}");
            assert!(ok.sha1.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{m}");
            let uuid = m.get("uuid").and_then(Value::as_str).unwrap_or_default();
            assert!(uuid.eq_ignore_ascii_case(&ok.uuid.to_string()), "{} is not {uuid}", ok.uuid);
        }
        Err(errs) => assert_names_something(&errs, "check_manifest", &m),
    }
}

/// The status codes of the HTTP/1.1 (or 1.0) answers in `raw`, in order, as far as
/// they parse (each with a `content-length`, as the server's are).
pub fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let version = status_line.strip_prefix("HTTP/1.1 ").or_else(|| status_line.strip_prefix("HTTP/1.0 "));
        let Some(status) = version.and_then(|l| l.get(..3)) else {
            break;
        };
        let Ok(status) = status.parse() else { break };
        out.push(status);
        let length = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        rest = rest.get(end + 4 + length..).unwrap_or_default();
    }
    out
}

/// Raw bytes on the API socket, then end-of-file.
pub fn http_request(data: &[u8]) {
    let e = fuzzing::exchange(data);
    let shown = String::from_utf8_lossy(data);
    assert!(e.ended, "the connection did not end\nrequest: {shown:?}");
    if e.response.is_empty() {
        return;
    }
    assert!(
        e.response.starts_with(b"HTTP/1.1 ") || e.response.starts_with(b"HTTP/1.0 "),
        "not an HTTP answer: {:?}",
        String::from_utf8_lossy(&e.response)
    );
    let statuses = statuses(&e.response);
    assert!(!statuses.is_empty(), "{:?}", String::from_utf8_lossy(&e.response));
    assert!(
        !statuses.contains(&500),
        "a 500 (a panic): {:?}\nrequest: {shown:?}",
        String::from_utf8_lossy(&e.response)
    );
    assert!(statuses.len() >= e.decoded.len(), "{} requests decoded, {statuses:?} answered", e.decoded.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_split_by_their_lengths() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 22\r\n\r\nHTTP/1.1 500 not this!HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(statuses(raw), vec![200, 404]);
        assert_eq!(statuses(b"junk"), Vec::<u16>::new());
    }

    #[test]
    fn targets_take_anything() {
        for (_, target) in TARGETS {
            target(b"");
            target(b"{}");
            target(b"GET /v1/ping HTTP/1.1\r\n\r\n");
            target(&[0xff; 64]);
        }
    }
}
