//! The client against the test host over a pty pair, as a VM's guest
//! reaches its host through its second serial port.

mod common;

use std::time::Duration;

use common::{Host, Mode, Pty};
use zonevisor_mdata::client::{Client, Config, Error, Transport, Version};
use zonevisor_mdata::proto::{encode, Framing, Reply};
use zonevisor_mdata::session::Session;

fn config(pty: &Pty) -> Config {
    let mut cfg = Config::new(Transport::Serial(pty.path.clone()));
    cfg.reset_timeout = Duration::from_millis(500);
    cfg.negotiate_timeout = Duration::from_millis(500);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.retry_delay = Duration::from_millis(20);
    cfg.retries = Some(3);
    cfg
}

#[test]
fn gets_puts_and_lists_over_a_serial_line() {
    let pty = Pty::open();
    let host = Host::new(Mode::SmartOs);
    pty.serve(&host, Session::new());
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.version(), Version::V2);
    assert_eq!(c.get("root_authorized_keys").unwrap().as_deref(), Some("ssh-rsa AAAA test"));
    assert_eq!(c.get("nope").unwrap(), None);
    let value = "line one\r\nline two\n\0binary\x7f\n";
    c.put("user-data", value).unwrap();
    assert_eq!(c.get("user-data").unwrap().as_deref(), Some(value), "raw mode passes every byte");
    assert_eq!(c.keys().unwrap().len(), 7);
    c.delete("user-data").unwrap();
    drop(c);

    // The next user of the line (the lock was released with the first).
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.get("sdc:alias").unwrap().as_deref(), Some("web0"));
    assert_eq!(c.get("user-data").unwrap(), None);
}

#[test]
fn stale_input_on_the_line_is_drained_before_use() {
    let pty = Pty::open();
    // Half an answer an earlier user never read, then a whole one.
    pty.inject(b"SUCCESS\nsomething\n.\nV2 17 03ddab56 e79ed057 NOTFOUND\nV2 41 271bbd34 dae4");
    let host = Host::new(Mode::SmartOs);
    pty.serve(&host, Session::new());
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.version(), Version::V2);
    assert_eq!(c.get("root_authorized_keys").unwrap().as_deref(), Some("ssh-rsa AAAA test"));
}

#[test]
fn answers_arriving_late_are_skipped() {
    let pty = Pty::open();
    let host = Host::new(Mode::Stale);
    pty.serve(&host, Session::new());
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.get("no-newline").unwrap().as_deref(), Some("value"));
    // A late answer for someone else between requests.
    pty.inject(&encode(&Framing::V2 { reqid: "12345678".into() }, &Reply::Success(Some("late".into()))));
    assert_eq!(c.get("root_pw").unwrap().as_deref(), Some("secret"));
}

#[test]
fn half_a_request_left_on_the_line_by_an_earlier_user() {
    // The host holds half a V2 frame. The client's opening "\n" ends it; the
    // host drops the bad frame without a word, the client hears no
    // "invalid command" in time, opens again, and the second "\n" is heard.
    let pty = Pty::open();
    let host = Host::new(Mode::SmartOs);
    let mut session = Session::new();
    assert!(session.feed(b"V2 41 c0288eb2 dae4242d GET cm9vdF9h").is_empty());
    pty.serve(&host, session);
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.get("root_authorized_keys").unwrap().as_deref(), Some("ssh-rsa AAAA test"));
}

#[test]
fn a_v1_host_on_a_serial_line() {
    let pty = Pty::open();
    let host = Host::new(Mode::V1Only);
    pty.serve(&host, Session::new());
    let mut c = Client::connect_with(config(&pty)).unwrap();
    assert_eq!(c.version(), Version::V1);
    assert_eq!(c.get("user-script").unwrap().as_deref(), Some("#!/bin/sh\n.dot\necho hi\n"));
    assert!(matches!(c.put("k", "v"), Err(Error::Unsupported("PUT"))));
}

#[test]
fn a_silent_line() {
    // Nothing serves the pty: every start times out, then the client gives up.
    let pty = Pty::open();
    let mut cfg = config(&pty);
    cfg.reset_timeout = Duration::from_millis(100);
    cfg.retries = Some(1);
    match Client::connect_with(cfg) {
        Err(Error::Timeout { waiting_for, after }) => {
            assert_eq!(waiting_for, "an empty line");
            assert_eq!(after, Duration::from_millis(100));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_serial_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttyS1");
    let cfg = Config::new(Transport::Serial(path.clone()));
    // Not there: given up at once, as mdata-client does, retries or not.
    match Client::connect_with(cfg) {
        Err(e @ Error::Open { .. }) => assert!(e.to_string().contains("ttyS1"), "{e}"),
        other => panic!("{other:?}"),
    }
}
