//! The VM driver (brands kvm and bhyve): QEMU, run by the instance's
//! monitor in a jail, with the VM's disks as volumes in its dataset.
//!
//! ```text
//! <pool>/<uuid>/              the VM's dataset (quota: its disks count)
//!   disk0, disk1, ...         raw volumes: sparse at `size`, or reflink clones of a zvol image
//!   uefi-vars.fd              the VM's own copy of OVMF's variable store (UEFI)
//! <root>/run/zones/<uuid>/    the monitor's files, and vm/ (QEMU's sockets, its screenshots)
//! ```
//!
//! QEMU sees none of those paths: the monitor builds it a root of its own
//! (`zonevisor_zone::QemuSpec`'s jail) where the disks are `/vm/disks/N`,
//! ISOs `/vm/iso/N`, the kernel and initrd of a direct boot `/vm/boot/`,
//! the firmware `/vm/fw/`, and the sockets `/vm/run/`; the command line
//! (`zonevisor_vm::config`) names those.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use zonevisor_api::{ApiError, StartRequest, ValidationErrors, VmObject};
use zonevisor_spec::Brand;
use zonevisor_vm::accel::{self, Accel, AccelKind};
use zonevisor_vm::config::{
    self as qemu, DirectBoot, DiskConfig, Firmware, Machine, Media, NicConfig, Smbios, VmConfig, VncConfig,
};
use zonevisor_zone::{Jail, JailBind, Limits, QemuSpec};

use super::driver::{Driver, Made, Resume, Undo};
use super::host::Launch;
use super::spec::{InstanceSpec, Kind, VmPart, MIB};
use crate::Daemon;

/// The VM driver.
pub(crate) struct VmDriver;

/// The jail's directories (see the module documentation).
const JAIL: &str = "/vm";
/// The OVMF variable store's file in the VM's dataset.
const UEFI_VARS: &str = "uefi-vars.fd";
/// cloud-init's NoCloud seed in the VM's dataset, and the digest of what it holds.
const NOCLOUD_IMAGE: &str = "cidata.img";
const NOCLOUD_DIGEST: &str = "cidata.digest";
/// The image tag that asks for the NoCloud seed, as SmartOS reads it.
const NOCLOUD_TAG: &str = "org.smartos:cloudinit_datasource";

/// The accelerator this host gives VMs, probed once.
pub(crate) fn accelerator() -> &'static Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    ACCEL.get_or_init(accel::detect)
}

fn part(spec: &InstanceSpec) -> Result<&VmPart, ApiError> {
    match &spec.kind {
        Kind::Vm(v) => Ok(v),
        Kind::Zone(_) => Err(ApiError::internal(format!("VM {} is a zone, not a hardware VM", spec.uuid))),
    }
}

/// The name in the dataset of the volume at `path` (a disk's `path`, as
/// provision assigned it), if it is one of the dataset's.
fn volume_file(dataset_dir: &Path, path: Option<&Path>) -> Option<String> {
    let path = path?;
    (path.parent()? == dataset_dir).then(|| path.file_name()?.to_str().map(String::from))?
}

/// Makes the volume of `disk` as `file` in `dataset`: a clone of its image
/// or a sparse file of its size; `false` when it has neither (`nocreate`).
fn make_volume(d: &Daemon, dataset: &str, file: &str, disk: &super::spec::Disk) -> Result<bool, ApiError> {
    match disk.image {
        Some(image) => {
            let source = d
                .image_volume(image)
                .ok_or_else(|| ApiError::internal(format!("image {image} of disks.{} has no volume", disk.index)))?;
            let bytes = disk.size_mib.map_or(source.size_bytes, |s| (s * MIB).max(source.size_bytes));
            d.host.clone_volume(&source.path, dataset, file, bytes)?;
        }
        None => {
            let Some(size) = disk.size_mib else { return Ok(false) };
            d.host.create_volume(dataset, file, size * MIB)?;
        }
    }
    Ok(true)
}

