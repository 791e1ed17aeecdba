//! SMTP delivery against real servers on 127.0.0.1: aiosmtpd (Maildir, TLS, AUTH) and Postfix's smtp-sink.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::mail_bytes::assert_clean_line_ends;
use crate::support::{Listening, Scratch, Tap, assert_exit, free_port, repo, stderr, stdout};

const RECORDING: &str = "tests/recordings/skeleton.jsonl";
const GOLDEN: &str = "tests/recordings/skeleton.expected";
const INSTALL: &str = "run `make test-deps` (it installs aiosmtpd into target/tools/venv and \
                       unpacks Debian's postfix package into target/tools/postfix)";

/// A server process (killed when dropped) and where it keeps what it received.
pub(crate) struct Server {
    _process: Listening,
    pub(crate) port: u16,
    maildir: PathBuf,
    /// aiosmtpd: each message's DATA exactly as received (`<n>.eml`) and its recipients (`<n>.rcpt`).
    raw: PathBuf,
    /// aiosmtpd: one line per command verb, `clear` or `tls` first.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The tool at `$var`, else at `target/tools/<fallback>`; a missing tool fails the test.
fn tool(var: &str, fallback: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tools").join(fallback));
    assert!(
        path.is_file(),
        "{} not found (set {var} or {INSTALL})",
        path.display()
    );
    path
}

/// Start `tests/smtp/server.py` with `args` on a free port; waits for its READY line, and
/// tries another port when the one picked was taken before the server could bind it.
pub(crate) fn aiosmtpd(args: &[&str]) -> Server {
    let mut last = String::new();
    for _ in 0..5 {
        match try_aiosmtpd_on(free_port(), args) {
            Ok(server) => return server,
            Err(why) => last = why,
        }
    }
    panic!("{last}");
}

/// Start `tests/smtp/server.py` on a given port (to replace a server in place).
pub(crate) fn aiosmtpd_on(port: u16, args: &[&str]) -> Server {
    try_aiosmtpd_on(port, args).unwrap_or_else(|why| panic!("{why}"))
}

fn try_aiosmtpd_on(port: u16, args: &[&str]) -> Result<Server, String> {
    let python = tool("HERALD_AIOSMTPD_PYTHON", "venv/bin/python");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let raw = dir.path().join("raw");
    let log = dir.path().join("commands.log");
    let mut child = Command::new(&python)
        .arg(repo().join("tests/smtp/server.py"))
        .args(["--port", &port.to_string(), "--maildir"])
        .arg(&maildir)
        .arg("--raw")
        .arg(&raw)
        .arg("--log")
        .arg(&log)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}); {INSTALL}", python.display()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let server = Server {
        _process: Listening { child, port },
        port,
        maildir,
        raw,
        log,
        _dir: dir,
    };
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    match line.trim() {
        "READY" => Ok(server),
        _ => Err(format!(
            "aiosmtpd did not start on port {port} (is aiosmtpd installed? {INSTALL})"
        )),
    }
}

/// Start smtp-sink with fault options on a free port (retried on a bind clash).
pub(crate) fn smtp_sink(options: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none");
    let process = crate::support::smtp_sink(options);
    Server {
        port: process.port,
        _process: process,
        maildir: none.clone(),
        raw: none.clone(),
        log: none,
        _dir: dir,
    }
}

/// A test CA and a leaf (CA:FALSE, SAN localhost and 127.0.0.1) signed by it, as PEM files.
pub(crate) struct Certs {
    _dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

pub(crate) fn certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Herald test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.is_ca = IsCa::ExplicitNoCa;
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("cert.pem"), leaf_cert.pem()).unwrap();
    std::fs::write(path("key.pem"), leaf_key.serialize_pem()).unwrap();
    Certs {
        ca: path("ca.pem"),
        cert: path("cert.pem"),
        key: path("key.pem"),
        _dir: dir,
    }
}

