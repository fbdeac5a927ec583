//! `skiff describe`: an object in detail, as kubectl's describers lay it out: Pods, Deployments,
//! ReplicaSets, Services and Nodes have their own sections (containers with state and restarts,
//! replica counts and the ReplicaSets of a rollout, endpoints, conditions and capacity); any other
//! kind gets the generic layout (its fields as an indented tree). Every one ends with the object's
//! Events, fetched by `involvedObject` field selectors as kubectl does.

use std::fmt::Write;

use serde_json::Value;

use super::{Ctx, api_error, printer, resource::ResourceType, resources};

/// `skiff describe` flags.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE [NAME…]` or `TYPE/NAME…`; no name describes every object (matching `-l`).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// A label selector, when no names are given.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Describe in every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

pub async fn run(ctx: &Ctx, args: DescribeArgs) -> anyhow::Result<()> {
    let catalog = ctx.catalog().await?;
    let targets = super::get::parse_targets(catalog, &args.resources)?;
    let mut first = true;
    let mut failed = false;
    for (t, names) in targets {
        let objects: Vec<Value> = if names.is_empty() {
            let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
            ctx.list(t, ns, args.selector.as_deref(), None).await?
        } else {
            let mut found = Vec::new();
            for name in names {
                let request = http::Request::get(t.object_path(&ctx.namespace, &name)).body(Vec::new())?;
                match ctx.client.request::<Value>(request).await.map_err(api_error) {
                    Ok(o) => found.push(o),
                    Err(e) => {
                        eprintln!("{}", super::error_line(&e));
                        failed = true;
                    }
                }
            }
            found
        };
        for object in objects {
            if !first {
                println!("\n");
            }
            first = false;
            print!("{}", describe(ctx, t, &object).await?);
        }
    }
    if failed {
        return Err(super::AlreadyReported.into());
    }
    Ok(())
}

/// A describer's output as kubectl's describers write it: `Key:\tvalue` lines, indented two spaces
/// per level, aligned by Go's tabwriter rules at the end ([`printer::tabwrite`], padding 2), so each
/// run of keys aligns on its own exactly as kubectl's output does.
#[derive(Default)]
struct Section {
    text: String,
}

impl Section {
    /// `Key:\tvalue`, or `Key:` alone (a heading: it ends the alignment block) when value is empty.
    fn kv(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        let value = value.into();
        let pad = "  ".repeat(indent);
        if value.is_empty() {
            let _ = writeln!(self.text, "{pad}{key}:");
        } else {
            let _ = writeln!(self.text, "{pad}{key}:\t{value}");
        }
    }
    /// `Key:\tvalue` even when the value is empty (a field, not a heading).
    fn field(&mut self, indent: usize, key: &str, value: &str) {
        let _ = writeln!(self.text, "{}{key}:\t{value}", "  ".repeat(indent));
    }
    /// A further value of the key above, in its value column. kubectl writes these lines without
    /// the key's indent (which aligned output cannot show, but raw output does).
    fn more(&mut self, _indent: usize, value: &str) {
        let _ = writeln!(self.text, "\t{value}");
    }
    fn line(&mut self, indent: usize, text: impl AsRef<str>) {
        let _ = writeln!(self.text, "{}{}", "  ".repeat(indent), text.as_ref());
    }
    /// Labels (`k=v`) or annotations (`k: v`), one per line, `<none>` when empty.
    fn map(&mut self, indent: usize, key: &str, map: &Value, sep: &str) {
        let entries: Vec<String> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}{sep}{}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        self.list(indent, key, &entries);
    }
    /// The first value beside the key, the rest under it; `<none>` when there is none.
    fn list(&mut self, indent: usize, key: &str, values: &[String]) {
        match values.split_first() {
            None => self.kv(indent, key, "<none>"),
            Some((first, rest)) => {
                self.kv(indent, key, first.clone());
                for v in rest {
                    self.more(indent, v);
                }
            }
        }
    }
    /// Table rows (header first), cells separated by tabs.
    fn rows(&mut self, indent: usize, rows: &[Vec<String>]) {
        for row in rows {
            self.line(indent, row.join("\t"));
        }
    }
    fn render(&self) -> String {
        printer::tabwrite(&self.text, 0, 2)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn header(sec: &mut Section, o: &Value, t: &ResourceType) {
    let m = &o["metadata"];
    sec.kv(0, "Name", s(&m["name"]));
    // kubectl 1.32's DaemonSet describer names no namespace (later ones do).
    if t.namespaced && t.kind != "DaemonSet" {
        sec.kv(0, "Namespace", s(&m["namespace"]));
    }
}

fn owner(o: &Value) -> Option<String> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| format!("{}/{}", s(&r["kind"]), s(&r["name"])))
}

async fn describe(ctx: &Ctx, t: &ResourceType, o: &Value) -> anyhow::Result<String> {
    let mut sec = Section::default();
    header(&mut sec, o, t);
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Pod") => pod(&mut sec, o),
        ("apps", "Deployment") => deployment(ctx, &mut sec, o).await?,
        ("apps", "ReplicaSet") => replicaset(ctx, &mut sec, o).await?,
        ("apps", "DaemonSet") => daemonset(ctx, &mut sec, o).await?,
        ("apps", "StatefulSet") => statefulset(ctx, &mut sec, o).await?,
        ("batch", "Job") => job(&mut sec, o),
        ("", "Service") => service(ctx, &mut sec, o).await?,
        ("", "Node") => node(ctx, &mut sec, o).await?,
        ("", "ConfigMap" | "Secret") => data(&mut sec, o),
        _ => generic(&mut sec, o),
    }
    events(ctx, &mut sec, o).await?;
    Ok(sec.render())
}

fn time(v: &Value) -> String {
    v.as_str()
        .map(printer::describe_time)
        .unwrap_or_else(|| "<none>".into())
}

