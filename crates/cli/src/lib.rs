//! The multi-call command-line tools a SmartOS operator expects:
//! `vmadm`, `imgadm`, `nictagadm`, `fwadm`, `sysinfo` and `zlogin`.
//!
//! One binary serves them all. It picks the tool by the file name it was
//! called as (`vmadm list`, through the symlinks the installer makes) or by
//! its first argument (`zonevisor vmadm list`). Every tool but `zlogin`
//! is a thin client of the daemon's API ([`zonevisor_api::Client`]);
//! `zlogin` joins the zone's namespaces itself, and `vmadm console` asks
//! the daemon where the zone's console is and then talks to the zone's
//! monitor directly ([`console`], [`tty`]).
//!
//! Each tool lives in its own module and follows the same shape: parse the
//! arguments into a command value (pure, tested without a daemon), call the
//! daemon, and render the answer with pure functions ([`table`],
//! [`filter`]). Output goes through [`Io`] so tests can capture it.
//!
//! What each tool accepts and says is one table per tool ([`pages`]):
//! the parsers take their options from it, and `--help`, the man pages
//! (`zonevisor man <tool>`) and shell completion (`zonevisor completion
//! bash|zsh`, [`complete`]) are rendered from it ([`doc`]).
//!
//! Exit status follows SmartOS: 0 ok, 1 error, 2 usage (and 3 for
//! `imgadm` when the image is not installed). Errors are one line on
//! stderr, prefixed with the tool's name.

pub mod args;
pub mod complete;
pub mod console;
pub mod doc;
pub mod filter;
pub mod fwadm;
pub mod imgadm;
pub mod imgapi;
pub mod nictagadm;
pub mod pages;
pub mod sysinfo;
pub mod table;
pub mod tty;
pub mod vmadm;
pub mod zlogin;

#[cfg(test)]
pub(crate) mod fake;

use std::fmt;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use zonevisor_api::{Client, ClientError};

/// Success.
pub const EXIT_OK: i32 = 0;
/// The operation failed.
pub const EXIT_ERROR: i32 = 1;
/// The command line was wrong.
pub const EXIT_USAGE: i32 = 2;

/// Where a tool reads and writes, and what it knows of its environment.
/// The binary wires it to the process; tests wire it to buffers.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Standard input (payloads for `vmadm create` and friends).
    pub input: &'a mut dyn Read,
    /// Whether standard input is a terminal (payload commands refuse it).
    pub input_is_tty: bool,
    /// Whether standard output is a terminal (`vmadm send` refuses it).
    pub output_is_tty: bool,
    /// The value of `ZONEVISOR_SOCKET`, if set and not empty.
    pub socket_env: Option<String>,
}

/// The tools this binary can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Instance management.
    Vmadm,
    /// Image management.
    Imgadm,
    /// Nic tags: the host networks instance NICs join.
    Nictagadm,
    /// Firewall rules.
    Fwadm,
    /// Host facts.
    Sysinfo,
    /// A shell or command inside a running zone.
    Zlogin,
}

impl Tool {
    /// All tools, in the order the usage text lists them.
    pub const ALL: [Tool; 6] = [Tool::Vmadm, Tool::Imgadm, Tool::Nictagadm, Tool::Fwadm, Tool::Sysinfo, Tool::Zlogin];

    /// The tool called `name`.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The tool's command name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Vmadm => "vmadm",
            Tool::Imgadm => "imgadm",
            Tool::Nictagadm => "nictagadm",
            Tool::Fwadm => "fwadm",
            Tool::Sysinfo => "sysinfo",
            Tool::Zlogin => "zlogin",
        }
    }

    /// What the tool says about itself (help, man page, completion).
    pub fn doc(self) -> &'static doc::ToolDoc {
        match self {
            Tool::Vmadm => &pages::VMADM,
            Tool::Imgadm => &pages::IMGADM,
            Tool::Nictagadm => &pages::NICTAGADM,
            Tool::Fwadm => &pages::FWADM,
            Tool::Sysinfo => &pages::SYSINFO,
            Tool::Zlogin => &pages::ZLOGIN,
        }
    }

    /// Runs the tool with its arguments (without the tool's own name).
    pub fn run(self, args: &[String], io: &mut Io) -> i32 {
        if args.first().is_some_and(|a| a == "--version") {
            return print_version(self.name(), io);
        }
        match self {
            Tool::Vmadm => vmadm::run(args, io),
            Tool::Imgadm => imgadm::run(args, io),
            Tool::Nictagadm => nictagadm::run(args, io),
            Tool::Fwadm => fwadm::run(args, io),
            Tool::Sysinfo => sysinfo::run(args, io),
            Tool::Zlogin => zlogin::run(args, io),
        }
    }
}

