//! `herald config`: validate the configuration, or import OMERO's mail settings.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::{CliError, Context, Outcome};
use crate::evaluate::Evaluator;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the config, the directory and every rule module; name the key and the fix.
    Check,
    /// Turn `omero config get` output (key=value lines; `-` is stdin) into Herald YAML on
    /// stdout; notes and keys not imported go to stderr too.
    ImportOmero {
        /// The file holding `omero config get` output.
        file: PathBuf,
    },
}

pub fn run(ctx: &Context, cmd: Command) -> Outcome {
    match cmd {
        Command::Check => check(ctx),
        Command::ImportOmero { file } => import_omero(&file),
    }
}

fn check(ctx: &Context) -> Outcome {
    let config = ctx.config()?;
    let directory = super::directory_of(&config)?;
    super::warn_about_schedules(&config);
    let evaluator = Evaluator::new(&config, Arc::new(directory))
        .map_err(|e| CliError::Usage(format!("{e:#}")))?;
    println!("{}: ok", config.file.display());
    for rule in evaluator.rules() {
        println!("  rule {}: on {}", rule.name, rule.on.join(", "));
    }
    let disabled = config.rules.iter().filter(|r| !r.enabled).count();
    if disabled > 0 {
        println!("  ({disabled} rule(s) disabled)");
    }
    Ok(ExitCode::SUCCESS)
}

fn import_omero(file: &PathBuf) -> Outcome {
    let text = read_input(file).map_err(|e| {
        CliError::Usage(format!(
            "cannot read {}: {e}\n  fix: save `omero config get` output to a file and pass it",
            file.display()
        ))
    })?;
    let import = crate::config::omero::import_omero(&text, &file.display().to_string());
    print!("{}", import.yaml);
    for note in &import.notes {
        eprintln!("note: {note}");
    }
    for skipped in &import.skipped {
        eprintln!("not imported: {skipped}");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &PathBuf) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        return Ok(text);
    }
    std::fs::read_to_string(file)
}
