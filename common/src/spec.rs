//! The job document (`apiVersion: twinmesh.io/v1`) in JSON or YAML, and its
//! validation into a [`Job`].
//!
//! Every error names the offending field by its path in the document
//! (`spec.stages[1].compute.cpu`) and says why, so a person can fix the file
//! without reading code. Unknown fields are errors, not silently ignored: a
//! misspelt `deadline_sm` must not turn into "no deadline".

use std::collections::{BTreeMap, HashMap};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::job::{Compute, Constraints, Job, Origin, Stage, topological_order};
use crate::model::{Arch, Format};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "twinmesh.io/v1";
/// Longest job name (pods are named `tm-<job>-<stage>`, at most 63 chars).
pub const MAX_JOB_NAME: usize = 40;
/// Longest stage id.
pub const MAX_STAGE_ID: usize = 19;
/// Most stages in one job.
pub const MAX_STAGES: usize = 64;
/// Longest stage duration accepted: one week.
pub const MAX_DURATION_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// A job document that could not be accepted.
#[derive(Debug, Error, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpecError {
    /// Not valid JSON/YAML, a wrong type, or an unknown field.
    #[error("{field}: {reason}")]
    Parse {
        /// Path of the field (`.` when the document itself is unreadable).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Well-formed, but a field's value is not one twinmesh accepts (out
    /// of range, a bad name): what the document's JSON Schema says too.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Every field is within its bounds, but they contradict each other or
    /// refer to what is not there (a predecessor that is no stage, a
    /// cycle, `min` above `max`): rules a JSON Schema cannot say, so the
    /// API answers them apart (422, where the others are 400).
    #[error("{field}: {reason}")]
    Inconsistent {
        /// Path of the field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl SpecError {
    /// The path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            SpecError::Parse { field, .. }
            | SpecError::Invalid { field, .. }
            | SpecError::Inconsistent { field, .. } => field,
        }
    }

    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Invalid { field: field.into(), reason: reason.into() }
    }

    fn inconsistent(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::Inconsistent { field: field.into(), reason: reason.into() }
    }
}

/// The job document as written by a user.
///
/// Its JSON Schema is the API's: every bound one field can state is in it
/// (names, ranges, lengths), so a document it accepts is refused only for
/// a rule between fields (a cycle, a predecessor that is no stage).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDocument {
    /// Must be [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    #[schemars(extend("const" = "twinmesh.io/v1"))]
    pub api_version: String,
    /// Optional; `Job` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Job", null]))]
    pub kind: Option<String>,
    /// Name, deadline, origin.
    pub metadata: Metadata,
    /// The stages.
    pub spec: JobSpec,
}

/// `metadata` of a job document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Job name: lowercase letters, digits and `-`.
    #[schemars(length(min = 1, max = MAX_JOB_NAME), pattern(NAME_PATTERN))]
    pub name: String,
    /// Deadline in ms from submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = MAX_DURATION_MS * 64.0), extend("exclusiveMinimum" = 0))]
    pub deadline_ms: Option<f64>,
    /// Where the job comes from.
    pub origin: OriginDoc,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `metadata.origin`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OriginDoc {
    /// Cluster of origin.
    #[schemars(length(min = 1, max = MAX_REF_NAME))]
    pub cluster: String,
    /// Node of origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_REF_NAME))]
    pub node: Option<String>,
}

/// `spec` of a job document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The stages.
    #[schemars(length(min = 1, max = MAX_STAGES))]
    pub stages: Vec<StageDoc>,
}

/// One entry of `spec.stages`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = predecessors_alias)]
pub struct StageDoc {
    /// Unique id within the job.
    #[schemars(length(min = 1, max = MAX_STAGE_ID), pattern(NAME_PATTERN))]
    pub id: String,
    /// Resource demand.
    pub compute: ComputeDoc,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: ConstraintsDoc,
    /// The stage (or stages) this one waits for.
    #[serde(default, alias = "predecessors", skip_serializing_if = "Option::is_none")]
    pub predecessor: Option<OneOrMany>,
    /// Megabytes of output passed to each successor.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0e7))]
    pub output_mb: f64,
}

