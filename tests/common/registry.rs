//! An OCI registry for the tests: Debian's `docker-registry`
//! (distribution) listening on 127.0.0.1 inside a test host's network
//! namespace, with its own configuration and storage, and images pushed
//! to it with `skopeo` from OCI layouts: one built with `umoci` from the
//! busybox fixture ([`test_layout`]), others written here byte by byte
//! ([`write_layout`], for layers no tool would make).
//!
//! Included with `#[path = "common/registry.rs"] mod registry;` next to
//! `mod common;`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::Digest;

use crate::common::*;

/// The registry's port (each test host has its own network namespace).
pub const PORT: u16 = 5000;
/// The user and password of a registry started with authentication.
pub const USER: &str = "zv";
pub const PASSWORD: &str = "zonevisor-test";
/// `PASSWORD`'s bcrypt hash (cost 4), as distribution's htpasswd wants.
const PASSWORD_BCRYPT: &str = "$2b$04$IMV..ixNMItQJn7Lc0zZYOSymX25Nsx7ZsoHXRcw7iiHoAcLOG6DC";

/// Whether the registry and the tools that push to it are installed:
/// `Err` names what is missing (the tests skip outside CI, fail in it).
pub fn tools_ready() -> Result<(), String> {
    for tool in ["docker-registry", "skopeo", "umoci"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("{tool} is not installed (Debian: apt-get install docker-registry skopeo umoci)"));
        }
    }
    Ok(())
}

/// A test host whose daemon imports from registries, or `None` (skipped).
pub fn host() -> Option<TestHost> {
    if let Err(why) = tools_ready() {
        return skip(&why);
    }
    TestHost::new()
}

/// A running registry.
pub struct Registry {
    child: Child,
    /// Its configuration, storage and log.
    pub dir: PathBuf,
    /// The test host's network namespace, where it listens.
    pub netns: String,
    /// Whether it demands [`USER`] and [`PASSWORD`].
    pub auth: bool,
}

/// Runs `cmd args` in network namespace `netns`.
fn in_netns(netns: &str, cmd: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{netns}")).arg("--").arg(cmd);
    c
}

