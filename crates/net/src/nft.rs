//! The host's nftables ruleset: antispoof for every instance NIC, the
//! firewall of every instance that has one, and NAT for the networks
//! zonevisor manages. [`render`] is pure (what the daemon's state says,
//! as nft's own language); [`apply`] hands the text to libnftables (or `nft -f -`), which
//! replaces both of zonevisor's tables in one transaction: a change is
//! seen whole or not at all, and nothing else on the host is touched.
//!
//! ```text
//! table bridge zonevisor                 (every frame a NIC sends, stateless)
//!   forward, input ── iifname vmap @ports ──> port_<nic>: MAC, ARP, IPv4, IPv6
//!                                             sources, DHCP/RA servers, ethertypes
//! table inet zonevisor                   (bridged IP, through br_netfilter, and routed)
//!   input   ── from a managed network's bridge: DHCP, DNS, ICMP, replies; else drop
//!   postrouting (nat) ── a managed subnet leaving it ──> masquerade
//!   forward ── established ─> accept
//!           ├─ daddr vmap @fw_in4/6  ──> fw_in_<vm>:  its rules, then drop
//!           └─ saddr vmap @fw_out4/6 ──> fw_out_<vm>: its rules, then accept
//!   output  ── (the host to an instance) the same inbound maps
//! ```
//!
//! Inbound traffic is told apart by destination address and outbound by
//! source address: antispoof makes sure an instance sends only from its
//! own (unless `allow_ip_spoofing` says otherwise).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use ipnet::{Ipv4Net, Ipv6Net};
use uuid::Uuid;

/// What passes a firewall whatever its rules: IPv6 neighbour discovery
/// (IPv6's ARP) and the answers of DHCP servers, which conntrack cannot
/// pair with a broadcast request.
const ALWAYS: &str = "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept\n    udp sport 67 udp dport 68 accept\n    udp sport 547 udp dport 546 accept\n";

/// The table both families use.
pub const TABLE: &str = "zonevisor";

/// What one NIC (a bridge port) may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortFilter {
    /// The host side of the NIC (the bridge port).
    pub port: String,
    /// Its MAC address (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// The IPv4 sources it may use; `None`: any.
    pub ipv4: Option<Vec<Ipv4Net>>,
    /// The IPv6 sources it may use besides link-local ones; `None`: any.
    pub ipv6: Option<Vec<Ipv6Net>>,
    /// `allow_mac_spoofing`: any source MAC.
    pub allow_mac_spoofing: bool,
    /// `allow_dhcp_spoofing`: may answer as a DHCP server (and send
    /// router advertisements).
    pub allow_dhcp_spoofing: bool,
    /// `allow_restricted_traffic`: may send ethertypes other than IPv4,
    /// ARP and IPv6.
    pub allow_restricted_traffic: bool,
}

/// NAT for a managed network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nat {
    /// The network's subnet: its traffic to anywhere else is masqueraded.
    pub subnet: Ipv4Net,
}

/// One instance's firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firewall {
    /// The instance.
    pub instance: Uuid,
    /// Its addresses (inbound traffic is traffic to them).
    pub ipv4: Vec<Ipv4Addr>,
    /// Its IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// Statements for traffic to it, in order; then the default: drop.
    pub inbound: Vec<String>,
    /// Statements for traffic from it, in order; then the default: accept.
    pub outbound: Vec<String>,
}

/// Everything zonevisor puts in nftables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Every instance NIC's antispoof.
    pub ports: Vec<PortFilter>,
    /// The managed networks' NAT.
    pub nat: Vec<Nat>,
    /// The firewalls of the instances that have `firewall_enabled`.
    pub firewalls: Vec<Firewall>,
    /// The bridges of the networks zonevisor manages: from them, the host
    /// answers only DHCP, DNS, ICMP and what it started itself.
    pub guarded_bridges: Vec<String>,
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\'], ""))
}

fn chain_name(prefix: &str, name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{prefix}{clean}")
}

fn set<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", items.join(", "))
}

