//! `skiff rollout status|history|undo|restart|pause|resume`, with kubectl's messages. Status reads
//! the workload's status the way kubectl's status viewers do (observedGeneration first, then updated,
//! old and available replicas); history and undo read a Deployment's ReplicaSets and their
//! `deployment.kubernetes.io/revision` annotations, or a DaemonSet's or StatefulSet's
//! ControllerRevisions (undo applies the revision's patch, as kubectl does); restart stamps the pod template with
//! `kubectl.kubernetes.io/restartedAt` (so any tool's restart looks the same to the controllers).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;

use super::{Ctx, api_error, modify::parse_duration, resource::ResourceType};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Watch a rollout until it completes.
    Status(RolloutArgs),
    /// The revisions of a Deployment, DaemonSet or StatefulSet.
    History(RolloutArgs),
    /// Roll back to the previous revision (or `--to-revision`).
    Undo(RolloutArgs),
    /// Replace every pod, one rollout step at a time.
    Restart(RolloutArgs),
    /// Stop a Deployment's rollout where it is.
    Pause(RolloutArgs),
    /// Let a paused Deployment roll out again.
    Resume(RolloutArgs),
}

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE/NAME` or `TYPE NAME`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Status: give up after this long (`0s` = never).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Status: return after printing the status once instead of waiting.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub watch: bool,
    /// Undo: the revision to go back to (0 = the previous one).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// History: show this revision's pod template.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

impl RolloutCommand {
    /// The verb's name and its flags.
    pub fn parts(&self) -> (&'static str, &RolloutArgs) {
        match self {
            RolloutCommand::Status(a) => ("status", a),
            RolloutCommand::History(a) => ("history", a),
            RolloutCommand::Undo(a) => ("undo", a),
            RolloutCommand::Restart(a) => ("restart", a),
            RolloutCommand::Pause(a) => ("pause", a),
            RolloutCommand::Resume(a) => ("resume", a),
        }
    }

    pub fn args(&self) -> &RolloutArgs {
        self.parts().1
    }
}

pub async fn run(ctx: &Ctx, command: RolloutCommand) -> anyhow::Result<()> {
    let (verb, args) = command.parts();
    let catalog = ctx.catalog().await?;
    for (t, names) in super::get::parse_targets(catalog, &args.resources)? {
        if !matches!(
            (t.group.as_str(), t.kind.as_str()),
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet")
        ) {
            bail!(
                "no {verb} is possible for {}: rollouts are for deployments, statefulsets and daemonsets",
                t.display()
            );
        }
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for name in names {
            let path = t.object_path(&ctx.namespace, &name);
            match verb {
                "status" => status(ctx, t, &path, &name, args).await?,
                "history" => history(ctx, t, &path, &name, args.revision).await?,
                "undo" => undo(ctx, t, &path, &name, args.to_revision).await?,
                "restart" => restart(ctx, t, &path, &name).await?,
                _ => pause(ctx, t, &path, &name, verb == "pause").await?,
            }
        }
    }
    Ok(())
}

async fn get(ctx: &Ctx, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path).body(Vec::new())?;
    ctx.client.request(request).await.map_err(api_error)
}

async fn patch(ctx: &Ctx, path: &str, content_type: &str, body: &Value) -> anyhow::Result<Value> {
    let request = http::Request::patch(format!("{path}?fieldManager=skiff"))
        .header(http::header::CONTENT_TYPE, content_type)
        .body(serde_json::to_vec(body)?)?;
    ctx.client.request(request).await.map_err(api_error)
}

/// The message kubectl's status viewer gives for `o` and whether the rollout is done.
pub fn status_message(kind: &str, o: &Value) -> anyhow::Result<(String, bool)> {
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let (spec, st) = (&o["spec"], &o["status"]);
    let observed = n(&o["metadata"]["generation"]) <= n(&st["observedGeneration"]);
    match kind {
        "Deployment" => {
            if !observed {
                return Ok((
                    "Waiting for deployment spec update to be observed...".into(),
                    false,
                ));
            }
            let progressing = st["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"));
            if progressing.is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded") {
                bail!("deployment \"{name}\" exceeded its progress deadline");
            }
            let (want, updated, total, available) = (
                n(&spec["replicas"]),
                n(&st["updatedReplicas"]),
                n(&st["replicas"]),
                n(&st["availableReplicas"]),
            );
            Ok(if !spec["replicas"].is_null() && updated < want {
                (
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {want} new replicas have been updated..."
                    ),
                    false,
                )
            } else if total > updated {
                (
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
                        total - updated
                    ),
                    false,
                )
            } else if available < updated {
                (
                    format!(
                        "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
                    ),
                    false,
                )
            } else {
                (format!("deployment \"{name}\" successfully rolled out"), true)
            })
        }
        "DaemonSet" => {
            if spec["updateStrategy"]["type"]
                .as_str()
                .is_some_and(|t| t != "RollingUpdate")
            {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if !observed {
                return Ok((
                    "Waiting for daemon set spec update to be observed...".into(),
                    false,
                ));
            }
            let (desired, updated, available) = (
                n(&st["desiredNumberScheduled"]),
                n(&st["updatedNumberScheduled"]),
                n(&st["numberAvailable"]),
            );
            Ok(if updated < desired {
                (
                    format!(
                        "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
                    ),
                    false,
                )
            } else if available < desired {
                (
                    format!(
                        "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available..."
                    ),
                    false,
                )
            } else {
                (format!("daemon set \"{name}\" successfully rolled out"), true)
            })
        }
        _ => {
            let strategy = &spec["updateStrategy"];
            if strategy["type"] != "RollingUpdate" {
                bail!("rollout status is only available for RollingUpdate strategy type");
            }
            if n(&st["observedGeneration"]) == 0 || !observed {
                return Ok((
                    "Waiting for statefulset spec update to be observed...".into(),
                    false,
                ));
            }
            let (want, ready) = (n(&spec["replicas"]), n(&st["readyReplicas"]));
            if !spec["replicas"].is_null() && ready < want {
                return Ok((format!("Waiting for {} pods to be ready...", want - ready), false));
            }
            let updated = n(&st["updatedReplicas"]);
            if strategy["rollingUpdate"].is_object() {
                let partition = &strategy["rollingUpdate"]["partition"];
                if !spec["replicas"].is_null() && !partition.is_null() && updated < want - n(partition) {
                    return Ok((
                        format!(
                            "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                            want - n(partition)
                        ),
                        false,
                    ));
                }
                return Ok((
                    format!("partitioned roll out complete: {updated} new pods have been updated..."),
                    true,
                ));
            }
            let (update, current) = (
                st["updateRevision"].as_str().unwrap_or_default(),
                st["currentRevision"].as_str().unwrap_or_default(),
            );
            Ok(if update != current {
                (
                    format!(
                        "waiting for statefulset rolling update to complete {} pods at revision {update}...",
                        n(&st["updatedReplicas"])
                    ),
                    false,
                )
            } else {
                (
                    format!(
                        "statefulset rolling update complete {} pods at revision {current}...",
                        n(&st["currentReplicas"])
                    ),
                    true,
                )
            })
        }
    }
}

async fn status(
    ctx: &Ctx,
    t: &ResourceType,
    path: &str,
    _name: &str,
    args: &RolloutArgs,
) -> anyhow::Result<()> {
    let timeout = parse_duration(&args.timeout)?;
    let deadline = (timeout > Duration::ZERO).then(|| Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let o = get(ctx, path).await?;
        let (message, done) = status_message(&t.kind, &o)?;
        if message != last {
            println!("{message}");
            last = message;
        }
        if done || !args.watch {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ReplicaSets a Deployment controls (its uid in their controller ownerReference).
pub async fn replica_sets(ctx: &Ctx, deployment: &Value) -> anyhow::Result<Vec<Value>> {
    let rs_type = ctx.catalog().await?.resolve("replicasets.apps")?;
    let ns = deployment["metadata"]["namespace"].as_str().unwrap_or("default");
    let uid = &deployment["metadata"]["uid"];
    Ok(ctx
        .list(rs_type, Some(ns), None, None)
        .await?
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid && r["controller"] == true))
        })
        .collect())
}

/// One revision of a workload: its number, pod template and change cause, and for a DaemonSet or
/// StatefulSet the patch of its ControllerRevision (what undo applies).
struct Revision {
    number: i64,
    template: Value,
    cause: Option<String>,
    patch: Option<Value>,
}

/// A workload's revisions, oldest first: a Deployment's ReplicaSets by their
/// `deployment.kubernetes.io/revision` annotation, a DaemonSet's or StatefulSet's
/// ControllerRevisions (those it controls) by their `revision`.
async fn revisions(ctx: &Ctx, t: &ResourceType, o: &Value) -> anyhow::Result<Vec<Revision>> {
    let cause = |v: &Value| {
        v["metadata"]["annotations"]["kubernetes.io/change-cause"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
    };
    let mut out: Vec<Revision> = if t.kind == "Deployment" {
        replica_sets(ctx, o)
            .await?
            .into_iter()
            .filter_map(|rs| {
                let number = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()?
                    .parse()
                    .ok()?;
                Some(Revision {
                    number,
                    // As the ReplicaSet has it (`rollout history` shows its pod-template-hash).
                    template: rs["spec"]["template"].clone(),
                    cause: cause(&rs),
                    patch: None,
                })
            })
            .collect()
    } else {
        let revisions = ctx.catalog().await?.resolve("controllerrevisions.apps")?;
        let ns = o["metadata"]["namespace"].as_str().unwrap_or("default");
        let uid = &o["metadata"]["uid"];
        ctx.list(revisions, Some(ns), None, None)
            .await?
            .into_iter()
            .filter(|r| {
                r["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|o| o["uid"] == *uid && o["controller"] == true))
            })
            .map(|r| {
                let mut template = r["data"]["spec"]["template"].clone();
                if let Some(t) = template.as_object_mut() {
                    t.remove("$patch");
                }
                Revision {
                    number: r["revision"].as_i64().unwrap_or(0),
                    template,
                    cause: cause(&r),
                    patch: Some(r["data"].clone()),
                }
            })
            .collect()
    };
    out.sort_by_key(|r| r.number);
    Ok(out)
}

fn only_deployments(t: &ResourceType, verb: &str) -> anyhow::Result<()> {
    if t.kind != "Deployment" {
        bail!(
            "rollout {verb} of {} is not supported by skiff yet (deployments only)",
            t.display()
        );
    }
    Ok(())
}

async fn history(ctx: &Ctx, t: &ResourceType, path: &str, name: &str, revision: i64) -> anyhow::Result<()> {
    let o = get(ctx, path).await?;
    let revisions = revisions(ctx, t, &o).await?;
    // kubectl prints `TYPE/NAME <with revision #N>` and then what the history viewer gave.
    let with = if revision > 0 {
        format!("with revision #{revision}")
    } else {
        String::new()
    };
    if revisions.is_empty() {
        println!("{}/{name} {with}\nNo rollout history found.", t.display());
        return Ok(());
    }
    if revision > 0 {
        let r = revisions
            .iter()
            .find(|r| r.number == revision)
            .context("unable to find the specified revision")?;
        println!("{}/{name} {with}", t.display());
        println!("{}", super::describe::pod_template_text(&r.template));
        return Ok(());
    }
    println!("{}/{name} ", t.display());
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for r in &revisions {
        rows.push(vec![
            r.number.to_string(),
            r.cause.clone().unwrap_or_else(|| "<none>".into()),
        ]);
    }
    // kubectl's history table pads by 2, not the 3 of `get`.
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0) + 2;
    for row in rows {
        println!("{:<width$}{}", row[0], row[1]);
    }
    println!();
    Ok(())
}

