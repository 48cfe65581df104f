//! The cloud-init NoCloud seed of a hardware VM: what goes in it, and the
//! FAT disk that carries it.
//!
//! SmartOS gives an HVM guest a small disk whose FAT filesystem is
//! labelled `cidata`; cloud-init's NoCloud datasource (and FreeBSD's
//! nuageinit) find it by that label and read four files from its root:
//!
//! | file             | content                                              | when                      |
//! |------------------|------------------------------------------------------|---------------------------|
//! | `meta-data`      | `instance-id` (the VM's uuid), `local-hostname`      | always                    |
//! | `user-data`      | `customer_metadata["cloud-init:user-data"]`, else `#cloud-config\n{}\n` | unless that key is empty |
//! | `network-config` | `customer_metadata["cloud-init:network-config"]`, else version 2 built from `nics` | override or at least one NIC |
//! | `vendor-data`    | `customer_metadata["cloud-init:vendor-data"]`        | when that key is non-empty |
//!
//! A VM asks for the seed with `internal_metadata.cloudinit_datasource =
//! "nocloud"`. SmartOS sets that key at create time from the image
//! manifest's tag `org.smartos:cloudinit_datasource`, and builds the seed
//! for `bhyve` (and `kvm`) VMs only; [`seed`] answers `None` for any other
//! brand and for a VM that does not ask.
//!
//! The network configuration follows SmartOS's: each NIC is matched by its
//! (lowercased) MAC and renamed to its `interface` (`eth0` when it has
//! none); `ips` give `dhcp4` (`dhcp`), `dhcp6` (`addrconf`) and static
//! `addresses`; the deprecated `ip` + `netmask` give one address when a NIC
//! has no `ips`; the primary NIC alone carries the default gateways
//! (`gateways`, else `gateway`; an address with a `:` is IPv6) and the
//! `resolvers` as its nameservers. `routes` are not part of SmartOS's seed
//! (the metadata service serves them) and are not part of this one.
//!
//! SmartOS writes its YAML unquoted; here every value taken from the VM is
//! a double-quoted scalar with everything outside printable text escaped,
//! so a hostname, an interface name or a MAC cannot end its line, start a
//! comment, inject a key, or be read as a number, a boolean or a
//! sexagesimal (`1:2:3:4:5:6:7:8` is an integer to a YAML 1.1 reader). The
//! documents taken whole from `customer_metadata` are the user's and are
//! written as given.
//!
//! The disk ([`write_image`]) is SmartOS's: 16 MiB of 512-byte sectors,
//! FAT16, no partition table, larger only when the files need it (the
//! image then grows to fit, FAT32 past 512 MiB). The image is built in
//! memory and written beside its path, then renamed over it, so a VM never
//! sees half a seed. Its file times are the FAT epoch (1980-01-01) and its
//! volume serial comes from the [`digest`], so one seed always makes the
//! same bytes.
//!
//! SmartOS rebuilds the seed at each start of the VM unless an MD5 of the
//! inputs (uuid, hostname, alias, nics, resolvers, customer_metadata) equals
//! the one it stored in `internal_metadata.cloudinit_nocloud_hash`; here
//! [`digest`] covers what lands on the disk instead (the four files and
//! this module's layout), so a change that alters nothing in the seed does
//! not rewrite it.

use std::fmt::Write as _;
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// The filesystem label cloud-init and nuageinit look for (both also take
/// `CIDATA`, SmartOS's spelling; old cloud-init releases take only this one).
pub const LABEL: &str = "cidata";

/// SmartOS's seed disk size, and the smallest image [`write_image`] makes.
pub const IMAGE_BYTES: u64 = 16 << 20;

/// The user-data SmartOS writes when the VM gives none: an empty cloud
/// config, because nuageinit skips the network configuration of a seed
/// without user-data.
pub const DEFAULT_USER_DATA: &str = "#cloud-config\n{}\n";

const SECTOR_BYTES: u64 = 512;
const MIB: u64 = 1 << 20;
/// Names this module's layout in the [`digest`]: change it when the same
/// seed would be written differently, so images written before are redone.
const LAYOUT: &str = "zonevisor-nocloud-1 fat 16MiB cidata";

/// The seed's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// `meta-data`: the instance id and the hostname.
    pub meta_data: String,
    /// `user-data`, absent when the VM set `cloud-init:user-data` to an empty string.
    pub user_data: Option<String>,
    /// `network-config`, absent when the VM has no NICs and gives no override.
    pub network_config: Option<String>,
    /// `vendor-data`, present only when the VM gives it.
    pub vendor_data: Option<String>,
}

impl Seed {
    /// The files present, by their names on the disk, in a fixed order.
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        let mut files = vec![("meta-data", self.meta_data.as_str())];
        for (name, content) in [
            ("user-data", &self.user_data),
            ("network-config", &self.network_config),
            ("vendor-data", &self.vendor_data),
        ] {
            if let Some(content) = content {
                files.push((name, content.as_str()));
            }
        }
        files
    }
}

/// The seed SmartOS would give this VM, or None when it asks for none.
///
/// `vm` is the VM object as `vmadm get` prints it. A VM asks with
/// `internal_metadata.cloudinit_datasource = "nocloud"`; only `bhyve` and
/// `kvm` VMs get a seed (an object without `brand` is taken as one), and
/// one without a `uuid` gets none (it would have no instance id).
pub fn seed(vm: &Value) -> Option<Seed> {
    let asks = vm.pointer("/internal_metadata/cloudinit_datasource").and_then(Value::as_str) == Some("nocloud");
    let hvm = match vm.get("brand") {
        None => true,
        Some(brand) => matches!(brand.as_str(), Some("bhyve" | "kvm")),
    };
    let uuid = vm.get("uuid").and_then(Value::as_str)?;
    if !asks || !hvm {
        return None;
    }
    let empty = Map::new();
    let metadata = vm.get("customer_metadata").and_then(Value::as_object).unwrap_or(&empty);
    let hostname = [vm.get("hostname"), vm.get("alias")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|name| !name.is_empty())
        .unwrap_or(uuid);
    Some(Seed {
        meta_data: meta_data(uuid, hostname),
        user_data: match metadata.get("cloud-init:user-data") {
            None => Some(DEFAULT_USER_DATA.to_string()),
            Some(given) => given.as_str().filter(|s| !s.is_empty()).map(String::from),
        },
        network_config: match metadata.get("cloud-init:network-config") {
            None => network_config(vm),
            Some(given) => given.as_str().map(String::from),
        },
        vendor_data: metadata
            .get("cloud-init:vendor-data")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from),
    })
}

