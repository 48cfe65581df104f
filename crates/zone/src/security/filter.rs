//! The zone's seccomp program, in classic BPF: it gives every system call
//! number of every [`Abi`] of the host its [`Verdict`] (the policy is the
//! parent module's).
//!
//! ```text
//!         ld   arch
//!         jeq  x86_64 ? ja native          (one pair per ABI)
//!         jeq  i386   ? ja compat
//!         ret  ENOSYS                      any other architecture
//! native: ld   nr
//!         jge  X32_BIT ? ret ENOSYS        x86-64: the x32 ABI
//!         search(runs of x86_64)
//! compat: ld   nr
//!         search(runs of i386)
//! ```
//!
//! **Runs, searched in a balanced tree.** From 0 up, an ABI's verdicts
//! form runs of equal verdict (x86-64: 0–15 allow, 16 the `ioctl` rule,
//! 17–62 allow, 63 `uname` to the listener, 64–98 allow, 99 `sysinfo` to
//! the listener, …, 337–423 `ENOSYS`, …, 470 and above `ENOSYS`): 58 on
//! x86-64, 98 on i386 (more gaps), 51 on aarch64,
//! most of them around the refused calls, the gaps and the calls sent to
//! the listener. `search` is a binary tree
//! of `jge` over the first numbers of the runs, each leaf returning its
//! run's verdict, so every number costs ⌈log2(runs)⌉ (6 or 7) comparisons;
//! a chain of one range test per run would cost up to 58 (98 on i386) for
//! the newest calls (`io_uring`, `clone3`, `openat2` sit at the top), and
//! one test per system call several hundred. The program is about two
//! instructions per run plus the `ioctl` rule's seven per ABI: about 320
//! on x86-64 (both ABIs), 110 on aarch64, far below the kernel's 4096. A
//! jump longer than a conditional jump's 255 would go through a `ja`.
//!
//! **Allowed calls cost nothing after the first.** When a filter is
//! installed the kernel runs it for every number of each architecture with
//! the arguments unknown and remembers the numbers that come out `ALLOW`
//! (the seccomp action cache): those then skip the filters. It can only
//! do so along paths that load `arch` and `nr` alone, and use `jeq`,
//! `jge`, `jgt`, `jset`, `ja`, `and` and `ret`: every path here but the
//! `ioctl` rule's. The `ioctl` rule loads the low 32 bits of the request
//! (the kernel takes an `unsigned int`, so the high bits are not
//! compared) and returns `EPERM` for [`REFUSED_IOCTLS`], `ALLOW` otherwise.

use super::{Abi, Profile, Verdict, REFUSED_IOCTLS};

/// One classic BPF instruction.
type Insn = libc::sock_filter;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in `struct seccomp_data`: `nr`, `arch`, and the low 32 bits of
/// `args[1]` (`ioctl`'s request).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG1_LOW: u32 = 16 + 8 + if cfg!(target_endian = "big") { 4 } else { 0 };

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn ret(k: u32) -> Insn {
    stmt(RET_K, k)
}

/// The program for `abis` (the native one first); empty without any.
pub(super) fn program(profile: &Profile, abis: &[Abi], notify: bool) -> Vec<Insn> {
    if abis.is_empty() {
        return Vec::new();
    }
    let sections: Vec<Vec<Insn>> = abis.iter().map(|abi| section(profile, abi, notify)).collect();
    let mut prog = vec![stmt(LD_W_ABS, OFF_ARCH)];
    let dispatch = 1 + 2 * abis.len() + 1;
    let mut start = dispatch;
    for (abi, section) in abis.iter().zip(&sections) {
        prog.push(jump(JEQ_K, abi.audit_arch, 0, 1));
        prog.push(stmt(JA, (start - (prog.len() + 1)) as u32));
        start += section.len();
    }
    prog.push(ret(ENOSYS));
    prog.extend(sections.into_iter().flatten());
    prog
}

/// One ABI's part: load the number, refuse x32, search the runs.
fn section(profile: &Profile, abi: &Abi, notify: bool) -> Vec<Insn> {
    let mut s = vec![stmt(LD_W_ABS, OFF_NR)];
    if let Some(bit) = abi.x32_bit {
        s.push(jump(JGE_K, bit, 0, 1));
        s.push(ret(ENOSYS));
    }
    s.extend(search(&runs(profile, abi, notify)));
    s
}

