"""Faults injected into the real pipeline of a reproduced tiny project: each stage killed (SIGKILL, the whole
process group, at a random moment), a kill or a full disk (ENOSPC) at a named fault point of the write-and-rename
phase (core/faults.py), a full disk (RLIMIT_FSIZE), a corrupted DVC cache, two `dvc repro` at once.

The properties: a killed stage leaves each output absent or complete (never half-written, never a leftover
temporary file after the next run), and the next `dvc repro` ends with the same outputs and metrics as the
uninterrupted run; a full disk is one clear error that keeps the previous outputs; corruption is detected
before it is used; the second of two concurrent runs stops at DVC's lock without touching anything.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import BIN, queue_status, run, wait_for_queue

from llmcls.core.errors import FULL_DISK

pytestmark = [pytest.mark.slow, pytest.mark.dvc]

ENV = os.environ | {"PATH": BIN + os.pathsep + os.environ["PATH"]}
# Stages killed in the suite; benchmarks/reliability.py kills every stage at more points.
KILLED = os.environ.get("LLMCLS_FAULT_STAGES", "fetch,preprocess,train,evaluate").split(",")
SEED = int(os.environ.get("LLMCLS_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
# core/outputs.py's temporary siblings and commit journals
LEFTOVER = re.compile(r"\.[^/]+\.llmcls-(?:[0-9a-f]{6}-\d+-\d+-(?:new|old)-[0-9a-f]{6}|journal)$")


def digest(path: Path) -> str | None:
    """sha256 of a file, or of a folder's (relative path, content) pairs; None when absent."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = hashlib.sha256()
    for file in files:
        total.update(str(file.relative_to(path)).encode() + hashlib.sha256(file.read_bytes()).digest())
    return total.hexdigest()


def locked_outs(project: Path) -> dict[str, dict[str, str]]:
    """Each stage's outputs and their hashes as dvc.lock records them."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {name: {o["path"]: o.get("md5") for o in stage.get("outs", [])} for name, stage in lock.items()}


def leftovers(project: Path) -> list[str]:
    return [
        str(p) for top in ("data", "models", "metrics") for p in (project / top).rglob(".*") if LEFTOVER.search(p.name)
    ]


def process_with(words: bytes, under: Path | None = None) -> int | None:
    """A process whose command line holds ``words`` (and whose folder is inside ``under``), if any."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if words in cmdline.read_bytes() and (
                under is None or os.readlink(cmdline.parent / "cwd").startswith(str(under))
            ):
                return int(cmdline.parent.name)
        except OSError:  # the process ended while we looked
            continue
    return None


def stage_running(stage: str, project: Path) -> bool:
    """Whether ``project``'s ``stage`` has a process (another project's, such as a parallel test's, does not count)."""
    return process_with(f"stages/{stage}.py".encode(), under=project) is not None


