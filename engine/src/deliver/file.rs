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

/// The longest a part of a file name may be before it is shortened: three parts, the
/// separators, the digest, `.eml` and the temporary `.tmp` stay within 255 bytes.
const MAX_PART: usize = 72;

/// `<event>--<rule>--<recipient>--<digest>.eml`, with unsafe characters replaced.
/// The digest keeps two sources that reuse an event id apart. A part longer than
/// [`MAX_PART`] keeps its start and ends with a hash of the whole part, so a name never
/// exceeds the 255 bytes file systems allow, and ids that differ late stay apart.
pub fn file_name(key: &MailKey) -> String {
    let digest = key.digest();
    format!(
        "{}--{}--{}--{}.eml",
        short(&key.event_id),
        short(&key.rule),
        short(&key.recipient),
        &digest[..8]
    )
}

/// The sanitised part, cut to [`MAX_PART`] bytes with `~<hash>` at the end when longer.
fn short(part: &str) -> String {
    let safe = safe(part);
    if safe.len() <= MAX_PART {
        return safe;
    }
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(part.as_bytes())[..6]);
    // `safe` is ASCII, so any byte index is a char boundary.
    format!("{}~{hash}", &safe[..MAX_PART - hash.len() - 1])
}

fn safe(part: &str) -> String {
    part.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '@' | '+' => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(event_id: &str, recipient: &str) -> MailKey {
        MailKey {
            source: "s".into(),
            event_id: event_id.into(),
            rule: "new-user".into(),
            recipient: recipient.into(),
        }
    }

    #[test]
    fn short_ids_keep_todays_names() {
        assert_eq!(
            file_name(&key("evt-1", "alice@example.org")),
            format!(
                "evt-1--new-user--alice@example.org--{}.eml",
                &key("evt-1", "alice@example.org").digest()[..8]
            )
        );
    }

    #[test]
    fn any_key_gives_a_name_within_255_bytes_with_the_tmp_suffix() {
        let long = "x".repeat(10_000);
        let name = file_name(&MailKey {
            source: long.clone(),
            event_id: "é".repeat(3000),
            rule: long.clone(),
            recipient: long,
        });
        assert!(name.len() + ".tmp".len() <= 255, "{} bytes", name.len());
    }

    #[test]
    fn long_ids_that_differ_after_the_cut_get_different_names() {
        let base = "e".repeat(300);
        let (a, b) = (format!("{base}a"), format!("{base}b"));
        let (a, b) = (
            file_name(&key(&a, "r@x.org")),
            file_name(&key(&b, "r@x.org")),
        );
        assert_ne!(a, b);
        assert!(a.len() + ".tmp".len() <= 255, "{} bytes", a.len());
        assert!(a.starts_with(&"e".repeat(50)), "{a}");
    }
}
