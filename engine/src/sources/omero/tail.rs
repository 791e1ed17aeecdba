//! Follows a log file across rotation: by inode, from a byte offset kept in Herald's store.
//!
//! logback (Blitz-0.log) and Python's rotating handler (OMEROweb.log) rotate by renaming the
//! file to `<name>.1` (older ones move up to `.9`) and starting a new one. When the inode at the
//! path changes, the rest of the old file is read from `<name>.1`…`.9` (found by its inode)
//! before the new file is read from its start, so a rotation loses and repeats nothing. A file
//! that shrank under the same inode (copytruncate) is read again from its start. After two or
//! more rotations while Herald was away, the file followed is finished and the new one read,
//! but the files between are not. Only whole lines (ending in `\n`) are taken; each comes with
//! the inode and offset it starts at, which make a stable event id.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The most read in one go; the rest waits for the next poll.
const MAX_READ: u64 = 8 << 20;
/// A line longer than this is cut to it (the rest of it is skipped).
const MAX_LINE: usize = 64 << 10;

/// Where the follower stands: this file, this far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

/// One whole line and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub inode: u64,
    pub offset: u64,
    pub text: String,
}

/// What one read found.
#[derive(Debug, Default)]
pub struct Taken {
    pub lines: Vec<Line>,
    /// Bytes in the file past the new position (lag).
    pub behind: u64,
    /// Set when the old file of a rotation could not be found: its unread end is lost.
    pub lost: Option<String>,
}

/// The position at the current end of `path` (a first start: history is not read).
pub fn at_end(path: &Path) -> std::io::Result<Position> {
    let meta = std::fs::metadata(path)?;
    Ok(Position {
        inode: meta.ino(),
        offset: meta.len(),
    })
}

/// logback's fixed window keeps `<name>.1` … `<name>.9`.
const ROTATED: u32 = 9;

/// The rotated file `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated file that is the inode `inode` (`.1` after one rotation, `.2` after two…).
fn rotated_with(path: &Path, inode: u64) -> Option<PathBuf> {
    (1..=ROTATED)
        .map(|n| rotated(path, n))
        .find(|old| std::fs::metadata(old).is_ok_and(|m| m.ino() == inode))
}

/// Read the whole lines after `position`, following a rotation; `position` moves past them.
pub fn read(path: &Path, position: &mut Position) -> std::io::Result<Taken> {
    let meta = std::fs::metadata(path)?;
    let mut out = Taken::default();
    if meta.ino() != position.inode {
        match rotated_with(path, position.inode) {
            Some(old) => read_lines(&old, position, &mut out.lines)?,
            None if position.inode != 0 => {
                out.lost = Some(format!(
                    "{} was rotated and its old file is not among {}.1 to .{ROTATED}; its unread end is skipped",
                    path.display(),
                    path.display()
                ));
            }
            None => {}
        }
        *position = Position {
            inode: meta.ino(),
            offset: 0,
        };
    } else if meta.len() < position.offset {
        position.offset = 0;
    }
    read_lines(path, position, &mut out.lines)?;
    out.behind = std::fs::metadata(path)
        .map(|m| m.len().saturating_sub(position.offset))
        .unwrap_or(0);
    Ok(out)
}

/// Append the whole lines of `path` after `position.offset` (up to [`MAX_READ`] bytes).
fn read_lines(path: &Path, position: &mut Position, lines: &mut Vec<Line>) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(position.offset))?;
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes)?;
    let mut start = 0;
    while let Some(end) = bytes[start..].iter().position(|&b| b == b'\n') {
        let raw = &bytes[start..start + end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let cut = &raw[..raw.len().min(MAX_LINE)];
        lines.push(Line {
            inode: position.inode,
            offset: position.offset + start as u64,
            text: String::from_utf8_lossy(cut).into_owned(),
        });
        start += end + 1;
    }
    position.offset += start as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn texts(read: &Taken) -> Vec<&str> {
        read.lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn only_whole_lines_are_taken_and_a_rotation_loses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("Blitz-0.log");
        append(&log, "old history\n");
        let mut at = at_end(&log).unwrap();
        append(&log, "one\ntw");
        assert_eq!(texts(&read(&log, &mut at).unwrap()), ["one"]);
        append(&log, "o\nthree\n");
        // Rotation: the file is renamed to .1 and a new one started.
        std::fs::rename(&log, dir.path().join("Blitz-0.log.1")).unwrap();
        append(&log, "four\n");
        let got = read(&log, &mut at).unwrap();
        assert_eq!(texts(&got), ["two", "three", "four"]);
        assert!(got.lost.is_none());
        assert_eq!(texts(&read(&log, &mut at).unwrap()), Vec::<&str>::new());
        assert_eq!(at.offset, 5);
    }

    #[test]
    fn after_two_rotations_the_old_file_is_finished_and_only_the_one_between_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("Blitz-0.log");
        append(&log, "a\n");
        let mut at = at_end(&log).unwrap();
        append(&log, "b\n");
        for _ in 0..2 {
            if dir.path().join("Blitz-0.log.1").exists() {
                std::fs::rename(
                    dir.path().join("Blitz-0.log.1"),
                    dir.path().join("Blitz-0.log.2"),
                )
                .unwrap();
            }
            std::fs::rename(&log, dir.path().join("Blitz-0.log.1")).unwrap();
            append(&log, "c\n");
        }
        let got = read(&log, &mut at).unwrap();
        // The old file (now .2) is finished; the file in between (.1) was never followed.
        assert_eq!(texts(&got), ["b", "c"]);
    }

    #[test]
    fn a_truncated_file_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("OMEROweb.log");
        append(&log, "aaaa\nbbbb\n");
        let mut at = at_end(&log).unwrap();
        File::create(&log).unwrap();
        append(&log, "c\n");
        assert_eq!(texts(&read(&log, &mut at).unwrap()), ["c"]);
    }
}
