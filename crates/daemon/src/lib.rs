//! zonevisord: the daemon behind `vmadm`, `imgadm` and `sysinfo`.
//!
//! It owns the pool (through `zonevisor-pool`), the state store (SQLite in
//! the pool), images, and the instance lifecycle; running zones belong to
//! their monitor processes (`zonevisor-zone`), so the daemon can restart
//! without touching them. The API is JSON over HTTP on a Unix socket, as
//! defined once in `zonevisor-api`.
//!
//! Start-up: take the root's lock (one daemon per root), open the pool,
//! open the store, make sure lxcfs serves `<root>/run/lxcfs` (see
//! [`lxcfs`]), recover (undo interrupted creates and installs, re-adopt
//! running zones, autoboot after a host reboot), then serve.

mod events;
#[doc(hidden)]
pub mod fuzzing;
mod fw;
mod images;
mod imgapi;
mod imgapi_serve;
mod imgfile;
mod instance;
pub mod layer;
mod lxcfs;
mod metadata;
mod net;
pub mod oci;
mod request;
mod server;
mod store;
mod sysinfo;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use anyhow::Context;
use clap::Parser;
use zonevisor_api::ApiError;
use zonevisor_pool::{Pool, PoolConfig, PoolSource};

pub use store::StoreError;

/// `zonevisord` command line.
#[derive(Clone, Debug, Parser)]
#[command(name = "zonevisord", version, about = "zonevisor's daemon: zones on a copy-on-write pool, driven by vmadm")]
pub struct Config {
    /// Directory holding everything: the pool, its database, sockets, runtime files.
    #[arg(long, default_value = zonevisor_api::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Pool backend: btrfs (default) or dir (no O(1) clones, no quotas).
    #[arg(long, default_value = "btrfs", value_parser = ["btrfs", "dir"])]
    pub pool_backend: String,
    /// Put the btrfs pool on this block device (formatted if it holds no filesystem).
    #[arg(long, conflicts_with = "pool_mounted")]
    pub pool_device: Option<PathBuf>,
    /// Use the btrfs filesystem already mounted at <root>/zones.
    #[arg(long)]
    pub pool_mounted: bool,
    /// Size of the sparse loop file (<root>/zones.img) when it is created, e.g. 64G.
    #[arg(long, default_value = "64G", value_parser = parse_size)]
    pub pool_size: u64,
    /// The API socket (default <root>/run/zonevisord.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The monitor binary (default: zonevisor-monitor beside this program).
    #[arg(long)]
    pub monitor: Option<PathBuf>,
    /// The guest tools' static binary, shown in zones as
    /// /native/usr/sbin/mdata-get, ... (default: mdata beside this program).
    #[arg(long)]
    pub mdata: Option<PathBuf>,
    /// Parent cgroup of the zones' cgroups.
    #[arg(long, default_value = "zonevisor")]
    pub cgroup_parent: String,
    /// DNS servers the default network's DNS forwards to (repeatable;
    /// default: the host's /etc/resolv.conf).
    #[arg(long = "dns-upstream", value_name = "IP")]
    pub dns_upstream: Vec<std::net::IpAddr>,
    /// Serve the installed images as an IMGAPI image source on this
    /// address (e.g. 0.0.0.0:8080), for other hosts' `imgadm import`.
    /// Off by default; unauthenticated and read-only.
    #[arg(long, value_name = "ADDR:PORT")]
    pub imgapi_listen: Option<std::net::SocketAddr>,
}

/// Sizes like `64G`, `512M`, `1T` or a byte count.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix in {s:?}; use K, M, G or T")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// The daemon's shared state.
pub struct Daemon {
    root: PathBuf,
    pool: Arc<Pool>,
    store: store::Store,
    /// Everything the instance lifecycle does to the kernel.
    host: Box<dyn instance::host::Host>,
    cgroup_parent: String,
    runtime: instance::Runtime,
    events: events::Events,
    lxcfs: Arc<lxcfs::Lxcfs>,
    /// Nic tags, the default network, the ruleset.
    net: net::Net,
    rt: tokio::runtime::Handle,
    me: Weak<Daemon>,
    started: std::time::Instant,
    /// The pool's block device and its `major:minor` when zones' fair I/O
    /// is the governor's (the device has no `bfq`), else `None`.
    io_governor: Option<(PathBuf, String)>,
    /// The metadata service's host side.
    metadata: metadata::Metadata,
    /// The image source's files being made (`--imgapi-listen`).
    imgapi_making: imgapi_serve::Making,
    /// Image sources and imports: per-image locks, the sources' lock.
    imgapi: imgapi::State,
}

