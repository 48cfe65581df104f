//! `vmadm send` and `vmadm receive`: an instance, its configuration, its
//! data and its snapshots, as one stream (`zonevisor_api::stream`), from
//! one host's pool to another's.
//!
//! ```text
//! send <uuid> [-i base]                       receive (stream on the request body)
//!   lock: row, snapshots; a running VM          magic, H: header -> checks (a create's,
//!     paused; temporary snapshot vmsend-<n>       or the copy and its base) -> row
//!   H: the stored object, snapshots, base         `provisioning` (whole)
//!   per snapshot (oldest first, after base),    per section: S -> btrfs receive into
//!     then vmsend-<n>: S, D..., F  (btrfs send    hidden staging (each stream guarded)
//!     -p <the one before>)                        D... F
//!   Z: SHA-256 of all before                    Z: the digest matches, nothing after
//!   vmsend-<n> destroyed (also on failure,      commit: staged -> snapshots, dataset;
//!     and at the daemon's next start)             quota, NICs, row `ready` (whole) or
//!                                                 the copy rolled forward (incremental)
//!                                               any failure: staging, dataset and row gone
//! ```
//!
//! A whole stream makes a new instance with the sender's uuid (refused
//! when the uuid is taken) and the same checks as `vmadm create` (its
//! images installed here, its NIC tags here, its addresses free). An
//! incremental stream (`vmadm send -i <snapshot>`) updates a stopped copy
//! received earlier that still has that snapshot: its newer snapshots
//! arrive, and its dataset, tags, metadata and routes become the sender's.
//! Nothing a receive stages is visible before the stream's digest is
//! verified; a receive that fails, or a daemon that dies during one, leaves
//! nothing (a whole receive's `provisioning` row is rolled back at start
//! with all it made; an incremental one's staging is dropped).

use std::io::Read;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zonevisor_api::stream::{self, kind, SectionEnd, SectionHeader, StreamHeader};
use zonevisor_api::{ApiError, Changed, InstanceUuid, Snapshot, ValidationErrors};
use zonevisor_pool::Received;

use super::driver::driver_of;
use super::host::Section;
use super::snapshot::PREFIX;
use super::spec::InstanceSpec;
use super::{has_nics, parse_uuid, str_of, timestamp};
use crate::Daemon;

/// The prefix of the temporary snapshot a send takes of the instance's
/// state (never listed; destroyed when the send ends, or at start).
pub(crate) const SEND_PREFIX: &str = "vmsend-";

/// Properties of a stored object that are this host's, not the instance's:
/// a receive sets its own.
const HOST_LOCAL: &[&str] = &[
    "state",
    "zone_state",
    "pid",
    "zoneid",
    "zonedid",
    "zonepath",
    "zonename",
    "zpool",
    "type",
    "create_timestamp",
    "boot_timestamp",
    "last_modified",
    "exit_status",
    "exit_timestamp",
    "exit_reason",
    "server_uuid",
    "platform_buildstamp",
    "hvm",
    "datasets",
    "snapshots",
    "transition_to",
    "transition_expire",
    "init_restarts",
    "free_space",
    "zfs_filesystem",
    "v",
];

/// What an incremental receive takes from the sender besides the data:
/// what SmartOS keeps in the dataset (as a rollback does).
const ROLLED_FORWARD: [&str; 4] = ["tags", "customer_metadata", "internal_metadata", "routes"];

/// Writes frames, hashing every byte.
struct Framer<'a> {
    out: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    hash: Sha256,
    bytes: u64,
}

impl Framer<'_> {
    fn raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.bytes += b.len() as u64;
        (self.out)(b)
    }

    fn frame(&mut self, k: u8, payload: &[u8]) -> std::io::Result<()> {
        self.raw(&stream::frame_header(k, payload.len()))?;
        self.raw(payload)
    }

    fn json(&mut self, k: u8, v: &impl serde::Serialize) -> std::io::Result<()> {
        self.frame(k, &serde_json::to_vec(v).unwrap_or_default())
    }
}