def kill_during(project: Path, stage: str, delay: float) -> bool:
    """`dvc repro -f -s STAGE`, SIGKILLed with all its children ``delay`` s after the stage's process starts.
    Returns whether the stage was still running when the kill landed."""
    repro = subprocess.Popen(
        ["dvc", "repro", "-f", "--no-run-cache", "-s", stage],
        cwd=project,
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not stage_running(stage, project):
        if repro.poll() is not None:  # over before it was seen (a fast stage): nothing was interrupted
            return False
        assert time.time() < deadline, f"{stage} did not start in 120 s"
        time.sleep(0.01)
    time.sleep(delay)
    landed = repro.poll() is None and stage_running(stage, project)
    os.killpg(repro.pid, signal.SIGKILL)
    repro.wait()
    return landed


def kill_and_recover(project: Path, reference: Path, stage: str, delay: float) -> tuple[bool, str | None]:
    """Kill ``stage`` ``delay`` s in (kill_during), check its outputs, run `dvc repro`: (whether the kill landed
    mid-stage, the first problem or None). ``reference`` is the same project after an uninterrupted run."""
    expected = locked_outs(reference)
    landed = kill_during(project, stage, delay)
    for out in expected[stage]:
        if digest(project / out) not in (None, digest(reference / out)):
            return landed, f"{stage} killed after {delay:.2f}s: {out} half-written"
    result = run(["dvc", "repro"], project, check=False)
    if result.returncode != 0:
        return landed, f"{stage} at {delay:.2f}s (landed {landed}), the next dvc repro failed:\n{result.stderr}"
    if locked_outs(project) != expected:
        return landed, f"after killing {stage}, outputs differ"
    if leftovers(project):
        return landed, f"{stage}'s temporary files survived the next run"
    return landed, None


def test_each_stage_killed_leaves_nothing_half_written_and_the_next_repro_ends_the_same(reproduced, reproduced_copy):
    """One kill per stage at a random moment (LLMCLS_FAULT_SEED reproduces a run's moments)."""
    project, reference = reproduced_copy, reproduced.path
    rng = random.Random(SEED)
    print(f"fault seed {SEED}")
    for stage in KILLED:
        _, problem = kill_and_recover(project, reference, stage, rng.uniform(0, 3.0 if stage == "train" else 1.5))
        assert problem is None, f"seed {SEED}: {problem}"
    assert "up to date" in run(["dvc", "status"], project).stdout


def limited_writes(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


LIVE = {"metrics/train"}  # DVCLive's curves: appended as training runs (a resumed run continues them), not swapped


def age_outputs(project: Path, outs) -> dict[str, str | None]:
    """Make ``outs`` differ from anything the stage writes (a file in each folder, a byte on each file), so that
    after a failed write "the old outputs kept" cannot be mistaken for "the same ones written again"."""
    for out in outs:
        path = project / out
        if path.is_dir():
            (path / "from-an-earlier-run.txt").write_text("old\n")
        elif path.is_file():
            path.chmod(0o644)
            with path.open("ab") as handle:
                handle.write(b"\n")
    return {out: digest(project / out) for out in outs}


def strike(project: Path, reference: Path, stage: str, point: str, nth: int, action: str) -> tuple[bool, str | None]:
    """Run ``stage`` (dvc.lock's command) with LLMCLS_FAULT set to ``stage:point:nth:action``, over aged outputs:
    (whether the fault landed, the first problem or None). A full disk must be one `llmcls: error:` that keeps
    the old outputs whole; after a kill each output must be old, new or absent, and the next `dvc repro` must
    finish the set (the journal rolled forward) and end as the reference, with no temporary left."""
    command = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["cmd"]
    outs = [out for out in locked_outs(reference)[stage] if out not in LIVE]
    old = age_outputs(project, outs)
    log = project.parent / f"faults-{stage}-{point}-{nth}-{action}.log"
    log.unlink(missing_ok=True)
    env = ENV | {"LLMCLS_FAULT": f"{stage}:{point}:{nth}:{action}", "LLMCLS_FAULT_LOG": str(log)}
    result = subprocess.run(command, shell=True, cwd=project, env=env, capture_output=True, text=True)
    landed = log.exists() and log.read_text().strip() == f"{stage}:{point}:{nth}:{action}"
    now = {out: digest(project / out) for out in outs}
    if not landed:
        return False, f"{stage}:{point}:{nth} was never reached (exit {result.returncode})"
    if action == "enospc":
        if result.returncode != 1 or "Traceback" in result.stderr or "llmcls: error:" not in result.stderr:
            return True, f"not one clean error:\n{result.stderr[-3000:]}"
        if not any(why in result.stderr for why in FULL_DISK.values()):
            return True, f"the error does not say the disk is full:\n{result.stderr[-2000:]}"
        if now != old:
            return True, f"the old outputs were not kept: {[o for o in outs if now[o] != old[o]]}"
        if leftovers(project):
            return True, f"temporary files left: {leftovers(project)}"
        return True, None
    new = {out: digest(reference / out) for out in outs}
    if torn := [o for o in outs if now[o] not in (None, old[o], new[o])]:
        return True, f"half-written after the kill: {torn}"
    again = run(["dvc", "repro"], project, check=False)
    if again.returncode != 0:
        return True, f"the next dvc repro failed:\n{again.stderr[-3000:]}"
    if {out: digest(project / out) for out in outs} != new:
        return True, "the next dvc repro did not end as the uninterrupted run"
    if left := leftovers(project):
        # DVC restored the outputs from its run cache without running the stage: the dead writer's temporaries
        # stay (git ignores them) until the next write beside them, which cleans them.
        ignored = [run(["git", "check-ignore", "-q", path], project, check=False).returncode == 0 for path in left]
        if not all(ignored):
            return True, f"the killed writer's temporaries show in git: {left}"
        run(["dvc", "repro", "-f", "-s", stage], project)
        if leftovers(project):
            return True, f"temporary files or a journal survived the next write: {leftovers(project)}"
    return True, None


# A lone output's write and rename, a set's second rename (journal written, one output swapped in) and the
# model download;
# benchmarks/reliability.py strikes every stage at each point.
STRIKES = [
    ("fetch_model", "write", 1, "enospc"),
    ("fetch", "rename", 1, "kill"),
    ("preprocess", "rename", 2, "kill"),
    ("evaluate", "rename", 2, "enospc"),
]


@pytest.mark.parametrize(("stage", "point", "nth", "action"), STRIKES)
def test_a_fault_in_the_write_phase_keeps_the_old_set_or_ends_as_the_new(
    stage, point, nth, action, reproduced, reproduced_copy
):
    landed, problem = strike(reproduced_copy, reproduced.path, stage, point, nth, action)
    assert landed and problem is None, problem


def full_disk(project: Path, stage: str, limit: int) -> tuple[int, str | None]:
    """Run ``stage`` as dvc.lock's command, not under dvc repro (which removes a stage's outputs before running
    it), with files limited to ``limit`` bytes, over aged outputs (so the new ones would differ): (its exit
    code, the first problem or None). Expected: one `llmcls: error:` naming the full disk, no traceback, no
    temporary file, the previous outputs kept as they were. Train's curves are cleared at its start and written
    live: git brings them back (cache: false). Exit code 0: every file fitted, no fault happened."""
    command = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]["cmd"]
    outs = [out for out in locked_outs(project)[stage] if out not in LIVE]
    before = age_outputs(project, outs)
    result = subprocess.run(
        command, shell=True, cwd=project, env=ENV, capture_output=True, text=True, preexec_fn=limited_writes(limit)
    )
    if result.returncode == 0:
        return 0, None
    if result.returncode != 1 or "llmcls: error:" not in result.stderr or "Traceback" in result.stderr:
        return result.returncode, f"not one clean error:\n{result.stdout}{result.stderr}"
    if not any(why in result.stderr for why in FULL_DISK.values()):
        return result.returncode, f"the error does not say the disk is full:\n{result.stderr}"
    if leftovers(project):
        return result.returncode, f"temporary files left: {leftovers(project)}"
    if stage == "train":
        run(["git", "checkout", "--", *LIVE], project)
    if {out: digest(project / out) for out in outs} != before:
        return result.returncode, "the previous outputs were not kept"
    return result.returncode, None


@pytest.mark.parametrize("stage", ["preprocess", "train"])
def test_a_full_disk_is_one_clear_error_and_keeps_the_previous_outputs(stage, reproduced_copy):
    code, problem = full_disk(reproduced_copy, stage, 4096)
    assert code == 1 and problem is None, problem


def test_a_corrupted_cache_file_is_found_before_it_is_used(reproduced, reproduced_copy):
    project = reproduced_copy
    out = "data/split"
    md5 = locked_outs(project)["split"][out]
    listing = project / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    entry = yaml.safe_load(listing.read_text())[0]  # a .dir listing: [{md5, relpath}, ...]
    victim = project / ".dvc" / "cache" / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:-8] + b"CORRUPT!")
    clean = run([sys.executable, "-m", "llmcls.cli.main", "verify"], reproduced.path)
    assert "cache objects match" in clean.stdout
    result = run([sys.executable, "-m", "llmcls.cli.main", "verify"], project, check=False)
    assert result.returncode == 1 and f"{out}/{entry['relpath']}" in result.stderr, result.stderr
    assert "dvc repro -f" in result.stderr and "split" in result.stderr


