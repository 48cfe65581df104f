//! The client against the test host over a Unix socket, as in a zone.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Host, Mode};
use zonevisor_mdata::client::{Client, Config, Error, Transport, Version};

/// mdata-client's timeouts, but giving up after two start-overs so a bug
/// fails the test instead of hanging it.
fn config(path: &std::path::Path) -> Config {
    let mut cfg = Config::new(Transport::Socket(path.to_path_buf()));
    cfg.retries = Some(2);
    cfg
}

/// Timeouts short enough to exercise.
fn impatient(path: &std::path::Path) -> Config {
    let mut cfg = config(path);
    cfg.reset_timeout = Duration::from_millis(300);
    cfg.negotiate_timeout = Duration::from_millis(300);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.retry_delay = Duration::from_millis(20);
    cfg
}

fn host(mode: Mode) -> (Host, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(mode);
    let path = host.listen(dir.path());
    (host, dir, path)
}

#[test]
fn gets_puts_lists_and_deletes() {
    let (host, _dir, path) = host(Mode::SmartOs);
    let mut c = Client::connect_with(config(&path)).unwrap();
    assert_eq!(c.version(), Version::V2);
    assert_eq!(c.get("root_authorized_keys").unwrap().as_deref(), Some("ssh-rsa AAAA test"));
    assert_eq!(c.get("user-script").unwrap().as_deref(), Some("#!/bin/sh\n.dot\necho hi\n"));
    assert_eq!(c.get("root_pw").unwrap().as_deref(), Some("secret"));
    assert_eq!(c.get("sdc:uuid").unwrap().as_deref(), Some(common::UUID));
    assert_eq!(
        c.get("sdc:routes").unwrap().as_deref(),
        Some(r#"[{"linklocal":true,"dst":"10.9.0.0/16","gateway":"10.0.0.5"}]"#)
    );
    assert_eq!(c.get("empty").unwrap().as_deref(), Some(""));
    assert_eq!(c.get("nope").unwrap(), None);
    assert_eq!(c.keys().unwrap(), ["root_authorized_keys", "user-script", "no-newline", "empty", "root_pw", "foo:bar"]);

    let value = ".leading dot\nline two\n\u{e9}t\u{e9}\n";
    c.put("user-data", value).unwrap();
    assert_eq!(c.get("user-data").unwrap().as_deref(), Some(value));
    assert_eq!(host.vm.lock().unwrap()["customer_metadata"]["user-data"], value);
    c.put("admin_pw", "hunter2").unwrap();
    assert_eq!(host.vm.lock().unwrap()["internal_metadata"]["admin_pw"], "hunter2");
    c.delete("user-data").unwrap();
    assert_eq!(c.get("user-data").unwrap(), None);
    c.delete("never-there").unwrap();

    let refused = |r: Result<(), Error>| match r {
        Err(Error::Host(message)) => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(c.put("sdc:alias", "x")), "Cannot update the \"sdc\" Namespace.");
    assert_eq!(refused(c.put("foo:baz", "x")), "Cannot update the \"foo\" Namespace.");
    assert_eq!(refused(c.delete("foo:bar")), "Cannot update the \"foo\" Namespace.");
    assert_eq!(refused(c.put("k", "")), "Invalid PUT Request");
    assert_eq!(refused(c.put_bytes(b"k", b"\xff")), "Invalid PUT Request: the value is not valid UTF-8");
    assert!(matches!(c.get(""), Err(Error::Host(m)) if m == "Invalid GET Request"));
    let big = "x".repeat(zonevisor_mdata::MAX_VALUE + 1);
    assert_eq!(
        refused(c.put("big", &big)),
        "Invalid PUT Request: the value is 524289 bytes long, more than the 524288 allowed"
    );
}

#[test]
fn a_value_too_big_for_a_line_gets_no_answer() {
    // The host drops the line unanswered; the client waits, starts over,
    // asks again, and gives up when its retries run out.
    let (_host, _dir, path) = host(Mode::SmartOs);
    let mut cfg = impatient(&path);
    cfg.retries = Some(1);
    let mut c = Client::connect_with(cfg).unwrap();
    let huge = "x".repeat(zonevisor_mdata::MAX_LINE);
    assert!(matches!(c.put("big", &huge), Err(Error::Timeout { .. })), "the host does not answer");
    // The session is started over: the client still works.
    assert_eq!(c.get("no-newline").unwrap().as_deref(), Some("value"));
}

#[test]
fn a_v1_host_gets_get_and_keys_only() {
    let (_host, _dir, path) = host(Mode::V1Only);
    let mut c = Client::connect_with(config(&path)).unwrap();
    assert_eq!(c.version(), Version::V1);
    // V1 doubles leading dots and ends with "."; the client undoes both.
    assert_eq!(c.get("user-script").unwrap().as_deref(), Some("#!/bin/sh\n.dot\necho hi\n"));
    assert_eq!(c.get("nope").unwrap(), None);
    assert_eq!(c.get("empty").unwrap().as_deref(), Some(""));
    assert_eq!(c.keys().unwrap().len(), 6);
    assert!(matches!(c.put("k", "v"), Err(Error::Unsupported("PUT"))));
    assert!(matches!(c.delete("k"), Err(Error::Unsupported("DELETE"))));
    assert!(matches!(c.get("a\nb"), Err(Error::BadKey(_))));
}

#[test]
fn answers_for_other_requests_and_damaged_frames_are_skipped() {
    let (_host, _dir, path) = host(Mode::Stale);
    let mut c = Client::connect_with(config(&path)).unwrap();
    assert_eq!(c.get("root_authorized_keys").unwrap().as_deref(), Some("ssh-rsa AAAA test"));
    assert_eq!(c.get("nope").unwrap(), None);
    c.put("k", "v").unwrap();
}

static NOTICES: AtomicUsize = AtomicUsize::new(0);

#[test]
fn an_unanswered_request_is_asked_again_on_a_new_stream() {
    let (_host, _dir, path) = host(Mode::DropFirst);
    let mut cfg = impatient(&path);
    cfg.notice = Some(|message| {
        assert_eq!(message, "receive timeout, resetting protocol...");
        NOTICES.fetch_add(1, Ordering::SeqCst);
    });
    let mut c = Client::connect_with(cfg).unwrap();
    let start = Instant::now();
    assert_eq!(c.get("no-newline").unwrap().as_deref(), Some("value"));
    // (A little under 300 ms: poll rounds its timeout to whole milliseconds.)
    assert!(start.elapsed() >= Duration::from_millis(250), "waited out the request timeout: {:?}", start.elapsed());
    assert_eq!(NOTICES.load(Ordering::SeqCst), 1);
}

#[test]
fn no_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.sock");
    let mut cfg = impatient(&path);
    cfg.retries = Some(0);
    match Client::connect_with(cfg) {
        Err(e @ Error::Connect { .. }) => {
            assert!(e.to_string().starts_with(&format!("could not connect to {}: ", path.display())), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A socket nobody listens on: retried, then refused.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let start = Instant::now();
    assert!(matches!(Client::connect_with(impatient(&path)), Err(Error::Connect { .. })));
    assert!(start.elapsed() >= Duration::from_millis(40), "two pauses between three tries");
}

#[test]
fn a_host_that_hangs_up() {
    let (_host, _dir, path) = host(Mode::Hangup);
    assert!(matches!(Client::connect_with(impatient(&path)), Err(Error::Closed)));
}

#[test]
fn a_host_that_does_not_answer_the_empty_line_properly() {
    let (_host, _dir, path) = host(Mode::BadReset);
    match Client::connect_with(impatient(&path)) {
        Err(Error::Reset { answer }) => assert_eq!(answer, "FAILURE"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn many_clients_at_once() {
    let (_host, _dir, path) = host(Mode::SmartOs);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect_with(config(&path)).unwrap();
                let key = format!("key{i}");
                for n in 0..20 {
                    c.put(&key, &n.to_string()).unwrap();
                    assert_eq!(c.get(&key).unwrap(), Some(n.to_string()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
