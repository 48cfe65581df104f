//! The compiled statements are valid nft in the `inet` family: a ruleset
//! with every kind of statement is loaded with `nft -f -` into a network
//! namespace the test makes. Needs root; skipped without (failed when
//! CI=true).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use super::resolve::{instance, stored, uuid, with_ips, with_tags};
use super::*;

/// Skips the test with `reason`, or fails it under CI.
fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("cannot run with CI=true: {reason}");
    }
    eprintln!("skipping: {reason}");
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().ok_or("no stdin for nft")?;
        pipe.write_all(text.as_bytes()).map_err(|e| format!("writing to nft: {e}"))?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().map_err(|e| format!("waiting for nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Rules producing every shape of statement the compiler emits.
fn sample() -> (Vec<StoredRule>, Vec<Instance>) {
    let insts = vec![
        with_tags(with_ips(instance(1), &["10.88.88.1", "fd00::1"]), json!({"role": "web"})),
        with_tags(with_ips(instance(2), &["10.88.88.2", "fd00::2"]), json!({"role": "db"})),
        with_tags(instance(3), json!({"role": "web"})),
    ];
    let web = uuid(1);
    let texts = [
        "FROM any TO all vms ALLOW tcp PORT 22".to_string(),
        "FROM (tag role = web OR subnet 10.8.0.1/16 OR subnet fd00::/64) TO tag role = db \
         ALLOW tcp PORTS 5432, 6000 - 6010, 6005 PRIORITY 5"
            .to_string(),
        "FROM tag role = db TO tag role = web BLOCK udp PORT all PRIORITY 2".to_string(),
        "FROM any TO all vms ALLOW icmp (TYPE 8 CODE 0 AND TYPE 0 AND TYPE 3)".to_string(),
        "FROM subnet 10.0.0.0/8 TO all vms ALLOW icmp TYPE all".to_string(),
        "FROM any TO tag role = db ALLOW icmp TYPE all".to_string(),
        "FROM any TO all vms ALLOW icmp6 (TYPE 128 CODE 0 AND TYPE 135 AND TYPE 136)".to_string(),
        "FROM all vms TO all vms ALLOW icmp6 TYPE all PRIORITY 1".to_string(),
        format!("FROM ip 1.2.3.4 TO vm {web} ALLOW ah"),
        format!("FROM ip 1.2.3.4 TO vm {web} ALLOW esp"),
        format!("FROM vm {web} TO any BLOCK esp"),
        format!("FROM vm {web} TO (subnet 0.0.0.0/0 OR subnet ::/0) BLOCK tcp PORT 25"),
        format!("FROM vm {web} TO ip fd00::99 BLOCK udp (PORT 53 AND PORT 853)"),
        "FROM any TO all vms BLOCK tcp PORTS 1-65535 PRIORITY 100".to_string(),
    ];
    let rules = texts.iter().enumerate().map(|(i, t)| stored(i as u32, None, t)).collect();
    (rules, insts)
}

fn ruleset(out: &std::collections::BTreeMap<uuid::Uuid, Chains>) -> String {
    let mut text = String::from("table inet zonevisor {\n");
    for (uuid, chains) in out {
        for (name, list) in [("fw_in", &chains.inbound), ("fw_out", &chains.outbound)] {
            text.push_str(&format!("  chain {name}_{} {{\n", uuid.simple()));
            for s in list {
                text.push_str(&format!("    {s}\n"));
            }
            text.push_str("  }\n");
        }
    }
    text.push_str("  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
    text.push_str("    ct state established,related accept\n");
    for (n, uuid) in out.keys().enumerate() {
        let id = uuid.simple();
        text.push_str(&format!("    oifname \"zvtest{n}\" jump fw_in_{id}\n"));
        text.push_str(&format!("    oifname \"zvtest{n}\" drop\n"));
        text.push_str(&format!("    iifname \"zvtest{n}\" jump fw_out_{id}\n"));
    }
    text.push_str("  }\n}\n");
    text
}

#[test]
fn compiled_statements_load_into_nft() {
    if !nix::unistd::geteuid().is_root() {
        skip("making a network namespace for nft needs root");
        return;
    }
    if run(&["--version"], None).is_err() {
        skip("nft is not installed");
        return;
    }
    let (rules, insts) = sample();
    let out = compile(&rules, &insts);
    let total: usize = out.values().map(|c| c.inbound.len() + c.outbound.len()).sum();
    assert!(total > 20, "the sample should compile to many statements");
    let text = ruleset(&out);
    let chains = out.clone();

    let result = std::thread::spawn(move || -> Result<(), String> {
        // Only this thread (and the nft it starts) moves to the new
        // namespace.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
        run(&["-f", "-"], Some(&text)).map_err(|e| format!("{e}\nruleset:\n{text}"))?;
        if std::env::var_os("FW_NFT_SHOW").is_some() {
            eprintln!("{}", run(&["list", "ruleset"], None)?);
        }
        for (uuid, c) in &chains {
            for (name, list) in [("fw_in", &c.inbound), ("fw_out", &c.outbound)] {
                let chain = format!("{name}_{}", uuid.simple());
                let listed = run(&["-a", "list", "chain", "inet", "zonevisor", &chain], None)?;
                let rules =
                    listed.lines().filter(|l| l.contains("# handle") && !l.trim_start().starts_with("chain ")).count();
                if rules != list.len() {
                    return Err(format!("{chain}: {rules} rules loaded for {} statements:\n{listed}", list.len()));
                }
            }
        }
        Ok(())
    })
    .join()
    .expect("nft thread panicked");
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn sample_covers_every_statement_shape() {
    let (rules, insts) = sample();
    let all: Vec<String> =
        compile(&rules, &insts).into_values().flat_map(|c| c.inbound.into_iter().chain(c.outbound)).collect();
    for needle in [
        "tcp dport { ",
        "udp dport { ",
        "meta l4proto udp",
        "icmp type { ",
        "icmp code",
        "meta nfproto ipv4 meta l4proto icmp",
        "ip saddr 10.0.0.0/8 meta l4proto icmp",
        "meta nfproto ipv6 icmpv6 type { ",
        "icmpv6 code",
        "meta l4proto ipv6-icmp",
        "meta l4proto ah",
        "meta l4proto esp",
        "ip saddr { ",
        "ip6 saddr { ",
        "ip daddr 0.0.0.0/0",
        "ip6 daddr ::/0",
        "ip6 daddr fd00::99",
        "dport 1-65535",
        " accept",
        " drop",
    ] {
        assert!(all.iter().any(|s| s.contains(needle)), "no statement with {needle:?} in {all:#?}");
    }
}
