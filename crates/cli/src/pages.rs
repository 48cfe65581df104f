//! What each tool says about itself: its commands, options and man page
//! sections, as [`ToolDoc`] tables. The parsers take their options from
//! here, `--help` and the man pages are rendered from here
//! ([`crate::doc`]), and shell completion reads it ([`crate::complete`]).

use crate::doc::{flag, valued, CommandDoc, Kind, OptDoc, Section, ToolDoc};

/// `--socket PATH`, which every tool takes.
pub const SOCKET: OptDoc = OptDoc {
    opt: crate::args::SOCKET,
    value: "PATH",
    kind: Kind::File,
    help: "The daemon's API socket (default: $ZONEVISOR_SOCKET, else /var/lib/zonevisor/run/zonevisord.sock).",
};
/// `-h`, `--help`, which every tool takes.
pub const HELP: OptDoc =
    OptDoc { opt: crate::args::HELP, value: "", kind: Kind::Any, help: "Show this help and exit." };
/// `--version`, which every tool takes as its first argument.
pub const VERSION: OptDoc = flag("version", None, Some("version"), "Print the name and version and exit.");

const CREATE_FILE: OptDoc = valued(
    "file",
    Some('f'),
    Some("file"),
    "FILE",
    Kind::File,
    "Read the JSON payload from FILE (- is stdin) instead of stdin.",
);

