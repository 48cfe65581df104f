//! The dnsmasq process of one network: started detached so that it
//! outlives its caller, adopted by the next caller, restarted when its
//! configuration changed.
//!
//! ```text
//!  start_or_adopt ── render conf ── a dnsmasq running --conf-file=<ours>?
//!                                     │ yes                      │ no
//!                                     v                          │
//!                conf on disk == rendered, same arguments,       │
//!                and it answers DNS within 2 s?                  │
//!                 │ yes               │ no: SIGTERM (SIGKILL)    │
//!                 v                   v                          v
//!               adopt            write conf (temp + rename) ── spawn dnsmasq
//!                                                  (it daemonizes: setsid, double fork,
//!                                                   pid file; its first process exits
//!                                                   once the daemon is up, or with the error)
//!                                                  ── answers DNS within 10 s? ── no ──> error
//!                                                        │ yes
//!                                                        v
//!  update ── write dhcp-hosts, names (temp + rename) ── SIGHUP (re-read)
//!  stop ──── SIGTERM, SIGKILL after 3 s ── pid file removed
//! ```
//!
//! The conf on disk is always the one the running dnsmasq was started
//! with: a restart stops the old process before the new conf is written,
//! so a caller that dies at any step leaves either no dnsmasq or one that
//! matches its conf. Processes are signalled through pidfds, so a recycled
//! pid is never signalled by mistake.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::conf::{self, Paths};
use super::dns::{self, QType};
use super::{Error, NetworkConfig, Reservation};

/// How long a fresh dnsmasq gets to start and answer DNS.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a running dnsmasq gets to answer before it is replaced.
const ADOPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long dnsmasq gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The log's size past which it is moved to `dnsmasq.log.1`.
const LOG_MAX: u64 = 1 << 20;
/// The name asked for to see whether dnsmasq answers: one label, so
/// `domain-needed` answers it locally, never upstream.
const PROBE_NAME: &str = "zonevisor-probe";

/// A network's running dnsmasq. Dropping it leaves dnsmasq running (the
/// next [`Dnsmasq::start_or_adopt`] adopts it); [`Dnsmasq::stop`] stops it.
#[derive(Debug)]
pub struct Dnsmasq {
    cfg: NetworkConfig,
    paths: Paths,
    account: Account,
    process: Process,
}

impl Dnsmasq {
    /// Makes dnsmasq serve `cfg`: writes its conf, adopts the dnsmasq
    /// already running with it, or (re)starts one, detached from the
    /// caller, and waits until it answers DNS on the host's bridge address.
    /// The hosts files keep what the last [`Dnsmasq::update`] wrote (empty
    /// the first time). The bridge and its addresses must exist, and the
    /// caller must be in the bridge's network namespace; so will dnsmasq be.
    pub fn start_or_adopt(cfg: &NetworkConfig) -> Result<Dnsmasq, Error> {
        let text = conf::render(cfg)?;
        let failed = |why: String| Error::Process { network: cfg.name.clone(), why };
        let exe = find_program("dnsmasq").ok_or_else(|| failed("dnsmasq is not installed".into()))?;
        let account = Account::lookup()?;
        let paths = Paths::new(&cfg.dir);
        prepare(&paths, &account)?;
        trim_log(&paths.log);
        let args = account.args(&paths);
        let mut running = find_ours(&paths);
        let current = fs::read_to_string(&paths.conf).ok();
        let keep = running.iter().position(|(p, argv)| {
            current.as_deref() == Some(&text) && argv[1..] == args[..] && answers(cfg, p, ADOPT_TIMEOUT)
        });
        if let Some(i) = keep {
            let (process, _) = running.swap_remove(i);
            for (other, _) in running {
                other.terminate();
            }
            if fs::read_to_string(&paths.pid).ok().and_then(|p| p.trim().parse().ok()) != Some(process.pid) {
                let _ = fs::write(&paths.pid, format!("{}\n", process.pid));
            }
            return Ok(Dnsmasq { cfg: cfg.clone(), paths, account, process });
        }
        for (p, _) in running {
            if !p.terminate() {
                return Err(failed(format!("dnsmasq {} did not exit on SIGKILL", p.pid)));
            }
        }
        write_atomic(&paths.conf, &text, 0, 0o600)?;
        let process = spawn(cfg, &exe, &args, &paths).map_err(failed)?;
        Ok(Dnsmasq { cfg: cfg.clone(), paths, account, process })
    }

