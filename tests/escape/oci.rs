//! Hostile OCI images: layers made to reach the host when they are
//! applied (`imgadm import`), and image files made to trip a docker
//! zone's init. Each image is pushed to a real registry in the test
//! host's network namespace and imported through the real daemon; every
//! case asserts the host is unchanged, and that a refused import leaves
//! nothing in the pool.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::*;
use crate::registry::*;

/// A host directory holding `victim` (contents `host`), which the
/// layers below aim at; its path is absolute, as a layer would name it.
struct Target {
    dir: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::Builder::new().prefix("zv-oci-escape-").tempdir().unwrap();
        std::fs::write(dir.path().join("victim"), "host").unwrap();
        Target { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn abs(&self) -> String {
        self.path().display().to_string()
    }

    /// `dir` (in the image) as a relative member name.
    fn member(&self) -> String {
        self.abs().trim_start_matches('/').to_string()
    }

    /// The host directory holds `victim` as it was, and nothing else.
    #[track_caller]
    fn untouched(&self) {
        let names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["victim"], "something was written in {}", self.abs());
        assert_eq!(std::fs::read_to_string(self.path().join("victim")).unwrap(), "host");
        assert_eq!(std::fs::metadata(self.path().join("victim")).unwrap().nlink(), 1, "no hard link to it");
    }
}

/// The datasets in the pool.
fn datasets(h: &TestHost) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(h.pool())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "config")
        .collect();
    names.sort();
    names
}

/// An import's run, and the pool's datasets before it.
struct Import {
    run: Run,
    before: Vec<String>,
}

/// Pushes an image whose layers are the busybox root and `upper`, and
/// imports it.
fn import(h: &TestHost, reg: &Registry, name: &str, upper: Vec<u8>) -> Import {
    let layout = write_layout(
        &h.dir.path().join(format!("layout-{name}")),
        name,
        &[busybox_layer(), upper],
        json!({"config": {"Cmd": ["/bin/true"]}}),
    );
    reg.push(&layout, name, &format!("escape/{name}:1"));
    let before = datasets(h);
    Import { run: h.imgadm(&["import", &reg.reference(&format!("escape/{name}:1"))]), before }
}

/// An import that succeeded: the image's uuid.
#[track_caller]
fn imported(i: &Import) -> String {
    assert_eq!(i.run.code, 0, "the import failed: {} {}", i.run.stdout, i.run.stderr);
    let line = i.run.stdout.lines().find_map(|l| l.strip_prefix("Imported image ")).unwrap();
    line.split(' ').next().unwrap().to_string()
}

/// The image's root in the pool.
fn image_root(h: &TestHost, uuid: &str) -> PathBuf {
    h.pool().join(uuid).join("root")
}

/// A refused import: exit 1, `says` in the error, no image or dataset left.
#[track_caller]
fn refused(h: &TestHost, i: &Import, says: &str) {
    let run = &i.run;
    assert_eq!(run.code, 1, "the import was not refused: {} {}", run.stdout, run.stderr);
    assert!(run.stderr.contains(says), "the error should say {says:?}: {}", run.stderr);
    assert_eq!(datasets(h), i.before, "a dataset was left in the pool");
}

