//! Per-NIC bandwidth caps, from the instance's point of view.
//!
//! ```text
//!                      host side of the NIC ("zv…" port on the bridge)
//!  instance ──► port ingress ─ u32 match-all ─ mirred redirect ──► IFB "zb…" ─ TBF (egress cap)
//!  instance ◄── port egress  ─ TBF (ingress cap, root qdisc) ◄── bridge
//! ```
//!
//! - The **ingress** cap (traffic *to* the instance) is the host-side
//!   port's egress: a TBF root qdisc on the port.
//! - The **egress** cap (traffic *from* the instance) is the port's
//!   ingress: an ingress qdisc with a u32 match-all filter whose mirred
//!   action redirects every frame to an IFB device ([`ifb_name`]), which
//!   shapes it with a TBF root qdisc and hands it back to the port's
//!   receive path. (This kernel has neither `police` nor `matchall`, and
//!   shaping, unlike policing, queues rather than drops, which TCP likes.)
//!
//! [`set_caps`] makes the port match the caps: it replaces what is there
//! (`tc qdisc replace`, `tc filter replace` with a fixed handle), so
//! applying the same caps twice changes nothing and a new rate replaces the
//! old; `None` removes that direction's qdiscs (and the IFB). All additions
//! go to one `tc -batch -` run (one fork); removals go over rtnetlink.
//! Everything happens in the calling thread's network namespace.
//!
//! The token bucket holds [`burst_bytes`]: 4 ms of traffic at the rate,
//! at least 32 KiB (more than one full GSO packet's worth of MTU frames), so
//! the timer's lateness does not eat into the rate at 1 Gbit/s. The queue
//! behind it holds [`limit_bytes`]: 20 ms of traffic, at least 192 KiB so
//! that a few GSO packets fit at low rates. TCP payload throughput measured
//! through a veth port with MTU 1400 (`shaping_sweep` in the tests), as a
//! share of the cap, both directions: 1 Mbit/s 95%, 10 95-99%, 20 98%,
//! 100 to 1000 95.3%; the 4.7% is the Ethernet, IP and TCP headers, which
//! the cap counts.

use std::io::{self, Write};
use std::process::{Command, Stdio};

use crate::netlink::{Netlink, QdiscParent};

/// Bandwidth caps for one NIC, in Mbit/s; `None` is uncapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caps {
    /// Traffic to the instance (the host-side port's egress).
    pub ingress_mbps: Option<u32>,
    /// Traffic from the instance (the host-side port's ingress, shaped on
    /// the port's IFB device).
    pub egress_mbps: Option<u32>,
}

/// The IFB device that shapes what `port` receives from its instance:
/// the port's name with its leading "zv" replaced by "zb". Ports not named
/// "zv…" are refused.
pub fn ifb_name(port: &str) -> io::Result<String> {
    match port.strip_prefix("zv") {
        Some(rest) if !rest.is_empty() => Ok(format!("zb{rest}")),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{port:?} is not an instance NIC port (those are named zv…)"),
        )),
    }
}

/// Bytes per second for `mbps` Mbit/s.
fn bytes_per_sec(mbps: u32) -> u64 {
    u64::from(mbps) * 125_000
}

/// The token bucket's size for a rate: 4 ms of traffic, at least 32 KiB.
pub fn burst_bytes(mbps: u32) -> u64 {
    (bytes_per_sec(mbps) / 250).max(32 * 1024)
}

/// The queue's size for a rate: 20 ms of traffic, at least 192 KiB.
pub fn limit_bytes(mbps: u32) -> u64 {
    (bytes_per_sec(mbps) / 50).max(192 * 1024)
}

/// The `tc` line that makes `dev`'s root qdisc a shaper at `mbps`.
fn shaper(dev: &str, mbps: u32) -> String {
    format!(
        "qdisc replace dev {dev} root handle 1: tbf rate {mbps}mbit burst {} limit {}",
        burst_bytes(mbps),
        limit_bytes(mbps)
    )
}

