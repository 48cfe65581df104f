use super::*;

fn v2(reqid: &str) -> Framing {
    Framing::V2 { reqid: reqid.to_string() }
}

fn get(key: &str) -> Request {
    Request::Get { key: key.to_string() }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put { key: key.to_string(), value: value.to_string() }
}

fn malformed(command: &str, problem: Option<&str>) -> Request {
    Request::Malformed { command: command.to_string(), problem: problem.map(str::to_string) }
}

/// A V2 request frame built here, for the cases no real client sends.
fn frame(body: &str) -> Vec<u8> {
    format!("V2 {} {:08x} {body}", body.len(), crc32(body.as_bytes())).into_bytes()
}

#[test]
fn crc32_is_ieee() {
    // The check value of CRC-32/ISO-HDLC, the CRC zlib and crc32.js compute.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn mdata_client_requests_parse() {
    // Lines captured from joyent's mdata-client (built from its repository,
    // run against a capture server on a pty standing in for /dev/ttyS1).
    // Each tool first sends "\n" and "NEGOTIATE V2\n", then one frame.
    let cases: Vec<(&[u8], Framing, Request)> = vec![
        // mdata-get root_authorized_keys
        (b"V2 41 c0288eb2 dae4242d GET cm9vdF9hdXRob3JpemVkX2tleXM=\n", v2("dae4242d"), get("root_authorized_keys")),
        // mdata-get sdc:uuid
        (b"V2 25 85b74227 e7629e44 GET c2RjOnV1aWQ=\n", v2("e7629e44"), get("sdc:uuid")),
        // mdata-get nope
        (b"V2 21 15f88143 e79ed057 GET bm9wZQ==\n", v2("e79ed057"), get("nope")),
        // mdata-list
        (b"V2 13 81441c15 f288688a KEYS\n", v2("f288688a"), Request::Keys),
        // mdata-put foo bar
        (b"V2 25 7cd01bd3 c966d278 PUT Wm05diBZbUZ5\n", v2("c966d278"), put("foo", "bar")),
        // printf 'line1\nline2\n' | mdata-put user-data
        (
            b"V2 53 906fbfc0 e74568f5 PUT ZFhObGNpMWtZWFJoIGJHbHVaVEVLYkdsdVpUSUs=\n",
            v2("e74568f5"),
            put("user-data", "line1\nline2\n"),
        ),
        // mdata-put sdc:foo bar
        (b"V2 37 4fae520f be15d386 PUT YzJSak9tWnZidz09IFltRnk=\n", v2("be15d386"), put("sdc:foo", "bar")),
        // mdata-delete foo
        (b"V2 20 d7e785a5 478efef1 DELETE Zm9v\n", v2("478efef1"), Request::Delete { key: "foo".to_string() }),
        // The opening of every session, and V1 requests after a host
        // answered FAILURE to NEGOTIATE.
        (b"NEGOTIATE V2\n", Framing::V1, Request::Negotiate { version: "V2".to_string() }),
        (b"GET user-script\n", Framing::V1, get("user-script")),
        (b"KEYS\n", Framing::V1, Request::Keys),
    ];
    for (line, framing, request) in cases {
        assert_eq!(parse_line(line), Ok((framing, request)), "{}", String::from_utf8_lossy(line));
    }
    assert_eq!(parse_line(b"\n"), Err(LineError::Blank), "the opening empty line");
}

