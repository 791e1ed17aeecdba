//! `omero config get` output (`key=value` lines) turned into Herald YAML; nothing is dropped silently.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The variable the imported config reads the SMTP password from.
pub const PASSWORD_ENV: &str = "HERALD_SMTP_PASSWORD";

/// The result of an import: the YAML, and what the admin must know.
#[derive(Debug, Default)]
pub struct Import {
    /// The Herald config, with notes and skipped keys as comments.
    pub yaml: String,
    /// Things to act on (the password, semantics that differ).
    pub notes: Vec<String>,
    /// Lines not imported, as `key=value` (passwords masked), with the reason.
    pub skipped: Vec<String>,
}

/// Settings read from the lines, keyed by OMERO key.
struct Keys(BTreeMap<String, String>);

impl Keys {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// The mail and web keys Herald reads; any other key is listed as not imported.
const KNOWN: [&str; 18] = [
    "omero.mail.config",
    "omero.mail.from",
    "omero.mail.host",
    "omero.mail.port",
    "omero.mail.username",
    "omero.mail.password",
    "omero.mail.transport.protocol",
    "omero.mail.smtp.auth",
    "omero.mail.smtp.starttls.enable",
    "omero.mail.smtp.socketFactory.class",
    "omero.mail.smtp.socketFactory.port",
    "omero.mail.smtp.socketFactory.fallback",
    "omero.mail.smtp.connectiontimeout",
    "omero.mail.smtp.timeout",
    "omero.mail.smtp.debug",
    "omero.mail.bean",
    "omero.web.admins",
    "omero.web.debug",
];

/// Convert `omero config get` output into Herald YAML.
pub fn import_omero(text: &str, source: &str) -> Import {
    let mut import = Import::default();
    let mut keys = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((key, value)) if KNOWN.contains(&key.trim()) => {
                keys.insert(key.trim().to_owned(), value.to_owned());
            }
            Some((key, value)) => import.skipped.push(format!(
                "{}={} (not a mail setting Herald uses)",
                key.trim(),
                mask(key, value)
            )),
            None => import.skipped.push(unparsable(number + 1, line)),
        }
    }
    let keys = Keys(keys);
    let mut out = format!(
        "# Herald config imported from {source} by `herald config import-omero`.\n\
         # Review it, save it (e.g. as etc/herald.yaml) and check it: herald config check\n\n"
    );
    mail_section(&keys, &mut out, &mut import);
    out.push_str("\ndirectory:\n  path: directory.yaml\n");
    rules_section(&keys, &mut out, &mut import);
    import.notes = import.notes.iter().map(|n| visible(n)).collect();
    import.skipped = import.skipped.iter().map(|s| visible(s)).collect();
    for note in &import.notes {
        let _ = writeln!(out, "# NOTE: {note}");
    }
    if !import.skipped.is_empty() {
        out.push_str("\n# Not imported:\n");
        for line in &import.skipped {
            let _ = writeln!(out, "#   {line}");
        }
    }
    import.yaml = out;
    import
}

/// Words in a key that mark its value as a secret: never echoed, in the YAML or on stderr.
const SECRET_WORDS: [&str; 8] = [
    "pass",
    "secret",
    "token",
    "key",
    "credential",
    "private",
    "dsn",
    "auth",
];

fn looks_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| lower.contains(word))
}

/// Control characters written as escapes: a lone CR in a value would otherwise end the YAML
/// comment it is echoed in (YAML reads CR as a line break) and move the admin's cursor.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn mask(key: &str, value: &str) -> String {
    if looks_secret(key) && !value.trim().is_empty() {
        "(hidden)".to_owned()
    } else {
        value.trim().to_owned()
    }
}

/// A line that is not `key=value`, shown unless it looks like it holds a secret.
fn unparsable(number: usize, line: &str) -> String {
    if looks_secret(line) {
        format!("line {number}: (hidden: it looks like a secret) (not key=value)")
    } else {
        format!("line {number}: `{line}` (not key=value)")
    }
}

/// A YAML double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn mail_section(keys: &Keys, out: &mut String, import: &mut Import) {
    out.push_str("mail:\n");
    let host = keys.get("omero.mail.host").unwrap_or("localhost");
    let from = match keys.0.get("omero.mail.from") {
        Some(from) => from.trim().to_owned(),
        None => format!("omero@{host}"),
    };
    if from.is_empty() {
        import
            .notes
            .push("omero.mail.from is blank, so (as in OMERO) nothing is sent".to_owned());
    }
    let _ = writeln!(out, "  from: {}", quoted(&from));
    out.push_str("  transport: smtp\n  smtp:\n");
    let _ = writeln!(out, "    host: {}", quoted(host));
    let _ = writeln!(out, "    port: {}", port(keys, import));
    tls(keys, out, import);
    auth(keys, out, import);
    timeouts(keys, out, import);
    others(keys, import);
}

