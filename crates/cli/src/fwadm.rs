//! `fwadm`: add, update, enable, disable, delete and list firewall rules,
//! and show which rules apply to an instance and how its firewall is
//! doing, with SmartOS's commands, output and exit codes.
//!
//! Rules are written in SmartOS's rule language (`FROM any TO all vms
//! ALLOW tcp PORT 22`); the daemon parses and checks them, so this module
//! only carries their text. `add` and `update` take a rule as words on
//! the command line, or SmartOS's JSON payload (`{"rules": [...]}`, or one
//! rule object) from a file or stdin.
//!
//! Output follows fwadm's source: `Added rules:` (`Updated`, `Enabled`,
//! `Disabled`, `Deleted`) then one `<uuid> <enabled> <rule>` line per
//! rule; `list` is a table of single-space-separated columns, each at
//! least fwadm's width for its field and widened to its longest value,
//! with `-` for a value that is missing or false (fwadm shows a disabled
//! rule's `ENABLED` as `-`), and no header when there are no rules.
//! Trailing blanks are trimmed.
//!
//! Exit status as fwadm: 0 ok; 1 when the daemon refuses or a UUID is
//! missing or malformed (fwadm checks UUIDs itself and exits 1); 2 for
//! usage errors, which end with the command's usage lines.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use zonevisor_api::{
    ClientError, FwAddRequest, FwChangeRequest, FwRule, FwRuleChange, FwRuleRequest, FwRuleStats, FwStatus,
};

use crate::args::{self, Mode};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// The fields a rule has, in the order fwadm serializes them, with
/// fwadm's minimum column width for each.
pub const FIELDS: &[(&str, usize)] =
    &[("description", 15), ("enabled", 7), ("global", 6), ("owner_uuid", 36), ("rule", 20), ("uuid", 36)];
/// `list`'s columns when `-o` is not given.
pub const DEFAULT_FIELDS: &[&str] = &["uuid", "enabled", "rule"];
/// fwadm's commands for remote VMs, which zonevisor does not offer.
const REMOTE_VM_COMMANDS: &[&str] = &["add-rvm", "delete-rvm", "get-rvm", "list-rvms", "rvm-rules"];

/// How a list of rules is printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The table, with or without its header (`-H`).
    Table {
        /// Print the header line (when there are rules).
        header: bool,
    },
    /// `-p [-d delim]`: the fields joined by `delim` (a `delim` inside a
    /// value escaped with `\`), no header.
    Parsable {
        /// The delimiter (`:` unless `-d` says otherwise).
        delim: String,
    },
    /// `-j`: the rules as a JSON array.
    Json,
}

/// `fwadm list` options (and how `rules` prints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOpts {
    /// The fields to show, in order.
    pub fields: Vec<String>,
    /// How.
    pub output: Output,
}

impl Default for ListOpts {
    fn default() -> Self {
        ListOpts {
            fields: DEFAULT_FIELDS.iter().map(|f| f.to_string()).collect(),
            output: Output::Table { header: true },
        }
    }
}

/// Where `add` and `update` find their rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// `-f FILE` (`-` is stdin): a JSON payload.
    File(String),
    /// `--stdin`: a JSON payload.
    Stdin,
    /// The rule's text, from the words on the command line.
    Text(String),
    /// Nothing given: a JSON payload from stdin unless it is a terminal
    /// (then a usage error), as fwadm does.
    Implicit,
    /// `update <uuid> -e` or `--desc`: the options are the whole change.
    Nothing,
}

/// What `add`'s options set on every rule it adds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFlags {
    /// `-e`: enabled.
    pub enable: bool,
    /// `-g`: for every instance.
    pub global: bool,
    /// `-O`: the owner.
    pub owner_uuid: Option<String>,
    /// `-d`/`--desc`: the description.
    pub description: Option<String>,
}

/// A parsed `fwadm` command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print usage.
    Help,
    /// `add`.
    Add {
        /// The rules.
        input: Input,
        /// What the options set on each.
        flags: RuleFlags,
        /// `-j`.
        json: bool,
    },
    /// `update`.
    Update {
        /// The rule named on the command line (else the payload's rules
        /// name theirs).
        uuid: Option<String>,
        /// The new text or payload.
        input: Input,
        /// `-e`: enable it too.
        enable: bool,
        /// `-d`/`--desc`: a new description.
        description: Option<String>,
        /// `-j`.
        json: bool,
    },
    /// `delete <uuid>...`.
    Delete {
        /// The rules.
        uuids: Vec<String>,
        /// `-j`.
        json: bool,
    },
    /// `enable <uuid>...` and `disable <uuid>...`.
    Enable {
        /// The rules.
        uuids: Vec<String>,
        /// `enable` (true) or `disable`.
        enabled: bool,
        /// `-j`.
        json: bool,
    },
    /// `get <uuid>`.
    Get {
        /// The rule.
        uuid: String,
    },
    /// `list ...`.
    List(ListOpts),
    /// `vms <rule uuid>`.
    Vms {
        /// The rule.
        uuid: String,
        /// `-j`.
        json: bool,
    },
    /// `rules <vm uuid>`.
    Rules {
        /// The instance.
        vm: String,
        /// `-j`.
        json: bool,
    },
    /// `status [-v] <vm uuid>`.
    Status {
        /// The instance.
        vm: String,
        /// `-v`.
        verbose: bool,
        /// `-j`.
        json: bool,
    },
    /// `stats <vm uuid>`.
    Stats {
        /// The instance.
        vm: String,
        /// `-j`.
        json: bool,
    },
    /// `start <vm uuid>` and `stop <vm uuid>`: the instance's
    /// `firewall_enabled`.
    Firewall {
        /// The instance.
        vm: String,
        /// `start` (true) or `stop`.
        start: bool,
        /// `-j`.
        json: bool,
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

/// Whether `s` is a UUID as fwadm accepts them: 36 characters, lowercase
/// hex digits in groups of 8-4-4-4-12.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Checks a UUID argument; fwadm exits 1 (not 2) when it is missing or
/// malformed.
fn check_uuid(arg: Option<&String>) -> Result<String, CliError> {
    match arg {
        None => Err(CliError::failed("missing UUID")),
        Some(a) if is_uuid(a) => Ok(a.clone()),
        Some(a) => Err(CliError::failed(format!("invalid UUID \"{a}\""))),
    }
}

/// The one UUID `get`, `vms`, `rules`, `status`, `stats`, `start` and
/// `stop` take.
fn one_uuid(p: &args::Parsed, command: &str) -> Result<String, CliError> {
    if let Some(extra) = p.positional.get(1) {
        return Err(usage(format!("{command}: unexpected argument \"{extra}\"")));
    }
    check_uuid(p.positional.first())
}

/// The UUIDs `delete`, `enable` and `disable` take (at least one).
fn some_uuids(p: &args::Parsed, command: &str) -> Result<Vec<String>, CliError> {
    if p.positional.is_empty() {
        return Err(usage(format!("{command}: no rule UUIDs given")));
    }
    p.positional.iter().map(|a| check_uuid(Some(a))).collect()
}

/// `-f`, `--stdin` or rule text: at most one of them.
fn explicit_input(p: &args::Parsed, text: &[String]) -> Result<Option<Input>, CliError> {
    let mut given = Vec::new();
    if let Some(file) = p.value("file") {
        given.push(Input::File(file.to_string()));
    }
    if p.has("stdin") {
        given.push(Input::Stdin);
    }
    if !text.is_empty() {
        given.push(Input::Text(text.join(" ")));
    }
    if given.len() > 1 {
        return Err(usage("give the rules one way: as rule text, with -f FILE, or with --stdin"));
    }
    Ok(given.pop())
}

/// `-o`'s fields, checked against [`FIELDS`] (an unknown one fails, as in
/// fwadm, with exit 1).
pub fn parse_fields(value: &str) -> Result<Vec<String>, CliError> {
    let fields: Vec<String> = value.split(',').map(str::to_string).collect();
    let mut unknown: Vec<&str> =
        fields.iter().map(String::as_str).filter(|f| !FIELDS.iter().any(|(k, _)| k == f)).collect();
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(fields);
    }
    let known: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
    let quoted: Vec<String> = unknown.iter().map(|f| format!("\"{f}\"")).collect();
    Err(CliError::failed(format!(
        "unknown display field{} {} (fields: {})",
        if unknown.len() == 1 { "" } else { "s" },
        quoted.join(", "),
        known.join(", ")
    )))
}

