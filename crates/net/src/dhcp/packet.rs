//! DHCPv4 messages (RFC 2131, options from RFC 2132, RFC 3396 and RFC
//! 4039): what the client sends, encoded, and what servers answer,
//! decoded and checked. Pure. Replies come from a network an instance can
//! reach, so decoding reads nothing outside the packet, refuses what does
//! not add up, and never panics.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The server's UDP port.
pub(super) const SERVER_PORT: u16 = 67;
/// The client's UDP port.
pub(super) const CLIENT_PORT: u16 = 68;

const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The fixed BOOTP header: op .. file.
const HEADER: usize = 236;
/// The shortest BOOTP message; some servers and relays drop shorter ones.
const MIN_LEN: usize = 300;
/// The largest reply we accept (option 57).
pub(super) const MAX_REPLY: u16 = 1500;
/// Options asked for (55): subnet mask, router, DNS, domain, lease time,
/// server id, T1, T2.
const PARAMETERS: [u8; 8] = [1, 3, 6, 15, 51, 54, 58, 59];

mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN: u8 = 15;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETERS: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    pub const RAPID_COMMIT: u8 = 80;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Ack = 5,
    Nak = 6,
    Release = 7,
}

/// A message the client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Outgoing<'a> {
    pub(super) kind: Kind,
    pub(super) xid: u32,
    /// Seconds since the client began.
    pub(super) secs: u16,
    /// Ask for broadcast replies (while the client has no address).
    pub(super) broadcast: bool,
    pub(super) mac: [u8; 6],
    /// The client's address, when it has one (renewing, releasing).
    pub(super) ciaddr: Ipv4Addr,
    /// Option 50, when selecting an offer.
    pub(super) requested: Option<Ipv4Addr>,
    /// Option 54, when selecting an offer or releasing.
    pub(super) server: Option<Ipv4Addr>,
    /// Option 12.
    pub(super) hostname: Option<&'a str>,
    /// Option 80 in a DISCOVER: a server may answer with an ACK at once.
    pub(super) rapid_commit: bool,
}

/// A server's reply to us, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) kind: Kind,
    /// The address offered or acknowledged (OFFER, ACK).
    pub(super) yiaddr: Ipv4Addr,
    /// Option 54.
    pub(super) server: Option<Ipv4Addr>,
    /// Option 1, as a prefix length.
    pub(super) prefix: Option<u8>,
    /// Option 3.
    pub(super) routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub(super) dns: Vec<Ipv4Addr>,
    /// Option 15, kept only when it is a DNS name.
    pub(super) domain: Option<String>,
    /// Option 51, seconds (`u32::MAX`: infinite).
    pub(super) lease_secs: Option<u32>,
    /// Option 80: this ACK answers a DISCOVER.
    pub(super) rapid_commit: bool,
    /// Option 56 (a NAK's reason), printable ASCII only.
    pub(super) message: Option<String>,
}

/// Why a packet was not taken as a reply to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rejected {
    /// A reply to another client or another exchange.
    NotOurs,
    /// Broken or not a DHCP reply: why.
    Malformed(&'static str),
}

