"""A request's custom_id inside a provider batch.

OpenAI takes any string; Anthropic demands ^[a-zA-Z0-9_-]{1,64}$. Our request IDs ("r" + 23
hex digits) already fit both, so the custom_id is the request ID (for Anthropic, followed by
"_" and a per-chunk tag). An ID that did not fit (a
future ID scheme) gets a stable derived one; either way the store's batch_members table maps
custom_id -> request_id, so results are reconciled through the store, never by parsing.
"""

from __future__ import annotations

import hashlib
import re
import secrets

CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def custom_id_for(request_id: str, tag: str | None = None) -> str:
    """The request's custom_id; with a chunk's `tag` (hex) appended, so that the custom_ids of
    one chunk's batch are found in no other batch (Anthropic: a batch is proven the chunk's by
    its results)."""
    base = request_id if CUSTOM_ID_PATTERN.match(request_id) else None
    room = 64 - (len(tag) + 1 if tag else 0)
    if base is None or len(base) > room:
        base = "h" + hashlib.sha256(request_id.encode()).hexdigest()[:40]
    return f"{base}_{tag}" if tag else base


def chunk_tag() -> str:
    """A fresh per-chunk tag (recorded in the store with the chunk's custom_ids)."""
    return secrets.token_hex(4)
