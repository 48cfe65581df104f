//! The gate against new kernel system calls, a test run on the host: every
//! number below 1024 that the filter's tables do not know must be one the
//! running kernel does not have either (`ENOSYS`), natively and, on x86-64,
//! through the i386 entry (`int $0x80`). A kernel that adds a call fails
//! the suite, naming it, until the call is classified in the tables; until
//! then zones get `ENOSYS` for it, as from an older kernel.
//!
//! The calls run in a forked child that drops to an unprivileged uid
//! (65534, when the test runs as root) and enters new user, mount,
//! network, pid, ipc and uts namespaces, then forks again (to be pid 1 of
//! the new pid namespace) and makes the calls with every argument -1: an
//! invalid pointer and descriptor. A surprise call can do no harm there.
//! The i386 half needs the kernel's IA32 emulation; without it the half is
//! skipped with a printed reason, and fails in CI (`CI` set) only when the
//! kernel's configuration says the emulation should be there.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{abis, Abi};

/// The numbers tried: 0..LIMIT.
const LIMIT: u32 = 1024;
const NOBODY: libc::c_long = 65534;

/// What a call answered (`ret`: the return value or `-errno`), as the
/// sandbox writes it on its pipe; `abi == SETUP` reports a failed setup
/// step `nr` with `-errno`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Answer {
    abi: u32,
    nr: u32,
    ret: i64,
}

const SETUP: u32 = u32::MAX;
const SETUP_STEPS: [&str; 3] = ["dropping to uid 65534", "unsharing the namespaces", "forking into the pid namespace"];

/// Calls i386 system call `nr` through `int $0x80` with `args` in ebx, ecx,
/// edx, esi and edi (ebp, the sixth, is left as it is); returns eax: the
/// result or `-errno`.
///
/// # Safety
///
/// The kernel must have IA32 emulation (see [`ia32`]: elsewhere the
/// instruction kills the caller), and the call must be one that is safe
/// to make with these arguments.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn int80(nr: u32, args: [u32; 5]) -> i32 {
    let ret: u32;
    // SAFETY: a system call through the i386 entry, which the caller
    // vouches for; rbx (which Rust does not let us name) is swapped in and
    // back out, and what the entry clobbers (r8–r11) is declared.
    unsafe {
        std::arch::asm!(
            "xchg {b:r}, rbx",
            "int 0x80",
            "xchg {b:r}, rbx",
            b = inout(reg) u64::from(args[0]) => _,
            inlateout("eax") nr => ret,
            in("ecx") args[1],
            in("edx") args[2],
            in("esi") args[3],
            in("edi") args[4],
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
        );
    }
    ret as i32
}

/// Whether this kernel answers `int $0x80` (IA32 emulation): tried in a
/// forked child, where a kernel without it kills the caller.
#[cfg(target_arch = "x86_64")]
pub(super) fn ia32() -> Result<(), String> {
    // SAFETY: the child only makes the call and _exits.
    match unsafe { libc::fork() } {
        -1 => Err(format!("fork: {}", io::Error::last_os_error())),
        0 => {
            // SAFETY: getpid, in a child that may die of it.
            let pid = unsafe { int80(20, [0; 5]) };
            // SAFETY: _exit ends the forked child at once.
            unsafe { libc::_exit(if pid > 0 { 0 } else { 1 }) }
        }
        child => match wait(child) {
            Ok(0) => Ok(()),
            Ok(status) => Err(format!("int $0x80 fails here ({})", describe(status))),
            Err(e) => Err(format!("waitpid: {e}")),
        },
    }
}

/// Whether the kernel's configuration and command line say IA32 emulation
/// is on (`None`: cannot tell).
#[cfg(target_arch = "x86_64")]
fn ia32_configured() -> Option<bool> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let config = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .or_else(|| std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok())?;
    let set = |key: &str| config.lines().any(|l| l == format!("{key}=y"));
    if !set("CONFIG_IA32_EMULATION") {
        return Some(false);
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let asked = cmdline.split_whitespace().find_map(|w| w.strip_prefix("ia32_emulation="));
    Some(match asked {
        Some(v) => matches!(v, "1" | "y" | "yes" | "on" | "true"),
        None => !set("CONFIG_IA32_EMULATION_DEFAULT_DISABLED"),
    })
}

/// Makes call `nr` of `abi` with every argument -1.
fn call(abi: &Abi, nr: u32) -> i64 {
    #[cfg(target_arch = "x86_64")]
    if !abi.native {
        // SAFETY: a number the tables do not know, with invalid pointers
        // and descriptors, in the sandbox the module documentation
        // describes, on a kernel that has IA32 emulation (checked first).
        return i64::from(unsafe { int80(nr, [u32::MAX; 5]) });
    }
    let _ = abi;
    // SAFETY: a number the tables do not know, with invalid pointers and
    // descriptors, in the sandbox the module documentation describes.
    let r = unsafe { libc::syscall(libc::c_long::from(nr), -1, -1, -1, -1, -1, -1) };
    if r == -1 {
        -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        r
    }
}

