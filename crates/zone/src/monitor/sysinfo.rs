//! The zone's answers to `sysinfo(2)`: the monitor serves the seccomp
//! notifications the zone's filter sends for it (see [`crate::security`]),
//! so busybox's `free`, `uptime`, and runtimes that size themselves with
//! `sysinfo` see the zone's memory, tasks and uptime, not the host's.
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
//! One notification, without blocking the loop (a few file reads):
//!
//! ```text
//!  NOTIF_RECV ── not the native sysinfo ───────────────────────> error ENOSYS
//!    │ host's sysinfo() with the zone's memory, swap, tasks (cgroup) and
//!    │ uptime (since init started)
//!    │   └ the cgroup cannot be read ────────────────────────────> CONTINUE (the kernel's answer)
//!    │ open /proc/<pid>/mem ── refused ──────────────────────────> CONTINUE
//!    │ NOTIF_ID_VALID ── the caller is gone (killed) ────────────> nothing to answer
//!    │ pwrite(struct sysinfo) at args[0] ── fails ───────────────> error EFAULT
//!    └ NOTIF_SEND val 0
//! ```
//!
//! `/proc/<pid>/mem` is opened before `NOTIF_ID_VALID` confirms the caller
//! still waits, so the descriptor is the caller's memory even if its pid
//! is reused right after (the way `seccomp_unotify(2)` and Incus do it).
//! Unlike the kernel's `copy_to_user`, a write there goes through
//! read-only pages of the caller (as a debugger's would): only an
//! unmapped address gets `EFAULT`.
//!
//! The numbers are lxcfs's, so `free` and the zone's `/proc/meminfo`
//! agree: `totalram` = the lowest memory limit of the zone's cgroup and its
//! ancestors, at most the host's RAM; `freeram` = `totalram` − the memory
//! charged to the cgroup (page cache included: lxcfs's `MemFree`);
//! `sharedram` = its shmem; `bufferram` = 0 (lxcfs's `Buffers`);
//! `totalswap` = the swap the zone may use besides its memory (`max_swap` −
//! `max_physical_memory`), at most the host's swap, `freeswap` = that − the
//! swap it uses (the host's values where the kernel does not account swap;
//! lxcfs's `SwapTotal` on cgroup v1 counts the memory limit in as well);
//! `procs` = the tasks in the cgroup; `uptime` = seconds since init started.
//! Loads, and everything else, are the host's; `mem_unit` is 1.
//!
//! A zone calling `sysinfo` in a loop makes the monitor, outside the
//! zone's cgroup, work for it. So the cgroup's numbers are read at most
//! once per [`FRESH`] (again at once after `set_limits` or a new init),
//! and the monitor answers at most [`BUDGET`] notifications per
//! [`WINDOW`]; beyond that the callers wait for the next window (they are
//! not refused).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::{cgroup, security};

/// Listeners of processes entered from the host served at once; more are
/// refused (those processes get the kernel's `sysinfo`).
pub(super) const MAX_ENTERED: usize = 256;
/// Notifications answered per [`WINDOW`].
const BUDGET: u32 = 256;
/// See [`BUDGET`].
const WINDOW: Duration = Duration::from_millis(100);
/// How long the cgroup's numbers are reused (usage moves on meanwhile;
/// limits are read again as soon as they change).
const FRESH: Duration = Duration::from_millis(50);

/// `struct sysinfo` of a 64-bit kernel, field by field (the C library's
/// struct may be longer: musl's has a reserved tail).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Sysinfo {
    pub(super) uptime: i64,
    pub(super) loads: [u64; 3],
    pub(super) totalram: u64,
    pub(super) freeram: u64,
    pub(super) sharedram: u64,
    pub(super) bufferram: u64,
    pub(super) totalswap: u64,
    pub(super) freeswap: u64,
    pub(super) procs: u16,
    pub(super) totalhigh: u64,
    pub(super) freehigh: u64,
    pub(super) mem_unit: u32,
}

/// The size of the kernel's `struct sysinfo` on 64-bit architectures,
/// which `sysinfo(2)` writes whole.
const SYSINFO_SIZE: usize = 112;

