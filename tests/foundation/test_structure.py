"""The package's shape (issue #14): no import cycles between modules, no private names
imported across modules, no function over 60 lines outside the numba kernels, no copied block
of more than 8 lines. Each check reads the source with `ast` / `tokenize` (nothing is
imported), and each has a test showing that it catches what it forbids.

The allow-lists name what other lanes are fixing; they may only shrink and must end empty
(a listed item that no longer occurs fails the test, so the list is trimmed as fixes land).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mtia_cluster"
MAX_FUNCTION_LINES = 60
MAX_COPIED_LINES = 8

# Import edges (importer -> imported) left out of the cycle check: each closes a cycle in a
# file another lane owns. Must end empty.
CYCLE_EDGES_ALLOWED: set[tuple[str, str]] = set()
# (importer, imported module, name) of private imports in other lanes' files. Must end empty.
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str, str]] = set()
# "path:function" over 60 lines in files other lanes own. Must end empty.
LONG_FUNCTIONS_ALLOWED: set[str] = set()


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by __init__)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _targets(
    mods: dict[str, Path], importer: str, node: ast.Import | ast.ImportFrom
) -> Iterator[tuple[str, str | None]]:
    """(module imported, name imported from it or None) of one import statement, for the
    package's own modules: `from a.b import c` is module a.b.c when that is a module, else
    name c of module a.b. Relative imports are resolved against the importer's package."""
    if isinstance(node, ast.Import):
        yield from ((a.name, None) for a in node.names if a.name in mods)
        return
    base = node.module or ""
    if node.level:
        package = importer if mods[importer].name == "__init__.py" else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        if f"{base}.{alias.name}" in mods:
            yield f"{base}.{alias.name}", None
        elif base in mods:
            yield base, alias.name


