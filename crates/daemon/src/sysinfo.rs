//! `sysinfo`: host facts in SmartOS's field names, plus what zonevisor
//! chose on this host (pool backend, cgroup version, VM accelerator, what
//! a zone's `/proc` shows).
//!
//! SmartOS's VM keys (`VM Capable`, `Bhyve Capable`, `Bhyve Max Vcpus`,
//! `HVM API`) say what `vmadm create` accepts here, read from the check
//! create itself makes ([`crate::instance::runs`]: QEMU installed, and
//! OVMF for bhyve's UEFI); `CPU Virtualization` (vmx, svm or none) and
//! `HVM Accelerator` (kvm or tcg, with the reason: see
//! `zonevisor_vm::accel`) say how fast those VMs run.

use std::fs;

use serde_json::{json, Map, Value};

use zonevisor_spec::Brand;

use crate::instance::runs;
use crate::Daemon;

/// The most `vcpus` a bhyve payload may ask for.
const BHYVE_MAX_VCPUS: u32 = 256;

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn cpu_virtualization() -> &'static str {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    if flags.split_whitespace().any(|f| f == "vmx") {
        "vmx"
    } else if flags.split_whitespace().any(|f| f == "svm") {
        "svm"
    } else {
        "none"
    }
}

fn network_interfaces() -> Value {
    let mut out = Map::new();
    let Ok(rd) = fs::read_dir("/sys/class/net") else { return Value::Object(out) };
    let mut names: Vec<String> = rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    for name in names {
        if name == "lo" {
            continue;
        }
        let base = format!("/sys/class/net/{name}");
        let state = read_trim(&format!("{base}/operstate")).unwrap_or_else(|| "unknown".into());
        out.insert(
            name.clone(),
            json!({
                "MAC Address": read_trim(&format!("{base}/address")).unwrap_or_default(),
                "Link Status": state,
                "MTU": read_trim(&format!("{base}/mtu")).and_then(|m| m.parse::<u64>().ok()),
                "NIC Names": [],
            }),
        );
    }
    Value::Object(out)
}

fn disks() -> Value {
    let mut out = Map::new();
    let Ok(rd) = fs::read_dir("/sys/block") else { return Value::Object(out) };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        let sectors: u64 = read_trim(&format!("/sys/block/{name}/size")).and_then(|s| s.parse().ok()).unwrap_or(0);
        out.insert(name, json!({ "Size in GB": sectors * 512 / 1_000_000_000 }));
    }
    Value::Object(out)
}

/// The platform's name and version, as sysinfo's `Live Image` and each
/// VM's `platform_buildstamp` show it.
pub(crate) fn live_image() -> String {
    format!("zonevisor-{}", env!("CARGO_PKG_VERSION"))
}

impl Daemon {
    /// The host's UUID: the DMI product UUID, or one made once and kept in the pool.
    pub(crate) fn host_uuid(&self) -> String {
        if let Some(u) = read_trim("/sys/class/dmi/id/product_uuid") {
            return u.to_lowercase();
        }
        if let Ok(Some(u)) = self.store.host_get("uuid") {
            return u;
        }
        let u = uuid::Uuid::new_v4().to_string();
        let _ = self.store.host_set("uuid", &u);
        u
    }

    /// `GET /v1/sysinfo`.
    pub fn sysinfo(&self) -> Value {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_type = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let online = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let boot_time = fs::read_to_string("/proc/stat")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("btime"))
            .and_then(|l| l.split_whitespace().nth(1).map(String::from))
            .unwrap_or_default();
        let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let stats = self.pool.stats().ok();
        let caps = self.pool.capabilities();
        let accel = crate::instance::accelerator();
        let cgroup = match zonevisor_zone::cgroup::version() {
            zonevisor_zone::cgroup::CgroupVersion::V2 => "v2",
            _ => "v1",
        };
        let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        json!({
            "UUID": self.host_uuid(),
            "Hostname": hostname,
            "Live Image": live_image(),
            "System Type": "Linux",
            "Kernel Version": kernel,
            "Boot Time": boot_time,
            "Manufacturer": read_trim("/sys/class/dmi/id/sys_vendor"),
            "Product": read_trim("/sys/class/dmi/id/product_name"),
            "Serial Number": read_trim("/sys/class/dmi/id/product_serial"),
            // What `vmadm create` accepts here (the same table it reads);
            // the hardware's side is "CPU Virtualization" and "HVM Accelerator".
            "VM Capable": runs(Brand::Kvm),
            "Bhyve Capable": runs(Brand::Bhyve),
            "Bhyve Max Vcpus": if runs(Brand::Bhyve) { BHYVE_MAX_VCPUS } else { 0 },
            "HVM API": runs(Brand::Kvm) || runs(Brand::Bhyve),
            "HVM Accelerator": accel.kind.as_str(),
            "HVM Accelerator Reason": accel.reason,
            "CPU Type": cpu_type,
            "CPU Virtualization": cpu_virtualization(),
            "CPU Online Count": online,
            "CPU Total Cores": ncpu,
            "MiB of Memory": (mem_kib / 1024).to_string(),
            "Zpool": self.pool.name(),
            "Zpool Mountpoint": self.pool.mountpoint().display().to_string(),
            "Zpool Backend": caps.backend,
            "Zpool O(1) Clones": caps.o1_clone,
            "Zpool Quotas": caps.quota,
            "Zpool Size in GiB": stats.map(|s| s.size_bytes >> 30),
            "Zpool Free in GiB": stats.map(|s| s.free_bytes >> 30),
            "Zpool Reserve in MiB": stats.map(|s| s.reserved_bytes >> 20),
            "Cgroup Version": cgroup,
            "Proc Virtualization": self.lxcfs.describe(),
            // zfs_io_priority: weights honoured by the pool device's scheduler, or why not.
            "Fair I/O": self.pool.fair_io().unwrap_or_else(|why| match &self.io_governor {
                Some((dev, _)) => format!("governor on {}: operations per second throttled to zfs_io_priority shares ({why})", dev.display()),
                None => format!("none ({why})"),
            }),
            "Disks": disks(),
            "Network Interfaces": network_interfaces(),
            "Virtual Network Interfaces": {},
            "Daemon Uptime Seconds": self.started.elapsed().as_secs(),
        })
    }
}
