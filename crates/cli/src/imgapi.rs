//! `imgadm`'s commands that deal with image sources: `sources`, `avail`,
//! `import` (with its progress bar), `update` and `vacuum`, in SmartOS's
//! words. The daemon talks to the sources and owns the pool; these render
//! what it answers.
//!
//! An import's answer is a stream of events ([`ImportEvent`]): its
//! messages go to stdout as they come, and its progress to a bar on
//! stderr, drawn only when stderr is a terminal and `-q` is not given
//! (as SmartOS's imgadm does).

use std::io::{BufRead, BufReader, IsTerminal};

use serde_json::{Map, Value};
use zonevisor_api::{
    AvailableImage, Client, ClientError, ErrorKind, ImageImportRequest, ImageRecord, ImageSource, ImageUpdateRequest,
    ImageUuid, ImportEvent, SourceAddRequest, SourceChangeKind, SourceType, SourcesReplaceRequest,
};

use crate::args::Parsed;
use crate::doc::{self, CommandDoc, OptLine};
use crate::imgadm::{client_err, manifest_row, render_rows, ListOpts};
use crate::table::{self, Column, Style};
use crate::{describe_client_error, filter, CliError, Io};

/// `imgadm import`'s options.
#[derive(Debug)]
pub struct ImportOpts {
    /// A uuid, or `name[@version]`.
    pub image: String,
    /// `-q`: no progress bar.
    pub quiet: bool,
    /// `-S <url>`: this source instead of the configured ones.
    pub source: Option<String>,
}

/// What `imgadm sources` was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum SourcesCmd {
    /// List them (`-v`: a table; `-j`: JSON).
    List {
        /// `-v`.
        verbose: bool,
        /// `-j`.
        json: bool,
    },
    /// `-a <url> [-t type] [-k] [-f]`, or `--add-docker-hub`.
    Add {
        /// The source.
        source: ImageSource,
        /// `-f`: no ping check.
        force: bool,
    },
    /// `-d <url>`.
    Delete(String),
    /// `-e [-f]`.
    Edit {
        /// `-f`: no ping check of the new sources.
        force: bool,
    },
    /// `-c`.
    Check,
}

impl SourcesCmd {
    /// From `imgadm sources`' parsed options.
    pub fn parse(p: &Parsed) -> Result<SourcesCmd, CliError> {
        if !p.positional.is_empty() {
            return Err(CliError::usage(format!("unexpected args: {}", p.positional.join(" "))));
        }
        let add = if p.has("add-docker-hub") {
            Some((zonevisor_api::DOCKER_HUB_URL.to_string(), SourceType::Docker))
        } else {
            let kind = match p.value("type") {
                Some(t) => t.parse::<SourceType>().map_err(|e| CliError::usage(format!("-t: {e}")))?,
                None => SourceType::Imgapi,
            };
            p.value("add").map(|u| (u.to_string(), kind))
        };
        let actions = [add.is_some(), p.has("delete"), p.has("edit"), p.has("check")];
        if actions.iter().filter(|a| **a).count() > 1 {
            return Err(CliError::usage("cannot specify more than one of \"-a\", \"-d\", \"-e\", and \"-c\""));
        }
        let force = p.has("force");
        Ok(if let Some((url, source_type)) = add {
            SourcesCmd::Add { source: ImageSource { url, source_type, insecure: p.has("insecure") }, force }
        } else if let Some(url) = p.value("delete") {
            SourcesCmd::Delete(url.to_string())
        } else if p.has("edit") {
            SourcesCmd::Edit { force }
        } else if p.has("check") {
            SourcesCmd::Check
        } else {
            SourcesCmd::List { verbose: p.has("verbose"), json: p.has("json") }
        })
    }
}

