//! The canonical text of rules and its round trip: fwrule
//! `test/rule.test.js` (the `rule` field of `serialize()`), plus the man
//! page examples (fw `man/fwrule.7.md`).

use super::*;

// fwrule test/rule.test.js: "all target types"
#[test]
fn all_target_types_are_ordered() {
    let (vm0, vm1) = ("9a343ca8-b42a-4a27-a9c5-800f57d1e8ed", "518908b6-8299-466d-8ea5-20a0ceff63ec");
    let text = format!(
        "FROM (ip 192.168.1.1 OR vm {vm0} OR tag tag1 OR subnet 192.168.2.0/24) \
         TO (ip 10.2.0.3 OR vm {vm1} OR tag tag2 OR subnet 10.2.1.0/24) ALLOW tcp port 80"
    );
    assert_eq!(
        canon(&text),
        format!(
            "FROM (ip 192.168.1.1 OR subnet 192.168.2.0/24 OR tag \"tag1\" OR vm {vm0}) \
             TO (ip 10.2.0.3 OR subnet 10.2.1.0/24 OR tag \"tag2\" OR vm {vm1}) ALLOW tcp PORT 80"
        )
    );
}

// fwrule test/rule.test.js: "any", "all vms", "icmp", "icmp with code",
// "icmp: multiple types", "Priority levels", "AH protocol", "ESP protocol",
// "IPv6 sources", "IPv6 subnet sources", "IPv6 destinations", "IPv6 subnet
// destinations", "Mixed IPv4 and IPv6": texts already canonical print
// unchanged.
#[test]
fn canonical_texts_print_unchanged() {
    let vm = "8a343ca8-b42a-4a27-a9c5-800f57d1e8ed";
    let vm2 = "9a343ca8-b42a-4a27-a9c5-800f57d1e8ed";
    let vm3 = "518908b6-8299-466d-8ea5-20a0ceff63ec";
    let texts = [
        format!("FROM (ip 192.168.3.2 OR subnet 192.168.0.0/16 OR tag \"tag3\" OR vm {vm}) TO any ALLOW tcp PORT 80"),
        "FROM ip 192.168.3.2 TO all vms ALLOW tcp PORT 80".to_string(),
        format!("FROM any TO vm {vm} ALLOW icmp TYPE 8"),
        format!("FROM any TO vm {vm} ALLOW icmp TYPE 8 CODE 0"),
        format!("FROM any TO vm {vm} ALLOW icmp (TYPE 8 CODE 0 AND TYPE 11 CODE 0 AND TYPE 30)"),
        "FROM tag \"a\" TO tag \"b\" ALLOW ah PRIORITY 12".to_string(),
        "FROM tag \"a\" TO tag \"b\" BLOCK ah PRIORITY 29".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW esp PRIORITY 31".to_string(),
        "FROM tag \"a\" TO tag \"b\" BLOCK esp PRIORITY 99".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW tcp PORT 80 PRIORITY 25".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW tcp PORT 443 PRIORITY 49".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW udp PORT all PRIORITY 72".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW udp PORTS 1 - 9 PRIORITY 10".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW icmp TYPE 0 PRIORITY 15".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW icmp TYPE 8 CODE 0 PRIORITY 20".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW icmp6 TYPE all PRIORITY 100".to_string(),
        "FROM tag \"a\" TO tag \"b\" BLOCK icmp6 TYPE 129 PRIORITY 20".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW icmp6 TYPE 128 CODE 0 PRIORITY 50".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW ah".to_string(),
        "FROM tag \"a\" TO tag \"b\" ALLOW esp".to_string(),
        format!("FROM (ip fd00::2 OR ip fe80::8:20ff:fe40:65e4) TO vm {vm2} ALLOW tcp PORT 80"),
        format!("FROM subnet fd00::/64 TO vm {vm2} ALLOW tcp PORT 80"),
        format!("FROM vm {vm2} TO (ip fd00::1 OR ip fd00::2) ALLOW tcp PORT 80"),
        format!("FROM vm {vm2} TO subnet fd00::/64 BLOCK tcp PORT 80"),
        format!("FROM (ip 10.10.10.5 OR ip fd00::1 OR vm {vm2}) TO vm {vm3} ALLOW tcp PORT 80"),
    ];
    for text in texts {
        assert_eq!(canon(&text), text);
    }
}

