//! Identifiers shared by every component.
//!
//! Each identifier is a validated newtype so that a grant id can never be passed where a patient
//! id is expected, and so that hostile strings (control characters, 10 kB blobs) are refused at
//! the boundary instead of travelling into stores, logs and SQL parameters.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which identifier was being built.
        kind: &'static str,
    },
    /// The string was longer than the identifier allows.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// Which identifier was being built.
        kind: &'static str,
        /// The limit in bytes.
        max: usize,
    },
    /// The string held a character the identifier does not allow.
    #[error("{kind} contains a character outside its alphabet")]
    BadCharacter {
        /// Which identifier was being built.
        kind: &'static str,
    },
}

fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed: fn(u8) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !value.bytes().all(allowed) {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

/// FHIR `id` alphabet: `[A-Za-z0-9\-\.]{1,64}`.
fn fhir_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// OAuth `client_id`: visible ASCII without the characters that break form encoding or quoting.
fn client_id_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !matches!(b, b'"' | b'\\' | b'&' | b'=' | b'+' | b'%' | b'#')
}

/// Category ids are short machine names: `vital-signs`, `smoking-status`.
fn category_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $alphabet:ident) => {
        $(#[$doc])*
        ///
        /// Cheap to clone: the validated string is shared, not copied (the guard hands the
        /// same ids to the request context, the rate limiter and the audit record).
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                check($kind, value, $max, $alphabet)?;
                Ok(Self(Arc::from(value)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// A FHIR Patient resource id (the logical id, without `Patient/`).
    PatientId, "patient id", 64, fhir_id_byte
);
identifier!(
    /// An OAuth 2.0 client identifier.
    ClientId, "client id", 255, client_id_byte
);
identifier!(
    /// The identifier of one consent grant; every token issued under it carries it.
    GrantId, "grant id", 64, fhir_id_byte
);
identifier!(
    /// The identifier of a data category in the category registry (`vital-signs`).
    CategoryId, "category id", 64, category_byte
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fhir_ids_and_refuses_hostile_ones() {
        assert!(PatientId::new("355").is_ok());
        assert!(PatientId::new("a-b.C9").is_ok());
        assert_eq!(
            PatientId::new(""),
            Err(IdError::Empty { kind: "patient id" })
        );
        assert!(matches!(
            PatientId::new("1/../2"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(matches!(
            PatientId::new("x".repeat(65)),
            Err(IdError::TooLong { max: 64, .. })
        ));
        assert!(matches!(
            ClientId::new("app\u{0}"),
            Err(IdError::BadCharacter { .. })
        ));
        assert!(CategoryId::new("vital-signs").is_ok());
        assert!(CategoryId::new("Vital Signs").is_err());
    }

    #[test]
    fn deserialising_validates() {
        let ok: Result<GrantId, _> = serde_json::from_str("\"g-1\"");
        assert!(ok.is_ok());
        let bad: Result<GrantId, _> = serde_json::from_str("\"g 1\"");
        assert!(bad.is_err());
    }
}