/// `imgadm help <command>`: its usage lines, what it does and its options.
pub fn command_help(c: &CommandDoc) -> String {
    let mut out = String::new();
    for (i, u) in c.usage.iter().enumerate() {
        let lead = if i == 0 { "Usage:" } else { "      " };
        out.push_str(&format!("{lead} imgadm {u}\n"));
    }
    out.push('\n');
    out.push_str(&doc::wrap(c.summary, "", 80));
    for p in c.description {
        out.push('\n');
        out.push_str(&doc::wrap(p, "", 80));
    }
    if !c.options.is_empty() {
        out.push_str("\nOptions:\n");
        let lines: Vec<OptLine> = c.options.iter().map(OptLine::from_doc).collect();
        let width = lines.iter().map(|l| l.flags().len()).max().unwrap_or(0);
        for l in &lines {
            out.push_str(&format!("    {:<width$}  {}\n", l.flags(), l.help));
        }
    }
    out
}

/// `imgadm sources ...`.
pub fn sources(client: &Client, cmd: &SourcesCmd, io: &mut Io) -> Result<(), CliError> {
    match cmd {
        SourcesCmd::List { verbose, json } => {
            let list = client.list_sources().map_err(client_err)?;
            if *json {
                writeln!(io.out, "{}", crate::imgadm::pretty(&list))?;
            } else if *verbose {
                let columns = [Column::new("URL", 0), Column::new("TYPE", 0), Column::new("INSECURE", 0)];
                let rows: Vec<Vec<Option<String>>> = list
                    .iter()
                    .map(|s| vec![Some(s.url.clone()), Some(s.source_type.to_string()), Some(s.insecure.to_string())])
                    .collect();
                let style = Style { header: true, parsable: false, fixed: false };
                io.out.write_all(table::render(&columns, &rows, style).as_bytes())?;
            } else {
                for s in list {
                    writeln!(io.out, "{}", s.url)?;
                }
            }
        }
        SourcesCmd::Add { source, force } => {
            let req = SourceAddRequest { source: source.clone(), force: *force };
            let added = client.add_source(&req).map_err(source_err)?;
            if added.added {
                writeln!(io.out, "Added {}", added.source.describe())?;
            } else {
                writeln!(io.out, "Already have {}, no change", added.source.describe())?;
            }
        }
        SourcesCmd::Delete(url) => {
            let deleted = client.delete_source(url).map_err(source_err)?;
            if deleted.deleted.is_empty() {
                writeln!(io.out, "Do not have image source \"{url}\", no change")?;
            }
            for s in deleted.deleted {
                writeln!(io.out, "Deleted {}", s.describe())?;
            }
        }
        SourcesCmd::Edit { force } => edit_sources(client, *force, io)?,
        SourcesCmd::Check => {
            let checks = client.check_sources().map_err(client_err)?;
            let columns =
                [Column::new("URL", 0), Column::new("TYPE", 0), Column::new("OK", 0), Column::new("ERROR", 0)];
            let rows: Vec<Vec<Option<String>>> = checks
                .iter()
                .map(|c| {
                    vec![Some(c.url.clone()), Some(c.source_type.to_string()), Some(c.ok.to_string()), c.error.clone()]
                })
                .collect();
            let style = Style { header: true, parsable: false, fixed: false };
            io.out.write_all(table::render(&columns, &rows, style).as_bytes())?;
        }
    }
    Ok(())
}

/// A failed source change, in SmartOS's shape (`error (SourcePing): ...`
/// when the new source did not answer).
fn source_err(e: ClientError) -> CliError {
    match &e {
        ClientError::Api(api) if api.message.starts_with("unexpected ping error") => {
            CliError::failed(format!("error (SourcePing): {}", api.message))
        }
        _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
    }
}

