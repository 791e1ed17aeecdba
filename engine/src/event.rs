//! The event contract: CloudEvents envelopes, their typed data, and validation.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Event types with a typed `data` shape (see docs/events.md).
pub mod types {
    pub const SERVER_UP: &str = "omero.server.up";
    pub const SERVER_DOWN: &str = "omero.server.down";
    pub const LOGIN_FAILED: &str = "omero.login.failed";
    pub const USER_CREATED: &str = "omero.user.created";
    pub const GROUP_CREATED: &str = "omero.group.created";
    pub const COMMENT_ADDED: &str = "omero.comment.added";
    pub const WEB_ERROR: &str = "omero.web.error";
    pub const BROADCAST: &str = "herald.broadcast";
    pub const TICK: &str = "herald.tick";
    /// A mail the SMTP listener took that is not one of OMERO's stock mails.
    pub const MAIL_RECEIVED: &str = "mail.received";

    /// Every type Herald defines.
    pub const ALL: [&str; 10] = [
        SERVER_UP,
        SERVER_DOWN,
        LOGIN_FAILED,
        USER_CREATED,
        GROUP_CREATED,
        COMMENT_ADDED,
        WEB_ERROR,
        BROADCAST,
        TICK,
        MAIL_RECEIVED,
    ];
}

/// A validated event: the envelope fields plus the typed data.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub kind: String,
    /// The event's time, or the ingest time when the producer sent none.
    pub time: DateTime<Utc>,
    /// `data` exactly as received (`null` when absent).
    pub data_json: Value,
    pub data: EventData,
}

impl Event {
    /// The time as the rule sees it: RFC 3339, UTC, with a `Z`.
    pub fn time_rfc3339(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// The envelope as CloudEvents structured JSON (what the journal keeps).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.kind,
            "time": self.time_rfc3339(),
            "datacontenttype": "application/json",
            "data": self.data_json,
        })
    }
}

/// A user as events carry it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
}

