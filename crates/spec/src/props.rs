//! The property table: every vmadm property zonevisor knows, one entry each.
//!
//! An entry says what JSON a property takes ([`Kind`]), which brands may use
//! it ([`Brands`]), which brands must give it, its default ([`Dflt`]) and what
//! `vmadm update` may do with it ([`Upd`]). Validation, defaults, `is_property`
//! and the live/reboot split of an update are all read from here; nothing
//! else lists properties. The values follow SmartOS's `proptable.js` and
//! `vmadm(8)`; where zonevisor is stricter (it refuses rather than clamps or
//! drops), the module that checks says so.
//!
//! A name may appear more than once when its shape differs per brand (disk
//! `model` lists kvm's models for kvm and bhyve's for bhyve); the first entry
//! whose [`Brands`] include the VM's brand applies.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use regex::Regex;

use crate::Brand;

/// A set of brands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Brands(u8);

impl Brands {
    /// No brand.
    pub const NONE: Brands = Brands(0);
    /// `lx`.
    pub const LX: Brands = Brands(1);
    /// `kvm`.
    pub const KVM: Brands = Brands(2);
    /// `bhyve`.
    pub const BHYVE: Brands = Brands(4);
    /// The hardware-virtualized brands.
    pub const HVM: Brands = Brands(6);
    /// Every brand zonevisor runs.
    pub const ALL: Brands = Brands(7);
    /// `lx` and `kvm` (SmartOS's deprecated package properties).
    pub const LX_KVM: Brands = Brands(3);

    /// True when `brand` is in the set.
    pub const fn has(self, brand: Brand) -> bool {
        self.0 & Brands::of(brand).0 != 0
    }

    /// The set holding only `brand`.
    pub const fn of(brand: Brand) -> Brands {
        match brand {
            Brand::Lx => Brands::LX,
            Brand::Kvm => Brands::KVM,
            Brand::Bhyve => Brands::BHYVE,
        }
    }
}

/// A test on a string value, with the expected form in words for reasons.
#[derive(Clone, Copy)]
pub struct Fmt {
    /// True when the string is acceptable.
    pub test: fn(&str) -> bool,
    /// What an acceptable value looks like ("an IP address").
    pub form: &'static str,
}

impl std::fmt::Debug for Fmt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.form)
    }
}

/// What the values of a map property may be.
#[derive(Clone, Copy, Debug)]
pub enum MapVal {
    /// A string, number or boolean (tags).
    Scalar,
    /// A string of the given form (metadata, routes).
    Str(Fmt),
}

/// The JSON shape of a property.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A 36-character hyphenated UUID, stored lowercase.
    Uuid,
    /// `true` / `false` (or the strings `"true"` / `"false"`).
    Bool,
    /// An integer within `min..=max` (or a string of digits).
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A string of the given form.
    Str(Fmt),
    /// A list given as an array of strings or one comma-separated string,
    /// kept as that string (SmartOS shows `limit_priv` and `fs_allowed` so).
    Joined {
        /// The form of each item.
        item: Fmt,
        /// Most items accepted.
        max: usize,
    },
    /// An array of strings (or one comma-separated string) of at most `max` items.
    List {
        /// The form of each item.
        item: Fmt,
        /// Most items accepted.
        max: usize,
    },
    /// A JSON object of string keys; changed by `set_<name>` / `remove_<name>`.
    Map {
        /// The form of each key.
        key: Fmt,
        /// What each value may be.
        val: MapVal,
    },
    /// An array of objects checked against a nested table; changed by
    /// `add_<name>` / `update_<name>` / `remove_<name>`, keyed by `key`.
    Objects {
        /// The nested table.
        props: &'static [Prop],
        /// The member that identifies an element in updates.
        key: &'static str,
    },
}

/// The default a create payload gets when a property is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dflt {
    /// No default: absent unless given.
    None,
    /// This boolean.
    Bool(bool),
    /// This integer.
    Int(i64),
    /// This string.
    Str(&'static str),
    /// An empty array.
    EmptyList,
    /// An empty object.
    EmptyMap,
    /// Computed from other properties (uuid, hostname, memory caps, quota).
    Derived,
}

