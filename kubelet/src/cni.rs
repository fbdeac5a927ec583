//! Pod networking through CNI: the kubelet's side of the CNI spec (what libcni and containerd's CRI
//! `sandbox_run.go` do), executing the standard plugins (Debian's `containernetworking-plugins` in
//! /usr/lib/cni) with a network built from the node's podCIDR:
//!
//! - `lo` is brought up in the pod by the kubelet itself ([`loopback_up`], one netlink request: what
//!   the `loopback` plugin containerd runs as a one-plugin network does, without a process per pod);
//! - `skiff` chains `bridge` (cni0, the pods' gateway, masquerading traffic that leaves the pod CIDR
//!   unless the node's [`crate::hostgw`] owns masquerading)
//!   with `host-local` IPAM over the podCIDR, and `portmap` for a pod with `hostPort`s.
//!
//! ADD returns the pod IP from the result; the whole ADD (network config and result) is cached so DEL
//! can hand each plugin its `prevResult` later, even after a kubelet restart. DEL is idempotent.
//!
//! The plugins act on the *node's* network namespace (they create the bridge and the host end of the
//! veth, and iptables rules, where they run). That is the host's for a node set up by hand; tests and
//! the quickstart give a namespace of their own (`node_netns`) and each plugin is then run inside it
//! with `nsenter --net=<path>`, so nothing lands in the host's namespace.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::runtime::{PortMapping, RuntimeError};

/// The CNI version of the configs written (supported by plugins from 0.8 on; DEL gets prevResult).
pub const CNI_VERSION: &str = "0.4.0";

/// The name of the pod network.
pub const NETWORK_NAME: &str = "skiff";

/// The interface a pod's network is attached as.
pub const POD_INTERFACE: &str = "eth0";

/// Where CNI plugins are and where their state goes.
#[derive(Clone, Debug)]
pub struct Cni {
    /// The plugin binaries (`/usr/lib/cni` on Debian).
    pub plugin_dir: PathBuf,
    /// Our CNI state: `networks/` (host-local's allocations) and `results/` (cached ADDs).
    pub state_dir: PathBuf,
    /// The node's network namespace (a path such as /run/netns/x), if it is not ours.
    pub node_netns: Option<PathBuf>,
    /// The bridge's name (`cni0`).
    pub bridge: String,
    /// Whether the bridge masquerades what leaves the pod CIDR (`ipMasq`). Off where the node's
    /// network owns masquerading ([`crate::hostgw`]: pod-to-pod traffic across nodes keeps its
    /// addresses).
    pub ip_masq: bool,
}

/// The pod network (bridge + host-local, and portmap when `host_ports`) over `pod_cidr`, host-local
/// keeping its state in `data_dir`; the bridge masquerades traffic leaving the pod CIDR when `ip_masq`.
/// portmap only for a pod with hostPorts: it does nothing for the others but cost a process on ADD and
/// DEL (DEL reads the network cached at ADD, so it runs the same plugins).
pub fn network_config(
    pod_cidr: &str,
    bridge: &str,
    ip_masq: bool,
    data_dir: &Path,
    host_ports: bool,
) -> Value {
    let mut net = json!({
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": ip_masq,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": data_dir,
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    });
    if !host_ports && let Some(plugins) = net["plugins"].as_array_mut() {
        plugins.truncate(1);
    }
    net
}

/// Brings `lo` up in the network namespace at `netns`, as the `loopback` plugin would, without
/// starting it: a Go binary's start is milliseconds of CPU, and with 30 pods starting at once on 2
/// cores every pod's network waited on the others' (a third of the CNI processes per pod start). A
/// thread of its own enters the namespace and ends with it, so no other thread changes namespace.
pub fn loopback_up(netns: &Path) -> std::io::Result<()> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                set_loopback_up()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the loopback thread panicked")))
    })
}

/// `ip link set lo up` in this thread's namespace: one rtnetlink RTM_NEWLINK for interface 1 (the
/// loopback device is always index 1 of its namespace), setting IFF_UP, and its acknowledgement.
fn set_loopback_up() -> std::io::Result<()> {
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
    };
    use std::os::fd::AsRawFd;
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const NLMSG_ERROR: u16 = 2;
    const LOOPBACK_INDEX: i32 = 1;
    const IFF_UP: u32 = 0x1;
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    // nlmsghdr (len, type, flags, seq, pid) then ifinfomsg (family, pad, type, index, flags, change).
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    msg.extend_from_slice(&LOOPBACK_INDEX.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    msg.extend_from_slice(&IFF_UP.to_ne_bytes());
    sendto(
        socket.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut reply = [0u8; 1024];
    let n = recv(socket.as_raw_fd(), &mut reply, MsgFlags::empty())?;
    let field = |at: usize, len: usize| reply.get(at..at + len).filter(|_| at + len <= n);
    let kind = field(4, 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = field(16, 4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(errno)) => Err(std::io::Error::from_raw_os_error(-errno)),
        _ => Err(std::io::Error::other("unexpected rtnetlink reply")),
    }
}

/// The config one plugin of `network` gets on stdin: its own entry plus the network's name and
/// version, the previous plugin's result, and the runtime config for the capabilities it declares.
pub fn plugin_config(network: &Value, plugin: &Value, prev: Option<&Value>, ports: &[PortMapping]) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = network["name"].clone();
    conf["cniVersion"] = network["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) && !ports.is_empty() {
        let maps: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut m = json!({ "hostPort": p.host_port, "containerPort": p.container_port, "protocol": p.protocol });
                if let Some(ip) = &p.host_ip {
                    m["hostIP"] = json!(ip);
                }
                m
            })
            .collect();
        conf["runtimeConfig"] = json!({ "portMappings": maps });
    }
    conf
}