fn meta_data(uuid: &str, hostname: &str) -> String {
    format!("# cloud-init meta-data\ninstance-id: {}\nlocal-hostname: {}\n", quoted(uuid), quoted(hostname))
}

/// One entry of `ethernets`.
#[derive(Default)]
struct Ethernet<'a> {
    mac: Option<String>,
    dhcp4: bool,
    dhcp6: bool,
    addresses: Vec<String>,
    gateway4: Option<&'a str>,
    gateway6: Option<&'a str>,
    nameservers: Vec<&'a str>,
}

/// Network configuration version 2 from the VM's `nics`, or None when it
/// has none.
fn network_config(vm: &Value) -> Option<String> {
    let nics: Vec<&Map<String, Value>> =
        vm.get("nics").and_then(Value::as_array)?.iter().filter_map(Value::as_object).collect();
    if nics.is_empty() {
        return None;
    }
    let resolvers = strings(vm.get("resolvers"));
    // Two NICs with one interface name make one entry, the later NIC's, in
    // the earlier one's place (SmartOS fills an object keyed by the name).
    let mut ethernets: Vec<(&str, Ethernet)> = Vec::new();
    for nic in nics {
        let name = nic.get("interface").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("eth0");
        let mut eth =
            Ethernet { mac: nic.get("mac").and_then(Value::as_str).map(str::to_lowercase), ..Ethernet::default() };
        let ips = strings(nic.get("ips"));
        if !ips.is_empty() {
            for ip in ips {
                match ip {
                    "dhcp" => eth.dhcp4 = true,
                    "addrconf" => eth.dhcp6 = true,
                    address => eth.addresses.push(address.to_string()),
                }
            }
        } else if let (Some(ip), Some(netmask)) = (nonempty(nic.get("ip")), nonempty(nic.get("netmask"))) {
            if let Ok(mask) = netmask.parse::<Ipv4Addr>() {
                eth.addresses.push(format!("{ip}/{}", u32::from(mask).leading_ones()));
            }
        }
        if truthy(nic.get("primary")) {
            let mut gateways = strings(nic.get("gateways"));
            if gateways.is_empty() {
                gateways.extend(nonempty(nic.get("gateway")));
            }
            for gateway in gateways {
                if gateway.contains(':') {
                    eth.gateway6 = Some(gateway);
                } else {
                    eth.gateway4 = Some(gateway);
                }
            }
            eth.nameservers.clone_from(&resolvers);
        }
        match ethernets.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = eth,
            None => ethernets.push((name, eth)),
        }
    }

    let mut out = String::from("version: 2\nethernets:\n");
    for (name, eth) in &ethernets {
        let mut lines = String::new();
        if let Some(mac) = &eth.mac {
            let _ = writeln!(lines, "    match:\n      macaddress: {}", quoted(mac));
            let _ = writeln!(lines, "    set-name: {}", quoted(name));
        }
        if eth.dhcp4 {
            lines.push_str("    dhcp4: true\n");
        }
        if eth.dhcp6 {
            lines.push_str("    dhcp6: true\n");
        }
        if !eth.addresses.is_empty() {
            lines.push_str("    addresses:\n");
            for address in &eth.addresses {
                let _ = writeln!(lines, "      - {}", quoted(address));
            }
        }
        if let Some(gateway) = eth.gateway4 {
            let _ = writeln!(lines, "    gateway4: {}", quoted(gateway));
        }
        if let Some(gateway) = eth.gateway6 {
            let _ = writeln!(lines, "    gateway6: {}", quoted(gateway));
        }
        if !eth.nameservers.is_empty() {
            lines.push_str("    nameservers:\n      addresses:\n");
            for server in &eth.nameservers {
                let _ = writeln!(lines, "        - {}", quoted(server));
            }
        }
        if lines.is_empty() {
            // SmartOS leaves the value out, which YAML reads as null;
            // an empty mapping is what a NIC with nothing to set means.
            let _ = writeln!(out, "  {}: {{}}", quoted(name));
        } else {
            let _ = writeln!(out, "  {}:", quoted(name));
            out.push_str(&lines);
        }
    }
    Some(out)
}

/// The strings of a JSON array (other members are skipped).
fn strings(value: Option<&Value>) -> Vec<&str> {
    value.and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn nonempty(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// JavaScript's truth, which SmartOS applies to `primary`.
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

/// `s` as a YAML double-quoted scalar that reads back as exactly `s` in
/// YAML 1.1 and 1.2: `"` and `\` escaped, and every character a reader
/// could take as a line break or refuse as unprintable (C0 and C1
/// controls, DEL, U+2028, U+2029, the byte order mark, U+FFFE, U+FFFF)
/// written as an escape.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A stable digest of the seed (to skip rewriting an unchanged disk).
///
/// SHA-1, in hex, of the files (each with its name, presence and length)
/// and of this module's image layout: equal digests mean [`write_image`]
/// would write the same bytes.
pub fn digest(seed: &Seed) -> String {
    let mut hash = Sha1::new();
    hash.update(LAYOUT.as_bytes());
    for (name, content) in [
        ("meta-data", Some(&seed.meta_data)),
        ("user-data", seed.user_data.as_ref()),
        ("network-config", seed.network_config.as_ref()),
        ("vendor-data", seed.vendor_data.as_ref()),
    ] {
        hash.update([0]);
        hash.update(name.as_bytes());
        match content {
            None => hash.update([0]),
            Some(content) => {
                hash.update([1]);
                hash.update((content.len() as u64).to_le_bytes());
                hash.update(content.as_bytes());
            }
        }
    }
    hex::encode(hash.finalize())
}

/// Writes the seed as a FAT disk image labelled `cidata` at `path`
/// (replaced atomically: written beside it, then renamed); size as small
/// as works (SmartOS's size if it has one).
///
/// The image is [`IMAGE_BYTES`] unless the files need more. The file is
/// created with mode 0600 (user-data may hold secrets); holes are left
/// where the image is zero.
pub fn write_image(seed: &Seed, path: &Path) -> io::Result<()> {
    let failed = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()));
    let image = image(seed).map_err(|e| failed("building the NoCloud image for", e))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".nocloud-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| failed("creating a temporary file beside", e))?;
    write_sparse(tmp.as_file_mut(), &image).map_err(|e| failed("writing the NoCloud image for", e))?;
    tmp.as_file().sync_all().map_err(|e| failed("syncing the NoCloud image for", e))?;
    tmp.persist(path).map_err(|e| failed("renaming the NoCloud image to", e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| failed("syncing the directory of", e))
}

/// Writes `image` to `file`, seeking over the zero blocks.
fn write_sparse(file: &mut std::fs::File, image: &[u8]) -> io::Result<()> {
    const BLOCK: usize = 64 << 10;
    for (i, block) in image.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.seek(SeekFrom::Start((i * BLOCK) as u64))?;
            file.write_all(block)?;
        }
    }
    file.set_len(image.len() as u64)
}

