//! Shell completion for the tools: the bash and zsh scripts
//! (`zonevisor completion bash|zsh`), and the engine they call,
//! `<tool> __complete ...`, which answers from the command definitions
//! ([`crate::pages`]) and, for UUIDs, aliases and images, from the daemon.
//!
//! The scripts are thin: they hand the words to the same binary the user
//! is completing for and show what it prints, so commands, options and
//! their values can never differ from what the parser accepts.
//!
//! ```text
//!  bash: _zonevisor ── vmadm __complete bash -- "<line up to the cursor>"
//!  zsh:  _zonevisor ── vmadm __complete zsh <current> -- <words...>
//!                          │ splits the words, walks them with the tool's table
//!                          │ (global options, command, its options and operands)
//!                          v
//!            first line: plain | nospace | files
//!            then one candidate a line (zsh: candidate TAB description)
//! ```
//!
//! Where a UUID goes, a typed prefix of an alias offers that VM's UUID
//! (`vmadm start web<TAB>` becomes the UUID of `web01`); `alias=` in a
//! filter completes aliases, `uuid=` UUIDs.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::doc::{CommandDoc, Kind, OptDoc, ToolDoc};
use crate::pages;

/// What the shell does with the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Offer them; a space follows a completed word.
    Plain,
    /// Offer them without the space (`alias=`, `uuid,`).
    NoSpace,
    /// Complete file names instead (the shell does).
    Files,
}

/// What to offer at the cursor.
#[derive(Debug, PartialEq, Eq)]
pub struct Completion {
    /// How.
    pub mode: Mode,
    /// Candidates and their descriptions.
    pub candidates: Vec<(String, String)>,
}

impl Completion {
    fn none() -> Self {
        Completion { mode: Mode::Plain, candidates: Vec::new() }
    }
    fn files() -> Self {
        Completion { mode: Mode::Files, candidates: Vec::new() }
    }
}

/// A VM as completion needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    /// Its UUID.
    pub uuid: String,
    /// Its alias (may be empty).
    pub alias: String,
    /// Its state.
    pub state: String,
}

/// An installed image as completion needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Its UUID.
    pub uuid: String,
    /// `name@version`.
    pub name: String,
}

/// A firewall rule as completion needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Its UUID.
    pub uuid: String,
    /// Its text.
    pub rule: String,
}

/// Where VMs, images, nic tags and firewall rules come from: the daemon,
/// or a test's list.
pub trait Source {
    /// The VMs (none when the daemon cannot be reached).
    fn vms(&self, socket: Option<&str>) -> Vec<Vm>;
    /// The installed images.
    fn images(&self, socket: Option<&str>) -> Vec<Image>;
    /// The nic tags' names.
    fn nic_tags(&self, socket: Option<&str>) -> Vec<String>;
    /// The firewall rules.
    fn fw_rules(&self, socket: Option<&str>) -> Vec<Rule>;
    /// The host's links (network interfaces), by name.
    fn links(&self) -> Vec<String>;
}

/// The daemon named by `--socket` on the command line being completed,
/// else `ZONEVISOR_SOCKET`, else the default; a completion waits at most
/// two seconds for it.
pub struct Daemon {
    /// `ZONEVISOR_SOCKET`.
    pub socket_env: Option<String>,
}

impl Daemon {
    fn client(&self, socket: Option<&str>) -> zonevisor_api::Client {
        zonevisor_api::Client::new(crate::socket_for(socket, self.socket_env.as_deref()))
            .with_timeout(Duration::from_secs(2))
    }
}

fn str_of(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_string()
}

impl Source for Daemon {
    fn vms(&self, socket: Option<&str>) -> Vec<Vm> {
        let fields = ["uuid".to_string(), "alias".to_string(), "state".to_string()];
        let Ok(list) = self.client(socket).list_vms(Some(&fields)) else { return Vec::new() };
        list.iter()
            .map(|vm| Vm {
                uuid: str_of(vm.get("uuid")),
                alias: str_of(vm.get("alias")),
                state: str_of(vm.get("state")),
            })
            .filter(|vm| !vm.uuid.is_empty())
            .collect()
    }

