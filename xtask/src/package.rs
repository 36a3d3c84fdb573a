//! `cargo xtask package`: `cargo package` of every crate meant for crates.io, in three checks:
//!
//! 1. **metadata**: each one has a description, a license, keywords (at most 5) and categories
//!    (at most 5), a readme that exists, and a `[package.metadata.docs.rs]` table;
//! 2. **contents**: `cargo package --list` of each one holds only the manifest, the lock file,
//!    the readme, license texts and `src/`, `tests/`, `examples/`, `benches/`, no file over
//!    [`MAX_FILE_BYTES`] (so a fixture or a stray build artefact never ships), and no test,
//!    example or benchmark that uses an unpublished workspace crate (redis-harness): cargo
//!    drops such a dev-dependency from the package, so it could not build from there;
//! 3. **the packages**: one `cargo package --allow-dirty -p ... -p ...` for all of them, which
//!    writes `target/package-check/package/<name>-<version>.crate` and, unless `--no-verify`, builds each one
//!    from its `.crate` alone: its workspace dependencies come from the others' packages (cargo
//!    puts them in a temporary local registry), everything else from crates.io.
//!
//! Which crates: every workspace member whose manifest does not say `publish = false`, as
//! `cargo metadata` reports them, so that a new crate is checked from its first commit. The
//! ones that do say it are the test, benchmark and demo crates and xtask. `--allow-dirty`:
//! the check is about what the packages hold and whether they build, so it runs on a working
//! tree with uncommitted changes too (CI runs it on a clean clone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::{Result, process};

/// The largest file a package may hold.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024;

/// What the command line asks for: `cargo xtask package [--list] [--no-verify] [-- ARGS]`.
#[derive(Debug, Default, PartialEq, clap::Args)]
pub(crate) struct Args {
    /// Check, then print each package's files instead of packaging
    #[arg(long, conflicts_with = "no_verify")]
    pub(crate) list: bool,
    /// Write the .crate files without building them
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// More arguments for `cargo package` (e.g. `-- --locked`)
    #[arg(last = true, value_name = "ARGS")]
    pub(crate) extra: Vec<String>,
}

/// One crate to publish, from `cargo metadata`.
#[derive(Debug)]
pub(crate) struct Crate {
    pub(crate) name: String,
    version: String,
    /// The directory of its Cargo.toml.
    dir: PathBuf,
    /// The package entry of `cargo metadata`.
    meta: Value,
}

/// Runs `cargo xtask package`.
pub(crate) fn run(interrupted: &AtomicBool, args: &Args) -> Result<ExitCode> {
    let code = step(args)?;
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("xtask package: interrupted");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::from(code))
}

/// The package step, shared with `cargo xtask ci`: returns the exit code (0 when every check
/// passed and every package was written, and built unless `--no-verify`).
pub(crate) fn step(args: &Args) -> Result<u8> {
    let Workspace {
        publish: crates,
        unpublished,
    } = workspace()?;
    let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    println!(
        "xtask package: {} crates to publish: {}",
        crates.len(),
        names.join(", ")
    );
    let mut problems = Vec::new();
    for krate in &crates {
        problems.extend(
            metadata_problems(krate)
                .into_iter()
                .map(|p| format!("{}: {p}", krate.name)),
        );
        let files = match list(krate) {
            Ok(files) => files,
            Err(err) => {
                problems.push(format!("{}: {err}", krate.name));
                continue;
            }
        };
        if args.list {
            println!(
                "\n{} {} ({} files):",
                krate.name,
                krate.version,
                files.len()
            );
            for file in &files {
                println!("  {file}");
            }
        }
        problems.extend(
            content_problems(krate, &files, &unpublished)
                .into_iter()
                .map(|p| format!("{}: {p}", krate.name)),
        );
    }
    if !problems.is_empty() {
        eprintln!("\nxtask package: {} problem(s):", problems.len());
        for problem in &problems {
            eprintln!("  {problem}");
        }
        return Ok(1);
    }
    println!("xtask package: metadata and file lists are fine");
    if args.list {
        return Ok(0);
    }
    forget_extracted_packages(&crates);
    // A target directory of its own: cargo takes a registry package (which is what the
    // packages are built against here) as never changing, so in the workspace's target
    // directory a build of an earlier run's session-core 0.1.0 would be reused. Here only
    // those of this workspace's packages are removed before each run; dependencies stay.
    let verify_target = process::target_dir().join("package-check");
    forget_built_packages(&verify_target, &crates);
    let mut cmd = process::cargo();
    cmd.env("CARGO_TARGET_DIR", &verify_target);
    cmd.args(["package", "--allow-dirty"]);
    if args.no_verify {
        cmd.arg("--no-verify");
    }
    for name in &names {
        cmd.args(["-p", name]);
    }
    cmd.args(&args.extra);
    let code = process::exit_code(process::run(&mut cmd)?);
    if code != 0 {
        eprintln!("xtask package: `cargo package` failed (exit code {code})");
        return Ok(code);
    }
    let out = verify_target.join("package");
    println!(
        "\nxtask package: {} packages {}:",
        crates.len(),
        if args.no_verify {
            "written (not built: --no-verify)"
        } else {
            "written and each built from its .crate"
        }
    );
    for krate in &crates {
        let file = out.join(format!("{}-{}.crate", krate.name, krate.version));
        let size = std::fs::metadata(&file).map_or_else(
            |_| "missing".to_owned(),
            |m| format!("{:.1} KiB", m.len() as f64 / 1024.0),
        );
        println!("  {} ({size})", file.display());
    }
    Ok(0)
}

