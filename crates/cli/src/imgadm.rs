//! `imgadm`: install, list, show and delete images, with SmartOS's
//! commands, table and exit codes (3 when the image is not installed).
//!
//! `list` works on rows built from each image's manifest plus the fields
//! imgadm computes (`published_date`, `pub`, `published`, `clones`,
//! `zpool`, `size`); keys may also be written `manifest.<field>`.
//! Filters are `field=value` (exact) and `field=~text` (substring), as in
//! SmartOS's imgadm.

use serde_json::{Map, Value};
use zonevisor_api::{
    ClientError, ErrorKind, ImageCreateRequest, ImageInstallRequest, ImagePullRequest, ImageRecord, ImageUuid,
};

use crate::args::{self, Mode, Opt};
use crate::filter::{self, Filter, SortKey, Tilde};
use crate::table::{self, Column, Style};
use crate::{describe_client_error, doc, pages, CliError, Io};

/// Exit status when the image is not installed.
pub const EXIT_NOT_INSTALLED: i32 = 3;

/// `list`'s columns when `-o` is not given.
pub const DEFAULT_COLUMNS: &str = "uuid,name,version,os,type,pub";
/// `list`'s sort when `-s` is not given.
pub const DEFAULT_SORT: &str = "published_at,name";

/// `imgadm list` options.
#[derive(Debug)]
pub struct ListOpts {
    /// `-j`.
    pub json: bool,
    /// Column keys.
    pub columns: Vec<String>,
    /// Sort keys.
    pub sort: Vec<SortKey>,
    /// Filters.
    pub filters: Vec<Filter>,
    /// Header on or off.
    pub style: Style,
}

