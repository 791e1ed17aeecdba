//! `herald serve`: the real process on a loopback port, driven by a real HTTP client.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Scratch, Tap, free_port, smtp_sink, wait_for};

/// The secrets of the two tokens every test configures (`omero`: ingest, `ops`: admin).
pub(crate) const INGEST_TOKEN: &str = "ingest-3f1d9a7c0b5e4d2a";
pub(crate) const ADMIN_TOKEN: &str = "admin-8c2e6b4f1a9d7e3c";

/// A running `herald serve`, killed when dropped; its stderr goes to `serve.log`.
pub(crate) struct Served {
    child: Child,
    port: u16,
    agent: ureq::Agent,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reply: status, content type and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Served {
    /// Start `herald serve` with `yaml` plus `http.listen` on a free port (another port when
    /// the first is taken), once it answers `/healthz`.
    pub(crate) fn start(scratch: &Scratch, yaml: &str, envs: &[(&str, &str)]) -> Served {
        Served::start_with(scratch, yaml, envs, |_| {})
    }

    /// `start`, calling `while_starting` at each look until `/healthz` answers.
    pub(crate) fn start_with(
        scratch: &Scratch,
        yaml: &str,
        envs: &[(&str, &str)],
        while_starting: impl Fn(&Served),
    ) -> Served {
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "{yaml}http:\n  listen: 127.0.0.1:{port}\n  tokens:\n    \
                 - {{name: omero, scope: ingest, token_file: ingest.token}}\n    \
                 - {{name: ops, scope: admin, token_env: HERALD_TEST_ADMIN_TOKEN}}\n"
            );
            std::fs::write(scratch.path("herald.yaml"), config).unwrap();
            std::fs::write(scratch.path("ingest.token"), format!("{INGEST_TOKEN}\n")).unwrap();
            let log = File::options()
                .create(true)
                .append(true)
                .open(scratch.path("serve.log"))
                .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_herald"))
                .arg("--config")
                .arg(scratch.path("herald.yaml"))
                .arg("--state-dir")
                .arg(scratch.path("var"))
                .arg("serve")
                .envs(envs.iter().copied())
                .env("HERALD_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
                .env("HERALD_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            let mut served = Served { child, port, agent };
            if served.wait_healthy(&while_starting) {
                return served;
            }
        }
        panic!("herald serve did not start; log:\n{}", log_of(scratch));
    }

    /// True once /healthz answers; false when the process exited (its port was taken).
    fn wait_healthy(&mut self, while_starting: &impl Fn(&Served)) -> bool {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            while_starting(self);
            if self.get("/healthz", None).is_some_and(|r| r.status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("herald serve did not answer /healthz in time");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Option<Reply> {
        let mut request = self.agent.get(self.url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.call().ok().map(reply)
    }

    /// POST `body` with these headers and the ingest token.
    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.post_as(Some(INGEST_TOKEN), path, headers, body)
    }

    /// POST `body` with these headers and `token`, if any.
    pub(crate) fn post_as(
        &self,
        token: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut request = self.agent.post(self.url(path));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(
            request
                .send(body)
                .expect("the request reached herald serve"),
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` to the process.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, and the exit status (within 30 s).
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POST one structured-mode event.
    pub(crate) fn post_event(&self, event: &Value) -> Reply {
        self.post(
            "/v1/events",
            &[("Content-Type", "application/cloudevents+json")],
            event.to_string().as_bytes(),
        )
    }
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Reply {
        status: response.status().as_u16(),
        content_type,
        body: response.body_mut().read_to_string().unwrap_or_default(),
    }
}

pub(crate) fn log_of(scratch: &Scratch) -> String {
    std::fs::read_to_string(scratch.path("serve.log")).unwrap_or_default()
}

/// A new-user event with a unique id; the new-user rule mails the user.
pub(crate) fn user_created(id: &str, user: u32) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "omero://test", "type": "omero.user.created",
        "time": "2026-11-23T09:15:00Z",
        "data": {"user": {"id": user, "name": format!("u{user}"), "email": format!("u{user}@example.org")}}
    })
}

/// Outbox rows the new-user rule queues per event: the new user, and the admin it copies.
pub(crate) const ROWS_PER_EVENT: i64 = 2;

/// Delivery is disabled (`from: ""`): events are journaled and evaluated, mail stays queued.
pub(crate) const QUEUE_ONLY: &str = "state_dir: var\nmail: {from: \"\"}\n\
    rules:\n  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n";

pub(crate) fn events(scratch: &Scratch) -> i64 {
    scratch.count("SELECT count(*) FROM events")
}

#[test]
fn structured_batch_binary_and_duplicate_events_are_journaled_and_answered() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);

    let one = served.post_event(&user_created("s-1", 60));
    assert_eq!(one.status, 202, "{}", one.body);
    assert_eq!(
        one.json(),
        json!({"events": [{"id": "s-1", "source": "omero://test", "status": "new"}]})
    );

    let batch = json!([
        user_created("b-1", 61),
        user_created("s-1", 60),
        user_created("b-2", 62)
    ]);
    let reply = served.post(
        "/v1/events",
        &[("Content-Type", "application/cloudevents-batch+json")],
        batch.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let statuses: Vec<String> = reply.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["new", "duplicate", "new"]);

    let binary = served.post(
        "/v1/events",
        &[
            ("Content-Type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", "bin-1"),
            ("ce-source", "omero://test"),
            ("ce-type", "omero.user.created"),
        ],
        br#"{"user": {"id": 63, "name": "u63", "email": "u63@example.org"}}"#,
    );
    assert_eq!(binary.status, 202, "{}", binary.body);
    assert_eq!(binary.json()["events"][0]["id"], "bin-1");
    assert_eq!(binary.json()["events"][0]["status"], "new");

    let again = served.post_event(&user_created("bin-1", 63));
    assert_eq!(again.json()["events"][0]["status"], "duplicate");

    // Acknowledged means journaled: the rows are there as soon as the answer is.
    assert_eq!(events(&scratch), 4);
    let stored: String = rusqlite::Connection::open(scratch.path("var/herald.db"))
        .unwrap()
        .query_row("SELECT envelope FROM events WHERE id = 'bin-1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(stored.contains("u63@example.org"), "{stored}");
    // Evaluation picks them up without any other command.
    assert!(
        wait_for(Duration::from_secs(30), || scratch
            .count("SELECT count(*) FROM outbox")
            == 4 * ROWS_PER_EVENT),
        "outbox rows: {}",
        scratch.count("SELECT count(*) FROM outbox")
    );
}

/// What is sent (headers, body) and what must come back (status, a part of the detail).
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

#[test]
fn each_bad_input_gets_its_problem_and_nothing_is_stored() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let cloud = [("Content-Type", "application/cloudevents+json")];
    let mut long_name = user_created("long-1", 72);
    long_name["data"]["user"]["name"] = json!("n".repeat(70_000));
    let mut old = user_created("old-1", 73);
    old["time"] = json!("1899-12-31T23:59:59Z");
    let cases: Vec<Case<'_>> = vec![
        (
            "a string over ingest.max_string_bytes",
            cloud.to_vec(),
            serde_json::to_vec(&long_name).unwrap(),
            413,
            "`data.user.name` is a string of 70000 bytes; the cap is 65536 (ingest.max_string_bytes)",
        ),
        ("a time before 1900", cloud.to_vec(), serde_json::to_vec(&old).unwrap(), 422, "`time` 1899-12-31T23:59:59Z is before 1900"),
        ("invalid JSON", cloud.to_vec(), b"{\"id\": \"x\",\n oops}".to_vec(), 400, "invalid JSON: key must be a string at line 2 column 2"),
        ("wrong content type", vec![("Content-Type", "text/plain")], b"{}".to_vec(), 415, "content type text/plain is not taken"),
        ("no content type", vec![], b"{}".to_vec(), 415, "the request has no Content-Type"),
        ("missing source", cloud.to_vec(), br#"{"id":"m1","type":"t"}"#.to_vec(), 422, "event 0: event m1: missing required field `source`"),
        (
            "bad typed data",
            cloud.to_vec(),
            br#"{"id":"d1","source":"s","type":"omero.user.created","data":{"user":{"id":"x","name":"b"}}}"#.to_vec(),
            422,
            "data.user.id: invalid type",
        ),
        (
            "a batch with one bad event",
            vec![("Content-Type", "application/cloudevents-batch+json")],
            serde_json::to_vec(&json!([user_created("ok-1", 70), {"id": "bad", "source": "s"}])).unwrap(),
            422,
            "event 1: event bad: missing required field `type`",
        ),
        (
            "a batch that is not an array",
            vec![("Content-Type", "application/cloudevents-batch+json")],
            serde_json::to_vec(&user_created("ok-2", 71)).unwrap(),
            400,
            "must be a JSON array",
        ),
        (
            "binary mode with non-JSON data",
            vec![("Content-Type", "text/plain"), ("ce-id", "b1"), ("ce-source", "s"), ("ce-type", "t")],
            b"hello".to_vec(),
            415,
            "binary-mode data of type text/plain",
        ),
    ];
    for (what, headers, body, status, detail) in cases {
        let reply = served.post("/v1/events", &headers, &body);
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json", "{what}");
        let problem = reply.json();
        assert_eq!(problem["status"], status, "{what}");
        let got = problem["detail"].as_str().unwrap();
        assert!(
            got.contains(detail),
            "{what}: detail {got:?} lacks {detail:?}"
        );
        assert_eq!(events(&scratch), 0, "{what}: something was stored");
    }
    // Over http.max_body: refused from Content-Length, before the body is read. (A plain
    // socket, because a client that writes the whole body first meets a closed connection.)
    let answer = raw_post(served.port, 1_100_000);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("over http.max_body (1048576 bytes)"),
        "{answer}"
    );
    assert_eq!(events(&scratch), 0);
}

/// POST a declared `length` bytes (sending only the first few) and read the whole answer.
fn raw_post(port: u16, length: usize) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\n\
         Content-Length: {length}\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n\
         Connection: close\r\n\r\n{{\"id\":"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    answer
}

/// SMTP delivery through a tap on smtp-sink, with a poll interval far longer than the test:
/// only the notification from evaluation can make the mail go out in time.
fn smtp_yaml(port: u16) -> String {
    format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test, max_connections: 2}}\n\
         delivery: {{lease: 5m, poll_interval: 1h}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n"
    )
}

#[test]
fn a_posted_event_is_delivered_to_a_real_smtp_server_at_once() {
    let sink = smtp_sink(&[]);
    let tap = Tap::to(sink.port);
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, &smtp_yaml(tap.port), &[]);
    // The first delivery round ran at start (nothing due); from now on only a wake-up delivers.
    std::thread::sleep(Duration::from_millis(300));
    let reply = served.post_event(&user_created("smtp-1", 80));
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(
        wait_for(Duration::from_secs(20), || scratch
            .count("SELECT count(*) FROM outbox WHERE state = 'sent'")
            == ROWS_PER_EVENT),
        "not sent; log:\n{}",
        log_of(&scratch)
    );
    assert_eq!(tap.dots(), ROWS_PER_EVENT as usize);
}

#[test]
fn mail_of_later_rounds_goes_over_the_session_kept_open() {
    let server = crate::smtp::aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let yaml = smtp_yaml(server.port).replace("max_connections: 2", "max_connections: 1");
    let mut served = Served::start(&scratch, &yaml, &[]);
    for (round, id) in ["keep-1", "keep-2", "keep-3"].into_iter().enumerate() {
        assert_eq!(
            served
                .post_event(&user_created(id, 90 + round as u32))
                .status,
            202
        );
        let sent = (round as i64 + 1) * ROWS_PER_EVENT;
        assert!(
            wait_for(Duration::from_secs(20), || scratch
                .count("SELECT count(*) FROM outbox WHERE state = 'sent'")
                == sent),
            "round {round} not sent; log:\n{}",
            log_of(&scratch)
        );
    }
    let verbs = crate::smtp::commands(&server);
    // One session says EHLO twice: lettre's, and Herald's own that looks for PIPELINING.
    let hellos = verbs.iter().filter(|v| v.ends_with(" EHLO")).count();
    assert_eq!(hellos, 2, "one session for three rounds: {verbs:?}");
    assert!(served.terminate().success());
}

#[test]
fn serve_and_deliver_side_by_side_send_every_row_exactly_once() {
    let sink = smtp_sink(&[]);
    let tap = Tap::to(sink.port);
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, &smtp_yaml(tap.port), &[]);
    // `herald deliver` on the same store, polling often.
    let yaml = smtp_yaml(tap.port).replace("poll_interval: 1h", "poll_interval: 50ms");
    std::fs::write(scratch.path("deliver.yaml"), yaml).unwrap();
    let mut deliver = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(scratch.path("deliver.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .arg("deliver")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let n = 60;
    for i in 0..n {
        let reply = served.post_event(&user_created(&format!("pair-{i}"), 100 + i));
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let all_sent = wait_for(Duration::from_secs(60), || {
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'sent'")
            == i64::from(n) * ROWS_PER_EVENT
    });
    let _ = deliver.kill();
    let _ = deliver.wait();
    assert!(all_sent, "log:\n{}", log_of(&scratch));
    // Each row was sent once: one attempt each, and one final dot each at the server.
    let rows = i64::from(n) * ROWS_PER_EVENT;
    assert_eq!(scratch.count("SELECT count(*) FROM attempts"), rows);
    assert_eq!(
        scratch.count(
            "SELECT count(*) FROM (SELECT outbox_id FROM attempts GROUP BY outbox_id HAVING count(*) != 1)"
        ),
        0
    );
    assert_eq!(tap.dots(), rows as usize);
}

#[test]
fn a_loopback_load_test_puts_every_event_in_the_outbox_exactly_once() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let (clients, per_client) = (16, 25);
    std::thread::scope(|scope| {
        for c in 0..clients {
            let served = &served;
            scope.spawn(move || {
                for i in 0..per_client {
                    let user = 1000 + c * per_client + i;
                    let reply = served.post_event(&user_created(&format!("load-{user}"), user));
                    assert_eq!(reply.status, 202, "{}", reply.body);
                    assert_eq!(reply.json()["events"][0]["status"], "new");
                }
            });
        }
    });
    let n = i64::from(clients * per_client);
    assert_eq!(events(&scratch), n);
    // Group commit: concurrent requests shared transactions (one fsync for several).
    let text = served.get("/metrics", Some(ADMIN_TOKEN)).unwrap().body;
    let commits = series(&text, "herald_ingest_commit_batch_events_count").unwrap();
    let journaled = series(&text, "herald_ingest_commit_batch_events_sum").unwrap();
    eprintln!("{journaled} events in {commits} commits");
    assert_eq!(journaled, n as f64);
    assert!(
        commits < n as f64,
        "{commits} commits for {n} requests: none was shared"
    );
    assert!(
        wait_for(Duration::from_secs(60), || scratch
            .count("SELECT count(*) FROM events WHERE state = 'pending'")
            == 0),
        "events left pending"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox"),
        n * ROWS_PER_EVENT
    );
    assert_eq!(
        scratch.count("SELECT count(DISTINCT event_seq) FROM outbox"),
        n
    );
}

#[test]
fn tokens_are_checked_by_scope_and_never_logged() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let cloud = [("Content-Type", "application/cloudevents+json")];
    let body = user_created("auth-1", 90).to_string();

    for (token, status) in [
        (None, 401),
        (Some("not-a-token-at-all-000"), 401),
        (Some(&ADMIN_TOKEN[..10]), 401),
    ] {
        let reply = served.post_as(token, "/v1/events", &cloud, body.as_bytes());
        assert_eq!(reply.status, status, "{token:?}: {}", reply.body);
        assert_eq!(reply.content_type, "application/problem+json");
    }
    assert_eq!(events(&scratch), 0, "a refused request stored nothing");

    let metrics = served.get("/metrics", Some(INGEST_TOKEN)).unwrap();
    assert_eq!(metrics.status, 403, "{}", metrics.body);
    assert!(
        metrics.body.contains("token omero has scope ingest"),
        "{}",
        metrics.body
    );
    assert_eq!(served.get("/metrics", None).unwrap().status, 401);
    let metrics = served.get("/metrics", Some(ADMIN_TOKEN)).unwrap();
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert!(metrics.body.contains("herald_"), "{}", metrics.body);

    // Both scopes may post events; health and readiness need no token.
    assert_eq!(
        served.post("/v1/events", &cloud, body.as_bytes()).status,
        202
    );
    let admin = user_created("auth-2", 91).to_string();
    assert_eq!(
        served
            .post_as(Some(ADMIN_TOKEN), "/v1/events", &cloud, admin.as_bytes())
            .status,
        202
    );
    assert_eq!(events(&scratch), 2);
    assert_eq!(served.get("/healthz", None).unwrap().status, 200);
    assert_eq!(served.get("/readyz", None).unwrap().status, 200);

    let log = log_of(&scratch);
    assert!(
        log.contains("authorized"),
        "the debug log shows who was authorized:\n{log}"
    );
    for secret in [
        INGEST_TOKEN,
        ADMIN_TOKEN,
        &ADMIN_TOKEN[..10],
        "not-a-token-at-all-000",
    ] {
        assert!(!log.contains(secret), "a token is in the log:\n{log}");
    }
}

#[test]
fn serve_refuses_to_start_without_a_readable_token() {
    let scratch = Scratch::with_config("");
    let yaml = format!(
        "{QUEUE_ONLY}http:\n  tokens:\n    - {{name: omero, scope: ingest, token_env: HERALD_TEST_UNSET_TOKEN}}\n"
    );
    std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
    let out = scratch.herald_own(&["serve"]);
    crate::support::assert_exit(&out, 2);
    let err = crate::support::stderr(&out);
    assert!(
        err.contains(
            "http.tokens omero: environment variable HERALD_TEST_UNSET_TOKEN (token_env) is not set"
        ),
        "{err}"
    );
    let both = format!(
        "{QUEUE_ONLY}http:\n  tokens:\n    - {{name: omero, scope: ingest, token_env: A, token_file: b}}\n"
    );
    std::fs::write(scratch.path("herald.yaml"), both).unwrap();
    let out = scratch.herald_own(&["serve"]);
    crate::support::assert_exit(&out, 2);
    let err = crate::support::stderr(&out);
    assert!(err.contains("needs exactly one of token_file"), "{err}");
    assert!(
        err.contains("herald.yaml:"),
        "the error names the file and line: {err}"
    );
}

#[test]
fn sigterm_finishes_mail_in_flight_exits_0_and_the_rest_is_sent_after_a_restart() {
    // The server waits 1 s before answering each DATA: sessions are in flight when the signal comes.
    let sink = smtp_sink(&["-w", "1"]);
    let tap = Tap::to(sink.port);
    let scratch = Scratch::with_config("");
    let mut served = Served::start(&scratch, &smtp_yaml(tap.port), &[]);
    let n = 6;
    for i in 0..n {
        assert_eq!(
            served
                .post_event(&user_created(&format!("term-{i}"), 200 + i))
                .status,
            202
        );
    }
    let rows = i64::from(n) * ROWS_PER_EVENT;
    assert!(
        wait_for(Duration::from_secs(30), || tap.data() >= 1),
        "no session started"
    );
    let status = served.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}; log:\n{}",
        log_of(&scratch)
    );
    let sent = scratch.count("SELECT count(*) FROM outbox WHERE state = 'sent'");
    assert_eq!(
        sent as usize,
        tap.dots(),
        "every message the server took is recorded"
    );
    assert!(sent >= 1, "the sessions in flight finished");
    assert!(
        sent < rows,
        "it stopped taking new rows ({sent} of {rows} sent)"
    );
    assert_eq!(
        scratch.count(
            "SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL AND state = 'queued'"
        ),
        0,
        "no row is left leased"
    );
    let log = log_of(&scratch);
    assert!(log.contains("herald serve: stopped"), "{log}");

    // A restart sends the rest, and nothing twice.
    let _served = Served::start(&scratch, &smtp_yaml(tap.port), &[]);
    assert!(
        wait_for(Duration::from_secs(60), || scratch
            .count("SELECT count(*) FROM outbox WHERE state = 'sent'")
            == rows),
        "log:\n{}",
        log_of(&scratch)
    );
    assert_eq!(scratch.count("SELECT count(*) FROM attempts"), rows);
    assert_eq!(tap.dots(), rows as usize);
}

/// The value of the series line that starts with `series` (name and labels), if any.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_ingest_evaluation_delivery_and_the_outbox() {
    let scratch = Scratch::with_config("");
    let yaml = "state_dir: var\nmail: {from: omero@localhost, transport: file}\n\
        rules:\n  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n";
    let served = Served::start(&scratch, yaml, &[]);
    for i in 0..3 {
        assert_eq!(
            served
                .post_event(&user_created(&format!("m-{i}"), 300 + i))
                .status,
            202
        );
    }
    assert_eq!(served.post_event(&user_created("m-0", 300)).status, 202);
    let bad = served.post("/v1/events", &[("Content-Type", "text/plain")], b"x");
    assert_eq!(bad.status, 415);
    let rows = 3 * ROWS_PER_EVENT;
    assert!(wait_for(Duration::from_secs(30), || scratch.mails().len()
        as i64
        == rows));
    assert!(wait_for(Duration::from_secs(10), || scratch
        .count("SELECT count(*) FROM outbox WHERE state = 'sent'")
        == rows));

    assert_eq!(served.get("/readyz", None).unwrap().status, 200);
    let text = served.get("/metrics", Some(ADMIN_TOKEN)).unwrap().body;
    let user = "type=\"omero.user.created\"";
    let expect = [
        (
            format!("herald_events_received_total{{{user},status=\"new\"}}"),
            3.0,
        ),
        (
            format!("herald_events_received_total{{{user},status=\"duplicate\"}}"),
            1.0,
        ),
        ("herald_requests_refused_total".to_owned(), 1.0),
        ("herald_ingest_commit_batch_events_sum".to_owned(), 4.0),
        // One commit per request here (they came one by one); readiness probes are not counted.
        ("herald_ingest_commit_batch_events_count".to_owned(), 4.0),
        ("herald_events_evaluated_total".to_owned(), 3.0),
        (
            "herald_rule_runs_total{rule=\"new-user\",result=\"ok\"}".to_owned(),
            3.0,
        ),
        (
            "herald_rule_duration_seconds_count{rule=\"new-user\"}".to_owned(),
            3.0,
        ),
        (
            "herald_rule_fuel_used_count{rule=\"new-user\"}".to_owned(),
            3.0,
        ),
        (
            "herald_deliveries_total{outcome=\"sent\"}".to_owned(),
            rows as f64,
        ),
        ("herald_outbox_rows{state=\"sent\"}".to_owned(), rows as f64),
    ];
    for (name, value) in expect {
        assert_eq!(series(&text, &name), Some(value), "{name} in\n{text}");
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            line.starts_with("herald_"),
            "a series not named herald_*: {line}"
        );
    }
}

#[test]
fn herald_log_debug_shows_heralds_own_lines_not_the_wasm_compilers() {
    // Served runs with HERALD_LOG=debug, and a fresh state dir makes it compile every rule.
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    assert_eq!(served.post_event(&user_created("log-1", 400)).status, 202);
    assert!(wait_for(Duration::from_secs(30), || {
        log_of(&scratch).contains("evaluated pending events")
    }));
    let log = log_of(&scratch);
    assert!(log.contains("DEBUG"), "{log}");
    assert!(
        !log.contains("ignoring section"),
        "the compiler's debug lines are shown"
    );
    assert!(
        log.lines().count() < 100,
        "{} lines:\n{log}",
        log.lines().count()
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let scratch = Scratch::with_config("");
    let yaml = format!("log: {{format: json}}\n{QUEUE_ONLY}");
    let served = Served::start(&scratch, &yaml, &[]);
    assert_eq!(served.post_event(&user_created("json-1", 401)).status, 202);
    assert!(wait_for(Duration::from_secs(30), || {
        log_of(&scratch).contains("evaluated pending events")
    }));
    let log = log_of(&scratch);
    // The lines Herald prints for people (listening, stopping) are plain; every log line is JSON.
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.starts_with("herald serve:"))
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert!(
        log.contains(r#""message":"evaluated pending events""#),
        "{log}"
    );
}

#[test]
fn strict_types_refuses_an_unknown_type_and_takes_herald_and_custom_types() {
    let scratch = Scratch::with_config("");
    let yaml =
        format!("{QUEUE_ONLY}ingest: {{strict_types: true, custom_types: [lab.booking.made]}}\n");
    let served = Served::start(&scratch, &yaml, &[]);
    let typed = |id: &str, kind: &str| json!({"id": id, "source": "s", "type": kind, "data": {}});

    let unknown = served.post_event(&typed("t-1", "omero.thumbnail.generated"));
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(unknown.content_type, "application/problem+json");
    let detail = unknown.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("type \"omero.thumbnail.generated\" is unknown")
            && detail.contains("ingest.custom_types"),
        "{detail}"
    );
    let batch = json!([typed("t-2", "lab.booking.made"), typed("t-3", "nope")]);
    let reply = served.post(
        "/v1/events",
        &[("Content-Type", "application/cloudevents-batch+json")],
        batch.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(
        events(&scratch),
        0,
        "nothing of a refused request is stored"
    );

    assert_eq!(
        served.post_event(&typed("t-4", "lab.booking.made")).status,
        202
    );
    assert_eq!(served.post_event(&user_created("t-5", 500)).status, 202);
    assert_eq!(events(&scratch), 2);
}

#[test]
fn sigterm_finishes_the_evaluation_in_flight_and_leaves_the_rest_pending() {
    // Each event runs a rule that spins until its 200 ms deadline: 30 events take 6 s.
    let wasm = crate::support::fixture_wasm("herald-rule-hostile");
    let yaml = format!(
        "state_dir: var\nmail: {{from: \"\"}}\ningest: {{custom_types: [test.spin]}}\nsandbox: {{quarantine_after: 0}}\nserve: {{shutdown_grace: 30s}}\n\
         rules:\n  - name: spin\n    module: {}\n    on: [test.spin]\n    config: {{misdeed: loop}}\n    \
         limits: {{fuel: 1000000000000, wall_time: 200ms}}\n",
        wasm.display()
    );
    let scratch = Scratch::with_config("");
    let mut served = Served::start(&scratch, &yaml, &[]);
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("spin-{i}"), "source": "s", "type": "test.spin"}))
        .collect();
    let reply = served.post(
        "/v1/events",
        &[("Content-Type", "application/cloudevents-batch+json")],
        Value::Array(batch).to_string().as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let done = || scratch.count("SELECT count(*) FROM events WHERE state = 'done'");
    assert!(wait_for(Duration::from_secs(30), || done() >= 1));
    let asked = Instant::now();
    let status = served.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "it went on evaluating for {:?}",
        asked.elapsed()
    );
    let left = scratch.count("SELECT count(*) FROM events WHERE state = 'pending'");
    assert!(left > 0 && left < 30, "{left} pending");
    // The next start evaluates the rest.
    let _served = Served::start(&scratch, &yaml, &[]);
    assert!(wait_for(Duration::from_secs(60), || done() == 30));
}

#[test]
fn a_taken_listen_address_is_an_error_naming_http_listen() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let scratch = Scratch::with_config("");
    std::fs::write(scratch.path("ingest.token"), INGEST_TOKEN).unwrap();
    let yaml = format!(
        "{QUEUE_ONLY}http:\n  listen: 127.0.0.1:{port}\n  tokens:\n    \
         - {{name: omero, scope: ingest, token_file: ingest.token}}\n"
    );
    std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
    let out = scratch.herald_own(&["serve"]);
    crate::support::assert_exit(&out, 1);
    let err = crate::support::stderr(&out);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port} (http.listen)")),
        "{err}"
    );
    assert!(!err.contains(INGEST_TOKEN));
}
