"""llmcls.cli.launch: which `accelerate launch` (or srun) a machine runs, from params and the environment."""

import pytest

from llmcls.cli.launch import IN_STEP, Node, accelerate_command, node_from_env, srun_command
from llmcls.core.errors import LlmclsError

SCRIPT = ["stages/train.py", "--out", "models/classifier"]


def test_one_machine_is_todays_command():
    command = accelerate_command("configs/accelerate/ddp.yaml", 2, 1, None, SCRIPT)
    assert command[:5] == ["accelerate", "launch", "--quiet", "--config_file", "configs/accelerate/ddp.yaml"]
    assert command[5:9] == ["--num_processes", "2", "--num_machines", "1"]
    assert "--machine_rank" not in command and command[-3:] == SCRIPT


def test_machine_rank_and_address_come_from_the_environment():
    env = {"LLMCLS_MACHINE_RANK": "1", "LLMCLS_MAIN_IP": "10.0.0.5", "LLMCLS_MAIN_PORT": "29600"}
    node = node_from_env(env, 2)
    assert node == Node(1, "10.0.0.5", 29600)
    command = accelerate_command("configs/accelerate/ddp.yaml", 4, 2, node, SCRIPT)
    # accelerate counts processes over every machine: 4 per machine x 2
    assert command[command.index("--num_processes") + 1] == "8"
    assert command[command.index("--machine_rank") + 1] == "1"
    assert command[command.index("--main_process_ip") + 1] == "10.0.0.5"
    assert command[command.index("--rdzv_backend") + 1] == "static"
    assert node_from_env({"LLMCLS_MACHINE_RANK": "0", "LLMCLS_MAIN_IP": "h"}, 2).main_port == 29500


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "LLMCLS_MACHINE_RANK"),
        ({"LLMCLS_MACHINE_RANK": "1"}, "LLMCLS_MAIN_IP"),
        ({"LLMCLS_MACHINE_RANK": "2", "LLMCLS_MAIN_IP": "h"}, "outside 0..1"),
        ({"LLMCLS_MACHINE_RANK": "one", "LLMCLS_MAIN_IP": "h"}, "whole number"),
    ],
)
def test_a_multi_machine_run_without_its_place_is_one_clear_error(env, message):
    with pytest.raises(LlmclsError, match=message):
        node_from_env(env, 2)


def test_on_a_slurm_batch_host_the_stage_starts_one_launcher_per_node():
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2", "LLMCLS_MAIN_IP": "node-a"}
    assert node_from_env(env, 2) is None  # not in the per-node step yet: srun it
    command, step_env = srun_command(env, 2, ["--num-machines", "2", "--", *SCRIPT])
    assert command[:5] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert command[command.index("-m") :] == ["-m", "llmcls.cli.launch", "--num-machines", "2", "--", *SCRIPT]
    assert step_env[IN_STEP] == "1" and step_env["LLMCLS_MAIN_PORT"] == "29500"
    # inside the step each node's copy takes its rank from SLURM
    assert node_from_env(step_env | {"SLURM_NODEID": "1"}, 2) == Node(1, "node-a", 29500)


def test_an_allocation_smaller_than_num_machines_is_refused():
    with pytest.raises(LlmclsError, match="--nodes=4"):
        srun_command({"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2", "LLMCLS_MAIN_IP": "a"}, 4, [])
