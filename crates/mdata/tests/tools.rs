//! The `mdata` binary as `mdata-get`, `mdata-put`, `mdata-list` and
//! `mdata-delete`, against the test host, checking what mdata-client
//! prints and exits with (texts taken from its sources and from running it).

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Host, Mode, Pty};

struct Tools {
    dir: tempfile::TempDir,
    socket: PathBuf,
    host: Host,
}

impl Tools {
    fn new(mode: Mode) -> Tools {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(mode);
        let socket = host.listen(dir.path());
        for tool in ["mdata-get", "mdata-put", "mdata-list", "mdata-delete"] {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mdata"), dir.path().join(tool)).unwrap();
        }
        Tools { dir, socket, host }
    }

    fn path(&self, tool: &str) -> PathBuf {
        self.dir.path().join(tool)
    }

    fn command(&self, tool: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool);
        cmd.args(args).env("ZONEVISOR_MDATA_SOCKET", &self.socket).stdin(Stdio::null());
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.command(&self.path(tool), args).output().unwrap()
    }

    fn run_with_stdin(&self, tool: &str, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(&self.path(tool), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// (exit code, stdout, stderr)
fn result(out: Output) -> (i32, String, String) {
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn ok(stdout: &str) -> (i32, String, String) {
    (0, stdout.to_string(), String::new())
}

fn err(code: i32, stderr: &str) -> (i32, String, String) {
    (code, String::new(), stderr.to_string())
}

#[test]
fn mdata_get() {
    let t = Tools::new(Mode::SmartOs);
    assert_eq!(result(t.run("mdata-get", &["root_authorized_keys"])), ok("ssh-rsa AAAA test\n"));
    // A value that ends in a newline gets no second one; an empty value
    // prints an empty line.
    assert_eq!(result(t.run("mdata-get", &["user-script"])), ok("#!/bin/sh\n.dot\necho hi\n"));
    assert_eq!(result(t.run("mdata-get", &["no-newline"])), ok("value\n"));
    assert_eq!(result(t.run("mdata-get", &["empty"])), ok("\n"));
    assert_eq!(result(t.run("mdata-get", &["sdc:uuid"])), ok(&format!("{}\n", common::UUID)));
    // Extra arguments are ignored, as mdata-client ignores them.
    assert_eq!(result(t.run("mdata-get", &["no-newline", "extra"])), ok("value\n"));
    assert_eq!(result(t.run("mdata-get", &["nope"])), err(1, "No metadata for 'nope'\n"));
    assert_eq!(result(t.run("mdata-get", &["sdc:nics.0"])), err(1, "No metadata for 'sdc:nics.0'\n"),);
    assert_eq!(result(t.run("mdata-get", &["sdc:nics"])).0, 0);
    let tool = t.path("mdata-get");
    assert_eq!(result(t.run("mdata-get", &[])), err(3, &format!("mdata-get: Usage: {} <keyname>\n", tool.display())));
}

#[test]
fn mdata_get_of_an_object_fails_as_on_smartos() {
    let t = Tools::new(Mode::SmartOs);
    // agent.js answers FAILURE with no message for an object.
    assert_eq!(
        result(t.run("mdata-get", &["sdc:customer_metadata"])),
        err(2, "Error getting metadata for key 'sdc:customer_metadata': \n")
    );
}

#[test]
fn mdata_put_and_delete() {
    let t = Tools::new(Mode::SmartOs);
    assert_eq!(result(t.run("mdata-put", &["greeting", "hello world"])), ok(""));
    assert_eq!(result(t.run("mdata-get", &["greeting"])), ok("hello world\n"));
    assert_eq!(result(t.run_with_stdin("mdata-put", &["script"], b"#!/bin/sh\n\necho x\n")), ok(""));
    assert_eq!(t.host.vm.lock().unwrap()["customer_metadata"]["script"], "#!/bin/sh\n\necho x\n");
    assert_eq!(result(t.run("mdata-delete", &["greeting"])), ok(""));
    assert_eq!(result(t.run("mdata-get", &["greeting"])), err(1, "No metadata for 'greeting'\n"));

    assert_eq!(
        result(t.run("mdata-put", &["sdc:alias", "x"])),
        err(2, "Error putting metadata for key 'sdc:alias': Cannot update the \"sdc\" Namespace.\n")
    );
    assert_eq!(
        result(t.run("mdata-put", &["k", ""])),
        err(2, "Error putting metadata for key 'k': Invalid PUT Request\n")
    );
    assert_eq!(
        result(t.run("mdata-delete", &["foo:bar"])),
        err(2, "Error deleting metadata key 'foo:bar': Cannot update the \"foo\" Namespace.\n")
    );
    let put = t.path("mdata-put");
    assert_eq!(
        result(t.run("mdata-put", &[])),
        err(3, &format!("mdata-put: Usage: {} <keyname> [ <value> ]\n", put.display()))
    );
    let delete = t.path("mdata-delete");
    assert_eq!(
        result(t.run("mdata-delete", &[])),
        err(3, &format!("mdata-delete: Usage: {} <keyname>\n", delete.display()))
    );
}

#[test]
fn mdata_put_will_not_read_a_terminal() {
    let t = Tools::new(Mode::SmartOs);
    let pty = Pty::open();
    let tty = std::fs::OpenOptions::new().read(true).write(true).open(&pty.path).unwrap();
    assert!(tty.as_raw_fd() > 2);
    let out = t.command(&t.path("mdata-put"), &["k"]).stdin(Stdio::from(tty)).output().unwrap();
    assert_eq!(
        result(out),
        err(
            2,
            "ERROR: either specify the metadata value as the second command-line argument, or pipe content to stdin.\n"
        )
    );
}

#[test]
fn mdata_list() {
    let t = Tools::new(Mode::SmartOs);
    assert_eq!(
        result(t.run("mdata-list", &[])),
        ok("root_authorized_keys\nuser-script\nno-newline\nempty\nroot_pw\nfoo:bar\n")
    );
    let empty = Tools::new(Mode::SmartOs);
    {
        let mut vm = empty.host.vm.lock().unwrap();
        vm["customer_metadata"] = serde_json::json!({});
        vm["internal_metadata"] = serde_json::json!({});
    }
    assert_eq!(result(empty.run("mdata-list", &[])), ok(""), "no keys: nothing printed");
}

#[test]
fn one_binary_many_names() {
    let t = Tools::new(Mode::SmartOs);
    let mdata = Path::new(env!("CARGO_BIN_EXE_mdata"));
    let run = |args: &[&str]| result(t.command(mdata, args).output().unwrap());
    assert_eq!(run(&["get", "no-newline"]), ok("value\n"));
    assert_eq!(run(&["mdata-get", "no-newline"]), ok("value\n"));
    assert_eq!(run(&["put", "k", "v"]), ok(""));
    assert!(run(&["list"]).1.lines().any(|l| l == "k"));
    assert_eq!(run(&["delete", "k"]), ok(""));
    let usage = format!("mdata: Usage: {} <get|put|list|delete> [ <keyname> [ <value> ] ]\n", mdata.display());
    assert_eq!(run(&[]), err(3, &usage));
    assert_eq!(run(&["frob"]), err(3, &usage));
    assert_eq!(run(&["get"]), err(3, &format!("mdata: Usage: {} get <keyname>\n", mdata.display())));
}

#[test]
fn a_v1_host() {
    let t = Tools::new(Mode::V1Only);
    assert_eq!(result(t.run("mdata-get", &["user-script"])), ok("#!/bin/sh\n.dot\necho hi\n"));
    assert_eq!(result(t.run("mdata-get", &["nope"])), err(1, "No metadata for 'nope'\n"));
    assert_eq!(result(t.run("mdata-put", &["k", "v"])), err(2, "ERROR: host does not support PUT\n"));
    assert_eq!(result(t.run("mdata-delete", &["k"])), err(2, "ERROR: host does not support DELETE\n"));
    assert_eq!(result(t.run("mdata-list", &[])).0, 0);
    // V1 has no messages: FAILURE is all mdata-client can print.
    assert_eq!(
        result(t.run("mdata-get", &["sdc:customer_metadata"])),
        err(2, "Error getting metadata for key 'sdc:customer_metadata': FAILURE\n")
    );
}

#[test]
fn no_host_at_all() {
    if ["/dev/ttyS1", "/.zonecontrol/metadata.sock", "/native/.zonecontrol/metadata.sock"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        eprintln!("skipped: this machine has a metadata transport of its own");
        return;
    }
    let t = Tools::new(Mode::SmartOs);
    // A missing serial device is final; the tool says why and exits 2.
    let out = Command::new(t.path("mdata-get"))
        .arg("k")
        .env_remove("ZONEVISOR_MDATA_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        result(out),
        err(
            2,
            "ERROR: could not initialise protocol: could not open /dev/ttyS1: No such file or directory (os error 2)\n"
        )
    );
}
