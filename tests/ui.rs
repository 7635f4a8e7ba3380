//! Compile-time diagnostics of `#[step]`, `#[pipeline]` and `#[helper]`, pinned by trybuild.
//!
//! Each `tests/ui/<macro>/<mistake>.rs` holds one mistake; its `.stderr` is the exact
//! message users see. Regenerate with `TRYBUILD=overwrite cargo test --test ui` and read
//! the diff. `tests/ui/pass/` holds code that must keep compiling.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/step/*.rs");
    t.compile_fail("tests/ui/pipeline/*.rs");
    t.compile_fail("tests/ui/helper/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
