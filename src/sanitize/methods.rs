//! The HTTP methods a FHIR route allows: what a `405`'s `Allow` header lists.

use std::fmt;

use http::{HeaderValue, Method};

/// A set of the HTTP methods FHIR's RESTful API uses (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`,
/// `DELETE`), in one byte: cheap to copy into a [`SanitizeError`](super::SanitizeError).
///
/// It says only what the *route* accepts under the configuration, never anything about the
/// request or stored data, so it may go on the wire (RFC 9110 §15.5.6: a `405` must carry
/// `Allow`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AllowedMethods(u8);

/// In the order `Allow` lists them.
const NAMES: [(u8, &str); 6] = [
    (1, "GET"),
    (2, "HEAD"),
    (4, "POST"),
    (8, "PUT"),
    (16, "PATCH"),
    (32, "DELETE"),
];

impl AllowedMethods {
    /// No method.
    pub const NONE: Self = Self(0);
    /// `GET`.
    pub const GET: Self = Self(1);
    /// `HEAD`.
    pub const HEAD: Self = Self(2);
    /// `POST`.
    pub const POST: Self = Self(4);
    /// `PUT`.
    pub const PUT: Self = Self(8);
    /// `PATCH`.
    pub const PATCH: Self = Self(16);
    /// `DELETE`.
    pub const DELETE: Self = Self(32);
    /// `GET` and `HEAD`: HEAD is GET without the body (RFC 9110 §9.3.2), so one never comes
    /// without the other.
    pub const GET_HEAD: Self = Self(1 | 2);

    /// The union of both sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether every method of `other` is in the set.
    pub const fn contains_all(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `method` is in the set (a method outside the six never is).
    pub fn contains(self, method: &Method) -> bool {
        Self::of(method).is_some_and(|m| self.contains_all(m))
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The one-method set of `method`, if it is one of the six.
    pub fn of(method: &Method) -> Option<Self> {
        Some(match *method {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::PUT => Self::PUT,
            Method::PATCH => Self::PATCH,
            Method::DELETE => Self::DELETE,
            _ => return None,
        })
    }

    /// The methods, in `Allow` order.
    pub fn iter(self) -> impl Iterator<Item = Method> {
        NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .filter_map(|(_, name)| Method::from_bytes(name.as_bytes()).ok())
    }

    /// The `Allow` header value (`GET, HEAD`; empty for no method, which RFC 9110 §10.2.1
    /// allows for a resource that accepts none).
    pub fn header_value(self) -> HeaderValue {
        // Only the six names and ", " are ever written: always a valid header value.
        HeaderValue::from_str(&self.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl std::ops::BitOr for AllowedMethods {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for AllowedMethods {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

impl fmt::Display for AllowedMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(", ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AllowedMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AllowedMethods({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_list_in_allow_order() {
        let all = AllowedMethods::DELETE
            | AllowedMethods::PUT
            | AllowedMethods::GET_HEAD
            | AllowedMethods::PATCH
            | AllowedMethods::POST;
        assert_eq!(all.to_string(), "GET, HEAD, POST, PUT, PATCH, DELETE");
        assert_eq!(all.header_value(), "GET, HEAD, POST, PUT, PATCH, DELETE");
        assert_eq!(AllowedMethods::GET_HEAD.header_value(), "GET, HEAD");
        assert_eq!(AllowedMethods::NONE.header_value(), "");
        assert_eq!(
            (AllowedMethods::GET_HEAD | AllowedMethods::POST)
                .iter()
                .collect::<Vec<_>>(),
            vec![Method::GET, Method::HEAD, Method::POST]
        );
        assert!(AllowedMethods::GET_HEAD.contains(&Method::HEAD));
        assert!(!AllowedMethods::GET_HEAD.contains(&Method::POST));
        assert!(!all.contains(&Method::OPTIONS));
        assert!(!all.contains(&Method::TRACE));
        assert!(AllowedMethods::NONE.is_empty());
        assert_eq!(format!("{:?}", AllowedMethods::PUT), "AllowedMethods(PUT)");
    }
}
