//! SmartOS's firewall rule language (`fwrule(7)`): parse, print and resolve.
//!
//! # The language
//!
//! ```text
//! FROM <targets> TO <targets> ALLOW|BLOCK <protocol> [PRIORITY n]
//! ```
//!
//! - targets: `any`, `all vms`, `vm <uuid>`, `ip <IPv4 or IPv6>`,
//!   `subnet <cidr>`, `tag <name>`, `tag <name> = <value>`, or a list
//!   `( t OR t ... )` of up to 24 of the last five. Tag names and values are
//!   words (`role`, `db-2`, `80`) or quoted strings (`"VM type"`, with
//!   `\"`-style and `\uXXXX` escapes).
//! - protocol: `tcp` or `udp` with `PORT n`, `PORT all`, `PORTS 80, 443,
//!   8000-8100` (spaces around `-` allowed) or `(PORT a AND PORT b)`;
//!   `icmp` or `icmp6` with `TYPE t`, `TYPE t CODE c`, `TYPE all` or
//!   `(TYPE a AND TYPE b CODE c)`; `ah` and `esp` with nothing after them.
//!   At most 24 ports or types; ports 1-65535, types and codes 0-255.
//! - `PRIORITY` 0 (the default) to 100: higher applies first.
//! - Keywords are written all upper or all lower case (`FROM`, `from`; not
//!   `From`), as SmartOS's lexer reads them.
//!
//! [`parse`] checks a rule as SmartOS does when `fwadm add` receives it,
//! including the whole-rule checks: an `icmp` rule takes only IPv4
//! addresses and subnets (`icmp6` only IPv6 ones), and one side must name
//! instances (`vm`, `tag` or `all vms`). A [`ParseError`] names the
//! offending token and its byte offset and, for syntax errors, what was
//! expected there: `rule: unexpected "FOO" at 17; expected ALLOW or BLOCK`.
//!
//! A parsed [`Rule`] is normalized as SmartOS normalizes it, and its
//! `Display` is the text SmartOS prints (`fwadm get`): keywords `FROM`,
//! `TO`, `ALLOW`/`BLOCK`, `PORT(S)`, `TYPE`, `CODE`, `PRIORITY` in upper
//! case, protocols in lower case, tags always quoted, targets ordered ips,
//! subnets, tags, vms, priority shown only when above 0:
//!
//! ```text
//! from (tag www or ip 10.0.0.1) to all vms allow tcp ports 443, 80
//! FROM (ip 10.0.0.1 OR tag "www") TO all vms ALLOW tcp (PORT 80 AND PORT 443)
//! ```
//!
//! `parse(&rule.to_string()) == Ok(rule)` for every rule. IPv6 addresses
//! print in their canonical form, which may differ from how they were
//! written (SmartOS prints them as written).
//!
//! # Rules and instances
//!
//! A [`StoredRule`] carries `fwadm`'s properties (uuid, enabled, owner or
//! global, description) and serializes as `fwadm get` shows a rule. A rule
//! with an `owner_uuid` applies only to that owner's instances; a global
//! one to all. [`vms`] and [`rules_for`] answer `fwadm vms` and
//! `fwadm rules` over a list of [`Instance`]s. A `tag name = value` target
//! compares values as text, as SmartOS does, so `= 5` matches the tag
//! values `5` and `"5"`, and `= true` matches `true` and `"true"`.

mod lex;
mod parse;
mod resolve;
mod rule;
mod stored;

pub use parse::{parse, ParseError, ParseErrorKind};
pub use resolve::{rules_for, vms, Instance};
pub use rule::{Action, IcmpType, IcmpTypes, Port, Ports, Protocol, Rule, Side, Target};
pub use stored::StoredRule;

#[cfg(test)]
mod tests;