/// Parses `fwadm`'s arguments (without the program name).
pub fn parse_args(argv: &[String]) -> Result<Invocation, CliError> {
    let g = args::globals(argv, &["-h", "--help"])?;
    let (mut socket, i) = (g.socket, g.next);
    if g.help {
        return Ok(Invocation { socket, command: Command::Help });
    }
    // fwadm with no command prints its help and succeeds.
    let Some(cmd) = argv.get(i) else {
        return Ok(Invocation { socket, command: Command::Help });
    };
    let rest = &argv[i + 1..];
    if rest.iter().take_while(|a| *a != "--").any(|a| a == "-h" || a == "--help") {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let parse = |name: &str| args::parse(rest, &pages::FWADM.opts(name), Mode::Intermixed).map_err(usage);
    let (parsed, command) = match cmd.as_str() {
        "help" => (args::Parsed::default(), Command::Help),
        "add" => {
            let p = parse(cmd)?;
            let input = explicit_input(&p, &p.positional)?.unwrap_or(Input::Implicit);
            let flags = RuleFlags {
                enable: p.has("enable"),
                global: p.has("global"),
                owner_uuid: p.value("owner_uuid").map(str::to_string),
                description: p.value("description").map(str::to_string),
            };
            let json = p.has("json");
            (p, Command::Add { input, flags, json })
        }
        "update" => {
            let p = parse(cmd)?;
            let uuid = match p.positional.first() {
                Some(u) => Some(check_uuid(Some(u))?),
                None => None,
            };
            let text = p.positional.get(1..).unwrap_or_default();
            let (enable, description) = (p.has("enable"), p.value("description").map(str::to_string));
            let input = match explicit_input(&p, text)? {
                Some(input) => input,
                None if uuid.is_some() && (enable || description.is_some()) => Input::Nothing,
                None => Input::Implicit,
            };
            let json = p.has("json");
            (p, Command::Update { uuid, input, enable, description, json })
        }
        "delete" => {
            let p = parse(cmd)?;
            let uuids = some_uuids(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Delete { uuids, json })
        }
        "enable" | "disable" => {
            let p = parse(cmd)?;
            let uuids = some_uuids(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Enable { uuids, enabled: cmd == "enable", json })
        }
        "get" => {
            let p = parse(cmd)?;
            let uuid = one_uuid(&p, cmd)?;
            (p, Command::Get { uuid })
        }
        "list" => {
            let p = parse(cmd)?;
            if let Some(extra) = p.positional.first() {
                return Err(usage(format!("list: unexpected argument \"{extra}\"")));
            }
            if p.has("delim") && !p.has("parseable") {
                return Err(usage("-d requires -p"));
            }
            if p.has("json") && p.has("parseable") {
                return Err(usage("cannot specify both -j and -p"));
            }
            if p.has("json") && p.has("noheader") {
                return Err(usage("-j prints JSON: it takes no -H"));
            }
            let fields = match p.value("fields") {
                Some(f) => parse_fields(f)?,
                None => ListOpts::default().fields,
            };
            let output = if p.has("json") {
                Output::Json
            } else if p.has("parseable") {
                Output::Parsable { delim: p.value("delim").unwrap_or(":").to_string() }
            } else {
                Output::Table { header: !p.has("noheader") }
            };
            (p, Command::List(ListOpts { fields, output }))
        }
        "vms" => {
            let p = parse(cmd)?;
            let uuid = one_uuid(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Vms { uuid, json })
        }
        "rules" => {
            let p = parse(cmd)?;
            let vm = one_uuid(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Rules { vm, json })
        }
        "status" => {
            let p = parse(cmd)?;
            let vm = one_uuid(&p, cmd)?;
            let (verbose, json) = (p.has("verbose"), p.has("json"));
            (p, Command::Status { vm, verbose, json })
        }
        "stats" => {
            let p = parse(cmd)?;
            let vm = one_uuid(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Stats { vm, json })
        }
        "start" | "stop" => {
            let p = parse(cmd)?;
            let vm = one_uuid(&p, cmd)?;
            let json = p.has("json");
            (p, Command::Firewall { vm, start: cmd == "start", json })
        }
        other if REMOTE_VM_COMMANDS.contains(&other) => {
            return Err(CliError::failed(format!("{other}: remote VMs are not supported by zonevisor yet")))
        }
        other => return Err(usage(format!("unknown command: \"{other}\""))),
    };
    if let Some(s) = parsed.value("socket") {
        socket = Some(s.to_string());
    }
    Ok(Invocation { socket, command })
}

/// One rule as a payload gives it: what `fwadm get` prints, plus the
/// fields SmartOS keeps that zonevisor ignores (`version`, `created_by`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleObject {
    uuid: Option<String>,
    rule: Option<String>,
    enabled: Option<bool>,
    description: Option<String>,
    owner_uuid: Option<String>,
    global: Option<bool>,
    #[serde(rename = "version")]
    _version: Option<Value>,
    #[serde(rename = "created_by")]
    _created_by: Option<Value>,
}