fn pod(sec: &mut Section, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    sec.kv(0, "Priority", spec["priority"].as_i64().unwrap_or(0).to_string());
    if let Some(class) = spec["priorityClassName"].as_str() {
        sec.kv(0, "Priority Class Name", class);
    }
    if let Some(sa) = spec["serviceAccountName"].as_str() {
        sec.kv(0, "Service Account", sa);
    }
    let node = match spec["nodeName"].as_str() {
        Some(n) => format!("{n}/{}", st["hostIP"].as_str().unwrap_or("")),
        None => "<none>".into(),
    };
    sec.kv(0, "Node", node);
    if !st["startTime"].is_null() {
        sec.kv(0, "Start Time", time(&st["startTime"]));
    }
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    if let Some(t) = m["deletionTimestamp"].as_str() {
        let grace = m["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        sec.kv(
            0,
            "Status",
            format!(
                "Terminating (lasts {})",
                printer::age(Some(t)).replace("<unknown>", "0s")
            ),
        );
        sec.kv(0, "Termination Grace Period", format!("{grace}s"));
    } else {
        sec.kv(0, "Status", s(&st["phase"]));
    }
    if let Some(reason) = st["reason"].as_str() {
        sec.kv(0, "Reason", reason);
    }
    if let Some(message) = st["message"].as_str() {
        sec.kv(0, "Message", message);
    }
    sec.field(0, "IP", st["podIP"].as_str().unwrap_or(""));
    match st["podIPs"].as_array().filter(|a| !a.is_empty()) {
        None => sec.kv(0, "IPs", "<none>"),
        Some(ips) => {
            sec.kv(0, "IPs", "");
            for ip in ips {
                sec.kv(1, "IP", s(&ip["ip"]));
            }
        }
    }
    if let Some(by) = owner(o) {
        sec.kv(0, "Controlled By", by);
    }
    for (key, status_key, title) in [
        ("initContainers", "initContainerStatuses", "Init Containers"),
        ("containers", "containerStatuses", "Containers"),
    ] {
        let Some(containers) = spec[key].as_array().filter(|c| !c.is_empty()) else {
            continue;
        };
        sec.kv(0, title, "");
        for c in containers {
            let cs = st[status_key]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == c["name"]))
                .cloned()
                .unwrap_or(Value::Null);
            container(sec, "  ", c, Some(&cs), Some(o));
        }
    }
    sec.kv(0, "Conditions", "");
    let mut rows = vec![strings(&["Type", "Status"])];
    for c in st["conditions"].as_array().into_iter().flatten() {
        // kubectl writes `%v \t%v \n`: both cells carry a trailing space.
        rows.push(vec![
            format!("{} ", s(&c["type"])),
            format!("{} ", s(&c["status"])),
        ]);
    }
    sec.rows(1, &rows);
    volumes(sec, 0, "  ", &spec["volumes"]);
    sec.kv(0, "QoS Class", s(&st["qosClass"]));
    sec.map(0, "Node-Selectors", &spec["nodeSelector"], "=");
    let tolerations: Vec<String> = spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(toleration)
        .collect();
    sec.list(0, "Tolerations", &tolerations);
}

/// `key=value:Effect op=Exists for 300s`, as kubectl prints a toleration.
fn toleration(t: &Value) -> String {
    let mut text = String::new();
    let key = t["key"].as_str().unwrap_or("");
    let value = t["value"].as_str().unwrap_or("");
    let effect = t["effect"].as_str().unwrap_or("");
    text.push_str(key);
    if !value.is_empty() {
        text.push_str(&format!("={value}"));
    }
    if !effect.is_empty() {
        text.push_str(&format!(":{effect}"));
    }
    if t["operator"] == "Exists" && value.is_empty() {
        text.push_str(if key.is_empty() && effect.is_empty() {
            "op=Exists"
        } else {
            " op=Exists"
        });
    }
    if let Some(secs) = t["tolerationSeconds"].as_i64() {
        text.push_str(&format!(" for {secs}s"));
    }
    text
}

fn volumes(sec: &mut Section, indent: usize, name_pad: &str, volumes: &Value) {
    let Some(list) = volumes.as_array().filter(|v| !v.is_empty()) else {
        sec.kv(indent, "Volumes", "<none>");
        return;
    };
    sec.kv(indent, "Volumes", "");
    for v in list {
        sec.line(0, format!("{name_pad}{}:", s(&v["name"])));
        let i = 2;
        let field = |src: &Value, k: &str| src[k].as_str().unwrap_or("").to_string();
        if let Some(src) = v.get("configMap") {
            sec.kv(i, "Type", "ConfigMap (a volume populated by a ConfigMap)");
            sec.kv(i, "Name", field(src, "name"));
            sec.kv(i, "Optional", (src["optional"] == true).to_string());
        } else if let Some(src) = v.get("secret") {
            sec.kv(i, "Type", "Secret (a volume populated by a Secret)");
            sec.kv(i, "SecretName", field(src, "secretName"));
            sec.kv(i, "Optional", (src["optional"] == true).to_string());
        } else if let Some(src) = v.get("emptyDir") {
            sec.kv(
                i,
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)",
            );
            sec.field(i, "Medium", src["medium"].as_str().unwrap_or(""));
            sec.kv(i, "SizeLimit", src["sizeLimit"].as_str().unwrap_or("<unset>"));
        } else if let Some(src) = v.get("hostPath") {
            sec.kv(i, "Type", "HostPath (bare host directory volume)");
            sec.kv(i, "Path", field(src, "path"));
            sec.field(i, "HostPathType", &field(src, "type"));
        } else if let Some(src) = v.get("persistentVolumeClaim") {
            sec.kv(
                i,
                "Type",
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
            );
            sec.kv(i, "ClaimName", field(src, "claimName"));
            sec.kv(i, "ReadOnly", (src["readOnly"] == true).to_string());
        } else if v.get("downwardAPI").is_some() {
            sec.kv(
                i,
                "Type",
                "DownwardAPI (a volume populated by information about the pod)",
            );
        } else if v.get("projected").is_some() {
            sec.kv(
                i,
                "Type",
                "Projected (a volume that contains injected data from multiple sources)",
            );
        } else if let Some((kind, _)) = v.as_object().and_then(|m| m.iter().find(|(k, _)| *k != "name")) {
            sec.kv(i, "Type", kind.clone());
        }
    }
}

