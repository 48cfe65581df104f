//! Networking end to end: nic tags, zones' NICs on bridges, the default
//! network (DHCP, DNS, NAT), antispoof, bandwidth caps, teardown and
//! restarts. Every test's daemon lives in a network namespace of the
//! test's own (see `TestHost`); an "internet" is another namespace joined
//! to it by a veth pair, with a DNS server and a web server.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Runs `sh -c script` in the test daemon's network namespace (the host,
/// as the instances see it).
fn on_host(h: &TestHost, script: &str) -> Run {
    in_netns(&h.netns, script)
}

fn in_netns(ns: &str, script: &str) -> Run {
    let out = Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]).output().expect("ip netns exec");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` in a zone (through its shell).
fn zexec(h: &TestHost, uuid: &str, cmd: &str) -> Run {
    h.cli("zlogin", &[uuid, cmd], None)
}

/// A busybox zone with `nics`.
fn zone(h: &TestHost, img: &str, alias: &str, nics: Value) -> String {
    h.create_ok(&json!({
        "brand": "lx", "alias": alias, "hostname": alias, "image_uuid": img,
        "max_physical_memory": 128, "quota": 1, "nics": nics,
    }))
}

fn etherstub(h: &TestHost, name: &str) {
    h.cli("nictagadm", &["add", "-l", name], None).ok();
}

/// Whether `from` (a zone) gets an answer to one ping of `to` within 2 s.
fn pings(h: &TestHost, from: &str, to: &str) -> bool {
    zexec(h, from, &format!("ping -c 1 -W 2 {to}")).code == 0
}

/// The host side of a zone's NICs: every link of the test's namespace
/// whose name starts with `zv` and is not a bridge.
fn ports(h: &TestHost) -> Vec<String> {
    let r = on_host(h, "ip -o link show");
    r.ok()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with("zv") && !n.starts_with("zvt") && !n.starts_with("zvbr"))
        .collect()
}

fn ruleset(h: &TestHost) -> String {
    on_host(h, "nft list ruleset").ok().to_string()
}

#[test]
fn two_zones_on_a_tag_reach_each_other_and_vlans_keep_apart() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let a = zone(&h, &img, "a", json!([{"nic_tag": "ext", "ips": ["10.50.0.2/24"], "primary": true}]));
    let b = zone(&h, &img, "b", json!([{"nic_tag": "ext", "ips": ["10.50.0.3/24"], "primary": true}]));
    // lx zones name their NICs eth0, as SmartOS's lx brand does, with the MAC the payload shows.
    let vm = h.get(&a);
    assert_eq!(vm["nics"][0]["interface"], "eth0", "{vm}");
    let link = zexec(&h, &a, "ip -o link show eth0").ok().to_string();
    let mac = vm["nics"][0]["mac"].as_str().unwrap();
    assert!(link.contains(mac), "{mac} not on eth0: {link}");
    assert!(zexec(&h, &a, "ip -o addr show eth0").ok().contains("10.50.0.2/24"));
    assert!(pings(&h, &a, "10.50.0.3"), "a cannot reach b");
    assert!(pings(&h, &b, "10.50.0.2"), "b cannot reach a");

    // VLANs: on one tag and one subnet, only the same VLAN answers.
    let c = zone(&h, &img, "c", json!([{"nic_tag": "ext", "vlan_id": 10, "ips": ["10.60.0.2/24"]}]));
    let d = zone(&h, &img, "d", json!([{"nic_tag": "ext", "vlan_id": 10, "ips": ["10.60.0.3/24"]}]));
    let e = zone(&h, &img, "e", json!([{"nic_tag": "ext", "vlan_id": 20, "ips": ["10.60.0.4/24"]}]));
    assert!(pings(&h, &c, "10.60.0.3"), "VLAN 10 to VLAN 10");
    assert!(!pings(&h, &c, "10.60.0.4"), "VLAN 10 reached VLAN 20");
    assert!(!pings(&h, &e, "10.60.0.3"), "VLAN 20 reached VLAN 10");
    let _ = d;
}

/// The test's internet: a namespace joined to the daemon's by a veth
/// pair (the daemon's uplink, with its default route), holding a DNS
/// server that knows `www.example.test` and a web server there.
struct Internet {
    ns: String,
    servers: Vec<Child>,
    _dir: tempfile::TempDir,
}

const INET_HOST: &str = "203.0.113.1";
const INET_WWW: &str = "203.0.113.2";

impl Internet {
    fn new(h: &TestHost) -> Internet {
        let ns = format!("{}-i", h.netns);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "hello from the internet\n").unwrap();
        let setup = format!(
            "ip netns add {ns} && ip link add uplink0 netns {host} type veth peer name eth0 netns {ns} && \
             ip -n {host} addr add {INET_HOST}/24 dev uplink0 && ip -n {host} link set uplink0 up && \
             ip -n {host} route add default via {INET_WWW} && \
             ip -n {ns} addr add {INET_WWW}/24 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up",
            host = h.netns
        );
        let st = Command::new("sh").args(["-c", &setup]).status().unwrap();
        assert!(st.success(), "setting up the internet namespace");
        let dns = Command::new("ip")
            .args(["netns", "exec", &ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv"])
            .args(["--no-hosts", "--bind-interfaces", &format!("--listen-address={INET_WWW}")])
            .args([&format!("--address=/www.example.test/{INET_WWW}"), "--user=root", "--pid-file="])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq");
        let www = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p", &format!("{INET_WWW}:80"), "-h"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd");
        Internet { ns, servers: vec![dns, www], _dir: dir }
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A host whose daemon starts after its internet is there, with the
/// internet's DNS server as its default network's upstream.
fn host_with_internet() -> Option<(TestHost, Internet)> {
    TestHost::new()?; // Skips (with its reason) where this machine cannot run hosts.
    let mut h = TestHost::prepare("8G");
    let inet = Internet::new(&h);
    h.daemon_args = vec!["--dns-upstream".into(), INET_WWW.into()];
    h.start_daemon();
    Some((h, inet))
}

#[test]
fn the_default_network_gives_addresses_names_and_the_internet() {
    let Some((h, _inet)) = host_with_internet() else { return };
    let img = h.install(busybox());
    let tags = h.cli("nictagadm", &["list", "-j"], None).json();
    let default = tags.as_array().unwrap().iter().find(|t| t["name"] == "default").expect("a default tag").clone();
    assert_eq!(default["network"]["nat"], "uplink0", "{default}");
    let gw = default["network"]["ipv4"].as_str().unwrap().split('/').next().unwrap().to_string();

    // No nic_tag: the default network; dhcp: the address its DHCP reserved.
    let uuid = zone(&h, &img, "web", json!([{"ips": ["dhcp"], "primary": true}]));
    let vm = h.get(&uuid);
    assert_eq!(vm["nics"][0]["nic_tag"], "default", "{vm}");
    assert_eq!(vm["nics"][0]["ip"], "dhcp", "{vm}");
    let addrs = zexec(&h, &uuid, "ip -o -4 addr show eth0").ok().to_string();
    let ip = addrs.split_whitespace().nth(3).expect("an IPv4 address on eth0").split('/').next().unwrap().to_string();
    let lease = std::fs::read_dir(default["network"]["state_dir"].as_str().unwrap()).unwrap();
    let hosts: String =
        lease.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).filter(|t| t.contains(&ip)).collect();
    assert!(hosts.to_lowercase().contains(vm["nics"][0]["mac"].as_str().unwrap()), "{ip} is not reserved for the NIC");
    assert!(zexec(&h, &uuid, "ip route").ok().contains(&format!("default via {gw}")));

    // The outside, by name, through the network's DNS and NAT.
    let r = zexec(&h, &uuid, &format!("nslookup -type=a www.example.test {gw}"));
    assert!(r.ok().contains(INET_WWW), "{}", r.stdout);
    // Without `resolvers`, the zone's resolver is its network's DNS.
    assert!(zexec(&h, &uuid, "cat /etc/resolv.conf").ok().contains(&format!("nameserver {gw}")));
    let r = zexec(&h, &uuid, "wget -q -O - http://www.example.test/");
    assert_eq!(r.ok(), "hello from the internet\n");

    // A web server in the zone answers the host.
    zexec(&h, &uuid, "mkdir -p /www && echo served by a zone > /www/index.html && httpd -p 80 -h /www").ok();
    let r = on_host(&h, &format!("wget -q -O - http://{ip}/"));
    assert_eq!(r.ok(), "served by a zone\n");
}

#[test]
fn antispoof_drops_what_a_nic_may_not_send_until_its_flag_allows_it() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let a = zone(&h, &img, "a", json!([{"nic_tag": "ext", "ips": ["10.70.0.2/24"]}]));
    let b = zone(&h, &img, "b", json!([{"nic_tag": "ext", "ips": ["10.70.0.3/24"]}]));
    assert!(pings(&h, &a, "10.70.0.3"));
    // Another source address: dropped, then allowed by allow_ip_spoofing.
    zexec(&h, &a, "ip addr add 10.70.0.99/24 dev eth0").ok();
    let spoofed = |h: &TestHost| zexec(h, &a, "ping -c 1 -W 2 -I 10.70.0.99 10.70.0.3").code == 0;
    assert!(!spoofed(&h), "a spoofed source address got through");
    let mac_a = h.get(&a)["nics"][0]["mac"].as_str().unwrap().to_string();
    let upd = |flags: Value| {
        let mut nic = flags;
        nic["mac"] = json!(mac_a);
        let r = h.cli("vmadm", &["update", &a], Some(&json!({"update_nics": [nic]}).to_string()));
        r.ok();
    };
    upd(json!({"allow_ip_spoofing": true}));
    assert!(spoofed(&h), "allow_ip_spoofing did not lift the source check");
    upd(json!({"allow_ip_spoofing": false}));
    assert!(!spoofed(&h), "antispoof did not come back");
    zexec(&h, &a, "ip addr del 10.70.0.99/24 dev eth0").ok();
    // Another source MAC: dropped, then allowed by allow_mac_spoofing.
    zexec(&h, &a, "ip link set eth0 address 02:00:00:00:99:99").ok();
    zexec(&h, &b, "ip neigh flush all").ok();
    assert!(!pings(&h, &a, "10.70.0.3"), "a spoofed MAC got through");
    upd(json!({"allow_mac_spoofing": true}));
    assert!(pings(&h, &a, "10.70.0.3"), "allow_mac_spoofing did not lift the MAC check");
    let rules = ruleset(&h);
    assert!(rules.contains("table bridge zonevisor"), "{rules}");
}

#[test]
fn a_rogue_dhcp_server_in_a_zone_is_silenced() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let rogue = zone(&h, &img, "rogue", json!([{"nic_tag": "ext", "ips": ["10.80.0.1/24"]}]));
    let victim = zone(&h, &img, "victim", json!([{"nic_tag": "ext", "ips": ["10.80.0.9/24"]}]));
    let conf = "start 10.80.0.100\\nend 10.80.0.110\\ninterface eth0\\nlease_file /tmp/leases\\n";
    zexec(&h, &rogue, &format!("printf '{conf}' > /tmp/udhcpd.conf && touch /tmp/leases && udhcpd /tmp/udhcpd.conf"))
        .ok();
    let ask = |h: &TestHost| zexec(h, &victim, "udhcpc -i eth0 -n -q -t 3 -T 1 -s /bin/true 2>&1");
    let r = ask(&h);
    assert_ne!(r.code, 0, "the victim got a lease from the rogue: {}", r.stdout);
    let mac = h.get(&rogue)["nics"][0]["mac"].as_str().unwrap().to_string();
    let body = json!({"update_nics": [{"mac": mac, "allow_dhcp_spoofing": true}]}).to_string();
    h.cli("vmadm", &["update", &rogue], Some(&body)).ok();
    let r = ask(&h);
    assert_eq!(r.code, 0, "allow_dhcp_spoofing: the server should be heard: {}", r.stdout);
}

/// Bytes per second a zone sends to the host over TCP for about 2 s.
fn send_rate(h: &TestHost, uuid: &str, host_ip: &str) -> f64 {
    let port = 5001;
    let listener = {
        let ns = std::fs::File::open(format!("/run/netns/{}", h.netns)).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind(("0.0.0.0", port)).unwrap()
        })
        .join()
        .unwrap()
    };
    let counter = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        let mut started: Option<Instant> = None;
        // Two seconds from the first byte (the connection's set-up is not
        // throughput); then the connection is dropped, which ends the sender.
        while started.is_none_or(|t| t.elapsed() < Duration::from_secs(2)) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    started.get_or_insert_with(Instant::now);
                    total += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => break,
            }
        }
        total as f64 / started.map_or(1.0, |t| t.elapsed().as_secs_f64())
    });
    let _ = zexec(h, uuid, &format!("timeout 6 sh -c 'cat /dev/zero | nc {host_ip} {port}'"));
    counter.join().unwrap()
}

#[test]
fn bandwidth_caps_hold_within_ten_percent_and_change_live() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    on_host(&h, "ip addr add 10.90.0.1/24 dev zvtext").ok();
    let uuid = zone(
        &h,
        &img,
        "capped",
        json!([{"nic_tag": "ext", "ips": ["10.90.0.2/24"], "max_egress_bandwidth": 20, "max_ingress_bandwidth": 20}]),
    );
    let vm = h.get(&uuid);
    assert_eq!(vm["nics"][0]["max_egress_bandwidth"], 20, "{vm}");
    let rate = send_rate(&h, &uuid, "10.90.0.1") * 8.0 / 1e6;
    assert!((18.0..=22.0).contains(&rate), "capped at 20 Mbit/s, measured {rate:.1}");
    let mac = vm["nics"][0]["mac"].as_str().unwrap().to_string();
    let body = json!({"update_nics": [{"mac": mac, "max_egress_bandwidth": 50}]}).to_string();
    h.cli("vmadm", &["update", &uuid], Some(&body)).ok();
    let rate = send_rate(&h, &uuid, "10.90.0.1") * 8.0 / 1e6;
    assert!((45.0..=55.0).contains(&rate), "capped at 50 Mbit/s live, measured {rate:.1}");
}

#[test]
fn nothing_is_left_after_delete_and_connectivity_survives_restarts() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let a = zone(
        &h,
        &img,
        "a",
        json!([{"nic_tag": "ext", "ips": ["10.51.0.2/24"], "max_ingress_bandwidth": 100, "max_egress_bandwidth": 100}]),
    );
    let b = zone(&h, &img, "b", json!([{"nic_tag": "ext", "ips": ["10.51.0.3/24"]}, {"ips": ["dhcp"]}]));
    let before = ports(&h);
    assert_eq!(before.len(), 3, "{before:?}");
    // A daemon killed with -9 and started again: the zones keep talking,
    // and the default network's dnsmasq is the same process, adopted.
    let dns = |h: &TestHost| {
        let mut p: Vec<i64> = pids_in_netns(&h.netns).into_iter().map(i64::from).collect();
        p.retain(|p| pids_mentioning("dnsmasq.conf").contains(p));
        p
    };
    let dns_before = dns(&h);
    assert_eq!(dns_before.len(), 1, "one dnsmasq for the default network");
    h.kill_daemon();
    h.start_daemon();
    assert_eq!(dns(&h), dns_before, "the daemon's restart replaced its dnsmasq");
    assert!(pings(&h, &b, "10.51.0.2"), "b lost a after the daemon's restart");
    assert!(zexec(&h, &a, "ip -o addr show eth0").ok().contains("10.51.0.2/24"));
    // A zone reboot keeps its addresses and its port.
    h.vmadm(&["reboot", &a]).ok();
    h.wait_state(&a, "running", Duration::from_secs(30));
    assert!(zexec(&h, &a, "ip -o addr show eth0").ok().contains("10.51.0.2/24"));
    assert_eq!(ports(&h), before);
    let h_mac_b = h.get(&b)["nics"][1]["mac"].as_str().unwrap().to_string();
    for uuid in [&a, &b] {
        h.vmadm(&["delete", uuid]).ok();
    }
    assert!(ports(&h).is_empty(), "ports left: {:?}", ports(&h));
    let rules = ruleset(&h);
    assert!(!rules.contains("chain port_"), "antispoof chains left:\n{rules}");
    let qdiscs = on_host(&h, "tc qdisc show").ok().to_string();
    let left = before.iter().any(|p| qdiscs.contains(&format!("dev {p} "))) || qdiscs.contains("dev zb");
    assert!(!left, "a port's shaper or its IFB is left:\n{qdiscs}");
    let links = on_host(&h, "ip -o link").ok().to_string();
    assert!(!links.contains(": zb"), "an IFB is left:\n{links}");
    let tags = h.cli("nictagadm", &["list", "-j"], None).json();
    let default = tags.as_array().unwrap().iter().find(|t| t["name"] == "default").unwrap().clone();
    let reserved: String = std::fs::read_dir(default["network"]["state_dir"].as_str().unwrap())
        .map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect())
        .unwrap_or_default();
    let mac_b = h_mac_b.to_lowercase();
    assert!(!reserved.to_lowercase().contains(&mac_b), "reservation of {mac_b} left:\n{reserved}");
}

#[test]
fn bad_nics_and_tags_are_refused_with_the_property_named() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let bad = |nics: Value, prop: &str| {
        let r = h.create(&json!({"brand": "lx", "image_uuid": img, "autoboot": false, "nics": nics}));
        assert_eq!(r.code, 1, "{nics} was accepted: {}", r.stdout);
        assert!(r.stderr.contains(prop), "{prop} not named for {nics}: {}", r.stderr);
    };
    bad(json!([{"nic_tag": "nosuch", "ips": ["10.1.0.2/24"]}]), "nics.0.nic_tag");
    bad(json!([{"nic_tag": "ext", "ips": ["10.1.0.2/24"], "gateways": ["10.2.0.1"]}]), "nics.0.gateways");
    bad(json!([{"nic_tag": "ext", "ips": ["10.1.0.300/24"]}]), "nics.0.ips");
    bad(json!([{"nic_tag": "ext", "vlan_id": 4096}]), "nics.0.vlan_id");
    bad(json!([{"nic_tag": "ext", "mtu": 9000}]), "nics.0.mtu");
    bad(json!([{"nic_tag": "ext", "primary": true}, {"nic_tag": "ext", "primary": true}]), "nics.1.primary");
    let first = h.create(&json!({"brand": "lx", "image_uuid": img, "autoboot": false,
        "nics": [{"nic_tag": "ext", "ips": ["10.1.0.2/24"], "mac": "02:08:20:00:00:01"}]}));
    first.ok();
    bad(json!([{"nic_tag": "ext", "ips": ["10.1.0.2/24"]}]), "nics.0.ips");
    bad(json!([{"nic_tag": "ext", "mac": "02:08:20:00:00:01"}]), "nics.0.mac");
    // Nothing of the refused ones is left.
    assert_eq!(h.vmadm(&["list", "-H", "-o", "uuid"]).ok().lines().count(), 1);
    // A tag in use is kept unless forced.
    let r = h.cli("nictagadm", &["delete", "ext"], None);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("used by"), "{}", r.stderr);
    h.cli("nictagadm", &["delete", "-f", "ext"], None).ok();
    assert_ne!(h.cli("nictagadm", &["exists", "ext"], None).code, 0);
    for args in [&["add", "bad/name", "-l"][..], &["add", "-l", "-p", "mtu=100", "small"][..], &["add", "nolink"][..]] {
        let r = h.cli("nictagadm", args, None);
        assert_ne!(r.code, 0, "{args:?} accepted");
    }
}

#[test]
fn a_zone_and_a_vm_on_one_network_reach_each_other() {
    let Some(h) = TestHost::new() else { return };
    if !std::path::Path::new("/usr/bin/qemu-system-x86_64").exists() {
        assert!(!in_ci(), "CI installs qemu-system-x86");
        eprintln!("skipped: qemu-system-x86 is not installed");
        return;
    }
    let img = h.install(busybox());
    etherstub(&h, "ext");
    // On the default network (DHCP from its dnsmasq) and on a plain tag.
    let z = zone(&h, &img, "z", json!([{"ips": ["dhcp"], "primary": true}]));
    let addrs = zexec(&h, &z, "ip -o -4 addr show eth0").ok().to_string();
    let zip = addrs.split_whitespace().nth(3).unwrap().split('/').next().unwrap().to_string();
    let f = vm_images();
    let vm = h.create_ok(&json!({
        "brand": "kvm", "alias": "v", "ram": 256, "vcpus": 1,
        "boot_kernel": f.vmlinuz, "boot_initrd": f.initrd,
        "boot_args": format!("console=ttyS0 quiet zv.boot=direct zv.ping={zip}"),
        "nics": [{"ips": ["dhcp"], "primary": true, "model": "virtio"}],
    }));
    let console = h.wait_console(&vm, "zonevisor-guest: ready", 1, Duration::from_secs(240));
    let net = console.lines().find(|l| l.contains("zonevisor-guest: net ")).unwrap_or_else(|| panic!("{console}"));
    let vip = net.split_whitespace().last().unwrap().split('/').next().unwrap().to_string();
    assert!(console.contains(&format!("zonevisor-guest: ping {zip} ok")), "the VM did not reach the zone:\n{console}");
    assert!(pings(&h, &z, &vip), "the zone did not reach the VM at {vip}");
    // The VM's tap is a port of the default network's bridge, and goes with the VM.
    assert_eq!(ports(&h).len(), 2, "{:?}", ports(&h));
    h.vmadm(&["delete", &vm]).ok();
    h.vmadm(&["delete", &z]).ok();
    assert!(ports(&h).is_empty(), "ports left: {:?}", ports(&h));
}

/// Whether `from` (a zone) fetches `http://<to>:<port>/` within 3 s.
fn fetches(h: &TestHost, from: &str, to: &str, port: u16) -> bool {
    zexec(h, from, &format!("timeout 3 wget -q -O - http://{to}:{port}/")).code == 0
}

