//! Image files written from datasets: the file `imgadm create` writes and
//! the file the IMGAPI source serves.
//!
//! - A zone's image (`lx-dataset`) is a tar of its root, read as it is on
//!   the pool (owners as the image has them; the zone's id mapping is a
//!   mount's, not the files'). Members are in a fixed order (by name, depth
//!   first), so the same tree gives the same bytes. Hard links stay links,
//!   symlinks are never followed, xattrs go as PAX `SCHILY.xattr.*` records
//!   (what the installer's extraction restores), sockets are left out.
//! - An **incremental** image holds only what changed since its origin: the
//!   instance's root is a snapshot of its image's, so a file whose inode,
//!   ctime and mtime are the origin's is the origin's (ctime cannot be set
//!   back); what the instance removed goes as an OCI whiteout
//!   (`.wh.<name>`), and an entry whose type changed replaces the origin's.
//! - A hardware VM's image (`zvol`) is its disk, raw, its holes read as
//!   zeros without being read (`SEEK_DATA`).
//!
//! Either is compressed as asked (none, gzip, xz, zstd) while its SHA-1
//! and size, the manifest's `files` entry, are taken.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};

/// A compression of an image file, as manifests name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// `none`.
    None,
    /// `gzip`.
    Gzip,
    /// `xz`.
    Xz,
    /// `zstd` (zonevisor's; SmartOS's imgadm reads gzip, bzip2 and xz).
    Zstd,
}

impl Compression {
    /// The names accepted, in the order `imgadm create -c` lists them.
    pub const NAMES: &'static [&'static str] = &["none", "gzip", "xz", "zstd"];

    /// The compression named `name`.
    pub fn parse(name: &str) -> Option<Compression> {
        match name {
            "none" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Its manifest name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The file name suffix it adds (`.gz`), empty for none.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }
}

/// An image file's `files` entry: its SHA-1 and size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    /// Lowercase hex SHA-1 of the file as written.
    pub sha1: String,
    /// Its length.
    pub size: u64,
}

/// What a tree's tar holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Members written (whiteouts included).
    pub entries: u64,
    /// Whiteouts among them (an incremental image's removals).
    pub whiteouts: u64,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Hashes and counts what passes to `inner`.
struct Digesting<W> {
    inner: W,
    sha1: Sha1,
    size: u64,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha1.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressor in front of a [`Digesting`] writer.
enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Xz(xz2::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(c: Compression, out: W) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(out, flate2::Compression::default())),
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(out, 6)),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(out, 3)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Writes `body` through compression `c` into `out`, returning the
/// written file's digest.
fn digested<W: Write>(
    out: W,
    c: Compression,
    body: impl FnOnce(&mut Encoder<Digesting<W>>) -> io::Result<()>,
) -> io::Result<FileDigest> {
    let mut enc = Encoder::new(c, Digesting { inner: out, sha1: Sha1::new(), size: 0 })?;
    body(&mut enc)?;
    let mut d = enc.finish()?;
    d.flush()?;
    Ok(FileDigest { sha1: hex::encode(d.sha1.finalize()), size: d.size })
}

/// Writes the tar of the tree at `root` (incremental against `origin`, the
/// root it was snapshotted from, when given) to `out`, compressed as `c`.
pub fn write_tree(
    root: &Path,
    origin: Option<&Path>,
    out: impl Write,
    c: Compression,
) -> io::Result<(FileDigest, TreeStats)> {
    let mut stats = TreeStats::default();
    let digest = digested(out, c, |enc| {
        let mut tar = TreeTar { builder: tar::Builder::new(enc), links: HashMap::new(), stats: &mut stats };
        tar.dir(root, origin, Path::new(""))?;
        tar.builder.finish()
    })?;
    Ok((digest, stats))
}

