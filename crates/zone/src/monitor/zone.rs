//! The zone guest: what the monitor does for a zone that it does not do
//! for every instance.
//!
//! **Namespaces held for the zone's life.** At start the monitor creates
//! the zone's user namespace (when it has an id map) and network namespace
//! once, with a short-lived child (`clone(CLONE_NEWUSER | CLONE_NEWNET)`)
//! whose maps it writes, and keeps their descriptors. Every init (the
//! first, after a reboot, after `restart_init`) is started in them, so the
//! zone keeps its network namespace (its links and addresses) across
//! reboots, as a SmartOS zone keeps its datalinks:
//!
//! ```text
//!   monitor ── clone3(CLONE_INTO_CGROUP) ──> spawner ── setns(net), setns(user)
//!      ^                                        │ clone(CLONE_PARENT | NEWPID | NEWNS | NEWUTS | NEWIPC)
//!      │ init's pid on a pipe; spawner exits    v
//!      └──────────── parent of ──────────── init (child.rs: root, mounts, exec)
//! ```
//!
//! The spawner enters the held namespaces first, so the pid, mount, uts
//! and ipc namespaces its clone makes are owned by the zone's user
//! namespace (the zone's root has its capabilities there), and
//! `CLONE_PARENT` makes init the monitor's own child, reaped and
//! supervised like any main process.
//!
//! **Shutdown** runs the zone's own `poweroff` (or `halt`) inside it, in
//! its namespaces and cgroup (`child::run_helper`), and signals init
//! (SIGPWR, and systemd's SIGRTMIN+4) when it has none; a forced stop
//! kills init, whose pid namespace dies with it, and the cgroup.
//!
//! **Exit reasons.** In a pid namespace the kernel ends init with SIGHUP
//! for `reboot(RESTART)` and SIGINT for halt/power-off: a reboot and a halt.
//!
//! **Its own descriptors**: the seccomp listeners through which the
//! monitor answers the zone's `sysinfo(2)`, `statfs(2)` and `uname(2)`
//! (`notify.rs`), the inbox on which init's child and the shutdown
//! helpers send theirs, and the control connections that agreed to send
//! one (`sysinfo_listener`).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    boot, child, died_before_exec, drop_expired, fork_into, make_room, notify, pipe, send, statfs, sysinfo, tmpfs,
    uname, Conn, Core, Death, Guest, Intent,
};
use crate::control::{self, Reply, Request, LISTENER_INIT};
use crate::launch::LaunchError;
use crate::rootfs::{self, cvt};
use crate::{cgroup, enter, ExitReason, IdMap, Limits, ZoneSpec};

const SHUTDOWN_COMMANDS: [&str; 4] = ["sbin/poweroff", "usr/sbin/poweroff", "bin/poweroff", "sbin/halt"];

/// The zone's user namespace (without an id map: none, the zone runs as
/// the host's root) and network namespace, held by descriptor.
struct Namespaces {
    user: Option<OwnedFd>,
    net: OwnedFd,
}

/// What the monitor keeps for a zone (see the module documentation).
pub(super) struct ZoneGuest {
    spec: ZoneSpec,
    ns: Namespaces,
    /// Where init's child and the shutdown helpers send their seccomp
    /// listeners (a datagram socket pair: the monitor reads `inbox`, the
    /// children inherit `inbox_tx` until they exec).
    inbox: OwnedFd,
    inbox_tx: OwnedFd,
    listeners: notify::Listeners,
    /// What the answers to the zone's notified calls need.
    answers: notify::Answers,
    /// `CLOCK_BOOTTIME` when init started: the zone's uptime counts from it.
    booted: Duration,
    /// Shutdown helpers running in the zone.
    helpers: Vec<i32>,
    /// Connections that agreed to a `sysinfo_listener` request: their
    /// listener comes next.
    offers: Vec<Conn>,
    /// This boot's `user-script` (`boot.rs`), while it runs.
    boot: Option<boot::BootRun>,
    /// Where the boot's pipe is in the guest's poll set.
    boot_slot: Option<usize>,
}

