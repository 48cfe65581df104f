//! Images made from a zone (`imgadm create`) and served to other hosts:
//! what root in the zone leaves in its root for the daemon to read.

use std::io::Read;
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::probe::zsh;

/// A zone's planted links, FIFO and terabyte sparse file: the image holds
/// the links as links (no host file's contents), the FIFO as a FIFO (the
/// daemon does not block reading it), the sparse file as its data only.
#[test]
fn an_image_of_a_hostile_zone_reads_nothing_of_the_host_and_cannot_be_inflated() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({"brand": "lx", "image_uuid": img}));
    h.wait_state(&uuid, "running", Duration::from_secs(30));
    let out = zsh(
        &h,
        &uuid,
        "ln -s /etc/shadow /leak-shadow && ln -s ../../../../../../etc/passwd /leak-passwd && \
         mkfifo /fifo && truncate -s 1099511627776 /huge && echo planted",
    );
    assert!(out.contains("planted"), "{out}");
    h.vmadm(&["stop", &uuid]).ok();
    h.wait_state(&uuid, "stopped", Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let r = h.imgadm(&["create", "-o", dir.path().to_str().unwrap(), &uuid, "name=hostile", "version=1"]);
    r.ok();
    let file = dir.path().join("hostile-1.tar");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len < 64 << 20, "a 1 TiB sparse file is not written out: {len} bytes");
    let host_shadow = std::fs::read("/etc/shadow").unwrap_or_default();
    let mut a = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let mut seen = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        // The sparse member reads as a terabyte: only small ones are read.
        if e.size() < 1 << 20 {
            e.read_to_end(&mut data).ok();
        }
        match name.as_str() {
            "leak-shadow" | "leak-passwd" => {
                assert_eq!(kind, tar::EntryType::Symlink, "{name} stays a link");
                assert!(data.is_empty());
            }
            "fifo" => assert_eq!(kind, tar::EntryType::Fifo),
            "huge" => assert_eq!(kind, tar::EntryType::GNUSparse),
            _ => {}
        }
        if !host_shadow.is_empty() && data.len() >= host_shadow.len() && data.len() < 1 << 20 {
            assert!(!data.windows(host_shadow.len()).any(|w| w == host_shadow), "{name} holds the host's shadow");
        }
        seen.push(name);
    }
    for want in ["leak-shadow", "leak-passwd", "fifo", "huge"] {
        assert!(seen.iter().any(|n| n == want), "{want} in {seen:?}");
    }
}
