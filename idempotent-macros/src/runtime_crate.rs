//! The path the expansion names the runtime by: the crate the user depends
//! on, found in their `Cargo.toml`, so that one attribute serves users of the
//! `idempotency` facade and users of `idempotent-core` alone.

use proc_macro2::Span;
use proc_macro_crate::{crate_name, FoundCrate};
use syn::{Ident, Path};

/// The runtime crate as the user's crate can name it. `idempotent-core` is
/// looked for first because every part of the expansion lives there; the
/// facade re-exports the same items. A dependency renamed in `Cargo.toml` is
/// named by its new name. When neither is found (a build outside Cargo), the
/// expansion names `::idempotent_core`, and `crate = "..."` overrides it.
pub(crate) fn runtime_crate() -> Path {
    for (package, itself) in [
        ("idempotent-core", "idempotent_core"),
        ("idempotency", "idempotency"),
    ] {
        match crate_name(package) {
            Ok(FoundCrate::Name(name)) => return absolute(&name),
            // The package's own tests, examples and doctests name it as an
            // external crate.
            Ok(FoundCrate::Itself) => return absolute(itself),
            Err(_) => continue,
        }
    }
    absolute("idempotent_core")
}

fn absolute(name: &str) -> Path {
    let ident = Ident::new(name, Span::call_site());
    syn::parse_quote!(::#ident)
}
