"""Per-call state of a pipeline, so that one pipeline object serves many threads at once.

diffusers pipelines keep a call's guidance scale, step count and interrupt flag as attributes of the pipeline
(``self._guidance_scale = ...``) and set the scheduler's timesteps on the pipeline's scheduler. Here
[`per_call_state`] gives each call its own [`CallState`] (a copy of the scheduler and those values) in a context
variable, one per thread or asyncio task, and [`CallStateMixin`] makes ``pipe.scheduler``, ``pipe._guidance_scale``,
``pipe._num_timesteps`` and ``pipe._interrupt`` read and write the running call's state: the pipeline's code (and
its callbacks') reads as in diffusers.
"""

import copy
import functools
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from diffusers import DiffusionPipeline
from diffusers.schedulers import KarrasDiffusionSchedulers


@dataclass
class CallState:
    """What a pipeline call changes while it runs: its own scheduler (a copy of the pipeline's) and the values behind
    the pipeline's ``guidance_scale``, ``interrupt`` and ``num_timesteps`` properties."""

    pipeline: DiffusionPipeline
    scheduler: Any = None
    guidance_scale: float | None = None
    interrupt: bool = False
    num_timesteps: int | None = None


_CALL_STATE: ContextVar[CallState | None] = ContextVar("truepose_call_state", default=None)


def per_call_state(call: Callable) -> Callable:
    """Decorator of a pipeline's ``__call__``: the call runs with its own [`CallState`] (in a context variable, so
    one per thread and asyncio task), which ``pipe.scheduler`` and the call-state properties read and write while it
    runs, its callbacks included. Concurrent calls of one pipeline object then share no mutable state."""

    @functools.wraps(call)
    def isolated_call(self, *args, **kwargs):
        state = CallState(self, copy.deepcopy(self.scheduler))
        self._latest_call = state
        token = _CALL_STATE.set(state)
        try:
            return call(self, *args, **kwargs)
        finally:
            _CALL_STATE.reset(token)

    return isolated_call


class CallStateMixin:
    """The pipeline attributes a call changes, kept in the running call's [`CallState`].

    Inside a call (its callbacks included) they are that call's own; outside a call (after it, or from another
    thread) they are those of the latest call started, so setting ``pipe._interrupt = True`` from another thread stops
    the latest call.
    """

    def _call_state(self) -> CallState:
        """The state of the call running in this thread (or task); elsewhere, that of the latest call started."""
        state = _CALL_STATE.get()
        if state is not None and state.pipeline is self:
            return state
        if "_latest_call" not in self.__dict__:
            self._latest_call = CallState(self)
        return self._latest_call

    @property
    def scheduler(self) -> KarrasDiffusionSchedulers:
        """The pipeline's scheduler; inside a call (its callbacks included) the call's own copy, which the call sets
        its timesteps on. Assigning a scheduler changes the pipeline's, used from the next call on."""
        state = _CALL_STATE.get()
        if state is not None and state.pipeline is self and state.scheduler is not None:
            return state.scheduler
        try:
            return self.__dict__["scheduler"]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no scheduler yet.") from None

    @scheduler.setter
    def scheduler(self, scheduler: KarrasDiffusionSchedulers) -> None:
        self.__dict__["scheduler"] = scheduler

    @property
    def _guidance_scale(self) -> float:
        return self._call_state().guidance_scale

    @_guidance_scale.setter
    def _guidance_scale(self, value: float) -> None:
        self._call_state().guidance_scale = value

    @property
    def _num_timesteps(self) -> int:
        return self._call_state().num_timesteps

    @_num_timesteps.setter
    def _num_timesteps(self, value: int) -> None:
        self._call_state().num_timesteps = value

    @property
    def _interrupt(self) -> bool:
        return self._call_state().interrupt

    @_interrupt.setter
    def _interrupt(self, value: bool) -> None:
        self._call_state().interrupt = value
