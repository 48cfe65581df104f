//! `nictagadm`: add, update, delete, test and list nic tags, and list the
//! instances with a NIC on one, with SmartOS's commands, table and exit
//! codes.
//!
//! A nic tag names a host network: a physical link zonevisor builds a
//! bridge over (`normal`), a Linux bridge the host already has (`bridge`),
//! or a host-local switch (`etherstub`, `add -l`). Where SmartOS takes a
//! MAC address, the link may be given by MAC or by name.
//!
//! What SmartOS calls a usage error exits 2 (an unknown option, a missing
//! name); what its script calls fatal exits 1 (a bad property, an MTU out
//! of range, contradictory options), as do the daemon's refusals.
//!
//! `list` prints SmartOS's four fixed columns (`%-14s %-18s %-14s %-16s`,
//! a longer value pushing the rest of its line right) or, with `-p`, the
//! same four fields joined by the delimiter. Neither has room for what
//! zonevisor adds to a tag (its bridge, MTU and managed network), and
//! scripts read the parsable form by position, so `-j` prints every tag
//! whole as JSON instead.

use std::collections::BTreeSet;

use zonevisor_api::{ClientError, NicTag, NicTagRequest, NicTagUpdate};

use crate::args::{self, Mode};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// `list`'s column widths: SmartOS's `%-14s %-18s %-14s %-16s`.
pub const LIST_WIDTHS: [usize; 4] = [14, 18, 14, 16];
/// `list`'s header.
pub const LIST_HEADER: [&str; 4] = ["NAME", "MACADDRESS", "LINK", "TYPE"];
/// The smallest and largest MTU a nic tag may have.
pub const MTU_RANGE: (u32, u32) = (1500, 9000);

/// Which tags `list` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every tag.
    All,
    /// `-l`: only etherstubs.
    Etherstubs,
    /// `-L`: all but etherstubs.
    NoEtherstubs,
}

/// How `list` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The fixed-width table, with or without its header (`-H`).
    Table {
        /// Print the header line.
        header: bool,
    },
    /// `-p [-d delim]`: the fields joined by `delim`, no header.
    Parsable {
        /// The delimiter (`:` unless `-d` says otherwise).
        delim: String,
    },
    /// `-j`: the tags as a JSON array.
    Json,
}

/// `nictagadm list` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOpts {
    /// Which tags.
    pub which: Which,
    /// How.
    pub output: Output,
}

/// A parsed `nictagadm` command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
    /// `add [-l] [-p prop=value,...] <name> [link|mac]`.
    Add(NicTagRequest),
    /// `update [-p prop=value,...] <name> [link|mac]`.
    Update {
        /// The tag.
        name: String,
        /// What changes.
        update: NicTagUpdate,
    },
    /// `delete [-f] <name>`.
    Delete {
        /// The tag.
        name: String,
        /// `-f`: even while NICs use it.
        force: bool,
    },
    /// `exists [-l] <name>...`.
    Exists {
        /// The tags to look for.
        names: Vec<String>,
        /// `-l`: print only the missing names, without `invalid tag:`.
        names_only: bool,
    },
    /// `list ...`.
    List(ListOpts),
    /// `vms <name>`.
    Vms {
        /// The tag.
        name: String,
    },
}

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    /// `--socket`.
    pub socket: Option<String>,
    /// What to do.
    pub command: Command,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::usage(message)
}

