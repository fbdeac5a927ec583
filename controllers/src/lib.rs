//! The controller-manager of skiff, the counterpart of kube-controller-manager.
//!
//! One module per controller will live here (replicaset, deployment, endpointslice, garbage collector,
//! namespace, node lifecycle, node IPAM), each a pure `plan()` beside thin side effects, all talking to the
//! API server through kube-rs only. Nothing is implemented yet: see issue 4.
