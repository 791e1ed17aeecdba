//! Conversions from the engine's event and directory types to the WIT types a rule sees.

use serde_json::{Map, Value};

use super::bindings::herald::rule::types as wit;
use crate::directory;
use crate::event::{self, EventData};

/// The event as the rule receives it.
pub fn event(ev: &event::Event) -> wit::Event {
    wit::Event {
        id: ev.id.clone(),
        kind: ev.kind.clone(),
        source: ev.source.clone(),
        time: ev.time_rfc3339(),
        time_unix_ms: ev.time.timestamp_millis(),
        data: payload(&ev.data),
        data_json: ev.data_json.to_string(),
    }
}

fn payload(data: &EventData) -> wit::Payload {
    use wit::Payload as P;
    match data {
        EventData::ServerUp(d) => P::ServerUp(wit::ServerUp {
            server: d.server.clone(),
            version: d.version.clone(),
        }),
        EventData::ServerDown(d) => P::ServerDown(wit::ServerDown {
            server: d.server.clone(),
            reason: d.reason.clone(),
        }),
        EventData::LoginFailed(d) => P::LoginFailed(wit::LoginFailed {
            user: d.user.clone(),
            remote_addr: d.remote_addr.clone(),
            user_agent: d.user_agent.clone(),
        }),
        EventData::UserCreated(d) => P::UserCreated(wit::UserCreated {
            user: user(&d.user),
            groups: d.groups.iter().map(group).collect(),
        }),
        EventData::GroupCreated(d) => P::GroupCreated(wit::GroupCreated {
            group: group(&d.group),
        }),
        EventData::CommentAdded(d) => P::CommentAdded(comment_added(d)),
        EventData::WebError(d) => P::WebError(web_error(d)),
        EventData::Broadcast(d) => P::Broadcast(broadcast(d)),
        EventData::Tick(d) => P::Tick(wit::Tick {
            schedule: d.schedule.clone(),
            rule: d.rule.clone(),
        }),
        EventData::Custom(v) => P::Custom(v.to_string()),
    }
}

fn user(u: &event::User) -> wit::User {
    wit::User {
        id: u.id,
        name: u.name.clone(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        email: u.email.clone(),
    }
}

fn group(g: &event::Group) -> wit::Group {
    wit::Group {
        id: g.id,
        name: g.name.clone(),
    }
}

fn comment_added(d: &event::CommentAdded) -> wit::CommentAdded {
    wit::CommentAdded {
        comment: wit::Comment {
            id: d.comment.id,
            text: d.comment.text.clone(),
            owner: user(&d.comment.owner),
        },
        links: d
            .links
            .iter()
            .map(|o| wit::ObjectRef {
                kind: o.kind.clone(),
                id: o.id,
                name: o.name.clone(),
                owner: o.owner.as_ref().map(user),
            })
            .collect(),
    }
}

fn web_error(d: &event::WebError) -> wit::WebError {
    wit::WebError {
        status: d.status,
        method: d.method.clone(),
        path: d.path.clone(),
        url: d.url.clone(),
        host: d.host.clone(),
        referer: d.referer.clone(),
        user_agent: d.user_agent.clone(),
        remote_addr: d.remote_addr.clone(),
        internal_ip: d.internal_ip,
        exception: d.exception.as_ref().map(|e| wit::ExceptionInfo {
            kind: e.kind.clone(),
            value: e.value.clone(),
            traceback: e.traceback.clone(),
        }),
        request: d.request.as_ref().map(|r| wit::RequestInfo {
            get: entries(&r.get),
            post: entries(&r.post),
            cookies: entries(&r.cookies),
            meta: entries(&r.meta),
        }),
    }
}

/// Dictionary entries in their order; strings as they are, other values as JSON.
fn entries(map: &Map<String, Value>) -> Vec<wit::Entry> {
    map.iter()
        .map(|(key, value)| wit::Entry {
            key: key.clone(),
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

fn broadcast(d: &event::Broadcast) -> wit::Broadcast {
    wit::Broadcast {
        subject: d.subject.clone(),
        body: d.body.clone(),
        html: d.html.clone(),
        everyone: d.everyone,
        inactive: d.inactive,
        user_ids: d.user_ids.clone(),
        user_names: d.user_names.clone(),
        group_ids: d.group_ids.clone(),
        group_names: d.group_names.clone(),
        extra: d.extra.clone(),
    }
}

/// A directory user as the rule sees it.
pub fn dir_user(u: &directory::User) -> wit::User {
    wit::User {
        id: u.id,
        name: u.name().to_owned(),
        first_name: u.first_name().map(str::to_owned),
        last_name: u.last_name().map(str::to_owned),
        email: u.email().map(str::to_owned),
    }
}

/// A directory group as the rule sees it.
pub fn dir_group(g: &directory::Group) -> wit::Group {
    wit::Group {
        id: g.id,
        name: g.name.clone(),
    }
}
