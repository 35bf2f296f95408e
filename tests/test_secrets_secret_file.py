"""The secrets of a `[webhooks] secret_file` are among those every client masks
(`AuditConfig.all_secrets`): `collect` and `billing` mask them in what the Gateway answers, as
they mask `ASG_WEBHOOK_SECRET`'s."""

from __future__ import annotations

from pathlib import Path

from asg_audit.config import AuditConfig, Secret


def _revealed(config: AuditConfig) -> set[str]:
    return {s.reveal() for s in config.all_secrets()}


def test_a_secret_files_secrets_are_masked_too(tmp_path: Path) -> None:
    secrets = tmp_path / "hook.secret"
    secrets.write_text("whsec_FROMFILEnew\nwhsec_FROMFILEold  # rotating\n")
    config = AuditConfig(api_key=Secret("sk_sandbox_k"), webhooks={"secret_file": str(secrets)})
    assert _revealed(config) == {"sk_sandbox_k", "whsec_FROMFILEnew", "whsec_FROMFILEold"}


def test_an_unreadable_secret_file_leaves_the_others(tmp_path: Path) -> None:
    # the webhooks commands refuse it with the reason; a collect still masks what it holds
    config = AuditConfig(
        api_key=Secret("sk_sandbox_k"), webhooks={"secret_file": str(tmp_path / "missing")}
    )
    assert _revealed(config) == {"sk_sandbox_k"}