fn state_lines(sec: &mut Section, indent: usize, key: &str, state: &Value) {
    let Some((name, detail)) = state.as_object().and_then(|m| m.iter().next()) else {
        sec.kv(indent, key, "Waiting");
        return;
    };
    let mut title = name.clone();
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    sec.kv(indent, key, title);
    for (field, label) in [
        ("reason", "Reason"),
        ("message", "Message"),
        ("exitCode", "Exit Code"),
        ("signal", "Signal"),
        ("startedAt", "Started"),
        ("finishedAt", "Finished"),
    ] {
        match &detail[field] {
            Value::Null => {}
            v if field.ends_with("At") => sec.kv(indent + 1, label, time(v)),
            v => sec.kv(indent + 1, label, s(v)),
        }
    }
}

/// One container: its spec, and with `status` (a pod's, not a template's) its state and restarts.
/// `pod` resolves fieldRef environment values, as kubectl shows them for pods.
/// The name line is `name_pad` + name (kubectl indents a template's container names by three spaces,
/// a pod's by two); the fields sit at level 2 either way.
fn container(sec: &mut Section, name_pad: &str, c: &Value, status: Option<&Value>, pod: Option<&Value>) {
    sec.line(0, format!("{name_pad}{}:", s(&c["name"])));
    let i = 2;
    if let Some(id) = status.and_then(|cs| cs["containerID"].as_str()) {
        sec.kv(i, "Container ID", id);
    }
    sec.kv(i, "Image", s(&c["image"]));
    if let Some(cs) = status {
        sec.kv(i, "Image ID", cs["imageID"].as_str().unwrap_or(""));
    }
    let ports: Vec<&Value> = c["ports"].as_array().into_iter().flatten().collect();
    let text = |key: &str| {
        ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p[key].as_i64().unwrap_or(0),
                    p["protocol"].as_str().unwrap_or("TCP")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match ports.len() {
        0 => {
            sec.kv(i, "Port", "<none>");
            sec.kv(i, "Host Port", "<none>");
        }
        1 => {
            sec.kv(i, "Port", text("containerPort"));
            sec.kv(i, "Host Port", text("hostPort"));
        }
        _ => {
            sec.kv(i, "Ports", text("containerPort"));
            sec.kv(i, "Host Ports", text("hostPort"));
        }
    }
    for (field, label) in [("command", "Command"), ("args", "Args")] {
        if let Some(items) = c[field].as_array() {
            sec.kv(i, label, "");
            for item in items {
                sec.line(i + 1, s(item));
            }
        }
    }
    if let Some(cs) = status {
        state_lines(sec, i, "State", &cs["state"]);
        if cs["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
            state_lines(sec, i, "Last State", &cs["lastState"]);
        }
        sec.kv(i, "Ready", if cs["ready"] == true { "True" } else { "False" });
        sec.kv(
            i,
            "Restart Count",
            cs["restartCount"].as_i64().unwrap_or(0).to_string(),
        );
    }
    for (field, label) in [("limits", "Limits"), ("requests", "Requests")] {
        if let Some(map) = c["resources"][field].as_object().filter(|m| !m.is_empty()) {
            sec.kv(i, label, "");
            for (k, v) in map {
                sec.kv(i + 1, k, s(v));
            }
        }
    }
    for (field, label) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        let p = &c[field];
        if p.is_object() {
            sec.kv(i, label, probe_text(p));
        }
    }
    let env = c["env"].as_array().cloned().unwrap_or_default();
    if env.is_empty() {
        sec.kv(i, "Environment", "<none>");
    } else {
        sec.kv(i, "Environment", "");
    }
    for e in &env {
        let value = match e["value"].as_str() {
            Some(v) => v.to_string(),
            None => {
                let from = &e["valueFrom"];
                if let Some(f) = from["fieldRef"]["fieldPath"].as_str() {
                    let resolved = pod.map(|p| field_value(p, f)).unwrap_or_default();
                    format!(
                        "{resolved} ({}:{f})",
                        from["fieldRef"]["apiVersion"].as_str().unwrap_or("")
                    )
                } else if let Some(r) = from["resourceFieldRef"]["resource"].as_str() {
                    format!(
                        "{} ({r})",
                        from["resourceFieldRef"]["containerName"].as_str().unwrap_or("")
                    )
                } else if let Some(k) = from["configMapKeyRef"]["key"].as_str() {
                    format!(
                        "<set to the key '{k}' of config map '{}'>\tOptional: {}",
                        s(&from["configMapKeyRef"]["name"]),
                        from["configMapKeyRef"]["optional"] == true
                    )
                } else if let Some(k) = from["secretKeyRef"]["key"].as_str() {
                    format!(
                        "<set to the key '{k}' in secret '{}'>\tOptional: {}",
                        s(&from["secretKeyRef"]["name"]),
                        from["secretKeyRef"]["optional"] == true
                    )
                } else {
                    String::new()
                }
            }
        };
        sec.kv(i + 1, &s(&e["name"]), value);
    }
    let mounts: Vec<String> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mode = if v["readOnly"] == true { "ro" } else { "rw" };
            format!("{} from {} ({mode})", s(&v["mountPath"]), s(&v["name"]))
        })
        .collect();
    if mounts.is_empty() {
        sec.kv(i, "Mounts", "<none>");
    } else {
        sec.kv(i, "Mounts", "");
    }
    for m in mounts {
        sec.line(i + 1, m);
    }
}

/// A pod field named by a downward-API fieldPath (`metadata.name`, `status.podIP`, …).
fn field_value(pod: &Value, path: &str) -> String {
    let mut at = pod;
    for part in path.split('.') {
        at = &at[part];
    }
    at.as_str().unwrap_or_default().to_string()
}

