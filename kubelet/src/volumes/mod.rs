//! A pod's volumes on the node and its containers' mounts of them: what upstream's volume manager
//! (pkg/kubelet/volumemanager) and the in-tree plugins (pkg/volume/emptydir, hostpath, configmap,
//! secret, downwardapi, projected) do for the volumes that need no storage system.
//!
//! Each volume of a pod is set up under the pod's volume directory, as upstream lays it out
//! (`<pod>/volumes/kubernetes.io~empty-dir/<name>`, `…~configmap/…`, `…~secret/…`): an emptyDir is a
//! directory (a tmpfs for `medium: Memory`, sized by `sizeLimit`), a hostPath is the node's path after
//! its type check ([`host_path`]), and configMap, secret, downwardAPI and projected volumes are
//! written by the [`atomic_writer`] (secret and projected ones on a tmpfs, never on disk). Setting
//! up again on every pod sync rewrites them only when their content changed, which is how updates to
//! a ConfigMap reach running pods. A container's `volumeMounts` become bind mounts
//! ([`container_mounts`]); on teardown everything mounted under the pod's directory is unmounted
//! ([`unmount_all`]) before the directory goes. With a pod `fsGroup`, volumes other than hostPath
//! belong to that group and are group-readable (upstream's `SetVolumeOwnership`).

pub mod atomic_writer;
pub mod host_path;
pub mod projection;

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
};

use serde_json::Value;

use crate::{envvars::Sources, runtime::VolumeMount};

/// A volume as set up on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVolume {
    /// Where it is on the node.
    pub path: PathBuf,
    /// Mounted read-only whatever the mount says (configMap, secret, downwardAPI, projected).
    pub read_only: bool,
    /// Its subPaths may be created (emptyDir, hostPath).
    pub writable_source: bool,
}

/// Whether `pod` has volumes whose content follows API objects (and so is refreshed by resyncs).
pub fn has_projected_volumes(pod: &Value) -> bool {
    pod["spec"]["volumes"].as_array().into_iter().flatten().any(|v| {
        ["configMap", "secret", "downwardAPI", "projected"]
            .iter()
            .any(|k| v[k].is_object())
    })
}

/// Sets up (or refreshes) every volume of `pod` under `dir`; the volumes by name, or upstream's
/// FailedMount message for the first that cannot be set up.
pub fn set_up(pod: &Value, dir: &Path, sources: &Sources) -> Result<HashMap<String, HostVolume>, String> {
    let mut volumes = HashMap::new();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or_default();
        let volume = set_up_one(v, name, pod, dir, sources)
            .map_err(|e| format!("MountVolume.SetUp failed for volume \"{name}\" : {e}"))?;
        volumes.insert(name.to_owned(), volume);
    }
    Ok(volumes)
}

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn set_up_one(
    v: &Value,
    name: &str,
    pod: &Value,
    dir: &Path,
    sources: &Sources,
) -> Result<HostVolume, String> {
    let plugin_dir = |plugin: &str| dir.join(format!("kubernetes.io~{plugin}")).join(name);
    if v["emptyDir"].is_object() {
        let path = plugin_dir("empty-dir");
        std::fs::create_dir_all(&path).map_err(io)?;
        if v["emptyDir"]["medium"] == "Memory" && !is_mount_point(&path) {
            mount_tmpfs(&path, memory_volume_size(pod, v, sources))?;
        }
        // Upstream's emptyDir is open to every user of the pod.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        if let Some(gid) = fs_group(pod) {
            set_ownership(&path, gid, false).map_err(io)?;
        }
        return Ok(HostVolume {
            path,
            read_only: false,
            writable_source: true,
        });
    }
    if v["hostPath"].is_object() {
        let path = PathBuf::from(v["hostPath"]["path"].as_str().unwrap_or_default());
        host_path::check_type(&path, v["hostPath"]["type"].as_str().unwrap_or_default())?;
        return Ok(HostVolume {
            path,
            read_only: false,
            writable_source: true,
        });
    }
    let plugin = if v["configMap"].is_object() {
        "configmap"
    } else if v["secret"].is_object() {
        "secret"
    } else if v["downwardAPI"].is_object() {
        "downward-api"
    } else if v["projected"].is_object() {
        "projected"
    } else {
        return Err("volume type not supported by this node".into());
    };
    let Some(payload) = projection::payload(v, pod, sources) else {
        return Err("volume type not supported by this node".into());
    };
    // Compute the payload before touching the node: a missing object leaves nothing behind.
    let mut payload = payload?;
    let fs_group = fs_group(pod);
    if fs_group.is_some() {
        // The modes ownership gives, in the payload itself, so an unchanged payload is not rewritten.
        for f in payload.values_mut() {
            f.mode |= RO_MASK;
        }
    }
    let path = plugin_dir(plugin);
    std::fs::create_dir_all(&path).map_err(io)?;
    // Secrets (and projections, which may hold them) never touch the disk.
    if matches!(plugin, "secret" | "projected") && !is_mount_point(&path) {
        mount_tmpfs(&path, None)?;
    }
    if atomic_writer::write(&path, &payload).map_err(io)?
        && let Some(gid) = fs_group
    {
        set_ownership(&path, gid, true).map_err(io)?;
    }
    Ok(HostVolume {
        path,
        read_only: true,
        writable_source: false,
    })
}

