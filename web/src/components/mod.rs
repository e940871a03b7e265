//! Presentational pieces and screens. Screens read state from context and call services;
//! none of them touches storage or the network directly.

pub mod account;
pub mod accounts;
pub mod app;
pub mod capture;
pub mod drafts;
pub mod fields;
pub mod join;
pub mod new_account;
pub mod sign_in;
pub mod status;
pub mod team;
