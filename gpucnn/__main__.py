"""Command line: ``python -m gpucnn {train,info,hopfield-demo}`` (also installed as ``gpucnn``)."""

from __future__ import annotations

import argparse
import platform
import sys

from ._checks import cli_int_at_least, cli_number_in


def _info(args) -> int:
    import numpy as np

    import gpucnn

    from . import _device
    from .gpuinfo import nvml_facts

    print(f"gpucnn   {gpucnn.__version__}")
    print(f"python   {platform.python_version()} ({sys.executable})")
    print(f"numpy    {np.__version__}")
    try:
        import cupy

        print(f"cupy     {cupy.__version__}")
    except Exception as exc:
        print(f"cupy     not usable ({type(exc).__name__}: {exc})")
    try:
        if args.device:
            gpucnn.set_device(args.device)
        print(f"device   {_device.device_reason()}")
    except Exception as exc:
        print(f"device   {args.device or 'auto'} unavailable: {exc}")
    from .cpu import _malloc, _parallel

    malloc = "tuned" if _malloc.tune_malloc() else "untouched (turned off, or not glibc)"
    workers, source = _parallel.worker_count(), _parallel.worker_count_source()
    print(f"cpu      {workers} worker threads ({source}); malloc {malloc}")
    libraries = _parallel.blas_libraries()
    for blas in libraries:
        print(
            f"blas     {blas['internal_api']} {blas['version']} ({blas['architecture']} "
            f"kernels), {blas['num_threads']} threads; 1 inside the workers"
        )
    if not libraries:
        print("blas     not found by threadpoolctl: its threads are not held at 1 in workers")
    advice = _parallel.blas_kernel_advice(libraries)
    if advice:
        print(f"blas     {advice}")
    facts = nvml_facts()
    for key, value in facts.items():
        if key != "unavailable":
            print(f"gpu.{key:<20} {value}")
    for key, why in facts["unavailable"].items():
        print(f"gpu.{key:<20} unavailable: {why}")
    return 0


def _train(args) -> int:
    import gpucnn

    from .checkpoint import check_save_path, load_weights, save_weights
    from .data import load_digits, load_mnist, train_test_split
    from .losses import SoftmaxCrossEntropyLoss
    from .models import MODELS
    from .optim import SGD, CosineLR
    from .train import evaluate, fit

    if args.epochs == 0 and not args.load:
        raise ValueError("--epochs 0 evaluates saved weights without training: give --load PATH")
    if args.save:
        check_save_path(args.save)  # now, not after the training it would lose
    device = gpucnn.set_device(args.device)
    if args.data == "digits":
        x, y = load_digits()
        x_train, y_train, x_test, y_test = train_test_split(x, y, 0.2, seed=args.seed)
        default_model = "digits-cnn"
    else:  # mnist:PATH (checked by _data_source)
        (x_train, y_train), (x_test, y_test) = load_mnist(args.data[len("mnist:") :])
        default_model = "lenet5"
    model_name = args.model or default_model
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if model_name == "lenet5":
        model = MODELS[model_name](x_train.shape[1], num_classes, x_train.shape[2], seed=args.seed)
    else:
        if x_train.shape[1:] != (1, 8, 8):
            raise ValueError(
                f"model digits-cnn takes 1x8x8 images, the data has "
                f"{x_train.shape[1:]}; use --model lenet5"
            )
        model = MODELS[model_name](num_classes, seed=args.seed)
    if args.load:
        load_weights(model, args.load)  # names and shapes checked: the same --model and data
    print(f"device {device}; {len(x_train)} training and {len(x_test)} test examples")
    if device == "cpu":
        from .cpu._parallel import blas_kernel_advice

        advice = blas_kernel_advice()
        if advice:  # the NumPy path's GEMMs at half speed: worth a line before training
            print(f"note: {advice}")
    print(model.summary(x_train.shape[1:]))
    if args.load:
        print(f"weights loaded from {args.load}")
    loss = SoftmaxCrossEntropyLoss()
    if args.epochs:
        optimizer = SGD(
            model,
            args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=CosineLR(args.epochs) if args.schedule == "cosine" else None,
        )
        fit(
            model,
            loss,
            optimizer,
            x_train,
            y_train,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_data=(x_test, y_test),
            seed=args.seed,
            progress=not args.no_progress,
            verbose=True,
            cuda_graph=args.cuda_graph,
        )
    scores = evaluate(model, loss, x_test, y_test)
    print(
        f"test accuracy {scores['accuracy']:.4f} (loss {scores['loss']:.4f}) "
        f"on {len(x_test)} held-out examples"
    )
    if args.save:
        save_weights(model, args.save)
        print(f"weights saved to {args.save}")
    return 0


