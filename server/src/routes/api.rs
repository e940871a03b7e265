//! `/api/…`: sign-in, sign-out, tokens, first-run setup and invitations
//! (`docs/auth.md`). Database work (the sign-in throttle's counts included) runs on the hub
//! thread between batches; password hashing runs on the blocking pool.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::auth::throttle::{self, Refused};
use crate::auth::{self, AuthError, Session, SessionInfo, SessionKind, password};
pub use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "fieldnotes_session";
/// The cookie's name over TLS: browsers accept a `__Host-` cookie only when it is `Secure`,
/// has `Path=/` and no `Domain`, so no other host (a sibling subdomain) can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-fieldnotes_session";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/session",
            get(current_session).post(sign_in).delete(sign_out),
        )
        .route("/api/tokens", post(create_token))
        .route("/api/setup", get(setup_needed).post(setup))
        .route("/api/invitations/{token}", get(show_invitation))
        .route("/api/invitations/accept", post(accept_invitation))
}

/// A JSON body whose every rejection (not JSON, wrong types, wrong content
/// type) is a 400 with the API's `{"error": …}` body, like any other bad input.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                tracing::debug!(%rejection, "unreadable API request");
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "The server could not read this request. Reload the app and try again.",
                ))
            }
        }
    }
}

/// The client's address, when the server runs with connect info (it always
/// does outside in-process tests).
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// The session token a request carries: `Authorization: Bearer`, or the
/// cookie when the request is same-origin (a cross-site page cannot use a
/// rep's cookie, WebSocket included).
pub fn request_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = value.strip_prefix("Bearer ")?.trim();
        return (!token.is_empty()).then(|| token.to_string());
    }
    if !same_origin(headers) {
        return None;
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        // The `__Host-` one first: a plain cookie of the same session cannot shadow it.
        .fold(None, |found: Option<(&str, &str)>, (name, value)| {
            match (found, name) {
                (_, SECURE_SESSION_COOKIE) => Some((name, value)),
                (None, SESSION_COOKIE) => Some((name, value)),
                (found, _) => found,
            }
        })
        .map(|(_, value)| value.to_string())
        .filter(|token| !token.is_empty())
}

/// No `Origin` (not a browser page), or one whose host is the request's host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin)
        .trim_end_matches('/');
    origin_host.eq_ignore_ascii_case(host)
}

/// The live session behind a request, if any.
pub async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Session, ApiError> {
    let token = request_token(headers).ok_or_else(ApiError::signed_out)?;
    state
        .hub()
        .db(move |store| auth::session_by_token(store.db_mut(), &token))
        .await
        .ok_or_else(ApiError::unavailable)??
        .ok_or_else(ApiError::signed_out)
}

fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    state.secure_cookies()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(token: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let (name, secure) = if secure {
        (SECURE_SESSION_COOKIE, "; Secure")
    } else {
        (SESSION_COOKIE, "")
    };
    HeaderValue::from_str(&format!(
        "{name}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}"
    ))
    .expect("token is URL-safe base64")
}

/// A signed-in answer: the session info, and the cookie for browsers.
fn signed_in(token: &str, info: SessionInfo, secure: bool) -> Response {
    let max_age = info.expires_at.saturating_sub(auth::now_ms()) / 1000;
    let mut response = Json(info).into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie(token, max_age, secure));
    response
}

/// Runs one password hash or verification on the blocking pool, once one of the few that may
/// run at once is free (each takes 19 MiB and a core for a moment).
async fn with_hash_permit<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = state
        .password_hash_permit()
        .await
        .ok_or_else(ApiError::busy)?;
    state
        .metrics()
        .password_hashes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let result = tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
    .map_err(|e| AuthError::Hashing(e.to_string()))?;
    Ok(result)
}

async fn hash_password(state: &AppState, password: String) -> Result<String, ApiError> {
    password::check_strength(&password)?;
    with_hash_permit(state, move || password::hash(&password))
        .await?
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    label: Option<String>,
}