/// `http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3`, from the
/// probe's own values (kubectl prints what is stored).
fn probe_text(p: &Value) -> String {
    let action = if let Some(h) = p["httpGet"].as_object() {
        let scheme = h
            .get("scheme")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_lowercase();
        let scheme = if scheme.is_empty() {
            String::new()
        } else {
            format!("{scheme}:")
        };
        format!(
            "http-get {scheme}//{}:{}{}",
            h.get("host").and_then(Value::as_str).unwrap_or(""),
            h.get("port").map(s).unwrap_or_default(),
            h.get("path").and_then(Value::as_str).unwrap_or(""),
        )
    } else if let Some(t) = p["tcpSocket"].as_object() {
        format!(
            "tcp-socket {}:{}",
            t.get("host").and_then(Value::as_str).unwrap_or(""),
            t.get("port").map(s).unwrap_or_default()
        )
    } else if let Some(cmd) = p["exec"]["command"].as_array() {
        format!("exec [{}]", cmd.iter().map(s).collect::<Vec<_>>().join(" "))
    } else if let Some(g) = p["grpc"].as_object() {
        format!(
            "grpc <pod>:{} {}",
            g.get("port").map(s).unwrap_or_default(),
            g.get("service").and_then(Value::as_str).unwrap_or("")
        )
    } else {
        "unknown".into()
    };
    let n = |k: &str| p[k].as_i64().unwrap_or(0);
    format!(
        "{action} delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds"),
        n("timeoutSeconds"),
        n("periodSeconds"),
        n("successThreshold"),
        n("failureThreshold")
    )
}

fn selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let values: Vec<String> = e["values"].as_array().into_iter().flatten().map(s).collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{} in ({})", s(&e["key"]), values.join(",")),
            "NotIn" => format!("{} notin ({})", s(&e["key"]), values.join(",")),
            "Exists" => s(&e["key"]),
            _ => format!("!{}", s(&e["key"])),
        });
    }
    parts.join(",")
}

/// kubectl's `DescribePodTemplate` as `rollout history --revision` prints it: the describe lines
/// with their tabs as they are (no alignment).
pub fn pod_template_text(tpl: &Value) -> String {
    let mut sec = Section::default();
    template(&mut sec, tpl);
    sec.text
}

fn template(sec: &mut Section, tpl: &Value) {
    sec.kv(0, "Pod Template", "");
    sec.map(1, "Labels", &tpl["metadata"]["labels"], "=");
    if tpl["metadata"]["annotations"].is_object() {
        sec.map(1, "Annotations", &tpl["metadata"]["annotations"], ": ");
    }
    if let Some(sa) = tpl["spec"]["serviceAccountName"].as_str() {
        sec.kv(1, "Service Account", sa);
    }
    if let Some(inits) = tpl["spec"]["initContainers"].as_array().filter(|a| !a.is_empty()) {
        sec.kv(1, "Init Containers", "");
        for c in inits {
            container(sec, "   ", c, None, None);
        }
    }
    sec.kv(1, "Containers", "");
    for c in tpl["spec"]["containers"].as_array().into_iter().flatten() {
        container(sec, "   ", c, None, None);
    }
    volumes(sec, 1, "   ", &tpl["spec"]["volumes"]);
    sec.map(1, "Node-Selectors", &tpl["spec"]["nodeSelector"], "=");
    let tolerations: Vec<String> = tpl["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(toleration)
        .collect();
    sec.list(1, "Tolerations", &tolerations);
}

fn conditions_table(sec: &mut Section, st: &Value) {
    sec.kv(0, "Conditions", "");
    let mut rows = vec![
        strings(&["Type", "Status", "Reason"]),
        strings(&["----", "------", "------"]),
    ];
    for c in st["conditions"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&c["type"]),
            s(&c["status"]),
            c["reason"].as_str().unwrap_or("").to_string(),
        ]);
    }
    sec.rows(1, &rows);
}

async fn deployment(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    sec.kv(0, "CreationTimestamp", time(&m["creationTimestamp"]));
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    sec.kv(0, "Selector", selector_text(&spec["selector"]));
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    sec.kv(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            n(&spec["replicas"]),
            n(&st["updatedReplicas"]),
            n(&st["replicas"]),
            n(&st["availableReplicas"]),
            n(&st["unavailableReplicas"])
        ),
    );
    let strategy = spec["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
    sec.kv(0, "StrategyType", strategy);
    sec.kv(0, "MinReadySeconds", n(&spec["minReadySeconds"]).to_string());
    if strategy == "RollingUpdate" {
        let ru = &spec["strategy"]["rollingUpdate"];
        sec.kv(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                s(&ru["maxUnavailable"]),
                s(&ru["maxSurge"])
            ),
        );
    }
    template(sec, &spec["template"]);
    conditions_table(sec, st);
    // The ReplicaSets this Deployment controls: the one matching its template is new, the rest old.
    let revision = m["annotations"]["deployment.kubernetes.io/revision"].clone();
    let owned = super::rollout::replica_sets(ctx, o).await?;
    let describe_rs = |rs: &Value| {
        format!(
            "{} ({}/{} replicas created)",
            s(&rs["metadata"]["name"]),
            n(&rs["status"]["replicas"]),
            n(&rs["spec"]["replicas"])
        )
    };
    let (new, old): (Vec<&Value>, Vec<&Value>) = owned
        .iter()
        .partition(|rs| rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == revision);
    let old: Vec<String> = old
        .into_iter()
        .filter(|rs| n(&rs["spec"]["replicas"]) > 0 || n(&rs["status"]["replicas"]) > 0)
        .map(describe_rs)
        .collect();
    sec.kv(
        0,
        "OldReplicaSets",
        if old.is_empty() {
            "<none>".into()
        } else {
            old.join(", ")
        },
    );
    sec.kv(
        0,
        "NewReplicaSet",
        new.first()
            .map(|rs| describe_rs(rs))
            .unwrap_or_else(|| "<none>".into()),
    );
    Ok(())
}

