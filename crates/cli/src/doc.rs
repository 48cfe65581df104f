//! The command definitions every tool is documented from, and what renders
//! them: `--help` text, man pages (roff), and the data shell completion
//! works from ([`crate::complete`]).
//!
//! Each tool has one [`ToolDoc`] ([`crate::pages`]): its commands with their
//! synopses, options and descriptions, its global options, and the
//! sections a man page has (exit status, environment, files, examples).
//! The parsers take their options from the same tables
//! ([`CommandDoc::opts`]), so an option cannot be accepted without being
//! documented, nor documented without being accepted:
//!
//! ```text
//!   pages::VMADM ──> vmadm::parse_args (options)
//!        │
//!        ├──> render_help ──> vmadm --help
//!        ├──> render_man ───> zonevisor man vmadm ──> vmadm.8
//!        └──> complete ─────> zonevisor __complete (bash, zsh)
//! ```
//!
//! `zonevisord`'s options are its clap definition
//! (`zonevisor_daemon::Config`): [`OptLine::from_clap`] turns them into the
//! same lines, and the rest of its page is [`crate::pages::ZONEVISORD`].

use std::fmt::Write as _;

use crate::args::Opt;

/// The version every tool prints: the workspace's, with the commit it was
/// built from when the build had git (`0.1.0 (af183ac)`).
pub const VERSION: &str = env!("ZONEVISOR_VERSION");

/// What an option's value or an operand is, for completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Anything: nothing to offer.
    Any,
    /// A file name (the shell completes it).
    File,
    /// A comma-separated list of `vmadm list` fields.
    VmFields,
    /// A comma-separated list of image fields.
    ImageFields,
    /// A signal name.
    Signal,
    /// A comma-separated list of `vmadm info` types.
    InfoTypes,
    /// An instance's UUID (typing an alias offers its UUID).
    Instance,
    /// A running instance's UUID.
    RunningInstance,
    /// An installed image's UUID.
    Image,
    /// A `vmadm` filter (`field=value`): fields, then aliases, UUIDs, states...
    VmFilter,
    /// An `imgadm` filter (`field=value`).
    ImageFilter,
    /// A `property=value` of an update.
    Property,
    /// One of these words.
    Word(&'static [&'static str]),
    /// A brand.
    Brand,
    /// The words of a command to run in a zone, or of a firewall rule
    /// (nothing to offer).
    Words,
    /// A nic tag's name.
    NicTag,
    /// Nic tag names, one after another (`nictagadm exists`).
    NicTags,
    /// A host link, by name (from `/sys/class/net`).
    Link,
    /// A firewall rule's UUID.
    FwRule,
    /// Firewall rule UUIDs, one after another (`fwadm delete`).
    FwRules,
    /// A comma-separated list of firewall rule fields.
    FwFields,
}

impl Kind {
    /// Whether an operand of this kind may be given again and again
    /// (`list`'s filters, `update`'s properties).
    pub fn repeats(self) -> bool {
        matches!(
            self,
            Kind::VmFilter
                | Kind::ImageFilter
                | Kind::Property
                | Kind::InfoTypes
                | Kind::Words
                | Kind::NicTags
                | Kind::FwRules
        )
    }
}

/// One option, as the parser knows it and as it is documented.
#[derive(Clone, Copy, Debug)]
pub struct OptDoc {
    /// What the parser matches.
    pub opt: Opt,
    /// The value's name in synopses (`FILE`), empty for a flag.
    pub value: &'static str,
    /// What the value is, for completion.
    pub kind: Kind,
    /// One sentence.
    pub help: &'static str,
}

/// An option without a value.
pub const fn flag(name: &'static str, short: Option<char>, long: Option<&'static str>, help: &'static str) -> OptDoc {
    OptDoc { opt: crate::args::flag(name, short, long), value: "", kind: Kind::Any, help }
}

