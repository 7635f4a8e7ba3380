//! The parts of a code signature as generated code: the constant data that
//! `pipeline_core::__private::{PartDecl, HelperDecl, StepDecl}` describe, shared by
//! `#[step]` and `#[helper]`.
//!
//! Everything the compiler must read (an included file, an `env!` variable, a `cfg`
//! predicate) is emitted as the same macro call the user wrote, at the user's span, so the
//! compiler resolves it exactly as in the user's code and cargo tracks it.

use std::path::{Path, PathBuf};

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::LitStr;

use crate::attr::{StepOptions, Use};
use crate::errors::Errors;
use crate::manifest::{self, CrateSettings};
use crate::signature::Scan;

/// `PartDecl` expressions for what a scan found: included files, `env!` reads, `cfg`s.
pub(crate) fn scanned_parts(root: &TokenStream, scan: &Scan) -> Vec<TokenStream> {
    let p = quote!(#root::__private);
    let mut out = Vec::new();
    for include in &scan.includes {
        let name = &include.name;
        let bytes = include.call.reemit("include_bytes");
        out.push(quote! {
            #p::PartDecl {
                kind: #p::CodePartKind::Include,
                name: #name,
                value: #p::PartValue::Bytes(#bytes),
            }
        });
    }
    for env in &scan.envs {
        let name = &env.name;
        let value = if env.optional {
            env.call.reemit("option_env")
        } else {
            let call = env.call.reemit("env");
            quote!(::core::option::Option::Some(#call))
        };
        out.push(quote! {
            #p::PartDecl {
                kind: #p::CodePartKind::Env,
                name: #name,
                value: #p::PartValue::Env(#value),
            }
        });
    }
    for cfg in &scan.cfgs {
        let name = &cfg.name;
        let predicate = &cfg.predicate;
        out.push(quote! {
            #p::PartDecl {
                kind: #p::CodePartKind::Cfg,
                name: #name,
                value: #p::PartValue::Bool(::core::cfg!(#predicate)),
            }
        });
    }
    out
}

fn text_part(root: &TokenStream, kind: &str, name: &str, value: TokenStream) -> TokenStream {
    let p = quote!(#root::__private);
    let kind = format_ident!("{}", kind);
    quote! {
        #p::PartDecl {
            kind: #p::CodePartKind::#kind,
            name: #name,
            value: #p::PartValue::Text(#value),
        }
    }
}

/// What `#[step]` adds beyond its tokens: the `version` salt, locked dependency versions,
/// the build profile and the source file, as `PartDecl` expressions, and the statements
/// that make cargo track the files read to find them (`let _ = include_bytes!(..);`).
pub(crate) struct StepExtras {
    pub parts: Vec<TokenStream>,
    pub tracking: TokenStream,
}