/// Writes the raw disk `disk` to `out`, compressed as `c`: its holes are
/// zeros, found with `SEEK_DATA` rather than read.
pub fn write_disk(disk: &File, out: impl Write, c: Compression) -> io::Result<FileDigest> {
    let len = disk.metadata()?.len();
    digested(out, c, |enc| {
        let zeros = vec![0u8; 1 << 20];
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < len {
            let data = match nix::unistd::lseek(disk, at as i64, nix::unistd::Whence::SeekData) {
                Ok(d) => (d as u64).min(len),
                // No data after `at`: the rest is a hole.
                Err(nix::errno::Errno::ENXIO) => len,
                Err(e) => return Err(e.into()),
            };
            while at < data {
                let n = ((data - at) as usize).min(zeros.len());
                enc.write_all(&zeros[..n])?;
                at += n as u64;
            }
            if at >= len {
                break;
            }
            let hole = match nix::unistd::lseek(disk, at as i64, nix::unistd::Whence::SeekHole) {
                Ok(h) => (h as u64).min(len),
                Err(e) => return Err(e.into()),
            };
            while at < hole {
                let want = ((hole - at) as usize).min(buf.len());
                let n = disk.read_at(&mut buf[..want], at)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the disk shrank while being read"));
                }
                enc.write_all(&buf[..n])?;
                at += n as u64;
            }
        }
        Ok(())
    })
}

/// Where a tar of a tree is being written.
struct TreeTar<'a, W: Write> {
    builder: tar::Builder<W>,
    /// Files with more than one link already written: (dev, ino) → name.
    links: HashMap<(u64, u64), PathBuf>,
    stats: &'a mut TreeStats,
}

/// The names in a directory, sorted (bytewise).
fn names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<Vec<_>>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Whether `new` is the same inode, unchanged, as `old` in the tree it was
/// snapshotted from.
fn unchanged(new: &Metadata, old: &Metadata) -> bool {
    new.ino() == old.ino()
        && new.ctime() == old.ctime()
        && new.ctime_nsec() == old.ctime_nsec()
        && new.mtime() == old.mtime()
        && new.mtime_nsec() == old.mtime_nsec()
        && new.size() == old.size()
        && new.mode() == old.mode()
        && new.uid() == old.uid()
        && new.gid() == old.gid()
}

/// A member's header from its metadata (type set by the caller).
fn header(meta: &Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_size(0);
    h
}