    /// Replaces the DHCP reservations and the DNS names dnsmasq serves:
    /// both files are written whole (temp + rename) and dnsmasq re-reads
    /// them on SIGHUP; this returns once it answers a DNS query sent after
    /// that (call it in the bridge's network namespace), so the new
    /// reservations and names are served. Nothing is signalled when neither
    /// file changed. Fails when dnsmasq is no longer running (then
    /// [`Dnsmasq::start_or_adopt`] starts a new one, which reads the files
    /// written here).
    pub fn update(&self, reservations: &[Reservation], names: &[(IpAddr, String)]) -> Result<(), Error> {
        conf::check_reservations(&self.cfg, reservations)?;
        let hosts = conf::render_hosts(reservations)?;
        let names = conf::render_names(names)?;
        let mut changed = false;
        for (path, text) in [(&self.paths.hosts, &hosts), (&self.paths.names, &names)] {
            if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
                write_atomic(path, text, self.account.uid, 0o400)?;
                changed = true;
            }
        }
        trim_log(&self.paths.log);
        if !self.is_running() {
            return Err(Error::Process {
                network: self.cfg.name.clone(),
                why: format!("dnsmasq {} is no longer running ({})", self.process.pid, last_line(&self.paths.log)),
            });
        }
        if changed {
            let failed = |why| Error::Process { network: self.cfg.name.clone(), why };
            self.process
                .signal(libc::SIGHUP)
                .map_err(|e| failed(format!("reloading dnsmasq {} (SIGHUP): {e}", self.process.pid)))?;
            // dnsmasq handles a signal before the DNS queries of the same
            // round of its loop: once it answers one sent after the
            // SIGHUP, it has re-read the files.
            if !answers(&self.cfg, &self.process, ADOPT_TIMEOUT) {
                return Err(failed(format!(
                    "dnsmasq {} did not answer DNS after reloading ({})",
                    self.process.pid,
                    last_line(&self.paths.log)
                )));
            }
        }
        Ok(())
    }

    /// Whether this dnsmasq is still running.
    pub fn is_running(&self) -> bool {
        !self.process.exited_within(Duration::ZERO)
    }

    /// The dnsmasq's process id.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Stops dnsmasq (SIGTERM, SIGKILL after 3 s) and removes its pid
    /// file; the conf, hosts files, leases and log stay.
    pub fn stop(self) -> Result<(), Error> {
        if !self.process.terminate() {
            return Err(Error::Process {
                network: self.cfg.name.clone(),
                why: format!("dnsmasq {} did not exit on SIGKILL", self.process.pid),
            });
        }
        match fs::remove_file(&self.paths.pid) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::File { what: "removing", path: self.paths.pid.clone(), source: e })
            }
            _ => Ok(()),
        }
    }
}

/// The unprivileged user dnsmasq drops to: Debian's `dnsmasq`, else `nobody`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Account {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
}

impl Account {
    fn lookup() -> Result<Account, Error> {
        let no_user = |e: String| Error::Invalid { what: "dnsmasq user", value: "dnsmasq".into(), why: e };
        let user = ["dnsmasq", "nobody"]
            .into_iter()
            .find_map(|n| nix::unistd::User::from_name(n).ok().flatten())
            .ok_or_else(|| no_user("neither user dnsmasq nor user nobody exists".into()))?;
        let group = nix::unistd::Group::from_gid(user.gid)
            .ok()
            .flatten()
            .ok_or_else(|| no_user(format!("user {}'s group {} has no name", user.name, user.gid)))?;
        if user.uid.is_root() {
            return Err(no_user(format!("user {} is root", user.name)));
        }
        Ok(Account { user: user.name, group: group.name, uid: user.uid.as_raw(), gid: user.gid.as_raw() })
    }

    /// dnsmasq's arguments: our conf only, and the user to drop to.
    fn args(&self, paths: &Paths) -> Vec<Vec<u8>> {
        let mut conf = b"--conf-file=".to_vec();
        conf.extend_from_slice(paths.conf.as_os_str().as_bytes());
        vec![conf, format!("--user={}", self.user).into_bytes(), format!("--group={}", self.group).into_bytes()]
    }
}

