//! Code signatures: xxh3-64 over a canonical rendering of tokens, and the scan for what the
//! tokens read at compile time besides themselves.
//!
//! The rendering keeps what the compiler sees (identifiers, punctuation with its spacing,
//! literal text, group delimiters) and drops what it does not: whitespace, comments, and
//! doc comments (which reach a macro as `#[doc = ".."]` attributes). So reformatting or
//! editing comments keeps a step cached, while any change to a token invalidates it.
//!
//! [`scan`] finds the files (`include_str!`, `include_bytes!`, `include!`), build-time
//! environment variables (`env!`, `option_env!`) and `cfg` predicates (`cfg!(..)`,
//! `#[cfg(..)]`, `#[cfg_attr(..)]`) named in the tokens. The expansion repeats each of them
//! (so the compiler, not this macro, reads the file or the variable, and cargo tracks it)
//! and folds the result into the signature.

use proc_macro2::{Delimiter, Group, Ident, Punct, Spacing, TokenStream, TokenTree};
use quote::quote_spanned;

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

/// A macro call as written (`include_str!("data.txt")`).
pub(crate) struct Call {
    pub ident: Ident,
    pub bang: Punct,
    pub group: Group,
}

impl Call {
    /// `::core::<name>!(..)` with the call's own spans: the compiler resolves a relative
    /// path from the same file as the user's call, and a problem with it (a missing file,
    /// an unset variable) is reported at the same place with the same words, so once.
    pub(crate) fn reemit(&self, name: &str) -> TokenStream {
        let span = self.ident.span();
        let name = Ident::new(name, span);
        let bang = &self.bang;
        let group = &self.group;
        quote_spanned!(span=> ::core::#name #bang #group)
    }
}

/// A file the tokens include.
pub(crate) struct Include {
    /// The `include_*` call.
    pub call: Call,
    /// How explanations name it: the literal's value, or the arguments as written.
    pub name: String,
}

/// A build-time environment variable the tokens read.
pub(crate) struct EnvVar {
    /// The `env!` or `option_env!` call.
    pub call: Call,
    /// `option_env!` rather than `env!`.
    pub optional: bool,
    /// The variable's name (`MODE`).
    pub name: String,
}

/// A `cfg` predicate the tokens test.
pub(crate) struct CfgPredicate {
    pub predicate: TokenStream,
    /// The predicate as written: `feature = "fast"`.
    pub name: String,
}

/// What a scan of an item's tokens found, each entry once.
#[derive(Default)]
pub(crate) struct Scan {
    pub includes: Vec<Include>,
    pub envs: Vec<EnvVar>,
    pub cfgs: Vec<CfgPredicate>,
}

impl Scan {
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.includes.is_empty() && self.envs.is_empty() && self.cfgs.is_empty()
    }
}

/// Finds the includes, `env!` reads and `cfg` predicates in `tokens`, at any depth.
///
/// Arguments that contain a `$` (a `macro_rules!` metavariable) are skipped: their value is
/// only known where the macro is used. `env!` inside an include's arguments
/// (`include!(concat!(env!("OUT_DIR"), ..))`) is not a part of its own: the file's content
/// is, and `OUT_DIR` differs between build profiles and machines.
pub(crate) fn scan(tokens: &TokenStream) -> Scan {
    let mut found = Scan::default();
    scan_into(tokens, &mut found);
    found
}

fn scan_into(tokens: &TokenStream, found: &mut Scan) {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    let mut i = 0;
    while i < trees.len() {
        // `name!(..)`, `name![..]` or `name!{..}`.
        if let (TokenTree::Ident(ident), Some(TokenTree::Punct(bang)), Some(TokenTree::Group(g))) =
            (&trees[i], trees.get(i + 1), trees.get(i + 2))
        {
            if bang.as_char() == '!' && !after_dollar(&trees, i) && !foreign_macro(&trees, i) {
                let name = ident.to_string();
                let args = g.stream();
                let usable = !has_dollar(&args) && !args.is_empty();
                match name.as_str() {
                    "include_str" | "include_bytes" | "include" => {
                        if usable {
                            let display = match single_string_literal(&args) {
                                Some(s) => s,
                                None => pretty(&args),
                            };
                            if !found.includes.iter().any(|x| x.name == display) {
                                found.includes.push(Include {
                                    call: Call {
                                        ident: ident.clone(),
                                        bang: bang.clone(),
                                        group: g.clone(),
                                    },
                                    name: display,
                                });
                            }
                        }
                        i += 3;
                        continue;
                    }
                    "env" | "option_env" => {
                        if usable {
                            let var = first_string_literal(&args).unwrap_or_else(|| pretty(&args));
                            if !found.envs.iter().any(|x| x.name == var) {
                                found.envs.push(EnvVar {
                                    call: Call {
                                        ident: ident.clone(),
                                        bang: bang.clone(),
                                        group: g.clone(),
                                    },
                                    optional: name == "option_env",
                                    name: var,
                                });
                            }
                        }
                        i += 3;
                        continue;
                    }
                    "cfg" => {
                        if usable {
                            push_cfg(found, args);
                        }
                        i += 3;
                        continue;
                    }
                    _ => {}
                }
            }
        }
        // `#[cfg(..)]`, `#![cfg(..)]`, `#[cfg_attr(pred, ..)]`.
        if let TokenTree::Punct(hash) = &trees[i] {
            if hash.as_char() == '#' {
                let at = match trees.get(i + 1) {
                    Some(TokenTree::Punct(p)) if p.as_char() == '!' => i + 2,
                    _ => i + 1,
                };
                if let Some(TokenTree::Group(g)) = trees.get(at) {
                    if g.delimiter() == Delimiter::Bracket {
                        if let Some(predicate) = cfg_attribute_predicate(&g.stream()) {
                            if !has_dollar(&predicate) && !predicate.is_empty() {
                                push_cfg(found, predicate);
                            }
                        }
                        // The attribute's other contents (e.g. `cfg_attr(.., doc = include_str!(..))`).
                        scan_into(&g.stream(), found);
                        i = at + 1;
                        continue;
                    }
                }
            }
        }
        if let TokenTree::Group(g) = &trees[i] {
            scan_into(&g.stream(), found);
        }
        i += 1;
    }
}