fn fwadm(h: &TestHost, args: &[&str]) -> Run {
    h.cli("fwadm", args, None)
}

#[test]
fn firewall_rules_allow_and_block_by_port_tag_and_vm_and_apply_live() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let client = zone(&h, &img, "client", json!([{"nic_tag": "ext", "ips": ["10.95.0.2/24"]}]));
    let web = h.create_ok(&json!({
        "brand": "lx", "alias": "web", "image_uuid": img, "max_physical_memory": 128,
        "tags": {"role": "web"}, "nics": [{"nic_tag": "ext", "ips": ["10.95.0.3/24"]}],
    }));
    for (z, port) in [(&web, 80), (&web, 8080), (&client, 80)] {
        zexec(&h, z, &format!("mkdir -p /www && echo ok > /www/index.html && httpd -p {port} -h /www")).ok();
    }
    assert!(fetches(&h, &client, "10.95.0.3", 80), "no firewall yet: open");
    // firewall_enabled, live: inbound is dropped by default, outbound allowed.
    h.vmadm(&["update", &web, "firewall_enabled=true"]).ok();
    assert!(!fetches(&h, &client, "10.95.0.3", 80), "the default inbound policy let port 80 in");
    assert!(fetches(&h, &web, "10.95.0.2", 80), "the default outbound policy blocked the web zone");
    // By tag and port.
    let uuid_in = |out: &str| {
        out.split_whitespace()
            .find(|w| w.len() == 36 && w.matches('-').count() == 4)
            .expect("a rule's uuid")
            .to_string()
    };
    let by_tag = uuid_in(fwadm(&h, &["add", "-e", "FROM any TO tag role = web ALLOW tcp PORT 80"]).ok());
    assert!(fetches(&h, &client, "10.95.0.3", 80), "ALLOW tcp PORT 80 by tag did not let it in");
    assert!(!fetches(&h, &client, "10.95.0.3", 8080), "port 8080 got in without a rule");
    // By vm.
    let rule = format!("FROM vm {client} TO vm {web} ALLOW tcp PORT 8080");
    let by_vm = uuid_in(fwadm(&h, &["add", "-e", &rule]).ok());
    assert!(fetches(&h, &client, "10.95.0.3", 8080), "ALLOW from vm did not let 8080 in");
    // Outbound BLOCK, and what fwadm says about it.
    fwadm(&h, &["add", "-e", &format!("FROM vm {web} TO any BLOCK tcp PORT 80")]).ok();
    assert!(!fetches(&h, &web, "10.95.0.2", 80), "BLOCK outbound did not block");
    let vms = fwadm(&h, &["vms", &by_tag]).ok().to_string();
    assert!(vms.contains(&web) && !vms.contains(&client), "fwadm vms: {vms}");
    let rules = fwadm(&h, &["rules", &web]).ok().to_string();
    assert_eq!(rules.lines().filter(|l| l.contains("PORT")).count(), 3, "fwadm rules: {rules}");
    let stats = fwadm(&h, &["stats", &web]).ok().to_string();
    assert!(stats.contains(&by_tag), "fwadm stats: {stats}");
    // Disabled (two in one command): their traffic is blocked again;
    // deleted: likewise.
    fwadm(&h, &["disable", &by_tag, &by_vm]).ok();
    assert!(!fetches(&h, &client, "10.95.0.3", 80), "a disabled rule still applied");
    assert!(!fetches(&h, &client, "10.95.0.3", 8080), "the second disabled rule still applied");
    fwadm(&h, &["enable", &by_tag, &by_vm]).ok();
    assert!(fetches(&h, &client, "10.95.0.3", 80) && fetches(&h, &client, "10.95.0.3", 8080));
    // A delete that names an unknown rule deletes none of them.
    let unknown = "0a1b2c3d-0000-4000-8000-0000000000ff";
    let r = fwadm(&h, &["delete", &by_tag, unknown]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains(unknown), "{}", r.stderr);
    assert!(fetches(&h, &client, "10.95.0.3", 80), "a refused delete removed a rule");
    // The API behind those commands: one bad change refuses them all, named.
    let api = zonevisor_api::Client::new(&h.socket);
    let change = |uuid: &str, rule: Option<&str>| zonevisor_api::FwRuleChange {
        uuid: uuid.into(),
        rule: rule.map(str::to_string),
        enabled: Some(false),
        ..Default::default()
    };
    for (req, named) in [
        (
            zonevisor_api::FwChangeRequest {
                update: vec![change(&by_vm, None), change(&by_tag, Some("FROM"))],
                delete: vec![],
            },
            "update.1.rule",
        ),
        (
            zonevisor_api::FwChangeRequest { update: vec![change(&by_vm, None)], delete: vec![by_vm.clone()] },
            "delete.0",
        ),
        (
            zonevisor_api::FwChangeRequest { update: vec![change(&by_vm, None), change(&by_vm, None)], delete: vec![] },
            "update.1.uuid",
        ),
        (zonevisor_api::FwChangeRequest { update: vec![], delete: vec!["nope".into()] }, "delete.0"),
        (zonevisor_api::FwChangeRequest::default(), "update"),
    ] {
        let e = api.change_fw_rules(&req).expect_err("a bad change was accepted").to_string();
        assert!(e.contains(named), "{named} not named: {e}");
    }
    assert!(fetches(&h, &client, "10.95.0.3", 8080), "a refused change disabled a rule");
    fwadm(&h, &["delete", &by_tag]).ok();
    assert!(!fetches(&h, &client, "10.95.0.3", 80), "a deleted rule still applied");
    // A tag change follows, live: a rule for role=db matches the web zone once it is one.
    fwadm(&h, &["add", "-e", "FROM any TO tag role = db ALLOW tcp PORT 80"]).ok();
    assert!(!fetches(&h, &client, "10.95.0.3", 80), "role=db matched a role=web zone");
    let r = h.cli("vmadm", &["update", &web], Some(&json!({"set_tags": {"role": "db"}}).to_string()));
    r.ok();
    assert!(fetches(&h, &client, "10.95.0.3", 80), "the rule did not follow the tag");
    // A syntax error names the offending token.
    let r = fwadm(&h, &["add", "FROM any TO all vms ALOW tcp PORT 80"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("ALOW"), "{}", r.stderr);
}

