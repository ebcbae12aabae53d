"""A request's custom_id inside a provider batch.

OpenAI takes any string; Anthropic demands ^[a-zA-Z0-9_-]{1,64}$. Our request IDs ("r" + 23
hex digits) already fit both, so the custom_id is the request ID. An ID that did not fit (a
future ID scheme) gets a stable derived one; either way the store's batch_members table maps
custom_id -> request_id, so results are reconciled through the store, never by parsing.
"""

from __future__ import annotations

import hashlib
import re

CUSTOM_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def custom_id_for(request_id: str) -> str:
    if CUSTOM_ID_PATTERN.match(request_id):
        return request_id
    return "h" + hashlib.sha256(request_id.encode()).hexdigest()[:40]