/// The whole error chain of `e`, joined with `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let msg = src.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = src.source();
    }
    s
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UuidTaken { .. } | StoreError::NicTaken { .. } => ApiError::conflict(e.to_string()),
            _ => ApiError::internal(chain(&e)),
        }
    }
}

/// Creates `dir` if needed and makes it root's alone (0700): nothing under
/// the daemon's root is for unprivileged host users (the pool holds the
/// zones' files, `run/` their monitors' sockets and consoles).
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", dir.display()))
}

/// Holds the root's lock for the daemon's lifetime.
struct RootLock(#[allow(dead_code)] std::fs::File);

fn lock_root(root: &Path) -> anyhow::Result<RootLock> {
    let run = root.join("run");
    private_dir(&run)?;
    let path = run.join("zonevisord.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        anyhow::bail!("another zonevisord (pid {}) is already running on root {}", pid.trim(), root.display());
    }
    file.set_len(0)?;
    std::io::Write::write_all(&mut &file, format!("{}\n", std::process::id()).as_bytes())?;
    Ok(RootLock(file))
}

fn default_monitor() -> PathBuf {
    beside_me("zonevisor-monitor")
}

/// `name` in this program's directory.
fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join(name))).unwrap_or_else(|| PathBuf::from(name))
}

/// Keeps the pool's reserve for the state store ([`Pool::keep_reserve`]):
/// the datasets' limit follows the pool's free space (which the
/// filesystem's own metadata also takes), refreshed every 30 s and after
/// each image install. The limit bounds the datasets in between: a refresh
/// only corrects its drift.
async fn keep_reserve(d: Arc<Daemon>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = d.clone();
        let _ = tokio::task::spawn_blocking(move || d.keep_reserve()).await;
    }
}

/// Fair I/O where the pool's device has no `bfq`: every
/// [`zonevisor_zone::fairio::TICK`], the governor holds the running zones
/// doing I/O on it to their `zfs_io_priority` shares.
async fn govern_io(d: Arc<Daemon>, dev: String) {
    let governor = Arc::new(std::sync::Mutex::new(zonevisor_zone::fairio::Governor::default()));
    let mut tick = tokio::time::interval(zonevisor_zone::fairio::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (d, g, dev) = (d.clone(), governor.clone(), dev.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let zones = d.io_zones();
            g.lock().unwrap_or_else(|p| p.into_inner()).tick(&dev, &zones);
        })
        .await;
    }
}

#[cfg(test)]
impl Daemon {
    /// A daemon on `dir` (a `dir` pool, a store) whose instances live on
    /// `host`, for the lifecycle's tests: no root, no lxcfs, no server.
    pub(crate) fn for_tests(
        dir: &Path,
        host: Box<dyn instance::host::Host>,
        rt: tokio::runtime::Handle,
    ) -> Arc<Daemon> {
        let config = PoolConfig { name: "zones".into(), mountpoint: dir.join("zones"), source: PoolSource::Dir };
        let pool = Arc::new(Pool::open(&config).expect("a dir pool opens"));
        let store = store::Store::open(&dir.join("zonevisor.db")).expect("the store opens");
        Arc::new_cyclic(|me| Daemon {
            root: dir.to_path_buf(),
            pool,
            store,
            host,
            cgroup_parent: "zonevisor-test".into(),
            runtime: instance::Runtime::default(),
            events: events::Events::default(),
            lxcfs: Arc::new(lxcfs::Lxcfs::new(&dir.join("run"))),
            net: net::Net::new(dir, Vec::new(), false),
            rt,
            me: me.clone(),
            started: std::time::Instant::now(),
            io_governor: None,
            metadata: metadata::Metadata::default(),
            imgapi_making: imgapi_serve::Making::default(),
            imgapi: imgapi::State::default(),
        })
    }
}

impl Daemon {
    /// Refreshes the pool's reserve (see [`Pool::keep_reserve`]); a
    /// failure is logged, and the previous limit stays.
    pub(crate) fn keep_reserve(&self) {
        if let Err(e) = self.pool.keep_reserve() {
            tracing::warn!(error = %chain(&e), "cannot refresh the pool's reserve");
        }
    }
}