#[test]
fn a_tag_over_a_link_bridges_instances_onto_that_network() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    // The "physical" network: a veth whose other end is in a namespace of
    // its own, holding a host of that network.
    let lan = format!("{}-l", h.netns);
    let setup = format!(
        "ip netns add {lan} && ip link add lan0 netns {host} type veth peer name eth0 netns {lan} && \
         ip -n {lan} addr add 10.77.0.1/24 dev eth0 && ip -n {lan} link set eth0 up",
        host = h.netns
    );
    assert!(Command::new("sh").args(["-c", &setup]).status().unwrap().success());
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _gone = Gone(lan.clone());
    h.cli("nictagadm", &["add", "lan", "lan0"], None).ok();
    let tags = h.cli("nictagadm", &["list", "-j"], None).json();
    let t = tags.as_array().unwrap().iter().find(|t| t["name"] == "lan").unwrap().clone();
    assert_eq!(
        (t["type"].as_str(), t["link"].as_str(), t["bridge"].as_str()),
        (Some("normal"), Some("lan0"), Some("zvtlan"))
    );
    let listed = h.cli("nictagadm", &["list", "-p"], None).ok().to_string();
    assert!(listed.lines().any(|l| l.starts_with("lan:") && l.contains("lan0")), "{listed}");
    let z = zone(&h, &img, "onlan", json!([{"nic_tag": "lan", "ips": ["10.77.0.2/24"]}]));
    assert!(pings(&h, &z, "10.77.0.1"), "the zone did not reach the LAN's host");
    assert_eq!(h.cli("nictagadm", &["vms", "lan"], None).ok().trim(), z);
    // Deleted (forced: the zone uses it), the link is the host's again.
    h.vmadm(&["delete", &z]).ok();
    h.cli("nictagadm", &["delete", "lan"], None).ok();
    let link = on_host(&h, "ip -o link show lan0").ok().to_string();
    assert!(!link.contains("master"), "lan0 is still a bridge port: {link}");
    assert!(!on_host(&h, "ip -o link").ok().contains("zvtlan"), "the tag's bridge is left");
}