/// Whether `s` is a MAC address as SmartOS writes them: six groups of one
/// or two hex digits separated by colons.
pub fn is_mac(s: &str) -> bool {
    let groups: Vec<&str> = s.split(':').collect();
    groups.len() == 6 && groups.iter().all(|g| (1..=2).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A MAC address with every group two lowercase digits
/// (`0:C:29:a:b:FF` → `00:0c:29:0a:0b:ff`); anything else (a link name)
/// unchanged.
pub fn normalize_link(s: &str) -> String {
    if !is_mac(s) {
        return s.to_string();
    }
    s.split(':').map(|g| format!("{:0>2}", g.to_ascii_lowercase())).collect::<Vec<_>>().join(":")
}

/// Checks an MTU as SmartOS does: digits only, 1500 to 9000.
pub fn parse_mtu(value: &str) -> Result<u32, CliError> {
    let mtu = match value.parse::<u32>() {
        Ok(m) if value.bytes().all(|b| b.is_ascii_digit()) => m,
        _ => return Err(CliError::failed(format!("invalid mtu: {value}"))),
    };
    if !(MTU_RANGE.0..=MTU_RANGE.1).contains(&mtu) {
        return Err(CliError::failed(format!("mtu must be between {}-{}", MTU_RANGE.0, MTU_RANGE.1)));
    }
    Ok(mtu)
}

/// What `-p prop=value,...` set (each `-p` adds to the ones before).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Props {
    /// `mac=` (or `link=`): the link, by MAC address or name.
    pub link: Option<String>,
    /// `mtu=`.
    pub mtu: Option<u32>,
}

/// Parses the values of every `-p`.
pub fn parse_props(values: &[&str]) -> Result<Props, CliError> {
    let mut props = Props::default();
    for prop in values.iter().flat_map(|v| v.split(',')) {
        let (key, value) = match prop.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => (k, v),
            _ => return Err(CliError::failed(format!("invalid property: {prop}"))),
        };
        match key {
            "mac" | "link" => props.link = Some(normalize_link(value)),
            "mtu" => props.mtu = Some(parse_mtu(value)?),
            _ => return Err(CliError::failed(format!("unknown property: {key} (properties are mac and mtu)"))),
        }
    }
    Ok(props)
}

/// The tag's name and link from the positional arguments of `add` and
/// `update`, the link also possibly from `-p mac=`.
fn name_and_link(p: &args::Parsed, props: &Props, command: &str) -> Result<(String, Option<String>), CliError> {
    let (name, link) = match p.positional.as_slice() {
        [] => return Err(usage(format!("{command}: missing nic tag name"))),
        [name] => (name, None),
        [name, link] => (name, Some(normalize_link(link))),
        [_, _, extra, ..] => return Err(usage(format!("{command}: unexpected argument \"{extra}\""))),
    };
    if link.is_some() && props.link.is_some() {
        return Err(CliError::failed("the link is given twice: as an argument and with -p mac="));
    }
    Ok((name.clone(), link.or_else(|| props.link.clone())))
}

/// The one name `delete` and `vms` take.
fn one_name(p: &args::Parsed, command: &str) -> Result<String, CliError> {
    match p.positional.as_slice() {
        [] => Err(usage(format!("{command}: missing nic tag name"))),
        [name] => Ok(name.clone()),
        [_, extra, ..] => Err(usage(format!("{command}: unexpected argument \"{extra}\""))),
    }
}

