//! The zone's view of lxcfs: which of its files cover the zone's `/proc`
//! and `/sys`.
//!
//! lxcfs (a FUSE file system, run by the daemon: see
//! `crates/daemon/src/lxcfs.rs`) answers reads of its `proc/meminfo`,
//! `proc/cpuinfo`, `proc/stat`, ... with the numbers of the reader's
//! cgroups: `MemTotal` is the zone's memory cap, `SwapTotal` its swap cap,
//! `/proc/cpuinfo` lists the CPUs of its cpuset (and no more than its CPU
//! quota), `/proc/uptime` counts from the zone's boot. A zone whose spec
//! names the lxcfs mount gets those files bound over its own, as LXC's
//! lxcfs hook does: only files lxcfs offers, only over files the zone's
//! `/proc` has, and `sys/devices/system/cpu` as a whole.
//!
//! The monitor opens the files (detached, read-only copies) while host
//! paths are reachable; the zone's init attaches them right after mounting
//! `/proc` and `/sys`, before masking (`monitor/child.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::rootfs;

/// The `/proc` files lxcfs virtualizes, bound where it offers them.
pub const PROC_FILES: [&str; 8] = ["cpuinfo", "diskstats", "loadavg", "meminfo", "slabinfo", "stat", "swaps", "uptime"];

/// The `/sys` directory lxcfs virtualizes (`online`, `cpuN` per visible CPU).
pub const SYS_CPU: &str = "devices/system/cpu";

/// Which file system of the zone a view covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The zone's `/proc`.
    Proc,
    /// The zone's `/sys`.
    Sys,
}

/// One lxcfs file or directory and where it goes in the zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// `/proc` or `/sys`.
    pub base: Base,
    /// The path under `base` (and under lxcfs's `proc/` or `sys/`).
    pub name: &'static str,
}

impl View {
    /// The path inside the lxcfs mount, e.g. `proc/meminfo`.
    pub fn source(&self) -> String {
        match self.base {
            Base::Proc => format!("proc/{}", self.name),
            Base::Sys => format!("sys/{}", self.name),
        }
    }
}

/// The views to bind, given which paths (relative to the lxcfs mount) exist
/// there: `proc/<f>` for each of [`PROC_FILES`] offered, then `sys/` +
/// [`SYS_CPU`] when offered.
pub fn views(offered: impl Fn(&str) -> bool) -> Vec<View> {
    PROC_FILES
        .iter()
        .map(|name| View { base: Base::Proc, name })
        .chain(std::iter::once(View { base: Base::Sys, name: SYS_CPU }))
        .filter(|v| offered(&v.source()))
        .collect()
}

/// Opens the views lxcfs at `mount` offers, as detached read-only mounts
/// (`open_tree(OPEN_TREE_CLONE)`), for the zone's init to attach. An error
/// names the file; a mount that does not answer (lxcfs gone: `ENOTCONN`) is
/// an error (the monitor then starts the zone on the kernel's `/proc` and
/// says so in `monitor.log`).
pub(crate) fn open(mount: &Path) -> io::Result<Vec<(View, OwnedFd)>> {
    let ctx = |what: &Path| {
        let what = what.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // Reading the directory proves the mount answers.
    std::fs::read_dir(mount.join("proc")).map_err(ctx(&mount.join("proc")))?;
    let mut out = Vec::new();
    for v in views(|rel| std::fs::symlink_metadata(mount.join(rel)).is_ok()) {
        let path = mount.join(v.source());
        let tree = rootfs::clone_tree(&path, false).map_err(ctx(&path))?;
        rootfs::set_readonly(tree.as_fd()).map_err(ctx(&path))?;
        out.push((v, tree));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_lxcfs_offers() {
        let all = views(|_| true);
        assert_eq!(all.len(), PROC_FILES.len() + 1);
        assert_eq!(all[0], View { base: Base::Proc, name: "cpuinfo" });
        assert_eq!(all.last().unwrap().source(), "sys/devices/system/cpu");

        // An lxcfs without slabinfo and without the cpu directory (older versions).
        let some = views(|rel| rel.starts_with("proc/") && rel != "proc/slabinfo");
        let names: Vec<&str> = some.iter().map(|v| v.name).collect();
        assert_eq!(names, ["cpuinfo", "diskstats", "loadavg", "meminfo", "stat", "swaps", "uptime"]);
        assert!(some.iter().all(|v| v.base == Base::Proc));

        assert!(views(|_| false).is_empty());
    }

    #[test]
    fn a_missing_mount_is_an_error() {
        let e = open(Path::new("/nonexistent/lxcfs")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/lxcfs/proc"), "{e}");
    }
}
