//! End-to-end tests: the real `herald` binary, real files, real SQLite.

mod authoring;
mod authoring_examples;
mod authoring_replay;
mod config_cli;
mod crash;
mod dkim;
mod email;
mod faults;
mod golden;
mod hostile;
mod hostile_data;
mod input;
mod mail_bytes;
mod outbox;
mod retry;
mod rule_props;
mod sandbox;
mod schedule;
mod serve;
mod serve_admin;
mod serve_https;
mod skeleton;
mod smtp;
mod support;