impl Registry {
    /// Starts one in `h`'s network namespace (its loopback brought up),
    /// storing under `h`'s directory, and waits until it answers.
    pub fn start(h: &TestHost, auth: bool) -> Registry {
        let dir = h.dir.path().join(if auth { "registry-auth" } else { "registry" });
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let st = Command::new("ip").args(["-n", &h.netns, "link", "set", "lo", "up"]).status().unwrap();
        assert!(st.success(), "ip -n {} link set lo up", h.netns);
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{PORT}\n",
            dir.join("data").display()
        );
        if auth {
            std::fs::write(dir.join("htpasswd"), format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: zonevisor-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = in_netns(&h.netns, "docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry { child, dir, netns: h.netns.clone(), auth };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = in_netns(&r.netns, "bash")
                .arg("-c")
                .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{PORT}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return r;
            }
            assert!(Instant::now() < deadline, "docker-registry did not listen in 30 s:\n{}", r.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("127.0.0.1:{PORT}/{repo_tag}")
    }

    /// Pushes tag `tag` of the OCI layout `layout` as `repo_tag` with skopeo.
    #[track_caller]
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        let mut cmd = in_netns(&self.netns, "skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if self.auth {
            cmd.arg("--dest-creds").arg(format!("{USER}:{PASSWORD}"));
        }
        let out = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}", self.reference(repo_tag)))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {repo_tag}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Where the registry keeps the blob `digest` (`sha256:...`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir.join("data/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test image holds and runs (see [`test_layout`]).
pub const TEST_TAG: &str = "test";
/// The line the test image's command prints on the console.
pub const TEST_MARKER: &str = "ZVOCI";

/// An OCI layout (tag [`TEST_TAG`]) built once per test process with
/// umoci from the busybox fixture: layer 1 is the fixture's root plus a
/// user `app` (1000:1000, also in group `extra` 1001) with its home,
/// `/srv/old` and `/srv/keep`; layer 2 deletes `/srv/old` (a whiteout)
/// and adds `/srv/new`. The configuration: entrypoint `/bin/sh -c`,
/// command printing [`TEST_MARKER`], the ids, groups, working directory,
/// `$GREETING`, `$HOME` and `ls /srv`; env `GREETING=hello`; working
/// directory `/srv`; user `app`.
pub fn test_layout() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        // Those of test processes that are gone go first.
        for e in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("zv-oci-layout-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("zv-oci-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let layout = dir.join("layout");
        let image = format!("{}:{TEST_TAG}", layout.display());
        let umoci = |args: &[&str]| {
            let out = Command::new("umoci").args(args).output().expect("run umoci");
            assert!(out.status.success(), "umoci {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        umoci(&["init", "--layout", layout.to_str().unwrap()]);
        umoci(&["new", "--image", &image]);
        let b1 = dir.join("b1");
        umoci(&["unpack", "--image", &image, b1.to_str().unwrap()]);
        let root = b1.join("rootfs");
        let st = Command::new("tar").arg("-xf").arg(&busybox().file).arg("-C").arg(&root).status().unwrap();
        assert!(st.success(), "extract the busybox fixture");
        let append = |file: &str, line: &str| {
            let mut f = std::fs::OpenOptions::new().append(true).open(root.join(file)).unwrap();
            writeln!(f, "{line}").unwrap();
        };
        append("etc/passwd", "app:x:1000:1000:app:/home/app:/bin/sh");
        append("etc/group", "app:x:1000:");
        append("etc/group", "extra:x:1001:app");
        std::fs::create_dir_all(root.join("home/app")).unwrap();
        std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::write(root.join("srv/old"), "old\n").unwrap();
        std::fs::write(root.join("srv/keep"), "keep\n").unwrap();
        umoci(&["repack", "--image", &image, b1.to_str().unwrap()]);
        let b2 = dir.join("b2");
        umoci(&["unpack", "--image", &image, b2.to_str().unwrap()]);
        std::fs::remove_file(b2.join("rootfs/srv/old")).unwrap();
        std::fs::write(b2.join("rootfs/srv/new"), "new\n").unwrap();
        umoci(&["repack", "--image", &image, b2.to_str().unwrap()]);
        let cmd = format!(
            "echo {TEST_MARKER} user=$(id -u):$(id -g) groups=$(id -G) pwd=$(pwd) greeting=$GREETING home=$HOME; \
             ls /srv"
        );
        umoci(&[
            "config",
            "--image",
            &image,
            "--config.entrypoint",
            "/bin/sh",
            "--config.entrypoint",
            "-c",
            "--config.cmd",
            &cmd,
            "--config.env",
            "GREETING=hello",
            "--config.workingdir",
            "/srv",
            "--config.user",
            "app",
        ]);
        umoci(&["gc", "--layout", layout.to_str().unwrap()]);
        for bundle in [b1, b2] {
            let _ = std::fs::remove_dir_all(bundle);
        }
        layout
    })
}

/// The manifest of tag `tag` in the OCI layout `layout`.
pub fn layout_manifest(layout: &Path, tag: &str) -> Value {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()));
    let digest = entry["digest"].as_str().unwrap();
    serde_json::from_slice(&std::fs::read(blob(layout, digest)).unwrap()).unwrap()
}

/// The layer digests of tag `tag` of `layout`, bottom first.
pub fn layer_digests(layout: &Path, tag: &str) -> Vec<String> {
    layout_manifest(layout, tag)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The path of blob `digest` in `layout`.
pub fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())
}

/// SmartOS's image uuid for a chain of layer digests (imgmanifest's
/// `imgUuidFromDockerDigests`): sha256 of the digests joined by spaces.
pub fn smartos_uuid(digests: &[String]) -> String {
    let sum = hex::encode(sha2::Sha256::digest(digests.join(" ").as_bytes()));
    format!("{}-{}-{}-{}-{}", &sum[0..8], &sum[8..12], &sum[12..16], &sum[16..20], &sum[20..32])
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    std::fs::write(blob(layout, &digest), bytes).unwrap();
    (digest, bytes.len() as u64)
}

