//! Unit tests of the config: defaults, paths, every validated value and the diagnostics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::default_sender;
use super::units::{GIB, KIB, MIB, parse_size, show_size};
use super::yaml::{Seg, key_path, locate};
use super::*;

const FILE: &str = "etc/herald.yaml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str(text, Path::new(FILE), None)
}

fn builtin() -> &'static str {
    crate::builtin::names()
        .next()
        .expect("at least one built-in rule")
}

/// The diagnostic of a config that must fail.
fn fail(text: &str) -> Diagnostic {
    expect_invalid(parse(text))
}

fn rule_yaml(extra: &str) -> String {
    format!(
        "rules:\n  - name: r\n    module: builtin:{}\n    on: [omero.server.up]\n{extra}",
        builtin()
    )
}

#[test]
fn empty_file_gives_defaults_resolved_beside_the_config() {
    let config = parse("").unwrap();
    assert_eq!(config.file, PathBuf::from(FILE));
    assert_eq!(config.state_dir, PathBuf::from("etc/../var"));
    assert_eq!(config.mail.from, Some("omero@localhost".parse().unwrap()));
    assert_eq!(config.mail.transport, TransportKind::File);
    assert_eq!(config.mail.file_dir, PathBuf::from("etc/../var/mail"));
    assert_eq!(config.store.path, PathBuf::from("etc/../var/herald.db"));
    assert_eq!(config.directory.path, PathBuf::from("etc/directory.yaml"));
    assert_eq!(config.sandbox.cache_dir, PathBuf::from("etc/../var/cache"));
    assert_eq!(config.sandbox.limits, Limits::default());
    assert!(config.rules.is_empty());
}

#[test]
fn default_limits_match_the_documented_values() {
    let limits = Limits::default();
    assert_eq!(limits.fuel, 10_000_000);
    assert_eq!(limits.memory_bytes, 16 * 1024 * 1024);
    assert_eq!(limits.wall_time, Duration::from_millis(100));
    assert_eq!(limits.stack_bytes, 512 * 1024);
    assert_eq!((limits.max_messages, limits.max_recipients), (100, 1000));
    assert_eq!(
        (limits.max_output_bytes, limits.max_log_bytes),
        (1024 * 1024, 64 * 1024)
    );
}

#[test]
fn null_sections_mean_defaults() {
    let config = parse("mail:\nstore:\nsandbox:\n  limits:\nrules:\n").unwrap();
    assert_eq!(config.store.path, PathBuf::from("etc/../var/herald.db"));
    assert_eq!(config.sandbox.limits, Limits::default());
}

#[test]
fn paths_are_relative_to_the_config_file_and_absolute_paths_stay() {
    let text = "state_dir: state\nmail: {file_dir: /srv/mail}\nstore: {path: db/h.db}\n\
                directory: {path: ../dir.yaml}\nsandbox: {cache_dir: c}\n";
    let config = parse(text).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("etc/state"));
    assert_eq!(config.mail.file_dir, PathBuf::from("/srv/mail"));
    assert_eq!(config.store.path, PathBuf::from("etc/db/h.db"));
    assert_eq!(config.directory.path, PathBuf::from("etc/../dir.yaml"));
    assert_eq!(config.sandbox.cache_dir, PathBuf::from("etc/c"));
}

#[test]
fn state_dir_override_wins_and_moves_the_defaults() {
    let config =
        Config::from_str("state_dir: x", Path::new(FILE), Some(Path::new("/tmp/h"))).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/tmp/h"));
    assert_eq!(config.store.path, PathBuf::from("/tmp/h/herald.db"));
    assert_eq!(config.mail.file_dir, PathBuf::from("/tmp/h/mail"));
}

#[test]
fn a_config_in_the_current_directory_resolves_to_plain_relative_paths() {
    let config = Config::from_str("", Path::new("herald.yaml"), None).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("../var"));
    let config = Config::from_str("state_dir: 2024", Path::new("herald.yaml"), None).unwrap();
    assert_eq!(
        config.state_dir,
        PathBuf::from("2024"),
        "a number-like path is text"
    );
    assert_eq!(config.directory.path, PathBuf::from("directory.yaml"));
}

