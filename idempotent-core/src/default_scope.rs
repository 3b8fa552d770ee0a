//! The default scope of an `#[idempotent]` function, and the check that no
//! two definitions ever get the same one.
//!
//! The scope's text comes from the compiler (`type_name_of_val(&|| ())` in
//! the function's body), and that text is not always unique: same-named
//! functions defined in two blocks or two closures of one function print the
//! same path, and so do the crates of a library and a binary that share a
//! name. What the text cannot tell apart, the definition site can: every
//! expansion declares its own `static` [`ScopeSite`], whose address is unique
//! in the process. The first site to use a scope owns it; another site that
//! arrives at the same text is refused ([`ScopeConflict`]), never handed the
//! owner's records.
//!
//! The two instantiations of one generic function whose type arguments print
//! the same (types declared inside function bodies, named alike) share one
//! site and one text: nothing at run time tells them apart, as `TypeId` needs
//! `'static` types. The README documents that case.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, PoisonError, RwLock};

use crate::Error;

/// One `#[idempotent]` definition without `scope = "..."`: a `static` in its
/// expansion, so its address names the definition.
///
/// It remembers the scope of the first instantiation that ran, so a call of
/// a non-generic function costs one atomic load and a comparison of the
/// type name; the other instantiations of a generic function (the `static`
/// is shared by all of them) look theirs up in the process-wide registry.
#[derive(Debug)]
pub struct ScopeSite {
    package: Option<&'static str>,
    binary: bool,
    first: OnceLock<Resolved>,
}

#[derive(Clone, Copy, Debug)]
struct Resolved {
    type_name: &'static str,
    scope: Result<&'static str, ScopeConflict>,
}

/// A default scope already owned by another definition: the call is refused
/// with [`Error::InvalidConfig`] before anything is claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeConflict {
    pub(crate) scope: &'static str,
}

impl ScopeConflict {
    pub(crate) fn to_error(self) -> Error {
        Error::InvalidConfig {
            reason: format!(
                "the default scope `{}` names two different `#[idempotent]` functions \
                 (same-named functions defined in two blocks or two closures of one function, \
                 or in a library and a binary of one crate name, have one path), \
                 so this one would get the other's records: give one of them `scope = \"...\"`",
                self.scope
            ),
        }
    }
}

impl ScopeSite {
    /// A definition in a crate of `package` (`CARGO_PKG_NAME`, absent
    /// outside Cargo); `binary` when the crate is a binary or an example
    /// (`CARGO_BIN_NAME` is set), whose crate name may be its library's.
    pub const fn new(package: Option<&'static str>, binary: bool) -> Self {
        Self {
            package,
            binary,
            first: OnceLock::new(),
        }
    }

    /// The scope of this definition, instantiated as `type_name` (the type
    /// name of a closure in its body), or the conflict with the definition
    /// that owns that scope.
    pub fn resolve(&'static self, type_name: &'static str) -> Result<&'static str, ScopeConflict> {
        if let Some(first) = self.first.get() {
            if std::ptr::eq(first.type_name, type_name) || first.type_name == type_name {
                return first.scope;
            }
        }
        let scope = REGISTRY.resolve(self, type_name);
        // Only the first instantiation is kept here; a lost race keeps the
        // winner's, and the registry answers for the rest.
        let _ = self.first.set(Resolved { type_name, scope });
        scope
    }

    fn address(&'static self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// `{package}/{path}`, with `bin/` after the package in a binary.
    fn text(&self, type_name: &'static str) -> String {
        let path = function_scope(type_name);
        match (self.package, self.binary) {
            (Some(package), false) => format!("{package}/{path}"),
            (Some(package), true) => format!("{package}/bin/{path}"),
            (None, false) => path.into_owned(),
            (None, true) => format!("bin/{path}"),
        }
    }
}

/// Every default scope in use in the process, and its owner.
static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

#[derive(Default)]
struct Registry {
    inner: RwLock<Scopes>,
}

#[derive(Default)]
struct Scopes {
    /// Scope → the address of the site that owns it.
    owners: HashMap<&'static str, usize>,
    /// (site address, type name) → what that instantiation gets.
    resolved: HashMap<(usize, &'static str), Result<&'static str, ScopeConflict>>,
}

impl Registry {
    fn resolve(
        &self,
        site: &'static ScopeSite,
        type_name: &'static str,
    ) -> Result<&'static str, ScopeConflict> {
        let address = site.address();
        // Nothing panics while the lock is held, but a poisoned map is still
        // whole: keep using it rather than fail every call.
        if let Some(&scope) = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .resolved
            .get(&(address, type_name))
        {
            return scope;
        }
        let mut scopes = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(&scope) = scopes.resolved.get(&(address, type_name)) {
            return scope;
        }
        let text = site.text(type_name);
        let scope = match scopes.owners.get_key_value(text.as_str()) {
            Some((&scope, &owner)) if owner == address => Ok(scope),
            Some((&scope, _)) => Err(ScopeConflict { scope }),
            None => {
                // Kept for the life of the process: one string per definition
                // and instantiation, so the calls' keys borrow it.
                let scope: &'static str = Box::leak(text.into_boxed_str());
                scopes.owners.insert(scope, address);
                Ok(scope)
            }
        };
        scopes.resolved.insert((address, type_name), scope);
        scope
    }
}

