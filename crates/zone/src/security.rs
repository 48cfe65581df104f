//! What confines a zone beyond its namespaces: the capabilities dropped from
//! the bounding set, the seccomp filter, and the `limit_priv` opt-ins that
//! relax them. The filter's program is assembled in `security/filter.rs`
//! from the tables of system calls per ABI
//! (`security/{x86_64,i386,aarch64}.rs`, and `security/unified.rs` for the
//! numbers from 424 on, which every ABI shares).
//!
//! Both are applied to the zone's init just before `execve` and to every
//! process entered into the zone from the host ([`crate::enter`]: `zlogin`,
//! the monitor's `poweroff`), so nothing in a zone holds more than its init.
//!
//! - **Capabilities.** LXC's default drop list: `sys_module`, `sys_rawio`,
//!   `sys_time`, `mac_admin`, `mac_override`. In a user namespace they mean
//!   nothing anyway (the kernel checks them against the host's namespace);
//!   dropping them also covers zones run as the host's root. `sys_boot`
//!   stays: `reboot(2)` in a pid namespace ends the zone's init.
//! - **Seccomp: an allowlist**, as Docker's default profile. For each ABI it
//!   knows ([`Abi`]: x86-64 and, on x86-64 hosts, i386; aarch64), the
//!   filter has a table of every system call of [`TABLE_KERNEL`], and
//!   gives each number a [`Verdict`]:
//!   - a call of the table is allowed, unless it is one of the dangerous
//!     ones below, refused with `EPERM` (where no opt-in allows it);
//!   - **a number the table does not know** (one added by a newer kernel,
//!     or a gap) fails with **`ENOSYS`**, as on a kernel without it, so
//!     glibc and programs fall back to the older calls. A deny list would
//!     let through whatever the kernel adds next: `open_tree_attr` (6.15)
//!     cloned read-only mounts writable and `/proc` without its masks
//!     while the list did not name it;
//!   - the x32 ABI (x86-64 numbers with `__X32_SYSCALL_BIT`) and any other
//!     architecture (a foreign binary through `binfmt_misc`, arm32 on
//!     arm64) fail with `ENOSYS` whole;
//!   - `ioctl` is allowed except the btrfs requests that create
//!     subvolumes or snapshots ([`REFUSED_IOCTLS`], `EPERM`, on every
//!     ABI): **a zone cannot create btrfs subvolumes or snapshots**,
//!     because its quota could not hold them: btrfs accounts a new
//!     subvolume (a snapshot is one) to a qgroup of its own, not to the
//!     zone dataset's. The filter compares the low 32 bits of the request
//!     (the kernel takes an `unsigned int`), so high bits cannot hide one.
//!
//!   The refused calls: kernel modules (`init_module`, `finit_module`,
//!   `delete_module`), kexec (`kexec_load`, `kexec_file_load`),
//!   `iopl`/`ioperm`, swap (`swapon`, `swapoff`), `open_by_handle_at`,
//!   `syslog`, `acct`, quotas (`quotactl`, `quotactl_fd`), setting the
//!   host clock (`settimeofday`, `clock_settime`; on i386 also `stime` and
//!   `clock_settime64`; `adjtimex` and `clock_adjtime` stay, as in
//!   Docker's profile: they also read the clock, and setting it needs
//!   `CAP_SYS_TIME` on the host), the kernel keyring (not namespaced),
//!   `bpf`, `perf_event_open`, `userfaultfd`, and **the mount family,
//!   old and new API**: `mount`, `umount2` (and i386's `umount`),
//!   `pivot_root`, `open_tree`, `open_tree_attr`, `move_mount`, `fsopen`,
//!   `fsconfig`, `fsmount`, `fspick`, `mount_setattr`. A zone mounts only
//!   what it was given. `listmount` and `statmount` are allowed: they only
//!   read, the kernel limits them to the caller's own mount namespace and
//!   those it holds `CAP_SYS_ADMIN` over (ones the zone made), and they
//!   tell nothing that `/proc/self/mountinfo` does not; refusing them
//!   would only break `findmnt` and systemd, which use them where the
//!   kernel has them.
//!
//!   The filter is installed without `no_new_privs` (the caller holds
//!   `CAP_SYS_ADMIN` in the zone's user namespace), so setuid programs in
//!   the zone keep working.
//! - **[`NOTIFIED`] calls** go to the zone's monitor as seccomp user
//!   notifications ([`install_seccomp_with_listener`]: the filter comes
//!   with a listener descriptor, which the installer hands to the
//!   monitor): `sysinfo(2)` (native numbers only), answered with the
//!   zone's memory, tasks and uptime instead of the host's
//!   (`monitor/sysinfo.rs`), and `statfs(2)`/`fstatfs(2)` (and i386's
//!   `statfs64`/`fstatfs64`), answered with the zone's `quota` for its
//!   root file system and left to the kernel for anything else
//!   (`monitor/statfs.rs`), and `uname(2)` (native and i386's), answered
//!   as the kernel would but with the version `BrandZ virtual linux`
//!   (`monitor/uname.rs`). Where no listener can be had (the installer
//!   already runs under one: nested seccomp notifiers are refused with
//!   `EBUSY`) or the monitor cannot take it, the filter is installed
//!   without those rules and the kernel answers them.
//!
//! `limit_priv` opt-ins (off by default; other names, such as SmartOS's
//! `default`, are accepted and ignored):
//!
//! | name | effect |
//! |---|---|
//! | `sys_mount` | allows the mount family (in the zone's own mount namespace, and only file systems the kernel lets a user namespace mount: tmpfs, proc, sysfs, devpts, mqueue, overlay...). Beware: the zone's mounts are made inside its own mount namespace, so the kernel does not lock them, and with this a zone can make its read-only `lofs` mounts writable and take the masks off `/proc` |
//! | `keyring` | allows `keyctl`, `add_key`, `request_key` |
//! | `perf` | allows `perf_event_open` (still subject to the host's `perf_event_paranoid`) |
//! | `bpf` | allows `bpf` (still subject to `unprivileged_bpf_disabled`) |
//! | `userfaultfd` | allows `userfaultfd` |
//!
//! **The tables** know the calls of [`TABLE_KERNEL`]: every number
//! through `file_getattr`/`file_setattr` (468/469) on x86-64, i386 and
//! aarch64, as the kernel's own `syscall_*.tbl` lists them (the numbers it
//! lists without an entry point are left out: the kernel answers `ENOSYS`
//! for them too). So the numbers a zone gets `ENOSYS` for are exactly
//! those that kernel does not have either, which a test checks on the
//! host (below):
//!
//! | verdict | x86-64 | i386 (x86-64 hosts) | aarch64 |
//! |---|---|---|---|
//! | allowed | the rest of 0–469 | the rest of 0–469 | the rest of 0–469 |
//! | `EPERM` unless opted in | the refused calls above | the same but `kexec_file_load`, with `umount`, `stime`, `clock_settime64` | the same but `iopl`, `ioperm` |
//! | the `ioctl` rule | 16 | 54 | 29 |
//! | to the monitor, when asked | 63 `uname`, 99 `sysinfo`, 137 `statfs`, 138 `fstatfs` | 99 `statfs`, 100 `fstatfs`, 122 `uname`, 268 `statfs64`, 269 `fstatfs64` (not `sysinfo`, whose i386 struct is another; nor `olduname`, `oldolduname`) | 43 `statfs`, 44 `fstatfs`, 160 `uname`, 179 `sysinfo` |
//! | `ENOSYS` | 337–423, 17 numbers of removed or never-implemented calls, 470 and above, x32 | 387–392, 28 others, 470 and above | 18, 42, 244–259, 295–423, 470 and above |
//!
//! **When a kernel adds a system call**, the test
//! `security::kernel_gate::every_syscall_of_this_kernel_is_in_the_table`
//! fails on a host running it ("the kernel has syscall N that the filter's
//! table does not know"); until the call is classified a zone gets
//! `ENOSYS` for it, which is safe. To classify it: read what the call
//! does; add `(N, "name")` to `security/unified.rs` (a number from 424
//! on: every ABI shares it, `scripts/syscall.tbl`), or to the ABI's own
//! table (`security/{x86_64,i386,aarch64}.rs`; the kernel's
//! `arch/x86/entry/syscalls/syscall_{64,32}.tbl`); if it can reach beyond the zone, add its name
//! to a group of [`RULES`] (a new mount call goes in `sys_mount`'s); set
//! [`TABLE_KERNEL`] to the kernel; and say so in this documentation and
//! the tests that count the tables.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

