//! A guard in front of `btrfs receive`: it reads the btrfs send stream
//! (version 1) as it passes, command by command, and refuses one that
//! would reach beyond what it was sent for, before `btrfs receive` sees a
//! byte of that command.
//!
//! `btrfs receive -C` confines the paths of a stream's commands to its
//! staging directory, but not everything: a `SNAPSHOT` names its parent,
//! and a `CLONE` its source, by UUID, and `btrfs receive` finds and opens
//! them anywhere in the file system, resolving the clone's path from the
//! file system's top (a `..` or a symlink in that path, which an
//! instance's owner can plant in its snapshots, would read host files into
//! the received one). So a stream may only:
//!
//! - be one btrfs stream (a header, commands, `END`, nothing after), of
//!   version 1;
//! - create exactly the subvolume it was sent for: `SUBVOL` (a full send)
//!   or `SNAPSHOT` of the expected parent (an incremental one), first, named
//!   as expected;
//! - clone only from that subvolume or that parent, by a relative path of
//!   plain names, which, in the parent, the guard walks itself (no
//!   symlinks, a regular file at the end).
//!
//! ```text
//! stream  = "btrfs-stream\0" version:u32le  command*
//! command = len:u32le cmd:u16le crc:u32le  tlv*          (len: the TLVs' bytes)
//! tlv     = type:u16le len:u16le data[len]
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 13] = b"btrfs-stream\0";
const STREAM_HEADER: usize = 17;
const CMD_HEADER: usize = 10;

const CMD_SUBVOL: u16 = 1;
const CMD_SNAPSHOT: u16 = 2;
const CMD_CLONE: u16 = 16;
const CMD_END: u16 = 21;
/// Commands of version 1 run from 1 to 22 (`UPDATE_EXTENT`).
const CMD_MAX_V1: u16 = 22;

const A_UUID: u16 = 1;
const A_PATH: u16 = 15;
const A_CLONE_UUID: u16 = 20;
const A_CLONE_PATH: u16 = 22;

/// The largest command taken whole (a version-1 `WRITE` carries at most
/// 48 KiB of data; `SUBVOL`, `SNAPSHOT` and `CLONE` far less).
const MAX_CMD: usize = 1 << 20;

/// What a section of a transfer may create.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The name of the one subvolume the stream creates.
    pub name: String,
    /// For an incremental stream: the parent's identity (its UUID, and the
    /// UUID it was received from, either of which the stream may name) and
    /// where it is on this host.
    pub parent: Option<(Vec<[u8; 16]>, PathBuf)>,
}

/// Where the guard is in the stream.
enum State {
    /// Reading the stream header.
    Header,
    /// Reading a command's header.
    CmdHeader,
    /// Collecting command `cmd` (`len` bytes of TLVs) to inspect it.
    Collect { cmd: u16, len: usize },
    /// Passing `left` bytes of a command that needs no inspection.
    Skip { left: usize },
    /// After `END`: nothing more may come.
    Ended,
}

/// The guard of one btrfs stream.
pub struct Guard {
    expect: Expect,
    state: State,
    buf: Vec<u8>,
    /// The UUID the stream gave its subvolume (`SUBVOL`/`SNAPSHOT`).
    own_uuid: Option<[u8; 16]>,
    first: bool,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The TLVs of a command's payload: (type, data).
fn tlvs(mut data: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 4 {
            return Err("a truncated attribute".into());
        }
        let (t, l) = (le16(&data[0..2]), le16(&data[2..4]) as usize);
        let value = data.get(4..4 + l).ok_or("an attribute past its command's end")?;
        out.push((t, value));
        data = &data[4 + l..];
    }
    Ok(out)
}

fn attr<'a>(attrs: &[(u16, &'a [u8])], t: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
}

fn uuid_of(value: Option<&[u8]>, what: &str) -> Result<[u8; 16], String> {
    value.and_then(|v| <[u8; 16]>::try_from(v).ok()).ok_or_else(|| format!("{what} without a UUID"))
}

