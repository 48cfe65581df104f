//! The firewall (`fwadm`): SmartOS's rules, kept in the store, compiled
//! into every firewalled instance's chains by [`Daemon::refresh_net`].
//!
//! A rule applies to the instances it names that have `firewall_enabled`;
//! their default is to drop what comes in and let out what goes out, with
//! replies to either always allowed. Any change to a rule, an instance's
//! IPs, tags or `firewall_enabled` re-renders the ruleset as one
//! transaction.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;
use zonevisor_api::{
    ApiError, FwAddRequest, FwChangeRequest, FwChanged, FwRule, FwRuleStats, FwRuleUpdate, FwStatus, InstanceUuid,
    ValidationErrors, VmObject,
};
use zonevisor_net::fw::{self, Instance, StoredRule};

use crate::Daemon;

fn to_api(r: &StoredRule) -> FwRule {
    FwRule {
        uuid: r.uuid.to_string(),
        enabled: r.enabled,
        global: r.global,
        owner_uuid: r.owner_uuid.map(|u| u.to_string()),
        description: r.description.clone(),
        rule: r.rule.to_string(),
    }
}

/// Applies one rule's change (new text, enabled, description) to `r`;
/// what is wrong goes into `errs` under `at` + the member's name.
fn change_rule(
    r: &mut StoredRule,
    text: Option<&str>,
    enabled: Option<bool>,
    description: Option<&str>,
    at: &str,
    errs: &mut ValidationErrors,
) {
    if let Some(text) = text {
        match fw::parse(text) {
            Ok(rule) => r.rule = rule,
            Err(e) => errs.bad_value(&format!("{at}rule"), e.to_string()),
        }
    }
    if let Some(e) = enabled {
        r.enabled = e;
    }
    if let Some(d) = description {
        if d.chars().count() > 255 {
            errs.bad_value(&format!("{at}description"), "is longer than 255 characters");
        } else {
            r.description = Some(d.to_string()).filter(|d| !d.is_empty());
        }
    }
}

fn parse_uuid(s: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    s.parse().map_err(|_| ApiError::invalid(format!("{what}: {s:?} is not a UUID")))
}

/// The firewall's view of an instance: its owner, tags, addresses and
/// whether its firewall is on. `reserved`: the addresses the managed
/// networks' DHCP reserved for its MACs.
pub(crate) fn fw_instance(vm: &VmObject, reserved: &BTreeMap<String, IpAddr>) -> Option<Instance> {
    let uuid = vm.get("uuid").and_then(Value::as_str)?.parse().ok()?;
    let mut ips = Vec::new();
    for n in vm.get("nics").and_then(Value::as_array).into_iter().flatten() {
        for ip in n.get("ips").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if ip == "dhcp" {
                let mac = n.get("mac").and_then(Value::as_str).unwrap_or_default();
                ips.extend(reserved.get(mac).copied());
            } else if let Some(a) = ip.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) {
                ips.push(a);
            }
        }
    }
    Some(Instance {
        uuid,
        owner_uuid: vm.get("owner_uuid").and_then(Value::as_str).and_then(|u| u.parse().ok()),
        tags: vm
            .get("tags")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        ips,
        firewall_enabled: vm.get("firewall_enabled").and_then(Value::as_bool).unwrap_or(false),
    })
}

impl Daemon {
    pub(crate) fn stored_rules(&self) -> Result<Vec<StoredRule>, ApiError> {
        let mut out = Vec::new();
        for v in self.store.fw_rules()? {
            match serde_json::from_value::<StoredRule>(v.clone()) {
                Ok(r) => out.push(r),
                Err(e) => tracing::warn!(rule = %v, error = %e, "a stored firewall rule is unreadable; ignored"),
            }
        }
        Ok(out)
    }

    fn stored_rule(&self, uuid: &str) -> Result<StoredRule, ApiError> {
        let id = parse_uuid(uuid, "uuid")?;
        self.stored_rules()?
            .into_iter()
            .find(|r| r.uuid == id)
            .ok_or_else(|| ApiError::not_found(format!("firewall rule {uuid} does not exist")))
    }

    fn put_rules(&self, put: &[StoredRule], delete: &[String]) -> Result<(), ApiError> {
        let put: Vec<(String, Value)> = put
            .iter()
            .map(|r| Ok((r.uuid.to_string(), serde_json::to_value(r).map_err(|e| ApiError::internal(e.to_string()))?)))
            .collect::<Result<_, ApiError>>()?;
        self.store.change_fw_rules(&put, delete)?;
        self.refresh_net();
        Ok(())
    }

    /// Every instance as the firewall sees it.
    pub(crate) fn fw_instances(&self) -> Result<Vec<Instance>, ApiError> {
        let mut reserved = BTreeMap::new();
        for t in self.list_nic_tags()? {
            for r in self.store.reserved_addresses(&t.name)? {
                reserved.insert(r.mac, r.addr);
            }
        }
        Ok(self.store.list_vms()?.iter().filter_map(|row| fw_instance(&row.vm, &reserved)).collect())
    }