impl Sysinfo {
    /// The host's (the monitor runs on the host).
    fn host() -> io::Result<Sysinfo> {
        // SAFETY: sysinfo(2) fills the struct we own.
        let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::sysinfo(&mut s) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sysinfo {
            uptime: s.uptime as i64,
            loads: s.loads.map(u64::from),
            totalram: s.totalram as u64,
            freeram: s.freeram as u64,
            sharedram: s.sharedram as u64,
            bufferram: s.bufferram as u64,
            totalswap: s.totalswap as u64,
            freeswap: s.freeswap as u64,
            procs: s.procs,
            totalhigh: s.totalhigh as u64,
            freehigh: s.freehigh as u64,
            mem_unit: s.mem_unit,
        })
    }

    /// The bytes the kernel would write (native byte order, zeroed padding).
    fn to_bytes(self) -> [u8; SYSINFO_SIZE] {
        let mut b = [0u8; SYSINFO_SIZE];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &self.uptime.to_ne_bytes());
        for (i, l) in self.loads.iter().enumerate() {
            put(8 + 8 * i, &l.to_ne_bytes());
        }
        let longs = [self.totalram, self.freeram, self.sharedram, self.bufferram, self.totalswap, self.freeswap];
        for (i, v) in longs.iter().enumerate() {
            put(32 + 8 * i, &v.to_ne_bytes());
        }
        put(80, &self.procs.to_ne_bytes());
        put(88, &self.totalhigh.to_ne_bytes());
        put(96, &self.freehigh.to_ne_bytes());
        put(104, &self.mem_unit.to_ne_bytes());
        b
    }
}

/// What the zone's answer is made of, besides the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ZoneView {
    pub(super) memory: cgroup::Memory,
    pub(super) tasks: u64,
    pub(super) uptime_secs: u64,
}

/// The zone's `struct sysinfo`: the host's, with the zone's memory, swap,
/// tasks and uptime (see the module documentation), in bytes (`mem_unit` 1).
pub(super) fn compute(host: &Sysinfo, zone: &ZoneView) -> Sysinfo {
    let unit = u64::from(host.mem_unit.max(1));
    let bytes = |v: u64| v.saturating_mul(unit);
    let host_ram = bytes(host.totalram);
    let m = &zone.memory;
    let totalram = m.limit.map_or(host_ram, |l| l.min(host_ram));
    let host_swap = bytes(host.totalswap);
    let (totalswap, freeswap) = match m.swap_usage {
        Some(used) => {
            let total = m.swap_limit.map_or(host_swap, |l| l.min(host_swap));
            (total, total.saturating_sub(used))
        }
        None => (host_swap, bytes(host.freeswap)),
    };
    Sysinfo {
        uptime: i64::try_from(zone.uptime_secs).unwrap_or(i64::MAX),
        loads: host.loads,
        totalram,
        freeram: totalram.saturating_sub(m.usage),
        sharedram: m.shmem.min(totalram),
        bufferram: 0,
        totalswap,
        freeswap,
        procs: u16::try_from(zone.tasks).unwrap_or(u16::MAX),
        totalhigh: bytes(host.totalhigh),
        freehigh: bytes(host.freehigh),
        mem_unit: 1,
    }
}

/// `CLOCK_BOOTTIME`, the clock of `sysinfo`'s uptime.
pub(super) fn boottime() -> Duration {
    // SAFETY: clock_gettime fills the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// The zone the answers are about.
pub(super) struct Zone<'a> {
    /// Its cgroup (relative, as in the spec).
    pub(super) cgroup: &'a str,
    /// [`boottime`] when its current init started.
    pub(super) booted: Duration,
}

/// The cgroup's numbers last read, and when.
type Cached = Option<(Instant, cgroup::Memory, u64)>;

impl Zone<'_> {
    /// The zone's `struct sysinfo` now (the cgroup's numbers from `cache`
    /// when fresh), or `None` when it cannot be read (the caller then gets
    /// the kernel's answer).
    fn answer(&self, cache: &mut Cached) -> Option<Sysinfo> {
        let host = Sysinfo::host().ok()?;
        let now = Instant::now();
        let (memory, tasks) = match *cache {
            Some((at, memory, tasks)) if now.duration_since(at) < FRESH => (memory, tasks),
            _ => {
                let read = (cgroup::memory(self.cgroup).ok()?, cgroup::tasks(self.cgroup).ok()?);
                *cache = Some((now, read.0, read.1));
                read
            }
        };
        let uptime_secs = boottime().saturating_sub(self.booted).as_secs();
        Some(compute(&host, &ZoneView { memory, tasks, uptime_secs }))
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
    cache: Cached,
}

