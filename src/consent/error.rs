//! Why a consent operation was refused.

use time::OffsetDateTime;

use crate::ids::{CategoryId, GrantId};
use crate::token::StoreError;

use super::record::{GrantStateKind, Transition};

/// Why a consent operation was refused. Messages never carry PHI: no names, no free text the
/// patient typed, only ids and instants the caller already holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// The end date the patient chose lies more than one year after the approval. A right-of-access
    /// grant lasts at most one year; the request is refused, never silently shortened.
    #[error(
        "the chosen end date {chosen} is more than one year after the approval (latest {latest})"
    )]
    EndDateBeyondOneYear {
        /// The end date asked for.
        chosen: OffsetDateTime,
        /// The latest end date allowed (approval + 1 year).
        latest: OffsetDateTime,
    },
    /// The end date the patient chose is not after the approval (or already passed).
    #[error("the chosen end date {chosen} is not in the future")]
    EndDateInPast {
        /// The end date asked for.
        chosen: OffsetDateTime,
    },
    /// The approval instant lies in the future of the store's clock.
    #[error("the approval time {approved_at} lies in the future")]
    ApprovalInFuture {
        /// The approval instant given.
        approved_at: OffsetDateTime,
    },
    /// The request (or a narrowing) would leave the grant with no data category. To stop all
    /// sharing, revoke the grant.
    #[error("a grant must name at least one data category")]
    NoCategories,
    /// More categories than any registry holds.
    #[error("a grant names more than {max} categories")]
    TooManyCategories {
        /// The limit.
        max: usize,
    },
    /// A category the registry does not know.
    #[error("unknown data category {0}")]
    UnknownCategory(CategoryId),
    /// A narrowing named a category the grant does not (or no longer) include.
    #[error("the grant does not include category {0}")]
    CategoryNotGranted(CategoryId),
    /// A text field (client name, representative, user agent, reason, disclosure version) is
    /// too long or holds control characters.
    #[error("field {field} is empty, longer than {max} bytes or holds control characters")]
    InvalidText {
        /// The field's name.
        field: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
    /// The grant's state does not allow the operation (revoked and expired are final).
    #[error("a {from:?} grant cannot be {to:?}")]
    IllegalTransition {
        /// The grant's state at the time of the operation.
        from: GrantStateKind,
        /// The operation attempted.
        to: Transition,
    },
    /// No grant with this id exists (or it was purged).
    #[error("unknown grant {0}")]
    UnknownGrant(GrantId),
    /// The store failed; the message is safe to log.
    #[error(transparent)]
    Store(#[from] StoreError),
}
