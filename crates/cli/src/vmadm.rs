//! `vmadm`: create, list, inspect, start, stop, update and delete
//! instances, with SmartOS's commands, options, output and exit codes.
//!
//! [`parse_args`] turns the command line into an [`Invocation`] without
//! touching the daemon (bad UUIDs, unknown columns and malformed filters
//! are usage errors, exit 2). [`render_list`] and [`render_lookup`] are
//! pure functions over the VM objects the daemon returns; `list` asks the
//! daemon only for the top-level properties its columns, filters and sort
//! keys read.

use serde_json::{Map, Value};
use zonevisor_api::{
    AttachDisk, ClientError, ErrorKind, Event, EventType, InstanceUuid, KillRequest, RebootRequest, StartRequest,
    StopRequest, SysrqRequest, ValidateAction, ValidateRequest, VmObject,
};

use crate::args::{self, Mode, Opt};
use crate::filter::{self, Filter, SortKey, Tilde};
use crate::table::{self, Column, Style};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// Fields `list` can show and sort by: property, header, SmartOS's width.
pub const LIST_FIELDS: &[(&str, &str, usize)] = &[
    ("alias", "ALIAS", 10),
    ("autoboot", "AUTOBOOT", 8),
    ("billing_id", "BILLING_ID", 36),
    ("boot_timestamp", "BOOT_TIMESTAMP", 24),
    ("brand", "BRAND", 14),
    ("cpu_cap", "CPU_CAP", 7),
    ("cpu_shares", "CPU_SHARE", 9),
    ("cpu_type", "CPU_TYPE", 8),
    ("create_timestamp", "CREATE_TIMESTAMP", 24),
    ("dns_domain", "DOMAIN", 32),
    ("do_not_inventory", "DNI", 5),
    ("docker", "DOCKER", 6),
    ("firewall_enabled", "FIREWALL_ENABLED", 16),
    ("hostname", "HOSTNAME", 32),
    ("image_uuid", "IMAGE_UUID", 36),
    ("indestructible_delegated", "INDESTR_DATA", 12),
    ("indestructible_zoneroot", "INDESTR_ROOT", 12),
    ("ram", "RAM", 7),
    ("max_locked_memory", "MAX_LOCKED", 10),
    ("max_lwps", "MAX_LWP", 7),
    ("max_physical_memory", "MAX_PHYS", 8),
    ("max_swap", "MAX_SWAP", 8),
    ("owner_uuid", "OWNER_UUID", 36),
    ("package_name", "PACKAGE_NAME", 32),
    ("package_version", "PACKAGE_VER", 11),
    ("pid", "PID", 6),
    ("qemu_extra_opts", "QEMU_EXTRA_OPTS", 15),
    ("quota", "QUOTA", 5),
    ("zone_state", "ZONE_STATE", 10),
    ("state", "STATE", 16),
    ("tmpfs", "TMPFS", 5),
    ("type", "TYPE", 4),
    ("uuid", "UUID", 36),
    ("vcpus", "VCPUS", 5),
    ("zfs_io_priority", "IO_PRIORITY", 11),
    ("zpool", "ZPOOL", 12),
    ("zonename", "ZONENAME", 12),
    ("zonepath", "ZONEPATH", 40),
    ("zoneid", "ZONEID", 6),
];

/// Properties holding key/value maps, reachable as `tags.<key>`.
const HASH_KEYS: &[&str] = &["customer_metadata", "internal_metadata", "tags", "routes"];
/// Properties holding arrays of objects, reachable as `nics.<n>.<field>`.
const ARRAY_KEYS: &[&str] = &["disks", "nics", "filesystems"];

/// `list`'s columns when `-o` is not given.
pub const DEFAULT_ORDER: &str = "uuid,type,ram,state,alias";
/// `list`'s sort when `-s` is not given.
pub const DEFAULT_SORT: &str = "ram,uuid";

/// The column for a `list -o`/`-s` key, or `None` when it cannot be listed.
/// `nics.*.ip` is refused: a column cannot show "any" element.
pub fn list_column(key: &str) -> Option<Column> {
    if let Some((_, header, width)) = LIST_FIELDS.iter().find(|(k, _, _)| *k == key) {
        return Some(Column::new(*header, *width));
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let listable = match parts.as_slice() {
        [array, index, _] if ARRAY_KEYS.contains(array) => index.bytes().all(|b| b.is_ascii_digit()),
        [hash, _, ..] => HASH_KEYS.contains(hash),
        _ => false,
    };
    listable.then(|| Column::new(key.to_uppercase(), 20))
}

/// Whether `key` may be used in a filter: a listable field, a key of a
/// map property (`tags.role`), or a field of an array element
/// (`nics.0.ip`, `nics.*.ip`).
pub fn valid_filter_key(key: &str) -> bool {
    if list_column(key).is_some() {
        return true;
    }
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        [array, index, field] if ARRAY_KEYS.contains(array) && !field.is_empty() => {
            *index == "*" || (!index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => false,
    }
}

/// `vmadm list` options.
#[derive(Debug)]
pub struct ListOpts {
    /// Column keys, in order.
    pub columns: Vec<String>,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// Filters, all of which must match.
    pub filters: Vec<Filter>,
    /// Header and parsable output.
    pub style: Style,
}

impl Default for ListOpts {
    fn default() -> Self {
        ListOpts {
            columns: DEFAULT_ORDER.split(',').map(str::to_string).collect(),
            sort: filter::parse_sort(DEFAULT_SORT),
            filters: Vec::new(),
            style: Style { header: true, parsable: false, fixed: true },
        }
    }
}

/// `vmadm lookup` options.
#[derive(Debug, Default)]
pub struct LookupOpts {
    /// `-j`: JSON objects instead of UUIDs.
    pub json: bool,
    /// `-1`: exactly one match.
    pub unique: bool,
    /// `-o`: only these properties in the JSON objects.
    pub output: Option<Vec<String>>,
    /// Filters, all of which must match.
    pub filters: Vec<Filter>,
}

/// Where an update payload comes from.
#[derive(Debug, PartialEq)]
pub enum UpdateSource {
    /// A JSON file (`None` or `-`: stdin).
    File(Option<String>),
    /// `property=value` arguments.
    Props(Map<String, Value>),
}

/// A parsed `vmadm` command.
#[derive(Debug)]
pub enum Command {
    /// Print usage.
    Help,
    /// `create [-f file]`.
    Create {
        /// Payload file (`None`: stdin).
        file: Option<String>,
    },
    /// `validate create|update [brand] [-f file]`.
    Validate {
        /// What the payload is for.
        action: ValidateAction,
        /// The brand given for `update`.
        brand: Option<String>,
        /// Payload file (`None`: stdin).
        file: Option<String>,
    },
    /// `validate <action>` for an action that is neither create nor update.
    ValidateNoAction {
        /// The action named.
        action: String,
        /// Payload file (`None`: stdin).
        file: Option<String>,
    },
    /// `get <uuid>`.
    Get {
        /// The instance.
        uuid: InstanceUuid,
    },
    /// `list ...`.
    List(ListOpts),
    /// `lookup ...`.
    Lookup(LookupOpts),
    /// `start <uuid> [order=cdn[,once=d]] [cdrom=path,model] [disk=path,model]`.
    Start {
        /// The instance.
        uuid: InstanceUuid,
        /// A hardware VM's one-off boot options.
        options: StartRequest,
    },
    /// `sysrq <uuid> nmi|screenshot`.
    Sysrq {
        /// The instance.
        uuid: InstanceUuid,
        /// `nmi` or `screenshot`.
        request: String,
    },
    /// `stop <uuid> [-F] [-t secs]`.
    Stop {
        /// The instance.
        uuid: InstanceUuid,
        /// `-F`.
        force: bool,
        /// `-t`.
        timeout_secs: Option<u64>,
    },
    /// `reboot <uuid> [-F]`.
    Reboot {
        /// The instance.
        uuid: InstanceUuid,
        /// `-F`.
        force: bool,
    },
    /// `kill [-s SIG] <uuid>`.
    Kill {
        /// The instance.
        uuid: InstanceUuid,
        /// Normalized signal (`SIGTERM`, or a number), if given.
        signal: Option<String>,
    },
    /// `delete <uuid>`.
    Delete {
        /// The instance.
        uuid: InstanceUuid,
    },
    /// `events [-f] [-j] [-r] [uuid]`.
    Events {
        /// Only this instance's events.
        uuid: Option<InstanceUuid>,
        /// `-f`: the whole VM object with each event.
        full: bool,
        /// `-j`: one JSON object per line.
        json: bool,
        /// `-r`: print the `ready` event.
        ready: bool,
    },
    /// `info <uuid> [type,...]`.
    Info {
        /// The instance.
        uuid: InstanceUuid,
        /// The info types asked for (empty: all).
        types: Vec<String>,
    },
    /// `console [--log] <uuid>`.
    Console {
        /// The instance.
        uuid: InstanceUuid,
        /// `--log`: print the console log instead of attaching.
        log: bool,
    },
    /// `update <uuid> ...`.
    Update {
        /// The instance.
        uuid: InstanceUuid,
        /// The payload's source.
        source: UpdateSource,
    },
    /// `send <uuid> [-i <snapname>]`.
    Send {
        /// The instance.
        uuid: InstanceUuid,
        /// `-i`: the snapshot an incremental stream starts after.
        base: Option<String>,
    },
    /// `receive [-f <filename>]`.
    Receive {
        /// The stream's file (`None` or `-`: stdin).
        file: Option<String>,
    },
    /// `create-snapshot`, `rollback-snapshot` or `delete-snapshot <uuid> <snapname>`.
    Snapshot {
        /// What to do with the snapshot.
        verb: SnapshotVerb,
        /// The instance.
        uuid: InstanceUuid,
        /// The snapshot's name.
        name: String,
    },
}

/// What a snapshot command does (see [`Command::Snapshot`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotVerb {
    /// `create-snapshot`.
    Create,
    /// `rollback-snapshot`.
    Rollback,
    /// `delete-snapshot`.
    Delete,
}

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    /// `--socket`, if given.
    pub socket: Option<String>,
    /// What to do.
    pub command: Command,
}

