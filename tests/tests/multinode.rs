//! Several nodes on one machine (issue 7): `skiff server` with its node in network namespace A and a
//! `skiff agent` in namespace B, the two joined by a veth pair as two machines on one link
//! (10.201.0.1/24 and 10.201.0.2/24). Each node routes the other's pod CIDR through its address
//! (host-gw), so a Deployment spread over both nodes is one pod network: a pod on A reaches a pod on B
//! by its IP without NAT, and the Service VIP answers from either node with pods of both. When B's
//! agent dies, its pods are replaced on A once their tolerations of the unreachable taint run out.
//! Needs root (CI runs as root); skipped otherwise.

use std::{collections::BTreeSet, time::Duration};

use skiff_tests::{
    Server, kubectl,
    node::{Agent, Netns, busybox_images_dir, install_node_helpers, is_root, remove_node_leftovers},
};

const IP_A: &str = "10.201.0.1";
const IP_B: &str = "10.201.0.2";

/// A Deployment of busybox httpd answering with its pod's name at `/`, and with the client's address
/// at `/cgi-bin/remote` (what shows that pod-to-pod traffic keeps its source address); its pods
/// tolerate an unreachable or not-ready node for 2 s only.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 4
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      terminationGracePeriodSeconds: 2
      tolerations:
      - { key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2 }
      - { key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2 }
      containers:
      - name: httpd
        image: busybox
        command: ["sh", "-c"]
        args:
        - mkdir -p /www/cgi-bin && cp /cgi/remote /www/cgi-bin/ && echo "pod $POD_NAME" > /www/index.html && exec httpd -f -p 8080 -h /www
        env:
        - name: POD_NAME
          valueFrom: { fieldRef: { fieldPath: metadata.name } }
        ports:
        - { name: http, containerPort: 8080 }
        readinessProbe:
          httpGet: { path: /, port: http }
          periodSeconds: 1
        volumeMounts:
        - { name: www, mountPath: /www }
      volumes:
      - name: www
        emptyDir: {}
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  selector: { app: web }
  ports:
  - { port: 80, targetPort: http }
"#;

/// The two nodes; dropped in order: the agent (and its containers), the server (and its), then the
/// namespaces.
struct TwoNodes {
    agent: Agent,
    server: Option<Server>,
    b: Netns,
    a: Netns,
    _images: tempfile::TempDir,
}

impl TwoNodes {
    async fn start() -> Self {
        install_node_helpers();
        let a = Netns::bare("mn-a");
        let b = Netns::bare("mn-b");
        a.link(&b, "mn0", &format!("{IP_A}/24"), &format!("{IP_B}/24"));
        let images = tempfile::Builder::new()
            .prefix("skiff-e2e-images-")
            .tempdir()
            .expect("tempdir");
        let images_dir = busybox_images_dir(images.path());
        let cgi = images_dir.join("busybox/cgi");
        std::fs::create_dir_all(&cgi).expect("cgi dir");
        let script = cgi.join("remote");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n",
        )
        .expect("cgi script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let images_flag = images_dir.to_str().expect("utf-8 path").to_owned();
        let server = Server::start(&[
            "--node-netns",
            &a.path(),
            "--node-name",
            "node-a",
            "--node-ip",
            IP_A,
            "--images-dir",
            &images_flag,
            "--node-monitor-grace-period",
            "15s",
        ])
        .await
        .expect("start skiff server");
        // Node B joins as a node of another machine would: the server's URL at node A's address (in
        // the serving certificate's names) and the join token, which pins the CA it fetches.
        let token = std::fs::read_to_string(server.data_dir.path().join("server/node-token"))
            .expect("the server wrote its join token");
        let url = format!("https://{IP_A}:{}", server.port);
        let agent = Agent::start(
            &["--server", &url, "--token", token.trim()],
            &[
                "--node-netns",
                &b.path(),
                "--node-name",
                "node-b",
                "--node-ip",
                IP_B,
                "--images-dir",
                &images_flag,
            ],
        );
        Self {
            agent,
            server: Some(server),
            b,
            a,
            _images: images,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("server")
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (success, out, err) = kubectl(self.server(), args, stdin);
        assert!(
            success,
            "kubectl {args:?} failed: {err}\n{out}\nserver log:\n{}\nagent log:\n{}",
            tail(&self.server().log()),
            tail(&self.agent.log())
        );
        out
    }

    /// `(name, node, pod IP)` of the web pods that are not being deleted.
    fn web_pods(&self) -> Vec<(String, String, String)> {
        let out = self.ok(
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            ],
            None,
        );
        out.lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() == 3).then(|| (w[0].to_owned(), w[1].to_owned(), w[2].to_owned()))
            })
            .collect()
    }

    /// The pod CIDR the API gave `node`.
    fn pod_cidr(&self, node: &str) -> String {
        self.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"], None)
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        self.agent.kill();
        if let Some(mut server) = self.server.take() {
            server.kill();
            remove_node_leftovers(server.data_dir.path());
        }
    }
}