/// An option with a value named `value`, of kind `kind`.
pub const fn valued(
    name: &'static str,
    short: Option<char>,
    long: Option<&'static str>,
    value: &'static str,
    kind: Kind,
    help: &'static str,
) -> OptDoc {
    OptDoc { opt: crate::args::valued(name, short, long), value, kind, help }
}

/// One command of a tool (`vmadm list`).
#[derive(Clone, Copy, Debug)]
pub struct CommandDoc {
    /// Its name.
    pub name: &'static str,
    /// Other names it answers to (`boot` for `start`).
    pub aliases: &'static [&'static str],
    /// Its usage lines, after the tool's name (`list [-p] ...`).
    pub usage: &'static [&'static str],
    /// One line for `--help`.
    pub summary: &'static str,
    /// Paragraphs for the man page (the summary when empty).
    pub description: &'static [&'static str],
    /// Its options, besides the tool's global ones.
    pub options: &'static [OptDoc],
    /// What its positional arguments are, in order; the last repeats when
    /// its kind does.
    pub operands: &'static [Kind],
}

impl CommandDoc {
    /// The options the parser accepts for this command (besides
    /// `--socket` and `-h`/`--help`, which it always adds).
    pub fn opts(&self) -> Vec<Opt> {
        self.options.iter().map(|o| o.opt).collect()
    }

    /// What positional argument number `index` (from 0) is.
    pub fn operand(&self, index: usize) -> Option<Kind> {
        match self.operands.get(index) {
            Some(k) => Some(*k),
            None => self.operands.last().copied().filter(|k| k.repeats()),
        }
    }
}

/// A man page section of prose (`FILTERS`), also shown by `--help` when
/// `in_help`.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    /// The heading, in capitals.
    pub title: &'static str,
    /// Paragraphs; a paragraph starting with a space is shown verbatim
    /// (an example).
    pub paragraphs: &'static [&'static str],
    /// Whether `--help` shows it too.
    pub in_help: bool,
}

/// Everything a tool says about itself.
#[derive(Clone, Copy, Debug)]
pub struct ToolDoc {
    /// The command's name.
    pub name: &'static str,
    /// The man page's section (1: users, 8: administration).
    pub section: u8,
    /// The man page's NAME line, after `name -`.
    pub summary: &'static str,
    /// Usage lines after the name when the tool has no commands.
    pub usage: &'static [&'static str],
    /// Paragraphs of DESCRIPTION.
    pub description: &'static [&'static str],
    /// Its commands (empty for a tool without commands).
    pub commands: &'static [CommandDoc],
    /// Options every command takes (or the tool's options).
    pub options: &'static [OptDoc],
    /// A tool without commands: what its positional arguments are.
    pub operands: &'static [Kind],
    /// More sections (FILTERS, EXAMPLES...).
    pub sections: &'static [Section],
    /// Exit statuses and their meanings.
    pub exit_status: &'static [(&'static str, &'static str)],
    /// Environment variables and their meanings.
    pub environment: &'static [(&'static str, &'static str)],
    /// Files and what they are.
    pub files: &'static [(&'static str, &'static str)],
    /// Related pages (`imgadm(8)`).
    pub see_also: &'static [&'static str],
}

impl ToolDoc {
    /// The command called `name` (or one of its aliases).
    pub fn command(&self, name: &str) -> Option<&'static CommandDoc> {
        self.commands.iter().find(|c| c.name == name || c.aliases.contains(&name))
    }

    /// The parser's options for command `name` (none for an unknown one).
    pub fn opts(&self, name: &str) -> Vec<Opt> {
        self.command(name).map(CommandDoc::opts).unwrap_or_default()
    }

    /// The parser's options for a tool without commands: its own, without
    /// `--socket` and `-h`/`--help` (the parser always adds those) and
    /// `--version` (which only the first argument may be).
    pub fn tool_opts(&self) -> Vec<Opt> {
        self.options.iter().map(|o| o.opt).filter(|o| !matches!(o.name, "socket" | "help" | "version")).collect()
    }

    /// The global options as lines.
    pub fn option_lines(&self) -> Vec<OptLine> {
        self.options.iter().map(OptLine::from_doc).collect()
    }
}

