//! The API's OpenAPI 3.0 document (`GET /v1/openapi.json`).
//!
//! Paths, responses and links are written by hand in `agent/api/openapi.json`;
//! the schemas of what the API takes — the job and service documents and
//! the failure bodies — and of the plan it returns are derived from the Rust
//! types the handlers parse and answer with (schemars reads their serde
//! attributes: renames, defaults, `deny_unknown_fields`), so the document
//! cannot drift from the parser. What only this agent knows is filled in
//! when the document is served: the clusters and nodes of its twin, the only
//! names a document may refer to.
//!
//! The contract between the two: a body the document's schema accepts is
//! refused only for a rule between fields, which a JSON Schema cannot state
//! (a predecessor that is no stage, a cycle, `min` above `max`): those are
//! 422s, everything the schema refuses a 400 (`tests/api-contract` checks
//! it against a live agent with schemathesis).

use std::sync::OnceLock;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::{Transform, transform_subschemas};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};
use twinmesh_common::plan::Plan;
use twinmesh_common::spec::{JobDocument, ServiceDocument};

use super::failure::{Injection, Observation};

/// The hand-written part: paths, responses, links, and the schemas of
/// answers that are not Rust types of their own.
const PATHS: &str = include_str!("../../api/openapi.json");

/// The document for a twin of these clusters and nodes.
pub fn document(clusters: &[String], nodes: &[String]) -> Value {
    static STATIC: OnceLock<Value> = OnceLock::new();
    let mut doc = STATIC.get_or_init(derived).clone();
    let schemas = &mut doc["components"]["schemas"];
    // An empty enum is no schema; before the twin knows a node, any name
    // is as good (and refused with a 400).
    if !clusters.is_empty() {
        schemas["OriginDoc"]["properties"]["cluster"]["enum"] = json!(clusters);
    }
    if !nodes.is_empty() {
        // `origin.node` may be null (serde reads it as absent).
        let mut or_null = json!(nodes);
        or_null.as_array_mut().expect("an array").push(Value::Null);
        schemas["OriginDoc"]["properties"]["node"]["enum"] = or_null;
        for body in ["Observation", "Injection"] {
            schemas[body]["properties"]["node"]["enum"] = json!(nodes);
        }
    }
    doc
}

/// The hand-written document with the derived schemas added to its
/// components.
fn derived() -> Value {
    let mut doc: Value = serde_json::from_str(PATHS).expect("agent/api/openapi.json is JSON");
    let schemas = doc["components"]["schemas"].as_object_mut().expect("components.schemas");
    // Request bodies as the parser reads them (defaults optional) ...
    let mut taken = generator(SchemaSettings::openapi3().for_deserialize());
    add::<JobDocument>(&mut taken, schemas);
    add::<ServiceDocument>(&mut taken, schemas);
    add::<Observation>(&mut taken, schemas);
    add::<Injection>(&mut taken, schemas);
    // ... and answers as they are written (every field present).
    let mut given = generator(SchemaSettings::openapi3().for_serialize());
    add::<Plan>(&mut given, schemas);
    doc
}

fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings.with_transform(ExclusiveMinimum).into_generator()
}

/// Adds `T`'s schema and those it refers to; a name written by hand too
/// is a mistake (two schemas, one of them stale).
fn add<T: JsonSchema>(generator: &mut SchemaGenerator, schemas: &mut Map<String, Value>) {
    generator.subschema_for::<T>();
    for (name, schema) in generator.take_definitions(true) {
        if let Some(old) = schemas.insert(name.clone(), schema.clone()) {
            assert_eq!(old, schema, "components.schemas.{name}: derived twice, differently, or also written by hand");
        }
    }
}

/// JSON Schema's `exclusiveMinimum: 0` (what the types say) in OpenAPI
/// 3.0's form, `minimum: 0, exclusiveMinimum: true`.
#[derive(Clone)]
struct ExclusiveMinimum;

impl Transform for ExclusiveMinimum {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(min) = schema.get("exclusiveMinimum").filter(|v| v.is_number()).cloned() {
            schema.insert("minimum".into(), min);
            schema.insert("exclusiveMinimum".into(), true.into());
        }
        transform_subschemas(self, schema);
    }
}

#[cfg(test)]
mod tests;
