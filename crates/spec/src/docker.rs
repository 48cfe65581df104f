//! SmartOS's docker payload: `docker: true` on an lx zone, and the
//! `docker:*` keys of its `internal_metadata` that say what it runs
//! (what SmartOS's `dockerinit` reads; smartos-live `src/dockerinit/`).
//!
//! | key | value (as in SmartOS: strings, JSON inside) |
//! |---|---|
//! | `docker:entrypoint` | a JSON array of strings: `"[\"/bin/sh\",\"-c\"]"` |
//! | `docker:cmd` | a JSON array of strings, after the entrypoint's |
//! | `docker:env` | a JSON array of `NAME=value` strings |
//! | `docker:workdir` | the working directory (`~` is the user's home) |
//! | `docker:user` | `user`, `uid`, `user:group` or `uid:gid` |
//! | `docker:open_stdin` | `true`: stdin is the console (else `/dev/null`) |
//! | `docker:tty` | `true` / `false` (the console is a terminal either way) |
//! | `docker:id` | 64 hex digits (made when absent, as VM.js's `newDockerId`) |
//!
//! SmartOS's vmadm stores these unchecked and `dockerinit` fails the
//! zone's boot on a bad one (`ERR_PARSE_JSON`, `ERR_UID_NAN`, ...); here a
//! create or update with a bad one is refused, naming it in `bad_values`
//! (`internal_metadata.docker:cmd`). With `docker: true`, VM.js also puts
//! `docker` in `internal_metadata_namespaces` (the zone cannot change the
//! keys), sets `restart_init` false (the command's exit stops the zone)
//! and makes a `docker:id`: so does [`apply_defaults`]. It does not set
//! `init_name` (SmartOS's points at `dockerinit`): the monitor runs the
//! command itself.

use serde_json::{Map, Value};
use uuid::Uuid;
use zonevisor_api::{ValidationErrors, VmObject};

/// The keys holding a JSON array of strings.
pub const ARRAY_KEYS: [&str; 3] = ["docker:entrypoint", "docker:cmd", "docker:env"];

/// A key's value read as SmartOS's `getMdataArray` reads it: a string
/// holding a JSON array of strings (an array given as JSON itself is
/// taken too). `None` when it is neither.
pub fn string_array(v: &Value) -> Option<Vec<String>> {
    let parsed;
    let array = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            parsed.as_array()?
        }
        Value::Array(a) => a,
        _ => return None,
    };
    array.iter().map(|e| e.as_str().map(String::from)).collect()
}

