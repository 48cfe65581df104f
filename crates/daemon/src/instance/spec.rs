//! The typed instance spec: the stored VM object read once, where the
//! driver is chosen.
//!
//! The store keeps SmartOS's VM object as JSON (it is what `vmadm get`
//! shows, and payloads carry properties this release does not act on).
//! Everything the lifecycle and the drivers act on is read from it here,
//! once, into [`InstanceSpec`]: a common part (identity, resource
//! controls, quota), the NICs and metadata, and a [`Kind`] holding the zone's
//! or the VM's own part. The driver is chosen by that kind, never by
//! comparing brand strings.

use std::path::PathBuf;

use serde_json::{Map, Value};
use zonevisor_api::{ApiError, ImageUuid, InstanceUuid, VmObject};
use zonevisor_spec::Brand;
use zonevisor_zone::{BindMount, Limits};

pub(crate) const MIB: u64 = 1024 * 1024;
pub(crate) const GIB: u64 = 1024 * MIB;

/// One instance, typed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InstanceSpec {
    /// The instance's uuid (also its dataset's name).
    pub uuid: InstanceUuid,
    /// The payload's brand.
    pub brand: Brand,
    /// `alias`.
    pub alias: Option<String>,
    /// `hostname`; the uuid when absent (SmartOS).
    pub hostname: String,
    /// `autoboot` (true when absent).
    pub autoboot: bool,
    /// `quota` in bytes; `None` for none (absent or 0).
    pub quota_bytes: Option<u64>,
    /// The cgroup limits (`cpus` is chosen at start, with the host's other
    /// instances in view).
    pub limits: Limits,
    /// `nics`.
    pub nics: Vec<Nic>,
    /// The NICs and `routes` as the object holds them, for the network's
    /// ports (`Daemon::ports_of`).
    pub net: NetPart,
    /// `resolvers`.
    pub resolvers: Vec<String>,
    /// `customer_metadata`, `internal_metadata` and `tags`.
    pub metadata: Metadata,
    /// What only a zone or only a VM has.
    pub kind: Kind,
}

/// A NIC as the payload gives it (wired by the networking of a later release).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Nic {
    /// `mac`.
    pub mac: Option<String>,
    /// `interface` (`net0`, `eth0`, ...).
    pub interface: Option<String>,
    /// `nic_tag`.
    pub nic_tag: String,
    /// `model` (VMs: virtio, e1000, rtl8139).
    pub model: Option<String>,
    /// `ips` (CIDRs, `dhcp`, `addrconf`).
    pub ips: Vec<String>,
    /// `primary`.
    pub primary: bool,
}

/// What the network needs of an instance's object.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct NetPart {
    /// `nics`.
    pub nics: Vec<Value>,
    /// `routes`.
    pub routes: Map<String, Value>,
}

/// An instance's metadata maps.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Metadata {
    /// `customer_metadata`.
    pub customer: Map<String, Value>,
    /// `internal_metadata`.
    pub internal: Map<String, Value>,
    /// `tags`.
    pub tags: Map<String, Value>,
}

/// The part only one kind of instance has.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A zone (brand lx).
    Zone(ZonePart),
    /// A hardware VM (brands kvm and bhyve).
    Vm(VmPart),
}

/// What a zone has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ZonePart {
    /// The image its root is a clone of.
    pub image: ImageUuid,
    /// `dns_domain`.
    pub dns_domain: Option<String>,
    /// `init_name` (`/sbin/init` when absent).
    pub init: String,
    /// `restart_init` (true when absent, as in SmartOS).
    pub restart_init: bool,
    /// `tmpfs` in bytes; `None` for no tmpfs on `/tmp`.
    pub tmpfs_bytes: Option<u64>,
    /// `filesystems` of type `lofs`.
    pub mounts: Vec<BindMount>,
    /// `limit_priv` opt-ins.
    pub limit_priv: Vec<String>,
    /// `maintain_resolvers`: new `resolvers` reach the running zone.
    pub maintain_resolvers: bool,
    /// `docker: true` without an `init_name`: the command its `docker:*`
    /// metadata names runs as init (see `zonevisor_zone::docker`).
    pub docker: Option<zonevisor_zone::DockerInit>,
}