fn port(keys: &Keys, import: &mut Import) -> u16 {
    let parse = |key: &str, import: &mut Import| {
        let value = keys.get(key)?;
        let port = value.parse::<u16>().ok().filter(|&p| p > 0);
        if port.is_none() {
            import
                .skipped
                .push(format!("{key}={value} (not a port; 25 is used)"));
        }
        port
    };
    let port = parse("omero.mail.port", import).unwrap_or(25);
    match parse("omero.mail.smtp.socketFactory.port", import) {
        Some(factory) if factory != port => {
            import.notes.push(format!(
                "omero.mail.smtp.socketFactory.port={factory} differs from omero.mail.port={port}; \
                 JavaMail connects to the socket factory's port, so port is {factory}"
            ));
            factory
        }
        _ => port,
    }
}

fn tls(keys: &Keys, out: &mut String, import: &mut Import) {
    const SSL: &str = "javax.net.ssl.SSLSocketFactory";
    let factory = keys.get("omero.mail.smtp.socketFactory.class");
    let smtps = factory == Some(SSL)
        || keys
            .get("omero.mail.transport.protocol")
            .is_some_and(|p| p.eq_ignore_ascii_case("smtps"));
    if let Some(other) = factory.filter(|f| *f != SSL && *f != "javax.net.SocketFactory") {
        import.skipped.push(format!(
            "omero.mail.smtp.socketFactory.class={other} (a custom socket factory; Herald speaks \
             plain, STARTTLS or implicit TLS)"
        ));
    }
    if smtps {
        out.push_str("    tls: tls          # implicit TLS (SMTPS), from socketFactory.class\n");
    } else if keys.flag("omero.mail.smtp.starttls.enable") {
        out.push_str(
            "    tls: starttls     # from smtp.starttls.enable; Herald requires STARTTLS, it never \
             falls back to plain text\n",
        );
    } else {
        out.push_str("    tls: none         # OMERO's default: plain SMTP\n");
    }
    if keys.flag("omero.mail.smtp.socketFactory.fallback") {
        import.notes.push(
            "omero.mail.smtp.socketFactory.fallback=true is not imported: Herald never falls back \
             from TLS to plain text"
                .to_owned(),
        );
    }
    if let Some(protocol) = keys
        .get("omero.mail.transport.protocol")
        .filter(|p| !p.eq_ignore_ascii_case("smtp") && !p.eq_ignore_ascii_case("smtps"))
    {
        import.skipped.push(format!(
            "omero.mail.transport.protocol={protocol} (Herald speaks smtp and smtps)"
        ));
    }
}

fn auth(keys: &Keys, out: &mut String, import: &mut Import) {
    let username = keys.get("omero.mail.username");
    let has_password = keys.get("omero.mail.password").is_some();
    if !keys.flag("omero.mail.smtp.auth") {
        if username.is_some() || has_password {
            import.notes.push(
                "omero.mail.username/password are set but omero.mail.smtp.auth is not true, so \
                 OMERO does not log in; neither does this config"
                    .to_owned(),
            );
        }
        return;
    }
    let Some(username) = username else {
        import.notes.push(
            "omero.mail.smtp.auth=true but omero.mail.username is empty; add mail.smtp.username"
                .to_owned(),
        );
        return;
    };
    let _ = writeln!(out, "    username: {}", quoted(username));
    out.push_str(
        "    # The password is never written here: set the variable, or use password_file instead.\n",
    );
    let _ = writeln!(out, "    password_env: {PASSWORD_ENV}");
    import.notes.push(format!(
        "omero.mail.password was not copied; export {PASSWORD_ENV} with it (or set \
         mail.smtp.password_file to a file only Herald can read)"
    ));
}

fn timeouts(keys: &Keys, out: &mut String, import: &mut Import) {
    let millis = |key: &str, import: &mut Import| -> String {
        match keys.get(key) {
            None => "60s".to_owned(),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => format!("{ms}ms"),
                _ => {
                    import.skipped.push(format!(
                        "{key}={v} (not a positive number of ms; 60s is used)"
                    ));
                    "60s".to_owned()
                }
            },
        }
    };
    let connect = millis("omero.mail.smtp.connectiontimeout", import);
    let command = millis("omero.mail.smtp.timeout", import);
    let _ = writeln!(out, "    connect_timeout: {connect}");
    let _ = writeln!(out, "    command_timeout: {command}");
    let _ = writeln!(out, "    data_timeout: {command}");
}

