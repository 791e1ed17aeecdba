//! Herald as OMERO's mail relay: Python's smtplib submits to the real `herald serve`, which relays into aiosmtpd.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{Served, log_of};
use crate::smtp::{Server, aiosmtpd, aiosmtpd_on, received_raw};
use crate::support::{Scratch, free_port, wait_for};

/// smtplib as OMERO.web (Django) and JavaMail would use it: one session, EHLO, then for each
/// message MAIL, RCPT…, DATA; prints one JSON line per message with the final reply.
pub(crate) const CLIENT: &str = r#"
import json, smtplib, ssl, sys
a = json.load(sys.stdin)
s = smtplib.SMTP("127.0.0.1", a["port"], timeout=30)
s.ehlo("omero.example.org")
if a.get("starttls"):
    s.starttls(context=ssl.create_default_context(cafile=a["cafile"]))
    s.ehlo("omero.example.org")
if a.get("auth"):
    try:
        code, reply = s.login(*a["auth"])
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    except smtplib.SMTPNotSupportedError:
        code = 0
    print(json.dumps({"code": code, "reply": "login"}), flush=True)
    if code != 235:
        sys.exit(0)
for m in a["messages"]:
    try:
        code, reply = s.mail(m["from"], m.get("options", []))
        if code == 250:
            for r in m["to"]:
                s.rcpt(r)
            code, reply = s.data(bytes.fromhex(m["data"]))
        else:
            s.rset()
        print(json.dumps({"code": code, "reply": reply.decode()}), flush=True)
    except Exception as e:
        print(json.dumps({"code": 0, "reply": repr(e)}), flush=True)
        sys.exit(0)
s.quit()
"#;

pub(crate) fn python() -> std::path::PathBuf {
    std::env::var_os("HERALD_AIOSMTPD_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| crate::support::repo().join("target/tools/venv/bin/python"))
}

/// One message to submit: envelope and bytes.
pub(crate) struct Submit {
    pub(crate) from: String,
    pub(crate) to: Vec<String>,
    pub(crate) data: Vec<u8>,
}

fn submit_args(port: u16, messages: &[Submit], extra: Value) -> String {
    let list: Vec<Value> = messages
        .iter()
        .map(|m| json!({"from": m.from, "to": m.to, "data": hex::encode(&m.data)}))
        .collect();
    let mut args = json!({"port": port, "messages": list});
    if let (Value::Object(args), Value::Object(extra)) = (&mut args, extra) {
        args.extend(extra);
    }
    args.to_string()
}

/// Submit with smtplib; the final reply code of each message.
pub(crate) fn submit(port: u16, messages: &[Submit]) -> Vec<u16> {
    submit_with(port, messages, json!({}))
}

pub(crate) fn submit_with(port: u16, messages: &[Submit], extra: Value) -> Vec<u16> {
    let mut child = Command::new(python())
        .args(["-c", CLIENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let input = submit_args(port, messages, extra);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["code"]
                .as_u64()
                .unwrap() as u16
        })
        .collect()
}

/// A message as OMERO.web or a script would write it, with a line that needs dot-stuffing,
/// UTF-8 and a long line.
pub(crate) fn message(n: usize, to: &str) -> Submit {
    let data = format!(
        "From: omero@example.org\r\nTo: {to}\r\nSubject: relay test {n}\r\n\
         Message-ID: <m{n}@omero.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Body {n}: gr\u{fc}\u{df}e aus K\u{f6}ln\r\n.a line that starts with a dot\r\n\r\n{}\r\n",
        "x".repeat(900)
    );
    Submit {
        from: "omero@example.org".into(),
        to: vec![to.into()],
        data: data.into_bytes(),
    }
}

/// `herald serve` relaying to `upstream`, its listener on a free port, with `extra` listener
/// keys and `rules`; returns once the listener answers.
pub(crate) fn start(scratch: &Scratch, upstream: u16, extra: &str, rules: &str) -> (Served, u16) {
    let port = free_port();
    let served = Served::start(scratch, &yaml(upstream, port, extra, rules), &[]);
    wait_listening(port);
    (served, port)
}

pub(crate) fn yaml(upstream: u16, port: u16, extra: &str, rules: &str) -> String {
    format!(
        "mail:\n  from: herald@example.org\n  transport: smtp\n  smtp:\n    host: 127.0.0.1\n    \
         port: {upstream}\n    hello_name: herald.test\n\
         delivery:\n  min_backoff: 1s\n  max_backoff: 1s\n  jitter_percent: 0\n  poll_interval: 1s\n\
         directory:\n  path: directory.yaml\n\
         smtp_listener:\n  listen: 127.0.0.1:{port}\n  hostname: relay.test\n{extra}\
         rules:\n{rules}"
    )
}

pub(crate) const NO_RULES: &str = "  []\n";

pub(crate) fn wait_listening(port: u16) {
    assert!(
        wait_for(Duration::from_secs(60), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the SMTP listener did not start"
    );
}

/// The Message-ID of a message's bytes.
pub(crate) fn message_id(bytes: &[u8]) -> String {
    crate::smtp::header(&String::from_utf8_lossy(bytes), "Message-ID").unwrap_or_default()
}

/// Wait until `server` holds `n` messages; returns them.
pub(crate) fn wait_received(
    server: &Server,
    n: usize,
    scratch: &Scratch,
) -> Vec<(Vec<u8>, Vec<String>)> {
    let arrived = wait_for(Duration::from_secs(60), || received_raw(server).len() >= n);
    assert!(
        arrived,
        "{} of {n} messages arrived; log:\n{}",
        received_raw(server).len(),
        log_of(scratch)
    );
    received_raw(server)
}

#[test]
fn relayed_bytes_equal_the_submitted_bytes_after_herald_s_received_header() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    let mut messages: Vec<Submit> = (0..3).map(|n| message(n, "alice@example.org")).collect();
    messages[2].to = vec!["bob@example.org".into(), "dave@example.org".into()];
    assert_eq!(submit(port, &messages), [250, 250, 250]);
    let received = wait_received(&upstream, 4, &scratch);
    for (bytes, rcpt) in &received {
        let (first, rest) =
            bytes.split_at(bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2);
        let first = String::from_utf8_lossy(first);
        assert!(
            first.starts_with("Received: from omero.example.org ([127.0.0.1]) by relay.test (Herald) with ESMTP id "),
            "{first}"
        );
        let sent = messages
            .iter()
            .find(|m| message_id(&m.data) == message_id(rest))
            .expect("a submitted message");
        assert_eq!(
            String::from_utf8_lossy(rest),
            String::from_utf8_lossy(&sent.data)
        );
        assert_eq!(rest, &sent.data[..], "byte for byte");
        assert_eq!(rcpt.len(), 1, "one envelope per recipient");
        assert!(sent.to.contains(&rcpt[0]));
    }
    assert_eq!(received.len(), 4, "each recipient once");
    let events = scratch.count("SELECT count(*) FROM events WHERE type = 'mail.received'");
    assert_eq!(events, 3);
    let listed = scratch.herald_with(
        &scratch.path("herald.yaml"),
        &["outbox", "list", "--rule", "relay", "--json"],
    );
    let rows: Vec<Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.len(), 4, "{}", String::from_utf8_lossy(&listed.stdout));
    assert!(
        rows.iter()
            .all(|r| r["state"] == "sent" && r["rule"] == "relay")
    );
}

