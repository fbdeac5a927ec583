//! The OS boundary: [`RuleSink`] applies rendered rules with the real tools (`iptables-restore
//! --noflush`, `iptables`, `nft -f`, `ip`) in the node's network namespace, or records them
//! ([`FakeSink`]) for unit tests.
//!
//! Like kube-proxy, the iptables side never rewrites a built-in chain: restore input declares only our
//! own chains, and inserts (`-I`) the jumps from built-in chains that `iptables-save` did not show. The nft
//! side owns one table. Both keep traffic to the service CIDR on the node with a route of the service
//! CIDR to `lo`: a VIP without rules yet is discarded there, never sent to the default gateway (a dummy
//! interface would do too, but this machine kind's kernel has no dummy driver). Locally generated
//! connections still get a source address of a real interface, and are rerouted after DNAT. Cleanup
//! removes exactly what was made: our jumps, our chains, our table, the route.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use crate::{Cidr, iptables, nftables};

/// A tool failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program exited non-zero.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program and arguments.
        program: String,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// Where rules go. Calls block (they run a process); the proxier calls them off the async runtime.
pub trait RuleSink: Send + Sync {
    /// Makes sure the service CIDR is routed locally. Idempotent; run at every full sync.
    fn ensure_route(&self) -> Result<(), SinkError>;
    /// `iptables-save` of the filter and nat tables (a full sync reads what of ours exists).
    fn iptables_save(&self) -> Result<String, SinkError>;
    /// Applies iptables-restore input with `--noflush`, atomically per table.
    fn iptables_restore(&self, input: &str) -> Result<(), SinkError>;
    /// Applies `nft -f` input, atomically.
    fn nft(&self, input: &str) -> Result<(), SinkError>;
    /// Removes everything any mode created.
    fn cleanup(&self) -> Result<(), SinkError>;
}

/// The real tools, in a network namespace (`nsenter --net=<path>`) or the current one.
#[derive(Debug, Clone)]
pub struct SystemSink {
    /// The node's network namespace (e.g. `/run/netns/node1`); None = this process's.
    pub netns: Option<PathBuf>,
    /// The service CIDR to route to the dummy interface.
    pub service_cidr: Cidr,
}

impl SystemSink {
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args);
        cmd
    }

    /// Runs `program args` with `stdin`; its stdout, or an error with its stderr.
    pub fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, SinkError> {
        let name = format!("{program} {}", args.join(" "));
        let mut child = self
            .command(program, args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| SinkError::Spawn {
                program: program.to_owned(),
                source,
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error shows up as the tool's failure below.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(|source| SinkError::Spawn {
            program: program.to_owned(),
            source,
        })?;
        if !out.status.success() {
            let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            stderr.truncate(2000);
            return Err(SinkError::Failed {
                program: name,
                status: out.status.to_string(),
                stderr: stderr.trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn succeeds(&self, program: &str, args: &[&str]) -> bool {
        self.run(program, args, None).is_ok()
    }
}

impl RuleSink for SystemSink {
    fn ensure_route(&self) -> Result<(), SinkError> {
        let cidr = self.service_cidr.to_string();
        self.run("ip", &["route", "replace", &cidr, "dev", "lo"], None)
            .map(drop)
    }

    fn iptables_save(&self) -> Result<String, SinkError> {
        let mut out = self.run("iptables-save", &["-t", "filter"], None)?;
        out.push_str(&self.run("iptables-save", &["-t", "nat"], None)?);
        Ok(out)
    }

    fn iptables_restore(&self, input: &str) -> Result<(), SinkError> {
        if input.is_empty() {
            return Ok(());
        }
        self.run("iptables-restore", &["-w", "5", "--noflush"], Some(input))
            .map(drop)
    }

    fn nft(&self, input: &str) -> Result<(), SinkError> {
        if input.is_empty() {
            return Ok(());
        }
        self.run("nft", &["-f", "-"], Some(input)).map(drop)
    }

    fn cleanup(&self) -> Result<(), SinkError> {
        // iptables: our jumps and chains, in one restore.
        let existing = iptables::Existing::parse(&self.iptables_save()?);
        self.iptables_restore(&existing.cleanup_text())?;
        // nftables: our table.
        if self.succeeds("nft", &["list", "table", "ip", nftables::TABLE]) {
            self.run("nft", &["delete", "table", "ip", nftables::TABLE], None)?;
        }
        let cidr = self.service_cidr.to_string();
        let routes = self.run("ip", &["route", "show", &cidr, "dev", "lo"], None)?;
        if !routes.trim().is_empty() {
            self.run("ip", &["route", "del", &cidr, "dev", "lo"], None)?;
        }
        Ok(())
    }
}

/// What a [`FakeSink`] was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `ensure_route`.
    EnsureRoute,
    /// `iptables_restore` input.
    IptablesRestore(String),
    /// `nft` input.
    Nft(String),
    /// `cleanup`.
    Cleanup,
}

/// Records calls; can be told to fail the next apply.
#[derive(Debug, Clone, Default)]
pub struct FakeSink {
    /// Every call so far.
    pub calls: Arc<Mutex<Vec<Call>>>,
    /// When set, the next apply fails (and clears this).
    pub fail_next: Arc<Mutex<bool>>,
    /// What `iptables_save` returns.
    pub saved: Arc<Mutex<String>>,
}

impl FakeSink {
    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: Call, is_apply: bool) -> Result<(), SinkError> {
        let fail = is_apply
            && self
                .fail_next
                .lock()
                .map(|mut f| std::mem::replace(&mut *f, false))
                .unwrap_or(false);
        if fail {
            return Err(SinkError::Failed {
                program: "fake".into(),
                status: "exit status: 1".into(),
                stderr: "told to fail".into(),
            });
        }
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
        Ok(())
    }
}

impl RuleSink for FakeSink {
    fn ensure_route(&self) -> Result<(), SinkError> {
        self.record(Call::EnsureRoute, false)
    }
    fn iptables_save(&self) -> Result<String, SinkError> {
        Ok(self.saved.lock().map(|e| e.clone()).unwrap_or_default())
    }
    fn iptables_restore(&self, input: &str) -> Result<(), SinkError> {
        self.record(Call::IptablesRestore(input.to_owned()), true)
    }
    fn nft(&self, input: &str) -> Result<(), SinkError> {
        self.record(Call::Nft(input.to_owned()), true)
    }
    fn cleanup(&self) -> Result<(), SinkError> {
        self.record(Call::Cleanup, false)
    }
}
