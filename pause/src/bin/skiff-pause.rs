//! The pause process of a pod sandbox, the counterpart of Kubernetes' build/pause/linux/pause.c.
//!
//! It holds the pod's namespaces open while the app containers come and go: it sleeps, reaps the
//! zombies re-parented to it (it is PID 1 of the sandbox's PID namespace), and exits 0 on SIGTERM or
//! SIGINT. Signals are taken synchronously with `sigwait` on a blocked set, so no handler (and no
//! unsafe code) is needed. Statically linked (see build.rs): the sandbox rootfs holds only this file.

use nix::{
    sys::{
        signal::{SigSet, Signal},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::getpid,
};

fn main() {
    if std::env::args().nth(1).as_deref() == Some("-v") {
        println!("skiff-pause {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if getpid().as_raw() != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("pause: blocking signals: {e}");
        std::process::exit(1);
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                eprintln!("Shutting down, got signal");
                std::process::exit(0);
            }
            Ok(_) => reap(),
            Err(e) => eprintln!("pause: sigwait: {e}"),
        }
    }
}

/// Reaps every child that has exited (one SIGCHLD may stand for several).
fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}
