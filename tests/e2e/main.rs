//! End-to-end tests: the real `herald` binary, real files, real SQLite.

mod crash;
mod email;
mod faults;
mod golden;
mod hostile;
mod input;
mod outbox;
mod retry;
mod serve;
mod skeleton;
mod smtp;
mod support;