    /// `fwadm list`.
    pub fn list_fw_rules(&self) -> Result<Vec<FwRule>, ApiError> {
        Ok(self.stored_rules()?.iter().map(to_api).collect())
    }

    /// `fwadm get`.
    pub fn get_fw_rule(&self, uuid: &str) -> Result<FwRule, ApiError> {
        Ok(to_api(&self.stored_rule(uuid)?))
    }

    /// `fwadm add`: every rule parsed first; all are added, or none.
    pub fn add_fw_rules(&self, req: &FwAddRequest) -> Result<Vec<FwRule>, ApiError> {
        let mut errs = ValidationErrors::default();
        let existing = self.stored_rules()?;
        let mut new = Vec::new();
        if req.rules.is_empty() {
            errs.missing("rules", "give at least one rule");
        }
        for (i, r) in req.rules.iter().enumerate() {
            let at = |k: &str| format!("rules.{i}.{k}");
            let rule = match fw::parse(&r.rule) {
                Ok(rule) => rule,
                Err(e) => {
                    errs.bad_value(&at("rule"), e.to_string());
                    continue;
                }
            };
            let uuid = match &r.uuid {
                Some(u) => match u.parse::<uuid::Uuid>() {
                    Ok(u) if existing.iter().any(|e| e.uuid == u) || new.iter().any(|n: &StoredRule| n.uuid == u) => {
                        errs.bad_value(&at("uuid"), format!("rule {u} already exists"));
                        continue;
                    }
                    Ok(u) => u,
                    Err(_) => {
                        errs.bad_value(&at("uuid"), format!("{u:?} is not a UUID"));
                        continue;
                    }
                },
                None => uuid::Uuid::new_v4(),
            };
            let owner_uuid = match &r.owner_uuid {
                Some(o) => match o.parse() {
                    Ok(o) => Some(o),
                    Err(_) => {
                        errs.bad_value(&at("owner_uuid"), format!("{o:?} is not a UUID"));
                        continue;
                    }
                },
                None => None,
            };
            if r.global && owner_uuid.is_some() {
                errs.bad_value(&at("global"), "a global rule has no owner_uuid");
                continue;
            }
            if r.description.as_ref().is_some_and(|d| d.chars().count() > 255) {
                errs.bad_value(&at("description"), "is longer than 255 characters");
                continue;
            }
            new.push(StoredRule {
                uuid,
                enabled: r.enabled,
                global: owner_uuid.is_none(),
                owner_uuid,
                description: r.description.clone(),
                rule,
                version: None,
            });
        }
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        self.put_rules(&new, &[])?;
        for r in &new {
            tracing::info!(rule = %r.uuid, enabled = r.enabled, "added firewall rule: {}", r.rule);
        }
        Ok(new.iter().map(to_api).collect())
    }

    /// `fwadm update`, `enable`, `disable` of one rule.
    pub fn update_fw_rule(&self, uuid: &str, upd: &FwRuleUpdate) -> Result<FwRule, ApiError> {
        let mut r = self.stored_rule(uuid)?;
        let mut errs = ValidationErrors::default();
        change_rule(&mut r, upd.rule.as_deref(), upd.enabled, upd.description.as_deref(), "", &mut errs);
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        self.put_rules(std::slice::from_ref(&r), &[])?;
        Ok(to_api(&r))
    }

    /// `fwadm delete` of one rule.
    pub fn delete_fw_rule(&self, uuid: &str) -> Result<(), ApiError> {
        let r = self.stored_rule(uuid)?;
        self.put_rules(&[], &[r.uuid.to_string()])
    }

