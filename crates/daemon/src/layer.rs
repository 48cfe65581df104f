//! Applying a layer: a (compressed) tarball of changes laid over a root
//! directory, as the OCI image specification's "changesets" describe them.
//!
//! ```text
//! member            what happens under dest
//! ─────────────     ────────────────────────────────────────────────────────────
//! a/b (file)        a/ resolved in dest (made when absent), b replaced by the file
//! a/ (dir)          made, or kept if a directory is there (its metadata updated)
//! a/l -> target     a symlink; its target is never followed while applying
//! a/h => a/b        a hard link to a/b, resolved in dest like every path
//! a/.wh.b           whiteout: a/b, from a lower layer, removed (recursively)
//! a/.wh..wh..opq    opaque directory: every child of a/ from a lower layer removed
//! ```
//!
//! The layer is hostile. Every path of a member (and of a hard link's
//! target) is resolved inside `dest` as if `dest` were `/`:
//! `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` from a
//! descriptor of `dest`, so an absolute or `../` symlink planted by an
//! earlier member (or layer) leads back into `dest`, as it would inside the
//! zone (Docker applies layers in a chroot for the same reason). The last
//! component is never followed: it is created with `O_EXCL`, `mkdirat`,
//! `symlinkat`, `linkat` or `mknodat` on the directory found, after
//! removing whatever was there. A member name with a `..` component is
//! refused outright (with the whole layer), as is a whiteout of `.` or `..`.
//! Owners (as root), modes (setuid bits included), modification times and
//! `SCHILY.xattr.*` extended attributes are kept; device nodes and FIFOs are
//! made as the image install makes them (the pool is mounted `nodev`, and
//! so are zones' roots).
//!
//! Whiteouts apply to what lower layers left: a whiteout never removes a
//! path this layer itself wrote (the specification's rule), so the order of
//! members within a layer does not matter.
//!
//! Nothing here knows about OCI registries: an incremental image's delta
//! is a layer too.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

/// The prefix of a whiteout member's name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name of an opaque directory's marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// How a layer was compressed (told by its first bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// A plain tarball.
    #[default]
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// xz (`fd 37 7a 58 5a 00`).
    Xz,
}

impl Compression {
    /// Its name as manifests write it (`none`, `gzip`, `zstd`, `xz`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
        }
    }
}

/// What applying a layer did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// The layer's compression.
    pub compression: Compression,
    /// Members read (whiteouts included).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories made or updated.
    pub dirs: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Hard links made.
    pub hardlinks: u64,
    /// Device nodes and FIFOs made.
    pub specials: u64,
    /// Whiteouts applied (a whiteout of a path that is not there counts too).
    pub whiteouts: u64,
    /// Opaque directories applied.
    pub opaques: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
}

/// Applies the layer read from `reader` (a tarball, plain or compressed
/// with gzip, zstd or xz, told by its magic) over the directory `dest`.
/// See the module documentation for what each member does and why no
/// member can reach outside `dest`. On error `dest` holds whatever was
/// applied before it: the caller discards it.
pub fn apply(reader: impl Read, dest: &Path) -> io::Result<LayerStats> {
    let (stream, compression) = decompress(reader)?;
    let root = open_root(dest)?;
    let mut layer =
        Layer { root: root.as_fd(), written: HashSet::new(), dir_times: Vec::new(), stats: LayerStats::default() };
    layer.stats.compression = compression;
    let is_root = nix::unistd::Uid::effective().is_root();
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        layer.stats.entries += 1;
        layer
            .member(&mut entry, &raw, is_root)
            .map_err(|e| io::Error::new(e.kind(), format!("layer member {}: {e}", String::from_utf8_lossy(&raw))))?;
    }
    // Directories' times last: writing into a directory changes its mtime.
    for (path, mtime) in std::mem::take(&mut layer.dir_times) {
        if let Ok(fd) = layer.open(&path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW) {
            set_times_fd(fd.as_fd(), mtime)?;
        }
    }
    Ok(layer.stats)
}