async fn undo(ctx: &Ctx, t: &ResourceType, path: &str, name: &str, to_revision: i64) -> anyhow::Result<()> {
    let o = get(ctx, path).await?;
    if t.kind != "Deployment" {
        return undo_to_controller_revision(ctx, t, path, name, &o, to_revision).await;
    }
    if o["spec"]["paused"] == true {
        bail!(
            "you cannot rollback a paused deployment; resume it first with 'skiff rollout resume {}/{name}' and try again",
            t.display()
        );
    }
    let revisions = revisions(ctx, t, &o).await?;
    let current: i64 = o["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let target = if to_revision > 0 {
        revisions
            .iter()
            .find(|r| r.number == to_revision)
            .with_context(|| format!("unable to find specified revision {to_revision} in history"))?
    } else {
        revisions
            .iter()
            .rev()
            .find(|r| r.number < current)
            .with_context(|| format!("no rollout history found for deployment \"{name}\""))?
    };
    // The ReplicaSet's template less its pod-template-hash is the Deployment's.
    let mut template = target.template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    if template == o["spec"]["template"] {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {})",
            t.display(),
            target.number
        );
        return Ok(());
    }
    let ops = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": o["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    patch(ctx, path, "application/json-patch+json", &ops).await?;
    println!("{}/{name} rolled back", t.display());
    Ok(())
}

