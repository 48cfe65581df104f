//! `lofs` sources: never resolved through what a zone's owner controls.

use serde_json::json;

use crate::common::*;
use crate::probe::{self, zsh};

/// Hole 6: a `lofs` source inside another instance's dataset followed
/// that instance's symlinks, so its owner could point another zone's mount
/// at the host's `/`. Now sources are refused inside the pool, and no
/// symlink a zone made (in its dataset or in a directory it was given) is
/// followed, at create and again at start.
#[test]
fn lofs_sources_follow_no_zones_symlinks() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let shared = h.dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let owner = h.create_ok(&probe::payload(
        &img,
        &probes,
        json!({"filesystems": [{"type": "lofs", "source": shared, "target": "/srv/shared"}]}),
    ));
    // The attacker, root in `owner`, plants symlinks to the host's root.
    let r = zsh(&h, &owner, "ln -s / /srv/shared/evil && ln -s / /data && echo planted");
    assert!(r.contains("planted"), "{r}");

    let lofs = |source: std::path::PathBuf| {
        json!({"brand": "lx", "image_uuid": img, "autoboot": false,
               "filesystems": [{"type": "lofs", "source": source, "target": "/mnt/x"}]})
    };
    // Through the zone's symlink in the shared directory...
    let r = h.create(&lofs(shared.join("evil/etc")));
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("filesystems.0.source") && r.stderr.contains("symlink"), "{}", r.stderr);
    // ...and through one in its dataset, or anything in the pool at all.
    for source in [h.pool().join(&owner).join("root/data/etc"), h.pool().join(&owner).join("root/etc")] {
        let r = h.create(&lofs(source.clone()));
        assert_eq!(r.code, 1, "{}: {} {}", source.display(), r.stdout, r.stderr);
        assert!(r.stderr.contains("filesystems.0.source"), "{}", r.stderr);
    }
    // A source that did not exist at create time, planted later: refused at start.
    let later = h.create_ok(&lofs(shared.join("later")));
    zsh(&h, &owner, "ln -s /etc /srv/shared/later");
    let r = h.vmadm(&["start", &later]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    assert_eq!(h.get(&later)["state"], "stopped");
    // The host's own symlinks (root's) are still followed.
    let real = h.dir.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(&real, h.dir.path().join("alias")).unwrap();
    let ok = h.create_ok(&json!({"brand": "lx", "image_uuid": img,
        "filesystems": [{"type": "lofs", "source": h.dir.path().join("alias"), "target": "/mnt/x"}]}));
    assert_eq!(zsh(&h, &ok, "touch /mnt/x/made && echo ok").trim(), "ok");
    assert!(real.join("made").exists());
}
