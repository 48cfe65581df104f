//! Errors: each kind, pointing at the offending token. The rule-level
//! cases come from fwrule `test/invalid.test.js`.

use super::*;
use ParseErrorKind as K;

/// `text` fails with `kind` at the last occurrence of `token`.
fn check(text: &str, token: &str, kind: ParseErrorKind) -> ParseError {
    let e = fails(text);
    assert_eq!(e.kind, kind, "{text}: {e}");
    assert_eq!(e.token, token, "{text}: {e}");
    let at = text.rfind(token).expect("token in text");
    assert_eq!(e.offset, at, "{text}: {e}");
    e
}

fn unexpected(expected: &[&'static str]) -> ParseErrorKind {
    K::Unexpected { expected: expected.to_vec() }
}

const SIDE_START: [&str; 7] = ["any", "all vms", "(", "ip", "subnet", "tag", "vm"];

#[test]
fn message_names_token_offset_and_what_was_expected() {
    let e = check("FROM any TO all vms FOO tcp PORT 22", "FOO", unexpected(&["ALLOW", "BLOCK"]));
    assert_eq!(e.to_string(), "rule: unexpected \"FOO\" at 20; expected ALLOW or BLOCK");
}

#[test]
fn unexpected_tokens_at_each_point_of_the_grammar() {
    let vm = "ca3eb1d6-1555-44fb-ba1a-ab66f4685214";
    check("TO any", "TO", unexpected(&["FROM"]));
    // fwrule test/invalid.test.js: "non-target type in FROM"
    check("FROM foo TO ip 8.8.8.8 ALLOW udp port 53", "foo", unexpected(&SIDE_START));
    check("FROM any any", "any", unexpected(&["TO"]));
    check("FROM all tag", "tag", unexpected(&["vms"]));
    check("FROM ( all vms OR tag x ) TO any ALLOW ah", "OR", unexpected(&[")"]));
    check("FROM ( any tag x ) TO any ALLOW ah", "tag", unexpected(&[")"]));
    check("FROM (tag a foo tag b) TO any ALLOW tcp PORT 80", "foo", unexpected(&["=", "OR", ")"]));
    check("FROM (tag a OR any) TO all vms ALLOW ah", "any", unexpected(&["ip", "subnet", "tag", "vm"]));
    check("FROM tag a TO tag b = ALLOW ah", "ALLOW", unexpected(&["a tag value"]));
    check("FROM tag a BLOCK ah", "BLOCK", unexpected(&["=", "TO"]));
    check("FROM ip foo TO all vms ALLOW ah", "foo", unexpected(&["an IPv4 address", "an IPv6 address"]));
    check("FROM subnet 10.0.0.0 TO all vms ALLOW ah", "TO", unexpected(&["a prefix length (/n)"]));
    check(&format!("FROM vm \"{vm}\" TO any ALLOW ah"), &format!("\"{vm}\""), unexpected(&["a VM UUID"]));
    check("FROM any TO all vms ALLOW sctp PORT 80", "sctp", unexpected(&["tcp", "udp", "icmp", "icmp6", "ah", "esp"]));
    check("FROM any TO all vms ALLOW tcp TYPE 8", "TYPE", unexpected(&["PORT", "PORTS", "("]));
    check("FROM any TO all vms ALLOW icmp PORT 8", "PORT", unexpected(&["TYPE", "("]));
    check("FROM any TO all vms ALLOW tcp PORT \"22\"", "\"22\"", unexpected(&["all", "a port number"]));
    check("FROM any TO all vms ALLOW tcp PORTS 1 - ", "", unexpected(&["a port number"]));
    check("FROM any TO all vms ALLOW tcp PORT 1 PORT 2", "PORT", unexpected(&["PRIORITY", "the end of the rule"]));
    check("FROM any TO all vms ALLOW tcp PORTS 1 2", "2", unexpected(&["-", ",", "PRIORITY", "the end of the rule"]));
    check("FROM any TO all vms ALLOW icmp TYPE 8 9", "9", unexpected(&["CODE", "PRIORITY", "the end of the rule"]));
    check("FROM any TO all vms ALLOW icmp (TYPE 8 OR TYPE 9)", "OR", unexpected(&["CODE", "AND", ")"]));
    check("FROM any TO all vms ALLOW ah PORT 1", "PORT", unexpected(&["PRIORITY", "the end of the rule"]));
    check("FROM any TO all vms ALLOW ah PRIORITY -1", "-", unexpected(&["a priority level (0-100)"]));
    check("FROM any TO all vms ALLOW ah PRIORITY 1 2", "2", unexpected(&["the end of the rule"]));
    // fwrule test/invalid.test.js: "all vms with other targets on FROM
    // side" (and TO), "any with other targets" (FROM and TO)
    check("FROM (all vms OR tag one) TO ip 10.0.0.1 ALLOW udp port 53", "OR", unexpected(&[")"]));
    check("FROM tag one TO (all vms OR tag two) ALLOW udp port 53", "OR", unexpected(&[")"]));
    check("FROM (any OR tag one) TO ip 10.0.0.1 ALLOW udp port 53", "OR", unexpected(&[")"]));
    check("FROM ip 10.0.0.1 TO (any OR tag one) ALLOW udp port 53", "OR", unexpected(&[")"]));
    // fwrule test/invalid.test.js: "other ports listed with ALL first",
    // "... second"
    check("FROM ip 10.0.0.1 TO all vms ALLOW TCP (port ALL AND port 53)", "AND", unexpected(&[")"]));
    check("FROM ip 10.0.0.1 TO all vms ALLOW TCP (port 53 AND port ALL)", "ALL", unexpected(&["a port number"]));
    check("FROM ip 10.0.0.1 TO all vms ALLOW icmp (TYPE 0 AND TYPE all)", "all", unexpected(&["an ICMP type (0-255)"]));
    // fwrule test/invalid.test.js: "Invalid parameters" (rule: 'invalid')
    check("invalid", "invalid", unexpected(&["FROM"]));
}

#[test]
fn unexpected_end_of_rule() {
    for (text, expected) in [
        ("FROM", &SIDE_START[..]),
        ("FROM any TO", &SIDE_START[..]),
        ("FROM any TO all", &["vms"][..]),
        ("FROM any TO all vms", &["ALLOW", "BLOCK"][..]),
        ("FROM any TO tag a", &["=", "ALLOW", "BLOCK"][..]),
        ("FROM any TO all vms ALLOW", &["tcp", "udp", "icmp", "icmp6", "ah", "esp"][..]),
        ("FROM any TO all vms ALLOW udp", &["PORT", "PORTS", "("][..]),
        ("FROM any TO all vms ALLOW udp (PORT 1", &["AND", ")"][..]),
        ("FROM any TO all vms ALLOW icmp TYPE 1 CODE", &["an ICMP code (0-255)"][..]),
        ("FROM any TO all vms ALLOW esp PRIORITY", &["a priority level (0-100)"][..]),
    ] {
        let e = fails(text);
        assert_eq!(e.offset, text.len(), "{text}");
        assert_eq!(e.token, "", "{text}");
        assert_eq!(e.kind, unexpected(expected), "{text}");
        assert!(
            e.to_string().starts_with(&format!("rule: unexpected end of rule at {}; expected ", text.len())),
            "{e}"
        );
    }
}

#[test]
fn lexical_errors() {
    // fwrule test/invalid.test.js: "invalid IP: too many numbers"
    let e = check("FROM ip 10.99.99.99.254 TO tag smartdc_role ALLOW tcp port 22", ".254", K::UnrecognizedText);
    assert_eq!(e.offset, 19);
    assert_eq!(e.to_string(), "rule: unrecognized text \".254\" at 19");
    check("FROM any TO all vms ALLOW tcp PORT *", "*", K::UnrecognizedText);
    check("FROM tag x:y TO all vms ALLOW ah", ":y", K::UnrecognizedText);
    // Uppercase hexadecimal is no IPv6 address to SmartOS's lexer: `FD00`
    // is a word.
    check("FROM ip FD00::1 TO all vms ALLOW ah", "FD00", unexpected(&["an IPv4 address", "an IPv6 address"]));
    let e = fails("FROM tag \"abc TO all vms ALLOW ah");
    assert_eq!(e.kind, K::UnterminatedString);
    assert_eq!((e.offset, e.token.as_str()), (9, "\"abc TO all vms ALLOW ah"));
    assert_eq!(e.to_string(), "rule: quoted string at 9 has no closing quote");
    check(r#"FROM tag "a\xb" TO all vms ALLOW ah"#, r"\x", K::InvalidEscape);
    check(r#"FROM tag "a\u12g4" TO all vms ALLOW ah"#, r"\u", K::InvalidEscape);
    // A lone surrogate names no character.
    check(r#"FROM tag "\ud800" TO all vms ALLOW ah"#, r"\ud800", K::InvalidEscape);
    // The lexer's error shows only once the parser gets there: an earlier
    // syntax error wins, as in SmartOS.
    check("FROM foo TO * all vms", "foo", unexpected(&SIDE_START));
}

#[test]
fn addresses_subnets_and_uuids() {
    // fwrule test/invalid.test.js: "invalid IPv4", "invalid IPv6", "invalid
    // IPv4 subnet: bad address component", "... bad prefix length", "invalid
    // IPv6 subnet: ...", "invalid VM UUID"
    check("FROM tag foo TO ip 10.288.0.0 ALLOW udp port 53", "10.288.0.0", K::InvalidIpv4);
    check("FROM tag foo TO ip 0.0.0.0 ALLOW udp port 53", "0.0.0.0", K::InvalidIpv4);
    check("FROM tag foo TO ip 255.255.255.255 ALLOW udp port 53", "255.255.255.255", K::InvalidIpv4);
    check("FROM tag foo TO ip 10.0.0.01 ALLOW udp port 53", "10.0.0.01", K::InvalidIpv4);
    check("FROM tag foo TO ip fd00::12345 ALLOW udp port 53", "fd00::12345", K::InvalidIpv6);
    check("FROM tag foo TO ip 1::2::3 ALLOW udp port 53", "1::2::3", K::InvalidIpv6);
    check("FROM tag foo TO subnet 10.350.0.0/24 ALLOW udp port 53", "10.350.0.0/24", K::InvalidSubnetAddress);
    check("FROM tag foo TO subnet 10.8.0.0/33 ALLOW udp port 53", "10.8.0.0/33", K::InvalidPrefixLength);
    check("FROM tag foo TO subnet fd005::/64 ALLOW udp port 53", "fd005::/64", K::InvalidSubnetAddress);
    check("FROM tag foo TO subnet fd00::/130 ALLOW udp port 53", "fd00::/130", K::InvalidPrefixLength);
    let e = check("FROM vm asdf TO subnet 10.8.0.0/24 ALLOW udp port 50", "asdf", K::InvalidUuid);
    assert!(e.to_string().contains("\"asdf\" at 8"), "{e}");
    // SmartOS wants lowercase.
    check(
        "FROM vm CA3EB1D6-1555-44FB-BA1A-AB66F4685214 TO any ALLOW ah",
        "CA3EB1D6-1555-44FB-BA1A-AB66F4685214",
        K::InvalidUuid,
    );
    check(
        "FROM vm ca3eb1d61555-44fb-ba1a-ab66-f4685214 TO any ALLOW ah",
        "ca3eb1d61555-44fb-ba1a-ab66-f4685214",
        K::InvalidUuid,
    );
}

#[test]
fn ports_types_codes_and_priorities() {
    let head = "FROM tag foo TO subnet 10.8.0.0/24 ALLOW";
    // fwrule test/invalid.test.js: "invalid port: too small", "too big",
    // "invalid port range: too many numbers", "too small", "too big", "not a
    // port (at end)", "not a port (at beginning)", "incorrect range ordering"
    check(&format!("{head} udp port 0"), "0", K::InvalidPort);
    check(&format!("{head} udp port 65537"), "65537", K::InvalidPort);
    check(&format!("{head} tcp ports 1-20-30"), "1-20-30", K::InvalidPortRange);
    let text = format!("{head} tcp ports 0-20");
    let e = fails(&text);
    assert_eq!((e.kind, e.token.as_str()), (K::InvalidPort, "0"));
    assert_eq!(e.offset, text.len() - 4);
    check(&format!("{head} tcp ports 20-65537"), "65537", K::InvalidPort);
    check(&format!("{head} tcp ports 20-bar"), "bar", K::InvalidPort);
    check(&format!("{head} tcp ports bar-20"), "bar", K::InvalidPort);
    check(&format!("{head} tcp ports 1-"), "", K::InvalidPort);
    check(&format!("{head} tcp ports 30-20"), "30-20", K::PortRangeOrder);
    let e = check(&format!("{head} tcp ports 20 - 10"), "20 - 10", K::PortRangeOrder);
    assert!(e.to_string().contains("end cannot be less than the start"));
    check(&format!("{head} tcp (PORT 1 AND PORT 99999999999999999999999)"), "99999999999999999999999", K::InvalidPort);
    // fwrule test/invalid.test.js: "rule: bad ICMP type", "bad ICMP code",
    // "bad ICMPv6 type", "bad ICMPv6 code"
    check("FROM all vms TO ip 192.168.5.4 BLOCK ICMP TYPE 260", "260", K::InvalidIcmpType);
    check("FROM all vms TO ip 192.168.5.4 BLOCK ICMP TYPE 8 CODE 270", "270", K::InvalidIcmpCode);
    check("FROM all vms TO ip fd00::45 BLOCK ICMP6 TYPE 260", "260", K::InvalidIcmpType);
    check("FROM all vms TO ip fd00::45 BLOCK ICMP6 TYPE 128 CODE 270", "270", K::InvalidIcmpCode);
    check("FROM all vms TO any BLOCK icmp TYPE 0x80", "0x80", K::InvalidIcmpType);
    // fwrule test/invalid.test.js: "invalid priority level: too high", "not
    // a number"
    check("FROM tag a TO tag b ALLOW TCP PORT all PRIORITY 101", "101", K::InvalidPriority);
    check("FROM tag a TO tag b ALLOW TCP PORT all PRIORITY immediate", "immediate", K::InvalidPriority);
    check("FROM tag a TO tag b ALLOW TCP PORT all PRIORITY 0101", "0101", K::InvalidPriority);
}

fn n_ips(n: usize) -> String {
    let ips: Vec<String> = (0..n).map(|i| format!("10.0.0.{i}")).collect();
    format!("( ip {} )", ips.join(" OR ip "))
}

#[test]
fn limits() {
    // fwrule test/invalid.test.js: "rule: max number per side" (both sides),
    // "rule: max number of ports (large)", "max number of ICMP(v6) types
    // (large)"
    let e = check(&format!("FROM {} TO all vms ALLOW TCP port 53", n_ips(25)), "10.0.0.24", K::TooManyTargets);
    assert!(e.to_string().contains("maximum of 24 per side"), "{e}");
    check(&format!("FROM all vms TO {} BLOCK TCP port 53", n_ips(25)), "10.0.0.24", K::TooManyTargets);
    ok(&format!("FROM {} TO all vms ALLOW TCP port 53", n_ips(24)));
    // A tag target is pointed at by its keyword.
    let tags: Vec<String> = (0..25).map(|i| format!("tag t{i}")).collect();
    let text = format!("FROM ({}) TO any BLOCK ah", tags.join(" OR "));
    let e = fails(&text);
    assert_eq!(e.kind, K::TooManyTargets);
    assert_eq!(e.offset, text.find("tag t24").unwrap());

    let ports: Vec<String> = (0..25).map(|i| format!("1{i}")).collect();
    check(
        &format!("FROM all vms TO ip 192.168.5.4 BLOCK TCP ( port {} )", ports.join(" AND port ")),
        "124",
        K::TooManyPorts,
    );
    check(&format!("FROM all vms TO ip 192.168.5.4 BLOCK TCP PORTS {}", ports.join(", ")), "124", K::TooManyPorts);
    ok(&format!("FROM all vms TO ip 192.168.5.4 BLOCK TCP PORTS {}", ports[..24].join(", ")));
    for (dst, proto) in [("fd00::45", "ICMP6"), ("192.168.5.4", "ICMP")] {
        let types: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        check(
            &format!("FROM all vms TO ip {dst} BLOCK {proto} ( type {} )", types.join(" AND type ")),
            "24",
            K::TooManyTypes,
        );
    }
}

#[test]
fn whole_rule_checks() {
    // fwrule test/invalid.test.js: "rule: bad ip target for ICMPv4", "bad
    // subnet target for ICMPv4", "bad ip target for ICMPv6", "bad subnet
    // target for ICMPv6"
    check("FROM all vms TO ip fd00::45 BLOCK ICMP TYPE 8", "fd00::45", K::IcmpAddressFamily);
    check("FROM all vms TO subnet fe80::/64 BLOCK ICMP TYPE 8", "fe80::/64", K::IcmpAddressFamily);
    check("FROM all vms TO ip 1.2.3.4 BLOCK ICMP6 TYPE 128", "1.2.3.4", K::IcmpAddressFamily);
    check("FROM all vms TO subnet 10.0.0.0/8 BLOCK ICMP6 TYPE 128", "10.0.0.0/8", K::IcmpAddressFamily);
    check("FROM (ip 10.0.0.1 OR ip fd00::1) TO all vms ALLOW icmp6 TYPE all", "10.0.0.1", K::IcmpAddressFamily);
    // Other protocols take both families.
    ok("FROM (ip 10.0.0.1 OR ip fd00::1) TO all vms ALLOW tcp PORT all");
    // fwrule test/invalid.test.js: "rule: from any to any", "from ip to
    // subnet", "from ip to any"
    for text in [
        "FROM any TO any ALLOW TCP port 53",
        "FROM ip 10.8.0.1 TO subnet 10.9.0.0/16 ALLOW TCP port 53",
        "FROM ip 10.9.0.1 TO any ALLOW TCP port 53",
    ] {
        let e = check(text, "FROM", K::NoVms);
        assert_eq!(e.offset, 0);
        assert_eq!(
            e.to_string(),
            "rule: the rule at 0 does not affect VMs: one side needs a vm, tag or all vms target"
        );
    }
    let e = fails("  FROM any TO any ALLOW ah");
    assert_eq!((e.kind, e.offset), (K::NoVms, 2));
}

#[test]
fn every_kind_has_a_message_with_its_position() {
    for text in [
        "FROM ip 10.288.0.0 TO all vms ALLOW ah",
        "FROM ip fd00::12345 TO all vms ALLOW ah",
        "FROM subnet 10.350.0.0/24 TO all vms ALLOW ah",
        "FROM subnet 10.0.0.0/40 TO all vms ALLOW ah",
        "FROM vm x TO all vms ALLOW ah",
        "FROM any TO all vms ALLOW tcp PORT 0",
        "FROM any TO all vms ALLOW tcp PORTS 1-2-3",
        "FROM any TO all vms ALLOW tcp PORTS 3-2",
        "FROM any TO all vms ALLOW icmp TYPE 256",
        "FROM any TO all vms ALLOW icmp TYPE 0 CODE 256",
        "FROM any TO all vms ALLOW ah PRIORITY 101",
        "FROM ip fd00::1 TO all vms ALLOW icmp TYPE 0",
        r#"FROM tag "\q" TO all vms ALLOW ah"#,
        "FROM tag \"q TO all vms ALLOW ah",
        "FROM any TO all vms ALLOW ah ;",
    ] {
        let e = fails(text);
        let msg = e.to_string();
        assert!(msg.starts_with("rule: "), "{msg}");
        assert!(msg.contains(&format!(" at {}", e.offset)), "{msg}");
        assert!(e.offset < text.len(), "{text}: {msg}");
        assert!(text[e.offset..].starts_with(&e.token), "{text}: {msg}");
    }
}
