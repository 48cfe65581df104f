//! Ways into a zone from the host carry nothing but the standard streams.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::*;
use crate::probe;

/// Hole 5: `zlogin` handed the caller's open descriptors into the zone: a
/// descriptor of the host's `/etc` opened before `zlogin` was usable
/// inside (`/proc/self/fd/N/shadow`). Now only 0, 1 and 2 cross.
#[test]
fn zlogin_carries_only_the_standard_streams_into_the_zone() {
    let Some(h) = TestHost::new() else { return };
    let Some(probes) = probe::build(&h) else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&probe::payload(&img, &probes, json!({})));
    let etc = std::fs::File::open("/etc").unwrap();
    let raw = etc.as_raw_fd();
    let mut cmd = Command::new(bin("zonevisor"));
    cmd.arg0("zlogin")
        .args([&uuid, "/probes/escape fd 7; /probes/escape fd 8; ls /proc/self/fd/7/ 2>&1 | head -3"])
        .env("ZONEVISOR_SOCKET", &h.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; `raw` stays open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            for target in [7, 8] {
                if libc::dup2(raw, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 leaves the copy without close-on-exec: as a careless caller would.
                libc::fcntl(target, libc::F_SETFD, 0);
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("fd 7: closed") && text.contains("fd 8: closed"), "a host descriptor crossed: {text}");
    assert!(!text.contains("passwd") && !text.contains("shadow"), "the host's /etc is listed: {text}");
    drop(etc);
}
