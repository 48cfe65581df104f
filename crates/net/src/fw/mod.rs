//! SmartOS's firewall rule language (`fwrule(7)`): parse, print, resolve and
//! compile to nftables.
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
//!
//! # Compiling
//!
//! [`compile`] turns the enabled rules into nftables statements for each
//! instance with `firewall_enabled`. The daemon puts them, in order, into
//! the instance's chains of table `inet zonevisor`:
//!
//! ```text
//! traffic to the instance:   ct state established,related accept
//!                            jump fw_in_<uuid>     <- Chains::inbound
//!                            drop                  (default: block in)
//! traffic from the instance: jump fw_out_<uuid>    <- Chains::outbound
//!                            accept                (default: allow out)
//! ```
//!
//! A rule `FROM A TO B` gives each firewalled instance named in B an
//! inbound statement matching the sources A, and each firewalled instance
//! named in A an outbound statement matching the destinations B:
//!
//! - `any` matches no address; `ip` and `subnet` are used as written (host
//!   bits masked off); `vm`, `tag` and `all vms` become the addresses of the
//!   instances they name (all instances, firewalled or not; with an owned
//!   rule, not those of another owner). IPv4 and IPv6 addresses go into
//!   separate `ip`/`ip6` statements; a side naming no address emits nothing,
//!   rather than matching everything.
//! - Ports are destination ports: `tcp dport { 22, 8000-8100 }`;
//!   `PORT all` matches the protocol (`meta l4proto tcp`); ICMP types become
//!   `icmp type { 0, 8 }` and `icmp type 8 icmp code 0` (`icmpv6` for
//!   `icmp6`, restricted to its family when no address does it); `ah` and
//!   `esp` are `meta l4proto ah|esp`.
//! - `ALLOW` is `accept`, `BLOCK` is `drop`.
//!
//! ```text
//! ip saddr { 10.0.0.5, 10.0.0.6 } tcp dport { 22, 8000-8100 } accept
//! meta nfproto ipv6 icmpv6 type 128 accept
//! meta l4proto esp accept
//! ```
//!
//! Statements are ordered by priority (higher first), then, at equal
//! priority, the action against the chain's default first (inbound ALLOW
//! before BLOCK, outbound BLOCK before ALLOW), then by rule UUID. As in
//! SmartOS, a priority 0 inbound BLOCK or outbound ALLOW emits nothing: it
//! would sort after every rule that could override it, just before a
//! default that does the same.

mod compile;
mod lex;
mod parse;
mod resolve;
mod rule;
mod stored;

pub use compile::{compile, Chains};
pub use parse::{parse, ParseError, ParseErrorKind};
pub use resolve::{rules_for, vms, Instance};
pub use rule::{Action, IcmpType, IcmpTypes, Port, Ports, Protocol, Rule, Side, Target};
pub use stored::StoredRule;

#[cfg(test)]
mod tests;
