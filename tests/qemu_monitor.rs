//! The monitor running QEMU VMs, on the real kernel (root and
//! `qemu-system-x86_64` needed; without them the tests skip, or fail in CI).
//!
//! The guests are SeaBIOS with a one-sector disk, so that no fixture is
//! needed: its console is the first serial port (`etc/sercon-port`), and
//! the boot sectors below power the machine off through the ACPI
//! registers of QEMU's PIIX4 (SeaBIOS puts them at 0x600), at once or
//! when the power button is pressed, or end QEMU with `isa-debug-exit`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zonevisor_zone::cgroup;
use zonevisor_zone::control::{self, ControlError, MonitorClient, Request};
use zonevisor_zone::{launch_qemu, ExitReason, ExitRecord, Jail, JailBind, Launched, Limits, QemuSpec};

/// Powers off at once: `outw(0x604, 0x2000)` (PM1a_CNT: SLP_EN, S5).
const POWER_OFF: &[u8] = &[0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xF4, 0xEB, 0xFD];
/// Enables the power button event (PM1a_EN, 0x602), says `<armed>` on
/// the serial port, waits (`sti; hlt`) until PM1a_STS (0x600) shows the
/// button pressed, then powers off.
const POWER_BUTTON: &[u8] = &[
    0xBA, 0x02, 0x06, 0xB8, 0x00, 0x01, 0xEF, // mov dx,0x602; mov ax,0x100; out dx,ax
    0xBA, 0xF8, 0x03, // mov dx,0x3f8
    0xB0, b'<', 0xEE, 0xB0, b'a', 0xEE, 0xB0, b'r', 0xEE, 0xB0, b'm', 0xEE, // mov al,c; out dx,al (each)
    0xB0, b'e', 0xEE, 0xB0, b'd', 0xEE, 0xB0, b'>', 0xEE, 0xFB, // ...; sti
    0xF4, 0xBA, 0x00, 0x06, 0xED, 0xA9, 0x00, 0x01, 0x74, 0xF6, // wait: hlt; in ax,0x600; test 0x100; jz wait
    0xBA, 0x04, 0x06, 0xB8, 0x00, 0x20, 0xEF, 0xF4, 0xEB, 0xFD, // outw(0x604, 0x2000); hlt; jmp $-1
];
/// `outb(0xf4, 1)`: isa-debug-exit ends QEMU with status (1 << 1) | 1.
const DEBUG_EXIT: &[u8] = &[0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];

const QEMU: &str = "/usr/bin/qemu-system-x86_64";
const MEMORY: u64 = 512 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// One VM at a time: TCG takes a CPU each.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ready() -> bool {
    // SAFETY: geteuid has no preconditions.
    let why = if unsafe { libc::geteuid() } != 0 {
        "needs root"
    } else if !Path::new(QEMU).exists() {
        "needs qemu-system-x86_64 (qemu-system-x86)"
    } else {
        return true;
    };
    assert!(std::env::var_os("CI").is_none(), "QEMU monitor tests: {why} (CI is set)");
    eprintln!("SKIPPED: {why}");
    false
}

fn unique() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().to_owned()
}

fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

#[track_caller]
fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_field(pid: i32, key: &str) -> String {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix(key)).unwrap_or("").trim().to_owned()
}

struct Vm {
    dir: tempfile::TempDir,
    spec: QemuSpec,
    launched: Option<Launched>,
}

