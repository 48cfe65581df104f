//! Which accelerator this host can use (KVM or TCG), and why.
//!
//! A `/dev/kvm` that opens is not enough: some hosts (nested or paravirtual
//! setups) offer a KVM device that creates VMs and runs a few instructions,
//! yet emulates guest code one instruction at a time, so a guest kernel that
//! boots in two seconds under QEMU's TCG makes no visible progress in a
//! minute on it. [`detect`] therefore runs a real guest:
//!
//! 1. open `/dev/kvm` and check `KVM_GET_API_VERSION` (12);
//! 2. `KVM_CREATE_VM`, one page of guest memory, `KVM_CREATE_VCPU`, and
//!    real-mode code at guest address `0x1000`:
//!
//!    ```text
//!    mov ecx, 5000       ; 66 b9 88 13 00 00
//!    l: dec ecx          ; 66 49
//!    jnz l               ; 75 fc
//!    mov dx, 0x3f8       ; ba f8 03
//!    mov al, 'Z'         ; b0 5a
//!    out dx, al          ; ee
//!    hlt                 ; f4
//!    ```
//!
//! 3. `KVM_RUN` must stop with an I/O exit writing `Z` to port `0x3f8`, and
//!    the next `KVM_RUN` with a `hlt` exit;
//! 4. the loop must run at hardware speed: 5,000 iterations take a few
//!    microseconds on VT-x or AMD-V (nested too), and 6 to 9 ms on a KVM
//!    that emulates (1.2 to 1.8 µs an iteration, measured). The run is timed up to three times and the fastest
//!    counts, so one preemption of the probing thread does not decide.
//!
//! The `vmx`/`svm` flags of `/proc/cpuinfo` are reported beside the probe's
//! verdict (they are what a reader checks first), but the probe decides.
//!
//! On the development machines the probe reads, for instance,
//! `tcg: /dev/kvm emulates guest code instead of running it on the CPU
//! (5000 loop iterations took 8.9 ms; hardware virtualization takes under
//! 0.5 ms); /proc/cpuinfo has no vmx or svm flag`.
//!
//! The probe takes about a millisecond where KVM works and about 20 ms where
//! it emulates; it runs on its own thread and [`detect`] gives up on it after
//! [`PROBE_TIMEOUT`], so it cannot hang its caller (a thread that never
//! returns from `KVM_RUN` is left behind with its descriptors).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How QEMU executes guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelKind {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's Tiny Code Generator: guest code translated in software.
    Tcg,
}

