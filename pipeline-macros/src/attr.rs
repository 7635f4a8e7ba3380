//! Parsing of `#[step(..)]`, `#[pipeline(..)]` and `#[helper(..)]` options.
//!
//! Every option is parsed with `syn::meta::parse_nested_meta`; each problem is recorded and
//! parsing goes on, so several mistakes are reported in one build. The lists of valid
//! options below are shared by the parser and its messages.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitBool, LitStr, Path, Token};

use crate::errors::Errors;

pub(crate) const STEP_OPTIONS: &[&str] = &[
    "backoff",
    "build_profile",
    "cache_expires",
    "cache_ignore",
    "cacher",
    "crate",
    "deps",
    "enable_cache",
    "name",
    "outputs",
    "resources",
    "retries",
    "retry_delay",
    "secret",
    "source_file",
    "timeout",
    "uses",
    "version",
];
pub(crate) const PIPELINE_OPTIONS: &[&str] = &["crate", "enable_cache", "name"];
pub(crate) const HELPER_OPTIONS: &[&str] = &["crate", "name", "uses"];

/// Step options that enter the code signature as parts of their own rather than through
/// the hash of the step's tokens.
pub(crate) const PART_OPTIONS: &[&str] = &["build_profile", "deps", "source_file", "version"];

/// Step options left out of the code signature: they say where and how a step runs, not
/// what it computes, so changing one keeps the cache.
pub(crate) const RUNTIME_OPTIONS: &[&str] =
    &["backoff", "resources", "retries", "retry_delay", "timeout"];

/// Step options left out of the code signature because the cache key sees their effect
/// directly (`cache_ignore` takes parameters out of it, `secret` keeps them in but hides
/// their values), or must not see it at all (`cache_expires`: an expired entry executes
/// again under the same key).
pub(crate) const KEY_OPTIONS: &[&str] = &["cache_expires", "cache_ignore", "secret"];

/// The keys of `resources(..)`, as `sbatch` options: `--cpus-per-task`, `--mem`,
/// `--gres=gpu:N`, `--time`.
pub(crate) const RESOURCE_KEYS: &[&str] = &["cpus", "mem", "gpus", "time"];

/// `resources(cpus = 4, mem = "8G", gpus = 1, time = "2h")`. The texts are read by the
/// runtime's own parsers in a constant, so the compiler checks them (see `expand/step.rs`).
#[derive(Default)]
pub(crate) struct ResourceOptions {
    pub cpus: Option<syn::LitInt>,
    pub mem: Option<LitStr>,
    pub gpus: Option<syn::LitInt>,
    pub time: Option<LitStr>,
}

/// `retries = 3, retry_delay = "2s", backoff = 2.0, timeout = "10m"`: how the step is run
/// (see the runtime's `policy` module). The texts are read by the runtime's own parser in a
/// constant, so the compiler checks them.
#[derive(Default)]
pub(crate) struct PolicyOptions {
    pub retries: Option<syn::LitInt>,
    pub retry_delay: Option<LitStr>,
    pub backoff: Option<syn::LitFloat>,
    pub timeout: Option<LitStr>,
}

impl PolicyOptions {
    pub(crate) fn is_empty(&self) -> bool {
        self.retries.is_none()
            && self.retry_delay.is_none()
            && self.backoff.is_none()
            && self.timeout.is_none()
    }
}

/// One entry of `uses = [..]`: a path to a `#[helper]`, with `!` for a `macro_rules!` one.
#[derive(Clone)]
pub(crate) struct Use {
    pub path: Path,
    /// `factor!`: a `macro_rules!` helper, asked for its signature by invoking it.
    pub bang: Option<Token![!]>,
}

impl Parse for Use {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let path = input.call(Path::parse_mod_style)?;
        let bang = if input.peek(Token![!]) {
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Use { path, bang })
    }
}

impl quote::ToTokens for Use {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.path.to_tokens(tokens);
        self.bang.to_tokens(tokens);
    }
}