/// `$name!(..)`: a metavariable, not the built-in macro.
fn after_dollar(trees: &[TokenTree], i: usize) -> bool {
    i > 0 && matches!(&trees[i - 1], TokenTree::Punct(p) if p.as_char() == '$')
}

/// `other::env!(..)`: a macro of another crate that happens to share a built-in's name
/// (`std::env!` and `core::env!` are the built-ins).
fn foreign_macro(trees: &[TokenTree], i: usize) -> bool {
    let colon =
        |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':');
    if i < 2 || !colon(trees.get(i - 1)) || !colon(trees.get(i - 2)) {
        return false;
    }
    match i.checked_sub(3).and_then(|at| trees.get(at)) {
        Some(TokenTree::Ident(krate)) => krate != "std" && krate != "core",
        // `::env!` (a leading `::`) names a crate called `env`.
        _ => true,
    }
}

fn push_cfg(found: &mut Scan, predicate: TokenStream) {
    let name = pretty(&predicate);
    if !found.cfgs.iter().any(|c| c.name == name) {
        found.cfgs.push(CfgPredicate { predicate, name });
    }
}

/// The predicate of `cfg(pred)` or `cfg_attr(pred, ..)`, given an attribute's contents.
fn cfg_attribute_predicate(attr: &TokenStream) -> Option<TokenStream> {
    let mut iter = attr.clone().into_iter();
    let TokenTree::Ident(name) = iter.next()? else {
        return None;
    };
    let TokenTree::Group(g) = iter.next()? else {
        return None;
    };
    if g.delimiter() != Delimiter::Parenthesis || iter.next().is_some() {
        return None;
    }
    if name == "cfg" {
        Some(g.stream())
    } else if name == "cfg_attr" {
        // Up to the first top-level comma.
        Some(
            g.stream()
                .into_iter()
                .take_while(|t| !matches!(t, TokenTree::Punct(p) if p.as_char() == ','))
                .collect(),
        )
    } else {
        None
    }
}

fn has_dollar(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|t| match t {
        TokenTree::Punct(p) => p.as_char() == '$',
        TokenTree::Group(g) => has_dollar(&g.stream()),
        _ => false,
    })
}

/// The value of `tokens` if they are exactly one string literal.
fn single_string_literal(tokens: &TokenStream) -> Option<String> {
    let mut iter = tokens.clone().into_iter();
    let first = iter.next()?;
    if iter.next().is_some() {
        return None;
    }
    string_value(&first)
}

/// The value of the first token if it is a string literal (`env!("MODE", "message")`).
fn first_string_literal(tokens: &TokenStream) -> Option<String> {
    string_value(&tokens.clone().into_iter().next()?)
}

fn string_value(tree: &TokenTree) -> Option<String> {
    let TokenTree::Literal(lit) = tree else {
        return None;
    };
    match syn::Lit::new(lit.clone()) {
        syn::Lit::Str(s) => Some(s.value()),
        _ => None,
    }
}

/// Tokens as a person would write them: `feature = "fast"`, `not(unix)`,
/// `concat!(env!("OUT_DIR"), "/gen.rs")`.
pub(crate) fn pretty(tokens: &TokenStream) -> String {
    let mut out = String::new();
    let mut previous: Option<TokenTree> = None;
    for tree in tokens.clone() {
        let glue = match (&previous, &tree) {
            (None, _) => false,
            // `a::b`, `f(..)`, `m!(..)`, `x.y`, `a,`.
            (Some(TokenTree::Punct(p)), _) if p.spacing() == Spacing::Joint => true,
            (Some(TokenTree::Punct(p)), _) if matches!(p.as_char(), '!' | '.' | '$' | '&') => true,
            (Some(TokenTree::Ident(_)), TokenTree::Group(g))
                if g.delimiter() == Delimiter::Parenthesis =>
            {
                true
            }
            (Some(TokenTree::Punct(p)), TokenTree::Group(_)) if p.as_char() == '!' => true,
            (_, TokenTree::Punct(p)) if matches!(p.as_char(), ',' | '!' | '.' | ';') => true,
            (Some(TokenTree::Punct(p)), _) if p.as_char() == ':' => true,
            (_, TokenTree::Punct(p)) if p.as_char() == ':' => true,
            _ => false,
        };
        if !glue && previous.is_some() {
            out.push(' ');
        }
        match &tree {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                out.push_str(&pretty(&g.stream()));
                out.push_str(close);
            }
            other => out.push_str(&other.to_string()),
        }
        previous = Some(tree);
    }
    out
}

