//! The typed VM configuration and the QEMU command line built from it.
//!
//! The daemon fills a [`VmConfig`] from a `kvm` or `bhyve` payload; [`argv`]
//! turns it into the arguments of `qemu-system-x86_64` (QEMU 7.2 and later),
//! which the monitor runs in the VM's jail as an unprivileged user. Every
//! path in the config is a path as seen inside the jail, and [`argv`] does
//! no I/O: it only checks values and spells options.
//!
//! | SmartOS property            | QEMU                                                                  |
//! |-----------------------------|-----------------------------------------------------------------------|
//! | `uuid`                      | `-uuid`, and `uuid=`/`serial=` of `-smbios type=1`                    |
//! | `alias` (or `uuid`)         | `-name guest=…`                                                       |
//! | `ram`, `vcpus`              | `-m <ram>M`, `-smp <vcpus>`                                           |
//! | `cpu_type`                  | `-cpu` (`host` becomes `max` under TCG, which has no host CPU)        |
//! | brand `kvm` / `bhyve`       | `-machine pc` (i440FX) / `-machine q35` (ICH9, built-in AHCI)         |
//! | `bootrom: uefi` (bhyve)     | two `-drive if=pflash` (OVMF code read-only, the VM's own vars)       |
//! | `disks.N`                   | `-drive if=none,id=driveN,…` and one `-device` (table below)          |
//! | `boot`                      | `bootindex=` of each disk and NIC (see "Boot order")                  |
//! | `nics.N`                    | `-netdev tap,id=netN,fd=100+N` (the monitor's tap) and `-device <model>,netdev=netN,mac=…` |
//! | `vga`                       | `-vga` (`std`, `cirrus`, `vmware`, `qxl`, plus `virtio` and `none`)   |
//! | `vnc_port`, `vnc_password`  | `-vnc <addr>:<port − 5900>[,to=999][,password=on]` and a USB tablet   |
//! | `qemu_opts`                 | replaces the display options (VNC and its USB tablet), as on SmartOS  |
//! | `qemu_extra_opts`           | appended last                                                         |
//!
//! | `disks.N.model` | device                                                                       |
//! |-----------------|------------------------------------------------------------------------------|
//! | `virtio`        | `virtio-blk-pci`                                                             |
//! | `ide`           | `ide-hd`/`ide-cd` on the PIIX IDE buses (`pc`: 4 places) or q35's AHCI ports |
//! | `scsi`          | `scsi-hd`/`scsi-cd` on one `virtio-scsi-pci` (`scsi0`)                       |
//! | `ahci`          | `ide-hd`/`ide-cd` on an `ich9-ahci` (`ahci0`, `pc`) or q35's AHCI (6 ports)  |
//! | `nvme`          | `nvme` with `serial=diskN`                                                   |
//!
//! Fixed parts, for every VM: `-nodefaults -no-user-config -display none`;
//! QMP on a unix socket (`-chardev socket,…,server=on,wait=off` and
//! `-mon mode=control`, what `-qmp unix:…` expands to, spelled out so a path
//! with `=` in it stays a path); the console on the first serial port
//! through QEMU's stdio (the monitor gives QEMU a pty), the metadata service
//! on the second (`/dev/ttyS1`, where cloud-init's SmartOS datasource and
//! mdata-client look); SMBIOS type 1 as SmartOS sets it (product
//! `SmartDC HVM`, which cloud-init's `ds-identify` and mdata-client match);
//! and `-sandbox on` denying obsolete, privilege-raising, spawning and
//! resource-control system calls. The tests run the command line of a VM
//! with every disk model, NIC model, VNC and UEFI through the installed
//! QEMU, so each option is one it accepts.
//!
//! # Accelerator
//!
//! `-accel kvm`, or `-accel tcg,tb-size=64` (QEMU refuses `-accel` beside
//! `-machine accel=`, and only `-accel` takes `tb-size`). TCG's translation
//! cache defaults to 1 GiB, which fills as a long-running guest executes new
//! code (translations are invalidated but their space is only reclaimed by a
//! full flush), so the QEMU process would grow towards 1 GiB above the
//! guest's RAM. [`TCG_TB_SIZE_MIB`] (64 MiB) holds what a Linux kernel boot
//! and a busy busybox userland translate (47 MB measured on QEMU 7.2) before
//! anything is flushed; past it TCG flushes and translates again, which
//! costs time, never correctness.
//!
//! # Disks
//!
//! Every disk is `format=raw` with `cache=none`: the guest's page cache is
//! the only cache, so disk data is not held twice and host page cache is not
//! charged to the VM's memory cgroup, and flushes still reach the disk.
//! `cache=none` opens with `O_DIRECT`; ext4, tmpfs (Linux 6.6 and later) and
//! btrfs accept it (checked by booting a guest that writes and reads back
//! through each). Since Linux 6.15 btrfs turns direct writes to checksummed
//! files into buffered ones ("btrfs: always fallback to buffered write if the
//! inode requires checksum"), which avoids false checksum errors when a guest
//! changes a buffer in flight; on older kernels disk images on btrfs should be
//! created NOCOW (`chattr +C`), as btrfs recommends for VM images anyway. A
//! file system without `O_DIRECT` makes QEMU fail at start with "Could not
//! open …: Invalid argument". Writable disks pass `discard=unmap`, so a
//! guest's TRIM frees space in the pool. `block_size` (512 to 131072, a power
//! of two) becomes `physical_block_size`; the logical block stays 512 bytes
//! as on SmartOS, so images partitioned in 512-byte sectors stay readable
//! (and IDE only has 512).
//!
//! # Boot order
//!
//! SmartOS's `boot` is QEMU's legacy `-boot` string (default `order=cd`):
//! `c` the disks, `d` the cdroms, `n` the NICs, and `once=` an order for the
//! next boot only. Legacy `-boot order` only reaches SeaBIOS (not OVMF) and
//! QEMU's documentation warns against mixing it with `bootindex`, so the
//! order becomes `bootindex` properties, which both firmwares honour: the
//! classes in order, within a class the `boot: true` disk first and then
//! payload order. Indexes start at 1, because QEMU gives 0 to the ROM that
//! boots `-kernel` (a device asking for 0 beside `-kernel` is refused). With
//! `once=`, the first boot uses the once classes, then the rest of `order`;
//! [`bootindex_after_once`] gives the indexes for later boots, which the
//! monitor sets over QMP (`qom-set /machine/peripheral/<id> bootindex`; QEMU
//! rebuilds the firmware's boot list at each reset). `menu`, `splash-time`,
//! `reboot-timeout` and `strict` pass to `-boot` unchanged.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::accel::AccelKind;

/// TCG's translation cache in MiB (`-accel tcg,tb-size=`); see the module
/// documentation for the choice.
pub const TCG_TB_SIZE_MIB: u64 = 64;

/// The first VNC port: display N listens on 5900 + N.
pub const VNC_BASE_PORT: u16 = 5900;

/// How many displays `vnc_port: 0` searches for a free one (`to=999`:
/// ports 5900 to 6899).
pub const VNC_DISPLAYS_SEARCHED: u16 = 1000;

/// The longest unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Everything QEMU needs to run one VM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// The instance UUID: `-uuid`, and the SMBIOS system UUID.
    pub uuid: String,
    /// The VM's name for QEMU (`-name`): its alias, or its UUID.
    pub name: String,
    /// The accelerator ([`crate::accel::detect`] chooses it once per host).
    pub accel: AccelKind,
    /// Guest RAM in MiB (SmartOS `ram`).
    pub ram_mib: u64,
    /// Virtual CPUs (SmartOS `vcpus`).
    pub vcpus: u32,
    /// SmartOS `cpu_type`: `qemu64` (the default) or `host` (KVM only: under
    /// TCG it becomes QEMU's `max`); other QEMU CPU models pass through.
    pub cpu_type: String,
    /// The chipset.
    pub machine: Machine,
    /// The firmware.
    pub firmware: Firmware,
    /// The disks, in payload order (`disks.N` in errors is this index).
    pub disks: Vec<DiskConfig>,
    /// The NICs, in payload order; may be empty.
    pub nics: Vec<NicConfig>,
    /// SmartOS `boot` (`order=cd,once=d`); `None` is `order=cd`.
    pub boot_order: Option<String>,
    /// A kernel booted directly instead of through the firmware's boot order.
    pub direct_boot: Option<DirectBoot>,
    /// SmartOS `vga`: `std`, `cirrus`, `vmware`, `qxl`, or `virtio`/`none`.
    pub vga: String,
    /// VNC; `None` is SmartOS `vnc_port: -1` (no VNC).
    pub vnc: Option<VncConfig>,
    /// QMP's unix socket (QEMU listens; the monitor connects).
    pub qmp_socket: PathBuf,
    /// The second serial port's unix socket, where the metadata service
    /// talks to the guest's `/dev/ttyS1` (QEMU listens).
    pub metadata_socket: PathBuf,
    /// SMBIOS type 1 ([`Smbios::smartos`] fills it as SmartOS does).
    pub smbios: Smbios,
    /// SmartOS `qemu_opts`: replaces the display options (see [`argv`]).
    pub qemu_opts: Option<String>,
    /// SmartOS `qemu_extra_opts`: appended to the command line.
    pub qemu_extra_opts: Option<String>,
}

