//! Finding the node's helper binaries and making the sandbox's root filesystem: the role of the
//! kubelet's `--pod-infra-container-image` (upstream pulls `registry.k8s.io/pause`; skiff ships its own
//! pause, `pause/src/bin/skiff-pause.rs`, a static binary, so the sandbox needs no image at all).
//!
//! The kubelet looks for `skiff-pause` and `skiff-shim` next to its own executable (the skiff binary,
//! or for a test binary in `target/debug/deps`, one directory up), then on `PATH`; a flag can name
//! them instead. A pause binary that is not static is refused with a message saying how to build it.

use std::path::{Path, PathBuf};

use crate::runtime::RuntimeError;

/// The pause binary's file name.
pub const PAUSE_BINARY: &str = "skiff-pause";
/// The container monitor's file name.
pub const SHIM_BINARY: &str = "skiff-shim";
/// How the helpers are built, next to the skiff binary (they are not workspace members; see
/// pause/Cargo.toml).
pub const BUILD_HINT: &str = "cargo rustc --manifest-path pause/Cargo.toml --target-dir target --bin <name> -- -C target-feature=+crt-static";

/// Where a helper binary is: next to the running executable, one directory up, or on PATH.
pub fn find_helper(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent);
    let candidates = [
        beside.map(|d| d.join(name)),
        beside.and_then(Path::parent).map(|d| d.join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)))
        .find(|p| p.is_file())
}

/// Whether the ELF file at `path` is statically linked (it has no program interpreter).
pub fn is_static(path: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(path)?;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a 64-bit little-endian ELF file",
        )
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().map_err(|_| bad())?) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let kind = bytes.get(at..at + 4).ok_or_else(bad)?;
        // PT_INTERP: the file asks for a dynamic loader.
        if u32::from_le_bytes(kind.try_into().map_err(|_| bad())?) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes `dir` the sandbox root filesystem: `/pause` (a copy of `pause`, which must be static) and the
/// mount points runc needs. Read-only in the sandbox, so it is shared by every pod.
pub fn prepare_rootfs(pause: &Path, dir: &Path) -> Result<(), RuntimeError> {
    let err = |what: &str, e: std::io::Error| RuntimeError(format!("{what}: {e}"));
    match is_static(pause) {
        Ok(true) => {}
        Ok(false) => {
            return Err(RuntimeError(format!(
                "{} is dynamically linked and cannot run in the sandbox; build it with `{}`",
                pause.display(),
                BUILD_HINT.replace("<name>", PAUSE_BINARY)
            )));
        }
        Err(e) => return Err(err(&format!("reading {}", pause.display()), e)),
    }
    for sub in ["proc", "dev", "sys"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| err("creating the sandbox rootfs", e))?;
    }
    let target = dir.join("pause");
    let tmp = dir.join(".pause.tmp");
    std::fs::copy(pause, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &target))
        .map_err(|e| err(&format!("copying {} into the sandbox rootfs", pause.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_is_not_static_and_garbage_is_an_error() {
        // The test binary itself is dynamically linked (it needs libc.so).
        let exe = std::env::current_exe().unwrap();
        assert!(!is_static(&exe).unwrap());
        let dir = std::env::temp_dir().join(format!("skiff-pause-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk");
        std::fs::write(&junk, b"#!/bin/sh\n").unwrap();
        assert!(is_static(&junk).is_err());
        let e = prepare_rootfs(&exe, &dir.join("rootfs")).unwrap_err();
        assert!(
            e.0.contains("dynamically linked") && e.0.contains("crt-static"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
