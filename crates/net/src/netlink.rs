//! Links, addresses, routes and bridge VLANs over rtnetlink, synchronously.
//!
//! [`Netlink`] is one `NETLINK_ROUTE` socket, bound to the network namespace
//! it was opened in: [`Netlink::open`] uses the calling thread's namespace,
//! [`Netlink::open_in`] another one (a short-lived thread enters it, opens
//! the socket and leaves; the socket stays in that namespace for good). Every
//! call is one request and its answer, blocking, so the per-instance monitor
//! (single-threaded, forks) and the daemon (from `spawn_blocking`) use it the
//! same way, with no runtime.
//!
//! | what            | calls                                                          |
//! |-----------------|----------------------------------------------------------------|
//! | links           | [`link`], [`links`], [`add_bridge`], [`add_veth`], [`add_ifb`], [`set_master`], [`set_up`], [`set_mtu`], [`set_mac`], [`delete_link`] |
//! | addresses       | [`add_address`], [`addresses`], [`del_address`]                |
//! | routes (main)   | [`add_route`], [`del_route`], [`routes`], [`default_route_link`] |
//! | bridge VLANs    | [`bridge_vlan_add`], [`bridge_vlan_del`], [`bridge_vlans`]     |
//!
//! Adding what already exists (an address, a route) and removing what is
//! already gone (a link, an address, a route, a VLAN) succeed, so a caller
//! can drive the kernel toward a desired state by running the same steps
//! again. Creating a link whose name is taken fails: the caller looks first.
//!
//! Errors are [`io::Error`]s whose kind follows the kernel's errno and whose
//! inner error is a [`NetlinkError`] naming the operation and the links
//! involved, e.g. "adding zv12ab to bridge zvbr0: File exists";
//! [`errno`] gets the errno back.
//!
//! [`link`]: Netlink::link
//! [`links`]: Netlink::links
//! [`add_bridge`]: Netlink::add_bridge
//! [`add_veth`]: Netlink::add_veth
//! [`add_ifb`]: Netlink::add_ifb
//! [`set_master`]: Netlink::set_master
//! [`set_up`]: Netlink::set_up
//! [`set_mtu`]: Netlink::set_mtu
//! [`set_mac`]: Netlink::set_mac
//! [`delete_link`]: Netlink::delete_link
//! [`add_address`]: Netlink::add_address
//! [`addresses`]: Netlink::addresses
//! [`del_address`]: Netlink::del_address
//! [`add_route`]: Netlink::add_route
//! [`del_route`]: Netlink::del_route
//! [`routes`]: Netlink::routes
//! [`default_route_link`]: Netlink::default_route_link
//! [`bridge_vlan_add`]: Netlink::bridge_vlan_add
//! [`bridge_vlan_del`]: Netlink::bridge_vlan_del
//! [`bridge_vlans`]: Netlink::bridge_vlans

mod addr;
mod link;
mod qdisc;
mod route;
#[cfg(test)]
pub(crate) mod testns;
#[cfg(test)]
mod tests;
mod vlan;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub use link::{LinkInfo, MAX_NAME_LEN};
pub(crate) use qdisc::QdiscParent;
pub use route::Route;
pub use vlan::BridgeVlan;

/// One rtnetlink socket in one network namespace. Not shared between
/// threads: each user opens its own (opening is one syscall or, for
/// [`Netlink::open_in`], one short thread).
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// An error the kernel answered a request with: the operation, the errno
/// and, where the kernel said more (extended ack), its message.
#[derive(Debug)]
pub struct NetlinkError {
    /// What was being done, naming the links involved.
    pub op: String,
    /// The kernel's errno (positive).
    pub errno: i32,
    /// The kernel's extended-ack message, if it sent one.
    pub detail: Option<String>,
}

impl std::fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let desc = nix::errno::Errno::from_raw(self.errno).desc();
        write!(f, "{}: {desc}", self.op)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetlinkError {}

/// The errno behind an error from this module (a kernel answer or a failed
/// syscall), if there is one.
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| e.get_ref().and_then(|inner| inner.downcast_ref::<NetlinkError>()).map(|ne| ne.errno))
}

/// What the kernel refused, before the caller names the operation.
pub(crate) struct Refusal {
    errno: i32,
    detail: Option<String>,
}

/// A failure of one exchange: the socket itself, or the kernel's answer.
pub(crate) enum Failure {
    Io(io::Error),
    Kernel(Refusal),
}

impl Failure {
    /// The kernel's errno, or the socket's.
    fn errno(&self) -> Option<i32> {
        match self {
            Failure::Io(e) => e.raw_os_error(),
            Failure::Kernel(r) => Some(r.errno),
        }
    }

