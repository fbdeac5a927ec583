//! A container's root filesystem as an overlay mount (containerd's overlayfs snapshotter): the
//! image's unpacked layers read-only below (`lowerdir`, top layer first), the container's own
//! `upper/` and `work/` above, mounted on `rootfs/` of its bundle. The container's writes go to its
//! upper directory and vanish with it.

use std::path::{Path, PathBuf};

use super::ImageError;

/// Mounts the overlay of `lowers` (bottom first) with `upper`/`work` on `target`.
pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), ImageError> {
    let err = |what: &str, e: std::io::Error| ImageError::Overlay(format!("{what}: {e}"));
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(|e| err("creating the container's overlay directories", e))?;
    }
    let lower: Vec<String> = lowers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    let data = std::ffi::CString::new(data).map_err(|e| ImageError::Overlay(e.to_string()))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        data.as_c_str(),
    )
    .map_err(|e| {
        err(
            &format!("mounting the container's root filesystem on {}", target.display()),
            e.into(),
        )
    })
}

/// Unmounts `target` if something is mounted there (lazily if it is busy).
pub fn unmount(target: &Path) -> Result<(), ImageError> {
    if !mounts_under(target).iter().any(|m| m == target) {
        return Ok(());
    }
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty())
        .or_else(|_| rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH))
        .map_err(|e| {
            ImageError::Overlay(format!(
                "unmounting {}: {}",
                target.display(),
                std::io::Error::from(e)
            ))
        })
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(oct) = std::str::from_utf8(&bytes[i + 1..i + 4])
            && let Ok(n) = u8::from_str_radix(oct, 8)
        {
            out.push(n);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or below `dir` (a pod's or container's directory before it is removed).
pub fn unmount_under(dir: &Path) -> Result<(), ImageError> {
    for m in mounts_under(dir) {
        unmount(&m)?;
    }
    Ok(())
}

/// Whether overlay mounts work with directories in `dir`: mounts a tiny one and removes it. The error
/// says why not (no overlay module, a filesystem overlayfs cannot take as upper layer, no privilege).
pub fn check(dir: &Path) -> Result<(), ImageError> {
    let probe = dir.join(format!(".overlay-check-{}", std::process::id()));
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| probe.join(d));
    let result = std::fs::create_dir_all(&lower)
        .map_err(|e| ImageError::Overlay(format!("creating {}: {e}", lower.display())))
        .and_then(|()| std::fs::write(lower.join("f"), b"x").map_err(|e| ImageError::Overlay(e.to_string())))
        .and_then(|()| mount(std::slice::from_ref(&lower), &upper, &work, &merged))
        .and_then(|()| {
            let seen = merged.join("f").exists();
            unmount(&merged)?;
            match seen {
                true => Ok(()),
                false => Err(ImageError::Overlay(
                    "the overlay does not show its lower layer".into(),
                )),
            }
        });
    let _ = std::fs::remove_dir_all(&probe);
    result.map_err(|e| {
        ImageError::Overlay(format!(
            "overlayfs does not work under {} ({e}); the image store needs it: put the data dir on a \
             filesystem overlayfs takes as upper layer (ext4, xfs, tmpfs) and load the overlay module",
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/end\"), r"/end\");
        assert!(mounts_under(Path::new("/no/such/dir/skiff")).is_empty());
    }
}