/// Options of `#[step(..)]`.
#[derive(Default)]
pub(crate) struct StepOptions {
    /// `crate = path` or `crate = "path"`: root of the `pipeline` crate (for re-exports).
    pub krate: Option<Path>,
    /// `enable_cache = bool`: `false` re-executes the step on every run.
    pub enable_cache: Option<LitBool>,
    /// `name = "..."`: the step's name in logs, the store and the cache key.
    pub name: Option<LitStr>,
    /// `outputs(a, b, ..)`: names the elements of a tuple return type.
    pub outputs: Option<(Span, Vec<Ident>)>,
    /// `uses = [helper, macro!, ..]`: `#[helper]` items whose signatures fold into this one.
    pub uses: Vec<Use>,
    /// `version = "..."`: a salt bumped by hand to invalidate the cache.
    pub version: Option<LitStr>,
    /// `deps = [smartcore, "tracing-subscriber"]`: crates whose locked versions (from
    /// `Cargo.lock`) enter the signature.
    pub deps: Vec<LitStr>,
    /// `build_profile = bool`: whether `debug` and `release` builds get separate entries.
    pub build_profile: Option<LitBool>,
    /// `source_file = bool`: fold a hash of the whole source file into the signature.
    pub source_file: Option<LitBool>,
    /// `cacher = Type` (one output) or `cacher(output = Type, ..)`: how outputs are stored.
    pub cachers: Vec<(Option<Ident>, Path)>,
    /// `resources(cpus = 4, mem = "8G", gpus = 1, time = "2h")`: what the step asks of the
    /// machine that runs it.
    pub resources: Option<ResourceOptions>,
    /// `cache_ignore = [threads, verbose]`: parameters left out of the cache key.
    pub cache_ignore: Vec<Ident>,
    /// `secret = [token]`: parameters whose values enter the key but are stored only as a
    /// hash, and shown as `<secret>`.
    pub secret: Vec<Ident>,
    /// `cache_expires = "7d"`: how long a completed execution may be reused; read by the
    /// runtime's own `const` parser (see `expand/step.rs`).
    pub cache_expires: Option<LitStr>,
    /// `retries`, `retry_delay`, `backoff` and `timeout`.
    pub policy: PolicyOptions,
    /// Parsing stopped at a syntax error, so options after it are unknown.
    pub incomplete: bool,
}

/// Options of `#[pipeline(..)]`.
#[derive(Default)]
pub(crate) struct PipelineOptions {
    /// `crate = path`.
    pub krate: Option<Path>,
    /// `enable_cache = bool`: default for the steps that do not set it.
    pub enable_cache: Option<LitBool>,
    /// `name = "..."`: the pipeline's name in the store.
    pub name: Option<LitStr>,
}

/// Options of `#[helper(..)]`.
#[derive(Default)]
pub(crate) struct HelperOptions {
    /// `crate = path`.
    pub krate: Option<Path>,
    /// `uses = [helper, macro!, ..]`: helpers this helper calls.
    pub uses: Vec<Use>,
    /// `name = point_methods`: the name of the signature module of an `impl` block (a
    /// type's name would clash with it: types and modules share a namespace).
    pub name: Option<Ident>,
}

fn key_of(meta: &ParseNestedMeta<'_>) -> String {
    let path = &meta.path;
    if let Some(ident) = path.get_ident() {
        ident.to_string()
    } else {
        quote::quote!(#path).to_string().replace(' ', "")
    }
}

fn unknown(meta: &ParseNestedMeta<'_>, attribute: &str, valid: &[&str]) -> syn::Error {
    let key = key_of(meta);
    let hint = match key.as_str() {
        "cache" | "enable_caching" | "caching" => "; did you mean `enable_cache`?",
        "output" => "; did you mean `outputs`?",
        "use" | "helpers" => "; did you mean `uses`?",
        "cachers" | "format" => "; did you mean `cacher`?",
        "retry" | "max_retries" | "attempts" => "; did you mean `retries`?",
        "time_limit" | "max_duration" => "; did you mean `timeout`?",
        "delay" | "retry_delay_seconds" => "; did you mean `retry_delay`?",
        _ => "",
    };
    meta.error(format!(
        "unknown `{attribute}` option `{key}`; expected one of: {}{hint}",
        valid.join(", ")
    ))
}

/// Consumes the value of an option we do not understand, so parsing can go on.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

fn duplicate(errors: &mut Errors, meta: &ParseNestedMeta<'_>, attribute: &str) {
    errors.push(meta.error(format!(
        "duplicate `{attribute}` option `{}`; give each option once",
        key_of(meta)
    )));
}

fn parse_bool(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Option<LitBool>> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(Some(b.clone())),
        _ => {
            errors.spanned(
                &expr,
                format!(
                    "`{}` expects `true` or `false`, e.g. `{} = false`",
                    key_of(meta),
                    key_of(meta)
                ),
            );
            Ok(None)
        }
    }
}

