//! Fuzz target `payload`: structured create and update payloads through zonevisor_spec's validators
//! (`zonevisor_fuzzing::payload`, where the invariants are).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonevisor_fuzzing::payload(data));
