"""Request IDs are built from parts worked out once per prompt and target; they must stay exactly
the IDs of the canonical-JSON definition, or a rerun would not resume the runs stored before."""

from __future__ import annotations

import random
import string

from harness.config.prompts import PromptVersion
from harness.config.suite import TargetSpec
from harness.engine.requests import reference_request_id, request_id

ODD = string.printable + 'éü中\u2028"\\\x00😀'


def _prompts(tmp_path) -> list[PromptVersion]:
    found = []
    for name, version, text in [("tickets", "v1", "Ticket: {{ text }}"), ("ünï", "v2-é", "Q: {{ q }}\nA:")]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{version}.j2").write_text(text, encoding="utf-8")
        found.append(PromptVersion(tmp_path, name, version))
    return found


def test_ids_equal_the_canonical_definition(tmp_path):
    rng = random.Random(7)
    prompts = _prompts(tmp_path)
    for _ in range(2000):
        params: dict = {"max_tokens": rng.randint(1, 4096)}
        if rng.random() < 0.5:
            params["temperature"] = rng.choice([0, 0.7, 1e-7])
        if rng.random() < 0.3:
            params["stop"] = ["\n", "é"]
        target = TargetSpec.model_validate({
            "provider": rng.choice(["openai", "anthropic"]), "model": "m" + rng.choice(ODD),
            "base_url": rng.choice([None, "http://127.0.0.1:9/v1", 'http://é"/']), "params": params})
        prompt = rng.choice(prompts)
        item_id = "".join(rng.choice(ODD) for _ in range(rng.randint(0, 12)))
        sample = rng.randint(0, 30)
        assert request_id(item_id, prompt, target, sample) == reference_request_id(item_id, prompt, target, sample)


def test_ids_differ_by_every_part(tmp_path):
    first, second = _prompts(tmp_path)
    target = TargetSpec.model_validate({"provider": "openai", "model": "m", "params": {"max_tokens": 5}})
    other_params = target.model_copy(update={"params": target.params.model_copy(update={"max_tokens": 6})})
    ids = {request_id("a", first, target, 0), request_id("b", first, target, 0), request_id("a", first, target, 1),
           request_id("a", second, target, 0), request_id("a", first, other_params, 0),
           request_id("a", first, target.model_copy(update={"model": "n"}), 0)}
    assert len(ids) == 6
