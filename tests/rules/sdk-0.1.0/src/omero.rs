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
/// A value longer than [`LINK_BYTES`] is cut there first: such a link is too long
/// to use, and [`Summary::link`] leaves it out.
pub fn link(template: &str, vars: &[(&str, &str)]) -> String {
    fill_with(template, vars, |value| {
        percent_encode(&value[..value.floor_char_boundary(LINK_BYTES + 1)])
    })
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
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let unreserved = |byte: &u8| byte.is_ascii_alphanumeric() || b"-._~".contains(byte);
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some(run) = rest.iter().position(|b| !unreserved(b)) {
        out.extend_from_slice(&rest[..run]);
        let byte = rest[run];
        out.extend_from_slice(&[
            b'%',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xf)],
        ]);
        rest = &rest[run + 1..];
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).expect("percent-encoded text is ASCII")
}

/// A user as people read it: `First Last (name)`, or just the omeName when
/// the directory has no first or last name. A first or last name is looked at
/// up to [`FACT_CHARS`] bytes (a longer one is cut there), so the cost stays bounded.
pub fn display_name(user: &User) -> String {
    fn head(part: &str) -> &str {
        &part[..part.floor_char_boundary(FACT_CHARS)]
    }
    let full: Vec<&str> = [&user.first_name, &user.last_name]
        .into_iter()
        .flatten()
        .map(|part| head(part).trim())
        .filter(|part| !part.is_empty())
        .collect();
    if full.is_empty() {
        user.name.clone()
    } else {
        format!("{} ({})", full.join(" "), user.name)
    }
}

/// The most characters of a [`Summary`] fact's value (then `…`).
pub const FACT_CHARS: usize = 1000;

/// The longest link a [`Summary`] shows; a longer one is left out (browsers and
/// mail clients do not open such URLs reliably).
pub const LINK_BYTES: usize = 4096;

/// The most lines of a [`Summary`] quote (then a note that more were cut).
pub const QUOTE_LINES: usize = 50;

/// The most bytes of a [`Summary`] quote (then a note of how much was cut).
pub const QUOTE_BYTES: usize = 2 * 1024;

/// An enriched-mode body: an opening sentence, `label: value` facts, an
/// optional quoted text and links, rendered as plain text and as
/// HTML (every value escaped), both ending with [`DEFAULT_BODY`].
///
/// Event data is made safe here: the intro and each fact's value are put on one
/// line (control characters become spaces) and cut at [`FACT_CHARS`]
/// characters, a quote is cut at [`QUOTE_BYTES`] and [`QUOTE_LINES`], and a link longer than
/// [`LINK_BYTES`] is left out (see [`crate::safe`]).
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
    /// A summary that opens with `intro`, one sentence: put on one line and cut at
    /// [`FACT_CHARS`] like a fact.
    pub fn new(intro: impl AsRef<str>) -> Self {
        Summary {
            intro: crate::safe::one_line(intro.as_ref(), FACT_CHARS),
            ..Default::default()
        }
    }

    /// Add a `label: value` line; the value is put on one line and cut at [`FACT_CHARS`].
    pub fn fact(mut self, label: impl Into<String>, value: impl AsRef<str>) -> Self {
        let value = crate::safe::one_line(value.as_ref(), FACT_CHARS);
        self.facts.push((label.into(), value));
        self
    }

    /// Quote a text, such as a comment, after the facts; cut at [`QUOTE_BYTES`] and
    /// [`QUOTE_LINES`] lines.
    pub fn quote(mut self, text: impl AsRef<str>) -> Self {
        let text = crate::safe::cut(text.as_ref(), QUOTE_BYTES);
        let mut lines: Vec<&str> = text.lines().take(QUOTE_LINES + 1).collect();
        let mut quote = if lines.len() > QUOTE_LINES {
            lines.truncate(QUOTE_LINES);
            let mut kept = lines.join("\n");
            kept.push_str("\n… (more lines cut)");
            kept
        } else {
            text.into_owned()
        };
        quote.shrink_to_fit();
        self.quote = Some(quote);
        self
    }

    /// Add a link at the end; `None` (no `web_url` configured) adds nothing.
    pub fn link_opt(self, label: impl AsRef<str>, url: Option<String>) -> Self {
        match url {
            Some(url) => self.link(label, url),
            None => self,
        }
    }

    /// Add a link at the end (after any earlier ones). A URL longer than
    /// [`LINK_BYTES`] (event data made it so) is left out; its label is cut like a fact.
    pub fn link(mut self, label: impl AsRef<str>, url: impl Into<String>) -> Self {
        let url = url.into();
        if url.len() <= LINK_BYTES {
            let label = crate::safe::one_line(label.as_ref(), FACT_CHARS);
            self.links.push((label, url));
        }
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

/// Whether a `omero.login.failed` event is a failure OMERO would mail about: the password
/// check returned `false`. An event whose raw data carries `success` with any other value
/// (true, null, "unknown") is not; without the field, the event type itself means failure.
/// Only `success` is read ([`crate::json::top_level`]): parsing the whole data would cost
/// fuel for every escape in the user agent.
pub fn login_definitely_failed(data_json: &str) -> bool {
    crate::json::top_level(data_json, "success").is_none_or(|success| success == "false")
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
    fn summary_facts_are_one_line_and_long_values_are_cut() {
        let summary = Summary::new("x")
            .fact("User agent", "a\r\nFake: fact")
            .fact("Long", "y".repeat(FACT_CHARS + 5))
            .quote("q".repeat(QUOTE_BYTES + 1));
        let text = summary.text();
        assert!(text.contains("User agent: a  Fake: fact\n"), "{text}");
        assert!(text.contains(&format!("Long: {}…\n", "y".repeat(FACT_CHARS))));
        assert!(text.contains("… (1 more bytes cut)\n"));
        let many = Summary::new("x")
            .quote("l\n".repeat(QUOTE_LINES + 1))
            .text();
        assert_eq!(many.matches("> l\n").count(), QUOTE_LINES);
        assert!(many.contains("> … (more lines cut)\n"), "{many}");
    }

    #[test]
    fn mode_reads_lowercase() {
        let mode: Mode = serde_json::from_str("\"enriched\"").unwrap();
        assert_eq!(mode, Mode::Enriched);
        assert!(serde_json::from_str::<Mode>("\"rich\"").is_err());
    }
}
