"""The documentation site builds strict, and a dead link fails it.

`make docs` and CI build the same site (mkdocs.yml). Strict mode turns MkDocs' link,
anchor and nav warnings into errors, so this build is the link check; the second test
proves the configuration still catches a dead link, since a strict build that silently
stopped validating would pass as well. The README sits outside the site, so its
relative links are checked here directly.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run `mkdocs build --strict` as `make docs` does, into `site`."""
    pytest.importorskip("mkdocs", reason="needs the docs extra: pip install '.[docs]'")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_strict_with_every_guide(tmp_path: Path) -> None:
    result = _build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in ("index", "serving", "load-testing", "benchmark", "canary", "staging"):
        assert (tmp_path / "site" / f"{page}.html").is_file()
    kubernetes = (tmp_path / "site" / "kubernetes.html").read_text()
    assert "Why Kustomize and not Helm" in kubernetes  # included from deploy/README.md


def test_a_dead_link_fails_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "README.md", copy / "deploy" / "README.md")
    guide = copy / "docs" / "serving.md"
    guide.write_text(guide.read_text() + "\nSee [nowhere](no-such-page.md).\n")

    result = _build(copy, tmp_path / "site")

    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_every_relative_link_in_the_readme_names_a_file() -> None:
    targets = MARKDOWN_LINK.findall((ROOT / "README.md").read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]
    assert local, "the README links to its guides"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
