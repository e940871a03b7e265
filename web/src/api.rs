//! The server's HTTP API under `/api` (docs/auth.md): sign-in, first-run setup, invitations.
//!
//! Calls go through the browser's `fetch` with same-origin credentials, so the HttpOnly session
//! cookie the server sets travels with them (and with the sync WebSocket); the app never sees the
//! token. JSON is read and written with the browser's own `JSON` rather than a Rust parser: the
//! bodies are a handful of fields, and a parser would cost the first load tens of kilobytes.

use js_sys::{JSON, Object, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RequestCredentials, RequestInit, Response};

/// A user's membership of one team, as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamInfo {
    pub id: String,
    pub name: String,
    pub role: String,
}

/// Who is signed in: the body of every successful sign-in and of `GET /api/session`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    /// Sorted by name, as the server sends them.
    pub teams: Vec<TeamInfo>,
    /// Unix milliseconds.
    pub expires_at: f64,
}

/// What an invitation link offers, before the rep accepts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub team: TeamInfo,
    /// The email the invitation is for, when the administrator named one.
    pub email: Option<String>,
}

/// Why a call did not succeed, in words a rep can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No answer at all: no signal, the server down, or the request blocked.
    #[error("Can't reach the server. Check your signal and try again.")]
    Unreachable,
    /// The server answered with an error status and, usually, a message for the rep.
    #[error("{message}")]
    Refused { status: u16, message: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unreachable => None,
            ApiError::Refused { status, .. } => Some(*status),
        }
    }
}

pub async fn sign_in(email: &str, password: &str) -> Result<SessionInfo, ApiError> {
    let body = object(&[("email", email), ("password", password)]);
    session_from(call("POST", "/api/session", Some(body)).await?)
}

/// The session this browser holds; `Refused { status: 401 }` when there is none any more.
pub async fn current_session() -> Result<SessionInfo, ApiError> {
    session_from(call("GET", "/api/session", None).await?)
}

/// Revokes this browser's session and clears its cookie.
pub async fn sign_out() -> Result<(), ApiError> {
    call("DELETE", "/api/session", None).await.map(|_| ())
}

pub async fn setup(
    token: &str,
    name: &str,
    email: &str,
    password: &str,
    team_name: &str,
) -> Result<SessionInfo, ApiError> {
    let body = object(&[
        ("token", token),
        ("name", name),
        ("email", email),
        ("password", password),
        ("team_name", team_name),
    ]);
    session_from(call("POST", "/api/setup", Some(body)).await?)
}

pub async fn invitation(token: &str) -> Result<Invitation, ApiError> {
    let path = format!("/api/invitations/{}", js_sys::encode_uri_component(token));
    let value = call("GET", &path, None).await?;
    let team = Reflect::get(&value, &"team".into()).unwrap_or(JsValue::UNDEFINED);
    Ok(Invitation {
        team: TeamInfo {
            id: string(&team, "id"),
            name: string(&team, "name"),
            role: string(&value, "role"),
        },
        email: Reflect::get(&value, &"email".into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|e| !e.is_empty()),
    })
}

pub async fn accept_invitation(
    token: &str,
    name: &str,
    email: &str,
    password: &str,
) -> Result<SessionInfo, ApiError> {
    let body = object(&[
        ("token", token),
        ("name", name),
        ("email", email),
        ("password", password),
    ]);
    session_from(call("POST", "/api/invitations/accept", Some(body)).await?)
}

impl SessionInfo {
    /// Reads a `SessionInfo` JSON value; `None` if it is not one.
    pub fn from_js(value: &JsValue) -> Option<SessionInfo> {
        let user = Reflect::get(value, &"user".into()).ok()?;
        let user_id = Reflect::get(&user, &"id".into()).ok()?.as_string()?;
        let teams = Reflect::get(value, &"teams".into())
            .ok()?
            .dyn_into::<js_sys::Array>()
            .ok()?
            .iter()
            .map(|team| TeamInfo {
                id: string(&team, "id"),
                name: string(&team, "name"),
                role: string(&team, "role"),
            })
            .filter(|team| !team.id.is_empty())
            .collect();
        Some(SessionInfo {
            user_id,
            email: string(&user, "email"),
            name: string(&user, "name"),
            is_admin: Reflect::get(&user, &"is_admin".into())
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            teams,
            expires_at: Reflect::get(value, &"expires_at".into())
                .ok()
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
        })
    }

    /// The same shape the server sends, so one reader serves both.
    pub fn to_js(&self) -> JsValue {
        let user = Object::new();
        set(&user, "id", &self.user_id.as_str().into());
        set(&user, "email", &self.email.as_str().into());
        set(&user, "name", &self.name.as_str().into());
        set(&user, "is_admin", &self.is_admin.into());
        let teams: js_sys::Array = self
            .teams
            .iter()
            .map(|team| -> JsValue {
                object(&[
                    ("id", team.id.as_str()),
                    ("name", team.name.as_str()),
                    ("role", team.role.as_str()),
                ])
                .into()
            })
            .collect();
        let value = Object::new();
        set(&value, "user", &user);
        set(&value, "teams", &teams);
        set(&value, "expires_at", &self.expires_at.into());
        value.into()
    }

    pub fn team(&self, id: &str) -> Option<&TeamInfo> {
        self.teams.iter().find(|team| team.id == id)
    }
}

fn session_from(value: JsValue) -> Result<SessionInfo, ApiError> {
    SessionInfo::from_js(&value).ok_or_else(|| ApiError::Refused {
        status: 200,
        message: "The server's answer was not understood. Reload Fieldnotes while online to \
                  update it, then try again."
            .into(),
    })
}

/// One request; resolves with the parsed JSON body of a 2xx answer (`null` when empty).
async fn call(method: &str, path: &str, body: Option<Object>) -> Result<JsValue, ApiError> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    if let Some(body) = body {
        let text = JSON::stringify(&body).map_err(|_| ApiError::Unreachable)?;
        init.set_body(&text.into());
        let headers = Object::new();
        set(&headers, "content-type", &"application/json".into());
        init.set_headers(&headers);
    }
    let window = web_sys::window().ok_or(ApiError::Unreachable)?;
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(path, &init))
        .await
        .map_err(|_| ApiError::Unreachable)?
        .unchecked_into();
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .ok()
            .and_then(|t| t.as_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let parsed = if text.is_empty() {
        JsValue::NULL
    } else {
        JSON::parse(&text).unwrap_or(JsValue::NULL)
    };
    let status = response.status();
    if response.ok() {
        return Ok(parsed);
    }
    let message = Reflect::get(&parsed, &"error".into())
        .ok()
        .and_then(|m| m.as_string())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| fallback_message(status));
    Err(ApiError::Refused { status, message })
}

/// Words for an error answer without a message (a proxy in front of the server, say).
fn fallback_message(status: u16) -> String {
    match status {
        401 => "Wrong email or password. Check both and try again.".into(),
        429 => "Too many attempts. Wait a few minutes, then try again.".into(),
        500..=599 => format!(
            "The server had a problem (error {status}). Try again in a minute; if it keeps \
             happening, tell your administrator."
        ),
        _ => format!(
            "The server refused that (error {status}). Reload Fieldnotes and try again; if it \
             keeps happening, tell your administrator."
        ),
    }
}

fn object(fields: &[(&str, &str)]) -> Object {
    let object = Object::new();
    for (key, value) in fields {
        set(&object, key, &(*value).into());
    }
    object
}

fn set(object: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(object, &key.into(), value);
}

fn string(value: &JsValue, key: &str) -> String {
    Reflect::get(value, &key.into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}
