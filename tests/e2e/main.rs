//! End-to-end tests: the real `herald` binary, real files, real SQLite.

mod email;
mod golden;
mod hostile;
mod input;
mod skeleton;
mod support;