fn parse_str(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) if !s.value().is_empty() => Ok(Some(s.clone())),
        _ => {
            errors.spanned(
                &expr,
                format!(
                    "`{}` expects a non-empty string literal, e.g. `{} = \"{example}\"`",
                    key_of(meta),
                    key_of(meta)
                ),
            );
            Ok(None)
        }
    }
}

/// `crate = ::path` or `crate = "::path"`.
fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<Path> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let s: LitStr = input.parse()?;
        s.parse::<Path>().map_err(|_| {
            syn::Error::new(
                s.span(),
                "`crate` expects a path, e.g. `crate = ::my_crate::pipeline`",
            )
        })
    } else {
        input.parse::<Path>().map_err(|e| {
            syn::Error::new(
                e.span(),
                "`crate` expects a path, e.g. `crate = ::my_crate::pipeline`",
            )
        })
    }
}

/// `uses = [a, b::c, factor!]`.
fn parse_uses(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<Use>> {
    let input = meta.value()?;
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(
            "`uses` expects a list of `#[helper]` items, e.g. `uses = [scale, clean, factor!]`",
        ));
    }
    let content;
    syn::bracketed!(content in input);
    let list = Punctuated::<Use, Token![,]>::parse_terminated(&content)?;
    Ok(list.into_iter().collect())
}

/// `deps = [smartcore, "tracing-subscriber"]`: crate names as identifiers or strings.
fn parse_deps(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Vec<LitStr>> {
    let input = meta.value()?;
    if !input.peek(syn::token::Bracket) {
        return Err(
            input.error("`deps` expects a list of crate names, e.g. `deps = [smartcore, ndarray]`")
        );
    }
    let content;
    syn::bracketed!(content in input);
    enum Dep {
        Ident(Ident),
        Str(LitStr),
    }
    impl Parse for Dep {
        fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
            if input.peek(LitStr) {
                input.parse().map(Dep::Str)
            } else {
                input
                    .call(<Ident as syn::ext::IdentExt>::parse_any)
                    .map(Dep::Ident)
                    .map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "`deps` expects crate names, e.g. `deps = [smartcore, \"tracing-subscriber\"]`",
                        )
                    })
            }
        }
    }
    let list = Punctuated::<Dep, Token![,]>::parse_terminated(&content)?;
    let mut names: Vec<LitStr> = Vec::new();
    for dep in list {
        let name = match dep {
            Dep::Ident(i) => LitStr::new(&i.to_string(), i.span()),
            Dep::Str(s) => s,
        };
        if name.value().is_empty() {
            errors.spanned(&name, "`deps` names a crate, e.g. `deps = [smartcore]`");
        } else if names.iter().any(|n| n.value() == name.value()) {
            errors.spanned(
                &name,
                format!("duplicate crate `{}` in `deps`", name.value()),
            );
        } else {
            names.push(name);
        }
    }
    if names.is_empty() {
        errors.push(meta.error("`deps = []` is empty; name the crates whose versions matter, e.g. `deps = [smartcore]`"));
    }
    Ok(names)
}

