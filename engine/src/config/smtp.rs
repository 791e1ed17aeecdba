//! The `mail.smtp` section: OMERO's `omero.mail.*` settings, validated, with OMERO's defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::scalar::{OkOrDefault, Scalar, check_scalar, check_text, rejected};
use super::values::PathValue;
use super::yaml::{Seg, Source};
use super::{Config, ConfigError, Diagnostic, LoadError, SmtpConfig, TransportKind};

/// OMERO's `omero.mail.smtp.connectiontimeout` and `omero.mail.smtp.timeout`: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once unless `max_connections` says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP, as OMERO's default (`javax.net.SocketFactory`, no STARTTLS).
    #[default]
    None,
    /// STARTTLS is required: a server that does not offer it is a configuration error.
    Starttls,
    /// Implicit TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// The lowest TLS version accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MinTls {
    /// TLS 1.2 (the default).
    #[default]
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

/// Where the SMTP password comes from; the password itself is read only when sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// The first line of this file.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

impl PasswordSource {
    /// The password now: the first line of the file, or the variable's value. Callers name
    /// the config key in their error.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            PasswordSource::File(path) => Ok(std::fs::read_to_string(path)?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()),
            PasswordSource::Env(name) => std::env::var(name).map_err(|err| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("${name}: {err}"))
            }),
        }
    }
}

/// DKIM signing of every message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimSettings {
    /// The selector (`s=`).
    pub selector: String,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The private key: PKCS#1 PEM for rsa, base64 for ed25519.
    pub key_file: PathBuf,
    /// `rsa` or `ed25519`.
    pub algorithm: DkimAlgorithm,
}

/// The DKIM key type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// RSA-SHA256 (PKCS#1 PEM key).
    #[default]
    Rsa,
    /// Ed25519-SHA256 (base64 key).
    Ed25519,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".to_owned(),
            port: 25,
            hello_name: None,
            tls: TlsMode::None,
            username: None,
            password: None,
            ca_file: None,
            min_tls: MinTls::V1_2,
            connect_timeout: DEFAULT_TIMEOUT,
            command_timeout: DEFAULT_TIMEOUT,
            data_timeout: DEFAULT_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            dkim: None,
        }
    }
}

/// `mail.smtp` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    host: Option<HostName>,
    port: Option<Port>,
    hello_name: Option<HostName>,
    tls: Option<TlsMode>,
    username: Option<Text>,
    password_file: Option<PathValue>,
    password_env: Option<Text>,
    ca_file: Option<PathValue>,
    min_tls: Option<MinTls>,
    connect_timeout: Option<Timeout>,
    command_timeout: Option<Timeout>,
    data_timeout: Option<Timeout>,
    max_connections: Option<Connections>,
    dkim: Option<RawDkim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    selector: Text,
    domain: HostName,
    key_file: PathValue,
    algorithm: Option<DkimAlgorithm>,
}

impl RawSmtp {
    /// Apply OMERO's defaults; paths resolve against `base`.
    pub(super) fn resolve(self, base: &Path) -> SmtpConfig {
        let defaults = SmtpConfig::default();
        let password = match (self.password_file, self.password_env) {
            (Some(file), _) => Some(PasswordSource::File(base.join(file.0))),
            (None, Some(env)) => Some(PasswordSource::Env(env.0)),
            (None, None) => None,
        };
        SmtpConfig {
            host: self.host.map_or(defaults.host, |h| h.0),
            port: self.port.map_or(defaults.port, |p| p.0),
            hello_name: self.hello_name.map(|h| h.0),
            tls: self.tls.unwrap_or_default(),
            username: self.username.map(|u| u.0),
            password,
            ca_file: self.ca_file.map(|p| base.join(p.0)),
            min_tls: self.min_tls.unwrap_or_default(),
            connect_timeout: self.connect_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            command_timeout: self.command_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            data_timeout: self.data_timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            max_connections: self
                .max_connections
                .map_or(DEFAULT_MAX_CONNECTIONS, |c| c.0),
            dkim: self.dkim.map(|d| DkimSettings {
                selector: d.selector.0,
                domain: d.domain.0,
                key_file: base.join(d.key_file.0),
                algorithm: d.algorithm.unwrap_or_default(),
            }),
        }
    }
}

