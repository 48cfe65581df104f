//! The OpenAPI document, generated from the API types. `openapi.json` at the
//! repository root is this document; a test fails when it is stale.

#![allow(dead_code)] // The functions below exist only to carry path metadata.

use utoipa::OpenApi;

use crate::error::{ApiError, ErrorKind, ValidationErrors};
use crate::sources::*;
use crate::types::*;

#[utoipa::path(get, path = "/v1/ping", responses((status = 200, body = Ping)))]
fn ping() {}

#[utoipa::path(get, path = "/v1/sysinfo",
    responses((status = 200, description = "Host facts in SmartOS sysinfo names", body = Object)))]
fn sysinfo() {}

#[utoipa::path(get, path = "/v1/vms",
    params(("fields" = Option<String>, Query, description = "Comma-separated properties to return")),
    responses((status = 200, description = "VM objects", body = [Object])))]
fn list_vms() {}

#[utoipa::path(post, path = "/v1/vms", request_body(content = Object, description = "vmadm create payload"),
    responses((status = 200, description = "The created VM and what of the payload was dropped or adjusted", body = Changed),
              (status = 400, body = ApiError), (status = 409, body = ApiError), (status = 500, body = ApiError)))]
fn create_vm() {}

#[utoipa::path(post, path = "/v1/validate", request_body = ValidateRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiError)))]
fn validate() {}

#[utoipa::path(get, path = "/v1/vms/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, description = "The VM object", body = Object), (status = 404, body = ApiError)))]
fn get_vm() {}

#[utoipa::path(delete, path = "/v1/vms/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
fn delete_vm() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/update", params(("uuid" = String, Path)),
    request_body(content = Object, description = "vmadm update payload"),
    responses((status = 200, description = "The updated VM and what of the payload was dropped or adjusted", body = Changed),
              (status = 400, body = ApiError)))]
fn update_vm() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/start", params(("uuid" = String, Path)), request_body = StartRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
fn start_vm() {}

/// A hardware VM's NMI (`nmi`) or a screenshot of its display
/// (`screenshot`, written to `<zonepath>/root/tmp/vm.ppm`).
#[utoipa::path(post, path = "/v1/vms/{uuid}/sysrq", params(("uuid" = String, Path)), request_body = SysrqRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
fn sysrq_vm() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/stop", params(("uuid" = String, Path)), request_body = StopRequest,
    responses((status = 200, body = Done), (status = 409, body = ApiError)))]
fn stop_vm() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/reboot", params(("uuid" = String, Path)), request_body = RebootRequest,
    responses((status = 200, body = Done), (status = 409, body = ApiError)))]
fn reboot_vm() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/kill", params(("uuid" = String, Path)), request_body = KillRequest,
    responses((status = 200, body = Done), (status = 409, body = ApiError)))]
fn kill_vm() {}

#[utoipa::path(get, path = "/v1/vms/{uuid}/info", params(("uuid" = String, Path)),
    responses((status = 200, body = VmInfo), (status = 404, body = ApiError),
              (status = 409, description = "The VM is not running", body = ApiError)))]
fn vm_info() {}

/// Where a zone's console is: its monitor's socket and its logs (any
/// state; `vmadm console` attaches only to a running zone).
#[utoipa::path(get, path = "/v1/vms/{uuid}/console", params(("uuid" = String, Path)),
    responses((status = 200, body = ConsoleInfo), (status = 404, body = ApiError),
              (status = 422, description = "The VM's brand has no zone console (kvm, bhyve)", body = ApiError)))]
fn vm_console() {}

/// A stream of newline-delimited JSON [`Event`]s (`application/x-ndjson`,
/// chunked), first `{"type":"ready",...}`, then one line per change until
/// the client or the daemon closes the connection.
#[utoipa::path(get, path = "/v1/events",
    params(("uuid" = Option<String>, Query, description = "Only this VM's events"),
           ("full" = Option<bool>, Query, description = "Include the whole VM object with each event")),
    responses((status = 200, description = "One Event per line", body = Event, content_type = "application/x-ndjson"),
              (status = 400, body = ApiError)))]
fn events() {}

#[utoipa::path(get, path = "/v1/images", responses((status = 200, body = [ImageRecord])))]
fn list_images() {}

#[utoipa::path(post, path = "/v1/images", request_body = ImageInstallRequest,
    responses((status = 200, body = ImageRecord), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
fn install_image() {}

#[utoipa::path(get, path = "/v1/images/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, body = ImageRecord), (status = 404, body = ApiError)))]
fn get_image() {}

#[utoipa::path(delete, path = "/v1/images/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
fn delete_image() {}

#[utoipa::path(post, path = "/v1/vms/{uuid}/create-image", params(("uuid" = String, Path)),
    request_body = ImageCreateRequest,
    responses((status = 200, body = ImageCreated), (status = 400, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError)))]