/// Records `path` as disk `index`'s in the VM object.
fn set_disk_path(vm: &mut VmObject, index: usize, path: &Path) {
    if let Some(disk) = vm.get_mut("disks").and_then(Value::as_array_mut).and_then(|d| d.get_mut(index)) {
        if let Some(obj) = disk.as_object_mut() {
            obj.insert("path".into(), json!(path.display().to_string()));
        }
    }
}

/// The host's memory in MiB.
fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024)
}

impl Driver for VmDriver {
    fn check_create(&self, d: &Daemon, vm: &VmObject, errs: &mut ValidationErrors) {
        d.check_disk_images("disks", vm, errs);
        let brand: Brand = match vm.get("brand").and_then(Value::as_str).and_then(|b| b.parse().ok()) {
            Some(b) => b,
            None => return,
        };
        let disk_driver = vm.get("disk_driver").and_then(Value::as_str).unwrap_or("virtio");
        let mut boot_disk = None;
        let mut total_mib = 0u64;
        for (i, disk) in vm.get("disks").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let name = |p: &str| format!("disks.{i}.{p}");
            let model = disk.get("model").and_then(Value::as_str).unwrap_or(disk_driver);
            if let Err(e) = model.parse::<qemu::DiskModel>() {
                errs.bad_value(&name("model"), e.to_string());
            }
            if disk.get("boot").and_then(Value::as_bool) == Some(true) {
                match boot_disk {
                    Some(first) => {
                        errs.bad_value(&name("boot"), format!("disks.{first} already boots; only one disk may"))
                    }
                    None => boot_disk = Some(i),
                }
            }
            let cdrom = disk.get("media").and_then(Value::as_str) == Some("cdrom");
            if cdrom {
                match disk.get("path").and_then(Value::as_str) {
                    Some(p) if Path::new(p).is_file() => {}
                    Some(p) => errs.bad_value(&name("path"), format!("the ISO {p} does not exist")),
                    None => errs.missing(&name("path"), "a cdrom needs the path of its ISO"),
                }
                continue;
            }
            let size = disk.get("size").and_then(Value::as_u64);
            if let Some(img) = disk.get("image_uuid").and_then(Value::as_str) {
                match img.parse().ok().and_then(|id| d.store.get_image(id).ok().flatten()) {
                    Some(row) if row.phase == "ready" => {
                        let ty = row.manifest.get("type").and_then(Value::as_str).unwrap_or("");
                        if ty != "zvol" {
                            errs.bad_value(
                                &name("image_uuid"),
                                format!("image {img} is of type {ty}; a disk needs a zvol image"),
                            );
                        }
                        let image_size = row.manifest.get("image_size").and_then(Value::as_u64).unwrap_or(0);
                        match size {
                            Some(s) if s < image_size => errs.bad_value(
                                &name("size"),
                                format!("{s} MiB is below the size of image {img} ({image_size} MiB)"),
                            ),
                            _ => total_mib += size.unwrap_or(image_size),
                        }
                    }
                    // Not installed: check_disk_images said so.
                    _ => {}
                }
            } else if disk.get("nocreate").and_then(Value::as_bool) != Some(true) {
                match size {
                    Some(s) => total_mib += s,
                    None => errs.missing(&name("size"), "a disk needs a size or an image_uuid"),
                }
            }
        }
        if let Some(flex) = vm.get("flexible_disk_size").and_then(Value::as_u64) {
            if total_mib > flex {
                errs.bad_value(
                    "flexible_disk_size",
                    format!("the disks add up to {total_mib} MiB, above flexible_disk_size {flex} MiB"),
                );
            }
        }
        if let (Some(ram), Some(host)) = (vm.get("ram").and_then(Value::as_u64), host_memory_mib()) {
            if ram > host {
                errs.bad_value("ram", format!("{ram} MiB is more than this host has ({host} MiB)"));
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        if let Some(vcpus) = vm.get("vcpus").and_then(Value::as_u64) {
            if vcpus > cpus {
                errs.bad_value("vcpus", format!("{vcpus} is more than this host's {cpus} CPUs"));
            }
        }
        if vm.contains_key("vnc_listen") && !host_has_address(listen_of(vm)) {
            errs.bad_value("vnc_listen", format!("{} is not an address of this host", listen_of(vm)));
        }
        if let Some(port) = vm.get("vnc_port").and_then(Value::as_u64).filter(|&p| p > 0) {
            if port < 5900 {
                errs.bad_value("vnc_port", format!("{port} is below 5900, VNC's first display"));
            } else if std::net::TcpListener::bind((listen_of(vm), port as u16)).is_err() {
                errs.bad_value("vnc_port", format!("port {port} is in use"));
            }
        }
        for key in ["boot_kernel", "boot_initrd"] {
            if let Some(p) = vm.get(key).and_then(Value::as_str) {
                if !Path::new(p).is_file() {
                    errs.bad_value(key, format!("{p} does not exist"));
                }
            }
        }
        let extra_key = if brand == Brand::Bhyve { "bhyve_extra_opts" } else { "qemu_extra_opts" };
        for key in ["qemu_opts", extra_key] {
            if let Some(opts) = vm.get(key).and_then(Value::as_str) {
                if let Err(e) = qemu::split_opts(opts) {
                    errs.bad_value(key, e.to_string());
                }
            }
        }
        if part_uefi(vm, brand) && qemu::ovmf().is_none() {
            errs.bad_value("bootrom", "uefi needs OVMF, which this host lacks (Debian: apt-get install ovmf)");
        }
        if qemu::qemu_binary().is_none() {
            errs.bad_value(
                "brand",
                format!("{brand} needs QEMU, which this host lacks (Debian: apt-get install qemu-system-x86)"),
            );
        }
    }

    fn provision(&self, d: &Daemon, spec: &InstanceSpec, obj: &mut VmObject, made: &mut Made) -> Result<(), ApiError> {
        let vm = part(spec)?;
        let dataset = spec.dataset();
        d.host.create_dataset(&dataset)?;
        made.dataset = true;
        // The VM's zone root, as in SmartOS: where `vmadm start cdrom=`
        // finds ISOs and `vmadm sysrq screenshot` leaves its picture.
        d.host.make_dir(&d.pool.dataset_path(&dataset).join("root/tmp"), None)?;
        let dir = d.pool.dataset_path(&dataset);
        for disk in vm.disks.iter().filter(|disk| !disk.cdrom && disk.path.is_none()) {
            let file = format!("disk{}", disk.index);
            if make_volume(d, &dataset, &file, disk)? {
                set_disk_path(obj, disk.index, &dir.join(&file));
            }
        }
        if vm.uefi {
            let (_, vars) = qemu::ovmf().ok_or_else(|| ApiError::internal("OVMF is gone from this host"))?;
            d.host.copy_into_dataset(&vars, &dataset, UEFI_VARS)?;
        }
        image_asks_for_nocloud(d, obj);
        Ok(())
    }

    fn update_storage<'a>(
        &self,
        d: &'a Daemon,
        current: &InstanceSpec,
        obj: &mut VmObject,
    ) -> Result<(Option<Undo<'a>>, Vec<String>), ApiError> {
        let next = InstanceSpec::from_vm(obj)?;
        let (before, after) = (part(current)?, part(&next)?);
        let dataset = current.dataset();
        let dir = d.pool.dataset_path(&dataset);
        // Undone in reverse if a later step fails: volumes made, sizes changed.
        let mut made: Vec<String> = Vec::new();
        let mut resized: Vec<(String, u64)> = Vec::new();
        let ds = dataset.clone();
        let undo = move |made: &[String], resized: &[(String, u64)]| {
            for (file, size) in resized.iter().rev() {
                let _ = d.host.resize_volume(&ds, file, *size, true);
            }
            for file in made {
                let _ = d.host.destroy_volume(&ds, file);
            }
        };
        let result = (|| {
            let mut taken: Vec<String> =
                before.disks.iter().chain(&after.disks).filter_map(|k| volume_file(&dir, k.path.as_deref())).collect();
            for disk in after.disks.iter().filter(|k| !k.cdrom) {
                match volume_file(&dir, disk.path.as_deref()) {
                    // Added (`add_disks`): a volume of its own.
                    None if disk.path.is_none() => {
                        let file = (0..).map(|n| format!("disk{n}")).find(|f| !taken.contains(f)).unwrap_or_default();
                        taken.push(file.clone());
                        if make_volume(d, &dataset, &file, disk)? {
                            made.push(file.clone());
                            set_disk_path(obj, disk.index, &dir.join(&file));
                        }
                    }
                    // A volume whose size changed (`update_disks`; the spec
                    // refused a shrink without dangerous_allow_shrink).
                    Some(file) => {
                        let old = before.disks.iter().find(|k| k.path == disk.path).and_then(|k| k.size_mib);
                        if let (Some(new), true) = (disk.size_mib, old != disk.size_mib) {
                            let was = d.host.resize_volume(&dataset, &file, new * MIB, true)?;
                            resized.push((file, was));
                        }
                    }
                    None => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            undo(&made, &resized);
            return Err(e);
        }
        // Removed (`remove_disks`): their volumes go once the update is stored.
        let removed = before
            .disks
            .iter()
            .filter(|k| !after.disks.iter().any(|a| a.path == k.path))
            .filter_map(|k| volume_file(&dir, k.path.as_deref()))
            .collect();
        let undo: Undo<'a> = Box::new(move || undo(&made, &resized));
        Ok((Some(undo), removed))
    }

    fn limits(&self, spec: &InstanceSpec) -> Limits {
        let mut limits = spec.limits.clone();
        if let Kind::Vm(vm) = &spec.kind {
            // QEMU's cgroup holds the guest's RAM and QEMU itself.
            let bytes = (vm.ram_mib + qemu::memory_overhead_mib(vm.ram_mib, accelerator().kind)) * MIB;
            limits.memory_bytes = Some(bytes);
            limits.swap_bytes = Some(bytes);
            limits.locked_bytes = None;
        }
        limits
    }

    fn launch(
        &self,
        d: &Daemon,
        spec: &InstanceSpec,
        obj: &VmObject,
        limits: Limits,
        opts: &StartRequest,
    ) -> Result<Launch, ApiError> {
        let vm = part(spec)?;
        let run_dir = d.run_dir(spec.uuid);
        let dataset_dir = d.pool.dataset_path(&spec.dataset());
        let jail = Path::new(JAIL);
        let ids = super::zone::idmap_of(d, spec)?;
        let accel = accelerator();
        // QEMU opens /dev/kvm (root:kvm, 0660) through its group.
        let gid = match accel.kind {
            AccelKind::Kvm => kvm_gid().unwrap_or(ids.host_gid),
            AccelKind::Tcg => ids.host_gid,
        };
        d.host.make_dir(&run_dir.join("vm"), Some((ids.host_uid, gid)))?;
        let mut binds = vec![JailBind { source: run_dir.join("vm"), target: jail.join("run"), writable: true }];
        let mut disks = Vec::new();
        for disk in &vm.disks {
            let (source, target, writable) = if disk.cdrom {
                let iso = disk.path.clone().ok_or_else(|| ApiError::internal("a cdrom without a path"))?;
                (iso, jail.join("iso").join(disk.index.to_string()), false)
            } else {
                // A volume of the dataset, or (`nocreate`) a file the
                // operator gave.
                let Some(volume) = disk.path.clone() else { continue };
                d.host.give_to(&volume, ids.host_uid, gid)?;
                (volume, jail.join("disks").join(disk.index.to_string()), true)
            };
            disks.push(DiskConfig {
                path: target.clone(),
                model: disk
                    .model
                    .parse()
                    .map_err(|e: qemu::ConfigError| config_error(e.at(&format!("disks.{}", disk.index))))?,
                media: if disk.cdrom { Media::Cdrom } else { Media::Disk },
                boot: disk.boot,
                block_size: disk.block_size,
                read_only: !writable,
            });
            binds.push(JailBind { source, target, writable });
        }
        // This boot's attachments (`vmadm start cdrom=... disk=...`): files
        // in the VM's zone root.
        let zone_root = dataset_dir.join("root");
        for (i, (attach, cdrom)) in
            opts.cdrom.iter().map(|a| (a, true)).chain(opts.disk.iter().map(|a| (a, false))).enumerate()
        {
            let key = if cdrom { "cdrom" } else { "disk" };
            let source = in_zone_root(&zone_root, &attach.path)
                .map_err(|why| ApiError::invalid(format!("{key}={}: {why}", attach.path)))?;
            if !cdrom {
                d.host.give_to(&source, ids.host_uid, gid)?;
            }
            let target = jail.join("attached").join(i.to_string());
            disks.push(DiskConfig {
                path: target.clone(),
                model: attach.model.parse().map_err(|e: qemu::ConfigError| config_error(e.at(key)))?,
                media: if cdrom { Media::Cdrom } else { Media::Disk },
                boot: false,
                block_size: None,
                read_only: cdrom,
            });
            binds.push(JailBind { source, target, writable: !cdrom });
        }
        // cloud-init's NoCloud seed, when the VM asks for one: rebuilt at
        // each start from the VM as it is (kept while it is unchanged).
        let shown = serde_json::Value::Object(d.view(obj.clone()));
        if let Some(seed) = zonevisor_vm::nocloud::seed(&shown) {
            let image = dataset_dir.join(NOCLOUD_IMAGE);
            write_nocloud(&seed, &image, &dataset_dir.join(NOCLOUD_DIGEST))
                .map_err(|e| ApiError::internal(format!("writing the cloud-init seed {}: {e}", image.display())))?;
            d.host.give_to(&image, ids.host_uid, gid)?;
            let target = jail.join("seed").join(NOCLOUD_IMAGE);
            disks.push(DiskConfig {
                path: target.clone(),
                model: "virtio".parse().map_err(config_error)?,
                media: Media::Disk,
                boot: false,
                block_size: None,
                read_only: true,
            });
            binds.push(JailBind { source: image, target, writable: false });
        }
        let firmware = if vm.uefi {
            let (code, _) = qemu::ovmf().ok_or_else(|| ApiError::internal("OVMF is gone from this host"))?;
            let vars = dataset_dir.join(UEFI_VARS);
            d.host.give_to(&vars, ids.host_uid, gid)?;
            binds.push(JailBind { source: code, target: jail.join("fw/code.fd"), writable: false });
            binds.push(JailBind { source: vars, target: jail.join("fw/vars.fd"), writable: true });
            Firmware::Uefi { code: jail.join("fw/code.fd"), vars: jail.join("fw/vars.fd") }
        } else {
            Firmware::Bios
        };
        let direct_boot = vm.direct_boot.as_ref().map(|b| {
            binds.push(JailBind { source: b.kernel.clone(), target: jail.join("boot/kernel"), writable: false });
            if let Some(initrd) = &b.initrd {
                binds.push(JailBind { source: initrd.clone(), target: jail.join("boot/initrd"), writable: false });
            }
            DirectBoot {
                kernel: jail.join("boot/kernel"),
                initrd: b.initrd.as_ref().map(|_| jail.join("boot/initrd")),
                cmdline: b.args.clone(),
            }
        });
        let nics = d.ports_of(spec.uuid, &spec.net, false)?;
        let models: Vec<String> = spec
            .net
            .nics
            .iter()
            .map(|n| n.get("model").and_then(serde_json::Value::as_str).unwrap_or("virtio").to_string())
            .collect();
        let nic_configs = nics
            .iter()
            .zip(models.iter().map(String::as_str).chain(std::iter::repeat("virtio")))
            .enumerate()
            .map(|(i, (p, model))| {
                Ok(NicConfig {
                    mac: p.mac.clone(),
                    model: model.parse().map_err(|e: qemu::ConfigError| config_error(e.at(&format!("nics.{i}"))))?,
                    ifname: p.host.clone(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let config = VmConfig {
            uuid: spec.uuid.to_string(),
            name: spec.alias.clone().unwrap_or_else(|| spec.uuid.to_string()),
            accel: accel.kind,
            ram_mib: vm.ram_mib,
            vcpus: vm.vcpus,
            cpu_type: if vm.cpu_type == "host" && accel.kind != AccelKind::Kvm {
                "max".into()
            } else {
                vm.cpu_type.clone()
            },
            machine: if spec.brand == Brand::Bhyve { Machine::Q35 } else { Machine::Pc },
            firmware,
            disks,
            nics: nic_configs,
            boot_order: boot_order(vm.boot.as_deref(), opts),
            direct_boot,
            vga: vm.vga.clone(),
            vnc: vm.vnc_port.map(|port| VncConfig {
                listen: vm.vnc_listen.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                port,
                password: vm.vnc_password.is_some(),
            }),
            qmp_socket: jail.join("run/qmp.sock"),
            metadata_socket: jail.join("run/metadata.sock"),
            smbios: Smbios::smartos(&spec.uuid.to_string(), &crate::sysinfo::live_image()),
            qemu_opts: vm.qemu_opts.clone(),
            qemu_extra_opts: vm.extra_opts.clone(),
        };
        let argv = qemu::argv(&config).map_err(config_error)?;
        let qemu_bin =
            qemu::qemu_binary().ok_or_else(|| ApiError::unsupported("QEMU is not installed on this host"))?;
        let devices = if accel.kind == AccelKind::Kvm { vec![PathBuf::from("/dev/kvm")] } else { Vec::new() };
        Ok(Launch::Qemu(Box::new(QemuSpec {
            uuid: spec.uuid.to_string(),
            run_dir: run_dir.clone(),
            cgroup: d.cgroup_of(spec.uuid),
            limits,
            qemu: qemu_bin,
            argv,
            qmp: run_dir.join("vm/qmp.sock"),
            jail: Jail { uid: ids.host_uid, gid, binds, devices },
            nics,
            metadata: Some(d.metadata_spec(obj)),
            metadata_socket: Some(run_dir.join("vm/metadata.sock")),
        })))
    }

    fn started(&self, d: &Daemon, spec: &InstanceSpec) -> Result<(), ApiError> {
        let vm = part(spec)?;
        if let (Some(_), Some(password)) = (vm.vnc_port, &vm.vnc_password) {
            let args = json!({"password": password});
            d.host
                .qmp(&d.run_dir(spec.uuid), "change-vnc-password", Some(args))
                .map_err(|e| crate::images::step_error("set the VNC password", e))?;
        }
        Ok(())
    }

    fn apply_live<'a>(
        &self,
        _d: &'a Daemon,
        _current: &'a InstanceSpec,
        _next: &InstanceSpec,
        _live: &[String],
    ) -> Result<Option<Undo<'a>>, ApiError> {
        // A VM's own properties (ram, vcpus, disks, boot, vnc, ...) apply
        // at its next boot; the common ones (quota, cpu) the lifecycle applies.
        Ok(None)
    }

    fn sysrq(&self, d: &Daemon, spec: &InstanceSpec, request: &str) -> Result<String, ApiError> {
        let run_dir = d.run_dir(spec.uuid);
        match request {
            "nmi" => {
                d.host.qmp(&run_dir, "inject-nmi", None).map_err(|e| crate::images::step_error("inject-nmi", e))?;
                Ok(format!("Sent NMI to VM {}", spec.uuid))
            }
            _ => {
                // QEMU writes into its jail's run directory; SmartOS's users
                // find it at <zonepath>/root/tmp/vm.ppm.
                let args = json!({"filename": Path::new(JAIL).join("run/vm.ppm")});
                d.host
                    .qmp(&run_dir, "screendump", Some(args))
                    .map_err(|e| crate::images::step_error("screendump", e))?;
                let shot = d.pool.dataset_path(&spec.dataset()).join("root/tmp/vm.ppm");
                d.host.move_file(&run_dir.join("vm/vm.ppm"), &shot)?;
                Ok(format!("Wrote a screenshot of VM {} to {}", spec.uuid, shot.display()))
            }
        }
    }

    fn info(&self, d: &Daemon, spec: &InstanceSpec) -> Result<Map<String, Value>, ApiError> {
        let run_dir = d.run_dir(spec.uuid);
        let mut out = Map::new();
        for (key, command) in [
            ("block", "query-block"),
            ("blockstats", "query-blockstats"),
            ("chardev", "query-chardev"),
            ("cpus", "query-cpus-fast"),
            ("pci", "query-pci"),
            ("status", "query-status"),
            ("version", "query-version"),
            ("vnc", "query-vnc"),
        ] {
            let answer = d.host.qmp(&run_dir, command, None).map_err(|e| crate::images::step_error(command, e))?;
            out.insert(key.to_string(), answer);
        }
        let accel = accelerator();
        out.insert("accelerator".into(), json!({"name": accel.kind.to_string(), "reason": accel.reason}));
        Ok(out)
    }

    /// QEMU's `stop`: the vCPUs halt and QEMU drains its disks' requests
    /// (`cache=none`: they are in the files), so one snapshot of the
    /// dataset holds every disk at the same instant, with nothing in flight.
    fn pause<'a>(&self, d: &'a Daemon, spec: &InstanceSpec) -> Result<Option<Resume<'a>>, ApiError> {
        let run_dir = d.run_dir(spec.uuid);
        d.host.qmp(&run_dir, "stop", None).map_err(|e| crate::images::step_error("pause the VM (QMP stop)", e))?;
        Ok(Some(Box::new(move || {
            d.host
                .qmp(&run_dir, "cont", None)
                .map(drop)
                .map_err(|e| crate::images::step_error("resume the VM (QMP cont)", e))
        })))
    }

    /// Only the daemon pauses a VM (for a snapshot), so a VM found paused
    /// (QMP's `paused`, not an I/O error's stop) was left so by a daemon
    /// that died: it is resumed.
    fn adopted(&self, d: &Daemon, spec: &InstanceSpec) -> Result<(), ApiError> {
        let run_dir = d.run_dir(spec.uuid);
        let status =
            d.host.qmp(&run_dir, "query-status", None).map_err(|e| crate::images::step_error("query-status", e))?;
        if status.get("status").and_then(Value::as_str) == Some("paused") {
            tracing::warn!(vm = %spec.uuid, "resuming a VM a snapshot left paused");
            d.host.qmp(&run_dir, "cont", None).map_err(|e| crate::images::step_error("resume the VM (QMP cont)", e))?;
        }
        Ok(())
    }
}

/// Whether a create payload's VM boots UEFI (bhyve's default).
fn part_uefi(vm: &VmObject, brand: Brand) -> bool {
    match vm.get("bootrom").and_then(Value::as_str) {
        Some(r) => r == "uefi",
        None => brand == Brand::Bhyve,
    }
}

/// A [`qemu::ConfigError`] as SmartOS reports bad values.
fn config_error(e: qemu::ConfigError) -> ApiError {
    let mut errs = ValidationErrors::default();
    errs.bad_value(e.property().unwrap_or("qemu_opts"), e.to_string());
    ApiError::validation(errs)
}

/// The `kvm` group's id, which opens `/dev/kvm`.
fn kvm_gid() -> Option<u32> {
    let group = std::fs::read_to_string("/etc/group").ok()?;
    group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some("kvm")).then(|| f.nth(1)?.parse().ok())?
    })
}

/// The boot order of this boot: `vmadm start`'s `order=`/`once=`, else the
/// VM's `boot` property.
fn boot_order(boot: Option<&str>, opts: &StartRequest) -> Option<String> {
    if opts.order.is_none() && opts.once.is_none() {
        return boot.map(String::from);
    }
    let mut parts = Vec::new();
    if let Some(order) = &opts.order {
        parts.push(format!("order={order}"));
    }
    if let Some(once) = &opts.once {
        parts.push(format!("once={once}"));
    }
    Some(parts.join(","))
}

/// `path` (absolute, as `vmadm start cdrom=/x.iso` gives it) inside the
/// VM's zone root `root`: a regular file reached through no symlink and
/// no `..`.
fn in_zone_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err("the path must name a file inside the VM's zone root, without ..".into());
    }
    let full = root.join(rel);
    let real = full.canonicalize().map_err(|e| format!("{}: {e}", full.display()))?;
    if real != full {
        return Err(format!("{} goes through a symlink", full.display()));
    }
    match std::fs::symlink_metadata(&real) {
        Ok(m) if m.is_file() => Ok(real),
        Ok(_) => Err(format!("{} is not a regular file", real.display())),
        Err(e) => Err(format!("{}: {e}", real.display())),
    }
}

