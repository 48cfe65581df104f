//! A zone dataset's `quota` as btrfs accounts it: the limit and usage of
//! the level-0 qgroup of the subvolume holding the zone's root, read with
//! `BTRFS_IOC_INO_LOOKUP` (which subvolume) and `BTRFS_IOC_TREE_SEARCH`
//! (its items in the quota tree). The monitor answers the zone's
//! `statfs(2)` with it (`monitor/statfs.rs`); the pool crate sets it.
//!
//! The limit is what the pool set: `max_excl` under classic qgroups (a
//! clone's blocks shared with its image are not charged), `max_rfer`
//! under simple quotas (where referenced and exclusive are one). The
//! usage charged is the matching number of the qgroup's info item; btrfs
//! updates it when it commits a transaction (every 30 s at most, and at
//! `sync`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;
const BTRFS_QGROUP_LIMIT_KEY: u32 = 244;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
const BTRFS_QGROUP_LIMIT_MAX_EXCL: u64 = 1 << 1;
/// `_IOWR(0x94, 17, struct btrfs_ioctl_search_args)`.
const BTRFS_IOC_TREE_SEARCH: libc::c_ulong = 0xd000_9411;
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)`.
const BTRFS_IOC_INO_LOOKUP: libc::c_ulong = 0xd000_9412;
const SEARCH_HEADER_LEN: usize = 32;

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
struct SearchKey {
    tree_id: u64,
    min_objectid: u64,
    max_objectid: u64,
    min_offset: u64,
    max_offset: u64,
    min_transid: u64,
    max_transid: u64,
    min_type: u32,
    max_type: u32,
    nr_items: u32,
    unused: u32,
    unused1: [u64; 4],
}

/// `struct btrfs_ioctl_search_args`.
#[repr(C)]
struct SearchArgs {
    key: SearchKey,
    buf: [u8; 4096 - std::mem::size_of::<SearchKey>()],
}

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// A dataset's quota and what it is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// The limit, in bytes.
    pub(crate) limit: u64,
    /// What counts against it, in bytes.
    pub(crate) charged: u64,
}

/// The id of the subvolume holding `dir` (a directory on btrfs, opened
/// for reading: the ioctls want a real descriptor).
pub(crate) fn subvol_of(dir: BorrowedFd) -> io::Result<u64> {
    let mut args = InoLookupArgs { treeid: 0, objectid: BTRFS_FIRST_FREE_OBJECTID, name: [0; 4080] };
    // SAFETY: `args` is a btrfs_ioctl_ino_lookup_args the kernel reads and writes in place.
    if unsafe { libc::ioctl(dir.as_raw_fd(), BTRFS_IOC_INO_LOOKUP, &mut args) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(args.treeid)
}

/// The item (`0`, `item_type`, `qgroup`) of the quota tree, if any.
fn quota_item(fs: BorrowedFd, item_type: u32, qgroup: u64) -> io::Result<Option<Vec<u8>>> {
    let mut args = SearchArgs {
        key: SearchKey {
            tree_id: BTRFS_QUOTA_TREE_OBJECTID,
            min_offset: qgroup,
            max_offset: qgroup,
            max_transid: u64::MAX,
            min_type: item_type,
            max_type: item_type,
            nr_items: 1,
            ..SearchKey::default()
        },
        buf: [0; 4096 - std::mem::size_of::<SearchKey>()],
    };
    // SAFETY: `args` is a btrfs_ioctl_search_args the kernel reads and writes in place.
    if unsafe { libc::ioctl(fs.as_raw_fd(), BTRFS_IOC_TREE_SEARCH, &mut args) } != 0 {
        let e = io::Error::last_os_error();
        // No quota tree: quotas are off.
        return if e.raw_os_error() == Some(libc::ENOENT) { Ok(None) } else { Err(e) };
    }
    if args.key.nr_items == 0 {
        return Ok(None);
    }
    let u32_at = |at: usize| u32::from_ne_bytes(args.buf[at..at + 4].try_into().unwrap_or_default());
    let (found, len) = (u32_at(24), u32_at(28) as usize);
    match args.buf.get(SEARCH_HEADER_LEN..SEARCH_HEADER_LEN + len) {
        Some(item) if found == item_type => Ok(Some(item.to_vec())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "malformed btrfs tree search result")),
    }
}

/// The little-endian u64 at byte `at` of an on-disk item (0 past its end).
fn le_u64(item: &[u8], at: usize) -> u64 {
    item.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The limit item of subvolume `subvol`'s qgroup, on the file system of
/// `fs`; `None` when it has none (or quotas are off).
pub(crate) fn limit_item(fs: BorrowedFd, subvol: u64) -> io::Result<Option<Vec<u8>>> {
    quota_item(fs, BTRFS_QGROUP_LIMIT_KEY, subvol)
}

/// The info item (its usage) of subvolume `subvol`'s qgroup (empty when
/// it has none yet).
pub(crate) fn info_item(fs: BorrowedFd, subvol: u64) -> io::Result<Vec<u8>> {
    Ok(quota_item(fs, BTRFS_QGROUP_INFO_KEY, subvol)?.unwrap_or_default())
}

/// The quota in a qgroup's limit item (`flags`, `max_rfer`, `max_excl`,
/// ...) and info item (`generation`, `rfer`, `rfer_cmpr`, `excl`, ...):
/// of the limits set, the one with the least room left.
pub(crate) fn from_items(limit: &[u8], info: &[u8]) -> Option<Quota> {
    let flags = le_u64(limit, 0);
    [(BTRFS_QGROUP_LIMIT_MAX_RFER, 8, 8), (BTRFS_QGROUP_LIMIT_MAX_EXCL, 16, 24)]
        .into_iter()
        .filter(|&(flag, _, _)| flags & flag != 0)
        .map(|(_, at_limit, at_used)| Quota { limit: le_u64(limit, at_limit), charged: le_u64(info, at_used) })
        .min_by_key(|q| q.limit.saturating_sub(q.charged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_and_requests_are_the_kernels() {
        use nix::request_code_readwrite;
        assert_eq!(std::mem::size_of::<SearchKey>(), 104);
        assert_eq!(std::mem::size_of::<SearchArgs>(), 4096);
        assert_eq!(std::mem::size_of::<InoLookupArgs>(), 4096);
        let search = request_code_readwrite!(0x94, 17, std::mem::size_of::<SearchArgs>());
        let lookup = request_code_readwrite!(0x94, 18, std::mem::size_of::<InoLookupArgs>());
        assert_eq!((search as libc::c_ulong, lookup as libc::c_ulong), (BTRFS_IOC_TREE_SEARCH, BTRFS_IOC_INO_LOOKUP));
    }

    fn item(values: &[u64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn the_limit_set_is_read_with_its_usage() {
        const GIB: u64 = 1 << 30;
        // generation, rfer, rfer_cmpr, excl, excl_cmpr
        let info = item(&[7, 3 * GIB, 3 * GIB, GIB / 2, GIB / 2]);
        // Classic qgroups: max_excl, charged with the exclusive bytes.
        let excl = item(&[BTRFS_QGROUP_LIMIT_MAX_EXCL, 0, 10 * GIB, 0, 0]);
        assert_eq!(from_items(&excl, &info), Some(Quota { limit: 10 * GIB, charged: GIB / 2 }));
        // Simple quotas: max_rfer.
        let rfer = item(&[BTRFS_QGROUP_LIMIT_MAX_RFER, 4 * GIB, 0, 0, 0]);
        assert_eq!(from_items(&rfer, &info), Some(Quota { limit: 4 * GIB, charged: 3 * GIB }));
        // Both: the one with the least room.
        let both = item(&[BTRFS_QGROUP_LIMIT_MAX_RFER | BTRFS_QGROUP_LIMIT_MAX_EXCL, 4 * GIB, 10 * GIB, 0, 0]);
        assert_eq!(from_items(&both, &info).map(|q| q.limit), Some(4 * GIB));
        // A cleared limit, and no info item yet.
        assert_eq!(from_items(&item(&[0, 0, 0, 0, 0]), &info), None);
        assert_eq!(from_items(&excl, &[]), Some(Quota { limit: 10 * GIB, charged: 0 }));
    }
}
