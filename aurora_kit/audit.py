"""Audit records: one folder per run, indexed in an append-only, hash-chained JSONL file.

Layout (``audit/`` at the project root, ``$AURORA_KIT_AUDIT_DIR``, or ``--audit-dir``; git-ignored)::

    audit/
      index.jsonl                      one line per run, chained by hash
      20261126T222000Z-06-failover-3fa2c1/
        06-failover.ipynb              executed notebook (redacted at every save)
        06-failover.html               nbconvert render
        summary.json                   who/what/when/outcome/results (see :func:`build_summary`)

Each index entry holds the sha256 of every file of its record, ``prev`` (the previous entry's ``hash``) and its
own ``hash`` (sha256 of the entry's canonical JSON without ``hash``). :func:`verify` recomputes all of it, so an
edited or deleted record file, an edited index line, or a removed/reordered entry is reported. The chain proves
integrity relative to its head, so the head is anchored outside the folder too: every ``aurora-kit run`` prints
it, ``aurora-kit audit head`` prints it, and an append-only *sink* the operator chooses (``--audit-sink FILE`` or
``syslog``, or ``$AURORA_KIT_AUDIT_SINK``) receives one line per sealed record (run id, head, entries).
``verify`` then also reconciles the folders with the index (a sealed record missing from the index, a deleted or
truncated index), checks a noted head (``--expect-head``) and the sink's lines (``--sink``), and names the first
suspect record.

A run refused before any kernel started (bad parameters, unknown runbook, unusable root) still leaves a record of
the refusal (:func:`record_refusal`: who, when, what was asked, why it was refused), sealed like any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aurora_kit.backends.base import redact
from aurora_kit.outcome import RunOutcome
from aurora_kit.redaction import Redactor
from aurora_kit.runbook import RESULT_MIME

AUDIT_DIR_ENV = "AURORA_KIT_AUDIT_DIR"
SINK_ENV = "AURORA_KIT_AUDIT_SINK"
REFUSED = "refused"
INDEX = "index.jsonl"
SUMMARY = "summary.json"
GENESIS = "0" * 64
FLEETS_DIR = "fleets"  # fleet summaries (aurora_kit.fleet.summary), beside the records: not a record
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def audit_root(explicit: str | Path | None = None) -> Path:
    """``explicit`` > ``$AURORA_KIT_AUDIT_DIR`` > ``<project root>/audit``; InvalidParameterError when it names
    something that is not a folder."""
    from aurora_kit.errors import InvalidParameterError

    env = os.environ.get(AUDIT_DIR_ENV)
    root = Path(explicit) if explicit else Path(env) if env else PROJECT_ROOT / "audit"
    if root.exists() and not root.is_dir():
        field = "--audit-dir" if explicit else AUDIT_DIR_ENV if env else "audit folder"
        raise InvalidParameterError(field, str(root), "is a file, not a folder: give the folder that holds the records")
    return root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _canonical(entry: Mapping[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


# -- facts about the run ----------------------------------------------------------------------------------------
def git_info(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """``{"revision": sha or None, "dirty": bool or None}`` of the project checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision, "dirty": dirty}


def versions() -> dict[str, str]:
    import nbconvert
    import papermill

    import aurora_kit

    return {
        "aurora_kit": aurora_kit.__version__,
        "python": platform.python_version(),
        "papermill": papermill.__version__,
        "nbconvert": nbconvert.__version__,
    }


def collect_results(nb: Any) -> dict[str, Any]:
    """Key results the notebook recorded with :func:`aurora_kit.record_result` (later values win)."""
    results: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            payload = (output.get("data") or {}).get(RESULT_MIME)
            if isinstance(payload, Mapping) and "name" in payload:
                results[str(payload["name"])] = payload.get("value")
    return results


def failure_of(nb: Any) -> dict[str, Any] | None:
    """Where and how the run failed: the first cell papermill marked failed (or with an error output)."""
    for index, cell in enumerate(nb.get("cells", [])):
        pm = cell.get("metadata", {}).get("papermill", {})
        errors = [o for o in cell.get("outputs", []) or [] if o.get("output_type") == "error"]
        if pm.get("status") == "failed" or pm.get("exception") is True or errors:
            err = errors[0] if errors else {}
            code_cells = [c for c in nb["cells"][:index] if c.get("cell_type") == "code"]
            return {
                "cell_index": index,  # in the executed notebook (papermill's error banner is cell 0)
                "code_cell_number": len(code_cells) + 1,
                "execution_count": cell.get("execution_count"),
                "ename": err.get("ename", "CellExecutionError"),
                "evalue": err.get("evalue", ""),
                "source": cell.get("source", ""),
            }
    return None