#[test]
fn after_a_host_reboot_tags_the_default_network_and_nics_come_back() {
    let Some(mut h) = TestHost::new() else { return };
    let img = h.install(busybox());
    etherstub(&h, "ext");
    let a =
        zone(&h, &img, "a", json!([{"nic_tag": "ext", "ips": ["10.52.0.2/24"]}, {"ips": ["dhcp"], "primary": true}]));
    let b = zone(&h, &img, "b", json!([{"nic_tag": "ext", "ips": ["10.52.0.3/24"]}]));
    let before = zexec(&h, &a, "ip -o -4 addr show eth1").ok().to_string();
    let pids: Vec<i64> = [&a, &b].iter().map(|u| h.get(u)["pid"].as_i64().unwrap()).collect();
    let dnsmasq =
        pids_in_netns(&h.netns).into_iter().map(i64::from).filter(|p| pids_mentioning("dnsmasq.conf").contains(p));
    let mut victims = pids.clone();
    victims.extend(dnsmasq);
    power_cut(&mut h, &victims);
    next_boot(&h);
    // What a reboot takes from the network: every link and rule zonevisor made.
    on_host(&h, "for l in $(ip -o link | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^z'); do ip link del $l; done; nft flush ruleset").ok();
    assert!(!on_host(&h, "ip -o link").ok().contains("zv"), "links survived the reboot");
    h.start_daemon();
    for u in [&a, &b] {
        h.wait_state(u, "running", Duration::from_secs(30));
    }
    assert!(pings(&h, &a, "10.52.0.3"), "the tag's NICs did not come back");
    let after = zexec(&h, &a, "ip -o -4 addr show eth1").ok().to_string();
    assert_eq!(after.split_whitespace().nth(3), before.split_whitespace().nth(3), "the reserved address changed");
    let gw = h
        .cli("nictagadm", &["list", "-j"], None)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "default")
        .unwrap()["network"]["ipv4"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(pings(&h, &a, &gw), "the default network did not come back");
    assert!(ruleset(&h).contains("table bridge zonevisor"), "antispoof did not come back");
}

