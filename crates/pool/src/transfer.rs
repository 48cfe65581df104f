//! Sending a dataset's snapshots out of the pool and receiving them into
//! another, as btrfs send streams (the `btrfs` program of btrfs-progs:
//! `btrfs send [-p <parent>]` of a read-only snapshot, `btrfs receive -C`).
//!
//! ```text
//! <mountpoint>/.receive/<dataset>/         staging (root's, 0700): btrfs receive -C writes here
//!     <snapshot>                           a received subvolume, read-only once complete
//! commit_receive: each staged subvolume -> .snapshots/<dataset>/<snapshot>,
//!                 members of the pool's and the dataset's qgroups;
//!                 the dataset made from the last one when it has none
//! ```
//!
//! What is staged is seen by nobody (hidden, outside every dataset) until
//! [`Pool::commit_receive`]; [`Pool::abandon_receive`] (and destroying
//! the dataset) removes it. Every section's stream passes a
//! [`crate::sendstream::Guard`] before `btrfs receive` reads it.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::sendstream::{Expect, Guard};
use crate::snapshot::SNAPSHOTS_DIR;
use crate::{check_name, check_snapshot_name, private, Pool, PoolError, Result};

/// The directory of receives in progress.
pub(crate) const RECEIVE_DIR: &str = ".receive";

/// A subvolume a receive staged, and what it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Its name in the staging directory (the snapshot's name on the
    /// sending side).
    pub staged: String,
    /// The snapshot of the dataset it becomes.
    pub snapshot: String,
    /// When it was taken on the sending side (its subvolume here was made
    /// by the receive); `None`: when it was received.
    pub created: Option<std::time::SystemTime>,
}

/// How a snapshot is known to btrfs send and receive: the UUID a stream
/// sent from it names (the UUID it was itself received from, if any,
/// else its own), and the UUIDs by which an incremental stream may name
/// it as a parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotIdentity {
    /// The UUID a stream of it carries, lowercase hex with dashes.
    pub sent_as: String,
    /// Its own UUID and, when it was received, the one it was received
    /// from (hex with dashes).
    pub known_as: Vec<String>,
}

fn uuid_text(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Stderr of a child, read to its end.
fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s.trim().to_string()
}

fn command_error(command: String, status: String, stderr: String) -> PoolError {
    PoolError::Command { command, status, stderr }
}

/// One section being received: a `btrfs receive -C` reading what passes
/// its [`Guard`]. Dropped before [`SectionReceiver::finish`], it is
/// killed (what it staged stays until [`Pool::abandon_receive`]).
pub struct SectionReceiver {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    guard: Guard,
    command: String,
    bytes: u64,
}

impl SectionReceiver {
    /// Passes the next bytes of the section's btrfs stream, once the guard
    /// found nothing wrong up to their end.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.guard.feed(data).map_err(PoolError::BadStream)?;
        let stdin = self.stdin.as_mut().ok_or_else(|| PoolError::BadStream("written after its end".into()))?;
        if let Err(e) = stdin.write_all(data) {
            // btrfs receive stopped reading: its own words say why.
            let status = self.abort();
            return Err(match status {
                Some((status, stderr)) if !stderr.is_empty() => command_error(self.command.clone(), status, stderr),
                _ => PoolError::io("write to btrfs receive", "stdin", e),
            });
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// The stream is complete: waits for `btrfs receive` to finish it.
    pub fn finish(mut self) -> Result<u64> {
        if !self.guard.ended() {
            self.abort();
            return Err(PoolError::BadStream("the btrfs stream ended before its END command".into()));
        }
        drop(self.stdin.take());
        let mut child = self.child.take().expect("a receiver has its child until finished");
        let status = child.wait().map_err(|e| PoolError::io("wait for", "btrfs receive", e))?;
        if !status.success() {
            return Err(command_error(self.command.clone(), status.to_string(), stderr_of(&mut child)));
        }
        Ok(self.bytes)
    }

    /// Kills `btrfs receive`; its status and what it said, if it had ended.
    fn abort(&mut self) -> Option<(String, String)> {
        drop(self.stdin.take());
        let mut child = self.child.take()?;
        let ended = child.try_wait().ok().flatten();
        if ended.is_none() {
            let _ = child.kill();
        }
        let status = child.wait().ok();
        let stderr = stderr_of(&mut child);
        ended.or(status).map(|s| (s.to_string(), stderr))
    }
}

impl Drop for SectionReceiver {
    fn drop(&mut self) {
        self.abort();
    }
}

impl Pool {
    fn receive_dir(&self, name: &str) -> PathBuf {
        self.mountpoint.join(RECEIVE_DIR).join(name)
    }

