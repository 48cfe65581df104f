//! The multi-call CLI binary: `vmadm`, `imgadm`, `sysinfo` and `zlogin`
//! (by the name it is called as, or as `zonevisor <tool> ...`).

fn main() {
    std::process::exit(zonevisor_cli::main())
}
