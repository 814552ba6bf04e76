"""The Dask executor: child runs and backfill windows on the workers of a Dask cluster.

Needs the ``ductwork[dask]`` extra (``distributed``). A child run is shipped to a worker with
cloudpickle and runs there as an ordinary run (``await runnable.execute(...)``) in an event loop
of its own, in the worker's task thread, so a CPU-bound window does not block the worker's
communication. Its :class:`~ductwork.RunResult` comes back with its error: the same exception
types, attributes and ``__cause__`` chain.

State stays with the caller. A worker gets no store of the caller's: the run's state reads are
answered by the caller (through a pair of Dask queues), its writes are kept on the worker and
travel back in the outcome, and the caller applies them to its own store only after the run
succeeded. Run history is recorded by the caller too (the registry does it for a backfill).

Faults: a worker that dies mid-run has its task recomputed on another worker by Dask (up to the
scheduler's ``distributed.scheduler.allowed-failures``); a run whose failure is retryable is
submitted again with backoff, up to ``retries`` times; Dask itself reruns nothing that raised
(tasks are submitted with ``retries=0``).
Cancelling the caller sets a :class:`distributed.Event` the worker watches: the run there is
cancelled within one batch, and the future is cancelled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pickle
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import cloudpickle
import distributed

from .._exceptions import PipelineError, is_retryable
from .backoff import Backoff
from .context import RunContext
from .executor import Executor
from .result import RunResult
from .runnable import Runnable
from .store import _MISSING, StateStoreBase
from .types import RunStatus

__all__ = ["DaskExecutor", "open_local_cluster", "ship_by_value"]

_T = TypeVar("_T")


# --- exceptions across the wire -------------------------------------------------------------


def _new_exception(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    try:
        exc = cls(*args)  # built-in exceptions keep fields of their own (OSError.errno)
    except Exception:
        exc = cls.__new__(cls)  # keyword-only constructors: the attributes follow as state
    exc.args = args
    return exc


def _set_exception_state(exc: BaseException, state: dict[str, Any]) -> BaseException:
    exc.__dict__.update(state["dict"])
    exc.__cause__ = state["cause"]
    exc.__context__ = state["context"]
    exc.__suppress_context__ = state["suppress"]
    return exc


class _Pickler(cloudpickle.Pickler):
    """Pickles exceptions with their attributes and chain, whatever their ``__init__`` takes."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            state = {
                "dict": dict(obj.__dict__),
                "cause": obj.__cause__,
                "context": obj.__context__,
                "suppress": obj.__suppress_context__,
            }
            return (_new_exception, (type(obj), obj.args), state, None, None, _set_exception_state)
        return super().reducer_override(obj)


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


# --- the worker's side ----------------------------------------------------------------------


class _WorkerState(StateStoreBase[None]):
    """The state store a run on a worker sees: reads from the caller, writes kept for it."""

    def __init__(self, ask: Callable[[str, str | None], tuple[bool, Any]]) -> None:
        self._ask = ask
        self._values: dict[tuple[str | None, str], Any] = {}
        self.writes: list[tuple[str, str, str | None, Any]] = []

    @staticmethod
    def _copy(value: Any) -> Any:
        return json.loads(json.dumps(value))

    async def _prefetch(self, key: str, pipeline: str | None) -> None:
        if (pipeline, key) not in self._values:
            found, value = await anyio.to_thread.run_sync(self._ask, key, pipeline)
            self._values[pipeline, key] = value if found else _MISSING

    async def _transact(self, fn: Callable[[None], _T], *, write: bool) -> _T:
        return fn(None)

    def _read(self, handle: None, key: str, pipeline: str | None) -> Any:
        value = self._values[pipeline, key]
        return value if value is _MISSING else self._copy(value)

    def _write(self, handle: None, key: str, value: Any, pipeline: str | None) -> None:
        copy = self._copy(value)  # detached from what ``update`` returns
        self._values[pipeline, key] = copy
        self.writes.append(("set", key, pipeline, copy))

    def _remove(self, handle: None, key: str, pipeline: str | None) -> bool:
        self._values[pipeline, key] = _MISSING
        self.writes.append(("delete", key, pipeline, None))
        return True

    def _append(self, handle: None, pipeline: str, record: dict[str, Any]) -> None:
        self.writes.append(("append_run", pipeline, None, record))

    def _history(self, handle: None, pipeline: str, limit: int | None) -> list[dict[str, Any]]:
        return []