/// Why a tool stops with a non-zero status.
#[derive(Debug)]
pub enum CliError {
    /// The command line is wrong (exit 2).
    Usage(String),
    /// The operation failed (exit `code`, normally 1).
    Failed {
        /// Exit status.
        code: i32,
        /// One line for stderr.
        message: String,
    },
    /// Exit with `0` already explained on stdout/stderr.
    Quiet(i32),
    /// Writing the output failed.
    Output(io::Error),
}

impl CliError {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }
    /// A failure with exit status 1.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError::Failed { code: EXIT_ERROR, message: message.into() }
    }
    /// The exit status this error ends the tool with.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed { code, .. } => *code,
            CliError::Quiet(code) => *code,
            CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
            CliError::Output(_) => EXIT_ERROR,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Failed { message, .. } => f.write_str(message),
            CliError::Quiet(code) => write!(f, "exit {code}"),
            CliError::Output(e) => write!(f, "writing output: {e}"),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

/// Prints `err` (if it has something to say) as `<prefix>: <message>` and
/// returns the exit status.
pub(crate) fn report(prefix: &str, io: &mut Io, result: Result<(), CliError>) -> i32 {
    let err = match result {
        Ok(()) => return EXIT_OK,
        Err(e) => e,
    };
    match &err {
        CliError::Quiet(_) => {}
        CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => {
            let _ = writeln!(io.err, "{prefix}: {other}");
        }
    }
    err.exit_code()
}

/// A usage error followed by the usage lines of the command `argv` names
/// (after the global options), or of every command when it names none:
///
/// ```text
/// nictagadm: unknown option -x
/// usage: nictagadm list [-l | -L] [-p] [-d delim] [-H] [-j]
/// ```
///
/// Any other error is returned as it is.
pub(crate) fn with_usage(tool: &doc::ToolDoc, argv: &[String], err: CliError) -> CliError {
    let CliError::Usage(message) = err else { return err };
    let mut words = argv.iter();
    let mut command = None;
    while let Some(word) = words.next() {
        if word == "--socket" {
            words.next();
        } else if !word.starts_with('-') {
            command = tool.command(word);
            break;
        }
    }
    let lines: Vec<&str> = match command {
        Some(c) => c.usage.to_vec(),
        None => tool.commands.iter().flat_map(|c| c.usage.iter().copied()).collect(),
    };
    let mut text = message;
    for (i, line) in lines.iter().enumerate() {
        let lead = if i == 0 { "usage:" } else { "      " };
        text.push_str(&format!("\n{lead} {} {line}", tool.name));
    }
    CliError::Usage(text)
}

/// One line describing why a call to the daemon failed.
pub fn describe_client_error(e: &ClientError) -> String {
    match e {
        ClientError::Connect { path, source } => format!(
            "cannot reach zonevisord at {}: {source} (is it running? set ZONEVISOR_SOCKET or --socket)",
            path.display()
        ),
        ClientError::Io(source) => format!("talking to zonevisord: {source}"),
        ClientError::Protocol(m) => format!("bad answer from zonevisord: {m}"),
        ClientError::Api(api) => api.message.clone(),
    }
}

/// The daemon socket to use: `--socket`, else `ZONEVISOR_SOCKET`, else the
/// default root's socket.
pub fn socket_for(option: Option<&str>, env: Option<&str>) -> PathBuf {
    match (option, env) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => zonevisor_api::socket_path(Path::new(zonevisor_api::DEFAULT_ROOT)),
    }
}

