//! Just enough of a DNS client (RFC 1035, over UDP) to ask a network's
//! dnsmasq whether it answers, and what it answers for a name.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// A record type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QType {
    /// IPv4 addresses.
    A = 1,
    /// IPv6 addresses.
    #[cfg_attr(not(test), allow(dead_code))]
    Aaaa = 28,
}

/// What a server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The response code (0: no error, 3: no such name, 5: refused).
    pub(crate) rcode: u8,
    /// The A and AAAA records of the answer section.
    pub(crate) addrs: Vec<IpAddr>,
}

/// Asks `server` for `name`'s records of type `qtype`, resending every
/// half second, for at most `timeout`.
pub(crate) fn query(server: SocketAddr, name: &str, qtype: QType, timeout: Duration) -> io::Result<Answer> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    let id = u16::from_ne_bytes(random_bytes());
    let msg = encode_query(id, name, qtype)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no DNS answer from {server}")));
        }
        sock.send(&msg)?;
        let resend = (now + Duration::from_millis(500)).min(deadline);
        while let Some(left) = resend.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            sock.set_read_timeout(Some(left))?;
            match sock.recv(&mut buf) {
                Ok(n) => {
                    if let Ok(a) = decode_answer(id, &buf[..n]) {
                        return Ok(a);
                    }
                }
                // Nothing yet, or an ICMP "port unreachable" for an earlier try.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// `N` bytes from the kernel's random source (for query ids and DHCP
/// transaction ids); the clock's nanoseconds if that fails.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // SAFETY: getrandom writes at most N bytes into the buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), N, 0) };
    if n != N as isize {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let seed = (t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed[i % 8].wrapping_add(i as u8);
        }
    }
    b
}

/// A query with recursion desired for one question.
fn encode_query(id: u16, name: &str, qtype: QType) -> io::Result<Vec<u8>> {
    let mut m = Vec::with_capacity(12 + name.len() + 6);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a DNS name")));
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&(qtype as u16).to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    Ok(m)
}

/// The response to query `id` in `m`: its code and its addresses.
fn decode_answer(id: u16, m: &[u8]) -> Result<Answer, &'static str> {
    let u16_at = |i: usize| m.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or("truncated");
    if u16_at(0)? != id {
        return Err("another query's answer");
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return Err("not a response");
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(m, at)? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..an {
        at = skip_name(m, at)?;
        let (rtype, len) = (u16_at(at)?, u16_at(at + 8)? as usize);
        let data = m.get(at + 10..at + 10 + len).ok_or("truncated")?;
        match (rtype, len) {
            (1, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(data).map_err(|_| "bad A")?)),
            (28, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(data).map_err(|_| "bad AAAA")?)),
            _ => {}
        }
        at += 10 + len;
    }
    Ok(Answer { rcode: (flags & 0xf) as u8, addrs })
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(m: &[u8], mut at: usize) -> Result<usize, &'static str> {
    loop {
        let len = *m.get(at).ok_or("truncated")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return m.get(at + 1).map(|_| at + 2).ok_or("truncated"),
            l if l & 0xc0 != 0 => return Err("bad label"),
            l => at += 1 + l as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_query() {
        let q = encode_query(0x1234, "web.zv", QType::A).unwrap();
        assert_eq!(q, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x02zv\x00\x00\x01\x00\x01");
        assert_eq!(encode_query(1, "web.", QType::Aaaa).unwrap()[12..], *b"\x03web\x00\x00\x1c\x00\x01");
        assert!(encode_query(1, "a..b", QType::A).is_err());
    }

    #[test]
    fn decodes_answers_with_compressed_names() {
        let mut r = b"\x12\x34\x85\x80\x00\x01\x00\x02\x00\x00\x00\x00\x03web\x02zv\x00\x00\x01\x00\x01".to_vec();
        r.extend_from_slice(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x0a\x2b\x11\x05");
        r.extend_from_slice(b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x00\x00\x10");
        r.extend_from_slice(&"fd00::5".parse::<Ipv6Addr>().unwrap().octets());
        let a = decode_answer(0x1234, &r).unwrap();
        assert_eq!(a, Answer { rcode: 0, addrs: vec!["10.43.17.5".parse().unwrap(), "fd00::5".parse().unwrap()] });
        assert_eq!(decode_answer(0x1235, &r), Err("another query's answer"));
        for n in 0..r.len() {
            assert!(decode_answer(0x1234, &r[..n]).is_err(), "truncated at {n}");
        }
        let nx = b"\x12\x34\x85\x83\x00\x01\x00\x00\x00\x00\x00\x00\x03web\x00\x00\x01\x00\x01";
        assert_eq!(decode_answer(0x1234, nx).unwrap(), Answer { rcode: 3, addrs: vec![] });
        assert_eq!(decode_answer(0x1234, b"\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"), Err("not a response"));
    }
}
