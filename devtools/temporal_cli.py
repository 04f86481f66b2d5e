"""`waymark temporal ...`: the Temporal payload keyring (shared/temporal_codec.py).

- `waymark temporal rotate-key` makes a new key current; the older keys stay in the ring so
  histories written with them stay readable. Running processes see the change at their next
  payload (they watch the file), so no restart is needed.
- `waymark temporal keys` lists the key ids, the current one marked (never the keys).

In a deployment the keyring is a mounted secret: rotate by writing the secret with the same
tool (`WAYMARK_TEMPORAL_CODEC_KEYS_PATH=./ring.json waymark temporal rotate-key`) and updating
the secret; mounted secrets are updated in place, which the processes notice.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared.settings import Settings


def cmd_temporal(args: argparse.Namespace, s: Settings) -> int:
    from shared.temporal_codec import KeyringError, read_keyring, rotate_keyring

    path = s.temporal_codec_keys_file()
    try:
        if args.action == "rotate-key":
            old, new = rotate_keyring(path)
            print(f"{path}: key {new} is current; {old} and older keys kept for reading")
            return 0
        ring = read_keyring(path)
    except KeyringError as exc:
        print(exc, file=sys.stderr)
        return 1
    for kid in sorted(ring.keys):
        print(f"{kid}{'  (current)' if kid == ring.current else ''}")
    return 0


def add_parsers(sub: Any) -> None:
    t = sub.add_parser(
        "temporal", help="the Temporal payload keyring: rotate its key, list its key ids"
    )
    t.add_argument("action", choices=["rotate-key", "keys"])
    t.set_defaults(fn=cmd_temporal)
