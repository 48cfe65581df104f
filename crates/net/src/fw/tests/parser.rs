//! The parser, case by case: fwrule `test/parser.test.js`.

use super::*;

const VM: &str = "b0b92cd9-1fe7-4636-8477-81d2742566c2";

// fwrule test/parser.test.js: "empty input"
#[test]
fn empty_input_expects_from() {
    let e = fails("");
    assert_eq!(e.offset, 0);
    assert_eq!(e.token, "");
    assert_eq!(e.kind, ParseErrorKind::Unexpected { expected: vec!["FROM"] });
    assert_eq!(e.to_string(), "rule: unexpected end of rule at 0; expected FROM");
    // White space only is empty too; the end is after it.
    assert_eq!(fails("  \t").offset, 3);
}

// fwrule test/parser.test.js: "tags" (a tag name with dashes)
#[test]
fn tag_with_dashes() {
    assert_eq!(
        ok("FROM ip 1.2.3.4 TO tag some-tag ALLOW tcp PORT 80"),
        build(side(vec![ip("1.2.3.4")]), side(vec![tag("some-tag")]), Action::Allow, Protocol::Tcp(ports(&[80])),)
    );
}

// fwrule test/parser.test.js: "icmp", "icmp with code"
#[test]
fn icmp_type_and_code() {
    let expect = |t| build(side(vec![ip("10.0.0.2")]), side(vec![vm(VM)]), Action::Allow, Protocol::Icmp(t));
    assert_eq!(ok(&format!("FROM ip 10.0.0.2 TO vm {VM} ALLOW icmp type 8")), expect(types(&[(8, None)])));
    assert_eq!(ok(&format!("FROM ip 10.0.0.2 TO vm {VM} ALLOW icmp type 8 code 0")), expect(types(&[(8, Some(0))])));
}

// fwrule test/parser.test.js: "case insensitivity"
#[test]
fn keywords_in_upper_or_lower_case() {
    let vm_uuid = "b5ff85db-fc33-4471-b045-5688cb7fa6a8";
    let ip_to_tag =
        build(side(vec![ip("1.2.3.4")]), side(vec![tag("some-tag")]), Action::Allow, Protocol::Tcp(ports(&[80])));
    let any_to_vm = build(Side::Any, side(vec![vm(vm_uuid)]), Action::Allow, Protocol::Udp(ports(&[50])));
    let allow_ah = build(Side::Any, Side::AllVms, Action::Allow, Protocol::Ah);
    let allow_esp = build(Side::Any, Side::AllVms, Action::Allow, Protocol::Esp);
    let subnet_to_all =
        build(side(vec![subnet("10.8.0.0/16")]), Side::AllVms, Action::Allow, Protocol::Icmp(types(&[(30, None)])));
    // SmartOS keeps ips before subnets, and sorts types.
    let ip_tag = build(
        side(vec![ip("10.9.0.1"), subnet("10.8.0.0/16")]),
        Side::AllVms,
        Action::Allow,
        Protocol::Icmp(types(&[(8, Some(0)), (9, None)])),
    );
    let cases = [
        ("FROM IP 1.2.3.4 TO TAG some-tag ALLOW TCP PORTS 80", &ip_to_tag),
        ("FROM IP 1.2.3.4 TO TAG some-tag ALLOW TCP ports 80", &ip_to_tag),
        ("FROM IP 1.2.3.4 TO TAG some-tag ALLOW TCP PORT 80", &ip_to_tag),
        ("from ip 1.2.3.4 to tag some-tag allow tcp port 80", &ip_to_tag),
        (&format!("from ANY to VM {vm_uuid} allow UDP ports 50"), &any_to_vm),
        (&format!("from any to vm {vm_uuid} allow udp ports 50"), &any_to_vm),
        (&format!("from ANY to VM {vm_uuid} allow UDP port 50"), &any_to_vm),
        (&format!("from any to vm {vm_uuid} allow udp port 50"), &any_to_vm),
        ("from ANY to ALL VMS allow AH", &allow_ah),
        ("from any to all vms allow ah", &allow_ah),
        ("from ANY to ALL VMS allow ESP", &allow_esp),
        ("from any to all vms allow esp", &allow_esp),
        ("FROM SUBNET 10.8.0.0/16 TO ALL VMS ALLOW ICMP TYPE 30", &subnet_to_all),
        ("FROM subnet 10.8.0.0/16 TO all vms ALLOW icmp type 30", &subnet_to_all),
        ("FROM (subnet 10.8.0.0/16 OR ip 10.9.0.1) TO all vms ALLOW icmp (TYPE 8 CODE 0 AND TYPE 9)", &ip_tag),
        ("FROM (subnet 10.8.0.0/16 OR ip 10.9.0.1) TO all vms ALLOW icmp (type 8 code 0 and type 9)", &ip_tag),
    ];
    for (text, want) in cases {
        assert_eq!(&ok(text), want, "{text}");
    }
}

