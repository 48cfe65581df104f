//! Frames of the metadata protocol, both directions, as bytes.
//!
//! One request or reply is one line. V1 lines are bare commands; a V2 line
//! wraps a body in a length and a CRC so that a damaged line on a serial
//! port is noticed:
//!
//! ```text
//!   V2 21 265ae1d8 dc4fae17 SUCCESS W10=\n
//!      |  |        `--------------------' body: <reqid> <CODE> [base64 payload]
//!      |  `- CRC-32 (IEEE) of the body, 8 lower-case hex digits
//!      `---- length of the body in bytes, decimal
//! ```
//!
//! | guest sends                         | host answers                         |
//! |-------------------------------------|--------------------------------------|
//! | `\n` (an empty line)                | `invalid command`                    |
//! | `NEGOTIATE V2`                      | `V2_OK` (anything else: `FAILURE`)   |
//! | `GET <key>`, `KEYS` (V1)            | `SUCCESS` + lines + `.`, `NOTFOUND`, `FAILURE` |
//! | `V2 .. <reqid> GET b64(key)`        | `V2 .. <reqid> SUCCESS b64(value)`, `NOTFOUND`, `FAILURE [b64(message)]` |
//! | `V2 .. <reqid> KEYS`                | `V2 .. <reqid> SUCCESS b64(keys, one a line)` |
//! | `V2 .. <reqid> PUT b64(b64(key) b64(value))` | `V2 .. <reqid> SUCCESS b64("OK")` |
//! | `V2 .. <reqid> DELETE b64(key)`     | `V2 .. <reqid> SUCCESS b64("OK")`    |
//!
//! The host side ([`parse_line`], [`encode`]) follows SmartOS's metadata
//! agent (`src/vm/lib/metadata/agent.js` in smartos-live) down to its
//! quirks, because guests were written against it: a V1 line is split the
//! way its regular expressions split it, a V2 frame whose length or CRC is
//! wrong is dropped without an answer, `PUT` and `DELETE` exist only in V2.
//! Where the agent is lenient and this module is not, the guest gets a
//! `FAILURE` that says why ([`Request::Malformed`]): payloads must be
//! canonical base64 of UTF-8 text.
//!
//! The guest side ([`encode_request`], [`parse_frame`]) writes what
//! joyent's mdata-client writes and reads replies as strictly as it does.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::{js, MAX_LINE};

/// Base64 as guests write it: the standard alphabet, padding optional.
const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The CRC-32 of V2 frames: IEEE 802.3 (polynomial 0xedb88320), as zlib
/// and SmartOS's `crc32.js` compute it.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// How a request arrived, and so how its reply must be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A bare V1 line; the reply is bare too.
    V1,
    /// A V2 frame; the reply echoes its request id.
    V2 {
        /// The request id as the guest wrote it (lower-case hex, 8 digits
        /// from mdata-client and cloud-init).
        reqid: String,
    },
}

/// One request from a guest, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `NEGOTIATE <version>` (V1 only; in a V2 frame it is
    /// [`Request::Unknown`], as SmartOS treats it).
    Negotiate {
        /// What follows `NEGOTIATE `; SmartOS accepts only `V2`.
        version: String,
    },
    /// `GET <key>`; the key is as sent, not yet trimmed.
    Get {
        /// The key (V1: the rest of the line; V2: the decoded payload).
        key: String,
    },
    /// `KEYS`: list the keys the guest may read.
    Keys,
    /// `PUT` (V2 only): the key (not yet trimmed) and the value.
    Put {
        /// The decoded key.
        key: String,
        /// The decoded value (never empty from the wire: see [`crate::keys`]).
        value: String,
    },
    /// `DELETE <key>` (V2 only); the key is not yet trimmed.
    Delete {
        /// The decoded key.
        key: String,
    },
    /// A command this protocol does not have (in V1 this includes `PUT`
    /// and `DELETE`).
    Unknown {
        /// The command word as sent.
        command: String,
    },
    /// A known V2 command whose payload could not be decoded; answered
    /// `FAILURE` with `Invalid <command> Request[: <problem>]`.
    Malformed {
        /// `GET`, `PUT` or `DELETE`.
        command: String,
        /// What was wrong, when SmartOS's own message says nothing more.
        problem: Option<String>,
    },
}

