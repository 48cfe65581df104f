//! Hardware VMs (brands kvm and bhyve) end to end: each test has its own
//! daemon and pool, and boots real guests under QEMU (TCG on hosts whose
//! KVM cannot run them). The guests are `fixtures/build-vm-images`'
//! (Debian's kernel and a small agent as init), which report on their
//! first serial port: `zonevisor-guest: up boot=<bios|uefi|direct>`, a
//! `disk <name> <bytes>` line per disk, `counter <n>` from the first blank
//! data disk (n+1 written back, so writes that survive show as a count
//! going up), `ready`, and `poweroff` on the ACPI power button.

mod common;

use std::time::Duration;

use common::{vm_images, TestHost};
use serde_json::{json, Value};

/// A guest's boot under TCG on a busy 2-core host: seconds, rarely more.
const BOOT: Duration = Duration::from_secs(180);
const READY: &str = "zonevisor-guest: ready";

fn host() -> Option<TestHost> {
    let host = TestHost::new()?;
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        return common::skip("qemu-system-x86 is not installed (scripts/test installs it)");
    }
    Some(host)
}

/// A kvm VM booting the fixture's kernel directly, with a blank 16 MiB
/// virtio disk (the guest's counter disk).
fn direct_boot(alias: &str) -> Value {
    let f = vm_images();
    json!({
        "brand": "kvm", "alias": alias, "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd,
        "boot_args": "console=ttyS0 quiet zv.boot=direct",
        "disks": [{"size": 16, "model": "virtio"}],
    })
}

fn qemu_pid(host: &TestHost, uuid: &str) -> i64 {
    host.get(uuid)["pid"].as_i64().unwrap_or_else(|| panic!("{uuid} has no pid: {}", host.get(uuid)))
}

/// The lines of the console's last boot (after its last `up`).
fn last_boot(console: &str) -> &str {
    console.rfind("zonevisor-guest: up").map_or(console, |i| &console[i..])
}

#[test]
fn a_vm_boots_directly_and_its_disk_keeps_what_it_wrote_across_stop_start_and_reboot() {
    let Some(host) = host() else { return };
    let uuid = host.create_ok(&direct_boot("direct"));
    let console = host.wait_console(&uuid, READY, 1, BOOT);
    let boot = last_boot(&console);
    assert!(boot.contains("zonevisor-guest: up boot=direct"), "{boot}");
    assert!(boot.contains("zonevisor-guest: disk vda 16777216"), "the 16 MiB virtio disk:\n{boot}");
    assert!(boot.contains("zonevisor-guest: counter 0"), "{boot}");
    let vm = host.get(&uuid);
    assert_eq!((vm["state"].as_str(), vm["brand"].as_str()), (Some("running"), Some("kvm")));
    let disk = vm["disks"][0]["path"].as_str().unwrap().to_string();
    assert!(disk.starts_with(host.pool().to_str().unwrap()), "the disk is a volume in the pool: {disk}");

    // vmadm info: QEMU's answers and the accelerator.
    let info = host.vmadm(&["info", &uuid]).json();
    assert_eq!(info["status"]["status"], "running", "{info}");
    assert!(info["block"].as_array().is_some_and(|b| !b.is_empty()), "{info}");
    assert!(matches!(info["accelerator"]["name"].as_str(), Some("kvm" | "tcg")), "{info}");
    assert!(info["memory"]["current_bytes"].as_u64().unwrap() > 0, "the cgroup's figures too: {info}");
    let vnc = host.vmadm(&["info", &uuid, "vnc"]).json();
    assert_eq!(vnc.as_object().unwrap().keys().collect::<Vec<_>>(), ["vnc"], "{vnc}");

    // stop: the ACPI power button, which the guest obeys.
    host.vmadm(&["stop", &uuid]).ok();
    let vm = host.get(&uuid);
    assert_eq!(vm["state"], "stopped");
    assert!(host.console(&uuid).contains("zonevisor-guest: poweroff"), "a graceful stop:\n{}", host.console(&uuid));
    assert_eq!(vm["autoboot"], false, "stop clears autoboot");

    host.vmadm(&["start", &uuid]).ok();
    let console = host.wait_console(&uuid, READY, 2, BOOT);
    assert!(last_boot(&console).contains("zonevisor-guest: counter 1"), "the write survived:\n{console}");

    // reboot: the guest shuts down and QEMU starts again, same console.
    let pid = qemu_pid(&host, &uuid);
    host.vmadm(&["reboot", &uuid]).ok();
    let console = host.wait_console(&uuid, READY, 3, BOOT);
    assert!(last_boot(&console).contains("zonevisor-guest: counter 2"), "{console}");
    assert_ne!(qemu_pid(&host, &uuid), pid, "a new QEMU after the reboot");
    assert_eq!(host.get(&uuid)["state"], "running");

    // kill: QEMU gets the signal; the VM is stopped with the reason.
    host.vmadm(&["kill", "-s", "KILL", &uuid]).ok();
    let vm = host.wait_state(&uuid, "stopped", Duration::from_secs(30));
    assert_eq!(vm["exit_status"], -9, "{vm}");
    assert!(vm["exit_reason"].as_str().unwrap().contains("signal 9"), "{vm}");

    // delete: nothing of it is left.
    host.vmadm(&["delete", &uuid]).ok();
    assert!(!host.pool().join(&uuid).exists(), "the dataset is gone");
    assert!(!host.root.join("run/zones").join(&uuid).exists(), "the run directory is gone");
    assert!(common::pids_mentioning(&uuid).is_empty(), "no QEMU or monitor is left");
}