def _run_on_worker(
    runnable: Runnable, ctx: RunContext, result: RunResult, token: str, stateful: bool
) -> bytes:
    """The task a worker runs: one run in an event loop of its own; returns the outcome."""
    client = distributed.get_client()
    cancel = distributed.Event(f"ductwork-cancel-{token}", client=client)

    def ask(key: str, pipeline: str | None) -> tuple[bool, Any]:
        requests = distributed.Queue(f"ductwork-state-ask-{token}", client=client)
        answers = distributed.Queue(f"ductwork-state-answer-{token}", client=client)
        requests.put(json.dumps([key, pipeline]))
        found, value = json.loads(answers.get())
        return bool(found), value

    store = _WorkerState(ask) if stateful else None

    async def main() -> None:
        with anyio.CancelScope() as scope:
            loop = anyio.lowlevel.current_token()
            done = threading.Event()

            def watch() -> None:
                # One wait, no polling: the event is set by the caller to cancel, or by this
                # task when the run ends (which releases the wait).
                try:
                    cancel.wait()
                except Exception:  # the cluster went away: nothing will cancel the run
                    return
                if not done.is_set():
                    with contextlib.suppress(RuntimeError):  # the loop already ended
                        anyio.from_thread.run_sync(scope.cancel, token=loop)

            watcher = threading.Thread(target=watch, name=f"ductwork-cancel-{token}", daemon=True)
            watcher.start()
            try:
                await runnable.execute(dataclasses.replace(ctx, state=store), result)
            finally:
                done.set()
                with contextlib.suppress(Exception):  # release the watcher, forget the event
                    cancel.set()
                    watcher.join(timeout=30)  # a scheduler gone mid-wait: give up
                    cancel.clear()

    anyio.run(main)
    writes = store.writes if store is not None else []
    return _dumps({"result": result, "writes": writes, "pid": os.getpid()})


# --- the caller's side ----------------------------------------------------------------------


def ship_by_value(*module_names: str) -> None:
    """Pickle what the named (imported) modules define by value when it is sent to a worker.

    Modules that workers cannot import by name, such as the ``*_pipeline.py`` modules found by
    :func:`~ductwork.discover_pipelines` (named after a hash of their directory), travel with
    the pipelines instead: their functions and classes are pickled whole.
    """
    for name in module_names:
        cloudpickle.register_pickle_by_value(sys.modules[name])


