//! Static files through `app()` without a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use fieldnotes_server::{AppState, ServerOptions, app};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn web_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>shell</html>").unwrap();
    std::fs::write(dir.path().join("sw.js"), "// worker").unwrap();
    std::fs::write(dir.path().join("app-1a2b3c4d5e.js"), "plain js").unwrap();
    std::fs::write(dir.path().join("app-1a2b3c4d5e.js.br"), "brotli bytes").unwrap();
    std::fs::write(dir.path().join("app-1a2b3c4d5e.js.gz"), "gzip bytes").unwrap();
    std::fs::write(dir.path().join("app-1a2b3c4d5e.wasm"), b"\0asm").unwrap();
    std::fs::write(dir.path().join("styles-1a2b3c4d5e.css"), "p {}").unwrap();
    std::fs::write(dir.path().join("icon-1a2b3c4d5e.svg"), "<svg/>").unwrap();
    dir
}

async fn get(
    dir: &tempfile::TempDir,
    path: &str,
    accept_encoding: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let state = AppState::open(&ServerOptions {
        web_dir: Some(dir.path().to_owned()),
        ..ServerOptions::in_memory()
    })
    .unwrap();
    let mut request = Request::get(path);
    if let Some(encoding) = accept_encoding {
        request = request.header(header::ACCEPT_ENCODING, encoding);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    state.hub().shutdown().await;
    (status, headers, body)
}

#[tokio::test]
async fn precompressed_siblings_follow_accept_encoding() {
    let dir = web_dir();
    let (status, headers, body) = get(&dir, "/app-1a2b3c4d5e.js", Some("gzip, br")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "brotli bytes");
    assert_eq!(headers[header::CONTENT_ENCODING], "br");
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    // Never revalidated: no validators to send on every first load.
    for name in [header::ETAG, header::LAST_MODIFIED, header::ACCEPT_RANGES] {
        assert!(headers.get(&name).is_none(), "{name}");
    }

    let (_, headers, body) = get(&dir, "/app-1a2b3c4d5e.js", Some("gzip")).await;
    assert_eq!(
        (body.as_str(), &headers[header::CONTENT_ENCODING]),
        ("gzip bytes", &"gzip".parse().unwrap())
    );
    let (_, headers, body) = get(&dir, "/app-1a2b3c4d5e.js", None).await;
    assert_eq!(body, "plain js");
    assert!(headers.get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn shell_files_are_never_cached_stale_and_unknown_routes_get_the_shell() {
    let dir = web_dir();
    for path in ["/", "/index.html", "/sw.js", "/accounts/42"] {
        let (status, headers, _) = get(&dir, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        // Revalidated on every start, so it keeps what makes the answer a 304.
        assert!(headers.contains_key(header::LAST_MODIFIED), "{path}");
    }
    let (_, _, body) = get(&dir, "/accounts/42", None).await;
    assert_eq!(body, "<html>shell</html>");
    let (status, _, _) = get(&dir, "/missing-asset.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The API routes still win over the fallback.
    let (status, _, _) = get(&dir, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_response_holds_the_browser_to_what_the_app_needs() {
    let dir = web_dir();
    for path in [
        "/",
        "/sw.js",
        "/app-1a2b3c4d5e.js",
        "/icon-1a2b3c4d5e.svg",
        "/healthz",
        "/api/session",
        "/missing-asset.js",
    ] {
        let (_, headers, _) = get(&dir, path, None).await;
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(
            !csp.contains("script-src 'self' 'unsafe-inline'"),
            "{path}: {csp}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin", "{path}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
    }
    // A policy is applied only to documents and workers; these types never become either, so
    // the first load does not carry it on them. They are still never sniffed.
    for path in ["/app-1a2b3c4d5e.wasm", "/styles-1a2b3c4d5e.css"] {
        let (status, headers, _) = get(&dir, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            headers.get(header::CONTENT_SECURITY_POLICY).is_none(),
            "{path}"
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    }
}
