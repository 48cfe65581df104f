//! dnsmasq's files for one network, rendered from the network's
//! configuration (pure). Every value is checked before it is written:
//! a bridge, domain, host name or path that dnsmasq would read as
//! something else (a comma, a keyword, a lease time) is refused.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::{Error, NetworkConfig, Reservation};

/// The lease time of the DHCPv4 range; reserved hosts get `infinite`.
const RANGE_LEASE: &str = "1h";

/// The files of a network's dnsmasq, all in its state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Paths {
    pub(super) dir: PathBuf,
    pub(super) conf: PathBuf,
    pub(super) hosts: PathBuf,
    pub(super) names: PathBuf,
    pub(super) leases: PathBuf,
    pub(super) pid: PathBuf,
    pub(super) log: PathBuf,
}

impl Paths {
    pub(super) fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            conf: dir.join("dnsmasq.conf"),
            hosts: dir.join("dhcp-hosts"),
            names: dir.join("names"),
            leases: dir.join("leases"),
            pid: dir.join("dnsmasq.pid"),
            log: dir.join("dnsmasq.log"),
        }
    }
}

/// dnsmasq's configuration file for `cfg`: DNS and DHCP on the bridge only,
/// DHCPv4 for reserved MACs only, router advertisements and stateless
/// DHCPv6 for the ULA prefix, state in `cfg.dir`. Refuses a value dnsmasq
/// would misread.
pub fn render(cfg: &NetworkConfig) -> Result<String, Error> {
    check(cfg)?;
    let p = Paths::new(&cfg.dir);
    let path = |p: &Path| p.display().to_string();
    let mut s = String::new();
    let mut line = |l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    line(&format!("# dnsmasq for the zonevisor network {}: written by zonevisor, do not edit.", cfg.name));
    line("# dnsmasq runs with --conf-file=<this file>: no other configuration is read.");
    line("");
    line("# The bridge only.");
    line(&format!("interface={}", cfg.bridge));
    line("except-interface=lo");
    line("bind-dynamic");
    line("");
    line("# DNS: the instances' names, the rest forwarded.");
    line("no-hosts");
    line(&format!("addn-hosts={}", path(&p.names)));
    line("domain-needed");
    line("bogus-priv");
    if let Some(domain) = &cfg.domain {
        line(&format!("domain={domain}"));
        line(&format!("local=/{domain}/"));
        line("expand-hosts");
    }
    if !cfg.upstream.is_empty() {
        line("no-resolv");
        for server in &cfg.upstream {
            line(&format!("server={server}"));
        }
    }
    if let Some(v4) = cfg.ipv4 {
        line("");
        line("# DHCPv4: reserved hosts only.");
        line(&format!("dhcp-range={},static,{},{RANGE_LEASE}", v4.network(), v4.netmask()));
        line(&format!("dhcp-option=option:router,{}", v4.addr()));
        line(&format!("dhcp-option=option:dns-server,{}", v4.addr()));
        line(&format!("dhcp-hostsfile={}", path(&p.hosts)));
        line("dhcp-authoritative");
        line("dhcp-rapid-commit");
    }
    if let Some(v6) = cfg.ipv6 {
        line("");
        line("# IPv6: router advertisements (SLAAC) and stateless DHCPv6.");
        line(&format!("dhcp-range={},ra-stateless,{}", v6.network(), v6.prefix_len()));
        line("enable-ra");
        line("quiet-ra");
        line(&format!("dhcp-option=option6:dns-server,[{}]", v6.addr()));
    }
    line("");
    line("# State.");
    line(&format!("dhcp-leasefile={}", path(&p.leases)));
    line(&format!("pid-file={}", path(&p.pid)));
    line(&format!("log-facility={}", path(&p.log)));
    Ok(s)
}

