//! Golden comparison for `herald replay --expect DIR`: produced mail vs the files in DIR, byte for byte.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use lettre::message::Mailbox;
use similar::TextDiff;

use crate::deliver::{file, render};
use crate::evaluate::RuleOutcome;
use crate::event::Event;
use crate::mail::MailKey;
use crate::store::OutboxRow;

/// Every message a replay produced, as the `.eml` bytes the file transport would write.
#[derive(Default)]
pub struct Produced {
    files: BTreeMap<String, Vec<u8>>,
}

impl Produced {
    /// Render the mails of one event's successful outcomes.
    pub fn add(
        &mut self,
        event: &Event,
        outcomes: &[RuleOutcome],
        from: &Mailbox,
    ) -> anyhow::Result<()> {
        for outcome in outcomes {
            let Ok(resolved) = &outcome.result else {
                continue;
            };
            for mail in &resolved.mails {
                let row = OutboxRow {
                    id: 0,
                    key: MailKey {
                        source: event.source.clone(),
                        event_id: event.id.clone(),
                        rule: outcome.rule.clone(),
                        recipient: mail.recipient.clone(),
                    },
                    event_time: event.time,
                    mail: mail.clone(),
                    attempts: 0,
                    queued_at: event.time,
                    lease: None,
                };
                let bytes = render::render(&row, from)?.formatted();
                self.files.insert(file::file_name(&row.key), bytes);
            }
        }
        Ok(())
    }
}

/// What differs between the produced mail and the golden folder.
#[derive(Default)]
pub struct Differences {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub changed: Vec<String>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.changed.is_empty()
    }
}

/// Compare `produced` with the `.eml` files in `dir`, printing a unified diff of each change.
pub fn compare(
    dir: &Path,
    produced: &Produced,
    out: &mut impl Write,
) -> anyhow::Result<Differences> {
    let expected = read_dir(dir)?;
    let mut diffs = Differences::default();
    for (name, want) in &expected {
        match produced.files.get(name) {
            None => diffs.missing.push(name.clone()),
            Some(got) if got != want => {
                diffs.changed.push(name.clone());
                print_diff(out, name, want, got, ("expected", "produced"))?;
            }
            Some(_) => {}
        }
    }
    diffs.unexpected = produced
        .files
        .keys()
        .filter(|name| !expected.contains_key(*name))
        .cloned()
        .collect();
    for name in &diffs.missing {
        writeln!(out, "missing: {name} was expected but not produced")?;
    }
    for name in &diffs.unexpected {
        writeln!(
            out,
            "unexpected: {name} was produced but is not in {}",
            dir.display()
        )?;
    }
    Ok(diffs)
}

/// Compare the mail of two rule sets on the same events (`replay --rules A --against B`):
/// a diff of each message both sent differently, and every message only one of them sent.
pub fn compare_sets(
    against: &Produced,
    rules: &Produced,
    (against_name, rules_name): (&str, &str),
    out: &mut impl Write,
) -> anyhow::Result<Differences> {
    let mut diffs = Differences::default();
    for (name, before) in &against.files {
        match rules.files.get(name) {
            None => {
                diffs.missing.push(name.clone());
                writeln!(out, "only with {against_name}: {name}")?;
                print_whole(out, '-', before)?;
            }
            Some(after) if after != before => {
                diffs.changed.push(name.clone());
                print_diff(out, name, before, after, (against_name, rules_name))?;
            }
            Some(_) => {}
        }
    }
    for (name, after) in rules
        .files
        .iter()
        .filter(|(n, _)| !against.files.contains_key(*n))
    {
        diffs.unexpected.push(name.clone());
        writeln!(out, "only with {rules_name}: {name}")?;
        print_whole(out, '+', after)?;
    }
    Ok(diffs)
}

fn print_whole(out: &mut impl Write, sign: char, bytes: &[u8]) -> anyhow::Result<()> {
    for line in String::from_utf8_lossy(bytes).lines() {
        writeln!(out, "{sign}{line}")?;
    }
    Ok(())
}

/// Make `dir` hold exactly the produced files.
pub fn bless(dir: &Path, produced: &Produced) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for name in read_dir(dir)?
        .keys()
        .filter(|n| !produced.files.contains_key(*n))
    {
        std::fs::remove_file(dir.join(name))?;
    }
    for (name, bytes) in &produced.files {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("cannot write {name}"))?;
    }
    Ok(produced.files.len())
}

fn read_dir(dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "cannot read the expected folder {} (to make it from the mail produced, run again with --bless)",
                dir.display()
            )
        })?;
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "eml") {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            files.insert(name, std::fs::read(&path)?);
        }
    }
    Ok(files)
}

fn print_diff(
    out: &mut impl Write,
    name: &str,
    want: &[u8],
    got: &[u8],
    (before, after): (&str, &str),
) -> anyhow::Result<()> {
    let want = String::from_utf8_lossy(want).replace("\r\n", "\n");
    let got = String::from_utf8_lossy(got).replace("\r\n", "\n");
    writeln!(out, "changed: {name}")?;
    if want == got {
        writeln!(out, "  (only the line endings differ)")?;
        return Ok(());
    }
    let diff = TextDiff::from_lines(&want, &got);
    write!(
        out,
        "{}",
        diff.unified_diff()
            .header(&format!("{before}/{name}"), &format!("{after}/{name}"))
    )?;
    Ok(())
}
