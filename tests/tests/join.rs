//! Joining a node with the server's join token (`skiff agent --server URL --token T`): the full token
//! (`<data-dir>/server/node-token`) lets an agent fetch and pin the cluster CA and register; a token
//! naming another CA, or a wrong secret, is refused with a message saying which.

use std::time::Duration;

use skiff_tests::{Process, Server, run_with_stdin, skiff_bin};

fn agent_args(server: &Server, token: &str, prefix: &str) -> Vec<String> {
    let url = format!("https://127.0.0.1:{}", server.port);
    [
        "agent",
        "--hollow-nodes",
        "1",
        "--node-name-prefix",
        prefix,
        "--server",
        &url,
        "--token",
        token,
    ]
    .map(String::from)
    .to_vec()
}

/// An agent expected to give up at once (bounded by `timeout` in case it does not).
fn refused(server: &Server, token: &str, prefix: &str) -> skiff_tests::Output {
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("20")
        .arg(skiff_bin())
        .args(agent_args(server, token, prefix));
    run_with_stdin(cmd, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_joins_with_the_token_and_bad_tokens_are_refused() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let token = std::fs::read_to_string(server.data_dir.path().join("server/node-token"))
        .expect("node-token written");
    let token = token.trim();
    assert!(token.starts_with("K10") && token.contains("::server:"), "{token}");

    // The right token: a node registers and turns Ready.
    let log = std::fs::File::create(server.data_dir.path().join("joined.log")).unwrap();
    let _joined = Process(
        std::process::Command::new(skiff_bin())
            .args(agent_args(&server, token, "joined"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("agent"),
    );
    let client = server.client().await.expect("client");
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    skiff_tests::eventually("the joined node Ready", Duration::from_secs(20), || async {
        let node = nodes.get_opt("joined-0").await.ok().flatten()?;
        let ready = node
            .status?
            .conditions?
            .into_iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;

    // A token pinning another CA: refused before any credential is sent.
    let (_, secret) = token.rsplit_once(':').unwrap();
    let foreign = format!("K10{}::server:{secret}", "0".repeat(64));
    let out = refused(&server, &foreign, "foreign");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("is not the one the token names"), "{out:?}");

    // The right CA but a wrong secret: the server says Unauthorized.
    let (pinned, _) = token.rsplit_once(':').unwrap();
    let out = refused(&server, &format!("{pinned}:wrong"), "wrong");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Unauthorized"), "{out:?}");
    assert!(nodes.get_opt("wrong-0").await.expect("get").is_none());

    // The token survives a restart of the server (kept in the data dir).
    let mut server = server;
    server.restart().await.expect("restart");
    let again = std::fs::read_to_string(server.data_dir.path().join("server/node-token")).unwrap();
    assert_eq!(again.trim(), token);
}
