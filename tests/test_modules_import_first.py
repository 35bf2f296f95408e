"""Every module of the package can be the first one a program imports.

`chain` and `chain_verify` import each other: a name re-exported at the end of `chain` from
`chain_verify` failed with a circular ImportError whenever `chain_verify` was imported first
(`asg-audit report` crashed so once the report read fee coverage from it). Each module is
imported as the first of the package.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import asg_audit


def _modules() -> list[str]:
    found = [
        info.name
        for info in pkgutil.walk_packages(asg_audit.__path__, "asg_audit.")
        if info.name != "asg_audit.__main__"  # runs the command line
    ]
    assert "asg_audit.chain_verify" in found and len(found) > 50
    return found


# One interpreter imports each module as the first of the package: the package's modules are
# dropped from `sys.modules` before each import, so only the import order inside asg_audit (where
# a cycle fails) is fresh; the third-party libraries stay loaded, which keeps the test to seconds
# (a new interpreter per module took about 45 s).
_FIRST_IMPORTS = """
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "asg_audit" or m.startswith("asg_audit.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed[name] = traceback.format_exc()[-600:]
print(json.dumps(failed))
"""


def test_every_module_imports_first() -> None:
    modules = _modules()
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_IMPORTS, json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    failed = json.loads(done.stdout.splitlines()[-1])
    assert not failed, "\n".join(f"{name}: {err}" for name, err in failed.items())


def test_the_import_check_finds_a_cycle(tmp_path) -> None:
    """The check above fails on the cycle it was written for: a module importing a name from a
    second, which imports the first back, is fine when the second is imported first, and fails
    when the first is."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc.b import B\nA = 1\n")
    (pkg / "b.py").write_text("import cyc.a\nB = 2\n")
    (pkg / "c.py").write_text("from cyc.a import A\nfrom cyc.b import B\n")
    script = _FIRST_IMPORTS.replace('"asg_audit"', '"cyc"').replace('"asg_audit."', '"cyc."')
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(["cyc.b", "cyc.a", "cyc.c"])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)) == ["cyc.b"], done.stdout


def test_chain_still_offers_the_verification_names() -> None:
    from asg_audit import chain, chain_verify

    for name in ("VerifySummary", "fee_coverage", "reconciliation_findings", "verify_chain"):
        assert getattr(chain, name) is getattr(chain_verify, name)
