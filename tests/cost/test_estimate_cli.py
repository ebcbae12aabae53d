"""`evalbatch estimate`: the plan `run` would send, with tokens, time and cost; nothing sent."""

from __future__ import annotations

import json

import pytest

from harness.config.suite import RateLimits
from harness.cost.estimate import pace
from harness.cost.tokens import count_text_tokens
from tests.conftest import TICKETS, base_suite


def _suite(fake_server, **target) -> dict:
    suite = base_suite(fake_server.base_url)
    suite["targets"][0].update(target)
    return suite


def _estimate(cli, project, *args: str) -> dict:
    result = cli("estimate", str(project.suite_path), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


OVERHEAD = 7
"""Per one-message request: 3 tokens of message overhead, 1 for the role, 3 of reply priming."""


def _prompt_tokens(model: str) -> int:
    # The fixture's prompt is "Ticket: {{ text }}\nTeam:", sent as one user message: 3 tokens of
    # message overhead, 1 for the role and 3 of reply priming each.
    return sum(count_text_tokens(model, f"Ticket: {t['text']}\nTeam:") + OVERHEAD for t in TICKETS)


def test_tokens_time_and_cost_of_a_priced_target(cli, project, fake_server):
    project.write_suite(_suite(fake_server, model="gpt-4o-mini", limits={"rpm": 3, "tpm": 1_000_000}))
    estimate = _estimate(cli, project)
    (target,) = estimate["targets"]
    assert (estimate["requests"], target["requests"], target["max_output_tokens"]) == (6, 6, 6 * 5)
    assert target["tokenizer"] == "o200k_base"
    assert target["input_tokens"] == _prompt_tokens("gpt-4o-mini")
    assert target["pace"]["minutes"] == pytest.approx(2.0)  # 6 requests at 3 per minute
    # gpt-4o-mini: $0.15 in / $0.60 out per million, batch half of that.
    expected = (target["input_tokens"] * 0.15 + 30 * 0.60) / 1e6
    assert target["realtime_usd"] == pytest.approx(expected)
    assert target["batch_usd"] == pytest.approx(expected / 2)
    assert fake_server.log.total == 0  # nothing sent
    assert project.run_dirs() == []   # no run folder


def test_the_printed_estimate(cli, project, fake_server):
    project.write_suite(_suite(fake_server, model="gpt-4o-mini", limits={"tpm": 100}))
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    tokens = _prompt_tokens("gpt-4o-mini") + 30
    assert "demo: 6 items in slices ['all'], 6 requests, prompt route@v1; nothing sent" in result.output
    assert f"{tokens / 100:.1f} min" in result.output  # the token limit decides
    assert f"limits tpm 100: 6 requests sent, {tokens:,} tokens counted against tpm" in result.output
    assert "prices per million tokens: input $0.15, output $0.6, batch $0.075 / $0.3 (taken 2026-11-30" \
        in result.output


def test_an_unknown_model_says_how_to_price_it(cli, project, fake_server):
    project.write_suite(_suite(fake_server))  # model fake-model
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert "fake: no price known for model fake-model: add pricing: to the target" in result.output
    assert "fake: no limits declared" in result.output
    assert "input tokens counted with chars/4" in result.output


def test_the_suite_pricing_and_engine_limits_apply(cli, project, fake_server):
    suite = _suite(fake_server, pricing={"input_per_mtok": 1_000_000, "output_per_mtok": 0, "batch_discount": 0.25})
    suite["engine"]["limits"] = {"rpm": 60, "rpd": 4}
    project.write_suite(suite)
    (target,) = _estimate(cli, project)["targets"]
    # chars/4 per message (rounded up per prompt) plus 6 tokens of overhead each, at $1 a token.
    assert target["input_tokens"] == sum(-(-len(f"Ticket: {t['text']}\nTeam:") // 4) + OVERHEAD for t in TICKETS)
    assert target["realtime_usd"] == pytest.approx(target["input_tokens"])
    assert target["batch_usd"] == pytest.approx(target["input_tokens"] * 0.25)
    assert target["pace"]["minutes"] == pytest.approx(0.1) and target["pace"]["days"] == pytest.approx(1.5)


def test_slice_limit_and_prompt_version_select_like_run(cli, project, fake_server):
    (project.root / "prompts" / "route" / "v2.j2").write_text("{{ text }}", encoding="utf-8")
    project.write_suite(_suite(fake_server, model="gpt-4"))
    estimate = _estimate(cli, project, "--limit", "2", "--prompt-version", "v2", "--slice", "all")
    (target,) = estimate["targets"]
    assert (estimate["prompt"], estimate["items"], target["requests"]) == ("route@v2", 2, 2)
    assert target["input_tokens"] == sum(count_text_tokens("gpt-4", t["text"]) + OVERHEAD for t in TICKETS[:2])


def test_several_targets_get_a_row_each_and_a_total(cli, project, fake_server):
    suite = _suite(fake_server, model="gpt-4o")
    suite["targets"].append({"name": "haiku", "provider": "anthropic", "model": "claude-3-5-haiku-20241022",
                             "base_url": fake_server.base_url, "params": {"max_tokens": 5}})
    project.write_suite(suite)
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert "total: realtime up to $" in result.output
    assert "no limits declared" in result.output and "targets are sent side by side" not in result.output
    estimate = _estimate(cli, project)
    assert [t["target"] for t in estimate["targets"]] == ["fake", "haiku"]
    assert estimate["requests"] == 12


def test_bad_input_exits_2_and_names_the_field(cli, project):
    suite = base_suite()
    suite["targets"][0]["limits"] = {"rpmm": 10}
    project.write_suite(suite)
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 2
    assert "demo.yaml" in result.output and "targets.0.limits.rpmm" in result.output


def test_an_unknown_slice_exits_2(cli, project):
    result = cli("estimate", str(project.suite_path), "--slice", "nope")
    assert result.exit_code == 2
    assert "unknown slice(s) ['nope']" in result.output
    assert project.run_dirs() == []


def test_pace_takes_the_slower_limit():
    assert pace(100, 10_000, RateLimits()).minutes is None
    assert pace(100, 10_000, RateLimits(rpm=50, tpm=1_000)).minutes == pytest.approx(10.0)
    assert pace(100, 10_000, RateLimits(rpm=10, tpm=100_000)).minutes == pytest.approx(10.0)
    assert pace(100, 10_000, RateLimits(tpd=2_000)).days == pytest.approx(5.0)


def test_the_slowest_target_sets_the_time_of_several(cli, project, fake_server):
    suite = _suite(fake_server, model="gpt-4o", limits={"rpm": 1})
    suite["targets"].append({"name": "quick", "provider": "openai", "model": "gpt-4o-mini",
                             "base_url": fake_server.base_url + "/v1", "limits": {"rpm": 60}})
    project.write_suite(suite)
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert "time 6.0 min (targets are sent side by side; fake is the slowest)" in result.output


@pytest.mark.parametrize(("temperature", "sent"), [(0.0, 6), (0.7, 12)])
def test_identical_deterministic_requests_count_once_as_the_engine_sends_them(cli, project, fake_server,
                                                                              temperature, sent):
    """Two epochs at temperature 0 repeat each request exactly: the engine sends each once (dedupe),
    so the estimate counts tokens and time for what is sent; sampled epochs are all sent."""
    suite = _suite(fake_server, params={"temperature": temperature, "max_tokens": 5})
    suite["epochs"] = 2
    project.write_suite(suite)
    (target,) = _estimate(cli, project)["targets"]
    assert target["requests"] == 12 and target["duplicates"] == 12 - sent
    assert target["max_output_tokens"] == sent * 5
    assert target["input_tokens"] == sent // 6 * _prompt_tokens("fake-model")


def test_a_binding_daily_limit_sets_the_time_shown(cli, project, fake_server):
    project.write_suite(_suite(fake_server, limits={"rpm": 100, "rpd": 3}))  # 6 requests, 3 a day
    result = cli("estimate", str(project.suite_path))
    assert result.exit_code == 0, result.output
    assert "2.0 days (daily" in result.output  # in the table's time column, not the minute limits' 4 s