/// One option as a help or man page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptLine {
    /// `-f`.
    pub short: Option<char>,
    /// `--file`.
    pub long: Option<String>,
    /// `FILE`, when it takes a value.
    pub value: Option<String>,
    /// What it does.
    pub help: String,
}

impl OptLine {
    /// The line for a table entry.
    pub fn from_doc(o: &OptDoc) -> OptLine {
        OptLine {
            short: o.opt.short,
            long: o.opt.long.map(str::to_string),
            value: (!o.value.is_empty()).then(|| o.value.to_string()),
            help: o.help.to_string(),
        }
    }

    /// The lines for a clap command's options (help and version included),
    /// with their defaults and possible values in the help text.
    pub fn from_clap(cmd: &clap::Command) -> Vec<OptLine> {
        let mut cmd = cmd.clone();
        cmd.build();
        let mut lines = Vec::new();
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || arg.is_positional() {
                continue;
            }
            let takes_value = arg.get_action().takes_values();
            let value = takes_value.then(|| {
                arg.get_value_names()
                    .and_then(|n| n.first())
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
            });
            // clap drops a doc comment's final period: put it back.
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default().trim().to_string();
            if !help.is_empty() && !help.ends_with(['.', '!', '?']) {
                help.push('.');
            }
            if takes_value {
                let possible: Vec<String> =
                    arg.get_possible_values().iter().map(|p| p.get_name().to_string()).collect();
                if !possible.is_empty() && !possible.iter().all(|p| help.contains(p.as_str())) {
                    let _ = write!(help, " One of: {}.", possible.join(", "));
                }
                let defaults: Vec<String> =
                    arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
                if !defaults.is_empty() && !help.to_lowercase().contains("default") {
                    let _ = write!(help, " Default: {}.", defaults.join(","));
                }
            }
            lines.push(OptLine {
                short: arg.get_short(),
                long: arg.get_long().map(str::to_string),
                value,
                help: help.trim().to_string(),
            });
        }
        lines
    }

    /// `-f, --file FILE` (plain text).
    pub fn flags(&self) -> String {
        let mut names = Vec::new();
        if let Some(c) = self.short {
            names.push(format!("-{c}"));
        }
        if let Some(l) = &self.long {
            names.push(format!("--{l}"));
        }
        let mut s = names.join(", ");
        if let Some(v) = &self.value {
            s.push(' ');
            s.push_str(v);
        }
        s
    }

    /// The same in roff: names bold, the value italic.
    fn roff_flags(&self) -> String {
        let mut names = Vec::new();
        if let Some(c) = self.short {
            names.push(format!("\\fB{}\\fR", roff_escape(&format!("-{c}"))));
        }
        if let Some(l) = &self.long {
            names.push(format!("\\fB{}\\fR", roff_escape(&format!("--{l}"))));
        }
        let mut s = names.join(", ");
        if let Some(v) = &self.value {
            let _ = write!(s, " \\fI{}\\fR", roff_escape(v));
        }
        s
    }
}