/// Why a send stopped: the client went away, or something failed.
enum Stop {
    Client(std::io::Error),
    Failed(ApiError),
}

/// A send ready to stream: the header and sections are known and the
/// temporary snapshot taken; dropped, it destroys that snapshot.
pub(crate) struct SendPlan<'a> {
    d: &'a Daemon,
    dataset: String,
    header: StreamHeader,
    sections: Vec<SectionHeader>,
    temp: String,
}

impl Drop for SendPlan<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.d.host.destroy_snapshot(&self.dataset, &self.temp) {
            tracing::warn!(dataset = self.dataset, snapshot = self.temp, error = %e.message, "destroying a send's snapshot");
        }
    }
}

impl SendPlan<'_> {
    /// Streams the instance to `out`; returns the stream's length. An
    /// error after the first bytes went out also ends the stream with an
    /// `E` frame saying why (when the client is still there to read it).
    pub(crate) fn run(self, out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> Result<u64, ApiError> {
        let mut f = Framer { out, hash: Sha256::new(), bytes: 0 };
        match self.stream(&mut f) {
            Ok(()) => Ok(f.bytes),
            Err(Stop::Client(e)) => Err(ApiError::internal(format!("the receiving side went away: {e}"))),
            Err(Stop::Failed(e)) => {
                let _ = (f.out)(
                    &[stream::frame_header(kind::ERROR, e.message.len()).as_slice(), e.message.as_bytes()].concat(),
                );
                Err(e)
            }
        }
    }

    fn stream(&self, f: &mut Framer) -> Result<(), Stop> {
        f.raw(stream::MAGIC).map_err(Stop::Client)?;
        f.json(kind::HEADER, &self.header).map_err(Stop::Client)?;
        for section in &self.sections {
            f.json(kind::SECTION, section).map_err(Stop::Client)?;
            let mut client: Option<std::io::Error> = None;
            let mut data = |b: &[u8]| -> std::io::Result<()> {
                for chunk in b.chunks(stream::MAX_DATA) {
                    if let Err(e) = f.frame(kind::DATA, chunk) {
                        client = Some(std::io::Error::new(e.kind(), e.to_string()));
                        return Err(e);
                    }
                }
                Ok(())
            };
            let sent =
                self.d.host.send_snapshot(&self.dataset, &section.snapshot, section.parent.as_deref(), &mut data);
            if let Some(e) = client {
                return Err(Stop::Client(e));
            }
            let bytes = sent.map_err(Stop::Failed)?;
            f.json(kind::SECTION_END, &SectionEnd { bytes }).map_err(Stop::Client)?;
        }
        let digest = f.hash.clone().finalize();
        f.raw(&stream::frame_header(kind::END, digest.len())).map_err(Stop::Client)?;
        (f.out)(&digest).map_err(Stop::Client)
    }
}

/// Reads frames, hashing every byte before the `Z` frame.
struct Reader<'a> {
    input: &'a mut dyn Read,
    hash: Sha256,
}

fn cut_short() -> ApiError {
    ApiError::invalid("the send stream ended early (cut short): nothing was received")
}

