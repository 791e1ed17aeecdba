//! `herald test`: build a rule crate and run its cases (tests/cases/*.yaml), with a diff on failure.

mod case;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::rule_cmd::{compile, python, single};
use super::{CliError, Outcome};
use crate::config::{Config, Limits, RuleConfig};
use case::{Case, Verdict};

/// The rule entry (name, config, limits) that `herald rule new` writes beside the crate.
const RULE_ENTRY: &str = "herald-rule.yaml";
const CASES_DIR: &str = "tests/cases";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rule's folder: its Cargo.toml or app.py, herald-rule.yaml and tests/cases/*.yaml.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Test this component instead of building PATH first.
    #[arg(long, value_name = "RULE.wasm")]
    wasm: Option<PathBuf>,
}

pub fn run(args: Args) -> Outcome {
    let wasm = match args.wasm {
        Some(wasm) => wasm,
        None => compile::build(&args.path)?.wasm,
    };
    let base = rule_entry(&args.path, &wasm)?;
    let cases = case_files(&args.path)?;
    let cache = args.path.join("target/herald/cache");
    let mut failed = 0;
    for file in &cases {
        let verdict = Case::load(file).and_then(|case| case.run(&base, Some(cache.clone())));
        failed += usize::from(!report(file, &verdict, &base.limits));
    }
    let passed = cases.len() - failed;
    eprintln!("\n{passed} passed, {failed} failed ({} cases)", cases.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Print one case's result; true when it passed.
fn report(file: &Path, verdict: &Result<Verdict, CliError>, limits: &Limits) -> bool {
    let name = file.file_stem().unwrap_or_default().to_string_lossy();
    match verdict {
        Ok(verdict) => {
            let status = if verdict.passed() { "PASS" } else { "FAIL" };
            println!("{status} {name}: {}", verdict.usage(limits));
            if !verdict.passed() {
                let explained = super::report::printable_lines(&verdict.explain());
                println!("{}", single::indent(&explained, "  "));
            }
            verdict.passed()
        }
        Err(err) => {
            let text = match err {
                CliError::Usage(text) => text.clone(),
                CliError::Runtime(err) => format!("{err:#}"),
            };
            println!(
                "FAIL {name}: the case cannot run\n{}",
                single::indent(&text, "  ")
            );
            false
        }
    }
}

/// The rule as `herald-rule.yaml` configures it (checked like herald.yaml), running `wasm`.
fn rule_entry(dir: &Path, wasm: &Path) -> Result<RuleConfig, CliError> {
    let file = dir.join(RULE_ENTRY);
    if !file.exists() {
        return Ok(single::rule_config(
            wasm,
            serde_json::json!({}),
            python::default_limits(wasm),
        ));
    }
    let config = Config::load(&file, Some(&dir.join("target/herald")))?;
    let Some(rule) = config.rules.into_iter().next() else {
        return Err(CliError::Usage(format!(
            "{} lists no rule: write one entry under `rules:`",
            file.display()
        )));
    };
    Ok(RuleConfig {
        module: crate::config::ModuleRef::Path(wasm.to_owned()),
        ..rule
    })
}

/// The case files, sorted.
fn case_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let cases_dir = dir.join(CASES_DIR);
    let entries = std::fs::read_dir(&cases_dir).map_err(|err| {
        CliError::Usage(format!(
            "cannot read {}: {err}\n  fix: put the rule's cases there, one YAML file each (`herald rule new` shows one)",
            cases_dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no .yaml case; add one (`herald rule new` shows the format)",
            cases_dir.display()
        )));
    }
    Ok(files)
}