@functools.lru_cache(maxsize=1)
def _html_exporter() -> Any:
    from nbconvert import HTMLExporter

    return HTMLExporter()  # loading the templates is the slow part: reuse it across runs


def render_html(notebook: Path, html: Path) -> None:
    import nbformat

    body, _ = _html_exporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    html.write_text(body, encoding="utf-8")


@dataclass
class RunRecord:
    """Paths of one run's record."""

    root: Path
    run_id: str
    runbook: str

    @property
    def dir(self) -> Path:
        return self.root / self.run_id

    @property
    def notebook(self) -> Path:
        return self.dir / f"{self.runbook}.ipynb"

    @property
    def html(self) -> Path:
        return self.dir / f"{self.runbook}.html"

    @property
    def summary(self) -> Path:
        return self.dir / SUMMARY

    def create(self) -> RunRecord:
        self.dir.mkdir(parents=True, exist_ok=False)
        return self


@dataclass
class Outcome:
    """What a record says about its run: the judged outcome (:class:`aurora_kit.outcome.RunOutcome`), where it
    failed, the recorded results and the key figures (:mod:`aurora_kit.figures`)."""

    judged: RunOutcome
    failure: dict[str, Any] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    key_figures: dict[str, Any] = field(default_factory=dict)


def build_summary(
    record: RunRecord,
    *,
    notebook_path: Path,
    parameters: Mapping[str, Any],
    started_at: datetime,
    ended_at: datetime,
    outcome: Outcome,
    operator: str,
    redactor: Redactor,
    batch_id: str | None = None,
    error: str | None = None,
    parameters_file: str | None = None,
    overrides: Sequence[str] = (),
    backend: str | None = None,
) -> dict[str, Any]:
    """``summary.json`` of a run: who/what/when, the outcome (``outcome``, ``outcome_reason``, ``unverified``,
    ``allowed_unverified``, ``checks``, ``exit_code``), ``key_figures`` (raw), the failure, every recorded result,
    the parameters (redacted) and their source, versions."""
    summary: dict[str, Any] = {
        "run_id": record.run_id,
        "batch_id": batch_id,
        "runbook": record.runbook,
        "notebook": str(notebook_path),
        "operator": operator,
        "host": socket.gethostname(),
        "started_at": started_at.isoformat(),
        "ended_at": ended_at.isoformat(),
        "duration_s": round((ended_at - started_at).total_seconds(), 3),
        **outcome.judged.summary(),
        "key_figures": outcome.key_figures,
        "failure": outcome.failure,
        "error": error,
        "results": outcome.results,
        "backend": backend or parameters.get("backend"),
        "parameters": redact(parameters),
        "parameters_file": parameters_file,
        "overrides": list(overrides),
        "git": git_info(),
        "versions": versions(),
    }
    redacted: dict[str, Any] = redactor.obj(summary)
    return redacted


# -- the index ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".index.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_index(root: Path) -> list[dict[str, Any]]:
    path = root / INDEX
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def seal(record: RunRecord, summary: Mapping[str, Any], *, sink: str | None = None) -> dict[str, Any]:
    """Write ``summary.json`` and append the record to the hash-chained index, then note the new head in the sink
    (``sink`` or ``$AURORA_KIT_AUDIT_SINK``, if any); returns the index entry."""
    record.summary.write_text(json.dumps(summary, indent=2, sort_keys=False, ensure_ascii=False) + "\n")
    files = {p.name: sha256_file(p) for p in sorted(record.dir.iterdir()) if p.is_file()}
    index = record.root / INDEX
    with _locked(index):
        entries = read_index(record.root)
        entry: dict[str, Any] = {
            "run_id": record.run_id,
            "runbook": record.runbook,
            "outcome": summary.get("outcome"),
            "started_at": summary.get("started_at"),
            "operator": summary.get("operator"),
            "dir": record.run_id,
            "files": files,
            "prev": entries[-1]["hash"] if entries else GENESIS,
        }
        entry["hash"] = entry_hash(entry)
        with index.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        note_head(record.root, entry, len(entries) + 1, sink)
    return entry