impl ZoneGuest {
    /// Prepares what the zone keeps across its inits: the console's owner,
    /// the inbox, the user and network namespaces.
    pub(super) fn new(spec: ZoneSpec, core: &Core) -> Result<ZoneGuest, LaunchError> {
        if let Some(map) = spec.idmap {
            // The zone's root owns its console.
            nix::unistd::fchown(
                &core.console.slave,
                Some(nix::unistd::Uid::from_raw(map.host_uid)),
                Some(nix::unistd::Gid::from_raw(map.host_gid)),
            )
            .map_err(|e| LaunchError::new("console", io::Error::from(e)))?;
        }
        let (inbox, inbox_tx) = seqpacket_pair().map_err(|e| LaunchError::new("seccomp listener", e))?;
        let ns = hold_namespaces(spec.idmap)?;
        // Before init, so the zone boots with its network; a failure drops
        // the namespace, and the pairs made so far go with it.
        zonevisor_net::plan::wire_zone(&spec.nics, ns.net.as_fd(), Some(&spec.hostname))
            .map_err(|e| LaunchError::new("network", e))?;
        let root_fs = statfs::RootFs::open(&spec.zone_root, spec.idmap.map_or(0, |m| m.host_uid));
        Ok(ZoneGuest {
            spec,
            ns,
            inbox,
            inbox_tx,
            listeners: notify::Listeners::new(),
            answers: notify::Answers { sysinfo: sysinfo::Cache::default(), statfs: root_fs, uname: uname::Uts::open() },
            booted: Duration::ZERO,
            helpers: Vec::new(),
            boot: None,
            boot_slot: None,
            offers: Vec::new(),
        })
    }

    /// Takes the listeners waiting in the inbox.
    fn drain_inbox(&mut self) {
        let mut tag = [0u8; 1];
        while let Ok((1, fds)) = control::recv_fds(self.inbox.as_fd(), &mut tag) {
            if let Some(fd) = fds.into_iter().next() {
                self.listeners.add(fd, tag[0] == LISTENER_INIT);
            }
        }
    }

    /// The listener a `sysinfo_listener` client sends once we agreed; its
    /// end-of-file instead means it got none (nothing to serve).
    fn on_offer(&mut self, i: usize) {
        let mut byte = [0u8; 1];
        match control::recv_fds(self.offers[i].sock.as_fd(), &mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok((n, fds)) => {
                self.offers.swap_remove(i);
                if let (1, Some(fd)) = (n, fds.into_iter().next()) {
                    self.listeners.add(fd, false);
                }
            }
            Err(_) => {
                self.offers.swap_remove(i);
            }
        }
    }