/// The FAT image of `seed`, at the size [`image_bytes`] gives.
fn image(seed: &Seed) -> io::Result<Vec<u8>> {
    let files = seed.files();
    let serial = u32::from_str_radix(&digest(seed)[..8], 16).map_err(|e| io::Error::other(e.to_string()))?;
    let size = image_bytes(&files);
    let mut image = vec![0u8; usize::try_from(size).map_err(|_| io::Error::other("image too large"))?];
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    let format = fatfs::FormatVolumeOptions::new()
        .bytes_per_sector(SECTOR_BYTES as u16)
        .total_sectors((size / SECTOR_BYTES) as u32)
        .volume_label(label)
        .volume_id(serial);
    fatfs::format_volume(Cursor::new(image.as_mut_slice()), format)
        .map_err(|e| io::Error::new(e.kind(), format!("formatting {size} bytes as FAT: {e}")))?;
    let options = fatfs::FsOptions::new().update_accessed_date(false).time_provider(&EPOCH);
    let fs = fatfs::FileSystem::new(Cursor::new(image.as_mut_slice()), options)?;
    for (name, content) in files {
        let mut file =
            fs.root_dir().create_file(name).map_err(|e| io::Error::new(e.kind(), format!("creating {name}: {e}")))?;
        file.write_all(content.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| io::Error::new(e.kind(), format!("writing {name} ({} bytes): {e}", content.len())))?;
    }
    fs.unmount()?;
    Ok(image)
}

/// The image size for `files`: [`IMAGE_BYTES`], or enough whole MiB for
/// the files in clusters of up to 32 KiB (the largest FAT cluster), plus
/// the tables and directory (under 1/64 of the data and 1 MiB).
fn image_bytes(files: &[(&str, &str)]) -> u64 {
    const CLUSTER_MAX: u64 = 32 << 10;
    let data: u64 = files.iter().map(|(_, content)| (content.len() as u64).div_ceil(CLUSTER_MAX) * CLUSTER_MAX).sum();
    let wanted = (data + data / 64 + MIB).div_ceil(MIB) * MIB;
    wanted.max(IMAGE_BYTES)
}

/// File times at the FAT epoch, 1980-01-01 00:00, so images are reproducible.
#[derive(Debug)]
struct Epoch;

static EPOCH: Epoch = Epoch;

impl fatfs::TimeProvider for Epoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date { year: 1980, month: 1, day: 1 }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime { date: self.get_current_date(), time: fatfs::Time { hour: 0, min: 0, sec: 0, millis: 0 } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use yaml_rust2::{Yaml, YamlLoader};

    const UUID: &str = "b4c7e1a2-3d5f-4e8a-9b0c-1d2e3f4a5b6c";

    /// A bhyve VM that asks for the seed, with `extra` merged in.
    fn vm(extra: Value) -> Value {
        let mut vm = json!({
            "uuid": UUID,
            "brand": "bhyve",
            "internal_metadata": {"cloudinit_datasource": "nocloud"},
        });
        for (k, v) in extra.as_object().unwrap() {
            vm[k] = v.clone();
        }
        vm
    }

    fn seed_of(extra: Value) -> Seed {
        seed(&vm(extra)).expect("the VM asks for a seed")
    }

    /// A YAML document as JSON; panics on what cloud-init would not read
    /// as the strings this module wrote (non-string keys, floats, aliases).
    fn yaml(doc: &str) -> Value {
        let mut docs = YamlLoader::load_from_str(doc).unwrap_or_else(|e| panic!("{e}: in\n{doc}"));
        assert_eq!(docs.len(), 1, "one document in\n{doc}");
        fn conv(y: Yaml) -> Value {
            match y {
                Yaml::String(s) => Value::String(s),
                Yaml::Integer(i) => json!(i),
                Yaml::Boolean(b) => Value::Bool(b),
                Yaml::Null => Value::Null,
                Yaml::Array(a) => Value::Array(a.into_iter().map(conv).collect()),
                Yaml::Hash(h) => Value::Object(
                    h.into_iter()
                        .map(|(k, v)| match k {
                            Yaml::String(k) => (k, conv(v)),
                            k => panic!("a key that is not a string: {k:?}"),
                        })
                        .collect(),
                ),
                other => panic!("unexpected YAML node {other:?}"),
            }
        }
        conv(docs.remove(0))
    }

