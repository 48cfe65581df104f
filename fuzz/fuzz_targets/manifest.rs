//! Fuzz target `manifest`: structured image manifests through the daemon's check_manifest
//! (`zonevisor_fuzzing::manifest`, where the invariants are).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonevisor_fuzzing::manifest(data));
