//! Code signatures: xxh3-64 over a canonical rendering of tokens.
//!
//! The rendering keeps what the compiler sees (identifiers, punctuation with its spacing,
//! literal text, group delimiters) and drops what it does not: whitespace, comments, and
//! doc comments (which reach a macro as `#[doc = ".."]` attributes). So reformatting or
//! editing comments keeps a step cached, while any change to a token invalidates it.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// Canonical text of `tokens`, doc attributes removed.
pub(crate) fn canonical(tokens: TokenStream) -> String {
    let mut out = String::new();
    render(tokens, &mut out);
    out
}

/// The code signature of `tokens`.
pub(crate) fn signature(tokens: TokenStream) -> u64 {
    xxhash_rust::xxh3::xxh3_64(canonical(tokens).as_bytes())
}

fn render(tokens: TokenStream, out: &mut String) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        if let Some(skip) = doc_attribute_len(&trees[i..]) {
            i += skip;
            continue;
        }
        match &trees[i] {
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                out.push(' ');
            }
            TokenTree::Punct(p) => {
                out.push(p.as_char());
                // Joint vs alone distinguishes `a << b` from `a < < b` and `a && b` from
                // `a & &b`, so it is part of the token; but a proc macro also sees `:` in
                // `x:&T` as joint, and there it only records missing whitespace.
                let next = match trees.get(i + 1) {
                    Some(TokenTree::Punct(next)) => Some(next.as_char()),
                    _ => None,
                };
                let joint = p.spacing() == Spacing::Joint
                    && next.is_some_and(|next| forms_operator(p.as_char(), next));
                out.push(if joint { '~' } else { ' ' });
            }
            TokenTree::Literal(lit) => {
                out.push_str(&lit.to_string());
                out.push(' ');
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("\u{2060}", "\u{2061}"),
                };
                out.push_str(open);
                render(g.stream(), out);
                out.push_str(close);
                out.push(' ');
            }
        }
        i += 1;
    }
}

/// Whether `a` directly followed by `b` lexes as (part of) one multi-character operator:
/// `::`, `->`, `=>`, `==`, `!=`, `<=`, `>=`, `&&`, `||`, `<<`, `>>`, `..`, `..=`, `...`
/// and the compound assignments (`+=`, `<<=`, ..).
fn forms_operator(a: char, b: char) -> bool {
    matches!(
        (a, b),
        (':', ':')
            | ('-', '>')
            | ('=', '>')
            | ('=', '=')
            | ('&', '&')
            | ('|', '|')
            | ('<', '<')
            | ('>', '>')
            | ('.', '.')
            | ('.', '=')
            | (
                '+' | '-' | '*' | '/' | '%' | '^' | '&' | '|' | '<' | '>' | '!',
                '='
            )
    )
}

/// If `trees` starts with `#[doc ...]` or `#![doc ...]`, how many trees it spans.
fn doc_attribute_len(trees: &[TokenTree]) -> Option<usize> {
    let TokenTree::Punct(hash) = trees.first()? else {
        return None;
    };
    if hash.as_char() != '#' {
        return None;
    }
    let (bang, group_at) = match trees.get(1)? {
        TokenTree::Punct(p) if p.as_char() == '!' => (true, 2),
        _ => (false, 1),
    };
    let TokenTree::Group(g) = trees.get(group_at)? else {
        return None;
    };
    if g.delimiter() != Delimiter::Bracket {
        return None;
    }
    match g.stream().into_iter().next() {
        Some(TokenTree::Ident(i)) if i == "doc" => Some(if bang { 3 } else { 2 }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn sig(src: &str) -> u64 {
        signature(src.parse().expect("test source parses"))
    }

    #[test]
    fn formatting_and_comments_do_not_change_the_signature() {
        let a = sig("fn add(a: u32, b: u32) -> u32 { a + b }");
        let b =
            sig("fn add(\n    a: u32,\n    b: u32,\n) -> u32 {\n    // sum\n    a + b /* x */\n}");
        // The trailing comma is a token: formatting that adds it is a change rustfmt makes,
        // so compare without it too.
        let c = sig("fn   add( a :u32 , b:u32)->u32{a+b}");
        assert_eq!(a, c);
        assert_ne!(a, b, "a trailing comma is a real token");
    }

    #[test]
    fn doc_comments_do_not_change_the_signature() {
        let plain = quote! { fn f(x: u8) -> u8 { x } };
        let documented = quote! {
            /// Doubles nothing.
            #[doc = "more docs"]
            fn f(x: u8) -> u8 {
                //! inner doc
                x
            }
        };
        assert_eq!(signature(plain), signature(documented));
    }

    #[test]
    fn one_token_changes_the_signature() {
        let base = sig("fn f(x: u8) -> u8 { x + 1 }");
        assert_ne!(base, sig("fn f(x: u8) -> u8 { x + 2 }"));
        assert_ne!(base, sig("fn f(x: u16) -> u8 { x + 1 }"));
        assert_ne!(base, sig("fn f(y: u8) -> u8 { y + 1 }"));
        assert_ne!(base, sig("fn f(x: u8) -> u8 { x - 1 }"));
        assert_ne!(sig("fn f() { a << b }"), sig("fn f() { a < < b }"));
        assert_ne!(sig("fn f() { (a) }"), sig("fn f() { [a] }"));
        assert_ne!(sig(r#"fn f() { "a" }"#), sig(r#"fn f() { "b" }"#));
    }

    #[test]
    fn spacing_counts_only_inside_operators() {
        // Whitespace between punctuation that forms no operator is formatting.
        assert_eq!(sig("fn f(xs:&[u8]) {}"), sig("fn f(xs: &[u8]) {}"));
        assert_eq!(sig("fn f() { g(&*x); }"), sig("fn f() { g(& *x); }"));
        assert_eq!(sig("fn f() -> Vec<u8>{}"), sig("fn f() -> Vec < u8 > {}"));
        // Inside an operator it is meaning.
        assert_ne!(sig("fn f() { a && b }"), sig("fn f() { a & &b }"));
        assert_ne!(sig("fn f() { a || b }"), sig("fn f() { a | |b| b }"));
        assert_ne!(sig("fn f() { a >>= 1 }"), sig("fn f() { a >> = 1 }"));
        assert_ne!(sig("fn f() { a..=b }"), sig("fn f() { a.. =b }"));
        assert_ne!(sig("fn f() { a != b }"), sig("fn f() { a ! = b }"));
        assert_ne!(sig("fn f() { x::y }"), sig("fn f() { x: :y }"));
    }

    #[test]
    fn non_doc_attributes_count() {
        assert_ne!(sig("#[inline] fn f() {}"), sig("fn f() {}"));
    }
}
