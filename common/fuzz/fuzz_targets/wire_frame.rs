//! A frame from a peer: decoding never panics, and a frame that decodes
//! encodes to a frame that decodes and encodes to the same bytes (compared
//! as bytes: a NaN never equals itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinmesh_common::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = wire::decode(data) {
        let back = wire::encode(&msg);
        let again = wire::decode(&back).expect("a re-encoded frame decodes");
        assert_eq!(wire::encode(&again), back, "re-encoded frame decodes differently");
    }
});
