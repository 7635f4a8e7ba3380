//! Procedural macros of the `pipeline` crate: `#[step]`, `#[pipeline]` and `#[helper]`.
//!
//! Use them through the `pipeline` facade (`use pipeline::prelude::*;`); generated code
//! refers to `::pipeline::__private`, or to `crate = path` for re-exporting crates.

mod ast;
mod attr;
mod errors;
mod expand;
mod signature;

use proc_macro::TokenStream;

/// Makes a function a pipeline step. See the `pipeline` crate for the options.
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::step::expand(attr.into(), item.into()).into()
}

/// Makes a function a pipeline constructor that wires steps together.
#[proc_macro_attribute]
pub fn pipeline(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::pipeline::expand(attr.into(), item.into()).into()
}

/// Publishes `<helper>::SIGNATURE` so steps can name the function in `uses = [..]`.
#[proc_macro_attribute]
pub fn helper(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::helper::expand(attr.into(), item.into()).into()
}
