//! The rule parser: SmartOS's grammar (`fwrule.jison`) by recursive
//! descent, with the checks SmartOS makes while parsing (`fwrule`'s
//! validators) and when it builds the rule object (`FwRule`: limits, ICMP
//! address families, "rule does not affect VMs").
//!
//! ```text
//! rule      := FROM side TO side (ALLOW | BLOCK) protocol [PRIORITY n] end
//! side      := any | all vms | target | "(" (any | all vms | target {OR target}) ")"
//! target    := ip ADDR | subnet ADDR/n | tag NAME [= VALUE] | vm UUID
//! protocol  := (tcp | udp) ports | (icmp | icmp6) types | ah | esp
//! ports     := PORT n | PORT all | PORTS range {, range} | PORTS all
//!            | "(" PORT all ")" | "(" PORT n {AND PORT n} ")"
//! range     := n | n-n | n - n
//! types     := TYPE all | TYPE t [CODE c] | "(" TYPE all ")"
//!            | "(" TYPE t [CODE c] {AND TYPE t [CODE c]} ")"
//! ```
//!
//! `PORTS all` is the one addition to SmartOS's grammar (which only has
//! `PORT all`); it means the same and prints as `PORT all`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use uuid::Uuid;

use super::lex::{lex, Kw, LexFault, Tok, TokKind};
use super::rule::{js_cmp, Action, IcmpType, IcmpTypes, Port, Ports, Protocol, Rule, Side, Target};

/// At most this many targets on each side of a rule (SmartOS's limit).
const MAX_TARGETS_PER_SIDE: usize = 24;
/// At most this many ports or ICMP types in a rule (SmartOS's limit).
const MAX_PROTOCOL_TARGETS: usize = 24;