/// The stream decompressed as its first bytes say, and the compression.
fn decompress<'a>(mut reader: impl Read + 'a) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    // The first bytes, however short the reads, then read again in front of the rest.
    let mut head = Vec::with_capacity(6);
    (&mut reader).take(6).read_to_end(&mut head)?;
    let reader: Box<dyn Read + 'a> = Box::new(BufReader::new(io::Cursor::new(head.clone()).chain(reader)));
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(reader)), Compression::Gzip))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((Box::new(zstd::stream::read::Decoder::new(reader)?), Compression::Zstd))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Ok((Box::new(xz2::read::XzDecoder::new_multi_decoder(reader)), Compression::Xz))
    } else if head.starts_with(b"BZh") {
        Err(io::Error::new(io::ErrorKind::Unsupported, "bzip2 layers are not supported (gzip, zstd, xz or none)"))
    } else {
        Ok((reader, Compression::None))
    }
}

/// The state of one layer's application.
struct Layer<'r> {
    /// `dest`, opened as a directory.
    root: BorrowedFd<'r>,
    /// Every member path this layer wrote (whiteouts spare them).
    written: HashSet<PathBuf>,
    /// Directories whose modification time is set at the end.
    dir_times: Vec<(PathBuf, u64)>,
    stats: LayerStats,
}

