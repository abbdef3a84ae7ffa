"""``aurora-kit emulate``: an emulated AWS (a moto server) whose RDS clusters are real local clusters, so the aws
runbooks run without an account: ``AWS_ENDPOINT_URL`` for the API, ``parameters/aws-emulated.yaml`` for the rest.

Needs the ``emulate`` extra (``pip install 'aurora_kit[emulate]'``: moto 5.2.x). Runs until Ctrl-C / SIGTERM, then
deletes every cluster it made (its state lives only as long as it does).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from aurora_kit.errors import InvalidParameterError
from aurora_kit.report import command_name

DEFAULT_HOME = Path(".aurora-kit-emulator")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulate",
        help="an emulated AWS with a real data plane, to try the aws runbooks without an account",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help=f"state, clusters, CA (default {DEFAULT_HOME})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4566, help="AWS API port (AWS_ENDPOINT_URL; default 4566)")
    parser.add_argument("--db-port", type=int, default=15432, help="data-plane port every endpoint leads to")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--credentials",
        action="append",
        default=[],
        metavar="ACCESS_KEY_ID:SECRET",
        help="credentials IAM auth tokens may be signed with (besides testing:testing and the environment's)",
    )
    parser.add_argument("--restorable-lag", type=float, default=2.0, help="how far LatestRestorableTime trails, s")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every emulated operation")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import moto  # noqa: F401 - the emulate extra; imported lazily by the emulator

        from aurora_kit.emulator import Emulator, EmulatorConfig
    except ModuleNotFoundError as exc:  # moto and cryptography are the emulate extra
        raise InvalidParameterError(
            "emulate", None, f"needs the emulate extra ({exc.name} is missing): pip install 'aurora_kit[emulate]'"
        ) from exc
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    credentials = {}
    for item in args.credentials:
        key, sep, secret = item.partition(":")
        if not sep or not key or not secret:
            raise InvalidParameterError("--credentials", item, "must be ACCESS_KEY_ID:SECRET")
        credentials[key] = secret
    config = EmulatorConfig(
        home=args.home,
        host=args.host,
        port=args.port,
        db_port=args.db_port,
        region=args.region,
        credentials=credentials,
        restorable_lag_s=args.restorable_lag,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator = Emulator(config).start()
    info = emulator.info()
    print(
        f"aurora-kit emulate: AWS API {info['aws_endpoint_url']} ({info['region']}), data plane "
        f"{info['data_plane']} (TLS; CA {info['ca_bundle']})\n"
        f"  export AWS_ENDPOINT_URL={info['aws_endpoint_url']} AWS_ACCESS_KEY_ID=testing "
        f"AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={info['region']}\n"
        f"  {command_name()} run --all -f parameters/aws-emulated.yaml -p confirm=true "
        "-p teardown.confirm_cluster_id=ak-emulated\n"
        "Ctrl-C stops it and deletes its clusters and snapshots.",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        print("aurora-kit emulate: stopping; deleting its clusters", flush=True)
        emulator.stop()
    return 0