/// The emulated chipset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// i440FX + PIIX3 (`-machine pc`), the `kvm` brand's.
    Pc,
    /// Q35 + ICH9 (`-machine q35`), the `bhyve` brand's: it has AHCI built in.
    Q35,
}

impl Machine {
    /// QEMU's machine type name.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// The firmware the VM starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// QEMU's SeaBIOS.
    Bios,
    /// OVMF: `code` is shared and mapped read-only, `vars` is this VM's own
    /// writable copy of the matching template (see [`ovmf`]).
    Uefi {
        /// The OVMF code image.
        code: PathBuf,
        /// This VM's UEFI variable store.
        vars: PathBuf,
    },
}

/// One disk (SmartOS `disks.N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskConfig {
    /// The raw image or block device (absolute, as seen in the jail).
    pub path: PathBuf,
    /// The emulated controller.
    pub model: DiskModel,
    /// Disk or cdrom.
    pub media: Media,
    /// SmartOS `boot`: this disk comes first among its media in the boot order.
    pub boot: bool,
    /// SmartOS `block_size`: the physical block size shown to the guest.
    pub block_size: Option<u32>,
    /// Attach read-only (a cdrom always is).
    pub read_only: bool,
}

/// A disk's controller, by SmartOS name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskModel {
    /// virtio-blk.
    Virtio,
    /// IDE (`kvm` brand).
    Ide,
    /// SCSI, on virtio-scsi (`kvm` brand).
    Scsi,
    /// SATA through AHCI (`bhyve` brand).
    Ahci,
    /// NVMe (`bhyve` brand).
    Nvme,
}

impl DiskModel {
    /// The SmartOS name.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskModel::Virtio => "virtio",
            DiskModel::Ide => "ide",
            DiskModel::Scsi => "scsi",
            DiskModel::Ahci => "ahci",
            DiskModel::Nvme => "nvme",
        }
    }
}

impl fmt::Display for DiskModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DiskModel {
    type Err = ConfigError;

    /// Parses a SmartOS model name; the error's property is `model`
    /// (prefix it with [`ConfigError::at`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "virtio" => Ok(DiskModel::Virtio),
            "ide" => Ok(DiskModel::Ide),
            "scsi" => Ok(DiskModel::Scsi),
            "ahci" => Ok(DiskModel::Ahci),
            "nvme" => Ok(DiskModel::Nvme),
            _ => {
                Err(ConfigError::invalid("model", format!("{s:?} is not a disk model (virtio, ide, scsi, ahci, nvme)")))
            }
        }
    }
}

/// What a disk is to the guest (SmartOS `disks.N.media`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    /// A writable (unless `read_only`) hard disk.
    Disk,
    /// A read-only CD-ROM.
    Cdrom,
}

impl FromStr for Media {
    type Err = ConfigError;

    /// Parses `disk` or `cdrom`; the error's property is `media`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disk" => Ok(Media::Disk),
            "cdrom" => Ok(Media::Cdrom),
            _ => Err(ConfigError::invalid("media", format!("{s:?} is not a disk media (disk, cdrom)"))),
        }
    }
}

/// One NIC (SmartOS `nics.N`), backed by a host tap device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicConfig {
    /// The guest's MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// The emulated NIC.
    pub model: NicModel,
    /// The tap device's name on the host. QEMU does not open it: the
    /// monitor does, and QEMU inherits it as descriptor
    /// [`TAP_FD_BASE`] + the NIC's index.
    pub ifname: String,
}

/// The descriptor number QEMU finds NIC 0's tap at (NIC 1's is the next,
/// and so on): the jail opens nothing itself, not even `/dev/net/tun`.
pub const TAP_FD_BASE: i32 = 100;

/// A NIC's emulated device, by SmartOS name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// virtio-net.
    Virtio,
    /// Intel e1000.
    E1000,
    /// Realtek RTL8139.
    Rtl8139,
}

impl NicModel {
    /// The SmartOS name.
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::Rtl8139 => "rtl8139",
        }
    }

    fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
            NicModel::Rtl8139 => "rtl8139",
        }
    }
}

impl fmt::Display for NicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NicModel {
    type Err = ConfigError;

    /// Parses a SmartOS NIC model; the error's property is `model`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "virtio" => Ok(NicModel::Virtio),
            "e1000" => Ok(NicModel::E1000),
            "rtl8139" => Ok(NicModel::Rtl8139),
            _ => Err(ConfigError::invalid("model", format!("{s:?} is not a NIC model (virtio, e1000, rtl8139)"))),
        }
    }
}

/// A kernel started by QEMU itself (`-kernel`, `-initrd`, `-append`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectBoot {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// The kernel command line (nothing is passed when empty).
    pub cmdline: String,
}

/// The VNC server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VncConfig {
    /// The address to listen on.
    pub listen: IpAddr,
    /// SmartOS `vnc_port`: 0 takes the first free port from 5900 (QEMU
    /// searches [`VNC_DISPLAYS_SEARCHED`] displays), otherwise 5900 or above.
    pub port: u16,
    /// Require a password (`vnc_password` is set): QEMU refuses clients until
    /// the monitor sets it over QMP (`change-vnc-password`).
    pub password: bool,
}

/// SMBIOS type 1 (system information) as the guest reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Smbios {
    /// `Joyent`.
    pub manufacturer: String,
    /// `SmartDC HVM`: what cloud-init and mdata-client recognize.
    pub product: String,
    /// `7.<platform buildstamp>`.
    pub version: String,
    /// The instance UUID.
    pub serial: String,
    /// The instance UUID.
    pub uuid: String,
    /// `001`.
    pub sku: String,
    /// `Virtual Machine`.
    pub family: String,
}

/// SmartOS's SMBIOS manufacturer.
pub const SMBIOS_MANUFACTURER: &str = "Joyent";
/// SmartOS's SMBIOS product, which cloud-init's SmartOS datasource matches
/// (`SmartDC*`) and mdata-client compares exactly.
pub const SMBIOS_PRODUCT: &str = "SmartDC HVM";
/// SmartOS's SMBIOS SKU.
pub const SMBIOS_SKU: &str = "001";
/// SmartOS's SMBIOS family.
pub const SMBIOS_FAMILY: &str = "Virtual Machine";

impl Smbios {
    /// The values SmartOS gives its VMs: serial and UUID are the instance
    /// UUID, version is `7.` and the platform buildstamp (SmartOS's kvm
    /// brand uses the payload's `platform_buildstamp`, its bhyve brand the
    /// running platform's; e.g. `7.20250101T000000Z`).
    pub fn smartos(uuid: &str, platform_buildstamp: &str) -> Smbios {
        Smbios {
            manufacturer: SMBIOS_MANUFACTURER.to_owned(),
            product: SMBIOS_PRODUCT.to_owned(),
            version: format!("7.{platform_buildstamp}"),
            serial: uuid.to_owned(),
            uuid: uuid.to_owned(),
            sku: SMBIOS_SKU.to_owned(),
            family: SMBIOS_FAMILY.to_owned(),
        }
    }
}

/// A VM configuration that cannot become a QEMU command line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A property's value is refused; `property` is the SmartOS name
    /// (`disks.1.model`, `vnc_port`, `qemu_extra_opts`).
    #[error("{property}: {reason}")]
    Invalid {
        /// The property, as a payload path.
        property: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`split_opts`] met unbalanced quoting (no property is known there;
    /// [`argv`] reports it as [`ConfigError::Invalid`] of the option).
    #[error("{0}")]
    Split(String),
}

impl ConfigError {
    fn invalid(property: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { property: property.into(), reason: reason.into() }
    }

    /// Puts a prefix before the property: a model parsed for the second disk
    /// reports `disks.1.model` with `err.at("disks.1")`. A split error
    /// becomes an `Invalid` of the prefix itself.
    pub fn at(self, prefix: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { property, reason } => {
                ConfigError::Invalid { property: format!("{prefix}.{property}"), reason }
            }
            ConfigError::Split(reason) => ConfigError::Invalid { property: prefix.to_owned(), reason },
        }
    }

    /// The property at fault (`None` for a bare [`ConfigError::Split`]).
    pub fn property(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { property, .. } => Some(property),
            ConfigError::Split(_) => None,
        }
    }
}

/// A device's place in the firmware's boot order, for QMP's `qom-set` on
/// `/machine/peripheral/<device>` property `bootindex` (`None`: -1, not
/// bootable by index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootIndex {
    /// The QEMU device id (`disk0`, `nic1`).
    pub device: String,
    /// The index, from 1.
    pub bootindex: Option<u32>,
}

