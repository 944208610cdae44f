//! The fuzzers' seed corpus (common/fuzz/seeds/) is made of real inputs
//! and stays valid: every seed parses or decodes today. When a format
//! changes, `TWINMESH_WRITE_SEEDS=1 cargo test -p twinmesh-common --test
//! fuzz_seeds` writes the seeds anew.

use std::path::PathBuf;

use twinmesh_common::fabric::reference;
use twinmesh_common::failures::{FailureEvent, FailureKind};
use twinmesh_common::policy::{Policy, PolicyConfig};
use twinmesh_common::record::{JobRecord, JobState, decode_stored, encode_stored};
use twinmesh_common::spec::{parse_document, parse_job};
use twinmesh_common::twin::{FailureId, NodeRecord, Twin};
use twinmesh_common::wire::{self, Message};

fn seeds(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target)
}

fn repo(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const DOCS: [&str; 5] = [
    "docs/examples/video-pipeline.yaml",
    "docs/examples/riscv-sensor.yaml",
    "k3d/jobs/batch-render.yaml",
    "k3d/jobs/sensor-fusion.yaml",
    "k3d/jobs/video-pipeline.yaml",
];

/// The seeds each target starts from: (file name, bytes).
fn make() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let docs: Vec<String> = DOCS.iter().map(|p| repo(p)).collect();
    for (i, d) in docs.iter().enumerate() {
        out.push(("job_document", format!("doc-{i}.yaml"), d.clone().into_bytes()));
        let json = serde_json::to_string(&parse_document(d).unwrap()).unwrap();
        out.push(("job_document", format!("doc-{i}.json"), json.into_bytes()));
    }
    // A planned job record, a twin record, a failure: as stored and as sent.
    let f = reference();
    let view = f.view();
    let job = parse_job(&docs[0]).unwrap();
    let plan = Policy::Greedy.plan(&view, &job, &PolicyConfig::default()).unwrap();
    let mut rec = JobRecord::accepted("j-1".into(), docs[0].clone(), "greedy".into(), false, "dc-x86-01".into(), 1);
    rec.state = JobState::Running;
    rec.plan = Some(plan);
    rec.notes.push("forwarded by edge-srv-01".into());
    let mut twin = Twin::new();
    let node = twin.update_own(f.nodes[0].clone());
    let failure = FailureEvent {
        id: FailureId { reporter: "dc-x86-01".into(), seq: 3 },
        node: f.nodes[1].name.clone(),
        kind: FailureKind::NodeDown,
        at_ms: 1_000,
        duration_ms: 60_000,
    };
    twin.add_failure(failure.clone());
    out.push(("stored_record", "job.bin".into(), encode_stored(&rec)));
    out.push(("stored_record", "node.bin".into(), encode_stored(&node)));
    out.push(("stored_record", "failure.bin".into(), encode_stored(&failure)));
    let msgs = [
        Message::Record(node.clone()),
        Message::Failure(failure),
        Message::SyncRequest(twin.digest()),
        Message::SyncPush(twin.delta_for(&Twin::new().digest())),
        Message::SyncCheck(twin.summary()),
        Message::OutOfSync(twin.bucket_summaries()),
        Message::Ping(7),
        Message::Leave("edge-srv-01".into()),
    ];
    for (i, m) in msgs.iter().enumerate() {
        out.push(("wire_frame", format!("msg-{i}.bin"), wire::encode(m)));
    }
    out
}

#[test]
fn seeds_are_real_inputs_that_parse_today() {
    let made = make();
    if std::env::var_os("TWINMESH_WRITE_SEEDS").is_some() {
        for (target, name, bytes) in &made {
            std::fs::create_dir_all(seeds(target)).unwrap();
            std::fs::write(seeds(target).join(name), bytes).unwrap();
        }
    }
    for target in ["job_document", "wire_frame", "stored_record"] {
        let dir = seeds(target);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (TWINMESH_WRITE_SEEDS=1 writes them)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 3, "{target}: {} seeds", files.len());
        for p in files {
            let bytes = std::fs::read(&p).unwrap();
            let ok = match target {
                "job_document" => parse_job(std::str::from_utf8(&bytes).unwrap()).map(drop).map_err(|e| e.to_string()),
                "wire_frame" => wire::decode(&bytes).map(drop).map_err(|e| e.to_string()),
                _ => decode_stored::<JobRecord>(&bytes)
                    .map(drop)
                    .or_else(|_| decode_stored::<NodeRecord>(&bytes).map(drop))
                    .or_else(|_| decode_stored::<FailureEvent>(&bytes).map(drop)),
            };
            assert!(ok.is_ok(), "{}: {:?} (TWINMESH_WRITE_SEEDS=1 writes them anew)", p.display(), ok);
        }
    }
    // The committed seeds are today's encodings, not stale ones.
    for (target, name, bytes) in &made {
        let on_disk = std::fs::read(seeds(target).join(name)).unwrap();
        assert!(on_disk == *bytes, "{target}/{name} is stale: TWINMESH_WRITE_SEEDS=1 writes it anew");
    }
}
