//! A DHCPv4 client (RFC 2131) for a zone NIC whose address is `dhcp`.
//!
//! The zone's monitor calls it on a thread that has entered the zone's
//! network namespace; it talks through that namespace's interface and
//! returns the [`Lease`] without configuring anything: the caller applies
//! the address, route and resolvers, renews before the lease runs out and
//! releases it when the NIC goes away.
//!
//! ```text
//!  acquire:
//!   SELECTING ── DISCOVER (broadcast, rapid commit asked) ─┬─ ACK + rapid commit ──> lease
//!      ^   resent after 1, 2, 4 ... 64 s (+ up to 0.25 s)   └─ OFFER
//!      │                                                        │
//!      │        REQUESTING ── REQUEST (broadcast: requested address, server id)
//!      │             │ resent 4 times                           │
//!      └─ NAK ───────┴──────────── no ACK ──────────────────────┴─ ACK from that server ──> lease
//!   (until the timeout: then Error::NoLease, saying what was heard)
//!
//!  renew:   REQUEST (unicast to the server, ciaddr = the leased address) ── ACK ──> lease
//!                                                                        └─ NAK ──> Error::Refused
//!  release: RELEASE (unicast to the server), no answer
//! ```
//!
//! Replies are decoded by the `packet` module, which takes nothing from the wire on
//! trust: the network is one an instance can reach.

mod packet;
mod socket;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use packet::{Kind, Outgoing, Rejected, Reply};

/// REQUESTs sent for one offer before starting over with a DISCOVER.
const REQUEST_TRIES: u32 = 4;
/// The longest wait between two sends (RFC 2131 4.1).
const MAX_BACKOFF_EXP: u32 = 6;

/// What a DHCP server leased to the NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The address with the network's prefix (option 1; the address's
    /// class when the server sent no mask).
    pub address: Ipv4Net,
    /// The default router (option 3's first).
    pub router: Option<Ipv4Addr>,
    /// The DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// The DNS domain (option 15), only when it is a DNS name.
    pub domain: Option<String>,
    /// How long the lease lasts from now; `None` is infinite.
    pub lease: Option<Duration>,
    /// The server that granted it (option 54), to renew and release with.
    pub server: Ipv4Addr,
}

/// Why no lease.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket on the interface could not be opened or used.
    #[error("DHCP on {ifname}: {what}")]
    Io {
        /// The interface.
        ifname: String,
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// No server granted a lease in time.
    #[error("DHCP on {ifname}: no lease within {:.1} s ({heard})", waited.as_secs_f64())]
    NoLease {
        /// The interface.
        ifname: String,
        /// How long the client tried.
        waited: Duration,
        /// The last thing the client heard (or "no answer").
        heard: String,
    },
    /// The server refused to renew the lease (DHCPNAK).
    #[error("DHCP on {ifname}: server {server} refused the lease{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The interface.
        ifname: String,
        /// The server.
        server: Ipv4Addr,
        /// The server's reason (option 56).
        message: Option<String>,
    },
    /// An argument the client cannot send.
    #[error("DHCP on {ifname}: {what} {value:?} {why}")]
    Invalid {
        /// The interface.
        ifname: String,
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: String,
        /// Why not.
        why: &'static str,
    },
}

/// Gets a lease for `ifname` (with MAC `mac`, asking for `hostname`):
/// DISCOVER, OFFER, REQUEST, ACK (or an ACK at once where the server does
/// rapid commit), resending with backoff, for at most `timeout`. The
/// interface must be up; it needs no address. Call it in the namespace of
/// the interface.
pub fn acquire(ifname: &str, mac: [u8; 6], hostname: Option<&str>, timeout: Duration) -> Result<Lease, Error> {
    acquire_with(ifname, mac, hostname, timeout, true)
}