/// The runs of equal verdict, `(first number, verdict)`; the last one
/// (`ENOSYS`) starts above the table and goes on to `u32::MAX`.
pub(super) fn runs(profile: &Profile, abi: &Abi, notify: bool) -> Vec<(u32, Verdict)> {
    let mut runs: Vec<(u32, Verdict)> = Vec::new();
    for nr in 0..=abi.end() {
        let v = profile.verdict(abi, nr, notify);
        if runs.last().is_none_or(|(_, last)| *last != v) {
            runs.push((nr, v));
        }
    }
    runs
}

/// A balanced tree of `jge` over `runs` (the accumulator holds the number).
fn search(runs: &[(u32, Verdict)]) -> Vec<Insn> {
    if let [(_, v)] = runs {
        return leaf(*v);
    }
    let mid = runs.len() / 2;
    let (below, above) = (search(&runs[..mid]), search(&runs[mid..]));
    let mut out = Vec::with_capacity(below.len() + above.len() + 2);
    match u8::try_from(below.len()) {
        Ok(skip) => out.push(jump(JGE_K, runs[mid].0, skip, 0)),
        Err(_) => {
            out.push(jump(JGE_K, runs[mid].0, 0, 1));
            out.push(stmt(JA, below.len() as u32));
        }
    }
    out.extend(below);
    out.extend(above);
    out
}

