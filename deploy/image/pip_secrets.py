"""Write the host's pip configuration for an image build: `pip_secrets.py OUT_DIR`.

OUT_DIR/pip.conf holds the index settings pip uses on this host (index-url, extra-index-url,
trusted-host, proxy, timeout, retries), from pip's own view of its files and PIP_* variables,
keeping only what makes sense inside a build (http(s) URLs, no local paths), plus HTTPS_PROXY.
OUT_DIR/ca.pem is the CA bundle pip trusts here (a proxy that re-signs TLS needs it), else empty.
deploy/image/build.sh passes both as build secrets; deploy/install.sh reads them. Standard library
only: it runs with the host's python3.
"""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

_URL_KEYS = ("index-url", "extra-index-url")
_PLAIN_KEYS = ("trusted-host", "timeout", "default-timeout", "retries", "proxy")


def pip_settings() -> dict[str, str]:
    """pip's effective settings on this host: {key: value}, later files and env winning."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    settings: dict[str, str] = {}
    for line in done.stdout.splitlines():
        name, sep, raw = line.partition("=")
        if not sep:
            continue
        key = name.rsplit(".", 1)[-1]
        try:
            settings[key] = str(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            settings[key] = raw.strip("'\"")
    return settings


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings = pip_settings()
    config = configparser.ConfigParser()
    config["global"] = {}
    for key in _URL_KEYS:
        urls = [u for u in settings.get(key, "").split() if u.startswith(("http://", "https://"))]
        if urls:
            config["global"][key] = " ".join(urls)
    for key in _PLAIN_KEYS:
        if settings.get(key):
            config["global"][key] = settings[key]
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy and "proxy" not in config["global"]:
        config["global"]["proxy"] = proxy
    with (out / "pip.conf").open("w") as handle:
        config.write(handle)
    ca = settings.get("cert") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if ca and Path(ca).is_file():
        shutil.copyfile(ca, out / "ca.pem")
    else:
        (out / "ca.pem").write_bytes(b"")
    os.chmod(out / "pip.conf", 0o600)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
