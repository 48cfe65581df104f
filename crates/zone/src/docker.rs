//! A docker zone's init: the image's command run as the zone's first
//! process, as SmartOS's `dockerinit` (smartos-live `src/dockerinit/`)
//! runs it in a zone with `docker: true`.
//!
//! The daemon says what to run ([`crate::DockerInit`]: the entrypoint and
//! command, the environment, working directory, user and whether stdin is
//! open); what depends on the zone's files is decided inside it, after
//! `pivot_root`, by the init process itself (`monitor/child.rs`), reading
//! the zone's own `/etc/passwd` and `/etc/group`:
//!
//! ```text
//! user      "<name|uid>[:<group|gid>]" (absent: "0"); a name from /etc/passwd, its primary
//!           group unless one is given; supplementary groups: those of /etc/group naming
//!           the user (initgroups); a uid without an entry runs with gid 0 and HOME "/"
//!           (Docker's rule; dockerinit would stay root)
//! env       TERM=xterm HOME=<user's home or /> PATH=<default> HOSTNAME=<hostname>,
//!           then the image's and payload's NAME=value entries, each replacing its name
//! workdir   "/" + docker:workdir ("~" is the user's home), made (0755) when absent
//! argv[0]   a name without "/" is looked up in the PATH of that environment
//!           (relative PATH entries under the working directory)
//! stdio     stdout and stderr: the zone's console (its log); stdin: the console with
//!           docker:open_stdin, else /dev/null
//! ```
//!
//! Everything here is pure (text in, answers out) and unit-tested.

use std::path::{Component, Path, PathBuf};

/// `PATH` when the environment gives none (dockerinit's `DEFAULT_PATH`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `TERM` unless the environment sets it (dockerinit's `DEFAULT_TERM`).
pub const DEFAULT_TERM: &str = "xterm";
/// The most of `/etc/passwd` or `/etc/group` read.
pub const MAX_ACCOUNTS_FILE: u64 = 4 << 20;

/// Who the command runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// The user's id.
    pub uid: u32,
    /// The group's id.
    pub gid: u32,
    /// Every group (the primary one first, then supplementary ones).
    pub groups: Vec<u32>,
    /// `HOME`.
    pub home: String,
}

/// One line of `/etc/passwd`: name, uid, gid, home.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
    })
}

