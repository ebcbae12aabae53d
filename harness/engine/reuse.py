"""Answering a request without sending it: from the response cache, or from an identical request
of the same run.

Two requests are identical when their provider, base URL and request body are (the body the
provider would send: model, prompt or messages, settings; never headers or keys). Within a run
identical deterministic requests (temperature 0) are sent once: the first is the *leader*,
the others wait for its answer and share it (origin 'duplicate'); if the leader fails for good,
one of them is sent instead. Requests of this run that succeeded in an earlier process count as
answers too. With `engine.cache`, answers also come from the shared response cache (origin
'cache'); sampled requests (temperature > 0) only with `engine.cache_sampled`, keyed by their
sample index, and they are never shared within a run: their samples must stay independent.

The engine calls `answered` before it sends a request, `record` after one succeeded and `failed`
after one failed terminally. A leader that ends any other way (its task moved on to another
request or finished without calling either) stops leading, so no follower waits forever.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from harness.config.prompts import ChatMessage
from harness.config.suite import EngineSpec
from harness.engine.cache import ResponseCache, cache_key
from harness.engine.providers.base import Completion, Provider, ProviderRequest, RequestBodies
from harness.engine.requests import WorkRequest
from harness.engine.states import RequestState
from harness.engine.store import RunStore, ScoreRow, StoredRequest

Scorer = Callable[[WorkRequest, str], list[ScoreRow]]
"""The engine's scorer (harness.engine.runner.Scorer), repeated here to keep the import one way."""

CACHE, DUPLICATE = "cache", "duplicate"


@dataclass(frozen=True)
class RequestKey:
    value: str
    cacheable: bool
    shared: bool
    """Identical requests of the run share one answer (deterministic requests only)."""

    @property
    def digest(self) -> bytes:
        # 128 bits: collisions are out of reach for any run, at half the memory of the hex key.
        return bytes.fromhex(self.value)[:16]


@dataclass
class _Leader:
    request_id: str
    outcome: asyncio.Future[Completion | None]