/// SmartOS commands zonevisor does not offer yet.
const NOT_YET: &[&str] = &["install", "reprovision", "sysrq"];

/// Linux signal names (without `SIG`).
pub const SIGNALS: &[&str] = &[
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
    "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH",
    "IO", "POLL", "PWR", "SYS",
];

/// Normalizes a signal given as `TERM`, `SIGTERM`, `term` or `15`.
pub fn normalize_signal(sig: &str) -> Option<String> {
    if !sig.is_empty() && sig.bytes().all(|b| b.is_ascii_digit()) {
        return sig.parse::<u32>().ok().filter(|n| (1..=64).contains(n)).map(|n| n.to_string());
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS.contains(&name).then(|| format!("SIG{name}"))
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::usage(message)
}

/// `vmadm start`'s boot options (SmartOS's): `order=cdn[,once=d]`,
/// `once=d`, and any number of `cdrom=<path>,<model>` and
/// `disk=<path>,<model>`, paths inside the VM's zone root.
fn start_options(args: &[String]) -> Result<StartRequest, CliError> {
    let mut req = StartRequest::default();
    let boot_letters = |key: &str, v: &str| {
        if v.is_empty() || !v.chars().all(|c| matches!(c, 'c' | 'd' | 'n')) {
            Err(usage(format!("Invalid value for {key}: \"{v}\" (letters of c: disk, d: CD-ROM, n: network)")))
        } else {
            Ok(v.to_string())
        }
    };
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(usage(format!("Invalid argument to start: \"{arg}\" (option=value)")));
        };
        match key {
            "order" => {
                if req.order.is_some() {
                    return Err(usage("The order= option can only be specified once per boot".to_string()));
                }
                let (order, once) = match value.split_once(",once=") {
                    Some((o, once)) => (o, Some(once)),
                    None => (value, None),
                };
                req.order = Some(boot_letters("order", order)?);
                if let Some(once) = once {
                    req.once = Some(boot_letters("once", once)?);
                }
            }
            "once" => req.once = Some(boot_letters("once", value)?),
            "cdrom" | "disk" => {
                let (path, model) =
                    value.split_once(',').unwrap_or((value, if key == "cdrom" { "ide" } else { "virtio" }));
                if !path.starts_with('/') {
                    return Err(usage(format!("Invalid value for {key}: \"{path}\" is not an absolute path")));
                }
                let attach = AttachDisk { path: path.to_string(), model: model.to_string() };
                if key == "cdrom" {
                    req.cdrom.push(attach)
                } else {
                    req.disk.push(attach)
                }
            }
            _ => return Err(usage(format!("Invalid argument to start: \"{arg}\" (order, once, cdrom or disk)"))),
        }
    }
    Ok(req)
}

fn no_more(rest: &[String], command: &str) -> Result<(), CliError> {
    match rest.first() {
        None => Ok(()),
        Some(extra) => Err(usage(format!("Unexpected argument \"{extra}\" for {command}"))),
    }
}

fn parse(args: &[String], opts: &[Opt]) -> Result<args::Parsed, CliError> {
    args::parse(args, opts, Mode::Intermixed).map_err(usage)
}

/// Command `name`'s options, from its definition in [`pages::VMADM`].
fn opts(name: &str) -> Vec<Opt> {
    pages::VMADM.opts(name)
}

/// Parses `vmadm`'s arguments (without the program name).
pub fn parse_args(argv: &[String]) -> Result<Invocation, CliError> {
    let g = args::globals(argv, &["-h", "--help", "-?"])?;
    let (mut socket, i) = (g.socket, g.next);
    if g.help {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let Some(cmd) = argv.get(i) else {
        // SmartOS prints its usage (on stderr, exit 2).
        return Err(usage(format!("missing command\n{}", doc::render_help(&pages::VMADM))));
    };
    let rest = &argv[i + 1..];
    // `vmadm get -h` is help, whatever else is (or is not) on the line.
    let before_dashes = rest.iter().take_while(|a| *a != "--");
    if before_dashes.clone().any(|a| a == "-h" || a == "--help") {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let (parsed, command) = match cmd.as_str() {
        "help" => (args::Parsed::default(), Command::Help),
        "create" => {
            let p = parse(rest, &opts(cmd))?;
            no_more(&p.positional, "create")?;
            let file = p.value("file").map(str::to_string);
            (p, Command::Create { file })
        }
        "validate" => {
            let p = parse(rest, &opts(cmd))?;
            let file = p.value("file").map(str::to_string);
            let command = match p.positional.first().map(String::as_str) {
                Some("create") => {
                    no_more(&p.positional[1..], "validate create")?;
                    Command::Validate { action: ValidateAction::Create, brand: None, file }
                }
                Some("update") => {
                    let brand = p
                        .positional
                        .get(1)
                        .ok_or_else(|| usage("Will not validate without a valid action and brand."))?;
                    no_more(&p.positional[2..], "validate update")?;
                    Command::Validate { action: ValidateAction::Update, brand: Some(brand.clone()), file }
                }
                // SmartOS judges the payload against an action that has no
                // properties: every one of them is a bad property (exit 1).
                Some(other) => {
                    no_more(&p.positional[1..], "validate")?;
                    Command::ValidateNoAction { action: other.to_string(), file }
                }
                None => return Err(usage("Will not validate without a valid action.")),
            };
            (p, command)
        }
        "console" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            let log = p.has("log");
            (p, Command::Console { uuid, log })
        }
        "get" | "json" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            (p, Command::Get { uuid })
        }
        "list" => {
            let p = parse(rest, &opts(cmd))?;
            let list = list_opts(&p)?;
            (p, Command::List(list))
        }
        "lookup" => {
            let p = parse(rest, &opts(cmd))?;
            let json = p.has("json");
            let output = match p.value("output") {
                // SmartOS fails these (exit 1) rather than calling them usage errors.
                Some(_) if !json => return Err(CliError::failed("Cannot specify -o without -j")),
                Some(o) => Some(o.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()),
                None => None,
            };
            let filters = parse_filters(&p.positional, "lookup")?;
            let lookup = LookupOpts { json, unique: p.has("unique"), output, filters };
            (p, Command::Lookup(lookup))
        }
        "start" | "boot" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            let options = start_options(&p.positional[1..])?;
            (p, Command::Start { uuid, options })
        }
        "stop" | "halt" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            let timeout_secs = match p.value("timeout") {
                None => None,
                Some(t) => {
                    Some(t.parse::<u64>().map_err(|_| usage(format!("Invalid timeout \"{t}\": expected seconds")))?)
                }
            };
            let force = p.has("force");
            (p, Command::Stop { uuid, force, timeout_secs })
        }
        "reboot" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            let force = p.has("force");
            (p, Command::Reboot { uuid, force })
        }
        "kill" => {
            // `-SIGNAL` (`-9`, `-TERM`, `-SIGHUP`) besides `-s SIGNAL`.
            let mut dash_signal = None;
            let mut kept = Vec::new();
            for a in rest {
                let is_option_like = a.len() > 1 && a.starts_with('-') && !a.starts_with("--");
                let name = &a[1.min(a.len())..];
                if is_option_like && name != "s" && name != "h" && normalize_signal(name).is_some() {
                    dash_signal = normalize_signal(name);
                } else {
                    kept.push(a.clone());
                }
            }
            let p = parse(&kept, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            let signal = match p.value("signal") {
                Some(s) => Some(normalize_signal(s).ok_or_else(|| usage(format!("Invalid signal \"{s}\"")))?),
                None => dash_signal,
            };
            (p, Command::Kill { uuid, signal })
        }
        "sysrq" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            let request = match p.positional.get(1).map(String::as_str) {
                Some(r @ ("nmi" | "screenshot")) => r.to_string(),
                Some(other) => return Err(usage(format!("Invalid sysrq request: \"{other}\" (nmi or screenshot)"))),
                None => return Err(usage("sysrq needs a request: nmi or screenshot".to_string())),
            };
            no_more(&p.positional[2..], cmd)?;
            (p, Command::Sysrq { uuid, request })
        }
        "delete" | "destroy" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            (p, Command::Delete { uuid })
        }
        "update" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            let props = &p.positional[1..];
            let source = match (p.value("file"), props.is_empty()) {
                (Some(_), false) => {
                    return Err(usage("Give either -f <filename> or property=value arguments to update, not both"))
                }
                (file, true) => UpdateSource::File(file.map(str::to_string)),
                (None, false) => UpdateSource::Props(args::kv_object(props).map_err(usage)?),
            };
            (p, Command::Update { uuid, source })
        }
        "events" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = match p.positional.first() {
                None => None,
                some => Some(args::instance_uuid(some, cmd)?),
            };
            no_more(p.positional.get(1..).unwrap_or(&[]), cmd)?;
            let command = Command::Events { uuid, full: p.has("full"), json: p.has("json"), ready: p.has("ready") };
            (p, command)
        }
        "info" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            let mut types: Vec<String> = Vec::new();
            for t in p.positional[1..].iter().flat_map(|a| a.split(',')).filter(|t| !t.is_empty()) {
                if !INFO_TYPES.iter().any(|(name, _)| *name == t) {
                    let names: Vec<&str> = INFO_TYPES.iter().map(|(n, _)| *n).collect();
                    return Err(usage(format!("Invalid info type: \"{t}\" (one of {})", names.join(", "))));
                }
                if !types.iter().any(|have| have == t) {
                    types.push(t.to_string());
                }
            }
            (p, Command::Info { uuid, types })
        }
        "create-snapshot" | "rollback-snapshot" | "delete-snapshot" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            // SmartOS's words for a missing or extra name.
            let [name] = &p.positional[1..] else {
                return Err(usage(format!("Wrong number of parameters to \"{cmd}\"")));
            };
            let verb = match cmd.as_str() {
                "create-snapshot" => SnapshotVerb::Create,
                "rollback-snapshot" => SnapshotVerb::Rollback,
                _ => SnapshotVerb::Delete,
            };
            let name = name.clone();
            (p, Command::Snapshot { verb, uuid, name })
        }
        "send" => {
            let p = parse(rest, &opts(cmd))?;
            let uuid = args::instance_uuid(p.positional.first(), cmd)?;
            no_more(&p.positional[1..], cmd)?;
            let base = p.value("incremental").map(str::to_string);
            (p, Command::Send { uuid, base })
        }
        "receive" | "recv" => {
            let p = parse(rest, &opts("receive"))?;
            no_more(&p.positional, "receive")?;
            let file = p.value("file").map(str::to_string);
            (p, Command::Receive { file })
        }
        other if NOT_YET.contains(&other) => {
            return Err(CliError::failed(format!("\"{other}\" is not supported by zonevisor yet")))
        }
        other => return Err(usage(format!("Invalid command: \"{other}\".\n{}", doc::render_help(&pages::VMADM)))),
    };
    if parsed.has("help") {
        return Ok(Invocation { socket, command: Command::Help });
    }
    if let Some(s) = parsed.value("socket") {
        socket = Some(s.to_string());
    }
    Ok(Invocation { socket, command })
}