impl Reader<'_> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), ApiError> {
        let mut at = 0;
        while at < buf.len() {
            match self.input.read(&mut buf[at..]) {
                Ok(0) => return Err(cut_short()),
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ApiError::invalid(format!("reading the send stream: {e}"))),
            }
        }
        Ok(())
    }

    fn hashed(&mut self, buf: &mut [u8]) -> Result<(), ApiError> {
        self.exact(buf)?;
        self.hash.update(&*buf);
        Ok(())
    }

    /// The next frame's kind and length. A `Z` frame's header is not hashed
    /// (the digest covers what comes before it); an `E` frame is the
    /// sender's failure.
    fn next(&mut self) -> Result<(u8, usize), ApiError> {
        let mut h = [0u8; stream::FRAME_HEADER];
        self.exact(&mut h)?;
        let (k, len) = (h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize);
        let limit = if k == kind::DATA { stream::MAX_DATA } else { stream::MAX_META };
        if !b"HSDFEZ".contains(&k) || len > limit {
            return Err(ApiError::invalid(format!(
                "the send stream is corrupted: a frame of kind {k:#04x} and {len} bytes"
            )));
        }
        if k == kind::ERROR {
            let mut m = vec![0u8; len];
            self.exact(&mut m)?;
            return Err(ApiError::invalid(format!("the sending side failed: {}", String::from_utf8_lossy(&m))));
        }
        if k != kind::END {
            self.hash.update(h);
        }
        Ok((k, len))
    }

    /// The next frame, which must be a JSON frame of kind `want`.
    fn meta<T: serde::de::DeserializeOwned>(&mut self, want: u8, what: &str) -> Result<T, ApiError> {
        let (k, len) = self.next()?;
        if k != want {
            return Err(ApiError::invalid(format!(
                "the send stream is corrupted: {what} expected, a frame of kind {:?} found",
                k as char
            )));
        }
        let mut b = vec![0u8; len];
        self.hashed(&mut b)?;
        serde_json::from_slice(&b)
            .map_err(|e| ApiError::invalid(format!("the send stream is corrupted: its {what} is not valid: {e}")))
    }

    /// The `Z` frame: the digest matches what came, and nothing follows.
    fn end(&mut self) -> Result<(), ApiError> {
        let (k, len) = self.next()?;
        if k != kind::END || len != stream::DIGEST_LEN {
            return Err(ApiError::invalid("the send stream is corrupted: its end is missing"));
        }
        let want = self.hash.clone().finalize();
        let mut got = [0u8; stream::DIGEST_LEN];
        self.exact(&mut got)?;
        if got[..] != want[..] {
            return Err(ApiError::invalid(
                "the send stream is corrupted: its digest does not match what came (nothing was received)",
            ));
        }
        let mut more = [0u8; 1];
        match self.input.read(&mut more) {
            Ok(0) => Ok(()),
            _ => Err(ApiError::invalid("the send stream is corrupted: bytes after its end")),
        }
    }
}

/// Checks section `i` (of `total`) of a stream: a snapshot name, `vmsnap-`
/// but for the last (`vmsend-`), from the one before (`parent`; the
/// first: the base).
fn check_section(i: usize, total: usize, s: &SectionHeader, parent: Option<&str>) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::invalid(format!("the send stream is corrupted: {why}"));
    zonevisor_pool::check_snapshot_name(&s.snapshot).map_err(|e| bad(e.to_string()))?;
    let prefix = if i + 1 == total { SEND_PREFIX } else { PREFIX };
    if !s.snapshot.starts_with(prefix) {
        return Err(bad(format!("section {} makes {}", i + 1, s.snapshot)));
    }
    if s.parent.as_deref() != parent {
        return Err(bad(format!("section {} is not from the one before", i + 1)));
    }
    Ok(())
}

/// [`check_section`] of a whole list.
#[cfg(test)]
fn check_sections(sections: &[SectionHeader], base: Option<&str>) -> Result<(), ApiError> {
    if sections.is_empty() {
        return Err(ApiError::invalid("the send stream is corrupted: no sections"));
    }
    let mut parent = base.map(|b| format!("{PREFIX}{b}"));
    for (i, s) in sections.iter().enumerate() {
        check_section(i, sections.len(), s, parent.as_deref())?;
        parent = Some(s.snapshot.clone());
    }
    Ok(())
}

