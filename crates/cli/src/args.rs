//! Argument parsing in SmartOS's style, by hand: short options that may be
//! clustered (`-pH`) or carry their value (`-o uuid`, `-ouuid`), long
//! options (`--socket PATH`, `--socket=PATH`), options mixed with
//! positional arguments, `--` to end options, and `key=value` arguments.
//! Also the helpers every tool shares: UUID checks, reading a JSON payload
//! from a file or stdin, and turning `k=v` strings into JSON values.

use serde_json::{Map, Value};
use zonevisor_api::{ImageUuid, InstanceUuid};

use crate::{CliError, Io};

/// One option a command accepts.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// The name the parsed result is looked up by.
    pub name: &'static str,
    /// `-x`.
    pub short: Option<char>,
    /// `--xyz`.
    pub long: Option<&'static str>,
    /// Whether it takes a value.
    pub takes_value: bool,
}

/// An option without a value.
pub const fn flag(name: &'static str, short: Option<char>, long: Option<&'static str>) -> Opt {
    Opt { name, short, long, takes_value: false }
}

/// An option with a value.
pub const fn valued(name: &'static str, short: Option<char>, long: Option<&'static str>) -> Opt {
    Opt { name, short, long, takes_value: true }
}

/// `--socket PATH`: every tool takes it.
pub const SOCKET: Opt = valued("socket", None, Some("socket"));
/// `-h`, `--help`: every tool takes it.
pub const HELP: Opt = flag("help", Some('h'), Some("help"));

/// Where positional arguments end the options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Options may appear anywhere (`vmadm stop <uuid> -F`).
    Intermixed,
    /// The first positional argument ends the options (`zlogin <uuid> ls -l`).
    StopAtPositional,
}

/// The options and positional arguments found.
#[derive(Debug, Default)]
pub struct Parsed {
    opts: Vec<(&'static str, Option<String>)>,
    /// Positional arguments, in order.
    pub positional: Vec<String>,
}

impl Parsed {
    /// Whether option `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// The last value given for option `name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref())
    }

    /// Every value given for option `name`, in order (`-p a=1 -p b=2`).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.opts.iter().filter(|(n, _)| *n == name).filter_map(|(_, v)| v.as_deref()).collect()
    }
}

/// Parses `args` against `opts` (plus [`SOCKET`] and [`HELP`]).
pub fn parse(args: &[String], opts: &[Opt], mode: Mode) -> Result<Parsed, String> {
    let find_long = |name: &str| opts.iter().chain([&SOCKET, &HELP]).find(|o| o.long == Some(name)).copied();
    let find_short = |c: char| opts.iter().chain([&SOCKET, &HELP]).find(|o| o.short == Some(c)).copied();
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            parsed.positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let opt = find_long(name).ok_or_else(|| format!("unknown option --{name}"))?;
            let value = if opt.takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        let v = args.get(i).ok_or_else(|| format!("option --{name} needs a value"))?;
                        i += 1;
                        Some(v.clone())
                    }
                }
            } else if inline.is_some() {
                return Err(format!("option --{name} takes no value"));
            } else {
                None
            };
            parsed.opts.push((opt.name, value));
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            let cluster = &arg[1..];
            for (pos, c) in cluster.char_indices() {
                let opt = find_short(c).ok_or_else(|| format!("unknown option -{c}"))?;
                if !opt.takes_value {
                    parsed.opts.push((opt.name, None));
                    continue;
                }
                let rest = &cluster[pos + c.len_utf8()..];
                let value = if !rest.is_empty() {
                    rest.to_string()
                } else {
                    let v = args.get(i).ok_or_else(|| format!("option -{c} needs a value"))?;
                    i += 1;
                    v.clone()
                };
                parsed.opts.push((opt.name, Some(value)));
                break;
            }
            continue;
        }
        parsed.positional.push(arg.clone());
        if mode == Mode::StopAtPositional {
            parsed.positional.extend(args[i..].iter().cloned());
            break;
        }
    }
    Ok(parsed)
}

/// What comes before a tool's command: `--socket PATH` (or
/// `--socket=PATH`) and a request for help.
pub struct Globals {
    /// The socket given, if any.
    pub socket: Option<String>,
    /// One of the help flags was given.
    pub help: bool,
    /// Index of the first argument after the global options.
    pub next: usize,
}

