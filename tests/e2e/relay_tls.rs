//! The relay's STARTTLS and AUTH PLAIN/LOGIN, driven by Python's smtplib with a test CA.

use std::time::Duration;

use serde_json::json;

use crate::relay::{NO_RULES, message, scratch, start, submit, submit_with, wait_received};
use crate::serve::log_of;
use crate::smtp::{Certs, aiosmtpd, certs};

const PASSWORD: &str = "relay-pass-81f3c2";

fn tls_keys(certs: &Certs, auth: bool) -> String {
    let mut keys = format!(
        "  cert_file: {}\n  key_file: {}\n",
        certs.cert.display(),
        certs.key.display()
    );
    if auth {
        keys.push_str("  auth: [{username: omero, password_file: relay.pass}]\n");
    }
    keys
}

#[test]
fn starttls_then_auth_plain_or_login_relays_and_the_password_is_never_logged() {
    let certs = certs();
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    std::fs::write(scratch.path("relay.pass"), format!("{PASSWORD}\n")).unwrap();
    let (_served, port) = start(&scratch, upstream.port, &tls_keys(&certs, true), NO_RULES);
    let tls = |auth: Vec<&str>| json!({"starttls": true, "cafile": certs.ca, "auth": auth});
    // smtplib tries CRAM-MD5, then PLAIN, then LOGIN: PLAIN is taken.
    let codes = submit_with(
        port,
        &[message(1, "alice@example.org")],
        tls(vec!["omero", PASSWORD]),
    );
    assert_eq!(codes, [235, 250]);
    // A wrong password is 535 and nothing is taken.
    let codes = submit_with(
        port,
        &[message(2, "alice@example.org")],
        tls(vec!["omero", "wrong"]),
    );
    assert_eq!(codes, [535]);
    // Without a login MAIL is refused; in clear AUTH is not offered.
    let plain = submit(port, &[message(3, "alice@example.org")]);
    assert_eq!(plain, [530]);
    let clear = submit_with(port, &[], json!({"auth": ["omero", PASSWORD]}));
    assert_eq!(clear, [0], "no AUTH before STARTTLS");
    let received = wait_received(&upstream, 1, &scratch);
    let text = String::from_utf8_lossy(&received[0].0).into_owned();
    assert!(
        text.starts_with(
            "Received: from omero.example.org ([127.0.0.1]) by relay.test (Herald) with ESMTPSA "
        ),
        "{text}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(crate::smtp::received_raw(&upstream).len(), 1);
    let log = log_of(&scratch);
    assert!(!log.contains(PASSWORD), "the password is in the log");
    assert!(log.contains("SMTP login refused"), "{log}");
}

#[test]
fn auth_login_works_over_starttls() {
    let certs = certs();
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    std::fs::write(scratch.path("relay.pass"), format!("{PASSWORD}\n")).unwrap();
    let (_served, port) = start(&scratch, upstream.port, &tls_keys(&certs, true), NO_RULES);
    // smtplib speaks LOGIN when it is the only mechanism it may use.
    const LOGIN_ONLY: &str = r#"
import json, smtplib, ssl, sys
a = json.load(sys.stdin)
s = smtplib.SMTP("127.0.0.1", a["port"], timeout=30)
s.starttls(context=ssl.create_default_context(cafile=a["cafile"]))
s.ehlo("omero.example.org")
s.user, s.password = "omero", a["password"]
code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
print(code)
s.sendmail("omero@example.org", ["bob@example.org"], b"Subject: login\r\n\r\nhi\r\n")
s.quit()
"#;
    use std::io::Write;
    let mut child = std::process::Command::new(crate::relay::python())
        .args(["-c", LOGIN_ONLY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"port": port, "cafile": certs.ca, "password": PASSWORD}).to_string();
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
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "235");
    wait_received(&upstream, 1, &scratch);
}

#[test]
fn starttls_without_auth_relays_and_says_esmtps() {
    let certs = certs();
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, &tls_keys(&certs, false), NO_RULES);
    let codes = submit_with(
        port,
        &[message(1, "alice@example.org")],
        json!({"starttls": true, "cafile": certs.ca}),
    );
    assert_eq!(codes, [250]);
    let received = wait_received(&upstream, 1, &scratch);
    assert!(String::from_utf8_lossy(&received[0].0).contains("with ESMTPS id"));
}

#[test]
fn relayed_mail_is_dkim_signed_with_mail_smtp_dkim_and_verifies_at_the_receiver() {
    use crate::dkim::{ED25519_PRIVATE, ED25519_PUBLIC, RSA_PRIVATE, RSA_PUBLIC, verify};
    use mail_auth::DkimResult;
    for (selector, algorithm, private, public) in [
        ("rsa1", "rsa", RSA_PRIVATE, RSA_PUBLIC),
        ("ed1", "ed25519", ED25519_PRIVATE, ED25519_PUBLIC),
    ] {
        let upstream = aiosmtpd(&[]);
        let scratch = scratch();
        std::fs::write(scratch.path("dkim.key"), private).unwrap();
        let port = crate::support::free_port();
        let yaml = crate::relay::yaml(upstream.port, port, "", NO_RULES).replace(
            "    hello_name: herald.test\n",
            &format!(
                "    hello_name: herald.test\n    dkim: {{selector: {selector}, domain: \
                 example.org, key_file: dkim.key, algorithm: {algorithm}}}\n"
            ),
        );
        let _served = crate::serve::Served::start(&scratch, &yaml, &[]);
        crate::relay::wait_listening(port);
        assert_eq!(submit(port, &[message(1, "alice@example.org")]), [250]);
        let received = wait_received(&upstream, 1, &scratch);
        let data = &received[0].0;
        let text = String::from_utf8_lossy(data);
        assert!(text.starts_with("DKIM-Signature:"), "{text}");
        assert_eq!(
            verify(data, selector, algorithm, public),
            [DkimResult::Pass],
            "{algorithm}: {text}"
        );
        let tampered = text.replace("Body 1:", "Body 2:");
        let results = verify(tampered.as_bytes(), selector, algorithm, public);
        assert!(
            !results.is_empty() && results.iter().all(|r| *r != DkimResult::Pass),
            "{algorithm}: {results:?}"
        );
    }
}
