"""What may leave the machine: `translate seed` sends text to the teacher only after de-identification.

teacher.deid: true (default)   every segment is de-identified (doctorkit.deid, surrogate style: realistic
                               fakes the teacher translates like any name or number) before it is sent;
                               the cache key and pairs.jsonl hold that text, never the original
teacher.deid: false            only for a teacher on this machine (127.0.0.1 / localhost / ::1), or with
                               teacher.allow_identifiable: true, which prints a warning
"""
from __future__ import annotations

import ipaddress
import sys
from typing import Callable
from urllib.parse import urlparse

from doctorkit.errors import DoctorKitError


def is_loopback(base_url: str) -> bool:
    host = (urlparse(base_url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def outgoing_filter(cfg, seed: int) -> tuple[Callable[[list[dict], str], list[dict]], object | None]:
    """(function (messages, record id) -> messages that may be sent, the Deidentifier or None); a one-line
    error when identifiable text would go to a remote teacher without teacher.allow_identifiable.
    Whole records are scrubbed (not segments), so one person gets one fake across the record."""
    if cfg.deid:
        from doctorkit.deid import Deidentifier
        scrubber = Deidentifier("surrogate", seed=seed)
        return scrubber.record, scrubber
    if not is_loopback(cfg.base_url):
        if not cfg.allow_identifiable:
            raise DoctorKitError(f"teacher.deid is false but the teacher {cfg.base_url} is not on this machine: "
                                 f"names, phone and ID numbers would leave it; set teacher.deid: true, or "
                                 f"teacher.allow_identifiable: true if the data holds no personal information")
        print(f"warning: sending text to {cfg.base_url} WITHOUT de-identification (teacher.allow_identifiable: "
              f"true); make sure the data holds no personal information", file=sys.stderr)
    return (lambda messages, record_id: messages), None