/// A parsed `imgadm` command.
#[derive(Debug)]
pub enum Command {
    /// Print usage.
    Help,
    /// No command at all: the help, and exit 1.
    NoCommand,
    /// `install -m manifest -f file`.
    Install {
        /// Manifest path.
        manifest: String,
        /// Image file path.
        file: String,
    },
    /// `list ...`.
    List(ListOpts),
    /// `get <uuid>`.
    Get {
        /// The image.
        uuid: ImageUuid,
    },
    /// `import <uuid|name[@version]>`.
    Import(crate::imgapi::ImportOpts),
    /// `show <uuid|name[@version]>`.
    Show {
        /// The image: a uuid, or `name[@version]`.
        image: String,
    },
    /// `delete <uuid>`.
    Delete {
        /// The image.
        uuid: ImageUuid,
    },
    /// `create [-m manifest] [-o prefix | -O] [-c comp] [-i] <vm-uuid> [field=value...]`.
    Create {
        /// The instance.
        vm: String,
        /// `-m`: a manifest file, or `-` for stdin.
        manifest: Option<String>,
        /// The `field=value` arguments, each value JSON if it parses.
        fields: Map<String, Value>,
        /// What to make.
        request: ImageCreateRequest,
    },
    /// `help <command>`.
    HelpOn(&'static crate::doc::CommandDoc),
    /// `sources ...`.
    Sources(crate::imgapi::SourcesCmd),
    /// `avail ...`.
    Avail(ListOpts),
    /// `update [-n] [uuid...]`.
    Update {
        /// The images (all when empty).
        uuids: Vec<ImageUuid>,
        /// `-n`.
        dry_run: bool,
    },
    /// `vacuum [-n] [-f]`.
    Vacuum {
        /// `-n`.
        dry_run: bool,
        /// `-f`.
        force: bool,
    },
    /// `ancestry <uuid>`.
    Ancestry {
        /// The image.
        uuid: ImageUuid,
        /// Columns, header, `-j`.
        opts: ListOpts,
    },
    /// `import <reference>`: an OCI image from its registry.
    Pull {
        /// The image reference as given.
        reference: String,
        /// `-k`: plain HTTP, or HTTPS without checking certificates.
        insecure: bool,
        /// `-q`.
        quiet: bool,
    },
}

/// True when `arg` of `imgadm import` is an OCI image reference rather
/// than an image uuid or an IMGAPI `name[@version]`: it is no uuid and
/// has a `/` (a repository path or registry) or a `:` (a tag, a port, a
/// digest). A bare name (`busybox`) stays an IMGAPI name: write
/// `busybox:latest` or `docker.io/library/busybox` for Docker Hub's.
pub fn is_oci_reference(arg: &str) -> bool {
    arg.parse::<ImageUuid>().is_err() && (arg.contains('/') || arg.contains(':'))
}

/// A parsed command line.
#[derive(Debug)]
pub struct Invocation {
    /// `--socket`.
    pub socket: Option<String>,
    /// What to do.
    pub command: Command,
}

/// Manifest fields whose `field=value` argument is always a string.
const STRING_FIELDS: &[&str] =
    &["uuid", "owner", "name", "version", "description", "homepage", "type", "os", "origin", "published_at", "state"];

/// SmartOS commands zonevisor does not offer yet.
const NOT_YET: &[&str] = &["publish"];

/// `ancestry`'s columns when `-o` is not given.
pub const ANCESTRY_COLUMNS: &str = "uuid,name,version,published";

fn usage(message: impl Into<String>) -> CliError {
    CliError::usage(message)
}

fn parse(args: &[String], opts: &[Opt]) -> Result<args::Parsed, CliError> {
    args::parse(args, opts, Mode::Intermixed).map_err(usage)
}

/// Drops a leading `manifest.` from a field key.
fn field_key(key: &str) -> &str {
    key.strip_prefix("manifest.").unwrap_or(key)
}

/// Parses `imgadm`'s arguments (without the program name).
pub fn parse_args(argv: &[String]) -> Result<Invocation, CliError> {
    let g = args::globals(argv, &["-h", "--help"])?;
    let (mut socket, i) = (g.socket, g.next);
    if g.help {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let Some(cmd) = argv.get(i) else {
        // SmartOS: the help on stdout, but an error (exit 1).
        return Ok(Invocation { socket, command: Command::NoCommand });
    };
    let rest = &argv[i + 1..];
    // `imgadm get -h` is help, whatever else is (or is not) on the line.
    let before_dashes = rest.iter().take_while(|a| *a != "--");
    if before_dashes.clone().any(|a| a == "-h" || a == "--help") {
        return Ok(Invocation { socket, command: Command::Help });
    }
    let one_uuid = |p: &args::Parsed| -> Result<ImageUuid, CliError> {
        if p.positional.len() > 1 {
            return Err(usage(format!(
                "incorrect number of args ({}): \"{}\"",
                p.positional.len(),
                p.positional.join(" ")
            )));
        }
        args::image_uuid(p.positional.first(), cmd).map_err(usage)
    };
    // A uuid, or name[@version] (the daemon says what a bad one is).
    let one_image = |p: &args::Parsed| -> Result<String, CliError> {
        match p.positional.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(usage(format!("missing image UUID or name for {cmd}"))),
            more => Err(usage(format!("incorrect number of args ({}): \"{}\"", more.len(), more.join(" ")))),
        }
    };
    let (parsed, command) = match cmd.as_str() {
        "help" => match rest.first() {
            Some(name) => match pages::IMGADM.command(name) {
                Some(c) => (args::Parsed::default(), Command::HelpOn(c)),
                None => return Err(CliError::failed(format!("error (UnknownCommand): unknown command: \"{name}\""))),
            },
            None => (args::Parsed::default(), Command::Help),
        },
        "install" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            if let Some(extra) = p.positional.first() {
                return Err(usage(format!("unexpected args: {extra}")));
            }
            let manifest = p.value("manifest").ok_or_else(|| usage("install requires -m <manifest>"))?.to_string();
            let file = p.value("file").ok_or_else(|| usage("install requires -f <file>"))?.to_string();
            (p, Command::Install { manifest, file })
        }
        "list" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let list = list_opts(&p, DEFAULT_COLUMNS, true)?;
            (p, Command::List(list))
        }
        "get" | "info" => {
            let p = parse(rest, &pages::IMGADM.opts("get"))?;
            let uuid = one_uuid(&p)?;
            (p, Command::Get { uuid })
        }
        "show" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let image = one_image(&p)?;
            (p, Command::Show { image })
        }
        "import" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            // An OCI reference (a / or a :, not a UUID) is pulled from its registry.
            let oci = match p.positional.as_slice() {
                [reference] if is_oci_reference(reference) => Some(reference.clone()),
                _ => None,
            };
            match oci {
                Some(reference) => {
                    let command = Command::Pull { reference, insecure: p.has("insecure"), quiet: p.has("quiet") };
                    (p, command)
                }
                None => {
                    let image = one_image(&p)?;
                    let opts = crate::imgapi::ImportOpts {
                        image,
                        quiet: p.has("quiet"),
                        source: p.value("source").map(str::to_string),
                    };
                    (p, Command::Import(opts))
                }
            }
        }
        "sources" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let sources = crate::imgapi::SourcesCmd::parse(&p)?;
            (p, Command::Sources(sources))
        }
        "avail" | "available" => {
            let p = parse(rest, &pages::IMGADM.opts("avail"))?;
            let list = list_opts(&p, DEFAULT_COLUMNS, true)?;
            (p, Command::Avail(list))
        }
        "update" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let uuids = p
                .positional
                .iter()
                .map(|u| u.parse::<ImageUuid>().map_err(|_| usage(format!("invalid image UUID \"{u}\" for update"))))
                .collect::<Result<Vec<_>, _>>()?;
            let dry_run = p.has("dry-run");
            (p, Command::Update { uuids, dry_run })
        }
        "vacuum" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            if !p.positional.is_empty() {
                return Err(usage(format!("unexpected arguments: {}", p.positional.join(" "))));
            }
            let (dry_run, force) = (p.has("dry-run"), p.has("force"));
            (p, Command::Vacuum { dry_run, force })
        }
        "ancestry" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let uuid = one_uuid(&p)?;
            let mut opts = list_opts(&p, ANCESTRY_COLUMNS, false)?;
            opts.filters.clear();
            (p, Command::Ancestry { uuid, opts })
        }
        "delete" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let uuid = one_uuid(&p)?;
            (p, Command::Delete { uuid })
        }
        "create" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let Some(vm) = p.positional.first().cloned() else {
                return Err(usage("incorrect number of args (0): \"\""));
            };
            if vm.parse::<zonevisor_api::InstanceUuid>().is_err() {
                return Err(usage(format!("invalid VM UUID \"{vm}\"")));
            }
            let mut fields = Map::new();
            for arg in &p.positional[1..] {
                let Some((k, v)) = arg.split_once('=') else {
                    return Err(usage(format!("invalid manifest field arg \"{arg}\": must match \"<field>=<value>\"")));
                };
                // SmartOS: the value as JSON if it parses, else the string;
                // string fields stay strings (`version=1` is "1"), as
                // SmartOS's own TODO there asks.
                let v = if STRING_FIELDS.contains(&k) {
                    Value::String(v.to_string())
                } else {
                    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
                };
                fields.insert(k.to_string(), v);
            }
            if let Some(c) = p.value("compression") {
                if !zonevisor_api::IMAGE_COMPRESSIONS.contains(&c) {
                    return Err(usage(format!(
                        "invalid -c,--compression \"{c}\": must be one of \"{}\"",
                        zonevisor_api::IMAGE_COMPRESSIONS.join("\", \"")
                    )));
                }
            }
            let max_origin_depth = match p.value("max-origin-depth") {
                None => None,
                Some(d) => match d.parse::<u32>() {
                    Ok(n) if n >= 2 => Some(n),
                    _ => return Err(usage(format!("invalid max-origin-depth \"{d}\": must be greater than 1"))),
                },
            };
            if p.has("publish") {
                return Err(CliError::failed(
                    "error: -p (publish to an IMGAPI server) is not supported by zonevisor yet; write the image \
                     with -o and install it with imgadm install, or serve it with zonevisord --imgapi-listen",
                ));
            }
            if p.has("output-template") && p.has("install") {
                return Err(usage("cannot specify both -o,--output-template and -O,--install"));
            }
            let request = ImageCreateRequest {
                manifest: Value::Null,
                compression: p.value("compression").map(str::to_string),
                incremental: p.has("incremental"),
                max_origin_depth,
                output_prefix: p.value("output-template").map(str::to_string),
                install: p.has("install"),
                prepare_script: match p.value("prepare-script") {
                    None => None,
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        CliError::failed(format!("error: cannot read prepare-image script {path}: {e}"))
                    })?),
                },
                prepare_timeout_secs: None,
            };
            let manifest = p.value("manifest").map(str::to_string);
            (p, Command::Create { vm, manifest, fields, request })
        }
        other if NOT_YET.contains(&other) => {
            return Err(CliError::failed(format!("error: \"{other}\" is not supported by zonevisor yet")))
        }
        // SmartOS: an error (exit 1), not a usage error.
        other => return Err(CliError::failed(format!("error (UnknownCommand): unknown command: \"{other}\""))),
    };
    if parsed.has("help") {
        return Ok(Invocation { socket, command: Command::Help });
    }
    if let Some(s) = parsed.value("socket") {
        socket = Some(s.to_string());
    }
    Ok(Invocation { socket, command })
}

