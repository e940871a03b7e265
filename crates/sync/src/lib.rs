//! The automerge-repo sync protocol "1" for Fieldnotes, shared by the server and the browser.
//!
//! - [`protocol`]: the wire messages, one CBOR map per binary WebSocket frame.
//! - [`DocumentId`]: 16-byte document ids, base58check text and `automerge:` URLs.
//! - [`hub`]: the server engine; [`store`]: the storage trait it writes through; [`guard`]:
//!   the checks every sync message passes before the hub lets automerge decode it.
//! - [`client`]: the client engine the web app and native test clients run; [`plan`]: which
//!   documents a client keeps open at once, so a phone's memory and the server's work stay
//!   bounded however large the team.
//!
//! The browser builds this crate on automerge's 0.6 line, native code on the 0.12 line
//! (ARCHITECTURE.md, "Two automerge lines"). The hub exists only on the 0.12 line: it is
//! server code, and it resets a peer's sync state in a way only that line offers.
//!
//! **Invariant:** this crate does no IO. It has no sockets, no clocks and no
//! randomness of its own (automerge draws a random actor id for every document it makes; the
//! hub never writes a change with it): time and random bytes are passed in, and effects come
//! out as plain data for a shell (the axum server, the browser app, a test harness) to carry
//! out. The tidy test (`xtask/tests/tidy.rs`) fails if a clock, randomness or IO appears here.

pub mod client;
pub mod document_id;
pub mod guard;
#[cfg(not(any(target_arch = "wasm32", fieldnotes_browser_automerge)))]
pub mod hub;
pub mod plan;
pub mod protocol;
pub mod store;

pub use client::{
    Client, ClientConfig, ClientError, ClientEvent, ConnectionState, DocumentSet, SyncTarget,
};
pub use document_id::{DocumentId, DocumentIdError};
#[cfg(not(any(target_arch = "wasm32", fieldnotes_browser_automerge)))]
pub use hub::{
    Access, AccessPolicy, AllowAll, CloseReason, ConnectionId, Effect, Hub, HubConfig, HubCounters,
};
pub use protocol::{DecodeError, Message, PeerId, PeerMetadata, StorageId};
pub use store::{DocStore, MemoryStore};