    /// Starts init in the held namespaces (see the module documentation);
    /// returns its pid once it has exec'd. Init's seccomp listener is
    /// served once this returns (when the kernel gave one: the monitor's
    /// log says when not).
    fn spawn_init(&mut self, core: &Core) -> Result<i32, LaunchError> {
        // The previous init's filter is gone with its zone.
        self.listeners.drop_init();
        self.answers.sysinfo.refresh();
        let plan = child::Plan::new(
            &self.spec,
            core.console.slave.as_raw_fd(),
            &core.console.slave_path,
            self.inbox_tx.as_raw_fd(),
        )?;
        if let Some(userns) = &self.ns.user {
            // Files owned by 0.. on the pool are the zone's root's inside.
            rootfs::set_idmap(plan.trees.root.as_fd(), userns.as_fd()).map_err(|e| {
                LaunchError::new("idmapped zone root", format!("{}: {e}", self.spec.zone_root.display()))
            })?;
        }
        let (err_r, err_w) = pipe().map_err(step("clone"))?;
        let (go_r, go_w) = pipe().map_err(step("clone"))?;
        let (pid_r, pid_w) = pipe().map_err(step("clone"))?;
        let v2 = cgroup::v2_dir(&core.cgroup).and_then(|d| rootfs::open_dir(&d).ok());
        let (spawner, in_v2) = fork_into(v2.as_ref(), 0).map_err(step("clone"))?;
        if spawner == 0 {
            drop((err_r, go_w, pid_r, v2));
            spawner_main(&plan, &self.ns, err_w, go_r, pid_w);
        }
        drop((err_w, go_r, pid_w, v2));
        let mut pid_bytes = Vec::new();
        let _ = fs::File::from(pid_r).read_to_end(&mut pid_bytes);
        let mut status = 0;
        // SAFETY: reaping our own child, which exits right after reporting.
        unsafe { libc::waitpid(spawner, &mut status, 0) };
        let mut err = fs::File::from(err_r);
        let Ok(pid) = <[u8; 4]>::try_from(pid_bytes.as_slice()).map(i32::from_ne_bytes) else {
            let mut msg = Vec::new();
            let _ = err.read_to_end(&mut msg);
            return Err(setup_error(&msg, "the spawner ended without starting init"));
        };
        // The v1 hierarchies need the move (and v2 when clone3 could not
        // place the spawner there); it overlaps with the child's mounts.
        let mut moves: Vec<&PathBuf> = core.procs.iter().collect();
        if in_v2 {
            let dir = cgroup::v2_dir(&core.cgroup).unwrap_or_default().join("cgroup.procs");
            moves.retain(|p| **p != dir);
        }
        let mut go = fs::File::from(go_w);
        if let Some(n) = self.spec.limits.locked_bytes {
            // Raising a hard limit takes CAP_SYS_RESOURCE on the host, which
            // init will not have: set it from here while init's ids are
            // still ours. Where we lack it too, init caps it at the host's.
            set_memlock(pid, n);
        }
        // First go: init may become the zone's root. Second go: it is in
        // the zone's (v1) cgroups, moved while it builds its root.
        let handoff = go.write_all(b"1").map_err(step("user namespace")).and_then(|()| {
            moves.iter().try_for_each(|f| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .and_then(|mut file| file.write_all(pid.to_string().as_bytes()))
                    .map_err(|e| LaunchError::new("join cgroup", format!("{}: {e}", f.display())))
            })
        });
        if handoff.is_ok() {
            let _ = go.write_all(b"1");
        }
        drop(go);
        drop(plan);
        let mut msg = Vec::new();
        let _ = err.read_to_end(&mut msg);
        if msg.is_empty() && died_before_exec(pid) {
            msg = b"zone setup\0init died before exec (see monitor.log)".to_vec();
        }
        if msg.is_empty() {
            // init has exec'd: its listener, sent before exec, is waiting.
            self.booted = sysinfo::boottime();
            self.drain_inbox();
            if handoff.is_ok() && !self.listeners.has_init() {
                log!("init runs without a seccomp listener: sysinfo(2) and statfs(2) in the zone show the host's memory and the pool");
            }
            return handoff.map(|()| pid);
        }
        // SAFETY: reaping our own child (init, through CLONE_PARENT).
        unsafe { libc::waitpid(pid, &mut status, 0) };
        handoff?;
        Err(setup_error(&msg, ""))
    }

    /// Runs the zone's poweroff (or halt) inside it, or signals init when it
    /// has none; a docker zone's command gets SIGTERM.
    fn run_shutdown(&mut self, core: &Core) {
        let init = core.pid;
        if self.spec.docker.is_some() {
            // SmartOS stops a docker zone as docker stops a container:
            // SIGTERM to its command, SIGKILL when the time is up.
            log!("signalling the docker command (init {init}) with SIGTERM");
            if init > 0 {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(init, libc::SIGTERM) };
            }
            return;
        }
        let found = rootfs::open_dir(Path::new(&format!("/proc/{init}/root"))).ok().and_then(|root| {
            SHUTDOWN_COMMANDS.iter().find(|c| {
                rootfs::open_in(root.as_fd(), Path::new(c), libc::O_PATH, 0)
                    .is_ok_and(|f| rootfs::is_dir(f.as_fd()).is_ok_and(|d| !d))
            })
        });
        match found.map(|c| self.spawn_helper(core, &format!("/{c}"))) {
            Some(Ok(pid)) => {
                log!("running /{} in the zone (pid {pid})", found.unwrap_or(&""));
                self.helpers.push(pid);
            }
            Some(Err(e)) => {
                log!("cannot run the zone's shutdown command: {e}");
                signal_shutdown(init);
            }
            None => signal_shutdown(init),
        }
    }

    /// Forks a helper that runs `path` in the zone (see [`child::run_helper`]).
    fn spawn_helper(&self, core: &Core, path: &str) -> io::Result<i32> {
        // Opened here, so a zone that is gone is an error for the caller.
        let entry = enter::Entry::open(core.pid)?
            .cgroup_procs(core.procs.iter().cloned())
            .drop_capabilities()?
            .sysinfo_to(self.inbox_tx.try_clone()?);
        let exec = enter::Exec::new(path, &[path], &child::zone_env())?
            .stdio(enter::Stdio::Console(core.console.slave.as_raw_fd()))
            .umask(0o022);
        // SAFETY: the monitor is single-threaded; the child never returns from run_helper.
        let pid = cvt(unsafe { libc::fork() })?;
        if pid == 0 {
            child::run_helper(entry, &exec);
        }
        Ok(pid)
    }
}

