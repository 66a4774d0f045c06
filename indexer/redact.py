"""Secrets out of what is shown: node and feed URLs, database DSNs (pure).

Every message, log line, metric label and config dump that names a URL or a DSN
passes it through here first; nothing else in the indexer masks credentials.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_KEY_LIKE = re.compile(r"(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}")  # an API key in a path or query
_PASSWORD = re.compile(r"(?i)(password\s*=\s*)\S+")  # a libpq "key=value" DSN's password


def redact_url(url: str) -> str:
    """Return `url` with userinfo, query values and key-like path segments replaced by `***`.

    For RPC and feed URLs (and any DSN written as a URL). A string without `://` is a
    file path or a libpq "key=value" DSN: only a `password=` value is masked. A URL
    that does not parse (a malformed port) is `***` as a whole.
    """
    if "://" not in url:
        return _PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "***"
    netloc = parts.netloc if "@" not in parts.netloc else "***@" + parts.netloc.rpartition("@")[2]
    path = "/".join("***" if _KEY_LIKE.fullmatch(seg) else seg for seg in parts.path.split("/"))
    items = [item.partition("=") for item in parts.query.split("&")] if parts.query else []
    query = "&".join(f"{k}=***" if v else "***" if _KEY_LIKE.fullmatch(k) else k + sep for k, sep, v in items)
    return urlunsplit((parts.scheme, netloc, path, query, "***" if parts.fragment else ""))


def redact_dsn(dsn: str) -> str:
    """A `scheme://user:password@host/...` DSN with its password hidden (the user kept); anything else as is."""
    if "://" not in dsn or "@" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    userinfo, host = rest.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else dsn