fn others(keys: &Keys, import: &mut Import) {
    if keys.flag("omero.mail.smtp.debug") {
        import.skipped.push(
            "omero.mail.smtp.debug=true (use HERALD_LOG=debug for the engine's logs)".to_owned(),
        );
    }
    if let Some(bean) = keys
        .get("omero.mail.bean")
        .filter(|b| *b != "defaultMailSender")
    {
        import.skipped.push(format!(
            "omero.mail.bean={bean} (a custom Java mail sender; write a Herald rule instead)"
        ));
    }
}

fn rules_section(keys: &Keys, out: &mut String, import: &mut Import) {
    let on = keys.flag("omero.mail.config");
    if !on {
        import.notes.push(
            "omero.mail.config is not true, so the event senders are imported disabled \
             (enabled: false); broadcast (`herald email`) stays on"
                .to_owned(),
        );
    }
    let _ = write!(
        out,
        "\n# omero.mail.config={on}: the stock senders of mail-senders.example.\n\
         # OMERO configures FailedLoginMailSender in Spring XML, not in `omero config`, so it gets\n\
         # the stock example's settings (contactSystem=true, onSpecificUsers={{root}}).\n\
         rules:\n"
    );
    for (name, event, config) in SENDERS {
        let _ = write!(
            out,
            "  - name: {name}\n    module: builtin:{name}\n    on: [{event}]\n    enabled: {on}\n"
        );
        if !config.is_empty() {
            let _ = writeln!(out, "    config: {config}");
        }
    }
    out.push_str(
        "  - name: broadcast\n    module: builtin:broadcast\n    on: [herald.broadcast]\n    \
         limits: {max_recipients: 1000000}  # `herald email --everyone` reaches every user\n",
    );
    web_error(keys, out, import);
}

/// The stock senders: (rule, event type, config as flow YAML).
const SENDERS: [(&str, &str, &str); 6] = [
    (
        "failed-login",
        "omero.login.failed",
        "{contact_system: true, contact_user: false, on_all_users: false, on_specific_users: [root]}",
    ),
    ("new-user", "omero.user.created", "{mode: parity}"),
    ("new-group", "omero.group.created", ""),
    ("new-comment", "omero.comment.added", ""),
    ("server-up", "omero.server.up", ""),
    ("server-down", "omero.server.down", ""),
];

fn web_error(keys: &Keys, out: &mut String, import: &mut Import) {
    let admins = match keys.get("omero.web.admins").map(web_admins) {
        None => Vec::new(),
        Some(Ok(admins)) => admins,
        Some(Err(err)) => {
            let value = keys.get("omero.web.admins").unwrap_or_default();
            import.skipped.push(format!(
                "omero.web.admins={value} ({err}; expected [[\"Name\", \"email\"], ...])"
            ));
            Vec::new()
        }
    };
    let debug = keys.flag("omero.web.debug");
    if debug {
        import.notes.push(
            "omero.web.debug=true: Django sends no error mail in debug mode, so web-error is \
             imported disabled"
                .to_owned(),
        );
    }
    let list: Vec<String> = admins
        .iter()
        .map(|(name, email)| format!("[{}, {}]", quoted(name), quoted(email)))
        .collect();
    let _ = write!(
        out,
        "  # omero.web.admins\n  - name: web-error\n    module: builtin:web-error\n    \
         on: [omero.web.error]\n    enabled: {}\n    config:\n      web_admins: [{}]\n",
        !debug,
        list.join(", ")
    );
}

