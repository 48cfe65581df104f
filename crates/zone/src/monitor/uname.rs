//! The zone's answers to `uname(2)`: a zone is a SmartOS lx zone, and
//! says so as one does, with the version `BrandZ virtual linux`, which
//! cloud-init's SmartOS datasource (`get_smartos_environ`) and other
//! SmartOS-aware tools look for. The monitor serves the seccomp
//! notifications the zone's filter sends for the native `uname` and
//! i386's (`notify.rs`); i386's `olduname` and `oldolduname` are left to
//! the kernel.
//!
//! The answer is the kernel's own for the caller, the version aside: the
//! monitor calls `uname` itself as the caller would have, in the caller's
//! UTS namespace (its nodename and domainname: the zone's, or those of a
//! namespace the caller unshared and named) and with the caller's
//! personality (`PER_LINUX32` makes the machine `i686`, for an i386
//! program as for a native one; `UNAME26` makes the release `2.6.x`):
//!
//! ```text
//!  open ns/uts and read personality in the caller's /proc/<pid> ── fails ──> CONTINUE
//!  setns(its UTS namespace) ── refused ────────────────────────────────────> CONTINUE
//!  personality(its PER_* and UNAME26), uname, personality(the monitor's)
//!  setns(the monitor's own UTS namespace) ── refused: logged, and every
//!  uname from then on is the kernel's ─────────────────────────────────────> CONTINUE
//!  └ the struct with version "BrandZ virtual linux", at the caller's buffer
//! ```
//!
//! The monitor is single-threaded, so nothing else of it runs while it is
//! in the caller's namespace. The struct is `struct new_utsname` on every
//! ABI (six fields of 65 bytes, NUL-padded as the kernel keeps them), so
//! i386's needs no layout of its own.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::notify::{owned, Answer, Caller};

/// The version a SmartOS lx zone reports.
pub(super) const VERSION: &str = "BrandZ virtual linux";
/// One field of `struct new_utsname`, its NUL included.
const FIELD_LEN: usize = 65;
/// The fields, in order.
const FIELDS: usize = 6;
/// The size of `struct new_utsname`, which `uname(2)` writes whole.
pub(super) const UTSNAME_SIZE: usize = FIELDS * FIELD_LEN;
/// `personality(2)`'s type (`PER_MASK`) and `UNAME26`: the bits of a
/// personality the kernel's `uname` answer depends on.
const PERSONALITY_BITS: u32 = 0xff | 0x0020000;
/// `personality(0xffffffff)` only reads it.
const PERSONALITY_QUERY: libc::c_ulong = 0xffff_ffff;

/// A field of the struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Sysname = 0,
    Nodename = 1,
    Release = 2,
    Version = 3,
    Machine = 4,
    Domainname = 5,
}

/// The kernel's `struct new_utsname`, as bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct Utsname([u8; UTSNAME_SIZE]);

impl std::fmt::Debug for Utsname {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |field| String::from_utf8_lossy(self.field(field)).into_owned();
        f.debug_struct("Utsname")
            .field("sysname", &text(Field::Sysname))
            .field("nodename", &text(Field::Nodename))
            .field("release", &text(Field::Release))
            .field("version", &text(Field::Version))
            .field("machine", &text(Field::Machine))
            .field("domainname", &text(Field::Domainname))
            .finish()
    }
}