/// A member's path in plain components: leading `/` and `.` dropped, `..`
/// refused (the whole layer is: a layer that names one is hostile or broken).
pub fn member_path(raw: &[u8]) -> io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid("a path with a `..` component would leave the layer's root"))
            }
        }
    }
    Ok(out)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Layer<'_> {
    fn member<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8], is_root: bool) -> io::Result<()> {
        let path = member_path(raw)?;
        let kind = entry.header().entry_type();
        let name = path.file_name().map(|n| n.as_bytes().to_vec());
        if let Some(name) = name.as_deref().filter(|n| n.starts_with(WHITEOUT_PREFIX.as_bytes())) {
            let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
            if name == OPAQUE_MARKER.as_bytes() {
                self.stats.opaques += 1;
                return self.opaque(&parent);
            }
            if name.starts_with(b".wh..wh.") {
                // aufs's own bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            let target = &name[WHITEOUT_PREFIX.len()..];
            if target.is_empty() || target == b"." || target == b".." {
                return Err(invalid("a whiteout must name an entry of its directory"));
            }
            self.stats.whiteouts += 1;
            return self.whiteout(&parent.join(OsStr::from_bytes(target)));
        }
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let owner = if is_root { Some((header.uid()?, header.gid()?)) } else { None };
        let mtime = header.mtime().unwrap_or(0);
        let device = match kind {
            tar::EntryType::Char | tar::EntryType::Block => {
                (header.device_major()?.unwrap_or(0), header.device_minor()?.unwrap_or(0))
            }
            _ => (0, 0),
        };
        let xattrs = xattrs_of(entry)?;
        if path.as_os_str().is_empty() {
            // The root itself ("./"): only its metadata.
            if !kind.is_dir() {
                return Err(invalid("only a directory can stand for the layer's root"));
            }
            let fd = self.open(&path, libc::O_RDONLY | libc::O_DIRECTORY)?;
            set_meta_fd(fd.as_fd(), owner, mode, &xattrs)?;
            self.dir_times.push((path, mtime));
            self.stats.dirs += 1;
            return Ok(());
        }
        let (dir, name) = self.parent_of(&path)?;
        let dir = dir.as_fd();
        let present = stat_at(dir, &name)?;
        let is_dir_there = present.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if present.is_some() && !(kind.is_dir() && is_dir_there) {
            remove_at(dir, &name)?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat(dir, &name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW, 0o600)?;
                let file = File::from(fd);
                // Zero blocks stay holes: a GNU sparse member's holes, read as
                // zeros, take no space (a terabyte sparse file, its data's).
                self.stats.bytes += copy_sparse(entry, &file, u64::MAX).map_err(CopyError::into_io)?;
                set_meta_fd(file.as_fd(), owner, mode, &xattrs)?;
                set_times_fd(file.as_fd(), mtime)?;
                self.stats.files += 1;
            }
            tar::EntryType::Directory => {
                if !is_dir_there {
                    // SAFETY: a live directory descriptor and a C string.
                    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })?;
                }
                let fd = openat(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
                set_meta_fd(fd.as_fd(), owner, mode, &xattrs)?;
                self.dir_times.push((path.clone(), mtime));
                self.stats.dirs += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| invalid("a symlink without a target"))?;
                let target = cstring(&target)?;
                // SAFETY: live C strings and a directory descriptor.
                cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
                if let Some((uid, gid)) = owner {
                    // SAFETY: as above; the link itself, not its target.
                    cvt(unsafe {
                        libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid as _, gid as _, libc::AT_SYMLINK_NOFOLLOW)
                    })?;
                }
                set_times_at(dir, &name, mtime)?;
                self.stats.symlinks += 1;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| invalid("a hard link without a target"))?;
                let target = member_path(&target)?;
                if target.as_os_str().is_empty() {
                    return Err(invalid("a hard link to the layer's root"));
                }
                let tname = cstring(target.file_name().map(OsStr::as_bytes).unwrap_or_default())?;
                let tdir = self
                    .open(target.parent().unwrap_or(Path::new("")), libc::O_RDONLY | libc::O_DIRECTORY)
                    .map_err(|e| io::Error::new(e.kind(), format!("hard link target {}: {e}", target.display())))?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                // SAFETY: live directory descriptors and C strings.
                cvt(unsafe { libc::linkat(tdir.as_raw_fd(), tname.as_ptr(), dir.as_raw_fd(), name.as_ptr(), 0) })
                    .map_err(|e| io::Error::new(e.kind(), format!("hard link to {}: {e}", target.display())))?;
                self.stats.hardlinks += 1;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ty = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(device.0, device.1);
                // SAFETY: a live directory descriptor and a C string.
                cvt(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), ty | 0o600, dev) })?;
                // Just made by us in a tree nobody else writes: not a symlink.
                if let Some((uid, gid)) = owner {
                    // SAFETY: as above.
                    cvt(unsafe {
                        libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid as _, gid as _, libc::AT_SYMLINK_NOFOLLOW)
                    })?;
                }
                // SAFETY: as above.
                cvt(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) })?;
                set_times_at(dir, &name, mtime)?;
                self.stats.specials += 1;
            }
            // Volume labels, multi-volume continuations and the like: no content.
            _ => return Ok(()),
        }
        self.written.insert(path);
        Ok(())
    }

    /// Opens `rel` resolved inside the root (its last component followed
    /// unless `flags` says `O_NOFOLLOW`).
    fn open(&self, rel: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c = cstring(if rel.as_os_str().is_empty() { b"." } else { rel.as_os_str().as_bytes() })?;
        openat2_in_root(self.root, &c, flags)
    }

    /// The directory holding `rel` (resolved inside the root; made, with
    /// its parents, when absent) and `rel`'s last component.
    fn parent_of(&self, rel: &Path) -> io::Result<(OwnedFd, CString)> {
        let name = rel.file_name().ok_or_else(|| invalid("an empty path"))?;
        let name = cstring(name.as_bytes())?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.mkdir_all(parent)?, name))
    }

    /// `rel` as a directory inside the root, made (0755) where absent.
    fn mkdir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        match self.open(rel, flags) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r,
        }
        // Some component is missing: make each from the deepest that resolves.
        let mut at = PathBuf::new();
        for c in rel.components() {
            let next = at.join(c);
            match self.open(&next, flags) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let dir = self.open(&at, flags)?;
                    let name = cstring(c.as_os_str().as_bytes())?;
                    // SAFETY: a live directory descriptor and a C string.
                    match cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) }) {
                        Ok(_) => {}
                        // A dangling symlink there: it names something absent.
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("{} is in the way of a directory (a dangling symlink?)", next.display()),
                            ))
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", next.display()))),
            }
            at = next;
        }
        self.open(rel, flags)
    }

    /// A whiteout: removes `rel` (resolved inside the root, its last
    /// component not followed) unless this layer wrote it.
    fn whiteout(&mut self, rel: &Path) -> io::Result<()> {
        if self.written.contains(rel) {
            return Ok(());
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = match self.open(parent, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(d) => d,
            // Nothing there to hide.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let name = cstring(rel.file_name().map(OsStr::as_bytes).unwrap_or_default())?;
        if stat_at(dir.as_fd(), &name)?.is_some() {
            remove_at(dir.as_fd(), &name)?;
        }
        Ok(())
    }

    /// An opaque directory: every child of `rel` that this layer did not
    /// write is removed (within children this layer wrote, recursively).
    fn opaque(&mut self, rel: &Path) -> io::Result<()> {
        let dir = match self.open(rel, libc::O_RDONLY | libc::O_DIRECTORY) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // The marker alone makes the directory.
                return self.mkdir_all(rel).map(drop);
            }
            Err(e) => return Err(e),
        };
        self.clear_lower(dir.as_fd(), rel)
    }

    fn clear_lower(&self, dir: BorrowedFd, rel: &Path) -> io::Result<()> {
        for name in list_dir(dir)? {
            let child = rel.join(OsStr::from_bytes(name.as_bytes()));
            if !self.written.contains(&child) {
                remove_at(dir, &name)?;
                continue;
            }
            let st = stat_at(dir, &name)?;
            if st.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) {
                let sub = openat(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
                self.clear_lower(sub.as_fd(), &child)?;
            }
        }
        Ok(())
    }
}

