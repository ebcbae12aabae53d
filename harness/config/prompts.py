"""Versioned prompts: Jinja2 templates under prompts/<name>/, rendered sandboxed and strict.

A version is either `<version>.j2` (a completion prompt: the rendered text) or
`<version>.chat.yaml` (a list of {role, content} messages whose contents are templates).
Its fingerprint is the sha256 of the template and every file it includes, so an edit that
keeps the version label is still detected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UserError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class RenderedPrompt:
    """Exactly one of `text` (completion) or `messages` (chat) is set."""

    text: str | None = None
    messages: tuple[ChatMessage, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        if self.text is not None:
            return {"prompt": self.text}
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}


class _ChatMessageFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class PromptVersion:
    """One version of a prompt, parsed and fingerprinted; `render(item)` fills it for an item."""

    def __init__(self, prompts_dir: Path, name: str, version: str) -> None:
        self.name, self.version = name, version
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(prompts_dir)), undefined=jinja2.StrictUndefined,
            autoescape=False)
        folder = prompts_dir / name
        completion, chat = folder / f"{version}.j2", folder / f"{version}.chat.yaml"
        if completion.is_file():
            self.kind: Literal["completion", "chat"] = "completion"
            self.path = completion
            sources = [completion.read_text(encoding="utf-8")]
            self._roles: list[Role] = []
        elif chat.is_file():
            self.kind, self.path = "chat", chat
            messages = _read_chat_file(chat)
            self._roles = [m.role for m in messages]
            sources = [m.content for m in messages]
        else:
            available = sorted(p.name for p in folder.glob("*")) if folder.is_dir() else []
            raise UserError(f"prompt {name!r} has no version {version!r}",
                            file=str(completion), hint=f"expected {completion.name} or {chat.name}"
                            + (f"; found {available}" if available else f"; {folder} does not exist"))
        self._templates = [self._compile(source) for source in sources]
        included = self._included_files(sources, prompts_dir)
        self.variables = self._undeclared(sources)
        self.fingerprint = _fingerprint([(self.path.name, self.path.read_bytes())] + included)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, item: dict[str, Any]) -> RenderedPrompt:
        """Raises UserError naming the missing variable; the caller adds the item's line."""
        context = {**item, "item": item}
        try:
            rendered = [template.render(context) for template in self._templates]
        except jinja2.UndefinedError as exc:
            raise UserError(f"template variable missing: {exc.message}", file=str(self.path)) from None
        except jinja2.TemplateError as exc:
            raise UserError(f"template error: {exc}", file=str(self.path)) from None
        if self.kind == "completion":
            return RenderedPrompt(text=rendered[0])
        return RenderedPrompt(messages=tuple(ChatMessage(r, c) for r, c in zip(self._roles, rendered, strict=True)))

    def _compile(self, source: str) -> jinja2.Template:
        try:
            template = self._env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise UserError(f"template syntax error: {exc.message}", file=str(self.path),
                            location=f"line {exc.lineno}") from None
        # A plain dict instead of jinja's ChainMap over the environment's globals (which never
        # change here): each render copies the globals, and copying a ChainMap cost more than
        # the rest of rendering a short prompt.
        template.globals = dict(template.globals)
        return template

    def _undeclared(self, sources: list[str]) -> set[str]:
        names: set[str] = set()
        for source in sources:
            names |= meta.find_undeclared_variables(self._env.parse(source))
        return names - {"item"}

    def _included_files(self, sources: list[str], prompts_dir: Path) -> list[tuple[str, bytes]]:
        """Every file reachable through include/import/extends, for the fingerprint."""
        found: dict[str, bytes] = {}
        pending = list(sources)
        while pending:
            for ref in meta.find_referenced_templates(self._env.parse(pending.pop())):
                if ref is None:
                    raise UserError("includes must name a fixed file (the fingerprint must cover it)",
                                    file=str(self.path))
                if ref not in found:
                    path = prompts_dir / ref
                    if not path.is_file():
                        raise UserError(f"included file {ref!r} not found under {prompts_dir}", file=str(self.path))
                    found[ref] = path.read_bytes()
                    pending.append(found[ref].decode("utf-8"))
        return sorted(found.items())


def _read_chat_file(path: Path) -> list[_ChatMessageFile]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML: {exc}", file=str(path)) from None
    if not isinstance(data, list) or not data:
        raise UserError("a chat prompt is a YAML list of {role, content} messages", file=str(path))
    messages = []
    for index, entry in enumerate(data):
        try:
            messages.append(_ChatMessageFile.model_validate(entry))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            raise UserError(f"message {index}: {field}: {error['msg']}", file=str(path),
                            hint="roles are system, user or assistant") from None
    return messages


def _fingerprint(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()
