//! The oxcore initramfs: [`build`] makes it from an OS tree, [`init`] is
//! its `/init` (the static oxcore binary run as PID 1).
//!
//! Why a builder of our own rather than dracut: the initramfs only has to
//! run one static binary (which holds Ignition, prepare-root and
//! switch-root) and the handful of tools Ignition's stages call, so it is
//! assembled directly from the OS tree (modules by `modules.dep`,
//! libraries by the ELF headers) in well under a second, with no shell,
//! no systemd and no udev in it; dracut would bring its module system,
//! bash and systemd into the initramfs to run the same one program.

pub mod build;
pub mod cpio;
pub mod elf;
pub mod init;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message naming what failed and where.
    #[error("{0}")]
    Msg(String),
    /// An Ignition stage failed.
    #[error("Ignition failed: {0}")]
    Ignition(String),
}

/// Results of this crate.
pub type Result<T> = std::result::Result<T, Error>;