/// Where a create payload's VNC listens: `vnc_listen`, else the host's loopback.
fn listen_of(vm: &VmObject) -> std::net::IpAddr {
    vm.get("vnc_listen")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())
}

/// Whether `ip` is one this host can listen on: loopback, unspecified
/// (every address), or assigned to one of its interfaces.
fn host_has_address(ip: std::net::IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return false;
    }
    let mut found = false;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let addr = unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(std::net::IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(std::net::IpAddr::from(sin6.sin6_addr.s6_addr))
                    }
                    _ => None,
                }
            };
            found |= addr == Some(ip);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// SmartOS copies an image's `org.smartos:cloudinit_datasource` tag into
/// the new VM's `internal_metadata.cloudinit_datasource` (unless the
/// payload set one): the image asks for its NoCloud seed.
fn image_asks_for_nocloud(d: &Daemon, obj: &mut VmObject) {
    let asked = obj
        .get("disks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|disk| disk.get("image_uuid").and_then(Value::as_str))
        .filter_map(|u| u.parse().ok())
        .filter_map(|id| d.store.get_image(id).ok().flatten())
        .find_map(|row| row.manifest.get("tags")?.get(NOCLOUD_TAG)?.as_str().map(str::to_owned));
    let Some(source) = asked else { return };
    let im = obj.entry("internal_metadata").or_insert_with(|| json!({}));
    if let Some(im) = im.as_object_mut() {
        im.entry("cloudinit_datasource").or_insert(Value::String(source));
    }
}

/// Writes the seed's image unless the one there holds the same files.
fn write_nocloud(seed: &zonevisor_vm::nocloud::Seed, image: &Path, digest_file: &Path) -> std::io::Result<()> {
    let digest = zonevisor_vm::nocloud::digest(seed);
    if image.is_file() && std::fs::read_to_string(digest_file).is_ok_and(|d| d.trim() == digest) {
        return Ok(());
    }
    zonevisor_vm::nocloud::write_image(seed, image)?;
    std::fs::write(digest_file, format!("{digest}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_listens_only_where_the_host_has_the_address() {
        assert!(host_has_address("127.0.0.1".parse().unwrap()));
        assert!(host_has_address("::".parse().unwrap()));
        // TEST-NET-2: documentation only, on no host.
        assert!(!host_has_address("198.51.100.77".parse().unwrap()));
    }

    #[test]
    fn start_options_override_the_boot_property() {
        let opts = StartRequest { order: Some("cd".into()), once: Some("d".into()), ..StartRequest::default() };
        assert_eq!(boot_order(Some("order=c"), &opts).as_deref(), Some("order=cd,once=d"));
        assert_eq!(boot_order(Some("order=c"), &StartRequest::default()).as_deref(), Some("order=c"));
        assert_eq!(boot_order(None, &StartRequest::default()), None);
    }

    #[test]
    fn attached_files_stay_in_the_zone_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("x.iso"), b"iso").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.iso")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        assert_eq!(in_zone_root(&root, "/x.iso").unwrap(), root.join("x.iso"));
        assert!(in_zone_root(&root, "/link.iso").unwrap_err().contains("symlink"));
        assert!(in_zone_root(&root, "/../etc/passwd").unwrap_err().contains(".."));
        assert!(in_zone_root(&root, "/d").unwrap_err().contains("not a regular file"));
        assert!(in_zone_root(&root, "/missing.iso").is_err());
    }
}