#[test]
fn a_full_rule_is_parsed_and_its_limits_merged_over_the_sandbox_defaults() {
    let text = format!(
        "sandbox:\n  limits: {{memory: 32MiB, wall_time: 2s}}\n\
         rules:\n  - name: new-user\n    module: builtin:{}\n    on: [omero.user.created, herald.tick]\n\
         \x20   schedule: \"0 0 8 * * *\"\n    enabled: false\n    config: {{mode: parity, n: [1]}}\n\
         \x20   limits: {{fuel: 5000000, stack: 1MiB, max_log: 0}}\n",
        builtin()
    );
    let config = parse(&text).unwrap();
    let rule = config.rule("new-user").unwrap();
    assert_eq!(rule.module, ModuleRef::Builtin(builtin().to_owned()));
    assert_eq!(rule.module.to_string(), format!("builtin:{}", builtin()));
    assert_eq!(rule.on, ["omero.user.created", "herald.tick"]);
    assert_eq!(rule.schedule.as_ref().unwrap().source, "0 0 8 * * *");
    assert!(!rule.enabled);
    assert_eq!(rule.config, serde_json::json!({"mode": "parity", "n": [1]}));
    let expected = Limits {
        fuel: 5_000_000,
        memory_bytes: 32 * MIB,
        wall_time: Duration::from_secs(2),
        stack_bytes: MIB,
        max_log_bytes: 0,
        ..Limits::default()
    };
    assert_eq!(rule.limits, expected);
    assert_eq!(config.sandbox.limits.fuel, 10_000_000);
    assert!(config.rule("nope").is_none());
}

#[test]
fn rule_defaults_are_enabled_empty_config_and_sandbox_limits() {
    let rule = parse(&rule_yaml("")).unwrap().rules.remove(0);
    assert!(rule.enabled);
    assert_eq!(rule.config, serde_json::json!({}));
    assert_eq!(rule.limits, Limits::default());
    assert!(rule.schedule.is_none());
}

#[test]
fn zero_fuel_names_file_line_column_key_path_and_fix() {
    let d = fail(&rule_yaml("    limits:\n      fuel: 0\n"));
    assert_eq!(d.location, at(6, 13));
    assert_eq!(d.path, "rules[0].limits.fuel");
    assert_eq!(
        d.to_string(),
        "etc/herald.yaml:6:13: rules[0].limits.fuel: invalid value: integer `0`, expected a fuel \
         budget above 0\n  fix: set fuel to a positive number of instructions, e.g. 10000000"
    );
}

#[test]
fn unknown_key_lists_the_allowed_keys_and_says_to_remove_it() {
    let d = fail(&rule_yaml("    limits:\n      fule: 3\n"));
    assert_eq!(d.location, at(6, 7));
    assert_eq!(d.path, "rules[0].limits.fule");
    assert!(
        d.message
            .starts_with("unknown field `fule`, expected one of `fuel`"),
        "{}",
        d.message
    );
    assert!(
        d.fix.starts_with("remove `fule` or correct its spelling"),
        "{}",
        d.fix
    );
}

#[test]
fn unknown_top_level_key_is_reported() {
    let d = fail("state_dir: x\nsmtp: {}\n");
    assert_eq!((d.location, d.path.as_str()), (at(2, 1), "smtp"));
    assert!(d.message.contains("unknown field `smtp`"));
}

#[test]
fn missing_required_keys_say_what_to_add() {
    let d = fail(&format!("rules:\n  - module: builtin:{}\n", builtin()));
    assert_eq!(d.path, "rules[0]");
    assert_eq!(d.location, at(2, 5));
    assert_eq!(d.message, "missing field `name`");
    assert!(
        d.fix
            .starts_with("add `name:` to this entry; use lowercase"),
        "{}",
        d.fix
    );
    let d = fail("rules:\n  - name: a\n    on: [omero.server.up]\n");
    assert!(
        d.fix.starts_with("add `module:` to this entry"),
        "{}",
        d.fix
    );
}

