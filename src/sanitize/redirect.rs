//! Redirect-URI rules for client registration, and exact matching at authorize time.
//!
//! A registered redirect URI is absolute; `https`, except `http` on a loopback IP literal for
//! native apps (RFC 8252 §7.3); without fragment, userinfo, wildcards, dot segments or
//! non-canonical spellings (upper-case scheme or host). At authorize time the presented URI
//! must equal a registered one byte for byte: no prefix, no pattern, no normalisation.

use std::fmt;

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedirectUriError {
    /// Empty, longer than 2048 bytes, or holding whitespace, controls or non-ASCII.
    #[error("redirect URI is empty, too long or has illegal characters")]
    Malformed,
    /// Not `https://` or `http://` (in lower case): relative, custom scheme, `javascript:`…
    #[error("redirect URI must be an absolute https URI")]
    NotHttps,
    /// `http` on a host that is not a loopback IP literal (`127.0.0.1`, `[::1]`).
    #[error("plain http is only allowed on a loopback IP literal")]
    InsecureHttp,
    /// Has a `#fragment` (RFC 6749 §3.1.2).
    #[error("redirect URI must not have a fragment")]
    Fragment,
    /// Contains `*` (a wildcard).
    #[error("redirect URI must not contain wildcards")]
    Wildcard,
    /// Has userinfo (`user@host`), which is a phishing trick.
    #[error("redirect URI must not have userinfo")]
    UserInfo,
    /// The host is empty, upper-case, percent-encoded, or the port is invalid.
    #[error("redirect URI host or port is invalid")]
    InvalidHost,
    /// The path has `.`/`..` segments, a backslash or bad percent-encoding.
    #[error("redirect URI path is invalid")]
    InvalidPath,
}

/// A redirect URI that passed the registration rules.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);

impl fmt::Debug for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedirectUri({})", self.0)
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RedirectUri {
    /// Checks `uri` against the registration rules.
    pub fn register(uri: &str) -> Result<Self, RedirectUriError> {
        if uri.is_empty() || uri.len() > 2048 || !uri.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RedirectUriError::Malformed);
        }
        if uri.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if uri.contains('*') {
            return Err(RedirectUriError::Wildcard);
        }
        if uri.contains('\\') {
            return Err(RedirectUriError::InvalidPath);
        }
        let (https, rest) = if let Some(r) = uri.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(RedirectUriError::NotHttps);
        };
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_query) = rest.split_at(auth_end);
        if authority.contains('@') {
            return Err(RedirectUriError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        if let Some(p) = port {
            let valid = !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
            if !valid {
                return Err(RedirectUriError::InvalidHost);
            }
        }
        let loopback = host == "127.0.0.1" || host == "[::1]";
        let host_ok = loopback
            || (!host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !host.starts_with(['.', '-'])
                && !host.contains(".."));
        if !host_ok {
            return Err(RedirectUriError::InvalidHost);
        }
        if !https && !loopback {
            return Err(RedirectUriError::InsecureHttp);
        }
        let path = path_query.split('?').next().unwrap_or("");
        if path.split('/').any(|seg| {
            seg == "."
                || seg == ".."
                || seg.eq_ignore_ascii_case("%2e")
                || seg.eq_ignore_ascii_case("%2e%2e")
        }) {
            return Err(RedirectUriError::InvalidPath);
        }
        let bytes = path_query.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return Err(RedirectUriError::InvalidPath);
            }
        }
        Ok(Self(uri.to_owned()))
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented` (from an authorize request) is exactly this URI, or, for a
    /// loopback IP redirect, this URI on another port (RFC 8252 §7.3).
    pub fn matches(&self, presented: &str) -> bool {
        self.0 == presented || same_loopback_redirect_but_port(&self.0, presented)
    }
}

/// Finds the registered URI that `presented` matches ([`RedirectUri::matches`]), if any.
pub fn match_exact<'a>(registered: &'a [RedirectUri], presented: &str) -> Option<&'a RedirectUri> {
    registered.iter().find(|r| r.matches(presented))
}

/// The loopback IP literal and the rest (path and query) of an `http` redirect URI, with its
/// port checked and dropped; `None` for anything else.
fn loopback_parts(uri: &str) -> Option<(&'static str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let (host, rest) = ["127.0.0.1", "[::1]"]
        .into_iter()
        .find_map(|h| rest.strip_prefix(h).map(|r| (h, r)))?;
    let rest = match rest.strip_prefix(':') {
        Some(port_and_rest) => {
            let end = port_and_rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(port_and_rest.len());
            let port = &port_and_rest[..end];
            if port.is_empty() || port.len() > 5 || port.parse::<u16>().map_or(true, |p| p == 0) {
                return None;
            }
            &port_and_rest[end..]
        }
        None => rest,
    };
    // What follows the authority starts a path or a query; anything else (`@`, more host
    // characters) means the authority was not the bare loopback literal.
    (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some((host, rest))
}

/// Whether `presented` is the loopback IP redirect `registered` on another port (or the same):
/// native apps listen where the system lets them (RFC 8252 §7.3, kept by RFC 9700 §2.1). The
/// scheme, IP literal, path and query must be exactly the registered ones.
pub(crate) fn same_loopback_redirect_but_port(registered: &str, presented: &str) -> bool {
    match (loopback_parts(registered), loopback_parts(presented)) {
        (Some(r), Some(p)) => r == p,
        _ => false,
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), RedirectUriError> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(RedirectUriError::InvalidHost)?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            r => Ok((
                host,
                Some(r.strip_prefix(':').ok_or(RedirectUriError::InvalidHost)?),
            )),
        };
    }
    Ok(match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(RedirectUri::register("https://app.example.org/cb").is_ok());
        assert!(RedirectUri::register("http://127.0.0.1:8080/cb").is_ok());
        assert!(RedirectUri::register("http://[::1]:8080/cb").is_ok());
        use RedirectUriError as E;
        let cases = [
            ("http://app.example.org/cb", E::InsecureHttp),
            ("http://localhost/cb", E::InsecureHttp),
            ("https://app.example.org/cb#x", E::Fragment),
            ("https://*.example.org/cb", E::Wildcard),
            ("https://evil@app.example.org/cb", E::UserInfo),
            ("/cb", E::NotHttps),
            ("javascript:alert(1)", E::NotHttps),
            ("HTTPS://app.example.org/cb", E::NotHttps),
            ("https://App.Example.org/cb", E::InvalidHost),
            ("https://app.example.org/a/../cb", E::InvalidPath),
            ("https://app.example.org:0/cb", E::InvalidHost),
            ("https://app.example.org/c b", E::Malformed),
        ];
        for (uri, want) in cases {
            assert_eq!(RedirectUri::register(uri).unwrap_err(), want, "{uri}");
        }
    }

    #[test]
    fn exact_match_only() {
        let r = vec![RedirectUri::register("https://app.example.org/cb").unwrap()];
        assert!(match_exact(&r, "https://app.example.org/cb").is_some());
        assert!(match_exact(&r, "https://app.example.org/cb/").is_none());
        assert!(match_exact(&r, "https://app.example.org/cb?x=1").is_none());
        assert!(match_exact(&r, "https://app.example.org/CB").is_none());
    }
}
