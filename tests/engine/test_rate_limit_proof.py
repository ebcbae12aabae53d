"""Proof that a run over a provider's limit slows down instead of failing: the fake server
enforces per-minute limits in 2-second windows, the offered load (concurrency 32) is far above
them, and every request must succeed with few 429s: the client paced itself, whether the limits
were declared (suite, target or CLI) or only stated by the server's rate-limit headers."""

from __future__ import annotations

import json

import pytest

from harness.testing.fake_server import FakeLLMServer, keyword_replier
from tests.conftest import base_suite
from tests.runs.processes import many_tickets

WINDOW_S = 2.0
RPM = 1200  # 40 requests per 2-second window
REQUESTS = 120
CONCURRENCY = 32
MAX_TOKENS = 50
# What the server counts for one request here: the prompt estimate (~16) plus max_tokens. A TPM
# limit that admits 30 requests per window makes tokens the binding limit, not requests.
TOKENS_PER_REQUEST = 66
TPM = 30 * TOKENS_PER_REQUEST * 60 / WINDOW_S


def _run(project, cli, server, provider="openai", engine_limits=None, target_limits=None, *cli_args):
    many_tickets(project, REQUESTS)
    suite = base_suite(server.base_url, provider)
    suite["engine"].update(concurrency=CONCURRENCY, max_retries=4, timeout_s=20)
    suite["targets"][0]["params"]["max_tokens"] = MAX_TOKENS
    if engine_limits:
        suite["engine"]["limits"] = engine_limits
    if target_limits:
        suite["targets"][0]["limits"] = target_limits
    project.write_suite(suite)
    return cli("run", str(project.suite_path), *cli_args)


def _check_paced(project, result, server, allowed_429: int) -> None:
    assert result.exit_code == 0, result.output
    [run_dir] = project.run_dirs()
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(results) == REQUESTS and {r["state"] for r in results} == {"succeeded"}
    assert set(server.log.successes.values()) == {1} and len(server.log.successes) == REQUESTS
    attempts = server.log.total
    assert len(server.log.rejected_429) <= allowed_429, (
        f"{len(server.log.rejected_429)} of {attempts} attempts were answered 429 (allowed {allowed_429}); "
        f"accepted per window: {server.accepted_per_window()}")
    # The server enforces its windows, so this holds by construction (the observed rate is within
    # one window's rounding of the limit); the few 429s above prove the client paced itself.
    assert server.limits is not None
    if server.limits.request_capacity is not None:
        assert max(server.accepted_per_window()) <= server.limits.request_capacity


def _declared_allowance() -> int:
    return int(0.05 * REQUESTS)


def _learned_allowance(capacity: int) -> int:
    """Before the first reply the client knows nothing: the first wave (its concurrency) may
    overshoot one window. After that it must slow down before it is told 429."""
    return max(0, CONCURRENCY - capacity) + int(0.05 * REQUESTS)


@pytest.fixture
def limited_server(request):
    settings = request.param
    with FakeLLMServer(keyword_replier({}, default="billing"), window_s=WINDOW_S, **settings) as server:
        yield server


@pytest.mark.parametrize("limited_server", [{"rpm": RPM}], indirect=True)
def test_declared_rpm_in_engine_limits(project, cli, limited_server):
    result = _run(project, cli, limited_server, engine_limits={"rpm": RPM})
    _check_paced(project, result, limited_server, _declared_allowance())


@pytest.mark.parametrize("limited_server", [{"rpm": RPM}], indirect=True)
def test_declared_rpm_on_the_command_line(project, cli, limited_server):
    result = _run(project, cli, limited_server, "openai", None, None, "--rpm", str(RPM))
    _check_paced(project, result, limited_server, _declared_allowance())


@pytest.mark.parametrize("limited_server", [{"tpm": TPM}], indirect=True)
def test_declared_tpm_on_the_target(project, cli, limited_server):
    result = _run(project, cli, limited_server, target_limits={"tpm": TPM})
    _check_paced(project, result, limited_server, _declared_allowance())


@pytest.mark.parametrize("limited_server", [{"rpm": RPM, "tpm": 10 * TPM}], indirect=True)
def test_limits_learned_from_openai_headers(project, cli, limited_server):
    result = _run(project, cli, limited_server)
    _check_paced(project, result, limited_server, _learned_allowance(40))


@pytest.mark.parametrize("limited_server", [{"rpm": RPM, "tpm": 10 * TPM}], indirect=True)
def test_limits_learned_from_anthropic_headers(project, cli, limited_server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fake-anthropic-key-for-tests")
    result = _run(project, cli, limited_server, "anthropic")
    _check_paced(project, result, limited_server, _learned_allowance(40))


@pytest.mark.parametrize("limited_server", [{"tpm": TPM}], indirect=True)
def test_token_limit_learned_from_headers(project, cli, limited_server):
    result = _run(project, cli, limited_server)
    _check_paced(project, result, limited_server, _learned_allowance(30))
