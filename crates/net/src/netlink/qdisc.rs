//! Removing queueing disciplines (the shaper adds them with `tc`).

use std::io;

use netlink_packet_route::tc::{TcHandle, TcMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::Netlink;

/// Where a qdisc hangs on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QdiscParent {
    /// The root (egress) qdisc.
    Root,
    /// The ingress qdisc.
    Ingress,
}

impl QdiscParent {
    fn handle(self) -> TcHandle {
        match self {
            QdiscParent::Root => TcHandle::ROOT,
            QdiscParent::Ingress => TcHandle::INGRESS,
        }
    }

    fn word(self) -> &'static str {
        match self {
            QdiscParent::Root => "root",
            QdiscParent::Ingress => "ingress",
        }
    }
}

impl Netlink {
    /// Removes the qdisc at `parent` on link `index` (with its classes and
    /// filters). No such qdisc is not an error.
    pub(crate) fn del_qdisc(&mut self, index: u32, parent: QdiscParent) -> io::Result<()> {
        let mut m = TcMessage::with_index(index as i32);
        m.header.parent = parent.handle();
        match self.ack(RouteNetlinkMessage::DelQueueDiscipline(m), 0) {
            Ok(()) => Ok(()),
            // ENOENT: only the default qdisc is there; EINVAL: no ingress.
            Err(f) if matches!(f.errno(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(()),
            Err(f) => {
                let name = self.describe(index);
                Err(f.context(format!("removing the {} qdisc of {name}", parent.word())))
            }
        }
    }
}
