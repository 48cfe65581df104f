//! The rule lexer: the same tokens, tried in the same order, as SmartOS's
//! jison lexer (`fwrule.jison`).
//!
//! - Keywords are whole words written all in upper or all in lower case
//!   (`FROM`/`from`, never `From`, which is a plain word). A keyword ends
//!   where a character other than an ASCII letter, digit or `_` follows, so
//!   `tcp-x` is `tcp` then `-` then `x`, as in SmartOS.
//! - `"..."` is a quoted string with the escapes `\" \\ \/ \( \) \b \f \n \r
//!   \t \uXXXX`.
//! - `a.b.c.d` (1-3 digits each) is an IPv4 address; `h:h:...` (lowercase
//!   hexadecimal and colons, at least two colons) an IPv6 address; `/n`
//!   (1-3 digits) a CIDR suffix.
//! - Anything else made of ASCII letters, digits, `-` and `_` is a word
//!   (numbers, UUIDs, unquoted tag names, `20-40`).
//!
//! The lexer stops at the first text it cannot read and ends the token list
//! with a [`TokKind::Bad`] token there, so a parser reaching it reports the
//! lexical error only if nothing before it was wrong, as SmartOS's lazy
//! lexer does.

/// A keyword of the rule language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    From,
    To,
    Ip,
    Subnet,
    Any,
    All,
    Tag,
    Vm,
    Vms,
    Or,
    And,
    Block,
    Allow,
    Port,
    Ports,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ah,
    Esp,
    Type,
    Code,
    Priority,
}

const KEYWORDS: [(&str, Kw); 24] = [
    ("from", Kw::From),
    ("to", Kw::To),
    ("ip", Kw::Ip),
    ("subnet", Kw::Subnet),
    ("any", Kw::Any),
    ("all", Kw::All),
    ("tag", Kw::Tag),
    ("vm", Kw::Vm),
    ("vms", Kw::Vms),
    ("or", Kw::Or),
    ("and", Kw::And),
    ("block", Kw::Block),
    ("allow", Kw::Allow),
    ("port", Kw::Port),
    ("ports", Kw::Ports),
    ("tcp", Kw::Tcp),
    ("udp", Kw::Udp),
    ("icmp", Kw::Icmp),
    ("icmp6", Kw::Icmp6),
    ("ah", Kw::Ah),
    ("esp", Kw::Esp),
    ("type", Kw::Type),
    ("code", Kw::Code),
    ("priority", Kw::Priority),
];

/// Why the lexer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LexFault {
    /// No token starts here.
    Unrecognized,
    /// A `"` with no closing `"`.
    UnterminatedString,
    /// A `\` in a quoted string not followed by a known escape.
    InvalidEscape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokKind {
    Kw(Kw),
    Dash,
    Comma,
    Eq,
    LParen,
    RParen,
    /// A quoted string, unescaped.
    Str(String),
    V4,
    V6,
    Cidr,
    Word,
    Eof,
    Bad(LexFault),
}

/// A token: its kind, its text in the rule and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tok<'a> {
    pub(super) kind: TokKind,
    pub(super) text: &'a str,
    pub(super) offset: usize,
}

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// JavaScript's `\s` (which, unlike Unicode's White_Space, has the byte
/// order mark and not U+0085).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// Splits `input` into tokens, ending with `Eof` or with a `Bad` token.
pub(super) fn lex(input: &str) -> Vec<Tok<'_>> {
    let mut toks = Vec::new();
    let mut i = 0;
    loop {
        while let Some(c) = input[i..].chars().next() {
            if !is_space(c) {
                break;
            }
            i += c.len_utf8();
        }
        if i == input.len() {
            toks.push(Tok { kind: TokKind::Eof, text: "", offset: i });
            return toks;
        }
        let (kind, len) = match next_token(input, i) {
            Ok(found) => found,
            Err((fault, at, len)) => {
                toks.push(Tok { kind: TokKind::Bad(fault), text: &input[at..at + len], offset: at });
                return toks;
            }
        };
        toks.push(Tok { kind, text: &input[i..i + len], offset: i });
        i += len;
    }
}

