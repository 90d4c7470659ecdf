#!/usr/bin/env python3
"""Checks that the library's modules import only from their own layer or the layers below.

The crate is read bottom-up in the order of UNITS (src/lib.rs's front page and
docs/architecture.md describe each). Every `crate::...` and `super::...` path in a file under
src/ (the binary and the lib.rs facade aside) must name a unit no higher than the file's own.
Exit status 1, with one line per offending path, if any does; `--self-test` shows that the
check fails on an upward import.
"""

import re
import sys
from pathlib import Path

# Lowest first. A module under one of these paths belongs to it; every library file must.
UNITS = [
    "spec::schedule",
    "spec::manifest",
    "spec::routing",
    "settings::limits",
    "settings::state",
    "engine",
    "sandbox",
    "services::metrics",
    "services::sqlite",
    "services::outbound",
    "services::data",
    "services::site",
    "services::auth",
    "services::builder",
    "services::starter",
    "services::import",
    "app",
    "serving::status",
    "serving::actions",
    "serving::http",
    "serving::watch",
    "server::bundle",
    "server::registry",
    "server::hosts",
    "server::logs",
    "server::config",
    "server::space",
    "server::api",
    "server",
]
# The files that only declare a layer's modules.
LAYER_ROOTS = {"spec", "settings", "services", "serving"}

PATH = re.compile(r"\b(crate|super)((?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(::\{)?")


def module_of(file: Path, src: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    return parts


def unit_of(path: list[str]) -> int | None:
    """The index in UNITS of the longest unit that is a prefix of `path`."""
    best = None
    for index, unit in enumerate(UNITS):
        segments = unit.split("::")
        if path[: len(segments)] == segments:
            if best is None or len(segments) > len(UNITS[best].split("::")):
                best = index
    return best


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def group_paths(text: str, start: int) -> list[str]:
    """The paths inside the brace group that opens at `text[start]` (`{a::b, c::{d, e}}`)."""
    depth, i, current, out = 0, start, "", []
    prefixes = [""]
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
            prefixes.append(prefixes[-1] + current.strip())
            current = ""
        elif ch in ",}":
            if current.strip():
                out.append(prefixes[-1] + current.strip())
            current = ""
            if ch == "}":
                depth -= 1
                prefixes.pop()
                if depth == 0:
                    break
        elif not ch.isspace():
            current += ch
        i += 1
    return [p.split(" as ")[0] for p in out if p not in ("self", "*")]


def references(text: str, module: list[str]) -> list[tuple[list[str], str]]:
    """Every module path the text names, resolved from the crate root, with how it was written."""
    found = []
    for match in PATH.finditer(text):
        head, rest, group = match.group(1), match.group(2), match.group(3)
        segments = [s for s in rest.split("::") if s]
        if head == "crate":
            base = []
        else:
            # `super` from a file's top level is its parent module; the extra `super`s go up.
            base = module[:-1]
        while segments and segments[0] == "super":
            base = base[:-1]
            segments = segments[1:]
        tails = [[]]
        if group:
            tails = [[s for s in p.split("::") if s] for p in group_paths(text, match.end() - 1)]
        for tail in tails:
            found.append((base + segments + tail, match.group(0)))
    return found


def check(src: Path) -> list[str]:
    problems = []
    for file in sorted(src.rglob("*.rs")):
        relative = file.relative_to(src)
        if relative.parts[0] == "bin" or relative == Path("lib.rs"):
            continue
        module = module_of(file, src)
        if len(module) == 1 and module[0] in LAYER_ROOTS:
            continue
        own = unit_of(module)
        if own is None:
            problems.append(
                f"src/{relative}: module `{'::'.join(module)}` is in no layer; "
                "add it to UNITS in .ci/layers.py, in its place"
            )
            continue
        text = strip_comments(file.read_text())
        for path, written in references(text, module):
            # A module's own ancestors are its own tree.
            if path == module[: len(path)]:
                continue
            target = unit_of(path)
            if target is None or target <= own:
                continue
            problems.append(
                f"src/{relative}: `{written}` reaches `{'::'.join(path)}` "
                f"(layer `{UNITS[target]}`) from `{UNITS[own]}`, which is below it; "
                "move the shared type down, or pass a trait or a closure up"
            )
    return problems


def self_test(src: Path) -> int:
    """Adds an upward import to a copy of the tree and checks that it is caught."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy)
        target = copy / "spec" / "manifest.rs"
        target.write_text(target.read_text() + "\nuse crate::app::App;\n")
        problems = check(copy)
    if any("spec/manifest.rs" in p and "crate::app" in p for p in problems):
        print("layers: the check catches an upward import (spec::manifest -> app)")
        return 0
    print("layers: the check MISSED an upward import added to spec/manifest.rs")
    return 1


def main() -> int:
    src = Path(__file__).resolve().parent.parent / "src"
    if "--self-test" in sys.argv:
        return self_test(src)
    problems = check(src)
    for problem in problems:
        print(problem)
    if problems:
        print(f"layers: {len(problems)} upward import(s)")
        return 1
    print(f"layers: every import points down ({len(UNITS)} units)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
