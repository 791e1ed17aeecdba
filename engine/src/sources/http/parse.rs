//! A `POST /v1/events` body as events: CloudEvents structured, binary (`ce-*` headers) or batch mode.
//!
//! Every event goes through the shared validation in [`crate::event`]; a request is
//! taken whole or refused whole.

use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::problem::Problem;
use crate::config::IngestConfig;
use crate::event::{self, Event, InvalidEvent, SizeCaps};

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const JSON: &str = "application/json";

/// The media types a request may have, for the 415 answer.
const ACCEPTED: &str = "application/cloudevents+json or application/json (one event), \
     application/cloudevents-batch+json (a JSON array of events), \
     or binary mode (ce-* headers with a JSON body)";

/// How one request's events are admitted: the ingest time and the size caps.
#[derive(Clone, Copy)]
pub struct Admit<'a> {
    pub now: DateTime<Utc>,
    pub caps: &'a SizeCaps,
}

impl Admit<'_> {
    /// The shared validation every source uses ([`event::admit`]).
    fn event(&self, value: Value) -> Result<Event, InvalidEvent> {
        event::admit(value, self.now, self.caps)
    }
}

/// Parse and validate the events of one request.
pub fn events(headers: &HeaderMap, body: &[u8], admit: Admit<'_>) -> Result<Vec<Event>, Problem> {
    let media = media_type(headers);
    if headers.contains_key("ce-specversion") || headers.contains_key("ce-id") {
        return binary(headers, media.as_deref(), body, admit).map(|e| vec![e]);
    }
    match media.as_deref() {
        Some(STRUCTURED | JSON) => structured(body, admit).map(|e| vec![e]),
        Some(BATCH) => batch(body, admit),
        Some(other) => Err(unsupported(format!("content type {other} is not taken"))),
        None => Err(unsupported("the request has no Content-Type".into())),
    }
}

/// The media type without parameters, lowercased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

fn unsupported(why: String) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("{why}; send {ACCEPTED}"),
    )
}

/// The body as JSON; the detail says `invalid JSON` with serde's line and column.
fn json_body(body: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(body).map_err(|err| Problem::bad_request(format!("invalid JSON: {err}")))
}

fn structured(body: &[u8], admit: Admit<'_>) -> Result<Event, Problem> {
    admit
        .event(json_body(body)?)
        .map_err(|err| refused(&[(0, err)]))
}

fn batch(body: &[u8], admit: Admit<'_>) -> Result<Vec<Event>, Problem> {
    let Value::Array(items) = json_body(body)? else {
        return Err(Problem::bad_request(
            "a batch (application/cloudevents-batch+json) must be a JSON array of events",
        ));
    };
    if items.is_empty() {
        return Err(Problem::bad_request("the batch holds no event"));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match admit.event(item) {
            Ok(event) => events.push(event),
            Err(err) => errors.push((index, err)),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(refused(&errors))
    }
}

/// Binary mode: the attributes are `ce-*` headers and the body is the event's `data`.
fn binary(
    headers: &HeaderMap,
    media: Option<&str>,
    body: &[u8],
    admit: Admit<'_>,
) -> Result<Event, Problem> {
    let mut envelope = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let text = value.to_str().map_err(|_| {
            Problem::bad_request(format!("header {name} is not visible ASCII text"))
        })?;
        envelope.insert(attribute.to_owned(), json!(text));
    }
    if !body.is_empty() {
        match media {
            Some(JSON) => {}
            Some(m) if m.ends_with("+json") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "binary-mode data of type {other} is not taken (Herald only takes JSON data)"
                )));
            }
            None => return Err(unsupported("binary-mode data has no Content-Type".into())),
        }
        envelope.insert("data".into(), json_body(body)?);
    }
    admit
        .event(Value::Object(envelope))
        .map_err(|err| refused(&[(0, err)]))
}

/// 422 naming each bad event (its index in the request, its id, the field at fault);
/// 413 when an event is over an `ingest.*` size cap.
fn refused(errors: &[(usize, InvalidEvent)]) -> Problem {
    let first = &errors[0];
    let more = match errors.len() {
        1 => String::new(),
        n => format!(" (and {} more event(s); see errors)", n - 1),
    };
    let detail = format!("event {}: {}{more}", first.0, first.1);
    let mut problem = match errors.iter().any(|(_, err)| err.too_large.is_some()) {
        true => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, detail),
        false => Problem::invalid(detail),
    };
    problem.errors = errors
        .iter()
        .map(|(index, err)| json!({"index": index, "id": err.id, "detail": err.reason}))
        .collect();
    problem
}

/// With `ingest.strict_types` on, 422 for an event whose type is neither Herald's nor listed.
pub fn check_types(events: &[Event], types: &IngestConfig) -> Result<(), Problem> {
    let unknown: Vec<(usize, InvalidEvent)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| !types.takes(&e.kind))
        .map(|(index, e)| {
            let reason = format!(
                "type {:?} is unknown: it is not one of Herald's types and not in \
                 ingest.custom_types; add it there, or turn ingest.strict_types off",
                e.kind
            );
            (
                index,
                InvalidEvent {
                    line: None,
                    id: Some(e.id.clone()),
                    reason,
                    too_large: None,
                },
            )
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(refused(&unknown))
    }
}
