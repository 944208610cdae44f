use std::path::{Path, PathBuf};

use twinmesh_common::spec::{self, parse_job, parse_service};

use super::*;
use crate::api::failure::{Injection, MAX_FAILURE_MS, Observation};
use crate::api::ui::MAX_LIMIT;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// A validator of `components.schemas.<name>` of `doc`, as OpenAPI 3.0
/// reads it: draft 4 (`exclusiveMinimum` is a flag) where `nullable: true`
/// adds `null` to the type.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    fn nullable(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if o.get("nullable") == Some(&Value::Bool(true)) {
                    if let Some(Value::String(t)) = o.get("type").cloned() {
                        o.insert("type".into(), json!([t, "null"]));
                    }
                }
                o.values_mut().for_each(nullable);
            }
            Value::Array(a) => a.iter_mut().for_each(nullable),
            _ => {}
        }
    }
    let mut root = doc.clone();
    nullable(&mut root);
    root["$ref"] = json!(format!("#/components/schemas/{name}"));
    jsonschema::draft4::new(&root).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every document the repository gives as an example: YAML or JSON files
/// under these directories.
fn examples(dirs: &[&str]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(repo().join(d)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            if matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "json")) {
                out.push((f.clone(), std::fs::read_to_string(&f).unwrap()));
            }
        }
    }
    out
}

fn as_json(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("YAML or JSON")
}

