//! The kernel ABI this crate speaks directly: btrfs ioctls (`linux/btrfs.h`,
//! `linux/btrfs_tree.h`), the reflink ioctl (`FICLONE`, `linux/fs.h`) and
//! loop-device ioctls (`linux/loop.h`), as
//! `#[repr(C)]` structures and thin safe wrappers returning `io::Result`.
//!
//! Every `unsafe` in the crate's ioctl use lives here.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
const BTRFS_PATH_NAME_MAX: usize = 4087;
const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
const BTRFS_INO_LOOKUP_PATH_MAX: usize = 4080;
const BTRFS_SEARCH_ARGS_BUFSIZE: usize = 4096 - std::mem::size_of::<SearchKey>();

/// Inode number of every subvolume's root directory.
pub const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;
/// `BTRFS_IOC_SUBVOL_{GET,SET}FLAGS`: the subvolume is read-only.
pub const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// The quota tree's id.
pub const BTRFS_QUOTA_TREE_OBJECTID: u64 = 8;
/// Quota tree item types: status (one), and per qgroup info and limit.
pub const BTRFS_QGROUP_STATUS_KEY: u32 = 240;
/// See [`BTRFS_QGROUP_STATUS_KEY`].
pub const BTRFS_QGROUP_INFO_KEY: u32 = 242;
/// See [`BTRFS_QGROUP_STATUS_KEY`].
pub const BTRFS_QGROUP_LIMIT_KEY: u32 = 244;
/// `btrfs_qgroup_status_item.flags`: simple quotas (kernel 6.7+).
pub const BTRFS_QGROUP_STATUS_FLAG_SIMPLE_MODE: u64 = 1 << 3;
/// `btrfs_qgroup_status_item.flags`: the numbers need a rescan.
pub const BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT: u64 = 1 << 2;
/// `BTRFS_IOC_QUOTA_CTL`: enable classic qgroups.
pub const BTRFS_QUOTA_CTL_ENABLE: u64 = 1;
/// `BTRFS_IOC_QUOTA_CTL`: enable simple quotas (kernel 6.7+; older: EINVAL).
pub const BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA: u64 = 4;
/// `btrfs_qgroup_limit.flags`: `max_rfer` is set.
pub const BTRFS_QGROUP_LIMIT_MAX_RFER: u64 = 1 << 0;
/// `btrfs_qgroup_limit.flags`: `max_excl` is set.
pub const BTRFS_QGROUP_LIMIT_MAX_EXCL: u64 = 1 << 1;
/// Limit value that clears a limit.
pub const BTRFS_QGROUP_LIMIT_CLEAR: u64 = u64::MAX;
/// `loop_info64.lo_flags`: detach when the last user closes the device.
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct btrfs_ioctl_vol_args`.
#[repr(C)]
pub struct VolArgs {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

/// `struct btrfs_ioctl_vol_args_v2` (the `size`/`qgroup_inherit` union's
/// first member spelled out, the `name`/`devid`/`subvolid` union as `name`).
#[repr(C)]
pub struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    /// With [`BTRFS_SUBVOL_QGROUP_INHERIT`]: the size of the
    /// `btrfs_qgroup_inherit` at `qgroup_inherit`.
    size: u64,
    qgroup_inherit: u64,
    unused: [u64; 2],
    name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

/// `btrfs_ioctl_vol_args_v2.flags`: `qgroup_inherit` points to a
/// `btrfs_qgroup_inherit` naming qgroups the new subvolume joins.
pub const BTRFS_SUBVOL_QGROUP_INHERIT: u64 = 1 << 2;
/// Quota tree item type: a qgroup relation (child → parent and back).
pub const BTRFS_QGROUP_RELATION_KEY: u32 = 246;

/// `struct btrfs_qgroup_inherit` (flags, num_qgroups, num_ref_copies,
/// num_excl_copies, a `btrfs_qgroup_limit` of five u64s, then the
/// qgroup ids) laid out as u64s: the new subvolume joins `qgroups`.
fn qgroup_inherit(qgroups: &[u64]) -> Vec<u64> {
    let mut v = vec![0u64; 9];
    v[1] = qgroups.len() as u64;
    v.extend_from_slice(qgroups);
    v
}

/// `struct btrfs_ioctl_qgroup_assign_args`.
#[repr(C)]
pub struct QgroupAssignArgs {
    assign: u64,
    src: u64,
    dst: u64,
}

/// `struct btrfs_ioctl_quota_rescan_args`.
#[repr(C)]
pub struct QuotaRescanArgs {
    flags: u64,
    progress: u64,
    reserved: [u64; 6],
}

/// `struct btrfs_ioctl_subvol_wait` (kernel 6.10+).
#[repr(C)]
pub struct SubvolWait {
    subvolid: u64,
    mode: u32,
    count: u32,
}

/// `struct btrfs_ioctl_timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Timespec {
    /// Seconds since the epoch.
    pub sec: u64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// `struct btrfs_ioctl_get_subvol_info_args`.
#[repr(C)]
pub struct GetSubvolInfoArgs {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` says of a subvolume.
#[derive(Clone, Copy, Debug)]
pub struct SubvolInfo {
    /// Its id (tree id, = its level-0 qgroup id).
    pub id: u64,
    /// Its UUID.
    pub uuid: [u8; 16],
    /// The UUID of the subvolume it was received from (zero for none).
    pub received_uuid: [u8; 16],
    /// When it was made.
    pub otime: Timespec,
}

/// `struct btrfs_ioctl_search_key`.
#[repr(C)]
#[derive(Default)]
pub struct SearchKey {
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
pub struct SearchArgs {
    key: SearchKey,
    buf: [u8; BTRFS_SEARCH_ARGS_BUFSIZE],
}

/// `struct btrfs_ioctl_search_header`, as laid out in the search buffer.
const SEARCH_HEADER_LEN: usize = 32;

/// `struct btrfs_ioctl_ino_lookup_args`.
#[repr(C)]
pub struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; BTRFS_INO_LOOKUP_PATH_MAX],
}

/// `struct btrfs_ioctl_quota_ctl_args`.
#[repr(C)]
pub struct QuotaCtlArgs {
    cmd: u64,
    status: u64,
}

/// `struct btrfs_ioctl_qgroup_create_args`.
#[repr(C)]
pub struct QgroupCreateArgs {
    create: u64,
    qgroupid: u64,
}

/// `struct btrfs_ioctl_qgroup_limit_args` (with `struct btrfs_qgroup_limit`
/// inlined).
#[repr(C)]
pub struct QgroupLimitArgs {
    qgroupid: u64,
    flags: u64,
    max_rfer: u64,
    max_excl: u64,
    rsv_rfer: u64,
    rsv_excl: u64,
}

/// `struct loop_info64`.
#[repr(C)]
pub struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
pub struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

mod ioc {
    use super::*;
    nix::ioctl_none!(fs_sync, BTRFS_IOCTL_MAGIC, 8);
    nix::ioctl_write_ptr!(subvol_create, BTRFS_IOCTL_MAGIC, 14, VolArgs);
    nix::ioctl_write_ptr!(snap_destroy, BTRFS_IOCTL_MAGIC, 15, VolArgs);
    nix::ioctl_readwrite!(tree_search, BTRFS_IOCTL_MAGIC, 17, SearchArgs);
    nix::ioctl_readwrite!(ino_lookup, BTRFS_IOCTL_MAGIC, 18, InoLookupArgs);
    nix::ioctl_write_ptr!(snap_create_v2, BTRFS_IOCTL_MAGIC, 23, VolArgsV2);
    nix::ioctl_write_ptr!(subvol_create_v2, BTRFS_IOCTL_MAGIC, 24, VolArgsV2);
    nix::ioctl_read!(subvol_getflags, BTRFS_IOCTL_MAGIC, 25, u64);
    nix::ioctl_write_ptr!(subvol_setflags, BTRFS_IOCTL_MAGIC, 26, u64);
    nix::ioctl_readwrite!(quota_ctl, BTRFS_IOCTL_MAGIC, 40, QuotaCtlArgs);
    nix::ioctl_write_ptr!(qgroup_assign, BTRFS_IOCTL_MAGIC, 41, QgroupAssignArgs);
    nix::ioctl_write_ptr!(qgroup_create, BTRFS_IOCTL_MAGIC, 42, QgroupCreateArgs);
    nix::ioctl_write_ptr!(quota_rescan, BTRFS_IOCTL_MAGIC, 44, QuotaRescanArgs);
    nix::ioctl_none!(quota_rescan_wait, BTRFS_IOCTL_MAGIC, 46);
    nix::ioctl_write_ptr!(subvol_sync_wait, BTRFS_IOCTL_MAGIC, 65, SubvolWait);
    nix::ioctl_read!(get_subvol_info, BTRFS_IOCTL_MAGIC, 60, GetSubvolInfoArgs);
    // The kernel declares this one _IOR although it only reads the argument.
    nix::ioctl_read!(qgroup_limit, BTRFS_IOCTL_MAGIC, 43, QgroupLimitArgs);
    // FICLONE: _IOW(0x94, 9, int), the source descriptor passed by value.
    nix::ioctl_write_int!(ficlone, BTRFS_IOCTL_MAGIC, 9);
    nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
}

/// Copies a single path component into a NUL-terminated name buffer.
fn name_buf<const N: usize>(name: &OsStr) -> io::Result<[u8; N]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if bytes.len() >= N {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let mut buf = [0u8; N];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(buf)
}

/// Creates an empty subvolume `name` in directory `dir`, a member of the
/// (higher-level) qgroups `qgroups` from its first byte.
pub fn subvol_create(dir: impl AsFd, name: &OsStr, qgroups: &[u64]) -> io::Result<()> {
    if qgroups.is_empty() {
        let args = VolArgs { fd: 0, name: name_buf(name)? };
        // SAFETY: `args` is a valid, initialised btrfs_ioctl_vol_args the kernel only reads.
        unsafe { ioc::subvol_create(dir.as_fd().as_raw_fd(), &args) }?;
        return Ok(());
    }
    let inherit = qgroup_inherit(qgroups);
    let args = vol_args_v2(0, 0, name, &inherit)?;
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args_v2 whose qgroup_inherit
    // points to `inherit`, alive across the call, of the size given.
    unsafe { ioc::subvol_create_v2(dir.as_fd().as_raw_fd(), &args) }?;
    Ok(())
}

fn vol_args_v2(fd: i64, flags: u64, name: &OsStr, inherit: &[u64]) -> io::Result<VolArgsV2> {
    let (flags, size, ptr) = if inherit.is_empty() {
        (flags, 0, 0)
    } else {
        (flags | BTRFS_SUBVOL_QGROUP_INHERIT, std::mem::size_of_val(inherit) as u64, inherit.as_ptr() as u64)
    };
    Ok(VolArgsV2 { fd, transid: 0, flags, size, qgroup_inherit: ptr, unused: [0; 2], name: name_buf(name)? })
}

/// Snapshots the subvolume open as `source` to `name` in directory `dir`,
/// the snapshot a member of the (higher-level) qgroups `qgroups`.
pub fn snap_create(dir: impl AsFd, name: &OsStr, source: impl AsFd, readonly: bool, qgroups: &[u64]) -> io::Result<()> {
    let inherit = if qgroups.is_empty() { Vec::new() } else { qgroup_inherit(qgroups) };
    let flags = if readonly { BTRFS_SUBVOL_RDONLY } else { 0 };
    let args = vol_args_v2(source.as_fd().as_raw_fd().into(), flags, name, &inherit)?;
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args_v2; its qgroup_inherit
    // pointer, when the flag is set, points to `inherit`, alive across the call.
    unsafe { ioc::snap_create_v2(dir.as_fd().as_raw_fd(), &args) }?;
    Ok(())
}

/// Makes qgroup `src` a member of `dst` (or with `assign == false` no
/// longer one). `Ok(true)`: the kernel could not carry the numbers over
/// and the quotas need a rescan ([`quota_rescan`]).
pub fn qgroup_assign(fd: impl AsFd, assign: bool, src: u64, dst: u64) -> io::Result<bool> {
    let args = QgroupAssignArgs { assign: assign.into(), src, dst };
    // SAFETY: `args` is a valid btrfs_ioctl_qgroup_assign_args the kernel only reads.
    let r = unsafe { ioc::qgroup_assign(fd.as_fd().as_raw_fd(), &args) }?;
    Ok(r > 0)
}

/// Starts a rescan of the quota numbers (`EINPROGRESS` when one runs).
pub fn quota_rescan(fd: impl AsFd) -> io::Result<()> {
    let args = QuotaRescanArgs { flags: 0, progress: 0, reserved: [0; 6] };
    // SAFETY: `args` is a valid btrfs_ioctl_quota_rescan_args the kernel only reads.
    unsafe { ioc::quota_rescan(fd.as_fd().as_raw_fd(), &args) }?;
    Ok(())
}

/// Waits for a running quota rescan to finish (none running: at once).
pub fn quota_rescan_wait(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_QUOTA_RESCAN_WAIT takes no argument.
    unsafe { ioc::quota_rescan_wait(fd.as_fd().as_raw_fd()) }?;
    Ok(())
}

/// `BTRFS_IOC_SYNC`: commits the filesystem's transaction and wakes its
/// cleaner (which drops deleted subvolumes) now, not at the next periodic
/// commit.
pub fn fs_sync(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_SYNC takes no argument.
    unsafe { ioc::fs_sync(fd.as_fd().as_raw_fd()) }?;
    Ok(())
}

/// Waits until the deleted subvolume `subvolid` is cleaned up and its
/// space free (`BTRFS_IOC_SUBVOL_SYNC_WAIT`, kernel 6.10+; older: ENOTTY).
/// A subvolume already gone is success.
pub fn subvol_sync_wait(fd: impl AsFd, subvolid: u64) -> io::Result<()> {
    // mode BTRFS_SUBVOL_SYNC_WAIT_FOR_ONE
    let args = SubvolWait { subvolid, mode: 0, count: 0 };
    // SAFETY: `args` is a valid btrfs_ioctl_subvol_wait the kernel only reads.
    match unsafe { ioc::subvol_sync_wait(fd.as_fd().as_raw_fd(), &args) } {
        Ok(_) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What the kernel says of the subvolume holding `fd` (`BTRFS_IOC_GET_SUBVOL_INFO`, kernel 4.18+).
pub fn subvol_info(fd: impl AsFd) -> io::Result<SubvolInfo> {
    // SAFETY: an all-zero GetSubvolInfoArgs is valid (integers and byte arrays).
    let mut args: GetSubvolInfoArgs = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one btrfs_ioctl_get_subvol_info_args to the pointer, valid for writes.
    unsafe { ioc::get_subvol_info(fd.as_fd().as_raw_fd(), &mut args) }?;
    Ok(SubvolInfo { id: args.treeid, uuid: args.uuid, received_uuid: args.received_uuid, otime: args.otime })
}

/// Deletes the subvolume `name` in directory `dir`.
pub fn snap_destroy(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let args = VolArgs { fd: 0, name: name_buf(name)? };
    // SAFETY: `args` is a valid btrfs_ioctl_vol_args the kernel only reads.
    unsafe { ioc::snap_destroy(dir.as_fd().as_raw_fd(), &args) }?;
    Ok(())
}

/// The flags (`BTRFS_SUBVOL_*`) of the subvolume open as `fd`.
pub fn subvol_flags(fd: impl AsFd) -> io::Result<u64> {
    let mut flags = 0u64;
    // SAFETY: the kernel writes one u64 to the pointer, which is valid for writes.
    unsafe { ioc::subvol_getflags(fd.as_fd().as_raw_fd(), &mut flags) }?;
    Ok(flags)
}

/// Sets the flags of the subvolume open as `fd`.
pub fn set_subvol_flags(fd: impl AsFd, flags: u64) -> io::Result<()> {
    // SAFETY: the kernel reads one u64 from the pointer.
    unsafe { ioc::subvol_setflags(fd.as_fd().as_raw_fd(), &flags) }?;
    Ok(())
}

/// The id (tree id, = level-0 qgroup id) of the subvolume containing `fd`.
pub fn subvol_id(fd: impl AsFd) -> io::Result<u64> {
    let mut args =
        InoLookupArgs { treeid: 0, objectid: BTRFS_FIRST_FREE_OBJECTID, name: [0; BTRFS_INO_LOOKUP_PATH_MAX] };
    // SAFETY: `args` is a valid btrfs_ioctl_ino_lookup_args the kernel reads and writes in place.
    unsafe { ioc::ino_lookup(fd.as_fd().as_raw_fd(), &mut args) }?;
    Ok(args.treeid)
}

/// Runs a `BTRFS_IOC_QUOTA_CTL` command on the filesystem of `fd`.
pub fn quota_ctl(fd: impl AsFd, cmd: u64) -> io::Result<()> {
    let mut args = QuotaCtlArgs { cmd, status: 0 };
    // SAFETY: `args` is a valid btrfs_ioctl_quota_ctl_args the kernel reads and writes in place.
    unsafe { ioc::quota_ctl(fd.as_fd().as_raw_fd(), &mut args) }?;
    Ok(())
}

/// Creates (or with `create == false` removes) qgroup `qgroupid`.
pub fn qgroup_create(fd: impl AsFd, create: bool, qgroupid: u64) -> io::Result<()> {
    let args = QgroupCreateArgs { create: create.into(), qgroupid };
    // SAFETY: `args` is a valid btrfs_ioctl_qgroup_create_args the kernel only reads.
    unsafe { ioc::qgroup_create(fd.as_fd().as_raw_fd(), &args) }?;
    Ok(())
}

/// Sets the limits selected by `flags` on qgroup `qgroupid` (0: the
/// subvolume open as `fd`); [`BTRFS_QGROUP_LIMIT_CLEAR`] clears one.
pub fn qgroup_limit(fd: impl AsFd, qgroupid: u64, flags: u64, max_rfer: u64, max_excl: u64) -> io::Result<()> {
    let mut args = QgroupLimitArgs { qgroupid, flags, max_rfer, max_excl, rsv_rfer: 0, rsv_excl: 0 };
    // SAFETY: `args` is a valid btrfs_ioctl_qgroup_limit_args; the kernel copies it in.
    unsafe { ioc::qgroup_limit(fd.as_fd().as_raw_fd(), &mut args) }?;
    Ok(())
}

/// The item with key (`objectid`, `item_type`, `offset`) of tree `tree_id`,
/// if any; `Ok(None)` also when the tree does not exist.
pub fn search_item(
    fd: impl AsFd,
    tree_id: u64,
    objectid: u64,
    item_type: u32,
    offset: u64,
) -> io::Result<Option<Vec<u8>>> {
    let mut args = SearchArgs {
        key: SearchKey {
            tree_id,
            min_objectid: objectid,
            max_objectid: objectid,
            min_offset: offset,
            max_offset: offset,
            max_transid: u64::MAX,
            min_type: item_type,
            max_type: item_type,
            nr_items: 1,
            ..SearchKey::default()
        },
        buf: [0; BTRFS_SEARCH_ARGS_BUFSIZE],
    };
    // SAFETY: `args` is a valid btrfs_ioctl_search_args the kernel reads and writes in place.
    match unsafe { ioc::tree_search(fd.as_fd().as_raw_fd(), &mut args) } {
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        r => r?,
    };
    if args.key.nr_items == 0 {
        return Ok(None);
    }
    let header = &args.buf[..SEARCH_HEADER_LEN];
    let ne_u32 = |at: usize| header.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_ne_bytes);
    let (found_type, len) = (ne_u32(24), ne_u32(28) as usize);
    let item = args.buf.get(SEARCH_HEADER_LEN..SEARCH_HEADER_LEN + len);
    match item {
        Some(item) if found_type == item_type => Ok(Some(item.to_vec())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "malformed btrfs tree search result")),
    }
}

/// The items (`objectid`, `item_type`, offset) of tree `tree_id` whose
/// offsets are within `offsets`, as (offset, item) in key order; at most
/// what one search returns (a 4 KiB buffer), which is ample for the few
/// items the pool looks for (a qgroup's parents).
pub fn search_items(
    fd: impl AsFd,
    tree_id: u64,
    objectid: u64,
    item_type: u32,
    offsets: std::ops::RangeInclusive<u64>,
) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut args = SearchArgs {
        key: SearchKey {
            tree_id,
            min_objectid: objectid,
            max_objectid: objectid,
            min_offset: *offsets.start(),
            max_offset: *offsets.end(),
            max_transid: u64::MAX,
            min_type: item_type,
            max_type: item_type,
            nr_items: 4096,
            ..SearchKey::default()
        },
        buf: [0; BTRFS_SEARCH_ARGS_BUFSIZE],
    };
    // SAFETY: `args` is a valid btrfs_ioctl_search_args the kernel reads and writes in place.
    match unsafe { ioc::tree_search(fd.as_fd().as_raw_fd(), &mut args) } {
        Err(nix::errno::Errno::ENOENT) => return Ok(Vec::new()),
        r => r?,
    };
    let mut items = Vec::new();
    let mut at = 0usize;
    for _ in 0..args.key.nr_items {
        let header = args.buf.get(at..at + SEARCH_HEADER_LEN).ok_or_else(malformed)?;
        let ne_u64 = |i: usize| header.get(i..i + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_ne_bytes);
        let ne_u32 = |i: usize| header.get(i..i + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_ne_bytes);
        let (found_objectid, offset, found_type, len) = (ne_u64(8), ne_u64(16), ne_u32(24), ne_u32(28) as usize);
        let item = args.buf.get(at + SEARCH_HEADER_LEN..at + SEARCH_HEADER_LEN + len).ok_or_else(malformed)?;
        // The search walks keys in order between (min) and (max): a key
        // with the objectid and type in range but another's offset order
        // can come between; only exact matches count.
        if found_objectid == objectid && found_type == item_type && offsets.contains(&offset) {
            items.push((offset, item.to_vec()));
        }
        at += SEARCH_HEADER_LEN + len;
    }
    Ok(items)
}

fn malformed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "malformed btrfs tree search result")
}

/// Reads the little-endian u64 at byte `at` of an on-disk item (0 past its end).
pub fn le_u64(item: &[u8], at: usize) -> u64 {
    item.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// `FICLONE`: makes the file open as `dst` share all of `src`'s extents
/// (a reflink), replacing what `dst` held; O(1) in the file's size on
/// btrfs. Both must be on the same filesystem (`EXDEV` otherwise), and
/// filesystems without reflinks answer `EOPNOTSUPP`.
pub fn ficlone(dst: impl AsFd, src: impl AsFd) -> io::Result<()> {
    let src = src.as_fd().as_raw_fd();
    // SAFETY: FICLONE takes the source descriptor as its argument and touches no memory of ours.
    unsafe { ioc::ficlone(dst.as_fd().as_raw_fd(), src as nix::sys::ioctl::ioctl_param_type) }?;
    Ok(())
}

/// `LOOP_CTL_GET_FREE`: the number of a free (possibly new) loop device.
pub fn loop_get_free(control: impl AsFd) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument.
    let n = unsafe { ioc::loop_ctl_get_free(control.as_fd().as_raw_fd()) }?;
    u32::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `LOOP_CONFIGURE`: binds `backing` to the loop device open as `device`.
pub fn loop_configure(device: impl AsFd, backing: impl AsFd, flags: u32, file_name: &OsStr) -> io::Result<()> {
    let fd = u32::try_from(backing.as_fd().as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut lo_file_name = [0u8; 64];
    let name = file_name.as_bytes();
    let n = name.len().min(63);
    lo_file_name[..n].copy_from_slice(&name[..n]);
    let config = LoopConfig {
        fd,
        block_size: 0,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name,
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid struct loop_config the kernel only reads.
    unsafe { ioc::loop_configure(device.as_fd().as_raw_fd(), &config) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(size_of::<VolArgs>(), 4096);
        assert_eq!(size_of::<VolArgsV2>(), 4096);
        assert_eq!(std::mem::offset_of!(VolArgsV2, name), 0x38);
        assert_eq!(std::mem::offset_of!(VolArgsV2, size), 0x18);
        assert_eq!(std::mem::offset_of!(VolArgsV2, qgroup_inherit), 0x20);
        assert_eq!(size_of::<QgroupAssignArgs>(), 24);
        assert_eq!(size_of::<QuotaRescanArgs>(), 64);
        assert_eq!(size_of::<SubvolWait>(), 16);
        // btrfs_qgroup_inherit: 4 u64s, a 5-u64 limit, then the ids.
        assert_eq!(qgroup_inherit(&[7, 8]), [0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 8]);
        assert_eq!(size_of::<SearchKey>(), 104);
        assert_eq!(size_of::<SearchArgs>(), 4096);
        assert_eq!(size_of::<InoLookupArgs>(), 4096);
        assert_eq!(size_of::<QuotaCtlArgs>(), 16);
        assert_eq!(size_of::<QgroupCreateArgs>(), 16);
        assert_eq!(size_of::<QgroupLimitArgs>(), 48);
        assert_eq!(size_of::<LoopInfo64>(), 232);
        assert_eq!(size_of::<LoopConfig>(), 304);
        assert_eq!(size_of::<GetSubvolInfoArgs>(), 504);
        assert_eq!(std::mem::offset_of!(GetSubvolInfoArgs, parent_uuid), 312);
        assert_eq!(std::mem::offset_of!(GetSubvolInfoArgs, otime), 392);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_headers() {
        use nix::{request_code_read, request_code_readwrite, request_code_write};
        let m = BTRFS_IOCTL_MAGIC;
        assert_eq!(request_code_write!(m, 14, size_of::<VolArgs>()), 0x5000940e); // SUBVOL_CREATE
        assert_eq!(request_code_write!(m, 15, size_of::<VolArgs>()), 0x5000940f); // SNAP_DESTROY
        assert_eq!(request_code_readwrite!(m, 17, size_of::<SearchArgs>()), 0xd0009411); // TREE_SEARCH
        assert_eq!(request_code_readwrite!(m, 18, size_of::<InoLookupArgs>()), 0xd0009412); // INO_LOOKUP
        assert_eq!(request_code_write!(m, 23, size_of::<VolArgsV2>()), 0x50009417); // SNAP_CREATE_V2
        assert_eq!(request_code_write!(m, 24, size_of::<VolArgsV2>()), 0x50009418); // SUBVOL_CREATE_V2
        assert_eq!(request_code_write!(m, 41, size_of::<QgroupAssignArgs>()), 0x40189429); // QGROUP_ASSIGN
        assert_eq!(request_code_write!(m, 44, size_of::<QuotaRescanArgs>()), 0x4040942c); // QUOTA_RESCAN
        assert_eq!(request_code_write!(m, 65, size_of::<SubvolWait>()), 0x40109441); // SUBVOL_SYNC_WAIT
        assert_eq!(request_code_read!(m, 25, size_of::<u64>()), 0x80089419); // SUBVOL_GETFLAGS
        assert_eq!(request_code_write!(m, 26, size_of::<u64>()), 0x4008941a); // SUBVOL_SETFLAGS
        assert_eq!(request_code_readwrite!(m, 40, size_of::<QuotaCtlArgs>()), 0xc0109428); // QUOTA_CTL
        assert_eq!(request_code_write!(m, 42, size_of::<QgroupCreateArgs>()), 0x4010942a); // QGROUP_CREATE
        assert_eq!(request_code_read!(m, 43, size_of::<QgroupLimitArgs>()), 0x8030942b);
        assert_eq!(request_code_read!(m, 60, size_of::<GetSubvolInfoArgs>()), 0x81f8943c);
        // GET_SUBVOL_INFO
        // QGROUP_LIMIT
    }

    #[test]
    fn names_are_checked() {
        assert!(name_buf::<8>(OsStr::new("abc")).is_ok());
        assert!(name_buf::<8>(OsStr::new("")).is_err());
        assert!(name_buf::<8>(OsStr::new("a/b")).is_err());
        assert!(name_buf::<4>(OsStr::new("abcd")).is_err());
    }
}
