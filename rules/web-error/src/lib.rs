//! Default rule `web-error`: OMERO.web's Django error mail (500s) and broken-link mail (404s) to the web admins.
//!
//! # Server errors (status 500 and above)
//!
//! Django's `AdminEmailHandler`. Subject
//! `<prefix>ERROR (EXTERNAL IP): Internal Server Error: <path>` (`internal`
//! instead of `EXTERNAL` when `internal_ip`; CR and LF shown as `\r` and `\n`,
//! at most 989 characters after the prefix, as Django's `format_subject`; any
//! other control character becomes a space).
//! Body: the log line, a blank line, then the text report, modelled on
//! Django's `technical_500.txt`, without the lines Herald cannot know
//! (Django and Python versions, installed apps, settings, USER, FILES):
//!
//! ```text
//! Internal Server Error: <path>
//!
//! <ExceptionType> at <path>
//! <exception value>
//!
//! Request Method: <method>
//! Request URL: <url>
//! Server time: <event time, RFC 2822, e.g. Mon, 23 Nov 2026 09:00:00 +0000>
//!
//! Traceback (most recent call last):
//! <traceback, without its own "Traceback (most recent call last):" line>
//!
//! Exception Type: <ExceptionType> at <path>
//! Exception Value: <exception value>
//!
//! Request information:
//! GET: No GET data
//!
//! POST:
//! n = 'x'
//! password = '********************'
//!
//! COOKIES: No cookie data
//!
//! META:
//! HTTP_HOST = 'omero.example.org'
//! ```
//!
//! - Without an exception: `Report` and `No exception message supplied` in
//!   the first two lines, and no Traceback or Exception lines (as Django).
//! - An empty traceback leaves out the Traceback and Exception lines.
//! - Entries are `key = <Python repr of the value>`; GET, POST and COOKIES
//!   keep the order they were sent in, META is sorted by key (Django's
//!   `dictsort`). Empty sections read `GET: No GET data`, `POST: No POST
//!   data`, `COOKIES: No cookie data`, and a bare `META:`.
//! - Every entry whose key matches
//!   `API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE` (case-insensitive,
//!   anywhere in the key: Django's `SafeExceptionReporterFilter` pattern, so
//!   `HTTP_COOKIE` and `HTTP_AUTHORIZATION` in META) shows
//!   `'********************'`, Django's cleansed substitute, in all four
//!   sections, and so does the session cookie (`session_cookie_name`, default
//!   `sessionid`) in COOKIES. Django itself cleanses POST only for views
//!   marked sensitive; Herald cleanses every section, to be safe.
//! - At most 100 entries are shown per section, then `(N more entries not shown)`.
//! - A key or value longer than 8 KiB (`safe::BODY_VALUE_BYTES`) is cut there,
//!   with a note of how much was cut (a value before its repr is taken); an
//!   entry whose key is that long is cleansed.
//! - Without request data in the event: `Request data not supplied`.
//!
//! # Broken links (status 404)
//!
//! Django's `BrokenLinkEmailsMiddleware` (OMERO.web sets MANAGERS = ADMINS).
//! Sent only with a referer, and not when: the referer is the URL itself
//! (same host or relative, same path: a bot); the referer is external and
//! contains `?` (a search engine); or it is an APPEND_SLASH redirect (the URL
//! ends with `/` and the referer is the URL, or the path, without it).
//! Subject `<prefix>Broken INTERNAL link on <host>` when the referer starts
//! with `http(s)://<host>/`, else `<prefix>Broken link on <host>`. Body
//! `Referrer: <referer>\nRequested URL: <path>\nUser agent: <ua>\nIP address: <ip>\n`
//! (Django prints the request's full path, and `<none>` for a missing user agent or IP).
//!
//! Other statuses send nothing. There is no enriched mode: this is Django's
//! mail, one message to all `web_admins` together.

