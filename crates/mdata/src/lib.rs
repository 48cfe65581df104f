//! SmartOS's metadata protocol ("mdata"): how a guest reads its metadata
//! from the host and writes its own.
//!
//! Each instance reaches the host on one stream: zones through a Unix
//! socket at `/.zonecontrol/metadata.sock` (and
//! `/native/.zonecontrol/metadata.sock`), VMs through their second serial
//! port (`/dev/ttyS1`). Requests and replies are lines, V1 bare or V2
//! framed with a length and a CRC ([`proto`]).
//!
//! ```text
//!  guest                                   host (the instance's monitor)
//!  mdata-get / cloud-init ── line ──▶  session::Session::feed   (bytes → requests)
//!        ▲                                   │
//!        │                             keys::resolve(vm, ..)   (request → reply, or a
//!        │                                   │                   write for the daemon)
//!        └──────────── line ◀────────  proto::encode          (reply → bytes)
//! ```
//!
//! - [`proto`]: frames both ways, the CRC, SmartOS's way of splitting a line
//! - [`keys`]: which key answers from where (`sdc:*` from the VM object,
//!   `*_pw` and namespaced keys from `internal_metadata`, the rest from
//!   `customer_metadata`), and which writes a guest may make
//! - [`session`]: one connection's input buffer, pure and non-blocking, so
//!   the monitor's poll loop drives it
//! - [`client`]: the guest side (blocking), used by the `mdata` tool
//!   (`mdata-get`, `mdata-put`, `mdata-list`, `mdata-delete`)
//!
//! The host side answers byte for byte as SmartOS's metadata agent does;
//! the places where it is stricter (payload encoding, sizes) are named in
//! [`proto`] and [`keys`].

mod js;

pub mod client;
pub mod keys;
pub mod proto;
pub mod session;

/// The longest request line a host accepts, in bytes without its `\n`:
/// 1 MiB.
///
/// A `PUT` is encoded twice (`b64(b64(key) b64(value))`), so a value grows
/// by 16/9 on the wire; 1 MiB holds a `PUT` of a [`MAX_KEY`] key and a
/// [`MAX_VALUE`] value with room to spare (about 930 KiB), so values a
/// little over the limit still get a `FAILURE` that names it rather than
/// silence. It also bounds what one guest connection can make the host
/// buffer.
pub const MAX_LINE: usize = 1024 * 1024;

/// The longest key a guest may `PUT`, in bytes: 1 KiB. SmartOS sets no
/// limit; no well-known key comes near it.
pub const MAX_KEY: usize = 1024;

/// The longest value a guest may `PUT`, in bytes: 512 KiB. SmartOS sets no
/// limit of its own; values a guest writes back (host keys, passwords,
/// small state) are far smaller, and every value is kept in the instance's
/// stored object, so one guest must not be able to grow it without bound.
pub const MAX_VALUE: usize = 512 * 1024;

/// The length of `n` bytes in base64.
const fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

// The largest PUT a guest may make fits in a line: "V2 <len> <crc> " plus a
// body of "<reqid> PUT " and the twice-encoded key and value.
const _: () = assert!(
    "V2 1048576 00000000 ".len() + "00000000 PUT ".len() + b64_len(b64_len(MAX_KEY) + 1 + b64_len(MAX_VALUE))
        <= MAX_LINE
);