const NEW_USER_RULE: &str = "  - name: new-user\n    module: builtin:new-user\n    \
                             on: [omero.user.created]\n    config: {mode: parity}\n";
pub(crate) const BROADCAST_RULE: &str =
    "  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}\n";

/// A scratch with the new-user rule and `mail.smtp` pointing at `port` plus `extra` keys.
fn scratch(port: u16, extra: &str) -> Scratch {
    scratch_with_rules(port, extra, NEW_USER_RULE)
}

/// A scratch with `rules` and `mail.smtp` pointing at `port` plus `extra` keys.
pub(crate) fn scratch_with_rules(port: u16, extra: &str, rules: &str) -> Scratch {
    let yaml = format!(
        "mail:\n  from: omero@localhost\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    \
         port: {port}\n    hello_name: herald.test\n{extra}\
         directory:\n  path: directory.yaml\n\
         rules:\n{rules}"
    );
    Scratch::with_config(&yaml)
}

/// Queue the recording's four messages (alice and bob, twice), then `herald deliver`.
fn send_and_deliver(scratch: &Scratch) -> Output {
    let out = scratch.herald_own(&["send", RECORDING]);
    assert_exit(&out, 0);
    scratch.herald_own(&["deliver", "--until-empty"])
}

/// (recipient, state, outcome, code, detail) of every attempt, in order.
fn attempts(scratch: &Scratch) -> Vec<(String, String, String, Option<i64>, String)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT o.recipient, o.state, a.outcome, a.code, a.detail
             FROM attempts a JOIN outbox o ON o.id = a.outbox_id ORDER BY a.rowid",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The value of header `name` in a message (first occurrence).
pub(crate) fn header(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// The messages in the Maildir's `new/`, with `\r\n` turned into `\n`.
pub(crate) fn maildir(server: &Server) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(server.maildir.join("new")) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|m| m.replace("\r\n", "\n"))
        .collect()
}

/// What aiosmtpd received: each message's DATA bytes exactly as sent (after dot-unstuffing)
/// and its envelope recipients, in arrival order.
pub(crate) fn received_raw(server: &Server) -> Vec<(Vec<u8>, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir(&server.raw) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|eml| {
            let rcpt = std::fs::read_to_string(eml.with_extension("rcpt")).unwrap();
            (
                std::fs::read(&eml).unwrap(),
                rcpt.lines().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// The commands aiosmtpd saw, as `clear VERB` or `tls VERB`.
pub(crate) fn commands(server: &Server) -> Vec<String> {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The golden messages the file transport writes for the recording, as bytes.
fn golden() -> Vec<Vec<u8>> {
    let dir = repo().join(GOLDEN);
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect()
}

fn message_id(bytes: &[u8]) -> String {
    header(
        &String::from_utf8_lossy(bytes).replace("\r\n", "\n"),
        "Message-ID",
    )
    .expect("a Message-ID")
}

/// The Message-IDs received are exactly those of the golden messages addressed `To` one of
/// `to` (each once: no duplicate, none missing), each message's DATA is its golden `.eml` byte
/// for byte, and each came as its own envelope to its one recipient.
fn assert_received_match_golden(server: &Server, to: &[&str]) {
    let golden: Vec<Vec<u8>> = golden()
        .into_iter()
        .filter(|g| {
            let text = String::from_utf8_lossy(g).replace("\r\n", "\n");
            to.contains(&header(&text, "To").unwrap().as_str())
        })
        .collect();
    let received = received_raw(server);
    let mut want: Vec<String> = golden.iter().map(|g| message_id(g)).collect();
    let mut got: Vec<String> = received.iter().map(|(m, _)| message_id(m)).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "the Message-IDs received");
    for (bytes, rcpt) in &received {
        let id = message_id(bytes);
        let expected = golden.iter().find(|g| message_id(g) == id).unwrap();
        assert_eq!(
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(expected),
            "DATA of {id}"
        );
        let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
        assert_eq!(rcpt, &[header(&text, "To").unwrap()], "envelope of {id}");
    }
}

fn assert_elapsed_below(start: Instant, limit: Duration) {
    let took = start.elapsed();
    assert!(took < limit, "took {took:?}, bound {limit:?}");
}

#[test]
fn plain_delivers_each_row_as_its_own_envelope_with_the_stable_message_id() {
    let server = aiosmtpd(&[]);
    let scratch = scratch(server.port, "");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "delivered 4 message(s) to smtp://127.0.0.1:{} (no TLS), 0 failed",
            server.port
        )),
        "{}",
        stdout(&out)
    );
    assert_received_match_golden(&server, &["alice@example.org", "bob@example.org"]);
    let attempts = attempts(&scratch);
    assert_eq!(attempts.len(), 4);
    for (_, state, outcome, code, detail) in attempts {
        assert_eq!(
            (state.as_str(), outcome.as_str(), code),
            ("sent", "sent", Some(250))
        );
        assert!(detail.starts_with("250"), "{detail}");
    }
}

