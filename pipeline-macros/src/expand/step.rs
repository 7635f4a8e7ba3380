//! `#[step]`: the wiring function, the `<step>` module (`SIGNATURE`, `call`, `Outputs`,
//! per-input wiring traits) and an impl of `__private::StepFn` that describes the step to
//! the runtime.
//!
//! Compile time (BENCHMARKS.md figure 7) shapes it: the wiring function is one call to the
//! generic `__private::wire` (`pipeline-core/src/wire.rs`), which builds the specs and the
//! type-erased body once for every step; per step there are only the `StepFn` impl (the
//! input and output types as lists, the bound checks, the call) and a few small items.
//! The step's registry entry names `__private::rebuild::<step>`, so the `StepFn` impl's two
//! methods (`parts`, `invoke`) are compiled in the steps' crate; everything else per step
//! that runs code is generic or `#[inline]`, so it is compiled in the crate that builds a
//! pipeline.
//!
//! Diagnostics shape the generated code:
//! * each input and output type is checked once, at its own span, through
//!   `__private::Probe` (see `pipeline-core/src/checks.rs`), in `StepFn::parts`; the runtime
//!   uses the returned function pointers and repeats no bound, so a missing `Serialize` is
//!   one error;
//! * each input has its own wiring trait with `#[diagnostic::on_unimplemented]`, so a
//!   mis-wired argument names the step, the input and both types; its one impl is a
//!   blanket impl over the runtime's `WireInput` (compile time: no impls with bodies per
//!   step, see BENCHMARKS.md figure 7);
//! * a function that cannot be a step still gets its public names (`<step>::SIGNATURE`,
//!   `<step>::call`, `<step>::Outputs` and a wiring function that accepts anything), so
//!   the pipelines that use it add no errors of their own.

use std::path::Path as FilePath;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Item, ItemFn, Path, Type};

use super::{code, doc_attrs, scope, type_string};
use crate::ast::{self, Mode, StepFn};
use crate::attr::{self, StepOptions};
use crate::errors::Errors;
use crate::{signature, values};