def import_graph(
    mods: dict[str, Path],
) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Edges importer -> imported between the package's modules, and the private names
    (one leading underscore) imported from another module. Every import statement counts:
    module level, inside functions and under `if TYPE_CHECKING:` (a cycle that only typing
    or a deferred import hides is still two modules that need each other). Importing a
    submodule does not count as importing its parent package (Python runs the package's
    `__init__` first, but that is packaging, not a dependency the importer chose)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private: list[tuple[str, str, str]] = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, imported in _targets(mods, name, node):
                if target == name:
                    continue
                edges[name].add(target)
                if imported and imported.startswith("_") and not imported.startswith("__"):
                    private.append((name, target, imported))
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def long_functions(root: Path = PACKAGE, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """ "path:function" -> lines (def line to last line, decorators excluded) of every function
    or method longer than `limit`, except numba kernels (`@njit`: one loop the compiler needs
    whole)."""
    out: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any("njit" in ast.unparse(d) for d in node.decorator_list):
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                out[f"{path.relative_to(root.parent).as_posix()}:{node.name}"] = lines
    return out


Statement = tuple[int, int, str]  # first line, last line, normalised text


def statements(text: str) -> list[Statement]:
    """The logical lines of a source text, normalised: tokens joined by one space (so
    indentation, line breaks inside brackets and spacing do not matter), comments dropped,
    docstrings and other bare strings dropped, imports dropped (an import list is not logic)."""
    out: list[Statement] = []
    tokens: list[str] = []
    first = 0
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in skip or tok.type == tokenize.ENDMARKER:
            continue
        if tok.type != tokenize.NEWLINE:
            first = first if tokens else tok.start[0]
            tokens.append(tok.string)
            continue
        bare_string = len(tokens) == 1 and tokens[0][-1:] in ("'", '"')
        if tokens and not bare_string and tokens[0] not in ("import", "from"):
            out.append((first, tok.start[0], " ".join(tokens)))
        tokens = []
    return out


def copied_blocks(
    files: dict[str, str], max_lines: int = MAX_COPIED_LINES, seed: int = 3
) -> list[tuple[str, int, str, int, int]]:
    """(file, line, file, line, lines) of every block of statements that stands twice and
    spans more than `max_lines` source lines (the lines its statements occupy, blank lines
    and comments not counted). Blocks are found from runs of `seed` equal statements,
    extended as far as both copies agree; deterministic (files and positions in order)."""
    stmts = {name: statements(text) for name, text in sorted(files.items())}
    places: dict[tuple[str, ...], list[tuple[str, int]]] = {}
    for name, ss in stmts.items():
        for i in range(len(ss) - seed + 1):
            places.setdefault(tuple(s[2] for s in ss[i : i + seed]), []).append((name, i))
    found: set[tuple[str, int, str, int, int]] = set()
    for group in places.values():
        for j, (fa, a) in enumerate(group):
            for fb, b in group[j + 1 :]:
                sa, sb = stmts[fa], stmts[fb]
                if a and b and sa[a - 1][2] == sb[b - 1][2]:
                    continue  # not where the shared run starts
                n = 0
                while (
                    a + n < len(sa)
                    and b + n < len(sb)
                    and sa[a + n][2] == sb[b + n][2]
                    and not (fa == fb and a + n >= b)  # copies of one file may not overlap
                ):
                    n += 1
                span = min(
                    sum(e - s + 1 for s, e, _ in x[i : i + n]) for x, i in ((sa, a), (sb, b))
                )
                if n >= seed and span > max_lines:
                    found.add((fa, sa[a][0], fb, sb[b][0], span))
    return sorted(found)


def test_no_import_cycles() -> None:
    edges, _ = import_graph(modules())
    missing = sorted(e for e in CYCLE_EDGES_ALLOWED if e[1] not in edges.get(e[0], set()))
    assert not missing, f"allow-listed import edges that no longer exist (remove them): {missing}"
    for importer, imported in CYCLE_EDGES_ALLOWED:
        edges[importer].discard(imported)
    found = cycles(edges)
    assert not found, "import cycles between modules:\n" + "\n".join(map(str, found))


def test_no_private_names_imported_across_modules() -> None:
    _, private = import_graph(modules())
    gone = sorted(PRIVATE_IMPORTS_ALLOWED - set(private))
    assert not gone, f"allow-listed private imports that no longer exist (remove them): {gone}"
    bad = sorted(set(private) - PRIVATE_IMPORTS_ALLOWED)
    assert not bad, "private names imported from another module:\n" + "\n".join(map(str, bad))


def test_no_function_longer_than_60_lines() -> None:
    found = long_functions()
    gone = sorted(LONG_FUNCTIONS_ALLOWED - set(found))
    assert not gone, f"allow-listed long functions now short enough (remove them): {gone}"
    bad = {k: v for k, v in sorted(found.items()) if k not in LONG_FUNCTIONS_ALLOWED}
    assert not bad, "functions over 60 lines:\n" + "\n".join(f"{k} ({v})" for k, v in bad.items())


def test_no_copied_block_longer_than_8_lines() -> None:
    files = {
        p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in modules().values()
    }
    found = copied_blocks(files)
    assert not found, "copied blocks (file, line, file, line, lines):\n" + "\n".join(
        map(str, found)
    )


# The checks catch what they forbid.


def test_cycle_check_sees_cycles_through_deferred_and_typing_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "mtia_cluster"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from mtia_cluster.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import _g\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mtia_cluster.a import x\n"
    )
    (pkg / "d.py").write_text("from mtia_cluster import a\n")
    edges, private = import_graph(modules(pkg))
    assert cycles(edges) == [["mtia_cluster.a", "mtia_cluster.c", "mtia_cluster.sub.b"]]
    assert private == [("mtia_cluster.sub.b", "mtia_cluster.c", "_g")]


def test_length_check_counts_lines_and_spares_numba_kernels(tmp_path: Path) -> None:
    pkg = tmp_path / "mtia_cluster"
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    (pkg / "m.py").write_text(f"def long():\n{body}\n@njit(cache=True)\ndef kernel():\n{body}")
    (pkg / "n.py").write_text("def short():\n" + body[: -len("    x59 = 59\n")])
    assert long_functions(pkg) == {"mtia_cluster/m.py:long": 61}


def test_copy_check_finds_a_reindented_copy_and_ignores_imports() -> None:
    block = "".join(f"total = total + values[{i}] * weights[{i}]\n" for i in range(9))
    one = "def f(values, weights):\n    total = 0\n" + "".join(
        "    " + line + "\n" for line in block.splitlines()
    )
    two = "class A:\n    def g(self, values, weights):\n        total = 0\n"
    two += "".join("        " + line + "  # again\n" for line in block.splitlines())
    imports = "".join(f"from m{i} import (\n    a{i},\n)\n" for i in range(12))
    found = copied_blocks({"one.py": imports + one, "two.py": imports + two})
    assert found == [("one.py", 38, "two.py", 39, 10)]  # `total = 0` and the 9 sums
    assert copied_blocks({"one.py": one, "two.py": two}, max_lines=10) == []
    assert copied_blocks({"one.py": imports, "two.py": imports}) == []