const VMADM_COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "console",
        aliases: &[],
        usage: &["console [--log] <uuid>"],
        summary: "Attach to a running zone's console; CTRL-] detaches.",
        description: &[
            "Attaches the caller's terminal to a running zone's console (its /dev/console, where the image's init \
             runs a shell or a getty), after a [Connected to zone <uuid> console; CTRL-] to detach] line. It first \
             shows what the zone printed while nobody was attached (up to the last 64 KiB, never twice). CTRL-] \
             detaches (exit 0). One client at a time: a second gets \"console already in use\" (exit 1). The \
             session outlives zone reboots and daemon restarts, and ends when the zone halts.",
            "Without a terminal it relays stdin until it ends and output until it pauses, so \
             echo cmd | vmadm console <uuid> works. A stopped zone is an error naming its state; kvm and bhyve \
             VMs are refused.",
        ],
        options: &[flag(
            "log",
            Some('l'),
            Some("log"),
            "Print the console log (console.log.1 then console.log, up to 2 MiB) without attaching, in any state.",
        )],
        operands: &[Kind::RunningInstance],
    },
    CommandDoc {
        name: "create",
        aliases: &[],
        usage: &["create [-f <filename>]"],
        summary: "Create a VM from a JSON payload (a file or stdin, never a terminal).",
        description: &[
            "Creates a VM from a SmartOS JSON payload read from the file given with -f, or from stdin (never a \
             terminal), and prints Successfully created VM <uuid> on stderr, as SmartOS does. With autoboot \
             (default true) it returns once the zone's init is running. Unknown or misplaced properties are \
             dropped with a warning on stderr; bad values and missing properties fail it (exit 1) with \
             SmartOS's line (Invalid value(s) for: ...) and a reason per property; a create that fails at any \
             step leaves nothing behind and names the step.",
        ],
        options: &[CREATE_FILE],
        operands: &[],
    },
    CommandDoc {
        name: "create-snapshot",
        aliases: &[],
        usage: &["create-snapshot <uuid> <snapname>"],
        summary: "Snapshot the VM's dataset: a zone's root, or every disk of a VM at once.",
        description: &[
            "Takes snapshot <snapname> of the VM's dataset (SmartOS's <dataset>@vmsnap-<snapname>) in constant              time, whatever its size, and prints Created snapshot <snapname> for VM <uuid> on stderr. The name is              1 to 64 characters of letters, digits and -_.:% (others: exit 1, Invalid snapshot name). A VM's disks              are all in its dataset and snapshotted together; a running hardware VM is paused (QMP stop) for the              instant it takes. The VM's tags, customer_metadata, internal_metadata and routes are kept with the              snapshot, as SmartOS keeps them in the zone's dataset. Snapshots count against the VM's quota (the              blocks they hold that the VM no longer does), and zfs_snapshot_limit caps their number. A name in              use, or the limit reached, fails (exit 1); so does a pool on the dir backend. vmadm get lists them              in snapshots (name, created_at), newest first; the zone itself never sees them.",
        ],
        options: &[],
        operands: &[Kind::Instance, Kind::Any],
    },
    CommandDoc {
        name: "delete",
        aliases: &["destroy"],
        usage: &["delete <uuid>"],
        summary: "Stop the VM and destroy it and its dataset.",
        description: &["Stops the VM and destroys its dataset, freeing its space before it returns. Refused while \
             indestructible_zoneroot is set."],
        options: &[],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "delete-snapshot",
        aliases: &[],
        usage: &["delete-snapshot <uuid> <snapname>"],
        summary: "Delete one of the VM's snapshots.",
        description: &["Deletes snapshot <snapname> of the VM and prints Deleted snapshot <snapname> for VM <uuid> on              stderr; the blocks only it held are free (and no longer count against the quota) when it returns. A              snapshot that does not exist fails (exit 1). It cannot be undone."],
        options: &[],
        operands: &[Kind::Instance, Kind::Any],
    },
    CommandDoc {
        name: "events",
        aliases: &[],
        usage: &["events [-f] [-j] [-r] [uuid]"],
        summary: "Follow every change to every VM (or to one) until interrupted.",
        description: &["Follows every change to every VM, or to the VM given, until interrupted, one line each: \
             [<timestamp>] <uuid> <alias> create, ... modify: state running -> stopped; pid 4242 -> -, ... \
             delete. Ends with status 0 when the daemon goes away or the output is closed."],
        options: &[
            flag("full", Some('f'), Some("full"), "Add the whole VM object to each event."),
            flag(
                "json",
                Some('j'),
                Some("json"),
                "Print each event as a JSON object (type, timestamp, uuid, alias, changes).",
            ),
            flag("ready", Some('r'), Some("ready"), "Print a ready event once the stream is established."),
        ],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "get",
        aliases: &["json"],
        usage: &["get <uuid>"],
        summary: "Print the VM object as JSON.",
        description: &[],
        options: &[],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "info",
        aliases: &[],
        usage: &["info <uuid> [type,...]"],
        summary: "Print a running zone's live usage as JSON (types: all, status, cpu, memory, pids, disk_io, \
                  pressure).",
        description: &[
            "Prints a running zone's live usage as JSON: status (state, pid, uptime), cpu (ns used), memory \
             (bytes, swap), pids, disk_io (bytes and operations read and written) and pressure (PSI from the \
             zone's own cgroup where the kernel has it, else the host's as host_pressure; pressure_source says \
             which). The types are all (the default), status, cpu, memory, pids, disk_io and pressure. A stopped \
             zone is an error.",
        ],
        options: &[],
        operands: &[Kind::RunningInstance, Kind::InfoTypes],
    },
    CommandDoc {
        name: "kill",
        aliases: &[],
        usage: &["kill [-s SIGNAL|-SIGNAL] <uuid>"],
        summary: "Send a signal (default SIGTERM) to the zone's init.",
        description: &[
            "Sends a signal to the zone's init: a name (TERM, SIGTERM, term) or a number, given with -s or as \
             -SIGNAL (-9, -TERM). The default is SIGTERM, as in SmartOS.",
        ],
        options: &[valued(
            "signal",
            Some('s'),
            Some("signal"),
            "SIGNAL",
            Kind::Signal,
            "The signal to send, by name or number.",
        )],
        operands: &[Kind::RunningInstance],
    },
    CommandDoc {
        name: "list",
        aliases: &[],
        usage: &["list [-p] [-H] [-o field,...] [-s field,...] [field=value ...]"],
        summary: "List VMs in a table (default columns uuid,type,ram,state,alias sorted by ram,uuid).",
        description: &[
            "Lists the VMs that match every filter in a table, by default the columns UUID TYPE RAM STATE ALIAS \
             sorted by ram,uuid.",
        ],
        options: &[
            flag("parsable", Some('p'), Some("parsable"), "Print colon-separated values (a colon in a value is \\:)."),
            flag("noheader", Some('H'), None, "Leave out the header line."),
            valued("order", Some('o'), Some("order"), "FIELD,...", Kind::VmFields, "The columns to show, in order."),
            valued(
                "sort",
                Some('s'),
                Some("sortby"),
                "FIELD,...",
                Kind::VmFields,
                "The fields to sort by; -field sorts descending.",
            ),
        ],
        operands: &[Kind::VmFilter],
    },
    CommandDoc {
        name: "lookup",
        aliases: &[],
        usage: &["lookup [-j|-1] [-o field,...] [field=value ...]"],
        summary: "Print the UUIDs of the VMs that match every filter, one per line.",
        description: &[],
        options: &[
            flag("json", Some('j'), Some("json"), "Print the matching VM objects as a JSON array."),
            flag("unique", Some('1'), Some("unique"), "Exactly one VM must match, else it is an error."),
            valued(
                "output",
                Some('o'),
                Some("output"),
                "FIELD,...",
                Kind::VmFields,
                "With -j, only these properties of each VM.",
            ),
        ],
        operands: &[Kind::VmFilter],
    },
    CommandDoc {
        name: "reboot",
        aliases: &[],
        usage: &["reboot <uuid> [-F]"],
        summary: "Stop the zone (gracefully, or forced) and start it again.",
        description: &[],
        options: &[flag("force", Some('F'), Some("force"), "Kill the zone at once instead of shutting it down.")],
        operands: &[Kind::RunningInstance],
    },
    CommandDoc {
        name: "receive",
        aliases: &["recv"],
        usage: &["receive [-f <filename>]"],
        summary: "Receive a VM that vmadm send wrote, from stdin (or a file), keeping its uuid.",
        description: &[
            "Reads a vmadm send stream from stdin (never a terminal) or the file given with -f, streaming it to              zonevisord as it comes, and prints Successfully received VM <uuid> on stderr. A whole stream makes              a new VM with the sender's uuid, configuration, tags, metadata, data (every disk of a VM) and              snapshots, stopped (vmadm start it), with the checks of vmadm create: its image(s) installed here,              its NIC tags here, its addresses free. A uuid that exists here is refused (exit 1). An incremental              stream (vmadm send -i <snapname>) updates a stopped copy received earlier that still has that              snapshot and no newer one: the newer snapshots arrive, and its data, tags, metadata and routes              become the sender's.",
            "The stream's integrity is checked (framing and a SHA-256 digest at its end) before anything of it              becomes visible: a stream cut short, corrupted or ended by the sender's error fails with the              reason, and leaves nothing behind (no VM, no dataset, no staging); the next receive can succeed.",
        ],
        options: &[valued(
            "file",
            Some('f'),
            Some("file"),
            "FILE",
            Kind::File,
            "Read the stream from FILE (- is stdin) instead of stdin.",
        )],
        operands: &[],
    },
    CommandDoc {
        name: "rollback-snapshot",
        aliases: &[],
        usage: &["rollback-snapshot <uuid> <snapname>"],
        summary: "Roll the VM back to a snapshot: data, tags and metadata; newer snapshots are deleted.",
        description: &[
            "Rolls the VM's dataset back to snapshot <snapname> and prints Rolled back snapshot <snapname> for VM              <uuid> on stderr. A running VM is stopped (forced) first and started again after, as SmartOS does; a              stopped one stays stopped. Its tags, customer_metadata, internal_metadata and routes go back to what              they were when the snapshot was taken. IMPORTANT: every snapshot newer than <snapname> is deleted,              and the state from before the rollback is gone; neither can be undone.",
            "The rollback is crash-safe: if zonevisord dies during it, its next start finishes it or undoes it,              data and tags together, and starts the VM again if its autoboot is set.",
        ],
        options: &[],
        operands: &[Kind::Instance, Kind::Any],
    },
    CommandDoc {
        name: "send",
        aliases: &[],
        usage: &["send <uuid> [-i <snapname>]"],
        summary: "Write the VM (configuration, data, snapshots) to stdout, for vmadm receive.",
        description: &[
            "Writes the VM as one stream to stdout (never a terminal), which vmadm receive reads on another host:              vmadm send <uuid> | ssh host2 vmadm receive moves it. The stream holds the VM's object (tags and              metadata included), its snapshots and its state when the send began (every disk of a VM at one              instant; a running VM is paused for that instant and keeps running), as btrfs send streams with a              SHA-256 digest at the end. Prints Successfully sent VM <uuid> on stderr. The VM's images are not in              the stream: the receiving host must have them installed.",
            "With -i <snapname>, the stream holds only what changed after that snapshot (the snapshots after it              and the state): vmadm receive applies it to a copy received earlier that has the snapshot.",
        ],
        options: &[valued(
            "incremental",
            Some('i'),
            Some("incremental"),
            "SNAPNAME",
            Kind::Any,
            "Send only what changed after snapshot SNAPNAME, for a receiving copy that has it.",
        )],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "start",
        aliases: &["boot"],
        usage: &["start <uuid> [order=cdn[,once=d]] [cdrom=/path.iso,model ...] [disk=/path,model ...]"],
        summary: "Start the instance and set autoboot.",
        description: &[
            "A hardware VM takes SmartOS's boot options for this boot only: order= sets the boot order (c: disk, \
             d: CD-ROM, n: network) and ,once= the order of the first boot only; cdrom= and disk= attach an ISO or \
             a disk file for this boot, a path inside the VM's zone root (<zonepath>/root) with a model (ide, \
             scsi, virtio, ahci, nvme). A zone takes none.",
        ],
        options: &[],
        operands: &[Kind::Instance, Kind::Any],
    },
    CommandDoc {
        name: "sysrq",
        aliases: &[],
        usage: &["sysrq <uuid> nmi|screenshot"],
        summary: "Send a running hardware VM an NMI, or take a screenshot of its display.",
        description: &["nmi sends the guest's kernel a non-maskable interrupt. screenshot writes the VM's display to \
             <zonepath>/root/tmp/vm.ppm, as SmartOS does."],
        options: &[],
        operands: &[Kind::RunningInstance, Kind::Word(&["nmi", "screenshot"])],
    },
    CommandDoc {
        name: "stop",
        aliases: &["halt"],
        usage: &["stop <uuid> [-F] [-t timeout]"],
        summary: "Shut the zone down (its init's poweroff), killing what is left after the timeout.",
        description: &[
            "Asks the zone's init to shut down (it runs the zone's poweroff) and kills what is left after the \
             timeout. Clears autoboot, as SmartOS does. A stop that fails leaves the zone running, never \
             stopping.",
        ],
        options: &[
            flag("force", Some('F'), Some("force"), "Kill the zone at once."),
            valued(
                "timeout",
                Some('t'),
                Some("timeout"),
                "SECONDS",
                Kind::Any,
                "How long the shutdown may take before what is left is killed (default 60, at most 86400).",
            ),
        ],
        operands: &[Kind::RunningInstance],
    },
    CommandDoc {
        name: "update",
        aliases: &[],
        usage: &["update <uuid> [-f <filename>]", "update <uuid> property=value [property=value ...]"],
        summary: "Change properties, from a JSON payload or property=value arguments.",
        description: &[
            "Changes properties: plain ones (alias=web02, max_physical_memory=1024; null clears an optional one) \
             and SmartOS's operators set_tags, remove_tags, set_customer_metadata, remove_customer_metadata, \
             set_internal_metadata, remove_internal_metadata, set_routes, remove_routes, add_nics, update_nics, \
             remove_nics, add_filesystems and remove_filesystems. Resource limits and quota apply at once to a \
             running zone; if the kernel refuses a value nothing changes. brand, uuid, image_uuid and zpool never \
             change.",
        ],
        options: &[CREATE_FILE],
        operands: &[Kind::Instance, Kind::Property],
    },
    CommandDoc {
        name: "validate",
        aliases: &[],
        usage: &["validate create [-f <filename>]", "validate update <brand> [-f <filename>]"],
        summary: "Check a create or update payload without changing anything.",
        description: &[],
        options: &[CREATE_FILE],
        operands: &[Kind::Word(&["create", "update"]), Kind::Brand],
    },
];

