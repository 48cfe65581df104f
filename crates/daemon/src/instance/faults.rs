//! The lifecycle under faults, on a fake host (no root): every step of
//! create, start, stop and delete, and of create-snapshot,
//! rollback-snapshot and delete-snapshot, fails once, and the daemon dies
//! once at every step. After the error, or after a new daemon's recovery,
//! nothing is left behind that no row accounts for, each row's state is
//! what the host shows, no VM is left paused, and a rollback's data and
//! the tags that roll back with it agree.

use std::sync::Arc;

use serde_json::{json, Value};
use zonevisor_api::InstanceUuid;

use super::fake::{FakeHost, Fault};
use crate::Daemon;

const IMAGE: &str = "2b9ae6b5-7a0c-4d3e-9c39-3e7d8c2f1a00";
const VM: &str = "7c3f9f2e-6a8b-4c1d-9e2f-0a1b2c3d4e5f";

/// The kinds of instance the tests run: a zone, and a VM (bhyve, whose
/// disks can grow) where this host has QEMU and OVMF (CI's does; elsewhere
/// the VM cases are skipped, saying so).
fn kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::Zone];
    if super::runs(zonevisor_spec::Brand::Bhyve) {
        kinds.push(Kind::Vm);
    } else {
        assert!(std::env::var_os("CI").is_none(), "CI hosts have QEMU: the VM cases must run");
        eprintln!("skipping the VM cases: QEMU or OVMF is not installed");
    }
    kinds
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Zone,
    Vm,
}

/// A daemon on a fake host, with its own tokio runtime.
struct Env {
    dir: tempfile::TempDir,
    host: FakeHost,
    kind: Kind,
    daemon: Option<(Arc<Daemon>, tokio::runtime::Runtime)>,
}

