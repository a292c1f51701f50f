//! Apply of the client authentication rules: the file the server reads
//! (`hba_file`) is written through the engine's archive endpoint, checked by
//! the server before it is used, and only then reloaded.
//!
//! `pg_hba_file_rules` parses the file on disk, so the check needs the new
//! file in place: a file with a line the server rejects is replaced at once
//! by the bytes it had, with the owner and mode it had, and nothing is
//! reloaded, so the rules in force stay the old ones.

use anyhow::{Context, anyhow, bail};

use crate::engine::archive::Entry;
use crate::engine::{Docker, files};
use crate::live::Target;
use crate::model::access::{AccessRule, file_text};

/// Writes `rules` as the server's file in `container`, has the server check
/// it and reloads; restores the old file when the server rejects a line.
pub async fn write(
    docker: &Docker,
    container: &str,
    rules: &[AccessRule],
    target: &Target,
) -> anyhow::Result<()> {
    // `validate` refuses these first; this is the last line of defence for
    // a saved plan edited by hand: a line break would start a rule of its
    // own making.
    for rule in rules {
        let line = rule.line();
        if line.chars().any(char::is_control) {
            bail!("an access rule holds a control character: {line:?}");
        }
    }
    let text = file_text(rules);
    let header_lines = crate::model::access::FILE_HEADER.lines().count();
    let client = target.connect().await?;
    let file: String = client
        .query_one("SELECT current_setting('hba_file')", &[])
        .await
        .context("cannot read the server's `hba_file`")?
        .get(0);
    let old = files::read_file(docker, container, &file)
        .await?
        .ok_or_else(|| anyhow!("`{file}` is not a file in container `{container}`"))?;
    let listed = files::list(docker, container, &file).await;
    let Some(entry) = listed.first() else {
        bail!("cannot read the owner of `{file}` in container `{container}`");
    };
    let (uid, gid, mode) = (entry.uid, entry.gid, entry.mode);
    let upload = |bytes: Vec<u8>, what: &'static str| {
        let file = file.clone();
        async move {
            let entries = [Entry::file(&file, mode, &bytes).owned_by(uid, gid)];
            files::upload_entries(docker, container, &entries, what).await
        }
    };
    upload(text.into_bytes(), "the access rules").await?;
    let checked = client
        .query(
            "SELECT line_number, coalesce(error, '') FROM pg_catalog.pg_hba_file_rules \
             WHERE error IS NOT NULL ORDER BY line_number",
            &[],
        )
        .await;
    let rejected: Vec<String> = match &checked {
        Ok(rows) => rows
            .iter()
            .map(|row| {
                let line: i32 = row.get(0);
                let error: String = row.get(1);
                // The header's lines come first, then one line a rule.
                let rule = usize::try_from(line)
                    .ok()
                    .and_then(|line| line.checked_sub(header_lines + 1))
                    .and_then(|index| rules.get(index));
                match rule {
                    Some(rule) => format!("`{}`: {error}", rule.line()),
                    None => format!("line {line}: {error}"),
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    if checked.is_err() || !rejected.is_empty() {
        upload(old, "the previous access rules")
            .await
            .with_context(|| {
                format!("the server rejects the new `{file}` and putting the old one back failed")
            })?;
        if let Err(error) = checked {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot check the new `{file}` with the server; the file it had is back in \
                 place and still in force"
            )));
        }
        bail!(
            "the server rejects the access rules ({}); the file it had is back in place and \
             its rules are still in force",
            rejected.join("; ")
        );
    }
    client
        .query_one("SELECT pg_reload_conf()", &[])
        .await
        .context("cannot reload the server's configuration")?;
    Ok(())
}
