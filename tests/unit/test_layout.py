"""The layout's rules, read from the source: layers import only downwards, core never imports the Streamlit layer,
pages never import each other."""

import ast
from pathlib import Path

from suite import REPO_ROOT

# Each layer may import itself and the layers after it, never the ones before it.
LAYERS = ["pages", "app", "core.present", "core.analysis", "core.pipeline"]


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def layer_of(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return i
    return None


def source_files():
    for folder in ("pages", "app", "core"):
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def test_layers_import_only_downwards():
    wrong = []
    for path in source_files():
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        own = layer_of(module)
        for name in imports_of(path):
            other = layer_of(name)
            if other is not None and other < own:
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_core_never_imports_streamlit_or_the_app():
    wrong = [f"{p.relative_to(REPO_ROOT)}: {name}" for p in (REPO_ROOT / "core").rglob("*.py")
             for name in imports_of(p) if name.split(".")[0] in ("streamlit", "app", "pages")]
    assert wrong == []


def test_the_layer_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from core.present.charts import embedding_map\nimport app.ui\n")
    assert {"core.present.charts", "app.ui"} <= imports_of(bad)
    assert layer_of("core.present.charts") < layer_of("core.pipeline.engine")