/// kubectl's DaemonSet and StatefulSet rollbackers: the revision asked for (the one before the
/// newest when none is), skipped when the template already matches it, else its patch applied.
async fn undo_to_controller_revision(
    ctx: &Ctx,
    t: &ResourceType,
    path: &str,
    name: &str,
    o: &Value,
    to_revision: i64,
) -> anyhow::Result<()> {
    let not_found = || anyhow::anyhow!("unable to find specified revision {to_revision} in history");
    if to_revision < 0 {
        return Err(not_found());
    }
    let revisions = revisions(ctx, t, o).await?;
    let target = match to_revision {
        0 if revisions.len() <= 1 => return Err(not_found()),
        0 => &revisions[revisions.len() - 2],
        n => revisions.iter().find(|r| r.number == n).ok_or_else(not_found)?,
    };
    if target.template == o["spec"]["template"] {
        println!(
            "{}/{name} skipped rollback (current template already matches revision {to_revision})",
            t.display()
        );
        return Ok(());
    }
    let patch_body = target.patch.clone().unwrap_or_default();
    patch(ctx, path, "application/strategic-merge-patch+json", &patch_body)
        .await
        .map_err(|e| anyhow::anyhow!("failed restoring revision {}: {e}", target.number))?;
    println!("{}/{name} rolled back", t.display());
    Ok(())
}