/// kubectl's `getPodStatusForController`: the phases of the pods `o`'s selector finds that `o`
/// controls, as `Pods Status` shows them.
async fn pods_status(ctx: &Ctx, o: &Value) -> anyhow::Result<String> {
    let pods = ctx.catalog().await?.resolve("pods")?;
    let namespace = o["metadata"]["namespace"].as_str();
    let selector = selector_text(&o["spec"]["selector"]);
    let items = ctx
        .list(
            pods,
            namespace,
            Some(selector.as_str()).filter(|s| !s.is_empty()),
            None,
        )
        .await?;
    let mut counts = [0; 4];
    for pod in items.iter().filter(|p| {
        p["metadata"]["ownerReferences"].as_array().is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == true && r["uid"] == o["metadata"]["uid"])
        })
    }) {
        match pod["status"]["phase"].as_str() {
            Some("Running") => counts[0] += 1,
            Some("Pending") => counts[1] += 1,
            Some("Succeeded") => counts[2] += 1,
            Some("Failed") => counts[3] += 1,
            _ => {}
        }
    }
    let [running, waiting, succeeded, failed] = counts;
    Ok(format!(
        "{running} Running / {waiting} Waiting / {succeeded} Succeeded / {failed} Failed"
    ))
}

/// kubectl's DaemonSet describer (the node counts are written without a tab, as kubectl does).
async fn daemonset(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    sec.kv(0, "Selector", selector_text(&spec["selector"]));
    sec.kv(
        0,
        "Node-Selector",
        format_labels(&spec["template"]["spec"]["nodeSelector"]),
    );
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    for (label, field) in [
        ("Desired Number of Nodes Scheduled", "desiredNumberScheduled"),
        ("Current Number of Nodes Scheduled", "currentNumberScheduled"),
        (
            "Number of Nodes Scheduled with Up-to-date Pods",
            "updatedNumberScheduled",
        ),
        ("Number of Nodes Scheduled with Available Pods", "numberAvailable"),
        ("Number of Nodes Misscheduled", "numberMisscheduled"),
    ] {
        sec.line(0, format!("{label}: {}", n(&st[field])));
    }
    sec.kv(0, "Pods Status", pods_status(ctx, o).await?);
    template(sec, &spec["template"]);
    Ok(())
}