#[cfg(any(target_arch = "aarch64", test))]
mod aarch64;
mod filter;
#[cfg(any(target_arch = "x86_64", test))]
mod i386;
#[cfg(test)]
mod kernel_gate;
mod unified;
#[cfg(any(target_arch = "x86_64", test))]
mod x86_64;

/// The kernel whose system calls the tables know.
pub const TABLE_KERNEL: &str = "Linux 6.18";

/// Capabilities dropped from every zone's bounding set (LXC's defaults).
/// (`CAP_SYS_MODULE` 16, `CAP_SYS_RAWIO` 17, `CAP_SYS_TIME` 25,
/// `CAP_MAC_OVERRIDE` 32, `CAP_MAC_ADMIN` 33.)
pub const DROPPED_CAPABILITIES: [u32; 5] = [16, 17, 25, 32, 33];

/// The `limit_priv` names this host understands.
pub const OPT_INS: [&str; 5] = ["sys_mount", "keyring", "perf", "bpf", "userfaultfd"];

/// A group of system calls (by the kernel's names, on every ABI that has
/// them) refused with `EPERM` unless opted in (`None`: always refused).
pub struct Rule {
    /// The `limit_priv` name that allows the group.
    pub opt_in: Option<&'static str>,
    /// The calls.
    pub names: &'static [&'static str],
}

