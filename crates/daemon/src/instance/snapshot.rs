//! Snapshots of instances: `vmadm create-snapshot`, `rollback-snapshot`,
//! `delete-snapshot`, and `snapshots` in `vmadm get`, as SmartOS has
//! them (VM.js), on the pool's dataset snapshots.
//!
//! A snapshot is of the instance's dataset, named `vmsnap-<name>` as
//! SmartOS names its ZFS snapshots: a zone's root, and every disk of a
//! hardware VM at once (its volumes are files in the dataset; a running
//! VM is paused over QMP around it, so nothing is in flight). SmartOS
//! keeps an instance's tags, metadata and routes in its dataset, so they
//! roll back with its data; here they live in the store, so a snapshot
//! first writes them into the dataset ([`SAVED`]) and a rollback puts
//! them back.
//!
//! ```text
//! rollback-snapshot <uuid> <name>      (under the instance's lock)
//!   settle: a rollback of this instance left unended is finished first
//!   stop (forced) if running
//!   pool rollback  ── error before its commit: nothing changed; restarted
//!   row: tags, customer_metadata, internal_metadata, routes from SAVED
//!   pool end_rollback (the old data destroyed)
//!   start if it was running
//! ```
//!
//! A daemon that dies anywhere in there finds the pool's record of the
//! rollback at its next start ([`Daemon::recover_rollbacks`]): past the
//! pool's commit it finishes it (data, then row), before it the pool
//! undoes it; the instance comes back up if its `autoboot` is set. The
//! data and what goes with it never disagree for longer than that.

use serde_json::{json, Map, Value};
use zonevisor_api::{ApiError, InstanceUuid, Snapshot, StartRequest, VmObject};
use zonevisor_pool::RollbackOutcome;

use super::driver::driver_of;
use super::spec::InstanceSpec;
use super::{parse_uuid, str_of};
use crate::Daemon;

/// SmartOS's longest snapshot name (VM.js `MAX_SNAPNAME_LENGTH`).
pub(crate) const MAX_SNAPNAME_LENGTH: usize = 64;
/// The prefix of the dataset snapshots `vmadm` makes (SmartOS's).
pub(crate) const PREFIX: &str = "vmsnap-";
/// The file at the top of an instance's dataset holding the instance as
/// it was at its last snapshot (so in each snapshot, as it was then).
pub(crate) const SAVED: &str = "vmsnap.json";
/// What rolls back with the data: what SmartOS keeps in a zone's dataset.
const ROLLED_BACK: [&str; 4] = ["tags", "customer_metadata", "internal_metadata", "routes"];

/// Checks a snapshot name as VM.js's `validSnapshotName` does: 1 to 64
/// characters of `[a-zA-Z0-9_.:%-]` (ZFS's).
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let why = if name.is_empty() || name.len() > MAX_SNAPNAME_LENGTH {
        format!("it is {} characters long (valid: 1 to {MAX_SNAPNAME_LENGTH})", name.chars().count())
    } else if let Some(c) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '%')))
    {
        format!("{c:?} is not allowed (letters, digits and -_.:% only)")
    } else {
        return Ok(());
    };
    Err(ApiError::invalid(format!("Invalid snapshot name {name:?}: {why}")))
}

/// The instance's object as [`SAVED`] holds it.
fn saved(vm: &VmObject) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({"v": 1, "vm": vm})).unwrap_or_default()
}