/// What `vmadm update` may do with a property, and when a change takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upd {
    /// Owned by the daemon (state, pid, ...): never given in a payload.
    ReadOnly,
    /// Given at create (or when adding an element); never changed afterwards.
    Fixed,
    /// Changeable; applies at once, even on a running instance.
    Live,
    /// Changeable; takes effect at the next boot.
    Reboot,
}

/// One property.
#[derive(Clone, Copy, Debug)]
pub struct Prop {
    /// The vmadm name.
    pub name: &'static str,
    /// The JSON shape.
    pub kind: Kind,
    /// The brands that may use it.
    pub brands: Brands,
    /// The brands whose create payloads must give it.
    pub required: Brands,
    /// The default when absent.
    pub default: Dflt,
    /// Updatability.
    pub update: Upd,
}

impl Prop {
    const fn new(name: &'static str, kind: Kind, brands: Brands, update: Upd) -> Prop {
        Prop { name, kind, brands, required: Brands::NONE, default: Dflt::None, update }
    }
    const fn dflt(mut self, d: Dflt) -> Prop {
        self.default = d;
        self
    }
    const fn req(mut self, b: Brands) -> Prop {
        self.required = b;
        self
    }
    /// True when `null` in an update may remove it.
    pub fn clearable(&self) -> bool {
        self.default == Dflt::None && self.required == Brands::NONE
    }
}

// ---- shorthands for the table ------------------------------------------------

use Brands as B;
use Upd::{Fixed, Live, ReadOnly, Reboot};

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int { min, max }
}
const fn s(f: Fmt) -> Kind {
    Kind::Str(f)
}
const fn list(item: Fmt, max: usize) -> Kind {
    Kind::List { item, max }
}
const fn p(name: &'static str, kind: Kind, brands: Brands, update: Upd) -> Prop {
    Prop::new(name, kind, brands, update)
}
const fn ro(name: &'static str) -> Prop {
    Prop::new(name, Kind::Str(ANY), Brands::ALL, ReadOnly)
}

/// Largest memory or disk size in MiB (1 PiB): keeps byte counts within i64.
pub const MIB_MAX: i64 = 1 << 30;
/// Smallest `max_physical_memory` zonevisor applies (MiB): below it nothing
/// runs, and a running zone would be killed by its own cap. SmartOS has no
/// floor.
pub const MIN_PHYSICAL_MEMORY: i64 = 32;
/// Smallest `max_swap` SmartOS allows (MiB).
pub const MIN_SWAP: i64 = 256;
/// The UUID SmartOS uses for "no owner" / "no billing id".
pub const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";
/// The only pool of a zonevisor host, as payloads name it.
pub const ZPOOL: &str = "zones";

// ---- the tables ----------------------------------------------------------------

/// `nics[]` members.
pub const NIC_PROPS: &[Prop] = &[
    p("mac", s(MAC), B::ALL, Fixed),
    p("interface", s(IFACE), B::ALL, Reboot),
    // Required by SmartOS; zonevisor's daemon fills in its default network's.
    p("nic_tag", s(NIC_TAG), B::ALL, Reboot).req(B::ALL),
    p("vlan_id", int(0, 4095), B::ALL, Reboot),
    p("ips", list(CIDR_OR_AUTO, 20), B::ALL, Reboot),
    p("gateways", list(IP, 32), B::ALL, Reboot),
    p("ip", s(IPV4_OR_DHCP), B::ALL, Reboot),
    p("netmask", s(NETMASK), B::ALL, Reboot),
    p("gateway", s(IP), B::ALL, Reboot),
    p("primary", Kind::Bool, B::ALL, Reboot),
    p("mtu", int(576, 9000), B::ALL, Reboot),
    p("model", s(NIC_MODEL_KVM), B::KVM, Reboot),
    p("model", s(NIC_MODEL_BHYVE), B::BHYVE, Reboot),
    p("network_uuid", Kind::Uuid, B::ALL, Live),
    p("allow_dhcp_spoofing", Kind::Bool, B::ALL, Live),
    p("allow_ip_spoofing", Kind::Bool, B::ALL, Live),
    p("allow_mac_spoofing", Kind::Bool, B::ALL, Live),
    p("allow_restricted_traffic", Kind::Bool, B::ALL, Live),
    p("allow_unfiltered_promisc", Kind::Bool, B::HVM, Live),
    p("allowed_ips", list(IP_OR_CIDR, 13), B::ALL, Live),
    p("allowed_dhcp_cids", list(DHCP_CID, 20), B::ALL, Live),
    // Ours (SmartOS has no bandwidth property): Mbit/s, to and from the instance.
    p("max_ingress_bandwidth", int(1, 100_000), B::ALL, Live),
    p("max_egress_bandwidth", int(1, 100_000), B::ALL, Live),
    p("blocked_outgoing_ports", list(PORT, 64), B::ALL, Live),
    p("dhcp_server", Kind::Bool, B::ALL, Live),
];