// SmartOS's lexer knows each keyword only all upper or all lower case: a
// mixed-case keyword is a plain word, which the grammar refuses there.
#[test]
fn mixed_case_keywords_are_words() {
    for (text, token) in [
        ("From any TO all vms ALLOW tcp PORT 22", "From"),
        ("FROM any To all vms ALLOW tcp PORT 22", "To"),
        ("FROM any TO all vms Allow tcp PORT 22", "Allow"),
        ("FROM any TO all vms ALLOW Tcp PORT 22", "Tcp"),
        ("FROM any TO All vms ALLOW tcp PORT 22", "All"),
    ] {
        let e = fails(text);
        assert_eq!(e.token, token, "{text}");
        assert!(matches!(e.kind, ParseErrorKind::Unexpected { .. }), "{text}: {e}");
    }
    // Each keyword is read on its own: `all VMS` is fine.
    ok("FROM any TO all VMS ALLOW tcp PORT 22");
}

// fwrule test/parser.test.js: "parentheses around wildcards"
#[test]
fn parentheses_around_wildcards() {
    let want = build(Side::Any, Side::AllVms, Action::Allow, Protocol::Udp(ports(&[50])));
    for text in [
        "from (ANY) to ALL VMS allow UDP ports 50",
        "from (any) to all vms allow udp ports 50",
        "from ANY to (ALL VMS) allow UDP ports 50",
        "from any to (all vms) allow udp ports 50",
        "FROM ( ANY ) TO ALL VMS ALLOW UDP ports 50",
        "FROM ( ANY ) TO all vms ALLOW udp ports 50",
        "from ANY to ( ALL VMS ) allow UDP ports 50",
        "from any to ( all vms ) allow udp ports 50",
        "from ( any ) to ( all vms ) allow udp ports 50",
        "from (any) to (all vms) allow udp ports 50",
    ] {
        assert_eq!(ok(text), want, "{text}");
    }
}

// fwrule test/parser.test.js: "incomplete rule text": every prefix of
// every combination of targets, actions, port/type protocols and an
// incomplete ending fails.
#[test]
fn incomplete_rule_text() {
    let targets = [
        "any",
        "all vms",
        "ip 1.2.3.4",
        "ip fd00::1",
        "subnet 1.2.3.0/24",
        "subnet fd00::/64",
        "tag foo",
        "tag foo = bar",
        "vm ca3eb1d6-1555-44fb-ea1a-ab66f4685214",
    ];
    let levels: [&[&str]; 6] = [
        &targets,
        &["TO"],
        &targets,
        &["allow", "block"],
        &["tcp", "udp", "icmp", "icmp6"],
        &["port", "ports", "ports 1 -", "ports 1-", "type", "type 128 code"],
    ];
    fn walk(text: String, rest: &[&[&str]], count: &mut usize) {
        assert!(parse(&text).is_err(), "{text:?} should not parse");
        *count += 1;
        if let Some((level, rest)) = rest.split_first() {
            for word in *level {
                walk(format!("{text} {word}"), rest, count);
            }
        }
    }
    let mut count = 0;
    walk("FROM".to_string(), &levels, &mut count);
    assert_eq!(count, 1 + 9 + 9 + 81 + 162 + 648 + 3888);
}

