//! A rule's `config` checked by the rule itself at load (`check-config`), placed in herald.yaml.

use std::sync::Arc;

use super::host::{HostState, Invocation};
use super::kv::{KvRead, MemoryKv};
use super::sandbox::Prepared;
use crate::config::{Config, ConfigError, RuleConfig, Seg, Source};
use crate::directory::Directory;

/// A rule refused its config when it was loaded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`: config{}: {message}", dotted(path))]
pub struct ConfigRefused {
    pub rule: String,
    /// The key path inside the rule's config (`contact_system`, `groups[1]`); empty for all of it.
    pub path: String,
    pub message: String,
}

fn dotted(path: &str) -> String {
    match path {
        "" => String::new(),
        p if p.starts_with('[') => p.to_owned(),
        p => format!(".{p}"),
    }
}

/// Ask the rule (when its contract has `check-config`) whether it takes its config.
pub(super) fn check(
    prepared: &Prepared,
    rule: &RuleConfig,
    directory: &Arc<Directory>,
) -> anyhow::Result<()> {
    if !prepared.checks_config() {
        return Ok(());
    }
    let kv: Arc<dyn KvRead> = Arc::new(MemoryKv::default());
    let config_json: Arc<str> = rule.config.to_string().into();
    let state = HostState::new(&Invocation {
        rule: &rule.name,
        config_json: config_json.clone(),
        directory: directory.clone(),
        kv,
        limits: &rule.limits,
        time_unix_ms: 0,
        seed: 0,
    });
    let verdict = prepared
        .check_config(state, &config_json, &rule.limits)
        .map_err(|err| err.context(format!("rule `{}`: its check-config failed", rule.name)))?;
    match verdict {
        Some(Err(refusal)) => Err(ConfigRefused {
            rule: rule.name.clone(),
            path: refusal.path,
            message: refusal.message,
        }
        .into()),
        Some(Ok(())) | None => Ok(()),
    }
}

/// The refusal as a diagnostic at its key in `config`'s file, `rules[N].config.KEY`.
pub(super) fn locate(config: &Config, refused: &ConfigRefused) -> Option<ConfigError> {
    let index = config.rules.iter().position(|r| r.name == refused.rule)?;
    let text = std::fs::read_to_string(&config.file).ok()?;
    let keys = segments(&refused.path);
    let mut path = vec![Seg::Key("rules"), Seg::Index(index), Seg::Key("config")];
    path.extend(keys.iter().map(|k| match k {
        Key::Name(name) => Seg::Key(name),
        Key::Index(i) => Seg::Index(*i),
    }));
    let source = Source {
        text: &text,
        file: &config.file,
    };
    let fix = format!(
        "give `{}` a value rule `{}` takes (the built-in rules' keys are in docs/rules.md; \
         `herald rule run RULE.wasm --rule-config '...'` tries a value)",
        if refused.path.is_empty() {
            "config"
        } else {
            &refused.path
        },
        refused.rule
    );
    Some(source.error(
        &path,
        format!(
            "rule `{}` refuses its config: {}",
            refused.rule, refused.message
        ),
        fix,
    ))
}

enum Key<'a> {
    Name(&'a str),
    Index(usize),
}

/// `a.b[2].c` → a, b, 2, c (serde_path_to_error's notation).
fn segments(path: &str) -> Vec<Key<'_>> {
    let mut keys = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part
            .split_once('[')
            .map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            keys.push(Key::Name(name));
        }
        for index in indexes.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                keys.push(Key::Index(i));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(path: &str) -> Vec<String> {
        segments(path)
            .into_iter()
            .map(|k| match k {
                Key::Name(n) => n.to_owned(),
                Key::Index(i) => format!("#{i}"),
            })
            .collect()
    }

    #[test]
    fn paths_split_into_keys_and_indexes() {
        assert_eq!(show("contact_system"), ["contact_system"]);
        assert_eq!(show("web_admins[1][0]"), ["web_admins", "#1", "#0"]);
        assert_eq!(show("a.b[2].c"), ["a", "b", "#2", "c"]);
        assert!(show("").is_empty());
    }

    #[test]
    fn the_refusal_names_the_key() {
        let refused = ConfigRefused {
            rule: "r".into(),
            path: "quiet".into(),
            message: "invalid type".into(),
        };
        assert_eq!(refused.to_string(), "rule `r`: config.quiet: invalid type");
    }
}
