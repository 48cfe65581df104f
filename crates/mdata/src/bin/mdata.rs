//! `mdata-get`, `mdata-put`, `mdata-list`, `mdata-delete`: the guest's
//! metadata tools, one binary chosen by the name it is run as (or
//! `mdata <get|put|list|delete> args...`).
//!
//! Output, messages and exit codes are those of joyent's mdata-client, so
//! scripts written for SmartOS guests keep working:
//!
//! | exit | meaning                                   |
//! |------|-------------------------------------------|
//! | 0    | done (`mdata-get` printed the value)      |
//! | 1    | no such key (`No metadata for 'k'`)       |
//! | 2    | the host refused, or could not be reached |
//! | 3    | usage                                     |

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use zonevisor_mdata::client::{Client, Config, Error, Transport, Version};

const SUCCESS: u8 = 0;
const NOT_FOUND: u8 = 1;
const ERROR: u8 = 2;
const USAGE: u8 = 3;

#[derive(Clone, Copy)]
enum Tool {
    Get,
    Put,
    List,
    Delete,
}

impl Tool {
    fn from_name(name: &str) -> Option<Tool> {
        Some(match name.strip_prefix("mdata-").unwrap_or(name) {
            "get" => Tool::Get,
            "put" => Tool::Put,
            "list" => Tool::List,
            "delete" => Tool::Delete,
            _ => return None,
        })
    }
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_else(|| "mdata".to_string());
    let name = argv0.rsplit('/').next().unwrap_or(&argv0).to_string();
    let (tool, prog, shown) = match Tool::from_name(&name) {
        Some(tool) => (tool, name, argv0),
        None => {
            let Some(tool) = args.get(1).and_then(|a| Tool::from_name(&a.to_string_lossy())) else {
                eprintln!("{name}: Usage: {argv0} <get|put|list|delete> [ <keyname> [ <value> ] ]");
                return ExitCode::from(USAGE);
            };
            let sub = args.remove(1).to_string_lossy().into_owned();
            (tool, name.clone(), format!("{argv0} {sub}"))
        }
    };
    let rest = &args[1..];
    ExitCode::from(match tool {
        Tool::Get => get(rest, &prog, &shown),
        Tool::Put => put(rest, &prog, &shown),
        Tool::List => list(),
        Tool::Delete => delete(rest, &prog, &shown),
    })
}

/// `errx(3, "Usage: %s ...", argv[0])`.
fn usage(prog: &str, shown: &str, args: &str) -> u8 {
    eprintln!("{prog}: Usage: {shown} {args}");
    USAGE
}

fn connect() -> Result<Client, u8> {
    let mut cfg = Config::new(Transport::find());
    cfg.notice = Some(|message| eprintln!("{message}"));
    Client::connect_with(cfg).map_err(|e| {
        eprintln!("ERROR: could not initialise protocol: {e}");
        ERROR
    })
}

/// A failure that is not an answer: mdata-client's "could not execute".
/// (mdata-client says GET for every tool; kept, as scripts may match it.)
fn not_executed(e: &Error) -> u8 {
    eprintln!("ERROR: {e}");
    eprintln!("ERROR: could not execute GET");
    ERROR
}

fn run(f: impl FnOnce() -> Result<u8, u8>) -> u8 {
    f().unwrap_or_else(|code| code)
}

fn get(args: &[OsString], prog: &str, shown: &str) -> u8 {
    let Some(key) = args.first() else {
        return usage(prog, shown, "<keyname>");
    };
    let key = key.to_string_lossy();
    run(|| {
        let mut client = connect()?;
        Ok(match client.get(&key) {
            Ok(Some(value)) => {
                let mut out = std::io::stdout().lock();
                let newline = if value.ends_with('\n') { "" } else { "\n" };
                if write!(out, "{value}{newline}").and_then(|()| out.flush()).is_err() {
                    return Err(ERROR);
                }
                SUCCESS
            }
            Ok(None) => {
                eprintln!("No metadata for '{key}'");
                NOT_FOUND
            }
            Err(Error::Host(message)) => {
                eprintln!("Error getting metadata for key '{key}': {message}");
                ERROR
            }
            Err(Error::Unsupported(_)) => {
                eprintln!("ERROR: host does not support GET");
                ERROR
            }
            Err(e) => not_executed(&e),
        })
    })
}