/// Makes the state directory `root 0711` and checks that dnsmasq's user
/// gets through every directory down to it; creates the hosts files
/// (owned by that user) and the lease file (root's) when missing.
fn prepare(paths: &Paths, account: &Account) -> Result<(), Error> {
    fs::DirBuilder::new().recursive(true).mode(0o711).create(&paths.dir).map_err(file_err("creating", &paths.dir))?;
    let meta = fs::symlink_metadata(&paths.dir).map_err(file_err("reading", &paths.dir))?;
    if !meta.is_dir() {
        return Err(Error::File {
            what: "using",
            path: paths.dir.clone(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory (or a symlink)"),
        });
    }
    if meta.uid() != 0 || meta.gid() != 0 {
        std::os::unix::fs::chown(&paths.dir, Some(0), Some(0)).map_err(file_err("chown root", &paths.dir))?;
    }
    fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o711)).map_err(file_err("chmod", &paths.dir))?;
    reachable(&paths.dir, account)?;
    for path in [&paths.hosts, &paths.names] {
        if fs::symlink_metadata(path).is_err() {
            write_atomic(path, "", account.uid, 0o400)?;
        }
    }
    if fs::symlink_metadata(&paths.leases).is_err() {
        write_atomic(&paths.leases, "", 0, 0o600)?;
    }
    Ok(())
}

/// An [`Error::File`] for `what` done to `path`.
fn file_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::File { what, path: path.to_path_buf(), source }
}

/// Whether `account` may search every directory from `/` down to `dir`
/// (owner, group or other bits, as the kernel picks them).
fn reachable(dir: &Path, account: &Account) -> Result<(), Error> {
    let dir = fs::canonicalize(dir).map_err(|source| Error::File { what: "resolving", path: dir.into(), source })?;
    for a in dir.ancestors() {
        let m = fs::metadata(a).map_err(|source| Error::File { what: "reading", path: a.into(), source })?;
        let mode = m.mode();
        let bit = if m.uid() == account.uid {
            0o100
        } else if m.gid() == account.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(Error::Unreachable {
                user: account.user.clone(),
                path: a.to_path_buf(),
                why: format!(
                    "mode {:04o}, owner {}:{} (dnsmasq re-reads its hosts files there after dropping root)",
                    mode & 0o7777,
                    m.uid(),
                    m.gid()
                ),
            });
        }
    }
    Ok(())
}

/// Writes `text` to `path` whole: a temporary file beside it, owned by
/// `uid` (group root) with `mode`, synced, renamed over `path`.
fn write_atomic(path: &Path, text: &str, uid: u32, mode: u32) -> Result<(), Error> {
    let name = path.file_name().unwrap_or(OsStr::new("file")).to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{:08x}", u32::from_ne_bytes(super::random_bytes())));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(0))?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_err("writing", path)(e)
    })
}

/// Moves a log grown past [`LOG_MAX`] to `.1` (copied, then emptied in
/// place: dnsmasq keeps appending to the file it opened, and as its
/// unprivileged user could not create a new one).
fn trim_log(log: &Path) {
    if fs::metadata(log).is_ok_and(|m| m.len() > LOG_MAX) {
        let old = log.with_extension("log.1");
        if fs::copy(log, &old).is_ok() {
            let _ = fs::OpenOptions::new().write(true).open(log).and_then(|f| f.set_len(0));
        }
    }
}