/// `vmadm`.
pub const VMADM: ToolDoc = ToolDoc {
    name: "vmadm",
    section: 8,
    summary: "create, list and manage zones and VMs",
    usage: &[],
    description: &[
        "Manage zones and VMs through zonevisord, with SmartOS's commands, payloads, output and exit codes.",
        "vmadm is a client of zonevisord's API (HTTP on a Unix socket only root may use). It finds the daemon \
         through --socket, else $ZONEVISOR_SOCKET, else the default root's socket.",
    ],
    commands: VMADM_COMMANDS,
    options: &[SOCKET, HELP, VERSION],
    operands: &[],
    sections: &[
        Section {
            title: "FILTERS",
            paragraphs: &[
                "Filters are field=value (exact) or field=~regex; dotted names reach into objects and arrays: \
                 tags.role=web, customer_metadata.owner=ops, nics.*.ip=10.0.0.5.",
            ],
            in_help: true,
        },
        Section {
            title: "EXAMPLES",
            paragraphs: &[
                " vmadm list -o uuid,alias,state -s -ram state=running",
                " vmadm create -f web.json",
                " vmadm update $(vmadm lookup -1 alias=web01) max_physical_memory=1024",
                " vmadm stop -t 10 $(vmadm lookup -1 alias=web01)",
            ],
            in_help: false,
        },
    ],
    exit_status: &[("0", "success"), ("1", "error"), ("2", "usage error")],
    environment: &[("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given.")],
    files: &[("/var/lib/zonevisor/run/zonevisord.sock", "The default root's API socket.")],
    see_also: &["imgadm(8)", "zlogin(1)", "sysinfo(8)", "zonevisord(8)"],
};

const IMGADM_COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "install",
        aliases: &[],
        usage: &["install -m <manifest> -f <file>"],
        summary: "Install an image from a manifest and its root filesystem tarball.",
        description: &[
            "Verifies the manifest (v2, type lx-dataset, os linux) and the file's size and sha1, then installs it \
             as a read-only dataset. A bad manifest or checksum installs nothing, and an image larger than the \
             pool's free space is refused with its space free again when the command returns. Its uuid may not \
             be an instance's.",
        ],
        options: &[
            valued("manifest", Some('m'), None, "MANIFEST", Kind::File, "The image manifest (JSON)."),
            valued(
                "file",
                Some('f'),
                None,
                "FILE",
                Kind::File,
                "The root filesystem tarball (.tar, .tar.gz, .tar.xz or .tar.zst).",
            ),
        ],
        operands: &[],
    },
    CommandDoc {
        name: "list",
        aliases: &[],
        usage: &["list [-j] [-H] [-o FIELD,...] [-s FIELD,...] [<filters>]"],
        summary: "List installed images (columns uuid,name,version,os,type,pub sorted by published_at,name).",
        description: &["Lists installed images, by default the columns UUID NAME VERSION OS TYPE PUB sorted by \
             published_at,name. Fields are manifest fields (also as manifest.<field>) plus published_date, pub, \
             published, clones, zpool and size. Filters are FIELD=VALUE (exact), FIELD=true|false and \
             FIELD=~SUBSTRING."],
        options: &[
            flag("json", Some('j'), Some("json"), "Print the images as a JSON array."),
            IMAGE_NOHEADER,
            IMAGE_OUTPUT,
            IMAGE_SORT,
        ],
        operands: &[Kind::ImageFilter],
    },
    CommandDoc {
        name: "get",
        aliases: &["info"],
        usage: &["get <uuid>"],
        summary: "Print an installed image as JSON (manifest, zpool, clones).",
        description: &[],
        options: &[],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "show",
        aliases: &[],
        usage: &["show <uuid|name[@version]>"],
        summary: "Print the manifest of an installed image, or of an image the sources offer.",
        description: &["Prints an image's manifest as JSON: an installed image's, else the first IMGAPI source's \
             that has it (by uuid in any state, or by name and optionally version: the latest active one). An \
             image no source has is an error (ImageNotFound, exit 1)."],
        options: &[],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "import",
        aliases: &[],
        usage: &[
            "import [-q] [-S <url>] [-P <pool>] <uuid|name[@version]>",
            "import [-q] [-k] <registry/repository[:tag][@digest]>",
        ],
        summary: "Import an image and its origin chain from the image sources (skipped when installed).",
        description: &[
            "Finds the image in the IMGAPI sources, in order (by uuid, or by name and optionally @version: the \
             latest active one), then downloads and installs it and the images of its origin chain that are not \
             installed, oldest first: Importing <uuid> (<name>@<version>) from \"<url>\", ..., Imported image \
             <uuid> (<name>@<version>). An image already installed is skipped (exit 0). The daemon downloads \
             into the pool and checks the file's size and sha1 (and sha256) before anything is installed; an \
             interrupted download is resumed, and what arrived is kept for the next import. Two imports of one \
             image at once install it once. A progress bar is drawn on stderr when it is a terminal.",
            "An image no source has is an error (ActiveImageNotFound, exit 1); so is an unreachable source, a \
             manifest that fails validation, a file whose checksum does not match or a full pool, each naming \
             the image, with nothing of it installed.",
            "An argument with a / or a : (and not a UUID) is an OCI image reference, imported from its registry \
             (Docker Hub without one: alpine:3.20, docker.io/library/alpine:3.20, 127.0.0.1:5000/app@sha256:...): \
             its layers, each checked against its digest, become one read-only image of type docker, which lx \
             zones with docker: true run. Credentials come from a Docker config.json ($DOCKER_CONFIG, else \
             ~/.docker/config.json, of the daemon); without them a registry that demands them is an error.",
        ],
        options: &[
            flag("quiet", Some('q'), Some("quiet"), "Draw no progress bar."),
            valued(
                "source",
                Some('S'),
                Some("source"),
                "URL",
                Kind::Any,
                "Import from this IMGAPI URL, not the sources.",
            ),
            valued("zpool", Some('P'), None, "POOL", Kind::Any, "The pool (zonevisor has one: zones)."),
            flag(
                "insecure",
                Some('k'),
                Some("insecure"),
                "A registry reference: speak plain HTTP, or HTTPS without checking the certificate (registries on \
                 loopback addresses are treated so without it).",
            ),
        ],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "create",
        aliases: &[],
        usage: &[
            "create [-m <manifest>] [-o <path> | -O] [-c <comp>] [-i] [--max-origin-depth <n>] [-s <script>] [-q] \
             <vm-uuid> [<field>=<value> ...]",
            "create -p <url> ... (not supported yet)",
        ],
        summary: "Create an image from a stopped zone or VM.",
        description: &[
            "The instance must be stopped, unless -s prepares it. Manifest fields come from -m (a JSON file, or - for stdin) and the \
             <field>=<value> arguments (the value read as JSON when it parses, else as a string); name and version \
             are required. The image inherits type, os, requirements and a few more fields from the instance's \
             image, and requires the instance's brand (lx, kvm, bhyve) unless the manifest sets requirements.brand.",
            "A zone's image is a tar of its root (NAME-VER.tar[.gz|.xz|.zst]); a VM's is its first disk, raw \
             (NAME-VER.raw[...]). Both are saved with NAME-VER.imgmanifest in the working directory, or as -o says, \
             ready for imgadm install on this or another host. -O installs the image in the pool instead, in constant \
             time (a snapshot of the zone's root, a reflink of the VM's disk), ready for vmadm create.",
        ],
        options: &[
            valued("manifest", Some('m'), None, "MANIFEST", Kind::File, "Manifest fields as JSON (- for stdin)."),
            valued(
                "output-template",
                Some('o'),
                Some("output-template"),
                "PATH",
                Kind::File,
                "Save PATH.imgmanifest and the file beside it (in PATH as NAME-VER when PATH is a directory).",
            ),
            flag("install", Some('O'), Some("install"), "Install the image in the pool instead of writing files."),
            valued(
                "compression",
                Some('c'),
                Some("compression"),
                "COMP",
                Kind::Any,
                "none (default), gzip, xz or zstd.",
            ),
            flag(
                "incremental",
                Some('i'),
                None,
                "An incremental image: only what changed since the zone's image, which becomes its origin.",
            ),
            valued(
                "max-origin-depth",
                None,
                Some("max-origin-depth"),
                "N",
                Kind::Any,
                "Refuse when the origin chain would be deeper than N (at least 2).",
            ),
            valued(
                "prepare-script",
                Some('s'),
                None,
                "PATH",
                Kind::File,
                "Prepare the instance with this script first: it is snapshotted, booted with the script as its \
                 sdc:operator-script (which must mdata-put prepare-image:state running, then success or error, and \
                 shut it down), imaged, and rolled back to how it was.",
            ),
            valued("publish", Some('p'), Some("publish"), "URL", Kind::Any, "Not supported yet (see the README)."),
            flag("quiet", Some('q'), Some("quiet"), "Accepted for SmartOS's scripts."),
        ],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "delete",
        aliases: &[],
        usage: &["delete <uuid>"],
        summary: "Remove an installed image (refused while a zone was cloned from it).",
        description: &[],
        options: &[],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "sources",
        aliases: &[],
        usage: &[
            "sources [-v] [-j]",
            "sources -a <url> [-t imgapi|docker] [-k] [-f]",
            "sources -d <url>",
            "sources -e [-f]",
            "sources -c",
            "sources --add-docker-hub [-f]",
        ],
        summary: "List and edit image sources (default: https://images.smartos.org).",
        description: &[
            "Lists the image sources, one URL a line (-v: a table of URL, TYPE, INSECURE; -j: JSON objects \
             with url, type and insecure). An IMGAPI URL may carry ?channel=<name>. -a appends a source (Added \
             \"imgapi\" image source \"<url>\", or Already have ..., no change) once it answered a ping, unless \
             -f; -d removes a URL (Deleted ..., or Do not have image source \"<url>\", no change); -e edits the \
             list in $VISUAL or $EDITOR (vi), one URL TYPE [insecure] a line; -c pings every source. \
             --add-docker-hub adds https://docker.io as a docker source. docker sources are listed and kept; \
             avail does not list them.",
        ],
        options: &[
            flag("verbose", Some('v'), Some("verbose"), "List the URL, type and insecure flag of each source."),
            flag("json", Some('j'), Some("json"), "List the sources as JSON."),
            valued("add", Some('a'), None, "URL", Kind::Any, "Add a source at the end of the list."),
            valued("delete", Some('d'), None, "URL", Kind::Any, "Delete a source."),
            flag("edit", Some('e'), None, "Edit the sources in $VISUAL or $EDITOR (vi)."),
            flag("check", Some('c'), Some("check"), "Ping every source."),
            valued(
                "type",
                Some('t'),
                Some("type"),
                "TYPE",
                Kind::Word(&["imgapi", "docker"]),
                "The added source's type: imgapi (the default) or docker.",
            ),
            flag("insecure", Some('k'), Some("insecure"), "Do not check the added HTTPS source's certificate."),
            flag("force", Some('f'), Some("force"), "Do not ping new sources before adding them."),
            flag("add-docker-hub", None, Some("add-docker-hub"), "Add https://docker.io as a docker source."),
        ],
        operands: &[],
    },
    CommandDoc {
        name: "avail",
        aliases: &["available"],
        usage: &["avail [-j] [-H] [-o FIELD,...] [-s FIELD,...] [<filters>]"],
        summary: "List the images the IMGAPI sources offer (columns uuid,name,version,os,type,pub).",
        description: &["Lists the active images of every IMGAPI source (the first source listing a uuid wins), \
             with list's columns, sort, filters and -j, plus the field source. A source that does not answer is \
             an error (exit 1) after the others' images are listed."],
        options: &[
            flag("json", Some('j'), Some("json"), "Print the images as a JSON array of {manifest, source}."),
            IMAGE_NOHEADER,
            IMAGE_OUTPUT,
            IMAGE_SORT,
        ],
        operands: &[Kind::ImageFilter],
    },
    CommandDoc {
        name: "update",
        aliases: &[],
        usage: &["update [-n] [<uuid>...]"],
        summary: "Fetch installed images' manifests again from the image sources.",
        description: &["Fetches the manifest of every installed image (or of those given) from the first IMGAPI \
             source that has it and stores what changed: Updated N manifest fields for image <uuid> from \
             \"<url>\": <fields>. An image no source has is a warning. -n says what would change."],
        options: &[flag("dry-run", Some('n'), Some("dry-run"), "Change nothing; say what would change.")],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "vacuum",
        aliases: &[],
        usage: &["vacuum [-n] [-f]"],
        summary: "Delete the images no instance and no other image uses.",
        description: &["Deletes every installed image that no instance was cloned from and that is no installed \
             image's origin (after the images that were its only users), after asking on stdin (Delete these N \
             images? [y/N]) unless -f: Deleted image <uuid> (<name>@<version>)."],
        options: &[
            flag("dry-run", Some('n'), Some("dry-run"), "Delete nothing; say what would be deleted."),
            flag("force", Some('f'), Some("force"), "Do not ask before deleting."),
        ],
        operands: &[],
    },
    CommandDoc {
        name: "ancestry",
        aliases: &[],
        usage: &["ancestry [-j] [-H] [-o FIELD,...] [-P <pool>] <uuid>"],
        summary: "List an installed image and its origin chain (columns uuid,name,version,published).",
        description: &[],
        options: &[
            flag("json", Some('j'), Some("json"), "Print the images as a JSON array."),
            IMAGE_NOHEADER,
            IMAGE_OUTPUT,
            valued("zpool", Some('P'), None, "POOL", Kind::Any, "The pool (zonevisor has one: zones)."),
        ],
        operands: &[Kind::Image],
    },
];

