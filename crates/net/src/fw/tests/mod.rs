//! Tests of the rule language: conformance cases translated from SmartOS's
//! own tests (each group names the file it comes from), round trips,
//! errors, resolution, compilation, and a root-only check of the compiled
//! statements against nft.
//!
//! "fwrule" below is TritonDataCenter/sdc-fwrule, the parser package SmartOS
//! vendors as `src/fw/node_modules/fwrule`; "fw" is smartos-live `src/fw`.

mod compile;
mod errors;
mod nft;
mod parser;
mod resolve;
mod rule_text;
mod stored;

use super::*;

/// Parses `text`, failing the test with the error if it does not parse,
/// and checks that the printed rule parses back to the same rule.
pub(super) fn ok(text: &str) -> Rule {
    let rule = parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
    let printed = rule.to_string();
    assert_eq!(parse(&printed).as_ref(), Ok(&rule), "{printed:?} (from {text:?}) should parse back to the same rule");
    rule
}

/// The canonical text of `text`.
pub(super) fn canon(text: &str) -> String {
    ok(text).to_string()
}

/// The error `text` fails with, failing the test if it parses.
pub(super) fn fails(text: &str) -> ParseError {
    match parse(text) {
        Ok(rule) => panic!("{text:?} should not parse, but gave {rule}"),
        Err(e) => e,
    }
}

pub(super) fn ip(s: &str) -> Target {
    Target::Ip(s.parse().expect("test address"))
}

pub(super) fn subnet(s: &str) -> Target {
    Target::Subnet(s.parse().expect("test subnet"))
}

pub(super) fn tag(name: &str) -> Target {
    Target::Tag { name: name.to_string(), value: None }
}

pub(super) fn tagv(name: &str, value: &str) -> Target {
    Target::Tag { name: name.to_string(), value: Some(value.to_string()) }
}

pub(super) fn vm(s: &str) -> Target {
    Target::Vm(s.parse().expect("test uuid"))
}

pub(super) fn side(targets: Vec<Target>) -> Side {
    Side::Targets(targets)
}

pub(super) fn ports(list: &[u16]) -> Ports {
    Ports::List(list.iter().map(|p| Port::One(*p)).collect())
}

pub(super) fn types(list: &[(u8, Option<u8>)]) -> IcmpTypes {
    IcmpTypes::List(list.iter().map(|(t, c)| IcmpType { icmp_type: *t, code: *c }).collect())
}

pub(super) fn build(from: Side, to: Side, action: Action, protocol: Protocol) -> Rule {
    Rule { from, to, action, protocol, priority: 0 }
}
