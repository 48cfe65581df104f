//! The seccomp user notifications of the zone's filter, which the monitor
//! answers: the calls of [`security::NOTIFIED`] (`sysinfo`, `statfs`,
//! `fstatfs`, `uname`, and i386's `statfs64`/`fstatfs64`), each answered
//! in its own module (`sysinfo.rs`, `statfs.rs`, `uname.rs`) through
//! [`Answers`].
//!
//! Every filter has its own listener. init's child sends its listener to
//! the monitor on a socket pair (the inbox) just before `execve`; a new
//! init (a reboot, `restart_init`) brings a new one, which replaces the
//! old. Processes entered from the host install their own filter: the
//! monitor's shutdown helper sends its listener to the inbox too, `zlogin`
//! over the control socket (`sysinfo_listener`, see [`crate::control`]).
//! The monitor polls every listener with its other descriptors and drops
//! one at `POLLHUP`, when no process runs under its filter any more.
//!
//! One notification, without blocking the loop:
//!
//! ```text
//!  NOTIF_RECV ── a call the monitor does not answer ───────────> error ENOSYS
//!    │ open /proc/<pid>, then its mem ── refused ──────────────> CONTINUE (the kernel's answer)
//!    │ NOTIF_ID_VALID ── the caller is gone (killed) ──────────> nothing to answer
//!    │ the call's answer (sysinfo.rs, statfs.rs, uname.rs):
//!    │   the kernel's ─────────────────────────────────────────> CONTINUE
//!    │   an error ─────────────────────────────────────────────> error
//!    │   bytes at an address of the caller's:
//!    │     pwrite through its mem ── fails ────────────────────> error EFAULT
//!    └ NOTIF_SEND val 0
//! ```
//!
//! `/proc/<pid>` and its `mem` are opened before `NOTIF_ID_VALID`
//! confirms the caller still waits, so both are the caller's even if its
//! pid is reused right after (the way `seccomp_unotify(2)` and Incus do
//! it): everything else of the caller's (its root, cwd, descriptors,
//! credentials) is opened relative to that directory. Unlike the kernel's
//! `copy_to_user`, a write through `mem` goes through read-only pages of
//! the caller (as a debugger's would; never into a file the caller could
//! not write): only an unmapped address gets `EFAULT`. `CONTINUE` lets the
//! kernel do the call as the caller would have: it reads the arguments
//! again and answers with the caller's own view and rights, so a caller
//! that changes them meanwhile only gets the kernel's answer.
//!
//! A zone calling these in a loop makes the monitor, outside the zone's
//! cgroup, work for it. So the monitor answers at most [`BUDGET`]
//! notifications per [`WINDOW`], and spends at most [`TIME_BUDGET`] of
//! each window answering them (for all its listeners together; the time
//! bound holds on a slow host, where each answer costs more); beyond that
//! the callers wait for the next window (they are not refused), and the
//! monitor goes on serving its control socket and console.

use std::ffi::{CStr, CString};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::{statfs, sysinfo, uname};
use crate::security;

/// Listeners of processes entered from the host served at once; more are
/// refused (those processes get the kernel's answers).
pub(super) const MAX_ENTERED: usize = 256;
/// Notifications answered per [`WINDOW`].
const BUDGET: u32 = 256;
/// See [`BUDGET`].
const WINDOW: Duration = Duration::from_millis(100);
/// The time per [`WINDOW`] the monitor may spend answering (a quarter of
/// a CPU).
const TIME_BUDGET: Duration = Duration::from_millis(25);

/// A call the monitor answers, from its ABI and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Syscall {
    /// The native `sysinfo(2)`.
    Sysinfo,
    /// `statfs(2)`, `fstatfs(2)` and i386's, with their 64-bit variants.
    Statfs(statfs::Request),
    /// `uname(2)` (the native one and i386's, both `struct new_utsname`).
    Uname {
        /// Where the struct goes.
        buf: u64,
    },
}

impl Syscall {
    /// The call number `nr` of architecture `arch` with arguments `args`,
    /// if the monitor answers it.
    pub(super) fn decode(arch: u32, nr: i32, args: &[u64; 6]) -> Option<Syscall> {
        let abi = security::abis().iter().find(|a| a.audit_arch == arch)?;
        let name = abi.name_of(u32::try_from(nr).ok()?)?;
        if name == "sysinfo" && abi.native {
            return Some(Syscall::Sysinfo);
        }
        if let Some(buf) = uname::decode(name, abi.native, args) {
            return Some(Syscall::Uname { buf });
        }
        statfs::Request::decode(name, abi.native, args).map(Syscall::Statfs)
    }
}

/// The process a notification came from: its `/proc` directory and its
/// memory, opened before the notification was found still valid.
pub(super) struct Caller {
    dir: OwnedFd,
    mem: OwnedFd,
}

