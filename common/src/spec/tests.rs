//! Job documents: parsing, validation and the errors that name the field.

use super::*;

const GOOD: &str = r#"
apiVersion: twinmesh.io/v1
metadata:
  name: video-pipeline
  deadline_ms: 30000
  origin: { cluster: phone-pan-1, node: pan1-phone-03 }
spec:
  stages:
    - id: decode
      compute: { cpu: 2, mem_gb: 1, duration_ms: 1500 }
      constraints: { arch: [arm64, amd64] }
      output_mb: 20
    - id: detect
      compute: { cpu: 4, mem_gb: 8, duration_ms: 6000, gpu_vram_gb: 8 }
      predecessor: decode
      output_mb: 1
    - id: notify
      compute: { cpu: 0.5, duration_ms: 200 }
      predecessor: [detect]
"#;

fn err(text: &str) -> SpecError {
    parse_job(text).unwrap_err()
}

/// Found by the fuzzer: a value written with more digits than a double
/// holds is read by YAML with correct rounding; JSON must read the
/// shortest form it prints back to the same double, or a job sent as
/// JSON differs from the same job sent as YAML.
#[test]
fn a_long_decimal_reads_the_same_in_yaml_and_json() {
    let long = format!("0.2{}5", "3".repeat(120));
    let yaml =
        GOOD.replace("{ cpu: 0.5, duration_ms: 200 }", &format!("{{ cpu: 0.5, mem_gb: {long}, duration_ms: 200 }}"));
    let job = parse_job(&yaml).unwrap();
    let mem = job.stages[2].compute.mem_gb;
    assert_eq!(mem, long.parse::<f64>().unwrap());
    let canonical = serde_json::to_string(&parse_document(&yaml).unwrap()).unwrap();
    let again = parse_job(&canonical).unwrap();
    assert_eq!(again.stages[2].compute.mem_gb.to_bits(), mem.to_bits(), "{canonical}");
}

#[test]
fn a_document_past_the_size_bound_is_refused_naming_the_bound() {
    // Padding in a comment: valid YAML, only too long.
    let mut big = GOOD.to_string();
    big.push_str(&format!("# {}\n", "x".repeat(MAX_DOCUMENT)));
    let e = err(&big).to_string();
    assert!(e.contains("at most 65536 allowed") && e.contains(&big.len().to_string()), "{e}");
    let mut fits = GOOD.to_string();
    fits.push_str(&format!("# {}\n", "x".repeat(MAX_DOCUMENT - GOOD.len() - 3)));
    assert_eq!(fits.len(), MAX_DOCUMENT);
    assert!(parse_job(&fits).is_ok());
}

fn with(find: &str, replace: &str) -> String {
    assert!(GOOD.contains(find), "fixture lacks {find}");
    GOOD.replacen(find, replace, 1)
}

#[test]
fn good_document_parses_in_yaml_and_json() {
    let job = parse_job(GOOD).unwrap();
    assert_eq!(job.name, "video-pipeline");
    assert_eq!(job.stages.len(), 3);
    assert_eq!(job.stages[1].predecessors, vec![0]);
    assert_eq!(job.stages[2].predecessors, vec![1]);
    assert_eq!(job.topo, vec![0, 1, 2]);
    assert_eq!(job.stages[0].constraints.arch, vec![Arch::Arm64, Arch::Amd64]);
    assert_eq!(job.origin.node.as_deref(), Some("pan1-phone-03"));
    let doc = parse_document(GOOD).unwrap();
    let json = serde_json::to_string(&doc).unwrap();
    assert_eq!(parse_job(&json).unwrap(), job);
}

// Rule: in YAML as in JSON, a string field takes a string: `null`, a
// boolean or a number is refused and named, not read as its spelling (a
// stage named "null" was accepted). A quoted number is a string.
#[test]
fn a_yaml_scalar_that_is_not_a_string_does_not_fill_a_string_field() {
    for bad in ["id: null", "id: false", "id: 12"] {
        let e = err(&with("id: decode", bad));
        assert_eq!(e.field(), "spec.stages[0].id", "{bad}: {e}");
        assert!(e.to_string().contains("invalid type"), "{bad}: {e}");
    }
    let quoted = with("id: decode", "id: '12'").replace("predecessor: decode", "predecessor: '12'");
    assert_eq!(parse_job(&quoted).unwrap().stages[0].id, "12");
    let e = err(&with("constraints: { arch: [arm64, amd64] }", "constraints: null"));
    assert_eq!(e.field(), "spec.stages[0].constraints", "{e}");
    let e = err(&with("constraints: { arch: [arm64, amd64] }", "constraints: { arch: null }"));
    assert_eq!(e.field(), "spec.stages[0].constraints.arch", "{e}");
}

