//! The default rules compiled to wasm by build.rs and embedded in the binary as `builtin:<name>`.

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// The names of the embedded rules, as written after `builtin:`.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTIN_RULES.iter().map(|(name, _)| *name)
}

/// The component bytes of an embedded rule.
pub fn wasm(name: &str) -> Option<&'static [u8]> {
    BUILTIN_RULES
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, bytes)| *bytes)
}

/// The embedded rules that rebuild OMERO's stock senders: with `smtp_listener.omero_mail: relay`
/// they skip a relayed stock mail's event, since its original already went out.
pub const STOCK_SENDERS: [&str; 7] = [
    "server-up",
    "server-down",
    "failed-login",
    "new-user",
    "new-group",
    "new-comment",
    "web-error",
];