// fwrule test/rule.test.js: "Priority level 0 is implicit"
#[test]
fn priority_zero_is_not_printed() {
    assert_eq!(
        canon("FROM tag \"a\" TO tag \"b\" ALLOW tcp PORT 80 PRIORITY 0"),
        "FROM tag \"a\" TO tag \"b\" ALLOW tcp PORT 80"
    );
}

// fwrule test/rule.test.js: "tags", "tag \"hasOwnProperty\"", "tags:
// equal", "multiple tags: equal"
#[test]
fn tags_are_quoted() {
    for (text, want) in [
        ("FROM ip 1.2.3.4 TO tag some-tag ALLOW tcp PORT 80", "FROM ip 1.2.3.4 TO tag \"some-tag\" ALLOW tcp PORT 80"),
        (
            "FROM ip 1.2.3.4 TO (tag hasOwnProperty OR tag some-tag) ALLOW tcp PORT 80",
            "FROM ip 1.2.3.4 TO (tag \"hasOwnProperty\" OR tag \"some-tag\") ALLOW tcp PORT 80",
        ),
        (
            "FROM ip 1.2.3.4 TO tag some-tag = value ALLOW tcp PORT 80",
            "FROM ip 1.2.3.4 TO tag \"some-tag\" = \"value\" ALLOW tcp PORT 80",
        ),
        (
            "FROM ip 1.2.3.4 TO (tag some-tag = value OR tag some-tag = value2) ALLOW tcp PORT 80",
            "FROM ip 1.2.3.4 TO (tag \"some-tag\" = \"value\" OR tag \"some-tag\" = \"value2\") ALLOW tcp PORT 80",
        ),
    ] {
        assert_eq!(canon(text), want);
    }
}

// fwrule test/rule.test.js: "multiple tags: multiple values": a bare tag
// swallows the same tag with a value on that side.
#[test]
fn bare_tag_swallows_its_values() {
    let rule = ok("FROM (tag some-tag OR tag some-tag = value0) TO \
                   (tag some-tag = value OR tag some-tag = value2) ALLOW tcp PORT 80");
    assert_eq!(rule.from(), &side(vec![tag("some-tag")]));
    assert_eq!(
        rule.to_string(),
        "FROM tag \"some-tag\" TO (tag \"some-tag\" = \"value\" OR tag \"some-tag\" = \"value2\") ALLOW tcp PORT 80"
    );
    // Either order.
    assert_eq!(ok("FROM (tag a = 1 OR tag a OR tag a = 2) TO all vms ALLOW tcp PORT 1").from(), &side(vec![tag("a")]));
}

// fwrule test/rule.test.js: "multiple tags: multiple quoted values": sorted
// by UTF-16 code unit, as JavaScript sorts.
#[test]
fn tags_sort_as_javascript_does() {
    assert_eq!(
        canon(
            "FROM (tag \"김치\" = \"백김치\" OR tag \"김치\" = \"白김치\") TO \
               (tag \"some tag\" = value OR tag some-tag = \"another value\") ALLOW tcp PORT 80"
        ),
        "FROM (tag \"김치\" = \"白김치\" OR tag \"김치\" = \"백김치\") TO \
         (tag \"some tag\" = \"value\" OR tag \"some-tag\" = \"another value\") ALLOW tcp PORT 80"
    );
    // U+FF21 sorts after U+1F600 by code point, before it in UTF-16.
    let rule = ok("FROM (tag \"😀\" OR tag \"Ａ\") TO all vms ALLOW tcp PORT 1");
    assert_eq!(rule.from(), &side(vec![tag("😀"), tag("Ａ")]));
}

// fwrule test/rule.test.js: "multiple ports and owner_uuid", "sorting:
// ports", "sorting: port ranges", "single port range", "port ALL"
#[test]
fn ports_print_sorted() {
    let head = "FROM ip 10.88.88.1 TO tag \"tag2\" ALLOW tcp";
    for (ports, want) in [
        ("(PORT 1002 AND PORT 1052)", "(PORT 1002 AND PORT 1052)"),
        ("PORTS 1002, 1052", "(PORT 1002 AND PORT 1052)"),
        (
            "(PORT 1002 AND PORT 10 AND PORT 1052 AND PORT 80 AND PORT 30245 AND PORT 6)",
            "(PORT 6 AND PORT 10 AND PORT 80 AND PORT 1002 AND PORT 1052 AND PORT 30245)",
        ),
        ("PORTS 1002, 20-40, 10, 1052, 80, 30245, 6 - 11", "PORTS 6 - 11, 10, 20 - 40, 80, 1002, 1052, 30245"),
        ("PORTS 50-50", "PORTS 50 - 50"),
        ("PORT all", "PORT all"),
        ("( PORT all )", "PORT all"),
        // Not in SmartOS's grammar; accepted here as PORT all.
        ("PORTS all", "PORT all"),
        ("port ALL", "PORT all"),
    ] {
        assert_eq!(canon(&format!("{head} {ports}")), format!("{head} {want}"));
    }
    assert_eq!(
        ok(&format!("{head} PORTS 1002, 20-40, 10, 6 - 11")).protocol(),
        &Protocol::Tcp(Ports::List(vec![Port::Range(6, 11), Port::One(10), Port::Range(20, 40), Port::One(1002),]))
    );
}

