//! What confines a zone beyond its namespaces: the capabilities dropped from
//! the bounding set and the default seccomp profile, and the `limit_priv`
//! opt-ins that relax them.
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
//! - **Seccomp.** A deny list, refused with `EPERM`, everything else allowed:
//!   kernel modules, kexec, `iopl`/`ioperm`, swap, `open_by_handle_at`,
//!   `syslog`, `acct`, `quotactl`, setting the host clock, the kernel keyring
//!   (not namespaced), `bpf`, `perf_event_open`, `userfaultfd`, and the mount
//!   family (`mount`, `umount2`, `pivot_root`, `open_tree`, `move_mount`,
//!   `fsopen`/`fsconfig`/`fsmount`/`fspick`, `mount_setattr`): a zone mounts
//!   only what it was given. On x86-64 the 32-bit (i386) numbers of the same
//!   calls are refused too, and the x32 ABI entirely. The filter is installed
//!   without `no_new_privs` (the caller holds `CAP_SYS_ADMIN` in the zone's
//!   user namespace), so setuid programs in the zone keep working.
//! - **`sysinfo(2)`** (native numbers only) is sent to the zone's monitor
//!   as a seccomp user notification ([`install_seccomp_with_listener`]: the
//!   filter comes with a listener descriptor, which the installer hands to
//!   the monitor), and answered there with the zone's memory, tasks and
//!   uptime instead of the host's (`monitor/sysinfo.rs`). Where no listener
//!   can be had (the installer already runs under one: nested seccomp
//!   notifiers are refused with `EBUSY`) or the monitor cannot take it,
//!   the filter is installed without that rule and `sysinfo` is the kernel's.
//!
//! `limit_priv` opt-ins (off by default; other names, such as SmartOS's
//! `default`, are accepted and ignored):
//!
//! | name | effect |
//! |---|---|
//! | `sys_mount` | allows the mount family (in the zone's own mount namespace, and only file systems the kernel lets a user namespace mount: tmpfs, proc, sysfs, devpts, mqueue, overlay...) |
//! | `keyring` | allows `keyctl`, `add_key`, `request_key` |
//! | `perf` | allows `perf_event_open` (still subject to the host's `perf_event_paranoid`) |
//! | `bpf` | allows `bpf` (still subject to `unprivileged_bpf_disabled`) |
//! | `userfaultfd` | allows `userfaultfd` |

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Capabilities dropped from every zone's bounding set (LXC's defaults).
/// (`CAP_SYS_MODULE` 16, `CAP_SYS_RAWIO` 17, `CAP_SYS_TIME` 25,
/// `CAP_MAC_OVERRIDE` 32, `CAP_MAC_ADMIN` 33.)
pub const DROPPED_CAPABILITIES: [u32; 5] = [16, 17, 25, 32, 33];

/// The `limit_priv` names this host understands.
pub const OPT_INS: [&str; 5] = ["sys_mount", "keyring", "perf", "bpf", "userfaultfd"];

/// A group of system calls refused unless opted in (`None`: always refused).
struct Rule {
    opt_in: Option<&'static str>,
    /// Native numbers.
    native: &'static [libc::c_long],
    /// i386 numbers (x86-64 hosts only).
    compat: &'static [u32],
}

#[cfg(target_arch = "x86_64")]
mod table {
    use super::Rule;
    use libc::*;

