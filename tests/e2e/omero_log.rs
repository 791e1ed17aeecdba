//! The log and probe sources under the real `herald serve`: Blitz-0.log lines in OMERO's exact format
//! become the stock mail, a rotation loses and repeats nothing, a restart resumes at the stored offset;
//! the probe reports a listener that goes away once, and once when it is back; with both, one clean
//! shutdown gives one mail.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::serve::{Served, log_of};
use crate::smtp::{Server, aiosmtpd, header, received_raw};
use crate::support::{Scratch, wait_for};

const WAIT: Duration = Duration::from_secs(60);

const CHECK: &str = "INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Executor.doWork -- ome.services.sessions.SessionManagerImpl.executeCheckPasswordRO[";
const FALSE: &str = "INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Rslt:\tfalse";
const THROTTLE: &str = "WARN  [  ome.security.auth.LoginAttemptListener] (l.Server-2) 2 failed logins for root. Throttling for 3000";
pub(crate) const UP: &str = "INFO  [                ome.services.blitz.Entry] (      main) OMERO.blitz now accepting connections.";
pub(crate) const DOWN: &str =
    "INFO  [                ome.services.blitz.Entry] (Thread-3  ) TERM: Shutdown requested.";

pub(crate) fn append(path: &Path, lines: &[String]) {
    let mut file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

/// A failed password check for `user` at `time` (`10:14:06`), as Blitz logs it.
pub(crate) fn failure(user: &str, time: &str) -> Vec<String> {
    vec![
        format!("2025-08-29 {time},008 {CHECK}{user}]"),
        format!("2025-08-29 {time},016 {FALSE}"),
    ]
}

/// A line at `time` (`18:00:00`) on the day of the fixtures.
pub(crate) fn at(time: &str, rest: &str) -> String {
    format!("2025-08-29 {time},001 {rest}")
}

fn serve(scratch: &Scratch, smtp: &Server, sources: &str) -> Served {
    let yaml = format!(
        "mail:\n  from: omero@localhost\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         directory:\n  path: directory.yaml\n\
         sources:\n{sources}\
         rules:\n  - {{name: failed-login, module: builtin:failed-login, on: [omero.login.failed], \
         config: {{contact_system: true, on_all_users: true}}}}\n  \
         - {{name: server-up, module: builtin:server-up, on: [omero.server.up]}}\n  \
         - {{name: server-down, module: builtin:server-down, on: [omero.server.down]}}\n",
        port = smtp.port,
    );
    let served = Served::start(scratch, &yaml, &[]);
    assert!(
        wait_for(WAIT, || served
            .get("/readyz", None)
            .is_some_and(|r| r.status == 200)),
        "never ready\n{}",
        log_of(scratch)
    );
    served
}

/// Subjects received, sorted (each admin, alice and bob, gets one of each).
fn subjects(smtp: &Server) -> Vec<String> {
    let mut got: Vec<String> = received_raw(smtp)
        .into_iter()
        .map(|(data, _)| {
            let text = String::from_utf8_lossy(&data).replace("\r\n", "\n");
            header(&text, "Subject").unwrap_or_default()
        })
        .collect();
    got.sort();
    got
}

fn twice(subjects: &[&str]) -> Vec<String> {
    let mut want: Vec<String> = subjects
        .iter()
        .flat_map(|s| [s.to_string(), s.to_string()])
        .collect();
    want.sort();
    want
}

fn stop(mut served: Served) {
    let status = served.terminate();
    assert!(status.success(), "herald serve exited with {status}");
}

#[test]
fn blitz_log_lines_become_mail_across_rotation_and_restart_exactly_once() {
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let log = scratch.path("Blitz-0.log");
    append(&log, &failure("history", "09:00:00"));
    let source = format!(
        "  - {{kind: omero-log, path: {}, timezone: Europe/London, poll: 100ms, server: omero.test}}\n",
        log.display()
    );
    let served = serve(&scratch, &smtp, &source);
    // The first failure (check then false), a throttled one, an unknown name.
    append(&log, &failure("root", "10:14:06"));
    append(&log, &[at("10:14:09", THROTTLE)]);
    append(&log, &failure("nosuchuser", "10:15:00"));
    let failed = |u: &str| format!("[OMERO] Login failed for '{u}'");
    let mut want = twice(&[&failed("root"), &failed("root"), &failed("nosuchuser")]);
    assert!(
        wait_for(WAIT, || subjects(&smtp).len() >= want.len()),
        "{}",
        log_of(&scratch)
    );
    // A rotation while Herald runs: the end of the old file and the new file are both read.
    append(&log, &failure("before-rotation", "10:20:00"));
    std::fs::rename(&log, scratch.path("Blitz-0.log.1")).unwrap();
    append(&log, &failure("after-rotation", "10:20:01"));
    want.extend(twice(&[
        &failed("before-rotation"),
        &failed("after-rotation"),
    ]));
    want.sort();
    assert!(
        wait_for(WAIT, || subjects(&smtp).len() >= want.len()),
        "{}",
        log_of(&scratch)
    );
    // Stopped, then a clean shutdown, a rotation and a restart of OMERO while Herald is down.
    stop(served);
    append(&log, &[at("18:00:00", DOWN)]);
    std::fs::rename(&log, scratch.path("Blitz-0.log.1")).unwrap();
    append(&log, &[at("18:05:00", UP)]);
    let served = serve(&scratch, &smtp, &source);
    want.extend(twice(&[
        "[OMERO] Server shutdown",
        "[OMERO] Server started",
    ]));
    want.sort();
    assert!(
        wait_for(WAIT, || subjects(&smtp).len() >= want.len()),
        "{}",
        log_of(&scratch)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        subjects(&smtp),
        want,
        "nothing lost, nothing repeated, history not mailed"
    );
    let time = scratch.count(
        "SELECT count(*) FROM events WHERE type = 'omero.server.down' AND time = '2025-08-29T17:00:00.001Z'",
    );
    assert_eq!(time, 1, "logback's local time read in Europe/London (BST)");
    stop(served);
}

/// A listener on a free port that can be closed and opened again on the same port.
struct Port {
    port: u16,
    listener: Option<std::net::TcpListener>,
}

impl Port {
    fn open() -> Port {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Port {
            port: listener.local_addr().unwrap().port(),
            listener: Some(listener),
        }
    }

    fn close(&mut self) {
        self.listener = None;
    }

    fn reopen(&mut self) {
        self.listener = Some(std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap());
    }
}

#[test]
fn the_probe_reports_a_crash_once_and_the_return_once_and_a_clean_shutdown_is_one_mail() {
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let log = scratch.path("Blitz-0.log");
    append(&log, &[]);
    let mut omero = Port::open();
    let sources = format!(
        "  - {{kind: omero-probe, host: 127.0.0.1, ports: [{}], interval: 100ms, failures: 3, server: omero.test}}\n  \
         - {{kind: omero-log, path: {}, poll: 100ms}}\n",
        omero.port,
        log.display()
    );
    let served = serve(&scratch, &smtp, &sources);
    // The probe learns "up" without a mail.
    let probe_state = || {
        let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
        conn.query_row(
            "SELECT json_extract(cursor, '$.state') FROM source_state WHERE source LIKE 'omero-probe:%'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap_or_default()
    };
    assert!(
        wait_for(WAIT, || probe_state() == "up"),
        "{}",
        log_of(&scratch)
    );
    assert!(subjects(&smtp).is_empty());
    omero.close(); // a crash: no shutdown line
    let down = twice(&["[OMERO] Server shutdown"]);
    assert!(
        wait_for(WAIT, || subjects(&smtp) == down),
        "{:?}\n{}",
        subjects(&smtp),
        log_of(&scratch)
    );
    omero.reopen();
    let mut want = down.clone();
    want.extend(twice(&["[OMERO] Server started"]));
    want.sort();
    assert!(
        wait_for(WAIT, || subjects(&smtp) == want),
        "{:?}",
        subjects(&smtp)
    );
    // A clean shutdown: the log line and, a moment later, the probe report the same happening.
    let now = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S,%3f")
        .to_string();
    append(&log, &[format!("{now} {DOWN}")]);
    assert!(
        wait_for(WAIT, || subjects(&smtp).len() == want.len() + 2),
        "the log's down first"
    );
    omero.close();
    want.extend(twice(&["[OMERO] Server shutdown"]));
    want.sort();
    assert!(
        wait_for(WAIT, || subjects(&smtp) == want),
        "{:?}",
        subjects(&smtp)
    );
    assert!(
        wait_for(WAIT, || {
            scratch.count(
            "SELECT count(*) FROM events WHERE type = 'omero.server.down' AND duplicate_of IS NOT NULL"
        ) == 1
        }),
        "the probe's report of the clean shutdown is journaled as a duplicate\n{}",
        log_of(&scratch)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(subjects(&smtp), want, "one mail for the clean shutdown");
    stop(served);
}

#[test]
fn omero_web_errors_from_its_log_are_mailed_and_herald_sources_lists_each_source() {
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let web = scratch.path("OMEROweb.log");
    append(&web, &[]);
    let sources = format!(
        "  - {{kind: omero-web-log, path: {}, poll: 100ms, server: omero.test}}\n",
        web.display()
    );
    let yaml = format!(
        "mail:\n  from: omero@localhost\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         directory:\n  path: directory.yaml\nsources:\n{sources}\
         rules:\n  - {{name: web-error, module: builtin:web-error, on: [omero.web.error], \
         config: {{web_admins: [[\"Web Admin\", \"webadmin@example.org\"]]}}}}\n",
        port = smtp.port,
    );
    let served = Served::start(&scratch, &yaml, &[]);
    let request = "[                          django.request] (proc.12345) log_response():224";
    append(
        &web,
        &[
            format!("2025-08-29 10:14:06,008 ERROR {request} Internal Server Error: /webclient/x"),
            format!(
                "2025-08-29 10:14:06,008 ERROR {request} HTTP 500 <WSGIRequest: GET '/webclient/x'>"
            ),
            format!(
                "2025-08-29 10:14:07,008 WARNI {request} HTTP 302 <WSGIRequest: GET '/webclient/'>"
            ),
        ],
    );
    assert!(
        wait_for(WAIT, || subjects(&smtp).len() == 1),
        "{}",
        log_of(&scratch)
    );
    let (mail, rcpt) = received_raw(&smtp).remove(0);
    let mail = String::from_utf8_lossy(&mail).replace("\r\n ", " ");
    let subject = "Subject: [OMERO.web - admin notification]ERROR (EXTERNAL IP): Internal Server Error: /webclient/x";
    assert!(mail.contains(subject), "{mail}");
    assert_eq!(rcpt, ["webadmin@example.org"]);
    let out = scratch.herald_own(&["sources", "--json"]);
    crate::support::assert_exit(&out, 0);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &listed[0];
    assert_eq!(row["source"], format!("omero-web-log:{}", web.display()));
    assert_eq!(row["emitted"], 1);
    assert_eq!(row["lag"], 0);
    assert!(row["cursor"]["offset"].as_u64().unwrap() > 0, "{row}");
    stop(served);
}
