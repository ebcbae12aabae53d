"""Bad input collected in one pass: every problem of a dataset (unreadable lines, duplicate IDs,
records a template or a scorer cannot use) is reported together, each with its file and line,
instead of stopping at the first one."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import UserError

SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class InputProblem:
    message: str
    file: str | None = None
    location: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.location, self.message) if part)

    def without_file(self) -> str:
        return ": ".join(part for part in (self.location, self.message) if part)


class InputProblems:
    """A collector: readers `add` what they find and go on; `raise_if_any` raises one UserError
    naming them all (the first `SHOWN_PROBLEMS`, then how many more)."""

    def __init__(self) -> None:
        self.found: list[InputProblem] = []

    def add(self, message: str, *, file: str | None = None, location: str | None = None,
            hint: str | None = None) -> None:
        self.found.append(InputProblem(message, file, location, hint))

    def add_error(self, error: UserError) -> None:
        self.add(error.message, file=error.file, location=error.location, hint=error.hint)

    def __len__(self) -> int:
        return len(self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise self.error()

    def error(self) -> UserError:
        """One problem keeps its own file and location; several become one list, one per line."""
        if len(self.found) == 1:
            only = self.found[0]
            return UserError(only.message, file=only.file, location=only.location, hint=only.hint)
        files = {problem.file for problem in self.found}
        # One file (the usual case: a dataset) is named once, not on every line.
        common = files.pop() if len(files) == 1 else None
        shown = "".join(f"\n  {problem.without_file() if common else problem}"
                        for problem in self.found[:SHOWN_PROBLEMS])
        more = len(self.found) - SHOWN_PROBLEMS
        if more > 0:
            shown += f"\n  and {more} more"
        hints = list(dict.fromkeys(p.hint for p in self.found[:SHOWN_PROBLEMS] if p.hint))
        return UserError(f"{len(self.found)} problems in the input; nothing was sent:{shown}", file=common,
                         hint="\n  hint: ".join(hints) or None)