#[test]
fn a_vm_boots_a_zvol_image_through_its_bootloader_with_bios_and_with_uefi() {
    let Some(host) = host() else { return };
    let f = vm_images();
    host.imgadm(&["install", "-m", f.zvol_manifest.to_str().unwrap(), "-f", f.zvol_file.to_str().unwrap()]).ok();
    let listed = host.imgadm(&["list", "-j"]).json();
    assert!(listed.to_string().contains("\"zvol\""), "{listed}");
    // kvm boots BIOS (SeaBIOS, SYSLINUX); bhyve UEFI (OVMF, systemd-boot).
    let disks = json!([{"image_uuid": f.zvol_uuid, "boot": true}, {"size": 8}]);
    let bios = host.create_ok(&json!({"brand": "kvm", "alias": "bios", "ram": 256, "disks": disks}));
    let uefi = host.create_ok(&json!({"brand": "bhyve", "alias": "uefi", "ram": 256, "disks": disks}));
    let console = host.wait_console(&bios, READY, 1, BOOT);
    assert!(console.contains("zonevisor-guest: up boot=bios"), "{console}");
    assert!(console.contains("zonevisor-guest: counter 0"), "the blank second disk:\n{console}");
    let console = host.wait_console(&uefi, READY, 1, BOOT);
    assert!(console.contains("zonevisor-guest: up boot=uefi"), "{console}");
    // The clone is the VM's: the image is untouched, and in use.
    let refused = host.imgadm(&["delete", &f.zvol_uuid]);
    assert_ne!(refused.code, 0, "an image in use is kept");
    assert!(refused.stderr.contains(&bios) && refused.stderr.contains(&uefi), "{}", refused.stderr);
    // Listed together with their types.
    let list = host.vmadm(&["list", "-Ho", "alias,type"]).ok().to_string();
    assert!(list.contains("bios") && list.contains("KVM") && list.contains("BHYVE"), "{list}");
    for uuid in [&bios, &uefi] {
        host.vmadm(&["delete", uuid]).ok();
    }
    host.imgadm(&["delete", &f.zvol_uuid]).ok();
}

#[test]
fn a_running_vm_outlives_a_daemon_killed_and_is_driven_again_after() {
    let Some(mut host) = host() else { return };
    let uuid = host.create_ok(&direct_boot("survivor"));
    host.wait_console(&uuid, READY, 1, BOOT);
    let pid = qemu_pid(&host, &uuid);
    host.kill_daemon();
    assert!(common::alive(pid), "QEMU outlives the daemon");
    host.start_daemon();
    let vm = host.get(&uuid);
    assert_eq!((vm["state"].as_str(), vm["pid"].as_i64()), (Some("running"), Some(pid)), "{vm}");
    // QMP through the monitor, as before.
    assert_eq!(host.vmadm(&["info", &uuid, "status"]).json()["status"]["status"], "running");
    host.vmadm(&["stop", &uuid, "-F"]).ok();
    assert_eq!(host.get(&uuid)["state"], "stopped");
    assert!(!common::alive(pid));
}

