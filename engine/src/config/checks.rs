//! Checks across the rules that need the whole file: unique names, a trigger, an existing module.

use super::values::builtin_list;
use super::yaml::{Seg, Source};
use super::{ConfigError, ModuleRef, RuleConfig, at_line};

/// Cross-entry checks on the rules, reported with the line found by [`Source::locate`].
pub(super) struct RuleChecks<'a>(pub(super) Source<'a>);

impl RuleChecks<'_> {
    pub(super) fn run(&self, rules: &[RuleConfig]) -> Result<(), ConfigError> {
        for (index, rule) in rules.iter().enumerate() {
            self.unique_name(rules, index)?;
            self.has_trigger(rule, index)?;
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
