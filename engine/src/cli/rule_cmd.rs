//! `herald rule new|build|run`: scaffold a rule crate, build it, and run it with no herald.yaml.

pub(super) mod compile;
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
    },
    /// Build a rule crate for wasm32-wasip2 into PATH/NAME.wasm and check it exports the rule contract.
    Build {
        /// The rule crate (the folder with its Cargo.toml).
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Run one rule on the events of a file, with no herald.yaml.
    Run(single::Args),
}

pub fn run(command: Command) -> Outcome {
    match command {
        Command::New { name, dir } => new(&name, dir),
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

fn new(name: &str, dir: Option<PathBuf>) -> Outcome {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    scaffold::create(name, &dir)?;
    println!(
        "created rule `{name}` in {}\n\nnext:\n  cd {}\n  herald test        # build and run tests/cases/*.yaml\n  \
         herald rule run {name}.wasm --event events/user-created.json\n\nthe SDK is in {}/herald-sdk \
         (package herald-rule-sdk); the config entry to paste is in herald-rule.yaml",
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A usage error (exit 2) from anything displayable.
fn usage(message: impl std::fmt::Display) -> CliError {
    CliError::Usage(message.to_string())
}
