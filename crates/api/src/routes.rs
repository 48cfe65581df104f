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
/// `GET`: the event stream (newline-delimited JSON; `?uuid=` for one VM,
/// `?full=true` for the VM object with each event).
pub const EVENTS: &str = "/v1/events";
/// `GET`: list images; `POST`: install one.
pub const IMAGES: &str = "/v1/images";
/// `GET`: one image; `DELETE`: remove it.
pub const IMAGE: &str = "/v1/images/{uuid}";

/// Fills `{uuid}` in a route.
pub fn with_uuid(route: &str, uuid: impl std::fmt::Display) -> String {
    route.replace("{uuid}", &uuid.to_string())
}
