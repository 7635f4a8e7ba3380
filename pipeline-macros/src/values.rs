//! The constants and statics a step body names, whose values enter its signature at run
//! time (through `Serialize`, where the type implements it).
//!
//! A macro sees names, not items, so this is a careful guess: a path in expression position
//! whose last segment is written like a constant (`OFFSET`, `config::SCALE`). It must never
//! turn a compiling step into one that does not compile, so it leaves out every name that
//! may be local to the body (bindings, items declared or imported inside it, except `use`
//! items at the top of the body, which the generated code repeats), paths of `std`, `core`
//! and primitive types (they cannot change), names inside `unsafe` blocks (a `static mut`)
//! and under `#[cfg]` attributes (may not exist in this build), and arguments of macros
//! other than the standard formatting and assertion macros (their input may not be
//! expressions). A body with a glob import in a nested block, a local `macro_rules!` or a
//! brace-delimited statement macro (`thread_local! { .. }`), any of which may declare names
//! unseen, names nothing. The generated code then refers to each name exactly as the body
//! does.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, ExprPath, Item, ItemFn, ItemUse, Pat, Stmt, Token, UseTree};

use crate::signature::pretty;

/// The constants and statics a step body names.
#[derive(Default)]
pub(crate) struct ValueRefs {
    /// `use` items at the top level of the body: repeated so the names they import resolve.
    pub uses: Vec<ItemUse>,
    /// Each path once, with how explanations name it (`OFFSET`, `config::SCALE`).
    pub paths: Vec<(String, ExprPath)>,
}

impl ValueRefs {
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Finds the constant-like paths in `item`'s body.
pub(crate) fn collect(item: &ItemFn) -> ValueRefs {
    if item.sig.unsafety.is_some() {
        return ValueRefs::default();
    }
    let mut block = (*item.block).clone();
    // Names bound or declared anywhere in the function shadow items of the same name.
    let mut locals = Locals::default();
    for arg in &item.sig.inputs {
        if let syn::FnArg::Typed(pt) = arg {
            locals.pattern(&pt.pat);
        }
    }
    let mut uses = Vec::new();
    for stmt in &block.stmts {
        if let Stmt::Item(Item::Use(u)) = stmt {
            uses.push(u.clone());
        }
    }
    for stmt in &mut block.stmts {
        match stmt {
            // Top-level `use` items are repeated, so their names are not local.
            Stmt::Item(Item::Use(_)) => {}
            other => locals.visit_stmt_mut(other),
        }
    }
    let mut finder = Finder {
        locals: &locals.names,
        found: Vec::new(),
    };
    for stmt in &mut block.stmts {
        finder.visit_stmt_mut(stmt);
    }
    ValueRefs {
        uses,
        paths: finder.found,
    }
}

/// Every name a body binds (patterns) or declares (nested items and `use`s).
#[derive(Default)]
struct Locals {
    names: HashSet<String>,
}

impl Locals {
    fn pattern(&mut self, pat: &Pat) {
        let mut pat = pat.clone();
        self.visit_pat_mut(&mut pat);
    }

    fn use_tree(&mut self, tree: &UseTree) {
        match tree {
            UseTree::Path(p) => self.use_tree(&p.tree),
            UseTree::Name(n) => {
                self.names.insert(n.ident.to_string());
            }
            UseTree::Rename(r) => {
                self.names.insert(r.rename.to_string());
            }
            UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t)),
            // A glob may bring any name into scope: nothing named in the body after it can
            // be trusted to resolve outside.
            UseTree::Glob(_) => {
                self.names.insert("*".into());
            }
        }
    }
}

impl VisitMut for Locals {
    fn visit_pat_ident_mut(&mut self, p: &mut syn::PatIdent) {
        self.names.insert(p.ident.to_string());
        visit_mut::visit_pat_ident_mut(self, p);
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        let ident = match item {
            Item::Const(i) => Some(&i.ident),
            Item::Static(i) => Some(&i.ident),
            Item::Fn(i) => Some(&i.sig.ident),
            Item::Struct(i) => Some(&i.ident),
            Item::Enum(i) => Some(&i.ident),
            Item::Union(i) => Some(&i.ident),
            Item::Mod(i) => Some(&i.ident),
            Item::Type(i) => Some(&i.ident),
            Item::Trait(i) => Some(&i.ident),
            Item::Macro(i) => i.ident.as_ref(),
            Item::Use(u) => {
                let tree = u.tree.clone();
                self.use_tree(&tree);
                None
            }
            _ => None,
        };
        if let Some(ident) = ident {
            self.names.insert(ident.to_string());
        }
        if let Item::Macro(m) = item {
            self.macro_call(&m.mac);
        }
        visit_mut::visit_item_mut(self, item);
    }

    fn visit_stmt_macro_mut(&mut self, m: &mut syn::StmtMacro) {
        self.macro_call(&m.mac);
        visit_mut::visit_stmt_macro_mut(self, m);
    }
}

