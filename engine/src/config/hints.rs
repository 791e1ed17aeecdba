//! The fix hint shown under a config diagnostic, by the key it is about.

use super::limits::{LogSize, MemorySize, OutputSize, StackSize};
use super::values::builtin_list;

/// The fix hint for a config key, by its name.
pub(super) fn config_hint(key: &str) -> Option<String> {
    let hint = match key {
        "state_dir" => {
            "write a directory path, relative to the config file's directory, e.g. ../var"
        }
        "mail" => "write a map with some of: from, transport, file_dir",
        "from" => "write an address like `OMERO <omero@example.org>`, or \"\" to disable sending",
        "transport" => "write `file` (writes .eml files into file_dir) or `smtp`",
        "file_dir" | "cache_dir" => {
            "write a directory path, relative to the config file's directory"
        }
        "path" => "write a file path, relative to the config file's directory",
        "store" | "directory" => "write a map with the key `path`",
        "sandbox" => "write a map with some of: cache_dir, limits",
        "limits" => {
            "write a map with some of: fuel, memory, wall_time, stack, max_messages, max_output, \
             max_recipients, max_log"
        }
        "fuel" => "set fuel to a positive number of instructions, e.g. 10000000",
        "memory" => return Some(MemorySize::hint("16MiB")),
        "stack" => return Some(StackSize::hint("512KiB")),
        "max_output" => return Some(OutputSize::hint("1MiB")),
        "max_log" => return Some(LogSize::hint("64KiB")),
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
        "enabled" => "write true or false",
        "config" => {
            "write a map of the rule's settings with text keys, e.g. `config: {mode: parity}`"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}
