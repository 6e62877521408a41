//! The r4e variant (RHEL for Edge, 1.0.0 to 1.1.0, 1.2.0-experimental):
//! the base schema and sugar, and no storage or kernel argument
//! customization beyond files, directories and links. Upstream:
//! `config/r4e/v1_*`.

use ignition_config::types as ign;

use crate::report::p;
use crate::translate::Cx;

/// r4e's restrictions on the output.
pub(crate) fn filters(out: &ign::Config, cx: &mut Cx<'_>) {
    let s = &out.storage;
    if out.kernel_arguments != ign::KernelArguments::default() {
        cx.output_error(
            p!["kernelArguments"],
            "kernel argument customization is not supported in this spec version",
        );
    }
    if !s.disks.is_empty() {
        cx.output_error(
            p!["storage", "disks"],
            "disk customization is not supported in this spec version",
        );
    }
    if !s.filesystems.is_empty() {
        cx.output_error(
            p!["storage", "filesystems"],
            "filesystem customization is not supported in this spec version",
        );
    }
    if !s.luks.is_empty() {
        cx.output_error(
            p!["storage", "luks"],
            "luks is not supported in this spec version",
        );
    }
    if !s.raid.is_empty() {
        cx.output_error(
            p!["storage", "raid"],
            "raid is not supported in this spec version",
        );
    }
}
