//! Checks across the rules that need the whole file: unique names, a trigger, an existing module.

use super::hints::did_you_mean;
use super::values::builtin_list;
use super::yaml::{Seg, Source};
use super::{ConfigError, IngestConfig, ModuleRef, RuleConfig, at_line};
use crate::event::types;

/// Cross-entry checks on the rules, reported with the line found by [`Source::locate`].
pub(super) struct RuleChecks<'a>(pub(super) Source<'a>);

impl RuleChecks<'_> {
    pub(super) fn run(
        &self,
        rules: &[RuleConfig],
        ingest: &IngestConfig,
    ) -> Result<(), ConfigError> {
        for (index, rule) in rules.iter().enumerate() {
            self.unique_name(rules, index)?;
            self.has_trigger(rule, index)?;
            self.known_types(rule, index, ingest)?;
            self.module_exists(rule, index)?;
        }
        Ok(())
    }

    fn unique_name(&self, rules: &[RuleConfig], index: usize) -> Result<(), ConfigError> {
        let name = &rules[index].name;
        let Some(first) = rules[..index].iter().position(|rule| &rule.name == name) else {
            return Ok(());
        };
        let first_at = self.0.locate(&[Seg::Key("rules"), Seg::Index(first)]);
        Err(self.error(
            index,
            "name",
            format!(
                "the rule name `{name}` is already used by rules[{first}]{}",
                at_line(first_at)
            ),
            format!("give each rule its own name, e.g. `{name}-2`"),
        ))
    }

    fn has_trigger(&self, rule: &RuleConfig, index: usize) -> Result<(), ConfigError> {
        if !rule.on.is_empty() || rule.schedule.is_some() {
            return Ok(());
        }
        Err(self.error(
            index,
            "on",
            format!(
                "rule `{}` would never run: it has no event types in `on` and no `schedule`",
                rule.name
            ),
            "list the event types it reacts to, e.g. `on: [omero.user.created]`, or add a \
             `schedule` such as \"0 0 8 * * *\""
                .to_owned(),
        ))
    }

    /// A type Herald does not define and `ingest.custom_types` does not declare is an error:
    /// in Herald's own namespaces (`omero.`, `herald.`) it is a typo, elsewhere an undeclared
    /// type. Either way the rule would never run on it as meant.
    fn known_types(
        &self,
        rule: &RuleConfig,
        index: usize,
        ingest: &IngestConfig,
    ) -> Result<(), ConfigError> {
        let declared = |kind: &str| {
            types::ALL.contains(&kind) || ingest.custom_types.iter().any(|t| t == kind)
        };
        let reserved = |kind: &str| kind.starts_with("omero.") || kind.starts_with("herald.");
        let Some((at, kind)) = rule.on.iter().enumerate().find(|(_, kind)| !declared(kind)) else {
            return Ok(());
        };
        let known = types::ALL
            .iter()
            .copied()
            .chain(ingest.custom_types.iter().map(String::as_str));
        let guess = match did_you_mean(kind, known) {
            Some(guess) => format!("did you mean `{guess}`? "),
            None => String::new(),
        };
        let why = if reserved(kind) {
            "Herald defines no such event type"
        } else {
            "it is not declared in ingest.custom_types"
        };
        let path = [
            Seg::Key("rules"),
            Seg::Index(index),
            Seg::Key("on"),
            Seg::Index(at),
        ];
        Err(self.0.error(
            &path,
            format!("rule `{}` would never run on `{kind}`: {why}", rule.name),
            format!(
                "{guess}use one of {}, or declare your own type in ingest.custom_types",
                types::ALL.join(", ")
            ),
        ))
    }

    fn module_exists(&self, rule: &RuleConfig, index: usize) -> Result<(), ConfigError> {
        let ModuleRef::Path(path) = &rule.module else {
            return Ok(());
        };
        if path.is_file() {
            return Ok(());
        }
        let problem = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        Err(self.error(
            index,
            "module",
            format!("the module file {} {problem}", path.display()),
            format!(
                "build the rule (`cargo build --target wasm32-wasip2 --release`) and point `module` \
                 at its .wasm file, relative to {}; or use a built-in rule: {}",
                self.base_dir(),
                builtin_list()
            ),
        ))
    }

    fn base_dir(&self) -> String {
        match self.0.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => format!("{}/", dir.display()),
            _ => "the current directory".to_owned(),
        }
    }

    fn error(&self, index: usize, key: &str, message: String, fix: String) -> ConfigError {
        let path = [Seg::Key("rules"), Seg::Index(index), Seg::Key(key)];
        self.0.error(&path, message, fix)
    }
}
