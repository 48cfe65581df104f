//! Which CPUs a capped zone runs on.
//!
//! `cpu_cap` is a CFS quota: it limits how much CPU time the zone gets, but
//! not how many CPUs it sees. `nproc`, and every runtime that sizes its
//! thread pools with `sched_getaffinity(2)` (Go, Java, glibc's
//! `get_nprocs`), would still see the whole host. So a zone with a cap also
//! gets a cpuset of ⌈cap / 100⌉ CPUs, as Incus pins `limits.cpu`; lxcfs
//! then shows the same count in `/proc/cpuinfo` and `/proc/stat`. A zone
//! without a cap, or with a cap worth every CPU its parent cgroup has,
//! is not pinned.
//!
//! [`choose`] spreads pinned zones over the CPUs: the least-used ones
//! (counting the other pinned zones), ties broken by a rotation that starts
//! at a CPU derived from the zone (its UUID), so zones of several daemons
//! on one host do not all begin at CPU 0. A zone keeps the CPUs it has when
//! its cap changes, as far as the new count allows.
//!
//! The daemon makes the choice (it knows every running zone) and hands it
//! to the monitor in [`crate::Limits::cpus`]; [`crate::cgroup::apply_limits`]
//! writes it to `cpuset.cpus` (v1 `cpuset` hierarchy, or v2 with the
//! `cpuset` controller enabled).

/// How many CPUs a cap of `cap_pct` percent of one CPU is worth: ⌈cap / 100⌉;
/// `None` for no cap (`None` or 0).
pub fn count_for_cap(cap_pct: Option<u64>) -> Option<usize> {
    let cap = cap_pct.filter(|c| *c > 0)?;
    Some(usize::try_from(cap.div_ceil(100)).unwrap_or(usize::MAX))
}