/// `-H` of imgadm's tables (`list`, `avail`, `ancestry`).
const IMAGE_NOHEADER: OptDoc = flag("noheader", Some('H'), None, "Leave out the header line.");
/// `-o` of imgadm's tables.
const IMAGE_OUTPUT: OptDoc =
    valued("output", Some('o'), Some("output"), "FIELD,...", Kind::ImageFields, "The columns to show.");
/// `-s` of imgadm's sorted tables (`list`, `avail`).
const IMAGE_SORT: OptDoc = valued(
    "sort",
    Some('s'),
    Some("sort"),
    "FIELD,...",
    Kind::ImageFields,
    "The fields to sort by; -field sorts descending.",
);

/// `imgadm`.
pub const IMGADM: ToolDoc = ToolDoc {
    name: "imgadm",
    section: 8,
    summary: "import, install, list and remove zone and VM images",
    usage: &[],
    description: &[
        "Manage zonevisor images, as SmartOS's imgadm does. An image is a manifest (v2) plus a tarball of a root \
         filesystem, installed as a read-only dataset that zones clone in constant time. Images come from \
         image sources (IMGAPI servers such as https://images.smartos.org: sources, avail, import) or from \
         local files (install).",
    ],
    commands: IMGADM_COMMANDS,
    options: &[SOCKET, HELP, VERSION],
    operands: &[],
    sections: &[],
    exit_status: &[("0", "success"), ("1", "error"), ("2", "usage error"), ("3", "the image is not installed")],
    environment: &[("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given.")],
    files: &[("/var/lib/zonevisor/run/zonevisord.sock", "The default root's API socket.")],
    see_also: &["vmadm(8)", "zonevisord(8)"],
};

/// `-?`, which `nictagadm` takes for help as SmartOS's does.
const HELP_QUESTION: OptDoc = flag("help", Some('?'), None, "Show this help and exit (as -h).");

const NICTAG_PROPS: OptDoc = valued(
    "props",
    Some('p'),
    None,
    "PROP=VALUE,...",
    Kind::Any,
    "Properties, comma-separated, -p repeatable: mac=<MAC or link name> (the link, instead of the last \
     argument) and mtu=<1500-9000>.",
);