// fwrule test/parser.test.js: "Invalid: Logical operations", "Invalid:
// Actions", "Invalid: Protocols", "Invalid: Parameters for TCP & UDP",
// "Invalid: Parameters for ICMP(6)", "Invalid: Priority Levels"
#[test]
fn invalid_rules_from_the_parser_tests() {
    let mut bad = vec![
        "FROM (tag a foo tag b) TO any ALLOW tcp PORT 80",
        "FROM (tag a xor tag b) TO any ALLOW tcp PORT 80",
        "FROM (tag a nand tag b) TO any ALLOW tcp PORT 80",
        "FROM (tag a not tag b) TO any ALLOW tcp PORT 80",
        "FROM (tag a nor tag b) TO any ALLOW tcp PORT 80",
        "FROM (tag a xnor tag b) TO any ALLOW tcp PORT 80",
    ];
    for action in ["DENY", "FORWARD", "OBSTRUCT", "PASS", "PASSTHROUGH", "PERMIT"] {
        bad.push(leak(format!("FROM any TO any {action} tcp PORT 80")));
    }
    for proto in ["foo", "bar", "ftp", "ssh", "http", "sctp", "dccp", "mtcp"] {
        bad.push(leak(format!("FROM any TO any ALLOW {proto} PORT 80")));
    }
    for proto in ["tcp", "udp"] {
        for rest in [
            "PORT hello",
            "PORT ssh",
            "PORT \"ssh\"",
            "PORT 50.123",
            "PORT \"50\"",
            "PORT \"50.123\"",
            "PORT 0x5",
            "PORT 9e1",
            "PORT 99e-1",
            "PORT _",
            "PORT *",
            "PORTS hello",
            "PORTS ssh",
            "PORTS ssh-http",
            "PORTS _",
            "PORTS *",
            "TYPE 128",
            "TYPE 128 CODE 0",
        ] {
            bad.push(leak(format!("FROM any TO any ALLOW {proto} {rest}")));
        }
    }
    for proto in ["icmp", "icmp6"] {
        for rest in [
            "PORT 80",
            "PORTS 80",
            "PORTS 80-85",
            "TYPE foo",
            "TYPE *",
            "TYPE 1:0",
            "1:0",
            "TYPE 0x80",
            "TYPE 9e1",
            "TYPE 99e-1",
            "TYPE 128 CODE foo",
            "TYPE 128 CODE 0x1",
            "TYPE 128 CODE 1e1",
            "TYPE 128 CODE 99e-1",
            "TYPE 128 CODE *",
            "TYPE 128 CODE _",
        ] {
            bad.push(leak(format!("FROM any TO any ALLOW {proto} {rest}")));
        }
    }
    for level in ["-1", "72.1", "0x0", "0x5", "1e1", "75d", "101", "0101", "hello", "\"world\""] {
        bad.push(leak(format!("FROM any TO any ALLOW TCP PORT 1 PRIORITY {level}")));
    }
    for text in bad {
        let e = fails(text);
        // None of them gets as far as the whole-rule checks: each fails on
        // its own bad token.
        assert_ne!(e.kind, ParseErrorKind::NoVms, "{text}: {e}");
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

// fwrule test/parser.test.js: "port ranges"
#[test]
fn port_ranges_with_and_without_spaces() {
    let want = build(
        side(vec![ip("1.2.3.4")]),
        side(vec![tag("some-tag")]),
        Action::Allow,
        Protocol::Tcp(Ports::List(vec![Port::Range(20, 40)])),
    );
    assert_eq!(ok("FROM IP 1.2.3.4 TO TAG some-tag ALLOW TCP PORTS 20-40"), want);
    assert_eq!(ok("FROM IP 1.2.3.4 TO TAG some-tag ALLOW TCP PORTS 20 - 40"), want);
}

// fwrule test/parser.test.js: "priority levels"
#[test]
fn priority_levels() {
    for (level, want) in [("0", 0), ("02", 2), ("010", 10), ("1", 1), ("5", 5), ("10", 10), ("100", 100)] {
        let rule = ok(&format!("FROM tag a TO tag b ALLOW TCP PORT 1 PRIORITY {level}"));
        assert_eq!(rule.priority(), want, "PRIORITY {level}");
        assert_eq!(rule.from(), &side(vec![tag("a")]));
        assert_eq!(rule.to(), &side(vec![tag("b")]));
        assert_eq!(rule.protocol(), &Protocol::Tcp(ports(&[1])));
    }
}

// fwrule test/parser.test.js: "Parser option: enforceSubnetMask". fwadm
// parses without that option, so host bits after the mask are kept as
// written (the compiler masks them off).
#[test]
fn subnet_bits_past_the_mask_are_kept() {
    for cidr in ["1.2.3.4/24", "fd00::1/8"] {
        let rule = ok(&format!("FROM subnet {cidr} TO TAG foo ALLOW TCP PORTS 80"));
        assert_eq!(rule.from(), &side(vec![subnet(cidr)]));
        assert_eq!(rule.to_string(), format!("FROM subnet {cidr} TO tag \"foo\" ALLOW tcp PORT 80"));
    }
}

// fwrule test/parser.test.js: "icmp type all", "icmp6 type all"
#[test]
fn icmp_type_all() {
    for proto in ["icmp", "icmp6"] {
        let src = if proto == "icmp" { "10.0.0.2" } else { "fd00::2" };
        for rest in ["type all", "( TYPE ALL )"] {
            let rule = ok(&format!("FROM ip {src} TO vm {VM} ALLOW {proto} {rest}"));
            let want = if proto == "icmp" { Protocol::Icmp(IcmpTypes::All) } else { Protocol::Icmp6(IcmpTypes::All) };
            assert_eq!(rule.protocol(), &want, "{proto} {rest}");
            assert_eq!(rule.to_string(), format!("FROM ip {src} TO vm {VM} ALLOW {proto} TYPE all"));
        }
    }
}

// fwrule test/parser.test.js: "Tags: With value", "Tags: Multiple values",
// "Tags: Quoted value", "Tags: Quoted name and value"
#[test]
fn tags_with_values() {
    let udp53 = |from| build(from, side(vec![ip("8.8.8.8")]), Action::Block, Protocol::Udp(ports(&[53])));
    assert_eq!(ok("FROM tag foo = bar TO ip 8.8.8.8 BLOCK udp PORT 53"), udp53(side(vec![tagv("foo", "bar")])));
    assert_eq!(
        ok("FROM (tag foo = bar OR tag some = value) TO ip 8.8.8.8 BLOCK udp PORT 53"),
        udp53(side(vec![tagv("foo", "bar"), tagv("some", "value")]))
    );
    assert_eq!(
        ok("FROM tag foo = \"some value\" TO ip 8.8.8.8 BLOCK udp PORT 53"),
        udp53(side(vec![tagv("foo", "some value")]))
    );
    // No space is needed between a closing parenthesis and TO.
    assert_eq!(
        ok("FROM (tag \"tag one\" = \"some value\" OR tag \"tag two\" = \"another value\")TO ip 8.8.8.8 BLOCK udp PORT 53"),
        udp53(side(vec![
            tagv("tag one", "some value"),
            tagv("tag two", "another value")
        ]))
    );
}

// fwrule test/parser.test.js: "Tags: Escaped characters", "Tags: Parens
// shouldn't have to be escaped"
#[test]
fn tags_with_escapes() {
    let rule = ok(r#"FROM (tag "\"" = "\)" OR tag "\n" = "\b") TO tag "\(" BLOCK udp PORT 53"#);
    // Sorted by name: "\n" (U+000A) before "\"" (U+0022).
    assert_eq!(rule.from(), &side(vec![tagv("\n", "\u{8}"), tagv("\"", ")")]));
    assert_eq!(rule.to(), &side(vec![tag("(")]));

    let rule = ok(r#"FROM tag "(" = "(" TO tag ")" = ")" BLOCK udp PORT 53"#);
    assert_eq!(rule.from(), &side(vec![tagv("(", "(")]));
    assert_eq!(rule.to(), &side(vec![tagv(")", ")")]));
    assert_eq!(rule.to_string(), r#"FROM tag "\(" = "\(" TO tag "\)" = "\)" BLOCK udp PORT 53"#);
}

// fwrule test/parser.test.js: "Tags: UTF-8 characters can be written using
// \u", "Tags: Unicode characters"
#[test]
fn tags_in_unicode() {
    let escaped =
        r#"FROM tag "\u2603" = "\u0631\u062c\u0644 \u0627\u0644\u062b\u0644\u062c" TO tag "\u26C4" BLOCK udp PORT 53"#;
    let plain = "FROM tag \"☃\" = \"رجل الثلج\" TO tag \"⛄\" BLOCK udp PORT 53";
    assert_eq!(ok(escaped), ok(plain));

    let rule = ok("FROM (tag \"☂\" = \"ທ\" OR tag \"삼겹살\" = \"불고기\")TO ip 8.8.8.8 BLOCK udp PORT 53");
    assert_eq!(rule.from(), &side(vec![tagv("☂", "ທ"), tagv("삼겹살", "불고기")]));
    // A character outside the BMP, written as a surrogate pair.
    assert_eq!(ok(r#"FROM tag "\ud83d\ude00" TO all vms ALLOW tcp PORT 1"#).from(), &side(vec![tag("😀")]));
}

// SmartOS's lexer skips JavaScript's `\s` between tokens: Unicode spaces
// and line breaks, and the byte order mark, but not U+0085.
#[test]
fn white_space_between_tokens() {
    let want = ok("FROM any TO all vms ALLOW tcp PORT 22");
    assert_eq!(ok("\u{feff}FROM\u{a0}any\tTO\nall\r\nvms\u{3000}ALLOW\u{2028}tcp PORT\u{b}22 "), want);
    let e = fails("FROM any\u{85}TO all vms ALLOW tcp PORT 22");
    assert_eq!(e.kind, ParseErrorKind::UnrecognizedText);
    assert_eq!((e.offset, e.token.as_str()), (8, "\u{85}TO"));
}