#[test]
fn a_retransmission_with_the_same_message_id_and_envelope_is_stored_and_relayed_once() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    let one = message(7, "alice@example.org");
    let again = message(7, "alice@example.org");
    assert_eq!(submit(port, &[one, again]), [250, 250]);
    assert_eq!(submit(port, &[message(7, "alice@example.org")]), [250]);
    wait_received(&upstream, 1, &scratch);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received_raw(&upstream).len(), 1);
    assert_eq!(scratch.count("SELECT count(*) FROM relay_messages"), 1);
    // Another recipient is another envelope: relayed too.
    assert_eq!(submit(port, &[message(7, "bob@example.org")]), [250]);
    wait_received(&upstream, 2, &scratch);
}

pub(crate) fn scratch() -> Scratch {
    let scratch = Scratch::new();
    std::fs::copy(
        crate::support::repo().join("etc/directory.yaml"),
        scratch.path("directory.yaml"),
    )
    .unwrap();
    scratch
}

#[test]
fn with_the_upstream_down_everything_queues_then_arrives_once() {
    let scratch = scratch();
    let up_port = free_port();
    let (_served, port) = start(&scratch, up_port, "", NO_RULES);
    let messages: Vec<Submit> = (0..5).map(|n| message(n, "alice@example.org")).collect();
    assert_eq!(submit(port, &messages), [250; 5]);
    assert!(
        wait_for(Duration::from_secs(30), || scratch.count(
            "SELECT count(*) FROM attempts WHERE outcome = 'transient'"
        ) >= 5),
        "every row was tried against the missing server; log:\n{}",
        log_of(&scratch)
    );
    let upstream = aiosmtpd_on(up_port, &[]);
    let received = wait_received(&upstream, 5, &scratch);
    std::thread::sleep(Duration::from_secs(3));
    let mut ids: Vec<String> = received_raw(&upstream)
        .iter()
        .map(|(b, _)| message_id(b))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each once");
    assert_eq!(received_raw(&upstream).len(), received.len().max(5));
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'relay' AND state = 'sent'"),
        5
    );
}