/// `disks[]` members (kvm and bhyve).
pub const DISK_PROPS: &[Prop] = &[
    p("path", s(ABS_PATH), B::HVM, Fixed),
    p("size", int(1, MIB_MAX), B::BHYVE, Reboot),
    p("size", int(1, MIB_MAX), B::KVM, Fixed),
    p("image_uuid", Kind::Uuid, B::HVM, Fixed),
    p("image_size", int(1, MIB_MAX), B::HVM, Fixed),
    p("image_name", s(NONEMPTY), B::KVM, Fixed),
    p("boot", Kind::Bool, B::HVM, Reboot),
    p("model", s(DISK_MODEL_KVM), B::KVM, Reboot),
    p("model", s(DISK_MODEL_BHYVE), B::BHYVE, Reboot),
    p("media", s(MEDIA), B::HVM, Reboot),
    p("block_size", int(512, 131_072), B::HVM, Fixed),
    p("compression", s(COMPRESSION), B::HVM, Live),
    p("refreservation", int(0, MIB_MAX), B::HVM, Live),
    p("nocreate", Kind::Bool, B::HVM, Fixed),
    p("notrim", Kind::Bool, B::BHYVE, Reboot),
    p("pci_slot", s(PCI_SLOT), B::BHYVE, Reboot),
    p("uuid", Kind::Uuid, B::BHYVE, Reboot),
    p("guest_block_size", s(GUEST_BLOCK_SIZE), B::BHYVE, Reboot),
    p("zpool", s(ZPOOL_NAME), B::HVM, Fixed),
];

/// `filesystems[]` members (lx).
pub const FS_PROPS: &[Prop] = &[
    p("type", s(FS_TYPE), B::LX, Reboot).req(B::LX),
    p("source", s(CLEAN_ABS_PATH), B::LX, Reboot).req(B::LX),
    p("target", s(CLEAN_ABS_PATH), B::LX, Reboot).req(B::LX),
    p("options", list(FS_OPTION, 8), B::LX, Reboot),
];

