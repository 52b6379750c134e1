"""The HTTP clients a command needs, built from its settings.

Each gets its own session, the settings' credentials and read timeout, the stop
event and a retry policy bounded by a budget in seconds.
"""

from __future__ import annotations

import threading

from openai_cost_pusher.config import Settings
from openai_cost_pusher.push import VmClient, auth_header
from openai_cost_pusher.transport import Timeouts, make_session, retry_policy
from openai_cost_pusher.vmread import VmReader


def vm_reader(
    settings: Settings, root: str, stop: threading.Event, budget_s: float
) -> VmReader:
    """Return a reader of `root` with the push URL's credentials."""
    return VmReader(
        make_session(),
        root,
        authorization=auth_header(
            settings.vm_username, settings.vm_password, settings.vm_bearer_token
        ),
        timeouts=Timeouts.from_read(settings.http_timeout_s),
        stop=stop,
        retrying=lambda: retry_policy(budget_s, stop),
    )


def vm_client(settings: Settings, stop: threading.Event, budget_s: float) -> VmClient:
    """Return a client that pushes to `settings.push_url` with its credentials."""
    return VmClient(
        make_session(),
        settings.push_url,
        authorization=auth_header(
            settings.vm_username, settings.vm_password, settings.vm_bearer_token
        ),
        timeouts=Timeouts.from_read(settings.http_timeout_s),
        stop=stop,
        retrying=lambda: retry_policy(budget_s, stop),
    )
