//! What a host installs besides the binaries, checked as a person would
//! meet it: the man pages render with `man -l` without a warning and
//! list every option; `--version` on every binary; the systemd unit
//! passes `systemd-analyze verify`; bash and zsh completion offer the
//! UUIDs and aliases a running daemon has; the daemon's log carries no
//! colour codes unless it is written to a terminal.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use common::{bin, TestHost};
use serde_json::json;

/// Whether `tool` is installed; outside CI a missing one skips the test
/// (with the reason), in CI it fails it.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!common::in_ci(), "required for this test in CI: {tool} (scripts/test installs it)");
        eprintln!("SKIPPED: {tool} is not installed (scripts/setup and scripts/test install it)");
    }
    found
}

/// The pages setup installs, with their sections.
const PAGES: &[(&str, u8)] = &[
    ("vmadm", 8),
    ("imgadm", 8),
    ("nictagadm", 8),
    ("fwadm", 8),
    ("sysinfo", 8),
    ("zlogin", 1),
    ("zonevisor", 8),
    ("zonevisord", 8),
];

fn zonevisor(args: &[&str]) -> String {
    let out = Command::new(bin("zonevisor")).args(args).output().expect("run zonevisor");
    assert!(out.status.success(), "zonevisor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Writes every page into `dir/man<section>/`, as setup installs them.
fn write_pages(dir: &Path) -> Vec<PathBuf> {
    PAGES
        .iter()
        .map(|(name, section)| {
            let sub = dir.join(format!("man{section}"));
            std::fs::create_dir_all(&sub).unwrap();
            let path = sub.join(format!("{name}.{section}"));
            std::fs::write(&path, zonevisor(&["man", name])).unwrap();
            path
        })
        .collect()
}

#[test]
fn man_pages_render_without_warnings() {
    if !have("man") || !have("lexgrog") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for path in write_pages(dir.path()) {
        let out = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.is_empty(), "man -l {}: {stderr}", path.display());
        let text = String::from_utf8_lossy(&out.stdout);
        for heading in ["NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"] {
            assert!(text.contains(heading), "{} has no {heading}:\n{text}", path.display());
        }
        // whatis and apropos read the NAME line.
        let out = Command::new("lexgrog").arg(&path).output().unwrap();
        assert!(out.status.success(), "lexgrog {}: {}", path.display(), String::from_utf8_lossy(&out.stdout));
    }
}

/// The roff for an option name, as the pages write it.
fn roff(name: &str) -> String {
    format!("\\fB{}\\fR", name.replace('-', "\\-"))
}

#[test]
fn man_pages_list_every_option_help_shows() {
    // The daemon's page lists every option of its clap definition.
    let page = zonevisor(&["man", "zonevisord"]);
    let mut daemon = zonevisor_daemon::Config::command();
    daemon.build();
    for arg in daemon.get_arguments().filter(|a| !a.is_positional()) {
        let long = arg.get_long().expect("zonevisord options are long");
        assert!(page.contains(&roff(&format!("--{long}"))), "zonevisord(8) lacks --{long}");
    }
    // Each tool's page has every option its --help shows.
    for (tool, _) in PAGES.iter().filter(|(t, _)| *t != "zonevisord") {
        let help = if *tool == "zonevisor" { zonevisor(&["--help"]) } else { zonevisor(&[tool, "--help"]) };
        let page = zonevisor(&["man", tool]);
        // Its option lines: "    -f, --file FILE  Read ...".
        let mut seen = 0;
        for line in help.lines().map(str::trim_start).filter(|l| l.starts_with('-') && !l.starts_with("-or-")) {
            let flags = line.split("  ").next().unwrap_or("");
            for name in flags.split(", ").map(|f| f.split(' ').next().unwrap_or("")) {
                seen += 1;
                assert!(page.contains(&roff(name)), "{tool}'s page lacks {name}, which its --help shows");
            }
        }
        assert!(seen >= 3, "{tool} --help shows {seen} options");
    }
}

#[test]
fn every_binary_prints_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    for (name, path, arg0) in [
        ("zonevisord", bin("zonevisord"), "zonevisord"),
        ("zonevisor-monitor", bin("zonevisor-monitor"), "zonevisor-monitor"),
        ("zonevisor", bin("zonevisor"), "zonevisor"),
        ("vmadm", bin("zonevisor"), "vmadm"),
        ("imgadm", bin("zonevisor"), "imgadm"),
        ("nictagadm", bin("zonevisor"), "nictagadm"),
        ("fwadm", bin("zonevisor"), "fwadm"),
        ("sysinfo", bin("zonevisor"), "sysinfo"),
        ("zlogin", bin("zonevisor"), "zlogin"),
    ] {
        let out = Command::new(&path).arg0(arg0).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} --version: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.starts_with(&format!("{name} {version}")) && text.lines().count() == 1, "{name}: {text:?}");
    }
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(repo.join("contrib/systemd/zonevisord.service")).unwrap();
    // What keeps zones' monitors and lxcfs across a restart, and the boot.
    for line in ["KillMode=process", "ExecStart=/usr/local/bin/zonevisord --root /var/lib/zonevisor"] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    assert!(unit.contains("WantedBy=multi-user.target"));
    // As setup installs it: ExecStart names the installed binary (here,
    // this build's), and the pages Documentation= names are installed.
    let dir = tempfile::tempdir().unwrap();
    let installed = unit.replace("/usr/local/bin/zonevisord", &bin("zonevisord").display().to_string());
    let path = dir.path().join("zonevisord.service");
    std::fs::write(&path, installed).unwrap();
    let man = dir.path().join("man");
    write_pages(&man);
    let out = Command::new("systemd-analyze")
        .args(["verify", "--no-pager"])
        .arg(&path)
        .env("MANPATH", &man)
        .env("LC_ALL", "C.UTF-8")
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    // And it does complain about a unit that is wrong.
    std::fs::write(&path, unit.replace("KillMode=process", "KillMode=processes")).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).env("MANPATH", &man).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kill mode"), "a bad KillMode went unnoticed: {stderr}");
}