/// A boolean key (`docker:open_stdin`, `docker:tty`): `true`, `false`,
/// or the strings `"true"` / `"false"`.
pub fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Checks the `docker:*` keys of `internal_metadata` (reported under
/// `internal_metadata.<key>`).
pub(crate) fn check_keys(metadata: &Map<String, Value>, errs: &mut ValidationErrors) {
    for (key, v) in metadata {
        let name = format!("internal_metadata.{key}");
        match key.as_str() {
            "docker:entrypoint" | "docker:cmd" if string_array(v).is_none() => {
                errs.bad_value(&name, r#"must be a JSON array of strings, as a string: "[\"/bin/sh\",\"-c\"]""#);
            }
            "docker:env" => match string_array(v) {
                None => errs.bad_value(&name, "must be a JSON array of NAME=value strings, as a string"),
                Some(entries) => {
                    if let Some(bad) = entries.iter().find(|e| e.split_once('=').is_none_or(|(n, _)| n.is_empty())) {
                        errs.bad_value(&name, format!("{bad:?} is not NAME=value"));
                    }
                }
            },
            "docker:workdir" => match v.as_str() {
                Some(s) if !s.is_empty() && !s.contains('\0') => {}
                _ => errs.bad_value(&name, "must be a directory: a non-empty string"),
            },
            "docker:user" => match v.as_str() {
                Some(s) if valid_user(s) => {}
                _ => errs.bad_value(&name, "must be user, uid, user:group or uid:gid"),
            },
            "docker:open_stdin" | "docker:tty" if flag(v).is_none() => {
                errs.bad_value(&name, "must be true or false");
            }
            "docker:id" => match v.as_str() {
                Some(s) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {}
                _ => errs.bad_value(&name, "must be 64 hex digits"),
            },
            _ => {}
        }
    }
}

/// `user[:group]`, each a name or a number, without spaces.
fn valid_user(s: &str) -> bool {
    let ok = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    match s.split_once(':') {
        Some((u, g)) => ok(u) && ok(g),
        None => ok(s),
    }
}

/// VM.js's docker defaults for an instance that has `docker: true` (and
/// did not before, on an update): `docker` among the
/// `internal_metadata_namespaces`, `restart_init` false, and a
/// `docker:id` (the instance's uuid and a random one, without dashes)
/// unless one is set.
pub(crate) fn apply_defaults(vm: &mut VmObject) {
    if vm.get("docker") != Some(&Value::Bool(true)) {
        return;
    }
    let namespaces = vm.entry("internal_metadata_namespaces").or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = namespaces {
        if !list.iter().any(|n| n == "docker") {
            list.push(Value::from("docker"));
        }
    }
    vm.insert("restart_init".into(), Value::Bool(false));
    let uuid =
        vm.get("uuid").and_then(Value::as_str).and_then(|u| Uuid::parse_str(u).ok()).unwrap_or_else(Uuid::new_v4);
    let metadata = vm.entry("internal_metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = metadata {
        m.entry("docker:id").or_insert_with(|| Value::from(format!("{}{}", uuid.simple(), Uuid::new_v4().simple())));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn arrays_are_json_in_strings() {
        assert_eq!(string_array(&json!("[\"/bin/sh\",\"-c\"]")), Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(string_array(&json!(["a"])), Some(vec!["a".into()]));
        assert_eq!(string_array(&json!("[]")), Some(vec![]));
        for bad in [json!("sleep 1"), json!("[1]"), json!("{}"), json!(3), json!(true)] {
            assert_eq!(string_array(&bad), None, "{bad}");
        }
    }

    #[test]
    fn each_bad_key_is_named() {
        let mut errs = ValidationErrors::default();
        let m = json!({
            "docker:cmd": "sleep 3600", "docker:entrypoint": "[\"/bin/sh\"]",
            "docker:env": "[\"A=1\",\"novalue\"]", "docker:workdir": "", "docker:user": "a b",
            "docker:open_stdin": "yes", "docker:tty": true, "docker:id": "abc", "other": "x"
        });
        check_keys(m.as_object().unwrap(), &mut errs);
        let mut bad = errs.bad_values.clone();
        bad.sort();
        assert_eq!(
            bad,
            [
                "internal_metadata.docker:cmd",
                "internal_metadata.docker:env",
                "internal_metadata.docker:id",
                "internal_metadata.docker:open_stdin",
                "internal_metadata.docker:user",
                "internal_metadata.docker:workdir"
            ]
        );
        assert!(errs.reasons["internal_metadata.docker:env"].contains("novalue"));
        for good in ["app", "1000", "app:staff", "0:0"] {
            assert!(valid_user(good), "{good}");
        }
        for bad in ["", ":", "a:", ":b", "a b", "a:b:c"] {
            assert!(!valid_user(bad), "{bad}");
        }
    }

    #[test]
    fn docker_true_brings_vm_js_s_defaults() {
        let uuid = "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a01";
        let mut vm = json!({"uuid": uuid, "docker": true, "restart_init": true,
                            "internal_metadata_namespaces": ["mine"]})
        .as_object()
        .unwrap()
        .clone();
        apply_defaults(&mut vm);
        assert_eq!(vm["restart_init"], false);
        assert_eq!(vm["internal_metadata_namespaces"], json!(["mine", "docker"]));
        let id = vm["internal_metadata"]["docker:id"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 64);
        assert!(id.starts_with(&uuid.replace('-', "")), "{id}");
        // A docker:id given (or made before) is kept.
        apply_defaults(&mut vm);
        assert_eq!(vm["internal_metadata"]["docker:id"], Value::from(id));
        assert_eq!(vm["internal_metadata_namespaces"], json!(["mine", "docker"]));
        let mut plain = json!({"uuid": uuid}).as_object().unwrap().clone();
        apply_defaults(&mut plain);
        assert_eq!(plain.len(), 1, "no docker, no defaults");
    }
}