/// Checks across `mail.smtp` keys, reported at the line of the key at fault.
pub(super) fn check(source: Source<'_>, smtp: &SmtpConfig) -> Result<(), ConfigError> {
    let at = |key: &'static str| [Seg::Key("mail"), Seg::Key("smtp"), Seg::Key(key)];
    let both = text_has_key(source, "password_file") && text_has_key(source, "password_env");
    if both {
        return Err(source.error(
            &at("password_env"),
            "both password_file and password_env are set".to_owned(),
            "keep one: password_file (a file only Herald can read) or password_env".to_owned(),
        ));
    }
    match (&smtp.username, &smtp.password) {
        (Some(user), None) => Err(source.error(
            &at("username"),
            format!("username `{user}` is set but no password source is"),
            "add `password_file: /etc/herald/smtp-password` or `password_env: HERALD_SMTP_PASSWORD`; \
             the password is never written in this file"
                .to_owned(),
        )),
        (None, Some(_)) => {
            let key = match smtp.password {
                Some(PasswordSource::File(_)) => "password_file",
                _ => "password_env",
            };
            Err(source.error(
                &at(key),
                "a password source is set but no username".to_owned(),
                "add `username:` (OMERO's omero.mail.username), or remove the password key"
                    .to_owned(),
            ))
        }
        _ => Ok(()),
    }
}

impl Config {
    /// Valid settings that put the SMTP password at risk, for `config check` and every
    /// command's start: a `password_file` other users can read, and AUTH in clear text
    /// (`tls: none`) to a host that is not this machine.
    pub fn smtp_warnings(&self) -> Vec<Diagnostic> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let source = Source {
            text: &text,
            file: &self.file,
        };
        warnings(source, &self.mail.smtp, self.mail.transport)
    }
}

fn warnings(source: Source<'_>, smtp: &SmtpConfig, transport: TransportKind) -> Vec<Diagnostic> {
    let mut found = Vec::new();
    if let Some(PasswordSource::File(path)) = &smtp.password {
        found.extend(readable_by_others(path).map(|mode| {
            warning(
                source,
                "password_file",
                format!(
                    "the password file {} can be read by every user on this machine (mode {mode:03o})",
                    path.display()
                ),
                format!(
                    "let only Herald's user (and group) read it: chmod o-r {}",
                    path.display()
                ),
            )
        }));
    }
    let in_clear = transport == TransportKind::Smtp && smtp.tls == TlsMode::None;
    let remote = !is_loopback(&smtp.host);
    if let Some(user) = smtp.username.as_deref().filter(|_| in_clear && remote) {
        found.push(warning(
            source,
            "tls",
            format!(
                "AUTH as `{user}` goes to {} in clear text (tls: none), so the password \
                 crosses the network readable",
                smtp.host
            ),
            "set `tls: starttls` (port 587) or `tls: tls` (port 465); keep `tls: none` only \
             for a relay on this machine"
                .to_owned(),
        ));
    }
    found
}

fn warning(source: Source<'_>, key: &'static str, message: String, fix: String) -> Diagnostic {
    let path = [Seg::Key("mail"), Seg::Key("smtp"), Seg::Key(key)];
    match source.error(&path, message, fix) {
        LoadError::Invalid(diagnostic) => diagnostic,
        LoadError::Read { .. } => unreachable!("Source::error makes a diagnostic"),
    }
}

/// The file's permission bits when every user may read it (group-readable is a choice:
/// `root:herald 0640` is a common setup).
fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then_some(mode)
}

/// `localhost`, `*.localhost`, or a loopback address: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower == "localhost"
        || lower.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `mail.smtp.KEY` is written in the document.
