//! The stream `vmadm send` writes and `vmadm receive` reads: one instance,
//! its configuration and its data, as length-framed sections with a digest
//! at the end.
//!
//! ```text
//! stream  = MAGIC ("ZVSEND01", 8 bytes)  frame*
//! frame   = kind:u8  length:u32 (big-endian)  payload[length]
//!
//!   'H'  header       JSON StreamHeader: the instance's object (tags and
//!                     metadata included), its snapshots, the incremental
//!                     base (if any), the number of sections. First, once.
//!   'S'  section      JSON SectionHeader: the snapshot the section's
//!                     btrfs stream makes, and its parent (incremental)
//!   'D'  data         bytes of that btrfs send stream (version 1), at
//!                     most MAX_DATA per frame, in order
//!   'F'  section end  JSON SectionEnd: the btrfs stream's length
//!   'E'  error        UTF-8: the sender failed; the stream is void
//!   'Z'  end          32 bytes: SHA-256 of every byte before this frame
//!                     (magic and frames). Last; nothing may follow.
//! ```
//!
//! Sections come in snapshot order, each a btrfs send stream of one
//! read-only snapshot of the instance's dataset, incremental from the one
//! before (the first: whole, or from the base); the last is the instance's
//! state when the send began. A receiver acts on nothing it has not
//! verified: what it stages is hidden until the digest matches, and a
//! stream that ends early, holds an `E`, or fails the digest leaves
//! nothing. [`Scanner`] follows the frames of a stream as bytes pass
//! (`vmadm send` uses it to tell an `E` or a missing `Z` from success).

use serde::{Deserialize, Serialize};

use crate::types::Snapshot;

/// The stream's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"ZVSEND01";
/// The header's `version`.
pub const VERSION: u32 = 1;
/// A frame's kind and length.
pub const FRAME_HEADER: usize = 5;
/// The largest `D` payload.
pub const MAX_DATA: usize = 1 << 20;
/// The largest `H`, `S`, `F` or `E` payload.
pub const MAX_META: usize = 16 << 20;
/// The `Z` payload's length (a SHA-256).
pub const DIGEST_LEN: usize = 32;

/// Frame kinds.
pub mod kind {
    /// The header.
    pub const HEADER: u8 = b'H';
    /// A section's start.
    pub const SECTION: u8 = b'S';
    /// A section's data.
    pub const DATA: u8 = b'D';
    /// A section's end.
    pub const SECTION_END: u8 = b'F';
    /// The sender's error.
    pub const ERROR: u8 = b'E';
    /// The end, with the digest.
    pub const END: u8 = b'Z';
}

/// The `H` frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHeader {
    /// [`VERSION`].
    pub version: u32,
    /// The instance's uuid (it keeps it on the receiving host).
    pub uuid: String,
    /// The instance's object as the sending host stores it.
    pub vm: serde_json::Map<String, serde_json::Value>,
    /// The instance's snapshots (`vmadm get`'s `snapshots`, oldest first)
    /// whose data the stream carries.
    pub snapshots: Vec<Snapshot>,
    /// For an incremental stream: the snapshot (its `vmadm` name) the
    /// receiver must already have, from an earlier stream of this sender.
    pub base: Option<String>,
    /// How many sections follow.
    pub sections: u32,
}

/// An `S` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionHeader {
    /// The snapshot of the instance's dataset the section makes (the pool's
    /// name: `vmsnap-<name>`, or the sender's temporary `vmsend-<n>` for
    /// the instance's state).
    pub snapshot: String,
    /// The snapshot it is incremental from (already received, or the
    /// base); none for a whole one.
    pub parent: Option<String>,
}

/// An `F` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionEnd {
    /// The section's btrfs stream's length in bytes.
    pub bytes: u64,
}

/// A frame's header bytes.
pub fn frame_header(kind: u8, len: usize) -> [u8; FRAME_HEADER] {
    let l = (len as u32).to_be_bytes();
    [kind, l[0], l[1], l[2], l[3]]
}

/// Follows a stream's frames as its bytes pass, without holding its data:
/// what [`Scanner::feed`] passes on is the stream less any `E` frame,
/// whose message it keeps.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Bytes of the magic still to come (8 at first).
    magic_left: Option<usize>,
    /// A frame header being read (passed on once whole, unless an `E`).
    head: Vec<u8>,
    /// The current frame: its kind and the bytes of it still to come.
    frame: Option<(u8, usize)>,
    /// An `E` frame's message so far.
    error: Vec<u8>,
    /// The whole message of an `E` frame, once it came.
    failed: Option<String>,
    ended: bool,
}

impl Scanner {
    /// A scanner at a stream's start.
    pub fn new() -> Scanner {
        Scanner { magic_left: Some(MAGIC.len()), ..Scanner::default() }
    }