fn port_chain(out: &mut String, p: &PortFilter) {
    let name = chain_name("port_", &p.port);
    let _ = writeln!(out, "  chain {name} {{");
    let mut rule = |s: String| {
        let _ = writeln!(out, "    {s}");
    };
    if !p.allow_mac_spoofing {
        rule(format!("ether saddr != {} drop", p.mac));
        rule(format!("ether type arp arp saddr ether != {} drop", p.mac));
    }
    if !p.allow_restricted_traffic {
        rule("ether type != { ip, arp, ip6 } drop".into());
    }
    if !p.allow_dhcp_spoofing {
        rule("ether type ip udp sport 67 drop".into());
        rule("ether type ip6 udp sport 547 drop".into());
        rule("ether type ip6 icmpv6 type nd-router-advert drop".into());
    }
    if let Some(v4) = &p.ipv4 {
        // 0.0.0.0: DHCP's discover and ARP's probes.
        let allowed = std::iter::once("0.0.0.0".to_string()).chain(v4.iter().map(|n| n.to_string()));
        let allowed = set(allowed);
        rule(format!("ether type arp arp saddr ip != {allowed} drop"));
        rule(format!("ether type ip ip saddr != {allowed} drop"));
    }
    if let Some(v6) = &p.ipv6 {
        let allowed =
            ["::/128".to_string(), "fe80::/10".to_string()].into_iter().chain(v6.iter().map(|n| n.to_string()));
        rule(format!("ether type ip6 ip6 saddr != {} drop", set(allowed)));
    }
    let _ = writeln!(out, "  }}");
}

/// The ruleset as nft's language: a script that replaces zonevisor's two
/// tables (and only them) when given to `nft -f`.
pub fn render(r: &Ruleset) -> String {
    let mut out = String::new();
    for family in ["bridge", "inet"] {
        // Declaring first makes the delete succeed on a host without the table.
        let _ = writeln!(out, "table {family} {TABLE}\ndelete table {family} {TABLE}");
    }
    let _ = writeln!(out, "table bridge {TABLE} {{");
    if !r.ports.is_empty() {
        let elems = r.ports.iter().map(|p| format!("{} : jump {}", quote(&p.port), chain_name("port_", &p.port)));
        let _ = writeln!(out, "  map ports {{\n    type ifname : verdict\n    elements = {}\n  }}", set(elems));
        for p in &r.ports {
            port_chain(&mut out, p);
        }
        for hook in ["forward", "input"] {
            let _ = writeln!(
                out,
                "  chain {hook} {{\n    type filter hook {hook} priority -200; policy accept;\n    iifname vmap @ports\n  }}"
            );
        }
    }
    let _ = writeln!(out, "}}");

    let _ = writeln!(out, "table inet {TABLE} {{");
    if !r.guarded_bridges.is_empty() {
        let names = set(r.guarded_bridges.iter().map(|b| quote(b)));
        let _ = writeln!(
            out,
            "  chain input {{\n    type filter hook input priority filter; policy accept;\n    iifname {names} jump from_instances\n  }}\n  chain from_instances {{\n    ct state established,related accept\n    udp dport {{ 53, 67, 547 }} accept\n    tcp dport 53 accept\n    meta l4proto {{ icmp, ipv6-icmp }} accept\n    drop\n  }}"
        );
    }
    if !r.nat.is_empty() {
        let _ = writeln!(out, "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;");
        for n in &r.nat {
            let _ = writeln!(out, "    ip saddr {0} ip daddr != {0} masquerade", n.subnet.trunc());
        }
        let _ = writeln!(out, "  }}");
    }
    if !r.firewalls.is_empty() {
        let v4 = |f: &Firewall| f.ipv4.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let v6 = |f: &Firewall| f.ipv6.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let maps = [
            ("fw_in4", "ipv4_addr", "fw_in_", false),
            ("fw_in6", "ipv6_addr", "fw_in_", true),
            ("fw_out4", "ipv4_addr", "fw_out_", false),
            ("fw_out6", "ipv6_addr", "fw_out_", true),
        ];
        for (map, ty, prefix, six) in maps {
            let elems: Vec<String> = r
                .firewalls
                .iter()
                .flat_map(|f| {
                    let chain = chain_name(prefix, &f.instance.simple().to_string());
                    let addrs = if six { v6(f) } else { v4(f) };
                    addrs.into_iter().map(move |a| format!("{a} : jump {chain}"))
                })
                .collect();
            let _ = write!(out, "  map {map} {{\n    type {ty} : verdict\n");
            if !elems.is_empty() {
                let _ = writeln!(out, "    elements = {}", set(elems));
            }
            let _ = writeln!(out, "  }}");
        }
        for f in &r.firewalls {
            let id = f.instance.simple().to_string();
            let _ = writeln!(out, "  chain {} {{", chain_name("fw_in_", &id));
            for s in &f.inbound {
                let _ = writeln!(out, "    {s}");
            }
            let _ = writeln!(out, "    drop\n  }}");
            let _ = writeln!(out, "  chain {} {{", chain_name("fw_out_", &id));
            for s in &f.outbound {
                let _ = writeln!(out, "    {s}");
            }
            let _ = writeln!(out, "    accept\n  }}");
        }
        let _ = writeln!(
            out,
            "  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n{ALWAYS}    ip daddr vmap @fw_in4\n    ip6 daddr vmap @fw_in6\n    ip saddr vmap @fw_out4\n    ip6 saddr vmap @fw_out6\n  }}"
        );
        let _ = writeln!(
            out,
            "  chain output {{\n    type filter hook output priority filter; policy accept;\n    ct state established,related accept\n{ALWAYS}    ip daddr vmap @fw_in4\n    ip6 daddr vmap @fw_in6\n  }}"
        );
    }
    let _ = writeln!(out, "}}");
    out
}