/// The function's path in the type name of a closure written in its body.
///
/// That name is the function's full path as the compiler sees it, followed
/// by `::{{closure}}` for the async body and for the closure itself:
///
/// | function | path |
/// | --- | --- |
/// | `fn cancel` in `shop` | `app::shop::cancel` |
/// | a method or associated fn of `Orders` | `app::shop::Orders::cancel` |
/// | a method of `impl<C> Subs<C>` | `app::shop::Subs<app::shop::Usd>::cancel` |
/// | `fn price<C>` called as `price::<Usd>` | `app::shop::price<app::shop::Usd>` |
/// | `impl Cancel for Usd` | `<app::shop::Usd as app::shop::Cancel>::cancel` |
///
/// Lifetimes are erased, so they never split a function's records. The
/// path changes when the crate, a module, the `Self` type or the function is
/// renamed or moved, and when a type argument changes (an `impl Trait`
/// argument is a type argument too); `scope = "..."` pins it instead.
///
/// A brace that remains (a function declared inside another function's body
/// has `{{closure}}` in the middle of its path) is replaced by a
/// parenthesis: in a stored key, `{...}` would be a Redis Cluster hash tag
/// and send every such function's records to one slot.
fn function_scope(type_name: &'static str) -> Cow<'static, str> {
    let mut path = type_name;
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    if path.contains(['{', '}']) {
        let unbraced = path
            .chars()
            .map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            })
            .collect();
        Cow::Owned(unbraced)
    } else {
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{function_scope, ScopeConflict, ScopeSite};

    #[test]
    fn trailing_closures_are_stripped_without_allocating() {
        let scope = function_scope("app::shop::Orders::cancel::{{closure}}::{{closure}}");
        assert!(matches!(scope, Cow::Borrowed("app::shop::Orders::cancel")));
        assert!(matches!(
            function_scope("<app::Usd as app::Cancel>::cancel::{{closure}}"),
            Cow::Borrowed("<app::Usd as app::Cancel>::cancel")
        ));
        assert!(matches!(
            function_scope("app::cancel"),
            Cow::Borrowed("app::cancel")
        ));
    }

    #[test]
    fn inner_braces_never_form_a_hash_tag() {
        let scope = function_scope("app::outer::{{closure}}::inner::{{closure}}::{{closure}}");
        assert_eq!(scope, "app::outer::((closure))::inner");
        assert!(matches!(scope, Cow::Owned(_)));
    }

    #[test]
    fn the_scope_names_the_package_and_whether_the_crate_is_a_binary() {
        static LIBRARY: ScopeSite = ScopeSite::new(Some("shop"), false);
        static BINARY: ScopeSite = ScopeSite::new(Some("shop"), true);
        static OUTSIDE_CARGO: ScopeSite = ScopeSite::new(None, false);
        let name = "shop::billing::refund::{{closure}}::{{closure}}";
        assert_eq!(LIBRARY.resolve(name), Ok("shop/shop::billing::refund"));
        assert_eq!(BINARY.resolve(name), Ok("shop/bin/shop::billing::refund"));
        assert_eq!(OUTSIDE_CARGO.resolve(name), Ok("shop::billing::refund"));
    }

    #[test]
    fn a_second_site_with_the_same_text_is_refused_and_stays_refused() {
        static FIRST: ScopeSite = ScopeSite::new(Some("twins"), false);
        static SECOND: ScopeSite = ScopeSite::new(Some("twins"), false);
        let name = "twins::main::refund::{{closure}}::{{closure}}";
        assert_eq!(FIRST.resolve(name), Ok("twins/twins::main::refund"));
        let conflict = ScopeConflict {
            scope: "twins/twins::main::refund",
        };
        for _ in 0..2 {
            assert_eq!(SECOND.resolve(name), Err(conflict));
            assert_eq!(FIRST.resolve(name), Ok("twins/twins::main::refund"));
        }
        let error = conflict.to_error().to_string();
        assert!(error.contains("`twins/twins::main::refund`"), "{error}");
        assert!(error.contains("scope = \"...\""), "{error}");
    }

    /// The `static` of a generic function is shared by its instantiations:
    /// each gets its own scope, the first one cached and the others from the
    /// registry, in any order.
    #[test]
    fn each_instantiation_of_one_site_keeps_its_own_scope() {
        static GENERIC: ScopeSite = ScopeSite::new(Some("shop"), false);
        let usd = "shop::price<shop::Usd>::{{closure}}::{{closure}}";
        let eur = "shop::price<shop::Eur>::{{closure}}::{{closure}}";
        for _ in 0..2 {
            assert_eq!(GENERIC.resolve(usd), Ok("shop/shop::price<shop::Usd>"));
            assert_eq!(GENERIC.resolve(eur), Ok("shop/shop::price<shop::Eur>"));
        }
        // A type name with the same text at another address is the same
        // instantiation, not a conflict.
        let copied: &'static str = Box::leak(usd.to_owned().into_boxed_str());
        assert_eq!(GENERIC.resolve(copied), Ok("shop/shop::price<shop::Usd>"));
    }

    /// What the macro relies on, measured inside an `async fn` on this
    /// toolchain; `tests/function_identity.rs` pins the expansion's scopes.
    #[test]
    fn an_async_fn_body_names_its_function() {
        async fn cancel() -> &'static str {
            core::any::type_name_of_val(&|| ())
        }
        let name = block_on(cancel());
        assert_eq!(
            function_scope(name),
            "idempotent_core::default_scope::tests::an_async_fn_body_names_its_function::cancel"
        );
    }

    /// Polls a future that never waits to its end, without a runtime.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
        }
    }
}
