//! The node agent of skiff, the counterpart of the kubelet with containerd and runc underneath.
//!
//! It will register the node, renew its Lease, run one pod worker per pod, build sandboxes (a pause
//! process plus CNI networking), run app containers with runc, run probes and serve logs and exec on
//! :10250. Nothing is implemented yet: see issue 5.