fn create_image() {}
/// Imports an image from an OCI registry: its layers, each verified by
/// its digest, applied into one read-only dataset (image type `docker`).
#[utoipa::path(post, path = "/v1/images/pull", request_body = ImagePullRequest,
    responses((status = 200, body = ImagePulled), (status = 400, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError), (status = 500, body = ApiError)))]
fn pull_image() {}

#[utoipa::path(get, path = "/v1/nictags", responses((status = 200, body = [NicTag])))]
fn list_nic_tags() {}

#[utoipa::path(post, path = "/v1/nictags", request_body = NicTagRequest,
    responses((status = 200, body = NicTag), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
fn add_nic_tag() {}

#[utoipa::path(get, path = "/v1/nictags/{name}", params(("name" = String, Path)),
    responses((status = 200, body = NicTag), (status = 404, body = ApiError)))]
fn get_nic_tag() {}

/// Refused while instances' NICs use the tag, unless `force`.
#[utoipa::path(delete, path = "/v1/nictags/{name}",
    params(("name" = String, Path), ("force" = Option<bool>, Query, description = "Even while NICs use it")),
    responses((status = 200, body = Done), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
fn delete_nic_tag() {}

#[utoipa::path(post, path = "/v1/nictags/{name}/update", params(("name" = String, Path)), request_body = NicTagUpdate,
    responses((status = 200, body = NicTag), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
fn update_nic_tag() {}

#[utoipa::path(get, path = "/v1/nictags/{name}/vms", params(("name" = String, Path)),
    responses((status = 200, description = "Instance uuids", body = [String]), (status = 404, body = ApiError)))]
fn nic_tag_vms() {}

#[utoipa::path(get, path = "/v1/fw/rules", responses((status = 200, body = [FwRule])))]
fn list_fw_rules() {}

/// All the rules are added, or none (a syntax error names the token).
#[utoipa::path(post, path = "/v1/fw/rules", request_body = FwAddRequest,
    responses((status = 200, body = [FwRule]), (status = 400, body = ApiError)))]
fn add_fw_rules() {}

#[utoipa::path(get, path = "/v1/fw/rules/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, body = FwRule), (status = 404, body = ApiError)))]
fn get_fw_rule() {}

#[utoipa::path(delete, path = "/v1/fw/rules/{uuid}", params(("uuid" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ApiError)))]
fn delete_fw_rule() {}

#[utoipa::path(post, path = "/v1/fw/rules/{uuid}/update", params(("uuid" = String, Path)), request_body = FwRuleUpdate,
    responses((status = 200, body = FwRule), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
fn update_fw_rule() {}

/// Every rule named is changed or deleted, in one transaction and one
/// firewall update, or none is (an unknown rule is a 404 naming it).
#[utoipa::path(post, path = "/v1/fw/changes", request_body = FwChangeRequest,
    responses((status = 200, body = FwChanged), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
fn change_fw_rules() {}

#[utoipa::path(get, path = "/v1/fw/rules/{uuid}/vms", params(("uuid" = String, Path)),
    responses((status = 200, description = "Instance uuids", body = [String]), (status = 404, body = ApiError)))]
fn fw_rule_vms() {}

#[utoipa::path(get, path = "/v1/fw/vms/{uuid}/rules", params(("uuid" = String, Path)),
    responses((status = 200, body = [FwRule]), (status = 404, body = ApiError)))]
fn fw_vm_rules() {}

#[utoipa::path(get, path = "/v1/fw/vms/{uuid}/status", params(("uuid" = String, Path)),
    responses((status = 200, body = FwStatus), (status = 404, body = ApiError)))]
fn fw_vm_status() {}

#[utoipa::path(get, path = "/v1/fw/vms/{uuid}/stats", params(("uuid" = String, Path)),
    responses((status = 200, body = [FwRuleStats]), (status = 404, body = ApiError)))]
fn fw_vm_stats() {}

/// A VM's snapshots (`vmadm get`'s `snapshots`), newest first.
#[utoipa::path(get, path = "/v1/vms/{uuid}/snapshots", params(("uuid" = String, Path)),
    responses((status = 200, body = [Snapshot]), (status = 404, body = ApiError)))]
fn list_snapshots() {}

