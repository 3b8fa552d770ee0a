//! Generating the idempotent function: the signature unchanged, the body
//! handed to `idempotent_core`'s runtime.

use std::time::Duration;

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Path, ReceiverKind, Signature, TraitItemFn, Type};

use crate::attr::{Args, DurationArg};
use crate::signature::{self, Hashed};

pub(crate) fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    // Without a parsable function there is nothing to wrap: hand the tokens
    // back untouched beside the error, so one mistake gives one message.
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => {
            let message = match syn::parse2::<TraitItemFn>(item.clone()) {
                // A trait method declaration: there is no body to run once,
                // and each implementation has its own.
                Ok(declaration) if declaration.default.is_none() => syn::Error::new_spanned(
                    &declaration.sig,
                    "`#[idempotent]` needs a body to run once, and a trait method declaration has none: put the attribute on the method in each `impl` of the trait (or on a default body here)",
                ),
                _ => syn::Error::new(
                    error.span(),
                    format!("`#[idempotent]` goes on an `async fn` with a body: {error}"),
                ),
            };
            return with_error(item, message);
        }
    };
    let mut args: Args = match syn::parse2(args) {
        Ok(args) => args,
        Err(error) => return with_error(function.into_token_stream(), error),
    };
    let mut errors = std::mem::take(&mut args.errors);
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(crate::runtime_crate::runtime_crate);
    let (hashed, return_type) = signature::check(&function.sig, &args.skip, &krate, &mut errors);
    match (errors.into_result(), return_type) {
        (Ok(()), Some(return_type)) => generate(&args, &krate, &function, &hashed, return_type),
        (Err(error), _) => with_error(function.into_token_stream(), error),
        // `check` reports a missing return type, so this arm is unreachable;
        // still, fall back to the original function rather than panic.
        (Ok(()), None) => function.into_token_stream(),
    }
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    // The item goes out unexpanded, so an argument only the attribute read
    // (`key = req.id`) looks unused: that warning would bury the error.
    quote!(#[allow(unused_variables)] #item #error)
}

