"""``gantry import backstage|port|csv`` against the real API served by uvicorn, on SQLite and
PostgreSQL: what is imported, what is reported (by file, line and column), what is listed as
unsupported, and that an incompatible blueprint stops the import before anything is written."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import cli
from config import Settings
from devtools.testing import eventually

ADMIN_TOKEN = "imports-test-admin-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def api_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    from api.app import create_app

    settings = Settings.model_validate(
        {"database_url": database_url, "data_dir": tmp_path, "admin_token": ADMIN_TOKEN}
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started or None, timeout=30, what="the API to start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def gantry(api_url: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    """Runs the CLI with ``--json``; answers its exit code and the JSON it printed."""
    code = cli.main(["--api-url", api_url, "--token", ADMIN_TOKEN, *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def get(api_url: str, path: str) -> httpx.Response:
    return httpx.get(f"{api_url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def post(api_url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{api_url}{path}", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


# -- backstage ------------------------------------------------------------------------------

PAYMENTS = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments
  title: Payments
  tags: [python]
  annotations: {github.com/project-slug: acme/payments}
spec:
  type: service
  lifecycle: production
  owner: payments-team
  system: billing
  dependsOn: [component:ledger, resource:payments-db]
  providesApis: [payments-api]
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: ledger}
spec: {type: service, lifecycle: production, owner: payments-team, system: billing}
---
apiVersion: backstage.io/v1alpha1
kind: API
metadata: {name: payments-api}
spec: {type: openapi, lifecycle: production, owner: payments-team, system: billing, definition: "openapi: 3.0.0"}
"""
PLATFORM = """
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: billing, description: Money in and out}
spec: {owner: payments-team, domain: finance}
---
apiVersion: backstage.io/v1alpha1
kind: Domain
metadata: {name: finance}
spec: {owner: group:finance-team}
---
apiVersion: backstage.io/v1alpha1
kind: Resource
metadata: {name: payments-db}
spec: {type: database, owner: payments-team, system: billing}
"""
ORG = """
apiVersion: backstage.io/v1alpha1
kind: Group
metadata: {name: payments-team}
spec: {type: team, profile: {displayName: Payments}, parent: engineering, children: [], members: [bob]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: alice}
spec: {profile: {displayName: Alice, email: alice@example.com}, memberOf: [payments-team]}
---
apiVersion: backstage.io/v1alpha1
kind: User
metadata: {name: bob}
spec: {profile: {displayName: Bob, email: bob@example.com}, memberOf: []}
"""
INVALID = """
apiVersion: backstage.io/v1alpha1
kind: Template
metadata: {name: new-service}
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata: {name: orphan}
spec: {type: service, owner: payments-team, system: nowhere}
"""


@pytest.fixture
def backstage_dir(tmp_path: Path) -> Path:
    root = tmp_path / "repos"
    (root / "payments").mkdir(parents=True)
    (root / "payments" / "catalog-info.yaml").write_text(PAYMENTS)
    (root / "platform.yaml").write_text(PLATFORM)
    (root / "org.yml").write_text(ORG)
    (root / "broken.yaml").write_text("kind: [unclosed\n")
    (root / "invalid.yaml").write_text(INVALID)
    (root / "README.md").write_text("not a catalog file")
    return root