/// The QEMU arguments (after the binary's name) that run `cfg`.
///
/// The order: identity (`-name`, `-uuid`), defaults off, machine and
/// accelerator, CPU and memory, SMBIOS, sandbox, QMP, the two serial ports,
/// firmware, direct boot, `-boot` extras, VGA, disks (controllers first),
/// NICs, then the display options (VNC and a USB tablet for its pointer) or,
/// when `qemu_opts` is set, its words in their place (as SmartOS's
/// `qemu_opts` replaces `-vnc … -usb -usbdevice tablet …` and keeps the
/// rest), and last the words of `qemu_extra_opts`.
pub fn argv(cfg: &VmConfig) -> Result<Vec<String>, ConfigError> {
    let mut a = Args::default();
    check_uuid("uuid", &cfg.uuid)?;
    if cfg.name.is_empty() {
        return Err(ConfigError::invalid("alias", "the VM's name for QEMU is empty"));
    }
    a.push2("-name", format!("guest={}", escape(&cfg.name)));
    a.push2("-uuid", &cfg.uuid);
    a.push(["-nodefaults", "-no-user-config", "-display", "none"]);
    a.push2("-machine", cfg.machine.qemu_name());
    match cfg.accel {
        AccelKind::Kvm => a.push2("-accel", "kvm"),
        AccelKind::Tcg => a.push2("-accel", format!("tcg,tb-size={TCG_TB_SIZE_MIB}")),
    }
    a.push2("-cpu", cpu_model(cfg)?);
    if cfg.ram_mib == 0 {
        return Err(ConfigError::invalid("ram", "0 MiB: a VM needs memory"));
    }
    a.push2("-m", format!("{}M", cfg.ram_mib));
    if cfg.vcpus == 0 {
        return Err(ConfigError::invalid("vcpus", "0: a VM needs at least one vCPU"));
    }
    a.push2("-smp", cfg.vcpus.to_string());
    a.push2("-smbios", smbios(&cfg.smbios)?);
    a.push2("-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");

    let qmp = socket_path("qmp_socket", &cfg.qmp_socket)?;
    a.push2("-chardev", format!("socket,id=qmp,path={qmp},server=on,wait=off"));
    a.push2("-mon", "chardev=qmp,mode=control");
    a.push2("-chardev", "stdio,id=console,signal=off");
    a.push2("-serial", "chardev:console");
    let metadata = socket_path("metadata_socket", &cfg.metadata_socket)?;
    a.push2("-chardev", format!("socket,id=metadata,path={metadata},server=on,wait=off"));
    a.push2("-serial", "chardev:metadata");

    if let Firmware::Uefi { code, vars } = &cfg.firmware {
        let code = escape(path_str("bootrom", code)?);
        let vars = escape(path_str("bootrom", vars)?);
        a.push2("-drive", format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"));
        a.push2("-drive", format!("if=pflash,format=raw,unit=1,file={vars}"));
    }
    if let Some(direct) = &cfg.direct_boot {
        a.push2("-kernel", path_str("kernel", &direct.kernel)?);
        if let Some(initrd) = &direct.initrd {
            a.push2("-initrd", path_str("initrd", initrd)?);
        }
        if !direct.cmdline.is_empty() {
            a.push2("-append", &direct.cmdline);
        }
    }

    let boot = BootSpec::parse(cfg.boot_order.as_deref())?;
    if !boot.passthrough.is_empty() {
        a.push2("-boot", boot.passthrough.join(","));
    }
    a.push2("-vga", vga(&cfg.vga)?);

    let first_boot = boot.first_boot();
    let indexes = bootindexes(cfg, &first_boot)?;
    disks(&mut a, cfg, &indexes)?;
    nics(&mut a, cfg, &indexes)?;

    match &cfg.qemu_opts {
        Some(opts) => a.0.extend(split_opts(opts).map_err(|e| e.at("qemu_opts"))?),
        None => {
            if let Some(vnc) = &cfg.vnc {
                a.push2("-vnc", vnc_option(vnc)?);
                a.push2("-device", "qemu-xhci,id=usb");
                a.push2("-device", "usb-tablet,bus=usb.0");
            }
        }
    }
    if let Some(extra) = &cfg.qemu_extra_opts {
        a.0.extend(split_opts(extra).map_err(|e| e.at("qemu_extra_opts"))?);
    }
    Ok(a.0)
}

/// The bootindex of every disk and NIC for the boots after the first, when
/// `boot` has `once=` (`None` otherwise: the first boot's indexes stay).
///
/// To apply them, the monitor first sets every listed device to -1 and then
/// the new values (QEMU refuses an index that another device still holds).
pub fn bootindex_after_once(cfg: &VmConfig) -> Result<Option<Vec<BootIndex>>, ConfigError> {
    let boot = BootSpec::parse(cfg.boot_order.as_deref())?;
    if boot.once.is_none() {
        return Ok(None);
    }
    let indexes = bootindexes(cfg, &boot.order)?;
    let devices =
        (0..cfg.disks.len()).map(|i| format!("disk{i}")).chain((0..cfg.nics.len()).map(|i| format!("nic{i}")));
    Ok(Some(
        devices
            .zip(indexes.disks.iter().chain(indexes.nics.iter()))
            .map(|(device, index)| BootIndex { device, bootindex: *index })
            .collect(),
    ))
}

/// Splits `s` into words as a POSIX shell would, without expansions:
/// blanks separate words; `'…'` keeps everything literally; `"…"` keeps
/// everything but `\"`, `\\`, `\$`, `` \` `` and backslash-newline; a
/// backslash outside quotes keeps the next character. `$`, `*` and `~`
/// stay as they are (SmartOS's start script let bash expand them; nothing
/// in a VM's options needs it).
pub fn split_opts(s: &str) -> Result<Vec<String>, ConfigError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => word.push(c),
                        None => return Err(ConfigError::Split(format!("unterminated quote (') opened at byte {at}"))),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.peek() {
                            Some(&(_, e @ ('"' | '\\' | '$' | '`'))) => {
                                word.push(e);
                                chars.next();
                            }
                            Some(&(_, '\n')) => {
                                chars.next();
                            }
                            _ => word.push('\\'),
                        },
                        Some((_, c)) => word.push(c),
                        None => return Err(ConfigError::Split(format!("unterminated quote (\") opened at byte {at}"))),
                    }
                }
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, c)) => {
                    word.push(c);
                    in_word = true;
                }
                None => return Err(ConfigError::Split(format!("a lone backslash ends the string (byte {at})"))),
            },
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `qemu-system-x86_64`: the first on `PATH`, then the usual places
/// (`/usr/bin`, `/usr/local/bin`, and RHEL's `/usr/libexec/qemu-kvm`).
pub fn qemu_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("qemu-system-x86_64")).collect::<Vec<_>>())
        .unwrap_or_default();
    let usual = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64", "/usr/libexec/qemu-kvm"]
        .map(PathBuf::from);
    on_path.into_iter().chain(usual).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// OVMF's code image and the variable-store template of the same build
/// (copy the template per VM: [`Firmware::Uefi`]'s `vars`). Looks for the
/// 4 MiB Debian/Ubuntu build first, then the 2 MiB one, then Fedora's and
/// Arch's; neither secure-boot build (they need SMM) is chosen.
pub fn ovmf() -> Option<(PathBuf, PathBuf)> {
    const PAIRS: [(&str, &str); 5] = [
        ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
        ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
        ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
        ("/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"),
    ];
    PAIRS
        .iter()
        .map(|(code, vars)| (PathBuf::from(code), PathBuf::from(vars)))
        .find(|(code, vars)| code.is_file() && vars.is_file())
}

/// Memory above the guest's `ram` a VM's cgroup allows for QEMU itself, in
/// MiB: 96 MiB, plus 8 MiB per GiB of RAM, plus under TCG the translation
/// cache ([`TCG_TB_SIZE_MIB`]) and 32 MiB for TCG's own tables.
///
/// Measured on QEMU 7.2 as the memory cgroup's peak usage minus `ram`, with
/// guest RAM preallocated (`-mem-prealloc`) so that all of it counts, running
/// [`argv`]'s command line: a Linux kernel booted directly, then busybox
/// compressing, hashing and walking `/sys` and `/proc`:
///
/// | case (TCG unless said)                         | measured | allowance |
/// |------------------------------------------------|----------|-----------|
/// | paused before the guest runs, 1 GiB, KVM or TCG | 21 MiB   | –         |
/// | paused, 4 GiB, KVM                             | 35 MiB   | –         |
/// | `pc`, SeaBIOS, 1 GiB, 2 vCPUs                  | 95 MiB   | 200 MiB   |
/// | `q35`, OVMF, 1 GiB, 2 vCPUs                    | 115 MiB  | 200 MiB   |
/// | `pc`, SeaBIOS, 4 GiB, 4 vCPUs                  | 103 MiB  | 224 MiB   |
/// | `pc`, SeaBIOS, 1 GiB, 2 vCPUs, `vga: qxl`      | 108 MiB  | 312 MiB   |
/// | the first two with `tb-size=8`                 | 53, 66   | –         |
///
/// So QEMU without its translation cache takes about 45 MiB (SeaBIOS) to
/// 58 MiB (OVMF), TCG's own tables included; the rest of a TCG run is
/// translated code, which fills [`TCG_TB_SIZE_MIB`] in a long-running guest.
/// TCG's software TLB grows with the guest's working set, hence 32 MiB on
/// top. Video memory counts once the guest draws: 16 MiB for `std` and
/// `vmware`, 4 for `cirrus`, 8 for `virtio`, 128 for `qxl` (see
/// [`VmConfig::memory_overhead_mib`]).
///
/// Under KVM (not measurable running here: this host's KVM emulates) there
/// is no translation cache and the kernel adds, per GiB of RAM, about 2 MiB
/// of EPT/NPT page tables and 2 MiB of reverse maps (charged to the VM's
/// cgroup), and QEMU's own page tables take up to 2 MiB (less with
/// transparent huge pages): a 1 GiB OVMF guest needs about 58 + 6 MiB, and
/// gets 104.
pub fn memory_overhead_mib(ram_mib: u64, accel: AccelKind) -> u64 {
    const BASE_MIB: u64 = 96;
    const PER_GIB_MIB: u64 = 8;
    const TCG_TABLES_MIB: u64 = 32;
    let common = BASE_MIB + ram_mib.div_ceil(1024) * PER_GIB_MIB;
    match accel {
        AccelKind::Kvm => common,
        AccelKind::Tcg => common + TCG_TB_SIZE_MIB + TCG_TABLES_MIB,
    }
}

