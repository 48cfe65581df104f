//! Networks: nic tags (each a Linux bridge), the default network the
//! daemon makes on its first start, the ports of instances' NICs, and the
//! host's nftables ruleset and DHCP reservations that follow them.
//!
//! ```text
//!  daemon start ── tags from the store ── none managed and never made? ── make "default"
//!        │                                  (a /24 no host route uses, a ULA /64)
//!        v
//!  each tag: its bridge (etherstub: made; normal: made over the link; bridge: the host's)
//!  managed:  the host's addresses on it, forwarding, dnsmasq (adopted if running)
//!        v
//!  refresh: the ruleset (antispoof of every NIC, firewalls, NAT) in one nft
//!           transaction, and each managed network's reservations (SIGHUP)
//!
//!  instance start ── ports_of: a port per NIC (DHCP address reserved) ── monitor wires them
//!                 └─ started: bandwidth caps on the ports, refresh
//! ```
//!
//! Every change to instances, tags or rules ends in [`Daemon::refresh_net`],
//! which renders everything from the store, so what the kernel holds is
//! always the store's picture, after a crash as after a change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::{json, Value};
use zonevisor_api::{
    ApiError, InstanceUuid, ManagedNetwork, NicTag, NicTagRequest, NicTagUpdate, ValidationErrors, VmObject,
};
use zonevisor_net::dnsmasq::{self, Dnsmasq};
use zonevisor_net::netlink::Netlink;
use zonevisor_net::nft;
use zonevisor_net::plan::{self, GuestLink, Port, RouteVia};

use crate::instance::spec::NetPart;
use crate::Daemon;

/// The nic tag of the network the daemon makes itself, where a NIC that
/// names no `nic_tag` lands.
pub(crate) const DEFAULT_TAG: &str = "default";
/// Its bridge.
const DEFAULT_BRIDGE: &str = "zvbr0";
/// The host setting that records that the default network was made (a
/// deleted one is not made again).
const DEFAULT_MADE: &str = "default_network_made";
/// MTUs a nic tag may have, as nictagadm allows.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 1500..=9000;

/// The daemon's networking state outside the store.
pub(crate) struct Net {
    /// `<root>/run/net`: each managed network's dnsmasq files.
    dir: PathBuf,
    /// Upstream DNS servers for the managed networks (none: the host's).
    upstream: Vec<IpAddr>,
    /// The managed networks' dnsmasq, by tag.
    dnsmasq: Mutex<BTreeMap<String, Dnsmasq>>,
    /// One change of the kernel's picture at a time.
    changes: Mutex<()>,
    /// What of the ruleset the kernel holds (changes go as differences).
    applier: Mutex<nft::Applier>,
    /// Whether this host can hold networks at all (nft, bridges).
    pub(crate) enabled: bool,
}

impl Net {
    /// `root`: the daemon's root. The managed networks' dnsmasq files go
    /// under `/run/zonevisor/<a hash of root>/`: dnsmasq re-reads them
    /// after dropping root, and the daemon's root is root's alone.
    pub(crate) fn new(root: &Path, upstream: Vec<IpAddr>, enabled: bool) -> Net {
        let h = fnv64(&root.to_string_lossy());
        Net {
            dir: PathBuf::from(format!("/run/zonevisor/{h:016x}")),
            upstream,
            dnsmasq: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(()),
            applier: Mutex::new(nft::Applier::default()),
            enabled,
        }
    }
}