/// libnftables' entry points, loaded once into the process: what `nft`
/// itself runs, without a program started per change.
#[derive(Clone, Copy)]
struct Lib {
    new: unsafe extern "C" fn(u32) -> *mut libc::c_void,
    free: unsafe extern "C" fn(*mut libc::c_void),
    buffer_output: unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int,
    buffer_error: unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int,
    run: unsafe extern "C" fn(*mut libc::c_void, *const libc::c_char) -> libc::c_int,
    error: unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char,
    output: unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char,
}

static LIB: std::sync::OnceLock<Option<Lib>> = std::sync::OnceLock::new();

impl Lib {
    /// `libnftables.so.1`, or `None` where it is not there.
    fn load() -> Option<Lib> {
        // SAFETY: dlopen/dlsym with C strings; each symbol is used with
        // the signature libnftables(3) gives it.
        unsafe {
            let h = libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if h.is_null() {
                return None;
            }
            let sym = |n: &std::ffi::CStr| {
                let p = libc::dlsym(h, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Lib {
                new: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(u32) -> *mut libc::c_void>(sym(
                    c"nft_ctx_new",
                )?),
                free: std::mem::transmute::<*mut libc::c_void, unsafe extern "C" fn(*mut libc::c_void)>(sym(
                    c"nft_ctx_free",
                )?),
                buffer_output: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int,
                >(sym(c"nft_ctx_buffer_output")?),
                buffer_error: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void) -> libc::c_int,
                >(sym(c"nft_ctx_buffer_error")?),
                run: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void, *const libc::c_char) -> libc::c_int,
                >(sym(c"nft_run_cmd_from_buffer")?),
                error: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char,
                >(sym(c"nft_ctx_get_error_buffer")?),
                output: std::mem::transmute::<
                    *mut libc::c_void,
                    unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char,
                >(sym(c"nft_ctx_get_output_buffer")?),
            })
        }
    }

    /// Runs `script` in the calling thread's network namespace, through
    /// the context kept for it (see [`CTX`]).
    fn run(&self, script: &str) -> io::Result<()> {
        let text = std::ffi::CString::new(script).map_err(|_| io::Error::other("a NUL in the ruleset"))?;
        let here = netns_id()?;
        let mut kept = CTX.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_ref().is_some_and(|c| c.netns != here) {
            if let Some(old) = kept.take() {
                // SAFETY: the context was made by `new` and is used no more.
                unsafe { (self.free)(old.ptr) };
            }
        }
        if kept.is_none() {
            // SAFETY: nft_ctx_new(0) returns a context or NULL; its socket is
            // opened in the calling thread's network namespace.
            let ptr = unsafe { (self.new)(0) };
            if ptr.is_null() {
                return Err(io::Error::other("libnftables: no context"));
            }
            // SAFETY: a live context.
            if unsafe { (self.buffer_output)(ptr) != 0 || (self.buffer_error)(ptr) != 0 } {
                // SAFETY: made above, not kept.
                unsafe { (self.free)(ptr) };
                return Err(io::Error::other("libnftables: no buffers"));
            }
            *kept = Some(Ctx { ptr, netns: here });
        }
        let ctx = kept.as_ref().map(|c| c.ptr).ok_or_else(|| io::Error::other("libnftables: no context"))?;
        // SAFETY: a live context, used under the lock. Reading a buffer
        // empties it, so a kept context holds nothing from the last command.
        unsafe {
            let ok = (self.run)(ctx, text.as_ptr()) == 0;
            (self.output)(ctx);
            let e = (self.error)(ctx);
            if ok {
                return Ok(());
            }
            let msg =
                if e.is_null() { String::new() } else { std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned() };
            Err(io::Error::other(format!("nft refused the ruleset: {}", msg.trim())))
        }
    }
}

