//! TAP devices for QEMU.
//!
//! [`open_tap`] makes a TAP device with exactly the name given and returns
//! its queue descriptor, which the zone monitor hands to QEMU
//! (`-netdev tap,fd=N`). The device is not persistent: it exists while a
//! descriptor of it is open and vanishes with the last one, so a VM that
//! dies leaves no link behind. It is created in the calling thread's
//! network namespace, down and in no bridge; the caller attaches it with
//! [`Netlink::set_master`](crate::netlink::Netlink::set_master) and brings it
//! up.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::netlink::MAX_NAME_LEN;

/// `struct ifreq` as TUNSETIFF and TUNGETIFF use it: the name, the flags,
/// and the rest of the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

impl IfReq {
    fn new() -> Self {
        IfReq { name: [0; libc::IFNAMSIZ], flags: 0, _rest: [0; 22] }
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Opens a new TAP device named `name` (`IFF_TAP | IFF_NO_PI`, plus
/// `IFF_VNET_HDR` with `vnet_hdr` so the guest can offload checksums and
/// segmentation). Fails if a link of that name exists already.
pub fn open_tap(name: &str, vnet_hdr: bool) -> io::Result<OwnedFd> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.contains(['%', '/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid tap name (1 to {MAX_NAME_LEN} bytes, no '%', '/', ':' or spaces)"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/net/tun for tap {name}: {e}")))?;
    let mut req = IfReq::new();
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    // The kernel's flags are a short; these all fit in 16 bits.
    req.flags = flags as libc::c_short;
    // SAFETY: the descriptor is open; `req` is a live, writable ifreq-sized
    // buffer for the duration of the call, which is all TUNSETIFF reads and
    // writes.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        let why = if e.raw_os_error() == Some(libc::EBUSY) { " (a link of that name exists)" } else { "" };
        return Err(io::Error::new(e.kind(), format!("creating tap {name}: {e}{why}")));
    }
    let got = req.name();
    if got != name {
        return Err(io::Error::other(format!("creating tap {name}: the kernel named it {got}")));
    }
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::testns::{kind_or_skip, ns_or_skip};

    /// The flags TUNGETIFF reports for a tap descriptor.
    fn tap_flags(fd: &OwnedFd) -> libc::c_int {
        let mut req = IfReq::new();
        // SAFETY: as for TUNSETIFF: an open descriptor and a live ifreq.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) };
        assert_eq!(rc, 0, "TUNGETIFF: {}", io::Error::last_os_error());
        libc::c_int::from(req.flags) & 0xffff
    }

    #[test]
    fn tap_lives_as_long_as_its_descriptor() {
        let test = "tap_lives_as_long_as_its_descriptor";
        let Some(ns) = ns_or_skip(test) else { return };
        if !std::path::Path::new("/dev/net/tun").exists() {
            crate::netlink::testns::skip(test, "no /dev/net/tun");
            return;
        }
        if !kind_or_skip(test, &ns, "bridge") {
            return;
        }
        let fd = ns.run(|| open_tap("zvtap0", true)).unwrap();
        let flags = tap_flags(&fd);
        assert_eq!(
            flags & (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR),
            libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR
        );

        let mut nl = ns.netlink();
        let tap = nl.link("zvtap0").unwrap().expect("the tap exists while its fd is open");
        assert_eq!(tap.kind.as_deref(), Some("tun"));
        let br = nl.add_bridge("zvbr0", None, false).unwrap();
        nl.set_master(tap.index, Some(br)).unwrap();
        nl.set_up(tap.index, true).unwrap();
        assert_eq!(nl.link("zvtap0").unwrap().unwrap().master, Some(br));

        // The name is exact: taken means refused, not renamed.
        let e = ns.run(|| open_tap("zvtap0", false)).unwrap_err();
        assert!(e.to_string().starts_with("creating tap zvtap0: "), "{e}");
        let e = ns.run(|| open_tap("zvtap%d", false)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

        drop(fd);
        assert_eq!(nl.link("zvtap0").unwrap(), None, "the tap goes with its last fd");

        // Without vnet headers.
        let fd = ns.run(|| open_tap("zvtap1", false)).unwrap();
        assert_eq!(tap_flags(&fd) & libc::IFF_VNET_HDR, 0);
    }
}
