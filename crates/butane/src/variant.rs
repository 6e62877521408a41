//! Variants and versions: which Butane versions exist, the base schema each
//! builds on, and the Ignition spec each produces.

use ignition_config::Version as Ign;
use ignition_config::version::Semver;

use crate::decode::Base;

/// A Butane variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Fedora CoreOS.
    Fcos,
    /// Flatcar Container Linux.
    Flatcar,
    /// RHEL for Edge.
    R4e,
    /// Fedora IoT.
    Fiot,
    /// OpenShift (MachineConfig output).
    Openshift,
}

/// A supported variant version and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The variant.
    pub variant: Variant,
    /// Minor version: fcos 1.N, flatcar/r4e/fiot 1.N, openshift 4.N.
    pub minor: u32,
    /// Whether this is the `-experimental` version.
    pub experimental: bool,
    /// The base schema.
    pub base: Base,
    /// fcos minor version whose sugar applies (0 for none), for fcos and
    /// openshift.
    pub fcos_minor: u32,
    /// The Ignition spec of the output.
    pub ignition: Ign,
}

impl Target {
    /// Looks up `variant` at `version`, as upstream's registry does.
    pub(crate) fn lookup(variant: &str, version: &Semver) -> Option<Target> {
        if !version.meta.is_empty() {
            return None;
        }
        let [major, minor, patch] = version.numbers;
        let experimental = match version.pre.as_str() {
            "" => false,
            "experimental" => true,
            _ => return None,
        };
        if patch != 0 {
            return None;
        }
        let minor32 = u32::try_from(minor).ok()?;
        let t = |variant, base, fcos_minor, ignition| Target {
            variant,
            minor: minor32,
            experimental,
            base,
            fcos_minor,
            ignition,
        };
        use Base::*;
        let found = match (variant, major, minor, experimental) {
            ("fcos", 1, 0, false) => t(Variant::Fcos, V0_1, 0, Ign::V3_0),
            ("fcos", 1, 1, false) => t(Variant::Fcos, V0_2, 1, Ign::V3_1),
            ("fcos", 1, 2, false) => t(Variant::Fcos, V0_3, 2, Ign::V3_2),
            ("fcos", 1, 3, false) => t(Variant::Fcos, V0_3, 3, Ign::V3_2),
            ("fcos", 1, 4, false) => t(Variant::Fcos, V0_4, 4, Ign::V3_3),
            ("fcos", 1, 5, false) => t(Variant::Fcos, V0_5, 5, Ign::V3_4),
            ("fcos", 1, 6, false) => t(Variant::Fcos, V0_6, 6, Ign::V3_5),
            ("fcos", 1, 7, false) => t(Variant::Fcos, V0_7, 7, Ign::V3_6),
            ("fcos", 1, 8, true) => t(Variant::Fcos, V0_8, 8, Ign::V3_7Exp),
            ("flatcar", 1, 0, false) => t(Variant::Flatcar, V0_4, 0, Ign::V3_3),
            ("flatcar", 1, 1, false) => t(Variant::Flatcar, V0_5, 0, Ign::V3_4),
            ("flatcar", 1, 2, true) => t(Variant::Flatcar, V0_8, 0, Ign::V3_7Exp),
            ("r4e", 1, 0, false) => t(Variant::R4e, V0_4, 0, Ign::V3_3),
            ("r4e", 1, 1, false) => t(Variant::R4e, V0_5, 0, Ign::V3_4),
            ("r4e", 1, 2, true) => t(Variant::R4e, V0_8, 0, Ign::V3_7Exp),
            ("fiot", 1, 0, false) => t(Variant::Fiot, V0_5, 0, Ign::V3_4),
            ("fiot", 1, 1, true) => t(Variant::Fiot, V0_8, 0, Ign::V3_7Exp),
            ("openshift", 4, 8..=13, false) => t(Variant::Openshift, V0_3, 3, Ign::V3_2),
            ("openshift", 4, 14..=18, false) => t(Variant::Openshift, V0_5, 5, Ign::V3_4),
            ("openshift", 4, 19..=22, false) => t(Variant::Openshift, V0_6, 6, Ign::V3_5),
            ("openshift", 4, 23, true) => t(Variant::Openshift, V0_8, 8, Ign::V3_7Exp),
            _ => return None,
        };
        Some(found)
    }

    /// Go package of the variant's own types (`v1_5`, `v4_14`), for messages.
    pub(crate) fn variant_pkg(&self) -> String {
        let major = if self.variant == Variant::Openshift {
            4
        } else {
            1
        };
        let exp = if self.experimental { "_exp" } else { "" };
        format!("v{major}_{}{exp}", self.minor)
    }

    /// Go package of the fcos types this version uses (`v1_5`).
    pub(crate) fn fcos_pkg(&self) -> String {
        let exp = if self.fcos_minor == 8 { "_exp" } else { "" };
        format!("v1_{}{exp}", self.fcos_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(variant: &str, v: &str) -> Option<Target> {
        Target::lookup(variant, &Semver::parse(v).unwrap())
    }

    #[test]
    fn registry() {
        assert_eq!(look("fcos", "1.5.0").unwrap().ignition, Ign::V3_4);
        assert_eq!(look("fcos", "1.3.0").unwrap().base, Base::V0_3);
        assert_eq!(look("fcos", "01.04.00").unwrap().ignition, Ign::V3_3);
        assert!(look("fcos", "1.8.0").is_none());
        assert_eq!(
            look("fcos", "1.8.0-experimental").unwrap().ignition,
            Ign::V3_7Exp
        );
        assert!(look("fcos", "1.5.0+meta").is_none());
        assert_eq!(look("openshift", "4.14.0").unwrap().ignition, Ign::V3_4);
        assert_eq!(look("openshift", "4.8.0").unwrap().fcos_pkg(), "v1_3");
        assert_eq!(
            look("openshift", "4.23.0-experimental")
                .unwrap()
                .variant_pkg(),
            "v4_23_exp"
        );
        assert!(look("rhcos", "0.1.0").is_none());
        assert!(look("flatcar", "1.2.0").is_none());
    }
}
