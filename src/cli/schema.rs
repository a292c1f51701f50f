//! `pgspec schema`: the JSON Schema of the spec format.

use crate::cli::Exit;
use crate::output;
use crate::spec::file::SpecFile;

/// The schema text exactly as `schema/pgspec.schema.json` holds it.
pub fn schema_text() -> String {
    let schema = schemars::schema_for!(SpecFile);
    let mut text = serde_json::to_string_pretty(&schema)
        .unwrap_or_else(|error| panic!("the schema always serializes: {error}"));
    text.push('\n');
    text
}

pub fn run() -> anyhow::Result<Exit> {
    output::stdout(&schema_text())?;
    Ok(Exit::Success)
}
