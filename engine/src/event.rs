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

    /// Every type Herald defines.
    pub const ALL: [&str; 9] = [
        SERVER_UP,
        SERVER_DOWN,
        LOGIN_FAILED,
        USER_CREATED,
        GROUP_CREATED,
        COMMENT_ADDED,
        WEB_ERROR,
        BROADCAST,
        TICK,
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
            types::BROADCAST => D::Broadcast(typed(data)?),
            types::TICK => D::Tick(typed(data)?),
            _ => D::Custom(data.clone()),
        })
    }
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
/// batch), or JSON Lines. Every bad event is reported, with its line.
pub fn parse_many(text: &str, now: DateTime<Utc>) -> Result<Vec<Event>, Vec<InvalidEvent>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => collect(items.into_iter().map(|v| (None, Ok(v))), now),
        Ok(value) => collect([(None, Ok(value))], now),
        Err(_) => collect(jsonl_lines(text), now),
    }
}

type Item = (Option<usize>, Result<Value, String>);

fn jsonl_lines(text: &str) -> Vec<Item> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let value = serde_json::from_str(line).map_err(|err| format!("not valid JSON: {err}"));
            (Some(n + 1), value)
        })
        .collect()
}

fn collect(
    items: impl IntoIterator<Item = Item>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Vec<InvalidEvent>> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (line, value) in items {
        let parsed = value
            .map_err(|reason| invalid(None, &reason))
            .and_then(|v| from_json(v, now));
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

fn invalid(id: Option<&str>, reason: &str) -> InvalidEvent {
    InvalidEvent {
        line: None,
        id: id.map(str::to_owned),
        reason: reason.to_owned(),
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
        let errors = parse_many(text, now()).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].line, Some(3));
        assert!(errors[0].reason.starts_with("not valid JSON"));
        assert_eq!(errors[1].line, Some(4));
    }

    #[test]
    fn array_batch_is_accepted() {
        let text = r#"[{"id":"a","source":"s","type":"t"},{"id":"b","source":"s","type":"t"}]"#;
        assert_eq!(parse_many(text, now()).unwrap().len(), 2);
    }
}
