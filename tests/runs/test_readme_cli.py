"""The README's CLI synopsis lists every option of every command, and no option a command lacks."""

from __future__ import annotations

import re

import click

from harness.cli import main
from tests.conftest import REPO

OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def _synopsis() -> str:
    """The first fenced block after the README's `## CLI` heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## CLI\n"):]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, path + (name,))
        else:
            yield path + (name,), command


def _entries(block: str) -> dict[tuple[str, ...], str]:
    """Each `evalbatch ...` line with its indented continuation lines, by command path;
    comments (after `#`) are not part of the synopsis."""
    entries: dict[tuple[str, ...], str] = {}
    current: tuple[str, ...] | None = None
    for line in block.splitlines():
        text = line.split("#", 1)[0]
        if line.startswith("evalbatch"):
            words, path, group = text.split()[1:], (), main
            for word in words:
                if isinstance(group, click.Group) and word in group.commands:
                    path, group = path + (word,), group.commands[word]
                else:
                    break
            current = path
            entries[current] = entries.get(current, "") + " " + text
        elif line[:1].isspace() and current is not None:
            entries[current] += " " + text
    return entries


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("evalbatch",) + path)


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params if isinstance(param, click.Option) and not param.hidden
            for opt in param.opts if opt.startswith("--")}


def test_readme_synopsis_lists_every_option_of_every_command():
    entries = _entries(_synopsis())
    missing = []
    for path, command in _commands(main):
        if isinstance(command, click.Group) and path:
            continue  # a group like `baseline` only names its subcommands
        entry = entries.get(path)
        if entry is None:
            missing.append(f"{_name(path)}: no line in the synopsis")
            continue
        listed = set(OPTION.findall(entry))
        missing += [f"{_name(path)} {option}" for option in sorted(_options(command) - listed)]
        unknown = listed - _options(command) - {"--help"}
        missing += [f"{_name(path)} {option}: in the README, not an option" for option in sorted(unknown)]
    assert not missing, "README CLI synopsis out of date:\n" + "\n".join(missing)


def test_every_option_says_what_it_does():
    undocumented = [f"{_name(path)} {param.opts[0]}" for path, command in _commands(main)
                    for param in command.params if isinstance(param, click.Option) and not param.help]
    assert not undocumented, undocumented