/// Whether this host can hold zonevisor's networks: `nft` runs.
pub(crate) fn available() -> bool {
    let ok = std::process::Command::new("nft")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        tracing::warn!("nft (Debian: nftables) is not installed: instances cannot have NICs");
    }
    ok
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ApiError {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

fn tag_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= 31 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The bridge zonevisor makes for a tag: `zvt<tag>` when that fits the
/// kernel's 15 bytes, else a prefix and a hash of the name.
fn bridge_name(tag: &str) -> String {
    if tag.len() <= 12 {
        return format!("zvt{tag}");
    }
    format!("zvt{}{:06x}", &tag[..6], fnv64(tag) & 0xff_ffff)
}

/// FNV-1a of `s`: short stable names from long ones.
fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A tag's bridge for VLAN `vid`: `zvv`, a hash of the tag's name, the VLAN.
fn vlan_bridge_name(tag: &str, vid: u16) -> String {
    format!("{}{vid}", vlan_bridge_prefix(tag))
}

fn vlan_bridge_prefix(tag: &str) -> String {
    format!("zvv{:06x}v", fnv64(tag) & 0xff_ffff)
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn flag(n: &Value, k: &str) -> bool {
    n.get(k).and_then(Value::as_bool).unwrap_or(false)
}

/// The managed network's parts, parsed.
struct Managed {
    v4: Ipv4Net,
    v6: Option<Ipv6Net>,
}

fn managed(tag: &NicTag) -> Option<Managed> {
    let n = tag.network.as_ref()?;
    Some(Managed { v4: n.ipv4.parse().ok()?, v6: n.ipv6.as_deref().and_then(|s| s.parse().ok()) })
}

/// Fills `nic_tag` of the NICs a payload gives without one (in `nics`
/// and `add_nics`): they join the default network.
pub(crate) fn fill_nic_defaults(payload: &mut Value) {
    for key in ["nics", "add_nics"] {
        if let Some(list) = payload.get_mut(key).and_then(Value::as_array_mut) {
            for nic in list.iter_mut().filter_map(Value::as_object_mut) {
                if !nic.contains_key("nic_tag") && !nic.contains_key("network_uuid") {
                    nic.insert("nic_tag".into(), json!(DEFAULT_TAG));
                }
            }
        }
    }
}

impl Daemon {
    fn stored_tags(&self) -> Result<Vec<NicTag>, ApiError> {
        let mut out = Vec::new();
        for (name, v) in self.store.nic_tags()? {
            match serde_json::from_value::<NicTag>(v) {
                Ok(t) => out.push(t),
                Err(e) => tracing::warn!(tag = name, error = %e, "a stored nic tag is unreadable; ignored"),
            }
        }
        Ok(out)
    }

    fn tags_by_name(&self) -> Result<BTreeMap<String, NicTag>, ApiError> {
        Ok(self.stored_tags()?.into_iter().map(|t| (t.name.clone(), t)).collect())
    }

    fn with_status(&self, mut tag: NicTag) -> NicTag {
        if let Some(n) = tag.network.as_mut() {
            n.dhcp = self
                .net
                .dnsmasq
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&tag.name)
                .is_some_and(Dnsmasq::is_running);
            n.state_dir = Some(self.net.dir.join(&tag.name).display().to_string());
        }
        tag
    }

    /// `nictagadm list`.
    pub fn list_nic_tags(&self) -> Result<Vec<NicTag>, ApiError> {
        Ok(self.stored_tags()?.into_iter().map(|t| self.with_status(t)).collect())
    }

    /// One nic tag.
    pub fn get_nic_tag(&self, name: &str) -> Result<NicTag, ApiError> {
        self.stored_tags()?
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| self.with_status(t))
            .ok_or_else(|| ApiError::not_found(format!("nic tag {name} does not exist")))
    }

    /// A link named `link`, or whose MAC is `link`: its name, MAC, MTU
    /// and whether it is a bridge.
    fn find_link(&self, link: &str) -> Result<(String, Option<String>, u32, bool), ApiError> {
        let mut nl = Netlink::open().map_err(io_err("netlink"))?;
        let mac = plan::parse_mac(link);
        let links = nl.links().map_err(io_err("listing links"))?;
        let found = links.into_iter().find(|l| l.name == link || (mac.is_some() && l.mac == mac));
        let l = found
            .ok_or_else(|| ApiError::invalid(format!("link: no link named or with the MAC {link} on this host")))?;
        if l.name.starts_with("zv") {
            return Err(ApiError::invalid(format!("link: {} is zonevisor's own; name a host link", l.name)));
        }
        Ok((l.name, l.mac.map(mac_text), l.mtu, l.kind.as_deref() == Some("bridge")))
    }

    /// `nictagadm add`.
    pub fn add_nic_tag(&self, req: &NicTagRequest) -> Result<NicTag, ApiError> {
        let mut errs = ValidationErrors::default();
        if !tag_name_ok(&req.name) {
            errs.bad_value("name", format!("{:?}: a nic tag name is 1-31 letters, digits and _", req.name));
        }
        if let Some(mtu) = req.mtu.filter(|m| !MTU_RANGE.contains(m)) {
            errs.bad_value("mtu", format!("{mtu} is outside {}-{}", MTU_RANGE.start(), MTU_RANGE.end()));
        }
        match (req.local, &req.link) {
            (true, Some(_)) => errs.bad_value("link", "an etherstub (-l) has no link"),
            (false, None) => errs.missing("link", "name a link or a bridge (or -l for a host-local etherstub)"),
            _ => {}
        }
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        let _g = self.net.changes.lock().unwrap_or_else(|p| p.into_inner());
        let tag = match &req.link {
            None => NicTag {
                name: req.name.clone(),
                kind: "etherstub".into(),
                link: None,
                mac_address: None,
                mtu: req.mtu.unwrap_or(1500),
                bridge: bridge_name(&req.name),
                network: None,
            },
            Some(link) => {
                let (name, mac, mtu, is_bridge) = self.find_link(link)?;
                if let Some(other) = self.stored_tags()?.into_iter().find(|t| t.link.as_deref() == Some(&name)) {
                    return Err(ApiError::conflict(format!("link {name} is already nic tag {}'s", other.name)));
                }
                NicTag {
                    name: req.name.clone(),
                    kind: if is_bridge { "bridge" } else { "normal" }.into(),
                    bridge: if is_bridge { name.clone() } else { bridge_name(&req.name) },
                    link: Some(name),
                    mac_address: mac,
                    mtu: req.mtu.unwrap_or(mtu.clamp(*MTU_RANGE.start(), *MTU_RANGE.end())),
                    network: None,
                }
            }
        };
        let obj = serde_json::to_value(&tag).map_err(|e| ApiError::internal(e.to_string()))?;
        if !self.store.put_nic_tag(&tag.name, &obj, true)? {
            return Err(ApiError::conflict(format!("nic tag {} already exists", tag.name)));
        }
        if let Err(e) = self.ensure_tag(&tag) {
            self.teardown_tag(&tag);
            let _ = self.store.delete_nic_tag(&tag.name);
            return Err(ApiError::internal(format!("making nic tag {}: {e}", tag.name)));
        }
        tracing::info!(tag = tag.name, kind = tag.kind, bridge = tag.bridge, "added nic tag");
        Ok(self.with_status(tag))
    }

    /// `nictagadm update`.
    pub fn update_nic_tag(&self, name: &str, upd: &NicTagUpdate) -> Result<NicTag, ApiError> {
        let _g = self.net.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut tag = self.get_nic_tag(name)?;
        let before = tag.clone();
        if let Some(mtu) = upd.mtu {
            if !MTU_RANGE.contains(&mtu) {
                let mut errs = ValidationErrors::default();
                errs.bad_value("mtu", format!("{mtu} is outside {}-{}", MTU_RANGE.start(), MTU_RANGE.end()));
                return Err(ApiError::validation(errs));
            }
            tag.mtu = mtu;
        }
        if let Some(link) = &upd.link {
            if tag.kind == "etherstub" {
                let mut errs = ValidationErrors::default();
                errs.bad_value("link", format!("nic tag {name} is an etherstub; it has no link"));
                return Err(ApiError::validation(errs));
            }
            let (lname, mac, _, is_bridge) = self.find_link(link)?;
            if is_bridge != (tag.kind == "bridge") {
                return Err(ApiError::invalid(format!(
                    "link: {lname} is {}a bridge, as nic tag {name}'s link must {}be",
                    if is_bridge { "" } else { "not " },
                    if tag.kind == "bridge" { "" } else { "not " }
                )));
            }
            if is_bridge {
                tag.bridge = lname.clone();
            }
            tag.link = Some(lname);
            tag.mac_address = mac;
        }
        if tag.link != before.link && before.kind == "normal" {
            self.release_link(&before);
        }
        let obj = serde_json::to_value(&tag).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store.put_nic_tag(name, &obj, false)?;
        self.ensure_tag(&tag).map_err(|e| ApiError::internal(format!("nic tag {name}: {e}")))?;
        Ok(self.with_status(tag))
    }

    /// `nictagadm delete [-f]`: refused while instances have NICs on it,
    /// unless forced.
    pub fn delete_nic_tag(&self, name: &str, force: bool) -> Result<(), ApiError> {
        let _g = self.net.changes.lock().unwrap_or_else(|p| p.into_inner());
        let tag = self.get_nic_tag(name)?;
        let users = self.store.instances_on_tag(name)?;
        if !users.is_empty() && !force {
            return Err(ApiError::conflict(format!(
                "nic tag {name} is used by {} instance(s) ({}); use -f to delete it anyway",
                users.len(),
                users.join(", ")
            )));
        }
        self.teardown_tag(&tag);
        self.store.delete_nic_tag(name)?;
        drop(_g);
        self.refresh_net();
        tracing::info!(tag = name, "deleted nic tag");
        Ok(())
    }

    /// `nictagadm vms`.
    pub fn nic_tag_vms(&self, name: &str) -> Result<Vec<String>, ApiError> {
        self.get_nic_tag(name)?;
        Ok(self.store.instances_on_tag(name)?)
    }

    /// Makes the kernel hold a tag: its bridge (and, for a managed
    /// network, the host's addresses, forwarding and dnsmasq).
    fn ensure_tag(&self, tag: &NicTag) -> std::io::Result<()> {
        let mut nl = Netlink::open()?;
        let bridge = match (tag.kind.as_str(), nl.link(&tag.bridge)?) {
            ("bridge", Some(b)) => b.index,
            ("bridge", None) => {
                return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("bridge {} is gone", tag.bridge)))
            }
            (_, Some(b)) => b.index,
            (_, None) => nl.add_bridge(&tag.bridge, Some(tag.mtu), false)?,
        };
        if tag.kind != "bridge" {
            nl.set_mtu(bridge, tag.mtu)?;
        }
        if let (Some(link), "normal") = (&tag.link, tag.kind.as_str()) {
            let l = nl.link(link)?.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("link {link} is not on this host"))
            })?;
            if l.master != Some(bridge) {
                nl.set_master(l.index, Some(bridge))?;
            }
            nl.set_up(l.index, true)?;
        }
        nl.set_up(bridge, true)?;
        if let Some(m) = managed(tag) {
            nl.add_address(bridge, IpNet::V4(m.v4))?;
            if let Some(v6) = m.v6 {
                nl.add_address(bridge, IpNet::V6(v6))?;
            }
            zonevisor_net::netlink::sysctl_write("net/ipv4/ip_forward", "1")?;
            let cfg = self.dnsmasq_config(tag, &m);
            for dir in [Path::new("/run/zonevisor"), self.net.dir.as_path()] {
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(
                    dir,
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
                )?;
            }
            let d = Dnsmasq::start_or_adopt(&cfg).map_err(std::io::Error::other)?;
            self.net.dnsmasq.lock().unwrap_or_else(|p| p.into_inner()).insert(tag.name.clone(), d);
        }
        Ok(())
    }

    fn dnsmasq_config(&self, tag: &NicTag, m: &Managed) -> dnsmasq::NetworkConfig {
        dnsmasq::NetworkConfig {
            name: tag.name.clone(),
            bridge: tag.bridge.clone(),
            ipv4: Some(m.v4),
            ipv6: m.v6,
            domain: None,
            upstream: self.net.upstream.clone(),
            dir: self.net.dir.join(&tag.name),
        }
    }

    /// Gives a `normal` tag's link back to the host (out of our bridge).
    fn release_link(&self, tag: &NicTag) {
        let Some(link) = &tag.link else { return };
        if let Ok(mut nl) = Netlink::open() {
            if let Ok(Some(l)) = nl.link(link) {
                let _ = nl.set_master(l.index, None);
            }
        }
    }

    /// Undoes [`Self::ensure_tag`]: the bridge zonevisor made (not a
    /// host's own), the dnsmasq.
    fn teardown_tag(&self, tag: &NicTag) {
        if let Some(d) = self.net.dnsmasq.lock().unwrap_or_else(|p| p.into_inner()).remove(&tag.name) {
            if let Err(e) = d.stop() {
                tracing::warn!(tag = tag.name, error = %e, "stopping the network's dnsmasq");
            }
        }
        if tag.kind == "normal" {
            self.release_link(tag);
        }
        if tag.kind != "bridge" {
            if let Ok(mut nl) = Netlink::open() {
                let prefix = vlan_bridge_prefix(&tag.name);
                let ours = nl
                    .links()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| l.name == tag.bridge || l.name.starts_with(&prefix));
                for b in ours.collect::<Vec<_>>() {
                    if let Err(e) = nl.delete_link(b.index) {
                        tracing::warn!(bridge = b.name, error = %e, "removing a nic tag's bridge");
                    }
                }
            }
        }
    }

    /// A /24 in 10.0.0.0/8 that no route or address of the host touches,
    /// starting from a place that depends on the daemon's root (so two
    /// daemons on one host start apart).
    fn free_subnet(&self) -> std::io::Result<Ipv4Net> {
        let mut nl = Netlink::open()?;
        let mut used: Vec<Ipv4Net> = Vec::new();
        for r in nl.routes(true)? {
            if let IpNet::V4(n) = r.dst {
                if n.prefix_len() > 0 {
                    used.push(n);
                }
            }
        }
        for (_, a) in nl.addresses(None)? {
            if let IpNet::V4(n) = a {
                used.push(n.trunc());
            }
        }
        let seed = self
            .root
            .to_string_lossy()
            .bytes()
            .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        for i in 0..65_536u32 {
            let n = (seed.wrapping_add(i.wrapping_mul(40_503))) & 0xffff;
            let net = Ipv4Net::new(Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0), 24).expect("a /24");
            if !used.iter().any(|u| u.contains(&net.network()) || net.contains(&u.network())) {
                return Ok(net);
            }
        }
        Err(std::io::Error::other("every /24 of 10.0.0.0/8 is in use on this host"))
    }

    /// The uplink (the link of the IPv4 default route), or why there is none.
    fn uplink(&self) -> Result<String, String> {
        let mut nl = Netlink::open().map_err(|e| e.to_string())?;
        let index =
            nl.default_route_link(true).map_err(|e| e.to_string())?.ok_or("the host has no IPv4 default route")?;
        nl.links()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|l| l.index == index)
            .map(|l| l.name)
            .ok_or_else(|| "the default route's link is gone".to_string())
    }

    /// The default network: a host-local tag whose bridge holds the
    /// host's address on a free /24 and a ULA /64.
    fn make_default(&self) -> std::io::Result<NicTag> {
        let subnet = self.free_subnet()?;
        let v4 = Ipv4Net::new(Ipv4Addr::from(u32::from(subnet.network()) + 1), 24).expect("a /24");
        let mut r = [0u8; 5];
        getrandom(&mut r);
        let v6 = Ipv6Net::new(
            Ipv6Addr::new(
                0xfd00 | u16::from(r[0]),
                u16::from_be_bytes([r[1], r[2]]),
                u16::from_be_bytes([r[3], r[4]]),
                0,
                0,
                0,
                0,
                1,
            ),
            64,
        )
        .expect("a /64");
        Ok(NicTag {
            name: DEFAULT_TAG.into(),
            kind: "etherstub".into(),
            link: None,
            mac_address: None,
            mtu: 1500,
            bridge: DEFAULT_BRIDGE.into(),
            network: Some(ManagedNetwork {
                ipv4: v4.to_string(),
                ipv6: Some(v6.to_string()),
                nat: None,
                nat_missing: None,
                dhcp: false,
                state_dir: None,
            }),
        })
    }

    /// At the daemon's start: the default network on the first start,
    /// every tag's bridge, the managed networks' dnsmasq, the ruleset.
    pub(crate) fn start_networks(&self) {
        if !self.net.enabled {
            return;
        }
        // The host reaches its own addresses on the bridges (DNS, the
        // supervisor's probes) through `lo`, up on every booted host but
        // not in a network namespace just made.
        if let Ok(mut nl) = Netlink::open() {
            if let Ok(Some(lo)) = nl.link("lo") {
                if !lo.up {
                    let _ = nl.set_up(lo.index, true);
                }
            }
        }
        let made = matches!(self.store.host_get(DEFAULT_MADE), Ok(Some(_)));
        if !made {
            match self.make_default() {
                Ok(tag) => {
                    let obj = serde_json::to_value(&tag).expect("a tag serializes");
                    match self.store.put_nic_tag(&tag.name, &obj, true) {
                        Ok(_) => {
                            let _ = self.store.host_set(
                                DEFAULT_MADE,
                                &tag.network.as_ref().map(|n| n.ipv4.clone()).unwrap_or_default(),
                            );
                            tracing::info!(tag = tag.name, bridge = tag.bridge, network = ?tag.network, "made the default network");
                        }
                        Err(e) => tracing::error!(error = %crate::chain(&e), "recording the default network"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot make the default network"),
            }
        }
        let tags = match self.stored_tags() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "reading nic tags");
                return;
            }
        };
        for mut tag in tags {
            if let Some(n) = tag.network.as_mut() {
                match self.uplink() {
                    Ok(up) => {
                        n.nat = Some(up);
                        n.nat_missing = None;
                    }
                    Err(why) => {
                        tracing::warn!(
                            tag = tag.name,
                            "no NAT for the network: {why}; its instances reach each other and the host only"
                        );
                        n.nat = None;
                        n.nat_missing = Some(why);
                    }
                }
                let obj = serde_json::to_value(&tag).expect("a tag serializes");
                let _ = self.store.put_nic_tag(&tag.name, &obj, false);
            }
            if let Err(e) = self.ensure_tag(&tag) {
                tracing::error!(tag = tag.name, error = %e, "cannot set up nic tag; its instances will not start");
            }
        }
        self.refresh_net();
    }

    /// Checks a payload's NICs against the host's tags and the other
    /// instances: an unknown tag, an MTU above the tag's, a MAC or an IP
    /// another instance holds on the tag.
    pub(crate) fn check_nics(&self, uuid: Option<InstanceUuid>, vm: &VmObject, errs: &mut ValidationErrors) {
        let nics = vm.get("nics").and_then(Value::as_array).cloned().unwrap_or_default();
        if nics.is_empty() {
            return;
        }
        let Ok(tags) = self.tags_by_name() else { return };
        let me = uuid.map(|u| u.to_string());
        for (i, n) in nics.iter().enumerate() {
            let Some(tag) = n.get("nic_tag").and_then(Value::as_str) else { continue };
            let Some(t) = tags.get(tag) else {
                let known: Vec<&str> = tags.keys().map(String::as_str).collect();
                errs.bad_value(
                    &format!("nics.{i}.nic_tag"),
                    format!("nic tag {tag} does not exist (nic tags: {})", known.join(", ")),
                );
                continue;
            };
            if let Some(mtu) = n.get("mtu").and_then(Value::as_u64) {
                if mtu > u64::from(t.mtu) {
                    errs.bad_value(&format!("nics.{i}.mtu"), format!("{mtu} is above nic tag {tag}'s MTU {}", t.mtu));
                }
            }
            let held = |kind: &str, value: &str| {
                self.store.nic_holder(tag, kind, value).ok().flatten().filter(|by| Some(by) != me.as_ref())
            };
            if let Some(mac) = n.get("mac").and_then(Value::as_str) {
                if let Some(by) = held("mac", mac) {
                    errs.bad_value(
                        &format!("nics.{i}.mac"),
                        format!("{mac} is already used on nic tag {tag} by VM {by}"),
                    );
                }
            }
            for ip in strings(n.get("ips")) {
                let Some(addr) = ip.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) else { continue };
                if let Some(by) = held("ip", &addr.to_string()) {
                    errs.bad_value(
                        &format!("nics.{i}.ips"),
                        format!("{addr} is already used on nic tag {tag} by VM {by}"),
                    );
                }
                if let Some(m) = managed(t) {
                    if IpAddr::V4(m.v4.addr()) == addr {
                        errs.bad_value(
                            &format!("nics.{i}.ips"),
                            format!("{addr} is the host's address on nic tag {tag}"),
                        );
                    }
                }
            }
        }
    }

    /// The ports of an instance's NICs, for its monitor: a managed
    /// network's `dhcp` NIC gets its address reserved here (the network's
    /// DHCP server hands it out; a zone is given it directly).
    pub(crate) fn ports_of(&self, uuid: InstanceUuid, net: &NetPart, zone: bool) -> Result<Vec<Port>, ApiError> {
        let nics = &net.nics;
        if nics.is_empty() {
            return Ok(Vec::new());
        }
        if !self.net.enabled {
            return Err(ApiError::unsupported("this host cannot wire NICs: nftables (nft) or bridges are missing"));
        }
        let tags = self.tags_by_name()?;
        let routes: Vec<(String, String)> =
            net.routes.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect();
        let mut ports = Vec::new();
        for (i, n) in nics.iter().enumerate() {
            let tag_name = n.get("nic_tag").and_then(Value::as_str).unwrap_or(DEFAULT_TAG);
            let tag = tags.get(tag_name).ok_or_else(|| {
                ApiError::invalid(format!("nics.{i}.nic_tag: nic tag {tag_name} does not exist on this host"))
            })?;
            let mac = n.get("mac").and_then(Value::as_str).unwrap_or_default().to_string();
            let ips = strings(n.get("ips"));
            let primary = flag(n, "primary");
            let mut dhcp = ips.iter().any(|s| s == "dhcp");
            let mut addrs: Vec<IpNet> = ips.iter().filter_map(|s| s.parse().ok()).collect();
            if let (true, Some(m)) = (dhcp, managed(tag)) {
                let addr = self.reserve(tag, &m, uuid, &mac)?;
                if zone {
                    // The network's DHCP server would hand this out: a
                    // zone gets it without the round trip.
                    addrs.push(IpNet::V4(Ipv4Net::new(addr, m.v4.prefix_len()).expect("a prefix")));
                    dhcp = false;
                }
            }
            let mut via = Vec::new();
            if primary {
                let gateways = strings(n.get("gateways"));
                let mut gws: Vec<IpAddr> = gateways.iter().filter_map(|g| g.parse().ok()).collect();
                if gws.is_empty() && ips.iter().any(|s| s == "dhcp") {
                    if let Some(m) = managed(tag) {
                        gws.push(IpAddr::V4(m.v4.addr()));
                    }
                }
                let mut seen = BTreeSet::new();
                for g in gws {
                    let dst: IpNet =
                        if g.is_ipv4() { "0.0.0.0/0".parse().expect("a net") } else { "::/0".parse().expect("a net") };
                    if seen.insert(dst) {
                        via.push(RouteVia { dst, via: g });
                    }
                }
            }
            for (dst, gw) in &routes {
                let (Ok(gw), Some(dst)) = (gw.parse::<IpAddr>(), parse_dst(dst)) else { continue };
                // A route goes through the NIC whose subnet holds its gateway.
                if addrs.iter().any(|a| a.contains(&gw)) {
                    via.push(RouteVia { dst, via: gw });
                }
            }
            let vlan = n.get("vlan_id").and_then(Value::as_u64).unwrap_or(0) as u16;
            let bridge = if vlan == 0 { tag.bridge.clone() } else { self.vlan_bridge(tag, vlan)? };
            let cap = |k: &str| n.get(k).and_then(Value::as_u64).map(|v| v.min(u64::from(u32::MAX)) as u32);
            ports.push(Port {
                host: plan::port_name(&uuid.to_string().parse().expect("an instance uuid is a uuid"), &mac),
                bridge,
                caps: zonevisor_net::shape::Caps {
                    ingress_mbps: cap("max_ingress_bandwidth"),
                    egress_mbps: cap("max_egress_bandwidth"),
                },
                mtu: n.get("mtu").and_then(Value::as_u64).map(|m| m as u32),
                mac,
                guest: zone.then(|| GuestLink {
                    name: n.get("interface").and_then(Value::as_str).unwrap_or("eth0").to_string(),
                    addrs,
                    dhcp,
                    routes: via,
                    primary,
                }),
            });
        }
        Ok(ports)
    }

    /// Reserves an address for each of `vm`'s `dhcp` NICs on a managed
    /// network that has none yet.
    pub(crate) fn reserve_nics(&self, uuid: InstanceUuid, vm: &VmObject) -> Result<(), ApiError> {
        let nics = vm.get("nics").and_then(Value::as_array).cloned().unwrap_or_default();
        if nics.is_empty() {
            return Ok(());
        }
        let tags = self.tags_by_name()?;
        for n in &nics {
            let (Some(tag), Some(mac)) = (
                n.get("nic_tag").and_then(Value::as_str).and_then(|t| tags.get(t)),
                n.get("mac").and_then(Value::as_str),
            ) else {
                continue;
            };
            if let (true, Some(m)) = (strings(n.get("ips")).iter().any(|s| s == "dhcp"), managed(tag)) {
                self.reserve(tag, &m, uuid, mac)?;
            }
        }
        Ok(())
    }

    /// Puts a running instance's changed bandwidth caps on its ports
    /// (`max_ingress_bandwidth`, `max_egress_bandwidth`, Mbit/s; the
    /// monitor puts them on when it makes a port). A failure is logged:
    /// the instance keeps running with the caps it had. `release`: the
    /// instance stopped; its IFB devices go (its ports are gone).
    pub(crate) fn apply_caps(&self, uuid: InstanceUuid, vm: &VmObject, release: bool) {
        let u: uuid::Uuid = uuid.to_string().parse().expect("an instance uuid is a uuid");
        let mut nl = if release { Netlink::open().ok() } else { None };
        for n in vm.get("nics").and_then(Value::as_array).into_iter().flatten() {
            let Some(mac) = n.get("mac").and_then(Value::as_str) else { continue };
            let cap = |k: &str| n.get(k).and_then(Value::as_u64).map(|v| v.min(u64::from(u32::MAX)) as u32);
            let caps = zonevisor_net::shape::Caps {
                ingress_mbps: cap("max_ingress_bandwidth"),
                egress_mbps: cap("max_egress_bandwidth"),
            };
            let port = plan::port_name(&u, mac);
            if release {
                if caps.egress_mbps.is_some() {
                    if let Err(e) = zonevisor_net::shape::clear(&port) {
                        tracing::warn!(vm = %uuid, port, error = %e, "removing a stopped NIC's shaper");
                    }
                }
                // The port goes with its instance, not whenever the kernel
                // gets round to the zone's network namespace (a veth dies
                // with it, asynchronously): deleting this end takes both.
                if let Some(nl) = nl.as_mut() {
                    if let Ok(Some(link)) = nl.link(&port) {
                        if let Err(e) = nl.delete_link(link.index) {
                            tracing::debug!(vm = %uuid, port, error = %e, "removing a stopped NIC's port");
                        }
                    }
                }
                continue;
            }
            if let Err(e) = zonevisor_net::shape::set_caps(&port, caps) {
                tracing::warn!(vm = %uuid, port, error = %e, "applying a NIC's bandwidth caps");
            }
        }
    }

    /// The bridge of VLAN `vid` on a tag, made when first needed: a
    /// bridge of its own per VLAN (as a host without VLAN-aware bridges
    /// keeps VLANs apart), so NICs on different VLANs of one tag never
    /// share a broadcast domain. A tag over a host link or bridge would
    /// need the link's 802.1Q sub-interface as that bridge's uplink.
    fn vlan_bridge(&self, tag: &NicTag, vid: u16) -> Result<String, ApiError> {
        if tag.kind != "etherstub" {
            return Err(ApiError::unsupported(format!(
                "vlan_id {vid}: VLANs are kept apart on etherstub nic tags only; nic tag {} is over {} ({})",
                tag.name,
                tag.link.as_deref().unwrap_or("a link"),
                tag.kind
            )));
        }
        let name = vlan_bridge_name(&tag.name, vid);
        let mut nl = Netlink::open().map_err(io_err("netlink"))?;
        let index = match nl.link(&name).map_err(io_err(format!("looking up {name}")))? {
            Some(b) => b.index,
            None => nl.add_bridge(&name, Some(tag.mtu), false).map_err(io_err(format!("making bridge {name}")))?,
        };
        nl.set_up(index, true).map_err(io_err(format!("bringing {name} up")))?;
        Ok(name)
    }

    /// The DNS server a zone that names no `resolvers` gets: its primary
    /// NIC's network's, when zonevisor manages that network.
    pub(crate) fn network_resolvers(&self, net: &NetPart) -> Option<Vec<String>> {
        let primary = net.nics.iter().find(|n| flag(n, "primary")).or(net.nics.first())?;
        let tag = primary.get("nic_tag").and_then(Value::as_str).unwrap_or(DEFAULT_TAG);
        let tag = self.stored_tags().ok()?.into_iter().find(|t| t.name == tag)?;
        managed(&tag).map(|m| vec![m.v4.addr().to_string()])
    }

    /// The address reserved for `mac` on a managed network (reserving one).
    fn reserve(&self, tag: &NicTag, m: &Managed, uuid: InstanceUuid, mac: &str) -> Result<Ipv4Addr, ApiError> {
        let host = m.v4.addr();
        let candidates = m.v4.hosts().filter(move |a| *a != host).map(IpAddr::V4);
        match self.store.reserve_address(&tag.name, &uuid.to_string(), mac, candidates)? {
            Some(IpAddr::V4(a)) => Ok(a),
            _ => Err(ApiError::conflict(format!("nic tag {}: no free address left in {}", tag.name, m.v4.trunc()))),
        }
    }

    /// Renders the whole picture from the store and applies it: the
    /// ruleset (one nft transaction) and each managed network's
    /// reservations and names. Failures are logged; the next refresh
    /// tries again.
    pub(crate) fn refresh_net(&self) {
        self.refresh_net_for(None);
    }

    /// [`Self::refresh_net`], with the NICs of `starting` (an instance
    /// about to start) guarded as a running instance's are. A stopped
    /// instance's NICs have no ports, so their rules wait for its start.
    pub(crate) fn refresh_net_for(&self, starting: Option<InstanceUuid>) {
        if !self.net.enabled {
            return;
        }
        let _g = self.net.changes.lock().unwrap_or_else(|p| p.into_inner());
        let t = std::time::Instant::now();
        if let Err(e) = self.refresh_locked(starting) {
            tracing::error!(error = %e, "applying the network's rules");
        }
        tracing::debug!(took = ?t.elapsed(), "network's rules applied");
    }

    fn refresh_locked(&self, starting: Option<InstanceUuid>) -> Result<(), String> {
        let starting = starting.map(|u| u.to_string());
        let tags = self.tags_by_name().map_err(|e| e.to_string())?;
        let rows = self.store.list_vms().map_err(|e| e.to_string())?;
        let mut reserved: BTreeMap<String, BTreeMap<String, IpAddr>> = BTreeMap::new();
        for t in tags.values().filter(|t| t.network.is_some()) {
            for r in self.store.reserved_addresses(&t.name).map_err(|e| e.to_string())? {
                reserved.entry(t.name.clone()).or_default().insert(r.mac, r.addr);
            }
        }
        let mut rules = nft::Ruleset::default();
        let mut hosts: BTreeMap<String, Vec<dnsmasq::Reservation>> = BTreeMap::new();
        let mut names: BTreeMap<String, Vec<(IpAddr, String)>> = BTreeMap::new();
        for row in &rows {
            let vm = &row.vm;
            let Some(uuid) = vm.get("uuid").and_then(Value::as_str).and_then(|u| u.parse::<uuid::Uuid>().ok()) else {
                continue;
            };
            let hostname = vm.get("hostname").and_then(Value::as_str).map(String::from);
            let has_ports = vm.get("state").and_then(Value::as_str) != Some("stopped")
                || starting.as_deref() == vm.get("uuid").and_then(Value::as_str);
            for n in vm.get("nics").and_then(Value::as_array).into_iter().flatten() {
                let Some(mac) = n.get("mac").and_then(Value::as_str) else { continue };
                let tag_name = n.get("nic_tag").and_then(Value::as_str).unwrap_or(DEFAULT_TAG);
                let tag = tags.get(tag_name);
                let m = tag.and_then(managed);
                let ips = strings(n.get("ips"));
                let mut v4: Option<Vec<Ipv4Net>> = Some(Vec::new());
                let mut v6: Option<Vec<Ipv6Net>> = Some(Vec::new());
                let dynamic = reserved.get(tag_name).and_then(|r| r.get(mac)).copied();
                let mut first_v4 = None;
                for ip in &ips {
                    match ip.as_str() {
                        "dhcp" => match dynamic {
                            Some(IpAddr::V4(a)) => {
                                first_v4.get_or_insert(a);
                                if let Some(l) = v4.as_mut() {
                                    l.push(Ipv4Net::from(a));
                                }
                            }
                            // An address some other DHCP server gives: any.
                            _ => v4 = None,
                        },
                        "addrconf" => match m.as_ref().and_then(|m| m.v6) {
                            Some(net) => {
                                if let Some(l) = v6.as_mut() {
                                    l.push(net.trunc());
                                }
                            }
                            None => v6 = None,
                        },
                        other => match other.parse::<IpNet>() {
                            Ok(IpNet::V4(a)) => {
                                first_v4.get_or_insert(a.addr());
                                if let Some(l) = v4.as_mut() {
                                    l.push(Ipv4Net::from(a.addr()));
                                }
                            }
                            Ok(IpNet::V6(a)) => {
                                if let Some(l) = v6.as_mut() {
                                    l.push(Ipv6Net::from(a.addr()));
                                }
                            }
                            Err(_) => {}
                        },
                    }
                }
                for a in strings(n.get("allowed_ips")) {
                    match a.parse::<IpNet>().or_else(|_| a.parse::<IpAddr>().map(IpNet::from)) {
                        Ok(IpNet::V4(a)) => {
                            if let Some(l) = v4.as_mut() {
                                l.push(a);
                            }
                        }
                        Ok(IpNet::V6(a)) => {
                            if let Some(l) = v6.as_mut() {
                                l.push(a);
                            }
                        }
                        Err(_) => {}
                    }
                }
                if flag(n, "allow_ip_spoofing") {
                    v4 = None;
                    v6 = None;
                }
                if has_ports {
                    rules.ports.push(nft::PortFilter {
                        port: plan::port_name(&uuid, mac),
                        mac: mac.to_string(),
                        ipv4: v4,
                        ipv6: v6,
                        allow_mac_spoofing: flag(n, "allow_mac_spoofing"),
                        allow_dhcp_spoofing: flag(n, "allow_dhcp_spoofing"),
                        allow_restricted_traffic: flag(n, "allow_restricted_traffic"),
                    });
                }
                if m.is_some() {
                    if let Some(a) = first_v4 {
                        let Some(mac) = plan::parse_mac(mac) else { continue };
                        hosts.entry(tag_name.to_string()).or_default().push(dnsmasq::Reservation {
                            mac,
                            ipv4: Some(a),
                            hostname: hostname.clone(),
                        });
                        if let Some(h) = &hostname {
                            names.entry(tag_name.to_string()).or_default().push((IpAddr::V4(a), h.clone()));
                        }
                    }
                }
            }
        }
        for t in tags.values() {
            if let Some(m) = managed(t) {
                rules.nat.push(nft::Nat { subnet: m.v4.trunc() });
                rules.guarded_bridges.push(t.bridge.clone());
            }
        }
        // The firewalls: each enabled instance's chains, reached by its addresses.
        let mut by_mac: BTreeMap<String, IpAddr> = BTreeMap::new();
        for r in reserved.values() {
            by_mac.extend(r.iter().map(|(m, a)| (m.clone(), *a)));
        }
        let instances: Vec<zonevisor_net::fw::Instance> =
            rows.iter().filter_map(|row| crate::fw::fw_instance(&row.vm, &by_mac)).collect();
        let stored = self.stored_rules().map_err(|e| e.to_string())?;
        let chains = zonevisor_net::fw::compile(&stored, &instances);
        for i in instances.iter().filter(|i| i.firewall_enabled) {
            let c = chains.get(&i.uuid).cloned().unwrap_or_default();
            rules.firewalls.push(nft::Firewall {
                instance: i.uuid,
                ipv4: i.ips.iter().filter_map(|a| if let IpAddr::V4(a) = *a { Some(a) } else { None }).collect(),
                ipv6: i.ips.iter().filter_map(|a| if let IpAddr::V6(a) = *a { Some(a) } else { None }).collect(),
                inbound: c.inbound,
                outbound: c.outbound,
            });
        }
        // Bridged traffic meets the firewall's connection tracking only
        // when its bridge hands it to the inet hooks.
        let firewalled = !rules.firewalls.is_empty();
        if let Ok(mut nl) = Netlink::open() {
            for l in nl.links().unwrap_or_default() {
                let ours = tags.values().any(|t| t.bridge == l.name) || l.name.starts_with("zvv");
                if ours && l.kind.as_deref() == Some("bridge") {
                    if let Err(e) = nl.set_bridge_nf_call(l.index, firewalled) {
                        tracing::warn!(bridge = l.name, error = %e, "the firewall cannot see this bridge's traffic");
                    }
                }
            }
        }
        let t = std::time::Instant::now();
        self.net.applier.lock().unwrap_or_else(|p| p.into_inner()).apply(&rules).map_err(|e| e.to_string())?;
        tracing::debug!(took = ?t.elapsed(), ports = rules.ports.len(), "nft applied");
        let t = std::time::Instant::now();
        let running = self.net.dnsmasq.lock().unwrap_or_else(|p| p.into_inner());
        for (name, d) in running.iter() {
            let empty = Vec::new();
            let h = hosts.get(name).unwrap_or(&empty);
            let nm = names.get(name).cloned().unwrap_or_default();
            if let Err(e) = d.update(h, &nm) {
                tracing::warn!(tag = name, error = %e, "updating the network's DHCP reservations");
            }
        }
        tracing::debug!(took = ?t.elapsed(), "dnsmasq updated");
        Ok(())
    }
}