fn generate(
    args: &Args,
    krate: &Path,
    function: &ItemFn,
    hashed: &Hashed,
    return_type: &Type,
) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        modifiers,
        sig,
        block,
    } = function;
    // `default fn` (specialization) is the only modifier syn parses today.
    let defaultness = &modifiers.defaultness;
    // Generated locals are hygienic: a user argument called `call`, `key`,
    // `backend` or `output` can neither collide with nor see them.
    let call = Ident::new("__idempotent_call", Span::mixed_site());

    // The store is checked where the user wrote it, by the coercion to
    // `&dyn Backend`; past it the expansion type-checks even when the value
    // is not a store, so that mistake gives one message.
    let store = Ident::new("__idempotent_store", Span::mixed_site());
    let detached = Ident::new("__idempotent_detached", Span::mixed_site());
    let mut detach = TokenStream::new();
    let backend = match &args.backend {
        // A store borrowed from a `self` that the body may mutate or move
        // (`&mut self`, `self`) cannot stay borrowed while the body runs:
        // clone it out first. Stores are cheap handles (or `Arc`s), and
        // `detach` says so when one is not `Clone`.
        Some(Expr::Reference(borrow))
            if borrow.mutability.is_none()
                && takes_self_exclusively(sig)
                && signature::mentions(borrow.expr.to_token_stream(), "self") =>
        {
            let inner = &borrow.expr;
            let clone = quote_spanned!(borrow.span()=> #krate::__private::detach(&#inner));
            detach = quote!(let #detached = #clone;);
            quote!(&#detached)
        }
        // `let x: &T = &(temporary)` keeps the temporary alive to the end of
        // the function, so an owned store such as `self.store.clone()` works.
        Some(backend) => quote_spanned!(backend.span()=> &(#backend)),
        None => quote!(#krate::default_backend()),
    };
    let scope = match &args.scope {
        Some(scope) => quote!(.scope(#scope)),
        None => default_scope(krate),
    };
    let ttl = duration_setter(krate, "ttl", args.ttl.as_ref());
    let lease = duration_setter(krate, "lease", args.lease.as_ref());
    let wait = duration_setter(krate, "wait", args.wait.as_ref());
    let require_key = if args.require_key.is_some() {
        quote!(.require_key())
    } else {
        TokenStream::new()
    };
    let key = match &args.key {
        Some(key) => {
            quote_spanned!(key.span()=> ::core::option::Option::Some(#krate::__private::key(&(#key))))
        }
        None => quote!(::core::option::Option::None),
    };
    let hashed_args = hashed.arguments.iter().map(|(name, ty)| {
        match signature::wrapped(ty) {
            // Checked the same way; only the diagnostic differs, naming the
            // wrapped type to hash instead.
            Some(inner) => {
                quote_spanned!(name.span()=> #krate::__private::wrapped_arg::<#inner, _>(&#name))
            }
            None => quote_spanned!(name.span()=> #krate::__private::arg(&#name)),
        }
    });
    // Spanned at the return type: an unmet bound on the result (not a
    // `Result`, `T` not storable, `E` without `From<Error>`) points there.
    let run = Ident::new(
        if args.cache_err {
            "run_cache_err"
        } else {
            "run"
        },
        return_type.span(),
    );
    // Hygienic names located at the return type too, so no error of this
    // call lands on the attribute instead.
    let at_return = Span::mixed_site().located_at(return_type.span());
    let call_at_return = Ident::new("__idempotent_call", at_return);
    let output = Ident::new("__idempotent_output", at_return);
    let krate_at_return = respan(krate.to_token_stream(), return_type.span());
    let run_call = quote_spanned! {return_type.span()=>
        #krate_at_return::Call::#run(#call_at_return, move || async move {
            let #output: #return_type = #block;
            #output
        }).await
    };

    quote! {
        #(#attrs)*
        #vis #defaultness #sig {
            #detach
            let #store: &dyn #krate::Backend = #backend;
            let #call = #krate::Idempotency::new(#store)
                #scope
                #ttl
                #lease
                #wait
                #require_key
                .__prepare_args(#key, &[#(#hashed_args),*]);
            #run_call
        }
    }
}

/// The default scope: the package, then the function's exact path (module,
/// `Self` type, type arguments, name) from the type name of a closure in its
/// body. The `static` names this definition, so another one whose path
/// prints the same (same-named functions in two blocks of one function, a
/// library and a binary of one crate name) is refused instead of sharing its
/// records; `idempotent_core`'s `default_scope` module has the details.
fn default_scope(krate: &Path) -> TokenStream {
    let site = Ident::new("__IDEMPOTENT_SCOPE_SITE", Span::mixed_site());
    quote! {
        .__default_scope({
            static #site: #krate::__private::ScopeSite = #krate::__private::ScopeSite::new(
                ::core::option_env!("CARGO_PKG_NAME"),
                ::core::option::Option::is_some(&::core::option_env!("CARGO_BIN_NAME")),
            );
            #site.resolve(::core::any::type_name_of_val(&|| ()))
        })
    }
}

fn duration_setter(krate: &Path, option: &str, value: Option<&DurationArg>) -> TokenStream {
    let Some(DurationArg { value }) = value else {
        return TokenStream::new();
    };
    let method = Ident::new(option, Span::call_site());
    let (secs, nanos) = split(*value);
    quote!(.#method(#krate::__private::Duration::new(#secs, #nanos)))
}

/// The same tokens, all located at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut group = Group::new(group.delimiter(), respan(group.stream(), span));
                group.set_span(span);
                token = TokenTree::Group(group);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

fn split(duration: Duration) -> (u64, u32) {
    (duration.as_secs(), duration.subsec_nanos())
}

/// Whether the body may mutate or move `self`: any receiver but `&self`
/// (`&mut self`, `self`, `mut self`, `self: Box<Self>`, ...).
fn takes_self_exclusively(sig: &Signature) -> bool {
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => match &receiver.kind {
            ReceiverKind::Reference(_, _, mutability) => mutability.is_some(),
            ReceiverKind::Typed(_, ty) => {
                !matches!(&**ty, Type::Reference(reference) if reference.mutability.is_none())
            }
            _ => true,
        },
        _ => false,
    }
}