/// What a hardware VM has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VmPart {
    /// `ram` in MiB.
    pub ram_mib: u64,
    /// `vcpus`.
    pub vcpus: u32,
    /// `cpu_type` (`qemu64` when absent).
    pub cpu_type: String,
    /// `disks`, in payload order.
    pub disks: Vec<Disk>,
    /// `boot` (SmartOS's `order=cd,once=d`).
    pub boot: Option<String>,
    /// `bootrom`: UEFI (bhyve's default) or BIOS.
    pub uefi: bool,
    /// `vga` (`std` when absent).
    pub vga: String,
    /// `vnc_port`: `None` for no VNC (-1), `Some(0)` for the first free port.
    pub vnc_port: Option<u16>,
    /// `vnc_password`.
    pub vnc_password: Option<String>,
    /// `vnc_listen`: the address VNC listens on (the host's loopback when absent).
    pub vnc_listen: Option<std::net::IpAddr>,
    /// `qemu_opts`: replaces the generated options.
    pub qemu_opts: Option<String>,
    /// `qemu_extra_opts` (kvm) or `bhyve_extra_opts` (bhyve): appended.
    pub extra_opts: Option<String>,
    /// `boot_kernel`, `boot_initrd` and `boot_args`: a direct kernel boot.
    pub direct_boot: Option<DirectBoot>,
    /// `flexible_disk_size` in MiB (bhyve): the disks' sizes may add up to this.
    pub flexible_disk_size: Option<u64>,
}

/// A VM's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Its index in `disks`.
    pub index: usize,
    /// `size` in MiB (for a disk from an image: the image's size when absent).
    pub size_mib: Option<u64>,
    /// `image_uuid`: a clone of this installed zvol image.
    pub image: Option<ImageUuid>,
    /// `image_size` in MiB.
    pub image_size_mib: Option<u64>,
    /// `boot`.
    pub boot: bool,
    /// `model` (the VM's `disk_driver`, else virtio).
    pub model: String,
    /// `media`: `disk` or `cdrom`.
    pub cdrom: bool,
    /// `path`: for a cdrom, the ISO on the host.
    pub path: Option<PathBuf>,
    /// `block_size`.
    pub block_size: Option<u32>,
}

/// A direct kernel boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirectBoot {
    /// `boot_kernel`: the kernel on the host.
    pub kernel: PathBuf,
    /// `boot_initrd`: the initial ramdisk on the host.
    pub initrd: Option<PathBuf>,
    /// `boot_args`: the kernel's command line.
    pub args: String,
}

fn str_of<'a>(vm: &'a VmObject, key: &str) -> Option<&'a str> {
    vm.get(key).and_then(Value::as_str)
}