#[test]
fn sizes_accept_bytes_and_units_within_bounds() {
    let limits = |v: &str| {
        parse(&format!("sandbox:\n  limits: {{memory: {v}}}\n")).map(|c| c.sandbox.limits)
    };
    assert_eq!(limits("65536").unwrap().memory_bytes, 65536);
    assert_eq!(limits("512KiB").unwrap().memory_bytes, 512 * KIB);
    assert_eq!(limits("1MB").unwrap().memory_bytes, 1_000_000);
    assert_eq!(limits("4 gib").unwrap().memory_bytes, 4 * GIB);
    for bad in ["1KiB", "5GiB", "16M", "-1", "1.5MiB"] {
        let Err(ConfigError::Invalid(d)) = limits(bad) else {
            panic!("{bad} accepted")
        };
        assert_eq!(d.path, "sandbox.limits.memory");
        assert!(
            d.message.contains("expected a size from 64KiB to 4GiB"),
            "{}",
            d.message
        );
        assert!(d.fix.contains("e.g. 16MiB"), "{}", d.fix);
    }
    let d = fail("sandbox:\n  limits:\n    stack: 128MiB\n");
    assert_eq!(d.location, at(3, 12));
    assert!(d.message.contains("from 64KiB to 64MiB"), "{}", d.message);
}

#[test]
fn wall_time_needs_a_unit_and_stays_within_a_minute() {
    let wall = |v: &str| {
        parse(&format!("sandbox: {{limits: {{wall_time: {v}}}}}"))
            .map(|c| c.sandbox.limits.wall_time)
    };
    assert_eq!(wall("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(wall("1min").unwrap(), Duration::from_secs(60));
    let Err(ConfigError::Invalid(d)) = wall("100") else {
        panic!()
    };
    assert!(
        d.message.contains("(a unit is needed, e.g. 100ms)"),
        "{}",
        d.message
    );
    for bad in ["0s", "61s", "soon"] {
        let Err(ConfigError::Invalid(d)) = wall(bad) else {
            panic!("{bad} accepted")
        };
        assert_eq!(d.path, "sandbox.limits.wall_time");
        assert!(d.fix.contains("e.g. 100ms"));
    }
}

#[test]
fn counts_must_be_positive_and_fit() {
    let d = fail("sandbox: {limits: {max_messages: 0}}");
    assert!(
        d.message.contains("expected a whole number from 1 to"),
        "{}",
        d.message
    );
    assert_eq!(d.fix, "set a whole number above 0, e.g. 100");
    let d = fail("sandbox: {limits: {max_recipients: 5000000000}}");
    assert_eq!(d.path, "sandbox.limits.max_recipients");
}

#[test]
fn sender_may_be_a_named_mailbox_or_empty_for_disabled() {
    let from = |v: &str| parse(&format!("mail: {{from: {v}}}")).map(|c| c.mail.from);
    assert_eq!(from("\"\"").unwrap(), None);
    let named = from("\"OMERO <omero@example.org>\"").unwrap().unwrap();
    assert_eq!(named.name.as_deref(), Some("OMERO"));
    assert_eq!(named.email.to_string(), "omero@example.org");
    assert_eq!(from("~").unwrap(), default_sender());
    let Err(ConfigError::Invalid(d)) = from("not-an-address") else {
        panic!()
    };
    assert_eq!(d.path, "mail.from");
    assert!(d.fix.contains("\"\" to disable sending"));
}

#[test]
fn transport_is_file_or_smtp() {
    assert_eq!(
        parse("mail: {transport: smtp}").unwrap().mail.transport,
        TransportKind::Smtp
    );
    let d = fail("mail:\n  transport: smpt\n");
    assert_eq!((d.location, d.path.as_str()), (at(2, 14), "mail.transport"));
    assert!(
        d.message
            .contains("unknown variant `smpt`, expected `file` or `smtp`"),
        "{}",
        d.message
    );
    assert_eq!(d.fix, "use one of the values listed above");
}

#[test]
fn unknown_builtin_lists_the_builtins() {
    let d = fail("rules:\n  - name: a\n    module: builtin:nope\n    on: [omero.server.up]\n");
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(3, 13), "rules[0].module")
    );
    assert!(
        d.message.contains("there is no built-in rule `nope`"),
        "{}",
        d.message
    );
    assert!(d.message.contains(&format!("builtin:{}", builtin())));
    assert!(d.fix.contains(&format!("builtin:{}", builtin())));
}

