//! The zone's answers to `statfs(2)` and `fstatfs(2)` (and i386's
//! `statfs`, `fstatfs`, `statfs64`, `fstatfs64`): on its root file system
//! a zone sees its `quota`, as a SmartOS zone's `df` does, not the pool
//! all zones share. btrfs's own answer for a subvolume is the whole
//! pool's; the monitor serves the notifications the zone's filter sends
//! for these calls (see `notify.rs`) and answers for the zone's root with
//! the dataset's qgroup ([`crate::qgroup`]): size = the quota, used = what
//! it is charged, available = the rest (less when the pool itself has
//! less left, as ZFS's `df` shows). Everything else (`/proc`, `/dev/shm`,
//! the tmpfs on `/tmp`, `lofs` mounts, pipes) gets the kernel's answer,
//! and so does every call of a zone without a quota (as before).
//!
//! ```text
//!  the zone has no quota (or its root is not on btrfs) ──────────> CONTINUE
//!  what the call names:
//!    fd N: /proc/<pid>/fd/N opened O_PATH ── no such fd ─────────> CONTINUE (the kernel: EBADF)
//!    a path: read from the caller's memory ── unreadable, long ──> CONTINUE (EFAULT, ENAMETOOLONG)
//!      resolved as the caller would: openat2(O_PATH) from its root
//!      (RESOLVE_IN_ROOT; a relative path after the cwd's path in the
//!      root, or else beneath the cwd: RESOLVE_BENEATH), no magic links,
//!      from the dcache only
//!      (RESOLVE_CACHED; a miss walks again, uncached, only along the
//!      mount it starts on, and only when that is the zone's root), with
//!      the caller's fsuid, fsgid and groups unless it is the zone's
//!      root or may override permissions ── anything else (ENOENT,
//!      EACCES, EXDEV...) ───────────────────────────────────────> CONTINUE
//!  not on the zone's root file system (statx: its device) ───────> CONTINUE
//!  fstatfs(O_PATH) of it, blocks replaced from the quota,
//!  in the caller's layout ── beyond i386's 32 bits ─────────────> error EOVERFLOW
//!  └ written at the caller's buffer (see notify.rs)
//! ```
//!
//! **Nothing of the host's is reached.** The monitor runs as the host's
//! root, so it never resolves a path the way the host would: the walk
//! starts at the caller's own root (or cwd) and cannot leave it (`..` and
//! absolute symlinks stay inside, as in `rootfs.rs`), magic links
//! (`/proc/self/root`, `/proc/1/cwd`) are refused rather than followed as
//! the monitor, and `O_PATH` opens nothing (no FIFO blocks, no device is
//! opened, no automount is triggered). A descriptor is reopened through
//! the caller's `/proc/<pid>/fd/N` as `O_PATH` rather than taken with
//! `pidfd_getfd`: the monitor then never holds the caller's open file, so
//! its last `close` (a FUSE or network file's flush) never happens in the
//! monitor. What the monitor learns is only compared with the zone root's
//! device; the answer is the zone's own numbers, or the kernel's. The
//! path string is read once; the kernel reads its own copy when it
//! answers (`CONTINUE`), as the caller.
//!
//! **Nothing stalls the monitor.** Lookups come from the dcache
//! (`RESOLVE_CACHED` never calls into a file system that might block:
//! FUSE, such as lxcfs's files, or a network `lofs` source); only on the
//! zone's own btrfs does a miss read the disk. Attributes are read with
//! `AT_STATX_DONT_SYNC` (a FUSE file's cached ones), and `fstatfs` only
//! once the target is known to be on the zone's btrfs. The quota's limit
//! is read at every call (a tree search, ~1 µs), so `vmadm update quota=`
//! shows at once; its usage at most once per [`FRESH`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use super::notify::{Answer, Call, Caller};
use crate::qgroup::{self, Quota};

