//! The pod status the kubelet reports: upstream's `generateAPIPodStatus` (pkg/kubelet/kubelet_pods.go)
//! and the status manager's rule of writing only what changed (pkg/kubelet/status).
//!
//! [`pod_status`] is pure: the pod as stored, what the runtime runs for it, and the node's address in;
//! the whole `status` out. Conditions keep their `lastTransitionTime` while their status holds, the
//! start time is set once, and the caller writes the result through `pods/status` only when it
//! differs from what is stored.

use serde_json::{Value, json};

use crate::runtime::{Container, ContainerState, Sandbox};

/// The status for `pod` given its sandbox and containers (as the runtime reports them).
pub fn pod_status(
    pod: &Value,
    sandbox: Option<&Sandbox>,
    containers: &[Container],
    host_ip: &str,
    now: &str,
) -> Value {
    let old = &pod["status"];
    let find = |name: &str| containers.iter().find(|c| c.name == name);
    let names = |field: &str| -> Vec<(String, String)> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_owned(),
                    c["image"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let (init, app) = (names("initContainers"), names("containers"));
    let init_done = init.iter().all(|(n, _)| {
        matches!(
            find(n).map(|c| &c.state),
            Some(ContainerState::Exited { exit_code: 0, .. })
        )
    });
    let running = |n: &str| matches!(find(n).map(|c| &c.state), Some(ContainerState::Running { .. }));
    let all_running = !app.is_empty() && app.iter().all(|(n, _)| running(n));
    let phase = pod_phase(pod, containers);
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let not_ready = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };

    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let meta = &pod["metadata"];
    let pod_ref = format!(
        "{}_{}({})",
        meta["name"].as_str().unwrap_or_default(),
        meta["namespace"].as_str().unwrap_or("default"),
        meta["uid"].as_str().unwrap_or_default()
    );
    let entry = |(n, image): &(String, String), init: bool| {
        let container = find(n);
        let backing_off = container.is_some_and(|c| will_restart(policy, init, &c.state));
        let mut status = container_status(n, image, container, init);
        if backing_off && let Some(c) = container {
            // Exited and to be started again: waiting in back-off, the run that ended as lastState.
            let delay =
                crate::pod_workers::restart_backoff(crate::pod_workers::BACKOFF_BASE, c.restart_count);
            status["lastState"] = status["state"].clone();
            status["state"] = json!({ "waiting": { "reason": "CrashLoopBackOff",
                "message": format!("back-off {} restarting failed container={n} pod={pod_ref}", go_duration(delay)) } });
        }
        status
    };
    let init_statuses: Vec<Value> = init.iter().map(|c| entry(c, true)).collect();
    let statuses: Vec<Value> = app.iter().map(|c| entry(c, false)).collect();

    let cond = |kind: &str, ok: bool, reason: Option<&str>| condition(old, kind, ok, reason, now);
    let mut conditions = vec![
        cond("PodReadyToStartContainers", sandbox.is_some(), None),
        cond(
            "Initialized",
            init_done,
            (!init_done).then_some("ContainersNotInitialized"),
        ),
        cond("Ready", all_running, (!all_running).then_some(not_ready)),
        cond(
            "ContainersReady",
            all_running,
            (!all_running).then_some(not_ready),
        ),
        cond("PodScheduled", true, None),
    ];
    // Keep the scheduler's PodScheduled as it wrote it (its transition time).
    if let Some(scheduled) = old["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
    {
        conditions[4] = scheduled.clone();
    }
    // Conditions others own (readiness gates, DisruptionTarget…) stay: a merge patch replaces the list.
    let ours = |t: &Value| {
        [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        .iter()
        .any(|k| t == k)
    };
    conditions.extend(
        old["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| !ours(&c["type"]))
            .cloned(),
    );

    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{ "ip": host_ip }],
        "startTime": old["startTime"].as_str().unwrap_or(now),
        "containerStatuses": statuses,
        "qosClass": qos_class(pod),
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(sandbox) = sandbox {
        // A pod on the host network has the node's address.
        let ip = match pod["spec"]["hostNetwork"].as_bool() {
            Some(true) => host_ip,
            _ => sandbox.ip.as_str(),
        };
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    status
}

/// The pod's phase from its containers' states and its restart policy: upstream's `getPhase`
/// (pkg/kubelet/kubelet_pods.go), for containers that are not restarted yet (an exited container of
/// an `Always` pod counts as restarting, so the pod stays Running).
pub fn pod_phase(pod: &Value, containers: &[Container]) -> &'static str {
    let find = |name: &str| containers.iter().find(|c| c.name == name).map(|c| &c.state);
    let restart_policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let names = |field: &str| -> Vec<&str> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect()
    };
    let (mut pending_init, mut failed_init) = (0, 0);
    for name in names("initContainers") {
        match find(name) {
            Some(ContainerState::Exited { exit_code, .. }) => failed_init += usize::from(*exit_code != 0),
            _ => pending_init += 1,
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for name in names("containers") {
        match find(name) {
            Some(ContainerState::Running { .. }) => running += 1,
            Some(ContainerState::Exited { exit_code, .. }) => {
                stopped += 1;
                succeeded += usize::from(*exit_code == 0);
            }
            // Not created yet: its status says Waiting (ContainerCreating).
            None => waiting += 1,
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    match (running, stopped) {
        (r, _) if r > 0 => "Running",
        (0, s) if s > 0 => match restart_policy {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        },
        _ => "Pending",
    }
}

/// Whether a container in `state` is to be started again under `policy` (an init container only
/// when it failed).
pub fn will_restart(policy: &str, init: bool, state: &ContainerState) -> bool {
    let ContainerState::Exited { exit_code, .. } = state else {
        return false;
    };
    match (policy, init) {
        ("Never", _) => false,
        (_, true) | ("OnFailure", false) => *exit_code != 0,
        _ => true,
    }
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`), as upstream's back-off messages show it.
fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{}s", s / 60, s % 60)
    }
}

/// One `containerStatuses` entry (upstream's `convertToAPIContainerStatuses`).
fn container_status(name: &str, image: &str, container: Option<&Container>, init: bool) -> Value {
    let Some(c) = container else {
        let reason = if init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        return json!({ "name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
                       "started": false, "state": { "waiting": { "reason": reason } } });
    };
    let (state, ready, started) = match &c.state {
        ContainerState::Running { started_at } => {
            (json!({ "running": { "startedAt": started_at } }), !init, true)
        }
        ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => (
            json!({ "terminated": { "exitCode": exit_code, "reason": reason, "startedAt": started_at,
                                    "finishedAt": finished_at, "containerID": c.id } }),
            init && *exit_code == 0,
            false,
        ),
    };
    let last_state = match &c.last_state {
        Some(ContainerState::Exited {
            exit_code,
            reason,
            started_at,
            finished_at,
        }) => json!({ "terminated": { "exitCode": exit_code, "reason": reason, "startedAt": started_at,
                                       "finishedAt": finished_at } }),
        _ => json!({}),
    };
    json!({
        "name": name, "image": image, "imageID": format!("{image}@fake"), "containerID": c.id,
        "ready": ready, "started": started, "restartCount": c.restart_count, "state": state, "lastState": last_state,
    })
}

/// A condition, keeping the stored one's transition time while its status holds.
pub fn condition(old: &Value, kind: &str, ok: bool, reason: Option<&str>, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = old["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind));
    let since = previous
        .filter(|p| p["status"] == status)
        .and_then(|p| p["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let mut c = json!({ "type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since });
    if let Some(reason) = reason {
        c["reason"] = json!(reason);
    }
    c
}

/// The pod's QoS class (upstream's `GetPodQOS`): Guaranteed when every container limits CPU and memory
/// and requests what it limits, BestEffort when none requests or limits anything, else Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .collect();
    let quantity = |c: &Value, kind: &str, res: &str| {
        c["resources"][kind][res]
            .as_str()
            .map(str::to_owned)
            .or_else(|| c["resources"][kind][res].as_i64().map(|n| n.to_string()))
    };
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| c["resources"][k].as_object().is_some_and(|m| !m.is_empty()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = quantity(c, "limits", r);
            // A request left out defaults to the limit.
            limit.is_some() && quantity(c, "requests", r).is_none_or(|q| Some(q) == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// Whether `new` differs from the stored status in what the kubelet owns (so it must be written).
pub fn changed(stored: &Value, new: &Value) -> bool {
    new.as_object()
        .is_some_and(|fields| fields.iter().any(|(k, v)| stored.get(k) != Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{ContainerRuntime, FakeRuntime, test_container, test_sandbox};

    fn pod() -> Value {
        json!({ "metadata": { "name": "p", "uid": "u1" },
                "spec": { "nodeName": "n1", "initContainers": [{ "name": "setup", "image": "busybox" }],
                          "containers": [{ "name": "web", "image": "nginx" }] },
                "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "True",
                            "lastTransitionTime": "2026-01-01T00:00:00Z" }] } })
    }

    #[test]
    fn a_pod_whose_containers_run_is_running_and_ready() {
        let rt = FakeRuntime::new(250);
        let sandbox = rt
            .run_sandbox(&test_sandbox("u1", Some("10.244.1.0/24")))
            .unwrap();
        rt.start_container("u1", &test_container("setup", "busybox", true))
            .unwrap();
        rt.start_container("u1", &test_container("web", "nginx", false))
            .unwrap();
        let (_, containers) = rt.pod_status("u1").unwrap();
        let s = pod_status(
            &pod(),
            Some(&sandbox),
            &containers,
            "10.254.0.1",
            "2026-02-02T00:00:00Z",
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.244.1.2");
        assert_eq!(s["hostIP"], "10.254.0.1");
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["status"], "True");
        assert_eq!(cond("Initialized")["status"], "True");
        assert_eq!(
            cond("PodScheduled")["lastTransitionTime"],
            "2026-01-01T00:00:00Z",
            "the scheduler's condition is kept"
        );
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert!(s["containerStatuses"][0]["state"]["running"]["startedAt"].is_string());
        assert_eq!(
            s["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(s["qosClass"], "BestEffort");
    }

    #[test]
    fn before_the_sandbox_the_pod_is_pending_and_waiting() {
        let s = pod_status(&pod(), None, &[], "10.254.0.1", "2026-02-02T00:00:00Z");
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert!(s.get("podIP").is_none());
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("ContainersNotReady"))
        );
    }

    #[test]
    fn conditions_others_own_are_kept() {
        let mut stored = pod();
        stored["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "example.com/lb", "status": "True" }));
        let s = pod_status(&stored, None, &[], "h", "2026-02-02T00:00:00Z");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
                "example.com/lb"
            ]
        );
    }

    #[test]
    fn transition_times_hold_while_the_status_does_and_unchanged_is_not_rewritten() {
        let rt = FakeRuntime::new(250);
        let sandbox = rt.run_sandbox(&test_sandbox("u1", None)).unwrap();
        rt.start_container("u1", &test_container("setup", "busybox", true))
            .unwrap();
        rt.start_container("u1", &test_container("web", "nginx", false))
            .unwrap();
        let (_, containers) = rt.pod_status("u1").unwrap();
        let first = pod_status(&pod(), Some(&sandbox), &containers, "h", "2026-02-02T00:00:00Z");
        let mut stored = pod();
        stored["status"] = first.clone();
        let again = pod_status(&stored, Some(&sandbox), &containers, "h", "2026-03-03T00:00:00Z");
        assert_eq!(
            again, first,
            "nothing changed, so nothing moves (not even the times)"
        );
        assert!(!changed(&stored["status"], &again));
        assert!(changed(&pod()["status"], &first));
    }

    fn exited(name: &str, exit_code: i32) -> Container {
        Container {
            name: name.into(),
            id: format!("runc://{name}"),
            image: "busybox".into(),
            state: ContainerState::Exited {
                exit_code,
                reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
                started_at: "t".into(),
                finished_at: "t".into(),
            },
            restart_count: 0,
            last_state: None,
        }
    }

    fn running(name: &str) -> Container {
        Container {
            state: ContainerState::Running {
                started_at: "t".into(),
            },
            ..exited(name, 0)
        }
    }

    #[test]
    fn phases_follow_upstream_get_phase() {
        let pod = |policy: &str| {
            json!({ "spec": { "restartPolicy": policy, "initContainers": [{ "name": "i" }],
                              "containers": [{ "name": "a" }, { "name": "b" }] } })
        };
        let init_ok = exited("i", 0);
        let cases: [(&str, Vec<Container>, &str); 11] = [
            ("Always", vec![], "Pending"),
            ("Always", vec![running("i")], "Pending"),
            ("Never", vec![exited("i", 1)], "Failed"),
            ("OnFailure", vec![exited("i", 1)], "Pending"),
            ("Always", vec![init_ok.clone(), running("a")], "Pending"),
            (
                "Always",
                vec![init_ok.clone(), running("a"), exited("b", 0)],
                "Running",
            ),
            (
                "Always",
                vec![init_ok.clone(), exited("a", 0), exited("b", 0)],
                "Running",
            ),
            (
                "Never",
                vec![init_ok.clone(), exited("a", 0), exited("b", 0)],
                "Succeeded",
            ),
            (
                "OnFailure",
                vec![init_ok.clone(), exited("a", 0), exited("b", 0)],
                "Succeeded",
            ),
            (
                "Never",
                vec![init_ok.clone(), exited("a", 0), exited("b", 2)],
                "Failed",
            ),
            (
                "OnFailure",
                vec![init_ok.clone(), exited("a", 0), exited("b", 2)],
                "Running",
            ),
        ];
        for (policy, containers, phase) in cases {
            let names: Vec<_> = containers.iter().map(|c| (c.name.clone(), exit_of(c))).collect();
            assert_eq!(pod_phase(&pod(policy), &containers), phase, "{policy} {names:?}");
        }
        // A completed pod says why it is not ready.
        let done = pod_status(
            &pod("Never"),
            None,
            &[init_ok, exited("a", 0), exited("b", 0)],
            "h",
            "t",
        );
        let ready = done["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["reason"], "PodCompleted");
        assert_eq!(done["phase"], "Succeeded");
    }

    #[test]
    fn a_container_to_restart_waits_in_back_off_with_its_last_run() {
        let pod = json!({ "metadata": { "name": "web", "namespace": "prod", "uid": "u9" },
                          "spec": { "containers": [{ "name": "app", "image": "busybox" }] } });
        let mut crashed = exited("app", 1);
        crashed.restart_count = 2;
        let s = pod_status(&pod, None, &[crashed], "h", "t");
        let status = &s["containerStatuses"][0];
        assert_eq!(status["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            status["state"]["waiting"]["message"],
            "back-off 40s restarting failed container=app pod=web_prod(u9)"
        );
        assert_eq!(status["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(status["restartCount"], 2);
        assert_eq!(s["phase"], "Running", "Always: it is restarting");
        // Running again, the previous run is the last state.
        let mut again = running("app");
        again.restart_count = 3;
        again.last_state = Some(exited("app", 1).state);
        let s = pod_status(&pod, None, &[again], "h", "t");
        assert!(s["containerStatuses"][0]["state"]["running"].is_object());
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
        assert!(will_restart("OnFailure", false, &exited("a", 2).state));
        assert!(!will_restart("OnFailure", false, &exited("a", 0).state));
        assert!(
            !will_restart("Always", true, &exited("i", 0).state),
            "a completed init container stays done"
        );
        assert!(!will_restart("Never", false, &exited("a", 2).state));
        assert_eq!(go_duration(std::time::Duration::from_secs(300)), "5m0s");
    }

    fn exit_of(c: &Container) -> Option<i32> {
        match c.state {
            ContainerState::Exited { exit_code, .. } => Some(exit_code),
            ContainerState::Running { .. } => None,
        }
    }

    #[test]
    fn qos_classes() {
        let with =
            |resources: Value| json!({ "spec": { "containers": [{ "name": "c", "resources": resources }] } });
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(json!({ "limits": { "cpu": "1", "memory": "1Gi" } }))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(
                json!({ "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "1", "memory": "1Gi" } })
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(json!({ "requests": { "cpu": "100m" } }))),
            "Burstable"
        );
        assert_eq!(qos_class(&with(json!({ "limits": { "cpu": "1" } }))), "Burstable");
    }
}