/// `cache_ignore = [threads, verbose]` or `secret = [token]`: argument names, each once.
/// Whether each names an argument is checked against the function (`ast.rs`).
fn parse_names(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Vec<Ident>> {
    let key = key_of(meta);
    let example = if key == "secret" {
        "secret = [token]"
    } else {
        "cache_ignore = [threads, verbose]"
    };
    let input = meta.value()?;
    if !input.peek(syn::token::Bracket) {
        return Err(input.error(format!(
            "`{key}` expects a list of the step's argument names, e.g. `{example}`"
        )));
    }
    let content;
    syn::bracketed!(content in input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("`{key}` expects argument names, e.g. `{example}`"),
        )
    })?;
    let mut names: Vec<Ident> = Vec::new();
    for name in list {
        if names.contains(&name) {
            errors.spanned(&name, format!("duplicate name `{name}` in `{key}`"));
        } else {
            names.push(name);
        }
    }
    if names.is_empty() {
        errors.push(meta.error(format!(
            "`{key} = []` is empty; name the step's arguments, e.g. `{example}`"
        )));
    }
    Ok(names)
}

/// `outputs(a, b)`.
fn parse_outputs(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Vec<Ident>> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(
            meta.error("`outputs` expects a list of names, e.g. `outputs(x_train, x_test)`")
        );
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
    let names: Vec<Ident> = list.into_iter().collect();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            errors.spanned(
                name,
                format!("duplicate output name `{name}`; each output needs its own name"),
            );
        }
    }
    if names.is_empty() {
        errors.push(meta.error("`outputs()` is empty; name each element of the returned tuple, e.g. `outputs(x_train, x_test)`"));
    }
    Ok(names)
}

/// `resources(cpus = 4, mem = "8G", gpus = 1, time = "2h")`.
fn parse_resources(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<ResourceOptions> {
    const EXAMPLE: &str = "e.g. `resources(cpus = 4, mem = \"8G\", gpus = 1, time = \"2h\")`";
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!("`resources` expects a list, {EXAMPLE}")));
    }
    let mut r = ResourceOptions::default();
    let mut seen: Vec<String> = Vec::new();
    let empty = std::cell::Cell::new(true);
    meta.parse_nested_meta(|inner| {
        empty.set(false);
        let key = key_of(&inner);
        if RESOURCE_KEYS.contains(&key.as_str()) {
            if seen.contains(&key) {
                errors.push(inner.error(format!(
                    "duplicate `resources` key `{key}`; give each key once"
                )));
                return skip_value(&inner);
            }
            seen.push(key.clone());
        }
        match key.as_str() {
            "cpus" => r.cpus = parse_count(&inner, errors, "cpus = 4", 1)?,
            "gpus" => r.gpus = parse_count(&inner, errors, "gpus = 1", 0)?,
            "mem" => r.mem = parse_text(&inner, errors, "mem = \"8G\"")?,
            "time" => r.time = parse_text(&inner, errors, "time = \"2h\"")?,
            _ => {
                let hint = match key.as_str() {
                    "cpu" | "cores" | "threads" | "cpus_per_task" => "; did you mean `cpus`?",
                    "gpu" | "gres" => "; did you mean `gpus`?",
                    "memory" | "ram" => "; did you mean `mem`?",
                    "time_limit" | "timeout" | "walltime" | "wall_time" => "; did you mean `time`?",
                    _ => "",
                };
                errors.push(inner.error(format!(
                    "unknown `resources` key `{key}`; expected one of: {}{hint}",
                    RESOURCE_KEYS.join(", ")
                )));
                return skip_value(&inner);
            }
        }
        Ok(())
    })?;
    if empty.get() {
        errors.push(meta.error(format!("`resources()` is empty; {EXAMPLE}")));
    }
    Ok(r)
}

