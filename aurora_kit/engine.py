"""A papermill engine whose every save is redacted: no secret reaches disk, not even in an intermediate save.

Papermill writes the output notebook after each cell starts and completes (and every ``autosave_cell_every``
seconds during a long cell), then once more after execution (and when it marks a failing cell). This engine:

- writes a redacted *copy* at every save during execution (the kernel keeps running on the real notebook);
- redacts the notebook in place once execution is over, so papermill's own final write (and its error-cell
  write) contain redacted content only;
- hands the kernel a fresh per-run HMAC key (``$AURORA_KIT_REDACTION_KEY``) so the kernel can register run-time
  secrets (:func:`aurora_kit.runbook.register_secret`) without ever sending them.

A caller that writes more than the notebook (the runner's ``summary.json``) passes its own keyed
:class:`~aurora_kit.redaction.Redactor` as the ``redactor`` engine keyword (``papermill.execute_notebook(...,
redactor=r)``): the engine then uses that key and collects the kernel's registrations into it, so the caller can
redact its own text with the same secrets.

A caller that wants to show waits live (the runner's terminal line) passes ``on_progress``: a callable that
receives each new state of a wait's progress display (the payload of :data:`aurora_kit.polling.PROGRESS_MIME`,
redacted) while the cell runs.

Kernel shutdown: jupyter_client interrupts a kernel (SIGINT) before asking it to shut down; when that signal lands
while ipykernel handles a message it logs ``ERROR | KeyboardInterrupt caught in kernel`` to the terminal — alarming
noise after a run that went well. Every cell has finished by then, so this engine's kernel manager skips that
interrupt during shutdown (a kernel that does not exit is still terminated, then killed).

Registered as the ``aurora_kit`` papermill engine (``[project.entry-points."papermill.engine"]``), so plain
``papermill -e aurora_kit in.ipynb out.ipynb -f parameters/local.yaml`` redacts too; ``aurora-kit run`` always
passes it explicitly.
"""

from __future__ import annotations

import functools
import os
import secrets
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aurora_kit.redaction import KEY_ENV, Redactor, env_secret_values, secret_values

ENGINE_NAME = "aurora_kit"

# papermill is imported lazily: papermill loads its engine entry points while it is being imported, so this
# module must be importable without importing papermill (else `import aurora_kit.engine` first would recurse).