/// The rules of a JSON payload: `{"rules": [...]}`, or one rule object
/// (recognized, as fwadm does, by any of `rule`, `enabled`,
/// `description`, `owner_uuid` or `version`).
fn payload_rules(payload: Value) -> Result<Vec<RuleObject>, CliError> {
    let Value::Object(map) = payload else {
        return Err(CliError::failed("the payload is not a JSON object"));
    };
    let parse = |n: usize, v: Value| {
        serde_json::from_value::<RuleObject>(v).map_err(|e| CliError::failed(format!("rule {n} of the payload: {e}")))
    };
    if ["rule", "enabled", "description", "owner_uuid", "version"].iter().any(|k| map.contains_key(*k)) {
        return Ok(vec![parse(1, Value::Object(map))?]);
    }
    for (key, value) in &map {
        match key.as_str() {
            "rules" => {}
            "remoteVMs" if value.as_array().is_some_and(|a| a.is_empty()) => {}
            "remoteVMs" => return Err(CliError::failed("remote VMs are not supported by zonevisor yet")),
            other => return Err(CliError::failed(format!("unknown property \"{other}\" in the payload"))),
        }
    }
    let rules = match map.get("rules") {
        Some(Value::Array(rules)) if !rules.is_empty() => rules,
        _ => return Err(CliError::failed("the payload has no rules (give {\"rules\": [...]} or one rule object)")),
    };
    rules.iter().enumerate().map(|(i, r)| parse(i + 1, r.clone())).collect()
}

/// What `add` sends for the rules of a payload, with `flags` applied to
/// every one (as fwadm's `-e`, `-g` and `-O` are).
fn add_requests(objects: Vec<RuleObject>, flags: &RuleFlags) -> Result<Vec<FwRuleRequest>, CliError> {
    objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let rule =
                o.rule.ok_or_else(|| CliError::failed(format!("rule {} of the payload has no rule text", i + 1)))?;
            Ok(FwRuleRequest {
                rule,
                enabled: flags.enable || o.enabled.unwrap_or(false),
                description: flags.description.clone().or(o.description),
                owner_uuid: flags.owner_uuid.clone().or(o.owner_uuid),
                global: flags.global || o.global.unwrap_or(false),
                uuid: o.uuid,
            })
        })
        .collect()
}

/// `fwadm`'s line for one rule: `<uuid> true    <rule>` (the state padded
/// to 7 characters, then a space).
pub fn rule_line(rule: &FwRule) -> String {
    format!("{} {} {}", rule.uuid, if rule.enabled { "true   " } else { "false  " }, rule.rule)
}

/// A rule as fwadm serializes it, with only `fields` (in their order): a
/// missing description or owner is left out, and `global` appears only
/// when true.
pub fn rule_json(rule: &FwRule, fields: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for field in fields {
        let value = match *field {
            "description" => rule.description.clone().map(Value::from),
            "enabled" => Some(Value::from(rule.enabled)),
            "global" => rule.global.then_some(Value::Bool(true)),
            "owner_uuid" => rule.owner_uuid.clone().map(Value::from),
            "rule" => Some(Value::from(rule.rule.clone())),
            "uuid" => Some(Value::from(rule.uuid.clone())),
            _ => None,
        };
        if let Some(v) = value {
            m.insert(field.to_string(), v);
        }
    }
    m
}

/// Every field of a rule, as `fwadm get` prints it.
pub fn full_json(rule: &FwRule) -> Value {
    let fields: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
    Value::Object(rule_json(rule, &fields))
}

fn pretty(v: &Value) -> String {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.push('\n');
    text
}

/// What `add`, `update`, `enable`, `disable` and `delete` print: `<Action>
/// rules:` and a line per rule, or with `json` `{"rules": [...]}`.
pub fn render_changed(action: &str, rules: &[FwRule], json: bool) -> String {
    if json {
        return pretty(&json!({"rules": rules.iter().map(full_json).collect::<Vec<_>>()}));
    }
    let mut out = format!("{action} rules:\n");
    for r in rules {
        out.push_str(&rule_line(r));
        out.push('\n');
    }
    out
}