impl Locals {
    /// A macro in statement position may declare names the body then uses
    /// (`thread_local! { static COUNTER: .. }`, a local `macro_rules!`): a brace-delimited
    /// one other than the known expression macros, or any `macro_rules!` definition, turns
    /// the guess off for the whole body, as a glob import does.
    fn macro_call(&mut self, mac: &syn::Macro) {
        let name = mac
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default();
        let braces = matches!(mac.delimiter, syn::MacroDelimiter::Brace(_));
        if name == "macro_rules" || (braces && !EXPRESSION_MACROS.contains(&name.as_str())) {
            self.names.insert("*".into());
        }
    }
}

struct Finder<'a> {
    locals: &'a HashSet<String>,
    found: Vec<(String, ExprPath)>,
}

/// The standard macros whose arguments are expressions separated by commas.
const EXPRESSION_MACROS: &[&str] = &[
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "dbg",
    "eprint",
    "eprintln",
    "format",
    "panic",
    "print",
    "println",
    "todo",
    "unimplemented",
    "unreachable",
    "vec",
    "write",
    "writeln",
];

/// Paths that start here name items that cannot change between builds of the crate.
const FIXED_ROOTS: &[&str] = &[
    "std", "core", "alloc", "Self", "bool", "char", "str", "f32", "f64", "i8", "i16", "i32", "i64",
    "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
];

/// `OFFSET`, `MAX_2`, `K`: written as a constant.
fn looks_like_constant(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn has_cfg(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") || a.path().is_ident("cfg_attr"))
}

impl VisitMut for Finder<'_> {
    fn visit_expr_path_mut(&mut self, p: &mut ExprPath) {
        if p.qself.is_some() || has_cfg(&p.attrs) || self.locals.contains("*") {
            return;
        }
        let segments = &p.path.segments;
        if segments
            .iter()
            .any(|s| !matches!(s.arguments, syn::PathArguments::None))
        {
            return;
        }
        let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
            return;
        };
        let first_name = first.ident.to_string();
        if !looks_like_constant(&last.ident.to_string())
            || FIXED_ROOTS.contains(&first_name.as_str())
            || (p.path.leading_colon.is_none() && self.locals.contains(&first_name))
        {
            return;
        }
        let name = pretty(&p.path.to_token_stream());
        if !self.found.iter().any(|(n, _)| *n == name) {
            let mut path = p.clone();
            path.attrs.clear();
            self.found.push((name, path));
        }
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            // A `static mut` or an `extern` static is only readable in `unsafe`.
            Expr::Unsafe(_) => {}
            Expr::Call(call) => {
                // The callee is a function (or a tuple struct), not a value to hash.
                if !has_cfg(&call.attrs) {
                    for arg in &mut call.args {
                        self.visit_expr_mut(arg);
                    }
                    if !matches!(*call.func, Expr::Path(_)) {
                        self.visit_expr_mut(&mut call.func);
                    }
                }
            }
            Expr::Macro(m) => {
                if !has_cfg(&m.attrs) {
                    self.visit_macro_mut(&mut m.mac);
                }
            }
            other => {
                if !expr_has_cfg(other) {
                    visit_mut::visit_expr_mut(self, other);
                }
            }
        }
    }

    fn visit_stmt_mut(&mut self, s: &mut Stmt) {
        match s {
            // Items inside the body are the body's own: their names are local.
            Stmt::Item(_) => {}
            Stmt::Local(l) if has_cfg(&l.attrs) => {}
            Stmt::Macro(m) if has_cfg(&m.attrs) => {}
            other => visit_mut::visit_stmt_mut(self, other),
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        let Some(name) = mac.path.segments.last().map(|s| s.ident.to_string()) else {
            return;
        };
        if !EXPRESSION_MACROS.contains(&name.as_str()) {
            return;
        }
        if let Ok(args) = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            for mut arg in args {
                self.visit_expr_mut(&mut arg);
            }
        }
    }

    fn visit_pat_mut(&mut self, _: &mut Pat) {
        // Patterns bind names or compare with constants; neither is read as a value here.
    }

    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// Whether an expression carries a `#[cfg]` or `#[cfg_attr]` attribute.
fn expr_has_cfg(e: &Expr) -> bool {
    let attrs = match e {
        Expr::Array(x) => &x.attrs,
        Expr::Assign(x) => &x.attrs,
        Expr::Async(x) => &x.attrs,
        Expr::Await(x) => &x.attrs,
        Expr::Binary(x) => &x.attrs,
        Expr::Block(x) => &x.attrs,
        Expr::Break(x) => &x.attrs,
        Expr::Cast(x) => &x.attrs,
        Expr::Closure(x) => &x.attrs,
        Expr::Const(x) => &x.attrs,
        Expr::Continue(x) => &x.attrs,
        Expr::Field(x) => &x.attrs,
        Expr::ForLoop(x) => &x.attrs,
        Expr::Group(x) => &x.attrs,
        Expr::If(x) => &x.attrs,
        Expr::Index(x) => &x.attrs,
        Expr::Let(x) => &x.attrs,
        Expr::Lit(x) => &x.attrs,
        Expr::Loop(x) => &x.attrs,
        Expr::Match(x) => &x.attrs,
        Expr::MethodCall(x) => &x.attrs,
        Expr::Paren(x) => &x.attrs,
        Expr::Path(x) => &x.attrs,
        Expr::Range(x) => &x.attrs,
        Expr::Reference(x) => &x.attrs,
        Expr::Repeat(x) => &x.attrs,
        Expr::Return(x) => &x.attrs,
        Expr::Struct(x) => &x.attrs,
        Expr::Try(x) => &x.attrs,
        Expr::TryBlock(x) => &x.attrs,
        Expr::Tuple(x) => &x.attrs,
        Expr::Unary(x) => &x.attrs,
        Expr::While(x) => &x.attrs,
        Expr::Yield(x) => &x.attrs,
        _ => return false,
    };
    has_cfg(attrs)
}

