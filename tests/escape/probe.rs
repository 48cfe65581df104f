//! The `escape` probe (`tests/probes/escape.c`), built once per test host
//! and given to its zones read-only at `/probes`.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::{build_probe, TestHost};

/// Builds the `escape` probe into the host's test directory; `None`
/// (skipped, or failing in CI) without a C compiler.
pub fn build(h: &TestHost) -> Option<PathBuf> {
    build_named(h, "escape")
}

/// Builds `tests/probes/<name>.c` into the host's test directory (the
/// directory given to zones at `/probes`); `None` as [`build`].
pub fn build_named(h: &TestHost, name: &str) -> Option<PathBuf> {
    let dir = h.dir.path().join("probes");
    std::fs::create_dir_all(&dir).unwrap();
    match build_probe(name, &dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            crate::common::skip(&format!("cannot build the {name} probe: {e}"));
            None
        }
    }
}

/// A create payload for `image` with the probes at `/probes` (read-only)
/// and the extra properties in `more`.
pub fn payload(image: &str, probes: &std::path::Path, more: Value) -> Value {
    let mut p = json!({
        "brand": "lx", "image_uuid": image,
        "filesystems": [{"type": "lofs", "source": probes, "target": "/probes", "options": ["ro"]}],
    });
    if let (Some(p), Some(more)) = (p.as_object_mut(), more.as_object()) {
        for (k, v) in more {
            if k == "filesystems" {
                let fs = p["filesystems"].as_array_mut().unwrap();
                fs.extend(v.as_array().unwrap().iter().cloned());
            } else {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    p
}

/// Runs a shell command in the zone as its root; stdout and stderr together.
pub fn zsh(h: &TestHost, uuid: &str, script: &str) -> String {
    let r = h.cli("zlogin", &[uuid, &format!("{{ {script}; }} 2>&1")], None);
    format!("{}{}", r.stdout, r.stderr)
}

/// A member of a test image.
pub struct Member<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
    /// Extended attributes (`security.capability`...), as pax records.
    pub xattrs: &'a [(&'a str, &'a [u8])],
}

/// Writes an lx-dataset image (manifest v2 and gzipped tarball of
/// `members`, all owned by root) into the test directory and returns the
/// manifest's and the file's paths; `pad` adds a member of that many zero
/// bytes (`big`), which gzip squeezes to almost nothing (a bomb).
pub fn image(h: &TestHost, uuid: &str, members: &[Member], pad: u64) -> (PathBuf, PathBuf) {
    use sha1::Digest;
    use std::io::Write;
    let dir = h.dir.path().join(format!("image-{uuid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for m in members {
        if !m.xattrs.is_empty() {
            let records: Vec<(String, &[u8])> =
                m.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
            tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        }
        let mut hd = tar::Header::new_ustar();
        hd.set_size(m.data.len() as u64);
        hd.set_mode(m.mode);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_cksum();
        tar.append_data(&mut hd, m.path, m.data).unwrap();
    }
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let file = dir.join("rootfs.tar.gz");
    let mut out = std::fs::File::create(&file).unwrap();
    if pad == 0 {
        out.write_all(&gz(&tar.into_inner().unwrap())).unwrap();
    } else {
        // A member of `pad` bytes: its header, then the bytes as
        // concatenated gzip members (a multi-member stream, as `gunzip`
        // and the daemon read it) of one 64 MiB block each, compressed
        // once: a bomb in a few megabytes, made in a moment.
        const BLOCK: u64 = 64 << 20;
        assert_eq!(pad % BLOCK, 0, "pad in 64 MiB blocks");
        // Taken from the builder, which would end the archive first.
        let mut head = std::mem::take(tar.get_mut());
        let mut hd = tar::Header::new_gnu();
        hd.set_path("big").unwrap();
        hd.set_size(pad);
        hd.set_mode(0o644);
        hd.set_uid(0);
        hd.set_gid(0);
        hd.set_mtime(0);
        hd.set_cksum();
        head.extend_from_slice(hd.as_bytes());
        out.write_all(&gz(&head)).unwrap();
        // Not zeros, which an install keeps as holes: a repeated byte.
        let block = gz(&vec![b'x'; BLOCK as usize]);
        for _ in 0..pad / BLOCK {
            out.write_all(&block).unwrap();
        }
        // The end of the archive: two zero blocks.
        out.write_all(&gz(&[0u8; 1024])).unwrap();
    }
    drop(out);
    let bytes = std::fs::read(&file).unwrap();
    let manifest = json!({
        "v": 2, "uuid": uuid, "name": "escape-test", "version": "1.0", "type": "lx-dataset", "os": "linux",
        "state": "active",
        "files": [{"sha1": hex::encode(sha1::Sha1::digest(&bytes)), "size": bytes.len(), "compression": "gzip"}],
    });
    let mpath = dir.join("manifest.json");
    std::fs::write(&mpath, manifest.to_string()).unwrap();
    (mpath, file)
}