/// `source_file` is the file the step is written in, as the compiler names it (for
/// `source_file = true`).
pub(crate) fn expand(
    attr_tokens: TokenStream,
    item: TokenStream,
    source_file: Option<&FilePath>,
) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse_step(attr_tokens.clone(), &mut errors);
    let item_fn: ItemFn = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(f)) => f,
        Ok(_) => {
            errors.push(syn::Error::new(
                super::item_keyword_span(&item),
                "`#[step]` can only be applied to a function, e.g. `#[step] fn load() -> Vec<f64> { .. }`",
            ));
            let errs = errors.to_compile_errors();
            return quote!(#errs #item);
        }
        Err(e) => {
            let e = e.to_compile_error();
            return quote!(#e #item);
        }
    };
    if ast::receiver(&item_fn).is_some() {
        // Inside an `impl` block: no module can be emitted there, so keep the method only.
        ast::check_item(&item_fn, "step", &mut errors);
        let errs = errors.to_compile_errors();
        return quote!(#errs #item_fn);
    }
    // Options and tokens both count: `outputs(..)` is a declaration. `version` and the
    // other options with parts of their own are left out, so changing one names itself.
    // `resources(..)` says where the step runs, not what it computes: left out too.
    let unhashed: Vec<&str> = attr::PART_OPTIONS
        .iter()
        .chain(attr::RUNTIME_OPTIONS)
        .chain(attr::KEY_OPTIONS)
        .copied()
        .collect();
    let hashed_options = signature::without_options(&attr_tokens, &unhashed);
    let own = signature::signature(quote!(step(#hashed_options) #item));
    let root = attr::root(&options.krate);
    let extras = code::step_extras(&root, &options, source_file, &mut errors);
    let mut parts = extras.parts;
    parts.extend(code::scanned_parts(&root, &signature::scan(&item)));
    let code = StepCode {
        own,
        parts,
        tracking: extras.tracking,
    };
    let generated = match ast::analyse_step(item_fn.clone(), &options, &mut errors) {
        Some(step) if !options.incomplete => {
            let cachers = resolve_cachers(&options, &step, &mut errors);
            generate(&options, &step, &cachers, &code)
        }
        _ => stub(&options, &item_fn, &code),
    };
    let errs = errors.to_compile_errors();
    quote! {
        #errs
        #generated
    }
}

/// One cacher path per output: the attribute's choice or the default `Bincode`.
fn resolve_cachers(options: &StepOptions, step: &StepFn, errors: &mut Errors) -> Vec<Option<Path>> {
    let outputs = &step.outputs.outputs;
    let mut chosen: Vec<Option<Path>> = vec![None; outputs.len()];
    for (name, path) in &options.cachers {
        match name {
            None if !step.outputs.named => chosen[0] = Some(path.clone()),
            None => errors.spanned(
                path,
                "this step has several outputs: choose cachers by name, e.g. `cacher(metrics = Json)`",
            ),
            Some(name) => match outputs.iter().position(|(o, _)| o == name) {
                Some(i) => chosen[i] = Some(path.clone()),
                None => errors.spanned(
                    name,
                    format!(
                        "`cacher({name} = ..)` names no output; the outputs are: {}",
                        outputs.iter().map(|(o, _)| o.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                ),
            },
        }
    }
    chosen
}

/// What a step's signature is made of, as generated code.
struct StepCode {
    /// Hash of the step's tokens.
    own: u64,
    /// `PartDecl` expressions: version, dependencies, profile, source file, includes,
    /// `env!`, `cfg`.
    parts: Vec<TokenStream>,
    /// Statements that make cargo track the files read to find the parts.
    tracking: TokenStream,
}

const SIGNATURE_DOC: &str = "The step's compile-time code signature: xxh3-64 of its tokens (doc comments excluded), with its `version`, the files, `env!` variables and `cfg`s it reads, the dependencies it names and the signatures of the helpers it `uses` folded in. `signature()` adds what is hashed at run time.";

/// The span of a bound check's call. rustc points a failed bound at the type argument
/// (the user's whole type) and labels the call "required by a bound introduced by this
/// call" unless both spans are the same: for a one-token type (`Model`) they can be; for
/// `Vec<Model>` a proc macro cannot join spans on stable, so the call is put on the
/// attribute rather than under the type's first token.
fn check_span(ty: &Type) -> Span {
    if quote::ToTokens::to_token_stream(ty).into_iter().count() == 1 {
        ty.span()
    } else {
        Span::call_site()
    }
}

/// Escapes `{` and `}` for a `#[diagnostic::on_unimplemented]` format string.
fn escape_braces(s: &str) -> String {
    s.replace('{', "{{").replace('}', "}}")
}

fn generate(
    options: &StepOptions,
    step: &StepFn,
    cachers: &[Option<Path>],
    code: &StepCode,
) -> TokenStream {
    let root = attr::root(&options.krate);
    let item = &step.item;
    let vis = &item.vis;
    let name = &item.sig.ident;
    let step_name = options
        .name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| name.to_string());
    let impl_name = format_ident!("__pl_step_{}", name);
    let docs = doc_attrs(&item.attrs);

    // The user's function, renamed and hidden; `<step>::call` forwards to it.
    let mut impl_fn = item.clone();
    impl_fn.sig.ident = impl_name.clone();
    impl_fn.vis = syn::Visibility::Inherited;
    impl_fn.attrs.retain(|a| !a.path().is_ident("doc"));
    // `call` forwards its arguments, so `mut x` in the user's function is not `mut` here.
    let call_sig = {
        let mut sig = item.sig.clone();
        sig.ident = Ident::new("call", name.span());
        for arg in &mut sig.inputs {
            if let FnArg::Typed(pt) = arg {
                if let syn::Pat::Ident(p) = &mut *pt.pat {
                    p.mutability = None;
                }
            }
        }
        sig
    };
    let arg_names: Vec<&Ident> = step.inputs.iter().map(|i| &i.name).collect();

    // One wiring trait per input, so a mismatch names the step, the input and both types.
    // It has one blanket impl over the runtime's `WireInput` (no impls or bodies per step:
    // they were most of the compile time of a step); `do_not_recommend` makes rustc report
    // a mismatch through this trait's message rather than through `WireInput`.
    let input_traits = step.inputs.iter().map(|input| {
        let trait_name = format_ident!("__Input_{}", input.name);
        let ty = &input.value_ty;
        let t = escape_braces(&type_string(ty));
        let step_name = escape_braces(&step_name);
        let (message, label, note, mode_bound) = if input.mode == Mode::Handle {
            (
                format!(
                    "step `{step_name}` input `{}` expects an upstream `Artifact<{t}>`, but got `{{Self}}`",
                    input.name
                ),
                format!("expected `&Artifact<{t}>` or `Artifact<{t}>`"),
                format!(
                    "`{0}: Artifact<{t}>` takes another step's output, not a plain value; declare `{0}: {t}` or `{0}: &{t}` to accept both",
                    input.name
                ),
                quote!(: #root::__private::HandleMode),
            )
        } else if input.ignored || input.secret {
            // Only a plain value can be left out of the key or kept secret: an artifact
            // passed here is reported at the call, with the reason.
            let (option, why) = if input.ignored {
                (
                    "cache_ignore",
                    "an upstream artifact's content is what the step computes from, so it always enters the cache key",
                )
            } else {
                (
                    "secret",
                    "an upstream artifact is stored by the step that produced it, so it cannot be kept secret here",
                )
            };
            (
                format!(
                    "step `{step_name}` input `{}` is in `{option}`, so it takes a plain `{t}` value, not `{{Self}}`",
                    input.name
                ),
                format!("expected a `{t}` value"),
                format!(
                    "{why}; pass a `{t}` value, or remove `{}` from `{option}` to pass another step's output",
                    input.name
                ),
                quote!(: #root::__private::ValueMode),
            )
        } else {
            // A `Vec<X>` input also takes a list of `Artifact<X>` (fan-in): say so.
            let (label, list_note) = match crate::ast::vec_item(ty) {
                Some(item) => {
                    let x = escape_braces(&type_string(item));
                    (
                        format!("expected `&Artifact<{t}>`, `Artifact<{t}>`, a `{t}` value or a list of `Artifact<{x}>`"),
                        format!("; a list of outputs, `&Vec<Artifact<{x}>>`, is gathered into one `{t}` (fan-in)"),
                    )
                }
                None => (
                    format!("expected `&Artifact<{t}>`, `Artifact<{t}>` or a `{t}` value"),
                    String::new(),
                ),
            };
            (
                format!(
                    "step `{step_name}` input `{}` expects `{t}`, but got `{{Self}}`",
                    input.name
                ),
                label,
                format!(
                    "pass another step's output of type `{t}` (e.g. `&data.x_train`) or a plain `{t}` value; a step with several outputs returns a struct: pass one of its fields{list_note}"
                ),
                quote!(),
            )
        };
        quote! {
            #[doc(hidden)]
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            pub trait #trait_name<__PlM>: #root::__private::WireInput<#ty, __PlM> {}
            #[diagnostic::do_not_recommend]
            impl<__PlM #mode_bound, __PlA: #root::__private::WireInput<#ty, __PlM>>
                #trait_name<__PlM> for __PlA {}
        }
    });

    // Outputs: a single artifact, or a struct of named artifacts.
    let outputs = &step.outputs.outputs;
    let (wiring_ret, outputs_struct) = if step.outputs.named {
        let fields = outputs.iter().map(|(n, t)| {
            let doc = format!("Output `{n}` of step `{step_name}`.");
            quote!(#[doc = #doc] pub #n: #root::Artifact<#t>,)
        });
        let binds = outputs
            .iter()
            .map(|(n, _)| quote!(#n: __pl_binder.bind(&self.#n),));
        let handles = outputs
            .iter()
            .enumerate()
            .map(|(i, (n, t))| quote!(#n: #root::__private::artifact::<#t>(__pl_at, #i),));
        let doc = format!(
            "The outputs of step `{step_name}`, one artifact handle per name in `outputs(..)`."
        );
        (
            quote!(#name::Outputs),
            quote! {
                #[doc = #doc]
                #[derive(Clone, Debug)]
                pub struct Outputs { #(#fields)* }
                impl #root::__private::PipelineOutput for Outputs {
                    fn bind(&self, __pl_binder: &#root::__private::Binder<'_>) -> Self {
                        Outputs { #(#binds)* }
                    }
                }
                impl #root::__private::StepHandles for Outputs {
                    #[inline]
                    fn at(__pl_at: (u64, usize)) -> Self {
                        Outputs { #(#handles)* }
                    }
                }
            },
        )
    } else {
        // `Artifact<T>` is built by the runtime (`StepHandles`).
        let t = &outputs[0].1;
        (quote!(#root::Artifact<#t>), quote!())
    };

    // One bound check per type, spanned at the type: the only place a missing bound is
    // reported. Each yields the function pointers the runtime's `wire` uses. The checks
    // live in `StepFn::parts`, whose environment has no bounds: the trait solver's answers
    // for a type are then shared by every step of the crate (a wiring function's own
    // bounds made them per step).
    let input_checks = step.inputs.iter().map(|input| {
        let ty = &input.value_ty;
        quote_spanned! {check_span(ty)=>
            (&&&&&#root::__private::Probe::<#ty, #root::Bincode>::NEW)
                .__pl_probe()
                .verify_input::<#ty, #root::Bincode>()
        }
    });
    // An output's cacher path is written once, in a type alias beside the function, so an
    // unknown cacher is one error; the alias is then used at the cacher's location, so a
    // cacher that cannot store the type (or is not `Default`) is reported at its path. The
    // default `Bincode` stores every serde type and needs no alias.
    let mut cacher_aliases = Vec::new();
    let mut output_types = Vec::new();
    let mut output_checks = Vec::new();
    let mut cacher_values = Vec::new();
    // The types of `parts()` and `invoke()` written out (the trait's projections, e.g.
    // `InOps<Self>`, are the same types; written out, rustc has nothing to normalize).
    let mut out_ops_types = Vec::new();
    let mut cacher_types = Vec::new();
    let mut value_types = Vec::new();
    for (i, ((n, ty), chosen)) in outputs.iter().zip(cachers).enumerate() {
        let (cacher, cacher_at) = match chosen {
            Some(p) => {
                let alias = format_ident!("__pl_cacher_{}_{}", name, i);
                let alias_at_cacher =
                    Ident::new(&alias.to_string(), Span::call_site().located_at(p.span()));
                cacher_aliases.push(quote! {
                    #[doc(hidden)]
                    #[allow(non_camel_case_types)]
                    type #alias = #p;
                });
                (quote!(#alias), quote!(#alias_at_cacher))
            }
            None => (
                quote!(#root::Bincode),
                quote_spanned!(n.span()=> #root::Bincode),
            ),
        };
        let span = match chosen {
            Some(p) => p.span(),
            None => n.span(),
        };
        cacher_values.push(quote_spanned!(span=>
            <#cacher_at as ::core::default::Default>::default()
        ));
        output_checks.push(quote_spanned! {check_span(ty)=>
            (&&&&&#root::__private::Probe::<#ty, #cacher>::NEW)
                .__pl_probe()
                .verify_output::<#ty, #cacher_at>()
        });
        output_types.push(quote!(#root::__private::Out<#ty, #cacher>));
        out_ops_types.push(quote!(#root::__private::Ops<#ty, #cacher>));
        cacher_types.push(cacher.clone());
        value_types.push(quote!(#ty));
    }

    // The wiring function's generic parameters: how each argument is given (`WireInput`'s
    // `M`), inferred at the call.
    let modes: Vec<Ident> = (0..step.inputs.len())
        .map(|i| format_ident!("__PlM{}", i))
        .collect();
    let wiring_args = step.inputs.iter().zip(&modes).map(|(input, m)| {
        let n = &input.name;
        let trait_name = format_ident!("__Input_{}", input.name);
        quote_spanned!(input.arg_ty.span()=> #n: impl #name::#trait_name<#m>)
    });
    let given = step.inputs.iter().zip(&modes).map(|(input, m)| {
        let n = &input.name;
        let ty = &input.value_ty;
        quote!(<_ as #root::__private::WireInput<#ty, #m>>::into_input(#n))
    });
    let input_types = step.inputs.iter().map(|input| {
        let ty = &input.value_ty;
        match input.mode {
            Mode::Ref => quote!(#root::__private::Ref<#ty>),
            Mode::Owned => quote!(#root::__private::Owned<#ty>),
            Mode::Handle => quote!(#root::__private::Handle<#ty>),
        }
    });
    let in_ops_types = step.inputs.iter().map(|input| {
        let ty = &input.value_ty;
        quote!(#root::__private::Ops<#ty, #root::Bincode>)
    });
    let fetched_types = step.inputs.iter().map(|input| {
        let ty = &input.value_ty;
        match input.mode {
            Mode::Ref => quote!(::std::sync::Arc<#ty>),
            Mode::Owned => quote!(#ty),
            Mode::Handle => quote!(#root::Artifact<#ty>),
        }
    });
    let input_names = step.inputs.iter().map(|i| i.name.to_string());
    let output_names = outputs.iter().map(|(n, _)| n.to_string());

    // The call, from the fetched arguments to the output values.
    let locals: Vec<Ident> = (0..step.inputs.len())
        .map(|i| format_ident!("__pl_a{}", i))
        .collect();
    let call_args = step
        .inputs
        .iter()
        .zip(&locals)
        .map(|(input, local)| match input.mode {
            Mode::Ref => quote!(&*#local),
            _ => quote!(#local),
        });
    let wrap = if step.outputs.named {
        let parts: Vec<Ident> = (0..outputs.len())
            .map(|i| format_ident!("__pl_o{}", i))
            .collect();
        let list = cons(parts.iter().map(|p| quote!(#p)));
        quote! {
            let (#(#parts,)*) = __pl_value;
            ::core::result::Result::Ok(#list)
        }
    } else {
        quote!(::core::result::Result::Ok((__pl_value, ())))
    };
    // An `async fn` step's blocking form (a worker process runs it): its future, owning the
    // fetched arguments (so it is `'static`), on `run_async`'s runtime, which names the
    // `tokio` feature when it is off.
    let the_call = match &item.sig.asyncness {
        // Spanned at `async`, where the error without the feature points.
        Some(a) => quote_spanned! {a.span()=>
            #root::__private::run_async(async move { #impl_name(#(#call_args),*).await })
        },
        None => quote!(#impl_name(#(#call_args),*)),
    };
    let is_async = item.sig.asyncness.is_some();
    let body_of = |the_call: &TokenStream| {
        if step.outputs.fallible {
            quote! {
                match #the_call {
                    ::core::result::Result::Ok(__pl_value) => { #wrap }
                    ::core::result::Result::Err(__pl_error) => {
                        // Keeps the error as the run error's source when it is an error, its
                        // text otherwise (autoref specialization, see `StepErrorValue`).
                        #[allow(unused_imports)]
                        use #root::__private::{
                            IntoStepErrorDisplay as _, IntoStepErrorSource as _,
                        };
                        ::core::result::Result::Err(
                            #root::__private::StepErrorValue(__pl_error).into_step_error(),
                        )
                    }
                }
            }
        } else {
            quote! {
                let __pl_value = #the_call;
                #wrap
            }
        }
    };
    let body = body_of(&the_call);
    // An `async fn` step also gives the executor its future, unpolled: the run drives it
    // on its own runtime, with no thread waiting for it (`executor/async_steps.rs`).
    let async_body = if is_async {
        let call_args = step
            .inputs
            .iter()
            .zip(&locals)
            .map(|(input, local)| match input.mode {
                Mode::Ref => quote!(&*#local),
                _ => quote!(#local),
            });
        let awaited = body_of(&quote!(#impl_name(#(#call_args),*).await));
        let locals_pattern = cons(locals.iter().map(|l| quote!(#l)));
        quote! {
            fn async_body(
                __pl_in: ::std::sync::Arc<#root::__private::InOps<Self>>,
                __pl_out: ::std::sync::Arc<#root::__private::OutOps<Self>>,
            ) -> ::core::option::Option<::std::boxed::Box<#root::__private::AsyncBodyFn>> {
                let __pl_start: fn(
                    #root::__private::Fetched<Self>,
                ) -> #root::__private::AsyncOutValues<Self> = |#locals_pattern| {
                    ::std::boxed::Box::pin(async move { #awaited })
                };
                ::core::option::Option::Some(#root::__private::async_body::<Self>(
                    __pl_in, __pl_out, __pl_start,
                ))
            }
        }
    } else {
        quote!()
    };
    let input_list = cons(input_types);
    let output_list = cons(output_types.into_iter());
    let in_ops = cons(input_checks);
    let out_ops = cons(output_checks.into_iter());
    let cacher_list = cons(cacher_values.into_iter());
    let in_ops_type = cons(in_ops_types);
    let out_ops_type = cons(out_ops_types.into_iter());
    let cachers_type = cons(cacher_types.into_iter());
    let fetched_type = cons(fetched_types);
    let values_type = cons(value_types.into_iter());
    let given_list = cons(given);
    let locals_pattern = cons(locals.iter().map(|l| quote!(#l)));
    let enable_cache = match &options.enable_cache {
        Some(b) => quote!(::core::option::Option::Some(#b)),
        None => quote!(::core::option::Option::None),
    };
    let (resources_item, resources) = resources(&root, options.resources.as_ref());
    let ignored_names = step
        .inputs
        .iter()
        .filter(|i| i.ignored)
        .map(|i| i.name.to_string());
    let secret_names = step
        .inputs
        .iter()
        .filter(|i| i.secret)
        .map(|i| i.name.to_string());
    let (expires_item, expires) = cache_expires(&root, options.cache_expires.as_ref());
    let (policy_item, policy) = policy(&root, &options.policy);
    let sig = code::signature_items(&root, code.own, &code.parts, &options.uses);
    let (sig_items, sig_value, sig_parts, sig_uses) =
        (&sig.items, &sig.signature, &sig.parts, &sig.uses);
    let tracking = &code.tracking;
    let own = code.own;
    // A constant declared in `uses` is a helper part already (its tokens and its value).
    let mut value_refs = values::collect(item);
    let declared: Vec<String> = options
        .uses
        .iter()
        .filter(|u| u.bang.is_none())
        .map(|u| crate::signature::pretty(&quote!(#u)))
        .collect();
    value_refs
        .paths
        .retain(|(name, _)| !declared.contains(name));
    let values_name = format_ident!("__pl_values_{}", name);
    let values_fn = values::values_fn(&value_refs, &values_name, &root);
    let values = match values_fn {
        Some(_) => quote!(::core::option::Option::Some(super::#values_name)),
        None => quote!(::core::option::Option::None),
    };
    let module_doc = format!(
        "Generated by `#[step]` for [`{name}`](fn@{name}): its code signature, the plain function (`call`) and its output handles."
    );
    let scope_outer = scope::outer(&root, name);
    let scope_marker = scope::marker();
    let scope_check = scope::check(&root, name, scope::Kind::Step);
    // `call` reaches the function through an inherent impl written beside it, not through
    // `super::`, so a step inside a function body gets the module-level error only.
    let call_await = if is_async { quote!(.await) } else { quote!() };
    let mut body_sig = call_sig.clone();
    body_sig.ident = Ident::new("__pl_call", Span::mixed_site());

    quote! {
        #[doc(hidden)]
        #[allow(clippy::too_many_arguments)]
        #impl_fn

        #values_fn

        #[doc = #module_doc]
        #[allow(dead_code, non_snake_case, non_camel_case_types)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;

            #sig_items

            #[doc = #SIGNATURE_DOC]
            pub const SIGNATURE: u64 = #sig_value;

            #resources_item
            #expires_item

            #policy_item

            #[doc(hidden)]
            pub static __PL_STEP: #root::__private::StepDecl = #root::__private::StepDecl::new(
                ::core::module_path!(),
                #own,
                SIGNATURE,
                #sig_parts,
                #sig_uses,
                #values,
            );

            // The step's registry entry, for worker processes and replays
            // (`pipeline::worker`); the wiring function passes it on to each call.
            #root::__private::register_step! {
                #[doc(hidden)]
                pub static __PL_ENTRY: #root::__private::StepEntry = #root::__private::StepEntry {
                    info: #root::__private::StepInfo {
                        code: &__PL_STEP,
                        name: #step_name,
                        inputs: &[#(#input_names),*],
                        outputs: &[#(#output_names),*],
                        enable_cache: #enable_cache,
                        resources: #resources,
                        cache_ignore: &[#(#ignored_names),*],
                        secret: &[#(#secret_names),*],
                        cache_expires: #expires,
                        policy: #policy,
                        is_async: #is_async,
                    },
                    rebuild: #root::__private::rebuild::<__PlScope>,
                };
            }

            /// The step's complete code signature, as its cache key uses it: `SIGNATURE` with
            /// what is hashed at run time folded in (included files over 4 KiB, the values
            /// of the constants and statics the body names). Computed once per process.
            #[inline]
            pub fn signature() -> u64 {
                // Files read by the macro itself (`Cargo.toml`, `Cargo.lock`), included so
                // that cargo rebuilds when they change.
                #tracking
                // That the step is a module item (see `scope.rs`); does nothing at run time.
                {
                    #scope_check
                }
                __PL_STEP.signature()
            }

            /// The plain function, to call outside a pipeline (e.g. in unit tests).
            #[allow(clippy::too_many_arguments)]
            #[inline]
            pub #call_sig {
                __PlScope::__pl_call(#(#arg_names),*)#call_await
            }

            #scope_marker
            #outputs_struct
            #(#input_traits)*
        }

        // Private, so visible here and in the module only.
        impl #name::__PlScope {
            // Plumbing: lints on the signature (clippy's `ptr_arg` on `&Vec`, ..) fire at
            // the user's function already.
            #[allow(clippy::all, clippy::pedantic, clippy::nursery, clippy::restriction)]
            #[inline]
            #body_sig {
                #impl_name(#(#arg_names),*)#call_await
            }
        }
        #scope_outer

        #(#cacher_aliases)*

        #[allow(clippy::type_complexity)]
        impl #root::__private::StepFn for #name::__PlScope {
            type Inputs = #input_list;
            type Outputs = #output_list;
            type Handles = #wiring_ret;
            fn parts() -> (#in_ops_type, #out_ops_type, #cachers_type) {
                #[allow(unused_imports)]
                use #root::__private::probe::*;
                (#in_ops, #out_ops, #cacher_list)
            }
            fn invoke(
                #locals_pattern: #fetched_type,
            ) -> ::core::result::Result<#values_type, #root::__private::StepError> {
                #body
            }
            #async_body
        }

        #(#docs)*
        #[allow(clippy::too_many_arguments)]
        #vis fn #name<#(#modes),*>(#(#wiring_args),*) -> #wiring_ret {
            #root::__private::wire::<#name::__PlScope>(
                #root::__private::step_entry!(#name),
                #given_list,
            )
        }
    }
}

/// `resources(..)` as a constant in the step's module, and the `StepInfo` field naming it.
/// The memory and time texts are read by the runtime's own `const` parsers, so a text they
/// refuse stops the build with their message ("evaluation panicked: unknown unit; use K,
/// M, G or T"), under the attribute: rustc points at the constant, which is the macro's.
fn resources(
    root: &TokenStream,
    options: Option<&attr::ResourceOptions>,
) -> (TokenStream, TokenStream) {
    let Some(r) = options else {
        return (quote!(), quote!(::core::option::Option::None));
    };
    let mut value = quote!(#root::__private::Resources::new());
    if let Some(cpus) = &r.cpus {
        value = quote!(#value.cpus(#cpus));
    }
    if let Some(mem) = &r.mem {
        value = quote!(#value.mem(#root::__private::Memory::parse_or_panic(#mem)));
    }
    if let Some(gpus) = &r.gpus {
        value = quote!(#value.gpus(#gpus));
    }
    if let Some(time) = &r.time {
        value = quote!(#value.time(#root::__private::TimeLimit::parse_or_panic(#time)));
    }
    (
        quote! {
            #[doc(hidden)]
            pub const __PL_RESOURCES: #root::__private::Resources = #value;
        },
        quote!(::core::option::Option::Some(&__PL_RESOURCES)),
    )
}

/// `cache_expires = ".."` as a constant in the step's module, and the `StepInfo` field
/// naming it. The text is read by the runtime's own `const` parser; the call is spanned at
/// the literal, so a text it refuses stops the build there with its message.
fn cache_expires(root: &TokenStream, text: Option<&syn::LitStr>) -> (TokenStream, TokenStream) {
    let Some(text) = text else {
        return (quote!(), quote!(::core::option::Option::None));
    };
    // Every token of the call at the literal (the root path too), so rustc reports a
    // refused text under the literal rather than under the whole attribute.
    let root = respan(root.clone(), text.span());
    let value = quote_spanned!(text.span()=> #root::__private::expiry_or_panic(#text));
    (
        quote! {
            #[doc(hidden)]
            pub const __PL_CACHE_EXPIRES: ::core::time::Duration = #value;
        },
        quote_spanned!(text.span()=> ::core::option::Option::Some(__PL_CACHE_EXPIRES)),
    )
}

/// `tokens` with every token (inside groups too) at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let proc_macro2::TokenTree::Group(g) = &tree {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tree = proc_macro2::TokenTree::Group(group);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}

/// `retries`, `retry_delay`, `backoff` and `timeout` as a `StepPolicy` constant in the
/// step's module, and the `StepInfo` field naming it. The texts are read by the runtime's own
/// `const` parser, so a text it refuses stops the build with its message under the literal.
fn policy(root: &TokenStream, options: &attr::PolicyOptions) -> (TokenStream, TokenStream) {
    if options.is_empty() {
        return (quote!(), quote!(::core::option::Option::None));
    }
    let mut items = quote!();
    let mut value = quote!(#root::__private::StepPolicy::new());
    if let Some(retries) = &options.retries {
        value = quote!(#value.retries(#retries));
    }
    // Each text is read in a constant of its own whose tokens are all at the literal, so a
    // text the parser refuses is reported under the literal (as `cache_expires` is).
    let mut duration = |name: &str, text: &syn::LitStr| {
        let ident = Ident::new(name, text.span());
        let at = respan(root.clone(), text.span());
        let read = quote_spanned!(text.span()=> #at::__private::parse_duration_or_panic(#text));
        items.extend(quote! {
            #[doc(hidden)]
            pub const #ident: ::core::time::Duration = #read;
        });
        quote_spanned!(text.span()=> #ident)
    };
    if let Some(delay) = &options.retry_delay {
        let delay = duration("__PL_RETRY_DELAY", delay);
        value = quote!(#value.retry_delay(#delay));
    }
    if let Some(backoff) = &options.backoff {
        value = quote!(#value.backoff(#backoff));
    }
    if let Some(timeout) = &options.timeout {
        let timeout = duration("__PL_TIMEOUT", timeout);
        value = quote!(#value.timeout(#timeout));
    }
    (
        quote! {
            #items
            #[doc(hidden)]
            pub const __PL_POLICY: #root::__private::StepPolicy = #value;
        },
        quote!(::core::option::Option::Some(&__PL_POLICY)),
    )
}

/// `(a, (b, ()))`: a list as the runtime's `InputList` and `OutputList` take it.
fn cons(items: impl DoubleEndedIterator<Item = TokenStream>) -> TokenStream {
    items
        .rev()
        .fold(quote!(()), |rest, item| quote!((#item, #rest)))
}

/// What a function that cannot be a step expands to, beside its errors: the function
/// itself (so its body is still checked) and every public name a step has, with a wiring
/// function that accepts any arguments and returns handles that wire anywhere. Pipelines
/// and tests that use the step then compile as if it were fine: one mistake, its errors only.
fn stub(options: &StepOptions, item: &ItemFn, code: &StepCode) -> TokenStream {
    let root = attr::root(&options.krate);
    let vis = &item.vis;
    let name = &item.sig.ident;
    let impl_name = format_ident!("__pl_step_{}", name);
    let docs = doc_attrs(&item.attrs);
    let mut hidden = item.clone();
    hidden.sig.ident = impl_name.clone();
    hidden.vis = syn::parse_quote!(pub);
    hidden.attrs.retain(|a| !a.path().is_ident("doc"));

    let generic = !item.sig.generics.params.is_empty();
    let unwired = quote!(#root::__private::Unwired);
    // The handle type for an output of type `ty`, when it can be named.
    let handle = |ty: &Type| -> TokenStream {
        let ty = match ty {
            Type::Reference(r) => &*r.elem,
            other => other,
        };
        match ty {
            Type::ImplTrait(_) | Type::Infer(_) | Type::TraitObject(_) | Type::Never(_) => {
                unwired.clone()
            }
            _ if generic => unwired.clone(),
            _ => quote!(#root::Artifact<#ty>),
        }
    };
    let (_, value_ty) = ast::returned_value(item);
    let (ret, outputs_struct) = match &options.outputs {
        Some((_, names)) => {
            let mut unique: Vec<&Ident> = Vec::new();
            for n in names {
                if !unique.contains(&n) {
                    unique.push(n);
                }
            }
            let elems: Option<Vec<&Type>> = match &value_ty {
                Type::Tuple(t) if t.elems.len() == unique.len() => Some(t.elems.iter().collect()),
                _ => None,
            };
            let fields = unique.iter().enumerate().map(|(i, n)| {
                let ty = match &elems {
                    Some(elems) => handle(elems[i]),
                    None => unwired.clone(),
                };
                quote!(pub #n: #ty,)
            });
            (
                quote!(#name::Outputs),
                quote! {
                    #[derive(Clone, Debug)]
                    pub struct Outputs { #(#fields)* }
                    impl #root::__private::PipelineOutput for Outputs {
                        fn bind(&self, _: &#root::__private::Binder<'_>) -> Self {
                            ::core::clone::Clone::clone(self)
                        }
                    }
                },
            )
        }
        // Parsing stopped early: `outputs(..)` may have been meant, so wire anywhere.
        None if options.incomplete => (unwired.clone(), quote!()),
        None => (handle(&value_ty), quote!()),
    };
    let params = item.sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(pt) => Some(quote_spanned!(pt.span()=> _: impl ::core::marker::Sized)),
        FnArg::Receiver(_) => None,
    });
    let sig = code::signature_items(&root, code.own, &code.parts, &options.uses);
    let (sig_items, sig_value) = (&sig.items, &sig.signature);
    let tracking = &code.tracking;
    let scope_outer = scope::outer(&root, name);
    let scope_inner = scope::inner(&root, name, scope::Kind::Step);
    quote! {
        #[doc(hidden)]
        #[allow(dead_code, private_interfaces, clippy::too_many_arguments)]
        #hidden

        #[doc(hidden)]
        #[allow(dead_code, non_snake_case)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;
            #sig_items
            pub const SIGNATURE: u64 = #sig_value;
            pub fn signature() -> u64 {
                #tracking
                SIGNATURE
            }
            pub use super::#impl_name as call;
            #scope_inner
            #outputs_struct
        }
        #scope_outer

        #(#docs)*
        #[allow(dead_code, clippy::too_many_arguments)]
        #vis fn #name(#(#params),*) -> #ret {
            #root::__private::unwired()
        }
    }
}