impl Guest for ZoneGuest {
    fn noun(&self) -> &'static str {
        "zone"
    }

    fn main_name(&self) -> &'static str {
        "init"
    }

    fn spawn(&mut self, core: &Core) -> Result<i32, LaunchError> {
        self.spawn_init(core)
    }

    fn ask_shutdown(&mut self, core: &Core) {
        self.run_shutdown(core)
    }

    fn force_down(&mut self, core: &Core) -> Option<Duration> {
        self.kill(core);
        None
    }

    fn kill(&mut self, core: &Core) {
        if core.pid > 0 {
            // SAFETY: kill(2) has no memory-safety preconditions. Killing a PID namespace's init kills the namespace.
            unsafe { libc::kill(core.pid, libc::SIGKILL) };
        }
        // Not before a reboot: on Linux 6.18 a cgroup once killed through
        // cgroup.kill makes every later CLONE_INTO_CGROUP child die at birth
        // (kill_seq is sampled before the target cgroup is known).
        if core.intent == Intent::Stop {
            if let Err(e) = cgroup::kill(&core.cgroup) {
                log!("killing cgroup: {e}");
            }
        }
    }

    fn death_of(&mut self, _core: &Core, status: i32) -> Death {
        if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            return Death::exited(code, format!("init exited with status {code}"));
        }
        let sig = libc::WTERMSIG(status);
        match sig {
            libc::SIGHUP => Death::signaled(ExitReason::Rebooted, sig, "init rebooted the zone".to_owned()),
            libc::SIGINT => Death::signaled(ExitReason::Halted, sig, "init halted the zone".to_owned()),
            _ => Death::signaled(ExitReason::Signaled, sig, format!("init was killed by signal {sig}")),
        }
    }

    fn restarts_on_exit(&self) -> bool {
        self.spec.restart_init
    }

    fn booted(&mut self, core: &Core, vm: &serde_json::Value) {
        // The last boot's script, if it still runs, goes with its zone.
        self.boot = None;
        match boot::BootRun::start(core, vm, &self.inbox_tx) {
            Ok(run) => self.boot = run,
            Err(e) => log!("user-script and root_authorized_keys: {e}"),
        }
    }

    fn reaped(&mut self, core: &Core, pid: i32, status: i32) {
        if let Some(b) = self.boot.as_mut().filter(|b| b.pid == pid) {
            b.ended(status);
            log!("user-script helper {pid} ended: {status:#x}");
            self.boot = None;
            return;
        }
        if let Some(i) = self.helpers.iter().position(|h| *h == pid) {
            self.helpers.swap_remove(i);
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            log!("shutdown helper {pid} ended: {status:#x}");
            if matches!(code, Some(126 | 127)) && core.pid > 0 {
                signal_shutdown(core.pid);
            }
        }
    }

    fn push_pollfds(&mut self, pfds: &mut Vec<libc::pollfd>) {
        let base = pfds.len();
        pfds.push(libc::pollfd { fd: self.inbox.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        for c in &self.offers {
            pfds.push(libc::pollfd { fd: c.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        self.listeners.push_pollfds(pfds);
        self.boot_slot = self.boot.as_ref().and_then(boot::BootRun::fd).map(|fd| {
            pfds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
            pfds.len() - 1 - base
        });
    }

    fn on_poll(&mut self, core: &Core, pfds: &[libc::pollfd]) {
        if let (Some(i), Some(b)) = (self.boot_slot, self.boot.as_mut()) {
            if pfds.get(i).is_some_and(|p| p.revents != 0) {
                b.on_output();
            }
        }
        let pfds = &pfds[..self.boot_slot.unwrap_or(pfds.len()).min(pfds.len())];
        let served_from = 1 + self.offers.len();
        // First: nothing below changes the listeners before this reads their events.
        let zone = sysinfo::Zone { cgroup: &core.cgroup, booted: self.booted };
        let answers = &mut self.answers;
        self.listeners.on_events(&pfds[served_from.min(pfds.len())..], &mut |call| answers.answer(call, &zone));
        for i in (0..self.offers.len()).rev() {
            if pfds.get(1 + i).is_some_and(|p| p.revents != 0) {
                self.on_offer(i);
            }
        }
        if pfds.first().is_some_and(|p| p.revents != 0) {
            self.drain_inbox();
        }
        if drop_expired(&mut self.offers, Instant::now()) > 0 {
            log!("dropped a sysinfo_listener connection that sent no listener");
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        [self.listeners.wake_at(), self.offers.iter().map(|c| c.deadline).min()].into_iter().flatten().min()
    }

    fn on_request(&mut self, core: &Core, sock: UnixStream, req: Request) {
        match req {
            Request::SysinfoListener => {
                if !self.listeners.has_room() {
                    return send(&sock, &Reply::error("too many seccomp listeners"));
                }
                send(&sock, &Reply { ok: true, ..Reply::default() });
                if sock.set_nonblocking(true).is_ok() {
                    make_room(&mut self.offers);
                    self.offers.push(Conn::new(sock));
                }
            }
            Request::SetTmpfs { bytes } => {
                let old = self.spec.tmpfs_bytes.unwrap_or(0);
                if old > 0 && bytes > 0 && old != bytes {
                    if let Err(e) = tmpfs::resize(core.pid, bytes) {
                        return send(&sock, &Reply::error(e.to_string()));
                    }
                    log!("/tmp resized to {} MiB", bytes >> 20);
                } else if old != bytes {
                    log!("tmpfs set to {} MiB from the zone's next boot", bytes >> 20);
                }
                // What a reboot in place mounts.
                self.spec.tmpfs_bytes = Some(bytes).filter(|b| *b > 0);
                send(&sock, &Reply { ok: true, ..Reply::default() })
            }
            Request::SetResolvers { resolvers } => {
                // What the next boots write, too.
                self.spec.resolvers = Some(resolvers.clone());
                let text = child::resolv_conf(self.spec.dns_domain.as_deref(), &resolvers);
                match rewrite_resolv_conf(core, &text) {
                    Ok(()) => {
                        log!("resolvers set to {}", resolvers.join(", "));
                        send(&sock, &Reply { ok: true, ..Reply::default() })
                    }
                    Err(e) => send(&sock, &Reply::error(format!("rewriting /etc/resolv.conf: {e}"))),
                }
            }
            other => send(&sock, &Reply::error(format!("{other:?} is not a request for a zone"))),
        }
    }

    fn limits_applied(&mut self, core: &Core, limits: &Limits) {
        self.answers.sysinfo.refresh();
        if let Some(n) = limits.locked_bytes {
            // Init's limit, inherited by what it starts from now on.
            set_memlock(core.pid, n);
        }
        let l = &mut self.spec.limits;
        l.locked_bytes = limits.locked_bytes.or(l.locked_bytes);
    }
}

fn step(name: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |e| LaunchError::new(name, e)
}

/// The `step\0message` a child wrote on its error pipe (`otherwise` when it wrote nothing).
fn setup_error(msg: &[u8], otherwise: &str) -> LaunchError {
    if msg.is_empty() {
        return LaunchError::new("zone setup", otherwise);
    }
    let text = String::from_utf8_lossy(msg);
    let (s, m) = text.split_once('\0').unwrap_or(("zone setup", &text));
    LaunchError::new(s, m)
}

/// Creates the zone's user namespace (with `map`) and network namespace
/// and returns their descriptors: a child clones itself into both, the
/// monitor writes the maps (root in the zone is `map.host_uid`;
/// `setgroups` stays allowed, as we write them with the host's
/// privileges), opens the namespaces and lets the child go.
fn hold_namespaces(map: Option<IdMap>) -> Result<Namespaces, LaunchError> {
    let s = "namespaces";
    let (r, w) = pipe().map_err(step(s))?;
    let mut flags = libc::CLONE_NEWNET as u64;
    if map.is_some() {
        // Created first, the user namespace owns the network namespace.
        flags |= libc::CLONE_NEWUSER as u64;
    }
    // SAFETY: a fork-like clone of the single-threaded monitor; the child
    // only waits for end-of-file on a pipe and _exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        drop(w);
        let mut byte = 0u8;
        // SAFETY: reading one byte into a local; _exit without the monitor's destructors.
        unsafe {
            libc::read(r.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
            libc::_exit(0)
        }
    }
    drop(r);
    let pid = cvt(pid).map_err(step(s))? as i32;
    let held = (|| {
        let user = match map {
            Some(map) => {
                fs::write(format!("/proc/{pid}/uid_map"), format!("0 {} {}\n", map.host_uid, map.count))?;
                fs::write(format!("/proc/{pid}/gid_map"), format!("0 {} {}\n", map.host_gid, map.count))?;
                Some(OwnedFd::from(fs::File::open(format!("/proc/{pid}/ns/user"))?))
            }
            None => None,
        };
        let net = OwnedFd::from(fs::File::open(format!("/proc/{pid}/ns/net"))?);
        Ok::<_, io::Error>(Namespaces { user, net })
    })();
    drop(w);
    let mut status = 0;
    // SAFETY: reaping our own child, which exits on end-of-file.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    held.map_err(|e| LaunchError::new("user namespace", e))
}

/// The spawner (see the module documentation): enters the zone's held
/// namespaces, clones init as the monitor's child, reports init's pid on
/// `pid_w` and exits; a failure goes to `err` as `step\0message`. Never
/// returns.
fn spawner_main(plan: &child::Plan, ns: &Namespaces, err: OwnedFd, go: OwnedFd, pid_w: OwnedFd) -> ! {
    let res = (|| {
        // SAFETY: setns on descriptors the monitor holds, in this single-threaded child.
        cvt(unsafe { libc::setns(ns.net.as_raw_fd(), libc::CLONE_NEWNET) }).map_err(|e| ("network namespace", e))?;
        if let Some(user) = &ns.user {
            // SAFETY: as above.
            cvt(unsafe { libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) }).map_err(|e| ("user namespace", e))?;
        }
        let flags =
            (libc::CLONE_PARENT | libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC)
                as u64;
        // SAFETY: a fork-like clone; the child never returns from child::run.
        let pid =
            unsafe { libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
        Ok(cvt(pid).map_err(|e| ("clone", e))? as i32)
    })();
    match res {
        Ok(0) => {
            drop(pid_w);
            child::run(plan, err, go)
        }
        Ok(pid) => {
            let _ = fs::File::from(pid_w).write_all(&pid.to_ne_bytes());
        }
        Err((s, e)) => {
            let _ = fs::File::from(err).write_all(format!("{s}\0{e}").as_bytes());
        }
    }
    // SAFETY: _exit ends this forked process without running the monitor's destructors.
    unsafe { libc::_exit(0) }
}

fn signal_shutdown(init: i32) {
    if init <= 0 {
        return;
    }
    let systemd = fs::read_link(format!("/proc/{init}/exe"))
        .is_ok_and(|p| p.as_os_str().as_bytes().windows(7).any(|w| w == b"systemd"));
    log!("signalling init {init} to shut down{}", if systemd { " (systemd)" } else { "" });
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(init, libc::SIGPWR);
        if systemd {
            libc::kill(init, libc::SIGRTMIN() + 4);
        }
    }
}

/// A close-on-exec `SOCK_SEQPACKET` pair, the first end nonblocking.
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array we own.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    // SAFETY: freshly created descriptors, owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    cvt(unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) })?;
    Ok((r, w))
}

/// Sets `pid`'s RLIMIT_MEMLOCK (`max_locked_memory`) to `bytes`. Without
/// CAP_SYS_RESOURCE the hard limit cannot be raised, so the soft limit is
/// then capped at the hard one the host gives.
fn set_memlock(pid: i32, bytes: u64) {
    let mut lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: prlimit reads and writes only the rlimit structs we pass.
    unsafe {
        if libc::prlimit(pid, libc::RLIMIT_MEMLOCK, &lim, std::ptr::null_mut()) != 0
            && libc::prlimit(pid, libc::RLIMIT_MEMLOCK, std::ptr::null(), &mut lim) == 0
        {
            lim.rlim_cur = lim.rlim_max.min(bytes);
            libc::prlimit(pid, libc::RLIMIT_MEMLOCK, &lim, std::ptr::null_mut());
        }
    }
}

/// Replaces the running zone's `/etc/resolv.conf` from inside it (its
/// namespaces and root, as its root user): a child enters and writes.
fn rewrite_resolv_conf(core: &Core, text: &str) -> io::Result<()> {
    let entry = enter::Entry::open(core.pid)?.chroot()?.drop_capabilities()?;
    // SAFETY: the monitor is single-threaded; the child never returns.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        child::write_resolv_conf(entry, text);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child, which exits at once.
    cvt(unsafe { libc::waitpid(pid, &mut status, 0) })?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other("the zone's file could not be written (see monitor.log)"))
    }
}
