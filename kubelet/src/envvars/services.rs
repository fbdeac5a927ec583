//! Service environment variables, as upstream's pkg/kubelet/envvars `FromServices`: every Service
//! with a cluster IP gives `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (and one per named port) and
//! the Docker link variables (`<NAME>_PORT_80_TCP_ADDR`…).

use std::collections::BTreeMap;

use serde_json::Value;

/// `my-svc` → `MY_SVC` (upstream `makeEnvVariableName`).
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

/// The environment variables of `services` (JSON Services), as upstream's `FromServices`: for each
/// with a cluster IP, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` (the first port), one per named
/// port, and the Docker link variables of every port.
pub fn service_env(services: &[Value]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for svc in services {
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
        let ports: Vec<&Value> = svc["spec"]["ports"].as_array().into_iter().flatten().collect();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = env_name(svc["metadata"]["name"].as_str().unwrap_or_default());
        let port = |p: &Value| p["port"].as_i64().unwrap_or_default();
        env.insert(format!("{prefix}_SERVICE_HOST"), ip.to_owned());
        env.insert(format!("{prefix}_SERVICE_PORT"), port(ports[0]).to_string());
        for p in &ports {
            if let Some(name) = p["name"].as_str().filter(|n| !n.is_empty()) {
                env.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    port(p).to_string(),
                );
            }
        }
        let host = |p: &Value| match ip.contains(':') {
            true => format!("[{ip}]:{}", port(p)),
            false => format!("{ip}:{}", port(p)),
        };
        for (i, p) in ports.iter().enumerate() {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            let lower = protocol.to_ascii_lowercase();
            let url = format!("{lower}://{}", host(p));
            if i == 0 {
                env.insert(format!("{prefix}_PORT"), url.clone());
            }
            let pp = format!("{prefix}_PORT_{}_{}", port(p), protocol.to_ascii_uppercase());
            env.insert(format!("{pp}_PROTO"), lower);
            env.insert(format!("{pp}_PORT"), port(p).to_string());
            env.insert(format!("{pp}_ADDR"), ip.to_owned());
            env.insert(pp, url);
        }
    }
    env
}
