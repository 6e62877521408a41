//! The variants, each in its own module as upstream keeps
//! `config/<variant>/<version>/`: what a variant adds to the base schema's
//! checks and sugar, what it restricts in the output, and what it writes.
//!
//! fcos adds `boot_device` and `grub` sugar and checks; openshift builds on
//! fcos's and writes a MachineConfig; flatcar, r4e and fiot only restrict
//! the output. The pipeline ([`crate::transpile`]) calls the steps below in
//! upstream's order; each dispatches on the target's variant.

mod fcos;
mod fiot;
mod flatcar;
mod openshift;
mod r4e;

use ignition_config::types as ign;

use crate::report::Report;
use crate::translate::Cx;
use crate::types::Config;
use crate::validate;
use crate::variant::{Target, Variant};

/// Source checks (upstream's stage 4): the base's and the variant's, in
/// upstream's walk order (fcos's config hook first, from 1.6).
pub(crate) fn source(c: &Config, t: &Target, r: &mut Report) {
    if t.variant == Variant::Fcos && t.minor >= 6 {
        fcos::config_hook(c, t, r);
    }
    validate::source(c, t, r);
    match t.variant {
        Variant::Fcos => fcos::validate(c, t, r),
        Variant::Openshift => {
            fcos::validate(c, t, r);
            openshift::source(c, t, r);
        }
        Variant::Flatcar | Variant::R4e | Variant::Fiot => {}
    }
}

/// The variant's sugar, after the base's: fcos's, for fcos and openshift.
pub(crate) fn translate(c: &Config, out: &mut ign::Config, cx: &mut Cx<'_>) {
    if matches!(cx.target.variant, Variant::Fcos | Variant::Openshift) {
        fcos::translate(c, out, cx);
    }
}

/// What the variant writes instead of the plain Ignition config:
/// openshift's MachineConfig (or, with `raw`, its checked Ignition config).
/// `None` for the other variants; `Some(None)` after errors.
pub(crate) fn output(
    c: &Config,
    out: &mut ign::Config,
    raw: bool,
    pretty: bool,
    cx: &mut Cx<'_>,
) -> Option<Option<String>> {
    (cx.target.variant == Variant::Openshift).then(|| openshift::output(c, out, raw, pretty, cx))
}

/// The variant's restrictions on the output (upstream's stage 6).
/// openshift's apply to the MachineConfig, so not in raw mode.
pub(crate) fn filters(out: &ign::Config, raw: bool, cx: &mut Cx<'_>) {
    let t = cx.target;
    match t.variant {
        Variant::Flatcar => flatcar::filters(out, &t, cx),
        Variant::R4e => r4e::filters(out, cx),
        Variant::Fiot => fiot::filters(out, cx),
        Variant::Openshift if !raw => openshift::filters(out, &t, cx),
        Variant::Openshift | Variant::Fcos => {}
    }
}
