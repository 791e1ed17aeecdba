//! The directory file read a few entries at a time, so a large file costs little more memory than its entries.
//!
//! `serde_yaml` builds a whole document's parse events before it deserialises any of
//! it: about 17 bytes for each byte of the file, 200 MB for 100,000 users. A file in
//! the usual shape (top-level `users:` and `groups:` keys, each a block list) is cut
//! at its list entries instead, and each run of entries is parsed by `serde_yaml` on
//! its own. Anything else gives `None`, as does any run that does not parse: then the
//! caller parses the whole file, which is also what explains an error with its line.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::raw::{parse_groups, parse_users};
use super::{Group, User};

/// List entries parsed at a time.
pub(super) const CHUNK: usize = 512;

/// The users and groups of the file at `path`, or `None`: it is not in the usual shape, a run
/// of entries did not parse (the whole-file parse explains why), or it cannot be read.
pub(super) fn entries(path: &Path, chunk: usize) -> Option<(Vec<User>, Vec<Group>)> {
    let mut reader = BufReader::new(File::open(path).ok()?);
    let mut splitter = Splitter::new(chunk.max(1));
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        splitter.push(&line)?;
    }
    splitter.finish()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Users,
    Groups,
}

/// Cuts the file into runs of whole list entries, parsing each run as it completes.
struct Splitter {
    chunk: usize,
    section: Option<Section>,
    seen: Vec<Section>,
    /// The column of the section's list indicators (`-`), once its first entry is seen.
    column: Option<usize>,
    /// The current run's text and how many entries it holds.
    run: String,
    in_run: usize,
    users: Vec<User>,
    groups: Vec<Group>,
}

impl Splitter {
    fn new(chunk: usize) -> Splitter {
        Splitter {
            chunk,
            section: None,
            seen: Vec::new(),
            column: None,
            run: String::new(),
            in_run: 0,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Take one line (with its line end); `None` when the file is not in the usual shape.
    fn push(&mut self, line: &str) -> Option<()> {
        let body = line.trim_start_matches(' ');
        let column = line.len() - body.len();
        if body.starts_with('\t') {
            return None; // tabs in indentation: leave it to the whole-file parse
        }
        let blank = body.trim().is_empty() || body.starts_with('#');
        let entry = is_entry(body);
        // A list may be written at column 0, under its key.
        let listed_at_0 = entry && self.section.is_some() && self.column.is_none_or(|c| c == 0);
        if column == 0 && !blank && !listed_at_0 {
            return self.top_level(line);
        }
        if self.section.is_none() {
            return blank.then_some(()); // comments before the first key; nothing else
        }
        if entry {
            let first = *self.column.get_or_insert(column);
            if column == first {
                if self.in_run == self.chunk {
                    self.flush()?;
                }
                self.in_run += 1;
            }
        } else if self.column.is_none() && !blank {
            return None; // a section's value that is not a block list
        }
        self.run.push_str(line);
        Some(())
    }

    /// A line at column 0 that is not an entry of a list written there: `users:` or `groups:`.
    fn top_level(&mut self, line: &str) -> Option<()> {
        let section = match line.trim_end() {
            "users:" => Section::Users,
            "groups:" => Section::Groups,
            _ => return None,
        };
        if self.seen.contains(&section) {
            return None; // a repeated key: the whole-file parse refuses it
        }
        self.flush()?;
        self.seen.push(section);
        self.section = Some(section);
        self.column = None;
        Some(())
    }

    /// Parse the current run into its section's entries.
    fn flush(&mut self) -> Option<()> {
        if self.in_run > 0 {
            match self.section? {
                Section::Users => self.users.extend(parse_users(&self.run)?),
                Section::Groups => self.groups.extend(parse_groups(&self.run)?),
            }
        }
        self.run.clear();
        self.in_run = 0;
        Some(())
    }

    fn finish(mut self) -> Option<(Vec<User>, Vec<Group>)> {
        self.flush()?;
        Some((self.users, self.groups))
    }
}

/// Whether a line's text (after its indentation) starts a block list entry.
fn is_entry(body: &str) -> bool {
    body.strip_prefix('-')
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\r', '\n']))
}