/// Every top-level property, in the order `vmadm get` shows them.
pub static PROPS: &[Prop] = &[
    // identity
    p("uuid", Kind::Uuid, B::ALL, Fixed).dflt(Dflt::Derived),
    p("alias", s(ALIAS), B::ALL, Live),
    p("brand", s(NONEMPTY), B::ALL, Fixed).req(B::ALL),
    p("image_uuid", Kind::Uuid, B::LX, Fixed).req(B::LX),
    p("zpool", s(ZPOOL_NAME), B::ALL, Fixed),
    p("owner_uuid", Kind::Uuid, B::ALL, Live).dflt(Dflt::Str(ZERO_UUID)),
    p("billing_id", s(NONEMPTY), B::ALL, Live).dflt(Dflt::Str(ZERO_UUID)),
    p("package_name", s(NONEMPTY), B::LX_KVM, Live),
    p("package_version", s(NONEMPTY), B::LX_KVM, Live),
    // Absent unless given (SmartOS): the instance then takes its uuid as hostname.
    p("hostname", s(HOSTNAME), B::ALL, Reboot),
    p("dns_domain", s(HOSTNAME), B::LX, Reboot).dflt(Dflt::Str("local")),
    p("autoboot", Kind::Bool, B::ALL, Live).dflt(Dflt::Bool(true)),
    p("do_not_inventory", Kind::Bool, B::ALL, Live),
    p("indestructible_zoneroot", Kind::Bool, B::ALL, Live),
    p("indestructible_delegated", Kind::Bool, B::ALL, Live),
    p("archive_on_delete", Kind::Bool, B::ALL, Live),
    p("firewall_enabled", Kind::Bool, B::ALL, Live).dflt(Dflt::Bool(false)),
    p("delegate_dataset", Kind::Bool, B::LX, Fixed),
    p("docker", Kind::Bool, B::LX, Reboot),
    // resources (MiB unless noted)
    p("ram", int(1, MIB_MAX), B::HVM, Reboot).dflt(Dflt::Int(256)),
    // lx: SmartOS accepts `ram` as max_physical_memory when that is absent.
    p("ram", int(MIN_PHYSICAL_MEMORY, MIB_MAX), B::LX, Live),
    p("vcpus", int(1, 256), B::HVM, Reboot).dflt(Dflt::Int(1)),
    p("max_physical_memory", int(MIN_PHYSICAL_MEMORY, MIB_MAX), B::ALL, Live).dflt(Dflt::Derived),
    p("max_locked_memory", int(1, MIB_MAX), B::ALL, Live).dflt(Dflt::Derived),
    p("max_swap", int(MIN_SWAP, MIB_MAX), B::ALL, Live).dflt(Dflt::Derived),
    p("max_shm_memory", int(1, MIB_MAX), B::ALL, Live).dflt(Dflt::Derived),
    p("max_msg_ids", int(0, 1 << 24), B::ALL, Live).dflt(Dflt::Int(4096)),
    p("max_sem_ids", int(0, 1 << 24), B::ALL, Live).dflt(Dflt::Int(4096)),
    p("max_shm_ids", int(0, 1 << 24), B::ALL, Live).dflt(Dflt::Int(4096)),
    p("max_lwps", int(1, i32::MAX as i64), B::ALL, Live).dflt(Dflt::Int(2000)),
    p("cpu_cap", int(0, i32::MAX as i64), B::ALL, Live),
    p("cpu_shares", int(1, 65_535), B::ALL, Live).dflt(Dflt::Int(100)),
    p("zfs_io_priority", int(1, 16_384), B::ALL, Live).dflt(Dflt::Int(100)),
    p("quota", int(0, MIB_MAX), B::ALL, Live).dflt(Dflt::Derived),
    p("tmpfs", int(0, MIB_MAX), B::LX, Live).dflt(Dflt::Derived),
    p("flexible_disk_size", int(0, MIB_MAX), B::BHYVE, Live),
    p("zfs_root_compression", s(COMPRESSION), B::ALL, Live),
    p("zfs_data_compression", s(COMPRESSION), B::LX, Live),
    p("zfs_root_recsize", int(512, 131_072), B::ALL, Live).dflt(Dflt::Int(131_072)),
    p("zfs_data_recsize", int(512, 131_072), B::LX, Live),
    p("zfs_filesystem_limit", int(0, i64::MAX), B::ALL, Live),
    p("zfs_snapshot_limit", int(0, i64::MAX), B::ALL, Live),
    p("mdata_exec_timeout", int(0, i32::MAX as i64), B::LX, Fixed),
    // network
    p("nics", Kind::Objects { props: NIC_PROPS, key: "mac" }, B::ALL, Reboot).dflt(Dflt::EmptyList),
    p("nic_driver", s(NIC_MODEL_KVM), B::KVM, Reboot),
    p("nic_driver", s(NIC_MODEL_BHYVE), B::BHYVE, Reboot),
    p("resolvers", list(IP, 32), B::ALL, Live).dflt(Dflt::EmptyList),
    p("maintain_resolvers", Kind::Bool, B::LX, Live),
    p("routes", Kind::Map { key: ROUTE_DST, val: MapVal::Str(ROUTE_GW) }, B::ALL, Live).dflt(Dflt::EmptyMap),
    // metadata
    p("tags", Kind::Map { key: NONEMPTY, val: MapVal::Scalar }, B::ALL, Live).dflt(Dflt::EmptyMap),
    // SmartOS's flat objects: string, number or boolean values.
    p("customer_metadata", Kind::Map { key: NONEMPTY, val: MapVal::Scalar }, B::ALL, Live).dflt(Dflt::EmptyMap),
    p("internal_metadata", Kind::Map { key: NONEMPTY, val: MapVal::Scalar }, B::ALL, Live).dflt(Dflt::EmptyMap),
    p("internal_metadata_namespaces", list(ATTR_VALUE, 32), B::ALL, Live),
    // zones
    p("filesystems", Kind::Objects { props: FS_PROPS, key: "target" }, B::LX, Reboot),
    // Absent unless given (SmartOS): /sbin/init, restarted when it exits.
    p("init_name", s(ABS_PATH), B::LX, Reboot),
    p("restart_init", Kind::Bool, B::LX, Live),
    p("kernel_version", s(KERNEL_VERSION), B::LX, Reboot),
    p("limit_priv", Kind::Joined { item: PRIV, max: 64 }, B::LX, Reboot).dflt(Dflt::Str("default")),
    // SmartOS's HVM zones: QEMU needs none of these.
    p("limit_priv", Kind::Joined { item: PRIV, max: 64 }, B::HVM, Reboot)
        .dflt(Dflt::Str("default,-file_link_any,-net_access,-proc_fork,-proc_info,-proc_session")),
    p("fs_allowed", Kind::Joined { item: NONEMPTY, max: 32 }, B::LX, Reboot),
    // hardware VMs
    p("disks", Kind::Objects { props: DISK_PROPS, key: "path" }, B::HVM, Reboot).dflt(Dflt::EmptyList),
    p("disk_driver", s(DISK_MODEL_KVM), B::KVM, Reboot),
    p("disk_driver", s(DISK_MODEL_BHYVE), B::BHYVE, Reboot),
    p("boot", s(BOOT_ORDER), B::HVM, Reboot),
    p("bootrom", s(BOOTROM), B::BHYVE, Reboot),
    p("cpu_type", s(CPU_TYPE), B::KVM, Reboot),
    p("vga", s(VGA), B::KVM, Reboot),
    p("vnc_port", int(-1, 65_535), B::HVM, Reboot),
    p("vnc_password", s(VNC_PASSWORD), B::HVM, Reboot),
    // zonevisor's own: where VNC listens (the host's loopback unless given).
    p("vnc_listen", s(IP), B::HVM, Reboot),
    p("qemu_opts", s(NONEMPTY), B::KVM, Reboot),
    p("qemu_extra_opts", s(NONEMPTY), B::KVM, Reboot),
    p("bhyve_extra_opts", s(NONEMPTY), B::BHYVE, Reboot),
    p("virtio_txburst", int(0, i32::MAX as i64), B::KVM, Reboot),
    p("virtio_txtimer", int(0, i32::MAX as i64), B::KVM, Reboot),
    // zonevisor's own (SmartOS has none): a direct kernel boot for fast
    // Linux guests, as QEMU's -kernel, -initrd and -append.
    p("boot_kernel", s(ABS_PATH), B::HVM, Reboot),
    p("boot_initrd", s(ABS_PATH), B::HVM, Reboot),
    p("boot_args", s(ANY), B::HVM, Reboot),
    // owned by the daemon
    ro("state"),
    ro("zone_state"),
    ro("pid"),
    ro("zoneid"),
    ro("zonedid"),
    ro("zonepath"),
    ro("zonename"),
    ro("type"),
    ro("create_timestamp"),
    ro("boot_timestamp"),
    ro("last_modified"),
    ro("exit_status"),
    ro("exit_timestamp"),
    ro("exit_reason"),
    ro("server_uuid"),
    ro("platform_buildstamp"),
    ro("hvm"),
    ro("datasets"),
    ro("snapshots"),
    ro("transition_to"),
    ro("transition_expire"),
    ro("init_restarts"),
    ro("free_space"),
    ro("zfs_filesystem"),
    ro("v"),
];

