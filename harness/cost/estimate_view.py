"""`evalbatch estimate` as a person reads it: one table row per target, then what to know about
each (tokenizer, prices and their date, limits, missing prices)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.config.suite import RateLimits
from harness.cost.estimate import SuiteEstimate, TargetEstimate
from harness.cost.money import format_usd as usd


def print_estimate(console: Console, estimate: SuiteEstimate) -> None:
    console.print(f"{estimate.suite}: {estimate.items} items in slices {estimate.evaluated}, {estimate.requests} "
                  f"requests, prompt {estimate.prompt}; nothing sent")
    table = Table(title="Estimate per target (output at most max_tokens per request)")
    for column in ("target", "requests", "input tokens", "max output tokens", "time at limits", "realtime, up to",
                   "batch, up to"):
        table.add_column(column, justify="left" if column in ("target", "time at limits") else "right")
    for target in estimate.targets:
        table.add_row(target.target, f"{target.requests:,}", f"{target.input_tokens:,}",
                      f"{target.max_output_tokens:,}", duration(target), usd(target.realtime_usd),
                      usd(target.batch_usd))
    console.print(table)
    for target in estimate.targets:
        for note in notes(target):
            console.print(f"{target.target}: {note}", soft_wrap=True)
    if len(estimate.targets) > 1:
        total = total_line(estimate.targets)
        if total:
            console.print(f"total: {total}")


def total_line(targets: list[TargetEstimate]) -> str:
    parts = []
    if all(t.realtime_usd is not None for t in targets):
        parts.append(f"realtime up to {usd(sum(t.realtime_usd or 0 for t in targets))}, batch up to "
                     f"{usd(sum(t.batch_usd or 0 for t in targets))}")
    paced = [t for t in targets if t.pace.minutes is not None or t.pace.days is not None]
    if paced:
        # Each target has its own lane, sent side by side: the slowest one sets the run's time.
        slowest = max(paced, key=lambda t: max((t.pace.days or 0) * 24 * 60, t.pace.minutes or 0))
        parts.append(f"time {duration(slowest)} (targets are sent side by side; {slowest.target} is the slowest)")
    return "; ".join(parts)


def notes(target: TargetEstimate) -> list[str]:
    found = [f"input tokens counted with {target.tokenizer}"
             + (" (no offline tokenizer for this model: a rough figure)" if target.tokenizer.startswith("chars") else "")]
    if target.duplicates:
        found.append(f"{target.duplicates:,} of its {target.requests:,} requests repeat another exactly "
                     "(temperature 0): they are sent once, and tokens, time and cost count only what is sent")
    price = target.price
    if price is None:
        found.append(f"no price known for model {target.model}: add pricing: to the target")
    elif target.provider == "local":
        found.append("runs on this machine: no cost")
    else:
        found.append(f"prices per million tokens: input ${price.input_per_mtok:g}, output ${price.output_per_mtok:g}, "
                     f"batch ${price.batch_input_per_mtok:g} / ${price.batch_output_per_mtok:g} "
                     f"(taken {price.taken}; {price.source})")
        found.append(f"cost realtime: input {usd(target.input_usd)} + output up to {usd(target.max_output_usd)}")
    pace = target.pace
    if pace.minutes is None and pace.days is None:
        found.append("no limits declared (engine.limits or the target's limits: rpm, tpm); time not estimated")
    else:
        found.append(f"limits {limits_text(pace.limits)}: {target.requests - target.duplicates:,} requests sent, "
                     f"{target.request_tokens:,} "
                     "tokens counted against tpm (prompt + max_tokens)")
    if pace.days is not None and pace.days > 1:
        found.append(f"the daily limits allow this work in no less than {pace.days:,.1f} days")
    return found


def limits_text(limits: RateLimits) -> str:
    return ", ".join(f"{name} {value:,g}" for name, value in limits.model_dump().items() if value is not None)


def duration(target: TargetEstimate) -> str:
    minutes, days = target.pace.minutes, target.pace.days
    if days is not None and days > 1:  # a daily limit binds: the minute limits do not set the time
        return f"{days:,.1f} days (daily limits)"
    if minutes is None:
        return "no limits declared"
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.1f} min"
    return f"{minutes / 60:.1f} h"
