//! sandlot runs untrusted Python and JavaScript code-node snippets behind a local HTTP
//! endpoint. The server forks a single-use child per request from a pre-warmed zygote; the
//! child locks itself down (rlimits, seccomp) before it reads a line of user code.
//!
//! Reading order:
//! - [`run`]: what a run is — limits, response, error kinds; [`run_request`]: its request;
//!   [`api`]: which API it came in by.
//! - [`server`]: the HTTP APIs, one module per API family.
//! - [`supervisor`]: the server's side of the zygotes: starting, restarting, running a job.
//! - [`broker`]: `SystemHelper.httpRequest`, performed by the server for a child.
//! - [`protocol`] and [`control_socket`]: the messages between server, zygote and child;
//!   [`output_region`]: the file a run's output is written to, which outlives the child, and
//!   [`output_files`]: the files it writes, kept in the same file; [`input_files`]: the files
//!   a request gives it.
//! - [`zygote`]: the interpreters (Python, JavaScript) and the child's life.
//! - [`jail`]: the steps that confine a child, one per file; [`throwaway_process`]: a forked
//!   process that tries something for the caller (the jail probe, the native-library scan).
//! - [`whitelist`]: the module allowlists; [`python_packages`]: installing the data packages.
//! - [`metrics`] and [`logging`]: what an operator watches; [`systemd_notify`]: telling
//!   systemd the server is ready or stopping.
//! - [`pid_one`]: `serve` as a container's PID 1 (an init that reaps, beside the server).
//! - [`config`]: the server's settings, layer by layer (flags, the peers' names, a file); [`cli`]:
//!   the command line that fills them.

pub mod api;
pub mod broker;
pub mod cli;
pub mod config;
pub mod control_socket;
pub mod input_files;
pub mod jail;
pub mod logging;
pub mod media_type;
pub mod metrics;
pub mod output_files;
pub mod output_region;
pub mod pid_one;
pub mod protocol;
pub mod python_packages;
pub mod run;
pub mod run_request;
pub mod server;
pub mod supervisor;
pub mod systemd_notify;
pub mod throwaway_process;
pub mod whitelist;
pub mod zygote;