/// The size of memory emptyDir `volume` of `pod` (upstream `calculateEmptyDirMemorySize`): the
/// node's allocatable memory, or the pod's memory limit if smaller, or the volume's `sizeLimit` if
/// smaller still; None (the kernel's default) when nothing is known.
pub fn memory_volume_size(pod: &Value, volume: &Value, sources: &Sources) -> Option<u64> {
    let quantity = |v: &Value| match v {
        Value::String(s) => crate::runtime::parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    let mut size = sources
        .allocatable
        .get("memory")
        .and_then(|q| crate::runtime::parse_quantity(q));
    let smaller = |size: Option<f64>, limit: Option<f64>| match (size, limit) {
        (_, Some(l)) if l > 0.0 && size.is_none_or(|s| l <= s) => Some(l),
        _ => size,
    };
    size = smaller(size, pod_memory_limit(pod, &quantity));
    size = smaller(size, quantity(&volume["emptyDir"]["sizeLimit"]));
    size.map(|b| b.ceil() as u64)
}

/// The pod's memory limit as its cgroup gets it: the sum of its containers' limits (the largest init
/// container's if larger), only when every container declares one.
fn pod_memory_limit(pod: &Value, quantity: &dyn Fn(&Value) -> Option<f64>) -> Option<f64> {
    let limit = |c: &Value| quantity(&c["resources"]["limits"]["memory"]);
    let apps: Vec<Option<f64>> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(limit)
        .collect();
    let inits: Vec<Option<f64>> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(limit)
        .collect();
    if apps.is_empty() || apps.iter().chain(&inits).any(Option::is_none) {
        return None;
    }
    let sum: f64 = apps.iter().flatten().sum();
    Some(inits.iter().flatten().fold(sum, |m, l| m.max(*l)))
}

/// Group bits ownership adds to a read-only volume's files (upstream `roMask`).
const RO_MASK: u32 = 0o440;
/// … to a writable volume's files (`rwMask`).
const RW_MASK: u32 = 0o660;
/// … and to directories besides (`execMask`, and setgid so new files keep the group).
const DIR_MASK: u32 = 0o110 | 0o2000;

/// The pod's `securityContext.fsGroup`.
fn fs_group(pod: &Value) -> Option<u32> {
    pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .map(|g| g as u32)
}

/// Gives everything under `dir` to group `gid`, group-readable (and writable unless `read_only`),
/// directories setgid, as upstream's `SetVolumeOwnership`. Symlinks are re-owned, not followed.
pub fn set_ownership(dir: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let mask = if read_only { RO_MASK } else { RW_MASK };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = (meta.permissions().mode() & 0o7777) | mask;
        if meta.is_dir() {
            mode |= DIR_MASK;
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The bind mounts of `container`'s `volumeMounts` (`subPath`, `subPathExpr` expanded with `env`,
/// `readOnly`), or why one cannot be made.
pub fn container_mounts(
    container: &Value,
    volumes: &HashMap<String, HostVolume>,
    env: &[(String, String)],
) -> Result<Vec<VolumeMount>, String> {
    let mut mounts = Vec::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let volume = volumes.get(name).ok_or_else(|| {
            format!(
                "cannot find volume \"{name}\" to mount into container \"{}\"",
                container["name"].as_str().unwrap_or_default()
            )
        })?;
        let sub = match (m["subPath"].as_str(), m["subPathExpr"].as_str()) {
            (Some(s), _) if !s.is_empty() => s.to_owned(),
            (_, Some(e)) if !e.is_empty() => crate::envvars::expand_command(&[e.to_owned()], env).remove(0),
            _ => String::new(),
        };
        let mut source = volume.path.clone();
        if !sub.is_empty() {
            let p = Path::new(&sub);
            if p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
                return Err(format!("subPath \"{sub}\" must be a relative path without '..'"));
            }
            source = volume.path.join(p);
            if !source.exists() {
                if !volume.writable_source {
                    return Err(format!("subPath \"{sub}\" does not exist in volume \"{name}\""));
                }
                std::fs::create_dir_all(&source).map_err(io)?;
                let _ = std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o777));
            }
            // Resolve links (a configMap key is two) and make sure the result stays in the volume.
            let root = volume.path.canonicalize().map_err(io)?;
            source = source.canonicalize().map_err(io)?;
            if !source.starts_with(&root) {
                return Err(format!("subPath \"{sub}\" is not within volume \"{name}\""));
            }
        }
        mounts.push(VolumeMount {
            host_path: source.to_string_lossy().into_owned(),
            container_path: m["mountPath"].as_str().unwrap_or_default().to_owned(),
            read_only: volume.read_only || m["readOnly"].as_bool().unwrap_or(false),
        });
    }
    Ok(mounts)
}

