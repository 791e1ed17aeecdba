//! The file transport: each message becomes one `.eml` file in a folder.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::mail::MailKey;

/// Writes messages as `.eml` files, atomically (temp file, then rename).
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    pub fn new(dir: &Path) -> FileTransport {
        FileTransport {
            dir: dir.to_owned(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write one message; returns the file it went to.
    pub fn send(&self, key: &MailKey, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create the mail folder {}", self.dir.display()))?;
        let path = self.dir.join(file_name(key));
        let tmp = path.with_extension("eml.tmp");
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// `<event>--<rule>--<recipient>--<digest>.eml`, with unsafe characters replaced.
/// The digest keeps two sources that reuse an event id apart.
pub fn file_name(key: &MailKey) -> String {
    let digest = key.digest();
    format!(
        "{}--{}--{}--{}.eml",
        safe(&key.event_id),
        safe(&key.rule),
        safe(&key.recipient),
        &digest[..8]
    )
}

fn safe(part: &str) -> String {
    part.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '@' | '+' => c,
            _ => '_',
        })
        .collect()
}