// fwrule test/rule.test.js: "sorting: icmp codes", "sorting: icmp6 codes"
#[test]
fn icmp_types_print_sorted() {
    let vm = "8a343ca8-b42a-4a27-a9c5-800f57d1e8ed";
    for proto in ["icmp", "icmp6"] {
        assert_eq!(
            canon(&format!(
                "FROM any TO vm {vm} ALLOW {proto} (TYPE 8 CODE 0 AND TYPE 3 CODE 11 AND \
                 TYPE 40 AND TYPE 3 CODE 1 AND TYPE 30 AND TYPE 3 CODE 5)"
            )),
            format!(
                "FROM any TO vm {vm} ALLOW {proto} (TYPE 3 CODE 1 AND TYPE 3 CODE 5 AND \
                 TYPE 3 CODE 11 AND TYPE 8 CODE 0 AND TYPE 30 AND TYPE 40)"
            )
        );
    }
}

fn tag_rule(text: &str, quoted: bool) -> String {
    let q = if quoted { "\"" } else { "" };
    format!("FROM tag {q}{text}{q} = {q}{text}{q} TO tag {q}{text}{q} = {q}{text}{q} ALLOW tcp PORT 80")
}

/// fwrule test/rule.test.js `testTagInRules`: `input` (quoted, and
/// unquoted when `unquoted_ok`) gives tag name and value `value` on both
/// sides and prints as `output`.
fn check_tag(input: &str, output: &str, value: &str, unquoted_ok: bool) {
    let mut inputs = vec![tag_rule(input, true)];
    if unquoted_ok {
        inputs.push(tag_rule(input, false));
    }
    for text in inputs {
        let rule = ok(&text);
        assert_eq!(rule.from(), &side(vec![tagv(value, value)]), "{text:?}");
        assert_eq!(rule.to(), &side(vec![tagv(value, value)]), "{text:?}");
        assert_eq!(rule.to_string(), tag_rule(output, true), "{text:?}");
    }
}

// fwrule test/rule.test.js: "Tag names and values: Normal", "...: Numeric"
#[test]
fn tag_words() {
    for t in ["foo", "foo-bar", "foo_bar", "db2", "foo_bar-baz", "_"] {
        check_tag(t, t, t, true);
        let upper = t.to_uppercase();
        check_tag(&upper, &upper, &upper, true);
    }
    for n in ["0", "1", "5", "2000", "1234567890", "987654321", "23", "00000", "01", "10", "111111111"] {
        check_tag(n, n, n, true);
    }
}

// fwrule test/rule.test.js: "Tag names and values: IP addresses and
// subnets", "...: Keywords": only quoted (unquoted, the lexer reads an
// address or a keyword).
#[test]
fn tag_addresses_and_keywords_need_quotes() {
    for (input, output, value) in [
        ("1.2.3.4", "1.2.3.4", "1.2.3.4"),
        ("1.2.3.0/24", "1.2.3.0/24", "1.2.3.0/24"),
        ("1.2.3.0\\/24", "1.2.3.0/24", "1.2.3.0/24"),
        ("fd00::a:b:c:5", "fd00::a:b:c:5", "fd00::a:b:c:5"),
        ("fc00::/7", "fc00::/7", "fc00::/7"),
        ("fc00::\\/7", "fc00::/7", "fc00::/7"),
    ] {
        check_tag(input, output, value, false);
        assert!(parse(&tag_rule(input, false)).is_err(), "{input} unquoted");
    }
    for kw in [
        "tag", "from", "to", "ip", "subnet", "vm", "any", "all", "all vms", "vms", "or", "and", "block", "allow",
        "port", "ports", "tcp", "udp", "icmp", "icmp6", "type", "code", "priority", "ah", "esp",
    ] {
        check_tag(kw, kw, kw, false);
        let upper = kw.to_uppercase();
        check_tag(&upper, &upper, &upper, false);
        assert!(parse(&tag_rule(kw, false)).is_err(), "{kw} unquoted");
    }
}