/// `list`'s (and `avail`'s, `ancestry`'s) `-j`, `-H`, `-o`, `-s` and
/// filters; `columns` when `-o` is not given; filters only when `filters`.
fn list_opts(p: &args::Parsed, columns: &str, filters: bool) -> Result<ListOpts, CliError> {
    let columns: Vec<String> = p
        .value("output")
        .unwrap_or(columns)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|c| field_key(c).to_string())
        .collect();
    if columns.is_empty() || columns.iter().any(|c| c.split('.').any(str::is_empty)) {
        return Err(usage(format!("invalid output fields: \"{}\"", p.value("output").unwrap_or(""))));
    }
    let sort = filter::parse_sort(p.value("sort").unwrap_or(DEFAULT_SORT))
        .iter()
        .map(|k| SortKey::parse(&format!("{}{}", if k.descending { "-" } else { "" }, field_key(&k.key))))
        .collect();
    if !filters && !p.positional.is_empty() && p.positional.iter().any(|a| a.contains('=')) {
        return Err(usage(format!("unexpected filters: {}", p.positional.join(" "))));
    }
    let filters = if filters { p.positional.as_slice() } else { &[] };
    let filters = filters
        .iter()
        .map(|a| {
            // SmartOS fails a bad filter (exit 1) rather than calling it usage.
            let bad = || CliError::failed(format!("error: invalid filter: \"{a}\""));
            let (k, v) = args::split_kv(a).map_err(|_| bad())?;
            Filter::parse(&format!("{}={v}", field_key(k)), Tilde::Substring).map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let style = Style { header: !p.has("noheader"), parsable: false, fixed: false };
    Ok(ListOpts { json: p.has("json"), columns, sort, filters, style })
}

/// A manifest plus the fields imgadm computes from it (`published_date`,
/// `pub`, `published`, `size`): the row of `list` and `avail`.
pub fn manifest_row(manifest: &Value) -> Map<String, Value> {
    let mut row = match manifest {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    if let Some(at) = row.get("published_at").and_then(Value::as_str).map(str::to_string) {
        let date: String = at.chars().take(10).collect();
        row.insert("published_date".into(), Value::from(date.clone()));
        row.insert("pub".into(), Value::from(date));
        row.insert("published".into(), Value::from(strip_millis(&at)));
    }
    if let Some(size) = row.get("files").and_then(|f| f.get(0)).and_then(|f| f.get("size")).cloned() {
        row.insert("size".into(), size);
    }
    row
}

/// The row `list` filters, sorts and shows for an image: its manifest plus
/// the computed fields.
pub fn image_row(record: &ImageRecord) -> Map<String, Value> {
    let mut row = manifest_row(&record.manifest);
    row.insert("clones".into(), Value::from(record.clones));
    row.insert("zpool".into(), Value::from(record.zpool.clone()));
    if let Some(source) = &record.source {
        row.insert("source".into(), Value::from(source.clone()));
    }
    row
}

/// `2013-01-01T00:00:00.123Z` → `2013-01-01T00:00:00Z`.
fn strip_millis(ts: &str) -> String {
    if let Some(dot) = ts.rfind('.') {
        let tail = &ts[dot + 1..];
        if let Some(digits) = tail.strip_suffix('Z') {
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return format!("{}Z", &ts[..dot]);
            }
        }
    }
    ts.to_string()
}

/// Filters and sorts `records` as `list` shows them.
pub fn select(records: Vec<ImageRecord>, opts: &ListOpts) -> Vec<(Map<String, Value>, ImageRecord)> {
    let mut rows: Vec<(Map<String, Value>, ImageRecord)> = records
        .into_iter()
        .map(|r| (image_row(&r), r))
        .filter(|(row, _)| filter::matches_all(&opts.filters, row))
        .collect();
    rows.sort_by(|a, b| filter::compare_by(&a.0, &b.0, &opts.sort));
    rows
}

/// Renders `imgadm list` output (table or `-j`).
pub fn render_list(records: Vec<ImageRecord>, opts: &ListOpts) -> String {
    render_rows(select(records, opts), opts)
}

/// Renders rows (each with what `-j` prints of it) as `list` does: a
/// table of `opts`' columns, or a JSON array.
pub fn render_rows<T: serde::Serialize>(rows: Vec<(Map<String, Value>, T)>, opts: &ListOpts) -> String {
    if opts.json {
        let list: Vec<&T> = rows.iter().map(|(_, r)| r).collect();
        let mut text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
        text.push('\n');
        return text;
    }
    if rows.is_empty() {
        // As SmartOS's imgadm: no images, no table (not even a header).
        return String::new();
    }
    let columns: Vec<Column> = opts.columns.iter().map(|c| Column::new(c.to_uppercase(), 0)).collect();
    let paths: Vec<Vec<String>> = opts.columns.iter().map(|c| filter::split_path(c)).collect();
    let cells: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|(row, _)| paths.iter().map(|p| filter::resolve_first(row, p).and_then(filter::display)).collect())
        .collect();
    table::render(&columns, &cells, opts.style)
}

