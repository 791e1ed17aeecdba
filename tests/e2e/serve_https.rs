//! `herald serve` over HTTPS (`http.cert_file`/`key_file`), with Python's TLS client as the real client.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::mail_bytes::python;
use crate::serve::{INGEST_TOKEN, log_of, user_created};
use crate::smtp::certs;
use crate::support::{Scratch, assert_exit, free_port, wait_for};

/// GET or POST over HTTPS, trusting `ca` only (`-` trusts the system's roots); prints the
/// status and the body, or `TLS <reason>` when the handshake or verification fails.
const CLIENT: &str = r#"
import ssl, sys, urllib.request, urllib.error
ca, url, token, body = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=None if ca == "-" else ca)
headers = {"Content-Type": "application/cloudevents+json"}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, data=body.encode() if body else None, headers=headers)
try:
    r = urllib.request.urlopen(req, context=ctx, timeout=10)
    print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except (ssl.SSLError, urllib.error.URLError, ConnectionError) as e:
    print("TLS", e)
"#;

/// (status line, body) of one HTTPS request.
fn https(ca: &str, url: &str, token: &str, body: &str) -> (String, String) {
    let out = Command::new(python())
        .args(["-c", CLIENT, ca, url, token, body])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, rest) = text.split_once('\n').unwrap_or((&text, ""));
    (status.trim().to_owned(), rest.trim().to_owned())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `herald serve` with `tls` keys under `http:`, mail kept queued, on a free port.
fn serve_https(scratch: &Scratch, port: u16, tls: &str) -> Killed {
    let yaml = format!(
        "mail: {{from: \"\"}}\nrules:\n  - {{name: new-user, module: builtin:new-user, on: \
         [omero.user.created]}}\nhttp:\n  listen: 127.0.0.1:{port}\n{tls}  tokens:\n    \
         - {{name: omero, scope: ingest, token_file: ingest.token}}\n"
    );
    std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
    std::fs::write(scratch.path("ingest.token"), INGEST_TOKEN).unwrap();
    let log = File::create(scratch.path("serve.log")).unwrap();
    Killed(
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(scratch.path("herald.yaml"))
            .arg("--state-dir")
            .arg(scratch.path("var"))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn tls_keys(cert: &Path, key: &Path) -> String {
    format!(
        "  cert_file: {}\n  key_file: {}\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn the_api_serves_https_with_the_configured_certificate_and_only_https() {
    let scratch = Scratch::with_config("");
    let certs = certs();
    let port = free_port();
    let mut serving = serve_https(&scratch, port, &tls_keys(&certs.cert, &certs.key));
    let ca = certs.ca.to_str().unwrap();
    let base = format!("https://localhost:{port}");
    let up = wait_for(Duration::from_secs(120), || {
        https(ca, &format!("{base}/healthz"), "", "").0 == "200"
    });
    assert!(up, "no HTTPS /healthz; log:\n{}", log_of(&scratch));
    assert!(serving.0.try_wait().unwrap().is_none());

    let event = user_created("tls-1", 7);
    let (status, body) = https(
        ca,
        &format!("{base}/v1/events"),
        INGEST_TOKEN,
        &event.to_string(),
    );
    assert_eq!(status, "202", "{body}");
    assert_eq!(
        scratch.count("SELECT count(*) FROM events WHERE id = 'tls-1'"),
        1
    );

    // A client that does not trust the test CA refuses the server's certificate.
    let (untrusted, _) = https("-", &format!("{base}/healthz"), "", "");
    assert!(untrusted.starts_with("TLS"), "{untrusted}");
    // Plain HTTP gets no HTTP answer: the listener speaks TLS only.
    let plain = ureq::get(&format!("http://127.0.0.1:{port}/healthz")).call();
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // The service is unharmed by both.
    assert_eq!(https(ca, &format!("{base}/healthz"), "", "").0, "200");
}

#[test]
fn a_key_that_does_not_match_the_certificate_stops_start_naming_http_key_file() {
    let scratch = Scratch::with_config("");
    let (ours, theirs) = (certs(), certs());
    let mut serving = serve_https(&scratch, free_port(), &tls_keys(&ours.cert, &theirs.key));
    let exited = wait_for(Duration::from_secs(120), || {
        serving.0.try_wait().unwrap().is_some()
    });
    assert!(exited, "herald serve started with a foreign key");
    let status = serving.0.wait().unwrap();
    assert!(!status.success());
    let log = log_of(&scratch);
    assert!(log.contains("http.key_file"), "{log}");
    assert!(log.contains("does not match"), "{log}");
}

#[test]
fn a_cert_file_without_a_key_file_is_a_config_error_naming_both() {
    let scratch = Scratch::with_config(
        "rules:\n  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n\
         http:\n  listen: 127.0.0.1:8025\n  cert_file: cert.pem\n",
    );
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 2);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("herald.yaml:"), "{text}");
    assert!(
        text.contains("cert_file") && text.contains("key_file"),
        "{text}"
    );
}

#[test]
fn a_sigterm_while_the_rules_compile_stops_the_service_cleanly_once_it_listens() {
    let scratch = Scratch::with_config("");
    let port = free_port();
    let yaml = format!(
        "mail: {{from: \"\"}}\nrules:\n  - {{name: new-user, module: builtin:new-user, on: \
         [omero.user.created]}}\nhttp:\n  listen: 127.0.0.1:{port}\n  tokens:\n    \
         - {{name: omero, scope: ingest, token_file: ingest.token}}\n"
    );
    std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
    std::fs::write(scratch.path("ingest.token"), INGEST_TOKEN).unwrap();
    let log = File::create(scratch.path("serve.log")).unwrap();
    let mut serving = Killed(
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(scratch.path("herald.yaml"))
            .arg("--state-dir")
            .arg(scratch.path("var"))
            .arg("serve")
            .env("HERALD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let caught = wait_for(Duration::from_secs(60), || {
        log_of(&scratch).contains("signals caught")
    });
    assert!(caught, "{}", log_of(&scratch));
    // SAFETY: kill(2) on our own child with a valid signal.
    unsafe { libc::kill(serving.0.id() as libc::pid_t, libc::SIGTERM) };
    let exited = wait_for(Duration::from_secs(120), || {
        serving.0.try_wait().unwrap().is_some()
    });
    assert!(
        exited,
        "SIGTERM during start was lost:\n{}",
        log_of(&scratch)
    );
    assert!(serving.0.wait().unwrap().success(), "{}", log_of(&scratch));
    assert!(
        log_of(&scratch).contains("herald serve: stopped"),
        "{}",
        log_of(&scratch)
    );
}
