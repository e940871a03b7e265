//! The one error type HTTP handlers return.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Client errors carry a JSON body saying what to do; server errors are
/// logged and shown only as a status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("the database is not answering")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                Json(serde_json::json!({ "error": "not found", "hint": "check the address" })),
            )
                .into_response(),
            AppError::DatabaseUnavailable(detail) => {
                tracing::warn!(%detail, "health check failed");
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
            AppError::Internal(error) => {
                tracing::error!(error = %error, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
