//! Collects every mistake of one attribute, so the user sees them all at once.

use std::fmt::Display;

use proc_macro2::Span;

#[derive(Default)]
pub(crate) struct Errors {
    collected: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.collected {
            Some(collected) => collected.combine(error),
            None => self.collected = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn into_result(self) -> syn::Result<()> {
        self.collected.map_or(Ok(()), Err)
    }
}
