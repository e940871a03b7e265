//! `GET /api/export?team=T&format=csv|json[&table=accounts|notes|follow_ups|goals|contacts]`:
//! what `fieldnotes admin export` writes (`docs/export.md`), to a manager of the team or an
//! administrator, as a download. Anyone else gets 403, whatever they send.
//!
//! The export reads the team's documents on a connection of its own, on the blocking pool, so
//! it never holds up the hub thread and the sync of every other rep; one export runs at a time
//! per instance, and a second waits for none (503, try again).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, Role};
use crate::routes::api::{ApiError, session_of};
use crate::storage::Store;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/export", get(export))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    team: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    table: Option<String>,
}

const TABLES: [&str; 5] = ["accounts", "notes", "follow_ups", "goals", "contacts"];

async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let session = session_of(&state, &headers).await?;
    let Ok(Query(query)) = query else {
        return Err(bad_request());
    };
    let json = match query.format.as_deref() {
        None | Some("csv") => false,
        Some("json") => true,
        Some(_) => return Err(bad_request()),
    };
    let table = query.table.as_deref().unwrap_or("accounts");
    if json && query.table.is_some() || !TABLES.contains(&table) {
        return Err(bad_request());
    }
    let may = session.info.user.is_admin
        || session
            .info
            .teams
            .iter()
            .any(|t| t.id == query.team && t.role == Role::Manager);
    if !may {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Only a manager of this team can export its data. Ask your manager for the export.",
        ));
    }
    let Ok(_permit) = state.exports().try_acquire() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Another export is running on this server. Try again in a minute.",
        )
        .retry_after(30));
    };
    let database = state.export_database().cloned();
    let team_id = query.team.clone();
    let read = move |store: &mut Store| -> anyhow::Result<crate::export::TeamExport> {
        let team = auth::find_team(store.db_mut(), &team_id)?;
        crate::export::read_team(store, team)
    };
    let exported = match database {
        // Its own connection, off the hub thread.
        Some(database) => tokio::task::spawn_blocking(move || {
            let mut store = Store::open_database(&database)?;
            read(&mut store)
        })
        .await
        .map_err(|_| ApiError::unavailable())?,
        // An in-memory database has no second connection: between the hub's batches.
        None => state
            .hub()
            .db(move |store| read(store))
            .await
            .ok_or_else(ApiError::unavailable)?,
    };
    let exported = exported.map_err(|error| {
        tracing::error!(%error, "an export failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The export could not be made. Try again; if it keeps failing, tell whoever runs the server.",
        )
    })?;
    let slug: String = exported
        .team
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let (body, content_type, file) = if json {
        let body = serde_json::to_string_pretty(&exported.json(auth::now_ms() as i64))
            .map_err(|_| ApiError::unavailable())?;
        (body, "application/json", format!("fieldnotes-{slug}.json"))
    } else {
        let name = format!("{table}.csv");
        let body = exported
            .csv_files()
            .into_iter()
            .find(|(file, _)| *file == name)
            .map(|(_, body)| body)
            .unwrap_or_default();
        (
            body,
            "text/csv; charset=utf-8",
            format!("fieldnotes-{slug}-{name}"),
        )
    };
    Ok((
        [
            (CONTENT_TYPE, content_type.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

fn bad_request() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "The export needs team=TEAM, and optionally format=csv or json and, for CSV, \
         table=accounts, notes, follow_ups, goals or contacts.",
    )
}
