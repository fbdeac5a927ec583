//! The scheduler of skiff, the counterpart of kube-scheduler.
//!
//! It will hold the scheduling framework: filter and score plugins over a snapshot of nodes and pods,
//! and binding through the `pods/binding` subresource. Nothing is implemented yet: see issue 4.