/// `compute` of a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeDoc {
    /// CPU cores.
    #[schemars(range(max = 1024.0), extend("exclusiveMinimum" = 0))]
    pub cpu: f64,
    /// Memory in GB.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 65536.0))]
    pub mem_gb: f64,
    /// Run time on one reference core, natively, in ms.
    #[schemars(range(max = MAX_DURATION_MS), extend("exclusiveMinimum" = 0))]
    pub duration_ms: f64,
    /// GPU memory in GB.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1024.0))]
    pub gpu_vram_gb: f64,
}

/// `constraints` of a stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConstraintsDoc {
    /// Architectures the code is built for.
    #[serde(default)]
    pub arch: Vec<Arch>,
    /// Allowed formats.
    #[serde(default)]
    pub formats: Vec<Format>,
}

/// `predecessors` is read as `predecessor` (a serde alias, which schemars
/// does not see): the schema takes either, not both (serde calls that a
/// duplicate field).
fn predecessors_alias(schema: &mut schemars::Schema) {
    let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else { return };
    if let Some(p) = props.get("predecessor").cloned() {
        props.insert("predecessors".into(), p);
        schema.insert("not".into(), serde_json::json!({ "required": ["predecessor", "predecessors"] }));
    }
}

/// One predecessor id or a list of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `predecessor: a`
    One(String),
    /// `predecessor: [a, b]`
    Many(Vec<String>),
}

impl OneOrMany {
    fn ids(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Parses a job document (JSON if it starts with `{`, YAML otherwise) and
/// validates it.
pub fn parse_job(text: &str) -> Result<Job, SpecError> {
    match parse_document(text) {
        Ok(doc) => doc.validate(),
        // Another kind of document fails on its own fields; say what it is.
        Err(e) => match document_kind(text).filter(|k| k != "Job") {
            Some(k) => Err(SpecError::invalid(
                "kind",
                format!("expected 'Job', got '{k}' (services go to POST /v1/services; `twinmesh plan` simulates one)"),
            )),
            None => Err(e),
        },
    }
}

/// What a job, stage or service name may be (`valid_name`), as a JSON
/// Schema pattern: lowercase letters, digits and `-`, not at either end.
/// The end is `(?![\s\S])`, not `$`, which also matches before a final
/// newline in some regex dialects (Python's, which generates test data).
pub const NAME_PATTERN: &str = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?(?![\\s\\S])";

/// Longest name a node or cluster reference may have.
pub const MAX_REF_NAME: usize = 253;

/// Largest job document (bytes): 64 stages written out generously fit in
/// a few kilobytes; the bound keeps what the agent stores per job small.
pub const MAX_DOCUMENT: usize = 64 * 1024;

mod service;
mod shape;
pub use service::{
    LoadPhase, ReplicaDoc, ReplicasDoc, ServiceDocument, ServiceSpec, document_kind, parse_service, replica_job,
};
use shape::check_shape;
pub use shape::{MAX_INDENT, MAX_NESTING};

/// Parses a job document without validating it.
pub fn parse_document(text: &str) -> Result<JobDocument, SpecError> {
    deserialize(text)
}

/// Any document of the API (JSON if it starts with `{`, YAML otherwise),
/// bounded in size and shape before it is parsed; errors name the field.
pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SpecError> {
    if text.len() > MAX_DOCUMENT {
        return Err(SpecError::Parse {
            field: ".".into(),
            reason: format!("document is {} bytes, at most {MAX_DOCUMENT} allowed", text.len()),
        });
    }
    check_shape(text)?;
    if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let doc: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = path_or_root(e.path().to_string());
            let inner = e.into_inner();
            SpecError::Parse { field: path, reason: format!("{inner}") }
        })?;
        de.end().map_err(|e| SpecError::Parse { field: ".".into(), reason: e.to_string() })?;
        Ok(doc)
    } else {
        // Through a JSON value, not straight into `T`: read straight, YAML
        // lets any scalar fill a string field (`id: null` became a stage
        // named "null") and `null` a list or a section, which the same
        // document in JSON, and the API's schema, refuse. As a JSON value a
        // YAML document means what its JSON spelling means.
        let value: serde_json::Value =
            serde_yaml_ng::from_str(text).map_err(|e| SpecError::Parse { field: ".".into(), reason: e.to_string() })?;
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = path_or_root(e.path().to_string());
            let inner = e.into_inner();
            SpecError::Parse { field: path, reason: inner.to_string() }
        })
    }
}

