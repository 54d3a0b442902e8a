"""`/docs` works without the internet: the page refers only to files the service serves."""

from __future__ import annotations

import re

import httpx

from perfserve_common.processes import ServerProcess


def test_docs_use_only_local_assets_and_they_are_served(server: ServerProcess) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    references = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert references, page.text
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not served by the service"
        served = httpx.get(f"{server.url}{reference}")
        assert served.status_code == 200, reference
        assert served.content, reference
    assert "/docs-assets/swagger-ui-bundle.js" in references
    assert "/openapi.json" in references
    assert "openapi" in httpx.get(f"{server.url}/openapi.json").json()