/// A table cell: fwadm shows a missing, empty or false value as `-`.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Renders `list` (and `rules`): the rules sorted by UUID, as a table,
/// parsable lines or JSON.
pub fn render_rules(mut rules: Vec<FwRule>, opts: &ListOpts) -> String {
    rules.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let fields: Vec<&str> = opts.fields.iter().map(String::as_str).collect();
    let objects: Vec<Map<String, Value>> = rules.iter().map(|r| rule_json(r, &fields)).collect();
    if opts.output == Output::Json {
        return pretty(&Value::Array(objects.into_iter().map(Value::Object).collect()));
    }
    let rows: Vec<Vec<String>> = objects.iter().map(|o| fields.iter().map(|f| cell(o.get(*f))).collect()).collect();
    let mut out = String::new();
    match &opts.output {
        Output::Parsable { delim } => {
            for row in rows {
                let escaped: Vec<String> = row
                    .iter()
                    .map(|c| if delim.is_empty() { c.clone() } else { c.replace(delim, &format!("\\{delim}")) })
                    .collect();
                out.push_str(&escaped.join(delim));
                out.push('\n');
            }
        }
        _ => {
            let mut widths: Vec<usize> =
                fields.iter().map(|f| FIELDS.iter().find(|(k, _)| k == f).map_or(1, |(_, w)| *w)).collect();
            for row in &rows {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: Vec<String>| {
                let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
                format!("{}\n", padded.join(" ").trim_end())
            };
            if opts.output == (Output::Table { header: true }) && !rows.is_empty() {
                out.push_str(&line(fields.iter().map(|f| f.to_uppercase()).collect()));
            }
            for row in rows {
                out.push_str(&line(row));
            }
        }
    }
    out
}

/// `vms`: one instance UUID a line, or a JSON array.
pub fn render_vms(uuids: &[String], json: bool) -> String {
    if json {
        return pretty(&json!(uuids));
    }
    uuids.iter().map(|u| format!("{u}\n")).collect()
}

/// `status`: `running` or `stopped`; `-v` adds the number of rules that
/// apply (`running: true`, `rules: 3`), `-j` prints the same as JSON.
pub fn render_status(status: &FwStatus, verbose: bool, json: bool) -> String {
    let running = status.status == "running";
    if json {
        return pretty(&json!({"running": running, "rules": status.rules}));
    }
    if verbose {
        return format!("running: {running}\nrules: {}\n", status.rules);
    }
    format!("{}\n", if running { "running" } else { "stopped" })
}

/// `stats`: a line per rule, `<packets> <bytes> <uuid> <rule>`, the
/// count first as fwadm prints its hits; the rule's text from `rules`
/// (`-` when it is not among them). `-j`: a JSON array of the same.
pub fn render_stats(stats: &[FwRuleStats], rules: &[FwRule], json: bool) -> String {
    let text_of = |uuid: &str| rules.iter().find(|r| r.uuid == uuid).map(|r| r.rule.clone());
    if json {
        let list: Vec<Value> = stats
            .iter()
            .map(|s| json!({"uuid": s.uuid, "packets": s.packets, "bytes": s.bytes, "rule": text_of(&s.uuid)}))
            .collect();
        return pretty(&Value::Array(list));
    }
    stats
        .iter()
        .map(|s| format!("{} {} {} {}\n", s.packets, s.bytes, s.uuid, text_of(&s.uuid).unwrap_or_else(|| "-".into())))
        .collect()
}

fn client_err(e: ClientError) -> CliError {
    CliError::failed(describe_client_error(&e))
}

/// The JSON payload `input` names, if it names one.
fn read_payload(input: &Input, io: &mut Io, what: &str) -> Result<Option<Value>, CliError> {
    match input {
        Input::File(path) => args::read_json(Some(path), io, what).map(Some),
        Input::Stdin => args::read_json(None, io, what).map(Some),
        Input::Implicit if io.input_is_tty => {
            Err(usage(format!("{what}: no rules given (give the rule text, -f FILE, or a JSON payload on stdin)")))
        }
        Input::Implicit => args::read_json(None, io, what).map(Some),
        Input::Text(_) | Input::Nothing => Ok(None),
    }
}

/// The changes `update` sends, by rule UUID.
fn update_plan(
    client: &zonevisor_api::Client,
    uuid: Option<String>,
    input: Input,
    enable: bool,
    description: Option<String>,
    io: &mut Io,
) -> Result<Vec<FwRuleChange>, CliError> {
    let enabled = enable.then_some(true);
    let objects = match (read_payload(&input, io, "update")?, input) {
        (None, Input::Text(text)) => {
            let uuid = uuid.ok_or_else(|| usage("update: missing rule UUID"))?;
            return Ok(vec![FwRuleChange { uuid, rule: Some(text), enabled, description }]);
        }
        (None, _) => {
            let uuid = uuid.ok_or_else(|| usage("update: missing rule UUID"))?;
            return Ok(vec![FwRuleChange { uuid, rule: None, enabled, description }]);
        }
        (Some(payload), _) => payload_rules(payload)?,
    };
    if uuid.is_some() && objects.len() != 1 {
        return Err(CliError::failed(format!("update <uuid> takes one rule, and the payload has {}", objects.len())));
    }
    let mut plan = Vec::new();
    for (n, o) in objects.into_iter().enumerate() {
        // The UUID on the command line wins over the payload's, as in fwadm.
        let id = match (&uuid, &o.uuid) {
            (Some(u), _) => u.clone(),
            (None, Some(u)) => check_uuid(Some(u))?,
            (None, None) => return Err(CliError::failed(format!("rule {} of the payload has no uuid", n + 1))),
        };
        // A payload from `fwadm get` repeats the owner and global flag;
        // they may be given unchanged, but not changed.
        if o.owner_uuid.is_some() || o.global.is_some() {
            let current = client.get_fw_rule(&id).map_err(client_err)?;
            if o.owner_uuid.is_some() && o.owner_uuid != current.owner_uuid {
                return Err(CliError::failed(format!("rule {id}: changing owner_uuid is not supported")));
            }
            if o.global.is_some_and(|g| g != current.global) {
                return Err(CliError::failed(format!("rule {id}: changing global is not supported")));
            }
        }
        let change = FwRuleChange {
            uuid: id,
            rule: o.rule,
            enabled: enabled.or(o.enabled),
            description: description.clone().or(o.description),
        };
        if (&change.rule, change.enabled, &change.description) == (&None, None, &None) {
            return Err(CliError::failed(format!("rule {}: nothing to update", change.uuid)));
        }
        plan.push(change);
    }
    Ok(plan)
}

/// Runs `fwadm` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = parse_args(argv).and_then(|inv| execute(inv, io));
    let result = result.map_err(|e| crate::with_usage(&pages::FWADM, argv, e));
    crate::report("fwadm", io, result)
}