/// The last lines of a log (enough to see why, short enough to read).
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The route `ip route show <cidr>` lists in `ns` (empty when none).
fn route(ns: &Netns, cidr: &str) -> String {
    ns.exec("ip", &["-4", "route", "show", cidr])
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_two_nodes_form_one_network_and_move_when_a_node_dies() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let started = std::time::Instant::now();
    let cluster = TwoNodes::start().await;
    // `kubectl wait` gives up on a Node not registered yet.
    skiff_tests::eventually("both Nodes registered", Duration::from_secs(30), || async {
        let (_, out, _) = kubectl(cluster.server(), &["get", "nodes", "-o", "name"], None);
        (out.contains("node/node-a") && out.contains("node/node-b")).then_some(())
    })
    .await;
    cluster.ok(
        &[
            "wait",
            "--for=condition=Ready",
            "node/node-a",
            "node/node-b",
            "--timeout=60s",
        ],
        None,
    );
    let (cidr_a, cidr_b) = (cluster.pod_cidr("node-a"), cluster.pod_cidr("node-b"));
    assert!(
        !cidr_a.is_empty() && !cidr_b.is_empty() && cidr_a != cidr_b,
        "{cidr_a} {cidr_b}"
    );
    // host-gw: each node routes the other's pod CIDR through the other's address.
    skiff_tests::eventually(
        "routes to the other node's pods",
        Duration::from_secs(20),
        || async {
            (route(&cluster.a, &cidr_b).contains(&format!("via {IP_B}"))
                && route(&cluster.b, &cidr_a).contains(&format!("via {IP_A}")))
            .then_some(())
        },
    )
    .await;
    eprintln!("[{:?}] both nodes ready, routes set", started.elapsed());

    cluster.ok(&["apply", "-f", "-"], Some(WEB));
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=90s"], None);
    let pods = cluster.web_pods();
    assert_eq!(pods.len(), 4, "{pods:?}");
    let on = |node: &str| -> Vec<(String, String, String)> {
        pods.iter().filter(|p| p.1 == node).cloned().collect()
    };
    let (on_a, on_b) = (on("node-a"), on("node-b"));
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "the scheduler spreads the replicas over both nodes: {pods:?}"
    );
    eprintln!("[{:?}] 4 replicas running: {pods:?}", started.elapsed());

    // A pod on A reaches a pod on B by its IP, and B's pod sees A's pod's own address (no NAT);
    // and the other way round (exec through node B's kubelet API).
    for (from, to) in [(&on_a[0], &on_b[0]), (&on_b[0], &on_a[0])] {
        let page = cluster.ok(
            &[
                "exec",
                &from.0,
                "--",
                "timeout",
                "5",
                "wget",
                "-qO-",
                &format!("http://{}:8080/", to.2),
            ],
            None,
        );
        assert_eq!(page.trim(), format!("pod {}", to.0), "{from:?} → {to:?}");
        let remote = cluster.ok(
            &[
                "exec",
                &from.0,
                "--",
                // Bounded by busybox's timeout: its wget's own -T crashes (Debian's static 1.35).
                "timeout",
                "5",
                "wget",
                "-qO-",
                &format!("http://{}:8080/cgi-bin/remote", to.2),
            ],
            None,
        );
        // httpd listens on IPv6 too and writes the client as `[::ffff:a.b.c.d]`.
        let remote = remote.trim().trim_start_matches("[::ffff:").trim_end_matches(']');
        assert_eq!(remote, from.2, "{to:?} sees {from:?}'s own address");
    }

    // The Service VIP, from each node's namespace, answers with pods of both nodes.
    let vip = cluster.ok(
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );
    let url = format!("http://{vip}/");
    for ns in [&cluster.a, &cluster.b] {
        // Each node's proxy programs endpoints as they turn ready, about one sync per second at
        // most: wait until pods of both nodes have answered, and every answer is from a pod.
        let nodes = std::sync::Mutex::new(BTreeSet::new());
        skiff_tests::eventually(
            &format!("pods on both nodes answer through the VIP in {}", ns.name),
            Duration::from_secs(15),
            || async {
                let page = ns.exec("curl", &["-s", "-m", "2", &url]).unwrap_or_default();
                let pod = page.trim().strip_prefix("pod ").unwrap_or_default();
                let mut nodes = nodes.lock().unwrap();
                match pods.iter().find(|p| p.0 == pod) {
                    Some(p) => {
                        nodes.insert(p.1.clone());
                    }
                    None if page.is_empty() => {}
                    None => panic!("from {}: an answer from no pod of the Service: {page:?}", ns.name),
                }
                (nodes.len() == 2).then_some(())
            },
        )
        .await;
    }
    eprintln!(
        "[{:?}] pod-to-pod and the VIP work across nodes",
        started.elapsed()
    );

    // Node B dies: after the grace period it is unreachable, its pods' 2 s of toleration run out,
    // and the ReplicaSet's replacements run on A.
    let mut cluster = cluster;
    cluster.agent.kill();
    skiff_tests::eventually("4 ready replicas on node A", Duration::from_secs(90), || async {
        let ready = cluster.ok(
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
            None,
        );
        let pods = cluster.web_pods();
        (ready.trim() == "4" && pods.len() == 4 && pods.iter().all(|p| p.1 == "node-a")).then_some(())
    })
    .await;
    eprintln!("[{:?}] node B's pods replaced on node A", started.elapsed());
    // And the VIP from A only reaches A's pods now.
    skiff_tests::eventually(
        "the VIP answers from node A's pods",
        Duration::from_secs(15),
        || async { ns_answers(&cluster.a, &url) },
    )
    .await;

    // A Node deleted takes its route with it.
    cluster.ok(&["delete", "node", "node-b", "--timeout=30s"], None);
    skiff_tests::eventually("node B's route is gone", Duration::from_secs(15), || async {
        route(&cluster.a, &cidr_b).is_empty().then_some(())
    })
    .await;
    eprintln!("[{:?}] done", started.elapsed());
}

/// Whether the VIP at `url` answers from `ns`.
fn ns_answers(ns: &Netns, url: &str) -> Option<()> {
    ns.exec("curl", &["-sf", "-m", "2", url])
        .filter(|page| page.starts_with("pod web-"))
        .map(drop)
}