const NICTAGADM_COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "add",
        aliases: &[],
        usage: &["add [-l] [-p prop=value,...] <name> [link|mac]"],
        summary: "Add a nic tag over a link (by name or MAC address), or with -l an etherstub.",
        description: &[
            "Adds the nic tag <name>. Over a physical link, given by name (eno1) or by MAC address as SmartOS \
             takes it, zonevisor builds a Linux bridge for the NICs on the tag (type normal); naming a Linux \
             bridge the host already has uses that bridge (type bridge). With -l it is an etherstub: a switch \
             local to the host, with no link and no MTU to set. A link is required unless -l is given, and \
             refused with it. Prints nothing when it succeeds.",
        ],
        options: &[
            flag("local", Some('l'), None, "Make an etherstub (a host-local switch) instead of a tag over a link."),
            NICTAG_PROPS,
        ],
        operands: &[Kind::Any, Kind::Link],
    },
    CommandDoc {
        name: "update",
        aliases: &[],
        usage: &["update [-p prop=value,...] <name> [link|mac]"],
        summary: "Move a nic tag to another link, or change its MTU.",
        description: &[
            "Moves the nic tag <name> to another link (by name or MAC address, as the last argument or with \
             -p mac=) or changes its MTU (-p mtu=N, 1500-9000); at least one of them must be given. Prints \
             nothing when it succeeds.",
        ],
        options: &[NICTAG_PROPS],
        operands: &[Kind::NicTag, Kind::Link],
    },
    CommandDoc {
        name: "delete",
        aliases: &[],
        usage: &["delete [-f] <name>"],
        summary: "Remove a nic tag (refused while instances have NICs on it, unless -f).",
        description: &[],
        options: &[flag("force", Some('f'), None, "Delete it even while instances have NICs on it.")],
        operands: &[Kind::NicTag],
    },
    CommandDoc {
        name: "exists",
        aliases: &[],
        usage: &["exists [-l] <name> ..."],
        summary: "Exit 0 if every nic tag named exists, else 1.",
        description: &[
            "Exits 0 when every nic tag named exists. Otherwise it prints \"invalid tag: <name>\" on stderr for \
             each one missing and exits 1. Nothing is printed on stdout.",
        ],
        options: &[flag("names", Some('l'), None, "Print only the missing names on stderr, one a line.")],
        operands: &[Kind::NicTags],
    },
    CommandDoc {
        name: "list",
        aliases: &[],
        usage: &["list [-l | -L] [-p] [-d delim] [-H] [-j]"],
        summary: "List nic tags: NAME MACADDRESS LINK TYPE, etherstubs last.",
        description: &[
            "Lists the nic tags in SmartOS's columns NAME, MACADDRESS, LINK and TYPE (normal, bridge or \
             etherstub): tags over links sorted by name, then etherstubs sorted by name. Columns are 14, 18, \
             14 and 16 characters followed by a space, and a longer value pushes the rest of its line right, \
             as in SmartOS; a missing value is -.",
            "Neither the table nor the parsable form has room for what zonevisor adds to a tag, and scripts \
             read the parsable form by position, so both keep SmartOS's four fields. -j prints each tag whole \
             instead: name, type, link, mac_address, mtu, bridge (the Linux bridge its NICs are ports of) and, \
             for the network zonevisor manages itself (the default one), network: the host's addresses on it \
             (ipv4, the instances' gateway with the subnet's prefix, and ipv6), the uplink its traffic is \
             masqueraded out of (nat, or nat_missing saying why there is none) and whether its DHCP and DNS \
             server runs (dhcp).",
        ],
        options: &[
            flag("local", Some('l'), None, "Only etherstubs."),
            flag("nolocal", Some('L'), None, "No etherstubs."),
            flag(
                "parsable",
                Some('p'),
                None,
                "Parsable output: the four fields separated by : (a MAC address's colons escaped as \\:), no header.",
            ),
            valued("delim", Some('d'), None, "DELIM", Kind::Any, "The delimiter for -p, instead of :."),
            flag("noheader", Some('H'), None, "Leave out the header line (zonevisor's)."),
            flag(
                "json",
                Some('j'),
                None,
                "Print the tags as a JSON array with every property, the managed network's included (zonevisor's).",
            ),
        ],
        operands: &[],
    },
    CommandDoc {
        name: "vms",
        aliases: &[],
        usage: &["vms <name>"],
        summary: "Print the UUIDs of the instances with a NIC on the nic tag, one per line.",
        description: &[],
        options: &[],
        operands: &[Kind::NicTag],
    },
];

/// `nictagadm`.
pub const NICTAGADM: ToolDoc = ToolDoc {
    name: "nictagadm",
    section: 8,
    summary: "manage nic tags, the host networks instance NICs join",
    usage: &[],
    description: &[
        "Manage nic tags through zonevisord, with SmartOS's commands, output and exit codes. A nic tag names a \
         host network; an instance's NIC joins it by naming it in its nic_tag. Each nic tag is a Linux bridge: \
         one zonevisor builds over a physical link (type normal), one the host already has (type bridge), or a \
         switch local to the host (type etherstub).",
        "Nic tags are kept in zonevisord's state and survive reboots: there is no config file to edit. Where \
         SmartOS takes a MAC address, the link may also be named.",
    ],
    commands: NICTAGADM_COMMANDS,
    options: &[SOCKET, HELP, HELP_QUESTION, VERSION],
    operands: &[],
    sections: &[Section {
        title: "EXAMPLES",
        paragraphs: &[
            " nictagadm add external eno1",
            " nictagadm add -p mtu=9000 storage 0c:c4:7a:12:34:56",
            " nictagadm add -l stub0",
            " nictagadm list -p -d '|'",
            " nictagadm exists external && echo yes",
        ],
        in_help: false,
    }],
    exit_status: &[
        ("0", "success (for exists: every nic tag named exists)"),
        ("1", "error (for exists: a nic tag named does not exist)"),
        ("2", "usage error"),
    ],
    environment: &[("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given.")],
    files: &[("/var/lib/zonevisor/run/zonevisord.sock", "The default root's API socket.")],
    see_also: &["vmadm(8)", "fwadm(8)", "sysinfo(8)"],
};

const FW_JSON: OptDoc = flag("json", Some('j'), Some("json"), "Print the result as JSON.");
const FW_DESC: OptDoc = valued(
    "description",
    Some('d'),
    Some("desc"),
    "TEXT",
    Kind::Any,
    "The rules' description (fwadm has only --desc; -d is zonevisor's).",
);
const FW_FILE: OptDoc =
    valued("file", Some('f'), Some("file"), "FILE", Kind::File, "Read a JSON payload from FILE (- is stdin).");
const FW_STDIN: OptDoc = flag("stdin", None, Some("stdin"), "Read a JSON payload from stdin.");