/// How long the qgroup's numbers are reused.
const FRESH: Duration = Duration::from_millis(50);
/// The longest path `statfs` takes, its NUL included.
const PATH_MAX: usize = 4096;
/// The size of the native `struct statfs` of 64-bit kernels.
const NATIVE_SIZE: usize = 120;
/// i386's `struct statfs`.
const COMPAT_SIZE: usize = 64;
/// i386's `struct statfs64` (packed to 4 bytes), the size `statfs64` checks.
const COMPAT64_SIZE: usize = 84;
/// `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`.
const DAC_CAPS: u64 = (1 << 1) | (1 << 2);

/// A struct's layout: the native one, or i386's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// `struct statfs` of a 64-bit kernel (x86-64, aarch64).
    Native,
    /// i386's `struct statfs` (32-bit counts).
    Compat,
    /// i386's `struct statfs64`.
    Compat64,
}

/// What a call names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A path at this address of the caller's.
    Path(u64),
    /// A descriptor of the caller's.
    Fd(u32),
}

/// One `statfs`-family call, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Request {
    target: Target,
    /// Where the struct goes.
    buf: u64,
    /// The size the caller gave (`statfs64`, `fstatfs64`).
    size: Option<u64>,
    layout: Layout,
}

impl Request {
    /// The call `name` of the native ABI (or i386's) with `args`, if it is
    /// one of the family.
    pub(super) fn decode(name: &str, native: bool, args: &[u64; 6]) -> Option<Request> {
        // i386's arguments are 32 bits wide.
        let arg = |i: usize| if native { args[i] } else { args[i] & 0xffff_ffff };
        let (target, buf, size, layout) = match (native, name) {
            (true, "statfs") => (Target::Path(arg(0)), arg(1), None, Layout::Native),
            (true, "fstatfs") => (Target::Fd(arg(0) as u32), arg(1), None, Layout::Native),
            (false, "statfs") => (Target::Path(arg(0)), arg(1), None, Layout::Compat),
            (false, "fstatfs") => (Target::Fd(arg(0) as u32), arg(1), None, Layout::Compat),
            (false, "statfs64") => (Target::Path(arg(0)), arg(2), Some(arg(1)), Layout::Compat64),
            (false, "fstatfs64") => (Target::Fd(arg(0) as u32), arg(2), Some(arg(1)), Layout::Compat64),
            _ => return None,
        };
        Some(Request { target, buf, size, layout })
    }
}

/// A `struct statfs`, field by field (the kernel's `struct kstatfs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Statfs {
    pub(super) f_type: u64,
    pub(super) bsize: u64,
    pub(super) blocks: u64,
    pub(super) bfree: u64,
    pub(super) bavail: u64,
    pub(super) files: u64,
    pub(super) ffree: u64,
    pub(super) fsid: [u32; 2],
    pub(super) namelen: u64,
    pub(super) frsize: u64,
    pub(super) flags: u64,
}

