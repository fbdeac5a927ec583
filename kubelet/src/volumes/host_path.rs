//! hostPath volumes: a path of the node, checked (and made) by its `type` as upstream's
//! pkg/volume/hostpath `checkType` does before the pod's containers may mount it.

use std::{
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

/// Checks `path` against hostPath `type` (`""`: no check), creating it for `DirectoryOrCreate` (0755)
/// and `FileOrCreate` (0644) when it does not exist. The errors are upstream's.
pub fn check_type(path: &Path, kind: &str) -> Result<(), String> {
    let p = path.display();
    let meta = std::fs::metadata(path);
    let is = |f: &dyn Fn(&std::fs::FileType) -> bool| meta.as_ref().is_ok_and(|m| f(&m.file_type()));
    let exists = meta.is_ok();
    let fail = |what: &str| Err(format!("hostPath type check failed: {p} is not {what}"));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => std::fs::DirBuilder::new()
            .recursive(true)
            .mode_0755()
            .create(path)
            .map_err(|e| e.to_string()),
        "DirectoryOrCreate" | "Directory" => {
            if is(&|t| t.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "FileOrCreate" if !exists => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "FileOrCreate" | "File" => {
            if is(&|t| t.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "Socket" => {
            if is(&|t| t.is_socket()) {
                Ok(())
            } else {
                fail("a socket file")
            }
        }
        "CharDevice" => {
            if is(&|t| t.is_char_device()) {
                Ok(())
            } else {
                fail("a character device")
            }
        }
        "BlockDevice" => {
            if is(&|t| t.is_block_device()) {
                Ok(())
            } else {
                fail("a block device")
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

trait Mode0755 {
    fn mode_0755(&mut self) -> &mut Self;
}

impl Mode0755 for std::fs::DirBuilder {
    fn mode_0755(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, 0o755)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_made_as_upstream() {
        let dir = std::env::temp_dir().join(format!("skiff-hostpath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(check_type(&dir, "Directory").is_ok());
        assert!(check_type(&dir.join("nope"), "").is_ok(), "no type, no check");
        assert_eq!(
            check_type(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check_type(&dir.join("nope"), "Directory").is_err());
        assert!(check_type(&file, "File").is_ok());
        assert!(check_type(&dir, "File").unwrap_err().ends_with("is not a file"));
        assert!(
            check_type(&file, "Socket")
                .unwrap_err()
                .ends_with("is not a socket file")
        );
        assert!(check_type(&file, "CharDevice").is_err());
        assert!(check_type(Path::new("/dev/null"), "CharDevice").is_ok());
        assert_eq!(
            check_type(&file, "Bogus").unwrap_err(),
            "Bogus is an invalid volume type"
        );

        let made = dir.join("a/b");
        check_type(&made, "DirectoryOrCreate").unwrap();
        assert!(made.is_dir());
        let new_file = dir.join("new");
        check_type(&new_file, "FileOrCreate").unwrap();
        assert!(new_file.is_file());
        assert!(
            check_type(&file, "DirectoryOrCreate").is_err(),
            "exists but is a file"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
