//! `herald rule new|build|run`: scaffold a rule crate, build it, and run it with no herald.yaml.

pub(super) mod compile;
pub(super) mod python;
mod scaffold;
pub(super) mod single;

use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, Outcome};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Make a rule crate that builds at once: the SDK beside it, a worked example, a passing case.
    New {
        /// The rule's name: lowercase letters, digits and dashes, e.g. `welcome-users`.
        name: String,
        /// Where to make it (default: ./NAME); it must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The language to write the rule in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
    },
    /// Build a rule (a Rust crate for wasm32-wasip2, or a Python app.py with componentize-py)
    /// into PATH/NAME.wasm and check it exports the rule contract.
    Build {
        /// The rule's folder (with its Cargo.toml, or its app.py).
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Run one rule on the events of a file, with no herald.yaml.
    Run(single::Args),
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::New { name, dir, lang } => new(&name, dir, lang),
        Command::Build { path } => {
            let built = compile::build(&path)?;
            eprintln!(
                "built {} ({} KiB); it exports the rule contract",
                built.wasm.display(),
                built.size.div_ceil(1024)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => single::run(args),
    }
}

/// The languages `herald rule new` writes a rule in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// A Rust crate with the SDK (`herald-rule-sdk`) beside it.
    Rust,
    /// A Python app.py with the SDK (`herald/`) beside it, built with componentize-py.
    Python,
}

fn new(name: &str, dir: Option<PathBuf>, lang: Lang) -> Outcome {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = match lang {
        Lang::Rust => {
            scaffold::create(name, &dir)?;
            format!("{}/herald-sdk (package herald-rule-sdk)", dir.display())
        }
        Lang::Python => {
            scaffold::create_python(name, &dir)?;
            format!("{}/herald (the Python package `herald`)", dir.display())
        }
    };
    println!(
        "created rule `{name}` in {}\n\nnext:\n  cd {}\n  herald test        # build and run tests/cases/*.yaml\n  \
         herald rule run {name}.wasm --event events/user-created.json\n\nthe SDK is in {sdk}; the \
         config entry to paste is in herald-rule.yaml",
        dir.display(),
        dir.display(),
    );
    Ok(ExitCode::SUCCESS)
}

/// A usage error (exit 2) from anything displayable.
fn usage(message: impl std::fmt::Display) -> CliError {
    CliError::Usage(message.to_string())
}
