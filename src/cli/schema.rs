//! `pgspec schema`: the JSON Schema of the spec format.

use crate::cli::Exit;
use crate::output;
use crate::spec::file::json_schema;

pub fn run() -> anyhow::Result<Exit> {
    output::stdout(&json_schema())?;
    Ok(Exit::Success)
}