/// kubectl's StatefulSet describer (1.32's).
async fn statefulset(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    sec.kv(0, "CreationTimestamp", time(&m["creationTimestamp"]));
    sec.kv(0, "Selector", selector_text(&spec["selector"]));
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    // kubectl 1.32 (the one skiff is held to) shows neither the service name, nor the pod
    // management policy, nor the claim retention policy; later ones do.
    sec.kv(
        0,
        "Replicas",
        format!("{} desired | {} total", n(&spec["replicas"]), n(&st["replicas"])),
    );
    let strategy = &spec["updateStrategy"];
    sec.field(0, "Update Strategy", strategy["type"].as_str().unwrap_or(""));
    if let Some(partition) = strategy["rollingUpdate"]["partition"].as_i64() {
        sec.kv(1, "Partition", partition.to_string());
        if let Some(max) = strategy["rollingUpdate"].get("maxUnavailable") {
            sec.kv(1, "MaxUnavailable", s(max));
        }
    }
    sec.kv(0, "Pods Status", pods_status(ctx, o).await?);
    template(sec, &spec["template"]);
    let claims = spec["volumeClaimTemplates"].as_array().filter(|c| !c.is_empty());
    let Some(claims) = claims else {
        sec.kv(0, "Volume Claims", "<none>");
        return Ok(());
    };
    sec.kv(0, "Volume Claims", "");
    for claim in claims {
        let class = claim["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
            .as_str()
            .or(claim["spec"]["storageClassName"].as_str())
            .unwrap_or("");
        sec.kv(1, "Name", s(&claim["metadata"]["name"]));
        sec.field(1, "StorageClass", class);
        sec.map(1, "Labels", &claim["metadata"]["labels"], "=");
        sec.map(1, "Annotations", &claim["metadata"]["annotations"], "=");
        let capacity = claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap_or("<default>");
        sec.kv(1, "Capacity", capacity);
        let modes: Vec<String> = claim["spec"]["accessModes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        sec.kv(1, "Access Modes", format!("[{}]", modes.join(" ")));
    }
    Ok(())
}

/// kubectl's Job describer.
fn job(sec: &mut Section, o: &Value) {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    sec.kv(0, "Selector", selector_text(&spec["selector"]));
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    if let Some(by) = owner(o) {
        sec.kv(0, "Controlled By", by);
    }
    if let Some(p) = spec["parallelism"].as_i64() {
        sec.kv(0, "Parallelism", p.to_string());
    }
    sec.kv(
        0,
        "Completions",
        spec["completions"]
            .as_i64()
            .map_or("<unset>".into(), |c| c.to_string()),
    );
    if let Some(mode) = spec["completionMode"].as_str() {
        sec.field(0, "Completion Mode", mode);
    }
    if let Some(suspend) = spec["suspend"].as_bool() {
        sec.kv(0, "Suspend", suspend.to_string());
    }
    if let Some(limit) = spec["backoffLimit"].as_i64() {
        sec.kv(0, "Backoff Limit", limit.to_string());
    }
    if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
        sec.kv(0, "TTL Seconds After Finished", ttl.to_string());
    }
    if st["startTime"].is_string() {
        sec.kv(0, "Start Time", time(&st["startTime"]));
    }
    if st["completionTime"].is_string() {
        sec.kv(0, "Completed At", time(&st["completionTime"]));
    }
    let at = |v: &Value| {
        v.as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
    };
    if let (Some(start), Some(end)) = (at(&st["startTime"]), at(&st["completionTime"])) {
        let took = (end - start).to_std().unwrap_or_default();
        sec.kv(0, "Duration", printer::human_duration(took));
    }
    if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64() {
        sec.kv(0, "Active Deadline Seconds", format!("{deadline}s"));
    }
    let statuses = match st["ready"].as_i64() {
        None => format!(
            "{} Active / {} Succeeded / {} Failed",
            n(&st["active"]),
            n(&st["succeeded"]),
            n(&st["failed"])
        ),
        Some(ready) => format!(
            "{} Active ({ready} Ready) / {} Succeeded / {} Failed",
            n(&st["active"]),
            n(&st["succeeded"]),
            n(&st["failed"])
        ),
    };
    sec.kv(0, "Pods Statuses", statuses);
    if spec["completionMode"] == "Indexed" {
        sec.kv(
            0,
            "Completed Indexes",
            cap_indexes(st["completedIndexes"].as_str().unwrap_or(""), 50),
        );
    }
    template(sec, &spec["template"]);
}

/// `capIndexesListOrNone`: a long list of indexes cut after the first comma past `soft_limit`.
fn cap_indexes(indexes: &str, soft_limit: usize) -> String {
    if indexes.is_empty() {
        return "<none>".into();
    }
    match indexes.get(soft_limit..).and_then(|rest| rest.find(',')) {
        Some(i) => format!("{}...", &indexes[..soft_limit + i + 1]),
        None => indexes.to_owned(),
    }
}

/// `labels.FormatLabels`: `k=v,…` sorted by key, `<none>` when empty.
fn format_labels(map: &Value) -> String {
    let pairs: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

async fn replicaset(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    sec.kv(0, "Selector", selector_text(&spec["selector"]));
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    if let Some(by) = owner(o) {
        sec.kv(0, "Controlled By", by);
    }
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    sec.kv(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            n(&st["replicas"]),
            n(&spec["replicas"])
        ),
    );
    sec.kv(0, "Pods Status", pods_status(ctx, o).await?);
    template(sec, &spec["template"]);
    Ok(())
}

async fn service(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec) = (&o["metadata"], &o["spec"]);
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    let selector: Vec<String> = spec["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    sec.kv(
        0,
        "Selector",
        if selector.is_empty() {
            "<none>".into()
        } else {
            selector.join(",")
        },
    );
    sec.kv(0, "Type", s(&spec["type"]));
    sec.kv(0, "IP Family Policy", s(&spec["ipFamilyPolicy"]));
    sec.kv(
        0,
        "IP Families",
        spec["ipFamilies"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or("<none>".into()),
    );
    sec.kv(0, "IP", s(&spec["clusterIP"]));
    sec.kv(
        0,
        "IPs",
        spec["clusterIPs"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or("<none>".into()),
    );
    // Endpoints: the ready addresses of the Service's EndpointSlices, per port.
    let slices = ctx.catalog().await?.resolve("endpointslices.discovery.k8s.io")?;
    let ns = m["namespace"].as_str().unwrap_or("default");
    let selector = format!("kubernetes.io/service-name={}", s(&m["name"]));
    let slices = ctx.list(slices, Some(ns), Some(&selector), None).await?;
    for p in spec["ports"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("<unset>");
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        sec.kv(0, "Port", format!("{name}  {}/{proto}", s(&p["port"])));
        sec.kv(0, "TargetPort", format!("{}/{proto}", s(&p["targetPort"])));
        if let Some(np) = p["nodePort"].as_i64() {
            sec.kv(0, "NodePort", format!("{name}  {np}/{proto}"));
        }
        let mut endpoints = Vec::new();
        for slice in &slices {
            let port = slice["ports"]
                .as_array()
                .and_then(|ps| {
                    ps.iter()
                        .find(|sp| sp["name"].as_str().unwrap_or("") == p["name"].as_str().unwrap_or(""))
                })
                .and_then(|sp| sp["port"].as_i64());
            for ep in slice["endpoints"].as_array().into_iter().flatten() {
                if ep["conditions"]["ready"] != false {
                    for a in ep["addresses"].as_array().into_iter().flatten() {
                        endpoints.push(match port {
                            Some(port) => format!("{}:{port}", s(a)),
                            None => s(a),
                        });
                    }
                }
            }
        }
        // kubectl shows three and counts the rest.
        let shown = endpoints.iter().take(3).cloned().collect::<Vec<_>>().join(",");
        let text = match endpoints.len() {
            0 => "<none>".to_string(),
            n if n > 3 => format!("{shown} + {} more...", n - 3),
            _ => shown,
        };
        sec.field(0, "Endpoints", &text);
    }
    sec.kv(0, "Session Affinity", s(&spec["sessionAffinity"]));
    if let Some(policy) = spec["externalTrafficPolicy"].as_str() {
        sec.kv(0, "External Traffic Policy", policy);
    }
    if let Some(policy) = spec["internalTrafficPolicy"].as_str() {
        sec.kv(0, "Internal Traffic Policy", policy);
    }
    Ok(())
}

async fn node(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let (m, spec, st) = (&o["metadata"], &o["spec"], &o["status"]);
    let roles: Vec<&str> = m["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    sec.kv(
        0,
        "Roles",
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        },
    );
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    sec.kv(0, "CreationTimestamp", time(&m["creationTimestamp"]));
    let taints: Vec<String> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t["value"].as_str() {
            Some(v) => format!("{}={v}:{}", s(&t["key"]), s(&t["effect"])),
            None => format!("{}:{}", s(&t["key"]), s(&t["effect"])),
        })
        .collect();
    sec.kv(
        0,
        "Taints",
        if taints.is_empty() {
            "<none>".into()
        } else {
            taints.join(", ")
        },
    );
    sec.kv(
        0,
        "Unschedulable",
        if spec["unschedulable"] == true {
            "true"
        } else {
            "false"
        },
    );
    // The node's heartbeat Lease, as kubectl shows it.
    let request = http::Request::get(format!(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
        s(&m["name"])
    ))
    .body(Vec::new())?;
    if let Ok(lease) = ctx.client.request::<Value>(request).await {
        let or_unset = |v: &Value| {
            if v.is_null() {
                "<unset>".to_string()
            } else {
                time(v)
            }
        };
        sec.kv(0, "Lease", "");
        sec.kv(
            1,
            "HolderIdentity",
            lease["spec"]["holderIdentity"].as_str().unwrap_or("<unset>"),
        );
        sec.kv(1, "AcquireTime", or_unset(&lease["spec"]["acquireTime"]));
        sec.kv(1, "RenewTime", or_unset(&lease["spec"]["renewTime"]));
    }
    sec.kv(0, "Conditions", "");
    let rows: Vec<Vec<String>> = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            // kubectl writes `%v \t%v \t%s \t%s \t%v \t%v`: trailing spaces on all but the last.
            vec![
                format!("{} ", s(&c["type"])),
                format!("{} ", s(&c["status"])),
                format!("{} ", time(&c["lastHeartbeatTime"])),
                format!("{} ", time(&c["lastTransitionTime"])),
                format!("{} ", c["reason"].as_str().unwrap_or("")),
                c["message"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    let mut table = vec![
        strings(&[
            "Type",
            "Status",
            "LastHeartbeatTime",
            "LastTransitionTime",
            "Reason",
            "Message",
        ]),
        strings(&[
            "----",
            "------",
            "-----------------",
            "------------------",
            "------",
            "-------",
        ]),
    ];
    table.extend(rows);
    sec.rows(1, &table);
    sec.kv(0, "Addresses", "");
    for a in st["addresses"].as_array().into_iter().flatten() {
        sec.kv(1, &s(&a["type"]), s(&a["address"]));
    }
    for (field, label) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        sec.kv(0, label, "");
        for (k, v) in st[field].as_object().into_iter().flatten() {
            sec.kv(1, k, s(v));
        }
    }
    sec.kv(0, "System Info", "");
    let info = &st["nodeInfo"];
    for (field, label) in [
        ("machineID", "Machine ID"),
        ("systemUUID", "System UUID"),
        ("bootID", "Boot ID"),
        ("kernelVersion", "Kernel Version"),
        ("osImage", "OS Image"),
        ("operatingSystem", "Operating System"),
        ("architecture", "Architecture"),
        ("containerRuntimeVersion", "Container Runtime Version"),
        ("kubeletVersion", "Kubelet Version"),
        ("kubeProxyVersion", "Kube-Proxy Version"),
    ] {
        sec.field(1, label, info[field].as_str().unwrap_or(""));
    }
    sec.kv(0, "PodCIDR", s(&spec["podCIDR"]));
    let cidrs: Vec<String> = spec["podCIDRs"].as_array().into_iter().flatten().map(s).collect();
    sec.kv(
        0,
        "PodCIDRs",
        if cidrs.is_empty() {
            "<none>".into()
        } else {
            cidrs.join(",")
        },
    );
    // Non-terminated pods bound here.
    let pods = ctx.catalog().await?.resolve("pods")?;
    let fields = format!(
        "spec.nodeName={},status.phase!=Succeeded,status.phase!=Failed",
        s(&m["name"])
    );
    let items = ctx.list(pods, None, None, Some(&fields)).await?;
    node_resources(sec, st, &items);
    Ok(())
}

/// kubectl's `describeNodeResource`: each non-terminated pod's CPU and memory requests and limits
/// with their share of the node's allocatable, then the totals ("Allocated resources").
fn node_resources(sec: &mut Section, st: &Value, pods: &[Value]) {
    let allocatable = match st["allocatable"].as_object() {
        Some(a) if !a.is_empty() => resources::resource_list(&st["allocatable"]),
        _ => resources::resource_list(&st["capacity"]),
    };
    let whole = |name: &str| allocatable.get(name).copied().unwrap_or_default();
    let (cpu, memory) = (whole("cpu").milli_value(), whole("memory").value());
    // `quantity (share%)`: the share of `of` (a whole, in millis for CPU); None shows 0%.
    let share = |list: &resources::ResourceList, name: &str, of: Option<i128>| {
        let q = list.get(name).copied().unwrap_or_default();
        let part = if name == "cpu" { q.milli_value() } else { q.value() };
        let percent = of.map_or(0, |of| resources::percent(part, of));
        format!("{} ({percent}%)", q.canonical())
    };
    sec.kv(0, "Non-terminated Pods", format!("({} in total)", pods.len()));
    let mut table = vec![
        strings(&[
            "Namespace",
            "Name",
            "",
            "CPU Requests",
            "CPU Limits",
            "Memory Requests",
            "Memory Limits",
            "Age",
        ]),
        strings(&[
            "---------",
            "----",
            "",
            "------------",
            "----------",
            "---------------",
            "-------------",
            "---",
        ]),
    ];
    for p in pods {
        let (requests, limits) = (resources::pod_requests(p), resources::pod_limits(p));
        table.push(vec![
            s(&p["metadata"]["namespace"]),
            s(&p["metadata"]["name"]),
            String::new(),
            share(&requests, "cpu", Some(cpu)),
            share(&limits, "cpu", Some(cpu)),
            share(&requests, "memory", Some(memory)),
            share(&limits, "memory", Some(memory)),
            printer::age(p["metadata"]["creationTimestamp"].as_str()),
        ]);
    }
    sec.rows(1, &table);

    sec.kv(0, "Allocated resources", "");
    sec.line(1, "(Total limits may be over 100 percent, i.e., overcommitted.)");
    let (requests, limits) = resources::total_requests_and_limits(pods);
    let mut table = vec![
        strings(&["Resource", "Requests", "Limits"]),
        strings(&["--------", "--------", "------"]),
    ];
    // Totals against a zero whole show 0% (the per-pod rows divide by it all the same).
    let total_row = |name: &str, of: i128| {
        let of = (of != 0).then_some(of);
        vec![
            name.to_string(),
            share(&requests, name, of),
            share(&limits, name, of),
        ]
    };
    table.push(total_row("cpu", cpu));
    table.push(total_row("memory", memory));
    table.push(total_row("ephemeral-storage", whole("ephemeral-storage").value()));
    for name in allocatable.keys().filter(|n| n.starts_with("hugepages-")) {
        table.push(total_row(name, whole(name).value()));
    }
    let standard = ["cpu", "memory", "ephemeral-storage", "pods"];
    for name in allocatable
        .keys()
        .filter(|n| !n.starts_with("hugepages-") && !standard.contains(&n.as_str()))
    {
        let q = |list: &resources::ResourceList| list.get(name).copied().unwrap_or_default().canonical();
        table.push(vec![name.clone(), q(&requests), q(&limits)]);
    }
    sec.rows(1, &table);
}

/// ConfigMaps show their data; Secrets only the size of each value.
fn data(sec: &mut Section, o: &Value) {
    let m = &o["metadata"];
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    sec.line(0, "");
    if o["kind"] == "Secret" {
        sec.kv(0, "Type", s(&o["type"]));
        sec.line(0, "");
        sec.line(0, "Data");
        sec.line(0, "====");
        for (k, v) in o["data"].as_object().into_iter().flatten() {
            use base64::Engine;
            let len = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or(""))
                .map(|b| b.len())
                .unwrap_or(0);
            sec.kv(0, k, format!("{len} bytes"));
        }
        return;
    }
    sec.line(0, "Data");
    sec.line(0, "====");
    for (k, v) in o["data"].as_object().into_iter().flatten() {
        sec.line(0, format!("{k}:"));
        sec.line(0, "----");
        sec.line(0, v.as_str().unwrap_or(""));
        sec.line(0, "");
    }
    sec.line(0, "");
    sec.line(0, "BinaryData");
    sec.line(0, "====");
    for (k, v) in o["binaryData"].as_object().into_iter().flatten() {
        sec.line(
            0,
            format!("{k}: {} bytes", v.as_str().map_or(0, |b| b.len() * 3 / 4)),
        );
    }
    sec.line(0, "");
}

