"""How dvc.yaml's train stage starts: `accelerate launch` on this machine, or on every machine of a multi-node run.

``python -m llmcls.cli.launch --config-file F --num-processes N --num-machines M -- stages/train.py ...``

The world size (N processes per machine x M machines) is an experiment setting and comes from params.yaml. Which
machine this is, and where the main process listens, are facts of the cluster, not of the experiment: they come
from the environment, so dvc.lock's hashes are the same on any machines:

- ``LLMCLS_MACHINE_RANK``, ``LLMCLS_MAIN_IP``, ``LLMCLS_MAIN_PORT`` (default 29500): set by hand on each machine;
  rank 0 runs ``dvc repro`` / ``dvc exp run``, the others ``llmcls train-node``.
- Inside a SLURM allocation (``sbatch slurm/train.sbatch``) with none of those set, the stage, run by DVC on the
  batch host, starts itself once per node with ``srun``; each copy takes its rank from ``SLURM_NODEID`` and the
  main address from the first host of ``SLURM_JOB_NODELIST``.

Rendezvous is static (accelerate's default): each machine is told its rank, so two launchers on one host do not
race for ranks the way identical c10d commands can.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from llmcls.core.errors import LlmclsError

DEFAULT_PORT = 29500
# Set by the srun step this module starts, so each node's copy launches instead of calling srun again.
IN_STEP = "LLMCLS_SLURM_STEP"


@dataclass(frozen=True)
class Node:
    """This machine's place in a multi-machine run."""

    rank: int
    main_ip: str
    main_port: int


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise LlmclsError(f"{key}={env[key]!r}: expected a whole number") from None


def node_from_env(env: Mapping[str, str], num_machines: int) -> Node | None:
    """This machine's rank and the main process's address, from LLMCLS_* or (inside srun) SLURM's variables.
    None inside a SLURM allocation that has not started its per-node step yet (the caller runs srun)."""
    port = _int(env, "LLMCLS_MAIN_PORT") if env.get("LLMCLS_MAIN_PORT") else DEFAULT_PORT
    if "LLMCLS_MACHINE_RANK" in env:
        rank = _int(env, "LLMCLS_MACHINE_RANK")
        if not env.get("LLMCLS_MAIN_IP"):
            raise LlmclsError("LLMCLS_MACHINE_RANK is set: set LLMCLS_MAIN_IP to the address of machine 0 too")
    elif env.get(IN_STEP):
        rank = _int(env, "SLURM_NODEID")
    elif env.get("SLURM_JOB_ID"):
        return None
    else:
        raise LlmclsError(
            f"train.launch.num_machines is {num_machines}: on each machine set LLMCLS_MACHINE_RANK (0 runs "
            "`dvc repro`, the others `llmcls train-node`), LLMCLS_MAIN_IP (machine 0's address) and LLMCLS_MAIN_PORT, "
            "or run inside a SLURM allocation (sbatch slurm/train.sbatch)"
        )
    if not 0 <= rank < num_machines:
        raise LlmclsError(f"machine rank {rank} is outside 0..{num_machines - 1} (train.launch.num_machines)")
    return Node(rank, env["LLMCLS_MAIN_IP"], port)


def accelerate_command(
    config_file: str, num_processes: int, num_machines: int, node: Node | None, script: Sequence[str]
) -> list[str]:
    """`accelerate launch` for this machine. accelerate counts processes over all machines."""
    command = ["accelerate", "launch", "--quiet", "--config_file", config_file]
    command += ["--num_processes", str(num_processes * num_machines), "--num_machines", str(num_machines)]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if node is not None:
        command += ["--machine_rank", str(node.rank), "--main_process_ip", node.main_ip]
        command += ["--main_process_port", str(node.main_port), "--rdzv_backend", "static"]
    return [*command, *script]


def slurm_hosts(env: Mapping[str, str]) -> list[str]:
    """The allocation's host names, in SLURM's node order (node 0 first)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise LlmclsError("SLURM_JOB_NODELIST is not set: run the multi-node train stage inside an sbatch allocation")
    result = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
    if result.returncode != 0:
        raise LlmclsError(f"scontrol show hostnames {nodelist}: {result.stderr.strip()}")
    return result.stdout.split()


def srun_command(env: Mapping[str, str], num_machines: int, argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The srun step that runs this launcher once on each of the allocation's first ``num_machines`` nodes."""
    nodes = _int(env, "SLURM_JOB_NUM_NODES") if env.get("SLURM_JOB_NUM_NODES") else len(slurm_hosts(env))
    if nodes < num_machines:
        raise LlmclsError(
            f"train.launch.num_machines is {num_machines} but SLURM job {env.get('SLURM_JOB_ID')} has {nodes} "
            f"node(s): submit with --nodes={num_machines}"
        )
    main_ip = env.get("LLMCLS_MAIN_IP") or slurm_hosts(env)[0]
    step_env = dict(env) | {IN_STEP: "1", "LLMCLS_MAIN_IP": main_ip}
    step_env.setdefault("LLMCLS_MAIN_PORT", str(DEFAULT_PORT))
    # One task per node; --kill-on-bad-exit: a rank that fails ends the others instead of leaving them at a barrier.
    command = ["srun", f"--nodes={num_machines}", f"--ntasks={num_machines}", "--ntasks-per-node=1"]
    command += ["--kill-on-bad-exit=1", sys.executable, "-m", "llmcls.cli.launch", *argv]
    return command, step_env


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--params", "params_path", default="params.yaml", show_default=True, help="params file (train.launch)")
@click.option("--configs", required=True, help="folder of accelerate configs, one <strategy>.yaml per strategy")
@click.argument("script", nargs=-1, type=click.UNPROCESSED, required=True)
def main(params_path: str, configs: str, script: tuple[str, ...]) -> None:
    """Replace this process with accelerate launch (or, on a SLURM batch host, with srun of this command).
    The strategy, processes and machines come from validated params (train.launch), never from a shell line."""
    from llmcls.config.params import load_params

    launch = load_params(params_path).train.launch
    config_file = str(Path(configs) / f"{launch.strategy}.yaml")
    num_processes, num_machines = launch.num_processes, launch.num_machines
    env = dict(os.environ)
    node = node_from_env(env, num_machines) if num_machines > 1 else None
    if num_machines > 1 and node is None:
        command, env = srun_command(env, num_machines, sys.argv[1:])
    else:
        command = accelerate_command(config_file, num_processes, num_machines, node, script)
    print(f"llmcls launch: {shlex.join(command)}", flush=True)
    # exec: the launcher's signals and exit status are the stage's own (DVC kills and waits on this pid).
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