/// Wraps `text` to `width` columns, each line starting with `indent`.
pub fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.chars().count() > width {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

/// Width of `--help` text.
const HELP_WIDTH: usize = 79;

fn help_options(out: &mut String, lines: &[OptLine], indent: &str) {
    let width = lines.iter().map(|l| l.flags().chars().count()).max().unwrap_or(0).min(24);
    for l in lines {
        let flags = l.flags();
        let pad = indent.len() + width + 2;
        if flags.chars().count() > width {
            let _ = writeln!(out, "{indent}{flags}");
            out.push_str(&wrap(&l.help, &" ".repeat(pad), HELP_WIDTH));
        } else {
            let first = format!("{indent}{flags:width$}  ");
            let wrapped = wrap(&l.help, &" ".repeat(pad), HELP_WIDTH);
            let mut rest = wrapped.trim_start().to_string();
            if rest.is_empty() {
                rest.push('\n');
            }
            out.push_str(&first);
            out.push_str(&rest);
        }
    }
}

/// The tool's `--help` text.
pub fn render_help(tool: &ToolDoc) -> String {
    let mut out = String::new();
    if tool.commands.is_empty() {
        for (i, u) in tool.usage.iter().enumerate() {
            let lead = if i == 0 { "Usage:" } else { "      " };
            let _ = writeln!(out, "{lead} {} {u}", tool.name);
        }
    } else {
        let _ = writeln!(out, "Usage: {} <command> [options]", tool.name);
    }
    for p in tool.description {
        out.push('\n');
        out.push_str(&wrap(p, "", HELP_WIDTH));
    }
    if !tool.commands.is_empty() {
        out.push_str("\nCommands:\n");
        for c in tool.commands {
            for (i, u) in c.usage.iter().enumerate() {
                let lead = if i == 0 { "" } else { " -or- " };
                let _ = writeln!(out, "    {lead}{u}");
            }
            out.push_str(&wrap(c.summary, "        ", HELP_WIDTH));
            let lines: Vec<OptLine> = c.options.iter().map(OptLine::from_doc).collect();
            help_options(&mut out, &lines, "          ");
        }
        let aliases: Vec<String> =
            tool.commands.iter().flat_map(|c| c.aliases.iter().map(move |a| format!("{a}={}", c.name))).collect();
        if !aliases.is_empty() {
            out.push('\n');
            out.push_str(&wrap(&format!("Aliases: {}.", aliases.join(", ")), "", HELP_WIDTH));
        }
    }
    for s in tool.sections.iter().filter(|s| s.in_help) {
        out.push('\n');
        let _ = writeln!(out, "{}:", title_case(s.title));
        for p in s.paragraphs {
            if p.starts_with(' ') {
                let _ = writeln!(out, "   {p}");
            } else {
                out.push_str(&wrap(p, "    ", HELP_WIDTH));
            }
        }
    }
    out.push('\n');
    out.push_str(if tool.commands.is_empty() { "Options:\n" } else { "Global options:\n" });
    help_options(&mut out, &tool.option_lines(), "    ");
    if !tool.exit_status.is_empty() {
        let codes: Vec<String> = tool.exit_status.iter().map(|(c, m)| format!("{c} {m}")).collect();
        out.push('\n');
        out.push_str(&wrap(&format!("Exit status: {}.", codes.join(", ")), "", HELP_WIDTH));
    }
    let _ = writeln!(out, "\nSee {}({}) for more.", tool.name, tool.section);
    out
}

fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Escapes text for roff: backslashes, hyphens (so they stay ASCII
/// hyphen-minus when copied), and a leading `.` or `'`.
pub fn roff_escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => s.push_str("\\e"),
            '-' => s.push_str("\\-"),
            _ => s.push(c),
        }
    }
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

/// A synopsis or usage line in roff: the words that are literal (the
/// tool, its command, option names) bold, the placeholders italic.
fn roff_usage(line: &str) -> String {
    let mut out = Vec::new();
    for word in line.split(' ') {
        let mut w = String::new();
        let mut token = String::new();
        let flush = |token: &mut String, w: &mut String| {
            if token.is_empty() {
                return;
            }
            let t = std::mem::take(token);
            let is_placeholder = t.starts_with('<')
                || t.chars().any(|c| c.is_ascii_lowercase()) && t.contains('=')
                || t.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c == '.' || c == ',')
                || t == "..."
                || t.ends_with(",...");
            if t.starts_with('-') || !is_placeholder {
                let _ = write!(w, "\\fB{}\\fR", roff_escape(&t));
            } else {
                let _ = write!(w, "\\fI{}\\fR", roff_escape(&t));
            }
        };
        for c in word.chars() {
            match c {
                '[' | ']' | '|' => {
                    flush(&mut token, &mut w);
                    w.push(c);
                }
                _ => token.push(c),
            }
        }
        flush(&mut token, &mut w);
        out.push(w);
    }
    out.join(" ")
}

