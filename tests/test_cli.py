"""The command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np

from gpucnn.checkpoint import load_weights
from gpucnn.models import digits_cnn
from tests.test_data import _mnist_folder


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "gpucnn", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GPUCNN_DEVICE": "cpu", **(env or {})},
    )


def test_train_on_digits_prints_epochs_and_test_accuracy_and_saves(tmp_path):
    path = tmp_path / "w.npz"
    result = run("train", "--epochs", "2", "--no-progress", "--device", "cpu", "--save", str(path))
    assert result.returncode == 0, result.stderr
    assert "epoch   1  lr 0.05  " in result.stdout  # cosine annealing, the default:
    assert "epoch   2  lr 0.025  " in result.stdout  # half-way through two epochs
    accuracy = float(result.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9
    model = digits_cnn()
    load_weights(model, path)
    assert np.abs(model.params["0.weight"]).sum() > 0


def test_saved_weights_load_to_evaluate_and_to_train_on(tmp_path):
    path = tmp_path / "w.npz"
    trained = run("train", "--epochs", "1", "--no-progress", "--save", str(path))
    assert trained.returncode == 0, trained.stderr
    score = trained.stdout.split("test accuracy ")[1].splitlines()[0]
    evaluated = run("train", "--epochs", "0", "--load", str(path), "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"weights loaded from {path}" in evaluated.stdout and "epoch" not in evaluated.stdout
    # the same weights on the same split: the score the training run printed, to the digit
    assert evaluated.stdout.split("test accuracy ")[1].splitlines()[0] == score
    more = run("train", "--epochs", "1", "--load", str(path), "--no-progress")
    assert more.returncode == 0, more.stderr
    assert "weights loaded" in more.stdout and "epoch   1" in more.stdout
    assert more.stdout.split("test accuracy ")[1].splitlines()[0] != score  # trained on


def test_weights_of_another_model_are_refused(tmp_path):
    path = tmp_path / "w.npz"
    assert run("train", "--epochs", "1", "--no-progress", "--save", str(path)).returncode == 0
    folder = _mnist_folder(tmp_path, n_train=20, n_test=10)
    result = run("train", "--data", f"mnist:{folder}", "--epochs", "0", "--load", str(path))
    assert result.returncode == 2 and "does not match the model" in result.stderr
    assert "Traceback" not in result.stderr and "test accuracy" not in result.stdout
    result = run("train", "--epochs", "0", "--load", str(tmp_path / "none.npz"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_train_on_mnist_files(tmp_path):
    folder = _mnist_folder(tmp_path, n_train=20, n_test=10)
    result = run(
        "train", "--data", f"mnist:{folder}", "--epochs", "1", "--no-progress", "--batch-size", "8"
    )
    assert result.returncode == 0, result.stderr
    assert "Conv2D(1, 6, kernel_size=5, padding=2)" in result.stdout
    assert "test accuracy" in result.stdout


def test_errors_are_reported_not_raised(tmp_path):
    result = run("train", "--data", f"mnist:{tmp_path}/nowhere", "--epochs", "1")
    assert result.returncode == 2 and "MNIST folder not found" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("train", "--epochs", "0")  # nothing to evaluate but an untrained model
    assert result.returncode == 2 and "--epochs 0 evaluates saved weights" in result.stderr
    assert result.stdout == ""  # refused before any data is loaded
    result = run("train", "--epochs", "-1")
    assert result.returncode == 2 and "must be >= 0" in result.stderr
    for option, value, words in [
        ("--data", "cifar", "must be 'digits' or 'mnist:PATH'"),
        ("--data", "mnist:", "must be 'digits' or 'mnist:PATH'"),  # not the current folder
        ("--lr", "0", r"must be in (0.0, inf), got 0.0"),
        ("--lr", "nan", r"must be in (0.0, inf), got nan"),
        ("--lr", "fast", "must be a number, got 'fast'"),
        ("--momentum", "1", r"must be in [0.0, 1.0), got 1.0"),
        ("--weight-decay", "-0.1", r"must be in [0.0, inf), got -0.1"),
    ]:  # refused as the command line is read: before any data is loaded or model shown
        result = run("train", option, value)
        assert result.returncode == 2 and f"argument {option}: {words}" in result.stderr
        assert result.stdout == ""
    for command in ("train", "hopfield-demo"):
        result = run(command, "--seed", "-1")
        assert result.returncode == 2 and "argument --seed: must be >= 0" in result.stderr
    result = run("train", "--batch-size", "2.5")  # argparse would name the type function
    assert result.returncode == 2 and "--batch-size: must be an integer, got '2.5'" in result.stderr


def test_cuda_graph_training_on_the_emulator_and_its_refusal_on_the_cpu(tmp_path):
    folder = _mnist_folder(tmp_path, n_train=20, n_test=10)
    args = ("train", "--data", f"mnist:{folder}", "--epochs", "1", "--no-progress")
    result = run(*args, "--batch-size", "8", "--device", "emulator", "--cuda-graph")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    result = run(*args, "--device", "cpu", "--cuda-graph")
    assert result.returncode == 2 and "gpu or emulator device" in result.stderr


def test_an_unwritable_save_path_fails_before_training(tmp_path):
    result = run("train", "--save", str(tmp_path / "missing" / "w.npz"), "--no-progress")
    assert (
        result.returncode == 2 and "folder" in result.stderr and "does not exist" in result.stderr
    )
    assert "epoch" not in result.stdout  # refused up front, not after the run it would lose
    result = run("train", "--save", str(tmp_path), "--no-progress")
    assert result.returncode == 2 and "it is a folder" in result.stderr
    assert "Traceback" not in result.stderr and "epoch" not in result.stdout


def test_info_names_versions_and_the_device():
    result = run("info", env={"GPUCNN_DEVICE": "auto"})
    assert result.returncode == 0, result.stderr
    assert "gpucnn   0." in result.stdout and "numpy" in result.stdout
    assert "device   " in result.stdout
    assert "cores, at most 4 unless GPUCNN_CPU_THREADS says); malloc " in result.stdout
    assert "threads; 1 inside the workers" in result.stdout  # the BLAS that sets CPU speed
    assert "gpu.nvml" in result.stdout or "gpu.name" in result.stdout  # a fact or why not
    assert "gpu.unavailable" not in result.stdout  # the reasons, one line each, not the dict


def test_info_says_how_to_get_faster_blas_kernels_where_it_can(monkeypatch, capsys):
    import argparse

    from gpucnn import __main__ as cli
    from gpucnn.cpu import _parallel

    monkeypatch.setattr(_parallel, "blas_kernel_advice", lambda libraries: "set THIS=that")
    assert cli._info(argparse.Namespace(device=None)) == 0
    assert "blas     set THIS=that\n" in capsys.readouterr().out
    monkeypatch.setattr(_parallel, "blas_kernel_advice", lambda libraries: None)
    cli._info(argparse.Namespace(device=None))
    assert "THIS" not in capsys.readouterr().out


def test_train_on_the_cpu_passes_on_blas_advice_before_training(monkeypatch, capsys):
    import gpucnn
    from gpucnn import __main__ as cli
    from gpucnn.cpu import _parallel

    monkeypatch.setattr(_parallel, "blas_kernel_advice", lambda: "set THIS=that")
    device = gpucnn.get_device()
    try:
        assert cli.main(["train", "--device", "cpu", "--epochs", "1", "--no-progress"]) == 0
    finally:
        gpucnn.set_device(device)
    out = capsys.readouterr().out
    assert "note: set THIS=that\n" in out and out.index("note:") < out.index("epoch   1")


def test_hopfield_demo_shows_text_and_a_picture(tmp_path):
    png = tmp_path / "demo.png"
    result = run("hopfield-demo", "--trials", "3", "--png", str(png))
    assert result.returncode == 0, result.stderr
    assert "8 figures of 12x10" in result.stdout and "recalled exactly:" in result.stdout
    assert result.stdout.count("##") > 10  # the figures, drawn as text
    if importlib.util.find_spec("matplotlib"):  # the plot extra
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    else:
        assert "no picture: matplotlib is not installed" in result.stdout and not png.exists()
    for noise in ("1.5", "1.0", "-0.1"):  # [0, 1): every pixel flipped is the negative
        result = run("hopfield-demo", "--noise", noise, "--no-png")
        assert result.returncode == 2 and "--noise" in result.stderr, noise
    result = run("hopfield-demo", "--noise", "0", "--trials", "1", "--no-png")
    assert result.returncode == 0 and "0% flipped" in result.stdout, result.stderr


def test_a_diverging_run_is_an_error_and_keeps_the_saved_weights(tmp_path):
    path = tmp_path / "w.npz"
    good = run("train", "--epochs", "1", "--no-progress", "--save", str(path))
    assert good.returncode == 0, good.stderr
    saved = path.read_bytes()
    result = run("train", "--epochs", "2", "--lr", "1e30", "--no-progress", "--save", str(path))
    assert result.returncode == 2 and "training diverged" in result.stderr
    assert "Traceback" not in result.stderr and "test accuracy" not in result.stdout
    assert path.read_bytes() == saved  # the NaN weights did not replace the good ones