/// The text `imgadm sources -e` opens in the editor: SmartOS's.
pub fn edit_text(list: &[ImageSource]) -> String {
    let width = list.iter().map(|s| s.url.len()).max().unwrap_or(0).min(50);
    let mut text = String::new();
    for s in list {
        let line =
            format!("{:<width$}  {:<6}  {}", s.url, s.source_type.as_str(), if s.insecure { "insecure" } else { "" });
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(
        "\n#\n\
         # Enter sources, one per line, as follows:\n\
         #\n\
         #   URL TYPE [OPTIONS]\n\
         #\n\
         # where \"TYPE\" is one of \"imgapi\" (the default) or \"docker\",\n\
         # and where \"OPTIONS\" is the literal string \"insecure\" to skip TLS\n\
         # server certificate checking for this source.\n\
         #\n\
         # Comments beginning with \"#\" are stripped.\n\
         #\n",
    );
    text
}

/// The sources an edited text lists (`URL [TYPE [insecure]]` a line).
pub fn parse_edited(text: &str) -> Result<Vec<ImageSource>, CliError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let source_type = match parts.get(1) {
            Some(t) => t.parse::<SourceType>().map_err(|e| CliError::usage(format!("source {}: {e}", parts[0])))?,
            None => SourceType::Imgapi,
        };
        let mut insecure = false;
        if let Some(opts) = parts.get(2) {
            for o in opts.split(',') {
                match o {
                    "insecure" => insecure = true,
                    other => return Err(CliError::usage(format!("unknown source option: {other}"))),
                }
            }
        }
        if parts.len() > 3 {
            return Err(CliError::usage(format!("source line {line:?} has more than URL TYPE OPTIONS")));
        }
        out.push(ImageSource { url: parts[0].to_string(), source_type, insecure });
    }
    Ok(out)
}

/// `imgadm sources -e`: the list in `$VISUAL`, `$EDITOR` or `vi`.
fn edit_sources(client: &Client, force: bool, io: &mut Io) -> Result<(), CliError> {
    let before = client.list_sources().map_err(client_err)?;
    let text = edit_text(&before);
    let path = std::env::temp_dir().join(format!("imgadm-sources-{}.txt", std::process::id()));
    std::fs::write(&path, &text).map_err(|e| CliError::failed(format!("error: writing {}: {e}", path.display())))?;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("EDITOR").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    // The editor may carry arguments (`code -w`): a shell splits it.
    let status =
        std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path).status();
    let after = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(st) if st.success() => {}
        Ok(st) => {
            writeln!(io.err, "Error editing image sources: {} (ignoring)", st.code().unwrap_or(-1))?;
            return Ok(());
        }
        Err(e) => return Err(CliError::failed(format!("error: cannot run the editor {editor:?}: {e}"))),
    }
    let after = after.map_err(|e| CliError::failed(format!("error: reading {}: {e}", path.display())))?;
    let list = parse_edited(&after)?;
    if after == text || list == before {
        writeln!(io.out, "Image sources unchanged")?;
        return Ok(());
    }
    let changed = client.replace_sources(&SourcesReplaceRequest { sources: list, force }).map_err(source_err)?;
    if changed.changes.is_empty() {
        writeln!(io.out, "Image sources unchanged")?;
    }
    for c in changed.changes {
        match (c.kind, c.source) {
            (SourceChangeKind::Reorder, _) => writeln!(io.out, "Reordered image sources")?,
            (SourceChangeKind::Add, Some(s)) => writeln!(io.out, "Added {}", s.describe())?,
            (SourceChangeKind::Del, Some(s)) => writeln!(io.out, "Deleted {}", s.describe())?,
            _ => {}
        }
    }
    Ok(())
}

/// The row `avail` filters, sorts and shows: the manifest, its computed
/// fields and `source`.
pub fn available_row(a: &AvailableImage) -> Map<String, Value> {
    let mut row = manifest_row(&a.manifest);
    row.insert("source".into(), Value::from(a.source.clone()));
    row
}

/// `imgadm avail`: the table (or `-j`), then an error if a source did not
/// answer.
pub fn avail(client: &Client, opts: &ListOpts, io: &mut Io) -> Result<(), CliError> {
    let all =
        client.available_images().map_err(|e| CliError::failed(format!("error: {}", describe_client_error(&e))))?;
    let mut rows: Vec<(Map<String, Value>, AvailableImage)> = all
        .images
        .into_iter()
        .map(|a| (available_row(&a), a))
        .filter(|(row, _)| filter::matches_all(&opts.filters, row))
        .collect();
    rows.sort_by(|a, b| filter::compare_by(&a.0, &b.0, &opts.sort));
    io.out.write_all(render_rows(rows, opts).as_bytes())?;
    if !all.errors.is_empty() {
        return Err(CliError::failed(format!("error: {}", all.errors.join("; "))));
    }
    Ok(())
}