class Reuse:
    """One per run (per engine). Not thread-safe: it lives on the engine's event loop."""

    def __init__(self, store: RunStore, providers: Mapping[str, Provider], spec: EngineSpec,
                 scorer: Scorer | None = None, cache: ResponseCache | None = None,
                 priced: Collection[str] | None = None, shared_payloads: bool = True) -> None:
        """`providers` by target label (the lanes'); `cache` defaults to the shared response cache
        when `spec.cache` is on (a damaged cache file is reported once and left out).
        `shared_payloads` False: no two requests of the run have the same body (the plan counted)."""
        self.store = store
        self.spec = spec
        self.priced = set(providers) if priced is None else set(priced)
        """Targets whose price is known: a reused answer costs them $0; for the others cost stays unknown."""
        self.scorer = scorer
        self.cache = cache if cache is not None else (ResponseCache() if spec.cache else None)
        self.shared_payloads = shared_payloads
        self.active = self.cache is not None or shared_payloads
        """False: nothing can be answered without sending, and every call is skipped."""
        self.counts: Counter[str] = Counter()
        """Requests answered without sending, by origin ('cache', 'duplicate')."""
        # Looked up once: an isinstance check against a Protocol costs more than building the body.
        self._bodies = {label: _body_maker(provider) for label, provider in providers.items()}
        self._base_urls = {label: provider.identity().get("base_url") for label, provider in providers.items()}
        self._keys: dict[str, RequestKey | None] = {}  # requests between `answered` and their end
        self._leaders: dict[bytes, _Leader] = {}
        self._current: dict[asyncio.Task[Any], str] = {}  # task -> the request it asked about last
        self._watched: set[asyncio.Task[Any]] = set()
        self._succeeded: _AnsweredKeys | None = None  # key -> a request of this run answered by it

    # -- what the engine calls ---------------------------------------------------------------
    async def answered(self, request: WorkRequest) -> Completion | None:
        """The answer `request` was given without sending it (stored as succeeded, with its
        scores), or None: send it. Waits while an identical request of the run is in flight."""
        if not self.active:
            return None
        self._begin(request)
        key = self._key(request)
        if key is None:
            return None
        if key.cacheable and self.cache is not None:
            hit = self.cache.get(key.value)
            if hit is not None:
                return self._reuse(request, hit, CACHE)
        if not key.shared:
            return None
        digest = key.digest
        while True:
            answer = self.stored_answer(key)
            if answer is not None:
                return self._reuse(request, answer, DUPLICATE)
            leader = self._leaders.get(digest)
            if leader is None or leader.request_id == request.request_id:
                self._lead(digest, request)
                return None
            # shield: a follower cancelled (the run stops) must not cancel what the others await.
            await asyncio.shield(leader.outcome)

    def record(self, request: WorkRequest, completion: Completion) -> None:
        """After `request` was sent and its success stored: caches the answer, hands it to the
        requests waiting for it."""
        if not self.active:
            return
        key = self._keys.pop(request.request_id, None) or self._key(request, remember=False)
        if key is None:
            return
        if key.cacheable and self.cache is not None:
            self.cache.put(key.value, completion)
        if key.shared:
            self._succeeded_index().add(key.digest, request.request_id)
            self._end_lead(key.digest, request.request_id, completion)

    def failed(self, request: WorkRequest) -> None:
        """After `request` failed terminally: one of the requests waiting for it is sent instead."""
        key = self._keys.pop(request.request_id, None)
        if key is not None and key.shared:
            self._end_lead(key.digest, request.request_id, None)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        if self._succeeded is not None:
            self._succeeded.close()

    # -- leaders and followers ---------------------------------------------------------------
    def _lead(self, digest: bytes, request: WorkRequest) -> None:
        self._leaders[digest] = _Leader(request.request_id, asyncio.get_running_loop().create_future())

    def _end_lead(self, digest: bytes, request_id: str, outcome: Completion | None) -> None:
        leader = self._leaders.get(digest)
        if leader is None or leader.request_id != request_id:
            return
        del self._leaders[digest]
        if not leader.outcome.done():
            leader.outcome.set_result(outcome)

    def _begin(self, request: WorkRequest) -> None:
        """A task asking about a request has ended the one it asked about before (as has a task
        that finished). If that one still leads (it ended neither succeeded nor failed: say,
        another process had it in flight), its followers stop waiting for it."""
        task = asyncio.current_task()
        if task is None:
            return
        previous = self._current.get(task)
        if previous is not None:
            self._end(previous)
        elif task not in self._watched:
            self._watched.add(task)
            task.add_done_callback(self._task_done)
        self._current[task] = request.request_id

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._watched.discard(task)
        previous = self._current.pop(task, None)
        if previous is not None:
            self._end(previous)

    def _end(self, request_id: str) -> None:
        key = self._keys.pop(request_id, None)
        if key is not None and key.shared:
            self._end_lead(key.digest, request_id, None)

    # -- keys and answers --------------------------------------------------------------------
    def _key(self, request: WorkRequest, remember: bool = True) -> RequestKey | None:
        """None when the request can be answered neither by the cache nor by another request."""
        if request.request_id in self._keys:
            return self._keys[request.request_id]
        key = self._key_for(request.target.label, request.target.provider, request.sample_index,
                            ProviderRequest(request.request_id, request.prompt.text, request.prompt.messages))
        if remember:
            self._keys[request.request_id] = key
        return key

    def _key_for(self, label: str, provider_name: str, sample_index: int, prompt: ProviderRequest) -> RequestKey | None:
        make_body = self._bodies.get(label)
        if make_body is None:
            return None
        body = make_body(prompt)
        deterministic = _temperature(body) == 0
        cacheable = self.cache is not None and (deterministic or self.spec.cache_sampled)
        shared = deterministic and self.shared_payloads
        if not (shared or cacheable):
            return None
        value = cache_key(provider_name, self._base_urls.get(label), body, None if deterministic else sample_index)
        return RequestKey(value, cacheable=cacheable, shared=shared)

    def _succeeded_index(self) -> _AnsweredKeys:
        """Keys of this run's deterministic requests that succeeded, earlier processes' included
        (read from the store once, on first use, in batches)."""
        if self._succeeded is None:
            self._succeeded = _AnsweredKeys()
            for batch in self.store.request_batches(state=RequestState.SUCCEEDED):
                for stored in batch:
                    key = self.key_of_stored(stored)
                    if key is not None and key.shared:
                        self._succeeded.add(key.digest, stored.request_id, replace=False)
        return self._succeeded

    def key_of_stored(self, stored: StoredRequest) -> RequestKey | None:
        """A stored request's key (as `_key` gives a request being sent), from its payload."""
        payload = stored.payload
        messages = tuple(ChatMessage(m["role"], m["content"]) for m in payload.get("messages") or ())
        return self._key_for(stored.target, str(payload.get("provider", "")), stored.sample_index,
                             ProviderRequest(stored.request_id, payload.get("prompt"), messages))

    def stored_answer(self, key: RequestKey) -> Completion | None:
        """The answer of a succeeded request of the run with this key (shared keys only), or None."""
        earlier = self._succeeded_index().get(key.digest) if key.shared else None
        return _stored_answer(self.store, earlier) if earlier is not None else None

    def note_succeeded(self, key: RequestKey, request_id: str) -> None:
        """A request answered outside `answered`/`record` (batch mode) now answers its copies."""
        if key.shared:
            self._succeeded_index().add(key.digest, request_id, replace=False)

    def _reuse(self, request: WorkRequest, answer: Completion, origin: str) -> Completion | None:
        self._keys.pop(request.request_id, None)
        cost = 0.0 if request.target.label in self.priced else None
        if not self.store.reuse(request.request_id, answer, origin, self._scores(request, answer.text), cost):
            return None  # not waiting to be sent (finished, or in flight elsewhere): the engine skips it
        self.counts[origin] += 1
        return answer

    def _scores(self, request: WorkRequest, output: str) -> list[ScoreRow]:
        return score_as_it_arrives(self.scorer, request, output)


