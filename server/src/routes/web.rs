//! The built web app from `--web-dir`: precompressed `.br`/`.gz` siblings by
//! `Accept-Encoding`, cache headers by file name, and a single-page-app
//! fallback to `index.html` for paths that do not name a file.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::Request;
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::ApiError;

const NO_CACHE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn router(web_dir: &Path) -> Router {
    let index: PathBuf = web_dir.join("index.html");
    let spa_fallback = move |request: Request| {
        let index = index.clone();
        async move {
            if last_segment(request.uri().path()).contains('.') {
                // A missing asset is a 404, not the app shell.
                return ApiError::not_found().into_response();
            }
            match ServeFile::new(index)
                .precompressed_br()
                .precompressed_gzip()
                .oneshot(request)
                .await
            {
                Ok(response) => response.into_response(),
                Err(error) => ApiError::internal(error).into_response(),
            }
        }
    };
    let files = ServeDir::new(web_dir)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(spa_fallback.into_service());
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(cache_headers))
}

fn last_segment(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// `name-<8 or more hex digits>.ext`: the build put a content hash in the name.
fn has_content_hash(name: &str) -> bool {
    name.match_indices('-').any(|(at, _)| {
        let rest = &name[at + 1..];
        let hex = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        hex >= 8 && rest.as_bytes().get(hex) == Some(&b'.')
    })
}

/// The Cache-Control for a path: hashed files forever, everything else
/// revalidated (index.html and sw.js must never be stale, or an update never lands).
pub fn cache_control_for(path: &str) -> &'static str {
    let name = last_segment(path);
    if name == "index.html" || name == "sw.js" || !name.contains('.') {
        NO_CACHE
    } else if has_content_hash(name) {
        IMMUTABLE
    } else {
        NO_CACHE
    }
}

async fn cache_headers(request: Request, next: Next) -> Response {
    let policy = cache_control_for(request.uri().path());
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
        if policy == IMMUTABLE {
            // Never revalidated (a new build has new names) and never fetched in parts, so
            // validators and `Accept-Ranges` are bytes on every first load for nothing.
            headers.remove(header::ETAG);
            headers.remove(header::LAST_MODIFIED);
            headers.remove(header::ACCEPT_RANGES);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_policy_by_file_name() {
        assert_eq!(cache_control_for("/"), NO_CACHE);
        assert_eq!(cache_control_for("/index.html"), NO_CACHE);
        assert_eq!(cache_control_for("/sw.js"), NO_CACHE);
        assert_eq!(cache_control_for("/accounts/42"), NO_CACHE);
        assert_eq!(cache_control_for("/app-1a2b3c4d.js"), IMMUTABLE);
        assert_eq!(
            cache_control_for("/assets/app_bg-0123456789abcdef.wasm"),
            IMMUTABLE
        );
        assert_eq!(
            cache_control_for("/app-1a2b3c4.js"),
            NO_CACHE,
            "7 hex digits is not a hash"
        );
        assert_eq!(cache_control_for("/app-1a2b3c4g.js"), NO_CACHE);
        assert_eq!(cache_control_for("/manifest.webmanifest"), NO_CACHE);
    }
}