/// An OMERO object a comment is linked to.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ObjectRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: i64,
    pub name: Option<String>,
    pub owner: Option<User>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServerUp {
    pub server: String,
    pub version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServerDown {
    pub server: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LoginFailed {
    pub user: String,
    pub remote_addr: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct UserCreated {
    pub user: User,
    #[serde(default)]
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GroupCreated {
    pub group: Group,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Comment {
    pub id: i64,
    pub text: String,
    pub owner: User,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CommentAdded {
    pub comment: Comment,
    pub links: Vec<ObjectRef>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ExceptionInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(default)]
    pub traceback: String,
}

/// Django's request dictionaries; values are kept as JSON in their order.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct RequestInfo {
    #[serde(rename = "GET", default)]
    pub get: Map<String, Value>,
    #[serde(rename = "POST", default)]
    pub post: Map<String, Value>,
    #[serde(rename = "COOKIES", default)]
    pub cookies: Map<String, Value>,
    #[serde(rename = "META", default)]
    pub meta: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WebError {
    pub status: u16,
    pub method: String,
    pub path: String,
    pub url: String,
    pub host: String,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub remote_addr: Option<String>,
    #[serde(default)]
    pub internal_ip: bool,
    pub exception: Option<ExceptionInfo>,
    pub request: Option<RequestInfo>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Broadcast {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    #[serde(default)]
    pub everyone: bool,
    #[serde(default)]
    pub inactive: bool,
    #[serde(default)]
    pub user_ids: Vec<i64>,
    #[serde(default)]
    pub user_names: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<i64>,
    #[serde(default)]
    pub group_names: Vec<String>,
    #[serde(default)]
    pub extra: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Tick {
    pub schedule: String,
    pub rule: String,
}

/// The typed `data` of an event; unknown types keep their JSON.
// One value per event in flight: boxing the larger variants buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum EventData {
    ServerUp(ServerUp),
    ServerDown(ServerDown),
    LoginFailed(LoginFailed),
    UserCreated(UserCreated),
    GroupCreated(GroupCreated),
    CommentAdded(CommentAdded),
    WebError(WebError),
    Broadcast(Broadcast),
    Tick(Tick),
    Custom(Value),
}

impl EventData {
    /// Type `data` according to the event type. Extra fields are accepted.
    pub fn parse(kind: &str, data: &Value) -> Result<EventData, String> {
        use EventData as D;
        Ok(match kind {
            types::SERVER_UP => D::ServerUp(typed(data)?),
            types::SERVER_DOWN => D::ServerDown(typed(data)?),
            types::LOGIN_FAILED => D::LoginFailed(typed(data)?),
            types::USER_CREATED => D::UserCreated(typed(data)?),
            types::GROUP_CREATED => D::GroupCreated(typed(data)?),
            types::COMMENT_ADDED => D::CommentAdded(typed(data)?),
            types::WEB_ERROR => D::WebError(typed(data)?),
            types::BROADCAST => D::Broadcast(check_extra(typed(data)?)?),
            types::TICK => D::Tick(typed(data)?),
            _ => D::Custom(data.clone()),
        })
    }
}

/// A broadcast's `extra` addresses go to the mail server as they are: each must be one.
fn check_extra(broadcast: Broadcast) -> Result<Broadcast, String> {
    for (i, address) in broadcast.extra.iter().enumerate() {
        if let Err(err) = address.trim().parse::<lettre::message::Mailbox>() {
            return Err(format!(
                "data.extra[{i}]: {address:?} is not a valid email address ({err}); \
                 write it like someone@example.org"
            ));
        }
    }
    Ok(broadcast)
}

fn typed<T: DeserializeOwned>(data: &Value) -> Result<T, String> {
    if data.is_null() {
        return Err("`data` is required for this event type".into());
    }
    serde_path_to_error::deserialize(data).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            format!("data: {inner}")
        } else {
            format!("data.{path}: {inner}")
        }
    })
}

/// Why an event was refused. Nothing of it was stored.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidEvent {
    /// 1-based line in the input, when the input had lines.
    pub line: Option<usize>,
    /// The event id, when it could be read.
    pub id: Option<String>,
    pub reason: String,
    /// Set when the event broke a size cap: a payload-too-large refusal (HTTP 413)
    /// rather than a malformed event (HTTP 400).
    pub too_large: Option<TooLarge>,
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(id) = &self.id {
            write!(f, "event {id}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidEvent {}

/// Validate one envelope. `now` stands in for a missing `time`.
pub fn from_json(value: Value, now: DateTime<Utc>) -> Result<Event, InvalidEvent> {
    let Value::Object(mut envelope) = value else {
        return Err(invalid(None, "an event must be a JSON object"));
    };
    let id = required_str(&envelope, "id", None)?;
    let fail = |reason: String| invalid(Some(&id), &reason);
    check_specversion(&envelope).map_err(fail)?;
    check_content_type(&envelope).map_err(fail)?;
    let source = required_str(&envelope, "source", Some(&id))?;
    let kind = required_str(&envelope, "type", Some(&id))?;
    let time = parse_time(envelope.get("time"), now).map_err(fail)?;
    let data_json = envelope.remove("data").unwrap_or(Value::Null);
    let data = EventData::parse(&kind, &data_json).map_err(fail)?;
    Ok(Event {
        id,
        source,
        kind,
        time,
        data_json,
        data,
    })
}

/// Parse one JSON text holding an event.
pub fn from_str(text: &str, now: DateTime<Utc>) -> Result<Event, InvalidEvent> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| invalid(None, &format!("not valid JSON: {err}")))?;
    from_json(value, now)
}

/// Parse an input that is one JSON event, a JSON array of events (CloudEvents
/// batch), or JSON Lines, and admit each under `caps` (see [`admit`]). Every bad
/// event is reported, with its line.
pub fn parse_many(
    text: &str,
    now: DateTime<Utc>,
    caps: &SizeCaps,
) -> Result<Vec<Event>, Vec<InvalidEvent>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => collect(items.into_iter().map(|v| (None, Ok(v))), now, caps),
        Ok(value) => collect([(None, Ok(value))], now, caps),
        Err(_) => collect(jsonl_lines(text, caps), now, caps),
    }
}

type Item = (Option<usize>, Result<Value, InvalidEvent>);

fn jsonl_lines(text: &str, caps: &SizeCaps) -> Vec<Item> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let value = caps.check_event_bytes(line.len()).and_then(|()| {
                serde_json::from_str(line)
                    .map_err(|err| invalid(None, &format!("not valid JSON: {err}")))
            });
            (Some(n + 1), value)
        })
        .collect()
}