/// One answer to a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `SUCCESS`, with a value (V2 sends no payload for `None` or an empty
    /// value; V1 sends an empty line either way).
    Success(Option<String>),
    /// `NOTFOUND`.
    NotFound,
    /// `FAILURE`; the message travels only in V2.
    Failure(Option<String>),
    /// `V2_OK`, the answer to `NEGOTIATE V2` (always a bare line).
    V2Ok,
    /// `invalid command`, SmartOS's answer to a line it cannot split into
    /// a command, such as the empty line clients send first (always a bare
    /// line).
    InvalidCommand,
}

/// Why a line from a guest is not a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// An empty line, or one of spaces only (clients send one first, to
    /// see the host answer): answer `invalid command\n`.
    #[error("an empty line")]
    Blank,
    /// Not a command at all (a line starting with a space, `GET` or
    /// `NEGOTIATE` without an argument): answer `invalid command\n`.
    #[error("not a metadata command")]
    Invalid,
    /// A V2 frame with a bad shape, length or CRC: SmartOS drops it and
    /// answers nothing, and the guest retries after its timeout.
    #[error("V2 frame with a bad shape, length or CRC")]
    BadFrame,
    /// A line longer than [`MAX_LINE`] bytes: nothing is answered; a
    /// socket may be closed.
    #[error("request line longer than {MAX_LINE} bytes")]
    TooLong,
}

impl LineError {
    /// What SmartOS writes back for this line, if anything.
    pub fn reply(self) -> Option<&'static [u8]> {
        match self {
            LineError::Blank | LineError::Invalid => Some(b"invalid command\n"),
            LineError::BadFrame | LineError::TooLong => None,
        }
    }
}

/// Reads one request line (without or with its `\n`) as SmartOS's agent
/// reads it.
pub fn parse_line(line: &[u8]) -> Result<(Framing, Request), LineError> {
    if line.strip_suffix(b"\n").unwrap_or(line).len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    // Node decodes the bytes as UTF-8, replacing what is not.
    let text = String::from_utf8_lossy(line);
    // data.trimRight().match(/^([^\s]+)\s?(.*)/)
    let text = js::trim_end(&text);
    if text.is_empty() {
        return Err(LineError::Blank);
    }
    let cmd_end = text.find(js::is_space).unwrap_or(text.len());
    if cmd_end == 0 {
        return Err(LineError::Invalid);
    }
    let cmd = &text[..cmd_end];
    let mut rest = &text[cmd_end..];
    if let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
    }
    // `.` does not cross a line terminator.
    let want = &rest[..rest.find(js::is_line_terminator).unwrap_or(rest.len())];
    if (cmd == "NEGOTIATE" || cmd == "GET") && want.is_empty() {
        return Err(LineError::Invalid);
    }
    if cmd == "V2" {
        return parse_v2(want);
    }
    let request = match cmd {
        "GET" => Request::Get { key: want.to_string() },
        "NEGOTIATE" => Request::Negotiate { version: want.to_string() },
        "KEYS" => Request::Keys,
        _ => Request::Unknown { command: cmd.to_string() },
    };
    Ok((Framing::V1, request))
}

/// The words of `s` (runs of non-space) with their byte offsets.
fn words(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(js::is_space)
        .scan(0usize, |pos, word| {
            let start = *pos;
            *pos += word.len();
            // The separator is one whitespace character; step over it.
            if let Some(c) = s[*pos..].chars().next() {
                *pos += c.len_utf8();
            }
            Some((start, word))
        })
        .filter(|(_, w)| !w.is_empty())
}