impl Env {
    fn new(kind: Kind) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        let mut env = Env { dir, host, kind, daemon: None };
        env.restart(false);
        let d = env.d();
        let manifest =
            json!({"v": 2, "uuid": IMAGE, "name": "busybox", "version": "1", "type": "lx-dataset", "os": "linux"});
        d.store.insert_image(IMAGE.parse().unwrap(), "ready", &manifest).unwrap();
        env
    }

    fn d(&self) -> Arc<Daemon> {
        self.daemon.as_ref().expect("a daemon runs").0.clone()
    }

    /// A new daemon on the same store and host, as after a crash; with
    /// `recover`, it runs start-up recovery.
    fn restart(&mut self, recover: bool) {
        if let Some((d, rt)) = self.daemon.take() {
            drop(d);
            rt.shutdown_background();
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let d = Daemon::for_tests(self.dir.path(), Box::new(self.host.clone()), rt.handle().clone());
        if recover {
            d.recover().unwrap();
        }
        self.daemon = Some((d, rt));
    }

    fn create(&self, autoboot: bool) -> Result<(), String> {
        let payload = match self.kind {
            Kind::Zone => json!({"uuid": VM, "brand": "lx", "image_uuid": IMAGE, "quota": 1, "autoboot": autoboot}),
            Kind::Vm => {
                json!({"uuid": VM, "brand": "bhyve", "bootrom": "bios", "ram": 64, "quota": 1, "autoboot": autoboot,
                               "disks": [{"size": 16, "boot": true}, {"size": 8}]})
            }
        };
        self.d().create_vm(&payload).map(drop).map_err(|e| e.message)
    }

    fn row(&self) -> Option<(String, Value)> {
        let row = self.d().store.get_vm(VM.parse::<InstanceUuid>().unwrap()).unwrap()?;
        Some((row.phase, row.vm.get("state").cloned().unwrap_or(Value::Null)))
    }

    fn run_dir(&self) -> std::path::PathBuf {
        self.d().run_dir(VM.parse().unwrap())
    }

    /// Nothing of the VM anywhere.
    fn assert_clean(&self, when: &str) {
        assert_eq!(self.row(), None, "{when}: row left");
        let st = self.host.state();
        assert!(st.datasets.is_empty(), "{when}: datasets left: {:?}", st.datasets);
        assert!(st.cgroups.is_empty(), "{when}: cgroups left: {:?}", st.cgroups);
        assert!(st.monitors.is_empty(), "{when}: monitors left: {:?}", st.monitors.keys());
        assert!(st.run_dirs.is_empty(), "{when}: run dirs left: {:?}", st.run_dirs);
        assert!(st.volumes.is_empty(), "{when}: volumes left: {:?}", st.volumes);
    }

    /// The row is ready with `state`, and the host agrees: a dataset, and a
    /// monitor and cgroup exactly when running.
    fn assert_state(&self, state: &str, when: &str) {
        assert_eq!(self.row(), Some(("ready".into(), json!(state))), "{when}: row");
        let running = state == "running";
        let run_dir = self.run_dir();
        let st = self.host.state();
        assert!(st.datasets.contains(VM), "{when}: the dataset is gone");
        assert_eq!(st.monitors.contains_key(&run_dir), running, "{when}: monitor");
        assert_eq!(!st.cgroups.is_empty(), running, "{when}: cgroups {:?}", st.cgroups);
        drop(st);
        assert_eq!(self.d().is_running(VM.parse().unwrap()), running, "{when}: the daemon's view");
    }

    /// The host steps `f` takes, fault-free, on a fresh environment.
    fn steps_of(kind: Kind, set_up: impl Fn(&Env), f: impl Fn(&Env) -> Result<(), String>) -> Vec<&'static str> {
        let env = Env::new(kind);
        set_up(&env);
        env.host.state().steps.clear();
        f(&env).expect("fault-free run");
        let steps = env.host.state().steps.clone();
        let mut seen = Vec::new();
        for s in steps {
            if !seen.contains(&s) {
                seen.push(s);
            }
        }
        seen
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some((_, rt)) = self.daemon.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f`, which the injected crash makes panic.
fn crashes(f: impl FnOnce() -> Result<(), String>) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert!(r.is_err(), "the injected crash did not happen");
}

fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.to_string().contains("injected crash") {
                default(info);
            }
        }));
    });
}

fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_create_that_fails_at_any_step_leaves_nothing() {
    for kind in kinds() {
        let steps = Env::steps_of(kind, |_| {}, |e| e.create(true));
        let expected: &[&str] = match kind {
            Kind::Zone => &["clone_dataset", "set_quota", "launch"],
            Kind::Vm => &["create_dataset", "make_dir", "create_volume", "set_quota", "give_to", "launch"],
        };
        assert_eq!(steps, expected, "the steps of a {kind:?} create");
        creates_fail_cleanly(kind, steps);
    }
}

fn creates_fail_cleanly(kind: Kind, steps: Vec<&'static str>) {
    for step in steps {
        let env = Env::new(kind);
        env.host.fail(step, Fault::Error);
        let err = env.create(true).expect_err(step);
        assert!(err.contains(step), "the error names the step {step}: {err}");
        env.assert_clean(&format!("error at {step}"));
    }
}

#[test]
fn a_daemon_dying_at_any_step_of_a_create_leaves_nothing_after_recovery() {
    quiet_panics();
    for kind in kinds() {
        crashed_creates_recover(kind);
    }
}

fn crashed_creates_recover(kind: Kind) {
    for step in Env::steps_of(kind, |_| {}, |e| e.create(true)) {
        let mut env = Env::new(kind);
        env.host.fail(step, Fault::Crash);
        crashes(|| env.create(true));
        env.restart(true);
        env.assert_clean(&format!("crash at {step}"));
        // And the same uuid can be created again.
        env.create(true).unwrap();
        env.assert_state("running", &format!("create again after a crash at {step}"));
    }
}

#[test]
fn a_start_that_fails_leaves_the_vm_stopped() {
    quiet_panics();
    let stopped = |e: &Env| e.create(false).unwrap();
    let start = |e: &Env| e.d().start_vm(VM, &Default::default()).map(drop).map_err(|e| e.message);
    for kind in kinds() {
        for step in Env::steps_of(kind, stopped, start) {
            for fault in [Fault::Error, Fault::Crash] {
                let mut env = Env::new(kind);
                stopped(&env);
                env.host.fail(step, fault);
                let when = format!("{kind:?}: {fault:?} at {step} of start");
                if fault == Fault::Crash {
                    crashes(|| start(&env));
                    env.restart(true);
                } else {
                    start(&env).expect_err(&when);
                }
                env.assert_state("stopped", &when);
                start(&env).unwrap();
                env.assert_state("running", &format!("start after {when}"));
            }
        }
    }
}

#[test]
fn a_stop_that_fails_leaves_the_vm_running() {
    quiet_panics();
    let running = |e: &Env| e.create(true).unwrap();
    let stop = |e: &Env| e.d().stop_vm(VM, false, None).map(drop).map_err(|e| e.message);
    for kind in kinds() {
        for step in Env::steps_of(kind, running, stop) {
            for fault in [Fault::Error, Fault::Crash] {
                let mut env = Env::new(kind);
                running(&env);
                env.host.fail(step, fault);
                let when = format!("{kind:?}: {fault:?} at {step} of stop");
                if fault == Fault::Crash {
                    crashes(|| stop(&env));
                    env.restart(true);
                } else {
                    stop(&env).expect_err(&when);
                }
                env.assert_state("running", &when);
                stop(&env).unwrap();
                env.assert_state("stopped", &format!("stop after {when}"));
            }
        }
    }
}

#[test]
fn a_delete_that_fails_can_be_done_again_and_then_leaves_nothing() {
    quiet_panics();
    let running = |e: &Env| e.create(true).unwrap();
    let delete = |e: &Env| e.d().delete_vm(VM).map(drop).map_err(|e| e.message);
    for kind in kinds() {
        for step in Env::steps_of(kind, running, delete) {
            for fault in [Fault::Error, Fault::Crash] {
                let mut env = Env::new(kind);
                running(&env);
                env.host.fail(step, fault);
                let when = format!("{kind:?}: {fault:?} at {step} of delete");
                if fault == Fault::Crash {
                    crashes(|| delete(&env));
                    env.restart(true);
                } else {
                    delete(&env).expect_err(&when);
                }
                // Half-deleted is not a state: the row says what the host has.
                let (phase, state) = env.row().expect("the row is still there");
                assert_eq!(phase, "ready", "{when}");
                let state = state.as_str().unwrap().to_string();
                env.assert_state(&state, &when);
                delete(&env).unwrap();
                env.assert_clean(&format!("delete after {when}"));
            }
        }
    }
}

#[test]
fn a_guest_going_down_on_its_own_is_recorded_with_its_exit() {
    let env = Env::new(Kind::Zone);
    env.create(true).unwrap();
    let exit = zonevisor_zone::ExitRecord {
        reason: zonevisor_zone::ExitReason::Exited,
        code: Some(3),
        signal: None,
        message: "init exited with status 3".into(),
        oom_killed: false,
        at: 0,
    };
    env.host.guest_exits(&env.run_dir(), exit);
    wait_for(|| env.row().is_some_and(|(_, s)| s == "stopped"), "the exit to be recorded");
    env.assert_state("stopped", "after the guest exited");
    let vm = env.d().get_vm(VM).unwrap();
    assert_eq!(vm.get("exit_status"), Some(&json!(3)));
    assert_eq!(vm.get("exit_reason"), Some(&json!("init exited with status 3")));
}

#[test]
fn an_update_refused_by_the_kernel_puts_back_what_it_changed() {
    let env = Env::new(Kind::Zone);
    env.create(true).unwrap();
    env.host.fail("set_limits", Fault::Error);
    let err = env.d().update_vm(VM, &json!({"quota": 5, "max_lwps": 500})).unwrap_err();
    assert!(err.message.contains("refused the new limits"), "{}", err.message);
    let st = env.host.state();
    assert_eq!(st.quotas.get(VM), Some(&Some(super::spec::GIB)), "the quota is put back to 1 GiB");
    drop(st);
    let vm = env.d().get_vm(VM).unwrap();
    assert_eq!(vm.get("quota"), Some(&json!(1)));
    // Without the fault, both apply.
    env.d().update_vm(VM, &json!({"quota": 5, "max_lwps": 500})).unwrap();
    let st = env.host.state();
    assert_eq!(st.quotas.get(VM), Some(&Some(5 * super::spec::GIB)));
    assert_eq!(st.monitors.get(&env.run_dir()).unwrap().limits.pids, Some(500));
}

#[test]
fn only_live_changes_reach_a_running_instance() {
    let env = Env::new(Kind::Zone);
    env.create(true).unwrap();
    env.host.state().steps.clear();
    // hostname needs a reboot: recorded, and only the metadata service's
    // copy of the instance (what `sdc:hostname` answers) goes to the monitor.
    env.d().update_vm(VM, &json!({"hostname": "web"})).unwrap();
    assert_eq!(env.host.state().steps, ["set_metadata"]);
    env.host.state().steps.clear();
    // max_lwps is live: the monitor gets the new limits.
    env.d().update_vm(VM, &json!({"max_lwps": 300})).unwrap();
    assert_eq!(env.host.state().steps, ["set_limits", "set_metadata"]);
}

#[test]
fn a_vm_update_adds_grows_and_removes_volumes_and_undoes_them_when_refused() {
    if !kinds().contains(&Kind::Vm) {
        return;
    }
    let env = Env::new(Kind::Vm);
    env.create(true).unwrap();
    let volumes = |env: &Env| {
        env.host.state().volumes.iter().map(|v| v.rsplit('/').next().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(volumes(&env), ["disk0", "disk1"]);
    // Refused by the kernel after the new disk's volume was made: it goes again.
    env.host.fail("set_limits", Fault::Error);
    env.d().update_vm(VM, &json!({"add_disks": [{"size": 4}], "max_lwps": 100})).unwrap_err();
    assert_eq!(volumes(&env), ["disk0", "disk1"]);
    assert_eq!(env.d().get_vm(VM).unwrap()["disks"].as_array().unwrap().len(), 2);
    // Accepted: a volume of its own, its path recorded.
    env.d().update_vm(VM, &json!({"add_disks": [{"size": 4}]})).unwrap();
    assert_eq!(volumes(&env), ["disk0", "disk1", "disk2"]);
    let vm = env.d().get_vm(VM).unwrap();
    let path = |i: usize| vm["disks"][i]["path"].as_str().unwrap().to_string();
    assert!(path(2).ends_with("/disk2"), "{}", path(2));
    // Grown: the volume is resized.
    env.host.state().steps.clear();
    env.d().update_vm(VM, &json!({"update_disks": [{"path": path(0), "size": 32}]})).unwrap();
    assert!(env.host.state().steps.contains(&"resize_volume"), "{:?}", env.host.state().steps);
    // Removed: the volume goes once the update is stored.
    env.d().update_vm(VM, &json!({"remove_disks": [path(1)]})).unwrap();
    assert_eq!(volumes(&env), ["disk0", "disk2"]);
    // And a new disk takes the free name.
    env.d().update_vm(VM, &json!({"add_disks": [{"size": 4}]})).unwrap();
    assert_eq!(volumes(&env), ["disk0", "disk1", "disk2"]);
}

// Snapshots: create, rollback and delete under faults. The host's
// `contents` stands for the dataset's data; tags stand for what rolls back
// with it (test-snapshots.js "modify tags and rollback").

impl Env {
    /// Sets the instance's tag `v` to `n` and its data to `n`.
    fn write(&self, n: u64) {
        self.d().update_vm(VM, &json!({"set_tags": {"v": n}})).unwrap();
        self.host.state().contents.insert(VM.to_string(), n);
    }

    fn snapshot(&self, name: &str) -> Result<(), String> {
        self.d().create_snapshot(VM, name).map(drop).map_err(|e| e.message)
    }

    fn rollback(&self, name: &str) -> Result<(), String> {
        self.d().rollback_snapshot(VM, name).map(drop).map_err(|e| e.message)
    }

    /// (data, tag v, snapshot names) as the host and the row have them.
    fn snapshot_state(&self) -> (u64, Value, Vec<String>) {
        let content = self.host.state().contents.get(VM).copied().unwrap_or_default();
        let tag = self.d().get_vm(VM).unwrap()["tags"]["v"].clone();
        let snaps = self.d().get_vm(VM).unwrap()["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        (content, tag, snaps)
    }

    fn paused(&self) -> bool {
        self.host.state().paused.contains(&self.run_dir())
    }
}

/// An instance (running or not) with data 1 in snapshot s1, 2 in s2, and 3 now.
fn with_snapshots(env: &Env, running: bool) {
    env.create(running).unwrap();
    for n in 1..=2 {
        env.write(n);
        env.snapshot(&format!("s{n}")).unwrap();
    }
    env.write(3);
}

#[test]
fn snapshots_are_listed_newest_first_and_roll_back_with_tags() {
    for kind in kinds() {
        let env = Env::new(kind);
        with_snapshots(&env, true);
        assert_eq!(env.snapshot_state(), (3, json!(3), vec!["s2".to_string(), "s1".to_string()]));
        let vm = env.d().get_vm(VM).unwrap();
        assert!(vm["snapshots"][0]["created_at"].as_str().unwrap().ends_with('Z'), "{vm:?}");
        let err = env.snapshot("s1").unwrap_err();
        assert_eq!(err, "snapshot with name \"s1\" already exists.");
        assert_eq!(env.rollback("s9").unwrap_err(), format!("No snapshot named \"s9\" for {VM}"));
        env.rollback("s1").unwrap();
        assert_eq!(env.snapshot_state(), (1, json!(1), vec!["s1".to_string()]));
        env.assert_state("running", &format!("{kind:?}: after a rollback"));
        assert!(!env.paused());
        // A stopped instance stays stopped.
        env.d().stop_vm(VM, false, None).unwrap();
        env.write(4);
        env.rollback("s1").unwrap();
        assert_eq!(env.snapshot_state(), (1, json!(1), vec!["s1".to_string()]));
        env.assert_state("stopped", &format!("{kind:?}: after a rollback of a stopped instance"));
        env.d().delete_snapshot(VM, "s1").unwrap();
        assert_eq!(env.snapshot_state().2, Vec::<String>::new());
        assert_eq!(
            env.d().delete_snapshot(VM, "s1").unwrap_err().message,
            format!("No snapshot named \"s1\" for {VM}")
        );
        // zfs_snapshot_limit caps them.
        env.d().update_vm(VM, &json!({"zfs_snapshot_limit": 1})).unwrap();
        env.snapshot("a").unwrap();
        assert!(env.snapshot("b").unwrap_err().contains("zfs_snapshot_limit"));
    }
}

#[test]
fn a_snapshot_that_fails_leaves_no_snapshot_and_no_paused_vm() {
    quiet_panics();
    let running = |e: &Env| e.create(true).unwrap();
    let snap = |e: &Env| e.snapshot("s1");
    for kind in kinds() {
        let steps = Env::steps_of(kind, running, snap);
        let expected: &[&str] = match kind {
            Kind::Zone => &["write_dataset_file", "snapshot_dataset"],
            Kind::Vm => &["write_dataset_file", "qmp_stop", "snapshot_dataset", "qmp_cont"],
        };
        assert_eq!(steps, expected, "the steps of a {kind:?} snapshot");
        for step in steps {
            for fault in [Fault::Error, Fault::Crash] {
                let mut env = Env::new(kind);
                running(&env);
                env.host.fail(step, fault);
                let when = format!("{kind:?}: {fault:?} at {step} of create-snapshot");
                let result = if fault == Fault::Crash {
                    crashes(|| snap(&env));
                    env.restart(true);
                    None
                } else {
                    Some(snap(&env))
                };
                env.assert_state("running", &when);
                assert!(!env.paused(), "{when}: the VM is left paused");
                let taken = !env.snapshot_state().2.is_empty();
                match result {
                    // A resume that failed once is tried again.
                    Some(r) if step == "qmp_cont" => assert!(r.is_ok() && taken, "{when}: {r:?}"),
                    Some(r) => assert!(r.is_err() && !taken, "{when}: {r:?}, taken {taken}"),
                    None => {}
                }
                // And the name can be used (again).
                if taken {
                    env.d().delete_snapshot(VM, "s1").unwrap();
                }
                snap(&env).unwrap();
                assert_eq!(env.snapshot_state().2, ["s1"], "{when}");
            }
        }
    }
}

#[test]
fn a_rollback_that_fails_or_dies_at_any_step_leaves_data_and_row_agreeing() {
    quiet_panics();
    let rollback = |e: &Env| e.rollback("s1");
    for kind in kinds() {
        for running in [true, false] {
            let set_up = |e: &Env| with_snapshots(e, running);
            let steps = Env::steps_of(kind, set_up, rollback);
            // What comes after the rollback's end is the instance's start.
            let start_steps: Vec<&str> = steps.iter().skip_while(|s| **s != "end_rollback").skip(1).copied().collect();
            if kind == Kind::Zone {
                let mut expected = vec!["read_dataset_file", "stop", "rollback_dataset", "rollback_commit"];
                expected.extend(["rollback_cleanup", "end_rollback", "launch"]);
                expected.retain(|s| running || !["stop", "launch"].contains(s));
                assert_eq!(steps, expected, "the steps of a zone's rollback (running {running})");
            }
            for step in steps {
                for fault in [Fault::Error, Fault::Crash] {
                    let mut env = Env::new(kind);
                    set_up(&env);
                    env.host.fail(step, fault);
                    let when = format!("{kind:?} (running {running}): {fault:?} at {step} of rollback");
                    if fault == Fault::Crash {
                        crashes(|| rollback(&env));
                        env.restart(true);
                    } else {
                        let _ = rollback(&env);
                    }
                    // The row is the host's, and the data and the tags
                    // are both of the snapshot or both of before it.
                    let (phase, state) = env.row().expect("the row is still there");
                    assert_eq!(phase, "ready", "{when}");
                    env.assert_state(state.as_str().unwrap(), &when);
                    let s = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
                    let (data, tag, snaps) = env.snapshot_state();
                    let rolled_back = (1, json!(1), s(&["s1"]));
                    let not = (3, json!(3), s(&["s2", "s1"]));
                    assert!(
                        (data, &tag, &snaps) == (rolled_back.0, &rolled_back.1, &rolled_back.2)
                            || (data, &tag, &snaps) == (not.0, &not.1, &not.2),
                        "{when}: data {data}, tag {tag}, snapshots {snaps:?}"
                    );
                    assert!(!env.paused(), "{when}");
                    // A rollback, a crash's included, never stops what was
                    // running for good unless its start is what failed.
                    if running && !start_steps.contains(&step) && !(fault == Fault::Crash && data == 3) {
                        assert_eq!(state, json!("running"), "{when}");
                    }
                    // The next rollback finishes the job.
                    rollback(&env).unwrap();
                    assert_eq!(env.snapshot_state(), rolled_back, "{when}: then rolled back");
                    assert!(env.host.state().rollbacks.is_empty(), "{when}: a rollback left unended");
                }
            }
        }
    }
}

#[test]
fn a_snapshot_delete_that_fails_can_be_done_again() {
    quiet_panics();
    for fault in [Fault::Error, Fault::Crash] {
        let mut env = Env::new(Kind::Zone);
        with_snapshots(&env, true);
        env.host.fail("destroy_snapshot", fault);
        if fault == Fault::Crash {
            crashes(|| env.d().delete_snapshot(VM, "s1").map(drop).map_err(|e| e.message));
            env.restart(true);
        } else {
            env.d().delete_snapshot(VM, "s1").unwrap_err();
        }
        assert_eq!(env.snapshot_state().2, ["s2", "s1"], "{fault:?}");
        env.d().delete_snapshot(VM, "s1").unwrap();
        assert_eq!(env.snapshot_state().2, ["s2"], "{fault:?}");
    }
}

#[test]
fn deleting_an_instance_takes_its_snapshots_along() {
    for kind in kinds() {
        let env = Env::new(kind);
        with_snapshots(&env, true);
        env.d().delete_vm(VM).unwrap();
        env.assert_clean(&format!("{kind:?}: delete with snapshots"));
        assert!(env.host.state().snapshots.is_empty(), "{kind:?}: snapshots left");
    }
}

// vmadm send and receive between two fake hosts: what arrives, and what a
// stream cut short, corrupted, or a receive failing or dying at any step
// leaves (nothing).

impl Env {
    /// `vmadm send` of the VM (from `base`), the stream as bytes.
    fn send(&self, base: Option<&str>) -> Result<Vec<u8>, String> {
        let d = self.d();
        let plan = d.prepare_send(VM, base).map_err(|e| e.message)?;
        let mut out = Vec::new();
        let r = plan.run(&mut |b| {
            out.extend_from_slice(b);
            Ok(())
        });
        r.map(|_| out).map_err(|e| e.message)
    }

    fn receive(&self, stream: &[u8]) -> Result<(), String> {
        self.d().receive_vm(&mut &stream[..]).map(drop).map_err(|e| e.message)
    }

    /// Nothing of the VM here, nothing staged, no snapshot left.
    fn assert_nothing_received(&self, when: &str) {
        self.assert_clean(when);
        let st = self.host.state();
        assert!(st.staged.is_empty(), "{when}: staged: {:?}", st.staged.keys());
        assert!(st.snapshots.values().all(Vec::is_empty), "{when}: snapshots left: {:?}", st.snapshots);
    }
}

/// A sender with snapshots s1 (data 1), s2 (2) and data 3, and a receiver.
fn pair(kind: Kind) -> (Env, Env) {
    let a = Env::new(kind);
    with_snapshots(&a, true);
    (a, Env::new(kind))
}

#[test]
fn a_vm_goes_from_one_host_to_another_with_its_snapshots_and_tags() {
    for kind in kinds() {
        let (a, b) = pair(kind);
        let stream = a.send(None).unwrap();
        assert!(stream.starts_with(zonevisor_api::stream::MAGIC));
        assert!(
            a.host.state().snapshots[VM].iter().all(|s| !s.name.starts_with("vmsend-")),
            "{kind:?}: the send's snapshot is gone"
        );
        b.receive(&stream).unwrap();
        b.assert_state("stopped", &format!("{kind:?}: received"));
        assert_eq!(b.snapshot_state(), (3, json!(3), vec!["s2".to_string(), "s1".to_string()]), "{kind:?}");
        assert!(b.host.state().staged.is_empty());
        // Its snapshots roll back there as here.
        b.rollback("s1").unwrap();
        assert_eq!(b.snapshot_state(), (1, json!(1), vec!["s1".to_string()]));
        // A second receive of the same VM is refused, naming it.
        let err = b.receive(&stream).unwrap_err();
        assert!(err.contains(VM) && err.contains("already exists"), "{err}");
        // Incremental: the sender's newer snapshot and state, onto the copy.
        let (a, b) = pair(kind);
        b.receive(&a.send(None).unwrap()).unwrap();
        a.write(4);
        a.snapshot("s3").unwrap();
        a.write(5);
        b.receive(&a.send(Some("s2")).unwrap()).unwrap();
        assert_eq!(b.snapshot_state(), (5, json!(5), ["s3", "s2", "s1"].map(String::from).to_vec()), "{kind:?}");
        let err = b.receive(&a.send(Some("nope")).unwrap_or_default()).unwrap_err();
        assert!(!err.is_empty());
    }
}

#[test]
fn a_stream_cut_short_or_corrupted_anywhere_leaves_nothing() {
    let (a, b) = pair(Kind::Zone);
    let stream = a.send(None).unwrap();
    for cut in (0..stream.len()).step_by(3) {
        let err = b.receive(&stream[..cut]).unwrap_err();
        assert!(!err.is_empty());
        b.assert_nothing_received(&format!("cut at {cut} of {}", stream.len()));
    }
    for at in (0..stream.len()).step_by(5) {
        let mut bad = stream.clone();
        bad[at] ^= 0x20;
        let r = b.receive(&bad);
        assert!(r.is_err(), "a byte changed at {at} of {} went unnoticed", stream.len());
        b.assert_nothing_received(&format!("corrupted at {at}"));
    }
    // And the next receive succeeds.
    b.receive(&stream).unwrap();
    b.assert_state("stopped", "after the failed receives");
}

#[test]
fn a_receive_that_fails_or_dies_at_any_step_leaves_nothing() {
    quiet_panics();
    let (a, _) = pair(Kind::Zone);
    let stream = a.send(None).unwrap();
    let steps = Env::steps_of(Kind::Zone, |_| {}, |e| e.receive(&stream));
    assert!(steps.contains(&"commit_receive") && steps.contains(&"section_finish"), "{steps:?}");
    for step in steps {
        for fault in [Fault::Error, Fault::Crash] {
            let mut b = Env::new(Kind::Zone);
            b.host.fail(step, fault);
            let when = format!("{fault:?} at {step} of receive");
            if fault == Fault::Crash {
                crashes(|| b.receive(&stream));
                b.restart(true);
            } else {
                b.receive(&stream).expect_err(&when);
            }
            b.assert_nothing_received(&when);
            b.receive(&stream).unwrap();
            b.assert_state("stopped", &format!("receive after {when}"));
        }
    }
}

#[test]
fn a_send_that_fails_says_so_in_its_stream_and_leaves_no_snapshot() {
    quiet_panics();
    let (a, b) = pair(Kind::Zone);
    a.host.fail("send_snapshot", Fault::Error);
    let d = a.d();
    let plan = d.prepare_send(VM, None).unwrap();
    let mut out = Vec::new();
    plan.run(&mut |x| {
        out.extend_from_slice(x);
        Ok(())
    })
    .unwrap_err();
    assert!(a.host.state().snapshots[VM].iter().all(|s| !s.name.starts_with("vmsend-")));
    let err = b.receive(&out).unwrap_err();
    assert!(err.contains("sending side failed"), "{err}");
    b.assert_nothing_received("a failed send's stream");
    // A daemon dying mid-send (a process gone, no destructor run) leaves
    // its snapshot to the next start.
    let mut a = a;
    use super::host::Host;
    a.host.snapshot_dataset(VM, "vmsend-1").unwrap();
    a.restart(true);
    assert!(a.host.state().snapshots[VM].iter().all(|s| !s.name.starts_with("vmsend-")), "destroyed at start");
}
