"""A secret input is stored only sealed: no column of the run record holds its value.

Temporal is down for this test (a free port): the launch records its run, then answers 503 and
ends the run as not started — the record is what is checked, straight from the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from api.app import create_app
from catalog.models import Run
from catalog.runs.secrets import REDACTED, unseal
from config import Settings
from tests.api.conftest import ADMIN_TOKEN
from tests.temporal_env import free_port

KEY = "secret-key-for-tests"
SECRET_VALUE = "Hunter2-IS-SECRET"
ROTATE = {
    "identifier": "rotate",
    "title": "Rotate credentials",
    "trigger": {"operation": "CREATE"},
    "user_inputs": {
        "properties": {"service": {"type": "string"}, "password": {"type": "string", "secret": True}},
        "required": ["service", "password"],
    },
    "steps": [
        {
            "id": "call",
            "uses": "http.request",
            "with": {"url": "http://127.0.0.1:9/rotate", "body": {"password": "{{ inputs.password }}"}},
        }
    ],
}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    down = settings.model_copy(
        update={"temporal_address": f"127.0.0.1:{free_port()}", "secret_key": SecretStr(KEY)}
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        assert c.post("/v1/actions", json=ROTATE).status_code == 201
        yield c


def test_a_secret_input_is_stored_sealed_and_never_in_clear(client: TestClient) -> None:
    launched = client.post(
        "/v1/actions/rotate/runs", json={"inputs": {"service": "ledger", "password": SECRET_VALUE}}
    )
    assert launched.status_code == 503, launched.text  # recorded, then Temporal is down
    assert SECRET_VALUE not in launched.text
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        row = session.scalars(select(Run).where(Run.action == "rotate")).one()
        stored = {column.key: getattr(row, column.key) for column in Run.__table__.columns}
    assert stored["inputs"] == {"service": "ledger", "password": REDACTED}
    assert stored["secret_inputs"] and unseal(stored["secret_inputs"], KEY) == {"password": SECRET_VALUE}
    for name, value in stored.items():
        assert SECRET_VALUE not in json.dumps(value, default=str), f"run.{name} holds the secret in clear"
    shown = client.get(f"/v1/runs/{row.id}")
    assert shown.status_code == 200 and SECRET_VALUE not in shown.text