/// Runs the bash completion function for `line` (the cursor at its end)
/// and returns what it offers.
fn bash_complete(script: &Path, path_dir: &Path, socket: Option<&Path>, line: &str) -> Vec<String> {
    let program = r#"source "$1"
COMP_LINE=$2; COMP_POINT=${#COMP_LINE}
read -ra COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_zonevisor "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" ""
printf '%s\n' "${COMPREPLY[@]}""#;
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(program).arg("bash").arg(script).arg(line);
    cmd.env("PATH", format!("{}:{}", path_dir.display(), std::env::var("PATH").unwrap_or_default()));
    match socket {
        Some(s) => cmd.env("ZONEVISOR_SOCKET", s),
        None => cmd.env_remove("ZONEVISOR_SOCKET"),
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    let mut words: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    words.sort();
    words
}

/// Runs the zsh completion function for `words` (the cursor on the last)
/// with a `compadd` that prints what it was given.
fn zsh_complete(script: &Path, path_dir: &Path, socket: &Path, words: &[&str]) -> (Vec<String>, Vec<String>) {
    let program = r#"compdef() { :; }
compadd() { print -rl -- "${values[@]}"; print -- ---; print -rl -- "${shown[@]}"; }
_files() { print -- files; }
source "$1"; shift
words=("$@"); CURRENT=$#
_zonevisor"#;
    let out = Command::new("zsh")
        .arg("-fc")
        .arg(program)
        .arg("zsh")
        .arg(script)
        .args(words)
        .env("PATH", format!("{}:{}", path_dir.display(), std::env::var("PATH").unwrap_or_default()))
        .env("ZONEVISOR_SOCKET", socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (values, shown) = text.split_once("---\n").unwrap_or((&text, ""));
    let mut values: Vec<String> = values.lines().map(str::to_string).collect();
    values.sort();
    (values, shown.lines().map(str::to_string).collect())
}

#[test]
fn completion_offers_uuids_and_aliases_from_the_daemon() {
    if !have("bash") || !have("zsh") {
        return;
    }
    let Some(host) = TestHost::new() else { return };
    let image = host.install(common::busybox());
    let create = |alias: &str| {
        host.create_ok(&json!({"brand": "lx", "alias": alias, "image_uuid": image, "autoboot": false, "quota": 1}))
    };
    let (web, db) = (create("web01"), create("db01"));
    let mut both = vec![web.clone(), db.clone()];
    both.sort();

    // The tools on PATH, as setup links them.
    let dir = tempfile::tempdir().unwrap();
    for tool in ["zonevisor", "vmadm", "imgadm", "nictagadm", "fwadm", "sysinfo", "zlogin"] {
        std::os::unix::fs::symlink(bin("zonevisor"), dir.path().join(tool)).unwrap();
    }
    let bash = dir.path().join("zonevisor.bash");
    std::fs::write(&bash, zonevisor(&["completion", "bash"])).unwrap();
    let socket = Some(host.socket.as_path());
    let complete = |line: &str| bash_complete(&bash, dir.path(), socket, line);

    assert_eq!(complete("vmadm start "), both);
    assert_eq!(complete("vmadm get -- "), both);
    assert_eq!(complete(&format!("vmadm get {}", &web[..8])), [web.as_str()]);
    // An alias's prefix offers that VM's UUID.
    assert_eq!(complete("vmadm start web"), [web.as_str()]);
    assert_eq!(complete("zonevisor vmadm delete db"), [db.as_str()]);
    // alias= in a filter completes aliases (bash replaces what follows the `=`).
    assert_eq!(complete("vmadm lookup alias="), ["db01", "web01"]);
    assert_eq!(complete("vmadm list alias=w"), ["web01"]);
    // Neither zone runs: zlogin offers none.
    assert_eq!(complete("zlogin "), Vec::<String>::new());
    assert_eq!(complete("imgadm get "), [image.as_str()]);
    // --socket on the line wins over the environment.
    let line = format!("vmadm --socket {} start web", host.socket.display());
    assert_eq!(bash_complete(&bash, dir.path(), None, &line), [web.as_str()]);
    assert_eq!(bash_complete(&bash, dir.path(), None, "vmadm start web"), Vec::<String>::new());

    let zsh = dir.path().join("_zonevisor");
    std::fs::write(&zsh, zonevisor(&["completion", "zsh"])).unwrap();
    let (values, shown) = zsh_complete(&zsh, dir.path(), &host.socket, &["vmadm", "start", "web"]);
    assert_eq!(values, [web.as_str()]);
    assert_eq!(shown, [format!("{web}  -- web01")]);
    let (values, _) = zsh_complete(&zsh, dir.path(), &host.socket, &["vmadm", "lookup", "alias="]);
    assert_eq!(values, ["alias=db01", "alias=web01"]);
    let (values, _) = zsh_complete(&zsh, dir.path(), &host.socket, &["vmadm", "create", "-f", ""]);
    assert_eq!(values, ["files"]);
}

#[test]
fn daemon_log_has_no_colour_codes_off_a_terminal() {
    let Some(host) = TestHost::new() else { return };
    let log = host.log();
    assert!(log.contains("zonevisord starting"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a log file:\n{log:?}");

    // On a terminal it has colours: the check above could fail.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tag = dir.path().file_name().unwrap().to_string_lossy().into_owned();
    let mut daemon = Command::new(bin("zonevisord"))
        .args(["--pool-backend", "dir", "--root"])
        .arg(&root)
        .args(["--cgroup-parent", &format!("zonevisor-test-{tag}")])
        .arg("--monitor")
        .arg(bin("zonevisor-monitor"))
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn zonevisord");
    let mut master = std::fs::File::from(pty.master);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&seen).contains("zonevisord starting") && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.extend(chunk);
        }
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = daemon.wait();
    let _ = nix::mount::umount2(&root.join("run").join("lxcfs"), nix::mount::MntFlags::MNT_DETACH);
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("zonevisord starting"), "no start line on the terminal: {text:?}");
    assert!(text.contains("\u{1b}["), "no colours on a terminal: {text:?}");
}
