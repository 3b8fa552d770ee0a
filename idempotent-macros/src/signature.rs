//! Checking the annotated function: `async`, a return type, named arguments,
//! and `skip` naming arguments that exist.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, Path, ReturnType, Signature, Type};

use crate::errors::Errors;

/// The arguments hashed into the fingerprint, in declaration order.
pub(crate) struct Hashed<'a> {
    pub(crate) arguments: Vec<(&'a Ident, &'a Type)>,
}

pub(crate) fn check<'a>(
    sig: &'a Signature,
    skip: &[Ident],
    krate: &Path,
    errors: &mut Errors,
) -> (Hashed<'a>, Option<&'a Type>) {
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span,
            "`#[idempotent]` only works on `async fn`: the store is reached asynchronously; make this function `async`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(
            variadic.span(),
            "`#[idempotent]` does not support variadic functions",
        );
    }
    let return_type = match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            // Named as the user's crate names the runtime: `idempotency::Error`
            // for a user of the facade.
            let runtime = krate.to_token_stream().to_string().replace(' ', "");
            let runtime = runtime.trim_start_matches("::");
            errors.at(
                sig.ident.span(),
                format!("`#[idempotent]` functions must return `Result<T, E>` with `T: Serialize + DeserializeOwned` and `E: From<{runtime}::Error>`; this one returns `()`"),
            );
            None
        }
    };

    if let Some(borrowed) = return_type.and_then(borrowed_output) {
        errors.push(syn::Error::new_spanned(
            borrowed,
            "`#[idempotent]` stores the result and replays it to retries, so the `Ok` type must own its data: a borrowed one cannot be deserialized from the store; return an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
        ));
    }

    let mut arguments = Vec::new();
    let mut types = Vec::new();
    let mut mut_refs = Vec::new();
    let mut in_patterns: Vec<&Ident> = Vec::new();
    for input in &sig.inputs {
        // The receiver is never hashed: `self` is the service, not the request.
        let FnArg::Typed(typed) = input else { continue };
        match &*typed.pat {
            Pat::Ident(pat) if pat.subpat.is_none() => {
                arguments.push(&pat.ident);
                types.push(&*typed.ty);
                if is_mut_ref(&typed.ty) {
                    mut_refs.push((&pat.ident, typed));
                }
            }
            Pat::Wild(wild) => errors.at(
                wild.span(),
                "`#[idempotent]` hashes or skips arguments by name, so `_` can be neither: name it (`_unused: Type`) and `skip(_unused)` it if it is not part of the request",
            ),
            pattern => {
                // A `skip` of a name bound in here is answered by this one
                // error, which says how to skip it, not by a second one
                // claiming the name does not exist.
                let skipped = skip
                    .iter()
                    .find(|name| mentions(pattern.to_token_stream(), &name.to_string()));
                if let Some(name) = skipped {
                    in_patterns.push(name);
                }
                let message = match skipped {
                    Some(name) => format!(
                        "`#[idempotent]` skips arguments by name, and `{name}` is bound inside this pattern: bind the whole argument to a name (`{name}: Type`), `skip({name})` it and destructure it in the body"
                    ),
                    None => "`#[idempotent]` hashes arguments by name: bind this argument to a name (`name: Type`) and destructure it in the body".to_owned(),
                };
                errors.push(syn::Error::new_spanned(pattern, message));
            }
        }
    }

    let mut seen: Vec<&Ident> = Vec::new();
    for name in skip {
        if name == "self" {
            errors.at(
                name.span(),
                "`self` is never hashed, so it needs no `skip`; remove it",
            );
        } else if seen.contains(&name) {
            errors.at(name.span(), format!("`{name}` is skipped twice"));
        } else if !arguments.contains(&name) && !in_patterns.contains(&name) {
            let known = if arguments.is_empty() {
                "it has no arguments".to_owned()
            } else {
                let names: Vec<String> = arguments.iter().map(|a| format!("`{a}`")).collect();
                format!("its arguments are {}", names.join(", "))
            };
            errors.at(
                name.span(),
                format!(
                    "cannot skip `{name}`: `{}` has no argument named `{name}` ({known})",
                    sig.ident
                ),
            );
        }
        seen.push(name);
    }

    // Hashed by its value when the call starts, a `&mut` argument breaks
    // both promises: the body may change it, so the retry's fingerprint no
    // longer matches, and a replay skips the body's change to it.
    for (name, argument) in mut_refs {
        if !skip.contains(name) {
            errors.push(syn::Error::new_spanned(
                argument,
                format!(
                    "a `&mut` argument cannot be part of the fingerprint: `skip({name})` it or pass it by value (the body may change it: a retry would then not match, and a replay would leave it unchanged)"
                ),
            ));
        }
    }

    let arguments = arguments
        .into_iter()
        .zip(types)
        .filter(|(argument, _)| !skip.contains(argument))
        .collect();
    (Hashed { arguments }, return_type)
}

/// `Wrapper<Inner>` when `ty` looks like a wrapper around one value (an
/// extractor such as `Json<Order>`), so a diagnostic can name the `Inner` to
/// hash instead. Standard containers are not wrappers in this sense, and an
/// `Inner` with `impl Trait` cannot be named in the body, so neither counts.
pub(crate) fn wrapped(ty: &Type) -> Option<&Type> {
    const CONTAINERS: &[&str] = &[
        "Arc",
        "BTreeSet",
        "BinaryHeap",
        "Bound",
        "Box",
        "Cell",
        "Cow",
        "HashSet",
        "LinkedList",
        "ManuallyDrop",
        "Mutex",
        "NonZero",
        "Option",
        "PhantomData",
        "Pin",
        "Range",
        "RangeInclusive",
        "Rc",
        "RefCell",
        "Reverse",
        "RwLock",
        "Saturating",
        "Vec",
        "VecDeque",
        "Weak",
        "Wrapping",
    ];
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if CONTAINERS.iter().any(|name| last.ident == name) {
        return None;
    }
    let syn::PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut inner = generics.args.iter();
    match (inner.next(), inner.next()) {
        (Some(syn::GenericArgument::Type(inner)), None)
            if !mentions(inner.to_token_stream(), "impl") =>
        {
            Some(inner)
        }
        _ => None,
    }
}

/// `&mut T`, also behind parentheses or macro-generated invisible groups.
fn is_mut_ref(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => reference.mutability.is_some(),
        Type::Paren(inner) => is_mut_ref(&inner.elem),
        Type::Group(inner) => is_mut_ref(&inner.elem),
        _ => false,
    }
}

/// Whether the identifier `word` appears in `tokens`, also inside groups:
/// enough to tell that a pattern binds a skipped name, that a type contains
/// `impl Trait`, or that an expression borrows `self`.
pub(crate) fn mentions(tokens: TokenStream, word: &str) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == word,
        TokenTree::Group(group) => mentions(group.stream(), word),
        _ => false,
    })
}

/// The `T` of a written-out `Result<T, E>` when it is a reference: serde's
/// answer for it ("`Deserialize` is not general enough") does not say what
/// to change. A type alias hides it, and then serde's answer stands.
fn borrowed_output(return_type: &Type) -> Option<&Type> {
    let Type::Path(path) = return_type else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    match arguments.args.first()? {
        syn::GenericArgument::Type(ok @ Type::Reference(_)) => Some(ok),
        _ => None,
    }
}
