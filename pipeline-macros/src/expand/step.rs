//! `#[step]`: the wiring function, the `<step>` module (`SIGNATURE`, `call`, `Outputs`,
//! per-input wiring traits) and the type-erased body the executor calls.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Item, ItemFn, Path};

use super::{doc_attrs, type_string};
use crate::ast::{self, Mode, StepFn};
use crate::attr::{self, StepOptions};
use crate::errors::Errors;
use crate::signature;

pub(crate) fn expand(attr_tokens: TokenStream, item: TokenStream) -> TokenStream {
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
    // Options and tokens both count: `version = ".."` is a salt, `outputs(..)` a declaration.
    let own = signature::signature(quote!(step(#attr_tokens) #item));
    let Some(step) = ast::analyse_step(item_fn.clone(), &options, &mut errors) else {
        // Keep the function and its public names so the rest of the crate adds no cascade.
        let errs = errors.to_compile_errors();
        let name = &item_fn.sig.ident;
        let vis = &item_fn.vis;
        return quote! {
            #errs
            #item_fn
            #[allow(dead_code)]
            #vis mod #name { pub const SIGNATURE: u64 = #own; }
        };
    };
    let cachers = resolve_cachers(&options, &step, &mut errors);
    let errs = errors.to_compile_errors();
    let generated = generate(&options, &step, &cachers, own);
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

fn generate(
    options: &StepOptions,
    step: &StepFn,
    cachers: &[Option<Path>],
    own: u64,
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
    let call_sig = {
        let mut sig = item.sig.clone();
        sig.ident = Ident::new("call", name.span());
        // `call` only forwards its arguments: `mut x` would warn there.
        for arg in &mut sig.inputs {
            if let syn::FnArg::Typed(pt) = arg {
                if let syn::Pat::Ident(p) = &mut *pt.pat {
                    p.mutability = None;
                }
            }
        }
        sig
    };
    let arg_names: Vec<&Ident> = step.inputs.iter().map(|i| &i.name).collect();

    // Static checks at the user's types: a missing bound points at the type.
    let asserts = step
        .inputs
        .iter()
        .map(|i| &i.value_ty)
        .chain(step.outputs.outputs.iter().map(|(_, t)| t))
        .map(|ty| {
            quote_spanned! {ty.span()=>
                const _: () = #root::__private::assert_step_value::<#ty>();
            }
        });

    // One wiring trait per input, so a mismatch names the step, the input and both types.
    let input_traits = step.inputs.iter().map(|input| {
        let trait_name = format_ident!("__Input_{}", input.name);
        let ty = &input.value_ty;
        let t = type_string(ty);
        let message = format!(
            "step `{step_name}` input `{}` expects `{t}`, but got `{{Self}}`",
            input.name
        );
        let (label, value_impl) = if input.mode == Mode::Handle {
            (format!("expected `&Artifact<{t}>` or `Artifact<{t}>`: this input takes an upstream step's output"), quote!())
        } else {
            (
                format!("expected `&Artifact<{t}>`, `Artifact<{t}>` or a `{t}` value"),
                quote! {
                    impl #trait_name for #ty {
                        fn __into_input(self) -> #root::__private::Input<#ty> {
                            #root::__private::Input::Value(self)
                        }
                    }
                },
            )
        };
        let note = "pass an upstream step's output (e.g. `&data.x_train`) or a plain value; a step with several outputs returns a struct: pass one of its fields";
        quote! {
            #[doc(hidden)]
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            pub trait #trait_name {
                #[doc(hidden)]
                fn __into_input(self) -> #root::__private::Input<#ty>;
            }
            impl #trait_name for #root::Artifact<#ty> {
                fn __into_input(self) -> #root::__private::Input<#ty> {
                    #root::__private::Input::Artifact(self)
                }
            }
            impl<'__pl> #trait_name for &'__pl #root::Artifact<#ty> {
                fn __into_input(self) -> #root::__private::Input<#ty> {
                    #root::__private::Input::Artifact(::core::clone::Clone::clone(self))
                }
            }
            #value_impl
        }
    });

    // Outputs: a single artifact, or a struct of named artifacts.
    let outputs = &step.outputs.outputs;
    let (wiring_ret, make_handles, outputs_struct) = if step.outputs.named {
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
            quote!(#name::Outputs { #(#handles)* }),
            quote! {
                #[doc = #doc]
                #[derive(Clone, Debug)]
                pub struct Outputs { #(#fields)* }
                impl #root::__private::PipelineOutput for Outputs {
                    fn bind(&self, __pl_binder: &#root::__private::Binder<'_>) -> Self {
                        Outputs { #(#binds)* }
                    }
                }
            },
        )
    } else {
        let t = &outputs[0].1;
        (
            quote!(#root::Artifact<#t>),
            quote!(#root::__private::artifact::<#t>(__pl_at, 0)),
            quote!(),
        )
    };

    let wiring_args = step.inputs.iter().map(|input| {
        let n = &input.name;
        let trait_name = format_ident!("__Input_{}", input.name);
        quote_spanned!(input.arg_ty.span()=> #n: impl #name::#trait_name)
    });
    let input_specs = step.inputs.iter().map(|input| {
        let n = &input.name;
        let s = n.to_string();
        let ty = &input.value_ty;
        let trait_name = format_ident!("__Input_{}", input.name);
        let mode = match input.mode {
            Mode::Ref => quote!(Ref),
            Mode::Owned => quote!(Owned),
            Mode::Handle => quote!(Handle),
        };
        quote! {
            #root::__private::InputSpec::new::<#ty>(
                #s,
                #root::__private::InputMode::#mode,
                #name::#trait_name::__into_input(#n),
            )
        }
    });
    let output_specs = outputs.iter().zip(cachers).map(|((n, t), cacher)| {
        let s = n.to_string();
        let cacher = match cacher {
            Some(p) => quote!(#p),
            None => quote!(#root::Bincode),
        };
        quote!(#root::__private::OutputSpec::new::<#t, #cacher>(#s, <#cacher as ::core::default::Default>::default()))
    });

    // The type-erased body: fetch arguments, call, wrap outputs.
    let fetch = step.inputs.iter().enumerate().map(|(i, input)| {
        let local = format_ident!("__pl_a{}", i);
        let ty = &input.value_ty;
        let method = match input.mode {
            Mode::Ref => quote!(shared),
            Mode::Owned => quote!(owned),
            Mode::Handle => quote!(handle),
        };
        quote!(let #local = __pl_ctx.#method::<#ty>(#i)?;)
    });
    let call_args = step.inputs.iter().enumerate().map(|(i, input)| {
        let local = format_ident!("__pl_a{}", i);
        match input.mode {
            Mode::Ref => quote!(&*#local),
            _ => quote!(#local),
        }
    });
    let wrap = if step.outputs.named {
        let parts: Vec<Ident> = (0..outputs.len())
            .map(|i| format_ident!("__pl_o{}", i))
            .collect();
        quote! {
            let (#(#parts,)*) = __pl_value;
            ::core::result::Result::Ok(::std::vec![#(#root::__private::value(#parts)),*])
        }
    } else {
        quote!(::core::result::Result::Ok(
            ::std::vec![#root::__private::value(__pl_value)]
        ))
    };
    let body = if step.outputs.fallible {
        quote! {
            match #name::call(#(#call_args),*) {
                ::core::result::Result::Ok(__pl_value) => { #wrap }
                ::core::result::Result::Err(__pl_error) => ::core::result::Result::Err(
                    #root::__private::StepError::from_display(&__pl_error),
                ),
            }
        }
    } else {
        quote! {
            let __pl_value = #name::call(#(#call_args),*);
            #wrap
        }
    };
    let enable_cache = match &options.enable_cache {
        Some(b) => quote!(::core::option::Option::Some(#b)),
        None => quote!(::core::option::Option::None),
    };
    let uses = options
        .uses
        .iter()
        .map(|p| quote_spanned!(p.span()=> #p::SIGNATURE));
    let module_doc = format!(
        "Generated by `#[step]` for [`{name}`](fn@{name}): its code signature, the plain function (`call`) and its output handles."
    );
    let call_site = Span::call_site();
    let call_ident = Ident::new("call", call_site);
    let _ = call_ident;

    quote! {
        #(#asserts)*

        #[doc(hidden)]
        #[allow(clippy::too_many_arguments)]
        #impl_fn

        #[doc = #module_doc]
        #[allow(dead_code, non_snake_case, non_camel_case_types)]
        #vis mod #name {
            #[allow(unused_imports)]
            use super::*;

            /// The step's code signature: xxh3-64 of its tokens (doc comments excluded), with
            /// its `version` and the signatures of the helpers it `uses` folded in.
            pub const SIGNATURE: u64 = #root::__private::combine_signatures(#own, &[#(#uses),*]);

            /// The plain function, to call outside a pipeline (e.g. in unit tests).
            #[allow(clippy::too_many_arguments)]
            pub #call_sig {
                super::#impl_name(#(#arg_names),*)
            }

            #outputs_struct
            #(#input_traits)*
        }

        #(#docs)*
        #[allow(clippy::too_many_arguments)]
        #vis fn #name(#(#wiring_args),*) -> #wiring_ret {
            let __pl_inputs = ::std::vec![#(#input_specs),*];
            let __pl_outputs = ::std::vec![#(#output_specs),*];
            let __pl_at = #root::__private::add_step(#root::__private::StepDef {
                name: #step_name,
                signature: #name::SIGNATURE,
                enable_cache: #enable_cache,
                inputs: __pl_inputs,
                outputs: __pl_outputs,
                body: ::std::boxed::Box::new(
                    move |__pl_ctx: &mut #root::__private::StepContext|
                        -> ::core::result::Result<
                            ::std::vec::Vec<#root::__private::Value>,
                            #root::__private::StepError,
                        >
                    {
                        #(#fetch)*
                        #body
                    },
                ),
            });
            #make_handles
        }
    }
}
