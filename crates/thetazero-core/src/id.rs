//! The ids of accounts, agents, executions, keys, permission requests and
//! audit records:
//! one type per kind, so that an agent's id cannot be passed where a key's
//! is expected. They are numbers on the wire and in the database; a raw
//! integer becomes an id only where one enters the system (a stored row, a
//! parsed URL path or query, the sandbox's plain `execution_id`), through
//! `new`. Nothing converts one kind of id into another.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares each id as a newtype over `i64`. How the stores bind and read
/// them is in `crate::sql`.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id a raw integer names; only at a boundary.
            pub const fn new(raw: i64) -> $name {
                $name(raw)
            }

            /// The raw integer, for the wire, SQL and arithmetic on ranges.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )*};
}

// `crate::sql` implements the database traits for this same list.
ids! {
    /// A tenant. Every other id is numbered within its account's range
    /// ([`crate::model::id_range`]).
    AccountId;
    AgentId;
    ExecutionId;
    /// An API key.
    KeyId;
    PermissionRequestId;
    /// A record of an account's audit log (not its leaf index: the row).
    AuditRecordId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_in_json_and_text() {
        let id = AgentId::new(4_294_967_297);
        assert_eq!(serde_json::to_string(&id).unwrap(), "4294967297");
        assert_eq!(serde_json::from_str::<AgentId>("4294967297").unwrap(), id);
        assert_eq!(id.to_string(), "4294967297");
        assert_eq!(id.get(), 4_294_967_297);
        assert!(serde_json::from_str::<AgentId>("\"1\"").is_err());
    }
}
