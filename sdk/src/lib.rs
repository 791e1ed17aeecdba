//! Write Herald notification rules in Rust: typed events in, messages out.
//!
//! A rule is a `cdylib` crate with one type that implements [`Rule`] and one
//! [`export_rule!`] line. It is compiled to a WebAssembly component and run
//! by the Herald engine in a sandbox with no files, no network and no
//! environment: everything it knows arrives in the [`Event`], the
//! [`directory`], its own [`config`] and its own [`kv`] store.
//!
//! # A complete rule
//!
//! `herald rule new welcome` makes this crate, with the SDK written beside it
//! (the SDK is not on crates.io: `herald-sdk` there is an unrelated crate, and
//! this one's package is `herald-rule-sdk`, its library `herald_sdk`).
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "welcome"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! herald-sdk = { path = "herald-sdk", package = "herald-rule-sdk" }
//! serde = { version = "1", features = ["derive"] }
//!
//! [workspace]
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use herald_sdk::{config, export_rule, log, Event, Message, Payload, Recipient, Rule};
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default)]
//! struct Settings {
//!     /// Also tell the group owners of the user's first group.
//!     tell_owners: bool,
//! }
//!
//! pub struct Welcome;
//!
//! impl Rule for Welcome {
//!     fn handle(event: Event) -> Result<Vec<Message>, String> {
//!         let Payload::UserCreated(created) = event.data else {
//!             return Ok(vec![]); // not ours: send nothing
//!         };
//!         let settings: Settings = config::get()?;
//!         let user = created.user;
//!         log::info(&format!("welcoming {}", user.name));
//!         let mut mail = Message::new(
//!             format!("Welcome to OMERO, {}", user.name),
//!             "Your account is ready.\n",
//!         )
//!         .to(Recipient::UserId(user.id));
//!         if settings.tell_owners {
//!             if let Some(group) = created.groups.first() {
//!                 mail = mail.cc(Recipient::GroupOwners(group.name.clone()));
//!             }
//!         }
//!         Ok(vec![mail])
//!     }
//! }
//!
//! // `config = Settings`: Herald checks the rule's `config:` against it at load.
//! export_rule!(Welcome, config = Settings);
//!
//! # // The same rule runs natively against the test host:
//! # use herald_sdk::testing::TestHost;
//! # TestHost::new().install();
//! # let event = herald_sdk::testing::event("omero.user.created", Payload::UserCreated(
//! #     herald_sdk::UserCreated { user: herald_sdk::User { id: 5, name: "bob".into(),
//! #     first_name: None, last_name: None, email: None }, groups: vec![] }));
//! # let out = Welcome::handle(event).unwrap();
//! # assert_eq!(out[0].subject, "Welcome to OMERO, bob");
//! ```
//!
//! Build and test it with `herald test` (cases in `tests/cases/*.yaml`), build
//! it alone with `herald rule build` (it writes `welcome.wasm`), and point a
//! rule entry in `herald.yaml` at that file. See Herald's `docs/writing-rules.md`.
//!
//! # A smaller shadow stack makes each invocation cheaper
//!
//! Rust gives a wasm module a 1 MiB shadow stack in linear memory, which
//! spreads a rule's pages apart; every page a fresh instance touches outside
//! the engine's resident window costs a page fault. The default rules are
//! linked with a 64 KiB stack, which took an invocation from about 36 µs to
//! about 11 µs. Do the same in your rule crate's `.cargo/config.toml`, unless
//! the rule recurses deeply:
//!
//! ```toml
//! [target.wasm32-wasip2]
//! rustflags = ["-C", "link-arg=-zstack-size=65536"]
//! ```
//!
//! # Every kind of event
//!
//! [`Event::data`] is a [`Payload`]; match the kinds the rule is `on` (its
//! entry in herald.yaml decides which arrive) and send nothing for the rest.
//! One line per kind, with the fields a rule usually needs:
//!
//! ```
//! use herald_sdk::{Event, Payload};
//!
//! fn describe(event: &Event) -> String {
//!     match &event.data {
//!         Payload::ServerUp(up) => format!("{} is up (version {:?})", up.server, up.version),
//!         Payload::ServerDown(down) => format!("{} is down: {:?}", down.server, down.reason),
//!         Payload::LoginFailed(failed) => format!("login as {} failed from {:?}", failed.user, failed.remote_addr),
//!         Payload::UserCreated(created) => format!("new user {} in {} group(s)", created.user.name, created.groups.len()),
//!         Payload::GroupCreated(created) => format!("new group {}", created.group.name),
//!         Payload::CommentAdded(added) => format!(
//!             "{} commented on {} object(s), owned by {:?}",
//!             added.comment.owner.name,
//!             added.links.len(),
//!             added.links.iter().filter_map(|l| l.owner.as_ref()).map(|o| &o.name).collect::<Vec<_>>()
//!         ),
//!         Payload::WebError(error) => format!("{} {} answered {}", error.method, error.path, error.status),
//!         Payload::Broadcast(mail) => format!("admin email: {}", mail.subject),
//!         Payload::Tick(tick) => format!("tick of {} ({})", tick.rule, tick.schedule),
//!         Payload::Custom(json) => format!("{}: {json}", event.kind),
//!     }
//! }
//!
//! let tick = herald_sdk::Tick { schedule: "0 0 8 * * Mon".into(), rule: "digest".into() };
//! let event = herald_sdk::testing::event("herald.tick", Payload::Tick(tick));
//! assert_eq!(describe(&event), "tick of digest (0 0 8 * * Mon)");
//! let custom = herald_sdk::testing::event("lab.scope.down", Payload::Custom("{\"scope\":3}".into()));
//! assert_eq!(describe(&custom), "lab.scope.down: {\"scope\":3}");
//! ```
//!
//! The example rules in Herald's `rules/examples/` show whole rules for
//! failed logins (quiet hours, owner escalation), new users (routing by group)
//! and comments (a weekly digest), each with test cases.
//!
//! # Event data is the sender's
//!
//! Any string in an event may hold CR, LF, NUL or other control characters and be
//! as long as the engine's `ingest.max_string_bytes` (64 KiB by default). The
//! engine refuses a subject or header with a line break (header injection), and
//! every instruction counts against the rule's fuel. Put event values into a
//! subject through [`safe::header_value`], cut long values for a body with
//! [`safe::body_value`], and read an extra field of `data_json` with
//! [`json::top_level`] rather than parsing all of it. [`omero::Summary`] does the
//! cutting for its facts, quote and links.
//!
//! # Testing a rule natively
//!
//! On any target but wasm32 the host calls go to a [`testing::TestHost`]
//! that the test installs, so `cargo test` exercises the rule's logic without
//! a sandbox. [`testing::handle`] holds the answer to the engine's checks
//! (addresses, header injection, caps), [`testing::at`] sets an event's time,
//! and [`serde_json`] is re-exported for configs.