/// Reads the global options at the front of `argv`; `help` lists the
/// flags that ask for help. Any other option there is a usage error.
pub fn globals(argv: &[String], help: &[&str]) -> Result<Globals, CliError> {
    let mut g = Globals { socket: None, help: false, next: 0 };
    while let Some(arg) = argv.get(g.next) {
        match arg.as_str() {
            a if help.contains(&a) => {
                g.help = true;
                return Ok(g);
            }
            "--socket" => {
                let v = argv.get(g.next + 1).ok_or_else(|| CliError::usage("option --socket needs a value"))?;
                g.socket = Some(v.clone());
                g.next += 2;
            }
            a if a.starts_with("--socket=") => {
                g.socket = Some(a["--socket=".len()..].to_string());
                g.next += 1;
            }
            a if a.starts_with('-') => return Err(CliError::usage(format!("unknown option {a}"))),
            _ => break,
        }
    }
    Ok(g)
}

/// Checks an instance UUID argument (36 characters, hyphenated).
pub fn instance_uuid(arg: Option<&String>, command: &str) -> Result<InstanceUuid, CliError> {
    arg.and_then(|a| a.parse::<InstanceUuid>().ok())
        .ok_or_else(|| CliError::usage(format!("Invalid or missing UUID for {command}")))
}

/// Checks an image UUID argument.
pub fn image_uuid(arg: Option<&String>, command: &str) -> Result<ImageUuid, String> {
    match arg {
        None => Err(format!("missing image UUID for {command}")),
        Some(a) => a.parse::<ImageUuid>().map_err(|_| format!("invalid image UUID \"{a}\" for {command}")),
    }
}

/// Splits `key=value` at the first `=`.
pub fn split_kv(arg: &str) -> Result<(&str, &str), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(format!("Bad argument \"{arg}\": expected property=value")),
    }
}

/// Turns the value of a `k=v` argument into JSON. As in SmartOS, values
/// stay strings (the payload check reads `1024` and `true` for integer and
/// boolean properties, and an empty value clears a property in an update),
/// so `package_version=2` is the string "2". Two additions of zonevisor's:
/// `null` clears as `null` does in a JSON payload, and a JSON object or
/// array stays JSON (`add_nics=[...]`).
pub fn coerce_value(s: &str) -> Value {
    if s == "null" {
        return Value::Null;
    }
    if s.starts_with('{') || s.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Value>(s) {
            if v.is_object() || v.is_array() {
                return v;
            }
        }
    }
    Value::String(s.to_string())
}

/// Builds a JSON object from `k=v` arguments (later keys win).
pub fn kv_object(args: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for arg in args {
        let (k, v) = split_kv(arg)?;
        map.insert(k.to_string(), coerce_value(v));
    }
    Ok(map)
}

