"""Kernels started ahead and let go in the background, for a batch of runbooks (``aurora-kit run --all``).

A Jupyter kernel takes ~0.5 s to boot (a Python process importing ipykernel) and ~0.2-0.5 s to exit after its
shutdown request; on a 10-runbook rehearsal that was ~8 s of the ~35 s it took. :func:`aurora_kit.runner.run_many`
therefore, once runbook N's kernel is ready (nbclient's ``on_notebook_start``), has runbook N+1's kernel boot
while N runs (:func:`launch`; never two kernels booting at once), and once runbook N's last cell
has finished, asks N's kernel to shut down and goes on at once (:meth:`StartedKernel.retire`); the shutdown is
completed (a kernel that lingers is terminated, then killed, as before) at the next runbook boundary or at the end
of the batch (:meth:`StartedKernel.reap`).

What a record then says: ``started_at`` is when its notebook was handed to its kernel, booted and idle until then;
the summary's ``kernel_started_at`` says when that kernel was launched, so the boot is never hidden (it ran while
the previous runbook ran, on the same machine: that runbook's duration carries its cost). The first runbook of a
batch starts its kernel itself, as a single run does (its duration includes the boot), and ``ended_at`` is when its
last cell finished: the kernel's exit is no longer in it. The run id and the redaction key of runbook N+1 exist
from its launch (the kernel inherits them in its environment, as before): a batch that stops before N+1 leaves no
record of it (the kernel is shut down unused).

Same kernel as :mod:`aurora_kit.engine` starts for a single run: the same kernel manager (private IPC sockets, the
kernel's stdout/stderr forwarded redacted, no SIGINT before shutdown), the same arguments nbclient passes
(in-memory history), the notebook's directory as working directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aurora_kit.redaction import Redactor

#: what nbclient passes to every kernel it starts (``NotebookClient.ipython_hist_file`` default)
HISTORY_ARGUMENTS = ["--HistoryManager.hist_file=:memory:"]


@dataclass
class StartedKernel:
    """One kernel launched ahead for one run: its manager (handed to papermill as ``km``), the run it is for."""

    km: Any
    run_id: str
    redactor: Redactor
    launched_at: datetime
    ipc_dir: str
    clients: list[Any] = field(default_factory=list)
    _retired: bool = False

    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        try:
            return bool(run_sync(self.km.is_alive)())
        except Exception:
            return False

    def retire(self) -> None:
        """Its runbook is over: close the clients nbclient opened (it closes none of a kernel it did not start) and
        send the shutdown request, without waiting for the kernel to exit."""
        if self._retired:
            return
        self._retired = True
        from jupyter_core.utils import run_sync

        for client in self.clients:
            with contextlib.suppress(Exception):  # a client whose channels never opened
                client.stop_channels()
        self.clients.clear()
        self.km.shutting_down = True  # as jupyter_client's own shutdown: no interrupt, no restarter
        with contextlib.suppress(Exception):  # a dead kernel: reap() cleans up
            if run_sync(self.km.is_alive)():
                run_sync(self.km.request_shutdown)()

    def reap(self) -> None:
        """Complete the shutdown (jupyter_client's wait: terminated after half of ``shutdown_wait_time``, then
        killed) and remove its files; :meth:`retire` first if that was not done."""
        from jupyter_core.utils import run_sync

        self.retire()
        try:
            if run_sync(self.km.is_alive)():
                run_sync(self.km.finish_shutdown)()
            run_sync(self.km.cleanup_resources)()
        finally:
            shutil.rmtree(self.ipc_dir, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _client_class() -> type:
    """jupyter_client's async kernel client whose ``wait_for_ready`` does the same handshake — ``kernel_info`` until
    a reply comes on shell *and* a message on IOPub proves IOPub connected (else it asks again), failing if the
    kernel dies or the timeout passes — but drains what is left on IOPub without waiting for 0.2 s of silence
    (jupyter_client's last step, on every kernel: ~2 s of a rehearsal). nbclient matches every message to the
    request it sent, so a status message of the handshake that arrives later is ignored, as it is today."""
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class AheadKernelClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    if msg["msg_type"] == "kernel_info_reply":
                        try:
                            await self.iopub_channel.get_msg(timeout=0.2)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
            while True:  # what is queued now, not 0.2 s of silence
                try:
                    await self.iopub_channel.get_msg(timeout=0)
                except Empty:
                    break

    return AheadKernelClient


async def launch(
    *,
    kernel_name: str,
    cwd: str,
    environ: Mapping[str, str],
    run_id: str,
    redactor: Redactor,
) -> StartedKernel:
    """Start a kernel for the run ``run_id`` (the process is spawned; this does not wait for it to be ready:
    nbclient's ``wait_for_ready`` does, when the run begins). ``environ`` is added to this process's environment
    (the run id, the operator, the parameters file, the redaction key). A coroutine, awaited on the event loop
    nbclient runs on in this thread (the runner awaits it from nbclient's ``on_notebook_start`` hook), so the
    kernel manager's sockets belong to the loop that later uses them."""
    from aurora_kit.engine import kernel_config, kernel_manager_class

    base = kernel_manager_class(redactor)

    class AheadKernelManager(base):  # type: ignore[misc,valid-type]
        """Keeps the clients it hands out, for :meth:`StartedKernel.retire` to close; they are
        :func:`_client_class`'s."""

        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            started.clients.append(kc)
            return kc

    AheadKernelManager.client_factory = _client_class()

    ipc_dir = tempfile.mkdtemp(prefix="aurora-kit-kernel-")
    try:
        km = AheadKernelManager(kernel_name=kernel_name, config=kernel_config(ipc_dir))
        started = StartedKernel(km, run_id, redactor, datetime.now(timezone.utc), ipc_dir)
        await km.start_kernel(extra_arguments=list(HISTORY_ARGUMENTS), cwd=cwd, env={**os.environ, **environ})
    except BaseException:
        shutil.rmtree(ipc_dir, ignore_errors=True)
        raise
    return started
