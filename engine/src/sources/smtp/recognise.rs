//! Recognition: OMERO's stock mails (fixed subjects and bodies) read back as the typed events they stand for.

use serde_json::{Value, json};

use crate::directory::Directory;
use crate::event::types;

/// OMERO.server's subject prefix and default body (`MailSender`).
const PREFIX: &str = "[OMERO] ";
const DEFAULT_BODY: &str = "Automated email sent by the OMERO server.";
/// OMERO.web's (Django's `EMAIL_SUBJECT_PREFIX`): no space after it.
const WEB_PREFIX: &str = "[OMERO.web - admin notification]";

/// A typed event a stock mail stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognised {
    pub kind: &'static str,
    pub data: Value,
    /// What makes it unique in OMERO (`<type>/<object id>`), when the mail names an object.
    pub key: Option<String>,
}

/// What one message is: the events of a stock mail, or nothing recognised.
/// `text` has LF line ends; `server` names the sending host (the client's EHLO name).
pub fn recognise(subject: &str, text: &str, server: &str, dir: &Directory) -> Vec<Recognised> {
    if let Some(rest) = subject.strip_prefix(WEB_PREFIX) {
        return web_error(rest, text).into_iter().collect();
    }
    let Some(rest) = subject.strip_prefix(PREFIX) else {
        return Vec::new();
    };
    let plain = |kind, data| {
        vec![Recognised {
            kind,
            data,
            key: None,
        }]
    };
    match rest {
        "Server started" if is_default(text) => plain(types::SERVER_UP, json!({"server": server})),
        "Server shutdown" if is_default(text) => {
            plain(types::SERVER_DOWN, json!({"server": server}))
        }
        _ => login_failed(rest, text)
            .map(|user| plain(types::LOGIN_FAILED, json!({"user": user})))
            .unwrap_or_else(|| inserted(rest, text, dir)),
    }
}

fn is_default(text: &str) -> bool {
    text.trim_end_matches('\n') == DEFAULT_BODY
}

/// `Login failed for '<user>'` with the default body: the user name.
fn login_failed(rest: &str, text: &str) -> Option<String> {
    let user = rest
        .strip_prefix("Login failed for '")?
        .strip_suffix('\'')?;
    is_default(text).then(|| user.to_owned())
}

/// `INSERT <Class> notification` with `Modified objects:` lines: one event per object.
fn inserted(rest: &str, text: &str, dir: &Directory) -> Vec<Recognised> {
    let (kind, class) = match rest {
        "INSERT Experimenter notification" => (types::USER_CREATED, "ome.model.meta.Experimenter"),
        "INSERT ExperimenterGroup notification" => {
            (types::GROUP_CREATED, "ome.model.meta.ExperimenterGroup")
        }
        "INSERT CommentAnnotation notification" => (
            types::COMMENT_ADDED,
            "ome.model.annotations.CommentAnnotation",
        ),
        _ => return Vec::new(),
    };
    let Some(ids) = object_ids(text, class) else {
        return Vec::new();
    };
    ids.into_iter()
        .map(|id| Recognised {
            kind,
            data: object_data(kind, id, dir),
            key: Some(format!("{kind}/{id}")),
        })
        .collect()
}

/// The most objects one stock mail is read as: OMERO sends one mail per saved batch, and a
/// mail listing more (a crafted one) stays `mail.received`, so it cannot make an event each.
const MAX_OBJECTS: usize = 1000;

/// The ids of `class <class>:<id> - INSERT` lines after `Modified objects:`; `None` when the
/// body has any other line (then it is not the stock mail), or more than [`MAX_OBJECTS`].
fn object_ids(text: &str, class: &str) -> Option<Vec<i64>> {
    let mut lines = text.lines();
    (lines.next()? == "Modified objects:").then_some(())?;
    let prefix = format!("class {class}:");
    let ids: Vec<i64> = lines
        .filter(|line| !line.is_empty())
        .take(MAX_OBJECTS + 1)
        .map(|line| {
            line.strip_prefix(&prefix)?
                .strip_suffix(" - INSERT")?
                .parse()
                .ok()
        })
        .collect::<Option<_>>()?;
    (!ids.is_empty() && ids.len() <= MAX_OBJECTS).then_some(ids)
}