impl Vm {
    /// A VM booting `boot` (a boot sector) or nothing, with `extra` arguments.
    fn new(boot: Option<&[u8]>, extra: &[&str]) -> Vm {
        let dir = tempfile::Builder::new().prefix("zv-qemu-").tempdir().unwrap();
        let id = 3_500_000 + (std::process::id() % 1000) * 64;
        let jail = dir.path().join("jail");
        fs::create_dir(&jail).unwrap();
        fs::write(jail.join("sercon"), 0x3f8u16.to_le_bytes()).unwrap();
        let mut argv: Vec<String> = [
            "-machine",
            "pc,accel=tcg",
            "-m",
            "32",
            "-nodefaults",
            "-display",
            "none",
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-fw_cfg",
            "name=etc/sercon-port,file=/vm/sercon",
            "-qmp",
            "unix:/vm/qmp.sock,server=on,wait=off",
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(code) = boot {
            let mut sector = code.to_vec();
            sector.resize(510, 0);
            sector.extend_from_slice(&[0x55, 0xAA]);
            fs::write(jail.join("boot.img"), sector).unwrap();
            argv.extend(["-drive".into(), "file=/vm/boot.img,format=raw,if=ide".into()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        for entry in fs::read_dir(&jail).unwrap().flatten() {
            std::os::unix::fs::chown(entry.path(), Some(id), Some(id)).unwrap();
        }
        std::os::unix::fs::chown(&jail, Some(id), Some(id)).unwrap();
        let spec = QemuSpec {
            uuid: unique(),
            run_dir: dir.path().join("run"),
            cgroup: format!("zonevisor-test-{}/vm", unique()),
            limits: Limits { memory_bytes: Some(MEMORY), pids: Some(256), ..Limits::default() },
            qemu: QEMU.into(),
            argv,
            qmp: jail.join("qmp.sock"),
            jail: Jail {
                uid: id,
                gid: id,
                binds: vec![JailBind { source: jail, target: "/vm".into(), writable: true }],
                devices: Vec::new(),
            },
            nics: Vec::new(),
            metadata: None,
            metadata_socket: None,
        };
        Vm { dir, spec, launched: None }
    }

    fn launch(&mut self) -> Launched {
        let l = launch_qemu(&monitor_exe(), &self.spec).unwrap_or_else(|e| panic!("launch: {e}\n{}", self.logs()));
        self.launched = Some(l);
        l
    }

    fn client(&self) -> MonitorClient {
        MonitorClient::new(&self.spec.run_dir)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.spec.run_dir.join(name)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!("monitor.log:\n{}\nqemu.log:\n{}", self.read("monitor.log"), self.read("qemu.log"))
    }

    fn exit_record(&self) -> ExitRecord {
        let run = &self.spec.run_dir;
        wait_for("exit.json", Duration::from_secs(30), || control::read_exit(run).is_some());
        control::read_exit(run).unwrap()
    }

    /// Asserts the VM is entirely gone: monitor, QEMU, cgroup, sockets, pid file.
    fn assert_gone(&self) {
        if let Some(l) = self.launched {
            wait_for("the monitor to exit", Duration::from_secs(20), || !alive(l.monitor_pid));
        }
        for d in cgroup::dirs(&self.spec.cgroup).unwrap() {
            assert!(!d.exists(), "{} still exists", d.display());
        }
        for f in ["monitor.sock", "monitor.pid"] {
            assert!(!self.spec.run_dir.join(f).exists(), "{f} left behind");
        }
        assert!(!self.spec.qmp.exists(), "the QMP socket is left behind");
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(l) = self.launched {
            if alive(l.monitor_pid) {
                let _ = self.client().stop(true, Some(5));
                if alive(l.monitor_pid) {
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(l.monitor_pid, libc::SIGKILL) };
                }
            }
        }
        cgroup::destroy(&self.spec.cgroup);
        for d in cgroup::dirs(&self.spec.cgroup).unwrap_or_default() {
            let _ = d.parent().map(fs::remove_dir);
        }
    }
}

fn monitor_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zonevisor-monitor"))
}

#[test]
fn a_jailed_qemu_answers_qmp_resets_and_stops_after_its_grace_period() {
    let _g = serial();
    if !ready() {
        return;
    }
    let mut vm = Vm::new(None, &["-device", "VGA"]);
    let l = vm.launch();
    let st = vm.client().status().unwrap();
    assert_eq!((st.monitor_pid, st.init_pid), (l.monitor_pid, l.init_pid), "init_pid is QEMU's");
    let qemu = l.init_pid;
    assert_eq!(fs::read_link(format!("/proc/{qemu}/exe")).unwrap(), Path::new(QEMU));

    // Jailed: the jail's ids and nothing else, no capabilities, no way up, QEMU's own filter.
    let id = vm.spec.jail.uid.to_string();
    assert_eq!(status_field(qemu, "Uid:").split_whitespace().collect::<Vec<_>>(), [id.as_str(); 4]);
    assert_eq!(status_field(qemu, "Gid:").split_whitespace().collect::<Vec<_>>(), [id.as_str(); 4]);
    assert_eq!(status_field(qemu, "Groups:"), "");
    for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(status_field(qemu, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(status_field(qemu, "NoNewPrivs:"), "1");
    assert_eq!(status_field(qemu, "Seccomp:"), "2", "QEMU's -sandbox filter");
    // Its own mount namespace, whose read-only root shows only what it needs.
    let ns = |pid: String| fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_ne!(ns(qemu.to_string()), ns("self".into()));
    let root = PathBuf::from(format!("/proc/{qemu}/root"));
    let mut names: Vec<String> =
        fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for want in ["dev", "usr", "vm"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    for name in &names {
        assert!(
            ["bin", "dev", "lib", "lib32", "lib64", "libx32", "sbin", "usr", "vm"].contains(&name.as_str()),
            "{name} in {names:?}"
        );
    }
    assert!(!root.join("etc/shadow").exists() && !root.join("var").exists() && !root.join("proc").exists());
    assert!(root.join("usr/bin/qemu-system-x86_64").exists() && root.join("dev/urandom").exists());
    assert!(root.join("vm/qmp.sock").exists());
    let dev: Vec<String> = fs::read_dir(root.join("dev"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dev.len(), 3, "{dev:?}");
    let mountinfo = fs::read_to_string(format!("/proc/{qemu}/mountinfo")).unwrap();
    let mount_opts = |point: &str| {
        mountinfo.lines().find(|l| l.split(' ').nth(4) == Some(point)).map(|l| l.split(' ').nth(5).unwrap().to_owned())
    };
    assert!(mount_opts("/").unwrap().starts_with("ro,"), "{mountinfo}");
    assert!(mount_opts("/usr").unwrap().starts_with("ro,"), "{mountinfo}");
    assert!(mount_opts("/vm").unwrap().starts_with("rw,"), "{mountinfo}");
    // In its cgroup, with its limits.
    assert!(cgroup::pids(&vm.spec.cgroup).unwrap().contains(&qemu));
    assert_eq!(cgroup::memory(&vm.spec.cgroup).unwrap().limit, Some(MEMORY));

    // QMP through the monitor.
    let status = vm.client().qmp("query-status", None).unwrap();
    assert_eq!(status["status"], "running", "{status}");
    let version = vm.client().qmp("query-version", None).unwrap();
    assert_eq!(version["qemu"]["major"], 7, "{version}");
    match vm.client().qmp("no-such-command", None) {
        Err(ControlError::Refused(m)) => assert!(m.contains("CommandNotFound"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(vm.client().set_tmpfs(1 << 20).is_err(), "a zone's request");
    // What vmadm info, sysrq and screenshot ask.
    for q in ["query-block", "query-blockstats", "query-cpus-fast", "query-pci", "query-vnc"] {
        vm.client().qmp(q, None).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    let chardevs = vm.client().qmp("query-chardev", None).unwrap();
    assert!(chardevs.as_array().unwrap().iter().any(|c| c["label"] == "console"), "{chardevs}");
    assert_eq!(vm.client().qmp("inject-nmi", None).unwrap(), serde_json::json!({}));
    let shot = serde_json::json!({"filename": "/vm/screen.ppm"});
    vm.client().qmp("screendump", Some(shot)).unwrap();
    let meta = fs::metadata(vm.dir.path().join("jail/screen.ppm")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (vm.spec.jail.uid, 0o600), "written by QEMU as the jail's uid");

    // The first serial port is the console.
    wait_for("SeaBIOS on the console", Duration::from_secs(30), || vm.read("console.log").contains("SeaBIOS"));
    // A forced reboot resets the machine in place.
    let before = vm.read("console.log").matches("SeaBIOS (version").count();
    let st = vm.client().reboot(true).unwrap();
    assert_eq!(st.init_pid, qemu, "QEMU keeps running");
    wait_for("SeaBIOS again after the reset", Duration::from_secs(30), || {
        vm.read("console.log").matches("SeaBIOS (version").count() > before
    });
    assert!(vm.read("monitor.log").contains("RESET"), "{}", vm.logs());

    // SeaBIOS ignores the power button: after the grace period, quit.
    let t = Instant::now();
    let rec = vm.client().stop(false, Some(2)).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(2), "stopped after {:?}", t.elapsed());
    assert_eq!((rec.reason, rec.code, rec.signal), (ExitReason::Stopped, Some(0), None), "{rec:?}");
    assert_eq!(rec.message, "stopped on request (QEMU quit on request)", "{}", vm.logs());
    assert!(vm.read("monitor.log").contains("POWERDOWN"), "the button was pressed: {}", vm.logs());
    assert!(!alive(qemu));
    vm.assert_gone();
    assert_eq!(control::read_exit(&vm.spec.run_dir), Some(rec));
}

#[test]
fn a_qemu_that_fails_to_start_leaves_nothing_and_says_why() {
    let _g = serial();
    if !ready() {
        return;
    }
    let vm = Vm::new(None, &["-bogus"]);
    let err = launch_qemu(&monitor_exe(), &vm.spec).unwrap_err();
    assert_eq!(err.step, "start QEMU", "{err}");
    assert!(
        err.message.contains("QEMU exited with status 1") && err.message.contains("-bogus: invalid option"),
        "{err}"
    );
    for d in cgroup::dirs(&vm.spec.cgroup).unwrap() {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    for f in ["monitor.sock", "monitor.pid", "spec.json", "exit.json"] {
        assert!(!vm.spec.run_dir.join(f).exists(), "{f} left behind");
    }
    assert!(!vm.spec.qmp.exists());
    assert!(control::live_monitor_pid(&vm.spec.run_dir).is_none());
    assert!(vm.read("qemu.log").contains("invalid option"), "QEMU's stderr is kept in qemu.log");

    // What the monitor cannot jail is refused before it starts.
    let mut bad = Vm::new(None, &[]);
    bad.spec.jail.uid = 0;
    assert_eq!(launch_qemu(&monitor_exe(), &bad.spec).unwrap_err().step, "check spec");
    bad.spec.jail.uid = 3_999_999;
    let sandbox = bad.spec.argv.iter().position(|a| a == "-sandbox").unwrap();
    bad.spec.argv.drain(sandbox..sandbox + 2);
    let err = launch_qemu(&monitor_exe(), &bad.spec).unwrap_err();
    assert!(err.message.contains("-sandbox on"), "{err}");
    bad.spec.argv.extend(["-sandbox".into(), "on".into()]);
    bad.spec.jail.devices = vec!["/etc/passwd".into()];
    assert_eq!(launch_qemu(&monitor_exe(), &bad.spec).unwrap_err().step, "check spec");
    bad.spec.jail.devices = vec!["/dev/shm".into()];
    let err = launch_qemu(&monitor_exe(), &bad.spec).unwrap_err();
    assert!(err.message.contains("not a device node"), "{err}");
    assert!(cgroup::dirs(&bad.spec.cgroup).unwrap().iter().all(|d| !d.exists()));
}

#[test]
fn a_guest_that_powers_off_leaves_the_vm_stopped_with_the_reason() {
    let _g = serial();
    if !ready() {
        return;
    }
    // Paused until the monitor has it (-S): it powers off as soon as it runs.
    let mut vm = Vm::new(Some(POWER_OFF), &["-S"]);
    let l = vm.launch();
    assert_eq!(vm.client().qmp("query-status", None).unwrap()["status"], "prelaunch");
    vm.client().qmp("cont", None).unwrap();
    let rec = vm.exit_record();
    assert_eq!((rec.reason, rec.code, rec.signal), (ExitReason::Halted, Some(0), None), "{rec:?}\n{}", vm.logs());
    assert_eq!(rec.message, "the guest powered off");
    assert!(!alive(l.init_pid));
    vm.assert_gone();
}

#[test]
fn the_power_button_stops_and_reboots_a_guest_that_honours_it() {
    let _g = serial();
    if !ready() {
        return;
    }
    let mut vm = Vm::new(Some(POWER_BUTTON), &[]);
    let l = vm.launch();
    let mut console = vm.client().attach_console().unwrap();
    console.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut seen = Vec::new();
    let mut read_until = |n: usize| {
        wait_for("the guest on the attached console", Duration::from_secs(30), || {
            let mut buf = [0u8; 4096];
            if let Ok(k) = console.read(&mut buf) {
                seen.extend_from_slice(&buf[..k]);
            }
            String::from_utf8_lossy(&seen).matches("<armed>").count() >= n
        })
    };
    read_until(1);
    // A graceful reboot: the button, the guest's power-off, a new QEMU on the same console.
    let req = Request::Reboot { force: false, timeout_secs: Some(30) };
    let t = Instant::now();
    let reply = vm.client().request(&req, Duration::from_secs(60)).unwrap();
    let st = reply.status.unwrap();
    assert!(t.elapsed() < Duration::from_secs(25), "the guest powered off before the grace period ended");
    assert_ne!(st.init_pid, l.init_pid, "a new QEMU");
    assert!(!alive(l.init_pid) && alive(st.init_pid));
    assert!(vm.read("monitor.log").contains("the guest powered off"), "{}", vm.logs());
    read_until(2);
    // A graceful stop: the guest powers off on the button.
    let rec = vm.client().stop(false, Some(30)).unwrap();
    assert_eq!((rec.reason, rec.code), (ExitReason::Stopped, Some(0)), "{rec:?}");
    assert_eq!(rec.message, "stopped on request (the guest powered off)");
    vm.assert_gone();
}

#[test]
fn how_qemu_ended_is_recorded() {
    let _g = serial();
    if !ready() {
        return;
    }
    // Killed by a signal.
    let mut vm = Vm::new(None, &[]);
    let l = vm.launch();
    vm.client().kill(libc::SIGKILL).unwrap();
    let rec = vm.exit_record();
    assert_eq!((rec.reason, rec.signal, rec.code), (ExitReason::Signaled, Some(libc::SIGKILL), None), "{rec:?}");
    assert_eq!(rec.message, "QEMU was killed by signal 9");
    assert!(!alive(l.init_pid));
    vm.assert_gone();

    // Failing: its status and its stderr's last lines.
    let mut vm = Vm::new(Some(DEBUG_EXIT), &["-S", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    vm.launch();
    vm.client().qmp("cont", None).unwrap();
    let rec = vm.exit_record();
    assert_eq!((rec.reason, rec.code), (ExitReason::Exited, Some(3)), "{rec:?}");
    assert!(rec.message.starts_with("QEMU exited with status 3: "), "{rec:?}");
    vm.assert_gone();

    // SIGTERM to the monitor: a graceful stop (SeaBIOS ignores the button,
    // so the default grace period would be long: a forced stop follows).
    let mut vm = Vm::new(None, &[]);
    let l = vm.launch();
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(l.monitor_pid, libc::SIGTERM) };
    wait_for("the power button", Duration::from_secs(20), || vm.read("monitor.log").contains("POWERDOWN"));
    let rec = vm.client().stop(true, None).unwrap();
    assert_eq!(rec.reason, ExitReason::Stopped, "{rec:?}");
    vm.assert_gone();
    let meta = fs::metadata(vm.dir.path().join("jail")).unwrap();
    assert_eq!(meta.uid(), vm.spec.jail.uid, "the jail's directory is left as it was");
}
