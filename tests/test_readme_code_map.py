"""The README's code map names every module of the package's top level, and every package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _code_map() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Code map")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_every_module_is_on_the_map() -> None:
    section = _code_map()
    package = ROOT / "asg_audit"
    modules = sorted(p.name for p in package.glob("*.py") if not p.name.startswith("__"))
    subpackages = sorted(
        p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    )
    assert modules and subpackages
    missing = [m for m in modules if f"`{m}`" not in section]
    missing += [f"{d}/" for d in subpackages if f"`{d}/" not in section]
    assert missing == []