use herald_sdk::{
    Entry, Event, ExceptionInfo, Message, Payload, Recipient, RequestInfo, Rule, WebError, config,
    export_rule, safe,
};
use serde::Deserialize;

/// Django's `EMAIL_SUBJECT_PREFIX` as OMERO.web sets it (no trailing space).
const DEFAULT_PREFIX: &str = "[OMERO.web - admin notification]";

/// Django's stand-in for a sensitive value.
const CLEANSED: &str = "********************";

/// Django's `SafeExceptionReporterFilter.hidden_settings`, matched case-insensitively
/// anywhere in a key: `AUTH` covers `HTTP_AUTHORIZATION`, `HTTP_COOKIE` the cookie header.
const HIDDEN: [&str; 8] = [
    "API",
    "AUTH",
    "TOKEN",
    "KEY",
    "SECRET",
    "PASS",
    "SIGNATURE",
    "HTTP_COOKIE",
];

/// The most entries shown per section (GET, POST, COOKIES, META); the rest are counted.
const MAX_ENTRIES: usize = 100;

/// Django's default `SESSION_COOKIE_NAME`, which OMERO.web keeps.
const DEFAULT_SESSION_COOKIE: &str = "sessionid";

/// The rule's `config` keys. There is no `mode`: this rule has no enriched mode.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `omero.web.admins`: a list of `[name, email]` pairs. Default empty,
    /// which sends nothing.
    web_admins: Vec<(String, String)>,
    /// Prepended to every subject as is; default
    /// `[OMERO.web - admin notification]`, with no space after it.
    subject_prefix: String,
    /// The session cookie's name (Django's `SESSION_COOKIE_NAME`), always
    /// cleansed in COOKIES; default `sessionid`.
    session_cookie_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            web_admins: Vec::new(),
            subject_prefix: DEFAULT_PREFIX.to_owned(),
            session_cookie_name: DEFAULT_SESSION_COOKIE.to_owned(),
        }
    }
}

pub struct WebErrorRule;

impl Rule for WebErrorRule {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::WebError(error) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        if settings.web_admins.is_empty() {
            return Ok(Vec::new());
        }
        let mail = match error.status {
            500.. => Some(server_error(error, event.time_unix_ms, &settings)),
            404 => broken_link(error),
            _ => None,
        };
        Ok(mail
            .map(|(subject, body)| to_admins(&settings, subject, body))
            .into_iter()
            .collect())
    }
}

/// One message to every web admin together, as Django's `mail_admins`.
fn to_admins(settings: &Settings, subject: String, body: String) -> Message {
    let subject = format!("{}{subject}", settings.subject_prefix);
    let mut mail = Message::new(subject, body).together();
    for (_, email) in &settings.web_admins {
        mail = mail.to(Recipient::Address(email.clone()));
    }
    mail
}

/// The subject and body of a 5xx report.
fn server_error(error: &WebError, time_unix_ms: i64, settings: &Settings) -> (String, String) {
    let ip = if error.internal_ip {
        "internal"
    } else {
        "EXTERNAL"
    };
    let log_line = format!("Internal Server Error: {}", error.path);
    let subject = format_subject(&format!("ERROR ({ip} IP): {log_line}"));
    let body = format!(
        "{log_line}\n\n{}",
        technical_report(error, time_unix_ms, settings)
    );
    (subject, body)
}

/// Django's `AdminEmailHandler.format_subject`: no line breaks, at most 989
/// characters; any other control character (NUL, tab, ESC) becomes a space.
fn format_subject(subject: &str) -> String {
    let shown: String = subject
        .chars()
        .take(989 * 2)
        .collect::<String>()
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .chars()
        .take(989)
        .collect();
    safe::fold_controls(&shown)
}

