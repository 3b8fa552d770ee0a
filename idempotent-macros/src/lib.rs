//! The `#[idempotent]` attribute. Use it through `idempotent_core`, which
//! re-exports it and documents it; this crate only parses, validates and
//! expands into `idempotent_core`'s runtime API.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod attr;
mod errors;
mod expand;
mod signature;

use proc_macro::TokenStream;

/// Makes an `async fn` idempotent: the first call with a key runs the body,
/// every later call with that key replays the stored result.
///
/// Options: `key = <expr>`, `skip(a, b)`, `scope = "name"`, `ttl = "24h"`,
/// `lease = "30s"`, `wait = "10s"`, `cache_err`, `backend = <expr>`,
/// `crate = "path"`. See `idempotent_core` for the full documentation.
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::idempotent(args.into(), item.into()).into()
}