impl VmConfig {
    /// [`memory_overhead_mib`] for this VM, plus video memory beyond the
    /// 16 MiB of a `std` VGA (`qxl` has 128) and 2 MiB for each vCPU past 8
    /// (thread stacks and, under TCG, the vCPU's TLB).
    pub fn memory_overhead_mib(&self) -> u64 {
        let video = match self.vga.as_str() {
            "qxl" => 128 - 16,
            _ => 0,
        };
        let vcpus = u64::from(self.vcpus.saturating_sub(8)) * 2;
        memory_overhead_mib(self.ram_mib, self.accel) + video + vcpus
    }
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn push<const N: usize>(&mut self, words: [&str; N]) {
        self.0.extend(words.iter().map(|w| (*w).to_owned()));
    }

    fn push2(&mut self, option: &str, value: impl Into<String>) {
        self.0.push(option.to_owned());
        self.0.push(value.into());
    }
}

/// Escapes a value inside a QEMU `key=value,…` list (a comma is doubled).
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_str<'a>(property: &str, path: &'a Path) -> Result<&'a str, ConfigError> {
    let s = path.to_str().ok_or_else(|| ConfigError::invalid(property, format!("{path:?} is not UTF-8")))?;
    if !path.is_absolute() {
        return Err(ConfigError::invalid(property, format!("{s:?} is not an absolute path")));
    }
    Ok(s)
}

fn socket_path(property: &str, path: &Path) -> Result<String, ConfigError> {
    let s = path_str(property, path)?;
    if s.len() > MAX_SOCKET_PATH {
        return Err(ConfigError::invalid(
            property,
            format!("{s:?} is {} bytes; a unix socket path holds at most {MAX_SOCKET_PATH}", s.len()),
        ));
    }
    Ok(escape(s))
}

fn check_uuid(property: &str, uuid: &str) -> Result<(), ConfigError> {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    let ok = groups.len() == lengths.len()
        && groups.iter().zip(lengths).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(property, format!("{uuid:?} is not a UUID (8-4-4-4-12 hex digits)")))
    }
}

fn cpu_model(cfg: &VmConfig) -> Result<String, ConfigError> {
    let cpu = cfg.cpu_type.as_str();
    let valid = !cpu.is_empty()
        && cpu.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b',' | b'+' | b'='));
    if !valid {
        return Err(ConfigError::invalid(
            "cpu_type",
            format!("{cpu:?} is not a CPU model (qemu64, host, or a QEMU model with +/- flags)"),
        ));
    }
    let (model, flags) = cpu.split_once(',').map_or((cpu, None), |(m, f)| (m, Some(f)));
    let model = match (model, cfg.accel) {
        ("host", AccelKind::Tcg) => "max",
        (model, _) => model,
    };
    Ok(match flags {
        Some(flags) => format!("{model},{flags}"),
        None => model.to_owned(),
    })
}

fn smbios(s: &Smbios) -> Result<String, ConfigError> {
    check_uuid("smbios.uuid", &s.uuid)?;
    Ok(format!(
        "type=1,manufacturer={},product={},version={},serial={},uuid={},sku={},family={}",
        escape(&s.manufacturer),
        escape(&s.product),
        escape(&s.version),
        escape(&s.serial),
        s.uuid,
        escape(&s.sku),
        escape(&s.family)
    ))
}

fn vga(vga: &str) -> Result<&'static str, ConfigError> {
    match vga {
        "std" => Ok("std"),
        "cirrus" => Ok("cirrus"),
        "vmware" => Ok("vmware"),
        "qxl" => Ok("qxl"),
        "virtio" => Ok("virtio"),
        "none" => Ok("none"),
        "xenfb" => Err(ConfigError::invalid(
            "vga",
            "xenfb is Xen's paravirtual framebuffer and needs a Xen host (std, cirrus, vmware, qxl, virtio, none)",
        )),
        other => Err(ConfigError::invalid(
            "vga",
            format!("{other:?} is not a VGA model (std, cirrus, vmware, qxl, virtio, none)"),
        )),
    }
}

fn vnc_option(vnc: &VncConfig) -> Result<String, ConfigError> {
    let host = match vnc.listen {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut option = match vnc.port {
        0 => format!("{host}:0,to={}", VNC_DISPLAYS_SEARCHED - 1),
        port if port >= VNC_BASE_PORT => format!("{host}:{}", port - VNC_BASE_PORT),
        port => {
            return Err(ConfigError::invalid(
                "vnc_port",
                format!(
                "{port} is below {VNC_BASE_PORT}, where VNC display 0 listens (0 picks a free port, -1 turns VNC off)"
            ),
            ))
        }
    };
    if vnc.password {
        option.push_str(",password=on");
    }
    Ok(option)
}

/// A class of boot devices, by its `-boot` letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BootClass {
    /// `c`: hard disks.
    Disk,
    /// `d`: cdroms.
    Cdrom,
    /// `n`: the NICs (PXE).
    Network,
}

/// SmartOS's `boot`, parsed.
#[derive(Debug)]
struct BootSpec {
    order: Vec<BootClass>,
    once: Option<Vec<BootClass>>,
    /// `menu=`, `splash-time=`, `reboot-timeout=`, `strict=`, for `-boot`.
    passthrough: Vec<String>,
}

impl BootSpec {
    fn parse(boot: Option<&str>) -> Result<BootSpec, ConfigError> {
        let Some(boot) = boot else {
            return Ok(BootSpec { order: vec![BootClass::Disk, BootClass::Cdrom], once: None, passthrough: vec![] });
        };
        let err = |reason: String| ConfigError::invalid("boot", reason);
        let mut order = None;
        let mut once = None;
        let mut passthrough = Vec::new();
        for (i, item) in boot.split(',').enumerate() {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k, v),
                // As QEMU's: a first item without a key is the order.
                None if i == 0 => ("order", item),
                None => return Err(err(format!("{item:?} has no value (order=, once=, menu=, …)"))),
            };
            match key {
                "order" | "once" => {
                    let classes = Self::classes(value).map_err(|e| err(format!("{key}={value}: {e}")))?;
                    let slot = if key == "order" { &mut order } else { &mut once };
                    if slot.replace(classes).is_some() {
                        return Err(err(format!("{key} is given twice")));
                    }
                }
                "menu" | "strict" if matches!(value, "on" | "off") => passthrough.push(item.to_owned()),
                "splash-time" | "reboot-timeout" if value.parse::<i64>().is_ok() => passthrough.push(item.to_owned()),
                "menu" | "strict" => return Err(err(format!("{key}={value}: the value is on or off"))),
                "splash-time" | "reboot-timeout" => {
                    return Err(err(format!("{key}={value}: the value is milliseconds")))
                }
                _ => {
                    return Err(err(format!(
                        "unknown key {key:?} (order, once, menu, strict, splash-time, reboot-timeout)"
                    )))
                }
            }
        }
        Ok(BootSpec { order: order.unwrap_or_else(|| vec![BootClass::Disk, BootClass::Cdrom]), once, passthrough })
    }

    fn classes(letters: &str) -> Result<Vec<BootClass>, String> {
        let mut classes = Vec::new();
        for letter in letters.chars() {
            let class = match letter {
                'c' => BootClass::Disk,
                'd' => BootClass::Cdrom,
                'n' => BootClass::Network,
                'a' | 'b' => return Err(format!("'{letter}' is a floppy drive, which these VMs do not have")),
                _ => return Err(format!("'{letter}' is not a boot device (c: disk, d: cdrom, n: network)")),
            };
            if classes.contains(&class) {
                return Err(format!("'{letter}' is given twice"));
            }
            classes.push(class);
        }
        Ok(classes)
    }

    /// The classes of the first boot: `once` first, then the rest of `order`.
    fn first_boot(&self) -> Vec<BootClass> {
        let mut classes = self.once.clone().unwrap_or_default();
        for class in &self.order {
            if !classes.contains(class) {
                classes.push(*class);
            }
        }
        classes
    }
}

/// The bootindex of each disk and NIC, by payload index.
struct BootIndexes {
    disks: Vec<Option<u32>>,
    nics: Vec<Option<u32>>,
}