impl AccelKind {
    /// The name QEMU's `-accel` and the reason strings use (`kvm`, `tcg`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

impl fmt::Display for AccelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accelerator chosen for this host and the evidence for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accel {
    /// The accelerator VMs use.
    pub kind: AccelKind,
    /// One line that starts with the kind (`"kvm: …"`, `"tcg: …"`) and says
    /// what the probe saw, e.g. `"tcg: no /dev/kvm"`.
    pub reason: String,
}

/// How long [`detect`] waits for the probe thread.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Iterations of the probe's guest loop.
const LOOP_ITERATIONS: u32 = 5_000;

/// The slowest loop run that still counts as hardware virtualization:
/// 100 ns per iteration, where VT-x/AMD-V take about 1 ns and an emulating
/// KVM about 1,200 ns.
const HARDWARE_SPEED_LIMIT: Duration = Duration::from_micros(500);

/// How many times the loop is timed before the fastest run decides.
const TIMED_RUNS: usize = 3;

/// Guest-physical address (and real-mode offset) of the probe's code.
const GUEST_CODE_ADDR: u64 = 0x1000;

/// The port and byte the probe's guest writes before halting (COM1).
const PROBE_PORT: u16 = 0x3f8;
const PROBE_BYTE: u8 = b'Z';

/// Chooses the accelerator for this host: KVM when `/dev/kvm` runs a real
/// guest at hardware speed, TCG otherwise. Blocks for up to tens of
/// milliseconds (run it on a blocking thread in async code), and at most
/// [`PROBE_TIMEOUT`].
pub fn detect() -> Accel {
    detect_at(Path::new("/dev/kvm"), Path::new("/proc/cpuinfo"))
}

/// [`detect`] with the KVM device and the cpuinfo file given (for tests, and
/// for hosts that put them elsewhere).
pub fn detect_at(kvm: &Path, cpuinfo: &Path) -> Accel {
    let flags = std::fs::read_to_string(cpuinfo).ok().map(|text| virt_flags(&text));
    let flag_note = match &flags {
        Some(f) if f.is_empty() => format!("; {} has no vmx or svm flag", cpuinfo.display()),
        Some(_) => String::new(),
        None => format!("; {} is unreadable", cpuinfo.display()),
    };
    let tcg = |why: String| Accel { kind: AccelKind::Tcg, reason: format!("tcg: {why}{flag_note}") };

    let dev = match OpenOptions::new().read(true).write(true).open(kvm) {
        Ok(dev) => dev,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return tcg(format!("no {}", kvm.display())),
        Err(e) => return tcg(format!("cannot open {}: {e}", kvm.display())),
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name("kvm-probe".into()).spawn(move || {
        // The receiver may be gone after a timeout; nothing is left to tell.
        let _ = tx.send(probe(&dev));
    });
    if let Err(e) = spawned {
        return tcg(format!("cannot start the /dev/kvm probe thread: {e}"));
    }
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Err(_) => tcg(format!("the {} probe did not finish within {PROBE_TIMEOUT:?}", kvm.display())),
        Ok(Err(e)) => tcg(format!("{} cannot run a guest ({e})", kvm.display())),
        Ok(Ok(fastest)) if fastest > HARDWARE_SPEED_LIMIT => tcg(format!(
            "{} emulates guest code instead of running it on the CPU ({LOOP_ITERATIONS} loop iterations \
             took {:.1} ms; hardware virtualization takes under {} ms)",
            kvm.display(),
            fastest.as_secs_f64() * 1e3,
            HARDWARE_SPEED_LIMIT.as_secs_f64() * 1e3
        )),
        Ok(Ok(fastest)) => {
            let note = match &flags {
                Some(f) if !f.is_empty() => format!(" ({} has {})", cpuinfo.display(), f.join(", ")),
                _ => flag_note,
            };
            Accel {
                kind: AccelKind::Kvm,
                reason: format!(
                    "kvm: {} ran a test guest at hardware speed ({LOOP_ITERATIONS} loop iterations in {} µs){note}",
                    kvm.display(),
                    fastest.as_micros()
                ),
            }
        }
    }
}

/// The hardware virtualization flags (`vmx`, `svm`) that cpuinfo's `flags`
/// lines name, each once.
fn virt_flags(cpuinfo: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for line in cpuinfo.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        if key.trim() != "flags" {
            continue;
        }
        for flag in ["vmx", "svm"] {
            if !found.contains(&flag) && value.split_whitespace().any(|f| f == flag) {
                found.push(flag);
            }
        }
    }
    found
}

