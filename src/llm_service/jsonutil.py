"""JSON encoding and decoding with orjson (several times faster than the standard library).

Datetimes are written as ISO 8601 in UTC with a `Z`, as the contract has them.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

loads = orjson.loads

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


class JSONResponse(StarletteJSONResponse):
    """The service's JSON response class: orjson, compact, UTF-8. (A JSONResponse subclass, so
    FastAPI documents the routes' answers with their models.)"""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_OPTIONS)