class DaskExecutor(Executor):
    """Runs child runs and backfill windows on a Dask distributed cluster.

    Args:
        address_or_client: the scheduler's address (``"tcp://host:8786"``) or a connected
            :class:`distributed.Client` made with ``asynchronous=True``. An executor made from an
            address connects on first use and disconnects on :meth:`aclose` (or the end of
            ``async with``); a client passed in is left open.
        retries: how many times a run whose failure is retryable (its error's ``.retryable``,
            such as a window whose workers kept dying past the scheduler's
            ``allowed-failures``) is submitted again (``0`` by default). Dask itself reruns
            nothing that raised (tasks are submitted with ``retries=0``); a worker's death is
            recomputed by Dask regardless, up to ``allowed-failures``.
        backoff_factor: seconds before the first resubmission, doubled for each further one.
        max_backoff: the longest wait between two attempts, in seconds.

    Example (not run here: it needs a cluster)::

        async with DaskExecutor("tcp://scheduler:8786") as executor:
            await registry.backfill("orders", "2024-01-01", "2025-01-01", executor=executor,
                                    max_workers=16)
    """

    def __init__(
        self,
        address_or_client: str | distributed.Client,
        *,
        retries: int = 0,
        backoff_factor: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        self.retries = retries
        self.backoff = Backoff(factor=backoff_factor, maximum=max_backoff)
        self._address: str | None = None
        self._client: distributed.Client | None = None
        self._owned = False
        if isinstance(address_or_client, distributed.Client):
            if not address_or_client.asynchronous:
                raise ValueError("DaskExecutor needs a Client made with asynchronous=True")
            self._client = address_or_client
        elif isinstance(address_or_client, str):
            self._address = address_or_client
        else:
            raise TypeError(
                "DaskExecutor takes a scheduler address or a distributed.Client, "
                f"got {type(address_or_client).__name__}"
            )
        self.worker_pids: dict[str, int] = {}
        """The process id of the worker each run ran on, by run id."""

    def __repr__(self) -> str:
        where = self._address if self._address is not None else repr(self._client)
        return f"DaskExecutor({where!r})"

    async def __aenter__(self) -> DaskExecutor:
        await self.client()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def client(self) -> distributed.Client:
        """The connected client (connecting on first use when made from an address)."""
        if self._client is None:
            assert self._address is not None
            self._client = await distributed.Client(
                self._address, asynchronous=True, set_as_default=False
            )
            self._owned = True
        return self._client

    async def aclose(self) -> None:
        """Disconnect a client this executor connected (one passed in is left open)."""
        client, self._client = self._client, None
        if client is not None and self._owned:
            await client.close()
        self._owned = False

    async def execute(self, runnable: Runnable, ctx: RunContext, result: RunResult) -> RunResult:
        """Run ``runnable`` on a worker and fill ``result`` in with what it reports.

        A failed run whose error is retryable is submitted again, up to ``retries`` times.
        """
        retries = self.backoff.retries(self.retries)
        while True:
            await self._execute_once(runnable, ctx, result)
            retryable = result.error is not None and is_retryable(result.error)
            if result.status is not RunStatus.FAILED or not retryable or not retries.left:
                return result
            delay = retries.take()
            ctx.logger.warning(
                "%s failed on the cluster (%s); attempt %d of %d in %.1fs",
                runnable.name,
                result.error,
                retries.spent + 1,
                retries.limit + 1,
                delay,
            )
            await retries.wait()

    async def _execute_once(
        self, runnable: Runnable, ctx: RunContext, result: RunResult
    ) -> RunResult:
        client = await self.client()
        token = uuid.uuid4().hex
        state = ctx.state
        cancel = distributed.Event(f"ductwork-cancel-{token}", client=client)
        requests = await distributed.Queue(f"ductwork-state-ask-{token}", client=client)
        answers = await distributed.Queue(f"ductwork-state-answer-{token}", client=client)
        result.status = RunStatus.RUNNING
        future = client.submit(
            _run_on_worker,
            runnable,
            dataclasses.replace(ctx, state=None),
            result,
            token,
            state is not None,
            key=f"ductwork-{runnable.name}-{token}",
            pure=False,
            retries=0,
        )

        async def answer() -> None:
            assert state is not None
            while True:
                key, pipeline = json.loads(await requests.get())
                sentinel = object()
                value = await state.get(key, sentinel, pipeline=pipeline)
                found = value is not sentinel
                await answers.put(json.dumps([found, value if found else None]))

        try:
            async with anyio.create_task_group() as tg:
                if state is not None:
                    tg.start_soon(answer)
                try:
                    payload = await future
                except Exception as exc:
                    payload = None
                    error = PipelineError(
                        f"the run could not complete on the cluster: {type(exc).__name__}: {exc}",
                        pipeline=runnable.name,
                        result=result,
                        retryable=isinstance(exc, distributed.KilledWorker),
                    )
                    error.__cause__ = exc
                    result.status = RunStatus.FAILED
                    result.error = error
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await cancel.set()
                await client.cancel([future])
            result.status = RunStatus.CANCELLED
            raise
        finally:
            requests.close()
            answers.close()
        if payload is None:
            return result
        outcome = pickle.loads(payload)
        remote: RunResult = outcome["result"]
        for item in dataclasses.fields(RunResult):
            setattr(result, item.name, getattr(remote, item.name))
        remote_error = result.error
        if isinstance(remote_error, PipelineError) and remote_error.result is remote:
            remote_error.result = result
        self.worker_pids[ctx.run_id] = outcome["pid"]
        if result.status is RunStatus.SUCCEEDED and state is not None:
            with anyio.CancelScope(shield=True):
                await _commit(state, outcome["writes"])
        return result


async def _commit(state: Any, writes: list[tuple[str, str, str | None, Any]]) -> None:
    """Apply a successful run's state writes to the caller's store, in order."""
    for op, key, pipeline, value in writes:
        if op == "set":
            await state.set(key, value, pipeline=pipeline)
        elif op == "delete":
            await state.delete(key, pipeline=pipeline)
        else:
            await state.append_run(key, value)


@asynccontextmanager
async def open_local_cluster(workers: int) -> AsyncIterator[DaskExecutor]:
    """A :class:`DaskExecutor` on a LocalCluster of ``workers`` worker processes on 127.0.0.1.

    The cluster (one thread per worker, no dashboard) is closed when the block ends.
    """
    async with (
        distributed.LocalCluster(
            n_workers=workers,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            # The scheduler's HTTP server would otherwise try port 8787 first.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            asynchronous=True,
        ) as cluster,
        distributed.Client(cluster, asynchronous=True, set_as_default=False) as client,
    ):
        yield DaskExecutor(client)
