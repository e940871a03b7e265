//! The web build: compile `fieldnotes-web` to wasm32, generate its bindings, shrink it with
//! wasm-opt, give every asset a content-hashed name, write `index.html` and a service worker
//! whose precache list names exactly those files, precompress everything (brotli and gzip), and
//! print what a first load transfers against the 450 KB budget.
//!
//! Output goes to `dist/`, which `fieldnotes serve --web-dir dist` serves.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::setup::WASM_TARGET;
use crate::{cargo, project_root, run_command, set_rustflags};

/// What a first load may transfer, compressed as served (brotli), in bytes.
pub const FIRST_LOAD_BUDGET_BYTES: u64 = 450 * 1000;

pub struct Options {
    /// Size-optimised release profile (`web-release`) instead of the dev profile.
    pub release: bool,
    /// Run binaryen's `wasm-opt -Oz` on the bindgen output.
    pub optimise: bool,
}

/// What the build produced: each first-load file with its raw and compressed sizes.
pub struct Report {
    pub files: Vec<FileSize>,
}

pub struct FileSize {
    pub name: String,
    pub raw: u64,
    pub gzip: u64,
    pub brotli: u64,
}

impl Report {
    /// Bytes a first load transfers when the browser accepts brotli, as every current one does.
    pub fn first_load_brotli(&self) -> u64 {
        self.files.iter().map(|f| f.brotli.min(f.raw)).sum()
    }
}

/// The options of the release build that are about size alone.
///
/// - The standard library is recompiled with the app (`rust-src`, added by `cargo xtask setup`),
///   optimised for size, and a panic traps at once instead of linking the machinery that formats
///   its message: wasm32 has nowhere to print one. A panic was already fatal (`panic = "abort"`);
///   `index.html` catches the trap and tells the rep what to do. About 47 KB of the first load.
/// - Derived `Debug` prints the type or variant name without the fields. No screen shows
///   `Debug` output of our own types; the wire formats and stored data never use it. About 10 KB.
///
/// These options are unstable on the machine's stable toolchain; `RUSTC_BOOTSTRAP` unlocks them
/// for this one build. Tests run the same build, so a change in their meaning shows up there.
fn size_build(compile: &mut Command) {
    const RUSTFLAGS: [&str; 3] = [
        "-Zunstable-options",
        "-Cpanic=immediate-abort",
        "-Zfmt-debug=shallow",
    ];
    compile
        .args([
            "-Zbuild-std=std,panic_abort",
            "-Zbuild-std-features=optimize_for_size",
        ])
        .env("RUSTC_BOOTSTRAP", "1");
    set_rustflags(compile, &RUSTFLAGS);
}