    /// Whether the `Z` frame came, whole.
    pub fn complete(&self) -> bool {
        self.ended && self.frame.is_none()
    }

    /// The message of the `E` frame the stream held, if it held one.
    pub fn error(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Follows `data`, appending to `out` what is to be passed on; an
    /// error when it is no stream of this format.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !data.is_empty() {
            if let Some(left) = self.magic_left {
                let take = left.min(data.len());
                let off = MAGIC.len() - left;
                if data[..take] != MAGIC[off..off + take] {
                    return Err("not a zonevisor send stream (no ZVSEND01 at its start)".into());
                }
                out.extend_from_slice(&data[..take]);
                data = &data[take..];
                self.magic_left = (left > take).then_some(left - take);
                continue;
            }
            match self.frame {
                None => {
                    if self.ended || self.failed.is_some() {
                        return Err("bytes after the stream's end".into());
                    }
                    let take = (FRAME_HEADER - self.head.len()).min(data.len());
                    self.head.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.head.len() < FRAME_HEADER {
                        continue;
                    }
                    let head = std::mem::take(&mut self.head);
                    let kind = head[0];
                    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    let limit = if kind == self::kind::DATA { MAX_DATA } else { MAX_META };
                    if !b"HSDFEZ".contains(&kind) || len > limit {
                        return Err(format!("a frame of kind {kind:#04x} and {len} bytes"));
                    }
                    if kind != self::kind::ERROR {
                        out.extend_from_slice(&head);
                    }
                    self.ended |= kind == self::kind::END;
                    self.frame = Some((kind, len));
                }
                Some((kind, left)) => {
                    let take = left.min(data.len());
                    if kind == self::kind::ERROR {
                        self.error.extend_from_slice(&data[..take]);
                    } else {
                        out.extend_from_slice(&data[..take]);
                    }
                    data = &data[take..];
                    self.frame = Some((kind, left - take));
                }
            }
            if let Some((kind, 0)) = self.frame {
                self.frame = None;
                if kind == self::kind::ERROR {
                    self.failed = Some(String::from_utf8_lossy(&std::mem::take(&mut self.error)).into_owned());
                }
            }
        }
        // A frame of no bytes ends with its header.
        if let Some((kind, 0)) = self.frame {
            self.frame = None;
            if kind == self::kind::ERROR {
                self.failed = Some(String::new());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = frame_header(kind, payload.len()).to_vec();
        f.extend_from_slice(payload);
        f
    }

    /// The bytes the scanner passes, its error and whether it saw the end,
    /// fed `stream` in pieces of `step`.
    fn scan(stream: &[u8], step: usize) -> (Vec<u8>, Option<String>, bool) {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(step) {
            s.feed(chunk, &mut out).unwrap();
        }
        (out, s.error().map(str::to_string), s.complete())
    }

    #[test]
    fn frames_pass_and_the_end_is_seen_however_the_bytes_come() {
        let stream =
            [MAGIC.to_vec(), frame(kind::HEADER, b"{}"), frame(kind::DATA, &[7; 3000]), frame(kind::END, &[0; 32])]
                .concat();
        for step in [1, 3, 5, 7, 100, 100_000] {
            let (out, error, complete) = scan(&stream, step);
            assert_eq!(out, stream, "step {step}");
            assert!(error.is_none() && complete, "step {step}");
        }
        let (_, _, complete) = scan(&stream[..stream.len() - 1], 4);
        assert!(!complete, "a digest cut short is no end");
    }

    #[test]
    fn an_error_frame_is_withheld_and_reported() {
        let before = [MAGIC.to_vec(), frame(kind::HEADER, b"{}"), frame(kind::DATA, b"abc")].concat();
        let stream = [before.clone(), frame(kind::ERROR, b"btrfs send failed")].concat();
        for step in [1, 2, 6, 1000] {
            let (out, error, complete) = scan(&stream, step);
            assert_eq!(out, before, "step {step}");
            assert_eq!(error.as_deref(), Some("btrfs send failed"), "step {step}");
            assert!(!complete);
        }
    }

    #[test]
    fn other_bytes_are_refused() {
        let mut out = Vec::new();
        assert!(Scanner::new().feed(b"GIF89a....", &mut out).is_err());
        let big = [MAGIC.to_vec(), frame_header(kind::DATA, MAX_DATA + 1).to_vec()].concat();
        assert!(Scanner::new().feed(&big, &mut out).is_err());
        let after = [MAGIC.to_vec(), frame(kind::END, &[0; 32]), b"x".to_vec()].concat();
        assert!(Scanner::new().feed(&after, &mut out).is_err());
    }
}