// Rule: the document's job schema accepts every example job the
// repository ships (docs, the k3d demo, the fuzz seeds), each of which the
// agent's parser accepts; and refuses one with an unknown field, as the
// parser does (`deny_unknown_fields`): a misspelt key is an error in both.
#[test]
fn the_job_schema_accepts_every_example_and_refuses_an_unknown_field() {
    let doc = document(&[], &[]);
    let job = validator(&doc, "JobDocument");
    let mut jobs = 0;
    for (path, text) in examples(&["docs/examples", "k3d/jobs", "common/fuzz/seeds/job_document"]) {
        if spec::document_kind(&text).as_deref() == Some("Service") {
            continue;
        }
        parse_job(&text).unwrap_or_else(|e| panic!("{}: the parser refuses it: {e}", path.display()));
        let v = as_json(&text);
        let errors: Vec<String> = job.iter_errors(&v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: the schema refuses it: {errors:?}", path.display());
        jobs += 1;
    }
    assert!(jobs >= 15, "{jobs} example jobs");

    let text = std::fs::read_to_string(repo().join("docs/examples/video-pipeline.yaml")).unwrap();
    let misspelt = text.replace("deadline_ms:", "deadline_sm:");
    assert!(parse_job(&misspelt).unwrap_err().to_string().contains("deadline_sm"));
    assert!(!job.is_valid(&as_json(&misspelt)), "the schema takes metadata.deadline_sm");
    let extra = text.replace("output_mb: 20", "output_mb: 20\n      colour: blue");
    assert!(parse_job(&extra).is_err());
    assert!(!job.is_valid(&as_json(&extra)), "the schema takes a stage's colour");
    // What one field's bounds say, the schema says too.
    for (from, to) in [
        ("cpu: 2,", "cpu: 0,"),
        ("name: video-pipeline", "name: Video"),
        ("apiVersion: twinmesh.io/v1", "apiVersion: v2"),
    ] {
        let bad = text.replacen(from, to, 1);
        assert!(matches!(parse_job(&bad), Err(spec::SpecError::Invalid { .. })), "{to}");
        assert!(!job.is_valid(&as_json(&bad)), "the schema takes {to}");
    }
    // A rule between fields is the parser's alone, and a 422.
    let cycle = text.replace("predecessor: decode", "predecessor: notify");
    assert!(job.is_valid(&as_json(&cycle)));
    assert!(matches!(parse_job(&cycle), Err(spec::SpecError::Inconsistent { .. })), "{:?}", parse_job(&cycle));
}

// Rule: the service schema accepts the example service and refuses an
// unknown field or a scaling mode the parser does not know.
#[test]
fn the_service_schema_accepts_the_example() {
    let doc = document(&[], &[]);
    let service = validator(&doc, "ServiceDocument");
    let text = std::fs::read_to_string(repo().join("docs/examples/web-service.yaml")).unwrap();
    parse_service(&text, 1).unwrap();
    let errors: Vec<String> = service.iter_errors(&as_json(&text)).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    for bad in [text.replace("scaling: predictive", "scaling: magic"), text.replace("period_s:", "period:")] {
        assert!(parse_service(&bad, 1).is_err());
        assert!(!service.is_valid(&as_json(&bad)), "{bad}");
    }
}

// Rule: the kinds the document lists for /v1/inject and /v1/observe are
// exactly those the server parses: a recovery cannot be injected.
#[test]
fn the_failure_kinds_listed_are_those_the_server_takes() {
    let doc = document(&[], &["dc-x86-01".to_string()]);
    let listed = |name: &str| -> Vec<String> {
        let kind = &doc["components"]["schemas"][name]["properties"]["kind"];
        let r = kind["$ref"].as_str().or(kind["allOf"][0]["$ref"].as_str());
        let r = r.unwrap_or_else(|| panic!("{name}.kind: {kind}"));
        let target = &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")];
        // `enum`, or (documented variants) `oneOf` single-value enums.
        let variants = target["oneOf"].as_array().cloned().unwrap_or_else(|| vec![target.clone()]);
        variants
            .iter()
            .flat_map(|v| v["enum"].as_array().unwrap().clone())
            .map(|k| k.as_str().unwrap().into())
            .collect()
    };
    let candidates =
        ["node_down", "node_up", "recovered", "thermal_throttle", "network_degradation", "system_crash", "melt"];
    let body = |k: &str| json!({ "kind": k, "node": "dc-x86-01" });
    let injected: Vec<String> = listed("Injection");
    let observed: Vec<String> = listed("Observation");
    for k in candidates {
        let takes = serde_json::from_value::<Injection>(body(k)).is_ok();
        assert_eq!(injected.iter().any(|l| l == k), takes, "inject {k}: listed vs parsed");
        let takes = serde_json::from_value::<Observation>(body(k)).is_ok();
        assert_eq!(observed.iter().any(|l| l == k), takes, "observe {k}: listed vs parsed");
    }
    assert!(!injected.contains(&"recovered".to_string()) && observed.contains(&"recovered".to_string()));
}

// Rule: the twin's clusters and nodes are the only names the served
// document allows, where a document names one.
#[test]
fn the_served_document_lists_the_twins_clusters_and_nodes() {
    let doc = document(&["dc-core".into(), "edge".into()], &["dc-1".into(), "edge-1".into()]);
    let job = validator(&doc, "JobDocument");
    let inject = validator(&doc, "Injection");
    let j = |cluster: &str, node: Value| {
        json!({"apiVersion": "twinmesh.io/v1", "metadata": {"name": "a", "origin": {"cluster": cluster, "node": node}},
               "spec": {"stages": [{"id": "s", "compute": {"cpu": 1, "duration_ms": 10}}]}})
    };
    assert!(job.is_valid(&j("edge", json!("edge-1"))));
    assert!(job.is_valid(&j("edge", Value::Null)));
    assert!(!job.is_valid(&j("mars", json!("edge-1"))));
    assert!(!job.is_valid(&j("edge", json!("atlantis"))));
    assert!(inject.is_valid(&json!({"kind": "node_down", "node": "dc-1", "duration_ms": 1000})));
    assert!(!inject.is_valid(&json!({"kind": "node_down", "node": "atlantis"})));
    assert!(!inject.is_valid(&json!({"kind": "node_down", "node": "dc-1", "duration_ms": MAX_FAILURE_MS + 1})));
}

// Rule: the document is whole: every `$ref` names a schema it has, every
// link an operation it has, and a list's `limit` has the bound the server
// enforces.
#[test]
fn every_reference_and_link_resolves_and_limit_is_bounded() {
    let doc = document(&[], &[]);
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = 0;
    for (i, _) in text.match_indices("\"$ref\":\"#/components/schemas/") {
        let name: String = text[i + 29..].chars().take_while(|c| *c != '"').collect();
        assert!(schemas.contains_key(&name), "$ref to {name}, which is not in components.schemas");
        refs += 1;
    }
    assert!(refs >= 40, "{refs}");
    let mut operations = Vec::new();
    let mut links = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(id) = op["operationId"].as_str() else { continue };
            operations.push(id.to_string());
            for (code, r) in op["responses"].as_object().unwrap() {
                for (name, link) in r["links"].as_object().into_iter().flatten() {
                    links.push((
                        format!("{method} {path} {code} {name}"),
                        link["operationId"].as_str().unwrap().to_string(),
                    ));
                }
            }
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["name"] == "limit") {
                assert_eq!(p["schema"]["maximum"], json!(MAX_LIMIT), "{method} {path}");
                assert_eq!(p["schema"]["minimum"], json!(1), "{method} {path}");
            }
        }
    }
    for (from, to) in &links {
        assert!(operations.contains(to), "{from} links to {to}, no such operation");
    }
    assert!(links.len() >= 9, "{links:?}");
}