impl Caller {
    fn open(pid: u32) -> io::Result<Caller> {
        let path = CString::new(format!("/proc/{pid}")).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: a valid C string; the descriptor is checked and owned.
        let dir = owned(unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: as above, relative to the live directory descriptor.
        let mem = owned(unsafe { libc::openat(dir.as_raw_fd(), c"mem".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        Ok(Caller { dir, mem })
    }

    /// Opens `rel` in the caller's `/proc` directory (`root`, `cwd`,
    /// `fd/3`, `status`...), following its magic links.
    pub(super) fn open_at(&self, rel: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
        // SAFETY: a valid C string and a live directory descriptor; the result is checked and owned.
        owned(unsafe { libc::openat(self.dir.as_raw_fd(), rel.as_ptr(), flags | libc::O_CLOEXEC) })
    }

    /// The owner of the caller's `/proc/<pid>`: its effective uid (the
    /// user namespace's root for a process that is not dumpable, such as
    /// a setuid program's).
    pub(super) fn owner(&self) -> Option<u32> {
        // SAFETY: statx fills the zeroed struct we own; the path is empty (the descriptor itself).
        unsafe {
            let mut stx: libc::statx = std::mem::zeroed();
            let flags = libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC;
            (libc::statx(self.dir.as_raw_fd(), c"".as_ptr(), flags, libc::STATX_UID, &mut stx) == 0)
                .then_some(stx.stx_uid)
        }
    }

    /// What the magic link `rel` in the caller's `/proc` directory
    /// (`cwd`) says, as the monitor sees it.
    pub(super) fn read_link(&self, rel: &CStr) -> Option<CString> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: readlinkat writes at most buf.len() bytes into our buffer.
        let n = unsafe { libc::readlinkat(self.dir.as_raw_fd(), rel.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 || n as usize >= buf.len() {
            return None;
        }
        buf.truncate(n as usize);
        CString::new(buf).ok()
    }

    /// The NUL-terminated string at `addr` in the caller's memory, of at
    /// most `max` bytes before the NUL; `None` when it cannot be read
    /// whole (unmapped, or longer).
    pub(super) fn read_cstring(&self, addr: u64, max: usize) -> Option<CString> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        let mut at = i64::try_from(addr).ok()?;
        while out.len() <= max {
            // Up to the end of the page: the next one may be unmapped.
            let room = (4096 - (at as usize % 4096)).min(chunk.len());
            // SAFETY: pread writes at most `room` bytes into our buffer.
            let n = unsafe { libc::pread64(self.mem.as_raw_fd(), chunk.as_mut_ptr().cast(), room, at) };
            if n <= 0 {
                return None;
            }
            let got = &chunk[..n as usize];
            if let Some(end) = got.iter().position(|b| *b == 0) {
                out.extend_from_slice(&got[..end]);
                return (out.len() <= max).then(|| CString::new(out).ok()).flatten();
            }
            out.extend_from_slice(got);
            at = at.checked_add(n as i64)?;
        }
        None
    }

    /// Writes `bytes` at `addr` in the caller's memory; `false` when it
    /// is not (all) mapped.
    fn write(&self, addr: u64, bytes: &[u8]) -> bool {
        let Ok(offset) = i64::try_from(addr) else { return false };
        // SAFETY: pwrite reads `bytes` (live) into the file at `offset`.
        let n = unsafe { libc::pwrite64(self.mem.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), offset) };
        // Unmapped memory reads as EIO through /proc/<pid>/mem.
        n == bytes.len() as isize
    }
}

/// `fd`, which the kernel just returned, owned; or the error it stands for.
pub(super) fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One notification to answer.
pub(super) struct Call<'a> {
    /// What was called.
    pub(super) syscall: Syscall,
    /// Its arguments, as the filter saw them.
    pub(super) args: [u64; 6],
    /// Who called.
    pub(super) caller: &'a Caller,
}

/// How a call is answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// These bytes at this address of the caller's; the call returns 0.
    Write {
        /// Where.
        addr: u64,
        /// What.
        bytes: Vec<u8>,
    },
    /// The call fails with this errno.
    Errno(i32),
    /// The kernel does the call, as it would have without the filter.
    Continue,
}

/// What the monitor answers with: its zone's views, and what it keeps of them.
pub(super) struct Answers {
    pub(super) sysinfo: sysinfo::Cache,
    pub(super) statfs: statfs::RootFs,
    pub(super) uname: uname::Uts,
}

impl Answers {
    /// The answer to `call` of zone `zone`.
    pub(super) fn answer(&mut self, call: &Call, zone: &sysinfo::Zone) -> Answer {
        match call.syscall {
            Syscall::Sysinfo => zone.answer(&mut self.sysinfo, call.args[0]),
            Syscall::Statfs(req) => self.statfs.answer(call, req),
            Syscall::Uname { buf } => self.uname.answer(call.caller, buf),
        }
    }
}

struct Listener {
    fd: OwnedFd,
    /// The listener of init's filter (the others are entered processes').
    init: bool,
}

/// The listeners the monitor serves, and its budget.
pub(super) struct Listeners {
    list: Vec<Listener>,
    window: Instant,
    served: u32,
    /// Time spent answering in this window.
    spent: Duration,
}

impl Listeners {
    pub(super) fn new() -> Listeners {
        Listeners { list: Vec::new(), window: Instant::now(), served: 0, spent: Duration::ZERO }
    }

