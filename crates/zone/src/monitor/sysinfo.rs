//! The zone's answers to `sysinfo(2)`: the monitor serves the seccomp
//! notifications the zone's filter sends for it (see `notify.rs`), so
//! busybox's `free`, `uptime`, and runtimes that size themselves with
//! `sysinfo` see the zone's memory, tasks and uptime, not the host's. A
//! cgroup the monitor cannot read lets the kernel answer (`CONTINUE`).
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
//! and `notify.rs` bounds the notifications answered per second.

use std::io;
use std::time::{Duration, Instant};

use super::notify::Answer;
use crate::cgroup;

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
#[derive(Default)]
pub(super) struct Cache(Option<(Instant, cgroup::Memory, u64)>);

impl Cache {
    /// Reads the cgroup again at the next call (its limits changed, or init).
    pub(super) fn refresh(&mut self) {
        self.0 = None;
    }
}

impl Zone<'_> {
    /// The zone's `struct sysinfo` now (the cgroup's numbers from `cache`
    /// when fresh), or `None` when it cannot be read.
    fn sysinfo(&self, cache: &mut Cache) -> Option<Sysinfo> {
        let host = Sysinfo::host().ok()?;
        let now = Instant::now();
        let (memory, tasks) = match cache.0 {
            Some((at, memory, tasks)) if now.duration_since(at) < FRESH => (memory, tasks),
            _ => {
                let read = (cgroup::memory(self.cgroup).ok()?, cgroup::tasks(self.cgroup).ok()?);
                cache.0 = Some((now, read.0, read.1));
                read
            }
        };
        let uptime_secs = boottime().saturating_sub(self.booted).as_secs();
        Some(compute(&host, &ZoneView { memory, tasks, uptime_secs }))
    }

    /// The answer to `sysinfo(buf)`: the zone's struct at `buf`, or the
    /// kernel's when the cgroup cannot be read.
    pub(super) fn answer(&self, cache: &mut Cache, buf: u64) -> Answer {
        match self.sysinfo(cache) {
            Some(s) => Answer::Write { addr: buf, bytes: s.to_bytes().to_vec() },
            None => Answer::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

    use super::super::notify::{self, Listeners};
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
            notify::serve(listener.as_fd(), &mut |call| match answer {
                Some(s) => Answer::Write { addr: call.args[0], bytes: s.to_bytes().to_vec() },
                None => Answer::Continue,
            })
            .unwrap();
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
