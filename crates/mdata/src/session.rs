//! One guest stream's input: bytes in, requests out. Pure and
//! non-blocking, so the monitor's poll loop owns the I/O.
//!
//! A stream is one connection to a zone's metadata socket, or a VM's
//! serial line for as long as the VM runs. Requests are independent lines
//! (a V2 frame carries its own framing), so the only state is the partial
//! line not yet ended by `\n`:
//!
//! ```text
//!              bytes without '\n'           '\n'
//!   [reading] ───────────────────▶ [reading] ────▶ parse_line → result, buffer cleared
//!       │  buffer would pass MAX_LINE
//!       ▼  (Err(TooLong) once, overflowed() turns true)
//!   [discarding] ── bytes without '\n' ──▶ [discarding] ── '\n' ──▶ [reading]
//! ```
//!
//! Empty lines, `\r`, NUL bytes and garbage are ordinary lines: each gets
//! SmartOS's answer (`invalid command` for an empty line, which clients
//! wait for; `FAILURE` for an unknown word) and the stream goes on.
//!
//! Memory per session is bounded by [`MAX_LINE`]; what one
//! [`Session::feed`] returns is bounded by the bytes given to it (a flood
//! of empty lines yields one result per line, so a caller should read in
//! bounded chunks and stop reading while its replies wait to be written).
//!
//! The host loop, in outline:
//!
//! ```no_run
//! # use zonevisor_mdata::{keys, proto, session::Session};
//! # fn io(_: &[u8]) {}
//! # let vm = serde_json::json!({});
//! # let bytes_from_guest: &[u8] = b"";
//! let mut session = Session::new();
//! for result in session.feed(bytes_from_guest) {
//!     match result {
//!         Ok((framing, request)) => match keys::resolve(&vm, &framing, &request) {
//!             keys::Resolution::Reply(reply) => io(&proto::encode(&framing, &reply)),
//!             keys::Resolution::Write(write) => {
//!                 let applied: Result<(), String> = Ok(()); // apply `write` to the instance
//!                 io(&proto::encode(&framing, &keys::write_reply(applied)));
//!             }
//!         },
//!         Err(e) => {
//!             if let Some(answer) = e.reply() {
//!                 io(answer);
//!             }
//!         }
//!     }
//! }
//! ```

use crate::proto::{parse_line, Framing, LineError, Request};
use crate::MAX_LINE;

/// One guest stream's partial input.
#[derive(Debug, Default)]
pub struct Session {
    /// The current line so far, without its `\n`; never longer than
    /// [`MAX_LINE`].
    line: Vec<u8>,
    /// The current line overflowed: drop bytes up to its `\n`.
    discarding: bool,
    /// Some line overflowed on this stream.
    overflowed: bool,
}

impl Session {
    /// A stream with nothing read yet.
    pub fn new() -> Session {
        Session::default()
    }

    /// Feeds bytes read from the guest; returns the complete requests
    /// found, in order, one result per line.
    ///
    /// A line that grows past [`MAX_LINE`] yields [`LineError::TooLong`]
    /// as soon as it does, and its bytes up to the next `\n` are dropped.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<(Framing, Request), LineError>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            let (chunk, ended) = match newline {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            rest = match newline {
                Some(i) => &rest[i + 1..],
                None => &[],
            };
            if self.discarding {
                self.discarding = !ended;
                continue;
            }
            if self.line.len() + chunk.len() > MAX_LINE {
                self.line = Vec::new();
                self.overflowed = true;
                self.discarding = !ended;
                out.push(Err(LineError::TooLong));
                continue;
            }
            if !ended {
                self.line.extend_from_slice(chunk);
            } else if self.line.is_empty() {
                out.push(parse_line(chunk));
            } else {
                self.line.extend_from_slice(chunk);
                out.push(parse_line(&self.line));
                self.line.clear();
                // Keep a small buffer between lines, not the largest line's.
                if self.line.capacity() > 64 * 1024 {
                    self.line = Vec::new();
                }
            }
        }
        out
    }

    /// Whether a line on this stream was longer than [`MAX_LINE`]. A host
    /// may close a socket whose guest did this; a serial line cannot be
    /// closed and goes on after the overlong line.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes of an unfinished line held now (at most [`MAX_LINE`]).
    pub fn buffered(&self) -> usize {
        self.line.len()
    }
}

#[cfg(test)]
mod tests;
