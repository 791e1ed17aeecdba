//! The validated config values other than limits: paths, sender, rule name, module, events, schedule.

use std::fmt;
use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Unexpected, Visitor};

use super::scalar::{check_text, rejected};
use super::{ModuleRef, Schedule};

/// A non-empty path string.
pub(super) struct PathValue(pub(super) PathBuf);

impl<'de> Deserialize<'de> for PathValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a path", |text| match text.trim() {
            "" => rejected(),
            _ => Ok(PathValue(text.into())),
        })
    }
}

/// `mail.from`: a mailbox, or `""` for "sending disabled".
pub(super) struct Sender(pub(super) Option<Mailbox>);

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "an address like `OMERO <omero@example.org>`, or \"\" to disable sending";
        check_text(d, expected, |text| match text.trim() {
            "" => Ok(Sender(None)),
            address => address
                .parse()
                .map(|m| Sender(Some(m)))
                .or_else(|_| rejected()),
        })
    }
}

/// A rule name: `[a-z0-9][a-z0-9-]*`.
pub(super) struct RuleName(pub(super) String);

fn is_rule_name(name: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.starts_with(lower_alnum) && name.chars().all(|c| lower_alnum(c) || c == '-')
}

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected =
            "a rule name of lowercase letters, digits and dashes, starting with a letter or digit";
        check_text(d, expected, |text| {
            if is_rule_name(text) {
                Ok(RuleName(text.to_owned()))
            } else {
                rejected()
            }
        })
    }
}

/// `module`: `builtin:NAME` (checked against the embedded rules) or a path (checked later).
pub(super) struct ModuleSpec(pub(super) ModuleRef);

impl<'de> Deserialize<'de> for ModuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = format!("one of {} or a path to a .wasm file", builtin_list());
        check_text(d, expected, |text| module_ref(text.trim()).map(ModuleSpec))
    }
}

fn module_ref(text: &str) -> Result<ModuleRef, String> {
    match text.strip_prefix("builtin:") {
        Some(name) if crate::builtin::names().any(|known| known == name) => {
            Ok(ModuleRef::Builtin(name.to_owned()))
        }
        Some(name) => Err(format!("there is no built-in rule `{name}`")),
        None if text.is_empty() => rejected(),
        None => Ok(ModuleRef::Path(text.into())),
    }
}

/// `on`: a list of event types, or a single one.
pub(super) struct EventTypes(pub(super) Vec<String>);

/// One event type: non-empty, no whitespace.
struct EventType(String);

const EVENT_TYPE: &str = "an event type such as omero.user.created (no spaces)";

fn event_type(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && !text.contains(char::is_whitespace);
    if valid {
        Ok(text.to_owned())
    } else {
        rejected()
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, EVENT_TYPE, |text| event_type(text).map(EventType))
    }
}

impl<'de> Deserialize<'de> for EventTypes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventTypesVisitor)
    }
}

struct EventTypesVisitor;

impl<'de> Visitor<'de> for EventTypesVisitor {
    type Value = EventTypes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of event types, e.g. [omero.user.created]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTypes, E> {
        let invalid = || E::invalid_value(Unexpected::Str(v), &EVENT_TYPE);
        event_type(v)
            .map(|t| EventTypes(vec![t]))
            .map_err(|_| invalid())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventTypes, A::Error> {
        let mut types = Vec::new();
        while let Some(EventType(t)) = seq.next_element()? {
            types.push(t);
        }
        Ok(EventTypes(types))
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a cron schedule of 6 or 7 fields, seconds first";
        check_text(d, expected, |text| parse_schedule(text.trim()))
    }
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "it has {fields} fields; Herald's cron starts with a seconds field"
        ));
    }
    let cron = text.parse::<cron::Schedule>().map_err(|err| {
        // cron's message is "EXPR\n   ^\nREASON"; keep the reason.
        let message = err.to_string();
        message.lines().skip(2).collect::<Vec<_>>().join(" ")
    })?;
    Ok(Schedule {
        source: text.to_owned(),
        cron,
    })
}

/// "builtin:a, builtin:b" for messages.
pub(super) fn builtin_list() -> String {
    let names: Vec<String> = crate::builtin::names()
        .map(|name| format!("builtin:{name}"))
        .collect();
    if names.is_empty() {
        "(none are built in)".to_owned()
    } else {
        names.join(", ")
    }
}