/// The text report after the log line (see the crate docs for the format).
fn technical_report(error: &WebError, time_unix_ms: i64, settings: &Settings) -> String {
    let exception = error.exception.as_ref();
    let kind = exception.map(|e| e.kind.as_str()).filter(|k| !k.is_empty());
    let value = exception
        .map(|e| e.value.as_str())
        .filter(|v| !v.is_empty());
    let mut out = format!(
        "{} at {}\n{}\n\nRequest Method: {}\nRequest URL: {}\nServer time: {}\n",
        kind.unwrap_or("Report"),
        error.path,
        value.unwrap_or("No exception message supplied"),
        error.method,
        error.url,
        rfc2822(time_unix_ms),
    );
    if let Some(exception) = exception {
        out.push_str(&traceback_section(exception, &error.path));
    }
    out.push('\n');
    out.push_str(&request_section(error.request.as_ref(), settings));
    out
}

/// `Traceback (most recent call last):` with the frames, then the
/// `Exception Type` and `Exception Value` lines; empty without a traceback.
fn traceback_section(exception: &ExceptionInfo, path: &str) -> String {
    let header = "Traceback (most recent call last):";
    let frames = exception.traceback.trim_end();
    let frames = frames.strip_prefix(header).unwrap_or(frames);
    let frames = frames.trim_start_matches(['\r', '\n']);
    if frames.is_empty() {
        return String::new();
    }
    let mut out = format!("\n{header}\n{frames}\n\n");
    if !exception.kind.is_empty() {
        out.push_str(&format!("Exception Type: {} at {path}\n", exception.kind));
        if !exception.value.is_empty() {
            out.push_str(&format!("Exception Value: {}\n", exception.value));
        }
    }
    out
}

/// `Request information:` with GET, POST, COOKIES and META, cleansed.
fn request_section(request: Option<&RequestInfo>, settings: &Settings) -> String {
    let Some(request) = request else {
        return "Request data not supplied\n".to_owned();
    };
    let mut meta: Vec<&Entry> = request.meta.iter().collect();
    meta.sort_by(|a, b| a.key.cmp(&b.key));
    let hidden = |entry: &Entry| is_hidden(&entry.key);
    let session = &settings.session_cookie_name;
    let hidden_cookie = |entry: &Entry| entry.key == *session || is_hidden(&entry.key);
    let mut out = String::from("Request information:\n");
    out.push_str(&dict(
        "GET",
        request.get.iter(),
        Some("No GET data"),
        hidden,
    ));
    out.push_str("\n\n");
    out.push_str(&dict(
        "POST",
        request.post.iter(),
        Some("No POST data"),
        hidden,
    ));
    out.push_str("\n\n");
    out.push_str(&dict(
        "COOKIES",
        request.cookies.iter(),
        Some("No cookie data"),
        hidden_cookie,
    ));
    out.push_str("\n\n");
    out.push_str(&dict("META", meta.into_iter(), None, hidden));
    out.push('\n');
    out
}

/// `NAME:` then `\nkey = 'value'` per entry (Django's substitute where `hidden`
/// says so), or ` <empty text>` when there is none.
fn dict<'a>(
    name: &str,
    entries: impl Iterator<Item = &'a Entry>,
    empty: Option<&str>,
    hidden: impl Fn(&Entry) -> bool,
) -> String {
    let mut out = format!("{name}:");
    let mut shown = 0;
    let mut hidden_count = 0;
    for entry in entries {
        if shown == MAX_ENTRIES {
            hidden_count += 1;
            continue;
        }
        shown += 1;
        let value = if hidden(entry) {
            CLEANSED
        } else {
            entry.value.as_str()
        };
        let value = safe::body_value(value);
        let key = safe::body_value(&entry.key);
        out.push_str(&format!("\n{key} = {}", py_repr(&value)));
    }
    if let (0, Some(empty)) = (shown, empty) {
        out.push_str(&format!(" {empty}"));
    }
    if hidden_count > 0 {
        out.push_str(&format!("\n({hidden_count} more entries not shown)"));
    }
    out
}

