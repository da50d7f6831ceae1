//! `#[trioxide::main]` and `#[trioxide::test]`: an `async fn` run on a
//! trioxide runtime through `trioxide::Builder`.
//!
//! Use them through trioxide's `macros` feature (`trioxide::main`,
//! `trioxide::test`); the examples are on those re-exports. The expansion
//! names `::trioxide`, so the crate must be a dependency under that name.
//!
//! | attribute | expands to |
//! |---|---|
//! | `#[trioxide::main]` | `fn main() -> R { ::trioxide::Builder::new().run(async { body }) }` |
//! | `#[trioxide::main(seed = 7)]` | the same with `.seed(7)` |
//! | `#[trioxide::test]` | a `#[test] fn` running the body via `Builder`, naming the seed if it fails |
//! | `#[trioxide::test(seed = 7, clock = autojump)]` | with a fixed seed and an autojumping `MockClock` |

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ExprPath, ItemFn, Lit, MetaNameValue, Token};

/// Runs an `async fn main` on a trioxide runtime.
///
/// `#[trioxide::main] async fn main() -> R { body }` becomes
/// `fn main() -> R { ::trioxide::Builder::new().run(async { body }) }`:
/// no boxing, no allocation beyond what the hand-written call makes.
///
/// Option: `seed = N` (an integer literal) fixes the scheduler's seed
/// (`Builder::seed`).
///
/// ```no_run
/// #[trioxide::main(seed = 7)]
/// async fn main() -> Result<(), trioxide::BoxError> {
///     trioxide::sleep(std::time::Duration::from_millis(1)).await?;
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: proc_macro::TokenStream, item: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand(Kind::Main, args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns an `async fn` into a `#[test]` run on a trioxide runtime.
///
/// Options: `seed = N` fixes the scheduler's seed; `clock = autojump` runs
/// on a `MockClock` whose autojump threshold is zero (sleeps end at once,
/// virtual time advancing exactly). Without `seed`, the run takes its seed
/// from `TRIOXIDE_SEED` or entropy, and a failing test (a panic or an
/// `Err`) prints the seed that replays it.
///
/// ```no_run
/// # fn main() {}
/// #[trioxide::test(clock = autojump)]
/// async fn an_hour_passes_at_once() -> Result<(), trioxide::BoxError> {
///     let t0 = trioxide::current_time();
///     trioxide::sleep(std::time::Duration::from_secs(3600)).await?;
///     assert_eq!(trioxide::current_time().saturating_duration_since(t0), std::time::Duration::from_secs(3600));
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: proc_macro::TokenStream, item: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand(Kind::Test, args.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[trioxide::main]",
            Kind::Test => "#[trioxide::test]",
        }
    }
}

/// The clocks `clock = ...` names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ClockOpt {
    /// A `MockClock` with autojump threshold zero.
    Autojump,
    /// A `MockClock` that only moves when jumped (or never, here).
    Mock,
}

#[derive(Default, Debug)]
struct Options {
    seed: Option<(u64, Span)>,
    clock: Option<(ClockOpt, Span)>,
}

fn parse_options(kind: Kind, args: TokenStream) -> syn::Result<Options> {
    let list = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args)?;
    let mut opts = Options::default();
    for nv in list {
        let Some(name) = nv.path.get_ident().map(|i| i.to_string()) else {
            return Err(syn::Error::new(nv.path.span(), unknown_option(kind, "this path")));
        };
        match name.as_str() {
            "seed" => {
                if opts.seed.is_some() {
                    return Err(syn::Error::new(nv.path.span(), "`seed` is given twice"));
                }
                let seed = match &nv.value {
                    Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => int.base10_parse::<u64>().map_err(|_| {
                        syn::Error::new(int.span(), "`seed` must be an integer literal that fits in a u64")
                    })?,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "`seed` must be an integer literal that fits in a u64, such as `seed = 7`",
                        ))
                    }
                };
                opts.seed = Some((seed, nv.span()));
            }
            "clock" if kind == Kind::Test => {
                if opts.clock.is_some() {
                    return Err(syn::Error::new(nv.path.span(), "`clock` is given twice"));
                }
                let clock = match &nv.value {
                    Expr::Path(ExprPath { path, qself: None, .. }) if path.is_ident("autojump") => ClockOpt::Autojump,
                    Expr::Path(ExprPath { path, qself: None, .. }) if path.is_ident("mock") => ClockOpt::Mock,
                    other => {
                        return Err(syn::Error::new(
                            other.span(),
                            "unknown clock: expected `clock = autojump` (a MockClock that jumps to the next \
                             deadline when every task waits) or `clock = mock`",
                        ))
                    }
                };
                opts.clock = Some((clock, nv.span()));
            }
            _ => return Err(syn::Error::new(nv.path.span(), unknown_option(kind, &format!("`{name}`")))),
        }
    }
    Ok(opts)
}