    /// An io::Error that says what was being done.
    fn context(self, op: impl Into<String>) -> io::Error {
        let op = op.into();
        match self {
            Failure::Io(e) => io::Error::new(e.kind(), format!("{op}: {e}")),
            Failure::Kernel(r) => io::Error::new(
                io::Error::from_raw_os_error(r.errno).kind(),
                NetlinkError { op, errno: r.errno, detail: r.detail },
            ),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// How often a dump the kernel marked inconsistent (changed while it was
/// being read) is tried again before giving up.
const DUMP_TRIES: usize = 5;

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("opening rtnetlink socket: {e}"));
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(ctx)?;
        socket.bind_auto().map_err(ctx)?;
        // Extended acks carry the kernel's own words for a refusal; capped
        // acks leave our request out of them. Both are best effort.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink { socket, seq: 0 })
    }

    /// Opens an rtnetlink socket in the network namespace `netns` (an open
    /// `/proc/<pid>/ns/net` or a bind mount of one). The socket keeps
    /// working in that namespace whichever thread uses it.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Self> {
        run_in_netns(netns, Self::open)?
    }

    /// Sends one request and collects the answers: for a dump, every
    /// message up to NLMSG_DONE; otherwise whatever comes before the ack.
    pub(crate) fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        for _ in 0..DUMP_TRIES {
            let (answers, interrupted) = self.exchange_once(msg.clone(), flags)?;
            if !(dump && interrupted) {
                return Ok(answers);
            }
        }
        Err(Failure::Kernel(Refusal {
            errno: libc::EINTR,
            detail: Some(format!("the dump changed under us {DUMP_TRIES} times")),
        }))
    }

    fn exchange_once(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), Failure> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send_to(&buf, &SocketAddr::new(0, 0), 0)?;

        let mut answers = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset + 16 <= datagram.len() {
                let len = u32::from_ne_bytes(datagram[offset..offset + 4].try_into().unwrap_or([0; 4])) as usize;
                if len < 16 || offset + len > datagram.len() {
                    break;
                }
                let part = &datagram[offset..offset + len];
                offset += (len + 3) & !3;
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(part).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("unreadable rtnetlink answer: {e}"))
                })?;
                if parsed.header.sequence_number != seq {
                    continue;
                }
                interrupted |= parsed.header.flags & NLM_F_DUMP_INTR != 0;
                match parsed.payload {
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    NetlinkPayload::Done(done) => {
                        if done.code < 0 {
                            return Err(Failure::Kernel(Refusal { errno: -done.code, detail: None }));
                        }
                        return Ok((answers, interrupted));
                    }
                    NetlinkPayload::Error(err) => match err.code {
                        None => return Ok((answers, interrupted)),
                        Some(code) => {
                            return Err(Failure::Kernel(Refusal {
                                errno: -code.get(),
                                detail: ext_ack_message(parsed.header.flags, &err.header),
                            }))
                        }
                    },
                    _ => {}
                }
            }
        }
    }

    /// One request that only wants the kernel's ack.
    pub(crate) fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), Failure> {
        self.exchange(msg, flags).map(|_| ())
    }

    /// One dump request.
    pub(crate) fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, Failure> {
        self.exchange(msg, NLM_F_DUMP)
    }
}

/// The extended-ack message (NLMSGERR_ATTR_MSG) of an error answer, if the
/// kernel sent one. `payload` is what follows the errno: the request's
/// header (or the whole request, when the ack is not capped), then TLVs.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 || payload.len() < 16 {
        return None;
    }
    let mut offset =
        if flags & NLM_F_CAPPED != 0 { 16 } else { u32::from_ne_bytes(payload[0..4].try_into().ok()?) as usize };
    offset = (offset + 3) & !3;
    while offset + 4 <= payload.len() {
        let len = u16::from_ne_bytes(payload[offset..offset + 2].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(payload[offset + 2..offset + 4].try_into().ok()?);
        if len < 4 || offset + len > payload.len() {
            return None;
        }
        if kind & 0x3fff == NLMSGERR_ATTR_MSG {
            let text = &payload[offset + 4..offset + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned()).filter(|s| !s.is_empty());
        }
        offset += (len + 3) & !3;
    }
    None
}

/// Runs `f` on a new thread that has entered the network namespace
/// `netns`, and returns what it returned. The calling thread's namespace
/// does not change. Sockets `f` opens stay in `netns`; processes it forks
/// start there.
pub fn run_in_netns<T, F>(netns: BorrowedFd<'_>, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("entering network namespace: {e}")))?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes `value` to `/proc/sys/<path>` (e.g. `net/ipv4/ip_forward`), as
/// seen by the calling thread: the `net/` entries belong to the thread's
/// network namespace (use [`run_in_netns`] for another one).
pub fn sysctl_write(path: &str, value: &str) -> io::Result<()> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("sysctl {path:?}: not a path under /proc/sys"),
        ));
    }
    let full = format!("/proc/sys/{path}");
    std::fs::write(&full, value).map_err(|e| io::Error::new(e.kind(), format!("setting sysctl {path} to {value}: {e}")))
}
