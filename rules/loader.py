"""Rule files: read every `*.toml` of a directory into rules, reporting every error at once.

Validation is strict and complete: an operator running `hookgate rules check` sees every
problem in one pass, each as `file:rule-id: field: what is wrong and what was expected`.
A rule with any error is left out of `LoadResult.rules`; the gateway keeps its last good
rule set while `errors` is not empty.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules.durations import parse_duration
from rules.errors import LogicError, RuleError
from rules.logic import Expression, Logic, default_logic
from rules.model import Action, CancelOn, Rule, url_problem, version_of
from rules.template import Template
from rules.throttle import burst_problem, default_burst, rate_problem
from rules.vars import substitute, vars_problems

RULE_KEYS = ("id", "description", "apps", "event_types", "when", "enabled", "actions")
ACTION_KEYS = (
    "type",
    "url",
    "secret_env",
    "retry",
    "body",
    "timeout_seconds",
    "disable_after",
    "headers",
    "delay",
    "cancel_on",
    "rate",
    "burst",
    "ordering",
    "ordering_key",
)
ORDERINGS = ("fifo",)
CANCEL_ON_KEYS = ("event_types", "match")
RETRY_NAMES = ("none", "standard")

_Report = Callable[[str], None]
SecretCheck = Callable[[str], str | None]
"""Why a secret_env value cannot sign (e.g. `not a valid signing secret (...)`), or None.
Passed in by the caller: the secret format belongs to `actions`, which `rules` cannot import."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load found: the valid rules in file order, every error, the files read."""

    rules: tuple[Rule, ...]
    errors: tuple[RuleError, ...]
    files: tuple[str, ...]
    digest: str  # sha256 of the files' names and bytes: changes whenever a file does

    @property
    def ok(self) -> bool:
        """True when there is no error (a reload should only swap rule sets then)."""
        return not self.errors

    @property
    def version(self) -> str:
        """The content version of `rules`, equal to `RuleSet(rules).version`."""
        return version_of(self.rules)


def load_dir(
    path: str | os.PathLike[str],
    *,
    action_types: Collection[str],
    env: Mapping[str, str] | None = None,
    logic: Logic | None = None,
    missing_ok: bool = False,
    check_secret: SecretCheck | None = None,
) -> LoadResult:
    """Load every `*.toml` file directly in `path`, in name order (names starting with `.`
    are skipped: editors' temporary files). Ids must be unique across all files.

    `action_types` are the action type names the caller can run; `env` (default
    `os.environ`) is where `secret_env` names must be set, and `check_secret` (if given)
    judges their values. A missing directory is an error unless `missing_ok`, which gives an
    empty result.
    """
    directory = Path(path)
    loader = _Loader(action_types, env, logic, check_secret)
    if not directory.is_dir():
        if not missing_ok or directory.exists():
            loader.error(
                str(directory), None, "rules directory does not exist or is not a directory"
            )
        return loader.result()
    names = sorted(
        entry.name
        for entry in directory.iterdir()
        if entry.name.endswith(".toml") and not entry.name.startswith(".") and entry.is_file()
    )
    for name in names:
        loader.load(str(directory / name), name)
    return loader.result()


def load_file(
    path: str | os.PathLike[str],
    *,
    action_types: Collection[str],
    env: Mapping[str, str] | None = None,
    logic: Logic | None = None,
    check_secret: SecretCheck | None = None,
) -> LoadResult:
    """Load one rule file (same checks as `load_dir`)."""
    loader = _Loader(action_types, env, logic, check_secret)
    loader.load(str(path), Path(path).name)
    return loader.result()


