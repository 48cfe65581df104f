//! The metadata service as the attacker's tool, from root in a zone:
//!
//! - its socket's directory and `/native` cannot be written, remounted
//!   writable or replaced;
//! - another zone's metadata cannot be reached: no path leads to its
//!   socket, and the zone's own socket answers only for the zone;
//! - what the boot writes for the metadata (`/usr/sbin/mdata-*` links,
//!   root's `authorized_keys`, the `user-script`) is written as the
//!   zone's root inside the zone, so links the zone planted lead nowhere
//!   on the host.

use serde_json::json;

use crate::common::*;
use crate::probe::{build_named, payload, zsh};

const SOCK: &str = "/native/.zonecontrol/metadata.sock";

#[test]
fn the_socket_directory_and_native_cannot_be_written_or_remounted() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let z = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "max_physical_memory": 128}));
    let out = zsh(
        &h,
        &z,
        "for p in /.zonecontrol/x /native/.zonecontrol/x /native/x /native/usr/sbin/x; do touch $p && echo wrote $p; done; \
         mount -o remount,rw /.zonecontrol && echo remounted; mount -o remount,rw /native && echo remounted; \
         umount /.zonecontrol && echo unmounted; rm -f /.zonecontrol/metadata.sock && echo removed; \
         chmod 777 /.zonecontrol && echo chmodded; true",
    );
    for bad in ["wrote", "remounted", "unmounted", "removed", "chmodded"] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
    // The host's side is as the monitor made it.
    let dir = h.root.join("run/zones").join(&z).join("zonecontrol");
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["metadata.sock"], "{}", dir.display());
}

#[test]
fn a_zone_reaches_only_its_own_metadata() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = build_named(&h, "mdata") else { return };
    let img = h.install(busybox());
    let a = h.create_ok(&payload(&img, &probes, json!({"customer_metadata": {"secret": "a's"}})));
    let b = h.create_ok(&payload(&img, &probes, json!({"customer_metadata": {"secret": "b's"}})));
    // b's socket on the host is nowhere in a's view of the world.
    let b_sock = h.root.join("run/zones").join(&b).join("zonecontrol/metadata.sock");
    let out = zsh(
        &h,
        &a,
        &format!("ls {} 2>&1; /probes/mdata raw {} 'GET secret\\n' 2>&1", b_sock.display(), b_sock.display()),
    );
    assert!(!out.contains("b's") && out.contains("No such file"), "{out}");
    // a's own socket answers for a, whatever key it asks.
    let out = zsh(&h, &a, &format!("/probes/mdata raw {SOCK} 'GET secret\\n' 'GET sdc:uuid\\n'"));
    assert!(out.contains("a's") && out.contains(&a) && !out.contains("b's") && !out.contains(&b), "{out}");
}

#[test]
fn links_the_zone_planted_keep_the_boots_writes_inside_it() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let z = h.create_ok(&json!({
        "brand": "lx", "image_uuid": img, "max_physical_memory": 128,
        "customer_metadata": {"root_authorized_keys": "ssh-ed25519 AAAA k", "user-script": "#!/bin/sh\ntrue\n"},
    }));
    let victim = h.dir.path().join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    // The zone points root's .ssh, /var/svc and a tool's name at host paths.
    zsh(
        &h,
        &z,
        &format!(
            "rm -rf /root/.ssh /var/svc /usr/sbin/mdata-get; ln -s {v} /root/.ssh; ln -s {d} /var/svc; ln -s {v} /usr/sbin/mdata-get",
            v = victim.display(),
            d = h.dir.path().display()
        ),
    );
    h.vmadm(&["reboot", &z]).ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n", "the boot wrote through the zone's link");
    assert!(!h.dir.path().join("mdata-user-script").exists(), "the user-script landed on the host");
    // An operator's script (imgadm create -s) is written the same way.
    let up = json!({"set_internal_metadata": {"operator-script": "#!/bin/sh\ntrue\n"}});
    h.cli("vmadm", &["update", &z], Some(&up.to_string())).ok();
    h.vmadm(&["reboot", &z]).ok();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!h.dir.path().join("mdata-operator-script").exists(), "the operator-script landed on the host");
    let log = std::fs::read_to_string(h.root.join("run/zones").join(&z).join("user-script.log")).unwrap_or_default();
    assert!(log.contains("== operator-script"), "the boot tried the operator-script: {log}");
    let link = zsh(&h, &z, "readlink /usr/sbin/mdata-get");
    assert_eq!(link.trim(), victim.display().to_string(), "the zone's own link was replaced");
}
