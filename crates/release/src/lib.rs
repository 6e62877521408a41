//! Fedora CoreOS releases: the metadata formats, the version scheme, and
//! the Cincinnati update graph the graph server answers.

pub mod graph;
pub mod meta;
pub mod publish;