/// The filters of `list` (`what`: "filter") or `lookup` ("lookup"), named
/// in errors as SmartOS names them.
fn parse_filters(args: &[String], what: &str) -> Result<Vec<Filter>, CliError> {
    args.iter()
        .map(|a| {
            let f = Filter::parse(a, Tilde::Regex).map_err(CliError::failed)?;
            if !valid_filter_key(&f.key) {
                return Err(CliError::failed(format!("Invalid {what} key: \"{}\"", f.key)));
            }
            Ok(f)
        })
        .collect()
}

fn list_opts(p: &args::Parsed) -> Result<ListOpts, CliError> {
    let mut opts = ListOpts::default();
    if let Some(order) = p.value("order") {
        opts.columns = order.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
        if opts.columns.is_empty() {
            return Err(CliError::failed("Invalid order key: \"\""));
        }
    }
    // SmartOS's two checks: a `.*.` column first, then the field itself.
    let any_element = |k: &str| ARRAY_KEYS.iter().any(|a| k.strip_prefix(a).is_some_and(|r| r.starts_with(".*")));
    for c in &opts.columns {
        if any_element(c) {
            return Err(CliError::failed(format!("Invalid order key: \"{c}\"")));
        }
    }
    if let Some(sort) = p.value("sort") {
        opts.sort = filter::parse_sort(sort);
    }
    if let Some(sort) = p.value("sort") {
        if let Some(raw) = sort.split(',').find(|k| any_element(k.trim_start_matches(['-', '+']))) {
            return Err(CliError::failed(format!("Invalid sort key: \"{raw}\"")));
        }
    }
    let raws = p.value("sort").unwrap_or(DEFAULT_SORT).split(',').filter(|s| !s.is_empty() && *s != "-" && *s != "+");
    for (k, raw) in opts.sort.iter().zip(raws) {
        if list_column(&k.key).is_none() {
            return Err(CliError::failed(format!("invalid sort field: {raw}")));
        }
    }
    for c in &opts.columns {
        if list_column(c).is_none() {
            return Err(CliError::failed(format!("invalid order field: {c}")));
        }
    }
    opts.filters = parse_filters(&p.positional, "filter")?;
    opts.style.parsable = p.has("parsable");
    opts.style.header = !opts.style.parsable && !p.has("noheader");
    Ok(opts)
}

/// Adds the properties `vmadm` computes: `type` from the brand when the
/// daemon did not give one, and `ram` from `max_physical_memory` for
/// zones. Returns the keys it added.
pub fn add_fake_fields(vm: &mut VmObject) -> Vec<&'static str> {
    let mut added = Vec::new();
    if !vm.contains_key("type") {
        if let Some(brand) = vm.get("brand").and_then(Value::as_str) {
            let ty = match brand {
                "lx" => "LX",
                "kvm" => "KVM",
                "bhyve" => "BHYVE",
                _ => "OS",
            };
            vm.insert("type".into(), Value::from(ty));
            added.push("type");
        }
    }
    if !vm.contains_key("ram") {
        if let Some(mem) = vm.get("max_physical_memory").cloned() {
            vm.insert("ram".into(), mem);
            added.push("ram");
        }
    }
    added
}

/// The top-level properties needed to compute `keys` (`ram` and `type`
/// bring what they are computed from).
pub fn fields_for<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |f: &str| {
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    };
    for key in keys {
        let top = key.split('.').next().unwrap_or(key);
        add(top);
        match top {
            "ram" => add("max_physical_memory"),
            "type" => add("brand"),
            _ => {}
        }
    }
    out
}

/// The properties `list` needs from the daemon.
pub fn list_fetch_fields(opts: &ListOpts) -> Vec<String> {
    fields_for(
        opts.columns
            .iter()
            .map(String::as_str)
            .chain(opts.sort.iter().map(|k| k.top_level()))
            .chain(opts.filters.iter().map(|f| f.top_level())),
    )
}

/// Filters, sorts and renders `vms` as `vmadm list` prints them.
pub fn render_list(mut vms: Vec<VmObject>, opts: &ListOpts) -> String {
    for vm in &mut vms {
        add_fake_fields(vm);
    }
    vms.retain(|vm| filter::matches_all(&opts.filters, vm));
    vms.sort_by(|a, b| filter::compare_by(a, b, &opts.sort));
    let columns: Vec<Column> =
        opts.columns.iter().map(|c| list_column(c).unwrap_or_else(|| Column::new(c.to_uppercase(), 0))).collect();
    let paths: Vec<Vec<String>> = opts.columns.iter().map(|c| filter::split_path(c)).collect();
    let rows: Vec<Vec<Option<String>>> = vms
        .iter()
        .map(|vm| {
            paths
                .iter()
                .map(|p| filter::resolve_first(vm, p).and_then(filter::display).filter(|s| !s.is_empty()))
                .collect()
        })
        .collect();
    table::render(&columns, &rows, opts.style)
}

/// The properties `lookup` needs from the daemon (`None`: everything).
pub fn lookup_fetch_fields(opts: &LookupOpts) -> Option<Vec<String>> {
    let filter_keys = opts.filters.iter().map(|f| f.top_level());
    match (&opts.json, &opts.output) {
        (true, None) => None,
        (true, Some(out)) => Some(fields_for(out.iter().map(String::as_str).chain(filter_keys))),
        (false, _) => Some(fields_for(std::iter::once("uuid").chain(filter_keys))),
    }
}

/// Filters `vms` and renders them as `vmadm lookup` prints them.
pub fn render_lookup(vms: Vec<VmObject>, opts: &LookupOpts) -> Result<String, CliError> {
    let mut found = Vec::new();
    for mut vm in vms {
        let added = add_fake_fields(&mut vm);
        if !filter::matches_all(&opts.filters, &vm) {
            continue;
        }
        // SmartOS's lookup adds them too (its `addFakeFields` transform).
        let _ = added;
        found.push(vm);
    }
    if opts.unique && found.len() != 1 {
        return Err(CliError::failed(format!("Requested unique lookup but found {} results.", found.len())));
    }
    if !opts.json {
        let mut out = String::new();
        for vm in &found {
            if let Some(u) = vm.get("uuid").and_then(Value::as_str) {
                out.push_str(u);
                out.push('\n');
            }
        }
        return Ok(out);
    }
    let objects: Vec<Value> = match &opts.output {
        None => found.into_iter().map(Value::Object).collect(),
        Some(fields) => found
            .into_iter()
            .map(|vm| {
                let mut m = Map::new();
                for f in fields {
                    if let Some(v) = vm.get(f) {
                        m.insert(f.clone(), v.clone());
                    }
                }
                Value::Object(m)
            })
            .collect(),
    };
    let mut text = pretty(&Value::Array(objects));
    text.push('\n');
    Ok(text)
}

/// `vmadm info` types and the keys of the daemon's answer each one shows.
pub const INFO_TYPES: &[(&str, &[&str])] = &[
    ("all", &[]),
    ("status", &["uuid", "state", "pid", "boot_timestamp", "uptime_secs", "cgroup_version", "status"]),
    ("cpu", &["cpu"]),
    ("memory", &["memory"]),
    ("pids", &["pids"]),
    ("disk_io", &["disk_io"]),
    ("pressure", &["pressure_source", "pressure", "host_pressure"]),
    // Hardware VMs: QEMU's answers, as SmartOS's kvm brand shows them.
    ("block", &["block"]),
    ("blockstats", &["blockstats"]),
    ("chardev", &["chardev"]),
    ("cpus", &["cpus"]),
    ("pci", &["pci"]),
    ("version", &["version"]),
    ("vnc", &["vnc"]),
    ("accelerator", &["accelerator"]),
];

