//! The `smtp_listener` section: Herald as OMERO's mail relay (where it listens, who may send, what it keeps).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::delivery::Interval;
use super::scalar::{check_text, rejected};
use super::serve::server_tls;
use super::units::{MIB, parse_size};
use super::values::PathValue;
use super::{PasswordSource, ServerTls};

/// The `smtp_listener` section; the listener runs inside `herald serve` when the section is present.
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpListenerConfig {
    /// Where the listener binds; 127.0.0.1:2525 by default.
    pub listen: SocketAddr,
    /// Client networks that may connect; loopback by default. Others are refused at connect.
    pub allow: Vec<IpNet>,
    /// The name in the greeting, EHLO reply and `Received:` header.
    pub hostname: String,
    /// The largest message taken, in bytes (25 MiB); larger ones get 552.
    pub max_size: usize,
    /// Sessions at once; one more is answered 421 and closed.
    pub max_connections: usize,
    /// How long a client may take to send each command line.
    pub command_timeout: Duration,
    /// How long a client may take to send the whole message after DATA.
    pub data_timeout: Duration,
    /// What happens to a recognised OMERO stock mail.
    pub omero_mail: OmeroMail,
    /// Keep bodies after delivery (otherwise purged once delivered or dead).
    pub keep_body: bool,
    /// Copies of one stock mail (OMERO sends one per recipient) within this window are one event.
    pub dedup_window: Duration,
    /// STARTTLS, when `cert_file` and `key_file` are set.
    pub tls: Option<ServerTls>,
    /// Who may log in (AUTH PLAIN/LOGIN, over TLS only); when set, MAIL needs a login.
    pub auth: Vec<ListenerUser>,
}

/// One login of the listener; the password is read at start from its file or variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerUser {
    pub username: String,
    pub password: PasswordSource,
}

/// What happens to a recognised OMERO stock mail (`smtp_listener.omero_mail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OmeroMail {
    /// The original is relayed; the default stock-sender rules skip its event.
    #[default]
    Relay,
    /// The original is not relayed; every rule runs (the default rules make the mail).
    Replace,
    /// The original is relayed and every rule runs too.
    Both,
}

impl Default for SmtpListenerConfig {
    fn default() -> Self {
        SmtpListenerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            allow: ["127.0.0.0/8", "::1/128"]
                .iter()
                .map(|net| net.parse().expect("a valid default network"))
                .collect(),
            hostname: "localhost".into(),
            max_size: 25 * MIB as usize,
            max_connections: 100,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            omero_mail: OmeroMail::Relay,
            keep_body: false,
            dedup_window: Duration::from_secs(120),
            tls: None,
            auth: Vec::new(),
        }
    }
}

impl SmtpListenerConfig {
    /// Whether a client at `ip` may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    listen: Option<Listen>,
    allow: Option<Vec<Network>>,
    hostname: Option<HostName>,
    max_size: Option<MessageSize>,
    max_connections: Option<Connections>,
    command_timeout: Option<Interval>,
    data_timeout: Option<Interval>,
    omero_mail: Option<OmeroMail>,
    keep_body: Option<bool>,
    dedup_window: Option<Interval>,
    cert_file: Option<PathValue>,
    key_file: Option<PathValue>,
    auth: Option<Vec<RawUser>>,
}

/// A login as written: exactly one of `password_file` and `password_env`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFields {
    username: UserName,
    password_file: Option<PathValue>,
    password_env: Option<UserName>,
}

/// A login with its password source (a file still relative to the config's folder).
#[derive(Deserialize)]
#[serde(try_from = "UserFields")]
struct RawUser {
    username: String,
    password: PasswordSource,
}

impl TryFrom<UserFields> for RawUser {
    type Error = String;

    fn try_from(u: UserFields) -> Result<RawUser, String> {
        let password = match (u.password_file, u.password_env) {
            (Some(file), None) => PasswordSource::File(file.0),
            (None, Some(env)) => PasswordSource::Env(env.0),
            _ => {
                return Err(format!(
                    "auth user {:?} needs exactly one of password_file (a file holding the \
                     password) or password_env (an environment variable holding it)",
                    u.username.0
                ));
            }
        };
        Ok(RawUser {
            username: u.username.0,
            password,
        })
    }
}