class _AnsweredKeys:
    """Request key -> a succeeded request of the run with that key, in a private temporary SQLite
    file: a dict of every succeeded request would grow with the run (about 200 bytes a request)."""

    def __init__(self) -> None:
        self.db = sqlite3.connect("", isolation_level=None)  # private, deleted on close; cached pages only
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE answered (digest BLOB PRIMARY KEY, request_id TEXT NOT NULL) WITHOUT ROWID")

    def get(self, digest: bytes) -> str | None:
        row = self.db.execute("SELECT request_id FROM answered WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else row[0]

    def add(self, digest: bytes, request_id: str, replace: bool = True) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self.db.execute(f"{verb} INTO answered(digest, request_id) VALUES (?, ?)", (digest, request_id))

    def close(self) -> None:
        self.db.close()


def score_as_it_arrives(scorer: Scorer | None, request: WorkRequest, output: str) -> list[ScoreRow]:
    """Scores stored with the answer, so the store alone can be compared; a scorer that fails here
    only leaves the scores to the end-of-run pass, which reports it."""
    if scorer is None:
        return []
    try:
        return scorer(request, output)
    except Exception:  # noqa: BLE001 - the end-of-run scoring reports it
        return []


def _body_maker(provider: Provider) -> Callable[[ProviderRequest], dict[str, Any]]:
    if isinstance(provider, RequestBodies):
        return provider.request_body
    identity = provider.identity()

    def generic_body(prompt: ProviderRequest) -> dict[str, Any]:
        """For a provider that cannot say what it sends: its identity and the prompt. No
        temperature: never shared, and cached only when cache_sampled asks for it."""
        rendered: dict[str, Any] = ({"messages": [{"role": m.role, "content": m.content} for m in prompt.messages]}
                                    if prompt.messages else {"prompt": prompt.prompt})
        return {"identity": identity, **rendered}

    return generic_body


def _temperature(body: dict[str, Any]) -> float | None:
    """The temperature the body asks for; None when it leaves it to the API's default (which is
    not 0 for OpenAI or Anthropic)."""
    for holder in (body, body.get("extra_body"), body.get("params")):
        if isinstance(holder, dict) and holder.get("temperature") is not None:
            return float(holder["temperature"])
    return None


def _stored_answer(store: RunStore, request_id: str) -> Completion | None:
    """The answer a succeeded request of the run holds (read back rather than kept in memory: a
    run's outputs can be large, and most are never needed again)."""
    row = store.db.execute("SELECT output, input_tokens, output_tokens, finish_reason FROM requests"
                           " WHERE request_id = ? AND state = ?", (request_id, RequestState.SUCCEEDED)).fetchone()
    if row is None or row[0] is None:
        return None
    return Completion(text=row[0], input_tokens=row[1], output_tokens=row[2], finish_reason=row[3])
