//! Stored rules in JSON, as `fwadm get` shows them: fw
//! `test/unit/global.test.js`, `owner.test.js`, fwrule
//! `test/invalid.test.js` (payload fields).

use serde_json::json;

use super::*;

const UUID: &str = "33ed0e9a-26ba-4221-95d3-8d5184e88f06";
const OWNER: &str = "e6c73bd2-fae4-4e0a-af76-2c05d088b066";

fn from_json(v: serde_json::Value) -> Result<StoredRule, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

// fw test/unit/global.test.js: "global"
#[test]
fn global_rule_round_trips() {
    let v = json!({
        "enabled": true,
        "global": true,
        "rule": "FROM any TO all vms ALLOW icmp TYPE 8 CODE 0",
        "uuid": UUID,
        "version": "1369192016214.003865",
        "created_by": "fwapi",
        "log": false
    });
    let r = from_json(v).unwrap();
    assert!(r.enabled && r.global);
    assert_eq!(r.owner_uuid, None);
    assert_eq!(r.version.as_deref(), Some("1369192016214.003865"));
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        format!(
            "{{\"enabled\":true,\"global\":true,\"rule\":\"FROM any TO all vms ALLOW icmp TYPE 8 CODE 0\",\
             \"uuid\":\"{UUID}\",\"version\":\"1369192016214.003865\"}}"
        )
    );
}

// fw test/unit/owner.test.js: a rule with an owner shows no global flag;
// a rule without owner is global.
#[test]
fn owner_or_global() {
    let r = from_json(json!({
        "description": "smtp out",
        "enabled": true,
        "owner_uuid": OWNER,
        "rule": "FROM tag foo TO ip 10.99.99.254 BLOCK tcp port 25",
        "uuid": UUID
    }))
    .unwrap();
    assert!(!r.global);
    assert_eq!(r.owner_uuid, Some(OWNER.parse().unwrap()));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "description": "smtp out",
            "enabled": true,
            "owner_uuid": OWNER,
            "rule": "FROM tag \"foo\" TO ip 10.99.99.254 BLOCK tcp PORT 25",
            "uuid": UUID
        })
    );
    // Field order is SmartOS's serialize() order.
    let text = serde_json::to_string(&r).unwrap();
    let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(pos("description") < pos("enabled"));
    assert!(pos("enabled") < pos("owner_uuid"));
    assert!(pos("owner_uuid") < pos("rule"));
    assert!(pos("rule") < pos("uuid"));

    // Neither owner nor global: global, as FwRule makes it.
    let r = from_json(json!({"rule": "FROM any TO all vms ALLOW tcp PORT 22", "uuid": UUID})).unwrap();
    assert!(r.global);
    assert!(!r.enabled, "enabled defaults to false");
    assert_eq!(serde_json::to_value(&r).unwrap()["global"], json!(true));
    // `global: false` without owner is still a global rule.
    let r = from_json(json!({
        "global": false, "rule": "FROM any TO all vms ALLOW tcp PORT 22", "uuid": UUID
    }))
    .unwrap();
    assert!(r.global);
}

// fwrule test/invalid.test.js: "both global and owner_uuid set",
// "description: string too long", "invalid UUID", "invalid owner UUID",
// and a bad rule.
#[test]
fn invalid_payloads() {
    let base = || {
        json!({
            "rule": "FROM ip 10.0.0.1 TO all vms ALLOW TCP port 53",
            "uuid": UUID,
        })
    };
    let with = |k: &str, v: serde_json::Value| {
        let mut j = base();
        j[k] = v;
        from_json(j)
    };
    let e = {
        let mut j = base();
        j["global"] = json!(true);
        j["owner_uuid"] = json!(OWNER);
        from_json(j).unwrap_err()
    };
    assert!(e.contains("cannot specify both global and owner_uuid"), "{e}");
    let e = with("description", json!("0".repeat(256))).unwrap_err();
    assert!(e.contains("description"), "{e}");
    with("description", json!("0".repeat(255))).unwrap();
    // Counted as JavaScript counts: a character outside the BMP is two.
    assert!(with("description", json!("😀".repeat(128))).is_err());
    assert!(with("uuid", json!("invalid")).is_err());
    assert!(with("owner_uuid", json!("invalid")).is_err());
    assert!(with("enabled", json!("invalid")).is_err());
    let e = with("rule", json!("FROM any TO any ALLOW TCP port 53")).unwrap_err();
    assert!(e.contains("rule: the rule at 0 does not affect VMs"), "{e}");
    let e = with("rule", json!("FROM any TO all vms FOO tcp PORT 22")).unwrap_err();
    assert!(e.contains("rule: unexpected \"FOO\" at 20; expected ALLOW or BLOCK"), "{e}");
    let mut j = base();
    j.as_object_mut().unwrap().remove("rule");
    assert!(from_json(j).is_err(), "a rule is required");
}

#[test]
fn rule_serializes_as_its_text() {
    let rule = ok("from any to all vms allow tcp ports 22, 80");
    let text = serde_json::to_string(&rule).unwrap();
    assert_eq!(text, "\"FROM any TO all vms ALLOW tcp (PORT 22 AND PORT 80)\"");
    assert_eq!(serde_json::from_str::<Rule>(&text).unwrap(), rule);
}