/// Reads the client's stream of replies as they come.
fn spawn_client(
    port: u16,
    messages: &[Submit],
) -> (std::process::Child, std::sync::mpsc::Receiver<u16>) {
    let mut child = Command::new(python())
        .args(["-c", CLIENT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let input = submit_args(port, messages, json!({}));
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let code = serde_json::from_str::<Value>(&line).unwrap()["code"]
                .as_u64()
                .unwrap_or(0);
            if tx.send(code as u16).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn sigkill_while_clients_submit_loses_no_message_that_got_a_250() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (served, port) = start(&scratch, upstream.port, "", NO_RULES);
    // Two clients at once, each with its own messages.
    let batch = |base: usize| -> Vec<Submit> {
        (base..base + 400)
            .map(|n| message(n, "alice@example.org"))
            .collect()
    };
    let (mut a, replies_a) = spawn_client(port, &batch(0));
    let (mut b, replies_b) = spawn_client(port, &batch(1000));
    let mut accepted = Vec::new();
    let mut counts = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts[0] + counts[1] < 60 && Instant::now() < deadline {
        for (i, rx) in [&replies_a, &replies_b].into_iter().enumerate() {
            while let Ok(code) = rx.try_recv() {
                if code == 250 {
                    accepted.push(if i == 0 { counts[0] } else { 1000 + counts[1] });
                }
                counts[i] += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill has no memory preconditions; the pid is our live child's.
    unsafe { libc::kill(served.pid() as i32, libc::SIGKILL) };
    drop(served);
    for (i, rx) in [replies_a, replies_b].into_iter().enumerate() {
        for code in rx.iter() {
            if code == 250 {
                accepted.push(if i == 0 { counts[0] } else { 1000 + counts[1] });
            }
            counts[i] += 1;
        }
    }
    let _ = (a.wait(), b.wait());
    eprintln!("{} messages got a 250 before the kill", accepted.len());
    assert!(
        accepted.len() >= 60,
        "{} accepted before the kill",
        accepted.len()
    );
    assert!(
        accepted.len() < 800,
        "the kill came while clients were submitting"
    );
    // Restart on the same store and listener port: everything that got a 250 goes out.
    let _again = Served::start(&scratch, &yaml(upstream.port, port, "", NO_RULES), &[]);
    let wanted: Vec<String> = accepted
        .iter()
        .map(|n| format!("<m{n}@omero.test>"))
        .collect();
    let arrived = wait_for(Duration::from_secs(120), || {
        let ids: Vec<String> = received_raw(&upstream)
            .iter()
            .map(|(b, _)| message_id(b))
            .collect();
        wanted.iter().all(|w| ids.contains(w))
    });
    let ids: Vec<String> = received_raw(&upstream)
        .iter()
        .map(|(b, _)| message_id(b))
        .collect();
    let missing: Vec<&String> = wanted.iter().filter(|w| !ids.contains(w)).collect();
    assert!(arrived, "accepted but never relayed: {missing:?}");
    // Beyond the 250s only the message in flight on each client may have been journaled.
    let extra = ids
        .iter()
        .filter(|id| !wanted.contains(id))
        .collect::<std::collections::BTreeSet<_>>();
    assert!(extra.len() <= 2, "relayed without a 250: {extra:?}");
}

/// A raw SMTP conversation: send `lines`, return everything the server said until it closed
/// or `limit` passed.
fn converse(port: u16, lines: &[&[u8]], limit: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(limit)).unwrap();
    for line in lines {
        stream.write_all(line).unwrap();
    }
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn bad_input_gets_500_501_552_stalls_are_cut_off_and_other_sessions_go_on() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let extra = "  max_size: 2KiB\n  command_timeout: 2s\n  data_timeout: 2s\n";
    let (served, port) = start(&scratch, upstream.port, extra, NO_RULES);
    // A stalled client holds a session open meanwhile.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let started = Instant::now();
    let said = converse(
        port,
        &[
            b"EHLO c\r\n",
            b"FROB\r\n",
            b"MAIL FROM:<no-angle\r\n",
            b"RCPT TO:<a@example.org>\r\n",
            b"MAIL FROM:<a@example.org> SIZE=999999\r\n",
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
        ],
        Duration::from_secs(1),
    );
    assert!(said.starts_with("220 relay.test ESMTP"), "{said}");
    for capability in [
        "SIZE 2048",
        "PIPELINING",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "SMTPUTF8",
    ] {
        assert!(said.contains(capability), "{capability}: {said}");
    }
    assert!(said.contains("\r\n500 5.5.1"), "garbage: {said}");
    assert!(said.contains("\r\n501 "), "bad syntax: {said}");
    assert!(said.contains("\r\n503 5.5.1"), "RCPT before MAIL: {said}");
    assert!(said.contains("\r\n552 5.3.4"), "declared size: {said}");
    assert!(
        said.contains("\r\n354 "),
        "pipelined MAIL, RCPT, DATA: {said}"
    );
    // An undeclared size over the cap: 552 after the data.
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(3000));
    let said = converse(
        port,
        &[
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
            big.as_bytes(),
            b"QUIT\r\n",
        ],
        Duration::from_secs(5),
    );
    assert!(said.contains("\r\n552 5.3.4"), "{said}");
    assert!(said.ends_with("221 2.0.0 Bye\r\n"), "{said}");
    // A recipient that delivery could never send to is refused at RCPT; a body of bare line
    // ends, under the cap as received, is over it once they become CRLF as relayed.
    let bare = format!("{}\r\n.\r\n", "\n".repeat(1500));
    let said = converse(
        port,
        &[
            b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<\"a b\"@example.org>\r\n",
            b"RCPT TO:<b@example.org>\r\nDATA\r\n",
            bare.as_bytes(),
            b"QUIT\r\n",
        ],
        Duration::from_secs(5),
    );
    assert!(said.contains("\r\n553 5.1.3"), "undeliverable: {said}");
    assert!(said.contains("\r\n552 5.3.4"), "bare line ends: {said}");
    assert!(said.ends_with("221 2.0.0 Bye\r\n"), "{said}");
    // Good mail still flows while the stalled session waits.
    assert_eq!(submit(port, &[message(1, "alice@example.org")]), [250]);
    // The stalled client is cut off by command_timeout.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = Vec::new();
    let _ = stalled.read_to_end(&mut greeting);
    let greeting = String::from_utf8_lossy(&greeting);
    assert!(greeting.contains("421 4.4.2"), "{greeting}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    wait_received(&upstream, 1, &scratch);
    let metrics = served
        .get("/metrics", Some(crate::serve::ADMIN_TOKEN))
        .unwrap()
        .body;
    for series in [
        "herald_smtp_listener_total{outcome=\"accepted\"} 1",
        "herald_smtp_listener_total{outcome=\"too_big\"} 3",
        "herald_smtp_listener_total{outcome=\"timeout\"} 1",
    ] {
        assert!(metrics.contains(series), "{series}:\n{metrics}");
    }
}

#[test]
fn a_session_that_moves_no_mail_is_closed_after_100_idle_commands() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    let mut lines: Vec<&[u8]> = vec![b"EHLO c\r\n"];
    lines.extend(std::iter::repeat_n(&b"NOOP\r\n"[..], 100));
    let said = converse(port, &lines, Duration::from_secs(5));
    assert_eq!(said.matches("250 2.0.0 OK\r\n").count(), 99, "{said}");
    assert!(
        said.ends_with("421 4.7.0 Too many commands without mail, closing connection\r\n"),
        "{said}"
    );
    // Accepted mail starts the count again.
    assert_eq!(submit(port, &[message(1, "alice@example.org")]), [250]);
}

#[test]
fn past_max_connections_a_session_gets_421_and_the_others_go_on() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "  max_connections: 1\n", NO_RULES);
    // The readiness probe's connection holds the one slot until the listener sees it close.
    let mut first = None;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut greeting = [0u8; 64];
        let n = stream.read(&mut greeting).unwrap();
        if greeting[..n].starts_with(b"220 ") {
            first = Some(stream);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut first = first.expect("the slot freed by the probe comes back");
    let said = converse(port, &[], Duration::from_secs(5));
    assert!(said.starts_with("421 4.7.0"), "{said}");
    first.write_all(b"QUIT\r\n").unwrap();
    drop(first);
    // The slot is free again.
    let free = wait_for(Duration::from_secs(5), || {
        converse(port, &[b"QUIT\r\n"], Duration::from_secs(2)).starts_with("220 ")
    });
    assert!(free, "the slot came back");
}

#[test]
fn a_client_outside_allow_is_refused_at_connect() {
    let scratch = scratch();
    let (_served, port) = start(&scratch, free_port(), "  allow: [10.0.0.0/8]\n", NO_RULES);
    let said = converse(port, &[], Duration::from_secs(5));
    assert!(said.starts_with("554 5.7.1"), "{said}");
    assert_eq!(scratch.count("SELECT count(*) FROM events"), 0);
}
