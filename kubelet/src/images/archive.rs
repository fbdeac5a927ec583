//! Applying a layer tarball to a directory, with the OCI image spec's whiteouts (containerd's
//! `pkg/archive` `applyNaive` and its overlay converter):
//!
//! - `.wh.<name>` deletes `<name>` of the layers below; `.wh..wh..opq` makes its directory opaque
//!   (nothing of the layers below shows through). Other `.wh..wh.` entries (aufs bookkeeping) are
//!   skipped.
//! - [`Whiteouts::Overlay`] (a layer unpacked into a directory of its own, to be an overlay lower
//!   layer) writes them as overlayfs wants them: a 0/0 character device for a deleted name, the
//!   `trusted.overlay.opaque=y` xattr on an opaque directory.
//! - [`Whiteouts::Apply`] (layers applied one over the other into one directory) deletes for real.
//!
//! Paths are kept inside the destination: `..` components are refused and the tar crate's
//! `unpack_in` refuses to write through symlinks out of it.

use std::{
    collections::HashSet,
    io::{self, Read},
    path::{Component, Path, PathBuf},
};

use super::ImageError;

/// The prefix of a whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that makes its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The xattr overlayfs reads an opaque directory from.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// How whiteouts are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whiteouts {
    /// As overlayfs markers (the layer is a directory of its own).
    Overlay,
    /// By deleting what they hide (layers applied over each other).
    Apply,
}

/// A reader that hashes (sha256) and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    ctx: ring::digest::Context,
    len: u64,
}

impl<R: Read> Hashing<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }

    /// Reads what is left (a tar reader stops before trailing padding) and returns `sha256:<hex>`
    /// and the byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((format!("sha256:{}", hex(self.ctx.finish().as_ref())), self.len))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    )
}

/// `r`, gunzipped if it starts with gzip's magic number.
pub fn maybe_gunzip<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = io::BufReader::new(r);
    let head = io::BufRead::fill_buf(&mut r)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(io::Error::other("zstd-compressed layers are not supported"))
    } else {
        Ok(Box::new(r))
    }
}

