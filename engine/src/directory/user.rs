//! An OMERO user kept compact: its four texts in one allocation, for directories of 100,000 users.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OMERO user (experimenter). Serializes to the shared `User` shape of events.md.
///
/// The name, first name, last name and email live in one boxed string: a directory holds one
/// allocation per user instead of up to four, and 40 bytes in its list instead of 104.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// OMERO's id.
    pub id: i64,
    /// The texts one after the other: name, first name, last name, email.
    texts: Box<str>,
    /// Where the name, first name and last name end in `texts` (the email runs to the end).
    ends: [u32; 3],
    /// Which of first name, last name and email are present (bits 0, 1, 2): an absent one is
    /// not the same as an empty one.
    present: u8,
}

impl User {
    /// A user from its id and texts. Together the texts keep at most 4 GiB, far beyond any
    /// real user; past that they are cut (at a character boundary), never refused.
    pub fn new(
        id: i64,
        name: &str,
        first_name: Option<&str>,
        last_name: Option<&str>,
        email: Option<&str>,
    ) -> User {
        Self::within(u32::MAX as usize, id, name, [first_name, last_name, email])
    }

    /// [`User::new`], the texts kept within `room` bytes in all.
    fn within(room: usize, id: i64, name: &str, optional: [Option<&str>; 3]) -> User {
        let length = name.len() + optional.iter().flatten().map(|t| t.len()).sum::<usize>();
        let mut texts = String::with_capacity(length.min(room));
        let mut ends = [0u32; 3];
        let mut present = 0u8;
        push_within(&mut texts, name, room);
        ends[0] = end_of(&texts);
        for (at, text) in optional.iter().enumerate() {
            if let Some(text) = text {
                present |= 1 << at;
                push_within(&mut texts, text, room);
            }
            if at < 2 {
                ends[at + 1] = end_of(&texts);
            }
        }
        User {
            id,
            texts: texts.into_boxed_str(),
            ends,
            present,
        }
    }

    /// The OMERO name (omeName).
    pub fn name(&self) -> &str {
        &self.texts[..self.ends[0] as usize]
    }

    /// The first name, when known.
    pub fn first_name(&self) -> Option<&str> {
        self.optional(0)
    }

    /// The last name, when known.
    pub fn last_name(&self) -> Option<&str> {
        self.optional(1)
    }

    /// The email as written, valid or not; see [`super::valid_email`].
    pub fn email(&self) -> Option<&str> {
        self.optional(2)
    }

    /// The `at`th optional text (first name, last name, email).
    fn optional(&self, at: usize) -> Option<&str> {
        if self.present & (1 << at) == 0 {
            return None;
        }
        let start = self.ends[at] as usize;
        let end = self
            .ends
            .get(at + 1)
            .map_or(self.texts.len(), |&e| e as usize);
        Some(&self.texts[start..end])
    }

    fn fields(&self) -> Fields<'_> {
        Fields {
            id: self.id,
            name: self.name(),
            first_name: self.first_name(),
            last_name: self.last_name(),
            email: self.email(),
        }
    }
}

/// Append what of `text` fits in `room` bytes of `texts` in all, cut at a character boundary.
fn push_within(texts: &mut String, text: &str, room: usize) {
    let mut end = text.len().min(room.saturating_sub(texts.len()));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    texts.push_str(&text[..end]);
}

/// Where `texts` ends, as an offset: `push_within` keeps it within `u32::MAX`.
fn end_of(texts: &str) -> u32 {
    u32::try_from(texts.len()).unwrap_or(u32::MAX)
}

/// The user as its fields, for serde and `Debug`.
#[derive(Serialize)]
struct Fields<'a> {
    id: i64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<User, D::Error> {
        super::raw::RawUser::deserialize(deserializer).map(User::from)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fields {
            id,
            name,
            first_name,
            last_name,
            email,
        } = self.fields();
        f.debug_struct("User")
            .field("id", &id)
            .field("name", &name)
            .field("first_name", &first_name)
            .field("last_name", &last_name)
            .field("email", &email)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_reads_back_as_given() {
        let cases = [
            (
                "alice",
                Some("Alice"),
                Some("Liddell"),
                Some("alice@example.org"),
            ),
            ("bob", None, None, None),
            ("", Some(""), None, Some("")),
            ("émile", None, Some("Zola ✍"), None),
            ("c", Some("first"), None, Some("c@x")),
        ];
        for (name, first, last, email) in cases {
            let user = User::new(7, name, first, last, email);
            assert_eq!(
                (
                    user.id,
                    user.name(),
                    user.first_name(),
                    user.last_name(),
                    user.email()
                ),
                (7, name, first, last, email)
            );
        }
    }

    #[test]
    fn an_empty_text_is_not_an_absent_one() {
        let empty = User::new(1, "a", Some(""), None, None);
        let absent = User::new(1, "a", None, None, None);
        assert_ne!(empty, absent);
        assert_eq!(empty.first_name(), Some(""));
        assert_eq!(absent.first_name(), None);
    }

    #[test]
    fn serde_keeps_the_shared_user_shape() {
        let user = User::new(2, "alice", Some("Alice"), None, Some("alice@example.org"));
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 2, "name": "alice", "first_name": "Alice", "email": "alice@example.org"})
        );
        let back: User = serde_json::from_value(json).unwrap();
        assert_eq!(back, user);
        assert_eq!(
            format!("{user:?}"),
            r#"User { id: 2, name: "alice", first_name: Some("Alice"), last_name: None, email: Some("alice@example.org") }"#
        );
    }

    #[test]
    fn texts_past_the_room_are_cut_at_a_character_boundary() {
        // "é" is two bytes: with room for five, "cdé" after "ab" keeps "cd", and one byte is
        // left for "fg".
        let user = User::within(5, 3, "ab", [Some("cdé"), Some("fg"), None]);
        assert_eq!(
            (
                user.name(),
                user.first_name(),
                user.last_name(),
                user.email()
            ),
            ("ab", Some("cd"), Some("f"), None)
        );
        let user = User::within(3, 3, "abé", [None, None, Some("xy")]);
        assert_eq!((user.name(), user.email()), ("ab", Some("x")));
    }

    #[test]
    fn a_user_is_small() {
        assert!(size_of::<User>() <= 40);
    }
}