fn execute(inv: Invocation, io: &mut Io) -> Result<(), CliError> {
    let client = crate::client(inv.socket.as_deref(), io);
    let text = match inv.command {
        Command::Help => doc::render_help(&pages::FWADM),
        Command::Add { input, flags, json } => {
            let rules = match (read_payload(&input, io, "add")?, input) {
                (Some(payload), _) => add_requests(payload_rules(payload)?, &flags)?,
                (None, Input::Text(rule)) => {
                    add_requests(vec![RuleObject { rule: Some(rule), ..Default::default() }], &flags)?
                }
                (None, _) => return Err(usage("add: no rules given")),
            };
            let added = client.add_fw_rules(&FwAddRequest { rules }).map_err(client_err)?;
            render_changed("Added", &added, json)
        }
        Command::Update { uuid, input, enable, description, json } => {
            let update = update_plan(&client, uuid, input, enable, description, io)?;
            let done = client.change_fw_rules(&FwChangeRequest { update, delete: vec![] }).map_err(client_err)?;
            render_changed("Updated", &done.updated, json)
        }
        // One request for every rule named: all change, or (an unknown rule,
        // say) none does.
        Command::Delete { uuids, json } => {
            let done =
                client.change_fw_rules(&FwChangeRequest { update: vec![], delete: uuids }).map_err(client_err)?;
            render_changed("Deleted", &done.deleted, json)
        }
        Command::Enable { uuids, enabled, json } => {
            let update = uuids
                .into_iter()
                .map(|uuid| FwRuleChange { uuid, enabled: Some(enabled), ..Default::default() })
                .collect();
            let done = client.change_fw_rules(&FwChangeRequest { update, delete: vec![] }).map_err(client_err)?;
            render_changed(if enabled { "Enabled" } else { "Disabled" }, &done.updated, json)
        }
        Command::Get { uuid } => pretty(&full_json(&client.get_fw_rule(&uuid).map_err(client_err)?)),
        Command::List(opts) => render_rules(client.list_fw_rules().map_err(client_err)?, &opts),
        Command::Vms { uuid, json } => render_vms(&client.fw_rule_vms(&uuid).map_err(client_err)?, json),
        Command::Rules { vm, json } => {
            let opts =
                if json { ListOpts { output: Output::Json, ..ListOpts::default() } } else { ListOpts::default() };
            render_rules(client.fw_vm_rules(&vm).map_err(client_err)?, &opts)
        }
        Command::Status { vm, verbose, json } => {
            render_status(&client.fw_vm_status(&vm).map_err(client_err)?, verbose, json)
        }
        Command::Stats { vm, json } => {
            let stats = client.fw_vm_stats(&vm).map_err(client_err)?;
            let rules = client.fw_vm_rules(&vm).map_err(client_err)?;
            render_stats(&stats, &rules, json)
        }
        Command::Firewall { vm, start, json } => {
            client.update_vm(&vm, &json!({"firewall_enabled": start})).map_err(client_err)?;
            if json {
                pretty(&json!({"result": "success"}))
            } else {
                format!("Firewall {} for VM {vm}\n", if start { "started" } else { "stopped" })
            }
        }
    };
    io.out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{s, FakeDaemon, TestIo};

    const R1: &str = "0a1b2c3d-0000-4000-8000-000000000001";
    const R2: &str = "0a1b2c3d-0000-4000-8000-000000000002";
    const R3: &str = "0a1b2c3d-0000-4000-8000-000000000003";
    const VM: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";
    const OWNER: &str = "e6c73bd2-fae4-4e0a-af76-2c05d088b066";
    const SSH: &str = "FROM any TO all vms ALLOW tcp PORT 22";

    fn rules() -> Vec<FwRule> {
        serde_json::from_value(json!([
            {"uuid": R2, "enabled": false, "owner_uuid": OWNER, "rule": "FROM tag \"role\" = \"www\" TO tag \"role\" = \"db\" ALLOW tcp PORT 5432"},
            {"uuid": R1, "enabled": true, "global": true, "description": "ssh in", "rule": SSH},
            {"uuid": R3, "enabled": true, "description": "", "rule": "FROM any TO all vms ALLOW icmp TYPE 8 CODE 0"}
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
    fn add_takes_rule_text_a_file_or_stdin() {
        let flags = RuleFlags {
            enable: true,
            global: true,
            owner_uuid: Some(OWNER.into()),
            description: Some("ssh in".into()),
        };
        assert_eq!(
            cmd(&[
                "add", "-e", "-g", "-O", OWNER, "-d", "ssh in", "FROM", "any", "TO", "all", "vms", "ALLOW", "tcp",
                "PORT", "22"
            ]),
            Command::Add { input: Input::Text(SSH.into()), flags: flags.clone(), json: false }
        );
        let owner = format!("--owner_uuid={OWNER}");
        assert_eq!(
            cmd(&["add", "--enable", "--global", &owner, "--desc", "ssh in", "-j", SSH]),
            Command::Add { input: Input::Text(SSH.into()), flags, json: true }
        );
        let plain = |input| Command::Add { input, flags: RuleFlags::default(), json: false };
        assert_eq!(cmd(&["add", "-f", "rules.json"]), plain(Input::File("rules.json".into())));
        assert_eq!(cmd(&["add", "--file=-"]), plain(Input::File("-".into())));
        assert_eq!(cmd(&["add", "--stdin"]), plain(Input::Stdin));
        assert_eq!(cmd(&["add"]), plain(Input::Implicit));
        assert!(usage_of(&["add", "-f", "x.json", "FROM", "any"]).starts_with("give the rules one way"));
        assert!(usage_of(&["add", "--stdin", "-f", "x.json"]).starts_with("give the rules one way"));
        assert_eq!(usage_of(&["add", "-O"]), "option -O needs a value");
        assert_eq!(usage_of(&["add", "-v", SSH]), "unknown option -v");
    }

    #[test]
    fn update_takes_a_uuid_then_text_or_a_payload() {
        let update = |uuid: Option<&str>, input, enable, description: Option<&str>| Command::Update {
            uuid: uuid.map(str::to_string),
            input,
            enable,
            description: description.map(str::to_string),
            json: false,
        };
        assert_eq!(
            cmd(&["update", R1, "FROM", "any", "TO", "all", "vms", "ALLOW", "tcp", "PORT", "22"]),
            update(Some(R1), Input::Text(SSH.into()), false, None)
        );
        assert_eq!(cmd(&["update", R1, "-e"]), update(Some(R1), Input::Nothing, true, None));
        assert_eq!(cmd(&["update", "--desc", "x", R1]), update(Some(R1), Input::Nothing, false, Some("x")));
        assert_eq!(cmd(&["update", R1]), update(Some(R1), Input::Implicit, false, None));
        assert_eq!(cmd(&["update", "-f", "r.json"]), update(None, Input::File("r.json".into()), false, None));
        assert_eq!(cmd(&["update", "-e", "--stdin"]), update(None, Input::Stdin, true, None));
        assert_eq!(cmd(&["update"]), update(None, Input::Implicit, false, None));
        assert_eq!(failure_of(&["update", "FROM", "any"]), "invalid UUID \"FROM\"");
        assert_eq!(usage_of(&["update", R1, "-g"]), "unknown option -g");
        assert!(usage_of(&["update", R1, "-f", "r.json", "FROM"]).starts_with("give the rules one way"));
    }

    #[test]
    fn rule_uuid_and_vm_uuid_verbs() {
        assert_eq!(cmd(&["delete", R1, R2]), Command::Delete { uuids: s(&[R1, R2]), json: false });
        assert_eq!(cmd(&["delete", "-j", R1]), Command::Delete { uuids: s(&[R1]), json: true });
        assert_eq!(usage_of(&["delete"]), "delete: no rule UUIDs given");
        assert_eq!(failure_of(&["delete", R1, "nope"]), "invalid UUID \"nope\"");
        assert_eq!(failure_of(&["delete", &R1.to_uppercase()]), format!("invalid UUID \"{}\"", R1.to_uppercase()));
        assert_eq!(cmd(&["enable", R1, R2]), Command::Enable { uuids: s(&[R1, R2]), enabled: true, json: false });
        assert_eq!(cmd(&["disable", "--json", R1]), Command::Enable { uuids: s(&[R1]), enabled: false, json: true });
        assert_eq!(usage_of(&["disable"]), "disable: no rule UUIDs given");
        assert_eq!(cmd(&["get", R1]), Command::Get { uuid: R1.into() });
        assert_eq!(failure_of(&["get"]), "missing UUID");
        assert_eq!(usage_of(&["get", R1, R2]), format!("get: unexpected argument \"{R2}\""));
        assert_eq!(usage_of(&["get", "-j", R1]), "unknown option -j");
        assert_eq!(cmd(&["vms", R1]), Command::Vms { uuid: R1.into(), json: false });
        assert_eq!(cmd(&["rules", "-j", VM]), Command::Rules { vm: VM.into(), json: true });
        assert_eq!(cmd(&["status", VM]), Command::Status { vm: VM.into(), verbose: false, json: false });
        assert_eq!(cmd(&["status", "-v", VM]), Command::Status { vm: VM.into(), verbose: true, json: false });
        assert_eq!(
            cmd(&["status", "--verbose", "-j", VM]),
            Command::Status { vm: VM.into(), verbose: true, json: true }
        );
        assert_eq!(cmd(&["stats", VM]), Command::Stats { vm: VM.into(), json: false });
        assert_eq!(cmd(&["start", VM]), Command::Firewall { vm: VM.into(), start: true, json: false });
        assert_eq!(cmd(&["stop", VM]), Command::Firewall { vm: VM.into(), start: false, json: false });
        assert_eq!(failure_of(&["status", "web01"]), "invalid UUID \"web01\"");
    }

    #[test]
    fn list_options() {
        assert_eq!(list_opts(&["list"]), ListOpts::default());
        assert_eq!(list_opts(&["list", "-H"]).output, Output::Table { header: false });
        assert_eq!(list_opts(&["list", "-p"]).output, Output::Parsable { delim: ":".into() });
        assert_eq!(list_opts(&["list", "-p", "-d", "|"]).output, Output::Parsable { delim: "|".into() });
        assert_eq!(list_opts(&["list", "--parseable", "--delim=,"]).output, Output::Parsable { delim: ",".into() });
        assert_eq!(list_opts(&["list", "-j"]).output, Output::Json);
        assert_eq!(list_opts(&["list", "-o", "uuid,rule"]).fields, s(&["uuid", "rule"]));
        assert_eq!(list_opts(&["list", "--fields", "owner_uuid"]).fields, s(&["owner_uuid"]));
        assert_eq!(usage_of(&["list", "-d", "|"]), "-d requires -p");
        assert_eq!(usage_of(&["list", "-j", "-p"]), "cannot specify both -j and -p");
        assert!(usage_of(&["list", "-j", "-H"]).contains("no -H"));
        assert_eq!(usage_of(&["list", "x"]), "list: unexpected argument \"x\"");
        assert!(failure_of(&["list", "-o", "uuid,version"]).starts_with("unknown display field \"version\" (fields: "));
        assert!(failure_of(&["list", "-o", "b,a,uuid,b"]).starts_with("unknown display fields \"a\", \"b\" "));
    }

    #[test]
    fn tool_level_arguments() {
        assert_eq!(cmd(&[]), Command::Help, "fwadm alone prints its help and succeeds");
        for help in [&["help"][..], &["help", "add"], &["-h"], &["--help"], &["add", "-h"], &["list", "--help"]] {
            assert_eq!(cmd(help), Command::Help, "{help:?}");
        }
        assert_eq!(usage_of(&["frob"]), "unknown command: \"frob\"");
        assert!(failure_of(&["add-rvm"]).contains("remote VMs are not supported"));
        assert!(failure_of(&["list-rvms"]).contains("remote VMs are not supported"));
        let inv = parse_args(&s(&["--socket", "/s", "list"])).unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/s"));
        let inv = parse_args(&s(&["get", R1, "--socket=/t"])).unwrap();
        assert_eq!(inv.socket.as_deref(), Some("/t"));
    }

    #[test]
    fn rule_lines_pad_the_state() {
        let r = rules();
        assert_eq!(rule_line(&r[1]), format!("{R1} true    {SSH}"));
        assert!(rule_line(&r[0]).starts_with(&format!("{R2} false   FROM")));
        assert_eq!(render_changed("Added", &r[1..2], false), format!("Added rules:\n{R1} true    {SSH}\n"));
        let v: Value = serde_json::from_str(&render_changed("Deleted", &r[..1], true)).unwrap();
        assert_eq!(v["rules"][0]["uuid"], R2);
        assert!(v["rules"][0].get("global").is_none(), "global only when true");
    }

    #[test]
    fn default_table() {
        let text = render_rules(rules(), &ListOpts::default());
        let expected = format!(
            "UUID                                 ENABLED RULE\n\
             {R1} true    {SSH}\n\
             {R2} -       FROM tag \"role\" = \"www\" TO tag \"role\" = \"db\" ALLOW tcp PORT 5432\n\
             {R3} true    FROM any TO all vms ALLOW icmp TYPE 8 CODE 0\n"
        );
        assert_eq!(text, expected);
        assert_eq!(render_rules(Vec::new(), &ListOpts::default()), "", "no rules, no header");
        let text = render_rules(rules(), &list_opts(&["list", "-H", "-o", "description,global,enabled"]));
        assert_eq!(
            text,
            "ssh in          true   true\n\
             -               -      -\n\
             -               -      true\n"
        );
        let text = render_rules(rules()[..1].to_vec(), &list_opts(&["list", "-o", "owner_uuid,uuid"]));
        assert_eq!(text, format!("OWNER_UUID                           UUID\n{OWNER} {R2}\n"));
    }

    #[test]
    fn parseable_and_json_lists() {
        let text = render_rules(rules(), &list_opts(&["list", "-p", "-o", "uuid,enabled,description"]));
        assert_eq!(text, format!("{R1}:true:ssh in\n{R2}:-:-\n{R3}:true:-\n"));
        let mut r = rules();
        r[1].rule = "FROM ip 10.0.0.1 TO all vms ALLOW tcp PORT 22".into();
        r[1].description = Some("a|b:c".into());
        let text = render_rules(r.clone(), &list_opts(&["list", "-p", "-o", "description"]));
        assert_eq!(text, "a|b\\:c\n-\n-\n");
        let text = render_rules(r, &list_opts(&["list", "-p", "-d", "|", "-o", "description,rule"]));
        assert!(text.starts_with("a\\|b:c|FROM ip 10.0.0.1 TO"), "{text}");
        let v: Value =
            serde_json::from_str(&render_rules(rules(), &list_opts(&["list", "-j", "-o", "rule,uuid"]))).unwrap();
        assert_eq!(v[0], json!({"rule": SSH, "uuid": R1}));
        let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["rule", "uuid"], "the order -o gives");
        let v: Value = serde_json::from_str(&render_rules(rules(), &list_opts(&["list", "-j"]))).unwrap();
        assert_eq!(v[0], json!({"enabled": true, "rule": SSH, "uuid": R1}));
        assert_eq!(render_rules(Vec::new(), &list_opts(&["list", "-j"])), "[]\n");
    }

    #[test]
    fn get_prints_fwadms_fields() {
        let r = rules();
        let v = full_json(&r[1]);
        assert_eq!(v, json!({"description": "ssh in", "enabled": true, "global": true, "rule": SSH, "uuid": R1}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["description", "enabled", "global", "rule", "uuid"]);
        assert_eq!(full_json(&r[0])["owner_uuid"], OWNER);
    }

    #[test]
    fn vms_status_and_stats() {
        let vms = s(&[VM, R1]);
        assert_eq!(render_vms(&vms, false), format!("{VM}\n{R1}\n"));
        assert_eq!(render_vms(&[], false), "");
        assert_eq!(serde_json::from_str::<Value>(&render_vms(&vms, true)).unwrap(), json!([VM, R1]));
        let on = FwStatus { status: "running".into(), rules: 3 };
        let off = FwStatus { status: "stopped".into(), rules: 0 };
        assert_eq!(render_status(&on, false, false), "running\n");
        assert_eq!(render_status(&off, false, false), "stopped\n");
        assert_eq!(render_status(&on, true, false), "running: true\nrules: 3\n");
        assert_eq!(
            serde_json::from_str::<Value>(&render_status(&off, true, true)).unwrap(),
            json!({"running": false, "rules": 0})
        );
        let stats = vec![
            FwRuleStats { uuid: R1.into(), packets: 12, bytes: 720 },
            FwRuleStats { uuid: R3.into(), packets: 0, bytes: 0 },
        ];
        let r = rules();
        assert_eq!(render_stats(&stats, &r[1..2], false), format!("12 720 {R1} {SSH}\n0 0 {R3} -\n"));
        let v: Value = serde_json::from_str(&render_stats(&stats, &r, true)).unwrap();
        assert_eq!(v[0], json!({"uuid": R1, "packets": 12, "bytes": 720, "rule": SSH}));
    }

    #[test]
    fn payloads_as_fwadm_reads_them() {
        let one =
            payload_rules(json!({"rule": SSH, "enabled": true, "version": "1.2.3", "created_by": "fwadm"})).unwrap();
        assert_eq!(one.len(), 1);
        let reqs = add_requests(one, &RuleFlags::default()).unwrap();
        assert_eq!(reqs, [FwRuleRequest { rule: SSH.into(), enabled: true, ..Default::default() }]);
        let many = payload_rules(json!({"rules": [{"rule": SSH}, {"rule": "FROM any TO all vms ALLOW udp PORT 53", "uuid": R1, "owner_uuid": OWNER}], "remoteVMs": []})).unwrap();
        let flags = RuleFlags { enable: true, global: false, owner_uuid: None, description: Some("d".into()) };
        let reqs = add_requests(many, &flags).unwrap();
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|r| r.enabled && r.description.as_deref() == Some("d")));
        assert_eq!((reqs[1].uuid.as_deref(), reqs[1].owner_uuid.as_deref()), (Some(R1), Some(OWNER)));
        let failed = |v: Value| match payload_rules(v).and_then(|o| add_requests(o, &RuleFlags::default())) {
            Err(CliError::Failed { code: 1, message }) => message,
            other => panic!("{other:?}"),
        };
        assert!(failed(json!({"remoteVMs": [{"uuid": VM}]})).contains("remote VMs are not supported"));
        assert!(failed(json!({"rules": []})).contains("no rules"));
        assert!(failed(json!({})).contains("no rules"));
        assert!(failed(json!([SSH])).contains("not a JSON object"));
        assert!(failed(json!({"rules": [SSH]})).starts_with("rule 1 of the payload: "));
        assert!(failed(json!({"rules": [{"rule": SSH}, {"enabled": true}]}))
            .contains("rule 2 of the payload has no rule text"));
        assert!(failed(json!({"rule": SSH, "log": true})).contains("unknown field `log`"));
        assert!(failed(json!({"rules": [{"rule": SSH}], "vms": []})).contains("unknown property \"vms\""));
    }

    /// A daemon holding `rules()`; VM's firewall runs with R1 and R3.
    fn daemon() -> FakeDaemon {
        FakeDaemon::start(|req| {
            let rule = |uuid: &str| rules().into_iter().find(|r| r.uuid == uuid);
            let not_found =
                |what: &str| (404, json!({"kind": "NotFound", "message": format!("{what} not found")}).to_string());
            let path: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
            match (req.method.as_str(), path.as_slice()) {
                ("GET", ["v1", "fw", "rules"]) => (200, serde_json::to_string(&rules()).unwrap()),
                ("POST", ["v1", "fw", "rules"]) => {
                    let body: FwAddRequest = serde_json::from_str(&req.body).unwrap();
                    let added: Vec<Value> = body
                        .rules
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            json!({"uuid": format!("0a1b2c3d-0000-4000-8000-00000000010{i}"), "enabled": r.enabled,
                                             "global": r.global, "rule": r.rule})
                        })
                        .collect();
                    (200, Value::Array(added).to_string())
                }
                ("GET", ["v1", "fw", "rules", u]) => match rule(u) {
                    Some(r) => (200, serde_json::to_string(&r).unwrap()),
                    None => not_found(&format!("rule {u}")),
                },
                ("POST", ["v1", "fw", "changes"]) => {
                    let req: FwChangeRequest = serde_json::from_str(&req.body).unwrap();
                    let named = req.update.iter().map(|c| &c.uuid).chain(&req.delete);
                    if let Some(u) = named.clone().find(|u| rule(u).is_none()) {
                        return not_found(&format!("rule {u}"));
                    }
                    let updated: Vec<FwRule> = req
                        .update
                        .into_iter()
                        .map(|c| {
                            let mut r = rule(&c.uuid).unwrap();
                            r.rule = c.rule.unwrap_or(r.rule);
                            r.enabled = c.enabled.unwrap_or(r.enabled);
                            r.description = c.description.or(r.description);
                            r
                        })
                        .collect();
                    let deleted: Vec<FwRule> = req.delete.iter().map(|u| rule(u).unwrap()).collect();
                    (200, json!({"updated": updated, "deleted": deleted}).to_string())
                }
                ("GET", ["v1", "fw", "rules", _, "vms"]) => (200, json!([VM]).to_string()),
                ("GET", ["v1", "fw", "vms", VM, "rules"]) => {
                    let on: Vec<FwRule> = rules().into_iter().filter(|r| r.enabled).collect();
                    (200, serde_json::to_string(&on).unwrap())
                }
                ("GET", ["v1", "fw", "vms", VM, "status"]) => {
                    (200, json!({"status": "running", "rules": 2}).to_string())
                }
                ("GET", ["v1", "fw", "vms", VM, "stats"]) => (
                    200,
                    json!([{"uuid": R1, "packets": 5, "bytes": 300}, {"uuid": R3, "packets": 1, "bytes": 84}])
                        .to_string(),
                ),
                ("POST", ["v1", "vms", VM, "update"]) => (200, json!({"vm": {"uuid": VM}}).to_string()),
                (_, ["v1", "fw", "vms", u, ..]) | (_, ["v1", "vms", u, ..]) => not_found(&format!("VM {u}")),
                _ => not_found(&req.path),
            }
        })
    }

    fn body(d: &FakeDaemon, n: usize) -> Value {
        serde_json::from_str(&d.seen()[n].body).unwrap()
    }

    fn calls(d: &FakeDaemon) -> Vec<String> {
        d.seen().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    }

    #[test]
    fn add_sends_the_rules_and_prints_them() {
        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        let code = t.run(&[
            "fwadm", "add", "-e", "-O", OWNER, "--desc", "ssh", "FROM", "any", "TO", "all", "vms", "ALLOW", "tcp",
            "PORT", "22",
        ]);
        assert_eq!(code, 0, "{}", t.err());
        assert_eq!(t.out(), format!("Added rules:\n0a1b2c3d-0000-4000-8000-000000000100 true    {SSH}\n"));
        assert_eq!(calls(&d), ["POST /v1/fw/rules"]);
        assert_eq!(
            body(&d, 0),
            json!({"rules": [{"rule": SSH, "enabled": true, "description": "ssh", "owner_uuid": OWNER, "global": false, "uuid": null}]})
        );

        let payload =
            json!({"rules": [{"rule": SSH, "global": true}, {"rule": "FROM any TO all vms BLOCK udp PORT all"}]});
        let mut t = TestIo::with_input(&payload.to_string());
        t.socket_env = Some(d.path());
        assert_eq!(t.run(&["fwadm", "add"]), 0, "{}", t.err());
        assert_eq!(t.out().lines().count(), 3, "{}", t.out());
        assert!(t.out().contains("000000000101 false   FROM any TO all vms BLOCK udp PORT all\n"), "{}", t.out());
        let sent = body(&d, 1);
        assert_eq!(
            (sent["rules"][0]["global"].clone(), sent["rules"][1]["enabled"].clone()),
            (json!(true), json!(false))
        );

        let mut t = TestIo::for_daemon(&d);
        t.tty = true;
        assert_eq!(t.run(&["fwadm", "add", "-e"]), 2);
        assert!(t.err().starts_with("fwadm: add: no rules given"), "{}", t.err());
        assert!(t.err().contains("\nusage: fwadm add [-e] [-g]"), "{}", t.err());
        assert_eq!(d.seen().len(), 2, "nothing sent");
    }

    #[test]
    fn update_enable_disable_and_delete() {
        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(
            t.run(&["fwadm", "update", R2, "-e", "FROM", "any", "TO", "all", "vms", "ALLOW", "tcp", "PORT", "22"]),
            0,
            "{}",
            t.err()
        );
        assert_eq!(t.out(), format!("Updated rules:\n{R2} true    {SSH}\n"));
        assert_eq!(calls(&d), ["POST /v1/fw/changes"]);
        assert_eq!(
            body(&d, 0),
            json!({"update": [{"uuid": R2, "rule": SSH, "enabled": true, "description": null}], "delete": []})
        );

        // A payload from `fwadm get`, edited: owner unchanged, so allowed.
        let dir = tempfile_dir();
        let file = dir.join("r.json");
        let mut edited = full_json(&rules()[0]);
        edited["description"] = json!("db access");
        std::fs::write(&file, serde_json::to_string(&json!({"rules": [edited]})).unwrap()).unwrap();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "update", "-f", file.to_str().unwrap()]), 0, "{}", t.err());
        assert_eq!(calls(&d)[1..], [format!("GET /v1/fw/rules/{R2}"), "POST /v1/fw/changes".to_string()]);
        assert_eq!(body(&d, 2)["update"][0]["description"], "db access");
        // A changed owner is refused before anything changes.
        edited["owner_uuid"] = json!(VM);
        std::fs::write(&file, edited.to_string()).unwrap();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "update", "-f", file.to_str().unwrap()]), 1);
        assert_eq!(t.err(), format!("fwadm: rule {R2}: changing owner_uuid is not supported\n"));
        assert_eq!(d.seen().len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();

        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "disable", R1, R3]), 0, "{}", t.err());
        assert_eq!(
            t.out(),
            format!("Disabled rules:\n{R1} false   {SSH}\n{R3} false   FROM any TO all vms ALLOW icmp TYPE 8 CODE 0\n")
        );
        assert_eq!(
            body(&d, 0),
            json!({"update": [
                {"uuid": R1, "rule": null, "enabled": false, "description": null},
                {"uuid": R3, "rule": null, "enabled": false, "description": null},
            ], "delete": []})
        );
        assert_eq!(calls(&d), ["POST /v1/fw/changes"], "one request for both");

        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        let missing = "0a1b2c3d-0000-4000-8000-0000000000ff";
        assert_eq!(t.run(&["fwadm", "delete", R1, missing]), 1);
        assert_eq!(t.err(), format!("fwadm: rule {missing} not found\n"));
        assert_eq!(body(&d, 0), json!({"update": [], "delete": [R1, missing]}));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "delete", R1, R2]), 0, "{}", t.err());
        assert!(t.out().starts_with(&format!("Deleted rules:\n{R1} true    {SSH}\n{R2} false   FROM")), "{}", t.out());
        assert_eq!(calls(&d), ["POST /v1/fw/changes", "POST /v1/fw/changes"]);
        assert_eq!(body(&d, 1), json!({"update": [], "delete": [R1, R2]}));
    }

    #[test]
    fn reading_commands() {
        let d = daemon();
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "get", R1]), 0, "{}", t.err());
        assert_eq!(serde_json::from_str::<Value>(&t.out()).unwrap(), full_json(&rules()[1]));
        assert!(t.out().starts_with("{\n  \"description\": \"ssh in\",\n"), "{}", t.out());

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "list", "-p", "-o", "uuid,enabled"]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("{R1}:true\n{R2}:-\n{R3}:true\n"));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "vms", R1]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("{VM}\n"));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "rules", VM]), 0, "{}", t.err());
        assert_eq!(t.out().lines().count(), 3, "{}", t.out());
        assert!(t.out().starts_with("UUID "), "{}", t.out());

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "status", "-v", VM]), 0, "{}", t.err());
        assert_eq!(t.out(), "running: true\nrules: 2\n");

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "stats", VM]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("5 300 {R1} {SSH}\n1 84 {R3} FROM any TO all vms ALLOW icmp TYPE 8 CODE 0\n"));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "start", VM]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("Firewall started for VM {VM}\n"));
        let last = d.seen().last().unwrap().clone();
        assert_eq!(
            (last.path.as_str(), last.body.as_str()),
            (format!("/v1/vms/{VM}/update").as_str(), "{\"firewall_enabled\":true}")
        );

        let other = "1a2b3c4d-0000-4000-8000-000000000002";
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["fwadm", "status", other]), 1);
        assert_eq!(t.err(), format!("fwadm: VM {other} not found\n"));
    }

    #[test]
    fn errors_and_usage() {
        let mut t = TestIo::new();
        assert_eq!(t.run(&["fwadm", "list", "-d", "|"]), 2);
        assert_eq!(t.err(), "fwadm: -d requires -p\nusage: fwadm list [-j] [-o field,...] [-p] [-d <char>] [-H]\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["fwadm", "update", R1, "-x"]), 2);
        assert_eq!(
            t.err(),
            "fwadm: unknown option -x\n\
             usage: fwadm update <rule uuid> [-e] [-d|--desc <text>] [-j] [<rule text>]\n       \
             fwadm update [<rule uuid>] [-e] [-j] -f <file> | --stdin\n"
        );
        let mut t = TestIo::new();
        assert_eq!(t.run(&["fwadm", "get", "nope"]), 1);
        assert_eq!(t.err(), "fwadm: invalid UUID \"nope\"\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["fwadm"]), 0);
        assert!(t.out().starts_with("Usage: fwadm <command>"), "{}", t.out());
        assert!(t.out().contains("Rules:\n    FROM <targets> TO <targets>"), "{}", t.out());
        let mut t = TestIo::new();
        assert_eq!(t.run(&["fwadm", "--socket", "/nonexistent/zv.sock", "list"]), 1);
        assert!(t.err().starts_with("fwadm: cannot reach zonevisord at /nonexistent/zv.sock"), "{}", t.err());
    }

    /// A fresh directory for a test's files.
    fn tempfile_dir() -> std::path::PathBuf {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("zv-fwadm-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
