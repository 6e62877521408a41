//! Fedora CoreOS releases: the metadata formats, the version scheme, and
//! the Cincinnati update graph the graph server answers.

//!
//! * [`meta`]: the metadata documents (release index, update rules, release
//!   and stream metadata) as upstream writes them, and the version scheme.
//! * [`graph`]: the update graph built from them, and the rollout policy.
//! * [`publish`]: composing, promoting and ruling releases on a metadata
//!   tree, written atomically and signed.

pub mod graph;
pub mod meta;
pub mod publish;

pub use graph::{Graph, Scheme};
pub use meta::{Version, VersionError};
pub use publish::{Metadata, PublishError};