fn collect(
    items: impl IntoIterator<Item = Item>,
    now: DateTime<Utc>,
    caps: &SizeCaps,
) -> Result<Vec<Event>, Vec<InvalidEvent>> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (line, value) in items {
        let parsed = value.and_then(|v| admit(v, now, caps));
        match parsed {
            Ok(event) => events.push(event),
            Err(mut err) => {
                err.line = line;
                errors.push(err);
            }
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// Validate one envelope for ingest: [`from_json`], plus what only new events must meet:
/// the size caps, and a time from [`EARLIEST_TIME`] on.
pub fn admit(value: Value, now: DateTime<Utc>, caps: &SizeCaps) -> Result<Event, InvalidEvent> {
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    let too_large = |err: TooLarge| InvalidEvent {
        reason: err.to_string(),
        too_large: Some(err),
        ..invalid(id.as_deref(), "")
    };
    caps.check_event_bytes(serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len()))
        .map_err(|err| InvalidEvent {
            id: id.clone(),
            ..err
        })?;
    caps.check_strings(&value).map_err(too_large)?;
    let event = from_json(value, now)?;
    check_time(&event.time).map_err(|reason| invalid(Some(&event.id), &reason))?;
    Ok(event)
}

/// The earliest event time accepted: an RFC 5322 Date can carry any year from 1900 on.
pub const EARLIEST_TIME: &str = "1900-01-01T00:00:00Z";

fn check_time(time: &DateTime<Utc>) -> Result<(), String> {
    let earliest = DateTime::parse_from_rfc3339(EARLIEST_TIME)
        .expect("EARLIEST_TIME is RFC 3339")
        .with_timezone(&Utc);
    if *time >= earliest {
        return Ok(());
    }
    Err(format!(
        "`time` {} is before {EARLIEST_TIME}, the earliest time Herald accepts; \
         send the event's real time, or leave `time` out to use the ingest time",
        time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    ))
}

/// The size caps on incoming events (`ingest:` in herald.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeCaps {
    /// The most bytes one event may take as JSON.
    pub max_event_bytes: u64,
    /// The most bytes of any one string in an event (keys too).
    pub max_string_bytes: u64,
    /// The most array items and object members in one event, all levels together:
    /// every one costs a rule fuel before it even starts.
    pub max_items: u64,
}

impl Default for SizeCaps {
    fn default() -> Self {
        SizeCaps {
            max_event_bytes: 256 * 1024,
            max_string_bytes: 64 * 1024,
            max_items: 512,
        }
    }
}

/// Which size cap an event broke: the typed refusal an HTTP ingest answers with 413.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooLarge {
    #[error(
        "the event is {size} bytes of JSON; the cap is {max} (ingest.max_event_bytes): \
         send less data, or raise ingest.max_event_bytes in the config"
    )]
    Event { size: usize, max: u64 },
    #[error(
        "`{path}` is a string of {size} bytes; the cap is {max} (ingest.max_string_bytes): \
         cut it before sending, or raise ingest.max_string_bytes in the config"
    )]
    String { path: String, size: usize, max: u64 },
    #[error(
        "the event holds more than {max} array items and object members (at `{path}`; \
         ingest.max_items): send fewer, or raise ingest.max_items in the config"
    )]
    Items { path: String, max: u64 },
}

impl SizeCaps {
    fn check_event_bytes(&self, size: usize) -> Result<(), InvalidEvent> {
        if size as u64 <= self.max_event_bytes {
            return Ok(());
        }
        let err = TooLarge::Event {
            size,
            max: self.max_event_bytes,
        };
        Err(InvalidEvent {
            reason: err.to_string(),
            too_large: Some(err),
            ..invalid(None, "")
        })
    }

    /// Every string in `value`, object keys included, against `max_string_bytes`, and
    /// the array items and object members together against `max_items`.
    fn check_strings(&self, value: &Value) -> Result<(), TooLarge> {
        let mut walk = Walk {
            caps: self,
            path: Vec::new(),
            items: 0,
        };
        walk.value(value)
    }

    fn check_string(&self, text: &str, path: &[String]) -> Result<(), TooLarge> {
        if text.len() as u64 <= self.max_string_bytes {
            return Ok(());
        }
        let path = path.concat();
        Err(TooLarge::String {
            path: shorten(path.strip_prefix('.').unwrap_or(&path)),
            size: text.len(),
            max: self.max_string_bytes,
        })
    }
}

/// A walk over one event's JSON: where it is, and how many items it has counted.
struct Walk<'c> {
    caps: &'c SizeCaps,
    path: Vec<String>,
    items: u64,
}

impl Walk<'_> {
    fn value(&mut self, value: &Value) -> Result<(), TooLarge> {
        match value {
            Value::String(text) => self.caps.check_string(text, &self.path),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                self.enter(format!("[{i}]"))?;
                self.value(item)?;
                self.path.pop();
                Ok(())
            }),
            Value::Object(map) => map.iter().try_for_each(|(key, item)| {
                self.enter(format!(".{key}"))?;
                self.caps.check_string(key, &self.path)?;
                self.value(item)?;
                self.path.pop();
                Ok(())
            }),
            _ => Ok(()),
        }
    }

    /// Step into one more item, counting it.
    fn enter(&mut self, segment: String) -> Result<(), TooLarge> {
        self.path.push(segment);
        self.items += 1;
        if self.items <= self.caps.max_items {
            return Ok(());
        }
        let path = self.path.concat();
        Err(TooLarge::Items {
            path: shorten(path.strip_prefix('.').unwrap_or(&path)),
            max: self.caps.max_items,
        })
    }
}