pub(crate) fn client_err(e: ClientError) -> CliError {
    match &e {
        ClientError::Api(api) if api.kind == ErrorKind::NotFound => CliError::Failed {
            code: EXIT_NOT_INSTALLED,
            message: format!("error (ImageNotInstalled): {}", api.message),
        },
        _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
    }
}

/// SmartOS's answer to installing or importing an image that is installed.
pub(crate) fn skip_installed(io: &mut Io, record: &ImageRecord) -> Result<(), CliError> {
    let field = |k: &str| record.manifest.get(k).and_then(Value::as_str).map(String::from);
    let uuid = field("uuid").unwrap_or_default();
    let extra = match (field("name"), field("version")) {
        (Some(n), Some(v)) => format!(" ({n} {v})"),
        (Some(n), None) => format!(" ({n})"),
        _ => String::new(),
    };
    writeln!(io.out, "Image {uuid}{extra} is already installed, skipping")?;
    Ok(())
}

fn read_manifest(path: &str) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::failed(format!("error: cannot read manifest {path}: {e}")))?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::failed(format!("error: manifest {path} is not valid JSON: {e}")))?;
    if !manifest.is_object() {
        return Err(CliError::failed(format!("error: manifest {path} is not a JSON object")));
    }
    Ok(manifest)
}