def _hopfield_demo(args) -> int:
    import gpucnn

    from .demos import hopfield_demo

    gpucnn.set_device(args.device)
    hopfield_demo(
        rule=args.rule,
        noise=args.noise,
        trials=args.trials,
        seed=args.seed,
        png=None if args.no_png else args.png,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpucnn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="versions, the chosen device and GPU facts")
    info.add_argument("--device", choices=["auto", "cpu", "gpu", "emulator"], default=None)
    info.set_defaults(run=_info)

    train = commands.add_parser("train", help="train a CNN (default: digits, offline)")
    train.add_argument("--device", choices=["auto", "cpu", "gpu", "emulator"], default="auto")
    train.add_argument(
        "--model",
        choices=["digits-cnn", "lenet5"],
        default=None,
        help="default: digits-cnn for digits, lenet5 for MNIST",
    )
    train.add_argument(
        "--data",
        type=_data_source,
        default="digits",
        help="'digits' (bundled 8x8 digits) or 'mnist:PATH' (folder of IDX files)",
    )
    train.add_argument(
        "--epochs",
        type=_non_negative,
        default=10,
        help="passes over the training set (default 10); 0 with --load: evaluate only",
    )
    train.add_argument("--batch-size", type=_positive, default=32)
    train.add_argument("--lr", type=cli_number_in(0.0, low_open=True), default=0.05)
    train.add_argument("--momentum", type=cli_number_in(0.0, 1.0), default=0.9)
    train.add_argument("--weight-decay", type=cli_number_in(0.0), default=0.0)
    train.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default="cosine",
        help="learning rate over the epochs (default: cosine annealing)",
    )
    train.add_argument("--seed", type=_non_negative, default=0)
    train.add_argument("--save", metavar="PATH", help="save the trained weights (.npz)")
    train.add_argument(
        "--load",
        metavar="PATH",
        help="start from weights saved with --save (same --model and data); the digits "
        "split depends on --seed, so evaluate with the seed they were trained with",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--cuda-graph",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="record each training step as a CUDA graph and replay it (gpu or emulator); "
        "default: wherever the model allows it",
    )
    train.set_defaults(run=_train)

    demo = commands.add_parser(
        "hopfield-demo", help="store 8 figures of 12x10 pixels, recall from 25%% noise"
    )
    demo.add_argument("--device", choices=["auto", "cpu", "gpu", "emulator"], default="auto")
    demo.add_argument("--rule", choices=["hebb", "storkey"], default="hebb")
    demo.add_argument(
        "--noise", type=cli_number_in(0.0, 1.0), default=0.25, help="fraction of pixels flipped"
    )
    demo.add_argument("--trials", type=_positive, default=50, help="noisy copies per figure")
    demo.add_argument("--seed", type=_non_negative, default=0)
    demo.add_argument("--png", default="hopfield-demo.png", help="picture of the recall")
    demo.add_argument("--no-png", action="store_true", help="text only")
    demo.set_defaults(run=_hopfield_demo)
    return parser


def _data_source(text: str) -> str:
    """--data: 'digits' or 'mnist:PATH' with a path (an empty one would read the current
    folder), refused at parse time, before anything is loaded."""
    if text != "digits" and not (text.startswith("mnist:") and text[len("mnist:") :]):
        raise argparse.ArgumentTypeError(
            f"must be 'digits' or 'mnist:PATH' (a folder of MNIST IDX files), got {text!r}"
        )
    return text


_positive = cli_int_at_least(1)
_non_negative = cli_int_at_least(0)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, OSError, RuntimeError, FloatingPointError) as exc:
        print(f"gpucnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
