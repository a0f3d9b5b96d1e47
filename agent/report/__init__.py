"""The client's daily SI health report and monthly report (issue 12).

``data`` gathers what a report says from a state directory opened read-only (plain dataclasses a
web page can call too); ``render`` (Jinja2 HTML for Outlook), ``charts`` (matplotlib PNG) and
``xlsx`` (openpyxl tables) draw it; ``build`` writes, mails and archives it; ``service`` schedules
it in the agent, per client in its own timezone. ``sources`` names every measurement read.
"""
