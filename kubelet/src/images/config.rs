//! The image config (OCI image spec `config.json`: Entrypoint, Cmd, Env, WorkingDir, User) and how a
//! container's spec combines with it, exactly as the kubelet and containerd's CRI plugin do
//! (`WithProcessArgs`, which took Docker's rule; `WithEnv`; `WithUser`):
//!
//! - `command` replaces ENTRYPOINT and then CMD is ignored; `args` alone replace CMD (after the
//!   image's ENTRYPOINT); neither: ENTRYPOINT + CMD. Nothing at all is an error.
//! - env: the image's first, then the pod's, a pod variable replacing the image's of the same name
//!   in place.
//! - workingDir: the pod's, else the image's, else `/`.
//! - user: `runAsUser`/`runAsGroup` win; else the image's `User` (`uid`, `uid:gid`, `name`,
//!   `name:group`, names looked up in the image's /etc/passwd and /etc/group).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ImageError;
use crate::runtime::ContainerSpec;

/// The part of the image config a container runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `ENV`, `NAME=value` each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The digests of the uncompressed layers, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image config (`application/vnd.oci.image.config.v1+json`, which Docker's is too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `amd64`, `arm64`…
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// What containers run.
    #[serde(default)]
    pub config: RunConfig,
    /// The layers.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The argv a container runs: `command`/`args` over the image's ENTRYPOINT/CMD (containerd's
/// `WithProcessArgs`).
pub fn process_args(
    command: &[String],
    args: &[String],
    image: &RunConfig,
) -> Result<Vec<String>, ImageError> {
    let mut command = command.to_vec();
    let mut args = args.to_vec();
    if command.is_empty() {
        if args.is_empty() {
            args = image.cmd.clone().unwrap_or_default();
        }
        let entrypoint = image.entrypoint.clone().unwrap_or_default();
        // `ENTRYPOINT [""]` clears the entrypoint (Docker's rule).
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            command = entrypoint;
        }
    }
    if command.is_empty() && args.is_empty() {
        return Err(ImageError::Config("no command specified".into()));
    }
    command.extend(args);
    Ok(command)
}