impl<W: Write> TreeTar<'_, W> {
    /// Writes the members under directory `dir` (named `rel` in the tar),
    /// against `origin`, the same directory in the origin tree, if any.
    fn dir(&mut self, dir: &Path, origin: Option<&Path>, rel: &Path) -> io::Result<()> {
        let here = names(dir)?;
        if let Some(o) = origin {
            // What the origin has and this tree no longer does.
            let mut gone: Vec<OsString> = Vec::new();
            for name in names(o)? {
                if here.binary_search_by(|n| n.as_bytes().cmp(name.as_bytes())).is_err() {
                    gone.push(name);
                }
            }
            for name in gone {
                let mut wh = OsString::from(".wh.");
                wh.push(&name);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(0);
                self.builder.append_data(&mut h, rel.join(wh), io::empty())?;
                self.stats.entries += 1;
                self.stats.whiteouts += 1;
            }
        }
        for name in here {
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path)?;
            let old_path = origin.map(|o| o.join(&name));
            let old = old_path.as_deref().and_then(|p| std::fs::symlink_metadata(p).ok());
            let member = rel.join(&name);
            let same_type = old.as_ref().is_some_and(|o| o.file_type() == meta.file_type());
            let keep = same_type && old.as_ref().is_some_and(|o| unchanged(&meta, o));
            if meta.is_dir() {
                if !keep {
                    self.entry(&path, &meta, &member)?;
                }
                // The origin's directory of that name, if it was one.
                let below = if same_type { old_path.as_deref() } else { None };
                self.dir(&path, below, &member)?;
            } else if !keep {
                self.entry(&path, &meta, &member)?;
            }
        }
        Ok(())
    }

    /// Writes one member (not a directory's contents).
    fn entry(&mut self, path: &Path, meta: &Metadata, member: &Path) -> io::Result<()> {
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        self.xattrs(path, ft.is_symlink())?;
        let mut h = header(meta);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.builder.append_data(&mut h, member, io::empty())?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(path)?;
            self.builder.append_link(&mut h, member, target)?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    let first = first.clone();
                    self.builder.append_link(&mut h, member, first)?;
                    self.stats.entries += 1;
                    return Ok(());
                }
                self.links.insert(key, member.to_path_buf());
            }
            // Never through a link someone put in its place.
            let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
            // A file with holes keeps them: a sparse member, its data only
            // (a zone's 1 TiB sparse file is not 1 TiB of zeros here).
            if meta.blocks() * 512 < meta.len() {
                let segments = data_segments(&f, meta.len())?;
                if segments.iter().map(|s| s.1).sum::<u64>() < meta.len() {
                    self.sparse(&mut h, member, &f, &segments, meta.len())?;
                    self.stats.entries += 1;
                    return Ok(());
                }
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            // Exactly the length the header says, even if it changed.
            let mut body = f.take(meta.len()).chain(io::repeat(0)).take(meta.len());
            self.builder.append_data(&mut h, member, &mut body)?;
            self.stats.bytes += meta.len();
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            };
            h.set_entry_type(kind);
            if ft.is_char_device() || ft.is_block_device() {
                h.set_device_major(libc::major(meta.rdev()))?;
                h.set_device_minor(libc::minor(meta.rdev()))?;
            }
            self.builder.append_data(&mut h, member, io::empty())?;
        }
        self.stats.entries += 1;
        Ok(())
    }

    /// Writes a regular file with holes as a GNU sparse member: its data
    /// `segments` (offset, length), the map in the header (and extension
    /// headers past four), `len` its real size.
    fn sparse(
        &mut self,
        h: &mut tar::Header,
        member: &Path,
        f: &File,
        segments: &[(u64, u64)],
        len: u64,
    ) -> io::Result<()> {
        let mut map = segments.to_vec();
        // Ending in a hole: a last, empty segment at the end gives the length.
        if map.last().is_none_or(|(o, l)| o + l < len) {
            map.push((len, 0));
        }
        let data: u64 = segments.iter().map(|s| s.1).sum();
        let name = member.as_os_str().as_bytes();
        if name.len() > 100 {
            // GNU's long name: a member of its own before this one.
            let mut long = tar::Header::new_gnu();
            long.set_entry_type(tar::EntryType::GNULongName);
            long.as_gnu_mut().expect("a GNU header").name[..13].copy_from_slice(b"././@LongLink");
            long.set_mode(0o644);
            long.set_size(name.len() as u64 + 1);
            long.set_cksum();
            let mut body = name.to_vec();
            body.push(0);
            self.builder.append(&long, body.as_slice())?;
        }
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_size(data);
        let gnu = h.as_gnu_mut().expect("a GNU header");
        let n = name.len().min(100);
        gnu.name = [0; 100];
        gnu.name[..n].copy_from_slice(&name[..n]);
        gnu.set_real_size(len);
        for (slot, (off, l)) in gnu.sparse.iter_mut().zip(&map) {
            slot.set_offset(*off);
            slot.set_length(*l);
        }
        gnu.set_is_extended(map.len() > 4);
        h.set_cksum();
        let w = self.builder.get_mut();
        w.write_all(h.as_bytes())?;
        if map.len() > 4 {
            let chunks: Vec<&[(u64, u64)]> = map[4..].chunks(21).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut ext = tar::GnuExtSparseHeader::new();
                for (slot, (off, l)) in ext.sparse.iter_mut().zip(chunk.iter()) {
                    slot.set_offset(*off);
                    slot.set_length(*l);
                }
                ext.set_is_extended(i + 1 < chunks.len());
                w.write_all(ext.as_bytes())?;
            }
        }
        let mut buf = vec![0u8; 1 << 20];
        for (off, l) in segments {
            let mut at = *off;
            let end = off + l;
            while at < end {
                let want = ((end - at) as usize).min(buf.len());
                let got = f.read_at(&mut buf[..want], at)?;
                if got == 0 {
                    // Shrunk since: zeros, so the member stays as long as its header says.
                    buf[..want].fill(0);
                    w.write_all(&buf[..want])?;
                    at += want as u64;
                    continue;
                }
                w.write_all(&buf[..got])?;
                at += got as u64;
            }
        }
        let pad = (512 - data % 512) % 512;
        w.write_all(&vec![0u8; pad as usize])?;
        self.stats.bytes += data;
        Ok(())
    }

    /// Writes `path`'s extended attributes, if it has any, as the PAX
    /// record of the member that follows.
    fn xattrs(&mut self, path: &Path, symlink: bool) -> io::Result<()> {
        if symlink {
            // A symlink's own xattrs are not kept (the extraction cannot set them).
            return Ok(());
        }
        let names = match xattr::list(path) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        for name in names {
            let Some(value) = xattr::get(path, &name)? else { continue };
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name.as_bytes());
            records.extend(pax_record(&key, &value));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("././@PaxHeader")?;
        h.set_mode(0o644);
        h.set_size(records.len() as u64);
        h.set_cksum();
        self.builder.append(&h, records.as_slice())
    }
}

