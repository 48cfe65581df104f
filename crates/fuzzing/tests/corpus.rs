//! Replays every committed fuzz input through its target, on the stable
//! toolchain and every test run: the minimized corpora
//! (`fuzz/corpus/<target>/`) and the inputs of crashes found and fixed
//! (`fuzz/regressions/<target>/`). A change that breaks an input the
//! fuzzer once reached, or brings back a fixed crash, fails here without
//! waiting for the next fuzzing session.

use std::path::Path;

use zonevisor_fuzzing::TARGETS;

#[test]
fn every_committed_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut failed = Vec::new();
    for (name, target) in TARGETS {
        let mut replayed = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(name)) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                    failed.push(path.display().to_string());
                }
                replayed += 1;
            }
        }
        eprintln!("{name}: {replayed} inputs");
        assert!(replayed > 0, "no committed corpus for fuzz target {name} (fuzz/corpus/{name}/)");
    }
    assert!(failed.is_empty(), "committed fuzz inputs that fail: {failed:#?}");
}
