//! Default rule `new-comment`: tell an image's owner when someone else comments on it (OMERO's newCommentMailSender).
//!
//! One event is one comment. Each distinct owner of a linked Image, other
//! than the comment's owner, gets one message; comments on anything but
//! images, self-comments and images without a known owner send nothing.
//!
//! OMERO's cumulative-body quirk (the k-th of N objects inserted in one
//! transaction gets a mail listing objects 1..k) is not reproduced: Herald
//! sends one mail per recipient listing the object of this event, so the
//! parity body has exactly one `CommentAnnotation` line.

use herald_sdk::omero::{self, Mode, Summary, class};
use std::collections::HashMap;

use herald_sdk::{
    CommentAdded, Event, Message, ObjectRef, Payload, Recipient, Rule, User, config, export_rule,
    log, safe,
};

/// The rule's `config` keys: `mode`, `subject_prefix`, `web_url`.
/// `web_url` placeholders: `{id}` (the image id), `{type}` (`image`) and `{comment_id}`.
type Settings = omero::SenderSettings;

pub struct NewComment;

impl Rule for NewComment {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::CommentAdded(added) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!(
            "{}INSERT CommentAnnotation notification",
            settings.subject_prefix
        );
        let messages = owners_to_tell(added)
            .into_iter()
            .map(|(owner, images)| {
                let mail = match settings.mode {
                    Mode::Parity => Message::new(
                        subject.clone(),
                        omero::modified_objects(
                            class::COMMENT_ANNOTATION,
                            &[added.comment.id],
                            "INSERT",
                        ),
                    ),
                    Mode::Enriched => {
                        enriched(&event, added, &images, &settings).message(subject.clone())
                    }
                };
                mail.to(Recipient::UserId(owner.id))
            })
            .collect();
        Ok(messages)
    }
}

/// The most owners one comment mails. A comment linked to images of more owners
/// tells the first ones and logs the rest, so the rule stays within its
/// `max_messages`, `max_output` and fuel whatever the event holds.
const MAX_OWNERS: usize = 5;

/// The owners of the linked images other than the commenter, in link order,
/// each with their images; at most [`MAX_OWNERS`].
fn owners_to_tell(added: &CommentAdded) -> Vec<(&User, Vec<&ObjectRef>)> {
    let mut owners: Vec<(&User, Vec<&ObjectRef>)> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    for image in added.links.iter().filter(|link| link.kind == "Image") {
        let Some(owner) = &image.owner else { continue };
        if owner.id == added.comment.owner.id {
            continue;
        }
        let at = *index.entry(owner.id).or_insert_with(|| {
            owners.push((owner, Vec::new()));
            owners.len() - 1
        });
        owners[at].1.push(image);
    }
    if owners.len() > MAX_OWNERS {
        log::warn(&format!(
            "new-comment: the comment is on images of {} owners; telling the first {MAX_OWNERS}",
            owners.len()
        ));
        owners.truncate(MAX_OWNERS);
    }
    owners
}

/// The enriched body for one owner: who commented, the text, that owner's
/// images with links, and when.
fn enriched(
    event: &Event,
    added: &CommentAdded,
    images: &[&ObjectRef],
    settings: &Settings,
) -> Summary {
    let author = omero::display_name(&added.comment.owner);
    let author = safe::header_value(&author);
    let comment_id = added.comment.id.to_string();
    let what = if images.len() == 1 { "image" } else { "images" };
    let mut summary = Summary::new(format!("{author} commented on your {what}."));
    summary = summary.fact("Comment by", author);
    for image in images {
        summary = summary.fact("Image", image_label(image));
    }
    summary = summary
        .fact("Comment id", comment_id.clone())
        .fact("Time", event.time.clone())
        .quote(added.comment.text.clone());
    for image in images {
        let id = image.id.to_string();
        let url = settings.web_url.as_deref().map(|t| {
            omero::link(
                t,
                &[("id", &id), ("type", "image"), ("comment_id", &comment_id)],
            )
        });
        summary = summary.link_opt(format!("Open {}", image_label(image)), url);
    }
    summary
}

/// `cells.tif (id 7)`, or `image 7` when the event carries no name.
fn image_label(image: &ObjectRef) -> String {
    match &image.name {
        Some(name) => format!("{name} (id {})", image.id),
        None => format!("image {}", image.id),
    }
}

