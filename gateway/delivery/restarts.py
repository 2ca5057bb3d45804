"""How long a supervisor waits before restarting a child process that died.

One policy for every child (delivery workers, the SQLite writer): the wait doubles from
`minimum` to `maximum` while the child keeps dying, and is back at `minimum` once a run
lasted `healthy_run` seconds, so one crash after a day of service restarts at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RestartBackoff:
    minimum: float = 0.5
    maximum: float = 30.0
    healthy_run: float = 60.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.minimum

    def after(self, ran_for: float) -> float:
        """The wait before the next start, for a child that ran `ran_for` seconds."""
        if ran_for >= self.healthy_run:
            self._next = self.minimum
        wait = self._next
        self._next = min(self._next * 2, self.maximum)
        return wait