/// The workspace's crates, as far as publishing goes.
#[derive(Debug)]
pub(crate) struct Workspace {
    /// The members whose manifest does not say `publish = false`, by name.
    pub(crate) publish: Vec<Crate>,
    /// The names of those that do.
    unpublished: Vec<String>,
}

/// The workspace, from `cargo metadata`.
pub(crate) fn workspace() -> Result<Workspace> {
    let output = process::cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|err| format!("cannot run `cargo metadata`: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("`cargo metadata` printed no JSON: {err}"))?;
    split_workspace(&metadata)
}

/// The packages of a `cargo metadata --no-deps` document, split: those that may be published
/// (`publish` is `null`, anywhere, or names registries) and those that may not (`publish =
/// false` is an empty list).
fn split_workspace(metadata: &Value) -> Result<Workspace> {
    let packages = metadata["packages"]
        .as_array()
        .ok_or("`cargo metadata` listed no packages")?;
    let mut crates = Vec::new();
    let mut unpublished = Vec::new();
    for package in packages {
        let field = |name: &str| {
            package[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`cargo metadata`: a package without `{name}`"))
        };
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            unpublished.push(field("name")?);
            continue;
        }
        let manifest = PathBuf::from(field("manifest_path")?);
        crates.push(Crate {
            name: field("name")?,
            version: field("version")?,
            dir: manifest
                .parent()
                .map_or_else(PathBuf::new, Path::to_path_buf),
            meta: package.clone(),
        });
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    unpublished.sort();
    Ok(Workspace {
        publish: crates,
        unpublished,
    })
}

/// What crates.io (or the crate's page there and on docs.rs) would miss.
fn metadata_problems(krate: &Crate) -> Vec<String> {
    let meta = &krate.meta;
    let mut problems = Vec::new();
    let text = |name: &str| meta[name].as_str().filter(|s| !s.trim().is_empty());
    if text("description").is_none() {
        problems.push("no `description`".to_owned());
    }
    if text("license").is_none() && text("license_file").is_none() {
        problems.push("no `license`".to_owned());
    }
    for list in ["keywords", "categories"] {
        match meta[list].as_array().map(Vec::len) {
            None | Some(0) => problems.push(format!("no `{list}`")),
            Some(n) if n > 5 => problems.push(format!("{n} `{list}` (crates.io takes 5 at most)")),
            Some(_) => {}
        }
    }
    match text("readme") {
        None => problems.push("no `readme`".to_owned()),
        Some(readme) if !krate.dir.join(readme).is_file() => {
            problems.push(format!("`readme = \"{readme}\"` does not exist"));
        }
        Some(_) => {}
    }
    if meta["metadata"]["docs"]["rs"].is_null() {
        problems.push("no `[package.metadata.docs.rs]` (which features docs.rs documents)".into());
    }
    problems
}

/// Removes cargo's extracted copies of this workspace's own packages from the source cache of
/// the temporary registry `cargo package` builds them from
/// (`$CARGO_HOME/registry/src/-<hash>/<name>-<version>`, never crates.io's
/// `index.crates.io-*`). Cargo extracts a registry package once per name and version and
/// reuses the directory after, so a package changed since the last run (same version 0.1.0)
/// would be verified against the sources of the earlier run, which fails on anything new.
fn forget_extracted_packages(crates: &[Crate]) {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        // The temporary registry of `cargo package` is a local one: its cache directory has no
        // host name, only `-<hash>`.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for krate in crates {
            let extracted = registry
                .path()
                .join(format!("{}-{}", krate.name, krate.version));
            if extracted.is_dir()
                && let Err(err) = std::fs::remove_dir_all(&extracted)
            {
                eprintln!(
                    "xtask package: warning: cannot remove the stale {}: {err}",
                    extracted.display()
                );
            }
        }
    }
}