/// The part of an info answer that `types` asks for (everything for none
/// or `all`), keeping the answer's order.
pub fn select_info(info: Value, types: &[String]) -> Value {
    let Value::Object(map) = info else { return info };
    if types.is_empty() || types.iter().any(|t| t == "all") {
        return Value::Object(map);
    }
    let keys: Vec<&str> = INFO_TYPES
        .iter()
        .filter(|(name, _)| types.iter().any(|t| t == name))
        .flat_map(|(_, keys)| keys.iter().copied())
        .collect();
    Value::Object(map.into_iter().filter(|(k, _)| keys.contains(&k.as_str())).collect())
}

fn change_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if !s.is_empty() && !s.contains(char::is_whitespace) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// An event as `vmadm events` prints it without `-j`:
/// `[<timestamp>] <uuid> <alias> <type>[: <property> <from> -> <to>; ...]`,
/// `-` standing for a missing alias or value, strings unquoted (unless empty
/// or holding spaces), other values as compact JSON; with `full`, the VM
/// object follows on its own line as compact JSON.
pub fn format_event(ev: &Event, full: bool) -> String {
    let kind = match ev.event_type {
        EventType::Ready => return format!("[{}] ready\n", ev.timestamp),
        EventType::Create => "create",
        EventType::Modify => "modify",
        EventType::Delete => "delete",
    };
    let mut line = format!(
        "[{}] {} {} {kind}",
        ev.timestamp,
        ev.uuid.as_deref().unwrap_or("-"),
        ev.alias.as_deref().filter(|a| !a.is_empty()).unwrap_or("-")
    );
    if !ev.changes.is_empty() {
        let changes: Vec<String> = ev
            .changes
            .iter()
            .map(|c| format!("{} {} -> {}", c.pretty_path, change_value(c.from.as_ref()), change_value(c.to.as_ref())))
            .collect();
        line.push_str(": ");
        line.push_str(&changes.join("; "));
    }
    line.push('\n');
    if full {
        if let Some(vm) = &ev.vm {
            line.push_str(&serde_json::to_string(vm).unwrap_or_default());
            line.push('\n');
        }
    }
    line
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn client_err(e: ClientError) -> CliError {
    CliError::failed(describe_client_error(&e))
}

/// The message for a failed create/update: SmartOS's first line
/// (`Invalid value(s) for: a,b`, `Missing required properties: c`), then
/// one line per property saying why.
fn payload_error(e: ClientError) -> CliError {
    match e {
        ClientError::Api(api) => match &api.validation {
            Some(v) => CliError::failed(validation_message(v)),
            None => CliError::failed(api.message),
        },
        other => client_err(other),
    }
}

/// SmartOS's wording of a validation failure, with zonevisor's reasons.
pub fn validation_message(v: &zonevisor_api::ValidationErrors) -> String {
    let mut text = if let Some(b) = &v.bad_brand {
        format!("Invalid brand while validating payload: {b:?}")
    } else if !v.bad_values.is_empty() {
        format!("Invalid value(s) for: {}", v.bad_values.join(","))
    } else if !v.missing_properties.is_empty() {
        format!("Missing required properties: {}", v.missing_properties.join(","))
    } else {
        format!("Invalid properties: {}", v.bad_properties.join(","))
    };
    let named = v.bad_brand.iter().map(|_| "brand".to_string());
    for p in named.chain(v.bad_values.iter().cloned()).chain(v.missing_properties.iter().cloned()) {
        if let Some(r) = v.reasons.get(&p) {
            text.push_str(&format!("\n  {p}: {r}"));
        }
    }
    text
}

/// Prints what the daemon dropped or adjusted of a payload, one line each.
fn print_warnings(io: &mut Io, warnings: &[zonevisor_api::PropertyWarning]) -> Result<(), CliError> {
    for w in warnings {
        writeln!(io.err, "Warning: {}", w.message)?;
    }
    Ok(())
}

/// SmartOS's message for a VM that does not exist (node-vmadm and other
/// tools match on it).
fn not_found(e: ClientError, uuid: &InstanceUuid) -> CliError {
    match e {
        ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
            CliError::failed(format!("zoneadm: {uuid}: No such zone configured"))
        }
        other => client_err(other),
    }
}

fn object_payload(v: Value) -> Result<Value, CliError> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(CliError::failed("Invalid payload: expected a JSON object"))
    }
}

/// A state conflict that SmartOS treats as nothing to do (`start` on a
/// running VM, `stop` on a stopped one): its message, if `e` is one.
fn noop_conflict(e: &ClientError, phrase: &str) -> Option<String> {
    match e {
        ClientError::Api(api) if api.kind == ErrorKind::Conflict && api.message.to_lowercase().contains(phrase) => {
            Some(api.message.clone())
        }
        _ => None,
    }
}

/// Runs `vmadm` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = parse_args(argv).and_then(|inv| execute(inv, io));
    crate::report("vmadm", io, result)
}

