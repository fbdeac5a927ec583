//! The name-resolution files a pod's containers get, as the kubelet makes them:
//! - `/etc/resolv.conf` from the pod's `dnsPolicy` and `dnsConfig` (upstream's
//!   pkg/kubelet/network/dns/dns.go, `GetPodDNS`): ClusterFirst points at the cluster DNS with the
//!   namespace's search path and `ndots:5`; Default copies the node's; None takes only `dnsConfig`.
//! - `/etc/hosts`, the kubelet-managed hosts file (pkg/kubelet/kubelet_pods.go,
//!   `managedHostsFileContent`): localhost entries and the pod's own IP and hostname, or the node's
//!   hosts file for a pod on the host network.
//!
//! Pure functions; the runtime writes their output into the pod's directory and bind-mounts it.

/// The cluster's DNS settings (`--cluster-dns`, `--cluster-domain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterDns {
    /// The cluster DNS service's addresses (empty: no cluster DNS).
    pub servers: Vec<String>,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            domain: "cluster.local".into(),
        }
    }
}

/// What a pod asks for: `spec.dnsPolicy` and `spec.dnsConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDns {
    /// `ClusterFirst` (the default), `ClusterFirstWithHostNet`, `Default` or `None`.
    pub policy: String,
    /// `dnsConfig.nameservers`.
    pub nameservers: Vec<String>,
    /// `dnsConfig.searches`.
    pub searches: Vec<String>,
    /// `dnsConfig.options` as `name` or `name:value`.
    pub options: Vec<String>,
}

/// A parsed resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` list.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

/// Upstream's limits (validation.MaxDNSNameservers, MaxDNSSearchPaths).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

impl ResolvConf {
    /// Reads the parts of a resolv.conf the kubelet uses.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                // The last search (or domain) line wins, as in the resolver.
                Some("search" | "domain") => conf.searches = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out += &format!("search {}\n", self.searches.join(" "));
        }
        for ns in &self.nameservers {
            out += &format!("nameserver {ns}\n");
        }
        if !self.options.is_empty() {
            out += &format!("options {}\n", self.options.join(" "));
        }
        out
    }
}

/// The resolv.conf of a pod in `namespace` (GetPodDNS): `host` is the node's own resolv.conf.
pub fn pod_resolv_conf(
    pod: &PodDns,
    namespace: &str,
    host_network: bool,
    cluster: &ClusterDns,
    host: &str,
) -> ResolvConf {
    let host = ResolvConf::parse(host);
    let cluster_first = match pod.policy.as_str() {
        "None" => None,
        "ClusterFirstWithHostNet" => Some(true),
        "Default" => Some(false),
        // ClusterFirst (and unset): the cluster's DNS, unless the pod is on the host network.
        _ => Some(!host_network),
    };
    let mut conf = match cluster_first {
        None => ResolvConf::default(),
        // Asked for the cluster's DNS but there is none: the node's (upstream warns MissingClusterDNS).
        Some(true) if !cluster.servers.is_empty() => {
            let d = &cluster.domain;
            let mut searches = vec![format!("{namespace}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(
                host.searches
                    .iter()
                    .filter(|s| !searches.contains(s))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            ResolvConf {
                nameservers: cluster.servers.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        Some(_) => host,
    };
    // dnsConfig is merged in: servers and searches appended (no duplicates), options by name.
    for ns in &pod.nameservers {
        if !conf.nameservers.contains(ns) {
            conf.nameservers.push(ns.clone());
        }
    }
    for s in &pod.searches {
        if !conf.searches.contains(s) {
            conf.searches.push(s.clone());
        }
    }
    for opt in &pod.options {
        let name = opt.split(':').next().unwrap_or_default();
        conf.options.retain(|o| o.split(':').next() != Some(name));
        conf.options.push(opt.clone());
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    conf
}

/// The kubelet-managed /etc/hosts of a pod: its own IP and hostname, or (host network) the node's.
pub fn hosts_file(ip: &str, hostname: &str, host_network: bool, node_hosts: &str) -> String {
    if host_network {
        return format!("# Kubernetes-managed hosts file (host network).\n{node_hosts}");
    }
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() {
        out += &format!("{ip}\t{hostname}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2 # second\nsearch corp.example\noptions edns0\n";

    fn cluster() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
        }
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_the_namespace_search_path() {
        let conf = pod_resolv_conf(&PodDns::default(), "prod", false, &cluster(), HOST);
        assert_eq!(
            conf.render(),
            "search prod.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_default_and_missing_cluster_dns_use_the_nodes() {
        let host = ResolvConf::parse(HOST);
        assert_eq!(host.nameservers, ["192.168.1.1", "192.168.1.2"]);
        let cluster_first = PodDns::default();
        assert_eq!(
            pod_resolv_conf(&cluster_first, "a", true, &cluster(), HOST),
            host,
            "ClusterFirst on the host network"
        );
        let default = PodDns {
            policy: "Default".into(),
            ..Default::default()
        };
        assert_eq!(pod_resolv_conf(&default, "a", false, &cluster(), HOST), host);
        assert_eq!(
            pod_resolv_conf(&cluster_first, "a", false, &ClusterDns::default(), HOST),
            host
        );
        let with_host_net = PodDns {
            policy: "ClusterFirstWithHostNet".into(),
            ..Default::default()
        };
        assert_eq!(
            pod_resolv_conf(&with_host_net, "a", true, &cluster(), HOST).nameservers,
            ["10.96.0.10"]
        );
    }

    #[test]
    fn dns_config_is_merged_and_none_takes_only_it() {
        let pod = PodDns {
            policy: "None".into(),
            nameservers: vec!["1.1.1.1".into()],
            searches: vec!["my.dns.search.suffix".into()],
            options: vec!["ndots:2".into(), "edns0".into()],
        };
        assert_eq!(
            pod_resolv_conf(&pod, "a", false, &cluster(), HOST).render(),
            "search my.dns.search.suffix\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
        let merged = pod_resolv_conf(
            &PodDns {
                policy: "ClusterFirst".into(),
                ..pod
            },
            "a",
            false,
            &cluster(),
            HOST,
        );
        assert_eq!(merged.nameservers, ["10.96.0.10", "1.1.1.1"]);
        assert_eq!(
            merged.options,
            ["ndots:2", "edns0"],
            "the pod's ndots replaces the cluster's"
        );
    }

    #[test]
    fn hosts_files() {
        let hosts = hosts_file("10.244.1.5", "web-0", false, "");
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.244.1.5\tweb-0\n"));
        assert_eq!(
            hosts_file("", "n", true, "127.0.0.1 localhost\n"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }
}
