//! Finding, matching and ordering values inside JSON objects, the way
//! `vmadm list`/`lookup` and `imgadm list` do it: dotted paths reach into
//! objects and arrays (`tags.role`, `nics.0.ip`, `nics.*.ip` for any
//! element), `field=value` filters compare the value's string form,
//! `field=~...` filters match a regular expression (vmadm) or a substring
//! (imgadm), and sort keys compare numbers as numbers.
//!
//! Everything here is a pure function over `serde_json` values.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

/// Splits a dotted key into path segments.
pub fn split_path(key: &str) -> Vec<String> {
    key.split('.').map(str::to_string).collect()
}

/// All values `path` reaches in `map`; `*` stands for every element of an
/// array (or every value of an object). An object key that itself holds
/// dots (`tags."a.b"`) is found too.
pub fn resolve<'a>(map: &'a Map<String, Value>, path: &[String]) -> Vec<&'a Value> {
    let mut out = Vec::new();
    resolve_in_map(map, path, &mut out);
    out
}

/// The first value `path` reaches in `map`.
pub fn resolve_first<'a>(map: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    resolve(map, path).into_iter().next()
}

fn resolve_in_map<'a>(map: &'a Map<String, Value>, path: &[String], out: &mut Vec<&'a Value>) {
    let Some(first) = path.first() else { return };
    if first == "*" {
        for v in map.values() {
            resolve_value(v, &path[1..], out);
        }
        return;
    }
    // Keys may contain dots: try the shortest key first, then longer ones.
    let mut key = String::new();
    for (n, seg) in path.iter().enumerate() {
        if n > 0 {
            key.push('.');
        }
        key.push_str(seg);
        if let Some(v) = map.get(&key) {
            resolve_value(v, &path[n + 1..], out);
        }
    }
}

fn resolve_value<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    if path.is_empty() {
        out.push(value);
        return;
    }
    match value {
        Value::Object(m) => resolve_in_map(m, path, out),
        Value::Array(items) => {
            let seg = &path[0];
            if seg == "*" {
                for item in items {
                    resolve_value(item, &path[1..], out);
                }
            } else if let Ok(i) = seg.parse::<usize>() {
                if let Some(item) = items.get(i) {
                    resolve_value(item, &path[1..], out);
                }
            }
        }
        _ => {}
    }
}

/// The string form of a value as a table cell or filter operand: strings
/// as they are, numbers and booleans as written in JSON, arrays of scalars
/// joined with commas, objects as compact JSON. `null` has none.
pub fn display(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.iter().all(|v| !v.is_array() && !v.is_object()) => {
            Some(items.iter().map(|v| display(v).unwrap_or_default()).collect::<Vec<_>>().join(","))
        }
        other => Some(other.to_string()),
    }
}

/// How a filter compares.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// The string form equals this.
    Exact(String),
    /// The string form matches this regular expression (`field=~re`).
    Regex(Regex),
    /// The string form contains this (`imgadm`'s `field=~text`).
    Substring(String),
}

/// One `field=value` filter.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The key as given (`nics.*.ip`).
    pub key: String,
    path: Vec<String>,
    /// How values are compared.
    pub matcher: Matcher,
}

/// What `field=~text` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tilde {
    /// A regular expression: `~re`, `~/re/` or `~/re/i` (vmadm).
    Regex,
    /// A substring (imgadm).
    Substring,
}

impl Filter {
    /// Parses `key=value` or `key=~pattern`.
    pub fn parse(arg: &str, tilde: Tilde) -> Result<Filter, String> {
        let (key, value) = crate::args::split_kv(arg)?;
        if key.split('.').any(str::is_empty) {
            return Err(format!("Invalid filter key \"{key}\""));
        }
        let matcher = match value.strip_prefix('~') {
            Some(pattern) => match tilde {
                Tilde::Regex => Matcher::Regex(
                    compile_regex(pattern).map_err(|e| format!("Invalid regular expression in \"{arg}\": {e}"))?,
                ),
                Tilde::Substring => Matcher::Substring(pattern.to_string()),
            },
            // A MAC in SmartOS's short form (`2:8:20:aa:bb:1`) matches the
            // stored one (`02:08:20:aa:bb:01`), as SmartOS's lookup does.
            None if key.rsplit('.').next() == Some("mac") => Matcher::Exact(canonical_mac(value)),
            None => Matcher::Exact(value.to_string()),
        };
        Ok(Filter { key: key.to_string(), path: split_path(key), matcher })
    }

    /// The top-level property this filter reads.
    pub fn top_level(&self) -> &str {
        &self.path[0]
    }

    /// Whether any value the key reaches in `map` matches (an array of
    /// scalars matches when one of its elements does).
    pub fn matches(&self, map: &Map<String, Value>) -> bool {
        resolve(map, &self.path).into_iter().any(|v| {
            self.matches_one(v)
                || matches!(v, Value::Array(items) if items.iter().any(|i| !i.is_array() && self.matches_one(i)))
        })
    }