fn bootindexes(cfg: &VmConfig, classes: &[BootClass]) -> Result<BootIndexes, ConfigError> {
    let mut boot_disk = None;
    for (i, disk) in cfg.disks.iter().enumerate() {
        if disk.boot {
            if let Some(first) = boot_disk {
                return Err(ConfigError::invalid(
                    format!("disks.{i}.boot"),
                    format!("only one disk can boot, and disks.{first} already has boot: true"),
                ));
            }
            boot_disk = Some(i);
        }
    }
    let mut out = BootIndexes { disks: vec![None; cfg.disks.len()], nics: vec![None; cfg.nics.len()] };
    // 0 belongs to QEMU's ROM for -kernel.
    let mut next = 1;
    for class in classes {
        match class {
            BootClass::Disk | BootClass::Cdrom => {
                let media = if *class == BootClass::Disk { Media::Disk } else { Media::Cdrom };
                let first = boot_disk.filter(|&i| cfg.disks[i].media == media);
                let rest = (0..cfg.disks.len()).filter(|&i| cfg.disks[i].media == media && Some(i) != first);
                for i in first.into_iter().chain(rest) {
                    out.disks[i] = Some(next);
                    next += 1;
                }
            }
            BootClass::Network => {
                for index in &mut out.nics {
                    *index = Some(next);
                    next += 1;
                }
            }
        }
    }
    Ok(out)
}

fn bootindex_suffix(index: Option<u32>) -> String {
    index.map(|i| format!(",bootindex={i}")).unwrap_or_default()
}

/// Where IDE/AHCI disks plug in, in order of use.
fn ata_places(machine: Machine, model: DiskModel) -> Vec<String> {
    match (machine, model) {
        (Machine::Pc, DiskModel::Ide) => {
            vec![
                "bus=ide.0,unit=0".into(),
                "bus=ide.0,unit=1".into(),
                "bus=ide.1,unit=0".into(),
                "bus=ide.1,unit=1".into(),
            ]
        }
        (Machine::Pc, _) => (0..6).map(|p| format!("bus=ahci0.{p}")).collect(),
        // q35's ICH9 AHCI: ports ide.0 to ide.5, shared by `ide` and `ahci` disks.
        (Machine::Q35, _) => (0..6).map(|p| format!("bus=ide.{p}")).collect(),
    }
}

fn disks(a: &mut Args, cfg: &VmConfig, indexes: &BootIndexes) -> Result<(), ConfigError> {
    let uses = |m: DiskModel| cfg.disks.iter().any(|d| d.model == m);
    if cfg.machine == Machine::Pc && uses(DiskModel::Ahci) {
        a.push2("-device", "ich9-ahci,id=ahci0");
    }
    if uses(DiskModel::Scsi) {
        a.push2("-device", "virtio-scsi-pci,id=scsi0");
    }
    let mut ide_used = 0;
    let mut ahci_used = 0;
    let mut scsi_used = 0u32;
    for (i, disk) in cfg.disks.iter().enumerate() {
        let prop = |p: &str| format!("disks.{i}.{p}");
        let path = escape(path_str(&prop("path"), &disk.path)?);
        let cdrom = disk.media == Media::Cdrom;
        let mut drive = format!("if=none,id=drive{i},file={path},format=raw,cache=none");
        if cdrom {
            drive.push_str(",media=cdrom,readonly=on");
        } else if disk.read_only {
            drive.push_str(",readonly=on");
        } else {
            drive.push_str(",discard=unmap");
        }
        let blocks = match disk.block_size {
            None => String::new(),
            Some(_) if cdrom => {
                return Err(ConfigError::invalid(
                    prop("block_size"),
                    "a cdrom has 2048-byte sectors; block_size applies to disks",
                ))
            }
            Some(size) if size.is_power_of_two() && (512..=131_072).contains(&size) => {
                format!(",logical_block_size=512,physical_block_size={size}")
            }
            Some(size) => {
                return Err(ConfigError::invalid(
                    prop("block_size"),
                    format!("{size} is not a power of two from 512 to 131072"),
                ))
            }
        };
        let (kind, place) = match disk.model {
            DiskModel::Virtio => ("virtio-blk-pci", String::new()),
            DiskModel::Nvme => ("nvme", format!(",serial=disk{i}")),
            DiskModel::Scsi => {
                if scsi_used > 255 {
                    return Err(ConfigError::invalid(prop("model"), "virtio-scsi has 256 targets, all taken"));
                }
                let place = format!(",bus=scsi0.0,channel=0,scsi-id={scsi_used},lun=0");
                scsi_used += 1;
                (if cdrom { "scsi-cd" } else { "scsi-hd" }, place)
            }
            DiskModel::Ide | DiskModel::Ahci => {
                let shared = cfg.machine == Machine::Q35 || disk.model == DiskModel::Ahci;
                let used = if shared { &mut ahci_used } else { &mut ide_used };
                let places = ata_places(cfg.machine, disk.model);
                let Some(place) = places.get(*used) else {
                    let what = match (cfg.machine, disk.model) {
                        (Machine::Pc, DiskModel::Ide) => "a pc machine has 4 IDE places (2 buses, 2 units each)",
                        (Machine::Pc, _) => "the AHCI controller has 6 ports",
                        (Machine::Q35, _) => "q35's AHCI controller has 6 ports, shared by ide and ahci disks",
                    };
                    return Err(ConfigError::invalid(prop("model"), format!("no free place for this disk: {what}")));
                };
                *used += 1;
                (if cdrom { "ide-cd" } else { "ide-hd" }, format!(",{place}"))
            }
        };
        a.push2("-drive", drive);
        a.push2(
            "-device",
            format!("{kind},drive=drive{i},id=disk{i}{place}{blocks}{}", bootindex_suffix(indexes.disks[i])),
        );
    }
    Ok(())
}

fn nics(a: &mut Args, cfg: &VmConfig, indexes: &BootIndexes) -> Result<(), ConfigError> {
    for (i, nic) in cfg.nics.iter().enumerate() {
        check_mac(&format!("nics.{i}.mac"), &nic.mac)?;
        let name = &nic.ifname;
        let name_ok = (1..=15).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(ConfigError::invalid(
                format!("nics.{i}.ifname"),
                format!("{name:?} is not a tap name (1 to 15 of a-z, A-Z, 0-9, '-', '_', '.')"),
            ));
        }
        a.push2("-netdev", format!("tap,id=net{i},fd={},vhost=off", TAP_FD_BASE + i as i32));
        a.push2(
            "-device",
            format!(
                "{},netdev=net{i},id=nic{i},mac={}{}",
                nic.model.qemu_device(),
                nic.mac,
                bootindex_suffix(indexes.nics[i])
            ),
        );
    }
    Ok(())
}