/// `[["Name", "email"], ...]` as JSON.
fn web_admins(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let pairs = value.as_array().ok_or("not a list")?;
    pairs
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([name, email]) => match (name.as_str(), email.as_str()) {
                (Some(n), Some(e)) => Ok((n.to_owned(), e.to_owned())),
                _ => Err("a pair holds a non-text value".to_owned()),
            },
            _ => Err("an entry is not a [name, email] pair".to_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, TlsMode};

    fn import(text: &str) -> (Import, Config) {
        let import = import_omero(text, "omero.txt");
        let config = Config::from_str(&import.yaml, Path::new("etc/herald.yaml"), None)
            .unwrap_or_else(|e| panic!("{e}\n{}", import.yaml));
        (import, config)
    }

    #[test]
    fn gmail_starttls_maps_to_required_starttls_without_the_password() {
        let text = "omero.mail.config=true\nomero.mail.host=smtp.googlemail.com\nomero.mail.port=587\n\
                    omero.mail.smtp.auth=true\nomero.mail.username=me@gmail.com\n\
                    omero.mail.password=hunter2\nomero.mail.smtp.starttls.enable=true\n\
                    omero.mail.from=me@gmail.com\nomero.db.name=omero\n";
        let (import, config) = import(text);
        let smtp = &config.mail.smtp;
        assert_eq!(
            (smtp.host.as_str(), smtp.port),
            ("smtp.googlemail.com", 587)
        );
        assert_eq!(smtp.tls, TlsMode::Starttls);
        assert_eq!(smtp.username.as_deref(), Some("me@gmail.com"));
        assert!(!import.yaml.contains("hunter2"));
        assert!(import.notes.iter().any(|n| n.contains(PASSWORD_ENV)));
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s.starts_with("omero.db.name=omero"))
        );
        assert!(import.yaml.contains("#   omero.db.name=omero"));
        assert!(config.rules.iter().all(|r| r.enabled));
    }

    #[test]
    fn ssl_socket_factory_is_implicit_tls_and_mail_config_false_disables_senders() {
        let text = "omero.mail.host=smtp.googlemail.com\nomero.mail.port=465\n\
                    omero.mail.smtp.socketFactory.class=javax.net.ssl.SSLSocketFactory\n\
                    omero.mail.smtp.timeout=30000\nomero.web.admins=[[\"Web Admin\", \"web@example.org\"]]\n";
        let (_, config) = import(text);
        assert_eq!(config.mail.smtp.tls, TlsMode::Tls);
        assert_eq!(
            config.mail.smtp.command_timeout,
            std::time::Duration::from_secs(30)
        );
        assert!(!config.rule("server-up").unwrap().enabled);
        let broadcast = config.rule("broadcast").unwrap();
        assert!(broadcast.enabled);
        assert_eq!(broadcast.limits.max_recipients, 1_000_000);
        let web = config.rule("web-error").unwrap();
        assert!(web.enabled);
        assert_eq!(
            web.config["web_admins"],
            serde_json::json!([["Web Admin", "web@example.org"]])
        );
    }

    #[test]
    fn unparsable_and_unsupported_values_are_listed() {
        let text = "garbage line\nomero.mail.bean=myMailSender\nomero.web.admins=nope\n\
                    omero.other.password=secret\n";
        let (import, _) = import(text);
        assert!(import.skipped.iter().any(|s| s.contains("line 1")));
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s.contains("omero.mail.bean=myMailSender"))
        );
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s.contains("omero.web.admins=nope"))
        );
        assert!(!import.yaml.contains("secret"));
    }

    #[test]
    fn control_characters_in_echoed_lines_are_escaped_so_they_cannot_inject_yaml() {
        let text = "foo=x\rbogus_key: 1\nbar=\u{1b}[31mred\nline\rstate_dir: /tmp/x\n";
        let (import, config) = import(text);
        assert!(!import.yaml.contains('\r') && !import.yaml.contains('\u{1b}'));
        assert!(
            import.yaml.contains("#   foo=x\\rbogus_key: 1 (not"),
            "{}",
            import.yaml
        );
        assert!(import.skipped.iter().all(|s| !s.contains(char::is_control)));
        assert!(import.skipped.iter().any(|s| s.contains("\\u{1b}[31mred")));
        assert_ne!(config.state_dir, Path::new("/tmp/x"));
    }

    #[test]
    fn values_of_secret_looking_keys_and_lines_are_hidden() {
        let text = "omero.web.secret_key=s1\nomero.ldap.token=s2\nomero.x.apiKey=s3\n\
                    omero.x.credentials=s4\nomero.x.private=s5\nomero.web.sentry_dsn=s6\n\
                    omero.db.pass=s7\nomero.x.password s8\nomero.web.prefix=/omero\n";
        let (import, _) = import(text);
        for n in 1..=8 {
            let secret = format!("s{n}");
            assert!(
                !import.yaml.contains(&secret),
                "{secret} in {}",
                import.yaml
            );
            assert!(
                import.skipped.iter().all(|s| !s.contains(&secret)),
                "{secret}"
            );
        }
        assert!(
            import
                .skipped
                .contains(&"omero.web.prefix=/omero (not a mail setting Herald uses)".to_owned())
        );
        assert!(
            import
                .skipped
                .iter()
                .any(|s| s == "omero.web.secret_key=(hidden) (not a mail setting Herald uses)")
        );
    }
}
