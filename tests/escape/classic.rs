//! The classic container escapes, from root inside a zone.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::probe::{self, zsh};

/// chroot into a subdirectory, `..` up past it, chroot there: in a chroot
/// that was all, but a zone's root is its mount namespace's root.
#[test]
fn the_chroot_breakout_stays_in_the_zone() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let marker = format!("/zone-marker-{}", std::process::id());
    let r = zsh(&h, &uuid, &format!("touch {marker} && /probes/escape chroot {marker}"));
    assert!(r.contains("still inside"), "{r}");
}

/// Device nodes: the zone cannot make one (no `CAP_MKNOD` over the host),
/// and one that is already in its dataset (an image's, extracted by root)
/// opens nothing: the zone's root is mounted `nodev`.
#[test]
fn device_nodes_open_nothing_in_a_zone() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let r = zsh(&h, &uuid, &format!("/probes/escape mknod {major} {minor}"));
    assert!(r.contains("mknod: EPERM"), "{r}");
    // As an image's member would be: made by root in the dataset.
    let root = h.pool().join(&uuid).join("root");
    for (name, mode, rdev) in [("devmem", libc::S_IFCHR, libc::makedev(1, 1)), ("disk", libc::S_IFBLK, dev)] {
        let path = std::ffi::CString::new(root.join(name).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mknod only creates the node.
        assert_eq!(unsafe { libc::mknod(path.as_ptr(), mode | 0o666, rdev) }, 0, "mknod {name}");
    }
    for name in ["devmem", "disk"] {
        let r = zsh(&h, &uuid, &format!("/probes/escape open /{name}"));
        assert!(r.contains("open: EACCES"), "/{name}: {r}");
    }
}

/// CVE-2019-5736's shape: a host binary shows up in the zone (`zlogin`'s
/// child is the host's `zonevisor` until it execs the zone's shell; a
/// shell the zone made a `#!/proc/self/exe` script would run the host's
/// binary in the zone, where the kernel allows that); the zone stops it,
/// takes its executable and, once it is gone, opens it for writing. The
/// entering process is not dumpable (its ids changed), and the zone's root
/// is an unprivileged host uid: the host's binary, root's, stays out of
/// reach.
#[test]
fn a_host_binary_seen_in_a_zone_cannot_be_rewritten() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let host_binary = std::fs::read(bin("zonevisor")).unwrap();
    zsh(
        &h,
        &uuid,
        "/probes/escape hijack 60 </dev/null >/hijack.out 2>&1 & \
         cp -a $(readlink -f /bin/sh) /sh.real && rm /bin/sh && printf '#!/proc/self/exe\\n' > /bin/sh && chmod 755 /bin/sh",
    );
    // zlogin until the probe has caught one.
    let root = h.pool().join(&uuid).join("root");
    let out = root.join("hijack.out");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tries = 0;
    let text = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("hijack:") || Instant::now() > deadline {
            break text;
        }
        let r = h.cli("zlogin", &[&uuid, "true"], None);
        assert_ne!(r.code, 0, "the zone's /bin/sh is a script of /proc/self/exe: {} {}", r.stdout, r.stderr);
        tries += 1;
    };
    // The zone's shell back, from the host.
    std::fs::remove_file(root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("/sh.real", root.join("bin/sh")).unwrap();
    assert!(text.contains("hijack:") && !text.contains("none"), "no host binary caught in {tries} zlogins: {text}");
    assert!(!text.contains("opened"), "the zone opened a host binary for writing: {text}");
    assert!(text.contains("EACCES") || text.contains("EPERM"), "{text}");
    assert_eq!(std::fs::read(bin("zonevisor")).unwrap(), host_binary, "the host's binary changed");
    assert_eq!(zsh(&h, &uuid, "echo ok").trim(), "ok");
}
