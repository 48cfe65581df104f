//! `lookup`: `vmadm lookup` and `vmadm list` (test-lookup.js; vmadm.js's
//! list and lookup; vmadm(8)'s list, lookup and exit status).

use std::collections::BTreeSet;

use serde_json::json;

use crate::common::*;
use crate::support::*;

const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const B: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const C: &str = "cccccccc-0000-4000-8000-000000000003";
const D: &str = "dddddddd-0000-4000-8000-000000000004";
const LONG_ALIAS: &str = "a-very-long-alias-name";

/// Four zones: A `alpha` 128 MiB web, B `Beta` 256 MiB db and running,
/// C without alias 512 MiB web, D with a long alias 512 MiB.
fn four_zones() -> Option<(TestHost, String)> {
    let (h, img) = host()?;
    for extra in [
        json!({"uuid": A, "alias": "alpha", "max_physical_memory": 128, "autoboot": false,
               "tags": {"role": "web"}, "customer_metadata": {"owner": "ops"}}),
        json!({"uuid": B, "alias": "Beta", "max_physical_memory": 256, "tags": {"role": "db"}}),
        json!({"uuid": C, "hostname": "charlie", "max_physical_memory": 512, "autoboot": false, "tags": {"role": "web"}}),
        json!({"uuid": D, "alias": LONG_ALIAS, "max_physical_memory": 512, "autoboot": false}),
    ] {
        create(&h, &lx(&img, extra));
    }
    Some((h, img))
}