    fn images(&self, socket: Option<&str>) -> Vec<Image> {
        let Ok(list) = self.client(socket).list_images() else { return Vec::new() };
        list.iter()
            .map(|img| Image {
                uuid: str_of(img.manifest.get("uuid")),
                name: format!("{}@{}", str_of(img.manifest.get("name")), str_of(img.manifest.get("version"))),
            })
            .filter(|img| !img.uuid.is_empty())
            .collect()
    }

    fn nic_tags(&self, socket: Option<&str>) -> Vec<String> {
        let Ok(tags) = self.client(socket).list_nic_tags() else { return Vec::new() };
        tags.into_iter().map(|t| t.name).collect()
    }

    fn fw_rules(&self, socket: Option<&str>) -> Vec<Rule> {
        let Ok(rules) = self.client(socket).list_fw_rules() else { return Vec::new() };
        rules.into_iter().map(|r| Rule { uuid: r.uuid, rule: r.rule }).collect()
    }

    fn links(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
        let mut links: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        links.sort();
        links
    }
}

/// Fields of a firewall rule that `fwadm list -o` takes.
fn fw_fields() -> Vec<&'static str> {
    crate::fwadm::FIELDS.iter().map(|(k, _)| *k).collect()
}

/// Fields of an image that `imgadm list -o`/`-s` and filters take.
const IMAGE_FIELDS: &[&str] = &[
    "uuid",
    "name",
    "version",
    "os",
    "type",
    "pub",
    "published",
    "published_at",
    "published_date",
    "description",
    "owner",
    "public",
    "state",
    "clones",
    "zpool",
    "size",
];

/// VM states, for `state=`.
const STATES: &[&str] = &["running", "stopped", "provisioning", "stopping", "failed"];
/// Brands, for `brand=` and `validate update`.
const BRANDS: &[&str] = &["lx", "kvm", "bhyve"];

/// Candidates among `words` that start with `cur`.
fn words(words: impl IntoIterator<Item = impl Into<String>>, cur: &str) -> Vec<(String, String)> {
    words.into_iter().map(Into::into).filter(|w: &String| w.starts_with(cur)).map(|w| (w, String::new())).collect()
}

/// A comma-separated list: completes the element after the last comma.
fn comma_list(all: &[&str], cur: &str) -> Completion {
    let (done, last) = match cur.rfind(',') {
        Some(i) => (&cur[..=i], &cur[i + 1..]),
        None => ("", cur),
    };
    let last = last.strip_prefix('-').map(|l| (l, "-")).unwrap_or((last, ""));
    let candidates =
        all.iter().filter(|f| f.starts_with(last.0)).map(|f| (format!("{done}{}{f}", last.1), String::new())).collect();
    Completion { mode: Mode::NoSpace, candidates }
}

/// UUIDs of `vms` that start with `cur`, or whose alias does (described by alias).
fn instances(vms: Vec<Vm>, cur: &str, running_only: bool) -> Vec<(String, String)> {
    let vms: Vec<Vm> = vms.into_iter().filter(|vm| !running_only || vm.state == "running").collect();
    let by_uuid: Vec<&Vm> = vms.iter().filter(|vm| vm.uuid.starts_with(cur)).collect();
    let chosen: Vec<&Vm> = if by_uuid.is_empty() && !cur.is_empty() {
        vms.iter().filter(|vm| vm.alias.starts_with(cur)).collect()
    } else {
        by_uuid
    };
    chosen.into_iter().map(|vm| (vm.uuid.clone(), vm.alias.clone())).collect()
}

