//! Code generation. Reads only validated ASTs and options.

pub(crate) mod code;
pub(crate) mod helper;
pub(crate) mod pipeline;
pub(crate) mod scope;
pub(crate) mod step;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Attribute, Type};

/// A type as users write it: `Vec<u32>`, not `Vec < u32 >`.
pub(crate) fn type_string(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut s = raw
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" <", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace("[ ", "[")
        .replace(" ]", "]")
        .replace(" ;", ";")
        .replace("( ", "(")
        .replace(" )", ")");
    if s.starts_with("::") {
        s = s.trim_start_matches("::").to_string();
    }
    // Full std paths that our own parsing produced read better short.
    s.replace("std::string::String", "String")
        .replace("std::vec::Vec", "Vec")
}

/// Doc attributes (kept for the generated module and wiring function).
pub(crate) fn doc_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("doc")).collect()
}

/// The span of an item's keyword (after attributes and visibility), for "not a function".
pub(crate) fn item_keyword_span(item: &TokenStream) -> Span {
    let mut iter = item.clone().into_iter().peekable();
    while let Some(tt) = iter.next() {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                iter.next(); // the [..] group
            }
            TokenTree::Ident(i) if i == "pub" => {
                if let Some(TokenTree::Group(_)) = iter.peek() {
                    iter.next();
                }
            }
            other => return other.span(),
        }
    }
    Span::call_site()
}