fn text_has_key(source: Source<'_>, key: &str) -> bool {
    let path = [Seg::Key("mail"), Seg::Key("smtp"), Seg::Key(key)];
    let found = source.locate(&path);
    let parent = source.locate(&path[..2]);
    found.is_some() && found != parent
}

/// A non-empty text without surrounding whitespace.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a non-empty text", |text| match text.trim() {
            "" => rejected(),
            trimmed => Ok(Text(trimmed.to_owned())),
        })
    }
}

/// A host name or address: non-empty, no whitespace.
struct HostName(String);

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a host name or IP address", |text| {
            let text = text.trim();
            if text.is_empty() || text.contains(char::is_whitespace) {
                rejected()
            } else {
                Ok(HostName(text.to_owned()))
            }
        })
    }
}

/// A TCP port, 1 to 65535.
struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a port from 1 to 65535", |s| match s {
            Scalar::Int(n) => u16::try_from(n)
                .ok()
                .filter(|&p| p > 0)
                .map(Port)
                .ok_or_default(),
            _ => rejected(),
        })
    }
}

/// `max_connections`: 1 to 100.
struct Connections(u32);

impl<'de> Deserialize<'de> for Connections {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a whole number from 1 to 100", |s| match s {
            Scalar::Int(n @ 1..=100) => Ok(Connections(n as u32)),
            _ => rejected(),
        })
    }
}

/// A timeout: a duration with a unit, above 0 and at most 1h.
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a duration above 0 and at most 1h, e.g. 60s", |s| {
            let time = match s {
                Scalar::Str(text) => {
                    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?
                }
                Scalar::Int(_) => return Err("a unit is needed, e.g. 60s".to_owned()),
                Scalar::Neg(_) => return rejected(),
            };
            if time.is_zero() || time > MAX_TIMEOUT {
                rejected()
            } else {
                Ok(Timeout(time))
            }
        })
    }
}

impl<'de> Deserialize<'de> for MinTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MinTlsVisitor)
    }
}

struct MinTlsVisitor;

