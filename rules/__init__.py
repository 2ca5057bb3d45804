"""hookgate rules: load rule files, compile JSON-Logic, index rules, match events, render bodies.

Pure: no network, no database, nothing from `gateway` or `actions`. Other packages import
from here only (`from rules import RuleSet`), never from the modules inside.
"""

from rules.errors import EvaluationError, HookgateError, LogicError, Problem, RuleError
from rules.explain import Verdict, explain, has_path, var_paths
from rules.index import DEFAULT_EVENT_TYPE_FIELDS, UNSET, RuleSet
from rules.loader import ACTION_KEYS, RETRY_NAMES, RULE_KEYS, LoadResult, load_dir, load_file
from rules.logic import Condition, EventData, Expression, Logic, compile, evaluate
from rules.model import TARGET_RULE_PREFIX, Action, CancelOn, Match, Rule, url_problem, version_of
from rules.operators import OPERATORS, Example, Operator, OperatorContext, rfc3339
from rules.template import Template
from rules.throttle import MAX_RATE, burst_problem, default_burst, rate_problem

__all__ = [
    "ACTION_KEYS",
    "DEFAULT_EVENT_TYPE_FIELDS",
    "MAX_RATE",
    "OPERATORS",
    "RETRY_NAMES",
    "RULE_KEYS",
    "TARGET_RULE_PREFIX",
    "UNSET",
    "Action",
    "CancelOn",
    "Condition",
    "EvaluationError",
    "EventData",
    "Example",
    "Expression",
    "HookgateError",
    "LoadResult",
    "Logic",
    "LogicError",
    "Match",
    "Operator",
    "OperatorContext",
    "Problem",
    "Rule",
    "RuleError",
    "RuleSet",
    "Template",
    "Verdict",
    "burst_problem",
    "compile",
    "default_burst",
    "evaluate",
    "explain",
    "has_path",
    "load_dir",
    "load_file",
    "rate_problem",
    "rfc3339",
    "url_problem",
    "var_paths",
    "version_of",
]
