//! The route table. The daemon routes these paths and the client calls
//! them; the OpenAPI document describes the same table.

/// API version prefix.
pub const PREFIX: &str = "/v1";
/// `GET`: liveness and identity.
pub const PING: &str = "/v1/ping";
/// `GET`: host facts in SmartOS's `sysinfo` names.
pub const SYSINFO: &str = "/v1/sysinfo";
/// `GET`: list VMs (`?fields=a,b`); `POST`: create.
pub const VMS: &str = "/v1/vms";
/// `POST`: validate a payload.
pub const VALIDATE: &str = "/v1/validate";
/// `GET`: one VM; `DELETE`: destroy it.
pub const VM: &str = "/v1/vms/{uuid}";
/// `POST`: update a VM.
pub const VM_UPDATE: &str = "/v1/vms/{uuid}/update";
/// `POST`: start.
pub const VM_START: &str = "/v1/vms/{uuid}/start";
/// `POST`: stop.
pub const VM_STOP: &str = "/v1/vms/{uuid}/stop";
/// `POST`: reboot.
pub const VM_REBOOT: &str = "/v1/vms/{uuid}/reboot";
/// `POST`: send a signal to init.
pub const VM_KILL: &str = "/v1/vms/{uuid}/kill";
/// `POST`: a running hardware VM's NMI or screenshot (`vmadm sysrq`).
pub const VM_SYSRQ: &str = "/v1/vms/{uuid}/sysrq";
/// `GET`: a running zone's live usage.
pub const VM_INFO: &str = "/v1/vms/{uuid}/info";
/// `GET`: where a zone's console is served and logged (`vmadm console`).
pub const VM_CONSOLE: &str = "/v1/vms/{uuid}/console";
/// `POST`: an image from a stopped instance (`imgadm create`).
pub const VM_CREATE_IMAGE: &str = "/v1/vms/{uuid}/create-image";
/// `GET`: the event stream (newline-delimited JSON; `?uuid=` for one VM,
/// `?full=true` for the VM object with each event).
pub const EVENTS: &str = "/v1/events";
/// `GET`: list images; `POST`: install one.
pub const IMAGES: &str = "/v1/images";
/// `GET`: one image; `DELETE`: remove it.
pub const IMAGE: &str = "/v1/images/{uuid}";
/// `POST`: import an OCI image from a registry by its reference
/// ([`crate::ImagePullRequest`]).
pub const IMAGES_PULL: &str = "/v1/images/pull";
/// `GET`: list nic tags; `POST`: add one.
pub const NIC_TAGS: &str = "/v1/nictags";
/// `GET`: one nic tag; `DELETE`: remove it (`?force=true` even while NICs use it).
pub const NIC_TAG: &str = "/v1/nictags/{name}";
/// `POST`: change a nic tag's link or MTU.
pub const NIC_TAG_UPDATE: &str = "/v1/nictags/{name}/update";
/// `GET`: the instances with a NIC on the tag.
pub const NIC_TAG_VMS: &str = "/v1/nictags/{name}/vms";

/// `GET`: list firewall rules; `POST`: add some ([`crate::FwAddRequest`]).
pub const FW_RULES: &str = "/v1/fw/rules";
/// `GET`: one rule; `DELETE`: remove it.
pub const FW_RULE: &str = "/v1/fw/rules/{uuid}";
/// `POST`: change a rule (text, enabled, description).
pub const FW_RULE_UPDATE: &str = "/v1/fw/rules/{uuid}/update";
/// `GET`: the instances a rule applies to.
pub const FW_RULE_VMS: &str = "/v1/fw/rules/{uuid}/vms";
/// `POST`: change and delete several rules at once ([`crate::FwChangeRequest`]).
pub const FW_CHANGES: &str = "/v1/fw/changes";
/// `GET`: the rules that apply to an instance.
pub const FW_VM_RULES: &str = "/v1/fw/vms/{uuid}/rules";
/// `GET`: an instance's firewall status.
pub const FW_VM_STATUS: &str = "/v1/fw/vms/{uuid}/status";
/// `GET`: per-rule packet and byte counts of an instance's firewall.
pub const FW_VM_STATS: &str = "/v1/fw/vms/{uuid}/stats";

/// `GET`: a VM's snapshots; `POST`: take one ([`crate::SnapshotRequest`]).
pub const VM_SNAPSHOTS: &str = "/v1/vms/{uuid}/snapshots";
/// `DELETE`: delete a VM's snapshot.
pub const VM_SNAPSHOT: &str = "/v1/vms/{uuid}/snapshots/{name}";
/// `POST`: roll a VM back to a snapshot (a running VM is stopped and started again).
pub const VM_SNAPSHOT_ROLLBACK: &str = "/v1/vms/{uuid}/snapshots/{name}/rollback";
/// `GET`: the image sources; `POST`: add one; `PUT`: replace the list;
/// `DELETE` (`?url=`): remove one.
pub const SOURCES: &str = "/v1/sources";
/// `GET`: whether each source answers.
pub const SOURCES_CHECK: &str = "/v1/sources/check";
/// `GET`: the images the IMGAPI sources offer (`imgadm avail`).
pub const SOURCES_IMAGES: &str = "/v1/sources/images";
/// `GET`: one image the sources offer, by uuid or `name[@version]` (`imgadm show`).
pub const SOURCES_IMAGE: &str = "/v1/sources/images/{image}";
/// `POST`: import an image from the sources (a stream of progress lines).
pub const IMAGES_IMPORT: &str = "/v1/images/import";
/// `POST`: fetch installed images' manifests again from the sources.
pub const IMAGES_UPDATE: &str = "/v1/images/update";

/// `GET`: the VM as a send stream (`application/octet-stream`, chunked;
/// see [`crate::stream`]); `?base=<snapshot>` for an incremental one.
pub const VM_SEND: &str = "/v1/vms/{uuid}/send";
/// `POST`: receive a send stream (the request's body, streamed; chunked).
pub const VMS_RECEIVE: &str = "/v1/vms/receive";

/// Fills `{name}` in a route.
pub fn with_name(route: &str, name: &str) -> String {
    route.replace("{name}", name)
}

/// Fills `{uuid}` in a route.
pub fn with_uuid(route: &str, uuid: impl std::fmt::Display) -> String {
    route.replace("{uuid}", &uuid.to_string())
}