#[test]
fn module_paths_resolve_against_the_config_directory_and_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc/rules")).unwrap();
    std::fs::write(dir.path().join("etc/rules/x.wasm"), b"\0asm").unwrap();
    let file = dir.path().join("etc/herald.yaml");
    let text = "rules:\n  - name: x\n    module: rules/x.wasm\n    on: [omero.server.down]\n";
    std::fs::write(&file, text).unwrap();
    let config = Config::load(&file, None).unwrap();
    let expected = dir.path().join("etc/rules/x.wasm");
    assert_eq!(config.rules[0].module, ModuleRef::Path(expected.clone()));
    assert_eq!(
        config.rules[0].module.to_string(),
        expected.display().to_string()
    );

    let missing = "rules:\n  - name: x\n    on: [omero.server.down]\n    module: rules/y.wasm\n";
    let Err(ConfigError::Invalid(d)) = Config::from_str(missing, &file, None) else {
        panic!()
    };
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(4, 13), "rules[0].module")
    );
    assert!(
        d.message.ends_with("etc/rules/y.wasm does not exist"),
        "{}",
        d.message
    );
    assert!(
        d.fix.contains("wasm32-wasip2") && d.fix.contains("builtin:"),
        "{}",
        d.fix
    );
    let a_dir = "rules:\n  - name: x\n    on: [omero.server.down]\n    module: rules\n";
    let Err(ConfigError::Invalid(d)) = Config::from_str(a_dir, &file, None) else {
        panic!()
    };
    assert!(d.message.ends_with("is not a file"), "{}", d.message);
}

#[test]
fn duplicate_rule_names_point_at_the_second_and_mention_the_first() {
    let rule = format!(
        "  - name: dup\n    module: builtin:{}\n    on: [omero.server.down]\n",
        builtin()
    );
    let d = fail(&format!("rules:\n{rule}{rule}"));
    assert_eq!((d.location, d.path.as_str()), (at(5, 11), "rules[1].name"));
    assert_eq!(
        d.message,
        "the rule name `dup` is already used by rules[0] (line 2)"
    );
    assert_eq!(d.fix, "give each rule its own name, e.g. `dup-2`");
}

#[test]
fn a_rule_needs_events_or_a_schedule() {
    let d = fail(&format!(
        "rules:\n  - name: idle\n    module: builtin:{}\n",
        builtin()
    ));
    assert_eq!((d.location, d.path.as_str()), (at(2, 5), "rules[0].on"));
    assert!(d.message.contains("would never run"));
    assert!(d.fix.contains("schedule"));
    let d = fail(&format!(
        "rules:\n  - name: idle\n    module: builtin:{}\n    on: []\n",
        builtin()
    ));
    assert_eq!(d.location, at(4, 9));
    let scheduled = format!(
        "rules:\n  - name: t\n    module: builtin:{}\n    schedule: 0 0 8 * * *\n",
        builtin()
    );
    assert_eq!(parse(&scheduled).unwrap().rules[0].on, Vec::<String>::new());
}

#[test]
fn on_accepts_one_event_type_and_rejects_spaces() {
    let one = format!(
        "rules:\n  - name: a\n    module: builtin:{}\n    on: omero.user.created\n",
        builtin()
    );
    assert_eq!(parse(&one).unwrap().rules[0].on, ["omero.user.created"]);
    let d = fail(&rule_yaml("").replace("[omero.server.up]", "[omero.server.up, \"a b\"]"));
    assert_eq!((d.location, d.path.as_str()), (at(4, 27), "rules[0].on[1]"));
    assert!(
        d.message.contains("expected an event type"),
        "{}",
        d.message
    );
    assert!(d.fix.contains("on: [omero.user.created]"), "{}", d.fix);
}

#[test]
fn rule_names_are_lowercase_dashed() {
    let numeric = parse(&rule_yaml("").replace("name: r", "name: 404")).unwrap();
    assert_eq!(numeric.rules[0].name, "404");
    let d = fail(&rule_yaml("").replace("name: r", "name: New_User"));
    assert_eq!((d.location, d.path.as_str()), (at(2, 11), "rules[0].name"));
    assert!(d.fix.contains("e.g. new-user"));
}

#[test]
fn schedules_need_six_or_seven_fields() {
    let d = fail(&rule_yaml("    schedule: \"0 8 * * *\"\n"));
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(5, 15), "rules[0].schedule")
    );
    assert!(d.message.contains("it has 5 fields"), "{}", d.message);
    assert!(d.fix.contains("\"0 0 8 * * *\""));
    let d = fail(&rule_yaml("    schedule: \"0 0 25 * * *\"\n"));
    assert!(d.message.contains("Hours"), "{}", d.message);
}