pub(crate) fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Runs `imgadm` and returns its exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let result = parse_args(argv).and_then(|inv| execute(inv, io));
    // SmartOS's imgadm labels usage errors with their code.
    let result = result.map_err(|e| match e {
        CliError::Usage(m) => CliError::Usage(format!("error (Usage): {m}")),
        other => other,
    });
    crate::report("imgadm", io, result)
}

fn execute(inv: Invocation, io: &mut Io) -> Result<(), CliError> {
    let client = crate::client(inv.socket.as_deref(), io);
    match inv.command {
        Command::Help => io.out.write_all(doc::render_help(&pages::IMGADM).as_bytes())?,
        Command::NoCommand => {
            io.out.write_all(doc::render_help(&pages::IMGADM).as_bytes())?;
            return Err(CliError::Quiet(crate::EXIT_ERROR));
        }
        Command::Install { manifest, file } => {
            let manifest = read_manifest(&manifest)?;
            let file =
                std::fs::canonicalize(&file).map_err(|e| CliError::failed(format!("error: image file {file}: {e}")))?;
            // SmartOS: an image already installed is skipped, exit 0.
            if let Some(uuid) = manifest.get("uuid").and_then(Value::as_str) {
                if let Ok(record) = client.get_image(uuid) {
                    return skip_installed(io, &record);
                }
            }
            let given = |k: &str| manifest.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            // SmartOS says what it is about to do, then that it is done.
            writeln!(io.out, "Installing image {} ({}@{})", given("uuid"), given("name"), given("version"))?;
            io.out.flush()?;
            let uuid = manifest.get("uuid").and_then(Value::as_str).unwrap_or_default().to_string();
            let req = ImageInstallRequest { manifest, file: file.display().to_string() };
            let record = match client.install_image(&req) {
                Ok(r) => r,
                // Another install of it finished first (the daemon installs one at a time).
                Err(ClientError::Api(api))
                    if api.kind == ErrorKind::Conflict && api.message.contains("already installed") =>
                {
                    let record = client.get_image(&uuid).map_err(client_err)?;
                    return skip_installed(io, &record);
                }
                Err(e) => return Err(client_err(e)),
            };
            let field = |k: &str| record.manifest.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            writeln!(io.out, "Installed image {} ({}@{})", field("uuid"), field("name"), field("version"))?;
        }
        Command::List(opts) => {
            let records = client.list_images().map_err(client_err)?;
            io.out.write_all(render_list(records, &opts).as_bytes())?;
        }
        Command::Get { uuid } => {
            let record = client.get_image(&uuid.to_string()).map_err(client_err)?;
            writeln!(io.out, "{}", pretty(&record))?;
        }
        Command::Import(opts) => {
            // SmartOS: an installed uuid is skipped before any source is asked.
            if let Ok(uuid) = opts.image.parse::<ImageUuid>() {
                match client.get_image(&uuid.to_string()) {
                    Ok(record) => return skip_installed(io, &record),
                    Err(ClientError::Api(api)) if api.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(client_err(e)),
                }
            }
            crate::imgapi::import(&client, &opts, io)?;
        }
        Command::Show { image } => {
            // zonevisor: an installed image's manifest; else SmartOS's
            // show, which asks the sources (not found is 1, not 3).
            if let Ok(uuid) = image.parse::<ImageUuid>() {
                match client.get_image(&uuid.to_string()) {
                    Ok(record) => {
                        writeln!(io.out, "{}", pretty(&record.manifest))?;
                        return Ok(());
                    }
                    Err(ClientError::Api(api)) if api.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(client_err(e)),
                }
            }
            let found = client.available_image(&image).map_err(|e| match e {
                ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
                    CliError::failed(format!("error (ImageNotFound): image \"{image}\" was not found"))
                }
                other => CliError::failed(format!("error: {}", describe_client_error(&other))),
            })?;
            writeln!(io.out, "{}", pretty(&found.manifest))?;
        }
        Command::Delete { uuid } => {
            client.delete_image(&uuid.to_string()).map_err(client_err)?;
            writeln!(io.out, "Deleted image {uuid}")?;
        }
        Command::Create { vm, manifest, fields, mut request } => {
            let mut m = match manifest.as_deref() {
                None => Map::new(),
                Some("-") => {
                    let mut text = String::new();
                    io.input.read_to_string(&mut text)?;
                    match serde_json::from_str(&text) {
                        Ok(Value::Object(m)) => m,
                        Ok(_) => return Err(usage("invalid manifest JSON on stdin: not an object")),
                        Err(e) => return Err(usage(format!("invalid manifest JSON on stdin: {e}"))),
                    }
                }
                Some(path) => match read_manifest(path)? {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            };
            m.extend(fields);
            // The daemon writes the files: it gets an absolute prefix,
            // the working directory by default (SmartOS: NAME-VER there).
            if !request.install {
                let cwd = std::env::current_dir()?;
                request.output_prefix = Some(match request.output_prefix.take() {
                    Some(o) => cwd.join(o).display().to_string(),
                    None => cwd.display().to_string(),
                });
            }
            request.manifest = Value::Object(m);
            let created = client.create_image(&vm, &request).map_err(|e| match &e {
                ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
                    CliError::failed(format!("error (VmNotFound): {}", api.message))
                }
                _ => client_err(e),
            })?;
            for line in &created.log {
                writeln!(io.out, "{line}")?;
            }
            let field = |k: &str| created.manifest.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
            writeln!(io.out, "Created image {} ({}@{})", field("uuid"), field("name"), field("version"))?;
        }
        Command::HelpOn(c) => io.out.write_all(crate::imgapi::command_help(c).as_bytes())?,
        Command::Sources(cmd) => crate::imgapi::sources(&client, &cmd, io)?,
        Command::Avail(opts) => crate::imgapi::avail(&client, &opts, io)?,
        Command::Update { uuids, dry_run } => crate::imgapi::update(&client, uuids, dry_run, io)?,
        Command::Vacuum { dry_run, force } => crate::imgapi::vacuum(&client, dry_run, force, io)?,
        Command::Ancestry { uuid, opts } => {
            let mut chain: Vec<(Map<String, Value>, ImageRecord)> = Vec::new();
            let mut next = Some(uuid.to_string());
            while let Some(u) = next.take() {
                if chain.len() > 64
                    || chain.iter().any(|(_, r)| r.manifest.get("uuid").and_then(Value::as_str) == Some(&u))
                {
                    return Err(CliError::failed(format!("error: the origin chain of image {uuid} does not end")));
                }
                let record = client.get_image(&u).map_err(client_err)?;
                next = record.manifest.get("origin").and_then(Value::as_str).map(str::to_string);
                chain.push((image_row(&record), record));
            }
            io.out.write_all(render_rows(chain, &opts).as_bytes())?;
        }
        Command::Pull { reference, insecure, quiet } => {
            if !quiet {
                writeln!(io.out, "Importing {reference} from its registry")?;
                io.out.flush()?;
            }
            let pulled = client.pull_image(&ImagePullRequest { reference, insecure }).map_err(|e| match &e {
                ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
                    CliError::failed(format!("error (ActiveImageNotFound): {}", api.message))
                }
                _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
            })?;
            if pulled.already_installed {
                if !quiet {
                    skip_installed(io, &pulled.image)?;
                }
            } else if !quiet {
                let field = |k: &str| pulled.image.manifest.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
                writeln!(
                    io.out,
                    "Imported image {} ({}@{}) from {}",
                    field("uuid"),
                    field("name"),
                    field("version"),
                    pulled.reference
                )?;
            }
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

    const I1: &str = "01b2c898-945f-11e1-a523-af1afbe22822";
    const I2: &str = "8639203c-d515-11e5-9ab6-ff6a3a2f6b3b";
    const I3: &str = "c4ee09ca-0000-4000-8000-000000000003";

    fn records() -> Vec<ImageRecord> {
        serde_json::from_value(json!([
            {"manifest": {"v": 2, "uuid": I2, "name": "debian-12", "version": "20240101", "os": "linux",
                          "type": "lx-dataset", "published_at": "2024-01-01T10:00:00.123Z",
                          "requirements": {"brand": "lx"}, "files": [{"size": 1000, "sha1": "x"}]},
             "zpool": "zones", "clones": 2},
            {"manifest": {"v": 2, "uuid": I1, "name": "busybox", "version": "1.36", "os": "linux",
                          "type": "lx-dataset", "published_at": "2023-06-01T00:00:00Z", "public": true},
             "zpool": "zones", "clones": 0},
            {"manifest": {"v": 2, "uuid": I3, "name": "alpine", "version": "3.19", "os": "linux",
                          "type": "lx-dataset"},
             "zpool": "zones", "clones": 0}
        ]))
        .unwrap()
    }

    fn list_opts(v: &[&str]) -> ListOpts {
        match parse_args(&s(v)).unwrap().command {
            Command::List(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn default_table() {
        let text = render_list(records(), &list_opts(&["list"]));
        let expected = format!(
            "UUID                                  NAME       VERSION   OS     TYPE        PUB\n\
             {I1}  busybox    1.36      linux  lx-dataset  2023-06-01\n\
             {I2}  debian-12  20240101  linux  lx-dataset  2024-01-01\n\
             {I3}  alpine     3.19      linux  lx-dataset  -\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn columns_sort_filters_and_manifest_prefix() {
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "name,clones,size", "-s", "-clones,name"]));
        assert_eq!(text, "debian-12  2       1000\nalpine     0       -\nbusybox    0       -\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "manifest.name", "name=~bian"]));
        assert_eq!(text, "debian-12\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "name", "requirements.brand=lx"]));
        assert_eq!(text, "debian-12\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "name", "public=true"]));
        assert_eq!(text, "busybox\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "name,published", "manifest.version=1.36"]));
        assert_eq!(text, "busybox  2023-06-01T00:00:00Z\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "published", "name=debian-12"]));
        assert_eq!(text, "2024-01-01T10:00:00Z\n");
        let text = render_list(records(), &list_opts(&["list", "-H", "-o", "name", "name=~^deb"]));
        assert_eq!(text, "", "imgadm's =~ is a substring, not a regex");
        let text = render_list(records(), &list_opts(&["list", "name=nothing"]));
        assert_eq!(text, "", "no header without rows");
        assert_eq!(render_list(Vec::new(), &list_opts(&["list", "-j"])), "[]\n");
    }

    #[test]
    fn json_list_is_records() {
        let text = render_list(records(), &list_opts(&["list", "-j", "name=busybox"]));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["manifest"]["uuid"], I1);
        assert_eq!(v[0]["zpool"], "zones");
        assert!(v[0].get("pub").is_none() && v[0]["manifest"].get("pub").is_none());
    }

    #[test]
    fn argument_errors() {
        let usage = |v: &[&str]| match parse_args(&s(v)) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{v:?}: {other:?}"),
        };
        assert!(usage(&["install", "-m", "m.json"]).contains("-f <file>"));
        assert!(usage(&["install", "-f", "x.tar"]).contains("-m <manifest>"));
        assert!(usage(&["get", "nope"]).contains("invalid image UUID"));
        assert!(usage(&["get"]).contains("missing image UUID"));
        assert!(usage(&["delete", I1, I2]).contains("incorrect number of args"));
        match parse_args(&s(&["frob"])) {
            Err(CliError::Failed { code: 1, message }) => assert!(message.contains("unknown command"), "{message}"),
            other => panic!("SmartOS: an unknown command is an error (exit 1): {other:?}"),
        }
        assert!(matches!(parse_args(&s(&["list", "name"])), Err(CliError::Failed { code: 1, .. })));
        assert!(matches!(parse_args(&s(&[])).unwrap().command, Command::NoCommand));
        assert!(matches!(parse_args(&s(&["get", "-h"])).unwrap().command, Command::Help));
        let mut t = TestIo::new();
        assert_eq!(t.run(&["imgadm", "get", "x"]), 2);
        assert_eq!(t.err(), "imgadm: error (Usage): invalid image UUID \"x\" for get\n");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["imgadm", "publish"]), 1);
        assert!(t.err().contains("not supported"));
    }

    #[test]
    fn import_and_install_of_an_installed_image_skip_it() {
        let d = FakeDaemon::start(|req| {
            if req.method == "GET" && req.path.ends_with(I1) {
                let m = json!({"uuid": I1, "name": "busybox", "version": "1.0"});
                (200, json!({"manifest": m, "zpool": "zones", "clones": 0}).to_string())
            } else {
                (404, json!({"kind": "NotFound", "message": "image is not installed"}).to_string())
            }
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", I1]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("Image {I1} (busybox 1.0) is already installed, skipping\n"));
        assert_eq!(d.seen().len(), 1, "an installed image is skipped before any source is asked");
    }

    #[test]
    fn not_installed_exits_3_and_in_use_exits_1() {
        let d = FakeDaemon::start(|req| {
            if req.method == "DELETE" && req.path.ends_with(I2) {
                (409, json!({"kind": "Conflict", "message": format!("image {I2} is used by 2 instances")}).to_string())
            } else if req.method == "DELETE" {
                (200, json!({"message": "deleted"}).to_string())
            } else {
                (404, json!({"kind": "NotFound", "message": format!("image {I1} is not installed")}).to_string())
            }
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "get", I1]), EXIT_NOT_INSTALLED);
        assert_eq!(t.err(), format!("imgadm: error (ImageNotInstalled): image {I1} is not installed\n"));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "show", I1]), 1, "show looks among available images: not found is 1");
        assert!(t.err().contains(&format!("image \"{I1}\" was not found")), "{}", t.err());
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "info", I1]), EXIT_NOT_INSTALLED, "info is get");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "delete", I2]), 1);
        assert_eq!(t.err(), format!("imgadm: error: image {I2} is used by 2 instances\n"));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "delete", I3]), 0);
        assert_eq!(t.out(), format!("Deleted image {I3}\n"));
    }

    #[test]
    fn import_of_a_reference_pulls_it_from_its_registry() {
        for (arg, oci) in [
            ("alpine:3.20", true),
            ("127.0.0.1:5000/app", true),
            ("docker.io/library/busybox", true),
            ("busybox", false),
            ("base-64@24.4.1", false),
            (I1, false),
        ] {
            assert_eq!(is_oci_reference(arg), oci, "{arg}");
        }
        let d = FakeDaemon::start(|req| {
            let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
            let m = json!({"uuid": I3, "name": "127.0.0.1:5000/app", "version": "1"});
            match body["reference"].as_str() {
                Some("127.0.0.1:5000/app:1") => (
                    200,
                    json!({"image": {"manifest": m, "zpool": "zones"}, "reference": "127.0.0.1:5000/app:1",
                           "already_installed": body["insecure"] == true})
                    .to_string(),
                ),
                _ => (404, json!({"kind": "NotFound", "message": "importing x: manifest unknown"}).to_string()),
            }
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "127.0.0.1:5000/app:1"]), 0, "{}", t.err());
        assert_eq!(
            t.out(),
            format!(
                "Importing 127.0.0.1:5000/app:1 from its registry\n\
                 Imported image {I3} (127.0.0.1:5000/app@1) from 127.0.0.1:5000/app:1\n"
            )
        );
        assert_eq!(d.seen()[0].path, "/v1/images/pull");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "-k", "127.0.0.1:5000/app:1"]), 0, "{}", t.err());
        assert!(t.out().ends_with("is already installed, skipping\n"), "{}", t.out());
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "-q", "127.0.0.1:5000/app:1"]), 0, "{}", t.err());
        assert_eq!(t.out(), "");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "x/y:nope"]), 1);
        assert!(t.err().contains("ActiveImageNotFound") && t.err().contains("manifest unknown"), "{}", t.err());
    }

    #[test]
    fn install_sends_manifest_and_absolute_path() {
        let dir = std::env::temp_dir().join(format!("zv-imgadm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = dir.join("m.json");
        std::fs::write(&manifest, json!({"v": 2, "uuid": I1, "name": "busybox", "version": "1.36"}).to_string())
            .unwrap();
        std::fs::write(dir.join("busybox.tar.gz"), b"data").unwrap();
        let d = FakeDaemon::start(|req| {
            if req.method == "GET" {
                return (404, json!({"kind": "NotFound", "message": "image is not installed"}).to_string());
            }
            let body: Value = serde_json::from_str(&req.body).unwrap();
            (200, json!({"manifest": body["manifest"], "zpool": "zones", "clones": 0}).to_string())
        });
        let mut t = TestIo::for_daemon(&d);
        // The path sent is absolute and normalized.
        let name = dir.file_name().unwrap().to_str().unwrap();
        let rel = format!("{}/../{name}/busybox.tar.gz", dir.display());
        let code = t.run(&["imgadm", "install", "-m", manifest.to_str().unwrap(), "-f", &rel]);
        assert_eq!(code, 0, "{}", t.err());
        assert_eq!(t.out(), format!("Installing image {I1} (busybox@1.36)\nInstalled image {I1} (busybox@1.36)\n"));
        let body: Value = serde_json::from_str(&d.seen()[1].body).unwrap();
        assert_eq!(body["manifest"]["name"], "busybox");
        assert_eq!(body["file"], Value::from(std::fs::canonicalize(&rel).unwrap().display().to_string()));

        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "install", "-m", manifest.to_str().unwrap(), "-f", "/nonexistent.tar"]), 1);
        assert!(t.err().starts_with("imgadm: error: image file /nonexistent.tar"), "{}", t.err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn image_rows_compute_fields() {
        let row = image_row(&records()[0]);
        assert_eq!(row["pub"], "2024-01-01");
        assert_eq!(row["published_date"], "2024-01-01");
        assert_eq!(row["published"], "2024-01-01T10:00:00Z");
        assert_eq!(row["size"], 1000);
        assert_eq!(row["clones"], 2);
        assert_eq!(strip_millis("2024-01-01T10:00:00Z"), "2024-01-01T10:00:00Z");
    }
}