def note_head(root: Path, entry: Mapping[str, Any], entries: int, sink: str | None = None) -> None:
    """Append ``{at, root, run_id, head, entries}`` to the operator's sink: a file (opened for appending only) or
    ``syslog``. A sink that cannot be written is reported on stderr, never silently skipped."""
    target = sink or os.environ.get(SINK_ENV)
    if not target:
        return
    line = json.dumps(
        {
            "at": datetime.now().astimezone().isoformat(timespec="seconds"),
            "root": str(root.resolve()),
            "run_id": entry["run_id"],
            "head": entry["hash"],
            "entries": entries,
        },
        sort_keys=True,
    )
    try:
        if target == "syslog":
            import syslog

            syslog.openlog("aurora-kit", 0, syslog.LOG_AUTHPRIV)
            syslog.syslog(syslog.LOG_NOTICE, f"audit head {line}")
        else:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        import sys

        print(f"aurora-kit: WARNING: audit sink {target} not written ({exc}); head {entry['hash']}", file=sys.stderr)


def head(root: Path) -> tuple[str, int, str | None]:
    """(head hash, number of entries, last run id) of the index as it is now."""
    entries = read_index(root)
    if not entries:
        return GENESIS, 0, None
    return str(entries[-1].get("hash")), len(entries), str(entries[-1].get("run_id"))


def record_refusal(
    root: Path,
    *,
    runbook: str | None,
    reason: str,
    request: Mapping[str, Any],
    operator: str,
    sink: str | None = None,
) -> RunRecord:
    """Seal a record of a refused request: who asked, when, what (``request``: the command line's runbook,
    parameters file, overrides — redacted here), and why it was refused (``reason``, redacted)."""
    from aurora_kit.redaction import redact_patterns

    now = datetime.now().astimezone()
    name = runbook or "run"
    record = RunRecord(
        root, f"{now.astimezone().strftime('%Y%m%dT%H%M%SZ')}-{REFUSED}-{name}-{os.urandom(3).hex()}", name
    )
    record.dir.mkdir(parents=True, exist_ok=False)
    redactor = Redactor()
    summary = {
        "kind": "refusal",
        "run_id": record.run_id,
        "runbook": name,
        "outcome": REFUSED,
        "exit_code": 2,
        "operator": operator,
        "host": socket.gethostname(),
        "started_at": now.isoformat(),
        "ended_at": now.isoformat(),
        "duration_s": 0.0,
        "reason": redact_patterns(reason),
        "request": redactor.obj(redact(dict(request))),
        "git": git_info(),
        "versions": versions(),
    }
    seal(record, summary, sink=sink)
    return record


@dataclass
class Verification:
    entries: int
    head: str
    problems: list[str]
    #: what is worth knowing but is no tampering (unsealed runs, runs after a noted head)
    notes: list[str] = field(default_factory=list)
    #: the first record whose integrity cannot be vouched for, when one can be named
    first_suspect: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(root: Path, *, expect_head: str | None = None, sink: str | Path | None = None) -> Verification:
    """Recompute the chain and every file hash, reconcile the record folders with the index, check a noted head and
    the sink's lines; list what does not match, naming the first suspect record."""
    problems: list[str] = []
    suspects: list[str] = []
    path = root / INDEX
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    prev = GENESIS
    chain: list[tuple[str, str]] = []  # (run id, hash) in index order
    seen: set[str] = set()
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"index line {number}: not valid JSON (edited?)")
            suspects.append(f"index line {number}")
            prev = hashlib.sha256(line.encode()).hexdigest()
            continue
        if not isinstance(entry, dict):
            problems.append(f"index line {number}: not a JSON object (edited?)")
            suspects.append(f"index line {number}")
            prev = hashlib.sha256(line.encode()).hexdigest()
            continue
        rid = str(entry.get("run_id", f"<line {number}>"))
        before = len(problems)
        if entry.get("hash") != entry_hash(entry):
            problems.append(f"{rid}: index entry edited (its hash does not match its content)")
        if entry.get("prev") != prev:
            problems.append(f"{rid}: chain broken before this entry (an entry was removed, inserted or reordered)")
        prev = str(entry.get("hash", ""))
        chain.append((rid, prev))
        seen.add(str(entry.get("dir", rid)))
        record_dir = root / str(entry.get("dir", rid))
        files = entry.get("files")
        if not isinstance(files, dict):
            problems.append(f"{rid}: index entry has no file list (edited?)")
            files = {}
        for name, digest in files.items():
            file = record_dir / name
            if not file.exists():
                problems.append(f"{rid}: {name} is missing")
            elif sha256_file(file) != digest:
                problems.append(f"{rid}: {name} was modified after the record was sealed")
        if record_dir.is_dir():
            extra = sorted(p.name for p in record_dir.iterdir() if p.is_file() and p.name not in files)
            if extra:
                problems.append(f"{rid}: files added after sealing: {', '.join(extra)}")
        if len(problems) > before:
            suspects.append(rid)
    notes: list[str] = []
    # folders the index does not account for: a sealed record (it has its summary) is evidence of a cut index
    orphans = sorted(
        p
        for p in (root.iterdir() if root.is_dir() else [])
        if p.is_dir() and not p.name.startswith(".") and p.name not in seen
    )
    for folder in orphans:
        if (folder / SUMMARY).exists():
            problems.append(
                f"{folder.name}: a sealed record that is not in the index (the index was truncated, deleted or edited)"
            )
            suspects.append(folder.name)
        else:
            notes.append(f"{folder.name}: unsealed (the run was interrupted before its record was sealed)")
    if orphans and not path.exists():
        problems.insert(0, f"{INDEX} is missing while {len(orphans)} record folder(s) exist: the index was deleted")
    hashes = [h for _r, h in chain]
    if expect_head:
        if expect_head == GENESIS and not chain:
            pass
        elif expect_head not in hashes:
            last = chain[-1][0] if chain else "nothing"
            problems.append(
                f"the noted head {expect_head} is in no entry: the chain was rewritten or cut at or before it "
                f"(it now ends at {last}, {len(chain)} entries)"
            )
        else:
            later = chain[hashes.index(expect_head) + 1 :]
            if later:
                notes.append(f"{len(later)} run(s) sealed after the noted head, the first {later[0][0]}")
    if sink is not None:
        problems_from_sink, suspect = _check_sink(Path(sink), root, chain)
        problems += problems_from_sink
        if suspect:
            suspects.insert(0, suspect)
    return Verification(count, prev, problems, notes, suspects[0] if suspects else None)