/// A rule that could not be parsed: what is wrong, with the offending token
/// and the byte offset where it starts in the rule text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of `token` in the rule text (its length at the end).
    pub offset: usize,
    /// The offending text (empty at the end of the rule).
    pub token: String,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// What is wrong with a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A token the grammar does not allow here; `expected` names what it
    /// allows.
    Unexpected {
        /// What would have been accepted at this point.
        expected: Vec<&'static str>,
    },
    /// Text that is no token of the language.
    UnrecognizedText,
    /// A quoted string with no closing quote.
    UnterminatedString,
    /// An unknown `\` escape in a quoted string.
    InvalidEscape,
    /// Not a valid IPv4 host address (0.0.0.0 and 255.255.255.255 are not).
    InvalidIpv4,
    /// Not a valid IPv6 address.
    InvalidIpv6,
    /// A subnet whose address part is not an address.
    InvalidSubnetAddress,
    /// A subnet prefix longer than its address (32 or 128 bits).
    InvalidPrefixLength,
    /// Not a UUID in lowercase 8-4-4-4-12 hexadecimal.
    InvalidUuid,
    /// A port number outside 1-65535, or not a number.
    InvalidPort,
    /// A word with more than one `-`, where a port or range was expected.
    InvalidPortRange,
    /// A port range whose end is below its start.
    PortRangeOrder,
    /// An ICMP type outside 0-255, or not a number.
    InvalidIcmpType,
    /// An ICMP code outside 0-255, or not a number.
    InvalidIcmpCode,
    /// A priority outside 0-100, or not a number.
    InvalidPriority,
    /// More than 24 targets on one side; the token is the first one too many.
    TooManyTargets,
    /// More than 24 ports; the token is the first one too many.
    TooManyPorts,
    /// More than 24 ICMP types; the token is the first one too many.
    TooManyTypes,
    /// An IPv6 address or subnet in an `icmp` rule, or an IPv4 one in an
    /// `icmp6` rule.
    IcmpAddressFamily,
    /// Neither side has a `vm`, `tag` or `all vms` target, so the rule
    /// applies to no instance.
    NoVms,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (tok, at) = (&self.token, self.offset);
        f.write_str("rule: ")?;
        match &self.kind {
            ParseErrorKind::Unexpected { expected } => {
                if tok.is_empty() {
                    write!(f, "unexpected end of rule at {at}")?;
                } else {
                    write!(f, "unexpected {tok:?} at {at}")?;
                }
                write!(f, "; expected {}", or_list(expected))
            }
            ParseErrorKind::UnrecognizedText => write!(f, "unrecognized text {tok:?} at {at}"),
            ParseErrorKind::UnterminatedString => {
                write!(f, "quoted string at {at} has no closing quote")
            }
            ParseErrorKind::InvalidEscape => write!(
                f,
                "invalid escape {tok:?} at {at}; quoted strings allow \
                 \\\" \\\\ \\/ \\( \\) \\b \\f \\n \\r \\t and \\uXXXX"
            ),
            ParseErrorKind::InvalidIpv4 => write!(f, "IPv4 address {tok:?} at {at} is invalid"),
            ParseErrorKind::InvalidIpv6 => write!(f, "IPv6 address {tok:?} at {at} is invalid"),
            ParseErrorKind::InvalidSubnetAddress => {
                write!(f, "subnet {tok:?} at {at} is invalid (bad address component)")
            }
            ParseErrorKind::InvalidPrefixLength => write!(
                f,
                "subnet {tok:?} at {at} is invalid (bad prefix length: at most 32 for IPv4, \
                 128 for IPv6)"
            ),
            ParseErrorKind::InvalidUuid => {
                write!(f, "UUID {tok:?} at {at} is invalid (lowercase 8-4-4-4-12 hexadecimal expected)")
            }
            ParseErrorKind::InvalidPort => {
                write!(f, "port number {tok:?} at {at} is invalid (1-65535)")
            }
            ParseErrorKind::InvalidPortRange => {
                write!(f, "{tok:?} at {at} is not a valid port number or range")
            }
            ParseErrorKind::PortRangeOrder => {
                write!(f, "port range {tok:?} at {at} is invalid: the end cannot be less than the start")
            }
            ParseErrorKind::InvalidIcmpType => {
                write!(f, "ICMP type {tok:?} at {at} is invalid (0-255)")
            }
            ParseErrorKind::InvalidIcmpCode => {
                write!(f, "ICMP code {tok:?} at {at} is invalid (0-255)")
            }
            ParseErrorKind::InvalidPriority => {
                write!(f, "priority level {tok:?} at {at} is invalid (0-100)")
            }
            ParseErrorKind::TooManyTargets => write!(
                f,
                "too many targets: {tok:?} at {at} is past the maximum of \
                 {MAX_TARGETS_PER_SIDE} per side"
            ),
            ParseErrorKind::TooManyPorts => {
                write!(f, "too many ports: {tok:?} at {at} is past the maximum of {MAX_PROTOCOL_TARGETS}")
            }
            ParseErrorKind::TooManyTypes => write!(
                f,
                "too many ICMP types: {tok:?} at {at} is past the maximum of \
                 {MAX_PROTOCOL_TARGETS}"
            ),
            ParseErrorKind::IcmpAddressFamily => write!(
                f,
                "{tok:?} at {at} is of the wrong address family for the rule's protocol \
                 (icmp takes IPv4 targets, icmp6 IPv6 ones)"
            ),
            ParseErrorKind::NoVms => {
                write!(f, "the rule at {at} does not affect VMs: one side needs a vm, tag or all vms target")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// `a`, `a or b`, `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => "nothing".to_string(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Parses a rule in SmartOS's firewall rule language (see the module
/// documentation of [`super`]) and checks it as SmartOS does.
pub fn parse(text: &str) -> Result<Rule, ParseError> {
    let mut p = Parser { toks: lex(text), pos: 0, expected: Vec::new() };
    let raw = p.rule()?;
    raw.check()?;
    Ok(raw.into_rule())
}

impl std::str::FromStr for Rule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// A target and where it was written.
struct Placed<T> {
    item: T,
    offset: usize,
    token: String,
}

impl<T> Placed<T> {
    fn error(&self, kind: ParseErrorKind) -> ParseError {
        ParseError { offset: self.offset, token: self.token.clone(), kind }
    }
}

enum RawSide {
    Any,
    AllVms,
    Targets(Vec<Placed<Target>>),
}

enum RawProtoTargets {
    None,
    PortsAll,
    Ports(Vec<Placed<Port>>),
    TypesAll,
    Types(Vec<Placed<IcmpType>>),
}

/// A rule as written, with positions, before the whole-rule checks.
struct RawRule {
    start: (usize, String),
    from: RawSide,
    to: RawSide,
    action: Action,
    proto: Kw,
    targets: RawProtoTargets,
    priority: u8,
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
    /// What the grammar would have accepted at the current token.
    expected: Vec<&'static str>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok<'a> {
        &self.toks[self.pos]
    }

    fn bump(&mut self) -> Tok<'a> {
        let tok = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        self.expected.clear();
        tok
    }

    /// Consumes the current token if it is `kw`; otherwise notes `name` as
    /// acceptable here.
    fn eat(&mut self, kw: Kw, name: &'static str) -> bool {
        if self.peek().kind == TokKind::Kw(kw) {
            self.bump();
            true
        } else {
            self.note(name);
            false
        }
    }

    fn eat_kind(&mut self, kind: &TokKind, name: &'static str) -> Option<Tok<'a>> {
        if &self.peek().kind == kind {
            Some(self.bump())
        } else {
            self.note(name);
            None
        }
    }

    fn note(&mut self, name: &'static str) {
        if !self.expected.contains(&name) {
            self.expected.push(name);
        }
    }

    fn expect(&mut self, kw: Kw, name: &'static str) -> Result<(), ParseError> {
        if self.eat(kw, name) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_kind(&mut self, kind: &TokKind, name: &'static str) -> Result<Tok<'a>, ParseError> {
        self.eat_kind(kind, name).ok_or_else(|| self.unexpected())
    }

    /// The error at the current token: the lexer's, if it stopped here,
    /// otherwise "unexpected" with what would have been accepted.
    fn unexpected(&self) -> ParseError {
        let tok = self.peek();
        let kind = match tok.kind {
            TokKind::Bad(LexFault::Unrecognized) => ParseErrorKind::UnrecognizedText,
            TokKind::Bad(LexFault::UnterminatedString) => ParseErrorKind::UnterminatedString,
            TokKind::Bad(LexFault::InvalidEscape) => ParseErrorKind::InvalidEscape,
            _ => ParseErrorKind::Unexpected { expected: self.expected.clone() },
        };
        ParseError { offset: tok.offset, token: tok.text.to_string(), kind }
    }

    fn rule(&mut self) -> Result<RawRule, ParseError> {
        let first = self.peek();
        let start = (first.offset, first.text.to_string());
        self.expect(Kw::From, "FROM")?;
        let from = self.side()?;
        self.expect(Kw::To, "TO")?;
        let to = self.side()?;
        let action = if self.eat(Kw::Allow, "ALLOW") {
            Action::Allow
        } else if self.eat(Kw::Block, "BLOCK") {
            Action::Block
        } else {
            return Err(self.unexpected());
        };
        let (proto, targets) = self.protocol()?;
        let mut priority = 0;
        if self.eat(Kw::Priority, "PRIORITY") {
            let tok = self.expect_kind(&TokKind::Word, "a priority level (0-100)")?;
            priority = number(&tok, 100).ok_or_else(|| err(&tok, ParseErrorKind::InvalidPriority))?;
        }
        self.expect_kind(&TokKind::Eof, "the end of the rule")?;
        Ok(RawRule { start, from, to, action, proto, targets, priority: priority as u8 })
    }

    fn side(&mut self) -> Result<RawSide, ParseError> {
        if self.eat(Kw::Any, "any") {
            return Ok(RawSide::Any);
        }
        if self.eat(Kw::All, "all vms") {
            self.expect(Kw::Vms, "vms")?;
            return Ok(RawSide::AllVms);
        }
        if self.eat_kind(&TokKind::LParen, "(").is_none() {
            return Ok(RawSide::Targets(vec![self.target()?]));
        }
        if self.eat(Kw::Any, "any") {
            self.expect_kind(&TokKind::RParen, ")")?;
            return Ok(RawSide::Any);
        }
        if self.eat(Kw::All, "all vms") {
            self.expect(Kw::Vms, "vms")?;
            self.expect_kind(&TokKind::RParen, ")")?;
            return Ok(RawSide::AllVms);
        }
        let mut targets = vec![self.target()?];
        loop {
            if self.eat(Kw::Or, "OR") {
                targets.push(self.target()?);
            } else if self.eat_kind(&TokKind::RParen, ")").is_some() {
                return Ok(RawSide::Targets(targets));
            } else {
                return Err(self.unexpected());
            }
        }
    }

    fn target(&mut self) -> Result<Placed<Target>, ParseError> {
        let kw = self.peek().clone();
        let placed = |item| Placed { item, offset: kw.offset, token: kw.text.to_string() };
        if self.eat(Kw::Ip, "ip") {
            let addr = self.address()?;
            let ip = match addr.kind {
                TokKind::V4 => IpAddr::V4(
                    addr.text
                        .parse::<Ipv4Addr>()
                        .ok()
                        .filter(|ip| !ip.is_unspecified() && !ip.is_broadcast())
                        .ok_or_else(|| err(&addr, ParseErrorKind::InvalidIpv4))?,
                ),
                _ => IpAddr::V6(addr.text.parse::<Ipv6Addr>().map_err(|_| err(&addr, ParseErrorKind::InvalidIpv6))?),
            };
            return Ok(Placed { item: Target::Ip(ip), offset: addr.offset, token: addr.text.to_string() });
        }
        if self.eat(Kw::Subnet, "subnet") {
            let addr = self.address()?;
            let suffix = self.expect_kind(&TokKind::Cidr, "a prefix length (/n)")?;
            let text = format!("{}{}", addr.text, suffix.text);
            let fail = |kind| ParseError { offset: addr.offset, token: text.clone(), kind };
            let ip: IpAddr = addr.text.parse().map_err(|_| fail(ParseErrorKind::InvalidSubnetAddress))?;
            let prefix: u8 = suffix.text[1..].parse().map_err(|_| fail(ParseErrorKind::InvalidPrefixLength))?;
            let net = IpNet::new(ip, prefix).map_err(|_| fail(ParseErrorKind::InvalidPrefixLength))?;
            return Ok(Placed { item: Target::Subnet(net), offset: addr.offset, token: text });
        }
        if self.eat(Kw::Tag, "tag") {
            let name = self.tag_string("a tag name")?;
            let value =
                if self.eat_kind(&TokKind::Eq, "=").is_some() { Some(self.tag_string("a tag value")?) } else { None };
            return Ok(placed(Target::Tag { name, value }));
        }
        if self.eat(Kw::Vm, "vm") {
            let tok = self.expect_kind(&TokKind::Word, "a VM UUID")?;
            if !is_smartos_uuid(tok.text) {
                return Err(err(&tok, ParseErrorKind::InvalidUuid));
            }
            let uuid = Uuid::parse_str(tok.text).map_err(|_| err(&tok, ParseErrorKind::InvalidUuid))?;
            return Ok(placed(Target::Vm(uuid)));
        }
        Err(self.unexpected())
    }

    fn address(&mut self) -> Result<Tok<'a>, ParseError> {
        if let Some(tok) = self.eat_kind(&TokKind::V4, "an IPv4 address") {
            return Ok(tok);
        }
        self.expect_kind(&TokKind::V6, "an IPv6 address")
    }

    fn tag_string(&mut self, what: &'static str) -> Result<String, ParseError> {
        if let TokKind::Str(s) = &self.peek().kind {
            let s = s.clone();
            self.bump();
            return Ok(s);
        }
        Ok(self.expect_kind(&TokKind::Word, what)?.text.to_string())
    }

    fn protocol(&mut self) -> Result<(Kw, RawProtoTargets), ParseError> {
        for (kw, name) in [(Kw::Tcp, "tcp"), (Kw::Udp, "udp")] {
            if self.eat(kw, name) {
                return Ok((kw, self.ports()?));
            }
        }
        for (kw, name) in [(Kw::Icmp, "icmp"), (Kw::Icmp6, "icmp6")] {
            if self.eat(kw, name) {
                return Ok((kw, self.types()?));
            }
        }
        for (kw, name) in [(Kw::Ah, "ah"), (Kw::Esp, "esp")] {
            if self.eat(kw, name) {
                return Ok((kw, RawProtoTargets::None));
            }
        }
        Err(self.unexpected())
    }

    fn ports(&mut self) -> Result<RawProtoTargets, ParseError> {
        if self.eat(Kw::Port, "PORT") {
            if self.eat(Kw::All, "all") {
                return Ok(RawProtoTargets::PortsAll);
            }
            return Ok(RawProtoTargets::Ports(vec![self.port_number()?]));
        }
        if self.eat(Kw::Ports, "PORTS") {
            if self.eat(Kw::All, "all") {
                return Ok(RawProtoTargets::PortsAll);
            }
            let mut list = vec![self.port_range()?];
            while self.eat_kind(&TokKind::Comma, ",").is_some() {
                list.push(self.port_range()?);
            }
            return Ok(RawProtoTargets::Ports(list));
        }
        if self.eat_kind(&TokKind::LParen, "(").is_some() {
            self.expect(Kw::Port, "PORT")?;
            if self.eat(Kw::All, "all") {
                self.expect_kind(&TokKind::RParen, ")")?;
                return Ok(RawProtoTargets::PortsAll);
            }
            let mut list = vec![self.port_number()?];
            loop {
                if self.eat(Kw::And, "AND") {
                    self.expect(Kw::Port, "PORT")?;
                    list.push(self.port_number()?);
                } else if self.eat_kind(&TokKind::RParen, ")").is_some() {
                    return Ok(RawProtoTargets::Ports(list));
                } else {
                    return Err(self.unexpected());
                }
            }
        }
        Err(self.unexpected())
    }

    fn port_number(&mut self) -> Result<Placed<Port>, ParseError> {
        let tok = self.expect_kind(&TokKind::Word, "a port number")?;
        let port = port(&tok)?;
        Ok(Placed { item: Port::One(port), offset: tok.offset, token: tok.text.to_string() })
    }

    /// `n`, `n-n` (one word) or `n - n`.
    fn port_range(&mut self) -> Result<Placed<Port>, ParseError> {
        let first = self.expect_kind(&TokKind::Word, "a port number or range")?;
        let placed = |item| Placed { item, offset: first.offset, token: first.text.to_string() };
        if self.eat_kind(&TokKind::Dash, "-").is_some() {
            let second = self.expect_kind(&TokKind::Word, "a port number")?;
            let (a, b) = (port(&first)?, port(&second)?);
            if b < a {
                return Err(ParseError {
                    offset: first.offset,
                    token: format!("{} - {}", first.text, second.text),
                    kind: ParseErrorKind::PortRangeOrder,
                });
            }
            return Ok(placed(Port::Range(a, b)));
        }
        let parts: Vec<&str> = first.text.split('-').collect();
        match parts[..] {
            [_] => Ok(placed(Port::One(port(&first)?))),
            [a, b] => {
                let sub = |text: &'a str, offset| Tok { kind: TokKind::Word, text, offset };
                let lo = port(&sub(a, first.offset))?;
                let hi = port(&sub(b, first.offset + a.len() + 1))?;
                if hi < lo {
                    return Err(err(&first, ParseErrorKind::PortRangeOrder));
                }
                Ok(placed(Port::Range(lo, hi)))
            }
            _ => Err(err(&first, ParseErrorKind::InvalidPortRange)),
        }
    }

    fn types(&mut self) -> Result<RawProtoTargets, ParseError> {
        if self.eat(Kw::Type, "TYPE") {
            if self.eat(Kw::All, "all") {
                return Ok(RawProtoTargets::TypesAll);
            }
            return Ok(RawProtoTargets::Types(vec![self.icmp_type()?]));
        }
        if self.eat_kind(&TokKind::LParen, "(").is_some() {
            self.expect(Kw::Type, "TYPE")?;
            if self.eat(Kw::All, "all") {
                self.expect_kind(&TokKind::RParen, ")")?;
                return Ok(RawProtoTargets::TypesAll);
            }
            let mut list = vec![self.icmp_type()?];
            loop {
                if self.eat(Kw::And, "AND") {
                    self.expect(Kw::Type, "TYPE")?;
                    list.push(self.icmp_type()?);
                } else if self.eat_kind(&TokKind::RParen, ")").is_some() {
                    return Ok(RawProtoTargets::Types(list));
                } else {
                    return Err(self.unexpected());
                }
            }
        }
        Err(self.unexpected())
    }

    /// `t [CODE c]`, after `TYPE`.
    fn icmp_type(&mut self) -> Result<Placed<IcmpType>, ParseError> {
        let tok = self.expect_kind(&TokKind::Word, "an ICMP type (0-255)")?;
        let icmp_type = number(&tok, 255).ok_or_else(|| err(&tok, ParseErrorKind::InvalidIcmpType))? as u8;
        let mut code = None;
        if self.eat(Kw::Code, "CODE") {
            let c = self.expect_kind(&TokKind::Word, "an ICMP code (0-255)")?;
            code = Some(number(&c, 255).ok_or_else(|| err(&c, ParseErrorKind::InvalidIcmpCode))? as u8);
        }
        Ok(Placed { item: IcmpType { icmp_type, code }, offset: tok.offset, token: tok.text.to_string() })
    }
}

fn err(tok: &Tok<'_>, kind: ParseErrorKind) -> ParseError {
    ParseError { offset: tok.offset, token: tok.text.to_string(), kind }
}

/// A decimal number (digits only, leading zeros allowed) up to `max`.
fn number(tok: &Tok<'_>, max: u64) -> Option<u64> {
    let t = tok.text;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Leading zeros cannot overflow; anything longer than 20 digits does.
    let n = t.trim_start_matches('0');
    if n.len() > 19 {
        return None;
    }
    let n = if n.is_empty() { 0 } else { n.parse().ok()? };
    (n <= max).then_some(n)
}

fn port(tok: &Tok<'_>) -> Result<u16, ParseError> {
    match number(tok, 65535) {
        Some(n) if n >= 1 => Ok(n as u16),
        _ => Err(err(tok, ParseErrorKind::InvalidPort)),
    }
}

/// SmartOS's UUID pattern: lowercase hexadecimal, 8-4-4-4-12.
fn is_smartos_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

impl RawRule {
    /// The checks SmartOS's `FwRule` makes once a rule has parsed, in its
    /// order.
    fn check(&self) -> Result<(), ParseError> {
        match &self.targets {
            RawProtoTargets::Ports(list) if list.len() > MAX_PROTOCOL_TARGETS => {
                return Err(list[MAX_PROTOCOL_TARGETS].error(ParseErrorKind::TooManyPorts));
            }
            RawProtoTargets::Types(list) if list.len() > MAX_PROTOCOL_TARGETS => {
                return Err(list[MAX_PROTOCOL_TARGETS].error(ParseErrorKind::TooManyTypes));
            }
            _ => {}
        }
        for side in [&self.from, &self.to] {
            if let RawSide::Targets(list) = side {
                if list.len() > MAX_TARGETS_PER_SIDE {
                    return Err(list[MAX_TARGETS_PER_SIDE].error(ParseErrorKind::TooManyTargets));
                }
            }
        }
        if matches!(self.proto, Kw::Icmp | Kw::Icmp6) {
            let want_v4 = self.proto == Kw::Icmp;
            for side in [&self.from, &self.to] {
                let RawSide::Targets(list) = side else {
                    continue;
                };
                for t in list {
                    let is_v4 = match t.item {
                        Target::Ip(ip) => ip.is_ipv4(),
                        Target::Subnet(net) => net.addr().is_ipv4(),
                        _ => continue,
                    };
                    if is_v4 != want_v4 {
                        return Err(t.error(ParseErrorKind::IcmpAddressFamily));
                    }
                }
            }
        }
        let affects_vms = |side: &RawSide| match side {
            RawSide::Any => false,
            RawSide::AllVms => true,
            RawSide::Targets(list) => list.iter().any(|t| matches!(t.item, Target::Tag { .. } | Target::Vm(_))),
        };
        if !affects_vms(&self.from) && !affects_vms(&self.to) {
            return Err(ParseError { offset: self.start.0, token: self.start.1.clone(), kind: ParseErrorKind::NoVms });
        }
        Ok(())
    }

    fn into_rule(self) -> Rule {
        let protocol = match (self.proto, self.targets) {
            (Kw::Tcp | Kw::Udp, RawProtoTargets::PortsAll) => ports_protocol(self.proto, Ports::All),
            (Kw::Tcp | Kw::Udp, RawProtoTargets::Ports(list)) => {
                let mut ports: Vec<Port> = list.into_iter().map(|p| p.item).collect();
                // Stable, by first port, as SmartOS sorts them.
                ports.sort_by_key(|p| p.start());
                ports_protocol(self.proto, Ports::List(ports))
            }
            (Kw::Icmp | Kw::Icmp6, RawProtoTargets::TypesAll) => types_protocol(self.proto, IcmpTypes::All),
            (Kw::Icmp | Kw::Icmp6, RawProtoTargets::Types(list)) => {
                let mut types: Vec<IcmpType> = list.into_iter().map(|t| t.item).collect();
                types.sort_by_key(|t| (t.icmp_type, t.code.unwrap_or(0)));
                types_protocol(self.proto, IcmpTypes::List(types))
            }
            (Kw::Ah, _) => Protocol::Ah,
            _ => Protocol::Esp,
        };
        Rule {
            from: normalize(self.from),
            to: normalize(self.to),
            action: self.action,
            protocol,
            priority: self.priority,
        }
    }
}

fn ports_protocol(kw: Kw, ports: Ports) -> Protocol {
    if kw == Kw::Tcp {
        Protocol::Tcp(ports)
    } else {
        Protocol::Udp(ports)
    }
}

fn types_protocol(kw: Kw, types: IcmpTypes) -> Protocol {
    if kw == Kw::Icmp {
        Protocol::Icmp(types)
    } else {
        Protocol::Icmp6(types)
    }
}

/// Deduplicates and orders a side's targets as SmartOS prints them: ips,
/// subnets, tags, vms; each sorted by its text; a bare `tag x` replaces
/// every `tag x = v`.
fn normalize(side: RawSide) -> Side {
    let list = match side {
        RawSide::Any => return Side::Any,
        RawSide::AllVms => return Side::AllVms,
        RawSide::Targets(list) => list,
    };
    let bare_tags: Vec<String> = list
        .iter()
        .filter_map(|t| match &t.item {
            Target::Tag { name, value: None } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let mut keyed: Vec<(u8, String, String, Target)> = list
        .into_iter()
        .filter(|t| match &t.item {
            Target::Tag { name, value: Some(_) } => !bare_tags.contains(name),
            _ => true,
        })
        .map(|t| {
            let (rank, a, b) = match &t.item {
                Target::Ip(ip) => (0, super::rule::ip_text(*ip), String::new()),
                Target::Subnet(net) => (1, super::rule::net_text(*net), String::new()),
                Target::Tag { name, value } => (2, name.clone(), value.clone().unwrap_or_default()),
                Target::Vm(uuid) => (3, uuid.hyphenated().to_string(), String::new()),
            };
            (rank, a, b, t.item)
        })
        .collect();
    keyed.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| js_cmp(&x.1, &y.1)).then_with(|| js_cmp(&x.2, &y.2)));
    keyed.dedup_by(|a, b| a.3 == b.3);
    Side::Targets(keyed.into_iter().map(|k| k.3).collect())
}
