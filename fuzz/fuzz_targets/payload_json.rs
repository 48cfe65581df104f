//! Fuzz target `payload_json`: create and update payloads as JSON text through zonevisor_spec's validators
//! (`zonevisor_fuzzing::payload_json`, where the invariants are).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonevisor_fuzzing::payload_json(data));
