//! Permissions: the five SMART v2 letters and sets of them.

use std::fmt;

use crate::fhir::Interaction;

/// One SMART v2 permission letter.
///
/// The guide maps each letter to FHIR interactions; [`Permission::for_interaction`] encodes
/// that table so enforcement never re-derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `c`: type-level `create`.
    Create,
    /// `r`: `read`, `vread` and instance-level `_history`.
    Read,
    /// `u`: `update` (including update-as-create) and `patch`.
    Update,
    /// `d`: `delete`.
    Delete,
    /// `s`: type-level search and `_history`, system-level search and `_history`.
    Search,
}

impl Permission {
    /// All five, in the canonical `cruds` order.
    pub const ALL: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    /// The letter (`c`, `r`, `u`, `d`, `s`).
    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    /// The permission a letter stands for.
    pub fn from_letter(letter: char) -> Option<Permission> {
        Some(match letter {
            'c' => Permission::Create,
            'r' => Permission::Read,
            'u' => Permission::Update,
            'd' => Permission::Delete,
            's' => Permission::Search,
            _ => return None,
        })
    }

    /// The permission a FHIR interaction needs, per the guide's table.
    ///
    /// `None` for interactions no single letter decides: `metadata` needs no scope, a
    /// batch/transaction is judged entry by entry, and an operation's needs depend on the
    /// operation (`$everything` reads, `$process-message` may write).
    pub fn for_interaction(interaction: &Interaction) -> Option<Permission> {
        match interaction {
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => {
                Some(Permission::Read)
            }
            Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::SearchCompartment => Some(Permission::Search),
            Interaction::Create => Some(Permission::Create),
            Interaction::Update | Interaction::Patch => Some(Permission::Update),
            Interaction::Delete => Some(Permission::Delete),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// A set of [`Permission`]s, one bit each; `Display` writes the letters in `cruds` order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// No permission.
    pub const NONE: Permissions = Permissions(0);
    /// `c`.
    pub const C: Permissions = Permissions(1);
    /// `r`.
    pub const R: Permissions = Permissions(2);
    /// `u`.
    pub const U: Permissions = Permissions(4);
    /// `d`.
    pub const D: Permissions = Permissions(8);
    /// `s`.
    pub const S: Permissions = Permissions(16);
    /// `rs`: what v1 `read` means.
    pub const READ: Permissions = Permissions(2 | 16);
    /// `cud`: what v1 `write` means.
    pub const WRITE: Permissions = Permissions(1 | 4 | 8);
    /// `cruds`: what v1 `*` means.
    pub const ALL: Permissions = Permissions(31);

    /// Whether `p` is in the set.
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether every permission of `other` is in the set.
    pub const fn contains_all(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions in either set.
    #[must_use]
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The permissions in both sets.
    #[must_use]
    pub const fn intersection(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// The permissions of `self` not in `other`.
    #[must_use]
    pub const fn difference(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    /// The set with `p` added.
    #[must_use]
    pub const fn with(self, p: Permission) -> Permissions {
        Permissions(self.0 | p.bit())
    }

    /// The permissions in `cruds` order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// How many permissions are in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The v1 word for this set (`read`, `write`, `*`), if v1 can say it.
    pub fn v1_word(self) -> Option<&'static str> {
        match self {
            Permissions::READ => Some("read"),
            Permissions::WRITE => Some("write"),
            Permissions::ALL => Some("*"),
            _ => None,
        }
    }

    /// The raw bits (`c` = 1 … `s` = 16), for compact storage.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set with these raw bits; bits above `s` are dropped.
    pub const fn from_bits(bits: u8) -> Permissions {
        Permissions(bits & 31)
    }
}

impl From<Permission> for Permissions {
    fn from(p: Permission) -> Self {
        Permissions(p.bit())
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Permissions::NONE, Permissions::with)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.iter() {
            write!(f, "{}", p.letter())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_and_v1_words() {
        assert_eq!(Permissions::ALL.to_string(), "cruds");
        assert_eq!(Permissions::READ.to_string(), "rs");
        assert_eq!(Permissions::WRITE.to_string(), "cud");
        assert_eq!(Permissions::READ.v1_word(), Some("read"));
        assert_eq!(Permissions::R.v1_word(), None);
        let rs: Permissions = [Permission::Search, Permission::Read].into_iter().collect();
        assert_eq!(rs, Permissions::READ);
        assert!(Permissions::ALL.contains_all(Permissions::WRITE));
        assert!(!Permissions::READ.contains(Permission::Create));
    }

    #[test]
    fn interactions_map_to_letters() {
        assert_eq!(
            Permission::for_interaction(&Interaction::Vread),
            Some(Permission::Read)
        );
        assert_eq!(
            Permission::for_interaction(&Interaction::HistoryType),
            Some(Permission::Search)
        );
        assert_eq!(
            Permission::for_interaction(&Interaction::Patch),
            Some(Permission::Update)
        );
        assert_eq!(
            Permission::for_interaction(&Interaction::Capabilities),
            None
        );
        assert_eq!(
            Permission::for_interaction(&Interaction::Operation("everything".into())),
            None
        );
    }
}