fn filter_values(tool: &ToolDoc, key: &str, value: &str, socket: Option<&str>, src: &dyn Source) -> Vec<String> {
    match (tool.name, key) {
        ("vmadm", "alias") => src.vms(socket).into_iter().map(|vm| vm.alias).filter(|a| !a.is_empty()).collect(),
        ("vmadm", "uuid") => src.vms(socket).into_iter().map(|vm| vm.uuid).collect(),
        ("vmadm", "state") => STATES.iter().map(|s| s.to_string()).collect(),
        ("vmadm", "brand") => BRANDS.iter().map(|s| s.to_string()).collect(),
        ("imgadm", "uuid") => src.images(socket).into_iter().map(|i| i.uuid).collect(),
        ("imgadm", "name") => {
            src.images(socket).into_iter().filter_map(|i| i.name.split('@').next().map(str::to_string)).collect()
        }
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|v| v.starts_with(value))
    .collect()
}

/// Completes a value or operand of kind `kind` at `cur`.
fn complete_kind(tool: &ToolDoc, kind: Kind, cur: &str, socket: Option<&str>, src: &dyn Source) -> Completion {
    let plain = |candidates| Completion { mode: Mode::Plain, candidates };
    match kind {
        Kind::Any | Kind::Words | Kind::Property => Completion::none(),
        Kind::File => Completion::files(),
        Kind::VmFields => {
            let fields: Vec<&str> = crate::vmadm::LIST_FIELDS.iter().map(|(k, _, _)| *k).collect();
            comma_list(&fields, cur)
        }
        Kind::ImageFields => comma_list(IMAGE_FIELDS, cur),
        Kind::InfoTypes => {
            let types: Vec<&str> = crate::vmadm::INFO_TYPES.iter().map(|(k, _)| *k).collect();
            comma_list(&types, cur)
        }
        Kind::Signal => plain(words(crate::vmadm::SIGNALS.iter().copied(), &cur.to_ascii_uppercase())),
        Kind::Word(list) => plain(words(list.iter().copied(), cur)),
        Kind::Brand => plain(words(BRANDS.iter().copied(), cur)),
        Kind::NicTag | Kind::NicTags => plain(words(src.nic_tags(socket), cur)),
        Kind::Link => plain(words(src.links(), cur)),
        Kind::FwRule | Kind::FwRules => {
            let rules = src.fw_rules(socket);
            plain(rules.into_iter().filter(|r| r.uuid.starts_with(cur)).map(|r| (r.uuid, r.rule)).collect())
        }
        Kind::FwFields => comma_list(&fw_fields(), cur),
        Kind::Instance => plain(instances(src.vms(socket), cur, false)),
        Kind::RunningInstance => plain(instances(src.vms(socket), cur, true)),
        Kind::Image => {
            let images = src.images(socket);
            let by_uuid: Vec<&Image> = images.iter().filter(|i| i.uuid.starts_with(cur)).collect();
            let chosen = if by_uuid.is_empty() && !cur.is_empty() {
                images.iter().filter(|i| i.name.starts_with(cur)).collect()
            } else {
                by_uuid
            };
            plain(chosen.into_iter().map(|i| (i.uuid.clone(), i.name.clone())).collect())
        }
        Kind::VmFilter | Kind::ImageFilter => match cur.split_once('=') {
            Some((key, value)) => {
                let value = value.strip_prefix('~').unwrap_or(value);
                let tilde = if cur[key.len() + 1..].starts_with('~') { "~" } else { "" };
                let values = filter_values(tool, key, value, socket, src);
                plain(values.into_iter().map(|v| (format!("{key}={tilde}{v}"), String::new())).collect())
            }
            None => {
                let keys: Vec<String> = if kind == Kind::VmFilter {
                    let mut k: Vec<String> = crate::vmadm::LIST_FIELDS.iter().map(|(k, _, _)| k.to_string()).collect();
                    k.extend(["tags.", "customer_metadata.", "internal_metadata.", "nics.*."].map(str::to_string));
                    k
                } else {
                    IMAGE_FIELDS.iter().map(|k| k.to_string()).collect()
                };
                let candidates = keys
                    .into_iter()
                    .filter(|k| k.starts_with(cur))
                    .map(|k| if k.ends_with('.') { (k, String::new()) } else { (format!("{k}="), String::new()) })
                    .collect();
                Completion { mode: Mode::NoSpace, candidates }
            }
        },
    }
}

