//! The events hub: every change the daemon makes to a VM's record becomes
//! an [`Event`] on a broadcast channel, which `GET /v1/events` streams to
//! `vmadm events`.
//!
//! `create` is sent when the row is first written (state `provisioning`),
//! `modify` after every later write that changes a top-level property
//! other than `last_modified` (`changes` lists each, in the object's
//! order, with its value before and after), `delete` when the row is gone.
//! Each event carries the whole VM object; the server strips it unless the
//! client asked for `full`. A subscriber that falls more than [`CAPACITY`]
//! events behind is disconnected rather than silently losing events.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{broadcast, watch};
use zonevisor_api::{Event, EventChange, EventType, VmObject};

use crate::instance::timestamp;

/// Events a subscriber may fall behind by before it is cut off.
pub(crate) const CAPACITY: usize = 4096;

/// The broadcast channel of events, and the daemon's shutdown flag that
/// ends every stream.
pub(crate) struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    closed: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Events { tx, closed: watch::Sender::new(false) }
    }
}

fn str_of(vm: &VmObject, key: &str) -> Option<String> {
    vm.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The top-level properties whose value differs between `before` and
/// `after` (`last_modified` left out): those of `after` in its order, then
/// those only `before` had.
pub(crate) fn changes(before: &VmObject, after: &VmObject) -> Vec<EventChange> {
    let change = |key: &str, from: Option<&Value>, to: Option<&Value>| {
        let action = match (from, to) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        EventChange {
            path: vec![key.to_string()],
            pretty_path: key.to_string(),
            action: action.to_string(),
            from: from.cloned(),
            to: to.cloned(),
        }
    };
    let mut out = Vec::new();
    for (k, v) in after {
        if k == "last_modified" {
            continue;
        }
        let old = before.get(k);
        if old != Some(v) {
            out.push(change(k, old, Some(v)));
        }
    }
    for (k, v) in before {
        if k != "last_modified" && !after.contains_key(k) {
            out.push(change(k, Some(v), None));
        }
    }
    out
}

/// A `modify` event for the change from `before` to `after`, or `None` when
/// nothing but `last_modified` changed.
pub(crate) fn modify_event(before: &VmObject, after: &VmObject) -> Option<Event> {
    let changes = changes(before, after);
    if changes.is_empty() {
        return None;
    }
    Some(event(EventType::Modify, after, changes))
}

fn event(event_type: EventType, vm: &VmObject, changes: Vec<EventChange>) -> Event {
    Event {
        event_type,
        timestamp: timestamp(),
        uuid: str_of(vm, "uuid"),
        alias: str_of(vm, "alias"),
        changes,
        vm: Some(vm.clone()),
    }
}

/// The first line of every stream.
pub(crate) fn ready() -> Event {
    Event {
        event_type: EventType::Ready,
        timestamp: timestamp(),
        uuid: None,
        alias: None,
        changes: Vec::new(),
        vm: None,
    }
}

impl Events {
    /// Sends `ev` to every subscriber (none is fine).
    pub(crate) fn send(&self, ev: Event) {
        let _ = self.tx.send(Arc::new(ev));
    }

    /// A VM's row was written for the first time.
    pub(crate) fn created(&self, vm: &VmObject) {
        self.send(event(EventType::Create, vm, Vec::new()));
    }

    /// A VM's row changed from `before` to `after`.
    pub(crate) fn modified(&self, before: &VmObject, after: &VmObject) {
        if let Some(ev) = modify_event(before, after) {
            self.send(ev);
        }
    }

    /// A VM's row is gone; `vm` is what it held.
    pub(crate) fn deleted(&self, vm: &VmObject) {
        self.send(event(EventType::Delete, vm, Vec::new()));
    }

    /// A new subscriber: it sees every event sent from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Ends every stream (the daemon is shutting down).
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves when [`Events::close`] has been called.
    pub(crate) fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> VmObject {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn changes_are_top_level_differences_without_last_modified() {
        let before = obj(json!({"uuid": "u", "state": "running", "pid": 42, "tags": {"a": 1}, "last_modified": "t1"}));
        let after =
            obj(json!({"uuid": "u", "state": "stopped", "tags": {"a": 1}, "exit_status": 0, "last_modified": "t2"}));
        let c = changes(&before, &after);
        let got: Vec<(&str, &str, Option<&Value>, Option<&Value>)> =
            c.iter().map(|c| (c.pretty_path.as_str(), c.action.as_str(), c.from.as_ref(), c.to.as_ref())).collect();
        assert_eq!(
            got,
            [
                ("state", "changed", Some(&json!("running")), Some(&json!("stopped"))),
                ("exit_status", "added", None, Some(&json!(0))),
                ("pid", "removed", Some(&json!(42)), None),
            ]
        );
        assert_eq!(c[0].path, ["state"]);
        let only_time =
            obj(json!({"uuid": "u", "state": "running", "pid": 42, "tags": {"a": 1}, "last_modified": "t9"}));
        assert!(modify_event(&before, &only_time).is_none());
        let nested = obj(json!({"uuid": "u", "state": "running", "pid": 42, "tags": {"a": 2}}));
        assert_eq!(changes(&before, &nested).iter().map(|c| c.pretty_path.as_str()).collect::<Vec<_>>(), ["tags"]);
    }

    #[test]
    fn events_carry_uuid_alias_time_and_json_shape() {
        let vm = obj(json!({"uuid": "u1", "alias": "web", "state": "stopped"}));
        let before = obj(json!({"uuid": "u1", "alias": "web", "state": "running"}));
        let ev = modify_event(&before, &vm).unwrap();
        assert_eq!((ev.uuid.as_deref(), ev.alias.as_deref()), (Some("u1"), Some("web")));
        assert!(humantime::parse_rfc3339(&ev.timestamp).is_ok(), "{}", ev.timestamp);
        let j = serde_json::to_value(&ev).unwrap();
        assert_eq!(j["type"], "modify");
        assert_eq!(
            j["changes"],
            json!([{"path": ["state"], "prettyPath": "state", "action": "changed", "from": "running", "to": "stopped"}])
        );
        let r = serde_json::to_value(ready()).unwrap();
        assert_eq!(r["type"], "ready");
        assert!(r.get("uuid").is_none() && r.get("changes").is_none() && r.get("vm").is_none());
    }

    #[tokio::test]
    async fn subscribers_see_events_sent_after_they_subscribe() {
        let hub = Events::default();
        hub.created(&obj(json!({"uuid": "early"})));
        let mut rx = hub.subscribe();
        hub.created(&obj(json!({"uuid": "u2"})));
        hub.deleted(&obj(json!({"uuid": "u2"})));
        assert_eq!(rx.recv().await.unwrap().event_type, EventType::Create);
        let d = rx.recv().await.unwrap();
        assert_eq!((d.event_type, d.uuid.as_deref()), (EventType::Delete, Some("u2")));
        let mut closed = hub.closed();
        hub.close();
        closed.changed().await.unwrap();
        assert!(*closed.borrow());
    }
}
