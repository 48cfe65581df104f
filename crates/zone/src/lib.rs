//! The zone runtime.
//!
//! Each running zone is owned by one **monitor** process (`zonevisor-monitor`,
//! SmartOS's zoneadmd): the daemon writes a [`ZoneSpec`] and calls
//! [`launch()`], which starts a detached monitor and returns once the zone's
//! init has been exec'd (or with the step that failed, having undone
//! everything). The monitor creates the zone's cgroup, its namespaces (user,
//! pid, mount, uts, ipc, net, cgroup; root in the zone is an unprivileged
//! host uid, see [`security`]), its root (`pivot_root` into an idmapped
//! mount of the dataset, minimal `/dev`, masked `/proc` and `/sys` with
//! [`lxcfs`]'s views of the zone's limits, a sized `/tmp`, bind mounts), a console
//! pty whose output goes to a bounded log, and then waits on init. It answers
//! [`control`] requests (status, stop, reboot, kill, limits, the size of `/tmp`, console, seccomp listeners) on a Unix socket in the
//! zone's run directory, so the daemon can restart without touching zones.
//!
//! ```text
//!   daemon ── launch() ──> monitor ── clone(NEW*) ──> init (PID 1 in the zone)
//!     │                      │  cgroup, pty, waitpid
//!     └── control socket ────┘  run_dir/{monitor.sock,monitor.pid,console.log,exit.json}
//! ```
//!
//! When init exits the monitor records why in `exit.json` (halt, reboot,
//! exit code, signal), restarts the zone where init asked for a reboot (or
//! `restart_init` asks), or else kills what is left in the cgroup, removes
//! it, and exits.
//!
//! [`enter`] is the way into a running zone from the host: `zlogin` uses it,
//! and so does the monitor to run the zone's `poweroff` for a graceful stop.

pub mod cgroup;
pub mod control;
pub mod cpuset;
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

pub use launch::{launch, LaunchError, Launched};
pub use rootfs::unescape_mountinfo;
pub use spec::{BindMount, ExitReason, ExitRecord, IdMap, Limits, ZoneSpec};
