//! What the conformance modules share: a host with the busybox image,
//! creating and updating through the CLI, reading SmartOS's error objects,
//! waiting, and checking timestamps.

// Each category uses some of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::*;

/// The uuid SmartOS uses for "nobody": the default `owner_uuid` and `billing_id`.
pub const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// A uuid no test ever creates or installs.
pub const BOGUS_UUID: &str = "29fa922a-7fa7-11e2-bffa-5b6fe63a8d5e";

/// A host with the busybox image installed, and that image's uuid.
pub fn host() -> Option<(TestHost, String)> {
    let h = TestHost::new()?;
    let img = h.install(busybox());
    Some((h, img))
}

/// As [`host`], with the static guest tools in its zones (`mdata-get`, ...).
pub fn host_with_tools() -> Option<(TestHost, String)> {
    let h = TestHost::with_tools()?;
    let img = h.install(busybox());
    Some((h, img))
}

/// `{"brand": "lx", "image_uuid": img}` with `extra`'s members added.
pub fn lx(img: &str, extra: Value) -> Value {
    let mut p = json!({"brand": "lx", "image_uuid": img});
    for (k, v) in extra.as_object().expect("extra is an object") {
        p[k] = v.clone();
    }
    p
}

/// The uuid named by `Successfully created VM <uuid>`, on whichever
/// stream it came (SmartOS prints it on stderr; the `lifecycle` module
/// asserts the stream).
#[track_caller]
pub fn created_uuid(r: &Run) -> String {
    assert_eq!(r.code, 0, "create failed: stdout={} stderr={}", r.stdout, r.stderr);
    for stream in [&r.stderr, &r.stdout] {
        if let Some(line) = stream.lines().find_map(|l| l.trim().strip_prefix("Successfully created VM ")) {
            return line.trim().to_string();
        }
    }
    panic!("no 'Successfully created VM' line: stdout={:?} stderr={:?}", r.stdout, r.stderr)
}

/// `vmadm create` that must succeed; returns the new uuid.
#[track_caller]
pub fn create(h: &TestHost, payload: &Value) -> String {
    created_uuid(&h.create(payload))
}

/// `vmadm update <uuid>` with a JSON payload on stdin.
pub fn update(h: &TestHost, uuid: &str, payload: &Value) -> Run {
    h.cli("vmadm", &["update", uuid], Some(&payload.to_string()))
}

/// `vmadm update` that must succeed; returns the VM object after it.
#[track_caller]
pub fn update_ok(h: &TestHost, uuid: &str, payload: &Value) -> Value {
    let r = update(h, uuid, payload);
    assert_eq!(r.code, 0, "update {payload} failed: stdout={} stderr={}", r.stdout, r.stderr);
    h.get(uuid)
}

/// `vmadm validate create` (brand from the payload) or
/// `vmadm validate update <brand>`, the payload on stdin.
pub fn validate(h: &TestHost, action: &str, brand: Option<&str>, payload: &Value) -> Run {
    let mut args = vec!["validate", action];
    args.extend(brand);
    h.cli("vmadm", &args, Some(&payload.to_string()))
}

/// The JSON object SmartOS prints on stderr when a payload is refused
/// (`bad_brand`, `bad_properties`, `bad_values`, `missing_properties`),
/// or why there is none. zonevisor may put `vmadm: ` before it, so the
/// object is found by its braces.
pub fn find_error_object(r: &Run) -> Result<Value, String> {
    let (Some(start), Some(end)) = (r.stderr.find('{'), r.stderr.rfind('}')) else {
        return Err(format!(
            "no JSON error object on stderr (exit {}): stdout={:?} stderr={:?}",
            r.code, r.stdout, r.stderr
        ));
    };
    serde_json::from_str(&r.stderr[start..=end])
        .map_err(|e| format!("stderr's error object is not JSON ({e}): {:?}", r.stderr))
}

/// [`find_error_object`] that must find one.
#[track_caller]
pub fn error_object(r: &Run) -> Value {
    find_error_object(r).unwrap_or_else(|e| panic!("{e}"))
}