/// Sets `port`'s caps (see the module doc). The port must exist; its
/// name must start with "zv" for an egress cap.
pub fn set_caps(port: &str, caps: Caps) -> io::Result<()> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("setting bandwidth caps on {port}: {e}"));
    if caps.ingress_mbps == Some(0) || caps.egress_mbps == Some(0) {
        return Err(ctx(io::Error::new(io::ErrorKind::InvalidInput, "a cap of 0 Mbit/s")));
    }
    let mut nl = Netlink::open().map_err(ctx)?;
    let link =
        nl.link(port).map_err(ctx)?.ok_or_else(|| ctx(io::Error::new(io::ErrorKind::NotFound, "no such link")))?;
    let mut batch = Vec::new();

    match caps.ingress_mbps {
        Some(mbps) => batch.push(shaper(port, mbps)),
        None => nl.del_qdisc(link.index, QdiscParent::Root).map_err(ctx)?,
    }

    let ifb = ifb_name(port);
    match caps.egress_mbps {
        Some(mbps) => {
            let ifb = ifb.map_err(ctx)?;
            let index = match nl.link(&ifb).map_err(ctx)? {
                Some(l) if l.kind.as_deref() == Some("ifb") => l.index,
                Some(_) => {
                    return Err(ctx(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{ifb} exists and is not an IFB device"),
                    )))
                }
                None => nl.add_ifb(&ifb).map_err(ctx)?,
            };
            nl.set_up(index, true).map_err(ctx)?;
            batch.push(shaper(&ifb, mbps));
            batch.push(format!("qdisc replace dev {port} handle ffff: ingress"));
            batch.push(format!(
                "filter replace dev {port} parent ffff: protocol all prio 1 handle 800::800 \
                 u32 match u32 0 0 action mirred egress redirect dev {ifb}"
            ));
        }
        None => {
            nl.del_qdisc(link.index, QdiscParent::Ingress).map_err(ctx)?;
            if let Ok(ifb) = ifb {
                delete_ifb(&mut nl, &ifb).map_err(ctx)?;
            }
        }
    }

    if batch.is_empty() {
        return Ok(());
    }
    tc_batch(&batch).map_err(ctx)
}

/// Removes every cap from `port`: its root and ingress qdiscs and its IFB
/// device. A port already gone only has its IFB removed.
pub fn clear(port: &str) -> io::Result<()> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("clearing bandwidth caps on {port}: {e}"));
    let mut nl = Netlink::open().map_err(ctx)?;
    if let Some(link) = nl.link(port).map_err(ctx)? {
        nl.del_qdisc(link.index, QdiscParent::Root).map_err(ctx)?;
        nl.del_qdisc(link.index, QdiscParent::Ingress).map_err(ctx)?;
    }
    if let Ok(ifb) = ifb_name(port) {
        delete_ifb(&mut nl, &ifb).map_err(ctx)?;
    }
    Ok(())
}

/// Deletes IFB device `ifb` if it exists (and is one).
fn delete_ifb(nl: &mut Netlink, ifb: &str) -> io::Result<()> {
    match nl.link(ifb)? {
        Some(l) if l.kind.as_deref() == Some("ifb") => nl.delete_link(l.index),
        _ => Ok(()),
    }
}

/// Where `tc` is: the usual places for root, else the PATH.
fn tc_path() -> &'static str {
    ["/usr/sbin/tc", "/sbin/tc"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap_or("tc")
}

/// Runs `lines` through one `tc -batch -`.
fn tc_batch(lines: &[String]) -> io::Result<()> {
    let tc = tc_path();
    let mut child = Command::new(tc)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running {tc}: {e}")))?;
    let mut input = lines.join("\n");
    input.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{tc} -batch failed ({}): {}; commands: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        lines.join("; ")
    )))
}

#[cfg(test)]
mod tests;
