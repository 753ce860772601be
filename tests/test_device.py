"""--device of every command: spelling checked when parsed, the machine checked before any work."""

from __future__ import annotations

import argparse

import pytest
import torch

from rlcg.cli import main
from rlcg.device import DeviceError, device_name, resolve_device

HAS_CUDA = torch.cuda.is_available()
# No machine has this many GPUs: an error on every machine, with or without CUDA.
MISSING_GPU = "cuda:99"


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_names_rlcg_accepts(name):
    assert device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "mps", ""])
def test_other_device_names_are_refused_with_the_choices(name):
    with pytest.raises(argparse.ArgumentTypeError, match="choose auto"):
        device_name(name)


def test_auto_picks_cuda_only_where_there_is_one():
    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA: --device cuda is valid here")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA on this machine")
def test_cuda_with_cuda_is_kept():
    assert resolve_device("cuda") == "cuda" and resolve_device("cuda:0") == "cuda:0"


def test_a_gpu_the_machine_lacks_is_an_error():
    with pytest.raises(DeviceError, match=MISSING_GPU):
        resolve_device(MISSING_GPU)


def test_cli_refuses_an_unknown_device_when_parsing(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--policy", "default", "--device", "gpu"])
    assert exit_.value.code == 2 and "unknown device 'gpu'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "--policy", "default", "--episodes", "1"],
        ["translate", "no-run", "--data", "no-data"],
        ["train", "--method", "gan", "--sim-data", "no-data", "--real-data", "no-data"],
        ["train-q", "--data", "no-data", "--steps", "1"],
    ],
    ids=lambda argv: argv[0],
)
def test_cli_checks_the_device_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "--device", MISSING_GPU]) == 2
    assert MISSING_GPU in capsys.readouterr().err
    assert not out.exists()  # nothing written: the error comes first


def test_a_device_for_a_policy_that_uses_none_is_refused(tmp_path, capsys):
    for command in (["collect", "--out", str(tmp_path / "out")], ["eval"], ["sim"]):
        assert main([*command, "--policy", "scripted", "--episodes", "1", "--device", "auto"]) == 2
        assert "--device applies to learned policies, not to 'scripted'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_train_names_its_own_option_for_a_missing_gpu(capsys):
    assert main(["bench", "train", "--devices", MISSING_GPU, "--steps", "1"]) == 2
    assert f"--devices {MISSING_GPU}:" in capsys.readouterr().err