// fwrule test/rule.test.js: "Tag names and values: Escaped characters",
// "...: Odd characters"
#[test]
fn tag_escapes() {
    for (value, input, output) in [
        (" ", " ", " "),
        (" ", "\\u0020", " "),
        ("\t", "\t", "\\t"),
        ("\t", "\\t", "\\t"),
        ("\t", "\\u0009", "\\t"),
        ("\n", "\n", "\\n"),
        ("\n", "\\n", "\\n"),
        ("\n", "\\u000A", "\\n"),
        ("\u{8}", "\u{8}", "\\b"),
        ("\u{8}", "\\b", "\\b"),
        ("\u{8}", "\\u0008", "\\b"),
        ("\u{c}", "\u{c}", "\\f"),
        ("\u{c}", "\\f", "\\f"),
        ("\u{c}", "\\u000C", "\\f"),
        ("\r", "\r", "\\r"),
        ("\r", "\\r", "\\r"),
        ("\r", "\\u000D", "\\r"),
        ("/", "/", "/"),
        ("/", "\\/", "/"),
        ("(", "(", "\\("),
        ("(", "\\(", "\\("),
        (")", ")", "\\)"),
        (")", "\\)", "\\)"),
        ("\"", "\\\"", "\\\""),
        ("\\", "\\\\", "\\\\"),
    ] {
        check_tag(input, output, value, false);
    }
    for c in [
        "!", "@", "#", "$", "%", "^", "&", "*", ",", ".", "<", ">", "?", ";", ":", "'", "[", "]", "{", "}", "|", "=",
        "+", "~", "`", "-", "_",
    ] {
        check_tag(c, c, c, false);
    }
}

// fwrule test/rule.test.js: "Tag names and values: ASCII control
// characters", "...: Unicode whitespace characters": printed as \uXXXX.
#[test]
fn tag_control_and_space_characters_print_escaped() {
    let codes = [
        "0000", "0001", "0002", "0003", "0004", "0005", "0006", "0007", "000B", "000E", "000F", "0010", "0011", "0012",
        "0013", "0014", "0015", "0016", "0017", "0018", "0019", "001A", "001B", "001C", "001D", "001E", "001F", "007F",
        "0085", "00A0", "1680", "180E", "2000", "2001", "2002", "2003", "2004", "2005", "2006", "2007", "2008", "2009",
        "200A", "200B", "200C", "200D", "2028", "2029", "202F", "205F", "2060", "3000", "FEFF",
    ];
    for code in codes {
        let c = char::from_u32(u32::from_str_radix(code, 16).unwrap()).unwrap();
        let value = c.to_string();
        let escaped = format!("\\u{code}");
        check_tag(&value, &escaped, &value, false);
        check_tag(&escaped, &escaped, &value, false);
        check_tag(&format!("\\u{}", code.to_lowercase()), &escaped, &value, false);
    }
}

