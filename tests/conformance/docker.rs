//! `docker`: the docker payload of lx zones: `docker: true` and the
//! `docker:*` keys of `internal_metadata` (smartos-live
//! src/vm/tests/test-docker.js; VM.js's docker branch of create and
//! update; src/dockerinit/README.md and src/dockerinit/src/*.c for what
//! the zone runs).
//!
//! Differences from SmartOS, asserted as zonevisor's: `init_name` stays
//! absent (SmartOS points it at `/native/usr/vm/sbin/dockerinit`; here the
//! monitor runs the command itself), and a `docker:*` key SmartOS would
//! store and only trip over at boot is refused at create.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// The keys test-docker.js's `getDockerFlags` reads.
fn flags(vm: &Value) -> (bool, Option<String>, bool, Vec<String>) {
    let ns: Vec<String> = vm["internal_metadata_namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    (
        vm["docker"] == true,
        vm["internal_metadata"]["docker:id"].as_str().map(String::from),
        vm["restart_init"] != false,
        ns,
    )
}

// test-docker.js "test docker=true on new VM", "test docker=true +
// docker:id + docker namespace on new VM", "test docker=true +
// non-docker namespace on new VM", "test adding docker=true on old VM"
// (and its docker=false, docker=true again: the docker:id stays).
#[test]
fn docker_true_sets_docker_id_namespace_and_restart_init() {
    let Some((h, img)) = host() else { return };
    let cmd = json!({"docker:cmd": "[\"sleep\",\"3600\"]"});
    let uuid = create(&h, &lx(&img, json!({"docker": true, "autoboot": false, "internal_metadata": cmd})));
    let (docker, id, restart_init, ns) = flags(&h.get(&uuid));
    assert!(docker);
    let id = id.expect("docker:id set after create");
    assert!(id.len() == 64 && id.starts_with(&uuid.replace('-', "")), "VM.js's newDockerId: {id}");
    assert!(!restart_init, "restart_init is false after create");
    assert_eq!(ns, ["docker"]);
    assert!(h.get(&uuid).get("init_name").is_none(), "zonevisor: no dockerinit path in init_name");

    let given = format!("{}{}", "ab".repeat(16), "cd".repeat(16));
    let u2 = create(
        &h,
        &lx(
            &img,
            json!({"docker": true, "autoboot": false, "internal_metadata_namespaces": ["docker"],
                   "internal_metadata": {"docker:id": given, "docker:cmd": "[\"true\"]"}}),
        ),
    );
    let (_, id, _, ns) = flags(&h.get(&u2));
    assert_eq!(id.as_deref(), Some(given.as_str()), "the docker:id given is kept");
    assert_eq!(ns, ["docker"], "only one internal_metadata_namespace set");

    let u3 = create(
        &h,
        &lx(
            &img,
            json!({"docker": true, "autoboot": false, "internal_metadata_namespaces": ["bacon"], "internal_metadata": cmd}),
        ),
    );
    assert_eq!(flags(&h.get(&u3)).3, ["bacon", "docker"], "did not destroy existing internal_metadata_namespaces");

    let old = create(&h, &lx(&img, json!({"autoboot": false})));
    let (docker, id, restart_init, _) = flags(&h.get(&old));
    assert!(!docker && id.is_none() && restart_init, "a plain zone has none of it");
    let vm = update_ok(&h, &old, &json!({"docker": true}));
    let (docker, id, restart_init, ns) = flags(&vm);
    assert!(docker && !restart_init && ns == ["docker"], "{vm}");
    let id = id.expect("docker:id set after update");
    update_ok(&h, &old, &json!({"docker": false}));
    let vm = update_ok(&h, &old, &json!({"docker": true}));
    assert_eq!(flags(&vm).1.as_deref(), Some(id.as_str()), "docker:id matches previous");
}

// dockerinit README ("Specifying commands": docker:entrypoint then
// docker:cmd; "When the process you have specified exits, the zone will be
// halted"; "Stdio": on the console); docker-common.c's buildCmdEnv
// (TERM, HOME, PATH, HOSTNAME, then docker:env), setupWorkdir (anchored
// at /, made when missing) and getUserGroupData ("uid:gid" numbers).
#[test]
fn docker_zone_runs_entrypoint_then_cmd_on_the_console_and_halts_when_it_exits() {
    let Some((h, img)) = host() else { return };
    let uuid = create(
        &h,
        &lx(
            &img,
            json!({"docker": true, "hostname": "dock", "internal_metadata": {
                "docker:entrypoint": "[\"/bin/sh\",\"-c\"]",
                "docker:cmd": "[\"echo DOCKERINIT $(id -u):$(id -g) $(pwd) $TERM $HOME $HOSTNAME $A; exit 7\"]",
                "docker:env": "[\"A=from-env\"]", "docker:workdir": "/made/here", "docker:user": "65534:65534"}}),
        ),
    );
    let console = h.wait_console(&uuid, "DOCKERINIT", 1, Duration::from_secs(60));
    let line = console.lines().find(|l| l.contains("DOCKERINIT")).unwrap().trim().to_string();
    assert_eq!(line, "DOCKERINIT 65534:65534 /made/here xterm /nonexistent dock from-env");
    let vm = wait_for(Duration::from_secs(30), "the zone to halt", || {
        let vm = h.get(&uuid);
        (vm["state"] == "stopped").then_some(vm)
    });
    assert_eq!(vm["exit_status"], 7, "{vm}");
}