#[test]
fn cloud_init_requests_parse() {
    // Lines captured from cloud-init 22.4.2 (Debian 12), JoyentMetadataSocketClient
    // and JoyentMetadataSerialClient: get, get of a missing key, list, put, delete.
    let cases: Vec<(&[u8], Framing, Request)> = vec![
        (b"V2 41 57ffccca c386bbc4 GET cm9vdF9hdXRob3JpemVkX2tleXM=\n", v2("c386bbc4"), get("root_authorized_keys")),
        (b"V2 21 2abab09e 414c343c GET bm9wZQ==\n", v2("414c343c"), get("nope")),
        (b"V2 13 e20ac7a9 7311d8a3 KEYS\n", v2("7311d8a3"), Request::Keys),
        (b"V2 25 083c7273 a6cecc1b PUT Wm05diBZbUZ5\n", v2("a6cecc1b"), put("foo", "bar")),
        (b"V2 20 15627d80 c9e9c616 DELETE Zm9v\n", v2("c9e9c616"), Request::Delete { key: "foo".to_string() }),
    ];
    for (line, framing, request) in cases {
        assert_eq!(parse_line(line), Ok((framing, request)), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn requests_encode_as_mdata_client_writes_them() {
    // The same reqids as the captured lines above give the same bytes.
    assert_eq!(
        encode_request(&v2("dae4242d"), "GET", Some(b"root_authorized_keys")),
        b"V2 41 c0288eb2 dae4242d GET cm9vdF9hdXRob3JpemVkX2tleXM=\n"
    );
    assert_eq!(encode_request(&v2("f288688a"), "KEYS", None), b"V2 13 81441c15 f288688a KEYS\n");
    assert_eq!(
        encode_request(&v2("c966d278"), "PUT", Some(&put_argument(b"foo", b"bar"))),
        b"V2 25 7cd01bd3 c966d278 PUT Wm05diBZbUZ5\n"
    );
    assert_eq!(
        encode_request(&v2("e74568f5"), "PUT", Some(&put_argument(b"user-data", b"line1\nline2\n"))),
        b"V2 53 906fbfc0 e74568f5 PUT ZFhObGNpMWtZWFJoIGJHbHVaVEVLYkdsdVpUSUs=\n"
    );
    assert_eq!(encode_request(&v2("478efef1"), "DELETE", Some(b"foo")), b"V2 20 d7e785a5 478efef1 DELETE Zm9v\n");
    // An empty argument is left out: "x GET " would be trimmed and dropped.
    assert_eq!(
        encode_request(&v2("x"), "GET", Some(b"")),
        frame("x GET").into_iter().chain([b'\n']).collect::<Vec<_>>()
    );
    assert_eq!(parse_line(&encode_request(&v2("1"), "GET", Some(b""))), Ok((v2("1"), get(""))));
    assert_eq!(encode_request(&Framing::V1, "GET", Some(b"user-script")), b"GET user-script\n");
    assert_eq!(encode_request(&Framing::V1, "NEGOTIATE", Some(b"V2")), b"NEGOTIATE V2\n");
}

#[test]
fn replies_encode_as_smartos_writes_them() {
    // V2 frames computed from agent.js's format_v2_response
    // ("V2 " + len + " " + crc32_calc(resp) + " " + resp) with Python's
    // binascii.crc32; the first is the example in mdata-client's proto.c.
    let cases: Vec<(Framing, Reply, &[u8])> = vec![
        (v2("dc4fae17"), Reply::Success(Some("[]".into())), b"V2 21 265ae1d8 dc4fae17 SUCCESS W10=\n"),
        (
            v2("dae4242d"),
            Reply::Success(Some("ssh-rsa AAAA test".into())),
            b"V2 41 271bbd34 dae4242d SUCCESS c3NoLXJzYSBBQUFBIHRlc3Q=\n",
        ),
        (v2("e79ed057"), Reply::NotFound, b"V2 17 03ddab56 e79ed057 NOTFOUND\n"),
        (
            v2("be15d386"),
            Reply::Failure(Some("Cannot update the \"sdc\" Namespace.".into())),
            b"V2 65 3092ba6d be15d386 FAILURE Q2Fubm90IHVwZGF0ZSB0aGUgInNkYyIgTmFtZXNwYWNlLg==\n",
        ),
        (v2("c966d278"), Reply::Success(Some("OK".into())), b"V2 21 504f8382 c966d278 SUCCESS T0s=\n"),
        (
            v2("f288688a"),
            Reply::Success(Some("root_authorized_keys\nuser-script".into())),
            b"V2 61 cc2f4ddc f288688a SUCCESS cm9vdF9hdXRob3JpemVkX2tleXMKdXNlci1zY3JpcHQ=\n",
        ),
        // `if (body)`: an empty value or message sends no payload.
        (v2("f288688a"), Reply::Success(Some(String::new())), b"V2 16 4a6129a0 f288688a SUCCESS\n"),
        (v2("f288688a"), Reply::Success(None), b"V2 16 4a6129a0 f288688a SUCCESS\n"),
        (v2("f288688a"), Reply::Failure(None), b"V2 16 04faf5d3 f288688a FAILURE\n"),
        // V1: returnit's 'SUCCESS\n' + value.replace(/^\./mg, '..') + '\n.\n'.
        (
            Framing::V1,
            Reply::Success(Some("#!/bin/sh\n.dot\necho hi\n".into())),
            b"SUCCESS\n#!/bin/sh\n..dot\necho hi\n\n.\n",
        ),
        (Framing::V1, Reply::Success(Some(".a\r.b\u{2028}.c".into())), "SUCCESS\n..a\r..b\u{2028}..c\n.\n".as_bytes()),
        (Framing::V1, Reply::Success(Some("a.b".into())), b"SUCCESS\na.b\n.\n"),
        (Framing::V1, Reply::Success(None), b"SUCCESS\n\n.\n"),
        (Framing::V1, Reply::NotFound, b"NOTFOUND\n"),
        (Framing::V1, Reply::Failure(Some("not sent in V1".into())), b"FAILURE\n"),
        (Framing::V1, Reply::V2Ok, b"V2_OK\n"),
        (Framing::V1, Reply::InvalidCommand, b"invalid command\n"),
        (v2("0"), Reply::V2Ok, b"V2_OK\n"),
        (v2("0"), Reply::InvalidCommand, b"invalid command\n"),
    ];
    for (framing, reply, want) in cases {
        assert_eq!(encode(&framing, &reply), want, "{framing:?} {reply:?}");
    }
}

#[test]
fn mdata_client_reads_what_the_host_writes() {
    let line = encode(&v2("dae4242d"), &Reply::Success(Some("ssh-rsa AAAA test\n".into())));
    let frame = parse_frame(line.strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(
        frame,
        Frame { reqid: "dae4242d".into(), code: "SUCCESS".into(), payload: Some(b"ssh-rsa AAAA test\n".to_vec()) }
    );
    let frame = parse_frame(b"V2 17 03ddab56 e79ed057 NOTFOUND").unwrap();
    assert_eq!(frame, Frame { reqid: "e79ed057".into(), code: "NOTFOUND".into(), payload: None });
}

#[test]
fn the_client_parser_refuses_bad_frames() {
    let good = "V2 21 265ae1d8 dc4fae17 SUCCESS W10=";
    assert!(parse_frame(good.as_bytes()).is_ok());
    let cases: &[(&str, FrameError)] = &[
        ("SUCCESS", FrameError::NotV2),
        ("V2_OK", FrameError::NotV2),
        ("V2 x 265ae1d8 dc4fae17 SUCCESS W10=", FrameError::Length),
        ("V2 0 265ae1d8 dc4fae17 SUCCESS W10=", FrameError::Length),
        ("V2 21 zz dc4fae17 SUCCESS W10=", FrameError::Crc),
        ("V2 22 265ae1d8 dc4fae17 SUCCESS W10=", FrameError::Mismatch),
        ("V2 21 265ae1d9 dc4fae17 SUCCESS W10=", FrameError::Mismatch),
        ("V2 21 265ae1d8 dc4fae17 SUCCESS W11=", FrameError::Mismatch),
        ("V2 21 265ae1d8 dc4fae17 SUCCESS W10=\r", FrameError::Mismatch),
    ];
    for (line, want) in cases {
        assert_eq!(parse_frame(line.as_bytes()), Err(*want), "{line}");
    }
    let body = "dc4fae17 SUCCESS !!!!";
    let line = format!("V2 {} {:08x} {body}", body.len(), crc32(body.as_bytes()));
    assert_eq!(parse_frame(line.as_bytes()), Err(FrameError::Base64));
    let body = "dc4fae17";
    let line = format!("V2 {} {:08x} {body}", body.len(), crc32(body.as_bytes()));
    assert_eq!(parse_frame(line.as_bytes()), Err(FrameError::Missing));
}

#[test]
fn lines_that_are_not_commands_are_invalid() {
    // agent.js: no /^([^\s]+)\s?(.*)/ match, or GET/NEGOTIATE without an
    // argument, answers "invalid command".
    // An empty line (or spaces only) is the same answer, told apart: a
    // serial host answers those alone.
    for line in [&b""[..], b"\n", b"\r", b"\r\n", b"   "] {
        assert_eq!(parse_line(line), Err(LineError::Blank), "{:?}", String::from_utf8_lossy(line));
    }
    for line in [&b" GET foo"[..], b"\tKEYS", b"GET", b"GET   ", b"NEGOTIATE", b"GET \rfoo"] {
        assert_eq!(parse_line(line), Err(LineError::Invalid), "{:?}", String::from_utf8_lossy(line));
    }
    assert_eq!(LineError::Invalid.reply(), Some(&b"invalid command\n"[..]));
    assert_eq!(LineError::Blank.reply(), Some(&b"invalid command\n"[..]));
    assert_eq!(LineError::BadFrame.reply(), None);
    assert_eq!(LineError::TooLong.reply(), None);
}

#[test]
fn v1_lines_split_as_the_agent_splits_them() {
    let cases: Vec<(&[u8], Request)> = vec![
        (b"GET foo\r", get("foo")),
        (b"GET  foo", get(" foo")),
        (b"GET foo bar", get("foo bar")),
        // `\s?` takes one whitespace character, `.` stops at a line terminator.
        (b"GET  \rfoo", get(" ")),
        (b"GET foo\rbar", get("foo")),
        (b"NEGOTIATE V2\r", Request::Negotiate { version: "V2".into() }),
        (b"NEGOTIATE V1", Request::Negotiate { version: "V1".into() }),
        (b"NEGOTIATE  V2", Request::Negotiate { version: " V2".into() }),
        (b"KEYS extra", Request::Keys),
        // PUT and DELETE do not exist in V1.
        (b"PUT foo bar", Request::Unknown { command: "PUT".into() }),
        (b"DELETE foo", Request::Unknown { command: "DELETE".into() }),
        (b"get foo", Request::Unknown { command: "get".into() }),
        (b"\0GET foo", Request::Unknown { command: "\0GET".into() }),
        (b"GET foo\0", get("foo\0")),
        (b"garbage\x01\x02", Request::Unknown { command: "garbage\u{1}\u{2}".into() }),
        (b"GET \xff\xfe", get("\u{fffd}\u{fffd}")),
    ];
    for (line, request) in cases {
        assert_eq!(parse_line(line), Ok((Framing::V1, request)), "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn v2_frames_with_a_bad_shape_length_or_crc_are_dropped() {
    let good = "V2 21 15f88143 e79ed057 GET bm9wZQ==";
    assert!(parse_line(good.as_bytes()).is_ok());
    let bad: Vec<Vec<u8>> = vec![
        b"V2".to_vec(),
        b"V2 ".to_vec(),
        b"V2 garbage".to_vec(),
        b"V2 21 15f88143 e79ed057".to_vec(),
        // wrong length, both ways, and zero
        b"V2 22 15f88143 e79ed057 GET bm9wZQ==".to_vec(),
        b"V2 20 15f88143 e79ed057 GET bm9wZQ==".to_vec(),
        b"V2 0 15f88143 e79ed057 GET bm9wZQ==".to_vec(),
        b"V2 99999999999999999999999 15f88143 e79ed057 GET bm9wZQ==".to_vec(),
        // wrong CRC, upper-case CRC, a changed body
        b"V2 21 15f88144 e79ed057 GET bm9wZQ==".to_vec(),
        b"V2 21 15F88143 e79ed057 GET bm9wZQ==".to_vec(),
        b"V2 21 15f88143 e79ed057 GET bm9wZA==".to_vec(),
        b"V2 21 15f88143 E79ED057 GET bm9wZQ==".to_vec(),
        // a NUL inside the body changes it
        b"V2 21 15f88143 e79ed057 GET bm9w\0Q==".to_vec(),
    ];
    for line in bad {
        assert_eq!(parse_line(&line), Err(LineError::BadFrame), "{:?}", String::from_utf8_lossy(&line));
    }
}

#[test]
fn a_crc_must_have_its_eight_digits() {
    // crc32_calc pads to 8 digits and compares strings: "1234" is not "00001234".
    let (reqid, crc) = (0u32..)
        .map(|i| format!("{i:08x}"))
        .map(|r| {
            let c = crc32(format!("{r} KEYS").as_bytes());
            (r, c)
        })
        .find(|(_, c)| *c < 0x1000_0000)
        .unwrap();
    let padded = format!("V2 13 {crc:08x} {reqid} KEYS");
    let short = format!("V2 13 {crc:x} {reqid} KEYS");
    assert_eq!(parse_line(padded.as_bytes()), Ok((v2(&reqid), Request::Keys)));
    assert_eq!(parse_line(short.as_bytes()), Err(LineError::BadFrame));
}

#[test]
fn v2_frames_are_found_as_the_agents_unanchored_regex_finds_them() {
    let want = Ok((v2("e79ed057"), get("nope")));
    // Junk before the length, a length glued to junk, extra spaces and
    // tabs between the header fields, a trailing \r: all accepted.
    for line in [
        "V2 junk 21 15f88143 e79ed057 GET bm9wZQ==",
        "V2 x21 15f88143 e79ed057 GET bm9wZQ==",
        "V2  21\t15f88143   e79ed057 GET bm9wZQ==",
        "V2 21 15f88143 e79ed057 GET bm9wZQ==\r",
        "V2\t21 15f88143 e79ed057 GET bm9wZQ==",
    ] {
        assert_eq!(parse_line(line.as_bytes()), want, "{line:?}");
    }
    // The body is read as reqid + ' ' + rest: spaces after the reqid are
    // not part of what the length and CRC cover.
    let body = "e79ed057 GET bm9wZQ==";
    let line = format!("V2 {} {:08x} e79ed057   GET bm9wZQ==", body.len(), crc32(body.as_bytes()));
    assert_eq!(parse_line(line.as_bytes()), want);
    // Any lower-case hex request id is echoed, whatever its length.
    assert_eq!(parse_line(&frame("abc KEYS")), Ok((v2("abc"), Request::Keys)));
}

#[test]
fn v2_lengths_and_crcs_are_of_javascript_strings() {
    // "abcd1234 GÉT": 12 UTF-16 units; crc32.js takes the low byte of each
    // (Python: binascii.crc32(b"abcd1234 G\xc9T") = f8c8e766).
    let line = "V2 12 f8c8e766 abcd1234 G\u{c9}T";
    assert_eq!(parse_line(line.as_bytes()), Ok((v2("abcd1234"), Request::Unknown { command: "G\u{c9}T".into() })));
}

#[test]
fn v2_commands_and_payloads() {
    let cases: Vec<(&str, Request)> = vec![
        ("0 KEYS", Request::Keys),
        ("0 KEYS a2V5", Request::Keys),
        ("0 GET", get("")),
        ("0 GET a2V5", get("key")),
        ("0 GET IGtleSA=", get(" key ")),
        // padding is optional, as it is to Node
        ("0 GET Zm9vYg", get("foob")),
        ("0 DELETE Zm9v", Request::Delete { key: "foo".into() }),
        ("0 DELETE", Request::Delete { key: String::new() }),
        // NEGOTIATE is V1 only; commands are case-sensitive
        ("0 NEGOTIATE VjI=", Request::Unknown { command: "NEGOTIATE".into() }),
        ("0 get a2V5", Request::Unknown { command: "get".into() }),
        ("0 FROB", Request::Unknown { command: "FROB".into() }),
        // bad base64, bad UTF-8
        ("0 GET !!!!", malformed("GET", Some("the key is not valid base64"))),
        ("0 GET /w==", malformed("GET", Some("the key is not valid UTF-8"))),
        ("0 DELETE a2V5 a2V5", malformed("DELETE", Some("the key is not valid base64"))),
        // PUT: base64 of "b64(key) b64(value)"
        ("0 PUT", malformed("PUT", None)),
        ("0 PUT Wm05dg==", malformed("PUT", None)), // "Zm9v": one term
        ("0 PUT Wm05diBZbUZ5IGVBPT0=", malformed("PUT", None)), // "Zm9v YmFy eA==": three terms
        ("0 PUT Wm05diAgWW1GeQ==", malformed("PUT", None)), // "Zm9v  YmFy": split(' ') gives three
        ("0 PUT Wm05d!!!", malformed("PUT", Some("the payload is not valid base64"))),
        ("0 PUT Wm05diAhISEh", malformed("PUT", Some("the value is not valid base64"))), // "Zm9v !!!!"
        ("0 PUT ISEhISBZbUZ5", malformed("PUT", Some("the key is not valid base64"))),   // "!!!! YmFy"
        ("0 PUT Wm05diAvdz09", malformed("PUT", Some("the value is not valid UTF-8"))),  // "Zm9v /w=="
        ("0 PUT IFptOXYgWW1GeSA=", put("foo", "bar")),                                   // " Zm9v YmFy "
        // "Zm9v ": the payload is trimmed before it is split, so an empty
        // value (what `mdata-put foo ''` sends) is one term.
        ("0 PUT Wm05diA=", malformed("PUT", None)),
        ("0 PUT SUdadmJ5QT0gWW1GeQ==", put(" foo ", "bar")), // "IGZvbyA= YmFy"
    ];
    for (body, request) in cases {
        let line = frame(body);
        assert_eq!(parse_line(&line), Ok((v2("0"), request)), "{body:?}");
    }
    // The line is trimmed before the length is checked: a body that ends
    // in whitespace no longer has the length its header says.
    assert_eq!(parse_line(&frame("0 GET a2V5\t")), Err(LineError::BadFrame));
}

#[test]
fn lines_longer_than_the_limit_are_refused() {
    let mut line = b"GET ".to_vec();
    line.resize(MAX_LINE, b'a');
    assert!(parse_line(&line).is_ok());
    line.push(b'\n');
    assert!(parse_line(&line).is_ok(), "the newline is not counted");
    line.pop();
    line.push(b'a');
    assert_eq!(parse_line(&line), Err(LineError::TooLong));
}

#[test]
fn the_largest_put_a_guest_may_make_fits_in_a_line() {
    let key = "k".repeat(crate::MAX_KEY);
    let value = "v".repeat(crate::MAX_VALUE);
    let line = encode_request(&v2("01234567"), "PUT", Some(&put_argument(key.as_bytes(), value.as_bytes())));
    assert!(line.len() - 1 <= MAX_LINE, "{} bytes", line.len());
    assert_eq!(parse_line(&line), Ok((v2("01234567"), put(&key, &value))));
}

#[test]
fn a_line_of_many_number_like_words_parses_in_linear_time() {
    // "1 1 1 ...": every word could start a match; a backtracking search
    // would take minutes here.
    let mut line = b"V2 ".to_vec();
    while line.len() < MAX_LINE - 2 {
        line.extend_from_slice(b"1 ");
    }
    assert_eq!(parse_line(&line), Err(LineError::BadFrame));
    let digits = [b"V2 ".to_vec(), vec![b'7'; MAX_LINE - 3]].concat();
    assert_eq!(parse_line(&digits), Err(LineError::BadFrame));
}
