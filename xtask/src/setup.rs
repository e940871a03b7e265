//! Installs what the build and the tests need and the machine may lack. Each step checks first,
//! so a second run costs nothing; nothing here depends on something installed by hand.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::fuzz::CARGO_FUZZ_VERSION;
use crate::{on_path, project_root, run_command};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The Rust target the web app compiles to, and the standard library's source, which the web
/// app's release build recompiles for size (see `web::size_build`).
pub fn rust_targets() -> Result<()> {
    if !rustup_lists(&["target", "list", "--installed"], WASM_TARGET)? {
        run_command(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    if !rustup_lists(&["component", "list", "--installed"], "rust-src")? {
        run_command(Command::new("rustup").args(["component", "add", "rust-src"]))?;
    }
    Ok(())
}

/// Whether a `rustup … list --installed` names `item`.
fn rustup_lists(args: &[&str], item: &str) -> Result<bool> {
    let installed = Command::new("rustup")
        .args(args)
        .output()
        .context("rustup is needed to add the wasm32 target and the standard library's source")?;
    Ok(String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == item))
}

/// cargo-fuzz, which builds and runs the fuzz targets (`cargo xtask fuzz`), at the version the
/// project was fuzzed with. It builds from crates.io in about half a minute.
pub fn fuzz_tools() -> Result<()> {
    let installed = Command::new(crate::cargo())
        .args(["fuzz", "--version"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    if installed
        .split_whitespace()
        .any(|word| word == CARGO_FUZZ_VERSION)
    {
        return Ok(());
    }
    run_command(Command::new(crate::cargo()).args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
}

/// The npm build tools of the web app (binaryen's wasm-opt).
pub fn web_tools() -> Result<()> {
    npm_ci(&project_root().join("web"))
}

/// The npm packages of the end-to-end tests (the automerge-repo client, Playwright's driver).
pub fn test_tools() -> Result<()> {
    npm_ci(&project_root().join("tests/node"))
}

/// Debian's Chromium and ChromeDriver for the browser journeys. Test tools never download a
/// browser of their own: that fails on these machines.
pub fn browser() -> Result<()> {
    if Path::new("/usr/bin/chromium").is_file() && on_path("chromedriver") {
        return Ok(());
    }
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut command = Command::new(all[0]);
        command
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run_command(&mut command)
    };
    apt(&["update", "-q"])?;
    apt(&["install", "-y", "-q", "chromium", "chromium-driver"])
}

/// Installs a folder's npm packages from its lock file, unless they are already in place for
/// exactly that lock file.
fn npm_ci(folder: &Path) -> Result<()> {
    let lock = folder.join("package-lock.json");
    let stamp = folder.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::read(&lock), std::fs::metadata(&stamp)) {
        (Ok(_), Ok(stamp_meta)) => {
            let lock_time = std::fs::metadata(&lock).and_then(|m| m.modified()).ok();
            let stamp_time = stamp_meta.modified().ok();
            matches!((lock_time, stamp_time), (Some(l), Some(s)) if s >= l)
        }
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    if !on_path("npm") {
        anyhow::bail!(
            "npm is needed for {} (install Node.js 20 and npm, e.g. `apt-get install nodejs npm`)",
            folder.display()
        );
    }
    run_command(Command::new("npm").current_dir(folder).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}