/// The refused calls.
pub const RULES: &[Rule] = &[
    Rule {
        opt_in: None,
        names: &[
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "iopl",
            "ioperm",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "syslog",
            "acct",
            "quotactl",
            "quotactl_fd",
            "settimeofday",
            "stime",
            "clock_settime",
            "clock_settime64",
        ],
    },
    Rule {
        opt_in: Some("sys_mount"),
        names: &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "open_tree",
            "open_tree_attr",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "mount_setattr",
        ],
    },
    Rule { opt_in: Some("keyring"), names: &["keyctl", "add_key", "request_key"] },
    Rule { opt_in: Some("perf"), names: &["perf_event_open"] },
    Rule { opt_in: Some("bpf"), names: &["bpf"] },
    Rule { opt_in: Some("userfaultfd"), names: &["userfaultfd"] },
];

/// The calls the zone's monitor answers (with the listener of a filter
/// from [`Profile::seccomp_program`] with `notify`): on the native ABI
/// (`.0`) and on i386 (`.1`, x86-64 hosts), by the kernel's names.
/// `sysinfo` is native only: i386's `struct sysinfo` is another, and its
/// own `statfs` structs are answered in their own layouts; `uname` is
/// `struct new_utsname` on both.
pub const NOTIFIED: (&[&str], &[&str]) =
    (&["sysinfo", "statfs", "fstatfs", "uname"], &["statfs", "fstatfs", "statfs64", "fstatfs64", "uname"]);

/// [`NOTIFIED`]'s calls of `abi`.
fn notified(abi: &Abi) -> &'static [&'static str] {
    if abi.native {
        NOTIFIED.0
    } else {
        NOTIFIED.1
    }
}

/// The `ioctl` requests refused with `EPERM` (low 32 bits), with their
/// names in `linux/btrfs.h`: they create btrfs subvolumes and snapshots.
pub const REFUSED_IOCTLS: [(u32, &str); 4] = [
    (0x5000_9401, "BTRFS_IOC_SNAP_CREATE"),
    (0x5000_940e, "BTRFS_IOC_SUBVOL_CREATE"),
    (0x5000_9417, "BTRFS_IOC_SNAP_CREATE_V2"),
    (0x5000_9418, "BTRFS_IOC_SUBVOL_CREATE_V2"),
];

/// One system call ABI: how `struct seccomp_data` names its architecture,
/// and the table of the calls the filter knows.
#[derive(Debug)]
pub struct Abi {
    /// Its name in the kernel's tables: `x86_64`, `i386`, `aarch64`.
    pub name: &'static str,
    /// Its `AUDIT_ARCH_*`.
    pub audit_arch: u32,
    /// The calls of this ABI's own below 424, `(number, name)`, by number
    /// (see [`Abi::syscalls`] for all it knows).
    pub own: &'static [(u32, &'static str)],
    /// Numbers with this bit set belong to another ABI of the same
    /// architecture (x86-64's x32), refused whole with `ENOSYS`.
    pub x32_bit: Option<u32>,
    /// Whether it is the host's native ABI (see [`NOTIFIED`]).
    pub native: bool,
}

impl Abi {
    /// Every call the filter knows, `(number, name)`, by number: the
    /// ABI's own, then those from 424 on that every ABI shares.
    pub fn syscalls(&self) -> impl Iterator<Item = &'static (u32, &'static str)> {
        self.own.iter().chain(unified::SYSCALLS)
    }

    /// The name of call `nr`, if the table knows it.
    pub fn name_of(&self, nr: u32) -> Option<&'static str> {
        let table = if nr < UNIFIED_FROM { self.own } else { unified::SYSCALLS };
        table.binary_search_by_key(&nr, |(n, _)| *n).ok().map(|i| table[i].1)
    }

    /// The number of the call named `name`, if this ABI has it.
    pub fn number_of(&self, name: &str) -> Option<u32> {
        self.syscalls().find(|(_, n)| *n == name).map(|(nr, _)| *nr)
    }

    /// The first number above the table: it and every number above fail
    /// with `ENOSYS`.
    pub fn end(&self) -> u32 {
        self.syscalls().last().map_or(0, |(nr, _)| nr + 1)
    }
}

/// Where the numbers every ABI shares begin (`pidfd_send_signal`, Linux 5.1).
const UNIFIED_FROM: u32 = 424;

