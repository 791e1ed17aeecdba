//! The rule's own `config` map from `herald.yaml`.

use serde::de::DeserializeOwned;

pub use crate::ConfigError;

/// The raw config as JSON text (`{}` when the rule entry has none).
pub fn json() -> String {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::herald::rule::host::config();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::with(|host| host.config.to_string());
}

/// The config deserialized into the rule's own settings type.
///
/// Give the type `#[serde(default)]` so that an empty config works, and
/// `#[serde(deny_unknown_fields)]` so that a typo in `herald.yaml` fails
/// loudly. The error names the key at fault. Name the type in
/// [`export_rule!`](crate::export_rule) too (`export_rule!(MyRule, config = Settings)`),
/// and the engine refuses a bad config when it loads the rule, with its line in herald.yaml.
///
/// ```
/// #[derive(serde::Deserialize, Default, Debug)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings { quiet: bool }
///
/// herald_sdk::testing::TestHost::new()
///     .config(herald_sdk::serde_json::json!({"quiet": "yes"}))
///     .install();
/// let err = herald_sdk::config::get::<Settings>().unwrap_err();
/// assert_eq!(err, "invalid rule config: quiet: invalid type: string \"yes\", expected a boolean");
/// ```
pub fn get<T: DeserializeOwned>() -> Result<T, String> {
    parse(&json()).map_err(|err| match err.path.as_str() {
        "" => format!("invalid rule config: {}", err.message),
        path => format!("invalid rule config: {path}: {}", err.message),
    })
}

/// Check config text as the engine does at load (`check-config`): `Ok` when `T` accepts it.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Settings { hours: Vec<u8> }
///
/// let err = herald_sdk::config::check::<Settings>(r#"{"hours": [7, "late"]}"#).unwrap_err();
/// assert_eq!(err.path, "hours[1]");
/// assert!(err.message.starts_with("invalid type: string \"late\""), "{}", err.message);
/// ```
pub fn check<T: DeserializeOwned>(text: &str) -> Result<(), ConfigError> {
    parse::<T>(text).map(drop)
}

fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let mut json = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut json).map_err(|err| {
        let path = match err.path().to_string() {
            dot if dot == "." => String::new(),
            path => path,
        };
        let inner = err.into_inner();
        // "… at line 1 column 21" is a place in the engine's JSON, not in herald.yaml.
        let full = inner.to_string();
        let place = format!(" at line {} column {}", inner.line(), inner.column());
        let message = full.strip_suffix(&place).unwrap_or(&full).to_owned();
        ConfigError { path, message }
    })
}