/// The entry's path made relative and free of `.`; None if it climbs out (`..`).
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Applies the (uncompressed) layer tar read from `r` to `dest`.
pub fn apply_layer(r: impl Read, dest: &Path, whiteouts: Whiteouts) -> Result<(), ImageError> {
    let err = |what: &str, e: io::Error| {
        // The tar crate says what failed and keeps why in the source.
        let why = std::error::Error::source(&e)
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        ImageError::Layer(format!("{what}: {e}{why}"))
    };
    std::fs::create_dir_all(dest).map_err(|e| err("creating the layer directory", e))?;
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // What this layer wrote: an opaque marker met after them must not delete them (Apply).
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(|e| err("reading the layer", e))? {
        let mut entry = entry.map_err(|e| err("reading the layer", e))?;
        let raw = entry
            .path()
            .map_err(|e| err("reading an entry's path", e))?
            .into_owned();
        let Some(path) = clean(&raw) else {
            return Err(ImageError::Layer(format!(
                "entry {} climbs out of the layer",
                raw.display()
            )));
        };
        let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // The root itself.
        };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if file_name == OPAQUE_WHITEOUT {
            let dir = dest.join(&parent);
            match whiteouts {
                Whiteouts::Overlay => {
                    std::fs::create_dir_all(&dir).map_err(|e| err("creating an opaque directory", e))?;
                    rustix::fs::setxattr(&dir, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                        .map_err(|e| err("marking a directory opaque", e.into()))?;
                }
                Whiteouts::Apply => {
                    if let Ok(children) = std::fs::read_dir(&dir) {
                        for child in children.flatten() {
                            if !written.contains(&parent.join(child.file_name())) {
                                remove_any(&child.path())
                                    .map_err(|e| err("clearing an opaque directory", e))?;
                            }
                        }
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(".wh.") {
                continue; // aufs bookkeeping (.wh..wh.plnk and the like)
            }
            let target = dest.join(&parent).join(hidden);
            match whiteouts {
                Whiteouts::Overlay => {
                    std::fs::create_dir_all(dest.join(&parent))
                        .map_err(|e| err("creating a whiteout's directory", e))?;
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &target,
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                    .map_err(|e| err("writing a whiteout", e.into()))?;
                }
                Whiteouts::Apply => {
                    if target.symlink_metadata().is_ok() {
                        remove_any(&target).map_err(|e| err("applying a whiteout", e))?;
                    }
                }
            }
            continue;
        }
        // A non-directory replaces whatever had its name (a directory included), as upstream does.
        let target = dest.join(&path);
        if !entry.header().entry_type().is_dir()
            && let Ok(m) = target.symlink_metadata()
            && m.is_dir()
        {
            remove_any(&target).map_err(|e| err("replacing a directory", e))?;
        }
        entry
            .unpack_in(dest)
            .map_err(|e| err(&format!("unpacking {}", path.display()), e))?;
        if whiteouts == Whiteouts::Apply {
            written.insert(path);
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata()?.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer tar: (path, Some(contents)) is a file, (path, None) a directory.
    fn layer(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, contents) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match contents {
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, c.as_bytes()).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("skiff-archive-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn lower() -> Vec<u8> {
        layer(&[
            ("etc/", None),
            ("etc/a", Some("a")),
            ("etc/b", Some("b")),
            ("data/", None),
            ("data/old", Some("old")),
            ("top", Some("t")),
        ])
    }

    fn upper() -> Vec<u8> {
        layer(&[
            ("etc/.wh.a", Some("")),
            ("data/", None),
            ("data/new", Some("new")),
            ("data/.wh..wh..opq", Some("")),
            ("./top", Some("t2")),
            (".wh..wh.plnk", Some("")),
        ])
    }

    #[test]
    fn whiteouts_delete_when_layers_are_applied_over_each_other() {
        let d = tmp("apply");
        apply_layer(&lower()[..], &d, Whiteouts::Apply).unwrap();
        apply_layer(&upper()[..], &d, Whiteouts::Apply).unwrap();
        assert!(!d.join("etc/a").exists(), "whited out");
        assert_eq!(std::fs::read_to_string(d.join("etc/b")).unwrap(), "b");
        assert!(!d.join("data/old").exists(), "hidden by the opaque directory");
        assert_eq!(
            std::fs::read_to_string(d.join("data/new")).unwrap(),
            "new",
            "the layer's own file in an opaque directory stays"
        );
        assert_eq!(std::fs::read_to_string(d.join("top")).unwrap(), "t2");
        assert!(!d.join(".wh..wh.plnk").exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn whiteouts_become_overlay_markers_in_a_layer_of_its_own() {
        let d = tmp("overlay");
        match apply_layer(&upper()[..], &d, Whiteouts::Overlay) {
            Ok(()) => {}
            // mknod and trusted.* xattrs need root: nothing to check elsewhere.
            Err(e) if !is_root() => {
                eprintln!("skipped (not root): {e}");
                let _ = std::fs::remove_dir_all(&d);
                return;
            }
            Err(e) => panic!("{e}"),
        }
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let m = std::fs::symlink_metadata(d.join("etc/a")).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "a 0/0 character device"
        );
        let mut buf = [0u8; 4];
        let n = rustix::fs::getxattr(d.join("data"), OPAQUE_XATTR, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(d.join("data/new").exists() && !d.join("data/.wh..wh..opq").exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn entries_that_climb_out_are_refused_and_digests_hash_what_was_read() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // The builder refuses `..`; write the name into the header by hand.
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let evil = b.into_inner().unwrap();
        let d = tmp("evil");
        assert!(apply_layer(&evil[..], &d, Whiteouts::Apply).is_err());
        assert!(!d.parent().unwrap().join("escape").exists());
        let _ = std::fs::remove_dir_all(&d);

        let data = lower();
        let mut r = Hashing::new(&data[..]);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        assert_eq!(r.finish().unwrap(), (sha256(&data), data.len() as u64));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let mut out = Vec::new();
        maybe_gunzip(&gz.finish().unwrap()[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }
}