/// `vmadm create-snapshot`: O(1), of every disk of a VM at once (a
/// running hardware VM is paused around it).
#[utoipa::path(post, path = "/v1/vms/{uuid}/snapshots", params(("uuid" = String, Path)), request_body = SnapshotRequest,
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 404, body = ApiError),
              (status = 409, description = "A snapshot of that name exists, or the snapshot limit is reached", body = ApiError),
              (status = 422, description = "The pool cannot snapshot (the dir backend)", body = ApiError)))]
fn create_snapshot() {}

/// `vmadm rollback-snapshot`: the VM's dataset, tags, metadata and routes
/// as they were; newer snapshots are deleted; a running VM is stopped
/// and started again.
#[utoipa::path(post, path = "/v1/vms/{uuid}/snapshots/{name}/rollback",
    params(("uuid" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
fn rollback_snapshot() {}

/// `vmadm delete-snapshot`.
#[utoipa::path(delete, path = "/v1/vms/{uuid}/snapshots/{name}",
    params(("uuid" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Done), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
fn delete_snapshot() {}
#[utoipa::path(get, path = "/v1/sources", responses((status = 200, body = [ImageSource])))]
fn list_sources() {}

/// Appends a source; unless `force`, only once it answered as a server of
/// its type. A source already listed changes nothing (`added` is false).
#[utoipa::path(post, path = "/v1/sources", request_body = SourceAddRequest,
    responses((status = 200, body = SourceAdded),
              (status = 400, description = "A bad URL or type, or a source that did not answer", body = ApiError)))]
fn add_source() {}

/// Replaces the list (`imgadm sources -e`); sources new to it are checked unless `force`.
#[utoipa::path(put, path = "/v1/sources", request_body = SourcesReplaceRequest,
    responses((status = 200, body = SourcesChanged), (status = 400, body = ApiError)))]
fn replace_sources() {}

#[utoipa::path(delete, path = "/v1/sources",
    params(("url" = String, Query, description = "The source's URL (compared without a trailing /)")),
    responses((status = 200, body = SourcesDeleted), (status = 400, body = ApiError)))]
fn delete_source() {}

#[utoipa::path(get, path = "/v1/sources/check", responses((status = 200, body = [SourceCheck])))]
fn check_sources() {}

#[utoipa::path(get, path = "/v1/sources/images", responses((status = 200, body = AvailableImages)))]
fn available_images() {}

/// The first IMGAPI source that has the image (any state) answers.
#[utoipa::path(get, path = "/v1/sources/images/{image}",
    params(("image" = String, Path, description = "A uuid, or name[@version] (the latest active version)")),
    responses((status = 200, body = AvailableImage), (status = 404, body = ApiError), (status = 500, body = ApiError)))]
fn available_image() {}

/// Imports an image and its origin chain from the sources. The answer is a
/// stream of newline-delimited JSON [`ImportEvent`]s (`application/x-ndjson`,
/// chunked) ending with one `done` or `error` event.
#[utoipa::path(post, path = "/v1/images/import", request_body = ImageImportRequest,
    responses((status = 200, description = "One ImportEvent per line", body = ImportEvent,
               content_type = "application/x-ndjson"),
              (status = 400, body = ApiError)))]
fn import_image() {}

#[utoipa::path(post, path = "/v1/images/update", request_body = ImageUpdateRequest,
    responses((status = 200, body = ImageUpdateResult), (status = 404, body = ApiError)))]
fn update_images() {}

/// `vmadm send`: the VM as a send stream (see `zonevisor_api::stream`),
/// chunked; an error after the stream started ends it with an `E` frame.
#[utoipa::path(get, path = "/v1/vms/{uuid}/send",
    params(("uuid" = String, Path), ("base" = Option<String>, Query, description = "Send only what changed after this snapshot")),
    responses((status = 200, description = "The send stream", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, body = ApiError)))]
fn send_vm() {}

/// `vmadm receive`: the request's body is a send stream, streamed (any
/// length; cut off after 120 s without data).
#[utoipa::path(post, path = "/v1/vms/receive",
    request_body(content = Vec<u8>, description = "A send stream", content_type = "application/octet-stream"),
    responses((status = 200, description = "The received VM", body = Changed), (status = 400, body = ApiError),
              (status = 409, description = "The VM exists (a whole stream), or its copy is running or lacks the base", body = ApiError)))]
fn receive_vm() {}

