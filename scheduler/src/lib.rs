//! The scheduler of skiff, the counterpart of kube-scheduler (pkg/scheduler).
//!
//! A scheduling framework of filter and score plugins over a snapshot of nodes and the pods placed on
//! them (`framework`, `plugins`), and the pure resource accounting they share (`resources`).

pub mod framework;
pub mod plugins;
pub mod quantity;
pub mod resources;
