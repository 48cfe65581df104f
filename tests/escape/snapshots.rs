//! Snapshots: a zone cannot see or reach its own snapshots or another's
//! (they live outside every dataset, in the pool's hidden `.snapshots`),
//! a `lofs` mount cannot hand them to one, and nothing a zone writes
//! decides what a rollback puts back into its tags and metadata.

use serde_json::json;

use crate::common::*;
use crate::probe::{self, zsh};

/// A zone's data that only its snapshot holds stays out of reach: from
/// inside the zone (and from a neighbour) no path leads to it, the pool's
/// snapshot and rollback directories and the daemon's saved copy of the
/// instance are not in its root, and no lofs source can name them.
#[test]
fn a_zone_cannot_see_or_reach_snapshots() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let zone = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let neighbour = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let secret = "snapshot-secret-7f3e";
    let r = zsh(&h, &zone, &format!("echo hidden > /root/{secret} && sync && echo written"));
    assert!(r.contains("written"), "{r}");
    h.vmadm(&["create-snapshot", &zone, "s1"]).ok();
    let r = zsh(&h, &zone, &format!("rm /root/{secret} && echo removed"));
    assert!(r.contains("removed"), "{r}");
    let snapshot = h.pool().join(".snapshots").join(&zone).join("vmsnap-s1");
    assert!(snapshot.join("root/root").join(secret).exists(), "the snapshot holds it");
    assert!(h.pool().join(&zone).join("vmsnap.json").exists(), "the daemon's saved copy is in the dataset");

    for uuid in [&zone, &neighbour] {
        // Nowhere in the zone's file system...
        let r = zsh(
            &h,
            uuid,
            &format!("find / -xdev -name '{secret}*' -o -name vmsnap.json -o -name .snapshots; echo end"),
        );
        assert_eq!(r.trim(), "end", "{uuid} finds snapshot data: {r}");
        let r = zsh(&h, uuid, "ls -a / /..");
        assert!(!r.contains(".snapshots") && !r.contains(".rollback") && !r.contains("vmsnap"), "{r}");
        // ...and no path up out of its root reaches it.
        for path in [
            format!("/../.snapshots/{zone}/vmsnap-s1/root/root/{secret}"),
            format!("/../../.snapshots/{zone}/vmsnap-s1/root/root/{secret}"),
            format!("/../../../zones/.snapshots/{zone}/vmsnap-s1/root/root/{secret}"),
            format!("{}", snapshot.join("root/root").join(secret).display()),
            "/../vmsnap.json".to_string(),
        ] {
            let r = zsh(&h, uuid, &format!("/probes/escape open {path}"));
            assert!(r.contains("open: ENOENT"), "{uuid} opened {path}: {r}");
        }
    }

    // A lofs mount of a snapshot is refused, at create.
    for source in [snapshot.join("root"), h.pool().join(".snapshots"), h.pool().join(".rollback")] {
        let r = h.create(&json!({"brand": "lx", "image_uuid": img, "autoboot": false,
            "filesystems": [{"type": "lofs", "source": source, "target": "/mnt/snap", "options": ["ro"]}]}));
        assert_eq!(r.code, 1, "{}: {} {}", source.display(), r.stdout, r.stderr);
        assert!(r.stderr.contains("filesystems.0.source"), "{}", r.stderr);
    }

    // After a rollback the zone sees its data again, and nothing else new.
    h.vmadm(&["rollback-snapshot", &zone, "s1"]).ok();
    h.wait_state(&zone, "running", std::time::Duration::from_secs(60));
    let r = zsh(&h, &zone, &format!("cat /root/{secret}; ls -a /"));
    assert!(r.contains("hidden") && !r.contains("vmsnap") && !r.contains(".rollback"), "{r}");
}

/// What a rollback puts back into the instance's tags and metadata is the
/// daemon's own copy, outside the zone's root: a zone writing a file of
/// that name in its root changes nothing.
#[test]
fn what_a_rollback_restores_is_not_the_zones_to_write() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let zone = h.create_ok(&probe::payload(&img, &probes, json!({"tags": {"role": "web"}})));
    let forged = r#"{"v":1,"vm":{"tags":{"role":"admin"},"internal_metadata":{"root_pw":"x"}}}"#;
    let r =
        zsh(&h, &zone, &format!("echo '{forged}' > /vmsnap.json && echo '{forged}' > /root/vmsnap.json && echo ok"));
    assert!(r.contains("ok"), "{r}");
    h.vmadm(&["create-snapshot", &zone, "s1"]).ok();
    h.cli("vmadm", &["update", &zone], Some(r#"{"set_tags": {"role": "db"}}"#)).ok();
    h.vmadm(&["rollback-snapshot", &zone, "s1"]).ok();
    let vm = h.get(&zone);
    assert_eq!(vm["tags"], json!({"role": "web"}), "{vm}");
    assert!(vm.get("internal_metadata").is_none_or(|m| m.get("root_pw").is_none()), "{vm}");
}