/// Why the probe's guest did not run.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    /// An ioctl or mmap failed.
    #[error("{call}: {source}")]
    Call {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    /// The kernel speaks another KVM API.
    #[error("KVM_GET_API_VERSION is {0}, where 12 is the stable API")]
    ApiVersion(i32),
    /// The guest stopped for another reason than the expected one.
    #[error("KVM_RUN: {got}, where {wanted} was expected")]
    Exit { got: String, wanted: &'static str },
    /// `KVM_RUN` kept returning without an exit.
    #[error("KVM_RUN was interrupted {0} times in a row")]
    Interrupted(usize),
}

// ioctl numbers of <linux/kvm.h> (x86-64): _IO/_IOR/_IOW with type 0xAE.
const KVMIO: u64 = 0xAE;
const fn io_nr(nr: u64) -> u64 {
    (KVMIO << 8) | nr
}
const fn iow_nr(nr: u64, size: usize) -> u64 {
    (1 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const fn ior_nr(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const KVM_GET_API_VERSION: u64 = io_nr(0x00);
const KVM_CREATE_VM: u64 = io_nr(0x01);
const KVM_GET_VCPU_MMAP_SIZE: u64 = io_nr(0x04);
const KVM_CREATE_VCPU: u64 = io_nr(0x41);
const KVM_SET_USER_MEMORY_REGION: u64 = iow_nr(0x46, size_of::<KvmUserspaceMemoryRegion>());
const KVM_RUN: u64 = io_nr(0x80);
const KVM_SET_REGS: u64 = iow_nr(0x82, size_of::<KvmRegs>());
const KVM_GET_SREGS: u64 = ior_nr(0x83, size_of::<KvmSregs>());
const KVM_SET_SREGS: u64 = iow_nr(0x84, size_of::<KvmSregs>());

const KVM_API_VERSION: i32 = 12;

// Exit reasons of struct kvm_run.
const KVM_EXIT_IO: u32 = 2;
const KVM_EXIT_HLT: u32 = 5;
const KVM_EXIT_IO_OUT: u8 = 1;

#[repr(C)]
struct KvmUserspaceMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct KvmRegs {
    gprs: [u64; 16],
    rip: u64,
    rflags: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct KvmSegment {
    base: u64,
    limit: u32,
    selector: u16,
    type_: u8,
    present: u8,
    dpl: u8,
    db: u8,
    s: u8,
    l: u8,
    g: u8,
    avl: u8,
    unusable: u8,
    padding: u8,
}

#[repr(C)]
#[derive(Default)]
struct KvmDtable {
    base: u64,
    limit: u16,
    padding: [u16; 3],
}

#[repr(C)]
#[derive(Default)]
struct KvmSregs {
    cs: KvmSegment,
    ds: KvmSegment,
    es: KvmSegment,
    fs: KvmSegment,
    gs: KvmSegment,
    ss: KvmSegment,
    tr: KvmSegment,
    ldt: KvmSegment,
    gdt: KvmDtable,
    idt: KvmDtable,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    interrupt_bitmap: [u64; 4],
}

/// The head of struct kvm_run, up to the exit union.
#[repr(C)]
struct KvmRunHead {
    request_interrupt_window: u8,
    immediate_exit: u8,
    padding1: [u8; 6],
    exit_reason: u32,
    ready_for_interrupt_injection: u8,
    if_flag: u8,
    flags: u16,
    cr8: u64,
    apic_base: u64,
}

/// The `io` member of kvm_run's exit union.
#[repr(C)]
struct KvmRunIo {
    direction: u8,
    size: u8,
    port: u16,
    count: u32,
    data_offset: u64,
}

const _: () = assert!(size_of::<KvmRegs>() == 144);
const _: () = assert!(size_of::<KvmSregs>() == 312);
const _: () = assert!(size_of::<KvmRunHead>() == 32);
const _: () = assert!(size_of::<KvmUserspaceMemoryRegion>() == 32);

/// The probe guest's code (see the module documentation).
fn guest_code() -> Vec<u8> {
    let mut code = vec![0x66, 0xb9];
    code.extend_from_slice(&LOOP_ITERATIONS.to_le_bytes());
    code.extend_from_slice(&[0x66, 0x49, 0x75, 0xfc]);
    code.extend_from_slice(&[0xba, PROBE_PORT as u8, (PROBE_PORT >> 8) as u8]);
    code.extend_from_slice(&[0xb0, PROBE_BYTE, 0xee, 0xf4]);
    code
}

/// An anonymous or device mapping, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<RawFd>, call: &'static str) -> Result<Mapping, ProbeError> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1),
        };
        // SAFETY: a fresh mapping chosen by the kernel; no existing memory is touched.
        let addr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
        if addr == libc::MAP_FAILED {
            return Err(ProbeError::Call { call, source: io::Error::last_os_error() });
        }
        Ok(Mapping { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: addr/len are exactly what mmap returned, unmapped once.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// `ioctl(fd, request, arg)` with the error named after the call.
fn ioctl(fd: RawFd, request: u64, arg: usize, call: &'static str) -> Result<i32, ProbeError> {
    // SAFETY: every request passed here takes either no argument or a pointer
    // to a live, correctly sized #[repr(C)] value owned by the caller.
    let ret = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg) };
    if ret < 0 {
        return Err(ProbeError::Call { call, source: io::Error::last_os_error() });
    }
    Ok(ret)
}

/// An ioctl that returns a new descriptor.
fn ioctl_fd(fd: RawFd, request: u64, arg: usize, call: &'static str) -> Result<OwnedFd, ProbeError> {
    let new = ioctl(fd, request, arg, call)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Runs the probe guest; returns the fastest timed loop run.
fn probe(dev: &File) -> Result<Duration, ProbeError> {
    let kvm = dev.as_raw_fd();
    let version = ioctl(kvm, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")?;
    if version != KVM_API_VERSION {
        return Err(ProbeError::ApiVersion(version));
    }
    let vm = ioctl_fd(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM")?;

    let page = 4096;
    let memory = Mapping::new(page, None, "mmap of the guest page")?;
    let code = guest_code();
    // SAFETY: the mapping is `page` bytes, writable, and the code is far shorter.
    unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), memory.addr.cast::<u8>(), code.len()) };
    let region = KvmUserspaceMemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: GUEST_CODE_ADDR,
        memory_size: page as u64,
        userspace_addr: memory.addr as u64,
    };
    ioctl(vm.as_raw_fd(), KVM_SET_USER_MEMORY_REGION, &region as *const _ as usize, "KVM_SET_USER_MEMORY_REGION")?;

    let vcpu = ioctl_fd(vm.as_raw_fd(), KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU")?;
    let run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")?;
    let run_size = usize::try_from(run_size).unwrap_or(0);
    if run_size < size_of::<KvmRunHead>() + size_of::<KvmRunIo>() {
        return Err(ProbeError::Call {
            call: "KVM_GET_VCPU_MMAP_SIZE",
            source: io::Error::new(io::ErrorKind::InvalidData, format!("{run_size} bytes is too small")),
        });
    }
    let run = Mapping::new(run_size, Some(vcpu.as_raw_fd()), "mmap of kvm_run")?;

    // Real mode with CS based at 0, so CS:IP 0:0x1000 is the code.
    let mut sregs = KvmSregs::default();
    ioctl(vcpu.as_raw_fd(), KVM_GET_SREGS, &mut sregs as *mut _ as usize, "KVM_GET_SREGS")?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    ioctl(vcpu.as_raw_fd(), KVM_SET_SREGS, &sregs as *const _ as usize, "KVM_SET_SREGS")?;

    let mut fastest = Duration::MAX;
    for _ in 0..TIMED_RUNS {
        let regs = KvmRegs { rip: GUEST_CODE_ADDR, rflags: 0x2, ..KvmRegs::default() };
        ioctl(vcpu.as_raw_fd(), KVM_SET_REGS, &regs as *const _ as usize, "KVM_SET_REGS")?;
        let start = Instant::now();
        let exit = run_vcpu(vcpu.as_raw_fd(), &run)?;
        let took = start.elapsed();
        expect_out(&run, exit)?;
        let exit = run_vcpu(vcpu.as_raw_fd(), &run)?;
        if exit != KVM_EXIT_HLT {
            return Err(ProbeError::Exit { got: describe_exit(&run, exit), wanted: "the hlt exit" });
        }
        fastest = fastest.min(took);
        if fastest <= HARDWARE_SPEED_LIMIT {
            break;
        }
    }
    Ok(fastest)
}

/// One `KVM_RUN` up to an exit (retrying a few interruptions); returns the
/// exit reason.
fn run_vcpu(vcpu: RawFd, run: &Mapping) -> Result<u32, ProbeError> {
    const TRIES: usize = 8;
    for _ in 0..TRIES {
        match ioctl(vcpu, KVM_RUN, 0, "KVM_RUN") {
            Ok(_) => {
                let head = run.addr.cast::<KvmRunHead>();
                // SAFETY: the kvm_run mapping is at least the head's size (checked) and
                // the vCPU is stopped, so the kernel does not write it now.
                return Ok(unsafe { std::ptr::addr_of!((*head).exit_reason).read_volatile() });
            }
            Err(ProbeError::Call { source, .. }) if source.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ProbeError::Interrupted(TRIES))
}

/// The io exit of the probe's `out`: checks port, direction, size and byte.
fn expect_out(run: &Mapping, exit: u32) -> Result<(), ProbeError> {
    const WANTED: &str = "an out of 'Z' to port 0x3f8";
    if exit != KVM_EXIT_IO {
        return Err(ProbeError::Exit { got: describe_exit(run, exit), wanted: WANTED });
    }
    // SAFETY: the mapping holds the head and the io member (size checked in probe).
    let io = unsafe { run.addr.cast::<u8>().add(size_of::<KvmRunHead>()).cast::<KvmRunIo>().read_volatile() };
    let offset = usize::try_from(io.data_offset).unwrap_or(usize::MAX);
    let byte = if io.size == 1 && offset < run.len {
        // SAFETY: offset is inside the mapping (checked just above).
        Some(unsafe { run.addr.cast::<u8>().add(offset).read_volatile() })
    } else {
        None
    };
    if io.direction != KVM_EXIT_IO_OUT || io.port != PROBE_PORT || io.count != 1 || byte != Some(PROBE_BYTE) {
        let got = format!(
            "an I/O exit (direction {}, port {:#x}, size {}, count {}, byte {byte:?})",
            io.direction, io.port, io.size, io.count
        );
        return Err(ProbeError::Exit { got, wanted: WANTED });
    }
    Ok(())
}

/// Names an exit reason (with the detail the kernel gives for failures).
fn describe_exit(run: &Mapping, exit: u32) -> String {
    // SAFETY: the first u64 of the exit union lies inside the checked mapping size.
    let detail = unsafe { run.addr.cast::<u8>().add(size_of::<KvmRunHead>()).cast::<u64>().read_volatile() };
    let name = match exit {
        0 => "unknown",
        1 => "exception",
        2 => "io",
        3 => "hypercall",
        4 => "debug",
        5 => "hlt",
        6 => "mmio",
        7 => "irq window open",
        8 => "shutdown (triple fault)",
        9 => return format!("exit 9 (failed entry, hardware reason {detail:#x})"),
        10 => "interrupted",
        17 => return format!("exit 17 (internal error, suberror {})", detail as u32),
        _ => "other",
    };
    format!("exit {exit} ({name})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_serializes_and_displays_lowercase() {
        assert_eq!(serde_json::to_string(&AccelKind::Kvm).unwrap(), "\"kvm\"");
        assert_eq!(serde_json::from_str::<AccelKind>("\"tcg\"").unwrap(), AccelKind::Tcg);
        assert_eq!(AccelKind::Tcg.to_string(), "tcg");
        assert_eq!(format!("{}", AccelKind::Kvm), "kvm");
    }

    #[test]
    fn the_guest_code_is_the_documented_bytes() {
        assert_eq!(
            guest_code(),
            [0x66, 0xb9, 0x88, 0x13, 0x00, 0x00, 0x66, 0x49, 0x75, 0xfc, 0xba, 0xf8, 0x03, 0xb0, 0x5a, 0xee, 0xf4]
        );
    }

    #[test]
    fn cpuinfo_flags_are_whole_words_of_flags_lines() {
        let text = "processor\t: 0\nflags\t\t: fpu vme vmx pae\nmodel name\t: svm-like cpu\n\
                    processor\t: 1\nflags\t\t: fpu vmx\n";
        assert_eq!(virt_flags(text), ["vmx"]);
        assert!(virt_flags("flags\t: fpu vmxx svmlike\n").is_empty());
        assert_eq!(virt_flags("flags : svm\n"), ["svm"]);
    }

    #[test]
    fn a_missing_device_means_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let cpuinfo = dir.path().join("cpuinfo");
        std::fs::write(&cpuinfo, "flags\t: fpu sse2\n").unwrap();
        let kvm = dir.path().join("kvm");
        let accel = detect_at(&kvm, &cpuinfo);
        assert_eq!(accel.kind, AccelKind::Tcg);
        assert_eq!(accel.reason, format!("tcg: no {}; {} has no vmx or svm flag", kvm.display(), cpuinfo.display()));
    }

    #[test]
    fn a_device_that_is_not_kvm_means_tcg_and_names_the_ioctl() {
        let dir = tempfile::tempdir().unwrap();
        let cpuinfo = dir.path().join("cpuinfo");
        std::fs::write(&cpuinfo, "flags\t: fpu vmx\n").unwrap();
        let accel = detect_at(Path::new("/dev/null"), &cpuinfo);
        assert_eq!(accel.kind, AccelKind::Tcg);
        assert!(
            accel.reason.starts_with("tcg: /dev/null cannot run a guest (KVM_GET_API_VERSION: "),
            "{}",
            accel.reason
        );
    }

    /// The expectation for this host and any other: where `/dev/kvm` is
    /// missing, TCG; on CI (CI=true, a machine whose paravirtual KVM has no
    /// vmx/svm and emulates guest code), TCG; and on a host whose cpuinfo
    /// has vmx or svm and whose `/dev/kvm` opens, KVM.
    #[test]
    fn detect_matches_what_this_host_offers() {
        let start = Instant::now();
        let accel = detect();
        let took = start.elapsed();
        eprintln!("detect() = {accel:?} in {took:?}");
        assert!(accel.reason.starts_with(&format!("{}: ", accel.kind)), "{}", accel.reason);
        assert!(took < Duration::from_millis(500), "the probe took {took:?}");
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let hardware = !virt_flags(&cpuinfo).is_empty();
        if !Path::new("/dev/kvm").exists() {
            assert_eq!(accel.kind, AccelKind::Tcg);
            let note = if hardware { "" } else { "; /proc/cpuinfo has no vmx or svm flag" };
            assert_eq!(accel.reason, format!("tcg: no /dev/kvm{note}"));
        } else if std::env::var("CI").as_deref() == Ok("true") && !hardware {
            assert_eq!(accel.kind, AccelKind::Tcg, "{}", accel.reason);
            assert!(accel.reason.contains("/proc/cpuinfo has no vmx or svm flag"), "{}", accel.reason);
        } else if hardware && OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok() {
            assert_eq!(accel.kind, AccelKind::Kvm, "{}", accel.reason);
        }
    }
}
