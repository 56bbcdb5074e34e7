"""The problem report of an input that breaks the cohort contract.

A problem names a column, the rule it breaks and the places (file lines, rows or positions)
where it does; it never quotes a value, since a cohort holds patient data and errors may end
up in logs. Problems are collected for the whole input before anything is refused, merged
into one per column and rule, and listed in a :class:`CohortError`. Every reader (a CSV
export, a DataFrame, a Parquet folder) reports through these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A problem found on every row of a large file would otherwise list thousands of lines.
_MAX_LINES_SHOWN = 12


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule broken in one column, at the listed places (none for a whole column).

    ``place`` says what the numbers count: file lines of an export (the header is line 1),
    rows of a Parquet input (from 1), or positions in a DataFrame (from 0, as ``iloc``).
    """

    column: str
    rule: str
    lines: tuple[int, ...] = ()
    place: str = "line"

    def __str__(self) -> str:
        if not self.lines:
            return f"{self.column}: {self.rule}"
        shown = ", ".join(str(line) for line in self.lines[:_MAX_LINES_SHOWN])
        more = len(self.lines) - _MAX_LINES_SHOWN
        suffix = f" and {more} more" if more > 0 else ""
        noun = self.place if len(self.lines) == 1 else f"{self.place}s"
        return f"{self.column}: {self.rule} ({noun} {shown}{suffix})"


class CohortError(ValueError):
    """A cohort file that breaks the contract; carries every problem found."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        super().__init__(
            f"{source} breaks the cohort contract ({count} problem{'s' * (count != 1)}):\n"
            f"{listing}"
        )


class ProblemLog:
    """Problems as a reader finds them, merged into one per column and rule.

    A rule broken on many rows, found chunk after chunk, is one problem listing all its
    places, in the order they were found; problems keep the order of their first finding.

    Parameters
    ----------
    place
        What the places count (see :class:`Problem`).
    """

    def __init__(self, place: str = "line") -> None:
        self.place = place
        self._places: dict[tuple[str, str], list[int]] = {}

    def add(self, problem: Problem) -> None:
        """Record a problem; its places join those already found for its column and rule."""
        self._places.setdefault((problem.column, problem.rule), []).extend(problem.lines)

    def problems(self) -> list[Problem]:
        """Every problem recorded so far, one per column and rule, with all its places."""
        return [
            Problem(column, rule, tuple(places), self.place)
            for (column, rule), places in self._places.items()
        ]