/// What [`lookup`] found.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'t> {
    /// The entry that applies.
    Found(&'t Prop),
    /// The name exists, but not for this brand.
    NotForBrand,
    /// No property has this name.
    Unknown,
}

/// The first entry of `table` named `name` that applies to `brand` (or the
/// first entry of that name when the brand is unknown).
pub fn lookup<'t>(table: &'t [Prop], name: &str, brand: Option<Brand>) -> Lookup<'t> {
    let mut named = table.iter().filter(|p| p.name == name).peekable();
    if named.peek().is_none() {
        return Lookup::Unknown;
    }
    match brand {
        None => named.next().map_or(Lookup::Unknown, Lookup::Found),
        Some(b) => named.find(|p| p.brands.has(b)).map_or(Lookup::NotForBrand, Lookup::Found),
    }
}

/// The top-level entry for `name` and `brand`, when there is one.
pub fn top(name: &str, brand: Brand) -> Option<&'static Prop> {
    match lookup(PROPS, name, Some(brand)) {
        Lookup::Found(p) => Some(p),
        _ => None,
    }
}

// ---- value forms ----------------------------------------------------------------

macro_rules! fmt {
    ($name:ident, $form:expr, $test:expr) => {
        #[doc = concat!("Values of the form: ", $form, ".")]
        pub const $name: Fmt = Fmt { test: $test, form: $form };
    };
}

