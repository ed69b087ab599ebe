"""A real SMTP server on loopback (aiosmtpd) that LearnHub's mail goes to in these tests."""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.harness import free_port


class Inbox:
    """Every message the server accepted, in arrival order; tests wait on it (no sleeps)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """aiosmtpd's hook: keep the message."""
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """Messages for ``address`` so far."""
        with self.changed:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(
        self, address: str, match: Callable[[EmailMessage], bool], timeout: float = 60
    ) -> EmailMessage:
        """The first message for ``address`` that ``match`` accepts, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for message in self.messages:
                    if message["To"] == address and match(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m["To"], m["Subject"]) for m in self.messages]
                    raise AssertionError(f"no matching mail for {address}; got {seen}")
                self.changed.wait(left)


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<port>; :meth:`stop` and :meth:`start` make it go down and up."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """A running SMTP server for the module."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def text_of(message: EmailMessage) -> str:
    """The plain-text part."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "mail without a text part"
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    """The HTML part."""
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "mail without an HTML part"
    return str(part.get_content())


def links_in(message: EmailMessage) -> list[str]:
    """The http(s) links of the plain-text part, in order."""
    return re.findall(r"https?://\S+", text_of(message))