fn check_mac(property: &str, mac: &str) -> Result<(), ConfigError> {
    let octets: Vec<&str> = mac.split(':').collect();
    let well_formed =
        octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(ConfigError::invalid(property, format!("{mac:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")));
    }
    let first = u8::from_str_radix(octets[0], 16).unwrap_or(0);
    if first & 1 == 1 {
        return Err(ConfigError::invalid(property, format!("{mac} is a multicast address; a NIC needs a unicast one")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const UUID: &str = "5f6c8b62-3b2f-4d0c-9d1a-5c3f5a1f0e11";
    const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

    fn disk(path: &str, model: DiskModel, media: Media, boot: bool) -> DiskConfig {
        DiskConfig { path: path.into(), model, media, boot, block_size: None, read_only: false }
    }

    fn config(accel: AccelKind, machine: Machine) -> VmConfig {
        VmConfig {
            uuid: UUID.into(),
            name: "web01".into(),
            accel,
            ram_mib: 1024,
            vcpus: 2,
            cpu_type: "qemu64".into(),
            machine,
            firmware: Firmware::Bios,
            disks: vec![],
            nics: vec![],
            boot_order: None,
            direct_boot: None,
            vga: "std".into(),
            vnc: None,
            qmp_socket: "/run/vm/qmp.sock".into(),
            metadata_socket: "/run/vm/metadata.sock".into(),
            smbios: Smbios::smartos(UUID, "20250101T000000Z"),
            qemu_opts: None,
            qemu_extra_opts: None,
        }
    }

    /// The arguments every VM starts with, up to and including the serial ports.
    fn head(machine: &str, accel: &str, cpu: &str) -> Vec<String> {
        let smbios = format!(
            "type=1,manufacturer=Joyent,product=SmartDC HVM,version=7.20250101T000000Z,serial={UUID},\
             uuid={UUID},sku=001,family=Virtual Machine"
        );
        [
            "-name",
            "guest=web01",
            "-uuid",
            UUID,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-machine",
            machine,
            "-accel",
            accel,
            "-cpu",
            cpu,
            "-m",
            "1024M",
            "-smp",
            "2",
            "-smbios",
            &smbios,
            "-sandbox",
            SANDBOX,
            "-chardev",
            "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off",
            "-mon",
            "chardev=qmp,mode=control",
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-chardev",
            "socket,id=metadata,path=/run/vm/metadata.sock,server=on,wait=off",
            "-serial",
            "chardev:metadata",
        ]
        .map(String::from)
        .to_vec()
    }

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    fn invalid(cfg: &VmConfig) -> String {
        argv(cfg).expect_err("the config should be refused").to_string()
    }

    #[test]
    fn kvm_bios_vm_with_virtio_disk_and_cdrom() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.cpu_type = "host".into();
        cfg.disks = vec![
            DiskConfig { block_size: Some(8192), ..disk("/disks/disk0", DiskModel::Virtio, Media::Disk, true) },
            disk("/iso/install.iso", DiskModel::Ide, Media::Cdrom, false),
        ];
        cfg.nics =
            vec![NicConfig { mac: "90:b8:d0:aa:bb:cc".into(), model: NicModel::Virtio, ifname: "vm0tap0".into() }];
        cfg.boot_order = Some("order=cd,once=d".into());
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, password: false });
        let mut want = head("pc", "kvm", "host");
        want.extend(words(&[
            "-vga",
            "std",
            "-drive",
            "if=none,id=drive0,file=/disks/disk0,format=raw,cache=none,discard=unmap",
            "-device",
            "virtio-blk-pci,drive=drive0,id=disk0,logical_block_size=512,physical_block_size=8192,bootindex=2",
            "-drive",
            "if=none,id=drive1,file=/iso/install.iso,format=raw,cache=none,media=cdrom,readonly=on",
            "-device",
            "ide-cd,drive=drive1,id=disk1,bus=ide.0,unit=0,bootindex=1",
            "-netdev",
            "tap,id=net0,fd=100,vhost=off",
            "-device",
            "virtio-net-pci,netdev=net0,id=nic0,mac=90:b8:d0:aa:bb:cc",
            "-vnc",
            "127.0.0.1:0,to=999",
            "-device",
            "qemu-xhci,id=usb",
            "-device",
            "usb-tablet,bus=usb.0",
        ]));
        assert_eq!(argv(&cfg).unwrap(), want);
        // After the once=d boot, the disk leads and the cdrom follows.
        let later = bootindex_after_once(&cfg).unwrap().unwrap();
        assert_eq!(
            later,
            [
                BootIndex { device: "disk0".into(), bootindex: Some(1) },
                BootIndex { device: "disk1".into(), bootindex: Some(2) },
                BootIndex { device: "nic0".into(), bootindex: None },
            ]
        );
    }

    #[test]
    fn bhyve_uefi_vm_with_ahci_and_nvme() {
        let mut cfg = config(AccelKind::Tcg, Machine::Q35);
        cfg.firmware =
            Firmware::Uefi { code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(), vars: "/vm/uefi-vars.fd".into() };
        cfg.disks = vec![
            disk("/vm/disk0", DiskModel::Ahci, Media::Disk, true),
            DiskConfig { block_size: Some(4096), ..disk("/vm/disk1", DiskModel::Nvme, Media::Disk, false) },
            disk("/vm/seed.iso", DiskModel::Ahci, Media::Cdrom, false),
            disk("/vm/disk3", DiskModel::Ide, Media::Disk, false),
        ];
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 5905, password: true });
        let mut want = head("q35", "tcg,tb-size=64", "qemu64");
        want.extend(words(&[
            "-drive",
            "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            "-drive",
            "if=pflash,format=raw,unit=1,file=/vm/uefi-vars.fd",
            "-vga",
            "std",
            "-drive",
            "if=none,id=drive0,file=/vm/disk0,format=raw,cache=none,discard=unmap",
            "-device",
            "ide-hd,drive=drive0,id=disk0,bus=ide.0,bootindex=1",
            "-drive",
            "if=none,id=drive1,file=/vm/disk1,format=raw,cache=none,discard=unmap",
            "-device",
            "nvme,drive=drive1,id=disk1,serial=disk1,logical_block_size=512,physical_block_size=4096,bootindex=2",
            "-drive",
            "if=none,id=drive2,file=/vm/seed.iso,format=raw,cache=none,media=cdrom,readonly=on",
            "-device",
            "ide-cd,drive=drive2,id=disk2,bus=ide.1,bootindex=4",
            "-drive",
            "if=none,id=drive3,file=/vm/disk3,format=raw,cache=none,discard=unmap",
            "-device",
            "ide-hd,drive=drive3,id=disk3,bus=ide.2,bootindex=3",
            "-vnc",
            "127.0.0.1:5,password=on",
            "-device",
            "qemu-xhci,id=usb",
            "-device",
            "usb-tablet,bus=usb.0",
        ]));
        assert_eq!(argv(&cfg).unwrap(), want);
        assert_eq!(bootindex_after_once(&cfg).unwrap(), None);
    }

    #[test]
    fn pc_machine_puts_ahci_disks_on_an_ich9_controller_and_scsi_on_virtio_scsi() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.disks = vec![
            DiskConfig { read_only: true, ..disk("/vm/a", DiskModel::Ahci, Media::Disk, false) },
            disk("/vm/s0", DiskModel::Scsi, Media::Disk, false),
            disk("/vm/s1.iso", DiskModel::Scsi, Media::Cdrom, false),
        ];
        cfg.boot_order = Some("order=n,menu=on".into());
        let got = argv(&cfg).unwrap();
        let tail = &got[head("pc", "kvm", "qemu64").len()..];
        assert_eq!(
            tail,
            words(&[
                "-boot",
                "menu=on",
                "-vga",
                "std",
                "-device",
                "ich9-ahci,id=ahci0",
                "-device",
                "virtio-scsi-pci,id=scsi0",
                "-drive",
                "if=none,id=drive0,file=/vm/a,format=raw,cache=none,readonly=on",
                "-device",
                "ide-hd,drive=drive0,id=disk0,bus=ahci0.0",
                "-drive",
                "if=none,id=drive1,file=/vm/s0,format=raw,cache=none,discard=unmap",
                "-device",
                "scsi-hd,drive=drive1,id=disk1,bus=scsi0.0,channel=0,scsi-id=0,lun=0",
                "-drive",
                "if=none,id=drive2,file=/vm/s1.iso,format=raw,cache=none,media=cdrom,readonly=on",
                "-device",
                "scsi-cd,drive=drive2,id=disk2,bus=scsi0.0,channel=0,scsi-id=1,lun=0",
            ])
        );
    }

    #[test]
    fn direct_kernel_boot_and_host_cpu_under_tcg() {
        let mut cfg = config(AccelKind::Tcg, Machine::Pc);
        cfg.cpu_type = "host".into();
        cfg.vga = "none".into();
        cfg.direct_boot = Some(DirectBoot {
            kernel: "/vm/vmlinuz".into(),
            initrd: Some("/vm/initrd.gz".into()),
            cmdline: "console=ttyS0 root=/dev/vda".into(),
        });
        cfg.disks = vec![disk("/vm/root", DiskModel::Virtio, Media::Disk, false)];
        let mut want = head("pc", "tcg,tb-size=64", "max");
        want.extend(words(&[
            "-kernel",
            "/vm/vmlinuz",
            "-initrd",
            "/vm/initrd.gz",
            "-append",
            "console=ttyS0 root=/dev/vda",
            "-vga",
            "none",
            "-drive",
            "if=none,id=drive0,file=/vm/root,format=raw,cache=none,discard=unmap",
            "-device",
            "virtio-blk-pci,drive=drive0,id=disk0,bootindex=1",
        ]));
        assert_eq!(argv(&cfg).unwrap(), want);

        // No initrd and an empty command line add nothing; CPU flags survive the host→max swap.
        cfg.direct_boot = Some(DirectBoot { kernel: "/vm/vmlinuz".into(), initrd: None, cmdline: String::new() });
        cfg.cpu_type = "host,+avx2".into();
        let got = argv(&cfg).unwrap();
        assert!(got.windows(2).any(|w| w == ["-cpu", "max,+avx2"]), "{got:?}");
        assert!(got.windows(3).any(|w| w == ["-kernel", "/vm/vmlinuz", "-vga"]), "{got:?}");
    }

    #[test]
    fn vnc_ports() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        let vnc_of = |cfg: &VmConfig| {
            let got = argv(cfg).unwrap();
            got.iter().position(|w| w == "-vnc").map(|i| got[i + 1].clone())
        };
        // vnc_port -1: no VNC and no tablet.
        assert_eq!(vnc_of(&cfg), None);
        assert!(!argv(&cfg).unwrap().iter().any(|w| w.contains("usb")));
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, password: false });
        assert_eq!(vnc_of(&cfg).as_deref(), Some("127.0.0.1:0,to=999"));
        cfg.vnc = Some(VncConfig { listen: "::1".parse().unwrap(), port: 5900, password: true });
        assert_eq!(vnc_of(&cfg).as_deref(), Some("[::1]:0,password=on"));
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 6001, password: false });
        assert_eq!(vnc_of(&cfg).as_deref(), Some("127.0.0.1:101"));
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 5899, password: false });
        assert_eq!(
            invalid(&cfg),
            "vnc_port: 5899 is below 5900, where VNC display 0 listens (0 picks a free port, -1 turns VNC off)"
        );
    }

    #[test]
    fn qemu_opts_replace_the_display_options_and_extra_opts_come_last() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, password: false });
        cfg.qemu_opts = Some("-vnc unix:/tmp/vm.vnc -k 'en-us'".into());
        cfg.qemu_extra_opts = Some(r#"-device "virtio-rng-pci,id=rng0" -global kvm-pit.lost_tick_policy=delay"#.into());
        let mut want = head("pc", "kvm", "qemu64");
        want.extend(words(&[
            "-vga",
            "std",
            "-vnc",
            "unix:/tmp/vm.vnc",
            "-k",
            "en-us",
            "-device",
            "virtio-rng-pci,id=rng0",
            "-global",
            "kvm-pit.lost_tick_policy=delay",
        ]));
        assert_eq!(argv(&cfg).unwrap(), want);

        cfg.qemu_opts = None;
        let got = argv(&cfg).unwrap();
        let n = got.len();
        assert_eq!(
            got[n - 10..n - 4],
            words(&["-vnc", "127.0.0.1:0,to=999", "-device", "qemu-xhci,id=usb", "-device", "usb-tablet,bus=usb.0"])
        );
        assert_eq!(
            got[n - 4..],
            words(&["-device", "virtio-rng-pci,id=rng0", "-global", "kvm-pit.lost_tick_policy=delay"])
        );

        cfg.qemu_extra_opts = Some("-foo 'bar".into());
        assert_eq!(invalid(&cfg), "qemu_extra_opts: unterminated quote (') opened at byte 5");
        cfg.qemu_extra_opts = None;
        cfg.qemu_opts = Some("-vnc \"unix:/tmp/x".into());
        assert_eq!(invalid(&cfg), "qemu_opts: unterminated quote (\") opened at byte 5");
    }

    #[test]
    fn two_boot_disks_are_refused() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.disks = vec![
            disk("/vm/d0", DiskModel::Virtio, Media::Disk, true),
            disk("/vm/d1", DiskModel::Virtio, Media::Disk, false),
            disk("/vm/d2", DiskModel::Virtio, Media::Disk, true),
        ];
        let err = argv(&cfg).unwrap_err();
        assert_eq!(err.property(), Some("disks.2.boot"));
        assert_eq!(err.to_string(), "disks.2.boot: only one disk can boot, and disks.0 already has boot: true");
    }

    #[test]
    fn split_opts_quotes_like_a_shell() {
        let split = |s: &str| split_opts(s).unwrap();
        assert_eq!(split(""), Vec::<String>::new());
        assert_eq!(split("  -a\tb \n c  "), ["-a", "b", "c"]);
        assert_eq!(
            split(r#"-append 'console=ttyS0 quiet' -name "a b""#),
            ["-append", "console=ttyS0 quiet", "-name", "a b"]
        );
        assert_eq!(split(r#"'it''s' "say \"hi\" \\ \$x \q" a\ b"#), ["its", r#"say "hi" \ $x \q"#, "a b"]);
        assert_eq!(split(r#"x'$HOME'"*" '' """#), ["x$HOME*", "", ""]);
        assert_eq!(split("a\\\nb \"c\\\nd\""), ["ab", "cd"]);
        assert_eq!(split("'a \"b' \"c 'd\""), ["a \"b", "c 'd"]);
        assert_eq!(
            split_opts("a 'b").unwrap_err(),
            ConfigError::Split("unterminated quote (') opened at byte 2".into())
        );
        assert_eq!(split_opts("\"a").unwrap_err().to_string(), "unterminated quote (\") opened at byte 0");
        assert_eq!(split_opts("a\\").unwrap_err().to_string(), "a lone backslash ends the string (byte 1)");
    }

    #[test]
    fn models_parse_from_smartos_names_and_errors_name_the_property() {
        assert_eq!("virtio".parse::<DiskModel>().unwrap(), DiskModel::Virtio);
        assert_eq!("ahci".parse::<DiskModel>().unwrap(), DiskModel::Ahci);
        assert_eq!("nvme".parse::<DiskModel>().unwrap(), DiskModel::Nvme);
        let err = "sata".parse::<DiskModel>().unwrap_err().at("disks.1");
        assert_eq!(err.to_string(), "disks.1.model: \"sata\" is not a disk model (virtio, ide, scsi, ahci, nvme)");
        assert_eq!("cdrom".parse::<Media>().unwrap(), Media::Cdrom);
        assert_eq!("e1000".parse::<NicModel>().unwrap(), NicModel::E1000);
        assert_eq!(
            "ne2k".parse::<NicModel>().unwrap_err().at("nics.0").to_string(),
            "nics.0.model: \"ne2k\" is not a NIC model (virtio, e1000, rtl8139)"
        );
        for model in [DiskModel::Virtio, DiskModel::Ide, DiskModel::Scsi, DiskModel::Ahci, DiskModel::Nvme] {
            assert_eq!(model.to_string().parse::<DiskModel>().unwrap(), model);
            assert_eq!(serde_json::to_string(&model).unwrap(), format!("\"{model}\""));
        }
    }

    #[test]
    fn boot_strings() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.disks = vec![
            disk("/vm/d0", DiskModel::Virtio, Media::Disk, false),
            disk("/vm/cd", DiskModel::Ide, Media::Cdrom, false),
            disk("/vm/d1", DiskModel::Virtio, Media::Disk, true),
        ];
        cfg.nics = vec![NicConfig { mac: "02:00:00:00:00:01".into(), model: NicModel::E1000, ifname: "t0".into() }];
        let indexes = |cfg: &VmConfig| -> Vec<Option<u32>> {
            argv(cfg)
                .unwrap()
                .iter()
                .filter(|w| w.contains(",id=disk") || w.contains(",id=nic"))
                .map(|w| w.split_once("bootindex=").map(|(_, i)| i.parse().unwrap()))
                .collect()
        };
        // Default order=cd: disks (the boot: true one first), then the cdrom.
        assert_eq!(indexes(&cfg), [Some(2), Some(3), Some(1), None]);
        cfg.boot_order = Some("dnc".into());
        assert_eq!(indexes(&cfg), [Some(4), Some(1), Some(3), Some(2)]);
        cfg.boot_order = Some("order=n,once=c,reboot-timeout=5000,strict=on".into());
        assert_eq!(indexes(&cfg), [Some(2), None, Some(1), Some(3)]);
        assert!(argv(&cfg).unwrap().windows(2).any(|w| w == ["-boot", "reboot-timeout=5000,strict=on"]));
        let later = bootindex_after_once(&cfg).unwrap().unwrap();
        assert_eq!(later.iter().map(|b| b.bootindex).collect::<Vec<_>>(), [None, None, None, Some(1)]);

        for (boot, reason) in [
            ("order=cx", "order=cx: 'x' is not a boot device (c: disk, d: cdrom, n: network)"),
            ("order=a", "order=a: 'a' is a floppy drive, which these VMs do not have"),
            ("order=cc", "order=cc: 'c' is given twice"),
            ("order=c,order=d", "order is given twice"),
            ("order=c,menu=yes", "menu=yes: the value is on or off"),
            ("order=c,splash=1", "unknown key \"splash\" (order, once, menu, strict, splash-time, reboot-timeout)"),
            ("order=c,d", "\"d\" has no value (order=, once=, menu=, …)"),
        ] {
            cfg.boot_order = Some(boot.into());
            assert_eq!(invalid(&cfg), format!("boot: {reason}"), "{boot}");
        }
    }

    #[test]
    fn values_are_checked_and_escaped() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.name = "a,b=c".into();
        cfg.disks = vec![disk("/vm/x,y", DiskModel::Virtio, Media::Disk, false)];
        cfg.qmp_socket = "/run/a=b,c.sock".into();
        let got = argv(&cfg).unwrap();
        assert_eq!(got[1], "guest=a,,b=c");
        assert!(got.contains(&"socket,id=qmp,path=/run/a=b,,c.sock,server=on,wait=off".to_owned()), "{got:?}");
        assert!(got.iter().any(|w| w.starts_with("if=none,id=drive0,file=/vm/x,,y,")), "{got:?}");

        type Change = Box<dyn Fn(&mut VmConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c| c.uuid = "nope".into()), "uuid: \"nope\" is not a UUID (8-4-4-4-12 hex digits)"),
            (Box::new(|c| c.ram_mib = 0), "ram: 0 MiB: a VM needs memory"),
            (Box::new(|c| c.vcpus = 0), "vcpus: 0: a VM needs at least one vCPU"),
            (Box::new(|c| c.cpu_type = "qemu64 -foo".into()), "cpu_type: \"qemu64 -foo\" is not a CPU model (qemu64, host, or a QEMU model with +/- flags)"),
            (Box::new(|c| c.vga = "xenfb".into()), "vga: xenfb is Xen's paravirtual framebuffer and needs a Xen host (std, cirrus, vmware, qxl, virtio, none)"),
            (Box::new(|c| c.vga = "vga".into()), "vga: \"vga\" is not a VGA model (std, cirrus, vmware, qxl, virtio, none)"),
            (Box::new(|c| c.disks[0].path = "disk0".into()), "disks.0.path: \"disk0\" is not an absolute path"),
            (Box::new(|c| c.disks[0].block_size = Some(1000)), "disks.0.block_size: 1000 is not a power of two from 512 to 131072"),
            (Box::new(|c| c.disks[0].block_size = Some(262_144)), "disks.0.block_size: 262144 is not a power of two from 512 to 131072"),
            (Box::new(|c| c.metadata_socket = PathBuf::from(format!("/{}", "m".repeat(107)))), "metadata_socket: "),
            (Box::new(|c| c.smbios.uuid = "x".into()), "smbios.uuid: \"x\" is not a UUID (8-4-4-4-12 hex digits)"),
            (Box::new(|c| c.nics = vec![NicConfig { mac: "01:00:5e:00:00:01".into(), model: NicModel::Virtio, ifname: "t".into() }]), "nics.0.mac: 01:00:5e:00:00:01 is a multicast address; a NIC needs a unicast one"),
            (Box::new(|c| c.nics = vec![NicConfig { mac: "02:00:5e:00:00".into(), model: NicModel::Virtio, ifname: "t".into() }]), "nics.0.mac: \"02:00:5e:00:00\" is not a MAC address (aa:bb:cc:dd:ee:ff)"),
            (Box::new(|c| c.nics = vec![NicConfig { mac: "02:00:5e:00:00:01".into(), model: NicModel::Virtio, ifname: "a,b".into() }]), "nics.0.ifname: \"a,b\" is not a tap name (1 to 15 of a-z, A-Z, 0-9, '-', '_', '.')"),
            (Box::new(|c| c.direct_boot = Some(DirectBoot { kernel: "vmlinuz".into(), initrd: None, cmdline: String::new() })), "kernel: \"vmlinuz\" is not an absolute path"),
        ];
        for (change, want) in cases {
            let mut bad = config(AccelKind::Kvm, Machine::Pc);
            bad.disks = vec![disk("/vm/d", DiskModel::Virtio, Media::Disk, false)];
            change(&mut bad);
            let got = invalid(&bad);
            assert!(got.starts_with(want), "{got} does not start with {want}");
        }

        let mut cd = config(AccelKind::Kvm, Machine::Pc);
        cd.disks = vec![DiskConfig { block_size: Some(4096), ..disk("/vm/cd", DiskModel::Ide, Media::Cdrom, false) }];
        assert_eq!(invalid(&cd), "disks.0.block_size: a cdrom has 2048-byte sectors; block_size applies to disks");
    }

    #[test]
    fn ata_places_run_out() {
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        cfg.disks = (0..5).map(|i| disk(&format!("/vm/d{i}"), DiskModel::Ide, Media::Disk, false)).collect();
        assert_eq!(
            invalid(&cfg),
            "disks.4.model: no free place for this disk: a pc machine has 4 IDE places (2 buses, 2 units each)"
        );
        // On pc, IDE and AHCI are separate controllers: 4 + 6 fit.
        cfg.disks.pop();
        cfg.disks.extend((0..6).map(|i| disk(&format!("/vm/a{i}"), DiskModel::Ahci, Media::Disk, false)));
        assert!(argv(&cfg).is_ok());
        // On q35 they share the 6 built-in ports.
        cfg.machine = Machine::Q35;
        assert_eq!(
            invalid(&cfg),
            "disks.6.model: no free place for this disk: q35's AHCI controller has 6 ports, shared by ide and ahci disks"
        );
    }

    #[test]
    fn overhead_figures() {
        assert_eq!(memory_overhead_mib(256, AccelKind::Tcg), 200);
        assert_eq!(memory_overhead_mib(1024, AccelKind::Tcg), 200);
        assert_eq!(memory_overhead_mib(4096, AccelKind::Tcg), 224);
        assert_eq!(memory_overhead_mib(1024, AccelKind::Kvm), 104);
        assert_eq!(memory_overhead_mib(1025, AccelKind::Kvm), 112);
        assert_eq!(memory_overhead_mib(16384, AccelKind::Kvm), 224);
        let mut cfg = config(AccelKind::Kvm, Machine::Pc);
        assert_eq!(cfg.memory_overhead_mib(), 104);
        cfg.vga = "qxl".into();
        cfg.vcpus = 16;
        assert_eq!(cfg.memory_overhead_mib(), 104 + 112 + 16);
    }

    #[test]
    fn smbios_is_smartos_and_the_config_round_trips_through_json() {
        let s = Smbios::smartos(UUID, "20250101T000000Z");
        assert_eq!((s.manufacturer.as_str(), s.product.as_str()), ("Joyent", "SmartDC HVM"));
        assert_eq!((s.version.as_str(), s.serial.as_str(), s.uuid.as_str()), ("7.20250101T000000Z", UUID, UUID));
        assert_eq!((s.sku.as_str(), s.family.as_str()), ("001", "Virtual Machine"));
        let mut cfg = config(AccelKind::Tcg, Machine::Q35);
        cfg.firmware = Firmware::Uefi { code: "/c".into(), vars: "/v".into() };
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["accel"], "tcg");
        assert_eq!(json["machine"], "q35");
        assert_eq!(json["firmware"]["uefi"]["vars"], "/v");
        assert_eq!(serde_json::from_value::<VmConfig>(json).unwrap(), cfg);
    }

    #[test]
    fn firmware_and_binary_lookups_find_what_debian_installs() {
        // Debian's qemu-system-x86 and ovmf packages (the project's host packages).
        let qemu = qemu_binary().expect("qemu-system-x86_64 is installed (Debian: qemu-system-x86)");
        assert!(qemu.ends_with("qemu-system-x86_64") || qemu.ends_with("qemu-kvm"), "{qemu:?}");
        let (code, vars) = ovmf().expect("OVMF is installed (Debian: ovmf)");
        assert!(code.is_file() && vars.is_file());
        assert!(code.to_string_lossy().contains("CODE") && vars.to_string_lossy().contains("VARS"));
    }

    /// Runs the real QEMU with `argv` for 3 seconds: it must still be running
    /// (an option it refuses ends it at once) with nothing on stderr but
    /// QEMU's "VNC server running" notice, and its QMP and metadata sockets
    /// must be listening.
    fn qemu_accepts(cfg: &VmConfig, netns: bool) {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let qemu = qemu_binary().expect("qemu-system-x86_64 is installed (Debian: qemu-system-x86)");
        let args = argv(cfg).unwrap();
        let mut cmd = Command::new(&qemu);
        if netns {
            let taps: Vec<std::ffi::CString> =
                cfg.nics.iter().map(|n| std::ffi::CString::new(n.ifname.clone()).unwrap()).collect();
            // SAFETY: between fork and exec the child only makes syscalls on
            // its own descriptors and memory prepared before the fork.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    for (i, name) in taps.iter().enumerate() {
                        // What the monitor hands QEMU: a tap at TAP_FD_BASE + i.
                        let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR);
                        let mut req = [0u8; 40];
                        let bytes = name.as_bytes();
                        req[..bytes.len()].copy_from_slice(bytes);
                        let flags: libc::c_short =
                            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
                        req[16..18].copy_from_slice(&flags.to_ne_bytes());
                        if fd < 0
                            || libc::ioctl(fd, libc::TUNSETIFF, req.as_mut_ptr()) != 0
                            || libc::dup2(fd, TAP_FD_BASE + i as i32) < 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child =
            cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut exited = None;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let sockets = [&cfg.qmp_socket, &cfg.metadata_socket].map(|p| p.exists());
        if exited.is_none() {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(exited, None, "QEMU exited early: {stderr}\nargv: {args:?}");
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("VNC server running on") && !l.contains("terminating on signal"))
            .collect();
        assert!(unexpected.is_empty(), "QEMU complained: {unexpected:?}\nargv: {args:?}");
        assert_eq!(sockets, [true, true], "the QMP and metadata sockets should be listening");
    }

    fn live_config(dir: &Path, machine: Machine) -> VmConfig {
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::File::create(&path).unwrap().set_len(16 << 20).unwrap();
            path
        };
        let mut cfg = config(AccelKind::Tcg, machine);
        cfg.ram_mib = 128;
        cfg.qmp_socket = dir.join("qmp.sock");
        cfg.metadata_socket = dir.join("metadata.sock");
        cfg.disks.push(DiskConfig {
            block_size: Some(131_072),
            ..disk(file("v").to_str().unwrap(), DiskModel::Virtio, Media::Disk, true)
        });
        for (i, model) in [DiskModel::Ide, DiskModel::Scsi, DiskModel::Ahci, DiskModel::Nvme].into_iter().enumerate() {
            let path = file(&format!("d{i}"));
            cfg.disks
                .push(DiskConfig { block_size: Some(8192), ..disk(path.to_str().unwrap(), model, Media::Disk, false) });
            let path = file(&format!("c{i}"));
            cfg.disks.push(disk(path.to_str().unwrap(), model, Media::Cdrom, false));
        }
        cfg.disks[2].read_only = true;
        cfg
    }

    #[test]
    fn qemu_accepts_a_bios_vm() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = live_config(dir.path(), Machine::Pc);
        cfg.boot_order = Some("order=cdn,once=d,menu=off".into());
        cfg.vnc = Some(VncConfig { listen: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, password: true });
        cfg.qemu_extra_opts = Some("-device 'virtio-rng-pci,id=rng0'".into());
        // Tap NICs need CAP_NET_ADMIN: as root, in a network namespace of their own.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            cfg.nics = [NicModel::Virtio, NicModel::E1000, NicModel::Rtl8139]
                .into_iter()
                .enumerate()
                .map(|(i, model)| NicConfig { mac: format!("02:00:00:00:00:0{i}"), model, ifname: format!("vmtap{i}") })
                .collect();
        }
        qemu_accepts(&cfg, root);
    }

    #[test]
    fn qemu_accepts_a_uefi_q35_vm() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = live_config(dir.path(), Machine::Q35);
        let (code, vars) = ovmf().expect("OVMF is installed (Debian: ovmf)");
        let own_vars = dir.path().join("vars.fd");
        std::fs::copy(vars, &own_vars).unwrap();
        cfg.firmware = Firmware::Uefi { code, vars: own_vars };
        cfg.vga = "qxl".into();
        cfg.cpu_type = "host".into();
        cfg.vnc = Some(VncConfig { listen: "::1".parse().unwrap(), port: 0, password: false });
        qemu_accepts(&cfg, false);
    }
}
