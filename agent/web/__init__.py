"""The web app served by `vigie run` at ``agent.web_listen`` (issue 12): the NOC wall, each client's
read-only pages for its DSI, exports, the JSON API, ``/metrics`` and ``/healthz``.

``app`` builds the Starlette app and holds the one scope check; ``auth`` the users, sessions'
CSRF tokens and the login limit; ``pages`` and ``exports`` what the pages and downloads show,
from the read-only views; ``server`` runs it under uvicorn in the agent's event loop.
"""