/// aiosmtpd with TLS (`--starttls` or `--smtps`) and AUTH herald:s3cret, and a scratch
/// whose `mail.smtp` uses `tls`, the test CA and the password from HERALD_TEST_SMTP_PW.
pub(crate) fn tls_with_auth(server_tls: &str, tls: &str) -> (Certs, Server, Scratch) {
    let certs = certs();
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    // Pipelined, so that the held final `.` is shown to work below STARTTLS's TLS and above
    // implicit TLS (the plain-text tests cover servers that do not offer PIPELINING).
    let args = [
        server_tls,
        cert,
        key,
        "--auth",
        "herald:s3cret",
        "--pipelining",
    ];
    let server = aiosmtpd(&args);
    let extra = format!(
        "    tls: {tls}\n    username: herald\n    password_env: HERALD_TEST_SMTP_PW\n    ca_file: {}\n",
        certs.ca.display()
    );
    let scratch = scratch(server.port, &extra);
    (certs, server, scratch)
}

#[test]
fn starttls_with_auth_delivers_over_tls_and_the_password_is_never_logged_at_debug() {
    let (_certs, server, scratch) = tls_with_auth("--starttls", "starttls");
    let out = scratch.herald_own(&["send", RECORDING]);
    assert_exit(&out, 0);
    // Every crate at debug (lettre, rustls, SQLite too), Herald at trace: a bare level would
    // show Herald's own lines only.
    let out = deliver_with_password(&scratch, "s3cret", "debug,herald=trace");
    assert_exit(&out, 0);
    assert_received_match_golden(&server, &["alice@example.org", "bob@example.org"]);
    let commands = commands(&server);
    assert!(commands.contains(&"tls AUTH".to_owned()), "{commands:?}");
    for verb in ["AUTH", "MAIL", "RCPT", "DATA"] {
        let clear = format!("clear {verb}");
        assert!(!commands.contains(&clear), "{clear}: {commands:?}");
    }
    assert!(
        stderr(&out).contains("DEBUG"),
        "HERALD_LOG=debug logged nothing: {}",
        stderr(&out)
    );
    // The password as typed, and as AUTH PLAIN and AUTH LOGIN put it on the wire.
    let forms = ["s3cret", "AGhlcmFsZABzM2NyZXQ=", "czNjcmV0"];
    for form in forms {
        assert!(!stdout(&out).contains(form), "stdout has {form}");
        assert!(!stderr(&out).contains(form), "stderr has {form}");
    }
    let texts = store_texts(&scratch);
    assert!(texts.len() > 10, "the store holds text: {texts:?}");
    for (place, text) in texts {
        for form in forms {
            assert!(!text.contains(form), "{place} holds {form}: {text}");
        }
    }
}