impl Listeners {
    pub(super) fn new() -> Listeners {
        Listeners { list: Vec::new(), window: Instant::now(), served: 0, cache: None }
    }

    /// Reads the cgroup again at the next notification (its limits changed).
    pub(super) fn refresh(&mut self) {
        self.cache = None;
    }

    /// Serves `fd` from now on, if it is a seccomp listener (anything else
    /// is closed); init's replaces the previous init's.
    pub(super) fn add(&mut self, fd: OwnedFd, init: bool) {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
        if link.as_os_str() != "anon_inode:seccomp notify" {
            log!("ignoring a sysinfo listener that is not one: {}", link.display());
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
        self.cache = None;
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
        }
        self.served >= BUDGET
    }

    /// Appends one pollfd per listener, in order: `POLLIN`, or nothing
    /// but hang-ups while the budget is spent.
    pub(super) fn push_pollfds(&mut self, pfds: &mut Vec<libc::pollfd>) {
        let events = if self.exhausted(Instant::now()) { 0 } else { libc::POLLIN };
        pfds.extend(self.list.iter().map(|l| libc::pollfd { fd: l.fd.as_raw_fd(), events, revents: 0 }));
    }

    /// When the loop must wake up to serve again (the budget is spent).
    pub(super) fn wake_at(&self) -> Option<Instant> {
        (self.served >= BUDGET).then(|| self.window + WINDOW)
    }

    /// Handles the pollfds [`Listeners::push_pollfds`] appended, after
    /// `poll`: one notification per ready listener, and listeners whose
    /// processes are all gone dropped.
    pub(super) fn on_events(&mut self, pfds: &[libc::pollfd], zone: &Zone) {
        for i in (0..pfds.len().min(self.list.len())).rev() {
            let ev = pfds[i].revents;
            if ev & libc::POLLIN != 0 {
                self.served += 1;
                let cache = &mut self.cache;
                if let Err(e) = serve(self.list[i].fd.as_fd(), || zone.answer(cache)) {
                    log!("sysinfo listener: {e}; dropped");
                    self.list.swap_remove(i);
                }
            } else if ev & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                self.list.swap_remove(i);
            }
        }
    }
}

/// How a write into the caller's memory went.
enum Written {
    Yes,
    /// The notification is gone (the caller was killed): nothing to answer.
    Gone,
    /// The memory could not be opened: let the kernel answer.
    Refused,
    /// The address is not writable memory.
    Fault,
}

/// Writes `bytes` at `addr` in the memory of `pid`, the caller of
/// notification `id`, once the listener confirms it still waits.
fn write_to_caller(listener: BorrowedFd, id: u64, pid: u32, addr: u64, bytes: &[u8]) -> Written {
    let Ok(path) = std::ffi::CString::new(format!("/proc/{pid}/mem")) else { return Written::Refused };
    // SAFETY: a valid C string; the descriptor is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Written::Refused;
    }
    // SAFETY: just opened, owned by nobody else.
    let mem = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: NOTIF_ID_VALID reads the u64 we pass.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) } != 0 {
        return Written::Gone;
    }
    let Ok(offset) = i64::try_from(addr) else { return Written::Fault };
    // SAFETY: pwrite reads `bytes` (live) into the file at `offset`.
    let n = unsafe { libc::pwrite64(mem.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), offset) };
    if n == bytes.len() as isize {
        Written::Yes
    } else {
        // Unmapped memory reads as EIO through /proc/<pid>/mem.
        Written::Fault
    }
}

