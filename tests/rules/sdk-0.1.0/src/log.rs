//! Write to the engine's log, tagged with the rule and the event.

use crate::bindings::herald::rule::host::Level;

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    crate::bindings::herald::rule::host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    crate::testing::with(|host| host.logs.push((level, message.to_owned())));
}

pub fn trace(message: &str) {
    write(Level::Trace, message);
}

pub fn debug(message: &str) {
    write(Level::Debug, message);
}

pub fn info(message: &str) {
    write(Level::Info, message);
}

pub fn warn(message: &str) {
    write(Level::Warn, message);
}

pub fn error(message: &str) {
    write(Level::Error, message);
}

pub use crate::bindings::herald::rule::host::Level as LogLevel;