/// The CPUs for a zone with cap `cap_pct`, out of `available` (the CPUs its
/// parent cgroup has), given the CPUs the zone has now (`current`, empty
/// when not pinned) and those of the other pinned zones (`others`); `seed`
/// (derived from the zone) picks where ties start. `None`: not pinned
/// (no cap, or a cap worth all of `available`). The result is sorted.
pub fn choose(
    cap_pct: Option<u64>,
    available: &[u32],
    current: &[u32],
    others: &[&[u32]],
    seed: u64,
) -> Option<Vec<u32>> {
    let mut available = available.to_vec();
    available.sort_unstable();
    available.dedup();
    let want = count_for_cap(cap_pct)?;
    if available.is_empty() || want >= available.len() {
        return None;
    }
    let n = available.len();
    let start = usize::try_from(seed % n as u64).unwrap_or(0);
    let load = |cpu: u32| others.iter().filter(|o| o.contains(&cpu)).count();
    let mut order: Vec<(usize, u32)> = available.iter().copied().enumerate().collect();
    order.sort_by_key(|&(i, cpu)| (!current.contains(&cpu), load(cpu), (i + n - start) % n));
    let mut chosen: Vec<u32> = order.into_iter().take(want).map(|(_, cpu)| cpu).collect();
    chosen.sort_unstable();
    Some(chosen)
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`); an empty string is
/// an empty list. `None` when malformed.
pub fn parse_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Formats CPUs in the kernel's list format, with ranges (`0-3,8`).
pub fn format_list(cpus: &[u32]) -> String {
    let mut cpus = cpus.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", cpus[i], cpus[j]) } else { cpus[i].to_string() });
        i = j + 1;
    }
    parts.join(",")
}

/// A seed for [`choose`] from a zone's UUID (or any name): FNV-1a of its bytes.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_to_count() {
        assert_eq!(count_for_cap(None), None);
        assert_eq!(count_for_cap(Some(0)), None);
        assert_eq!(count_for_cap(Some(1)), Some(1));
        assert_eq!(count_for_cap(Some(100)), Some(1));
        assert_eq!(count_for_cap(Some(101)), Some(2));
        assert_eq!(count_for_cap(Some(250)), Some(3));
    }

    #[test]
    fn unpinned_without_cap_or_with_a_cap_worth_every_cpu() {
        let all = [0, 1];
        assert_eq!(choose(None, &all, &[], &[], 0), None);
        assert_eq!(choose(Some(200), &all, &[], &[], 0), None);
        assert_eq!(choose(Some(800), &all, &[], &[], 0), None);
        assert_eq!(choose(Some(100), &[], &[], &[], 0), None);
        assert_eq!(choose(Some(100), &all, &[], &[], 0), Some(vec![0]));
        assert_eq!(choose(Some(150), &[0, 1, 2, 3], &[], &[], 0), Some(vec![0, 1]));
    }

    #[test]
    fn spreads_over_the_least_used_cpus() {
        let all = [0, 1, 2, 3];
        let a = choose(Some(100), &all, &[], &[], 0).unwrap();
        assert_eq!(a, [0]);
        let b = choose(Some(100), &all, &[], &[&a], 0).unwrap();
        assert_eq!(b, [1]);
        let c = choose(Some(200), &all, &[], &[&a, &b], 0).unwrap();
        assert_eq!(c, [2, 3]);
        let d = choose(Some(300), &all, &[], &[&a, &b, &c], 0).unwrap();
        assert_eq!(d.len(), 3, "every CPU is used once: any three");
        let e = choose(Some(100), &all, &[], &[&[0, 1, 2], &[0, 1], &[0]], 0).unwrap();
        assert_eq!(e, [3]);
    }

    #[test]
    fn ties_start_at_the_seed() {
        let all = [0, 1, 2, 3];
        assert_eq!(choose(Some(100), &all, &[], &[], 2).unwrap(), [2]);
        assert_eq!(choose(Some(200), &all, &[], &[], 3).unwrap(), [0, 3]);
        assert_eq!(choose(Some(100), &all, &[], &[&[2]], 2).unwrap(), [3]);
        // Holes in the available set (a parent restricted to some CPUs).
        assert_eq!(choose(Some(100), &[4, 6, 9], &[], &[], 1).unwrap(), [6]);
    }

    #[test]
    fn keeps_its_cpus_when_the_cap_changes() {
        let all = [0, 1, 2, 3];
        // Same count: the same CPUs, even where others are less loaded.
        assert_eq!(choose(Some(100), &all, &[3], &[&[3]], 0).unwrap(), [3]);
        // Grown: its CPU plus the least used.
        assert_eq!(choose(Some(200), &all, &[3], &[&[0]], 0).unwrap(), [1, 3]);
        // Shrunk: a subset of what it had.
        let s = choose(Some(100), &all, &[1, 2], &[], 0).unwrap();
        assert!(s == [1] || s == [2], "{s:?}");
        // A CPU the parent no longer has is dropped.
        assert_eq!(choose(Some(100), &[0, 1], &[3], &[], 0).unwrap(), [0]);
    }

    #[test]
    fn lists_parse_and_format() {
        assert_eq!(parse_list("0-3,8,10-11\n").unwrap(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_list("").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_list("5").unwrap(), [5]);
        for bad in ["a", "3-1", "1-", "-"] {
            assert!(parse_list(bad).is_none(), "{bad}");
        }
        assert_eq!(format_list(&[3, 0, 1, 2, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_list(&[1]), "1");
        assert_eq!(format_list(&[]), "");
        assert_eq!(parse_list(&format_list(&[7, 9, 1, 2])).unwrap(), [1, 2, 7, 9]);
    }

    #[test]
    fn seeds_differ_by_uuid() {
        let a = seed_of("2f1b4c3e-0000-4000-8000-000000000001");
        let b = seed_of("2f1b4c3e-0000-4000-8000-000000000002");
        assert_ne!(a, b);
        assert_eq!(a, seed_of("2f1b4c3e-0000-4000-8000-000000000001"));
    }
}
