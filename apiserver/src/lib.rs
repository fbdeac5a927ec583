//! The skiff API server, the counterpart of kube-apiserver.
//!
//! - [`storage`]: the Store trait with etcd's semantics and its backends (embedded SQLite, etcd, memory);
//! - [`watch_cache`]: one store watch per resource fanned out to every client watch (upstream's cacher);
//! - [`server`]: the HTTP surface (health, version, and the REST paths served so far).

pub mod fieldmanager;
pub mod patch;
pub mod server;
pub mod storage;
pub mod watch_cache;
