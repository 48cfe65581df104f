use super::*;

/// What mdata-get sends on a fresh stream (captured from mdata-client).
const MDATA_GET: &[u8] = b"\nNEGOTIATE V2\nV2 41 c0288eb2 dae4242d GET cm9vdF9hdXRob3JpemVkX2tleXM=\n";

fn mdata_get_requests() -> Vec<Result<(Framing, Request), LineError>> {
    vec![
        Err(LineError::Blank),
        Ok((Framing::V1, Request::Negotiate { version: "V2".into() })),
        Ok((Framing::V2 { reqid: "dae4242d".into() }, Request::Get { key: "root_authorized_keys".into() })),
    ]
}

#[test]
fn a_whole_session_in_one_feed() {
    let mut s = Session::new();
    assert_eq!(s.feed(MDATA_GET), mdata_get_requests());
    assert_eq!(s.buffered(), 0);
    assert!(!s.overflowed());
}

#[test]
fn split_at_every_byte_offset() {
    for i in 0..=MDATA_GET.len() {
        let mut s = Session::new();
        let mut got = s.feed(&MDATA_GET[..i]);
        got.extend(s.feed(&MDATA_GET[i..]));
        assert_eq!(got, mdata_get_requests(), "split at {i}");
    }
    for i in 0..=MDATA_GET.len() {
        for j in i..=MDATA_GET.len() {
            let mut s = Session::new();
            let mut got = s.feed(&MDATA_GET[..i]);
            got.extend(s.feed(&MDATA_GET[i..j]));
            got.extend(s.feed(&MDATA_GET[j..]));
            assert_eq!(got, mdata_get_requests(), "split at {i} and {j}");
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut s = Session::new();
    let mut got = Vec::new();
    for b in MDATA_GET {
        got.extend(s.feed(std::slice::from_ref(b)));
    }
    assert_eq!(got, mdata_get_requests());
}

#[test]
fn a_partial_line_waits_for_its_newline() {
    let mut s = Session::new();
    assert!(s.feed(b"KEY").is_empty());
    assert_eq!(s.buffered(), 3);
    assert!(s.feed(b"").is_empty());
    assert_eq!(s.feed(b"S\n"), vec![Ok((Framing::V1, Request::Keys))]);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn carriage_returns_nuls_and_garbage_do_not_stop_the_stream() {
    let mut s = Session::new();
    let got = s.feed(b"\r\n\0\0\n\x1b[2J garbage\nNEGOTIATE V2\r\nGET \0\n\n\nKEYS\r\n");
    assert_eq!(
        got,
        vec![
            Err(LineError::Blank),
            Ok((Framing::V1, Request::Unknown { command: "\0\0".into() })),
            Ok((Framing::V1, Request::Unknown { command: "\x1b[2J".into() })),
            Ok((Framing::V1, Request::Negotiate { version: "V2".into() })),
            Ok((Framing::V1, Request::Get { key: "\0".into() })),
            Err(LineError::Blank),
            Err(LineError::Blank),
            Ok((Framing::V1, Request::Keys)),
        ]
    );
}

#[test]
fn a_flood_of_lines_in_one_feed() {
    let mut s = Session::new();
    let flood = b"KEYS\n".repeat(100_000);
    let got = s.feed(&flood);
    assert_eq!(got.len(), 100_000);
    assert!(got.iter().all(|r| *r == Ok((Framing::V1, Request::Keys))));
    let empties = vec![b'\n'; 1_000_000];
    let got = s.feed(&empties);
    assert_eq!(got.len(), 1_000_000);
    assert!(got.iter().all(|r| *r == Err(LineError::Blank)));
    assert_eq!(s.buffered(), 0);
}

#[test]
fn a_line_of_exactly_the_limit_is_read() {
    let mut line = b"GET ".to_vec();
    line.resize(MAX_LINE, b'k');
    let mut s = Session::new();
    assert!(s.feed(&line).is_empty());
    assert_eq!(s.buffered(), MAX_LINE);
    let got = s.feed(b"\n");
    assert!(matches!(&got[..], [Ok((Framing::V1, Request::Get { key }))] if key.len() == MAX_LINE - 4));
    assert!(!s.overflowed());
}

#[test]
fn an_overlong_line_is_reported_once_and_dropped_to_its_newline() {
    let mut s = Session::new();
    let chunk = vec![b'a'; 64 * 1024];
    let mut got = Vec::new();
    // 2 MiB without a newline, fed in 64 KiB reads.
    for _ in 0..32 {
        got.extend(s.feed(&chunk));
        assert!(s.buffered() <= MAX_LINE);
    }
    assert_eq!(got, vec![Err(LineError::TooLong)]);
    assert!(s.overflowed());
    assert_eq!(s.buffered(), 0, "nothing of the dropped line is kept");
    // The rest of that line goes; the next line is read.
    assert_eq!(s.feed(b"aaaa\nKEYS\n"), vec![Ok((Framing::V1, Request::Keys))]);
    assert!(s.overflowed(), "the session remembers");
}

#[test]
fn an_overlong_line_within_one_feed() {
    let mut s = Session::new();
    let mut bytes = vec![b'a'; MAX_LINE + 1];
    bytes.extend_from_slice(b"\nKEYS\n");
    assert_eq!(s.feed(&bytes), vec![Err(LineError::TooLong), Ok((Framing::V1, Request::Keys))]);
    // A partial line plus more bytes than fit.
    let mut s = Session::new();
    assert!(s.feed(&vec![b'a'; MAX_LINE - 10]).is_empty());
    assert_eq!(s.feed(&[b'b'; 11]), vec![Err(LineError::TooLong)]);
    assert_eq!(s.feed(b"\nKEYS\n"), vec![Ok((Framing::V1, Request::Keys))]);
}
