//! Contextual output encoding for portal pages the host renders (approval screen, connected
//! apps, access history), so that untrusted data — an app's name, a patient's name, a scope
//! string — cannot script the page.
//!
//! The escaping itself is done by the `html-escape` crate; this module picks the right
//! function per context and adds the one thing an escaper cannot do: refusing dangerous URL
//! schemes (`javascript:`, `data:`…) before a URL is put in an `href`/`src`.
//!
//! | context | function |
//! |---|---|
//! | element text: `<p>…</p>` | [`text`] |
//! | quoted attribute value: `title="…"` | [`attr`] |
//! | URL attribute: `href="…"` | [`url_attr`] |
//! | one query component inside a URL you build | [`url_component`] |
//!
//! Never put untrusted data in an unquoted attribute, a `<script>` or `<style>` block, an
//! event-handler attribute or a CSS value; the strict CSP from
//! [`super::headers::STRICT_CSP`] is the second line of defence.

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Why a URL may not be put in a URL attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HtmlError {
    /// A scheme other than `https`, `http` or `mailto` (e.g. `javascript:`, `data:`,
    /// `vbscript:`), or a protocol-relative `//host` URL.
    #[error("URL scheme not allowed in a page")]
    UnsafeScheme,
    /// Whitespace or control characters, which browsers strip to reveal a scheme.
    #[error("URL has whitespace or control characters")]
    Malformed,
}

/// Encodes `s` for element text (also safe inside a quoted attribute): `& < > " ' /`.
pub fn text(s: &str) -> Cow<'_, str> {
    html_escape::encode_safe(s)
}

/// Encodes `s` for a quoted (`"…"` or `'…'`) attribute value.
pub fn attr(s: &str) -> Cow<'_, str> {
    html_escape::encode_quoted_attribute(s)
}

/// Checks that `url` is an `https:`, `http:` or `mailto:` URL, or a path-relative or
/// root-relative reference, then encodes it for a quoted URL attribute.
pub fn url_attr(url: &str) -> Result<String, HtmlError> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(HtmlError::Malformed);
    }
    if url.starts_with("//") || url.starts_with("\\\\") || url.starts_with("/\\") {
        return Err(HtmlError::UnsafeScheme);
    }
    // A scheme is whatever precedes the first `:` if no `/ ? #` comes before it.
    let first_delim = url.find(['/', '?', '#']).unwrap_or(url.len());
    if let Some(colon) = url[..first_delim].find(':') {
        let scheme = url[..colon].to_ascii_lowercase();
        if !matches!(scheme.as_str(), "https" | "http" | "mailto") {
            return Err(HtmlError::UnsafeScheme);
        }
    }
    Ok(html_escape::encode_quoted_attribute(url).into_owned())
}

/// Characters left as-is in a URL component: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` for use as one path segment or query value of a URL you build
/// (then pass the whole URL through [`url_attr`]).
pub fn url_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts() {
        assert_eq!(
            text("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"
        );
        assert_eq!(attr(r#"" onmouseover="x"#), "&quot; onmouseover=&quot;x");
        assert_eq!(url_component("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn url_schemes() {
        assert!(
            url_attr("https://app.example.org/x?a=1&b=2")
                .unwrap()
                .contains("&amp;")
        );
        assert!(url_attr("/portal/apps").is_ok());
        assert_eq!(
            url_attr("javascript:alert(1)"),
            Err(HtmlError::UnsafeScheme)
        );
        assert_eq!(
            url_attr("JaVaScRiPt:alert(1)"),
            Err(HtmlError::UnsafeScheme)
        );
        assert_eq!(
            url_attr("data:text/html,<script>"),
            Err(HtmlError::UnsafeScheme)
        );
        assert_eq!(url_attr("java\tscript:alert(1)"), Err(HtmlError::Malformed));
        assert_eq!(url_attr("//evil.example"), Err(HtmlError::UnsafeScheme));
    }
}
