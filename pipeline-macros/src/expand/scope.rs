//! "Steps and helpers must be module items", said at the item.
//!
//! The module generated beside a step or helper (`mod <name> { use super::*; .. }`) reaches
//! the function through `super::`. Inside a function body, `super::` skips the body and
//! names the enclosing module, so the generated code cannot find the function and rustc
//! would say ``cannot find function `__pl_step_x` in module `super` ``. A proc macro
//! cannot see where it is expanded, so the generated code asks the compiler instead, in a
//! way that never fails to resolve:
//!
//! * beside the function, a private trait `__pl_module_level_<name>` with a method
//!   `__pl_scope(&self) -> AtModuleLevel`, implemented for `<name>::__PlScope`;
//! * inside the module, `(&__PlScope).__pl_scope()`. At module level, `use super::*`
//!   brings that trait into scope and its method wins (no autoref needed). Inside a
//!   function body the trait is out of the module's reach, and `__private::ScopeFallback`
//!   (implemented for `&T`, one autoref further) answers `InFunctionBody`;
//! * the answer goes to `__private::step_at_module_level`, whose bound carries
//!   `#[diagnostic::on_unimplemented]`: one error, spanned at the function's name, saying
//!   what is wrong and how to fix it.
//!
//! A same-named step in the enclosing module does not fool it: its trait is implemented
//! for its own `__PlScope`, not for this one.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

/// What is checked: the message differs.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Step,
    Helper,
}

/// Items beside the function.
pub(crate) fn outer(root: &TokenStream, name: &Ident) -> TokenStream {
    outer_with(root, name, &TokenStream::new())
}

/// [`outer`] for an item whose `#[cfg]` attributes (`cfgs`) also apply to its signature
/// module: both generated items carry them.
pub(crate) fn outer_with(root: &TokenStream, name: &Ident, cfgs: &TokenStream) -> TokenStream {
    let probe = format_ident!("__pl_module_level_{}", name);
    quote! {
        #cfgs
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        trait #probe {
            fn __pl_scope(&self) -> #root::__private::AtModuleLevel {
                #root::__private::AtModuleLevel
            }
        }
        #cfgs
        impl #probe for #name::__PlScope {}
    }
}

/// Items inside the generated module `<name>`, which must `use super::*`.
pub(crate) fn inner(root: &TokenStream, name: &Ident, kind: Kind) -> TokenStream {
    let marker = marker();
    let check = check(root, name, kind);
    quote! {
        #marker

        #[doc(hidden)]
        #[allow(dead_code)]
        fn __pl_module_level() {
            #check
        }
    }
}

/// The marker type alone, for a module that makes the [`check`] in a body of its own.
pub(crate) fn marker() -> TokenStream {
    quote! {
        /// Marks this module for the module-level check (see `__pl_module_level`).
        #[doc(hidden)]
        pub(super) struct __PlScope;
    }
}

/// The check, as statements for a body inside the generated module: it does nothing at run
/// time. `#[step]` puts it in `signature()` rather than in a function of its own (one body
/// fewer per step to compile, see BENCHMARKS.md figure 7).
pub(crate) fn check(root: &TokenStream, name: &Ident, kind: Kind) -> TokenStream {
    let assert = match kind {
        Kind::Step => quote!(step_at_module_level),
        Kind::Helper => quote!(helper_at_module_level),
    };
    // The whole call at the name, so the error points there alone (a call spanned
    // elsewhere would add "required by a bound introduced by this call" at the attribute).
    let call = quote_spanned! {name.span()=>
        __pl_assert((&__PlScope).__pl_scope())
    };
    quote! {
        #[allow(unused_imports)]
        use #root::__private::ScopeFallback as _;
        use #root::__private::#assert as __pl_assert;
        #call;
    }
}