/// The generated function that hashes the values, or `None` when the body names none.
pub(crate) fn values_fn(
    refs: &ValueRefs,
    fn_name: &syn::Ident,
    root: &TokenStream,
) -> Option<TokenStream> {
    if refs.is_empty() {
        return None;
    }
    let uses = &refs.uses;
    let adds = refs.paths.iter().map(|(name, path)| {
        quote::quote! {
            __pl_values.add(#name, (&__PlValueProbe(&#path)).__pl_value_hash());
        }
    });
    Some(quote::quote! {
        #[doc(hidden)]
        #[allow(deprecated, unused_imports, non_snake_case, clippy::all)]
        fn #fn_name(__pl_values: &mut #root::__private::Values) {
            use #root::__private::value_probe::{
                OpaqueValue as _, SerializeValue as _, ValueProbe as __PlValueProbe,
            };
            #(#uses)*
            #(#adds)*
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: TokenStream) -> Vec<String> {
        let item: ItemFn = syn::parse2(src).expect("test item parses");
        collect(&item).paths.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn finds_constants_and_statics_named_in_the_body() {
        let found = names(quote::quote! {
            fn convert(x: f64) -> f64 {
                let table = [0u8; SIZE];
                let y = x + OFFSET * config::SCALE + crate::limits::MAX_2;
                println!("{}", LABEL);
                helper(FACTOR, TABLE.len()) + y + OFFSET
            }
        });
        assert_eq!(
            found,
            [
                "SIZE",
                "OFFSET",
                "config::SCALE",
                "crate::limits::MAX_2",
                "LABEL",
                "FACTOR",
                "TABLE"
            ]
        );
    }

    #[test]
    fn leaves_out_names_that_may_not_resolve_outside_the_body() {
        let found = names(quote::quote! {
            fn f(N: usize) -> usize {
                const LOCAL: usize = 1;
                static INNER: usize = 2;
                let BOUND = 3;
                let g = |CLOSED: usize| CLOSED;
                for I in 0..N {}
                match N { K => {} }
                {
                    use other::IMPORTED;
                    let _ = IMPORTED;
                }
                let s = unsafe { COUNTER };
                #[cfg(feature = "fast")]
                let fast = FAST_ONLY;
                let m = my_macro!(DEFINED, 3);
                let p = std::f64::consts::PI + f64::EPSILON + u32::MAX as f64;
                let c = CONSTRUCTOR(1);
                LOCAL + INNER + BOUND + g(1) + s + N + <T as Tr>::ASSOC
            }
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn top_level_use_items_are_repeated_not_skipped() {
        let item: ItemFn = syn::parse2(quote::quote! {
            fn f() -> f64 {
                use crate::config::SCALE;
                SCALE * 2.0
            }
        })
        .expect("parses");
        let refs = collect(&item);
        assert_eq!(refs.uses.len(), 1);
        assert_eq!(refs.paths.len(), 1);
    }

    #[test]
    fn a_glob_import_in_the_body_turns_the_guess_off() {
        let found = names(quote::quote! {
            fn f() -> f64 {
                {
                    use crate::config::*;
                }
                SCALE
            }
        });
        assert!(found.is_empty());
    }

    #[test]
    fn a_macro_that_may_declare_names_turns_the_guess_off() {
        let found = names(quote::quote! {
            fn f() -> u32 {
                thread_local! { static COUNTER: Cell<u32> = Cell::new(0); }
                COUNTER.with(|c| c.get()) + LIMIT
            }
        });
        assert!(found.is_empty(), "{found:?}");
        let found = names(quote::quote! {
            fn f() -> u32 {
                macro_rules! k { () => { const K: u32 = 1; } }
                k!();
                K + LIMIT
            }
        });
        assert!(found.is_empty(), "{found:?}");
        // Expression macros in statement position do not.
        let found = names(quote::quote! {
            fn f() -> u32 {
                println!("{}", LIMIT);
                tracing::info!("x");
                LIMIT
            }
        });
        assert_eq!(found, ["LIMIT"]);
    }

    #[test]
    fn an_unsafe_step_names_nothing() {
        assert!(names(quote::quote! { unsafe fn f() -> u8 { LIMIT } }).is_empty());
    }
}
