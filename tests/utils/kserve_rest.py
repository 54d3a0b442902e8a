"""A client of KServe's REST contract, as its Python SDK's `InferenceRESTClient` speaks it.

The SDK itself (PyPI `kserve`) pins psutil below 6 and protobuf below 7, older than
what this project runs with, so the tests follow the contract its client documents
instead: the URLs it builds per protocol, the fields it reads from each answer
(`status` = "alive" for V1 liveness, `ready` and `live` for V2 health, 503 meaning a
V1 model is not ready), and raising on any status outside 2xx with the body's `error`.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx


class KServeError(Exception):
    """A non-2xx answer; the message is the body's `error`, as the SDK reports it."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.json().get('error', '')}, {response.status_code}")
        self.status = response.status_code


class InferenceRESTClient:
    """KServe's REST client contract for one protocol, `v1` or `v2`."""

    def __init__(self, base_url: str, protocol: Literal["v1", "v2"]) -> None:
        self.base_url = base_url.rstrip("/")
        self.protocol = protocol

    def infer(
        self, model_name: str, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        suffix = ":predict" if self.protocol == "v1" else "/infer"
        return self._json(
            httpx.post(self._url(f"models/{model_name}{suffix}"), json=data, headers=headers)
        )

    def is_server_live(self) -> bool:
        if self.protocol == "v1":
            return str(self._json(httpx.get(self._url_root())).get("status")).lower() == "alive"
        return bool(self._json(httpx.get(self._url("health/live"))).get("live"))

    def is_server_ready(self) -> bool:
        if self.protocol == "v1":
            raise NotImplementedError("the SDK has no V1 server readiness")
        return bool(self._json(httpx.get(self._url("health/ready"))).get("ready"))

    def is_model_ready(self, model_name: str) -> bool:
        path = f"models/{model_name}" if self.protocol == "v1" else f"models/{model_name}/ready"
        response = httpx.get(self._url(path))
        if self.protocol == "v1" and response.status_code == 503:
            return False
        return bool(self._json(response).get("ready"))

    def _url(self, relative: str) -> str:
        return f"{self.base_url}/{self.protocol}/{relative}"

    def _url_root(self) -> str:
        return f"{self.base_url}/"

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if not response.is_success:
            raise KServeError(response)
        document: dict[str, Any] = response.json()
        return document
