"""The OpenAPI document says what the API really answers: every JSON route declares its answer's shape and the error
statuses it can give, and real answers match the declared models, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from gpufleet.api.app import create_app
from gpufleet.api.responses import ValueJSONResponse
from gpufleet.api.schemas import ProblemOut
from gpufleet.api.schemas.cases import CaseDetailOut, CaseOut, SupplierReturnOut
from gpufleet.api.schemas.clusters import ResumeOut, SchedulerRebootOut
from gpufleet.api.schemas.fleet import (
    REFERENCE_LISTS,
    AllocationsOut,
    FleetReportOut,
    TokensOut,
)
from gpufleet.api.schemas.health import HealthzOut
from gpufleet.api.schemas.nodes import (
    LifecycleOut,
    NodeListItem,
    NodeOut,
    NodePageOut,
    NodeUpdateOut,
    SummaryOut,
    TransitionOut,
)
from gpufleet.api.schemas.remediation import (
    FiguresOut,
    HealthPolicyOut,
    PassOut,
    TicketOut,
)
from gpufleet.api.schemas.validation import PlanOut, SuitesOut, ValidationPolicyOut
from gpufleet.domain.remediation import PERSON_ACTIONS
from gpufleet.domain.validation import POLICY_FIELDS
from gpufleet.fleet.queries import FIELDS
from gpufleet.platform.database import Database, open_database
from gpufleet.remediation.intake import record_health_event
from tests.integration.api_support import Api, assert_problem, make_api, node_id

V1 = "/api/v1"
METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM_REF = "#/components/schemas/ProblemOut"

# What the services behind these routes raise beyond the generic rules below: Conflict (409) and
# PreconditionFailed (412) that no parameter gives away, and Busy (503).
SERVICE_ERRORS: dict[tuple[str, str], set[int]] = {
    ("post", f"{V1}/nodes/{{node}}/transitions"): {409, 412},
    ("patch", f"{V1}/nodes/{{node}}"): {412},
    ("patch", f"{V1}/validation/policies/{{cluster}}"): {412},
    ("post", f"{V1}/allocations"): {409},
    ("post", f"{V1}/cases/{{case_id}}/actions"): {409, 412},
    ("post", f"{V1}/cases/supplier-returned"): {409},
    ("post", f"{V1}/clusters/nodes/{{node}}/resume"): {409, 502},
    ("post", f"{V1}/clusters/nodes/{{node}}/reboot"): {502},
    ("post", f"{V1}/events/{{fmt}}"): {413, 503},
    ("post", f"{V1}/imports/nodes"): {413},
    ("post", f"{V1}/validation/results"): {413},
}


@pytest.fixture(scope="module")
def spec() -> Iterator[dict[str, Any]]:
    """The document as the server hands it out; building it touches no database."""
    database = open_database("sqlite://")
    try:
        yield create_app(database).openapi()
    finally:
        database.dispose()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _is_typed(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A $ref to a model with properties, or a list of them: not a bare object of anything."""
    if schema.get("type") == "array":
        return _is_typed(spec, schema.get("items", {}))
    return "$ref" in schema and bool(_resolve(spec, schema).get("properties"))


def _success(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {status: answer for status, answer in operation["responses"].items() if status.startswith("2")}


def _parameters(operation: dict[str, Any], where: str) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["in"] == where]


# ---------------------------------------------------------------------------------------------------------------
# The document.


def test_every_json_route_declares_the_shape_of_its_answer(spec: dict[str, Any]) -> None:
    untyped = []
    for method, path, operation in _operations(spec):
        if not (path.startswith(V1) or path == "/healthz"):
            continue
        answers = _success(operation)
        assert answers.keys() & {"200", "201"}, (method, path)
        for status, answer in answers.items():
            content = answer.get("content", {})
            if "application/json" not in content:
                assert set(content) <= {"text/html", "text/plain"}, (method, path, status, content)
                continue
            if not _is_typed(spec, content["application/json"].get("schema", {})):
                untyped.append((method, path, status))
    assert untyped == []


