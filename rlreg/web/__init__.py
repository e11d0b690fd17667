"""``rlreg serve``: web pages and a JSON API over a ``registry.Registry``, a thin layer like the CLI.

``create_app(registry, allow_writes=False, tokens=None)`` builds the Starlette app; ``serve(...)``
(``rlreg.web.server``) runs it on uvicorn.
"""

from rlreg.web.app import create_app
from rlreg.web.auth import Tokens, parse_tokens

__all__ = ["Tokens", "create_app", "parse_tokens"]