/// The section as written: `cert_file` and `key_file` come together or not at all.
#[derive(Default, Deserialize)]
#[serde(try_from = "Fields")]
pub(super) struct RawSmtpListener {
    fields: Fields,
    tls: Option<ServerTls>,
}

impl TryFrom<Fields> for RawSmtpListener {
    type Error = String;

    fn try_from(mut fields: Fields) -> Result<RawSmtpListener, String> {
        let tls = server_tls(fields.cert_file.take(), fields.key_file.take())?;
        let logins = fields.auth.as_deref().unwrap_or_default();
        if !logins.is_empty() && tls.is_none() {
            return Err(
                "auth needs cert_file and key_file: logins are only taken over TLS \
                        (STARTTLS); set both, or remove auth"
                    .into(),
            );
        }
        Ok(RawSmtpListener { fields, tls })
    }
}

impl RawSmtpListener {
    /// Defaults applied, TLS files resolved against the config's folder.
    pub(super) fn resolve(self, base: &Path) -> SmtpListenerConfig {
        let d = SmtpListenerConfig::default();
        let f = self.fields;
        SmtpListenerConfig {
            listen: f.listen.map_or(d.listen, |l| l.0),
            allow: f
                .allow
                .map_or(d.allow, |nets| nets.into_iter().map(|n| n.0).collect()),
            hostname: f.hostname.map_or(d.hostname, |h| h.0),
            max_size: f.max_size.map_or(d.max_size, |s| s.0),
            max_connections: f.max_connections.map_or(d.max_connections, |c| c.0),
            command_timeout: f.command_timeout.map_or(d.command_timeout, |i| i.0),
            data_timeout: f.data_timeout.map_or(d.data_timeout, |i| i.0),
            omero_mail: f.omero_mail.unwrap_or_default(),
            keep_body: f.keep_body.unwrap_or(d.keep_body),
            dedup_window: f.dedup_window.map_or(d.dedup_window, |i| i.0),
            tls: self.tls.map(|tls| tls.resolve(base)),
            auth: f
                .auth
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.resolve(base))
                .collect(),
        }
    }
}

impl RawUser {
    fn resolve(self, base: &Path) -> ListenerUser {
        let password = match self.password {
            PasswordSource::File(file) => PasswordSource::File(base.join(file)),
            env => env,
        };
        ListenerUser {
            username: self.username,
            password,
        }
    }
}

/// A user name or an environment variable's: printable ASCII without spaces, 1 to 256 bytes.
struct UserName(String);

impl<'de> Deserialize<'de> for UserName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a name of printable characters without spaces", |text| {
            let ok =
                !text.is_empty() && text.len() <= 256 && text.chars().all(|c| c.is_ascii_graphic());
            if ok {
                Ok(UserName(text.to_owned()))
            } else {
                rejected()
            }
        })
    }
}

/// `listen`: an IP address and port.
struct Listen(SocketAddr);

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "an address and port, e.g. 127.0.0.1:2525", |text| {
            text.trim().parse().map(Listen).or_else(|_| rejected())
        })
    }
}

/// One entry of `allow`: a network (`10.0.0.0/8`) or one address.
struct Network(IpNet);

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(
            d,
            "a network like 10.1.2.0/24 or ::1/128, or one address",
            |text| {
                let text = text.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| Network(net.trunc()))
                    .or_else(|_| rejected())
            },
        )
    }
}

/// `hostname`: a DNS name (letters, digits, `-`, `.`), at most 253 characters.
struct HostName(String);

impl<'de> Deserialize<'de> for HostName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a host name like herald.example.org", |text| {
            let ok = !text.is_empty()
                && text.len() <= 253
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if ok {
                Ok(HostName(text.to_owned()))
            } else {
                rejected()
            }
        })
    }
}

/// `max_size`: from 1 KiB to 1 GiB.
struct MessageSize(usize);

impl<'de> Deserialize<'de> for MessageSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(
            d,
            "a size from 1KiB to 1GiB, e.g. 25MiB",
            |text| match parse_size(text) {
                Some(n) if (1024..=1 << 30).contains(&n) => Ok(MessageSize(n as usize)),
                _ => rejected(),
            },
        )
    }
}

