#!/usr/bin/env python3
"""Prints the import graph of a crate's modules and any circles in it.

Reads `use crate::...` paths (and inline `crate::a::b` paths) in every .rs file under a
crate's src/ (tests excluded: `#[cfg(test)] mod tests` blocks at the foot of a file and
`tests.rs` files), and maps each file to a module: `store/lease.rs` -> `store::lease`,
`executor/mod.rs` -> `executor`. An import `crate::store::Holder` is an edge to the
deepest module that exists (`store`). Reports the graph at two levels: files (modules),
and top-level modules (`store::lease` counted as `store`), with the strongly connected
components of size > 1 (circles) of each.

Usage: scripts/module_graph.py [pipeline-core/src]   (exit status 1 when a circle exists)
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "pipeline-core/src"
modules = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs") or f == "tests.rs":
            continue
        rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
        if rel[-1] in ("mod", "lib", "main"):
            rel = rel[:-1]
        text = open(os.path.join(dirpath, f)).read()
        cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
        modules["::".join(rel) or "crate"] = text[: cut.start()] if cut else text


def resolve(path):
    parts = path.split("::")
    for n in range(len(parts), 0, -1):
        if "::".join(parts[:n]) in modules:
            return "::".join(parts[:n])
    return None


def uses(text):
    out = set()
    # `use crate::a::{b, c::d}` and inline `crate::a::b`; a brace group names items of `a`
    # or submodules of it (both resolved to the deepest existing module).
    for m in re.finditer(r"crate::([A-Za-z_][\w:]*)(::\{([^}]*)\})?", text):
        base = m.group(1).rstrip(":")
        names = [base]
        if m.group(3):
            names = [base + "::" + n.strip().split(" ")[0] for n in m.group(3).split(",") if n.strip()]
        for n in names:
            r = resolve(n)
            if r:
                out.add(r)
    return out


def sccs(graph):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = i[0]
        i[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def is_within(a, b):
    return a == b or a.startswith(b + "::") or b.startswith(a + "::")


files = {m: sorted(d for d in uses(t) if not is_within(d, m)) for m, t in modules.items()}
top = {}
for m, deps in files.items():
    t = m.split("::")[0]
    top.setdefault(t, set()).update(d.split("::")[0] for d in deps if d.split("::")[0] != t)
top = {m: sorted(d) for m, d in top.items()}

status = 0
for title, graph in (("modules (files)", files), ("top-level modules", top)):
    print(f"== {title}")
    for m in sorted(graph):
        if m != "crate":
            print(f"  {m} -> {', '.join(graph[m]) or '-'}")
    circles = sccs({m: d for m, d in graph.items() if m != "crate"})
    for c in circles:
        print(f"  CIRCLE: {' <-> '.join(c)}")
        status = 1
    if not circles:
        print("  no circles")
sys.exit(status)
