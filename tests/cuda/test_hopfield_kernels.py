"""cuda/hopfield.cu against the NumPy path, bit for bit, on the emulator (and on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.cuda import _gemm as cuda_gemm
from gpucnn.cuda import hopfield as cuda_hopfield
from gpucnn.cuda._gemm import split_reduction
from gpucnn.hopfield import HopfieldNetwork, random_patterns
from tests.helpers import record_launches


def _network(n, patterns, dtype=np.float32, rule="hebb"):
    net = HopfieldNetwork(n, dtype=dtype)
    net.store(patterns.astype(dtype), rule=rule)
    return net


def _noisy(patterns, fraction, seed):
    noisy = patterns.copy()
    noisy[np.random.default_rng(seed).random(noisy.shape) < fraction] *= -1
    return noisy


def _compare(backend, n, p, batch, dtype=np.float32, clean=0, **recall):
    """Recall, energy and a synchronous step on the device against the NumPy path, bit for
    bit: ``batch`` states, noisy copies of the stored patterns (of random states past ``p``)
    but for the first ``clean``, left as stored (stable from the start)."""
    patterns = random_patterns(p, n, seed=n)
    states = _noisy(
        random_patterns(batch, n, seed=1) if batch > p else patterns[:batch], 0.2, seed=2
    ).astype(dtype)
    states[:clean] = patterns[:clean]
    reference = _network(n, patterns, dtype)
    expected = reference.recall(states, **recall)

    def on_device():
        net = _network(n, gpucnn.to_device(patterns), dtype)
        result = net.recall(gpucnn.to_device(states), **recall)
        return (
            result.states,
            result.converged,
            result.sweeps,
            result.energies,
            net.energy(gpucnn.to_device(states)),
            net.step_sync(gpucnn.to_device(states)),
        )

    got = backend.run(on_device)
    names = ("states", "converged", "sweeps", "energies", "energy", "step_sync")
    wanted = (
        expected.states,
        expected.converged,
        expected.sweeps,
        expected.energies,
        reference.energy(states),
        reference.step_sync(states),
    )
    for name, value, reference_value in zip(names, got, wanted, strict=True):
        assert np.array_equal(value, reference_value), name


# (n, patterns, batch): batch 1 runs the warp-per-row product, which reads rows (and the
# state) element by element for odd n, in pairs for even n, as 4-wide vectors for n a
# multiple of 4; 2 to 64 states the skinny product; more the GEMM tile (n past its 128
# columns, batch past its 128 rows).
@pytest.mark.parametrize(
    "n, p, batch",
    [
        (37, 3, 1),
        (66, 4, 1),
        (64, 4, 1),
        (37, 3, 3),
        (64, 4, 8),
        (100, 6, 9),
        (131, 5, 70),
        (66, 4, 130),
    ],
)
@pytest.mark.parametrize(
    "mode, order", [("async", "cyclic"), ("async", "random"), ("sync", "cyclic")]
)
def test_recall_matches_numpy_bit_for_bit(backend, n, p, batch, mode, order):
    _compare(backend, n, p, batch, mode=mode, order=order, seed=5, max_sweeps=20)


# One state in double through the warp-per-row product, at each of its row widths: 4-wide
# vectors (n = 64), pairs (66) and single elements (37).
@pytest.mark.parametrize("n", [64, 66, 37])
def test_one_state_in_float64(backend, n):
    _compare(backend, n, 3, 1, dtype=np.float64, mode="sync", max_sweeps=10)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_states_that_stop_early_repeat_their_energy_to_max_sweeps(backend, mode):
    # Two sweeps at most: the stored patterns stop after the first (no change), the noisy
    # states run both, so the stopped states' energies after sweep 2 are the ones the
    # kernel fills in for them.
    _compare(backend, 60, 4, 4, clean=2, mode=mode, max_sweeps=2)


def test_float64_and_two_cycles(backend):
    _compare(backend, 30, 3, 12, dtype=np.float64, mode="sync", max_sweeps=10)
    _compare(backend, 30, 3, 5, dtype=np.float64, mode="async", max_sweeps=10)
    net_states = backend.run(lambda: _two_cycle())
    assert net_states == (False, 2)


def _two_cycle():
    net = HopfieldNetwork(2)
    net.store(gpucnn.to_device(np.array([1.0, -1.0], np.float32)))
    result = net.recall(gpucnn.to_device(np.array([1.0, 1.0], np.float32)), mode="sync")
    return bool(result.converged), int(result.sweeps)


def test_fields_in_global_memory_when_shared_memory_is_too_small(backend, monkeypatch):
    monkeypatch.setattr(cuda_hopfield, "SHARED_BYTES", 64)  # force the workspace path
    _compare(backend, 40, 3, 5, mode="async", max_sweeps=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_product_split_over_neurons_gives_the_same_bits(backend, monkeypatch, dtype):
    # 66 neurons, 130 states: 2 tiles, so with 8 neurons at least per split the reduction is
    # split in five (chunks of 16), summed by hopfield_finish_splits.
    monkeypatch.setattr(cuda_gemm, "MIN_SPLIT", 8)
    assert split_reduction(66, 2) == (5, 16)
    launched = record_launches(monkeypatch, cuda_hopfield)
    _compare(backend, 66, 4, 130, dtype=dtype, mode="sync", max_sweeps=10)
    assert "hopfield_finish_splits" in launched


@pytest.mark.parametrize(
    "n, batch, splits",
    [
        (4096, 256, 4),  # 32 x 2 tiles: four splits fill one wave (two waves would be eight)
        (4096, 1024, 1),  # 32 x 8 tiles fill a wave already
        (16384, 8, 33),  # the skinny product's 8 blocks
        (16384, 256, 1),
    ],
)
def test_the_product_splits_its_neurons_up_to_one_wave(monkeypatch, n, batch, splits):
    # Planning only: the launch is recorded, not run (these sizes are too slow to emulate).
    grids = []
    monkeypatch.setattr(cuda_hopfield, "get_kernel", lambda source, name, like: name)
    monkeypatch.setattr(cuda_hopfield, "launch", lambda kernel, grid, *rest: grids.append(grid))
    y = np.ones((batch, n), np.float32)
    cuda_hopfield.fields(np.zeros((1, 1), np.float32), y)
    assert grids[0][2] == splits
    assert grids[0][2] * grids[0][0] * grids[0][1] <= cuda_gemm.ONE_WAVE < cuda_gemm.TARGET_BLOCKS
    assert len(grids) == (2 if splits > 1 else 1)  # the splits' sum, when there are splits


# (n, batch): the skinny product's every bucket of states at both edges (2 and 8, 9 and 16,
# 17 and 32, 33 and 64) and 65, past it (the GEMM tile); n past a block's columns (256 of
# them with 33-64 states, 512 with 17-32, 1024 with 9-16, so at a bucket's top a kernel
# choosing the next bucket would leave columns unwritten), past a chunk of neurons staged
# in shared memory (60 with 64 states in float, 28 in double; 112 and 56 with 32) and ending
# in a partial group of neurons loaded together (2 with 9-16 states, 4 with 17-64); n of
# 256 and more split over neurons (splits of at least 128), less not.
@pytest.mark.parametrize(
    "n, batch",
    [
        (37, 2),
        (1100, 8),
        (141, 9),
        (1031, 16),
        (523, 17),
        (262, 32),
        (302, 33),
        (303, 64),
        (150, 65),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fields_of_few_states_against_float64(backend, monkeypatch, n, batch, dtype):
    # Weights with fractions (symmetric, zero diagonal), so no sum is exact by luck.
    rng = np.random.default_rng(n + batch)
    w = rng.standard_normal((n, n))
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0.0)
    y = np.where(rng.random((batch, n)) < 0.5, -1.0, 1.0)
    launched = record_launches(monkeypatch, cuda_hopfield)
    got = backend.run(cuda_hopfield.fields, w.astype(dtype), y.astype(dtype))
    expected = y @ w
    error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    assert error < (1e-6 if dtype == np.float32 else 1e-14), error
    product = "hopfield_product_skinny" if batch <= 64 else "hopfield_product_gemm"
    assert launched[0] == product
    assert ("hopfield_finish_splits" in launched) == (n >= 2 * cuda_gemm.MIN_SPLIT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_skinny_product_in_one_split_walks_every_staged_chunk(backend, monkeypatch, dtype):
    # One split over all 1100 neurons: five states take chunks of 341 neurons (170 in
    # double) through shared memory, the last one partial, and the epilogue writes the step.
    monkeypatch.setattr(cuda_gemm, "MIN_SPLIT", 10**6)
    launched = record_launches(monkeypatch, cuda_hopfield)
    n, patterns = 1100, random_patterns(6, 1100, seed=9)
    states = _noisy(patterns[:5], 0.3, seed=10).astype(dtype)
    reference = _network(n, patterns, dtype)

    def on_device():
        net = _network(n, gpucnn.to_device(patterns), dtype)
        return net.step_sync(gpucnn.to_device(states)), net.energy(gpucnn.to_device(states))

    step, energy = backend.run(on_device)
    assert np.array_equal(step, reference.step_sync(states))
    assert np.array_equal(energy, reference.energy(states))
    assert "hopfield_product_skinny" in launched and "hopfield_finish_splits" not in launched


@pytest.mark.parametrize("rule", ["hebb", "storkey"])
@pytest.mark.parametrize("n", [300, 1100])
def test_energy_of_states_longer_than_a_block_width(backend, rule, n):
    # hopfield_energy sums a state in four chains a thread, 256 threads a block: at 300
    # neurons thread 44's second chain stops exactly at the guard (j < n: j = 300); 1100
    # wraps the loop once. Hebbian weights give exact integers (the same bits in any order);
    # Storkey's fractions are compared by relative error, as the block's summing order
    # differs from NumPy's.
    patterns = random_patterns(5, n, seed=7)
    states = _noisy(patterns[:3], 0.3, seed=8).astype(np.float64)
    expected = _network(n, patterns, np.float64, rule).energy(states)

    def on_device():
        return _network(n, gpucnn.to_device(patterns), np.float64, rule).energy(
            gpucnn.to_device(states)
        )

    got = backend.run(on_device)
    if rule == "hebb":
        assert np.array_equal(got, expected)
    else:
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-13


@pytest.mark.gpu
@pytest.mark.parametrize(
    "n, batch", [(4096, 1), (4096, 8), (3001, 20), (2048, 64), (4096, 256), (4096, 300)]
)
def test_realistic_sizes_on_the_gpu(gpu_backend, n, batch):
    _compare(gpu_backend, n, n // 100, batch, mode="async", max_sweeps=30)
    _compare(gpu_backend, n, n // 100, batch, mode="sync", max_sweeps=30)


@pytest.mark.parametrize("order", [None, "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plain_recomputing_sweep_agrees_with_the_incremental_one(backend, order, dtype):
    n, patterns = 45, random_patterns(4, 45, seed=3, dtype=dtype)
    states = _noisy(random_patterns(6, n, seed=4, dtype=dtype), 0.3, seed=5)
    permutation = np.random.default_rng(6).permutation(n).astype(np.int32)

    def on_device():
        net = _network(n, gpucnn.to_device(patterns), dtype)
        y = gpucnn.to_device(states)
        orders = None if order is None else gpucnn.to_device(permutation)
        plain = cuda_hopfield.sweep_recompute(net._w, y, orders)
        incremental = cuda_hopfield.recall_async(
            net._w, y, 1, None if orders is None else orders[None]
        )[0]
        return plain, incremental

    plain, incremental = backend.run(on_device)
    assert np.array_equal(plain, incremental)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_states_are_checked_by_the_kernel(backend, dtype, monkeypatch):
    launched = record_launches(monkeypatch, cuda_hopfield)
    n, batch = 37, 5  # 185 values: the grid-stride loop passes each block more than once
    states = random_patterns(batch, n, seed=3).astype(dtype)

    def check(values, method="energy"):
        # energy and step_sync read the check's flag after launching their own kernels
        net = HopfieldNetwork(n, dtype=dtype)
        return getattr(net, method)(gpucnn.to_device(values) if backend.name == "gpu" else values)

    backend.run(check, states)  # valid: no error
    assert backend.run(check, states, method="step_sync").shape == states.shape
    assert "hopfield_check_states" in launched
    for method in ("energy", "step_sync", "recall"):
        for bad in (0.0, 2.0, -0.5, np.nan, np.inf):
            for where in ((0, 0), (batch - 1, n - 1), (2, 17)):
                wrong = states.copy()
                wrong[where] = bad
                with pytest.raises(ValueError, match=r"only \+1 and -1"):
                    backend.run(check, wrong, method=method)
    # Integer states are checked exactly (in float64), then converted.
    assert backend.run(check, states.astype(np.int8)).shape == (batch,)
    # The checks' flags are reused, never cleared: what the bad states left in them must not
    # fail good states now.
    for method in ("energy", "step_sync", "recall"):
        backend.run(check, states, method=method)


def test_pending_checks_answer_for_their_own_states(backend):
    # The flag slots are reused, never cleared: up to CHECK_SLOTS checks pending at once,
    # asked out of order, each answers for its own states; one asked later is refused.
    good = random_patterns(3, 50, seed=4)
    bad = good.copy()
    bad[1, 7] = 0.0
    rounds = cuda_hopfield.CHECK_SLOTS // 4

    def checks(good, bad):
        pending = [
            cuda_hopfield.invalid_states(states) for states in [good, bad, bad, good] * rounds
        ]
        answers = [check.found() for check in reversed(pending)][::-1]
        first = cuda_hopfield.invalid_states(bad)
        for _ in range(cuda_hopfield.CHECK_SLOTS):
            cuda_hopfield.invalid_states(good)
        with pytest.raises(RuntimeError, match="asked after 16 later ones"):
            first.found()
        return np.array(answers)

    found = backend.run(checks, good, bad)
    assert found.tolist() == [False, True, True, False] * rounds


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_callers_states_are_never_written(backend, dtype):
    # States already in the network's dtype reach the kernels without a copy: every method
    # must leave the caller's array as it was.
    patterns = random_patterns(3, 24, seed=5).astype(dtype)
    states = _noisy(patterns, 0.3, seed=6)

    def run_everything(patterns, states):
        kept = states.copy()
        net = _network(24, patterns, dtype)
        net.step_sync(states)
        net.energy(states)
        net.recall(states, mode="sync")
        net.recall(states, mode="async", order="random", seed=1)
        net.sweep_async(states[0])
        net.unlearn(states[:1])
        return states, kept

    after, before = backend.run(run_everything, patterns, states)
    assert np.array_equal(after, before) and np.array_equal(after, states)
    after, before = run_everything(patterns, states.copy())  # and the NumPy path
    assert np.array_equal(after, before)


# The tensor-core product (hopfield_product_mma, GPUCNN_HOPFIELD_TENSOR_CORES=1): float16
# holds integer weights of at most 2048 and the states exactly, so its fields are the float32
# path's, bit for bit. (n, patterns, batch): one state; states past a block's 32 rows; n not
# a multiple of the MMA's 16 (W16's zero padding, the last step's guards).
@pytest.mark.parametrize("n, p, batch", [(37, 3, 1), (40, 4, 33), (70, 5, 5)])
def test_the_tensor_core_product_gives_the_float32_bits(backend, monkeypatch, n, p, batch):
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "1")
    launched = record_launches(monkeypatch, cuda_hopfield)
    _compare(backend, n, p, batch, mode="sync", max_sweeps=6)
    assert "hopfield_product_mma" in launched
    assert not {"hopfield_product_vector", "hopfield_product_skinny"} & set(launched)


def test_the_tensor_core_product_split_over_neurons_gives_the_same_bits(backend, monkeypatch):
    # 70 neurons with at least 16 a split: three splits of 32 (whole MMA steps), summed by
    # hopfield_finish_splits.
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "1")
    monkeypatch.setattr(cuda_gemm, "MIN_SPLIT", 16)
    assert split_reduction(70, 1, cuda_gemm.ONE_WAVE, cuda_hopfield.MMA_STEP) == (3, 32)
    launched = record_launches(monkeypatch, cuda_hopfield)
    _compare(backend, 70, 5, 3, mode="sync", max_sweeps=6)
    assert {"hopfield_product_mma", "hopfield_finish_splits"} <= set(launched)


def _integer_weights(n, largest):
    """Symmetric integer weights, zero diagonal, one pair at +-largest."""
    rng = np.random.default_rng(n)
    w = rng.integers(-5, 6, (n, n)).astype(np.float32)
    w = np.triu(w, 1) + np.triu(w, 1).T
    w[0, 1] = w[1, 0] = largest
    return w


def test_w16_holds_w_exactly_in_rows_padded_to_the_mma_step(monkeypatch):
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "1")
    w = _integer_weights(37, -2048.0)
    kept = {}
    prepared = cuda_hopfield.prepare_weights(w, 2048.0, kept)  # NumPy: the emulator's path
    half = prepared.half.view(np.float16)
    assert half.shape == (37, 48)
    assert np.array_equal(half[:, :37].astype(np.float32), w) and not half[:, 37:].any()
    assert cuda_hopfield.prepare_weights(w, 2048.0, kept) is prepared  # made once per W
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "0")  # read on every call
    assert cuda_hopfield.prepare_weights(w, 2048.0, kept) is w


@pytest.mark.parametrize(
    "setting, largest, dtype, takes",
    [
        ("", 5.0, np.float32, False),  # off by default, until a GPU has measured it
        ("0", 5.0, np.float32, False),
        ("1", 5.0, np.float32, True),
        ("1", 2048.0, np.float32, True),
        ("1", 2049.0, np.float32, False),  # float16 holds no odd integer past 2048
        ("1", None, np.float32, False),  # Storkey's fractions
        ("1", 5.0, np.float64, False),
    ],
)
def test_the_tensor_cores_take_only_weights_float16_holds(
    monkeypatch, setting, largest, dtype, takes
):
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, setting)
    w = np.zeros((4, 4), dtype)
    prepared = cuda_hopfield.prepare_weights(w, largest, {})
    assert isinstance(prepared, cuda_hopfield.TensorCoreWeights) == takes
    assert takes or prepared is w


@pytest.mark.parametrize("rule", ["hebb", "storkey"])
def test_a_network_gives_the_tensor_cores_only_weights_they_multiply_exactly(
    backend, monkeypatch, rule
):
    # Hebbian weights past 2048 (2049 copies of one pattern), and Storkey's fractions, stay
    # on the float32 products; unlearning back under 2048 brings the tensor cores back.
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "1")
    launched = record_launches(monkeypatch, cuda_hopfield)
    pattern = random_patterns(1, 20, seed=3)
    states = _noisy(np.repeat(pattern, 3, axis=0), 0.3, seed=4)

    def steps():
        net = HopfieldNetwork(20)
        net.store(gpucnn.to_device(np.repeat(pattern, 2049 if rule == "hebb" else 2, axis=0)), rule)
        first = net.step_sync(gpucnn.to_device(states))
        if rule == "hebb":
            net.unlearn(gpucnn.to_device(np.repeat(pattern, 2, axis=0)))
        return first, net.step_sync(gpucnn.to_device(states))

    first, second = backend.run(steps)
    assert np.array_equal(first, np.repeat(pattern, 3, axis=0))
    assert np.array_equal(second, np.repeat(pattern, 3, axis=0))
    products = [name for name in launched if name.startswith("hopfield_product")]
    expected = ["hopfield_product_skinny", "hopfield_product_mma"]
    assert products == (expected if rule == "hebb" else [expected[0]] * 2)


@pytest.mark.gpu
@pytest.mark.parametrize("n, batch", [(4096, 1), (4096, 64), (3001, 20), (4096, 300)])
def test_the_tensor_core_product_at_realistic_sizes(gpu_backend, monkeypatch, n, batch):
    monkeypatch.setenv(cuda_hopfield.TENSOR_CORES_VARIABLE, "1")
    launched = record_launches(monkeypatch, cuda_hopfield)
    _compare(gpu_backend, n, n // 100, batch, mode="sync", max_sweeps=30)
    assert "hopfield_product_mma" in launched
