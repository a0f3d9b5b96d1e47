"""Ticket receivers: the built-in ticket log, GLPI (legacy and high-level APIs), an ITSM's mail
gateway, a signed webhook and a Teams channel, declared in alerting/ticketing/plugins.py.

The contract they implement is :class:`agent.api.TicketConnector` (as Alertmanager's Jira
notifier): the ticket carries the alert's idempotency key (``Alert.idempotency_key``) in its title
and body, ``find_open`` looks it up among open tickets before anything is created, ``solve`` is
idempotent (solving a ticket already solved is not an error). What a ticket says, in the client's
language and timezone, is built by :mod:`agent.api.ticket_text`.
"""