fn one_of(s: &str, set: &[&str]) -> bool {
    set.contains(&s)
}

fn regex(re: &'static LazyLock<Regex>, s: &str) -> bool {
    re.is_match(s)
}

static KERNEL_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+(\.[0-9]+){1,3}$").unwrap_or_else(|e| panic!("kernel regex: {e}")));
static COMPRESSION_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(on|off|gzip|gzip-[1-9]|lz4|lzjb|zle)$").unwrap_or_else(|e| panic!("compression regex: {e}"))
});
static NIC_TAG_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_/]{1,31}$").unwrap_or_else(|e| panic!("nic tag regex: {e}")));
static IFACE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]{0,14}$").unwrap_or_else(|e| panic!("interface regex: {e}")));
static ATTR_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9._-]+$").unwrap_or_else(|e| panic!("attr regex: {e}")));
static PRIV_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[-!]?[a-z][a-z0-9_]*$").unwrap_or_else(|e| panic!("priv regex: {e}")));

/// True for a hostname or domain name after RFC 1123.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// Parses a MAC address (`02:08:20:ab:cd:ef`, one or two hex digits per
/// octet) into its six octets.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *slot = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Formats six octets the way SmartOS prints MACs (lowercase, two digits).
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter().map(|o| format!("{o:02x}")).collect::<Vec<_>>().join(":")
}

fn valid_mac(s: &str) -> bool {
    // A NIC's own address must be unicast and not all zeros.
    parse_mac(s).is_some_and(|m| m[0] & 1 == 0 && m != [0; 6])
}

/// Splits `addr/prefix` into an address and a prefix length valid for it.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn valid_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

fn valid_netmask(s: &str) -> bool {
    s.parse::<Ipv4Addr>().is_ok_and(|m| {
        let bits = u32::from(m);
        bits.leading_ones() + bits.trailing_zeros() == 32
    })
}

fn clean_abs_path(s: &str) -> bool {
    s.starts_with('/') && s.len() <= 1024 && !s.contains('\0') && !s.split('/').any(|c| c == "..")
}