fn leaf(v: Verdict) -> Vec<Insn> {
    match v {
        Verdict::Allow => vec![ret(SECCOMP_RET_ALLOW)],
        Verdict::Refuse => vec![ret(EPERM)],
        Verdict::Unknown => vec![ret(ENOSYS)],
        Verdict::Notify => vec![ret(SECCOMP_RET_USER_NOTIF)],
        Verdict::Ioctl => {
            // ld request; jeq each → the EPERM after the ALLOW.
            let n = REFUSED_IOCTLS.len();
            let mut s = vec![stmt(LD_W_ABS, OFF_ARG1_LOW)];
            s.extend(REFUSED_IOCTLS.iter().enumerate().map(|(i, (req, _))| jump(JEQ_K, *req, (n - i) as u8, 0)));
            s.push(ret(SECCOMP_RET_ALLOW));
            s.push(ret(EPERM));
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AARCH64, I386, OPT_INS, X86_64};
    use super::*;

    const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
    const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
    const TCGETS: u64 = 0x5401;
    const FIONREAD: u64 = 0x541b;

    /// What one run of the program did.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        /// The action returned.
        action: u32,
        /// Whether the path only read `arch` and `nr`, with instructions the
        /// kernel's seccomp action cache can evaluate.
        constant: bool,
        /// Instructions run.
        steps: usize,
    }

    /// A classic BPF interpreter for the instructions the filter may hold,
    /// over one `struct seccomp_data` (`arch`, `nr`, `args`); panics on
    /// anything else, on a load outside the struct and on running off the
    /// program.
    fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> Outcome {
        let (mut a, mut pc, mut steps, mut constant) = (0u32, 0usize, 0usize, true);
        loop {
            let i = prog.get(pc).unwrap_or_else(|| panic!("ran off the program at {pc} ({arch:#x}, {nr})"));
            pc += 1;
            steps += 1;
            let cond = |t: bool| usize::from(if t { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => {
                    a = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        k @ 16..=60 if k % 4 == 0 => {
                            constant = false;
                            let arg = args[(k as usize - 16) / 8];
                            let high = (k % 8 == 4) != cfg!(target_endian = "big");
                            (if high { arg >> 32 } else { arg }) as u32
                        }
                        k => panic!("load at {k}: not a field the filter reads"),
                    }
                }
                JA => pc += i.k as usize,
                JEQ_K => pc += cond(a == i.k),
                JGE_K => pc += cond(a >= i.k),
                JGT_K => pc += cond(a > i.k),
                JSET_K => pc += cond(a & i.k != 0),
                AND_K => a &= i.k,
                RET_K => return Outcome { action: i.k, constant, steps },
                code => panic!("opcode {code:#x} at {}: not one the filter emits", pc - 1),
            }
        }
    }

    /// Every jump lands inside the program, which ends with a return.
    fn check_jumps(prog: &[Insn]) {
        assert_eq!(prog.last().map(|i| i.code), Some(RET_K));
        for (at, i) in prog.iter().enumerate() {
            let targets = match i.code {
                JA => vec![i.k as usize],
                JEQ_K | JGE_K | JGT_K | JSET_K => vec![usize::from(i.jt), usize::from(i.jf)],
                _ => continue,
            };
            for t in targets {
                assert!(at + 1 + t < prog.len(), "the jump at {at} lands outside the program");
            }
        }
    }

    fn expected(v: Verdict) -> u32 {
        match v {
            Verdict::Allow | Verdict::Ioctl => SECCOMP_RET_ALLOW,
            Verdict::Refuse => EPERM,
            Verdict::Unknown => ENOSYS,
            Verdict::Notify => SECCOMP_RET_USER_NOTIF,
        }
    }

    /// The numbers tried for an ABI: all of 0..=1100, and samples above.
    fn numbers(abi: &Abi) -> impl Iterator<Item = u32> {
        let x32 = abi.x32_bit.unwrap_or(0x4000_0000);
        (0..=1100)
            .chain([4095, 65535, 0x3fff_ffff, 0x7fff_ffff, 0x8000_0000, u32::MAX])
            .chain((0..600).map(move |n| x32 | n))
    }

    fn profiles() -> Vec<Profile> {
        let mut ps = vec![Profile::default(), Profile::from_limit_priv(&OPT_INS)];
        ps.extend(OPT_INS.iter().map(|o| Profile::from_limit_priv(&[o])));
        ps
    }

    /// The program of each host kind, for every profile, with and without
    /// the `sysinfo` rule, run for every (arch, nr): each number gets its
    /// verdict, and every path but `ioctl`'s can be cached by the kernel.
    #[test]
    fn every_number_of_every_abi_gets_its_verdict() {
        let hosts: [&[Abi]; 2] = [&[X86_64, I386], &[AARCH64]];
        for abis in hosts {
            for profile in profiles() {
                for notify in [false, true] {
                    let prog = program(&profile, abis, notify);
                    check_jumps(&prog);
                    for abi in abis {
                        let ioctl = abi.number_of("ioctl").unwrap();
                        for nr in numbers(abi) {
                            let v = profile.verdict(abi, nr, notify);
                            let what = format!("{} {nr} ({v:?}, {:?}, notify {notify})", abi.name, profile.opt_ins);
                            let out = run(&prog, abi.audit_arch, nr, [u64::MAX; 6]);
                            assert_eq!(out.action, expected(v), "{what}");
                            let most = if nr == ioctl { 16 + 2 + REFUSED_IOCTLS.len() } else { 16 };
                            assert!(out.steps <= most, "{what}: {} steps", out.steps);
                            assert_eq!(out.constant, nr != ioctl, "{what}: only ioctl reads arguments");
                        }
                    }
                    // Another architecture (arm32, x32's own arch value, ppc64le, riscv64...).
                    for arch in [0x4000_0028, 0xc000_003e, 0xc000_00b7, 0xc000_0015, 0xc000_00f3, 0] {
                        if !abis.iter().any(|a| a.audit_arch == arch) {
                            assert_eq!(run(&prog, arch, 0, [0; 6]).action, ENOSYS, "arch {arch:#x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn btrfs_subvolume_ioctls_are_refused_on_every_abi_and_others_allowed() {
        let hosts: [&[Abi]; 2] = [&[X86_64, I386], &[AARCH64]];
        for abis in hosts {
            let prog = program(&Profile::from_limit_priv(&OPT_INS), abis, true);
            for abi in abis {
                let nr = abi.number_of("ioctl").unwrap();
                let ioctl = |req: u64| run(&prog, abi.audit_arch, nr, [3, req, 0, 0, 0, 0]).action;
                for (req, name) in REFUSED_IOCTLS {
                    let req = u64::from(req);
                    assert_eq!(ioctl(req), EPERM, "{} {name}", abi.name);
                    // The kernel ignores the high bits: so does the filter.
                    assert_eq!(ioctl(req | 0xffff_ffff_0000_0000), EPERM, "{} {name} with high bits", abi.name);
                    assert_eq!(ioctl(req | 1 << 32), EPERM, "{} {name} with high bits", abi.name);
                    assert_eq!(ioctl(req ^ 0x0100_0000), SECCOMP_RET_ALLOW, "{} {name} with another size", abi.name);
                }
                assert_eq!(ioctl(TCGETS), SECCOMP_RET_ALLOW, "{} TCGETS", abi.name);
                assert_eq!(ioctl(FIONREAD), SECCOMP_RET_ALLOW, "{} FIONREAD", abi.name);
                assert_eq!(ioctl(0x5000_940f), SECCOMP_RET_ALLOW, "{} BTRFS_IOC_SNAP_DESTROY", abi.name);
            }
        }
    }

    #[test]
    fn sysinfo_statfs_and_uname_go_to_the_listener_only_when_asked() {
        let (plain, notifying) =
            (program(&Profile::default(), &[X86_64, I386], false), program(&Profile::default(), &[X86_64, I386], true));
        let action = |p: &[Insn], abi: &Abi, nr| run(p, abi.audit_arch, nr, [0; 6]).action;
        for nr in [99, 137, 138, 63] {
            assert_eq!(action(&notifying, &X86_64, nr), SECCOMP_RET_USER_NOTIF, "x86_64 {nr}");
            assert_eq!(action(&plain, &X86_64, nr), SECCOMP_RET_ALLOW, "x86_64 {nr}");
        }
        for nr in [99, 100, 268, 269, 122] {
            assert_eq!(action(&notifying, &I386, nr), SECCOMP_RET_USER_NOTIF, "i386 {nr}");
        }
        assert_eq!(action(&notifying, &I386, 116), SECCOMP_RET_ALLOW, "i386's sysinfo is the kernel's");
        for nr in [109, 59] {
            assert_eq!(action(&notifying, &I386, nr), SECCOMP_RET_ALLOW, "i386's olduname {nr} is the kernel's");
        }
        assert!(!plain.iter().any(|i| i.k == SECCOMP_RET_USER_NOTIF));
        let arm = program(&Profile::default(), &[AARCH64], true);
        for nr in [179, 43, 44, 160] {
            assert_eq!(action(&arm, &AARCH64, nr), SECCOMP_RET_USER_NOTIF, "aarch64 {nr}");
        }
    }

    #[test]
    fn the_program_stays_small() {
        let hosts: [(&[Abi], usize); 2] = [(&[X86_64, I386], 400), (&[AARCH64], 150)];
        for (abis, most) in hosts {
            for profile in profiles() {
                for notify in [false, true] {
                    let len = program(&profile, abis, notify).len();
                    assert!(len <= most, "{} instructions for {:?}", len, profile.opt_ins);
                }
            }
        }
        // The runs of the strict profile, as the module documentation says.
        let n = |abi: &Abi| runs(&Profile::default(), abi, true).len();
        assert_eq!((n(&X86_64), n(&I386), n(&AARCH64)), (58, 98, 51));
    }

    #[test]
    fn long_jumps_go_through_ja() {
        // Enough runs that the lower half of the tree exceeds 255 instructions.
        let runs: Vec<(u32, Verdict)> =
            (0..400).map(|i| (i * 2, if i % 2 == 0 { Verdict::Allow } else { Verdict::Refuse })).collect();
        let tree = search(&runs);
        assert!(tree.iter().any(|i| i.code == JA));
        check_jumps(&tree);
        let mut prog = vec![stmt(LD_W_ABS, OFF_NR)];
        prog.extend(tree.iter().copied());
        for nr in 0..820 {
            // Run i covers 2i and 2i + 1; the last (399, refused) goes on up.
            let want = if (nr / 2).min(399) % 2 == 0 { SECCOMP_RET_ALLOW } else { EPERM };
            assert_eq!(run(&prog, 0, nr, [0; 6]).action, want, "{nr}");
        }
    }
}