def test_every_error_is_declared_as_a_problem_document(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's own 422 shape is never sent
    for method, path, operation in _operations(spec):
        for status, answer in operation["responses"].items():
            if int(status) < 400 or path == "/healthz":
                continue
            assert set(answer["content"]) == {"application/problem+json"}, (method, path, status)
            assert answer["content"]["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}
    problem = spec["components"]["schemas"]["ProblemOut"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["required"])


def test_every_route_declares_the_errors_it_can_answer(spec: dict[str, Any]) -> None:
    missing = []
    for method, path, operation in _operations(spec):
        if not path.startswith(V1):
            continue
        declared = {int(s) for s in operation["responses"]}
        expected = {401, 403} | SERVICE_ERRORS.get((method, path), set())
        if operation.get("parameters") or "requestBody" in operation:
            expected.add(422)  # any parameter or body can be invalid
        if "requestBody" in operation:
            expected.add(413)  # the body limit stands in front of every route
        for parameter in _parameters(operation, "path"):
            if "enum" not in _resolve(spec, parameter["schema"]):  # an unknown enum value is a 422
                expected.add(404)  # what a path names may not exist
        if method == "get" and any(p["name"] == "node" for p in _parameters(operation, "query")):
            expected.add(404)  # a node filter names a node that may not exist
        if any(p["name"].lower() == "if-match" for p in _parameters(operation, "header")):
            expected |= {400, 412}  # a malformed ETag, and a stale one
        if method == "get":
            assert not declared & {409, 412}, (method, path, "a read cannot conflict")
        if expected - declared:
            missing.append((method, path, sorted(expected - declared)))
    assert missing == []


def test_the_person_actions_on_a_case_are_the_domain_table(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["CaseActionIn"]
    actions = _resolve(spec, body["properties"]["action"])
    assert actions["enum"] == list(PERSON_ACTIONS) == ["repaired", "retry", "escalate", "close"]


def test_plain_answers_are_written_as_fastapi_wrote_them_before_they_declared_models() -> None:
    content = {"at": datetime(2026, 3, 2, 9, tzinfo=UTC), "big": 2**70, "rows": [{"share": 0.25, "to": None}]}
    assert ValueJSONResponse(content).body == TypeAdapter(dict[str, Any]).dump_json(content)


def test_models_follow_the_tables_they_show() -> None:
    assert tuple(NodeListItem.__annotations__) == FIELDS
    assert set(FIELDS) <= set(NodeOut.model_fields)
    assert set(POLICY_FIELDS) <= set(ValidationPolicyOut.model_fields)


# ---------------------------------------------------------------------------------------------------------------
# Real answers.


@pytest.fixture
def api(db: Database) -> Api:
    api = make_api(db)
    now = db.clock.now()
    with db.transaction() as session:
        record_health_event(session, node_id("SN01"), "xid:79", now, now, gpu_index=0, source="test")
        record_health_event(session, node_id("SN03"), "xid:13", now, now, source="test")
    return api


def _check(spec: dict[str, Any], response: Any, method: str, path: str, model: Any) -> Any:
    """The answer's status is declared for the route with ``model`` as its shape, and its body validates against
    it (the models refuse members they do not declare)."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], (method, path, response.status_code, response.text)
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    declared = schema["items"] if schema.get("type") == "array" else schema
    name = getattr(model, "__args__", (model,))[0].__name__
    assert declared == {"$ref": f"#/components/schemas/{name}"}, (method, path, schema)
    assert response.headers["content-type"].startswith("application/json")
    TypeAdapter(model).validate_json(response.content)
    return response.json()


def test_real_answers_match_their_declared_models(api: Api, spec: dict[str, Any]) -> None:
    sn05 = node_id("SN05")
    _check(spec, api.get(f"{V1}/nodes"), "get", f"{V1}/nodes", NodePageOut)
    page = _check(
        spec,
        api.get(f"{V1}/nodes", params={"fields": "hostname,state", "limit": 2}),
        "get",
        f"{V1}/nodes",
        NodePageOut,
    )
    assert set(page["items"][0]) == {"id", "hostname", "state"} and page["next_cursor"]
    moved = api.post(f"{V1}/nodes/{sn05}/transitions", json={"event": "provision", "reason": "racked"})
    _check(spec, moved, "post", f"{V1}/nodes/{{node}}/transitions", TransitionOut)
    patched = api.patch(f"{V1}/nodes/{sn05}", json={"labels": {"tier": "gold"}, "reason": "promote"})
    _check(spec, patched, "patch", f"{V1}/nodes/{{node}}", NodeUpdateOut)
    node = _check(spec, api.get(f"{V1}/nodes/{node_id('SN01')}"), "get", f"{V1}/nodes/{{node}}", NodeOut)
    assert node["allocations"] and node["events"] and node["gpu_devices"]
    _check(spec, api.get(f"{V1}/nodes/{sn05}"), "get", f"{V1}/nodes/{{node}}", NodeOut)
    for who in ("viewer", "tenant-a"):
        _check(spec, api.get(f"{V1}/summary", who=who), "get", f"{V1}/summary", SummaryOut)
    _check(spec, api.get(f"{V1}/lifecycle"), "get", f"{V1}/lifecycle", LifecycleOut)
    _check(spec, api.get(f"{V1}/allocations"), "get", f"{V1}/allocations", AllocationsOut)
    _check(spec, api.get(f"{V1}/tokens", who="admin"), "get", f"{V1}/tokens", TokensOut)
    _check(spec, api.get("/healthz"), "get", "/healthz", HealthzOut)

    document = {
        "switches": [{"cluster": "east-frontier", "name": "leaf-1"}],
        "partitions": [{"cluster": "east-frontier", "name": "p-default", "pkey": "0x7fff"}],
        "pools": [{"cluster": "east-frontier", "name": "batch", "partition": "p-default"}],
    }
    _check(spec, api.post(f"{V1}/fleet", json=document), "post", f"{V1}/fleet", FleetReportOut)
    for section, model in REFERENCE_LISTS.items():
        listed = _check(spec, api.get(f"{V1}/{section}"), "get", f"{V1}/{section}", model)
        assert listed["items"], section

    _check(spec, api.get(f"{V1}/validation/suites"), "get", f"{V1}/validation/suites", SuitesOut)
    policy = api.get(f"{V1}/validation/policies/east-frontier")
    _check(spec, policy, "get", f"{V1}/validation/policies/{{cluster}}", ValidationPolicyOut)
    plan = api.get(f"{V1}/validation/plan/{node_id('SN01')}")
    _check(spec, plan, "get", f"{V1}/validation/plan/{{node}}", PlanOut)

    sn01 = node_id("SN01")  # the simulated driver answers for the scheduler
    rebooted = api.post(f"{V1}/clusters/nodes/{sn01}/reboot", json={"reason": "a kernel update"})
    _check(spec, rebooted, "post", f"{V1}/clusters/nodes/{{node}}/reboot", SchedulerRebootOut)
    resumed = api.post(f"{V1}/clusters/nodes/{sn01}/resume", json={"reason": "back"})
    _check(spec, resumed, "post", f"{V1}/clusters/nodes/{{node}}/resume", ResumeOut)


def test_real_case_answers_match_their_declared_models(api: Api, spec: dict[str, Any]) -> None:
    ran = _check(spec, api.post(f"{V1}/remediation/run"), "post", f"{V1}/remediation/run", PassOut)
    assert ran["opened"] == 2
    cases = _check(spec, api.get(f"{V1}/cases"), "get", f"{V1}/cases", list[CaseOut])
    for case in cases:
        _check(spec, api.get(f"{V1}/cases/{case['id']}"), "get", f"{V1}/cases/{{case_id}}", CaseDetailOut)
    diagnosing = next(c for c in cases if c["state"] == "diagnosing")
    escalated = api.post(
        f"{V1}/cases/{diagnosing['id']}/actions", json={"action": "escalate", "reason": "the GPU needs swapping"}
    )
    detail = _check(spec, escalated, "post", f"{V1}/cases/{{case_id}}/actions", CaseDetailOut)
    assert detail["state"] == "escalated" and detail["ticket_detail"] is not None
    tickets = _check(spec, api.get(f"{V1}/remediation/tickets"), "get", f"{V1}/remediation/tickets", list[TicketOut])
    acknowledged = api.post(
        f"{V1}/remediation/tickets/{tickets[0]['id']}/status",
        json={"status": "acknowledged", "reason": "the supplier took it", "external_ref": "RMA-1"},
    )
    _check(spec, acknowledged, "post", f"{V1}/remediation/tickets/{{ticket_id}}/status", TicketOut)
    returned = api.post(f"{V1}/cases/supplier-returned", json={"node": detail["node"]["id"], "reason": "GPU 0 swapped"})
    assert _check(spec, returned, "post", f"{V1}/cases/supplier-returned", SupplierReturnOut)["case"] == detail["id"]
    _check(spec, api.get(f"{V1}/remediation/policy"), "get", f"{V1}/remediation/policy", HealthPolicyOut)
    _check(spec, api.get(f"{V1}/remediation/figures"), "get", f"{V1}/remediation/figures", FiguresOut)

    missing = assert_problem(api.get(f"{V1}/cases/999999"), 404)
    assert "404" in spec["paths"][f"{V1}/cases/{{case_id}}"]["get"]["responses"]
    assert ProblemOut.model_validate(missing).correlation_id