    fn matches_one(&self, value: &Value) -> bool {
        let Some(s) = display(value) else { return false };
        match &self.matcher {
            Matcher::Exact(want) => &s == want,
            Matcher::Regex(re) => re.is_match(&s),
            Matcher::Substring(part) => s.contains(part.as_str()),
        }
    }
}

/// `value` as a MAC in the stored form (two lowercase hex digits per
/// byte) when it is one, else unchanged.
fn canonical_mac(value: &str) -> String {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = parts.len() == 6
        && parts.iter().all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return value.to_string();
    }
    parts.iter().map(|p| format!("{:0>2}", p.to_ascii_lowercase())).collect::<Vec<_>>().join(":")
}

/// Compiles `re` (case-insensitive, as SmartOS matches `field=~re`), or
/// `/re/` or `/re/flags` (flags among `imsx`, exactly as given).
fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    if let Some(body) = pattern.strip_prefix('/') {
        if let Some(end) = body.rfind('/') {
            let (re, flags) = (&body[..end], &body[end + 1..]);
            if flags.chars().all(|c| "imsx".contains(c)) {
                return if flags.is_empty() { Regex::new(re) } else { Regex::new(&format!("(?{flags}){re}")) };
            }
        }
    }
    regex::RegexBuilder::new(pattern).case_insensitive(true).build()
}

/// Whether every filter matches.
pub fn matches_all(filters: &[Filter], map: &Map<String, Value>) -> bool {
    filters.iter().all(|f| f.matches(map))
}

/// One sort key: `field`, `+field` or `-field` (descending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// The key without its sign.
    pub key: String,
    path: Vec<String>,
    /// Highest first.
    pub descending: bool,
}

impl SortKey {
    /// Parses one key.
    pub fn parse(spec: &str) -> SortKey {
        let (key, descending) = match spec.as_bytes().first() {
            Some(b'-') => (&spec[1..], true),
            Some(b'+') => (&spec[1..], false),
            _ => (spec, false),
        };
        SortKey { key: key.to_string(), path: split_path(key), descending }
    }

    /// The top-level property this key reads.
    pub fn top_level(&self) -> &str {
        &self.path[0]
    }
}

/// Parses a comma-separated list of sort keys (empty entries are skipped).
pub fn parse_sort(list: &str) -> Vec<SortKey> {
    list.split(',').filter(|s| !s.is_empty() && *s != "-" && *s != "+").map(SortKey::parse).collect()
}