/// x86-64's native ABI.
#[cfg(any(target_arch = "x86_64", test))]
pub const X86_64: Abi =
    Abi { name: "x86_64", audit_arch: 0xc000_003e, own: x86_64::SYSCALLS, x32_bit: Some(0x4000_0000), native: true };

/// i386, through x86-64's IA32 emulation.
#[cfg(any(target_arch = "x86_64", test))]
pub const I386: Abi = Abi { name: "i386", audit_arch: 0x4000_0003, own: i386::SYSCALLS, x32_bit: None, native: false };

/// aarch64's native ABI.
#[cfg(any(target_arch = "aarch64", test))]
pub const AARCH64: Abi =
    Abi { name: "aarch64", audit_arch: 0xc000_00b7, own: aarch64::SYSCALLS, x32_bit: None, native: true };

#[cfg(target_arch = "x86_64")]
const HOST_ABIS: &[Abi] = &[X86_64, I386];
#[cfg(target_arch = "aarch64")]
const HOST_ABIS: &[Abi] = &[AARCH64];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const HOST_ABIS: &[Abi] = &[];

/// The ABIs the filter knows on this host, the native one first (none
/// where no table exists: there is no filter there).
pub fn abis() -> &'static [Abi] {
    HOST_ABIS
}

/// What the filter does with a system call number of an ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused with `EPERM`: a dangerous call not opted in.
    Refuse,
    /// `ENOSYS`: a number the table does not know.
    Unknown,
    /// Sent to the filter's listener (`SECCOMP_RET_USER_NOTIF`), when
    /// asked: the [`NOTIFIED`] calls.
    Notify,
    /// `ioctl`: allowed but for [`REFUSED_IOCTLS`] (`EPERM`).
    Ioctl,
}

/// The confinement of one zone, from its `limit_priv`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// The opt-ins given (from [`OPT_INS`]).
    pub opt_ins: Vec<&'static str>,
}

impl Profile {
    /// The profile for these `limit_priv` names.
    pub fn from_limit_priv<S: AsRef<str>>(names: &[S]) -> Profile {
        let mut opt_ins: Vec<&'static str> =
            OPT_INS.iter().copied().filter(|o| names.iter().any(|n| n.as_ref().trim() == *o)).collect();
        opt_ins.dedup();
        Profile { opt_ins }
    }

    /// The names in `limit_priv` this host does not act on.
    pub fn ignored<S: AsRef<str>>(names: &[S]) -> Vec<String> {
        names
            .iter()
            .map(|n| n.as_ref().trim())
            .filter(|n| !OPT_INS.contains(n) && *n != "default")
            .map(String::from)
            .collect()
    }

    /// What the filter of this profile does with call `nr` of `abi`
    /// (`notify`: whether the program sends the [`NOTIFIED`] calls to a listener).
    pub fn verdict(&self, abi: &Abi, nr: u32, notify: bool) -> Verdict {
        match abi.name_of(nr) {
            None => Verdict::Unknown,
            Some("ioctl") => Verdict::Ioctl,
            Some(name) if notify && notified(abi).contains(&name) => Verdict::Notify,
            Some(name) => match RULES.iter().find(|r| r.names.contains(&name)) {
                Some(r) if r.opt_in.is_none_or(|o| !self.opt_ins.contains(&o)) => Verdict::Refuse,
                _ => Verdict::Allow,
            },
        }
    }

    /// The seccomp program: each call of this host's [`abis`] gets its
    /// [`Profile::verdict`]. With `notify`, the [`NOTIFIED`] calls go to
    /// the filter's listener (install it with
    /// [`install_seccomp_with_listener`]: without a listener they would
    /// fail with `ENOSYS`). Empty (no filter) where no table exists.
    pub fn seccomp_program(&self, notify: bool) -> Vec<libc::sock_filter> {
        filter::program(self, abis(), notify)
    }
}

/// Drops [`DROPPED_CAPABILITIES`] from this process's bounding set.
pub fn drop_bounding_set() -> io::Result<()> {
    for cap in DROPPED_CAPABILITIES {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes a number and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(io::Error::new(e.kind(), format!("dropping capability {cap}: {e}")));
            }
        }
    }
    Ok(())
}

/// Installs `prog` as this thread's (and its descendants') seccomp filter,
/// without `no_new_privs`: the caller needs `CAP_SYS_ADMIN` in its user namespace.
pub fn install_seccomp(prog: &[libc::sock_filter]) -> io::Result<()> {
    if prog.is_empty() {
        return Ok(());
    }
    seccomp_set_filter(prog, 0)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("installing the seccomp filter: {e}")))
}

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 1 << 3;