/// kubectl's generic describer: every field but metadata as an indented tree.
fn generic(sec: &mut Section, o: &Value) {
    let m = &o["metadata"];
    sec.map(0, "Labels", &m["labels"], "=");
    sec.map(0, "Annotations", &m["annotations"], ": ");
    sec.kv(0, "API Version", s(&o["apiVersion"]));
    sec.kv(0, "Kind", s(&o["kind"]));
    for (k, v) in o.as_object().into_iter().flatten() {
        if !["apiVersion", "kind", "metadata"].contains(&k.as_str()) {
            tree(sec, 0, k, v);
        }
    }
}

fn tree(sec: &mut Section, indent: usize, key: &str, v: &Value) {
    let mut title = key.to_string();
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    match v {
        Value::Object(map) => {
            sec.kv(indent, &title, "");
            for (k, v) in map {
                tree(sec, indent + 1, k, v);
            }
        }
        Value::Array(items) => {
            sec.kv(indent, &title, "");
            for item in items {
                match item {
                    Value::Object(map) => {
                        for (k, v) in map {
                            tree(sec, indent + 1, k, v);
                        }
                    }
                    other => sec.line(indent + 1, s(other)),
                }
            }
        }
        other => sec.kv(indent, &title, s(other)),
    }
}

async fn events(ctx: &Ctx, sec: &mut Section, o: &Value) -> anyhow::Result<()> {
    let m = &o["metadata"];
    let ns = m["namespace"].as_str().unwrap_or("default");
    let mut fields = format!(
        "involvedObject.name={},involvedObject.uid={}",
        s(&m["name"]),
        s(&m["uid"])
    );
    if m["namespace"].is_string() {
        fields.push_str(&format!(",involvedObject.namespace={ns}"));
    }
    let events = ctx.catalog().await?.resolve("events")?;
    let mut items = ctx.list(events, Some(ns), None, Some(&fields)).await?;
    if items.is_empty() {
        sec.kv(0, "Events", "<none>");
        return Ok(());
    }
    let when = |e: &Value| {
        e["lastTimestamp"]
            .as_str()
            .or(e["eventTime"].as_str())
            .or(e["firstTimestamp"].as_str())
            .unwrap_or("")
            .to_string()
    };
    items.sort_by_key(|e| when(e));
    sec.kv(0, "Events", "");
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            // As kubectl's DescribeEvents: the age of the first occurrence (eventTime, else
            // firstTimestamp), and for a series or a repeated event the age of the last one too.
            let first = printer::age(e["eventTime"].as_str().or(e["firstTimestamp"].as_str()));
            let count = e["count"].as_i64().unwrap_or(0);
            let age = if e["series"].is_object() {
                format!(
                    "{} (x{} over {first})",
                    printer::age(e["series"]["lastObservedTime"].as_str()),
                    e["series"]["count"].as_i64().unwrap_or(0)
                )
            } else if count > 1 {
                format!(
                    "{} (x{count} over {first})",
                    printer::age(e["lastTimestamp"].as_str())
                )
            } else {
                first
            };
            let from = e["source"]["component"]
                .as_str()
                .or(e["reportingComponent"].as_str())
                .unwrap_or("")
                .to_string();
            vec![
                s(&e["type"]),
                s(&e["reason"]),
                age,
                from,
                match e["involvedObject"]["fieldPath"]
                    .as_str()
                    .filter(|p| !p.is_empty())
                {
                    Some(path) => format!("{path}: {}", e["message"].as_str().unwrap_or("").trim()),
                    None => e["message"].as_str().unwrap_or("").trim().to_string(),
                },
            ]
        })
        .collect();
    let mut table = vec![
        strings(&["Type", "Reason", "Age", "From", "Message"]),
        strings(&["----", "------", "----", "----", "-------"]),
    ];
    table.extend(rows);
    sec.rows(1, &table);
    Ok(())
}
