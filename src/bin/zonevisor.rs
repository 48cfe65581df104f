//! The multi-call CLI binary: `vmadm`, `imgadm`, `nictagadm`, `fwadm`, `sysinfo` and `zlogin`
//! (by the name it is called as, or as `zonevisor <tool> ...`), and
//! `zonevisor man|completion`, which also documents the daemon's options.

use clap::CommandFactory;

fn main() {
    std::process::exit(zonevisor_cli::main_with_daemon(zonevisor_daemon::Config::command))
}