/// A route's destination as SmartOS's `routes` keys give it: a CIDR or a
/// host address.
fn parse_dst(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Random bytes from the kernel.
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_names_fit_the_kernel() {
        assert_eq!(bridge_name("external"), "zvtexternal");
        let long = bridge_name("a_very_long_tag_name_indeed");
        assert!(long.len() <= 15 && long.starts_with("zvta_very"), "{long}");
        assert_ne!(bridge_name("a_very_long_tag_name_indeed"), bridge_name("a_very_long_tag_name_too"));
        let v = vlan_bridge_name("a_very_long_tag_name_indeed", 4095);
        assert!(v.len() <= 15 && v.starts_with(&vlan_bridge_prefix("a_very_long_tag_name_indeed")), "{v}");
    }

    #[test]
    fn tag_names() {
        assert!(tag_name_ok("external") && tag_name_ok("admin_2"));
        assert!(!tag_name_ok("") && !tag_name_ok("a/b") && !tag_name_ok(&"x".repeat(32)));
    }

    #[test]
    fn nics_without_a_tag_join_the_default_network() {
        let mut p = json!({"nics": [{"ips": ["dhcp"]}, {"nic_tag": "x"}], "add_nics": [{}]});
        fill_nic_defaults(&mut p);
        assert_eq!(p["nics"][0]["nic_tag"], DEFAULT_TAG);
        assert_eq!(p["nics"][1]["nic_tag"], "x");
        assert_eq!(p["add_nics"][0]["nic_tag"], DEFAULT_TAG);
    }
}
