"""Loaded by every Python process of the offline test (PYTHONPATH): records each attempt to reach a host that
is not this machine, even one the caller catches and ignores, in the file NETWORK_ATTEMPT_LOG names.

The network namespace already makes such attempts fail; this hook makes them visible, so a library that
quietly tries a CDN or a telemetry endpoint and swallows the error still fails the test.
"""
import os
import sys

LOG = os.environ.get("NETWORK_ATTEMPT_LOG")
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "", None}


def _host(value):
    return value.decode() if isinstance(value, bytes) else value


def _record(event, target):
    with open(LOG, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()} {' '.join(sys.argv)[:120]}: {event} {target!r}\n")


def _hook(event, args):
    if event == "socket.getaddrinfo" and _host(args[0]) not in LOCAL:
        _record(event, args[:2])
    elif event in ("socket.connect", "socket.sendto") and isinstance(args[-1], tuple) and _host(args[-1][0]) not in LOCAL:
        _record(event, args[-1])


if LOG:
    sys.addaudithook(_hook)
