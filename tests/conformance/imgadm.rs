//! `imgadm`: install, import, create, list, get, show and delete: output, errors
//! and exit codes (src/img/test basics.test.js, IMG.test.js,
//! import.test.js, create.test.js; imgadm(8); lib/cli.js and lib/errors.js's messages).

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

/// A line of `imgadm list` as tabula prints it: columns left-aligned to
/// the widest cell, two spaces between, the last one unpadded.
fn tabula(cells: &[(&str, usize)]) -> String {
    let (last, rest) = cells.split_last().unwrap();
    let mut line: String = rest.iter().map(|(v, w)| format!("{v:<w$}  ")).collect();
    line.push_str(last.0);
    line
}

/// `imgadm <args>` that must succeed; its stdout's lines.
#[track_caller]
fn imgadm_lines(h: &TestHost, args: &[&str]) -> Vec<String> {
    let r = h.imgadm(args);
    assert_eq!(r.code, 0, "imgadm {args:?}: {} {}", r.stdout, r.stderr);
    r.stdout.lines().map(str::to_string).collect()
}

/// A failure with exit `code`, nothing on stdout, `message` on stderr.
#[track_caller]
fn assert_imgadm_fails(h: &TestHost, args: &[&str], code: i32, message: &str) {
    let r = h.imgadm(args);
    assert_eq!(r.code, code, "imgadm {args:?}: stdout={} stderr={}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "", "imgadm {args:?}: nothing on stdout");
    assert!(r.stderr.contains(message), "imgadm {args:?} should say {message:?}: {}", r.stderr);
}

// import.test.js "imgadm install ..." and its already-installed skip (for
// install and for import, which checks before asking any source);
// imgadm(8)'s list (default columns, -H, -o, -j, filters), get and show;
// basics.test.js / IMG.test.js: an image not installed is exit 3
// (ImageNotInstalled); delete refused while a VM uses the image.
#[test]
fn imgadm_install_list_get_show_delete() {
    let Some(h) = TestHost::new() else { return };
    let f = busybox();
    let manifest: Value = serde_json::from_slice(&std::fs::read(&f.manifest).unwrap()).unwrap();
    let uuid = f.uuid.clone();
    let (name, version) = (manifest["name"].as_str().unwrap(), manifest["version"].as_str().unwrap());
    let install = ["install", "-m", f.manifest.to_str().unwrap(), "-f", f.file.to_str().unwrap()];

    let out = imgadm_lines(&h, &install);
    for line in
        [format!("Installing image {uuid} ({name}@{version})"), format!("Installed image {uuid} ({name}@{version})")]
    {
        assert!(out.contains(&line), "install should print {line:?} on stdout: {out:?}");
    }
    let skip = format!("Image {uuid} ({name} {version}) is already installed, skipping");
    assert!(imgadm_lines(&h, &install).contains(&skip), "install again skips it, exit 0");
    assert!(imgadm_lines(&h, &["import", &uuid]).contains(&skip), "import of an installed image skips it, exit 0");

    let pub_date = &manifest["published_at"].as_str().unwrap()[..10];
    let widths = [36, name.len().max(4), version.len().max(7), 5, 10, 10];
    let line = |cells: [&str; 6]| tabula(&cells.iter().zip(widths).map(|(c, w)| (*c, w)).collect::<Vec<_>>());
    let header = line(["UUID", "NAME", "VERSION", "OS", "TYPE", "PUB"]);
    let image_row = line([&uuid, name, version, "linux", "lx-dataset", pub_date]);
    assert_eq!(imgadm_lines(&h, &["list"]), [header.clone(), image_row.clone()]);
    assert_eq!(imgadm_lines(&h, &["list", "-H", "-o", "uuid"]), [uuid.as_str()]);
    assert_eq!(imgadm_lines(&h, &["list", "-H", "-o", "name,published"]), [format!("{name}  2026-11-21T00:00:00Z")]);
    for filters in [&["name=busybox"][..], &["name=~busy"], &["os=linux", "type=lx-dataset"], &["public=true"]] {
        let mut args = vec!["list"];
        args.extend(filters);
        assert_eq!(imgadm_lines(&h, &args), [header.clone(), image_row.clone()], "imgadm {args:?}");
    }
    // ~ is a substring match, case-sensitive; no image, no output at all.
    for filters in [&["name=~BUSY"][..], &["public=false"], &["name=nope"]] {
        let mut args = vec!["list"];
        args.extend(filters);
        assert_eq!(imgadm_lines(&h, &args), Vec::<String>::new(), "imgadm {args:?}");
    }
    assert_imgadm_fails(&h, &["list", "name"], 1, "invalid filter: \"name\"");

    let arr = h.imgadm(&["list", "-j"]).json();
    assert_eq!(arr.as_array().map(Vec::len), Some(1), "{arr}");
    assert_eq!(arr[0]["manifest"], manifest);
    assert_eq!(arr[0]["zpool"], "zones");
    for verb in ["get", "info"] {
        let got = h.imgadm(&[verb, &uuid]).json();
        assert_eq!(got["manifest"], manifest, "imgadm {verb}");
        assert_eq!(got["zpool"], "zones", "imgadm {verb}");
    }
    // zonevisor: show answers for an installed image too, as its manifest
    // (SmartOS's show asks only its image sources, issue 12).
    assert_eq!(h.imgadm(&["show", &uuid]).json(), manifest, "show prints the manifest");

    let not_installed = format!("image \"{BOGUS_UUID}\" was not found on zpool \"zones\"");
    for verb in ["get", "info"] {
        assert_imgadm_fails(&h, &[verb, BOGUS_UUID], 3, &not_installed);
        assert_imgadm_fails(&h, &[verb, BOGUS_UUID], 3, "ImageNotInstalled");
    }
    // show looks for an available image: not found is exit 1, not 3 (the
    // default source goes first: the tests have no internet, and an
    // unreachable source is an error of its own).
    imgadm_lines(&h, &["sources", "-d", "https://images.smartos.org"]);
    assert_imgadm_fails(&h, &["show", BOGUS_UUID], 1, &format!("image \"{BOGUS_UUID}\" was not found"));

    let vm = create(&h, &lx(&uuid, json!({"autoboot": false})));
    assert_eq!(imgadm_lines(&h, &["list", "-H", "-o", "uuid,clones"]), [format!("{uuid}  1")]);
    let r = h.imgadm(&["delete", &uuid]);
    assert_eq!(r.code, 1, "delete of an image in use: {} {}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("image \"{uuid}\" has dependent clones")) && r.stderr.contains(&vm),
        "{}",
        r.stderr
    );
    h.vmadm(&["delete", &vm]).ok();
    assert_eq!(imgadm_lines(&h, &["delete", &uuid]), [format!("Deleted image {uuid}")]);
    assert_imgadm_fails(&h, &["get", &uuid], 3, "ImageNotInstalled");
    assert_eq!(imgadm_lines(&h, &["list"]), Vec::<String>::new(), "no image, no output");
}