/// Opens `name` under `dir` without following a symlink, as a path only.
fn open_nofollow(dir: &OwnedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid descriptor and C string; the result is checked and owned.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Checks that `path` (a clone's source path, relative to the parent at
/// `root`) is plain names through directories to a regular file, none a
/// symlink.
fn check_clone_source(root: &Path, path: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
    if path.is_empty() || parts.iter().any(|p| p.is_empty() || *p == b"." || *p == b"..") {
        return Err(format!("a clone source path that is not plain names: {shown:?}"));
    }
    let start = std::fs::File::open(root).map_err(|e| format!("opening the parent {}: {e}", root.display()))?;
    let mut cur = OwnedFd::from(start);
    for (i, part) in parts.iter().enumerate() {
        let next = open_nofollow(&cur, part).map_err(|e| format!("clone source {shown:?}: {e}"))?;
        let md = std::fs::File::from(next.try_clone().map_err(|e| e.to_string())?)
            .metadata()
            .map_err(|e| format!("clone source {shown:?}: {e}"))?;
        let last = i + 1 == parts.len();
        let ok = if last { md.file_type().is_file() } else { md.file_type().is_dir() };
        if !ok {
            return Err(format!("clone source {shown:?} goes through something that is not a plain directory or file"));
        }
        cur = next;
    }
    Ok(())
}

impl Guard {
    /// A guard for a stream that may create what `expect` says.
    pub fn new(expect: Expect) -> Guard {
        Guard { expect, state: State::Header, buf: Vec::new(), own_uuid: None, first: true }
    }

    /// Takes the next bytes of the stream; an error says what the stream
    /// tried. Bytes are only passed on once this returned `Ok` for them
    /// and for every command they complete.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Header | State::CmdHeader => {
                    let want = if matches!(self.state, State::Header) { STREAM_HEADER } else { CMD_HEADER };
                    let take = (want - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == want {
                        let header = std::mem::take(&mut self.buf);
                        self.header_done(&header)?;
                    }
                }
                State::Collect { cmd, len } => {
                    let take = (len - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == len {
                        let payload = std::mem::take(&mut self.buf);
                        self.inspect(cmd, &payload)?;
                        self.state = if cmd == CMD_END { State::Ended } else { State::CmdHeader };
                    }
                }
                State::Skip { left } => {
                    let take = left.min(data.len());
                    data = &data[take..];
                    self.state = if left == take { State::CmdHeader } else { State::Skip { left: left - take } };
                }
                State::Ended => return Err("data after the stream's end".into()),
            }
        }
        Ok(())
    }

    fn header_done(&mut self, header: &[u8]) -> Result<(), String> {
        if matches!(self.state, State::Header) {
            if &header[..13] != MAGIC {
                return Err("not a btrfs send stream".into());
            }
            let version = le32(&header[13..17]);
            if version != 1 {
                return Err(format!("btrfs send stream version {version} (only version 1 is received)"));
            }
            self.state = State::CmdHeader;
            return Ok(());
        }
        let (len, cmd) = (le32(&header[0..4]) as usize, le16(&header[4..6]));
        if cmd == 0 || cmd > CMD_MAX_V1 {
            return Err(format!("unknown command {cmd}"));
        }
        if self.first && cmd != CMD_SUBVOL && cmd != CMD_SNAPSHOT {
            return Err(format!("command {cmd} before the subvolume it belongs to"));
        }
        if !self.first && (cmd == CMD_SUBVOL || cmd == CMD_SNAPSHOT) {
            return Err("a second subvolume in one stream".into());
        }
        self.first = false;
        self.state = match cmd {
            CMD_SUBVOL | CMD_SNAPSHOT | CMD_CLONE | CMD_END => {
                if len > MAX_CMD {
                    return Err(format!("a command of {len} bytes"));
                }
                if len == 0 && cmd == CMD_END {
                    self.state = State::Ended;
                    return Ok(());
                }
                State::Collect { cmd, len }
            }
            _ if len == 0 => State::CmdHeader,
            _ => State::Skip { left: len },
        };
        Ok(())
    }

    fn inspect(&mut self, cmd: u16, payload: &[u8]) -> Result<(), String> {
        let attrs = tlvs(payload)?;
        match cmd {
            CMD_SUBVOL | CMD_SNAPSHOT => {
                let path = attr(&attrs, A_PATH).ok_or("a subvolume without a name")?;
                if path != self.expect.name.as_bytes() {
                    return Err(format!(
                        "it creates subvolume {:?}, not {:?}",
                        String::from_utf8_lossy(path),
                        self.expect.name
                    ));
                }
                self.own_uuid = Some(uuid_of(attr(&attrs, A_UUID), "a subvolume")?);
                match (cmd, &self.expect.parent) {
                    (CMD_SUBVOL, None) => Ok(()),
                    (CMD_SNAPSHOT, Some((ids, _))) => {
                        let clone = uuid_of(attr(&attrs, A_CLONE_UUID), "a snapshot's parent")?;
                        if ids.contains(&clone) {
                            Ok(())
                        } else {
                            Err("it is a snapshot of another parent than the one named".into())
                        }
                    }
                    (CMD_SUBVOL, Some(_)) => Err("a full stream where an incremental one was named".into()),
                    _ => Err("an incremental stream where a full one was named".into()),
                }
            }
            CMD_CLONE => {
                let source = uuid_of(attr(&attrs, A_CLONE_UUID), "a clone")?;
                let path = attr(&attrs, A_CLONE_PATH).ok_or("a clone without a source path")?;
                if Some(source) == self.own_uuid {
                    // Resolved by btrfs receive inside its chroot.
                    return Ok(());
                }
                match &self.expect.parent {
                    Some((ids, root)) if ids.contains(&source) => check_clone_source(root, path),
                    _ => Err("a clone from a subvolume other than its own or its parent".into()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Whether the stream ended properly (`END` seen).
    pub fn ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(t: u16, v: &[u8]) -> Vec<u8> {
        let mut b = t.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(v);
        b
    }

    fn cmd(c: u16, tlvs: &[Vec<u8>]) -> Vec<u8> {
        let payload: Vec<u8> = tlvs.concat();
        let mut b = (payload.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&c.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&payload);
        b
    }

    fn header(version: u32) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b
    }

    const OWN: [u8; 16] = [1; 16];
    const PARENT: [u8; 16] = [2; 16];
    const OTHER: [u8; 16] = [3; 16];

    fn full(name: &str) -> Expect {
        Expect { name: name.into(), parent: None }
    }

    /// Feeds `stream` one byte at a time (and whole) and returns the result.
    fn feed(expect: &Expect, stream: &[u8]) -> Result<bool, String> {
        let mut whole = Guard::new(expect.clone());
        let a = whole.feed(stream).map(|()| whole.ended());
        let mut bytewise = Guard::new(expect.clone());
        let b = stream.iter().try_for_each(|b| bytewise.feed(std::slice::from_ref(b))).map(|()| bytewise.ended());
        assert_eq!(a, b, "fed whole and byte by byte");
        a
    }

    #[test]
    fn a_plain_full_stream_passes() {
        let s = [
            header(1),
            cmd(CMD_SUBVOL, &[tlv(A_PATH, b"vmsnap-s1"), tlv(A_UUID, &OWN), tlv(2, &[0; 8])]),
            cmd(3, &[tlv(A_PATH, b"root/a")]),
            cmd(15, &[tlv(A_PATH, b"root/a"), tlv(19, &[7; 300])]),
            cmd(CMD_CLONE, &[tlv(A_CLONE_UUID, &OWN), tlv(A_CLONE_PATH, b"x/../../etc/shadow")]),
            cmd(CMD_END, &[]),
        ]
        .concat();
        assert_eq!(feed(&full("vmsnap-s1"), &s), Ok(true));
        // Cut short: not ended.
        assert_eq!(feed(&full("vmsnap-s1"), &s[..s.len() - 3]), Ok(false));
    }

    #[test]
    fn streams_that_reach_beyond_are_refused() {
        let sub = |name: &[u8]| cmd(CMD_SUBVOL, &[tlv(A_PATH, name), tlv(A_UUID, &OWN)]);
        let end = cmd(CMD_END, &[]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("not btrfs", b"not a btrfs stream at all".to_vec()),
            ("version 2", [header(2), sub(b"s"), end.clone()].concat()),
            ("another name", [header(1), sub(b"../../etc"), end.clone()].concat()),
            ("a command first", [header(1), cmd(3, &[tlv(A_PATH, b"a")]), end.clone()].concat()),
            ("two subvolumes", [header(1), sub(b"s"), sub(b"s"), end.clone()].concat()),
            ("after the end", [header(1), sub(b"s"), end.clone(), header(1)].concat()),
            (
                "a clone from elsewhere",
                [
                    header(1),
                    sub(b"s"),
                    cmd(CMD_CLONE, &[tlv(A_CLONE_UUID, &OTHER), tlv(A_CLONE_PATH, b"etc/shadow")]),
                    end.clone(),
                ]
                .concat(),
            ),
            ("unknown command", [header(1), sub(b"s"), cmd(99, &[]), end.clone()].concat()),
        ];
        for (what, s) in cases {
            assert!(feed(&full("s"), &s).is_err(), "{what} passed");
        }
        // A snapshot of another parent than the named one, or where a full
        // stream was named.
        let dir = tempfile::tempdir().unwrap();
        let inc = Expect { name: "s".into(), parent: Some((vec![PARENT], dir.path().to_path_buf())) };
        let snap = |p: &[u8; 16]| cmd(CMD_SNAPSHOT, &[tlv(A_PATH, b"s"), tlv(A_UUID, &OWN), tlv(A_CLONE_UUID, p)]);
        assert_eq!(feed(&inc, &[header(1), snap(&PARENT), end.clone()].concat()), Ok(true));
        assert!(feed(&inc, &[header(1), snap(&OTHER), end.clone()].concat()).is_err());
        assert!(feed(&full("s"), &[header(1), snap(&PARENT), end.clone()].concat()).is_err());
        assert!(feed(&inc, &[header(1), sub(b"s"), end].concat()).is_err());
    }

    #[test]
    fn clones_from_the_parent_follow_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("root/etc")).unwrap();
        std::fs::write(dir.path().join("root/etc/passwd"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("root/host")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", dir.path().join("root/up")).unwrap();
        let inc = Expect { name: "s".into(), parent: Some((vec![PARENT], dir.path().to_path_buf())) };
        let stream = |path: &[u8]| {
            [
                header(1),
                cmd(CMD_SNAPSHOT, &[tlv(A_PATH, b"s"), tlv(A_UUID, &OWN), tlv(A_CLONE_UUID, &PARENT)]),
                cmd(CMD_CLONE, &[tlv(A_CLONE_UUID, &PARENT), tlv(A_CLONE_PATH, path)]),
                cmd(CMD_END, &[]),
            ]
            .concat()
        };
        assert_eq!(feed(&inc, &stream(b"root/etc/passwd")), Ok(true));
        for bad in
            [&b"root/host/passwd"[..], b"root/up/passwd", b"root/../root/etc/passwd", b"/etc/passwd", b"root/etc"]
        {
            let r = feed(&inc, &stream(bad));
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(bad));
        }
    }
}
