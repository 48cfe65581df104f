//! `sysinfo`: the host's facts as the daemon reports them, in SmartOS's
//! names. Plain `sysinfo` prints the JSON object; `sysinfo -p` prints one
//! shell-readable `Key='value'` line per fact, spaces in keys turned into
//! `_`, nested values as compact JSON.

use serde_json::Value;

use crate::args::{self, Mode};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// Renders `sysinfo -p`: `Key='value'` per top-level fact. Single quotes
/// in values are escaped for the shell (`'\''`); `null` is empty.
pub fn render_parsable(info: &Value) -> Result<String, String> {
    let map = info.as_object().ok_or("sysinfo answer is not a JSON object")?;
    let mut out = String::new();
    for (key, value) in map {
        let text = match value {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            nested => nested.to_string(),
        };
        out.push_str(&key.replace(' ', "_"));
        out.push_str("='");
        out.push_str(&text.replace('\'', "'\\''"));
        out.push_str("'\n");
    }
    Ok(out)
}

/// Runs `sysinfo` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = execute(argv, io);
    crate::report("sysinfo", io, result)
}

fn execute(argv: &[String], io: &mut Io) -> Result<(), CliError> {
    let p = args::parse(argv, &pages::SYSINFO.tool_opts(), Mode::Intermixed).map_err(CliError::usage)?;
    if p.has("help") {
        io.out.write_all(doc::render_help(&pages::SYSINFO).as_bytes())?;
        return Ok(());
    }
    if let Some(extra) = p.positional.first() {
        return Err(CliError::usage(format!("unexpected argument \"{extra}\"")));
    }
    let info =
        crate::client(p.value("socket"), io).sysinfo().map_err(|e| CliError::failed(describe_client_error(&e)))?;
    if p.has("parsable") {
        let text = render_parsable(&info).map_err(CliError::failed)?;
        io.out.write_all(text.as_bytes())?;
    } else {
        let text = serde_json::to_string_pretty(&info).unwrap_or_default();
        writeln!(io.out, "{text}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeDaemon, TestIo};
    use serde_json::json;

    fn facts() -> Value {
        json!({
            "UUID": "44454c4c-5000-1036-8036-b4c04f4a4b32",
            "Hostname": "node1",
            "Live Image": "20240101T000000Z",
            "CPU Core Count": 8,
            "VM Capable": true,
            "Boot Time": null,
            "Zpool": "zones",
            "Note": "it's",
            "Disks": {"sda": {"Size in GB": 500}},
            "Network Interfaces": {"eth0": {"MAC Address": "52:54:00:12:34:56", "NIC Names": ["admin"]}}
        })
    }

    #[test]
    fn parsable_lines() {
        let text = render_parsable(&facts()).unwrap();
        let expected = "UUID='44454c4c-5000-1036-8036-b4c04f4a4b32'\n\
                        Hostname='node1'\n\
                        Live_Image='20240101T000000Z'\n\
                        CPU_Core_Count='8'\n\
                        VM_Capable='true'\n\
                        Boot_Time=''\n\
                        Zpool='zones'\n\
                        Note='it'\\''s'\n\
                        Disks='{\"sda\":{\"Size in GB\":500}}'\n\
                        Network_Interfaces='{\"eth0\":{\"MAC Address\":\"52:54:00:12:34:56\",\"NIC Names\":[\"admin\"]}}'\n";
        assert_eq!(text, expected);
        assert!(render_parsable(&json!([1])).is_err());
    }

    #[test]
    fn prints_json_or_parsable_from_the_daemon() {
        let d = FakeDaemon::start(|req| {
            assert_eq!(req.path, "/v1/sysinfo");
            (200, json!({"UUID": "u", "Live Image": "x"}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["sysinfo"]), 0, "{}", t.err());
        assert_eq!(t.out(), "{\n  \"UUID\": \"u\",\n  \"Live Image\": \"x\"\n}\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["sysinfo", "-p", "--socket", &d.path()]), 0, "{}", t.err());
        assert_eq!(t.out(), "UUID='u'\nLive_Image='x'\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["sysinfo", "-x"]), 2);
        assert_eq!(t.err(), "sysinfo: unknown option -x\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["sysinfo", "-h"]), 0);
        assert!(t.out().starts_with("Usage: sysinfo"));
    }
}