/// Option names (`-f`, `--file`) of `opts`, those that start with `cur`.
fn option_names(opts: &[OptDoc], cur: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for o in opts {
        if let Some(l) = o.opt.long {
            out.push((format!("--{l}"), o.help.to_string()));
        }
        if let Some(c) = o.opt.short {
            out.push((format!("-{c}"), o.help.to_string()));
        }
    }
    out.retain(|(n, _)| n.starts_with(cur));
    out
}

/// What the walk over the words before the cursor found.
struct Walk {
    /// The option whose value the cursor is on.
    value_of: Option<OptDoc>,
    /// Positional arguments before the cursor.
    positional: usize,
    /// `--` was given: no more options.
    dashes: bool,
    /// `--socket`'s value, if given.
    socket: Option<String>,
}

/// Walks `words` (the command's arguments before the cursor) with `opts`.
fn walk(words: &[String], opts: &[OptDoc]) -> Walk {
    let mut w = Walk { value_of: None, positional: 0, dashes: false, socket: None };
    let find_long = |n: &str| opts.iter().find(|o| o.opt.long == Some(n)).copied();
    let find_short = |c: char| opts.iter().find(|o| o.opt.short == Some(c)).copied();
    for word in words {
        if let Some(o) = w.value_of.take() {
            if o.opt.name == "socket" {
                w.socket = Some(word.clone());
            }
            continue;
        }
        if w.dashes || word == "-" || !word.starts_with('-') {
            w.positional += 1;
            continue;
        }
        if word == "--" {
            w.dashes = true;
            continue;
        }
        if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some(("socket", v)) => w.socket = Some(v.to_string()),
                Some(_) => {}
                None => w.value_of = find_long(long).filter(|o| o.opt.takes_value),
            }
            continue;
        }
        // A cluster (`-pH`, `-ouuid`): a valued option takes the rest, or the next word.
        for (i, c) in word[1..].char_indices() {
            if let Some(o) = find_short(c).filter(|o| o.opt.takes_value) {
                if i + c.len_utf8() == word.len() - 1 {
                    w.value_of = Some(o);
                }
                break;
            }
        }
    }
    w
}

/// Completes the word at `cword` of `words` (`words[0]` is the tool as
/// typed: `vmadm`, `/usr/local/bin/zlogin` or `zonevisor`).
pub fn complete(words: &[String], cword: usize, src: &dyn Source) -> Completion {
    let Some(first) = words.first() else { return Completion::none() };
    let cur = words.get(cword).map(String::as_str).unwrap_or("");
    let before = &words[..cword.min(words.len())];
    let name = crate::program_name(first);
    if let Some(tool) = crate::Tool::from_name(name) {
        return complete_tool(tool.doc(), &before[1..], cur, src);
    }
    // `zonevisor <tool> ...`, `zonevisor man <page>`, `zonevisor completion <shell>`.
    if before.len() == 1 {
        return if cur.starts_with('-') {
            Completion { mode: Mode::Plain, candidates: option_names(pages::ZONEVISOR.options, cur) }
        } else {
            let names = pages::ZONEVISOR.commands.iter().filter(|c| c.name.starts_with(cur));
            Completion { mode: Mode::Plain, candidates: names.map(|c| (c.name.into(), c.summary.into())).collect() }
        };
    }
    match crate::Tool::from_name(&before[1]) {
        Some(tool) => complete_tool(tool.doc(), &before[2..], cur, src),
        None => match pages::ZONEVISOR.command(&before[1]) {
            Some(c) if before.len() == 2 => complete_kind(&pages::ZONEVISOR, c.operands[0], cur, None, src),
            _ => Completion::none(),
        },
    }
}