fn is_lower_hex(word: &str) -> bool {
    word.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The agent's `parse_v2_request`: the frame after `V2 `, matched with the
/// unanchored `/\s*([0-9]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(.*)/`.
///
/// The leftmost match of that expression starts at the trailing run of
/// digits of the first word that is followed by two lower-case hex words
/// and one more word; finding it word by word keeps this linear in the
/// line's length (a regex engine that backtracks is quadratic here).
fn parse_v2(want: &str) -> Result<(Framing, Request), LineError> {
    let ws: Vec<(usize, &str)> = words(want).collect();
    let found = ws.windows(4).find(|w| {
        w[0].1.as_bytes().last().is_some_and(u8::is_ascii_digit) && is_lower_hex(w[1].1) && is_lower_hex(w[2].1)
    });
    let Some([(_, first), (_, crc), (_, reqid), (body_at, _)]) = found.map(|w| [w[0], w[1], w[2], w[3]]) else {
        return Err(LineError::BadFrame);
    };
    let digits = &first[first.trim_end_matches(|c: char| c.is_ascii_digit()).len()..];
    let rest = &want[body_at..];
    // The CRC and length are of m[3] + ' ' + m[4], in UTF-16 code units;
    // the CRC takes the low byte of each (crc32.js: 0xff & charCodeAt(i)).
    let body = format!("{reqid} {rest}");
    let clen = digits.parse::<u64>().map_err(|_| LineError::BadFrame)?;
    if clen == 0 || clen != body.encode_utf16().count() as u64 {
        return Err(LineError::BadFrame);
    }
    let low_bytes: Vec<u8> = body.encode_utf16().map(|u| u as u8).collect();
    if *crc != format!("{:08x}", crc32(&low_bytes)) {
        return Err(LineError::BadFrame);
    }
    // m[4].match(/\s*(\S+)\s*(.*)/): the command word, then its argument.
    let cmd_end = rest.find(js::is_space).unwrap_or(rest.len());
    let command = &rest[..cmd_end];
    let arg = rest[cmd_end..].trim_start_matches(js::is_space);
    let framing = Framing::V2 { reqid: reqid.to_string() };
    let request = match command {
        "GET" => match decode_text(arg) {
            Ok(key) => Request::Get { key },
            Err(problem) => malformed(command, format!("the key {problem}")),
        },
        "DELETE" => match decode_text(arg) {
            Ok(key) => Request::Delete { key },
            Err(problem) => malformed(command, format!("the key {problem}")),
        },
        "KEYS" => Request::Keys,
        "PUT" => parse_put(arg),
        _ => Request::Unknown { command: command.to_string() },
    };
    Ok((framing, request))
}

fn malformed(command: &str, problem: String) -> Request {
    Request::Malformed { command: command.to_string(), problem: Some(problem) }
}

/// Decodes a base64 argument that must hold UTF-8 text.
fn decode_text(arg: &str) -> Result<String, &'static str> {
    let bytes = B64_LENIENT.decode(arg).map_err(|_| "is not valid base64")?;
    String::from_utf8(bytes).map_err(|_| "is not valid UTF-8")
}

/// A PUT payload: base64 of `b64(key) b64(value)`.
fn parse_put(arg: &str) -> Request {
    let outer = match decode_text(arg) {
        Ok(outer) => outer,
        Err(problem) => return malformed("PUT", format!("the payload {problem}")),
    };
    // (want || '').trim().split(' '), exactly two terms.
    let terms: Vec<&str> = js::trim(&outer).split(' ').collect();
    let [key, value] = terms[..] else {
        return Request::Malformed { command: "PUT".to_string(), problem: None };
    };
    let key = match decode_text(key) {
        Ok(key) => key,
        Err(problem) => return malformed("PUT", format!("the key {problem}")),
    };
    match decode_text(value) {
        Ok(value) => Request::Put { key, value },
        Err(problem) => malformed("PUT", format!("the value {problem}")),
    }
}

/// Writes a reply the way SmartOS's agent writes it.
///
/// [`Reply::V2Ok`] and [`Reply::InvalidCommand`] are bare lines whatever
/// the framing.
pub fn encode(framing: &Framing, reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::V2Ok => return b"V2_OK\n".to_vec(),
        Reply::InvalidCommand => return b"invalid command\n".to_vec(),
        _ => {}
    }
    match framing {
        Framing::V1 => match reply {
            Reply::Success(value) => {
                let mut out = b"SUCCESS\n".to_vec();
                out.extend_from_slice(double_leading_dots(value.as_deref().unwrap_or("")).as_bytes());
                out.extend_from_slice(b"\n.\n");
                out
            }
            Reply::NotFound => b"NOTFOUND\n".to_vec(),
            _ => b"FAILURE\n".to_vec(),
        },
        Framing::V2 { reqid } => match reply {
            Reply::Success(value) => encode_frame(reqid, "SUCCESS", payload(value)),
            Reply::NotFound => encode_frame(reqid, "NOTFOUND", None),
            Reply::Failure(message) => encode_frame(reqid, "FAILURE", payload(message)),
            Reply::V2Ok | Reply::InvalidCommand => unreachable!("answered above"),
        },
    }
}

/// A V2 reply's payload: `if (body)` leaves out an absent or empty one.
fn payload(value: &Option<String>) -> Option<&[u8]> {
    value.as_deref().filter(|s| !s.is_empty()).map(str::as_bytes)
}

/// V1's escape for a value: `value.replace(/^\./mg, '..')` (a line may
/// start after any JavaScript line terminator).
fn double_leading_dots(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    let mut at_line_start = true;
    for c in value.chars() {
        if c == '.' && at_line_start {
            out.push('.');
        }
        out.push(c);
        at_line_start = js::is_line_terminator(c);
    }
    out
}

