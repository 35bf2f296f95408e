"""Library callers building a client directly get the base URL rules config applies (fixer H1).

e635eb1 made config refuse a base_url/chain_url holding `user:pass@` (httpx sends it as Basic
auth in place of the key: a 401 blamed on the key), a query or a fragment (every path appended
inside it). `ChainClient(url)` and `GatewayClient(url, key)` bypass config and checked only
that the URL was http(s) with a host: they now refuse the same, naming the setting and never
showing the value.
"""

from __future__ import annotations

import asyncio

import pytest

from asg_audit.chain import ChainClient
from asg_audit.errors import ConfigError
from asg_audit.gateway import GatewayClient

PASSWORD = "hunter2pw"  # a test value
BAD = {
    "credentials": f"http://auditor:{PASSWORD}@127.0.0.1:9",
    "user only": "http://auditor@127.0.0.1:9",
    "query": f"http://127.0.0.1:9/v1?token={PASSWORD}",
    "fragment": f"http://127.0.0.1:9/#{PASSWORD}",
}


def _refused(exc: pytest.ExceptionInfo[ConfigError], setting: str) -> str:
    text = str(exc.value)
    assert text.startswith(f"{setting} cannot be the base URL of requests"), text
    assert PASSWORD not in text and "auditor" not in text and "127.0.0.1" not in text, text
    return text


@pytest.mark.parametrize("url", BAD.values(), ids=BAD.keys())
def test_chain_client_refuses_a_base_url_with_credentials_query_or_fragment(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ChainClient(url)
    _refused(exc, "chain_url")


def test_chain_client_names_the_credentials() -> None:
    with pytest.raises(ConfigError) as exc:
        ChainClient(f"http://u:{PASSWORD}@127.0.0.1:9")
    assert "user name or password" in _refused(exc, "chain_url")


@pytest.mark.parametrize("url", BAD.values(), ids=BAD.keys())
def test_gateway_client_refuses_a_base_url_with_credentials_query_or_fragment(url: str) -> None:
    with pytest.raises(ConfigError) as exc:
        GatewayClient(url, "sk_sandbox_h1")
    _refused(exc, "base_url")


def test_gateway_client_names_the_credentials() -> None:
    with pytest.raises(ConfigError) as exc:
        GatewayClient(f"http://u:{PASSWORD}@127.0.0.1:9", "sk_sandbox_h1")
    assert "user name or password" in _refused(exc, "base_url")


def test_clients_still_accept_a_plain_base_url_with_a_path() -> None:
    ChainClient("http://127.0.0.1:9/v1/bsv/main/").close()

    async def go() -> None:
        async with GatewayClient("https://gateway.example:8443/api/", "sk_sandbox_h1"):
            pass

    asyncio.run(go())