fn u64_of(vm: &VmObject, key: &str) -> Option<u64> {
    vm.get(key).and_then(Value::as_u64)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn map_of(vm: &VmObject, key: &str) -> Map<String, Value> {
    vm.get(key).and_then(Value::as_object).cloned().unwrap_or_default()
}

/// The resource limits a VM object asks for.
pub(crate) fn limits_of(vm: &VmObject) -> Limits {
    Limits {
        memory_bytes: u64_of(vm, "max_physical_memory").map(|m| m * MIB),
        swap_bytes: u64_of(vm, "max_swap").map(|m| m * MIB),
        locked_bytes: u64_of(vm, "max_locked_memory").map(|m| m * MIB),
        pids: u64_of(vm, "max_lwps"),
        cpu_shares: u64_of(vm, "cpu_shares"),
        cpu_cap_pct: u64_of(vm, "cpu_cap").filter(|&c| c > 0),
        // Chosen with the host's other zones in view: see `place_cpus`.
        cpus: None,
        io_priority: u64_of(vm, "zfs_io_priority"),
    }
}

/// A stored object the spec cannot be read from: the store holds only
/// objects the payload checks accepted, so this is the daemon's fault.
fn corrupt(uuid: &str, what: &str) -> ApiError {
    ApiError::internal(format!("the stored object of VM {uuid} has no valid {what}"))
}

impl InstanceSpec {
    /// Reads a stored (validated) VM object.
    pub(crate) fn from_vm(vm: &VmObject) -> Result<InstanceSpec, ApiError> {
        let uuid_str = str_of(vm, "uuid").unwrap_or("?");
        let uuid: InstanceUuid = uuid_str.parse().map_err(|_| corrupt(uuid_str, "uuid"))?;
        let brand: Brand =
            str_of(vm, "brand").and_then(|b| b.parse().ok()).ok_or_else(|| corrupt(uuid_str, "brand"))?;
        let nics = vm
            .get("nics")
            .and_then(Value::as_array)
            .map(|nics| {
                nics.iter()
                    .map(|n| Nic {
                        mac: n.get("mac").and_then(Value::as_str).map(String::from),
                        interface: n.get("interface").and_then(Value::as_str).map(String::from),
                        nic_tag: n.get("nic_tag").and_then(Value::as_str).unwrap_or("admin").to_string(),
                        model: n.get("model").and_then(Value::as_str).map(String::from),
                        ips: strings(n.get("ips")),
                        primary: n.get("primary").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = if brand.is_hvm() { Kind::Vm(vm_part(vm, brand)) } else { Kind::Zone(zone_part(vm, uuid_str)?) };
        Ok(InstanceSpec {
            uuid,
            brand,
            alias: str_of(vm, "alias").map(String::from),
            hostname: str_of(vm, "hostname").map_or_else(|| uuid.to_string(), String::from),
            autoboot: vm.get("autoboot").and_then(Value::as_bool).unwrap_or(true),
            quota_bytes: u64_of(vm, "quota").filter(|&q| q > 0).map(|q| q * GIB),
            limits: limits_of(vm),
            nics,
            net: NetPart {
                nics: vm.get("nics").and_then(Value::as_array).cloned().unwrap_or_default(),
                routes: vm.get("routes").and_then(Value::as_object).cloned().unwrap_or_default(),
            },
            resolvers: strings(vm.get("resolvers")),
            metadata: Metadata {
                customer: map_of(vm, "customer_metadata"),
                internal: map_of(vm, "internal_metadata"),
                tags: map_of(vm, "tags"),
            },
            kind,
        })
    }

    /// The dataset's name in the pool.
    pub(crate) fn dataset(&self) -> String {
        self.uuid.to_string()
    }
}

fn zone_part(vm: &VmObject, uuid: &str) -> Result<ZonePart, ApiError> {
    let image = str_of(vm, "image_uuid").and_then(|i| i.parse().ok()).ok_or_else(|| corrupt(uuid, "image_uuid"))?;
    let mounts = vm
        .get("filesystems")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter(|f| f.get("type").and_then(Value::as_str) == Some("lofs"))
                .filter_map(|f| {
                    let opts = strings(f.get("options"));
                    let has = |o: &str| opts.iter().any(|x| x == o);
                    Some(BindMount {
                        source: PathBuf::from(f.get("source")?.as_str()?),
                        target: PathBuf::from(f.get("target")?.as_str()?),
                        readonly: has("ro"),
                        nosuid: has("nosuid"),
                        nodev: has("nodevice"),
                        noexec: has("noexec"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ZonePart {
        docker: docker_init(vm),
        image,
        maintain_resolvers: vm.get("maintain_resolvers").and_then(Value::as_bool).unwrap_or(false),
        dns_domain: str_of(vm, "dns_domain").map(String::from),
        init: str_of(vm, "init_name").unwrap_or("/sbin/init").to_string(),
        // SmartOS: init is restarted unless restart_init is false.
        restart_init: vm.get("restart_init").and_then(Value::as_bool).unwrap_or(true),
        tmpfs_bytes: u64_of(vm, "tmpfs").filter(|&t| t > 0).map(|t| t * MIB),
        mounts,
        // A comma-separated string, as SmartOS keeps it (older records: an array).
        limit_priv: match vm.get("limit_priv") {
            Some(Value::String(s)) => s.split(',').filter(|p| !p.is_empty()).map(String::from).collect(),
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        },
    })
}

/// What a zone with `docker: true` and no `init_name` runs: its
/// `internal_metadata`'s `docker:entrypoint` then `docker:cmd`, with
/// `docker:env`, `docker:workdir`, `docker:user` and `docker:open_stdin`.
pub(crate) fn docker_init(vm: &VmObject) -> Option<zonevisor_zone::DockerInit> {
    use zonevisor_spec::docker::{flag, string_array};
    if vm.get("docker") != Some(&Value::Bool(true)) || vm.contains_key("init_name") {
        return None;
    }
    let md = map_of(vm, "internal_metadata");
    let array = |k: &str| md.get(k).and_then(string_array).unwrap_or_default();
    let string = |k: &str| md.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    let mut argv = array("docker:entrypoint");
    argv.extend(array("docker:cmd"));
    Some(zonevisor_zone::DockerInit {
        argv,
        env: array("docker:env"),
        workdir: string("docker:workdir"),
        user: string("docker:user"),
        open_stdin: md.get("docker:open_stdin").and_then(flag).unwrap_or(false),
    })
}

fn vm_part(vm: &VmObject, brand: Brand) -> VmPart {
    let disk_driver = str_of(vm, "disk_driver").unwrap_or("virtio");
    let disks = vm
        .get("disks")
        .and_then(Value::as_array)
        .map(|disks| {
            disks
                .iter()
                .enumerate()
                .map(|(index, d)| Disk {
                    index,
                    size_mib: d.get("size").and_then(Value::as_u64),
                    image: d.get("image_uuid").and_then(Value::as_str).and_then(|i| i.parse().ok()),
                    image_size_mib: d.get("image_size").and_then(Value::as_u64),
                    boot: d.get("boot").and_then(Value::as_bool).unwrap_or(false),
                    model: d.get("model").and_then(Value::as_str).unwrap_or(disk_driver).to_string(),
                    cdrom: d.get("media").and_then(Value::as_str) == Some("cdrom"),
                    path: d.get("path").and_then(Value::as_str).map(PathBuf::from),
                    block_size: d.get("block_size").and_then(Value::as_u64).and_then(|b| u32::try_from(b).ok()),
                })
                .collect()
        })
        .unwrap_or_default();
    let vnc_port = match vm.get("vnc_port").and_then(Value::as_i64) {
        Some(p) if p < 0 => None,
        Some(p) => u16::try_from(p).ok(),
        None => Some(0),
    };
    let extra_key = if brand == Brand::Bhyve { "bhyve_extra_opts" } else { "qemu_extra_opts" };
    VmPart {
        ram_mib: u64_of(vm, "ram").unwrap_or(256),
        vcpus: u64_of(vm, "vcpus").and_then(|v| u32::try_from(v).ok()).unwrap_or(1),
        cpu_type: str_of(vm, "cpu_type").unwrap_or("qemu64").to_string(),
        disks,
        boot: str_of(vm, "boot").map(String::from),
        uefi: match str_of(vm, "bootrom") {
            Some(r) => r == "uefi",
            None => brand == Brand::Bhyve,
        },
        vga: str_of(vm, "vga").unwrap_or("std").to_string(),
        vnc_port,
        vnc_password: str_of(vm, "vnc_password").map(String::from),
        vnc_listen: str_of(vm, "vnc_listen").and_then(|a| a.parse().ok()),
        qemu_opts: str_of(vm, "qemu_opts").map(String::from),
        extra_opts: str_of(vm, extra_key).map(String::from),
        direct_boot: str_of(vm, "boot_kernel").map(|k| DirectBoot {
            kernel: PathBuf::from(k),
            initrd: str_of(vm, "boot_initrd").map(PathBuf::from),
            args: str_of(vm, "boot_args").unwrap_or("").to_string(),
        }),
        flexible_disk_size: u64_of(vm, "flexible_disk_size"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> VmObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_zone_reads_its_part_and_defaults() {
        let spec = InstanceSpec::from_vm(&obj(json!({
            "uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a01", "brand": "lx",
            "image_uuid": "9a1c9e52-2b3a-4a8e-8f3e-5a0b6c1d2e3f",
            "quota": 2, "tmpfs": 64, "max_physical_memory": 256, "cpu_cap": 0,
            "limit_priv": "default,sys_mount",
            "filesystems": [{"type": "lofs", "source": "/srv", "target": "/srv", "options": ["ro", "nodevice"]}],
        })))
        .unwrap();
        assert_eq!(spec.quota_bytes, Some(2 * GIB));
        assert_eq!(spec.hostname, "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a01");
        assert!(spec.autoboot);
        assert_eq!(spec.limits.memory_bytes, Some(256 * MIB));
        assert_eq!(spec.limits.cpu_cap_pct, None);
        let Kind::Zone(z) = spec.kind else { panic!("an lx object is a zone") };
        assert_eq!(z.tmpfs_bytes, Some(64 * MIB));
        assert!(z.restart_init);
        assert_eq!(z.init, "/sbin/init");
        assert_eq!(z.limit_priv, ["default", "sys_mount"]);
        assert!(z.mounts[0].readonly && z.mounts[0].nodev && !z.mounts[0].noexec);
    }

    #[test]
    fn a_docker_zone_runs_its_docker_keys() {
        let spec = InstanceSpec::from_vm(&obj(json!({
            "uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a05", "brand": "lx", "docker": true, "restart_init": false,
            "image_uuid": "9a1c9e52-2b3a-4a8e-8f3e-5a0b6c1d2e3f",
            "internal_metadata": {"docker:entrypoint": "[\"/bin/sh\",\"-c\"]", "docker:cmd": "[\"echo hi\"]",
                                  "docker:env": "[\"A=1\"]", "docker:user": "app", "docker:workdir": "/srv",
                                  "docker:open_stdin": true},
        })))
        .unwrap();
        let Kind::Zone(z) = spec.kind else { panic!() };
        let d = z.docker.expect("docker: true runs the docker keys");
        assert_eq!(d.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            (d.env.as_slice(), d.user.as_deref(), d.workdir.as_deref()),
            (&["A=1".to_string()][..], Some("app"), Some("/srv"))
        );
        assert!(d.open_stdin && !z.restart_init);
        let with_init = InstanceSpec::from_vm(&obj(json!({
            "uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a06", "brand": "lx", "docker": true, "init_name": "/root/init",
            "image_uuid": "9a1c9e52-2b3a-4a8e-8f3e-5a0b6c1d2e3f",
        })))
        .unwrap();
        let Kind::Zone(z) = with_init.kind else { panic!() };
        assert_eq!((z.docker, z.init.as_str()), (None, "/root/init"), "an init_name is run as SmartOS runs it");
    }

    #[test]
    fn a_vm_reads_its_disks_with_the_brand_defaults() {
        let spec = InstanceSpec::from_vm(&obj(json!({
            "uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a02", "brand": "bhyve", "ram": 512, "vcpus": 2,
            "disk_driver": "nvme", "vnc_port": -1,
            "disks": [{"image_uuid": "9a1c9e52-2b3a-4a8e-8f3e-5a0b6c1d2e3f", "boot": true},
                      {"size": 1024, "model": "virtio"},
                      {"media": "cdrom", "path": "/isos/x.iso"}],
        })))
        .unwrap();
        let Kind::Vm(v) = spec.kind else { panic!("a bhyve object is a VM") };
        assert!(v.uefi, "bhyve boots UEFI unless bootrom says bios");
        assert_eq!(v.vnc_port, None);
        assert_eq!((v.ram_mib, v.vcpus), (512, 2));
        assert_eq!(v.disks[0].model, "nvme");
        assert!(v.disks[0].boot && v.disks[0].image.is_some());
        assert_eq!(v.disks[1].size_mib, Some(1024));
        assert_eq!(v.disks[1].model, "virtio");
        assert!(v.disks[2].cdrom);
        let kvm = InstanceSpec::from_vm(&obj(json!({
            "uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a03", "brand": "kvm",
        })))
        .unwrap();
        let Kind::Vm(v) = kvm.kind else { panic!() };
        assert!(!v.uefi, "kvm boots BIOS");
        assert_eq!(v.vnc_port, Some(0), "VNC on the first free port unless -1");
    }

    #[test]
    fn a_corrupt_object_is_an_internal_error() {
        let e = InstanceSpec::from_vm(&obj(json!({"uuid": "x", "brand": "lx"}))).unwrap_err();
        assert!(e.message.contains("uuid"), "{}", e.message);
        let e = InstanceSpec::from_vm(&obj(json!({"uuid": "5f8f3f3e-95c3-4cda-9a0e-1c3b7d3e0a04", "brand": "lx"})))
            .unwrap_err();
        assert!(e.message.contains("image_uuid"), "{}", e.message);
    }
}