/// `tokens` without the top-level options named in `keys` (`version = "2"`, `deps = [..]`):
/// those enter the signature as parts of their own, so changing one does not read as a
/// changed body.
pub(crate) fn without_options(tokens: &TokenStream, keys: &[&str]) -> TokenStream {
    let mut out: Vec<TokenTree> = Vec::new();
    let mut segment: Vec<TokenTree> = Vec::new();
    let flush =
        |segment: &mut Vec<TokenTree>, out: &mut Vec<TokenTree>, comma: Option<TokenTree>| {
            let skip =
                matches!(segment.first(), Some(TokenTree::Ident(i)) if keys.iter().any(|k| i == k));
            if !skip {
                out.append(segment);
                out.extend(comma);
            }
            segment.clear();
        };
    for tree in tokens.clone() {
        match &tree {
            TokenTree::Punct(p) if p.as_char() == ',' => flush(&mut segment, &mut out, Some(tree)),
            _ => segment.push(tree),
        }
    }
    flush(&mut segment, &mut out, None);
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn names(scan: &Scan) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
        (
            scan.includes.iter().map(|i| i.name.as_str()).collect(),
            scan.envs.iter().map(|e| e.name.as_str()).collect(),
            scan.cfgs.iter().map(|c| c.name.as_str()).collect(),
        )
    }

    #[test]
    fn scan_finds_includes_env_reads_and_cfg_predicates() {
        let tokens = quote! {
            fn f() -> usize {
                let a = include_str!("data.txt").len();
                let b = std::include_bytes!("../big.bin").len();
                let c: usize = include!(concat!(env!("OUT_DIR"), "/gen.rs"));
                let mode = env!("MODE");
                let extra = option_env!("EXTRA", );
                #[cfg(feature = "fast")]
                let d = 1;
                #[cfg(not(feature = "fast"))]
                let d = 2;
                if cfg!(debug_assertions) { 0 } else { a + b + c + d + include_str!("data.txt").len() }
            }
        };
        let found = scan(&tokens);
        let (includes, envs, cfgs) = names(&found);
        assert_eq!(
            includes,
            [
                "data.txt",
                "../big.bin",
                "concat!(env!(\"OUT_DIR\"), \"/gen.rs\")"
            ]
        );
        // `OUT_DIR` is only a path to the included file: the file's content is the part.
        assert_eq!(envs, ["MODE", "EXTRA"]);
        assert!(found.envs[1].optional && !found.envs[0].optional);
        assert_eq!(
            cfgs,
            [
                "feature = \"fast\"",
                "not(feature = \"fast\")",
                "debug_assertions"
            ]
        );
    }

    #[test]
    fn scan_sees_cfg_attr_and_skips_macro_metavariables() {
        let tokens = quote! {
            macro_rules! m {
                ($p:literal) => { include_str!($p) };
                () => { env!("FIXED") };
            }
            #[cfg_attr(unix, inline)]
            fn g() {}
        };
        let found = scan(&tokens);
        let (includes, envs, cfgs) = names(&found);
        assert!(includes.is_empty());
        assert_eq!(envs, ["FIXED"]);
        assert_eq!(cfgs, ["unix"]);
    }

    #[test]
    fn macros_of_other_crates_with_built_in_names_are_not_built_ins() {
        let tokens = quote! {
            fn f() {
                std::env!("A");
                core::include_str!("a.txt");
                config::env!("B");
                ::cfg!(x);
            }
        };
        let found = scan(&tokens);
        let (includes, envs, cfgs) = names(&found);
        assert_eq!((includes, envs), (vec!["a.txt"], vec!["A"]));
        assert!(cfgs.is_empty());
    }

    #[test]
    fn nothing_to_find_in_plain_code() {
        let tokens =
            quote! { fn f(x: &[f32], k: f32) -> Vec<f32> { x.iter().map(|v| v * k).collect() } };
        assert!(scan(&tokens).is_empty());
    }

    #[test]
    fn options_with_parts_of_their_own_leave_the_body_hash() {
        let a = without_options(
            &quote!(name = "x", version = "2", deps = [serde]),
            &["version", "deps"],
        );
        let b = without_options(&quote!(name = "x", version = "3"), &["version", "deps"]);
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(canonical(a), canonical(quote!(name = "x",)));
    }

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