/// The first IPv4 address of a CNI result, without its prefix length.
pub fn result_ip(result: &Value) -> Option<String> {
    result["ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["address"].as_str()?.split('/').next()?;
        addr.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string())
    })
}

impl Cni {
    /// Attaches the pod `id` whose network namespace is `netns` to the pod network; returns its IP.
    pub fn add(
        &self,
        id: &str,
        netns: &Path,
        pod_cidr: &str,
        ports: &[PortMapping],
    ) -> Result<String, RuntimeError> {
        let network = network_config(
            pod_cidr,
            &self.bridge,
            self.ip_masq,
            &self.state_dir.join("networks"),
            !ports.is_empty(),
        );
        // What DEL needs later: the exact network and the port mappings, written before ADD runs, so
        // that an ADD cut short (the kubelet killed in the middle of it) is undone by the next DEL:
        // host-local has already given the pod an address, and refuses a second ADD of the same id
        // until a DEL releases it. The result is added once ADD succeeds.
        let mut cache = json!({ "network": network, "result": null, "ports": ports.iter().map(|p| json!([p.host_port, p.container_port, p.protocol, p.host_ip])).collect::<Vec<_>>() });
        self.write_cache(id, &cache)?;
        loopback_up(netns).map_err(|e| RuntimeError(format!("bringing lo up in the pod {id}: {e}")))?;
        let result = self.run_network("ADD", &network, id, Some(netns), POD_INTERFACE, None, ports)?;
        let ip = result_ip(&result)
            .ok_or_else(|| RuntimeError(format!("CNI result without an IPv4 address: {result}")))?;
        cache["result"] = result;
        self.write_cache(id, &cache)?;
        Ok(ip)
    }

