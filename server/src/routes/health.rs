//! `GET /healthz`: 200 only when the hub thread runs a query on the database.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use crate::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.hub().health_check()).await {
        Ok(Ok(())) => Ok(Json(serde_json::json!({ "status": "ok" }))),
        Ok(Err(error)) => Err(ApiError::database_unavailable(&error)),
        Err(_) => Err(ApiError::database_unavailable("no answer within 2 s")),
    }
}
