//! The validated shape of a `#[step]` function: its inputs, how each is passed, and its
//! outputs. Expansion reads only this.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::attr::StepOptions;
use crate::errors::Errors;

/// How a step argument is declared.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `x: &T` (also `&str` and `&[T]`, stored as `String` and `Vec<T>`).
    Ref,
    /// `x: T`.
    Owned,
    /// `x: Artifact<T>`: the unresolved handle.
    Handle,
}

pub(crate) struct StepInput {
    pub name: Ident,
    pub mode: Mode,
    /// The type as written in the argument list.
    pub arg_ty: Type,
    /// The stored value type `T`.
    pub value_ty: Type,
    /// Named in `cache_ignore = [..]`: a parameter left out of the cache key.
    pub ignored: bool,
    /// Named in `secret = [..]`: a parameter stored and shown only as a hash.
    pub secret: bool,
}

pub(crate) struct StepOutputs {
    /// The function returns `Result<_, _>`.
    pub fallible: bool,
    /// `(name, type)` per output; one entry named `output` for a single output.
    pub outputs: Vec<(Ident, Type)>,
    /// Whether `outputs(..)` named a tuple's elements.
    pub named: bool,
}

pub(crate) struct StepFn {
    pub item: ItemFn,
    pub inputs: Vec<StepInput>,
    pub outputs: StepOutputs,
}

/// Last path segment's identifier, if `ty` is a path type.
fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// The type arguments of `Name<A, B>` if `ty`'s last segment is `name`.
fn generic_args<'a>(ty: &'a Type, name: &str) -> Option<Vec<&'a Type>> {
    let seg = last_segment(ty)?;
    if seg.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &seg.arguments else {
        return None;
    };
    Some(
        args.args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    )
}

/// Structural checks that make expansion impossible. Returns `false` if any failed.
///
/// `#[step]` needs a plain, non-generic free function; `#[helper]` only hashes tokens, so any
/// free function will do, and `#[pipeline]` allows generics.
pub(crate) fn check_item(item: &ItemFn, what: &str, errors: &mut Errors) -> bool {
    let before = errors.len();
    let sig = &item.sig;
    // An `async fn` step is run on the executor's Tokio runtime (feature `tokio`; without
    // it, the generated call says so). A pipeline builds a graph: it cannot be async.
    if what != "helper" && what != "step" {
        if let Some(a) = &sig.asyncness {
            errors.spanned(
                a,
                format!("`#[{what}]` does not support `async fn`; make it a plain `fn` and block on async work inside it"),
            );
        }
    }
    if what != "helper" {
        if let Some(c) = &sig.constness {
            errors.spanned(
                c,
                format!("`#[{what}]` cannot be applied to a `const fn`; remove `const`"),
            );
        }
        if let Some(v) = &sig.variadic {
            errors.spanned(v, format!("`#[{what}]` functions cannot be variadic"));
        }
    }
    if what == "step" {
        if !sig.generics.params.is_empty() {
            errors.spanned(
                &sig.generics,
                "step functions cannot be generic: a cached step needs one concrete type per input and output; write one step per type, or make the variation a parameter",
            );
        } else if let Some(w) = &sig.generics.where_clause {
            errors.spanned(
                w,
                "step functions cannot have a `where` clause: they cannot be generic",
            );
        }
    }
    if let Some(r) = receiver(item) {
        let message = if what == "helper" {
            "`#[helper]` goes on a free function or on the whole `impl` block, not on a method: e.g. `#[helper(name = scaler_methods)] impl Scaler { .. }`, then `uses = [scaler_methods]`".to_string()
        } else {
            format!("`#[{what}]` goes on a free function, not a method: move it out of the `impl` block and pass the value as an argument")
        };
        errors.spanned(r, message);
    }
    errors.len() == before
}

/// The `self` argument, if the function is a method.
pub(crate) fn receiver(item: &ItemFn) -> Option<&syn::Receiver> {
    item.sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Receiver(r) => Some(r),
        FnArg::Typed(_) => None,
    })
}