#[test]
fn a_zone_and_a_vm_run_side_by_side() {
    let Some(host) = host() else { return };
    let image = host.install(common::busybox());
    let zone =
        host.create_ok(&json!({"brand": "lx", "image_uuid": image, "alias": "zone", "max_physical_memory": 128}));
    let vm = host.create_ok(&direct_boot("vm"));
    host.wait_console(&vm, READY, 1, BOOT);
    let list = host.vmadm(&["list", "-Ho", "alias,type,state"]).ok().to_string();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines.iter().any(|l| l.starts_with("zone") && l.contains("LX") && l.contains("running")), "{list}");
    assert!(lines.iter().any(|l| l.starts_with("vm") && l.contains("KVM") && l.contains("running")), "{list}");
    let lookup = host.vmadm(&["lookup", "-j", "brand=kvm"]).json();
    assert_eq!(lookup.as_array().unwrap().len(), 1, "{lookup}");
    for uuid in [&zone, &vm] {
        host.vmadm(&["delete", uuid]).ok();
    }
}

#[test]
fn start_options_attach_a_disk_for_one_boot_and_sysrq_reaches_the_guest() {
    let Some(host) = host() else { return };
    let mut payload = direct_boot("options");
    payload["autoboot"] = json!(false);
    let uuid = host.create_ok(&payload);
    let zonepath = host.get(&uuid)["zonepath"].as_str().unwrap().to_string();
    let extra = std::path::Path::new(&zonepath).join("root/extra.img");
    std::fs::write(&extra, vec![0u8; 4 << 20]).unwrap();
    // A path through a symlink is refused, naming it.
    std::os::unix::fs::symlink("/etc/shadow", std::path::Path::new(&zonepath).join("root/evil.img")).unwrap();
    let refused = host.vmadm(&["start", &uuid, "disk=/evil.img,virtio"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("symlink"), "{}", refused.stderr);
    let refused = host.vmadm(&["start", &uuid, "disk=/../etc/passwd,virtio"]);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert_eq!(host.get(&uuid)["state"], "stopped");

    host.vmadm(&["start", &uuid, "disk=/extra.img,virtio"]).ok();
    let console = host.wait_console(&uuid, READY, 1, BOOT);
    assert!(console.contains(&format!("zonevisor-guest: disk vdb {}", 4 << 20)), "the attached disk:\n{console}");
    let done = host.vmadm(&["sysrq", &uuid, "screenshot"]);
    done.ok();
    let shot = std::fs::read(std::path::Path::new(&zonepath).join("root/tmp/vm.ppm")).expect("the screenshot");
    assert!(shot.starts_with(b"P6"), "a PPM picture");
    host.vmadm(&["sysrq", &uuid, "nmi"]).ok();
    // A zone takes neither.
    let image = host.install(common::busybox());
    let zone = host.create_ok(&json!({"brand": "lx", "image_uuid": image}));
    let refused = host.vmadm(&["sysrq", &zone, "nmi"]);
    assert!(refused.stderr.contains("hardware VMs"), "{}", refused.stderr);
    host.vmadm(&["stop", &zone]).ok();
    let refused = host.vmadm(&["start", &zone, "order=cd"]);
    assert!(refused.stderr.contains("hardware VMs"), "{}", refused.stderr);
    // The next boot is without the extra disk.
    host.vmadm(&["stop", &uuid, "-F"]).ok();
    host.vmadm(&["start", &uuid]).ok();
    let console = host.wait_console(&uuid, READY, 2, BOOT);
    assert!(!last_boot(&console).contains("disk vdb"), "{console}");
}

#[test]
fn disks_grow_with_update_disks_and_new_ones_are_added_and_removed() {
    let Some(host) = host() else { return };
    let f = vm_images();
    let uuid = host.create_ok(&json!({
        "brand": "bhyve", "bootrom": "bios", "alias": "grow", "ram": 256, "autoboot": false,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd, "boot_args": "console=ttyS0 quiet zv.boot=direct",
        "disks": [{"size": 16}],
    }));
    let path = host.get(&uuid)["disks"][0]["path"].as_str().unwrap().to_string();
    let update = |payload: Value| host.cli("vmadm", &["update", &uuid], Some(&payload.to_string()));
    update(json!({"update_disks": [{"path": path, "size": 32}]})).ok();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 32 << 20);
    let shrink = update(json!({"update_disks": [{"path": path, "size": 8}]}));
    assert_ne!(shrink.code, 0);
    assert!(shrink.stderr.contains("dangerous_allow_shrink"), "{}", shrink.stderr);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 32 << 20, "a refused shrink changes nothing");
    update(json!({"add_disks": [{"size": 8}]})).ok();
    host.vmadm(&["start", &uuid]).ok();
    let console = host.wait_console(&uuid, READY, 1, BOOT);
    assert!(console.contains(&format!("zonevisor-guest: disk vda {}", 32 << 20)), "{console}");
    assert!(console.contains(&format!("zonevisor-guest: disk vdb {}", 8 << 20)), "{console}");
    host.vmadm(&["stop", &uuid, "-F"]).ok();
    let added = host.get(&uuid)["disks"][1]["path"].as_str().unwrap().to_string();
    update(json!({"remove_disks": [added]})).ok();
    assert!(!std::path::Path::new(&added).exists(), "the removed disk's volume is gone");
    host.vmadm(&["delete", &uuid]).ok();
}

