//! Sets `ZONEVISOR_VERSION` for [`crate::doc::VERSION`]: the package's
//! version, followed by `git describe --always --tags` of the source tree
//! when it is a git checkout and git is installed (`0.1.0 (af183ac)`).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let full = match git(&["describe", "--always", "--tags"]) {
        Some(describe) => format!("{version} ({describe})"),
        None => version,
    };
    println!("cargo:rustc-env=ZONEVISOR_VERSION={full}");
    // Describe again when HEAD moves: HEAD itself, the branch it names, and
    // packed refs. (A tree without git is described once.)
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        let file = git(&["rev-parse", "--git-path", &path]).and_then(|p| PathBuf::from(p).canonicalize().ok());
        if let Some(file) = file {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
