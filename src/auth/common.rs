//! The shipped list of common and breached passwords (see `data/README.md` for sources and
//! licences), front-coded in the crate and decoded once on first use.

use std::sync::OnceLock;

static DATA: &[u8] = include_bytes!("data/common-passwords.fc");
const MAGIC: &[u8] = b"FGPW1\n";

/// Number of entries the data file declares in its header.
pub(crate) fn declared_len() -> usize {
    DATA.get(MAGIC.len()..MAGIC.len() + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, |b| u32::from_le_bytes(b) as usize)
}

/// The decoded list, sorted by bytes. A damaged file decodes as far as it can (a unit test
/// checks that the shipped one decodes completely).
pub(crate) fn list() -> &'static [Box<str>] {
    static LIST: OnceLock<Vec<Box<str>>> = OnceLock::new();
    LIST.get_or_init(decode)
}

fn decode() -> Vec<Box<str>> {
    let mut out = Vec::with_capacity(declared_len());
    if !DATA.starts_with(MAGIC) {
        return out;
    }
    let mut pos = MAGIC.len() + 4;
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < declared_len() {
        let (Some(&prefix), Some(&suffix_len)) = (DATA.get(pos), DATA.get(pos + 1)) else {
            break;
        };
        let (prefix, suffix_len) = (usize::from(prefix), usize::from(suffix_len));
        let Some(suffix) = DATA.get(pos + 2..pos + 2 + suffix_len) else {
            break;
        };
        if prefix > prev.len() {
            break;
        }
        prev.truncate(prefix);
        prev.extend_from_slice(suffix);
        match std::str::from_utf8(&prev) {
            Ok(s) => out.push(Box::from(s)),
            Err(_) => break,
        }
        pos += 2 + suffix_len;
    }
    out
}

/// Whether `canonical_lowercase` (NFKC, lower-cased) is on the list.
pub(crate) fn contains(canonical_lowercase: &str) -> bool {
    list()
        .binary_search_by(|entry| entry.as_bytes().cmp(canonical_lowercase.as_bytes()))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_decodes_completely_and_sorted() {
        let list = list();
        assert_eq!(list.len(), declared_len());
        assert!(list.len() > 20_000);
        assert!(list.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
        assert!(list.iter().all(|w| (8..=64).contains(&w.chars().count())));
        assert!(contains("password"));
        assert!(contains("12345678"));
        assert!(contains("iloveyou"));
        assert!(!contains("correct horse battery staple"));
    }
}