#[test]
fn rule_config_must_be_a_map() {
    let d = fail(&rule_yaml("    config: [1, 2]\n"));
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(5, 13), "rules[0].config")
    );
    assert!(
        d.message.contains("invalid type: sequence, expected a map"),
        "{}",
        d.message
    );
    assert!(d.fix.contains("config: {mode: parity}"));
}

#[test]
fn syntax_errors_give_the_line_and_a_syntax_fix() {
    let d = fail("mail:\n  from: a@b.c\n transport: file\n");
    assert_eq!((d.location, d.path.as_str()), (at(3, 2), ""));
    assert!(d.fix.starts_with("fix the YAML syntax"), "{}", d.fix);
    let d = fail("rules:\n  - name: a\n    schedule: * * * * * *\n");
    assert!(d.fix.starts_with("fix the YAML syntax"), "{}", d.fix);
}

#[test]
fn a_missing_file_says_how_to_point_at_another() {
    let err = Config::load(Path::new("/nonexistent/herald.yaml"), None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot read config /nonexistent/herald.yaml: "),
        "{text}"
    );
    assert!(
        text.ends_with("\n  fix: pass --config PATH or set HERALD_CONFIG"),
        "{text}"
    );
}

#[test]
fn locate_finds_nested_values_and_falls_back_to_the_parent() {
    let text = "a:\n  b: [1, {c: 2}]\nd: 3\n";
    assert_eq!(locate(text, &[Seg::Key("d")]), at(3, 4));
    assert_eq!(
        locate(
            text,
            &[Seg::Key("a"), Seg::Key("b"), Seg::Index(1), Seg::Key("c")]
        ),
        at(2, 14)
    );
    assert_eq!(locate(text, &[Seg::Key("a"), Seg::Key("zz")]), at(2, 3));
    assert_eq!(
        key_path(&[Seg::Key("a"), Seg::Index(1), Seg::Key("c")]),
        "a[1].c"
    );
}

#[test]
fn sizes_show_in_the_largest_exact_unit() {
    assert_eq!(show_size(4 * GIB), "4GiB");
    assert_eq!(show_size(64 * KIB), "64KiB");
    assert_eq!(show_size(0), "0 bytes");
    assert_eq!(parse_size("1 KB"), Some(1000));
    assert_eq!(parse_size("99999999999GiB"), None);
}

#[test]
fn ingest_caps_default_to_256kib_and_64kib_and_take_sizes() {
    let config = parse("").unwrap();
    assert_eq!(
        (
            config.ingest.caps.max_event_bytes,
            config.ingest.caps.max_string_bytes
        ),
        (256 * KIB, 64 * KIB)
    );
    assert_eq!(config.ingest.caps.max_items, 512);
    let config =
        parse("ingest:\n  max_event_bytes: 1MiB\n  max_string_bytes: 4096\n  max_items: 50\n")
            .unwrap();
    assert_eq!(
        (
            config.ingest.caps.max_event_bytes,
            config.ingest.caps.max_string_bytes
        ),
        (MIB, 4096)
    );
    assert_eq!(config.ingest.caps.max_items, 50);
    let d = fail("ingest: {max_items: 3}\n");
    assert!(
        d.message.contains("a whole number from 16 to 1000000"),
        "{}",
        d.message
    );
}

#[test]
fn ingest_keys_are_strict_with_line_key_path_and_fix() {
    let d = fail("ingest:\n  max_string: 1KiB\n");
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(2, 3), "ingest.max_string")
    );
    assert!(
        d.message
            .starts_with("unknown field `max_string`, expected one of `max_event_bytes`"),
        "{}",
        d.message
    );
    let d = fail("ingest:\n  max_event_bytes: 1GiB\n");
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(2, 20), "ingest.max_event_bytes")
    );
    assert!(
        d.message.contains("a size from 1KiB to 64MiB"),
        "{}",
        d.message
    );
    assert!(d.fix.contains("e.g. 256KiB"), "{}", d.fix);
    let d = fail("ingest: [1]\n");
    assert!(
        d.fix
            .contains("max_event_bytes, max_string_bytes, max_items"),
        "{}",
        d.fix
    );
}