/// The typed data for one inserted object, filled in from the directory where it knows the id.
fn object_data(kind: &str, id: i64, dir: &Directory) -> Value {
    match kind {
        types::USER_CREATED => {
            let user = dir.user_by_id(id).map_or_else(
                || json!({"id": id, "name": ""}),
                |u| serde_json::to_value(u).unwrap_or_else(|_| json!({"id": id, "name": ""})),
            );
            let groups: Vec<Value> = dir
                .groups_of(id)
                .iter()
                .map(|g| json!({"id": g.id, "name": g.name}))
                .collect();
            json!({"user": user, "groups": groups})
        }
        types::GROUP_CREATED => {
            let name = dir.group_by_id(id).map_or("", |g| g.name.as_str());
            json!({"group": {"id": id, "name": name}})
        }
        // The mail names the comment only: its text, owner and image are not in it.
        _ => {
            json!({"comment": {"id": id, "text": "", "owner": {"id": -1, "name": ""}}, "links": []})
        }
    }
}

/// Django's admin mail: a 5xx report or a broken-link (404) report.
fn web_error(rest: &str, text: &str) -> Option<Recognised> {
    let data = match rest.strip_prefix("Broken ") {
        Some(link) => broken_link(link, text)?,
        None => server_error(rest, text)?,
    };
    Some(Recognised {
        kind: types::WEB_ERROR,
        data,
        key: None,
    })
}

/// `Broken [INTERNAL ]link on <host>` with `Referrer:`, `Requested URL:`, `User agent:`, `IP address:`.
fn broken_link(link: &str, text: &str) -> Option<Value> {
    let host = link
        .strip_prefix("INTERNAL link on ")
        .or_else(|| link.strip_prefix("link on "))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::to_owned)
    };
    let path = field("Requested URL: ")?;
    Some(json!({
        "status": 404, "method": "GET", "path": path, "url": format!("https://{host}{path}"),
        "host": host, "referer": field("Referrer: "), "user_agent": field("User agent: "),
        "remote_addr": field("IP address: "),
    }))
}

/// `ERROR (EXTERNAL IP): <Reason>: <path>` with Django's technical 500 text.
fn server_error(rest: &str, text: &str) -> Option<Value> {
    let (internal, rest) = match rest.strip_prefix("ERROR (EXTERNAL IP): ") {
        Some(rest) => (false, rest),
        None => (true, rest.strip_prefix("ERROR (internal IP): ")?),
    };
    let (reason, path) = rest.split_once(": ")?;
    let status = status_of(reason);
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name));
    let url = field("Request URL: ").unwrap_or(path).to_owned();
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let exception = exception(text, path);
    Some(json!({
        "status": status, "method": field("Request Method: ").unwrap_or("GET"), "path": path,
        "url": url, "host": host, "internal_ip": internal, "exception": exception,
    }))
}

/// The reason phrases Django logs for 5xx responses.
fn status_of(reason: &str) -> u16 {
    match reason {
        "Not Implemented" => 501,
        "Bad Gateway" => 502,
        "Service Unavailable" => 503,
        "Gateway Timeout" => 504,
        _ => 500,
    }
}

