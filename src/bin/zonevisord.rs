//! `zonevisord`: the daemon. All of it lives in `zonevisor-daemon`.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    zonevisor_daemon::run(zonevisor_daemon::Config::parse())
}