fmt!(ANY, "any string", |_| true);
fmt!(NONEMPTY, "a non-empty string", |s| !s.trim().is_empty());
fmt!(ALIAS, "1 to 1024 printable characters (no control characters)", |s| {
    !s.is_empty() && s.chars().count() <= 1024 && !s.chars().any(char::is_control)
});
fmt!(
    HOSTNAME,
    "a name of dot-separated labels of letters, digits and hyphens (each 1-63 characters, \
     not starting or ending with a hyphen; 253 characters at most)",
    valid_hostname
);
fmt!(ABS_PATH, "an absolute path", |s| s.starts_with('/') && !s.contains('\0'));
fmt!(CLEAN_ABS_PATH, "an absolute path without `..` components", clean_abs_path);
fmt!(ZPOOL_NAME, "\"zones\" (the only pool on a zonevisor host)", |s| s == ZPOOL);
fmt!(MAC, "a unicast MAC address like 02:08:20:ab:cd:ef", valid_mac);
fmt!(NIC_TAG, "a nic tag name: 1-31 letters, digits, `_` or `/`", |s| regex(&NIC_TAG_RE, s));
fmt!(IFACE, "an interface name like eth0 or net0 (lowercase, 15 characters at most)", |s| regex(&IFACE_RE, s));
fmt!(IP, "an IPv4 or IPv6 address", valid_ip);
fmt!(IP_OR_CIDR, "an IP address or a CIDR range like 10.0.0.0/24", |s| { valid_ip(s) || parse_cidr(s).is_some() });
fmt!(CIDR_OR_AUTO, "an address with prefix length like 10.0.0.5/24, or \"dhcp\" or \"addrconf\"", |s| s == "dhcp"
    || s == "addrconf"
    || parse_cidr(s).is_some());
fmt!(IPV4_OR_DHCP, "an IPv4 address or \"dhcp\"", |s| s == "dhcp" || s.parse::<Ipv4Addr>().is_ok());
fmt!(NETMASK, "an IPv4 netmask like 255.255.255.0", valid_netmask);
fmt!(DHCP_CID, "a DHCP client identifier: 0x and pairs of hex digits", |s| s
    .strip_prefix("0x")
    .is_some_and(|h| !h.is_empty() && h.len() % 2 == 0 && h.bytes().all(|b| b.is_ascii_hexdigit())));