/// One line of `/etc/group`: name, gid, members.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || l.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `docker:user` (`None`: root) in the zone's `/etc/passwd`
/// and `/etc/group` (their contents); the error says what is missing.
pub fn resolve_user(user: Option<&str>, passwd: &str, group: &str) -> Result<Ids, String> {
    let spec = user.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let by_name = passwd_entries(passwd).find(|e| e.0 == u);
    let entry = match by_name {
        Some(e) => Some(e),
        None => {
            let uid: u32 =
                u.parse().map_err(|_| format!("user {u:?} is not in the zone's /etc/passwd (and is no uid)"))?;
            passwd_entries(passwd).find(|e| e.1 == uid).or(Some(("", uid, 0, "/")))
        }
    };
    let (name, uid, pgid, home) = entry.unwrap_or(("", 0, 0, "/"));
    let gid = match g {
        None => pgid,
        Some(g) => match group_entries(group).find(|e| e.0 == g) {
            Some(e) => e.1,
            None => g.parse().map_err(|_| format!("group {g:?} is not in the zone's /etc/group (and is no gid)"))?,
        },
    };
    let mut groups = vec![gid];
    if !name.is_empty() {
        for (_, id, members) in group_entries(group) {
            if members.contains(&name) && !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    let home = if home.is_empty() { "/".to_string() } else { home.to_string() };
    Ok(Ids { uid, gid, groups, home })
}

/// The command's environment: dockerinit's defaults, then `env`'s
/// `NAME=value` entries in order, each replacing an earlier one of its
/// name (an entry without a name is skipped, as dockerinit skips it).
pub fn environment(hostname: &str, home: &str, env: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![
        format!("TERM={DEFAULT_TERM}"),
        format!("HOME={home}"),
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    for e in env {
        let Some((name, _)) = e.split_once('=').filter(|(n, _)| !n.is_empty()) else { continue };
        match out.iter_mut().find(|o| o.split_once('=').is_some_and(|(n, _)| n == name)) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// The value of `name` in `env`.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|e| e.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v))
}

/// The working directory: `/` joined with `docker:workdir`, a leading `~`
/// being the user's home (dockerinit's `setupWorkdir`); `.` and `..`
/// resolved lexically, never above `/`.
pub fn workdir(dir: Option<&str>, home: &str) -> PathBuf {
    let mut joined = String::from("/");
    if let Some(d) = dir {
        match d.strip_prefix('~') {
            Some(rest) => {
                joined.push_str(home);
                joined.push('/');
                joined.push_str(rest);
            }
            None => joined.push_str(d),
        }
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(&joined).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The program to execute for `argv0`: itself when it has a `/`, else
/// the first executable of that name in `path` (`PATH`'s value; a
/// relative entry is taken under `workdir`). `is_exec` says whether a
/// path is an executable regular file.
pub fn find_program(
    argv0: &str,
    path: Option<&str>,
    workdir: &Path,
    is_exec: impl Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    if argv0.is_empty() {
        return Err("the command is empty (no docker:entrypoint or docker:cmd)".into());
    }
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    let path = path.unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.starts_with('/') { PathBuf::from(dir) } else { workdir.join(dir) };
        let candidate = dir.join(argv0);
        if is_exec(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("{argv0:?} was not found in PATH ({path})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1000:app:/home/app:/bin/sh\n\
                          svc:x:999:998::/:/bin/false\nbroken line\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:1001:app,svc\nweb:x:1002: app \nsvcgrp:x:998:\n";

    #[test]
    fn users_resolve_as_dockerinit_and_docker_resolve_them() {
        let ids = |u: Option<&str>| resolve_user(u, PASSWD, GROUP);
        assert_eq!(ids(None).unwrap(), Ids { uid: 0, gid: 0, groups: vec![0], home: "/root".into() });
        assert_eq!(
            ids(Some("app")).unwrap(),
            Ids { uid: 1000, gid: 1000, groups: vec![1000, 1001, 1002], home: "/home/app".into() }
        );
        assert_eq!(ids(Some("1000")).unwrap().groups, [1000, 1001, 1002], "a uid with an entry is that user");
        assert_eq!(ids(Some("app:extra")).unwrap().gid, 1001);
        assert_eq!(ids(Some("app:4242")).unwrap().gid, 4242);
        assert_eq!(ids(Some("4321")).unwrap(), Ids { uid: 4321, gid: 0, groups: vec![0], home: "/".into() });
        assert_eq!(ids(Some("4321:77")).unwrap().gid, 77);
        assert_eq!(ids(Some("svc")).unwrap().home, "/");
        assert!(ids(Some("nobody-here")).unwrap_err().contains("nobody-here"));
        assert!(ids(Some("app:nogroup")).unwrap_err().contains("nogroup"));
        // No files at all: numeric ids still work.
        assert_eq!(resolve_user(Some("5:6"), "", "").unwrap().uid, 5);
    }

    #[test]
    fn the_environment_is_dockerinit_s_defaults_then_the_image_s() {
        let env = environment(
            "web",
            "/home/app",
            &["PATH=/opt/bin".into(), "A=1".into(), "=x".into(), "noequals".into(), "A=2".into()],
        );
        assert_eq!(env, ["TERM=xterm", "HOME=/home/app", "PATH=/opt/bin", "HOSTNAME=web", "A=2"]);
        assert_eq!(env_value(&env, "PATH"), Some("/opt/bin"));
        assert_eq!(env_value(&env, "NOPE"), None);
    }

    #[test]
    fn workdirs_are_anchored_at_the_root() {
        assert_eq!(workdir(None, "/root"), Path::new("/"));
        assert_eq!(workdir(Some("/srv/app"), "/root"), Path::new("/srv/app"));
        assert_eq!(workdir(Some("relative"), "/root"), Path::new("/relative"));
        assert_eq!(workdir(Some("~/work"), "/home/app"), Path::new("/home/app/work"));
        assert_eq!(workdir(Some("/../../etc/.."), "/"), Path::new("/"));
    }

    #[test]
    fn programs_are_found_in_path() {
        let exists = |p: &Path| p == Path::new("/usr/bin/env") || p == Path::new("/srv/bin/tool");
        assert_eq!(find_program("env", None, Path::new("/"), exists).unwrap(), Path::new("/usr/bin/env"));
        assert_eq!(
            find_program("tool", Some("bin:/usr/bin"), Path::new("/srv"), exists).unwrap(),
            Path::new("/srv/bin/tool")
        );
        assert_eq!(find_program("./x", None, Path::new("/"), exists).unwrap(), Path::new("./x"));
        assert!(find_program("nope", Some("/bin"), Path::new("/"), exists).unwrap_err().contains("not found in PATH"));
        assert!(find_program("", None, Path::new("/"), exists).is_err());
    }
}
