//! Shared test fixtures: a btrfs pool on its own sparse loop file in its own
//! temp dir, always unmounted (and so detached) by a drop guard.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use zonevisor_pool::{Pool, PoolConfig, PoolSource};

pub const MIB: u64 = 1 << 20;

/// Why the host cannot run privileged tests, if it cannot.
fn unavailable(need_btrfs: bool) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    if !need_btrfs {
        return None;
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let modprobe = || std::process::Command::new("modprobe").arg("btrfs").status().is_ok_and(|s| s.success());
    if !fs.contains("btrfs") && !modprobe() {
        return Some("the kernel has no btrfs".into());
    }
    if std::process::Command::new("mkfs.btrfs").arg("--version").output().is_err() {
        return Some("mkfs.btrfs is not installed".into());
    }
    None
}

/// Whether to go on: true when the host can, false (after saying why) when
/// it cannot; under `CI` it must be able to.
pub fn host_can(need_btrfs: bool) -> bool {
    match unavailable(need_btrfs) {
        None => true,
        Some(reason) if std::env::var_os("CI").is_some() => {
            panic!("CI: cannot run this test: {reason}")
        }
        Some(reason) => {
            eprintln!("skipping: {reason}");
            false
        }
    }
}

/// Unmounts the pool of `config` when dropped.
pub struct UnmountGuard {
    pub config: PoolConfig,
}

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        if let Err(e) = Pool::unmount(&self.config) {
            eprintln!("unmount {}: {e}", self.config.mountpoint.display());
        }
    }
}

/// A btrfs pool on a 1 GiB sparse loop file. Fields drop in order: the pool,
/// then the guard (unmount), then the temp dir.
pub struct TestPool {
    pub pool: Pool,
    pub guard: UnmountGuard,
    pub dir: tempfile::TempDir,
}

impl TestPool {
    pub fn config(&self) -> &PoolConfig {
        &self.guard.config
    }

    pub fn mountpoint(&self) -> &Path {
        &self.guard.config.mountpoint
    }

    pub fn loop_file(&self) -> PathBuf {
        self.dir.path().join("pool.img")
    }

    /// Flushes the pool so statfs and qgroup numbers are current.
    pub fn sync(&self) {
        nix::unistd::syncfs(File::open(self.mountpoint()).unwrap()).unwrap();
    }
}

/// A fresh btrfs pool, or `None` (test skipped) when the host cannot.
pub fn btrfs_pool() -> Option<TestPool> {
    if !host_can(true) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = PoolConfig {
        name: "zones".into(),
        mountpoint: dir.path().join("zones"),
        source: PoolSource::LoopFile { path: dir.path().join("pool.img"), size_bytes: 1 << 30 },
    };
    let guard = UnmountGuard { config };
    let pool = Pool::open(&guard.config).unwrap();
    Some(TestPool { pool, guard, dir })
}

/// Writes `len` bytes (a non-repeating pattern) to a new file and syncs it.
pub fn write_file(path: &Path, len: u64) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    let mut chunk = vec![0u8; MIB as usize];
    let mut left = len;
    let mut n = 0u64;
    while left > 0 {
        for word in chunk.chunks_mut(8) {
            n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            word.copy_from_slice(&n.to_le_bytes()[..word.len()]);
        }
        let k = left.min(MIB) as usize;
        f.write_all(&chunk[..k])?;
        left -= k as u64;
    }
    f.sync_all()
}

/// Loop devices whose backing file is `file`.
pub fn loop_devices_for(file: &Path) -> Vec<String> {
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let backing = entry.path().join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(backing) {
            if Path::new(b.trim()) == file {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// Whether something is mounted exactly at `path`.
pub fn is_mounted(path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().any(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m) == path))
}

pub fn median(mut v: Vec<std::time::Duration>) -> std::time::Duration {
    v.sort();
    v[v.len() / 2]
}
