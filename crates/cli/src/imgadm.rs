//! `imgadm`: install, list, show and delete images, with SmartOS's
//! commands, table and exit codes (3 when the image is not installed).
//!
//! `list` works on rows built from each image's manifest plus the fields
//! imgadm computes (`published_date`, `pub`, `published`, `clones`,
//! `zpool`, `size`); keys may also be written `manifest.<field>`.
//! Filters are `field=value` (exact) and `field=~text` (substring), as in
//! SmartOS's imgadm.

use serde_json::{Map, Value};
use zonevisor_api::{ClientError, ErrorKind, ImageInstallRequest, ImagePullRequest, ImageRecord, ImageUuid};

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
    /// `import <uuid>`: only an installed image (nothing to do) for now.
    Import {
        /// The image.
        uuid: ImageUuid,
    },
    /// `show <uuid>`.
    Show {
        /// The image.
        uuid: ImageUuid,
    },
    /// `delete <uuid>`.
    Delete {
        /// The image.
        uuid: ImageUuid,
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

/// SmartOS commands zonevisor does not offer yet.
const NOT_YET: &[&str] = &["sources", "avail", "available", "update", "ancestry", "vacuum", "create", "publish"];

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
    let (parsed, command) = match cmd.as_str() {
        "help" => (args::Parsed::default(), Command::Help),
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
            let columns: Vec<String> = p
                .value("output")
                .unwrap_or(DEFAULT_COLUMNS)
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
            let filters = p
                .positional
                .iter()
                .map(|a| {
                    // SmartOS fails a bad filter (exit 1) rather than calling it usage.
                    let bad = || CliError::failed(format!("error: invalid filter: \"{a}\""));
                    let (k, v) = args::split_kv(a).map_err(|_| bad())?;
                    Filter::parse(&format!("{}={v}", field_key(k)), Tilde::Substring).map_err(|_| bad())
                })
                .collect::<Result<Vec<_>, _>>()?;
            let style = Style { header: !p.has("noheader"), parsable: false, fixed: false };
            let list = ListOpts { json: p.has("json"), columns, sort, filters, style };
            (p, Command::List(list))
        }
        "get" | "info" => {
            let p = parse(rest, &pages::IMGADM.opts("get"))?;
            let uuid = one_uuid(&p)?;
            (p, Command::Get { uuid })
        }
        "show" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let uuid = one_uuid(&p)?;
            (p, Command::Show { uuid })
        }
        "import" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            match p.positional.as_slice() {
                [reference] if is_oci_reference(reference) => {
                    let command = Command::Pull {
                        reference: reference.clone(),
                        insecure: p.has("insecure"),
                        quiet: p.has("quiet"),
                    };
                    (p, command)
                }
                _ => {
                    let uuid = one_uuid(&p)?;
                    (p, Command::Import { uuid })
                }
            }
        }
        "delete" => {
            let p = parse(rest, &pages::IMGADM.opts(cmd))?;
            let uuid = one_uuid(&p)?;
            (p, Command::Delete { uuid })
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

/// The row `list` filters, sorts and shows for an image: its manifest plus
/// the computed fields.
pub fn image_row(record: &ImageRecord) -> Map<String, Value> {
    let mut row = match &record.manifest {
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
    row.insert("clones".into(), Value::from(record.clones));
    row.insert("zpool".into(), Value::from(record.zpool.clone()));
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
    let rows = select(records, opts);
    if opts.json {
        let list: Vec<&ImageRecord> = rows.iter().map(|(_, r)| r).collect();
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

fn client_err(e: ClientError) -> CliError {
    match &e {
        ClientError::Api(api) if api.kind == ErrorKind::NotFound => CliError::Failed {
            code: EXIT_NOT_INSTALLED,
            message: format!("error (ImageNotInstalled): {}", api.message),
        },
        _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
    }
}

/// SmartOS's answer to installing or importing an image that is installed.
fn skip_installed(io: &mut Io, record: &ImageRecord) -> Result<(), CliError> {
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

fn pretty(v: &impl serde::Serialize) -> String {
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
            let req = ImageInstallRequest { manifest, file: file.display().to_string() };
            let record = client.install_image(&req).map_err(client_err)?;
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
        Command::Import { uuid } => match client.get_image(&uuid.to_string()) {
            Ok(record) => skip_installed(io, &record)?,
            Err(ClientError::Api(api)) if api.kind == ErrorKind::NotFound => {
                return Err(CliError::failed(format!(
                    "error: image {uuid} is not installed, and importing from image sources is not \
                     supported yet; install it from local files with imgadm install -m <manifest> -f <file>"
                )))
            }
            Err(e) => return Err(client_err(e)),
        },
        Command::Show { uuid } => {
            // SmartOS's show looks among available images: not found is 1.
            let record = client.get_image(&uuid.to_string()).map_err(|e| match e {
                ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
                    CliError::failed(format!("error (ImageNotFound): image \"{uuid}\" was not found"))
                }
                other => client_err(other),
            })?;
            writeln!(io.out, "{}", pretty(&record.manifest))?;
        }
        Command::Delete { uuid } => {
            client.delete_image(&uuid.to_string()).map_err(client_err)?;
            writeln!(io.out, "Deleted image {uuid}")?;
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
        assert_eq!(t.run(&["imgadm", "sources"]), 1);
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
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", I2]), 1);
        assert!(t.err().contains("not supported yet"), "{}", t.err());
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