/// One V2 frame: `V2 <len> <crc> <reqid> <code>[ <b64 payload>]\n`.
///
/// Both sides use the same layout; `code` is a command (`GET`) from the
/// guest and a response code (`SUCCESS`) from the host. An empty payload is
/// left out with its space: SmartOS trims a line before checking its
/// length, so a frame ending in a space would be dropped (mdata-client
/// sends one for `mdata-get ''`, and waits forever).
pub fn encode_frame(reqid: &str, code: &str, payload: Option<&[u8]>) -> Vec<u8> {
    let mut body = format!("{reqid} {code}");
    if let Some(payload) = payload.filter(|p| !p.is_empty()) {
        body.push(' ');
        STANDARD.encode_string(payload, &mut body);
    }
    format!("V2 {} {:08x} {body}\n", body.len(), crc32(body.as_bytes())).into_bytes()
}

/// A V2 frame read by a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The request id it answers.
    pub reqid: String,
    /// `SUCCESS`, `NOTFOUND`, `FAILURE` (or a request's command).
    pub code: String,
    /// The decoded payload, if the frame had one.
    pub payload: Option<Vec<u8>>,
}

/// Why a line is not a V2 frame, as mdata-client words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The line does not start with `V2 `.
    #[error("message did not start with V2")]
    NotV2,
    /// The length field is missing or zero.
    #[error("invalid content length")]
    Length,
    /// The CRC field is missing or not hex.
    #[error("invalid crc32 in frame")]
    Crc,
    /// The body's length or CRC differs from the header's.
    #[error("clen/crc32 mismatch")]
    Mismatch,
    /// No request id, or no code.
    #[error("missing request id or command/code")]
    Missing,
    /// The payload is not base64.
    #[error("base64 error")]
    Base64,
}

/// Reads a V2 frame (without its `\n`) as mdata-client's `proto_parse_v2`
/// does: the header must match the body exactly.
pub fn parse_frame(line: &[u8]) -> Result<Frame, FrameError> {
    let rest = line.strip_prefix(b"V2 ").ok_or(FrameError::NotV2)?;
    let skip_spaces = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ').count() };
    let len_digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let clen: usize = std::str::from_utf8(&rest[..len_digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .ok_or(FrameError::Length)?;
    let rest = &rest[len_digits..];
    let rest = &rest[skip_spaces(rest)..];
    let crc_digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let crc = std::str::from_utf8(&rest[..crc_digits])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or(FrameError::Crc)?;
    let rest = &rest[crc_digits..];
    let body = &rest[skip_spaces(rest)..];
    if body.len() != clen || crc32(body) != crc {
        return Err(FrameError::Mismatch);
    }
    let reqid_len = body.iter().take_while(|&&b| b != b' ').count();
    let (reqid, rest) = body.split_at(reqid_len);
    let rest = &rest[skip_spaces(rest)..];
    let code_len = rest.iter().take_while(|&&b| b != b' ').count();
    let (code, rest) = rest.split_at(code_len);
    if reqid.is_empty() || code.is_empty() {
        return Err(FrameError::Missing);
    }
    let data = &rest[skip_spaces(rest)..];
    let payload = if data.is_empty() { None } else { Some(B64_LENIENT.decode(data).map_err(|_| FrameError::Base64)?) };
    Ok(Frame {
        reqid: String::from_utf8_lossy(reqid).into_owned(),
        code: String::from_utf8_lossy(code).into_owned(),
        payload,
    })
}

/// A request line as mdata-client writes it: V1 `<command>[ <arg>]\n`, or
/// for V2 a frame whose payload is the base64 of `arg`.
pub fn encode_request(framing: &Framing, command: &str, arg: Option<&[u8]>) -> Vec<u8> {
    match framing {
        Framing::V1 => {
            let mut out = command.as_bytes().to_vec();
            if let Some(arg) = arg {
                out.push(b' ');
                out.extend_from_slice(arg);
            }
            out.push(b'\n');
            out
        }
        Framing::V2 { reqid } => encode_frame(reqid, command, arg),
    }
}

/// The argument of a V2 `PUT` before its own base64: `b64(key) b64(value)`.
pub fn put_argument(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = STANDARD.encode(key);
    out.push(' ');
    STANDARD.encode_string(value, &mut out);
    out.into_bytes()
}

#[cfg(test)]
mod tests;
