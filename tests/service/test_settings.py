"""Settings: environment first, readable formats, unsafe values refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_environment_variables_configure_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("PERFSERVE_VARIANTS", "onnx_fp32,onnx_int8")
    monkeypatch.setenv("PERFSERVE_TRAFFIC", "onnx_fp32=0.9,onnx_int8=0.1")
    settings = Settings()
    assert settings.max_batch_size == 8
    assert settings.variants == ["onnx_fp32", "onnx_int8"]
    assert settings.traffic == {"onnx_fp32": 0.9, "onnx_int8": 0.1}


def test_faults_read_repeated_or_comma_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    given = ["onnx_int8:latency-ms=5,error-rate=0.1", "onnx_fp32:flip-rate=1"]
    expected = {"onnx_int8": {"latency-ms": 5, "error-rate": 0.1}, "onnx_fp32": {"flip-rate": 1}}
    assert Settings(inject=given, allow_faults=True).inject == expected
    monkeypatch.setenv("PERFSERVE_INJECT", ",".join(given))
    monkeypatch.setenv("PERFSERVE_ALLOW_FAULTS", "1")
    assert Settings().inject == expected


def test_traffic_also_reads_json() -> None:
    assert Settings(traffic='{"a": 1, "b": 3}').traffic == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"admin_token": "changeme"}, "placeholder"),
        ({"admin_token": ""}, "at least 12 characters"),
        ({"admin_token": "short"}, "at least 12 characters"),
        ({"max_batch_size": 0}, "greater than or equal to 1"),
        ({"traffic": "a=-1"}, "finite and not negative"),
        ({"traffic": "a=nan,b=1"}, "finite and not negative"),
        ({"traffic": "=1"}, "names must not be empty"),
        ({"traffic": "a=0"}, "at least one weight must be positive"),
        ({"split_poll_s": 0}, "greater than 0"),
        ({"inject": "onnx_int8:latency-ms=5"}, "--inject needs --allow-faults"),
        ({"inject": "onnx_int8:slow=1", "allow_faults": True}, "unknown fault 'slow'"),
        ({"inject": "onnx_int8:error-rate=2", "allow_faults": True}, "from 0 to 1"),
        ({"inject": "onnx_int8:flip-rate=x", "allow_faults": True}, "from 0 to 1"),
        ({"inject": "latency-ms=5", "allow_faults": True}, "names no variant"),
        ({"traffic": "a=x"}, "must look like name=weight"),
        ({"variants": "onnx_fp32", "shadow": "onnx_int8"}, "not among the loaded variants"),
        ({"admin_max_body_bytes": 10 * 1024 * 1024}, "less than or equal to 1048576"),
        ({"body_timeout_s": 0}, "greater than 0"),
        ({"limit_concurrency": 1}, "greater than or equal to 16"),
        ({"keep_alive_s": 0}, "greater than or equal to 1"),
        ({"gc_threshold": 0}, "greater than or equal to 1"),
        ({"admin_token_file": "/nonexistent/token"}, "admin_token_file: No such file"),
    ],
)
def test_unsafe_or_inconsistent_values_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


def test_an_empty_environment_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSERVE_ADMIN_TOKEN", "")
    assert Settings().admin_token is None  # so `PUT /traffic` stays disabled


def test_the_admin_token_can_come_from_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-from-a-file-7e1\n")
    settings = Settings(admin_token_file=token_file)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "a-token-from-a-file-7e1"
    with pytest.raises(ValidationError, match="not both"):
        Settings(admin_token_file=token_file, admin_token="another-token-1234")
    token_file.write_text("changeme")
    with pytest.raises(ValidationError, match="admin_token_file is a placeholder"):
        Settings(admin_token_file=token_file)
