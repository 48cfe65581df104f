//! The instance runtime: zones, and the supervision of QEMU VMs.
//!
//! Each running instance is owned by one **monitor** process
//! (`zonevisor-monitor`, SmartOS's zoneadmd): the daemon writes a
//! [`ZoneSpec`] and calls [`launch()`], or a [`QemuSpec`] and calls
//! [`launch_qemu()`], which start a detached monitor and return once the
//! instance's main process runs (or with the step that failed, having
//! undone everything). The monitor creates the cgroup with its limits and a
//! console pty whose output goes to a bounded log, has its guest start
//! the main process, and then waits on it:
//!
//! - a **zone**: its user and network namespaces, held for its whole life,
//!   and per boot its pid, mount, uts, ipc and cgroup namespaces (root in
//!   the zone is an unprivileged host uid, see [`security`]), its root
//!   (`pivot_root` into an idmapped mount of the dataset, minimal `/dev`,
//!   masked `/proc` and `/sys` with [`lxcfs`]'s views of the zone's limits,
//!   a sized `/tmp`, bind mounts), and init;
//! - a **VM**: QEMU in a jail (its own mount namespace showing only `/usr`,
//!   its disks and sockets; an unprivileged uid; no capabilities), spoken
//!   to over QMP (`zonevisor_vm::qmp`).
//!
//! It answers [`control`] requests (status, stop, reboot, kill, limits,
//! console; a zone's `/tmp` and seccomp listeners; a VM's QMP commands) on
//! a Unix socket in the instance's run directory, so the daemon can
//! restart without touching instances.
//!
//! ```text
//!   daemon ── launch() ──────> monitor ── spawner ── clone(NEW*) ──> init (PID 1 in the zone)
//!          ── launch_qemu() ─>   │  cgroup, pty, waitpid ── fork, jail ──> QEMU ── QMP ──┐
//!     │                          │<──────────────────────────────────────────────────────┘
//!     └── control socket ────────┘  run_dir/{monitor.sock,monitor.pid,console.log,exit.json,qemu.log}
//! ```
//!
//! When the main process exits the monitor records why in `exit.json`
//! (halt or power-off, reboot, exit code, signal), starts it again where
//! the instance rebooted (or `restart_init` asks), or else kills what is
//! left in the cgroup, removes it, and exits.
//!
//! [`enter`] is the way into a running zone from the host: `zlogin` uses it,
//! and so does the monitor to run the zone's `poweroff` for a graceful stop.

pub mod cgroup;
pub mod control;
pub mod cpuset;
pub mod docker;
pub mod enter;
pub mod fairio;
mod launch;
pub mod lofs;
pub mod lxcfs;
pub mod monitor;
mod qgroup;
mod rootfs;
pub mod security;
mod spec;

pub use launch::{launch, launch_qemu, LaunchError, Launched};
pub use rootfs::unescape_mountinfo;
pub use spec::DockerInit;
pub use spec::{BindMount, ExitReason, ExitRecord, IdMap, Jail, JailBind, Limits, MetadataSpec, QemuSpec, ZoneSpec};