/// A field path for an error line: a key can be as long as the string cap.
fn shorten(path: &str) -> String {
    const MAX: usize = 200;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let mut end = MAX;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

fn invalid(id: Option<&str>, reason: &str) -> InvalidEvent {
    InvalidEvent {
        line: None,
        id: id.map(str::to_owned),
        reason: reason.to_owned(),
        too_large: None,
    }
}

fn required_str(
    envelope: &Map<String, Value>,
    key: &str,
    id: Option<&str>,
) -> Result<String, InvalidEvent> {
    match envelope.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(id, &format!("`{key}` must not be empty"))),
        Some(other) => Err(invalid(
            id,
            &format!("`{key}` must be a string, not {}", json_kind(other)),
        )),
        None => Err(invalid(id, &format!("missing required field `{key}`"))),
    }
}

fn check_specversion(envelope: &Map<String, Value>) -> Result<(), String> {
    match envelope.get("specversion") {
        None => Ok(()),
        Some(Value::String(v)) if v == "1.0" => Ok(()),
        Some(other) => Err(format!(
            "`specversion` must be \"1.0\" (CloudEvents 1.0), not {other}"
        )),
    }
}

fn check_content_type(envelope: &Map<String, Value>) -> Result<(), String> {
    match envelope.get("datacontenttype") {
        None => Ok(()),
        Some(Value::String(t)) if t == "application/json" || t.ends_with("+json") => Ok(()),
        Some(other) => Err(format!(
            "`datacontenttype` must be application/json, not {other}: Herald only takes JSON data"
        )),
    }
}