/// `SCHILY.xattr.<name>` PAX records of a member.
fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((cstring(name)?, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Why a bounded copy stopped.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The stream held more than the bound.
    TooBig,
    /// Reading or writing failed.
    Io(io::Error),
}

impl CopyError {
    /// As an I/O error (a bound passed is `InvalidData`).
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            CopyError::Io(e) => e,
            CopyError::TooBig => io::Error::new(io::ErrorKind::InvalidData, "more data than its bound"),
        }
    }
}

/// Writes `stream` into the empty file `out` from its start, leaving
/// all-zero blocks as holes, and gives the file the stream's length.
/// Stops with [`CopyError::TooBig`] as soon as the stream passes `max`
/// bytes (a decompression bomb reads no further). Returns the length.
pub(crate) fn copy_sparse(stream: &mut dyn Read, out: &File, max: u64) -> Result<u64, CopyError> {
    const BLOCK: usize = 64 << 10;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        // Fill the buffer (a decoder returns short reads).
        let mut n = 0;
        while n < buf.len() {
            match stream.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Io(e)),
            }
        }
        if n == 0 {
            break;
        }
        if at + n as u64 > max {
            return Err(CopyError::TooBig);
        }
        for (i, block) in buf[..n].chunks(BLOCK).enumerate() {
            if block.iter().any(|&b| b != 0) {
                out.write_all_at(block, at + (i * BLOCK) as u64).map_err(CopyError::Io)?;
            }
        }
        at += n as u64;
    }
    out.set_len(at).map_err(CopyError::Io)?;
    Ok(at)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cstring(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| invalid("a name with a NUL byte"))
}