fn man_header(out: &mut String, name: &str, section: u8, summary: &str) {
    let _ = writeln!(out, ".\\\" Generated by `zonevisor man {name}` from the tool's command definitions.");
    let _ = writeln!(
        out,
        ".TH {} {section} \"\" \"zonevisor {}\" \"{}\"",
        name.to_uppercase(),
        VERSION,
        if section == 1 { "User Commands" } else { "System Administration" }
    );
    let _ = writeln!(out, ".SH NAME\n{} \\- {}", roff_escape(name), roff_escape(summary));
}

/// Paragraphs of prose; `nested` ones are in a `.TP` body and keep its
/// indentation.
fn man_paragraphs(out: &mut String, paragraphs: &[&str], nested: bool) {
    let mut first = true;
    let break_ = if nested { ".IP\n" } else { ".PP\n" };
    for p in paragraphs {
        if p.starts_with(' ') {
            let _ = writeln!(out, "{break_}.RS 4\n.nf\n{}\n.fi\n.RE", roff_escape(p.trim_start()));
        } else {
            if !first {
                out.push_str(break_);
            }
            let _ = writeln!(out, "{}", roff_escape(p));
        }
        first = false;
    }
}

fn man_options(out: &mut String, lines: &[OptLine]) {
    for l in lines {
        let _ = writeln!(out, ".TP\n{}\n{}", l.roff_flags(), roff_escape(&l.help));
    }
}

fn man_pairs(out: &mut String, title: &str, pairs: &[(&str, &str)]) {
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(out, ".SH {title}");
    for (k, v) in pairs {
        let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_escape(k), roff_escape(v));
    }
}