/// Starts dnsmasq and waits until it answers DNS. dnsmasq daemonizes
/// itself (setsid, double fork, pid file): its first process exits once
/// the daemon is up, with the daemon's start-up error on stderr if it
/// failed; the daemon belongs to no session of the caller's and outlives it.
fn spawn(cfg: &NetworkConfig, exe: &Path, args: &[Vec<u8>], paths: &Paths) -> Result<Process, String> {
    let _ = fs::remove_file(&paths.pid);
    let mut child = Command::new(exe)
        .args(args.iter().map(|a| OsStr::from_bytes(a)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/")
        .spawn()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("dnsmasq did not finish starting within {} s", START_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("waiting for dnsmasq: {e}")),
        }
    };
    let stderr = child.stderr.take().map(read_available).unwrap_or_default();
    if !status.success() {
        let said = stderr.trim();
        return Err(format!(
            "dnsmasq refused to start ({status}): {}",
            if said.is_empty() { "no message" } else { said }
        ));
    }
    let pid: i32 = fs::read_to_string(&paths.pid)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| format!("dnsmasq started but wrote no pid to {}", paths.pid.display()))?;
    let process = Process::open(pid)
        .filter(|p| p.cmdline().is_some_and(|argv| is_ours(&argv, &args[0])))
        .ok_or_else(|| format!("dnsmasq {pid} exited right after starting ({})", last_line(&paths.log)))?;
    if answers(cfg, &process, deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1))) {
        return Ok(process);
    }
    process.terminate();
    let _ = fs::remove_file(&paths.pid);
    Err(format!("dnsmasq did not answer DNS within {} s ({})", START_TIMEOUT.as_secs(), last_line(&paths.log)))
}

/// Whether `process` is alive and its DNS server answers on the host's
/// bridge address (IPv4 first) within `timeout`.
fn answers(cfg: &NetworkConfig, process: &Process, timeout: Duration) -> bool {
    let Some(addr) = cfg.ipv4.map(|n| IpAddr::V4(n.addr())).or(cfg.ipv6.map(|n| IpAddr::V6(n.addr()))) else {
        return false;
    };
    !process.exited_within(Duration::ZERO)
        && dns::query(SocketAddr::new(addr, 53), PROBE_NAME, QType::A, timeout).is_ok()
}

/// What is left in a pipe whose writers have exited (never blocks on one a
/// daemon kept).
fn read_available(pipe: std::process::ChildStderr) -> String {
    let fd = pipe.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, only adding O_NONBLOCK.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let _ = pipe.take(64 * 1024).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The last non-empty line of the log, for error messages.
fn last_line(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("its log is empty").to_owned()
}

/// Every running dnsmasq started with our conf (the pid file's first),
/// with its command line.
pub(super) fn find_ours(paths: &Paths) -> Vec<(Process, Vec<Vec<u8>>)> {
    let mut conf_arg = b"--conf-file=".to_vec();
    conf_arg.extend_from_slice(paths.conf.as_os_str().as_bytes());
    let recorded = fs::read_to_string(&paths.pid).ok().and_then(|p| p.trim().parse::<i32>().ok());
    let others = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| Some(*p) != recorded);
    recorded
        .into_iter()
        .chain(others)
        .filter_map(|pid| {
            let p = Process::open(pid)?;
            let argv = p.cmdline().filter(|a| is_ours(a, &conf_arg))?;
            Some((p, argv))
        })
        .collect()
}

/// Whether a command line is a dnsmasq run with `conf_arg`.
fn is_ours(argv: &[Vec<u8>], conf_arg: &[u8]) -> bool {
    argv.first().is_some_and(|a0| a0.rsplit(|b| *b == b'/').next() == Some(b"dnsmasq"))
        && argv[1..].iter().any(|a| a == conf_arg)
}

/// A process held by a pidfd: signals reach it or nothing, never a
/// process that took its pid later.
#[derive(Debug)]
pub(super) struct Process {
    pid: i32,
    fd: OwnedFd,
}

