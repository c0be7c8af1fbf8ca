"""Write an OCI runtime config.json for runc from a built image's own settings.

usage: runc_config.py IMAGE_CONFIG_JSON ROOTFS BUNDLE_DIR [KEY=VALUE ...]
IMAGE_CONFIG_JSON is `buildah inspect --type image` output. The container gets the pod's security
settings (deploy/k8s): read-only root, a tmpfs /tmp, all capabilities dropped, no_new_privs, the
image's numeric USER, no rlimits set (the host's apply), and network/pid/ipc/uts/mount namespaces
of its own: only loopback, so nothing but the test reaches it. KEY=VALUE pairs are added to the
image's environment. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_TMPFS = ["nosuid", "nodev", "mode=1777", "size=65536k"]


def config(image: dict, rootfs: str, extra_env: list[str]) -> dict:
    settings = image["Docker"]["config"]
    user, _, group = settings["User"].partition(":")
    assert user.isdigit() and int(user) > 0, f"USER {settings['User']!r} is not numeric non-root"
    return {
        "ociVersion": "1.0.2-dev",
        "root": {"path": rootfs, "readonly": True},
        "hostname": "rerankd",
        "process": {
            "terminal": False,
            "user": {"uid": int(user), "gid": int(group or user)},
            "args": [*(settings.get("Entrypoint") or []), *(settings.get("Cmd") or [])],
            "env": [*settings.get("Env", []), *extra_env],
            "cwd": settings.get("WorkingDir") or "/",
            "capabilities": {
                "bounding": [],
                "effective": [],
                "inheritable": [],
                "permitted": [],
                "ambient": [],
            },
            "noNewPrivileges": True,
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["noexec", *_TMPFS]},
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": _TMPFS},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def main(argv: list[str]) -> None:
    image_json, rootfs, bundle, *extra_env = argv
    image = json.loads(Path(image_json).read_text())
    Path(bundle).mkdir(parents=True, exist_ok=True)
    Path(bundle, "config.json").write_text(json.dumps(config(image, rootfs, extra_env), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
