"""snmpsim variation module used by lab/snmpsim.py on every record it serves (``OID|TAG:vigie|VALUE``).

- A SET stores the new value for that OID of that data file (the stock ``writecache`` module keys
  its cache by OID only, so setting one device's ifOperStatus would change every device's).
- While ``<data file>.down`` exists the module raises NoDataNotification, which makes snmpsim drop
  the request without answering: the device is "taken away" exactly as a dead one looks on the wire.

snmpsim exec()s this file and injects ``moduleContext`` / ``agentContext`` (one dict per data
file) / ``recordContext`` as globals.
"""

import os

from snmpsim.error import NoDataNotification


def init(**context):
    pass


def variate(oid, tag, value, **context):
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    if os.path.exists(context["dataFile"] + ".down"):
        raise NoDataNotification()
    if context["setFlag"]:
        agentContext[oid] = context["origValue"]  # noqa: F821 - injected by snmpsim
        return oid, tag, context["origValue"]
    return oid, tag, agentContext.get(oid, value)  # noqa: F821 - injected by snmpsim


def shutdown(**context):
    pass