/// The API's OpenAPI description.
#[derive(OpenApi)]
#[openapi(
    info(title = "zonevisord", description = "zonevisor's daemon API, spoken as JSON over HTTP on a Unix socket"),
    paths(
        ping,
        sysinfo,
        list_vms,
        create_vm,
        validate,
        get_vm,
        delete_vm,
        update_vm,
        start_vm,
        stop_vm,
        reboot_vm,
        kill_vm,
        sysrq_vm,
        vm_info,
        vm_console,
        events,
        list_images,
        install_image,
        get_image,
        delete_image,
        list_nic_tags,
        add_nic_tag,
        get_nic_tag,
        delete_nic_tag,
        update_nic_tag,
        nic_tag_vms,
        list_fw_rules,
        add_fw_rules,
        get_fw_rule,
        delete_fw_rule,
        update_fw_rule,
        change_fw_rules,
        fw_rule_vms,
        fw_vm_rules,
        fw_vm_status,
        fw_vm_stats,
        create_image,
        list_snapshots,
        create_snapshot,
        rollback_snapshot,
        delete_snapshot,
        list_sources,
        add_source,
        replace_sources,
        delete_source,
        check_sources,
        available_images,
        available_image,
        import_image,
        update_images,
        pull_image,
        send_vm,
        receive_vm
    ),
    components(schemas(
        ApiError,
        ErrorKind,
        ValidationErrors,
        StopRequest,
        RebootRequest,
        KillRequest,
        StartRequest,
        AttachDisk,
        SysrqRequest,
        ValidateRequest,
        ValidateAction,
        ImageInstallRequest,
        ImageRecord,
        Ping,
        Done,
        Changed,
        PropertyWarning,
        Event,
        EventType,
        EventChange,
        VmInfo,
        ConsoleInfo,
        CpuInfo,
        MemoryInfo,
        PidsInfo,
        DiskIoInfo,
        PressureInfo,
        PsiInfo,
        PsiLine,
        NicTag,
        ManagedNetwork,
        NicTagRequest,
        NicTagUpdate,
        FwRule,
        FwRuleRequest,
        FwAddRequest,
        FwRuleUpdate,
        FwRuleChange,
        FwChangeRequest,
        FwChanged,
        FwStatus,
        FwRuleStats,
        ImageCreateRequest,
        ImageCreated,
        SnapshotRequest,
        Snapshot,
        SourceType,
        ImageSource,
        SourceAddRequest,
        SourceAdded,
        SourcesDeleted,
        SourcesReplaceRequest,
        SourceChangeKind,
        SourceChange,
        SourcesChanged,
        SourceCheck,
        AvailableImage,
        AvailableImages,
        ImageImportRequest,
        ImportEvent,
        ImageUpdateRequest,
        ImageUpdateResult,
        ImagePullRequest,
        ImagePulled
    ))
)]
pub struct ApiDoc;

/// The document as pretty JSON, with a trailing newline.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".to_string();
    let mut s = doc.to_pretty_json().expect("the OpenAPI document serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes;

    #[test]
    fn committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
        let want = document();
        if std::env::var_os("ZONEVISOR_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "openapi.json is stale: run `ZONEVISOR_BLESS=1 cargo test -p zonevisor-api` and commit it"
        );
    }

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        for r in [
            routes::PING,
            routes::SYSINFO,
            routes::VMS,
            routes::VALIDATE,
            routes::VM,
            routes::VM_UPDATE,
            routes::VM_START,
            routes::VM_STOP,
            routes::VM_REBOOT,
            routes::VM_KILL,
            routes::VM_INFO,
            routes::VM_CONSOLE,
            routes::EVENTS,
            routes::IMAGES,
            routes::IMAGE,
            routes::NIC_TAGS,
            routes::NIC_TAG,
            routes::NIC_TAG_UPDATE,
            routes::NIC_TAG_VMS,
            routes::FW_RULES,
            routes::FW_RULE,
            routes::FW_RULE_UPDATE,
            routes::FW_RULE_VMS,
            routes::FW_CHANGES,
            routes::FW_VM_RULES,
            routes::FW_VM_STATUS,
            routes::FW_VM_STATS,
            routes::VM_SNAPSHOTS,
            routes::VM_SNAPSHOT,
            routes::VM_SNAPSHOT_ROLLBACK,
            routes::SOURCES,
            routes::SOURCES_CHECK,
            routes::SOURCES_IMAGES,
            routes::SOURCES_IMAGE,
            routes::IMAGES_IMPORT,
            routes::IMAGES_UPDATE,
            routes::IMAGES_PULL,
            routes::VM_SEND,
            routes::VMS_RECEIVE,
        ] {
            assert!(doc["paths"].get(r).is_some(), "route {r} missing from the OpenAPI document");
        }
    }
}