/// `m` as bytes on the wire: the BOOTP header, the magic cookie, the
/// options, padded to 300 bytes.
pub(super) fn encode(m: &Outgoing) -> Vec<u8> {
    let mut b = Vec::with_capacity(MIN_LEN + 64);
    b.extend_from_slice(&[1, 1, 6, 0]);
    b.extend_from_slice(&m.xid.to_be_bytes());
    b.extend_from_slice(&m.secs.to_be_bytes());
    b.extend_from_slice(&(if m.broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
    b.extend_from_slice(&m.ciaddr.octets());
    b.extend_from_slice(&[0; 12]); // yiaddr, siaddr, giaddr
    b.extend_from_slice(&m.mac);
    b.extend_from_slice(&[0; 10 + 64 + 128]); // chaddr padding, sname, file
    b.extend_from_slice(&COOKIE);
    let mut option = |code: u8, data: &[u8]| {
        b.push(code);
        b.push(data.len() as u8);
        b.extend_from_slice(data);
    };
    option(opt::MESSAGE_TYPE, &[m.kind as u8]);
    let mut client_id = [1u8; 7];
    client_id[1..].copy_from_slice(&m.mac);
    option(opt::CLIENT_ID, &client_id);
    if let Some(ip) = m.requested {
        option(opt::REQUESTED_IP, &ip.octets());
    }
    if let Some(ip) = m.server {
        option(opt::SERVER_ID, &ip.octets());
    }
    if m.kind != Kind::Release {
        if let Some(h) = m.hostname.filter(|h| !h.is_empty() && h.len() <= 255) {
            option(opt::HOSTNAME, h.as_bytes());
        }
        option(opt::MAX_SIZE, &MAX_REPLY.to_be_bytes());
        option(opt::PARAMETERS, &PARAMETERS);
    }
    if m.rapid_commit && m.kind == Kind::Discover {
        option(opt::RAPID_COMMIT, &[]);
    }
    b.push(opt::END);
    if b.len() < MIN_LEN {
        b.resize(MIN_LEN, opt::PAD);
    }
    b
}

/// The reply in `b`, if it is a well-formed OFFER, ACK or NAK for our
/// exchange `xid` and our `mac`.
pub(super) fn decode(b: &[u8], xid: u32, mac: &[u8; 6]) -> Result<Reply, Rejected> {
    use Rejected::Malformed;
    if b.len() < HEADER + COOKIE.len() {
        return Err(Malformed("shorter than a BOOTP header"));
    }
    if b[0] != 2 {
        return Err(Malformed("not a BOOTREPLY"));
    }
    if b[1] != 1 || b[2] != 6 {
        return Err(Malformed("not for an Ethernet address"));
    }
    if b[4..8] != xid.to_be_bytes() || b[28..34] != mac[..] {
        return Err(Rejected::NotOurs);
    }
    if b[HEADER..HEADER + 4] != COOKIE {
        return Err(Malformed("no DHCP magic cookie"));
    }
    let yiaddr = ipv4(&b[16..20]);
    let mut opts = BTreeMap::new();
    parse_options(&b[HEADER + 4..], &mut opts)?;
    // RFC 2131 4.1: with option 52, the file and then the sname field
    // carry more options.
    let overload = match opts.get(&opt::OVERLOAD).map(Vec::as_slice) {
        None => 0,
        Some([v @ 1..=3]) => *v,
        Some(_) => return Err(Malformed("bad option overload (52)")),
    };
    if overload & 1 != 0 {
        parse_options(&b[108..236], &mut opts)?;
    }
    if overload & 2 != 0 {
        parse_options(&b[44..108], &mut opts)?;
    }
    let kind = match opts.get(&opt::MESSAGE_TYPE).map(Vec::as_slice) {
        Some([2]) => Kind::Offer,
        Some([5]) => Kind::Ack,
        Some([6]) => Kind::Nak,
        Some([_]) => return Err(Malformed("not an OFFER, ACK or NAK")),
        _ => return Err(Malformed("no message type (53)")),
    };
    let one = |code: u8, what: &'static str| -> Result<Option<Ipv4Addr>, Rejected> {
        match opts.get(&code) {
            None => Ok(None),
            Some(v) if v.len() == 4 => Ok(Some(ipv4(v))),
            Some(_) => Err(Malformed(what)),
        }
    };
    let list = |code: u8, what: &'static str| -> Result<Vec<Ipv4Addr>, Rejected> {
        match opts.get(&code) {
            None => Ok(vec![]),
            Some(v) if !v.is_empty() && v.len() % 4 == 0 => Ok(v.chunks(4).map(ipv4).collect()),
            Some(_) => Err(Malformed(what)),
        }
    };
    let server = one(opt::SERVER_ID, "bad server identifier (54)")?;
    let prefix = match one(opt::SUBNET_MASK, "bad subnet mask (1)")? {
        None => None,
        Some(m) => {
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(Malformed("subnet mask (1) is not contiguous"));
            }
            Some(bits.leading_ones() as u8)
        }
    };
    let routers = list(opt::ROUTER, "bad router list (3)")?;
    let dns = list(opt::DNS, "bad DNS server list (6)")?;
    let lease_secs = match opts.get(&opt::LEASE_TIME) {
        None => None,
        Some(v) if v.len() == 4 => Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
        Some(_) => return Err(Malformed("bad lease time (51)")),
    };
    let domain = opts
        .get(&opt::DOMAIN)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|d| d.trim_end_matches('\0').trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| crate::dnsmasq::is_dns_name(d));
    let message = opts.get(&opt::MESSAGE).map(|v| {
        v.iter().take(255).map(|&c| if (0x20..0x7f).contains(&c) { c as char } else { '?' }).collect::<String>()
    });
    if kind != Kind::Nak
        && (yiaddr.is_unspecified() || yiaddr.is_broadcast() || yiaddr.is_multicast() || yiaddr.is_loopback())
    {
        return Err(Malformed("offers no usable address"));
    }
    Ok(Reply {
        kind,
        yiaddr,
        server,
        prefix,
        routers,
        dns,
        domain,
        lease_secs,
        rapid_commit: opts.contains_key(&opt::RAPID_COMMIT),
        message,
    })
}