fn parse_time(time: Option<&Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    match time {
        None | Some(Value::Null) => Ok(now),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| format!("`time` must be RFC 3339, e.g. 2026-11-23T09:15:00Z: {err}")),
        Some(other) => Err(format!(
            "`time` must be an RFC 3339 string, not {}",
            json_kind(other)
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn user_created_is_typed_and_keeps_extra_fields() {
        let text = r#"{"specversion":"1.0","id":"e1","source":"omero://x","type":"omero.user.created",
            "time":"2026-11-23T09:15:00+01:00","data":{"user":{"id":52,"name":"bob","shoe":9}}}"#;
        let event = from_str(text, now()).unwrap();
        assert_eq!(event.time_rfc3339(), "2026-11-23T08:15:00Z");
        let EventData::UserCreated(created) = &event.data else {
            panic!("{:?}", event.data)
        };
        assert_eq!(created.user.id, 52);
        assert_eq!(event.data_json["user"]["shoe"], 9);
    }

    #[test]
    fn missing_id_is_named() {
        let err = from_str(r#"{"source":"s","type":"t"}"#, now()).unwrap_err();
        assert_eq!(err.reason, "missing required field `id`");
    }

    #[test]
    fn bad_data_names_the_path() {
        let text = r#"{"id":"e2","source":"s","type":"omero.user.created","data":{"user":{"id":"x","name":"b"}}}"#;
        let err = from_str(text, now()).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("e2"));
        assert!(
            err.reason.starts_with("data.user.id: invalid type"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn unknown_type_is_custom_and_time_defaults_to_now() {
        let event = from_str(r#"{"id":"e3","source":"s","type":"x.y","data":[1]}"#, now()).unwrap();
        assert_eq!(event.data, EventData::Custom(serde_json::json!([1])));
        assert_eq!(event.time, now());
    }

    #[test]
    fn jsonl_reports_every_bad_line() {
        let text = "{\"id\":\"a\",\"source\":\"s\",\"type\":\"t\"}\n\nnot json\n{\"source\":\"s\",\"type\":\"t\"}\n";
        let errors = parse_many(text, now(), &SizeCaps::default()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, Some(3));
        assert!(errors[0].reason.starts_with("not valid JSON"));
        assert_eq!(errors[1].line, Some(4));
    }

    fn admit_str(text: &str) -> Result<Event, InvalidEvent> {
        admit(
            serde_json::from_str(text).unwrap(),
            now(),
            &SizeCaps::default(),
        )
    }

    #[test]
    fn times_from_1900_on_are_admitted_and_earlier_ones_refused_naming_time() {
        let at = |time: &str| {
            admit_str(&format!(
                r#"{{"id":"t","source":"s","type":"x","time":"{time}"}}"#
            ))
        };
        assert!(at("1900-01-01T00:00:00Z").is_ok());
        assert!(at("1969-12-31T23:59:59Z").is_ok());
        let err = at("1899-12-31T23:59:59Z").unwrap_err();
        assert!(
            err.reason
                .starts_with("`time` 1899-12-31T23:59:59Z is before 1900-01-01T00:00:00Z"),
            "{}",
            err.reason
        );
        assert!(err.reason.contains("leave `time` out"), "{}", err.reason);
        assert!(at("1900-01-01T00:30:00+01:00").is_err());
    }

    #[test]
    fn an_oversize_string_is_refused_with_its_path_and_a_typed_error() {
        let caps = SizeCaps {
            max_event_bytes: 10_000,
            max_string_bytes: 10,
            ..SizeCaps::default()
        };
        let value = serde_json::json!({"id": "big", "source": "s", "type": "x.y",
            "data": {"request": {"META": {"HTTP_X": ["ok", "0123456789a"]}}}});
        let err = admit(value, now(), &caps).unwrap_err();
        assert_eq!(
            err.too_large,
            Some(TooLarge::String {
                path: "data.request.META.HTTP_X[1]".into(),
                size: 11,
                max: 10
            })
        );
        assert_eq!(err.id.as_deref(), Some("big"));
        assert!(
            err.reason.contains("ingest.max_string_bytes"),
            "{}",
            err.reason
        );
        let key =
            serde_json::json!({"id": "k", "source": "s", "type": "t", "data": {"0123456789a": 1}});
        let err = admit(key, now(), &caps).unwrap_err();
        assert!(
            err.reason
                .starts_with("`data.0123456789a` is a string of 11 bytes"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn an_oversize_event_is_refused_on_its_line_before_parsing() {
        let caps = SizeCaps {
            max_event_bytes: 60,
            ..SizeCaps::default()
        };
        let small = r#"{"id":"a","source":"s","type":"t"}"#;
        let big = format!(
            r#"{{"id":"b","source":"s","type":"t","data":"{}"}}"#,
            "x".repeat(40)
        );
        let errors = parse_many(&format!("{small}\n{big}\n"), now(), &caps).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, Some(2));
        assert!(matches!(
            errors[0].too_large,
            Some(TooLarge::Event { max: 60, .. })
        ));
        assert!(parse_many(&format!("[{small}]"), now(), &caps).is_ok());
        let array = parse_many(&format!("[{small},{big}]"), now(), &caps).unwrap_err();
        assert_eq!(array[0].id.as_deref(), Some("b"));
    }

    #[test]
    fn too_many_items_are_refused_naming_where_the_cap_was_passed() {
        let caps = SizeCaps {
            max_items: 6,
            ..SizeCaps::default()
        };
        // id, source, type and data are 4 members; data's 2 members make 6.
        let fits =
            serde_json::json!({"id": "a", "source": "s", "type": "t", "data": {"x": 1, "y": [] }});
        assert!(admit(fits, now(), &caps).is_ok());
        let over =
            serde_json::json!({"id": "b", "source": "s", "type": "t", "data": {"x": 1, "y": [0]}});
        let err = admit(over, now(), &caps).unwrap_err();
        assert_eq!(
            err.too_large,
            Some(TooLarge::Items {
                path: "data.y[0]".into(),
                max: 6
            })
        );
        assert!(err.reason.contains("ingest.max_items"), "{}", err.reason);
    }

    #[test]
    fn control_characters_in_strings_stay_valid() {
        let event = admit_str(
            r#"{"id":"c","source":"s","type":"omero.login.failed","data":{"user":"ro\r\not\u0000\u001b"}}"#,
        )
        .unwrap();
        let EventData::LoginFailed(failed) = event.data else {
            panic!()
        };
        assert_eq!(failed.user, "ro\r\not\0\u{1b}");
    }

    #[test]
    fn a_broadcast_extra_that_is_no_address_is_refused_with_its_index() {
        let text = r#"{"id":"b","source":"s","type":"herald.broadcast",
            "data":{"subject":"s","body":"b","extra":["a@example.org","not an address"]}}"#;
        let err = from_str(text, now()).unwrap_err();
        assert!(
            err.reason
                .starts_with("data.extra[1]: \"not an address\" is not a valid email address"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn array_batch_is_accepted() {
        let text = r#"[{"id":"a","source":"s","type":"t"},{"id":"b","source":"s","type":"t"}]"#;
        assert_eq!(
            parse_many(text, now(), &SizeCaps::default()).unwrap().len(),
            2
        );
    }
}