    pub(super) const AUDIT_ARCH_NATIVE: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    pub(super) const AUDIT_ARCH_COMPAT: Option<u32> = Some(0x4000_0003); // AUDIT_ARCH_I386
    pub(super) const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);

    pub(super) const RULES: &[Rule] = &[
        Rule {
            opt_in: None,
            native: &[
                SYS_init_module,
                SYS_finit_module,
                SYS_delete_module,
                SYS_kexec_load,
                SYS_kexec_file_load,
                SYS_iopl,
                SYS_ioperm,
                SYS_swapon,
                SYS_swapoff,
                SYS_open_by_handle_at,
                SYS_syslog,
                SYS_acct,
                SYS_quotactl,
                SYS_settimeofday,
                SYS_clock_settime,
            ],
            // init_module, finit_module, delete_module, kexec_load, iopl, ioperm,
            // swapon, swapoff, open_by_handle_at, syslog, acct, quotactl,
            // settimeofday, stime, clock_settime, clock_settime64
            compat: &[128, 350, 129, 283, 110, 101, 87, 115, 342, 103, 51, 131, 79, 25, 264, 404],
        },
        Rule {
            opt_in: Some("sys_mount"),
            native: &[
                SYS_mount,
                SYS_umount2,
                SYS_pivot_root,
                SYS_open_tree,
                SYS_move_mount,
                SYS_fsopen,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fspick,
                SYS_mount_setattr,
            ],
            // mount, umount, umount2, pivot_root, open_tree .. fspick, mount_setattr
            compat: &[21, 22, 52, 217, 428, 429, 430, 431, 432, 433, 442],
        },
        Rule { opt_in: Some("keyring"), native: &[SYS_keyctl, SYS_add_key, SYS_request_key], compat: &[288, 286, 287] },
        Rule { opt_in: Some("perf"), native: &[SYS_perf_event_open], compat: &[336] },
        Rule { opt_in: Some("bpf"), native: &[SYS_bpf], compat: &[357] },
        Rule { opt_in: Some("userfaultfd"), native: &[SYS_userfaultfd], compat: &[374] },
    ];
}

#[cfg(target_arch = "aarch64")]
mod table {
    use super::Rule;
    use libc::*;

    pub(super) const AUDIT_ARCH_NATIVE: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    pub(super) const AUDIT_ARCH_COMPAT: Option<u32> = None;
    pub(super) const X32_SYSCALL_BIT: Option<u32> = None;

    pub(super) const RULES: &[Rule] = &[
        Rule {
            opt_in: None,
            native: &[
                SYS_init_module,
                SYS_finit_module,
                SYS_delete_module,
                SYS_kexec_load,
                SYS_kexec_file_load,
                SYS_swapon,
                SYS_swapoff,
                SYS_open_by_handle_at,
                SYS_syslog,
                SYS_acct,
                SYS_quotactl,
                SYS_settimeofday,
                SYS_clock_settime,
            ],
            compat: &[],
        },
        Rule {
            opt_in: Some("sys_mount"),
            native: &[
                SYS_mount,
                SYS_umount2,
                SYS_pivot_root,
                SYS_open_tree,
                SYS_move_mount,
                SYS_fsopen,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fspick,
                SYS_mount_setattr,
            ],
            compat: &[],
        },
        Rule { opt_in: Some("keyring"), native: &[SYS_keyctl, SYS_add_key, SYS_request_key], compat: &[] },
        Rule { opt_in: Some("perf"), native: &[SYS_perf_event_open], compat: &[] },
        Rule { opt_in: Some("bpf"), native: &[SYS_bpf], compat: &[] },
        Rule { opt_in: Some("userfaultfd"), native: &[SYS_userfaultfd], compat: &[] },
    ];
}

