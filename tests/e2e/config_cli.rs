//! The admin's front door: `config import-omero` end to end, `config check` warnings about the
//! SMTP password, a huge `module:` refused unread, and a closed stdout ending a command quietly.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Scratch, assert_exit, repo, stderr, stdout};

/// Import `omero config get` output; the YAML must end with a newline and pass `config check`.
fn import(text: &str) -> (String, String) {
    let scratch = Scratch::with_config("");
    std::fs::write(scratch.path("omero.txt"), text).unwrap();
    let out = scratch.herald_own(&[
        "config",
        "import-omero",
        scratch.path("omero.txt").to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    let (yaml, notes) = (stdout(&out), stderr(&out));
    assert!(yaml.ends_with('\n'), "no newline at the end of\n{yaml}");
    assert!(notes.is_empty() || notes.ends_with('\n'), "{notes:?}");
    std::fs::write(scratch.path("herald.yaml"), &yaml).unwrap();
    let check = scratch.herald_own(&["config", "check"]);
    assert_exit(&check, 0);
    (yaml, notes)
}

#[test]
fn import_omero_output_ends_with_a_newline_even_with_nothing_to_note() {
    let (yaml, notes) = import("omero.mail.config=true\nomero.mail.host=smtp.example.org\n");
    assert!(notes.is_empty(), "{notes}");
    assert!(yaml.ends_with("]\n"), "{yaml}");
}

#[test]
fn import_omero_socket_factory_port_overrides_the_mail_port() {
    let (yaml, notes) = import(
        "omero.mail.config=true\nomero.mail.host=smtp.example.org\nomero.mail.port=25\n\
         omero.mail.smtp.socketFactory.class=javax.net.ssl.SSLSocketFactory\n\
         omero.mail.smtp.socketFactory.port=465\n",
    );
    assert!(yaml.contains("    port: 465\n"), "{yaml}");
    assert!(yaml.contains("    tls: tls "), "{yaml}");
    assert!(
        notes.contains("omero.mail.smtp.socketFactory.port=465 differs from omero.mail.port=25"),
        "{notes}"
    );
}

#[test]
fn import_omero_transport_protocol_smtps_is_implicit_tls_and_others_are_not_imported() {
    let (yaml, _) = import("omero.mail.transport.protocol=smtps\nomero.mail.port=465\n");
    assert!(yaml.contains("    tls: tls "), "{yaml}");
    let (yaml, notes) = import("omero.mail.transport.protocol=imap\n");
    assert!(yaml.contains("    tls: none "), "{yaml}");
    assert!(
        notes.contains(
            "not imported: omero.mail.transport.protocol=imap (Herald speaks smtp and smtps)"
        ),
        "{notes}"
    );
}

#[test]
fn import_omero_auth_without_a_username_is_noted_and_does_not_log_in() {
    let (yaml, notes) = import("omero.mail.smtp.auth=true\nomero.mail.password=hunter2\n");
    assert!(
        !yaml.contains("username:") && !yaml.contains("password_env:"),
        "{yaml}"
    );
    assert!(
        notes.contains("omero.mail.smtp.auth=true but omero.mail.username is empty"),
        "{notes}"
    );
    assert!(!yaml.contains("hunter2") && !notes.contains("hunter2"));
}

#[test]
fn import_omero_blank_from_disables_sending() {
    let (yaml, notes) = import("omero.mail.config=true\nomero.mail.from=\n");
    assert!(yaml.contains("  from: \"\"\n"), "{yaml}");
    assert!(notes.contains("omero.mail.from is blank"), "{notes}");
}

#[test]
fn import_omero_never_echoes_values_of_secret_looking_keys() {
    let secrets = [
        ("omero.web.secret_key", "django-s3cret"),
        ("omero.ldap.token", "tok-123"),
        ("omero.security.keyStorePassword", "ksp-456"),
        ("omero.db.pass", "dbpass-789"),
        ("omero.glacier2.IceSSL.Credentials", "cred-000"),
        ("omero.web.sentry_dsn", "https://key@sentry.example.org/1"),
        ("omero.ldap.private", "priv-111"),
    ];
    let mut text: String = secrets.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    text.push_str("omero.ldap.password hunter3\nomero.mail.password=hunter2\n");
    let (yaml, notes) = import(&text);
    for secret in secrets
        .iter()
        .map(|(_, v)| *v)
        .chain(["hunter2", "hunter3"])
    {
        assert!(!yaml.contains(secret), "{secret} in\n{yaml}");
        assert!(!notes.contains(secret), "{secret} in\n{notes}");
    }
    // Still listed, so nothing is dropped silently.
    assert!(notes.contains("omero.web.secret_key=(hidden)"), "{notes}");
    assert!(notes.contains("line 8: (hidden"), "{notes}");
}

#[test]
fn import_omero_control_characters_cannot_inject_yaml_or_reach_the_terminal() {
    // YAML reads a lone CR as a line break: echoed raw, it would add `bogus_key` to the config.
    let (yaml, notes) = import("omero.mail.config=true\nfoo=x\rbogus_key: 1\nbar=\u{1b}[2J\n");
    for text in [&yaml, &notes] {
        assert!(!text.contains(['\r', '\u{1b}']), "{text:?}");
    }
    assert!(
        notes.contains("not imported: foo=x\\rbogus_key: 1"),
        "{notes}"
    );
}

/// A config that logs in to `host` in clear text, with a password file of `mode`.
fn smtp_config(scratch: &Scratch, host: &str, mode: u32) -> String {
    let secret = scratch.path("smtp-password");
    std::fs::write(&secret, "hunter2\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
    format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp:\n    host: {host}\n    username: omero\n    \
         password_file: smtp-password\n"
    )
}

#[test]
fn a_world_readable_password_file_and_auth_in_clear_to_a_remote_host_are_warned_about() {
    let scratch = Scratch::with_config("");
    std::fs::write(
        scratch.path("herald.yaml"),
        smtp_config(&scratch, "smtp.example.org", 0o644),
    )
    .unwrap();
    let config = scratch.path("herald.yaml");
    for args in [&["config", "check"][..], &["outbox", "list"][..]] {
        let out = scratch.herald_own(args);
        assert_exit(&out, 0);
        let err = stderr(&out);
        let file = format!(
            "warning: {}:7:20: mail.smtp.password_file: the password file",
            config.display()
        );
        assert!(err.contains(&file), "{args:?}\n{err}");
        assert!(
            err.contains("can be read by every user on this machine (mode 644)"),
            "{err}"
        );
        assert!(
            err.contains("fix: let only Herald's user (and group) read it: chmod o-r"),
            "{err}"
        );
        assert!(
            err.contains("mail.smtp.tls: AUTH as `omero` goes to smtp.example.org in clear text"),
            "{args:?}\n{err}"
        );
        assert!(!err.contains("hunter2"));
    }
    for host in ["localhost", "127.0.0.1", "\"[::1]\""] {
        std::fs::write(&config, smtp_config(&scratch, host, 0o640)).unwrap();
        let out = scratch.herald_own(&["config", "check"]);
        assert_exit(&out, 0);
        assert!(
            !stderr(&out).contains("warning"),
            "{host}: {}",
            stderr(&out)
        );
    }
    let tls = smtp_config(&scratch, "smtp.example.org", 0o600) + "    tls: starttls\n";
    std::fs::write(&config, tls).unwrap();
    let out = scratch.herald_own(&["config", "check"]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// Run herald with `config`, returning the exit status, stderr and the peak memory (KiB).
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also returns its peak memory; std's wait cannot"
)]
fn run_measured(scratch: &Scratch, args: &[&str]) -> (Option<i32>, String, i64) {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(repo())
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut err).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and usage are valid for writes.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, err, usage.ru_maxrss)
}

