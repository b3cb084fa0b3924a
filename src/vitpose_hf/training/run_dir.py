"""The output directory of a run: one writer at a time, no earlier run overwritten by accident, and a `final/` that
is always complete (the new one is written aside and renamed into place)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

LOCK_FILE = ".run.lock"
FINAL, FINAL_STAGING, FINAL_PREVIOUS = "final", ".final-staging", ".final-previous"
# What a run writes besides final/: removed by --overwrite-output-dir, kept when resuming.
RUN_OUTPUTS = ("checkpoints", "train_log.jsonl", "eval_history.jsonl", "eval_results.json", "reconstructions")


class OutputDirError(RuntimeError):
    """The output directory cannot take this run; the message says why and what to pass instead."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # alive, owned by someone else
    return True


def lock_owner(output_dir: Path) -> int | None:
    """The pid of the live process that holds the directory's lock, if any (a dead holder's lock is stale)."""
    try:
        pid = int((Path(output_dir) / LOCK_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid != os.getpid() and _pid_alive(pid) else None


def holds_a_run(output_dir: Path) -> bool:
    """Whether an earlier run trained here: a checkpoint, a log or a final model."""
    output_dir = Path(output_dir)
    return ((output_dir / "train_log.jsonl").exists() or (output_dir / FINAL).exists()
            or any((output_dir / "checkpoints").glob("checkpoint-*")))


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a directory another live run writes to, or one holding an earlier run unless resuming/overwriting."""
    owner = lock_owner(output_dir)
    if owner is not None:
        raise OutputDirError(f"Another run (pid {owner}) is writing to {output_dir} ({output_dir / LOCK_FILE}); "
                             "wait for it to end or choose another --output-dir.")
    if holds_a_run(output_dir) and not (resume or overwrite):
        raise OutputDirError(f"{output_dir} already holds a run; pass --resume-from-checkpoint latest to continue "
                             "it, --overwrite-output-dir to start afresh there, or choose another --output-dir.")


class OutputDirLock:
    """A lock file holding this process's pid; a lock left by a dead process is taken over."""

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / LOCK_FILE

    def __enter__(self) -> OutputDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = lock_owner(self.path.parent)
        if owner is not None:
            raise OutputDirError(f"Another run (pid {owner}) is writing to {self.path.parent}.")
        staging = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}")
        staging.write_text(f"{os.getpid()}\n")
        os.replace(staging, self.path)  # takes over a stale lock atomically
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if int(self.path.read_text().split()[0]) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError, IndexError):
            pass


def clear_earlier_run(output_dir: Path) -> None:
    """--overwrite-output-dir: drop the earlier run's checkpoints and logs; its final/ stays until the new one is in."""
    for name in RUN_OUTPUTS:
        path = Path(output_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def recover_final(output_dir: Path) -> None:
    """A run killed between the two renames of `install_final` left the previous final/ aside: put it back."""
    output_dir = Path(output_dir)
    if (output_dir / FINAL_PREVIOUS).is_dir() and not (output_dir / FINAL).exists():
        os.replace(output_dir / FINAL_PREVIOUS, output_dir / FINAL)
    shutil.rmtree(output_dir / FINAL_STAGING, ignore_errors=True)


def staging_final(output_dir: Path) -> Path:
    """An empty folder to write the new final model into."""
    staging = Path(output_dir) / FINAL_STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def install_final(output_dir: Path) -> Path:
    """Rename the staged final model into place; the previous final/ is removed only once the new one is in."""
    output_dir = Path(output_dir)
    final, previous = output_dir / FINAL, output_dir / FINAL_PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        os.replace(final, previous)
    os.replace(output_dir / FINAL_STAGING, final)
    shutil.rmtree(previous, ignore_errors=True)
    return final