impl Daemon {
    /// `vmadm send`: checks what is asked and takes the instance's state
    /// as a temporary snapshot (a running VM paused for it); the stream is
    /// [`SendPlan::run`]'s.
    pub(crate) fn prepare_send(&self, uuid: &str, base: Option<&str>) -> Result<SendPlan<'_>, ApiError> {
        if let Some(b) = base {
            super::snapshot::check_name(b)?;
        }
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let vm = self.vm_row(uuid)?;
        let spec = InstanceSpec::from_vm(&vm)?;
        let dataset = spec.dataset();
        let snaps: Vec<_> =
            self.host.list_snapshots(&dataset)?.into_iter().filter(|s| s.name.starts_with(PREFIX)).collect();
        let chain: Vec<_> = match base {
            None => snaps.iter().collect(),
            Some(b) => {
                let full = format!("{PREFIX}{b}");
                let at = snaps
                    .iter()
                    .position(|s| s.name == full)
                    .ok_or_else(|| ApiError::not_found(format!("No snapshot named \"{b}\" for {uuid}")))?;
                snaps[at + 1..].iter().collect()
            }
        };
        let temp = format!(
            "{SEND_PREFIX}{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        );
        let resume = match self.is_running(uuid) {
            true => driver_of(&spec.kind).pause(self, &spec)?,
            false => None,
        };
        let taken = self.host.snapshot_dataset(&dataset, &temp);
        if let Some(resume) = resume {
            if let Err(e) = resume().or_else(|_| resume()) {
                if taken.is_ok() {
                    let _ = self.host.destroy_snapshot(&dataset, &temp);
                }
                return Err(e);
            }
        }
        taken?;
        let mut parent = base.map(|b| format!("{PREFIX}{b}"));
        let mut sections = Vec::new();
        for name in chain.iter().map(|s| s.name.clone()).chain([temp.clone()]) {
            sections.push(SectionHeader { snapshot: name.clone(), parent: parent.replace(name) });
        }
        let snapshots = chain
            .iter()
            .map(|s| Snapshot {
                name: s.name.trim_start_matches(PREFIX).to_string(),
                created_at: humantime::format_rfc3339_millis(s.created).to_string(),
            })
            .collect();
        let header = StreamHeader {
            version: stream::VERSION,
            uuid: uuid.to_string(),
            vm,
            snapshots,
            base: base.map(str::to_string),
            sections: sections.len() as u32,
        };
        tracing::info!(vm = %uuid, base, sections = sections.len(), "sending VM");
        Ok(SendPlan { d: self, dataset, header, sections, temp })
    }

    /// `vmadm receive`: the stream from `input`, a new instance (a whole
    /// stream) or its copy brought up to date (an incremental one).
    pub fn receive_vm(&self, input: &mut dyn Read) -> Result<Changed, ApiError> {
        let mut r = Reader { input, hash: Sha256::new() };
        let mut magic = [0u8; 8];
        r.hashed(&mut magic)?;
        if &magic != stream::MAGIC {
            return Err(ApiError::invalid("not a vmadm send stream (no ZVSEND01 at its start)"));
        }
        let header: StreamHeader = r.meta(kind::HEADER, "header")?;
        if header.version != stream::VERSION {
            return Err(ApiError::unsupported(format!(
                "a send stream of version {} (this host reads version {})",
                header.version,
                stream::VERSION
            )));
        }
        let uuid: InstanceUuid = header
            .uuid
            .parse()
            .map_err(|_| ApiError::invalid(format!("the send stream names no VM ({:?} is not a UUID)", header.uuid)))?;
        if str_of(&header.vm, "uuid") != Some(&header.uuid) {
            return Err(ApiError::invalid("the send stream is corrupted: its VM object is not the VM it names"));
        }
        match header.base.clone() {
            None => self.receive_whole(uuid, header, &mut r),
            Some(base) => self.receive_onto(uuid, &base, header, &mut r),
        }
    }

