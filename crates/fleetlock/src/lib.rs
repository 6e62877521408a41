//! A FleetLock server: reboot slots for a fleet, so that a cluster never
//! reboots all its nodes at once. A drop-in for airlock: its TOML
//! configuration, its protocol (errors, kinds, statuses) and its etcd3 key
//! layout and compare-and-swap, so both can serve one etcd cluster side by
//! side; or an embedded redb store on one machine.
//!
//! Beyond airlock: leases (a holder that neither renews nor releases in
//! time loses its slot), slot counts changed in the configuration taking
//! effect on the next request, one long-lived etcd client with bounded
//! requests instead of one per request, `status` and manual `release`, and
//! metrics by outcome. See `docs/fleetlock.md`.
//!
//! Modules: [`config`] (the TOML), [`semaphore`] (the stored value and
//! what a request does to it), [`backend`] (etcd3 and redb),
//! [`protocol`] (requests and errors on the wire), [`server`] (the
//! listeners), and [`admin`] (status and release for the command line).

pub mod admin;
pub mod backend;
pub mod config;
mod metrics;
pub mod protocol;
pub mod semaphore;
pub mod server;

pub use config::{BackendConfig, Config, ConfigError, Group};
pub use semaphore::{Lease, Semaphore};
pub use server::{Running, ServerError, start};