/// Removes what earlier runs built of this workspace's packages in `target` (their
/// fingerprints and artifacts, for every profile), so that `cargo package` builds them anew.
fn forget_built_packages(target: &std::path::Path, crates: &[Crate]) {
    let Ok(profiles) = std::fs::read_dir(target) else {
        return;
    };
    let names: Vec<(String, String)> = crates
        .iter()
        .map(|k| {
            (
                format!("{}-", k.name),
                format!("{}-", k.name.replace('-', "_")),
            )
        })
        .collect();
    for profile in profiles.flatten() {
        for sub in [".fingerprint", "deps", "build"] {
            let Ok(entries) = std::fs::read_dir(profile.path().join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let ours = names.iter().any(|(dashed, snake)| {
                    file.starts_with(dashed.as_str())
                        || file.starts_with(snake.as_str())
                        || file.starts_with(&format!("lib{snake}"))
                });
                if ours {
                    let path = entry.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        }
    }
}

/// `cargo package --list` of one crate.
fn list(krate: &Crate) -> Result<Vec<String>> {
    let output = process::cargo()
        .args(["package", "--list", "--allow-dirty", "-p", &krate.name])
        .output()
        .map_err(|err| format!("cannot run `cargo package --list`: {err}"))?;
    if !output.status.success() {
        // cargo's own words, without the warnings before them.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr
            .find("error:")
            .map_or(stderr.trim(), |at| stderr[at..].trim());
        return Err(format!(
            "`cargo package --list -p {}` failed ({}): {error}",
            krate.name, output.status
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Files a package has no business holding: anything but the manifest, the lock file, the
/// readme, license texts and the source, test, example and benchmark directories; any file
/// over [`MAX_FILE_BYTES`]; a test, example or benchmark that uses one of the `unpublished`
/// crates.
fn content_problems(krate: &Crate, files: &[String], unpublished: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        let extra_target = ["tests/", "examples/", "benches/"]
            .iter()
            .any(|dir| file.starts_with(dir));
        if extra_target
            && file.ends_with(".rs")
            && let Ok(text) = std::fs::read_to_string(krate.dir.join(file))
            && let Some(used) = unpublished.iter().find(|name| uses_crate(&text, name))
        {
            let dir = file.split('/').next().unwrap_or_default();
            problems.push(format!(
                "`{file}` uses {used}, which is not published, so it cannot build from the \
                 package (leave it out: `exclude = [\"{dir}/\"]` in Cargo.toml)"
            ));
        }
        if !expected_in_package(file) {
            problems.push(format!(
                "`{file}` in the package (leave it out with `exclude` in Cargo.toml)"
            ));
        }
        // Files cargo writes itself (Cargo.toml, Cargo.lock, .cargo_vcs_info.json) are small or
        // not in the crate's directory.
        if let Ok(meta) = std::fs::metadata(krate.dir.join(file))
            && meta.len() > MAX_FILE_BYTES
        {
            problems.push(format!(
                "`{file}` is {} KiB (more than {} KiB)",
                meta.len() / 1024,
                MAX_FILE_BYTES / 1024
            ));
        }
    }
    problems
}

/// Whether Rust source `text` uses the crate `name` (`redis_harness::...`, `use redis_harness`).
fn uses_crate(text: &str, name: &str) -> bool {
    let ident = name.replace('-', "_");
    text.contains(&format!("{ident}::"))
        || text.contains(&format!("use {ident}"))
        || text.contains(&format!("extern crate {ident}"))
}

/// Whether a path of `cargo package --list` is one a package should hold.
fn expected_in_package(file: &str) -> bool {
    const FILES: [&str; 5] = [
        "Cargo.toml",
        "Cargo.toml.orig",
        "Cargo.lock",
        ".cargo_vcs_info.json",
        "README.md",
    ];
    const DIRS: [&str; 4] = ["src/", "tests/", "examples/", "benches/"];
    FILES.contains(&file)
        || file.starts_with("LICENSE")
        || DIRS.iter().any(|dir| file.starts_with(dir))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Crate, content_problems, expected_in_package, metadata_problems, split_workspace};

    #[test]
    fn publish_false_crates_are_left_out() {
        let metadata = json!({"packages": [
            {"name": "b", "version": "0.1.0", "publish": null, "manifest_path": "/w/b/Cargo.toml"},
            {"name": "xtask", "version": "0.0.0", "publish": [], "manifest_path": "/w/x/Cargo.toml"},
            {"name": "a", "version": "0.1.0", "publish": ["crates-io"], "manifest_path": "/w/a/Cargo.toml"},
        ]});
        let workspace = split_workspace(&metadata).unwrap();
        let names: Vec<&str> = workspace.publish.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(workspace.publish[0].dir, std::path::Path::new("/w/a"));
        assert_eq!(workspace.unpublished, ["xtask"]);
    }

    #[test]
    fn missing_metadata_is_named() {
        let dir = std::env::temp_dir();
        let krate = Crate {
            name: "c".into(),
            version: "0.1.0".into(),
            dir: dir.clone(),
            meta: json!({
                "description": "d", "license": "MIT", "keywords": ["a", "b", "c", "d", "e", "f"],
                "categories": [], "readme": "no-such-readme.md", "metadata": null,
            }),
        };
        assert_eq!(
            metadata_problems(&krate),
            [
                "6 `keywords` (crates.io takes 5 at most)",
                "no `categories`",
                "`readme = \"no-such-readme.md\"` does not exist",
                "no `[package.metadata.docs.rs]` (which features docs.rs documents)",
            ]
        );
        let complete = Crate {
            meta: json!({
                "description": "d", "license": "MIT", "keywords": ["a"], "categories": ["config"],
                "readme": ".", "metadata": {"docs": {"rs": {"all-features": true}}},
            }),
            ..krate
        };
        // `.` exists but is no file.
        assert_eq!(
            metadata_problems(&complete),
            ["`readme = \".\"` does not exist"]
        );
    }

    #[test]
    fn only_sources_manifests_and_readmes_belong_in_a_package() {
        for file in [
            "Cargo.toml",
            "Cargo.toml.orig",
            "Cargo.lock",
            ".cargo_vcs_info.json",
            "README.md",
            "LICENSE-MIT",
            "src/lib.rs",
            "tests/common/mod.rs",
        ] {
            assert!(expected_in_package(file), "{file}");
        }
        for file in ["Dockerfile", "fixtures/big.rdb", "notes.txt", "srcs/x.rs"] {
            assert!(!expected_in_package(file), "{file}");
        }
        let krate = Crate {
            name: "c".into(),
            version: "0".into(),
            dir: std::env::temp_dir(),
            meta: json!({}),
        };
        assert_eq!(
            content_problems(&krate, &["src/lib.rs".into()], &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_test_on_an_unpublished_crate_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-package-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::write(dir.join("tests/a.rs"), "use redis_harness::RedisServer;\n").unwrap();
        std::fs::write(dir.join("tests/b.rs"), "// needs no redis-harness\n").unwrap();
        let krate = Crate {
            name: "c".into(),
            version: "0".into(),
            dir: dir.clone(),
            meta: json!({}),
        };
        let files = ["tests/a.rs".to_owned(), "tests/b.rs".to_owned()];
        let problems = content_problems(&krate, &files, &["redis-harness".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("`tests/a.rs` uses redis-harness"));
        assert!(problems[0].contains(r#"exclude = ["tests/"]"#));
    }

    /// The help text names the crates this command packages today.
    #[test]
    fn the_help_names_every_crate_to_publish() {
        let crates = super::workspace().unwrap().publish;
        assert!(!crates.is_empty());
        let help = crate::cli::PACKAGE_ABOUT.replace('\n', " ");
        for krate in &crates {
            assert!(
                help.contains(&krate.name),
                "{} is not in the help",
                krate.name
            );
        }
        let named = help.matches("session").count();
        assert_eq!(named, crates.len(), "the help names a crate not published");
    }
}