def _check_sink(sink: Path, root: Path, chain: Sequence[tuple[str, str]]) -> tuple[list[str], str | None]:
    """Every head the sink noted for this folder must still be the hash of that run's entry, and the index must
    still hold as many entries as the sink last counted."""
    try:
        noted = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        return [f"the sink {sink} cannot be read: {exc}"], None
    mine = [n for n in noted if isinstance(n, dict) and n.get("root") == str(root.resolve())]
    by_run = dict(chain)
    for n in mine:
        rid, want = str(n.get("run_id")), n.get("head")
        got = by_run.get(rid)
        if got != want:
            state = "is gone from the index" if got is None else f"now hashes to {got}"
            return [f"{rid}: the sink noted head {want} after it, the entry {state} (rewritten from here on)"], rid
    if mine and len(chain) < int(mine[-1].get("entries", 0)):
        return [f"the index holds {len(chain)} entries, the sink counted {mine[-1]['entries']}: the tail was cut"], (
            str(mine[-1].get("run_id"))
        )
    return [], None


def unsealed(root: Path) -> list[str]:
    """Record folders with no index entry (runs interrupted before sealing)."""
    sealed = {str(e.get("dir")) for e in read_index(root)}
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in sealed and not p.name.startswith(".") and p.name != FLEETS_DIR
    )


def find(root: Path, which: str) -> dict[str, Any]:
    """Summary of one run: ``latest``, a runbook (``06`` / ``06-failover``: its latest run), or a run id (a unique
    prefix is enough)."""
    from aurora_kit.errors import InvalidParameterError

    entries = read_index(root)
    if not entries:
        raise InvalidParameterError("run", which, f"no record in {root / INDEX}")
    if which == "latest":
        entry = entries[-1]
    else:
        matches = [e for e in entries if str(e["run_id"]).startswith(which)]
        exact = [e for e in matches if e["run_id"] == which]
        of_runbook = [e for e in entries if e["runbook"] == which or str(e["runbook"]).split("-", 1)[0] == which]
        if exact:
            entry = exact[0]
        elif len(matches) == 1:
            entry = matches[0]
        elif matches:
            raise InvalidParameterError("run_id", which, f"ambiguous: {', '.join(e['run_id'] for e in matches)}")
        elif of_runbook:
            entry = of_runbook[-1]
        else:
            raise InvalidParameterError(
                "run", which, f"no such run id or runbook in {root / INDEX} (try: latest, 06, 06-failover, a run id)"
            )
    summary = json.loads((root / entry["dir"] / SUMMARY).read_text(encoding="utf-8"))
    return {"entry": entry, "summary": summary}