/// A libnftables context and the network namespace its socket is in.
struct Ctx {
    ptr: *mut libc::c_void,
    netns: (u64, u64),
}

// SAFETY: a context is only used under `CTX`'s lock, by one thread at a time.
unsafe impl Send for Ctx {}

/// The context of the last namespace a ruleset went to, kept open: closing
/// a netfilter socket after a transaction makes the kernel wait out an RCU
/// grace period for the objects the transaction released (`NETLINK_URELEASE`
/// flushes nf_tables' destroy list), several milliseconds on every change.
/// One context only, so a namespace the process is done with is pinned by
/// its socket only until a ruleset goes to another one.
static CTX: std::sync::Mutex<Option<Ctx>> = std::sync::Mutex::new(None);

/// The calling thread's network namespace (device, inode).
fn netns_id() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/thread-self/ns/net")?;
    Ok((m.dev(), m.ino()))
}

/// Applies a script from [`render`] as one transaction, in the calling
/// thread's network namespace: through libnftables in this process when
/// it is there (a change then costs no program start), else with
/// `nft -f -`.
pub fn apply(script: &str) -> io::Result<()> {
    match LIB.get_or_init(Lib::load) {
        Some(lib) => lib.run(script),
        None => apply_with_program(script),
    }
}

/// [`apply`] with the `nft` program.
fn apply_with_program(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running nft: {e}")))?;
    let mut stdin = child.stdin.take().ok_or_else(|| io::Error::other("nft's stdin"))?;
    let written = stdin.write_all(script.as_bytes());
    drop(stdin);
    let out = child.wait_with_output()?;
    written?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("nft refused the ruleset: {}", err.trim())));
    }
    Ok(())
}

/// A map's or base chain's name and declaration.
type Named<'a> = (&'a String, &'a String);

/// One family's table as [`render`] writes it: its maps (declaration,
/// elements) and chains (a base chain's `type ... hook ...` line, rules).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Table {
    maps: BTreeMap<String, (String, Option<String>)>,
    chains: BTreeMap<String, (Option<String>, Vec<String>)>,
}

impl Table {
    /// What changes only with a full replacement: the maps' types and
    /// the base chains (whose hooks cost the kernel a grace period each
    /// time they are unregistered).
    fn skeleton(&self) -> (Vec<Named<'_>>, Vec<Named<'_>>) {
        let maps = self.maps.iter().map(|(n, (d, _))| (n, d)).collect();
        let bases = self.chains.iter().filter_map(|(n, (h, _))| h.as_ref().map(|h| (n, h))).collect();
        (maps, bases)
    }
}

