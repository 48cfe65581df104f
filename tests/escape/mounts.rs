//! Every mount a zone has, reviewed: a mount a change adds to zones (a new
//! host path, a new file system) fails this case until it is classified
//! here, with the options it must carry, and in SECURITY.md.

use serde_json::json;

use crate::common::*;
use crate::probe::zsh;

/// What a mount point may be, and the options it must have.
fn expected(point: &str) -> Option<&'static [&'static str]> {
    const PROC_FILES: [&str; 13] = [
        // Masked behind /dev/null.
        "kcore",
        "keys",
        "timer_list",
        "sched_debug",
        "latency_stats",
        // lxcfs's views of the zone's limits.
        "cpuinfo",
        "diskstats",
        "loadavg",
        "meminfo",
        "slabinfo",
        "stat",
        "swaps",
        "uptime",
    ];
    const PROC_DIRS: [&str; 8] = ["acpi", "scsi", "sys", "irq", "bus", "fs", "sysrq-trigger", "sys/net"];
    const DEVICES: [&str; 7] = ["null", "zero", "full", "random", "urandom", "tty", "console"];
    let ro: &[&str] = &["ro"];
    let none: &[&str] = &[];
    let nosuid_nodev: &[&str] = &["nosuid", "nodev"];
    Some(match point {
        // The zone's root: nodev (a device node in its dataset opens nothing),
        // but not nosuid (its setuid programs work).
        "/" => &["nodev"],
        "/proc" => &["nosuid", "nodev", "noexec"],
        "/sys" => &["ro", "nosuid", "nodev", "noexec"],
        "/sys/firmware" | "/sys/devices/system/cpu" => ro,
        "/dev" => &["nosuid", "noexec"],
        "/dev/pts" => &["nosuid", "noexec"],
        "/dev/shm" | "/tmp" => nosuid_nodev,
        // The probes given to the zone, read-only (see `probe::payload`).
        "/probes" => ro,
        // The guest tools, from the host: read-only, no setuid or devices.
        "/native" => &["ro", "nosuid", "nodev"],
        // The metadata socket's directory (the host's, owned by the
        // zone's root): read-only, so the zone puts nothing there.
        "/.zonecontrol" | "/native/.zonecontrol" => &["ro", "nosuid", "nodev", "noexec"],
        p => match p.strip_prefix("/proc/").or_else(|| p.strip_prefix("/dev/")) {
            Some(name) if p.starts_with("/dev/") && DEVICES.contains(&name) => none,
            Some(name) if PROC_FILES.contains(&name) => none,
            Some("sys/net") => none,
            Some(name) if PROC_DIRS.contains(&name) => ro,
            _ => return None,
        },
    })
}

#[test]
fn every_mount_in_a_zone_is_one_we_know_with_its_options() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = crate::probe::build(&h) else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&crate::probe::payload(&img, &probes, json!({})));
    let info = zsh(&h, &uuid, "cat /proc/self/mountinfo");
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(opts)) = (f.get(4), f.get(5)) else { continue };
        let opts: Vec<&str> = opts.split(',').collect();
        match expected(point) {
            None => wrong.push(format!("{point} ({line}): a mount this suite does not know; classify it")),
            Some(want) => {
                for o in want {
                    if !opts.contains(o) {
                        wrong.push(format!("{point} lacks {o}: {line}"));
                    }
                }
            }
        }
        seen.push(point.to_string());
    }
    for must in ["/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/null", "/tmp", "/probes"] {
        if !seen.iter().any(|p| p == must) {
            wrong.push(format!("{must} is not mounted"));
        }
    }
    assert!(wrong.is_empty(), "the zone's mounts:\n{}\n\n{info}", wrong.join("\n"));
}
