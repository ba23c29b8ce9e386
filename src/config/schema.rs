//! The JSON Schema of the configuration (`jwtgate config-schema`), for
//! editors (taplo / Even Better TOML, the YAML language server) and CI.
//! Derived from the same types serde reads, so it cannot drift from them;
//! only the types serde reads through a custom format are described here.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A humantime duration string, as `humantime_serde` reads it.
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "A duration: a number and a unit, e.g. \"500ms\", \"90s\", \"15m\", \"24h\", \"1h 30m\".",
        "pattern": "^\\s*[0-9]+\\s*[a-zµ]+(\\s*[0-9]+\\s*[a-zµ]+)*\\s*$"
    })
}

/// The whole configuration's schema, as pretty JSON.
pub fn json() -> String {
    let mut schema = schemars::schema_for!(super::Config);
    schema.insert(
        "title".into(),
        "jwtgate configuration (TOML or YAML)".into(),
    );
    // serde_json renders a Schema (a JSON value) infallibly.
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