async fn restart(ctx: &Ctx, t: &ResourceType, path: &str, name: &str) -> anyhow::Result<()> {
    let o = get(ctx, path).await?;
    if o["spec"]["paused"] == true {
        bail!(
            "can't restart paused {} (run rollout resume first)",
            t.kind.to_lowercase()
        );
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    }}}}});
    patch(ctx, path, "application/strategic-merge-patch+json", &body).await?;
    println!("{}/{name} restarted", t.display());
    Ok(())
}

async fn pause(ctx: &Ctx, t: &ResourceType, path: &str, name: &str, paused: bool) -> anyhow::Result<()> {
    only_deployments(t, if paused { "pause" } else { "resume" })?;
    let o = get(ctx, path).await?;
    if (o["spec"]["paused"] == true) == paused {
        // kubectl names the type by its plural here: `deployments.apps "web" is already paused`.
        let state = if paused {
            "is already paused"
        } else {
            "is not paused"
        };
        bail!("{}.{} \"{name}\" {state}", t.plural, t.group);
    }
    patch(
        ctx,
        path,
        "application/merge-patch+json",
        &serde_json::json!({"spec": {"paused": paused}}),
    )
    .await?;
    println!(
        "{}/{name} {}",
        t.display(),
        if paused { "paused" } else { "resumed" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_status_reads_as_kubectls() {
        let d = |generation: i64, observed: i64, want: i64, updated: i64, total: i64, available: i64| {
            serde_json::json!({
                "metadata": {"name": "web", "generation": generation},
                "spec": {"replicas": want},
                "status": {"observedGeneration": observed, "updatedReplicas": updated,
                           "replicas": total, "availableReplicas": available}
            })
        };
        let msg = |o: &Value| status_message("Deployment", o).unwrap();
        assert_eq!(
            msg(&d(2, 1, 3, 3, 3, 3)).0,
            "Waiting for deployment spec update to be observed..."
        );
        assert_eq!(
            msg(&d(2, 2, 3, 1, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        assert_eq!(
            msg(&d(2, 2, 3, 3, 4, 3)).0,
            "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination..."
        );
        assert_eq!(
            msg(&d(2, 2, 3, 3, 3, 2)).0,
            "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available..."
        );
        assert_eq!(
            msg(&d(2, 2, 3, 3, 3, 3)),
            ("deployment \"web\" successfully rolled out".into(), true)
        );
        let mut stuck = d(2, 2, 3, 1, 3, 1);
        stuck["status"]["conditions"] =
            serde_json::json!([{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            status_message("Deployment", &stuck).unwrap_err().to_string(),
            "deployment \"web\" exceeded its progress deadline"
        );
    }

    #[test]
    fn statefulset_and_daemonset_status() {
        let sts = serde_json::json!({
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "readyReplicas": 2, "currentReplicas": 2,
                       "updateRevision": "db-1", "currentRevision": "db-1"}
        });
        assert_eq!(
            status_message("StatefulSet", &sts).unwrap(),
            (
                "statefulset rolling update complete 2 pods at revision db-1...".into(),
                true
            )
        );
        let partitioned = serde_json::json!({
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}},
            "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1}
        });
        assert_eq!(
            status_message("StatefulSet", &partitioned).unwrap(),
            (
                "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...".into(),
                false
            )
        );
        let ds = serde_json::json!({
            "metadata": {"name": "agent", "generation": 1},
            "spec": {"updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                       "updatedNumberScheduled": 2, "numberAvailable": 1}
        });
        assert_eq!(
            status_message("DaemonSet", &ds).unwrap().0,
            "Waiting for daemon set \"agent\" rollout to finish: 1 of 2 updated pods are available..."
        );
    }
}