#[test]
fn missed_defaults_to_latest_and_accepts_none() {
    let config = parse(&rule_yaml("    schedule: \"*/2 * * * * *\"\n")).unwrap();
    assert_eq!(config.rules[0].missed, Missed::Latest);
    let config = parse(&rule_yaml(
        "    schedule: \"*/2 * * * * *\"\n    missed: none\n",
    ))
    .unwrap();
    assert_eq!(config.rules[0].missed, Missed::None);
}

#[test]
fn an_unknown_missed_policy_names_the_key_line_and_choices() {
    let d = fail(&rule_yaml(
        "    schedule: \"0 0 8 * * *\"\n    missed: all\n",
    ));
    assert_eq!(
        (d.location.map(|at| at.line), d.path.as_str()),
        (Some(6), "rules[0].missed")
    );
    assert!(
        d.message
            .contains("unknown variant `all`, expected `latest` or `none`"),
        "{}",
        d.message
    );
    assert_eq!(d.fix, "use one of the values listed above");
}

#[test]
fn a_typo_in_on_is_an_error_with_the_line_and_a_suggestion() {
    let text = format!(
        "rules:\n  - name: lf\n    module: builtin:{}\n    on: [omero.user.created, omero.login.fail]\n",
        builtin()
    );
    let d = fail(&text);
    assert_eq!(d.path, "rules[0].on[1]");
    assert_eq!(d.location, at(4, 30), "{d}");
    assert!(
        d.message.contains("would never run on `omero.login.fail`"),
        "{d}"
    );
    assert!(
        d.fix.starts_with("did you mean `omero.login.failed`?"),
        "{d}"
    );
}

#[test]
fn a_custom_type_in_on_must_be_declared_strict_ingest_or_not() {
    let rule = |extra: &str| {
        format!(
            "{extra}rules:\n  - name: r\n    module: builtin:{}\n    on: [lab.scope.down]\n",
            builtin()
        )
    };
    for ingest in ["", "ingest: {strict_types: true}\n"] {
        let d = fail(&rule(ingest));
        assert_eq!(d.path, "rules[0].on[0]");
        assert!(
            d.message.contains("not declared in ingest.custom_types"),
            "{d}"
        );
    }
    for declared in [
        "ingest: {custom_types: [lab.scope.down]}\n",
        "ingest: {strict_types: true, custom_types: [lab.scope.down]}\n",
    ] {
        assert!(parse(&rule(declared)).is_ok(), "{declared}");
    }
    // A declared custom type in Herald's namespace is taken too.
    let own = format!(
        "ingest: {{custom_types: [omero.lab.alarm]}}\nrules:\n  - name: r\n    module: builtin:{}\n    on: omero.lab.alarm\n",
        builtin()
    );
    assert!(parse(&own).is_ok());
}

#[test]
fn did_you_mean_only_suggests_close_words() {
    use super::hints::did_you_mean;
    let known = ["omero.login.failed", "omero.user.created"];
    assert_eq!(
        did_you_mean("omero.user.create", known),
        Some("omero.user.created")
    );
    assert_eq!(did_you_mean("lab.instrument.down", known), None);
}

#[test]
fn a_python_rule_gets_python_limits_and_its_own_overrides_still_win() {
    let python = parse(&rule_yaml("    lang: python\n"))
        .unwrap()
        .rules
        .remove(0);
    assert_eq!(python.limits.memory_bytes, 64 * MIB);
    assert_eq!(python.limits.fuel, 500_000_000);
    assert_eq!(python.limits.wall_time, Duration::from_secs(1));
    assert_eq!(python.limits.max_messages, Limits::default().max_messages);
    let tuned = parse(&rule_yaml(
        "    lang: python\n    limits: {memory: 96MiB}\n",
    ))
    .unwrap()
    .rules
    .remove(0);
    assert_eq!(tuned.limits.memory_bytes, 96 * MIB);
    assert_eq!(tuned.limits.fuel, 500_000_000);
    let rust = parse(&rule_yaml("    lang: rust\n"))
        .unwrap()
        .rules
        .remove(0);
    assert_eq!(rust.limits, Limits::default());
    let err = parse(&rule_yaml("    lang: cobol\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("python"), "{err}");
}