/// `cpus = 4`: a whole number of at least `min` that fits in a `u32`.
fn parse_count(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    example: &str,
    min: u32,
) -> syn::Result<Option<syn::LitInt>> {
    let expr: Expr = meta.value()?.parse()?;
    let key = key_of(meta);
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Int(n), ..
    }) = &expr
    {
        match n.base10_parse::<u32>() {
            Ok(v) if v >= min => return Ok(Some(n.clone())),
            Ok(_) => {
                errors.spanned(
                    &expr,
                    format!("`{key}` must be at least {min}, e.g. `{example}`"),
                );
                return Ok(None);
            }
            Err(_) => {}
        }
    }
    if let Expr::Unary(syn::ExprUnary {
        op: syn::UnOp::Neg(_),
        expr: inner,
        ..
    }) = &expr
    {
        if matches!(
            &**inner,
            Expr::Lit(syn::ExprLit {
                lit: Lit::Int(_),
                ..
            })
        ) {
            errors.spanned(
                &expr,
                format!("`{key}` cannot be negative; it must be at least {min}, e.g. `{example}`"),
            );
            return Ok(None);
        }
    }
    errors.spanned(
        &expr,
        format!("`{key}` expects a whole number, e.g. `{example}`"),
    );
    Ok(None)
}

/// `backoff = 2.0` (or `2`): the factor each retry delay grows by, at least 1. Read as a
/// float literal so the constant can hold it; checked again by the runtime's `const fn`.
fn parse_backoff(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<Option<syn::LitFloat>> {
    let expr: Expr = meta.value()?.parse()?;
    let value = match &expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Float(f), ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(n), ..
        }) => n.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    match value {
        Some(v) if (1.0..=1e6).contains(&v) => Ok(Some(syn::LitFloat::new(
            &format!("{v:?}f64"),
            syn::spanned::Spanned::span(&expr),
        ))),
        Some(_) => {
            errors.spanned(
                &expr,
                "`backoff` must be at least 1 (1 keeps the delay constant), e.g. `backoff = 2.0`",
            );
            Ok(None)
        }
        None => {
            errors.spanned(
                &expr,
                "`backoff` expects a number, e.g. `backoff = 2.0` (each retry waits twice as long)",
            );
            Ok(None)
        }
    }
}

/// `mem = "8G"`: a string literal, read by the runtime's parser in a constant.
fn parse_text(
    meta: &ParseNestedMeta<'_>,
    errors: &mut Errors,
    example: &str,
) -> syn::Result<Option<LitStr>> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(Some(s.clone())),
        _ => {
            errors.spanned(
                &expr,
                format!("`{}` expects a string, e.g. `{example}`", key_of(meta)),
            );
            Ok(None)
        }
    }
}

/// `cacher = Json` or `cacher(metrics = Json, model = Bincode)`.
fn parse_cachers(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<(Option<Ident>, Path)>> {
    if meta.input.peek(Token![=]) {
        let path: Path = meta.value()?.parse()?;
        return Ok(vec![(None, path)]);
    }
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error("`cacher` expects `cacher = Json` or `cacher(output = Json, ..)`"));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    struct Entry(Ident, Path);
    impl Parse for Entry {
        fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            Ok(Entry(name, input.parse()?))
        }
    }
    let list = Punctuated::<Entry, Token![,]>::parse_terminated(&content)?;
    if list.is_empty() {
        return Err(meta.error("`cacher()` is empty; e.g. `cacher(metrics = Json)`"));
    }
    Ok(list.into_iter().map(|Entry(n, p)| (Some(n), p)).collect())
}

