"""The rendered Deployment's container starts and serves, with its own mounts, user and
read-only root, as the kubelet would run it.

No cluster runs here, so the pod is emulated in a private mount namespace (unshare):
every volume is bind-mounted where the container mounts it, under one folder that
stands for the container's root (a ConfigMap laid out as the kubelet lays it out, and
read-only when the manifest says so; an emptyDir writable and owned by the pod's
fsGroup); the model store is bound read-only at the image's working folder; the whole
machine's root is then remounted read-only when the manifest asks for a read-only
root; and the container's command runs as the manifest's user and group. Paths in the
container's environment are moved under the stand-in root, and its port onto a free
loopback port. The admin token is the Secret's file, readable by the pod's group only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfserve_common.processes import free_port, wait_or_kill
from service.store import Dataset
from tests.deploy.test_manifests import containers, objects
from tests.utils import ADMIN, ADMIN_TOKEN, body, eventually
from tests.utils.mounts import can_mount, config_map_volume
from tests.utils.stack import ROOT

pytestmark = pytest.mark.integration

IMAGE_WORKDIR = "/opt/perfserve"  # the Dockerfile's WORKDIR, where the store sits
READY_TIMEOUT_S = 120.0
FOLLOW_BOUND_S = 30.0
"""Generous against the split poll (0.2 s) on a loaded 2-core machine."""


@dataclass
class Pod:
    """The emulated pod: where each volume's source lives, and how to run the container."""

    root: Path
    sources: dict[str, Path]
    mounts: list[str]
    """Shell commands that set up the mounts, in order."""
    command: list[str]
    env: dict[str, str]
    user: tuple[int, int]
    workdir: Path


def inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def emulate(deployment: dict[str, Any], rendered: dict[tuple[str, str], Any], store: Path) -> Pod:
    """Lay out the pod's volumes and command under a new folder (see the module docstring)."""
    spec = deployment["spec"]["template"]["spec"]
    (container,) = containers(deployment)
    workspace = Path(tempfile.mkdtemp(prefix="perfserve-pod-"))
    workspace.chmod(0o755)  # the pod's user must reach the mount points through it
    root = workspace / "root"
    user = (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"])
    group = spec["securityContext"].get("fsGroup", user[1])
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    sources: dict[str, Path] = {}
    mounts: list[str] = []
    for mount in container["volumeMounts"]:
        volume, target = volumes[mount["name"]], inside(root, mount["mountPath"])
        source = sources[mount["name"]] = workspace / "volumes" / mount["name"]
        if "configMap" in volume:
            data = rendered["ConfigMap", volume["configMap"]["name"]]["data"]
            config_map_volume(source, data)
            source.chmod(0o755)
        elif "secret" in volume:  # the admin token, as `kubectl create secret` made it
            secret = volume["secret"]
            files = {item["path"]: ADMIN_TOKEN for item in secret["items"]}
            config_map_volume(source, files)  # the kubelet lays secrets out the same way
            source.chmod(0o755)
            for name in files:
                os.chown(source / name, 0, group)
                (source / name).chmod(secret.get("defaultMode", 0o644))
        else:
            assert "emptyDir" in volume, f"volume {mount['name']}: emulate its kind here"
            source.mkdir(parents=True)
            os.chown(source, -1, group)
            source.chmod(0o2775)  # as the kubelet makes an emptyDir for an fsGroup
        target.mkdir(parents=True)
        mounts.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
        if mount.get("readOnly"):
            mounts.append(f"mount -o remount,bind,ro {shlex.quote(str(target))}")
    workdir = inside(root, IMAGE_WORKDIR)
    image_store = workspace / "image" / "model_store"  # the image's copy, readable by all
    shutil.copytree(store, image_store)
    for path in [image_store.parent, image_store, *image_store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (workdir / "model_store").mkdir(parents=True)
    for verb in ("mount --bind", "mount -o remount,bind,ro"):
        source = f"{shlex.quote(str(image_store))} " if verb == "mount --bind" else ""
        mounts.append(f"{verb} {source}{shlex.quote(str(workdir / 'model_store'))}")
    if container["securityContext"].get("readOnlyRootFilesystem"):
        mounts.append("mount -o remount,bind,ro /")
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    for name, value in env.items():
        if any(value.startswith(m["mountPath"]) for m in container["volumeMounts"]):
            env[name] = str(inside(root, value))
    tmp = next((m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"), None)
    if tmp is not None:
        env["TMPDIR"] = str(inside(root, "/tmp"))
    command = [*container.get("command", []), *container.get("args", [])]
    bin_folder = Path(sys.executable).parent
    command[0] = shutil.which(command[0], path=str(bin_folder)) or command[0]
    return Pod(root, sources, mounts, command, env, user, workdir)


@pytest.fixture
def pod(store: Path) -> Iterator[Pod]:
    if not (can_mount() and shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs root, unshare(1), setpriv(1) and mount(8) to emulate the pod")
    rendered = objects("base")
    emulated = emulate(rendered["Deployment", "perfserve"], rendered, store)
    yield emulated
    shutil.rmtree(emulated.root.parent, ignore_errors=True)


def start(pod: Pod, port: int, log: Path) -> subprocess.Popen[bytes]:
    """The container's command in the emulated pod; its output in `log`."""
    uid, gid = pod.user
    script = " && ".join(
        [*pod.mounts, f'cd {shlex.quote(str(pod.workdir))}', f"exec setpriv --reuid {uid} "
         f'--regid {gid} --clear-groups -- "$@"']
    )  # fmt: skip
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),  # the sources stand for the image's installed package
        "PYTHONDONTWRITEBYTECODE": "1",  # the image's ENV
        **pod.env,
        "PERFSERVE_HOST": "127.0.0.1",
        "PERFSERVE_PORT": str(port),
    }
    with log.open("wb") as output:
        return subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "pod", *pod.command],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def ready() -> bool:
        assert process.poll() is None, (
            f"the container exited {process.returncode}:\n{log.read_text()}"
        )
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    eventually(ready, READY_TIMEOUT_S, every_s=0.2, what=lambda: f"not ready:\n{log.read_text()}")


def test_the_deployment_starts_as_rendered_and_follows_its_config_map(
    pod: Pod, holdout: Dataset, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "container.log"
    url = f"http://127.0.0.1:{port}"
    process = start(pod, port, log)
    try:
        wait_ready(url, process, log)
        assert httpx.post(f"{url}/predict", json=body(holdout.features[:2])).status_code == 200
        shown = httpx.get(f"{url}/traffic").json()
        split_volume = next(
            name for name in pod.sources if (pod.sources[name] / "traffic.json").exists()
        )
        assert shown["weights"] == {"onnx_fp32": 1.0}
        change = {"weights": {"onnx_int8": 1}}
        refused = httpx.put(f"{url}/traffic", json=change, headers=ADMIN)
        assert refused.status_code == 409 and "ConfigMap" in refused.json()["detail"]
        plan = {"baseline": "onnx_fp32", "candidate": "onnx_int8"}
        refused = httpx.post(f"{url}/rollout/start", json=plan, headers=ADMIN)
        assert refused.status_code == 409, refused.text
        # `kubectl apply` of an edited ConfigMap: the kubelet swaps the mounted file.
        config_map_volume(
            pod.sources[split_volume],
            {"traffic.json": '{"version": 2, "weights": {"onnx_int8": 1}}'},
        )
        eventually(
            lambda: httpx.get(f"{url}/traffic").json()["version"] == 2,
            FOLLOW_BOUND_S,
            what=lambda: f"the ConfigMap's change was not followed:\n{log.read_text()}",
        )
        assert httpx.get(f"{url}/traffic").json()["weights"] == {"onnx_int8": 1.0}
        process.send_signal(signal.SIGTERM)
        wait_or_kill(process, 30)
        assert process.returncode == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