    /// How snapshot `snap` of `name` is known to send and receive.
    pub fn snapshot_identity(&self, name: &str, snap: &str) -> Result<SnapshotIdentity> {
        let path = self.snapshot_path(name, snap)?;
        self.identity_at(&path)
    }

    fn identity_at(&self, path: &std::path::Path) -> Result<SnapshotIdentity> {
        let (uuid, received) = self.backend.subvol_uuids(path)?;
        let sent_as = if received == [0; 16] { uuid } else { received };
        let mut known_as = vec![uuid_text(&uuid)];
        if received != [0; 16] {
            known_as.push(uuid_text(&received));
        }
        Ok(SnapshotIdentity { sent_as: uuid_text(&sent_as), known_as })
    }

    /// Sends snapshot `snap` of `name` as a btrfs send stream (version 1),
    /// incremental from its snapshot `parent` when given, handing the
    /// stream to `out` as it comes; returns its length.
    pub fn send_snapshot(
        &self,
        name: &str,
        snap: &str,
        parent: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64> {
        let path = self.snapshot_path(name, snap)?;
        if !self.backend.is_dataset(&path) {
            return Err(PoolError::NotFound(path));
        }
        let mut cmd = Command::new("btrfs");
        cmd.args(["-q", "send", "--proto", "1"]);
        if let Some(p) = parent {
            let p = self.snapshot_path(name, p)?;
            if !self.backend.is_dataset(&p) {
                return Err(PoolError::NotFound(p));
            }
            cmd.arg("-p").arg(p);
        }
        cmd.arg(&path).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let command = format!("{cmd:?}").replace('"', "");
        let mut child = cmd.spawn().map_err(|e| PoolError::io("run", "btrfs send", e))?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let copied = loop {
            match stdout.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    total += n as u64;
                    if let Err(e) = out(&buf[..n]) {
                        break Err(PoolError::io("pass on the stream of", &path, e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(PoolError::io("read btrfs send's stream of", &path, e)),
            }
        };
        if copied.is_err() {
            let _ = child.kill();
        }
        drop(stdout);
        let status = child.wait().map_err(|e| PoolError::io("wait for", "btrfs send", e))?;
        copied?;
        if !status.success() {
            return Err(command_error(command, status.to_string(), stderr_of(&mut child)));
        }
        Ok(total)
    }

    /// Starts receiving into dataset `name`: a fresh, empty staging
    /// directory (one left by an earlier receive is removed first).
    pub fn begin_receive(&self, name: &str) -> Result<()> {
        check_name(name)?;
        self.abandon_receive(name)?;
        let top = self.mountpoint.join(RECEIVE_DIR);
        for dir in [top, self.receive_dir(name)] {
            match std::fs::create_dir(&dir) {
                Ok(()) => private(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PoolError::io("create directory", &dir, e)),
            }
        }
        Ok(())
    }

    /// Receives one btrfs stream into `name`'s staging directory: a
    /// subvolume `snap`, whole, or (with `parent`) as a snapshot of
    /// `name`'s snapshot `parent` (staged, or committed earlier).
    pub fn receive_section(&self, name: &str, snap: &str, parent: Option<&str>) -> Result<SectionReceiver> {
        check_name(name)?;
        check_snapshot_name(snap)?;
        let staging = self.receive_dir(name);
        if !staging.is_dir() {
            return Err(PoolError::NotFound(staging));
        }
        if self.backend.is_dataset(&staging.join(snap)) {
            return Err(PoolError::Exists(staging.join(snap)));
        }
        let parent = match parent {
            None => None,
            Some(p) => {
                check_snapshot_name(p)?;
                let staged = staging.join(p);
                let path = if self.backend.is_dataset(&staged) { staged } else { self.snapshot_path(name, p)? };
                if !self.backend.is_dataset(&path) {
                    return Err(PoolError::NotFound(path));
                }
                let id = self.identity_at(&path)?;
                let ids = id.known_as.iter().filter_map(|u| uuid_bytes(u)).collect();
                Some((ids, path))
            }
        };
        let mut cmd = Command::new("btrfs");
        cmd.args(["-q", "receive", "-C", "-e"]).arg(&staging);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let command = format!("{cmd:?}").replace('"', "");
        let mut child = cmd.spawn().map_err(|e| PoolError::io("run", "btrfs receive", e))?;
        let stdin = child.stdin.take();
        Ok(SectionReceiver {
            child: Some(child),
            stdin,
            guard: Guard::new(Expect { name: snap.to_string(), parent }),
            command,
            bytes: 0,
        })
    }

    /// Makes what was received into `name` its own: each staged subvolume
    /// in `moves` becomes a snapshot of it (read-only, counted against its
    /// quota, a member of the pool's datasets, dated when it was taken
    /// where it came from), and, when `name` is no dataset yet, the dataset
    /// becomes a writable copy of the last one. What is left staged is
    /// destroyed.
    pub fn commit_receive(&self, name: &str, moves: &[Received]) -> Result<()> {
        check_name(name)?;
        let staging = self.receive_dir(name);
        let snapdir = self.mountpoint.join(SNAPSHOTS_DIR).join(name);
        for dir in [self.mountpoint.join(SNAPSHOTS_DIR), snapdir.clone()] {
            match std::fs::create_dir(&dir) {
                Ok(()) => private(&dir)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PoolError::io("create directory", &dir, e)),
            }
        }
        let mut placed = Vec::new();
        let times: Vec<(String, std::time::SystemTime)> =
            moves.iter().filter_map(|m| m.created.map(|t| (m.snapshot.clone(), t))).collect();
        self.record_created(name, &times)?;
        for Received { staged, snapshot: snap, .. } in moves {
            check_snapshot_name(staged)?;
            let target = self.snapshot_path(name, snap)?;
            let from = staging.join(staged);
            if !self.backend.is_dataset(&target) {
                if !self.backend.is_dataset(&from) {
                    return Err(PoolError::NotFound(from));
                }
                // A read-only subvolume cannot move to another directory
                // (its `..` changes): writable for the move only (which
                // keeps what it was received from), read-only again.
                self.backend.set_readonly(&from, false)?;
                let moved = std::fs::rename(&from, &target).map_err(|e| PoolError::io("rename", &from, e));
                let sealed = self.backend.set_readonly(if moved.is_ok() { &target } else { &from }, true);
                moved?;
                sealed?;
            }
            placed.push(target);
        }
        let live = self.dataset_path(name);
        if !self.backend.is_dataset(&live) {
            let last = placed.last().ok_or_else(|| PoolError::NotFound(staging.clone()))?;
            self.backend.clone_from(last, &live)?;
            private(&live)?;
        }
        for snapshot in &placed {
            self.backend.join_group(&live, snapshot)?;
        }
        self.abandon_receive(name)
    }

    /// Destroys what a receive into `name` staged (absent is success).
    pub fn abandon_receive(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let staging = self.receive_dir(name);
        let entries = match std::fs::read_dir(&staging) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            r => r.map_err(|e| PoolError::io("list", &staging, e))?,
        };
        for entry in entries {
            let entry = entry.map_err(|e| PoolError::io("list", &staging, e))?;
            self.backend.destroy(&entry.path())?;
        }
        std::fs::remove_dir(&staging).map_err(|e| PoolError::io("remove directory", &staging, e))
    }

    /// The datasets with a receive staged (left by a receive that did not
    /// end: its daemon died).
    pub fn pending_receives(&self) -> Result<Vec<String>> {
        let dir = self.mountpoint.join(RECEIVE_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            r => r.map_err(|e| PoolError::io("list", &dir, e))?,
        };
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_print_and_parse() {
        let u = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8];
        let t = uuid_text(&u);
        assert_eq!(t, "12345678-9abc-def0-0102-030405060708");
        assert_eq!(uuid_bytes(&t), Some(u));
        assert_eq!(uuid_bytes("nope"), None);
    }
}
