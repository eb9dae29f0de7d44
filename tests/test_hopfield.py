"""Hopfield networks on the NumPy path: the classic spec, properties, capacity, bad input."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpucnn import hopfield
from gpucnn.hopfield import HopfieldNetwork, random_patterns


def all_states(n):
    return np.array(list(itertools.product([1, -1], repeat=n)), np.float32)


def test_three_neuron_example_from_the_lecture():
    net = HopfieldNetwork(3)
    net.store([1, -1, 1])
    assert np.array_equal(net.weights, [[0, -1, 1], [-1, 0, -1], [1, -1, 0]])
    states = all_states(3)
    energies = dict(zip(map(tuple, states.astype(int)), net.energy(states), strict=True))
    for state, energy in energies.items():
        expected = -3.0 if state in ((1, -1, 1), (-1, 1, -1)) else 1.0
        assert energy == expected, state


def test_storing_more_patterns_adds_to_w():
    patterns = random_patterns(4, 10, seed=0)
    one_by_one = HopfieldNetwork(10)
    for pattern in patterns:
        one_by_one.store(pattern)
    at_once = HopfieldNetwork(10)
    at_once.store(patterns)
    expected = patterns.T @ patterns
    np.fill_diagonal(expected, 0)
    assert np.array_equal(one_by_one.weights, expected)
    assert np.array_equal(at_once.weights, expected) and at_once.stored == 4


def symmetric_weights(n, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, size=(n, n)).astype(np.float64)
    w = np.triu(w, 1)
    return w + w.T


def network_with(w):
    net = HopfieldNetwork(len(w), dtype=np.float64)
    net._w = w.copy()
    return net


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(["cyclic", "random"]),
)
def test_sequential_recall_converges_never_raises_energy_and_ends_at_a_fixed_point(n, seed, order):
    net = network_with(symmetric_weights(n, seed))
    states = np.where(np.random.default_rng(seed + 1).random((6, n)) < 0.5, -1.0, 1.0)
    result = net.recall(states, max_sweeps=1000, order=order, seed=seed)
    assert result.converged.all()
    assert np.all(np.diff(result.energies, axis=0) <= 0)
    # a converged state is a fixed point of the dynamics, and a local minimum of E
    assert np.array_equal(net.sweep_async(result.states), result.states)
    for state in result.states:
        for j in range(n):
            neighbour = state.copy()
            neighbour[j] *= -1
            assert net.energy(neighbour) >= net.energy(state)


def test_energy_never_increases_after_any_single_update():
    net = network_with(symmetric_weights(9, 3))
    state = np.where(np.random.default_rng(4).random(9) < 0.5, -1.0, 1.0)
    energy = net.energy(state)
    for j in range(9):  # one neuron at a time, by hand
        field = net.weights[j] @ state
        state[j] = 1.0 if field > 0 else (-1.0 if field < 0 else state[j])
        assert net.energy(state) <= energy
        energy = net.energy(state)


def test_a_zero_field_keeps_the_state():
    net = HopfieldNetwork(5)  # W = 0: every field is 0
    states = random_patterns(3, 5, seed=1)
    result = net.recall(states)
    assert np.array_equal(result.states, states) and result.converged.all()
    assert np.array_equal(result.sweeps, [1, 1, 1])
    assert np.array_equal(net.step_sync(states), states)


def test_synchronous_recall_reports_a_two_cycle_as_not_converged():
    net = HopfieldNetwork(2)
    net.store([1, -1])  # w12 = -1
    result = net.recall([1, 1], mode="sync", max_sweeps=50)
    assert not result.converged and result.sweeps == 2
    assert np.array_equal(net.step_sync(net.step_sync([1.0, 1.0])), [1.0, 1.0])
    asynchronous = net.recall([1, 1])
    assert asynchronous.converged and np.array_equal(asynchronous.states, [-1, 1])
    stable = net.recall([1, -1], mode="sync")
    assert stable.converged and stable.sweeps == 1


def test_synchronous_recall_follows_step_sync_past_its_host_checks():
    # Recall reads "is every state done?" back every 8 steps only; states here take up to 16
    # steps, and each must end, count its steps and record its energies as repeated
    # step_sync calls do, stopping at a fixed point or at a 2-cycle.
    net = HopfieldNetwork(35, dtype=np.float64)
    net.store(random_patterns(23, 35, seed=0))
    states = random_patterns(64, 35, seed=1000, dtype=np.float64)
    result = net.recall(states, mode="sync", max_sweeps=100)
    assert result.sweeps.max() > 8
    assert result.energies.shape == (result.sweeps.max() + 1, len(states))
    for i, state in enumerate(states):
        history = [state]
        while True:
            new = net.step_sync(history[-1])
            if np.array_equal(new, history[-1]) or (
                len(history) > 1 and np.array_equal(new, history[-2])
            ):
                break
            history.append(new)
        assert result.converged[i] == np.array_equal(new, history[-1])
        assert result.sweeps[i] == len(history)
        assert np.array_equal(result.states[i], new)
        energies = net.energy(np.stack([*history, new]))
        assert np.array_equal(result.energies[: len(history) + 1, i], energies)
        assert np.all(result.energies[len(history) + 1 :, i] == energies[-1])


def test_unlearning_raises_a_phantoms_energy():
    net = HopfieldNetwork(20)
    net.store(random_patterns(3, 20, seed=5))
    phantom = random_patterns(1, 20, seed=6)[0]
    before = net.energy(phantom)
    net.unlearn(phantom)
    assert net.energy(phantom) == before + (20 * 20 - 20) / 2
    assert np.all(np.diag(net.weights) == 0)


def test_recall_from_noise_with_few_patterns():
    n = 200
    patterns = random_patterns(5, n, seed=7)
    net = HopfieldNetwork(n)
    net.store(patterns)
    noisy = patterns.copy()
    flips = np.random.default_rng(8).random(noisy.shape) < 0.1
    noisy[flips] *= -1
    result = net.recall(noisy)
    assert np.array_equal(result.states, patterns) and result.converged.all()


def test_capacity_below_n_over_4_log_n_keeps_every_pattern_stable():
    n = 200
    p = int(n / (4 * math.log(n)))  # 9
    for seed in range(5):
        patterns = random_patterns(p, n, seed=seed)
        net = HopfieldNetwork(n)
        net.store(patterns)
        assert np.array_equal(net.step_sync(patterns), patterns), seed


def test_storkey_stores_more_than_hebb():
    n, p = 100, 20  # 0.2 n: past Hebb's 0.138 n
    patterns = random_patterns(p, n, seed=11)
    hebb, storkey = HopfieldNetwork(n), HopfieldNetwork(n)
    hebb.store(patterns)
    storkey.store(patterns, rule="storkey")
    hebb_stable = (hebb.step_sync(patterns) == patterns).all(axis=1).sum()
    storkey_stable = (storkey.step_sync(patterns) == patterns).all(axis=1).sum()
    assert storkey_stable == p > hebb_stable
    w = storkey.weights
    assert np.array_equal(w, w.T) and np.all(np.diag(w) == 0)


def test_storkey_first_pattern_is_hebb_over_n():
    x = random_patterns(1, 8, seed=2)[0]
    net = HopfieldNetwork(8, dtype=np.float64)
    net.store(x, rule="storkey")
    expected = np.outer(x, x) / 8
    np.fill_diagonal(expected, 0)
    assert np.allclose(net.weights, expected, rtol=0, atol=1e-15)


def test_repr_names_the_size_type_device_and_what_is_stored():
    net = HopfieldNetwork(6, dtype=np.float64)
    assert repr(net) == "HopfieldNetwork(6, dtype=float64, device='cpu', rule=None, stored=0)"
    net.store(random_patterns(2, 6, seed=0), rule="storkey")
    assert repr(net) == "HopfieldNetwork(6, dtype=float64, device='cpu', rule='storkey', stored=2)"


def test_save_and_load(tmp_path):
    net = HopfieldNetwork(12)
    net.store(random_patterns(3, 12, seed=1))
    net.save(tmp_path / "net.npz")
    again = HopfieldNetwork.load(tmp_path / "net.npz")
    assert np.array_equal(again.weights, net.weights)
    assert (again.rule, again.stored, again.n, again.dtype) == ("hebb", 3, 12, np.float32)
    bad = net.weights
    bad[0, 1] += 1  # no longer symmetric
    from gpucnn.checkpoint import save_arrays

    save_arrays(
        tmp_path / "bad.npz", {"weights": bad, "rule": np.array("hebb"), "stored": np.array(3)}
    )
    with pytest.raises(ValueError, match="symmetric"):
        HopfieldNetwork.load(tmp_path / "bad.npz")
    save_arrays(tmp_path / "other.npz", {"w": bad})
    with pytest.raises(ValueError, match="missing"):
        HopfieldNetwork.load(tmp_path / "other.npz")
    # checked by their headers, before any array is read: a member too many, a rule that is
    # not one name (a crafted file could make either as large as it likes)
    for extra, words in (
        ({"w": bad}, r"unexpected \['w'\]"),
        ({"rule": np.array(["hebb"] * 3)}, r"rule must be a rule's name, got <U4 \(3,\)"),
        ({"rule": np.array("oja")}, "unknown rule 'oja'"),
    ):
        arrays = {"weights": net.weights, "rule": np.array("hebb"), "stored": np.array(3)}
        save_arrays(tmp_path / "extra.npz", {**arrays, **extra})
        with pytest.raises(ValueError, match=words):
            HopfieldNetwork.load(tmp_path / "extra.npz")
    for stored in (np.array(-1), np.array(1.5), np.array([3, 3]), np.array("3")):
        arrays = {"weights": net.weights, "rule": np.array("hebb"), "stored": stored}
        save_arrays(tmp_path / "count.npz", arrays)
        with pytest.raises(ValueError, match="stored must be a non-negative integer"):
            HopfieldNetwork.load(tmp_path / "count.npz")
    for weights, words in (
        (net.weights.astype(np.float16), "float32 or float64 matrix, got float16"),
        (net.weights / 2, "hebb weights must be whole numbers"),  # a Storkey file relabelled
        # not a square matrix of at least 2 neurons, each in one way only
        (net.weights[:, :11], r"square float32 or float64 matrix, got float32 \(12, 11\)"),
        (net.weights[0], r"square float32 or float64 matrix, got float32 \(12,\)"),
        (np.zeros((2, 2, 2), np.float32), "square float32 or float64 matrix"),
        (np.zeros((1, 1), np.float32), r"square float32 or float64 matrix, got float32 \(1, 1\)"),
    ):
        arrays = {"weights": weights, "rule": np.array("hebb"), "stored": np.array(3)}
        save_arrays(tmp_path / "weights.npz", arrays)
        with pytest.raises(ValueError, match=words):
            HopfieldNetwork.load(tmp_path / "weights.npz")
    # the smallest network, with nothing stored: saved and loaded as it is
    empty = HopfieldNetwork(2)
    empty.save(tmp_path / "empty.npz")
    loaded = HopfieldNetwork.load(tmp_path / "empty.npz")
    assert (loaded.n, loaded.stored, loaded.rule) == (2, 0, None)
    assert np.array_equal(loaded.weights, np.zeros((2, 2)))
    storkey = HopfieldNetwork(12, dtype=np.float64)
    storkey.store(random_patterns(3, 12, seed=1), rule="storkey")
    storkey.save(tmp_path / "storkey.npz")  # fractional weights: loaded as they are
    assert np.array_equal(HopfieldNetwork.load(tmp_path / "storkey.npz").weights, storkey.weights)


def test_float32_exactness_is_checked(monkeypatch):
    monkeypatch.setattr(hopfield, "EXACT_FLOAT32", 1000)
    net = HopfieldNetwork(100)
    net.store(random_patterns(2, 100, seed=0))
    with pytest.raises(ValueError, match="float64"):
        net.store(random_patterns(20, 100, seed=1))
    assert net.stored == 2  # the failed store changed nothing
    HopfieldNetwork(100, dtype=np.float64).store(random_patterns(20, 100, seed=1))


def test_float32_exactness_is_refused_from_exactly_2_to_the_24(monkeypatch):
    # n * max|w| must stay below the limit: at it, a field could round.
    monkeypatch.setattr(hopfield, "EXACT_FLOAT32", 1000)
    net = HopfieldNetwork(100)
    pattern = random_patterns(1, 100, seed=0)
    net.store(np.repeat(pattern, 9, axis=0))  # max|w| = 9: 900
    with pytest.raises(ValueError, match="float64"):
        net.store(pattern)  # max|w| = 10: 1000, the limit itself
    assert net.stored == 9


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda net: net.store([1, 0, 1, -1]), ValueError, "only \\+1 and -1"),
        (lambda net: net.store([1, np.nan, 1, -1]), ValueError, "only \\+1 and -1"),
        # not rounded to float32's 1.0 before the check
        (lambda net: net.energy(np.array([1 + 1e-12, 1, 1, -1])), ValueError, "only \\+1"),
        (lambda net: net.step_sync(np.array([1, 3, 1, -1])), ValueError, "only \\+1"),
        (lambda net: net.store([1, -1, 1]), ValueError, r"shape \(4,\)"),
        (lambda net: net.store(np.ones((2, 2, 4))), ValueError, "shape"),
        (lambda net: net.store("1111"), TypeError, "patterns must be"),
        (lambda net: net.store(np.array([True] * 4)), TypeError, "numbers"),
        (lambda net: net.store([1, 1, 1, 1], rule="oja"), ValueError, "rule"),
        (lambda net: net.recall([1, 1, 1, 1], mode="chaotic"), ValueError, "mode"),
        (lambda net: net.recall([1, 1, 1, 1], max_sweeps=0), ValueError, "max_sweeps"),
        (lambda net: net.recall([1, 1, 1, 1], max_sweeps=2.0), TypeError, "max_sweeps"),
        (lambda net: net.recall([1, 1, 1, 1], order="reverse"), ValueError, "order"),
        (lambda net: net.recall([1, 1, 1, 1], mode=np.array(["a", "b"])), ValueError, "mode"),
        (lambda net: net.store([1, 1, 1, 1], rule=None), ValueError, "rule must be one of"),
        (lambda net: random_patterns(2, 4, dtype=np.uint8), TypeError, "dtype must be a signed"),
        (lambda net: random_patterns(2, 4, dtype=1.5), TypeError, "dtype must be a NumPy"),
        (
            lambda net: net.recall([1, 1, 1, 1], mode="sync", order="random"),
            ValueError,
            "asynchronous",
        ),
        (lambda net: net.energy([[1, 1, 1]]), ValueError, "shape"),
        (lambda net: net.recall([1, 1, 1, 1], order="random", seed=-1), ValueError, "seed"),
        (lambda net: random_patterns(2, 4, seed="one"), TypeError, "seed"),
        (lambda net: random_patterns(-1, 4), ValueError, "count must be >= 0"),
        (lambda net: random_patterns(2, 0), ValueError, "n must be >= 1"),
    ],
)
def test_bad_input_is_named(call, error, words):
    with pytest.raises(error, match=words):
        call(HopfieldNetwork(4))


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")
def test_states_wider_than_float64_are_refused():
    # not checked after rounding to float64, where 1 + 1e-18 would pass as 1
    states = np.array([1, 1, 1, -1], np.longdouble)
    states[0] += np.longdouble(1e-18)
    assert states[0] != 1
    with pytest.raises(TypeError, match="at most 64 bits"):
        HopfieldNetwork(4).energy(states)


@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("method", ["energy", "step_sync"])
def test_bad_states_are_refused_before_any_arithmetic(method, value):
    # On the host the check comes first: a product over inf or NaN would also warn.
    net = HopfieldNetwork(4)
    net.store([1, -1, 1, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="only \\+1 and -1"):
            getattr(net, method)(np.array([1.0, value, 1.0, -1.0]))


def test_bad_sizes_and_mixed_rules():
    with pytest.raises(ValueError, match="n must be >= 2"):
        HopfieldNetwork(1)
    with pytest.raises(TypeError, match="n must be an int"):
        HopfieldNetwork(4.0)
    net = HopfieldNetwork(4)
    net.store([1, 1, -1, -1])
    with pytest.raises(ValueError, match="hebb weights"):
        net.store([1, -1, 1, -1], rule="storkey")


def test_demo_figures_are_eight_distinct_12x10_patterns():
    from gpucnn.demos import digit_figures, flip_pixels

    figures = digit_figures()
    assert figures.shape == (8, 120) and set(np.unique(figures)) == {-1.0, 1.0}
    assert len({f.tobytes() for f in figures}) == 8
    noisy = flip_pixels(figures, 0.25, np.random.default_rng(0))
    assert np.all((noisy != figures).sum(axis=1) == 30)


def test_demo_figure_d_is_digit_d():
    # Each figure is the mean image of its digit (resized, centred on the eight's mean and
    # binarised): it must agree best with its own digit's centred mean image.
    from gpucnn.data import load_digits
    from gpucnn.demos import _resize, digit_figures

    images, labels = load_digits()
    means = np.array([_resize(images[labels == d, 0].mean(axis=0), 12, 10) for d in range(8)])
    centred = (means - means.mean(axis=0)).reshape(8, 120)
    assert np.array_equal((digit_figures() @ centred.T).argmax(axis=1), np.arange(8))


def test_demo_resize_keeps_an_image_of_its_size_and_a_ramps_ends():
    from gpucnn.demos import _resize
    from tests.helpers import shuffled_linspace

    image = shuffled_linspace((8, 8))
    assert np.allclose(_resize(image, 8, 8), image, rtol=0, atol=1e-15)
    ramp = np.add.outer(np.arange(8.0), 10 * np.arange(8.0))  # linear: resized exactly
    resized = _resize(ramp, 12, 10)
    expected = np.add.outer(np.linspace(0, 7, 12), 10 * np.linspace(0, 7, 10))
    assert np.allclose(resized, expected, rtol=0, atol=1e-12)


def test_the_demo_reports_what_its_network_does(capsys, tmp_path, monkeypatch):
    # The printed and returned numbers against the same experiment through the public API
    # (4 trials, seed 3); without matplotlib (save_png says so), no picture is claimed.
    import gpucnn.demos
    from gpucnn.demos import digit_figures, flip_pixels, hopfield_demo

    monkeypatch.setattr(gpucnn.demos, "save_png", lambda *args, **kwargs: False)
    result = hopfield_demo(trials=4, seed=3, png=tmp_path / "demo.png")
    figures = digit_figures()
    net = HopfieldNetwork(120)
    net.store(figures)
    stable = int((net.step_sync(figures) == figures).all(axis=1).sum())
    rng = np.random.default_rng(3)
    noisy = np.concatenate([flip_pixels(figures, 0.25, rng) for _ in range(4)])
    recalled = net.recall(noisy).states
    exact = float((recalled == np.tile(figures, (4, 1))).all(axis=1).mean())
    assert 0 < stable < 8 and 0 < exact < 1  # so that an inverted count would show
    assert result == {"stable": stable, "recalled": exact, "picture": None}
    out = capsys.readouterr().out
    assert f"{stable} of 8 stored figures are stable states" in out
    assert f"recalled exactly: {exact:.1%} of 32 noisy copies" in out
    assert "no picture: matplotlib is not installed" in out and "picture written" not in out


def test_capacity_measurement():
    from benchmarks.hopfield_capacity import measure

    low = measure(100, 0.04, "hebb", trials=2, seed=0)
    high = measure(100, 0.30, "hebb", trials=2, seed=0)
    assert low["stable"] == 1.0 and low["recalled"] == 1.0
    assert high["stable"] < 0.5 and measure(100, 0.30, "storkey", 2, 0)["stable"] > 0.9


@pytest.mark.parametrize(
    "argument, words",
    [("--trials=0", "--trials: must be >= 1"), ("--seed=-1", "--seed: must be >= 0")],
)
def test_capacity_script_refuses_bad_counts(argument, words, capsys):
    # --trials 0 used to fall back to the default count in silence, --seed -1 to a traceback
    from benchmarks.hopfield_capacity import main

    with pytest.raises(SystemExit) as stopped:
        main(["--quick", argument])
    assert stopped.value.code == 2 and words in capsys.readouterr().err