/// Completes `cur` after `args` (the tool's arguments before the cursor).
fn complete_tool(tool: &ToolDoc, args: &[String], cur: &str, src: &dyn Source) -> Completion {
    if tool.commands.is_empty() {
        // zlogin, sysinfo: options, then operands (zlogin: the first
        // positional ends the options).
        let w = walk(args, tool.options);
        if let Some(o) = w.value_of {
            return complete_kind(tool, o.kind, cur, w.socket.as_deref(), src);
        }
        if w.positional == 0 && cur.starts_with('-') {
            return Completion { mode: Mode::Plain, candidates: option_names(tool.options, cur) };
        }
        return match tool.operands.get(w.positional).or(tool.operands.last().filter(|k| k.repeats())) {
            Some(kind) => complete_kind(tool, *kind, cur, w.socket.as_deref(), src),
            None => Completion::none(),
        };
    }
    // Global options, then the command.
    let mut i = 0;
    let mut socket = None;
    while i < args.len() && args[i].starts_with('-') {
        if args[i] == "--socket" {
            socket = args.get(i + 1).cloned();
            i += 2;
        } else {
            if let Some(v) = args[i].strip_prefix("--socket=") {
                socket = Some(v.to_string());
            }
            i += 1;
        }
    }
    if i > args.len() {
        // The cursor is on --socket's value.
        return Completion::files();
    }
    if i == args.len() {
        if cur.starts_with('-') {
            return Completion { mode: Mode::Plain, candidates: option_names(tool.options, cur) };
        }
        let names = tool.commands.iter().filter(|c| c.name.starts_with(cur));
        return Completion {
            mode: Mode::Plain,
            candidates: names.map(|c| (c.name.into(), c.summary.into())).collect(),
        };
    }
    let Some(cmd) = tool.command(&args[i]) else { return Completion::none() };
    complete_command(tool, cmd, &args[i + 1..], cur, socket, src)
}

fn complete_command(
    tool: &ToolDoc,
    cmd: &CommandDoc,
    args: &[String],
    cur: &str,
    socket: Option<String>,
    src: &dyn Source,
) -> Completion {
    let mut opts: Vec<OptDoc> = cmd.options.to_vec();
    opts.extend([pages::SOCKET, pages::HELP]);
    let w = walk(args, &opts);
    let socket = w.socket.or(socket);
    if let Some(o) = w.value_of {
        return complete_kind(tool, o.kind, cur, socket.as_deref(), src);
    }
    if cur.starts_with('-') && !w.dashes {
        return Completion { mode: Mode::Plain, candidates: option_names(&opts, cur) };
    }
    match cmd.operand(w.positional) {
        Some(kind) => complete_kind(tool, kind, cur, socket.as_deref(), src),
        None => Completion::none(),
    }
}

/// The characters bash breaks words at by default (`COMP_WORDBREAKS`).
const BASH_WORDBREAKS: &str = " \t\n\"'><=;|&(:";

/// Splits a command line (up to the cursor) into words at blanks; a line
/// ending in a blank starts a new, empty word.
pub fn split_line(line: &str) -> Vec<String> {
    let mut words: Vec<String> = line.split([' ', '\t']).filter(|w| !w.is_empty()).map(str::to_string).collect();
    if line.is_empty() || line.ends_with([' ', '\t']) {
        words.push(String::new());
    }
    words
}

/// The answer to `__complete` for `shell`: the mode, then the candidates
/// (bash: without the part of the word before its last word-break
/// character, which bash does not replace; zsh: with descriptions).
pub fn render(c: &Completion, shell: &str, cur: &str, wordbreaks: &str) -> String {
    let mut out = String::from(match c.mode {
        Mode::Plain => "plain\n",
        Mode::NoSpace => "nospace\n",
        Mode::Files => "files\n",
    });
    let breaks: Vec<char> = wordbreaks.chars().filter(|c| !c.is_whitespace()).collect();
    let strip = match cur.rfind(|ch| breaks.contains(&ch)) {
        Some(i) if shell == "bash" => &cur[..=i],
        _ => "",
    };
    for (value, description) in &c.candidates {
        let value = value.strip_prefix(strip).unwrap_or(value);
        if shell == "zsh" && !description.is_empty() {
            let _ = writeln!(out, "{value}\t{}", description.replace(['\n', '\t'], " "));
        } else {
            let _ = writeln!(out, "{value}");
        }
    }
    out
}

