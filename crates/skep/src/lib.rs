//! skep: a Kubernetes-style controller for Docker Swarm that runs bulk OCR
//! jobs. This library holds everything but `main`: the store, the
//! controller, the runtimes and the CLI commands.

pub mod cli;
pub mod controller;
pub mod files;
pub mod http;
pub mod metrics;
pub mod objects;
pub mod paths;
pub mod runtime;
pub mod store;
