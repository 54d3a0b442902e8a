"""constraints.txt: the exact versions the images install, taken from a tested virtualenv.

The Dockerfile installs with `--constraint constraints.txt`, so an image holds the
versions the test suite ran against instead of whatever the open ranges in
pyproject.toml resolve to on the day it is built. Only the distributions the images
need are pinned (the serving install and the build and loadtest extras, with everything
they pull in), read from the virtualenv this runs in:

    python -m perfserve.staging.constraints > constraints.txt      # make constraints
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "perfserve"
IMAGE_EXTRAS = ("build", "loadtest")
"""The runtime image has the plain install; the build stage adds `build`, the Locust
image `loadtest`."""


def required(name: str, extras: set[str]) -> list[Requirement]:
    """The requirements of one installed distribution that apply with these extras."""
    found = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
            found.append(requirement)
    return found


def closure(extras: tuple[str, ...] = IMAGE_EXTRAS) -> dict[str, str]:
    """Every distribution the project with these extras needs: canonical name -> version."""
    versions: dict[str, str] = {}
    pending = [(PROJECT, set(extras))]
    expanded: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, wanted = pending.pop()
        key = (canonicalize_name(name), frozenset(wanted))
        if key in expanded:
            continue
        expanded.add(key)
        for requirement in required(name, wanted):
            dependency = canonicalize_name(requirement.name)
            if dependency != PROJECT:
                versions[dependency] = metadata.version(requirement.name)
            pending.append((requirement.name, set(requirement.extras)))
    return versions


def render(versions: dict[str, str]) -> str:
    lines = [
        "# Versions the test suite ran with, for what the images install (Dockerfile).",
        "# Regenerate from a tested virtualenv: make constraints",
    ]
    lines += [f"{name}=={version}" for name, version in sorted(versions.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(closure()))
