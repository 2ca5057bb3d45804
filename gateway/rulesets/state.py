"""The live rule set: rule files plus webhook targets, reloaded and swapped atomically.

`current` is replaced by one assignment, so a request sees the old set or the new one,
never half of each. A reload that fails validation keeps the last good file rules and
keeps its errors for `GET /v1/rules` and the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actions import ACTION_TYPES, Delivery, plan_deliveries, secret_problem
from gateway.models import WebhookTarget
from gateway.observability.metrics import Metrics
from gateway.store.base import Store
from rules import LoadResult, Logic, Match, Rule, RuleError, RuleSet, load_dir

log = logging.getLogger("hookgate.rules")


def load_rule_files(
    directory: str | os.PathLike[str], logic: Logic, *, missing_ok: bool
) -> LoadResult:
    """The one way the gateway reads rule files (serve's start check, reloads, `rules
    check`): every action type it can run, secrets judged as the dispatcher will use them."""
    return load_dir(
        directory,
        action_types=tuple(ACTION_TYPES),
        env=dict(os.environ),
        logic=logic,
        missing_ok=missing_ok,
        check_secret=secret_problem,
    )


def target_rule(target: WebhookTarget, logic: Logic) -> Rule:
    return Rule.for_target(
        target.id,
        target.url,
        events=target.events,
        filter=target.filter,
        retry=target.retry,
        disable_after=target.disable_after,
        logic=logic,
        ordering=target.ordering,
        ordering_key=target.ordering_key,
    )


def dir_stamp(directory: Path) -> tuple[tuple[str, float, int], ...]:
    """Name, mtime and size of every rule file: what the reload poll compares."""
    if not directory.is_dir():
        return ()
    out = []
    for path in sorted(directory.glob("*.toml")):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((path.name, st.st_mtime, st.st_size))
    return tuple(out)


class RuleState:
    def __init__(
        self,
        rules_dir: str | Path,
        *,
        store: Store | None,
        logic: Logic,
        event_type_fields: tuple[str, ...],
        metrics: Metrics | None = None,
        default_dir: bool = False,
        on_reloaded: Callable[[], None] | None = None,
    ) -> None:
        """`default_dir`: `rules_dir` is the built-in default, whose absence is normal (no
        rules written yet: logged at info); a configured directory that is missing is more
        likely a typo (warning). `on_reloaded` runs after every successful reload."""
        self.dir = Path(rules_dir)
        self._missing_level = logging.INFO if default_dir else logging.WARNING
        self._on_reloaded = on_reloaded
        self._store = store
        self.logic = logic
        self._fields = event_type_fields
        self._metrics = metrics
        self.file_rules: tuple[Rule, ...] = ()
        self.target_rules: tuple[Rule, ...] = ()
        # The rules of disabled targets: what they match is committed `held`, not dropped.
        self.held: RuleSet | None = None
        self.targets: dict[str, WebhookTarget] = {}
        self.files: tuple[str, ...] = ()
        self.file_version = ""
        self.errors: tuple[RuleError, ...] = ()
        self.loaded_at: float | None = None
        self.last_attempt_at: float | None = None
        self.current = RuleSet((), event_type_fields=event_type_fields, logic=logic)
        self._stamp: tuple[tuple[str, float, int], ...] | None = None
        self._targets_version: int | None = None
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str:
        return self.current.version

    def _swap(self) -> None:
        self.current = RuleSet(
            (*self.file_rules, *self.target_rules),
            event_type_fields=self._fields,
            logic=self.logic,
        )

    def _dir_stamp(self) -> tuple[tuple[str, float, int], ...]:
        return dir_stamp(self.dir)

    async def reload(self) -> tuple[RuleError, ...]:
        """Load the rule directory; on success swap it in, else keep the last good set."""
        async with self._lock:
            self._stamp = self._dir_stamp()
            self.last_attempt_at = time.time()
            if not self.dir.exists():
                log.log(
                    self._missing_level,
                    "rules directory %s does not exist; no rules loaded",
                    self.dir,
                )
            # missing_ok: a missing directory is zero rules; a path that is not a directory
            # is still an error.
            result = await asyncio.to_thread(load_rule_files, self.dir, self.logic, missing_ok=True)
            errors = result.errors
            self.errors = errors
            if errors:
                if self._metrics is not None:
                    self._metrics.inc("hookgate_rule_reload_errors_total")
                for error in errors:
                    log.error("rule error: %s", error, extra={"fields": {"rule_error": str(error)}})
                log.error(
                    "rule reload failed; keeping the previous rule set (%d errors)", len(errors)
                )
                return errors
            self.file_rules, self.files = result.rules, result.files
            self.file_version = result.version
            self.loaded_at = time.time()
            self._swap()
            log.info(
                "rules loaded",
                extra={"fields": {"rules": len(self.file_rules), "version": self.version}},
            )
            if self._on_reloaded is not None:
                self._on_reloaded()
            return ()

    async def refresh_targets(self, force: bool = False) -> bool:
        if self._store is None:
            return False
        version = await self._store.targets_version()
        if not force and version == self._targets_version:
            return False
        targets = await self._store.list_targets()
        rules: list[Rule] = []
        held: list[Rule] = []
        for target in targets:
            try:
                rule = target_rule(target, self.logic)
            except RuleError as exc:
                # Validated at creation; one that no longer loads must not stop the rest.
                log.error("webhook target %s does not load and is skipped: %s", target.id, exc)
                continue
            (rules if target.status == "active" else held).append(rule)
        self.target_rules = tuple(rules)
        self.held = (
            RuleSet(tuple(held), event_type_fields=self._fields, logic=self.logic) if held else None
        )
        self.targets = {t.id: t for t in targets}
        self._targets_version = version
        self._swap()
        return True

    def held_deliveries(
        self,
        app_name: str,
        payload: Mapping[str, Any],
        event_type: str | None,
        event_id: str,
        now: float,
    ) -> tuple[list[Match], list[Delivery]]:
        """What the disabled targets match in this event, planned as `held` deliveries
        (kept until the target is active again); nothing when no target is disabled."""
        held = self.held
        if held is None:
            return [], []
        matches = held.match(app_name, payload, event_type=event_type)
        if not matches:
            return [], []
        planned = plan_deliveries(matches, event_id, payload, now)
        return matches, [
            dataclasses.replace(d, status="held", next_attempt_at=None)
            if d.status == "pending"
            else d
            for d in planned
        ]

    async def watch(self, interval: float, reload_files: bool) -> None:
        """Poll file mtimes (and the targets version) and reload on change."""
        while True:
            await asyncio.sleep(interval)
            try:
                if reload_files and self._dir_stamp() != self._stamp:
                    await self.reload()
                await self.refresh_targets()
            except Exception as exc:
                log.warning("rule watch failed: %s", exc)
