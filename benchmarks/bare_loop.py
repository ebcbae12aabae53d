"""The reference the run benchmarks hold `evalbatch run` against, as a process of its own: the
`openai` client in a plain asyncio loop (a semaphore, one `create` per request, no retries,
nothing stored). Run as its own interpreter so its start-up and `import openai` count the way
evalbatch's do.

    python benchmarks/bare_loop.py BASE_URL REQUESTS CONCURRENCY

Prints the seconds its loop took (from the first request to the last reply) on stdout.
"""

from __future__ import annotations

import asyncio
import sys
import time

import openai


async def bare_loop(base_url: str, prompts: list[str], concurrency: int) -> float:
    """The loop alone: its wall time."""
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url + "/v1", max_retries=0)
    limit = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with limit:
            await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": prompt}],
                                                 max_tokens=5, temperature=0)

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def bench_prompts(count: int) -> list[str]:
    """The prompts the bench suite renders (BENCH_TEMPLATE over bench_records)."""
    return [f"Ticket: benchmark ticket {n}\nTeam:" for n in range(count)]


if __name__ == "__main__":
    url, requests, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(f"{asyncio.run(bare_loop(url, bench_prompts(requests), concurrency)):.6f}")