/// Checks a password with throttling; the same answer for an unknown email
/// and a wrong password.
async fn authenticate(
    state: &AppState,
    address: Option<IpAddr>,
    credentials: &Credentials,
) -> Result<auth::User, ApiError> {
    let email = credentials.email.trim().to_lowercase();
    if email.is_empty() || credentials.password.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Type your email and password.",
        ));
    }
    // No account has a longer address, and the email becomes a key in the shared throttle
    // table: refused before anything is stored or counted.
    if email.len() > auth::MAX_EMAIL_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "That email address is too long to be anyone's here. Check it and try again.",
        ));
    }
    // Counted as failed before anything is verified, so parallel attempts cannot all pass,
    // on this instance or any other on the same database.
    let (key, now) = (email.clone(), auth::now_ms() as i64);
    let begun = state
        .hub()
        .db(move |store| throttle::begin(store.db_mut(), &key, address, now))
        .await
        .ok_or_else(ApiError::unavailable)?;
    match begun {
        Ok(()) => {}
        Err(Refused::Locked(locked)) => {
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, locked.message)
                .retry_after(locked.retry_after.as_secs().max(1)));
        }
        // Never let an attempt through unchecked.
        Err(Refused::Database(error)) => return Err(ApiError::database_failed(error)),
    }
    let lookup = email.clone();
    let found = state
        .hub()
        .db(move |store| auth::user_by_email(store.db_mut(), &lookup))
        .await
        .ok_or_else(ApiError::unavailable)??;
    let password = credentials.password.clone();
    let stored = found.as_ref().map(|(_, hash)| hash.clone());
    let valid = with_hash_permit(state, move || {
        password::verify(&password, stored.as_deref())
    })
    .await?;
    match found {
        Some((user, _)) if valid => {
            state
                .hub()
                .db(move |store| throttle::succeeded(store.db_mut(), &email, address))
                .await
                .ok_or_else(ApiError::unavailable)?
                .map_err(ApiError::database_failed)?;
            if user.disabled {
                return Err(AuthError::Disabled.into());
            }
            Ok(user)
        }
        _ => {
            tracing::info!(?address, "failed sign-in");
            Err(AuthError::WrongCredentials.into())
        }
    }
}

async fn start_session(
    state: &AppState,
    user: auth::User,
    kind: SessionKind,
    label: Option<String>,
) -> Result<(String, SessionInfo), ApiError> {
    let lifetime = match kind {
        SessionKind::Browser => auth::BROWSER_SESSION_MS,
        SessionKind::Token => auth::TOKEN_SESSION_MS,
    };
    state
        .hub()
        .db(move |store| {
            auth::create_session(store.db_mut(), &user, kind, lifetime, label.as_deref())
        })
        .await
        .ok_or_else(ApiError::unavailable)?
        .map_err(ApiError::from)
}

/// A new browser session for `user`: the token for the cookie, and the session.
fn browser_session(
    connection: &mut crate::db::Db,
    user: &auth::User,
) -> Result<(String, SessionInfo), AuthError> {
    auth::create_session(
        connection,
        user,
        SessionKind::Browser,
        auth::BROWSER_SESSION_MS,
        None,
    )
}

async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let user = authenticate(&state, address, &credentials).await?;
    let (token, info) = start_session(&state, user, SessionKind::Browser, None).await?;
    Ok(signed_in(&token, info, over_tls(&state, &headers)))
}

/// `SessionInfo` plus the Bearer token, shown this once.
#[derive(serde::Serialize)]
struct TokenAnswer {
    #[serde(flatten)]
    info: SessionInfo,
    token: String,
}

async fn create_token(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(credentials): ApiJson<Credentials>,
) -> Result<Response, ApiError> {
    let user = authenticate(&state, address, &credentials).await?;
    let label = credentials.label.clone();
    let (token, info) = start_session(&state, user, SessionKind::Token, label).await?;
    Ok(Json(TokenAnswer { info, token }).into_response())
}

async fn current_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionInfo>, ApiError> {
    Ok(Json(session_of(&state, &headers).await?.info))
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Ok(session) = session_of(&state, &headers).await {
        let hash = session.token_hash;
        let revoked = state
            .hub()
            .db(move |store| auth::revoke_session(store.db_mut(), &hash))
            .await;
        if let Some(Err(error)) = revoked {
            tracing::error!(%error, "cannot revoke a session");
        }
        state.revalidate_now().await;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        session_cookie("", 0, over_tls(&state, &headers)),
    );
    response
}

async fn setup_needed(State(state): State<AppState>) -> Result<Response, ApiError> {
    let exists = state
        .hub()
        .db(|store| auth::admin_exists(store.db_mut()))
        .await
        .ok_or_else(ApiError::unavailable)??;
    Ok(Json(serde_json::json!({ "needed": !exists })).into_response())
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    team_name: String,
}

async fn setup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(form): ApiJson<SetupForm>,
) -> Result<Response, ApiError> {
    auth::check_name(&form.name, "your name")?;
    auth::normalize_email(&form.email)?;
    auth::check_name(&form.team_name, "your team's name")?;
    // The link before the password: nobody without it makes the server hash anything.
    let token = form.token.clone();
    state
        .hub()
        .db(move |store| auth::check_setup_token(store.db_mut(), &token))
        .await
        .ok_or_else(ApiError::unavailable)??;
    let hash = hash_password(&state, form.password).await?;
    let (token, info) = state
        .hub()
        .db(move |store| {
            let connection = store.db_mut();
            let (user, _team) = auth::complete_setup(
                connection,
                &form.token,
                auth::FirstAdmin {
                    name: &form.name,
                    email: &form.email,
                    password_hash: &hash,
                    team_name: &form.team_name,
                },
            )?;
            browser_session(connection, &user)
        })
        .await
        .ok_or_else(ApiError::unavailable)??;
    tracing::info!("first administrator created");
    Ok(signed_in(&token, info, over_tls(&state, &headers)))
}

