"""What the API answers when a request is wrong: a status and a message for `{"error": ...}`."""

from __future__ import annotations


class ApiError(Exception):
    """A request the API refuses (400: malformed; 404: nothing there); the message is shown to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