/// The tool's man page in roff (`man -l` renders it). `extra_options` are
/// options known only at run time (the daemon's, from clap), listed after
/// the table's.
pub fn render_man(tool: &ToolDoc, extra_options: &[OptLine]) -> String {
    let mut out = String::new();
    man_header(&mut out, tool.name, tool.section, tool.summary);
    out.push_str(".SH SYNOPSIS\n");
    let mut synopses: Vec<String> = Vec::new();
    if tool.commands.is_empty() {
        synopses.extend(tool.usage.iter().map(|u| format!("{} {u}", tool.name)));
    } else {
        for c in tool.commands {
            synopses.extend(c.usage.iter().map(|u| format!("{} {u}", tool.name)));
        }
    }
    if synopses.is_empty() {
        let mut line = tool.name.to_string();
        for o in extra_options {
            let name = o.long.as_ref().map(|l| format!("--{l}")).or(o.short.map(|c| format!("-{c}")));
            if let Some(name) = name {
                match &o.value {
                    Some(v) => {
                        let _ = write!(line, " [{name} {v}]");
                    }
                    None => {
                        let _ = write!(line, " [{name}]");
                    }
                }
            }
        }
        synopses.push(line);
    }
    for (i, s) in synopses.iter().enumerate() {
        if i > 0 {
            out.push_str(".br\n");
        }
        let _ = writeln!(out, "{}", roff_usage(s));
    }
    out.push_str(".SH DESCRIPTION\n");
    man_paragraphs(&mut out, tool.description, false);
    if !tool.commands.is_empty() {
        out.push_str(".SH COMMANDS\n");
        for c in tool.commands {
            out.push_str(".TP\n");
            for (i, u) in c.usage.iter().enumerate() {
                if i > 0 {
                    out.push_str(".TQ\n");
                }
                let _ = writeln!(out, "{}", roff_usage(u));
            }
            let description: &[&str] = if c.description.is_empty() { &[c.summary] } else { c.description };
            man_paragraphs(&mut out, description, true);
            if !c.aliases.is_empty() {
                let names: Vec<String> = c.aliases.iter().map(|a| format!("\\fB{}\\fR", roff_escape(a))).collect();
                let _ = writeln!(out, ".IP\nAlso called {}.", names.join(", "));
            }
            if !c.options.is_empty() {
                out.push_str(".RS\n");
                let lines: Vec<OptLine> = c.options.iter().map(OptLine::from_doc).collect();
                man_options(&mut out, &lines);
                out.push_str(".RE\n");
            }
        }
    }
    let mut options = tool.option_lines();
    options.extend(extra_options.iter().cloned());
    if !options.is_empty() {
        let _ = writeln!(out, ".SH {}", if tool.commands.is_empty() { "OPTIONS" } else { "GLOBAL OPTIONS" });
        man_options(&mut out, &options);
    }
    for s in tool.sections {
        let _ = writeln!(out, ".SH {}", s.title);
        man_paragraphs(&mut out, s.paragraphs, false);
    }
    man_pairs(&mut out, "EXIT STATUS", tool.exit_status);
    man_pairs(&mut out, "ENVIRONMENT", tool.environment);
    man_pairs(&mut out, "FILES", tool.files);
    if !tool.see_also.is_empty() {
        out.push_str(".SH SEE ALSO\n");
        let refs: Vec<String> = tool
            .see_also
            .iter()
            .map(|r| match r.split_once('(') {
                Some((n, s)) => format!("\\fB{}\\fR({s}", roff_escape(n)),
                None => roff_escape(r),
            })
            .collect();
        let _ = writeln!(out, "{}", refs.join(",\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes_what_roff_would_eat() {
        assert_eq!(roff_escape("--socket"), "\\-\\-socket");
        assert_eq!(roff_escape(".hidden"), "\\&.hidden");
        assert_eq!(roff_escape("'quoted"), "\\&'quoted");
        assert_eq!(roff_escape("a\\b"), "a\\eb");
    }

    #[test]
    fn usage_lines_mark_literals_and_placeholders() {
        assert_eq!(roff_usage("stop <uuid> [-F]"), "\\fBstop\\fR \\fI<uuid>\\fR [\\fB\\-F\\fR]");
        assert_eq!(roff_usage("[-j|-1]"), "[\\fB\\-j\\fR|\\fB\\-1\\fR]");
        assert_eq!(roff_usage("[field=value ...]"), "[\\fIfield=value\\fR \\fI\\&...\\fR]");
        assert_eq!(roff_usage("-s SIGNAL"), "\\fB\\-s\\fR \\fISIGNAL\\fR");
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        let text = "one two three four five six seven";
        assert_eq!(wrap(text, "  ", 16), "  one two three\n  four five six\n  seven\n");
        assert_eq!(wrap("", "  ", 16), "");
    }

    #[test]
    fn clap_options_become_lines() {
        let cmd = clap::Command::new("d")
            .version("1")
            .arg(clap::Arg::new("root").long("root").help("The root.").default_value("/var/lib/x"))
            .arg(clap::Arg::new("backend").long("backend").help("Backend.").value_parser(["a", "b"]))
            .arg(clap::Arg::new("mounted").long("mounted").action(clap::ArgAction::SetTrue).help("Mounted."));
        let lines = OptLine::from_clap(&cmd);
        let root = lines.iter().find(|l| l.long.as_deref() == Some("root")).unwrap();
        assert_eq!(root.flags(), "--root ROOT");
        assert_eq!(root.help, "The root. Default: /var/lib/x.");
        let backend = lines.iter().find(|l| l.long.as_deref() == Some("backend")).unwrap();
        assert_eq!(backend.help, "Backend. One of: a, b.");
        let cmd = cmd.arg(clap::Arg::new("size").long("size").help("Size (default 1G), a or b").default_value("1G"));
        let size = OptLine::from_clap(&cmd).into_iter().find(|l| l.long.as_deref() == Some("size")).unwrap();
        assert_eq!(size.help, "Size (default 1G), a or b.");
        let mounted = lines.iter().find(|l| l.long.as_deref() == Some("mounted")).unwrap();
        assert_eq!((mounted.flags().as_str(), mounted.value.is_none()), ("--mounted", true));
        assert!(lines.iter().any(|l| l.long.as_deref() == Some("version")));
        assert!(lines.iter().any(|l| l.long.as_deref() == Some("help")));
    }
}
