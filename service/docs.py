"""`/docs` without the internet: Swagger UI's files come from an installed package.

FastAPI's default page loads Swagger UI from a CDN, so on a machine without internet it
is blank. The `swagger-ui-bundle-v2` package ships the released Swagger UI files; they
are served under `/docs-assets`, and the page refers to nothing else.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs-assets"


def serve_docs(api: FastAPI) -> None:
    """Mount the Swagger UI files and the `/docs` page that uses them."""
    api.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=api.openapi_url or "/openapi.json",
            title=f"{api.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )
