//! A guest that takes over its QEMU (the attacker's next step after a
//! device emulation bug) holds only what its jail gives: its own user,
//! no capabilities, a seccomp filter, and a root that shows its own disks
//! and sockets, the firmware and libraries under a read-only `/usr`, and
//! nothing of the host or of another VM.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

fn status_field(pid: i64, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap_or_default().trim().to_string()
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_vms_qemu_holds_only_its_own_disks_as_its_own_unprivileged_user() {
    let Some(h) = TestHost::new() else { return };
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        skip("qemu-system-x86 is not installed");
        return;
    }
    let f = vm_images();
    let vm = |alias: &str| {
        json!({"brand": "kvm", "alias": alias, "ram": 128, "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd,
               "boot_args": "console=ttyS0 quiet zv.boot=direct", "disks": [{"size": 8}],
               "nics": [{"ips": ["dhcp"], "primary": true}]})
    };
    let a = h.create_ok(&vm("a"));
    let b = h.create_ok(&vm("b"));
    for uuid in [&a, &b] {
        h.wait_console(uuid, "zonevisor-guest: ready", 1, Duration::from_secs(180));
    }
    let pid = |uuid: &str| h.get(uuid)["pid"].as_i64().unwrap();
    let (pa, pb) = (pid(&a), pid(&b));
    // Its own unprivileged user, one per VM; nothing to gain.
    let uid = |p: i64| status_field(p, "Uid").split_whitespace().map(String::from).collect::<Vec<_>>();
    assert!(uid(pa).iter().all(|u| u != "0"), "QEMU is not root: {:?}", uid(pa));
    assert_ne!(uid(pa), uid(pb), "two VMs never share a user");
    assert_eq!(status_field(pa, "Groups"), "", "no supplementary groups");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(status_field(pa, cap), "0000000000000000", "{cap}");
    }
    assert_eq!(status_field(pa, "NoNewPrivs"), "1");
    assert_eq!(status_field(pa, "Seccomp"), "2", "QEMU's -sandbox");
    // Its root: no host /etc, /var, /proc, /home, and no other VM.
    let root = Path::new("/proc").join(pa.to_string()).join("root");
    assert_eq!(names(&root), ["bin", "dev", "lib", "lib64", "sbin", "usr", "vm"].map(String::from).into());
    let vm_dir = root.join("vm");
    let inside: Vec<String> = walk(&vm_dir);
    assert!(inside.iter().all(|p| !p.contains(&b)), "A's jail names nothing of B: {inside:?}");
    assert!(inside.iter().any(|p| p.starts_with("disks/")), "its own disk: {inside:?}");
    assert!(!root.join("etc").exists() && !root.join("proc").exists());
    // Its NIC is a tap it was handed (descriptor 100): it cannot open
    // /dev/net/tun to make or take another.
    assert!(!root.join("dev/net").exists(), "/dev/net in the jail");
    let tun = |fd: &str| std::fs::read_link(format!("/proc/{pa}/fd/{fd}")).ok().map(|p| p.display().to_string());
    assert_eq!(tun("100").as_deref(), Some("/dev/net/tun"), "the tap at descriptor 100");
    let taps = std::fs::read_dir(format!("/proc/{pa}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| tun(&e.file_name().to_string_lossy()).as_deref() == Some("/dev/net/tun"));
    assert_eq!(taps.count(), 1, "one tap per NIC, no more");
    // Read-only but for its own disk and socket directory.
    let mounts = std::fs::read_to_string(format!("/proc/{pa}/mountinfo")).unwrap();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (target, opts) = (fields[4], fields[5]);
        if target.starts_with("/dev/") {
            continue; // null, zero, urandom: device nodes, nothing to keep
        }
        let writable = target.starts_with("/vm/run") || target.starts_with("/vm/disks/");
        assert_eq!(opts.split(',').any(|o| o == "rw"), writable, "{target} {opts}");
    }
    for uuid in [&a, &b] {
        h.vmadm(&["delete", uuid]).ok();
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}