def test_backstage_import_creates_blueprints_teams_users_and_related_entities(
    api_url: str, backstage_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = gantry(api_url, "import", "backstage", str(backstage_dir), capsys=capsys)
    assert code == 1  # something was reported
    assert report["created"] == {"blueprints": 5, "teams": 2, "users": 2}
    assert report["entities"] == {"component": 2, "api": 1, "system": 1, "domain": 1, "resource": 1}
    errors = {e["where"]: e["message"] for e in report["errors"]}
    assert any(where.endswith("broken.yaml") and "YAML" in msg for where, msg in errors.items())
    assert any(where.endswith("invalid.yaml#1") and msg.startswith("/kind:") for where, msg in errors.items())
    orphan = [m for w, m in errors.items() if w.endswith("invalid.yaml#2 (component/orphan)")]
    assert orphan and "nowhere" in orphan[0]  # its system does not exist: refused by the API, named
    assert get(api_url, "/v1/blueprints/component/entities/orphan").status_code == 404  # never half-written
    assert len(errors) == 3
    assert any("hierarchy" in u["message"] for u in report["unsupported"])

    payments = get(api_url, "/v1/blueprints/component/entities/payments").json()
    assert payments["team"] == ["payments-team"] and payments["title"] == "Payments"
    assert payments["relations"] == {
        "system": "billing",
        "depends_on": ["ledger"],
        "depends_on_resources": ["payments-db"],
        "provides_apis": ["payments-api"],
    }
    assert payments["properties"]["annotations"] == {"github.com/project-slug": "acme/payments"}
    assert get(api_url, "/v1/blueprints/system/entities/billing").json()["relations"] == {"domain": "finance"}
    assert get(api_url, "/v1/teams/finance-team").status_code == 200  # named as an owner only
    assert get(api_url, "/v1/users/alice").json()["teams"] == ["payments-team"]
    assert get(api_url, "/v1/users/bob").json()["teams"] == ["payments-team"]  # a Group's member

    # Again: nothing new is created, every entity is written again (upserted), same reports.
    code, again = gantry(api_url, "import", "backstage", str(backstage_dir), capsys=capsys)
    assert code == 1 and again["created"] == {}
    assert again["existing"] == {"blueprints": 5, "teams": 2, "users": 2}
    assert again["entities"] == report["entities"]


def test_a_valid_file_alone_imports_cleanly_with_a_human_summary(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "catalog-info.yaml"
    file.write_text(PLATFORM)
    code = cli.main(["--api-url", api_url, "--token", ADMIN_TOKEN, "import", "backstage", str(file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "entities imported: 1 domain, 1 resource, 1 system" in out
    assert "0 errors, 0 unsupported" in out


def test_an_incompatible_blueprint_stops_before_writing_and_suggests_a_prefix(
    api_url: str, backstage_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = {
        "identifier": "component",
        "title": "Mine",
        "schema": {"properties": {"type": {"type": "integer"}}},
    }
    assert post(api_url, "/v1/blueprints", mine).status_code == 201
    code, report = gantry(api_url, "import", "backstage", str(backstage_dir), capsys=capsys)
    assert code == 1
    message = report["errors"][0]["message"]
    assert "blueprint 'component' exists" in message and "property 'type' is integer" in message
    assert "--prefix" in message
    assert get(api_url, "/v1/teams/payments-team").status_code == 404  # nothing written
    assert get(api_url, "/v1/blueprints/system").status_code == 404

    code, report = gantry(
        api_url, "import", "backstage", str(backstage_dir), "--prefix", "bs_", capsys=capsys
    )
    assert report["entities"]["bs_component"] == 2
    payments = get(api_url, "/v1/blueprints/bs_component/entities/payments").json()
    assert payments["relations"]["system"] == "billing"
    assert get(api_url, "/v1/blueprints/bs_component").json()["relations"]["system"]["target"] == "bs_system"
    assert get(api_url, "/v1/blueprints/component").json()["title"] == "Mine"  # untouched


# -- port -----------------------------------------------------------------------------------

PORT_EXPORT: dict[str, Any] = {
    "blueprints": [
        {
            "identifier": "microservice",
            "title": "Microservice",
            "icon": "Microservice",
            "schema": {
                "properties": {
                    "language": {"type": "string", "enum": ["Go", "Python"]},
                    "replicas": {"type": "number"},
                },
                "required": [],
            },
            "relations": {
                "domain": {"title": "Domain", "target": "portDomain", "many": False, "required": False}
            },
            "mirrorProperties": {"domainName": {"title": "Domain", "path": "domain.$title"}},
            "calculationProperties": {"age": {"title": "Age", "calculation": ".createdAt", "type": "string"}},
            "aggregationProperties": {},
            "createdAt": "2024-01-01T00:00:00.000Z",
        },
        {
            "identifier": "portDomain",
            "title": "Domain",
            "schema": {"properties": {}, "required": []},
            # A relation back to microservice: the two relate both ways (created in two passes).
            "relations": {"flagship": {"target": "microservice", "many": False, "required": False}},
            "mirrorProperties": {},
            "calculationProperties": {},
            "aggregationProperties": {
                "services": {
                    "title": "Services",
                    "target": "microservice",
                    "calculationSpec": {"calculationBy": "entities", "func": "count"},
                },
                "medianReplicas": {
                    "title": "Median",
                    "target": "microservice",
                    "calculationSpec": {
                        "calculationBy": "property",
                        "func": "median",
                        "property": "replicas",
                    },
                },
            },
            "teamInheritance": {"path": "flagship"},
        },
    ],
    "entities": [
        {
            "identifier": "cart",
            "title": "Cart",
            "blueprint": "microservice",
            "team": ["shop"],
            "properties": {"language": "Go", "replicas": 3},
            "relations": {"domain": "retail"},
            "icon": "Cart",
        },
        {
            "identifier": "retail",
            "title": "Retail",
            "blueprint": "portDomain",
            "team": [],
            "properties": {},
            "relations": {"flagship": "cart"},
        },
        {
            "identifier": "bad",
            "blueprint": "microservice",
            "properties": {"language": "Cobol"},
            "relations": {},
        },
        {"identifier": "nobp"},
    ],
    "actions": [],
}


def test_port_import_maps_blueprints_lists_what_gantry_lacks_and_imports_entities(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps(PORT_EXPORT))
    code, report = gantry(api_url, "import", "port", str(export), capsys=capsys)
    assert code == 1
    assert report["created"] == {"blueprints": 2, "teams": 1}
    assert report["entities"] == {"microservice": 1, "portDomain": 1}, report["errors"]
    unsupported = {u["where"]: u["message"] for u in report["unsupported"]}
    assert set(unsupported) == {
        "blueprint microservice /calculationProperties/age",
        "blueprint portDomain /aggregationProperties/medianReplicas/calculationSpec",
        "blueprint portDomain /teamInheritance",
        "/actions",
        "/entities/0/icon",
    }
    errors = {e["where"]: e["message"] for e in report["errors"]}
    assert set(errors) == {"microservice/bad", "/entities/3"}
    assert "/properties/language" in errors["microservice/bad"]

    domain = get(api_url, "/v1/blueprints/portDomain/entities/retail").json()
    assert domain["properties"] == {"services": 1} and domain["relations"] == {"flagship": "cart"}
    cart = get(api_url, "/v1/blueprints/microservice/entities/cart").json()
    assert cart["properties"]["domainName"] == "Retail" and cart["team"] == ["shop"]
    port_form = get(api_url, "/v1/blueprints/portDomain?format=port").json()
    assert port_form["aggregationProperties"]["services"]["calculationSpec"] == {
        "calculationBy": "entities",
        "func": "count",
    }


# -- csv ------------------------------------------------------------------------------------

INVENTORY = {
    "identifier": "host",
    "title": "Host",
    "schema": {
        "properties": {
            "cpus": {"type": "integer"},
            "load": {"type": "number"},
            "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "labels": {"type": "object"},
            "os": {"type": "string", "enum": ["linux", "windows"]},
        }
    },
    "relations": {"peers": {"target": "host", "many": True}, "primary": {"target": "host"}},
}

CSV = """name,Name,cpus,load,active,tags,labels,os,team,peers,primary
web-1,Web one,4,0.5,yes,"[""a"",""b""]","{""zone"": ""eu""}",linux,ops,,
web-2,Web two,8,1e1,FALSE,[],{},windows,,"web-1, web-3",web-1
web-3,,,,,,,,,,
bad-bool,x,1,1,maybe,,,linux,,,
bad-num,x,two,NaN,1,,,linux,,,
bad-json,"multi
line title",1,1,0,[oops,,linux,,,
,no identifier,1,1,1,,,linux,,,
enum,Enum,1,1,1,,,beos,,,
"""


def test_csv_import_coerces_reports_by_line_and_column_and_imports_the_good_rows(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert post(api_url, "/v1/blueprints", INVENTORY).status_code == 201
    assert post(api_url, "/v1/teams", {"identifier": "ops", "title": "Ops"}).status_code == 201
    file = tmp_path / "hosts.csv"
    file.write_text(CSV)
    args = [
        "import",
        "csv",
        str(file),
        "--blueprint",
        "host",
        "--identifier-column",
        "name",
        "--title-column",
        "Name",
    ]

    code, dry = gantry(api_url, *args, "--dry-run", capsys=capsys)
    assert code == 1 and dry["dry_run"] is True and dry["entities"] == {"host": 4}
    assert get(api_url, "/v1/blueprints/host/entities").json()["items"] == []  # nothing written

    code, report = gantry(api_url, *args, capsys=capsys)
    assert code == 1 and report["entities"] == {"host": 3}
    where = f"{file} line"
    errors = [(e["where"], e["message"]) for e in report["errors"]]
    assert [w for w, _ in errors] == [
        f"{where} 5, column active",
        f"{where} 6, column cpus",
        f"{where} 6, column load",
        f"{where} 7, column tags",  # the row starts on line 7; its quoted title spans two lines
        f"{where} 9, column name",
        f"{where} 10",  # refused by the blueprint: the API's message names the property
    ]
    assert "boolean" in errors[0][1] and "/properties/os" in errors[-1][1]

    web1 = get(api_url, "/v1/blueprints/host/entities/web-1").json()
    assert web1["title"] == "Web one" and web1["team"] == ["ops"]
    assert web1["properties"] == {
        "cpus": 4,
        "load": 0.5,
        "active": True,
        "tags": ["a", "b"],
        "labels": {"zone": "eu"},
        "os": "linux",
    }
    web2 = get(api_url, "/v1/blueprints/host/entities/web-2").json()
    assert web2["properties"]["load"] == 10 and web2["properties"]["active"] is False
    assert web2["relations"] == {"peers": ["web-1", "web-3"], "primary": "web-1"}  # web-3 comes later
    web3 = get(api_url, "/v1/blueprints/host/entities/web-3").json()
    assert web3["properties"] == {} and web3["title"] is None  # empty cells leave values unset


def test_csv_header_problems_stop_the_file(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert post(api_url, "/v1/blueprints", INVENTORY).status_code == 201
    file = tmp_path / "hosts.csv"
    file.write_text("identifier,colour\nweb-1,blue\n")
    code, report = gantry(api_url, "import", "csv", str(file), "--blueprint", "host", capsys=capsys)
    assert code == 1 and report["entities"] == {}
    assert report["errors"] == [
        {
            "where": f"{file} line 1, column colour",
            "message": "is neither a property nor a relation of 'host'",
        }
    ]
    code, _ = gantry(api_url, "import", "csv", str(file), "--blueprint", "nope", capsys=capsys)
    assert code == 1  # 404 from the API, printed on stderr