// fw man/fwrule.7.md: every example rule parses; those that name no VM
// are the ones the man page says fail with "rule does not affect VMs".
#[test]
fn man_page_examples() {
    for text in [
        "FROM any to vm 04128191-d2cb-43fc-a970-e4deefe970d8 ALLOW tcp port 80",
        "FROM all vms to (ip 10.2.0.1 OR ip fd22::1234) BLOCK tcp port 25",
        "FROM subnet 10.8.0.0/16 TO vm 0f570678-c007-4610-a2c0-bbfcaab9f4e6 ALLOW tcp port 443",
        "FROM subnet fd22::/64 TO vm 0f570678-c007-4610-a2c0-bbfcaab9f4e6 ALLOW tcp port 443",
        "FROM all vms TO tag syslog ALLOW udp port 514",
        "FROM tag role = db TO tag role = www ALLOW tcp port 5432",
        "FROM all vms TO tag \"VM type\" = \"LDAP server\" ALLOW tcp PORT 389",
        "FROM all vms TO all vms ALLOW tcp port 22",
        "FROM any TO all vms ALLOW tcp port 80",
        "FROM (vm 163dcedb-828d-43c9-b076-625423250ee2 OR tag db) TO (subnet 10.2.2.0/24 OR ip 10.3.0.1) BLOCK tcp port 443",
        "FROM any TO all vms BLOCK tcp port 143",
        "FROM all vms TO any ALLOW tcp port 25",
        "FROM tag www TO any ALLOW tcp (port 80 AND port 443)",
        "FROM tag www TO any ALLOW tcp ports 80, 443, 8000-8100",
        "FROM any TO all vms ALLOW icmp TYPE 8 CODE 0",
        "FROM any TO all vms ALLOW icmp6 TYPE 128 CODE 0",
        "FROM all vms TO any BLOCK icmp TYPE 0",
        "FROM all vms TO any BLOCK icmp6 TYPE 129",
        "FROM any TO tag mta ALLOW tcp PORT 25",
        "FROM subnet 10.20.30.0/24 TO tag mta BLOCK tcp PORT 25 PRIORITY 1",
        "FROM all vms TO any BLOCK tcp PORT all",
        "FROM all vms TO any ALLOW tcp PORT 22 PRIORITY 1",
        "FROM any TO all vms ALLOW udp (PORT 500 and PORT 4500)",
    ] {
        ok(text);
    }
    assert_eq!(
        canon("FROM tag www TO any ALLOW tcp ports 80, 443, 8000-8100"),
        "FROM tag \"www\" TO any ALLOW tcp PORTS 80, 443, 8000 - 8100"
    );
    for text in ["FROM any TO any ALLOW tcp port 22", "FROM ip 192.168.1.3 TO subnet 192.168.1.0/24 ALLOW tcp port 22"]
    {
        assert_eq!(fails(text).kind, ParseErrorKind::NoVms, "{text}");
    }
}

// The brief's own examples.
#[test]
fn examples_from_the_module_docs() {
    assert_eq!(
        canon("from (tag www or ip 10.0.0.1) to all vms allow tcp ports 443, 80"),
        "FROM (ip 10.0.0.1 OR tag \"www\") TO all vms ALLOW tcp (PORT 80 AND PORT 443)"
    );
    assert_eq!(canon("FROM any TO all vms ALLOW tcp PORT 22"), "FROM any TO all vms ALLOW tcp PORT 22");
}

// Round trips over normalizations the canonical text undoes: duplicates,
// IPv6 spellings, leading zeros, host bits, prefix digits.
#[test]
fn normalizations_round_trip() {
    let vm = "8a343ca8-b42a-4a27-a9c5-800f57d1e8ed";
    for (text, want) in [
        (
            format!("FROM (vm {vm} OR vm {vm} OR ip 10.0.0.1 OR ip 10.0.0.1) TO any BLOCK tcp PORT 1"),
            format!("FROM (ip 10.0.0.1 OR vm {vm}) TO any BLOCK tcp PORT 1"),
        ),
        (
            "FROM (ip fd00:0:0:0::1 OR ip fd00::1 OR ip 10.0.0.10 OR ip 10.0.0.9) TO all vms ALLOW tcp PORT 0022"
                .to_string(),
            "FROM (ip 10.0.0.10 OR ip 10.0.0.9 OR ip fd00::1) TO all vms ALLOW tcp PORT 22".to_string(),
        ),
        (
            "FROM ip ::ffff:102:304 TO all vms ALLOW tcp PORT 1".to_string(),
            "FROM ip ::ffff:102:304 TO all vms ALLOW tcp PORT 1".to_string(),
        ),
        (
            "FROM ip 1:0:0:2:0:0:0:3 TO all vms ALLOW tcp PORT 1".to_string(),
            "FROM ip 1:0:0:2::3 TO all vms ALLOW tcp PORT 1".to_string(),
        ),
        (
            "FROM subnet 10.1.2.3/008 TO all vms ALLOW tcp (PORT 80 AND PORT 80)".to_string(),
            "FROM subnet 10.1.2.3/8 TO all vms ALLOW tcp (PORT 80 AND PORT 80)".to_string(),
        ),
        (
            "FROM all vms TO all vms ALLOW icmp (TYPE 8 AND TYPE 8 CODE 0 AND TYPE 0)".to_string(),
            "FROM all vms TO all vms ALLOW icmp (TYPE 0 AND TYPE 8 AND TYPE 8 CODE 0)".to_string(),
        ),
    ] {
        assert_eq!(canon(&text), want, "{text}");
    }
}
