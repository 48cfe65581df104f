//! Fuzz target `http_request`: raw bytes on the API socket through the daemon's HTTP connection code and request decoding
//! (`zonevisor_fuzzing::http_request`, where the invariants are).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| zonevisor_fuzzing::http_request(data));
