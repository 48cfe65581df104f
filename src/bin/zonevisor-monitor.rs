//! `zonevisor-monitor <run_dir>`: the per-zone monitor (see `zonevisor_zone::monitor`).
//! `zonevisor-monitor --version` prints its name and version.
//!
//! A C `main` instead of Rust's: the runtime set-up it skips (main-thread
//! stack guard probing via `/proc/self/maps`, stdio checks) costs about
//! 300 KiB of resident memory in every monitor. Arguments still come from
//! `std::env::args`, and the monitor ignores SIGPIPE itself.
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
// SAFETY: this is the only `main` symbol in the binary.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    let mut args = std::env::args_os().skip(1);
    if let (Some(first), None) = (args.next(), args.next()) {
        if first == "--version" {
            println!("zonevisor-monitor {}", zonevisor_cli::doc::VERSION);
            return 0;
        }
    }
    zonevisor_zone::monitor::main()
}