const FWADM_COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "add",
        aliases: &[],
        usage: &[
            "add [-e] [-g] [-O <owner uuid>] [-d|--desc <text>] [-j] <rule text>",
            "add [-e] [-g] [-O <owner uuid>] [-j] -f <file> | --stdin",
        ],
        summary: "Add a rule written on the command line, or the rules of a JSON payload.",
        description: &[
            "Adds one rule written on the command line (its words are joined with spaces, so quotes are only \
             needed for the shell's sake), or the rules of a JSON payload read from -f FILE (- is stdin), from \
             stdin with --stdin, or from stdin when nothing else is given and stdin is not a terminal. The \
             payload is SmartOS's: {\"rules\": [{\"rule\": ..., \"enabled\": ..., \"owner_uuid\": ..., \
             \"global\": ..., \"description\": ..., \"uuid\": ...}]}, or one rule object; version and \
             created_by are accepted and ignored, and remote VMs (remoteVMs) are not supported. -e, -g and -O \
             apply to every rule. The rules are added together or not at all.",
            "Prints \"Added rules:\" and a line per rule: its UUID, true or false, and its text.",
        ],
        options: &[
            flag("enable", Some('e'), Some("enable"), "Enable the rules (they are added disabled)."),
            flag("global", Some('g'), Some("global"), "Global rules: for the instances of every owner."),
            valued(
                "owner_uuid",
                Some('O'),
                Some("owner_uuid"),
                "UUID",
                Kind::Any,
                "The owner whose instances the rules apply to.",
            ),
            FW_DESC,
            FW_FILE,
            FW_STDIN,
            FW_JSON,
        ],
        operands: &[Kind::Words],
    },
    CommandDoc {
        name: "update",
        aliases: &[],
        usage: &[
            "update <rule uuid> [-e] [-d|--desc <text>] [-j] [<rule text>]",
            "update [<rule uuid>] [-e] [-j] -f <file> | --stdin",
        ],
        summary: "Change a rule's text, description or state, or the rules of a JSON payload.",
        description: &[
            "Gives the rule <rule uuid> the text written on the command line; -e also enables it and --desc \
             sets its description. A JSON payload (from -f FILE, --stdin, or stdin when nothing else is given \
             and it is not a terminal) holds one rule for <rule uuid>, or, without <rule uuid>, rules that each \
             have their uuid: their rule, enabled and description change; owner_uuid and global may be there \
             unchanged (as fwadm get prints them) but cannot change. The rules are changed one after another: \
             if one fails, those before it stay changed.",
            "Prints \"Updated rules:\" and a line per rule.",
        ],
        options: &[
            flag("enable", Some('e'), Some("enable"), "Enable the rules as well."),
            FW_DESC,
            FW_FILE,
            FW_STDIN,
            FW_JSON,
        ],
        operands: &[Kind::FwRule, Kind::Words],
    },
    CommandDoc {
        name: "delete",
        aliases: &[],
        usage: &["delete [-j] <rule uuid> ..."],
        summary: "Delete rules (every one must exist, or none is deleted) and print them.",
        description: &[
            "Deletes the rules once it has found every one of them (otherwise none is deleted), and prints \
             \"Deleted rules:\" and a line per rule.",
        ],
        options: &[FW_JSON],
        operands: &[Kind::FwRules],
    },
    CommandDoc {
        name: "enable",
        aliases: &[],
        usage: &["enable [-j] <rule uuid> ..."],
        summary: "Enable rules and print them (\"Enabled rules:\").",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::FwRules],
    },
    CommandDoc {
        name: "disable",
        aliases: &[],
        usage: &["disable [-j] <rule uuid> ..."],
        summary: "Disable rules and print them (\"Disabled rules:\").",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::FwRules],
    },
    CommandDoc {
        name: "get",
        aliases: &[],
        usage: &["get <rule uuid>"],
        summary: "Print a rule as JSON: description, enabled, global (when true), owner_uuid, rule, uuid.",
        description: &[],
        options: &[],
        operands: &[Kind::FwRule],
    },
    CommandDoc {
        name: "list",
        aliases: &[],
        usage: &["list [-j] [-o field,...] [-p] [-d <char>] [-H]"],
        summary: "List rules sorted by UUID (columns UUID ENABLED RULE).",
        description: &[
            "Lists every rule sorted by UUID, by default in the columns UUID, ENABLED and RULE; -o chooses \
             among description, enabled, global, owner_uuid, rule and uuid (another field is an error, exit 1). \
             As fwadm prints them, a value that is missing or false is - (a disabled rule's ENABLED too), \
             columns are separated by one space and are at least fwadm's width for their field (uuid and \
             owner_uuid 36, rule 20, description 15, enabled 7, global 6), and there is no header when there \
             are no rules.",
        ],
        options: &[
            flag("json", Some('j'), Some("json"), "Print the rules as a JSON array (with -o, only those fields)."),
            valued("fields", Some('o'), Some("fields"), "FIELD,...", Kind::FwFields, "The fields to show, in order."),
            flag(
                "parseable",
                Some('p'),
                Some("parseable"),
                "Parsable output: the fields separated by : (a : inside a value escaped as \\:), no header.",
            ),
            valued("delim", Some('d'), Some("delim"), "CHAR", Kind::Any, "The delimiter for -p, instead of :."),
            flag("noheader", Some('H'), None, "Leave out the header line (zonevisor's)."),
        ],
        operands: &[],
    },
    CommandDoc {
        name: "vms",
        aliases: &[],
        usage: &["vms [-j] <rule uuid>"],
        summary: "Print the UUIDs of the instances a rule applies to, one per line.",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::FwRule],
    },
    CommandDoc {
        name: "rules",
        aliases: &[],
        usage: &["rules [-j] <vm uuid>"],
        summary: "List the rules that apply to an instance, as list does.",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "status",
        aliases: &[],
        usage: &["status [-v] [-j] <vm uuid>"],
        summary: "Print running or stopped: whether the instance's firewall is on.",
        description: &[
            "Prints running when the instance's firewall is on (its firewall_enabled is true), else stopped. \
             -v prints running: true|false and rules: N, the number of enabled rules that apply to it; -j \
             prints the same as a JSON object.",
        ],
        options: &[flag("verbose", Some('v'), Some("verbose"), "Also print how many enabled rules apply."), FW_JSON],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "stats",
        aliases: &[],
        usage: &["stats [-j] <vm uuid>"],
        summary: "Print how many packets and bytes each rule matched in an instance's firewall.",
        description: &[
            "Prints a line per rule in the instance's firewall: the packets and the bytes it matched, its UUID \
             and its text. (SmartOS's fwadm prints ipfilter's hits and rule text; the count comes first in both.)",
        ],
        options: &[FW_JSON],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "start",
        aliases: &[],
        usage: &["start [-j] <vm uuid>"],
        summary: "Turn an instance's firewall on (sets its firewall_enabled).",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::Instance],
    },
    CommandDoc {
        name: "stop",
        aliases: &[],
        usage: &["stop [-j] <vm uuid>"],
        summary: "Turn an instance's firewall off (clears its firewall_enabled).",
        description: &[],
        options: &[FW_JSON],
        operands: &[Kind::Instance],
    },
];

/// `fwadm`.
pub const FWADM: ToolDoc = ToolDoc {
    name: "fwadm",
    section: 8,
    summary: "manage firewall rules",
    usage: &[],
    description: &[
        "Manage firewall rules through zonevisord, with SmartOS's commands, rule language, output and exit \
         codes. A rule applies only to instances whose firewall_enabled is true; one with an owner_uuid only to \
         that owner's instances, a global one to every owner's. An instance's firewall blocks what comes in \
         unless a rule allows it, and lets everything out unless a rule blocks it. Changing rules, or an \
         instance's tags, NICs or firewall_enabled, updates the firewalls of the instances concerned.",
        "Remote VMs (add-rvm, delete-rvm, get-rvm, list-rvms, rvm-rules) are not supported.",
    ],
    commands: FWADM_COMMANDS,
    options: &[SOCKET, HELP, VERSION],
    operands: &[],
    sections: &[
        Section {
            title: "RULES",
            paragraphs: &["FROM <targets> TO <targets> ALLOW|BLOCK <protocol> <ports> [PRIORITY n], as SmartOS's \
                 fwrule(7) describes. Targets: any, all vms, vm <uuid>, ip <address>, subnet <cidr>, tag <name> \
                 or tag <name>=<value>, or several as ( target OR target ... ). Protocols: tcp and udp with PORT \
                 n, PORTS a, b, c-d or PORT all; icmp and icmp6 with TYPE t [CODE c] or TYPE all; ah; esp."],
            in_help: true,
        },
        Section {
            title: "EXAMPLES",
            paragraphs: &[
                " fwadm add -e FROM any TO all vms ALLOW tcp PORT 22",
                " fwadm add -g -e FROM any TO all vms ALLOW icmp TYPE 8 CODE 0",
                " fwadm add -f rules.json",
                " fwadm update 5b1f6a2e-0c3d-4e6f-8a9b-1c2d3e4f5a6b FROM tag www TO tag db ALLOW tcp PORT 5432",
                " fwadm list -p -d '|'",
            ],
            in_help: false,
        },
    ],
    exit_status: &[
        ("0", "success"),
        ("1", "error (the daemon refused, or a UUID is missing or malformed)"),
        ("2", "usage error"),
    ],
    environment: &[("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given.")],
    files: &[("/var/lib/zonevisor/run/zonevisord.sock", "The default root's API socket.")],
    see_also: &["vmadm(8)", "nictagadm(8)"],
};