/// The uuids `vmadm lookup <args>` prints, one per line.
#[track_caller]
fn lookup(h: &TestHost, args: &[&str]) -> BTreeSet<String> {
    let mut all = vec!["lookup"];
    all.extend(args);
    let r = h.vmadm(&all);
    assert_eq!(r.code, 0, "vmadm {all:?}: {} {}", r.stdout, r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

fn set(uuids: &[&str]) -> BTreeSet<String> {
    uuids.iter().map(|u| u.to_string()).collect()
}

/// A command that must fail with exit `code` and say `message` on stderr.
#[track_caller]
fn assert_fails(h: &TestHost, args: &[&str], code: i32, message: &str) {
    let r = h.vmadm(args);
    assert_eq!(r.code, code, "vmadm {args:?}: stdout={} stderr={}", r.stdout, r.stderr);
    assert!(r.stderr.contains(message), "vmadm {args:?} should say {message:?}: {}", r.stderr);
}

// test-lookup.js "lookup on new VM" (tags); vmadm(8)'s lookup: exact and
// regex filters (case-insensitive, unanchored), fake fields (type, ram),
// -1, -j, -j -o; vmadm.js's lookup errors.
#[test]
fn lookup_filters_unique_and_json() {
    let Some((h, _img)) = four_zones() else { return };
    assert_eq!(lookup(&h, &[]), set(&[A, B, C, D]));
    for (filters, want) in [
        (&["tags.role=web"][..], &[A, C][..]),
        (&["tags.role=web", "alias=alpha"], &[A]),
        (&["alias=alpha"], &[A]),
        (&["alias=Alpha"], &[]),
        (&["alias=~^[ab]"], &[A, B, D]),
        (&["alias=~BETA"], &[B]),
        (&["alias=~lph"], &[A]),
        (&["alias=~^beta$"], &[B]),
        (&["customer_metadata.owner=ops"], &[A]),
        (&["ram=128"], &[A]),
        (&["type=LX"], &[A, B, C, D]),
        (&["brand=lx"], &[A, B, C, D]),
        (&["state=running"], &[B]),
        (&["state=stopped"], &[A, C, D]),
        (&["max_physical_memory=512"], &[C, D]),
        (&["hostname=charlie"], &[C]),
        (&["quota=10"], &[A, B, C, D]),
        (&["alias=nomatch"], &[]),
    ] {
        assert_eq!(lookup(&h, filters), set(want), "vmadm lookup {filters:?}");
    }

    assert_eq!(lookup(&h, &["-1", "alias=alpha"]), set(&[A]));
    assert_fails(&h, &["lookup", "-1", "tags.role=web"], 1, "Requested unique lookup but found 2 results.");
    assert_fails(&h, &["lookup", "-1", "alias=nomatch"], 1, "Requested unique lookup but found 0 results.");

    // -j: the VM objects, as vmadm get prints them plus list's fake
    // fields type and ram.
    let arr = h.vmadm(&["lookup", "-j", "alias=alpha"]).json();
    assert_eq!(arr.as_array().map(Vec::len), Some(1), "{arr}");
    let mut obj = arr[0].clone();
    assert_eq!((obj["type"].as_str(), obj["ram"].as_i64()), (Some("LX"), Some(128)), "{obj}");
    for fake in ["type", "ram"] {
        obj.as_object_mut().unwrap().remove(fake);
    }
    assert_eq!(obj, h.get(A), "lookup -j's object is vmadm get's");
    let arr = h.vmadm(&["lookup", "-j", "-o", "uuid,brand,quota", "tags.role=web"]).json();
    let objs: BTreeSet<String> = arr.as_array().unwrap().iter().map(|o| o.to_string()).collect();
    let want: BTreeSet<String> =
        [A, C].iter().map(|u| json!({"uuid": u, "brand": "lx", "quota": 10}).to_string()).collect();
    assert_eq!(objs, want, "-o limits the objects to those fields");
    assert_eq!(h.vmadm(&["lookup", "-j", "-o", "uuid", "alias=alpha"]).json(), json!([{"uuid": A}]));
    assert_eq!(
        h.vmadm(&["lookup", "-j", "-o", "uuid,type,ram", "alias=alpha"]).json(),
        json!([{"uuid": A, "type": "LX", "ram": 128}])
    );
    assert_eq!(h.vmadm(&["lookup", "-1", "-j", "-o", "uuid", "alias=Beta"]).json(), json!([{"uuid": B}]));
    assert_eq!(h.vmadm(&["lookup", "-j", "alias=nomatch"]).json(), json!([]));

    // vmadm.js: these are errors of the command (exit 1), not usage errors.
    assert_fails(&h, &["lookup", "-o", "uuid"], 1, "Cannot specify -o without -j");
    assert_fails(&h, &["lookup", "bogus=1"], 1, "Invalid lookup key: \"bogus\"");
}

/// A `list` line as vmadm.js prints it: each column left-aligned in its
/// width, two spaces between, trailing spaces trimmed.
fn row(cells: &[(&str, usize)]) -> String {
    cells.iter().map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
}

/// The default columns (UUID 36, TYPE 4, RAM 7, STATE 16, ALIAS 10).
fn default_row(uuid: &str, ty: &str, ram: &str, state: &str, alias: &str) -> String {
    row(&[(uuid, 36), (ty, 4), (ram, 7), (state, 16), (alias, 10)])
}

/// `vmadm list <args>`'s lines.
#[track_caller]
fn list(h: &TestHost, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list"];
    all.extend(args);
    let r = h.vmadm(&all);
    assert_eq!(r.code, 0, "vmadm {all:?}: {} {}", r.stdout, r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

// vmadm(8)'s list: default columns and sort, widths, -H, -p, -o, -s with
// descending keys and missing values, dotted columns; vmadm.js's list errors.
#[test]
fn lookup_list_columns_sort_and_formats() {
    let Some((h, _img)) = four_zones() else { return };
    let rows = [
        default_row(A, "LX", "128", "stopped", "alpha"),
        default_row(B, "LX", "256", "running", "Beta"),
        default_row(C, "LX", "512", "stopped", "-"),
        default_row(D, "LX", "512", "stopped", LONG_ALIAS),
    ];
    let mut want = vec![default_row("UUID", "TYPE", "RAM", "STATE", "ALIAS")];
    want.extend(rows.iter().cloned());
    assert_eq!(list(&h, &[]), want, "default columns, sorted by ram then uuid");
    assert_eq!(list(&h, &["-H"]), rows, "-H drops the header");
    assert_eq!(
        list(&h, &["-p"]),
        [
            format!("{A}:LX:128:stopped:alpha"),
            format!("{B}:LX:256:running:Beta"),
            format!("{C}:LX:512:stopped:"),
            format!("{D}:LX:512:stopped:{LONG_ALIAS}"),
        ],
        "-p: colons, no header, empty for missing"
    );
    assert_eq!(
        list(&h, &["-p", "-o", "alias,uuid", "-s", "-ram,uuid"]),
        [format!(":{C}"), format!("{LONG_ALIAS}:{D}"), format!("Beta:{B}"), format!("alpha:{A}"),]
    );
    // Strings sort by code unit ("Beta" < "a-very..." < "alpha"), missing last;
    // descending reverses both.
    assert_eq!(list(&h, &["-H", "-o", "uuid", "-s", "alias"]), [B, D, A, C]);
    assert_eq!(list(&h, &["-H", "-o", "uuid", "-s", "-alias"]), [C, A, D, B]);
    assert_eq!(list(&h, &["-H", "-o", "uuid", "state=running"]), [B]);
    assert_eq!(list(&h, &["-H", "-o", "uuid", "alias=~^A"]), [A, D], "regex filters are case-insensitive");
    assert_eq!(list(&h, &["alias=nomatch"]), [default_row("UUID", "TYPE", "RAM", "STATE", "ALIAS")]);

    // Map members and array elements as columns (width 20, header upper-cased).
    assert_eq!(
        list(&h, &["-o", "uuid,tags.role,customer_metadata.owner", "-s", "uuid"]),
        [
            row(&[("UUID", 36), ("TAGS.ROLE", 20), ("CUSTOMER_METADATA.OWNER", 20)]),
            row(&[(A, 36), ("web", 20), ("ops", 20)]),
            row(&[(B, 36), ("db", 20), ("-", 20)]),
            row(&[(C, 36), ("web", 20), ("-", 20)]),
            row(&[(D, 36), ("-", 20), ("-", 20)]),
        ]
    );
    // Other columns' headers and widths. (A false boolean shows as "-"
    // in vmadm.js, so the row is B's, whose autoboot is true.)
    let vm = h.get(B);
    assert_eq!(
        list(
            &h,
            &[
                "-o",
                "zonename,brand,quota,cpu_shares,zfs_io_priority,max_physical_memory,autoboot,zonepath",
                "alias=Beta"
            ]
        ),
        [
            row(&[
                ("ZONENAME", 12),
                ("BRAND", 14),
                ("QUOTA", 5),
                ("CPU_SHARE", 9),
                ("IO_PRIORITY", 11),
                ("MAX_PHYS", 8),
                ("AUTOBOOT", 8),
                ("ZONEPATH", 40),
            ]),
            row(&[
                (B, 12),
                ("lx", 14),
                ("10", 5),
                ("100", 9),
                ("100", 11),
                ("256", 8),
                ("true", 8),
                (vm["zonepath"].as_str().unwrap(), 40),
            ]),
        ]
    );

    // vmadm.js: bad keys are errors of the command (exit 1).
    assert_fails(&h, &["list", "-o", "bogus"], 1, "invalid order field: bogus");
    assert_fails(&h, &["list", "-s", "bogus"], 1, "invalid sort field: bogus");
    assert_fails(&h, &["list", "-s", "-bogus"], 1, "invalid sort field: -bogus");
    assert_fails(&h, &["list", "-o", "nics.*.ip"], 1, "Invalid order key: \"nics.*.ip\"");
    assert_fails(&h, &["list", "-s", "nics.*.ip"], 1, "Invalid sort key: \"nics.*.ip\"");
    assert_fails(&h, &["list", "bogus=1"], 1, "Invalid filter key: \"bogus\"");
}

// vmadm.js's usage errors (exit 2), help (exit 0) and a VM that does not
// exist (exit 1, zoneadm's message).
#[test]
fn lookup_usage_errors_and_unknown_vms() {
    let Some((h, _img)) = host() else { return };
    let r = h.vmadm(&[]);
    assert_eq!(r.code, 2, "no command: {} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Usage:"), "{}", r.stderr);
    assert_fails(&h, &["bogus"], 2, "Invalid command: \"bogus\".");
    for args in [&["-h"][..], &["help"]] {
        let r = h.vmadm(args);
        assert_eq!(r.code, 0, "vmadm {args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage:"), "vmadm {args:?} prints usage on stdout: {}", r.stdout);
    }
    assert_fails(&h, &["get", "not-a-uuid"], 2, "Invalid or missing UUID for get");
    assert_fails(&h, &["get"], 2, "Invalid or missing UUID for get");
    // SmartOS: zoneadm's message, which tools such as node-vmadm match.
    assert_fails(&h, &["get", BOGUS_UUID], 1, &format!("zoneadm: {BOGUS_UUID}: No such zone configured"));
    assert_fails(&h, &["json", BOGUS_UUID], 1, &format!("zoneadm: {BOGUS_UUID}: No such zone configured"));
}

// vmadm(8) example 5: a VM found by the address of one of its nics.
#[test]
fn lookup_by_nic_address() {
    let Some((h, img)) = host() else { return };
    h.cli("nictagadm", &["add", "-l", "external"], None).ok();
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({"autoboot": false, "nics": [{
                "nic_tag": "external", "ips": ["10.2.121.70/16"], "gateways": ["10.2.121.1"],
                "primary": true, "mac": "02:08:20:aa:bb:01",
            }]}),
        ),
    );
    create(&h, &lx(&img, json!({"autoboot": false})));
    assert_eq!(lookup(&h, &["nics.*.ip=10.2.121.70"]), set(&[&uuid]));
    assert_eq!(lookup(&h, &["nics.0.ip=10.2.121.70"]), set(&[&uuid]));
    assert_eq!(lookup(&h, &["nics.*.ip=~^10\\.2\\."]), set(&[&uuid]));
    // A mac is matched in SmartOS's short form too.
    assert_eq!(lookup(&h, &["nics.*.mac=2:8:20:aa:bb:1"]), set(&[&uuid]));
    let arr = h.vmadm(&["lookup", "-j", "nics.*.ip=10.2.121.70"]).json();
    assert_eq!(arr[0]["nics"][0]["ip"], "10.2.121.70");
    assert_eq!(arr[0]["nics"][0]["netmask"], "255.255.0.0");
    assert_eq!(
        list(&h, &["-H", "-o", "uuid,nics.0.ip", "-s", "uuid", &format!("uuid={uuid}")]),
        [row(&[(uuid.as_str(), 36), ("10.2.121.70", 20)])]
    );
}