fmt!(PORT, "a port number from 1 to 65535", |s| s.parse::<u16>().is_ok_and(|p| p > 0));
fmt!(ROUTE_DST, "a destination IP address or CIDR range", |s| { valid_ip(s) || parse_cidr(s).is_some() });
fmt!(ROUTE_GW, "a gateway IP address or nics[N] for a link-local route", |s| {
    valid_ip(s) || s.strip_prefix("nics[").and_then(|r| r.strip_suffix(']')).is_some_and(|n| n.parse::<u16>().is_ok())
});
fmt!(NIC_MODEL_KVM, "one of virtio, e1000, rtl8139", |s| one_of(s, &["virtio", "e1000", "rtl8139"]));
fmt!(NIC_MODEL_BHYVE, "one of virtio, e1000", |s| one_of(s, &["virtio", "e1000"]));
fmt!(DISK_MODEL_KVM, "one of virtio, ide, scsi", |s| one_of(s, &["virtio", "ide", "scsi"]));
fmt!(DISK_MODEL_BHYVE, "one of virtio, ahci, nvme", |s| one_of(s, &["virtio", "ahci", "nvme"]));
fmt!(MEDIA, "one of disk, cdrom", |s| one_of(s, &["disk", "cdrom"]));
fmt!(COMPRESSION, "one of on, off, gzip, gzip-1 … gzip-9, lz4, lzjb, zle", |s| regex(&COMPRESSION_RE, s));
fmt!(PCI_SLOT, "a PCI slot like 0:4:0, 4:0 or 4", |s| {
    let parts: Vec<&str> = s.split(':').collect();
    (1..=3).contains(&parts.len()) && parts.iter().all(|p| p.parse::<u8>().is_ok())
});
fmt!(GUEST_BLOCK_SIZE, "a sector size like 512 or 4096/512", |s| {
    s.split('/').count() <= 2 && s.split('/').all(|p| p.parse::<u32>().is_ok_and(|n| n >= 512))
});
fmt!(FS_TYPE, "\"lofs\" (a bind mount)", |s| s == "lofs");
fmt!(FS_OPTION, "one of ro, rw, nodevice, nodevices, nosuid, nosetuid, noexec", |s| one_of(
    s,
    &["ro", "rw", "nodevice", "nodevices", "nosuid", "nosetuid", "noexec"]
));
fmt!(KERNEL_VERSION, "a Linux kernel version like 4.4 or 5.10.0", |s| regex(&KERNEL_RE, s));
fmt!(ATTR_VALUE, "letters, digits, `.`, `_` or `-`", |s| regex(&ATTR_RE, s));
fmt!(PRIV, "a privilege name like default, sys_mount or -proc_fork", |s| regex(&PRIV_RE, s));
fmt!(BOOT_ORDER, "a boot spec like order=cd or order=c,once=d", |s| {
    !s.is_empty()
        && s.split(',').all(|kv| {
            kv.split_once('=').is_some_and(|(k, v)| {
                (k == "order" || k == "once") && !v.is_empty() && v.bytes().all(|c| matches!(c, b'a'..=b'p'))
            })
        })
});
fmt!(BOOTROM, "bios, uefi, or an absolute path to a firmware file", |s| {
    s == "bios" || s == "uefi" || (s.starts_with('/') && !s.contains('\0'))
});
fmt!(CPU_TYPE, "one of qemu64, host", |s| one_of(s, &["qemu64", "host"]));
fmt!(VGA, "one of cirrus, std, vmware, qxl, xenfb", |s| one_of(s, &["cirrus", "std", "vmware", "qxl", "xenfb"]));
fmt!(VNC_PASSWORD, "1 to 8 characters", |s| (1..=8).contains(&s.chars().count()));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_per_brand() {
        let Lookup::Found(kvm) = lookup(DISK_PROPS, "model", Some(Brand::Kvm)) else { panic!() };
        assert!((kvm.kind_fmt().test)("ide"));
        let Lookup::Found(bhyve) = lookup(DISK_PROPS, "model", Some(Brand::Bhyve)) else { panic!() };
        assert!(!(bhyve.kind_fmt().test)("ide"));
        assert!(matches!(lookup(PROPS, "vcpus", Some(Brand::Lx)), Lookup::NotForBrand));
        assert!(matches!(lookup(PROPS, "nonsense", Some(Brand::Lx)), Lookup::Unknown));
    }

    impl Prop {
        fn kind_fmt(&self) -> Fmt {
            match self.kind {
                Kind::Str(f) => f,
                _ => panic!("{} is not a string", self.name),
            }
        }
    }

    #[test]
    fn forms() {
        assert!(valid_hostname("web-01.example.com"));
        assert!(!valid_hostname("-web"));
        assert!(!valid_hostname("web_01"));
        assert!(!valid_hostname(&"a".repeat(64)));
        assert!((MAC.test)("2:8:20:ab:cd:ef"));
        assert!(!(MAC.test)("01:00:5e:00:00:01"), "multicast");
        assert!(!(MAC.test)("02:08:20:ab:cd"));
        assert!((CIDR_OR_AUTO.test)("fd00::5/64"));
        assert!(!(CIDR_OR_AUTO.test)("10.0.0.5/33"));
        assert!(!(CIDR_OR_AUTO.test)("10.0.0.5"));
        assert!((NETMASK.test)("255.255.255.0"));
        assert!(!(NETMASK.test)("255.0.255.0"));
        assert!(!(CLEAN_ABS_PATH.test)("/data/../etc"));
        assert!((ROUTE_GW.test)("nics[1]"));
        assert!((BOOT_ORDER.test)("order=c,once=d"));
        assert_eq!(format_mac([2, 8, 0x20, 0xab, 0xc, 1]), "02:08:20:ab:0c:01");
    }
}