/// Receives one notification on `listener` and answers it with `answer`'s
/// `struct sysinfo` (see the module documentation). An error means the
/// listener itself failed and should be dropped.
pub(super) fn serve(listener: BorrowedFd, answer: impl FnOnce() -> Option<Sysinfo>) -> io::Result<()> {
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
    if libc::c_long::from(req.data.nr) != libc::SYS_sysinfo || req.data.arch != security::AUDIT_ARCH_NATIVE {
        // The filter sends nothing else: never let an unexpected call through.
        resp.error = -libc::ENOSYS;
    } else {
        match answer().map(|s| write_to_caller(listener, req.id, req.pid, req.data.args[0], &s.to_bytes())) {
            Some(Written::Yes) => {}
            Some(Written::Gone) => return Ok(()),
            Some(Written::Fault) => resp.error = -libc::EFAULT,
            None | Some(Written::Refused) => resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
    }
    // SAFETY: NOTIF_SEND reads the struct we pass. It fails (ENOENT) when
    // the caller was killed meanwhile: nothing left to do then.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::{install_seccomp_with_listener, Installed, Profile};

    const MIB: u64 = 1 << 20;

    fn host() -> Sysinfo {
        Sysinfo {
            uptime: 86_400,
            loads: [1, 2, 3],
            totalram: 24 * 1024 * MIB,
            freeram: 20 * 1024 * MIB,
            sharedram: 8 * MIB,
            bufferram: 100 * MIB,
            totalswap: 2048 * MIB,
            freeswap: 2000 * MIB,
            procs: 300,
            totalhigh: 0,
            freehigh: 0,
            mem_unit: 1,
        }
    }

    fn zone(limit: Option<u64>, usage: u64) -> ZoneView {
        ZoneView {
            memory: cgroup::Memory { limit, usage, shmem: 3 * MIB, swap_limit: None, swap_usage: None },
            tasks: 7,
            uptime_secs: 12,
        }
    }

    #[test]
    fn the_zones_memory_tasks_and_uptime_replace_the_hosts() {
        let h = host();
        let s = compute(&h, &zone(Some(256 * MIB), 100 * MIB));
        assert_eq!((s.totalram, s.freeram, s.sharedram, s.bufferram), (256 * MIB, 156 * MIB, 3 * MIB, 0));
        assert_eq!((s.procs, s.uptime, s.mem_unit), (7, 12, 1));
        assert_eq!(s.loads, h.loads, "loads stay the host's");
        // No swap accounting: the host's swap.
        assert_eq!((s.totalswap, s.freeswap), (h.totalswap, h.freeswap));

        // No limit, or one above the host's RAM: the host's RAM.
        assert_eq!(compute(&h, &zone(None, MIB)).totalram, h.totalram);
        assert_eq!(compute(&h, &zone(Some(u64::MAX / 2), MIB)).totalram, h.totalram, "v1's unlimited");
        // Charged above the limit (briefly possible): nothing free, no underflow.
        assert_eq!(compute(&h, &zone(Some(256 * MIB), 300 * MIB)).freeram, 0);
        // Shared memory never exceeds the total.
        let mut z = zone(Some(MIB), 0);
        z.memory.shmem = 2 * MIB;
        assert_eq!(compute(&h, &z).sharedram, MIB);
        // Tasks beyond what the field holds.
        let mut z = zone(None, 0);
        z.tasks = 100_000;
        assert_eq!(compute(&h, &z).procs, u16::MAX);
    }

    #[test]
    fn swap_is_the_zones_share_capped_by_the_hosts() {
        let h = host();
        let mut z = zone(Some(256 * MIB), 0);
        z.memory.swap_limit = Some(512 * MIB);
        z.memory.swap_usage = Some(12 * MIB);
        let s = compute(&h, &z);
        assert_eq!((s.totalswap, s.freeswap), (512 * MIB, 500 * MIB));
        z.memory.swap_limit = Some(4096 * MIB);
        assert_eq!(compute(&h, &z).totalswap, h.totalswap, "capped by the host's swap");
        z.memory.swap_limit = None;
        assert_eq!(compute(&h, &z).totalswap, h.totalswap, "no limit: the host's swap");
        let no_swap = Sysinfo { totalswap: 0, freeswap: 0, ..h };
        let s = compute(&no_swap, &z);
        assert_eq!((s.totalswap, s.freeswap), (0, 0), "a host without swap");
    }

    #[test]
    fn a_host_mem_unit_is_folded_into_bytes() {
        let h = Sysinfo { totalram: 1024, totalswap: 16, freeswap: 8, totalhigh: 2, mem_unit: 4096, ..host() };
        let s = compute(&h, &zone(None, 0));
        assert_eq!((s.totalram, s.totalswap, s.freeswap, s.totalhigh, s.mem_unit), (4 * MIB, 65536, 32768, 8192, 1));
    }

    #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
    #[test]
    fn bytes_are_laid_out_as_the_kernels_struct() {
        use std::mem::offset_of;
        assert_eq!(std::mem::size_of::<libc::sysinfo>(), SYSINFO_SIZE);
        let s = Sysinfo {
            uptime: -1,
            loads: [2, 3, 4],
            totalram: 5,
            freeram: 6,
            sharedram: 7,
            bufferram: 8,
            totalswap: 9,
            freeswap: 10,
            procs: 11,
            totalhigh: 12,
            freehigh: 13,
            mem_unit: 14,
        };
        let b = s.to_bytes();
        let long = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
        assert_eq!(long(offset_of!(libc::sysinfo, uptime)), u64::MAX);
        assert_eq!(long(offset_of!(libc::sysinfo, loads) + 16), 4);
        assert_eq!(long(offset_of!(libc::sysinfo, totalram)), 5);
        assert_eq!(long(offset_of!(libc::sysinfo, freeswap)), 10);
        assert_eq!(u16::from_ne_bytes([b[offset_of!(libc::sysinfo, procs)], b[81]]), 11);
        assert_eq!(long(offset_of!(libc::sysinfo, totalhigh)), 12);
        assert_eq!(long(offset_of!(libc::sysinfo, freehigh)), 13);
        let at = offset_of!(libc::sysinfo, mem_unit);
        assert_eq!(u32::from_ne_bytes(b[at..at + 4].try_into().unwrap()), 14);
        assert!(b[82..88].iter().chain(&b[108..]).all(|x| *x == 0), "padding is zero");
    }

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
        // Not a seccomp listener: refused.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        l.add(OwnedFd::from(a), true);
        assert!(!l.has_init() && l.list.len() == 1);
    }

    fn wait_readable(fd: BorrowedFd) {
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(n, 1, "no notification within 10 s");
    }

    /// What the filtered thread saw: three calls' results (return value, errno, struct).
    type Seen = Vec<(i64, i32, libc::sysinfo)>;

    /// The real path on the real kernel: a thread (seccomp filters are per
    /// thread) installs the zone's notifying filter and calls sysinfo; the
    /// test serves the notifications as the monitor does.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn a_filtered_caller_gets_the_answer_in_its_memory() {
        let notifying = Profile::default().seccomp_program(true);
        let plain = Profile::default().seccomp_program(false);
        let (tx, rx) = std::sync::mpsc::channel::<Result<OwnedFd, String>>();
        let caller = std::thread::spawn(move || -> Seen {
            // no_new_privs: the test need not hold CAP_SYS_ADMIN.
            // SAFETY: prctl on this thread.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            match install_seccomp_with_listener(&notifying, &plain).unwrap() {
                Installed::Listener(l) => tx.send(Ok(l)).unwrap(),
                Installed::Plain(why) => {
                    tx.send(Err(why.to_string())).unwrap();
                    return Vec::new();
                }
            }
            let mut seen = Vec::new();
            for null in [false, true, false] {
                // SAFETY: sysinfo(2) writes a struct sysinfo at the pointer (or faults on NULL).
                let mut s: libc::sysinfo = unsafe { std::mem::zeroed() };
                let ptr: *mut libc::sysinfo = if null { std::ptr::null_mut() } else { &mut s };
                // SAFETY: as above.
                let r = unsafe { libc::syscall(libc::SYS_sysinfo, ptr) };
                seen.push((r, io::Error::last_os_error().raw_os_error().unwrap_or(0), s));
            }
            seen
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
        assert!(served.has_init(), "a real listener is taken");
        let fake = Sysinfo {
            uptime: 42,
            loads: [1, 2, 3],
            totalram: 256 * MIB,
            freeram: 200 * MIB,
            procs: 9,
            mem_unit: 1,
            ..Sysinfo::default()
        };
        // 1: answered with ours; 2: NULL: EFAULT; 3: no answer: the kernel's.
        for answer in [Some(fake), Some(fake), None] {
            wait_readable(listener.as_fd());
            serve(listener.as_fd(), || answer).unwrap();
        }
        let seen = caller.join().unwrap();
        let (r, _, s) = seen[0];
        assert_eq!(r, 0);
        assert_eq!((s.uptime, s.totalram, s.freeram, s.procs, s.mem_unit), (42, 256 * MIB, 200 * MIB, 9, 1));
        assert_eq!((seen[1].0, seen[1].1), (-1, libc::EFAULT), "sysinfo(NULL)");
        let (r, _, s) = seen[2];
        let real = Sysinfo::host().unwrap();
        assert_eq!((r, s.totalram, s.mem_unit), (0, real.totalram, real.mem_unit), "CONTINUE: the kernel's");
        // The thread is gone, and with it the filter's last user.
        let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, 5_000) };
        assert_ne!(pfd.revents & libc::POLLHUP, 0, "no hang-up once the caller is gone: {:#x}", pfd.revents);
    }
}