/// `max_connections`: from 1 to 10000.
struct Connections(usize);

impl<'de> Deserialize<'de> for Connections {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::scalar::check_scalar(d, "a number from 1 to 10000", |s| match s {
            super::scalar::Scalar::Int(n) if (1..=10_000).contains(&n) => {
                Ok(Connections(n as usize))
            }
            _ => rejected(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, at, expect_invalid};

    fn load(section: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_str(section, Path::new("/etc/herald/herald.yaml"), None)
    }

    #[test]
    fn an_empty_section_turns_the_listener_on_with_the_defaults() {
        let config = load("smtp_listener: {}\n").unwrap();
        assert_eq!(
            config.smtp_listener,
            Some(SmtpListenerConfig::default()),
            "defaults"
        );
        assert!(load("{}\n").unwrap().smtp_listener.is_none());
        let d = SmtpListenerConfig::default();
        assert_eq!(d.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(d.max_size, 25 << 20);
        assert!(d.allows("127.0.0.1".parse().unwrap()));
        assert!(d.allows("::1".parse().unwrap()));
        assert!(d.allows("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!d.allows("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn every_key_is_read() {
        let config = load(
            "smtp_listener:\n  listen: 0.0.0.0:25\n  allow: [10.1.2.0/24, 192.168.1.7]\n  \
             hostname: relay.example.org\n  max_size: 1MiB\n  max_connections: 8\n  \
             command_timeout: 30s\n  data_timeout: 2m\n  omero_mail: replace\n  keep_body: true\n  \
             dedup_window: 10s\n  cert_file: c.pem\n  key_file: k.pem\n",
        )
        .unwrap();
        let l = config.smtp_listener.unwrap();
        assert_eq!(l.listen.to_string(), "0.0.0.0:25");
        assert!(l.allows("10.1.2.200".parse().unwrap()));
        assert!(l.allows("192.168.1.7".parse().unwrap()));
        assert!(!l.allows("192.168.1.8".parse().unwrap()));
        assert_eq!(l.max_size, 1 << 20);
        assert_eq!(l.max_connections, 8);
        assert_eq!(l.command_timeout, Duration::from_secs(30));
        assert_eq!(l.omero_mail, OmeroMail::Replace);
        assert!(l.keep_body);
        assert_eq!(
            l.tls.unwrap().cert_file,
            Path::new("/etc/herald/c.pem").to_path_buf()
        );
    }

    #[test]
    fn bad_values_name_the_line_and_key() {
        let d = expect_invalid(load("smtp_listener:\n  allow: [10.0.0.0/33]\n"));
        assert_eq!(d.location.map(|l| l.line), at(2, 0).map(|l| l.line));
        assert_eq!(d.path, "smtp_listener.allow[0]", "{d}");
        let d = expect_invalid(load("smtp_listener:\n  omero_mail: forward\n"));
        assert_eq!(d.path, "smtp_listener.omero_mail", "{d}");
        let d = expect_invalid(load("smtp_listener:\n  cert_file: c.pem\n"));
        assert!(d.to_string().contains("key_file"), "{d}");
        let d = expect_invalid(load(
            "smtp_listener:\n  auth: [{username: omero, password_env: P}]\n",
        ));
        assert!(d.to_string().contains("only taken over TLS"), "{d}");
        let d = expect_invalid(load(
            "smtp_listener:\n  cert_file: c\n  key_file: k\n  auth: [{username: omero}]\n",
        ));
        assert!(
            d.to_string().contains("exactly one of password_file"),
            "{d}"
        );
        let ok = load(
            "smtp_listener:\n  cert_file: c\n  key_file: k\n  \
             auth: [{username: omero, password_file: p.txt}]\n",
        )
        .unwrap();
        assert_eq!(
            ok.smtp_listener.unwrap().auth[0].password,
            PasswordSource::File("/etc/herald/p.txt".into())
        );
        let d = expect_invalid(load("smtp_listener:\n  max_size: 10\n"));
        assert_eq!(d.path, "smtp_listener.max_size", "{d}");
    }
}