def test_two_repros_at_once_the_second_stops_at_the_lock(reproduced, reproduced_copy):
    project = reproduced_copy
    first = subprocess.Popen(
        ["dvc", "repro", "-f", "-s", "train"], cwd=project, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while not stage_running("train", project):
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.01)
    second = run(["dvc", "repro", "evaluate"], project, check=False)
    assert first.wait() == 0
    assert second.returncode != 0 and "lock" in second.stderr.lower(), second.stderr
    assert "up to date" in run(["dvc", "status"], project).stdout
    assert locked_outs(project) == locked_outs(reproduced.path)


def kill_sweep_while_queueing(project: Path, rng: random.Random, edited: bool) -> str | None:
    """`llmcls sweep --seeds 3,4` SIGKILLed at a random moment while `dvc exp run --queue` has HEAD detached
    (and the workspace stashed), optionally with a user's uncommitted edit, then swept again: the first problem,
    or None when HEAD is on its branch, the edit is there and each point is queued exactly once."""
    llmcls = [BIN + "/llmcls"]
    branch = run(["git", "symbolic-ref", "HEAD"], project).stdout
    run(["dvc", "queue", "remove", "--queued"], project)
    if edited:
        with (project / "params.yaml").open("a") as params:
            params.write("# an uncommitted note\n")
    before = run(["git", "diff", "HEAD"], project).stdout
    sweep = subprocess.Popen(
        [*llmcls, "sweep", "--seeds", "3,4"], cwd=project, env=ENV, start_new_session=True, stdout=subprocess.PIPE
    )
    # The moment that matters: while DVC has HEAD detached (elsewhere a kill changes nothing).
    while (project / ".git" / "HEAD").read_text().startswith("ref:") and sweep.poll() is None:
        time.sleep(0.001)
    time.sleep(rng.uniform(0, 0.2))
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    again = run([*llmcls, "sweep", "--seeds", "3,4"], project, check=False)
    problem = None
    if again.returncode != 0:
        problem = f"the next sweep failed: {again.stderr}"
    elif run(["git", "symbolic-ref", "HEAD"], project, check=False).stdout != branch:
        problem = f"HEAD is not back on {branch}: {again.stdout}"
    elif run(["git", "diff", "HEAD"], project).stdout != before:
        problem = f"the workspace is not as it was: {again.stdout}"
    else:
        status = queue_status(project)
        if [status.count(f"-s{seed} ") for seed in (3, 4)] != [1, 1]:
            problem = f"points not queued once each:\n{status}"
    run(["git", "checkout", "params.yaml"], project, check=False)
    return problem