extern crate self as herald_sdk;

#[doc(hidden)]
pub use wit_bindgen;

/// On wasm32-unknown-unknown (how Herald builds its own rules) std's allocator grows memory at
/// the first allocation, which costs a fresh instance two `mprotect` calls in the engine; this
/// one starts in the heap the linker leaves at the end of the initial memory.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// The JSON library the SDK uses, for tests (`serde_json::json!` configs) and `data_json`.
pub use serde_json;

/// The bindings generated from `sdk/wit/rule.wit`. Rule authors never need
/// to name anything in here; use the re-exports at the crate root.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "rule",
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "herald_sdk::bindings",
        runtime_path: "herald_sdk::wit_bindgen::rt",
    });
}

pub mod config;
pub mod directory;
pub mod json;
pub mod kv;
pub mod log;
pub mod mail;
mod message;
pub mod omero;
pub mod safe;
pub mod testing;

pub use bindings::herald::rule::types::{
    Addressing, Broadcast, Comment, CommentAdded, ConfigError, Entry, Event, ExceptionInfo, Group,
    GroupCreated, Header, LoginFailed, Member, Message, ObjectRef, Payload, Recipient, RequestInfo,
    ServerDown, ServerUp, Tick, User, UserCreated, WebError,
};

/// The one trait a rule implements.
///
/// `handle` is called once per event the rule is subscribed to (its `on`
/// list in `herald.yaml`), each time in a fresh sandbox instance: nothing
/// survives from one call to the next except what the rule puts in [`kv`].
/// Return the messages to queue (none is fine), or an error text that fails
/// this invocation only and is recorded against the rule.
pub trait Rule {
    fn handle(event: Event) -> Result<Vec<Message>, String>;
}

/// Export a [`Rule`] implementation as the component's `handle` function.
///
/// Use it exactly once per rule crate, at the crate root. Name the rule's
/// config type as well (`export_rule!(MyRule, config = Settings)`), and the
/// engine checks the `config:` in herald.yaml against it when it loads the
/// rule, refusing a wrong key or type with its line; without it any config
/// loads and [`config::get`] reports the problem at each event. On non-wasm
/// targets it expands to nothing, so the crate can also be linked natively
/// (tests, benchmarks) beside other rules.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        $crate::export_rule!(@export $rule, |_config: &str| ::core::result::Result::Ok(()));
    };
    ($rule:ty, config = $settings:ty) => {
        $crate::export_rule!(@export $rule, |config: &str| $crate::config::check::<$settings>(config));
    };
    (@export $rule:ty, $check:expr) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct HeraldExport;
            impl $crate::bindings::Guest for HeraldExport {
                fn handle(
                    event: $crate::Event,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<$crate::Message>,
                    $crate::__private::String,
                > {
                    $crate::__private::report_panics();
                    <$rule as $crate::Rule>::handle(event)
                }

                fn check_config(
                    config: $crate::__private::String,
                ) -> ::core::result::Result<(), $crate::ConfigError> {
                    $crate::__private::report_panics();
                    let check: fn(&str) -> ::core::result::Result<(), $crate::ConfigError> = $check;
                    check(&config)
                }
            }
    $crate::bindings::__export_rule_world!(HeraldExport with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use std::string::String;
    pub use std::vec::Vec;

    /// On a wasm target with no stderr (wasm32-unknown-unknown, how Herald builds its own
    /// rules), hand a panic's report (`panicked at FILE:LINE:COL:\nMESSAGE`) to the engine as
    /// an error `log` line, which it reads the way it reads a WASI rule's stderr. Elsewhere
    /// Rust's own hook already writes it to stderr.
    pub fn report_panics() {
        #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
        std::panic::set_hook(std::boxed::Box::new(|info| {
            crate::log::error(&std::string::ToString::to_string(info))
        }));
    }
}