/// `sysinfo`.
pub const SYSINFO: ToolDoc = ToolDoc {
    name: "sysinfo",
    section: 8,
    summary: "print the host's facts",
    usage: &["[-p] [--socket PATH]"],
    description: &[
        "Print the host's facts as JSON, in SmartOS's names (UUID, CPU Type, MiB of Memory, Zpool, Network \
         Interfaces, ...), plus what zonevisor chose on this host: Zpool Backend, Cgroup Version, Proc \
         Virtualization, Fair I/O and HVM Accelerator.",
    ],
    commands: &[],
    options: &[
        flag(
            "parsable",
            Some('p'),
            None,
            "Parsable output: one Key='value' line per fact for the shell (spaces in keys become _).",
        ),
        SOCKET,
        HELP,
        VERSION,
    ],
    operands: &[],
    sections: &[],
    exit_status: &[("0", "success"), ("1", "error"), ("2", "usage error")],
    environment: &[("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given.")],
    files: &[],
    see_also: &["vmadm(8)", "zonevisord(8)"],
};

/// `zlogin`.
pub const ZLOGIN: ToolDoc = ToolDoc {
    name: "zlogin",
    section: 1,
    summary: "run a shell or a command inside a running zone",
    usage: &["[-t|-T] [--socket PATH] <uuid> [command [args ...]]"],
    description: &[
        "Without a command, start a login shell in the running zone <uuid> (bash when the zone has /bin/bash, \
         else sh). With a command, run it there through the zone's shell and exit with its status (128 + the \
         signal when it is killed). Must be run as root: it enters the zone's namespaces and cgroup itself.",
        "The command's words are joined with spaces into one string that the zone's shell runs with sh -c, as \
         SmartOS's zlogin does: zlogin <uuid> ls -l /tmp runs \"ls -l /tmp\", and quoting meant for the zone's \
         shell must survive the caller's: zlogin <uuid> 'echo \"$HOME\" > /tmp/home'.",
        "When stdin and stdout are terminals, the command runs on a new pty of the zone's own devpts, as its \
         session's controlling terminal: job control and ^C work, and the window size follows the caller's \
         terminal. Otherwise the command gets zlogin's stdin, stdout and stderr as they are. Options must come \
         before the uuid: everything after it is the command.",
    ],
    commands: &[],
    options: &[
        flag("pty", Some('t'), None, "Use a pty even when stdin or stdout is not a terminal."),
        flag("no-pty", Some('T'), None, "Never use a pty."),
        SOCKET,
        HELP,
        VERSION,
    ],
    operands: &[Kind::RunningInstance, Kind::Words],
    sections: &[Section {
        title: "EXAMPLES",
        paragraphs: &[" zlogin $(vmadm lookup -1 alias=web01)", " zlogin $(vmadm lookup -1 alias=web01) 'ps; free -m'"],
        in_help: false,
    }],
    exit_status: &[
        ("0", "the command succeeded"),
        ("1", "zlogin failed (the zone is not running, not root...)"),
        ("2", "usage error"),
        ("N", "the command's own exit status, 128 + the signal when it was killed"),
    ],
    environment: &[
        ("ZONEVISOR_SOCKET", "The daemon's socket when --socket is not given."),
        ("TERM", "Passed into the zone; nothing else of the caller's environment is."),
    ],
    files: &[],
    see_also: &["vmadm(8)"],
};

const ZONEVISOR_COMMANDS: &[CommandDoc] = &[
    CommandDoc {
        name: "vmadm",
        aliases: &[],
        usage: &["vmadm <command> [options]"],
        summary: "Create, list and manage zones and VMs.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "imgadm",
        aliases: &[],
        usage: &["imgadm <command> [options]"],
        summary: "Install, list and remove images.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "nictagadm",
        aliases: &[],
        usage: &["nictagadm <command> [options]"],
        summary: "Add, list and remove nic tags.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "fwadm",
        aliases: &[],
        usage: &["fwadm <command> [options]"],
        summary: "Add, list and remove firewall rules.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "sysinfo",
        aliases: &[],
        usage: &["sysinfo [-p]"],
        summary: "Show the host's facts.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "zlogin",
        aliases: &[],
        usage: &["zlogin <uuid> [command ...]"],
        summary: "Run a shell or a command inside a running zone.",
        description: &[],
        options: &[],
        operands: &[],
    },
    CommandDoc {
        name: "man",
        aliases: &[],
        usage: &["man <page>"],
        summary: "Print a man page in roff: vmadm, imgadm, nictagadm, fwadm, sysinfo, zlogin, zonevisor or \
                  zonevisord.",
        description: &[],
        options: &[],
        operands: &[Kind::Word(&[
            "vmadm",
            "imgadm",
            "nictagadm",
            "fwadm",
            "sysinfo",
            "zlogin",
            "zonevisor",
            "zonevisord",
        ])],
    },
    CommandDoc {
        name: "completion",
        aliases: &[],
        usage: &["completion bash|zsh"],
        summary: "Print the completion script for bash or zsh.",
        description: &["Prints the completion script for bash or zsh. The scripts complete commands and options from \
             these definitions, and UUIDs, aliases and image UUIDs from the running daemon (typing an alias \
             where a UUID goes offers that VM's UUID)."],
        options: &[],
        operands: &[Kind::Word(&["bash", "zsh"])],
    },
];

/// `zonevisor`, the multi-call binary.
pub const ZONEVISOR: ToolDoc = ToolDoc {
    name: "zonevisor",
    section: 8,
    summary: "the multi-call binary behind vmadm, imgadm, nictagadm, fwadm, sysinfo and zlogin",
    usage: &[],
    description: &[
        "One binary is all the tools: called through a link named vmadm, imgadm, nictagadm, fwadm, sysinfo or \
         zlogin it is that tool; called as zonevisor, its first argument names the tool.",
    ],
    commands: ZONEVISOR_COMMANDS,
    options: &[HELP, VERSION],
    operands: &[],
    sections: &[],
    exit_status: &[("0", "success"), ("1", "error"), ("2", "usage error")],
    environment: &[],
    files: &[],
    see_also: &["vmadm(8)", "imgadm(8)", "nictagadm(8)", "fwadm(8)", "sysinfo(8)", "zlogin(1)", "zonevisord(8)"],
};

/// `zonevisord`: everything but its options, which are its clap
/// definition's (see [`crate::doc::OptLine::from_clap`]).
pub const ZONEVISORD: ToolDoc = ToolDoc {
    name: "zonevisord",
    section: 8,
    summary: "the zonevisor daemon: zones on a copy-on-write pool",
    usage: &[],
    description: &[
        "zonevisord runs zones (system containers with their own init, hostname, network stack, filesystem and \
         resource limits) on a copy-on-write pool, and serves the API that vmadm, imgadm and sysinfo use: JSON \
         over HTTP on a Unix socket only root may use (<root>/run/zonevisord.sock), described by openapi.json \
         in the source.",
        "It runs in the foreground and logs to stderr, without colours unless stderr is a terminal. Only one \
         daemon may run on a root; a second one is refused. On start it undoes any create or image install that \
         was interrupted, re-adopts running zones, and after a host reboot starts every zone whose autoboot is \
         true.",
        "Each running zone belongs to its own monitor process (zonevisor-monitor), and the zones' /proc files \
         come from the daemon's lxcfs: both outlive the daemon, so it can be restarted (or crash) without \
         touching zones. Under systemd, the unit's KillMode=process keeps them when the service stops or \
         restarts.",
    ],
    commands: &[],
    options: &[],
    operands: &[],
    sections: &[Section {
        title: "SIGNALS",
        paragraphs: &["SIGTERM and SIGINT stop the daemon; zones, their monitors and lxcfs keep running."],
        in_help: false,
    }],
    exit_status: &[("0", "stopped by a signal"), ("1", "could not start (the reason is logged)")],
    environment: &[
        ("ZONEVISOR_LOG", "The log filter (default info; e.g. debug, or zonevisor_daemon=debug)."),
        ("NO_COLOR", "When set and not empty, no colours even on a terminal."),
    ],
    files: &[
        ("/var/lib/zonevisor", "The default root: everything the host keeps."),
        ("<root>/zones.img", "The pool's sparse loop file (the default pool source)."),
        ("<root>/zones", "The pool's mountpoint; the state database is zones/config/zonevisor.db."),
        ("<root>/run/zonevisord.sock", "The API socket (mode 0600)."),
        ("<root>/run/zonevisord.lock", "Held while a daemon runs on the root; holds its pid."),
        ("<root>/run/lxcfs", "The daemon's lxcfs mount."),
    ],
    see_also: &["vmadm(8)", "imgadm(8)", "sysinfo(8)", "zlogin(1)", "systemctl(1)"],
};