/// dnsmasq's `dhcp-hostsfile`: one line per reservation,
/// `<mac>[,<ipv4>][,<hostname>],infinite`. Refuses a host name dnsmasq
/// would misread, and a MAC or address reserved twice.
pub fn render_hosts(reservations: &[Reservation]) -> Result<String, Error> {
    let mut macs = HashSet::new();
    let mut addrs = HashSet::new();
    let mut s = String::new();
    for r in reservations {
        let mac = format_mac(&r.mac);
        if !macs.insert(r.mac) {
            return Err(Error::invalid("MAC address", &mac, "reserved twice"));
        }
        if r.mac[0] & 1 != 0 {
            return Err(Error::invalid("MAC address", &mac, "is a multicast address"));
        }
        s.push_str(&mac);
        if let Some(ip) = r.ipv4 {
            if !addrs.insert(ip) {
                return Err(Error::invalid("reserved address", ip, "reserved twice"));
            }
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
                return Err(Error::invalid("reserved address", ip, "is not a host address"));
            }
            let _ = write!(s, ",{ip}");
        }
        if let Some(name) = &r.hostname {
            check_dhcp_hostname(name)?;
            let _ = write!(s, ",{name}");
        }
        s.push_str(",infinite\n");
    }
    Ok(s)
}

/// dnsmasq's `addn-hosts` file: `<address> <name>` lines, in the order
/// given. Refuses a name that is not a DNS name.
pub fn render_names(names: &[(IpAddr, String)]) -> Result<String, Error> {
    let mut s = String::new();
    for (ip, name) in names {
        if !is_dns_name(name) {
            return Err(Error::invalid("host name", name, "not a DNS name (letters, digits, '-' and '.')"));
        }
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(Error::invalid("address of host name", ip, "is not a host address"));
        }
        let _ = writeln!(s, "{ip} {name}");
    }
    Ok(s)
}

/// Checks the reservations against the network: each address inside its
/// IPv4 prefix and neither the host's nor the prefix's first or last.
pub(super) fn check_reservations(cfg: &NetworkConfig, reservations: &[Reservation]) -> Result<(), Error> {
    for ip in reservations.iter().filter_map(|r| r.ipv4) {
        let Some(net) = cfg.ipv4 else {
            return Err(Error::invalid("reserved address", ip, format!("network {} has no IPv4 prefix", cfg.name)));
        };
        if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() {
            return Err(Error::invalid("reserved address", ip, format!("not a host address of {}", net.trunc())));
        }
        if ip == net.addr() {
            return Err(Error::invalid("reserved address", ip, "is the host's own address on the bridge"));
        }
    }
    Ok(())
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(":")
}

/// Whether `name` is a DNS host name: dot-separated labels of letters,
/// digits and inner hyphens, each 1 to 63 bytes, 253 in all.
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_label)
}

fn is_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// A reservation's host name: one label that dnsmasq's `dhcp-host` parser
/// reads as a name, not as a keyword (`infinite`, `ignore`, `deprecated`)
/// or a lease time (digits with an optional unit: `3600`, `45m`, `2d`).
fn check_dhcp_hostname(name: &str) -> Result<(), Error> {
    if !is_label(name) {
        return Err(Error::invalid("host name", name, "not one DNS label (letters, digits and inner '-')"));
    }
    let lower = name.to_ascii_lowercase();
    let unit = lower.len() > 1 && lower.ends_with(['w', 'd', 'h', 'm', 's']);
    let number = if unit { &lower[..lower.len() - 1] } else { &lower[..] };
    if ["infinite", "ignore", "deprecated"].contains(&lower.as_str()) || number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid("host name", name, "dnsmasq would read it as a keyword or a lease time"));
    }
    Ok(())
}

