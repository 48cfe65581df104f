//! The few JavaScript semantics SmartOS's metadata agent leans on.
//!
//! The agent is JavaScript, and some of its answers follow from the
//! language rather than from its own code: what `\s` and `trim()` call
//! whitespace, how a number prints, what `isNaN` says of a boolean or an
//! array, the order `Object.keys` and `JSON.stringify` visit an object's
//! members in. This module gives those rules to [`crate::proto`] and
//! [`crate::keys`] so their answers match byte for byte.

use serde_json::{Map, Value};

/// JavaScript's `\s` (and what `trim()` removes): WhiteSpace and
/// LineTerminator of ECMA-262.
pub(crate) fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// The characters JavaScript's `.` does not match (LineTerminator).
pub(crate) fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// `String.prototype.trim`.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `String.prototype.trimRight`.
pub(crate) fn trim_end(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `Number.prototype.toString()` for a finite number (ECMA-262
/// Number::toString): integers print without a fraction, the shortest
/// digits that read back to the same number, exponent form from 1e21 up
/// and below 1e-6.
pub(crate) fn number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if x < 0.0 {
        return format!("-{}", number_to_string(-x));
    }
    // Rust prints the shortest round-tripping digits, as JavaScript does;
    // only the layout differs. `{:e}` gives "d.ddde<exp>".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    // value = 0.d1d2..dk × 10^n
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    }
}

/// `Number(s)` for a string (ECMA-262 StringToNumber); `None` is NaN.
pub(crate) fn string_to_number(s: &str) -> Option<f64> {
    let s = trim(s);
    if s.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.is_empty() || !rest.chars().all(|c| c.is_digit(radix)) {
                return None;
            }
            return Some(
                rest.chars().fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0))),
            );
        }
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned == "Infinity" {
        return Some(if s.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    // StrUnsignedDecimalLiteral: digits [. digits] | . digits, then an
    // optional exponent. Checked here because Rust's parser also takes
    // "inf" and "nan".
    let b = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

/// `String(v)` for a JSON value as JavaScript would hold it (arrays join
/// their members with ",", null and undefined members print empty).
pub(crate) fn to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Null => String::new(),
                other => to_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => "[object Object]".to_string(),
    }
}

/// Whether `key` is an array index to JavaScript ("0", "1", ... without
/// leading zeros, below 2^32 - 1). Objects list such keys first.
fn is_array_index(key: &str) -> bool {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return false;
    }
    key.bytes().all(|b| b.is_ascii_digit()) && key.parse::<u64>().is_ok_and(|n| n < u64::from(u32::MAX))
}

/// An object's own keys in the order `Object.keys`, `for ... in` and
/// `JSON.stringify` visit them: array indices ascending, then the other
/// keys in insertion order.
pub(crate) fn keys(map: &Map<String, Value>) -> Vec<&str> {
    let mut indices: Vec<(u64, &str)> =
        map.keys().filter(|k| is_array_index(k)).map(|k| (k.parse().unwrap_or(0), k.as_str())).collect();
    indices.sort_unstable();
    let mut out: Vec<&str> = indices.into_iter().map(|(_, k)| k).collect();
    out.extend(map.keys().filter(|k| !is_array_index(k)).map(String::as_str));
    out
}

/// `JSON.stringify(v)` without indentation.
pub(crate) fn stringify(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, &mut out);
    out
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_string(n.as_f64().unwrap_or(f64::NAN))),
        // serde_json escapes exactly what JSON.stringify does: '"', '\\',
        // \b \f \n \r \t and other controls as lower-case \u00xx.
        Value::String(s) => out.push_str(&Value::String(s.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, key) in keys(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.to_string()).to_string());
                out.push(':');
                write_json(&map[key], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-42.0, "-42"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (123456789.125, "123456789.125"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1.5e300, "1.5e+300"),
            (0.000001, "0.000001"),
            (0.0000001, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (9007199254740993.0, "9007199254740992"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(number_to_string(*x), *want, "{x:e}");
        }
    }

    #[test]
    fn strings_convert_to_numbers_as_javascript_converts_them() {
        let cases: &[(&str, Option<f64>)] = &[
            ("", Some(0.0)),
            ("  \n", Some(0.0)),
            (" 12 ", Some(12.0)),
            ("1e3", Some(1000.0)),
            ("-1.5", Some(-1.5)),
            ("+.5", Some(0.5)),
            ("5.", Some(5.0)),
            ("0x1F", Some(31.0)),
            ("0b101", Some(5.0)),
            ("0o17", Some(15.0)),
            ("-0x1", None),
            ("Infinity", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("inf", None),
            ("nan", None),
            ("NaN", None),
            ("1,2", None),
            ("abc", None),
            (".", None),
            ("1e", None),
            ("1_000", None),
        ];
        for (s, want) in cases {
            assert_eq!(string_to_number(s), *want, "{s:?}");
        }
    }

    #[test]
    fn arrays_join_as_javascript_joins_them() {
        assert_eq!(to_string(&json!([])), "");
        assert_eq!(to_string(&json!([1, "a", null, true, [2, 3]])), "1,a,,true,2,3");
        assert_eq!(to_string(&json!([{}])), "[object Object]");
    }

    #[test]
    fn objects_list_index_keys_first() {
        let v = json!({"b": 1, "10": 2, "a": 3, "2": 4, "01": 5, "4294967295": 6});
        let Value::Object(map) = &v else { unreachable!() };
        assert_eq!(keys(map), ["2", "10", "b", "a", "01", "4294967295"]);
        assert_eq!(stringify(&v), r#"{"2":4,"10":2,"b":1,"a":3,"01":5,"4294967295":6}"#);
    }

    #[test]
    fn stringify_escapes_as_json_stringify_does() {
        let v = json!({"s": "q\"b\\n\n\u{1}\u{7f}é", "n": [1.0, 2.5, null, false]});
        assert_eq!(stringify(&v), "{\"s\":\"q\\\"b\\\\n\\n\\u0001\u{7f}é\",\"n\":[1,2.5,null,false]}");
    }

    #[test]
    fn whitespace_is_javascripts() {
        assert_eq!(trim("\u{feff}\u{a0} x \u{3000}\r"), "x");
        assert_eq!(trim_end("x\u{85}"), "x\u{85}", "NEL is not JavaScript whitespace");
        assert!(is_line_terminator('\u{2028}'));
    }
}
