//! The flatcar variant (1.0.0, 1.1.0, 1.2.0-experimental): the base
//! schema and sugar, and Flatcar's restriction on the output: no Clevis
//! (the experimental version instead refuses CEX). Upstream:
//! `config/flatcar/v1_*`.

use ignition_config::types as ign;

use crate::report::p;
use crate::translate::Cx;
use crate::variant::Target;

/// Flatcar's restrictions on the output.
pub(crate) fn filters(out: &ign::Config, t: &Target, cx: &mut Cx<'_>) {
    for (i, l) in out.storage.luks.iter().enumerate() {
        if t.experimental {
            if l.cex != ign::Cex::default() {
                cx.output_error(
                    p!["storage", "luks", i, "cex"],
                    "cex is not currently supported on the target platform",
                );
            }
        } else if l.clevis != ign::Clevis::default() {
            cx.output_error(
                p!["storage", "luks", i, "clevis"],
                "clevis is not supported in this spec version",
            );
        }
    }
}
