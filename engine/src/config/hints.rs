//! The fix hint shown under a config diagnostic, by the key it is about.

use super::limits::{EventSize, LogSize, MemorySize, OutputSize, StackSize, StringSize};
use super::values::builtin_list;

/// The fix hint for a config key, by its name.
pub(super) fn config_hint(key: &str) -> Option<String> {
    let hint = match key {
        "state_dir" => {
            "write a directory path, relative to the config file's directory, e.g. ../var"
        }
        "mail" => "write a map with some of: from, transport, file_dir, smtp",
        "smtp" => {
            "write a map with some of: host, port, hello_name, tls, username, password_file, \
             password_env, ca_file, min_tls, connect_timeout, command_timeout, data_timeout, \
             max_connections, dkim"
        }
        "host" => "write the SMTP server's host name or IP address, e.g. smtp.example.org",
        "port" => "write a port from 1 to 65535: 25 (plain), 587 (starttls) or 465 (tls)",
        "hello_name" | "domain" => "write a host name without spaces, e.g. omero.example.org",
        "tls" => {
            "write `none` (plain, OMERO's default), `starttls` (required STARTTLS, port 587) or \
             `tls` (implicit TLS, SMTPS, port 465)"
        }
        "username" => "write the SMTP user name (omero.mail.username)",
        "password_file" => {
            "write the path of a file holding only the password, readable by Herald alone"
        }
        "password_env" => "write the name of an environment variable, e.g. HERALD_SMTP_PASSWORD",
        "ca_file" | "key_file" => "write a PEM file path, relative to the config file's directory",
        "min_tls" => "write 1.2 or 1.3",
        "connect_timeout" | "command_timeout" | "data_timeout" => {
            "write a duration with a unit, above 0 and at most 1h, e.g. 60s (OMERO's default)"
        }
        "max_connections" => "write a whole number from 1 to 100, e.g. 4",
        "delivery" => {
            "write a map with some of: min_backoff, max_backoff, max_lifetime, jitter_percent, \
             lease, poll_interval"
        }
        "min_backoff" | "max_backoff" | "max_lifetime" | "lease" | "poll_interval" => {
            "write a duration with a unit, above 0 and at most 60d, e.g. 5m, 4000s or 5d"
        }
        "jitter_percent" => "write a whole percentage from 0 to 100, e.g. 10",
        "quarantine_after" => {
            "write how many failures in a row quarantine a rule, e.g. 5 (0: never)"
        }
        "dkim" => {
            "write a map with selector, domain, key_file and optionally algorithm (rsa|ed25519)"
        }
        "selector" => "write the DKIM selector, e.g. herald",
        "algorithm" => "write `rsa` (PKCS#1 PEM key) or `ed25519` (base64 key)",
        "from" => "write an address like `OMERO <omero@example.org>`, or \"\" to disable sending",
        "transport" => "write `file` (writes .eml files into file_dir) or `smtp`",
        "file_dir" | "cache_dir" => {
            "write a directory path, relative to the config file's directory"
        }
        "path" => "write a file path, relative to the config file's directory",
        "store" => "write a map with the key `path`",
        "directory" => {
            "write a map with `path`, or `source: omero-db` with `url` and `password_env` or `password_file`"
        }
        "sandbox" => "write a map with some of: cache_dir, limits, quarantine_after",
        "limits" => {
            "write a map with some of: fuel, memory, wall_time, stack, max_messages, max_output, \
             max_recipients, max_log"
        }
        "lang" => {
            "write rust (the default) or python; python raises the default limits to 500000000 fuel, 64MiB and 1s"
        }
        "fuel" => "set fuel to a positive number of instructions, e.g. 10000000",
        "memory" => return Some(MemorySize::hint("16MiB")),
        "stack" => return Some(StackSize::hint("512KiB")),
        "max_output" => return Some(OutputSize::hint("1MiB")),
        "max_log" => return Some(LogSize::hint("64KiB")),
        "ingest" => "write a map with some of: max_event_bytes, max_string_bytes, max_items",
        "max_items" => "write a whole number from 16 to 1000000, e.g. 512",
        "max_event_bytes" => return Some(EventSize::hint("256KiB")),
        "max_string_bytes" => return Some(StringSize::hint("64KiB")),
        "wall_time" => "write a duration above 0 and at most 60s, with a unit, e.g. 100ms or 2s",
        "max_messages" => "set a whole number above 0, e.g. 100",
        "max_recipients" => "set a whole number above 0, e.g. 1000",
        "rules" => "write a list of rules, each item starting with `- name: ...`",
        "name" => {
            "use lowercase letters, digits and dashes, starting with a letter or digit, e.g. new-user"
        }
        "module" => {
            return Some(format!(
                "write one of {} or a path to a .wasm file, relative to the config file's directory",
                builtin_list()
            ));
        }
        "on" => "list the event types the rule reacts to, e.g. `on: [omero.user.created]`",
        "schedule" => {
            "write a cron line in quotes with seconds first: sec min hour day month weekday [year], \
             e.g. \"0 0 8 * * *\" for 08:00:00 every day"
        }
        "missed" => {
            "write latest (one catch-up tick for ticks missed while Herald was down) or none"
        }
        "enabled" => "write true or false",
        "config" => {
            "write a map of the rule's settings with text keys, e.g. `config: {mode: parity}`"
        }
        _ => return super::sources::hint(key),
    };
    Some(hint.to_owned())
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a typo
/// (at most a third of the word's length).
pub(super) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}