def _kind(value: Any) -> str:
    """How a TOML value is described in messages."""
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number"}
    names |= {list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def _unknown_key(key: str, known: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f'unknown key "{key}"{hint}; {what} takes: {", ".join(sorted(known))}'


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Loader:
    """Collects rules and errors over one load; ids are checked across every file."""

    def __init__(
        self,
        action_types: Collection[str],
        env: Mapping[str, str] | None,
        logic: Logic | None,
        check_secret: SecretCheck | None = None,
    ) -> None:
        self.action_types = frozenset(action_types)
        self.check_secret = check_secret
        self.env = os.environ if env is None else env
        self.logic = logic or default_logic()
        self.rules: list[Rule] = []
        self.errors: list[RuleError] = []
        self.files: list[str] = []
        self.ids: dict[str, str] = {}  # rule id -> file that defined it first
        self.vars: dict[str, Any] = {}  # the [vars] of the file being loaded
        self.digest = hashlib.sha256()

    def error(self, file: str, rule_id: str | None, message: str) -> None:
        self.errors.append(RuleError(file, rule_id, message))

    def result(self) -> LoadResult:
        return LoadResult(
            tuple(self.rules), tuple(self.errors), tuple(self.files), self.digest.hexdigest()
        )

    def load(self, file: str, name: str) -> None:
        self.files.append(file)
        try:
            raw = Path(file).read_bytes()
        except OSError as exc:
            self.error(file, None, f"cannot read the file: {exc.strerror or exc}")
            return
        self.digest.update(name.encode() + b"\0" + raw + b"\0")
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.error(file, None, f"the file is not UTF-8 text (byte {exc.start})")
            return
        except tomllib.TOMLDecodeError as exc:
            self.error(file, None, f"invalid TOML: {exc}")
            return
        for key in document:
            if key not in ("rules", "vars"):
                close = difflib.get_close_matches(key, ["rules", "vars"], n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                message = (
                    f'unknown top-level key "{key}"{hint}; a rule file holds [vars] and [[rules]]'
                )
                self.error(file, None, message)
        table = document.get("vars", {})
        problems = vars_problems(table)
        for problem in problems:
            self.error(file, None, problem)
        self.vars = dict(table) if not problems else {}
        tables = document.get("rules", [])
        if not isinstance(tables, list):
            self.error(file, None, '"rules" must be an array of tables: write [[rules]]')
            return
        for number, table in enumerate(tables, start=1):
            self.rule(file, number, table)

    def rule(self, file: str, number: int, table: Any) -> None:
        if not isinstance(table, dict):
            self.error(file, None, f"rule #{number}: must be a table ([[rules]]), got {table!r}")
            return
        errors_before = len(self.errors)
        label, rule_id = self.rule_id(file, number, table)

        def error(message: str) -> None:
            # Without a usable id, the rule's position is the only way to find it.
            self.error(file, label, message if label else f"rule #{number}: {message}")

        for key in table:
            if key not in RULE_KEYS:
                error(_unknown_key(key, RULE_KEYS, "a rule"))
        description = table.get("description", "")
        if not isinstance(description, str):
            error(f"description: must be a string, got {_kind(description)}")
        apps = self.names(table, "apps", "app names", error)
        event_types = self.names(table, "event_types", "event type names", error)
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            error(f"enabled: must be true or false, got {enabled!r}")
        when = self.with_vars("when", table.get("when"), error)
        condition = None
        if isinstance(when, str):
            error(
                "when: must be a JSON-Logic expression written as a TOML inline table, "
                f'e.g. when = {{ "!!" = {{ var = "phone" }} }}, not the string {when!r}'
            )
        elif when is not None:
            try:
                condition = self.logic.compile(when)
            except LogicError as exc:
                for problem in exc.problems:
                    error(f"when: {problem}")
        actions = self.actions(table.get("actions"), error)
        if rule_id is None or len(self.errors) > errors_before:
            return
        self.rules.append(
            Rule(
                id=rule_id,
                description=description,
                apps=apps,
                event_types=event_types,
                when=when,
                enabled=enabled,
                actions=actions,
                source=file,
                condition=condition,
            )
        )

    def with_vars(self, where: str, node: Any, error: _Report) -> Any:
        """`node` with the file's `[vars]` filled in; an unknown name is an error."""
        if node is None or isinstance(node, str | int | float | bool):
            return node
        value, problems = substitute(node, self.vars)
        for problem in problems:
            error(f"{where}: {problem}")
        return value

    def rule_id(
        self, file: str, number: int, table: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """(id to name the rule in messages, id if valid and new); reports why it is not."""
        rule_id = table.get("id")
        if rule_id is None:
            self.error(file, None, f"id: missing in rule #{number}; every rule needs a unique id")
            return None, None
        if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
            self.error(
                file,
                None,
                f"id: must be 1 to 128 letters, digits, '.', '_' or '-' starting with a letter "
                f"or digit, got {rule_id!r} in rule #{number}",
            )
            return None, None
        first = self.ids.get(rule_id)
        if first is not None:
            where = "earlier in this file" if first == file else f"in {first}"
            self.error(file, rule_id, f'id: duplicate rule id "{rule_id}"; first defined {where}')
            return rule_id, None
        self.ids[rule_id] = file
        return rule_id, rule_id

    def names(self, table: dict[str, Any], key: str, what: str, error: _Report) -> frozenset[str]:
        value = table.get(key, [])
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return frozenset(value)
        hint = f'; write {key} = ["{value}"]' if isinstance(value, str) else ""
        error(f"{key}: must be a list of {what} (non-empty strings), got {value!r}{hint}")
        return frozenset()

    def actions(self, value: Any, error: _Report) -> tuple[Action, ...]:
        if value is None or value == []:
            error("actions: missing; a rule needs at least one [[rules.actions]] table")
            return ()
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            error(f"actions: must be [[rules.actions]] tables, got {_kind(value)}")
            return ()
        built = (self.action(f"actions[{i}]", table, error) for i, table in enumerate(value))
        return tuple(action for action in built if action is not None)

    def action(self, where: str, table: dict[str, Any], error: _Report) -> Action | None:
        count = len(self.errors)
        for key in table:
            if key not in ACTION_KEYS:
                error(f"{where}: " + _unknown_key(key, ACTION_KEYS, "an action"))
        known = ", ".join(sorted(self.action_types)) or "(none)"
        action_type = table.get("type")
        if action_type is None:
            error(f"{where}.type: missing; known types: {known}")
        elif action_type not in self.action_types:
            error(f"{where}.type: unknown action type {action_type!r}; known types: {known}")
        url = table.get("url")
        if url is None:
            error(f"{where}.url: missing; expected an absolute http:// or https:// URL")
        else:
            problem = url_problem(url)
            if problem:
                error(f"{where}.url: {problem}")
        secret_env = table.get("secret_env")
        if secret_env is not None:
            self.secret_env(f"{where}.secret_env", secret_env, error)
        retry = self.retry(f"{where}.retry", table["retry"], error) if "retry" in table else None
        body = None
        if "body" in table:
            source = self.with_vars(f"{where}.body", table["body"], error)
            try:
                body = Template.compile(source, logic=self.logic)
            except LogicError as exc:
                for p in exc.problems:
                    error(f"{where}.body: {p}")
        timeout = table.get("timeout_seconds")
        if timeout is not None and not (_is_number(timeout) and timeout > 0):
            error(f"{where}.timeout_seconds: must be a number of seconds > 0, got {timeout!r}")
        disable_after = table.get("disable_after")
        if disable_after is not None and (
            not isinstance(disable_after, int)
            or isinstance(disable_after, bool)
            or disable_after < 1
        ):
            error(f"{where}.disable_after: must be an integer >= 1, got {disable_after!r}")
        headers = self.headers(f"{where}.headers", table.get("headers", {}), error)
        delay = None
        if "delay" in table:
            try:
                delay = parse_duration(table["delay"])
            except ValueError as exc:
                error(f"{where}.delay: {exc}")
        rate, burst = self.rate_limit(where, table, error)
        cancel_on = None
        if "cancel_on" in table:
            cancel_on = self.cancel_on(f"{where}.cancel_on", table["cancel_on"], error)
            if "delay" not in table:
                error(f"{where}.cancel_on: only a delayed action can be cancelled; set delay")
        ordering, ordering_key = self.ordering(where, table, error)
        if len(self.errors) > count or not isinstance(action_type, str) or url is None:
            return None
        return Action(
            type=action_type,
            url=url,
            secret_env=secret_env,
            retry=retry,
            body=body,
            timeout_seconds=None if timeout is None else float(timeout),
            disable_after=disable_after,
            headers=headers,
            delay=delay,
            cancel_on=cancel_on,
            rate=rate,
            burst=burst,
            ordering=ordering,
            ordering_key=ordering_key,
        )

    def rate_limit(
        self, where: str, table: dict[str, Any], error: _Report
    ) -> tuple[float | None, int | None]:
        """`rate` and `burst` of an action; burst defaults from the rate and needs one."""
        rate = table.get("rate")
        burst = table.get("burst")
        if rate is None:
            if burst is not None:
                error(f"{where}.burst: only a rate-limited action has a burst; set rate")
            return None, None
        problem = rate_problem(rate)
        if problem:
            error(f"{where}.rate: {problem}")
            return None, None
        if burst is None:
            return float(rate), default_burst(rate)
        problem = burst_problem(burst)
        if problem:
            error(f"{where}.burst: {problem}")
            return None, None
        return float(rate), int(burst)

    def ordering(
        self, where: str, table: dict[str, Any], error: _Report
    ) -> tuple[str | None, Expression | None]:
        """`ordering` and the compiled `ordering_key` of an action (None, None: unordered)."""
        ordering = table.get("ordering")
        if ordering is not None and ordering not in ORDERINGS:
            error(
                f'{where}.ordering: must be "fifo" (deliveries with one ordering key are sent '
                f"one at a time, in the order their events were accepted), got {ordering!r}"
            )
            ordering = None
        if "ordering_key" not in table:
            return ordering, None
        if "ordering" not in table:
            error(f'{where}.ordering_key: only an ordered action has a key; set ordering = "fifo"')
        source = table["ordering_key"]
        if not isinstance(source, dict):
            error(
                f"{where}.ordering_key: must be a JSON-Logic expression evaluated on the event, "
                f'such as {{ var = "customerId" }}, got {source!r}'
            )
            return ordering, None
        source = self.with_vars(f"{where}.ordering_key", source, error)
        try:
            return ordering, self.logic.expression(source)
        except LogicError as exc:
            for p in exc.problems:
                error(f"{where}.ordering_key: {p}")
        return ordering, None

    def cancel_on(self, where: str, value: Any, error: _Report) -> CancelOn | None:
        if not isinstance(value, dict):
            error(f'{where}: must be a table like {{ event_types = ["..."], match = "job_id" }}')
            return None
        for key in value:
            if key not in CANCEL_ON_KEYS:
                error(f"{where}: " + _unknown_key(key, CANCEL_ON_KEYS, "cancel_on"))
        types = value.get("event_types")
        if not (isinstance(types, list) and types and all(isinstance(t, str) and t for t in types)):
            error(f"{where}.event_types: must be a non-empty list of event type names")
            types = None
        match = value.get("match")
        if not isinstance(match, str) or not match or any(not p for p in match.split(".")):
            error(f'{where}.match: must be a dotted path into the event, like "job_id"')
            match = None
        if types is None or match is None:
            return None
        return CancelOn(frozenset(types), match)

    def secret_env(self, where: str, name: Any, error: _Report) -> None:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            error(f"{where}: must be the name of an environment variable, got {name!r}")
        elif name not in self.env:
            error(f"{where}: environment variable {name} is not set")
        elif not self.env[name]:
            error(f"{where}: environment variable {name} is set but empty")
        elif self.check_secret is not None:
            # The message names the field, never the value: it is a secret.
            problem = self.check_secret(self.env[name])
            if problem:
                error(f"{where}: {problem}")

    def retry(self, where: str, value: Any, error: _Report) -> str | tuple[float, ...]:
        if isinstance(value, str) and value in RETRY_NAMES:
            return value
        if (
            isinstance(value, list)
            and value
            and all(_is_number(delay) and delay >= 0 for delay in value)
        ):
            return tuple(float(delay) for delay in value)
        error(
            f'{where}: must be "none", "standard" or a non-empty list of delays in seconds '
            f"(numbers >= 0) such as [5, 30, 300], got {value!r}"
        )
        return "none"

    def headers(self, where: str, value: Any, error: _Report) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            error(f'{where}: must be a table of name = "value", got {_kind(value)}')
            return ()
        pairs: list[tuple[str, str]] = []
        for name, header in value.items():
            if not _HEADER_NAME.fullmatch(name):
                error(f"{where}: {name!r} is not a valid header name")
            elif not isinstance(header, str) or any(ch in header for ch in "\r\n\0"):
                error(f"{where}.{name}: must be a string without line breaks, got {header!r}")
            else:
                pairs.append((name, header))
        return tuple(pairs)
