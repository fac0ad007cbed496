"""robots.txt: whether a URL may be fetched, and the ``Crawl-delay`` a site asks for.

The standard library's parser decides allow/disallow; ``crawl_delay`` is read here because the standard library
accepts whole seconds only, while sites also write ``Crawl-delay: 0.5``.
"""

from __future__ import annotations

import urllib.robotparser


def parse_robots(url: str, text: str, user_agent: str) -> tuple[urllib.robotparser.RobotFileParser, float | None]:
    """The parsed robots.txt found at ``url`` and its crawl delay for ``user_agent`` (None when it sets none)."""
    lines = text.splitlines()
    rp = urllib.robotparser.RobotFileParser(url)
    rp.parse(lines)
    rp.modified()
    return rp, crawl_delay(lines, user_agent)


def disallow_all(url: str) -> urllib.robotparser.RobotFileParser:
    """A parser that refuses everything (robots.txt unreachable: RFC 9309 says do not crawl)."""
    rp = urllib.robotparser.RobotFileParser(url)
    rp.disallow_all = True
    return rp


def crawl_delay(lines: list[str], user_agent: str) -> float | None:
    """The ``Crawl-delay`` robots.txt sets for ``user_agent`` (its own group first, else ``*``), in seconds.

    The standard library reads whole seconds only; sites write ``0.5`` too.
    """
    token = user_agent.split("/", 1)[0].lower()
    found: dict[str, float] = {}
    agents: list[str] = []
    in_rules = False
    for raw in lines:
        key, _, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if in_rules:
                agents, in_rules = [], False
            agents.append(value.lower())
        elif key:
            in_rules = True
            if key == "crawl-delay":
                try:
                    seconds = float(value)
                except ValueError:
                    continue
                for agent in agents:
                    mine = bool(agent) and agent != "*" and (agent in token or token in agent)
                    found.setdefault("me" if mine else agent, seconds)
    return found.get("me", found.get("*"))


