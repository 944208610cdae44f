//! A value read back from the database (a job record, a twin record, a
//! failure event), maybe corrupt or truncated: decoding never panics, and
//! a value that decodes re-encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twinmesh_common::failures::FailureEvent;
use twinmesh_common::record::{JobRecord, decode_stored, encode_stored};
use twinmesh_common::twin::NodeRecord;

fn check<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok(v) = decode_stored::<T>(data) {
        let bytes = encode_stored(&v);
        let again: T = decode_stored(&bytes).expect("a re-encoded value decodes");
        // Compared as bytes: a NaN never equals itself.
        assert_eq!(encode_stored(&again), bytes, "re-encoded value decodes differently");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<JobRecord>(data);
    check::<NodeRecord>(data);
    check::<FailureEvent>(data);
});