/// The strings of one of the error object's arrays (empty when absent).
pub fn names(errors: &Value, key: &str) -> Vec<String> {
    errors[key]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Why `r` is not a refusal (exit 1) with `prop` under `key`
/// (`bad_values`, `bad_properties`, `missing_properties`), if it is not.
pub fn refusal_problem(r: &Run, key: &str, prop: &str) -> Option<String> {
    if r.code != 1 {
        return Some(format!("exit {} (want 1): stdout={:?} stderr={:?}", r.code, r.stdout, r.stderr));
    }
    match find_error_object(r) {
        Err(e) => Some(e),
        Ok(errors) if !names(&errors, key).iter().any(|p| p == prop) => {
            Some(format!("{prop} is not under {key}: {errors}"))
        }
        Ok(_) => None,
    }
}

/// Asserts a refused validate or create: exit 1 and `prop` under `key`;
/// returns the error object.
#[track_caller]
pub fn assert_refused(r: &Run, key: &str, prop: &str, what: &str) -> Value {
    if let Some(problem) = refusal_problem(r, key, prop) {
        panic!("{what}: {problem}");
    }
    error_object(r)
}

/// Why `r` is not SmartOS's success of `vmadm validate` (exit 0,
/// `VALID '<action>' payload for <brand> brand VMs.` on stderr, nothing on
/// stdout), if it is not.
pub fn valid_problem(r: &Run, action: &str, brand: &str) -> Option<String> {
    let want = format!("VALID '{action}' payload for {brand} brand VMs.");
    (r.code != 0 || !r.stdout.is_empty() || r.stderr.trim() != want).then(|| {
        format!(
            "exit {}, stdout={:?}, stderr={:?} (want exit 0 and {want:?} on stderr only)",
            r.code, r.stdout, r.stderr
        )
    })
}

/// Asserts SmartOS's success of `vmadm validate`.
#[track_caller]
pub fn assert_valid(r: &Run, action: &str, brand: &str, what: &str) {
    if let Some(problem) = valid_problem(r, action, brand) {
        panic!("{what}: {problem}");
    }
}

/// Panics listing every problem, if there is one.
#[track_caller]
pub fn assert_no_problems(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// The members of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    k.sort();
    k
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `within`.
#[track_caller]
pub fn wait_for<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The zone's root directory as the host sees it: `zonepath` + `/root`
/// (as SmartOS's tests reach `/zones/<uuid>/root`).
#[track_caller]
pub fn zone_root(vm: &Value) -> PathBuf {
    let zonepath = vm["zonepath"].as_str().unwrap_or_else(|| panic!("no zonepath in {vm}"));
    PathBuf::from(zonepath).join("root")
}

/// Writes an executable script into the zone's root at `path` (absolute
/// inside the zone), as SmartOS's tests replace init.
pub fn write_script(vm: &Value, path: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let file = zone_root(vm).join(path.trim_start_matches('/'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, body).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Seconds since the epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Seconds since the epoch of an ISO-8601 UTC timestamp as SmartOS
/// writes them (`2024-01-31T12:34:56Z` or `...56.789Z`), or `None` when
/// it has another shape.
pub fn iso_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if *b.last()? != b'Z' {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    if !(frac.is_empty() || (frac.starts_with('.') && frac.len() > 1 && frac[1..].bytes().all(|c| c.is_ascii_digit())))
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec)
}

/// Asserts `v` is an ISO-8601 UTC timestamp within `[from, to]` (seconds
/// since the epoch, one second of slack each side); returns its seconds.
#[track_caller]
pub fn assert_timestamp_between(v: &Value, from: i64, to: i64, what: &str) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let t = iso_secs(s).unwrap_or_else(|| panic!("{what} is not an ISO-8601 UTC timestamp: {s:?}"));
    assert!(from - 1 <= t && t <= to + 1, "{what} {s} is not between {from} and {to} (epoch seconds)");
    t
}

#[test]
fn support_iso_secs_reads_smartos_timestamps() {
    assert_eq!(iso_secs("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(iso_secs("2013-01-31T18:05:05.123Z"), Some(1_359_655_505));
    assert_eq!(iso_secs("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    assert_eq!(iso_secs("2024-02-29 00:00:00"), None);
    assert_eq!(iso_secs("1359655505"), None);
}