/// The mount points of this mount namespace (/proc/self/mountinfo's fifth field, unescaped).
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| {
            PathBuf::from(
                p.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\134", "\\"),
            )
        })
        .collect()
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mount_points().contains(&path)
}

/// Mounts a tmpfs (of at most `size` bytes) on `path`.
pub fn mount_tmpfs(path: &Path, size: Option<u64>) -> Result<(), String> {
    let mut data = String::from("mode=0755");
    if let Some(size) = size {
        data.push_str(&format!(",size={size}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| format!("mounting a tmpfs on {}: {e}", path.display()))
}

/// Unmounts everything mounted at or under `dir`, deepest first (lazily: a mount a dying process
/// still holds goes once it is let go). Safe when nothing is mounted.
pub fn unmount_all(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else {
        return;
    };
    let mut under: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    under.dedup();
    for p in under {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %p.display(), error = %e, "unmounting a pod volume");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn mounts_follow_volume_mounts() {
        let dir = std::env::temp_dir().join(format!("skiff-vols-{}", std::process::id()));
        let pod = json!({ "spec": { "volumes": [
            { "name": "scratch", "emptyDir": {} },
            { "name": "cfg", "configMap": { "name": "cm" } }
        ] } });
        let sources = Sources {
            config_maps: [(
                "cm".to_owned(),
                crate::envvars::Fetched::Found(crate::envvars::ObjectData {
                    data: [("k".to_owned(), b"v".to_vec())].into(),
                    ..Default::default()
                }),
            )]
            .into(),
            ..Default::default()
        };
        let volumes = set_up(&pod, &dir, &sources).unwrap();
        let scratch = dir.join("kubernetes.io~empty-dir/scratch");
        assert_eq!(volumes["scratch"].path, scratch);
        assert_eq!(
            std::fs::read_to_string(dir.join("kubernetes.io~configmap/cfg/k")).unwrap(),
            "v"
        );
        let container = json!({ "name": "c", "volumeMounts": [
            { "name": "scratch", "mountPath": "/data" },
            { "name": "scratch", "mountPath": "/logs", "subPathExpr": "$(POD)/logs", "readOnly": true },
            { "name": "cfg", "mountPath": "/etc/k", "subPath": "k" }
        ] });
        let env = vec![("POD".to_owned(), "p1".to_owned())];
        let mounts = container_mounts(&container, &volumes, &env).unwrap();
        assert_eq!(mounts[0].host_path, scratch.to_string_lossy());
        assert!(!mounts[0].read_only);
        assert!(mounts[1].host_path.ends_with("scratch/p1/logs") && mounts[1].read_only);
        assert!(
            dir.join("kubernetes.io~empty-dir/scratch/p1/logs").is_dir(),
            "subPaths are made"
        );
        assert!(
            mounts[2].host_path.contains("/..20"),
            "a key resolves to its file: {}",
            mounts[2].host_path
        );
        assert!(mounts[2].read_only, "configMap volumes are read-only");
        let escape = json!({ "name": "c", "volumeMounts": [{ "name": "scratch", "mountPath": "/x", "subPath": "../.." }] });
        assert!(container_mounts(&escape, &volumes, &env).is_err());
        let unknown = json!({ "name": "c", "volumeMounts": [{ "name": "nope", "mountPath": "/x" }] });
        assert!(container_mounts(&unknown, &volumes, &env).is_err());

        let broken = json!({ "spec": { "volumes": [{ "name": "cfg", "configMap": { "name": "absent" } }] } });
        let mut missing = sources.clone();
        missing.config_maps.insert(
            "absent".into(),
            crate::envvars::Fetched::NotFound("configmap \"absent\" not found".into()),
        );
        assert_eq!(
            set_up(&broken, &dir, &missing).unwrap_err(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_volumes_are_sized_as_upstream() {
        let vol = |limit: Value| json!({ "emptyDir": { "medium": "Memory", "sizeLimit": limit } });
        let pod = |limits: Value| {
            json!({ "spec": { "containers": [
            { "name": "a", "resources": { "limits": limits.clone() } },
            { "name": "b", "resources": { "limits": limits } }] } })
        };
        let mut s = Sources::default();
        assert_eq!(memory_volume_size(&pod(json!({})), &vol(Value::Null), &s), None);
        s.allocatable.insert("memory".into(), "4Gi".into());
        assert_eq!(
            memory_volume_size(&pod(json!({})), &vol(Value::Null), &s),
            Some(4 << 30)
        );
        let limited = pod(json!({ "memory": "64Mi" }));
        assert_eq!(
            memory_volume_size(&limited, &vol(Value::Null), &s),
            Some(128 << 20),
            "two containers' limits"
        );
        assert_eq!(
            memory_volume_size(&limited, &vol(json!("16Mi")), &s),
            Some(16 << 20)
        );
        assert_eq!(
            memory_volume_size(&limited, &vol(json!("1Gi")), &s),
            Some(128 << 20),
            "never above the pod's"
        );
    }

    #[test]
    fn fs_group_owns_the_volumes() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("skiff-vols-fsgroup-{}", std::process::id()));
        let pod = json!({ "spec": { "securityContext": { "fsGroup": 2345 }, "volumes": [
            { "name": "scratch", "emptyDir": {} },
            { "name": "cfg", "configMap": { "name": "cm", "defaultMode": 0o400 } }
        ] } });
        let sources = Sources {
            config_maps: [(
                "cm".to_owned(),
                crate::envvars::Fetched::Found(crate::envvars::ObjectData {
                    data: [("k".to_owned(), b"v".to_vec())].into(),
                    ..Default::default()
                }),
            )]
            .into(),
            ..Default::default()
        };
        set_up(&pod, &dir, &sources).unwrap();
        let file = std::fs::metadata(dir.join("kubernetes.io~configmap/cfg/k")).unwrap();
        assert_eq!(
            (file.gid(), file.mode() & 0o7777),
            (2345, 0o440),
            "group-readable, as upstream"
        );
        let scratch = std::fs::metadata(dir.join("kubernetes.io~empty-dir/scratch")).unwrap();
        assert_eq!((scratch.gid(), scratch.mode() & 0o2000), (2345, 0o2000));
        let data = std::fs::read_link(dir.join("kubernetes.io~configmap/cfg/..data")).unwrap();
        set_up(&pod, &dir, &sources).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("kubernetes.io~configmap/cfg/..data")).unwrap(),
            data,
            "an unchanged payload is not rewritten"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
