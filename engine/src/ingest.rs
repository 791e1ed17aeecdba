//! Ingest: read events from a file or stdin, validate them all, and journal them.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::event::{self, Event, InvalidEvent, SizeCaps};
use crate::store::{Ingested, Store};

/// Why input was refused. Nothing of it was stored.
pub enum ReadError {
    /// The input could not be read at all.
    Io(anyhow::Error),
    /// Some events are invalid; each is listed.
    Invalid(Vec<InvalidEvent>),
}

/// Read one event, a JSON array of events, or JSON Lines from `path`
/// (`-` is stdin). Every event is validated, and held to `caps` (`ingest:` in the
/// config), before any is returned.
pub fn read_events(
    path: &Path,
    now: DateTime<Utc>,
    caps: &SizeCaps,
) -> Result<Vec<Event>, ReadError> {
    let text = read_text(path).map_err(ReadError::Io)?;
    if text.trim().is_empty() {
        return Err(ReadError::Invalid(vec![InvalidEvent {
            line: None,
            id: None,
            reason: format!("{} holds no event", path.display()),
            too_large: None,
        }]));
    }
    event::parse_many(&text, now, caps).map_err(ReadError::Invalid)
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read events from stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// What journaling a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Journaled {
    pub new: usize,
    pub duplicates: usize,
}

/// Journal validated events in one transaction; acknowledged once this returns.
pub fn journal(
    store: &mut Store,
    events: &[Event],
    now: DateTime<Utc>,
) -> anyhow::Result<Journaled> {
    let results = store.ingest(events, now)?;
    crate::crashpoint::reached(crate::crashpoint::Point::AfterJournal);
    let duplicates = results
        .iter()
        .filter(|r| matches!(r, Ingested::Duplicate(_)))
        .count();
    Ok(Journaled {
        new: results.len() - duplicates,
        duplicates,
    })
}