    /// `fwadm update`, `enable`, `disable`, `delete` of several rules: every
    /// rule named must exist and every change be valid; then all go to the
    /// store in one transaction and to the kernel in one firewall update.
    pub fn change_fw_rules(&self, req: &FwChangeRequest) -> Result<FwChanged, ApiError> {
        let stored = self.stored_rules()?;
        let mut errs = ValidationErrors::default();
        let mut missing = Vec::new();
        let mut find = |u: &str, at: String, errs: &mut ValidationErrors| match u.parse::<uuid::Uuid>() {
            Ok(id) => {
                let found = stored.iter().find(|r| r.uuid == id).cloned();
                if found.is_none() {
                    missing.push(u.to_string());
                }
                found
            }
            Err(_) => {
                errs.bad_value(&at, format!("{u:?} is not a UUID"));
                None
            }
        };
        let mut updated: Vec<StoredRule> = Vec::new();
        for (i, c) in req.update.iter().enumerate() {
            let Some(mut r) = find(&c.uuid, format!("update.{i}.uuid"), &mut errs) else { continue };
            if updated.iter().any(|u| u.uuid == r.uuid) {
                errs.bad_value(&format!("update.{i}.uuid"), format!("rule {} is changed twice", r.uuid));
                continue;
            }
            let at = format!("update.{i}.");
            change_rule(&mut r, c.rule.as_deref(), c.enabled, c.description.as_deref(), &at, &mut errs);
            updated.push(r);
        }
        let mut deleted: Vec<StoredRule> = Vec::new();
        for (i, u) in req.delete.iter().enumerate() {
            let Some(r) = find(u, format!("delete.{i}"), &mut errs) else { continue };
            if updated.iter().any(|x| x.uuid == r.uuid) {
                errs.bad_value(&format!("delete.{i}"), format!("rule {} is also changed", r.uuid));
            } else if !deleted.iter().any(|x| x.uuid == r.uuid) {
                deleted.push(r);
            }
        }
        if req.update.is_empty() && req.delete.is_empty() {
            errs.missing("update", "give rules to change or delete");
        }
        if !errs.is_empty() {
            return Err(ApiError::validation(errs));
        }
        if !missing.is_empty() {
            let (what, verb) = if missing.len() == 1 { ("rule", "does") } else { ("rules", "do") };
            return Err(ApiError::not_found(format!("firewall {what} {} {verb} not exist", missing.join(", "))));
        }
        let gone: Vec<String> = deleted.iter().map(|r| r.uuid.to_string()).collect();
        self.put_rules(&updated, &gone)?;
        for r in &updated {
            tracing::info!(rule = %r.uuid, enabled = r.enabled, "changed firewall rule: {}", r.rule);
        }
        for r in &deleted {
            tracing::info!(rule = %r.uuid, "deleted firewall rule: {}", r.rule);
        }
        Ok(FwChanged { updated: updated.iter().map(to_api).collect(), deleted: deleted.iter().map(to_api).collect() })
    }

    /// `fwadm vms <rule>`: the instances a rule applies to.
    pub fn fw_rule_vms(&self, uuid: &str) -> Result<Vec<String>, ApiError> {
        let r = self.stored_rule(uuid)?;
        Ok(fw::vms(&r, &self.fw_instances()?).into_iter().map(|u| u.to_string()).collect())
    }

    fn rules_of(&self, vm: &str) -> Result<Vec<StoredRule>, ApiError> {
        let id: InstanceUuid = vm.parse().map_err(|_| ApiError::invalid(format!("{vm:?} is not a UUID")))?;
        self.vm_row(id)?;
        let u = parse_uuid(vm, "vm")?;
        let rules = self.stored_rules()?;
        let wanted = fw::rules_for(u, &rules, &self.fw_instances()?);
        Ok(rules.into_iter().filter(|r| wanted.contains(&r.uuid)).collect())
    }

    /// `fwadm rules <vm>`.
    pub fn fw_vm_rules(&self, vm: &str) -> Result<Vec<FwRule>, ApiError> {
        Ok(self.rules_of(vm)?.iter().map(to_api).collect())
    }

    /// `fwadm status <vm>`.
    pub fn fw_vm_status(&self, vm: &str) -> Result<FwStatus, ApiError> {
        let rules = self.rules_of(vm)?;
        let id: InstanceUuid = vm.parse().map_err(|_| ApiError::invalid(format!("{vm:?} is not a UUID")))?;
        let row = self.vm_row(id)?;
        let on = row.get("firewall_enabled").and_then(Value::as_bool).unwrap_or(false);
        Ok(FwStatus {
            status: if on { "running" } else { "stopped" }.into(),
            rules: rules.iter().filter(|r| r.enabled).count() as u64,
        })
    }

    /// `fwadm stats <vm>`: what each rule's statements in the instance's
    /// chains matched (nft's counters, by the rule's uuid in their comment).
    pub fn fw_vm_stats(&self, vm: &str) -> Result<Vec<FwRuleStats>, ApiError> {
        let rules = self.rules_of(vm)?;
        let id = parse_uuid(vm, "vm")?.simple().to_string();
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for chain in [format!("fw_in_{id}"), format!("fw_out_{id}")] {
            let out = std::process::Command::new("nft")
                .args(["-j", "list", "chain", "inet", zonevisor_net::nft::TABLE, &chain])
                .output()
                .map_err(|e| ApiError::internal(format!("running nft: {e}")))?;
            if !out.status.success() {
                continue;
            }
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            for item in v.get("nftables").and_then(Value::as_array).into_iter().flatten() {
                let Some(rule) = item.get("rule") else { continue };
                let Some(comment) = rule.get("comment").and_then(Value::as_str) else { continue };
                for e in rule.get("expr").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(c) = e.get("counter") {
                        let entry = counts.entry(comment.to_string()).or_default();
                        entry.0 += c.get("packets").and_then(Value::as_u64).unwrap_or(0);
                        entry.1 += c.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                    }
                }
            }
        }
        Ok(rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| {
                let (packets, bytes) = counts.get(&r.uuid.to_string()).copied().unwrap_or_default();
                FwRuleStats { uuid: r.uuid.to_string(), packets, bytes }
            })
            .collect())
    }
}
