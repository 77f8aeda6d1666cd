"""Latency of ``auth_mode = keystone`` beside ``noauth``.

Starts a real Keystone (the cached virtualenv of
``tests.functional.peers``), then two alarmer API servers on temporary
SQLite files, one in each mode, and times over real HTTP (one
keep-alive ``requests`` session, sequential requests) ``GET
/v2/alarms/<id>`` and ``POST /v1/metric/<id>/measures`` (one point)
after a warm-up, so that keystonemiddleware's token cache is warm; both
servers run at once and the rounds alternate between them.
Prints p50/p90/p99 in milliseconds per mode, the CPU milliseconds the
process (client and server threads) spent per request, and the
differences between the modes: on a loaded machine the wall-clock
latencies mostly measure the wait for a core, the CPU time much less.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_keystone.py -n 500
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator

import requests

from alarmer import conf as aconf
from alarmer import runtime
from api.server import ApiServer
from tests.functional.peers import Keystone, running_keystone

SERVICE_PASSWORD = "bench-service-pw"
NOAUTH = {"X-User-Id": "u", "X-Project-Id": "p", "X-Roles": "member"}


@contextlib.contextmanager
def alarmer(root: pathlib.Path, extra: str) -> Iterator[str]:
    """An API server configured with *extra* INI text; its URL."""
    root.mkdir()
    path = root / "alarmer.conf"
    path.write_text(
        f"[DEFAULT]\ndata_dir = {root / 'data'}\n[api]\nport = 0\n{extra}"
    )
    rt = runtime.build(aconf.make_conf(config_files=[str(path)]), migrate=True)
    server = ApiServer(rt)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        rt.close()


Call = Callable[[], requests.Response]


def timings(call: Call, n: int) -> tuple[list[float], float]:
    """Milliseconds of *n* calls, and the process's CPU milliseconds
    they took."""
    out = []
    cpu = time.process_time()
    for _ in range(n):
        start = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return out, (time.process_time() - cpu) * 1000


def prepare(url: str, headers: dict[str, str]) -> dict[str, Call]:
    """The two timed calls against the server at *url*, warmed up."""
    http = requests.Session()
    http.headers.update(headers)
    metric = http.post(f"{url}/v1/metric", json={"name": "cpu"})
    metric.raise_for_status()
    mid = metric.json()["id"]
    alarm = http.post(
        f"{url}/v2/alarms",
        json={
            "name": "bench",
            "type": "gnocchi_resources_threshold",
            "gnocchi_resources_threshold_rule": {
                "metric": "cpu", "resource_id": "r1",
                "resource_type": "generic", "threshold": 1,
                "aggregation_method": "mean", "granularity": 60,
            },
        },
    )  # fmt: skip
    alarm.raise_for_status()
    aid = alarm.json()["alarm_id"]
    counter = iter(range(10**9))

    def push() -> requests.Response:
        point = [{"timestamp": 1_700_000_000 + next(counter), "value": 1.0}]
        return http.post(f"{url}/v1/metric/{mid}/measures", json=point)

    calls: dict[str, Call] = {
        "GET /v2/alarms/<id>": lambda: http.get(f"{url}/v2/alarms/{aid}"),
        "POST /v1/metric/<id>/measures": push,
    }
    for call in calls.values():
        for _ in range(50):
            call().raise_for_status()
    return calls


def keystone_conf(ks: Keystone, extra: str = "") -> str:
    """The INI text of keystone mode against *ks*, with *extra*
    ``[keystone_authtoken]`` lines."""
    return (
        textwrap.dedent(
            f"""
        auth_mode = keystone
        [keystone_authtoken]
        www_authenticate_uri = {ks.url}/v3
        auth_url = {ks.url}/v3
        auth_type = password
        username = alarmer
        password = {SERVICE_PASSWORD}
        project_name = service
        user_domain_id = default
        project_domain_id = default
        """
        )
        + extra
    )


def pct(values: list[float], q: float) -> float:
    """The *q*-quantile of *values*."""
    return statistics.quantiles(values, n=100, method="inclusive")[
        int(q * 100) - 1
    ]


def main() -> None:
    """Run and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="include_service_catalog = false in [keystone_authtoken]",
    )
    args = parser.parse_args()
    extra = "include_service_catalog = false\n" if args.no_catalog else ""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "ks").mkdir()
        with running_keystone(root / "ks") as ks:
            ks.user("alarmer", SERVICE_PASSWORD, "service", ["service"])
            ks.user("alice", "alice-pw", "demo", ["member"])
            token, _ = ks.token("alice", "alice-pw", "demo")
            with (
                alarmer(root / "noauth", "auth_mode = noauth\n") as plain,
                alarmer(
                    root / "keystone", keystone_conf(ks, extra)
                ) as guarded,
            ):
                calls = {
                    "noauth": prepare(plain, NOAUTH),
                    "keystone": prepare(guarded, {"X-Auth-Token": token}),
                }
                results: dict[str, dict[str, list[float]]] = {
                    mode: {name: [] for name in calls[mode]} for mode in calls
                }
                cpu = {mode: dict.fromkeys(calls[mode], 0.0) for mode in calls}
                # Rounds alternate the modes, so that both see the same
                # load of a shared machine.
                rounds = 10
                for _ in range(rounds):
                    for mode, named in calls.items():
                        for name, call in named.items():
                            spent, used = timings(call, args.n // rounds)
                            results[mode][name].extend(spent)
                            cpu[mode][name] += used / args.n
    print(
        f"{'request':32} {'mode':9} {'p50':>7} {'p90':>7} {'p99':>7} "
        f"{'cpu/req':>7}"
    )
    for name in results["noauth"]:
        rows = {}
        for mode in ("noauth", "keystone"):
            values = results[mode][name]
            rows[mode] = (statistics.median(values), cpu[mode][name])
            print(
                f"{name:32} {mode:9} {rows[mode][0]:7.2f} "
                f"{pct(values, 0.9):7.2f} {pct(values, 0.99):7.2f} "
                f"{rows[mode][1]:7.2f}"
            )
        p50 = rows["keystone"][0] - rows["noauth"][0]
        used = rows["keystone"][1] - rows["noauth"][1]
        print(f"{name:32} {'delta':9} {p50:7.2f} {'':7} {'':7} {used:7.2f}")


if __name__ == "__main__":
    main()
