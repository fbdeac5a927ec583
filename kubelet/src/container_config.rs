//! What a pod sync does on a node that runs real containers between planning and starting them:
//! set up the pod's volumes (upstream's volume manager, `WaitForAttachAndMount`) and turn each
//! container of the plan into what the runtime runs (`generateContainerConfig` in
//! pkg/kubelet/kuberuntime: the environment from every source, `$(VAR)` expanded in command and
//! args, the volume mounts).
//!
//! Failures are reported the way upstream reports them: a volume that cannot be set up keeps every
//! container from starting (the pod stays Pending, its containers `ContainerCreating`, and a
//! FailedMount warning is logged); a container whose env or mounts cannot be made waits with reason
//! `CreateContainerConfigError` and the error as its message, while its siblings start (an init
//! container holds back everything after it). Both are also told as events (`FailedMount`,
//! `Failed`), as are envFrom keys skipped for invalid names (`InvalidEnvironmentVariableNames`).

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    envvars::{self, Sources},
    pod_workers::NodeContext,
    runtime::ContainerSpec,
    volumes,
};

/// The containers a sync starts, ready for the runtime, and what kept others from starting.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The containers to start, in order, with env, command, args and mounts resolved.
    pub start: Vec<ContainerSpec>,
    /// Containers that cannot start: name and message (`CreateContainerConfigError`).
    pub config_errors: Vec<(String, String)>,
    /// Why the pod's volumes could not be set up (nothing starts then).
    pub mount_error: Option<String>,
}

/// Prepares `start` (from the plan) for `pod` of `node`, whose IP is `pod_ip`, with volumes under
/// `volume_dir`.
pub async fn prepare(
    node: &NodeContext,
    pod: &Value,
    pod_ip: &str,
    volume_dir: &Path,
    start: Vec<ContainerSpec>,
) -> Prepared {
    let sources = Sources::fetch(&node.client, pod, &node.node, pod_ip, &node.host_ip).await;
    let (pod_copy, dir, src) = (pod.clone(), volume_dir.to_path_buf(), sources.clone());
    let set_up = tokio::task::spawn_blocking(move || volumes::set_up(&pod_copy, &dir, &src))
        .await
        .unwrap_or_else(|e| Err(format!("setting up volumes: {e}")));
    let pod_volumes = match set_up {
        Ok(v) => v,
        Err(e) => {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            tracing::warn!(pod = %name, reason = "FailedMount", "{e}");
            node.events.warning(pod, None, "FailedMount", "Mount", e.clone());
            return Prepared {
                mount_error: Some(e),
                ..Default::default()
            };
        }
    };
    let mut prepared = Prepared::default();
    for mut spec in start {
        let Some(c) = envvars::find_container(pod, &spec.name) else {
            continue;
        };
        let made = envvars::make_environment(pod, c, &sources).and_then(|(env, invalid)| {
            for note in invalid {
                node.events.warning(
                    pod,
                    Some(&spec.name),
                    "InvalidEnvironmentVariableNames",
                    "Create",
                    note,
                );
            }
            let mounts = volumes::container_mounts(c, &pod_volumes, &env)?;
            Ok((env, mounts))
        });
        match made {
            Ok((env, mounts)) => {
                spec.command = envvars::expand_command(&spec.command, &env);
                spec.args = envvars::expand_command(&spec.args, &env);
                spec.env = env;
                spec.mounts = mounts;
                prepared.start.push(spec);
            }
            Err(e) => {
                node.events
                    .warning(pod, Some(&spec.name), "Failed", "Create", format!("Error: {e}"));
                let init = spec.init;
                prepared.config_errors.push((spec.name, e));
                if init {
                    break; // Nothing after an init container that cannot start.
                }
            }
        }
    }
    prepared
}

/// Marks the containers that could not be configured as waiting with `CreateContainerConfigError` in
/// `status` (as computed by [`crate::status::pod_status`]).
pub fn apply_to_status(prepared: &Prepared, status: &mut Value) {
    for field in ["initContainerStatuses", "containerStatuses"] {
        for entry in status[field].as_array_mut().into_iter().flatten() {
            let Some((_, message)) = prepared
                .config_errors
                .iter()
                .find(|(n, _)| entry["name"] == n.as_str())
            else {
                continue;
            };
            if entry["state"]["waiting"].is_object() {
                entry["state"] =
                    json!({ "waiting": { "reason": "CreateContainerConfigError", "message": message } });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_show_as_waiting_reasons() {
        let prepared = Prepared {
            config_errors: vec![("app".into(), "configmap \"x\" not found".into())],
            ..Default::default()
        };
        let mut status = json!({ "containerStatuses": [
            { "name": "app", "state": { "waiting": { "reason": "ContainerCreating" } } },
            { "name": "other", "state": { "waiting": { "reason": "ContainerCreating" } } }
        ] });
        apply_to_status(&prepared, &mut status);
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"],
            json!({ "reason": "CreateContainerConfigError", "message": "configmap \"x\" not found" })
        );
        assert_eq!(
            status["containerStatuses"][1]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
    }
}
