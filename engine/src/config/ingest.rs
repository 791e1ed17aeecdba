//! The `ingest` section: how large an incoming event may be, and which event types are taken.

use serde::Deserialize;

use super::limits::{EventSize, ItemCount, StringSize};
use super::values::EventTypes;
use crate::event::SizeCaps;

/// What ingest admits, from every source (files, stdin, HTTP).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestConfig {
    /// Size caps on each event and each of its strings.
    pub caps: SizeCaps,
    /// Refuse events whose type Herald does not define and `custom_types` does not list.
    pub strict_types: bool,
    /// Types taken besides Herald's own when `strict_types` is on.
    pub custom_types: Vec<String>,
}

impl IngestConfig {
    /// Whether an event of type `kind` is taken.
    pub fn takes(&self, kind: &str) -> bool {
        !self.strict_types
            || crate::event::types::ALL.contains(&kind)
            || self.custom_types.iter().any(|t| t == kind)
    }
}

/// The section as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    max_event_bytes: Option<EventSize>,
    max_string_bytes: Option<StringSize>,
    max_items: Option<ItemCount>,
    strict_types: Option<bool>,
    custom_types: Option<EventTypes>,
}

impl RawIngest {
    pub(super) fn resolve(self) -> IngestConfig {
        let d = SizeCaps::default();
        IngestConfig {
            caps: SizeCaps {
                max_event_bytes: self
                    .max_event_bytes
                    .map_or(d.max_event_bytes, |s| s.bytes()),
                max_string_bytes: self
                    .max_string_bytes
                    .map_or(d.max_string_bytes, |s| s.bytes()),
                max_items: self.max_items.map_or(d.max_items, |n| n.count()),
            },
            strict_types: self.strict_types.unwrap_or(false),
            custom_types: self.custom_types.map(|t| t.0).unwrap_or_default(),
        }
    }
}
