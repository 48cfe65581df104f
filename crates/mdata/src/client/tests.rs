use super::*;

#[test]
fn request_ids_are_eight_hex_digits_and_differ() {
    let ids: Vec<String> = (0..64).map(|_| new_reqid()).collect();
    for id in &ids {
        assert_eq!(id.len(), 8, "{id}");
        assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{id}");
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert!(unique.len() > 60, "{ids:?}");
}

#[test]
fn which_failures_are_worth_starting_over_for() {
    let os = io::Error::from_raw_os_error;
    let path = PathBuf::from("/dev/ttyS1");
    // As mdata-client: a serial device that is busy may free up; one that
    // is missing will not. A socket may appear or start listening later.
    assert!(Error::Open { path: path.clone(), source: os(libc::EBUSY) }.transient());
    assert!(!Error::Open { path: path.clone(), source: os(libc::ENOENT) }.transient());
    assert!(!Error::Open { path: path.clone(), source: os(libc::EACCES) }.transient());
    assert!(Error::Connect { path: path.clone(), source: os(libc::ENOENT) }.transient());
    assert!(Error::Connect { path: path.clone(), source: os(libc::ECONNREFUSED) }.transient());
    assert!(!Error::Connect { path: path.clone(), source: os(libc::EACCES) }.transient());
    assert!(Error::Serial { what: "lock", path: path.clone(), source: os(libc::EINTR) }.transient());
    assert!(!Error::Serial { what: "set raw mode on", path, source: os(libc::ENOTTY) }.transient());
    assert!(Error::Timeout { waiting_for: "GET".into(), after: Duration::from_secs(45) }.transient());
    assert!(Error::Closed.transient());
    // Answers are final.
    assert!(!Error::NotFound.transient());
    assert!(!Error::Host("no".into()).transient());
    assert!(!Error::Unsupported("PUT").transient());
}

#[test]
fn errors_say_what_failed_and_why() {
    let e = Error::Open { path: "/dev/ttyS1".into(), source: io::Error::from_raw_os_error(libc::ENOENT) };
    assert_eq!(e.to_string(), "could not open /dev/ttyS1: No such file or directory (os error 2)");
    let e = Error::Timeout { waiting_for: "NEGOTIATE V2".into(), after: Duration::from_secs(6) };
    assert_eq!(e.to_string(), "no answer to NEGOTIATE V2 within 6s");
    assert_eq!(Error::Unsupported("PUT").to_string(), "host does not support PUT");
}

#[test]
fn mdata_client_defaults() {
    let cfg = Config::new(Transport::Serial(SERIAL_DEVICE.into()));
    assert_eq!(cfg.reset_timeout, Duration::from_secs(2));
    assert_eq!(cfg.negotiate_timeout, Duration::from_secs(6));
    assert_eq!(cfg.request_timeout, Duration::from_secs(45));
    assert_eq!(cfg.retry_delay, Duration::from_secs(1));
    assert_eq!(cfg.retries, None);
}
