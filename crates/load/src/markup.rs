//! Escaping text for XML markup (the document an extractor rebuilds from HTML for XPath, the
//! control characters JUnit's writer must drop; report.html is escaped by its askama
//! templates). Hand-written: besides the five markup characters it replaces control
//! characters, which XML 1.0 cannot hold at all and which the escapers of the XML crates
//! (quick-xml's `escape`) pass through; a leaf every stage may use.

/// Escapes text for XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` with the control characters XML cannot hold (all but line feed and tab) as
/// spaces, for a writer that escapes the markup characters itself.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unholdable = |c: char| c.is_control() && !matches!(c, '\n' | '\t');
    if text.contains(unholdable) {
        text.replace(unholdable, " ").into()
    } else {
        text.into()
    }
}
