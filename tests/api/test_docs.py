"""The API docs work offline: every asset /docs and /redoc reference is served by the API itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_same_origin_assets(client: TestClient, page: str) -> None:
    response = client.get(page, headers={"Authorization": ""})
    assert response.status_code == 200
    urls = set(ASSET.findall(response.text))
    assert "/openapi.json" in urls
    assets = urls - {"/openapi.json"}
    assert assets, "the page references no assets: the pattern no longer matches FastAPI's HTML"
    for url in sorted(assets):
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from another origin"
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "fonts.googleapis" not in response.text and "cdn" not in response.text.lower()