/// The data of a file of `len` bytes, as (offset, length) runs found
/// with `SEEK_DATA`/`SEEK_HOLE`.
fn data_segments(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < len {
        let data = match lseek(f, at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = (lseek(f, data as i64, Whence::SeekHole)? as u64).min(len);
        out.push((data, hole - data));
        at = hole;
    }
    Ok(out)
}

/// One PAX extended header record: `"<len> <key>=<value>\n"`, where
/// `<len>` counts the whole record, its own digits included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = len.to_string().into_bytes();
    r.push(b' ');
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn members(bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let t = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((name, t, data));
        }
        out
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/sub")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0\n").unwrap();
        std::fs::write(t.path().join("etc/sub/keep"), "keep").unwrap();
        std::fs::write(t.path().join("gone"), "bye").unwrap();
        std::fs::hard_link(t.path().join("etc/passwd"), t.path().join("passwd.link")).unwrap();
        symlink("/etc/shadow", t.path().join("evil")).unwrap();
        t
    }

    #[test]
    fn a_tree_is_written_in_name_order_with_links_kept_and_nothing_followed() {
        let t = tree();
        let mut out = Vec::new();
        let (d, stats) = write_tree(t.path(), None, &mut out, Compression::None).unwrap();
        assert_eq!(d.size, out.len() as u64);
        assert_eq!(d.sha1, hex::encode(Sha1::digest(&out)));
        let m = members(&out);
        let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["etc", "etc/passwd", "etc/sub", "etc/sub/keep", "evil", "gone", "passwd.link"]);
        assert_eq!(m[4].1, tar::EntryType::Symlink, "the symlink is a symlink, not /etc/shadow's contents");
        assert_eq!(m[6].1, tar::EntryType::Link, "the second name of a file is a hard link");
        assert_eq!(m[1].2, b"root:x:0:0\n");
        assert_eq!((stats.entries, stats.whiteouts), (7, 0));
        // The same tree gives the same bytes.
        let mut again = Vec::new();
        assert_eq!(write_tree(t.path(), None, &mut again, Compression::None).unwrap().0, d);
    }

    /// A writable snapshot of `origin` (a copy keeping inodes is what a
    /// btrfs snapshot is; a test without btrfs compares a tree to itself
    /// and then changes it).
    #[test]
    fn an_incremental_tar_holds_only_changes_and_whiteouts() {
        let t = tree();
        // The origin and the instance are the same inodes here: the
        // "instance" is the tree after the changes below, the "origin" a
        // tree holding the names it had, with the untouched files' very
        // inodes (hard links stand for a snapshot's shared inodes).
        let origin = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(origin.path().join("etc/sub")).unwrap();
        for f in ["etc/passwd", "etc/sub/keep", "gone"] {
            std::fs::hard_link(t.path().join(f), origin.path().join(f)).unwrap();
        }
        symlink("/etc/shadow", origin.path().join("evil")).unwrap();
        std::fs::hard_link(t.path().join("etc/passwd"), origin.path().join("passwd.link")).unwrap();
        // The instance's changes: a removal, an addition, a file rewritten.
        std::fs::remove_file(t.path().join("gone")).unwrap();
        std::fs::write(t.path().join("etc/new"), "new").unwrap();
        let mut out = Vec::new();
        let (_, stats) = write_tree(t.path(), Some(origin.path()), &mut out, Compression::Gzip).unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(out.as_slice()).read_to_end(&mut plain).unwrap();
        let m = members(&plain);
        let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(names.contains(&".wh.gone"), "{names:?}");
        assert!(names.contains(&"etc/new"), "{names:?}");
        assert!(!names.contains(&"etc/sub/keep"), "an unchanged file is left out: {names:?}");
        assert!(!names.contains(&"etc/passwd"), "{names:?}");
        assert_eq!(stats.whiteouts, 1);
    }

    #[test]
    fn a_disk_reads_its_holes_as_zeros() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("disk");
        let f = File::options().read(true).write(true).create(true).truncate(true).open(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(b"boot", 0).unwrap();
        f.write_all_at(b"end", (8 << 20) - 3).unwrap();
        let mut out = Vec::new();
        let d = write_disk(&f, &mut out, Compression::None).unwrap();
        assert_eq!(d.size, 8 << 20);
        let mut want = vec![0u8; 8 << 20];
        want[..4].copy_from_slice(b"boot");
        want[(8 << 20) - 3..].copy_from_slice(b"end");
        assert!(out == want, "the disk's bytes, holes as zeros");
        let mut z = Vec::new();
        let dz = write_disk(&f, &mut z, Compression::Zstd).unwrap();
        assert!(dz.size < 64 << 10, "zeros compress: {}", dz.size);
        assert_eq!(zstd::decode_all(z.as_slice()).unwrap(), want);
    }

    #[test]
    fn sparse_files_keep_their_holes_and_extract_as_they_were() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // A terabyte, mostly holes; data in more runs than a header holds.
        let f = File::create(root.join("big")).unwrap();
        f.set_len(1 << 40).unwrap();
        for i in 0..30u64 {
            f.write_all_at(format!("run {i}").as_bytes(), i * (1 << 30)).unwrap();
        }
        let long = "d".repeat(120);
        std::fs::create_dir(root.join(&long)).unwrap();
        let g = File::create(root.join(&long).join("tail-hole")).unwrap();
        g.write_all_at(b"head", 0).unwrap();
        g.set_len(64 << 20).unwrap();
        let mut out = Vec::new();
        write_tree(&root, None, &mut out, Compression::None).unwrap();
        assert!(out.len() < 8 << 20, "the holes are not in the tar: {} bytes", out.len());
        let dest = t.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        tar::Archive::new(out.as_slice()).unpack(&dest).unwrap();
        let big = File::open(dest.join("big")).unwrap();
        assert_eq!(big.metadata().unwrap().len(), 1 << 40);
        let mut b = [0u8; 6];
        big.read_exact_at(&mut b, 29 * (1 << 30)).unwrap();
        assert_eq!(&b, b"run 29");
        assert!(big.metadata().unwrap().blocks() < 100_000, "extracted sparse");
        let tail = dest.join(&long).join("tail-hole");
        assert_eq!(std::fs::metadata(&tail).unwrap().len(), 64 << 20);
        assert!(std::fs::read(&tail).unwrap().starts_with(b"head"));
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let r = pax_record(b"SCHILY.xattr.user.a", b"v");
        let s = String::from_utf8(r.clone()).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        // Where the length's digits change the length.
        let r = pax_record(b"k", &[b'x'; 94]);
        let s = String::from_utf8(r.clone()).unwrap();
        assert_eq!(s.split_once(' ').unwrap().0.parse::<usize>().unwrap(), r.len());
    }
}