// test-docker.js "test stop docker VM w/ init that exits on SIGTERM" and
// "... that ignores SIGTERM": both stop (VM.js's doTermStop: SIGTERM,
// then SIGKILL when the timeout, -t, runs out). The command is PID 1 of
// the zone's PID namespace, where Linux delivers only signals it handles.
#[test]
fn docker_stop_sends_sigterm_then_sigkill() {
    let Some((h, img)) = host() else { return };
    for (script, exits) in
        [("trap 'exit 0' TERM; while :; do sleep 1; done", true), ("trap 'sleep 1800' TERM; sleep 3600", false)]
    {
        let uuid = create(
            &h,
            &lx(
                &img,
                json!({"docker": true, "internal_metadata": {
                "docker:cmd": serde_json::to_string(&["/bin/sh", "-c", script]).unwrap()}}),
            ),
        );
        assert_eq!(h.get(&uuid)["state"], "running");
        let started = Instant::now();
        let r = h.vmadm(&["stop", "-t", "4", &uuid]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let took = started.elapsed();
        let vm = h.get(&uuid);
        assert_eq!(vm["state"], "stopped", "{script}");
        if exits {
            assert!(took < Duration::from_secs(4), "{script}: SIGTERM ended it ({took:?})");
            assert_eq!(vm["exit_status"], 0, "{vm}");
        } else {
            assert!(took >= Duration::from_secs(3), "{script}: killed at the timeout, not before ({took:?})");
        }
    }
}

// What dockerinit refuses at boot (docker-common.c: getMdataArray's
// ERR_PARSE_JSON for docker:cmd, docker:entrypoint and docker:env,
// forEachStringInArray's "missing string" for non-strings;
// getUserGroupData's user[:group]), and vmadm's proptable: `docker` is a
// boolean for lx (and joyent-minimal) only. zonevisor refuses them at
// validate and create, naming the key in bad_values.
#[test]
fn docker_keys_are_validated_as_dockerinit_reads_them() {
    let Some((h, img)) = host() else { return };
    let good = lx(
        &img,
        json!({"docker": true, "internal_metadata": {
            "docker:entrypoint": "[\"/bin/sh\",\"-c\"]", "docker:cmd": "[\"sleep 1\"]",
            "docker:env": "[\"A=1\",\"B=\"]", "docker:workdir": "/srv", "docker:user": "nobody:nogroup",
            "docker:open_stdin": true, "docker:tty": "false"}}),
    );
    assert_valid(&validate(&h, "create", None, &good), "create", "lx", "good docker keys");
    for (key, value) in [
        ("docker:cmd", json!("sleep 1")),
        ("docker:cmd", json!("[1, 2]")),
        ("docker:entrypoint", json!("{\"a\": 1}")),
        ("docker:env", json!("[\"NOEQUALS\"]")),
        ("docker:user", json!("a:b:c")),
        ("docker:workdir", json!(5)),
        ("docker:open_stdin", json!("yes")),
        ("docker:id", json!("short")),
    ] {
        let payload = lx(&img, json!({"docker": true, "internal_metadata": {key: value}}));
        let prop = format!("internal_metadata.{key}");
        assert_refused(
            &validate(&h, "create", None, &payload),
            "bad_values",
            &prop,
            &format!("validate {key}={value}"),
        );
        // create says it as SmartOS's create does.
        let r = h.create(&payload);
        assert_eq!(r.code, 1, "create {key}={value}: {}", r.stderr);
        assert!(r.stderr.contains(&format!("Invalid value(s) for: {prop}")), "create {key}={value}: {}", r.stderr);
    }
    let r = validate(&h, "create", None, &json!({"brand": "kvm", "docker": true}));
    assert!(names(&error_object(&r), "bad_properties").contains(&"docker".to_string()), "{}", r.stderr);
    // An update that sets a bad key is refused too.
    let uuid = create(&h, &lx(&img, json!({"autoboot": false})));
    let r = update(&h, &uuid, &json!({"set_internal_metadata": {"docker:env": "A=1"}}));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("internal_metadata.docker:env"), "{}", r.stderr);
}