/// `__complete bash -- LINE` or `__complete zsh CURRENT -- WORDS...`:
/// prints what to offer. `wordbreaks` is bash's `COMP_WORDBREAKS`.
pub fn run(args: &[String], src: &dyn Source, wordbreaks: Option<&str>) -> Result<String, String> {
    let usage = "usage: __complete bash -- LINE | __complete zsh CURRENT -- WORDS...";
    match args {
        [shell, dashes, line] if shell == "bash" && dashes == "--" => {
            let words = split_line(line);
            let cword = words.len() - 1;
            let c = complete(&words, cword, src);
            Ok(render(&c, "bash", &words[cword], wordbreaks.unwrap_or(BASH_WORDBREAKS)))
        }
        [shell, current, dashes, words @ ..] if shell == "zsh" && dashes == "--" => {
            let cword: usize = current.parse().map_err(|_| usage.to_string())?;
            let c = complete(words, cword, src);
            Ok(render(&c, "zsh", words.get(cword).map(String::as_str).unwrap_or(""), ""))
        }
        _ => Err(usage.to_string()),
    }
}

/// The tools the scripts complete.
const COMMANDS: &str = "vmadm imgadm nictagadm fwadm sysinfo zlogin zonevisor";

/// The bash completion script.
pub fn bash_script() -> String {
    format!(
        r#"# bash completion for {COMMANDS}
# (generated by `zonevisor completion bash`; zonevisor answers itself).
_zonevisor() {{
    local prog=$1 out
    [[ $prog == "~/"* ]] && prog=$HOME/${{prog#"~/"}}
    out=$(ZONEVISOR_COMP_WORDBREAKS=$COMP_WORDBREAKS "$prog" __complete bash -- "${{COMP_LINE:0:COMP_POINT}}" 2>/dev/null) || return 0
    local -a lines
    mapfile -t lines <<<"$out"
    COMPREPLY=()
    case ${{lines[0]}} in
        files)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "${{COMP_WORDS[COMP_CWORD]}}")
            return 0
            ;;
        nospace) compopt -o nospace 2>/dev/null ;;
    esac
    local line
    for line in "${{lines[@]:1}}"; do
        [[ -n $line ]] && COMPREPLY+=("$line")
    done
    return 0
}}
complete -F _zonevisor {COMMANDS}
"#
    )
}

