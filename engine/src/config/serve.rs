//! The `http`, `serve` and `log` sections: where `herald serve` listens, who may
//! call it, which event types it takes, how it stops and logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::delivery::Interval;
use super::scalar::{check_text, rejected};
use super::units::{MIB, parse_size};
use super::values::PathValue;

/// The `http` section.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Where the API listens; 127.0.0.1:8025 by default.
    pub listen: SocketAddr,
    /// The largest request body taken, in bytes (1 MiB by default).
    pub max_body: usize,
    /// Who may call the API, and for what.
    pub tokens: Vec<TokenConfig>,
    /// HTTPS instead of plain HTTP, when `cert_file` and `key_file` are set.
    pub tls: Option<ServerTls>,
}

/// A listener's certificate chain and private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            max_body: MIB as usize,
            tokens: Vec::new(),
            tls: None,
        }
    }
}

/// One bearer token: its name (for logs), its scope and where its secret is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    pub name: String,
    pub scope: Scope,
    pub source: TokenSource,
}

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Posting events only.
    Ingest,
    /// Everything.
    Admin,
}

/// Where a token's secret lives; the YAML never holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
}

/// The `serve` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// How long evaluations and SMTP sessions in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The `log` section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log lines are written on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFields {
    listen: Option<Listen>,
    max_body: Option<BodySize>,
    tokens: Option<Vec<RawToken>>,
    cert_file: Option<PathValue>,
    key_file: Option<PathValue>,
}

/// The `http` section as written: `cert_file` and `key_file` come together or not at all.
#[derive(Default, Deserialize)]
#[serde(try_from = "HttpFields")]
pub(super) struct RawHttp {
    listen: Option<Listen>,
    max_body: Option<BodySize>,
    tokens: Option<Vec<RawToken>>,
    tls: Option<ServerTls>,
}

impl TryFrom<HttpFields> for RawHttp {
    type Error = String;

    fn try_from(h: HttpFields) -> Result<RawHttp, String> {
        let tls = server_tls(h.cert_file, h.key_file)?;
        Ok(RawHttp {
            listen: h.listen,
            max_body: h.max_body,
            tokens: h.tokens,
            tls,
        })
    }
}

/// `cert_file` and `key_file` of a listener: both (TLS) or neither (plain).
pub(super) fn server_tls(
    cert_file: Option<PathValue>,
    key_file: Option<PathValue>,
) -> Result<Option<ServerTls>, String> {
    match (cert_file, key_file) {
        (Some(cert), Some(key)) => Ok(Some(ServerTls {
            cert_file: cert.0,
            key_file: key.0,
        })),
        (None, None) => Ok(None),
        _ => Err(
            "TLS needs both cert_file (the PEM certificate chain) and key_file (its PEM \
                  private key); set both, or neither for plain text on loopback"
                .into(),
        ),
    }
}

/// A token as written: exactly one of `token_file` and `token_env`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFields {
    name: TokenName,
    scope: Scope,
    token_file: Option<PathValue>,
    token_env: Option<TokenName>,
}

#[derive(Deserialize)]
#[serde(try_from = "TokenFields")]
struct RawToken {
    name: String,
    scope: Scope,
    source: TokenSource,
}

impl TryFrom<TokenFields> for RawToken {
    type Error = String;

    fn try_from(t: TokenFields) -> Result<RawToken, String> {
        let source = match (t.token_file, t.token_env) {
            (Some(file), None) => TokenSource::File(file.0),
            (None, Some(env)) => TokenSource::Env(env.0),
            _ => {
                return Err(format!(
                    "token {:?} needs exactly one of token_file (a file holding the token) \
                     or token_env (an environment variable holding it)",
                    t.name.0
                ));
            }
        };
        Ok(RawToken {
            name: t.name.0,
            scope: t.scope,
            source,
        })
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServe {
    shutdown_grace: Option<Interval>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    format: Option<LogFormat>,
}

impl RawHttp {
    /// Defaults applied, token files resolved against the config's folder.
    pub(super) fn resolve(self, base: &Path) -> HttpConfig {
        let d = HttpConfig::default();
        let tokens = self.tokens.unwrap_or_default();
        HttpConfig {
            listen: self.listen.map_or(d.listen, |l| l.0),
            max_body: self.max_body.map_or(d.max_body, |s| s.0),
            tokens: tokens.into_iter().map(|t| t.resolve(base)).collect(),
            tls: self.tls.map(|tls| tls.resolve(base)),
        }
    }
}

impl ServerTls {
    /// Both files resolved against the config's folder.
    pub(super) fn resolve(self, base: &Path) -> ServerTls {
        ServerTls {
            cert_file: base.join(self.cert_file),
            key_file: base.join(self.key_file),
        }
    }
}

impl RawToken {
    fn resolve(self, base: &Path) -> TokenConfig {
        let source = match self.source {
            TokenSource::File(file) => TokenSource::File(base.join(file)),
            env => env,
        };
        TokenConfig {
            name: self.name,
            scope: self.scope,
            source,
        }
    }
}

impl RawServe {
    pub(super) fn resolve(self) -> ServeConfig {
        let d = ServeConfig::default();
        ServeConfig {
            shutdown_grace: self.shutdown_grace.map_or(d.shutdown_grace, |i| i.0),
        }
    }
}

impl RawLog {
    pub(super) fn resolve(self) -> LogConfig {
        LogConfig {
            format: self.format.unwrap_or_default(),
        }
    }
}

/// `http.listen`: an IP address and port.
struct Listen(SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "an address and port, e.g. 127.0.0.1:8025", |text| {
            text.trim().parse().map(Listen).or_else(|_| rejected())
        })
    }
}

/// `http.max_body`: a size from 1 KiB to 1 GiB.
struct BodySize(usize);

impl<'de> Deserialize<'de> for BodySize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(
            d,
            "a size from 1KiB to 1GiB, e.g. 1MiB",
            |text| match parse_size(text) {
                Some(n) if (1024..=1 << 30).contains(&n) => Ok(BodySize(n as usize)),
                _ => rejected(),
            },
        )
    }
}

/// A token's name or an environment variable's: letters, digits, `_`, `-`, `.`.
struct TokenName(String);

impl<'de> Deserialize<'de> for TokenName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a name of letters, digits, `_`, `-` or `.`", |text| {
            let ok = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if ok {
                Ok(TokenName(text.to_owned()))
            } else {
                rejected()
            }
        })
    }
}