// basics.test.js: "imgadm" (help, exit 1), "imgadm --help", "imgadm -h",
// "imgadm help", "imgadm --version", an unknown command (exit 1).
#[test]
fn imgadm_help_version_and_unknown_commands() {
    let Some(h) = TestHost::new() else { return };
    let r = h.imgadm(&[]);
    assert_eq!(r.code, 1, "no command: {} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Usage:"), "help on stdout: {}", r.stdout);
    assert_eq!(r.stderr, "", "no command: nothing on stderr");
    for args in [&["--help"][..], &["-h"], &["help"]] {
        let r = h.imgadm(args);
        assert_eq!(r.code, 0, "imgadm {args:?}: {}", r.stderr);
        assert!(r.stdout.contains("Usage:"), "imgadm {args:?}: {}", r.stdout);
        assert_eq!(r.stderr, "", "imgadm {args:?}: nothing on stderr");
    }
    let r = h.imgadm(&["--version"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{}", r.stderr);
    // SmartOS's test reads the second word; zonevisor adds the commit after it.
    let words: Vec<&str> = r.stdout.split_whitespace().collect();
    assert!(words.len() >= 2, "imgadm X.Y.Z: {:?}", r.stdout);
    assert_eq!(words[0], "imgadm");
    let parts: Vec<&str> = words[1].split('.').collect();
    assert!(parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()), "a version: {:?}", r.stdout);
    assert_imgadm_fails(&h, &["bogus"], 1, "unknown command: \"bogus\"");
}