// SECURITY.md: image extraction (a layer is the image author's tarball).
#[test]
fn oci_layers_cannot_write_outside_the_image() {
    let Some(h) = crate::registry::host() else { return };
    let reg = Registry::start(&h, false);
    let t = Target::new();

    // A symlink out, then a file written through it: where the image has
    // no such directory the import is refused...
    let layer = LayerTar::new().link(tar::EntryType::Symlink, "out", &t.abs()).file("out/pwned", b"x").bytes();
    let run = import(&h, &reg, "symlink-dangling", layer);
    refused(&h, &run, "in the way");
    assert_eq!(h.imgadm(&["list", "-H"]).stdout, "", "no image was left");
    t.untouched();
    // ... and where it has one, the file lands in the image's own copy.
    let layer = LayerTar::new()
        .dir(&format!("{}/", t.member()))
        .link(tar::EntryType::Symlink, "out", &t.abs())
        .link(tar::EntryType::Symlink, "up", "../../../../../../..")
        .file("out/pwned", b"x")
        .file(&format!("up/{}/pwned-too", t.member()), b"x")
        .bytes();
    let root = image_root(&h, &imported(&import(&h, &reg, "symlink", layer)));
    assert!(root.join(t.member()).join("pwned").exists() && root.join(t.member()).join("pwned-too").exists());
    t.untouched();

    // `../` in a member's name.
    for (name, member) in
        [("dotdot", format!("../../../../../../..{}/pwned", t.abs())), ("dotdot-mid", "etc/../../pwned".into())]
    {
        let run = import(&h, &reg, name, LayerTar::new().file(&member, b"x").bytes());
        refused(&h, &run, "..");
    }
    t.untouched();

    // A hard link to a host file: its target is looked up in the image.
    let layer = LayerTar::new()
        .link(tar::EntryType::Link, "passwd-link", "/etc/passwd")
        .link(tar::EntryType::Link, "victim-link", &format!("{}/victim", t.abs()))
        .bytes();
    let run = import(&h, &reg, "hardlink", layer);
    refused(&h, &run, "hard link");
    t.untouched();
    let layer = LayerTar::new().link(tar::EntryType::Link, "passwd-link", "/etc/passwd").bytes();
    let root = image_root(&h, &imported(&import(&h, &reg, "hardlink-image", layer)));
    let linked = std::fs::metadata(root.join("passwd-link")).unwrap();
    assert_eq!(linked.ino(), std::fs::metadata(root.join("etc/passwd")).unwrap().ino(), "the image's own passwd");
    assert_ne!(linked.ino(), std::fs::metadata("/etc/passwd").unwrap().ino());
    let run =
        import(&h, &reg, "hardlink-up", LayerTar::new().link(tar::EntryType::Link, "l", "../../etc/shadow").bytes());
    refused(&h, &run, "..");

    // Whiteouts of `../x`, and through a symlink out.
    let run = import(&h, &reg, "whiteout-up", LayerTar::new().file("../.wh.victim", b"").bytes());
    refused(&h, &run, "..");
    let layer = LayerTar::new().link(tar::EntryType::Symlink, "w", &t.abs()).file("w/.wh.victim", b"").bytes();
    imported(&import(&h, &reg, "whiteout-symlink", layer));
    t.untouched();
    // An opaque directory there would be made in the image: the symlink
    // dangles inside it, so the import is refused.
    let layer = LayerTar::new().link(tar::EntryType::Symlink, "w", &t.abs()).file("w/.wh..wh..opq", b"").bytes();
    refused(&h, &import(&h, &reg, "opaque-symlink", layer), "in the way");
    t.untouched();
}

// SECURITY.md: the docker init reads the image's /etc/passwd and /etc/group.
#[test]
fn a_docker_zone_s_account_files_cannot_stall_or_mislead_its_init() {
    let Some(h) = crate::registry::host() else { return };
    let reg = Registry::start(&h, false);
    // /etc/passwd a FIFO (a read would wait forever): the start is refused at once.
    let mut b = tar::Builder::new(Vec::new());
    let mut fifo = tar::Header::new_gnu();
    fifo.set_entry_type(tar::EntryType::Fifo);
    fifo.set_mode(0o644);
    fifo.set_uid(0);
    fifo.set_gid(0);
    fifo.set_size(0);
    fifo.set_mtime(1_700_000_000);
    b.append_data(&mut fifo, "etc/passwd", &[][..]).unwrap();
    let img = imported(&import(&h, &reg, "fifo-passwd", b.into_inner().unwrap()));
    let started = std::time::Instant::now();
    let r = h.create(&json!({"brand": "lx", "image_uuid": img, "docker": true,
                             "internal_metadata": {"docker:user": "app", "docker:cmd": "[\"true\"]"}}));
    assert_ne!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("/etc/passwd") && r.stderr.contains("not a regular file"), "{}", r.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "the start stalled");
    // /etc/passwd a symlink climbing out of the root: followed inside the
    // zone, it reads the image's file, never the host's (which has no
    // `hostuser`: the start would fail).
    let layer = LayerTar::new()
        .link(tar::EntryType::Symlink, "etc/passwd", "../../../../../../etc/host-passwd")
        .file("etc/host-passwd", b"hostuser:x:4242:4242::/:/bin/sh\n")
        .bytes();
    let img = imported(&import(&h, &reg, "symlink-passwd", layer));
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img, "docker": true,
                                   "internal_metadata": {"docker:user": "hostuser", "docker:cmd": "[\"id\"]"}}));
    let console = h.wait_console(&uuid, "uid=", 1, std::time::Duration::from_secs(30));
    assert!(console.contains("uid=4242"), "the image's own file, through its own symlink: {console}");
}