/// Orders two values: absent values after present ones, numbers (and
/// strings that both read as numbers) numerically, the rest by their string
/// form.
pub fn compare_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
                return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            }
            display(a).cmp(&display(b))
        }
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.is_empty() => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// Compares two objects by `keys` in turn.
pub fn compare_by(a: &Map<String, Value>, b: &Map<String, Value>, keys: &[SortKey]) -> Ordering {
    for k in keys {
        let ord = compare_values(resolve_first(a, &k.path), resolve_first(b, &k.path));
        let ord = if k.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn vm() -> Map<String, Value> {
        obj(json!({
            "uuid": "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f",
            "alias": "web01",
            "ram": 512,
            "autoboot": true,
            "tags": {"role": "web", "a.b": "dotted"},
            "customer_metadata": {"user-script": "#!/bin/sh"},
            "resolvers": ["8.8.8.8", "1.1.1.1"],
            "nics": [
                {"interface": "eth0", "ip": "10.0.0.5", "ips": ["10.0.0.5/24"]},
                {"interface": "eth1", "ip": "192.168.1.9", "ips": ["192.168.1.9/24", "fd00::9/64"]}
            ]
        }))
    }

    fn f(arg: &str) -> Filter {
        Filter::parse(arg, Tilde::Regex).unwrap()
    }

    #[test]
    fn exact_filters_compare_string_forms() {
        let m = vm();
        assert!(f("alias=web01").matches(&m));
        assert!(!f("alias=web").matches(&m));
        assert!(f("ram=512").matches(&m));
        assert!(!f("ram=5120").matches(&m));
        assert!(f("autoboot=true").matches(&m));
        assert!(!f("autoboot=false").matches(&m));
        assert!(!f("state=running").matches(&m), "absent property never matches");
    }

    #[test]
    fn dotted_paths_into_objects_and_arrays() {
        let m = vm();
        assert!(f("tags.role=web").matches(&m));
        assert!(!f("tags.role=db").matches(&m));
        assert!(f("tags.a.b=dotted").matches(&m), "keys holding dots");
        assert!(f("customer_metadata.user-script=#!/bin/sh").matches(&m));
        assert!(f("nics.*.ip=10.0.0.5").matches(&m));
        assert_eq!(canonical_mac("2:8:20:AA:bb:1"), "02:08:20:aa:bb:01");
        assert_eq!(canonical_mac("not:a:mac"), "not:a:mac");
        assert!(f("nics.*.ip=192.168.1.9").matches(&m));
        assert!(!f("nics.*.ip=10.0.0.6").matches(&m));
        assert!(f("nics.1.interface=eth1").matches(&m));
        assert!(!f("nics.0.interface=eth1").matches(&m));
        assert!(!f("nics.7.interface=eth1").matches(&m));
        assert!(f("nics.*.ips=fd00::9/64").matches(&m), "any element of a leaf array");
        assert!(f("resolvers=1.1.1.1").matches(&m));
    }

    #[test]
    fn regex_filters() {
        let m = vm();
        assert!(f("alias=~^web").matches(&m));
        assert!(f("alias=~/^web\\d+$/").matches(&m));
        assert!(f("alias=~^WEB").matches(&m), "case-insensitive, as SmartOS matches");
        assert!(!f("alias=~/^WEB/").matches(&m), "explicit flags are taken as given");
        assert!(f("alias=~/^WEB/i").matches(&m));
        assert!(f("alias=~eb0").matches(&m), "unanchored, like JavaScript's test()");
        assert!(f("nics.*.ip=~^192\\.168\\.").matches(&m));
        assert!(!f("nics.*.ip=~^172\\.").matches(&m));
        // A slash pattern whose tail is not flags is taken as a whole.
        assert!(Filter::parse("alias=~/web/x01", Tilde::Regex).is_ok());
        let err = Filter::parse("alias=~(", Tilde::Regex).unwrap_err();
        assert!(err.contains("Invalid regular expression"), "{err}");
    }

    #[test]
    fn substring_filters_and_bad_keys() {
        let m = vm();
        let sub = Filter::parse("alias=~eb", Tilde::Substring).unwrap();
        assert!(sub.matches(&m));
        let sub = Filter::parse("alias=~^web", Tilde::Substring).unwrap();
        assert!(!sub.matches(&m), "no regex in substring mode");
        assert!(Filter::parse("alias", Tilde::Regex).is_err());
        assert!(Filter::parse("tags..x=1", Tilde::Regex).is_err());
        assert_eq!(f("nics.*.ip=1").top_level(), "nics");
    }

    #[test]
    fn compare_numbers_strings_and_absent() {
        let (n2, n10) = (json!(2), json!(10));
        assert_eq!(compare_values(Some(&n2), Some(&n10)), Ordering::Less);
        let (s2, s10) = (json!("2"), json!("10"));
        assert_eq!(compare_values(Some(&s2), Some(&s10)), Ordering::Less, "numeric strings compare as numbers");
        let (a, b) = (json!("b-2"), json!("b-10"));
        assert_eq!(compare_values(Some(&a), Some(&b)), Ordering::Greater, "other strings compare as text");
        assert_eq!(compare_values(None, Some(&n2)), Ordering::Greater, "absent sorts last");
        assert_eq!(compare_values(Some(&Value::Null), Some(&n2)), Ordering::Greater);
        assert_eq!(compare_values(None, None), Ordering::Equal);
    }

    #[test]
    fn multi_key_and_descending_sort() {
        let mut rows = [
            obj(json!({"uuid": "c", "ram": 256})),
            obj(json!({"uuid": "a", "ram": 1024})),
            obj(json!({"uuid": "b", "ram": 256})),
            obj(json!({"uuid": "d"})),
        ];
        let keys = parse_sort("ram,uuid");
        rows.sort_by(|a, b| compare_by(a, b, &keys));
        let order: Vec<&str> = rows.iter().map(|r| r["uuid"].as_str().unwrap()).collect();
        assert_eq!(order, ["b", "c", "a", "d"]);
        let keys = parse_sort("-ram,uuid");
        assert!(keys[0].descending && !keys[1].descending);
        rows.sort_by(|a, b| compare_by(a, b, &keys));
        let order: Vec<&str> = rows.iter().map(|r| r["uuid"].as_str().unwrap()).collect();
        assert_eq!(order, ["d", "a", "b", "c"]);
        assert_eq!(parse_sort("+uuid,,"), vec![SortKey::parse("uuid")]);
    }

    #[test]
    fn display_forms() {
        assert_eq!(display(&json!("x")), Some("x".into()));
        assert_eq!(display(&json!(1.5)), Some("1.5".into()));
        assert_eq!(display(&json!(false)), Some("false".into()));
        assert_eq!(display(&json!(null)), None);
        assert_eq!(display(&json!(["a", 1])), Some("a,1".into()));
        assert_eq!(display(&json!({"k": 1})), Some("{\"k\":1}".into()));
    }
}
