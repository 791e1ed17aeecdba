//! What goes wrong loading a YAML file: the located [`Diagnostic`] and the [`LoadError`] around it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a YAML file could not be loaded. Its `Display` names the file, line, key path and fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {what} {}: {error}\n  fix: {fix}", file.display())]
    Read {
        /// What the file is, for messages: `config` or `directory`.
        what: &'static str,
        /// The file, as given.
        file: PathBuf,
        /// The I/O error.
        error: io::Error,
        /// How to make the file readable.
        fix: &'static str,
    },
    /// The file was read but its content is not valid.
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl LoadError {
    /// Where and what the problem is, unless the file could not be read at all.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            LoadError::Read { .. } => None,
            LoadError::Invalid(diagnostic) => Some(diagnostic),
        }
    }
}

impl From<Diagnostic> for LoadError {
    fn from(diagnostic: Diagnostic) -> Self {
        LoadError::Invalid(diagnostic)
    }
}

/// A problem in a YAML file Herald reads: where it is, what is wrong and how to fix it.
///
/// Displays as `FILE:LINE:COLUMN: KEY.PATH: MESSAGE` and a second line `  fix: FIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// The key path, such as `rules[1].limits.fuel` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// A 1-based line and column in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}\n  fix: {}", self.message, self.fix)
    }
}

impl std::error::Error for Diagnostic {}

/// " (line N)" when the line is known.
pub(crate) fn at_line(location: Option<Location>) -> String {
    location.map_or_else(String::new, |at| format!(" (line {})", at.line))
}

/// The diagnostic of a load that must fail (tests).
#[cfg(test)]
pub(crate) fn expect_invalid<T: fmt::Debug>(result: Result<T, LoadError>) -> Diagnostic {
    match result {
        Err(LoadError::Invalid(diagnostic)) => diagnostic,
        Err(other) => panic!("expected a diagnostic, got {other}"),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

/// `Some` line and column (tests).
#[cfg(test)]
pub(crate) fn at(line: usize, column: usize) -> Option<Location> {
    Some(Location { line, column })
}
