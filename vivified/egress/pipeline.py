"""Our addons as one mitmproxy addon: each event runs only the addons that handle it, in order.

mitmproxy's addon manager (`AddonManager.trigger_event`) asks every addon in its chain about
every event, and each ask costs the same whether or not the addon handles it: a `safecall`
context manager, an `invoke_addon` coroutine, a generator walking the addon's children, a
`getattr`, and the hook's arguments rebuilt from its dataclass fields. Every flow event is then
followed by an `update` event asked of the whole chain again. With the egress proxy's fifteen
small addons in the chain, that dispatch was about a fifth of the proxy's CPU under load.

`Pipeline` takes the place of those fifteen in mitmproxy's chain. At construction it looks up,
for every mitmproxy hook, the addons that define it, in their order, and defines that hook on
itself only when one does: mitmproxy finds no method for the others (`update` among them) and
skips the pipeline for them. A hook that no addon awaits stays a plain function (mitmproxy
calls `load` and `configure` synchronously); one with an async member awaits each member's
result where it returns one. Like mitmproxy's `safecall`, an addon's exception is logged and
the next addon still runs; `AddonHalt` and `OptionsError` stop the event as they would.

The addons keep their own names and state and need no change: each is still asked with the
same arguments, in the same order relative to the others, as when it sat in the chain itself.
The children are held in `stages`, not `addons`, which mitmproxy would walk and call again.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks
from mitmproxy.proxy import layers, server_hooks

log = logging.getLogger(__name__)
# Their import registers hooks in `hooks.all_hooks`: `load`; http, tls, tcp...; connections.
_REGISTERING_HOOKS = (addonmanager, layers, server_hooks)

Handler = Callable[..., Any]
_STOPS = (exceptions.AddonHalt, exceptions.OptionsError)


def hook_names() -> list[str]:
    """Every event mitmproxy 11 can ask an addon about."""
    return sorted(hooks.all_hooks)


def handlers(stages: Iterable[Any], name: str) -> list[Handler]:
    """The bound `name` hooks of `stages`, in their order (as mitmproxy would find them)."""
    found = []
    for stage in stages:
        func = getattr(stage, name, None)
        if func is not None and callable(func):
            found.append(func)
    return found


def _failed(name: str, func: Handler, exc: Exception) -> None:
    """What mitmproxy's `safecall` does with an addon's exception: log it, carry on."""
    owner = type(getattr(func, "__self__", func)).__name__
    log.error("Addon error in %s.%s: %s", owner, name, exc, exc_info=exc)


def compose(name: str, funcs: list[Handler]) -> Handler:
    """One hook that calls `funcs` in order; async only when one of them is."""
    if not any(inspect.iscoroutinefunction(f) for f in funcs):

        def run_sync(*args: Any) -> None:
            for func in funcs:
                try:
                    func(*args)
                except _STOPS:
                    raise
                except Exception as exc:
                    _failed(name, func, exc)

        run_sync.__name__ = name
        return run_sync

    async def run_async(*args: Any) -> None:
        for func in funcs:
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except _STOPS:
                raise
            except Exception as exc:
                _failed(name, func, exc)

    run_async.__name__ = name
    return run_async


class Pipeline:
    """A mitmproxy addon that stands for `stages` (our addons, in chain order)."""

    name = "vivified-egress"

    def __init__(self, stages: Iterable[Any]) -> None:
        self.stages: tuple[Any, ...] = tuple(stages)
        self.hooks: dict[str, int] = {}  # hook name -> how many stages handle it
        for hook in hook_names():
            funcs = handlers(self.stages, hook)
            if funcs:
                setattr(self, hook, compose(hook, funcs))
                self.hooks[hook] = len(funcs)

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(type(s).__name__ for s in self.stages)})"