fn wait(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into `status`.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(status)
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

fn write_answer(fd: RawFd, a: Answer) {
    // SAFETY: writes the bytes of a plain struct (16 bytes: atomic on a pipe).
    unsafe { libc::write(fd, (&a as *const Answer).cast(), std::mem::size_of::<Answer>()) };
}

/// The sandboxed child: drop, unshare, fork, call. Only system calls here
/// (it runs after `fork` in a process with other threads).
fn sandbox(calls: &[(u32, u32)], host: &[Abi], out: RawFd) -> ! {
    let fail = |step: u32| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        write_answer(out, Answer { abi: SETUP, nr: step, ret: -i64::from(errno) });
        // SAFETY: _exit ends the forked child at once.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: raw system calls on this (single-threaded, forked) process
    // only: they change its ids, namespaces and children, nothing of the
    // parent's.
    unsafe {
        if libc::geteuid() == 0
            && (libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY) != 0
                || libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY) != 0)
        {
            fail(0);
        }
        let flags = libc::CLONE_NEWUSER
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS;
        if libc::unshare(flags) != 0 {
            fail(1);
        }
        match libc::fork() {
            -1 => fail(2),
            0 => {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::alarm(60);
                for (abi, nr) in calls {
                    let ret = call(&host[*abi as usize], *nr);
                    write_answer(out, Answer { abi: *abi, nr: *nr, ret });
                }
                libc::_exit(0)
            }
            child => {
                let status = wait(child).map_or(1, |s| if libc::WIFEXITED(s) { libc::WEXITSTATUS(s) } else { 1 });
                libc::_exit(status)
            }
        }
    }
}

/// Runs `calls` (index into `host`, number) in the sandbox; returns the
/// answers it wrote, and how the sandbox ended when it did not end well.
fn run_sandboxed(calls: &[(u32, u32)], host: &[Abi]) -> io::Result<(Vec<Answer>, Option<String>)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors of the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made, and are owned here only.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs `sandbox`, which makes system calls only and never returns.
    let pid = match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => sandbox(calls, host, w.as_raw_fd()),
        pid => pid,
    };
    drop(w);
    let mut bytes = Vec::new();
    std::fs::File::from(r).read_to_end(&mut bytes)?;
    let status = wait(pid)?;
    let size = std::mem::size_of::<Answer>();
    let answers = bytes
        .chunks_exact(size)
        .map(|c| {
            let mut a = Answer::default();
            // SAFETY: `c` holds `size` bytes of an Answer the child wrote.
            unsafe { std::ptr::copy_nonoverlapping(c.as_ptr(), (&mut a as *mut Answer).cast::<u8>(), size) };
            a
        })
        .collect();
    Ok((answers, (status != 0).then(|| describe(status))))
}

fn errno_name(ret: i64) -> String {
    if ret >= 0 {
        return format!("returned {ret}");
    }
    let e = io::Error::from_raw_os_error(-ret as i32);
    format!("answered {e}")
}

#[test]
fn every_syscall_of_this_kernel_is_in_the_table() {
    let ci = std::env::var_os("CI").is_some();
    let host = abis();
    if host.is_empty() {
        assert!(!ci, "the filter has no table for this architecture (CI is set)");
        eprintln!("SKIPPED: the filter has no table for this architecture");
        return;
    }
    let mut calls = Vec::new();
    for (i, abi) in host.iter().enumerate() {
        #[cfg(target_arch = "x86_64")]
        if !abi.native {
            if let Err(why) = ia32() {
                let configured = ia32_configured();
                let reason = format!("the i386 half: {why} (the kernel's configuration says: {configured:?})");
                assert!(!(ci && configured == Some(true)), "IA32 emulation should be there: {reason}");
                eprintln!("SKIPPED: {reason}");
                continue;
            }
        }
        calls.extend((0..LIMIT).filter(|nr| abi.name_of(*nr).is_none()).map(|nr| (i as u32, nr)));
    }
    let (answers, ended) = run_sandboxed(&calls, host).expect("forking the sandbox");
    if let Some(setup) = answers.iter().find(|a| a.abi == SETUP) {
        let why = format!(
            "cannot make the sandbox ({}: {})",
            SETUP_STEPS.get(setup.nr as usize).unwrap_or(&"?"),
            io::Error::from_raw_os_error(-setup.ret as i32)
        );
        assert!(!ci, "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut found: Vec<String> = answers
        .iter()
        .filter(|a| a.ret != -i64::from(libc::ENOSYS))
        .map(|a| (&host[a.abi as usize], a.nr, errno_name(a.ret)))
        .map(|(abi, nr, what)| {
            format!(
                "the kernel has syscall {nr} that the filter's table does not know: classify it in \
                 crates/zone/src/security.rs ({} ABI; with every argument -1 it {what})",
                abi.name
            )
        })
        .collect();
    if let Some((abi, nr)) = calls.get(answers.len()) {
        found.push(format!(
            "the kernel has syscall {nr} that the filter's table does not know: classify it in \
             crates/zone/src/security.rs ({} ABI; the sandbox calling it ended: {})",
            host[*abi as usize].name,
            ended.as_deref().unwrap_or("without an answer")
        ));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    eprintln!("{} numbers the tables do not know: ENOSYS from this kernel too", calls.len());
}
