//! `GET /healthz`: 200 only when the hub thread runs a query on the database.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;
use crate::error::AppError;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    match tokio::time::timeout(Duration::from_secs(2), state.hub().health_check()).await {
        Ok(Ok(())) => Ok(Json(serde_json::json!({ "status": "ok" }))),
        Ok(Err(error)) => Err(AppError::DatabaseUnavailable(error)),
        Err(_) => Err(AppError::DatabaseUnavailable("no answer within 2 s".into())),
    }
}