    /// Receives every section of the stream into `dataset`'s staging;
    /// returns what to commit once the digest matched: each snapshot, dated
    /// as the header says it was taken.
    fn receive_sections(
        &self,
        dataset: &str,
        header: &StreamHeader,
        r: &mut Reader,
    ) -> Result<Vec<Received>, ApiError> {
        let total = header.sections as usize;
        if total == 0 {
            return Err(ApiError::invalid("the send stream is corrupted: no sections"));
        }
        let mut sections: Vec<SectionHeader> = Vec::new();
        self.host.begin_receive(dataset)?;
        for i in 0..total {
            let s: SectionHeader = r.meta(kind::SECTION, "section")?;
            let parent = match sections.last() {
                Some(prev) => Some(prev.snapshot.clone()),
                None => header.base.as_ref().map(|b| format!("{PREFIX}{b}")),
            };
            check_section(i, total, &s, parent.as_deref())?;
            sections.push(s.clone());
            let mut sink: Box<dyn Section> = self.host.receive_section(dataset, &s.snapshot, s.parent.as_deref())?;
            let mut received = 0u64;
            let mut buf = vec![0u8; stream::MAX_DATA];
            let end: SectionEnd = loop {
                let (k, len) = r.next()?;
                match k {
                    kind::DATA => {
                        r.hashed(&mut buf[..len])?;
                        sink.write(&buf[..len])?;
                        received += len as u64;
                    }
                    kind::SECTION_END => {
                        let mut b = vec![0u8; len];
                        r.hashed(&mut b)?;
                        break serde_json::from_slice(&b).map_err(|e| {
                            ApiError::invalid(format!("the send stream is corrupted: a section's end: {e}"))
                        })?;
                    }
                    other => {
                        return Err(ApiError::invalid(format!(
                            "the send stream is corrupted: a frame of kind {:?} inside a section",
                            other as char
                        )))
                    }
                }
            };
            if end.bytes != received {
                return Err(ApiError::invalid(format!(
                    "the send stream is corrupted: section {} says {} bytes, {received} came",
                    s.snapshot, end.bytes
                )));
            }
            sink.finish()?;
        }
        r.end()?;
        let created = |snapshot: &str| {
            let name = snapshot.strip_prefix(PREFIX)?;
            let s = header.snapshots.iter().find(|s| s.name == name)?;
            humantime::parse_rfc3339_weak(&s.created_at).ok()
        };
        Ok(sections
            .into_iter()
            .map(|s| Received { staged: s.snapshot.clone(), created: created(&s.snapshot), snapshot: s.snapshot })
            .collect())
    }