@functools.lru_cache(maxsize=1)
def _manager_class() -> type:
    from papermill.engines import NotebookExecutionManager
    from papermill.iorw import write_ipynb

    class RedactingExecutionManager(NotebookExecutionManager):
        """papermill's execution manager, with a save path that writes redacted copies only."""

        def __init__(self, nb: Any, *, redactor: Redactor, **kwargs: Any) -> None:
            self.redactor = redactor
            super().__init__(nb, **kwargs)

        _defer_save = False
        _running: int | None = None  # index of the code cell executing now
        _progress_seen: Any = None
        on_progress: Callable[[dict[str, Any]], None] | None = None

        def autosave_cell(self) -> None:
            """Called by papermill after every kernel message: forward a wait's progress, then papermill's own."""
            if self.on_progress is not None and self._running is not None:
                self._forward_progress(self.nb.cells[self._running])
            super().autosave_cell()

        def _forward_progress(self, cell: Any) -> None:
            from aurora_kit.polling import PROGRESS_MIME

            for output in reversed(cell.get("outputs") or []):
                payload = (output.get("data") or {}).get(PROGRESS_MIME)
                if payload is None:
                    continue
                if payload != self._progress_seen:
                    self._progress_seen = payload
                    assert self.on_progress is not None
                    try:
                        self.on_progress(self.redactor.obj(dict(payload)))
                    except Exception:  # a terminal that went away must not stop the run
                        self.on_progress = None
                return

        def save(self, **kwargs: Any) -> None:
            nb = kwargs.get("nb")
            if nb:
                self.nb = nb
            if self._defer_save:
                return  # a markdown/raw cell ran nothing: its timestamps reach disk with the next save
            if self.output_path:
                write_ipynb(self.redactor.redacted_copy(self.nb), self.output_path)
            self.last_save_time = self.now()

        # papermill saves the whole (redacted) notebook when *every* cell starts and completes, markdown included;
        # each save costs a deep copy, redaction and a JSON write (10-30 ms, more once plots are in) on the path
        # between two code cells. Code cells keep both saves (the running marker, outputs as soon as they exist).
        def cell_start(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._defer_save = cell.get("cell_type") != "code"
            self._running = cell_index if cell.get("cell_type") == "code" else None
            try:
                super().cell_start(cell, cell_index, **kwargs)
            finally:
                self._defer_save = False

        def cell_complete(self, cell: Any, cell_index: int | None = None, **kwargs: Any) -> None:
            self._defer_save = cell.get("cell_type") != "code"
            self._running = None
            try:
                super().cell_complete(cell, cell_index, **kwargs)
            finally:
                self._defer_save = False

    return RedactingExecutionManager


def _kernel_manager_class(redactor: Redactor | None = None) -> type:
    """jupyter_client's kernel manager, with two changes for headless runs:

    - no SIGINT before a shutdown request (every cell has run when the runner shuts a kernel down; the interrupt
      made ipykernel log a spurious ``KeyboardInterrupt caught in kernel`` now and then);
    - the kernel's own stdout/stderr — where the output of processes a cell starts goes (``subprocess.run``
      writes to inherited file descriptors, not to the notebook) — is read through pipes and written to this
      process's stdout/stderr line by line, redacted with the run's ``redactor`` (known values, the secrets the
      kernel registers, patterns), so a terminal or a cron log never shows what the record hides.
    """
    from jupyter_client.manager import AsyncKernelManager

    class HeadlessKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if redactor is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            await super()._async_launch_kernel(kernel_cmd, **kw)
            process = getattr(self.provisioner, "process", None)
            if process is not None:
                for pipe, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
                    if pipe is not None:
                        threading.Thread(
                            target=_forward, args=(pipe, name, redactor), name=f"kernel-{name}", daemon=True
                        ).start()

    return HeadlessKernelManager


def _forward(pipe: Any, name: str, redactor: Redactor) -> None:
    """Copy a kernel pipe to this process's stream of the same name, one redacted line at a time, until EOF."""
    with pipe:
        for raw in iter(pipe.readline, b""):
            line = redactor.text(raw.decode("utf-8", errors="replace"))
            stream = sys.stdout if name == "stdout" else sys.stderr
            stream.write(line)
            stream.flush()


@contextmanager
def temporary_environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (a kernel started inside inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _private_ipc(kwargs: dict[str, Any], redactor: Redactor | None = None) -> Iterator[dict[str, Any]]:
    """Talk to the kernel over Unix sockets in a private (0700) directory rather than loopback TCP: outputs,
    secrets included, then never cross a socket other local users could reach (and ipykernel stops warning)."""
    if "config" in kwargs or "km" in kwargs:
        yield kwargs  # the caller configured the kernel transport itself
        return
    kwargs = {"kernel_manager_class": _kernel_manager_class(redactor), **kwargs}
    with tempfile.TemporaryDirectory(prefix="aurora-kit-kernel-") as tmp:
        yield {**kwargs, "config": kernel_config(tmp)}


def kernel_config(ipc_dir: str) -> Any:
    """The kernel manager's configuration: Unix sockets in ``ipc_dir`` (private, 0700), a short shutdown wait."""
    from traitlets.config import Config

    # shutdown: every cell has run and every output is in by then. ipykernel exits ~0.2 s after the shutdown
    # request, but now and then (~1 in 12 runs here) it lingers and jupyter_client's default (5 s: SIGTERM
    # after 2.5 s) costs ~3 s: give it 1 s, then SIGTERM (1 s more before SIGKILL)
    return Config(
        {"KernelManager": {"transport": "ipc", "ip": os.path.join(ipc_dir, "kernel"), "shutdown_wait_time": 2.0}}
    )


def kernel_manager_class(redactor: Redactor | None = None) -> type:
    """The kernel manager every aurora-kit run uses (see :func:`_kernel_manager_class`), for a caller that starts
    the kernel itself (:mod:`aurora_kit.kernels`)."""
    return _kernel_manager_class(redactor)


def redactor_for(nb: Any, env: Mapping[str, str] | None = None, key: bytes | None = None) -> Redactor:
    """A redactor knowing the secret-looking parameters of ``nb`` and secret-looking environment values."""
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters") or {}
    known = secret_values(params) | env_secret_values(os.environ if env is None else env)
    return Redactor(known, key=key)


class RedactingEngine:
    """nbclient execution with redacted saves (see the module docstring). Implements papermill's engine
    interface (``execute_notebook``, ``nb_kernel_name``, ``nb_language``) by delegating to its nbclient engine."""

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        redactor: Redactor | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        from papermill.engines import NBClientEngine

        if redactor is None:
            redactor = redactor_for(nb, key=secrets.token_bytes(32))
        elif redactor.key is None:
            raise ValueError("the redactor handed to the aurora_kit engine needs a key (Redactor(..., key=...))")
        else:
            redactor.add(redactor_for(nb).known)
        key = redactor.key
        assert key is not None
        redactor.add([key.hex()])  # printing os.environ must not expose the key (it would ease guessing HMACs)
        nb_man = _manager_class()(
            nb,
            redactor=redactor,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.on_progress = on_progress
        # the kernel is started inside execute_managed_notebook and inherits this environment
        with temporary_environ(**{KEY_ENV: key.hex()}), _private_ipc(kwargs, redactor) as kwargs:
            nb_man.notebook_start()
            try:
                NBClientEngine.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
                # papermill writes the returned notebook itself (final save, failing-cell marker): redact it now
                redactor.redact_notebook(nb_man.nb)
        return nb_man.nb

    @classmethod
    def nb_kernel_name(cls, nb: Any, name: str | None = None) -> str:
        from papermill.utils import nb_kernel_name

        return str(nb_kernel_name(nb, name))

    @classmethod
    def nb_language(cls, nb: Any, language: str | None = None) -> str:
        from papermill.utils import nb_language

        return str(nb_language(nb, language))
