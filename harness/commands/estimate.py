"""`evalbatch estimate SUITE`: the plan `run` would send, with its tokens, time and cost; nothing sent."""

from __future__ import annotations

import click

from harness.commands.common import console, reports_user_errors


@click.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("--slice", "slices", multiple=True, metavar="NAME",
              help="Estimate this slice instead of the suite's `evaluate` list (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N items of the selection.")
@click.option("--prompt-version", metavar="VERSION", help="Estimate this version of the suite's prompt instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@reports_user_errors
def estimate(suite: str, slices: tuple[str, ...], limit: int | None, prompt_version: str | None,
             as_json: bool) -> None:
    """Estimate what running SUITE would take, per target: requests, input tokens (offline
    tokenizer, else chars/4), the most output tokens max_tokens allows, the time at the declared
    rate limits, and the cost realtime and through the batch API. Builds the same plan as `run`
    (bad input exits 2) and sends nothing."""
    from harness.cost.estimate import estimate_plan
    from harness.cost.estimate_view import print_estimate
    from harness.plan import PlanOptions, plan_run

    plan = plan_run(suite, PlanOptions(slices=slices, limit=limit, prompt_version=prompt_version))
    result = estimate_plan(plan)
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    print_estimate(console(), result)