/// Renews `lease` with the server that granted it: a REQUEST sent to the
/// server from the leased address (which the caller has configured on
/// `ifname`), resent with backoff for at most `timeout`. Returns the
/// renewed lease (its duration counts from now), [`Error::Refused`] when
/// the server says no (stop using the address, [`acquire`] again), or
/// [`Error::NoLease`] when it does not answer (keep the address until the
/// lease runs out, then acquire again).
pub fn renew(
    ifname: &str,
    mac: [u8; 6],
    hostname: Option<&str>,
    lease: &Lease,
    timeout: Duration,
) -> Result<Lease, Error> {
    let c = Client::new(ifname, mac, hostname)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let xid = u32::from_ne_bytes(crate::dnsmasq::random_bytes());
    let to = SocketAddrV4::new(lease.server, packet::SERVER_PORT);
    let mut heard = format!("no answer from {}", lease.server);
    let mut tries = 0;
    let mut next_send = start;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::NoLease { ifname: ifname.into(), waited: timeout, heard });
        }
        if now >= next_send {
            let msg = Outgoing {
                kind: Kind::Request,
                xid,
                secs: secs_since(start),
                broadcast: false,
                mac,
                ciaddr: lease.address.addr(),
                requested: None,
                server: None,
                hostname: c.hostname,
                rapid_commit: false,
            };
            c.send(&msg, to, &mut heard)?;
            next_send = now + backoff(tries);
            tries += 1;
        }
        let Some((reply, from)) = c.receive(&mut buf, xid, next_send.min(deadline), &mut heard)? else { continue };
        match reply.kind {
            Kind::Ack => match lease_of(&reply, *from.ip()) {
                Ok(l) => return Ok(l),
                Err(why) => heard = format!("an unusable ACK from {}: {why}", from.ip()),
            },
            Kind::Nak => {
                let server = reply.server.unwrap_or(*from.ip());
                return Err(Error::Refused { ifname: ifname.into(), server, message: reply.message });
            }
            _ => {}
        }
    }
}

/// Gives `lease` back to its server (a RELEASE sent from the leased
/// address, which must still be configured); the server does not answer.
pub fn release(ifname: &str, mac: [u8; 6], lease: &Lease) -> Result<(), Error> {
    let c = Client::new(ifname, mac, None)?;
    let msg = Outgoing {
        kind: Kind::Release,
        xid: u32::from_ne_bytes(crate::dnsmasq::random_bytes()),
        secs: 0,
        broadcast: false,
        mac,
        ciaddr: lease.address.addr(),
        requested: None,
        server: Some(lease.server),
        hostname: None,
        rapid_commit: false,
    };
    let to = SocketAddrV4::new(lease.server, packet::SERVER_PORT);
    c.sock.send_to(&packet::encode(&msg), to).map_err(|source| c.io("sending DHCPRELEASE", source))?;
    Ok(())
}

/// Where an acquisition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Selecting,
    Requesting { offered: Ipv4Addr, server: Ipv4Addr },
}

fn acquire_with(
    ifname: &str,
    mac: [u8; 6],
    hostname: Option<&str>,
    timeout: Duration,
    rapid_commit: bool,
) -> Result<Lease, Error> {
    let c = Client::new(ifname, mac, hostname)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, packet::SERVER_PORT);
    let mut xid = u32::from_ne_bytes(crate::dnsmasq::random_bytes());
    let mut stage = Stage::Selecting;
    let mut heard = "no answer".to_owned();
    let mut tries = 0;
    let mut next_send = start;
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::NoLease { ifname: ifname.into(), waited: timeout, heard });
        }
        if now >= next_send {
            if matches!(stage, Stage::Requesting { .. }) && tries >= REQUEST_TRIES {
                heard = format!("{heard}; no ACK after {REQUEST_TRIES} requests");
                (stage, tries, xid) = (Stage::Selecting, 0, u32::from_ne_bytes(crate::dnsmasq::random_bytes()));
            }
            let (kind, requested, server) = match stage {
                Stage::Selecting => (Kind::Discover, None, None),
                Stage::Requesting { offered, server } => (Kind::Request, Some(offered), Some(server)),
            };
            let msg = Outgoing {
                kind,
                xid,
                secs: secs_since(start),
                broadcast: true,
                mac,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                requested,
                server,
                hostname: c.hostname,
                rapid_commit,
            };
            c.send(&msg, broadcast, &mut heard)?;
            next_send = now + backoff(tries);
            tries += 1;
        }
        let Some((reply, from)) = c.receive(&mut buf, xid, next_send.min(deadline), &mut heard)? else { continue };
        let sender = reply.server.unwrap_or(*from.ip());
        match (stage, reply.kind) {
            (Stage::Selecting, Kind::Offer) => {
                heard = format!("an offer of {} from {sender}", reply.yiaddr);
                stage = Stage::Requesting { offered: reply.yiaddr, server: sender };
                (tries, next_send) = (0, Instant::now());
            }
            (Stage::Selecting, Kind::Ack) if reply.rapid_commit => match lease_of(&reply, *from.ip()) {
                Ok(l) => return Ok(l),
                Err(why) => heard = format!("an unusable ACK from {sender}: {why}"),
            },
            (Stage::Requesting { server, .. }, Kind::Ack) if sender == server => match lease_of(&reply, *from.ip()) {
                Ok(l) => return Ok(l),
                Err(why) => heard = format!("an unusable ACK from {sender}: {why}"),
            },
            (Stage::Requesting { server, .. }, Kind::Nak) if sender == server => {
                let why = reply.message.map(|m| format!(": {m}")).unwrap_or_default();
                heard = format!("server {sender} refused (NAK{why})");
                // Start over, after a pause so that a server that keeps
                // refusing is not flooded.
                stage = Stage::Selecting;
                xid = u32::from_ne_bytes(crate::dnsmasq::random_bytes());
                (tries, next_send) = (0, Instant::now() + Duration::from_secs(1));
            }
            _ => {}
        }
    }
}