/// Every value of `cfg` that goes into the conf.
fn check(cfg: &NetworkConfig) -> Result<(), Error> {
    if cfg.name.is_empty() || cfg.name.len() > 64 || cfg.name.chars().any(char::is_control) {
        return Err(Error::invalid("network name", &cfg.name, "1 to 64 characters, no control characters"));
    }
    let b = &cfg.bridge;
    if b.is_empty()
        || b.len() > 15
        || b == "."
        || b == ".."
        || !b.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
    {
        return Err(Error::invalid("bridge name", b, "1 to 15 letters, digits, '.', '_' or '-'"));
    }
    if cfg.ipv4.is_none() && cfg.ipv6.is_none() {
        return Err(Error::invalid("network", &cfg.name, "has neither an IPv4 nor an IPv6 address to serve"));
    }
    if let Some(v4) = cfg.ipv4 {
        let a = v4.addr();
        if v4.prefix_len() > 30 || a == v4.network() || a == v4.broadcast() {
            return Err(Error::invalid("host address", v4, "needs a prefix of /30 or wider and a host address in it"));
        }
        if a.is_loopback() || a.is_multicast() || a.is_unspecified() || a.is_link_local() {
            return Err(Error::invalid("host address", v4, "is not a usable unicast address"));
        }
    }
    if let Some(v6) = cfg.ipv6 {
        let a = v6.addr();
        if v6.prefix_len() != 64 {
            return Err(Error::invalid("host IPv6 address", v6, "SLAAC needs a /64"));
        }
        if a == v6.network() || a.is_multicast() || a.is_loopback() || a.is_unicast_link_local() {
            return Err(Error::invalid("host IPv6 address", v6, "is not a usable unicast address in its prefix"));
        }
    }
    if let Some(d) = &cfg.domain {
        if !is_dns_name(d) {
            return Err(Error::invalid("domain", d, "not a DNS name (letters, digits, '-' and '.')"));
        }
    }
    let own: Vec<IpAddr> =
        cfg.ipv4.map(|n| n.addr().into()).into_iter().chain(cfg.ipv6.map(|n| n.addr().into())).collect();
    for server in &cfg.upstream {
        let link_local = matches!(server, IpAddr::V6(a) if a.is_unicast_link_local());
        if server.is_unspecified() || server.is_multicast() || link_local || server == &IpAddr::V4(Ipv4Addr::BROADCAST)
        {
            return Err(Error::invalid("upstream DNS server", server, "not a unicast address dnsmasq can reach"));
        }
        if own.contains(server) {
            return Err(Error::invalid("upstream DNS server", server, "is this network's own DNS server (a loop)"));
        }
    }
    let dir = cfg.dir.to_str().unwrap_or("");
    if !cfg.dir.is_absolute() || !dir.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._+@-".contains(&c)) {
        return Err(Error::invalid(
            "state directory",
            cfg.dir.display(),
            "an absolute path of letters, digits, '/', '.', '_', '+', '@' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NetworkConfig {
        NetworkConfig {
            name: "default".into(),
            bridge: "zvbr0".into(),
            ipv4: Some("10.43.17.1/24".parse().unwrap()),
            ipv6: Some("fd5a:2b3c:4d5e:1::1/64".parse().unwrap()),
            domain: Some("zv.internal".into()),
            upstream: vec!["192.0.2.53".parse().unwrap(), "2001:db8::53".parse().unwrap()],
            dir: "/run/zonevisor/net/default".into(),
        }
    }

    #[test]
    fn renders_the_full_configuration() {
        let want = "\
# dnsmasq for the zonevisor network default: written by zonevisor, do not edit.
# dnsmasq runs with --conf-file=<this file>: no other configuration is read.

# The bridge only.
interface=zvbr0
except-interface=lo
bind-dynamic

# DNS: the instances' names, the rest forwarded.
no-hosts
addn-hosts=/run/zonevisor/net/default/names
domain-needed
bogus-priv
domain=zv.internal
local=/zv.internal/
expand-hosts
no-resolv
server=192.0.2.53
server=2001:db8::53

# DHCPv4: reserved hosts only.
dhcp-range=10.43.17.0,static,255.255.255.0,1h
dhcp-option=option:router,10.43.17.1
dhcp-option=option:dns-server,10.43.17.1
dhcp-hostsfile=/run/zonevisor/net/default/dhcp-hosts
dhcp-authoritative
dhcp-rapid-commit

# IPv6: router advertisements (SLAAC) and stateless DHCPv6.
dhcp-range=fd5a:2b3c:4d5e:1::,ra-stateless,64
enable-ra
quiet-ra
dhcp-option=option6:dns-server,[fd5a:2b3c:4d5e:1::1]

# State.
dhcp-leasefile=/run/zonevisor/net/default/leases
pid-file=/run/zonevisor/net/default/dnsmasq.pid
log-facility=/run/zonevisor/net/default/dnsmasq.log
";
        assert_eq!(render(&cfg()).unwrap(), want);
    }

    #[test]
    fn renders_ipv4_only_with_the_hosts_resolvers() {
        let c = NetworkConfig {
            ipv4: Some("192.168.7.254/23".parse().unwrap()),
            ipv6: None,
            domain: None,
            upstream: vec![],
            ..cfg()
        };
        let want = "\
# dnsmasq for the zonevisor network default: written by zonevisor, do not edit.
# dnsmasq runs with --conf-file=<this file>: no other configuration is read.

# The bridge only.
interface=zvbr0
except-interface=lo
bind-dynamic

# DNS: the instances' names, the rest forwarded.
no-hosts
addn-hosts=/run/zonevisor/net/default/names
domain-needed
bogus-priv

# DHCPv4: reserved hosts only.
dhcp-range=192.168.6.0,static,255.255.254.0,1h
dhcp-option=option:router,192.168.7.254
dhcp-option=option:dns-server,192.168.7.254
dhcp-hostsfile=/run/zonevisor/net/default/dhcp-hosts
dhcp-authoritative
dhcp-rapid-commit

# State.
dhcp-leasefile=/run/zonevisor/net/default/leases
pid-file=/run/zonevisor/net/default/dnsmasq.pid
log-facility=/run/zonevisor/net/default/dnsmasq.log
";
        assert_eq!(render(&c).unwrap(), want);
        let v6 = render(&NetworkConfig { ipv4: None, ..cfg() }).unwrap();
        assert!(!v6.contains("dhcp-hostsfile") && !v6.contains("dhcp-authoritative") && v6.contains("enable-ra"));
    }

    #[test]
    fn refuses_what_dnsmasq_would_misread() {
        let bad: Vec<(&str, NetworkConfig)> = vec![
            ("bridge name", NetworkConfig { bridge: "br0,lo".into(), ..cfg() }),
            ("bridge name", NetworkConfig { bridge: "br0\nuser=root".into(), ..cfg() }),
            ("bridge name", NetworkConfig { bridge: "a-very-long-bridge".into(), ..cfg() }),
            ("bridge name", NetworkConfig { bridge: "".into(), ..cfg() }),
            ("network name", NetworkConfig { name: "x\nconf-dir=/etc".into(), ..cfg() }),
            ("domain", NetworkConfig { domain: Some("zv internal".into()), ..cfg() }),
            ("domain", NetworkConfig { domain: Some("zv.internal/#".into()), ..cfg() }),
            ("domain", NetworkConfig { domain: Some("-zv.internal".into()), ..cfg() }),
            ("state directory", NetworkConfig { dir: "relative/dir".into(), ..cfg() }),
            ("state directory", NetworkConfig { dir: "/run/a dir".into(), ..cfg() }),
            ("state directory", NetworkConfig { dir: "/run/a,b".into(), ..cfg() }),
            ("host address", NetworkConfig { ipv4: Some("10.43.17.0/24".parse().unwrap()), ..cfg() }),
            ("host address", NetworkConfig { ipv4: Some("10.43.17.255/24".parse().unwrap()), ..cfg() }),
            ("host address", NetworkConfig { ipv4: Some("10.43.17.1/31".parse().unwrap()), ..cfg() }),
            ("host IPv6 address", NetworkConfig { ipv6: Some("fd00::1/48".parse().unwrap()), ..cfg() }),
            ("host IPv6 address", NetworkConfig { ipv6: Some("fe80::1/64".parse().unwrap()), ..cfg() }),
            ("network", NetworkConfig { ipv4: None, ipv6: None, ..cfg() }),
            ("upstream DNS server", NetworkConfig { upstream: vec!["10.43.17.1".parse().unwrap()], ..cfg() }),
            ("upstream DNS server", NetworkConfig { upstream: vec!["0.0.0.0".parse().unwrap()], ..cfg() }),
            ("upstream DNS server", NetworkConfig { upstream: vec!["fe80::1".parse().unwrap()], ..cfg() }),
        ];
        for (what, c) in bad {
            match render(&c) {
                Err(Error::Invalid { what: w, .. }) => assert_eq!(w, what, "{c:?}"),
                other => panic!("{c:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn renders_reservations_with_infinite_leases() {
        let r = [
            Reservation {
                mac: [0x02, 0, 0, 0xab, 0xcd, 0xef],
                ipv4: Some("10.43.17.5".parse().unwrap()),
                hostname: Some("web-1".into()),
            },
            Reservation { mac: [0x02, 0, 0, 0, 0, 1], ipv4: Some("10.43.17.6".parse().unwrap()), hostname: None },
            Reservation { mac: [0x90, 0xb8, 0xd0, 0, 0, 2], ipv4: None, hostname: Some("db".into()) },
        ];
        assert_eq!(
            render_hosts(&r).unwrap(),
            "02:00:00:ab:cd:ef,10.43.17.5,web-1,infinite\n02:00:00:00:00:01,10.43.17.6,infinite\n90:b8:d0:00:00:02,db,infinite\n"
        );
        assert_eq!(render_hosts(&[]).unwrap(), "");
    }

    #[test]
    fn refuses_reservations_dnsmasq_would_misread() {
        let one = |name: &str| Reservation { mac: [2, 0, 0, 0, 0, 1], ipv4: None, hostname: Some(name.into()) };
        for name in
            ["3600", "45m", "2D", "infinite", "IGNORE", "deprecated", "a,b", "a.b", "a:b", "", "-x", "x\ny", "tag:x"]
        {
            assert!(render_hosts(&[one(name)]).is_err(), "{name:?} accepted");
        }
        for name in ["m", "h1", "web", "db-2", "1x", "s3rv"] {
            assert!(render_hosts(&[one(name)]).is_ok(), "{name:?} refused");
        }
        let ip = Some("10.43.17.5".parse().unwrap());
        let twice_mac = [one("a"), one("b")];
        assert!(render_hosts(&twice_mac).is_err());
        let twice_ip = [
            Reservation { mac: [2, 0, 0, 0, 0, 1], ipv4: ip, hostname: None },
            Reservation { mac: [2, 0, 0, 0, 0, 2], ipv4: ip, hostname: None },
        ];
        assert!(render_hosts(&twice_ip).is_err());
        assert!(render_hosts(&[Reservation { mac: [1, 0, 0x5e, 0, 0, 1], ipv4: ip, hostname: None }]).is_err());
    }

    #[test]
    fn checks_reservations_against_the_network() {
        let r = |ip: &str| [Reservation { mac: [2, 0, 0, 0, 0, 1], ipv4: Some(ip.parse().unwrap()), hostname: None }];
        assert!(check_reservations(&cfg(), &r("10.43.17.2")).is_ok());
        for ip in ["10.43.17.1", "10.43.17.0", "10.43.17.255", "10.43.18.2"] {
            assert!(check_reservations(&cfg(), &r(ip)).is_err(), "{ip}");
        }
        assert!(check_reservations(&NetworkConfig { ipv4: None, ..cfg() }, &r("10.43.17.2")).is_err());
    }

    #[test]
    fn renders_names() {
        let names = [
            ("10.43.17.5".parse().unwrap(), "web".to_string()),
            ("fd5a:2b3c:4d5e:1::5".parse().unwrap(), "web".to_string()),
            ("10.43.17.6".parse().unwrap(), "db.zv.internal".to_string()),
        ];
        assert_eq!(
            render_names(&names).unwrap(),
            "10.43.17.5 web\nfd5a:2b3c:4d5e:1::5 web\n10.43.17.6 db.zv.internal\n"
        );
        for bad in ["a b", "a\n10.0.0.1 evil", "", "a..b", "x_y"] {
            assert!(render_names(&[("10.43.17.5".parse().unwrap(), bad.to_string())]).is_err(), "{bad:?}");
        }
        assert!(render_names(&[("0.0.0.0".parse().unwrap(), "a".into())]).is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("a") && is_dns_name("a-b.c1.example") && is_dns_name(&"a".repeat(63)));
        assert!(!is_dns_name(&"a".repeat(64)) && !is_dns_name("a.") && !is_dns_name(".a") && !is_dns_name("a-"));
        let long = ["abc"; 64].join(".");
        assert!(long.len() > 253 && !is_dns_name(&long));
    }
}