#[test]
fn unknown_field_is_named() {
    let e = err(&with("deadline_ms: 30000", "deadline_sm: 30000"));
    assert_eq!(e.field(), "metadata.deadline_sm");
    assert!(e.to_string().contains("unknown field"), "{e}");
    let e = err(&with("compute: { cpu: 2,", "compute: { cpus: 2,"));
    assert_eq!(e.field(), "spec.stages[0].compute.cpus");
    assert!(e.to_string().contains("unknown field"), "{e}");
}

#[test]
fn wrong_type_and_bad_enum_are_named() {
    let e = err(&with("cpu: 4,", "cpu: lots,"));
    assert_eq!(e.field(), "spec.stages[1].compute.cpu", "{e}");
    let e = err(&with("arch: [arm64, amd64]", "arch: [arm64, mips]"));
    assert!(e.field().starts_with("spec.stages[0].constraints.arch"), "{e}");
    assert!(e.to_string().contains("mips"), "{e}");
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    let e = err(r#"{"apiVersion": "twinmesh.io/v1", "metadata": {"#);
    assert!(matches!(e, SpecError::Parse { .. }), "{e:?}");
    let e = err(r#"{"apiVersion": "twinmesh.io/v1"} trailing"#);
    assert!(matches!(e, SpecError::Parse { .. }), "{e:?}");
}

#[test]
fn cycles_are_reported_with_their_path() {
    let text = with(
        "      compute: { cpu: 2, mem_gb: 1, duration_ms: 1500 }",
        "      compute: { cpu: 2, mem_gb: 1, duration_ms: 1500 }\n      predecessor: detect",
    );
    let e = err(&text);
    assert!(e.field().ends_with(".predecessor"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("cycle") && msg.contains("decode") && msg.contains("detect"), "{msg}");
}

#[test]
fn dangling_and_self_predecessors() {
    let e = err(&with("predecessor: decode", "predecessor: decoder"));
    assert_eq!(e.field(), "spec.stages[1].predecessor");
    assert!(e.to_string().contains("unknown stage 'decoder'"), "{e}");
    let e = err(&with("predecessor: decode", "predecessor: detect"));
    assert!(e.to_string().contains("itself"), "{e}");
}

#[test]
fn impossible_demands() {
    let e = err(&with("cpu: 4,", "cpu: 0,"));
    assert_eq!(e.field(), "spec.stages[1].compute.cpu");
    let e = err(&with("duration_ms: 6000", "duration_ms: -5"));
    assert_eq!(e.field(), "spec.stages[1].compute.duration_ms");
    let e = err(&with("gpu_vram_gb: 8", "gpu_vram_gb: 5000"));
    assert_eq!(e.field(), "spec.stages[1].compute.gpu_vram_gb");
    assert!(e.to_string().contains("at most"), "{e}");
    let e = err(&with("deadline_ms: 30000", "deadline_ms: 0"));
    assert_eq!(e.field(), "metadata.deadline_ms");
    let e =
        err(&with("constraints: { arch: [arm64, amd64] }", "constraints: { arch: [amd64], formats: [qemu-arm64] }"));
    assert_eq!(e.field(), "spec.stages[0].constraints");
}

#[test]
fn names_versions_and_duplicates() {
    let e = err(&with("apiVersion: twinmesh.io/v1", "apiVersion: twinmesh.io/v2"));
    assert_eq!(e.field(), "apiVersion");
    let e = err(&with("name: video-pipeline", "name: Video_Pipeline"));
    assert_eq!(e.field(), "metadata.name");
    let e = err(&with("id: notify", "id: decode"));
    assert_eq!(e.field(), "spec.stages[2].id");
    assert!(e.to_string().contains("duplicate"), "{e}");
    let e = err(&with("origin: { cluster: phone-pan-1, node: pan1-phone-03 }", "origin: { cluster: '' }"));
    assert_eq!(e.field(), "metadata.origin.cluster");
    let e = err("apiVersion: twinmesh.io/v1\nmetadata: {name: a, origin: {cluster: c}}\nspec: {stages: []}\n");
    assert_eq!(e.field(), "spec.stages");
}
