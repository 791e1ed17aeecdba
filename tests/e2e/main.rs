//! End-to-end tests: the real `herald` binary, real files, real SQLite.

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
mod omero_eventlog;
mod omero_log;
mod omero_pg;
mod outbox;
mod retry;
mod rule_props;
mod sandbox;
mod schedule;
mod serve;
mod serve_admin;
mod skeleton;
mod smtp;
mod support;