/// Parses `#[step(..)]` options; problems go to `errors`, and a hard syntax error is
/// returned so the caller reports it too.
pub(crate) fn parse_step(tokens: TokenStream, errors: &mut Errors) -> StepOptions {
    let mut o = StepOptions::default();
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = key_of(&meta);
        if STEP_OPTIONS.contains(&key.as_str()) {
            if seen.contains(&key) {
                duplicate(errors, &meta, "step");
                return skip_value(&meta);
            }
            seen.push(key.clone());
        }
        match key.as_str() {
            // enable_cache = false
            "enable_cache" => o.enable_cache = parse_bool(&meta, errors)?,
            // name = "trainer"
            "name" => o.name = parse_str(&meta, errors, "trainer")?,
            // version = "2"
            "version" => o.version = parse_str(&meta, errors, "2")?,
            // outputs(a, b)
            "outputs" => {
                let span = meta
                    .path
                    .get_ident()
                    .map(Ident::span)
                    .unwrap_or_else(Span::call_site);
                o.outputs = Some((span, parse_outputs(&meta, errors)?));
            }
            // uses = [helper, macro!, ..]
            "uses" => o.uses = parse_uses(&meta)?,
            // deps = [smartcore, "tracing-subscriber"]
            "deps" => o.deps = parse_deps(&meta, errors)?,
            // build_profile = true
            "build_profile" => o.build_profile = parse_bool(&meta, errors)?,
            // source_file = true
            "source_file" => o.source_file = parse_bool(&meta, errors)?,
            // cacher = Json | cacher(out = Json, ..)
            "cacher" => o.cachers = parse_cachers(&meta)?,
            // resources(cpus = 4, mem = "8G", gpus = 1, time = "2h")
            "resources" => o.resources = Some(parse_resources(&meta, errors)?),
            // cache_ignore = [threads, verbose]
            "cache_ignore" => o.cache_ignore = parse_names(&meta, errors)?,
            // secret = [token]
            "secret" => o.secret = parse_names(&meta, errors)?,
            // cache_expires = "7d"
            "cache_expires" => o.cache_expires = parse_str(&meta, errors, "7d")?,
            // retries = 3
            "retries" => o.policy.retries = parse_count(&meta, errors, "retries = 3", 0)?,
            // retry_delay = "2s"
            "retry_delay" => {
                o.policy.retry_delay = parse_text(&meta, errors, "retry_delay = \"2s\"")?
            }
            // backoff = 2.0
            "backoff" => o.policy.backoff = parse_backoff(&meta, errors)?,
            // timeout = "10m"
            "timeout" => o.policy.timeout = parse_text(&meta, errors, "timeout = \"10m\"")?,
            // crate = ::path
            "crate" => o.krate = Some(parse_crate(&meta)?),
            _ => {
                errors.push(unknown(&meta, "step", STEP_OPTIONS));
                return skip_value(&meta);
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
        o.incomplete = true;
    }
    o
}

/// Parses `#[pipeline(..)]` options.
pub(crate) fn parse_pipeline(tokens: TokenStream, errors: &mut Errors) -> PipelineOptions {
    let mut o = PipelineOptions::default();
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = key_of(&meta);
        if PIPELINE_OPTIONS.contains(&key.as_str()) {
            if seen.contains(&key) {
                duplicate(errors, &meta, "pipeline");
                return skip_value(&meta);
            }
            seen.push(key.clone());
        }
        match key.as_str() {
            "enable_cache" => o.enable_cache = parse_bool(&meta, errors)?,
            "name" => o.name = parse_str(&meta, errors, "training")?,
            "crate" => o.krate = Some(parse_crate(&meta)?),
            _ => {
                errors.push(unknown(&meta, "pipeline", PIPELINE_OPTIONS));
                return skip_value(&meta);
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    o
}

/// Parses `#[helper(..)]` options.
pub(crate) fn parse_helper(tokens: TokenStream, errors: &mut Errors) -> HelperOptions {
    let mut o = HelperOptions::default();
    let mut seen: Vec<String> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        let key = key_of(&meta);
        if HELPER_OPTIONS.contains(&key.as_str()) {
            if seen.contains(&key) {
                duplicate(errors, &meta, "helper");
                return skip_value(&meta);
            }
            seen.push(key.clone());
        }
        match key.as_str() {
            // uses = [helper, macro!, ..]
            "uses" => o.uses = parse_uses(&meta)?,
            // name = point_methods
            "name" => {
                let input = meta.value()?;
                o.name = Some(input.parse::<Ident>().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "`name` expects an identifier for the helper's signature module, e.g. `name = point_methods`",
                    )
                })?);
            }
            // crate = ::path
            "crate" => o.krate = Some(parse_crate(&meta)?),
            _ => {
                errors.push(unknown(&meta, "helper", HELPER_OPTIONS));
                return skip_value(&meta);
            }
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    o
}

/// The facade's package name on crates.io; its library is called `pipeline`.
const PACKAGE: &str = "cached-pipeline";
/// The facade's library name: what code imports unless the dependency is renamed.
const LIBRARY: &str = "pipeline";

/// The root path of the `pipeline` crate in generated code: the `crate = path` option, else
/// the name the user's `Cargo.toml` gives the facade (`pl = { package = "cached-pipeline" }`
/// makes it `::pl`), else `::pipeline`.
pub(crate) fn root(krate: &Option<Path>) -> TokenStream {
    if let Some(path) = krate {
        return quote::quote!(#path);
    }
    let name = extern_name(proc_macro_crate::crate_name(PACKAGE).ok());
    let ident = Ident::new(&name, Span::call_site());
    quote::quote!(::#ident)
}

/// How code refers to the facade, given what `proc-macro-crate` found in `Cargo.toml`.
///
/// It reports a dependency by its key with `-` turned into `_`. The key matters only when
/// the dependency is renamed (`package = ..`); otherwise code uses the library's own name,
/// `pipeline`. `Itself` (the facade's own examples and doctests), a manifest without the
/// facade (a crate that re-exports it should pass `crate = path`) or no `Cargo.toml` at
/// all (another build system) also mean `pipeline`. The one case this cannot tell apart is
/// a rename to `cached_pipeline` itself, which is spelled like the unrenamed key.
fn extern_name(found: Option<proc_macro_crate::FoundCrate>) -> String {
    match found {
        Some(proc_macro_crate::FoundCrate::Name(name)) if name != PACKAGE.replace('-', "_") => name,
        _ => LIBRARY.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro_crate::FoundCrate;
    use quote::quote;

    #[test]
    fn the_facade_is_found_under_its_dependency_key_or_its_library_name() {
        // `cached-pipeline = ".."`: not renamed, so the library name.
        assert_eq!(
            extern_name(Some(FoundCrate::Name("cached_pipeline".into()))),
            "pipeline"
        );
        // `pl = { package = "cached-pipeline", .. }` and `pipeline = { package = .. }`.
        assert_eq!(extern_name(Some(FoundCrate::Name("pl".into()))), "pl");
        assert_eq!(
            extern_name(Some(FoundCrate::Name("pipeline".into()))),
            "pipeline"
        );
        // The facade's own examples and doctests, or no manifest entry at all.
        assert_eq!(extern_name(Some(FoundCrate::Itself)), "pipeline");
        assert_eq!(extern_name(None), "pipeline");
    }

    #[test]
    fn a_crate_path_option_wins_over_the_manifest() {
        let path: Path = syn::parse_quote!(::my_framework::pl);
        assert_eq!(root(&Some(path)).to_string(), ":: my_framework :: pl");
    }

    fn step_errors(tokens: TokenStream) -> usize {
        let mut errors = Errors::default();
        let _ = parse_step(tokens, &mut errors);
        match errors.finish() {
            Ok(()) => 0,
            Err(e) => e.into_iter().count(),
        }
    }

    #[test]
    fn parses_every_step_option() {
        let mut errors = Errors::default();
        let o = parse_step(
            quote!(
                enable_cache = false,
                name = "t",
                outputs(a, b),
                uses = [h, m::g, factor!],
                version = "2",
                cacher(a = Json),
                crate = ::re::pipeline,
                deps = [smartcore, "tracing-subscriber"],
                build_profile = true,
                source_file = false,
                cache_ignore = [threads, verbose],
                secret = [token],
                cache_expires = "7d"
            ),
            &mut errors,
        );
        assert!(errors.is_empty());
        let names = |v: &[Ident]| v.iter().map(Ident::to_string).collect::<Vec<_>>();
        assert_eq!(names(&o.cache_ignore), ["threads", "verbose"]);
        assert_eq!(names(&o.secret), ["token"]);
        assert_eq!(
            o.cache_expires.as_ref().map(LitStr::value).as_deref(),
            Some("7d")
        );
        assert_eq!(o.uses.iter().filter(|u| u.bang.is_some()).count(), 1);
        let deps: Vec<String> = o.deps.iter().map(LitStr::value).collect();
        assert_eq!(deps, ["smartcore", "tracing-subscriber"]);
        assert_eq!(o.build_profile.map(|b| b.value), Some(true));
        assert_eq!(o.source_file.map(|b| b.value), Some(false));
        assert_eq!(o.enable_cache.map(|b| b.value), Some(false));
        assert_eq!(o.name.map(|n| n.value()).as_deref(), Some("t"));
        assert_eq!(o.outputs.map(|(_, v)| v.len()), Some(2));
        assert_eq!(o.uses.len(), 3);
        assert_eq!(o.cachers.len(), 1);
        assert!(o.krate.is_some());
    }

    #[test]
    fn three_bad_options_give_three_errors() {
        assert_eq!(
            step_errors(quote!(cache = true, enable_cache = "yes", name = 3)),
            3
        );
    }

    #[test]
    fn parameter_lists_refuse_duplicates_empty_lists_and_non_names() {
        assert_eq!(step_errors(quote!(cache_ignore = [a, a])), 1);
        assert_eq!(step_errors(quote!(secret = [])), 1);
        assert_eq!(step_errors(quote!(cache_ignore = ["a"])), 1);
        assert_eq!(step_errors(quote!(secret = token)), 1);
        assert_eq!(step_errors(quote!(cache_expires = 7)), 1);
        assert_eq!(step_errors(quote!(cache_ignore = [a], secret = [a])), 0);
    }

    #[test]
    fn duplicate_option_is_an_error() {
        assert_eq!(step_errors(quote!(name = "a", name = "b")), 1);
    }

    #[test]
    fn unknown_option_lists_valid_ones() {
        let mut errors = Errors::default();
        let _ = parse_step(quote!(priority = 3), &mut errors);
        let message = errors
            .finish()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("unknown `step` option `priority`"),
            "{message}"
        );
        assert!(
            message.contains("deps, enable_cache, name, outputs"),
            "{message}"
        );
    }

    /// A fixed generator of malformed option lists: each must give an error from every
    /// parser, never a panic.
    #[test]
    fn malformed_attributes_give_errors_not_panics() {
        let keys = [
            "enable_cache",
            "name",
            "outputs",
            "uses",
            "version",
            "cacher",
            "crate",
            "deps",
            "build_profile",
            "source_file",
            "cache_ignore",
            "secret",
            "cache_expires",
            "bogus",
            "",
            "1",
        ];
        let values = [
            "",
            "=",
            "= ",
            "= true true",
            "= [",
            "= (",
            "= ]",
            "= 1.5",
            "= \"\"",
            "()",
            "(,)",
            "(a,,b)",
            "(1)",
            "= [1]",
            "= [a,,]",
            "= fn",
            "(a = )",
            "= = true",
            "= !",
            "(a b)",
            "= -1",
        ];
        let mut cases = 0;
        for key in keys {
            for value in values {
                let src = format!("{key}{value}");
                if src.is_empty() {
                    continue; // an empty attribute is valid
                }
                let Ok(tokens) = src.parse::<TokenStream>() else {
                    continue;
                };
                type ParseFn = fn(TokenStream, &mut Errors);
                let parsers: [(&str, ParseFn); 3] = [
                    ("step", |t, e| drop(parse_step(t, e))),
                    ("pipeline", |t, e| drop(parse_pipeline(t, e))),
                    ("helper", |t, e| drop(parse_helper(t, e))),
                ];
                for (which, parse) in parsers {
                    let mut errors = Errors::default();
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        parse(tokens.clone(), &mut errors)
                    }));
                    assert!(result.is_ok(), "{which} parser panicked on `{src}`");
                    assert!(errors.finish().is_err(), "{which} parser accepted `{src}`");
                    cases += 1;
                }
            }
        }
        assert!(cases >= 200, "only {cases} cases generated");
    }
}