fn sparse(path: &Path, start: &[u8], len: u64) {
    std::fs::write(path, start).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_3_gb_module_is_refused_by_its_header_or_size_without_being_read() {
    let scratch = Scratch::with_config("");
    let huge = 3u64 << 30;
    for (name, start, says) in [
        (
            "component.wasm",
            &b"\0asm\x0d\0\x01\0"[..],
            "it is 3221225472 bytes; a rule component may be at most 67108864 bytes",
        ),
        (
            "zeros.wasm",
            &b""[..],
            "it is not a WebAssembly component (it starts with the bytes 0000000000000000)",
        ),
    ] {
        sparse(&scratch.path(name), start, huge);
        std::fs::write(
            scratch.path("herald.yaml"),
            format!(
                "state_dir: var\ningest: {{custom_types: [test.big]}}\nrules:\n  \
                 - {{name: big, module: {name}, on: [test.big]}}\n"
            ),
        )
        .unwrap();
        let (code, err, peak_kib) = run_measured(&scratch, &["config", "check"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("rule `big`: cannot read module"), "{err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            peak_kib < 512 * 1024,
            "{name}: peak memory {peak_kib} KiB: the file was read"
        );
    }
}

#[test]
fn a_closed_stdout_ends_a_command_quietly_by_sigpipe() {
    let scratch = Scratch::new();
    for args in [&["config", "check"][..], &["rules", "list"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(repo())
            .arg("--config")
            .arg(repo().join("etc/herald.yaml"))
            .arg("--state-dir")
            .arg(scratch.path("var"))
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}
