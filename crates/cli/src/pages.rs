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
            flag("noheader", Some('H'), None, "Leave out the header line."),
            valued("output", Some('o'), Some("output"), "FIELD,...", Kind::ImageFields, "The columns to show."),
            valued(
                "sort",
                Some('s'),
                Some("sort"),
                "FIELD,...",
                Kind::ImageFields,
                "The fields to sort by; -field sorts descending.",
            ),
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
        usage: &["show <uuid>"],
        summary: "Print an installed image's manifest.",
        description: &[],
        options: &[],
        operands: &[Kind::Image],
    },
    CommandDoc {
        name: "import",
        aliases: &[],
        usage: &["import [-q] [-P <pool>] <uuid>"],
        summary: "Import an image: an image already installed is skipped (exit 0), as in SmartOS.",
        description: &[
            "Importing from image sources (IMGAPI servers, registries) is not supported yet: an image that is not \
             installed is an error (exit 1); install it from local files with imgadm install.",
        ],
        options: &[
            flag("quiet", Some('q'), Some("quiet"), "Print nothing but errors (accepted for SmartOS's scripts)."),
            valued("zpool", Some('P'), None, "POOL", Kind::Any, "The pool (zonevisor has one: zones)."),
        ],
        operands: &[Kind::Image],
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
];

/// `imgadm`.
pub const IMGADM: ToolDoc = ToolDoc {
    name: "imgadm",
    section: 8,
    summary: "install, list and remove zone images",
    usage: &[],
    description: &[
        "Manage zonevisor images, as SmartOS's imgadm does. An image is a manifest (v2) plus a tarball of a root \
         filesystem, installed as a read-only dataset that zones clone in constant time.",
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
        summary: "Print a man page in roff: vmadm, imgadm, sysinfo, zlogin, zonevisor or zonevisord.",
        description: &[],
        options: &[],
        operands: &[Kind::Word(&["vmadm", "imgadm", "sysinfo", "zlogin", "zonevisor", "zonevisord"])],
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
    summary: "the multi-call binary behind vmadm, imgadm, sysinfo and zlogin",
    usage: &[],
    description: &[
        "One binary is all the tools: called through a link named vmadm, imgadm, sysinfo or zlogin it is that \
         tool; called as zonevisor, its first argument names the tool.",
    ],
    commands: ZONEVISOR_COMMANDS,
    options: &[HELP, VERSION],
    operands: &[],
    sections: &[],
    exit_status: &[("0", "success"), ("1", "error"), ("2", "usage error")],
    environment: &[],
    files: &[],
    see_also: &["vmadm(8)", "imgadm(8)", "sysinfo(8)", "zlogin(1)", "zonevisord(8)"],
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
pub const PAGES: &[&ToolDoc] = &[&VMADM, &IMGADM, &SYSINFO, &ZLOGIN, &ZONEVISOR, &ZONEVISORD];

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
        for tool in [&VMADM, &IMGADM] {
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
        for argv in [["vmadm", "--version"], ["imgadm", "--version"], ["sysinfo", "--version"], ["zlogin", "--version"]]
        {
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
        assert_eq!(t.run(&["zonevisor", "man", "fwadm"]), crate::EXIT_USAGE);
        assert!(t.err().contains("no man page \"fwadm\""), "{}", t.err());
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "completion", "bash"]), 0);
        assert!(t.out().contains("complete -F _zonevisor vmadm imgadm sysinfo zlogin zonevisor"));
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["zonevisor", "completion", "fish"]), crate::EXIT_USAGE);
        // The scripts call the tool itself: `vmadm __complete ...`.
        let mut t = crate::fake::TestIo::new();
        assert_eq!(t.run(&["vmadm", "__complete", "bash", "--", "vmadm li"]), 0);
        assert_eq!(t.out(), "plain\nlist\n");
    }
}
