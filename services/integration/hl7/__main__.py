"""`python -m services.integration.hl7`: the HL7 v2 listener (part `integration-mllp`)."""

from __future__ import annotations

import asyncio
import gc
import logging

from services.integration.hl7.listener import PART, Listener, heartbeat
from shared.db import make_engine, make_sessionmaker
from shared.outbox import install_stop_signals
from shared.settings import Settings, get_settings
from shared.telemetry import setup_telemetry

logger = logging.getLogger("services.integration.hl7")


async def run(settings: Settings) -> None:
    setup_telemetry(PART, settings)
    engine = make_engine(settings, "integration", pool_size=10)
    listener = Listener(settings, make_sessionmaker(engine))
    stop = asyncio.Event()
    install_stop_signals(stop)
    server = await listener.start()
    # what start-up built (modules, table and event models, the engine) is never garbage: kept
    # out of the collector's full passes, which otherwise walked all of it every few thousand
    # messages (python-hl7 allocates ~100 containers a message) and held the ACKs meanwhile:
    # ACK p99 44-48 -> 15-18 ms in bench/integration.py (issue #17)
    gc.freeze()
    tls = "TLS" if settings.integration_mllp_tls_cert_path else "plain TCP"
    for sock in server.sockets:
        logger.info("HL7 v2 listener on %s (MLLP, %s)", sock.getsockname(), tls)
    beat = asyncio.create_task(heartbeat(settings.run_dir / f"{PART}.alive", stop))
    try:
        await stop.wait()
    finally:
        await listener.stop()
        await beat
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(get_settings()))


if __name__ == "__main__":
    main()