/// Reads a JSON document from `file`, or from stdin when `file` is `None`
/// or `-`. Refuses a terminal on stdin: `what` names the action for the
/// message (`create`, `update`...).
pub fn read_json(file: Option<&str>, io: &mut Io, what: &str) -> Result<Value, CliError> {
    let (text, source) = match file {
        None | Some("-") => {
            if io.input_is_tty {
                return Err(CliError::usage(format!("Will not {what} from stdin when stdin is a tty.")));
            }
            let mut buf = String::new();
            io.input.read_to_string(&mut buf).map_err(|e| CliError::failed(format!("Error reading stdin: {e}")))?;
            (buf, "stdin".to_string())
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => (t, path.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CliError::failed(format!("File: {path} does not exist.")))
            }
            Err(e) => return Err(CliError::failed(format!("Error reading {path}: {e}"))),
        },
    };
    serde_json::from_str(&text).map_err(|e| CliError::failed(format!("Invalid JSON payload in {source}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::s;
    use serde_json::json;

    const OPTS: [Opt; 4] = [
        flag("parsable", Some('p'), None),
        flag("noheader", Some('H'), None),
        valued("order", Some('o'), Some("order")),
        valued("sort", Some('s'), None),
    ];

    #[test]
    fn clusters_values_and_intermixed_positionals() {
        let p = parse(&s(&["-pH", "alias=web", "-ouuid,ram", "-s", "-ram", "state=running"]), &OPTS, Mode::Intermixed)
            .unwrap();
        assert!(p.has("parsable") && p.has("noheader"));
        assert_eq!(p.value("order"), Some("uuid,ram"));
        assert_eq!(p.value("sort"), Some("-ram"));
        let q = parse(&s(&["-o", "a", "-s", "x", "-ob"]), &OPTS, Mode::Intermixed).unwrap();
        assert_eq!(q.values("order"), ["a", "b"]);
        assert!(q.values("parsable").is_empty());
        assert_eq!(p.positional, s(&["alias=web", "state=running"]));
    }

    #[test]
    fn long_options_and_double_dash() {
        let p = parse(&s(&["--order=uuid", "--socket", "/s", "--", "-p"]), &OPTS, Mode::Intermixed).unwrap();
        assert_eq!(p.value("order"), Some("uuid"));
        assert_eq!(p.value("socket"), Some("/s"));
        assert_eq!(p.positional, s(&["-p"]));
        assert!(!p.has("parsable"));
    }

    #[test]
    fn stop_at_positional_keeps_command_options() {
        let p = parse(&s(&["--socket=/s", "uuid", "ls", "-l", "--help"]), &[], Mode::StopAtPositional).unwrap();
        assert_eq!(p.value("socket"), Some("/s"));
        assert!(!p.has("help"));
        assert_eq!(p.positional, s(&["uuid", "ls", "-l", "--help"]));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(parse(&s(&["-x"]), &OPTS, Mode::Intermixed).unwrap_err(), "unknown option -x");
        assert_eq!(parse(&s(&["--bogus"]), &OPTS, Mode::Intermixed).unwrap_err(), "unknown option --bogus");
        assert_eq!(parse(&s(&["-o"]), &OPTS, Mode::Intermixed).unwrap_err(), "option -o needs a value");
        assert_eq!(parse(&s(&["--help=1"]), &OPTS, Mode::Intermixed).unwrap_err(), "option --help takes no value");
        // A lone "-" is stdin, a positional.
        assert_eq!(parse(&s(&["-"]), &OPTS, Mode::Intermixed).unwrap().positional, s(&["-"]));
    }

    #[test]
    fn uuid_arguments() {
        let good = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f".to_string();
        assert!(instance_uuid(Some(&good), "start").is_ok());
        let err = instance_uuid(Some(&"web01".to_string()), "start").unwrap_err();
        assert!(matches!(err, CliError::Usage(ref m) if m == "Invalid or missing UUID for start"));
        assert!(instance_uuid(None, "get").is_err());
        assert!(instance_uuid(Some(&"0d6e5b7c8f1a4f5e9a516e1b2c3d4e5f".to_string()), "get").is_err());
        assert!(image_uuid(Some(&"x".to_string()), "get").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn kv_coercion() {
        // Strings, as SmartOS passes them: the payload check reads numbers
        // and booleans from them.
        for plain in ["true", "false", "1024", "-1", "0", "007", "1.5"] {
            assert_eq!(coerce_value(plain), json!(plain));
        }
        assert_eq!(coerce_value("null"), json!(null));
        assert_eq!(coerce_value("web01"), json!("web01"));
        assert_eq!(coerce_value(""), json!(""));
        assert_eq!(coerce_value("-"), json!("-"));
        assert_eq!(coerce_value("True"), json!("True"));
        assert_eq!(coerce_value(r#"{"role":"db"}"#), json!({"role": "db"}));
        assert_eq!(coerce_value(r#"["8.8.8.8"]"#), json!(["8.8.8.8"]));
        assert_eq!(coerce_value("{not json"), json!("{not json"));
    }

    #[test]
    fn kv_objects() {
        let m = kv_object(&s(&["alias=web", "max_physical_memory=512", "alias=db", "note=a=b"])).unwrap();
        assert_eq!(Value::Object(m), json!({"alias": "db", "max_physical_memory": "512", "note": "a=b"}));
        assert!(kv_object(&s(&["alias"])).unwrap_err().contains("expected property=value"));
        assert!(kv_object(&s(&["=x"])).is_err());
    }
}