export_rule!(NewComment, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::Comment;
    use herald_sdk::testing::{TestHost, event};

    fn user(id: i64, name: &str, first: &str, last: &str) -> User {
        User {
            id,
            name: name.into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            email: Some(format!("{name}@example.org")),
        }
    }

    fn alice() -> User {
        user(2, "alice", "Alice", "Liddell")
    }

    fn bob() -> User {
        user(3, "bob", "Bob", "Builder")
    }

    fn object(kind: &str, id: i64, name: &str, owner: Option<User>) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            id,
            name: Some(name.into()),
            owner,
        }
    }

    fn comment(id: i64, owner: User, links: Vec<ObjectRef>) -> Event {
        let comment = Comment {
            id,
            text: "Nice cells!\n<b>really</b>".into(),
            owner,
        };
        event(
            "omero.comment.added",
            Payload::CommentAdded(CommentAdded { comment, links }),
        )
    }

    fn run(config: serde_json::Value, ev: Event) -> Vec<Message> {
        TestHost::new().config(config).install();
        NewComment::handle(ev).unwrap()
    }

    const PARITY_901: &str =
        "Modified objects:\nclass ome.model.annotations.CommentAnnotation:901 - INSERT\n";

    #[test]
    fn comment_on_someone_elses_image_tells_the_owner() {
        let ev = comment(
            901,
            bob(),
            vec![object("Image", 7, "cells.tif", Some(alice()))],
        );
        let out = run(serde_json::json!({}), ev);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].subject,
            "[OMERO] INSERT CommentAnnotation notification"
        );
        assert_eq!(out[0].text, PARITY_901);
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::UserId(2)]));
    }

    #[test]
    fn self_comment_sends_nothing() {
        let ev = comment(
            902,
            alice(),
            vec![object("Image", 7, "cells.tif", Some(alice()))],
        );
        assert!(run(serde_json::json!({}), ev).is_empty());
    }

    #[test]
    fn dataset_and_project_links_send_nothing() {
        let ev = comment(
            903,
            bob(),
            vec![
                object("Dataset", 4, "run 1", Some(alice())),
                object("Project", 5, "p", Some(alice())),
            ],
        );
        assert!(run(serde_json::json!({}), ev).is_empty());
    }

    #[test]
    fn image_without_owner_sends_nothing() {
        let ev = comment(905, bob(), vec![object("Image", 10, "orphan.tif", None)]);
        assert!(run(serde_json::json!({}), ev).is_empty());
    }

    #[test]
    fn two_images_same_owner_one_message() {
        let ev = comment(
            901,
            bob(),
            vec![
                object("Image", 7, "cells.tif", Some(alice())),
                object("Image", 9, "more.tif", Some(alice())),
            ],
        );
        let out = run(serde_json::json!({}), ev);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, PARITY_901);
        assert!(matches!(out[0].to[..], [Recipient::UserId(2)]));
    }

    #[test]
    fn several_owners_one_message_each_skipping_the_commenter() {
        let frank = user(7, "frank", "Frank", "Poole");
        let ev = comment(
            904,
            bob(),
            vec![
                object("Image", 7, "cells.tif", Some(alice())),
                object("Image", 8, "nuclei.tif", Some(bob())),
                object("Dataset", 4, "run 1", Some(frank.clone())),
                object("Image", 9, "more.tif", Some(frank)),
                object("Image", 11, "again.tif", Some(alice())),
            ],
        );
        let out = run(serde_json::json!({}), ev);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0].to[..], [Recipient::UserId(2)]));
        assert!(matches!(out[1].to[..], [Recipient::UserId(7)]));
        for mail in &out {
            assert_eq!(
                mail.text,
                "Modified objects:\nclass ome.model.annotations.CommentAnnotation:904 - INSERT\n"
            );
        }
    }

    #[test]
    fn parity_never_holds_the_comment_text() {
        let ev = comment(
            901,
            bob(),
            vec![object("Image", 7, "cells.tif", Some(alice()))],
        );
        let out = run(serde_json::json!({"mode": "parity"}), ev);
        assert!(!out[0].text.contains("Nice cells"));
    }

    #[test]
    fn enriched_has_author_text_images_and_links() {
        let ev = comment(
            901,
            bob(),
            vec![
                object("Image", 7, "cells.tif", Some(alice())),
                ObjectRef {
                    kind: "Image".into(),
                    id: 9,
                    name: None,
                    owner: Some(alice()),
                },
            ],
        );
        let config = serde_json::json!({"mode": "enriched",
            "web_url": "https://omero.example.org/webclient/?show={type}-{id}&c={comment_id}"});
        let out = run(config, ev);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].subject,
            "[OMERO] INSERT CommentAnnotation notification"
        );
        assert_eq!(
            out[0].text,
            "Bob Builder (bob) commented on your images.\n\n\
             Comment by: Bob Builder (bob)\nImage: cells.tif (id 7)\nImage: image 9\n\
             Comment id: 901\nTime: 2026-01-01T00:00:00Z\n\n\
             > Nice cells!\n> <b>really</b>\n\n\
             Open cells.tif (id 7): https://omero.example.org/webclient/?show=image-7&c=901\n\
             Open image 9: https://omero.example.org/webclient/?show=image-9&c=901\n\n\
             Automated email sent by the OMERO server.\n"
        );
        let html = out[0].html.as_deref().unwrap();
        assert!(
            html.contains("<blockquote>Nice cells!<br>\n&lt;b&gt;really&lt;/b&gt;</blockquote>")
        );
        assert!(
            html.contains(
                "<a href=\"https://omero.example.org/webclient/?show=image-7&amp;c=901\">"
            )
        );
        assert!(!html.contains("<b>really"));
    }

    #[test]
    fn enriched_still_skips_self_comments() {
        let ev = comment(
            902,
            alice(),
            vec![object("Image", 7, "cells.tif", Some(alice()))],
        );
        assert!(run(serde_json::json!({"mode": "enriched"}), ev).is_empty());
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"web": "x"}))
            .install();
        let ev = comment(901, bob(), vec![]);
        assert!(NewComment::handle(ev).is_err());
    }
}