    /// The same documents read by PyYAML (cloud-init's reader, YAML 1.1),
    /// or None (with the reason printed) where python3 or its yaml module
    /// is missing.
    fn pyyaml(docs: &[&str]) -> Option<Vec<Value>> {
        const SCRIPT: &str = r#"
import json, sys
try:
    import yaml
except ImportError:
    sys.exit(3)
def check(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise SystemExit("a key that is not a string: %r" % (k,))
            check(x)
    elif isinstance(v, list):
        for x in v:
            check(x)
    elif v is not None and not isinstance(v, (str, bool, int)):
        raise SystemExit("unexpected value %r" % (v,))
out = []
for doc in json.load(sys.stdin):
    v = yaml.safe_load(doc)
    check(v)
    out.append(v)
json.dump(out, sys.stdout)
"#;
        let child = Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("skipping the PyYAML check: python3 is not installed");
            return None;
        };
        child.stdin.take().unwrap().write_all(serde_json::to_string(docs).unwrap().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(3) {
            eprintln!("skipping the PyYAML check: python3 has no yaml module");
            return None;
        }
        assert!(out.status.success(), "PyYAML: {}", String::from_utf8_lossy(&out.stderr));
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Both readers agree that `doc` reads as `expected`.
    fn reads_as(doc: &str, expected: &Value) {
        assert_eq!(&yaml(doc), expected, "yaml-rust2 reading\n{doc}");
        if let Some(read) = pyyaml(&[doc]) {
            assert_eq!(&read[0], expected, "PyYAML reading\n{doc}");
        }
    }

    fn network(extra: Value) -> Value {
        yaml(&seed_of(extra).network_config.expect("a network-config"))
    }

    fn nic0(extra: Value) -> Value {
        let mut nic = json!({"interface": "eth0", "mac": "02:08:20:AC:E1:00", "primary": true});
        for (k, v) in extra.as_object().unwrap() {
            nic[k] = v.clone();
        }
        nic
    }

    // ---- when: the trigger ----

    #[test]
    fn nocloud_only_when_asked_by_an_hvm_with_a_uuid() {
        assert!(seed(&vm(json!({}))).is_some());
        assert!(seed(&vm(json!({"brand": "kvm"}))).is_some());
        let mut no_brand = vm(json!({}));
        no_brand.as_object_mut().unwrap().remove("brand");
        assert!(seed(&no_brand).is_some(), "an object without brand is taken as a VM");
        for not_asked in [
            json!({"internal_metadata": {}}),
            json!({"internal_metadata": null}),
            json!({"internal_metadata": {"cloudinit_datasource": "smartos"}}),
            json!({"internal_metadata": {"cloudinit_datasource": "NoCloud"}}),
            json!({"internal_metadata": {"cloudinit_datasource": true}}),
            json!({"internal_metadata": {}, "customer_metadata": {"cloudinit_datasource": "nocloud"}}),
            json!({"brand": "lx"}),
            json!({"brand": "joyent"}),
            json!({"brand": null}),
            json!({"uuid": null}),
        ] {
            assert_eq!(seed(&vm(not_asked.clone())), None, "{not_asked}");
        }
        let mut no_internal = vm(json!({}));
        no_internal.as_object_mut().unwrap().remove("internal_metadata");
        assert_eq!(seed(&no_internal), None);
    }

    // ---- meta-data ----

    #[test]
    fn nocloud_meta_data_names_the_instance_and_its_hostname() {
        let seed = seed_of(json!({"hostname": "test-vm", "alias": "my-alias"}));
        assert_eq!(
            seed.meta_data,
            format!("# cloud-init meta-data\ninstance-id: \"{UUID}\"\nlocal-hostname: \"test-vm\"\n")
        );
        reads_as(&seed.meta_data, &json!({"instance-id": UUID, "local-hostname": "test-vm"}));
        // hostname, else alias, else uuid (an empty string counts as none)
        for (extra, name) in [
            (json!({"alias": "my-alias"}), "my-alias"),
            (json!({"hostname": "", "alias": "my-alias"}), "my-alias"),
            (json!({"hostname": "", "alias": ""}), UUID),
            (json!({}), UUID),
            (json!({"hostname": 7, "alias": "a"}), "a"),
        ] {
            assert_eq!(yaml(&seed_of(extra.clone()).meta_data)["local-hostname"], name, "{extra}");
        }
    }

    // ---- user-data and vendor-data ----

    #[test]
    fn nocloud_user_data_from_customer_metadata_or_an_empty_cloud_config() {
        assert_eq!(seed_of(json!({})).user_data.as_deref(), Some(DEFAULT_USER_DATA));
        assert_eq!(DEFAULT_USER_DATA, "#cloud-config\n{}\n");
        let given = "#cloud-config\npackages:\n  - nginx\n";
        let with = |v: Value| seed_of(json!({"customer_metadata": {"cloud-init:user-data": v}})).user_data;
        assert_eq!(with(json!(given)).as_deref(), Some(given));
        let script = "#!/bin/sh\necho hello > /tmp/hello\n";
        assert_eq!(with(json!(script)).as_deref(), Some(script), "a script is passed as it is");
        assert_eq!(with(json!("")), None, "SmartOS writes no user-data for an empty one");
        assert_eq!(with(json!(5)), None, "a value that is not a string is not written");
        // only the cloud-init: key feeds it
        for key in ["user-data", "user-script", "cloud-init:userdata"] {
            let seed = seed_of(json!({"customer_metadata": {key: "#!/bin/sh\n"}}));
            assert_eq!(seed.user_data.as_deref(), Some(DEFAULT_USER_DATA), "{key}");
        }
    }

    #[test]
    fn nocloud_vendor_data_only_when_given() {
        assert_eq!(seed_of(json!({})).vendor_data, None);
        assert_eq!(seed_of(json!({"customer_metadata": {}})).vendor_data, None);
        let given = "#cloud-config\nruncmd:\n  - echo vendor\n";
        let with = |v: Value| seed_of(json!({"customer_metadata": {"cloud-init:vendor-data": v}})).vendor_data;
        assert_eq!(with(json!(given)).as_deref(), Some(given));
        assert_eq!(with(json!("")), None);
        assert_eq!(with(json!({"a": 1})), None);
    }

    // ---- network-config ----

    #[test]
    fn nocloud_network_static_nic_golden() {
        let seed = seed_of(json!({
            "hostname": "test-vm",
            "resolvers": ["8.8.8.8", "8.8.4.4"],
            "nics": [nic0(json!({"ips": ["192.168.1.100/24"], "gateways": ["192.168.1.1"]}))],
        }));
        let doc = seed.network_config.unwrap();
        assert_eq!(
            doc,
            "version: 2\nethernets:\n  \"eth0\":\n    match:\n      macaddress: \"02:08:20:ac:e1:00\"\n    \
             set-name: \"eth0\"\n    addresses:\n      - \"192.168.1.100/24\"\n    gateway4: \"192.168.1.1\"\n    \
             nameservers:\n      addresses:\n        - \"8.8.8.8\"\n        - \"8.8.4.4\"\n"
        );
        reads_as(
            &doc,
            &json!({"version": 2, "ethernets": {"eth0": {
                "match": {"macaddress": "02:08:20:ac:e1:00"},
                "set-name": "eth0",
                "addresses": ["192.168.1.100/24"],
                "gateway4": "192.168.1.1",
                "nameservers": {"addresses": ["8.8.8.8", "8.8.4.4"]},
            }}}),
        );
    }

    #[test]
    fn nocloud_network_dhcp_addrconf_and_static_mix() {
        let eth0 = |ips: Value| network(json!({"nics": [nic0(json!({"ips": ips}))]}))["ethernets"]["eth0"].clone();
        let dhcp = eth0(json!(["dhcp"]));
        assert_eq!(dhcp["dhcp4"], true);
        assert!(dhcp.get("dhcp6").is_none() && dhcp.get("addresses").is_none(), "{dhcp}");
        let slaac = eth0(json!(["addrconf"]));
        assert_eq!(slaac["dhcp6"], true);
        assert!(slaac.get("dhcp4").is_none() && slaac.get("addresses").is_none(), "{slaac}");
        let mixed = eth0(json!(["dhcp", "addrconf", "10.0.0.5/24", "fd00::5/64"]));
        assert_eq!(mixed["dhcp4"], true);
        assert_eq!(mixed["dhcp6"], true);
        assert_eq!(mixed["addresses"], json!(["10.0.0.5/24", "fd00::5/64"]));
        let many = eth0(json!(["10.0.0.10/24", "10.0.0.11/24", "2001:db8::10/64"]));
        assert_eq!(many["addresses"], json!(["10.0.0.10/24", "10.0.0.11/24", "2001:db8::10/64"]));
        // no ips (or an empty list): no addressing at all
        for ips in [json!([]), json!(null)] {
            let eth = eth0(ips);
            for key in ["dhcp4", "dhcp6", "addresses"] {
                assert!(eth.get(key).is_none(), "{eth}");
            }
        }
    }

    #[test]
    fn nocloud_network_legacy_ip_netmask_and_gateway() {
        let nic = nic0(json!({"ip": "192.168.1.50", "netmask": "255.255.255.0", "gateway": "192.168.1.1"}));
        let eth = network(json!({"nics": [nic]}))["ethernets"]["eth0"].clone();
        assert_eq!(eth["addresses"], json!(["192.168.1.50/24"]));
        assert_eq!(eth["gateway4"], "192.168.1.1");
        let v6 = nic0(json!({"ips": ["2001:db8::10/64"], "gateway": "2001:db8::1"}));
        let eth = network(json!({"nics": [v6]}))["ethernets"]["eth0"].clone();
        assert_eq!(eth["gateway6"], "2001:db8::1");
        assert!(eth.get("gateway4").is_none());
        // ips win over ip/netmask; a netmask that is not one gives no address
        let both = nic0(json!({"ips": ["10.0.0.5/24"], "ip": "192.168.1.50", "netmask": "255.255.0.0"}));
        assert_eq!(network(json!({"nics": [both]}))["ethernets"]["eth0"]["addresses"], json!(["10.0.0.5/24"]));
        let bad = nic0(json!({"ip": "192.168.1.50", "netmask": "garbage"}));
        assert!(network(json!({"nics": [bad]}))["ethernets"]["eth0"].get("addresses").is_none());
        let wide = nic0(json!({"ip": "10.1.2.3", "netmask": "255.0.0.0"}));
        assert_eq!(network(json!({"nics": [wide]}))["ethernets"]["eth0"]["addresses"], json!(["10.1.2.3/8"]));
    }

    #[test]
    fn nocloud_network_gateways_and_resolvers_only_on_the_primary_nic() {
        let two = |primary0: bool| {
            let mut a = json!({"interface": "eth0", "mac": "02:08:20:AC:E1:00", "ips": ["10.0.0.10/24"],
                               "gateways": ["10.0.0.1"]});
            let mut b = json!({"interface": "eth1", "mac": "02:08:20:AC:E1:01", "ips": ["172.16.0.10/16"],
                               "gateways": ["172.16.0.1"]});
            if primary0 {
                a["primary"] = json!(true)
            } else {
                b["primary"] = json!(true)
            }
            network(json!({"resolvers": ["8.8.8.8"], "nics": [a, b]}))
        };
        let net = two(true);
        assert_eq!(net["ethernets"]["eth0"]["gateway4"], "10.0.0.1");
        assert_eq!(net["ethernets"]["eth0"]["nameservers"], json!({"addresses": ["8.8.8.8"]}));
        assert!(net["ethernets"]["eth1"].get("gateway4").is_none(), "{net}");
        assert!(net["ethernets"]["eth1"].get("nameservers").is_none(), "{net}");
        let net = two(false);
        assert!(net["ethernets"]["eth0"].get("gateway4").is_none(), "{net}");
        assert!(net["ethernets"]["eth0"].get("nameservers").is_none(), "{net}");
        assert_eq!(net["ethernets"]["eth1"]["gateway4"], "172.16.0.1");
        assert_eq!(net["ethernets"]["eth1"]["nameservers"], json!({"addresses": ["8.8.8.8"]}));
        // IPv4 and IPv6 gateways side by side
        let nic = nic0(json!({"ips": ["10.0.0.10/24", "2001:db8::10/64"], "gateways": ["10.0.0.1", "2001:db8::1"]}));
        let eth = network(json!({"nics": [nic]}))["ethernets"]["eth0"].clone();
        assert_eq!((eth["gateway4"].as_str(), eth["gateway6"].as_str()), (Some("10.0.0.1"), Some("2001:db8::1")));
        // no primary NIC: nobody gets them; no resolvers: no nameservers
        let nic = json!({"interface": "eth0", "ips": ["10.0.0.10/24"], "gateways": ["10.0.0.1"]});
        let eth = network(json!({"resolvers": ["8.8.8.8"], "nics": [nic]}))["ethernets"]["eth0"].clone();
        assert!(eth.get("gateway4").is_none() && eth.get("nameservers").is_none(), "{eth}");
        for resolvers in [json!([]), json!(null)] {
            let nic = nic0(json!({"ips": ["10.0.0.10/24"]}));
            let eth = network(json!({"resolvers": resolvers, "nics": [nic]}))["ethernets"]["eth0"].clone();
            assert!(eth.get("nameservers").is_none(), "{eth}");
        }
    }

    #[test]
    fn nocloud_network_several_nics_names_and_macs() {
        let net = network(json!({"nics": [
            nic0(json!({"ips": ["10.0.0.10/24"]})),
            {"interface": "eth1", "mac": "02:08:20:AC:E1:01", "ips": ["172.16.0.10/16"]},
            {"interface": "eth2", "mac": "02:08:20:AC:E1:02", "ips": ["192.168.1.10/24"]},
        ]}));
        let eths = net["ethernets"].as_object().unwrap();
        assert_eq!(eths.keys().collect::<Vec<_>>(), ["eth0", "eth1", "eth2"]);
        for (i, (name, eth)) in eths.iter().enumerate() {
            assert_eq!(eth["match"]["macaddress"], format!("02:08:20:ac:e1:0{i}"));
            assert_eq!(&eth["set-name"], name);
        }
        // no MAC: no match and no rename; no interface: eth0; nothing: an empty mapping
        let net = network(json!({"nics": [{"ips": ["10.0.0.10/24"]}]}));
        assert_eq!(net["ethernets"], json!({"eth0": {"addresses": ["10.0.0.10/24"]}}));
        let net = network(json!({"nics": [{"mac": "02:08:20:AC:E1:00"}]}));
        assert_eq!(net["ethernets"]["eth0"], json!({"match": {"macaddress": "02:08:20:ac:e1:00"}, "set-name": "eth0"}));
        let doc = seed_of(json!({"nics": [{"interface": "net0"}]})).network_config.unwrap();
        reads_as(&doc, &json!({"version": 2, "ethernets": {"net0": {}}}));
        // one interface name twice: the later NIC, in the earlier one's place
        let net = network(json!({"nics": [
            {"interface": "eth0", "ips": ["10.0.0.1/24"]},
            {"interface": "eth1", "ips": ["10.0.1.1/24"]},
            {"interface": "eth0", "ips": ["10.0.2.1/24"]},
        ]}));
        assert_eq!(
            net["ethernets"],
            json!({"eth0": {"addresses": ["10.0.2.1/24"]}, "eth1": {"addresses": ["10.0.1.1/24"]}})
        );
        assert!(seed_of(json!({"nics": [nic0(json!({}))]})).network_config.unwrap().ends_with('\n'));
    }

    #[test]
    fn nocloud_network_none_without_nics() {
        assert_eq!(seed_of(json!({})).network_config, None);
        assert_eq!(seed_of(json!({"nics": []})).network_config, None);
        assert_eq!(seed_of(json!({"nics": ["eth0", 3]})).network_config, None, "no NIC objects");
        assert_eq!(seed_of(json!({"nics": [], "resolvers": ["8.8.8.8"]})).network_config, None);
    }

    #[test]
    fn nocloud_network_config_override_is_written_as_given() {
        let given = "version: 2\nethernets:\n  enp0s3:\n    dhcp4: true\n";
        let nics = json!([nic0(json!({"ips": ["10.0.0.10/24"]}))]);
        let with = |v: Value, nics: &Value| {
            seed_of(json!({"nics": nics, "customer_metadata": {"cloud-init:network-config": v}})).network_config
        };
        assert_eq!(with(json!(given), &nics).as_deref(), Some(given));
        assert_eq!(with(json!(given), &json!([])).as_deref(), Some(given), "also without NICs");
        assert_eq!(with(json!(""), &nics).as_deref(), Some(""), "an empty override is an empty file");
        assert_eq!(with(json!(["x"]), &nics), None, "an override that is not a string writes nothing");
        // the override does not touch the other files
        let seed = seed_of(json!({"customer_metadata": {"cloud-init:network-config": given}}));
        assert_eq!(seed.user_data.as_deref(), Some(DEFAULT_USER_DATA));
    }

    // ---- hostile values ----

    #[test]
    fn nocloud_yaml_quoting_escapes_what_could_break_a_line_or_a_reader() {
        assert_eq!(quoted("eth0"), "\"eth0\"");
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("a\nb\r\tc\0"), r#""a\nb\r\tc\x00""#);
        assert_eq!(quoted("\u{7f}\u{85}\u{9f}\u{a0}"), "\"\\x7f\\x85\\x9f\u{a0}\"");
        assert_eq!(quoted("\u{2028}\u{2029}\u{feff}\u{fffe}\u{ffff}"), r#""\u2028\u2029\ufeff\ufffe\uffff""#);
        assert_eq!(quoted("日本 ü 😀 # : - {}"), "\"日本 ü 😀 # : - {}\"");
        let every: String = (0u32..0x3000).chain(0xfff0..0x10000).filter_map(char::from_u32).collect();
        let doc = format!("k: {}\n", quoted(&every));
        reads_as(&doc, &json!({"k": every}));
    }

    #[test]
    fn nocloud_hostile_values_read_back_as_themselves() {
        let hostname = "web\"01: {evil: 1}\n# not a comment\ninstance-id: hijacked ü 日本 😀 \u{2028}\u{85} \t\\ '\r\0\u{7f}\u{feff} &a *a !!python/object:os.system";
        let uuid = "1:2:3:4:5:6:7:8";
        let iface = "eth0\": {}\n  injected:\n    dhcp4: true";
        let mac = "00:11:22:33:44:55\n    set-name: EVIL # x";
        let ips = [
            "1:2:3:4:5:6:7:8",
            "10.0.0.1/24 # comment",
            "- item",
            "&anchor",
            "*alias",
            "!!binary AAAA",
            "{a: b}",
            "[x]",
            "'",
            "%TAG ! x",
            "@",
            "`",
            "0x10",
            "1e3",
            "12:30",
            "2001-12-14",
            "",
            " ",
        ];
        let others = ["yes", "no", "on", "off", "true", "null", "~", "1_000", ".inf", "0o17", "2001:db8::1"];
        let mut nics = vec![json!({"interface": iface, "mac": mac, "ips": ips, "primary": true,
                                    "gateways": ["1:2:3:4:5:6:7:9", "10.0.0.1\" #\n- 6.6.6.6"]})];
        for (i, name) in others.iter().enumerate() {
            nics.push(json!({"interface": name, "mac": name, "ips": [name], "gateways": [name]}));
            assert!(i < 100);
        }
        let resolvers = json!(["null", "~", "8.8.8.8\n        - 6.6.6.6", "#"]);
        let seed = seed_of(json!({"uuid": uuid, "hostname": hostname, "nics": nics, "resolvers": resolvers}));

        let meta = json!({"instance-id": uuid, "local-hostname": hostname});
        let mut ethernets = Map::new();
        ethernets.insert(
            iface.to_string(),
            json!({
                "match": {"macaddress": mac.to_lowercase()},
                "set-name": iface,
                "addresses": ips,
                "gateway4": "10.0.0.1\" #\n- 6.6.6.6",
                "gateway6": "1:2:3:4:5:6:7:9",
                "nameservers": {"addresses": resolvers},
            }),
        );
        for name in others {
            ethernets.insert(
                name.to_string(),
                json!({"match": {"macaddress": name.to_lowercase()}, "set-name": name, "addresses": [name]}),
            );
        }
        let net = json!({"version": 2, "ethernets": ethernets});
        let network_config = seed.network_config.clone().unwrap();
        assert_eq!(yaml(&seed.meta_data), meta, "yaml-rust2 reading\n{}", seed.meta_data);
        assert_eq!(yaml(&network_config), net, "yaml-rust2 reading\n{network_config}");
        if let Some(read) = pyyaml(&[&seed.meta_data, &network_config]) {
            assert_eq!(read[0], meta, "PyYAML reading\n{}", seed.meta_data);
            assert_eq!(read[1], net, "PyYAML reading\n{network_config}");
        }
    }

    // ---- digest ----

    #[test]
    fn nocloud_digest_is_stable_and_covers_every_file() {
        let base = seed_of(json!({"hostname": "h", "nics": [nic0(json!({"ips": ["dhcp"]}))]}));
        assert_eq!(digest(&base), digest(&base.clone()));
        assert_eq!(digest(&base).len(), 40);
        assert!(digest(&base).bytes().all(|b| b.is_ascii_hexdigit()));
        // pinned: a change here rewrites every seed disk once; make it on purpose (see LAYOUT)
        let fixed = Seed { meta_data: "m".into(), user_data: None, network_config: None, vendor_data: None };
        assert_eq!(digest(&fixed), "4fd302622645de14fe3d8e2e285cf8152e83a594");
        let variants = [
            Seed { meta_data: "x".into(), ..base.clone() },
            Seed { user_data: None, ..base.clone() },
            Seed { user_data: Some(String::new()), ..base.clone() },
            Seed { network_config: None, ..base.clone() },
            Seed { network_config: Some(String::new()), ..base.clone() },
            Seed { vendor_data: Some(String::new()), ..base.clone() },
            Seed { vendor_data: Some("v".into()), ..base.clone() },
            // the same bytes in another file
            Seed { user_data: None, vendor_data: base.user_data.clone(), ..base.clone() },
        ];
        let mut seen = BTreeMap::new();
        seen.insert(digest(&base), "base".to_string());
        for v in &variants {
            assert!(seen.insert(digest(v), format!("{v:?}")).is_none(), "{v:?} collides");
        }
        // what changes nothing in the files changes nothing in the digest
        let same = seed_of(json!({"hostname": "h", "alias": "other", "routes": {"10.0.0.0/8": "10.0.0.1"},
                                  "nics": [nic0(json!({"ips": ["dhcp"], "nic_tag": "x"}))]}));
        assert_eq!(digest(&same), digest(&base));
    }

    // ---- the image ----

    struct Read {
        boot_label: String,
        root_label: Option<String>,
        fat: fatfs::FatType,
        files: BTreeMap<String, Vec<u8>>,
    }

    fn read_image(path: &Path) -> Read {
        let file = fs::File::open(path).unwrap();
        let fs = fatfs::FileSystem::new(file, fatfs::FsOptions::new()).unwrap();
        let mut files = BTreeMap::new();
        for entry in fs.root_dir().iter() {
            let entry = entry.unwrap();
            assert!(entry.is_file(), "only files in the root: {}", entry.file_name());
            let mut content = Vec::new();
            io::Read::read_to_end(&mut entry.to_file(), &mut content).unwrap();
            files.insert(entry.file_name(), content);
        }
        Read {
            boot_label: fs.volume_label(),
            root_label: fs.read_volume_label_from_root_dir().unwrap(),
            fat: fs.fat_type(),
            files,
        }
    }

    fn expected_files(seed: &Seed) -> BTreeMap<String, Vec<u8>> {
        seed.files().into_iter().map(|(n, c)| (n.to_string(), c.as_bytes().to_vec())).collect()
    }

    fn full_seed() -> Seed {
        seed_of(json!({
            "hostname": "integration-test-vm",
            "resolvers": ["1.1.1.1", "9.9.9.9"],
            "nics": [nic0(json!({"ips": ["10.0.0.10/24"], "gateways": ["10.0.0.1"]}))],
            "customer_metadata": {
                "cloud-init:user-data": "#cloud-config\npackage_upgrade: true\n",
                "cloud-init:vendor-data": "#cloud-config\nruncmd: [echo vendor]\n",
            },
        }))
    }

    #[test]
    fn nocloud_image_holds_the_four_files_under_the_cidata_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cidata.img");
        let seed = full_seed();
        assert_eq!(seed.files().len(), 4);
        write_image(&seed, &path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), IMAGE_BYTES, "SmartOS's 16 MiB");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let read = read_image(&path);
        assert_eq!(read.boot_label, "cidata");
        assert_eq!(read.root_label.as_deref(), Some("cidata"));
        assert_eq!(read.fat, fatfs::FatType::Fat16);
        assert_eq!(read.files, expected_files(&seed));
        // no partition table: the FAT boot sector is sector 0
        let image = fs::read(&path).unwrap();
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        assert_eq!(&image[54..62], b"FAT16   ");
        // sparse where zero
        let blocks = std::os::unix::fs::MetadataExt::blocks(&meta);
        assert!(blocks * 512 < IMAGE_BYTES / 2, "{blocks} blocks allocated");
    }

    #[test]
    fn nocloud_image_only_the_files_present_and_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let seed = seed_of(json!({"customer_metadata": {"cloud-init:user-data": ""}}));
        assert_eq!(seed.files().len(), 1);
        let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
        write_image(&seed, &a).unwrap();
        write_image(&seed, &b).unwrap();
        assert_eq!(read_image(&a).files, expected_files(&seed));
        assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "one seed, the same bytes");
        let empty_file = Seed { network_config: Some(String::new()), ..seed };
        write_image(&empty_file, &a).unwrap();
        assert_eq!(read_image(&a).files["network-config"], b"");
    }

    #[test]
    fn nocloud_image_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cidata.img");
        let first = seed_of(json!({"hostname": "initial-host", "nics": [nic0(json!({"ips": ["10.0.0.10/24"]}))]}));
        write_image(&first, &path).unwrap();
        let link = dir.path().join("held-open");
        fs::hard_link(&path, &link).unwrap();
        let second = full_seed();
        write_image(&second, &path).unwrap();
        assert_eq!(read_image(&path).files, expected_files(&second));
        assert_eq!(
            read_image(&link).files,
            expected_files(&first),
            "the old inode is untouched (a rename, not a rewrite)"
        );
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["cidata.img", "held-open"], "no temporary file left behind");
        let err = write_image(&second, &dir.path().join("missing/cidata.img")).unwrap_err();
        assert!(err.to_string().contains("missing/cidata.img"), "{err}");
    }

    #[test]
    fn nocloud_image_grows_to_fit_a_huge_user_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cidata.img");
        let line = "#cloud-config\nwrite_files: [{path: /x, content: \"ü\\n\"}]\n";
        let mib: String = line.repeat((1 << 20) / line.len() + 1);
        let seed = seed_of(json!({"customer_metadata": {"cloud-init:user-data": mib}}));
        write_image(&seed, &path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), IMAGE_BYTES, "1 MiB fits in SmartOS's size");
        assert_eq!(read_image(&path).files, expected_files(&seed));
        // around and past what 16 MiB holds
        for len in [IMAGE_BYTES - (600 << 10), IMAGE_BYTES - (100 << 10), IMAGE_BYTES + 1, 40 << 20] {
            let big = "x".repeat(len as usize);
            let seed = Seed { user_data: Some(big), ..seed.clone() };
            write_image(&seed, &path).unwrap();
            let size = fs::metadata(&path).unwrap().len();
            assert!(size >= IMAGE_BYTES && size / MIB * MIB == size, "{len}: {size}");
            if len > IMAGE_BYTES {
                assert!(size > len && size <= len + len / 16 + 2 * MIB, "{len}: {size} is not a tight fit");
            }
            assert_eq!(read_image(&path).files, expected_files(&seed), "{len}");
        }
    }

    #[test]
    fn nocloud_image_every_size_it_may_pick_formats() {
        // image_bytes gives whole MiB from 16 up; FAT refuses some volume
        // sizes (cluster counts between FAT16 and FAT32), none of these.
        for mib in 16..=1100u64 {
            let size = mib * MIB;
            let mut image = vec![0u8; size as usize];
            let options = fatfs::FormatVolumeOptions::new().total_sectors((size / SECTOR_BYTES) as u32);
            fatfs::format_volume(Cursor::new(image.as_mut_slice()), options)
                .unwrap_or_else(|e| panic!("{mib} MiB: {e}"));
        }
    }

    /// Runs a command, returning its stdout; panics with its stderr.
    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn installed(cmd: &str) -> bool {
        Command::new(cmd).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
    }

    #[test]
    fn nocloud_image_other_fat_readers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cidata.img");
        let seed = full_seed();
        write_image(&seed, &path).unwrap();
        let img = path.to_str().unwrap();
        if installed("fsck.fat") {
            let check = run("fsck.fat", &["-n", "-v", img]);
            assert!(check.contains("2 FATs, 16 bit entries"), "{check}");
        } else {
            eprintln!("skipping the fsck.fat check: dosfstools is not installed");
        }
        if installed("mtype") {
            for (name, content) in seed.files() {
                let read = run("mtype", &["-i", img, &format!("::/{name}")]);
                assert_eq!(read, content, "mtype ::/{name}");
            }
            let label = run("mlabel", &["-i", img, "-s", "::"]);
            assert!(label.contains("cidata"), "{label}");
        } else {
            eprintln!("skipping the mtools check: mtools is not installed");
        }
    }

    struct Unmount<'a>(&'a Path);

    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }

    #[test]
    fn nocloud_image_the_kernel_reads_it() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: blkid -p and mount -o loop need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cidata.img");
        let seed = full_seed();
        write_image(&seed, &path).unwrap();
        let img = path.to_str().unwrap();
        let probe = run("blkid", &["-p", img]);
        assert!(probe.contains(r#"LABEL="cidata""#) && probe.contains(r#"TYPE="vfat""#), "{probe}");
        assert!(probe.contains(r#"VERSION="FAT16""#), "{probe}");
        let filesystems = fs::read_to_string("/proc/filesystems").unwrap();
        if !filesystems.split_whitespace().any(|fs| fs == "vfat") {
            eprintln!("skipping the mount check: this kernel has no vfat filesystem (CONFIG_VFAT_FS)");
            return;
        }
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        run("mount", &["-o", "loop,ro", img, mnt.to_str().unwrap()]);
        let _unmount = Unmount(&mnt);
        let mut files = BTreeMap::new();
        for entry in fs::read_dir(&mnt).unwrap() {
            let entry = entry.unwrap();
            files.insert(entry.file_name().into_string().unwrap(), fs::read(entry.path()).unwrap());
        }
        assert_eq!(files, expected_files(&seed));
    }
}