async fn show_invitation(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let invitation = state
        .hub()
        .db(move |store| auth::invitation(store.db_mut(), &token))
        .await
        .ok_or_else(ApiError::unavailable)?;
    match invitation {
        Ok(invitation) => Ok(Json(invitation).into_response()),
        Err(AuthError::LinkNotValid) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "This invitation link is not valid or has expired. Ask your manager for a new one.",
        )),
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
struct AcceptForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn accept_invitation(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    ApiJson(form): ApiJson<AcceptForm>,
) -> Result<Response, ApiError> {
    let email = auth::normalize_email(&form.email)?;
    let lookup_token = form.token.clone();
    let lookup_email = email.clone();
    let (invitation, existing) = state
        .hub()
        .db(move |store| {
            let connection = store.db_mut();
            let invitation = auth::invitation(connection, &lookup_token);
            let existing = auth::user_by_email(connection, &lookup_email);
            (invitation, existing)
        })
        .await
        .ok_or_else(ApiError::unavailable)?;
    let invitation = match invitation {
        Ok(invitation) => invitation,
        Err(AuthError::LinkNotValid) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "This invitation link is not valid or has expired. Ask your manager for a new one.",
            ));
        }
        Err(other) => return Err(other.into()),
    };
    if let Some(expected) = &invitation.email
        && *expected != email
    {
        return Err(AuthError::InvitationForAnotherEmail(expected.clone()).into());
    }
    // An existing user joins another team by proving who they are; a new one
    // is created in the same transaction that uses the invitation, so a link
    // used meanwhile by someone else leaves no user without a team behind.
    enum Joiner {
        Existing(auth::User),
        New { password_hash: String },
    }
    let joiner = match existing? {
        Some(_) => {
            let credentials = Credentials {
                email: email.clone(),
                password: form.password.clone(),
                label: None,
            };
            Joiner::Existing(authenticate(&state, address, &credentials).await?)
        }
        None => {
            auth::check_name(&form.name, "your name")?;
            Joiner::New {
                password_hash: hash_password(&state, form.password.clone()).await?,
            }
        }
    };
    let (token, name) = (form.token.clone(), form.name.clone());
    let (session_token, info) = state
        .hub()
        .db(move |store| {
            store.db_mut().transaction(|tx| {
                let user = match joiner {
                    Joiner::Existing(user) => user,
                    Joiner::New { password_hash } => {
                        auth::create_user(tx, &email, &name, &password_hash, false)?
                    }
                };
                auth::use_invitation(tx, &token, &user)?;
                browser_session(tx, &user)
            })
        })
        .await
        .ok_or_else(ApiError::unavailable)??;
    Ok(signed_in(&session_token, info, over_tls(&state, &headers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_wins_and_cookies_need_the_same_origin() {
        let h = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "fieldnotes_session=xyz"),
        ]);
        assert_eq!(request_token(&h).as_deref(), Some("abc"));
        let h = headers(&[
            ("host", "app.example:3030"),
            ("cookie", "a=1; fieldnotes_session=xyz"),
        ]);
        assert_eq!(request_token(&h).as_deref(), Some("xyz"));
        let h = headers(&[
            ("host", "app.example:3030"),
            ("origin", "http://app.example:3030"),
            ("cookie", "fieldnotes_session=xyz"),
        ]);
        assert_eq!(request_token(&h).as_deref(), Some("xyz"));
        let h = headers(&[
            ("host", "app.example:3030"),
            ("origin", "https://evil.example"),
            ("cookie", "fieldnotes_session=xyz"),
        ]);
        assert_eq!(request_token(&h), None);
        let h = headers(&[("authorization", "Basic abc")]);
        assert_eq!(request_token(&h), None);
        // Over TLS the cookie is `__Host-` prefixed, and that one wins over a plain one.
        let h = headers(&[
            ("host", "app.example"),
            (
                "cookie",
                "fieldnotes_session=planted; __Host-fieldnotes_session=real",
            ),
        ]);
        assert_eq!(request_token(&h).as_deref(), Some("real"));
    }

    #[test]
    fn secure_cookies_carry_the_host_prefix() {
        let cookie = session_cookie("t", 60, true);
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.starts_with("__Host-fieldnotes_session=t;"),
            "{cookie}"
        );
        assert!(cookie.contains("; Secure") && cookie.contains("Path=/"));
        assert!(!cookie.contains("Domain"));
        let plain = session_cookie("t", 60, false);
        assert!(plain.to_str().unwrap().starts_with("fieldnotes_session=t;"));
    }
}