/// A client for the daemon chosen by `--socket` or the environment.
pub(crate) fn client(option: Option<&str>, io: &Io) -> Client {
    Client::new(socket_for(option, io.socket_env.as_deref()))
}

/// Prints `<name> <version>`.
fn print_version(name: &str, io: &mut Io) -> i32 {
    match writeln!(io.out, "{name} {}", doc::VERSION) {
        Ok(()) => EXIT_OK,
        Err(e) => report(name, io, Err(e.into())),
    }
}

/// The daemon's command line, for `zonevisor man zonevisord`: the binary
/// that links the daemon registers it ([`main_with_daemon`]).
static DAEMON_COMMAND: std::sync::OnceLock<fn() -> clap::Command> = std::sync::OnceLock::new();

/// `zonevisor man <page>`: the page in roff.
fn man_page(name: &str) -> Result<String, CliError> {
    let page = pages::PAGES.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = pages::PAGES.iter().map(|p| p.name).collect();
        CliError::usage(format!("no man page \"{name}\" (one of {})", names.join(", ")))
    })?;
    if page.name == pages::ZONEVISORD.name {
        let command =
            DAEMON_COMMAND.get().ok_or_else(|| CliError::failed("this binary does not know zonevisord's options"))?;
        return Ok(doc::render_man(page, &doc::OptLine::from_clap(&command())));
    }
    Ok(doc::render_man(page, &[]))
}