impl Process {
    fn open(pid: i32) -> Option<Process> {
        if pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: fd is a new descriptor that nothing else owns.
        (fd >= 0).then(|| Process { pid, fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }

    /// Its command line, read after the pidfd was opened: if the pid was
    /// recycled in between, the pidfd names an exited process and this
    /// answers `None`.
    fn cmdline(&self) -> Option<Vec<Vec<u8>>> {
        let raw = fs::read(format!("/proc/{}/cmdline", self.pid)).ok()?;
        if raw.is_empty() || self.exited_within(Duration::ZERO) {
            return None;
        }
        Some(raw.strip_suffix(&[0]).unwrap_or(&raw).split(|b| *b == 0).map(<[u8]>::to_vec).collect())
    }

    fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal reads only its arguments; the fd is ours.
        let r = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0)
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Whether the process has exited, waiting at most `timeout` for it.
    fn exited_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = nix::poll::PollTimeout::try_from(left.as_millis().min(60_000) as u32)
                .unwrap_or(nix::poll::PollTimeout::MAX);
            let mut fds = [nix::poll::PollFd::new(self.fd.as_fd(), nix::poll::PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, ms) {
                Ok(n) if n > 0 => return true,
                Ok(_) if left.is_zero() => return false,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_GRACE`]; whether it exited.
    fn terminate(&self) -> bool {
        if self.signal(libc::SIGTERM).is_err() || self.exited_within(STOP_GRACE) {
            return true;
        }
        let _ = self.signal(libc::SIGKILL);
        self.exited_within(Duration::from_secs(2))
    }
}

/// `name` in `$PATH` or the system directories, as an executable file.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn account() -> Account {
        Account { user: "dnsmasq".into(), group: "nogroup".into(), uid: 999, gid: 65534 }
    }

    #[test]
    fn arguments_name_only_our_conf_and_the_user() {
        let p = Paths::new(Path::new("/run/zv/net/default"));
        let args = account().args(&p);
        let text: Vec<&str> = args.iter().map(|a| std::str::from_utf8(a).unwrap()).collect();
        assert_eq!(text, ["--conf-file=/run/zv/net/default/dnsmasq.conf", "--user=dnsmasq", "--group=nogroup"]);
    }

    #[test]
    fn command_lines_are_ours_by_conf_file() {
        let argv = |s: &str| s.split(' ').map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let conf = b"--conf-file=/run/a/dnsmasq.conf";
        assert!(is_ours(&argv("/usr/sbin/dnsmasq --conf-file=/run/a/dnsmasq.conf --user=x"), conf));
        assert!(is_ours(&argv("dnsmasq --conf-file=/run/a/dnsmasq.conf"), conf));
        assert!(!is_ours(&argv("dnsmasq --conf-file=/run/b/dnsmasq.conf"), conf));
        assert!(!is_ours(&argv("/usr/bin/notdnsmasq --conf-file=/run/a/dnsmasq.conf"), conf));
        assert!(!is_ours(&argv("sh -c dnsmasq --conf-file=/run/a/dnsmasq.conf"), conf));
        assert!(!is_ours(&[], conf));
    }

    #[test]
    fn own_process_is_open_and_running() {
        let me = Process::open(std::process::id() as i32).unwrap();
        assert!(!me.exited_within(Duration::from_millis(10)));
        assert!(me.cmdline().is_some_and(|a| !a.is_empty()));
        assert!(Process::open(0).is_none() && Process::open(-1).is_none());
    }

    #[test]
    fn unreachable_directories_are_named() {
        let d = tempfile::tempdir().unwrap();
        let inner = d.path().join("a/b");
        fs::create_dir_all(&inner).unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o711)).unwrap();
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        let mut nobody = account();
        nobody.uid = 65534;
        match reachable(&inner, &nobody) {
            Err(Error::Unreachable { path, .. }) if nix::unistd::geteuid().as_raw() != 65534 => {
                assert_eq!(path, fs::canonicalize(d.path().join("a")).unwrap())
            }
            other => panic!("{other:?}"),
        }
        fs::set_permissions(d.path().join("a"), fs::Permissions::from_mode(0o751)).unwrap();
        reachable(&inner, &nobody).unwrap();
    }

    #[test]
    fn writes_files_whole_with_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("names");
        write_atomic(&f, "a\n", nix::unistd::geteuid().as_raw(), 0o400).unwrap();
        write_atomic(&f, "b\n", nix::unistd::geteuid().as_raw(), 0o400).unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "b\n");
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o400);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn trims_a_long_log() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("dnsmasq.log");
        fs::write(&log, vec![b'x'; LOG_MAX as usize + 1]).unwrap();
        trim_log(&log);
        assert_eq!(fs::metadata(&log).unwrap().len(), 0);
        assert_eq!(fs::metadata(d.path().join("dnsmasq.log.1")).unwrap().len(), LOG_MAX + 1);
        fs::write(&log, b"short").unwrap();
        trim_log(&log);
        assert_eq!(fs::read(&log).unwrap(), b"short");
    }
}