/// The zsh completion script (`_zonevisor` in a `site-functions` directory).
pub fn zsh_script() -> String {
    format!(
        r#"#compdef {COMMANDS}
# zsh completion for {COMMANDS}
# (generated by `zonevisor completion zsh`; zonevisor answers itself).
_zonevisor() {{
    local prog=${{words[1]}} line value
    local -a out values shown opts
    out=("${{(@f)$("${{prog/#\~/$HOME}}" __complete zsh $((CURRENT - 1)) -- "${{(@)words}}" 2>/dev/null)}}")
    case ${{out[1]}} in
        files) _files; return ;;
        nospace) opts=(-S '') ;;
        plain) ;;
        *) return 1 ;;
    esac
    for line in "${{(@)out[2,-1]}}"; do
        [[ -z $line ]] && continue
        value=${{line%%$'\t'*}}
        values+=("$value")
        if [[ $line == *$'\t'* ]]; then shown+=("$value  -- ${{line#*$'\t'}}"); else shown+=("$value"); fi
    done
    (( ${{#values}} )) || return 1
    # -U: zonevisor has matched already (an alias may complete to a UUID).
    compadd -U -Q "${{opts[@]}}" -d shown -a values
}}
if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _zonevisor "$@"
else
    compdef _zonevisor {COMMANDS}
fi
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::s;

    struct Fixed;
    const U1: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";
    const U2: &str = "1a2b3c4d-0000-4000-8000-000000000002";
    const I1: &str = "7b3a2c6e-1f4d-4e8a-9c5b-b05b0c0e0001";
    const R1: &str = "5b1f6a2e-0c3d-4e6f-8a9b-1c2d3e4f5a6b";
    const R2: &str = "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f";

    impl Source for Fixed {
        fn vms(&self, _: Option<&str>) -> Vec<Vm> {
            vec![
                Vm { uuid: U1.into(), alias: "web01".into(), state: "running".into() },
                Vm { uuid: U2.into(), alias: "db01".into(), state: "stopped".into() },
            ]
        }
        fn images(&self, _: Option<&str>) -> Vec<Image> {
            vec![Image { uuid: I1.into(), name: "busybox@1.0".into() }]
        }
        fn nic_tags(&self, _: Option<&str>) -> Vec<String> {
            s(&["admin", "external", "stub0"])
        }
        fn fw_rules(&self, _: Option<&str>) -> Vec<Rule> {
            vec![
                Rule { uuid: R1.into(), rule: "FROM any TO all vms ALLOW tcp PORT 22".into() },
                Rule { uuid: R2.into(), rule: "FROM any TO all vms BLOCK udp PORT all".into() },
            ]
        }
        fn links(&self) -> Vec<String> {
            s(&["eno1", "eno2", "lo"])
        }
    }

    fn values(line: &[&str]) -> (Mode, Vec<String>) {
        let words = s(line);
        let c = complete(&words, words.len() - 1, &Fixed);
        (c.mode, c.candidates.into_iter().map(|(v, _)| v).collect())
    }

    #[test]
    fn commands_and_options_come_from_the_table() {
        let (_, v) = values(&["vmadm", "st"]);
        assert_eq!(v, ["start", "stop"]);
        let (_, v) = values(&["vmadm", "list", "-"]);
        for o in ["--parsable", "-p", "-H", "--order", "-o", "--sortby", "-s", "--socket", "--help"] {
            assert!(v.contains(&o.to_string()), "{o} missing from {v:?}");
        }
        let (_, v) = values(&["vmadm", "--"]);
        assert_eq!(v, ["--socket", "--help", "--version"]);
        let (_, v) = values(&["imgadm", ""]);
        assert_eq!(
            v,
            [
                "install", "list", "get", "show", "import", "create", "delete", "sources", "avail", "update", "vacuum",
                "ancestry"
            ]
        );
        let (_, v) = values(&["zonevisor", "man", "z"]);
        assert_eq!(v, ["zlogin", "zonevisor", "zonevisord"]);
        let (_, v) = values(&["zonevisor", "vmadm", "get", "d"]);
        assert_eq!(v, [U2]);
    }

    #[test]
    fn uuids_and_aliases() {
        assert_eq!(values(&["vmadm", "start", ""]).1, [U1, U2]);
        assert_eq!(values(&["vmadm", "start", "0d"]).1, [U1]);
        // An alias's prefix offers its UUID.
        assert_eq!(values(&["vmadm", "boot", "web"]).1, [U1]);
        // zlogin and stop want running zones; options before the uuid.
        assert_eq!(values(&["zlogin", ""]).1, [U1]);
        assert_eq!(values(&["zlogin", "-t", "db"]).1, Vec::<String>::new());
        assert_eq!(values(&["vmadm", "stop", "-t", "10", ""]).1, [U1]);
        // After the uuid, zlogin's words are the zone's.
        assert_eq!(values(&["zlogin", U1, ""]).1, Vec::<String>::new());
        assert_eq!(values(&["vmadm", "lookup", "alias="]), (Mode::Plain, s(&["alias=web01", "alias=db01"])));
        assert_eq!(values(&["vmadm", "list", "alias=~d"]).1, ["alias=~db01"]);
        assert_eq!(values(&["vmadm", "list", "sta"]), (Mode::NoSpace, s(&["state="])));
        assert_eq!(values(&["imgadm", "get", "busy"]).1, [I1]);
        assert_eq!(values(&["imgadm", "list", "name="]).1, ["name=busybox"]);
    }

    #[test]
    fn option_values() {
        assert_eq!(values(&["vmadm", "create", "-f", ""]).0, Mode::Files);
        assert_eq!(values(&["vmadm", "--socket", ""]).0, Mode::Files);
        assert_eq!(values(&["imgadm", "install", "-m", "x", "-f", ""]).0, Mode::Files);
        assert_eq!(values(&["vmadm", "list", "-o", "uuid,al"]), (Mode::NoSpace, s(&["uuid,alias"])));
        assert_eq!(values(&["vmadm", "list", "-s", "-ra"]).1, ["-ram"]);
        assert_eq!(values(&["vmadm", "list", "-Ho", "uu"]).1, ["uuid"]);
        assert_eq!(values(&["vmadm", "kill", "-s", "ter"]).1, ["TERM"]);
        assert_eq!(values(&["vmadm", "info", U1, "cp"]).1, ["cpu", "cpus"]);
        assert_eq!(values(&["vmadm", "info", U1, "me"]).1, ["memory"]);
        assert_eq!(values(&["vmadm", "validate", ""]).1, ["create", "update"]);
        assert_eq!(values(&["vmadm", "validate", "update", ""]).1, ["lx", "kvm", "bhyve"]);
        assert_eq!(values(&["sysinfo", "-"]).1, ["-p", "--socket", "--help", "-h", "--version"]);
    }

    #[test]
    fn nic_tags_links_and_rules() {
        assert_eq!(values(&["nictagadm", ""]).1, ["add", "update", "delete", "exists", "list", "vms"]);
        assert_eq!(values(&["nictagadm", "delete", "-f", "e"]).1, ["external"]);
        assert_eq!(values(&["nictagadm", "exists", "admin", "s"]).1, ["stub0"]);
        assert_eq!(values(&["nictagadm", "add", "-p", "mtu=9000", "storage", "en"]).1, ["eno1", "eno2"]);
        assert_eq!(values(&["nictagadm", "update", "ext"]).1, ["external"]);
        assert_eq!(values(&["nictagadm", "update", "external", "eno"]).1, ["eno1", "eno2"]);
        assert!(values(&["nictagadm", "list", "-"]).1.contains(&"-j".to_string()));
        assert_eq!(values(&["fwadm", "di"]).1, ["disable"]);
        assert_eq!(values(&["fwadm", "enable", ""]).1, [R1, R2]);
        assert_eq!(values(&["fwadm", "delete", R1, "9"]).1, [R2]);
        assert_eq!(values(&["fwadm", "list", "-o", "uuid,ru"]), (Mode::NoSpace, s(&["uuid,rule"])));
        assert_eq!(values(&["fwadm", "rules", "web"]).1, [U1]);
        assert_eq!(values(&["fwadm", "add", "-f", ""]).0, Mode::Files);
        assert_eq!(values(&["fwadm", "add", "FROM", ""]).1, Vec::<String>::new());
        let words = s(&["fwadm", "get", "5"]);
        let c = complete(&words, 2, &Fixed);
        assert_eq!(c.candidates, [(R1.to_string(), "FROM any TO all vms ALLOW tcp PORT 22".to_string())]);
    }

    #[test]
    fn bash_answers_after_its_word_breaks() {
        let c = Completion { mode: Mode::Plain, candidates: vec![("alias=web01".into(), "x".into())] };
        assert_eq!(render(&c, "bash", "alias=w", BASH_WORDBREAKS), "plain\nweb01\n");
        assert_eq!(render(&c, "zsh", "alias=w", ""), "plain\nalias=web01\tx\n");
        assert_eq!(split_line("vmadm start "), s(&["vmadm", "start", ""]));
        assert_eq!(split_line("vmadm  st"), s(&["vmadm", "st"]));
        let out = run(&s(&["bash", "--", "vmadm lookup alias=d"]), &Fixed, None).unwrap();
        assert_eq!(out, "plain\ndb01\n");
        let out = run(&s(&["zsh", "2", "--", "vmadm", "start", "web"]), &Fixed, None).unwrap();
        assert_eq!(out, format!("plain\n{U1}\tweb01\n"));
        assert!(run(&s(&["fish"]), &Fixed, None).is_err());
    }
}