    /// A whole stream: a new instance, created as `vmadm create` would
    /// (the same checks), with the stream's data as its dataset.
    fn receive_whole(&self, uuid: InstanceUuid, header: StreamHeader, r: &mut Reader) -> Result<Changed, ApiError> {
        let name = uuid.to_string();
        let zonepath = self.pool.dataset_path(&name);
        let mut payload: serde_json::Map<String, Value> = header.vm.clone();
        for k in HOST_LOCAL {
            payload.remove(*k);
        }
        // A VM's disks are the stream's volumes, at this host's paths.
        if let Some(disks) = payload.get_mut("disks").and_then(Value::as_array_mut) {
            for disk in disks {
                let file = disk.get("path").and_then(Value::as_str).and_then(|p| std::path::Path::new(p).file_name());
                if let Some(file) = file.map(|f| f.to_string_lossy().into_owned()) {
                    if zonevisor_pool::check_volume_name(&file).is_ok() {
                        disk["path"] = json!(zonepath.join(&file).display().to_string());
                    }
                }
            }
        }
        let mut payload = Value::Object(payload);
        crate::net::fill_nic_defaults(&mut payload);
        let accepted = zonevisor_spec::accept_create(&payload).map_err(ApiError::validation)?;
        let (mut vm, warnings) = (accepted.vm, accepted.warnings);
        self.check_create_refs(&vm).map_err(|e| match e.bad_values.iter().any(|p| p == "uuid") {
            true => ApiError::conflict(format!(
                "VM {uuid} already exists on this host: a received VM keeps its uuid (delete it here first, or \
                 send it incrementally with vmadm send -i <snapshot>)"
            )),
            false => ApiError::validation(e),
        })?;
        let mut errs = ValidationErrors::default();
        self.check_nics(None, &vm, &mut errs);
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        let brand = str_of(&vm, "brand").unwrap_or_default().to_string();
        if !brand.parse().is_ok_and(super::runs) {
            return Err(ApiError::unsupported(format!("this host cannot run {brand} VMs: QEMU is not installed")));
        }
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let now = timestamp();
        let created = header.vm.get("create_timestamp").cloned().unwrap_or_else(|| json!(now));
        for (k, v) in [
            ("zonename", json!(name)),
            ("zonepath", json!(zonepath.display().to_string())),
            ("zpool", json!(self.pool.name())),
            ("state", json!("provisioning")),
            ("zone_state", json!("installed")),
            ("create_timestamp", created),
            ("last_modified", json!(now)),
        ] {
            vm.insert(k.to_string(), v);
        }
        self.store.insert_vm(uuid, "provisioning", &vm).map_err(|e| match e {
            crate::StoreError::UuidTaken { .. } => ApiError::conflict(e.to_string()),
            e => ApiError::from(e),
        })?;
        // From here a failure, or a crash, takes back everything: the row
        // (recovery rolls a `provisioning` one back), the staging, the dataset.
        let result = (|| {
            let moves = self.receive_sections(&name, &header, r)?;
            self.host.commit_receive(&name, &moves)?;
            let temp = moves.last().map(|m| m.snapshot.clone()).unwrap_or_default();
            self.host.destroy_snapshot(&name, &temp)?;
            let spec = InstanceSpec::from_vm(&vm)?;
            if let (Some(q), true) = (spec.quota_bytes, self.host.quotas()) {
                self.host.set_quota(&name, Some(q))?;
            }
            vm.insert("state".into(), json!("stopped"));
            self.store.put_vm(uuid, "provisioning", &vm)?;
            if has_nics(&vm) {
                self.reserve_nics(uuid, &vm)?;
                self.refresh_net();
            }
            self.store.put_vm(uuid, "ready", &vm)?;
            Ok::<_, ApiError>(())
        })();
        if let Err(e) = result {
            tracing::warn!(vm = %uuid, error = %e.message, "receive failed; nothing kept");
            self.rollback_vm(uuid, true);
            return Err(e);
        }
        self.events.created(&vm);
        tracing::info!(vm = %uuid, "received VM");
        Ok(Changed { vm: self.view(self.vm_row(uuid)?), warnings })
    }

    /// An incremental stream: the stopped copy here, which has the base,
    /// gets the newer snapshots and becomes the sender's state (its
    /// dataset, tags, metadata and routes). Its own snapshots newer than
    /// the base would be lost: it is refused while it has any.
    fn receive_onto(
        &self,
        uuid: InstanceUuid,
        base: &str,
        header: StreamHeader,
        r: &mut Reader,
    ) -> Result<Changed, ApiError> {
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.vm_row(uuid).map_err(|_| {
            ApiError::not_found(format!(
                "VM {uuid} does not exist on this host: an incremental stream (from snapshot {base}) updates a copy \
                 received earlier; send it whole first"
            ))
        })?;
        if self.is_running(uuid) {
            return Err(ApiError::conflict(format!("VM {uuid} is running: stop it before receiving into it")));
        }
        let spec = InstanceSpec::from_vm(&current)?;
        let dataset = spec.dataset();
        let mine: Vec<String> = self.host.list_snapshots(&dataset)?.into_iter().map(|s| s.name).collect();
        let at = mine
            .iter()
            .position(|s| *s == format!("{PREFIX}{base}"))
            .ok_or_else(|| ApiError::conflict(format!("VM {uuid} here has no snapshot {base} to receive onto")))?;
        let newer: Vec<&str> =
            mine[at + 1..].iter().filter(|s| s.starts_with(PREFIX)).map(|s| s.trim_start_matches(PREFIX)).collect();
        if !newer.is_empty() {
            return Err(ApiError::conflict(format!(
                "VM {uuid} here has snapshots newer than {base} ({}): delete them before receiving onto it",
                newer.join(", ")
            )));
        }
        let received = (|| {
            let moves = self.receive_sections(&dataset, &header, r)?;
            self.host.commit_receive(&dataset, &moves)?;
            Ok::<_, ApiError>(moves)
        })();
        let moves = match received {
            Ok(m) => m,
            Err(e) => {
                if let Err(u) = self.host.abandon_receive(&dataset) {
                    tracing::error!(vm = %uuid, error = %u.message, "abandoning a failed receive");
                }
                return Err(e);
            }
        };
        // The copy becomes the sender's state: a rollback to it.
        let temp = moves.last().map(|m| m.snapshot.clone()).unwrap_or_default();
        self.host.rollback_dataset(&dataset, &temp)?;
        let set: Vec<(&str, Value)> =
            ROLLED_FORWARD.iter().filter_map(|k| header.vm.get(*k).map(|v| (*k, v.clone()))).collect();
        let remove: Vec<&str> = ROLLED_FORWARD.iter().copied().filter(|k| !header.vm.contains_key(*k)).collect();
        let vm = self.set_fields(uuid, &set, &remove)?;
        if current.get("tags") != vm.get("tags") {
            self.refresh_net();
        }
        self.host.end_rollback(&dataset)?;
        self.host.destroy_snapshot(&dataset, &temp)?;
        tracing::info!(vm = %uuid, base, "received VM incrementally");
        Ok(Changed { vm: self.view(vm), warnings: Vec::new() })
    }