/// `zonevisor man|completion|__complete ...`: what the multi-call binary
/// does besides being the tools.
fn run_zonevisor_command(command: &str, rest: &[String], io: &mut Io) -> Result<(), CliError> {
    let text = match (command, rest) {
        ("man", [page]) => man_page(page)?,
        ("completion", [shell]) if shell == "bash" => complete::bash_script(),
        ("completion", [shell]) if shell == "zsh" => complete::zsh_script(),
        ("completion", _) => return Err(CliError::usage("usage: zonevisor completion bash|zsh")),
        ("man", _) => return Err(CliError::usage("usage: zonevisor man <page>")),
        _ => {
            let source = complete::Daemon { socket_env: io.socket_env.clone() };
            let breaks = std::env::var("ZONEVISOR_COMP_WORDBREAKS").ok();
            complete::run(rest, &source, breaks.as_deref()).map_err(CliError::usage)?
        }
    };
    io.out.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs the tool named by `argv[0]` (or by `argv[1]` when called as
/// `zonevisor`) and returns the exit status.
pub fn run(argv: &[String], io: &mut Io) -> i32 {
    let prog = argv.first().map(|a| program_name(a)).unwrap_or("zonevisor");
    // The completion scripts call the binary they complete for: `vmadm __complete ...`.
    if argv.get(1).is_some_and(|a| a == "__complete") {
        let result = run_zonevisor_command("__complete", &argv[2..], io);
        return report(prog, io, result);
    }
    if let Some(tool) = Tool::from_name(prog) {
        return tool.run(argv.get(1..).unwrap_or(&[]), io);
    }
    let rest = argv.get(1..).unwrap_or(&[]);
    match rest.first().map(String::as_str) {
        None => {
            let _ = io.err.write_all(doc::render_help(&pages::ZONEVISOR).as_bytes());
            EXIT_USAGE
        }
        Some("-h" | "--help" | "help") => match io.out.write_all(doc::render_help(&pages::ZONEVISOR).as_bytes()) {
            Ok(()) => EXIT_OK,
            Err(e) => report("zonevisor", io, Err(e.into())),
        },
        Some("--version") => print_version("zonevisor", io),
        Some(command @ ("man" | "completion")) => {
            let result = run_zonevisor_command(command, &rest[1..], io);
            report("zonevisor", io, result)
        }
        Some(name) => match Tool::from_name(name) {
            Some(tool) => tool.run(&rest[1..], io),
            None => {
                let names: Vec<&str> = Tool::ALL.iter().map(|t| t.name()).collect();
                let message = format!("unknown tool \"{name}\" (one of {})", names.join(", "));
                report("zonevisor", io, Err(CliError::usage(message)))
            }
        },
    }
}

/// The file name part of `argv[0]`.
pub(crate) fn program_name(arg0: &str) -> &str {
    arg0.rsplit('/').next().unwrap_or(arg0)
}

/// [`main`], in a binary that knows the daemon's command line (for
/// `zonevisor man zonevisord`).
pub fn main_with_daemon(daemon: fn() -> clap::Command) -> i32 {
    let _ = DAEMON_COMMAND.set(daemon);
    main()
}

/// The binary's entry point: runs on the process's real arguments and
/// standard streams and returns the exit status.
pub fn main() -> i32 {
    let mut argv = Vec::new();
    for arg in std::env::args_os() {
        match arg.into_string() {
            Ok(s) => argv.push(s),
            Err(bad) => {
                eprintln!("zonevisor: argument {bad:?} is not valid UTF-8");
                return EXIT_USAGE;
            }
        }
    }
    let stdin = io::stdin();
    let input_is_tty = stdin.is_terminal();
    let output_is_tty = io::stdout().is_terminal();
    let mut input = stdin.lock();
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut err = io::stderr();
    let socket_env = std::env::var(zonevisor_api::SOCKET_ENV).ok().filter(|s| !s.is_empty());
    let code = {
        let mut io = Io { out: &mut out, err: &mut err, input: &mut input, input_is_tty, output_is_tty, socket_env };
        run(&argv, &mut io)
    };
    match out.flush() {
        Ok(()) => code,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("zonevisor: writing output: {e}");
            EXIT_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::TestIo;

    #[test]
    fn dispatches_on_program_name_and_first_argument() {
        assert_eq!(program_name("/usr/sbin/vmadm"), "vmadm");
        assert_eq!(program_name("imgadm"), "imgadm");
        let mut t = TestIo::new();
        assert_eq!(t.run(&["/usr/bin/vmadm", "--help"]), 0);
        assert!(t.out().contains("lookup [-j|-1]"), "{}", t.out());
        let mut t = TestIo::new();
        assert_eq!(t.run(&["zonevisor", "imgadm", "-h"]), 0);
        assert!(t.out().contains("install -m <manifest> -f <file>"), "{}", t.out());
    }

    #[test]
    fn zonevisor_without_tool_is_a_usage_error() {
        let mut t = TestIo::new();
        assert_eq!(t.run(&["zonevisor"]), EXIT_USAGE);
        assert!(t.err().contains("Usage"));
        let mut t = TestIo::new();
        assert_eq!(t.run(&["zonevisor", "dladm"]), EXIT_USAGE);
        assert_eq!(
            t.err(),
            "zonevisor: unknown tool \"dladm\" (one of vmadm, imgadm, nictagadm, fwadm, sysinfo, zlogin)\n"
        );
        let mut t = TestIo::new();
        assert_eq!(t.run(&["zonevisor", "--help"]), 0);
        assert!(t.out().contains("zlogin"));
    }

    #[test]
    fn socket_precedence() {
        assert_eq!(socket_for(Some("/a"), Some("/b")), PathBuf::from("/a"));
        assert_eq!(socket_for(None, Some("/b")), PathBuf::from("/b"));
        assert_eq!(socket_for(None, Some("")), PathBuf::from("/var/lib/zonevisor/run/zonevisord.sock"));
        assert_eq!(socket_for(None, None), PathBuf::from("/var/lib/zonevisor/run/zonevisord.sock"));
    }

    #[test]
    fn unreachable_daemon_is_one_clear_line() {
        let mut t = TestIo::new();
        let code = t.run(&["vmadm", "--socket", "/nonexistent/zv.sock", "list"]);
        assert_eq!(code, EXIT_ERROR);
        let err = t.err();
        assert!(err.starts_with("vmadm: cannot reach zonevisord at /nonexistent/zv.sock: "), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