impl Visitor<'_> for MinTlsVisitor {
    type Value = MinTls;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("1.2 or 1.3")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MinTls, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<MinTls, E> {
        match v.trim() {
            "1.2" => Ok(MinTls::V1_2),
            "1.3" => Ok(MinTls::V1_3),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::super::{Config, ConfigError, at, expect_invalid};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new("etc/herald.yaml"), None)
    }

    #[test]
    fn defaults_are_omeros() {
        let smtp = parse("").unwrap().mail.smtp;
        assert_eq!((smtp.host.as_str(), smtp.port), ("localhost", 25));
        assert_eq!(smtp.tls, TlsMode::None);
        assert_eq!(smtp.connect_timeout, Duration::from_secs(60));
        assert_eq!(smtp.command_timeout, Duration::from_secs(60));
        assert_eq!((smtp.username, smtp.password), (None, None));
        assert_eq!(smtp.min_tls, MinTls::V1_2);
    }

    #[test]
    fn every_key_is_read_and_paths_resolve_beside_the_config() {
        let text = "mail:\n  smtp:\n    host: smtp.example.org\n    port: 465\n    hello_name: omero.example.org\n    \
                    tls: tls\n    username: omero\n    password_file: secret\n    ca_file: ca.pem\n    \
                    min_tls: 1.3\n    connect_timeout: 5s\n    command_timeout: 30s\n    data_timeout: 2m\n    \
                    max_connections: 8\n    dkim: {selector: s1, domain: example.org, key_file: dkim.pem}\n";
        let smtp = parse(text).unwrap().mail.smtp;
        assert_eq!(smtp.tls, TlsMode::Tls);
        assert_eq!(
            smtp.password,
            Some(PasswordSource::File(PathBuf::from("etc/secret")))
        );
        assert_eq!(smtp.ca_file, Some(PathBuf::from("etc/ca.pem")));
        assert_eq!(smtp.min_tls, MinTls::V1_3);
        assert_eq!(smtp.data_timeout, Duration::from_secs(120));
        assert_eq!(smtp.max_connections, 8);
        let dkim = smtp.dkim.unwrap();
        assert_eq!(dkim.key_file, PathBuf::from("etc/dkim.pem"));
        assert_eq!(dkim.algorithm, DkimAlgorithm::Rsa);
    }

    #[test]
    fn bad_values_name_the_key_line_and_fix() {
        let d = expect_invalid(parse("mail:\n  smtp:\n    port: 0\n"));
        assert_eq!((d.path.as_str(), d.location), ("mail.smtp.port", at(3, 11)));
        assert!(d.fix.contains("465"), "{}", d.fix);
        let d = expect_invalid(parse("mail:\n  smtp:\n    tls: ssl\n"));
        assert_eq!(d.path, "mail.smtp.tls");
        assert!(d.message.contains("starttls"), "{}", d.message);
        let d = expect_invalid(parse("mail:\n  smtp:\n    command_timeout: 60\n"));
        assert!(d.message.contains("a unit is needed"), "{}", d.message);
        let d = expect_invalid(parse("mail:\n  smtp:\n    min_tls: 1.1\n"));
        assert_eq!(d.path, "mail.smtp.min_tls");
        let d = expect_invalid(parse("mail:\n  smtp:\n    password: hunter2\n"));
        assert!(
            d.message.contains("unknown field `password`"),
            "{}",
            d.message
        );
    }

    /// The warnings for `text`, written as `herald.yaml` in `dir`.
    fn warned(dir: &tempfile::TempDir, text: &str) -> Vec<(String, Option<usize>)> {
        let file = dir.path().join("herald.yaml");
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&file, None).unwrap();
        let warnings = config.smtp_warnings();
        warnings
            .into_iter()
            .map(|d| (d.path, d.location.map(|l| l.line)))
            .collect()
    }

    #[test]
    fn a_world_readable_password_file_and_auth_in_clear_to_a_remote_host_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2\n").unwrap();
        let mode =
            |m| std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(m)).unwrap();
        let remote = "mail:\n  transport: smtp\n  smtp:\n    host: smtp.example.org\n    \
                      username: omero\n    password_file: secret\n    tls: none\n";
        mode(0o644);
        let both = [
            ("mail.smtp.password_file".to_owned(), Some(6)),
            ("mail.smtp.tls".to_owned(), Some(7)),
        ];
        assert_eq!(warned(&dir, remote), both);
        mode(0o640);
        assert_eq!(warned(&dir, remote), [both[1].clone()]);
        for host in [
            "localhost",
            "mail.localhost",
            "127.0.0.2",
            "\"::1\"",
            "\"[::1]\"",
        ] {
            let local = remote.replace("smtp.example.org", host);
            assert_eq!(warned(&dir, &local), [], "{host}");
        }
        for safe in ["tls: starttls", "tls: tls"] {
            assert_eq!(
                warned(&dir, &remote.replace("tls: none", safe)),
                [],
                "{safe}"
            );
        }
        // The file transport never logs in; an env password has no file to read.
        assert_eq!(
            warned(&dir, &remote.replace("transport: smtp", "transport: file")),
            []
        );
        let env = remote.replace("password_file: secret", "password_env: PW");
        assert_eq!(warned(&dir, &env), [both[1].clone()]);
    }

    #[test]
    fn username_needs_one_password_source_and_a_source_needs_a_username() {
        let d = expect_invalid(parse("mail:\n  smtp:\n    username: omero\n"));
        assert_eq!(
            (d.path.as_str(), d.location),
            ("mail.smtp.username", at(3, 15))
        );
        assert!(d.fix.contains("password_env"), "{}", d.fix);
        let d = expect_invalid(parse("mail:\n  smtp:\n    password_env: PW\n"));
        assert_eq!(d.path, "mail.smtp.password_env");
        let both = "mail:\n  smtp:\n    username: u\n    password_env: PW\n    password_file: f\n";
        let d = expect_invalid(parse(both));
        assert!(d.message.contains("both"), "{}", d.message);
    }
}