/// Every text value in every table of the store, with `table.column` for each.
fn store_texts(scratch: &Scratch) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut texts = Vec::new();
    for table in tables {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for column in columns {
            let sql = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
            let mut stmt = conn.prepare(&sql).unwrap();
            let values = stmt
                .query_map([], |r| r.get::<_, Option<String>>(0))
                .unwrap()
                .map(Result::unwrap);
            texts.extend(values.flatten().map(|v| (format!("{table}.{column}"), v)));
        }
    }
    texts
}

/// `herald deliver --until-empty` with the password in HERALD_TEST_SMTP_PW and HERALD_LOG=`log`.
fn deliver_with_password(scratch: &Scratch, password: &str, log: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(repo())
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .args(["deliver", "--until-empty"])
        .env("HERALD_TEST_SMTP_PW", password)
        .env("HERALD_LOG", log)
        .output()
        .unwrap()
}

#[test]
fn smtps_with_auth_delivers_over_implicit_tls() {
    let certs = certs();
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let server = aiosmtpd(&["--smtps", cert, key, "--auth", "herald:s3cret"]);
    let pw = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw.path(), "s3cret\n").unwrap();
    let extra = format!(
        "    tls: tls\n    username: herald\n    password_file: {}\n    ca_file: {}\n    \
         min_tls: 1.2\n",
        pw.path().display(),
        certs.ca.display()
    );
    let scratch = scratch(server.port, &extra);
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("(implicit TLS), 0 failed"),
        "{}",
        stdout(&out)
    );
    assert_received_match_golden(&server, &["alice@example.org", "bob@example.org"]);
}

fn send_with_password(scratch: &Scratch, password: &str) -> Output {
    let out = scratch.herald_own(&["send", RECORDING]);
    assert_exit(&out, 0);
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(repo())
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .args(["deliver", "--until-empty"])
        .env("HERALD_TEST_SMTP_PW", password)
        .output()
        .unwrap()
}

#[test]
fn wrong_password_is_permanent_535_nothing_lands_and_no_message_is_killed() {
    let (_certs, server, scratch) = tls_with_auth("--smtps", "tls");
    let out = send_with_password(&scratch, "wrong");
    assert_exit(&out, 1);
    assert!(maildir(&server).is_empty());
    let attempts = attempts(&scratch);
    let (_, state, outcome, code, detail) = &attempts[0];
    // 535 is a permanent reply, but about the login, not the message: the row is kept.
    assert_eq!(
        (state.as_str(), outcome.as_str(), *code),
        ("queued", "permanent", Some(535)),
        "{detail}"
    );
    assert!(
        detail.contains("AUTH") && detail.contains("refused the login"),
        "{detail}"
    );
    assert!(detail.contains("the message is kept"), "{detail}");
    assert!(
        !detail.contains("wrong"),
        "the password must not be echoed: {detail}"
    );
    // The rows not attempted after the failed login stay queued.
    let queued = attempts[1..].iter().filter(|a| a.1 == "queued").count();
    assert_eq!(queued, 3, "{attempts:#?}");
}

#[test]
fn starttls_required_but_not_offered_is_a_config_error_and_stays_queued() {
    let server = aiosmtpd(&[]);
    let scratch = scratch(server.port, "    tls: starttls\n");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    assert!(maildir(&server).is_empty());
    for (_, state, outcome, code, detail) in attempts(&scratch) {
        assert_eq!(
            (state.as_str(), outcome.as_str(), code),
            ("queued", "config", None)
        );
        assert!(detail.contains("does not offer STARTTLS"), "{detail}");
    }
    assert!(stdout(&out).contains("4 config"), "{}", stdout(&out));
}

#[test]
fn untrusted_certificate_is_a_clear_retryable_error() {
    let certs = certs();
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let server = aiosmtpd(&["--smtps", cert, key]);
    // No ca_file: the test CA is not trusted.
    let scratch = scratch(server.port, "    tls: tls\n");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    assert!(maildir(&server).is_empty());
    let attempts = attempts(&scratch);
    let (_, state, outcome, _, detail) = &attempts[0];
    assert_eq!((state.as_str(), outcome.as_str()), ("queued", "transient"));
    assert!(
        detail.contains("certificate is not trusted") && detail.contains("ca_file"),
        "{detail}"
    );
}

