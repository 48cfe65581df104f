//! The metadata service end to end: a real daemon, zones, the guest tools
//! (`mdata-get`, `mdata-put`, `mdata-list`, `mdata-delete`, static, from
//! `/native`), the boot-time `user-script` and `root_authorized_keys`, and
//! what a guest that speaks the protocol badly can do to the service
//! (`tests/probes/mdata.c`).

mod common;

#[path = "escape/probe.rs"]
#[allow(dead_code)]
mod probe;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const SOCK: &str = "/native/.zonecontrol/metadata.sock";

/// A host whose daemon gives zones the static guest tools.
fn host() -> Option<TestHost> {
    TestHost::with_tools()
}

fn zexec(h: &TestHost, uuid: &str, cmd: &str) -> Run {
    h.cli("zlogin", &[uuid, cmd], None)
}

fn metadata_zone(h: &TestHost, img: &str, more: Value) -> String {
    let mut p = json!({
        "brand": "lx", "alias": "md", "hostname": "mdhost", "image_uuid": img, "max_physical_memory": 128,
        "customer_metadata": {"foo": "bar", "multi": "line one\n.line two"},
        "internal_metadata": {"secret_pw": "hunter2", "ops:key": "internal"},
        "internal_metadata_namespaces": ["ops"],
        "tags": {"role": "web"},
    });
    for (k, v) in more.as_object().unwrap() {
        p[k] = v.clone();
    }
    h.create_ok(&p)
}

#[test]
fn the_guest_tools_read_write_and_list_a_zones_metadata() {
    let Some(h) = host() else { return };
    let img = h.install(busybox());
    let z = metadata_zone(&h, &img, json!({}));
    // On the zone's PATH (linked from /usr/sbin), from a read-only /native.
    let r = zexec(&h, &z, "ls -l /usr/sbin/mdata-get; mdata-get foo");
    assert!(r.stdout.contains("-> /native/usr/sbin/mdata-get"), "{}", r.stdout);
    assert!(r.stdout.ends_with("bar\n"), "{} {}", r.stdout, r.stderr);
    // SmartOS's resolution: sdc:* from the instance, *_pw and namespaced
    // keys from internal_metadata, the rest from customer_metadata.
    for (key, want) in [
        ("sdc:uuid", z.as_str()),
        ("sdc:hostname", "mdhost"),
        ("sdc:alias", "md"),
        ("sdc:tags.role", "web"),
        ("secret_pw", "hunter2"),
        ("ops:key", "internal"),
        ("multi", "line one\n.line two"),
    ] {
        let r = zexec(&h, &z, &format!("mdata-get {key}"));
        assert_eq!((r.code, r.stdout.trim_end_matches('\n')), (0, want), "{key}: {}", r.stderr);
    }
    let nics = zexec(&h, &z, "mdata-get sdc:nics").ok().to_string();
    assert!(serde_json::from_str::<Value>(&nics).unwrap().is_array(), "{nics}");
    // Not found: exit 1; a usage error: exit 3.
    assert_eq!(zexec(&h, &z, "mdata-get nosuchkey").code, 1);
    assert_eq!(zexec(&h, &z, "mdata-get").code, 3);
    let keys: Vec<String> = zexec(&h, &z, "mdata-list").ok().lines().map(str::to_owned).collect();
    assert_eq!(keys, ["foo", "multi", "secret_pw", "ops:key"], "KEYS as SmartOS lists them");

    // A guest's PUT is stored at once: vmadm get shows it, and an event says so.
    let w = Watcher::start(&h, &z);
    zexec(&h, &z, "mdata-put baz qux && printf 'from stdin' | mdata-put piped").ok();
    let vm = h.get(&z);
    assert_eq!(vm["customer_metadata"]["baz"], "qux");
    assert_eq!(vm["customer_metadata"]["piped"], "from stdin");
    let ev = w.until(Duration::from_secs(10), |e| {
        e["changes"].as_array().is_some_and(|c| {
            c.iter().any(|c| c["prettyPath"] == "customer_metadata" && c["to"]["piped"] == "from stdin")
        })
    });
    assert!(!ev.is_empty());
    assert_eq!(zexec(&h, &z, "mdata-get baz").ok(), "qux\n");
    zexec(&h, &z, "mdata-delete baz").ok();
    assert!(h.get(&z)["customer_metadata"].get("baz").is_none());
    assert_eq!(zexec(&h, &z, "mdata-get baz").code, 1);
    // What the guest may not write: sdc:*, a namespace of internal_metadata.
    for (cmd, why) in
        [("mdata-put sdc:alias x", "sdc"), ("mdata-put ops:key x", "ops"), ("mdata-delete ops:key", "ops")]
    {
        let r = zexec(&h, &z, cmd);
        assert_eq!(r.code, 2, "{cmd}: {}", r.stdout);
        assert!(r.stderr.contains(why), "{cmd}: {}", r.stderr);
    }
    assert_eq!(h.get(&z)["internal_metadata"]["ops:key"], "internal");
    // A host-side update is what the guest reads next.
    let up = h.cli("vmadm", &["update", &z], Some(&json!({"set_customer_metadata": {"foo": "changed"}}).to_string()));
    up.ok();
    assert_eq!(zexec(&h, &z, "mdata-get foo").ok(), "changed\n");
    // Values past the service's limit are refused, naming it; nothing is stored.
    let r = zexec(&h, &z, "head -c 600000 /dev/zero | tr '\\0' a | mdata-put big; echo rc=$?");
    assert!(r.stdout.contains("rc=2"), "{} {}", r.stdout, r.stderr);
    assert!(h.get(&z)["customer_metadata"].get("big").is_none());
}

