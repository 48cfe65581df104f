use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::super::notify::{self, Syscall};
use super::*;
use crate::security::{install_seccomp_with_listener, Installed, Profile};

const GIB: u64 = 1 << 30;
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

#[test]
fn calls_decode_with_their_arguments_where_each_abi_puts_them() {
    let args = [0x1_0000_0010, 0x1_0000_0020, 84, 0, 0, 0];
    let r = Request::decode("statfs", true, &args).unwrap();
    assert_eq!((r.target, r.buf, r.size, r.layout), (Target::Path(0x1_0000_0010), 0x1_0000_0020, None, Layout::Native));
    let r = Request::decode("fstatfs", true, &[3, 8, 0, 0, 0, 0]).unwrap();
    assert_eq!((r.target, r.buf), (Target::Fd(3), 8));
    // i386: 32-bit arguments (the high bits are not the caller's).
    let r = Request::decode("statfs", false, &args).unwrap();
    assert_eq!((r.target, r.buf, r.layout), (Target::Path(0x10), 0x20, Layout::Compat));
    let r = Request::decode("statfs64", false, &args).unwrap();
    assert_eq!((r.target, r.size, r.buf, r.layout), (Target::Path(0x10), Some(0x20), 84, Layout::Compat64));
    let r = Request::decode("fstatfs64", false, &[7, 84, 0x40, 0, 0, 0]).unwrap();
    assert_eq!((r.target, r.size, r.buf), (Target::Fd(7), Some(84), 0x40));
    for (name, native) in [("statfs64", true), ("sysinfo", true), ("open", false)] {
        assert_eq!(Request::decode(name, native, &args), None, "{name}");
    }
}

fn sample() -> Statfs {
    Statfs {
        f_type: 0x9123_683e,
        bsize: 4096,
        blocks: 2_000_000,
        bfree: 1_500_000,
        bavail: 1_400_000,
        files: 0,
        ffree: 0,
        fsid: [0xdead_beef, 0x1234_5678],
        namelen: 255,
        frsize: 4096,
        flags: 0x1026,
    }
}

#[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
#[test]
fn the_native_layout_is_the_c_librarys() {
    use std::mem::{offset_of, size_of};
    assert_eq!(size_of::<libc::statfs>(), NATIVE_SIZE);
    let b = sample().native();
    let long = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(long(offset_of!(libc::statfs, f_type)), 0x9123_683e);
    assert_eq!(long(offset_of!(libc::statfs, f_blocks)), 2_000_000);
    assert_eq!(long(offset_of!(libc::statfs, f_bavail)), 1_400_000);
    assert_eq!(long(offset_of!(libc::statfs, f_namelen)), 255);
    assert_eq!(long(offset_of!(libc::statfs, f_frsize) + 8), 0x1026, "f_flags, after f_frsize");
    let fsid = offset_of!(libc::statfs, f_fsid);
    assert_eq!(u32::from_ne_bytes(b[fsid..fsid + 4].try_into().unwrap()), 0xdead_beef);
    assert!(b[88..].iter().all(|x| *x == 0), "f_spare is zero");
    assert_eq!(Statfs::from_native(&b), sample());
}

#[test]
fn i386_layouts_and_their_overflow() {
    // struct statfs: eleven 32-bit words (fsid two), then f_spare[4].
    let b = sample().compat().unwrap();
    let word = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    let want = [0x9123_683e, 4096, 2_000_000, 1_500_000, 1_400_000, 0, 0, 0xdead_beef, 0x1234_5678, 255, 4096, 0x1026];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(word(4 * i), *w, "word {i}");
    }
    assert!(b[48..].iter().all(|x| *x == 0));
    // struct statfs64 (packed): 32-bit type and size, 64-bit counts.
    let b = sample().compat64().unwrap();
    assert_eq!(b.len(), 84);
    let long = |at: usize| u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    let word = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!((word(0), word(4), long(8), long(16), long(24)), (0x9123_683e, 4096, 2_000_000, 1_500_000, 1_400_000));
    assert_eq!((word(48), word(52), word(56), word(60), word(64)), (0xdead_beef, 0x1234_5678, 255, 4096, 0x1026));
    // Counts beyond 32 bits: the 32-bit struct overflows, the 64-bit one does not.
    let big = Statfs { blocks: 1 << 33, ..sample() };
    assert_eq!(big.compat(), None);
    assert!(big.compat64().is_some());
    // f_files of -1 ("no limit") passes, as in the kernel.
    assert!(Statfs { files: u64::MAX, ffree: u64::MAX, ..sample() }.compat().is_some());
    assert!(Statfs { files: 1 << 32, ..sample() }.compat().is_none());
    assert_eq!(sample().to_bytes(Layout::Compat64).map(|b| b.len()), Some(84));
    assert_eq!(big.to_bytes(Layout::Compat), None);
}