#[test]
fn a_451_on_one_recipient_keeps_only_that_row_queued() {
    let server = aiosmtpd(&["--reply", "alice@example.org=451 4.3.0 mailbox busy"]);
    let scratch = scratch(server.port, "");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    assert_received_match_golden(&server, &["bob@example.org"]);
    for (recipient, state, outcome, code, detail) in attempts(&scratch) {
        if recipient == "alice@example.org" {
            assert_eq!(
                (state.as_str(), outcome.as_str(), code),
                ("queued", "transient", Some(451))
            );
            assert!(
                detail.contains("RCPT TO") && detail.contains("mailbox busy"),
                "{detail}"
            );
        } else {
            assert_eq!((state.as_str(), outcome.as_str()), ("sent", "sent"));
        }
    }
}

#[test]
fn a_550_is_permanent_and_the_row_is_dead() {
    a_550_is_permanent(&[]);
}

#[test]
fn a_550_to_a_pipelined_envelope_is_permanent_and_no_body_follows() {
    a_550_is_permanent(&["--pipelining"]);
}

/// alice's RCPT is refused with 550, on a server started with `options`.
fn a_550_is_permanent(options: &[&str]) {
    let mut args = vec!["--reply", "alice@example.org=550 5.1.1 no such user"];
    args.extend(options);
    let server = aiosmtpd(&args);
    let scratch = scratch(server.port, "");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    assert_received_match_golden(&server, &["bob@example.org"]);
    let dead: Vec<_> = attempts(&scratch)
        .into_iter()
        .filter(|a| a.0 == "alice@example.org")
        .collect();
    assert_eq!(dead.len(), 2);
    for (_, state, outcome, code, detail) in dead {
        assert_eq!(
            (state.as_str(), outcome.as_str(), code),
            ("dead", "permanent", Some(550))
        );
        assert!(detail.contains("no such user"), "{detail}");
    }
    assert!(
        stdout(&out).contains("2 permanent (dead)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn sink_421_at_connect_is_transient() {
    let server = smtp_sink(&["-Q", "CONNECT"]);
    let scratch = scratch(server.port, "");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    let attempts = attempts(&scratch);
    assert_eq!(attempts.len(), 4);
    let (_, state, outcome, code, detail) = &attempts[0];
    assert_eq!(
        (state.as_str(), outcome.as_str(), *code),
        ("queued", "transient", Some(421))
    );
    assert!(detail.contains("greeting"), "{detail}");
    assert!(attempts.iter().all(|a| a.1 == "queued"));
}

#[test]
fn sink_drop_after_the_final_dot_is_ambiguous() {
    let server = smtp_sink(&["-q", "."]);
    let scratch = scratch(server.port, "    max_connections: 1\n");
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 1);
    let attempts = attempts(&scratch);
    assert_eq!(attempts.len(), 4);
    for (_, state, outcome, _, detail) in &attempts {
        assert_eq!(
            (state.as_str(), outcome.as_str()),
            ("queued", "ambiguous"),
            "{detail}"
        );
        assert!(
            detail.contains("final `.`") && detail.contains("same Message-ID"),
            "{detail}"
        );
    }
    assert!(stdout(&out).contains("4 ambiguous"), "{}", stdout(&out));
}

#[test]
fn sink_that_never_answers_times_out_within_the_bound() {
    let server = smtp_sink(&["-W", "CONNECT:3600"]);
    let scratch = scratch(
        server.port,
        "    command_timeout: 1s\n    connect_timeout: 1s\n",
    );
    let out = scratch.herald_own(&["send", RECORDING]);
    assert_exit(&out, 0);
    let start = Instant::now();
    let out = scratch.herald_own(&["deliver", "--until-empty"]);
    // One timeout per connection opened at once (all in parallel), then the rest are not tried.
    assert_elapsed_below(start, Duration::from_secs(5));
    assert_exit(&out, 1);
    let attempts = attempts(&scratch);
    assert_eq!(attempts.len(), 4);
    let (_, state, outcome, code, detail) = &attempts[0];
    assert_eq!(
        (state.as_str(), outcome.as_str(), *code),
        ("queued", "transient", None)
    );
    assert!(detail.contains("did not answer within 1s"), "{detail}");
}

#[test]
fn sink_final_dot_silence_is_ambiguous_after_data_timeout() {
    let server = smtp_sink(&["-W", ".:3600"]);
    let scratch = scratch(server.port, "    data_timeout: 1s\n");
    assert_exit(&scratch.herald_own(&["send", RECORDING]), 0);
    // Timed from here: the first run compiled the rule, which is no part of the bound.
    let start = Instant::now();
    let out = scratch.herald_own(&["deliver", "--until-empty"]);
    assert_elapsed_below(start, Duration::from_secs(8));
    assert_exit(&out, 1);
    for (_, state, outcome, _, detail) in attempts(&scratch) {
        assert_eq!(
            (state.as_str(), outcome.as_str()),
            ("queued", "ambiguous"),
            "{detail}"
        );
    }
}

#[test]
fn slow_sink_within_the_timeouts_still_delivers() {
    // `-p`: smtp-sink offers PIPELINING, but answers the commands after a delayed one before
    // it, out of order; with pipelining off each command waits for its reply.
    let server = smtp_sink(&["-p", "-W", "RCPT:1"]);
    let scratch = scratch(
        server.port,
        "    command_timeout: 5s\n    max_connections: 4\n",
    );
    let start = Instant::now();
    let out = send_and_deliver(&scratch);
    assert_exit(&out, 0);
    assert!(start.elapsed() >= Duration::from_secs(1));
    let attempts = attempts(&scratch);
    assert_eq!(attempts.len(), 4);
    assert!(attempts.iter().all(|a| a.1 == "sent" && a.3 == Some(250)));
}

#[test]
fn mail_test_prints_the_reply_or_a_diagnosis() {
    let server = aiosmtpd(&[]);
    let scratch = scratch(server.port, "");
    let out = scratch.herald_own(&["mail", "test", "--to", "dave@example.org"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("server replied: 250"),
        "{}",
        stdout(&out)
    );
    let received = maildir(&server);
    assert_eq!(received.len(), 1);
    assert_eq!(
        header(&received[0], "To").as_deref(),
        Some("dave@example.org")
    );
    assert!(header(&received[0], "Message-ID").is_some());
    drop(server);

    let closed = scratch_port_closed();
    let out = closed.herald_own(&["mail", "test", "--to", "dave@example.org"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("connection refused"),
        "{}",
        stdout(&out)
    );
}

fn scratch_port_closed() -> Scratch {
    scratch(free_port(), "    connect_timeout: 2s\n")
}

/// One broadcast event to alice with `body`, as a JSON line.
fn broadcast_event(id: &str, body: &str) -> String {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "omero://omero.example.org",
        "type": "herald.broadcast", "time": "2026-11-23T09:00:00Z",
        "data": {"subject": "Notice", "body": body, "user_names": ["alice"]}
    })
    .to_string()
}

/// Send `events` into the store and deliver them.
fn send_lines_and_deliver(scratch: &Scratch, events: &[String]) -> Output {
    let path = scratch.path("events.jsonl");
    std::fs::write(&path, events.join("\n") + "\n").unwrap();
    let out = scratch.herald_own(&["send", path.to_str().unwrap()]);
    assert_exit(&out, 0);
    scratch.herald_own(&["deliver", "--until-empty"])
}

/// The `.eml` files the file transport writes for `events` (same rules, same key, same bytes).
fn file_transport_bytes(events: &[String]) -> Vec<Vec<u8>> {
    let scratch = Scratch::with_config(&format!(
        "mail:\n  from: omero@localhost\n  transport: file\n\
         directory:\n  path: directory.yaml\nrules:\n{BROADCAST_RULE}"
    ));
    let path = scratch.path("events.jsonl");
    std::fs::write(&path, events.join("\n") + "\n").unwrap();
    assert_exit(
        &scratch.herald_own(&["replay", "--deliver", path.to_str().unwrap()]),
        0,
    );
    scratch.mails().into_iter().map(|(_, b)| b).collect()
}

#[test]
fn dot_stuffing_round_trips() {
    let server = aiosmtpd(&[]);
    let scratch = scratch_with_rules(server.port, "", BROADCAST_RULE);
    let body = ".leading dot\n..two dots\n.\nthe line above is one dot\n. \nend\n";
    let events = [broadcast_event("dots-1", body)];
    let out = send_lines_and_deliver(&scratch, &events);
    assert_exit(&out, 0);
    let received = received_raw(&server);
    assert_eq!(received.len(), 1, "{}", stdout(&out));
    let data = String::from_utf8(received[0].0.clone()).unwrap();
    let (_, got_body) = data.split_once("\r\n\r\n").unwrap();
    assert_eq!(got_body, body.replace('\n', "\r\n"));
    let file = file_transport_bytes(&events);
    assert_eq!(
        data,
        String::from_utf8(file[0].clone()).unwrap(),
        "SMTP DATA differs from the .eml"
    );
}

#[test]
fn smtp_data_has_no_bare_cr_lf_nul_or_smuggled_end_of_data() {
    let server = aiosmtpd(&[]);
    let scratch = scratch_with_rules(server.port, "", BROADCAST_RULE);
    let smuggle = "before\r.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.net>\r\n\
                   DATA\r\nforged\n.\nlone lf\rlone cr\0nul\r\nafter\n";
    let events = [broadcast_event("smuggle-1", smuggle)];
    let out = send_lines_and_deliver(&scratch, &events);
    assert_exit(&out, 0);
    let received = received_raw(&server);
    assert_eq!(
        received.len(),
        1,
        "one message, none smuggled: {received:?}"
    );
    let (data, rcpt) = &received[0];
    assert_eq!(rcpt, &["alice@example.org"]);
    assert_clean_line_ends(data, "SMTP DATA");
    let commands = commands(&server);
    assert_eq!(
        commands.iter().filter(|c| c.ends_with("MAIL")).count(),
        1,
        "{commands:?}"
    );
    let parts = crate::mail_bytes::python_parts(&[&write_temp(data)]);
    assert_eq!(
        parts[0][0].body,
        "before\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<victim@example.net>\nDATA\n\
         forged\n.\nlone lf\nlone cr\0nul\nafter\n"
    );
}

fn write_temp(bytes: &[u8]) -> tempfile::TempPath {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file.into_temp_path()
}

#[test]
fn starttls_refused_after_offer_sends_nothing_in_clear() {
    let certs = certs();
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let extra = format!(
        "    tls: starttls\n    username: herald\n    password_env: HERALD_TEST_SMTP_PW\n    \
         ca_file: {}\n",
        certs.ca.display()
    );
    // Offered, then refused with 454; offered, then the handshake fails (an untrusted certificate).
    let refused = aiosmtpd(&[
        "--starttls",
        cert,
        key,
        "--refuse-starttls",
        "--auth",
        "herald:s3cret",
    ]);
    let untrusted = aiosmtpd(&["--starttls", cert, key, "--auth", "herald:s3cret"]);
    for (server, extra) in [
        (&refused, extra.clone()),
        (&untrusted, extra.replace("ca_file", "# ca_file")),
    ] {
        let scratch = scratch(server.port, &extra);
        let out = scratch.herald_own(&["send", RECORDING]);
        assert_exit(&out, 0);
        let out = deliver_with_password(&scratch, "s3cret", "debug");
        assert_exit(&out, 1);
        let commands = commands(server);
        assert!(
            commands.contains(&"clear STARTTLS".to_owned()),
            "{commands:?}"
        );
        for verb in ["AUTH", "MAIL", "RCPT", "DATA"] {
            assert!(
                !commands.iter().any(|c| c.ends_with(verb)),
                "{verb} was sent: {commands:?}"
            );
        }
        assert!(received_raw(server).is_empty());
        let attempts = attempts(&scratch);
        assert!(!attempts.is_empty());
        for (_, state, outcome, _, detail) in attempts {
            assert_eq!(state, "queued", "{outcome}: {detail}");
            assert_ne!(outcome, "sent", "{detail}");
        }
        assert_eq!(
            scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
            4
        );
    }
}

#[test]
fn no_common_auth_mechanism_is_a_config_failure() {
    let server = aiosmtpd(&["--only-auth-mechanism", "CRAM-MD5"]);
    let scratch = scratch(
        server.port,
        "    username: herald\n    password_env: HERALD_TEST_SMTP_PW\n",
    );
    let out = scratch.herald_own(&["send", RECORDING]);
    assert_exit(&out, 0);
    let out = deliver_with_password(&scratch, "s3cret", "info");
    assert_exit(&out, 1);
    let commands = commands(&server);
    for verb in ["AUTH", "MAIL"] {
        assert!(!commands.iter().any(|c| c.ends_with(verb)), "{commands:?}");
    }
    let attempts = attempts(&scratch);
    assert!(!attempts.is_empty());
    for (_, state, outcome, _, detail) in attempts {
        assert_eq!(
            (state.as_str(), outcome.as_str()),
            ("queued", "config"),
            "{detail}"
        );
        assert!(
            detail.contains("no AUTH mechanism Herald speaks"),
            "{detail}"
        );
    }
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        4
    );
}

