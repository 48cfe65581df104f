//! A rule as `fwadm` stores and shows it (`fwadm get`, `fwadm list -j`).
//!
//! ```json
//! {
//!   "description": "ssh in",
//!   "enabled": true,
//!   "global": true,
//!   "rule": "FROM any TO all vms ALLOW tcp PORT 22",
//!   "uuid": "71bf3c29-bcd3-42a4-b4cb-222585429a70",
//!   "version": "1389121215383.025735"
//! }
//! ```
//!
//! As in SmartOS: `rule` is the canonical text; `global` is shown only when
//! true, and a rule without `owner_uuid` is global; `owner_uuid` and
//! `global: true` together are refused; `enabled` defaults to false;
//! `description` is at most 255 characters. SmartOS's `created_by` and `log`
//! are accepted and dropped.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Rule;

/// Longest `description` SmartOS accepts, in UTF-16 units (JavaScript's
/// string length).
const MAX_DESCRIPTION: usize = 255;

/// A firewall rule with its `fwadm` properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredRuleJson", into = "StoredRuleJson")]
pub struct StoredRule {
    /// The rule's UUID.
    pub uuid: Uuid,
    /// Only enabled rules are compiled.
    pub enabled: bool,
    /// The owner whose instances alone the rule applies to.
    pub owner_uuid: Option<Uuid>,
    /// Whether the rule applies to every owner's instances; true exactly
    /// when there is no `owner_uuid`.
    pub global: bool,
    /// Free text, at most 255 characters.
    pub description: Option<String>,
    /// The rule itself.
    pub rule: Rule,
    /// SmartOS's opaque version stamp (`<ms since epoch>.<pid>`), kept when
    /// given.
    pub version: Option<String>,
}

/// The JSON shape, in the field order SmartOS serializes.
#[derive(Serialize, Deserialize)]
struct StoredRuleJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default)]
    enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    global: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner_uuid: Option<Uuid>,
    rule: Rule,
    uuid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

impl TryFrom<StoredRuleJson> for StoredRule {
    type Error = String;

    fn try_from(j: StoredRuleJson) -> Result<Self, Self::Error> {
        if j.global == Some(true) && j.owner_uuid.is_some() {
            return Err("global: cannot specify both global and owner_uuid".to_string());
        }
        if let Some(d) = &j.description {
            if d.encode_utf16().count() > MAX_DESCRIPTION {
                return Err(format!("description: must be at most {MAX_DESCRIPTION} characters"));
            }
        }
        Ok(StoredRule {
            uuid: j.uuid,
            enabled: j.enabled,
            global: j.owner_uuid.is_none(),
            owner_uuid: j.owner_uuid,
            description: j.description,
            rule: j.rule,
            version: j.version,
        })
    }
}

impl From<StoredRule> for StoredRuleJson {
    fn from(r: StoredRule) -> Self {
        StoredRuleJson {
            description: r.description,
            enabled: r.enabled,
            global: (r.global && r.owner_uuid.is_none()).then_some(true),
            owner_uuid: r.owner_uuid,
            rule: r.rule,
            uuid: r.uuid,
            version: r.version,
        }
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}
