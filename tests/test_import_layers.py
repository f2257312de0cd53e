"""The floors of the house, checked on the source (AST, every import statement, lazy ones included).

models/ know no data code, losses, systems, loop, sharding policy or bridge; objectives/ know no models; no system
imports another system; eval/ imports neither the loop nor the systems; bridges/ import no command line (the model
registry lives in the bridge). See docs/architecture.md.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "imujax"

FORBIDDEN = {
    "models": ("imujax.transforms", "imujax.objectives", "imujax.systems", "imujax.train", "imujax.sharding",
               "imujax.bridges"),
    "objectives": ("imujax.models",),
    "eval": ("imujax.train", "imujax.systems"),
    "bridges": ("imujax.convert", "imujax.compare"),  # the registry lives in the bridge; the CLIs sit on top
}


def imported_modules(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an import statement in ``path`` names; `from a import b` yields both a
    and a.b, since b may be a submodule."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports would hide the floor; the project uses absolute ones
                found.append((node.lineno, f"<relative import level {node.level}>"))
                continue
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(floor: str, rule) -> list[str]:
    bad = []
    for path in sorted((PACKAGE / floor).rglob("*.py")):
        for line, name in imported_modules(path):
            reason = rule(path, name)
            if reason:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} ({reason})")
    return bad


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_floor_imports_nothing_forbidden(floor):
    def rule(path, name):
        hit = next((p for p in FORBIDDEN[floor] if _under(name, p)), None)
        return f"{floor}/ must not import {hit}" if hit else None

    assert violations(floor, rule) == []


def test_no_system_imports_another_system():
    systems = {p.stem for p in (PACKAGE / "systems").glob("*.py") if p.stem != "__init__"}

    def rule(path, name):
        other = name.split(".")[2] if _under(name, "imujax.systems") and name.count(".") >= 2 else None
        if other in systems and other != path.stem:
            return "a system is a short binding; shared pieces live in models/, transforms/, objectives/ or eval/"
        return None

    assert violations("systems", rule) == []


def test_no_module_imports_another_modules_private_names():
    """Helpers two modules share are public where they belong (e.g. rule builders in bridges/torch/rules.py)."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imujax"):
                bad += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {node.module}.{alias.name}"
                        for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert bad == []


def test_the_check_sees_lazy_and_from_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from imujax.systems import imu2clip\n\ndef f():\n    import imujax.train as t\n")
    names = [name for _, name in imported_modules(source)]
    assert "imujax.systems.imu2clip" in names and "imujax.train" in names