/// Writes an OCI layout at `dir` with one image tagged `tag`: `layers`
/// (tarballs, gzip-compressed here) bottom first and `config` (its
/// `rootfs` filled in). Returns the layout.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], config: Value) -> PathBuf {
    let gzipped: Vec<(Vec<u8>, String)> = layers
        .iter()
        .map(|tar| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            (gz.finish().unwrap(), format!("sha256:{}", hex::encode(sha2::Sha256::digest(tar))))
        })
        .collect();
    write_layout_gzipped(dir, tag, &gzipped, config)
}

/// [`write_layout`] with the layers gzipped already, each with its
/// uncompressed digest (its `diff_id`).
pub fn write_layout_gzipped(dir: &Path, tag: &str, layers: &[(Vec<u8>, String)], config: Value) -> PathBuf {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (gz, diff_id) in layers {
        diff_ids.push(diff_id.clone());
        let (digest, size) = put_blob(dir, gz);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size}));
    }
    let mut config = config;
    config["architecture"] = json!("amd64");
    config["os"] = json!("linux");
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let (cdigest, csize) = put_blob(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": csize},
        "layers": descs,
    });
    let (mdigest, msize) = put_blob(dir, manifest.to_string().as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    dir.to_path_buf()
}

/// A gzipped layer holding one file `name` of `bytes` repeated bytes (a
/// decompression bomb: a few MiB that expand to `bytes`), streamed by
/// Python's tarfile into gzip in `dir`; with its `diff_id`.
pub fn bomb_layer(dir: &Path, name: &str, bytes: u64) -> (Vec<u8>, String) {
    std::fs::create_dir_all(dir).unwrap();
    // Not zeros, which an install keeps as holes: `x` bytes, as compressible,
    // written as a tar stream without a file on disk.
    let gen = format!(
        "import sys, tarfile\n\
         class X:\n    def read(self, n=-1):\n        return b'x' * n\n\
         t = tarfile.open(fileobj=sys.stdout.buffer, mode='w|')\n\
         i = tarfile.TarInfo('{name}'); i.size = {bytes}\n\
         t.addfile(i, X()); t.close()\n"
    );
    let script = format!(
        "set -o pipefail; python3 -c \"$GEN\" | tee >(sha256sum > {dir}/diff_id) | gzip -1 > {dir}/layer.gz",
        dir = dir.display()
    );
    let st = Command::new("bash").arg("-c").arg(&script).env("GEN", &gen).status().unwrap();
    assert!(st.success(), "{script}");
    // tee's process substitution may finish after the pipeline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sum = loop {
        let text = std::fs::read_to_string(dir.join("diff_id")).unwrap_or_default();
        if text.len() >= 64 {
            break text[..64].to_string();
        }
        assert!(Instant::now() < deadline, "sha256sum of the layer did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    (std::fs::read(dir.join("layer.gz")).unwrap(), format!("sha256:{sum}"))
}

/// A tarball builder for layers, including members no archiver would
/// write (names with `..`, links out of the root).
pub struct LayerTar(tar::Builder<Vec<u8>>);

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        // The name as given, without the tar crate's own checks.
        let field = &mut h.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        h
    }

    /// A regular file.
    pub fn file(mut self, name: &str, data: &[u8]) -> LayerTar {
        let h = LayerTar::header(tar::EntryType::Regular, name, 0o644, data.len() as u64);
        self.0.append(&h, data).unwrap();
        self
    }

    /// A directory.
    pub fn dir(mut self, name: &str) -> LayerTar {
        let h = LayerTar::header(tar::EntryType::Directory, name, 0o755, 0);
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    /// A symbolic link (`kind` Symlink) or a hard link (`kind` Link) to `target`.
    pub fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> LayerTar {
        let mut h = LayerTar::header(kind, name, 0o777, 0);
        h.set_link_name_literal(target).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// A minimal first layer: the busybox fixture's root, as a tarball.
pub fn busybox_layer() -> Vec<u8> {
    let gz = std::fs::read(&busybox().file).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut tar).unwrap();
    tar
}