/// The token at `i` (not white space, not the end) and its length, or the
/// fault with the offset and length of the text to show for it.
fn next_token(input: &str, i: usize) -> Result<(TokKind, usize), (LexFault, usize, usize)> {
    let rest = &input[i..];
    let bytes = rest.as_bytes();

    // Keywords come first in SmartOS's lexer: a whole word, all upper or all
    // lower case.
    let word_len = bytes.iter().take_while(|b| is_word_char(**b)).count();
    if word_len > 0 {
        let word = &rest[..word_len];
        for (kw, kind) in KEYWORDS {
            if word == kw || word == kw.to_ascii_uppercase() {
                return Ok((TokKind::Kw(kind), word_len));
            }
        }
    }
    match bytes[0] {
        b'-' => return Ok((TokKind::Dash, 1)),
        b',' => return Ok((TokKind::Comma, 1)),
        b'=' => return Ok((TokKind::Eq, 1)),
        b'(' => return Ok((TokKind::LParen, 1)),
        b')' => return Ok((TokKind::RParen, 1)),
        b'"' => return quoted(rest).map_err(|(f, at, len)| (f, i + at, len)),
        _ => {}
    }
    if let Some(len) = ipv4_len(bytes) {
        return Ok((TokKind::V4, len));
    }
    if let Some(len) = ipv6_len(bytes) {
        return Ok((TokKind::V6, len));
    }
    if bytes[0] == b'/' {
        let digits = bytes[1..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            return Ok((TokKind::Cidr, 1 + digits));
        }
    }
    let len = bytes.iter().take_while(|b| is_word_char(**b) || **b == b'-').count();
    if len > 0 {
        return Ok((TokKind::Word, len));
    }
    // Show the unreadable text up to the next space.
    let len = rest.char_indices().find(|(_, c)| is_space(*c)).map_or(rest.len(), |(n, _)| n);
    Err((LexFault::Unrecognized, i, len))
}

/// `\d{1,3}(\.\d{1,3}){3}`, greedy.
fn ipv4_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    for part in 0..4 {
        if part > 0 {
            if bytes.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let digits = bytes[i..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    Some(i)
}

/// `[0-9a-f]*:[0-9a-f]*:[:0-9a-f]*`, greedy.
fn ipv6_len(bytes: &[u8]) -> Option<usize> {
    let hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    let mut i = 0;
    for _ in 0..2 {
        i += bytes[i..].iter().take_while(|b| hex(b)).count();
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
    }
    i += bytes[i..].iter().take_while(|b| hex(b) || **b == b':').count();
    Some(i)
}

/// A quoted string at the start of `rest`: its unescaped value and length,
/// or the fault with the offset (in `rest`) and length of the text to show.
fn quoted(rest: &str) -> Result<(TokKind, usize), (LexFault, usize, usize)> {
    let mut value = String::new();
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((TokKind::Str(value), at + 1)),
            '\\' => {
                let bad = |len: usize| (LexFault::InvalidEscape, at, len);
                let Some((_, e)) = chars.next() else {
                    return Err((LexFault::UnterminatedString, 0, rest.len()));
                };
                match e {
                    '"' | '/' | '(' | ')' | '\\' => value.push(e),
                    'b' => value.push('\u{8}'),
                    'f' => value.push('\u{c}'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'u' => {
                        let unit = hex4(rest, at + 2).ok_or(bad(2))?;
                        for _ in 0..4 {
                            chars.next();
                        }
                        if (0xd800..0xdc00).contains(&unit) {
                            // A high surrogate: it names a character only with
                            // the low surrogate escaped right after it.
                            let low = (rest.get(at + 6..at + 8) == Some("\\u"))
                                .then(|| hex4(rest, at + 8))
                                .flatten()
                                .filter(|low| (0xdc00..0xe000).contains(low))
                                .ok_or(bad(6))?;
                            for _ in 0..6 {
                                chars.next();
                            }
                            let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                            value.push(char::from_u32(code).ok_or(bad(12))?);
                        } else {
                            value.push(char::from_u32(unit).ok_or(bad(6))?);
                        }
                    }
                    _ => return Err(bad(1 + e.len_utf8())),
                }
            }
            _ => value.push(c),
        }
    }
    Err((LexFault::UnterminatedString, 0, rest.len()))
}

/// Four hexadecimal digits at `at` in `s`.
fn hex4(s: &str, at: usize) -> Option<u32> {
    let digits = s.get(at..at + 4)?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}
