//! [`ContainerStreams`] of the real runtime: containers are found by the annotations containerd's
//! CRI plugin puts on them (`io.kubernetes.cri.sandbox-namespace`, `…sandbox-name`,
//! `…container-name`), so a restarted kubelet serves the logs of containers it did not start; exec
//! is `runc exec` in the foreground, so its exit code is the command's.

use std::process::Command;

use super::{ContainerRef, ContainerStreams};
use crate::{
    runc_runtime::{
        CONTAINER_NAME, CONTAINER_TYPE, RuncRuntime, SANDBOX_NAME, SANDBOX_NAMESPACE, SANDBOX_UID,
    },
    runtime::RuntimeError,
};

impl ContainerStreams for RuncRuntime {
    fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Result<Option<ContainerRef>, RuntimeError> {
        let mut matching: Vec<_> = list(self)?
            .into_iter()
            .filter(|s| {
                s.annotation(CONTAINER_TYPE) == Some("container")
                    && s.annotation(SANDBOX_NAMESPACE) == Some(namespace)
                    && s.annotation(SANDBOX_NAME) == Some(pod)
                    && s.annotation(CONTAINER_NAME) == Some(container)
            })
            .collect();
        // A pod deleted and created again under the same name may briefly have two: the running
        // one, else the newest, is the one asked about.
        matching
            .sort_by(|a, b| (a.status == "running", &a.created).cmp(&(b.status == "running", &b.created)));
        Ok(matching.pop().map(|s| {
            let uid = s.annotation(SANDBOX_UID).unwrap_or_default().to_owned();
            ContainerRef {
                log: self.log_path(&uid, container),
                pod_uid: uid,
                id: s.id,
            }
        }))
    }

    fn pod_network(&self, namespace: &str, pod: &str) -> Result<Option<std::path::PathBuf>, RuntimeError> {
        let sandbox = list(self)?.into_iter().find(|s| {
            s.annotation(CONTAINER_TYPE) == Some("sandbox")
                && s.annotation(SANDBOX_NAMESPACE) == Some(namespace)
                && s.annotation(SANDBOX_NAME) == Some(pod)
                && s.status == "running"
                && s.pid > 0
        });
        Ok(sandbox.map(|s| format!("/proc/{}/ns/net", s.pid).into()))
    }

    fn running(&self, container: &ContainerRef) -> bool {
        matches!(self.runc().state(&container.id), Ok(Some(s)) if s.status == "running")
    }

    fn exec_command(&self, container: &ContainerRef, command: &[String], tty: bool) -> Command {
        let mut args: Vec<&str> = vec!["exec"];
        if tty {
            args.push("--tty");
        }
        args.push(&container.id);
        args.extend(command.iter().map(String::as_str));
        self.runc().command(&args)
    }
}

/// `runc list`, tried again when it fails: it fails as a whole when a container it is listing is
/// deleted meanwhile (a restart, a pod going away), which says nothing about the one asked for.
fn list(rt: &RuncRuntime) -> Result<Vec<crate::runc::State>, RuntimeError> {
    let mut tries = 0;
    loop {
        match rt.runc().list() {
            Ok(list) => return Ok(list),
            Err(_) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
