//! Container lifecycle hooks: `lifecycle.preStop` runs in (or against) a container before it is
//! stopped, as upstream's pkg/kubelet/lifecycle/handlers.go and `killContainer` in
//! kuberuntime_container.go.
//!
//! A pod being deleted is removed from its Services' endpoints at once, but every proxy takes a moment
//! to reprogram its rules; a preStop pause (`exec: sleep 5`, or `sleep: {seconds: 5}`) keeps the
//! container serving meanwhile, and only then does it get SIGTERM. The hook's time comes out of the
//! grace period, and the container keeps at least [`MINIMUM_GRACE_SECONDS`] after it.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    prober::{
        probes::{ProbeRun, Target, run},
        results::{Action, ProbeSpec},
    },
    runtime::ContainerRuntime,
};

/// What a container gets to stop after its preStop hook, however long the hook took (upstream's
/// `minimumGracePeriodInSeconds`).
pub const MINIMUM_GRACE_SECONDS: i64 = 2;

/// The preStop handler of `container` (its spec), if it has one.
pub fn pre_stop(container: &Value) -> Option<&Value> {
    let handler = &container["lifecycle"]["preStop"];
    handler.is_object().then_some(handler)
}

/// Runs `handler` for container `container` (its spec) of pod `pod_uid` at `pod_ip`, for at most
/// `timeout`; what went wrong, if anything (upstream logs it and emits FailedPreStopHook, and stops
/// the container anyway).
pub fn run_handler(
    runtime: &dyn ContainerRuntime,
    pod_uid: &str,
    pod_ip: &str,
    container: &Value,
    handler: &Value,
    timeout: Duration,
) -> Result<(), String> {
    // `sleep` (KEP-3960): a pause without a command in the image.
    if let Some(seconds) = handler["sleep"]["seconds"].as_u64() {
        std::thread::sleep(Duration::from_secs(seconds).min(timeout));
        return Ok(());
    }
    let action = ProbeSpec::parse(handler, container).action;
    if let Action::Grpc { .. } = action {
        return Err("a lifecycle hook cannot be a gRPC check".into());
    }
    let target = Target {
        runtime,
        pod_uid,
        container: container["name"].as_str().unwrap_or_default(),
        pod_ip,
    };
    match run(&action, &target, timeout) {
        ProbeRun::Success => Ok(()),
        ProbeRun::Failure(why) | ProbeRun::Error(why) => Err(why),
    }
}

/// Runs the preStop hooks of `containers` (specs of running containers of pod `pod_uid`) side by
/// side, within `grace_seconds`, and returns the grace period left for stopping them (at least
/// [`MINIMUM_GRACE_SECONDS`] when a hook ran). A grace period of 0 runs no hook (upstream's).
/// Failures are returned with the container's name.
pub fn run_pre_stop_hooks(
    runtime: &dyn ContainerRuntime,
    pod_uid: &str,
    pod_ip: &str,
    containers: &[Value],
    grace_seconds: i64,
) -> (i64, Vec<(String, String)>) {
    let hooked: Vec<(&Value, &Value)> = containers
        .iter()
        .filter_map(|c| Some((c, pre_stop(c)?)))
        .collect();
    if hooked.is_empty() || grace_seconds <= 0 {
        return (grace_seconds, Vec::new());
    }
    let started = Instant::now();
    let timeout = Duration::from_secs(grace_seconds as u64);
    let failures = std::thread::scope(|scope| {
        let runs: Vec<_> = hooked
            .iter()
            .map(|(c, h)| {
                scope.spawn(move || {
                    let name = c["name"].as_str().unwrap_or_default().to_owned();
                    run_handler(runtime, pod_uid, pod_ip, c, h, timeout)
                        .err()
                        .map(|e| (name, e))
                })
            })
            .collect();
        runs.into_iter()
            .filter_map(|r| r.join().ok().flatten())
            .collect::<Vec<_>>()
    });
    let spent = started.elapsed().as_secs() as i64;
    ((grace_seconds - spent).max(MINIMUM_GRACE_SECONDS), failures)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::FakeRuntime;

    #[test]
    fn no_hook_keeps_the_grace_period() {
        let rt = FakeRuntime::new(1);
        let c = json!({"name": "a"});
        assert_eq!(
            run_pre_stop_hooks(&rt, "u", "10.0.0.1", &[c], 30),
            (30, Vec::new())
        );
    }

    #[test]
    fn a_sleep_hook_takes_its_time_out_of_the_grace_period() {
        let rt = FakeRuntime::new(1);
        let c = json!({"name": "a", "lifecycle": {"preStop": {"sleep": {"seconds": 1}}}});
        let started = Instant::now();
        let (left, failed) = run_pre_stop_hooks(&rt, "u", "10.0.0.1", std::slice::from_ref(&c), 30);
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!((left, failed), (29, Vec::new()));
        // Never less than the minimum after a hook; none at all with a grace period of 0.
        let (left, _) = run_pre_stop_hooks(&rt, "u", "10.0.0.1", std::slice::from_ref(&c), 1);
        assert_eq!(left, MINIMUM_GRACE_SECONDS);
        let started = Instant::now();
        assert_eq!(run_pre_stop_hooks(&rt, "u", "10.0.0.1", &[c], 0).0, 0);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