#[test]
fn user_script_and_root_authorized_keys_come_at_every_boot() {
    let Some(h) = host() else { return };
    let img = h.install(busybox());
    let script = "#!/bin/sh\necho ran as $(id -u) on $(hostname)\necho boot >> /var/boots\necho oops >&2\nexit 3\n";
    let z = metadata_zone(
        &h,
        &img,
        json!({"customer_metadata": {"user-script": script, "root_authorized_keys": "ssh-ed25519 AAAAC3Nz test@host"}}),
    );
    let log = h.root.join("run/zones").join(&z).join("user-script.log");
    let wait_for = |what: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches(what).count() >= n {
                return text;
            }
            assert!(Instant::now() < deadline, "{what} x{n} not in the log:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let text = wait_for("user-script exited 3", 1);
    assert!(text.contains("ran as 0 on mdhost\n") && text.contains("oops\n"), "{text}");
    let keys = zexec(&h, &z, "stat -c '%a %U' /root/.ssh /root/.ssh/authorized_keys; cat /root/.ssh/authorized_keys");
    assert_eq!(keys.ok(), "700 root\n600 root\nssh-ed25519 AAAAC3Nz test@host\n");
    // Every boot, with the script as it is then.
    // A script's own mdata-put is answered while the boot goes on (the
    // boot waits for nothing the script does).
    let up = json!({"set_customer_metadata": {"user-script": "echo second script\nmdata-put booted yes\n"}});
    h.cli("vmadm", &["update", &z], Some(&up.to_string())).ok();
    h.vmadm(&["reboot", &z]).ok();
    let text = wait_for("user-script exited 0", 1);
    assert!(text.contains("second script\n") && text.matches("== boot at").count() == 2, "{text}");
    assert!(!text.contains("Error putting"), "{text}");
    assert_eq!(h.get(&z)["customer_metadata"]["booted"], "yes");
    assert_eq!(zexec(&h, &z, "cat /var/boots").ok(), "boot\n", "the first script ran once, at the first boot");
    // An operator's script (SmartOS's sdc:operator-script) runs instead while it is set.
    let up = json!({"set_internal_metadata": {"operator-script": "#!/bin/sh\necho operator was here\n"}});
    h.cli("vmadm", &["update", &z], Some(&up.to_string())).ok();
    h.vmadm(&["reboot", &z]).ok();
    let text = wait_for("operator-script exited 0", 1);
    assert!(text.contains("operator was here\n"), "{text}");
    assert_eq!(text.matches("second script").count(), 1, "not the user-script as well: {text}");
    let up = json!({"remove_internal_metadata": ["operator-script"]});
    h.cli("vmadm", &["update", &z], Some(&up.to_string())).ok();
    // A zone cannot make the log grow without bound: past 1 MiB a boot's output is dropped.
    let flood = json!({"set_customer_metadata": {"user-script": "head -c 3000000 /dev/zero | tr '\\0' x\n"}});
    h.cli("vmadm", &["update", &z], Some(&flood.to_string())).ok();
    h.vmadm(&["reboot", &z]).ok();
    let text = wait_for("user-script exited 0", 2);
    assert!(text.contains("more bytes of output dropped"), "{}", &text[text.len().saturating_sub(200)..]);
    assert!(std::fs::metadata(&log).unwrap().len() < 3 << 20);
}

#[test]
fn bad_frames_stalls_and_floods_never_block_the_service() {
    let Some(h) = host() else { return };
    let Some(probes) = probe::build_named(&h, "mdata") else { return };
    let img = h.install(busybox());
    let z = h.create_ok(&probe::payload(&img, &probes, json!({"customer_metadata": {"foo": "bar"}})));
    let quick_get = |what: &str| {
        let t = Instant::now();
        let r = zexec(&h, &z, "mdata-get sdc:uuid");
        assert_eq!(r.stdout.trim(), z, "{what}: {}", r.stderr);
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: a GET took {:?}", t.elapsed());
    };
    // Garbage answered as SmartOS answers it: an empty line gets "invalid
    // command", an unknown V1 command (text or binary) FAILURE, a V2 frame
    // with a wrong CRC or length nothing, an unknown V2 command FAILURE
    // naming it; the connection goes on serving.
    let r = zexec(
        &h,
        &z,
        &format!(
            "/probes/mdata raw {SOCK} '\\n' 'hello\\n' 'V2 5 00000000 xxxxx\\n' '\\x00\\xff\\r\\n' 'NEGOTIATE V2\\n' \
             'V2 16 1edd5a5c dc4fae17 EXPLODE\\n' 'V2 17 00000000 dc4fae17 GET Zm9v\\n' 'V2 17 59093510 dc4fae17 GET Zm9v\\n'"
        ),
    );
    let out = r.ok().to_string();
    assert!(out.starts_with("invalid command\\nFAILURE\\nFAILURE\\nV2_OK\\n"), "{out}");
    assert!(out.contains("dc4fae17 FAILURE VW5rbm93biBjb21tYW5kIEVYUExPREU="), "Unknown command EXPLODE: {out}");
    assert!(out.trim_end().ends_with("dc4fae17 SUCCESS YmFy\\n"), "only the good GET answered, once: {out}");
    assert_eq!(out.matches("YmFy").count(), 1, "{out}");
    // Half a frame, then silence: the next client is served meanwhile.
    let mut stall = Command::new(bin("zonevisor"))
        .arg0("zlogin")
        .args([&z, &format!("/probes/mdata stall {SOCK} 20")])
        .env("ZONEVISOR_SOCKET", &h.socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    quick_get("with a stalled client");
    // More connections than a zone may hold: the oldest idle ones go.
    let mut hold = Command::new(bin("zonevisor"))
        .arg0("zlogin")
        .args([&z, &format!("/probes/mdata hold {SOCK} 40 20")])
        .env("ZONEVISOR_SOCKET", &h.socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    quick_get("with 40 connections held");
    // A flood of pipelined requests is cut off; others are served.
    let answered: usize = zexec(&h, &z, &format!("/probes/mdata flood {SOCK} 2000")).ok().trim().parse().unwrap();
    assert!(answered < 2000, "a flood of 2000 requests was all answered");
    quick_get("after a flood");
    // A line past the limit: no answer on that connection, and no harm.
    let out = zexec(&h, &z, &format!("/probes/mdata bigline {SOCK} 3000000")).ok().to_string();
    assert!(!out.contains(&z), "a line of 3 MB was read: {out}");
    quick_get("after an oversized line");
    let _ = (stall.kill(), hold.kill(), stall.wait(), hold.wait());
    // Only the zone's root reaches the socket, as in SmartOS.
    let r = zexec(
        &h,
        &z,
        &format!("su -s /bin/sh nobody -c '/probes/mdata raw {SOCK} NEGOTIATE; echo rc=$?' 2>&1; ls -ld /.zonecontrol {SOCK}"),
    );
    assert!(r.stdout.contains("drwx------") && r.stdout.contains("srw-------"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Permission denied") && r.stdout.contains("rc=1"),
        "nobody reached the socket: {}",
        r.stdout
    );
}

/// `vmadm events -j <uuid>` and its lines.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watcher {
    fn start(h: &TestHost, uuid: &str) -> Watcher {
        let mut child = Command::new(bin("zonevisor"))
            .arg0("vmadm")
            .args(["events", "-j", uuid])
            .env("ZONEVISOR_SOCKET", &h.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("vmadm events");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    fn until(&self, within: Duration, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| panic!("no such event ({e}): {out:#?}"));
            let v: Value = serde_json::from_str(&line).unwrap();
            let done = last(&v);
            out.push(v);
            if done {
                return out;
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An uncompressed newc cpio archive of `files` (path in the archive,
/// mode, contents): the kernel unpacks it after the archive it follows.
fn cpio(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |name: &str, mode: u32, data: &[u8], ino: u32| {
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in files.iter().enumerate() {
        entry(name, *mode, data, i as u32 + 1);
    }
    entry("TRAILER!!!", 0, &[], 0);
    out
}

#[test]
fn a_vm_reads_and_writes_its_metadata_over_its_second_serial_port() {
    let Some(h) = host() else { return };
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        assert!(!in_ci(), "CI installs qemu-system-x86");
        eprintln!("skipped: qemu-system-x86 is not installed");
        return;
    }
    let f = vm_images();
    // The fixture's initramfs, and after it the static guest tools.
    let mut initrd = std::fs::read(&f.initrd).unwrap();
    // The kernel reads an uncompressed archive only at a 4-byte boundary
    // (zeros before it are skipped).
    initrd.resize(initrd.len().next_multiple_of(512), 0);
    initrd.extend(cpio(&[("bin", 0o40755, b""), ("bin/mdata", 0o100755, &std::fs::read(static_mdata()).unwrap())]));
    let initrd_path = h.dir.path().join("initrd-mdata.img");
    std::fs::write(&initrd_path, initrd).unwrap();
    let vm = h.create_ok(&json!({
        "brand": "kvm", "alias": "mdvm", "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": initrd_path,
        "boot_args": "console=ttyS0 quiet zv.boot=direct zv.mdata=sdc:alias",
        "customer_metadata": {"foo": "bar"},
    }));
    let console = h.wait_console(&vm, "zonevisor-guest: ready", 1, Duration::from_secs(240));
    assert!(console.contains("zonevisor-guest: mdata sdc:alias rc=0 mdvm"), "{console}");
    assert!(console.contains("zonevisor-guest: mdata-put rc=0"), "{console}");
    assert_eq!(h.get(&vm)["customer_metadata"]["zv-guest"], "put-from-vm", "the guest's PUT was not stored");
    h.vmadm(&["delete", &vm]).ok();
}

#[test]
fn a_vm_that_asks_for_nocloud_gets_its_cidata_disk() {
    let Some(h) = host() else { return };
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        assert!(!in_ci(), "CI installs qemu-system-x86");
        eprintln!("skipped: qemu-system-x86 is not installed");
        return;
    }
    // (Building the VM fixtures installs mtools, which reads the seed below.)
    let f = vm_images();
    let vm = h.create_ok(&json!({
        "brand": "kvm", "alias": "ci", "hostname": "cihost", "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd,
        "boot_args": "console=ttyS0 quiet zv.boot=direct",
        "internal_metadata": {"cloudinit_datasource": "nocloud"},
        "customer_metadata": {"cloud-init:user-data": "#cloud-config\nruncmd: [echo hi]\n"},
        "nics": [{"ips": ["10.66.0.5/24"], "gateways": ["10.66.0.1"], "primary": true, "model": "virtio"}],
    }));
    // The guest sees the seed as one more disk (16 MiB, read-only).
    let console = h.wait_console(&vm, "zonevisor-guest: ready", 1, Duration::from_secs(240));
    assert!(
        console.lines().any(|l| l.trim_end().ends_with(" 16777216")),
        "no 16 MiB seed disk in the guest:\n{console}"
    );
    // What it holds, read as cloud-init would find it: label cidata, the files.
    let image = h.pool().join(&vm).join("cidata.img");
    let label = Command::new("blkid").args(["-p", "-o", "value", "-s", "LABEL"]).arg(&image).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "cidata");
    let mtype = |file: &str| {
        let out = Command::new("mtype").arg("-i").arg(&image).arg(format!("::{file}")).output().unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(mtype("user-data"), "#cloud-config\nruncmd: [echo hi]\n");
    let meta = mtype("meta-data");
    assert!(meta.contains(&vm) && meta.contains("cihost"), "{meta}");
    let net = mtype("network-config");
    assert!(net.contains("10.66.0.5/24") && net.contains("10.66.0.1"), "{net}");
    h.vmadm(&["delete", &vm]).ok();
    assert!(!image.exists(), "the seed outlived its VM");
}

/// What cloud-init's own SmartOS datasource (Debian's package, unchanged)
/// finds in the zone: the environment it detects, then the datasource's
/// `get_data()` and what it read.
const CLOUD_INIT_PROBE: &str = r#"
import json
from cloudinit import helpers
from cloudinit.sources import DataSourceSmartOS as ds
env = ds.get_smartos_environ()
src = ds.DataSourceSmartOS(sys_cfg={}, distro=None, paths=helpers.Paths({"cloud_dir": "/tmp/ci", "run_dir": "/tmp/cirun"}))
ok = src.get_data()
ud = src.userdata_raw
print(json.dumps({
    "env": env, "ok": ok,
    "instance_id": src.metadata.get("instance-id"),
    "hostname": src.metadata.get("local-hostname"),
    "keys": src.metadata.get("public-keys"),
    "user_data": ud.decode() if isinstance(ud, bytes) else ud,
}))
"#;

#[test]
fn cloud_inits_smartos_datasource_reads_a_zones_metadata() {
    let Some(h) = host() else { return };
    let img = h.install(debian_cloudinit());
    let z = h.create_ok(&json!({
        "brand": "lx", "alias": "ci", "hostname": "cloudy", "image_uuid": img, "max_physical_memory": 512,
        "customer_metadata": {
            "root_authorized_keys": "ssh-ed25519 AAAAC3Nz ci@test",
            "cloud-init:user-data": "#cloud-config\nruncmd: [touch /tmp/ran]\n",
        },
    }));
    let script = CLOUD_INIT_PROBE.replace('\'', "'\\''");
    let r = zexec(&h, &z, &format!("python3 -c '{script}'"));
    let line = r.stdout.lines().last().unwrap_or_default();
    let got: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {} {}", r.stdout, r.stderr));
    assert_eq!(got["env"], "lx-brand", "cloud-init did not see an lx zone (uname -v): {got}");
    assert_eq!(got["ok"], true, "{got} {}", r.stderr);
    assert_eq!(got["instance_id"], z.as_str());
    assert_eq!(got["hostname"], "cloudy");
    assert_eq!(got["keys"], "ssh-ed25519 AAAAC3Nz ci@test");
    assert_eq!(got["user_data"], "#cloud-config\nruncmd: [touch /tmp/ran]\n");
}

#[test]
fn cloud_inits_smartos_datasource_reads_a_vms_metadata_over_the_serial_port() {
    let Some(h) = host() else { return };
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        assert!(!in_ci(), "CI installs qemu-system-x86");
        eprintln!("skipped: qemu-system-x86 is not installed");
        return;
    }
    let kernel = &vm_images().vmlinuz;
    let vm = h.create_ok(&json!({
        "brand": "kvm", "alias": "civm", "hostname": "cloudvm", "ram": 1024, "vcpus": 1,
        "boot_kernel": kernel, "boot_initrd": vm_cloudinit_initrd(),
        "boot_args": "console=ttyS0 quiet",
        "customer_metadata": {
            "root_authorized_keys": "ssh-ed25519 AAAAC3Nz vm@test",
            "cloud-init:user-data": "#cloud-config\nhostname: from-user-data\n",
        },
    }));
    let console = h.wait_console(&vm, "zonevisor-guest: done", 1, Duration::from_secs(420));
    let line = console
        .lines()
        .find_map(|l| l.split_once("zonevisor-guest: cloud-init ").map(|(_, j)| j.trim().to_string()))
        .unwrap_or_else(|| panic!("no cloud-init line:\n{console}"));
    let got: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(got["env"], "kvm", "cloud-init did not see a SmartOS VM (SMBIOS): {got}");
    assert_eq!(got["ok"], true, "{console}");
    assert_eq!(got["instance_id"], vm.as_str());
    assert_eq!(got["hostname"], "cloudvm");
    assert_eq!(got["keys"], "ssh-ed25519 AAAAC3Nz vm@test");
    assert_eq!(got["user_data"], "#cloud-config\nhostname: from-user-data\n");
    h.vmadm(&["delete", &vm]).ok();
}
