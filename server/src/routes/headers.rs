//! Headers every response carries, so a browser holds the web app to what it needs.
//!
//! The Content-Security-Policy lets the page run only its own scripts (no inline script, no
//! `eval`; `wasm-unsafe-eval` only compiles the app's own WebAssembly), talk only to this
//! server (its WebSocket included), and never be framed. Style attributes stay allowed: the
//! app draws bar widths with them, and they cannot run code.
//!
//! A browser applies a policy only to a response it makes a document or a worker of, so the
//! policy and `X-Frame-Options` are left off the types that can never become either here
//! (WebAssembly, stylesheets, PNG images, the manifest): a first load carries them on ten
//! responses otherwise. Anything else, an unknown type or none, carries them.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::middleware::Next;
use axum::response::Response;

/// Only what differs from `default-src 'self'` is written out: styles, connections, fonts, the
/// manifest and workers fall back to it (workers through `script-src`), and every byte here
/// goes out with every response of a first load.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; style-src-attr 'unsafe-inline'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Content types a browser never makes a document or a worker of. With `nosniff`, a
/// navigation to one shows it or downloads it; it never runs in the page's origin.
const INERT_TYPES: [&str; 4] = [
    "application/wasm",
    "text/css",
    "image/png",
    "application/manifest+json",
];

fn can_become_a_document(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    !INERT_TYPES
        .iter()
        .any(|inert| essence.eq_ignore_ascii_case(inert))
}

pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if can_become_a_document(content_type) {
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        );
        // For browsers older than `frame-ancestors`.
        headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::can_become_a_document;

    #[test]
    fn only_types_that_never_become_documents_go_without_the_policy() {
        for inert in [
            "application/wasm",
            "text/css",
            "text/css; charset=utf-8",
            "image/png",
            "application/manifest+json",
        ] {
            assert!(!can_become_a_document(Some(inert)), "{inert}");
        }
        for document in [
            None,
            Some("text/html"),
            Some("text/html; charset=utf-8"),
            Some("image/svg+xml"),
            Some("text/javascript"),
            Some("application/javascript"),
            Some("application/json"),
            Some("text/plain"),
            Some("application/octet-stream"),
            Some(""),
        ] {
            assert!(can_become_a_document(document), "{document:?}");
        }
    }
}