/// Whether the log has colours: only on a terminal (a log file or the
/// journal gets plain text), and not when `NO_COLOR` is set and not empty.
fn log_colours(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Runs the daemon until SIGTERM or SIGINT. Zones keep running after it exits.
pub fn run(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZONEVISOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours(std::io::IsTerminal::is_terminal(&std::io::stderr()), std::env::var_os("NO_COLOR")))
        .init();
    let root =
        if config.root.is_absolute() { config.root.clone() } else { std::env::current_dir()?.join(&config.root) };
    private_dir(&root)?;
    let _lock = lock_root(&root)?;
    let source = if config.pool_backend == "dir" {
        PoolSource::Dir
    } else if let Some(dev) = &config.pool_device {
        PoolSource::Device(dev.clone())
    } else if config.pool_mounted {
        PoolSource::Mounted
    } else {
        PoolSource::LoopFile { path: root.join("zones.img"), size_bytes: config.pool_size }
    };
    let pool_config = PoolConfig { name: "zones".into(), mountpoint: root.join("zones"), source };
    let pool = Pool::open(&pool_config).context("opening the pool")?;
    let io_governor = match pool.fair_io() {
        Ok(_) => None,
        Err(why) => match pool.block_device() {
            Some(dev) => {
                tracing::info!(pool = %pool.mountpoint().display(), device = %dev.0.display(), "zfs_io_priority: {why}; throttling zones to their shares instead");
                Some(dev)
            }
            None => {
                tracing::warn!(pool = %pool.mountpoint().display(), "zfs_io_priority is not enforced: {why}");
                None
            }
        },
    };
    let store = store::Store::open(&pool.config_dir().join("zonevisor.db")).context("opening the state database")?;
    let monitor_exe = config.monitor.clone().unwrap_or_else(default_monitor);
    anyhow::ensure!(monitor_exe.is_file(), "monitor binary {} not found (use --monitor)", monitor_exe.display());
    let socket = config.socket.clone().unwrap_or_else(|| zonevisor_api::socket_path(&root));
    let mdata_exe = config.mdata.clone().unwrap_or_else(|| beside_me("mdata"));
    let metadata = metadata::Metadata::prepare(&root, socket.clone(), Some(&mdata_exe));

    let pool = Arc::new(pool);
    let lxcfs = Arc::new(lxcfs::Lxcfs::new(&root.join("run")));
    let host = instance::host::RealHost { pool: pool.clone(), monitor_exe, lxcfs: lxcfs.clone() };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(64).enable_all().build()?;
    let daemon = Arc::new_cyclic(|me| Daemon {
        root: root.clone(),
        pool,
        store,
        host: Box::new(host),
        cgroup_parent: config.cgroup_parent.clone(),
        runtime: instance::Runtime::default(),
        events: events::Events::default(),
        lxcfs,
        net: net::Net::new(&root, config.dns_upstream.clone(), net::available()),
        rt: rt.handle().clone(),
        me: me.clone(),
        started: std::time::Instant::now(),
        io_governor,
        metadata,
        imgapi_making: imgapi_serve::Making::default(),
        imgapi: imgapi::State::default(),
    });
    tracing::info!(root = %root.display(), pool = ?daemon.pool, "zonevisord starting");
    {
        let d = daemon.clone();
        rt.block_on(async move {
            tokio::task::spawn_blocking(move || {
                d.lxcfs.start();
                d.start_networks();
                d.recover()
            })
            .await
        })??;
    }
    rt.spawn(keep_reserve(daemon.clone()));
    if let Some((_, dev)) = daemon.io_governor.clone() {
        rt.spawn(govern_io(daemon.clone(), dev));
    }
    if let Some(addr) = config.imgapi_listen {
        // Bound now, so that a taken address fails the start, not later.
        let d = daemon.clone();
        let listener =
            rt.block_on(tokio::net::TcpListener::bind(addr)).with_context(|| format!("--imgapi-listen {addr}"))?;
        rt.spawn(async move {
            if let Err(e) = imgapi_serve::serve(d, listener).await {
                tracing::error!(error = %e, "the image source stopped");
            }
        });
    }
    let served = rt.block_on(server::serve(daemon.clone(), socket));
    // Running zones' /proc files point into lxcfs: it stays while any runs.
    if daemon.runtime.running.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
        daemon.lxcfs.stop();
    }
    served
}