fn seccomp_set_filter(prog: &[libc::sock_filter], flags: libc::c_uint) -> io::Result<libc::c_long> {
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
    // SAFETY: seccomp(2) reads the program through the pointer, which lives across the call.
    let r =
        unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog as *const libc::sock_fprog) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// What [`install_seccomp_with_listener`] installed.
#[derive(Debug)]
pub enum Installed {
    /// The notifying filter: its listener (close-on-exec), for the zone's monitor.
    Listener(OwnedFd),
    /// The plain filter, because the kernel gave no listener (why).
    Plain(io::Error),
}

/// Installs `notifying` (a program from [`Profile::seccomp_program`] with
/// `notify`) with a new listener and returns the listener; when
/// the kernel refuses that (a filter with a listener is already installed
/// on this process, `EBUSY`; a kernel without listeners), installs `plain`
/// (the same profile without the rule) instead. Like [`install_seccomp`],
/// without `no_new_privs`. An error means neither was installed.
pub fn install_seccomp_with_listener(
    notifying: &[libc::sock_filter],
    plain: &[libc::sock_filter],
) -> io::Result<Installed> {
    if notifying.is_empty() {
        install_seccomp(plain)?;
        return Ok(Installed::Plain(io::Error::new(io::ErrorKind::Unsupported, "no seccomp filter here")));
    }
    match seccomp_set_filter(notifying, SECCOMP_FILTER_FLAG_NEW_LISTENER) {
        // SAFETY: with NEW_LISTENER, seccomp returns a new descriptor that nothing else owns.
        Ok(fd) => Ok(Installed::Listener(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })),
        Err(why) => {
            install_seccomp(plain)?;
            Ok(Installed::Plain(why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opt_ins_are_parsed_and_unknown_names_ignored() {
        let p = Profile::from_limit_priv(&["default", "sys_mount", " keyring", "dtrace_user"]);
        assert_eq!(p.opt_ins, ["sys_mount", "keyring"]);
        assert_eq!(Profile::ignored(&["default", "sys_mount", "dtrace_user"]), ["dtrace_user"]);
        assert_eq!(Profile::from_limit_priv::<&str>(&[]), Profile::default());
    }

    #[test]
    fn tables_are_sorted_and_end_at_the_kernels_last_call() {
        for abi in [&X86_64, &I386, &AARCH64] {
            let all: Vec<(u32, &str)> = abi.syscalls().copied().collect();
            assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "{}: not sorted by number", abi.name);
            assert!(abi.own.iter().all(|(nr, _)| *nr < UNIFIED_FROM), "{}: its own go below 424", abi.name);
            let mut names: Vec<&str> = all.iter().map(|(_, n)| *n).collect();
            names.sort_unstable();
            assert!(names.windows(2).all(|w| w[0] != w[1]), "{}: a name twice", abi.name);
            assert_eq!(all.last(), Some(&(469, "file_setattr")), "{}", abi.name);
            assert_eq!(
                (abi.end(), abi.name_of(468), abi.number_of("open_tree_attr")),
                (470, Some("file_getattr"), Some(467))
            );
        }
        let len = |abi: &Abi| abi.syscalls().count();
        assert_eq!((len(&X86_64), len(&I386), len(&AARCH64)), (366, 436, 323));
        // Each ABI's own numbers for a few calls.
        let at = |abi: &Abi, name| abi.number_of(name).unwrap();
        assert_eq!([at(&X86_64, "ioctl"), at(&I386, "ioctl"), at(&AARCH64, "ioctl")], [16, 54, 29]);
        assert_eq!([at(&X86_64, "sysinfo"), at(&I386, "sysinfo"), at(&AARCH64, "sysinfo")], [99, 116, 179]);
        assert_eq!([at(&X86_64, "mount"), at(&I386, "mount"), at(&AARCH64, "mount")], [165, 21, 40]);
        // This host's libc agrees with the native table.
        #[cfg(target_arch = "x86_64")]
        for (nr, name) in [
            (libc::SYS_read, "read"),
            (libc::SYS_ioctl, "ioctl"),
            (libc::SYS_sysinfo, "sysinfo"),
            (libc::SYS_clone3, "clone3"),
            (libc::SYS_mount_setattr, "mount_setattr"),
            (libc::SYS_fchmodat2, "fchmodat2"),
        ] {
            assert_eq!(X86_64.name_of(nr as u32), Some(name));
        }
    }

    #[test]
    fn every_rule_names_a_call_some_table_has() {
        for name in RULES.iter().flat_map(|r| r.names) {
            assert!(
                [&X86_64, &I386, &AARCH64].iter().any(|abi| abi.number_of(name).is_some()),
                "{name} is in no table: a typo lets it through"
            );
        }
        for opt_in in RULES.iter().filter_map(|r| r.opt_in) {
            assert!(OPT_INS.contains(&opt_in), "{opt_in}");
        }
        for name in NOTIFIED.0 {
            assert!([&X86_64, &AARCH64].iter().all(|abi| abi.number_of(name).is_some()), "native {name}");
        }
        for name in NOTIFIED.1 {
            assert!(I386.number_of(name).is_some(), "i386 {name}");
        }
    }

    /// The refused calls by number, written out from the kernel's tables
    /// (not from the names the rules use), so a wrong table shows here.
    #[test]
    fn dangerous_calls_are_refused_on_both_x86_abis_unless_opted_in() {
        let always: [(&Abi, &[u32]); 3] = [
            // init_module finit_module delete_module kexec_load kexec_file_load iopl ioperm swapon swapoff
            // open_by_handle_at syslog acct quotactl quotactl_fd settimeofday clock_settime
            (&X86_64, &[175, 313, 176, 246, 320, 172, 173, 167, 168, 304, 103, 163, 179, 443, 164, 227]),
            // the same (no kexec_file_load), stime, clock_settime64
            (&I386, &[128, 350, 129, 283, 110, 101, 87, 115, 342, 103, 51, 131, 443, 79, 25, 264, 404]),
            (&AARCH64, &[105, 273, 106, 104, 294, 224, 225, 265, 116, 89, 60, 443, 170, 112]),
        ];
        // mount umount2 pivot_root open_tree move_mount fsopen fsconfig fsmount fspick mount_setattr open_tree_attr
        let mount: [(&Abi, &[u32]); 3] = [
            (&X86_64, &[165, 166, 155, 428, 429, 430, 431, 432, 433, 442, 467]),
            (&I386, &[21, 22, 52, 217, 428, 429, 430, 431, 432, 433, 442, 467]),
            (&AARCH64, &[40, 39, 41, 428, 429, 430, 431, 432, 433, 442, 467]),
        ];
        // keyctl add_key request_key / perf_event_open / bpf / userfaultfd
        let opted: [(&str, &Abi, &[u32]); 12] = [
            ("keyring", &X86_64, &[250, 248, 249]),
            ("keyring", &I386, &[288, 286, 287]),
            ("keyring", &AARCH64, &[219, 217, 218]),
            ("perf", &X86_64, &[298]),
            ("perf", &I386, &[336]),
            ("perf", &AARCH64, &[241]),
            ("bpf", &X86_64, &[321]),
            ("bpf", &I386, &[357]),
            ("bpf", &AARCH64, &[280]),
            ("userfaultfd", &X86_64, &[323]),
            ("userfaultfd", &I386, &[374]),
            ("userfaultfd", &AARCH64, &[282]),
        ];
        let strict = Profile::default();
        let all = Profile::from_limit_priv(&OPT_INS);
        let mut refused = 0;
        for (abi, nrs) in always {
            for nr in nrs {
                assert_eq!(strict.verdict(abi, *nr, false), Verdict::Refuse, "{} {nr}", abi.name);
                assert_eq!(all.verdict(abi, *nr, false), Verdict::Refuse, "{} {nr}: no opt-in allows it", abi.name);
                refused += 1;
            }
        }
        let opted = mount.iter().map(|(abi, nrs)| ("sys_mount", *abi, *nrs)).chain(opted);
        for (opt_in, abi, nrs) in opted {
            let only = Profile::from_limit_priv(&[opt_in]);
            let others = Profile::from_limit_priv(&OPT_INS.iter().filter(|o| **o != opt_in).collect::<Vec<_>>());
            for nr in nrs {
                assert_eq!(strict.verdict(abi, *nr, false), Verdict::Refuse, "{} {nr}", abi.name);
                assert_eq!(others.verdict(abi, *nr, false), Verdict::Refuse, "{} {nr} without {opt_in}", abi.name);
                assert_eq!(only.verdict(abi, *nr, false), Verdict::Allow, "{} {nr} with {opt_in}", abi.name);
                refused += 1;
            }
        }
        // Nothing else is refused.
        let named: usize = [&X86_64, &I386, &AARCH64]
            .iter()
            .map(|abi| (0..abi.end()).filter(|nr| strict.verdict(abi, *nr, false) == Verdict::Refuse).count())
            .sum();
        assert_eq!(named, refused);
    }

    #[test]
    fn read_only_mount_calls_and_everyday_calls_are_allowed() {
        let strict = Profile::default();
        for abi in [&X86_64, &I386, &AARCH64] {
            for name in ["listmount", "statmount", "read", "openat", "clone3", "execve", "ptrace", "setns", "unshare"]
                .into_iter()
                .chain(["adjtimex", "clock_adjtime", "reboot", "sethostname", "seccomp", "name_to_handle_at"])
                .chain(["file_getattr", "file_setattr", "io_uring_setup", "sysinfo"])
            {
                let nr = abi.number_of(name).unwrap_or_else(|| panic!("{} has no {name}", abi.name));
                assert_eq!(strict.verdict(abi, nr, false), Verdict::Allow, "{} {name}", abi.name);
            }
        }
    }

    #[test]
    fn numbers_the_tables_do_not_know_are_enosys() {
        let p = Profile::from_limit_priv(&OPT_INS);
        for abi in [&X86_64, &I386, &AARCH64] {
            for nr in [470, 471, 999, 1024, 0x3fff_ffff, 0x4000_0000, 0x4000_0010, u32::MAX] {
                assert_eq!(p.verdict(abi, nr, true), Verdict::Unknown, "{} {nr}", abi.name);
            }
        }
        // Gaps: a reserved range, removed and never-implemented calls, x32's own numbers.
        for nr in [337, 400, 423, 134, 156, 174, 212, 236, 512, 547] {
            assert_eq!(p.verdict(&X86_64, nr, true), Verdict::Unknown, "x86_64 {nr}");
        }
        for nr in [17, 113, 166, 253, 387, 392, 415] {
            assert_eq!(p.verdict(&I386, nr, true), Verdict::Unknown, "i386 {nr}");
        }
        for nr in [18, 42, 244, 259, 295, 423] {
            assert_eq!(p.verdict(&AARCH64, nr, true), Verdict::Unknown, "aarch64 {nr}");
        }
    }

    #[test]
    fn sysinfo_statfs_and_uname_are_notified_only_when_asked() {
        let p = Profile::default();
        // sysinfo statfs fstatfs uname, by the kernel's numbers.
        let native: [(&Abi, &[u32]); 2] = [(&X86_64, &[99, 137, 138, 63]), (&AARCH64, &[179, 43, 44, 160])];
        for (abi, nrs) in native {
            for nr in nrs {
                assert_eq!(p.verdict(abi, *nr, true), Verdict::Notify, "{} {nr}", abi.name);
                assert_eq!(p.verdict(abi, *nr, false), Verdict::Allow, "{} {nr}", abi.name);
            }
        }
        // i386: statfs fstatfs statfs64 fstatfs64 uname; its struct
        // sysinfo is another, and olduname and oldolduname have their own:
        // the kernel answers them.
        for nr in [99, 100, 268, 269, 122] {
            assert_eq!(p.verdict(&I386, nr, true), Verdict::Notify, "i386 {nr}");
        }
        for nr in [116, 109, 59] {
            assert_eq!(p.verdict(&I386, nr, true), Verdict::Allow, "i386 {nr}");
        }
        for abi in [&X86_64, &I386, &AARCH64] {
            let notified = (0..abi.end()).filter(|nr| p.verdict(abi, *nr, true) == Verdict::Notify).count();
            assert_eq!(notified, if abi.native { 4 } else { 5 }, "{}", abi.name);
            assert_eq!(p.verdict(abi, abi.number_of("ioctl").unwrap(), true), Verdict::Ioctl);
        }
    }

    /// The refused requests are the kernel's: `_IOW(0x94, nr, struct)` with
    /// the structs of `linux/btrfs.h` (both 4096 bytes, on i386 too).
    #[test]
    fn refused_ioctls_are_the_btrfs_subvolume_and_snapshot_requests() {
        use nix::request_code_write;
        /// `struct btrfs_ioctl_vol_args`.
        #[repr(C)]
        struct VolArgs {
            _fd: i64,
            _name: [u8; 4088],
        }
        /// `struct btrfs_ioctl_vol_args_v2`.
        #[repr(C)]
        struct VolArgsV2 {
            _fd: i64,
            _transid: u64,
            _flags: u64,
            _unused: [u64; 4],
            _name: [u8; 4040],
        }
        let (v1, v2) = (std::mem::size_of::<VolArgs>(), std::mem::size_of::<VolArgsV2>());
        assert_eq!((v1, v2), (4096, 4096));
        let expected = [
            (request_code_write!(0x94, 1, v1), "BTRFS_IOC_SNAP_CREATE"),
            (request_code_write!(0x94, 14, v1), "BTRFS_IOC_SUBVOL_CREATE"),
            (request_code_write!(0x94, 23, v2), "BTRFS_IOC_SNAP_CREATE_V2"),
            (request_code_write!(0x94, 24, v2), "BTRFS_IOC_SUBVOL_CREATE_V2"),
        ];
        let got: Vec<(libc::c_ulong, &str)> =
            REFUSED_IOCTLS.iter().map(|(req, name)| (libc::c_ulong::from(*req), *name)).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_second_listener_is_refused_and_the_plain_filter_installed() {
        if abis().is_empty() {
            assert!(std::env::var_os("CI").is_none(), "the filter has no table for this architecture (CI is set)");
            eprintln!("SKIPPED: the filter has no table for this architecture");
            return;
        }
        let p = Profile::default();
        let (notifying, plain) = (p.seccomp_program(true), p.seccomp_program(false));
        // In a thread of its own: filters are per thread.
        let got = std::thread::spawn(move || {
            // SAFETY: prctl on this thread (no_new_privs: no privilege needed).
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let first = install_seccomp_with_listener(&notifying, &plain).unwrap();
            let second = install_seccomp_with_listener(&notifying, &plain).unwrap();
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            let filters = status.lines().find_map(|l| l.strip_prefix("Seccomp_filters:")).map(|v| v.trim().to_owned());
            (first, second, filters)
        })
        .join()
        .unwrap();
        match got {
            (Installed::Listener(_), Installed::Plain(why), filters) => {
                assert_eq!(why.raw_os_error(), Some(libc::EBUSY), "{why}");
                assert_eq!(filters.as_deref(), Some("2"), "the plain filter was installed too");
            }
            (Installed::Plain(why), ..) => {
                assert!(std::env::var_os("CI").is_none(), "no seccomp listener here (CI is set): {why}");
                eprintln!("SKIPPED: no seccomp listener here: {why}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// The kernel takes the program and answers as the verdicts say, for
    /// native calls and, where the kernel has IA32 emulation, i386 ones.
    /// Each call, were the filter to let it through, fails harmlessly
    /// (NULL pointers, a pipe that is no btrfs directory).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_kernel_takes_the_program_and_answers_as_it_says() {
        use kernel_gate::{ia32, int80};
        let ia32 = ia32();
        if let Err(why) = &ia32 {
            eprintln!("NOTE: i386 calls not tried: {why}");
        }
        let prog = Profile::default().seccomp_program(false);
        let seen = std::thread::spawn(move || {
            let mut pipe = [0; 2];
            // SAFETY: pipe2 fills the two descriptors of the array.
            assert_eq!(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: prctl on this thread (no_new_privs: no privilege needed).
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            install_seccomp(&prog).unwrap();
            let native = |nr: u64, a0: u64, a1: u64, a2: u64| -> i64 {
                // SAFETY: each call below takes NULL pointers or a pipe and fails without effect.
                let r = unsafe { libc::syscall(nr as libc::c_long, a0, a1, a2, 0, 0, 0) };
                if r == -1 {
                    -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
                } else {
                    r
                }
            };
            let fd = pipe[0] as u64;
            let mut seen = vec![
                ("getpid", native(39, 0, 0, 0) > 0),
                ("mount", native(165, 0, 0, 0) == -1),
                ("open_tree_attr", native(467, 0, 0, 0) == -1),
                ("quotactl_fd", native(443, 0, 0, 0) == -1),
                ("470", native(470, 0, 0, 0) == -38),
                ("x32 getpid", native(0x4000_0000 | 39, 0, 0, 0) == -38),
                ("ioctl FIONREAD (NULL)", native(16, fd, libc::FIONREAD, 0) == -14),
                ("ioctl SUBVOL_CREATE", native(16, fd, 0x5000_940e, 0) == -1),
                ("ioctl SNAP_CREATE_V2 + high bits", native(16, fd, 0x7_5000_9417, 0) == -1),
                ("ioctl SUBVOL_CREATE_V2 + 1", native(16, fd, 0x5000_9419, 0) == -25),
            ];
            if ia32.is_ok() {
                let fd = pipe[0] as u32;
                let i386 = |nr: u32, args: [u32; 5]| {
                    // SAFETY: IA32 emulation is there (ia32() said so); each
                    // call takes NULL pointers or a pipe, and fails without effect.
                    unsafe { int80(nr, args) }
                };
                seen.extend([
                    ("i386 getpid", i386(20, [0; 5]) > 0),
                    ("i386 mount", i386(21, [0; 5]) == -1),
                    ("i386 umount", i386(22, [0; 5]) == -1),
                    ("i386 open_tree_attr", i386(467, [0; 5]) == -1),
                    ("i386 470", i386(470, [0; 5]) == -38),
                    ("i386 ioctl SNAP_CREATE", i386(54, [fd, 0x5000_9401, 0, 0, 0]) == -1),
                    ("i386 ioctl FIONREAD (NULL)", i386(54, [fd, libc::FIONREAD as u32, 0, 0, 0]) == -14),
                ]);
            }
            seen
        })
        .join()
        .unwrap();
        let wrong: Vec<&str> = seen.iter().filter(|(_, ok)| !ok).map(|(what, _)| *what).collect();
        assert!(wrong.is_empty(), "answered otherwise than the verdict: {wrong:?}");
    }
}
