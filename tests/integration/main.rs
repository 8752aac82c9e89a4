//! One integration-test binary with topic modules. Real sockets, the sim in-process, the real
//! `faultline` binary for CLI behaviour.

mod article;
mod cli;
mod client;
mod fault;
mod gpu_degrade;
mod kube;
mod kube_auth;
mod layers;
mod leftovers;
mod load;
mod netns;
mod network_delay;
mod node_drain;
mod overload;
mod process_pause;
mod prometheus;
mod report;
mod runner;
mod saturation;
mod schemas;
mod shipped;
mod spec;
mod ssh_gray;
mod ssh_nodes;
mod sshd;
mod tls;
mod truth;
mod zero_sse;
