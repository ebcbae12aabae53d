"""The one exception type for mistakes a user can fix; the CLI turns it into exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: names the file, the place in it and what was expected.

    `location` is a field path ("targets.0.params.temperature"), a line ("line 12")
    or both; `hint` says what to do about it.
    """

    def __init__(self, message: str, *, file: str | None = None,
                 location: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.file and self.location:
            where = f"{self.file}: {self.location}: "
        elif self.file:
            where = f"{self.file}: "
        elif self.location:
            where = f"{self.location}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