/// Adds the options in `area` to `opts`; an option given more than once
/// is one option whose value is the concatenation (RFC 3396).
fn parse_options(area: &[u8], opts: &mut BTreeMap<u8, Vec<u8>>) -> Result<(), Rejected> {
    let mut i = 0;
    while let Some(&code) = area.get(i) {
        match code {
            opt::PAD => i += 1,
            opt::END => return Ok(()),
            _ => {
                let len = *area.get(i + 1).ok_or(Rejected::Malformed("option cut short"))? as usize;
                let data = area.get(i + 2..i + 2 + len).ok_or(Rejected::Malformed("option runs past the packet"))?;
                opts.entry(code).or_default().extend_from_slice(data);
                i += 2 + len;
            }
        }
    }
    // No END: some servers stop at the end of the packet.
    Ok(())
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0x77, 0, 0x05];
    const XID: u32 = 0x1234_5678;

    fn discover() -> Outgoing<'static> {
        Outgoing {
            kind: Kind::Discover,
            xid: XID,
            secs: 3,
            broadcast: true,
            mac: MAC,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server: None,
            hostname: Some("web"),
            rapid_commit: true,
        }
    }

    /// A BOOTREPLY header for `XID` and `MAC` offering 10.77.0.5, then the
    /// cookie and `options`, padded to 300 bytes.
    pub(in crate::dhcp) fn reply(options: &[u8]) -> Vec<u8> {
        let mut b = vec![2, 1, 6, 0];
        b.extend_from_slice(&XID.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x80, 0]);
        b.extend_from_slice(&[0, 0, 0, 0, 10, 77, 0, 5, 10, 77, 0, 1, 0, 0, 0, 0]);
        b.extend_from_slice(&MAC);
        b.resize(HEADER, 0);
        b.extend_from_slice(&COOKIE);
        b.extend_from_slice(options);
        b.resize(b.len().max(MIN_LEN), 0);
        b
    }

    /// The options of a rapid-commit ACK as dnsmasq 2.90 sent it
    /// (captured), with the domain option added.
    pub(in crate::dhcp) const DNSMASQ_ACK: &[u8] = b"\x35\x01\x05\x36\x04\x0a\x4d\x00\x01\x33\x04\xff\xff\xff\xff\
\x50\x00\x01\x04\xff\xff\xff\x00\x1c\x04\x0a\x4d\x00\xff\x03\x04\x0a\x4d\x00\x01\x06\x04\x0a\x4d\x00\x01\
\x0f\x07zv.test\x0c\x03web\xff";

    #[test]
    fn encodes_a_discover() {
        let b = encode(&discover());
        let mut want = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 3, 0x80, 0];
        want.extend_from_slice(&[0; 16]);
        want.extend_from_slice(&MAC);
        want.extend_from_slice(&[0; 202]);
        want.extend_from_slice(&[99, 130, 83, 99]);
        want.extend_from_slice(&[53, 1, 1]);
        want.extend_from_slice(&[61, 7, 1, 0x02, 0, 0, 0x77, 0, 0x05]);
        want.extend_from_slice(&[12, 3, b'w', b'e', b'b']);
        want.extend_from_slice(&[57, 2, 0x05, 0xdc]);
        want.extend_from_slice(&[55, 8, 1, 3, 6, 15, 51, 54, 58, 59]);
        want.extend_from_slice(&[80, 0, 255]);
        want.resize(300, 0);
        assert_eq!(b, want);
    }

    #[test]
    fn encodes_requests_and_releases() {
        let select = Outgoing {
            kind: Kind::Request,
            requested: Some(Ipv4Addr::new(10, 77, 0, 5)),
            server: Some(Ipv4Addr::new(10, 77, 0, 1)),
            rapid_commit: true,
            ..discover()
        };
        let b = encode(&select);
        assert_eq!(b.len(), 300);
        assert_eq!(
            &b[240..270],
            &[
                53, 1, 3, 61, 7, 1, 2, 0, 0, 0x77, 0, 5, 50, 4, 10, 77, 0, 5, 54, 4, 10, 77, 0, 1, 12, 3, b'w', b'e',
                b'b', 57
            ],
            "no rapid commit outside a DISCOVER"
        );
        assert!(!b[240..].windows(2).any(|w| w == [80, 0]));
        let renew = Outgoing {
            kind: Kind::Request,
            broadcast: false,
            ciaddr: Ipv4Addr::new(10, 77, 0, 5),
            hostname: None,
            rapid_commit: false,
            ..discover()
        };
        let b = encode(&renew);
        assert_eq!(&b[10..16], &[0, 0, 10, 77, 0, 5], "no broadcast flag, ciaddr set");
        assert_eq!(&b[240..252], &[53, 1, 3, 61, 7, 1, 2, 0, 0, 0x77, 0, 5]);
        assert_eq!(b[252], 57, "neither requested address nor server id while renewing");
        let release = Outgoing { kind: Kind::Release, server: Some(Ipv4Addr::new(10, 77, 0, 1)), ..renew };
        let b = encode(&release);
        assert_eq!(&b[240..259], &[53, 1, 7, 61, 7, 1, 2, 0, 0, 0x77, 0, 5, 54, 4, 10, 77, 0, 1, 255]);
    }

    #[test]
    fn decodes_dnsmasqs_rapid_ack() {
        let r = decode(&reply(DNSMASQ_ACK), XID, &MAC).unwrap();
        assert_eq!(
            r,
            Reply {
                kind: Kind::Ack,
                yiaddr: Ipv4Addr::new(10, 77, 0, 5),
                server: Some(Ipv4Addr::new(10, 77, 0, 1)),
                prefix: Some(24),
                routers: vec![Ipv4Addr::new(10, 77, 0, 1)],
                dns: vec![Ipv4Addr::new(10, 77, 0, 1)],
                domain: Some("zv.test".into()),
                lease_secs: Some(u32::MAX),
                rapid_commit: true,
                message: None,
            }
        );
    }

    #[test]
    fn decodes_naks_overloads_and_split_options() {
        let nak = decode(&reply(b"\x35\x01\x06\x36\x04\x0a\x4d\x00\x01\x38\x05wrong\x38\x02\x01!\xff"), XID, &MAC);
        let nak = nak.unwrap();
        assert_eq!((nak.kind, nak.message.as_deref()), (Kind::Nak, Some("wrong?!")), "split option 56 joined");
        // Options continued in the file field (overload 1).
        let mut b = reply(b"\x35\x01\x02\x34\x01\x01\xff");
        b[108..115].copy_from_slice(b"\x03\x04\x0a\x4d\x00\x01\xff");
        let offer = decode(&b, XID, &MAC).unwrap();
        assert_eq!((offer.kind, offer.routers.as_slice()), (Kind::Offer, &[Ipv4Addr::new(10, 77, 0, 1)][..]));
        // A domain that is no DNS name is dropped, not passed on.
        let r = decode(&reply(b"\x35\x01\x05\x0f\x0aevil\nhost\0\xff"), XID, &MAC).unwrap();
        assert_eq!(r.domain, None);
        let r = decode(&reply(b"\x35\x01\x05\x0f\x08Zv.Test.\xff"), XID, &MAC).unwrap();
        assert_eq!(r.domain.as_deref(), Some("zv.test"));
    }

    #[test]
    fn rejects_others_and_malformed_replies() {
        let good = reply(DNSMASQ_ACK);
        assert_eq!(decode(&good, XID + 1, &MAC), Err(Rejected::NotOurs));
        assert_eq!(decode(&good, XID, &[2, 0, 0, 0x77, 0, 6]), Err(Rejected::NotOurs));
        let mutate = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            decode(&b, XID, &MAC)
        };
        assert!(matches!(mutate(0, 1), Err(Rejected::Malformed(_))), "a BOOTREQUEST");
        assert!(matches!(mutate(2, 16), Err(Rejected::Malformed(_))));
        assert!(matches!(mutate(236, 0), Err(Rejected::Malformed(_))), "cookie");
        assert!(matches!(mutate(242, 3), Err(Rejected::Malformed(_))), "a REQUEST");
        let bad = [
            &b"\x01\x04\xff\x00\xff\x00\x35\x01\x05\xff"[..], // non-contiguous mask
            b"\x03\x05\x0a\x4d\x00\x01\x00\x35\x01\x05\xff",  // router list of 5 bytes
            b"\x06\x00\x35\x01\x05\xff",                      // empty DNS list
            b"\x33\x02\x00\x01\x35\x01\x05\xff",              // 2-byte lease time
            b"\x35\x02\x05\x05\xff",                          // 2-byte message type
            b"\x36\x04\x0a\x4d\xff",                          // no message type (the id eats the END)
            b"\x34\x01\x07\x35\x01\x05\xff",                  // bad overload
            b"\xff",                                          // no message type
        ];
        for opts in bad {
            assert!(matches!(decode(&reply(opts), XID, &MAC), Err(Rejected::Malformed(_))), "{opts:?}");
        }
        let mut zero = reply(DNSMASQ_ACK);
        zero[16..20].copy_from_slice(&[0, 0, 0, 0]);
        assert!(decode(&zero, XID, &MAC).is_err(), "ACK of 0.0.0.0");
        // An option running past the end of the packet.
        let mut cut = reply(b"");
        cut.truncate(240);
        cut.extend_from_slice(b"\x35\x01\x05\x0c\x20abc");
        assert_eq!(decode(&cut, XID, &MAC), Err(Rejected::Malformed("option runs past the packet")));
    }

    #[test]
    fn truncated_and_garbled_replies_never_panic() {
        let good = reply(DNSMASQ_ACK);
        for n in 0..good.len() {
            let r = decode(&good[..n], XID, &MAC);
            // Cut before the message type, or inside the server id.
            if n < 243 || (244..249).contains(&n) {
                assert!(r.is_err(), "{n} bytes accepted");
            }
        }
        let mut bcast = good.clone();
        bcast[16..20].copy_from_slice(&[255; 4]);
        assert!(decode(&bcast, XID, &MAC).is_err(), "ACK of 255.255.255.255");
        // Deterministic garbling of every byte after the header.
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = 236 + (x as usize) % (b.len() - 236);
                b[i] = (x >> 24) as u8;
            }
            let _ = decode(&b, XID, &MAC);
        }
    }
}