// import.test.js's sources and imports from a server; imgadm(8)'s
// sources; basics.test.js "imgadm help sources". SmartOS's test imports
// minimal-32@15.2.0 from images.smartos.org; here an IMGAPI server in the
// test's network namespace (there is no internet in the tests) serves the
// busybox fixture in its place. The default source stays listed.
#[test]
fn imgadm_sources_and_import_from_a_server() {
    let Some(h) = TestHost::new() else { return };
    let r = h.imgadm(&["help", "sources"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(r.stdout.contains("imgadm sources"), "{}", r.stdout);
    assert_eq!(imgadm_lines(&h, &["sources"]), ["https://images.smartos.org"], "the default source");
    let server = crate::common::imgapi::ImgapiServer::start(&h.netns);
    let url = server.url.as_str();
    let source = format!("\"imgapi\" image source \"{url}\"");
    assert_eq!(imgadm_lines(&h, &["sources", "-f", "-a", url]), [format!("Added {source}")]);
    assert_eq!(imgadm_lines(&h, &["sources", "-f", "-a", url]), [format!("Already have {source}, no change")]);
    assert_eq!(imgadm_lines(&h, &["sources"]), ["https://images.smartos.org", url]);
    let j = h.imgadm(&["sources", "-j"]).json();
    assert_eq!(j[1], json!({"url": url, "type": "imgapi"}));
    assert_eq!(imgadm_lines(&h, &["sources", "-d", url]), [format!("Deleted {source}")]);
    assert_eq!(imgadm_lines(&h, &["sources", "-d", url]), [format!("Do not have image source \"{url}\", no change")]);

    let f = busybox();
    let manifest: Value = serde_json::from_slice(&std::fs::read(&f.manifest).unwrap()).unwrap();
    server.add_file(manifest.clone(), f.file.clone());
    let image = f.uuid.as_str();
    // zonevisor: the unreachable default goes, or avail would end in its error.
    imgadm_lines(&h, &["sources", "-d", "https://images.smartos.org"]);
    imgadm_lines(&h, &["sources", "-a", url]);
    let shown = h.imgadm(&["show", image]).json();
    assert_eq!(shown["uuid"], image);
    let avail = h.imgadm(&["avail", "-j"]).json();
    assert!(avail.as_array().unwrap().iter().any(|i| i["manifest"]["uuid"] == image), "avail lists it");
    let r = h.imgadm(&["import", image]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!("Imported image {image} (busybox@")), "{}", r.stdout);
    let got = h.imgadm(&["get", image]).json();
    assert_eq!(got["manifest"], shown);
    assert_eq!(got["source"], url);
    let again = h.imgadm(&["import", image]);
    assert!(again.stdout.contains("is already installed"), "{}", again.stdout);
    assert_imgadm_fails(&h, &["import", BOGUS_UUID], 1, "ActiveImageNotFound");
}

// create.test.js's "custom image (compression=none|gzip|xz)" and their
// "incremental" twins, through mk-custom-image and try-custom-image: a
// basis zone gets "hi from mk-custom-image" in /etc/motd, is stopped and
// imaged (`imgadm create <vm> -o <template> -c <comp> name=custom-image
// version=1.0.0 [-i]`), deleted; the image is installed, a zone from it
// shows the marker, and zone and image are deleted. cli.js's usage errors
// for -c and --max-origin-depth, and errors.js's VmNotFound, VmNotStopped
// and VmHasNoOrigin messages. zonevisor writes tar files (`.tar[.gz|.xz]`),
// not ZFS streams (`.zfs[.gz|.xz]`), and takes no bzip2 (README: SmartOS
// differences).
#[test]
fn imgadm_create_custom_images_in_every_compression() {
    let Some((h, img)) = host() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (i, (compression, incremental)) in
        [("none", false), ("none", true), ("gzip", false), ("gzip", true), ("xz", false), ("xz", true)]
            .into_iter()
            .enumerate()
    {
        // mk-custom-image
        let vm = create(&h, &lx(&img, json!({"alias": format!("mk-custom-image-{i}"), "quota": 20})));
        let r = h.cli("zlogin", &[&vm, "echo \"hi from mk-custom-image\" > /etc/motd"], None);
        assert_eq!(r.code, 0, "{}", r.stderr);
        h.vmadm(&["stop", &vm]).ok();
        let template = dir.path().join(i.to_string());
        let mut args = vec!["create", &vm, "-o", template.to_str().unwrap(), "-c", compression];
        args.extend(["name=custom-image", "version=1.0.0"]);
        if incremental {
            args.push("-i");
        }
        let said = imgadm_lines(&h, &args);
        assert!(said.iter().any(|l| l.starts_with("Created image ")), "{said:?}");
        h.vmadm(&["delete", &vm]).ok();
        let suffix = match compression {
            "gzip" => ".gz",
            "xz" => ".xz",
            _ => "",
        };
        let file = format!("{}.tar{suffix}", template.display());
        let manifest_path = format!("{}.imgmanifest", template.display());
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        assert_eq!(m["files"][0]["compression"], compression);
        assert_eq!(m.get("origin").is_some(), incremental, "{m}");
        // try-custom-image
        imgadm_lines(&h, &["install", "-m", &manifest_path, "-f", &file]);
        let uuid = m["uuid"].as_str().unwrap();
        let zone = create(&h, &lx(uuid, json!({})));
        let r = h.cli("zlogin", &[&zone, "cat /etc/motd"], None);
        assert!(r.stdout.contains("hi from mk-custom-image"), "{}: {}{}", compression, r.stdout, r.stderr);
        h.vmadm(&["delete", &zone]).ok();
        imgadm_lines(&h, &["delete", uuid]);
    }
    let vm = create(&h, &lx(&img, json!({})));
    let o = dir.path().to_str().unwrap();
    assert_imgadm_fails(
        &h,
        &["create", &vm, "-o", o, "-c", "bzip2", "name=a", "version=1"],
        2,
        "invalid -c,--compression \"bzip2\"",
    );
    assert_imgadm_fails(
        &h,
        &["create", &vm, "-O", "--max-origin-depth", "1", "name=a", "version=1"],
        2,
        "must be greater than 1",
    );
    assert_imgadm_fails(
        &h,
        &["create", &vm, "-o", o, "name=a", "version=1"],
        1,
        &format!("vm \"{vm}\" is not stopped"),
    );
    let ghost = "00000000-0000-4000-8000-00000000beef";
    assert_imgadm_fails(
        &h,
        &["create", ghost, "-o", o, "name=a", "version=1"],
        1,
        &format!("vm \"{ghost}\" was not found"),
    );
    // A VM from no image has no origin to be incremental against.
    let bare = create(
        &h,
        &json!({"brand": "bhyve", "autoboot": false, "bootrom": "bios", "disks": [{"boot": true, "size": 8}]}),
    );
    assert_imgadm_fails(
        &h,
        &["create", &bare, "-i", "-o", o, "name=a", "version=1"],
        1,
        &format!("cannot create an incremental image: vm \"{bare}\" has no origin"),
    );
}