fn unknown_option(kind: Kind, what: &str) -> String {
    match kind {
        Kind::Main => format!("unknown option {what} of {}: the only option is `seed = N`", kind.attr()),
        Kind::Test => format!(
            "unknown option {what} of {}: expected `seed = N` or `clock = autojump` / `clock = mock`",
            kind.attr()
        ),
    }
}

fn check_signature(kind: Kind, f: &ItemFn) -> syn::Result<()> {
    let sig = &f.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("{} needs an `async fn`: the `async` keyword is missing", kind.attr()),
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(sig.inputs.span(), format!("{} functions take no arguments", kind.attr())));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(sig.generics.span(), format!("{} functions cannot be generic", kind.attr())));
    }
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(c.span(), format!("{} functions cannot be `const`", kind.attr())));
    }
    if let Some(u) = &sig.unsafety {
        return Err(syn::Error::new(u.span(), format!("{} functions cannot be `unsafe`", kind.attr())));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(abi.span(), format!("{} functions cannot have an ABI", kind.attr())));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(v.span(), format!("{} functions take no arguments", kind.attr())));
    }
    Ok(())
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let opts = parse_options(kind, args)?;
    let f: ItemFn = syn::parse2(item)?;
    check_signature(kind, &f)?;
    let ItemFn { attrs, vis, sig, block } = f;
    let mut sig = sig;
    sig.asyncness = None;
    let body_span = block.span();
    let seed_call = opts.seed.map(|(seed, span)| quote_spanned!(span=> .seed(#seed)));
    let out = match kind {
        Kind::Main => quote! {
            #(#attrs)*
            #vis #sig {
                ::trioxide::Builder::new() #seed_call .run(async #block)
            }
        },
        Kind::Test => {
            let clock_call = opts.clock.map(|(clock, span)| match clock {
                ClockOpt::Autojump => quote_spanned! {span=>
                    .clock({
                        let clock = ::trioxide::MockClock::new();
                        clock.set_autojump_threshold(::core::option::Option::Some(::core::time::Duration::ZERO));
                        clock
                    })
                },
                ClockOpt::Mock => quote_spanned!(span=> .clock(::trioxide::MockClock::new())),
            });
            let fixed = opts.seed.is_some();
            quote_spanned! {body_span=>
                #[::core::prelude::v1::test]
                #(#attrs)*
                #vis #sig {
                    ::trioxide::macro_support::run_test(
                        ::trioxide::Builder::new() #seed_call #clock_call,
                        #fixed,
                        async #block,
                    )
                }
            }
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{expand, Kind};
    use quote::quote;

    fn error_of(kind: Kind, args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        match expand(kind, args, item) {
            Ok(out) => panic!("expected an error, got {out}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn main_expands_to_the_hand_written_builder_call() {
        let out = expand(
            Kind::Main,
            quote!(seed = 7),
            quote!(
                async fn main() -> Result<(), E> {
                    work().await?;
                    Ok(())
                }
            ),
        )
        .unwrap();
        let want = quote!(
            fn main() -> Result<(), E> {
                ::trioxide::Builder::new().seed(7u64).run(async {
                    work().await?;
                    Ok(())
                })
            }
        );
        assert_eq!(out.to_string(), want.to_string());
    }

    #[test]
    fn main_without_options_keeps_attributes_and_visibility() {
        let out = expand(
            Kind::Main,
            quote!(),
            quote!(
                #[allow(dead_code)]
                pub async fn main() {}
            ),
        )
        .unwrap();
        let want = quote!(
            #[allow(dead_code)]
            pub fn main() {
                ::trioxide::Builder::new().run(async {})
            }
        );
        assert_eq!(out.to_string(), want.to_string());
    }

    #[test]
    fn test_expands_to_a_test_fn_with_seed_and_autojump_clock() {
        let out = expand(
            Kind::Test,
            quote!(seed = 3, clock = autojump),
            quote!(
                async fn t() {
                    f().await
                }
            ),
        )
        .unwrap();
        let want = quote!(
            #[::core::prelude::v1::test]
            fn t() {
                ::trioxide::macro_support::run_test(
                    ::trioxide::Builder::new().seed(3u64).clock({
                        let clock = ::trioxide::MockClock::new();
                        clock.set_autojump_threshold(::core::option::Option::Some(::core::time::Duration::ZERO));
                        clock
                    }),
                    true,
                    async { f().await },
                )
            }
        );
        assert_eq!(out.to_string(), want.to_string());
    }

    #[test]
    fn test_without_seed_is_not_marked_fixed() {
        let out = expand(
            Kind::Test,
            quote!(clock = mock),
            quote!(
                async fn t() {}
            ),
        )
        .unwrap()
        .to_string();
        let want = quote!(::trioxide::Builder::new().clock(::trioxide::MockClock::new()), false,).to_string();
        assert!(out.contains(&want), "{out}");
    }

    #[test]
    fn a_non_async_fn_is_an_error() {
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(),
                quote!(
                    fn t() {}
                )
            ),
            "#[trioxide::test] needs an `async fn`: the `async` keyword is missing"
        );
        assert_eq!(
            error_of(
                Kind::Main,
                quote!(),
                quote!(
                    fn main() {}
                )
            ),
            "#[trioxide::main] needs an `async fn`: the `async` keyword is missing"
        );
    }

    #[test]
    fn arguments_are_an_error() {
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(),
                quote!(
                    async fn t(x: u32) {}
                )
            ),
            "#[trioxide::test] functions take no arguments"
        );
    }

    #[test]
    fn generics_are_an_error() {
        assert_eq!(
            error_of(
                Kind::Main,
                quote!(),
                quote!(
                    async fn main<T>() {}
                )
            ),
            "#[trioxide::main] functions cannot be generic"
        );
    }

    #[test]
    fn an_unknown_option_is_an_error_naming_it() {
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(threads = 4),
                quote!(
                    async fn t() {}
                )
            ),
            "unknown option `threads` of #[trioxide::test]: expected `seed = N` or `clock = autojump` / `clock = mock`"
        );
        // main has no clock option.
        assert_eq!(
            error_of(
                Kind::Main,
                quote!(clock = autojump),
                quote!(
                    async fn main() {}
                )
            ),
            "unknown option `clock` of #[trioxide::main]: the only option is `seed = N`"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let seed_msg = "`seed` must be an integer literal that fits in a u64, such as `seed = 7`";
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(seed = "7"),
                quote!(
                    async fn t() {}
                )
            ),
            seed_msg
        );
        // syn reads `-1` as a negative literal or as a negation: either way refused.
        assert!(error_of(
            Kind::Test,
            quote!(seed = -1),
            quote!(
                async fn t() {}
            )
        )
        .starts_with(&seed_msg[..52]));
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(seed = 18446744073709551616),
                quote!(
                    async fn t() {}
                )
            ),
            "`seed` must be an integer literal that fits in a u64"
        );
        assert!(error_of(
            Kind::Test,
            quote!(clock = wall),
            quote!(
                async fn t() {}
            )
        )
        .starts_with("unknown clock"));
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(seed = 1, seed = 2),
                quote!(
                    async fn t() {}
                )
            ),
            "`seed` is given twice"
        );
        // Not `name = value` at all: syn's own message.
        assert_eq!(
            error_of(
                Kind::Test,
                quote!(seed),
                quote!(
                    async fn t() {}
                )
            ),
            "expected `=`"
        );
    }
}