/// Whether a key looks sensitive: it holds one of [`HIDDEN`], in any case. A key
/// too long to show whole (over `safe::BODY_VALUE_BYTES`) counts as sensitive.
fn is_hidden(key: &str) -> bool {
    if key.len() > safe::BODY_VALUE_BYTES {
        return true;
    }
    let key = key.to_uppercase();
    HIDDEN.iter().any(|word| key.contains(word))
}

/// Python's `repr()` of a string: single quotes unless the text has a single
/// quote and no double quote; backslashes, the quote and non-printable
/// characters escaped.
fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !py_printable(c) => py_escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()`, close enough: no controls, no separators
/// but the space, no invisible format characters.
fn py_printable(c: char) -> bool {
    let invisible = matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}');
    !(c.is_control() || (c.is_whitespace() && c != ' ') || invisible)
}

/// Append `\xNN`, `\uNNNN` or `\UNNNNNNNN`, as Python writes them.
fn py_escape(out: &mut String, c: char) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = c as u32;
    let (prefix, digits) = match n {
        0..=0xff => ('x', 2),
        0x100..=0xffff => ('u', 4),
        _ => ('U', 8),
    };
    out.push('\\');
    out.push(prefix);
    for shift in (0..digits).rev() {
        out.push(char::from(HEX[(n >> (shift * 4)) as usize & 0xf]));
    }
}

/// Unix milliseconds as Django's `date:"r"` in UTC: `Mon, 23 Nov 2026 09:00:00 +0000`.
fn rfc2822(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The subject and body of a 404 worth reporting, or `None`.
fn broken_link(error: &WebError) -> Option<(String, String)> {
    let referer = error.referer.as_deref().unwrap_or("");
    if is_ignorable(error, referer) {
        return None;
    }
    let internal = if is_internal(&error.host, referer) {
        "INTERNAL "
    } else {
        ""
    };
    let subject = format_subject(&format!("Broken {internal}link on {}", error.host));
    let body = format!(
        "Referrer: {}\nRequested URL: {}\nUser agent: {}\nIP address: {}\n",
        safe::body_value(referer),
        safe::body_value(&error.path),
        safe::body_value(error.user_agent.as_deref().unwrap_or("<none>")),
        safe::body_value(error.remote_addr.as_deref().unwrap_or("<none>")),
    );
    Some((subject, body))
}

/// Django's `is_ignorable_request`, with its APPEND_SLASH check made to work
/// for absolute referers.
fn is_ignorable(error: &WebError, referer: &str) -> bool {
    if referer.is_empty() {
        return true;
    }
    let without_slash = |s: &str| s.strip_suffix('/').map(str::to_owned);
    let append_slash = [&error.url, &error.path]
        .into_iter()
        .any(|u| without_slash(u).as_deref() == Some(referer));
    if append_slash {
        return true;
    }
    if !is_internal(&error.host, referer) && referer.contains('?') {
        return true;
    }
    let (netloc, path) = split_url(referer);
    referer == error.url || ((netloc.is_empty() || netloc == error.host) && path == error.path)
}

/// Django's `is_internal_request`: the referer starts with `http(s)://<host>/`.
fn is_internal(host: &str, referer: &str) -> bool {
    let rest = referer
        .strip_prefix("https://")
        .or_else(|| referer.strip_prefix("http://"));
    rest.and_then(|r| r.strip_prefix(host))
        .is_some_and(|r| r.starts_with('/'))
}

/// The network location and path of a URL, as Python's `urlsplit` reads them.
fn split_url(url: &str) -> (&str, &str) {
    let end = [url.find('?'), url.find('#')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(url.len());
    let url = &url[..end];
    let after_scheme = match url.find("://") {
        Some(i)
            if url[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            &url[i + 1..]
        }
        _ => url,
    };
    match after_scheme.strip_prefix("//") {
        Some(rest) => match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
        None => ("", after_scheme),
    }
}

export_rule!(WebErrorRule, config = Settings);

#[cfg(test)]
mod tests;