/// Analyses a step function against its options. Problems go to `errors`; `None` means
/// the function cannot be expanded as a step (the caller emits a stub instead).
pub(crate) fn analyse_step(
    item: ItemFn,
    options: &StepOptions,
    errors: &mut Errors,
) -> Option<StepFn> {
    let mut ok = check_item(&item, "step", errors);
    let mut inputs = Vec::new();
    for arg in &item.sig.inputs {
        let FnArg::Typed(pt) = arg else { continue };
        let name = match &*pt.pat {
            Pat::Ident(p) if p.subpat.is_none() && p.by_ref.is_none() => p.ident.clone(),
            other => {
                errors.spanned(
                    other,
                    "step arguments must be plain names, e.g. `pair: (u32, u32)`: the name identifies the input in the cache key and the store; destructure inside the body instead",
                );
                ok = false;
                continue;
            }
        };
        let arg_ty = (*pt.ty).clone();
        let (mode, value_ty) = match &arg_ty {
            Type::Reference(r) => {
                if let Some(m) = &r.mutability {
                    errors.spanned(
                        m,
                        "step inputs are read-only: take `&T`, or `T` for an owned copy you may mutate",
                    );
                    ok = false;
                    continue;
                }
                (Mode::Ref, stored_type(&r.elem))
            }
            ty => match generic_args(ty, "Artifact") {
                Some(args) if args.len() == 1 => (Mode::Handle, args[0].clone()),
                _ => (Mode::Owned, ty.clone()),
            },
        };
        if let Some(item_ty) = artifact_list_item(&value_ty) {
            let item_ty = crate::expand::type_string(item_ty);
            errors.spanned(
                &arg_ty,
                format!(
                    "step input `{name}` cannot be a list of artifact handles: declare it as `{name}: &[{item_ty}]` (or `Vec<{item_ty}>`), and pass the `Vec<Artifact<{item_ty}>>` in the pipeline body: its items are gathered into one list (fan-in)"
                ),
            );
            ok = false;
            continue;
        }
        if !is_concrete(&value_ty) {
            errors.spanned(
                &value_ty,
                "step inputs need a concrete type, e.g. `xs: &Vec<f64>`; `impl Trait` and `_` cannot be stored",
            );
            ok = false;
            continue;
        }
        inputs.push(StepInput {
            ignored: options.cache_ignore.contains(&name),
            secret: options.secret.contains(&name),
            name,
            mode,
            arg_ty,
            value_ty,
        });
    }
    ok &= check_parameter_lists(&item, &inputs, options, errors);
    let outputs = analyse_outputs(&item, options, errors);
    if !ok {
        return None;
    }
    Some(StepFn {
        item,
        inputs,
        outputs: outputs?,
    })
}

/// `cache_ignore = [..]` and `secret = [..]` name arguments of the step that can be
/// parameters: each error is spanned at the name in the attribute.
fn check_parameter_lists(
    item: &ItemFn,
    inputs: &[StepInput],
    options: &StepOptions,
    errors: &mut Errors,
) -> bool {
    let arguments: Vec<String> = item
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pt) => match &*pt.pat {
                Pat::Ident(p) => Some(p.ident.to_string()),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    let mut ok = true;
    for (option, names, why) in [
        (
            "cache_ignore",
            &options.cache_ignore,
            "an upstream artifact's content is what the step computes from, so it always enters the cache key",
        ),
        (
            "secret",
            &options.secret,
            "an upstream artifact is already stored by the step that produced it",
        ),
    ] {
        for name in names {
            if !arguments.contains(&name.to_string()) {
                let listed = if arguments.is_empty() {
                    "the step has no arguments".to_string()
                } else {
                    format!("the arguments are: {}", arguments.join(", "))
                };
                errors.spanned(
                    name,
                    format!("`{option}` names `{name}`, which is not an argument of this step; {listed}"),
                );
                ok = false;
            } else if let Some(input) = inputs
                .iter()
                .find(|i| i.name == *name && i.mode == Mode::Handle)
            {
                let ty = &input.value_ty;
                errors.spanned(
                    name,
                    format!(
                        "`{option}` takes parameters, but `{name}: Artifact<{}>` is always an upstream artifact; {why}",
                        crate::expand::type_string(ty)
                    ),
                );
                ok = false;
            }
        }
    }
    ok
}

/// Whether `ty` names one concrete type (no `impl Trait`, `_` or trait object).
fn is_concrete(ty: &Type) -> bool {
    !matches!(
        ty,
        Type::ImplTrait(_) | Type::Infer(_) | Type::TraitObject(_) | Type::Never(_)
    )
}

