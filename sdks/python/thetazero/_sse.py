"""A minimal Server-Sent Events parser (WHATWG HTML "event stream
interpretation"), fed one line at a time. It keeps `last_event_id` across
events so a reconnect can send it as Last-Event-ID."""

from typing import List, NamedTuple, Optional


class SSEMessage(NamedTuple):
    type: str
    data: str
    id: str


class SSEParser:
    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry_ms: Optional[int] = None
        self._event = ""
        self._data: List[str] = []
        self._saw_data = False

    def feed_line(self, line: str) -> List[SSEMessage]:
        """Feeds one line without its line ending; returns the events it completes."""
        if line == "":
            out = []
            if self._saw_data:
                out.append(SSEMessage(self._event or "message", "\n".join(self._data), self.last_event_id))
            self._event, self._data, self._saw_data = "", [], False
            return out
        if line.startswith(":"):  # comment, e.g. ": keepalive"
            return []
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._saw_data = True
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return []

    def feed(self, text: str) -> List[SSEMessage]:
        """Feeds complete lines of text (any line endings)."""
        out: List[SSEMessage] = []
        for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:-1]:
            out.extend(self.feed_line(line))
        return out
