//! A job document as a client sends it (YAML or JSON): parsing never
//! panics, and what parses is a valid job whose canonical form parses to
//! the same job.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinmesh_common::spec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(doc) = spec::parse_document(text) else { return };
    let Ok(job) = spec::parse_job(text) else { return };
    let canonical = serde_json::to_string(&doc).expect("a parsed document serialises");
    let again = spec::parse_job(&canonical).unwrap_or_else(|e| panic!("canonical form refused: {e}\n{canonical}"));
    // Compared as JSON: a NaN would never equal itself.
    let (a, b) = (serde_json::to_string(&job).unwrap(), serde_json::to_string(&again).unwrap());
    assert_eq!(a, b, "canonical form changed the job");
});
