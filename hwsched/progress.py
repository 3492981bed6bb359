"""The one progress-callback type: long steps (loading, converting, timing) report a short
line of what they are doing, and the CLI shows it in a status spinner.

>>> lines: list[str] = []
>>> report: Progress = lines.append
>>> report("converting stage 0"); silent("nobody listens"); lines
['converting stage 0']
"""

from __future__ import annotations

from collections.abc import Callable

#: Called with one line describing the step that starts now.
Progress = Callable[[str], None]


def silent(_message: str) -> None:
    """The progress callback of a caller that passed none."""