/// Parses `nictagadm`'s arguments (without the program name).
pub fn parse_args(argv: &[String]) -> Result<Invocation, CliError> {
    let g = args::globals(argv, &["-h", "--help", "-?"])?;
    let (mut socket, i) = (g.socket, g.next);
    if g.help {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let Some(cmd) = argv.get(i) else {
        return Err(usage("no subcommand given"));
    };
    let rest = &argv[i + 1..];
    if rest.iter().take_while(|a| *a != "--").any(|a| matches!(a.as_str(), "-h" | "--help" | "-?")) {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let parse = |name: &str| args::parse(rest, &pages::NICTAGADM.opts(name), Mode::Intermixed).map_err(usage);
    let (parsed, command) = match cmd.as_str() {
        "help" => (args::Parsed::default(), Command::Help),
        "add" => {
            let p = parse(cmd)?;
            let props = parse_props(&p.values("props"))?;
            let (name, link) = name_and_link(&p, &props, cmd)?;
            let local = p.has("local");
            if local && link.is_some() {
                return Err(CliError::failed("an etherstub (-l) is host-local: it takes no link or mac address"));
            }
            if !local && link.is_none() {
                return Err(CliError::failed(format!(
                    "nic tag '{name}' needs a link or mac address (or -l for an etherstub)"
                )));
            }
            if local && props.mtu.is_some() {
                return Err(CliError::failed("an etherstub (-l) takes no mtu"));
            }
            let req = NicTagRequest { name, local, link, mtu: props.mtu };
            (p, Command::Add(req))
        }
        "update" => {
            let p = parse(cmd)?;
            let props = parse_props(&p.values("props"))?;
            let (name, link) = name_and_link(&p, &props, cmd)?;
            if link.is_none() && props.mtu.is_none() {
                return Err(CliError::failed("nothing to update (give a link or mac address, or -p mtu=N)"));
            }
            (p, Command::Update { name, update: NicTagUpdate { link, mtu: props.mtu } })
        }
        "delete" => {
            let p = parse(cmd)?;
            let name = one_name(&p, cmd)?;
            let force = p.has("force");
            (p, Command::Delete { name, force })
        }
        "exists" => {
            let p = parse(cmd)?;
            if p.positional.is_empty() {
                return Err(CliError::failed("exists: no nic tag specified"));
            }
            let command = Command::Exists { names: p.positional.clone(), names_only: p.has("names") };
            (p, command)
        }
        "list" => {
            let p = parse(cmd)?;
            if let Some(extra) = p.positional.first() {
                return Err(usage(format!("list: unexpected argument \"{extra}\"")));
            }
            let which = match (p.has("local"), p.has("nolocal")) {
                (true, true) => return Err(CliError::failed("-l (only etherstubs) and -L (no etherstubs) contradict")),
                (true, false) => Which::Etherstubs,
                (false, true) => Which::NoEtherstubs,
                (false, false) => Which::All,
            };
            if p.has("json") && (p.has("parsable") || p.has("delim") || p.has("noheader")) {
                return Err(usage("-j prints JSON: it takes no -p, -d or -H"));
            }
            let output = if p.has("json") {
                Output::Json
            } else if p.has("parsable") {
                Output::Parsable { delim: p.value("delim").unwrap_or(":").to_string() }
            } else if p.has("delim") {
                return Err(CliError::failed("-d (the delimiter) needs -p (parsable output)"));
            } else {
                Output::Table { header: !p.has("noheader") }
            };
            (p, Command::List(ListOpts { which, output }))
        }
        "vms" => {
            let p = parse(cmd)?;
            let name = one_name(&p, cmd)?;
            (p, Command::Vms { name })
        }
        other => return Err(CliError::failed(format!("unknown command \"{other}\""))),
    };
    if let Some(s) = parsed.value("socket") {
        socket = Some(s.to_string());
    }
    Ok(Invocation { socket, command })
}

/// Whether a tag is an etherstub.
fn is_etherstub(tag: &NicTag) -> bool {
    tag.kind == "etherstub"
}

/// The tags `list` shows, in its order: the others by name, then the
/// etherstubs by name (as SmartOS lists etherstubs last).
pub fn select(mut tags: Vec<NicTag>, which: Which) -> Vec<NicTag> {
    tags.retain(|t| match which {
        Which::All => true,
        Which::Etherstubs => is_etherstub(t),
        Which::NoEtherstubs => !is_etherstub(t),
    });
    tags.sort_by(|a, b| (is_etherstub(a), &a.name).cmp(&(is_etherstub(b), &b.name)));
    tags
}

/// One table line: each cell padded to its width and followed by one
/// space (a longer cell pushes the rest right), trailing blanks trimmed.
fn fixed_line(cells: &[&str]) -> String {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(LIST_WIDTHS) {
        line.push_str(&format!("{cell:<width$} "));
    }
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

/// Renders `nictagadm list` output.
pub fn render_list(tags: Vec<NicTag>, opts: &ListOpts) -> String {
    let tags = select(tags, opts.which);
    if opts.output == Output::Json {
        let mut text = serde_json::to_string_pretty(&tags).unwrap_or_else(|_| "[]".into());
        text.push('\n');
        return text;
    }
    let mut out = String::new();
    if opts.output == (Output::Table { header: true }) {
        out.push_str(&fixed_line(&LIST_HEADER));
    }
    for tag in &tags {
        let mac = tag.mac_address.as_deref().unwrap_or("-");
        let link = tag.link.as_deref().filter(|_| !is_etherstub(tag)).unwrap_or("-");
        let kind = tag.kind.replace('_', " ");
        match &opts.output {
            Output::Parsable { delim } => {
                // As SmartOS: the MAC's colons escaped when ':' delimits.
                let mac = if delim == ":" { mac.replace(':', "\\:") } else { mac.to_string() };
                out.push_str(&[tag.name.as_str(), &mac, link, &kind].join(delim));
                out.push('\n');
            }
            _ => out.push_str(&fixed_line(&[&tag.name, mac, link, &kind])),
        }
    }
    out
}

/// `exists`: the names of `wanted` that no tag has, in the order given.
pub fn missing<'a>(tags: &[NicTag], wanted: &'a [String]) -> Vec<&'a str> {
    let names: BTreeSet<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    wanted.iter().map(String::as_str).filter(|n| !names.contains(n)).collect()
}

fn client_err(e: ClientError) -> CliError {
    CliError::failed(describe_client_error(&e))
}

/// Runs `nictagadm` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = parse_args(argv).and_then(|inv| execute(inv, io));
    let result = result.map_err(|e| crate::with_usage(&pages::NICTAGADM, argv, e));
    crate::report("nictagadm", io, result)
}