impl Daemon {
    /// `vmadm get`'s `snapshots`: the `vmsnap-` snapshots of the
    /// instance's dataset, newest first, each `{name, created_at}` (others
    /// are not shown, as in SmartOS).
    pub(crate) fn snapshots_of(&self, uuid: &str) -> Vec<Snapshot> {
        let snaps = match self.host.list_snapshots(uuid) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(vm = uuid, error = %e.message, "listing snapshots");
                return Vec::new();
            }
        };
        let mut shown: Vec<(u64, Snapshot)> = snaps
            .into_iter()
            .filter_map(|s| {
                let name = s.name.strip_prefix(PREFIX)?.to_string();
                let created_at = humantime::format_rfc3339_millis(s.created).to_string();
                Some((s.order, Snapshot { name, created_at }))
            })
            .collect();
        shown.sort_by_key(|(order, _)| std::cmp::Reverse(*order));
        shown.into_iter().map(|(_, s)| s).collect()
    }

    /// `GET /v1/vms/{uuid}/snapshots`.
    pub fn list_snapshots(&self, uuid: &str) -> Result<Vec<Snapshot>, ApiError> {
        let uuid = parse_uuid(uuid)?;
        self.vm_row(uuid)?;
        Ok(self.snapshots_of(&uuid.to_string()))
    }

    /// The instance's row, with what refuses a snapshot of it (SmartOS's
    /// delegated datasets, which a snapshot of the zone's dataset would
    /// not hold).
    fn snapshot_target(&self, uuid: InstanceUuid) -> Result<(VmObject, InstanceSpec), ApiError> {
        let vm = self.vm_row(uuid)?;
        if vm.get("datasets").and_then(Value::as_array).is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::unsupported("Cannot currently snapshot zones that have datasets"));
        }
        let spec = InstanceSpec::from_vm(&vm)?;
        Ok((vm, spec))
    }

    /// `vmsnap-<name>` of the instance's dataset, or SmartOS's error when
    /// it has none of that name.
    fn existing_snapshot(&self, uuid: InstanceUuid, dataset: &str, name: &str) -> Result<String, ApiError> {
        let full = format!("{PREFIX}{name}");
        if self.host.list_snapshots(dataset)?.iter().any(|s| s.name == full) {
            Ok(full)
        } else {
            Err(ApiError::not_found(format!("No snapshot named \"{name}\" for {uuid}")))
        }
    }

    /// `vmadm create-snapshot`: the instance's tags and metadata written
    /// into its dataset, a running VM paused, the dataset snapshotted (O(1)),
    /// the VM resumed; `last_modified` changes.
    pub fn create_snapshot(&self, uuid: &str, name: &str) -> Result<String, ApiError> {
        check_name(name)?;
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (vm, spec) = self.snapshot_target(uuid)?;
        let dataset = spec.dataset();
        let snaps = self.host.list_snapshots(&dataset)?;
        let full = format!("{PREFIX}{name}");
        if snaps.iter().any(|s| s.name == full) {
            return Err(ApiError::conflict(format!("snapshot with name \"{name}\" already exists.")));
        }
        // ZFS's snapshot_limit, as SmartOS sets it from zfs_snapshot_limit.
        if let Some(limit) = vm.get("zfs_snapshot_limit").and_then(Value::as_u64) {
            let count = snaps.iter().filter(|s| s.name.starts_with(PREFIX)).count() as u64;
            if count >= limit {
                return Err(ApiError::conflict(format!(
                    "cannot create snapshot {name} of VM {uuid}: it has {count} of its {limit} snapshots \
                     (zfs_snapshot_limit); delete one first"
                )));
            }
        }
        self.host.write_dataset_file(&dataset, SAVED, &saved(&vm))?;
        let resume = match self.is_running(uuid) {
            true => driver_of(&spec.kind).pause(self, &spec)?,
            false => None,
        };
        let taken = self.host.snapshot_dataset(&dataset, &full);
        if let Some(resume) = resume {
            // Tried twice: a VM left paused is down for its users.
            if let Err(e) = resume().or_else(|e| {
                tracing::warn!(vm = %uuid, error = %e.message, "resuming after a snapshot; trying again");
                resume()
            }) {
                let done = if taken.is_ok() { "taken" } else { "not taken" };
                return Err(ApiError { message: format!("snapshot {name} {done}, but {}", e.message), ..e });
            }
        }
        taken?;
        self.set_fields(uuid, &[], &[])?;
        tracing::info!(vm = %uuid, snapshot = name, "created snapshot");
        Ok(format!("Created snapshot {name} for VM {uuid}"))
    }

    /// `vmadm delete-snapshot`; `last_modified` changes.
    pub fn delete_snapshot(&self, uuid: &str, name: &str) -> Result<String, ApiError> {
        check_name(name)?;
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (_, spec) = self.snapshot_target(uuid)?;
        let dataset = spec.dataset();
        let full = self.existing_snapshot(uuid, &dataset, name)?;
        self.host.destroy_snapshot(&dataset, &full)?;
        self.set_fields(uuid, &[], &[])?;
        tracing::info!(vm = %uuid, snapshot = name, "deleted snapshot");
        Ok(format!("Deleted snapshot {name} for VM {uuid}"))
    }

    /// `vmadm rollback-snapshot`: a running instance is stopped (forced,
    /// as SmartOS does), its dataset rolled back (the newer snapshots
    /// deleted), its tags, metadata and routes put back as they were,
    /// and it is started again; a stopped one stays stopped.
    pub fn rollback_snapshot(&self, uuid: &str, name: &str) -> Result<String, ApiError> {
        check_name(name)?;
        let uuid = parse_uuid(uuid)?;
        let lock = self.runtime.lock_of(uuid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (_, spec) = self.snapshot_target(uuid)?;
        let dataset = spec.dataset();
        self.settle_rollback(uuid, &dataset)?;
        let full = self.existing_snapshot(uuid, &dataset, name)?;
        // What goes back into the row, read before anything changes.
        let saved = self.saved_in(uuid, &dataset, Some(&full))?;
        let was_running = self.is_running(uuid);
        if was_running {
            self.stop_locked(uuid, true, None)?;
        }
        let rolled = self.host.rollback_dataset(&dataset, &full).and_then(|()| self.restore(uuid, saved.as_ref()));
        match &rolled {
            // The data and the row agree: the old data can go (if that
            // fails, the next rollback or start of the daemon ends it).
            Ok(()) => {
                if let Err(e) = self.host.end_rollback(&dataset) {
                    tracing::warn!(vm = %uuid, error = %e.message, "ending a rollback; left for later");
                }
            }
            Err(e) => tracing::error!(vm = %uuid, snapshot = name, error = %e.message, "rollback failed"),
        }
        if was_running {
            // Up again whether or not the rollback went through.
            let started = self.vm_row(uuid).and_then(|vm| self.start_locked(uuid, &vm, &StartRequest::default()));
            if let Err(e) = started {
                let done = if rolled.is_ok() { "rolled back" } else { "not rolled back" };
                return Err(ApiError { message: format!("VM {uuid} {done} to {name}, but start: {}", e.message), ..e });
            }
        }
        rolled?;
        tracing::info!(vm = %uuid, snapshot = name, "rolled back to snapshot");
        Ok(format!("Rolled back snapshot {name} for VM {uuid}"))
    }

    /// The instance as [`SAVED`] in its dataset (or its snapshot
    /// `snapshot`) holds it; `None` for a snapshot without it (made by
    /// something else: tags and metadata then stay as they are).
    fn saved_in(
        &self,
        uuid: InstanceUuid,
        dataset: &str,
        snapshot: Option<&str>,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        let Some(bytes) = self.host.read_dataset_file(dataset, snapshot, SAVED)? else {
            tracing::warn!(vm = %uuid, "the snapshot holds no {SAVED}: tags and metadata stay as they are");
            return Ok(None);
        };
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("read {SAVED} of VM {uuid}: {e}")))?;
        Ok(Some(doc.get("vm").and_then(Value::as_object).cloned().unwrap_or_default()))
    }

    /// Puts the instance's tags, metadata and routes back as `saved` has them.
    fn restore(&self, uuid: InstanceUuid, saved: Option<&Map<String, Value>>) -> Result<(), ApiError> {
        let Some(old) = saved else { return Ok(()) };
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for key in ROLLED_BACK {
            match old.get(key) {
                Some(v) => set.push((key, v.clone())),
                None => remove.push(key),
            }
        }
        let before = self.vm_row(uuid)?;
        let vm = self.set_fields(uuid, &set, &remove)?;
        if before.get("tags") != vm.get("tags") {
            // Tags name instances in firewall rules.
            self.refresh_net();
        }
        Ok(())
    }

    /// Finishes or undoes a rollback of `uuid`'s dataset that was not
    /// ended (an error or a crash after the pool's part): past its
    /// commit, the row follows the data and the rollback is ended.
    /// Returns whether one was finished.
    fn settle_rollback(&self, uuid: InstanceUuid, dataset: &str) -> Result<bool, ApiError> {
        let Some(pending) = self.host.pending_rollbacks()?.into_iter().find(|p| p.dataset == dataset) else {
            return Ok(false);
        };
        match self.host.resume_rollback(dataset)? {
            RollbackOutcome::Undone => {
                tracing::warn!(vm = %uuid, snapshot = pending.snapshot, "undid an interrupted rollback");
                Ok(false)
            }
            RollbackOutcome::Finished => {
                let saved = self.saved_in(uuid, dataset, None)?;
                self.restore(uuid, saved.as_ref())?;
                self.host.end_rollback(dataset)?;
                tracing::warn!(vm = %uuid, snapshot = pending.snapshot, "finished an interrupted rollback");
                Ok(true)
            }
        }
    }

    /// Start-up: takes every rollback a dying daemon left to one end, the
    /// row with it; returns the instances rolled back that should be
    /// running again (`autoboot`; the rollback had stopped them).
    pub(crate) fn recover_rollbacks(&self) -> Vec<InstanceUuid> {
        let pending = match self.host.pending_rollbacks() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e.message, "listing interrupted rollbacks");
                return Vec::new();
            }
        };
        let mut restart = Vec::new();
        for p in pending {
            let row = p.dataset.parse::<InstanceUuid>().ok().and_then(|u| Some((u, self.store.get_vm(u).ok()??)));
            let result = match &row {
                Some((uuid, row)) if row.phase == "ready" => {
                    let uuid = *uuid;
                    let lock = self.runtime.lock_of(uuid);
                    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
                    self.settle_rollback(uuid, &p.dataset).map(|finished| {
                        if finished && row.vm.get("autoboot").and_then(Value::as_bool) == Some(true) {
                            restart.push(uuid);
                        }
                    })
                }
                // No instance (a dataset of the pool's own): the data only.
                _ => self.host.resume_rollback(&p.dataset).and_then(|outcome| match outcome {
                    RollbackOutcome::Finished => self.host.end_rollback(&p.dataset),
                    RollbackOutcome::Undone => Ok(()),
                }),
            };
            if let Err(e) = result {
                tracing::error!(dataset = p.dataset, snapshot = p.snapshot, error = %e.message, "recovering a rollback");
            }
        }
        restart
    }

    /// `vmadm get`'s `snapshots` of `vm` ([`Daemon::snapshots_of`]).
    pub(crate) fn snapshots_json(&self, vm: &VmObject) -> Value {
        match str_of(vm, "uuid") {
            Some(uuid) => serde_json::to_value(self.snapshots_of(uuid)).unwrap_or_else(|_| json!([])),
            None => json!([]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_smartos_does() {
        for good in ["snapshot1", "20130131180505", "a-b_c.d:e%f", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        // test-snapshots.js "create snapshot with bad name".
        for bad in [
            "thisisareallylongsnapshotnamethatshouldbreakthingsbecauseitiswaytoolongforthemaxsnapshotnamevalue",
            "01234567890123456789012345678901234567890123456789012345678901234567890123456789",
            "!@#)!%*#^@)^#%$@U^@#)$*#@$!@#!@#",
            "\n",
            "bacon & eggs & ham",
            "one fish two fish red fish blue fish",
            "this,string,has,commas",
            "",
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.message.starts_with("Invalid snapshot name"), "{bad:?}: {}", e.message);
            assert_eq!(e.kind, zonevisor_api::ErrorKind::Invalid);
        }
    }
}