#[test]
fn resolvers_reach_a_running_zone_that_maintains_them() {
    let Some(h) = TestHost::new() else { return };
    let img = h.install(busybox());
    let uuid = h.create_ok(&json!({
        "brand": "lx", "alias": "dns", "image_uuid": img, "max_physical_memory": 128,
        "maintain_resolvers": true, "resolvers": ["192.0.2.1"], "nics": [{"ips": ["dhcp"], "primary": true}],
    }));
    assert!(zexec(&h, &uuid, "cat /etc/resolv.conf").ok().contains("nameserver 192.0.2.1"));
    // The zone made its resolv.conf a symlink to another file of its own:
    // the new one replaces the link and leaves that file alone.
    zexec(&h, &uuid, "echo mine > /etc/keep && rm /etc/resolv.conf && ln -s /etc/keep /etc/resolv.conf").ok();
    h.vmadm(&["update", &uuid, "resolvers=192.0.2.2,192.0.2.3"]).ok();
    let conf = zexec(&h, &uuid, "cat /etc/resolv.conf").ok().to_string();
    assert!(conf.contains("nameserver 192.0.2.2\nnameserver 192.0.2.3"), "{conf}");
    assert_eq!(zexec(&h, &uuid, "cat /etc/keep").ok(), "mine\n");
    assert_eq!(zexec(&h, &uuid, "test -L /etc/resolv.conf && echo link || echo file").ok(), "file\n");
    // It survives the zone's reboot; without maintain_resolvers a change waits for one.
    h.vmadm(&["reboot", &uuid]).ok();
    h.wait_state(&uuid, "running", Duration::from_secs(30));
    assert!(zexec(&h, &uuid, "cat /etc/resolv.conf").ok().contains("nameserver 192.0.2.3"));
    h.vmadm(&["update", &uuid, "maintain_resolvers=false"]).ok();
    h.vmadm(&["update", &uuid, "resolvers=192.0.2.9"]).ok();
    assert!(!zexec(&h, &uuid, "cat /etc/resolv.conf").ok().contains("192.0.2.9"), "changed without maintain_resolvers");
}