/// `X` when `ty` is `Vec<X>`: an input that a list of `Artifact<X>` can feed (fan-in).
pub(crate) fn vec_item(ty: &Type) -> Option<&Type> {
    generic_args(ty, "Vec")?.first().copied()
}

/// `X` when `ty` (a stored value type) is `Vec<Artifact<X>>`: a list of handles, which a
/// step takes as `&[X]` (fan-in), never as handles.
fn artifact_list_item(ty: &Type) -> Option<&Type> {
    let list = generic_args(ty, "Vec")?;
    let item = generic_args(list.first()?, "Artifact")?;
    item.first().copied()
}

/// `str` is stored as `String` and `[T]` as `Vec<T>`, so `&str` and `&[T]` arguments work.
fn stored_type(ty: &Type) -> Type {
    match ty {
        Type::Path(p) if p.path.is_ident("str") => {
            syn::parse_quote_spanned!(ty.span()=> ::std::string::String)
        }
        Type::Slice(s) => {
            let elem = &s.elem;
            syn::parse_quote_spanned!(ty.span()=> ::std::vec::Vec<#elem>)
        }
        other => other.clone(),
    }
}

/// The value type a step returns: `T` of `-> T` or of `-> Result<T, E>`, and whether it
/// is fallible.
pub(crate) fn returned_value(item: &ItemFn) -> (bool, Type) {
    let ret_ty: Type = match &item.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    match generic_args(&ret_ty, "Result") {
        Some(args) if !args.is_empty() => (true, args[0].clone()),
        _ => (false, ret_ty),
    }
}

/// Whether the `outputs(..)` names are unusable (an error was already reported for them).
pub(crate) fn outputs_are_broken(names: &[Ident]) -> bool {
    names.is_empty()
        || names
            .iter()
            .enumerate()
            .any(|(i, n)| names[..i].contains(n))
}

fn analyse_outputs(
    item: &ItemFn,
    options: &StepOptions,
    errors: &mut Errors,
) -> Option<StepOutputs> {
    let (fallible, value_ty) = returned_value(item);
    let check_value = |ty: &Type, errors: &mut Errors| -> bool {
        if let Type::Reference(r) = ty {
            let elem = &r.elem;
            errors.spanned(
                ty,
                format!(
                    "a step must return an owned value, not a reference: its output is stored; return `{}`",
                    crate::expand::type_string(elem)
                ),
            );
            false
        } else if !is_concrete(ty) {
            errors.spanned(
                ty,
                "a step must return a concrete type: its output is stored, so `impl Trait` cannot be used; name the type, e.g. `Vec<f64>`",
            );
            false
        } else {
            true
        }
    };
    let Some((outputs_span, names)) = &options.outputs else {
        if !check_value(&value_ty, errors) {
            return None;
        }
        return Some(StepOutputs {
            fallible,
            outputs: vec![(Ident::new("output", Span::call_site()), value_ty)],
            named: false,
        });
    };
    if outputs_are_broken(names) {
        return None;
    }
    let Type::Tuple(tuple) = &value_ty else {
        let culprit: &dyn quote::ToTokens = match &item.sig.output {
            ReturnType::Default => &item.sig.ident,
            ReturnType::Type(_, ty) => ty,
        };
        errors.push(syn::Error::new_spanned(
            culprit,
            format!(
                "`outputs({})` names the elements of a tuple, but this step returns `{}`; return a tuple of {} elements, or remove `outputs(..)` for a single output",
                names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                crate::expand::type_string(&value_ty),
                names.len()
            ),
        ));
        return None;
    };
    if tuple.elems.len() != names.len() {
        errors.push(syn::Error::new(
            *outputs_span,
            format!(
                "`outputs(..)` names {} output{} but the step returns a tuple of {} element{}; give one name per element",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                tuple.elems.len(),
                if tuple.elems.len() == 1 { "" } else { "s" },
            ),
        ));
        return None;
    }
    let mut ok = true;
    for elem in &tuple.elems {
        ok &= check_value(elem, errors);
    }
    ok.then(|| StepOutputs {
        fallible,
        outputs: names
            .iter()
            .cloned()
            .zip(tuple.elems.iter().cloned())
            .collect(),
        named: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::parse_step;
    use quote::quote;

    /// Analyses `item` under `#[step(options)]`; returns the analysis and the error count.
    fn analyse(options: proc_macro2::TokenStream, item: ItemFn) -> (Option<StepFn>, usize) {
        let mut errors = Errors::default();
        let options = parse_step(options, &mut errors);
        let step = analyse_step(item, &options, &mut errors);
        (step, errors.len())
    }

    #[test]
    fn inputs_keep_their_mode_and_stored_type() {
        let (step, errors) = analyse(
            quote!(),
            syn::parse_quote! {
                fn f(a: &str, b: &[u8], c: Vec<u8>, d: Artifact<u32>, e: &Matrix) -> u8 { 0 }
            },
        );
        assert_eq!(errors, 0);
        let step = step.expect("analysable");
        let modes: Vec<Mode> = step.inputs.iter().map(|i| i.mode).collect();
        assert!(modes == [Mode::Ref, Mode::Ref, Mode::Owned, Mode::Handle, Mode::Ref]);
        let stored: Vec<String> = step
            .inputs
            .iter()
            .map(|i| crate::expand::type_string(&i.value_ty))
            .collect();
        // `&str` is stored as `String` and `&[u8]` as `Vec<u8>`.
        assert_eq!(stored, ["String", "Vec<u8>", "Vec<u8>", "u32", "Matrix"]);
    }

    #[test]
    fn fallible_and_named_outputs() {
        let (step, errors) = analyse(
            quote!(outputs(a, b)),
            syn::parse_quote! { fn f() -> Result<(u8, String), E> { todo!() } },
        );
        assert_eq!(errors, 0);
        let outputs = step.expect("analysable").outputs;
        assert!(outputs.fallible && outputs.named);
        assert_eq!(outputs.outputs.len(), 2);
    }

    #[test]
    fn an_async_step_is_analysed() {
        // Its future runs on the `tokio` feature's runtime; without the feature the
        // generated call names it (tests/ui/step/async-fn.rs).
        let (step, errors) = analyse(quote!(), syn::parse_quote! { async fn f() -> u8 { 0 } });
        assert_eq!(errors, 0);
        assert!(step.is_some());
    }

    #[test]
    fn each_structural_mistake_is_one_error_and_no_analysis() {
        let cases: Vec<(proc_macro2::TokenStream, ItemFn)> = vec![
            (quote!(), syn::parse_quote! { const fn f() -> u8 { 0 } }),
            (quote!(), syn::parse_quote! { fn f<T>(x: T) -> u8 { 0 } }),
            (quote!(), syn::parse_quote! { fn f(&self) -> u8 { 0 } }),
            (
                quote!(),
                syn::parse_quote! { fn f((a, b): (u8, u8)) -> u8 { a } },
            ),
            (
                quote!(),
                syn::parse_quote! { fn f(x: &mut Vec<u8>) -> u8 { 0 } },
            ),
            (
                quote!(),
                syn::parse_quote! { fn f(x: impl Fn()) -> u8 { 0 } },
            ),
            (
                quote!(),
                syn::parse_quote! { fn f(x: &Vec<u8>) -> &u8 { &x[0] } },
            ),
            (
                quote!(),
                syn::parse_quote! { fn f() -> impl Iterator<Item = u8> { 0..1 } },
            ),
            (
                quote!(outputs(a, b)),
                syn::parse_quote! { fn f() -> Vec<u8> { vec![] } },
            ),
            (
                quote!(outputs(a, b, c)),
                syn::parse_quote! { fn f() -> (u8, u8) { (0, 0) } },
            ),
            (
                quote!(outputs(a, a)),
                syn::parse_quote! { fn f() -> (u8, u8) { (0, 0) } },
            ),
            (
                quote!(outputs()),
                syn::parse_quote! { fn f() -> (u8, u8) { (0, 0) } },
            ),
        ];
        for (options, item) in cases {
            let shown = quote!(#[step(#options)] #item).to_string();
            let (step, errors) = analyse(options, item);
            assert!(step.is_none(), "analysed: {shown}");
            assert_eq!(errors, 1, "{errors} errors for: {shown}");
        }
    }

    #[test]
    fn option_mistakes_leave_the_step_analysable() {
        // Bad options are reported, but the function still expands: pipelines that use it
        // see its real inputs and outputs.
        let (step, errors) = analyse(
            quote!(priority = 3, enable_cache = "no"),
            syn::parse_quote! { fn f(x: u8) -> u8 { x } },
        );
        assert_eq!(errors, 2);
        assert!(step.is_some());
    }
}