impl Utsname {
    /// What `uname(2)` answers this thread now.
    fn kernel() -> io::Result<Utsname> {
        let mut u = Utsname([0; UTSNAME_SIZE]);
        // SAFETY: uname(2) writes a struct new_utsname (UTSNAME_SIZE bytes) into the buffer we own.
        if unsafe { libc::syscall(libc::SYS_uname, u.0.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(u)
    }

    /// `field`'s bytes, up to its NUL.
    pub(super) fn field(&self, field: Field) -> &[u8] {
        let at = field as usize * FIELD_LEN;
        let bytes = &self.0[at..at + FIELD_LEN];
        &bytes[..bytes.iter().position(|b| *b == 0).unwrap_or(FIELD_LEN)]
    }

    /// Sets `field` to `value` (at most 64 bytes, as `sethostname` allows:
    /// the rest is cut), NUL-padded.
    pub(super) fn set(&mut self, field: Field, value: &[u8]) {
        let at = field as usize * FIELD_LEN;
        let slot = &mut self.0[at..at + FIELD_LEN];
        let n = value.len().min(FIELD_LEN - 1);
        slot.fill(0);
        slot[..n].copy_from_slice(&value[..n]);
    }

    /// The bytes the kernel would write.
    pub(super) fn to_bytes(self) -> [u8; UTSNAME_SIZE] {
        self.0
    }
}

/// The zone's answer from the kernel's: the version is BrandZ's, the rest
/// is the kernel's.
pub(super) fn branded(kernel: Utsname) -> Utsname {
    let mut u = kernel;
    u.set(Field::Version, VERSION.as_bytes());
    u
}

/// The buffer of `uname` of the native ABI (or i386's) with `args`, if
/// `name` is it.
pub(super) fn decode(name: &str, native: bool, args: &[u64; 6]) -> Option<u64> {
    // i386's arguments are 32 bits wide.
    (name == "uname").then(|| if native { args[0] } else { args[0] & 0xffff_ffff })
}

/// What the monitor answers `uname` with: its own UTS namespace, to
/// return to after entering a caller's, and its own personality.
pub(super) struct Uts {
    /// `None`: it could not be opened, or the monitor could not return to
    /// it once; the kernel answers.
    own: Option<OwnedFd>,
    personality: u32,
}

impl Uts {
    /// The monitor's UTS namespace and personality, now.
    pub(super) fn open() -> Uts {
        // SAFETY: a valid C string; the descriptor is checked and owned.
        let fd = unsafe { libc::open(c"/proc/thread-self/ns/uts".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        let own = owned(fd)
            .map_err(|e| log!("cannot open the monitor's UTS namespace ({e}): the zone's uname(2) is the kernel's"))
            .ok();
        // SAFETY: personality(2) with the query value only reads this thread's.
        let personality = unsafe { libc::personality(PERSONALITY_QUERY) } as u32;
        Uts { own, personality }
    }

    /// The answer to `uname(buf)` of `caller`: the kernel's own for it
    /// with BrandZ's version, or the kernel's when it cannot be had.
    pub(super) fn answer(&mut self, caller: &Caller, buf: u64) -> Answer {
        match self.callers(caller) {
            Some(u) => Answer::Write { addr: buf, bytes: branded(u).to_bytes().to_vec() },
            None => Answer::Continue,
        }
    }

    /// What the kernel answers `caller` (see the module documentation).
    fn callers(&mut self, caller: &Caller) -> Option<Utsname> {
        let own = self.own.as_ref()?;
        let ns = caller.open_at(c"ns/uts", libc::O_RDONLY).ok()?;
        let persona = personality_of(caller)?;
        let wanted = (self.personality & !PERSONALITY_BITS) | (persona & PERSONALITY_BITS);
        setns(&ns).ok()?;
        let switched = wanted == self.personality || set_personality(wanted);
        let got = if switched { Utsname::kernel().ok() } else { None };
        if wanted != self.personality {
            set_personality(self.personality);
        }
        if let Err(e) = setns(own) {
            log!("cannot return to the monitor's UTS namespace ({e}): the zone's uname(2) is the kernel's from now on");
            self.own = None;
            return None;
        }
        got
    }
}

/// The caller's personality, from its `/proc/<pid>/personality`.
fn personality_of(caller: &Caller) -> Option<u32> {
    let fd = caller.open_at(c"personality", libc::O_RDONLY).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: read writes at most buf.len() bytes into our buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    let text = std::str::from_utf8(buf.get(..usize::try_from(n).ok()?)?).ok()?;
    u32::from_str_radix(text.trim(), 16).ok()
}

/// Sets this thread's personality; `false` when refused.
fn set_personality(p: u32) -> bool {
    // SAFETY: personality(2) changes this thread's personality only.
    unsafe { libc::personality(libc::c_ulong::from(p)) != -1 }
}

/// Moves this thread into the UTS namespace `ns`.
fn setns(ns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor we hold; it changes this thread's UTS namespace only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::os::fd::{AsFd, BorrowedFd};

    use super::super::notify::{self, Listeners};
    use super::*;
    use crate::security::{install_seccomp_with_listener, Installed, Profile};

    fn sample() -> Utsname {
        let mut u = Utsname([0xa5; UTSNAME_SIZE]);
        for (f, v) in [
            (Field::Sysname, "Linux"),
            (Field::Nodename, "zone1"),
            (Field::Release, "6.18.0"),
            (Field::Version, "#1 SMP PREEMPT_DYNAMIC"),
            (Field::Machine, "x86_64"),
            (Field::Domainname, "(none)"),
        ] {
            u.set(f, v.as_bytes());
        }
        u
    }

    #[test]
    fn fields_are_65_bytes_apart_and_nul_padded() {
        let b = sample().to_bytes();
        assert_eq!(b.len(), 390);
        for (at, want) in [(0, "Linux"), (65, "zone1"), (130, "6.18.0"), (260, "x86_64"), (325, "(none)")] {
            assert_eq!(&b[at..at + want.len()], want.as_bytes(), "at {at}");
            assert!(b[at + want.len()..at + 65].iter().all(|x| *x == 0), "padding after {want}");
        }
        // A value of 64 bytes or more is cut to 64: a NUL always ends a field.
        let mut u = sample();
        u.set(Field::Nodename, &[b'n'; 80]);
        assert_eq!(u.field(Field::Nodename), &[b'n'; 64][..]);
        assert_eq!(u.to_bytes()[65 + 64], 0);
        assert_eq!(u.field(Field::Release), b"6.18.0", "the next field is untouched");
    }

    #[test]
    fn the_answer_is_the_kernels_with_brandzs_version() {
        let kernel = sample();
        let u = branded(kernel);
        assert_eq!(u.field(Field::Version), b"BrandZ virtual linux");
        let b = u.to_bytes();
        assert!(b[195 + VERSION.len()..260].iter().all(|x| *x == 0), "the old version's tail is gone");
        for f in [Field::Sysname, Field::Nodename, Field::Release, Field::Machine, Field::Domainname] {
            assert_eq!(u.field(f), kernel.field(f), "{f:?}");
        }
        let at = |f: Field| f as usize * FIELD_LEN;
        assert_eq!(b[..at(Field::Version)], kernel.to_bytes()[..at(Field::Version)]);
        assert_eq!(b[at(Field::Machine)..], kernel.to_bytes()[at(Field::Machine)..]);
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn the_layout_is_the_c_librarys_and_the_kernel_fills_it() {
        use std::mem::offset_of;
        assert_eq!(std::mem::size_of::<libc::utsname>(), UTSNAME_SIZE);
        assert_eq!(offset_of!(libc::utsname, nodename), Field::Nodename as usize * FIELD_LEN);
        assert_eq!(offset_of!(libc::utsname, version), Field::Version as usize * FIELD_LEN);
        assert_eq!(offset_of!(libc::utsname, domainname), Field::Domainname as usize * FIELD_LEN);
        // SAFETY: uname fills the struct we own.
        let mut c: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::uname(&mut c) }, 0);
        let k = Utsname::kernel().unwrap();
        // SAFETY: the kernel NUL-terminates every field.
        let field = |f: &[libc::c_char]| unsafe { CStr::from_ptr(f.as_ptr()) }.to_bytes().to_vec();
        assert_eq!(k.field(Field::Sysname), field(&c.sysname));
        assert_eq!(k.field(Field::Release), field(&c.release));
        assert_eq!(k.field(Field::Version), field(&c.version));
        assert_eq!(k.field(Field::Machine), field(&c.machine));
        assert_eq!(k.field(Field::Domainname), field(&c.domainname));
    }

    #[test]
    fn only_uname_decodes_and_i386_buffers_are_32_bits() {
        let args = [0xdead_0000_1234_5678, 2, 3, 4, 5, 6];
        assert_eq!(decode("uname", true, &args), Some(0xdead_0000_1234_5678));
        assert_eq!(decode("uname", false, &args), Some(0x1234_5678));
        for name in ["olduname", "oldolduname", "sysinfo", "statfs"] {
            assert_eq!(decode(name, true, &args), None, "{name}");
        }
    }

    fn wait_readable(fd: BorrowedFd) {
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(n, 1, "no notification within 10 s");
    }

    /// What the filtered thread saw.
    #[derive(Debug)]
    struct Seen {
        /// Whether it has a UTS namespace of its own (root only).
        unshared: bool,
        /// The kernel's answer before the filter.
        before: Utsname,
        /// uname(buf) served: result, errno, struct.
        served: (i64, i32, Utsname),
        /// uname(NULL) served.
        null: (i64, i32),
        /// uname(buf) with the kernel's answer (CONTINUE).
        continued: Utsname,
    }

    fn call_uname(buf: *mut u8) -> (i64, i32) {
        // SAFETY: uname(2) writes UTSNAME_SIZE bytes at buf (or faults on NULL: EFAULT).
        let r = unsafe { libc::syscall(libc::SYS_uname, buf) };
        (r, if r == 0 { 0 } else { io::Error::last_os_error().raw_os_error().unwrap_or(0) })
    }

    /// The real path on the real kernel: a thread (seccomp filters,
    /// namespaces and personalities are per thread) takes a UTS namespace
    /// of its own (as root) and a personality, installs the zone's
    /// notifying filter and calls uname; the test serves the notifications
    /// as the monitor does, entering the thread's namespace and leaving it.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn a_filtered_caller_gets_its_own_names_and_brandzs_version() {
        const PER_LINUX32: libc::c_ulong = 0x0008;
        const UNAME26: libc::c_ulong = 0x0020000;
        let notifying = Profile::default().seccomp_program(true);
        let plain = Profile::default().seccomp_program(false);
        let (tx, rx) = std::sync::mpsc::channel::<Result<OwnedFd, String>>();
        let caller = std::thread::spawn(move || -> Option<Seen> {
            // SAFETY: unshare(2) and sethostname(2) change this thread's UTS namespace only.
            let unshared =
                unsafe { libc::unshare(libc::CLONE_NEWUTS) == 0 && libc::sethostname(c"uts-probe".as_ptr(), 9) == 0 };
            // SAFETY: personality(2) on this thread.
            unsafe { libc::personality(PER_LINUX32 | UNAME26) };
            let before = Utsname::kernel().unwrap();
            // no_new_privs: the test need not hold CAP_SYS_ADMIN.
            // SAFETY: prctl on this thread.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            match install_seccomp_with_listener(&notifying, &plain).unwrap() {
                Installed::Listener(l) => tx.send(Ok(l)).unwrap(),
                Installed::Plain(why) => {
                    tx.send(Err(why.to_string())).unwrap();
                    return None;
                }
            }
            let mut u = Utsname([0xa5; UTSNAME_SIZE]);
            let (r, e) = call_uname(u.0.as_mut_ptr());
            let null = call_uname(std::ptr::null_mut());
            let mut continued = Utsname([0; UTSNAME_SIZE]);
            call_uname(continued.0.as_mut_ptr());
            Some(Seen { unshared, before, served: (r, e, u), null, continued })
        });
        let listener = match rx.recv().unwrap() {
            Ok(l) => l,
            Err(why) => {
                assert!(std::env::var_os("CI").is_none(), "no seccomp listener here (CI is set): {why}");
                eprintln!("SKIPPED: no seccomp listener here: {why}");
                return;
            }
        };
        let mut served = Listeners::new();
        served.add(listener.try_clone().unwrap(), true);
        // This thread plays the monitor.
        let mut uts = Uts::open();
        assert!(uts.own.is_some());
        let ours = Utsname::kernel().unwrap();
        for answer in [true, true, false] {
            wait_readable(listener.as_fd());
            notify::serve(listener.as_fd(), &mut |call| match (answer, call.syscall) {
                (true, notify::Syscall::Uname { buf }) => uts.answer(call.caller, buf),
                _ => Answer::Continue,
            })
            .unwrap();
        }
        let seen = caller.join().unwrap().unwrap();
        let (r, e, u) = seen.served;
        assert_eq!((r, e), (0, 0));
        assert_eq!(seen.null, (-1, libc::EFAULT), "uname(NULL)");
        assert_eq!(seen.continued, seen.before, "CONTINUE: the kernel's");
        if !seen.unshared {
            // Entering a UTS namespace takes CAP_SYS_ADMIN: the kernel answers.
            assert_eq!(u, seen.before, "not root: the kernel's answer");
            eprintln!("NOTE: not root: only the kernel's answer tried");
            return;
        }
        assert_eq!(u, branded(seen.before), "the kernel's answer for the caller, BrandZ's version");
        assert_eq!(u.field(Field::Nodename), b"uts-probe", "the caller's own UTS namespace");
        // The caller's personality, not the server's.
        assert!(u.field(Field::Release).starts_with(b"2.6."), "UNAME26: {u:?}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(u.field(Field::Machine), b"i686", "PER_LINUX32");
        // The server is back in its own namespace, with its own personality.
        assert_eq!(Utsname::kernel().unwrap(), ours);
        // SAFETY: personality(2) query.
        assert_eq!(unsafe { libc::personality(PERSONALITY_QUERY) } as u32, uts.personality);
    }
}