fn execute(inv: Invocation, io: &mut Io) -> Result<(), CliError> {
    let client = crate::client(inv.socket.as_deref(), io);
    match inv.command {
        Command::Help => io.out.write_all(doc::render_help(&pages::VMADM).as_bytes())?,
        Command::Create { file } => {
            let payload = object_payload(args::read_json(file.as_deref(), io, "create")?)?;
            match client.create_vm(&payload) {
                Ok(done) => {
                    print_warnings(io, &done.warnings)?;
                    let uuid =
                        done.vm.get("uuid").or_else(|| payload.get("uuid")).and_then(Value::as_str).unwrap_or("");
                    // SmartOS prints it on stderr, where scripts read the uuid.
                    writeln!(io.err, "Successfully created VM {uuid}")?;
                }
                Err(e) => return Err(payload_error(e)),
            }
        }
        Command::Validate { action, brand, file } => {
            let payload = object_payload(args::read_json(file.as_deref(), io, "validate")?)?;
            let brand = brand.or_else(|| payload.get("brand").and_then(Value::as_str).map(str::to_string));
            let req = ValidateRequest { action, brand: brand.clone(), payload };
            match client.validate(&req) {
                Ok(_) => {
                    let action = match action {
                        ValidateAction::Create => "create",
                        ValidateAction::Update => "update",
                    };
                    let brand = brand.as_deref().unwrap_or("unknown");
                    writeln!(io.err, "VALID '{action}' payload for {brand} brand VMs.")?;
                }
                Err(ClientError::Api(api)) if api.validation.is_some() => {
                    // SmartOS prints the errors object as its error message.
                    let json = serde_json::to_value(api.validation.as_ref()).unwrap_or(Value::Null);
                    writeln!(io.err, "{}", pretty(&json))?;
                    return Err(CliError::Quiet(crate::EXIT_ERROR));
                }
                Err(e) => return Err(client_err(e)),
            }
        }
        Command::ValidateNoAction { action, file } => {
            let payload = object_payload(args::read_json(file.as_deref(), io, "validate")?)?;
            let mut errs = zonevisor_api::ValidationErrors::default();
            for k in payload.as_object().map(|o| o.keys().collect::<Vec<_>>()).unwrap_or_default() {
                errs.bad_property(
                    k,
                    format!("is not valid for action {action:?} (only create and update have properties)"),
                );
            }
            let json = serde_json::to_value(&errs).unwrap_or(Value::Null);
            writeln!(io.err, "{}", pretty(&json))?;
            return Err(CliError::Quiet(crate::EXIT_ERROR));
        }
        Command::Get { uuid } => {
            let vm = client.get_vm(&uuid.to_string()).map_err(|e| not_found(e, &uuid))?;
            writeln!(io.out, "{}", pretty(&Value::Object(vm)))?;
        }
        Command::List(opts) => {
            let fields = list_fetch_fields(&opts);
            let vms = client.list_vms(Some(&fields)).map_err(client_err)?;
            io.out.write_all(render_list(vms, &opts).as_bytes())?;
        }
        Command::Lookup(opts) => {
            let fields = lookup_fetch_fields(&opts);
            let vms = client.list_vms(fields.as_deref()).map_err(client_err)?;
            io.out.write_all(render_lookup(vms, &opts)?.as_bytes())?;
        }
        // SmartOS prints success on stderr and leaves stdout empty.
        Command::Start { uuid, options } => match client.start_vm(&uuid.to_string(), &options) {
            Ok(_) => writeln!(io.err, "Successfully started VM {uuid}")?,
            Err(e) => match noop_conflict(&e, "is already 'running'") {
                Some(m) => writeln!(io.err, "{m}")?,
                None => return Err(client_err(e)),
            },
        },
        Command::Stop { uuid, force, timeout_secs } => {
            match client.stop_vm(&uuid.to_string(), &StopRequest { force, timeout_secs }) {
                Ok(_) => writeln!(io.err, "Successfully completed stop for VM {uuid}")?,
                Err(e) => match noop_conflict(&e, "is already not 'running'") {
                    Some(m) => writeln!(io.err, "{m}")?,
                    None => return Err(client_err(e)),
                },
            }
        }
        Command::Reboot { uuid, force } => {
            client.reboot_vm(&uuid.to_string(), &RebootRequest { force }).map_err(client_err)?;
            writeln!(io.err, "Successfully completed reboot for VM {uuid}")?;
        }
        Command::Kill { uuid, signal } => {
            // SmartOS: SIGTERM unless a signal is named.
            let signal = signal.unwrap_or_else(|| "SIGTERM".to_string());
            client.kill_vm(&uuid.to_string(), &KillRequest { signal: Some(signal.clone()) }).map_err(client_err)?;
            writeln!(io.err, "Sent signal \"{signal}\" to init process for VM {uuid}")?;
        }
        Command::Sysrq { uuid, request } => {
            let done = client.sysrq_vm(&uuid.to_string(), &SysrqRequest { request }).map_err(client_err)?;
            writeln!(io.err, "{}", done.message)?;
        }
        Command::Delete { uuid } => {
            client.delete_vm(&uuid.to_string()).map_err(client_err)?;
            writeln!(io.err, "Successfully deleted VM {uuid}")?;
        }
        Command::Events { uuid, full, json, ready } => {
            let uuid = uuid.map(|u| u.to_string());
            let mut failed: Option<std::io::Error> = None;
            let result = client.events(uuid.as_deref(), full, |ev| {
                if ev.event_type == EventType::Ready && !ready {
                    return true;
                }
                let text = if json {
                    let mut t = serde_json::to_string(&ev).unwrap_or_default();
                    t.push('\n');
                    t
                } else {
                    format_event(&ev, full)
                };
                match io.out.write_all(text.as_bytes()).and_then(|()| io.out.flush()) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e.into());
            }
            result.map_err(client_err)?;
        }
        Command::Info { uuid, types } => {
            let info = client.vm_info(&uuid.to_string()).map_err(client_err)?;
            let info = serde_json::to_value(&info).unwrap_or(Value::Null);
            writeln!(io.out, "{}", pretty(&select_info(info, &types)))?;
        }
        Command::Console { uuid, log } => crate::console::run(&client, uuid, log, io)?,
        Command::Update { uuid, source } => {
            let payload = match source {
                UpdateSource::Props(map) => Value::Object(map),
                UpdateSource::File(file) => object_payload(args::read_json(file.as_deref(), io, "update")?)?,
            };
            match client.update_vm(&uuid.to_string(), &payload) {
                Ok(done) => {
                    print_warnings(io, &done.warnings)?;
                    writeln!(io.err, "Successfully updated VM {uuid}")?;
                }
                Err(e) => return Err(payload_error(e)),
            }
        }
        Command::Send { uuid, base } => {
            if io.output_is_tty {
                return Err(CliError::failed("Cannot send VM to a TTY."));
            }
            client.send_vm(&uuid.to_string(), base.as_deref(), &mut *io.out).map_err(client_err)?;
            writeln!(io.err, "Successfully sent VM {uuid}")?;
        }
        Command::Receive { file } => {
            let done = match file.as_deref() {
                None | Some("-") => {
                    if io.input_is_tty {
                        return Err(CliError::usage("Will not receive from stdin when stdin is a tty."));
                    }
                    client.receive_vm(&mut *io.input)
                }
                Some(path) => {
                    let mut f = std::fs::File::open(path)
                        .map_err(|e| CliError::failed(format!("Error reading {path}: {e}")))?;
                    client.receive_vm(&mut f)
                }
            }
            .map_err(payload_error)?;
            print_warnings(io, &done.warnings)?;
            let uuid = done.vm.get("uuid").and_then(Value::as_str).unwrap_or("");
            writeln!(io.err, "Successfully received VM {uuid}")?;
        }
        Command::Snapshot { verb, uuid, name } => {
            let id = uuid.to_string();
            let message = match verb {
                SnapshotVerb::Create => client.create_snapshot(&id, &name).map(|_| "Created snapshot"),
                SnapshotVerb::Rollback => client.rollback_snapshot(&id, &name).map(|_| "Rolled back snapshot"),
                SnapshotVerb::Delete => client.delete_snapshot(&id, &name).map(|_| "Deleted snapshot"),
            }
            .map_err(client_err)?;
            // SmartOS prints it on stderr.
            writeln!(io.err, "{message} {name} for VM {uuid}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::s;
    use crate::fake::{FakeDaemon, TestIo};
    use serde_json::json;

    const U1: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";
    const U2: &str = "1b2c3d4e-0000-4000-8000-000000000002";
    const U3: &str = "2c3d4e5f-0000-4000-8000-000000000003";

    fn parse_ok(v: &[&str]) -> Invocation {
        parse_args(&s(v)).unwrap_or_else(|e| panic!("{v:?}: {e}"))
    }

    /// SmartOS fails list/lookup argument errors with exit 1, not 2.
    fn failed_err(v: &[&str]) -> String {
        match parse_args(&s(v)) {
            Err(CliError::Failed { code: 1, message }) => message,
            other => panic!("{v:?}: expected a failure, got {other:?}"),
        }
    }

    fn usage_err(v: &[&str]) -> String {
        match parse_args(&s(v)) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{v:?}: expected a usage error, got {other:?}"),
        }
    }

    fn vms() -> Vec<VmObject> {
        let list = json!([
            {"uuid": U2, "brand": "lx", "max_physical_memory": 1024, "state": "running", "alias": "web02",
             "tags": {"role": "web"}, "nics": [{"ip": "10.0.0.6", "interface": "eth0"}]},
            {"uuid": U1, "brand": "lx", "max_physical_memory": 512, "state": "stopped", "alias": "db01",
             "tags": {"role": "db"}, "nics": [{"ip": "10.0.0.5", "interface": "eth0"}, {"ip": "192.168.0.5"}]},
            {"uuid": U3, "brand": "kvm", "ram": 2048, "max_physical_memory": 2304, "state": "running",
             "customer_metadata": {"owner": "ops"}}
        ]);
        serde_json::from_value(list).unwrap()
    }

    #[test]
    fn start_takes_smartos_boot_options() {
        let Command::Start { options, .. } =
            parse_ok(&["start", U1, "order=cd,once=d", "cdrom=/install.iso,ide", "disk=/extra.img"]).command
        else {
            panic!("a start")
        };
        assert_eq!(options.order.as_deref(), Some("cd"));
        assert_eq!(options.once.as_deref(), Some("d"));
        assert_eq!(options.cdrom, [AttachDisk { path: "/install.iso".into(), model: "ide".into() }]);
        assert_eq!(options.disk, [AttachDisk { path: "/extra.img".into(), model: "virtio".into() }]);
        let Command::Start { options, .. } = parse_ok(&["start", U1]).command else { panic!("a start") };
        assert!(options.is_empty());
        assert!(usage_err(&["start", U1, "order=cx"]).contains("Invalid value for order"));
        assert!(usage_err(&["start", U1, "order=c", "order=d"]).contains("only be specified once"));
        assert!(usage_err(&["start", U1, "cdrom=relative.iso"]).contains("not an absolute path"));
    }

    #[test]
    fn sysrq_takes_nmi_or_screenshot() {
        assert!(
            matches!(parse_ok(&["sysrq", U1, "nmi"]).command, Command::Sysrq { ref request, .. } if request == "nmi")
        );
        assert!(usage_err(&["sysrq", U1, "reboot"]).contains("Invalid sysrq request"));
        assert!(usage_err(&["sysrq", U1]).contains("nmi or screenshot"));
    }

    #[test]
    fn command_aliases() {
        assert!(matches!(parse_ok(&["get", U1]).command, Command::Get { .. }));
        assert!(matches!(parse_ok(&["json", U1]).command, Command::Get { .. }));
        assert!(matches!(parse_ok(&["boot", U1]).command, Command::Start { .. }));
        assert!(matches!(parse_ok(&["halt", U1]).command, Command::Stop { force: false, .. }));
        assert!(matches!(parse_ok(&["destroy", U1]).command, Command::Delete { .. }));
        assert!(matches!(parse_ok(&["-h"]).command, Command::Help));
        assert!(matches!(parse_ok(&["list", "--help"]).command, Command::Help));
        assert!(matches!(parse_ok(&["help"]).command, Command::Help));
    }

    #[test]
    fn console_arguments() {
        match parse_ok(&["console", U1]).command {
            Command::Console { uuid, log } => assert_eq!((uuid.to_string(), log), (U1.to_string(), false)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_ok(&["console", "--log", U1]).command, Command::Console { log: true, .. }));
        assert!(matches!(parse_ok(&["console", U1, "-l"]).command, Command::Console { log: true, .. }));
        assert_eq!(usage_err(&["console"]), "Invalid or missing UUID for console");
        assert_eq!(usage_err(&["console", "web01"]), "Invalid or missing UUID for console");
        assert!(usage_err(&["console", U1, U2]).contains("Unexpected argument"));
        assert!(usage_err(&["console", "-x", U1]).contains("unknown option -x"));
    }

    #[test]
    fn socket_before_or_after_the_command() {
        assert_eq!(parse_ok(&["--socket", "/a", "list"]).socket.as_deref(), Some("/a"));
        assert_eq!(parse_ok(&["--socket=/b", "get", U1]).socket.as_deref(), Some("/b"));
        assert_eq!(parse_ok(&["list", "--socket", "/c"]).socket.as_deref(), Some("/c"));
    }

    #[test]
    fn stop_reboot_kill_options() {
        match parse_ok(&["stop", "-F", U1, "-t", "30"]).command {
            Command::Stop { force, timeout_secs, .. } => assert!(force && timeout_secs == Some(30)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_ok(&["reboot", U1, "-F"]).command, Command::Reboot { force: true, .. }));
        let sig = |v: &[&str]| match parse_ok(v).command {
            Command::Kill { signal, .. } => signal,
            other => panic!("{other:?}"),
        };
        assert_eq!(sig(&["kill", U1]), None);
        assert_eq!(sig(&["kill", "-s", "TERM", U1]), Some("SIGTERM".into()));
        assert_eq!(sig(&["kill", "-s", "sighup", U1]), Some("SIGHUP".into()));
        assert_eq!(sig(&["kill", "-s", "9", U1]), Some("9".into()));
        assert_eq!(sig(&["kill", "-USR1", U1]), Some("SIGUSR1".into()));
        assert_eq!(sig(&["kill", "-9", U1]), Some("9".into()));
        assert!(usage_err(&["kill", "-s", "BOGUS", U1]).contains("Invalid signal"));
        assert!(usage_err(&["stop", U1, "-t", "soon"]).contains("Invalid timeout"));
    }

    #[test]
    fn bad_uuids_and_unknown_commands_are_usage_errors() {
        for cmd in ["get", "start", "stop", "reboot", "kill", "delete", "update", "boot", "halt", "destroy", "json"] {
            assert_eq!(usage_err(&[cmd, "web01"]), format!("Invalid or missing UUID for {cmd}"));
            assert_eq!(usage_err(&[cmd]), format!("Invalid or missing UUID for {cmd}"));
        }
        assert!(usage_err(&["frobnicate"]).starts_with("Invalid command: \"frobnicate\""));
        assert!(usage_err(&[]).contains("missing command"));
        assert!(usage_err(&["get", U1, U2]).contains("Unexpected argument"));
        assert!(usage_err(&["start", U1, "bogus"]).contains("Invalid argument to start"));
        assert!(usage_err(&["start", U1, "speed=fast"]).contains("Invalid argument to start"));
        assert!(usage_err(&["list", "-x"]).contains("unknown option -x"));
        assert!(usage_err(&["--bogus", "list"]).contains("unknown option --bogus"));
        match parse_args(&s(&["reprovision", U1])) {
            Err(CliError::Failed { code: 1, message }) => assert!(message.contains("not supported"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn usage_errors_exit_2_before_any_call() {
        // No daemon at this socket: a call would fail with exit 1 instead.
        let mut t = TestIo::new();
        t.socket_env = Some("/nonexistent/zv.sock".into());
        assert_eq!(t.run(&["vmadm", "start", "web01"]), 2);
        assert_eq!(t.err(), "vmadm: Invalid or missing UUID for start\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["vmadm", "list", "-o", "uuid,nope"]), 1, "SmartOS: an error, not usage");
        assert_eq!(t.err(), "vmadm: invalid order field: nope\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["vmadm", "get", "-h"]), 0);
        assert!(t.out().starts_with("Usage: vmadm"));
    }

    #[test]
    fn validate_create_and_update() {
        match parse_ok(&["validate", "create", "-f", "/p.json"]).command {
            Command::Validate { action, brand, file } => {
                assert_eq!(action, ValidateAction::Create);
                assert_eq!((brand, file.as_deref()), (None, Some("/p.json")));
            }
            other => panic!("{other:?}"),
        }
        match parse_ok(&["validate", "update", "lx"]).command {
            Command::Validate { action, brand, .. } => {
                assert_eq!((action, brand.as_deref()), (ValidateAction::Update, Some("lx")))
            }
            other => panic!("{other:?}"),
        }
        assert!(usage_err(&["validate", "update"]).contains("brand"));
        assert!(usage_err(&["validate"]).contains("valid action"));
        assert!(usage_err(&["validate"]).contains("valid action"));
        assert!(matches!(parse_ok(&["validate", "destroy"]).command, Command::ValidateNoAction { .. }));
    }

    #[test]
    fn update_sources() {
        match parse_ok(&["update", U1, "alias=web", "max_physical_memory=1024", "autoboot=false"]).command {
            Command::Update { source: UpdateSource::Props(m), .. } => {
                assert_eq!(
                    Value::Object(m),
                    json!({"alias": "web", "max_physical_memory": "1024", "autoboot": "false"})
                )
            }
            other => panic!("{other:?}"),
        }
        match parse_ok(&["update", U1, "-f", "x.json"]).command {
            Command::Update { source, .. } => assert_eq!(source, UpdateSource::File(Some("x.json".into()))),
            other => panic!("{other:?}"),
        }
        match parse_ok(&["update", U1]).command {
            Command::Update { source, .. } => assert_eq!(source, UpdateSource::File(None)),
            other => panic!("{other:?}"),
        }
        assert!(usage_err(&["update", U1, "-f", "x.json", "alias=a"]).contains("not both"));
        assert!(usage_err(&["update", U1, "alias"]).contains("property=value"));
    }

    #[test]
    fn list_options_and_validation() {
        let opts =
            match parse_ok(&["list", "-pH", "-o", "uuid,tags.role,nics.0.ip", "-s", "-ram", "state=running"]).command {
                Command::List(o) => o,
                other => panic!("{other:?}"),
            };
        assert_eq!(opts.columns, s(&["uuid", "tags.role", "nics.0.ip"]));
        assert!(opts.sort[0].descending && opts.sort[0].key == "ram");
        assert!(opts.style.parsable && !opts.style.header);
        assert_eq!(opts.filters.len(), 1);
        assert_eq!(list_fetch_fields(&opts), s(&["uuid", "tags", "nics", "ram", "max_physical_memory", "state"]));

        // SmartOS's two messages: `.*.` columns, then fields it does not know.
        assert_eq!(failed_err(&["list", "-o", "uuid,bogus"]), "invalid order field: bogus");
        assert_eq!(failed_err(&["list", "-o", "nics.*.ip"]), "Invalid order key: \"nics.*.ip\"");
        assert_eq!(failed_err(&["list", "-s", "-bogus"]), "invalid sort field: -bogus");
        assert_eq!(failed_err(&["list", "-s", "nics.*.ip"]), "Invalid sort key: \"nics.*.ip\"");
        assert_eq!(failed_err(&["lookup", "bogus=1"]), "Invalid lookup key: \"bogus\"");
        assert_eq!(failed_err(&["list", "bogus=1"]), "Invalid filter key: \"bogus\"");
        assert!(failed_err(&["list", "alias=~("]).contains("Invalid regular expression"));
        assert!(failed_err(&["list", "state"]).contains("property=value"));
        // Filters on array elements and map keys are fine.
        parse_ok(&["list", "nics.*.ip=10.0.0.5", "tags.role=web", "customer_metadata.x=~y", "disks.0.size=10"]);
    }

    fn list_with(v: &[&str]) -> String {
        match parse_ok(v).command {
            Command::List(o) => render_list(vms(), &o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_list_table() {
        let text = list_with(&["list"]);
        let expected = format!(
            "UUID                                  TYPE  RAM      STATE             ALIAS\n\
             {U1}  LX    512      stopped           db01\n\
             {U2}  LX    1024     running           web02\n\
             {U3}  KVM   2048     running           -\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn list_header_parsable_columns_and_missing_values() {
        let text = list_with(&["list", "-H", "-o", "alias,tags.role"]);
        assert_eq!(text, "db01        db\nweb02       web\n-           -\n");
        let text = list_with(&["list", "-p", "-o", "uuid,alias,ram"]);
        assert_eq!(text, format!("{U1}:db01:512\n{U2}:web02:1024\n{U3}::2048\n"));
        let text = list_with(&["list", "-o", "alias,nics.1.ip", "-s", "alias"]);
        assert_eq!(text, "ALIAS       NICS.1.IP\ndb01        192.168.0.5\nweb02       -\n-           -\n");
    }

    #[test]
    fn list_sorts_and_filters() {
        let text = list_with(&["list", "-H", "-o", "alias", "-s", "-ram"]);
        assert_eq!(text, "-\nweb02\ndb01\n");
        let text = list_with(&["list", "-H", "-o", "uuid", "-s", "state,-uuid"]);
        assert_eq!(text, format!("{U3}\n{U2}\n{U1}\n"));
        let text = list_with(&["list", "-p", "-o", "alias", "state=running", "type=LX"]);
        assert_eq!(text, "web02\n");
        let text = list_with(&["list", "-p", "-o", "alias", "nics.*.ip=192.168.0.5"]);
        assert_eq!(text, "db01\n");
        let text = list_with(&["list", "-p", "-o", "uuid", "customer_metadata.owner=ops"]);
        assert_eq!(text, format!("{U3}\n"));
        let text = list_with(&["list", "-p", "-o", "alias", "alias=~/^WEB/i"]);
        assert_eq!(text, "web02\n");
        let text = list_with(&["list", "-p", "-o", "alias", "ram=1024"]);
        assert_eq!(text, "web02\n");
        let text = list_with(&["list", "-p", "-o", "alias", "state=provisioning"]);
        assert_eq!(text, "");
    }

    fn lookup_with(v: &[&str]) -> Result<String, CliError> {
        match parse_ok(v).command {
            Command::Lookup(o) => render_lookup(vms(), &o),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lookup_outputs() {
        assert_eq!(lookup_with(&["lookup", "state=running"]).unwrap(), format!("{U2}\n{U3}\n"));
        assert_eq!(lookup_with(&["lookup", "-1", "tags.role=db"]).unwrap(), format!("{U1}\n"));
        let err = lookup_with(&["lookup", "-1", "state=running"]).unwrap_err();
        assert_eq!(err.to_string(), "Requested unique lookup but found 2 results.");
        assert_eq!(err.exit_code(), 1);
        let err = lookup_with(&["lookup", "-1", "alias=nothing"]).unwrap_err();
        assert_eq!(err.to_string(), "Requested unique lookup but found 0 results.");

        let j: Value =
            serde_json::from_str(&lookup_with(&["lookup", "-j", "-o", "uuid,ram,type", "alias=db01"]).unwrap())
                .unwrap();
        assert_eq!(j, json!([{"uuid": U1, "ram": 512, "type": "LX"}]));
        let j: Value = serde_json::from_str(&lookup_with(&["lookup", "-j", "alias=db01"]).unwrap()).unwrap();
        assert_eq!(j[0]["alias"], "db01");
        assert_eq!((&j[0]["type"], &j[0]["ram"]), (&json!("LX"), &json!(512)), "SmartOS adds its fake fields");
        assert!(j[0]["tags"].is_object());
        assert!(failed_err(&["lookup", "-o", "uuid"]).contains("without -j"));
    }

    #[test]
    fn lookup_fields_requested() {
        let opts = |v: &[&str]| match parse_ok(v).command {
            Command::Lookup(o) => o,
            other => panic!("{other:?}"),
        };
        assert_eq!(lookup_fetch_fields(&opts(&["lookup", "nics.*.ip=1"])), Some(s(&["uuid", "nics"])));
        assert_eq!(lookup_fetch_fields(&opts(&["lookup", "-j"])), None);
        assert_eq!(
            lookup_fetch_fields(&opts(&["lookup", "-j", "-o", "alias", "type=LX"])),
            Some(s(&["alias", "type", "brand"]))
        );
    }

    #[test]
    fn signal_names() {
        assert_eq!(normalize_signal("TERM").as_deref(), Some("SIGTERM"));
        assert_eq!(normalize_signal("SIGKILL").as_deref(), Some("SIGKILL"));
        assert_eq!(normalize_signal("hup").as_deref(), Some("SIGHUP"));
        assert_eq!(normalize_signal("15").as_deref(), Some("15"));
        assert_eq!(normalize_signal("0"), None);
        assert_eq!(normalize_signal("65"), None);
        assert_eq!(normalize_signal("SIG"), None);
        assert_eq!(normalize_signal("NOPE"), None);
    }

    #[test]
    fn list_of_many_instances_sorts_by_ram_then_uuid() {
        let vms: Vec<VmObject> = (0..1000)
            .map(|i| {
                serde_json::from_value(json!({
                    "uuid": format!("{i:08x}-0000-4000-8000-000000000000"),
                    "brand": "lx", "max_physical_memory": 256 + (i % 7) * 128,
                    "state": if i % 3 == 0 { "running" } else { "stopped" }, "alias": format!("zone{i}")
                }))
                .unwrap()
            })
            .collect();
        // How fast this is belongs to bench/run (vmadm list with 1,000 zones).
        let text = render_list(vms, &ListOpts::default());
        assert_eq!(text.lines().count(), 1001);
        let keys: Vec<(u64, String)> = text
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2].parse().unwrap(), f[0].to_string())
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0], (256, "00000000-0000-4000-8000-000000000000".to_string()));
    }

    // --- against a fake daemon ---

    fn invalid_answer() -> String {
        json!({
            "kind": "Invalid",
            "message": "Invalid payload: bad value max_swap: must be at least 256",
            "validation": {"bad_values": ["max_swap"], "reasons": {"max_swap": "must be at least 256"}}
        })
        .to_string()
    }

    #[test]
    fn create_prints_uuid_and_sends_payload() {
        let d = FakeDaemon::start(|req| {
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/vms"));
            let warning = json!({"property": "bogus", "message": "invalid create property bogus: is not a vmadm property; removed from the payload"});
            (200, json!({"vm": {"uuid": U1, "brand": "lx", "state": "running"}, "warnings": [warning]}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        t.input = br#"{"brand": "lx", "image_uuid": "x"}"#.to_vec();
        assert_eq!(t.run(&["vmadm", "create"]), 0, "{}", t.err());
        // SmartOS: on stderr, where scripts read the uuid; stdout stays empty.
        assert_eq!(t.out(), "");
        assert_eq!(
            t.err(),
            format!(
                "Warning: invalid create property bogus: is not a vmadm property; removed from the payload\n\
                 Successfully created VM {U1}\n"
            )
        );
        let body: Value = serde_json::from_str(&d.seen()[0].body).unwrap();
        assert_eq!(body, json!({"brand": "lx", "image_uuid": "x"}));
    }

    #[test]
    fn create_validation_failure_names_the_property_and_why() {
        let d = FakeDaemon::start(|_| (400, invalid_answer()));
        let mut t = TestIo::for_daemon(&d);
        t.input = br#"{"brand": "lx", "max_swap": 1}"#.to_vec();
        assert_eq!(t.run(&["vmadm", "create"]), 1);
        assert_eq!(t.out(), "");
        assert_eq!(t.err(), "vmadm: Invalid value(s) for: max_swap\n  max_swap: must be at least 256\n");
    }

    #[test]
    fn create_refuses_tty_and_bad_json() {
        let mut t = TestIo::new();
        t.tty = true;
        assert_eq!(t.run(&["vmadm", "create"]), 2);
        assert_eq!(t.err(), "vmadm: Will not create from stdin when stdin is a tty.\n");
        let mut t = TestIo::with_input("{nope");
        assert_eq!(t.run(&["vmadm", "create"]), 1);
        assert!(t.err().starts_with("vmadm: Invalid JSON payload in stdin"), "{}", t.err());
        let mut t = TestIo::new();
        assert_eq!(t.run(&["vmadm", "create", "-f", "/nonexistent/p.json"]), 1);
        assert_eq!(t.err(), "vmadm: File: /nonexistent/p.json does not exist.\n");
        let mut t = TestIo::with_input("[1]");
        assert_eq!(t.run(&["vmadm", "create"]), 1);
        assert!(t.err().contains("expected a JSON object"));
    }

    #[test]
    fn validate_reports_valid_or_the_object() {
        let d = FakeDaemon::start(|req| {
            let body: Value = serde_json::from_str(&req.body).unwrap();
            if body["payload"]["max_swap"] == json!(1) {
                (400, invalid_answer())
            } else {
                assert_eq!(body["action"], "create");
                assert_eq!(body["brand"], "lx");
                (200, json!({"message": "valid"}).to_string())
            }
        });
        let mut t = TestIo::for_daemon(&d);
        t.input = br#"{"brand": "lx"}"#.to_vec();
        assert_eq!(t.run(&["vmadm", "validate", "create"]), 0, "{}", t.err());
        assert_eq!(t.err(), "VALID 'create' payload for lx brand VMs.\n");

        let mut t = TestIo::for_daemon(&d);
        t.input = br#"{"max_swap": 1}"#.to_vec();
        assert_eq!(t.run(&["vmadm", "validate", "update", "lx"]), 1);
        assert_eq!(t.out(), "");
        let out: Value = serde_json::from_str(&t.err()).unwrap();
        assert_eq!(out["bad_values"], json!(["max_swap"]));
        let sent: Value = serde_json::from_str(&d.seen()[1].body).unwrap();
        assert_eq!((sent["action"].as_str(), sent["brand"].as_str()), (Some("update"), Some("lx")));
    }

    #[test]
    fn lifecycle_commands_call_their_routes() {
        let d = FakeDaemon::start(|req| {
            if req.path.ends_with("/stop") {
                (200, json!({"message": "stopped"}).to_string())
            } else if req.method == "GET" {
                (200, json!({"uuid": U1, "alias": "web", "nics": []}).to_string())
            } else if req.path.ends_with("/update") {
                (200, json!({"vm": {"uuid": U1}}).to_string())
            } else {
                (200, json!({"message": "ok", "uuid": U1}).to_string())
            }
        });
        let cases: &[(&[&str], &str)] = &[
            (&["vmadm", "start", U1], "Successfully started VM"),
            (&["vmadm", "stop", U1, "-F", "-t", "5"], "Successfully completed stop for VM"),
            (&["vmadm", "reboot", U1], "Successfully completed reboot for VM"),
            (&["vmadm", "kill", U1], "Sent signal \"SIGTERM\" to init process for VM"),
            (&["vmadm", "delete", U1], "Successfully deleted VM"),
            (&["vmadm", "update", U1, "alias=web", "quota=20"], "Successfully updated VM"),
        ];
        for (argv, expected) in cases {
            let mut t = TestIo::for_daemon(&d);
            assert_eq!(t.run(argv), 0, "{argv:?}: {}", t.err());
            assert_eq!(t.err(), format!("{expected} {U1}\n"));
            assert_eq!(t.out(), "");
        }
        let seen = d.seen();
        let routes: Vec<String> = seen.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(
            routes,
            [
                format!("POST /v1/vms/{U1}/start"),
                format!("POST /v1/vms/{U1}/stop"),
                format!("POST /v1/vms/{U1}/reboot"),
                format!("POST /v1/vms/{U1}/kill"),
                format!("DELETE /v1/vms/{U1}"),
                format!("POST /v1/vms/{U1}/update"),
            ]
        );
        assert_eq!(serde_json::from_str::<Value>(&seen[1].body).unwrap(), json!({"force": true, "timeout_secs": 5}));
        assert_eq!(serde_json::from_str::<Value>(&seen[3].body).unwrap(), json!({"signal": "SIGTERM"}));
        assert_eq!(serde_json::from_str::<Value>(&seen[5].body).unwrap(), json!({"alias": "web", "quota": "20"}));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "get", U1]), 0);
        assert_eq!(t.out(), format!("{{\n  \"uuid\": \"{U1}\",\n  \"alias\": \"web\",\n  \"nics\": []\n}}\n"));
    }

    #[test]
    fn snapshot_commands_call_their_routes_and_say_what_they_did() {
        let d = FakeDaemon::start(|req| {
            if req.path.contains("nope") {
                (
                    404,
                    json!({"kind": "NotFound", "message": format!("No snapshot named \"nope\" for {U1}")}).to_string(),
                )
            } else {
                (200, json!({"message": "done"}).to_string())
            }
        });
        for (argv, said) in [
            (["vmadm", "create-snapshot", U1, "s1"], "Created snapshot s1"),
            (["vmadm", "rollback-snapshot", U1, "a%b"], "Rolled back snapshot a%b"),
            (["vmadm", "delete-snapshot", U1, "s1"], "Deleted snapshot s1"),
        ] {
            let mut t = TestIo::for_daemon(&d);
            assert_eq!(t.run(&argv), 0, "{argv:?}: {}", t.err());
            assert_eq!((t.out(), t.err()), (String::new(), format!("{said} for VM {U1}\n")));
        }
        let seen = d.seen();
        let routes: Vec<String> = seen.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(
            routes,
            [
                format!("POST /v1/vms/{U1}/snapshots"),
                format!("POST /v1/vms/{U1}/snapshots/a%25b/rollback"),
                format!("DELETE /v1/vms/{U1}/snapshots/s1"),
            ]
        );
        assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), json!({"name": "s1"}));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "delete-snapshot", U1, "nope"]), 1);
        assert_eq!(t.err(), format!("vmadm: No snapshot named \"nope\" for {U1}\n"));
        // A name is needed, and only one.
        for argv in [&["create-snapshot", U1][..], &["rollback-snapshot", U1, "a", "b"], &["delete-snapshot"]] {
            let e = usage_err(argv);
            assert!(e.contains("Wrong number of parameters") || e.contains("UUID"), "{argv:?}: {e}");
        }
    }

    /// A send stream: the magic, a header, `frames`, and an end.
    fn stream_with(frames: &[(u8, &str)], end: bool) -> String {
        let mut s = String::from("ZVSEND01");
        for (k, payload) in [(b'H', "{}")].iter().chain(frames) {
            s.push(*k as char);
            for b in (payload.len() as u32).to_be_bytes() {
                s.push(b as char);
            }
            s.push_str(payload);
        }
        if end {
            s.push('Z');
            s.push_str("\0\0\0\x20");
            s.push_str(&"\0".repeat(32));
        }
        s
    }

    #[test]
    fn send_streams_to_stdout_and_says_what_went_wrong() {
        let whole = stream_with(&[(b'D', "data")], true);
        let failed = stream_with(&[(b'D', "data"), (b'E', "btrfs send failed")], false);
        let cut = stream_with(&[(b'D', "data")], false);
        let (w, f, c) = (whole.clone(), failed.clone(), cut.clone());
        let d = FakeDaemon::start(move |req| {
            let body = if req.path.contains("base=fails") {
                f.clone()
            } else if req.path.contains("base=cut") {
                c.clone()
            } else {
                w.clone()
            };
            (200, body)
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "send", U1]), 0, "{}", t.err());
        assert_eq!((t.out(), t.err()), (whole, format!("Successfully sent VM {U1}\n")));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "send", U1, "-i", "fails"]), 1);
        assert_eq!(t.err(), "vmadm: btrfs send failed\n");
        assert!(!t.out().contains("btrfs send failed"), "the error frame is not passed on");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "send", "--incremental", "cut", U1]), 1);
        assert!(t.err().contains("ended before its end"), "{}", t.err());
        let seen: Vec<String> = d.seen().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        assert_eq!(seen[0], format!("GET /v1/vms/{U1}/send"));
        assert_eq!(seen[1], format!("GET /v1/vms/{U1}/send?base=fails"));
        assert!(usage_err(&["send"]).contains("UUID"));
        assert!(usage_err(&["send", U1, "extra"]).contains("extra"));
    }

    #[test]
    fn receive_streams_stdin_to_the_daemon() {
        let d = FakeDaemon::start(|req| {
            assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/vms/receive"));
            (200, json!({"vm": {"uuid": U1}, "warnings": []}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        t.input = b"ZVSEND01 and more".to_vec();
        assert_eq!(t.run(&["vmadm", "receive"]), 0, "{}", t.err());
        assert_eq!(t.err(), format!("Successfully received VM {U1}\n"));
        let mut t = TestIo::for_daemon(&d);
        t.tty = true;
        assert_eq!(t.run(&["vmadm", "recv"]), 2, "not from a terminal");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "receive", "-f", "/nonexistent/stream"]), 1);
        let d = FakeDaemon::start(|_| {
            (409, json!({"kind": "Conflict", "message": format!("VM {U1} already exists on this host")}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        t.input = vec![0; 100_000];
        assert_eq!(t.run(&["vmadm", "receive"]), 1);
        assert_eq!(t.err(), format!("vmadm: VM {U1} already exists on this host\n"));
    }

    #[test]
    fn daemon_errors_and_noop_conflicts() {
        let d = FakeDaemon::start(|req| {
            if req.path.ends_with("/stop") {
                (409, json!({"kind": "Conflict", "message": format!("VM {U1} is already not 'running' (currently: stopped)")}).to_string())
            } else {
                (404, json!({"kind": "NotFound", "message": format!("VM {U2} not found")}).to_string())
            }
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "stop", U1]), 0, "stopping a stopped VM is not an error");
        assert_eq!(t.err(), format!("VM {U1} is already not 'running' (currently: stopped)\n"));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "delete", U2]), 1);
        assert_eq!(t.err(), format!("vmadm: VM {U2} not found\n"));
        assert_eq!(t.out(), "");
        // `get` words it as SmartOS does: node-vmadm matches on it.
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "get", U2]), 1);
        assert_eq!(t.err(), format!("vmadm: zoneadm: {U2}: No such zone configured\n"));
    }

    #[test]
    fn events_and_info_arguments() {
        match parse_ok(&["events", "-fjr", U1]).command {
            Command::Events { uuid, full, json, ready } => {
                assert_eq!(uuid.map(|u| u.to_string()).as_deref(), Some(U1));
                assert!(full && json && ready);
            }
            other => panic!("{other:?}"),
        }
        match parse_ok(&["events"]).command {
            Command::Events { uuid: None, full: false, json: false, ready: false } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(usage_err(&["events", "nope"]), "Invalid or missing UUID for events");
        assert!(usage_err(&["events", U1, U2]).contains("Unexpected argument"));
        assert!(usage_err(&["events", "-x"]).contains("-x"));
        match parse_ok(&["info", U1, "cpu,memory", "cpu", "pids"]).command {
            Command::Info { types, .. } => assert_eq!(types, s(&["cpu", "memory", "pids"])),
            other => panic!("{other:?}"),
        }
        assert_eq!(usage_err(&["info"]), "Invalid or missing UUID for info");
        assert!(usage_err(&["info", U1, "spice"]).starts_with("Invalid info type: \"spice\""));
        let mut t = TestIo::new();
        assert_eq!(t.run(&["vmadm", "info", U1, "bogus"]), 2);
    }

    fn event(v: Value) -> Event {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn events_print_as_smartos_lines() {
        let ev = event(json!({
            "type": "modify", "timestamp": "2026-11-21T09:00:00.123Z", "uuid": U1, "alias": "web",
            "changes": [
                {"path": ["state"], "prettyPath": "state", "action": "changed", "from": "running", "to": "stopped"},
                {"path": ["pid"], "prettyPath": "pid", "action": "removed", "from": 4242},
                {"path": ["tags"], "prettyPath": "tags", "action": "added", "to": {"a": "b c"}}
            ],
            "vm": {"uuid": U1, "state": "stopped"}
        }));
        assert_eq!(
            format_event(&ev, false),
            format!(
                "[2026-11-21T09:00:00.123Z] {U1} web modify: state running -> stopped; pid 4242 -> -; tags - -> {{\"a\":\"b c\"}}\n"
            )
        );
        assert_eq!(
            format_event(&ev, true).lines().nth(1),
            Some(format!("{{\"uuid\":\"{U1}\",\"state\":\"stopped\"}}").as_str())
        );
        let ev = event(json!({"type": "create", "timestamp": "T", "uuid": U1}));
        assert_eq!(format_event(&ev, false), format!("[T] {U1} - create\n"));
        let ev = event(json!({"type": "ready", "timestamp": "T"}));
        assert_eq!(format_event(&ev, false), "[T] ready\n");
    }

    #[test]
    fn info_types_select_keys() {
        let info = json!({"uuid": U1, "state": "running", "cpu": {"usage_ns": 5}, "memory": {"current_bytes": 1},
                          "pids": {"current": 2}, "pressure_source": "host", "host_pressure": {}});
        assert_eq!(select_info(info.clone(), &[]), info);
        assert_eq!(select_info(info.clone(), &s(&["all", "cpu"])), info);
        assert_eq!(
            select_info(info.clone(), &s(&["cpu", "pressure"])),
            json!({"cpu": {"usage_ns": 5}, "pressure_source": "host", "host_pressure": {}})
        );
        assert_eq!(select_info(info, &s(&["status"])), json!({"uuid": U1, "state": "running"}));
    }

    #[test]
    fn events_follow_the_stream_until_it_ends() {
        let lines = [
            json!({"type": "ready", "timestamp": "T0"}),
            json!({"type": "create", "timestamp": "T1", "uuid": U1, "alias": "a"}),
            json!({"type": "delete", "timestamp": "T2", "uuid": U1, "alias": "a"}),
        ];
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let d = FakeDaemon::start(move |req| {
            assert!(req.path.starts_with("/v1/events"), "{}", req.path);
            (200, body.clone())
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "events"]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("[T1] {U1} a create\n[T2] {U1} a delete\n"));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "events", "-r", "-j", "-f", U1]), 0, "{}", t.err());
        let got: Vec<Value> = t.out().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(got, lines);
        let seen = d.seen();
        assert_eq!(seen[0].path, "/v1/events");
        assert_eq!(seen[1].path, format!("/v1/events?uuid={U1}&full=true"));
    }

    #[test]
    fn info_on_a_stopped_zone_fails() {
        let d = FakeDaemon::start(|_| {
            (409, json!({"kind": "Conflict", "message": format!("VM {U1} is not running (state stopped)")}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "info", U1]), 1);
        assert!(t.err().contains("is not running"), "{}", t.err());
        assert_eq!(d.seen()[0].path, format!("/v1/vms/{U1}/info"));
    }

    #[test]
    fn list_asks_only_for_needed_fields() {
        let d = FakeDaemon::start(|_| {
            (200, json!([{"uuid": U1, "brand": "lx", "max_physical_memory": 256, "state": "running"}]).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["vmadm", "list", "-p"]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("{U1}:LX:256:running:\n"));
        assert_eq!(d.seen()[0].path, "/v1/vms?fields=uuid,type,brand,ram,max_physical_memory,state,alias");
    }
}
