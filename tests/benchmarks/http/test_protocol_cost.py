"""`python -m perfserve.benchmarks.http.protocol_cost`: CPU per request, route by route."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfserve.benchmarks.http.protocol_cost import main


def test_every_route_is_measured_against_the_first_and_profiled(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["--store", str(store), "--requests", "128", "--rounds", "2", "--profile"])
    out = capsys.readouterr().out
    for path in ("/models/onnx_int8/predict", "/v2/models/onnx_int8/infer", "/v1/models/"):
        assert path in out
    assert "1.000x of /models/onnx_int8/predict" in out
    assert "own µs per request under cProfile, /v2/models/onnx_int8/infer" in out


def test_an_unknown_protocol_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--protocols", "perfserve,v3"])
    assert exit_.value.code == 2
    assert "--protocols v3: allowed are perfserve, v1, v2" in capsys.readouterr().err
