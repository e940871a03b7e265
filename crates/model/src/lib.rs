//! The Fieldnotes domain model: accounts and the team directory as Automerge documents, read
//! and written field by field, and the pure queries the list screen and the manager's view run
//! over them.
//!
//! **Boundary:** this crate does no IO. It reads no clock and draws no random numbers: the
//! caller passes the time (`now_millis`, unix milliseconds) and the random bytes for ids
//! ([`new_id`]) and device actors ([`Editor::new`]). (automerge itself draws a random actor id
//! whenever it makes a document; the model replaces it with the editor's before any change,
//! so nothing random reaches a document.) It builds for native targets and for
//! `wasm32-unknown-unknown`, so the browser and the server share one behaviour. The tidy test
//! (`xtask/tests/tidy.rs`) fails if a clock, randomness or IO appears here.
//!
//! # How to drive it
//!
//! 1. Make an [`Editor`] for the signed-in user with fresh random device bytes.
//! 2. [`AccountDoc::create`] a new account, or [`AccountDoc::load`] saved bytes.
//! 3. Call the edit methods (`rename`, `set_driver`, `add_note`, …). Each one is a single
//!    automerge change that records who (in the actor id), when (the time you pass) and what
//!    (a short message), and writes only the fields it changes.
//! 4. [`AccountDoc::hydrate`] gives a plain [`Account`] for screens; the functions in
//!    [`query`] work over `&[Account]`.
//! 5. Sync the underlying [`automerge::AutoCommit`] ([`AccountDoc::automerge_mut`]) however
//!    you like; any two copies merge without losing what either side typed.
//!
//! ```
//! use fieldnotes_model::{
//!     AccountDoc, AccountId, DriverKey, Editor, NewAccount, NewNote, NoteId, Strength, TeamId,
//!     UserId, UsualDriver,
//! };
//!
//! # fn main() -> Result<(), fieldnotes_model::ModelError> {
//! let now = 1_700_000_000_000;
//! let ann = Editor::new(UserId::new("ann"), &[1; 16])?;
//! let mut phone = AccountDoc::create(
//!     ann,
//!     NewAccount {
//!         id: AccountId::new("2XqV4..."),
//!         team: TeamId::new("north"),
//!         name: "Acme Plumbing".into(),
//!         branch: "North".into(),
//!         area: "Riverside".into(),
//!     },
//!     now,
//! )?;
//!
//! // A colleague's laptop gets a copy (normally through the sync engine).
//! let bob = Editor::new(UserId::new("bob"), &[2; 16])?;
//! let mut laptop = AccountDoc::load(bob, &phone.save())?;
//!
//! // Both edit offline at the same time.
//! let delivery = DriverKey::usual(UsualDriver::Delivery);
//! phone.set_driver(&delivery, Strength::DECISIVE, "Same-day van saved their job", now + 1)?;
//! phone.splice_value_proposition(0, 0, "We keep your vans moving", now + 2)?;
//! laptop.add_note(
//!     NewNote {
//!         id: NoteId::from_random(&[7; 16]),
//!         text: "Asked about the training days".into(),
//!         drivers: vec![DriverKey::usual(UsualDriver::Training)],
//!         objections: vec!["too far to drive".into()],
//!     },
//!     now + 3,
//! )?;
//! laptop.splice_value_proposition(0, 0, "Hi. ", now + 4)?;
//!
//! // They merge, in either order, to the same account.
//! phone.merge(&mut laptop)?;
//! laptop.merge(&mut phone)?;
//! let account = phone.hydrate()?;
//! assert_eq!(account, laptop.hydrate()?);
//! assert_eq!(account.drivers[&delivery].strength, Strength::DECISIVE);
//! assert_eq!(account.notes.len(), 1);
//! assert_eq!(account.value_proposition.len(), "Hi. We keep your vans moving".len());
//!
//! // And the history says who did what.
//! let history = phone.history();
//! assert_eq!(history.len(), 5);
//! assert!(history.iter().any(|h| h.user == Some(UserId::new("bob"))
//!     && h.message.as_deref() == Some("edit value proposition")));
//! # Ok(())
//! # }
//! ```
//!
//! # Design decisions
//!
//! - **Attribution:** the actor id of every change is made from the user id plus random
//!   device bytes ([`actor_for`], [`user_of_actor`]); time and message travel in the change's
//!   commit options; [`history`] lists them. See [`attribution`].
//! - **Identity:** contacts, drivers, goals, notes and follow-ups live in maps keyed by id
//!   (drivers by [`DriverKey`]), so concurrent additions never collide and every appended note
//!   is kept. Ids come from the caller's random bytes ([`new_id`]).
//! - **Text:** the value proposition and each driver's evidence are automerge text objects,
//!   so concurrent typing merges character by character. Names and other short fields are
//!   last-writer-wins.
//! - **Strength:** 1 (minor) to 5 (decisive), see [`Strength`].
//! - **Archive:** `archived` reads as true if any concurrent write says true; other edits never
//!   write it, so nothing un-archives by accident (see [`AccountDoc::archive`]).
//! - **Schema:** every document has `schema` ([`SCHEMA_VERSION`]) and `kind`. Newer documents
//!   are read; edits touch only the keys they change, so keys added by newer versions survive.
//!   A document that is not a valid account gives a [`ModelError`], never a panic.

pub mod account;
pub mod attribution;
pub mod directory;
mod document;
pub mod driver;
pub mod entry;
mod error;
mod ids;
pub mod query;

pub use account::{
    Account, AccountDoc, Contact, Driver, FollowUp, Goal, GoalStatus, NewAccount, NewFollowUp,
    NewNote, Note, hydrate_account,
};
pub use attribution::{HistoryEntry, actor_for, history, user_of_actor};
pub use directory::{
    AccountSummary, Directory, DirectoryDoc, hydrate_directory, team_directory_key,
};
pub use document::{Editor, SCHEMA_VERSION};
pub use driver::{DriverKey, Strength, UsualDriver};
pub use entry::{AccountEntry, EntryFollowUp};
pub use error::ModelError;
pub use ids::{
    AccountId, ContactId, DirectoryId, FollowUpId, GoalId, NoteId, TeamId, UserId, hex, new_id,
};
