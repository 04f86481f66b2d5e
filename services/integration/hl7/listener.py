"""The HL7 v2 listener (part `integration-mllp`): an asyncio MLLP server (the `hl7` library's
`start_hl7_server` streams and framing), TLS when configured.

Each connection is read one message at a time, as MLLP senders work: a message in, its ACK out,
then the next. The ACK goes out only once `receive` has returned, that is after the commit; a
connection dropped mid-message, or a listener killed before it answered, leaves that message
unacknowledged and its sender resends it (applied once: idempotent by MSH-4 + MSH-10).

Limits (settings integration_mllp_*): a message over `max_message_bytes` is answered AR and its
connection closed (the reader never holds more than that limit of one message); a connection
silent for `idle_timeout_seconds`, or a message begun and not finished within
`frame_timeout_seconds`, is closed; at most `max_connections` connections at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

import hl7
from hl7.mllp import HL7StreamReader, HL7StreamWriter, InvalidBlockError, start_hl7_server
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.integration.group_commit import GroupCommit
from services.integration.handlers import MessageResult
from services.integration.hl7.handlers import BLANK_MSH, build_ack, receive, record_unreadable
from shared.heartbeat import write_heartbeat
from shared.settings import Settings

logger = logging.getLogger(__name__)

PART = "integration-mllp"
HEARTBEAT_SECONDS = 5.0
#: how often a waiting read looks at its timeouts
TICK_SECONDS = 1.0


class _Timeout(Exception):
    pass


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or later), or None when TLS is off."""
    cert, key = settings.integration_mllp_tls_cert_path, settings.integration_mllp_tls_key_path
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    ca = settings.integration_mllp_tls_client_ca_path
    if ca is not None:
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class Listener:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.connections: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        # messages arriving on any connection while a transaction commits share the next one
        self.group = GroupCommit(sessions, settings)

    async def start(self) -> asyncio.Server:
        s = self.settings
        self.server = await start_hl7_server(
            self._connected,
            host=s.integration_mllp_host or s.api_host,
            port=s.integration_mllp_listen_port,
            limit=s.integration_mllp_max_message_bytes,
            encoding="utf-8",
            ssl=tls_context(s),
        )
        return self.server

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; let each connection finish the message in hand, then close."""
        if self.server is not None:
            self.server.close()
        if self.connections:
            _, pending = await asyncio.wait(list(self.connections), timeout=grace)
            for task in pending:
                task.cancel()
        await self.group.close()

    def _connected(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        if len(self.connections) >= self.settings.integration_mllp_max_connections:
            logger.warning("refused a connection: %d open already", len(self.connections))
            writer.transport.abort()
            return
        task = asyncio.ensure_future(self._serve(reader, writer))
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)

    async def _serve(self, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                try:
                    block = await self._next_block(reader)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        logger.info("%s closed mid-message: that message was not applied", peer)
                    return
                except _Timeout as exc:
                    logger.info("closing %s: %s", peer, exc)
                    return
                except ValueError:
                    await self._oversized(writer)
                    return
                except InvalidBlockError:
                    logger.info("closing %s: data outside an MLLP block", peer)
                    return
                answer = await receive(self.sessions, self.settings, block, apply=self.group.apply)
                writer.writeblock(answer.ack.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            logger.info("connection %s ended: %s", peer, exc)
        except Exception:
            # the database is unreachable, say: no ACK, and the sender resends
            logger.exception("failed to apply a message from %s; closing without an ACK", peer)
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _next_block(self, reader: HL7StreamReader) -> bytes:
        """The next MLLP block, within the idle and frame timeouts. The read is given a tick at
        a time (a read cut short by its tick loses nothing: the stream keeps what it has until
        a whole block is there), and between ticks the timeouts are looked at."""
        loop = asyncio.get_running_loop()
        s = self.settings
        idle_until = loop.time() + s.integration_mllp_idle_timeout_seconds
        begun: float | None = None
        while True:
            try:
                async with asyncio.timeout(TICK_SECONDS):
                    return await reader.readblock()
            except TimeoutError:
                pass
            now = loop.time()
            # bytes of a message are waiting in the reader: the message has begun
            if reader._buffer:  # noqa: SLF001 (the stream reader has no public view of it)
                begun = begun or now
                if now - begun > s.integration_mllp_frame_timeout_seconds:
                    raise _Timeout("a message was begun and not finished in time")
            elif now > idle_until:
                raise _Timeout("idle")

    async def _oversized(self, writer: HL7StreamWriter) -> None:
        limit = self.settings.integration_mllp_max_message_bytes
        reason = f"the message is larger than {limit} bytes: not read, not kept"
        letter = await record_unreadable(self.sessions, "", reason)
        result = MessageResult(ack_code="AR", detail=reason, dead_letter_id=letter)
        ack = build_ack(hl7.parse(BLANK_MSH), result, self.settings, code="100")
        writer.writeblock(ack.encode("utf-8"))
        with contextlib.suppress(ConnectionError):
            await writer.drain()


async def heartbeat(path: Path, stop: asyncio.Event) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    while not stop.is_set():
        write_heartbeat(path)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
