//! What the kubelet's root tests share: finding tools on PATH, and the static `skiff-pause` and
//! `skiff-shim` the real runtime needs, built once per test run.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The static pause and shim, built once per test run into their own target directory (the outer
/// cargo holds the shared one's lock while tests run).
pub fn helpers() -> &'static (PathBuf, PathBuf) {
    static HELPERS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pause/Cargo.toml");
        // target/debug/deps/<this test> → target/pause-build
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap().join("pause-build");
        for bin in ["skiff-pause", "skiff-shim"] {
            // The cargo running these tests (it says where it is), else the one on PATH.
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["rustc", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .args(["--bin", bin, "--", "-C", "target-feature=+crt-static"])
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("running cargo");
            assert!(status.success(), "building {bin}");
        }
        let dir = target.join("debug");
        (dir.join("skiff-pause"), dir.join("skiff-shim"))
    })
}
