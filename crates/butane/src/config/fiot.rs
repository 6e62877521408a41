//! The fiot variant (Fedora IoT, 1.0.0, 1.1.0-experimental): the base
//! schema and sugar under r4e's restrictions, as upstream's
//! `config/fiot/v1_*` copies them from r4e.

use ignition_config::types as ign;

use crate::translate::Cx;

/// fiot's restrictions on the output: r4e's.
pub(crate) fn filters(out: &ign::Config, cx: &mut Cx<'_>) {
    super::r4e::filters(out, cx);
}