/// The pages `zonevisor man` renders, by name.
pub const PAGES: &[&ToolDoc] = &[&VMADM, &IMGADM, &NICTAGADM, &FWADM, &SYSINFO, &ZLOGIN, &ZONEVISOR, &ZONEVISORD];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{render_help, render_man, roff_escape, OptLine};
    use crate::fake::s;
    use crate::CliError;

    const U: &str = "0d6e5b7c-8f1a-4f5e-9a51-6e1b2c3d4e5f";

    /// Every option of every command is in its usage line, its tool's
    /// help and man page; every global option in both.
    #[test]
    fn every_option_is_documented_everywhere() {
        for tool in PAGES.iter().filter(|t| t.name != "zonevisord") {
            let help = render_help(tool);
            let man = render_man(tool, &[]);
            let mut all: Vec<&OptDoc> = tool.options.iter().collect();
            for c in tool.commands {
                for o in c.options {
                    let named = |n: String| c.usage.iter().any(|u| u.contains(&n));
                    assert!(
                        o.opt.short.is_some_and(|x| named(format!("-{x}")))
                            || o.opt.long.is_some_and(|l| named(format!("--{l}"))),
                        "{} {}: option {:?} is not in its usage {:?}",
                        tool.name,
                        c.name,
                        o.opt,
                        c.usage
                    );
                    all.push(o);
                }
            }
            for o in all {
                let line = OptLine::from_doc(o);
                assert!(help.contains(&line.flags()), "{} --help lacks {}", tool.name, line.flags());
                for name in o.opt.short.map(|c| format!("-{c}")).into_iter().chain(o.opt.long.map(|l| format!("--{l}")))
                {
                    let roff = format!("\\fB{}\\fR", roff_escape(&name));
                    assert!(man.contains(&roff), "{}'s man page lacks {name}", tool.name);
                }
            }
            for c in tool.commands {
                for a in c.aliases {
                    assert!(man.contains(&format!("\\fB{}\\fR", roff_escape(a))), "{} alias {a}", tool.name);
                }
            }
        }
    }

    /// Whether `parse` accepts option `arg` (`-x`, `--xyz`) for `command`:
    /// anything but "unknown option" means it did.
    fn accepted(result: Result<(), CliError>, arg: &str) -> bool {
        match result {
            Err(CliError::Usage(m)) => m != format!("unknown option {arg}"),
            _ => true,
        }
    }

    fn documented(tool: &ToolDoc, command: Option<&CommandDoc>, arg: &str) -> bool {
        let opts = tool.options.iter().chain(command.map(|c| c.options).unwrap_or_default()).chain([&HELP, &SOCKET]);
        opts.clone().any(|o| arg.strip_prefix("--").is_some_and(|l| o.opt.long == Some(l)))
            || opts
                .into_iter()
                .any(|o| arg.len() == 2 && arg.strip_prefix('-').and_then(|c| c.chars().next()) == o.opt.short)
    }

    /// Probes the parsers with every short option and every long option
    /// any table knows: what they accept is exactly what is documented.
    #[test]
    fn parsers_accept_exactly_the_documented_options() {
        let mut shorts: Vec<String> = ('a'..='z').chain('A'..='Z').chain('0'..='9').map(|c| format!("-{c}")).collect();
        shorts.push("-?".into());
        let mut longs: Vec<String> = PAGES
            .iter()
            .flat_map(|t| t.options.iter().chain(t.commands.iter().flat_map(|c| c.options)))
            .filter_map(|o| o.opt.long.map(|l| format!("--{l}")))
            .collect();
        longs.extend(["--force", "--verbose", "--all", "--quiet"].map(str::to_string));
        let probes: Vec<String> = shorts.into_iter().chain(longs).collect();
        for tool in [&VMADM, &IMGADM, &NICTAGADM, &FWADM] {
            for c in tool.commands {
                for arg in &probes {
                    if tool.name == "vmadm" && c.name == "kill" && arg.len() == 2 && arg.as_bytes()[1].is_ascii_digit()
                    {
                        continue; // kill's -SIGNAL (-9): documented as such
                    }
                    if arg == "--version" {
                        continue; // only as the first argument (Tool::run)
                    }
                    let argv = s(&[c.name, arg, U]);
                    let result = match tool.name {
                        "vmadm" => crate::vmadm::parse_args(&argv).map(|_| ()),
                        "nictagadm" => crate::nictagadm::parse_args(&argv).map(|_| ()),
                        "fwadm" => crate::fwadm::parse_args(&argv).map(|_| ()),
                        _ => crate::imgadm::parse_args(&argv).map(|_| ()),
                    };
                    assert_eq!(
                        accepted(result, arg),
                        documented(tool, Some(c), arg),
                        "{} {} {arg}: the parser and the documentation disagree",
                        tool.name,
                        c.name
                    );
                }
            }
        }
        for arg in &probes {
            if arg == "--version" {
                continue;
            }
            let result = crate::zlogin::parse_args(&s(&[arg, U])).map(|_| ());
            assert_eq!(accepted(result, arg), documented(&ZLOGIN, None, arg), "zlogin {arg}");
        }
    }

    #[test]
    fn version_is_every_tools_first_argument() {
        for tool in ["vmadm", "imgadm", "nictagadm", "fwadm", "sysinfo", "zlogin"] {
            let argv = [tool, "--version"];
            let mut t = crate::fake::TestIo::new();
            assert_eq!(t.run(&argv), 0);
            assert_eq!(t.out(), format!("{} {}\n", argv[0], crate::doc::VERSION));
        }
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "--version"]), 0);
        assert!(t.out().starts_with("zonevisor 0."), "{}", t.out());
    }

    #[test]
    fn man_and_completion_subcommands() {
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "man", "vmadm"]), 0);
        assert!(t.out().starts_with(".\\\" Generated by"), "{}", t.out());
        assert!(t.out().contains(".TH VMADM 8 "));
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "man", "dladm"]), crate::EXIT_USAGE);
        assert!(t.err().contains("no man page \"dladm\" (one of vmadm, imgadm, nictagadm, fwadm,"), "{}", t.err());
        for (page, th) in [("nictagadm", ".TH NICTAGADM 8 "), ("fwadm", ".TH FWADM 8 ")] {
            let mut t = crate::fake::TestIo::new();
            assert_eq!(t.run(&["zonevisor", "man", page]), 0, "{}", t.err());
            assert!(t.out().contains(th), "{}", t.out());
        }
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "completion", "bash"]), 0);
        assert!(t.out().contains("complete -F _zonevisor vmadm imgadm nictagadm fwadm sysinfo zlogin zonevisor"));
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "completion", "fish"]), crate::EXIT_USAGE);
        // The scripts call the tool itself: `vmadm __complete ...`.
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["vmadm", "__complete", "bash", "--", "vmadm li"]), 0);
        assert_eq!(t.out(), "plain\nlist\n");
    }
}