fn open_root(dest: &Path) -> io::Result<OwnedFd> {
    let c = cstring(dest.as_os_str().as_bytes())?;
    // SAFETY: a valid C string; the descriptor is checked and owned.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dest.display())))?;
    // SAFETY: just returned by open, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat2(root, path)` as if `root` were `/`, refusing magic links.
fn openat2_in_root(root: BorrowedFd, path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: a live C string and an open_how of the size passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a rename raced the lookup (nothing else writes here, but cheap to honour).
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

fn openat(dir: BorrowedFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: a live directory descriptor and a C string; the result is checked and owned.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: just returned by openat, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat` without following; `None` when absent.
fn stat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Option<libc::stat>> {
    // SAFETY: stat is plain data, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live directory descriptor, a C string and a stat to fill.
    match cvt(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) }) {
        Ok(_) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names in a directory (without `.` and `..`).
fn list_dir(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    // fdopendir takes the descriptor it is given: give it its own.
    let own = openat(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(own);
    // SAFETY: raw is an open directory descriptor that fdopendir now owns.
    let d = unsafe { libc::fdopendir(raw) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    loop {
        // SAFETY: d is a live DIR stream; errno is cleared to tell the end from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: as above.
        let ent = unsafe { libc::readdir64(d) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: closing the stream we opened (and its descriptor).
            unsafe { libc::closedir(d) };
            if e.raw_os_error().unwrap_or(0) != 0 {
                return Err(e);
            }
            return Ok(names);
        }
        // SAFETY: d_name of a live dirent is a NUL-terminated string.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
}

/// Removes `name` from `dir`: a file, a link, or a directory with all it
/// holds (never following a symlink).
fn remove_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a live directory descriptor and a C string.
    match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }) {
        Ok(_) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::EPERM)) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    let sub = openat(dir, name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
    for child in list_dir(sub.as_fd())? {
        remove_at(sub.as_fd(), &child)?;
    }
    // SAFETY: as above.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })?;
    Ok(())
}

/// Owner (chown first: it clears setuid bits), mode and xattrs of an open file or directory.
fn set_meta_fd(fd: BorrowedFd, owner: Option<(u64, u64)>, mode: u32, xattrs: &[(CString, Vec<u8>)]) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        // SAFETY: a live descriptor.
        cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid as libc::uid_t, gid as libc::gid_t) })?;
    }
    // SAFETY: a live descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    for (name, value) in xattrs {
        // SAFETY: a live descriptor, a C string and a buffer of the length given.
        let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // A file system or a namespace without that xattr class: as tar does, skip.
            if !matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) {
                return Err(io::Error::new(e.kind(), format!("xattr {}: {e}", name.to_string_lossy())));
            }
        }
    }
    Ok(())
}

fn times(mtime: u64) -> [libc::timespec; 2] {
    let t = libc::timespec { tv_sec: mtime.min(i64::MAX as u64) as libc::time_t, tv_nsec: 0 };
    [t, t]
}

fn set_times_fd(fd: BorrowedFd, mtime: u64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: a live descriptor and two timespecs.
    cvt(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

fn set_times_at(dir: BorrowedFd, name: &CStr, mtime: u64) -> io::Result<()> {
    let ts = times(mtime);
    // SAFETY: a live directory descriptor, a C string and two timespecs.
    cvt(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) }).map(drop)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    /// A tarball builder for hostile and ordinary layers.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(0);
            h
        }
        fn file(mut self, path: &str, data: &[u8]) -> Tar {
            let mut h = Tar::header(tar::EntryType::Regular, 0o644);
            h.set_size(data.len() as u64);
            self.raw(&mut h, path);
            self.0.append(&h, data).unwrap();
            self
        }
        fn dir(mut self, path: &str) -> Tar {
            let mut h = Tar::header(tar::EntryType::Directory, 0o755);
            self.raw(&mut h, path);
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Tar {
            let mut h = Tar::header(kind, 0o777);
            self.raw(&mut h, path);
            h.set_link_name_literal(target).unwrap();
            h.set_cksum();
            self.0.append(&h, &[][..]).unwrap();
            self
        }
        /// Sets a name without the tar crate's own checks (it refuses `..`).
        fn raw(&mut self, h: &mut tar::Header, path: &str) {
            let name = &mut h.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn root() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        (dir, root)
    }

    #[test]
    fn applies_files_dirs_links_and_tells_the_compression() {
        let layer = Tar::new()
            .dir("./")
            .dir("./etc/")
            .file("./etc/motd", b"hello")
            .file("usr/lib/x", b"deep")
            .link(tar::EntryType::Symlink, "lib", "usr/lib")
            .link(tar::EntryType::Link, "etc/motd2", "./etc/motd")
            .bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let zst = zstd::stream::encode_all(&layer[..], 1).unwrap();
        for (bytes, want) in
            [(layer.clone(), Compression::None), (gz.finish().unwrap(), Compression::Gzip), (zst, Compression::Zstd)]
        {
            let (_d, root) = root();
            let st = apply(&bytes[..], &root).unwrap();
            assert_eq!(st.compression, want);
            assert_eq!((st.files, st.dirs, st.symlinks, st.hardlinks, st.bytes), (2, 2, 1, 1, 9));
            assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hello");
            assert_eq!(std::fs::read(root.join("lib/x")).unwrap(), b"deep", "through the layer's own symlink");
            let (a, b) =
                (std::fs::metadata(root.join("etc/motd")).unwrap(), std::fs::metadata(root.join("etc/motd2")).unwrap());
            assert_eq!(a.ino(), b.ino(), "a hard link");
            assert_eq!(a.mode() & 0o777, 0o644);
            assert_eq!(a.mtime(), 1_000_000);
            assert_eq!(std::fs::metadata(root.join("usr")).unwrap().mode() & 0o777, 0o755, "parents made 0755");
        }
        let (_d, root) = root();
        let err = apply(&b"BZh91AY&SY"[..], &root).unwrap_err();
        assert!(err.to_string().contains("bzip2"), "{err}");
    }

    #[test]
    fn zero_runs_stay_holes() {
        use std::os::unix::fs::MetadataExt;
        let (_t, dest) = root();
        let mut data = vec![0u8; 8 << 20];
        data[0] = 1;
        data[(8 << 20) - 1] = 2;
        apply(Tar::new().file("big", &data).bytes().as_slice(), &dest).unwrap();
        let md = std::fs::metadata(dest.join("big")).unwrap();
        assert_eq!(md.len(), 8 << 20);
        assert!(md.blocks() * 512 < 1 << 20, "holes where the zeros were: {} blocks", md.blocks());
        assert_eq!(std::fs::read(dest.join("big")).unwrap(), data);
    }

    #[test]
    fn whiteouts_remove_lower_entries_and_opaque_dirs_empty_them() {
        let (_d, root) = root();
        let lower = Tar::new()
            .file("etc/passwd", b"root")
            .file("etc/old", b"old")
            .file("opt/app/a", b"a")
            .file("opt/app/sub/b", b"b")
            .file("var/gone/x", b"x")
            .bytes();
        apply(&lower[..], &root).unwrap();
        let upper = Tar::new()
            .file("etc/.wh.old", b"")
            .file("var/.wh.gone", b"")
            .file("opt/app/new", b"n")
            .file("opt/app/.wh..wh..opq", b"")
            .file("etc/.wh.absent", b"")
            .file("etc/fresh", b"f")
            .file("etc/.wh.fresh", b"")
            .file("x/.wh..wh.plnk", b"")
            .bytes();
        let st = apply(&upper[..], &root).unwrap();
        assert_eq!((st.whiteouts, st.opaques), (4, 1));
        assert!(!root.join("etc/old").exists() && !root.join("var/gone").exists());
        assert!(root.join("etc/passwd").exists());
        assert!(!root.join("etc/.wh.old").exists(), "a whiteout is no file");
        assert_eq!(
            std::fs::read(root.join("opt/app/new")).unwrap(),
            b"n",
            "the layer's own entry stays (the marker came after it)"
        );
        assert!(!root.join("opt/app/a").exists() && !root.join("opt/app/sub").exists(), "lower entries gone");
        assert!(root.join("etc/fresh").exists(), "a whiteout spares what its own layer wrote");
        assert!(!root.join("x/.wh..wh.plnk").exists());
    }

    #[test]
    fn a_member_replaces_what_is_in_its_way() {
        let (_d, root) = root();
        apply(&Tar::new().file("a/b/c", b"1").link(tar::EntryType::Symlink, "l", "/etc").bytes()[..], &root).unwrap();
        apply(&Tar::new().file("a", b"file now").dir("l").bytes()[..], &root).unwrap();
        assert_eq!(std::fs::read(root.join("a")).unwrap(), b"file now");
        assert!(std::fs::symlink_metadata(root.join("l")).unwrap().is_dir(), "the symlink replaced, not followed");
    }

    /// A marker file on the host, outside the layer's root, that no member may touch.
    fn outside(dir: &Path) -> PathBuf {
        let p = dir.join("host-file");
        std::fs::write(&p, b"host").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    #[test]
    fn hostile_members_stay_inside_the_root() {
        let (d, root) = root();
        let host = outside(d.path());
        let abs = d.path().to_str().unwrap().to_string();
        // A symlink out, then files written through it (absolute and relative).
        // A symlink out whose target is missing in the root: refused.
        let dangling = Tar::new().link(tar::EntryType::Symlink, "out", &abs).file("out/host-file", b"pwned").bytes();
        let err = apply(&dangling[..], &root).unwrap_err();
        assert!(err.to_string().contains("in the way"), "{err}");
        assert_eq!(std::fs::read(&host).unwrap(), b"host");
        let layer = Tar::new()
            .dir(&format!(".{abs}/"))
            .link(tar::EntryType::Symlink, "out", &abs)
            .link(tar::EntryType::Symlink, "up", "../..")
            .file("out/host-file", b"pwned")
            .file("up/host-file", b"pwned")
            .link(tar::EntryType::Symlink, "f", &format!("{abs}/host-file"))
            .bytes();
        apply(&layer[..], &root).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"host");
        assert_eq!(
            std::fs::read(root.join(abs.trim_start_matches('/')).join("host-file")).unwrap(),
            b"pwned",
            "contained in the root"
        );
        // A second layer writing through a symlink left by the first: the symlink is replaced.
        apply(&Tar::new().file("f", b"pwned").bytes()[..], &root).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"host");
        // `..` in a member's name: the layer is refused.
        for name in ["../host-file", "a/../../host-file", "./../x"] {
            let err = apply(&Tar::new().file(name, b"pwned").bytes()[..], &root).unwrap_err();
            assert!(err.to_string().contains(".."), "{name}: {err}");
        }
        // A hard link to a host file: resolved inside the root, where there is none.
        let err = apply(&Tar::new().link(tar::EntryType::Link, "h", &format!("{abs}/host-file-x")).bytes()[..], &root)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        apply(&Tar::new().link(tar::EntryType::Link, "h2", &format!("{abs}/host-file")).bytes()[..], &root).unwrap();
        assert_ne!(std::fs::metadata(root.join("h2")).unwrap().ino(), std::fs::metadata(&host).unwrap().ino());
        let err = apply(&Tar::new().link(tar::EntryType::Link, "h3", "../host-file").bytes()[..], &root).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
        // Whiteouts of `..` and through symlinks.
        let err = apply(&Tar::new().file("../.wh.host-file", b"").bytes()[..], &root).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
        let err = apply(&Tar::new().file("etc/.wh...", b"").bytes()[..], &root).unwrap_err();
        assert!(err.to_string().contains("whiteout"), "{err}");
        apply(&Tar::new().link(tar::EntryType::Symlink, "o2", &abs).file("o2/.wh.host-file", b"").bytes()[..], &root)
            .unwrap();
        apply(&Tar::new().file("o2/.wh..wh..opq", b"").bytes()[..], &root).unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"host", "whiteouts stayed inside");
        assert_eq!(std::fs::metadata(&host).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    fn owners_setuid_bits_xattrs_and_devices_are_kept() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping owners_setuid_bits_xattrs_and_devices_are_kept: needs root");
            return;
        }
        let (_d, root) = root();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Tar::header(tar::EntryType::Regular, 0o4755);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_size(2);
        b.append_pax_extensions([("SCHILY.xattr.user.zv", &b"v"[..])]).unwrap();
        b.append_data(&mut h, "bin/su", &b"su"[..]).unwrap();
        let mut h = Tar::header(tar::EntryType::Char, 0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        b.append_data(&mut h, "dev/null", &[][..]).unwrap();
        apply(&b.into_inner().unwrap()[..], &root).unwrap();
        let md = std::fs::metadata(root.join("bin/su")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o4755, 1000, 1001));
        let mut buf = [0u8; 8];
        let path = CString::new(root.join("bin/su").as_os_str().as_bytes()).unwrap();
        // SAFETY: a C string and a buffer of the length given.
        let n = unsafe { libc::getxattr(path.as_ptr(), c"user.zv".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n.max(0) as usize], b"v");
        let md = std::fs::symlink_metadata(root.join("dev/null")).unwrap();
        assert_eq!((md.mode() & libc::S_IFMT, md.rdev()), (libc::S_IFCHR, libc::makedev(1, 3)));
    }

    #[test]
    fn member_paths_are_plain() {
        assert_eq!(member_path(b"./a//b/./c").unwrap(), Path::new("a/b/c"));
        assert_eq!(member_path(b"/abs").unwrap(), Path::new("abs"));
        assert_eq!(member_path(b"./").unwrap(), Path::new(""));
        assert!(member_path(b"a/..").is_err());
    }
}
