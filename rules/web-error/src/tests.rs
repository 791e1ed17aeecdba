//! Unit tests for the `web-error` rule.

use super::*;
use herald_sdk::testing::{TestHost, event};
use serde_json::json;

const ADMINS: &str = r#"[["Web Admin", "webadmin@example.org"], ["Ops", "ops@example.org"]]"#;

fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
    pairs
        .iter()
        .map(|(k, v)| Entry {
            key: (*k).into(),
            value: (*v).into(),
        })
        .collect()
}

fn base(status: u16, path: &str) -> WebError {
    WebError {
        status,
        method: "GET".into(),
        path: path.into(),
        url: format!("https://omero.example.org{path}"),
        host: "omero.example.org".into(),
        referer: None,
        user_agent: Some("Mozilla/5.0".into()),
        remote_addr: Some("198.51.100.4".into()),
        internal_ip: false,
        exception: None,
        request: None,
    }
}

fn not_found(path: &str, referer: Option<&str>) -> WebError {
    WebError {
        referer: referer.map(Into::into),
        ..base(404, path)
    }
}

fn run_with(config: serde_json::Value, error: WebError) -> Vec<Message> {
    TestHost::new().config(config).install();
    let mut ev = event("omero.web.error", Payload::WebError(error));
    ev.time = "2026-11-23T09:00:00Z".into();
    ev.time_unix_ms = 1_795_424_400_000;
    WebErrorRule::handle(ev).unwrap()
}

fn run(error: WebError) -> Vec<Message> {
    let admins: serde_json::Value = serde_json::from_str(ADMINS).unwrap();
    run_with(json!({ "web_admins": admins }), error)
}

fn value_error() -> WebError {
    WebError {
        method: "POST".into(),
        exception: Some(ExceptionInfo {
            kind: "ValueError".into(),
            value: "invalid literal for int() with base 10: 'x'".into(),
            traceback: "Traceback (most recent call last):\n  File \"/opt/omero/web/views.py\", line 10, in save\n    int(request.POST['n'])\nValueError: invalid literal for int() with base 10: 'x'\n".into(),
        }),
        request: Some(RequestInfo {
            get: vec![],
            post: entries(&[("n", "x"), ("password", "hunter2"), ("csrfmiddlewaretoken", "abc123")]),
            cookies: entries(&[("sessionid", "s3cr3t"), ("theme", "dark")]),
            meta: entries(&[("REMOTE_ADDR", "198.51.100.4"), ("HTTP_HOST", "omero.example.org"), ("SECRET_KEY", "k"),
                ("HTTP_COOKIE", "sessionid=s3cr3t; theme=dark"), ("HTTP_AUTHORIZATION", "Basic cm9vdDpvbWVybw==")]),
        }),
        ..base(500, "/webclient/save/")
    }
}

#[test]
fn server_error_full_report_with_cleansing() {
    let out = run(value_error());
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]ERROR (EXTERNAL IP): Internal Server Error: /webclient/save/"
    );
    assert_eq!(
        out[0].text,
        "Internal Server Error: /webclient/save/\n\
         \n\
         ValueError at /webclient/save/\n\
         invalid literal for int() with base 10: 'x'\n\
         \n\
         Request Method: POST\n\
         Request URL: https://omero.example.org/webclient/save/\n\
         Server time: Mon, 23 Nov 2026 09:00:00 +0000\n\
         \n\
         Traceback (most recent call last):\n\
         \x20 File \"/opt/omero/web/views.py\", line 10, in save\n\
         \x20   int(request.POST['n'])\n\
         ValueError: invalid literal for int() with base 10: 'x'\n\
         \n\
         Exception Type: ValueError at /webclient/save/\n\
         Exception Value: invalid literal for int() with base 10: 'x'\n\
         \n\
         Request information:\n\
         GET: No GET data\n\
         \n\
         POST:\n\
         n = 'x'\n\
         password = '********************'\n\
         csrfmiddlewaretoken = '********************'\n\
         \n\
         COOKIES:\n\
         sessionid = '********************'\n\
         theme = 'dark'\n\
         \n\
         META:\n\
         HTTP_AUTHORIZATION = '********************'\n\
         HTTP_COOKIE = '********************'\n\
         HTTP_HOST = 'omero.example.org'\n\
         REMOTE_ADDR = '198.51.100.4'\n\
         SECRET_KEY = '********************'\n"
    );
    for secret in ["hunter2", "abc123", "s3cr3t", "cm9vdDpvbWVybw"] {
        assert!(!out[0].text.contains(secret), "{secret} was mailed");
    }
    assert_eq!(out[0].html, None);
    assert_eq!(out[0].addressing, herald_sdk::Addressing::Together);
    assert_eq!(
        format!("{:?}", out[0].to).replace("Recipient::", ""),
        r#"[Address("webadmin@example.org"), Address("ops@example.org")]"#
    );
}