def test_a_sweep_killed_while_queueing_leaves_the_workspace_as_it_was_and_the_next_queues_the_rest(reproduced_copy):
    """`llmcls sweep` killed inside `dvc exp run --queue`, with a clean workspace and with an uncommitted edit."""
    rng = random.Random(SEED)
    print(f"fault seed {SEED}")
    for edited in (False, True):
        problem = kill_sweep_while_queueing(reproduced_copy, rng, edited)
        assert problem is None, f"seed {SEED}: {problem}"


def kill_queue_worker(project: Path, rng: random.Random) -> tuple[str | None, str]:
    """`llmcls sweep --seeds 1 --start`, its worker SIGKILLed (with its run and stage processes, as when a
    machine goes down) at a random moment of the point's run, then swept again and waited for: (the first
    problem or None, the first sweep's output). Expected: nothing recorded from the killed run while DVC lists it
    as "Running"; the next sweep releases it, queues it again, and it finishes; no temporary copy left."""
    llmcls = [BIN + "/llmcls"]
    start = time.time()
    first = run([*llmcls, "sweep", "--seeds", "1", "--start"], project)
    if time.time() - start > 60:  # it returns once queued: the queue runs in the background
        return "the sweep waited for its queue", first.stdout
    while (pid := process_with(b"exec-run", under=project)) is None:  # the run of a queued point
        if time.time() - start > 180:
            return "no queued experiment started", first.stdout
        time.sleep(0.05)
    group = os.getpgid(pid)  # the worker's: it, the run, dvc repro and the stage processes
    time.sleep(rng.uniform(0, 4))
    os.killpg(group, signal.SIGKILL)
    if "Running" not in queue_status(project):
        return "the killed run is not listed as running (nothing to recover: the test cannot fail)", first.stdout
    if recorded := run(["dvc", "exp", "list", "--name-only"], project).stdout.strip():
        return f"recorded from a killed run: {recorded}", first.stdout
    again = run([*llmcls, "sweep", "--seeds", "1", "--start"], project).stdout
    if "marked failed and removed from the queue" not in again or again.count("dvc exp run --queue") != 1:
        return f"the next sweep did not release and queue the killed point:\n{again}", first.stdout
    status = wait_for_queue(project)
    if status.count("Success") != 1 or "Failed" in status:
        return f"the sweep did not finish:\n{status}", first.stdout
    names = sorted(re.findall(r" -n (\S+)", first.stdout))
    if sorted(run(["dvc", "exp", "list", "--name-only"], project).stdout.split()) != names:
        return "experiments are not the sweep's points, once each", first.stdout
    if left := list((project / ".dvc" / "tmp" / "exps").glob("tmp*")):
        return f"temporary copies left: {left}", first.stdout
    return None, first.stdout


def test_a_killed_queue_worker_records_nothing_and_the_next_sweep_finishes_the_rest(reproduced_copy):
    """A sweep's worker killed mid-run; then the report has both seeds (seed 0 is the reproduced project's
    own run)."""
    project, llmcls = reproduced_copy, [BIN + "/llmcls"]
    print(f"fault seed {SEED}")
    problem, first = kill_queue_worker(project, random.Random(SEED))
    assert problem is None, f"seed {SEED}: {problem}"
    assert first.count("dvc exp run --queue") == 1 and "dvc queue start -j 1" in first
    assert "# 0 queued, 2 skipped" in run([*llmcls, "sweep", "--seeds", "0,1"], project).stdout
    run([*llmcls, "report"], project)
    report = (project / "metrics" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| custom ") and "lora" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "2" and " ± " in cells[4]  # two seeds, mean ± std
    assert (project / "metrics" / "report" / "per_class_f1_custom.png").is_file()
    assert (project / "metrics" / "report" / "confusion_custom.png").is_file()  # read from the exp commit
    assert (project / "metrics" / "report" / "reliability_custom.png").is_file()
    assert "Expected calibration error: " in report