fn execute(inv: Invocation, io: &mut Io) -> Result<(), CliError> {
    let client = crate::client(inv.socket.as_deref(), io);
    match inv.command {
        Command::Help => io.out.write_all(doc::render_help(&pages::NICTAGADM).as_bytes())?,
        // As SmartOS: add, update and delete say nothing when they succeed.
        Command::Add(req) => {
            client.add_nic_tag(&req).map_err(client_err)?;
        }
        Command::Update { name, update } => {
            client.update_nic_tag(&name, &update).map_err(client_err)?;
        }
        Command::Delete { name, force } => {
            client.delete_nic_tag(&name, force).map_err(client_err)?;
        }
        Command::Exists { names, names_only } => {
            let tags = client.list_nic_tags().map_err(client_err)?;
            let missing = missing(&tags, &names);
            for name in &missing {
                if names_only {
                    writeln!(io.err, "{name}")?;
                } else {
                    writeln!(io.err, "invalid tag: {name}")?;
                }
            }
            if !missing.is_empty() {
                return Err(CliError::Quiet(crate::EXIT_ERROR));
            }
        }
        Command::List(opts) => {
            let tags = client.list_nic_tags().map_err(client_err)?;
            io.out.write_all(render_list(tags, &opts).as_bytes())?;
        }
        Command::Vms { name } => {
            for uuid in client.nic_tag_vms(&name).map_err(client_err)? {
                writeln!(io.out, "{uuid}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{s, FakeDaemon, TestIo};
    use serde_json::{json, Value};

    const U1: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";
    const U2: &str = "1a2b3c4d-0000-4000-8000-000000000002";

    fn tags() -> Vec<NicTag> {
        serde_json::from_value(json!([
            {"name": "stub0", "type": "etherstub", "mtu": 1500, "bridge": "zvstub0"},
            {"name": "external", "type": "normal", "link": "eno1", "mac_address": "0c:c4:7a:12:34:56",
             "mtu": 1500, "bridge": "zvexternal"},
            {"name": "default", "type": "etherstub", "mtu": 1500, "bridge": "zvdefault",
             "network": {"ipv4": "10.65.3.1/24", "ipv6": "fd00:65:3::1/64", "nat": "eno1", "dhcp": true}},
            {"name": "a_very_long_tag_name", "type": "bridge", "link": "br-lan", "mtu": 9000, "bridge": "br-lan"}
        ]))
        .unwrap()
    }

    fn cmd(v: &[&str]) -> Command {
        parse_args(&s(v)).unwrap().command
    }

    fn list_opts(v: &[&str]) -> ListOpts {
        match cmd(v) {
            Command::List(o) => o,
            other => panic!("{other:?}"),
        }
    }

    /// The message of a usage error (exit 2).
    fn usage_of(v: &[&str]) -> String {
        match parse_args(&s(v)) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{v:?}: expected a usage error, got {other:?}"),
        }
    }

    /// The message of a failure (exit 1).
    fn failure_of(v: &[&str]) -> String {
        match parse_args(&s(v)) {
            Err(CliError::Failed { code: 1, message }) => message,
            other => panic!("{v:?}: expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn add_takes_a_link_by_name_or_mac_and_properties() {
        let req = |v: &[&str]| match cmd(v) {
            Command::Add(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            req(&["add", "external", "eno1"]),
            NicTagRequest { name: "external".into(), local: false, link: Some("eno1".into()), mtu: None }
        );
        assert_eq!(req(&["add", "external", "0:C:29:a:b:FF"]).link.as_deref(), Some("00:0c:29:0a:0b:ff"));
        assert_eq!(
            req(&["add", "-p", "mtu=9000,mac=0c:c4:7a:12:34:56", "storage"]),
            NicTagRequest {
                name: "storage".into(),
                local: false,
                link: Some("0c:c4:7a:12:34:56".into()),
                mtu: Some(9000)
            }
        );
        // -p may be repeated, and link= is mac='s other name.
        let r = req(&["add", "-p", "mtu=1600", "-p", "link=eno2", "storage"]);
        assert_eq!((r.link.as_deref(), r.mtu), (Some("eno2"), Some(1600)));
        assert_eq!(
            req(&["add", "-l", "stub1"]),
            NicTagRequest { name: "stub1".into(), local: true, link: None, mtu: None }
        );
        assert!(failure_of(&["add", "-l", "stub1", "eno1"]).contains("takes no link"));
        assert!(failure_of(&["add", "external"]).contains("needs a link or mac address"));
        assert!(failure_of(&["add", "-l", "-p", "mtu=9000", "stub1"]).contains("takes no mtu"));
        assert!(failure_of(&["add", "-p", "mac=eno1", "external", "eno2"]).contains("given twice"));
        assert_eq!(failure_of(&["add", "-p", "mtu=9001", "x", "eno1"]), "mtu must be between 1500-9000");
        assert_eq!(failure_of(&["add", "-p", "mtu=1400", "x", "eno1"]), "mtu must be between 1500-9000");
        assert_eq!(failure_of(&["add", "-p", "mtu=+1500", "x", "eno1"]), "invalid mtu: +1500");
        assert_eq!(failure_of(&["add", "-p", "mtu", "x", "eno1"]), "invalid property: mtu");
        assert_eq!(failure_of(&["add", "-p", "mtu=", "x", "eno1"]), "invalid property: mtu=");
        assert!(failure_of(&["add", "-p", "speed=10", "x", "eno1"]).starts_with("unknown property: speed"));
        assert_eq!(usage_of(&["add"]), "add: missing nic tag name");
        assert_eq!(usage_of(&["add", "a", "b", "c"]), "add: unexpected argument \"c\"");
        assert_eq!(usage_of(&["add", "-x", "a"]), "unknown option -x");
        assert_eq!(usage_of(&["add", "a", "-p"]), "option -p needs a value");
    }

    #[test]
    fn update_delete_exists_and_vms() {
        assert_eq!(
            cmd(&["update", "-p", "mtu=9000", "external"]),
            Command::Update { name: "external".into(), update: NicTagUpdate { link: None, mtu: Some(9000) } }
        );
        assert_eq!(
            cmd(&["update", "external", "eno2"]),
            Command::Update { name: "external".into(), update: NicTagUpdate { link: Some("eno2".into()), mtu: None } }
        );
        assert!(failure_of(&["update", "external"]).starts_with("nothing to update"));
        assert_eq!(usage_of(&["update"]), "update: missing nic tag name");
        assert_eq!(usage_of(&["update", "-l", "stub0"]), "unknown option -l");
        assert_eq!(cmd(&["delete", "external"]), Command::Delete { name: "external".into(), force: false });
        assert_eq!(cmd(&["delete", "-f", "external"]), Command::Delete { name: "external".into(), force: true });
        assert_eq!(cmd(&["delete", "external", "-f"]), Command::Delete { name: "external".into(), force: true });
        assert_eq!(usage_of(&["delete"]), "delete: missing nic tag name");
        assert_eq!(usage_of(&["delete", "a", "b"]), "delete: unexpected argument \"b\"");
        assert_eq!(cmd(&["exists", "-l", "a", "b"]), Command::Exists { names: s(&["a", "b"]), names_only: true });
        assert_eq!(cmd(&["exists", "a"]), Command::Exists { names: s(&["a"]), names_only: false });
        assert_eq!(failure_of(&["exists"]), "exists: no nic tag specified");
        assert_eq!(cmd(&["vms", "external"]), Command::Vms { name: "external".into() });
        assert_eq!(usage_of(&["vms"]), "vms: missing nic tag name");
    }

    #[test]
    fn list_options() {
        assert_eq!(list_opts(&["list"]), ListOpts { which: Which::All, output: Output::Table { header: true } });
        assert_eq!(list_opts(&["list", "-l"]).which, Which::Etherstubs);
        assert_eq!(
            list_opts(&["list", "-L", "-H"]),
            ListOpts { which: Which::NoEtherstubs, output: Output::Table { header: false } }
        );
        assert_eq!(list_opts(&["list", "-p"]).output, Output::Parsable { delim: ":".into() });
        assert_eq!(list_opts(&["list", "-p", "-d", "|"]).output, Output::Parsable { delim: "|".into() });
        assert_eq!(list_opts(&["list", "-pd,"]).output, Output::Parsable { delim: ",".into() });
        assert_eq!(list_opts(&["list", "-j", "-L"]), ListOpts { which: Which::NoEtherstubs, output: Output::Json });
        assert!(failure_of(&["list", "-l", "-L"]).contains("contradict"));
        assert!(failure_of(&["list", "-d", "|"]).contains("needs -p"));
        assert!(usage_of(&["list", "-j", "-p"]).contains("-j prints JSON"));
        assert_eq!(usage_of(&["list", "extra"]), "list: unexpected argument \"extra\"");
    }

    #[test]
    fn tool_level_arguments() {
        assert_eq!(usage_of(&[]), "no subcommand given");
        assert_eq!(failure_of(&["frob"]), "unknown command \"frob\"");
        for help in [&["help"][..], &["-h"], &["-?"], &["--help"], &["list", "-h"], &["add", "-?", "x"]] {
            assert_eq!(cmd(help), Command::Help, "{help:?}");
        }
        let inv = parse_args(&s(&["--socket", "/s", "list"])).unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/s"));
        let inv = parse_args(&s(&["vms", "x", "--socket=/t"])).unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/t"));
    }

    #[test]
    fn table_has_smartos_columns_and_etherstubs_last() {
        let text = render_list(tags(), &list_opts(&["list"]));
        assert_eq!(
            text,
            "NAME           MACADDRESS         LINK           TYPE\n\
             a_very_long_tag_name -                  br-lan         bridge\n\
             external       0c:c4:7a:12:34:56  eno1           normal\n\
             default        -                  -              etherstub\n\
             stub0          -                  -              etherstub\n"
        );
        let text = render_list(tags(), &list_opts(&["list", "-l", "-H"]));
        assert_eq!(
            text,
            "default        -                  -              etherstub\n\
             stub0          -                  -              etherstub\n"
        );
        assert_eq!(
            render_list(Vec::new(), &list_opts(&["list"])),
            "NAME           MACADDRESS         LINK           TYPE\n"
        );
    }

    #[test]
    fn parsable_escapes_colons_only_when_they_delimit() {
        let text = render_list(tags(), &list_opts(&["list", "-p", "-L"]));
        assert_eq!(text, "a_very_long_tag_name:-:br-lan:bridge\nexternal:0c\\:c4\\:7a\\:12\\:34\\:56:eno1:normal\n");
        let text = render_list(tags(), &list_opts(&["list", "-p", "-d", "|"]));
        assert_eq!(
            text,
            "a_very_long_tag_name|-|br-lan|bridge\nexternal|0c:c4:7a:12:34:56|eno1|normal\n\
             default|-|-|etherstub\nstub0|-|-|etherstub\n"
        );
    }

    #[test]
    fn json_lists_everything_including_the_managed_network() {
        let text = render_list(tags(), &list_opts(&["list", "-j", "-l"]));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["name"], "default");
        assert_eq!(v[0]["network"]["ipv4"], "10.65.3.1/24");
        assert_eq!(v[0]["bridge"], "zvdefault");
        assert_eq!(v[1]["name"], "stub0");
        assert!(v[1].get("network").is_none());
        assert_eq!(render_list(Vec::new(), &list_opts(&["list", "-j"])), "[]\n");
    }

    #[test]
    fn missing_names_keep_their_order() {
        assert_eq!(missing(&tags(), &s(&["nope", "external", "stub0", "x"])), ["nope", "x"]);
        assert!(missing(&tags(), &s(&["default"])).is_empty());
    }

    fn daemon() -> FakeDaemon {
        FakeDaemon::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/v1/nictags") => (200, serde_json::to_string(&tags()).unwrap()),
            ("POST", "/v1/nictags") => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                if body["name"] == "external" {
                    return (
                        409,
                        json!({"kind": "Conflict", "message": "nic tag 'external' already exists"}).to_string(),
                    );
                }
                let tag = json!({"name": body["name"], "type": "normal", "link": body["link"], "mtu": 1500,
                                 "bridge": "zvx"});
                (200, tag.to_string())
            }
            ("POST", "/v1/nictags/external/update") => (200, serde_json::to_string(&tags()[1]).unwrap()),
            ("DELETE", p) if p.starts_with("/v1/nictags/external") => {
                if p.ends_with("?force=true") {
                    (200, json!({"message": "deleted"}).to_string())
                } else {
                    (
                        409,
                        json!({"kind": "Conflict", "message": "nic tag 'external' is in use by 1 instance"})
                            .to_string(),
                    )
                }
            }
            ("GET", "/v1/nictags/external/vms") => (200, json!([U1, U2]).to_string()),
            _ => (404, json!({"kind": "NotFound", "message": format!("no route {}", req.path)}).to_string()),
        })
    }

    #[test]
    fn calls_made_against_the_daemon() {
        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "add", "-p", "mtu=9000", "storage", "eno2"]), 0, "{}", t.err());
        assert_eq!((t.out(), t.err()), (String::new(), String::new()));
        let seen = d.seen();
        assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("POST", "/v1/nictags"));
        let body: Value = serde_json::from_str(&seen[0].body).unwrap();
        assert_eq!(body, json!({"name": "storage", "local": false, "link": "eno2", "mtu": 9000}));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "add", "external", "eno1"]), 1);
        assert_eq!(t.err(), "nictagadm: nic tag 'external' already exists\n");

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "update", "external", "-p", "mtu=9000"]), 0, "{}", t.err());
        let body: Value = serde_json::from_str(&d.seen().last().unwrap().body).unwrap();
        assert_eq!(body, json!({"link": null, "mtu": 9000}));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "delete", "external"]), 1);
        assert_eq!(t.err(), "nictagadm: nic tag 'external' is in use by 1 instance\n");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "delete", "-f", "external"]), 0, "{}", t.err());
        assert_eq!(d.seen().last().unwrap().path, "/v1/nictags/external?force=true");

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "vms", "external"]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("{U1}\n{U2}\n"));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "list", "-L", "-p"]), 0, "{}", t.err());
        assert_eq!(t.out(), "a_very_long_tag_name:-:br-lan:bridge\nexternal:0c\\:c4\\:7a\\:12\\:34\\:56:eno1:normal\n");
    }

    #[test]
    fn exists_prints_only_what_is_missing_on_stderr() {
        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "exists", "external", "stub0"]), 0, "{}", t.err());
        assert_eq!((t.out(), t.err()), (String::new(), String::new()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "exists", "external", "nope", "gone"]), 1);
        assert_eq!((t.out(), t.err()), (String::new(), "invalid tag: nope\ninvalid tag: gone\n".to_string()));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["nictagadm", "exists", "-l", "nope"]), 1);
        assert_eq!(t.err(), "nope\n");
    }

    #[test]
    fn usage_errors_exit_2_with_the_commands_usage() {
        let mut t = TestIo::new();
        assert_eq!(t.run(&["nictagadm", "list", "-x"]), 2);
        assert_eq!(
            t.err(),
            "nictagadm: unknown option -x\nusage: nictagadm list [-l | -L] [-p] [-d delim] [-H] [-j]\n"
        );
        let mut t = TestIo::new();
        assert_eq!(t.run(&["nictagadm"]), 2);
        let err = t.err();
        assert!(err.starts_with("nictagadm: no subcommand given\nusage: nictagadm add "), "{err}");
        assert!(err.contains("\n       nictagadm vms <name>\n"), "{err}");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["nictagadm", "frob"]), 1);
        assert_eq!(t.err(), "nictagadm: unknown command \"frob\"\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["nictagadm", "list", "-l", "-L"]), 1, "SmartOS: a fatal error, not usage");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["nictagadm", "-h"]), 0);
        assert!(t.out().starts_with("Usage: nictagadm <command>"), "{}", t.out());
    }
}