/// The exception type and value (`<Type> at <path>` and the line after) and the traceback.
fn exception(text: &str, path: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    let marker = format!(" at {path}");
    let Some(at) = lines.iter().position(|l| l.ends_with(&marker)) else {
        return Value::Null;
    };
    let kind = lines[at].strip_suffix(&marker).unwrap_or_default();
    let value = lines.get(at + 1).copied().unwrap_or_default();
    let traceback: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("Traceback "))
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    json!({"type": kind, "value": value, "traceback": traceback.join("\n")})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/recordings/directory.yaml");
        Directory::load(&path).unwrap()
    }

    /// The subject (unfolded) and LF body of one golden mail of the default rules (OMERO's texts).
    fn golden(case: &str, prefix: &str) -> (String, String) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/recordings")
            .join(case)
            .join("expected");
        let file = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .min()
            .unwrap();
        let bytes = std::fs::read(file).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        let text = parsed.body_text(0).unwrap().replace("\r\n", "\n");
        (parsed.subject().unwrap().to_owned(), text)
    }

    fn one(case: &str, prefix: &str) -> Recognised {
        let (subject, text) = golden(case, prefix);
        let mut found = recognise(&subject, &text, "omero.example.org", &dir());
        assert_eq!(found.len(), 1, "{subject}: {found:?}");
        found.remove(0)
    }

    #[test]
    fn server_up_down_and_failed_login_are_recognised_from_the_stock_texts() {
        let up = one("server-up-down", "up-1");
        assert_eq!(up.kind, types::SERVER_UP);
        assert_eq!(up.data, json!({"server": "omero.example.org"}));
        assert_eq!(one("server-up-down", "down-1").kind, types::SERVER_DOWN);
        let failed = one("failed-login-stock", "fl-1");
        assert_eq!(failed.kind, types::LOGIN_FAILED);
        assert_eq!(failed.data, json!({"user": "root"}));
    }

    #[test]
    fn inserted_objects_give_one_event_each_with_the_directory_filled_in() {
        let user = one("new-user-group", "nu-1--new-user--alice");
        assert_eq!(user.kind, types::USER_CREATED);
        assert_eq!(user.key.as_deref(), Some("omero.user.created/52"));
        assert_eq!(user.data["user"]["id"], 52);
        let group = one("new-user-group", "ng-1");
        assert_eq!(group.kind, types::GROUP_CREATED);
        assert_eq!(group.data["group"]["id"], 9);
        let comment = one("new-comment", "nc-1");
        assert_eq!(comment.kind, types::COMMENT_ADDED);
        assert_eq!(comment.data["comment"]["id"], 901);
        // OMERO's quirk: the k-th mail of one transaction lists objects 1..k.
        let body = "Modified objects:\nclass ome.model.meta.Experimenter:52 - INSERT\n\
                    class ome.model.meta.Experimenter:53 - INSERT\n";
        let both = recognise(
            "[OMERO] INSERT Experimenter notification",
            body,
            "s",
            &dir(),
        );
        let keys: Vec<_> = both.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys, ["omero.user.created/52", "omero.user.created/53"]);
        for (kind, data) in [
            (types::USER_CREATED, &user.data),
            (types::GROUP_CREATED, &group.data),
            (types::COMMENT_ADDED, &comment.data),
        ] {
            crate::event::EventData::parse(kind, data).unwrap();
        }
    }

    #[test]
    fn a_mail_listing_more_objects_than_the_cap_is_not_a_stock_mail() {
        let body = |count: usize| {
            let lines: String = (0..count)
                .map(|id| format!("class ome.model.meta.Experimenter:{id} - INSERT\n"))
                .collect();
            format!("Modified objects:\n{lines}")
        };
        let subject = "[OMERO] INSERT Experimenter notification";
        let at_cap = recognise(subject, &body(MAX_OBJECTS), "s", &dir());
        assert_eq!(at_cap.len(), MAX_OBJECTS);
        assert!(recognise(subject, &body(MAX_OBJECTS + 1), "s", &dir()).is_empty());
    }

    #[test]
    fn web_errors_carry_status_path_and_traceback() {
        let err = one("web-error", "we-1--web-error--ops");
        assert_eq!(err.kind, types::WEB_ERROR);
        assert_eq!(err.data["status"], 500);
        assert_eq!(err.data["path"], "/webclient/save/");
        assert_eq!(err.data["method"], "POST");
        assert_eq!(err.data["exception"]["type"], "ValueError");
        assert!(
            err.data["exception"]["traceback"]
                .as_str()
                .unwrap()
                .starts_with(
                    "Traceback (most recent call last):\n  File \"/opt/omero/web/views.py\""
                )
        );
        // The status is what the mail says: its reason phrase.
        let internal = one("web-error", "we-2--web-error--ops");
        assert_eq!(internal.data["status"], 500);
        assert_eq!(internal.data["internal_ip"], true);
        let subject = "[OMERO.web - admin notification]ERROR (EXTERNAL IP): Bad Gateway: /api/";
        let bad_gateway = recognise(subject, "Bad Gateway: /api/\n", "s", &dir()).remove(0);
        assert_eq!(bad_gateway.data["status"], 502);
        let broken = one("web-error", "we-5--web-error--ops");
        assert_eq!(broken.data["status"], 404);
        assert_eq!(broken.data["path"], "/webclient/gone");
        for data in [&err.data, &internal.data, &bad_gateway.data, &broken.data] {
            crate::event::EventData::parse(types::WEB_ERROR, data).unwrap();
        }
    }

    #[test]
    fn near_misses_are_not_stock_mail() {
        let d = dir();
        assert!(recognise("[OMERO] Server started", "Hello\n", "s", &d).is_empty());
        assert!(recognise("Server started", DEFAULT_BODY, "s", &d).is_empty());
        assert!(recognise("[OMERO] Login failed for 'x", DEFAULT_BODY, "s", &d).is_empty());
        let extra = "Modified objects:\nclass ome.model.meta.Experimenter:1 - INSERT\nP.S. hi\n";
        assert!(recognise("[OMERO] INSERT Experimenter notification", extra, "s", &d).is_empty());
        assert!(recognise("[OMERO] OMERO - Reset password", "new password: x", "s", &d).is_empty());
    }
}
