//! `zonevisord`: the daemon. All of it lives in `zonevisor-daemon`.

use clap::{CommandFactory, FromArgMatches};

fn main() -> anyhow::Result<()> {
    let matches = zonevisor_daemon::Config::command().version(zonevisor_cli::doc::VERSION).get_matches();
    zonevisor_daemon::run(zonevisor_daemon::Config::from_arg_matches(&matches)?)
}
