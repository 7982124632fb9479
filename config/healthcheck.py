"""The web container's healthcheck (docker-compose.yml): does the web process answer /health for a
host it serves?

    python -m config.healthcheck [--port 8000]

Django refuses a Host that is not in ALLOWED_HOSTS (400, and a logged traceback), so the request
names the first host of ALLOWED_HOSTS, as a browser would. 200 (ok) and 503 (a dependency or the
model servers are down: /health's own answer) both say the web process serves: exit 0. Anything
else, or no answer, exits 1. Standard library only: it runs every 30 s without starting Django."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def served_host(allowed_hosts: str) -> str:
    """A host name the server takes: the first of ALLOWED_HOSTS (``.example.org`` → ``example.org``,
    ``*`` → ``localhost``)."""
    first = next((host.strip() for host in allowed_hosts.split(",") if host.strip()), "localhost")
    return "localhost" if first == "*" else first.lstrip(".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    host = served_host(os.environ.get("ALLOWED_HOSTS", ""))
    request = urllib.request.Request(f"http://127.0.0.1:{args.port}/health", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        print(f"/health did not answer: {error}", file=sys.stderr)
        return 1
    print(f"/health answered {status} for Host {host}")
    return 0 if status in (200, 503) else 1


if __name__ == "__main__":
    raise SystemExit(main())
