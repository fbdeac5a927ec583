//! Upstream's atomic writer (pkg/volume/util/atomic_writer.go): how configMap, secret, downwardAPI and
//! projected volumes are written so a reader never sees half an update.
//!
//! The files live in a timestamped directory (`..2026_12_06_02_47_01.1234`); `..data` is a symlink to
//! it, and each top-level name the user sees is a symlink through `..data` (`key → ..data/key`). An
//! update writes a new timestamped directory, points `..data_tmp` at it and renames that over
//! `..data` (one atomic step), adds and removes the user-visible links, and removes the old directory.
//! Nothing is written when the payload equals what is there.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Component, Path},
};

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
/// The symlink renamed over [`DATA_DIR`].
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// Files by relative path (`key`, `dir/key`).
pub type Payload = BTreeMap<String, FileProjection>;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks a payload path as upstream's `validatePath`: relative, no `..` element, not starting `..`.
pub fn validate_path(path: &str) -> io::Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > 4096 {
        return Err(invalid(format!(
            "invalid path: must be less than or equal to 4096 characters: {path}"
        )));
    }
    if Path::new(path).is_absolute() {
        return Err(invalid(format!("invalid path: must be relative path: {path}")));
    }
    if Path::new(path).components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!("invalid path: must not contain '..': {path}")));
    }
    if path.starts_with("..") {
        return Err(invalid(format!("invalid path: must not start with '..': {path}")));
    }
    Ok(())
}

/// The top-level names of a payload (what gets a user-visible symlink).
fn top_level(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| p.split('/').find(|s| !s.is_empty()).map(str::to_owned))
        .collect()
}

/// Whether the directory `dir` holds exactly `payload` (same files, contents and modes).
fn holds(dir: &Path, payload: &Payload) -> bool {
    fn files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type()?.is_dir() {
                files(&e.path(), &format!("{name}/"), out)?;
            } else {
                out.push(name);
            }
        }
        Ok(())
    }
    let mut present = Vec::new();
    if files(dir, "", &mut present).is_err() || present.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(path, f)| {
        let p = dir.join(path);
        std::fs::read(&p).is_ok_and(|d| d == f.data)
            && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode)
    })
}

/// A new payload directory name, as upstream's `..<UTC time>.<random>`.
fn timestamp_dir_name() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_subsec_nanos();
    format!(
        "..{}.{}",
        now.format("%Y_%m_%d_%H_%M_%S"),
        (nanos ^ std::process::id().rotate_left(16)) % 1_000_000_000
    )
}

/// Writes `payload` into `target` atomically; returns whether anything changed.
pub fn write(target: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    std::fs::create_dir_all(target)?;
    let old_dir = std::fs::read_link(target.join(DATA_DIR)).ok();
    if let Some(old) = &old_dir
        && holds(&target.join(old), payload)
    {
        return Ok(false);
    }
    let old_visible: BTreeSet<String> = match &old_dir {
        Some(old) => {
            let mut names = BTreeSet::new();
            for e in std::fs::read_dir(target.join(old))? {
                names.insert(e?.file_name().to_string_lossy().into_owned());
            }
            names
        }
        None => BTreeSet::new(),
    };

    // The new payload in a new directory.
    let name = timestamp_dir_name();
    let ts_dir = target.join(&name);
    std::fs::create_dir(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    let written = (|| -> io::Result<()> {
        for (path, f) in payload {
            let file = ts_dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, &f.data)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(f.mode))?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&ts_dir);
        return Err(e);
    }

    // Swap: ..data_tmp → new dir, renamed over ..data.
    let tmp = target.join(DATA_DIR_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp)?;
    std::fs::rename(&tmp, target.join(DATA_DIR))?;

    // User-visible links: add the new names, remove the ones the payload no longer has.
    let new_visible = top_level(payload);
    for n in &new_visible {
        let link = target.join(n);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("{DATA_DIR}/{n}"), &link)?;
        }
    }
    for n in old_visible.difference(&new_visible) {
        let _ = std::fs::remove_file(target.join(n));
    }
    if let Some(old) = old_dir {
        let _ = std::fs::remove_dir_all(target.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn payloads_swap_atomically_through_data_links() {
        let dir = Dir(std::env::temp_dir().join(format!(
            "skiff-aw-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )));
        let target = dir.0.join("vol");
        let first = payload(&[("color", "blue", 0o644), ("nested/deep", "x", 0o400)]);
        assert!(write(&target, &first).unwrap());
        let data = std::fs::read_link(target.join(DATA_DIR)).unwrap();
        assert!(data.to_string_lossy().starts_with("..20"), "{data:?}");
        assert_eq!(
            std::fs::read_link(target.join("color")).unwrap(),
            Path::new("..data/color")
        );
        assert_eq!(std::fs::read_to_string(target.join("color")).unwrap(), "blue");
        assert_eq!(std::fs::read_to_string(target.join("nested/deep")).unwrap(), "x");
        let mode = std::fs::metadata(target.join("nested/deep"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);

        assert!(
            !write(&target, &first).unwrap(),
            "the same payload writes nothing"
        );
        assert_eq!(std::fs::read_link(target.join(DATA_DIR)).unwrap(), data);

        let second = payload(&[("color", "green", 0o644), ("size", "L", 0o644)]);
        assert!(write(&target, &second).unwrap());
        assert_eq!(std::fs::read_to_string(target.join("color")).unwrap(), "green");
        assert_eq!(std::fs::read_to_string(target.join("size")).unwrap(), "L");
        assert!(
            std::fs::symlink_metadata(target.join("nested")).is_err(),
            "gone names are unlinked"
        );
        assert!(
            !target.join(&data).exists(),
            "the old payload directory is removed"
        );
        let entries: BTreeSet<String> = std::fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            entries.len(),
            4,
            "..data, one timestamped dir, two links: {entries:?}"
        );
    }

    #[test]
    fn paths_are_validated() {
        assert!(validate_path("a/b").is_ok());
        assert!(validate_path("/etc/passwd").is_err());
        assert!(validate_path("a/../../b").is_err());
        assert!(validate_path("..data").is_err());
        let dir = std::env::temp_dir().join(format!("skiff-aw-bad-{}", std::process::id()));
        assert!(write(&dir, &payload(&[("../escape", "x", 0o644)])).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
