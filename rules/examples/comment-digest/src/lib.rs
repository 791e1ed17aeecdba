//! Example rule `comment-digest`: collect new comments per owner of the commented object, and
//! mail each owner one digest on the rule's (weekly) tick.

use herald_sdk::{CommentAdded, Event, Message, Payload, Recipient, Rule, export_rule, kv, safe};

/// The kv key listing the owners with a pending digest, one id per line.
const OWNERS: &str = "owners";
/// Pending digests are dropped if no tick comes within this long (a missed week).
const KEEP_SECONDS: u64 = 14 * 86_400;
/// The most characters of a comment quoted in a digest.
const QUOTE_CHARS: usize = 80;

pub struct CommentDigest;

impl Rule for CommentDigest {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        match &event.data {
            Payload::CommentAdded(added) => {
                collect(&event, added);
                Ok(Vec::new())
            }
            Payload::Tick(_) => Ok(digests()),
            _ => Ok(Vec::new()),
        }
    }
}

/// One line per (comment, owned object) under the owner's key.
fn collect(event: &Event, added: &CommentAdded) {
    let author = safe::header_value(&added.comment.owner.name);
    let quote = safe::one_line(&added.comment.text, QUOTE_CHARS);
    for link in &added.links {
        let Some(owner) = &link.owner else { continue };
        if owner.id == added.comment.owner.id {
            continue; // nobody needs to hear about their own comments
        }
        let name = link
            .name
            .as_deref()
            .map(safe::header_value)
            .unwrap_or_default();
        let line = format!(
            "{} {author} on {} {} {name}: {quote}\n",
            event.time, link.kind, link.id
        );
        append(&format!("owner:{}", owner.id), &line);
        let listed = String::from_utf8(kv::get(OWNERS).unwrap_or_default()).unwrap_or_default();
        if !listed.lines().any(|id| id == owner.id.to_string()) {
            append(OWNERS, &format!("{}\n", owner.id));
        }
    }
}

fn append(key: &str, line: &str) {
    let mut value = kv::get(key).unwrap_or_default();
    value.extend_from_slice(line.as_bytes());
    kv::set(key, &value, Some(KEEP_SECONDS));
}

/// One mail per owner with what was collected, and the store emptied.
fn digests() -> Vec<Message> {
    let owners = String::from_utf8(kv::get(OWNERS).unwrap_or_default()).unwrap_or_default();
    kv::delete(OWNERS);
    owners
        .lines()
        .filter_map(|id| id.parse::<i64>().ok())
        .filter_map(|id| {
            let key = format!("owner:{id}");
            let lines = String::from_utf8(kv::get(&key)?).ok()?;
            kv::delete(&key);
            let count = lines.lines().count();
            let mail = Message::new(
                format!("[OMERO] {count} new comment(s) on your data this week"),
                format!("New comments on objects you own:\n{lines}"),
            );
            Some(mail.to(Recipient::UserId(id)))
        })
        .collect()
}

export_rule!(CommentDigest);
