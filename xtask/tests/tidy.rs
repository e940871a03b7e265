//! The tidy test: ARCHITECTURE.md's boundaries, checked on every `cargo xtask test`.
//!
//! Each test is one rule ARCHITECTURE.md names ("Rules the tidy test enforces"). They read the
//! source as text, like rust-analyzer's `tidy.rs`: cheap, and clear about what they look for.
//! Code after a file's `#[cfg(test)]` line is a test module and may use what the rules forbid
//! (clocks, say, to time a check).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "node_modules" || n == "target")
            {
                continue;
            }
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The workspace members, from the root manifest.
fn members() -> Vec<PathBuf> {
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").expect("workspace members");
    let list = &manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root().join(m))
        .collect()
}

/// The text before a file's test module, without comment lines.
fn code_outside_tests(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let code = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The dependency names of a manifest (every `[…dependencies]` table), as written.
fn dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(manifest).unwrap();
    let mut names = BTreeSet::new();
    let mut in_dependencies = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_dependencies = line.trim().ends_with("dependencies]");
            continue;
        }
        // An entry starts its line with the crate's name; continuation lines (a long
        // `features = [...]`) are indented or start with a quote.
        if !in_dependencies || !line.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        if let Some(name) = line.split(['=', '.']).next() {
            names.insert(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn the_shared_crates_do_no_io_and_hold_no_clock_or_randomness_of_their_own() {
    // crates/model and crates/sync run in the browser and on the server, and are tested as
    // plain functions: time and random bytes come in as arguments, effects go out as data.
    const FORBIDDEN: [&str; 12] = [
        "std::fs",
        "std::net",
        "std::process",
        "std::thread",
        "std::env",
        "SystemTime",
        "Instant::now",
        "tokio",
        "rand::",
        "getrandom",
        "web_sys",
        "js_sys",
    ];
    let mut found = Vec::new();
    // The shared crates; `crates/fuzz` is the fuzz harness, which reads and writes its seeds.
    let shared = ["crates/model", "crates/sync"];
    let files = shared
        .iter()
        .flat_map(|crate_dir| rust_files(&root().join(crate_dir)));
    for file in files {
        if !file.components().any(|c| c.as_os_str() == "src") {
            continue;
        }
        let code = code_outside_tests(&file);
        for word in FORBIDDEN {
            if code.contains(word) {
                found.push(format!("{} uses {word}", relative(&file)));
            }
        }
    }
    for crate_dir in shared {
        let deps = dependencies(&root().join(crate_dir).join("Cargo.toml"));
        for dependency in [
            "tokio",
            "rand",
            "getrandom",
            "rusqlite",
            "axum",
            "web-sys",
            "js-sys",
            "wasm-bindgen",
        ] {
            if deps.contains(dependency) {
                found.push(format!("{crate_dir} depends on {dependency}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "IO, clocks or randomness in the shared crates:\n{}",
        found.join("\n")
    );
}

/// The modules a `use crate::{…}` group names at its top level (`a::{b, c}` gives `a`).
fn grouped_crate_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::{") {
        let group = &rest[at + "crate::{".len()..];
        let (mut depth, mut end) = (0usize, group.len());
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let (mut depth, mut item) = (0usize, String::new());
        for c in group[..end].chars().chain([',']) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    let module = item.split("::").next().unwrap_or("").trim().to_owned();
                    if !module.is_empty() {
                        names.push(module);
                    }
                    item.clear();
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                item.push(c);
            }
        }
        rest = &group[end..];
    }
    names
}

#[test]
fn components_do_no_io() {
    // The web app's components render state and call services (`services`, `lifecycle`,
    // `drafts`); storage, the session store, the HTTP API, the document repo and the sync
    // engine are reached only through those.
    const IO_MODULES: [&str; 5] = ["idb", "session", "api", "repo", "sync"];
    const IO_WORDS: [&str; 5] = [
        ".repo.",
        "indexed_db",
        "IdbFactory",
        "gloo_net",
        "fetch_with",
    ];
    let mut found = Vec::new();
    for file in rust_files(&root().join("web/src/components")) {
        let code = code_outside_tests(&file);
        for module in IO_MODULES {
            if code.contains(&format!("crate::{module}::"))
                || code.contains(&format!("crate::{module};"))
            {
                found.push(format!("{} uses crate::{module}", relative(&file)));
            }
        }
        for module in grouped_crate_modules(&code) {
            if IO_MODULES.contains(&module.as_str()) {
                found.push(format!("{} uses crate::{module}", relative(&file)));
            }
        }
        for word in IO_WORDS {
            if code.contains(word) {
                found.push(format!("{} uses {word}", relative(&file)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "components doing IO (move it into a service: web/src/services.rs or lifecycle.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_grouped_use_reader_sees_every_top_level_module() {
    let code = "use crate::{api, drafts::{self, form::Draft}, idb};";
    assert_eq!(grouped_crate_modules(code), ["api", "drafts", "idb"]);
}

#[test]
fn only_the_server_knows_http_and_sql_and_only_the_web_app_the_browser() {
    let mut found = Vec::new();
    for member in members() {
        let name = relative(&member);
        let deps = dependencies(&member.join("Cargo.toml"));
        let allowed_http_sql = name == "server";
        let allowed_browser = name == "web";
        for dependency in [
            "rusqlite",
            "postgres",
            "axum",
            "hyper",
            "hyper-util",
            "tower-http",
        ] {
            // The end-to-end tests reach the server's database (its SQLite file, or the
            // PostgreSQL database they made for it) to check what it stored.
            let test_reads_db =
                name == "tests" && (dependency == "rusqlite" || dependency == "postgres");
            if deps.contains(dependency) && !allowed_http_sql && !test_reads_db {
                found.push(format!("{name} depends on {dependency}"));
            }
        }
        for dependency in ["web-sys", "js-sys", "yew", "wasm-bindgen", "gloo"] {
            if deps.contains(dependency) && !allowed_browser {
                found.push(format!("{name} depends on {dependency}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a boundary crossed:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_crate_and_module_says_what_it_is() {
    let mut missing = Vec::new();
    for member in members() {
        for dir in ["src", "tests", "benches", "examples"] {
            for file in rust_files(&member.join(dir)) {
                let text = fs::read_to_string(&file).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(relative(&file));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a `//!` doc saying what they are:\n{}",
        missing.join("\n")
    );
}

/// Dependencies used for what they switch on rather than for their items.
const USED_FOR_FEATURES: [(&str, &str, &str); 1] = [(
    "web",
    "tracing",
    "turns tracing off (max_level_off) for yew and automerge in the browser",
)];

#[test]
fn every_dependency_is_used() {
    let mut unused = Vec::new();
    let mut used_anywhere = BTreeSet::new();
    for member in members() {
        let name = relative(&member);
        let mut code = String::new();
        for dir in ["src", "tests", "benches", "examples", "build.rs"] {
            let path = member.join(dir);
            let files = if path.is_file() {
                vec![path]
            } else {
                rust_files(&path)
            };
            for file in files {
                code.push_str(&fs::read_to_string(&file).unwrap());
            }
        }
        for dependency in dependencies(&member.join("Cargo.toml")) {
            used_anywhere.insert(dependency.clone());
            let ident = dependency.replace('-', "_");
            let used = code.contains(&format!("{ident}::"))
                || code.contains(&format!("use {ident}"))
                || code.contains(&format!("{ident}!"))
                || code.contains(&format!("extern crate {ident}"));
            let excused = USED_FOR_FEATURES
                .iter()
                .any(|(crate_name, dep, _)| *crate_name == name && *dep == dependency);
            if !used && !excused {
                unused.push(format!("{name}: {dependency}"));
            }
        }
    }
    // And the workspace's shared versions are each someone's.
    let root_manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    if let Some(start) = root_manifest.find("[workspace.dependencies]") {
        for line in root_manifest[start..].lines().skip(1) {
            if line.starts_with('[') {
                break;
            }
            let Some(name) = line.split('=').next().map(str::trim) else {
                continue;
            };
            if !name.is_empty() && !name.starts_with('#') && !used_anywhere.contains(name) {
                unused.push(format!("[workspace.dependencies]: {name}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies nothing uses:\n{}",
        unused.join("\n")
    );
}

#[test]
fn the_server_unwinds_so_one_panic_costs_one_connection() {
    // The hub catches a panic in one frame (ARCHITECTURE.md, "supervision"); with
    // `panic = "abort"` the process would die instead.
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for profile in ["[profile.release]", "[profile.dev]"] {
        if let Some(start) = manifest.find(profile) {
            let section = &manifest[start + profile.len()..];
            let section = &section[..section.find("\n[").unwrap_or(section.len())];
            assert!(
                !section.contains("panic"),
                "{profile} sets panic: the server must unwind"
            );
        }
    }
}
