//! The one error type HTTP handlers return: a status and a JSON `{"error": …}` body in words
//! a rep can act on. Server-side failures are logged with their detail and shown only as
//! "something went wrong, try again".

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::AuthError;

/// An answer with a JSON `{"error": …}` body in words a rep can act on.
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn signed_out() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "You are signed out. Sign in to sync your notes.",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down. Try again in a minute.",
        )
    }

    pub fn busy() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "The server is busy signing other people in. Try again in a minute."
                .to_owned(),
            retry_after: Some(30),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let status = match &error {
            AuthError::Invalid(_) | AuthError::NoSuchTeam(_) | AuthError::AmbiguousTeam(_) => {
                StatusCode::BAD_REQUEST
            }
            AuthError::WrongCredentials | AuthError::NoSuchUser(_) => StatusCode::UNAUTHORIZED,
            AuthError::Disabled => StatusCode::FORBIDDEN,
            AuthError::EmailTaken(_) | AuthError::InvitationForAnotherEmail(_) => {
                StatusCode::CONFLICT
            }
            AuthError::LinkNotValid => StatusCode::GONE,
            AuthError::Database(_) | AuthError::Hashing(_) => {
                tracing::error!(%error, "sign-in request failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server. Try again in a minute.",
                );
            }
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl ApiError {
    /// Adds `Retry-After` (seconds).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "There is nothing at this address. Check the link, or open Fieldnotes from its start page.",
        )
    }

    /// The database did not answer a health check; the detail goes to the log.
    pub fn database_unavailable(detail: &str) -> Self {
        tracing::warn!(%detail, "health check failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot reach its database right now.",
        )
    }

    /// The database failed where a request cannot go ahead without it (a sign-in whose
    /// throttle could not be checked); the detail goes to the log.
    pub fn database_failed(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "database error");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server cannot reach its database right now. Try again in a minute.",
        )
    }

    /// Something failed on the server; the detail goes to the log, not to the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on the server. Try again in a minute.",
        )
    }
}