fn path_or_root(p: String) -> String {
    if p.is_empty() || p == "." { ".".into() } else { p }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_number(field: String, v: f64, min_exclusive: Option<f64>, min: f64, max: f64) -> Result<(), SpecError> {
    if !v.is_finite() {
        return Err(SpecError::invalid(field, format!("{v} is not a finite number")));
    }
    if let Some(m) = min_exclusive {
        if v <= m {
            return Err(SpecError::invalid(field, format!("must be greater than {m}, got {v}")));
        }
    }
    if v < min {
        return Err(SpecError::invalid(field, format!("must be at least {min}, got {v}")));
    }
    if v > max {
        return Err(SpecError::invalid(field, format!("must be at most {max}, got {v}")));
    }
    Ok(())
}

impl JobDocument {
    /// Checks everything the parser cannot and builds the [`Job`].
    pub fn validate(&self) -> Result<Job, SpecError> {
        if self.api_version != API_VERSION {
            return Err(SpecError::invalid(
                "apiVersion",
                format!("unsupported apiVersion '{}' (expected {API_VERSION})", self.api_version),
            ));
        }
        if let Some(kind) = &self.kind {
            if kind != "Job" {
                return Err(SpecError::invalid("kind", format!("expected 'Job', got '{kind}'")));
            }
        }
        let m = &self.metadata;
        if !valid_name(&m.name) || m.name.len() > MAX_JOB_NAME {
            return Err(SpecError::invalid(
                "metadata.name",
                format!(
                    "'{}' must be 1–{MAX_JOB_NAME} lowercase letters, digits or '-', not starting or ending with '-'",
                    m.name
                ),
            ));
        }
        if let Some(d) = m.deadline_ms {
            check_number("metadata.deadline_ms".into(), d, Some(0.0), 0.0, MAX_DURATION_MS * 64.0)?;
        }
        if m.origin.cluster.is_empty() {
            return Err(SpecError::invalid("metadata.origin.cluster", "must not be empty"));
        }
        if m.origin.cluster.len() > MAX_REF_NAME {
            return Err(SpecError::invalid(
                "metadata.origin.cluster",
                format!("longer than {MAX_REF_NAME} characters"),
            ));
        }
        if m.origin.node.as_deref() == Some("") {
            return Err(SpecError::invalid("metadata.origin.node", "must not be empty when given"));
        }
        if m.origin.node.as_ref().is_some_and(|n| n.len() > MAX_REF_NAME) {
            return Err(SpecError::invalid("metadata.origin.node", format!("longer than {MAX_REF_NAME} characters")));
        }
        let stages = &self.spec.stages;
        if stages.is_empty() {
            return Err(SpecError::invalid("spec.stages", "a job needs at least one stage"));
        }
        if stages.len() > MAX_STAGES {
            return Err(SpecError::invalid(
                "spec.stages",
                format!("{} stages, at most {MAX_STAGES} allowed", stages.len()),
            ));
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, s) in stages.iter().enumerate() {
            let f = format!("spec.stages[{i}].id");
            if !valid_name(&s.id) || s.id.len() > MAX_STAGE_ID {
                return Err(SpecError::invalid(
                    f,
                    format!("'{}' must be 1–{MAX_STAGE_ID} lowercase letters, digits or '-'", s.id),
                ));
            }
            if let Some(j) = index.insert(&s.id, i) {
                return Err(SpecError::inconsistent(
                    f,
                    format!("duplicate stage id '{}' (also spec.stages[{j}])", s.id),
                ));
            }
        }
        let mut out = Vec::with_capacity(stages.len());
        let mut preds = Vec::with_capacity(stages.len());
        for (i, s) in stages.iter().enumerate() {
            let p = |name: &str| format!("spec.stages[{i}].{name}");
            let c = &s.compute;
            check_number(p("compute.cpu"), c.cpu, Some(0.0), 0.0, 1024.0)?;
            check_number(p("compute.mem_gb"), c.mem_gb, None, 0.0, 65536.0)?;
            check_number(p("compute.duration_ms"), c.duration_ms, Some(0.0), 0.0, MAX_DURATION_MS)?;
            check_number(p("compute.gpu_vram_gb"), c.gpu_vram_gb, None, 0.0, 1024.0)?;
            check_number(p("output_mb"), s.output_mb, None, 0.0, 1.0e7)?;
            let constraints = Constraints { arch: s.constraints.arch.clone(), formats: s.constraints.formats.clone() };
            if Arch::ALL.iter().all(|a| constraints.formats_on(*a).is_empty()) {
                return Err(SpecError::inconsistent(
                    p("constraints"),
                    format!(
                        "no format can run this stage: formats {:?} with arch {:?} rule out every node",
                        s.constraints.formats.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                        s.constraints.arch.iter().map(|a| a.as_str()).collect::<Vec<_>>()
                    ),
                ));
            }
            let mut ps = Vec::new();
            if let Some(pred) = &s.predecessor {
                for id in pred.ids() {
                    match index.get(id) {
                        None => {
                            return Err(SpecError::inconsistent(p("predecessor"), format!("unknown stage '{id}'")));
                        }
                        Some(&j) if j == i => {
                            return Err(SpecError::inconsistent(p("predecessor"), "a stage cannot wait for itself"));
                        }
                        Some(&j) => {
                            if !ps.contains(&j) {
                                ps.push(j);
                            }
                        }
                    }
                }
            }
            preds.push(ps.clone());
            out.push(Stage {
                id: s.id.clone(),
                compute: Compute {
                    cpu: c.cpu,
                    mem_gb: c.mem_gb,
                    duration_ms: c.duration_ms,
                    gpu_vram_gb: c.gpu_vram_gb,
                },
                constraints,
                predecessors: ps,
                output_mb: s.output_mb,
            });
        }
        let topo = topological_order(&preds).map_err(|on_cycle| {
            let cycle = find_cycle(&preds, on_cycle);
            let names: Vec<&str> = cycle.iter().map(|&k| stages[k].id.as_str()).collect();
            SpecError::inconsistent(
                format!("spec.stages[{}].predecessor", cycle[0]),
                format!("stages form a cycle: {}", names.join(" → ")),
            )
        })?;
        Ok(Job {
            name: m.name.clone(),
            deadline_ms: m.deadline_ms,
            origin: Origin { cluster: m.origin.cluster.clone(), node: m.origin.node.clone() },
            stages: out,
            topo,
        })
    }
}

/// Follows predecessor edges from a node known to lie on or behind a cycle
/// until a node repeats; returns the cycle, closed (first == last).
fn find_cycle(preds: &[Vec<usize>], start: usize) -> Vec<usize> {
    // Only nodes with positive in-degree remain after Kahn's algorithm; from
    // such a node, walking back along predecessors that are also unresolved
    // must eventually revisit a node.
    let unresolved: Vec<bool> = {
        let order = crate::job::kahn(preds);
        let mut done = vec![false; preds.len()];
        for i in order {
            done[i] = true;
        }
        done.iter().map(|d| !d).collect()
    };
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut cur = start;
    loop {
        if let Some(&pos) = seen.get(&cur) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return cycle;
        }
        seen.insert(cur, path.len());
        path.push(cur);
        cur = match preds[cur].iter().copied().find(|&p| unresolved[p]) {
            Some(p) => p,
            None => return vec![start, start],
        };
    }
}

#[cfg(test)]
mod tests;
