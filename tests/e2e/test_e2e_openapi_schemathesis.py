"""schemathesis against the served `/openapi.json` of the real app under uvicorn.

Stateless: every operation with a bounded number of generated requests (valid and
invalid). Stateful: schemathesis runs sequences of operations, following the
document's links from each create to the operations on the record it made. Any
failed check fails the test: a 5xx, a status the document does not list, a body or
content type or header that does not match it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 15
AUTH = {"authorization": f"Bearer {harness.ADMIN_TOKEN}"}


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """A gateway of each test's own: the stateful phase must start from an empty store."""
    tmp = tmp_path
    # Limits high enough that generated requests test the handlers, not the buckets.
    settings_ = harness.make_settings(
        tmp,
        limits={
            "app_rate": 100000,
            "app_burst": 100000,
            "global_rate": 100000,
            "global_burst": 100000,
            "unknown_token_per_minute": 100000,
        },
    )
    with harness.running_gateway(settings_) as gateway:
        schema = schemathesis.openapi.from_url(gateway.base_url + "/openapi.json")
        schema.config.update(base_url=gateway.base_url, headers=AUTH)
        yield gateway, schema


def test_every_operation_answers_as_documented(served: Any) -> None:
    gateway, schema = served
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(mode)
            for mode in (
                schemathesis.GenerationMode.POSITIVE,
                schemathesis.GenerationMode.NEGATIVE,
            )
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            case.call_and_validate(base_url=gateway.base_url, headers=AUTH, checks=CHECKS)

        try:
            run()
        except BaseException as exc:  # recorded; go on with the next operation
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:800]}")
    assert failures == [], "\n\n".join(failures[:10])


def test_stateful_sequences_answer_as_documented(served: Any) -> None:
    gateway, schema = served
    machine = schema.as_state_machine()
    steps: list[str] = []

    class Machine(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": gateway.base_url, "headers": AUTH}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            steps.append(f"{case.method} {case.path} {response.status_code}")
            case.validate_response(response, checks=CHECKS, headers=AUTH)

        def teardown(self) -> None:
            # Each sequence starts from no apps and no targets: a sequence replayed with
            # the records of an earlier one draws different values from their responses
            # (hypothesis then stops with FlakyStrategyDefinition).
            for path, kind in (("/v1/apps", "apps"), ("/v1/webhook-targets", "targets")):
                for record in gateway.admin.get(path).json()["data"]:
                    deleted = gateway.admin.delete(f"{path}/{record['id']}")
                    assert deleted.status_code in (200, 204, 404), (kind, deleted.text)

    Machine.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=8,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],  # no shrinking: replays would meet a changed store
            suppress_health_check=list(HealthCheck),
        )
    )
    # The sequences ran, every step under every check (links from each create to the
    # operations on its record are in the document; generated bodies rarely create one).
    assert len(steps) >= 20, "\n".join(steps)
    assert "POST /v1/apps 201" in steps, "\n".join(steps)
