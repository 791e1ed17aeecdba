//! Pieces of OMERO's own mail that several rules share: prefixes, bodies, modes and enriched-mode helpers.
//!
//! Herald's default rules reproduce OMERO's mail exactly in **parity** mode
//! (the default) and can add names, text, links and an HTML part in
//! **enriched** mode. The constants and helpers here keep those rules (and
//! yours) consistent:
//!
//! ```
//! use herald_sdk::omero::{self, class, Mode};
//!
//! assert_eq!(omero::SUBJECT_PREFIX, "[OMERO] ");
//! assert_eq!(
//!     omero::modified_objects(class::EXPERIMENTER, &[52], "INSERT"),
//!     "Modified objects:\nclass ome.model.meta.Experimenter:52 - INSERT\n",
//! );
//! assert_eq!(Mode::default(), Mode::Parity);
//! assert_eq!(omero::escape_html("<a & b>"), "&lt;a &amp; b&gt;");
//! assert_eq!(
//!     omero::link("https://omero.example.org/webclient/?show=image-{id}", &[("id", "7")]),
//!     "https://omero.example.org/webclient/?show=image-7",
//! );
//! ```

use serde::Deserialize;

use crate::User;

/// OMERO's subject prefix for the server's own mail, trailing space included.
pub const SUBJECT_PREFIX: &str = "[OMERO] ";

/// OMERO's body when a sender gives none.
pub const DEFAULT_BODY: &str = "Automated email sent by the OMERO server.\n";

/// The fully qualified OMERO model classes named in "Modified objects" bodies.
pub mod class {
    /// A user.
    pub const EXPERIMENTER: &str = "ome.model.meta.Experimenter";
    /// A group.
    pub const EXPERIMENTER_GROUP: &str = "ome.model.meta.ExperimenterGroup";
    /// A comment.
    pub const COMMENT_ANNOTATION: &str = "ome.model.annotations.CommentAnnotation";
}

/// How a default rule writes its mail; set per rule with `config: {mode: ...}`.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Byte for byte what OMERO sends (the default).
    #[default]
    Parity,
    /// Parity's subject, a richer plain-text body and an HTML alternative.
    Enriched,
}

/// The knobs every OMERO-sender rule shares, as `config:` in `herald.yaml`.
///
/// Unknown keys are errors, so a typo fails loudly with the key named.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SenderSettings {
    /// `parity` (default) sends OMERO's mail exactly; `enriched` adds names,
    /// text, the time, links and an HTML part.
    pub mode: Mode,
    /// Prepended to the subject; default [`SUBJECT_PREFIX`].
    pub subject_prefix: String,
    /// Enriched mode only: a link template whose `{placeholders}` each rule
    /// documents. Default: no link.
    pub web_url: Option<String>,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            mode: Mode::Parity,
            subject_prefix: default_subject_prefix(),
            web_url: None,
        }
    }
}

/// [`SUBJECT_PREFIX`] as an owned string, for `#[serde(default)]` settings.
pub fn default_subject_prefix() -> String {
    SUBJECT_PREFIX.to_owned()
}

/// OMERO's ObjectMailSender body: `Modified objects:` then one
/// `class <class>:<id> - <action>` line per id.
pub fn modified_objects(class: &str, ids: &[i64], action: &str) -> String {
    let mut body = String::from("Modified objects:\n");
    for id in ids {
        body.push_str(&format!("class {class}:{id} - {action}\n"));
    }
    body
}

/// Escape text for HTML element content and double- or single-quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Replace each `{name}` in `template` with its value from `vars`.
///
/// Placeholders that `vars` does not name are left as they are, so a typo
/// shows up in the output instead of vanishing. Values are inserted verbatim.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    fill_with(template, vars, str::to_owned)
}

/// [`fill`] for URLs: each value is percent-encoded (everything but
/// `A-Z a-z 0-9 - . _ ~`), so a name with spaces or `&` cannot break the link.
pub fn link(template: &str, vars: &[(&str, &str)]) -> String {
    fill_with(template, vars, percent_encode)
}