pub fn build(options: &Options) -> Result<Report> {
    let root = project_root();
    let profile = if options.release {
        "web-release"
    } else {
        "dev"
    };
    let mut compile = Command::new(cargo());
    compile.current_dir(&root).args([
        "build",
        "-p",
        "fieldnotes-web",
        "--lib",
        "--target",
        WASM_TARGET,
        "--profile",
        profile,
    ]);
    if options.release {
        size_build(&mut compile);
    }
    run_command(&mut compile)?;
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let wasm_in = root
        .join("target")
        .join(WASM_TARGET)
        .join(profile_dir)
        .join("fieldnotes_web.wasm");

    let staging = root.join("target/web-staging");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    eprintln!("$ wasm-bindgen --target web {}", wasm_in.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm_in)
        .out_name("app")
        .web(true)?
        // The library's default differs from the CLI's: without this a bare `init()` fails.
        .omit_default_module_path(false)
        .typescript(false)
        .generate(&staging)
        .context("wasm-bindgen could not generate the bindings")?;

    let wasm = staging.join("app_bg.wasm");
    if options.optimise {
        let wasm_opt = root.join("web/node_modules/.bin/wasm-opt");
        if !wasm_opt.is_file() {
            bail!(
                "wasm-opt is missing at {}: run `cargo xtask setup`",
                wasm_opt.display()
            );
        }
        run_command(
            Command::new(&wasm_opt)
                .arg(&wasm)
                .arg("-Oz")
                .arg("-o")
                .arg(&wasm),
        )?;
    }

    let dist = root.join("dist");
    let _ = fs::remove_dir_all(&dist);
    fs::create_dir_all(&dist)?;

    // Content-hashed names: the server may cache them forever; a new build gets new names.
    let mut names = BTreeMap::new();
    names.insert(
        "APP_JS",
        publish_hashed(&staging.join("app.js"), &dist, "app", "js")?,
    );
    names.insert("APP_WASM", publish_hashed(&wasm, &dist, "app", "wasm")?);
    let static_dir = root.join("web/static");
    names.insert(
        "STYLES",
        publish_hashed(&static_dir.join("styles.css"), &dist, "styles", "css")?,
    );
    // The icons and the manifest are named by their content too: the page and the service
    // worker then take them once from the network, where a stable name was asked again.
    for (key, stem, extension) in [
        ("ICON_SVG", "icon", "svg"),
        ("ICON_192", "icon-192", "png"),
        ("ICON_512", "icon-512", "png"),
    ] {
        let source = static_dir.join(format!("{stem}.{extension}"));
        names.insert(key, publish_hashed(&source, &dist, stem, extension)?);
    }
    let manifest = fill(
        &fs::read_to_string(static_dir.join("manifest.webmanifest"))?,
        &names,
    );
    names.insert(
        "MANIFEST",
        publish_hashed_text(&manifest, &dist, "manifest", "webmanifest")?,
    );
    // The boot script names the app's files, so it is filled in before its own name is hashed.
    let boot = fill(&fs::read_to_string(static_dir.join("boot.js"))?, &names);
    names.insert("BOOT_JS", publish_hashed_text(&boot, &dist, "boot", "js")?);

    // Files with stable names: the entry points a browser asks for by name.
    let mut stable = Vec::new();
    for entry in fs::read_dir(&static_dir)? {
        let path = entry?.path();
        let name = file_name(&path);
        if matches!(
            name.as_str(),
            "styles.css"
                | "index.html"
                | "sw.js"
                | "boot.js"
                | "icon.svg"
                | "icon-192.png"
                | "icon-512.png"
                | "manifest.webmanifest"
        ) {
            continue;
        }
        fs::copy(&path, dist.join(&name))?;
        stable.push(name);
    }
    stable.sort();

    let index = fill(&fs::read_to_string(static_dir.join("index.html"))?, &names);
    fs::write(dist.join("index.html"), index)?;

    // The service worker precaches the whole app shell by name; its version is the hash of that
    // list, so any changed asset yields a new worker, a new cache and the "new version" prompt.
    // Navigations are answered with the page as `/` serves it, the URL the browser loaded first.
    let mut precache: Vec<String> = vec!["/".to_string()];
    precache.extend(names.values().map(|n| format!("/{n}")));
    precache.extend(stable.iter().map(|n| format!("/{n}")));
    let version = short_hash(precache.join("\n").as_bytes());
    let mut sw_names = BTreeMap::new();
    sw_names.insert(
        "PRECACHE",
        format!(
            "[{}]",
            precache
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    sw_names.insert("VERSION", format!("\"{version}\""));
    let sw = fill(&fs::read_to_string(static_dir.join("sw.js"))?, &sw_names);
    fs::write(dist.join("sw.js"), sw)?;

    let mut first_load: Vec<String> = vec!["index.html".into(), "sw.js".into()];
    first_load.extend(names.values().cloned());
    first_load.extend(stable.iter().cloned());

    let mut report = Report { files: Vec::new() };
    for name in &first_load {
        report.files.push(precompress(&dist.join(name))?);
    }
    print_report(&report);
    Ok(report)
}

fn publish_hashed(source: &Path, dist: &Path, stem: &str, extension: &str) -> Result<String> {
    let bytes = fs::read(source).with_context(|| format!("could not read {}", source.display()))?;
    let name = format!("{stem}-{}.{extension}", short_hash(&bytes));
    fs::write(dist.join(&name), bytes)?;
    Ok(name)
}

fn publish_hashed_text(text: &str, dist: &Path, stem: &str, extension: &str) -> Result<String> {
    let name = format!("{stem}-{}.{extension}", short_hash(text.as_bytes()));
    fs::write(dist.join(&name), text)?;
    Ok(name)
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn fill(template: &str, names: &BTreeMap<&str, String>) -> String {
    let mut text = template.to_string();
    for (key, value) in names {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `name.br` and `name.gz` beside a file and returns its sizes.
fn precompress(path: &Path) -> Result<FileSize> {
    let raw = fs::read(path)?;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gzip.write_all(&raw)?;
    let gzip = gzip.finish()?;
    let mut brotli = Vec::new();
    {
        let params = brotli::enc::BrotliEncoderParams {
            quality: 11,
            lgwin: 24,
            ..Default::default()
        };
        brotli::BrotliCompress(&mut &raw[..], &mut brotli, &params)?;
    }
    fs::write(with_suffix(path, "gz"), &gzip)?;
    fs::write(with_suffix(path, "br"), &brotli)?;
    Ok(FileSize {
        name: file_name(path),
        raw: raw.len() as u64,
        gzip: gzip.len() as u64,
        brotli: brotli.len() as u64,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn print_report(report: &Report) {
    println!("first load, as served:");
    println!(
        "  {:<32} {:>10} {:>10} {:>10}",
        "file", "raw", "gzip", "brotli"
    );
    for file in &report.files {
        println!(
            "  {:<32} {:>10} {:>10} {:>10}",
            file.name, file.raw, file.gzip, file.brotli
        );
    }
    let total = report.first_load_brotli();
    println!(
        "  total transferred (brotli): {total} bytes of a {FIRST_LOAD_BUDGET_BYTES} byte budget ({:.0}%)",
        total as f64 * 100.0 / FIRST_LOAD_BUDGET_BYTES as f64
    );
    if total > FIRST_LOAD_BUDGET_BYTES {
        println!(
            "  OVER BUDGET by {} bytes: see ARCHITECTURE.md, \"Size budget\"",
            total - FIRST_LOAD_BUDGET_BYTES
        );
    }
}