/// The image's env with the pod's over it (a pod variable replaces the image's in place).
pub fn merge_env(image: &[String], pod: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in pod {
        match env.iter_mut().find(|(name, _)| name == k) {
            Some(existing) => existing.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// `spec` as it runs from an image with `config` whose files are at `rootfs`: command, env,
/// working directory and user resolved, so the OCI spec is written from it alone (`args` is left
/// empty: `command` is the whole argv).
pub fn apply(spec: &ContainerSpec, config: &ImageConfig, rootfs: &Path) -> Result<ContainerSpec, ImageError> {
    let image = &config.config;
    let mut out = spec.clone();
    out.command = process_args(&spec.command, &spec.args, image)?;
    out.args = Vec::new();
    out.env = merge_env(image.env.as_deref().unwrap_or_default(), &spec.env);
    if out.working_dir.is_none() {
        out.working_dir = image.working_dir.clone().filter(|w| !w.is_empty());
    }
    if out.security.run_as_user.is_none()
        && let Some(user) = image.user.as_deref().filter(|u| !u.is_empty())
    {
        let (uid, gid) = resolve_user(user, rootfs)?;
        out.security.run_as_user = Some(uid);
        if out.security.run_as_group.is_none() {
            out.security.run_as_group = Some(gid);
        }
    }
    Ok(out)
}

/// The uid and gid of an image's `User` (containerd's `WithUser`): numbers as they are, names from
/// the image's /etc/passwd and /etc/group; a user without a group gets its passwd group (0 if
/// unknown).
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), ImageError> {
    let read = |file: &str| std::fs::read_to_string(rootfs.join("etc").join(file)).unwrap_or_default();
    // name:x:uid:gid:… lines; field 2 is the id, 3 the passwd's group.
    let lookup = |text: &str, name: &str| -> Option<(u32, u32)> {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| {
                let id = f[2].parse().ok()?;
                Some((id, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
            })?
        })
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read("passwd");
    let (uid, passwd_gid) = match user_part.parse::<u32>() {
        Ok(uid) => {
            // A known uid keeps its passwd group.
            let gid = passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 4 && f[2] == user_part).then(|| f[3].parse().ok())?
            });
            (uid, gid.unwrap_or(0))
        }
        Err(_) => lookup(&passwd, user_part)
            .ok_or_else(|| ImageError::Config(format!("no user {user_part:?} in the image's /etc/passwd")))?,
    };
    let gid = match group_part {
        None => passwd_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&read("group"), g)
                .map(|(gid, _)| gid)
                .ok_or_else(|| ImageError::Config(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        RunConfig {
            entrypoint: entrypoint.map(v),
            cmd: cmd.map(v),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_combine_with_entrypoint_and_cmd_as_kubernetes_says() {
        let img = image(Some(&["/entry", "-e"]), Some(&["default"]));
        // Neither: ENTRYPOINT + CMD.
        assert_eq!(
            process_args(&[], &[], &img).unwrap(),
            v(&["/entry", "-e", "default"])
        );
        // args alone replace CMD.
        assert_eq!(
            process_args(&[], &v(&["x"]), &img).unwrap(),
            v(&["/entry", "-e", "x"])
        );
        // command replaces ENTRYPOINT and CMD is ignored.
        assert_eq!(process_args(&v(&["sh"]), &[], &img).unwrap(), v(&["sh"]));
        // Both: command + args.
        assert_eq!(
            process_args(&v(&["sh"]), &v(&["-c", "true"]), &img).unwrap(),
            v(&["sh", "-c", "true"])
        );
        // Only CMD in the image (busybox's ["sh"]).
        let busybox = image(None, Some(&["sh"]));
        assert_eq!(process_args(&[], &[], &busybox).unwrap(), v(&["sh"]));
        assert_eq!(
            process_args(&[], &v(&["echo", "hi"]), &busybox).unwrap(),
            v(&["echo", "hi"])
        );
        // ENTRYPOINT [""] clears the entrypoint.
        assert_eq!(
            process_args(&[], &[], &image(Some(&[""]), Some(&["top"]))).unwrap(),
            v(&["top"])
        );
        assert!(matches!(
            process_args(&[], &[], &RunConfig::default()),
            Err(ImageError::Config(_))
        ));
    }

    #[test]
    fn pod_env_overrides_the_images_in_place() {
        let env = merge_env(
            &v(&["PATH=/usr/bin:/bin", "LANG=C", "EMPTY"]),
            &[("LANG".into(), "en".into()), ("NEW".into(), "1".into())],
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("PATH", "/usr/bin:/bin"),
                ("LANG", "en"),
                ("EMPTY", ""),
                ("NEW", "1")
            ]
        );
    }

    #[test]
    fn apply_fills_working_dir_and_user_from_the_image() {
        let dir = std::env::temp_dir().join(format!("skiff-imgcfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("www", &dir).unwrap(), (33, 34));
        assert_eq!(resolve_user("www:staff", &dir).unwrap(), (33, 50));
        assert_eq!(resolve_user("1000", &dir).unwrap(), (1000, 0));
        assert_eq!(resolve_user("33", &dir).unwrap(), (33, 34));
        assert_eq!(resolve_user("1000:7", &dir).unwrap(), (1000, 7));
        assert!(resolve_user("nobody", &dir).is_err());
        let config = ImageConfig {
            config: RunConfig {
                user: Some("www".into()),
                working_dir: Some("/srv".into()),
                env: Some(v(&["A=1"])),
                cmd: Some(v(&["sh"])),
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = ContainerSpec {
            args: v(&["-c", "id"]),
            env: vec![("B".into(), "2".into())],
            ..Default::default()
        };
        let out = apply(&spec, &config, &dir).unwrap();
        assert_eq!(out.command, v(&["-c", "id"]));
        assert!(out.args.is_empty());
        assert_eq!(out.working_dir.as_deref(), Some("/srv"));
        assert_eq!(
            (out.security.run_as_user, out.security.run_as_group),
            (Some(33), Some(34))
        );
        assert_eq!(out.env.len(), 2);
        let mut own = spec.clone();
        own.working_dir = Some("/w".into());
        own.security.run_as_user = Some(5);
        let out = apply(&own, &config, &dir).unwrap();
        assert_eq!(
            (out.working_dir.as_deref(), out.security.run_as_user),
            (Some("/w"), Some(5))
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
