"""The package's import rules that import-linter cannot check (pyproject.toml [tool.importlinter]).

* No module imports a private name (``_name``) of another module of the package, nor reads one
  as ``module._name``: what two modules share is a public helper of a private module. Private
  modules themselves (``_core``, ``_validation``, ``io/_arrays``, ...) may be imported.
* ``fitting`` and ``theory`` do not import the compiled ``_core`` (numpy/scipy only).

An AST scan of the source tree (not of what happens to be importable), so it runs without torch.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "python" / "fractaldiff"

#: Allowed exceptions, "module: imported name"; each entry must still occur (none today).
KNOWN: set[str] = set()


def modules():
    if not PKG.is_dir():
        pytest.skip("the package source is not next to the tests (installed test run)")
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def is_module(dotted: str) -> bool:
    """True when ``dotted`` (fractaldiff....) names a module or package of the tree (or _core)."""
    parts = dotted.split(".")
    if parts[0] != "fractaldiff":
        return False
    base = PKG.parent.joinpath(*parts)
    if parts[-1] == "_core":
        return True
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def resolve(module: str, path: pathlib.Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def violations():
    found = []
    for module, path in modules():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> fractaldiff module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = resolve(module, path, node)
                if not source.startswith("fractaldiff"):
                    continue
                for a in node.names:
                    target = f"{source}.{a.name}"
                    if is_module(target):
                        aliases[a.asname or a.name] = target
                    elif private(a.name) and source != module:
                        found.append(f"{module}: {source}.{a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("fractaldiff") and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and private(node.attr)
                    and aliases[node.value.id] != module
                    and not is_module(f"{aliases[node.value.id]}.{node.attr}")):
                found.append(f"{module}: {aliases[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_no_private_names_across_modules():
    found = set(violations())
    new = sorted(found - KNOWN)
    assert not new, "private names imported across modules:\n" + "\n".join(new)
    gone = sorted(KNOWN - found)
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(gone)


@pytest.mark.parametrize("package", ["fitting", "theory"])
def test_numpy_scipy_only_layers_do_not_import_core(package):
    for module, path in modules():
        if module != f"fractaldiff.{package}" and not module.startswith(f"fractaldiff.{package}."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [resolve(module, path, node)] + [
                    f"{resolve(module, path, node)}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n == "fractaldiff._core" or n.startswith("torch") for n in names), (
                f"{module} imports {names}")