    /// Records what DEL of pod `id` needs (written whole or not at all).
    fn write_cache(&self, id: &str, cache: &Value) -> Result<(), RuntimeError> {
        let dir = self.state_dir.join("results");
        let tmp = dir.join(format!(".{id}.tmp"));
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&tmp, cache.to_string()))
            .and_then(|()| std::fs::rename(&tmp, dir.join(id)))
            .map_err(|e| RuntimeError(format!("caching the CNI result of {id}: {e}")))
    }

    /// Detaches pod `id` (releasing its IP, removing its veth and rules); `netns` is None once the
    /// namespace is gone. Nothing to do (and no error) when it was never attached or already detached.
    pub fn del(&self, id: &str, netns: Option<&Path>) -> Result<(), RuntimeError> {
        let cached = self.state_dir.join("results").join(id);
        let Ok(text) = std::fs::read_to_string(&cached) else {
            return Ok(());
        };
        let cache: Value = serde_json::from_str(&text).unwrap_or_default();
        let netns = netns.filter(|p| p.exists());
        let ports: Vec<PortMapping> = cache["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some(PortMapping {
                    host_port: p[0].as_u64()? as u16,
                    container_port: p[1].as_u64()? as u16,
                    protocol: p[2].as_str()?.to_owned(),
                    host_ip: p[3].as_str().map(str::to_owned),
                })
            })
            .collect();
        self.run_network(
            "DEL",
            &cache["network"],
            id,
            netns,
            POD_INTERFACE,
            // No result when ADD never finished: DEL works from the network config alone.
            Some(&cache["result"]).filter(|r| !r.is_null()),
            &ports,
        )?;
        // No loopback DEL: the plugin's only sets `lo` down in a namespace that goes with the pod.
        std::fs::remove_file(&cached).map_err(|e| RuntimeError(format!("removing {}: {e}", cached.display())))
    }

    /// Runs every plugin of `network` for `command` (ADD in order, each fed the previous result; DEL
    /// in reverse, each fed `prev`); returns the last ADD result.
    #[allow(clippy::too_many_arguments)]
    fn run_network(
        &self,
        command: &str,
        network: &Value,
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
        prev: Option<&Value>,
        ports: &[PortMapping],
    ) -> Result<Value, RuntimeError> {
        let mut plugins: Vec<&Value> = network["plugins"].as_array().into_iter().flatten().collect();
        if command == "DEL" {
            plugins.reverse();
        }
        let mut result = prev.cloned();
        for plugin in plugins {
            let conf = plugin_config(network, plugin, result.as_ref(), ports);
            let out = self.exec(
                command,
                plugin["type"].as_str().unwrap_or_default(),
                &conf,
                id,
                netns,
                ifname,
            )?;
            if command == "ADD" {
                result = Some(out);
            }
        }
        Ok(result.unwrap_or_default())
    }

    /// Executes one plugin as the CNI spec says: parameters in the environment, config on stdin, result
    /// (or error) on stdout; inside the node's namespace when there is one.
    fn exec(
        &self,
        command: &str,
        kind: &str,
        conf: &Value,
        id: &str,
        netns: Option<&Path>,
        ifname: &str,
    ) -> Result<Value, RuntimeError> {
        let plugin = self.plugin_dir.join(kind);
        let mut cmd = match &self.node_netns {
            Some(node) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", node.display())).arg(&plugin);
                c
            }
            None => Command::new(&plugin),
        };
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns.map(|p| p.as_os_str()).unwrap_or_default())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let fail = |msg: String| RuntimeError(format!("CNI {command} {kind} for {id}: {msg}"));
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("running {}: {e}", plugin.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let msg = match stdout["msg"].as_str() {
                Some(msg) => format!("{msg} {}", stdout["details"].as_str().unwrap_or_default()),
                None => String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            return Err(fail(msg.trim().to_owned()));
        }
        Ok(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_is_built_from_the_pod_cidr() {
        let net = network_config(
            "10.244.3.0/24",
            "cni0",
            true,
            Path::new("/var/lib/skiff/cni/networks"),
            true,
        );
        assert_eq!(net["name"], "skiff");
        let bridge = &net["plugins"][0];
        assert_eq!(
            (bridge["type"].as_str(), bridge["bridge"].as_str()),
            (Some("bridge"), Some("cni0"))
        );
        assert_eq!(
            (bridge["isGateway"].as_bool(), bridge["ipMasq"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(bridge["ipam"]["ranges"], json!([[{ "subnet": "10.244.3.0/24" }]]));
        assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/cni/networks");
        assert_eq!(net["plugins"][1]["type"], "portmap");
        let no_ports = network_config("10.244.3.0/24", "cni0", true, Path::new("/d"), false);
        assert_eq!(
            no_ports["plugins"].as_array().map(Vec::len),
            Some(1),
            "portmap only for hostPorts"
        );
    }

    #[test]
    fn plugins_get_name_version_prev_result_and_port_mappings() {
        let net = network_config("10.244.3.0/24", "cni0", true, Path::new("/d"), true);
        let prev = json!({ "ips": [{ "address": "10.244.3.2/24" }] });
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
        }];
        let bridge = plugin_config(&net, &net["plugins"][0], None, &ports);
        assert_eq!(
            (bridge["name"].as_str(), bridge["cniVersion"].as_str()),
            (Some("skiff"), Some("0.4.0"))
        );
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge does not declare portMappings"
        );
        assert!(bridge.get("prevResult").is_none());
        let portmap = plugin_config(&net, &net["plugins"][1], Some(&prev), &ports);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"],
            json!({ "portMappings": [{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }] })
        );
        assert!(
            plugin_config(&net, &net["plugins"][1], None, &[])
                .get("runtimeConfig")
                .is_none()
        );
    }

    #[test]
    fn the_pod_ip_comes_from_the_result() {
        let result = json!({ "cniVersion": "0.4.0", "interfaces": [{ "name": "cni0" }],
            "ips": [{ "version": "6", "address": "fd00::2/64" }, { "version": "4", "address": "10.244.3.7/24", "gateway": "10.244.3.1" }] });
        assert_eq!(result_ip(&result).as_deref(), Some("10.244.3.7"));
        assert_eq!(result_ip(&json!({})), None);
    }

    #[test]
    fn del_of_a_pod_never_added_is_a_no_op_and_plugin_errors_are_reported() {
        let dir = std::env::temp_dir().join(format!("skiff-cni-unit-{}", std::process::id()));
        let cni = Cni {
            plugin_dir: dir.join("no-plugins"),
            state_dir: dir.clone(),
            node_netns: None,
            bridge: "cni0".into(),
            ip_masq: true,
        };
        assert!(cni.del("never-added", None).is_ok());
        // A namespace that is not there (nothing here touches this process's own `lo`).
        let err = cni
            .add("p", &dir.join("no-netns"), "10.244.3.0/24", &[])
            .unwrap_err();
        assert!(err.0.contains("bringing lo up in the pod p"), "{err}");
        let network = network_config("10.244.3.0/24", "cni0", true, &dir.join("networks"), false);
        let err = cni
            .run_network("ADD", &network, "p", None, POD_INTERFACE, None, &[])
            .unwrap_err();
        assert!(err.0.contains("CNI ADD bridge for p"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
