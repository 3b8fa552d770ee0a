//! Parsing the attribute's options: `#[idempotent(key = .., ttl = "24h", ..)]`.

use std::time::Duration;

use proc_macro2::{Span, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(key);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(scope);
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(lease);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(cache_err);
    syn::custom_keyword!(require_key);
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
    /// Where `require_key` was written, when it was.
    pub(crate) require_key: Option<Span>,
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
            equals(input, keyword.span, "key", r#"key = req.idempotency_key"#)?;
            let expr: Expr = input.parse()?;
            if self.first_time("key", keyword.span) {
                self.key = Some(expr);
            }
        } else if lookahead.peek(kw::skip) {
            let keyword: kw::skip = input.parse()?;
            let content;
            syn::parenthesized!(content in input);
            let names =
                Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
            if self.first_time("skip", keyword.span) {
                self.skip = names.into_iter().collect();
            }
        } else if lookahead.peek(kw::scope) {
            let keyword: kw::scope = input.parse()?;
            equals(input, keyword.span, "scope", r#"scope = "billing::charge""#)?;
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
            let value = self.parse_duration(input, keyword.span, "ttl")?;
            if self.first_time("ttl", keyword.span) {
                self.ttl = value;
            }
        } else if lookahead.peek(kw::lease) {
            let keyword: kw::lease = input.parse()?;
            let value = self.parse_duration(input, keyword.span, "lease")?;
            if self.first_time("lease", keyword.span) {
                self.lease = value;
            }
        } else if lookahead.peek(kw::wait) {
            let keyword: kw::wait = input.parse()?;
            let value = self.parse_duration(input, keyword.span, "wait")?;
            if self.first_time("wait", keyword.span) {
                self.wait = value;
            }
        } else if lookahead.peek(kw::require_key) {
            let keyword: kw::require_key = input.parse()?;
            if self.first_time("require_key", keyword.span) {
                self.require_key = Some(keyword.span);
            }
        } else if lookahead.peek(kw::cache_err) {
            let keyword: kw::cache_err = input.parse()?;
            if self.first_time("cache_err", keyword.span) {
                self.cache_err = true;
            }
        } else if lookahead.peek(kw::backend) {
            let keyword: kw::backend = input.parse()?;
            equals(input, keyword.span, "backend", r#"backend = &self.store"#)?;
            let expr: Expr = input.parse()?;
            if self.first_time("backend", keyword.span) {
                self.backend = Some(expr);
            }
        } else if lookahead.peek(Token![crate]) {
            let keyword: Token![crate] = input.parse()?;
            equals(input, keyword.span, "crate", r#"crate = "idempotency""#)?;
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
        } else if input.peek(Ident::peek_any) {
            // Not one of ours: say which option was probably meant, then
            // skip to the next option so the rest are still checked.
            let unknown = Ident::parse_any(input)?;
            self.errors.at(unknown.span(), unknown_option(&unknown));
            while !input.is_empty() && !input.peek(Token![,]) {
                input.parse::<TokenTree>()?;
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
        at: Span,
        option: &str,
    ) -> syn::Result<Option<DurationArg>> {
        equals(input, at, option, &format!("{option} = \"30s\""))?;
        let literal = match input.parse::<Expr>()? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(literal),
                ..
            }) => literal,
            Expr::Lit(ExprLit {
                lit: Lit::Int(number),
                ..
            }) => {
                let message = match number.base10_parse::<u64>() {
                    Ok(seconds) => without_unit(option, seconds),
                    Err(_) => format!(
                        "`{option}` takes a duration string with a unit, such as `{option} = \"30s\"` or `{option} = \"24h\"`"
                    ),
                };
                self.errors.at(number.span(), message);
                return Ok(None);
            }
            other => {
                self.errors.at(
                    other.span(),
                    format!(
                        "`{option}` takes a string literal such as `{option} = \"30s\"`, `\"15m\"` or `\"24h\"`: it is checked at compile time, so a constant or expression cannot be used"
                    ),
                );
                return Ok(None);
            }
        };
        if let Ok(seconds) = literal.value().trim().parse::<u64>() {
            self.errors
                .at(literal.span(), without_unit(option, seconds));
            return Ok(None);
        }
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
            Ok(value) if option == "lease" && value < MIN_LEASE => {
                self.errors.at(
                    literal.span(),
                    "`lease` must be at least 250ms: the claim is renewed every `lease / 3`, and a shorter lease can lapse while the body still runs, letting a duplicate run it too",
                );
                Ok(None)
            }
            Ok(value) if value < MIN_DURATION => {
                self.errors.at(
                    literal.span(),
                    format!("`{option}` must be at least 1ms: the stores count whole milliseconds"),
                );
                Ok(None)
            }
            Ok(value) if value > max_duration(option) => {
                self.errors.at(
                    literal.span(),
                    format!(
                        "`{option}` must be at most {} (see `idempotent_core::limits`)",
                        max_duration_text(option)
                    ),
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

/// The `=` after an option that takes a value; without one, the error names
/// the option and shows its form, at the option, rather than syn's bare
/// "expected `=`".
fn equals(input: ParseStream, at: Span, option: &str, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(())
    } else {
        Err(syn::Error::new(
            at,
            format!("`{option}` takes a value: `{example}`"),
        ))
    }
}

/// The bounds of `idempotent_core::limits`, which this crate cannot name
/// (the core depends on it); both crates pin the same figures in a test.
const MIN_DURATION: Duration = Duration::from_millis(1);
const MIN_LEASE: Duration = Duration::from_millis(250);
const MAX_TTL: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
const MAX_LEASE_OR_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

fn max_duration(option: &str) -> Duration {
    if option == "ttl" {
        MAX_TTL
    } else {
        MAX_LEASE_OR_WAIT
    }
}

fn max_duration_text(option: &str) -> &'static str {
    if option == "ttl" {
        "3650 days (`3650d`; humantime's `10y` is 3652.5 days)"
    } else {
        "1 day"
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
        // Without `key`, the key is the fingerprint of the arguments, which
        // is never missing: `require_key` would promise a check that never
        // fires.
        if let (Some(span), None) = (args.require_key, &args.key) {
            args.errors.at(
                span,
                "`require_key` needs a `key = ...` that can be `None` (such as an `Option<String>` header): without `key`, the arguments' fingerprint is the key and is never missing",
            );
        }
        Ok(args)
    }
}

/// The options, in the order the errors list them.
const OPTIONS: [&str; 10] = [
    "key",
    "skip",
    "scope",
    "ttl",
    "lease",
    "wait",
    "require_key",
    "cache_err",
    "backend",
    "crate",
];

/// Names other libraries give to these options, and what they are here.
const SYNONYMS: &[(&[&str], &str)] = &[
    (
        &["timeout", "wait_for", "wait_timeout"],
        "`wait = \"10s\"` (how long a duplicate waits for the running call) or `lease = \"30s\"` (how long a claim lives without renewal)",
    ),
    (
        &["expiry", "expire", "expires", "expiration", "time_to_live", "duration", "max_age", "retention"],
        "`ttl = \"24h\"` (how long a completed result is kept)",
    ),
    (
        &["store", "storage", "cache", "client", "repository", "repo"],
        "`backend = ...` (the store)",
    ),
    (
        &["namespace", "prefix", "name", "group"],
        "`scope = \"...\"` (the namespace of the stored keys)",
    ),
    (
        &["ignore", "exclude", "except", "skip_args"],
        "`skip(...)` (arguments left out of the fingerprint)",
    ),
    (
        &["id", "idempotency_key", "key_by", "by"],
        "`key = ...` (the idempotency key)",
    ),
    (
        &["require", "required", "key_required", "requires_key", "strict", "mandatory"],
        "`require_key` (a `None` key is an error instead of a call without idempotency)",
    ),
    (
        &["cache_errors", "cache_error", "store_errors", "store_err"],
        "`cache_err` (also store and replay `Err` results)",
    ),
];

/// The message for an option that does not exist: the nearest option by
/// spelling or meaning, else the list of options.
fn unknown_option(unknown: &Ident) -> String {
    let name = unknown.to_string();
    let lowered = name.to_lowercase();
    for (names, meant) in SYNONYMS {
        if names.contains(&lowered.as_str()) {
            return format!("unknown option `{name}`: did you mean {meant}?");
        }
    }
    let nearest = OPTIONS
        .iter()
        .map(|option| (edit_distance(&lowered, option), *option))
        .min();
    match nearest {
        // At most two edits, and fewer than the name's length, so `ab` is
        // not taken for `key`.
        Some((distance, option)) if distance <= 2 && distance < lowered.len().min(option.len()) => {
            format!("unknown option `{name}`: did you mean `{option}`?")
        }
        _ => {
            let options: Vec<String> = OPTIONS.iter().map(|o| format!("`{o}`")).collect();
            format!(
                "unknown option `{name}`: the options are {}",
                options.join(", ")
            )
        }
    }
}

/// The message for a duration written as a bare number: the same length in
/// seconds with its unit, and in the largest units if they read better.
fn without_unit(option: &str, seconds: u64) -> String {
    if seconds == 0 {
        let hint = if option == "wait" {
            "leave `wait` out to fail at once instead of waiting"
        } else {
            "a zero duration would expire at once"
        };
        return format!("`{option}` must be greater than zero ({hint})");
    }
    let readable = humantime::format_duration(Duration::from_secs(seconds)).to_string();
    let plain = format!("{seconds}s");
    let written = if readable == plain {
        format!("`{option} = \"{plain}\"`")
    } else {
        format!("`{option} = \"{plain}\"` or `{option} = \"{readable}\"`")
    };
    format!(
        "`{option}` needs a unit (a bare number could be seconds or milliseconds): write {written}"
    )
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours (`tll` is one edit from `ttl`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    rows[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, unknown_option, without_unit};
    use proc_macro2::Span;
    use syn::Ident;

    fn message(name: &str) -> String {
        unknown_option(&Ident::new(name, Span::call_site()))
    }

    #[test]
    fn misspelled_options_suggest_the_nearest() {
        assert_eq!(edit_distance("tll", "ttl"), 1);
        assert_eq!(message("tll"), "unknown option `tll`: did you mean `ttl`?");
        assert_eq!(
            message("sope"),
            "unknown option `sope`: did you mean `scope`?"
        );
        assert_eq!(message("skp"), "unknown option `skp`: did you mean `skip`?");
        assert_eq!(
            message("backed"),
            "unknown option `backed`: did you mean `backend`?"
        );
        assert_eq!(message("TTL"), "unknown option `TTL`: did you mean `ttl`?");
    }

    #[test]
    fn other_libraries_names_point_to_ours() {
        assert!(message("expiry").contains("did you mean `ttl = \"24h\"`"));
        assert!(message("store").contains("did you mean `backend = ...`"));
        assert!(message("cache_errors").contains("`cache_err`"));
    }

    #[test]
    fn far_names_list_every_option() {
        assert_eq!(
            message("zz"),
            "unknown option `zz`: the options are `key`, `skip`, `scope`, `ttl`, `lease`, `wait`, `require_key`, `cache_err`, `backend`, `crate`"
        );
    }

    #[test]
    fn bare_numbers_are_given_a_unit() {
        assert!(without_unit("ttl", 3600).ends_with("write `ttl = \"3600s\"` or `ttl = \"1h\"`"));
        assert!(without_unit("lease", 45).ends_with("write `lease = \"45s\"`"));
        assert!(without_unit("wait", 0).contains("greater than zero"));
    }
}