    /// Start-up: destroys what sends and receives a dying daemon left: the
    /// temporary snapshots of sends, and receives staged for instances
    /// that exist (a whole receive's instance is rolled back with its
    /// `provisioning` row).
    pub(crate) fn recover_transfers(&self) {
        if let Ok(pending) = self.host.pending_receives() {
            for dataset in pending {
                let ready = dataset
                    .parse::<InstanceUuid>()
                    .ok()
                    .and_then(|u| self.store.get_vm(u).ok().flatten())
                    .is_some_and(|r| r.phase == "ready");
                if ready {
                    tracing::warn!(dataset, "dropping what an interrupted receive staged");
                    if let Err(e) = self.host.abandon_receive(&dataset) {
                        tracing::error!(dataset, error = %e.message, "dropping an interrupted receive");
                    }
                }
            }
        }
        for row in self.store.list_vms().unwrap_or_default() {
            let Some(uuid) = str_of(&row.vm, "uuid") else { continue };
            for s in self.host.list_snapshots(uuid).unwrap_or_default() {
                if s.name.starts_with(SEND_PREFIX) {
                    tracing::warn!(vm = uuid, snapshot = s.name, "destroying an interrupted send's snapshot");
                    let _ = self.host.destroy_snapshot(uuid, &s.name);
                }
            }
        }
    }
}

/// The checks of a stream's sections (a unit test: corrupt section chains).
#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, parent: Option<&str>) -> SectionHeader {
        SectionHeader { snapshot: name.into(), parent: parent.map(str::to_string) }
    }

    #[test]
    fn sections_must_chain_from_the_base_to_the_state() {
        assert!(check_sections(&[s("vmsend-1", None)], None).is_ok());
        let chain = [s("vmsnap-a", None), s("vmsnap-b", Some("vmsnap-a")), s("vmsend-1", Some("vmsnap-b"))];
        assert!(check_sections(&chain, None).is_ok());
        assert!(check_sections(&[s("vmsnap-c", Some("vmsnap-b")), s("vmsend-1", Some("vmsnap-c"))], Some("b")).is_ok());
        for bad in [
            vec![],
            vec![s("vmsnap-a", None)],
            vec![s("vmsend-1", Some("vmsnap-x"))],
            vec![s("vmsnap-a", None), s("vmsend-1", None)],
            vec![s("../etc", None), s("vmsend-1", Some("../etc"))],
            vec![s("vmsend-1", None), s("vmsend-2", Some("vmsend-1"))],
        ] {
            assert!(check_sections(&bad, None).is_err(), "{bad:?}");
        }
        assert!(check_sections(&[s("vmsend-1", None)], Some("b")).is_err(), "an incremental stream from its base");
    }
}
