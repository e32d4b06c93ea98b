//! Records the commit the binary is built from (`always-online --version`,
//! `ao_build_info`): `AO_BUILD_COMMIT` if set (a build outside a git
//! checkout, such as a container build), else `git rev-parse`, else
//! `unknown`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    // The web demo is embedded from web/dist (rust-embed): a new build of
    // it must rebuild the binary, which cargo does not know since this
    // script names the files it watches. Before the demo was ever built,
    // web/ is watched so that web/dist appearing is seen (a missing path
    // would rerun this script, and rebuild the crate, on every build).
    let dist = std::path::Path::new("web/dist");
    let watched = if dist.exists() { "web/dist" } else { "web" };
    println!("cargo:rerun-if-changed={watched}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=AO_BUILD_COMMIT");
    let commit = std::env::var("AO_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            // Rebuild when the checkout moves to another commit.
            if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
                println!("cargo:rerun-if-changed={head}");
            }
            let reference = git(&["symbolic-ref", "-q", "HEAD"]);
            for name in reference.iter().map(String::as_str).chain(["packed-refs"]) {
                if let Some(path) = git(&["rev-parse", "--git-path", name]) {
                    if std::path::Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=AO_COMMIT={commit}");
}
