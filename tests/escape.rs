//! The escape suite: what an attacker with root inside a zone (or a client
//! of the API) tries, each case driven from a real zone by a small static
//! probe built by the tests (`tests/probes/`), asserting the refusal and
//! that nothing on the host changed. SECURITY.md is the threat model each
//! case belongs to.
//!
//! - `syscalls`: every system call number the seccomp filter names, on
//!   both ABIs; read-only mounts cloned writable; btrfs subvolumes.
//! - `pool`: setuid files and file capabilities from a zone or an image,
//!   the pool filled past a zone's quota (nested subvolumes, snapshots,
//!   reflinks, a gzip bomb), an instance created over an image.
//! - `entry`: descriptors carried into a zone by `zlogin`.
//! - `classic`: the chroot breakout, device nodes, a host binary run in
//!   the zone and rewritten (CVE-2019-5736's shape). More classics
//!   (mounts, modules, sysrq, `/proc/sys`, ptrace and signals to the
//!   host, the host's disk) are in `tests/security.rs`.
//! - `lofs`: bind-mount sources reached through another zone's symlinks.
//! - `mounts`: every mount a zone has, known and with its options: a
//!   mount a change adds fails here until it is classified.
//! - `daemon`: the API's clients and a zone's monitor as the attacker's
//!   tools: absurd numbers, stalled and flooding connections, a stop
//!   against a frozen monitor, a monitor killed.
//! - `qemu`: a guest that took over its QEMU: the jail's user, its
//!   capabilities and seccomp filter, what its root shows, its taps.
//! - `net`: the host's services from a managed network, the zone's
//!   links, forged ARP, MACs and VLAN tags.
//! - `mdata`: the metadata service's socket directory and `/native`,
//!   another zone's metadata, links planted against the boot's writes.
//! - `images`: a zone's root made an image (`imgadm create`): planted
//!   links to host files, a FIFO, a terabyte sparse file.
//! - `statfs`: the monitor's answers to `statfs(2)` (paths that leave the
//!   zone, descriptors from outside, bad pointers, a swapped path, a
//!   flood) and its resizing of `/tmp` (replaced by a symlink).
//! - `oci`: hostile OCI images from a real registry: layers with
//!   symlinks out and files written through them, `../` names, hard
//!   links to host files, whiteouts of `../x`; a docker zone's
//!   `/etc/passwd` as a FIFO or a symlink out.
//! - `snapshots`: a zone's snapshots (and a neighbour's) out of its sight
//!   and reach, lofs sources naming them, a forged copy of what a
//!   rollback restores.
//! - `transfer`: `vmadm receive` of crafted streams reaching for another
//!   instance's data (a clone or a snapshot of its dataset by UUID).

mod common;

#[path = "escape/classic.rs"]
mod classic;
#[path = "escape/daemon.rs"]
mod daemon;
#[path = "escape/entry.rs"]
mod entry;
#[path = "escape/images.rs"]
mod images;
#[path = "escape/lofs.rs"]
mod lofs;
#[path = "escape/mdata.rs"]
mod mdata;
#[path = "escape/mounts.rs"]
mod mounts;
#[path = "escape/net.rs"]
mod net;
#[path = "escape/oci.rs"]
mod oci;
#[path = "escape/pool.rs"]
mod pool;
#[path = "escape/probe.rs"]
mod probe;
#[path = "escape/qemu.rs"]
mod qemu;
#[path = "common/registry.rs"]
mod registry;
#[path = "escape/snapshots.rs"]
mod snapshots;
#[path = "escape/statfs.rs"]
mod statfs;
#[path = "escape/syscalls.rs"]
mod syscalls;
#[path = "escape/transfer.rs"]
mod transfer;
