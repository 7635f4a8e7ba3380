//! `#[pipeline]`: turns the function into a constructor of `Pipeline<Outs>` whose body
//! runs once, at construction, to record the step graph.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemFn, ReturnType, Type};

use crate::attr;
use crate::errors::Errors;

pub(crate) fn expand(attr_tokens: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = attr::parse_pipeline(attr_tokens, &mut errors);
    let item_fn: ItemFn = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(f)) => f,
        Ok(_) => {
            errors.push(syn::Error::new(
                super::item_keyword_span(&item),
                "`#[pipeline]` can only be applied to a function that wires steps together, e.g. `#[pipeline] fn training(gamma: f64) -> Artifact<f64> { .. }`",
            ));
            let errs = errors.to_compile_errors();
            return quote!(#errs #item);
        }
        Err(e) => {
            let e = e.to_compile_error();
            return quote!(#e #item);
        }
    };
    let checked = crate::ast::check_item(&item_fn, "pipeline", &mut errors);
    if crate::ast::receiver(&item_fn).is_some() {
        // Inside an `impl` block: keep the method as written.
        let errs = errors.to_compile_errors();
        return quote!(#errs #item_fn);
    }
    let root = attr::root(&options.krate);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item_fn;
    let name = options
        .name
        .as_ref()
        .map(|n| n.value())
        .unwrap_or_else(|| sig.ident.to_string());
    let out_ty: Type = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let enable_cache = match &options.enable_cache {
        Some(b) => quote!(::core::option::Option::Some(#b)),
        None => quote!(::core::option::Option::None),
    };
    let mut new_sig = sig.clone();
    new_sig.output = syn::parse_quote!(-> #root::Pipeline<#out_ty>);
    let errs = errors.to_compile_errors();
    if !checked {
        // An `async` or `const` pipeline: keep the constructor's signature so callers
        // compile, and report only the mistake above.
        new_sig.asyncness = None;
        new_sig.constness = None;
        return quote! {
            #errs
            #(#attrs)*
            #[allow(unused_variables)]
            #vis #new_sig {
                #root::__private::unwired()
            }
        };
    }
    // Spanned at the return type: a return type that holds no artifacts is reported there,
    // with `PipelineOutput`'s message.
    let build = quote_spanned!(out_ty.span()=> #root::__private::build_pipeline::<#out_ty>);
    quote! {
        #errs
        #(#attrs)*
        #vis #new_sig {
            #build(#name, #enable_cache, move || -> #out_ty #block)
        }
    }
}
