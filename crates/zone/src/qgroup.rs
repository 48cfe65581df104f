//! A zone dataset's `quota` as btrfs accounts it: the limit and usage of
//! the qgroup that carries it (the level-0 qgroup of the subvolume holding
//! the zone's root, or its dataset's level-1 group once it has snapshots,
//! which they are charged to), read with `BTRFS_IOC_INO_LOOKUP` (which
//! subvolume) and `BTRFS_IOC_TREE_SEARCH` (its items in the quota tree).
//! The monitor answers the zone's `statfs(2)` with it
//! (`monitor/statfs.rs`); the pool crate sets it.
//!
//! The limit is what the pool set: `max_excl` under classic qgroups (a
//! clone's blocks shared with its image are not charged), `max_rfer`
//! under simple quotas (where referenced and exclusive are one). The
//! usage charged is the matching number of the qgroup's info item; btrfs
//! updates it when it commits a transaction (every 30 s at most, and at
//! `sync`).

use std::io;
use std::os::fd::BorrowedFd;

use zonevisor_pool::btrfs_tree::{le_u64, quota_qgroup, search_item, subvol_id};

const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
const BTRFS_QGROUP_INFO_KEY: u32 = 242;
const BTRFS_QGROUP_LIMIT_KEY: u32 = 244;
const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
const BTRFS_QGROUP_LIMIT_MAX_EXCL: u64 = 1 << 1;

/// A dataset's quota and what it is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// The limit, in bytes.
    pub(crate) limit: u64,
    /// What counts against it, in bytes.
    pub(crate) charged: u64,
}

/// The qgroup carrying the quota of the subvolume holding `dir` (a
/// directory on btrfs, opened for reading: the ioctls want a real
/// descriptor), as it is when the zone starts (a rollback restarts it).
pub(crate) fn subvol_of(dir: BorrowedFd) -> io::Result<u64> {
    quota_qgroup(dir, subvol_id(dir)?)
}

/// The item (`0`, `item_type`, `qgroup`) of the quota tree, if any (none
/// when quotas are off).
fn quota_item(fs: BorrowedFd, item_type: u32, qgroup: u64) -> io::Result<Option<Vec<u8>>> {
    search_item(fs, BTRFS_QUOTA_TREE_OBJECTID, 0, item_type, qgroup)
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