fn list() -> u8 {
    run(|| {
        let mut client = connect()?;
        Ok(match client.keys() {
            Ok(keys) => {
                let text = keys.join("\n");
                let newline = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
                let mut out = std::io::stdout().lock();
                if write!(out, "{text}{newline}").and_then(|()| out.flush()).is_err() {
                    return Err(ERROR);
                }
                SUCCESS
            }
            Err(Error::NotFound) => {
                eprintln!("No metadata");
                NOT_FOUND
            }
            Err(Error::Host(message)) => {
                eprintln!("Error getting metadata: {message}");
                ERROR
            }
            Err(Error::Unsupported(_)) => {
                eprintln!("ERROR: host does not support KEYS");
                ERROR
            }
            Err(e) => not_executed(&e),
        })
    })
}

fn put(args: &[OsString], prog: &str, shown: &str) -> u8 {
    let Some(key) = args.first() else {
        return usage(prog, shown, "<keyname> [ <value> ]");
    };
    let key_text = key.to_string_lossy();
    run(|| {
        let mut client = connect()?;
        if client.version() != Version::V2 {
            eprintln!("ERROR: host does not support PUT");
            return Err(ERROR);
        }
        let value = match args.get(1) {
            Some(value) => value.as_bytes().to_vec(),
            None => {
                let stdin = std::io::stdin();
                if stdin.is_terminal() {
                    eprintln!(
                        "ERROR: either specify the metadata value as the second command-line argument, \
                         or pipe content to stdin."
                    );
                    return Err(ERROR);
                }
                let mut value = Vec::new();
                if let Err(e) = stdin.lock().read_to_end(&mut value) {
                    eprintln!("ERROR: could not read from stdin: {e}");
                    return Err(ERROR);
                }
                value
            }
        };
        // Refused here, in the host's words: a key or value far enough past
        // the host's limit makes a request line it drops unanswered, and
        // the tool would wait for an answer forever.
        let too_big = |what: &str, len: usize, max: usize| {
            eprintln!(
                "Error putting metadata for key '{key_text}': Invalid PUT Request: \
                 the {what} is {len} bytes long, more than the {max} allowed"
            );
            Err(ERROR)
        };
        if key.len() > zonevisor_mdata::MAX_KEY {
            return too_big("key", key.len(), zonevisor_mdata::MAX_KEY);
        }
        if value.len() > zonevisor_mdata::MAX_VALUE {
            return too_big("value", value.len(), zonevisor_mdata::MAX_VALUE);
        }
        Ok(match client.put_bytes(key.as_bytes(), &value) {
            Ok(()) => SUCCESS,
            Err(Error::NotFound) => {
                eprintln!("No metadata for '{key_text}'");
                NOT_FOUND
            }
            Err(Error::Host(message)) => {
                eprintln!("Error putting metadata for key '{key_text}': {message}");
                ERROR
            }
            Err(Error::Unsupported(_)) => {
                eprintln!("ERROR: host does not support PUT");
                ERROR
            }
            Err(e) => not_executed(&e),
        })
    })
}

fn delete(args: &[OsString], prog: &str, shown: &str) -> u8 {
    let Some(key) = args.first() else {
        return usage(prog, shown, "<keyname>");
    };
    let key = key.to_string_lossy();
    run(|| {
        let mut client = connect()?;
        if client.version() != Version::V2 {
            eprintln!("ERROR: host does not support DELETE");
            return Err(ERROR);
        }
        Ok(match client.delete(&key) {
            Ok(()) => SUCCESS,
            Err(Error::NotFound) => {
                eprintln!("No metadata for '{key}'");
                NOT_FOUND
            }
            Err(Error::Host(message)) => {
                eprintln!("Error deleting metadata key '{key}': {message}");
                ERROR
            }
            Err(Error::Unsupported(_)) => {
                eprintln!("ERROR: host does not support DELETE");
                ERROR
            }
            Err(e) => not_executed(&e),
        })
    })
}