/// Reads back the two tables of a [`render`] script.
fn parse(script: &str) -> BTreeMap<String, Table> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    let mut family = None;
    let mut lines = script.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("table ").and_then(|r| r.strip_suffix(" {")) {
            family = rest.split_whitespace().next().map(String::from);
            out.entry(family.clone().unwrap_or_default()).or_default();
            continue;
        }
        let Some(f) = family.clone() else { continue };
        let item = line.strip_prefix("  ").and_then(|l| l.strip_suffix(" {"));
        let Some(item) = item.filter(|l| !l.starts_with(' ')) else { continue };
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l == "  }" {
                break;
            }
            body.push(l.trim().to_string());
        }
        let table = out.entry(f).or_default();
        if let Some(name) = item.strip_prefix("map ") {
            let decl = body.first().cloned().unwrap_or_default();
            let elems = body.iter().find_map(|b| b.strip_prefix("elements = ").map(String::from));
            table.maps.insert(name.to_string(), (decl, elems));
        } else if let Some(name) = item.strip_prefix("chain ") {
            let (header, rules) = match body.first() {
                Some(h) if h.starts_with("type ") => (Some(h.clone()), body[1..].to_vec()),
                _ => (None, body),
            };
            table.chains.insert(name.to_string(), (header, rules));
        }
    }
    out
}

/// The commands that take the kernel from `old` to `new` without
/// touching their base chains, or `None` when those differ (then only a
/// full replacement will do).
fn delta(old: &BTreeMap<String, Table>, new: &BTreeMap<String, Table>) -> Option<String> {
    let mut out = String::new();
    let empty = Table::default();
    for family in ["bridge", "inet"] {
        let (o, n) = (old.get(family).unwrap_or(&empty), new.get(family).unwrap_or(&empty));
        if o.skeleton() != n.skeleton() {
            return None;
        }
        let t = format!("{family} {TABLE}");
        // References first: the maps' jumps and the base chains' rules.
        for m in n.maps.keys() {
            let _ = writeln!(out, "flush map {t} {m}");
        }
        for (c, (h, _)) in &n.chains {
            if h.is_some() {
                let _ = writeln!(out, "flush chain {t} {c}");
            }
        }
        for (c, (h, rules)) in &o.chains {
            if h.is_none() && !n.chains.contains_key(c) {
                let _ = writeln!(out, "delete chain {t} {c}");
            } else if h.is_none() && n.chains.get(c).map(|(_, r)| r) != Some(rules) {
                let _ = writeln!(out, "flush chain {t} {c}");
            }
        }
        for (c, (h, rules)) in &n.chains {
            let changed = o.chains.get(c).map(|(_, r)| r) != Some(rules);
            if h.is_none() && !changed {
                continue;
            }
            if h.is_none() && !o.chains.contains_key(c) {
                let _ = writeln!(out, "add chain {t} {c}");
            }
            for r in rules {
                let _ = writeln!(out, "add rule {t} {c} {r}");
            }
        }
        for (m, (_, elems)) in &n.maps {
            if let Some(e) = elems {
                let _ = writeln!(out, "add element {t} {m} {e}");
            }
        }
    }
    Some(out)
}

/// Applies rulesets one after another, each as one transaction: the
/// first in full, then only what changed (chains added, changed or gone,
/// the maps' elements, the base chains' rules), so that the kernel keeps
/// its hooks and a change costs what it changes. A change that adds or
/// removes a base chain or a map replaces both tables again.
#[derive(Debug, Default)]
pub struct Applier {
    applied: Option<BTreeMap<String, Table>>,
}

impl Applier {
    /// Makes the kernel hold `r`.
    pub fn apply(&mut self, r: &Ruleset) -> io::Result<()> {
        let script = render(r);
        let new = parse(&script);
        if let Some(d) = self.applied.as_ref().and_then(|old| delta(old, &new)) {
            if d.is_empty() {
                return Ok(());
            }
            match apply(&d) {
                Ok(()) => {
                    self.applied = Some(new);
                    return Ok(());
                }
                // Someone else changed our tables: start again from the whole.
                Err(_) => self.applied = None,
            }
        }
        self.applied = None;
        apply(&script)?;
        self.applied = Some(new);
        Ok(())
    }
}

/// Removes zonevisor's tables (nothing else).
pub fn clear() -> io::Result<()> {
    apply(&render_clear())
}