#[test]
fn cleansing_is_case_insensitive_and_covers_get_and_cookies() {
    let error = WebError {
        request: Some(RequestInfo {
            get: entries(&[
                ("api_key", "1"),
                ("Page", "2"),
                ("sig", "3"),
                ("Signature", "4"),
            ]),
            post: vec![],
            cookies: entries(&[("csrftoken", "t"), ("PassPhrase", "p")]),
            meta: vec![],
        }),
        ..value_error()
    };
    let text = &run(error)[0].text;
    assert!(text.contains(
        "GET:\napi_key = '********************'\nPage = '2'\nsig = '3'\nSignature = '********************'\n\n\
         POST: No POST data\n\n\
         COOKIES:\ncsrftoken = '********************'\nPassPhrase = '********************'\n\n\
         META:\n"
    ), "{text}");
    assert!(text.ends_with("META:\n"));
}

/// One key per word of the pattern, each holding only that word, so that dropping any
/// word from the pattern fails this test; and near misses that must stay in clear.
#[test]
fn each_hidden_word_alone_cleanses_its_entry() {
    let alone = [
        "X_API_VERSION",
        "x-auth-user",
        "csrftoken",
        "monkey",
        "client_secret",
        "passphrase",
        "Signature",
        "HTTP_COOKIE",
    ];
    let clear = [
        "Page",
        "sig",
        "theme",
        "HTTP_HOST",
        "cookie_consent",
        "sessionid2",
    ];
    let pairs: Vec<(&str, &str)> = alone.iter().chain(&clear).map(|k| (*k, "v4lue")).collect();
    let error = WebError {
        request: Some(RequestInfo {
            get: vec![],
            post: entries(&pairs),
            cookies: vec![],
            meta: vec![],
        }),
        ..value_error()
    };
    let text = &run(error)[0].text;
    for key in alone {
        assert!(
            text.contains(&format!("\n{key} = '********************'\n")),
            "{key} in clear:\n{text}"
        );
    }
    for key in clear {
        assert!(
            text.contains(&format!("\n{key} = 'v4lue'\n")),
            "{key} cleansed:\n{text}"
        );
    }
    // Each key above holds exactly one word of the pattern, in the pattern's order.
    assert_eq!(alone.len(), HIDDEN.len());
    for (key, word) in alone.iter().zip(HIDDEN) {
        let upper = key.to_uppercase();
        let words: Vec<&str> = HIDDEN
            .iter()
            .copied()
            .filter(|w| upper.contains(w))
            .collect();
        assert_eq!(words, [word], "{key} must hold {word} and no other word");
    }
}

#[test]
fn the_session_cookie_is_cleansed_by_its_configured_name() {
    let admins: serde_json::Value = serde_json::from_str(ADMINS).unwrap();
    let error = WebError {
        request: Some(RequestInfo {
            get: vec![],
            post: vec![],
            cookies: entries(&[("sessionid", "a"), ("omero_session", "b")]),
            meta: vec![],
        }),
        ..value_error()
    };
    let config = json!({"web_admins": admins, "session_cookie_name": "omero_session"});
    let text = &run_with(config, error)[0].text;
    assert!(
        text.contains("COOKIES:\nsessionid = 'a'\nomero_session = '********************'\n"),
        "{text}"
    );
}

#[test]
fn values_are_python_reprs() {
    assert_eq!(py_repr("x"), "'x'");
    assert_eq!(py_repr("it's"), "\"it's\"");
    assert_eq!(py_repr("'\""), "'\\'\"'");
    assert_eq!(
        py_repr("a\\b\n\t\u{1}\u{a0}é\u{2028}"),
        "'a\\\\b\\n\\t\\x01\\xa0é\\u2028'"
    );
}

#[test]
fn internal_ip_and_other_5xx() {
    let error = WebError {
        internal_ip: true,
        exception: Some(ExceptionInfo {
            kind: "ConnectionError".into(),
            value: "Ice timeout".into(),
            traceback: "Traceback (most recent call last):\nConnectionError: Ice timeout".into(),
        }),
        ..base(502, "/api/v0/")
    };
    let out = run(error);
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]ERROR (internal IP): Internal Server Error: /api/v0/"
    );
    assert_eq!(
        out[0].text,
        "Internal Server Error: /api/v0/\n\n\
         ConnectionError at /api/v0/\nIce timeout\n\n\
         Request Method: GET\nRequest URL: https://omero.example.org/api/v0/\n\
         Server time: Mon, 23 Nov 2026 09:00:00 +0000\n\n\
         Traceback (most recent call last):\nConnectionError: Ice timeout\n\n\
         Exception Type: ConnectionError at /api/v0/\nException Value: Ice timeout\n\n\
         Request data not supplied\n"
    );
}

#[test]
fn server_error_without_exception_is_a_report() {
    let out = run(base(503, "/x"));
    assert_eq!(
        out[0].text,
        "Internal Server Error: /x\n\nReport at /x\nNo exception message supplied\n\n\
         Request Method: GET\nRequest URL: https://omero.example.org/x\n\
         Server time: Mon, 23 Nov 2026 09:00:00 +0000\n\nRequest data not supplied\n"
    );
}

#[test]
fn subject_line_breaks_are_escaped() {
    let out = run(base(500, "/a\r\nBcc: x"));
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]ERROR (EXTERNAL IP): Internal Server Error: /a\\r\\nBcc: x"
    );
}