    /// Serves `fd` from now on, if it is a seccomp listener (anything else
    /// is closed); init's replaces the previous init's.
    pub(super) fn add(&mut self, fd: OwnedFd, init: bool) {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
        if link.as_os_str() != "anon_inode:seccomp notify" {
            log!("ignoring a seccomp listener that is not one: {}", link.display());
            return;
        }
        if init {
            self.drop_init();
        }
        self.list.push(Listener { fd, init });
    }

    /// Stops serving init's listener (init is gone, a new one comes).
    pub(super) fn drop_init(&mut self) {
        self.list.retain(|l| !l.init);
    }

    /// Whether init's listener is served.
    pub(super) fn has_init(&self) -> bool {
        self.list.iter().any(|l| l.init)
    }

    /// Whether another entered process's listener may be added.
    pub(super) fn has_room(&self) -> bool {
        self.list.iter().filter(|l| !l.init).count() < MAX_ENTERED
    }

    fn exhausted(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window) >= WINDOW {
            self.window = now;
            self.served = 0;
            self.spent = Duration::ZERO;
        }
        self.spent_all()
    }

    fn spent_all(&self) -> bool {
        self.served >= BUDGET || self.spent >= TIME_BUDGET
    }

    /// Appends one pollfd per listener, in order: `POLLIN`, or nothing
    /// but hang-ups while the budget is spent.
    pub(super) fn push_pollfds(&mut self, pfds: &mut Vec<libc::pollfd>) {
        let events = if self.exhausted(Instant::now()) { 0 } else { libc::POLLIN };
        pfds.extend(self.list.iter().map(|l| libc::pollfd { fd: l.fd.as_raw_fd(), events, revents: 0 }));
    }

    /// When the loop must wake up to serve again (the budget is spent).
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.spent_all().then(|| self.window + WINDOW)
    }

    /// Handles the pollfds [`Listeners::push_pollfds`] appended, after
    /// `poll`: one notification per ready listener, answered by `answer`,
    /// and listeners whose processes are all gone dropped.
    pub(super) fn on_events(&mut self, pfds: &[libc::pollfd], answer: &mut dyn FnMut(&Call) -> Answer) {
        for i in (0..pfds.len().min(self.list.len())).rev() {
            let ev = pfds[i].revents;
            if ev & libc::POLLIN != 0 {
                self.served += 1;
                let started = Instant::now();
                let served = serve(self.list[i].fd.as_fd(), answer);
                self.spent += started.elapsed();
                if let Err(e) = served {
                    log!("seccomp listener: {e}; dropped");
                    self.list.swap_remove(i);
                }
            } else if ev & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                self.list.swap_remove(i);
            }
        }
    }
}