/// One exchange's socket and what it sends.
struct Client<'a> {
    ifname: &'a str,
    mac: [u8; 6],
    hostname: Option<&'a str>,
    sock: UdpSocket,
}

impl<'a> Client<'a> {
    fn new(ifname: &'a str, mac: [u8; 6], hostname: Option<&'a str>) -> Result<Client<'a>, Error> {
        let invalid = |what, value: String, why| Error::Invalid { ifname: ifname.into(), what, value, why };
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(invalid("MAC address", crate::dnsmasq::format_mac(&mac), "is not a unicast address"));
        }
        if let Some(h) = hostname.filter(|h| !crate::dnsmasq::is_dns_name(h)) {
            return Err(invalid("host name", h.into(), "is not a DNS name"));
        }
        let sock = socket::open(ifname).map_err(|source| Error::Io {
            ifname: ifname.into(),
            what: "opening UDP port 68 on it",
            source,
        })?;
        Ok(Client { ifname, mac, hostname, sock })
    }

    fn io(&self, what: &'static str, source: io::Error) -> Error {
        Error::Io { ifname: self.ifname.into(), what, source }
    }

    /// Sends `msg`; a network that is down or busy is noted in `heard`
    /// (the next try may get through), other errors end the exchange.
    fn send(&self, msg: &Outgoing, to: SocketAddrV4, heard: &mut String) -> Result<(), Error> {
        match self.sock.send_to(&packet::encode(msg), to) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETDOWN | libc::ENETUNREACH | libc::ENOBUFS | libc::EAGAIN)
                ) =>
            {
                *heard = format!("sending to {to}: {e}");
                Ok(())
            }
            Err(e) => Err(self.io("sending", e)),
        }
    }

    /// The next reply to exchange `xid` before `until`; malformed replies
    /// are skipped and noted in `heard`.
    fn receive(
        &self,
        buf: &mut [u8],
        xid: u32,
        until: Instant,
        heard: &mut String,
    ) -> Result<Option<(Reply, SocketAddrV4)>, Error> {
        loop {
            let got = socket::receive(&self.sock, buf, until).map_err(|e| self.io("receiving", e))?;
            let Some((n, from)) = got else { return Ok(None) };
            match packet::decode(&buf[..n], xid, &self.mac) {
                Ok(reply) => return Ok(Some((reply, from))),
                Err(Rejected::NotOurs) => {}
                Err(Rejected::Malformed(why)) => *heard = format!("a malformed reply from {}: {why}", from.ip()),
            }
        }
    }
}

/// The lease an ACK grants; `from` is its sender.
fn lease_of(r: &Reply, from: Ipv4Addr) -> Result<Lease, &'static str> {
    let secs = r.lease_secs.ok_or("no lease time (51)")?;
    let first = r.yiaddr.octets()[0];
    let prefix = r.prefix.unwrap_or(match first {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    });
    let address = Ipv4Net::new(r.yiaddr, prefix).map_err(|_| "bad prefix")?;
    if prefix < 31 && (r.yiaddr == address.network() || r.yiaddr == address.broadcast()) {
        return Err("the address is its network's first or last");
    }
    let unicast = |a: &&Ipv4Addr| !(a.is_unspecified() || a.is_broadcast() || a.is_multicast());
    Ok(Lease {
        address,
        router: r.routers.iter().find(unicast).copied(),
        dns: r.dns.iter().filter(unicast).copied().collect(),
        domain: r.domain.clone(),
        lease: (secs != u32::MAX).then(|| Duration::from_secs(secs.into())),
        server: r.server.unwrap_or(from),
    })
}

/// The wait after the `tries`-th send: 1, 2, 4 ... 64 s, plus up to 0.25 s.
fn backoff(tries: u32) -> Duration {
    let jitter = u16::from_ne_bytes(crate::dnsmasq::random_bytes()) % 250;
    Duration::from_secs(1 << tries.min(MAX_BACKOFF_EXP)) + Duration::from_millis(jitter.into())
}

fn secs_since(start: Instant) -> u16 {
    start.elapsed().as_secs().min(u16::MAX.into()) as u16
}