/// The architecture of the native system call numbers in `struct seccomp_data`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) const AUDIT_ARCH_NATIVE: u32 = table::AUDIT_ARCH_NATIVE;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) const AUDIT_ARCH_NATIVE: u32 = 0;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_uint = 1 << 3;
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
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

    /// The seccomp program: refuse what the profile does not allow, and
    /// with `notify_sysinfo` send native `sysinfo` calls to the filter's
    /// listener (install it with [`install_seccomp_with_listener`]: without
    /// a listener they would fail with `ENOSYS`).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    pub fn seccomp_program(&self, notify_sysinfo: bool) -> Vec<libc::sock_filter> {
        use table::*;
        let denied = |native: bool| -> Vec<u32> {
            RULES
                .iter()
                .filter(|r| r.opt_in.is_none_or(|o| !self.opt_ins.contains(&o)))
                .flat_map(|r| -> Vec<u32> {
                    if native {
                        r.native.iter().map(|n| *n as u32).collect()
                    } else {
                        r.compat.to_vec()
                    }
                })
                .collect()
        };
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let section = |nrs: &[u32], x32: Option<u32>, notify: Option<u32>| -> Vec<libc::sock_filter> {
            let mut s = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
            if let Some(bit) = x32 {
                s.push(jump(BPF_JGE_K, bit, 0, 1));
                s.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
            }
            if let Some(nr) = notify {
                s.push(jump(BPF_JEQ_K, nr, 0, 1));
                s.push(stmt(BPF_RET_K, SECCOMP_RET_USER_NOTIF));
            }
            for nr in nrs {
                s.push(jump(BPF_JEQ_K, *nr, 0, 1));
                s.push(stmt(BPF_RET_K, eperm));
            }
            s.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
            s
        };
        // i386's sysinfo keeps the kernel's answer: its struct is another.
        let notify = notify_sysinfo.then_some(libc::SYS_sysinfo as u32);
        let native = section(&denied(true), X32_SYSCALL_BIT, notify);
        let mut prog = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
        prog.push(jump(BPF_JEQ_K, AUDIT_ARCH_NATIVE, 0, native.len() as u8));
        prog.extend(native);
        if let Some(compat_arch) = AUDIT_ARCH_COMPAT {
            let compat = section(&denied(false), None, None);
            prog.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
            prog.push(jump(BPF_JEQ_K, compat_arch, 0, compat.len() as u8));
            prog.extend(compat);
        }
        // Any other architecture: nothing is known of its numbers.
        prog.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        prog
    }

    /// No filter where the numbers are not known.
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn seccomp_program(&self, _notify_sysinfo: bool) -> Vec<libc::sock_filter> {
        Vec::new()
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
/// `notify_sysinfo`) with a new listener and returns the listener; when
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn program_denies_by_default_and_opt_ins_relax() {
        let has = |p: &[libc::sock_filter], nr: libc::c_long| p.iter().any(|i| i.code == BPF_JEQ_K && i.k == nr as u32);
        let strict = Profile::default().seccomp_program(false);
        assert!(strict.len() < 255 && strict[0].k == OFF_ARCH);
        for nr in [libc::SYS_init_module, libc::SYS_mount, libc::SYS_keyctl, libc::SYS_bpf, libc::SYS_kexec_load] {
            assert!(has(&strict, nr), "{nr} is not refused");
        }
        assert!(!has(&strict, libc::SYS_read) && !has(&strict, libc::SYS_execve));
        let relaxed = Profile::from_limit_priv(&["sys_mount", "bpf"]).seccomp_program(false);
        assert!(!has(&relaxed, libc::SYS_mount) && !has(&relaxed, libc::SYS_bpf));
        assert!(has(&relaxed, libc::SYS_init_module) && has(&relaxed, libc::SYS_keyctl));
        // Every jump lands inside the program.
        for (i, ins) in strict.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < strict.len());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn native_sysinfo_goes_to_the_listener_when_asked() {
        let p = Profile::default();
        let plain = p.seccomp_program(false);
        let notifying = p.seccomp_program(true);
        let at = notifying
            .iter()
            .position(|i| i.code == BPF_JEQ_K && i.k == libc::SYS_sysinfo as u32)
            .expect("no sysinfo rule");
        assert_eq!((notifying[at + 1].code, notifying[at + 1].k), (BPF_RET_K, SECCOMP_RET_USER_NOTIF));
        // Once, in the native section: i386's sysinfo (116) is the kernel's.
        assert_eq!(notifying.iter().filter(|i| i.k == SECCOMP_RET_USER_NOTIF).count(), 1);
        assert!(at < notifying.iter().position(|i| i.k == table::AUDIT_ARCH_COMPAT.unwrap()).unwrap());
        assert!(!notifying.iter().any(|i| i.code == BPF_JEQ_K && i.k == 116));
        assert!(!plain.iter().any(|i| i.k == SECCOMP_RET_USER_NOTIF));
        assert_eq!(notifying.len(), plain.len() + 2, "the same deny list besides");
        for (i, ins) in notifying.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < notifying.len());
            }
        }
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn a_second_listener_is_refused_and_the_plain_filter_installed() {
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
            (Installed::Plain(why), ..) => eprintln!("SKIPPED: no seccomp listener here: {why}"),
            other => panic!("{other:?}"),
        }
    }
}