#[test]
fn not_found_without_referer_sends_nothing() {
    assert!(run(not_found("/webclient/missing", None)).is_empty());
    assert!(run(not_found("/webclient/missing", Some(""))).is_empty());
}

#[test]
fn not_found_from_a_search_engine_sends_nothing() {
    let error = not_found(
        "/webclient/old",
        Some("https://www.google.com/search?q=omero"),
    );
    assert!(run(error).is_empty());
}

#[test]
fn not_found_internal_referer() {
    let out = run(not_found(
        "/webclient/gone",
        Some("https://omero.example.org/webclient/"),
    ));
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]Broken INTERNAL link on omero.example.org"
    );
    assert_eq!(
        out[0].text,
        "Referrer: https://omero.example.org/webclient/\nRequested URL: /webclient/gone\n\
         User agent: Mozilla/5.0\nIP address: 198.51.100.4\n"
    );
    assert_eq!(out[0].addressing, herald_sdk::Addressing::Together);
    assert_eq!(out[0].to.len(), 2);
}

#[test]
fn internal_referer_with_query_still_reports() {
    let out = run(not_found(
        "/gone",
        Some("http://omero.example.org/webclient/?show=image-1"),
    ));
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]Broken INTERNAL link on omero.example.org"
    );
}

#[test]
fn not_found_external_referer() {
    let out = run(not_found(
        "/figure/x",
        Some("https://blog.example.net/post"),
    ));
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]Broken link on omero.example.org"
    );
    assert!(
        out[0]
            .text
            .starts_with("Referrer: https://blog.example.net/post\n")
    );
}

#[test]
fn subdomains_and_bare_hosts_are_external() {
    let out = run(not_found("/x", Some("https://www.omero.example.org/page")));
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]Broken link on omero.example.org"
    );
    let out = run(not_found("/x", Some("https://omero.example.org")));
    assert_eq!(
        out[0].subject,
        "[OMERO.web - admin notification]Broken link on omero.example.org"
    );
}

#[test]
fn referer_equal_to_url_sends_nothing() {
    assert!(run(not_found("/loop", Some("https://omero.example.org/loop"))).is_empty());
    assert!(run(not_found("/loop", Some("http://omero.example.org/loop"))).is_empty());
    assert!(run(not_found("/loop", Some("/loop"))).is_empty());
}

#[test]
fn append_slash_redirect_sends_nothing() {
    assert!(
        run(not_found(
            "/webclient/",
            Some("https://omero.example.org/webclient")
        ))
        .is_empty()
    );
    assert!(run(not_found("/webclient/", Some("/webclient"))).is_empty());
    // Without the trailing slash on the URL it is a real broken link.
    assert_eq!(
        run(not_found(
            "/webclient",
            Some("https://omero.example.org/webclient/")
        ))
        .len(),
        1
    );
}

#[test]
fn missing_user_agent_and_ip_read_none() {
    let error = WebError {
        user_agent: None,
        remote_addr: None,
        ..not_found("/gone", Some("https://omero.example.org/"))
    };
    let out = run(error);
    assert!(
        out[0]
            .text
            .ends_with("User agent: <none>\nIP address: <none>\n")
    );
}

#[test]
fn other_statuses_send_nothing() {
    for status in [200, 301, 400, 403, 410, 499] {
        let error = WebError {
            referer: Some("https://omero.example.org/".into()),
            ..base(status, "/x")
        };
        assert!(run(error).is_empty(), "{status}");
    }
}

#[test]
fn no_web_admins_sends_nothing() {
    assert!(run_with(json!({}), value_error()).is_empty());
    assert!(run_with(json!({"web_admins": []}), value_error()).is_empty());
}

#[test]
fn subject_prefix_is_configurable() {
    let config = json!({"web_admins": [["A", "a@example.org"]], "subject_prefix": "[web] "});
    let out = run_with(config, not_found("/x", Some("https://omero.example.org/")));
    assert_eq!(
        out[0].subject,
        "[web] Broken INTERNAL link on omero.example.org"
    );
    assert!(matches!(&out[0].to[..], [Recipient::Address(a)] if a == "a@example.org"));
}

#[test]
fn config_errors_fail_loudly() {
    TestHost::new()
        .config(json!({"mode": "enriched"}))
        .install();
    let ev = event("omero.web.error", Payload::WebError(value_error()));
    let err = WebErrorRule::handle(ev).unwrap_err();
    assert!(err.contains("unknown field `mode`"), "{err}");
    TestHost::new()
        .config(json!({"web_admins": ["a@example.org"]}))
        .install();
    let ev = event("omero.web.error", Payload::WebError(value_error()));
    assert!(WebErrorRule::handle(ev).is_err());
}

#[test]
fn rfc2822_dates() {
    assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    assert_eq!(
        rfc2822(1_767_225_600_000),
        "Thu, 01 Jan 2026 00:00:00 +0000"
    );
    assert_eq!(
        rfc2822(951_782_400_000 + 3_723_000),
        "Tue, 29 Feb 2000 01:02:03 +0000"
    );
}