fn render_clear() -> String {
    let mut out = String::new();
    for family in ["bridge", "inet"] {
        let _ = writeln!(out, "table {family} {TABLE}\ndelete table {family} {TABLE}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> PortFilter {
        PortFilter {
            port: "zv0123456789a0".into(),
            mac: "02:08:20:aa:bb:01".into(),
            ipv4: Some(vec!["10.1.2.3/32".parse().unwrap()]),
            ipv6: Some(vec!["fd00::5/128".parse().unwrap()]),
            allow_mac_spoofing: false,
            allow_dhcp_spoofing: false,
            allow_restricted_traffic: false,
        }
    }

    #[test]
    fn an_empty_ruleset_only_replaces_our_tables() {
        let text = render(&Ruleset::default());
        assert_eq!(
            text,
            "table bridge zonevisor\ndelete table bridge zonevisor\ntable inet zonevisor\ndelete table inet zonevisor\n\
             table bridge zonevisor {\n}\ntable inet zonevisor {\n}\n"
        );
    }

    #[test]
    fn a_port_may_send_only_as_itself() {
        let text = render(&Ruleset { ports: vec![port()], ..Default::default() });
        assert!(text.contains("elements = { \"zv0123456789a0\" : jump port_zv0123456789a0 }"), "{text}");
        for line in [
            "ether saddr != 02:08:20:aa:bb:01 drop",
            "ether type arp arp saddr ether != 02:08:20:aa:bb:01 drop",
            "ether type != { ip, arp, ip6 } drop",
            "ether type ip udp sport 67 drop",
            "ether type ip6 icmpv6 type nd-router-advert drop",
            "ether type arp arp saddr ip != { 0.0.0.0, 10.1.2.3/32 } drop",
            "ether type ip ip saddr != { 0.0.0.0, 10.1.2.3/32 } drop",
            "ether type ip6 ip6 saddr != { ::/128, fe80::/10, fd00::5/128 } drop",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn each_allow_flag_lifts_exactly_its_protection() {
        let mut p = port();
        p.allow_mac_spoofing = true;
        let t = render(&Ruleset { ports: vec![p], ..Default::default() });
        assert!(!t.contains("ether saddr !="), "{t}");
        assert!(t.contains("ip saddr != {"), "{t}");
        let mut p = port();
        p.ipv4 = None;
        p.ipv6 = None;
        let t = render(&Ruleset { ports: vec![p], ..Default::default() });
        assert!(!t.contains("ip saddr") && !t.contains("ip6 saddr"), "{t}");
        assert!(t.contains("ether saddr !="), "{t}");
        let mut p = port();
        p.allow_dhcp_spoofing = true;
        let t = render(&Ruleset { ports: vec![p], ..Default::default() });
        assert!(!t.contains("sport 67") && !t.contains("nd-router-advert"), "{t}");
        let mut p = port();
        p.allow_restricted_traffic = true;
        let t = render(&Ruleset { ports: vec![p], ..Default::default() });
        assert!(!t.contains("ether type != {"), "{t}");
    }

    #[test]
    fn nat_and_firewalls() {
        let id: Uuid = "6a9f1ff0-0d2a-4b0e-9d4a-54d1c5a0c001".parse().unwrap();
        let r = Ruleset {
            ports: vec![],
            guarded_bridges: vec!["zvbr0".into()],
            nat: vec![Nat { subnet: "10.65.3.1/24".parse().unwrap() }],
            firewalls: vec![Firewall {
                instance: id,
                ipv4: vec!["10.65.3.7".parse().unwrap()],
                ipv6: vec![],
                inbound: vec!["tcp dport 22 accept".into()],
                outbound: vec![],
            }],
        };
        let t = render(&r);
        assert!(t.contains("ip saddr 10.65.3.0/24 ip daddr != 10.65.3.0/24 masquerade"), "{t}");
        assert!(t.contains("iifname { \"zvbr0\" } jump from_instances"), "{t}");
        assert!(t.contains("udp dport { 53, 67, 547 } accept\n    tcp dport 53 accept"), "{t}");
        assert!(t.contains("elements = { 10.65.3.7 : jump fw_in_6a9f1ff00d2a4b0e9d4a54d1c5a0c001 }"), "{t}");
        assert!(
            t.contains("chain fw_in_6a9f1ff00d2a4b0e9d4a54d1c5a0c001 {\n    tcp dport 22 accept\n    drop\n  }"),
            "{t}"
        );
        assert!(t.contains("chain fw_out_6a9f1ff00d2a4b0e9d4a54d1c5a0c001 {\n    accept\n  }"), "{t}");
        // An empty map is declared without elements (nft refuses `elements = { }`).
        assert!(t.contains("map fw_in6 {\n    type ipv6_addr : verdict\n  }"), "{t}");
    }

    #[test]
    fn a_change_touches_only_what_changed() {
        let mut two =
            Ruleset { ports: vec![port(), PortFilter { port: "zv99".into(), ..port() }], ..Default::default() };
        let old = parse(&render(&two));
        assert_eq!(old["bridge"].chains.len(), 4, "{old:?}");
        two.ports[1].allow_mac_spoofing = true;
        let d = delta(&old, &parse(&render(&two))).expect("same skeleton");
        assert!(d.contains("flush map bridge zonevisor ports"), "{d}");
        assert!(d.contains("flush chain bridge zonevisor port_zv99"), "{d}");
        assert!(!d.contains("port_zv0123456789a0 ether"), "an unchanged chain is left alone:\n{d}");
        assert!(d.contains("add rule bridge zonevisor forward iifname vmap @ports"), "{d}");
        // A port gone: its chain goes, after the references to it.
        let one = Ruleset { ports: vec![port()], ..Default::default() };
        let d = delta(&parse(&render(&two)), &parse(&render(&one))).unwrap();
        let (flush, del) = (d.find("flush map").unwrap(), d.find("delete chain bridge zonevisor port_zv99").unwrap());
        assert!(flush < del, "{d}");
        // No port left: the base chains go, so only a full replacement will do.
        assert_eq!(delta(&parse(&render(&one)), &parse(&render(&Ruleset::default()))), None);
    }

    /// nft itself accepts what render writes, in a network namespace of
    /// the test's own.
    #[test]
    fn nft_accepts_the_ruleset() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(std::env::var_os("CI").is_none(), "CI runs as root");
            eprintln!("skipped: nft_accepts_the_ruleset needs root");
            return;
        }
        let id: Uuid = "6a9f1ff0-0d2a-4b0e-9d4a-54d1c5a0c001".parse().unwrap();
        let r = Ruleset {
            ports: vec![port(), PortFilter { port: "zv99".into(), ipv4: None, ipv6: None, ..port() }],
            nat: vec![Nat { subnet: "10.65.3.1/24".parse().unwrap() }],
            guarded_bridges: vec!["zvbr0".into()],
            firewalls: vec![Firewall {
                instance: id,
                ipv4: vec!["10.65.3.7".parse().unwrap()],
                ipv6: vec!["fd00::7".parse().unwrap()],
                inbound: vec!["ip saddr { 10.0.0.1 } tcp dport { 22, 80-90 } accept".into()],
                outbound: vec!["ip daddr 10.0.0.2 drop".into()],
            }],
        };
        let script = render(&r);
        let res = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            apply(&script)?;
            // A second apply replaces the tables in place.
            apply(&script)?;
            // Changes by difference: a port's flag, then a port gone, then back.
            let mut applier = Applier::default();
            applier.apply(&r)?;
            let mut changed = r.clone();
            changed.ports[1].allow_mac_spoofing = true;
            applier.apply(&changed)?;
            changed.ports.truncate(1);
            changed.firewalls[0].inbound.clear();
            applier.apply(&changed)?;
            applier.apply(&r)?;
            let listed = Command::new("nft").args(["list", "ruleset"]).output()?;
            clear()?;
            let after = Command::new("nft").args(["list", "ruleset"]).output()?;
            Ok::<_, io::Error>((String::from_utf8_lossy(&listed.stdout).into_owned(), after.stdout))
        })
        .join()
        .expect("the thread ran");
        let (listed, after) = res.expect("nft applies the ruleset");
        assert!(listed.contains("port_zv0123456789a0"), "{listed}");
        assert!(listed.contains("masquerade"), "{listed}");
        assert!(after.is_empty(), "clear leaves nothing: {}", String::from_utf8_lossy(&after));
    }
}
