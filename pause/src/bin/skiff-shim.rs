//! The per-container monitor, in the role of containerd-shim / conmon: it runs `runc run` in the
//! foreground (so runc stays the container's parent and learns its exit status), and when the
//! container ends writes the exit code to a file the kubelet reads. It runs in its own process group
//! (the kubelet starts it so), so a kubelet that stops or restarts takes neither it nor the container
//! down, and the exit code is still there when a new kubelet looks.
//!
//! Usage: `skiff-shim <exit-file> <runc> <runc args>...`; stdio is passed through to runc (the kubelet
//! points it at the container's log file). The exit file holds the code as decimal text, written to a
//! temporary name and renamed, so a reader never sees half of it.

use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [exit_file, runc, rest @ ..] = args.as_slice() else {
        eprintln!("usage: skiff-shim <exit-file> <runc> <runc args>...");
        std::process::exit(2);
    };
    let code = match Command::new(runc).args(rest).status() {
        // runc reports a container killed by signal N as 128+N itself; a runc killed by a signal
        // (it should not be) is reported the same way.
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
        Err(e) => {
            eprintln!("skiff-shim: running {runc}: {e}");
            -1
        }
    };
    let tmp = format!("{exit_file}.tmp");
    if let Err(e) = std::fs::write(&tmp, code.to_string()).and_then(|()| std::fs::rename(&tmp, exit_file)) {
        eprintln!("skiff-shim: writing {exit_file}: {e}");
        std::process::exit(1);
    }
}
