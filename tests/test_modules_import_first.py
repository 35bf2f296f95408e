"""Every module of the package can be the first one a program imports.

`chain` and `chain_verify` import each other: a name re-exported at the end of `chain` from
`chain_verify` failed with a circular ImportError whenever `chain_verify` was imported first
(`asg-audit report` crashed so once the report read fee coverage from it). Each module is
imported on its own, in a fresh interpreter.
"""

from __future__ import annotations

import concurrent.futures
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


def _import_alone(name: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120
    )
    return name, done.returncode, done.stderr[-600:]


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        failed = [r for r in pool.map(_import_alone, _modules()) if r[1] != 0]
    assert not failed, "\n".join(f"{name}: {err}" for name, _, err in failed)


def test_chain_still_offers_the_verification_names() -> None:
    from asg_audit import chain, chain_verify

    for name in ("VerifySummary", "fee_coverage", "reconciliation_findings", "verify_chain"):
        assert getattr(chain, name) is getattr(chain_verify, name)