fn fill_with(template: &str, vars: &[(&str, &str)], encode: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after
            .find('}')
            .and_then(|close| Some((close, vars.iter().find(|(k, _)| *k == &after[..close])?)));
        match value {
            Some((close, (_, value))) => {
                out.push_str(&encode(value));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A user as people read it: `First Last (name)`, or just the omeName when
/// the directory has no first or last name.
pub fn display_name(user: &User) -> String {
    let full: Vec<&str> = [&user.first_name, &user.last_name]
        .into_iter()
        .flatten()
        .map(|part| part.trim())
        .filter(|part| !part.is_empty())
        .collect();
    if full.is_empty() {
        user.name.clone()
    } else {
        format!("{} ({})", full.join(" "), user.name)
    }
}

/// An enriched-mode body: an opening sentence, `label: value` facts, an
/// optional quoted text and links, rendered as plain text and as
/// HTML (every value escaped), both ending with [`DEFAULT_BODY`].
///
/// ```
/// use herald_sdk::omero::Summary;
///
/// let summary = Summary::new("A new group was created.")
///     .fact("Group", "lab <1>")
///     .link("Open in OMERO.web", "https://omero.example.org/webadmin/");
/// assert_eq!(
///     summary.text(),
///     "A new group was created.\n\nGroup: lab <1>\n\n\
///      Open in OMERO.web: https://omero.example.org/webadmin/\n\n\
///      Automated email sent by the OMERO server.\n",
/// );
/// assert!(summary.html().contains("<td>lab &lt;1&gt;</td>"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Summary {
    intro: String,
    facts: Vec<(String, String)>,
    quote: Option<String>,
    links: Vec<(String, String)>,
}

impl Summary {
    /// A summary that opens with `intro`, one sentence.
    pub fn new(intro: impl Into<String>) -> Self {
        Summary {
            intro: intro.into(),
            ..Default::default()
        }
    }

    /// Add a `label: value` line.
    pub fn fact(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.facts.push((label.into(), value.into()));
        self
    }

    /// Quote a text, such as a comment, after the facts.
    pub fn quote(mut self, text: impl Into<String>) -> Self {
        self.quote = Some(text.into());
        self
    }

    /// Add a link at the end; `None` (no `web_url` configured) adds nothing.
    pub fn link_opt(self, label: impl Into<String>, url: Option<String>) -> Self {
        match url {
            Some(url) => self.link(label, url),
            None => self,
        }
    }

    /// Add a link at the end (after any earlier ones).
    pub fn link(mut self, label: impl Into<String>, url: impl Into<String>) -> Self {
        self.links.push((label.into(), url.into()));
        self
    }

    /// The plain-text body.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n", self.intro);
        for (label, value) in &self.facts {
            out.push_str(&format!("{label}: {value}\n"));
        }
        if let Some(quote) = &self.quote {
            out.push('\n');
            for line in quote.lines() {
                out.push_str(&format!("> {line}\n"));
            }
        }
        if !self.links.is_empty() {
            out.push('\n');
        }
        for (label, url) in &self.links {
            out.push_str(&format!("{label}: {url}\n"));
        }
        out.push('\n');
        out.push_str(DEFAULT_BODY);
        out
    }

    /// The HTML alternative: a small self-contained document.
    pub fn html(&self) -> String {
        let mut out = String::from("<!DOCTYPE html>\n<html><body>\n");
        out.push_str(&format!("<p>{}</p>\n", escape_html(&self.intro)));
        if !self.facts.is_empty() {
            out.push_str("<table>\n");
            for (label, value) in &self.facts {
                out.push_str(&format!(
                    "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
                    escape_html(label),
                    escape_html(value)
                ));
            }
            out.push_str("</table>\n");
        }
        if let Some(quote) = &self.quote {
            let lines: Vec<String> = quote.lines().map(escape_html).collect();
            out.push_str(&format!(
                "<blockquote>{}</blockquote>\n",
                lines.join("<br>\n")
            ));
        }
        for (label, url) in &self.links {
            out.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>\n",
                escape_html(url),
                escape_html(label)
            ));
        }
        out.push_str(&format!(
            "<p><small>{}</small></p>\n</body></html>\n",
            escape_html(DEFAULT_BODY.trim_end())
        ));
        out
    }

    /// Put [`Summary::text`] and [`Summary::html`] on a message with this subject.
    pub fn message(&self, subject: impl Into<String>) -> crate::Message {
        crate::Message::new(subject, self.text()).html(self.html())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_keeps_unknown_placeholders_and_lone_braces() {
        assert_eq!(fill("{a}-{b}-{", &[("a", "1")]), "1-{b}-{");
        assert_eq!(fill("x}{a}", &[("a", "&")]), "x}&");
    }

    #[test]
    fn link_encodes_values_only() {
        assert_eq!(
            link("https://h/?q={name}&x=1", &[("name", "a b&c/é")]),
            "https://h/?q=a%20b%26c%2F%C3%A9&x=1"
        );
    }

    #[test]
    fn display_name_falls_back_to_the_ome_name() {
        let mut user = User {
            id: 2,
            name: "alice".into(),
            first_name: Some("Alice".into()),
            last_name: Some("Liddell".into()),
            email: None,
        };
        assert_eq!(display_name(&user), "Alice Liddell (alice)");
        user.last_name = Some(" ".into());
        assert_eq!(display_name(&user), "Alice (alice)");
        user.first_name = None;
        assert_eq!(display_name(&user), "alice");
    }

    #[test]
    fn summary_html_escapes_everything() {
        let html = Summary::new("<i>")
            .fact("a&b", "\"q\"")
            .quote("x<y\nz")
            .link("go", "https://h/?a=1&b=2")
            .html();
        assert!(html.contains("<p>&lt;i&gt;</p>"));
        assert!(html.contains("<th align=\"left\">a&amp;b</th><td>&quot;q&quot;</td>"));
        assert!(html.contains("<blockquote>x&lt;y<br>\nz</blockquote>"));
        assert!(html.contains("<a href=\"https://h/?a=1&amp;b=2\">go</a>"));
    }

    #[test]
    fn mode_reads_lowercase() {
        let mode: Mode = serde_json::from_str("\"enriched\"").unwrap();
        assert_eq!(mode, Mode::Enriched);
        assert!(serde_json::from_str::<Mode>("\"rich\"").is_err());
    }
}