/// The progress bar of an import: on stderr, drawn only on a terminal,
/// from the first bytes downloaded until the last.
struct Bar {
    wanted: bool,
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
    /// Everything was downloaded: the bar is gone for good.
    ended: std::cell::Cell<bool>,
}

impl Bar {
    /// A bar when `wanted`, else nothing drawn.
    fn new(wanted: bool) -> Bar {
        Bar { wanted, bar: std::cell::RefCell::new(None), ended: std::cell::Cell::new(false) }
    }

    /// Prints a line on stdout without tearing the bar.
    fn line(&self, io: &mut Io, text: &str) -> std::io::Result<()> {
        match &*self.bar.borrow() {
            Some(bar) => bar.suspend(|| writeln!(io.out, "{text}").and_then(|()| io.out.flush())),
            None => writeln!(io.out, "{text}").and_then(|()| io.out.flush()),
        }
    }

    fn progress(&self, done: u64, total: u64) {
        if !self.wanted || self.ended.get() {
            return;
        }
        let mut slot = self.bar.borrow_mut();
        let bar = slot.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message("Downloading");
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
        if done >= total {
            bar.finish_and_clear();
            *slot = None;
            self.ended.set(true);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

/// `imgadm import` of an image that is not installed: the daemon's
/// messages on stdout as they come, a progress bar on a terminal.
pub fn import(client: &Client, opts: &ImportOpts, io: &mut Io) -> Result<ImageRecord, CliError> {
    let bar = Bar::new(!opts.quiet && std::io::stderr().is_terminal());
    let req = ImageImportRequest { image: opts.image.clone(), source: opts.source.clone() };
    let mut failed_output = None;
    let result = client.import_image(&req, |ev| match ev {
        ImportEvent::Message { message } => {
            if let Err(e) = bar.line(io, message) {
                failed_output.get_or_insert(e);
            }
        }
        ImportEvent::Progress { done, total } => bar.progress(*done, *total),
        ImportEvent::Done { .. } | ImportEvent::Error { .. } => {}
    });
    bar.finish();
    if let Some(e) = failed_output {
        return Err(e.into());
    }
    result.map_err(|e| match &e {
        ClientError::Api(api)
            if api.kind == ErrorKind::NotFound && api.message.contains("was not found in image sources") =>
        {
            CliError::failed(format!("error (ActiveImageNotFound): {}", api.message))
        }
        _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
    })
}

/// `imgadm update`: what changed, then an error if any image failed.
pub fn update(client: &Client, uuids: Vec<ImageUuid>, dry_run: bool, io: &mut Io) -> Result<(), CliError> {
    let result = client.update_images(&ImageUpdateRequest { uuids, dry_run }).map_err(|e| match &e {
        ClientError::Api(api) if api.kind == ErrorKind::NotFound => {
            CliError::failed(format!("error (Usage): {}", api.message))
        }
        _ => CliError::failed(format!("error: {}", describe_client_error(&e))),
    })?;
    for m in &result.messages {
        writeln!(io.out, "{m}")?;
    }
    if !result.errors.is_empty() {
        return Err(CliError::failed(format!("error: {}", result.errors.join("; "))));
    }
    Ok(())
}

/// The images `vacuum` deletes, in the order it deletes them: those no
/// instance uses and whose child images (those with it as `origin`) are
/// all deleted before them. `clones` counts instances and child images.
pub fn unused_images(records: &[ImageRecord]) -> Vec<&ImageRecord> {
    let uuid = |r: &ImageRecord| r.manifest.get("uuid").and_then(Value::as_str).unwrap_or("").to_string();
    let origin = |r: &ImageRecord| r.manifest.get("origin").and_then(Value::as_str).map(str::to_string);
    let children = |u: &str| records.iter().filter(|r| origin(r).as_deref() == Some(u)).collect::<Vec<_>>();
    let mut gone: Vec<&ImageRecord> = Vec::new();
    loop {
        let mut round = Vec::new();
        for r in records {
            let u = uuid(r);
            if gone.iter().any(|g| uuid(g) == u) {
                continue;
            }
            let kids = children(&u);
            let instances = r.clones.saturating_sub(kids.len() as u64);
            if instances == 0 && kids.iter().all(|k| gone.iter().any(|g| uuid(g) == uuid(k))) {
                round.push(r);
            }
        }
        if round.is_empty() {
            return gone;
        }
        gone.extend(round);
    }
}

/// `<uuid> (<name>@<version>)`.
fn title(r: &ImageRecord) -> String {
    let f = |k: &str| r.manifest.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    format!("{} ({}@{})", f("uuid"), f("name"), f("version"))
}

/// `imgadm vacuum`: SmartOS's prompt (unless `-f`), then the deletes.
pub fn vacuum(client: &Client, dry_run: bool, force: bool, io: &mut Io) -> Result<(), CliError> {
    let records = client.list_images().map_err(client_err)?;
    let doomed = unused_images(&records);
    if doomed.is_empty() {
        return Ok(());
    }
    if !force {
        let list: Vec<String> = doomed.iter().map(|r| title(r)).collect();
        writeln!(io.out, "This will delete the following images:\n    {}", list.join("\n    "))?;
        if doomed.len() == 1 {
            write!(io.out, "Delete this image? [y/N] ")?;
        } else {
            write!(io.out, "Delete these {} images? [y/N] ", doomed.len())?;
        }
        io.out.flush()?;
        let mut answer = String::new();
        BufReader::new(&mut *io.input).read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            writeln!(io.out, "Aborting")?;
            return Ok(());
        }
        writeln!(io.out)?;
    }
    for r in doomed {
        let uuid = r.manifest.get("uuid").and_then(Value::as_str).unwrap_or("");
        if dry_run {
            writeln!(io.out, "[dry-run] Deleted image {}", title(r))?;
            continue;
        }
        match client.delete_image(uuid) {
            Ok(_) => writeln!(io.out, "Deleted image {}", title(r))?,
            Err(e) => {
                writeln!(io.out, "Error deleting image {}: {}", title(r), describe_client_error(&e))?;
                return Err(client_err(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{s, FakeDaemon, TestIo};
    use serde_json::json;

    const I1: &str = "01b2c898-945f-11e1-a523-af1afbe22822";
    const I2: &str = "8639203c-d515-11e5-9ab6-ff6a3a2f6b3b";
    const I3: &str = "c4ee09ca-0000-4000-8000-000000000003";

    fn sources_cmd(v: &[&str]) -> Result<SourcesCmd, CliError> {
        match crate::imgadm::parse_args(&s(v))?.command {
            crate::imgadm::Command::Sources(c) => Ok(c),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sources_options() {
        assert_eq!(sources_cmd(&["sources"]).unwrap(), SourcesCmd::List { verbose: false, json: false });
        assert_eq!(sources_cmd(&["sources", "-vj"]).unwrap(), SourcesCmd::List { verbose: true, json: true });
        let add = sources_cmd(&["sources", "-a", "http://x", "-t", "docker", "-k", "-f"]).unwrap();
        let want = ImageSource { url: "http://x".into(), source_type: SourceType::Docker, insecure: true };
        assert_eq!(add, SourcesCmd::Add { source: want, force: true });
        let hub = sources_cmd(&["sources", "--add-docker-hub"]).unwrap();
        assert!(matches!(hub, SourcesCmd::Add { source, force: false }
            if source.url == "https://docker.io" && source.source_type == SourceType::Docker));
        assert_eq!(sources_cmd(&["sources", "-d", "http://x"]).unwrap(), SourcesCmd::Delete("http://x".into()));
        assert_eq!(sources_cmd(&["sources", "-e", "-f"]).unwrap(), SourcesCmd::Edit { force: true });
        assert_eq!(sources_cmd(&["sources", "-c"]).unwrap(), SourcesCmd::Check);
        let both = sources_cmd(&["sources", "-a", "http://x", "-d", "http://y"]).unwrap_err();
        assert!(both.to_string().contains("more than one of"), "{both}");
        assert!(sources_cmd(&["sources", "-a", "http://x", "-t", "dsapi"]).unwrap_err().to_string().contains("dsapi"));
        assert!(matches!(sources_cmd(&["sources", "extra"]), Err(CliError::Usage(_))));
    }

    #[test]
    fn edited_sources_round_trip() {
        let list = vec![
            ImageSource::default_source(),
            ImageSource { url: "https://docker.io".into(), source_type: SourceType::Docker, insecure: true },
        ];
        let text = edit_text(&list);
        assert!(text.starts_with("https://images.smartos.org  imgapi\nhttps://docker.io           docker  insecure\n"));
        assert_eq!(parse_edited(&text).unwrap(), list);
        let edited = "http://a.example  # a comment\n\nhttp://b.example imgapi insecure\n";
        let got = parse_edited(edited).unwrap();
        assert_eq!(
            got[0],
            ImageSource { url: "http://a.example".into(), source_type: SourceType::Imgapi, insecure: false }
        );
        assert!(got[1].insecure);
        assert!(parse_edited("http://a ftp").is_err());
        assert!(parse_edited("http://a imgapi fast").unwrap_err().to_string().contains("unknown source option"));
    }

    fn rec(uuid: &str, origin: Option<&str>, clones: u64) -> ImageRecord {
        let mut m = json!({"uuid": uuid, "name": "n", "version": "1"});
        if let Some(o) = origin {
            m["origin"] = json!(o);
        }
        ImageRecord { manifest: m, zpool: "zones".into(), clones, source: None }
    }

    #[test]
    fn vacuum_deletes_leaves_first_and_keeps_what_instances_use() {
        // I1 <- I2 <- I3 (origins); I3 unused, so all three go, children first.
        let chain = [rec(I1, None, 1), rec(I2, Some(I1), 1), rec(I3, Some(I2), 0)];
        let order: Vec<&str> = unused_images(&chain).iter().map(|r| r.manifest["uuid"].as_str().unwrap()).collect();
        assert_eq!(order, [I3, I2, I1]);
        // An instance on I2 keeps I2 and its origin I1.
        let used = [rec(I1, None, 1), rec(I2, Some(I1), 2), rec(I3, Some(I2), 0)];
        let order: Vec<&str> = unused_images(&used).iter().map(|r| r.manifest["uuid"].as_str().unwrap()).collect();
        assert_eq!(order, [I3]);
    }

    #[test]
    fn vacuum_asks_first_and_dry_run_deletes_nothing() {
        let d = FakeDaemon::start(|req| match req.method.as_str() {
            "GET" => {
                let list = json!([{"manifest": {"uuid": I1, "name": "busybox", "version": "1.0"}, "zpool": "zones", "clones": 0},
                                  {"manifest": {"uuid": I2, "name": "debian", "version": "12"}, "zpool": "zones", "clones": 1}]);
                (200, list.to_string())
            }
            _ => (200, json!({"message": "deleted"}).to_string()),
        });
        let mut t = TestIo::for_daemon(&d);
        t.input = b"n\n".to_vec();
        assert_eq!(t.run(&["imgadm", "vacuum"]), 0, "{}", t.err());
        assert_eq!(
            t.out(),
            format!(
                "This will delete the following images:\n    {I1} (busybox@1.0)\nDelete this image? [y/N] Aborting\n"
            )
        );
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "vacuum", "-n", "-f"]), 0, "{}", t.err());
        assert_eq!(t.out(), format!("[dry-run] Deleted image {I1} (busybox@1.0)\n"));
        assert!(d.seen().iter().all(|r| r.method == "GET"), "a dry run deletes nothing");
        let mut t = TestIo::for_daemon(&d);
        t.input = b"y\n".to_vec();
        assert_eq!(t.run(&["imgadm", "vacuum"]), 0, "{}", t.err());
        assert!(t.out().ends_with(&format!("\nDeleted image {I1} (busybox@1.0)\n")), "{}", t.out());
        assert_eq!(d.seen().iter().filter(|r| r.method == "DELETE").count(), 1);
    }

    #[test]
    fn import_prints_the_daemons_lines_and_names_a_missing_image() {
        let d = FakeDaemon::start(|req| {
            if req.method == "GET" {
                return (404, json!({"kind": "NotFound", "message": "image is not installed"}).to_string());
            }
            let body: Value = serde_json::from_str(&req.body).unwrap();
            if body["image"] == I2 {
                let e = json!({"type": "error", "error": {"kind": "NotFound",
                    "message": format!("an active image \"{I2}\" was not found in image sources")}});
                return (200, format!("{e}\n"));
            }
            let lines = [
                json!({"type": "message", "message": format!("Importing {I1} (busybox@1.0) from \"http://x\"")}),
                json!({"type": "progress", "done": 5, "total": 10}),
                json!({"type": "message", "message": format!("Imported image {I1} (busybox@1.0)")}),
                json!({"type": "done", "image": {"manifest": {"uuid": I1}, "zpool": "zones", "clones": 0}}),
            ];
            (200, lines.iter().map(|l| format!("{l}\n")).collect())
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "-q", I1]), 0, "{}", t.err());
        assert_eq!(
            t.out(),
            format!("Importing {I1} (busybox@1.0) from \"http://x\"\nImported image {I1} (busybox@1.0)\n")
        );
        let body: Value = serde_json::from_str(&d.seen().last().unwrap().body).unwrap();
        assert_eq!(body, json!({"image": I1}));
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "import", "-S", "http://y", I2]), 1);
        assert_eq!(
            t.err(),
            format!("imgadm: error (ActiveImageNotFound): an active image \"{I2}\" was not found in image sources\n")
        );
        let body: Value = serde_json::from_str(&d.seen().last().unwrap().body).unwrap();
        assert_eq!(body["source"], "http://y");
    }

    #[test]
    fn sources_print_smartos_lines() {
        let d = FakeDaemon::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", _) => (200, json!([{"url": "https://images.smartos.org", "type": "imgapi"}]).to_string()),
            ("POST", _) => {
                let body: Value = serde_json::from_str(&req.body).unwrap();
                let added = body["url"] != "https://images.smartos.org";
                (200, json!({"added": added, "source": {"url": body["url"], "type": body["type"]}}).to_string())
            }
            _ => (200, json!({"deleted": []}).to_string()),
        });
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "sources"]), 0);
        assert_eq!(t.out(), "https://images.smartos.org\n");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "sources", "-v"]), 0);
        assert_eq!(
            t.out(),
            "URL                         TYPE    INSECURE\nhttps://images.smartos.org  imgapi  false\n"
        );
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "sources", "-a", "http://x", "-f"]), 0);
        assert_eq!(t.out(), "Added \"imgapi\" image source \"http://x\"\n");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "sources", "-a", "https://images.smartos.org"]), 0);
        assert_eq!(t.out(), "Already have \"imgapi\" image source \"https://images.smartos.org\", no change\n");
        let mut t = TestIo::for_daemon(&d);
        assert_eq!(t.run(&["imgadm", "sources", "-d", "http://nope"]), 0);
        assert_eq!(t.out(), "Do not have image source \"http://nope\", no change\n");
    }

    #[test]
    fn help_on_a_command() {
        let mut t = TestIo::new();
        assert_eq!(t.run(&["imgadm", "help", "sources"]), 0);
        assert!(t.out().starts_with("Usage: imgadm sources [-v] [-j]\n       imgadm sources -a <url>"), "{}", t.out());
        assert!(t.out().contains("--add-docker-hub"), "{}", t.out());
        let mut t = TestIo::new();
        assert_eq!(t.run(&["imgadm", "help", "available"]), 0, "an alias");
        assert!(t.out().starts_with("Usage: imgadm avail"), "{}", t.out());
        let mut t = TestIo::new();
        assert_eq!(t.run(&["imgadm", "help", "frob"]), 1);
    }
}