#[test]
fn the_quota_is_the_size_and_the_charge_the_used() {
    let real = sample(); // 4096-byte blocks; the pool has 1.4M blocks (~5.3 GiB) available
    let s = with_quota(real, Quota { limit: GIB, charged: 100 << 20 });
    assert_eq!(s.blocks * 4096, GIB);
    assert_eq!(s.bfree, s.bavail);
    assert_eq!((s.blocks - s.bfree) * 4096, 100 << 20, "used = charged");
    assert_eq!((s.f_type, s.fsid, s.flags, s.namelen), (real.f_type, real.fsid, real.flags, real.namelen));
    // The pool has less left than the quota: what is left is the pool's.
    let s = with_quota(Statfs { bavail: 1000, ..real }, Quota { limit: 10 * GIB, charged: GIB });
    assert_eq!((s.bavail, s.blocks), (1000, GIB / 4096 + 1000));
    // Over quota (btrfs lets a zone go briefly past it): nothing left, no underflow.
    let s = with_quota(real, Quota { limit: GIB, charged: 2 * GIB });
    assert_eq!((s.bfree, s.blocks), (0, 2 * GIB / 4096));
}

#[test]
fn credentials_are_read_from_status() {
    let status = "Name:\tsh\nUid:\t1001000\t1001000\t1001000\t1001001\nGid:\t1001000\t1001000\t1001000\t1001002\n\
                  Groups:\t1001004 1001027 \nCapEff:\t0000000000000000\n";
    let c = Creds::parse(status).unwrap();
    assert_eq!(
        (c.fsuid, c.fsgid, c.groups.as_slice(), c.privileged()),
        (1001001, 1001002, &[1001004, 1001027][..], false)
    );
    let root = status.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
    assert!(Creds::parse(&root).unwrap().privileged());
    let read_search = status.replace("CapEff:\t0000000000000000", "CapEff:\t0000000000000004");
    assert!(Creds::parse(&read_search).unwrap().privileged(), "CAP_DAC_READ_SEARCH");
    assert!(Creds::parse("Uid:\t0\t0\t0\t0\n").is_none(), "incomplete");
    assert!(Creds::parse(&status.replace("Groups:\t1001004 1001027 ", "Groups:\t")).unwrap().groups.is_empty());
}

fn wait_readable(fd: BorrowedFd) {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
    assert_eq!(n, 1, "no notification within 10 s");
}

/// What one call returned: the result, errno, and f_type, f_blocks, f_bavail.
type Seen = (i64, i32, u64, u64, u64);

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// statfs(2) or fstatfs(2) into a native struct (or at `buf` when given).
fn call(nr: libc::c_long, arg: u64, buf: Option<u64>) -> Seen {
    let mut b = [0u8; NATIVE_SIZE];
    let at = buf.unwrap_or(b.as_mut_ptr() as u64);
    // SAFETY: the call writes one native struct statfs at `at` (ours, or a bad pointer: EFAULT).
    let r = unsafe { libc::syscall(nr, arg, at) };
    let errno = if r < 0 { io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 };
    let s = Statfs::from_native(&b);
    (r, errno, s.f_type, s.blocks, s.bavail)
}