impl Statfs {
    /// From the native struct's bytes.
    fn from_native(b: &[u8; NATIVE_SIZE]) -> Statfs {
        let long = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or_default());
        let int = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap_or_default());
        Statfs {
            f_type: long(0),
            bsize: long(8),
            blocks: long(16),
            bfree: long(24),
            bavail: long(32),
            files: long(40),
            ffree: long(48),
            fsid: [int(56), int(60)],
            namelen: long(64),
            frsize: long(72),
            flags: long(80),
        }
    }

    /// The native struct's bytes (spare fields zero).
    fn native(&self) -> [u8; NATIVE_SIZE] {
        let mut b = [0u8; NATIVE_SIZE];
        let longs = [self.f_type, self.bsize, self.blocks, self.bfree, self.bavail, self.files, self.ffree];
        for (i, v) in longs.iter().enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        b[56..60].copy_from_slice(&self.fsid[0].to_ne_bytes());
        b[60..64].copy_from_slice(&self.fsid[1].to_ne_bytes());
        for (i, v) in [self.namelen, self.frsize, self.flags].iter().enumerate() {
            b[64 + 8 * i..72 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// i386's `struct statfs`, or `None` where a count needs more than 32
    /// bits (the kernel's `EOVERFLOW`; `f_files` and `f_ffree` of -1 pass).
    fn compat(&self) -> Option<[u8; COMPAT_SIZE]> {
        let fits = |v: u64| v >> 32 == 0;
        let fits_or_all = |v: u64| v == u64::MAX || fits(v);
        let ok = [self.blocks, self.bfree, self.bavail, self.bsize, self.frsize].into_iter().all(fits)
            && fits_or_all(self.files)
            && fits_or_all(self.ffree);
        if !ok {
            return None;
        }
        let mut b = [0u8; COMPAT_SIZE];
        let words = [self.f_type, self.bsize, self.blocks, self.bfree, self.bavail, self.files, self.ffree];
        for (i, v) in words.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&(*v as u32).to_ne_bytes());
        }
        b[28..32].copy_from_slice(&self.fsid[0].to_ne_bytes());
        b[32..36].copy_from_slice(&self.fsid[1].to_ne_bytes());
        for (i, v) in [self.namelen, self.frsize, self.flags].iter().enumerate() {
            b[36 + 4 * i..40 + 4 * i].copy_from_slice(&(*v as u32).to_ne_bytes());
        }
        Some(b)
    }

    /// i386's `struct statfs64`, or `None` where the block size needs more
    /// than 32 bits (the kernel's `EOVERFLOW`).
    fn compat64(&self) -> Option<[u8; COMPAT64_SIZE]> {
        if (self.bsize | self.frsize) >> 32 != 0 {
            return None;
        }
        let mut b = [0u8; COMPAT64_SIZE];
        b[0..4].copy_from_slice(&(self.f_type as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&(self.bsize as u32).to_ne_bytes());
        for (i, v) in [self.blocks, self.bfree, self.bavail, self.files, self.ffree].iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b[48..52].copy_from_slice(&self.fsid[0].to_ne_bytes());
        b[52..56].copy_from_slice(&self.fsid[1].to_ne_bytes());
        for (i, v) in [self.namelen, self.frsize, self.flags].iter().enumerate() {
            b[56 + 4 * i..60 + 4 * i].copy_from_slice(&(*v as u32).to_ne_bytes());
        }
        Some(b)
    }

    /// The bytes of this struct in `layout`; `None`: `EOVERFLOW`.
    fn to_bytes(self, layout: Layout) -> Option<Vec<u8>> {
        match layout {
            Layout::Native => Some(self.native().to_vec()),
            Layout::Compat => self.compat().map(|b| b.to_vec()),
            Layout::Compat64 => self.compat64().map(|b| b.to_vec()),
        }
    }
}

/// The zone's answer: the file system's own (`real`), its blocks replaced
/// by the quota's. Size = what is charged + what is left, which is the
/// quota unless the pool has less left than the quota (then, as ZFS's
/// `df`, what is left is the pool's, and the size shrinks with it).
pub(super) fn with_quota(real: Statfs, q: Quota) -> Statfs {
    // The unit of the block counts (statvfs's f_frsize).
    let unit = if real.frsize > 0 { real.frsize } else { real.bsize }.max(1);
    let pool_left = real.bavail.saturating_mul(unit);
    let left = q.limit.saturating_sub(q.charged).min(pool_left);
    let size = q.charged.saturating_add(left);
    Statfs { blocks: size / unit, bfree: left / unit, bavail: left / unit, ..real }
}

/// Where the quota comes from.
enum Source {
    /// The qgroup of the subvolume holding the zone's root (a descriptor
    /// of the root, for the ioctls).
    Qgroup { dir: OwnedFd, subvol: u64 },
    /// A fixed one (tests of the resolution on any file system).
    #[cfg(test)]
    Fixed(Option<Quota>),
}

/// The zone's root file system, as the answers need it.
pub(super) struct RootFs {
    /// Its device (`st_dev`: the dataset's subvolume); `None`: unknown,
    /// and every call is the kernel's.
    dev: Option<(u32, u32)>,
    /// The host uid of the zone's root.
    root_uid: u32,
    source: Option<Source>,
    /// The qgroup's info item (its usage) last read, and when.
    usage: Option<(Instant, Vec<u8>)>,
}

impl RootFs {
    /// The zone root at `zone_root` (a host path the daemon made). On a
    /// file system without qgroups (the `dir` backend), the kernel answers
    /// every call.
    pub(super) fn open(zone_root: &Path, root_uid: u32) -> RootFs {
        let dir = CString::new(zone_root.as_os_str().as_encoded_bytes()).ok().and_then(|c| {
            // SAFETY: a valid C string; the descriptor is checked and owned.
            let fd = unsafe {
                libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            };
            // SAFETY: the kernel just returned this descriptor; nobody else owns it.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        });
        let Some(dir) = dir else { return RootFs { dev: None, root_uid, source: None, usage: None } };
        let dev = dev_of(as_fd(&dir));
        let source = qgroup::subvol_of(as_fd(&dir)).ok().map(|subvol| Source::Qgroup { dir, subvol });
        RootFs { dev, root_uid, source, usage: None }
    }

    /// A root at `dir` with a fixed quota, for tests on any file system
    /// (with the host's root as the zone's).
    #[cfg(test)]
    pub(super) fn fixed(dir: &Path, quota: Option<Quota>) -> RootFs {
        let fd = crate::rootfs::open_dir(dir).unwrap();
        RootFs { dev: dev_of(as_fd(&fd)), root_uid: 0, source: Some(Source::Fixed(quota)), usage: None }
    }

    /// The quota now: its limit as set (so `vmadm update quota=` shows at
    /// once), its usage read at most once per [`FRESH`] (btrfs updates it
    /// at its commits anyway); `None`: none.
    fn quota(&mut self) -> Option<Quota> {
        let (dir, subvol) = match self.source.as_ref()? {
            Source::Qgroup { dir, subvol } => (dir, *subvol),
            #[cfg(test)]
            Source::Fixed(q) => return *q,
        };
        let limit = qgroup::limit_item(as_fd(dir), subvol).ok()??;
        let now = Instant::now();
        if self.usage.as_ref().is_none_or(|(at, _)| now.duration_since(*at) >= FRESH) {
            self.usage = Some((now, qgroup::info_item(as_fd(dir), subvol).ok()?));
        }
        qgroup::from_items(&limit, self.usage.as_ref().map_or(&[][..], |(_, info)| info))
    }

    /// The answer to `call` (see the module documentation).
    pub(super) fn answer(&mut self, call: &Call, req: Request) -> Answer {
        let Some(zone_dev) = self.dev else { return Answer::Continue };
        let Some(quota) = self.quota() else { return Answer::Continue };
        if req.layout == Layout::Compat64 && req.size != Some(COMPAT64_SIZE as u64) {
            // The kernel's EINVAL.
            return Answer::Continue;
        }
        let target = match req.target {
            Target::Fd(fd) => CString::new(format!("fd/{fd}"))
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
                .and_then(|rel| call.caller.open_at(&rel, libc::O_PATH)),
            Target::Path(addr) => match call.caller.read_cstring(addr, PATH_MAX - 1) {
                Some(path) if !path.is_empty() => resolve(call.caller, &path, zone_dev, self.root_uid),
                _ => return Answer::Continue,
            },
        };
        let Ok(target) = target else { return Answer::Continue };
        if dev_of(as_fd(&target)) != Some(zone_dev) {
            return Answer::Continue;
        }
        let Ok(real) = fstatfs(as_fd(&target)) else { return Answer::Continue };
        match with_quota(real, quota).to_bytes(req.layout) {
            Some(bytes) => Answer::Write { addr: req.buf, bytes },
            None => Answer::Errno(libc::EOVERFLOW),
        }
    }
}

fn as_fd(fd: &OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

/// `statx` of `fd` from cached attributes (no FUSE or NFS round trip).
fn statx(fd: BorrowedFd, mask: libc::c_uint) -> io::Result<libc::statx> {
    // SAFETY: statx fills the zeroed struct we own; the path is empty (the descriptor itself).
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let flags = libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC;
        if libc::statx(fd.as_raw_fd(), c"".as_ptr(), flags, mask, &mut stx) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stx)
    }
}

/// The device of the file system `fd` is on.
fn dev_of(fd: BorrowedFd) -> Option<(u32, u32)> {
    statx(fd, 0).ok().map(|s| (s.stx_dev_major, s.stx_dev_minor))
}

/// Whether `a` and `b` are the same directory of the same mount.
fn same_place(a: BorrowedFd, b: BorrowedFd) -> bool {
    let key = |fd| {
        statx(fd, libc::STATX_INO | libc::STATX_MNT_ID)
            .ok()
            .map(|s| (s.stx_dev_major, s.stx_dev_minor, s.stx_ino, s.stx_mnt_id))
    };
    matches!((key(a), key(b)), (Some(x), Some(y)) if x == y)
}

/// The kernel's native `statfs` of `fd`.
fn fstatfs(fd: BorrowedFd) -> io::Result<Statfs> {
    let mut b = [0u8; NATIVE_SIZE];
    // SAFETY: fstatfs writes one native struct statfs (NATIVE_SIZE bytes) into our buffer.
    if unsafe { libc::syscall(libc::SYS_fstatfs, fd.as_raw_fd(), b.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Statfs::from_native(&b))
}

fn openat2(dir: BorrowedFd, path: &CStr, resolve: u64) -> io::Result<OwnedFd> {
    crate::rootfs::openat2(dir, path, libc::O_PATH, 0, resolve)
}

/// `path`, named by `caller`, resolved as the caller would (see the
/// module documentation); an error where it cannot be done safely.
fn resolve(caller: &Caller, path: &CStr, zone_dev: (u32, u32), root_uid: u32) -> io::Result<OwnedFd> {
    let dirs = libc::O_PATH | libc::O_DIRECTORY;
    let root = caller.open_at(c"root", dirs)?;
    let mut absolute = None;
    let (dir, scope) = if path.to_bytes().first() == Some(&b'/') {
        (root, libc::RESOLVE_IN_ROOT)
    } else {
        let cwd = caller.open_at(c"cwd", dirs)?;
        if same_place(as_fd(&root), as_fd(&cwd)) {
            (root, libc::RESOLVE_IN_ROOT)
        } else if let Some(p) = cwd_in_root(caller, as_fd(&root), as_fd(&cwd)).and_then(|cwd| joined(&cwd, path)) {
            absolute = Some(p);
            (root, libc::RESOLVE_IN_ROOT)
        } else {
            (cwd, libc::RESOLVE_BENEATH)
        }
    };
    let path = absolute.as_deref().unwrap_or(path);
    let on_zone_root = dev_of(as_fd(&dir)) == Some(zone_dev);
    // The zone's root (the owner of its /proc/<pid>) may override
    // permissions; anyone else's credentials are read and used.
    let _as_caller = match caller.owner() {
        Some(uid) if uid == root_uid => None,
        _ => Some(Creds::of(caller)?).filter(|c| !c.privileged()).map(|c| AsCaller::enter(&c)).transpose()?,
    };
    let scope = scope | libc::RESOLVE_NO_MAGICLINKS;
    match openat2(as_fd(&dir), path, scope | libc::RESOLVE_CACHED) {
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && on_zone_root => {
            openat2(as_fd(&dir), path, scope | libc::RESOLVE_NO_XDEV)
        }
        r => r,
    }
}

/// The caller's cwd as a path from its root: what its `/proc/<pid>/cwd`
/// link says, when that path, resolved in the root, is the cwd itself
/// (not when the caller's root is not its mount namespace's, or the cwd
/// was moved or removed).
fn cwd_in_root(caller: &Caller, root: BorrowedFd, cwd: BorrowedFd) -> Option<CString> {
    let link = caller.read_link(c"cwd")?;
    if link.to_bytes().first() != Some(&b'/') {
        return None;
    }
    let resolve =
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_CACHED;
    let found = openat2(root, &link, resolve).ok()?;
    same_place(as_fd(&found), cwd).then_some(link)
}

/// `dir/rel`, if it is not longer than a path may be.
fn joined(dir: &CStr, rel: &CStr) -> Option<CString> {
    let mut p = dir.to_bytes().to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(rel.to_bytes());
    if p.len() >= PATH_MAX {
        return None;
    }
    CString::new(p).ok()
}

/// The credentials a caller's path lookups are checked with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Creds {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
    /// Its effective capabilities (in its user namespace).
    cap_eff: u64,
}

impl Creds {
    /// From the caller's `/proc/<pid>/status` (ids as the host sees them).
    fn of(caller: &Caller) -> io::Result<Creds> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::from(caller.open_at(c"status", libc::O_RDONLY)?).read_to_string(&mut text)?;
        Creds::parse(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable status"))
    }

    fn parse(status: &str) -> Option<Creds> {
        let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        // Real, effective, saved, file system.
        let fs_id = |key: &str| field(key)?.split_whitespace().nth(3)?.parse().ok();
        let groups = field("Groups:")?.split_whitespace().map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?;
        Some(Creds {
            fsuid: fs_id("Uid:")?,
            fsgid: fs_id("Gid:")?,
            groups,
            cap_eff: u64::from_str_radix(field("CapEff:")?, 16).ok()?,
        })
    }

    /// Whether the caller's lookups pass every permission check the
    /// monitor's do (it may override them in its namespace).
    fn privileged(&self) -> bool {
        self.cap_eff & DAC_CAPS != 0
    }
}

/// The monitor's file system ids and groups set to a caller's for its
/// lookups (which drops the monitor's `CAP_DAC_*` from its effective set
/// meanwhile); put back when dropped. The monitor is single-threaded, and
/// the raw calls change only this thread.
struct AsCaller {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<libc::gid_t>,
}

impl AsCaller {
    fn enter(c: &Creds) -> io::Result<AsCaller> {
        // SAFETY: getgroups fills at most the given count into our buffer.
        let groups = unsafe {
            let n = libc::getgroups(0, std::ptr::null_mut());
            let mut g = vec![0; n.max(0) as usize];
            let n = libc::getgroups(g.len() as libc::c_int, g.as_mut_ptr());
            g.truncate(n.max(0) as usize);
            g
        };
        // SAFETY: setgroups reads the given count of gids from our slice; setfs[ug]id take ids.
        let (fsgid, fsuid) = unsafe {
            if libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            (libc::setfsgid(c.fsgid) as u32, libc::setfsuid(c.fsuid) as u32)
        };
        let back = AsCaller { fsuid, fsgid, groups };
        // setfs[ug]id return the previous id whether or not they changed it: ask again.
        // SAFETY: -1 is not an id: these only return the current ones.
        let now = unsafe { (libc::setfsuid(u32::MAX) as u32, libc::setfsgid(u32::MAX) as u32) };
        if now != (c.fsuid, c.fsgid) {
            return Err(io::Error::from(io::ErrorKind::PermissionDenied));
        }
        Ok(back)
    }
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        // SAFETY: as in enter, with the monitor's own ids and groups.
        unsafe {
            libc::setfsuid(self.fsuid);
            libc::setfsgid(self.fsgid);
            libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests;
