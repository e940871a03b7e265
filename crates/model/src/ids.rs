//! Identifier newtypes.
//!
//! Every identifier is an opaque string. Ids of list items (notes, follow-ups, goals,
//! contacts) are made by the caller from random bytes it supplies ([`new_id`]), because this
//! crate does no IO and so has no randomness of its own.

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps an existing identifier string.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// Makes a fresh identifier from caller-supplied random bytes (see [`new_id`]).
            pub fn from_random(random_bytes: &[u8]) -> Self {
                Self(new_id(random_bytes))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The automerge-repo document id of an account document (base58check); opaque here.
    AccountId
);
string_id!(
    /// The automerge-repo document id of a team directory document; opaque here.
    DirectoryId
);
string_id!(
    /// A signed-in user (a rep or a manager).
    UserId
);
string_id!(
    /// A team: the unit of sharing. A rep sees only their team's accounts.
    TeamId
);
string_id!(
    /// A visit note in an account's timeline.
    NoteId
);
string_id!(
    /// A follow-up task on an account.
    FollowUpId
);
string_id!(
    /// One of the client's own goals.
    GoalId
);
string_id!(
    /// A contact person at the client.
    ContactId
);

/// Makes an identifier from random bytes the caller supplies: lower-case hex.
///
/// Pass at least 16 bytes from a good random source (the browser's `crypto.getRandomValues`,
/// `getrandom` on the server); two replicas appending concurrently must never pick the same id,
/// since items are stored in maps keyed by id.
///
/// ```
/// assert_eq!(fieldnotes_model::new_id(&[0xde, 0xad, 0x01]), "dead01");
/// ```
pub fn new_id(random_bytes: &[u8]) -> String {
    hex(random_bytes)
}

/// Bytes as lower-case hex, the one spelling the project uses (ids, token digests).
///
/// ```
/// assert_eq!(fieldnotes_model::hex(&[0x00, 0xff]), "00ff");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(HEX[(byte >> 4) as usize] as char);
        text.push(HEX[(byte & 0x0f) as usize] as char);
    }
    text
}