/// (envelope writes, body writes) Herald made to a real smtp-sink, seen through a tap.
fn writes_to_smtp_sink(options: &[&str]) -> (Vec<String>, Vec<String>) {
    let sink = smtp_sink(options);
    let tap = Tap::to(sink.port);
    let scratch = scratch(tap.port, "    max_connections: 1\n");
    assert_exit(&send_and_deliver(&scratch), 0);
    assert_eq!(tap.dots(), 4, "the four messages were sent");
    let reads = tap.reads();
    let envelopes = reads
        .iter()
        .filter(|r| r.contains("MAIL FROM:"))
        .cloned()
        .collect();
    let bodies = reads
        .iter()
        .filter(|r| r.contains("Message-ID:"))
        .cloned()
        .collect();
    (envelopes, bodies)
}

#[test]
fn a_server_offering_pipelining_gets_each_envelope_in_one_write_and_each_body_with_its_dot() {
    let (envelopes, bodies) = writes_to_smtp_sink(&[]);
    assert_eq!(envelopes.len(), 4, "{envelopes:?}");
    for envelope in &envelopes {
        assert!(
            envelope.starts_with("MAIL FROM:<omero@localhost>")
                && envelope.matches("\r\n").count() == 3
                && envelope.contains("\r\nRCPT TO:<")
                && envelope.ends_with(">\r\nDATA\r\n"),
            "MAIL, RCPT and DATA in one write (RFC 2920): {envelope:?}"
        );
    }
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    assert!(
        bodies.iter().all(|b| b.ends_with("\r\n.\r\n")),
        "each body leaves with its final dot"
    );
}

#[test]
fn a_server_not_offering_pipelining_gets_one_command_at_a_time() {
    let (envelopes, _) = writes_to_smtp_sink(&["-p"]);
    assert_eq!(envelopes.len(), 4, "{envelopes:?}");
    for envelope in &envelopes {
        assert!(
            envelope.starts_with("MAIL FROM:") && !envelope.contains("RCPT"),
            "no pipelining unless offered: {envelope:?}"
        );
    }
}