#[test]
fn bad_vm_payloads_are_refused_by_property_and_leave_nothing() {
    let Some(host) = host() else { return };
    let image = host.install(common::busybox());
    let f = vm_images();
    host.imgadm(&["install", "-m", f.zvol_manifest.to_str().unwrap(), "-f", f.zvol_file.to_str().unwrap()]).ok();
    let zvol = f.zvol_uuid.clone();
    // A port in use where the daemon (and its QEMUs) listen: its network
    // namespace, the test's own.
    let busy_port = 5990 + (std::process::id() % 1000) as i64;
    let mut listener = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", host.netns))
        .args(["python3", "-c"])
        .arg(format!("import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{busy_port})); s.listen(); print('up', flush=True); time.sleep(600)"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(listener.stdout.as_mut().unwrap()), &mut up).unwrap();
    assert_eq!(up.trim(), "up", "the listener holds port {busy_port}");
    let base = direct_boot("bad");
    let with = |extra: Value| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (with(json!({"ram": 64 << 20})), "ram", "more than this host has"),
        (with(json!({"vcpus": 64})), "vcpus", "CPUs"),
        (with(json!({"disks": [{"size": 8, "boot": true}, {"size": 8, "boot": true}]})), "disks.1.boot", "only one"),
        (with(json!({"disks": [{"media": "cdrom", "path": "/nonexistent.iso"}]})), "disks.0.path", "does not exist"),
        (with(json!({"disks": [{"image_uuid": image, "image_size": 64}]})), "disks.0.image_uuid", "zvol"),
        (with(json!({"disks": [{"image_uuid": zvol, "size": 8}]})), "disks.0.size", "below the size of image"),
        (with(json!({"vnc_port": busy_port})), "vnc_port", "in use"),
        (with(json!({"boot_kernel": "/nonexistent/vmlinuz"})), "boot_kernel", "does not exist"),
        (with(json!({"vnc_listen": "198.51.100.77"})), "vnc_listen", "not an address of this host"),
        (with(json!({"qemu_extra_opts": "-device 'unterminated"})), "qemu_extra_opts", "quot"),
    ];
    for (payload, property, why) in cases {
        let r = host.create(&payload);
        assert_ne!(r.code, 0, "{property}: {payload} was accepted");
        assert!(r.stderr.contains(property) && r.stderr.contains(why), "{property} / {why}: {}", r.stderr);
    }
    // QEMU itself refusing an option: its stderr is in the error, and
    // nothing is left of the VM.
    let r = host.create(&with(json!({"qemu_extra_opts": "-bogus-option"})));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("-bogus-option"), "QEMU's own words: {}", r.stderr);
    assert_eq!(host.vmadm(&["list", "-H"]).ok().trim(), "", "no row is left");
    let datasets: Vec<_> = std::fs::read_dir(host.pool()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(datasets.len(), 3, "only config/ and the two images are in the pool: {datasets:?}");
    let run = host.root.join("run/zones");
    assert!(std::fs::read_dir(&run).map_or(true, |mut d| d.next().is_none()), "no run directory is left");
    let run_dir = run.display().to_string();
    let monitors: Vec<i64> = common::pids_mentioning(&run_dir);
    assert!(monitors.is_empty(), "no monitor (nor its QEMU) is left: {monitors:?}");
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn after_a_host_reboot_an_autoboot_vm_boots_again_with_its_disk() {
    let Some(mut host) = host() else { return };
    let uuid = host.create_ok(&direct_boot("autoboot"));
    let console = host.wait_console(&uuid, READY, 1, BOOT);
    assert!(console.contains("zonevisor-guest: counter 0"), "{console}");
    let pid = qemu_pid(&host, &uuid);
    common::power_cut(&mut host, &[pid]);
    common::next_boot(&host);
    host.start_daemon();
    let vm = host.wait_state(&uuid, "running", Duration::from_secs(60));
    assert_ne!(vm["pid"].as_i64(), Some(pid), "a new QEMU");
    let console = host.wait_console(&uuid, READY, 2, BOOT);
    assert!(last_boot(&console).contains("zonevisor-guest: counter 1"), "the disk kept its write:\n{console}");
    host.vmadm(&["delete", &uuid]).ok();
}