/// Receives one notification on `listener` and answers it with `answer`
/// (see the module documentation). An error means the listener itself
/// failed and should be dropped.
pub(super) fn serve(listener: BorrowedFd, answer: &mut dyn FnMut(&Call) -> Answer) -> io::Result<()> {
    // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV fills the struct we own.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
        let e = io::Error::last_os_error();
        // ENOENT: the caller was killed before we got to it.
        return match e.raw_os_error() {
            Some(libc::ENOENT | libc::EINTR) => Ok(()),
            _ => Err(e),
        };
    }
    let mut resp = libc::seccomp_notif_resp { id: req.id, val: 0, error: 0, flags: 0 };
    let args = req.data.args;
    match Syscall::decode(req.data.arch, req.data.nr, &args) {
        // The filter sends nothing else: never let an unexpected call through.
        None => resp.error = -libc::ENOSYS,
        Some(syscall) => match Caller::open(req.pid) {
            Err(_) => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            Ok(caller) => {
                // SAFETY: NOTIF_ID_VALID reads the u64 we pass.
                if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) } != 0 {
                    return Ok(());
                }
                match answer(&Call { syscall, args, caller: &caller }) {
                    Answer::Write { addr, bytes } => {
                        if !caller.write(addr, &bytes) {
                            resp.error = -libc::EFAULT;
                        }
                    }
                    Answer::Errno(e) => resp.error = -e,
                    Answer::Continue => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
                }
            }
        },
    }
    // SAFETY: NOTIF_SEND reads the struct we pass. It fails (ENOENT) when
    // the caller was killed meanwhile: nothing left to do then.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_pauses_serving_until_the_window_ends() {
        let mut l = Listeners::new();
        let (r, _w) = std::os::unix::net::UnixStream::pair().unwrap();
        l.list.push(Listener { fd: OwnedFd::from(r), init: false });
        let events = |l: &mut Listeners| {
            let mut pfds = Vec::new();
            l.push_pollfds(&mut pfds);
            pfds[0].events
        };
        assert_eq!((events(&mut l), l.wake_at()), (libc::POLLIN, None));
        l.served = BUDGET;
        assert_eq!(events(&mut l), 0, "spent: only hang-ups are watched");
        assert_eq!(l.wake_at(), Some(l.window + WINDOW));
        l.window -= WINDOW;
        assert_eq!((events(&mut l), l.served, l.wake_at()), (libc::POLLIN, 0, None), "a new window");
        // Time spent answering counts too, whatever the number of calls.
        l.spent = TIME_BUDGET;
        assert_eq!((events(&mut l), l.wake_at()), (0, Some(l.window + WINDOW)), "time spent");
        l.window -= WINDOW;
        assert_eq!((events(&mut l), l.spent), (libc::POLLIN, Duration::ZERO), "a new window");
        // Not a seccomp listener: refused.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        l.add(OwnedFd::from(a), true);
        assert!(!l.has_init() && l.list.len() == 1);
    }

    #[test]
    fn only_the_answered_calls_decode() {
        let args = [1, 2, 3, 4, 5, 6];
        #[cfg(target_arch = "x86_64")]
        {
            let (x86_64, i386) = (security::X86_64.audit_arch, security::I386.audit_arch);
            assert_eq!(Syscall::decode(x86_64, 99, &args), Some(Syscall::Sysinfo));
            assert!(matches!(Syscall::decode(x86_64, 137, &args), Some(Syscall::Statfs(_))));
            assert!(matches!(Syscall::decode(x86_64, 138, &args), Some(Syscall::Statfs(_))));
            for nr in [99, 100, 268, 269] {
                assert!(matches!(Syscall::decode(i386, nr, &args), Some(Syscall::Statfs(_))), "i386 {nr}");
            }
            assert_eq!(Syscall::decode(x86_64, 63, &args), Some(Syscall::Uname { buf: 1 }));
            assert_eq!(Syscall::decode(i386, 122, &[1 << 32 | 7, 0, 0, 0, 0, 0]), Some(Syscall::Uname { buf: 7 }));
            // i386's sysinfo (116), olduname (109) and oldolduname (59) are
            // not answered; nor anything else.
            for (arch, nr) in [
                (i386, 116),
                (i386, 109),
                (i386, 59),
                (x86_64, 0),
                (x86_64, -1),
                (x86_64, 0x4000_0063),
                (x86_64, 0x4000_003f),
                (0xc000_00b7, 179),
            ] {
                assert_eq!(Syscall::decode(arch, nr, &args), None, "{arch:#x} {nr}");
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let arch = security::AARCH64.audit_arch;
            assert_eq!(Syscall::decode(arch, 179, &args), Some(Syscall::Sysinfo));
            assert!(matches!(Syscall::decode(arch, 43, &args), Some(Syscall::Statfs(_))));
            assert_eq!(Syscall::decode(arch, 160, &args), Some(Syscall::Uname { buf: 1 }));
            assert_eq!(Syscall::decode(arch, 0, &args), None);
        }
    }

    #[test]
    fn strings_are_read_from_the_callers_memory_up_to_their_nul() {
        // This process as the caller: its own memory through /proc/<pid>/mem.
        let caller = Caller::open(std::process::id()).unwrap();
        let s = c"/a/path";
        assert_eq!(caller.read_cstring(s.as_ptr() as u64, 4096).as_deref(), Some(s));
        assert_eq!(caller.read_cstring(s.as_ptr() as u64, 3), None, "longer than allowed");
        assert_eq!(caller.read_cstring(0, 4096), None, "unmapped");
        // A string running across a page boundary.
        let mut page = vec![b'x'; 3 * 4096];
        let start = 4096 - (page.as_ptr() as usize % 4096) + 4090;
        page[start + 20] = 0;
        let got = caller.read_cstring(page[start..].as_ptr() as u64, 4096).unwrap();
        assert_eq!(got.as_bytes().len(), 20);
        let mut out = [0u8; 8];
        assert!(caller.write(out.as_mut_ptr() as u64, b"written!"));
        // SAFETY: the bytes were written through /proc/self/mem; read them back volatilely.
        let back = unsafe { std::ptr::read_volatile(&out) };
        assert_eq!(&back, b"written!");
        assert!(!caller.write(8, b"x"), "unmapped");
    }
}
