//! The rule's own `config` map from `herald.yaml`.

use serde::de::DeserializeOwned;

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
/// loudly. The error names the key at fault.
pub fn get<T: DeserializeOwned>() -> Result<T, String> {
    let text = json();
    serde_json::from_str(&text).map_err(|err| format!("invalid rule config: {err}"))
}