/// The extras of a step, from its options and the crate-wide settings in `Cargo.toml`.
pub(crate) fn step_extras(
    root: &TokenStream,
    options: &StepOptions,
    source_file: Option<&Path>,
    errors: &mut Errors,
) -> StepExtras {
    let mut parts = Vec::new();
    let mut tracking = TokenStream::new();
    if let Some(version) = &options.version {
        parts.push(text_part(root, "Version", "", quote!(#version)));
    }

    // Crate-wide defaults. The manifest is included so that editing them rebuilds the crate.
    let mut settings = CrateSettings::default();
    if let Some(manifest) = manifest::manifest_path() {
        match manifest::crate_settings(&manifest) {
            Ok(s) => settings = s,
            Err(e) => errors.push(syn::Error::new(Span::call_site(), e)),
        }
        let path = manifest.display().to_string();
        tracking.extend(quote!(let _ = ::core::include_bytes!(#path);));
    }

    // deps = [..]: the step's own list, then the crate-wide one.
    let mut deps: Vec<LitStr> = options.deps.clone();
    for name in &settings.deps {
        if !deps.iter().any(|d| d.value() == *name) {
            deps.push(LitStr::new(name, Span::call_site()));
        }
    }
    if !deps.is_empty() {
        match manifest::find_lockfile() {
            Ok(lock) => {
                for dep in &deps {
                    match lock.version_of(&dep.value()) {
                        Ok(version) => parts.push(text_part(
                            root,
                            "Dependency",
                            &dep.value(),
                            quote!(#version),
                        )),
                        Err(e) => errors.spanned(dep, e),
                    }
                }
                let path = lock.path.display().to_string();
                tracking.extend(quote!(let _ = ::core::include_bytes!(#path);));
            }
            Err(e) => errors.push(syn::Error::new(deps[0].span(), e)),
        }
    }

    // build_profile = true: debug and release builds get separate entries.
    let build_profile = match &options.build_profile {
        Some(b) => b.value,
        None => settings.build_profile,
    };
    if build_profile {
        parts.push(text_part(
            root,
            "Profile",
            "",
            quote!(if ::core::cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }),
        ));
    }

    // source_file = true: the whole file the step is defined in.
    let source = match &options.source_file {
        Some(b) => b.value.then_some(b.span),
        None => settings.source_file.then(Span::call_site),
    };
    if let Some(span) = source {
        match source_file {
            Some(file) => {
                let absolute = absolute(file);
                let shown = shown_path(&absolute);
                let path = absolute.display().to_string();
                let p = quote!(#root::__private);
                parts.push(quote! {
                    #p::PartDecl {
                        kind: #p::CodePartKind::SourceFile,
                        name: #shown,
                        value: #p::PartValue::Bytes(::core::include_bytes!(#path)),
                    }
                });
            }
            None => errors.push(syn::Error::new(
                span,
                "`source_file = true` needs the step's source file, and the compiler names none for this code (is it generated by a macro?); use `version = \"..\"` instead",
            )),
        }
    }
    StepExtras { parts, tracking }
}

/// `file` made absolute against the compiler's working directory (where cargo runs it).
fn absolute(file: &Path) -> PathBuf {
    if file.is_absolute() {
        return file.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(dir) => dir.join(file),
        Err(_) => file.to_path_buf(),
    }
}

/// A source path as explanations show it: relative to the crate (`src/lib.rs`).
fn shown_path(file: &Path) -> String {
    let relative = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|dir| {
        file.strip_prefix(Path::new(&dir))
            .ok()
            .map(Path::to_path_buf)
    });
    relative
        .unwrap_or_else(|| file.to_path_buf())
        .display()
        .to_string()
}

/// A `uses` entry as an expression of type `&HelperDecl`: `&scale::__PIPELINE_HELPER`, or
/// `&factor!(@__pipeline_helper)` for a `macro_rules!` helper. With `dollar_crate`, a
/// leading `crate` becomes `$crate` (inside a `macro_rules!` transcriber).
pub(crate) fn use_expr(u: &Use, dollar_crate: bool) -> TokenStream {
    let path = &u.path;
    let path = if dollar_crate && path.segments.first().is_some_and(|s| s.ident == "crate") {
        let rest = path.segments.iter().skip(1);
        let span = path.span();
        quote_spanned!(span=> $crate #(:: #rest)*)
    } else {
        quote!(#path)
    };
    match &u.bang {
        Some(bang) => quote_spanned!(u.path.span()=> &#path #bang(@__pipeline_helper)),
        None => quote_spanned!(u.path.span()=> &#path::__PIPELINE_HELPER),
    }
}

/// The signature items shared by a step's and a helper's module.
pub(crate) struct SignatureItems {
    /// Constants the expressions below refer to: one per `uses` entry (so a wrong entry is
    /// one error), and the lists when they are not empty.
    pub items: TokenStream,
    /// `&[PartDecl]`: `__PL_PARTS`, or `&[]`.
    pub parts: TokenStream,
    /// `&[&HelperDecl]`: `__PL_USES`, or `&[]`.
    pub uses: TokenStream,
    /// The value of `SIGNATURE`: a literal when there is nothing to fold at compile time,
    /// which keeps the common step cheap to compile.
    pub signature: TokenStream,
}

pub(crate) fn signature_items(
    root: &TokenStream,
    own: u64,
    parts: &[TokenStream],
    uses: &[Use],
) -> SignatureItems {
    let p = quote!(#root::__private);
    if parts.is_empty() && uses.is_empty() {
        let value = proc_macro2::Literal::u64_suffixed(bare_signature(own));
        return SignatureItems {
            items: TokenStream::new(),
            parts: quote!(&[]),
            uses: quote!(&[]),
            signature: quote!(#value),
        };
    }
    let use_names: Vec<_> = (0..uses.len())
        .map(|i| format_ident!("__PL_USE{}", i))
        .collect();
    let use_consts = uses.iter().zip(&use_names).map(|(u, name)| {
        let expr = use_expr(u, false);
        quote!(const #name: &#p::HelperDecl = #expr;)
    });
    SignatureItems {
        items: quote! {
            const __PL_PARTS: &[#p::PartDecl] = &[#(#parts),*];
            #(#use_consts)*
            const __PL_USES: &[&#p::HelperDecl] = &[#(#use_names),*];
        },
        parts: quote!(__PL_PARTS),
        uses: quote!(__PL_USES),
        signature: quote!(#p::compile_signature(#own, __PL_PARTS, __PL_USES)),
    }
}

/// `compile_signature(own, &[], &[])`, computed here: SplitMix64's finalizer of `own`.
pub(crate) fn bare_signature(own: u64) -> u64 {
    let mut z = own.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_literal_signature_is_what_the_runtime_folds() {
        for own in [0, 1, 7, u64::MAX, 0x1234_5678_9abc_def0] {
            assert_eq!(
                super::bare_signature(own),
                pipeline::__private::compile_signature(own, &[], &[])
            );
        }
    }
}