/// The real path on the real kernel: a thread installs the zone's
/// notifying filter and calls statfs on what a zone would, the test
/// serves the notifications as the monitor does, with a fixed quota for
/// a directory of the test's (on whatever file system holds it).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn a_filtered_caller_sees_the_quota_on_its_root_and_the_kernels_answer_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::create_dir(d.join("secret")).unwrap();
    std::fs::write(d.join("secret/x"), "x").unwrap();
    std::fs::set_permissions(d.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::os::unix::fs::symlink("/proc", d.join("to-proc")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root", d.join("to-self-root")).unwrap();
    std::os::unix::fs::symlink(&d, d.join("sub/back")).unwrap();
    // The file system's own numbers, and /proc's.
    let real = |p: &Path| {
        // SAFETY: statfs fills the zeroed struct we own.
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above, with a live C string.
        assert_eq!(unsafe { libc::statfs(c(p).as_ptr(), &mut s) }, 0);
        s.f_blocks
    };
    let quota = Quota { limit: GIB, charged: 3 << 20 };

    let notifying = Profile::default().seccomp_program(true);
    let plain = Profile::default().seccomp_program(false);
    let (tx, rx) = std::sync::mpsc::channel::<Option<OwnedFd>>();
    let td = d.clone();
    let caller = std::thread::spawn(move || -> Vec<(&'static str, Seen)> {
        let d = td;
        // Its own cwd, for the relative paths.
        // SAFETY: unshare on this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_FS) }, 0);
        std::env::set_current_dir(d.join("sub")).unwrap();
        // SAFETY: prctl on this thread (no_new_privs: the test need not hold CAP_SYS_ADMIN).
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        match install_seccomp_with_listener(&notifying, &plain).unwrap() {
            Installed::Listener(l) => tx.send(Some(l)).unwrap(),
            Installed::Plain(why) => {
                eprintln!("SKIPPED: no seccomp listener here: {why}");
                tx.send(None).unwrap();
                return Vec::new();
            }
        }
        let path = |p: &Path| {
            let s = c(p);
            let ptr = s.as_ptr() as u64;
            std::mem::forget(s);
            ptr
        };
        let dirfd = std::fs::File::open(&d).unwrap();
        let mut seen = vec![
            ("root", call(libc::SYS_statfs, path(&d), None)),
            ("file below", call(libc::SYS_statfs, path(&d.join("secret/x")), None)),
            ("fd", call(libc::SYS_fstatfs, dirfd.as_raw_fd() as u64, None)),
            ("relative", call(libc::SYS_statfs, path(Path::new(".")), None)),
            ("relative up", call(libc::SYS_statfs, path(Path::new("..")), None)),
            ("symlink back", call(libc::SYS_statfs, path(Path::new("back")), None)),
            ("/proc", call(libc::SYS_statfs, path(Path::new("/proc")), None)),
            ("symlink to /proc", call(libc::SYS_statfs, path(&d.join("to-proc")), None)),
            ("magic link", call(libc::SYS_statfs, path(&d.join("to-self-root")), None)),
            ("missing", call(libc::SYS_statfs, path(&d.join("nothing")), None)),
            ("NULL path", call(libc::SYS_statfs, 0, None)),
            ("NULL buf", call(libc::SYS_statfs, path(&d), Some(0))),
            ("bad fd", call(libc::SYS_fstatfs, 999_999, None)),
        ];
        // An unprivileged caller: what it may not search stays the kernel's (EACCES).
        // SAFETY: setresuid on this thread alone (the raw call).
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) }, 0);
        seen.push(("unprivileged root", call(libc::SYS_statfs, path(&d), None)));
        seen.push(("unprivileged, no search", call(libc::SYS_statfs, path(&d.join("secret/x")), None)));
        seen
    });
    let Some(listener) = rx.recv().unwrap() else { return };
    let mut root = RootFs::fixed(&d, Some(quota));
    // One notification per call above.
    for _ in 0..15 {
        wait_readable(listener.as_fd());
        notify::serve(listener.as_fd(), &mut |call| match call.syscall {
            Syscall::Statfs(req) => root.answer(call, req),
            Syscall::Sysinfo | Syscall::Uname { .. } => Answer::Errno(libc::ENOSYS),
        })
        .unwrap();
    }
    let seen: std::collections::HashMap<&str, Seen> = caller.join().unwrap().into_iter().collect();
    if seen.is_empty() {
        return;
    }
    let quota_blocks = GIB / 4096;
    let ours = |what: &str| {
        let (r, e, _, blocks, _) = seen[what];
        assert_eq!((r, e), (0, 0), "{what}");
        assert_eq!(blocks * 4096 / 4096, blocks);
        blocks
    };
    // The blocks are in f_frsize units: 4096 on the file systems tests run on.
    for what in ["root", "file below", "fd", "relative", "relative up", "symlink back", "unprivileged root"] {
        assert_eq!(ours(what), quota_blocks, "{what}: the quota");
    }
    let kernels = |what: &str, want: u64| {
        let (r, e, _, blocks, _) = seen[what];
        assert_eq!((r, e, blocks), (0, 0, want), "{what}: the kernel's answer");
    };
    kernels("magic link", real(Path::new("/")));
    for what in ["/proc", "symlink to /proc"] {
        assert_eq!(seen[what].2, PROC_SUPER_MAGIC, "{what}: /proc's own");
    }
    let errno = |what: &str| (seen[what].0, seen[what].1);
    assert_eq!(errno("missing"), (-1, libc::ENOENT));
    assert_eq!(errno("NULL path"), (-1, libc::EFAULT));
    assert_eq!(errno("NULL buf"), (-1, libc::EFAULT));
    assert_eq!(errno("bad fd"), (-1, libc::EBADF));
    assert_eq!(errno("unprivileged, no search"), (-1, libc::EACCES));
    // The serving thread got its own credentials back.
    // SAFETY: -1 is not an id: this only returns the current one.
    assert_eq!(unsafe { libc::setfsuid(u32::MAX) }, 0);
}
