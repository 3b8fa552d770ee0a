//! Parsing the attribute's options: `#[idempotent(key = .., ttl = "24h", ..)]`.

use std::time::Duration;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Path, Token};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(lease);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(cache_err);
    syn::custom_keyword!(backend);
}

/// A duration option, checked at expansion time.
pub(crate) struct DurationArg {
    pub(crate) value: Duration,
}

/// The parsed options. Semantic mistakes (bad durations, duplicates) are
/// collected in `errors` rather than stopping at the first.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) key: Option<Expr>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) scope: Option<LitStr>,
    pub(crate) ttl: Option<DurationArg>,
    pub(crate) lease: Option<DurationArg>,
    pub(crate) wait: Option<DurationArg>,
    pub(crate) cache_err: bool,
    pub(crate) backend: Option<Expr>,
    pub(crate) krate: Option<Path>,
    pub(crate) errors: Errors,
    seen: Vec<&'static str>,
}

impl Args {
    /// Records that option `name` appeared at `span`; a second time is an error.
    fn first_time(&mut self, name: &'static str, span: Span) -> bool {
        if self.seen.contains(&name) {
            self.errors.at(
                span,
                format!("duplicate `{name}` option: give `{name}` only once"),
            );
            false
        } else {
            self.seen.push(name);
            true
        }
    }

    fn parse_option(&mut self, input: ParseStream) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::key) {
            let keyword: kw::key = input.parse()?;
            input.parse::<Token![=]>()?;
            let expr: Expr = input.parse()?;
            if self.first_time("key", keyword.span) {
                self.key = Some(expr);
            }
        } else if lookahead.peek(kw::skip) {
            let keyword: kw::skip = input.parse()?;
            let content;
            syn::parenthesized!(content in input);
            let names = Punctuated::<Ident, Token![,]>::parse_terminated_with(
                &content,
                syn::ext::IdentExt::parse_any,
            )?;
            if self.first_time("skip", keyword.span) {
                self.skip = names.into_iter().collect();
            }
        } else if lookahead.peek(kw::scope) {
            let keyword: kw::scope = input.parse()?;
            input.parse::<Token![=]>()?;
            let scope: LitStr = input.parse()?;
            if scope.value().is_empty() {
                self.errors.at(
                    scope.span(),
                    "`scope` must not be empty: name the operation",
                );
            }
            if self.first_time("scope", keyword.span) {
                self.scope = Some(scope);
            }
        } else if lookahead.peek(kw::ttl) {
            let keyword: kw::ttl = input.parse()?;
            let value = self.parse_duration(input, "ttl")?;
            if self.first_time("ttl", keyword.span) {
                self.ttl = value;
            }
        } else if lookahead.peek(kw::lease) {
            let keyword: kw::lease = input.parse()?;
            let value = self.parse_duration(input, "lease")?;
            if self.first_time("lease", keyword.span) {
                self.lease = value;
            }
        } else if lookahead.peek(kw::wait) {
            let keyword: kw::wait = input.parse()?;
            let value = self.parse_duration(input, "wait")?;
            if self.first_time("wait", keyword.span) {
                self.wait = value;
            }
        } else if lookahead.peek(kw::cache_err) {
            let keyword: kw::cache_err = input.parse()?;
            if self.first_time("cache_err", keyword.span) {
                self.cache_err = true;
            }
        } else if lookahead.peek(kw::backend) {
            let keyword: kw::backend = input.parse()?;
            input.parse::<Token![=]>()?;
            let expr: Expr = input.parse()?;
            if self.first_time("backend", keyword.span) {
                self.backend = Some(expr);
            }
        } else if lookahead.peek(Token![crate]) {
            let keyword: Token![crate] = input.parse()?;
            input.parse::<Token![=]>()?;
            let literal: LitStr = input.parse()?;
            match literal.parse::<Path>() {
                Ok(path) => {
                    if self.first_time("crate", keyword.span) {
                        self.krate = Some(path);
                    }
                }
                Err(_) => self.errors.at(
                    literal.span(),
                    "`crate` must be a path such as \"::idempotent_core\" or \"my_crate::idempotent\"",
                ),
            }
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }

    /// Parses `= "30s"`: humantime syntax, greater than zero.
    fn parse_duration(
        &mut self,
        input: ParseStream,
        option: &str,
    ) -> syn::Result<Option<DurationArg>> {
        input.parse::<Token![=]>()?;
        let literal: LitStr = input.parse()?;
        match humantime::parse_duration(&literal.value()) {
            Ok(value) if value.is_zero() => {
                let hint = if option == "wait" {
                    "leave `wait` out to fail at once instead of waiting"
                } else {
                    "a zero duration would expire at once"
                };
                self.errors.at(
                    literal.span(),
                    format!("`{option}` must be greater than zero ({hint})"),
                );
                Ok(None)
            }
            Ok(value) => Ok(Some(DurationArg { value })),
            Err(error) => {
                self.errors.at(
                    literal.span(),
                    format!(
                        "invalid `{option}` duration {:?}: {error}; write it like \"30s\", \"15m\", \"24h\" or \"1h 30m\"",
                        literal.value()
                    ),
                );
                Ok(None)
            }
        }
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            args.parse_option(input)?;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}
